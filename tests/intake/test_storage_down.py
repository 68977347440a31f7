"""When storage cannot take a signal, the sender hears 503 with Retry-After, not a bare 500.

Azure Monitor retries a webhook on 503 (and 408, 429, 504), not on 500, so an alert that could
not be recorded must be answered so that it is sent again. The app runs on a devhost of its own
whose storage connection string names closed ports on 127.0.0.1, or a local listener that
reads each request and hangs up without answering (what a storage front end closing a pooled
keep-alive connection looks like to the client: an error azure-core does not retry for a POST).
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from devhost.azurite import connection_string
from devhost.pg import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def no_storage(devhost_factory):
    host = devhost_factory(
        app_dir=REPO,
        env={
            "AzureWebJobsStorage": connection_string(free_port(), free_port()),
            "DR_CONFIG": str(REPO / "config" / "workloads.yaml"),
            # Nothing here reaches Azure: management calls go to a closed local port.
            "DR_ARM_ENDPOINT": f"https://127.0.0.1:{free_port()}",
            "DR_ARM_STATIC_TOKEN": "no-azure",
        },
    )
    return host.start(timeout_s=90)


class _HangUpOn:
    """A proxy on 127.0.0.1 in front of one Azurite service: it relays every request, except
    that it reads a request whose request line starts with ``prefix`` and closes the
    connection without answering."""

    def __init__(self, upstream_port: int, prefix: bytes, times: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.prefix = prefix
        self.times = times  # hang up on the first so many matching requests (None: all)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.hung_up = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        import http.client

        reader = conn.makefile("rb")
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        try:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = reader.read(length) if length else b""
                if head.startswith(self.prefix) and (
                    self.times is None or self.hung_up < self.times
                ):
                    self.hung_up += 1
                    return
                upstream.sendall(head + body)
                answer = http.client.HTTPResponse(upstream)
                answer.begin()
                payload = answer.read()
                lines = [f"HTTP/1.1 {answer.status} {answer.reason}".encode()]
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        lines.append(f"{name}: {value}".encode())
                lines.append(f"Content-Length: {len(payload)}".encode())
                conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + payload)
        except OSError:
            return
        finally:
            upstream.close()
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _stack_behind(devhost_factory, tmp_path_factory, prefix: bytes, times: int | None = None):
    from devhost.azurite import Azurite

    azurite = Azurite(tmp_path_factory.mktemp("azurite-hangup"))
    azurite.start()
    proxy = _HangUpOn(azurite.table_port, prefix, times)
    host = devhost_factory(
        app_dir=REPO,
        env={
            "AzureWebJobsStorage": connection_string(azurite.blob_port, proxy.port),
            "DR_CONFIG": str(REPO / "config" / "workloads.yaml"),
            "DR_ARM_ENDPOINT": f"https://127.0.0.1:{free_port()}",
            "DR_ARM_STATIC_TOKEN": "no-azure",
        },
    )
    return host.start(timeout_s=90), proxy, azurite


@pytest.fixture(scope="module")
def counters_hang_up(devhost_factory, tmp_path_factory):
    """A devhost whose table storage hangs up on every merge into the counters table."""
    host, proxy, azurite = _stack_behind(
        devhost_factory, tmp_path_factory, b"PATCH /devstoreaccount1/drcounters("
    )
    yield host, proxy
    host.stop()
    proxy.close()
    azurite.stop()


@pytest.fixture(scope="module")
def first_signal_row_hangs_up(devhost_factory, tmp_path_factory):
    """A devhost whose table storage hangs up on storing the first signal on its incident
    (twice: the insert and the one resend after a dropped connection)."""
    host, proxy, azurite = _stack_behind(
        devhost_factory, tmp_path_factory, b"POST /devstoreaccount1/drincidentsignals", times=2
    )
    yield host, proxy
    host.stop()
    proxy.close()
    azurite.stop()


def _alert() -> bytes:
    import yaml

    env = yaml.safe_load((REPO / "config" / "workloads.yaml").read_text())["environments"]
    prod = env["prod-eu"]
    target = (
        f"/subscriptions/{prod['subscription_id']}/resourceGroups/{prod['resource_group']}"
        f"/providers/Microsoft.DBforPostgreSQL/flexibleServers/{prod['postgres']['primary']['name']}"
    )
    return json.dumps(
        {
            "schemaId": "azureMonitorCommonAlertSchema",
            "data": {
                "essentials": {
                    "alertId": f"/subscriptions/{prod['subscription_id']}/providers/"
                    "Microsoft.AlertsManagement/alerts/storage-down-1",
                    "alertRule": "pg-health",
                    "severity": "Sev1",
                    "signalType": "Activity Log",
                    "monitorCondition": "Fired",
                    "alertTargetIDs": [target],
                    "firedDateTime": "2026-11-30T22:07:00Z",
                },
                "alertContext": {},
            },
        }
    ).encode()


def test_an_alert_storage_cannot_take_is_503_with_retry_after(no_storage):
    import requests

    r = requests.post(
        f"{no_storage.url}/api/alerts",
        data=_alert(),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )

    assert r.status_code == 503, r.text
    assert r.headers.get("Retry-After", "").isdigit()
    assert "send it again" in r.json()["error"]


def test_bad_input_is_still_400_when_storage_is_down(no_storage):
    import requests

    r = requests.post(f"{no_storage.url}/api/alerts", data=b"{not json", timeout=30)

    assert r.status_code == 400


def _post(host, body: bytes):
    import requests

    return requests.post(
        f"{host.url}/api/alerts", data=body, headers={"Content-Type": "application/json"},
        timeout=120,
    )  # fmt: skip


def test_storage_that_hangs_up_without_answering_is_503_with_retry_after(counters_hang_up):
    host, proxy = counters_hang_up
    alert = _alert()
    first = _post(host, alert)
    assert first.status_code == 202, first.text  # it started the incident (no counters yet)
    second = json.loads(alert)
    second["data"]["essentials"]["alertId"] += "-again"
    r = _post(host, json.dumps(second).encode())

    assert proxy.hung_up >= 1  # the counters' merge reached storage and got no answer
    assert r.status_code == 503, r.text
    assert r.headers.get("Retry-After", "").isdigit()
    assert "send it again" in r.json()["error"]


def test_the_winners_resent_alert_starts_the_incident_its_failed_delivery_left(
    first_signal_row_hangs_up,
):
    """The first delivery won the index insert, then storage failed: 503, no orchestration.
    Azure Monitor sends it again; that delivery starts the incident at once (no 30 s wait for
    some later signal to rescue it)."""
    import time

    import requests

    host, proxy = first_signal_row_hangs_up
    alert = _alert()
    first = _post(host, alert)
    assert proxy.hung_up == 2
    assert first.status_code == 503, first.text

    again = _post(host, alert)

    assert again.status_code == 202, again.text
    incident_id = again.json()["incidentId"]
    assert incident_id
    status = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = requests.get(again.json()["statusQueryGetUri"], timeout=10)
        if r.status_code in (200, 202):  # 202 while it runs
            status = r.json().get("runtimeStatus")
            break
        time.sleep(0.2)
    assert status in ("Pending", "Running", "Completed"), (status, again.text)


def _with_issuer(devhost_factory, tmp_path_factory, env: dict[str, str]):
    """A devhost with ``env`` that trusts a local issuer, whose keys a thread serves; yields
    (host, issuer)."""
    import http.server

    from devhost.issuer import AUDIENCE, ISSUER, LocalIssuer

    issuer = LocalIssuer(tmp_path_factory.mktemp("issuer"), host_url="http://127.0.0.1")
    keys = json.dumps(issuer.jwks()).encode()

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(keys)))
            self.end_headers()
            self.wfile.write(keys)

        def log_message(self, *args):
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    auth = {
        "DR_AUTH_ISSUER": ISSUER,
        "DR_AUTH_AUDIENCE": AUDIENCE,
        "DR_AUTH_JWKS_URI": f"http://127.0.0.1:{server.server_address[1]}/keys",
        # Nothing here reaches Azure: management calls go to a closed local port.
        "DR_ARM_ENDPOINT": f"https://127.0.0.1:{free_port()}",
        "DR_ARM_STATIC_TOKEN": "no-azure",
    }
    host = devhost_factory(app_dir=REPO, env={**auth, **env}).start(timeout_s=90)
    yield host, issuer
    server.shutdown()


@pytest.fixture(scope="module")
def no_storage_with_auth(devhost_factory, tmp_path_factory):
    """A devhost without storage that trusts a local issuer."""
    yield from _with_issuer(
        devhost_factory,
        tmp_path_factory,
        {
            "AzureWebJobsStorage": connection_string(free_port(), free_port()),
            "DR_CONFIG": str(REPO / "config" / "workloads.yaml"),
        },
    )


@pytest.fixture(scope="module")
def broken_config_with_auth(devhost_factory, tmp_path_factory):
    """A devhost whose workloads file cannot be loaded, trusting a local issuer."""
    config = tmp_path_factory.mktemp("config") / "workloads.yaml"
    config.write_text("environments: [this is not a mapping\n")
    yield from _with_issuer(
        devhost_factory,
        tmp_path_factory,
        {
            "AzureWebJobsStorage": connection_string(free_port(), free_port()),
            "DR_CONFIG": str(config),
        },
    )


def _declare(host, issuer):
    """An operator's declaration of a regional outage of the demo environment."""
    import requests

    token = issuer.mint("oscar", ["DR.Operator"], 600)
    return requests.post(
        f"{host.url}/api/incidents",
        json={"environment": "prod-eu", "reason": "the primary region is gone"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )


def test_a_declaration_is_503_while_the_configuration_cannot_be_loaded(broken_config_with_auth):
    r = _declare(*broken_config_with_auth)

    assert r.status_code == 503, r.text
    assert "configuration" in r.json()["error"]


def test_a_decision_storage_cannot_take_is_503_with_retry_after(no_storage_with_auth):
    import requests

    host, issuer = no_storage_with_auth
    token = issuer.mint("alice", ["DR.Approver"], 600)
    r = requests.post(
        f"{host.url}/api/incidents/prod-eu.availability.1/approvals",
        json={"gate": "recovery", "decision": "approve", "comment": "go"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )

    assert r.status_code == 503, r.text
    assert r.headers.get("Retry-After", "").isdigit()
    assert "storage" in r.json()["error"]


def test_a_declaration_storage_cannot_take_is_503_with_retry_after(no_storage_with_auth):
    r = _declare(*no_storage_with_auth)

    assert r.status_code == 503, r.text
    assert r.headers.get("Retry-After", "").isdigit()
