"""`make soak`'s summary: totals per scenario and runtime, and each fault's time to resume."""

from __future__ import annotations

import json

from tests.soak_tally import main


def test_the_summary_sums_the_runs_and_gives_each_faults_worst_time_to_resume(
    tmp_path, capsys
) -> None:
    run = {"scenario": "broker-kill", "runtime": "faust", "records": 20_000, "lost": 0}
    runs = [
        {
            **run,
            "changed": 0,
            "duplicates": 1,
            "seconds": 80.0,
            "resumed": [["kill_input_leader", 12.5], ["restart_and_kill_another", 20.1]],
        },
        {
            **run,
            "changed": 0,
            "duplicates": 2,
            "seconds": 90.0,
            "resumed": [["kill_input_leader", 14.0], ["restart_and_kill_another", 9.9]],
        },
        # a tally from before `resumed` existed
        {**run, "runtime": "transactional", "changed": 0, "duplicates": 0, "seconds": 60.0},
    ]
    path = tmp_path / "tally.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    assert main(str(path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["broker-kill", "faust", "2", "40000", "0", "0", "3", "85"]
    assert out[2].split() == ["broker-kill", "transactional", "1", "20000", "0", "0", "0", "60"]
    resumes = [line.split() for line in out if line.endswith("worst of 2")]
    assert [r[2:] for r in resumes] == [
        ["kill", "input", "leader", "14.0", "s,", "worst", "of", "2"],
        ["restart", "and", "kill", "another", "20.1", "s,", "worst", "of", "2"],
    ]
