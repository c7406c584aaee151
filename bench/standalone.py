"""What a bench run on its own shares (``python -m bench.light_load``, ``bench.skew``, ``bench.simulated_day``):
a broker of its own unless given one, and its section of a report (``--update docs/performance.md``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.machine import Machine
from devkit.processes import load_kafka_local

__all__ = ["broker_and_machine", "replace_section", "section_parser", "write_section"]


def section_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """``python -m <module>``'s options, ``--update`` first, described by the first paragraph of ``doc``."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").split("\n\n")[0])
    parser.add_argument("--update", type=Path, help="replace this section of a report (docs/performance.md)")
    return parser


def write_section(lines: Sequence[str], heading: str, update: Path | None) -> int:
    """Prints the section and, given ``update``, puts it into that report; the exit status (0)."""
    if update:
        replace_section(update, heading, lines)
    print("\n".join(lines))
    return 0


def broker_and_machine(stack: ExitStack, bootstrap: str | None) -> tuple[str, Machine]:
    """The broker to use (``bootstrap``, else KAFKA_BOOTSTRAP_SERVERS, else a local one started now and stopped
    when ``stack`` closes) and the machine as it is before the run. Starting a broker blocks for a few seconds (a
    missing jar cache is fetched first)."""
    bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    kafka_local = load_kafka_local()
    machine = Machine.now(kafka_version=kafka_local.KAFKA_VERSION, external_broker=bootstrap is not None)
    if bootstrap is None:
        kafka_local.fetch()
        broker = kafka_local.LocalKafka(data_dir=None)
        bootstrap = str(broker.start())
        stack.callback(broker.stop)
    return bootstrap, machine


def replace_section(path: Path, heading: str, lines: Sequence[str]) -> None:
    """Puts the section that starts with ``heading`` into a report: in place of its previous version, else before
    "## Reproduce" (else at the end); the rest of the file stays as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    section = "\n".join(lines).rstrip("\n") + "\n\n"
    if heading in text:
        before, rest = text.split(heading, 1)
        tail = rest.split("\n## ", 1)
        text = before + section + ("## " + tail[1] if len(tail) > 1 else "")
    elif "\n## Reproduce" in text:
        before, after = text.split("\n## Reproduce", 1)
        text = before.rstrip("\n") + "\n\n" + section + "## Reproduce" + after
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    path.write_text(text, encoding="utf-8")
