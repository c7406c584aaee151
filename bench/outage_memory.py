"""Memory over a whole-cluster outage: imgsweep's RSS before, during and after its only broker is down.

``python -m bench.outage_memory [--down SECONDS] [--phase SECONDS]``: a broker of its own, the sandbox, one
imgsweep that has done a few hundred events and then idles; RSS is read every second for ``--phase`` seconds
with the broker up, ``--down`` seconds with it stopped, and ``--phase`` seconds after it is back. Prints the
least-squares slope of each phase in MB/hour (docs/reliability.md, "Outputs or Kafka unavailable"). Never asserts.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from devkit.fixtures import TEST_SETTINGS
from devkit.processes import SandboxProcess, ServiceProcess, Topics, consume_all, event, load_kafka_local, produce

__all__ = ["slope_mb_per_hour"]


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, MB) readings, in MB per hour."""
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return 0.0 if var == 0 else cov / var * 3600


def _sample(service: ServiceProcess, seconds: float, began: float) -> list[tuple[float, float]]:
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append((time.monotonic() - began, service.usage().rss_mb))
        time.sleep(1.0)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outage_memory", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--down", type=float, default=60.0)
    parser.add_argument("--phase", type=float, default=60.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgsweep-outage-"))
    kafka_local = load_kafka_local()
    kafka_local.fetch()
    broker = kafka_local.LocalKafka(data_dir=work / "kafka")
    bootstrap: str = broker.start()
    sandbox = SandboxProcess.start(work / "sandbox.log", ["--qps", "0"])
    service: ServiceProcess | None = None
    try:
        names = Topics.create(AdminClient({"bootstrap.servers": bootstrap}), f"o-{uuid.uuid4().hex[:8]}", partitions=3)
        sandbox.seed({"shoes": [(f"p{n}", f"i{n}.jpg") for n in range(500)]})
        secrets = work / "secrets"
        secrets.mkdir()
        service = ServiceProcess.start(
            bootstrap=bootstrap, topics=names, endpoint=sandbox.endpoint, log_path=work / "service.log",
            secrets_dir=secrets, settings={**TEST_SETTINGS, "API__QPS": "20"},
        )  # fmt: skip
        produce(bootstrap, names.input, [event(f"e{n}", "shoes", f"p{n}", [f"i{n}.jpg"]) for n in range(500)])
        consume_all(bootstrap, names.outcome, expect=500, timeout=120)
        time.sleep(10)  # settle
        began = time.monotonic()
        before = _sample(service, args.phase, began)
        outage = threading.Thread(target=broker.restart, kwargs={"down_seconds": args.down})
        outage.start()
        during = _sample(service, args.down, began)
        outage.join()
        after = _sample(service, args.phase, began)
        ready_after = service.get("/readyz").status_code
        alive = service.process.poll() is None
    finally:
        if service is not None:
            service.stop()
        sandbox.stop()
        broker.stop()
    for name, samples in (("broker up, idle", before), ("broker down", during), ("broker back", after)):
        rss = [m for _, m in samples]
        print(
            f"{name}: {len(samples)} readings, RSS {min(rss):.1f}-{max(rss):.1f} MB, "
            f"slope {slope_mb_per_hour(samples):+.1f} MB/hour"
        )
    print(f"service alive: {alive}, /readyz after: {ready_after}; log {work / 'service.log'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
