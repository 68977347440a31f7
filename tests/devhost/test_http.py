"""The Functions host's HTTP face: routes, methods, client functions, Event Grid, admin, sink."""

import gzip
import json
import time
from pathlib import Path

import pytest
import requests


def _eventgrid_log(host) -> list[dict]:
    path = Path(host.state_dir) / "eventgrid.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_host_status_is_running(devhost):
    r = requests.get(devhost.url + "/admin/host/status", timeout=5)
    assert r.status_code == 200
    assert r.json()["state"] == "Running"


def test_route_constraint_int_picks_the_id_route_with_query_params(devhost):
    r = requests.get(devhost.url + "/api/items/42", params={"q": "x"}, timeout=5)
    assert r.status_code == 200
    assert r.json() == {"by": "id", "id": "42", "q": "x"}


def test_route_constraint_alpha_picks_the_name_route(devhost):
    r = requests.put(devhost.url + "/api/items/ledger", timeout=5)
    assert r.json() == {"by": "name", "name": "ledger", "method": "PUT"}


def test_route_matching_no_constraint_is_404(devhost):
    r = requests.get(devhost.url + "/api/items/a1", timeout=5)
    assert r.status_code == 404
    assert "error" in r.json()


def test_wrong_method_on_a_known_route_is_405(devhost):
    r = requests.delete(devhost.url + "/api/items/42", timeout=5)
    assert r.status_code == 405


def test_unknown_route_is_404(devhost):
    assert requests.get(devhost.url + "/api/nothing/here", timeout=5).status_code == 404


def test_optional_parameter_body_headers_and_response_headers(devhost):
    r = requests.post(
        devhost.url + "/api/echo/abc", data=b"payload", headers={"x-test": "1"}, timeout=5
    )
    assert r.status_code == 201
    assert r.headers["x-reply"] == "yes"
    assert r.json() == {"rest": "abc", "body": "payload", "header": "1"}
    r = requests.get(devhost.url + "/api/echo", timeout=5)
    assert r.json()["rest"] is None


def test_function_exception_is_500_with_json_error_and_a_log_line(devhost):
    r = requests.get(devhost.url + "/api/explode", timeout=5)
    assert r.status_code == 500
    assert "bug in the app" in r.json()["error"]
    assert "executed explode (failed" in devhost.log()


def test_client_function_create_check_status_response_uses_the_request_origin(devhost):
    r = requests.post(
        devhost.url.replace("127.0.0.1", "localhost") + "/api/start/chain",
        json="Lisbon",
        timeout=10,
    )
    assert r.status_code == 202
    body = r.json()
    assert body["statusQueryGetUri"].startswith("http://localhost:")
    assert r.headers["Location"] == body["statusQueryGetUri"]
    _wait_for(lambda: requests.get(body["statusQueryGetUri"], timeout=5).status_code == 200)
    status = requests.get(body["statusQueryGetUri"], timeout=5).json()
    assert status["output"][0] == "Hello Lisbon"


def test_client_function_wait_for_completion_returns_the_output(devhost):
    r = requests.post(devhost.url + "/api/run/chain", json="Oslo", timeout=30)
    assert r.status_code == 200
    assert r.json() == ["Hello Oslo", "Hello Hello Oslo", "async Oslo"]
    assert (Path(devhost.state_dir) / "contexts.log").read_text().strip()


def test_client_function_wait_for_completion_times_out_into_check_status(devhost):
    r = requests.post(devhost.url + "/api/run/sleeper", json=30, timeout=30)
    assert r.status_code == 202
    iid = r.json()["id"]
    devhost.mgmt("POST", f"instances/{iid}/terminate", params={"reason": "done"})


def test_eventgrid_subscription_validation_answers_the_code_without_invoking(devhost):
    r = requests.post(
        devhost.url + "/runtime/webhooks/eventgrid",
        params={"functionName": "eg_plain"},
        headers={"aeg-event-type": "SubscriptionValidation"},
        json=[
            {
                "id": "v1",
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "subject": "",
                "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
                "eventTime": "2024-05-01T10:00:00Z",
                "dataVersion": "1",
            }
        ],
        timeout=5,
    )
    assert r.status_code == 200
    assert r.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert not [e for e in _eventgrid_log(devhost) if e["id"] == "v1"]


def test_eventgrid_schema_array_invokes_once_per_event(devhost):
    events = [
        {
            "id": f"eg-{i}",
            "topic": "/subscriptions/x",
            "subject": "s",
            "eventType": "Microsoft.Resources.ResourceWriteSuccess",
            "eventTime": "2024-05-01T10:00:00Z",
            "data": {"n": i},
            "dataVersion": "1",
        }
        for i in range(2)
    ]
    r = requests.post(
        devhost.url + "/runtime/webhooks/eventgrid",
        params={"functionName": "eg_plain"},
        headers={"aeg-event-type": "Notification"},
        json=events,
        timeout=5,
    )
    assert r.status_code == 200
    seen = [e for e in _eventgrid_log(devhost) if e["id"].startswith("eg-")]
    assert [e["id"] for e in seen] == ["eg-0", "eg-1"]
    assert {e["type"] for e in seen} == {"EventGridEvent"}


def test_cloudevents_options_handshake_echoes_the_origin(devhost):
    r = requests.options(
        devhost.url + "/runtime/webhooks/eventgrid",
        params={"functionName": "eg_cloud"},
        headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
        timeout=5,
    )
    assert r.status_code == 200
    assert r.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert r.headers["WebHook-Allowed-Rate"]


def test_cloudevent_single_delivery_reaches_the_function_as_the_sdk_cloudevent(devhost):
    event = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/subscriptions/x/resourceGroups/rg",
        "type": "Microsoft.ResourceNotifications.HealthResources.AvailabilityStatusChanged",
        "time": "2024-05-01T10:00:00Z",
        "data": {"status": "Unavailable"},
    }
    r = requests.post(
        devhost.url + "/runtime/webhooks/eventgrid",
        params={"functionName": "eg_cloud"},
        data=json.dumps(event),
        headers={"Content-Type": "application/cloudevents+json"},
        timeout=5,
    )
    assert r.status_code == 200
    got = next(e for e in _eventgrid_log(devhost) if e["id"] == "ce-1")
    assert got["type"] == "azure.core.messaging.CloudEvent"
    assert got["data"] == {"status": "Unavailable"}
    assert got["source"] == event["source"]


def test_cloudevents_batch_invokes_once_per_event(devhost):
    batch = [
        {"specversion": "1.0", "id": f"ceb-{i}", "source": "/s", "type": "t", "data": i}
        for i in range(3)
    ]
    r = requests.post(
        devhost.url + "/runtime/webhooks/eventgrid",
        params={"functionName": "eg_cloud"},
        data=json.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"},
        timeout=5,
    )
    assert r.status_code == 200
    ids = [e["id"] for e in _eventgrid_log(devhost) if e["id"].startswith("ceb-")]
    assert ids == ["ceb-0", "ceb-1", "ceb-2"]


def test_eventgrid_unknown_function_is_404_and_raising_function_is_500(devhost):
    url = devhost.url + "/runtime/webhooks/eventgrid"
    event = [{"id": "x", "eventType": "t", "subject": "s", "data": {}, "dataVersion": "1"}]
    assert (
        requests.post(url, params={"functionName": "nope"}, json=event, timeout=5).status_code
        == 404
    )
    r = requests.post(url, params={"functionName": "eg_fails"}, json=event, timeout=5)
    assert r.status_code == 500


def test_an_eventgrid_delivery_nested_too_deeply_is_a_json_400(devhost):
    url = devhost.url + "/runtime/webhooks/eventgrid"
    body = "[" * 5000 + "]" * 5000
    r = requests.post(
        url, params={"functionName": "eg_fails"}, data=body,
        headers={"Content-Type": "application/json"}, timeout=10,
    )  # fmt: skip
    assert r.status_code == 400
    assert "nested too deeply" in r.json()["error"]


def test_admin_runs_a_timer_function_by_hand(devhost):
    r = requests.post(devhost.url + "/admin/functions/tick", json={"input": ""}, timeout=5)
    assert r.status_code == 202
    ticks = Path(devhost.state_dir) / "ticks.log"
    _wait_for(lambda: ticks.exists() and ticks.read_text().strip())
    assert json.loads(ticks.read_text().splitlines()[-1])["past_due"] is False
    assert (
        requests.post(devhost.url + "/admin/functions/nope", json={}, timeout=5).status_code == 404
    )
    assert (
        requests.post(devhost.url + "/admin/functions/chain", json={}, timeout=5).status_code == 400
    )


def test_sink_stores_messages_per_channel(devhost):
    url = devhost.url + "/.devhost/sink"
    r = requests.post(url + "/teams", json={"type": "AdaptiveCard", "n": 1}, timeout=5)
    assert r.status_code == 201
    requests.post(url + "/webhook", json={"text": "hi"}, timeout=5)
    teams = requests.get(url + "/teams", timeout=5).json()["messages"]
    assert [m["body"] for m in teams] == [{"type": "AdaptiveCard", "n": 1}]
    assert teams[0]["received_at"]
    channels = {m["channel"] for m in requests.get(url, timeout=5).json()["messages"]}
    assert {"teams", "webhook"} <= channels
    assert requests.post(url + "/teams", data=b"not json", timeout=5).status_code == 400


def test_enforced_keys_refuse_requests_without_the_key(devhost_factory):
    host = devhost_factory(args=("--enforce-keys",)).start()
    keys = json.loads((Path(host.state_dir) / "keys.json").read_text())
    assert keys["default"] in host.log()
    url = host.url + "/api/start/chain"
    assert requests.post(url, json="x", timeout=5).status_code == 401
    r = requests.post(url, json="x", params={"code": keys["default"]}, timeout=10)
    assert r.status_code == 202
    assert f"code={keys['default']}" in r.json()["statusQueryGetUri"]
    assert requests.get(host.url + "/api/items/1", timeout=5).status_code == 200  # anonymous
    mgmt = host.url + "/runtime/webhooks/durabletask/instances/"
    assert requests.get(mgmt, timeout=5).status_code == 401
    assert requests.get(mgmt, headers={"x-functions-key": keys["default"]}, timeout=5).ok
    host.stop()


def test_the_apps_sample_orchestration_runs_on_devhost(devhost_factory):
    """The repository's own app: the sample starter, chain, fan-out and the nod wait."""
    from tests.plugins.devhost import REPO

    host = devhost_factory(app_dir=REPO).start()
    r = requests.post(host.url + "/api/samples/hello", json=["Ada", "Grace"], timeout=10)
    assert r.status_code == 202
    iid = r.json()["id"]
    host.wait(iid, statuses=("Running",))
    _wait_for(lambda: (host.status(iid) or {}).get("customStatus"))
    assert host.raise_event(iid, "nod", True) == 202
    status = host.wait(iid, timeout_s=15)
    assert status["output"] == {
        "chained": ["Hello Ada", "Hello Grace"],
        "fanned": ["Hello Ada", "Hello Grace"],
        "nodded": True,
    }
    assert requests.post(host.url + "/api/samples/hello", data=b"{", timeout=10).status_code == 400
    host.stop()


def test_eventgrid_function_with_a_durable_client_starts_an_orchestration(devhost):
    event = {
        "id": f"start-{time.time_ns()}",
        "subject": "Vienna",
        "eventType": "t",
        "eventTime": "2024-05-01T10:00:00Z",
        "data": {},
        "dataVersion": "1",
    }
    r = requests.post(
        devhost.url + "/runtime/webhooks/eventgrid",
        params={"functionName": "eg_starts"},
        json=[event],
        timeout=10,
    )
    assert r.status_code == 200
    status = devhost.wait(f"eg-{event['id']}")
    assert status["output"][0] == "Hello Vienna"


def test_admin_runs_an_eventgrid_function_with_the_event_as_input(devhost):
    event = {"id": f"admin-{time.time_ns()}", "subject": "Bern", "eventType": "t", "data": {}}
    r = requests.post(
        devhost.url + "/admin/functions/eg_starts", json={"input": json.dumps(event)}, timeout=5
    )
    assert r.status_code == 202
    _wait_for(lambda: devhost.status(f"eg-{event['id']}"))
    assert devhost.wait(f"eg-{event['id']}")["output"][0] == "Hello Bern"


def test_encoded_slash_stays_inside_its_route_segment(devhost):
    r = requests.put(devhost.url + "/api/items/a%2Fb", timeout=5)
    assert r.status_code == 404  # "a/b" is one segment and not alpha, not two segments
    r = requests.post(devhost.url + "/api/echo/x%2Fy", timeout=5)
    assert r.json()["rest"] == "x/y"


def test_a_body_shorter_than_its_content_length_is_408_once_the_body_timeout_passes(
    devhost_factory,
):
    import socket
    from urllib.parse import urlparse

    host = devhost_factory(env={"DEVHOST_BODY_TIMEOUT_S": "1"}).start()
    address = urlparse(host.url)
    with socket.create_connection((address.hostname, address.port), timeout=20) as conn:
        conn.sendall(
            b"POST /api/echo/abc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"only": "part'
        )
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 15
    # The host still serves everyone else.
    assert requests.get(host.url + "/api/items/1", timeout=5).status_code == 200
    host.stop()


# A gzip body that holds 16 MiB of JSON in about 16 KB: what a host that decompresses it reads.
GZIP_BOMB = gzip.compress(b"[" + b" " * (16 * 1024**2) + b"]")
ENCODED_BODIES = {
    "gzip-valid": ("gzip", gzip.compress(b'{"a": 1}')),
    "gzip-bomb": ("gzip", GZIP_BOMB),
    "gzip-invalid": ("gzip", b"this is not gzip"),
    "deflate-invalid": ("deflate", b"zz"),
    "br": ("br", b"\x0b\x02\x80{}\x03"),
    "zstd": ("zstd", b"zz"),
    "gzip-then-identity": ("gzip, identity", gzip.compress(b"{}")),
}
BODY_ROUTES = {
    "http-trigger": "/api/echo/x",
    "event-grid": "/runtime/webhooks/eventgrid?functionName=eg_plain",
    "admin": "/admin/functions/eg_plain",
    "durable-api": "/runtime/webhooks/durabletask/instances/none/raiseEvent/x",
    "sink": "/.devhost/sink/encoded",
}


@pytest.mark.parametrize("route", list(BODY_ROUTES), ids=list(BODY_ROUTES))
@pytest.mark.parametrize("encoded", list(ENCODED_BODIES), ids=list(ENCODED_BODIES))
def test_a_compressed_body_is_refused_415_naming_its_encoding(devhost, route, encoded):
    coding, body = ENCODED_BODIES[encoded]

    r = requests.post(
        devhost.url + BODY_ROUTES[route],
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
        timeout=30,
    )

    assert r.status_code == 415, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert coding.split(",")[0] in r.json()["error"]
    assert r.headers["Accept-Encoding"] == "identity"


def test_an_identity_encoded_body_is_served(devhost):
    r = requests.post(
        devhost.url + "/api/echo/x",
        data=b'{"a": 1}',
        headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
        timeout=5,
    )

    assert r.status_code == 201
    assert r.json()["body"] == '{"a": 1}'


@pytest.mark.parametrize(
    ("content_type", "body", "says", "not_says"),
    [
        (
            "application/cloudevents-batch+json",
            {"specversion": "1.0", "id": "b", "source": "/s", "type": "t"},
            ["CloudEvents batch", "JSON array", "not an object"],
            ["Event Grid schema"],
        ),
        (
            "application/cloudevents+json",
            [{"specversion": "1.0", "id": "c", "source": "/s", "type": "t"}],
            ["one event", "JSON object", "not an array", "application/cloudevents-batch+json"],
            ["every event"],
        ),
        (
            "application/json",
            {"id": "e", "eventType": "t"},
            ["Event Grid schema", "JSON array", "not an object"],
            [],
        ),
        (
            "application/cloudevents-batch+json",
            [{"specversion": "1.0", "id": "d", "source": "/s", "type": "t"}, "x"],
            ["event 1", "CloudEvents batch", "JSON object", "not a string"],
            [],
        ),
    ],
    ids=["batch-of-one-object", "single-as-array", "eventgrid-object", "batch-with-a-string"],
)
def test_event_grid_delivery_of_the_wrong_shape_is_400_saying_what_its_type_needs(
    devhost, content_type, body, says, not_says
):
    r = requests.post(
        devhost.url + "/runtime/webhooks/eventgrid",
        params={"functionName": "eg_cloud"},
        data=json.dumps(body),
        headers={"Content-Type": content_type},
        timeout=5,
    )

    assert r.status_code == 400
    error = r.json()["error"]
    assert all(words in error for words in says), error
    assert not any(words in error for words in not_says), error
