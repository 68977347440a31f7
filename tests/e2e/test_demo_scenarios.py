"""The main job end to end, as the demo runs it: real PostgreSQL, local Azure, Azurite, devhost.

Short timings: a small seeded ledger and a short partition. Each scenario drives the product
over HTTP only and checks what a finance controller and an auditor would check afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from drctl.demo.scenarios import Options, database_corruption, regional_outage
from drctl.demo.stack import REPO, Stack

pytestmark = pytest.mark.slow


def _quiet(_text: str) -> None:
    pass


@pytest.fixture
def stack(enterable_tmp, request):
    state = enterable_tmp / f"e2e-{request.node.name}"
    running = Stack(state_dir=state).start()
    yield running
    running.stop()
    shutil.rmtree(state, ignore_errors=True)


def _audit_verify(stack: Stack, incident_id: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "drctl", "audit", "verify", incident_id, "--json",
         "--state-dir", str(stack.state_dir / "devhost")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_regional_outage_recovers_with_the_estimated_data_loss(stack):
    summary = regional_outage(
        stack, Options("regional-outage", lines=20_000, partition_s=8, timeout_s=600, say=_quiet)
    )

    assert summary["status"] == "recovered", summary
    assert summary["path"] == "regional-outage"
    # The partition made the loss real, and the product estimated it before promoting.
    assert summary["transactions_lost"] > 0
    counted, estimated = summary["rpo_s"], summary["rpo_estimated_s"]
    assert estimated is not None
    assert abs(estimated - counted) <= max(2.0, 0.1 * counted), summary
    # The recovered books pass every finance check (warnings allowed).
    assert summary["validation"]["summary"]["fail"] == 0, summary["validation"]
    # Approvals came from people other than the declarer, the sign-off from a controller.
    gates = {(a["gate"], a["approver"]) for a in summary["approvals"]}
    assert ("recovery", "alice") in gates and ("signoff", "fiona") in gates
    # The audit trail verifies, and the report carries its head hash.
    verdict = _audit_verify(stack, summary["incidentId"])
    assert verdict["head"] == summary["audit_head"]
    html = stack.api("GET", f"incidents/{summary['incidentId']}/report", params={"format": "html"})
    assert html.status_code == 200 and "<svg" in html.text


def test_database_corruption_restores_to_before_the_bad_batch(stack):
    summary = database_corruption(
        stack, Options("database-corruption", lines=20_000, timeout_s=600, say=_quiet)
    )

    assert summary["status"] == "recovered", summary
    assert summary["path"] == "database-corruption"
    # The restored server has none of the faulty entries and all invoices before them.
    assert summary["loss"]["bad_entries_on_restored_server"] == 0
    assert summary["loss"]["transactions_lost"] == 0
    assert summary["validation"]["summary"]["fail"] == 0, summary["validation"]
    assert any(a["gate"] == "cutover" for a in summary["approvals"])
    _audit_verify(stack, summary["incidentId"])
