"""The approval of one gate: ask, remind, escalate, expire, and decide from recorded decisions.

Decisions are recorded in the approval store before anyone rings this orchestration, and it
reads them from there each time it wakes, so a decision that arrived before the wait is applied
exactly once and a repeated decision changes nothing. Every wait is bounded: remind at T1,
escalate to the next approver group at T2, expire at T3, all well under the durable timer limit.
The recovery gate can also end because every firing signal resolved and stayed quiet.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import azure.durable_functions as df

from shared.folding import doorbell_event
from shared.plans import GateOutcome, GateRequest

log = logging.getLogger(__name__)

bp = df.Blueprint()

# Reading the store is cheap and idempotent; a short retry rides out a storage hiccup.
STORE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=5)
# However quiet the doorbells, the gate re-reads the store this often (a lost ring is harmless).
POLL_S = 60


def _payload(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@bp.orchestration_trigger(context_name="context", orchestration="gate_approval")
def gate_approval(context: df.DurableOrchestrationContext):
    """Decide one gate (``GateRequest`` in, ``GateOutcome`` out)."""
    request = GateRequest.model_validate(_payload(context.get_input()))
    opened_at = context.current_utc_datetime
    policy = yield context.call_activity_with_retry(
        "gate_open",
        STORE_RETRY,
        {
            "request": request.model_dump(mode="json"),
            "instance_id": context.instance_id,
            "opened_at": opened_at.isoformat(),
        },
    )
    remind_at = opened_at + timedelta(seconds=policy["remind_after_s"])
    escalate_at = opened_at + timedelta(seconds=policy["escalate_after_s"])
    expire_at = opened_at + timedelta(seconds=policy["expire_after_s"])
    reminded = escalated = False
    bell = 1

    while True:
        verdict = yield context.call_activity_with_retry(
            "gate_evaluate",
            STORE_RETRY,
            {"policy": policy, "instance_id": context.instance_id},
        )
        context.set_custom_status(
            {
                "gate": request.gate,
                "incident_id": request.incident_id,
                "state": verdict["state"],
                "reason": verdict["reason"],
                "approvers": verdict.get("approvers", []),
                "expires_at": expire_at.isoformat(),
            }
        )
        if verdict["state"] in ("approved", "rejected", "stood-down"):
            decision = "approved" if verdict["state"] == "approved" else "rejected"
            outcome = GateOutcome(
                decision=decision, reason=verdict["reason"], approvers=verdict.get("approvers", [])
            )
            break

        now = context.current_utc_datetime
        if now >= expire_at:
            outcome = GateOutcome(
                decision="expired",
                reason=(
                    f"no decision within {policy['expire_after_s']:g} s "
                    f"({verdict['reason']}); the gate's policy is {policy['on_expiry']}"
                ),
                approvers=verdict.get("approvers", []),
            )
            break
        if not escalated and now >= escalate_at:
            escalated = reminded = True
            yield context.call_activity_with_retry(
                "gate_notify", STORE_RETRY, {"policy": policy, "kind": "escalation"}
            )
            continue
        if not reminded and now >= remind_at:
            reminded = True
            yield context.call_activity_with_retry(
                "gate_notify", STORE_RETRY, {"policy": policy, "kind": "reminder"}
            )
            continue

        deadlines = [expire_at, now + timedelta(seconds=POLL_S)]
        deadlines += [] if escalated else [escalate_at]
        deadlines += [] if reminded else [remind_at]
        if verdict.get("quiet_until"):
            deadlines.append(datetime.fromisoformat(verdict["quiet_until"]))
        timer = context.create_timer(min(deadlines))
        ring = context.wait_for_external_event(doorbell_event(bell))
        winner = yield context.task_any([ring, timer])
        if winner is ring:
            timer.cancel()
            bell += 1
        # Rings lost on the way (a host restart between recording and raising) are caught up:
        # the store, not the ring, is the truth, and the next wait is for the next number.
        bell = max(bell, int(verdict.get("rung", 0)) + 1)

    yield context.call_activity_with_retry(
        "gate_close",
        STORE_RETRY,
        {"policy": policy, "outcome": outcome.model_dump(mode="json")},
    )
    if not context.is_replaying:
        log.info(
            "gate '%s' of incident '%s' %s: %s",
            request.gate,
            request.incident_id,
            outcome.decision,
            outcome.reason,
        )
    return outcome.model_dump(mode="json")
