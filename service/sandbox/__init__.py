"""A faithful stand-in for JD's ``POST /jdai/product_image_del_image``, for tests and benchmarks over loopback.

``state`` decides (images, quota, QPS window, faults, statistics), ``server`` speaks HTTP, ``cli`` runs it as
``imgsweep sandbox``. See ``server``'s docstring for the HTTP statuses and ``SandboxState.handle_delete`` for
what is charged.
"""

from service.sandbox.auth import MAX_CLOCK_SKEW_SECONDS, AuthRefused, authenticate
from service.sandbox.cli import add_sandbox_command, resolve_credentials, run_sandbox
from service.sandbox.protocol import (
    ABSENT_REASON,
    DELETE_PATH,
    ITEM_ERROR_REASON,
    BusinessCode,
    BusinessResult,
    DeleteRequest,
    GatewayReply,
    ImageKey,
    RequestRejected,
    SystemCode,
    parse_delete_body,
)
from service.sandbox.seed import InvalidSeed, SeedBatch, load_seed_file, parse_seed_record
from service.sandbox.server import SandboxServer
from service.sandbox.state import (
    DEFAULT_QPS,
    DEFAULT_QUOTA,
    UNLIMITED,
    CallPlan,
    DailyQuota,
    Faults,
    QpsWindow,
    QuotaStatus,
    SandboxState,
    SandboxStats,
    TransportFault,
)

__all__ = [
    "ABSENT_REASON",
    "DEFAULT_QPS",
    "DEFAULT_QUOTA",
    "DELETE_PATH",
    "ITEM_ERROR_REASON",
    "MAX_CLOCK_SKEW_SECONDS",
    "UNLIMITED",
    "AuthRefused",
    "BusinessCode",
    "BusinessResult",
    "CallPlan",
    "DailyQuota",
    "DeleteRequest",
    "Faults",
    "GatewayReply",
    "ImageKey",
    "InvalidSeed",
    "QpsWindow",
    "QuotaStatus",
    "RequestRejected",
    "SandboxServer",
    "SandboxState",
    "SandboxStats",
    "SeedBatch",
    "SystemCode",
    "TransportFault",
    "add_sandbox_command",
    "authenticate",
    "load_seed_file",
    "parse_delete_body",
    "parse_seed_record",
    "resolve_credentials",
    "run_sandbox",
]
