"""Traffic Manager profiles and endpoints in local Azure (API 2022-04-01 shapes).

Calls are synchronous, as on Azure: PUT answers 200 or 201, PATCH 200, DELETE 200 or 204.
``endpointMonitorStatus`` is computed when it is read, from the stand-in Odoo of the
endpoint's region (``endpointLocation``): Online while it answers its health check, Degraded
while its region is down or the check fails, Disabled while the endpoint is disabled.
``choose_endpoint`` is the priority routing decision the local front door uses.
"""

from __future__ import annotations

import logging
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
    ENDPOINT_TYPES,
    TrafficManagerProfileTopology,
    load_state,
    network_topology,
    normalise_region,
    save_state,
)

log = logging.getLogger(__name__)

NAME = "trafficmanager"
PROFILE_TYPE = "Microsoft.Network/trafficManagerProfiles"
PROFILE_PATH = (
    "/subscriptions/{subscription}/resourceGroups/{rg}/providers/"
    "Microsoft.Network/trafficmanagerprofiles/{profile}"
)
FQDN_SUFFIX = "trafficmanager.net"
DELETED = {"boolean": True}  # the DeleteOperationResult body of a delete that removed something
# Properties an endpoint keeps as given; monitor status and region are computed.
ENDPOINT_FIELDS = (
    "target",
    "targetResourceId",
    "endpointStatus",
    "weight",
    "priority",
    "endpointLocation",
    "alwaysServe",
    "minChildEndpoints",
    "minChildEndpointsIPv4",
    "minChildEndpointsIPv6",
    "geoMapping",
    "subnets",
    "customHeaders",
)


class Endpoint(BaseModel):
    """One endpoint; ``region`` is where its probes go (from ``endpointLocation``)."""

    name: str
    kind: str = Field(description="AzureEndpoints, ExternalEndpoints or NestedEndpoints")
    region: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @property
    def type(self) -> str:
        return f"{PROFILE_TYPE}/{self.kind[0].lower()}{self.kind[1:]}"

    @property
    def enabled(self) -> bool:
        return self.properties.get("endpointStatus", "Enabled") == "Enabled"

    @property
    def priority(self) -> int:
        return int(self.properties.get("priority") or 1000)


class Profile(BaseModel):
    subscription: str
    resource_group: str
    name: str
    tags: dict[str, str] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    endpoints: list[Endpoint] = Field(default_factory=list)

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
            f"{PROFILE_TYPE}/{self.name}"
        )

    @property
    def ttl(self) -> int:
        return int((self.properties.get("dnsConfig") or {}).get("ttl", 30))

    @property
    def enabled(self) -> bool:
        return self.properties.get("profileStatus", "Enabled") == "Enabled"

    def endpoint(self, kind: str, name: str) -> Endpoint | None:
        for ep in self.endpoints:
            if ep.kind.lower() == kind.lower() and ep.name.lower() == name.lower():
                return ep
        return None


class Choice(BaseModel):
    """The endpoint priority routing picks now, and why."""

    endpoint: str | None
    region: str | None
    target: str | None
    reason: str


def _profiles(state: Any) -> dict[str, Profile]:
    return state.provider_state(NAME).setdefault("profiles", {})


def _canonical_kind(kind: str) -> str:
    for known in ENDPOINT_TYPES:
        if known.lower() == kind.lower():
            return known
    raise ArmError(
        400,
        "BadRequest",
        f"endpoint type {kind!r} is not one of {', '.join(ENDPOINT_TYPES)}",
    )


def _from_topology(spec: TrafficManagerProfileTopology, subscription: str) -> Profile:
    profile = Profile(
        subscription=subscription,
        resource_group=spec.resource_group or "",
        name=spec.name,
        properties={
            "profileStatus": "Enabled",
            "trafficRoutingMethod": spec.routing_method,
            "dnsConfig": {
                "relativeName": spec.relative_name or spec.name,
                "fqdn": f"{spec.relative_name or spec.name}.{FQDN_SUFFIX}",
                "ttl": spec.ttl,
            },
            "monitorConfig": spec.monitor.model_dump(by_alias=True),
            "trafficViewEnrollmentStatus": "Disabled",
            "maxReturn": 0,
        },
    )
    for i, ep in enumerate(spec.endpoints, start=1):
        props: dict[str, Any] = {
            "target": ep.target,
            "endpointStatus": ep.endpoint_status,
            "weight": ep.weight,
            "priority": ep.priority or i,
            "endpointLocation": ep.region,
        }
        if ep.target_resource_id:
            props["targetResourceId"] = ep.target_resource_id
        profile.endpoints.append(
            Endpoint(
                name=ep.name, kind=ep.type, region=normalise_region(ep.region), properties=props
            )
        )
    return profile


class TrafficManagerProvider:
    """ARM routes of Microsoft.Network/trafficmanagerprofiles and their endpoints.

    Handlers change state under ``state.lock`` and build their answers from a copy after
    releasing it: an answer probes stand-in Odoo, which connects to PostgreSQL.
    """

    name = NAME

    def __init__(self, env: ProviderEnv):
        self.env = env
        self.state = env.state
        network = network_topology(self.state)
        saved = load_state(env.state_dir, NAME)
        with self.state.lock:
            profiles = _profiles(self.state)
            if saved is not None:
                for key, raw in saved.get("profiles", {}).items():
                    profiles[key] = Profile.model_validate(raw)
                log.info("trafficmanager: %d profiles from the earlier run", len(profiles))
            else:
                for spec in network.traffic_manager.profiles:
                    profile = _from_topology(spec, self.state.topology.subscription)
                    profiles[profile.id.lower()] = profile
        self.state.register_dump(NAME, self.dump)

    def save(self) -> None:
        with self.state.lock:
            data = {k: p.model_dump(mode="json") for k, p in _profiles(self.state).items()}
            save_state(self.env.state_dir, NAME, {"profiles": data})

    def dump(self) -> dict[str, Any]:
        with self.state.lock:
            profiles = [p.model_copy(deep=True) for p in _profiles(self.state).values()]
        return {"profiles": [profile_body(self.state, p) for p in profiles]}

    def routes(self) -> list[Route]:
        op = "Microsoft.Network/trafficManagerProfiles"
        endpoint = PROFILE_PATH + "/{endpointType}/{endpoint}"
        rg_list = (
            "/subscriptions/{subscription}/resourceGroups/{rg}/providers/"
            "Microsoft.Network/trafficmanagerprofiles"
        )
        sub_list = (
            "/subscriptions/{subscription}/providers/Microsoft.Network/trafficmanagerprofiles"
        )
        return [
            Route("GET", sub_list, self.list_profiles, f"{op}/read"),
            Route("GET", rg_list, self.list_profiles, f"{op}/read"),
            Route("GET", PROFILE_PATH, self.get_profile, f"{op}/read"),
            Route("PUT", PROFILE_PATH, self.put_profile, f"{op}/write"),
            Route("PATCH", PROFILE_PATH, self.patch_profile, f"{op}/write"),
            Route("DELETE", PROFILE_PATH, self.delete_profile, f"{op}/delete"),
            Route("GET", endpoint, self.get_endpoint, f"{op}/endpoints/read"),
            Route("PUT", endpoint, self.put_endpoint, f"{op}/endpoints/write"),
            Route("PATCH", endpoint, self.patch_endpoint, f"{op}/endpoints/write"),
            Route("DELETE", endpoint, self.delete_endpoint, f"{op}/endpoints/delete"),
        ]

    # -- profiles ----------------------------------------------------------------------------

    def _key(self, req: ArmRequest) -> str:
        return (
            f"/subscriptions/{req.params['subscription']}/resourceGroups/{req.params['rg']}"
            f"/providers/{PROFILE_TYPE}/{req.params['profile']}"
        ).lower()

    def _profile(self, req: ArmRequest) -> Profile:
        profile = _profiles(self.state).get(self._key(req))
        if profile is None:
            raise ArmError(
                404,
                "NotFound",
                f"Traffic Manager profile {req.params['profile']} was not found in resource "
                f"group {req.params['rg']}",
            )
        return profile

    def list_profiles(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rg = req.params.get("rg", "").lower()
        with self.state.lock:
            found = [
                p
                for p in _profiles(self.state).values()
                if p.subscription.lower() == req.params["subscription"].lower()
                and (not rg or p.resource_group.lower() == rg)
            ]
            found = [p.model_copy(deep=True) for p in found]
        return ArmResponse(200, {"value": [profile_body(self.state, p) for p in found]})

    def get_profile(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        with self.state.lock:
            profile = self._profile(req).model_copy(deep=True)
        return ArmResponse(200, profile_body(self.state, profile))

    def put_profile(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        """Create or replace a profile with its endpoints."""
        _enforce_locks(self.state, req)
        body = _object(req.body, "profile")
        props = _object(body.get("properties") or {}, "profile properties")
        with self.state.lock:
            key = self._key(req)
            existed = key in _profiles(self.state)
            profile = Profile(
                subscription=req.params["subscription"],
                resource_group=req.params["rg"],
                name=req.params["profile"],
                tags=dict(body.get("tags") or {}),
            )
            profile.properties = _profile_properties(props, profile.name, None)
            for raw in props.get("endpoints") or []:
                profile.endpoints.append(_endpoint_from_body(raw, None, None))
            _check_priorities(profile)
            _profiles(self.state)[key] = profile
            self.save()
            log.info(
                "Traffic Manager profile %s %s", profile.name, "replaced" if existed else "created"
            )
            profile = profile.model_copy(deep=True)
        return ArmResponse(200 if existed else 201, profile_body(self.state, profile))

    def patch_profile(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        _enforce_locks(self.state, req)
        body = _object(req.body, "profile")
        props = _object(body.get("properties") or {}, "profile properties")
        with self.state.lock:
            profile = self._profile(req)
            updated = profile.model_copy(deep=True)
            updated.properties = _profile_properties(props, profile.name, profile.properties)
            if "tags" in body:
                updated.tags = dict(body.get("tags") or {})
            if "endpoints" in props:
                updated.endpoints = []
                for raw in props.get("endpoints") or []:
                    name = (raw or {}).get("name", "")
                    kind = _kind_from_type((raw or {}).get("type", ""))
                    old = profile.endpoint(kind, name) if kind else None
                    updated.endpoints.append(_endpoint_from_body(raw, old, None))
            _check_priorities(updated)
            _profiles(self.state)[self._key(req)] = updated
            self.save()
            log.info("Traffic Manager profile %s updated", profile.name)
            updated = updated.model_copy(deep=True)
        return ArmResponse(200, profile_body(self.state, updated))

    def delete_profile(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        _enforce_locks(self.state, req)
        with self.state.lock:
            removed = _profiles(self.state).pop(self._key(req), None)
            self.save()
        if removed is None:
            return ArmResponse(204)
        log.info("Traffic Manager profile %s deleted", removed.name)
        return ArmResponse(200, DELETED)

    # -- endpoints ---------------------------------------------------------------------------

    def _endpoint(self, req: ArmRequest) -> tuple[Profile, str, Endpoint | None]:
        kind = _canonical_kind(req.params["endpointType"])
        profile = self._profile(req)
        return profile, kind, profile.endpoint(kind, req.params["endpoint"])

    def get_endpoint(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        with self.state.lock:
            profile, kind, ep = self._endpoint(req)
            if ep is None:
                raise ArmError(
                    404,
                    "NotFound",
                    f"endpoint {req.params['endpoint']} ({kind}) was not found in profile "
                    f"{profile.name}",
                )
            profile, ep = profile.model_copy(deep=True), ep.model_copy(deep=True)
        return ArmResponse(200, endpoint_body(self.state, profile, ep))

    def put_endpoint(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        """Create or replace one endpoint (200 when it existed, 201 when it is new)."""
        _enforce_locks(self.state, req)
        body = _object(req.body, "endpoint")
        with self.state.lock:
            profile, kind, old = self._endpoint(req)
            ep = _endpoint_from_body(
                {**body, "name": req.params["endpoint"]}, None, kind, replace=True
            )
            if old is not None and ep.region is None:
                ep.region = old.region
            self._store_endpoint(profile, old, ep)
            log.info(
                "Traffic Manager %s/%s %s: %s priority %s",
                profile.name,
                ep.name,
                "replaced" if old else "created",
                ep.properties.get("endpointStatus"),
                ep.properties.get("priority"),
            )
            profile, ep = profile.model_copy(deep=True), ep.model_copy(deep=True)
        return ArmResponse(201 if old is None else 200, endpoint_body(self.state, profile, ep))

    def patch_endpoint(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        """Change the given properties of an endpoint (how a cutover enables or disables one)."""
        _enforce_locks(self.state, req)
        body = _object(req.body, "endpoint")
        with self.state.lock:
            profile, kind, old = self._endpoint(req)
            if old is None:
                raise ArmError(
                    404,
                    "NotFound",
                    f"endpoint {req.params['endpoint']} ({kind}) was not found in profile "
                    f"{profile.name}",
                )
            ep = _endpoint_from_body({**body, "name": old.name}, old, kind)
            self._store_endpoint(profile, old, ep)
            log.info(
                "Traffic Manager %s/%s updated: %s priority %s",
                profile.name,
                ep.name,
                ep.properties.get("endpointStatus"),
                ep.properties.get("priority"),
            )
            profile, ep = profile.model_copy(deep=True), ep.model_copy(deep=True)
        return ArmResponse(200, endpoint_body(self.state, profile, ep))

    def delete_endpoint(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        _enforce_locks(self.state, req)
        with self.state.lock:
            profile, _kind, old = self._endpoint(req)
            if old is None:
                return ArmResponse(204)
            profile.endpoints = [e for e in profile.endpoints if e is not old]
            self.save()
            log.info("Traffic Manager %s/%s deleted", profile.name, old.name)
            return ArmResponse(200, DELETED)

    def _store_endpoint(self, profile: Profile, old: Endpoint | None, ep: Endpoint) -> None:
        updated = [e for e in profile.endpoints if e is not old]
        if "priority" not in ep.properties or ep.properties["priority"] is None:
            if profile.properties.get("trafficRoutingMethod") == "Priority":
                # Azure gives an endpoint without a priority the next free one.
                used = {e.priority for e in updated}
                ep.properties["priority"] = next(p for p in range(1, 1001) if p not in used)
        candidate = profile.model_copy()
        candidate.endpoints = [*updated, ep]
        _check_priorities(candidate)
        index = profile.endpoints.index(old) if old is not None else len(profile.endpoints)
        updated.insert(index, ep)
        profile.endpoints = updated
        self.save()


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ArmError(400, "BadRequest", f"the {what} must be a JSON object")
    return value


def _kind_from_type(value: str) -> str | None:
    tail = value.rsplit("/", 1)[-1].lower()
    for known in ENDPOINT_TYPES:
        if known.lower() == tail:
            return known
    return None


def _profile_properties(
    props: dict[str, Any], name: str, current: dict[str, Any] | None
) -> dict[str, Any]:
    merged = dict(current or {})
    for key, value in props.items():
        if key in ("endpoints",):
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    merged.setdefault("profileStatus", "Enabled")
    merged.setdefault("trafficRoutingMethod", "Priority")
    method = merged["trafficRoutingMethod"]
    if method not in ("Priority", "Weighted", "Performance", "Geographic", "MultiValue", "Subnet"):
        raise ArmError(400, "BadRequest", f"trafficRoutingMethod {method!r} is not known")
    if merged["profileStatus"] not in ("Enabled", "Disabled"):
        raise ArmError(400, "BadRequest", "profileStatus must be Enabled or Disabled")
    dns = dict(merged.get("dnsConfig") or {})
    dns.setdefault("relativeName", name)
    dns["fqdn"] = f"{dns['relativeName']}.{FQDN_SUFFIX}"
    ttl = dns.setdefault("ttl", 30)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
        raise ArmError(400, "BadRequest", f"dnsConfig.ttl {ttl!r} must be a whole number >= 0")
    merged["dnsConfig"] = dns
    monitor = dict(merged.get("monitorConfig") or {})
    monitor.pop("profileMonitorStatus", None)
    for key, default in (
        ("protocol", "HTTP"),
        ("port", 80),
        ("path", "/web/health"),
        ("intervalInSeconds", 30),
        ("timeoutInSeconds", 10),
        ("toleratedNumberOfFailures", 3),
    ):
        monitor.setdefault(key, default)
    merged["monitorConfig"] = monitor
    merged.setdefault("trafficViewEnrollmentStatus", "Disabled")
    return merged


def _endpoint_from_body(
    raw: Any, old: Endpoint | None, kind: str | None, replace: bool = False
) -> Endpoint:
    """An endpoint from a request body; a PATCH (``old`` given) keeps what it does not name."""
    raw = _object(raw, "endpoint")
    kind = kind or _kind_from_type(raw.get("type", ""))
    if kind is None:
        raise ArmError(
            400, "BadRequest", f"endpoint {raw.get('name')!r}: type {raw.get('type')!r} is unknown"
        )
    name = raw.get("name")
    if not name:
        raise ArmError(400, "BadRequest", "an endpoint needs a name")
    props = _object(raw.get("properties") or {}, "endpoint properties")
    merged = {} if (old is None or replace) else dict(old.properties)
    for key in ENDPOINT_FIELDS:
        if key in props:
            merged[key] = props[key]
    merged.setdefault("endpointStatus", "Enabled")
    if merged["endpointStatus"] not in ("Enabled", "Disabled"):
        raise ArmError(400, "BadRequest", "endpointStatus must be Enabled or Disabled")
    for key in ("priority", "weight"):
        value = merged.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000
        ):
            raise ArmError(400, "BadRequest", f"endpoint {name}: {key} {value!r} must be 1..1000")
    merged.setdefault("weight", 1)
    if (
        kind != "NestedEndpoints"
        and not merged.get("target")
        and not merged.get("targetResourceId")
    ):
        raise ArmError(400, "BadRequest", f"endpoint {name}: target or targetResourceId is needed")
    location = merged.get("endpointLocation")
    region = normalise_region(location) if location else (old.region if old else None)
    return Endpoint(name=name, kind=kind, region=region, properties=merged)


def _check_priorities(profile: Profile) -> None:
    seen: dict[int, str] = {}
    for ep in profile.endpoints:
        priority = ep.properties.get("priority")
        if priority is None:
            continue
        if priority in seen:
            raise ArmError(
                400,
                "BadRequest",
                f"endpoints {seen[priority]} and {ep.name} both have priority {priority}: "
                "priority values must be unique within a profile",
            )
        seen[priority] = ep.name


def _enforce_locks(state: Any, req: ArmRequest) -> None:
    from devhost.localazure import locks

    locks.enforce(state, req.method, req.path)


def monitor_status(state: Any, profile: Profile, ep: Endpoint) -> str:
    """What Traffic Manager's probes say about ``ep`` now."""
    # Limitation: the probe result is taken when the status is read, so an endpoint is
    # Degraded at once, not after intervalInSeconds x (toleratedNumberOfFailures + 1); nested
    # endpoints have no child profile behind them and count as Degraded.
    if not profile.enabled or not ep.enabled:
        return "Disabled"
    if ep.properties.get("alwaysServe") == "Enabled":
        return "Unmonitored"
    if ep.region is None:
        return "Degraded"
    if state.region_failed(ep.region):
        return "Degraded"
    from devhost.localazure import odoo_standin

    standins = odoo_standin.provider(state)
    if standins is None or standins.standin(ep.region) is None:
        return "Degraded"
    health = standins.health(ep.region)
    return "Online" if health.http_status == 200 else "Degraded"


def _profile_monitor_status(statuses: list[str], profile: Profile) -> str:
    if not profile.enabled:
        return "Disabled"
    live = [s for s in statuses if s != "Disabled"]
    if not live:
        return "Inactive"
    if any(s in ("Online", "Unmonitored") for s in live):
        return "Online"
    return "Degraded"


def endpoint_body(state: Any, profile: Profile, ep: Endpoint, status: str | None = None) -> dict:
    props = dict(ep.properties)
    props["endpointMonitorStatus"] = status or monitor_status(state, profile, ep)
    return {
        "id": f"{profile.id}/{ep.kind[0].lower()}{ep.kind[1:]}/{ep.name}",
        "name": ep.name,
        "type": ep.type,
        "properties": props,
    }


def profile_body(state: Any, profile: Profile) -> dict[str, Any]:
    statuses = [monitor_status(state, profile, ep) for ep in profile.endpoints]
    props = dict(profile.properties)
    props["monitorConfig"] = {
        "profileMonitorStatus": _profile_monitor_status(statuses, profile),
        **props.get("monitorConfig", {}),
    }
    props["endpoints"] = [
        endpoint_body(state, profile, ep, status)
        for ep, status in zip(profile.endpoints, statuses, strict=True)
    ]
    return {
        "id": profile.id,
        "name": profile.name,
        "type": PROFILE_TYPE,
        "location": "global",
        "tags": dict(profile.tags),
        "properties": props,
    }


def find_profile(state: Any, name: str | None = None) -> Profile | None:
    """The profile called ``name`` (any resource group), or the only one when ``name`` is None."""
    with state.lock:
        profiles = list(_profiles(state).values())
    if name is None:
        return profiles[0] if len(profiles) == 1 else None
    return next((p for p in profiles if p.name.lower() == name.lower()), None)


def choose_endpoint(state: Any, profile: Profile) -> Choice:
    """Priority routing: the enabled endpoint with the lowest priority that is Online.

    When no enabled endpoint is Online, Traffic Manager still answers with one (the lowest
    priority enabled endpoint), so clients are sent somewhere rather than nowhere.
    """
    with state.lock:
        endpoints = sorted(profile.endpoints, key=lambda e: e.priority)
        enabled = profile.enabled
    if not enabled:
        return Choice(endpoint=None, region=None, target=None, reason="the profile is disabled")
    candidates = [e for e in endpoints if e.enabled]
    if not candidates:
        return Choice(endpoint=None, region=None, target=None, reason="no endpoint is enabled")
    for ep in candidates:
        if monitor_status(state, profile, ep) in ("Online", "Unmonitored"):
            return Choice(
                endpoint=ep.name,
                region=ep.region,
                target=ep.properties.get("target"),
                reason=f"{ep.name} has the lowest priority ({ep.priority}) of the online endpoints",
            )
    ep = candidates[0]
    return Choice(
        endpoint=ep.name,
        region=ep.region,
        target=ep.properties.get("target"),
        reason=f"no endpoint is online: {ep.name} is the enabled one with the lowest priority",
    )


def create_provider(env: ProviderEnv) -> TrafficManagerProvider:
    return TrafficManagerProvider(env)
