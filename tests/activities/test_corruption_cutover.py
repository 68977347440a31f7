"""Database corruption end to end: find the last good point, restore it in isolation, hold its
jobs, repoint the application at it; and the undo of a restore deletes only what we created."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from activities.compute import repoint_database, restart_deployment
from activities.database import ActivityError, drop_server, find_recovery_point, pitr
from shared.recovery import (
    DropServerRequest,
    PitrRequest,
    RecoveryPointRequest,
    RepointDatabaseRequest,
    RestartDeploymentRequest,
    choose_recovery_point,
)
from tests.activities.conftest import AKS, PRIMARY_ID, base_topology, db

pytestmark = pytest.mark.timeout(300)

STEP = {"incident_id": "prod-eu/data#2", "step_id": "test"}
WEU = f"{AKS}/aks-odoo-weu"
T = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_recovery_point_is_just_before_the_first_sign_of_damage():
    point, reason = choose_recovery_point(T, T + timedelta(minutes=5), T - timedelta(days=7), 2)
    assert point == T - timedelta(seconds=2) and "first sign of damage" in reason


def test_recovery_point_outside_the_restore_window_is_refused():
    with pytest.raises(ValueError, match="no longer reach back"):
        choose_recovery_point(T, None, T + timedelta(hours=1), 1)


def _topology() -> dict:
    topology = base_topology()
    topology["odoo"] = {"regions": {"westeurope": {"cluster": "aks-odoo-weu"}}}
    topology["trafficManager"]["frontDoor"] = {"profile": "tm-odoo"}
    return topology


def test_restored_server_takes_over_from_the_damaged_one(start_env):
    env = start_env(_topology())
    env.sql("odoo-pg-weu", "CREATE TABLE ledger (id int PRIMARY KEY)")
    env.sql("odoo-pg-weu", "INSERT INTO ledger VALUES (1), (2)")
    damage_at = env.sql("odoo-pg-weu", "SELECT clock_timestamp()")[0][0]
    env.sql("odoo-pg-weu", "DELETE FROM ledger")

    point = find_recovery_point(
        RecoveryPointRequest(**STEP, server=db(PRIMARY_ID), suspected_since=damage_at, margin_s=0)
    )
    restored = pitr(
        PitrRequest(
            **STEP,
            source=db(PRIMARY_ID),
            target_name="odoo-pg-restore2",
            point_in_time=point.point_in_time,
        )
    )
    assert env.sql("odoo-pg-restore2", "SELECT count(*) FROM ledger")[0][0] == 2

    request = RepointDatabaseRequest(
        **STEP, cluster=WEU, deployment="odoo-web", server=restored.server
    )
    first = repoint_database(request)
    assert first.deployments[0].changed
    assert not repoint_database(request).deployments[0].changed
    health = requests.get(env.settings["DR_FRONTDOOR_URL"] + "/web/health", timeout=10).json()
    assert health["database"]["server"] == "odoo-pg-restore2", health

    restarted = restart_deployment(
        RestartDeploymentRequest(**STEP, cluster=WEU, deployment="odoo-web", timeout_s=30)
    )
    assert restarted.deployments[0].changed

    undo = drop_server(DropServerRequest(**STEP, server=restored.server))
    assert undo.deleted
    assert not drop_server(DropServerRequest(**STEP, server=restored.server)).deleted


def test_undo_of_a_restore_never_deletes_a_server_it_did_not_create(start_env):
    start_env(base_topology(network=False))
    with pytest.raises(ActivityError, match="refusing to delete odoo-pg-weu"):
        drop_server(DropServerRequest(**STEP, server=db(PRIMARY_ID)))
