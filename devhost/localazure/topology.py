"""The topology file: which Azure resources local Azure pretends to have, and how they behave.

Sections of other providers (``trafficManager``, ``aks``, ``kubernetes``, ``odoo``, ``locks``)
are carried here as plain JSON values; each provider validates its own section with its own
model when it starts, so this module does not need to know their shapes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger(__name__)

PASSTHROUGH_SECTIONS = ("trafficManager", "aks", "kubernetes", "odoo", "locks")


class TopologyError(ValueError):
    """The topology file is missing, not YAML, or does not describe a valid topology."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PostgresDatabase(Strict):
    """A database created on the primary at creation, owned by ``owner``."""

    name: str
    owner: str | None = Field(default=None, description="login that owns it (created if new)")
    ownerPasswordSecret: str | None = Field(
        default=None, description="Key Vault secret holding the owner's password"
    )


class PostgresServer(Strict):
    """One flexible server; a server with ``replicaOf`` is a streaming standby of that one."""

    name: str
    location: str
    resourceGroup: str | None = None
    version: str = "17"
    skuName: str = "Standard_D4ds_v5"
    skuTier: Literal["Burstable", "GeneralPurpose", "MemoryOptimized"] = "GeneralPurpose"
    storageSizeGB: int = 128
    administratorLogin: str = "odooadmin"
    administratorPasswordSecret: str | None = Field(
        default=None, description="Key Vault secret holding the administrator password"
    )
    replicaOf: str | None = None
    databases: list[PostgresDatabase] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)


class PostgresSection(Strict):
    servers: list[PostgresServer] = Field(default_factory=list)
    archiveTimeoutSeconds: int = Field(default=1, ge=1, description="archive_timeout on primaries")
    backupRetentionDays: int = 7

    @model_validator(mode="after")
    def _replicas_name_a_primary(self) -> PostgresSection:
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise ValueError("postgres.servers: server names must be unique")
        primaries = {s.name for s in self.servers if s.replicaOf is None}
        for server in self.servers:
            if server.replicaOf is not None and server.replicaOf not in primaries:
                raise ValueError(
                    f"postgres server {server.name}: replicaOf {server.replicaOf!r} is not a "
                    "primary server of this topology"
                )
        return self


class KeyVaultSecret(Strict):
    value: str
    contentType: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class KeyVault(Strict):
    name: str
    location: str
    resourceGroup: str | None = None
    secrets: dict[str, KeyVaultSecret | str] = Field(default_factory=dict)

    def secret_values(self) -> dict[str, KeyVaultSecret]:
        return {
            name: (s if isinstance(s, KeyVaultSecret) else KeyVaultSecret(value=s))
            for name, s in self.secrets.items()
        }


class Topology(Strict):
    """The whole topology file; see docs/localazure.md for an annotated example."""

    subscription: str = "00000000-0000-0000-0000-000000000001"
    tenant: str = "00000000-0000-0000-0000-0000000000aa"
    resourceGroup: str = "rg-odoo-prod"
    latencies: dict[str, float] = Field(
        default_factory=dict, description="seconds added to every call of an ARM operation (glob)"
    )
    postgres: PostgresSection = Field(default_factory=PostgresSection)
    keyVaults: list[KeyVault] = Field(default_factory=list)
    # Sections validated by their own providers (see the module docstring).
    trafficManager: Any = None
    aks: Any = None
    kubernetes: Any = None
    odoo: Any = None
    locks: Any = None

    def section(self, name: str) -> Any:
        """The raw value of a pass-through section, or None when the file has none."""
        if name not in PASSTHROUGH_SECTIONS:
            raise KeyError(f"{name} is not a pass-through topology section")
        return getattr(self, name)

    def resource_group_of(self, item: PostgresServer | KeyVault) -> str:
        return item.resourceGroup or self.resourceGroup

    def secret(self, name: str) -> str | None:
        """The topology value of secret ``name`` in the first vault that has it."""
        for vault in self.keyVaults:
            found = vault.secret_values().get(name)
            if found is not None:
                return found.value
        return None


def load_topology(path: Path | str) -> Topology:
    """Read and validate a topology file; the error names the file and what is wrong."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise TopologyError(f"topology file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise TopologyError(f"topology file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TopologyError(f"topology file {path} must hold a mapping at the top level")
    try:
        return Topology.model_validate(raw)
    except ValidationError as exc:
        raise TopologyError(f"topology file {path} is not valid: {exc}") from exc
