"""Stores against a real Azurite: decisions two requests race for are made by storage."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.models import (
    ApprovalDecision,
    Decision,
    Evidence,
    Gate,
    Phase,
    Principal,
    RunbookPath,
    ScenarioFamily,
    Signal,
    SignalKind,
    SignalSource,
)
from shared.signals import raw_ref
from shared.stores import StoreError, Stores, connection_string_from_settings
from tests.together import in_parallel

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


@pytest.fixture
def stores(storage_connection_string) -> Stores:
    """Fresh tables for each test (a unique prefix), on the session's Azurite."""
    return Stores(storage_connection_string, prefix=f"t{uuid.uuid4().hex[:10]}")


def signal(key: str) -> Signal:
    return Signal(
        source=SignalSource.AZURE_MONITOR,
        kind=SignalKind.METRIC,
        dedupe_key=key,
        environment="prod-eu",
    )


def test_signal_is_first_once_and_duplicates_find_its_incident(stores):
    first = stores.signals.record(signal("alert:/a:fired"))
    assert first.first and first.incident_id is None
    stores.signals.attach("alert:/a:fired", "prod-eu.availability.1")
    again = stores.signals.record(signal("alert:/a:fired"))
    assert not again.first and again.incident_id == "prod-eu.availability.1"
    assert stores.signals.record(signal("alert:/a:resolved")).first


def test_concurrent_deliveries_of_one_signal_have_exactly_one_first(
    stores, storage_connection_string
):
    prefix = stores.signals.table.name.removesuffix("signals")
    results = in_parallel(
        12, lambda i: Stores(storage_connection_string, prefix=prefix).signals.record(signal("k"))
    )
    assert sum(r.first for r in results) == 1


def test_fifty_concurrent_starts_make_one_incident(stores, storage_connection_string):
    prefix = stores.incidents.table.name.removesuffix("incidents")

    def start(i):
        index = Stores(storage_connection_string, prefix=prefix).incidents
        return index.open_or_join(
            "prod-eu.availability",
            environment="prod-eu",
            family=ScenarioFamily.AVAILABILITY,
            first_signal=f"s{i}",
        )

    slots = in_parallel(50, start)
    assert sum(s.started for s in slots) == 1
    assert {s.incident.incident_id for s in slots} == {"prod-eu.availability.1"}
    assert len(stores.incidents.list()) == 1


def test_ended_incident_makes_the_next_signal_start_the_next_generation(stores):
    index = stores.incidents
    kwargs = {"environment": "prod-eu", "family": ScenarioFamily.DATA}
    first = index.open_or_join("prod-eu.data", **kwargs)
    assert first.started and first.incident.generation == 1
    assert not index.open_or_join("prod-eu.data", **kwargs).started
    index.end(first.incident.incident_id, outcome="recovered", phase=Phase.RECOVERED)
    ended = index.get("prod-eu.data.1")
    assert ended.ended_at is not None and ended.phase == Phase.RECOVERED
    second = index.open_or_join("prod-eu.data", **kwargs)
    assert second.started and second.incident.incident_id == "prod-eu.data.2"
    assert index.current("prod-eu.data").generation == 2


def test_concurrent_starts_after_an_end_make_one_next_generation(stores, storage_connection_string):
    prefix = stores.incidents.table.name.removesuffix("incidents")
    kwargs = {"environment": "prod-eu", "family": ScenarioFamily.SECURITY}
    first = stores.incidents.open_or_join("prod-eu.security", **kwargs)
    stores.incidents.end(first.incident.incident_id, outcome="aborted", phase=Phase.ABORTED)
    slots = in_parallel(
        10,
        lambda i: Stores(storage_connection_string, prefix=prefix).incidents.open_or_join(
            "prod-eu.security", **kwargs
        ),
    )
    assert sum(s.started for s in slots) == 1
    assert {s.incident.generation for s in slots} == {2}


def test_operators_declaring_into_an_incident_at_once_are_all_kept(
    stores, storage_connection_string
):
    prefix = stores.incidents.table.name.removesuffix("incidents")
    slot = stores.incidents.open_or_join(
        "prod-eu.availability", environment="prod-eu", family=ScenarioFamily.AVAILABILITY
    )
    incident_id = slot.incident.incident_id

    in_parallel(
        6,
        lambda i: Stores(storage_connection_string, prefix=prefix).incidents.add_declarer(
            incident_id, f"oid-{i % 3}", f"op{i % 3}@contoso.example", "system"
        ),
    )

    summary = stores.incidents.get(incident_id)
    assert summary.declared_by == "system", "the one who started it is unchanged"
    assert summary.declarers == sorted(
        [f"oid-{i}" for i in range(3)] + [f"op{i}@contoso.example" for i in range(3)]
    )


def test_update_phase_and_path_show_in_listings(stores):
    slot = stores.incidents.open_or_join(
        "prod-eu.availability", environment="prod-eu", family=ScenarioFamily.AVAILABILITY
    )
    stores.incidents.update(
        slot.incident.incident_id, phase=Phase.AWAITING_APPROVAL, path=RunbookPath.REGIONAL_OUTAGE
    )
    (listed,) = stores.incidents.list(environment="prod-eu", open_only=True)
    assert listed.phase == Phase.AWAITING_APPROVAL and listed.path == RunbookPath.REGIONAL_OUTAGE
    assert stores.incidents.list(environment="other") == []
    assert stores.incidents.get("not-an-id") is None


def test_evidence_is_listed_in_observation_order_and_kept_once(stores):
    late = Evidence(
        key="postgres.replica.lag_seconds",
        value=4.5,
        observed_at=T0 + timedelta(minutes=1),
        source="assess",
    )
    early = Evidence(key="postgres.primary.reachable", value=False, observed_at=T0, source="assess")
    assert stores.evidence.add("prod-eu.availability.1", late)
    assert stores.evidence.add("prod-eu.availability.1", early)
    assert not stores.evidence.add("prod-eu.availability.1", early)
    assert stores.evidence.list("prod-eu.availability.1") == [early, late]


def decision(subject: str, verdict=Decision.APPROVE, gate=Gate.RECOVERY) -> ApprovalDecision:
    return ApprovalDecision(
        incident_id="prod-eu.availability.1",
        gate=gate,
        decision=verdict,
        approver=Principal(subject=subject, name=subject, roles=("DR.Approver",)),
        comment="ok",
        decided_at=T0,
    )


def test_approval_is_recorded_once_per_approver_and_gate_and_first_decision_stands(stores):
    first = stores.approvals.record(decision("alice"))
    assert first.created
    repeat = stores.approvals.record(decision("alice", Decision.REJECT))
    assert not repeat.created and repeat.decision.decision == Decision.APPROVE
    assert stores.approvals.record(decision("alice", gate=Gate.RPO)).created
    assert stores.approvals.record(decision("bob")).created
    assert len(stores.approvals.list("prod-eu.availability.1", Gate.RECOVERY)) == 2
    alice = Principal(subject="alice", name="alice")
    assert stores.approvals.get("prod-eu.availability.1", Gate.RPO, alice).gate == Gate.RPO


def test_one_person_by_object_id_or_by_name_records_one_decision_under_concurrency(
    stores, storage_connection_string
):
    """The card relay may know bob by his UPN only, the approvals endpoint by his object id;
    racing requests under either identity, with either decision, record one decision."""
    prefix = stores.approvals.table.name.removesuffix("approvals")
    opening = "prod-eu.availability.1:plan:gate:recovery:1"

    def bob(i: int) -> ApprovalDecision:
        subject = "bob" if i == 0 else f"bob-oid-{i}"  # i == 0: named by UPN, as a card is
        return ApprovalDecision(
            incident_id="prod-eu.availability.1",
            gate=Gate.RECOVERY,
            decision=Decision.REJECT if i % 2 == 0 else Decision.APPROVE,
            approver=Principal(subject=subject, name="Bob" if i % 3 else "bob", roles=()),
            decided_at=T0,
            gate_instance=opening,
        )

    results = in_parallel(
        8, lambda i: Stores(storage_connection_string, prefix=prefix).approvals.record(bob(i))
    )

    assert [r.created for r in results].count(True) == 1
    standing = next(r.decision for r in results if r.created)
    assert all(r.decision == standing for r in results)
    assert stores.approvals.list("prod-eu.availability.1") == [standing]
    by_id = Principal(subject=standing.approver.subject.upper(), name="robert")
    again = stores.approvals.record(bob(1).model_copy(update={"approver": by_id}))
    assert not again.created and again.decision == standing, "the object id matches"
    carol = bob(1).model_copy(update={"approver": Principal(subject="carol-oid", name="carol")})
    assert stores.approvals.record(carol).created


def test_action_token_is_usable_once_even_under_concurrency(stores, storage_connection_string):
    prefix = stores.action_tokens.table.name.removesuffix("actiontokens")
    exp = T0 + timedelta(hours=1)
    results = in_parallel(
        8,
        lambda i: Stores(storage_connection_string, prefix=prefix).action_tokens.use(
            "tok-123", incident_id="prod-eu.availability.1", expires_at=exp
        ),
    )
    assert results.count(True) == 1
    assert not stores.action_tokens.use("tok-123", incident_id="x", expires_at=exp)


def test_raw_payload_is_saved_under_its_reference(stores):
    body = b'{"data": {"essentials": {}}}'
    ref = raw_ref(body)
    stores.raw.save(ref, body)
    stores.raw.save(ref, body)  # the same bytes twice is fine
    assert stores.raw.load(ref) == body


def test_missing_storage_setting_is_named():
    with pytest.raises(StoreError, match="AzureWebJobsStorage is not set"):
        connection_string_from_settings({})


def test_unreachable_storage_is_a_store_error():
    from devhost.azurite import connection_string
    from devhost.pg import free_port

    port = free_port()
    broken = Stores(connection_string(port, port), prefix="unreach")
    with pytest.raises(StoreError, match="failed"):
        broken.signals.record(signal("x"))


def test_rows_inserted_together_read_back_with_their_types(stores):
    table = stores.signals.table
    stamp = datetime(2026, 11, 30, 22, 7, 1, 250000, tzinfo=UTC)
    rows = [
        {
            "PartitionKey": "together",
            "RowKey": f"r{n}",
            "text": f'line {n}: quotes " and \\ and é',
            "raw": bytes([0, 1, 2, 255]) * (n + 1),
            "small": n,
            "large": 2**40 + n,
            "ratio": 0.5 + n,
            "flag": n % 2 == 0,
            "at": stamp,
        }
        for n in range(3)
    ]
    assert table.insert_many(rows) == [True, True, True]
    for n in range(3):
        back = table.get("together", f"r{n}")
        assert back["text"] == rows[n]["text"]
        assert bytes(back["raw"]) == rows[n]["raw"]
        assert back["small"] == n and back["large"].value == 2**40 + n
        assert back["ratio"] == 0.5 + n and back["flag"] is (n % 2 == 0)
        assert back["at"] == stamp


def test_rows_inserted_together_say_which_existed(stores):
    table = stores.signals.table
    assert table.insert({"PartitionKey": "p", "RowKey": "b", "v": "first"})
    rows = [{"PartitionKey": "p", "RowKey": k, "v": "second"} for k in ("a", "b", "c")]
    rows.append({"PartitionKey": "q", "RowKey": "a", "v": "other partition"})
    assert table.insert_many(rows) == [True, False, True, True]
    assert table.get("p", "b")["v"] == "first", "an existing row is never overwritten"
    assert table.get("q", "a")["v"] == "other partition"
    # Two rows with one key in one call: the first is created, the second existed.
    twice = [{"PartitionKey": "p", "RowKey": "d", "v": str(n)} for n in range(2)]
    assert table.insert_many(twice) == [True, False]


def test_a_transaction_the_service_refuses_names_the_table(stores):
    table = stores.signals.table
    too_big = [{"PartitionKey": "p", "RowKey": f"x{n}", "v": "y" * 40000} for n in range(2)]
    with pytest.raises(StoreError, match=table.name):
        table.insert_many(too_big)


def test_a_gate_that_opens_again_takes_a_new_decision_from_the_same_person(stores):
    alice = Principal(subject="alice-oid", name="alice", roles=["DR.Approver"])

    def at(instance: str, decision: Decision, minutes: int) -> ApprovalDecision:
        return ApprovalDecision(
            incident_id="prod-eu.data.1",
            gate=Gate.SIGNOFF,
            decision=decision,
            approver=alice,
            decided_at=T0 + timedelta(minutes=minutes),
            gate_instance=instance,
        )

    first = stores.approvals.record(at("inc:plan:gate:signoff:1", Decision.REJECT, 2))
    again = stores.approvals.record(at("inc:plan:gate:signoff:2", Decision.APPROVE, 9))
    assert first.created and again.created, "the second opening recorded alice's new decision"
    repeat = stores.approvals.record(at("inc:plan:gate:signoff:2", Decision.REJECT, 10))
    assert not repeat.created and repeat.decision.decision == Decision.APPROVE
    decisions = stores.approvals.list("prod-eu.data.1", Gate.SIGNOFF)
    assert [d.decision for d in decisions] == [Decision.REJECT, Decision.APPROVE]
    assert (
        stores.approvals.get(
            "prod-eu.data.1", Gate.SIGNOFF, alice, "inc:plan:gate:signoff:1"
        ).decision
        == Decision.REJECT
    )
