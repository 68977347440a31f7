"""Local Azure with the network and compute providers only, from a topology a test writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from devhost.localazure import LocalAzure
from shared.azure_clients import AzureSettings

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
NETWORK_PROVIDERS = [
    "devhost.localazure.control",
    "devhost.localazure.trafficmanager",
    "devhost.localazure.aks",
    "devhost.localazure.kubernetes",
    "devhost.localazure.odoo_standin",
    "devhost.localazure.frontdoor",
    "devhost.localazure.locks",
]


def network_topology(
    db_host: str = "odoo-pg-weu.postgres.database.azure.com",
    db_port: int = 5432,
    db_name: str = "odoo",
    ttl: int = 30,
    ready_delay: float = 0.3,
    **sections: Any,
) -> dict[str, Any]:
    """A topology with two regions: the primary in westeurope, the secondary in northeurope.

    Both regions' applications point at ``db_host`` (a flexible server name, or a plain host
    with ``db_port``); the secondary runs no Odoo replicas and its user pool has no nodes.
    """
    env = {"DB_HOST": db_host, "DB_PORT": str(db_port), "DB_NAME": db_name}
    topology: dict[str, Any] = {
        "subscription": SUBSCRIPTION,
        "resourceGroup": "rg-odoo-prod",
        "aks": {
            "operationSeconds": 0.2,
            "clusters": [
                {
                    "name": "aks-odoo-weu",
                    "region": "westeurope",
                    "agentPools": [
                        {"name": "system", "count": 1, "mode": "System"},
                        {"name": "odoo", "count": 3},
                    ],
                },
                {
                    "name": "aks-odoo-neu",
                    "region": "northeurope",
                    "agentPools": [
                        {"name": "system", "count": 1, "mode": "System"},
                        {"name": "odoo", "count": 0},
                    ],
                },
            ],
        },
        "kubernetes": {
            "readyDelaySeconds": ready_delay,
            "brokenImages": ["odoo:17.0-broken"],
            "clusters": {
                "aks-odoo-weu": {"deployments": _deployments(3, 1, env)},
                "aks-odoo-neu": {"deployments": _deployments(0, 0, env)},
            },
        },
        "odoo": {
            "regions": {
                "westeurope": {"cluster": "aks-odoo-weu"},
                "northeurope": {"cluster": "aks-odoo-neu"},
            }
        },
        "trafficManager": {
            "profiles": [
                {
                    "name": "tm-odoo",
                    "ttl": ttl,
                    "endpoints": [
                        {
                            "name": "odoo-weu",
                            "region": "West Europe",
                            "target": "odoo-weu.contoso-finance.example",
                            "priority": 1,
                        },
                        {
                            "name": "odoo-neu",
                            "region": "North Europe",
                            "target": "odoo-neu.contoso-finance.example",
                            "priority": 2,
                        },
                    ],
                }
            ]
        },
    }
    topology.update(sections)
    return topology


def _deployments(web: int, cron: int, env: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"name": "odoo-web", "replicas": web, "image": "odoo:17.0-20251101", "env": env},
        {"name": "odoo-worker", "replicas": web, "image": "odoo:17.0-20251101", "env": env},
        {"name": "odoo-cron", "replicas": cron, "image": "odoo:17.0-20251101", "env": env},
        {"name": "odoo-bank-sync", "replicas": cron, "image": "odoo:17.0-20251101", "env": env},
    ]


@pytest.fixture
def start_local_azure(tmp_path: Path) -> Callable[..., LocalAzure]:
    """Start local Azure on a topology mapping; every one started is stopped after the test."""
    started: list[LocalAzure] = []

    def start(topology: dict[str, Any], providers: list[str] | None = None) -> LocalAzure:
        path = tmp_path / f"topology-{len(started)}.yaml"
        path.write_text(yaml.safe_dump(topology, sort_keys=False))
        azure = LocalAzure(
            tmp_path / f"state-{len(started)}", path, providers=providers or NETWORK_PROVIDERS
        )
        started.append(azure)
        return azure.start()

    yield start
    for azure in reversed(started):
        azure.stop()


def control(azure: LocalAzure, method: str, path: str, body: Any = None) -> Any:
    """Call local Azure's control API (``/_local/...``) the way a test or the demo does."""
    import requests

    resp = requests.request(
        method,
        azure.base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {azure.static_token}"},
        verify=str(azure.certs.ca_bundle),
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json() if resp.content else None


def wait_for(predicate: Callable[[], Any], timeout_s: float = 10, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout_s``."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.05)


def settings_of(azure: LocalAzure) -> AzureSettings:
    """The client settings an activity would read from the app settings local Azure hands out."""
    return AzureSettings.from_env(azure.settings())
