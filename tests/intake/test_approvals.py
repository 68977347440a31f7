"""The approvals endpoint on the running stack: who is asked, in which order things are checked.

401 comes before any lookup, so an unknown incident is 404 only for a valid token; 403 for a
missing role and for the declarer; 409 for a gate that is not open.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta

import pytest

from tests.plugins.stack import Stack

KEY = "prod-eu.availability"
UNKNOWN = "prod-eu.availability.999999"


@pytest.fixture
def regional(stack: Stack):
    """A regional-outage incident of the demo environment, waiting at its recovery gate."""
    stack.end_open(KEY)
    incident_id = stack.open_regional_incident()
    yield incident_id
    stack.end_incident(incident_id)


def _forged_token() -> str:
    """A well-formed token signed by a key the app does not trust."""
    from devhost.issuer import LocalIssuer

    return LocalIssuer(tempfile.mkdtemp(prefix="other-issuer-")).mint("alice", ["DR.Approver"])


@pytest.mark.parametrize(
    "authorization",
    ["none", "not-bearer", "garbage", "forged", "expired", "wrong-audience", "wrong-issuer"],
)
def test_bad_token_is_401_before_the_incident_is_looked_up(stack: Stack, authorization):
    tokens = {
        "not-bearer": "Basic YWxpY2U6c2VjcmV0",
        "garbage": "Bearer not.a.jwt",
        "forged": f"Bearer {_forged_token()}",
        "expired": "Bearer "
        + stack.token("alice", ["DR.Approver"], now=datetime.now(UTC) - timedelta(hours=2)),
        "wrong-audience": "Bearer "
        + stack.token("alice", ["DR.Approver"], audience="api://someone-else"),
        "wrong-issuer": "Bearer "
        + stack.token("alice", ["DR.Approver"], issuer="https://issuer.invalid/v2.0"),
    }
    headers = {} if authorization == "none" else {"Authorization": tokens[authorization]}

    r = stack.decide(UNKNOWN, "recovery", headers=headers)

    assert r.status_code == 401, r.text
    assert r.json()["error"]
    assert "Bearer" in r.headers.get("WWW-Authenticate", "")


def test_unknown_incident_is_404_for_a_valid_token(stack: Stack):
    r = stack.decide(UNKNOWN, "recovery", user="alice")

    assert r.status_code == 404
    assert UNKNOWN in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"gate": "lunch", "decision": "approve"}, "gate"),
        ({"gate": "recovery", "decision": "maybe"}, "decision"),
        ({"decision": "approve"}, "gate"),
        ({"gate": "recovery", "decision": "approve", "comment": "x" * 5000}, "comment"),
    ],
)
def test_bad_decision_body_is_400_naming_the_field(stack: Stack, body, named):
    r = stack.request(
        "POST",
        f"/api/incidents/{UNKNOWN}/approvals",
        json=body,
        headers=stack.auth("alice", ["DR.Approver"]),
    )

    assert r.status_code == 400
    assert named in r.json()["error"]


def test_approver_without_the_gate_role_is_403_and_audited(stack: Stack, regional):
    r = stack.decide(regional, "recovery", user="oscar", roles=["DR.Operator"])

    assert r.status_code == 403
    assert "DR.Approver" in r.json()["error"]
    refused = [a for a in stack.audit(regional) if a.action == "approval.refused"]
    assert [a.actor for a in refused] == ["oscar"]
    assert stack.incident(regional)["approvals"] == []


def test_gate_that_is_not_open_is_409(stack: Stack, regional):
    for gate in ("rpo", "signoff", "cutover"):
        r = stack.decide(regional, gate, user="alice")
        assert r.status_code == 409, (gate, r.text)
        assert gate in r.json()["error"]


def test_declarer_cannot_approve_their_own_incident(stack: Stack):
    stack.end_open(KEY)
    stack.fail_region("westeurope")
    roles = ["DR.Operator", "DR.Approver"]
    declared = stack.declare(
        "prod-eu", "primary region unreachable", path="regional-outage", user="dora", roles=roles
    )
    assert declared.status_code == 202, declared.text
    incident_id = declared.json()["incidentId"]
    try:
        stack.wait_gate(incident_id, "recovery")

        r = stack.decide(incident_id, "recovery", user="dora", roles=roles)

        assert r.status_code == 403
        assert "four-eyes" in r.json()["error"]
        refused = [a for a in stack.audit(incident_id) if a.action == "approval.refused"]
        assert [a.actor for a in refused] == ["dora"]
        assert stack.incident(incident_id)["declaredBy"] != "system"
    finally:
        stack.end_incident(incident_id)


def test_operator_who_declared_into_an_alerts_incident_cannot_decide_its_gates(stack: Stack):
    """An alert started the incident (declared by the system); an operator's declaration folds
    into it, and from then on four-eyes counts that operator as a declarer, by either route.
    bob is on call as an operator and an approver, and a member of the gate's approver group."""
    from tests.plugins.stack import common_alert

    roles = ["DR.Operator", "DR.Approver"]
    started = stack.post_alert(common_alert(stack.resource("edge-6", "redis"), rule="redis"))
    incident_id = started.json()["incidentId"]
    try:
        assert started.json()["disposition"] == "started", started.text
        stack.wait_gate(incident_id, "recovery")
        declared = stack.declare(
            "edge-6", "Odoo sessions drop", path="dependency-failure", user="bob", roles=roles
        )
        assert declared.json()["disposition"] == "folded", declared.text
        assert declared.json()["incidentId"] == incident_id
        card = stack.action_signer().issue(
            incident_id, "recovery", "approve", ttl=timedelta(minutes=5)
        )

        by_http = stack.decide(incident_id, "recovery", user="bob", roles=roles)
        by_card = stack.relay_card(card, "bob")

        for answer in (by_http, by_card):
            assert answer.status_code == 403, answer.text
            assert "four-eyes" in answer.json()["error"]
        refused = [a for a in stack.audit(incident_id) if a.action == "approval.refused"]
        assert [a.actor for a in refused] == ["bob", "bob"]
        assert stack.incident(incident_id)["approvals"] == []
    finally:
        stack.end_incident(incident_id)


def test_declaring_needs_the_operator_role(stack: Stack):
    r = stack.declare("prod-eu", "just looking", user="alice", roles=["DR.Approver"])

    assert r.status_code == 403


def test_card_relay_needs_the_relay_role(stack: Stack):
    signer = stack.action_signer()
    token = signer.issue(UNKNOWN, "recovery", "approve", ttl=timedelta(minutes=5))

    without = stack.relay_card(token, "alice", relay_roles=["DR.Approver"])
    anonymous = stack.request(
        "POST", "/api/approvals/card", json={"actionToken": token, "responder": "alice"}
    )

    assert without.status_code == 403
    assert "DR.ApprovalRelay" in without.json()["error"]
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    "tamper",
    [
        "forged",
        "expired",
        "malformed",
        "short",
        "empty",
        "not-ascii",
        "overlong",
        "other-gate-bytes",
    ],
)
def test_card_relay_refuses_a_bad_action_token(stack: Stack, tamper):
    from shared.auth import ActionTokenSigner

    signer = stack.action_signer()
    good = signer.issue(UNKNOWN, "recovery", "approve", ttl=timedelta(minutes=5))
    tokens = {
        "forged": ActionTokenSigner(b"x" * 48).issue(
            UNKNOWN, "recovery", "approve", ttl=timedelta(minutes=5)
        ),
        "expired": signer.issue(
            UNKNOWN,
            "recovery",
            "approve",
            ttl=timedelta(minutes=5),
            now=datetime.now(UTC) - timedelta(hours=1),
        ),
        "malformed": "v1.only-two-parts-and-more-than-ten",
        "short": "v1.x.y",
        "empty": "",
        "not-ascii": "v1.x.\u00e9",
        "overlong": "v1." + "x" * 5000 + ".y",
        # The payload of one token with the signature of another: the HMAC binds them.
        "other-gate-bytes": ".".join(
            [
                *signer.issue(UNKNOWN, "rpo", "approve", ttl=timedelta(minutes=5)).split(".")[:2],
                good.split(".")[2],
            ]
        ),
    }

    r = stack.relay_card(tokens[tamper], "alice")

    assert r.status_code == 401, r.text


def test_null_comment_on_a_decision_is_no_comment(stack: Stack):
    body = {"gate": "recovery", "decision": "approve", "comment": None}

    r = stack.request(
        "POST",
        f"/api/incidents/{UNKNOWN}/approvals",
        json=body,
        headers=stack.auth("alice", ["DR.Approver"]),
    )

    assert r.status_code == 404, r.text  # the body was taken; the incident does not exist


def test_null_comment_on_a_card_answer_is_no_comment(stack: Stack):
    token = stack.action_signer().issue(UNKNOWN, "recovery", "approve", ttl=timedelta(minutes=5))

    r = stack.request(
        "POST",
        "/api/approvals/card",
        json={"actionToken": token, "responder": "alice", "comment": None},
        headers=stack.auth("logic-app-relay", ["DR.ApprovalRelay"]),
    )

    assert r.status_code == 409, r.text  # the body was taken; the token's gate is not open
