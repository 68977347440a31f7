"""Gates through to their outcome, on stacks of their own (these runs promote and expire).

One stack takes a regional-outage incident past its recovery gate to the rpo gate, which needs
two distinct approvers, deciding by HTTP and by the Teams card relay. Another lets a recovery
gate go unanswered until it expires, with reminders and escalation on the way.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tests.plugins.stack import EnvSpec, Stack, StackError, short


@pytest.fixture(scope="module")
def flow_stack():
    timings = {"recovery": short(30), "rpo": short(60)}
    stack = Stack({"prod-eu": EnvSpec(timings=short(60), gate_timings=timings)})
    try:
        stack.start()
    except StackError as exc:
        pytest.fail(str(exc))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def at_rpo_gate(flow_stack: Stack):
    """The incident after its recovery gate was approved the moment it opened."""
    stack = flow_stack
    stack.fail_region("westeurope")
    from tests.plugins.stack import common_alert

    first = stack.post_alert(common_alert(stack.resource("prod-eu"))).json()
    incident_id = first["incidentId"]
    gates = stack.stores().gates
    deadline = time.monotonic() + 90
    while gates.current(incident_id, "recovery") is None:
        assert time.monotonic() < deadline, stack.tail()
        time.sleep(0.02)
    # The gate row exists, so its orchestration is between opening and waiting (or waits).
    early = stack.decide(incident_id, "recovery", user="alice", comment="go")
    stack.wait_gate(incident_id, "rpo", timeout_s=120)
    return {"incident_id": incident_id, "early": early}


def test_approval_as_the_gate_opens_is_applied_exactly_once(flow_stack: Stack, at_rpo_gate):
    incident_id = at_rpo_gate["incident_id"]

    assert at_rpo_gate["early"].status_code == 202, at_rpo_gate["early"].text
    view = flow_stack.incident(incident_id)
    recovery = [g for g in view["gates"] if g["gate"] == "recovery"]
    assert [(g["state"], g["outcome"]) for g in recovery] == [("closed", "approved")]
    approvals = [a for a in view["approvals"] if a["gate"] == "recovery"]
    assert [a["approver"] for a in approvals] == ["alice"]
    trail = flow_stack.audit(incident_id)
    assert [r.actor for r in trail if r.action == "approval.approve"] == ["alice"]
    assert len([r for r in trail if r.action == "gate.approved"]) == 1


def test_repeated_decision_is_a_no_op(flow_stack: Stack, at_rpo_gate):
    incident_id = at_rpo_gate["incident_id"]

    first = flow_stack.decide(incident_id, "rpo", user="alice", comment="accept the loss")
    again = flow_stack.decide(incident_id, "rpo", user="alice", comment="really")

    assert first.status_code == 202 and first.json()["recorded"]
    assert again.status_code == 202
    assert again.json()["repeated"] and not again.json()["recorded"]
    view = flow_stack.incident(incident_id)
    assert [a["approver"] for a in view["approvals"] if a["gate"] == "rpo"] == ["alice"]
    assert "rpo" in view["openGates"], "one person is not two approvals"


def test_card_responder_must_be_an_approver_of_the_gate(flow_stack: Stack, at_rpo_gate):
    incident_id = at_rpo_gate["incident_id"]
    token = flow_stack.action_signer().issue(
        incident_id, "rpo", "approve", ttl=timedelta(minutes=5)
    )

    r = flow_stack.relay_card(token, "mallory@contoso.example")

    assert r.status_code == 403
    assert "not an approver" in r.json()["error"]


def test_card_token_is_bound_to_its_gate(flow_stack: Stack, at_rpo_gate):
    incident_id = at_rpo_gate["incident_id"]
    token = flow_stack.action_signer().issue(
        incident_id, "cutover", "approve", ttl=timedelta(minutes=5)
    )

    r = flow_stack.relay_card(token, "bob")

    assert r.status_code == 409
    assert "cutover" in r.json()["error"]


def test_card_token_is_single_use(flow_stack: Stack, at_rpo_gate):
    incident_id = at_rpo_gate["incident_id"]
    token = flow_stack.action_signer().issue(
        incident_id, "rpo", "approve", ttl=timedelta(minutes=5)
    )

    # alice decided already, so this use records nothing new but spends the token.
    first = flow_stack.relay_card(token, "alice")
    second = flow_stack.relay_card(token, "bob")

    assert first.status_code == 202 and first.json()["repeated"]
    assert second.status_code == 409
    assert "already used" in second.json()["error"]
    assert "rpo" in flow_stack.incident(incident_id)["openGates"]


def test_rpo_gate_needs_two_distinct_approvers(flow_stack: Stack, at_rpo_gate):
    incident_id = at_rpo_gate["incident_id"]
    cards = [
        m["body"]
        for m in flow_stack.sink("teams")
        if incident_id in str(m["body"]) and "rpo" in str(m["body"])
    ]
    assert cards, "the rpo gate's card reached the Teams sink"
    actions = cards[-1]["attachments"][0]["content"]["actions"]
    approve = next(a["data"]["actionToken"] for a in actions if a["data"]["decision"] == "approve")

    r = flow_stack.relay_card(approve, "bob", responder_id="bob-oid", comment="second pair")

    assert r.status_code == 202, r.text
    assert r.json()["recorded"]

    def rpo_closed():
        view = flow_stack.incident(incident_id)
        rpo = [g for g in view["gates"] if g["gate"] == "rpo"]
        return rpo and rpo[-1]["state"] == "closed" and rpo[-1]

    closed = flow_stack.wait_for("rpo gate closed", rpo_closed, timeout_s=60)
    assert closed["outcome"] == "approved"
    view = flow_stack.incident(incident_id)
    rpo_approvals = [a for a in view["approvals"] if a["gate"] == "rpo"]
    assert sorted(a["approver"] for a in rpo_approvals) == ["alice", "bob"]
    assert {a["via"] for a in rpo_approvals} == {"http", "card"}


# ---------------------------------------------------------------------------- expiry


def test_unanswered_gate_expires_with_reminder_and_escalation(make_stack):
    stack = make_stack({"prod-eu": EnvSpec(timings=short(60), gate_timings={"recovery": short(3)})})
    incident_id = stack.open_regional_incident()

    view = stack.wait_ended(incident_id, timeout_s=120)

    assert view["phase"] == "aborted", view["timeline"][-3:]
    recovery = [g for g in view["gates"] if g["gate"] == "recovery"]
    assert [(g["state"], g["outcome"]) for g in recovery] == [("closed", "expired")]
    kinds = [
        m["body"].get("type")
        for m in stack.sink("webhook")
        if m["body"].get("incident_id") == incident_id
    ]
    assert kinds.count("gate.reminder") == 1
    assert kinds.count("gate.escalation") == 1
    escalation = next(
        m["body"]
        for m in stack.sink("webhook")
        if m["body"].get("incident_id") == incident_id
        and m["body"].get("type") == "gate.escalation"
    )
    assert escalation["group"] == "dr-leads", "escalation goes to the next group"
    assert stack.status(incident_id)["runtimeStatus"] == "Completed"
