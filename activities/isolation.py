"""Isolation activities for a security incident: management locks on the affected resources,
secrets rotated, traffic endpoints disabled. Each records what it did for investigators before
anything is restored (the forensic backup is ``db_forensic_backup``)."""

from __future__ import annotations

import logging
import secrets

import azure.durable_functions as df
import psycopg
from azure.core.exceptions import AzureError, ResourceNotFoundError
from psycopg import sql

from activities.database import (
    ActivityError,
    admin_connection,
    audit,
    azure_error,
    first_line,
    set_endpoint_status,
    write_secret,
)
from shared import azure_clients
from shared.recovery import (
    DisableEndpointsRequest,
    DisableEndpointsResult,
    EndpointChange,
    LockRecord,
    LockRequest,
    LockResult,
    RotatedSecret,
    RotateSecretsRequest,
    RotateSecretsResult,
    parse_resource_id,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

LOCKS_API = "2020-05-01"


def lock(req: LockRequest) -> LockResult:
    """Put a management lock on each resource; an existing lock of that name is kept."""
    name = req.lock_name or f"dr-{req.incident_id}".replace("/", "-").replace("#", "-")[:90]
    notes = req.notes or f"Placed by disaster recovery for incident {req.incident_id}"
    records = []
    with azure_clients.ArmClient() as arm:
        for resource in req.resources:
            lock_path = f"{resource}/providers/Microsoft.Authorization/locks/{name}"
            try:
                existing = _get_or_none(arm, lock_path)
                if existing is None:
                    arm.request(
                        "PUT",
                        lock_path,
                        api_version=LOCKS_API,
                        body={"properties": {"level": req.level, "notes": notes}},
                    )
                level = ((existing or {}).get("properties") or {}).get("level", req.level)
            except AzureError as exc:
                raise ActivityError(f"locking {resource} failed: {azure_error(exc)}") from exc
            records.append(
                LockRecord(resource=resource, lock_id=lock_path, level=level, created=not existing)
            )
    detail = f"{req.level} lock {name} on {len(records)} resources"
    audit(
        req.incident_id, req.step_id, "isolation_lock", detail, locks=[r.lock_id for r in records]
    )
    return LockResult(locks=records, detail=detail)


def _get_or_none(arm: azure_clients.ArmClient, path: str) -> dict | None:
    try:
        return arm.request("GET", path, api_version=LOCKS_API)[1]
    except ResourceNotFoundError:
        return None
    except AzureError as exc:
        if getattr(exc, "status_code", None) == 404:
            return None
        raise


def rotate_secrets(req: RotateSecretsRequest) -> RotateSecretsResult:
    """Give each secret a new random value; a database role's password follows on each server
    that answers (one that does not is named, for a later rotation)."""
    rotated = []
    for item in req.secrets:
        value = secrets.token_urlsafe(32)
        applied, missed = [], {}
        for server in item.servers if item.db_role else []:
            try:
                with admin_connection(server, req.connect_timeout_s) as conn:
                    conn.execute(
                        sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                            sql.Identifier(item.db_role), sql.Literal(value)
                        )
                    )
                applied.append(server.server_id)
            except (psycopg.Error, OSError, ActivityError) as exc:
                missed[server.server_id] = first_line(exc)
        version = write_secret(
            item.secret, value, tags={"rotated-by": "odoo-finance-dr", "incident": req.incident_id}
        )
        rotated.append(
            RotatedSecret(
                name=item.secret.name, new_version=version, applied_on=applied, not_applied=missed
            )
        )
    detail = f"rotated {len(rotated)} secrets" + (
        "; not applied on: " + ", ".join(sorted({k for r in rotated for k in r.not_applied}))
        if any(r.not_applied for r in rotated)
        else ""
    )
    audit(
        req.incident_id,
        req.step_id,
        "isolation_rotate_secrets",
        detail,
        secrets=[r.name for r in rotated],
    )
    return RotateSecretsResult(rotated=rotated, detail=detail)


def disable_endpoints(req: DisableEndpointsRequest) -> DisableEndpointsResult:
    """Take each Traffic Manager endpoint out of routing."""
    changes = []
    for endpoint in req.endpoints:
        done, detail = set_endpoint_status(endpoint, "Disabled")
        changes.append(
            EndpointChange(
                profile=parse_resource_id(endpoint.profile_id).name,
                name=endpoint.name,
                disabled=done,
                detail=detail,
            )
        )
    all_done = all(c.disabled for c in changes)
    detail = "; ".join(c.detail for c in changes)
    audit(req.incident_id, req.step_id, "isolation_disable_endpoints", detail)
    if not all_done:
        raise ActivityError(f"not every endpoint could be disabled: {detail}")
    return DisableEndpointsResult(endpoints=changes, all_disabled=all_done, detail=detail)


@bp.activity_trigger(input_name="payload", activity="isolation_lock")
def isolation_lock(payload: dict) -> dict:
    return lock(LockRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="isolation_rotate_secrets")
def isolation_rotate_secrets(payload: dict) -> dict:
    return rotate_secrets(RotateSecretsRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="isolation_disable_endpoints")
def isolation_disable_endpoints(payload: dict) -> dict:
    req = DisableEndpointsRequest.model_validate(payload)
    return disable_endpoints(req).model_dump(mode="json")
