"""python -m drctl runbook render: the auditor's view, from the runbook data."""

import json

import pytest
import yaml

from drctl.cli import main
from shared.runbooks import PATH_NAMES
from tests.plans.helpers import config, evidence


def _render(capsys, *args) -> tuple[int, str]:
    code = main(["runbook", "render", *args])
    return code, capsys.readouterr().out


def test_markdown_shows_gates_with_their_approvers_and_the_compensations(capsys):
    code, out = _render(capsys, "security-incident")
    assert code == 0
    assert "| `recovery` | Security.Officer, DR.Approver | 2 |" in out
    assert "| `restore-clean` | `db.drop_server` |" in out
    assert "## Dependency order" in out and "Critical path" in out
    assert "`config.secrets.rotate`" in out


def test_json_is_one_object_on_the_last_line(capsys):
    code, out = _render(capsys, "regional-outage", "--format", "json")
    doc = json.loads(out.strip().splitlines()[-1])
    assert code == 0
    assert doc["version"] == 1 and doc["gates"]["rpo"]["min_approvers"] == 2
    assert doc["order"].index("fence-old-primary") < doc["order"].index("promote-replica")
    assert doc["estimated_rto_s"] > 0
    assert {s["id"] for s in doc["steps"]} >= {"fence-old-primary", "promote-replica"}


def test_a_runbook_file_can_be_named(capsys, tmp_path):
    code, out = _render(capsys, "runbooks/ha-handled.yaml", "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["path"] == "ha-handled"


def test_with_evidence_and_config_the_plan_is_shown(capsys, tmp_path):
    (tmp_path / "ev.yaml").write_text(yaml.safe_dump(evidence(rpo__exposure_s=900)))
    (tmp_path / "cfg.json").write_text(json.dumps(config()))
    code, out = _render(
        capsys,
        "regional-outage",
        "--evidence",
        str(tmp_path / "ev.yaml"),
        "--config",
        str(tmp_path / "cfg.json"),
    )
    assert code == 0
    assert "## This plan" in out and "step 'accept-data-loss' kept" in out


def test_unknown_runbook_cannot_run(capsys):
    code = main(["runbook", "render", "no-such-path", "--json"])
    out = capsys.readouterr().out
    assert code == 2
    assert "no runbook 'no-such-path'" in json.loads(out.splitlines()[-1])["error"]


@pytest.mark.parametrize("path", PATH_NAMES)
def test_every_runbook_renders(capsys, path):
    code, out = _render(capsys, path)
    assert code == 0 and out.startswith("# ")
