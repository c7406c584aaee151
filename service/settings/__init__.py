"""The service's whole configuration, read once at start-up.

Every setting comes from the environment (prefix ``IMGSWEEP_``, nested sections joined by ``__``, e.g.
``IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS``) or, for secrets, from files in a secrets directory named the same way
(how a Kubernetes Secret is mounted). Validation happens here, at start-up, with messages that name the
setting, what is wrong and what is allowed; nothing later re-checks configuration.

One module a job: ``sources`` (where values come from), ``fields`` (what sections are built of), one module per
section (``kafka``, ``api``, ``batch``, ``brake``, ``events``, ``observability``), ``accounts`` (named JD
accounts, derived from ``api``'s per-account fields), ``root`` (``Settings``), ``loading`` (``load_settings``),
``errors`` and ``masking`` (what a person sees). Import from ``service.settings``.
"""

from service.settings.accounts import DEFAULT_ACCOUNT, EVERY_OTHER_COLLECTION, Account, AccountSettings
from service.settings.api import API_MAX_BODY_BYTES, API_MAX_ITEMS, ApiSettings, PerAccount
from service.settings.batch import BatchSettings
from service.settings.brake import BrakeSettings
from service.settings.errors import ConfigError
from service.settings.events import EventSettings
from service.settings.kafka import DRY_RUN_SUFFIX, KafkaSettings
from service.settings.loading import load_settings, secrets_dir_from_env
from service.settings.masking import masked_config
from service.settings.observability import HttpSettings, LogSettings, TracingSettings
from service.settings.registry import SchemaRegistrySettings
from service.settings.root import Settings
from service.settings.sources import ENV_PREFIX
from service.settings.state import StateSettings

__all__ = [
    "API_MAX_BODY_BYTES",
    "API_MAX_ITEMS",
    "DEFAULT_ACCOUNT",
    "DRY_RUN_SUFFIX",
    "ENV_PREFIX",
    "EVERY_OTHER_COLLECTION",
    "Account",
    "AccountSettings",
    "ApiSettings",
    "BatchSettings",
    "BrakeSettings",
    "ConfigError",
    "EventSettings",
    "HttpSettings",
    "KafkaSettings",
    "LogSettings",
    "PerAccount",
    "SchemaRegistrySettings",
    "Settings",
    "StateSettings",
    "TracingSettings",
    "load_settings",
    "masked_config",
    "secrets_dir_from_env",
]
