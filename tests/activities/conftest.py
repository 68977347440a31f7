"""Local Azure for the activity tests: two PostgreSQL servers (primary in westeurope, streaming
replica in northeurope), a Key Vault, Traffic Manager, AKS and Kubernetes, started per test
from a topology the test can extend, with the app settings an activity reads put in the
environment."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import requests
import yaml

from devhost.localazure import LocalAzure
from shared.recovery import AppCredential, DbServer, SecretRef, TrafficEndpoint

SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-odoo-prod"
PG = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DBforPostgreSQL/flexibleServers"
PRIMARY_ID = f"{PG}/odoo-pg-weu"
REPLICA_ID = f"{PG}/odoo-pg-neu"
PROFILE_ID = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/trafficmanagerprofiles/"
    "tm-odoo"
)
AKS = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters"
)
ADMIN_SECRET = SecretRef(name="pg-admin-password")
APP = AppCredential(role="odoo", password_secret=SecretRef(name="odoo-db-password"), dbname="odoo")


def _deployments(web: int, cron: int) -> list[dict[str, Any]]:
    env = {"DB_HOST": "odoo-pg-weu.postgres.database.azure.com", "DB_NAME": "odoo"}
    image = "odoo:17.0-20251101"
    return [
        {"name": "odoo-web", "replicas": web, "image": image, "env": env},
        {"name": "odoo-worker", "replicas": web, "image": image, "env": env},
        {"name": "odoo-cron", "replicas": cron, "image": image, "env": env},
        {"name": "odoo-bank-sync", "replicas": cron, "image": image, "env": env},
    ]


def base_topology(*, network: bool = True) -> dict[str, Any]:
    topology: dict[str, Any] = {
        "subscription": SUB,
        "resourceGroup": RG,
        "postgres": {
            "archiveTimeoutSeconds": 1,
            "servers": [
                {
                    "name": "odoo-pg-weu",
                    "location": "westeurope",
                    "administratorLogin": "odooadmin",
                    "administratorPasswordSecret": "pg-admin-password",
                    "databases": [
                        {"name": "odoo", "owner": "odoo", "ownerPasswordSecret": "odoo-db-password"}
                    ],
                },
                {"name": "odoo-pg-neu", "location": "northeurope", "replicaOf": "odoo-pg-weu"},
            ],
        },
        "keyVaults": [
            {
                "name": "kv-odoo-prod",
                "location": "westeurope",
                "secrets": {
                    "pg-admin-password": "test-admin-Pa55",
                    "odoo-db-password": "test-odoo-Pa55",
                    "attachments-account": "https://stodooprodweu.blob.core.windows.net/",
                },
            }
        ],
    }
    if network:
        topology["trafficManager"] = {
            "profiles": [
                {
                    "name": "tm-odoo",
                    "ttl": 1,
                    "monitor": {
                        "intervalInSeconds": 1,
                        "timeoutInSeconds": 1,
                        "toleratedNumberOfFailures": 0,
                    },
                    "endpoints": [
                        {
                            "name": "odoo-weu",
                            "region": "westeurope",
                            "target": "odoo-weu.example",
                            "priority": 1,
                        },
                        {
                            "name": "odoo-neu",
                            "region": "northeurope",
                            "target": "odoo-neu.example",
                            "priority": 2,
                        },
                    ],
                }
            ]
        }
        topology["aks"] = {
            "operationSeconds": 0.2,
            "clusters": [
                {
                    "name": "aks-odoo-weu",
                    "region": "westeurope",
                    "agentPools": [{"name": "system", "count": 1}, {"name": "odoo", "count": 3}],
                },
                {
                    "name": "aks-odoo-neu",
                    "region": "northeurope",
                    "agentPools": [{"name": "system", "count": 1}, {"name": "odoo", "count": 0}],
                },
            ],
        }
        topology["kubernetes"] = {
            "readyDelaySeconds": 0.2,
            "brokenImages": ["odoo:17.0-broken"],
            "clusters": {
                "aks-odoo-weu": {"deployments": _deployments(2, 1)},
                "aks-odoo-neu": {"deployments": _deployments(0, 0)},
            },
        }
    return topology


@dataclass
class Env:
    """A started local Azure and the handles a test needs."""

    azure: LocalAzure
    settings: dict[str, str]

    def control(self, method: str, path: str, body: Any = None) -> Any:
        resp = requests.request(
            method,
            f"{self.azure.base_url}/_local/{path.lstrip('/')}",
            json=body,
            headers={"Authorization": f"Bearer {self.settings['DR_ARM_STATIC_TOKEN']}"},
            verify=self.settings["DR_CA_BUNDLE"],
            timeout=60,
        )
        assert resp.status_code < 300, resp.text
        return resp.json() if resp.content else None

    def port(self, name: str) -> int:
        return int(self.azure.provider("postgres").fleet.require(name).port)

    def sql(self, name: str, query: str, params: Any = None, dbname: str = "odoo") -> list[tuple]:
        """Run SQL as the local superuser (trusted on loopback), for setting up and checking."""
        dsn = f"host=127.0.0.1 port={self.port(name)} user=postgres dbname={dbname}"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def wait_replayed(self, timeout_s: float = 30) -> None:
        """Wait until the replica has replayed everything the primary has written."""
        target = self.sql("odoo-pg-weu", "SELECT pg_current_wal_lsn()")[0][0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = self.sql(
                "odoo-pg-neu", "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
            )[0][0]
            if done:
                return
            time.sleep(0.1)
        raise AssertionError("the replica did not catch up")


def db(server_id: str, **kw: Any) -> DbServer:
    return DbServer(
        server_id=server_id,
        admin_user="odooadmin",
        admin_password_secret=ADMIN_SECRET,
        **kw,
    )


def endpoint(name: str) -> TrafficEndpoint:
    return TrafficEndpoint(profile_id=PROFILE_ID, name=name)


@pytest.fixture
def start_env(enterable_tmp, monkeypatch) -> Callable[..., Env]:
    """Start local Azure on a topology; stopped (with its PostgreSQL instances) after the test."""
    started: list[LocalAzure] = []

    def start(topology: dict[str, Any] | None = None) -> Env:
        root = enterable_tmp / f"la-{time.monotonic_ns()}"
        root.mkdir()
        path = root / "topology.yaml"
        path.write_text(yaml.safe_dump(topology or base_topology(), sort_keys=False))
        azure = LocalAzure(root / "state", path)
        started.append((azure, root))
        azure.start()
        settings = azure.settings()
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AzureWebJobsStorage", raising=False)
        env = Env(azure=azure, settings=settings)
        # On Azure the administrator creates the application's role and so may alter it; the
        # topology creates it as the superuser, so hand the administrator that right here.
        env.sql("odoo-pg-weu", "GRANT odoo TO odooadmin WITH ADMIN OPTION", dbname="postgres")
        return env

    yield start
    # Each environment keeps clusters, WAL archives and base backups: remove them with it.
    for azure, root in reversed(started):
        azure.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_url(enterable_tmp):
    """A private redis-server on a free port (no persistence), stopped after the test."""
    import shutil
    import subprocess

    from devhost.pg import free_port

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("tests need redis-server (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(enterable_tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
