"""Contract: the inputs each runbook gives an action are what that action's activity accepts.

The activity request models live in shared/recovery.py and shared/recovery_extra.py; every
step of every repository runbook is built into its activity input and validated against its
action's model, with plausible values standing in for results of earlier steps.
"""

import re

import pytest

from orchestrators.plan import step_input
from shared.plans import build_plan, resolve
from shared.runbooks import ACTIONS, PATH_NAMES, load_runbook
from tests.plans.helpers import config, evidence

recovery = pytest.importorskip("shared.recovery", reason="the activity request models are absent")
recovery_extra = pytest.importorskip(
    "shared.recovery_extra", reason="the request models of the remaining actions are absent"
)

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
    "cache.flush": "CacheFlushRequest",
    "validate.technical": "TechnicalValidationRequest",
    "validate.finance": "FinanceValidationRequest",
}

# The actions whose request models are in shared/recovery_extra.py.
EXTRA_MODELS = {
    "db.find_recovery_point": "FindRecoveryPointRequest",
    "db.drop_server": "DropServerRequest",
    "app.maintenance": "MaintenanceRequest",
    "app.repoint_database": "RepointRequest",
    "compute.restart_deployment": "RestartRequest",
    "traffic.reroute": "RerouteRequest",
    "isolation.lock": "IsolationRequest",
    "isolation.unlock": "IsolationRequest",
    "secrets.rotate": "SecretsRotateRequest",
    "dependency.storage_failover": "StorageFailoverRequest",
    "dependency.storage_failback": "StorageFailoverRequest",
    "dependency.pause_integration": "IntegrationRequest",
    "dependency.resume_integration": "IntegrationRequest",
    "dependency.check": "DependencyCheckRequest",
}

ALL_MODELS = {**MODELS, **EXTRA_MODELS}

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
        # evidence.earlier: what the replication monitor saw last (none yet is a valid answer).
        context = evidence(**{"earlier": None})
        plan = build_plan(load_runbook(path), context, config(), incident_id="inc-1")
        for step in plan.steps:
            if step.action in ALL_MODELS and not step.skipped:
                yield pytest.param(plan, step, step.inputs, id=f"{path}:{step.id}")
            comp = step.compensation
            if comp is not None and comp.action in ALL_MODELS:
                yield pytest.param(plan, step, comp.inputs, id=f"{path}:{step.id}:undo")


@pytest.mark.parametrize("plan, step, inputs", list(_cases()))
def test_activity_accepts_the_runbook_inputs(plan, step, inputs):
    action = step.action if inputs is step.inputs else step.compensation.action
    if action in EXTRA_MODELS:
        model = getattr(recovery_extra, EXTRA_MODELS[action])
    else:
        model = getattr(recovery, MODELS[action])
    resolved = resolve(inputs, {"steps": RESULTS})
    payload = step_input(plan, step.id, resolved, "plan-1")
    assert not re.search(r"\$\{", str(payload))
    model.model_validate(payload)


def test_every_catalogue_action_has_a_request_model_here():
    assert sorted(set(ACTIONS) - set(ALL_MODELS)) == []
