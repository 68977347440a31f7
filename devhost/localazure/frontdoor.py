"""The local front door: how a client reaches Odoo through Traffic Manager on one machine.

An HTTP server on 127.0.0.1 that resolves the way a DNS resolver in front of Traffic Manager
does: it asks for the priority routing choice, keeps that answer for the profile's
``dnsConfig.ttl`` seconds, and proxies each request to the stand-in Odoo of the chosen region.
Every answer carries ``X-Served-Region``, and requests are counted per region
(``GET /_frontdoor/traffic``). So after a cutover the front door keeps sending
clients to the old region until the cached answer expires, as real resolvers do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from pydantic import BaseModel

from devhost.localazure import odoo_standin, trafficmanager
from devhost.localazure.arm import ArmResponse, ProviderEnv, RawRequest, utc_now_iso
from devhost.localazure.topology_f import network_topology

log = logging.getLogger(__name__)

NAME = "frontdoor"
REGION_HEADER = "X-Served-Region"
ENDPOINT_HEADER = "X-Served-Endpoint"
PROXY_TIMEOUT_S = 10
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class Resolution(BaseModel):
    """One cached answer: which endpoint and region, decided when, kept until when."""

    profile: str
    endpoint: str | None
    region: str | None
    target: str | None
    reason: str
    ttl: int
    resolved_at: float
    expires_at: float

    def public(self, now: float) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "endpoint": self.endpoint,
            "region": self.region,
            "target": self.target,
            "reason": self.reason,
            "ttl": self.ttl,
            "ageSeconds": round(now - self.resolved_at, 3),
            "expiresInSeconds": round(max(0.0, self.expires_at - now), 3),
        }


class FrontDoorProvider:
    """The resolver cache and the proxy; ``clock`` is injectable so tests need not sleep."""

    name = NAME

    def __init__(self, env: ProviderEnv, clock: Callable[[], float] = time.monotonic):
        self.env = env
        self.state = env.state
        self.clock = clock
        self.section = network_topology(self.state).traffic_manager.front_door
        self.url = ""
        self._cache: Resolution | None = None
        self._lock = threading.Lock()
        self._traffic: dict[str, dict[str, Any]] = {}
        self.state.register_dump(NAME, self.dump)
        self.state.provider_state(NAME)["provider"] = self

    def routes(self) -> list:
        return []

    def start(self) -> None:
        if trafficmanager.find_profile(self.state, self.section.profile) is None:
            log.info("front door not started: no Traffic Manager profile to resolve through")
            return
        self.url = self.env.listen(self.handle, tls=False, port=self.section.port)
        log.info("front door on %s", self.url)

    def settings(self) -> dict[str, str]:
        return {"DR_FRONTDOOR_URL": self.url} if self.url else {}

    def dump(self) -> dict[str, Any]:
        cached = self._cache
        return {
            "url": self.url,
            "resolution": cached.public(self.clock()) if cached else None,
            "traffic": self.traffic(),
        }

    def flush(self) -> None:
        """Forget the cached answer, as ``ipconfig /flushdns`` would."""
        with self._lock:
            self._cache = None

    def resolve(self) -> Resolution:
        """The cached answer while its TTL lasts, else a fresh priority routing decision."""
        now = self.clock()
        with self._lock:
            if self._cache is not None and now < self._cache.expires_at:
                return self._cache
        profile = trafficmanager.find_profile(self.state, self.section.profile)
        if profile is None:
            raise LookupError("the front door's Traffic Manager profile no longer exists")
        # Limitation: every profile is resolved by priority, whatever its routing method says.
        choice = trafficmanager.choose_endpoint(self.state, profile)
        resolution = Resolution(
            profile=profile.name,
            endpoint=choice.endpoint,
            region=choice.region,
            target=choice.target,
            reason=choice.reason,
            ttl=profile.ttl,
            resolved_at=now,
            expires_at=now + profile.ttl,
        )
        with self._lock:
            previous, self._cache = self._cache, resolution
        if previous is None or previous.region != resolution.region:
            log.info(
                "front door resolves %s to %s (%s): %s",
                profile.name,
                resolution.endpoint,
                resolution.region,
                resolution.reason,
            )
        return resolution

    # -- HTTP --------------------------------------------------------------------------------

    def traffic(self) -> dict[str, Any]:
        """Requests sent to each region so far, and when the last one was (UTC)."""
        with self._lock:
            return {region: dict(seen) for region, seen in self._traffic.items()}

    def _count(self, region: str) -> None:
        with self._lock:
            seen = self._traffic.setdefault(region, {"requests": 0, "lastRequestAt": None})
            seen["requests"] += 1
            seen["lastRequestAt"] = utc_now_iso()

    def handle(self, req: RawRequest) -> ArmResponse:
        if req.path == "/_frontdoor/traffic":
            return ArmResponse(200, {"regions": self.traffic()})
        if req.path == "/_frontdoor/resolution":
            if req.method == "DELETE":
                self.flush()
                return ArmResponse(200, {"flushed": True})
            return ArmResponse(200, self.resolve().public(self.clock()))
        try:
            resolution = self.resolve()
        except LookupError as exc:
            return ArmResponse(503, {"error": str(exc)})
        headers = {
            REGION_HEADER: resolution.region or "",
            ENDPOINT_HEADER: resolution.endpoint or "",
        }
        if resolution.region is None:
            return ArmResponse(503, {"error": resolution.reason}, headers)
        standins = odoo_standin.provider(self.state)
        standin = standins.standin(resolution.region) if standins else None
        if standin is None:
            return ArmResponse(
                502, {"error": f"no application answers in region {resolution.region}"}, headers
            )
        self._count(resolution.region)
        return self._proxy(req, standin.url, headers)

    def _proxy(self, req: RawRequest, upstream: str, headers: dict[str, str]) -> ArmResponse:
        query = "&".join(f"{k}={v}" for k, v in req.query.items())
        url = upstream + req.path + (f"?{query}" if query else "")
        forwarded = {k: v for k, v in req.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            # A fresh connection each time: a pooled one would outlive the resolution.
            answer = requests.request(
                req.method,
                url,
                data=req.body or None,
                headers=forwarded,
                timeout=PROXY_TIMEOUT_S,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            log.info("front door: %s did not answer: %s", upstream, exc)
            return ArmResponse(
                502,
                {"error": f"the application in {headers[REGION_HEADER]} did not answer"},
                headers,
            )
        passed = {
            k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS | {"server"}
        }
        passed.pop("Date", None)
        return ArmResponse(answer.status_code, answer.content, {**passed, **headers})


def provider(state: Any) -> FrontDoorProvider | None:
    return state.provider_state(NAME).get("provider")


def create_provider(env: ProviderEnv) -> FrontDoorProvider:
    return FrontDoorProvider(env)
