"""A deterministic run of the batch processor, recorded by an older commit so that the
current code can be checked against it (tests/unit/processing/test_recorded_run.py).

Run it in a worktree of the older commit, so the run is recorded by that commit's code:

    git worktree add /tmp/old <commit>
    cd /tmp/old && PYTHONPATH=. python /path/to/tests/recorded_run.py --out FILE --commit <commit>

It uses only what has not changed since the recorded commit (6738b7c): the showcase
simulator, the showcase policy the run was recorded under (a copy in tests/data, so that
showing a new rule in deploy/policy.showcase.yaml leaves this run's policy version alone),
`BatchProcessor`, `DictStateStore`, `InputRecord`. The run has two phases: the first from
empty states, the second from the states the first stored. The file holds both phases'
output records, the stored states between them and the wake-ups not yet released then.
The inputs are not stored: the seeded simulator makes them again, and their digest in the
file says whether it still does.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.core.policy_document import load_policy
from pipeline.ops.simulator import ShowcaseSimulator
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.settings import Settings

POLICY_FILE = Path(__file__).resolve().parent / "data" / "recorded-run-policy.yaml"
CUSTOMERS, SEED, EVENTS, PHASE_ONE = 40, 11, 800, 500
PARTITIONS, BATCH = 4, 100
#: the processor's wall clock (`processed_at`): fixed, so the records are reproducible
CLOCK_S = 1_800_000_000.0

#: (topic, key, value, partition) of one output record
Output = tuple[str, bytes | None, bytes, int]


def inputs() -> list[InputRecord]:
    """The simulator's records with per-partition offsets, partitioned by a stable hash."""
    offsets = [0] * PARTITIONS
    out = []
    for r in ShowcaseSimulator(customers=CUSTOMERS, seed=SEED).records(EVENTS):
        p = zlib.crc32(r.key) % PARTITIONS
        out.append(InputRecord(r.key, r.value, p, offsets[p], None))
        offsets[p] += 1
    return out


def inputs_digest(records: list[InputRecord]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(orjson.dumps([r.key, r.value, r.partition, r.offset], default=bytes.hex))
    return h.hexdigest()


def processor() -> BatchProcessor:
    policy = load_policy(POLICY_FILE.read_text(encoding="utf-8"))
    return BatchProcessor(Settings(), lambda: policy, clock=lambda: CLOCK_S)


def run_phase(
    proc: BatchProcessor,
    records: list[InputRecord],
    store: DictStateStore,
    wakeups: list[InputRecord],
) -> list[Output]:
    """Decide `records` in batches; after each batch release, in deadline order, the
    wake-ups whose deadline the input's event time has passed (as a worker would once its
    clock got there). `wakeups` is updated in place: what is still pending at the end."""
    out: list[Output] = []
    wakeup_topic = proc.settings.topics.wakeups
    next_offset = max((w.offset + 1 for w in wakeups), default=0)
    for i in range(0, len(records), BATCH):
        result = proc.process_and_save(records[i : i + BATCH], store)
        for o in result.outputs:
            out.append((o.topic, o.key, o.value, o.partition))
            if o.topic == wakeup_topic:
                wakeups.append(InputRecord(o.key, o.value, o.partition, next_offset, None))
                next_offset += 1
        horizon = max(proc.event_time.values(), default=0)
        due = sorted((w for w in wakeups if _deadline(w) <= horizon), key=_deadline)
        for w in due:
            wakeups.remove(w)
            released = proc.release(w, store)
            for write in released.state_writes:
                store.save(write.partition, write.key, write.value)
            out.extend((o.topic, o.key, o.value, o.partition) for o in released.outputs)
    return out


def _deadline(wakeup: InputRecord) -> int:
    return int(orjson.loads(wakeup.value or b"")["deadline"])


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode()


def _unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s)


@dataclass
class Recording:
    """What the file holds, in the processor's types; the file keeps bytes as base64."""

    commit: str
    inputs_sha256: str
    phase_one: list[Output]
    #: the stored states after the first phase
    states: dict[bytes, bytes]
    #: wake-ups not yet released after the first phase
    pending_wakeups: list[InputRecord]
    phase_two: list[Output]

    def write(self, path: Path) -> int:
        """Gzipped JSON at `path`; returns the JSON's size."""
        data = json.dumps(
            {
                "commit": self.commit,
                "inputs_sha256": self.inputs_sha256,
                "phase_one": [[t, _b64(k), _b64(v), p] for t, k, v, p in self.phase_one],
                "states": {_b64(k): _b64(v) for k, v in self.states.items()},
                "pending_wakeups": [
                    [_b64(w.key), _b64(w.value), w.partition, w.offset]
                    for w in self.pending_wakeups
                ],
                "phase_two": [[t, _b64(k), _b64(v), p] for t, k, v, p in self.phase_two],
            },
            separators=(",", ":"),
        ).encode()
        path.write_bytes(gzip.compress(data, mtime=0))
        return len(data)

    @classmethod
    def read(cls, path: Path) -> Recording:
        d = json.loads(gzip.decompress(path.read_bytes()))

        def outputs(rows: list[list[Any]]) -> list[Output]:
            return [(t, _unb64(k), _unb64(v) or b"", p) for t, k, v, p in rows]

        return cls(
            d["commit"],
            d["inputs_sha256"],
            outputs(d["phase_one"]),
            {_unb64(k) or b"": _unb64(v) or b"" for k, v in d["states"].items()},
            [InputRecord(_unb64(k), _unb64(v), p, o, None) for k, v, p, o in d["pending_wakeups"]],
            outputs(d["phase_two"]),
        )


def record(commit: str) -> Recording:
    records = inputs()
    store, wakeups = DictStateStore(), []
    first = run_phase(processor(), records[:PHASE_ONE], store, wakeups)
    states = dict(store.data)
    pending = list(wakeups)
    # a new processor, as after a worker's restart: only the stored states carry over
    second = run_phase(processor(), records[PHASE_ONE:], store, wakeups)
    return Recording(commit, inputs_digest(records), first, states, pending, second)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the .json.gz file to write")
    parser.add_argument("--commit", required=True, help="the commit whose code records")
    args = parser.parse_args()
    size = record(args.commit).write(args.out)
    print(f"{args.out}: {size:,} bytes of JSON, {args.out.stat().st_size:,} gzipped")


if __name__ == "__main__":
    main()
