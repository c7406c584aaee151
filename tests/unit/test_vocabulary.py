"""The vocabulary is the bottom floor: it imports nothing of imgsweep's, and what sits just above it never
reaches up into the pipeline."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import service
from service.vocabulary import DeadLetterReason

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
    modules = [*sorted((SERVICE / "metrics").glob("*.py")), SERVICE / "tracing.py"]
    assert len(modules) > 2, "the metrics package's modules"
    for module in modules:
        upward = {name for name in imported_modules(module) if name.startswith("service.pipeline")}
        assert upward == set(), module


def test_a_failed_image_dead_letters_its_event_for_imgsweeps_own_reason_else_as_item_failed() -> None:
    for own in (DeadLetterReason.RETRIES_EXHAUSTED, DeadLetterReason.INTERNAL_ERROR, DeadLetterReason.NO_ACCOUNT):
        assert DeadLetterReason.of_failed_image(str(own)) is own
    for api_code in ("NO_RELATIVE_COLLECTION", "invalid_event", "item_failed", "", None):
        assert DeadLetterReason.of_failed_image(api_code) is DeadLetterReason.ITEM_FAILED


def test_the_dead_letter_ranks_are_distinct_and_put_imgsweeps_own_failures_first() -> None:
    ranked = sorted(DeadLetterReason, key=lambda reason: reason.rank)
    assert len({reason.rank for reason in DeadLetterReason}) == len(DeadLetterReason)
    assert ranked[:4] == [
        DeadLetterReason.INTERNAL_ERROR,
        DeadLetterReason.RETRIES_EXHAUSTED,
        DeadLetterReason.NO_ACCOUNT,
        DeadLetterReason.ITEM_FAILED,
    ]
