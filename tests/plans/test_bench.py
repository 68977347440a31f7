"""python -m drctl bench orchestration: runs the plan and reports against its critical path."""

import json

from drctl.cli import main


def test_orchestration_bench_reports_the_run_against_its_critical_path(capsys):
    code = main(["bench", "orchestration", "--json", "--scale", "0.1"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and report["outcome"] == "completed"
    assert set(report) >= {
        "critical_path_s",
        "sequential_s",
        "wall_s",
        "overhead_ratio",
        "prestage_saved_s",
    }
    # Sleeping activities cannot finish faster than the chain of them that depends on each other.
    assert report["wall_s"] >= report["critical_path_s"] * 0.95
    assert report["sequential_s"] > report["critical_path_s"]
    assert report["prestage_saved_s"] > 0
    assert report["critical_path"][0] == "approve-recovery"
