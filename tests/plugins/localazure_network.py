"""Local Azure with the network and compute providers only, from a topology a test writes."""

from __future__ import annotations

import shutil
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
    """Start local Azure on a topology mapping; every one started is stopped after the test.

    ``state_root`` must be a folder the postgres user can enter when the topology has servers.
    """
    started: list[LocalAzure] = []

    def start(
        topology: dict[str, Any],
        providers: list[str] | None = None,
        state_root: Path | None = None,
    ) -> LocalAzure:
        root = state_root or tmp_path
        path = root / f"topology-{len(started)}.yaml"
        path.write_text(yaml.safe_dump(topology, sort_keys=False))
        azure = LocalAzure(
            root / f"state-{len(started)}", path, providers=providers or NETWORK_PROVIDERS
        )
        started.append(azure)
        return azure.start()

    yield start
    for azure in reversed(started):
        azure.stop()
        shutil.rmtree(azure.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def standin_databases(pg_server) -> dict[str, str]:
    """Two databases on the session's server: ``writable`` and ``readonly`` (a fenced one)."""
    import psycopg

    names = {"writable": "standin_writable", "readonly": "standin_readonly"}
    with psycopg.connect(pg_server.dsn, autocommit=True, connect_timeout=5) as conn:
        for name in names.values():
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                conn.execute(f"CREATE DATABASE {name}")
        conn.execute(f"ALTER DATABASE {names['readonly']} SET default_transaction_read_only = on")
    return names


def bring_up_secondary(azure: LocalAzure, replicas: int = 2) -> None:
    """Give the secondary cluster nodes and run Odoo's web deployment there (a prestage)."""
    from shared.azure_clients import containerservice_client

    aks = containerservice_client(SUBSCRIPTION, settings_of(azure), polling_interval=0.05)
    try:
        aks.agent_pools.begin_create_or_update(
            "rg-odoo-prod", "aks-odoo-neu", "odoo", {"properties": {"count": replicas}}
        ).result(timeout=30)
    finally:
        aks.close()
    kube(
        azure,
        "aks-odoo-neu",
        "PATCH",
        "/deployments/odoo-web/scale",
        {"spec": {"replicas": replicas}},
    )


def kube(azure: LocalAzure, cluster: str, method: str, path: str, body: Any = None) -> Any:
    """Call a cluster's Kubernetes API under ``/apis/apps/v1/namespaces/odoo``."""
    import json

    import requests

    settings = azure.settings()
    endpoints = json.loads(settings["DR_K8S_ENDPOINTS"])
    base = next(url for cid, url in endpoints.items() if cid.endswith("/" + cluster))
    resp = requests.request(
        method,
        f"{base}/apis/apps/v1/namespaces/odoo{path}",
        data=json.dumps(body) if body is not None else None,
        headers={
            "Authorization": f"Bearer {settings['DR_ARM_STATIC_TOKEN']}",
            "Content-Type": "application/strategic-merge-patch+json",
        },
        verify=settings["DR_CA_BUNDLE"],
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()


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


FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


def published(relative: str) -> dict[str, Any]:
    """A published sample from ../shared/fixtures; skips the test when the folder is absent."""
    import json

    path = FIXTURES / relative
    if not FIXTURES.is_dir():
        pytest.skip(f"published samples not available: {FIXTURES.resolve()} does not exist")
    return json.loads(path.read_text())


def shape_gaps(sample: Any, ours: Any, left_out: set[str] = frozenset(), path: str = "") -> list:
    """Where ``ours`` does not have the shape of the published ``sample``.

    Every key of the sample must be in ours with a value of the same JSON kind, recursively
    (the first item stands for a list), unless its dotted path is in ``left_out``.
    """

    def kind(value: Any) -> str:
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int | float):
            return "number"
        return type(value).__name__

    if kind(sample) != kind(ours):
        return [f"{path or '<root>'}: published {kind(sample)}, ours {kind(ours)}"]
    gaps: list[str] = []
    if isinstance(sample, dict):
        for key, value in sample.items():
            where = f"{path}.{key}" if path else key
            if where in left_out:
                continue
            if key not in ours:
                gaps.append(f"{where}: missing")
                continue
            gaps += shape_gaps(value, ours[key], left_out, where)
    elif isinstance(sample, list) and sample:
        if not ours:
            return [f"{path}: published a non-empty list, ours is empty"]
        gaps += shape_gaps(sample[0], ours[0], left_out, f"{path}[]")
    return gaps
