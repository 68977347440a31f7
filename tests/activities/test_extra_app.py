"""Odoo's deployment through the Kubernetes API of local Azure: maintenance mode on and off,
pointing the application at another server (the stand-in Odoo then reports it), and a rolling
restart that a retry of the same step does not repeat."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from activities.app import maintenance, repoint, restart
from activities.database import ActivityError, read_secret
from shared.recovery import SecretRef
from shared.recovery_extra import MaintenanceRequest, RepointRequest, RestartRequest
from tests.activities.conftest import AKS, PG, PRIMARY_ID, REPLICA_ID, base_topology, db

pytestmark = pytest.mark.timeout(300)

CLUSTER = f"{AKS}/aks-odoo-weu"
STEP = {"incident_id": "prod-eu:corruption:1", "step_id": "stop-posting"}
WEB = {"cluster": CLUSTER, "deployment": "odoo-web", "timeout_s": 30}


def app_topology() -> dict[str, Any]:
    """The activity topology with the stand-in Odoo per region and a second writable server."""
    topology = base_topology()
    topology["postgres"]["servers"].append(
        {"name": "odoo-pg-alt", "location": "westeurope", "databases": [{"name": "odoo"}]}
    )
    topology["odoo"] = {
        "regions": {
            "westeurope": {"cluster": "aks-odoo-weu"},
            "northeurope": {"cluster": "aks-odoo-neu"},
        }
    }
    return topology


def kube(env, path: str) -> Any:
    urls = {k.lower(): v for k, v in json.loads(env.settings["DR_K8S_ENDPOINTS"]).items()}
    resp = requests.get(
        urls[CLUSTER.lower()] + path,
        headers={"Authorization": f"Bearer {env.settings['DR_ARM_STATIC_TOKEN']}"},
        verify=env.settings["DR_CA_BUNDLE"],
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()


def web(env) -> dict[str, Any]:
    return kube(env, "/apis/apps/v1/namespaces/odoo/deployments/odoo-web")


def env_of(dep: dict[str, Any]) -> dict[str, str]:
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def test_maintenance_on_then_off_brings_back_the_template_it_started_with(start_env):
    env = start_env(app_topology())
    before = web(env)

    on = maintenance(MaintenanceRequest(**STEP, **WEB, enabled=True))
    on_again = maintenance(MaintenanceRequest(**STEP, **WEB, enabled=True))
    during = web(env)
    off = maintenance(MaintenanceRequest(**{**STEP, "step_id": "reopen"}, **WEB, enabled=False))
    after = web(env)

    assert on.changed and on.enabled and on.ready == before["spec"]["replicas"]
    assert not on_again.changed and on_again.revision == on.revision
    assert env_of(during)["ODOO_MAINTENANCE"] == "1"
    assert off.changed and "ODOO_MAINTENANCE" not in env_of(after)
    assert after["spec"]["template"] == before["spec"]["template"]
    assert after["status"]["readyReplicas"] == before["spec"]["replicas"]


def test_repoint_makes_the_application_report_the_new_server_and_back(start_env):
    env = start_env(app_topology())
    alt = db(f"{PG}/odoo-pg-alt")

    moved = repoint(RepointRequest(**STEP, **WEB, server=alt))
    same = repoint(RepointRequest(**STEP, **WEB, server=alt))
    back = repoint(RepointRequest(**STEP, **WEB, server=db(PRIMARY_ID)))

    assert moved.changed and moved.db_host == "odoo-pg-alt.postgres.database.azure.com"
    assert moved.previous_host == "odoo-pg-weu.postgres.database.azure.com"
    assert moved.health is not None and moved.health.ok
    assert "odoo-pg-alt writable" in moved.health.detail
    assert not same.changed
    assert back.changed and back.health.ok and "odoo-pg-weu" in back.health.detail
    assert env_of(web(env))["DB_HOST"] == "odoo-pg-weu.postgres.database.azure.com"


def test_repoint_to_a_server_that_takes_no_writes_fails_saying_what_health_reports(start_env):
    start_env(app_topology())

    with pytest.raises(ActivityError, match="odoo-pg-neu .*writable False"):
        repoint(RepointRequest(**STEP, **WEB, server=db(REPLICA_ID), check_timeout_s=2))


def test_restart_rolls_out_once_per_step(start_env):
    env = start_env(app_topology())
    releases = "/_local/namespaces/odoo/deployments/odoo-web/releases"
    start = len(kube(env, releases)["releases"])

    first = restart(RestartRequest(**STEP, **WEB))
    retry = restart(RestartRequest(**STEP, **WEB))
    other = restart(RestartRequest(**{**STEP, "step_id": "restart-odoo"}, **WEB))

    assert not first.already_restarted and first.ready == 2
    assert retry.already_restarted and retry.restarted_at == first.restarted_at
    assert not other.already_restarted and other.restarted_at != first.restarted_at
    assert len(kube(env, releases)["releases"]) == start + 2


def test_repoint_sets_the_host_secret_the_application_reads_first_and_only_once(start_env):
    topology = app_topology()
    topology["keyVaults"][0]["secrets"]["odoo-db-host"] = "odoo-pg-weu"
    topology["odoo"]["regions"]["westeurope"]["dbHostSecret"] = "odoo-db-host"
    start_env(topology)
    request = RepointRequest(
        **STEP, **WEB, server=db(f"{PG}/odoo-pg-alt"), db_host_secret="odoo-db-host"
    )

    moved = repoint(request)
    _, first = read_secret(SecretRef(name="odoo-db-host"))
    repoint(request)
    value, second = read_secret(SecretRef(name="odoo-db-host"))

    assert moved.health.ok and "odoo-pg-alt writable" in moved.health.detail
    assert value == "odoo-pg-alt.postgres.database.azure.com"
    assert second.properties.version == first.properties.version
