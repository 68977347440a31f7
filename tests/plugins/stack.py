"""The whole product on one machine, as a subprocess, for end-to-end tests.

`python -m drctl serve` with Azurite, the local token issuer, the message sink and (optionally)
local Azure from config/topology.yaml, on a free port with a temporary state dir and a test
workloads file whose gate timings and quiet periods are short. The `Stack` object has the
helpers a test needs: mint tokens, post alerts and events, declare and approve, wait for a
phase, read the sink, the incident index, the durable instances and the local Azure control API.

Fixtures: `stack` (session-wide, with local Azure) and `make_stack` (a factory for a stack of
one's own, e.g. without topology or with other timings); both stop what they started.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from devhost.pg import free_port

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO / "config" / "topology.yaml"
WORKLOADS = REPO / "config" / "workloads.yaml"
GATES = ("recovery", "rpo", "fence", "cutover", "signoff")
TERMINAL_PHASES = frozenset({"recovered", "stood-down", "aborted", "needs-operator", "ha-handled"})
_LOCALAZURE_LINE = re.compile(r"local Azure listening on (https://127\.0\.0\.1:\d+)")


# ---------------------------------------------------------------------------- workloads file


@dataclass
class EnvSpec:
    """How one environment of the test workloads file differs from config/workloads.yaml.

    ``resource_group`` other than the demo's gives the environment resources that local Azure
    does not have, so its database never answers (the probes time out quickly).
    """

    resource_group: str | None = None
    timings: dict[str, str] = field(default_factory=lambda: short(30))
    quiet_period: str = "3s"
    gate_timings: dict[str, dict[str, str]] = field(default_factory=dict)
    # Every workload's RPO target (e.g. "1s" so that any measured lag asks the rpo gate).
    rpo: str | None = None
    # Distinct approvals a gate needs, where it differs from the demo's.
    required_approvals: dict[str, int] = field(default_factory=dict)


def workloads_document(environments: dict[str, EnvSpec]) -> dict:
    """The demo workloads file with the demo environment cloned once per entry.

    The entry named ``prod-eu`` keeps the demo's resources (local Azure answers for them);
    others get their own resource group so that every alert names exactly one environment.
    """
    base = yaml.safe_load(WORKLOADS.read_text())
    demo = base["environments"]["prod-eu"]
    out: dict[str, Any] = {}
    for name, spec in environments.items():
        env = copy.deepcopy(demo)
        if spec.resource_group:
            env["resource_group"] = spec.resource_group
        elif name != "prod-eu":
            env["resource_group"] = f"rg-{name}"
        env["recovery"]["quiet_period"] = spec.quiet_period
        for gate in GATES:
            env["approvals"][gate]["timings"] = dict(spec.gate_timings.get(gate, spec.timings))
        for gate, count in spec.required_approvals.items():
            env["approvals"][gate]["required_approvals"] = count
        if spec.rpo is not None:
            for workload in env["workloads"].values():
                workload["rpo"] = spec.rpo
        out[name] = env
    return {"version": base.get("version", 1), "environments": out}


def resource_id(environment: str, kind: str = "postgres-primary", *, stack_doc: dict) -> str:
    """The ARM id of one of the environment's resources as the test workloads file has it."""
    env = stack_doc["environments"][environment]
    prefix = f"/subscriptions/{env['subscription_id']}/resourceGroups/{env['resource_group']}"
    if kind == "postgres-primary":
        server = env["postgres"]["primary"]["name"]
        return f"{prefix}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{server}"
    if kind == "postgres-replica":
        server = env["postgres"]["replica"]["name"]
        return f"{prefix}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{server}"
    if kind == "aks-primary":
        cluster = env["aks"]["primary"]["name"]
        return f"{prefix}/providers/Microsoft.ContainerService/managedClusters/{cluster}"
    if kind == "key-vault":
        return f"{prefix}/providers/Microsoft.KeyVault/vaults/{env['key_vault']['name']}"
    if kind == "redis":
        return f"{prefix}/providers/Microsoft.Cache/redis/{env['redis']['name']}"
    raise ValueError(f"no resource kind {kind!r}")


# ---------------------------------------------------------------------------- payloads


def common_alert(
    target: str,
    *,
    rule: str = "pg-resource-health",
    condition: str = "Fired",
    alert_id: str | None = None,
    severity: str = "Sev0",
    service: str = "Resource Health",
    health: str = "Unavailable",
) -> dict:
    """A common-schema alert on ``target`` (Resource Health by default; a metric otherwise)."""
    alert_id = alert_id or str(uuid.uuid4())
    subscription = target.split("/")[2] if target.startswith("/subscriptions/") else "0"
    essentials = {
        "alertId": f"/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/"
        + alert_id,
        "alertRule": rule,
        "severity": severity,
        "signalType": "Activity Log" if service == "Resource Health" else "Metric",
        "monitorCondition": condition,
        "monitoringService": service,
        "alertTargetIDs": [target],
        "firedDateTime": "2026-11-30T22:07:00Z",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if condition == "Resolved":
        essentials["resolvedDateTime"] = "2026-11-30T22:17:00Z"
    if service == "Resource Health":
        context: dict = {
            "eventSource": "ResourceHealth",
            "level": "Critical",
            "properties": {
                "title": "Server unavailable",
                "currentHealthStatus": health if condition == "Fired" else "Available",
                "previousHealthStatus": "Available" if condition == "Fired" else health,
                "type": "Downtime",
                "cause": "PlatformInitiated",
            },
            "status": "Active" if condition == "Fired" else "Resolved",
        }
    else:
        context = {
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "condition": {
                "windowSize": "PT5M",
                "allOf": [
                    {
                        "metricName": "cpu_percent",
                        "operator": "GreaterThan",
                        "threshold": "90",
                        "timeAggregation": "Average",
                        "metricValue": 97.0,
                    }
                ],
            },
        }
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": essentials, "alertContext": context},
    }


def health_event(target: str, *, event_id: str | None = None, state: str = "Unavailable") -> dict:
    """A HealthResources AvailabilityStatusChanged event (Event Grid schema) for ``target``."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "topic": "/subscriptions/" + target.split("/")[2],
        "subject": target,
        "eventType": "Microsoft.ResourceNotifications.HealthResources.AvailabilityStatusChanged",
        "eventTime": "2026-11-30T22:06:31Z",
        "dataVersion": "1",
        "metadataVersion": "1",
        "data": {
            "resourceInfo": {
                "id": target + "/providers/Microsoft.ResourceHealth/availabilityStatuses/current",
                "name": "current",
                "type": "Microsoft.ResourceHealth/availabilityStatuses",
                "properties": {
                    "targetResourceId": target,
                    "targetResourceType": "Microsoft.DBforPostgreSQL/flexibleServers",
                    "occurredTime": "2026-11-30T22:06:30Z",
                    "previousAvailabilityState": "Available",
                    "availabilityState": state,
                },
            },
            "operationalInfo": {"resourceEventTime": "2026-11-30T22:06:30Z"},
            "apiVersion": "2023-12-01",
        },
    }


def as_cloudevent(event: dict) -> dict:
    """The same event in the CloudEvents 1.0 schema."""
    return {
        "id": event["id"],
        "source": event["topic"],
        "subject": event["subject"],
        "type": event["eventType"],
        "time": event["eventTime"],
        "specversion": "1.0",
        "data": event["data"],
    }


# ---------------------------------------------------------------------------- the stack


class StackError(RuntimeError):
    """The stack did not start, or a wait ran out; the message carries the host's log tail."""


class Stack:
    """One `drctl serve` with its services; `start()`, use the helpers, `stop()`."""

    def __init__(
        self,
        environments: dict[str, EnvSpec] | None = None,
        *,
        topology: Path | None = TOPOLOGY,
        root: Path | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.owns_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="dr-stack-"))
        self.state_dir = self.root / "state"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.topology = topology
        self.workloads = workloads_document(environments or {"prod-eu": EnvSpec()})
        self.workloads_path = self.root / "workloads.yaml"
        self.log_path = self.root / "host.log"
        self.extra_env = env or {}
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.control_url: str | None = None
        self.session = requests.Session()

    # -- lifecycle --------------------------------------------------------------------

    def start(self, timeout_s: float = 180.0) -> Stack:
        self.root.mkdir(parents=True, exist_ok=True)
        self.workloads_path.write_text(yaml.safe_dump(self.workloads, sort_keys=False))
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DR_CONFIG": str(self.workloads_path),
            "DR_NOTIFY_TEAMS_URL": f"{self.url}/.devhost/sink/teams",
            "DR_NOTIFY_WEBHOOK_URL": f"{self.url}/.devhost/sink/webhook",
            **self.extra_env,
        }
        # The app reads the action token key from the state dir's issuer, not from our shell.
        env.pop("DR_ACTION_TOKEN_KEY", None)
        cmd = [sys.executable, "-m", "drctl", "serve", "--port", str(self.port)]
        cmd += ["--state-dir", str(self.state_dir)]
        if self.topology is not None:
            cmd += ["--topology", str(self.topology)]
        cmd += list(self.args)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"the stack exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                r = requests.get(self.url + "/admin/host/status", timeout=2)
                if r.status_code == 200 and r.json().get("state") == "Running":
                    self._find_control_url()
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        tail = self.tail()
        self.stop()
        raise StackError(f"the stack did not start within {timeout_s:.0f}s:\n{tail}")

    def _find_control_url(self) -> None:
        if self.topology is None:
            return
        match = _LOCALAZURE_LINE.search(self.log_path.read_text(errors="replace"))
        self.control_url = match.group(1) + "/_local" if match else None

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (serve stops its services in order), SIGKILL for the group if it hangs."""
        self.session.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.owns_root:
            # PostgreSQL data, archives and Azurite's files: gigabytes over a session.
            shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- identities -------------------------------------------------------------------

    def issuer(self):
        from devhost.issuer import LocalIssuer

        return LocalIssuer(self.state_dir, host_url=self.url)

    def token(self, user: str, roles: Iterable[str] = (), ttl: float = 3600, **kw) -> str:
        """A bearer token from the stack's issuer (``mint`` keywords: audience, issuer, now)."""
        return self.issuer().mint(user, list(roles), ttl, **kw)

    def auth(self, user: str, roles: Iterable[str] = (), **kw) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, roles, **kw)}"}

    def action_signer(self):
        """The signer the app uses for card action tokens (the key in the state dir)."""
        from shared.auth import ActionTokenSigner

        return ActionTokenSigner(self.issuer().action_token_key().encode())

    # -- HTTP -------------------------------------------------------------------------

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return self.session.request(method, self.url + path, **kw)

    def post_alert(self, payload: dict | bytes | str, **kw) -> requests.Response:
        if isinstance(payload, dict | list):
            kw["json"] = payload
        else:
            kw["data"] = payload
        return self.request("POST", "/api/alerts", **kw)

    def post_events(
        self, events: list | dict | bytes, *, cloudevents: bool = False, headers=None, **kw
    ) -> requests.Response:
        """Deliver events to the Event Grid trigger through the host's webhook."""
        mime = "application/cloudevents+json" if cloudevents else "application/json"
        hdrs = {"Content-Type": f"{mime}; charset=utf-8", "aeg-event-type": "Notification"}
        hdrs.update(headers or {})
        data = events if isinstance(events, bytes) else json.dumps(events).encode()
        return self.request(
            "POST",
            "/runtime/webhooks/eventgrid",
            params={"functionName": "eventgrid_signals"},
            data=data,
            headers=hdrs,
            **kw,
        )

    def post_many(
        self, send: Callable[[Any], requests.Response], items: list, concurrency: int = 32
    ) -> list[requests.Response]:
        """``send(item)`` for every item from ``concurrency`` threads; answers in item order."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(send, items))

    def post_alert_fresh(self, payload: dict | bytes | str, **kw) -> requests.Response:
        """Like post_alert but on a connection of its own (safe from many threads)."""
        if isinstance(payload, dict | list):
            kw["json"] = payload
        else:
            kw["data"] = payload
        kw.setdefault("timeout", 120)
        return requests.post(self.url + "/api/alerts", **kw)

    def declare(
        self,
        environment: str,
        reason: str,
        *,
        path: str | None = None,
        user: str = "olivia",
        roles: Iterable[str] = ("DR.Operator",),
    ) -> requests.Response:
        body = {"environment": environment, "reason": reason}
        if path:
            body["path"] = path
        return self.request("POST", "/api/incidents", json=body, headers=self.auth(user, roles))

    def decide(
        self,
        incident_id: str,
        gate: str,
        decision: str = "approve",
        *,
        user: str = "alice",
        roles: Iterable[str] = ("DR.Approver",),
        comment: str = "",
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        return self.request(
            "POST",
            f"/api/incidents/{incident_id}/approvals",
            json={"gate": gate, "decision": decision, "comment": comment},
            headers=headers if headers is not None else self.auth(user, roles),
        )

    def relay_card(
        self,
        action_token: str,
        responder: str,
        *,
        responder_id: str | None = None,
        comment: str = "",
        relay_roles: Iterable[str] = ("DR.ApprovalRelay",),
    ) -> requests.Response:
        body = {"actionToken": action_token, "responder": responder, "comment": comment}
        if responder_id:
            body["responderId"] = responder_id
        return self.request(
            "POST",
            "/api/approvals/card",
            json=body,
            headers=self.auth("logic-app-relay", relay_roles),
        )

    def incident(self, incident_id: str) -> dict | None:
        r = self.request("GET", f"/api/incidents/{incident_id}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def incidents(self, environment: str | None = None) -> list[dict]:
        params = {"environment": environment} if environment else {}
        r = self.request("GET", "/api/incidents", params=params)
        r.raise_for_status()
        return r.json()["incidents"]

    def sink(self, channel: str | None = None) -> list[dict]:
        r = self.request("GET", "/.devhost/sink" + (f"/{channel}" if channel else ""))
        r.raise_for_status()
        return r.json()["messages"]

    def instances(self, prefix: str) -> list[dict]:
        """Durable instances whose id starts with ``prefix`` (every page)."""
        out: list[dict] = []
        token = None
        while True:
            headers = {"x-ms-continuation-token": token} if token else {}
            r = self.request(
                "GET",
                "/runtime/webhooks/durabletask/instances",
                params={"instanceIdPrefix": prefix, "top": 500},
                headers=headers,
            )
            r.raise_for_status()
            out.extend(r.json())
            token = r.headers.get("x-ms-continuation-token")
            if not token:
                return out

    def status(self, instance_id: str) -> dict | None:
        """The durable status of one instance (output included), None when there is none."""
        r = self.request("GET", f"/runtime/webhooks/durabletask/instances/{instance_id}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def plan_result(self, incident_id: str) -> dict | None:
        """The plan executor's result (steps, gates, compensations) once it has ended."""
        status = self.status(f"{incident_id}:plan")
        output = (status or {}).get("output")
        if isinstance(output, str):
            try:
                output = json.loads(output)
            except ValueError:
                return None
        return output if isinstance(output, dict) else None

    # -- waiting ----------------------------------------------------------------------

    def wait_for(
        self, what: str, probe: Callable[[], Any], timeout_s: float = 60, every_s: float = 0.5
    ) -> Any:
        """Poll ``probe`` until it returns something truthy; StackError naming ``what``."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(every_s)
        raise StackError(f"{what}: not within {timeout_s:.0f}s (last: {last!r})\n{self.tail(30)}")

    def wait_phase(self, incident_id: str, phases: str | Iterable[str], timeout_s: float = 60):
        """The incident view once its phase is one of ``phases``."""
        wanted = {phases} if isinstance(phases, str) else set(phases)

        def probe():
            view = self.incident(incident_id)
            return view if view and view["phase"] in wanted else None

        return self.wait_for(f"{incident_id} in {sorted(wanted)}", probe, timeout_s)

    def wait_gate(self, incident_id: str, gate: str, timeout_s: float = 60) -> dict:
        """The incident view once ``gate`` is open."""

        def probe():
            view = self.incident(incident_id)
            if view and any(g["gate"] == gate and g["state"] == "open" for g in view["gates"]):
                return view
            return None

        return self.wait_for(f"{incident_id} gate {gate} open", probe, timeout_s)

    def wait_ended(self, incident_id: str, timeout_s: float = 60) -> dict:
        """Ended in the index and its orchestration finished (the report is written last)."""
        finished = {"Completed", "Failed", "Terminated"}
        return self.wait_for(
            f"{incident_id} ended",
            lambda: (
                (v := self.incident(incident_id))
                and v["endedAt"]
                and v.get("runtimeStatus") in finished
                and v
            ),
            timeout_s,
        )

    # -- stores and local Azure -------------------------------------------------------

    def storage_settings(self) -> dict[str, str]:
        from devhost.azurite import running_settings

        settings = running_settings(self.state_dir)
        if settings is None:
            raise StackError("Azurite of this stack is not running")
        return settings

    def stores(self):
        """The app's tables and blobs (incident index, signal log, gates), read directly."""
        from shared.folding import IncidentStores

        return IncidentStores.from_settings(self.storage_settings())

    def audit(self, trail: str) -> list:
        """The audit records of one trail (an incident id, or ``intake.YYYYMMDD``)."""
        from shared.audit import AuditWriter

        writer = AuditWriter(self.storage_settings()["AzureWebJobsStorage"])
        return writer.records(trail) if writer.exists(trail) else []

    def dispositions(self, trail: str) -> list[dict]:
        """Signal dispositions on a trail, one dict per signal (``signal.batch`` unrolled)."""
        out = []
        for record in self.audit(trail):
            if record.action == "signal.batch":
                out.extend(record.detail.get("signals", []))
            elif record.action.startswith("signal."):
                entry = {"action": record.action, "actor": record.actor, "reason": record.reason}
                out.append({**entry, **record.detail})
        return out

    def intake_trail(self) -> list:
        """Today's audit trail of signals that joined no incident."""
        from datetime import UTC, datetime

        return self.audit(f"intake.{datetime.now(UTC):%Y%m%d}")

    def index_rows(self, correlation_key: str) -> list[dict]:
        """Rows of the incident index for one correlation key."""
        table = self.stores().stores.incidents.table
        return [r for r in table.all() if r["PartitionKey"] == correlation_key]

    def control(self, method: str, path: str, body: Any = None, timeout_s: float = 60) -> Any:
        """Call local Azure's control API (``path`` under ``/_local``)."""
        if not self.control_url:
            raise StackError("this stack runs without local Azure (no topology)")
        local = self.state_dir / "localazure"
        token = (local / "arm-token").read_text().strip()
        r = requests.request(
            method,
            f"{self.control_url}/{path.lstrip('/')}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            verify=str(local / "ca" / "ca.pem"),
            timeout=timeout_s,
        )
        if r.status_code >= 400:
            raise StackError(f"control {method} {path} answered {r.status_code}: {r.text}")
        return r.json() if r.content else None

    def dsn(self, server: str, dbname: str = "odoo") -> str:
        """A libpq connection string for one of local Azure's PostgreSQL servers."""
        servers = {s["name"]: s for s in self.control("GET", "postgres/servers")["value"]}
        port = servers[server]["port"]
        return f"host=127.0.0.1 port={port} user=postgres dbname={dbname} connect_timeout=5"

    def commit_on(self, server: str = "odoo-pg-weu") -> None:
        """Commit one small transaction on a server (the replica replays it: a replay time)."""
        import psycopg

        with psycopg.connect(self.dsn(server), autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS dr_test_heartbeat (at timestamptz)")
            conn.execute("INSERT INTO dr_test_heartbeat VALUES (now())")

    def resource(self, environment: str, kind: str = "postgres-primary") -> str:
        return resource_id(environment, kind, stack_doc=self.workloads)

    # -- incidents that wait for a person ---------------------------------------------

    def fail_region(self, region: str = "westeurope") -> None:
        """Take a region of local Azure down (idempotent): its servers stop answering."""
        if region not in self.control("GET", "regions").get("failed", []):
            self.control("POST", f"regions/{region}/fail")

    def open_regional_incident(self, environment: str = "prod-eu", timeout_s: float = 90) -> str:
        """A fresh regional-outage incident waiting at its recovery gate; returns its id.

        Fails the primary region first. The environment's previous incident must have ended
        (one open incident per correlation key): call ``end_incident`` when done with it.
        """
        self.fail_region(self.workloads["environments"][environment]["primary_region"])
        r = self.post_alert(common_alert(self.resource(environment), rule="pg-resource-health"))
        r.raise_for_status()
        body = r.json()
        if body["disposition"] != "started":
            raise StackError(f"{environment} already has an open incident: {body}")
        self.wait_gate(body["incidentId"], "recovery", timeout_s)
        return body["incidentId"]

    def end_open(self, key: str) -> None:
        """End the open incident of a correlation key, if there is one."""
        current = self.stores().stores.incidents.current(key)
        if current is not None and current.ended_at is None:
            self.end_incident(current.incident_id)

    def end_incident(self, incident_id: str, timeout_s: float = 90) -> dict:
        """Bring an incident to its end: reject its open gates, abort a parked plan.

        Acts as people who did not declare it (carol rejects, oscar aborts) and waits until
        the incident index says it ended.
        """

        def probe():
            view = self.incident(incident_id)
            if view is None or view["endedAt"]:
                return view or {"incidentId": incident_id, "endedAt": "unknown"}
            for gate in view["gates"]:
                if gate["state"] == "open":
                    self.decide(incident_id, gate["gate"], "reject", user="carol", comment="end")
            if (view.get("plan") or {}).get("phase") == "needs-operator":
                self.request(
                    "POST",
                    f"/api/incidents/{incident_id}/actions",
                    json={"action": "abort", "reason": "the test is done with this incident"},
                    headers=self.auth("oscar", ["DR.Operator"]),
                )
            return None

        return self.wait_for(f"{incident_id} ended", probe, timeout_s, every_s=1.0)


def short(seconds: float) -> dict[str, str]:
    """Gate timings T1/T2/T3 at 1x/2x/3x ``seconds``."""
    t = timedelta(seconds=seconds).total_seconds()
    return {
        "remind_after": f"{t:g}s",
        "escalate_after": f"{2 * t:g}s",
        "expire_after": f"{3 * t:g}s",
    }


# Environments of the session stack: the demo one (local Azure answers for it) and a few with
# resources that local Azure does not have, so that tests do not share correlation keys.
# `pair-1` and `calm-1` keep their gates open for ten minutes, so that nothing but a decision,
# a signal or the gate's own poll wakes them: `pair-1` has a two-person recovery gate, for
# races of one person's decisions; `calm-1` times a stand-down.
SESSION_ENVIRONMENTS: dict[str, EnvSpec] = {
    "prod-eu": EnvSpec(timings=short(20)),
    **{f"edge-{n}": EnvSpec(timings=short(30)) for n in range(1, 9)},
    "expiry-1": EnvSpec(timings=short(3)),
    "pair-1": EnvSpec(timings=short(600), required_approvals={"recovery": 2}),
    "calm-1": EnvSpec(timings=short(600)),
}


@pytest.fixture(scope="session")
def stack():
    """The session's stack: local Azure from config/topology.yaml and SESSION_ENVIRONMENTS."""
    running = Stack(SESSION_ENVIRONMENTS)
    try:
        running.start()
    except StackError as exc:
        pytest.fail(str(exc))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def make_stack():
    """A factory for stacks of one's own: ``make_stack(environments, topology=None)``."""
    made: list[Stack] = []

    def make(environments: dict[str, EnvSpec] | None = None, **kw) -> Stack:
        s = Stack(environments, **kw)
        made.append(s)
        return s.start()

    try:
        yield make
    finally:
        for s in made:
            s.stop()
