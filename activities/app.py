"""Application activities: Odoo's maintenance mode, which database server it uses, and a rolling
restart of its pods, all through the Kubernetes API of the AKS cluster (``KubeClient``).

Each change is a change of the deployment's pod template, so Kubernetes rolls it out pod by pod
and the activity waits until every replica runs it. Each is idempotent: a deployment already in
the asked state is not changed again, only waited for.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import requests

from activities.compute import KubeClient
from activities.database import (
    AZURE_PG_SUFFIX,
    ActivityError,
    apply_app_password,
    audit,
    read_secret,
    server_address,
    step_log,
    write_secret,
)
from shared.recovery import FrontDoorCheck, SecretRef
from shared.recovery_extra import (
    MaintenanceRequest,
    MaintenanceResult,
    RepointRequest,
    RepointResult,
    RestartRequest,
    RestartResult,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

MAINTENANCE_ENV = "ODOO_MAINTENANCE"
MAINTENANCE_ANNOTATION = "odoo-finance-dr/maintenance"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESTART_STEP = "odoo-finance-dr/restart-step"
CHANGE_CAUSE = "kubernetes.io/change-cause"
MERGE_PATCH = "application/merge-patch+json"
HTTP_TIMEOUT = (3, 5)  # (connect, read) seconds for each health request
POLL_S = 0.5


# --------------------------------------------------------------------------------------------
# The pod template's environment


def _containers(dep: dict[str, Any]) -> list[dict[str, Any]]:
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    if not containers:
        name = (dep.get("metadata") or {}).get("name")
        raise ActivityError(f"deployment {name} has no containers in its pod template")
    return copy.deepcopy(containers)


def container_env(dep: dict[str, Any]) -> dict[str, str]:
    """The application container's environment (the first container, as Odoo images run)."""
    return {e["name"]: str(e.get("value", "")) for e in _containers(dep)[0].get("env") or []}


def with_env(dep: dict[str, Any], changes: dict[str, str | None]) -> list[dict[str, Any]]:
    """The containers with the application container's variables set (None removes one)."""
    containers = _containers(dep)
    env = [e for e in containers[0].get("env") or [] if e.get("name") not in changes]
    env += [{"name": k, "value": v} for k, v in changes.items() if v is not None]
    containers[0]["env"] = env
    return containers


def patch_containers(
    kube: KubeClient, req: Any, containers: list[dict[str, Any]], annotations: dict[str, str]
) -> None:
    """Replace the pod template's containers (a merge patch replaces the whole list, which is
    what lets a variable be removed again) and set deployment annotations."""
    kube.request(
        "PATCH",
        kube.deployment_path(req.namespace, req.deployment),
        {
            "metadata": {"annotations": annotations},
            "spec": {"template": {"spec": {"containers": containers}}},
        },
        MERGE_PATCH,
    )


def _ready(dep: dict[str, Any]) -> int:
    return int((dep.get("status") or {}).get("readyReplicas", 0))


def _revision(dep: dict[str, Any]) -> str | None:
    return ((dep.get("metadata") or {}).get("annotations") or {}).get(
        "deployment.kubernetes.io/revision"
    )


# --------------------------------------------------------------------------------------------
# app_maintenance


def maintenance(req: MaintenanceRequest) -> MaintenanceResult:
    """Switch maintenance mode with the ``ODOO_MAINTENANCE`` variable of the application
    container: ``1`` while on; removed when off, so the template is the one from before."""
    # Limitation: what maintenance mode does is the application's to honour (refuse postings,
    # show the maintenance page); the stand-in Odoo of local Azure does not read the variable,
    # so locally the change is visible in the deployment and its releases only.
    slog = step_log(log, req)
    kube = KubeClient(req.cluster)
    dep = kube.deployment(req.namespace, req.deployment)
    current = container_env(dep).get(MAINTENANCE_ENV) == "1"
    changed = current != req.enabled
    if changed:
        slog.info("maintenance %s for %s", "on" if req.enabled else "off", req.deployment)
        containers = with_env(dep, {MAINTENANCE_ENV: "1" if req.enabled else None})
        annotations = {
            MAINTENANCE_ANNOTATION: f"{'on' if req.enabled else 'off'} by {req.incident_id}",
            CHANGE_CAUSE: f"maintenance {'on' if req.enabled else 'off'} ({req.incident_id})",
        }
        patch_containers(kube, req, containers, annotations)
    dep = kube.wait_rollout(req.namespace, req.deployment, req.timeout_s)
    state = "on" if req.enabled else "off"
    detail = (
        f"maintenance mode {state} for {req.namespace}/{req.deployment}; rolled out"
        if changed
        else f"maintenance mode was already {state} for {req.namespace}/{req.deployment}"
    )
    audit(req.incident_id, req.step_id, "app_maintenance", detail, cluster=req.cluster)
    return MaintenanceResult(
        cluster=req.cluster,
        deployment=req.deployment,
        enabled=req.enabled,
        changed=changed,
        revision=_revision(dep),
        ready=_ready(dep),
        detail=detail,
    )


# --------------------------------------------------------------------------------------------
# app_repoint_database


def db_host_of(server_id_name: str) -> str:
    """The host name the application uses for a flexible server: Azure's DNS name for it.

    ARM's ``fullyQualifiedDomainName`` is not used because local Azure reports 127.0.0.1 there;
    the DNS name is the same on Azure, and local Azure's stand-in resolves it to the instance.
    """
    return server_id_name.lower() + AZURE_PG_SUFFIX


def repoint(req: RepointRequest) -> RepointResult:
    """Set the application's ``DB_HOST``/``DB_PORT`` (and the host secret, when it has one) to
    the server, wait for the rollout, and check that the health names that server writable."""
    slog = step_log(log, req)
    name = req.server.resource.name
    host = db_host_of(name)
    _, port = server_address(req.server)
    kube = KubeClient(req.cluster)
    dep = kube.deployment(req.namespace, req.deployment)
    env = container_env(dep)
    previous = env.get("DB_HOST")
    changed = previous != host or env.get("DB_PORT", str(port)) != str(port)
    if req.app is not None:
        apply_app_password(req.server, req.app, 5.0)
    if req.db_host_secret:
        _set_host_secret(SecretRef(name=req.db_host_secret), host, req.incident_id)
    if changed:
        slog.info("repointing %s from %s to %s", req.deployment, previous, host)
        containers = with_env(dep, {"DB_HOST": host, "DB_PORT": str(port)})
        patch_containers(
            kube, req, containers, {CHANGE_CAUSE: f"database {name} ({req.incident_id})"}
        )
    kube.wait_rollout(req.namespace, req.deployment, req.timeout_s)

    health = _check_health(req, name)
    if health is not None and not health.ok:
        raise ActivityError(
            f"{req.deployment} points at {name} but its health does not confirm it: {health.detail}"
        )
    detail = (
        f"{req.deployment} repointed from {previous} to {host}"
        if changed
        else f"{req.deployment} already pointed at {host}"
    ) + (f"; {health.detail}" if health else "; health not checked: no health URL is configured")
    audit(
        req.incident_id,
        req.step_id,
        "app_repoint_database",
        detail,
        cluster=req.cluster,
        server=req.server.server_id,
    )
    return RepointResult(
        cluster=req.cluster,
        deployment=req.deployment,
        server_id=req.server.server_id,
        db_host=host,
        previous_host=previous,
        changed=changed,
        health=health,
        detail=detail,
    )


def _set_host_secret(ref: SecretRef, host: str, incident_id: str) -> None:
    """A new version of the host secret only when its value differs (retries add none)."""
    try:
        current = read_secret(ref)[0]
    except ActivityError:
        current = None
    if current != host:
        write_secret(ref, host, tags={"incident": incident_id})


def _check_health(req: RepointRequest, server_name: str) -> FrontDoorCheck | None:
    """Ask the application's health until it names ``server_name`` writable (or time is up)."""
    base = req.health_url or os.environ.get("DR_FRONTDOOR_URL")
    if not base:
        return None
    url = base.rstrip("/") + req.health_path
    deadline = time.monotonic() + req.check_timeout_s
    while True:
        check = _one_health(url, server_name)
        if check.ok or time.monotonic() > deadline:
            return check
        time.sleep(POLL_S)


def _one_health(url: str, server_name: str) -> FrontDoorCheck:
    try:
        resp = requests.get(
            url, timeout=HTTP_TIMEOUT, verify=os.environ.get("DR_CA_BUNDLE") or True
        )
    except requests.RequestException as exc:
        return FrontDoorCheck(url=url, ok=False, detail=f"the application did not answer: {exc}")
    try:
        body = resp.json()
    except ValueError:
        body = {}
    database = body.get("database") or {}
    served = str(database.get("server") or "")
    served = served[: -len(AZURE_PG_SUFFIX)] if served.endswith(AZURE_PG_SUFFIX) else served
    region = resp.headers.get("X-Served-Region") or body.get("region")
    ok = (
        resp.status_code == 200
        and served.lower() == server_name.lower()
        and database.get("writable") is True
    )
    if ok:
        detail = f"the application reports {server_name} writable"
    else:
        detail = (
            f"the application answered HTTP {resp.status_code} naming database server "
            f"{served or 'none'} (writable {database.get('writable')}), not {server_name} writable"
        )
    return FrontDoorCheck(
        url=url,
        ok=ok,
        status_code=resp.status_code,
        region=region,
        database_writable=database.get("writable"),
        detail=detail,
    )


# --------------------------------------------------------------------------------------------
# compute_restart_deployment


def restart(req: RestartRequest) -> RestartResult:
    """A rolling restart: a new ``restartedAt`` annotation in the pod template. The step that
    asked is recorded there too, so a retry of the same step waits instead of restarting again."""
    slog = step_log(log, req)
    started = time.monotonic()
    kube = KubeClient(req.cluster)
    dep = kube.deployment(req.namespace, req.deployment)
    template_meta = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
    annotations = template_meta.get("annotations") or {}
    marker = f"{req.incident_id}/{req.step_id}"
    already = annotations.get(RESTART_STEP) == marker
    restarted_at = annotations.get(RESTARTED_AT) if already else None
    if not already:
        restarted_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        slog.info("restarting %s/%s", req.namespace, req.deployment)
        kube.request(
            "PATCH",
            kube.deployment_path(req.namespace, req.deployment),
            {
                "metadata": {"annotations": {CHANGE_CAUSE: f"restart ({req.incident_id})"}},
                "spec": {
                    "template": {
                        "metadata": {
                            "annotations": {RESTARTED_AT: restarted_at, RESTART_STEP: marker}
                        }
                    }
                },
            },
            MERGE_PATCH,
        )
    dep = kube.wait_rollout(req.namespace, req.deployment, req.timeout_s)
    rollout_s = round(time.monotonic() - started, 3)
    detail = (
        f"{req.namespace}/{req.deployment} was already restarted by this step; rolled out"
        if already
        else f"{req.namespace}/{req.deployment} restarted; every replica ready in {rollout_s} s"
    )
    audit(req.incident_id, req.step_id, "compute_restart_deployment", detail, cluster=req.cluster)
    return RestartResult(
        cluster=req.cluster,
        deployment=req.deployment,
        restarted_at=str(restarted_at),
        already_restarted=already,
        ready=_ready(dep),
        rollout_s=rollout_s,
        detail=detail,
    )


# --------------------------------------------------------------------------------------------
# Function bindings


@bp.activity_trigger(input_name="payload", activity="app_maintenance")
def app_maintenance(payload: dict) -> dict:
    return maintenance(MaintenanceRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="app_repoint_database")
def app_repoint_database(payload: dict) -> dict:
    return repoint(RepointRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="compute_restart_deployment")
def compute_restart_deployment(payload: dict) -> dict:
    return restart(RestartRequest.model_validate(payload)).model_dump(mode="json")
