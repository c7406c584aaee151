"""``python -m devkit``: the development commands, beside the product's ``imgsweep`` CLI."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from devkit.demo import add_demo_command
from devkit.sample import add_sample_command


def parser() -> argparse.ArgumentParser:
    commands_parser = argparse.ArgumentParser(
        prog="python -m devkit",
        description="imgsweep's development commands (a source checkout's, not the product's).",
    )
    commands = commands_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_command(commands)
    add_sample_command(commands)
    return commands_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
