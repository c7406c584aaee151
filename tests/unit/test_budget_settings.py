"""The call budget's settings: defaults, a pack's spending limit, the max wait against the linger.

They are checked here, at start-up, and only here: ``service.budget.Allowance`` is built from them as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("IMGSWEEP_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "no-secrets"
    empty.mkdir()
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(empty))


def test_the_defaults_are_a_daily_allowance_with_a_tenth_in_reserve() -> None:
    settings = load_settings()
    assert settings.api.allowance == "daily"
    assert settings.api.daily_calls == 500
    assert (settings.api.reserve_calls, settings.api.reserve_fraction) == (0, 0.1)
    assert settings.api.price_per_call is None
    assert settings.api.daily_spend_limit is None
    assert settings.batch.max_wait_seconds == 600


def test_a_pack_with_a_spending_limit_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSWEEP_API__ALLOWANCE", "pack")
    monkeypatch.setenv("IMGSWEEP_API__PRICE_PER_CALL", "0.01")
    monkeypatch.setenv("IMGSWEEP_API__DAILY_SPEND_LIMIT", "5")
    monkeypatch.setenv("IMGSWEEP_API__RESERVE_CALLS", "20")
    api = load_settings().api
    assert (api.allowance, api.price_per_call, api.daily_spend_limit, api.reserve_calls) == ("pack", 0.01, 5, 20)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"IMGSWEEP_API__ALLOWANCE": "pack", "IMGSWEEP_API__DAILY_SPEND_LIMIT": "5"}, "PRICE_PER_CALL"),
        ({"IMGSWEEP_API__PRICE_PER_CALL": "0.01", "IMGSWEEP_API__DAILY_SPEND_LIMIT": "5"}, "ALLOWANCE=pack"),
        ({"IMGSWEEP_API__ALLOWANCE": "monthly"}, "IMGSWEEP_API__ALLOWANCE"),
        ({"IMGSWEEP_API__RESERVE_FRACTION": "1"}, "IMGSWEEP_API__RESERVE_FRACTION"),
        ({"IMGSWEEP_API__DAILY_CALLS": "0"}, "IMGSWEEP_API__DAILY_CALLS"),
        ({"IMGSWEEP_API__DAILY_CALLS": "-2"}, "IMGSWEEP_API__DAILY_CALLS"),
        ({"IMGSWEEP_API__RESERVE_CALLS": "-1"}, "IMGSWEEP_API__RESERVE_CALLS"),
        (
            {
                "IMGSWEEP_API__ALLOWANCE": "pack",
                "IMGSWEEP_API__PRICE_PER_CALL": "0",
                "IMGSWEEP_API__DAILY_SPEND_LIMIT": "5",
            },
            "IMGSWEEP_API__PRICE_PER_CALL",
        ),
        (
            {"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["x"]', "IMGSWEEP_ACCOUNTS__A__DAILY_CALLS": "-2"},
            "IMGSWEEP_ACCOUNTS__A__DAILY_CALLS",
        ),
        (
            {"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["x"]', "IMGSWEEP_ACCOUNTS__A__RESERVE_FRACTION": "1"},
            "IMGSWEEP_ACCOUNTS__A__RESERVE_FRACTION",
        ),
        ({"IMGSWEEP_BATCH__LINGER_SECONDS": "30", "IMGSWEEP_BATCH__MAX_WAIT_SECONDS": "10"}, "least IMGSWEEP_BATCH"),
    ],
)
def test_a_budget_that_cannot_be_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], expected: str
) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert expected in str(raised.value)
