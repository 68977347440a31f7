"""AKS managed clusters and their agent pools in local Azure (API 2025-10-01 shapes).

A cluster has a power state and agent pools with node counts. Start, stop and pool changes
are long-running operations that take ``aks.operationSeconds``; nodes exist only once the
operation has ended. The Kubernetes API of a cluster (kubernetes.py) asks this module whether
the cluster serves and since when it has nodes, which is what makes pods become ready.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from typing import Any

from pydantic import BaseModel, Field

from devhost.localazure.arm import (
    ArmContext,
    ArmError,
    ArmRequest,
    ArmResponse,
    ProviderEnv,
    Route,
)
from devhost.localazure.topology_f import (
    AGENT_POOL_NAME,
    ManagedClusterTopology,
    load_state,
    network_topology,
    save_state,
)

log = logging.getLogger(__name__)

NAME = "aks"
CLUSTER_TYPE = "Microsoft.ContainerService/managedClusters"
POOL_TYPE = "Microsoft.ContainerService/managedClusters/agentPools"
CLUSTER_PATH = (
    "/subscriptions/{subscription}/resourceGroups/{rg}/providers/"
    "Microsoft.ContainerService/managedClusters/{cluster}"
)
NODE_IMAGE = "AKSUbuntu-2204gen2containerd-202510.01.0"


class AgentPool(BaseModel):
    """One agent pool; ``nodes`` is what actually runs, ``count`` what was asked for."""

    name: str
    count: int
    nodes: int
    mode: str = "User"
    vm_size: str = "Standard_D4s_v5"
    os_type: str = "Linux"
    enable_auto_scaling: bool = False
    min_count: int | None = None
    max_count: int | None = None
    power_state: str = "Running"
    provisioning_state: str = "Succeeded"
    orchestrator_version: str = "1.33.2"
    extra: dict[str, Any] = Field(default_factory=dict)

    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = dict(self.extra)
        props.update(
            {
                "count": self.count,
                "vmSize": self.vm_size,
                "osType": self.os_type,
                "mode": self.mode,
                "maxPods": 110,
                "type": "VirtualMachineScaleSets",
                "enableAutoScaling": self.enable_auto_scaling,
                "provisioningState": self.provisioning_state,
                "powerState": {"code": self.power_state},
                "orchestratorVersion": self.orchestrator_version,
                "currentOrchestratorVersion": self.orchestrator_version,
                "nodeImageVersion": NODE_IMAGE,
                "upgradeSettings": {"maxSurge": "10%"},
                "eTag": _etag(self.model_dump_json()),
            }
        )
        if self.min_count is not None:
            props["minCount"] = self.min_count
        if self.max_count is not None:
            props["maxCount"] = self.max_count
        return props


class ManagedCluster(BaseModel):
    """A managed cluster as local Azure keeps it."""

    subscription: str
    resource_group: str
    name: str
    region: str
    kubernetes_version: str
    dns_prefix: str
    power_state: str = "Running"
    provisioning_state: str = "Succeeded"
    pools: dict[str, AgentPool] = Field(default_factory=dict)
    nodes_since: float | None = Field(
        None, description="monotonic time since which the cluster has had running nodes"
    )

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
            f"{CLUSTER_TYPE}/{self.name}"
        )

    @property
    def fqdn(self) -> str:
        return f"{self.dns_prefix}.hcp.{self.region}.azmk8s.io"

    def running_nodes(self) -> int:
        if self.power_state != "Running":
            return 0
        return sum(p.nodes for p in self.pools.values() if p.power_state == "Running")

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": CLUSTER_TYPE,
            "eTag": _etag(self.model_dump_json()),
            "location": self.region,
            "tags": {},
            "sku": {"name": "Base", "tier": "Standard"},
            "properties": {
                "provisioningState": self.provisioning_state,
                "powerState": {"code": self.power_state},
                "kubernetesVersion": self.kubernetes_version,
                "currentKubernetesVersion": self.kubernetes_version,
                "dnsPrefix": self.dns_prefix,
                "fqdn": self.fqdn,
                "azurePortalFQDN": f"{self.dns_prefix}.portal.hcp.{self.region}.azmk8s.io",
                "agentPoolProfiles": [
                    {"name": p.name, **p.properties()} for p in self.pools.values()
                ],
                "nodeResourceGroup": f"MC_{self.resource_group}_{self.name}_{self.region}",
                "enableRBAC": True,
                "maxAgentPools": 100,
                "networkProfile": {"networkPlugin": "azure", "loadBalancerSku": "standard"},
            },
        }

    def pool_body(self, pool: AgentPool) -> dict[str, Any]:
        return {
            "id": f"{self.id}/agentPools/{pool.name}",
            "name": pool.name,
            "type": POOL_TYPE,
            "properties": pool.properties(),
        }


def _etag(text: str) -> str:
    """An entity tag that changes whenever the resource does."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ClusterCapacity(BaseModel):
    """What the Kubernetes API needs to know about its cluster right now."""

    serving: bool
    nodes: int
    nodes_since: float | None
    reason: str


def _clusters(state: Any) -> dict[str, ManagedCluster]:
    return state.provider_state(NAME).setdefault("clusters", {})


def _from_topology(spec: ManagedClusterTopology, subscription: str) -> ManagedCluster:
    pools = {
        p.name: AgentPool(
            name=p.name,
            count=p.count,
            nodes=p.count if p.power_state == "Running" else 0,
            mode=p.mode,
            vm_size=p.vm_size,
            enable_auto_scaling=p.enable_auto_scaling,
            min_count=p.min_count,
            max_count=p.max_count,
            power_state=p.power_state if spec.power_state == "Running" else "Stopped",
            orchestrator_version=spec.kubernetes_version,
        )
        for p in spec.agent_pools
    }
    cluster = ManagedCluster(
        subscription=subscription,
        resource_group=spec.resource_group or "",
        name=spec.name,
        region=spec.region,
        kubernetes_version=spec.kubernetes_version,
        dns_prefix=spec.dns_prefix or spec.name,
        power_state=spec.power_state,
        pools=pools,
    )
    if cluster.running_nodes() > 0:
        # The nodes of the topology were there before local Azure started.
        cluster.nodes_since = time.monotonic() - 3600
    return cluster


def _restored(cluster: ManagedCluster) -> ManagedCluster:
    """A cluster saved by an earlier run: operations it had under way are taken as done."""
    if cluster.provisioning_state in ("Starting", "Stopping"):
        target = "Running" if cluster.provisioning_state == "Starting" else "Stopped"
        cluster.power_state = target
        for pool in cluster.pools.values():
            pool.power_state = target
            pool.nodes = pool.count if target == "Running" else 0
    cluster.provisioning_state = "Succeeded"
    for pool in cluster.pools.values():
        if pool.provisioning_state != "Succeeded":
            pool.nodes = pool.count if pool.power_state == "Running" else 0
            pool.provisioning_state = "Succeeded"
    # Monotonic times do not survive a restart; the nodes were there before it.
    cluster.nodes_since = time.monotonic() - 3600 if cluster.running_nodes() else None
    return cluster


def find_cluster(state: Any, name: str) -> ManagedCluster | None:
    """The cluster called ``name`` (names are unique in a topology), case-insensitively."""
    with state.lock:
        for cluster in _clusters(state).values():
            if cluster.name.lower() == name.lower():
                return cluster
    return None


def capacity(state: Any, name: str) -> ClusterCapacity:
    """Whether cluster ``name`` answers its Kubernetes API, and how many nodes it runs."""
    with state.lock:
        cluster = find_cluster(state, name)
        if cluster is None:
            return ClusterCapacity(
                serving=False, nodes=0, nodes_since=None, reason=f"no cluster {name}"
            )
        if state.region_failed(cluster.region):
            return ClusterCapacity(
                serving=False,
                nodes=0,
                nodes_since=None,
                reason=f"region {cluster.region} of cluster {name} is down",
            )
        if cluster.power_state != "Running":
            return ClusterCapacity(
                serving=False, nodes=0, nodes_since=None, reason=f"cluster {name} is stopped"
            )
        nodes = cluster.running_nodes()
        return ClusterCapacity(
            serving=True,
            nodes=nodes,
            nodes_since=cluster.nodes_since if nodes else None,
            reason=f"cluster {name} runs {nodes} nodes",
        )


def cluster_ids(state: Any) -> list[str]:
    with state.lock:
        return [c.id for c in _clusters(state).values()]


def _note_nodes(cluster: ManagedCluster, had_nodes: bool) -> None:
    """Record when nodes appeared: pods scheduled there become ready from that moment on."""
    has_nodes = cluster.running_nodes() > 0
    if has_nodes and not had_nodes:
        cluster.nodes_since = time.monotonic()
    elif not has_nodes:
        cluster.nodes_since = None


class AksProvider:
    """ARM routes of Microsoft.ContainerService/managedClusters and agentPools."""

    name = NAME

    def __init__(self, env: ProviderEnv):
        self.env = env
        state = env.state
        self.state = state
        self.topology = network_topology(state).aks
        subscription = state.topology.subscription
        saved = load_state(env.state_dir, NAME)
        with state.lock:
            clusters = _clusters(state)
            if saved is not None:
                for key, raw in saved.get("clusters", {}).items():
                    clusters[key] = _restored(ManagedCluster.model_validate(raw))
                log.info("aks: %d clusters from the earlier run", len(clusters))
            else:
                for spec in self.topology.clusters:
                    cluster = _from_topology(spec, subscription)
                    clusters[cluster.id.lower()] = cluster
        state.register_dump(NAME, self.dump)
        state.on_region_failed(self._region_failed)

    def dump(self) -> dict[str, Any]:
        with self.state.lock:
            return {"clusters": [c.body() for c in _clusters(self.state).values()]}

    def save(self) -> None:
        with self.state.lock:
            data = {k: c.model_dump(mode="json") for k, c in _clusters(self.state).items()}
            save_state(self.env.state_dir, NAME, {"clusters": data})

    def _region_failed(self, region: str) -> None:
        for cluster_id in cluster_ids(self.state):
            cluster = _clusters(self.state)[cluster_id.lower()]
            if cluster.region == region.replace(" ", "").lower():
                log.warning("cluster %s is unreachable: its region %s failed", cluster.name, region)

    def routes(self) -> list[Route]:
        op = "Microsoft.ContainerService/managedClusters"
        pools = CLUSTER_PATH + "/agentPools"
        rg_list = (
            "/subscriptions/{subscription}/resourceGroups/{rg}/providers/"
            "Microsoft.ContainerService/managedClusters"
        )
        return [
            Route("GET", rg_list, self.list_clusters, f"{op}/read"),
            Route("GET", CLUSTER_PATH, self.get_cluster, f"{op}/read"),
            Route("POST", CLUSTER_PATH + "/start", self.start_cluster, f"{op}/start/action"),
            Route("POST", CLUSTER_PATH + "/stop", self.stop_cluster, f"{op}/stop/action"),
            Route(
                "POST",
                CLUSTER_PATH + "/listClusterUserCredential",
                self.user_credential,
                f"{op}/listClusterUserCredential/action",
            ),
            Route("GET", CLUSTER_PATH + "/operations/{operationId}", self.operation, f"{op}/read"),
            Route("GET", pools, self.list_pools, f"{op}/agentPools/read"),
            Route("GET", pools + "/{pool}", self.get_pool, f"{op}/agentPools/read"),
            Route("PUT", pools + "/{pool}", self.put_pool, f"{op}/agentPools/write"),
        ]

    def _cluster(self, req: ArmRequest) -> ManagedCluster:
        key = (
            f"/subscriptions/{req.params['subscription']}/resourceGroups/{req.params['rg']}"
            f"/providers/{CLUSTER_TYPE}/{req.params['cluster']}"
        ).lower()
        cluster = _clusters(self.state).get(key)
        if cluster is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"managed cluster {req.params['cluster']} was not found in resource group "
                f"{req.params['rg']}",
            )
        return cluster

    def list_clusters(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rg = req.params["rg"].lower()
        with self.state.lock:
            found = [
                c.body() for c in _clusters(self.state).values() if c.resource_group.lower() == rg
            ]
        return ArmResponse(200, {"value": found})

    def get_cluster(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        with self.state.lock:
            return ArmResponse(200, self._cluster(req).body())

    def user_credential(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        """A kubeconfig whose server is the cluster's local Kubernetes API."""
        from devhost.localazure import kubernetes

        with self.state.lock:
            cluster = self._cluster(req)
        server = kubernetes.cluster_url(self.state, cluster.name)
        kubeconfig = (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: {cluster.name}\n  cluster:\n    server: {server}\n"
            f"contexts:\n- name: {cluster.name}\n  context:\n    cluster: {cluster.name}\n"
            f"    user: local\ncurrent-context: {cluster.name}\n"
            f"users:\n- name: local\n  user:\n    token: {self.env.static_token}\n"
        )
        value = base64.b64encode(kubeconfig.encode()).decode()
        return ArmResponse(200, {"kubeconfigs": [{"name": "clusterUser", "value": value}]})

    def start_cluster(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return self._power(req, ctx, "Running")

    def stop_cluster(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return self._power(req, ctx, "Stopped")

    def _power(self, req: ArmRequest, ctx: ArmContext, target: str) -> ArmResponse:
        """Start or stop a cluster: 204 when it is already so, else a 202 with ``location``."""
        _enforce_locks(self.state, req)
        with self.state.lock:
            cluster = self._cluster(req)
            if cluster.power_state == target and cluster.provisioning_state == "Succeeded":
                log.info("cluster %s is already %s: nothing to do", cluster.name, target)
                return ArmResponse(204)
            if cluster.provisioning_state != "Succeeded":
                raise ArmError(
                    409,
                    "OperationNotAllowed",
                    f"cluster {cluster.name} is {cluster.provisioning_state}: wait for the "
                    "running operation to end",
                )
            cluster.provisioning_state = "Starting" if target == "Running" else "Stopping"
            self.save()
        log.info("cluster %s: %s requested", cluster.name, cluster.provisioning_state.lower())

        def work() -> None:
            time.sleep(self.topology.operation_seconds)
            with self.state.lock:
                if self.state.region_failed(cluster.region):
                    cluster.provisioning_state = "Succeeded"
                    raise ArmError(
                        409, "RegionUnavailable", f"region {cluster.region} is unavailable"
                    )
                had_nodes = cluster.running_nodes() > 0
                cluster.power_state = target
                for pool in cluster.pools.values():
                    pool.power_state = target
                    pool.nodes = pool.count if target == "Running" else 0
                cluster.provisioning_state = "Succeeded"
                _note_nodes(cluster, had_nodes)
                self.save()
            log.info("cluster %s is now %s", cluster.name, target)
            return None

        response = ctx.begin_operation(region=cluster.region, work=work, status_style="location")
        return _lowercase_location(response)

    def operation(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        """The per-cluster operation status (published for 2025-10-02-preview)."""
        with self.state.lock:
            cluster = self._cluster(req)
        op = self.state.operation(req.params["operationId"])
        if op is None or not op.operation.startswith("Microsoft.ContainerService/"):
            raise ArmError(
                404,
                "NotFound",
                f"operation {req.params['operationId']} of {cluster.name} is unknown",
            )
        body = op.status_body()
        body["id"] = f"{cluster.id}/operations/{op.id}"
        body.setdefault("percentComplete", 100 if op.status in ("Succeeded", "Failed") else 40)
        return ArmResponse(200, body)

    def list_pools(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        with self.state.lock:
            cluster = self._cluster(req)
            return ArmResponse(
                200, {"value": [cluster.pool_body(p) for p in cluster.pools.values()]}
            )

    def get_pool(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        with self.state.lock:
            cluster = self._cluster(req)
            pool = cluster.pools.get(req.params["pool"])
            if pool is None:
                raise ArmError(
                    404,
                    "NotFound",
                    f"agent pool {req.params['pool']} was not found in cluster {cluster.name}",
                )
            return ArmResponse(200, cluster.pool_body(pool))

    def put_pool(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        """Create or update a pool (scale by ``count``, start by ``powerState``): an LRO."""
        name = req.params["pool"]
        if not AGENT_POOL_NAME.match(name):
            raise ArmError(
                400,
                "InvalidParameter",
                f"agent pool name {name!r} must match ^[a-z][a-z0-9]{{0,11}}$",
            )
        props = _pool_properties(req.body)
        _enforce_locks(self.state, req)
        with self.state.lock:
            cluster = self._cluster(req)
            if cluster.power_state != "Running":
                raise ArmError(
                    409,
                    "OperationNotAllowedOnStoppedCluster",
                    f"cluster {cluster.name} is stopped: start it before changing agent pools",
                )
            existing = cluster.pools.get(name)
            if existing is not None and existing.provisioning_state not in ("Succeeded", "Failed"):
                raise ArmError(
                    409,
                    "OperationNotAllowed",
                    f"agent pool {name} is {existing.provisioning_state}: wait for it to end",
                )
            pool, target_nodes, state_word = _apply_pool_request(existing, name, props, cluster)
            cluster.pools[name] = pool
            pool.provisioning_state = state_word
            body = cluster.pool_body(pool)
            self.save()
        log.info(
            "agent pool %s/%s: %s to %s nodes (%s)",
            cluster.name,
            name,
            state_word.lower(),
            target_nodes,
            pool.power_state,
        )

        def work() -> dict[str, Any]:
            time.sleep(self.topology.operation_seconds)
            with self.state.lock:
                if self.state.region_failed(cluster.region):
                    pool.provisioning_state = "Failed"
                    raise ArmError(
                        409, "RegionUnavailable", f"region {cluster.region} is unavailable"
                    )
                had_nodes = cluster.running_nodes() > 0
                pool.count = target_nodes
                pool.nodes = target_nodes if pool.power_state == "Running" else 0
                pool.provisioning_state = "Succeeded"
                _note_nodes(cluster, had_nodes)
                self.save()
                return cluster.pool_body(pool)

        status = 200 if existing is not None else 201
        return ctx.begin_operation(
            region=cluster.region,
            work=work,
            status_style="azure-async",
            initial=ArmResponse(status, body),
        )


def _pool_properties(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("properties", {}), dict):
        raise ArmError(
            400, "InvalidParameter", "the agent pool body must be an object with properties"
        )
    return body.get("properties") or {}


def _apply_pool_request(
    existing: AgentPool | None, name: str, props: dict[str, Any], cluster: ManagedCluster
) -> tuple[AgentPool, int, str]:
    """The pool after a PUT, the node count it has when the operation ends, and its state."""
    count = props.get("count", existing.count if existing else 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1000:
        raise ArmError(400, "InvalidParameter", f"agent pool count {count!r} must be 0..1000")
    autoscale = bool(
        props.get("enableAutoScaling", existing.enable_auto_scaling if existing else False)
    )
    min_count = props.get("minCount", existing.min_count if existing else None)
    max_count = props.get("maxCount", existing.max_count if existing else None)
    if autoscale:
        if min_count is None or max_count is None or min_count > max_count:
            raise ArmError(
                400,
                "InvalidParameter",
                "enableAutoScaling needs minCount and maxCount with minCount <= maxCount",
            )
        # The answer echoes the count asked for; once the operation ends the autoscaler has
        # brought it between minCount and maxCount, as on Azure.
        nodes = max(min_count, min(max_count, count))
    else:
        nodes = count
    power = (props.get("powerState") or {}).get("code") or (
        existing.power_state if existing else "Running"
    )
    if power not in ("Running", "Stopped"):
        raise ArmError(
            400, "InvalidParameter", f"powerState.code {power!r} is not Running or Stopped"
        )

    known = {
        "count",
        "enableAutoScaling",
        "minCount",
        "maxCount",
        "powerState",
        "mode",
        "vmSize",
        "osType",
        "provisioningState",
        "orchestratorVersion",
        "currentOrchestratorVersion",
        "nodeImageVersion",
        "maxPods",
        "type",
        "eTag",
    }
    extra = {k: v for k, v in props.items() if k not in known}
    pool = AgentPool(
        name=name,
        count=count,
        nodes=existing.nodes if existing else 0,
        mode=props.get("mode", existing.mode if existing else "User"),
        vm_size=props.get("vmSize", existing.vm_size if existing else "Standard_D4s_v5"),
        os_type=props.get("osType", existing.os_type if existing else "Linux"),
        enable_auto_scaling=autoscale,
        min_count=min_count,
        max_count=max_count,
        power_state=power,
        orchestrator_version=cluster.kubernetes_version,
        extra={**(existing.extra if existing else {}), **extra},
    )
    if existing is None:
        word = "Creating"
    elif existing.power_state == "Stopped" and power == "Running":
        word = "Starting"
    elif existing.power_state == "Running" and power == "Stopped":
        word = "Stopping"
    else:
        word = "Updating"
    return pool, nodes, word


def _enforce_locks(state: Any, req: ArmRequest) -> None:
    from devhost.localazure import locks

    locks.enforce(state, req.method, req.path)


def _lowercase_location(response: ArmResponse) -> ArmResponse:
    """AKS answers start and stop with a lowercase ``location`` header, as published."""
    headers = {("location" if k == "Location" else k): v for k, v in response.headers.items()}
    return ArmResponse(response.status, response.body, headers)


def create_provider(env: ProviderEnv) -> AksProvider:
    return AksProvider(env)
