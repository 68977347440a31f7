"""Dependency activities: targeted remediation without a database failover. Restart-like
remediation of Redis, switching the attachment store to the secondary account (a Key Vault
value the application reads), and pausing or resuming integration queue workers."""

from __future__ import annotations

import logging
import os

import azure.durable_functions as df
import redis
import requests

from activities.cache import delete_by_prefix, redis_client
from activities.compute import KubeClient, scale_many
from activities.database import ActivityError, audit, read_secret, write_secret
from shared.recovery import (
    QueuesRequest,
    QueuesResult,
    RedisRemediationRequest,
    RedisRemediationResult,
    StorageSwitchRequest,
    StorageSwitchResult,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

PAUSED_ANNOTATION = "odoo-finance-dr/paused-replicas"


def redis_remediate(req: RedisRemediationRequest) -> RedisRemediationResult:
    """Flush sessions, flush everything, or drop every client connection (the effect of a
    restart on clients, without restarting the service)."""
    # Limitation: restarting Azure Cache for Redis itself needs its management API
    # (Microsoft.Cache), which this product does not carry; dropping client connections is
    # what a restart does to the application.
    client = redis_client(req)
    deleted = killed = 0
    try:
        if req.action == "flush_sessions":
            deleted = delete_by_prefix(client, req.prefix, req.batch)
        elif req.action == "flush_all":
            deleted = int(client.dbsize())
            client.flushdb()
        else:
            killed = int(client.client_kill_filter(_type="normal", skipme=True) or 0)
        ping = bool(client.ping())
    except redis.RedisError as exc:
        raise ActivityError(f"Redis remediation {req.action} failed: {exc}") from exc
    finally:
        client.close()
    detail = {
        "flush_sessions": f"deleted {deleted} session keys",
        "flush_all": f"flushed the whole database ({deleted} keys)",
        "reset_connections": f"dropped {killed} client connections",
    }[req.action] + ("; Redis answers PING" if ping else "; Redis does not answer PING")
    audit(req.incident_id, req.step_id, "dependency_redis", detail)
    return RedisRemediationResult(
        action=req.action, ping_ok=ping, deleted=deleted, clients_killed=killed, detail=detail
    )


def storage_switch(req: StorageSwitchRequest) -> StorageSwitchResult:
    """Point the attachment store at ``account_url``; already pointing there is a no-op."""
    reachable = None
    if req.check:
        reachable = _answers(req.account_url, req.timeout_s)
        if not reachable:
            raise ActivityError(f"storage account {req.account_url} does not answer; not switched")
    try:
        previous = read_secret(req.setting)[0]
    except ActivityError:
        previous = None
    changed = previous != req.account_url
    version = None
    if changed:
        version = write_secret(
            req.setting, req.account_url, tags={"changed-by": "odoo-finance-dr",
                                                "incident": req.incident_id},
        )  # fmt: skip
    detail = (
        f"attachment store switched from {previous} to {req.account_url}"
        if changed
        else f"attachment store already at {req.account_url}"
    )
    audit(req.incident_id, req.step_id, "dependency_storage", detail)
    return StorageSwitchResult(
        previous=previous,
        current=req.account_url,
        changed=changed,
        new_version=version,
        reachable=reachable,
        detail=detail,
    )


def _answers(url: str, timeout_s: float) -> bool:
    """Any HTTP answer counts (an account answers 400/403 to an anonymous GET)."""
    try:
        requests.get(
            url, timeout=(timeout_s, timeout_s), verify=os.environ.get("DR_CA_BUNDLE") or True
        )
    except requests.RequestException as exc:
        log.info("storage endpoint %s does not answer: %s", url, exc)
        return False
    return True


def queues_pause(req: QueuesRequest) -> QueuesResult:
    """Scale the integration workers to zero, remembering each one's replicas."""
    kube = KubeClient(req.cluster)
    for name in req.workers:
        dep = kube.deployment(req.namespace, name)
        replicas = int((dep.get("spec") or {}).get("replicas", 1))
        if replicas:
            kube.request(
                "PATCH",
                kube.deployment_path(req.namespace, name),
                {"metadata": {"annotations": {PAUSED_ANNOTATION: str(replicas)}}},
                "application/merge-patch+json",
            )
    changes = scale_many(kube, req.namespace, {n: 0 for n in req.workers}, True, req.timeout_s)
    detail = "paused " + ", ".join(f"{c.name} ({c.before}->0)" for c in changes)
    audit(req.incident_id, req.step_id, "dependency_queues_pause", detail)
    return QueuesResult(paused=True, deployments=changes, detail=detail)


def queues_resume(req: QueuesRequest) -> QueuesResult:
    """Scale the workers back: the replicas remembered at pause, else the request's."""
    kube = KubeClient(req.cluster)
    targets = {}
    for name, fallback in req.workers.items():
        dep = kube.deployment(req.namespace, name)
        remembered = ((dep.get("metadata") or {}).get("annotations") or {}).get(PAUSED_ANNOTATION)
        targets[name] = int(remembered) if remembered else fallback
    changes = scale_many(kube, req.namespace, targets, True, req.timeout_s)
    detail = "resumed " + ", ".join(f"{c.name} ({c.before}->{c.after})" for c in changes)
    audit(req.incident_id, req.step_id, "dependency_queues_resume", detail)
    return QueuesResult(paused=False, deployments=changes, detail=detail)


@bp.activity_trigger(input_name="payload", activity="dependency_redis")
def dependency_redis(payload: dict) -> dict:
    req = RedisRemediationRequest.model_validate(payload)
    return redis_remediate(req).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="dependency_storage")
def dependency_storage(payload: dict) -> dict:
    return storage_switch(StorageSwitchRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="dependency_queues_pause")
def dependency_queues_pause(payload: dict) -> dict:
    return queues_pause(QueuesRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="dependency_queues_resume")
def dependency_queues_resume(payload: dict) -> dict:
    return queues_resume(QueuesRequest.model_validate(payload)).model_dump(mode="json")
