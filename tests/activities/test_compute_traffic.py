"""Compute, scheduled jobs, traffic cutover through the front door, release rollback and the
technical validation, against local Azure's AKS, Kubernetes, Traffic Manager and stand-in Odoo."""

from __future__ import annotations

import pytest

from activities.compute import (
    KubeClient,
    jobs_hold,
    jobs_release,
    scale_deployments,
    scale_pool,
    start_cluster,
)
from activities.database import ActivityError, promote
from activities.release import rollback
from activities.traffic import check, cutover
from activities.validation import technical
from shared.recovery import (
    ClusterRequest,
    JobsRequest,
    PromoteRequest,
    ReleaseRollbackRequest,
    ScaleDeploymentRequest,
    ScalePoolRequest,
    TechnicalValidationRequest,
    TrafficCutoverRequest,
)
from tests.activities.conftest import AKS, PRIMARY_ID, PROFILE_ID, REPLICA_ID, base_topology, db

pytestmark = pytest.mark.timeout(300)

STEP = {"incident_id": "prod-eu/availability#3", "step_id": "test"}
WEU, NEU = f"{AKS}/aks-odoo-weu", f"{AKS}/aks-odoo-neu"


def _topology(*, neu_stopped: bool = False) -> dict:
    topology = base_topology()
    neu = topology["kubernetes"]["clusters"]["aks-odoo-neu"]["deployments"]
    for dep in neu:
        dep["env"] = {**dep["env"], "DB_HOST": "odoo-pg-neu.postgres.database.azure.com"}
    topology["odoo"] = {
        "regions": {
            "westeurope": {"cluster": "aks-odoo-weu"},
            "northeurope": {"cluster": "aks-odoo-neu"},
        }
    }
    topology["trafficManager"]["frontDoor"] = {"profile": "tm-odoo"}
    if neu_stopped:
        topology["aks"]["clusters"][1]["powerState"] = "Stopped"
    return topology


def test_stopped_cluster_is_started_once(start_env):
    start_env(_topology(neu_stopped=True))
    first = start_cluster(ClusterRequest(**STEP, cluster=NEU))
    assert first.started and first.power_before == "Stopped" and first.power_after == "Running"
    assert not start_cluster(ClusterRequest(**STEP, cluster=NEU)).started


def test_scaling_a_pool_to_its_count_is_a_no_op(start_env):
    start_env(_topology())
    up = scale_pool(ScalePoolRequest(**STEP, cluster=NEU, pool="odoo", count=2))
    assert up.changed and (up.count_before, up.count_after) == (0, 2)
    again = scale_pool(ScalePoolRequest(**STEP, cluster=NEU, pool="odoo", count=2))
    assert not again.changed


def test_deployments_scale_and_become_ready(start_env):
    start_env(_topology())
    scale_pool(ScalePoolRequest(**STEP, cluster=NEU, pool="odoo", count=2))
    result = scale_deployments(
        ScaleDeploymentRequest(**STEP, cluster=NEU, deployments={"odoo-web": 2, "odoo-worker": 1})
    )
    assert [(d.name, d.after, d.ready) for d in result.deployments] == [
        ("odoo-web", 2, 2),
        ("odoo-worker", 1, 1),
    ]


def test_jobs_held_in_cluster_and_database_are_released_exactly(start_env):
    env = start_env(_topology())
    env.sql("odoo-pg-weu", "CREATE TABLE ir_cron (id int PRIMARY KEY, active boolean)")
    env.sql("odoo-pg-weu", "ALTER TABLE ir_cron OWNER TO odoo")  # Odoo owns its tables
    env.sql("odoo-pg-weu", "INSERT INTO ir_cron VALUES (1, true), (2, true), (3, false)")
    request = JobsRequest(
        **STEP, cluster=WEU, server=db(PRIMARY_ID), database="odoo", deployment="odoo-cron"
    )
    held = jobs_hold(request)
    assert held.deployment_replicas_before == 1 and held.crons_changed == [1, 2]
    assert jobs_hold(request).crons_changed == []  # holding again changes nothing
    assert KubeClient(WEU).deployment("odoo", "odoo-cron")["spec"]["replicas"] == 0
    assert env.sql("odoo-pg-weu", "SELECT count(*) FROM ir_cron WHERE active")[0][0] == 0

    released = jobs_release(request.model_copy(update={"signed_off_by": "fiona"}))
    assert released.deployment_replicas_after == 1 and released.crons_changed == [1, 2]
    assert "signed off by fiona" in released.detail
    again = jobs_release(request)  # nothing left held: releasing again changes nothing
    assert again.crons_changed == [] and again.deployment_replicas_after == 1
    assert "no sign-off named" in again.detail
    rows = env.sql("odoo-pg-weu", "SELECT id, active FROM ir_cron ORDER BY id")
    assert rows == [(1, True), (2, True), (3, False)]


def test_cutover_moves_clients_to_the_new_region_with_a_writable_database(start_env):
    env = start_env(_topology())
    scale_pool(ScalePoolRequest(**STEP, cluster=NEU, pool="odoo", count=2))
    scale_deployments(
        ScaleDeploymentRequest(**STEP, cluster=NEU, deployment="odoo-web", replicas=1)
    )
    promote(PromoteRequest(**STEP, replica=db(REPLICA_ID), option="Forced"))

    request = TrafficCutoverRequest(
        **STEP,
        profile=PROFILE_ID,
        endpoint="odoo-neu",
        disable_endpoints=["odoo-weu"],
        region="northeurope",
        frontdoor=env.settings["DR_FRONTDOOR_URL"],
        check_timeout_s=30,
        monitor_timeout_s=30,
    )
    done = cutover(request)
    assert done.ok, done.detail
    assert sorted(done.changed) == ["odoo-weu"]
    assert done.frontdoor.region == "northeurope" and done.frontdoor.database_writable
    assert cutover(request).changed == []  # already done: nothing to change
    assert check(request).ok

    report = technical(
        TechnicalValidationRequest(
            **STEP, server=db(REPLICA_ID), frontdoor=env.settings["DR_FRONTDOOR_URL"],
            region="northeurope",
        )
    )  # fmt: skip
    assert report.ok, report.checks
    assert {c.id: c.status for c in report.checks} == {
        "database.writable": "pass",
        "app.health": "pass",
        "ingress.region": "pass",
    }


def test_cutover_to_a_region_whose_database_is_read_only_fails_clearly(start_env):
    env = start_env(_topology())
    scale_pool(ScalePoolRequest(**STEP, cluster=NEU, pool="odoo", count=2))
    scale_deployments(
        ScaleDeploymentRequest(**STEP, cluster=NEU, deployment="odoo-web", replicas=1)
    )
    request = TrafficCutoverRequest(
        **STEP,
        profile=PROFILE_ID,
        endpoint="odoo-neu",
        disable_endpoints=["odoo-weu"],
        region="northeurope",
        frontdoor=env.settings["DR_FRONTDOOR_URL"],
        check_timeout_s=3,
        monitor_timeout_s=3,
    )
    with pytest.raises(ActivityError, match="not writable|not northeurope|answered HTTP"):
        cutover(request)


def test_failed_release_is_rolled_back_once(start_env):
    start_env(_topology())
    kube = KubeClient(WEU)
    kube.request(
        "PATCH",
        kube.deployment_path("odoo", "odoo-web"),
        {"spec": {"template": {"spec": {"containers": [
            {"name": "odoo-web", "image": "odoo:17.0-broken"}]}}}},
        "application/strategic-merge-patch+json",
    )  # fmt: skip
    kube.wait_rollout("odoo", "odoo-web", 30)

    request = ReleaseRollbackRequest(**STEP, cluster=WEU, deployment="odoo-web", timeout_s=60)
    first = rollback(request)
    (done,) = first.rollbacks
    assert not done.already_current and done.images == {"odoo-web": "odoo:17.0-20251101"}
    dep = kube.deployment("odoo", "odoo-web")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "odoo:17.0-20251101"
    assert {"name": "DB_NAME", "value": "odoo"} in container["env"]

    (again,) = rollback(request).rollbacks
    assert again.already_current
    assert (
        kube.deployment("odoo", "odoo-web")["spec"]["template"]["spec"]["containers"][0]["image"]
        == "odoo:17.0-20251101"
    )
