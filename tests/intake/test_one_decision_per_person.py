"""One person, one decision per opening of a gate, however many requests race for it.

A person is the same person when the subject (object id) or the name (UPN) matches, whichever
route they used. Requests of one person released together, by HTTP and by the card relay, with
one object id or several, record exactly one decision: the others are answered as repeats of
it (the same decision) or refused with 409 naming it (another decision). The session stack's
`pair-1` environment has a two-person recovery gate, so one approval leaves it open.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import requests

from shared.models import Gate
from tests.plugins.stack import Stack, common_alert
from tests.together import in_parallel

ENVIRONMENT = "pair-1"
KEY = f"{ENVIRONMENT}.dependency"


@pytest.fixture
def open_gate(stack: Stack):
    """A Redis incident of `pair-1` waiting at its two-person recovery gate; ended after."""
    stack.end_open(KEY)
    answer = stack.post_alert(common_alert(stack.resource(ENVIRONMENT, "redis"), rule="redis"))
    assert answer.json()["disposition"] == "started", answer.text
    incident_id = answer.json()["incidentId"]
    stack.wait_gate(incident_id, "recovery")
    yield incident_id
    stack.end_open(KEY)


def _released_together(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Every call in a thread of its own, all released at once; answers in call order."""
    return in_parallel(len(calls), lambda n: calls[n]())


def _http(stack: Stack, incident_id: str, decision: str, oid: str | None = None):
    headers = stack.auth("bob", ["DR.Approver"], oid=oid)
    url = f"{stack.url}/api/incidents/{incident_id}/approvals"
    body = {"gate": "recovery", "decision": decision}
    return lambda: requests.post(url, json=body, headers=headers, timeout=60)


def _card(stack: Stack, incident_id: str, decision: str):
    """bob presses one of the card's actions; the relay names him by UPN only."""
    token = stack.action_signer().issue(incident_id, "recovery", decision, ttl=timedelta(minutes=5))
    headers = stack.auth("logic-app-relay", ["DR.ApprovalRelay"])
    body = {"actionToken": token, "responder": "bob"}
    return lambda: requests.post(
        f"{stack.url}/api/approvals/card", json=body, headers=headers, timeout=60
    )


def _assert_one_decision_stands(
    stack: Stack, incident_id: str, asked: list[str], answers: list[requests.Response]
) -> str:
    """Exactly one of bob's requests recorded; every other one answered as the docs say."""
    stored = stack.stores().stores.approvals.list(incident_id, Gate.RECOVERY)
    assert len(stored) == 1, [(d.approver, d.decision, d.via) for d in stored]
    standing = stored[0].decision.value
    recorded = [a for a in answers if a.status_code == 202 and a.json()["recorded"]]
    assert len(recorded) == 1, [(a.status_code, a.text) for a in answers]
    assert recorded[0].json()["decision"] == standing
    for decision, answer in zip(asked, answers, strict=True):
        if answer is recorded[0]:
            continue
        if standing == "reject" and answer.status_code == 409 and "not open" in answer.text:
            continue  # it came after the reject had closed the gate
        if decision == standing:
            assert answer.status_code == 202 and answer.json()["repeated"], answer.text
        else:
            assert answer.status_code == 409, answer.text
            assert f"already decided '{standing}'" in answer.json()["error"]
    trail = [r for r in stack.audit(incident_id) if r.action.startswith("approval.")]
    assert [(r.action, r.actor) for r in trail] == [(f"approval.{standing}", "bob")]
    return standing


# Either request can win the race; a few openings make a lost race show whichever wins.
@pytest.mark.parametrize("attempt", range(3))
def test_one_persons_card_reject_and_http_approve_at_once_record_one_decision(
    stack, open_gate, attempt
):
    incident_id = open_gate
    asked = ["reject", "approve"]

    answers = _released_together(
        [_card(stack, incident_id, "reject"), _http(stack, incident_id, "approve")]
    )

    standing = _assert_one_decision_stands(stack, incident_id, asked, answers)
    if standing == "approve":
        view = stack.incident(incident_id)
        assert "recovery" in view["openGates"], "one person is one of the two approvals"
    else:
        view = stack.wait_ended(incident_id)
        assert [g["outcome"] for g in view["gates"] if g["gate"] == "recovery"] == ["rejected"]


def test_one_name_under_many_object_ids_at_once_records_one_decision(stack, open_gate):
    incident_id = open_gate
    asked = ["approve", "reject"] * 6

    answers = _released_together(
        [_http(stack, incident_id, decision, oid=str(uuid.uuid4())) for decision in asked]
    )

    _assert_one_decision_stands(stack, incident_id, asked, answers)
