"""``imgsweep sandbox``: run the stand-in endpoint as its own process until SIGTERM or Ctrl-C.

Once listening it prints exactly one line to stdout, ``sandbox listening on http://HOST:PORT``, and flushes,
so a parent process started with ``--port 0`` can read the port it got. Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Final

from pydantic import ValidationError

from service.api.signing import Credentials
from service.logs import configure_logging
from service.sandbox.seed import InvalidSeed, load_seed_file
from service.sandbox.server import SandboxServer
from service.sandbox.state import DEFAULT_QPS, DEFAULT_QUOTA, Faults, SandboxState
from service.settings import ENV_PREFIX, ConfigError, Settings, load_settings

__all__ = ["DEFAULT_PORT", "add_sandbox_command", "main", "resolve_credentials", "run_sandbox"]

logger = logging.getLogger(__name__)

DEFAULT_PORT: Final = 8900
EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2
ACCESS_KEY_ENV: Final = f"{ENV_PREFIX}API__ACCESS_KEY"
SECRET_KEY_ENV: Final = f"{ENV_PREFIX}API__SECRET_KEY"


def add_sandbox_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sandbox`` (handler: :func:`run_sandbox`, set as ``handler`` like the other subcommands)."""
    parser = subparsers.add_parser(
        "sandbox",
        help="run a local stand-in for the JD product image delete endpoint (tests, benchmarks)",
        description=(
            "Serves POST /jdai/product_image_del_image with the real gateway's signature checks, codes, QPS limit "
            "and daily quota, plus /admin/* endpoints (no auth: keep it on loopback) to seed images, inject "
            "faults and read statistics."
        ),
    )
    _add_arguments(parser)
    parser.set_defaults(handler=run_sandbox)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    listen = parser.add_argument_group("listening")
    listen.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    listen.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to bind; 0 = any free port (default: {DEFAULT_PORT})"
    )
    keys = parser.add_argument_group("account", f"default: {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}, as the service")
    keys.add_argument("--access-key", help="the account's access key")
    keys.add_argument("--secret-key", help="the account's secret key (visible in ps: prefer the variable)")
    keys.add_argument("--qps", type=int, default=DEFAULT_QPS, help=f"QPS limit, 0 = unlimited (default: {DEFAULT_QPS})")
    keys.add_argument(
        "--quota", type=int, default=DEFAULT_QUOTA, help=f"daily calls, -1 = unlimited (default: {DEFAULT_QUOTA})"
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--seed-file",
        type=Path,
        action="append",
        default=[],
        help="images to load (.json: a record or a list; .jsonl: a record a line); may repeat",
    )
    data.add_argument(
        "--unknown-collection-1030",
        action="store_true",
        help="answer result.code 1030 for a collection never seeded (default: its items are absent)",
    )
    faults = parser.add_argument_group("faults", "rates are probabilities per call; changeable via POST /admin/faults")
    faults.add_argument("--seed", type=int, default=None, help="seed of the fault generator (default: random)")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="added to every call")
    faults.add_argument("--latency-jitter-ms", type=float, default=0.0, help="plus uniform [0, this]")
    faults.add_argument("--http-503-rate", type=float, default=0.0, help="answer HTTP 503 with an HTML page")
    faults.add_argument("--http-500-rate", type=float, default=0.0, help="answer HTTP 500 with an HTML page")
    faults.add_argument("--hang-rate", type=float, default=0.0, help="hang for --hang-seconds")
    faults.add_argument("--hang-seconds", type=float, default=60.0, help="how long a hang lasts (default: 60)")
    faults.add_argument(
        "--hang-then",
        choices=("drop", "answer"),
        default="drop",
        help="after a hang: close unanswered, nothing applied (default), or process and answer late",
    )
    faults.add_argument(
        "--truncate-rate", type=float, default=0.0, help="process, then send a cut body and close the connection"
    )
    faults.add_argument("--busy-rate", type=float, default=0.0, help="answer code 10020 (system busy)")
    faults.add_argument("--publisher-error-rate", type=float, default=0.0, help="answer code 11010")
    faults.add_argument("--item-error-rate", type=float, default=0.0, help="per item: DELETE_IMAGE_ERROR")
    faults.add_argument(
        "--payment-required", action="store_true", help="answer code 10010 to every call (a paid pack ran out)"
    )
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="DEBUG logs one line per call (default: INFO)",
    )


def resolve_credentials(
    access_key: str | None,
    secret_key: str | None,
    load: Callable[[], Settings] = load_settings,
) -> Credentials:
    """Flags win; whatever they leave out comes from the service's settings. Raises ``ConfigError``."""
    if access_key is None or secret_key is None:
        try:
            api = load().api
        except ConfigError as error:
            raise ConfigError(f"{error}\n(or pass --access-key and --secret-key)") from None
        if access_key is None and api.access_key is not None:
            access_key = api.access_key.get_secret_value() or None
        if secret_key is None and api.secret_key is not None:
            secret_key = api.secret_key.get_secret_value() or None
    missing = [
        f"{variable} (or {flag})"
        for variable, flag, value in (
            (ACCESS_KEY_ENV, "--access-key", access_key),
            (SECRET_KEY_ENV, "--secret-key", secret_key),
        )
        if not value
    ]
    if missing or access_key is None or secret_key is None:
        raise ConfigError(f"the sandbox needs the account's keys: set {' and '.join(missing)}")
    try:
        return Credentials(access_key, secret_key)
    except ValueError as error:
        raise ConfigError(f"{ACCESS_KEY_ENV}/--access-key: {error}") from None


def _faults(args: argparse.Namespace) -> Faults:
    return Faults(
        qps=args.qps,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        http_503_rate=args.http_503_rate,
        http_500_rate=args.http_500_rate,
        hang_rate=args.hang_rate,
        hang_seconds=args.hang_seconds,
        hang_then=args.hang_then,
        truncate_rate=args.truncate_rate,
        busy_rate=args.busy_rate,
        publisher_error_rate=args.publisher_error_rate,
        item_error_rate=args.item_error_rate,
        unknown_collection_1030=args.unknown_collection_1030,
        payment_required=args.payment_required,
    )


def _prepare(args: argparse.Namespace) -> tuple[SandboxState, Credentials]:
    """Everything that can fail on bad configuration, before a port is bound. Raises ``ConfigError``."""
    credentials = resolve_credentials(args.access_key, args.secret_key)
    try:
        state = SandboxState(faults=_faults(args), quota_limit=args.quota, rng=random.Random(args.seed))
    except ValidationError as error:
        problems = "; ".join(f"--{str(item['loc'][0]).replace('_', '-')}: {item['msg']}" for item in error.errors())
        raise ConfigError(problems) from None
    except ValueError as error:
        raise ConfigError(f"--quota: {error}") from None
    for path in args.seed_file:
        try:
            batches = load_seed_file(path)
        except InvalidSeed as error:
            raise ConfigError(f"--seed-file {error}") from None
        for batch in batches:
            state.seed_images(batch.collection, batch.items)
    return state, credentials


def run_sandbox(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; exit 2 with a message naming the flag or variable on bad configuration."""
    configure_logging(args.log_level, "text")
    try:
        state, credentials = _prepare(args)
        server = SandboxServer(state, args.host, args.port, credentials=credentials).start()
    except ConfigError as error:
        print(f"imgsweep sandbox: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as error:
        print(f"imgsweep sandbox: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info(
        "sandbox up: %d images, quota %d, faults %s",
        state.stats().images_stored,
        args.quota,
        state.faults.model_dump(exclude_defaults=True) or "none",
    )
    print(f"sandbox listening on {server.url}", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()
    logger.info("sandbox stopped: %s", state.stats())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m service.sandbox``: the same command without the ``imgsweep`` wrapper."""
    parser = argparse.ArgumentParser(prog="imgsweep sandbox", description="Run the delete endpoint's stand-in.")
    _add_arguments(parser)
    return run_sandbox(parser.parse_args(argv))
