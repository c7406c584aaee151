"""The brake's and the pauses' series (``service.control``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from service.metrics.labels import ACCOUNT_STOPS, BRAKE_SERIES, OTHER

__all__ = ["ControlMetrics"]


class ControlMetrics:
    """The brake's and the pauses' series (``service.control``)."""

    def __init__(self, registry: CollectorRegistry, accounts: Sequence[str]) -> None:
        """``accounts``: the ``account`` label's values (``imgsweep_account_stopped``; another name is not shown)."""
        self.brake_tripped = Gauge(
            "imgsweep_brake_tripped",
            "1 for each collection whose brake is tripped (its deletions stop on every replica until `imgsweep brake "
            f"resume`); only tripped collections have a series, at most {BRAKE_SERIES} (the rest: collection=other, "
            "their number; 0 while there are none, so the series is always there).",
            ["collection"],
            registry=registry,
        )
        self.brake_trips = Counter(
            "imgsweep_brake_trips",
            "Brakes this replica tripped (a collection over its images an hour).",
            registry=registry,
        )
        self.brake_busiest_images = Gauge(
            "imgsweep_brake_busiest_collection_images",
            "The most images one collection had handed to calls by this replica in the last hour (what the brake "
            "compares with its limit).",
            registry=registry,
        )
        self.brake_limit_images = Gauge(
            "imgsweep_brake_max_images_per_hour",
            "IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR (0: no brake).",
            registry=registry,
        )
        self.paused = Gauge(
            "imgsweep_paused",
            "Accounts and collections paused on purpose (`imgsweep pause`), by kind.",
            ["kind"],
            registry=registry,
        )
        self.account_stopped = Gauge(
            "imgsweep_account_stopped",
            "1 while deletions of the account, or of a collection of it, are stopped by the control topic: why=paused "
            "(`imgsweep pause`, ImgsweepPausedForLong) or why=braked (a collection's brake, ImgsweepBrakeTripped). "
            "Their events rightly hold the account's commits and outcomes, so its stall alerts leave it out.",
            ["account", "why"],
            registry=registry,
        )
        self.control_caught_up = Gauge(
            "imgsweep_control_caught_up",
            "1 once the control topic was read up to its end: until then no call starts.",
            registry=registry,
        )
        for kind in ("account", "collection"):
            self.paused.labels(kind)
        self._accounts = tuple(accounts)
        for account in self._accounts:
            for why in ACCOUNT_STOPS:
                self.account_stopped.labels(account, why)
        self.brake_tripped.labels(OTHER).set(0)
        self._brake_series: set[str] = {OTHER}

    def brakes_tripped(self, collections: Iterable[str]) -> None:
        """The collections whose brake is tripped now: a series each (the first ``BRAKE_SERIES`` by name), the
        rest counted under ``other``; a collection resumed loses its series."""
        ordered = sorted(set(collections))
        shown, rest = ordered[:BRAKE_SERIES], ordered[BRAKE_SERIES:]
        wanted = {collection: 1.0 for collection in shown}
        wanted[OTHER] = float(len(rest))
        for gone in self._brake_series - set(wanted):
            self.brake_tripped.remove(gone)
        for collection, value in wanted.items():
            self.brake_tripped.labels(collection).set(value)
        self._brake_series = set(wanted)

    def accounts_stopped(self, stopped: Iterable[tuple[str, str]]) -> None:
        """The (account, why) pairs stopped now: 1 each, every other pair of a known account 0."""
        now = set(stopped)
        for account in self._accounts:
            for why in ACCOUNT_STOPS:
                self.account_stopped.labels(account, why).set(1.0 if (account, why) in now else 0.0)
