"""The pieces of a local stack shared by ``python -m devkit demo``, the tests and the benchmarks.

A source checkout carries the local Kafka broker as a script (``deploy/local/kafka_local.py``: ``deploy/`` is
not a package), so it is loaded from its path; processes are stopped the same way everywhere: SIGTERM, a
deadline, then SIGKILL.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Final

__all__ = ["KAFKA_LOCAL", "clean_env", "free_port", "load_kafka_local", "stop_process"]

KAFKA_LOCAL: Final = Path(__file__).resolve().parent.parent / "deploy" / "local" / "kafka_local.py"


def load_kafka_local() -> ModuleType:
    """The broker script as a module (``LocalKafka``, ``fetch``). Raises FileNotFoundError outside a checkout."""
    if not KAFKA_LOCAL.is_file():
        raise FileNotFoundError(f"{KAFKA_LOCAL} not found: the local broker needs a source checkout of imgsweep")
    loaded = sys.modules.get("kafka_local")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("kafka_local", KAFKA_LOCAL)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {KAFKA_LOCAL}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # registered before it runs, as importlib's recipe does
    spec.loader.exec_module(module)
    return module


def clean_env() -> dict[str, str]:
    """This process's environment without any ``IMGSWEEP_*`` setting, for a child given its own settings."""
    return {name: value for name, value in os.environ.items() if not name.upper().startswith("IMGSWEEP_")}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], timeout: float = 30.0) -> bool:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Blocks until it is gone; False if it was killed."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        return False
    return True
