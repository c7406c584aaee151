"""The run written down: docs/performance.md (every figure, the machine, the command, the date) and a PNG."""

from __future__ import annotations

import math
import os
from pathlib import Path

from bench.figures import Figure, Results
from bench.gil_profile import GilProfile

__all__ = ["write_plot", "write_report"]


def _value(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _met(figure: Figure) -> str:
    return {True: "yes", False: "**no**", None: "–"}[figure.met]


def _load(load: tuple[float, float, float] | None) -> str:
    return "n/a" if load is None else " / ".join(f"{value:.2f}" for value in load)


def _summary_table(figures: list[Figure]) -> list[str]:
    lines = ["| figure | ratio | target | met | measured as |", "|---|---:|---|---|---|"]
    lines += [
        f"| {f.name} | {_value(f.value)} | {f.target_text} | {_met(f)} | {f.measured} |"
        for f in figures
    ]
    return lines


def _profile_lines(profile: GilProfile | str) -> list[str]:
    if isinstance(profile, str):
        return [f"Profile skipped: {profile}."]
    lines = [
        f"py-spy sampled a second imgsweep, draining the same backlog, {profile.rate} times a second for "
        f"{profile.seconds:.0f} s, recording a stack only while some thread held the GIL: {profile.samples:,} "
        f"samples, so **the GIL was held {profile.gil_busy:.0%} of the wall clock**. Each sample is put in the stage "
        "of its innermost recognised frame (bench/gil_profile.py).",
        "",
        "| stage | share of GIL-holding samples |",
        "|---|---:|",
    ]
    lines += [f"| {stage} | {share:.1%} |" for stage, share in profile.shares()]
    return lines


def _by_key(figures: list[Figure]) -> dict[str, Figure]:
    return {figure.key: figure for figure in figures}


def write_report(results: Results, figures: list[Figure], out: Path, plot: Path) -> None:
    r, m, f = results, results.machine, _by_key(figures)
    backlog = r.backlog
    plot_link = os.path.relpath(plot, out.parent)
    images_per_event = backlog.images / max(1, backlog.events - backlog.kinds.get("invalid", 0))
    drain_calls_per_second = r.drain.api_calls / r.drain.seconds if r.drain.seconds else math.nan
    lines = [
        "# Performance",
        "",
        f"Measured on {m.date} by `{r.command}` (whole run {r.seconds / 60:.1f} min). Generated: edit "
        "`bench/report.py`, not this file, and run the command again to refresh it. How each figure is measured "
        "is in `bench/__init__.py`.",
        "",
        "Every figure is a ratio of two quantities measured side by side in this one run, on the same broker and "
        "the same pre-loaded events, so the machine's speed mostly cancels out; absolute rates are given for "
        "context only.",
        "",
        "## Summary",
        "",
        *_summary_table(figures),
        "",
        f"![The figures of this run]({plot_link})",
        "",
        "## Machine and conditions",
        "",
        f"- {m.cores} cores ({m.cpu_model}), {m.memory_gib:.0f} GiB, {m.system}",
        f"- {m.python}; confluent-kafka {m.confluent_kafka} (librdkafka {m.librdkafka})",
        f"- Apache Kafka {m.kafka_version}, one KRaft node on loopback "
        + ("(a broker given with --bootstrap)" if m.external_broker else "(deploy/local/kafka_local.py)"),
        f"- Load average (1/5/15 min) at the start {_load(m.load_start)}, at the end {_load(m.load_end)}. The "
        "broker, the sandbox, imgsweep (or the peer) and the bench itself share these cores, and so may other "
        "work on the machine: absolute rates move with that, ratios much less.",
        "",
        "## The data",
        "",
        f"{backlog.events:,} events from `service.sample.SampleStream` (seeded) pre-loaded on a "
        f"{backlog.partitions}-partition topic in {backlog.seconds:.0f} s: "
        + ", ".join(f"{count:,} {kind}" for kind, count in sorted(backlog.kinds.items()))
        + f"; {backlog.images:,} images ({images_per_event:.2f} per valid event), {backlog.present_images:,} of "
        "them stored in the sandbox first (the rest are already gone, as in production). Every phase reads this "
        "same topic from the start with its own consumer group, except light load, which produces its own stream.",
        "",
        "## Details",
        "",
        "### Throughput overhead",
        "",
        f"The raw consumer (`Consumer.consume(num_messages=500)`, counting records, no decoding) read the backlog "
        f"at {r.raw.events_per_second:,.0f} events/s. imgsweep, as its own process (`python -m service run`, "
        f"IMGSWEEP_API__QPS=1000, every other setting at its default), against a sandbox with no QPS limit, no "
        f"quota and no latency, finished (outcome or dead letter acknowledged) {r.drain.events_per_second:,.0f} "
        f"events/s: **{_value(f['overhead'].value)}** of the raw rate (target ≥ 0.5). Both rates are taken "
        "between 10 % and 90 % of the backlog. imgsweep made "
        f"{r.drain.api_calls:,.0f} calls ({drain_calls_per_second:,.1f}/s) of "
        f"{r.drain.batch_items_mean:.1f} items on average.",
        "",
        "### Where the time goes",
        "",
        *_profile_lines(r.profile),
        "",
        "### Batch fill and QPS use under backlog",
        "",
        f"imgsweep at IMGSWEEP_API__QPS=2 against the sandbox at its default 2 QPS, with the backlog waiting: over "
        f"{r.qps.seconds:.1f} s (from one successful call to another) the sandbox counted {r.qps.calls_ok} "
        f"successful calls ({r.qps.calls_per_second:.3f}/s, **{_value(f['qps_use'].value)}** of the limit), "
        f"{r.qps.calls_10043} answers 10043 out of {r.qps.calls_total} calls, and {r.qps.items:,} items "
        f"(**{r.qps.items_per_call:.1f} per call**, {_value(f['batch_fill'].value)} of 200). The rate limiter "
        "spaces calls 2 % further apart than 1/QPS on purpose (service/api/rate_limit.py), which caps QPS use "
        "at 0.98.",
        "",
        "### imgsweep and the naive peer",
        "",
        "`bench/naive_peer.py` is the afternoon script: consume one event, sign and send one call with its "
        "images, commit. It paces itself at 2 QPS and retries 10043 after a second, so it loses nothing to the "
        f"limit; it ran against a fresh sandbox with the same settings and images. Over {r.peer.seconds:.1f} s it "
        f"made {r.peer.calls_ok} successful calls ({r.peer.calls_per_second:.3f}/s) carrying {r.peer.items:,} "
        f"items and deleted {r.peer.deleted:,} images ({r.peer.deleted_per_second:.2f}/s); imgsweep deleted "
        f"{r.qps.deleted_per_second:.1f}/s with {_value(f['peer_calls'].value)}× the peer's calls: "
        f"**{_value(f['peer_deletions'].value)}× the deletions per second**, at "
        f"{_value(f['calls_per_image'].value)}× its calls per image. The peer's own tally: {r.peer_summary}.",
        "",
        "### Light load",
        "",
        f"{r.light.events} valid events (of {int(r.plan['light_rate'] * r.plan['light_seconds'])} produced) at "
        f"{r.plan['light_rate']:g} events/s for {r.plan['light_seconds']:g} s, imgsweep with every setting at "
        f"its default (linger {r.light_linger_seconds:g} s, 2 QPS), the sandbox at 2 QPS with "
        f"{r.light_latency_seconds * 1000:g} ms latency per call. Latency is from each event's CreateTime to the "
        "broker's LogAppendTime of its outcome (the outcome topic is created with "
        f"`message.timestamp.type=LogAppendTime`), for the {r.light.outcomes} outcomes that arrived: "
        f"**p50 {r.light.p50:.2f} s, p99 {r.light.p99:.2f} s**, i.e. {_value(f['light_p50'].value)} and "
        f"{_value(f['light_p99'].value)} × (linger + API latency). imgsweep made {r.light.calls_per_second:.2f} "
        "calls/s meanwhile: one call per collection per linger period, so with the sample's 4 collections a 2 s "
        "linger already uses about the whole 2 QPS, and some batches wait for a rate-limiter slot after their "
        "linger.",
        "",
        "### Memory and CPU",
        "",
        f"While the {r.drain.events:,}-event backlog drained, the imgsweep process peaked at "
        f"**{r.drain.peak_rss_mb:.0f} MB RSS** (VmHWM; budget 200 MB) with IMGSWEEP_KAFKA__MAX_PENDING_EVENTS at its "
        f"default 20,000, and used {r.drain.cpu_seconds:.1f} CPU seconds (user+sys, all threads): "
        f"**{r.drain.cpu_seconds * 1000 / r.drain.events:.3f} CPU s per 1,000 events**, "
        f"{_value(f['cpu_per_event'].value)}× the raw consumer's {r.raw_cpu_seconds * 1000 / r.raw.events:.4f}. "
        f"It kept {_value(f['cpu_cores'].value)} cores busy on average.",
        "",
        "### The sandbox's capacity",
        "",
        f"The sandbox pinned to one core (`taskset -c 0`), called back to back over 4 keep-alive connections with "
        f"{r.capacity.items_per_call}-item calls signed beforehand (client pinned to the other core): "
        f"{r.capacity.calls_per_second:,.0f} calls/s, {_value(f['sandbox_headroom'].value)}× what imgsweep asked "
        "of it while draining, so the instant sandbox does not limit the throughput figure.",
        "",
        "## Reproduce",
        "",
        "```sh",
        ".venv/bin/pip install -e '.[dev,bench]'   # matplotlib for the plot, py-spy for the profile",
        ".venv/bin/python -m bench.run             # the full run, 10-15 min on 2 cores",
        ".venv/bin/python -m bench.run --quick --out /tmp/perf.md   # a smoke run in about a minute",
        "```",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")


def write_plot(results: Results, figures: list[Figure], path: Path) -> None:
    """Six panels: the scorecard, throughput, the drain, the 2-QPS windows, light-load latency, the profile."""
    import matplotlib  # noqa: PLC0415 - optional dependency, loaded only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    r = results
    fig, axes = plt.subplots(3, 2, figsize=(15, 15), constrained_layout=True)
    fig.suptitle(
        f"imgsweep performance, {r.machine.date}, {r.machine.cores} cores, {r.machine.python}, "
        f"Kafka {r.machine.kafka_version}  ({r.command})",
        fontsize=12,
    )

    ax = axes[0][0]
    scored = [figure for figure in figures if figure.score is not None]
    names = [f"{f.name}\n{_value(f.value)} (target {f.target_text})" for f in scored]
    scores = [min(f.score or 0.0, 3.0) for f in scored]
    colours = ["tab:green" if f.met else "tab:red" for f in scored]
    ax.barh(names, scores, color=colours)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("value ÷ target (≤-targets inverted): right of the dashed line = target met; capped at 3")
    ax.set_title("Figures with a target")
    ax.tick_params(axis="y", labelsize=8)

    ax = axes[0][1]
    labels = ["raw consumer", "imgsweep"]
    rates = [r.raw.events_per_second, r.drain.events_per_second]
    bars = ax.bar(labels, rates, color=["tab:gray", "tab:blue"])
    ax.set_yscale("log")
    ax.set_ylabel("events/s (log scale)")
    ax.set_title(f"Backlog throughput, same topic and data: ratio {_value(figures[0].value)}")
    for bar, rate in zip(bars, rates, strict=True):
        ax.annotate(f"{rate:,.0f}/s", (bar.get_x() + bar.get_width() / 2, rate), ha="center", va="bottom")

    ax = axes[1][0]
    times = [t for t, _, _ in r.drain.timeline]
    ax.plot(times, [done / 1000 for _, done, _ in r.drain.timeline], color="tab:blue", label="events done")
    ax.set_xlabel("seconds since imgsweep was ready")
    ax.set_ylabel("events done (thousands)", color="tab:blue")
    twin = ax.twinx()
    twin.plot(times, [rss for _, _, rss in r.drain.timeline], color="tab:orange", label="RSS")
    twin.axhline(200, color="tab:red", linestyle="--", linewidth=1)
    twin.annotate("200 MB budget", (times[0] if times else 0, 200), va="bottom", color="tab:red")
    twin.set_ylabel("RSS (MB)", color="tab:orange")
    twin.set_ylim(0, max(220.0, r.drain.peak_rss_mb * 1.1))
    ax.set_title(f"Draining {r.drain.events:,} events: peak RSS {r.drain.peak_rss_mb:.0f} MB")

    ax = axes[1][1]
    for window, label, colour in ((r.qps, "imgsweep", "tab:blue"), (r.peer, "naive peer", "tab:gray")):
        ax.plot(
            [t for t, _, _ in window.timeline],
            [deleted for _, _, deleted in window.timeline],
            color=colour,
            label=f"{label}: {window.deleted_per_second:.1f} deleted/s, {window.calls_per_second:.2f} calls/s",
        )
    ax.set_xlabel("seconds into the window")
    ax.set_ylabel("images deleted")
    ax.set_title("Against the 2-QPS sandbox, same data")
    ax.legend(loc="upper left")

    ax = axes[2][0]
    latencies = sorted(r.light.latencies)
    if latencies:
        ax.plot(latencies, [(n + 1) / len(latencies) for n in range(len(latencies))], color="tab:blue")
    budget = r.light_linger_seconds + r.light_latency_seconds
    ax.axvline(budget, color="black", linestyle="--", linewidth=1, label=f"linger + API latency = {budget:g} s")
    ax.axvline(r.light.p50, color="tab:green", linewidth=1, label=f"p50 {r.light.p50:.2f} s")
    ax.axvline(r.light.p99, color="tab:red", linewidth=1, label=f"p99 {r.light.p99:.2f} s")
    ax.set_xlabel("event timestamp → outcome appended (s)")
    ax.set_ylabel("share of events")
    ax.set_title(f"Light load, {r.plan['light_rate']:g} events/s: end-to-end latency (CDF)")
    ax.legend(loc="lower right")

    ax = axes[2][1]
    if isinstance(r.profile, GilProfile):
        shares = r.profile.shares()[:12]
        ax.barh([stage for stage, _ in shares], [share * 100 for _, share in shares], color="tab:purple")
        ax.invert_yaxis()
        ax.set_xlabel("% of samples while some thread held the GIL")
        ax.set_title(f"Where imgsweep's Python time goes (GIL held {r.profile.gil_busy:.0%} of the time)")
        ax.tick_params(axis="y", labelsize=9)
    else:
        ax.text(0.5, 0.5, f"profile skipped:\n{r.profile}", ha="center", va="center", wrap=True)
        ax.set_axis_off()

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
