"""``imgsweep pause|resume --account NAME|--collection NAME`` and ``imgsweep brake status|resume --collection NAME``.

Each reads or writes the control topic (made when missing) with the service's own Kafka settings, checked as
``run`` checks them; every replica obeys within seconds. One line says what was done (exit 0); a problem is one
line too (exit 2).
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from service.control.state import ControlTable, Kind, State, Stop, Target
from service.settings import ConfigError, Settings

__all__ = ["add_control_commands"]

EXIT_OK = 0
EXIT_ERROR = 2

SettingsLoader = Callable[[], Settings]
Action = Callable[[Settings, argparse.Namespace], str]


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "someone"
    return f"{user}@{socket.gethostname()}"


def _target(args: argparse.Namespace) -> Target:
    return Target(Kind.ACCOUNT, args.account) if args.account else Target(Kind.COLLECTION, args.collection)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _current(settings: Settings) -> ControlTable:
    from service.control.topic import ensure_topic, read_table  # noqa: PLC0415 - keeps `--help` light

    ensure_topic(settings)
    return read_table(settings)


def _write(settings: Settings, target: Target, stop: Stop | None) -> None:
    from service.control.topic import write_stop  # noqa: PLC0415 - keeps `--help` light

    write_stop(settings, target, stop)


def _pause(settings: Settings, args: argparse.Namespace) -> str:
    target = _target(args)
    before = _current(settings).stop_of(target)
    if before is not None and before.state is State.PAUSED:
        return f"{target} is paused already ({before.describe()})"
    _write(settings, target, Stop(State.PAUSED, _operator(), _now(), args.reason or ""))
    return (
        f"{target} paused on {settings.kafka.control_topic}: every replica stops starting its deletions within "
        f"seconds (calls under way finish); its events wait, uncommitted. Undo: imgsweep resume "
        f"--{target.kind} {target.name}"
    )


def _resume(settings: Settings, args: argparse.Namespace) -> str:
    target = _target(args)
    before = _current(settings).stop_of(target)
    if before is None:
        return f"{target} is not paused: nothing to do"
    if before.state is State.BRAKED:
        raise ConfigError(
            f"{target}'s brake is tripped ({before.describe()}): check the catalog, then "
            f"imgsweep brake resume --collection {target.name}"
        )
    _write(settings, target, None)
    return f"{target} resumed: every replica starts its deletions again within seconds"


def _brake_resume(settings: Settings, args: argparse.Namespace) -> str:
    target = Target(Kind.COLLECTION, args.collection)
    before = _current(settings).stop_of(target)
    if before is None:
        return f"{target}'s brake is not tripped: nothing to do"
    if before.state is not State.BRAKED:
        raise ConfigError(
            f"{target} is paused, not braked ({before.describe()}): imgsweep resume --collection {target.name}"
        )
    _write(settings, target, None)
    limit = settings.brake.max_images_per_hour
    return (
        f"{target}'s brake released: its waiting deletions go within seconds, and its hour starts again on every "
        f"replica (up to {limit} more images an hour before it trips again)"
    )


def _brake_status(settings: Settings, _args: argparse.Namespace) -> str:
    stops = _current(settings).stops()
    if not stops:
        return f"no brake is tripped and nothing is paused ({settings.kafka.control_topic})"
    braked = [target.name for target, stop in stops.items() if stop.state is State.BRAKED]
    lines = [
        f"{len(braked)} collection(s) braked: {', '.join(braked)}" if braked else "no brake is tripped",
        *(f"  {target}: {stop.describe()}" for target, stop in stops.items()),
    ]
    return "\n".join(lines)


def _handler(name: str, action: Action, settings: SettingsLoader) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        from confluent_kafka import KafkaException  # noqa: PLC0415 - keeps `--help` light

        loaded = settings()
        try:
            print(action(loaded, args))
        except ConfigError as error:
            print(f"imgsweep {name}: {error}", file=sys.stderr)
            return EXIT_ERROR
        except KafkaException as error:
            print(f"imgsweep {name}: kafka: {error.args[0].str() if error.args else error}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK

    return handle


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--account", metavar="NAME", help="every collection of this account (IMGSWEEP_ACCOUNTS__<NAME>)")
    which.add_argument("--collection", metavar="NAME", help="this collection, whichever account holds it")


def add_control_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], settings: SettingsLoader
) -> None:
    """``pause``, ``resume`` and ``brake``; ``settings`` loads and checks the configuration (exit 2 if invalid)."""
    pause = commands.add_parser(
        "pause",
        help="stop an account's or a collection's deletions on every replica (an incident)",
        description=__doc__,
    )
    _target_arguments(pause)
    pause.add_argument("--reason", help="why, for whoever looks at `imgsweep brake status` next")
    pause.set_defaults(handler=_handler("pause", _pause, settings))

    resume = commands.add_parser("resume", help="start a paused account's or collection's deletions again")
    _target_arguments(resume)
    resume.set_defaults(handler=_handler("resume", _resume, settings))

    brake = commands.add_parser("brake", help="the brake on mass deletes: status, resume")
    actions = brake.add_subparsers(dest="brake_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="the collections whose brake is tripped, and what is paused")
    status.set_defaults(handler=_handler("brake status", _brake_status, settings))
    release = actions.add_parser(
        "resume", help="let a braked collection's waiting deletions go, once the catalog is checked"
    )
    release.add_argument("--collection", metavar="NAME", required=True)
    release.set_defaults(handler=_handler("brake resume", _brake_resume, settings))
