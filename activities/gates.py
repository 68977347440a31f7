"""Gate activities: open a gate (policy, registry, first request), evaluate it, remind, close."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df

from shared import notify, runtime
from shared.classification import active_signals
from shared.gates import GatePolicyView, Verdict, evaluate, policy_for, with_declarers
from shared.plans import GateOutcome, GateRequest

log = logging.getLogger(__name__)

bp = df.Blueprint()


def _incident(incident_id: str):
    summary = runtime.stores().stores.incidents.get(incident_id)
    if summary is None:
        raise LookupError(f"incident {incident_id} is not in the incident index")
    return summary


def _message(policy: GatePolicyView, kind: str, group_index: int) -> dict[str, Any]:
    from shared.cards import approval_card_message

    group = policy.groups[min(group_index, len(policy.groups) - 1)]
    return approval_card_message(policy, kind=kind, group=group)


def _send_request(policy: GatePolicyView, kind: str, group_index: int) -> list[dict]:
    """Send the approval request to one group, by card and by webhook; audit each delivery."""
    group = policy.groups[min(group_index, len(policy.groups) - 1)]
    results = []
    card = _message(policy, kind, group_index)
    for channel, body in (("teams", card), ("webhook", _webhook(policy, kind, group.name))):
        delivery = notify.send(channel, body, incident_id=policy.incident_id)
        results.append(delivery.model_dump())
    runtime.audit().append(
        policy.incident_id,
        f"gate.{kind}",
        actor="system",
        reason=f"asked {group.name} ({group.role}) to decide the '{policy.gate}' gate",
        detail={"gate": policy.gate, "group": group.name, "deliveries": results},
    )
    return results


def _webhook(policy: GatePolicyView, kind: str, group: str) -> dict[str, Any]:
    return {
        "type": f"gate.{kind}",
        "incident_id": policy.incident_id,
        "gate": policy.gate,
        "group": group,
        "path": policy.path,
        "reason": policy.reason or policy.explain,
        "required_approvals": policy.required_approvals,
        "expires_at": (policy.opened_at + timedelta(seconds=policy.expire_after_s)).isoformat(),
    }


def open_gate(request: GateRequest, instance_id: str, opened_at: datetime) -> GatePolicyView:
    """Register the gate as open with its policy, and ask the first approver group."""
    incident = _incident(request.incident_id)
    env = runtime.config().environment(incident.environment)
    policy = policy_for(
        env,
        incident_id=request.incident_id,
        gate=request.gate,
        instance_id=instance_id,
        path=request.path,
        runbook_roles=[str(r) for r in request.approvers],
        runbook_min=request.min_approvers,
        declared_by=incident.declared_by,
        declarers=incident.declarers,
        opened_at=opened_at,
        explain=request.explain,
        reason=request.reason,
        quiet_period_s=env.recovery.quiet_period.total_seconds(),
    )
    stores = runtime.stores()
    stores.gates.open(policy)
    runtime.audit().append(
        request.incident_id,
        "gate.opened",
        actor="system",
        reason=f"gate '{request.gate}' opened: {request.reason or request.explain}",
        detail={
            "gate": request.gate,
            "roles": policy.roles,
            "required_approvals": policy.required_approvals,
            "required_roles": policy.required_roles,
            "expires_after_s": policy.expire_after_s,
        },
    )
    _send_request(policy, "request", 0)
    log.info(
        "gate '%s' of incident '%s' opened (%s approvals by %s)",
        request.gate,
        request.incident_id,
        policy.required_approvals,
        ", ".join(policy.roles),
    )
    return policy


def _stand_down(policy: GatePolicyView, now: datetime) -> tuple[str | None, str | None]:
    """For the recovery gate: (quiet_until, reason) when every firing signal has resolved."""
    received = runtime.stores().signal_log.received(policy.incident_id)
    signals = [signal for signal, _ in received]
    if not signals or active_signals(signals):
        return None, None
    if any(s.kind.value == "declaration" for s in signals):
        return None, None
    # The quiet period runs from when the last signal reached this app, not from the times the
    # senders wrote into them: a late delivery or a skewed (or absurd) clock cannot shorten it.
    last = max((at for _, at in received if at is not None), default=now)
    quiet_until = last + timedelta(seconds=policy.quiet_period_s)
    if now >= quiet_until:
        return None, (
            f"every firing signal resolved; the last signal arrived at {last.isoformat()} and "
            f"it stayed quiet for {policy.quiet_period_s:g} s before the recovery gate was "
            "approved: standing down"
        )
    return quiet_until.isoformat(), None


def evaluate_gate(policy: GatePolicyView, now: datetime | None = None) -> dict[str, Any]:
    """Where the gate stands: decided or not, and for recovery whether to stand down."""
    now = now or datetime.now(UTC)
    stores = runtime.stores()
    # What the rings so far were about (a decision, a resolved signal) was stored before they
    # rang: marking them heard before reading the store means none of it is missed.
    rung = stores.doorbells.hear(policy.instance_id)
    policy = with_declarers(policy, stores.stores.incidents.get(policy.incident_id))
    decisions = stores.stores.approvals.list(policy.incident_id)
    verdict: Verdict = evaluate(policy, decisions)
    out = verdict.model_dump()
    out["rung"] = rung
    if verdict.state == "pending" and policy.gate == "recovery":
        quiet_until, reason = _stand_down(policy, now)
        if reason:
            out.update(state="stood-down", reason=reason)
        out["quiet_until"] = quiet_until
    return out


def close_gate(policy: GatePolicyView, outcome: GateOutcome) -> None:
    runtime.stores().gates.close(policy, outcome.decision)
    runtime.audit().append(
        policy.incident_id,
        f"gate.{outcome.decision}",
        actor=", ".join(outcome.approvers) or "system",
        reason=outcome.reason,
        detail={"gate": policy.gate, "approvers": outcome.approvers},
    )


@bp.activity_trigger(input_name="payload", activity="gate_open")
def gate_open(payload: dict) -> dict:
    request = GateRequest.model_validate(payload["request"])
    opened_at = datetime.fromisoformat(payload["opened_at"])
    return open_gate(request, payload["instance_id"], opened_at).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="gate_evaluate")
def gate_evaluate(payload: dict) -> dict:
    return evaluate_gate(GatePolicyView.model_validate(payload["policy"]))


@bp.activity_trigger(input_name="payload", activity="gate_notify")
def gate_notify(payload: dict) -> list:
    policy = GatePolicyView.model_validate(payload["policy"])
    kind = payload["kind"]
    return _send_request(policy, kind, 1 if kind == "escalation" else 0)


@bp.activity_trigger(input_name="payload", activity="gate_close")
def gate_close(payload: dict) -> None:
    close_gate(
        GatePolicyView.model_validate(payload["policy"]),
        GateOutcome.model_validate(payload["outcome"]),
    )
