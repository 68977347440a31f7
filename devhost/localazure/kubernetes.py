"""A minimal Kubernetes API for each local AKS cluster: deployments, scale, release history.

One HTTPS listener (local Azure's CA) serves every cluster under ``/clusters/{cluster}``; the
paths below that are Kubernetes' own, so a client takes ``{base}/clusters/{cluster}`` as its
server URL. It needs ``Authorization: Bearer <DR_ARM_STATIC_TOKEN>``. A cluster that is stopped
or whose region is down answers 503. Pods become ready ``kubernetes.readyDelaySeconds`` after a
rollout, or after nodes appear, and never while the cluster has no running nodes. Every change
of a deployment's pod template is a release (image and config hash), kept for rollbacks.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from typing import Any

from pydantic import BaseModel, Field

from devhost.localazure import aks
from devhost.localazure.arm import ArmResponse, ProviderEnv, RawRequest, Route, utc_now_iso
from devhost.localazure.topology_f import (
    DeploymentTopology,
    load_state,
    network_topology,
    save_state,
)

log = logging.getLogger(__name__)

NAME = "kubernetes"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CONFIG_HASH_ANNOTATION = "localazure.dr/config-hash"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
TEMPLATE_HASH_LABEL = "pod-template-hash"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
# Lists that a strategic merge patch merges item by item, keyed by the item's "name".
MERGE_BY_NAME = {"containers", "initContainers", "env", "ports", "volumes", "volumeMounts"}

_PREFIX = r"^/clusters/(?P<cluster>[^/]+)"
_DEPLOYMENTS = _PREFIX + r"/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments"
PATHS = [
    ("version", re.compile(_PREFIX + r"/version/?$")),
    ("list_all", re.compile(_PREFIX + r"/apis/apps/v1/deployments/?$")),
    ("list", re.compile(_DEPLOYMENTS + r"/?$")),
    ("scale", re.compile(_DEPLOYMENTS + r"/(?P<name>[^/]+)/scale/?$")),
    ("deployment", re.compile(_DEPLOYMENTS + r"/(?P<name>[^/]+)/?$")),
    (
        "replicasets",
        re.compile(_PREFIX + r"/apis/apps/v1/namespaces/(?P<ns>[^/]+)/replicasets/?$"),
    ),
    (
        "releases",
        re.compile(
            _PREFIX + r"/_local/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/]+)"
            r"/releases/?$"
        ),
    ),
]


class KubeError(Exception):
    """An answer in Kubernetes' ``Status`` shape."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def response(self) -> ArmResponse:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        return ArmResponse(self.code, body)


class Release(BaseModel):
    """One rollout of a pod template: what ran, with which configuration, and how it went."""

    revision: int
    image: str
    images: dict[str, str]
    template: dict[str, Any] = Field(description="the whole pod template of the release")
    config_hash: str = Field(alias="configHash")
    created_at: str = Field(alias="createdAt")
    change_cause: str | None = Field(None, alias="changeCause")
    rolled_out_at: str | None = Field(
        None, alias="rolledOutAt", description="when every replica of it was first ready"
    )
    model_config = {"populate_by_name": True}


class Deployment(BaseModel):
    """An apps/v1 deployment and what its status is computed from."""

    cluster: str
    namespace: str
    name: str
    uid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = Field(default_factory=utc_now_iso)
    generation: int = 1
    replicas: int
    template: dict[str, Any]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resource_version: int = 1
    changed_at: float = Field(default_factory=time.monotonic)
    ready_before: int = 0
    template_changed: bool = True
    releases: list[Release] = Field(default_factory=list)

    @property
    def current(self) -> Release:
        return self.releases[-1]


class RolloutStatus(BaseModel):
    """The computed status of a deployment at one moment."""

    replicas: int
    ready: int
    updated: int
    observed_generation: int

    @property
    def complete(self) -> bool:
        return self.ready == self.replicas and self.updated == self.replicas


def _template_for(spec: DeploymentTopology) -> dict[str, Any]:
    container: dict[str, Any] = {"name": spec.name, "image": spec.image}
    if spec.env:
        container["env"] = [{"name": k, "value": v} for k, v in spec.env.items()]
    return {
        "metadata": {"labels": {"app": spec.name, **spec.labels}},
        "spec": {"containers": [container]},
    }


def images_of(template: dict[str, Any]) -> dict[str, str]:
    containers = (template.get("spec") or {}).get("containers") or []
    return {c.get("name", ""): c.get("image", "") for c in containers}


def config_hash(template: dict[str, Any]) -> str:
    """A hash of the pod template without its images: equal hashes, equal configuration."""
    stripped = copy.deepcopy(template)
    for container in (stripped.get("spec") or {}).get("containers") or []:
        container.pop("image", None)
    canonical = json.dumps(stripped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _new_release(dep: Deployment, change_cause: str | None) -> Release:
    images = images_of(dep.template)
    return Release(
        revision=(dep.releases[-1].revision + 1) if dep.releases else 1,
        image=next(iter(images.values()), ""),
        images=images,
        template=copy.deepcopy(dep.template),
        configHash=config_hash(dep.template),
        createdAt=utc_now_iso(),
        changeCause=change_cause,
    )


def rollout_status(dep: Deployment, cap: aks.ClusterCapacity, delay: float) -> RolloutStatus:
    """Status now: pods are ready ``delay`` seconds after the later of the change and the nodes.

    While a rollout is under way the pods of the previous template stay ready (a rolling
    update); pods whose nodes appeared after the change start from nothing.
    """
    # Limitation: pods are counted, not scheduled; any number of replicas fits on one node.
    if cap.nodes_since is None:
        return RolloutStatus(
            replicas=dep.replicas,
            ready=0,
            updated=dep.replicas,
            observed_generation=dep.generation,
        )
    ready_at = max(dep.changed_at, cap.nodes_since) + delay
    if time.monotonic() >= ready_at:
        return RolloutStatus(
            replicas=dep.replicas,
            ready=dep.replicas,
            updated=dep.replicas,
            observed_generation=dep.generation,
        )
    carried = 0 if cap.nodes_since > dep.changed_at else min(dep.ready_before, dep.replicas)
    updated = 0 if dep.template_changed else dep.replicas
    return RolloutStatus(
        replicas=dep.replicas,
        ready=carried,
        updated=updated,
        observed_generation=dep.generation,
    )


def _status_body(dep: Deployment, status: RolloutStatus) -> dict[str, Any]:
    # Kubernetes leaves out counts that are zero; so do we, so clients are written for that.
    body: dict[str, Any] = {"observedGeneration": status.observed_generation}
    for key, value in (
        ("replicas", status.replicas),
        ("updatedReplicas", status.updated),
        ("readyReplicas", status.ready),
        ("availableReplicas", status.ready),
        ("unavailableReplicas", status.replicas - status.ready),
    ):
        if value:
            body[key] = value
    now = utc_now_iso()
    available = status.ready >= status.replicas
    body["conditions"] = [
        {
            "type": "Available",
            "status": "True" if available else "False",
            "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            "lastUpdateTime": now,
        },
        {
            "type": "Progressing",
            "status": "True",
            "reason": "NewReplicaSetAvailable" if status.complete else "ReplicaSetUpdated",
            "lastUpdateTime": now,
        },
    ]
    return body


def deployment_body(dep: Deployment, status: RolloutStatus) -> dict[str, Any]:
    annotations = {
        **dep.annotations,
        REVISION_ANNOTATION: str(dep.current.revision),
        CONFIG_HASH_ANNOTATION: dep.current.config_hash,
    }
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": dep.name,
            "namespace": dep.namespace,
            "uid": dep.uid,
            "resourceVersion": str(dep.resource_version),
            "generation": dep.generation,
            "creationTimestamp": dep.created_at,
            "labels": {"app": dep.name, **dep.labels},
            "annotations": annotations,
        },
        "spec": {
            "replicas": dep.replicas,
            "selector": {"matchLabels": {"app": dep.name}},
            "template": copy.deepcopy(dep.template),
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": _status_body(dep, status),
    }


def scale_body(dep: Deployment, status: RolloutStatus) -> dict[str, Any]:
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": dep.name,
            "namespace": dep.namespace,
            "uid": dep.uid,
            "resourceVersion": str(dep.resource_version),
            "creationTimestamp": dep.created_at,
        },
        "spec": {"replicas": dep.replicas},
        "status": {"replicas": status.replicas, "selector": f"app={dep.name}"},
    }


def merge_patch(target: Any, patch: Any, strategic: bool = False, key: str = "") -> Any:
    """RFC 7386 merge patch; ``strategic`` merges named lists item by item, as kubectl does."""
    if isinstance(patch, list) and strategic and key in MERGE_BY_NAME and isinstance(target, list):
        merged = [copy.deepcopy(item) for item in target]
        for item in patch:
            name = item.get("name") if isinstance(item, dict) else None
            index = next(
                (
                    i
                    for i, old in enumerate(merged)
                    if isinstance(old, dict) and old.get("name") == name
                ),
                None,
            )
            if isinstance(item, dict) and item.get("$patch") == "delete":
                if index is not None:
                    merged.pop(index)
            elif index is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[index] = merge_patch(merged[index], item, strategic)
        return merged
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value, strategic, name)
    return result


class KubernetesProvider:
    """Deployments of every cluster, and the HTTPS listener that serves them."""

    name = NAME

    def __init__(self, env: ProviderEnv):
        self.env = env
        self.state = env.state
        network = network_topology(self.state)
        self.section = network.kubernetes
        self.base_url = ""
        known = {c.name.lower() for c in network.aks.clusters}
        saved = load_state(env.state_dir, NAME)
        with self.state.lock:
            deployments = self._deployments()
            if saved is not None:
                for key, raw in saved.get("deployments", {}).items():
                    deployments[key] = _restored(Deployment.model_validate(raw))
                log.info("kubernetes: %d deployments from the earlier run", len(deployments))
                self.state.register_dump(NAME, self.dump)
                return
            for cluster, workload in self.section.clusters.items():
                if cluster.lower() not in known:
                    raise ValueError(
                        f"topology kubernetes.clusters.{cluster} names no cluster of aks.clusters"
                    )
                for spec in workload.deployments:
                    dep = Deployment(
                        cluster=cluster,
                        namespace=workload.namespace,
                        name=spec.name,
                        replicas=spec.replicas,
                        template=_template_for(spec),
                        labels=dict(spec.labels),
                        ready_before=spec.replicas,
                        template_changed=False,
                    )
                    # Deployments of the topology were rolled out before local Azure started.
                    dep.changed_at -= self.section.ready_delay_seconds
                    dep.releases.append(_new_release(dep, "initial release"))
                    deployments[_key(cluster, workload.namespace, spec.name)] = dep
        self.state.register_dump(NAME, self.dump)

    def _deployments(self) -> dict[str, Deployment]:
        return self.state.provider_state(NAME).setdefault("deployments", {})

    def save(self) -> None:
        with self.state.lock:
            data = {k: d.model_dump(mode="json") for k, d in self._deployments().items()}
            save_state(self.env.state_dir, NAME, {"deployments": data})

    def routes(self) -> list[Route]:
        return []

    def start(self) -> None:
        self.base_url = self.env.listen(self.handle, tls=True)
        self.state.provider_state(NAME)["baseUrl"] = self.base_url
        log.info("Kubernetes API of %d clusters on %s", len(self.section.clusters), self.base_url)

    def settings(self) -> dict[str, str]:
        endpoints = {
            cluster_id: f"{self.base_url}/clusters/{cluster_id.rsplit('/', 1)[-1]}"
            for cluster_id in aks.cluster_ids(self.state)
        }
        return {"DR_K8S_ENDPOINTS": json.dumps(endpoints, sort_keys=True)}

    def dump(self) -> dict[str, Any]:
        with self.state.lock:
            items = list(self._deployments().values())
        return {
            "baseUrl": self.base_url,
            "deployments": [
                {
                    "cluster": d.cluster,
                    "namespace": d.namespace,
                    "name": d.name,
                    "replicas": d.replicas,
                    "status": self._status(d).model_dump(),
                    "releases": [r.model_dump(by_alias=True) for r in d.releases],
                }
                for d in items
            ],
        }

    # -- reading, for the stand-in Odoo and for tests -----------------------------------------

    def find(self, cluster: str, name: str, namespace: str | None = None) -> Deployment | None:
        with self.state.lock:
            for dep in self._deployments().values():
                if (
                    dep.cluster.lower() == cluster.lower()
                    and dep.name == name
                    and (namespace is None or dep.namespace == namespace)
                ):
                    return dep
        return None

    def _status(self, dep: Deployment) -> RolloutStatus:
        cap = aks.capacity(self.state, dep.cluster)
        status = rollout_status(dep, cap, self.section.ready_delay_seconds)
        if status.complete and cap.nodes and dep.current.rolled_out_at is None:
            dep.current.rolled_out_at = utc_now_iso()
            log.info(
                "deployment %s/%s: release %s is rolled out",
                dep.cluster,
                dep.name,
                dep.current.revision,
            )
        return status

    def status_of(self, dep: Deployment) -> RolloutStatus:
        with self.state.lock:
            return self._status(dep)

    # -- HTTP --------------------------------------------------------------------------------

    def handle(self, req: RawRequest) -> ArmResponse:
        try:
            return self._handle(req)
        except KubeError as exc:
            return exc.response()

    def _handle(self, req: RawRequest) -> ArmResponse:
        if not _bearer_ok(req.headers, self.env.static_token):
            raise KubeError(401, "Unauthorized", "send Authorization: Bearer <DR_ARM_STATIC_TOKEN>")
        kind, params = _match_path(req.path)
        cap = aks.capacity(self.state, params["cluster"])
        if not cap.serving:
            raise KubeError(
                503, "ServiceUnavailable", f"the API server is unavailable: {cap.reason}"
            )
        handler = getattr(self, f"_{kind}_{req.method.lower()}", None)
        if handler is None:
            raise KubeError(405, "MethodNotAllowed", f"{req.method} is not supported on {req.path}")
        return handler(req, params)

    def _version_get(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        cluster = aks.find_cluster(self.state, params["cluster"])
        version = cluster.kubernetes_version if cluster else "1.33.2"
        major, minor = version.split(".")[:2]
        return ArmResponse(200, {"major": major, "minor": minor, "gitVersion": f"v{version}"})

    def _list(self, cluster: str, namespace: str | None) -> list[Deployment]:
        with self.state.lock:
            return [
                d
                for d in self._deployments().values()
                if d.cluster.lower() == cluster.lower()
                and (namespace is None or d.namespace == namespace)
            ]

    def _list_body(self, items: list[Deployment]) -> dict[str, Any]:
        with self.state.lock:
            bodies = [deployment_body(d, self._status(d)) for d in items]
        return {
            "kind": "DeploymentList",
            "apiVersion": "apps/v1",
            "metadata": {
                "resourceVersion": str(max((d.resource_version for d in items), default=0))
            },
            "items": bodies,
        }

    def _list_all_get(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        return ArmResponse(200, self._list_body(self._list(params["cluster"], None)))

    def _list_get(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        return ArmResponse(200, self._list_body(self._list(params["cluster"], params["ns"])))

    def _get(self, params: dict[str, str]) -> Deployment:
        dep = self.find(params["cluster"], params["name"], params["ns"])
        if dep is None:
            raise KubeError(
                404,
                "NotFound",
                f'deployments.apps "{params["name"]}" not found in namespace {params["ns"]}',
            )
        return dep

    def _deployment_get(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        dep = self._get(params)
        with self.state.lock:
            return ArmResponse(200, deployment_body(dep, self._status(dep)))

    def _deployment_patch(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        patch, strategic = _read_patch(req)
        dep = self._get(params)
        with self.state.lock:
            current = deployment_body(dep, self._status(dep))
            patched = merge_patch(current, patch, strategic)
            self._apply(dep, patched)
            self.save()
            return ArmResponse(200, deployment_body(dep, self._status(dep)))

    def _scale_get(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        dep = self._get(params)
        with self.state.lock:
            return ArmResponse(200, scale_body(dep, self._status(dep)))

    def _scale_put(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        body = _json_body(req)
        dep = self._get(params)
        version = (
            ((body.get("metadata") or {}).get("resourceVersion"))
            if isinstance(body, dict)
            else None
        )
        with self.state.lock:
            if version and version != str(dep.resource_version):
                raise KubeError(
                    409,
                    "Conflict",
                    f"the object has been modified (resourceVersion "
                    f"{dep.resource_version}, not {version}); read it again and retry",
                )
            replicas = (
                ((body.get("spec") or {}).get("replicas")) if isinstance(body, dict) else None
            )
            self._set_replicas(dep, replicas)
            self.save()
            return ArmResponse(200, scale_body(dep, self._status(dep)))

    def _scale_patch(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        patch, strategic = _read_patch(req)
        dep = self._get(params)
        with self.state.lock:
            patched = merge_patch(scale_body(dep, self._status(dep)), patch, strategic)
            self._set_replicas(dep, (patched.get("spec") or {}).get("replicas"))
            self.save()
            return ArmResponse(200, scale_body(dep, self._status(dep)))

    def _replicasets_get(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        """One ReplicaSet per release, as Kubernetes keeps them for ``rollout undo``."""
        selector = _label_selector(req.query.get("labelSelector", ""))
        items = []
        with self.state.lock:
            for dep in self._list(params["cluster"], params["ns"]):
                if selector and any(
                    {"app": dep.name, **dep.labels}.get(k) != v for k, v in selector.items()
                ):
                    continue
                for release in dep.releases:
                    current = release is dep.current
                    items.append(_replicaset_body(dep, release, current, self._status(dep)))
        return ArmResponse(
            200, {"kind": "ReplicaSetList", "apiVersion": "apps/v1", "metadata": {}, "items": items}
        )

    def _releases_get(self, req: RawRequest, params: dict[str, str]) -> ArmResponse:
        dep = self._get(params)
        with self.state.lock:
            self._status(dep)
            releases = [
                {**r.model_dump(by_alias=True), "current": r is dep.current} for r in dep.releases
            ]
        return ArmResponse(
            200,
            {
                "deployment": dep.name,
                "namespace": dep.namespace,
                "cluster": dep.cluster,
                "releases": releases,
            },
        )

    # -- changes -----------------------------------------------------------------------------

    def _mark_change(self, dep: Deployment, template_changed: bool) -> None:
        """Remember what was ready before a change, so the rollout starts from there.

        A scale during an unfinished rollout keeps it a rollout of the new template.
        """
        status = self._status(dep)
        dep.ready_before = status.ready
        dep.template_changed = template_changed or (dep.template_changed and not status.complete)
        dep.changed_at = time.monotonic()
        dep.generation += 1

    def _set_replicas(self, dep: Deployment, replicas: Any) -> None:
        _check_replicas(replicas)
        if replicas != dep.replicas:
            self._mark_change(dep, template_changed=False)
            log.info(
                "deployment %s/%s scaled %s -> %s", dep.cluster, dep.name, dep.replicas, replicas
            )
            dep.replicas = replicas
        dep.resource_version += 1

    def _apply(self, dep: Deployment, patched: dict[str, Any]) -> None:
        """Take the new replicas, template, labels and annotations from a patched body."""
        metadata = patched.get("metadata") or {}
        spec = patched.get("spec") or {}
        template = spec.get("template")
        containers = ((template or {}).get("spec") or {}).get("containers")
        if (
            not isinstance(containers, list)
            or not containers
            or not all(isinstance(c, dict) and c.get("name") and c.get("image") for c in containers)
        ):
            raise KubeError(
                422,
                "Invalid",
                "spec.template.spec.containers must list containers with a name and an image",
            )
        replicas = spec.get("replicas", dep.replicas)
        _check_replicas(replicas)
        annotations = {
            k: str(v)
            for k, v in (metadata.get("annotations") or {}).items()
            if k not in (REVISION_ANNOTATION, CONFIG_HASH_ANNOTATION)
        }

        template_changed = template != dep.template
        if template_changed or replicas != dep.replicas:
            self._mark_change(dep, template_changed)
            if replicas != dep.replicas:
                log.info(
                    "deployment %s/%s scaled %s -> %s",
                    dep.cluster,
                    dep.name,
                    dep.replicas,
                    replicas,
                )
            dep.replicas = replicas
        if template_changed:
            dep.template = copy.deepcopy(template)
            release = _new_release(dep, annotations.get(CHANGE_CAUSE_ANNOTATION))
            # As Kubernetes does, going back to an earlier template reuses its ReplicaSet,
            # which takes the new revision number.
            dep.releases = [r for r in dep.releases if r.template != dep.template]
            dep.releases.append(release)
            log.info(
                "deployment %s/%s: release %s (image %s, config %s)",
                dep.cluster,
                dep.name,
                dep.current.revision,
                dep.current.image,
                dep.current.config_hash,
            )
        dep.annotations = annotations
        dep.labels = {k: str(v) for k, v in (metadata.get("labels") or {}).items() if k != "app"}
        dep.resource_version += 1


def _restored(dep: Deployment) -> Deployment:
    """A deployment saved by an earlier run: its rollout is taken as finished."""
    # Monotonic times do not survive a restart.
    dep.changed_at = time.monotonic() - 3600
    dep.template_changed = False
    dep.ready_before = dep.replicas
    return dep


def _check_replicas(replicas: Any) -> None:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise KubeError(
            422, "Invalid", f"spec.replicas must be a whole number >= 0, not {replicas!r}"
        )


def _replicaset_body(
    dep: Deployment, release: Release, current: bool, status: RolloutStatus
) -> dict[str, Any]:
    replicas = dep.replicas if current else 0
    ready = status.ready if current else 0
    template = copy.deepcopy(release.template)
    pod_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels[TEMPLATE_HASH_LABEL] = pod_hash
    return {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": f"{dep.name}-{pod_hash}",
            "namespace": dep.namespace,
            "labels": {"app": dep.name, TEMPLATE_HASH_LABEL: pod_hash},
            "annotations": {
                REVISION_ANNOTATION: str(release.revision),
                CONFIG_HASH_ANNOTATION: release.config_hash,
                **({CHANGE_CAUSE_ANNOTATION: release.change_cause} if release.change_cause else {}),
            },
            "creationTimestamp": release.created_at,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": dep.name,
                    "uid": dep.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": dep.name, TEMPLATE_HASH_LABEL: pod_hash}},
            "template": template,
        },
        "status": {"replicas": replicas, **({"readyReplicas": ready} if ready else {})},
    }


def _match_path(path: str) -> tuple[str, dict[str, str]]:
    for kind, pattern in PATHS:
        found = pattern.match(path)
        if found is not None:
            return kind, found.groupdict()
    raise KubeError(404, "NotFound", f"the server could not find {path}")


def _key(cluster: str, namespace: str, name: str) -> str:
    return f"{cluster.lower()}/{namespace}/{name}"


def _bearer_ok(headers: Any, token: str) -> bool:
    scheme, _, presented = (headers.get("Authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(presented.strip(), token)


def _json_body(req: RawRequest) -> Any:
    try:
        return json.loads(req.body or b"null")
    except ValueError as exc:
        raise KubeError(400, "BadRequest", f"the request body is not JSON: {exc}") from exc


def _read_patch(req: RawRequest) -> tuple[dict[str, Any], bool]:
    content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type not in (MERGE_PATCH, STRATEGIC_PATCH):
        raise KubeError(
            415,
            "UnsupportedMediaType",
            f"PATCH takes {MERGE_PATCH} or {STRATEGIC_PATCH}, not {content_type or 'nothing'}",
        )
    patch = _json_body(req)
    if not isinstance(patch, dict):
        raise KubeError(400, "BadRequest", "a patch is a JSON object")
    return patch, content_type == STRATEGIC_PATCH


def _label_selector(text: str) -> dict[str, str]:
    selector = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise KubeError(
                400, "BadRequest", f"labelSelector {text!r}: only key=value is supported"
            )
        selector[key.strip()] = value.strip().lstrip("=")
    return selector


def provider(state: Any) -> KubernetesProvider | None:
    """The running Kubernetes provider of ``state`` (registered when it starts)."""
    return state.provider_state(NAME).get("provider")


def cluster_url(state: Any, cluster: str) -> str:
    base = state.provider_state(NAME).get("baseUrl", "")
    return f"{base}/clusters/{cluster}"


def create_provider(env: ProviderEnv) -> KubernetesProvider:
    created = KubernetesProvider(env)
    env.state.provider_state(NAME)["provider"] = created
    return created
