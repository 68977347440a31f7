"""The plan executor: runs a plan as a graph, gates and operator decisions included.

Each step starts as soon as its own dependencies end (never in waves): the generator waits with
``task_any`` over everything in flight and, after each completion, asks ``PlanRun`` which steps
became ready. ``PlanRun`` is the whole decision logic and is plain, deterministic Python, so it is
tested without a host; the generator only turns its answers into durable tasks.

How a gate is decided (the caller chooses, in ``PlanRunRequest``):
- by event: the executor waits for the external event ``gate:<name>`` on its own instance, with
  a ``GateOutcome`` payload (``{"decision": "approved"|"rejected"|"expired", "reason",
  "approvers"}``); the step's ``timeout_s`` bounds the wait and ends it as ``expired``;
- by sub-orchestrator: with ``gate_orchestrator`` set, the executor calls that orchestration
  with a ``GateRequest`` under the instance id ``<plan instance>:gate:<name>:<run>`` and takes
  its result as the ``GateOutcome`` (reminders, escalation and expiry are the child's job).

A step that fails after its retries parks the run: nothing new starts after a failed destructive
step, and after any other failure only steps that do not depend on it go on. An operator answers
with the event ``operator-action`` (``{"action": "retry"|"skip"|"abort", "step", "reason",
"actor"}``). Abort, a rejected or expired gate, or no operator answer within
``operator_timeout_s`` stop the run: running steps are let finish, then the compensations of
completed steps run in reverse order of completion.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from shared.plans import (
    OPERATOR_EVENT,
    CompensationRecord,
    GateOutcome,
    GateRequest,
    OperatorAction,
    Plan,
    PlanResult,
    PlanRunRequest,
    PlanStep,
    StepRecord,
    blocked_by,
    decide_runtime_condition,
    gate_event_name,
    ready_steps,
    step_references_resolved,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

_ERROR_LIMIT = 600


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def decode_payload(value: Any) -> Any:
    """An event payload as a value: the Python client delivers JSON text, curl a decoded value."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def step_input(plan: Plan, step_id: str, inputs: dict[str, Any], instance_id: str) -> dict:
    """What an activity receives: the incident and step it runs for, then the step's inputs."""
    return {"incident_id": plan.incident_id or instance_id, "step_id": step_id, **inputs}


@dataclass
class StepStart:
    """A step the generator must start now, with its inputs resolved."""

    step: PlanStep
    inputs: dict[str, Any]
    run: int


@dataclass
class CompensationItem:
    """One compensation to run, with its activity input built."""

    step_id: str
    action: str
    activity: str
    input: dict[str, Any] | None
    error: str | None
    retry: Any


class PlanRun:
    """The executor's state and decisions, free of durable tasks (replays rebuild it exactly)."""

    def __init__(self, request: PlanRunRequest, instance_id: str, now: datetime):
        self.request = request
        self.plan = request.plan
        self.instance_id = instance_id
        self.started_at = _stamp(now)
        self.records: dict[str, StepRecord] = {s.id: StepRecord() for s in self.plan.steps}
        self.results: dict[str, Any] = {}
        self.completion_order: list[str] = []
        self.gates: dict[str, GateOutcome] = {}
        self.decisions: list[str] = list(self.plan.decisions)
        self.operator_log: list[dict[str, Any]] = []
        self.compensations: list[CompensationRecord] = []
        self.stop: tuple[str, str] | None = None
        self.compensating = False

    # --- what is where -----------------------------------------------------------------------

    def ids(self, *statuses: str) -> list[str]:
        return [s.id for s in self.plan.steps if self.records[s.id].status in statuses]

    @property
    def parked(self) -> list[str]:
        """Failed steps waiting for an operator."""
        return [] if self.stop else self.ids("failed")

    @property
    def destructive_failed(self) -> bool:
        return any(self.plan.step(sid).destructive for sid in self.ids("failed"))

    # --- starting steps ------------------------------------------------------------------------

    def starts(self, now: datetime) -> list[StepStart]:
        """Mark and return the steps that start now; skipped steps are settled on the way."""
        out: list[StepStart] = []
        progressed = True
        while progressed and not self.stop and not self.destructive_failed:
            progressed = False
            blocked = blocked_by(self.plan, self.ids("failed"))
            finished = self.ids("succeeded", "skipped")
            started = self.ids("running", "failed")
            for sid in ready_steps(self.plan, finished, started):
                if sid in blocked:
                    continue
                step, record = self.plan.step(sid), self.records[sid]
                if step.skipped:
                    self._settle(sid, "skipped", now, reason=step.skip_reason)
                    progressed = True
                    continue
                if step.runtime_condition:
                    holds, why = decide_runtime_condition(step, self.results)
                    if holds is None and step.kind == "gate":
                        holds, why = True, f"{why}; the gate stays"
                    if holds is None:
                        record.runs += 1
                        self.failed(sid, why, now)
                        progressed = True
                        break
                    self.decisions.append(f"step '{sid}' {'kept' if holds else 'skipped'}: {why}")
                    if not holds:
                        self._settle(sid, "skipped", now, reason=f"skipped because {why}")
                        progressed = True
                        continue
                try:
                    inputs = step_references_resolved(step.inputs, self.results)
                except KeyError as exc:
                    record.runs += 1
                    self.failed(sid, f"input reference {exc.args[0]} is not in any result", now)
                    progressed = True
                    break
                record.status, record.started_at, record.ended_at = "running", _stamp(now), None
                record.error = None
                record.runs += 1
                out.append(StepStart(step=step, inputs=inputs, run=record.runs))
        return out

    def _settle(self, sid: str, status: str, now: datetime, **fields) -> None:
        record = self.records[sid]
        record.status = status
        record.ended_at = _stamp(now)
        if record.started_at is None:
            record.started_at = record.ended_at
        for key, value in fields.items():
            setattr(record, key, value)

    # --- what came back ---------------------------------------------------------------------

    def succeeded(self, sid: str, result: Any, now: datetime) -> None:
        self._settle(sid, "succeeded", now, result=result)
        self.results[sid] = result if result is not None else {}
        self.completion_order.append(sid)

    def failed(self, sid: str, error: str, now: datetime) -> None:
        error = error.strip()[:_ERROR_LIMIT]
        self._settle(sid, "failed", now, error=error)
        step = self.plan.step(sid)
        what = "destructive step" if step.destructive else "step"
        then = (
            "nothing else starts until an operator decides"
            if step.destructive
            else "steps that depend on it wait for an operator"
        )
        self.decisions.append(f"{what} '{sid}' failed: {error}; {then}")

    def gate_decided(self, sid: str, outcome: GateOutcome, now: datetime) -> None:
        gate = self.plan.step(sid).gate
        self.gates[gate] = outcome
        who = f" by {', '.join(outcome.approvers)}" if outcome.approvers else ""
        sentence = f"gate '{gate}' {outcome.decision}{who}" + (
            f": {outcome.reason}" if outcome.reason else ""
        )
        self.decisions.append(sentence)
        if outcome.decision == "approved":
            self.succeeded(sid, outcome.model_dump(mode="json"), now)
            return
        self._settle(sid, "failed", now, error=sentence)
        self.stop_run(outcome.decision, sentence)

    def abandon(self, sid: str, now: datetime) -> None:
        """A gate still open when the run stops is left undecided."""
        self._settle(sid, "skipped", now, reason="the run stopped before this gate was decided")

    def stop_run(self, outcome: str, reason: str) -> None:
        if self.stop is None:
            self.stop = (outcome, reason)

    # --- operators -----------------------------------------------------------------------------

    def operator(self, payload: Any, now: datetime) -> str:
        """Apply an operator action; returns the sentence recorded for it."""
        try:
            action = OperatorAction.model_validate(decode_payload(payload))
        except ValueError as exc:
            sentence = f"operator action refused: cannot read it ({_first_line(exc)})"
            self.operator_log.append({"at": _stamp(now), "accepted": False, "reason": sentence})
            return sentence
        sentence, accepted = self._apply(action, now)
        entry = {"at": _stamp(now), "accepted": accepted, "reason": sentence}
        self.operator_log.append({**action.model_dump(), **entry})
        self.decisions.append(sentence)
        return sentence

    def _apply(self, action: OperatorAction, now: datetime) -> tuple[str, bool]:
        who = f"{action.actor} ({action.reason})"
        if self.stop is not None:
            return f"operator {action.action} by {who} refused: the run is already stopping", False
        if action.action == "abort":
            self.stop_run("aborted", f"aborted by operator {who}")
            return f"operator abort by {who}: compensations run after running steps end", True
        if action.step not in self.parked:
            parked = ", ".join(self.parked) or "none"
            return (
                f"operator {action.action} by {who} refused: step '{action.step}' is not parked "
                f"(parked: {parked})",
                False,
            )
        step = self.plan.step(action.step)
        if action.action == "skip" and (step.destructive or step.kind == "gate"):
            what = "a destructive step" if step.destructive else "a gate"
            return f"operator skip by {who} refused: '{step.id}' is {what}; retry or abort", False
        record = self.records[step.id]
        if action.action == "retry":
            record.status = "pending"
            return f"operator retry of '{step.id}' by {who}", True
        record.status, record.reason = "skipped", f"skipped by operator {who}"
        return f"operator skip of '{step.id}' by {who}", True

    def operator_timed_out(self, now: datetime) -> None:
        waited = self.request.operator_timeout_s
        failed = "; ".join(f"'{sid}': {self.records[sid].error}" for sid in self.parked)
        self.stop_run(
            "needs-operator",
            f"no operator action within {waited:g} s for failed step(s) {failed}",
        )

    # --- ending ----------------------------------------------------------------------------

    def finished(self, in_flight: int) -> bool:
        """Nothing runs and nothing more can start: the generator leaves its loop."""
        if in_flight:
            return False
        if self.stop is not None:
            return True
        return not self.parked

    def compensation_plan(self) -> list[CompensationItem]:
        """The compensations of completed steps, last completed first (where declared)."""
        if self.stop is None:
            return []
        items = []
        for sid in reversed(self.completion_order):
            step = self.plan.step(sid)
            if self.records[sid].status != "succeeded" or step.compensation is None:
                continue
            comp = step.compensation
            try:
                inputs = step_references_resolved(comp.inputs, self.results)
                built, error = step_input(self.plan, f"{sid}:undo", inputs, self.instance_id), None
            except KeyError as exc:
                built, error = None, f"input reference {exc.args[0]} is not in any result"
            items.append(
                CompensationItem(sid, comp.action, comp.activity, built, error, step.retry)
            )
        return items

    def compensated(self, item: CompensationItem, started: datetime, now: datetime, **fields):
        ok = fields.get("error") is None
        self.compensations.append(
            CompensationRecord(
                step=item.step_id,
                action=item.action,
                ok=ok,
                started_at=_stamp(started),
                ended_at=_stamp(now),
                **fields,
            )
        )
        verdict = "undone" if ok else f"could not be undone: {fields.get('error')}"
        self.decisions.append(f"step '{item.step_id}' {verdict} ({item.action})")

    def result(self, now: datetime) -> PlanResult:
        if self.stop is not None:
            outcome, reason = self.stop
        else:
            skipped = [
                s
                for s in self.ids("skipped")
                if self.records[s].reason and "operator" in self.records[s].reason
            ]
            outcome = "completed"
            reason = "every step finished" + (
                f"; skipped by an operator: {', '.join(skipped)}" if skipped else ""
            )
        undone = [c for c in self.compensations if not c.ok]
        if undone:
            reason += "; compensations that failed: " + ", ".join(c.step for c in undone)
        return PlanResult(
            outcome=outcome,
            reason=reason,
            path=self.plan.path,
            incident_id=self.plan.incident_id,
            steps=self.records,
            gates=self.gates,
            compensations=self.compensations,
            operator_actions=self.operator_log,
            decisions=self.decisions,
            started_at=self.started_at,
            ended_at=_stamp(now),
        )

    def status(self, now: datetime, waiting_gates: list[str]) -> dict[str, Any]:
        """The custom status: where the run stands, readable by the incident and a person."""
        if self.compensating:
            phase = "compensating"
        elif self.stop is not None:
            phase = "stopping"
        elif self.parked:
            phase = "needs-operator"
        elif waiting_gates:
            phase = "awaiting-approval"
        else:
            phase = "running"
        return {
            "phase": phase,
            "path": self.plan.path,
            "running": self.ids("running"),
            "finished": self.ids("succeeded", "skipped"),
            "failed": [{"step": s, "error": self.records[s].error} for s in self.ids("failed")],
            "waiting_gates": waiting_gates,
            "stop": self.stop[1] if self.stop else None,
            "updated_at": _stamp(now),
        }


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _retry_options(step: PlanStep) -> df.RetryOptions:
    return df.RetryOptions(
        first_retry_interval_in_milliseconds=max(1, int(step.retry.first_interval_s * 1000)),
        max_number_of_attempts=step.retry.max_attempts,
    )


def _gate_request(run: PlanRun, step: PlanStep) -> dict[str, Any]:
    gate = run.plan.gates[step.gate]
    return GateRequest(
        incident_id=run.plan.incident_id,
        plan_instance_id=run.instance_id,
        gate=step.gate,
        step_id=step.id,
        approvers=gate.approvers,
        min_approvers=gate.min_approvers,
        explain=gate.explain,
        reason=gate.reason,
        path=run.plan.path,
        estimated_rto_s=run.plan.estimated_rto_s,
        prestaged=run.plan.prestaged,
    ).model_dump(mode="json")


@bp.orchestration_trigger(context_name="context", orchestration="plan_executor")
def plan_executor(context: df.DurableOrchestrationContext):
    """Run a plan (``PlanRunRequest`` as plain JSON) and return a ``PlanResult``."""
    request = PlanRunRequest.model_validate(decode_payload(context.get_input()))
    run = PlanRun(request, context.instance_id, context.current_utc_datetime)
    tasks: dict[str, Any] = {}
    deadlines: dict[str, Any] = {}
    # One wait for operator actions stays open for the whole run and is reopened as soon as it
    # completes: an event that arrives while no wait is open would be handed by the SDK to every
    # later wait of that name, over and over.
    operator_wait = context.wait_for_external_event(OPERATOR_EVENT)
    operator_timer = None

    while True:
        now = context.current_utc_datetime
        for start in run.starts(now):
            tasks[start.step.id], deadline = _start(context, run, start)
            if deadline is not None:
                deadlines[start.step.id] = deadline
            if not context.is_replaying:
                log.info(
                    "plan %s: step %s started (run %s)",
                    context.instance_id,
                    start.step.id,
                    start.run,
                )

        if run.stop is not None:
            # Limitation: an abandoned gate's sub-orchestrator keeps waiting; the executor cannot
            # terminate it, so the caller terminates the '<plan>:gate:*' instances it started.
            for sid in [s for s in tasks if run.plan.step(s).kind == "gate"]:
                tasks.pop(sid)
                _cancel(deadlines.pop(sid, None))
                run.abandon(sid, now)
        if run.parked and operator_timer is None and run.stop is None:
            if request.operator_timeout_s == 0:
                run.operator_timed_out(now)
            else:
                fire_at = now + timedelta(seconds=request.operator_timeout_s)
                operator_timer = context.create_timer(fire_at)
        if operator_timer is not None and (not run.parked or run.stop is not None):
            _cancel(operator_timer)
            operator_timer = None

        waiting_gates = [run.plan.step(s).gate for s in tasks if run.plan.step(s).kind == "gate"]
        context.set_custom_status(run.status(now, waiting_gates))
        if run.finished(len(tasks)):
            break

        pending = [*tasks.values(), *deadlines.values(), operator_wait]
        if operator_timer is not None:
            pending.append(operator_timer)
        winner = yield context.task_any(pending)
        now = context.current_utc_datetime

        if winner is operator_wait:
            operator_wait = context.wait_for_external_event(OPERATOR_EVENT)
            sentence = run.operator(winner.result, now)
            if not context.is_replaying:
                log.info("plan %s: %s", context.instance_id, sentence)
            continue
        if winner is operator_timer:
            operator_timer = None
            run.operator_timed_out(now)
            continue
        _settle_winner(context, run, winner, tasks, deadlines, now)

    now = context.current_utc_datetime
    items = run.compensation_plan()
    if items:
        run.compensating = True
        context.set_custom_status(run.status(now, []))
    for item in items:
        started = context.current_utc_datetime
        if item.input is None:
            run.compensated(item, started, started, error=item.error)
            continue
        try:
            options = df.RetryOptions(
                max(1, int(item.retry.first_interval_s * 1000)), item.retry.max_attempts
            )
            result = yield context.call_activity_with_retry(item.activity, options, item.input)
            run.compensated(item, started, context.current_utc_datetime, result=result)
        except Exception as exc:  # a failed activity arrives as a plain Exception
            run.compensated(item, started, context.current_utc_datetime, error=_first_line(exc))
    run.compensating = False

    result = run.result(context.current_utc_datetime)
    context.set_custom_status(run.status(context.current_utc_datetime, []))
    if not context.is_replaying:
        log.info("plan %s ended %s: %s", context.instance_id, result.outcome, result.reason)
    return result.model_dump(mode="json")


def _start(context, run: PlanRun, start: StepStart):
    """The durable task for a step, and the timer that bounds it (None when the child bounds it)."""
    step = start.step
    deadline_at = context.current_utc_datetime + timedelta(seconds=step.timeout_s)
    if step.kind == "gate":
        if run.request.gate_orchestrator:
            child_id = f"{context.instance_id}:gate:{step.gate}:{start.run}"
            task = context.call_sub_orchestrator(
                run.request.gate_orchestrator, _gate_request(run, step), child_id
            )
            return task, None
        return context.wait_for_external_event(gate_event_name(step.gate)), context.create_timer(
            deadline_at
        )
    payload = step_input(run.plan, step.id, start.inputs, context.instance_id)
    task = context.call_activity_with_retry(step.activity, _retry_options(step), payload)
    return task, context.create_timer(deadline_at)


def _settle_winner(context, run: PlanRun, winner, tasks, deadlines, now) -> None:
    """Record the step whose task or deadline just completed."""
    for sid, timer in list(deadlines.items()):
        if winner is timer:
            deadlines.pop(sid)
            tasks.pop(sid, None)
            step = run.plan.step(sid)
            if step.kind == "gate":
                reason = f"no decision within {step.timeout_s:g} s"
                run.gate_decided(sid, GateOutcome(decision="expired", reason=reason), now)
            else:
                # Limitation: a durable activity cannot be cancelled; its late result is ignored,
                # so activities must bound their own external calls.
                run.failed(sid, f"did not finish within {step.timeout_s:g} s", now)
            return
    for sid, task in list(tasks.items()):
        if winner is not task:
            continue
        tasks.pop(sid)
        _cancel(deadlines.pop(sid, None))
        step = run.plan.step(sid)
        value = winner.result
        if step.kind == "gate":
            _gate_from(run, sid, value, now)
        elif isinstance(value, Exception):
            run.failed(sid, _first_line(value), now)
        else:
            run.succeeded(sid, value, now)
        if not context.is_replaying:
            log.info("plan %s: step %s %s", context.instance_id, sid, run.records[sid].status)
        return


def _gate_from(run: PlanRun, sid: str, value: Any, now) -> None:
    if isinstance(value, Exception):
        run.failed(sid, f"the gate could not be decided: {_first_line(value)}", now)
        return
    try:
        outcome = GateOutcome.model_validate(decode_payload(value))
    except ValueError as exc:
        # A decision nobody can read is not an approval.
        outcome = GateOutcome(
            decision="rejected", reason=f"unreadable decision: {_first_line(exc)}"
        )
    run.gate_decided(sid, outcome, now)


def _cancel(timer) -> None:
    if timer is not None and not timer.is_completed:
        timer.cancel()
