"""The incident as the orchestrator carries it: its start, what assessment found, its status.

Also the two mappings a runbook's references read: ``config.*`` (the environment's resources in
the shapes the activities take) and ``evidence.*`` (what assessment measured), and how the
phase a person sees is composed from the incident's and its plan's status.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.config import Environment
from shared.folding import SignalCounts
from shared.models import Classification, Evidence, Phase, Signal

PLAN_SUFFIX = ":plan"
PG_PROVIDER = "Microsoft.DBforPostgreSQL/flexibleServers"
GATE_INFIX = ":gate:"


def plan_instance_id(incident_id: str) -> str:
    """The plan executor runs as a sub-orchestration under this id."""
    return f"{incident_id}{PLAN_SUFFIX}"


def gate_instance_id(incident_id: str, gate: str, run: int = 1) -> str:
    """The id the plan executor gives the gate sub-orchestration of ``gate`` (run ``run``)."""
    return f"{plan_instance_id(incident_id)}{GATE_INFIX}{gate}:{run}"


def incident_of_instance(instance_id: str) -> str:
    """The incident an incident, plan or gate instance id belongs to."""
    return instance_id.split(":", 1)[0]


class IncidentStart(BaseModel):
    """The incident orchestration's input."""

    incident_id: str
    correlation_key: str
    environment: str
    family: str
    declared_by: str = Field(description="'system' for alerts, else the operator's subject")
    declared_by_name: str | None = None
    declared_at: datetime
    first_signal: Signal | None = None
    suspected_path: str | None = None
    reason: str | None = None


class SignalFacts(BaseModel):
    """What planning reads of an incident's signals, taken from all of them at assessment."""

    first_fired_at: datetime | None = None
    dependency_name: str | None = None
    dependency_kind: str | None = None
    ingress_degraded: bool = False
    suspected_since: str | None = Field(
        default=None, description="what the first declaration gave as the damage's start"
    )


class Assessment(BaseModel):
    """What the assess activity found: the classification of the folded signals and evidence,
    what planning reads of the signals, and the database facts.

    The signals themselves stay out: this is an activity result, kept in the orchestration's
    history and decoded on every replay, and a storm folds thousands of signals into one
    incident. They are classified here, once, from the signal log.
    """

    classification: Classification
    signal_facts: SignalFacts = Field(default_factory=SignalFacts)
    signals_read: int = Field(default=0, description="how many signals were classified")
    evidence: list[Evidence]
    counts: SignalCounts
    database: dict[str, Any] | None = Field(
        default=None,
        description="the db_evidence result when the environment's servers were probed",
    )
    primary_region: str | None = None
    doorbells_rung: int = 0
    earlier: dict[str, Any] | None = Field(
        default=None, description="the replication monitor's last observation of the primary"
    )
    notes: list[str] = Field(default_factory=list)


class PlannedIncident(BaseModel):
    """The plan activity's result: the plan (plain JSON), or why there is none."""

    plan: dict[str, Any] | None = None
    error: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)


class StepView(BaseModel):
    running: list[str] = Field(default_factory=list)
    finished: list[str] = Field(default_factory=list)
    failed: list[dict[str, Any]] = Field(default_factory=list)


class TimelineEntry(BaseModel):
    at: datetime
    what: str


class IncidentStatus(BaseModel):
    """The incident orchestration's custom status: what a person sees of the incident."""

    incident_id: str
    environment: str
    phase: Phase
    path: str | None = None
    confidence: float | None = None
    disaster: bool | None = None
    reasons: list[str] = Field(default_factory=list)
    open_gates: list[str] = Field(default_factory=list)
    signals: SignalCounts = Field(default_factory=SignalCounts)
    declared_by: str
    declared_at: datetime
    plan_instance_id: str | None = None
    outcome: str | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    updated_at: datetime


def compose_phase(incident: dict[str, Any], plan: dict[str, Any] | None) -> tuple[str, list[str]]:
    """The phase and open gates a person sees, from the incident's and its plan's status.

    The incident orchestration waits on its plan, so while the plan runs the plan's own status
    (steps running, gates waiting, a parked step) says where the incident is.
    """
    phase = incident.get("phase") or Phase.DECLARED.value
    gates = list(incident.get("open_gates") or [])
    if phase != Phase.RECOVERING.value or not plan:
        return phase, gates
    waiting = list(plan.get("waiting_gates") or [])
    running = list(plan.get("running") or [])
    if plan.get("phase") == "needs-operator":
        return Phase.NEEDS_OPERATOR.value, waiting
    if "signoff" in waiting:
        return Phase.AWAITING_SIGNOFF.value, waiting
    if waiting:
        # A gate step shows as running while it waits: the incident waits for a person.
        return Phase.AWAITING_APPROVAL.value, waiting
    if any(step.startswith("validate") for step in running):
        return Phase.VALIDATING.value, waiting
    return Phase.RECOVERING.value, waiting


# ------------------------------------------------------------------------------------------
# What a runbook's ${config.*} and ${evidence.*} references read


def _arm(sub: str, rg: str, provider: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/{name}"


def plan_config(name: str, env: Environment, *, frontdoor_url: str | None = None) -> dict:
    """The environment in the shapes the activities take, for ``${config.*}`` references."""
    recovery = env.recovery
    sub, rg = env.subscription_id, env.resource_group
    profile_id = env.traffic_manager.profile.resource_id
    endpoints = env.traffic_manager.endpoints

    def endpoint(role: str) -> dict[str, Any]:
        ep = endpoints[role]
        return {"profile_id": profile_id, "endpoint_type": ep.endpoint_type, "name": ep.name}

    def server(resource) -> dict[str, Any]:
        out: dict[str, Any] = {"server_id": resource.resource_id}
        if recovery.admin_password_secret:
            out["admin_password_secret"] = {"name": recovery.admin_password_secret}
        return out

    restore_name = recovery.restore_server
    return {
        "environment": name,
        "primary_region": env.primary_region,
        "secondary_region": env.secondary_region,
        "db": {
            "primary": server(env.postgres.primary),
            "replica": server(env.postgres.replica),
            "database": env.postgres.database,
            "app": {
                "role": recovery.app_role,
                "password_secret": {"name": recovery.app_password_secret},
                "dbname": env.postgres.database,
            },
            "restore_name": restore_name,
            "restore": {
                "server_id": _arm(
                    sub, rg, "Microsoft.DBforPostgreSQL/flexibleServers", restore_name
                )
            },
        },
        "aks": {
            "primary": env.aks.primary.resource_id,
            "secondary": env.aks.secondary.resource_id,
            "namespace": env.aks.namespace,
            "deployment": env.aks.deployment,
            "secondary_pool": recovery.secondary_pool,
            "secondary_nodes": recovery.secondary_nodes,
            "idle_nodes": recovery.idle_nodes,
            "replicas": recovery.web_replicas,
            "cron_deployment": recovery.cron_deployment,
            "integration_deployments": list(recovery.integration_deployments),
        },
        "traffic": {
            "profile": profile_id,
            "primary_endpoint": endpoint("primary"),
            "secondary_endpoint": endpoint("secondary"),
        },
        "key_vault": env.key_vault.resource_id,
        "secrets": {"rotate": list(recovery.rotate_secrets)},
        "redis": env.redis.resource_id if env.redis else None,
        "storage": {
            "account": next(
                (a.resource_id for a in env.storage_accounts if a.region == env.secondary_region),
                None,
            ),
        },
        "targets": {
            "rpo_s": env.tightest_rpo().total_seconds(),
            "rto_s": env.tightest_rto().total_seconds(),
        },
        "frontdoor_url": frontdoor_url or os.environ.get("DR_FRONTDOOR_URL"),
        "attachments": {"filestore": os.environ.get("DR_ODOO_FILESTORE") or recovery.filestore},
    }


def signal_facts(signals: list[Signal]) -> SignalFacts:
    """What planning reads of the signals: when the first fired, which dependency or ingress
    they are about, and when a declarer suspects the damage began."""
    fired = [s for s in signals if s.fired]

    def about(*words: str) -> Signal | None:
        for signal in fired:
            text = " ".join([signal.text(), signal.kind.value, signal.component or ""]).lower()
            if any(w in text for w in words):
                return signal
        return None

    dependency = about("redis", "cache", "storage", "blob", "bank", "tax", "dns", "identity")
    ingress = about("ingress", "traefik", "gateway", "network", "latency", "5xx")
    kind = None
    if dependency is not None:
        text = dependency.text().lower() + " " + (dependency.component or "")
        kind = next(
            (k for k in ("redis", "storage", "integration") if k in text),
            "integration" if any(w in text for w in ("bank", "tax")) else "other",
        )
    declared = next((s for s in signals if s.kind.value == "declaration"), None)
    suspected = declared.facts.get("suspected_since") if declared else None
    return SignalFacts(
        first_fired_at=min((s.occurred_at for s in fired if s.occurred_at), default=None),
        dependency_name=(dependency.component or dependency.rule_name) if dependency else None,
        dependency_kind=kind,
        ingress_degraded=ingress is not None,
        suspected_since=_iso(suspected) if suspected else None,
    )


def plan_evidence(assessment: Assessment, classification: Classification) -> dict[str, Any]:
    """What assessment measured, for ``${evidence.*}`` references and ``when`` conditions."""
    db = assessment.database or {}
    exposure = db.get("exposure") or {}
    facts = assessment.signal_facts
    first_at = facts.first_fired_at
    return {
        "path": classification.path.value,
        "confidence": classification.confidence,
        "rpo": {
            "exposure_s": exposure.get("seconds")
            if exposure.get("seconds") is not None
            else exposure.get("upper_bound_seconds"),
            "exposure_bytes": exposure.get("bytes"),
            "basis": exposure.get("basis"),
            "reason": exposure.get("reason"),
        },
        "promote": {
            "option": db.get("promote_option") or "Forced",
            "reason": db.get("promote_reason")
            or "no database evidence: the primary is presumed lost",
        },
        "primary": {"reachable": (db.get("primary") or {}).get("reachable")},
        "damage": {"suspected_since": _iso(facts.suspected_since or first_at)},
        "security": {"compromised_since": _iso(first_at)},
        "dependency": {"name": facts.dependency_name, "kind": facts.dependency_kind},
        "ingress": {"endpoint": "primary", "degraded": facts.ingress_degraded},
        "release": {"last_good": None},
        "signals": assessment.counts.model_dump(),
        "earlier": assessment.earlier,
    }


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)
