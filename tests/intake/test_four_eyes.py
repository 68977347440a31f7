"""Four-eyes at a gate: one person counts once, whichever route their decision took."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.gates import GatePolicyView, GroupView, evaluate, same_person
from shared.models import ApprovalDecision, Decision, Gate, Principal

OPENED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _policy(required: int = 2) -> GatePolicyView:
    return GatePolicyView(
        incident_id="prod-eu.availability.1",
        gate="rpo",
        instance_id="prod-eu.availability.1:plan:gate:rpo:1",
        path="regional-outage",
        roles=["DR.Approver", "Finance.Controller"],
        groups=[GroupView(name="dr-on-call", role="DR.Approver", members=["alice", "bob"])],
        required_approvals=required,
        remind_after_s=60,
        escalate_after_s=120,
        expire_after_s=180,
        on_expiry="deny",
        declared_by="system",
        opened_at=OPENED,
    )


def _decision(subject: str, name: str, minutes: int, via: str) -> ApprovalDecision:
    return ApprovalDecision(
        incident_id="prod-eu.availability.1",
        gate=Gate.RPO,
        decision=Decision.APPROVE,
        approver=Principal(subject=subject, name=name, roles=("DR.Approver",)),
        comment="",
        decided_at=OPENED + timedelta(minutes=minutes),
        via=via,
    )


def test_one_person_by_http_and_by_card_is_one_approver():
    by_http = _decision("3f0c-oid-of-alice", "alice", 1, "http")
    by_card = _decision("alice", "Alice", 2, "card")

    verdict = evaluate(_policy(), [by_http, by_card])

    assert verdict.state == "pending"
    assert verdict.approvers == ["alice"]


def test_two_people_by_either_route_approve():
    verdict = evaluate(
        _policy(), [_decision("oid-a", "alice", 1, "http"), _decision("oid-b", "bob", 2, "card")]
    )

    assert verdict.state == "approved"
    assert sorted(verdict.approvers) == ["alice", "bob"]


def test_same_person_matches_subject_or_name_case_insensitively():
    alice = Principal(subject="OID-1", name="alice@contoso.example", roles=())

    assert same_person(alice, Principal(subject="oid-1", name="other", roles=()))
    assert same_person(alice, Principal(subject="x", name="Alice@Contoso.example ", roles=()))
    assert not same_person(alice, Principal(subject="oid-2", name="bob", roles=()))


def test_an_operator_who_declared_into_the_incident_never_counts():
    # The system started the incident; dora declared into it later, known by object id and name.
    policy = _policy(required=1).model_copy(update={"declarers": ["dora-oid", "dora"]})
    before = _decision("dora-oid", "dora", 1, "http")  # recorded before she declared
    by_card = _decision("dora", "dora", 2, "card")

    verdict = evaluate(policy, [before, by_card])

    assert verdict.state == "pending"
    assert verdict.approvers == []
    assert all("four-eyes" in why for why in verdict.refused) and len(verdict.refused) == 2
