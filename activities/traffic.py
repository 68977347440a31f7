"""Traffic activities: move Traffic Manager to the recovered region and check that clients
reach the application there, through the front door, with a writable database.

A cutover is done only when Traffic Manager reports the new endpoint Online, the profile's DNS
TTL has passed (resolvers hold the old answer that long), and a request through the front door
is answered by the new region.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import azure.durable_functions as df
import requests
from azure.core.exceptions import AzureError

from activities.database import ARM_TIMEOUTS, ActivityError, audit, azure_error, step_log
from shared import azure_clients
from shared.recovery import (
    EndpointState,
    FrontDoorCheck,
    TrafficCutoverRequest,
    TrafficResult,
    parse_resource_id,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

HTTP_TIMEOUT = (3, 10)  # (connect, read) seconds for each request through the front door
POLL_S = 1.0


def cutover(req: TrafficCutoverRequest) -> TrafficResult:
    """Make ``req.endpoint`` the endpoint that answers, then run the checks of ``check``."""
    slog = step_log(log, req)
    rid = parse_resource_id(req.profile)
    client = azure_clients.trafficmanager_client(rid.subscription)
    try:
        profile = client.profiles.get(rid.resource_group, rid.name, **ARM_TIMEOUTS)
        endpoints = {e.name: e for e in (profile.properties.endpoints or [])}
        if req.endpoint not in endpoints:
            raise ActivityError(f"profile {rid.name} has no endpoint {req.endpoint!r}")
        missing = [n for n in req.disable_endpoints if n not in endpoints]
        if missing:
            raise ActivityError(f"profile {rid.name} has no endpoint(s) {', '.join(missing)}")
        changes = _plan_changes(req, endpoints)
        for name, properties in changes.items():
            slog.info("Traffic Manager %s: endpoint %s <- %s", rid.name, name, properties)
            client.endpoints.update(
                rid.resource_group,
                rid.name,
                _endpoint_type(endpoints[name], req.endpoint_type),
                name,
                {"properties": properties},
                **ARM_TIMEOUTS,
            )
    except AzureError as exc:
        raise ActivityError(
            f"Traffic Manager cutover on {rid.name} failed: {azure_error(exc)}"
        ) from exc
    finally:
        client.close()

    result = check(req, changed=sorted(changes))
    audit(req.incident_id, req.step_id, "traffic_cutover", result.detail, changed=result.changed)
    if not result.ok:
        raise ActivityError(result.detail)
    return result


def _endpoint_type(endpoint: Any, default: str) -> str:
    kind = str(getattr(endpoint, "type", "") or "")
    tail = kind.rsplit("/", 1)[-1]
    known = {"azureendpoints": "AzureEndpoints", "externalendpoints": "ExternalEndpoints"}
    known["nestedendpoints"] = "NestedEndpoints"
    return known.get(tail.lower(), default)


def _plan_changes(req: TrafficCutoverRequest, endpoints: dict[str, Any]) -> dict[str, dict]:
    """The endpoint property changes a cutover needs; empty when it is already done."""
    changes: dict[str, dict] = {}
    target = endpoints[req.endpoint].properties
    if _s(target.endpoint_status) != "Enabled":
        changes[req.endpoint] = {"endpointStatus": "Enabled"}
    for name in req.disable_endpoints:
        if _s(endpoints[name].properties.endpoint_status) != "Disabled":
            changes[name] = {"endpointStatus": "Disabled"}
    if req.strategy == "swap_priority":
        others = [e for n, e in endpoints.items() if n != req.endpoint]
        best = min(
            (e for e in others if e.properties.priority),
            default=None,
            key=lambda e: e.properties.priority,
        )
        if best is not None and (target.priority or 1001) > best.properties.priority:
            changes.setdefault(req.endpoint, {})["priority"] = best.properties.priority
            changes.setdefault(best.name, {})["priority"] = target.priority
    return changes


def check(req: TrafficCutoverRequest, changed: list[str] | None = None) -> TrafficResult:
    """The endpoint is Online, the TTL has passed (after a change), the front door answers."""
    slog = step_log(log, req)
    changed = changed or []
    rid = parse_resource_id(req.profile)
    states, ttl = _wait_online(req, rid)
    waited = 0.0
    if changed and ttl:
        waited = float(min(ttl, req.max_ttl_wait_s))
        slog.info("waiting out the DNS TTL of %s s (capped at %s s)", ttl, req.max_ttl_wait_s)
        time.sleep(waited)

    url = req.frontdoor or os.environ.get("DR_FRONTDOOR_URL")
    door = None
    if url:
        door = frontdoor_check(
            url, req.health_path, req.region, req.require_writable, req.check_timeout_s
        )
    target = next(s for s in states if s.name == req.endpoint)
    online = target.monitor_status in ("Online", "Unmonitored") and target.status == "Enabled"
    ok = online and (door is None or door.ok)
    parts = [f"endpoint {req.endpoint} is {target.status}/{target.monitor_status}"]
    if changed:
        parts.append(f"changed {', '.join(changed)}; waited {waited:.0f} s of DNS TTL")
    else:
        parts.append("no change was needed")
    parts.append(door.detail if door else "no front door URL configured, not checked")
    return TrafficResult(
        profile=req.profile,
        changed=changed,
        endpoints=states,
        ttl_waited_s=waited,
        frontdoor=door,
        ok=ok,
        detail="; ".join(parts),
    )


def _wait_online(req: TrafficCutoverRequest, rid: Any) -> tuple[list[EndpointState], int]:
    deadline = time.monotonic() + req.monitor_timeout_s
    client = azure_clients.trafficmanager_client(rid.subscription)
    try:
        while True:
            profile = client.profiles.get(rid.resource_group, rid.name, **ARM_TIMEOUTS)
            states = [
                EndpointState(
                    name=e.name,
                    status=_s(e.properties.endpoint_status),
                    monitor_status=_s(e.properties.endpoint_monitor_status),
                    priority=e.properties.priority,
                )
                for e in profile.properties.endpoints or []
            ]
            target = next((s for s in states if s.name == req.endpoint), None)
            if target and target.monitor_status in ("Online", "Unmonitored"):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
    except AzureError as exc:
        raise ActivityError(
            f"reading Traffic Manager profile {rid.name}: {azure_error(exc)}"
        ) from exc
    finally:
        client.close()
    dns = profile.properties.dns_config
    return states, int(getattr(dns, "ttl", 0) or 0)


def _s(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def frontdoor_check(
    url: str, path: str, region: str | None, require_writable: bool, timeout_s: float
) -> FrontDoorCheck:
    """Ask the application's health through the front door until it answers as required."""
    full = url.rstrip("/") + path
    deadline = time.monotonic() + timeout_s
    last = FrontDoorCheck(url=full, ok=False, detail="no answer yet")
    while True:
        last = _one_check(full, region, require_writable)
        if last.ok or time.monotonic() > deadline:
            return last
        time.sleep(POLL_S)


def _one_check(url: str, region: str | None, require_writable: bool) -> FrontDoorCheck:
    try:
        resp = requests.get(
            url, timeout=HTTP_TIMEOUT, verify=os.environ.get("DR_CA_BUNDLE") or True
        )
    except requests.RequestException as exc:
        return FrontDoorCheck(url=url, ok=False, detail=f"the front door did not answer: {exc}")
    try:
        body = resp.json()
    except ValueError:
        body = {}
    served = resp.headers.get("X-Served-Region") or body.get("region")
    writable = (body.get("database") or {}).get("writable")
    problems = []
    if resp.status_code != 200:
        problems.append(f"answered HTTP {resp.status_code}")
    if region and (served or "").replace(" ", "").lower() != region.replace(" ", "").lower():
        problems.append(f"served from {served or 'an unknown region'}, not {region}")
    if require_writable and writable is not True:
        problems.append("its database is not writable")
    detail = (
        f"front door: the application answers from {served} with a writable database"
        if not problems
        else "front door: " + ", ".join(problems)
    )
    return FrontDoorCheck(
        url=url,
        ok=not problems,
        status_code=resp.status_code,
        region=served,
        database_writable=writable,
        detail=detail,
    )


@bp.activity_trigger(input_name="payload", activity="traffic_cutover")
def traffic_cutover(payload: dict) -> dict:
    return cutover(TrafficCutoverRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="traffic_check")
def traffic_check(payload: dict) -> dict:
    req = TrafficCutoverRequest.model_validate(payload)
    result = check(req)
    audit(req.incident_id, req.step_id, "traffic_check", result.detail)
    return result.model_dump(mode="json")
