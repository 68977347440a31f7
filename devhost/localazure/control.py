"""The /_local control API core: faults, region failure and restore, and a dump of the state.

Tests and the demo drive local Azure through it; it is served on the ARM endpoint and needs the
same bearer token. Providers add their own control routes under ``/_local/<provider>/``.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from devhost.localazure.arm import (
    ArmContext,
    ArmError,
    ArmRequest,
    ArmResponse,
    Fault,
    ProviderEnv,
    Route,
)

log = logging.getLogger(__name__)


class ControlProvider:
    """The provider-independent part of the control API."""

    name = "control"

    def __init__(self, env: ProviderEnv):
        self.env = env

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/_local/faults", self.add_fault, "local/faults/write"),
            Route("GET", "/_local/faults", self.list_faults, "local/faults/read"),
            Route("DELETE", "/_local/faults", self.clear_faults, "local/faults/delete"),
            Route("POST", "/_local/regions/{region}/fail", self.fail_region, "local/regions/fail"),
            Route(
                "POST", "/_local/regions/{region}/restore", self.restore_region, "local/regions/up"
            ),
            Route("GET", "/_local/regions", self.list_regions, "local/regions/read"),
            Route("GET", "/_local/state", self.dump_state, "local/state/read"),
        ]

    def add_fault(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        if not isinstance(req.body, dict):
            raise ArmError(400, "InvalidRequestContent", "a fault is a JSON object")
        try:
            fault = Fault.model_validate(
                {k: v for k, v in req.body.items() if k not in ("id", "fired")}
            )
        except ValidationError as exc:
            raise ArmError(400, "InvalidRequestContent", f"invalid fault: {exc}") from exc
        ctx.state.faults.add(fault)
        return ArmResponse(201, fault.model_dump())

    def list_faults(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return ArmResponse(200, {"value": [f.model_dump() for f in ctx.state.faults.list()]})

    def clear_faults(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        ctx.state.faults.clear()
        log.info("all faults cleared")
        return ArmResponse(200, {"value": []})

    def fail_region(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        region = req.params["region"]
        ctx.state.fail_region(region)
        return ArmResponse(200, {"region": region.lower(), "failed": True})

    def restore_region(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        region = req.params["region"]
        ctx.state.restore_region(region)
        return ArmResponse(200, {"region": region.lower(), "failed": False})

    def list_regions(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return ArmResponse(200, {"failed": sorted(ctx.state.failed_regions)})

    def dump_state(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return ArmResponse(200, ctx.state.dump())


def create_provider(env: ProviderEnv) -> ControlProvider:
    return ControlProvider(env)
