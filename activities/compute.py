"""Compute activities: start an AKS cluster, scale a node pool, scale Odoo's deployments, and
hold or release Odoo's scheduled jobs (the cron deployment and the database's ``ir_cron``).

ARM calls go through ``shared.azure_clients``; the Kubernetes API is reached at the cluster's
URL from ``DR_K8S_ENDPOINTS`` (JSON ``{cluster id: url}``) or, failing that, from the cluster's
user kubeconfig in ARM. ``KubeClient`` is also used by the release and dependency activities.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import time
from typing import Any

import azure.durable_functions as df
import psycopg
import requests
import yaml
from azure.core.exceptions import AzureError
from psycopg import sql

from activities.database import (
    ARM_TIMEOUTS,
    ActivityError,
    admin_connection,
    audit,
    azure_error,
    step_log,
    wait_lro,
)
from shared import azure_clients
from shared.recovery import (
    ClusterRequest,
    DeploymentScale,
    JobsRequest,
    JobsResult,
    ScaleDeploymentRequest,
    ScaleDeploymentResult,
    ScalePoolRequest,
    ScalePoolResult,
    StartClusterResult,
    parse_resource_id,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

K8S_TIMEOUT = (5, 30)  # (connect, read) seconds for every Kubernetes API call
POLL_S = 0.5
HELD_CRONS_TABLE = "dr_held_crons"


# --------------------------------------------------------------------------------------------
# Kubernetes API


class KubeClient:
    """The few Kubernetes deployment calls the activities need, over HTTPS with a bearer token."""

    def __init__(self, cluster_id: str):
        self.cluster_id = cluster_id
        self.base_url, self.token, self.verify = _kube_endpoint(cluster_id)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
        url = f"{self.base_url}{path}"
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        try:
            resp = requests.request(
                method,
                url,
                headers=headers,
                data=None if body is None else json.dumps(body),
                timeout=K8S_TIMEOUT,
                verify=self.verify,
            )
        except requests.RequestException as exc:
            raise ActivityError(f"Kubernetes API {method} {path} failed: {exc}") from exc
        if resp.status_code >= 400:
            message = resp.text[:300]
            try:
                message = resp.json().get("message", message)
            except ValueError:
                pass
            raise ActivityError(
                f"Kubernetes API {method} {path} answered {resp.status_code}: {message}"
            )
        return resp.json() if resp.content else None

    @staticmethod
    def deployment_path(namespace: str, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return self.request("GET", self.deployment_path(namespace, name))

    def scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        return self.request(
            "PATCH",
            self.deployment_path(namespace, name) + "/scale",
            {"spec": {"replicas": replicas}},
            "application/merge-patch+json",
        )

    def patch_template(self, namespace: str, name: str, template: dict[str, Any]) -> Any:
        return self.request(
            "PATCH",
            self.deployment_path(namespace, name),
            {"spec": {"template": template}},
            "application/merge-patch+json",
        )

    def replicasets(self, namespace: str, app: str) -> list[dict[str, Any]]:
        body = self.request(
            "GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets?labelSelector=app%3D{app}"
        )
        return list((body or {}).get("items") or [])

    def wait_rollout(self, namespace: str, name: str, timeout_s: float) -> dict[str, Any]:
        """Wait until every replica runs the current template and is ready."""
        deadline = time.monotonic() + timeout_s
        while True:
            dep = self.deployment(namespace, name)
            if rollout_done(dep):
                return dep
            if time.monotonic() > deadline:
                status = dep.get("status") or {}
                raise ActivityError(
                    f"deployment {namespace}/{name} did not finish rolling out within "
                    f"{timeout_s:.0f} s (ready {status.get('readyReplicas', 0)} of "
                    f"{dep.get('spec', {}).get('replicas')})"
                )
            time.sleep(POLL_S)


def rollout_done(dep: dict[str, Any]) -> bool:
    """Kubernetes leaves zero counts out of the status, so a missing count means zero."""
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    generation = int((dep.get("metadata") or {}).get("generation", 0))
    return (
        int(status.get("observedGeneration", 0)) >= generation
        and int(status.get("updatedReplicas", 0)) >= want
        and int(status.get("readyReplicas", 0)) >= want
        and int(status.get("replicas", 0)) <= want
    )


def _kube_endpoint(cluster_id: str) -> tuple[str, str, Any]:
    """(base URL, bearer token, TLS verify) for a cluster's Kubernetes API."""
    configured = os.environ.get("DR_K8S_ENDPOINTS")
    ca_bundle = os.environ.get("DR_CA_BUNDLE") or True
    if configured:
        try:
            endpoints = {k.lower(): v for k, v in json.loads(configured).items()}
        except (ValueError, AttributeError) as exc:
            raise ActivityError(f"DR_K8S_ENDPOINTS is not a JSON object: {exc}") from exc
        url = endpoints.get(cluster_id.lower())
        if url:
            token = os.environ.get("DR_ARM_STATIC_TOKEN")
            if not token:
                raise ActivityError("DR_K8S_ENDPOINTS is set but DR_ARM_STATIC_TOKEN is not")
            return url.rstrip("/"), token, ca_bundle
    return _kubeconfig_endpoint(cluster_id)


def _kubeconfig_endpoint(cluster_id: str) -> tuple[str, str, Any]:
    # Limitation: only kubeconfigs with a static bearer token are understood; an Entra ID
    # cluster whose kubeconfig needs the kubelogin exec plugin is not.
    rid = parse_resource_id(cluster_id)
    client = azure_clients.containerservice_client(rid.subscription)
    try:
        creds = client.managed_clusters.list_cluster_user_credentials(
            rid.resource_group, rid.name, **ARM_TIMEOUTS
        )
    except AzureError as exc:
        raise ActivityError(
            f"kubeconfig of {rid.name} could not be read: {azure_error(exc)}"
        ) from exc
    finally:
        client.close()
    raw = creds.kubeconfigs[0].value
    text = raw.decode() if isinstance(raw, bytes | bytearray) else base64.b64decode(raw).decode()
    config = yaml.safe_load(text)
    cluster = config["clusters"][0]["cluster"]
    token = (config["users"][0].get("user") or {}).get("token")
    if not token:
        raise ActivityError(f"the kubeconfig of {rid.name} carries no bearer token")
    verify: Any = os.environ.get("DR_CA_BUNDLE") or True
    if cluster.get("certificate-authority-data"):
        handle = tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False)
        handle.write(base64.b64decode(cluster["certificate-authority-data"]))
        handle.close()
        verify = handle.name
    return cluster["server"].rstrip("/"), token, verify


# --------------------------------------------------------------------------------------------
# compute_start_cluster, compute_scale_pool


def start_cluster(req: ClusterRequest) -> StartClusterResult:
    """Start a stopped AKS cluster and wait for it; a running cluster is left alone."""
    slog = step_log(log, req)
    rid = parse_resource_id(req.cluster)
    client = azure_clients.containerservice_client(rid.subscription)
    try:
        before = client.managed_clusters.get(rid.resource_group, rid.name, **ARM_TIMEOUTS)
        power_before = _power(before)
        if power_before != "Running":
            slog.info("starting cluster %s (power state %s)", rid.name, power_before)
            poller = client.managed_clusters.begin_start(
                rid.resource_group, rid.name, **ARM_TIMEOUTS
            )
            wait_lro(poller, req.timeout_s, f"starting cluster {rid.name}")
        after = client.managed_clusters.get(rid.resource_group, rid.name, **ARM_TIMEOUTS)
    except AzureError as exc:
        raise ActivityError(f"starting cluster {rid.name} failed: {azure_error(exc)}") from exc
    finally:
        client.close()
    power_after = _power(after)
    if power_after != "Running":
        raise ActivityError(f"cluster {rid.name} is {power_after} after its start finished")
    started = power_before != "Running"
    result = StartClusterResult(
        cluster=req.cluster,
        power_before=power_before,
        power_after=power_after,
        started=started,
        detail=f"started {rid.name}" if started else f"{rid.name} was already running",
    )
    audit(req.incident_id, req.step_id, "compute_start_cluster", result.detail)
    return result


def _power(cluster: Any) -> str | None:
    code = getattr(
        getattr(getattr(cluster, "properties", cluster), "power_state", None), "code", None
    )
    return None if code is None else str(getattr(code, "value", code))


def scale_pool(req: ScalePoolRequest) -> ScalePoolResult:
    """Set a node pool's count (a PUT of the whole pool); the current count is a no-op."""
    slog = step_log(log, req)
    rid = parse_resource_id(req.cluster)
    client = azure_clients.containerservice_client(rid.subscription)
    try:
        pool = client.agent_pools.get(rid.resource_group, rid.name, req.pool, **ARM_TIMEOUTS)
        props = getattr(pool, "properties", pool)
        before = props.count
        if before != req.count:
            if getattr(props, "enable_auto_scaling", False):
                # Limitation: with the autoscaler on, AKS keeps the count between minCount and
                # maxCount; the request's count is sent, and the result reports what AKS kept.
                slog.info(
                    "pool %s autoscales; %s may not stay at %s", req.pool, rid.name, req.count
                )
            props.count = req.count
            poller = client.agent_pools.begin_create_or_update(
                rid.resource_group, rid.name, req.pool, pool, **ARM_TIMEOUTS
            )
            wait_lro(poller, req.timeout_s, f"scaling pool {req.pool} of {rid.name}")
            pool = client.agent_pools.get(rid.resource_group, rid.name, req.pool, **ARM_TIMEOUTS)
    except AzureError as exc:
        raise ActivityError(
            f"scaling pool {req.pool} of {rid.name} failed: {azure_error(exc)}"
        ) from exc
    finally:
        client.close()
    after = getattr(pool, "properties", pool).count
    changed = before != req.count
    result = ScalePoolResult(
        cluster=req.cluster,
        pool=req.pool,
        count_before=before,
        count_after=after,
        changed=changed,
        detail=(
            f"pool {req.pool} scaled from {before} to {after} nodes"
            if changed
            else f"pool {req.pool} already had {before} nodes"
        ),
    )
    audit(req.incident_id, req.step_id, "compute_scale_pool", result.detail)
    return result


# --------------------------------------------------------------------------------------------
# compute_scale_deployment


def scale_deployments(req: ScaleDeploymentRequest) -> ScaleDeploymentResult:
    """Set each deployment's replicas and (by default) wait until they are ready."""
    targets = req.targets()
    kube = KubeClient(req.cluster)
    changes = scale_many(kube, req.namespace, targets, req.wait_ready, req.timeout_s)
    detail = "; ".join(
        f"{c.name} {c.before}->{c.after}" if c.changed else f"{c.name} already {c.after}"
        for c in changes
    )
    audit(req.incident_id, req.step_id, "compute_scale_deployment", detail)
    return ScaleDeploymentResult(
        cluster=req.cluster, namespace=req.namespace, deployments=changes, detail=detail
    )


def scale_many(
    kube: KubeClient, namespace: str, targets: dict[str, int], wait: bool, timeout_s: float
) -> list[DeploymentScale]:
    changes = []
    for name, replicas in targets.items():
        current = kube.deployment(namespace, name)
        before = int((current.get("spec") or {}).get("replicas", 1))
        if before != replicas:
            log.info("scaling %s/%s from %s to %s", namespace, name, before, replicas)
            kube.scale(namespace, name, replicas)
        changes.append(
            DeploymentScale(
                name=name, before=before, after=replicas, ready=0, changed=before != replicas
            )
        )
    deadline = time.monotonic() + timeout_s
    for change in changes:
        if wait:
            left = max(1.0, deadline - time.monotonic())
            dep = kube.wait_rollout(namespace, change.name, left)
        else:
            dep = kube.deployment(namespace, change.name)
        change.ready = int((dep.get("status") or {}).get("readyReplicas", 0))
    return changes


# --------------------------------------------------------------------------------------------
# jobs_hold, jobs_release


def jobs_hold(req: JobsRequest) -> JobsResult:
    """Keep scheduled jobs from running: the cron deployment at zero and the database's active
    cron jobs deactivated, each recorded so that release restores exactly them."""
    if req.cluster is None and req.server is None:
        raise ActivityError("jobs_hold needs a cluster (cron deployment) or a server (ir_cron)")
    before = after = None
    if req.cluster is not None:
        kube = KubeClient(req.cluster)
        dep = kube.deployment(req.namespace, req.deployment)
        before = int((dep.get("spec") or {}).get("replicas", 1))
        if before:
            _remember_replicas(kube, req, before)
            kube.scale(req.namespace, req.deployment, 0)
        after = 0
    changed, total = ([], 0)
    if req.server is not None:
        changed, total = _hold_crons(req)
    result = JobsResult(
        held=True,
        deployment_replicas_before=before,
        deployment_replicas_after=after,
        crons_changed=changed,
        crons_held_total=total,
        detail=_jobs_detail("held", req, before, after, changed, total),
    )
    audit(req.incident_id, req.step_id, "jobs_hold", result.detail)
    return result


def jobs_release(req: JobsRequest) -> JobsResult:
    """Undo jobs_hold after finance sign-off: restore the cron deployment and the held jobs."""
    slog = step_log(log, req)
    # The plan orders this step after the finance sign-off gate (or runs it as the undo of a
    # hold when a recovery is abandoned); the activity cannot check the gate itself, so it
    # records who signed off when told, and says so when not.
    signed = f"signed off by {req.signed_off_by}" if req.signed_off_by else "no sign-off named"
    before = after = None
    if req.cluster is not None:
        kube = KubeClient(req.cluster)
        dep = kube.deployment(req.namespace, req.deployment)
        before = int((dep.get("spec") or {}).get("replicas", 0))
        remembered = ((dep.get("metadata") or {}).get("annotations") or {}).get(_HELD_ANNOTATION)
        # Without a count asked for or remembered, nothing was held here: leave it as it is
        # (a standby region's cron deployment starts at zero; pass replicas to start it).
        after = req.replicas if req.replicas is not None else int(remembered or before)
        if before != after:
            kube.scale(req.namespace, req.deployment, after)
    changed, total = ([], 0)
    if req.server is not None:
        changed, total = _release_crons(req)
    result = JobsResult(
        held=False,
        deployment_replicas_before=before,
        deployment_replicas_after=after,
        crons_changed=changed,
        crons_held_total=total,
        detail=_jobs_detail(f"released ({signed})", req, before, after, changed, total),
    )
    if not req.signed_off_by:
        slog.warning("scheduled jobs released with no sign-off named in the request")
    audit(req.incident_id, req.step_id, "jobs_release", result.detail)
    return result


_HELD_ANNOTATION = "odoo-finance-dr/held-replicas"


def _remember_replicas(kube: KubeClient, req: JobsRequest, replicas: int) -> None:
    kube.request(
        "PATCH",
        kube.deployment_path(req.namespace, req.deployment),
        {"metadata": {"annotations": {_HELD_ANNOTATION: str(replicas)}}},
        "application/merge-patch+json",
    )


def _jobs_detail(verb, req, before, after, changed, total) -> str:
    parts = []
    if before is not None:
        parts.append(f"{req.deployment} {before}->{after} replicas")
    if req.server is not None:
        parts.append(f"{len(changed)} cron jobs changed, {total} held in {req.database}")
    return f"scheduled jobs {verb}: " + "; ".join(parts)


def _odoo_db(req: JobsRequest):
    server = req.server.model_copy(update={"dbname": req.database or req.server.dbname})
    return admin_connection(server, req.connect_timeout_s)


def _hold_crons(req: JobsRequest) -> tuple[list[int], int]:
    table = sql.Identifier(HELD_CRONS_TABLE)
    try:
        with _odoo_db(req) as conn, conn.transaction():
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (cron_id integer PRIMARY KEY,"
                    " incident_id text NOT NULL, held_at timestamptz NOT NULL DEFAULT now())"
                ).format(table)
            )
            rows = conn.execute(
                sql.SQL(
                    "WITH held AS (UPDATE ir_cron SET active = false WHERE active RETURNING id)"
                    " INSERT INTO {} (cron_id, incident_id) SELECT id, %s FROM held"
                    " ON CONFLICT (cron_id) DO NOTHING RETURNING cron_id"
                ).format(table),
                (req.incident_id,),
            ).fetchall()
            total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
    except psycopg.Error as exc:
        raise ActivityError(f"holding cron jobs in {req.database} failed: {exc}") from exc
    return sorted(r[0] for r in rows), int(total)


def _release_crons(req: JobsRequest) -> tuple[list[int], int]:
    table = sql.Identifier(HELD_CRONS_TABLE)
    try:
        with _odoo_db(req) as conn, conn.transaction():
            exists = conn.execute("SELECT to_regclass(%s)", (HELD_CRONS_TABLE,)).fetchone()[0]
            if exists is None:
                return [], 0
            rows = conn.execute(
                sql.SQL(
                    "WITH released AS (DELETE FROM {} RETURNING cron_id)"
                    " UPDATE ir_cron SET active = true FROM released"
                    " WHERE ir_cron.id = released.cron_id RETURNING ir_cron.id"
                ).format(table)
            ).fetchall()
    except psycopg.Error as exc:
        raise ActivityError(f"releasing cron jobs in {req.database} failed: {exc}") from exc
    return sorted(r[0] for r in rows), 0


# --------------------------------------------------------------------------------------------
# Function bindings


@bp.activity_trigger(input_name="payload", activity="compute_start_cluster")
def compute_start_cluster(payload: dict) -> dict:
    return start_cluster(ClusterRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="compute_scale_pool")
def compute_scale_pool(payload: dict) -> dict:
    return scale_pool(ScalePoolRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="compute_scale_deployment")
def compute_scale_deployment(payload: dict) -> dict:
    req = ScaleDeploymentRequest.model_validate(payload)
    return scale_deployments(req).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="jobs_hold")
def jobs_hold_activity(payload: dict) -> dict:
    return jobs_hold(JobsRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="jobs_release")
def jobs_release_activity(payload: dict) -> dict:
    return jobs_release(JobsRequest.model_validate(payload)).model_dump(mode="json")
