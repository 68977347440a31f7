"""Incidents over HTTP: declare one by hand, list them, read one, its report, operator actions."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import AzureError
from pydantic import BaseModel, Field, field_validator

from shared import runtime
from shared.audit import AuditError
from shared.classification import PATH_FAMILY
from shared.config import ConfigError
from shared.incident import compose_phase, plan_instance_id
from shared.models import Phase, Role, RunbookPath
from shared.plans import OPERATOR_EVENT
from shared.signals import SignalError, declaration_signal
from shared.stores import StoreError
from triggers._http import (
    Refusal,
    answer,
    caller_and_body,
    error,
    in_thread,
)
from triggers.intake import (
    fold_and_record,
    intake_answer,
    start_or_ring,
    storage_unavailable,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()


TIME_FORMATS = "an ISO 8601 date and time with its offset, e.g. 2026-12-04T09:00:00Z"


class Declaration(BaseModel):
    environment: str = Field(min_length=1, max_length=100)
    path: RunbookPath | None = Field(default=None, description="the path the operator suspects")
    reason: str = Field(min_length=1, max_length=2000)
    suspected_since: str | None = Field(
        default=None,
        max_length=100,
        description="when the damage is thought to have started; kept in UTC",
    )

    @field_validator("suspected_since")
    @classmethod
    def _a_time(cls, value: str | None) -> str | None:
        """The time in UTC, or ValueError: the recovery point search starts from it."""
        if value is None:
            return None
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time; give {TIME_FORMATS}") from None
        if when.tzinfo is None:
            raise ValueError(f"{value!r} has no offset from UTC; give {TIME_FORMATS}")
        try:
            return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
        except OverflowError:
            raise ValueError(f"{value!r} is out of range in UTC") from None


class OperatorRequest(BaseModel):
    action: str = Field(pattern="^(retry|skip|abort)$")
    step: str | None = Field(default=None, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)


@bp.route(route="incidents", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def declare_incident(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """An operator declares an incident (role DR.Operator); the token's subject declares it."""
    try:
        principal, declaration = await caller_and_body(req, Declaration, Role.OPERATOR.value)
    except Refusal as refused:
        return refused.response
    try:
        runtime.config().environment(declaration.environment)
    except ConfigError as exc:
        log.error("configuration cannot be loaded: %s", exc)
        return error(503, f"the configuration cannot be loaded: {exc}")
    except KeyError:
        return error(404, f"environment {declaration.environment!r} is not in the configuration")

    try:
        signal = declaration_signal(
            environment=declaration.environment,
            declared_by=principal.name,
            reason=declaration.reason,
            request_id=uuid.uuid4().hex,
            suspected_path=declaration.path.value if declaration.path else None,
        )
    except SignalError as exc:
        return error(400, f"the declaration cannot be recorded: {exc}")
    if declaration.suspected_since:
        signal.facts["suspected_since"] = declaration.suspected_since
    family = PATH_FAMILY[declaration.path] if declaration.path else None
    try:
        intake = await in_thread(fold_and_record, signal, None, principal.subject, family)
    except (StoreError, AuditError, AzureError) as exc:
        return storage_unavailable(signal, exc)
    await start_or_ring(
        client,
        signal,
        intake,
        declared_by=principal.subject,
        declared_by_name=principal.name,
        suspected_path=declaration.path.value if declaration.path else None,
        reason=declaration.reason,
    )
    return answer(202, intake_answer(intake, client))


async def _statuses(client: df.DurableOrchestrationClient, incident_id: str):
    incident = await client.get_status(incident_id)
    plan = await client.get_status(plan_instance_id(incident_id))
    return (
        (incident.custom_status if incident else None) or {},
        (plan.custom_status if plan else None) or None,
        incident,
    )


def _gates_view(incident_id: str) -> list[dict[str, Any]]:
    return [
        {
            "gate": g.policy.gate,
            "state": g.state,
            "outcome": g.outcome,
            "opened_at": g.policy.opened_at,
            "closed_at": g.closed_at,
            "roles": g.policy.roles,
            "required_approvals": g.policy.required_approvals,
            "instance_id": g.policy.instance_id,
        }
        for g in runtime.stores().gates.all(incident_id)
    ]


def incident_view(summary, incident: dict, plan: dict | None, runtime_status: str | None) -> dict:
    phase, open_gates = compose_phase(incident, plan)
    if not incident:
        phase = summary.phase.value
    stores = runtime.stores()
    approvals = stores.stores.approvals.list(summary.incident_id)
    return {
        "incidentId": summary.incident_id,
        "environment": summary.environment,
        "correlationKey": summary.correlation_key,
        "generation": summary.generation,
        "phase": phase,
        "path": incident.get("path") or (summary.path.value if summary.path else None),
        "classification": {
            "path": incident.get("path"),
            "confidence": incident.get("confidence"),
            "disaster": incident.get("disaster"),
            "reasons": incident.get("reasons", []),
        },
        "openGates": open_gates,
        # The stored counts, not the orchestration's last reading (it re-reads its signals
        # only when they change what it would decide, so its figure lags behind a storm).
        "signals": stores.signal_log.counts(summary.incident_id).model_dump(),
        "declaredBy": summary.declared_by,
        "startedAt": summary.started_at,
        "endedAt": summary.ended_at,
        "outcome": summary.outcome,
        "runtimeStatus": runtime_status,
        "plan": plan,
        "gates": _gates_view(summary.incident_id),
        "approvals": [
            {
                "gate": a.gate.value,
                "decision": a.decision.value,
                "approver": a.approver.name,
                "comment": a.comment,
                "decidedAt": a.decided_at,
                "via": a.via,
            }
            for a in approvals
        ],
        "evidence": [
            e.model_dump(mode="json") for e in stores.stores.evidence.list(summary.incident_id)
        ],
        "timeline": incident.get("timeline", []),
    }


@bp.route(route="incidents", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def list_incidents(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """Every incident, newest first, with its phase, path and open gates."""
    environment = req.params.get("environment")
    open_only = (req.params.get("open") or "").lower() in ("1", "true", "yes")
    summaries = await in_thread(runtime.stores().stores.incidents.list, environment, open_only)
    out = []
    for summary in summaries[:200]:
        phase, gates, path = summary.phase.value, [], summary.path.value if summary.path else None
        if summary.ended_at is None:
            incident, plan, _ = await _statuses(client, summary.incident_id)
            if incident:
                phase, gates = compose_phase(incident, plan)
                path = incident.get("path") or path
        out.append(
            {
                "incidentId": summary.incident_id,
                "environment": summary.environment,
                "phase": phase,
                "path": path,
                "openGates": gates,
                "startedAt": summary.started_at,
                "endedAt": summary.ended_at,
                "outcome": summary.outcome,
            }
        )
    return answer(200, {"incidents": out})


@bp.route(route="incidents/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def get_incident(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """One incident: phase, classification, evidence, plan, steps, approvals, timeline."""
    incident_id = req.route_params.get("id", "")
    summary = await in_thread(runtime.stores().stores.incidents.get, incident_id)
    if summary is None:
        return error(404, f"no incident {incident_id!r}")
    incident, plan, status = await _statuses(client, incident_id)
    runtime_status = getattr(getattr(status, "runtime_status", None), "value", None)
    view = await in_thread(incident_view, summary, incident, plan, runtime_status)
    return answer(200, view)


@bp.route(route="incidents/{id}/report", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def get_report(req: func.HttpRequest) -> func.HttpResponse:
    """The incident report as JSON, Markdown or HTML (``?format=json|md|html``)."""
    from shared.report import REPORT_FORMATS, load_report

    incident_id = req.route_params.get("id", "")
    fmt = (req.params.get("format") or "json").lower()
    if fmt not in REPORT_FORMATS:
        return error(400, f"format must be one of {', '.join(REPORT_FORMATS)}, not {fmt!r}")
    summary = await in_thread(runtime.stores().stores.incidents.get, incident_id)
    if summary is None:
        return error(404, f"no incident {incident_id!r}")
    body = await in_thread(load_report, incident_id, fmt)
    if body is None:
        return error(404, f"incident {incident_id} has no report yet: it is written when it ends")
    mimetype = {"json": "application/json", "md": "text/markdown", "html": "text/html"}[fmt]
    return func.HttpResponse(body, status_code=200, mimetype=mimetype, charset="utf-8")


@bp.route(route="incidents/{id}/actions", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def operator_action(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """Retry, skip or abort a parked step of an incident in needs-operator (role DR.Operator)."""
    try:
        principal, action = await caller_and_body(req, OperatorRequest, Role.OPERATOR.value)
    except Refusal as refused:
        return refused.response
    incident_id = req.route_params.get("id", "")
    summary = await in_thread(runtime.stores().stores.incidents.get, incident_id)
    if summary is None:
        return error(404, f"no incident {incident_id!r}")
    incident, plan, _ = await _statuses(client, incident_id)
    phase, _ = compose_phase(incident, plan)
    if phase != Phase.NEEDS_OPERATOR.value:
        return error(409, f"incident {incident_id} is {phase}, not needs-operator")
    if action.action != "abort" and not action.step:
        return error(400, f"{action.action} needs the step it applies to")
    parked = [f["step"] for f in (plan or {}).get("failed", [])]
    if action.action != "abort" and action.step not in parked:
        return error(
            409,
            f"step {action.step!r} is not parked; parked: {', '.join(parked) or 'none'}",
        )
    payload = {**action.model_dump(), "actor": principal.name}
    await in_thread(
        runtime.audit().append,
        incident_id,
        f"operator.{action.action}",
        actor=principal.name,
        reason=action.reason,
        detail={"step": action.step},
    )
    await client.raise_event(plan_instance_id(incident_id), OPERATOR_EVENT, payload)
    log.info(
        "incident '%s': operator %s %s by %s",
        incident_id,
        action.action,
        action.step,
        principal.name,
    )
    return answer(202, {"incidentId": incident_id, "accepted": True, **payload})
