"""The stand-in Odoo of each region: its health check really tries the database it points at."""

from __future__ import annotations

import socket

import pytest
import requests

from tests.plugins.localazure_network import control, kube, network_topology


@pytest.fixture
def azure(start_local_azure, pg_server, standin_databases):
    return start_local_azure(
        network_topology(
            db_host="127.0.0.1", db_port=pg_server.port, db_name=standin_databases["writable"]
        )
    )


def url_of(azure, region: str) -> str:
    import json

    return json.loads(azure.settings()["DR_ODOO_STANDIN_URLS"])[region]


def health(azure, region: str = "westeurope") -> requests.Response:
    return requests.get(url_of(azure, region) + "/web/health", timeout=10)


def set_env(azure, name: str, value: str, cluster: str = "aks-odoo-weu") -> None:
    """Repoint the application the way an activity does: patch the web deployment's env."""
    kube(
        azure,
        cluster,
        "PATCH",
        "/deployments/odoo-web",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "odoo-web", "env": [{"name": name, "value": value}]}
                        ]
                    }
                }
            }
        },
    )


def test_health_passes_with_a_writable_database(azure):
    resp = health(azure)
    assert resp.status_code == 200
    body = resp.json()
    assert body == {
        "status": "pass",
        "region": "westeurope",
        "database": {"writable": True, "server": "127.0.0.1"},
    }


def test_fenced_database_is_reported_not_writable(azure, standin_databases):
    set_env(azure, "DB_NAME", standin_databases["readonly"])
    body = health(azure).json()
    assert body["status"] == "pass"
    assert body["database"]["writable"] is False
    assert "read-only" in body["database"]["error"]


def test_unreachable_database_fails_the_health_check(azure):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    set_env(azure, "DB_PORT", str(closed_port))
    resp = health(azure)
    assert resp.status_code == 503
    assert resp.json()["status"] == "fail"
    assert resp.json()["database"]["writable"] is False


def test_failed_region_refuses_connections_until_restored(azure):
    url = url_of(azure, "westeurope")
    control(azure, "POST", "/_local/regions/westeurope/fail")
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/web/health", timeout=5)

    control(azure, "POST", "/_local/regions/westeurope/restore")
    assert requests.get(url + "/web/health", timeout=10).status_code == 200


def test_no_ready_replicas_means_503(azure):
    kube(azure, "aks-odoo-weu", "PATCH", "/deployments/odoo-web/scale", {"spec": {"replicas": 0}})
    resp = health(azure)
    assert resp.status_code == 503
    assert "no ready replicas" in resp.json()["reason"]


def test_secondary_without_replicas_is_unhealthy(azure):
    assert health(azure, "northeurope").status_code == 503


def test_broken_release_fails_health_until_rolled_back(azure):
    def image(tag: str) -> dict:
        return {
            "spec": {
                "template": {"spec": {"containers": [{"name": "odoo-web", "image": f"odoo:{tag}"}]}}
            }
        }

    kube(azure, "aks-odoo-weu", "PATCH", "/deployments/odoo-web", image("17.0-broken"))
    resp = health(azure)
    assert resp.status_code == 500
    assert "17.0-broken" in resp.json()["reason"]

    kube(azure, "aks-odoo-weu", "PATCH", "/deployments/odoo-web", image("17.0-20251101"))
    assert health(azure).status_code == 200


def test_key_vault_secret_repoints_the_application(start_local_azure, pg_server, standin_databases):
    from azure.keyvault.secrets import SecretClient  # noqa: F401

    from shared.azure_clients import AzureSettings, secret_client

    topology = network_topology(
        db_host="127.0.0.1", db_port=pg_server.port, db_name=standin_databases["writable"]
    )
    topology["keyVaults"] = [
        {"name": "kv-odoo", "location": "westeurope", "secrets": {"odoo-db-host": "127.0.0.1"}}
    ]
    topology["odoo"]["regions"]["westeurope"]["dbHostSecret"] = "odoo-db-host"
    from tests.plugins.localazure_network import NETWORK_PROVIDERS

    azure = start_local_azure(
        topology, providers=[*NETWORK_PROVIDERS, "devhost.localazure.keyvault"]
    )
    assert health(azure).json()["database"]["server"] == "127.0.0.1"

    settings = azure.settings()
    client = secret_client(settings["DR_KEYVAULT_URL"], AzureSettings.from_env(settings))
    client.set_secret("odoo-db-host", "127.0.0.2")  # a host where nothing listens
    client.close()

    body = health(azure).json()
    assert body["database"]["server"] == "127.0.0.2"
    assert body["status"] == "fail"


def test_flexible_servers_of_local_azure_primary_is_writable_replica_is_not(
    start_local_azure, enterable_tmp
):
    """The stand-ins point at real local flexible servers: a primary and its streaming standby."""
    import uuid

    from tests.plugins.localazure_network import NETWORK_PROVIDERS

    topology = network_topology(db_host="odoo-pg-weu.postgres.database.azure.com")
    topology["postgres"] = {
        "servers": [
            {
                "name": "odoo-pg-weu",
                "location": "westeurope",
                "databases": [
                    {"name": "odoo", "owner": "odoo", "ownerPasswordSecret": "odoo-db-pw"}
                ],
            },
            {"name": "odoo-pg-neu", "location": "northeurope", "replicaOf": "odoo-pg-weu"},
        ]
    }
    topology["keyVaults"] = [
        {"name": "kv-odoo", "location": "westeurope", "secrets": {"odoo-db-pw": "local-only-pw"}}
    ]
    for region in ("westeurope", "northeurope"):
        topology["odoo"]["regions"][region]["dbPasswordSecret"] = "odoo-db-pw"
    for cluster in topology["kubernetes"]["clusters"].values():
        for dep in cluster["deployments"]:
            dep["env"]["DB_USER"] = "odoo"
    root = enterable_tmp / f"standin-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    root.chmod(0o755)
    providers = [
        "devhost.localazure.control",
        "devhost.localazure.postgres",
        "devhost.localazure.keyvault",
        *NETWORK_PROVIDERS[1:],
    ]
    azure = start_local_azure(topology, providers=providers, state_root=root)

    body = health(azure).json()
    assert body["database"] == {"writable": True, "server": "odoo-pg-weu"}

    # Repoint the primary region's application at the replica: it answers, read-only.
    set_env(azure, "DB_HOST", "odoo-pg-neu.postgres.database.azure.com")
    body = health(azure).json()
    assert body["status"] == "pass"
    assert body["database"] == {"writable": False, "server": "odoo-pg-neu"}


def test_demo_topology_serves_odoo_from_the_primary_through_the_front_door(
    start_local_azure, enterable_tmp
):
    """config/topology.yaml starts whole, and a client reaches a writable primary."""
    import uuid
    from pathlib import Path

    import yaml

    from devhost.localazure.server import PROVIDERS

    topology = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "config" / "topology.yaml").read_text()
    )
    root = enterable_tmp / f"demo-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    root.chmod(0o755)
    azure = start_local_azure(topology, providers=PROVIDERS, state_root=root)

    resp = requests.get(azure.settings()["DR_FRONTDOOR_URL"] + "/web/health", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["X-Served-Region"] == "westeurope"
    assert resp.json()["database"] == {"writable": True, "server": "odoo-pg-weu"}
    assert health(azure, "northeurope").status_code == 503  # warm standby: no Odoo running
