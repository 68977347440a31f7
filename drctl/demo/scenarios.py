"""The demo's scenarios: break something on the local stack, then drive the product over HTTP.

Each scenario sets up its data (a seeded Odoo database and a trickle of invoices), causes its
incident the way the world would (a partition and a region failure; a faulty batch; an ingress
alert), and then acts only as people do: approvers and a finance controller with their own
tokens, through the HTTP API. What it prints comes from the product's answers, plus what the
demo itself counted, so the two can be compared.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from drctl.demo import alerts
from drctl.demo.stack import Stack, StackError

log = logging.getLogger(__name__)

SUB = "00000000-0000-0000-0000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-odoo-prod/providers"
PRIMARY_ID = f"{RG}/Microsoft.DBforPostgreSQL/flexibleServers/odoo-pg-weu"
REPLICA_ID = f"{RG}/Microsoft.DBforPostgreSQL/flexibleServers/odoo-pg-neu"
AKS_WEU_ID = f"{RG}/Microsoft.ContainerService/managedClusters/aks-odoo-weu"
TM_ID = f"{RG}/Microsoft.Network/trafficManagerProfiles/tm-odoo"

FINISHED = {"Completed", "Failed", "Terminated"}

# Who answers each gate: never the declarer, two distinct people where the gate needs two.
APPROVERS: dict[str, list[tuple[str, list[str]]]] = {
    "recovery": [("alice", ["DR.Approver"]), ("sam", ["Security.Officer"])],
    "rpo": [("bob", ["DR.Approver"]), ("fiona", ["Finance.Controller"])],
    "fence": [("bob", ["DR.Approver"]), ("carol", ["DR.Approver"])],
    "cutover": [("bob", ["DR.Approver"])],
    "signoff": [("fiona", ["Finance.Controller"])],
}


@dataclass
class Options:
    scenario: str
    lines: int = 200_000
    partition_s: float = 75.0
    trickle_interval_s: float = 0.25
    timeout_s: float = 900.0
    say: Callable[[str], None] = print


@dataclass
class Trickle:
    """Posts one customer invoice at a time on the primary, as Odoo's users would."""

    dsn: str
    interval_s: float
    committed: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Trickle:
        self._thread = threading.Thread(target=self._run, name="invoice-trickle", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from shared.finance.live import append_invoice

        while not self._stop.is_set():
            try:
                invoice = append_invoice(self.dsn)
                self.committed.append(
                    {"name": invoice.name, "id": invoice.id, "committed_at": invoice.committed_at}
                )
            except Exception:  # the primary is gone: the business stops with it
                self.failures += 1
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _moves_for(lines: int) -> int:
    # The generator writes about 3.3 lines per move.
    return max(100, int(lines / 3.3))


def seed(stack: Stack, opts: Options) -> dict[str, Any]:
    from shared.finance.seed import SeedOptions, seed_database

    opts.say(f"seeding an Odoo 17 database on the primary (about {opts.lines:,} lines) ...")
    result = seed_database(
        stack.dsn("odoo-pg-weu"),
        SeedOptions(
            odoo=17,
            companies=2,
            moves=_moves_for(opts.lines),
            filestore=Path(stack.state_dir) / "filestore" / "odoo",
            attachments=200,
            seed=7,
        ),
    )
    opts.say(
        f"  {result.moves:,} moves, {result.lines:,} lines, {result.attachments} attachments, "
        f"{result.hashed_moves:,} hashed moves in {result.duration_s:.1f} s"
    )
    return result.model_dump(mode="json")


def wait_replica_caught_up(stack: Stack, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(stack.dsn("odoo-pg-weu"), autocommit=True) as p:
            target = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        with psycopg.connect(stack.dsn("odoo-pg-neu"), autocommit=True) as r:
            behind = r.execute(
                "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())", (target,)
            ).fetchone()[0]
        if behind is not None and behind <= 0:
            return
        time.sleep(0.5)
    raise StackError("the replica did not catch up with the seeded primary")


# ------------------------------------------------------------------------------------------
# Driving an incident over HTTP


@dataclass
class Drive:
    """What the demo saw while it drove one incident: phases, steps, gates, decisions."""

    incident_id: str
    phases: list[tuple[str, datetime]] = field(default_factory=list)
    decided: set[tuple[str, str]] = field(default_factory=set)
    steps_started: set[str] = field(default_factory=set)
    steps_finished: set[str] = field(default_factory=set)
    final: dict[str, Any] = field(default_factory=dict)


def drive(stack: Stack, incident_id: str, opts: Options, *, declarer: str = "system") -> Drive:
    """Poll the incident, answer its gates as the right people, until it ends."""
    seen = Drive(incident_id)
    deadline = time.monotonic() + opts.timeout_s
    while time.monotonic() < deadline:
        view = stack.incident(incident_id)
        _progress(view, seen, opts.say)
        for gate in view.get("gates", []):
            if gate["state"] == "open":
                _answer_gate(stack, view, gate["gate"], seen, opts.say, declarer)
        # Ended in the index, and its orchestration finished (the report is written last).
        if view.get("endedAt") and view.get("runtimeStatus") in FINISHED:
            seen.final = view
            return seen
        time.sleep(0.5)
    raise StackError(f"incident {incident_id} did not end within {opts.timeout_s:.0f} s")


def _progress(view: dict[str, Any], seen: Drive, say: Callable[[str], None]) -> None:
    now = datetime.now(UTC)
    phase = view.get("phase")
    if not seen.phases or seen.phases[-1][0] != phase:
        seen.phases.append((phase, now))
        gates = ", ".join(view.get("openGates") or []) or "none"
        say(f"[{now:%H:%M:%S}] phase {phase} (path {view.get('path')}, gates waiting: {gates})")
    plan = view.get("plan") or {}
    for step in plan.get("running", []):
        if step not in seen.steps_started:
            seen.steps_started.add(step)
            say(f"[{now:%H:%M:%S}]   step started: {step}")
    for step in plan.get("finished", []):
        if step not in seen.steps_finished:
            seen.steps_finished.add(step)
            say(f"[{now:%H:%M:%S}]   step finished: {step}")
    for failed in plan.get("failed", []):
        key = f"failed:{failed['step']}"
        if key not in seen.steps_finished:
            seen.steps_finished.add(key)
            say(f"[{now:%H:%M:%S}]   step FAILED: {failed['step']}: {failed['error']}")


def _answer_gate(stack, view, gate: str, seen: Drive, say, declarer: str) -> None:
    wanted = next((g for g in view["gates"] if g["gate"] == gate and g["state"] == "open"), None)
    needed = wanted["required_approvals"] if wanted else 1
    roles = set(wanted["roles"]) if wanted else set()
    people = [(u, r) for u, r in APPROVERS.get(gate, []) if set(r) & roles and u != declarer]
    for user, user_roles in people[:needed]:
        if (gate, user) in seen.decided:
            continue
        comment = _comment(gate, view)
        status, body = stack.decide(view["incidentId"], gate, stack.token(user, user_roles),
                                    "approve", comment)  # fmt: skip
        seen.decided.add((gate, user))
        say(f"  {user} ({', '.join(user_roles)}) approves the '{gate}' gate: HTTP {status}")
        if status >= 400:
            say(f"    refused: {body.get('error')}")


def _comment(gate: str, view: dict[str, Any]) -> str:
    if gate == "rpo":
        return "Accepting the measured data loss shown on the card."
    if gate == "signoff":
        return "Ledger, numbering, hash chain and attachments checked on the recovered books."
    return f"Approved from the demo after reading the {gate} card."


# ------------------------------------------------------------------------------------------
# Counting what was lost


def count_loss(stack: Stack, trickle: Trickle, survivor: str) -> dict[str, Any]:
    """Which of the trickle's committed invoices the recovered server does not have."""
    names = [c["name"] for c in trickle.committed]
    if not names:
        return {"transactions_lost": 0, "rpo_s": 0.0, "committed": 0}
    with psycopg.connect(stack.dsn(survivor), autocommit=True, connect_timeout=5) as conn:
        present = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM account_move WHERE name = ANY(%s)", (names,)
            ).fetchall()
        }
    lost = [c for c in trickle.committed if c["name"] not in present]
    kept = [c for c in trickle.committed if c["name"] in present]
    last_commit = max(c["committed_at"] for c in trickle.committed)
    last_kept = max((c["committed_at"] for c in kept), default=None)
    rpo_s = (last_commit - last_kept).total_seconds() if lost and last_kept else 0.0
    return {
        "transactions_lost": len(lost),
        "rpo_s": round(rpo_s, 3),
        "committed": len(trickle.committed),
        "first_lost": lost[0]["name"] if lost else None,
        "last_lost": lost[-1]["name"] if lost else None,
    }


# ------------------------------------------------------------------------------------------
# Scenarios


def regional_outage(stack: Stack, opts: Options) -> dict[str, Any]:
    seeded = seed(stack, opts)
    wait_replica_caught_up(stack)
    trickle = Trickle(stack.dsn("odoo-pg-weu"), opts.trickle_interval_s).start()
    opts.say("a trickle of customer invoices is posting on the primary (westeurope)")
    time.sleep(4)
    opts.say(f"replication to northeurope is partitioned for {opts.partition_s:.0f} s ...")
    stack.control("POST", "postgres/odoo-pg-neu/partition")
    time.sleep(opts.partition_s)
    opts.say("westeurope fails: its servers stop at once, no WAL is handed over")
    stack.control("POST", "regions/westeurope/fail")
    time.sleep(1.0)
    trickle.stop()
    opts.say(f"  the trickle committed {len(trickle.committed)} invoices on the primary")

    now = datetime.now(UTC)
    rh = alerts.resource_health(PRIMARY_ID, "pg-weu-resource-health", fired_at=now)
    metric = alerts.metric(
        AKS_WEU_ID,
        "aks-weu-node-not-ready",
        metric_name="kube_node_status_condition",
        namespace="Insights.Container/nodes",
        value=3,
        threshold=0,
        fired_at=now,
    )
    incident_id = None
    for payload, times in ((rh, 2), (metric, 2)):
        for _ in range(times):  # action groups retry: the duplicate must change nothing
            answer = stack.post_alert(payload)
            incident_id = incident_id or answer["incidentId"]
            opts.say(f"alert {payload['data']['essentials']['alertRule']}: {answer['disposition']}"
                     f" ({answer['reason']})")  # fmt: skip
    if incident_id is None:
        raise StackError("the alerts started no incident")
    seen = drive(stack, incident_id, opts)
    loss = count_loss(stack, trickle, "odoo-pg-neu")
    return _summary(stack, seen, loss, seeded)


def database_corruption(stack: Stack, opts: Options) -> dict[str, Any]:
    from shared.finance.live import post_faulty_batch

    seeded = seed(stack, opts)
    wait_replica_caught_up(stack)
    trickle = Trickle(stack.dsn("odoo-pg-weu"), opts.trickle_interval_s).start()
    opts.say("a trickle of customer invoices is posting on the primary")
    time.sleep(6)  # archive_timeout is short: these commits reach the WAL archive
    trickle.stop()
    time.sleep(3)
    bad_at = datetime.now(UTC)
    batch = post_faulty_batch(stack.dsn("odoo-pg-weu"), count=5)
    opts.say(f"a faulty release posts {len(batch.move_ids)} unbalanced entries: "
             f"{', '.join(batch.names)}")  # fmt: skip
    time.sleep(3)
    answer = stack.post_alert(
        alerts.log_search(
            PRIMARY_ID,
            "odoo-unbalanced-postings",
            query="OdooPostings | where balance != 0 and state == 'posted'",
            description="Posted journal entries do not balance after the 16:00 release",
            fired_at=datetime.now(UTC),
            window_start=bad_at,
        )
    )
    opts.say(f"alert odoo-unbalanced-postings: {answer['disposition']} ({answer['reason']})")
    if answer["incidentId"] is None:
        raise StackError(f"the alert started no incident: {answer['reason']}")
    seen = drive(stack, answer["incidentId"], opts)
    restored = "odoo-pg-restore"
    loss = {"bad_entries": batch.names}
    servers = stack.servers()
    if restored in servers:
        with psycopg.connect(stack.dsn(restored), autocommit=True, connect_timeout=5) as conn:
            left = conn.execute(
                "SELECT count(*) FROM account_move WHERE id = ANY(%s)", (batch.move_ids,)
            ).fetchone()[0]
        loss["bad_entries_on_restored_server"] = left
        loss.update(count_loss(stack, trickle, restored))
    return _summary(stack, seen, loss, seeded)


def ha_handled(stack: Stack, opts: Options) -> dict[str, Any]:
    now = datetime.now(UTC)
    answer = stack.post_alert(
        alerts.metric(
            TM_ID,
            "odoo-ingress-5xx",
            metric_name="ingress 5xx rate",
            namespace="Microsoft.Network/trafficManagerProfiles",
            value=12.5,
            threshold=5,
            fired_at=now,
            severity="Sev2",
        )
    )
    opts.say(f"alert odoo-ingress-5xx: {answer['disposition']} ({answer['reason']})")
    if answer["incidentId"] is None:
        raise StackError(f"the alert started no incident: {answer['reason']}")
    seen = drive(stack, answer["incidentId"], opts)
    return _summary(stack, seen, {"transactions_lost": 0, "rpo_s": 0.0}, None)


SCENARIOS = {
    "regional-outage": regional_outage,
    "database-corruption": database_corruption,
    "ha-handled": ha_handled,
}


def _summary(stack: Stack, seen: Drive, loss: dict, seeded: dict | None) -> dict[str, Any]:
    final = seen.final
    report = stack.api("GET", f"incidents/{seen.incident_id}/report", params={"format": "json"})
    report_json = report.json() if report.status_code == 200 else {}
    phases = []
    for index, (phase, at) in enumerate(seen.phases):
        end = seen.phases[index + 1][1] if index + 1 < len(seen.phases) else at
        phases.append({"phase": phase, "seconds": round((end - at).total_seconds(), 1)})
    rto = report_json.get("rto") or {}
    rpo = report_json.get("rpo") or {}
    paths = {}
    for fmt in ("json", "md", "html"):
        file = stack.state_dir / "devhost" / "reports" / seen.incident_id / f"report.{fmt}"
        paths[fmt] = str(file)
    return {
        "incidentId": seen.incident_id,
        "path": final.get("path"),
        "status": final.get("outcome") or final.get("phase"),
        "phase": final.get("phase"),
        "rto_s": rto.get("achieved_s"),
        "rto_target_s": rto.get("target_s"),
        "rto_phases": phases,
        "rpo_s": loss.get("rpo_s"),
        "rpo_estimated_s": rpo.get("estimated_s"),
        "rpo_target_s": rpo.get("target_s"),
        "transactions_lost": loss.get("transactions_lost"),
        "loss": loss,
        "validation": report_json.get("validation"),
        "approvals": report_json.get("approvals"),
        "audit_head": report_json.get("audit_head"),
        "report_paths": paths,
        "report_url": f"{stack.url}/api/incidents/{seen.incident_id}/report?format=html",
        "seeded": seeded,
    }
