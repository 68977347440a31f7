"""The incident lifecycle: declare, assess, classify, plan, run the plan, close.

Reads top-down as the runbook reads to a person. The plan (prestaged steps, the recovery gate,
the recovery actions, validation, the sign-off gate) runs as the ``plan_executor``
sub-orchestration, each gate as a ``gate_approval`` sub-orchestration of its own. While the
plan runs, new signals ring this instance's doorbell and the folded counts are refreshed; the
recovery gate itself stands the incident down when every firing signal has resolved.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.durable_functions as df

from shared.folding import doorbell_event
from shared.incident import (
    Assessment,
    IncidentStart,
    IncidentStatus,
    TimelineEntry,
    plan_instance_id,
)
from shared.models import Phase, RunbookPath
from shared.plans import PlanRunRequest

log = logging.getLogger(__name__)

bp = df.Blueprint()

# Storage and audit calls: a few quick retries ride out a hiccup of Table or Blob storage.
STORE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=5)
# The database probe has short connect timeouts of its own; one retry covers a flaky answer.
PROBE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=3000, max_number_of_attempts=2)
STAND_DOWN_PREFIX = "every firing signal resolved"
OPERATOR_TIMEOUT_S = 4 * 3600


def _payload(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class _Run:
    """The incident's status as it changes, published as the orchestration's custom status."""

    def __init__(self, context: df.DurableOrchestrationContext, start: IncidentStart):
        self.context = context
        self.start = start
        self.status = IncidentStatus(
            incident_id=start.incident_id,
            environment=start.environment,
            phase=Phase.DECLARED,
            declared_by=start.declared_by_name or start.declared_by,
            declared_at=start.declared_at,
            updated_at=context.current_utc_datetime,
        )

    def phase(self, phase: Phase, what: str) -> None:
        now = self.context.current_utc_datetime
        self.status.phase = phase
        self.status.updated_at = now
        self.status.timeline.append(TimelineEntry(at=now, what=what))
        self.publish()

    def publish(self) -> None:
        self.context.set_custom_status(self.status.model_dump(mode="json"))

    def record(self, action: str, reason: str, *, end: bool = False, **detail):
        """The activity call that audits a decision, updates the index and tells the audiences."""
        status = self.status
        return self.context.call_activity_with_retry(
            "incident_record",
            STORE_RETRY,
            {
                "incident_id": status.incident_id,
                "action": action,
                "reason": reason,
                "phase": status.phase.value,
                "path": status.path,
                "end": end,
                "outcome": status.outcome,
                "detail": {"path": status.path, **detail},
            },
        )


@bp.orchestration_trigger(context_name="context", orchestration="incident")
def incident(context: df.DurableOrchestrationContext):
    """Run one incident from declaration to its end (``IncidentStart`` in)."""
    start = IncidentStart.model_validate(_payload(context.get_input()))
    run = _Run(context, start)
    incident_id = start.incident_id

    # Declare.
    declared = start.reason or f"declared by {start.declared_by_name or start.declared_by}"
    run.phase(Phase.DECLARED, declared)
    yield run.record("incident.declared", declared, correlation_key=start.correlation_key)

    # Assess: the folded signals, the stored evidence, and probes of the database servers.
    run.phase(Phase.ASSESSING, "gathering evidence")
    raw = yield context.call_activity_with_retry(
        "incident_assess",
        PROBE_RETRY,
        {"incident_id": incident_id, "environment": start.environment},
    )
    assessment = Assessment.model_validate(raw)
    run.status.signals = assessment.counts

    # Classify: one runbook path, with the reasons a person can check (the assess activity
    # classified every folded signal; its history entry holds the result, not the signals).
    classification = assessment.classification
    if start.suspected_path and not classification.disaster:
        run.status.reasons.append(
            f"the declarer suspected {start.suspected_path}; the evidence does not show a disaster"
        )
    run.status.path = classification.path.value
    run.status.confidence = classification.confidence
    run.status.disaster = classification.disaster
    run.status.reasons = classification.reasons + run.status.reasons
    run.publish()
    yield run.record(
        "incident.classified",
        " ".join(classification.reasons),
        confidence=classification.confidence,
        disaster=classification.disaster,
        candidates=classification.candidates,
    )

    # Plan: the path's runbook against this environment and this evidence.
    planned = yield context.call_activity_with_retry(
        "incident_plan",
        STORE_RETRY,
        {
            "incident_id": incident_id,
            "environment": start.environment,
            "classification": classification.model_dump(mode="json"),
            "assessment": assessment.model_dump(mode="json"),
        },
    )
    if planned.get("error"):
        run.status.outcome = "needs-operator"
        run.phase(Phase.NEEDS_OPERATOR, f"no plan could be built: {planned['error']}")
        yield run.record("incident.plan_failed", planned["error"], end=True)
        return run.status.model_dump(mode="json")

    handled = classification.path == RunbookPath.HA_HANDLED
    run.status.plan_instance_id = plan_instance_id(incident_id)
    run.phase(
        Phase.HA_HANDLED if handled else Phase.RECOVERING,
        "handling without a disaster declaration" if handled else "plan started",
    )
    yield run.record(
        "incident.plan_started",
        f"runbook {classification.path.value}: {len(planned['plan']['steps'])} steps",
        plan=planned["plan"],
    )

    # Execute: prestaged steps at once, gates as people decide, each step on its critical path.
    request = PlanRunRequest.model_validate(
        {
            "plan": planned["plan"],
            "gate_orchestrator": "gate_approval",
            "operator_timeout_s": OPERATOR_TIMEOUT_S,
        }
    )
    plan_task = context.call_sub_orchestrator(
        "plan_executor", request.model_dump(mode="json"), plan_instance_id(incident_id)
    )
    bell = 1
    while True:
        ring = context.wait_for_external_event(doorbell_event(bell))
        winner = yield context.task_any([plan_task, ring])
        if winner is not ring:
            break
        bell += 1
        counts = yield context.call_activity_with_retry(
            "incident_counts", STORE_RETRY, {"incident_id": incident_id}
        )
        run.status.signals = counts["counts"]
        bell = max(bell, int(counts.get("rung", 0)) + 1)
        run.publish()

    # Close: the outcome decides the final phase.
    result = plan_task.result
    if isinstance(result, Exception) or not isinstance(_payload(result), dict):
        phase, outcome, reason = (
            Phase.NEEDS_OPERATOR,
            "needs-operator",
            f"the plan failed: {result}",
        )
    else:
        phase, outcome, reason = _final(_payload(result), handled)
    run.status.outcome = outcome
    run.phase(phase, reason)
    # The closing record goes first, so the report carries the head of the finished trail.
    yield run.record("incident.closed", reason, end=True)
    report = yield context.call_activity_with_retry(
        "incident_report",
        STORE_RETRY,
        {
            "incident_id": incident_id,
            "status": run.status.model_dump(mode="json"),
            "plan_result": _payload(result) if isinstance(_payload(result), dict) else None,
            "plan": planned["plan"],
        },
    )
    if not context.is_replaying:
        log.info("incident '%s' ended %s: %s", incident_id, phase.value, reason)
    return {**run.status.model_dump(mode="json"), "report": report}


def _final(result: dict[str, Any], handled: bool) -> tuple[Phase, str, str]:
    """The incident's final phase from the plan's result."""
    outcome, reason = result.get("outcome"), result.get("reason", "")
    recovery = (result.get("gates") or {}).get("recovery") or {}
    if outcome == "completed":
        if handled:
            return Phase.HA_HANDLED, "ha-handled", "handled without a disaster declaration"
        return Phase.RECOVERED, "recovered", "recovered and signed off by finance"
    if str(recovery.get("reason", "")).startswith(STAND_DOWN_PREFIX):
        return Phase.STOOD_DOWN, "stood-down", recovery["reason"]
    if outcome == "needs-operator":
        return Phase.NEEDS_OPERATOR, "needs-operator", reason
    return Phase.ABORTED, "aborted", reason
