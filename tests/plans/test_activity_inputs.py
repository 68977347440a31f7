"""Contract: the inputs each runbook gives an action are what that action's activity accepts.

The activity request models live in shared/recovery.py; every step of every repository runbook
whose action has a model there is built into its activity input and validated against it, with
plausible values standing in for results of earlier steps.
"""

import re

import pytest

from orchestrators.plan import step_input
from shared.plans import build_plan, resolve
from shared.runbooks import PATH_NAMES, load_runbook
from tests.plans.helpers import config, evidence

recovery = pytest.importorskip("shared.recovery", reason="the activity request models are absent")

MODELS = {
    "db.evidence": "EvidenceRequest",
    "db.fence": "FenceRequest",
    "db.promote": "PromoteRequest",
    "db.pitr": "PitrRequest",
    "db.forensic_backup": "ForensicBackupRequest",
    "compute.start_cluster": "ClusterRequest",
    "compute.scale_pool": "ScalePoolRequest",
    "compute.scale_deployment": "ScaleDeploymentRequest",
    "jobs.hold": "JobsRequest",
    "jobs.release": "JobsRequest",
    "traffic.cutover": "TrafficCutoverRequest",
    "traffic.check": "TrafficCutoverRequest",
    "release.rollback": "ReleaseRollbackRequest",
}

# What earlier steps return, as far as the runbooks read it.
RESULTS = {
    "find-last-good-point": {"point_in_time": "2026-12-04T08:59:00Z"},
    "find-clean-point": {"point_in_time": "2026-12-04T07:59:00Z"},
    "restore-isolated": {
        "server_id": config()["db"]["primary"]["server_id"] + "-r",
        "host": "127.0.0.1",
        "port": 55434,
    },
    "restore-clean": {
        "server_id": config()["db"]["primary"]["server_id"] + "-r",
        "host": "127.0.0.1",
        "port": 55434,
    },
}


def _cases():
    for path in PATH_NAMES:
        plan = build_plan(load_runbook(path), evidence(), config(), incident_id="inc-1")
        for step in plan.steps:
            if step.action in MODELS and not step.skipped:
                yield pytest.param(plan, step, step.inputs, id=f"{path}:{step.id}")
            comp = step.compensation
            if comp is not None and comp.action in MODELS:
                yield pytest.param(plan, step, comp.inputs, id=f"{path}:{step.id}:undo")


@pytest.mark.parametrize("plan, step, inputs", list(_cases()))
def test_activity_accepts_the_runbook_inputs(plan, step, inputs):
    model = getattr(
        recovery, MODELS[step.action if inputs is step.inputs else step.compensation.action]
    )
    resolved = resolve(inputs, {"steps": RESULTS})
    payload = step_input(plan, step.id, resolved, "plan-1")
    assert not re.search(r"\$\{", str(payload))
    model.model_validate(payload)
