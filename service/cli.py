"""The ``imgsweep`` command line: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
from collections.abc import Callable, Sequence

from service import __version__
from service.control.cli import add_control_commands
from service.replay import add_replay_command
from service.sandbox.cli import add_sandbox_command
from service.settings import ConfigError, Settings, load_settings, masked_config

__all__ = ["main"]

EXIT_OK = 0
EXIT_CONFIG = 2
MAX_PROBE_TIMEOUT_SECONDS = 300.0
"""``check-config --probe-timeout`` at most: a probe that waits longer hides a wrong address from a start-up check."""


def _probe_timeout(text: str) -> float:
    """``--probe-timeout``: seconds above 0 and at most ``MAX_PROBE_TIMEOUT_SECONDS`` (argparse exits 2 otherwise)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (0 < seconds <= MAX_PROBE_TIMEOUT_SECONDS):  # NaN too
        raise argparse.ArgumentTypeError(
            f"{text!r}: the probe's wait must be a number of seconds above 0 and at most "
            f"{MAX_PROBE_TIMEOUT_SECONDS:g} (e.g. 10)"
        )
    return seconds


def _check_config(args: argparse.Namespace) -> int:
    settings = _settings_or_exit(require_credentials=args.require_credentials)
    json.dump(masked_config(settings), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    if args.probe:
        from service.kafka_preflight import probe_brokers  # noqa: PLC0415 - only this path needs it

        result = probe_brokers(settings, timeout=args.probe_timeout)
        for problem in result.problems:
            print(f"imgsweep: {problem}", file=sys.stderr)
        for warning in result.warnings:
            print(f"imgsweep: warning: {warning}", file=sys.stderr)
        if result.problems:
            return EXIT_CONFIG
        print(
            f"{result.brokers} broker(s) answered; topics {settings.kafka.input_topic}, "
            f"{settings.kafka.outcome_topic} and {settings.kafka.dlq_topic} exist",
            file=sys.stderr,
        )
    print("configuration is valid", file=sys.stderr)
    return EXIT_OK


def _run(_args: argparse.Namespace) -> int:
    settings = _settings_or_exit(require_credentials=True)
    _http_endpoint_or_exit(settings)
    from service.startup import begin  # noqa: PLC0415 - only this path needs it

    begun = begin(settings)  # with exactly-once, init_transactions goes on while the rest is imported
    from service.app import run_service  # noqa: PLC0415 - keeps `--help` and check-config light

    return run_service(settings, begun)


def _settings_or_exit(*, require_credentials: bool) -> Settings:
    """The settings, checked as far as they can be without connecting; exit 2 with one line per problem."""
    from service.kafka_preflight import check_librdkafka_config  # noqa: PLC0415 - loads librdkafka
    from service.tracing import check_tracing  # noqa: PLC0415 - finds the otel extra, imports none of it

    try:
        settings = load_settings()
        if require_credentials:
            settings.require_credentials()
        warnings = check_librdkafka_config(settings)
        check_tracing(settings.tracing)
    except ConfigError as error:
        print(f"imgsweep: {error}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    for warning in warnings:
        print(f"imgsweep: warning: librdkafka: {warning}", file=sys.stderr)
    return settings


def _http_endpoint_or_exit(settings: Settings) -> None:
    """A host that does not resolve or a port in use is a configuration error, not a traceback later."""
    host, port = settings.http.host, settings.http.port
    try:
        socket.create_server((host, port)).close()  # SO_REUSEADDR, as the health server binds
    except OSError as error:
        print(
            f"imgsweep: IMGSWEEP_HTTP__HOST / IMGSWEEP_HTTP__PORT: cannot listen on {host}:{port} "
            f"({error.strerror or error})",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_CONFIG) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgsweep",
        description="Deletes delisted products' images from JD product image search collections.",
        epilog="Configuration comes from IMGSWEEP_* environment variables; see the README.",
    )
    parser.add_argument("--version", action="version", version=f"imgsweep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="consume delisted events and delete their images (the service)")
    run.set_defaults(handler=_run)

    check = commands.add_parser(
        "check-config", help="print the effective configuration, secrets masked; exit 2 if invalid"
    )
    check.add_argument(
        "--require-credentials",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fail when the API keys are missing and dry-run is off (default: on)",
    )
    check.add_argument(
        "--probe",
        action="store_true",
        help="also connect: check that the brokers answer and the input, outcome and dead-letter topics exist "
        "(and warn if the demand topic does not)",
    )
    check.add_argument(
        "--probe-timeout",
        type=_probe_timeout,
        default=10.0,
        metavar="SECONDS",
        help=f"how long --probe waits for the brokers, above 0 and at most {MAX_PROBE_TIMEOUT_SECONDS:g} (default: 10)",
    )
    check.set_defaults(handler=_check_config)

    add_sandbox_command(commands)
    add_replay_command(commands)
    add_control_commands(commands, settings=lambda: _settings_or_exit(require_credentials=False))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)
