"""Gates through to their outcome, on stacks of their own (these runs promote and expire).

One stack gives the recovery gate of a regional-outage incident the rule of the rpo gate (two
distinct approvers) and decides it by HTTP and by the Teams card relay, then lets the run go
on. Another lets a recovery gate go unanswered until it expires, with reminders and
escalation on the way.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tests.plugins.stack import EnvSpec, Stack, StackError, short


@pytest.fixture(scope="module")
def flow_stack():
    # Whether the rpo gate opens depends on the lag measured at the outage; the recovery gate
    # opens for every regional outage, so it gets the rpo gate's two-person rule here.
    spec = EnvSpec(timings=short(60), required_approvals={"recovery": 2})
    stack = Stack({"prod-eu": spec})
    try:
        stack.start()
    except StackError as exc:
        pytest.fail(str(exc))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def two_person_gate(flow_stack: Stack):
    """The incident whose recovery gate alice approved the moment it opened (one of two)."""
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
    stack.wait_gate(incident_id, "recovery")
    return {"incident_id": incident_id, "early": early}


def test_approval_as_the_gate_opens_is_applied_exactly_once(flow_stack: Stack, two_person_gate):
    incident_id = two_person_gate["incident_id"]

    assert two_person_gate["early"].status_code == 202, two_person_gate["early"].text
    assert two_person_gate["early"].json()["recorded"]
    view = flow_stack.incident(incident_id)
    approvals = [a for a in view["approvals"] if a["gate"] == "recovery"]
    assert [a["approver"] for a in approvals] == ["alice"]
    trail = flow_stack.audit(incident_id)
    assert [r.actor for r in trail if r.action == "approval.approve"] == ["alice"]
    status = flow_stack.status(f"{incident_id}:plan:gate:recovery:1")
    assert status["customStatus"]["approvers"] == ["alice"], status["customStatus"]
    assert "recovery" in view["openGates"], "one of two approvals leaves the gate open"


def test_a_repeated_decision_is_a_no_op_and_a_changed_one_409(flow_stack, two_person_gate):
    incident_id = two_person_gate["incident_id"]

    again = flow_stack.decide(incident_id, "recovery", user="alice", comment="really")
    changed = flow_stack.decide(incident_id, "recovery", "reject", user="alice")

    assert again.status_code == 202
    assert again.json()["repeated"] and not again.json()["recorded"]
    # A changed mind is refused, not answered as if the reject had been taken.
    assert changed.status_code == 409, changed.text
    assert "already decided 'approve'" in changed.json()["error"]
    view = flow_stack.incident(incident_id)
    assert [a["approver"] for a in view["approvals"] if a["gate"] == "recovery"] == ["alice"]
    assert "recovery" in view["openGates"], "one person is not two approvals"


def test_card_responder_must_be_an_approver_of_the_gate(flow_stack: Stack, two_person_gate):
    incident_id = two_person_gate["incident_id"]
    token = flow_stack.action_signer().issue(
        incident_id, "recovery", "approve", ttl=timedelta(minutes=5)
    )

    r = flow_stack.relay_card(token, "mallory@contoso.example")

    assert r.status_code == 403
    assert "not an approver" in r.json()["error"]


def test_card_token_is_bound_to_its_gate(flow_stack: Stack, two_person_gate):
    incident_id = two_person_gate["incident_id"]
    token = flow_stack.action_signer().issue(
        incident_id, "cutover", "approve", ttl=timedelta(minutes=5)
    )

    r = flow_stack.relay_card(token, "bob")

    assert r.status_code == 409
    assert "cutover" in r.json()["error"]


def test_card_press_of_someone_who_decided_already_records_nothing(flow_stack, two_person_gate):
    incident_id = two_person_gate["incident_id"]
    token = flow_stack.action_signer().issue(
        incident_id, "recovery", "approve", ttl=timedelta(minutes=5)
    )

    # alice decided already (by HTTP): her presses repeat that decision and leave the card's
    # token to the rest of the group (tests/intake/test_card_presses.py: who may use it when).
    first = flow_stack.relay_card(token, "alice")
    again = flow_stack.relay_card(token, "alice")

    assert first.status_code == 202 and first.json()["repeated"], first.text
    assert again.status_code == 202 and again.json()["repeated"], again.text
    view = flow_stack.incident(incident_id)
    assert [a["approver"] for a in view["approvals"] if a["gate"] == "recovery"] == ["alice"]
    assert "recovery" in view["openGates"]


def test_two_person_gate_needs_two_distinct_approvers(flow_stack: Stack, two_person_gate):
    incident_id = two_person_gate["incident_id"]
    cards = [
        m["body"]
        for m in flow_stack.sink("teams")
        if incident_id in str(m["body"]) and "recovery" in str(m["body"])
    ]
    assert cards, "the recovery gate's card reached the Teams sink"
    actions = cards[-1]["attachments"][0]["content"]["actions"]
    approve = next(a["data"]["actionToken"] for a in actions if a["data"]["decision"] == "approve")

    r = flow_stack.relay_card(approve, "bob", responder_id="bob-oid", comment="second pair")

    assert r.status_code == 202, r.text
    assert r.json()["recorded"]

    def recovery_closed():
        view = flow_stack.incident(incident_id)
        gates = [g for g in view["gates"] if g["gate"] == "recovery"]
        return gates and gates[-1]["state"] == "closed" and gates[-1]

    closed = flow_stack.wait_for("recovery gate closed", recovery_closed, timeout_s=60)
    assert closed["outcome"] == "approved"
    view = flow_stack.incident(incident_id)
    decided = [a for a in view["approvals"] if a["gate"] == "recovery"]
    assert sorted(a["approver"] for a in decided) == ["alice", "bob"]
    assert {a["via"] for a in decided} == {"http", "card"}
    trail = flow_stack.audit(incident_id)
    assert len([r for r in trail if r.action == "gate.approved"]) == 1


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
