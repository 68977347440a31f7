"""Storms of signals on the running stack: one orchestration per correlation key, the rest folded.

The demo environment's primary region is failed first, so each incident waits at its recovery
gate (and stays open) while the storm folds into it; each test ends its incident afterwards.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.plugins.stack import Stack, common_alert, health_event

KEY = "prod-eu.availability"


def _top_level(stack: Stack) -> list[str]:
    """Incident orchestrations of the key (plan and gate sub-orchestrations have a ':')."""
    return [i["instanceId"] for i in stack.instances(KEY + ".") if ":" not in i["instanceId"]]


@pytest.fixture
def quiet_key(stack: Stack):
    """The demo key with no open incident before the test, and none left open after it."""
    stack.fail_region("westeurope")
    stack.end_open(KEY)
    yield
    stack.end_open(KEY)


def test_fifty_concurrent_identical_alerts_start_one_orchestration(stack: Stack, quiet_key):
    rows_before, instances_before = len(stack.index_rows(KEY)), len(_top_level(stack))
    alert = common_alert(stack.resource("prod-eu"), rule="pg-weu-health")

    answers = stack.post_many(stack.post_alert_fresh, [alert] * 50, concurrency=50)

    assert [a.status_code for a in answers] == [202] * 50
    bodies = [a.json() for a in answers]
    assert sorted(b["disposition"] for b in bodies).count("started") == 1
    assert {b["disposition"] for b in bodies} == {"started", "folded"}
    assert len({b["incidentId"] for b in bodies}) == 1
    assert sum(b["duplicate"] for b in bodies) == 49
    assert len(stack.index_rows(KEY)) == rows_before + 1
    assert len(_top_level(stack)) == instances_before + 1
    counts = stack.stores().signal_log.counts(bodies[0]["incidentId"])
    assert counts.total == 1, "identical alerts are one signal"


def _mixed(stack: Stack, n: int) -> list[tuple[str, dict]]:
    """n fired signals on the demo environment from several rules and both intake routes."""
    primary, replica = stack.resource("prod-eu"), stack.resource("prod-eu", "postgres-replica")
    aks = stack.resource("prod-eu", "aks-primary")
    makers = [
        lambda: ("alert", common_alert(primary, rule="pg-weu-health")),
        lambda: ("alert", common_alert(primary, rule="pg-weu-cpu", service="Platform")),
        lambda: ("alert", common_alert(replica, rule="pg-neu-health")),
        lambda: ("alert", common_alert(aks, rule="aks-weu-health")),
        lambda: ("event", health_event(primary)),
    ]
    return [makers[i % len(makers)]() for i in range(n)]


def test_five_hundred_mixed_signals_start_one_orchestration(stack: Stack, quiet_key):
    rows_before, instances_before = len(stack.index_rows(KEY)), len(_top_level(stack))
    signals = _mixed(stack, 500)

    def send(item):
        route, body = item
        if route == "alert":
            return stack.post_alert_fresh(body)
        import requests

        return requests.post(
            stack.url + "/runtime/webhooks/eventgrid",
            params={"functionName": "eventgrid_signals"},
            json=[body],
            headers={"aeg-event-type": "Notification"},
            timeout=120,
        )

    answers = stack.post_many(send, signals, concurrency=32)

    assert all(a.status_code in (200, 202) for a in answers), {a.status_code for a in answers}
    pairs = zip(answers, signals, strict=True)
    alert_bodies = [a.json() for a, (route, _) in pairs if route == "alert"]
    started = [b for b in alert_bodies if b["disposition"] == "started"]
    assert len(started) <= 1
    assert {b["disposition"] for b in alert_bodies} <= {"started", "folded"}
    assert len(stack.index_rows(KEY)) == rows_before + 1
    assert len(_top_level(stack)) == instances_before + 1
    incident_id = stack.stores().stores.incidents.current(KEY).incident_id
    assert {b["incidentId"] for b in alert_bodies} == {incident_id}
    assert stack.stores().signal_log.counts(incident_id).total == 500
    _assert_history_holds_no_signals(stack, incident_id)


def _assert_history_holds_no_signals(stack: Stack, incident_id: str) -> None:
    """The orchestration replays its whole history on every event, so a storm's signals must
    not be in it: the assess activity hands back their classification, not the signals."""
    stack.wait_gate(incident_id, "recovery")
    r = stack.request(
        "GET",
        f"/runtime/webhooks/durabletask/instances/{incident_id}",
        params={"showHistory": "true", "showHistoryOutput": "true"},
    )
    r.raise_for_status()
    events = r.json()["historyEvents"]
    outputs = [e["Result"] for e in events if e["EventType"] == "TaskCompleted" and "Result" in e]
    outputs = [json.loads(o) if isinstance(o, str) else o for o in outputs]
    assessed = [o for o in outputs if isinstance(o, dict) and "classification" in o]
    assert len(assessed) == 1, [e.get("EventType") for e in events]
    assert "signals" not in assessed[0]
    assert assessed[0]["signals_read"] >= 1
    # The first signal is the orchestration's input; none of the others is anywhere in it.
    keys = {s.dedupe_key for s in stack.stores().signal_log.signals(incident_id)}
    assert len(keys) == 500
    assert len([k for k in keys if k in r.text]) <= 1


def test_duplicates_change_nothing(stack: Stack, quiet_key):
    alert = common_alert(stack.resource("prod-eu"), rule="pg-weu-health")
    event = health_event(stack.resource("prod-eu"))
    first = stack.post_alert(alert).json()
    assert stack.post_events([event]).status_code == 200
    incident_id = first["incidentId"]
    counts = stack.stores().signal_log.counts(incident_id)
    rows, instances = len(stack.index_rows(KEY)), len(_top_level(stack))

    again = [stack.post_alert(alert).json() for _ in range(3)]
    for _ in range(3):
        assert stack.post_events([event]).status_code == 200

    assert all(a["duplicate"] and a["disposition"] == "folded" for a in again)
    assert all(a["incidentId"] == incident_id for a in again)
    assert stack.stores().signal_log.counts(incident_id) == counts
    assert len(stack.index_rows(KEY)) == rows
    assert len(_top_level(stack)) == instances


def test_resolved_alert_before_approval_stands_incident_down(stack: Stack, quiet_key):
    alert_id = str(uuid.uuid4())
    target = stack.resource("prod-eu")
    fired = stack.post_alert(common_alert(target, alert_id=alert_id)).json()
    incident_id = fired["incidentId"]
    stack.wait_gate(incident_id, "recovery")

    resolved = stack.post_alert(
        common_alert(target, alert_id=alert_id, condition="Resolved")
    ).json()

    assert fired["disposition"] == "started"
    assert resolved["disposition"] == "folded" and not resolved["duplicate"]
    counts = stack.stores().signal_log.counts(incident_id)
    assert (counts.total, counts.firing, counts.resolved) == (2, 1, 1)
    view = stack.wait_ended(incident_id, timeout_s=60)
    assert view["phase"] == "stood-down", view["timeline"][-3:]
    recovery = [g for g in view["gates"] if g["gate"] == "recovery"]
    assert [g["state"] for g in recovery] == ["closed"]
    assert view["approvals"] == []
    result = stack.plan_result(incident_id)
    undone = {c["step"]: c for c in result["compensations"]}
    assert "warm-secondary-pool" in undone, result["compensations"]
    assert undone["warm-secondary-pool"]["ok"], undone["warm-secondary-pool"]


def test_resolved_alert_without_an_open_incident_is_ignored(stack: Stack, quiet_key):
    target = stack.resource("prod-eu")
    r = stack.post_alert(common_alert(target, condition="Resolved"))

    assert r.json()["disposition"] == "ignored"
    assert "nothing to stand down" in r.json()["reason"]


def test_the_quiet_period_runs_from_arrival_whatever_time_the_sender_wrote(stack: Stack, quiet_key):
    """A resolved alert dated at the end of time (or long ago) still stands the incident down,
    one quiet period after it arrived: the sender's clock neither breaks nor shortens it."""
    import time
    from datetime import UTC, datetime

    alert_id = str(uuid.uuid4())
    target = stack.resource("prod-eu")
    fired = stack.post_alert(common_alert(target, alert_id=alert_id)).json()
    incident_id = fired["incidentId"]
    stack.wait_gate(incident_id, "recovery")
    resolved = common_alert(target, alert_id=alert_id, condition="Resolved")
    resolved["data"]["essentials"]["resolvedDateTime"] = "9999-12-31T23:59:59Z"
    sent_at = datetime.now(UTC)
    sent = time.monotonic()

    answer = stack.post_alert(resolved).json()

    assert answer["disposition"] == "folded" and not answer["duplicate"]
    view = stack.wait_ended(incident_id, timeout_s=60)
    assert view["phase"] == "stood-down", view["timeline"][-3:]
    assert time.monotonic() - sent >= 3  # the session stack's quiet period
    records = stack.audit(incident_id)
    stood = [r for r in records if "standing down" in (r.reason or "")]
    assert stood, [(r.action, r.reason) for r in records][-10:]
    arrived = stood[-1].reason.split("arrived at ", 1)[1].split(" and", 1)[0]
    assert datetime.fromisoformat(arrived) >= sent_at.replace(microsecond=0)


def test_the_incident_view_counts_every_stored_signal(stack: Stack, quiet_key):
    """GET /api/incidents/{id} shows the stored counts, not the orchestration's last reading
    (it re-reads only at thresholds: 5, 25, ... signals)."""
    target = stack.resource("prod-eu")
    first = stack.post_alert(common_alert(target, rule="pg-weu-health")).json()
    incident_id = first["incidentId"]
    stack.wait_gate(incident_id, "recovery")
    for _ in range(6):
        assert stack.post_alert(common_alert(target, rule="pg-weu-health")).status_code == 202

    stored = stack.stores().signal_log.counts(incident_id)
    view = stack.incident(incident_id)

    assert stored.total == 7
    assert view["signals"] == stored.model_dump()


CALM = "calm-1"


@pytest.fixture
def calm_key(stack: Stack):
    """`calm-1`'s dependency key with no open incident before the test, and none left after.

    Its gates remind only after ten minutes, so what wakes its recovery gate within a minute
    is a doorbell, the end of a quiet period, or the gate's poll (every 60 s).
    """
    key = f"{CALM}.dependency"
    current = stack.stores().stores.incidents.current(key)
    if current is not None and current.ended_at is None:
        stack.end_incident(current.incident_id)
    yield key
    current = stack.stores().stores.incidents.current(key)
    if current is not None and current.ended_at is None:
        stack.end_incident(current.incident_id)


def test_resolved_storm_stands_down_one_quiet_period_after_the_last_signal(stack, calm_key):
    import time

    target = stack.resource(CALM, "redis")
    alerts = [(f"redis-{n}", str(uuid.uuid4())) for n in range(30)]
    fired = [common_alert(target, rule=r, alert_id=a, service="Platform") for r, a in alerts]
    started = stack.post_many(stack.post_alert_fresh, fired, concurrency=16)
    incident_id = started[0].json()["incidentId"]
    gate = stack.wait_gate(incident_id, "recovery")
    gate_id = next(g["instance_id"] for g in gate["gates"] if g["gate"] == "recovery")
    resolved = [
        common_alert(target, rule=r, alert_id=a, service="Platform", condition="Resolved")
        for r, a in alerts
    ]

    answers = stack.post_many(stack.post_alert_fresh, resolved, concurrency=16)
    last = time.monotonic()

    assert {a.json()["disposition"] for a in answers} == {"folded"}
    view = stack.wait_ended(incident_id, timeout_s=60)
    waited = time.monotonic() - last
    assert view["phase"] == "stood-down", view["timeline"][-3:]
    # The quiet period is 3 s; the gate's poll would have taken up to 60 s.
    assert waited < 20, f"stood down {waited:.1f} s after the last signal"
    history = stack.request(
        "GET",
        f"/runtime/webhooks/durabletask/instances/{gate_id}",
        params={"showHistory": "true"},
    ).json()["historyEvents"]
    rings = [e for e in history if e["EventType"] == "EventRaised"]
    # The resolved signals woke the gate, but not one event each.
    assert 1 <= len(rings) < len(resolved), len(rings)
