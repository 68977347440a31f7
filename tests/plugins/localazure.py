"""Local Azure for tests: started in-process on a temporary state dir, stopped afterwards."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devhost.localazure import LocalAzure
from devhost.pg import PostgresUnavailable, ensure_enterable
from shared.azure_clients import AzureSettings

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
RESOURCE_GROUP = "rg-odoo-prod"
CORE_PROVIDERS = [
    "devhost.localazure.control",
    "devhost.localazure.postgres",
    "devhost.localazure.keyvault",
]

# The demo's shape, small: a primary in westeurope, its standby in northeurope, one vault.
CORE_TOPOLOGY: dict[str, Any] = {
    "subscription": SUBSCRIPTION,
    "resourceGroup": RESOURCE_GROUP,
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
                "pg-admin-password": "test-admin-password",
                "odoo-db-password": "test-odoo-password",
            },
        }
    ],
}


def core_topology(**overrides: Any) -> dict[str, Any]:
    """A copy of the core topology with top-level sections replaced by ``overrides``."""
    topology = copy.deepcopy(CORE_TOPOLOGY)
    topology.update(overrides)
    return topology


@pytest.fixture
def localazure_factory(enterable_tmp: Path) -> Iterator[Callable[..., LocalAzure]]:
    """Start a LocalAzure from a topology dict: ``localazure_factory(topology, providers=...)``.

    Each one gets its own state dir (enterable by the postgres user) and is stopped at the end
    of the test, its PostgreSQL instances with it.
    """
    started: list[LocalAzure] = []

    def start(
        topology: dict[str, Any] | None = None, providers: list[str] | None = None
    ) -> LocalAzure:
        root = enterable_tmp / f"localazure-{len(list(enterable_tmp.glob('localazure-*')))}"
        ensure_enterable(root)
        topology_file = root / "topology.yaml"
        topology_file.write_text(yaml.safe_dump(topology or core_topology()))
        local = LocalAzure(root / "state", topology_file, providers=providers or CORE_PROVIDERS)
        try:
            local.start()
        except PostgresUnavailable as exc:
            pytest.fail(f"local Azure needs PostgreSQL: {exc}")
        started.append((local, root))
        return local

    yield start
    # Each instance keeps clusters, WAL archives and base backups: remove them with it.
    for local, root in reversed(started):
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def local_azure(enterable_tmp: Path) -> Iterator[LocalAzure]:
    """One LocalAzure with the core topology for a test module (tests must leave it as found)."""
    root = enterable_tmp / f"localazure-module-{len(list(enterable_tmp.glob('localazure-m*')))}"
    ensure_enterable(root)
    topology_file = root / "topology.yaml"
    topology_file.write_text(yaml.safe_dump(core_topology()))
    local = LocalAzure(root / "state", topology_file, providers=CORE_PROVIDERS)
    try:
        local.start()
    except PostgresUnavailable as exc:
        pytest.fail(f"local Azure needs PostgreSQL: {exc}")
    yield local
    local.stop()
    shutil.rmtree(root, ignore_errors=True)


def azure_settings(local: LocalAzure) -> AzureSettings:
    """The settings an activity would read, pointing at ``local``."""
    return AzureSettings.from_env(local.settings())
