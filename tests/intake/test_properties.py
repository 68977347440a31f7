"""Property-based checks on the running stack: no input gets a 5xx, and garbage starts nothing.

Example counts are bounded so the group stays fast; each example is one HTTP request.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.plugins.stack import Stack

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
# What a client can put in a header value: visible ASCII and inner spaces.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
ESSENTIAL_FIELDS = [
    "alertId",
    "alertRule",
    "severity",
    "signalType",
    "monitorCondition",
    "monitoringService",
    "alertTargetIDs",
    "configurationItems",
    "originAlertId",
    "firedDateTime",
    "resolvedDateTime",
    "description",
    "essentialsVersion",
]
essentials = st.fixed_dictionaries(
    {},
    optional={
        f: json_values | st.sampled_from(["Fired", "Resolved", "Sev0", "Sev4"])
        for f in ESSENTIAL_FIELDS
    },
)
alert_like = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {"essentials": essentials},
            optional={"alertContext": json_values, "customProperties": json_values},
        )
    },
    optional={"schemaId": st.sampled_from(["azureMonitorCommonAlertSchema", "x"]) | json_values},
)


def _started_count(stack: Stack) -> int:
    return len(stack.stores().stores.incidents.table.all())


# "." and ".." are path segments a client resolves away before sending (RFC 3986), so they
# never reach the route as an incident id.
incident_ids = st.text(min_size=1, max_size=40).filter(lambda t: t not in (".", ".."))


@SETTINGS
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_alerts_never_answer_5xx_for_any_body(stack: Stack, body):
    r = stack.post_alert(body, headers={"Content-Type": "application/json"})

    assert r.status_code in (202, 400, 413), r.text
    if r.status_code == 202:
        assert r.json()["disposition"] != "started"


@SETTINGS
@given(alert=alert_like)
def test_alert_shaped_garbage_starts_no_incident(stack: Stack, alert):
    r = stack.post_alert(alert)

    assert r.status_code in (202, 400), r.text
    if r.status_code == 202:
        body = r.json()
        assert body["disposition"] == "ignored", body
        assert body["reason"]


@SETTINGS
@given(events=st.lists(st.dictionaries(st.text(max_size=12), json_values, max_size=6), max_size=4))
def test_event_grid_webhook_never_fails_for_garbage_events(stack: Stack, events):
    before = _started_count(stack)

    r = stack.post_events(events)

    assert r.status_code == 200, r.text
    assert _started_count(stack) == before


@SETTINGS
@given(payload=json_values)
def test_event_grid_webhook_never_answers_5xx_for_any_json(stack: Stack, payload):
    r = stack.post_events(json.dumps(payload).encode())

    assert r.status_code < 500, r.text


@SETTINGS
@given(
    incident=incident_ids,
    body=json_values,
    authorization=st.none() | header_text | header_text.map(lambda t: "Bearer " + t),
)
def test_approvals_never_answer_5xx(stack: Stack, incident, body, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    path = f"/api/incidents/{quote(incident, safe='')}/approvals"

    r = stack.request("POST", path, data=json.dumps(body), headers=headers)

    assert r.status_code in (401, 404), r.text


@SETTINGS
@given(incident=incident_ids, body=json_values)
def test_approvals_with_a_valid_token_never_answer_5xx(stack: Stack, incident, body):
    path = f"/api/incidents/{quote(incident, safe='')}/approvals"

    r = stack.request(
        "POST", path, data=json.dumps(body), headers=stack.auth("alice", ["DR.Approver"])
    )

    assert r.status_code in (400, 404, 409), r.text


@SETTINGS
@given(body=json_values)
def test_card_relay_never_answers_5xx(stack: Stack, body):
    r = stack.request(
        "POST",
        "/api/approvals/card",
        data=json.dumps(body),
        headers=stack.auth("relay", ["DR.ApprovalRelay"]),
    )

    assert r.status_code in (400, 401, 409), r.text
