"""PNG plots of benchmark results; matplotlib is optional, so every function degrades to a
message when it is missing (it is not a runtime dependency of the project)."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        click.echo("matplotlib is not installed: no plots (pip install matplotlib)", err=True)
        return None
    return plt


def throughput_and_lag(series: Mapping[str, Mapping[str, Any]], out: Path) -> Path | None:
    """Two panels over seconds since each contender's process started: output events/s and
    consumer lag (end offsets minus committed offsets of its group)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for name, s in series.items():
        per_second: Mapping[int, int] = s["per_second"]
        if per_second:
            xs = list(range(0, max(per_second) + 1))
            top.plot(xs, [per_second.get(x, 0) for x in xs], label=name)
        lag: Sequence[Sequence[float]] = s["lag"]
        if lag:
            bottom.plot([p[0] for p in lag], [p[1] for p in lag], label=name)
    top.set_ylabel("output events/s")
    top.set_title("Throughput on a pre-loaded backlog (same broker, same data)")
    top.legend()
    top.grid(alpha=0.3)
    bottom.set_ylabel("consumer lag (records, committed)")
    bottom.set_xlabel("seconds since the contender's process started")
    bottom.legend()
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def latency_histogram(series: Mapping[str, Sequence[float]], out: Path, title: str) -> Path | None:
    """Overlaid histograms of end-to-end latencies, p50 and p99 in the legend."""
    plt = _pyplot()
    series = {k: v for k, v in series.items() if v}
    if plt is None or not series:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.5))
    cap = max(sorted(v)[int(0.99 * (len(v) - 1))] for v in series.values()) * 1.3
    for name, values in series.items():
        s = sorted(values)
        p50, p99 = s[len(s) // 2], s[int(0.99 * (len(s) - 1))]
        ax.hist(
            [min(v, cap) for v in values],
            bins=80,
            range=(0, cap),
            density=True,
            alpha=0.6,
            label=f"{name} (p50 {p50:.0f} ms, p99 {p99:.0f} ms, n={len(s)})",
        )
    ax.set_xlabel(f"ms from the input's produce timestamp to the output consumed (cap {cap:.0f})")
    ax.set_ylabel("density (each contender sums to 1)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def soak_load(
    rows: Sequence[Mapping[str, float]],
    p99_windows: Sequence[tuple[float, float]],
    actions_per_second: Mapping[int, int],
    title: str,
    out: Path,
) -> Path | None:
    """Eight panels over the soak's seconds: input and action rates, lag (s of input), p99
    per 10 s window, worker RSS, open file descriptors, state on disk, cores busy (worker,
    broker, machine, steal), dirty page cache; the two-minute warm-up shaded, the criteria's
    bounds dashed. Rows from before the CPU columns existed draw those panels empty."""
    plt = _pyplot()
    if plt is None or not rows:
        return None
    t = [r["t"] for r in rows]
    fig, axes = plt.subplots(4, 2, figsize=(12, 12), sharex=True)
    (rate, lag), (p99, rss), (fds, state), (cpu, dirty) = axes
    produced = [r["produced"] for r in rows]
    rate.plot(t[1:], [b - a for a, b in itertools.pairwise(produced)], label="inputs")
    if actions_per_second:
        xs = range(max(actions_per_second) + 1)
        rate.plot(xs, [actions_per_second.get(x, 0) for x in xs], label="approved actions")
    rate.set_ylabel("per second")
    rate.legend(loc="lower right")
    lag.plot(t, [r["lag_s"] for r in rows])
    lag.axhline(2.0, ls="--", color="red", lw=1, label="bound 2 s")
    lag.set_ylabel("consumer lag (s of input)")
    lag.legend(loc="upper right")
    if p99_windows:
        p99.step([w for w, _ in p99_windows], [v for _, v in p99_windows], where="post")
    p99.set_ylabel("approved action p99 (ms, 10 s windows)")
    rss.plot(t, [r["rss_mib"] for r in rows])
    rss.set_ylabel("worker RSS (MiB)")
    fds.plot(t, [r["fds"] for r in rows])
    fds.set_ylabel("open file descriptors")
    state.plot(t, [r["state_mib"] for r in rows])
    state.set_ylabel("state on disk (MiB, RocksDB)")
    for key, label in (
        ("machine_cores", "machine"),
        ("worker_cores", "worker"),
        ("broker_cores", "broker"),
        ("steal_cores", "stolen by other guests"),
    ):
        cpu.plot(t, [r.get(key, 0.0) for r in rows], label=label, lw=1)
    cpu.set_ylabel("cores busy")
    cpu.legend(loc="upper right", fontsize="small")
    dirty.plot(t, [r.get("dirty_mib", 0.0) for r in rows])
    dirty.set_ylabel("page cache to write (MiB)")
    for ax in axes.flat:
        ax.axvspan(0, min(120, t[-1]), color="grey", alpha=0.1)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("seconds since the paced stream started (grey: warm-up)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def from_results(results: Path, out_dir: Path) -> None:
    """Redraw both plots from a results JSON written by `bench.throughput --results`."""
    data = json.loads(results.read_text())
    series = {
        c["name"]: {"per_second": {int(k): v for k, v in c["per_second"].items()}, "lag": c["lag"]}
        for c in data.get("contenders", {}).values()
    }
    if series:
        throughput_and_lag(series, out_dir / "bench-throughput-lag.png")
    lat = data.get("latency", {})
    if lat:
        hist = {
            (f"{k}: approved actions" if k == "tower" else f"{k}: pass-through"): [
                ms for _, ms in v["series"]
            ]
            for k, v in lat.items()
        }
        rate = next(iter(lat.values()))["rate"]
        latency_histogram(
            hist, out_dir / "bench-latency.png", f"End-to-end latency at {rate:.0f} events/s"
        )


if __name__ == "__main__":  # python -m bench.plots results.json docs
    from_results(Path(sys.argv[1]), Path(sys.argv[2]))
