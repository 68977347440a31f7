"""Topology sections for the network and compute side of local Azure.

These models describe the `trafficManager`, `aks`, `kubernetes`, `odoo` and `locks` sections of
the topology file: what Traffic Manager profiles, AKS clusters, Kubernetes deployments and
stand-in Odoo applications exist when local Azure starts. Each provider validates its own
section with these models, so a typo in the topology fails at start with the field named.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import weakref
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)

AGENT_POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
ENDPOINT_TYPES = ("AzureEndpoints", "ExternalEndpoints", "NestedEndpoints")


def normalise_region(value: str) -> str:
    """Azure writes a region as `West Europe` or `westeurope`; compare them as the short form."""
    return value.replace(" ", "").lower()


class _Section(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class MonitorConfig(_Section):
    """Endpoint probing of a Traffic Manager profile (the published field names)."""

    protocol: Literal["HTTP", "HTTPS", "TCP"] = "HTTP"
    port: int = 80
    path: str = "/web/health"
    interval_in_seconds: int = Field(30, alias="intervalInSeconds")
    timeout_in_seconds: int = Field(10, alias="timeoutInSeconds")
    tolerated_number_of_failures: int = Field(3, alias="toleratedNumberOfFailures")


class TrafficManagerEndpointTopology(_Section):
    """One endpoint of a profile; `region` names the stand-in Odoo that answers its probes."""

    name: str
    type: Literal["AzureEndpoints", "ExternalEndpoints", "NestedEndpoints"] = "ExternalEndpoints"
    region: str
    target: str
    priority: int | None = Field(None, ge=1, le=1000)
    weight: int = Field(1, ge=1, le=1000)
    endpoint_status: Literal["Enabled", "Disabled"] = Field("Enabled", alias="endpointStatus")
    target_resource_id: str | None = Field(None, alias="targetResourceId")


class TrafficManagerProfileTopology(_Section):
    """A Traffic Manager profile and its endpoints as they are when local Azure starts."""

    name: str
    resource_group: str | None = Field(None, alias="resourceGroup")
    routing_method: Literal["Priority", "Weighted", "Performance", "Geographic"] = Field(
        "Priority", alias="trafficRoutingMethod"
    )
    relative_name: str | None = Field(None, alias="relativeName")
    ttl: int = Field(30, ge=0)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    endpoints: list[TrafficManagerEndpointTopology] = Field(default_factory=list)

    @model_validator(mode="after")
    def _priorities_unique(self) -> TrafficManagerProfileTopology:
        priorities = [e.priority for e in self.endpoints if e.priority is not None]
        if len(priorities) != len(set(priorities)):
            raise ValueError(f"profile {self.name}: two endpoints share one priority value")
        return self


class FrontDoorTopology(_Section):
    """The local front door: which Traffic Manager profile it resolves through, on which port."""

    profile: str | None = None
    port: int = 0


class TrafficManagerSection(_Section):
    profiles: list[TrafficManagerProfileTopology] = Field(default_factory=list)
    front_door: FrontDoorTopology = Field(default_factory=FrontDoorTopology, alias="frontDoor")


class AgentPoolTopology(_Section):
    name: str
    count: int = Field(1, ge=0, le=1000)
    mode: Literal["System", "User"] = "User"
    vm_size: str = Field("Standard_D4s_v5", alias="vmSize")
    enable_auto_scaling: bool = Field(False, alias="enableAutoScaling")
    min_count: int | None = Field(None, alias="minCount")
    max_count: int | None = Field(None, alias="maxCount")
    power_state: Literal["Running", "Stopped"] = Field("Running", alias="powerState")

    @field_validator("name")
    @classmethod
    def _pool_name(cls, value: str) -> str:
        if not AGENT_POOL_NAME.match(value):
            raise ValueError(f"agent pool name {value!r} must match {AGENT_POOL_NAME.pattern}")
        return value


class ManagedClusterTopology(_Section):
    name: str
    resource_group: str | None = Field(None, alias="resourceGroup")
    region: str
    kubernetes_version: str = Field("1.33.2", alias="kubernetesVersion")
    dns_prefix: str | None = Field(None, alias="dnsPrefix")
    power_state: Literal["Running", "Stopped"] = Field("Running", alias="powerState")
    agent_pools: list[AgentPoolTopology] = Field(default_factory=list, alias="agentPools")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return normalise_region(value)


class AksSection(_Section):
    """Managed clusters; `operationSeconds` is how long a start, stop or pool change takes."""

    operation_seconds: float = Field(0.5, ge=0, alias="operationSeconds")
    clusters: list[ManagedClusterTopology] = Field(default_factory=list)


class DeploymentTopology(_Section):
    name: str
    replicas: int = Field(1, ge=0)
    image: str
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class ClusterWorkloadTopology(_Section):
    namespace: str = "odoo"
    deployments: list[DeploymentTopology] = Field(default_factory=list)


class KubernetesSection(_Section):
    """Deployments per cluster (keyed by the managed cluster's name).

    `readyDelaySeconds` is how long pods take to become ready after a rollout or after nodes
    appear; images named in `brokenImages` roll out but make the application fail its health
    check, which is how a failed release is staged.
    """

    ready_delay_seconds: float = Field(1.0, ge=0, alias="readyDelaySeconds")
    broken_images: list[str] = Field(default_factory=list, alias="brokenImages")
    clusters: dict[str, ClusterWorkloadTopology] = Field(default_factory=dict)


class OdooRegionTopology(_Section):
    """The stand-in Odoo of one region: which cluster runs it and where its database is.

    The database server is read from the `DB_HOST` environment variable of the `odoo-web`
    deployment (the Azure host name `<server>.postgres.database.azure.com` or the bare server
    name); when `dbHostSecret` names a Key Vault secret that exists, its value wins, so an
    activity can repoint the application either way. It logs in as `DB_USER` with the
    password of the Key Vault secret `dbPasswordSecret` (or `DB_PASSWORD`).
    """

    cluster: str
    deployment: str = "odoo-web"
    db_host_secret: str | None = Field(None, alias="dbHostSecret")
    db_password_secret: str | None = Field(None, alias="dbPasswordSecret")
    port: int = 0


class OdooSection(_Section):
    regions: dict[str, OdooRegionTopology] = Field(default_factory=dict)

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: dict[str, OdooRegionTopology]) -> dict[str, OdooRegionTopology]:
        return {normalise_region(k): v for k, v in value.items()}


class LockTopology(_Section):
    scope: str
    name: str
    level: Literal["CanNotDelete", "ReadOnly"] = "CanNotDelete"
    notes: str | None = None


class NetworkTopology(_Section):
    """Every section this part of local Azure reads, validated together."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    traffic_manager: TrafficManagerSection = Field(
        default_factory=TrafficManagerSection, alias="trafficManager"
    )
    aks: AksSection = Field(default_factory=AksSection)
    kubernetes: KubernetesSection = Field(default_factory=KubernetesSection)
    odoo: OdooSection = Field(default_factory=OdooSection)
    locks: list[LockTopology] = Field(default_factory=list)


SECTIONS = ("trafficManager", "aks", "kubernetes", "odoo", "locks")
_parsed: weakref.WeakKeyDictionary[Any, NetworkTopology] = weakref.WeakKeyDictionary()
_parse_lock = threading.Lock()


def parse_network_topology(raw: dict[str, Any] | None) -> NetworkTopology:
    """Validate the network sections of a topology mapping (other top-level keys are ignored)."""
    return NetworkTopology.model_validate(raw or {})


def network_topology(state: Any) -> NetworkTopology:
    """The validated network sections of ``state.topology``, parsed once per state.

    A missing section is an empty one. Resources without a resource group get the topology's
    default resource group, so every provider names a resource the same way.
    """
    with _parse_lock:
        found = _parsed.get(state)
        if found is not None:
            return found
        topology = state.topology
        raw = {name: topology.section(name) for name in SECTIONS}
        raw = {name: value for name, value in raw.items() if value is not None}
        try:
            parsed = parse_network_topology(raw)
        except ValidationError as exc:
            raise ValueError(f"topology network sections are not valid: {exc}") from exc
        default_rg = getattr(topology, "resourceGroup", None) or "rg-odoo"
        for profile in parsed.traffic_manager.profiles:
            profile.resource_group = profile.resource_group or default_rg
        for cluster in parsed.aks.clusters:
            cluster.resource_group = cluster.resource_group or default_rg
        _parsed[state] = parsed
        return parsed


def saved_state_path(state_dir: Path, provider: str) -> Path:
    """Where a provider of this part of local Azure keeps its state between runs."""
    return Path(state_dir) / "network" / f"{provider}.json"


def save_state(state_dir: Path | None, provider: str, data: Any) -> None:
    """Write a provider's state (JSON-ready ``data``) atomically, so a restart finds it."""
    if state_dir is None:
        return
    path = saved_state_path(state_dir, provider)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    tmp.replace(path)


def load_state(state_dir: Path | None, provider: str) -> Any:
    """A provider's state from an earlier run, or None when there is none (or it is unreadable)."""
    if state_dir is None:
        return None
    path = saved_state_path(state_dir, provider)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        log.warning("ignoring unreadable saved state %s: starting from the topology", path)
        return None
