"""Intake edges on the running stack: bad bodies, ignored signals, the Event Grid webhook."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.signals import MAX_ALERT_BYTES
from tests.plugins.stack import Stack, as_cloudevent, common_alert, health_event

UNKNOWN = (
    "/subscriptions/99999999-0000-0000-0000-000000000009/resourceGroups/rg-elsewhere/providers/"
    "Microsoft.DBforPostgreSQL/flexibleServers/someone-elses"
)


def _no_incident_for(stack: Stack, environment: str) -> bool:
    return not [i for i in stack.incidents(environment)]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "not JSON"),
        (b"", "JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"an alert"', "JSON object"),
        (b'{"schemaId": "azureMonitorCommonAlertSchema"}', "data"),
        (b'{"data": {"essentials": "Fired"}}', "essentials"),
        (b'{"data": []}', "data"),
        (b"\xff\xfe\x00garbage", "JSON"),
    ],
)
def test_unusable_alert_body_is_400_naming_what_is_wrong(stack: Stack, body, named):
    r = stack.post_alert(body, headers={"Content-Type": "application/json"})

    assert r.status_code == 400, r.text
    assert named.lower() in r.json()["error"].lower()


def test_alert_above_the_size_limit_is_413(stack: Stack):
    alert = common_alert(stack.resource("edge-1"))
    alert["data"]["alertContext"]["padding"] = "x" * (MAX_ALERT_BYTES + 1)

    r = stack.post_alert(alert)

    assert r.status_code == 413
    assert str(MAX_ALERT_BYTES) in r.json()["error"]
    assert _no_incident_for(stack, "edge-1")


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_compressed_alert_is_refused_with_415_and_starts_nothing(stack: Stack, coding):
    alert = json.dumps(common_alert(stack.resource("edge-1"))).encode()
    body = gzip.compress(alert) if coding == "gzip" else b"not brotli"

    r = stack.post_alert(
        body, headers={"Content-Type": "application/json", "Content-Encoding": coding}
    )

    assert r.status_code == 415, r.text
    assert coding in r.json()["error"]
    assert _no_incident_for(stack, "edge-1")


def test_alert_for_an_unknown_resource_is_ignored_with_the_reason(stack: Stack):
    r = stack.post_alert(common_alert(UNKNOWN, rule="elsewhere"))

    assert r.status_code == 202
    body = r.json()
    assert body["disposition"] == "ignored" and body["incidentId"] is None
    assert "no environment" in body["reason"] and "someone-elses" in body["reason"]
    assert not [i for i in stack.instances("") if "elsewhere" in i["instanceId"]]


def test_alert_with_all_essentials_null_is_ignored_not_rejected(stack: Stack):
    fields = ("alertId", "alertRule", "severity", "monitorCondition", "alertTargetIDs")
    r = stack.post_alert({"data": {"essentials": dict.fromkeys(fields)}})

    assert r.status_code == 202
    assert r.json()["disposition"] == "ignored"


def test_informational_alert_is_ignored_and_starts_nothing(stack: Stack):
    alert = common_alert(stack.resource("edge-2"), severity="Sev4", service="Platform")

    r = stack.post_alert(alert)

    assert r.status_code == 202
    body = r.json()
    assert body["disposition"] == "ignored"
    assert "informational" in body["reason"]
    assert _no_incident_for(stack, "edge-2")
    assert stack.instances("edge-2.") == []


def test_ignored_signals_are_recorded_on_the_intake_trail(stack: Stack):
    rule = f"trail-{uuid.uuid4().hex[:8]}"
    stack.post_alert(common_alert(UNKNOWN, rule=rule))

    trail = f"intake.{datetime.now(UTC):%Y%m%d}"
    records = [d for d in stack.dispositions(trail) if d["actor"] == rule]

    assert [r["action"] for r in records] == ["signal.ignored"]
    assert "no environment" in records[0]["reason"]


# --------------------------------------------------------------------------- declarations


@pytest.mark.parametrize("since", ["not a date", "2026-12-04T09:00:00", "2026-12-04"])
def test_declaration_with_a_suspected_since_that_is_no_time_is_400_and_starts_nothing(
    stack: Stack, since
):
    body = {"environment": "edge-8", "reason": "ledger looks wrong", "suspected_since": since}

    r = stack.request(
        "POST", "/api/incidents", json=body, headers=stack.auth("olivia", ["DR.Operator"])
    )

    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "suspected_since" in error and "ISO 8601" in error and "2026-12-04T09:00:00Z" in error
    assert _no_incident_for(stack, "edge-8")


@pytest.mark.parametrize(
    ("since", "kept"),
    [
        ("2026-12-04T09:00:00Z", "2026-12-04T09:00:00Z"),
        ("2026-12-04T10:30:00+01:30", "2026-12-04T09:00:00Z"),
        ("2026-12-04T09:00:00.250000+00:00", "2026-12-04T09:00:00.250000Z"),
    ],
)
def test_declared_suspected_since_is_kept_in_utc(since, kept):
    from triggers.incidents import Declaration

    declaration = Declaration(environment="prod-eu", reason="r", suspected_since=since)

    assert declaration.suspected_since == kept


# ---------------------------------------------------------------------------- Event Grid


def test_event_grid_subscription_validation_is_answered(stack: Stack):
    code = str(uuid.uuid4())
    event = {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/00000000-0000-0000-0000-000000000001",
        "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-11-30T22:00:00Z",
        "dataVersion": "1",
        "data": {"validationCode": code, "validationUrl": "https://example.invalid/validate"},
    }

    r = stack.post_events([event], headers={"aeg-event-type": "SubscriptionValidation"})

    assert r.status_code == 200
    assert r.json() == {"validationResponse": code}


def test_cloudevents_abuse_protection_handshake_is_answered(stack: Stack):
    r = stack.request(
        "OPTIONS",
        "/runtime/webhooks/eventgrid",
        params={"functionName": "eventgrid_signals"},
        headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
    )

    assert r.status_code == 200
    assert r.headers["WebHook-Allowed-Origin"] in ("eventgrid.azure.net", "*")


@pytest.mark.parametrize("cloudevents", [False, True], ids=["eventgrid", "cloudevents"])
def test_event_for_a_known_resource_folds_into_an_incident(stack: Stack, cloudevents):
    environment = "edge-3" if cloudevents else "edge-4"
    event = health_event(stack.resource(environment))
    payload = as_cloudevent(event) if cloudevents else [event]

    r = stack.post_events(payload, cloudevents=cloudevents)

    assert r.status_code == 200
    rows = stack.index_rows(f"{environment}.availability")
    assert len(rows) >= 1
    trail = stack.dispositions(rows[-1]["incident_id"])
    assert any(
        d["action"] in ("signal.started", "signal.folded") and event["id"] in json.dumps(d)
        for d in trail
    )


def _recovery(event: dict) -> dict:
    """The same AvailabilityStatusChanged event saying the resource is available again."""
    properties = event["data"]["resourceInfo"]["properties"]
    properties.update(availabilityState="Available", previousAvailabilityState="Unavailable")
    return event


def test_cloudevents_recovery_event_is_a_resolved_signal_that_starts_nothing(stack: Stack):
    event = _recovery(health_event(stack.resource("edge-6")))

    r = stack.post_events(as_cloudevent(event), cloudevents=True)

    assert r.status_code == 200, r.text
    assert stack.index_rows("edge-6.availability") == []
    trail = f"intake.{datetime.now(UTC):%Y%m%d}"
    [recorded] = [d for d in stack.dispositions(trail) if d["dedupe_key"] == f"event:{event['id']}"]
    assert recorded["action"] == "signal.ignored"
    assert (recorded["condition"], recorded["severity"]) == ("resolved", 4)
    kept = json.loads(recorded["raw"])
    assert kept["data"] == event["data"], "the copy kept is the delivered event with its data"


def test_cloudevents_outage_event_carries_its_facts(stack: Stack):
    event = health_event(stack.resource("edge-7"))

    r = stack.post_events(as_cloudevent(event), cloudevents=True)

    assert r.status_code == 200, r.text
    [row] = stack.index_rows("edge-7.availability")
    log = stack.stores().signal_log
    key = f"event:{event['id']}"
    [signal] = [s for s in log.signals(row["incident_id"]) if s.dedupe_key == key]
    assert signal.schema_id == "CloudEvents"
    assert signal.severity == 1
    assert signal.facts["availability_state"] == "Unavailable"
    assert signal.facts["previous_availability_state"] == "Available"
    assert signal.facts["target_resource_type"] == "Microsoft.DBforPostgreSQL/flexibleServers"
    assert signal.resource_ids == [stack.resource("edge-7")]
    kept = json.loads(log.raw(row["incident_id"], signal))
    assert kept["data"] == event["data"] and kept["type"] == event["eventType"]


GARBAGE_EVENTS = [
    {},
    {"id": None, "eventType": None},
    {"id": "x", "eventType": 7, "data": "not an object"},
    {"id": "y", "eventType": "Microsoft.Resources.ResourceWriteSuccess", "data": [1, 2]},
    {"id": "z", "type": "Microsoft.KeyVault.SecretNearExpiry", "specversion": "1.0"},
    {"id": "w", "eventType": "Something.Else", "subject": {"deep": [None]}, "data": None},
]


@pytest.mark.parametrize("event", GARBAGE_EVENTS)
def test_event_grid_function_never_fails_for_garbage(stack: Stack, event):
    trail = f"intake.{datetime.now(UTC):%Y%m%d}"
    before = len(stack.dispositions(trail))

    r = stack.post_events([event])

    assert r.status_code == 200, r.text
    assert len(stack.dispositions(trail)) > before, "the event's disposition is recorded"


def test_event_grid_duplicate_event_id_changes_nothing(stack: Stack):
    event = health_event(stack.resource("edge-5"))
    stack.post_events([event])
    rows = stack.index_rows("edge-5.availability")
    incident_id = rows[-1]["incident_id"]
    counts = stack.stores().signal_log.counts(incident_id)

    for _ in range(3):
        assert stack.post_events([event]).status_code == 200
        assert stack.post_events(as_cloudevent(event), cloudevents=True).status_code == 200

    assert [r["RowKey"] for r in stack.index_rows("edge-5.availability")] == [
        r["RowKey"] for r in rows
    ]
    assert stack.stores().signal_log.counts(incident_id) == counts


def test_event_grid_delivery_that_is_not_json_is_refused_by_the_host(stack: Stack):
    r = stack.post_events(b"{oops")

    assert r.status_code == 400
