"""Presses on one Teams approval card by several people of the approver group it was sent to.

A card carries one approve and one reject token for the whole group. A press that is refused
(four-eyes, not an approver) records nothing and leaves the token for the next person; a
press that records a decision uses the token for that responder once. The relay is called as
the HTTP function calls it, against the session's Azurite, without a Functions host.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared import runtime
from shared.auth import ActionTokenSigner
from shared.gates import GatePolicyView, GroupView
from shared.models import Decision, Gate, ScenarioFamily
from shared.stores import StoreError
from tests.together import in_parallel
from triggers.approvals import CardBody, relay

KEY = "t" * 48


@pytest.fixture
def app(storage_connection_string, monkeypatch):
    """The settings the relay reads, on fresh tables; an incident alice declared by hand."""
    monkeypatch.setenv("AzureWebJobsStorage", storage_connection_string)
    monkeypatch.setenv("DR_TABLE_PREFIX", f"p{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("DR_ACTION_TOKEN_KEY", KEY)
    runtime.reset()
    # An environment of its own per test: the audit trail of an incident id outlives its tables.
    slot = runtime.stores().stores.incidents.open_or_join(
        f"env{uuid.uuid4().hex[:8]}.availability",
        environment="prod-eu",
        family=ScenarioFamily.AVAILABILITY,
        declared_by="alice-oid",
    )
    yield slot.incident.incident_id
    runtime.reset()


def open_gate(
    incident_id: str, *, required: int = 2, opening: int = 1, declared_by: str = "alice-oid"
) -> GatePolicyView:
    """The recovery gate of the incident; its declarer is known by object id, as the
    approvals endpoint records a person who declares."""
    policy = GatePolicyView(
        incident_id=incident_id,
        gate="recovery",
        instance_id=f"{incident_id}:plan:gate:recovery:{opening}",
        path="failed-release",
        roles=["DR.Approver"],
        groups=[
            GroupView(name="dr-on-call", role="DR.Approver", members=["alice", "bob", "carol"])
        ],
        required_approvals=required,
        remind_after_s=600,
        escalate_after_s=1200,
        expire_after_s=3600,
        on_expiry="abort",
        declared_by=declared_by,
        opened_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    runtime.stores().gates.open(policy)
    return policy


def card_token(incident_id: str, decision: Decision = Decision.APPROVE) -> str:
    signer = ActionTokenSigner(KEY.encode())
    return signer.issue(incident_id, Gate.RECOVERY, decision, ttl=timedelta(minutes=30))


def press(token: str, responder: str, responder_id: str | None = "") -> dict:
    """The relayed answer of ``responder``; their object id is ``<name>-oid`` unless given."""
    oid = f"{responder}-oid" if responder_id == "" else responder_id
    return relay(CardBody(action_token=token, responder=responder, responder_id=oid))


def approvers(incident_id: str) -> list[str]:
    decisions = runtime.stores().stores.approvals.list(incident_id, Gate.RECOVERY)
    return sorted(d.approver.name for d in decisions)


def test_declarers_refused_press_leaves_the_card_to_the_next_approver(app):
    open_gate(app)
    token = card_token(app)

    refused = press(token, "alice")
    taken = press(token, "bob")

    assert refused["status"] == 403 and "four-eyes" in refused["error"]
    assert taken["status"] == 202, taken
    assert taken["body"]["recorded"]
    assert approvers(app) == ["bob"]


def test_a_non_approvers_press_leaves_the_card_to_the_next_approver(app):
    open_gate(app)
    token = card_token(app)

    refused = press(token, "mallory")
    taken = press(token, "carol")

    assert refused["status"] == 403 and "not an approver" in refused["error"]
    assert taken["status"] == 202 and taken["body"]["recorded"], taken


def at_once(token: str, responders: list[str]) -> list[dict]:
    """Each responder presses the card in a thread of its own, all released together."""
    return in_parallel(len(responders), lambda n: press(token, responders[n]))


def test_two_approvers_of_a_two_person_gate_both_count_from_one_card(app):
    open_gate(app, required=2)
    token = card_token(app)
    presses = at_once(token, ["bob", "carol"])
    answers = dict(zip(["bob", "carol"], presses, strict=True))

    assert {who: a["status"] for who, a in answers.items()} == {"bob": 202, "carol": 202}
    assert all(a["body"]["recorded"] for a in answers.values())
    assert approvers(app) == ["bob", "carol"]


def test_one_responders_concurrent_presses_record_one_decision(app):
    open_gate(app)
    token = card_token(app)
    answers = at_once(token, ["bob"] * 6)

    recorded = [a for a in answers if a["status"] == 202 and a["body"]["recorded"]]
    others = [a for a in answers if a not in recorded]
    assert len(recorded) == 1, answers
    # The others came while the first was being recorded (409) or after it (a no-op).
    assert all(
        (a["status"] == 409 and "already used" in a["error"])
        or (a["status"] == 202 and a["body"]["repeated"])
        for a in others
    ), others
    assert approvers(app) == ["bob"]


def test_a_repeated_press_by_the_same_responder_is_a_no_op(app):
    open_gate(app)
    token = card_token(app)

    first = press(token, "bob")
    again = press(token, "bob")

    assert first["status"] == 202 and first["body"]["recorded"]
    assert again["status"] == 202 and again["body"]["repeated"], again
    assert approvers(app) == ["bob"]


def test_a_used_card_does_not_decide_the_gate_when_it_opens_again(app):
    first_opening = open_gate(app, opening=1)
    token = card_token(app)
    assert press(token, "bob")["status"] == 202
    runtime.stores().gates.close(first_opening, "expired")
    open_gate(app, opening=2)

    replayed = press(token, "bob")

    assert replayed["status"] == 409 and "already used" in replayed["error"], replayed


def test_a_press_whose_decision_could_not_be_stored_can_be_pressed_again(app, monkeypatch):
    open_gate(app)
    token = card_token(app)
    approvals = runtime.stores().stores.approvals
    record = approvals.record

    def storage_down(decision):
        raise StoreError("insert into approvals failed: ServiceResponseError")

    monkeypatch.setattr(approvals, "record", storage_down)
    with pytest.raises(StoreError):
        press(token, "bob")
    monkeypatch.setattr(approvals, "record", record)

    retried = press(token, "bob")

    assert retried["status"] == 202 and retried["body"]["recorded"], retried


def test_an_answer_without_object_id_cannot_decide_for_the_declarer(app):
    open_gate(app, required=1)
    token = card_token(app)

    # The declarer is known by object id only, so a responder named only by UPN could be them.
    anonymous = press(token, "alice", responder_id=None)

    assert anonymous["status"] == 403 and "object id" in anonymous["error"], anonymous
    assert approvers(app) == []
    trail = runtime.audit().records(app)
    assert [r.actor for r in trail if r.action == "approval.refused"] == ["alice"]


def test_an_answer_without_object_id_decides_a_gate_no_person_declared(app):
    open_gate(app, required=1, declared_by="system")
    token = card_token(app)

    taken = press(token, "bob", responder_id=None)

    assert taken["status"] == 202 and taken["body"]["recorded"], taken
    assert approvers(app) == ["bob"]
