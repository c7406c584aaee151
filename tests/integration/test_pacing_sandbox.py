"""The real client's pacing against a sandbox process at the account's own QPS, while this process is busy.

A 10043 is a wasted call. The sandbox counts calls over a sliding second as they arrive; a worker thread's
request can be held up on its way out while another thread holds the GIL, and two requests held up differently
would arrive closer than they left the limiter. The limiter paces by when requests actually left, so a busy
process still never exceeds the limit.
"""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import time, timedelta, timezone

import pytest

from devkit.fixtures import FIGURES, SandboxFactory
from devkit.processes import ACCESS_KEY, SECRET_KEY
from service.api.classify import ResponsePolicy
from service.api.client import DeleteClient, new_http_client
from service.api.models import DeleteBatch, DeleteItem
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.api.retry import RetryPolicy
from service.api.signing import Credentials

pytestmark = pytest.mark.integration

QPS = 2
CALLS = 16
WORKERS = 4


def _busy_python(stop: threading.Event) -> None:
    """Holds the GIL as a poll loop decoding a backlog would: pure Python, released only when forced."""
    document = {"ids": [{"product_id": f"p{n}", "image_id": f"{n}.jpg"} for n in range(200)]}
    while not stop.is_set():
        json.loads(json.dumps(document))


def test_calls_from_a_busy_process_stay_within_the_qps_limit(sandbox_process: SandboxFactory) -> None:
    sandbox = sandbox_process("--qps", str(QPS), "--quota", "-1")
    stop = threading.Event()
    client = DeleteClient(
        http=new_http_client(connect=2, read=5, write=2, pool=30, connections=WORKERS),
        endpoint=sandbox.endpoint,
        credentials=Credentials(ACCESS_KEY, SECRET_KEY),
        region="cn-north-1",
        service="aiapi",
        policy=ResponsePolicy(),
        retry=RetryPolicy(max_attempts=6, max_elapsed_seconds=60, initial_seconds=0.5, max_seconds=2),
        limiter=RateLimiter(QPS),
        quota=QuotaGate(timezone(timedelta(hours=8)), time(0, 0)),
        stop=stop,
        rng=random.Random(3),
    )
    batches = [
        DeleteBatch(f"c{n % 3}", tuple(DeleteItem(f"p{n}-{i}", f"{n}-{i}.jpg") for i in range(200)), f"b{n}")
        for n in range(CALLS)
    ]
    hogs = [threading.Thread(target=_busy_python, args=(stop,)) for _ in range(2)]
    for hog in hogs:
        hog.start()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(client.delete, batches))
    finally:
        stop.set()
        for hog in hogs:
            hog.join()
    stats = sandbox.stats()
    FIGURES.append(
        f"pacing: {CALLS} calls of 200 items from {WORKERS} threads beside 2 busy ones at {QPS} QPS: "
        f"calls by code {stats['calls_by_code']}, most in one sliding second {stats['max_observed_qps']}"
    )
    assert all(result.api_calls == 1 for result in results)
    assert stats["calls_by_code"] == {"10000": CALLS}
    assert stats["max_observed_qps"] <= QPS
