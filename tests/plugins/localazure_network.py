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


def network_topology(**sections: Any) -> dict[str, Any]:
    """A topology with two regions: the primary in westeurope, the secondary in northeurope."""
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
            "readyDelaySeconds": 0.3,
            "brokenImages": ["odoo:17.0-broken"],
            "clusters": {
                "aks-odoo-weu": {"deployments": _deployments(3, 1)},
                "aks-odoo-neu": {"deployments": _deployments(0, 0)},
            },
        },
    }
    topology.update(sections)
    return topology


def _deployments(web: int, cron: int) -> list[dict[str, Any]]:
    env = {"DB_HOST": "pg-odoo-weu.postgres.database.azure.com", "DB_NAME": "odoo"}
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


def settings_of(azure: LocalAzure) -> AzureSettings:
    """The client settings an activity would read from the app settings local Azure hands out."""
    return AzureSettings.from_env(azure.settings())
