"""Reroute within a region, isolation by environment and its undo, secrets rotated by name, the
attachment store switched and back, an integration paused and resumed, and dependency probes.

The incident ids name ``prod-eu`` of config/workloads.yaml, whose resource ids are those of the
local Azure topology of these tests (same subscription, group and names).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
import requests

from activities.database import read_secret
from activities.routing import (
    check_dependency,
    integration,
    lock_environment,
    lock_name,
    reroute,
    rotate_by_name,
    storage_failover,
    unlock,
)
from shared.recovery import SecretRef
from shared.recovery_extra import (
    DependencyCheckRequest,
    IntegrationRequest,
    IsolationRequest,
    RerouteRequest,
    SecretsRotateRequest,
    StorageFailoverRequest,
)
from tests.activities.conftest import PRIMARY_ID, PROFILE_ID, SUB, base_topology

pytestmark = pytest.mark.timeout(300)

STEP = {"incident_id": "prod-eu:security:1", "step_id": "isolate"}
VAULT_ID = (
    f"/subscriptions/{SUB}/resourceGroups/rg-odoo-prod/providers/Microsoft.KeyVault/vaults/"
    "kv-odoo-prod"
)


def arm(env, method: str, path: str) -> Any:
    resp = requests.request(
        method,
        f"{env.settings['DR_ARM_ENDPOINT']}{path}",
        params={"api-version": "2022-04-01"},
        headers={"Authorization": f"Bearer {env.settings['DR_ARM_STATIC_TOKEN']}"},
        verify=env.settings["DR_CA_BUNDLE"],
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json() if resp.content else None


def endpoint_status(env, name: str) -> str:
    return arm(env, "GET", f"{PROFILE_ID}/ExternalEndpoints/{name}")["properties"]["endpointStatus"]


def kube_replicas(env, name: str) -> int:
    url = json.loads(env.settings["DR_K8S_ENDPOINTS"])[
        f"/subscriptions/{SUB}/resourceGroups/rg-odoo-prod/providers/"
        "Microsoft.ContainerService/managedClusters/aks-odoo-weu"
    ]
    resp = requests.get(
        f"{url}/apis/apps/v1/namespaces/odoo/deployments/{name}",
        headers={"Authorization": f"Bearer {env.settings['DR_ARM_STATIC_TOKEN']}"},
        verify=env.settings["DR_CA_BUNDLE"],
        timeout=10,
    )
    resp.raise_for_status()
    return int(resp.json()["spec"].get("replicas", 0))


def test_reroute_takes_an_endpoint_out_only_when_its_region_keeps_another(start_env):
    topology = base_topology()
    topology["trafficManager"]["profiles"][0]["endpoints"].append(
        {
            "name": "odoo-weu-b",
            "region": "westeurope",
            "target": "odoo-weu-b.example",
            "priority": 3,
        }
    )
    env = start_env(topology)

    out = reroute(RerouteRequest(**STEP, profile=PROFILE_ID, endpoint="odoo-weu"))
    again = reroute(RerouteRequest(**STEP, profile=PROFILE_ID, endpoint="odoo-weu"))
    kept = reroute(RerouteRequest(**STEP, profile=PROFILE_ID, endpoint="secondary"))

    assert out.rerouted and not out.already_out and out.remaining == ["odoo-weu-b"]
    assert endpoint_status(env, "odoo-weu") == "Disabled"
    assert again.already_out
    assert kept.endpoint == "odoo-neu" and not kept.rerouted
    assert "cutover" in kept.detail
    assert endpoint_status(env, "odoo-neu") == "Enabled"


def test_unlock_removes_the_isolation_lock_and_leaves_other_locks(start_env):
    topology = base_topology()
    topology["locks"] = [
        {"scope": PRIMARY_ID, "name": "keep-ledger-server", "level": "CanNotDelete"}
    ]
    env = start_env(topology)
    locks = f"{PRIMARY_ID}/providers/Microsoft.Authorization/locks"

    placed = lock_environment(IsolationRequest(**STEP, environment="prod-eu"))
    during = {item["name"] for item in arm(env, "GET", locks)["value"]}
    lifted = unlock(IsolationRequest(**{**STEP, "step_id": "isolate:undo"}, environment="prod-eu"))
    after = {item["name"] for item in arm(env, "GET", locks)["value"]}
    again = unlock(IsolationRequest(**{**STEP, "step_id": "isolate:undo"}, environment="prod-eu"))

    assert during == {"keep-ledger-server", lock_name(STEP["incident_id"])}
    assert len(lifted.removed) == len(placed.locks) and lifted.already_gone == []
    assert after == {"keep-ledger-server"}
    assert again.removed == [] and len(again.already_gone) == len(placed.locks)


def test_secrets_rotate_by_name_gives_the_app_role_its_new_password(start_env):
    env = start_env(base_topology(network=False))

    done = rotate_by_name(SecretsRotateRequest(**STEP, vault=VAULT_ID, names=["odoo-db-password"]))

    (rotated,) = done.rotated
    value, _ = read_secret(SecretRef(name="odoo-db-password", vault_url=done.vault_url))
    assert value != "test-odoo-Pa55" and rotated.new_version
    assert rotated.applied_on == [PRIMARY_ID]
    assert set(rotated.not_applied) == {
        f"{PRIMARY_ID[: -len('odoo-pg-weu')]}odoo-pg-neu",
        f"{PRIMARY_ID[: -len('odoo-pg-weu')]}odoo-pg-restore",
    }
    dsn = f"host=127.0.0.1 port={env.port('odoo-pg-weu')} dbname=odoo user=odoo password={value}"
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "odoo"


def test_storage_fails_over_to_the_secondary_account_and_back(start_env):
    start_env(base_topology(network=False))
    account = "stodooprodneu"
    secret = SecretRef(name="attachments-account")

    over = storage_failover(StorageFailoverRequest(**STEP, account=account, check=False))
    moved = read_secret(secret)[0]
    back = storage_failover(StorageFailoverRequest(**STEP, account=account, check=False), back=True)

    assert over.account == "stodooprodneu" and over.changed
    assert moved == "https://stodooprodneu.blob.core.windows.net/"
    assert back.account == "stodooprodweu" and back.changed
    assert read_secret(secret)[0] == "https://stodooprodweu.blob.core.windows.net/"


def test_integration_pause_and_resume_and_its_probe(start_env):
    env = start_env(base_topology())
    step = {**STEP, "incident_id": "prod-eu:dependency:1"}

    paused = integration(IntegrationRequest(**step, integration="bank-gateway"), resume=False)
    probe_paused = check_dependency(DependencyCheckRequest(**step, dependency="odoo-bank-sync"))
    resumed = integration(IntegrationRequest(**step, integration="bank-gateway"), resume=True)
    probe = check_dependency(DependencyCheckRequest(**step, dependency="odoo-bank-sync"))

    assert paused.paused and [d.name for d in paused.deployments] == ["odoo-bank-sync"]
    assert probe_paused.kind == "integration" and probe_paused.healthy is False
    assert "paused" in probe_paused.detail
    assert not resumed.paused and kube_replicas(env, "odoo-bank-sync") == 1
    assert probe.healthy is True


def test_redis_probe_reports_ping_and_a_dead_cache(redis_url, monkeypatch):
    step = {**STEP, "incident_id": "prod-eu:dependency:1"}
    monkeypatch.setenv("DR_REDIS_URL", redis_url)

    alive = check_dependency(DependencyCheckRequest(**step, dependency="redis-odoo-weu"))
    monkeypatch.setenv("DR_REDIS_URL", "redis://127.0.0.1:9/0")
    dead = check_dependency(
        DependencyCheckRequest(**step, dependency="redis-odoo-weu", timeout_s=1)
    )

    assert alive.kind == "redis" and alive.healthy is True
    assert "Redis cache" in alive.kind_reason
    assert dead.healthy is False and "does not answer" in dead.detail


def test_a_dependency_without_a_probe_says_so():
    result = check_dependency(
        DependencyCheckRequest(**{**STEP, "incident_id": "prod-eu:dns:1"}, dependency="corp-dns")
    )
    assert result.kind == "dns" and result.healthy is None
    assert "no probe" in result.detail
