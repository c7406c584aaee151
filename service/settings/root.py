"""The root of the configuration: its sections, the named accounts, and the rules across sections."""

from __future__ import annotations

from pydantic import Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from service.settings.accounts import Account, AccountSettings, missing_keys, resolve_accounts
from service.settings.api import ApiSettings
from service.settings.batch import BatchSettings
from service.settings.brake import BrakeSettings
from service.settings.errors import ConfigError
from service.settings.events import EventSettings
from service.settings.kafka import KafkaSettings, dry_run_form
from service.settings.observability import HttpSettings, LogSettings, TracingSettings
from service.settings.registry import SchemaRegistrySettings
from service.settings.sources import (
    DEFAULT_SECRETS_DIR,
    ENV_PREFIX,
    SECRETS_DIR_ENV,
    SETTINGS_CONFIG,
    settings_sources,
)
from service.settings.state import StateSettings

__all__ = ["Settings"]


class Settings(BaseSettings):
    """The root of the configuration; see the README's table for every name."""

    model_config = SETTINGS_CONFIG

    kafka: KafkaSettings = KafkaSettings()
    api: ApiSettings = ApiSettings()
    batch: BatchSettings = BatchSettings()
    brake: BrakeSettings = BrakeSettings()
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()
    events: EventSettings = EventSettings()
    tracing: TracingSettings = TracingSettings()
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
    state: StateSettings = StateSettings()
    accounts: dict[str, AccountSettings] = Field(
        default_factory=dict,
        description="Several JD accounts (IMGSWEEP_ACCOUNTS__<NAME>__*); none: one account, IMGSWEEP_API__*.",
    )
    max_event_age_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Delists older than this are skipped with an outcome that says so; off by default.",
    )
    dry_run: bool = Field(default=False, description="Do everything except the HTTP call.")
    shutdown_grace_seconds: float = Field(
        default=25.0, gt=0, le=3600, description="How long SIGTERM waits for in-flight work."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return settings_sources(init_settings, env_settings, file_secret_settings)

    @model_validator(mode="after")
    def _dry_run_names(self) -> Settings:
        """In dry-run the consumer group, both output topics, the demand, deletions and control topics get their
        dry-run form (``DRY_RUN_SUFFIX``; a dry run never takes a share of the live replicas' QPS, nor trips their
        brakes), so a
        dry run never commits in the live group nor publishes where live consumers read: turning it off then
        processes every event from where the live group stands. Names that have the suffix already keep it."""
        if self.dry_run:
            kafka = self.kafka
            renamed = (
                "group_id", "outcome_topic", "dlq_topic", "demand_topic", "deletions_topic", "control_topic",
                "collections_topic",
            )  # fmt: skip
            names = {name: dry_run_form(getattr(kafka, name)) for name in renamed}
            if kafka.budget_topic is not None:  # unset, it follows the group id, renamed above
                names["budget_topic"] = dry_run_form(kafka.budget_topic)
            object.__setattr__(self, "kafka", kafka.model_copy(update=names))  # still frozen to everyone else
        return self

    _api_accounts: tuple[Account, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _accounts(self) -> Settings:
        """Each named account's API settings, whole and valid; every collection named by one account at most."""
        self._api_accounts = resolve_accounts(self.accounts, self.api)
        return self

    def api_accounts(self) -> tuple[Account, ...]:
        """The accounts imgsweep calls the API with: the named ones, or the one ``default`` account."""
        return self._api_accounts

    def require_credentials(self) -> None:
        """Calling the API needs both keys of every account; dry-run does not."""
        if self.dry_run:
            return
        missing = missing_keys(self.api_accounts(), named=bool(self.accounts))
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} must be set (environment, or a file of that name in the "
                f"secrets directory ${SECRETS_DIR_ENV}, default {DEFAULT_SECRETS_DIR}); "
                f"or set {ENV_PREFIX}DRY_RUN=true to run without calling the API"
            )
