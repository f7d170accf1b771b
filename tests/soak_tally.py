"""Sum up the tallies `make soak` wrote: one line per scenario and runtime."""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> int:
    rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    try:
        with open(path) as f:
            for line in f:
                t = json.loads(line)
                rows[(t["scenario"], t["runtime"])].append(t)
    except FileNotFoundError:
        print(f"no tallies in {path}")
        return 1
    w = max(len(scenario) for scenario, _ in rows) + 2
    print(
        f"{'scenario':<{w}}{'runtime':<15}{'runs':>5}{'records':>9}{'lost':>6}{'changed':>8}"
        f"{'dupes':>7}{'s/run':>7}"
    )
    for (scenario, runtime), runs in sorted(rows.items()):
        total = {k: sum(r[k] for r in runs) for k in ("records", "lost", "changed", "duplicates")}
        per_run = sum(r["seconds"] for r in runs) / len(runs)
        print(
            f"{scenario:<{w}}{runtime:<15}{len(runs):>5}{total['records']:>9}{total['lost']:>6}"
            f"{total['changed']:>8}{total['duplicates']:>7}{per_run:>7.0f}"
        )
    resumed = [
        (scenario, runtime, fault, [s for r in runs for f, s in r.get("resumed", ()) if f == fault])
        for (scenario, runtime), runs in sorted(rows.items())
        for fault in dict.fromkeys(f for r in runs for f, _ in r.get("resumed", ()))
    ]
    if resumed:
        print("\nfrom a fault until the worker decided again")
        for scenario, runtime, fault, seconds in resumed:
            print(
                f"  {scenario:<{w}}{runtime:<15}{fault.replace('_', ' '):<28}"
                f"{max(seconds):>6.1f} s, worst of {len(seconds)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
