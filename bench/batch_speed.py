"""Events/s of a worker's CPU work alone: `BatchProcessor.process` (decode, decide, state
bytes, audit and action encoding, metrics) on the throughput harness' records, in batches,
with the states in a dict. No broker: this is the ceiling the Kafka side can approach.

Run: `python -m bench.batch_speed [--events N] [--profile] [--experiments] [--against REV]`
(`--profile` prints where the time goes, by stage and by function; `--experiments` also runs the
same records under the same policy plus a control group and two holdouts, alternating with
the plain policy, and prints the ratio; `--against REV` runs commit REV from a temporary git
worktree, alternating with this tree, and prints this tree's speed as a multiple of REV's).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from bench.common import (
    REPO,
    py_spy,
    stage_shares,
    start_profile,
    stop_profile,
    summarise_profile,
)
from pipeline.core.policy import ControlGroup, Experiments
from pipeline.core.policy_document import load_policy
from pipeline.ops.simulator import AgentSimulator
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.settings import Settings

FULL_POLICY_FILE = Path(__file__).with_name("policy.full.yaml")
#: The issue's example: a 10 % control group for marketing and sales, two agent holdouts.
EXPERIMENTS = Experiments(
    salt="2026-q4",
    control_group=ControlGroup(share=0.10, categories=frozenset({"marketing", "sales"})),
    holdouts={"winback-bot": 0.20, "upsell-bot": 0.10},
)


def batches(events: int, customers: int, partitions: int, size: int) -> list[list[InputRecord]]:
    records = AgentSimulator(customers=customers, seed=3).records(events)
    inputs = [
        InputRecord(r.key, r.value, hash(r.key) % partitions, i, None)
        for i, r in enumerate(records)
    ]
    return [inputs[i : i + size] for i in range(0, len(inputs), size)]


def parse_rate(output: str) -> float:
    """Events/s from this command's summary line (also as older commits print it)."""
    found = re.search(r"BatchProcessor\.process: ([\d,]+) events/s", output)
    if found is None:
        raise click.ClickException(f"no 'BatchProcessor.process: N events/s' line in {output!r}")
    return float(found.group(1).replace(",", ""))


def one_run(tree: Path, events: int, customers: int, batch_size: int) -> float:
    """Events/s of one run of the tree's own `bench.batch_speed`, in a process of its own."""
    args = ["--events", str(events), "--customers", str(customers)]
    args += ["--batch-size", str(batch_size), "--repeat", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.batch_speed", *args],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise click.ClickException(f"bench.batch_speed in {tree} failed:\n{done.stderr}")
    return parse_rate(done.stdout)


def compare_with(rev: str, events: int, customers: int, batch_size: int, repeat: int) -> None:
    """This tree against commit `rev`, alternating runs so that both see the same machine."""
    with tempfile.TemporaryDirectory(prefix="tower-batch-speed-") as tmp:
        old = Path(tmp) / "tree"  # REV may hold a slash (origin/main)
        added = subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), rev],
            capture_output=True,
            text=True,
        )
        if added.returncode:
            raise click.ClickException(f"git worktree add {rev}: {added.stderr.strip()}")
        try:
            runs: dict[str, list[float]] = {rev: [], "this tree": []}
            with click.progressbar(length=2 * repeat, label="alternating runs") as bar:
                for _ in range(repeat):
                    for label, tree in ((rev, old), ("this tree", REPO)):
                        runs[label].append(one_run(tree, events, customers, batch_size))
                        bar.update(1)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                capture_output=True,
            )
    for label, rates in runs.items():
        click.echo(f"{label:>12}: " + " / ".join(f"{r:,.0f}" for r in rates) + " events/s")
    best_old, best_new = max(runs[rev]), max(runs["this tree"])
    click.echo(
        f"this tree / {rev}: {best_new / best_old:.2f} x (best of {repeat} alternating runs "
        f"each, {events:,} events)"
    )


def run(
    work: list[list[InputRecord]], processor: BatchProcessor, store: DictStateStore | None = None
) -> float:
    store = DictStateStore() if store is None else store
    start = time.perf_counter()
    for batch in work:
        processor.process_and_save(batch, store)
    return sum(map(len, work)) / (time.perf_counter() - start)


@click.command()
@click.option("--events", default=60_000, show_default=True, help="Records to process.")
@click.option("--customers", default=5_000, show_default=True)
@click.option("--batch-size", default=500, show_default=True, help="Records per batch.")
@click.option("--repeat", default=3, show_default=True, help="Runs; the best one counts.")
@click.option(
    "--profile/--no-profile",
    default=False,
    help="Profile two more runs: py-spy (if installed) by stage and by function, else cProfile.",
)
@click.option(
    "--experiments/--no-experiments",
    default=False,
    help="Also run with experiments on (alternating runs) and print the on/off ratio.",
)
@click.option(
    "--against",
    metavar="REV",
    help="A git commit to compare with (e.g. the one before a change): its own "
    "bench.batch_speed runs from a temporary worktree, alternating with this tree's, "
    "each in a fresh process.",
)
def main(
    events: int,
    customers: int,
    batch_size: int,
    repeat: int,
    profile: bool,
    experiments: bool,
    against: str | None,
) -> None:
    """Events/s of BatchProcessor.process with every rule on (bench/policy.full.yaml)."""
    if against is not None:
        compare_with(against, events, customers, batch_size, repeat)
        return
    policy = load_policy(FULL_POLICY_FILE.read_text())
    work = batches(events, customers, 8, batch_size)
    if experiments:
        with_experiments = replace(policy, experiments=EXPERIMENTS)
        off, on = 0.0, 0.0
        for _ in range(repeat):  # alternating, so both see the same machine
            off = max(off, run(work, BatchProcessor(Settings(), lambda: policy)))
            on = max(on, run(work, BatchProcessor(Settings(), lambda: with_experiments)))
        click.echo(
            f"experiments off {off:,.0f} events/s, on {on:,.0f} events/s: ratio {on / off:.3f} "
            f"(best of {repeat} each, alternating, {events:,} events)"
        )
    else:
        store = DictStateStore()
        best = max(
            run(work, BatchProcessor(Settings(), lambda: policy), store if i == 0 else None)
            for i in range(repeat)
        )
        sizes = [len(v) for v in store.data.values()]
        click.echo(
            f"BatchProcessor.process: {best:,.0f} events/s, best of {repeat} ({events:,} events); "
            f"stored state {sum(sizes) / len(sizes):,.0f} B per customer on average, "
            f"{max(sizes):,} B at most"
        )
    if profile:
        profile_run(work, lambda: BatchProcessor(Settings(), lambda: policy))


#: Where `BatchProcessor.process`'s time goes, for `--profile`: each stage is the first of
#: these frames below it (so the audit record's encoding counts as encoding, not as audit).
STAGES = {
    "decode and validate the input": "decode_event",
    "load the customer's state": "unpack_stored",
    "decide (the rules)": "decide (",
    "experience and experiment metrics": "_observe",
    "build the audit record": "audit_record",
    "encode the outputs (Avro)": "encode_record",
    "store the state": "pack_stored",
}


def profile_run(work: list[list[InputRecord]], make: Callable[[], BatchProcessor]) -> None:
    """py-spy over two more runs (sampling, so a function's share is not inflated by its
    calls as with cProfile): the stages' shares and the busiest functions by own time.
    Without py-spy, cProfile's busiest functions."""
    if py_spy() is None:
        prof = cProfile.Profile()
        prof.runcall(run, work, make())
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    with tempfile.TemporaryDirectory(prefix="tower-batch-speed-") as tmp:
        folded = Path(tmp) / "batch.folded"
        spy = start_profile(os.getpid(), folded, rate=250)
        time.sleep(1.0)  # py-spy attaches
        for _ in range(2):
            run(work, make())
        stop_profile(spy)
        root = "BatchProcessor.process "
        click.echo("\nShare of BatchProcessor.process (py-spy, 250 Hz):")
        for stage, share in stage_shares(folded, root, STAGES).items():
            click.echo(f"  {share:5.1f} %  {stage}")
        click.echo("\nBusiest functions by own time (self %, inclusive %), whole process:")
        for name, own, incl in summarise_profile(folded, top=20):
            click.echo(f"  {own:5.1f} {incl:5.1f}  {name}")


if __name__ == "__main__":
    main()
