"""``python -m bench.deletions_memory [--products N] [--before DIR]``: what the memory of deletions costs in
memory, and what restoring it at its bound costs in time and peak memory (docs/performance.md, "Memory of
deletions").

Two figures, each in a fresh Python process of its own so that one's memory never shows in the other's:

- **bytes a product**: tracemalloc's traced memory after ``DeletionMemory.deleted`` for 100,000 products, divided
  by them, with 1 and with 4 images a product; ids are new strings each, as a decoded event's are, of the sample
  stream's lengths (``devkit.sample``: 11-character product ids, 17-character image ids, collection ``apparel``);
- **a restore at the bound**: one partition's changelog of ``--products`` products of 4 images each (every record
  made as the reader hands it over, never held beforehand, as librdkafka hands them over) read by
  ``changelog.restore`` into a ``Ledger`` whose memory is bounded at ``--products``: the seconds it took, the
  process's RSS before (Python and imgsweep imported), at its peak (``VmHWM``) and after. librdkafka's own part of
  a real restore (fetching, its 16 MB prefetch) is not in it: this is what Python does on the poll loop. Its CPU
  seconds are given beside the wall clock's, which a loaded machine stretches;
- **the steady state at the bound**: ``deleted`` for twice ``--products`` products of 4 images, bounded at
  ``--products`` (the older half forgotten on the way): the process's RSS then, what a replica holds at its bound
  after a long run (freed entries' memory is reused by new ones, not returned).

``--before DIR``: also measure the code of another tree, side by side (``DIR/service``; make one with
``git archive <commit> service | tar -x -C DIR``). A reader whose ``read`` is not a generator is given the list
its real reader built. Prints the figures; never asserts.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent.parent
PRODUCTS_FOR_BYTES: Final = 100_000
WALL_MS: Final = 1_800_000_000_000


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _bytes_a_product(images: int) -> dict[str, Any]:
    from service.pipeline.deletions import DeletionMemory  # noqa: PLC0415 - from the tree measured (``_child``)

    memory = DeletionMemory(window_seconds=7 * 86_400, max_products=10 * PRODUCTS_FOR_BYTES, wall_ms=lambda: WALL_MS)
    events = [_event(n, images).encode() for n in range(PRODUCTS_FOR_BYTES)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for raw in events:
        event = json.loads(raw)  # new strings, as a decoded event's
        memory.deleted(0, event["collection"], event["product"], event["images"])
    del event
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"images": images, "bytes_a_product": used / PRODUCTS_FOR_BYTES}


def _event(n: int, images: int) -> str:
    product = str(10_000_000_000 + n)
    return json.dumps(
        {"collection": "apparel", "product": product, "images": [f"{product}-{i}.jpg" for i in range(images)]}
    )


def _changelog(products: int, images: int) -> Iterator[tuple[bytes | None, bytes | None]]:
    """As ``deleted`` writes them (formatted here without a JSON encoder: the reader's part is librdkafka's)."""
    at = WALL_MS - 1000
    for n in range(10_000_000_000, 10_000_000_000 + products):
        ids = b",".join(b'"%d-%d.jpg"' % (n, i) for i in range(images))
        yield b'["apparel","%d"]' % n, b'{"at":%d,"images":[%s]}' % (at, ids)


def _restore(products: int, images: int) -> dict[str, Any]:
    from service.metrics import Metrics  # noqa: PLC0415 - from the tree measured (``_child``), as below
    from service.pipeline import changelog  # noqa: PLC0415
    from service.pipeline.deletions import DeletionMemory  # noqa: PLC0415
    from service.pipeline.ledger import Ledger  # noqa: PLC0415

    streamed = inspect.isgeneratorfunction(changelog.ChangelogReader.read)

    class Reader:
        def read(self, _partition: int) -> Any:
            records = _changelog(products, images)
            return records if streamed else list(records)

    memory = DeletionMemory(window_seconds=7 * 86_400, max_products=products, wall_ms=lambda: WALL_MS)
    ledger = Ledger("input", memory)
    metrics = Metrics()
    rss_before = _status_mb("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    changelog.restore(Reader(), ledger, [0], metrics)  # type: ignore[arg-type]
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return {
        "streamed": streamed,
        "remembered": ledger.remembered(),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rss_before_mb": rss_before,
        "rss_peak_mb": _status_mb("VmHWM"),
        "rss_after_mb": _status_mb("VmRSS"),
    }


def _steady(products: int, images: int) -> dict[str, Any]:
    from service.pipeline.deletions import DeletionMemory  # noqa: PLC0415 - from the tree measured (``_child``)

    memory = DeletionMemory(window_seconds=7 * 86_400, max_products=products, wall_ms=lambda: WALL_MS)
    rss_before = _status_mb("VmRSS")
    for n in range(2 * products):
        event = json.loads(_event(n, images))
        memory.deleted(0, event["collection"], event["product"], event["images"])
    return {"remembered": len(memory), "rss_before_mb": rss_before, "rss_after_mb": _status_mb("VmRSS")}


def _child(source: str, what: str, products: int, images: int) -> None:
    sys.path.insert(0, source)
    if what == "bytes":
        result = _bytes_a_product(images)
    else:
        result = _restore(products, images) if what == "restore" else _steady(products, images)
    print(json.dumps(result))


def _run(source: Path, what: str, products: int, images: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(source), what, str(products), str(images)],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.deletions_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=500_000, help="the restore's products and bound")
    parser.add_argument("--before", type=Path, help="a tree whose service/ to measure too, side by side")
    args = parser.parse_args(argv)
    trees = [("after", HERE)] + ([("before", args.before.resolve())] if args.before else [])
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load[0]:.2f} at the start; {args.products:,} products restored")
    for name, tree in trees:
        for images in (1, 4):
            figure = _run(tree, "bytes", 0, images)
            print(f"{name}: {images} image(s): {figure['bytes_a_product']:.0f} bytes a product (tracemalloc)")
    for name, tree in trees:
        r = _run(tree, "restore", args.products, 4)
        how = "streamed" if r["streamed"] else "a list"
        print(
            f"{name}: restore of {r['remembered']:,} products of 4 images ({how}): {r['seconds']:.1f} s"
            f" ({r['cpu_seconds']:.1f} s of CPU), RSS {r['rss_before_mb']:.0f} MB before,"
            f" {r['rss_peak_mb']:.0f} MB at its peak, {r['rss_after_mb']:.0f} MB after"
        )
    for name, tree in trees:
        r = _run(tree, "steady", args.products, 4)
        print(
            f"{name}: {r['remembered']:,} products of 4 images after {2 * args.products:,} deletions: RSS"
            f" {r['rss_before_mb']:.0f} MB before, {r['rss_after_mb']:.0f} MB after"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
