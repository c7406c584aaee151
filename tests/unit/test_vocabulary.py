"""The vocabulary is the bottom floor: it imports nothing of imgsweep's, and what sits just above it never
reaches up into the pipeline."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import service

SERVICE = Path(service.__file__).parent


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
    return found


def test_the_vocabulary_imports_only_the_standard_library() -> None:
    outside = {
        name
        for name in imported_modules(SERVICE / "vocabulary.py")
        if name.partition(".")[0] not in sys.stdlib_module_names
    }
    assert outside == set()


def test_metrics_and_tracing_import_nothing_from_the_pipeline() -> None:
    for module in ("metrics.py", "tracing.py"):
        upward = {name for name in imported_modules(SERVICE / module) if name.startswith("service.pipeline")}
        assert upward == set(), module
