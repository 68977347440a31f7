"""Incident activities: assess (signals, evidence, database probes), plan, and record phases."""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df
from pydantic import BaseModel

from activities.database import evidence as probe_databases
from activities.watch import observations
from shared import notify, runtime
from shared.classification import classify
from shared.incident import (
    Assessment,
    PlannedIncident,
    plan_config,
    plan_evidence,
    signal_facts,
)
from shared.models import Classification, Evidence, Phase, RunbookPath
from shared.plans import PlanError, build_plan
from shared.recovery import DbServer, EarlierObservation, EvidenceRequest
from shared.runbooks import RunbookError, load_runbook

log = logging.getLogger(__name__)

bp = df.Blueprint()


class AssessRequest(BaseModel):
    incident_id: str
    environment: str
    probe_database: bool = True
    earlier: EarlierObservation | None = None


class PlanRequest(BaseModel):
    incident_id: str
    environment: str
    classification: Classification
    assessment: Assessment


class RecordRequest(BaseModel):
    """A change of phase or a decision, for the audit trail, the index and the audiences."""

    incident_id: str
    action: str
    reason: str
    phase: Phase | None = None
    path: RunbookPath | None = None
    end: bool = False
    outcome: str | None = None
    detail: dict[str, Any] = {}
    notify: bool = True


def assess(req: AssessRequest) -> Assessment:
    """Probe the incident's database servers, then classify its folded signals and evidence.

    Classification is pure and reads every signal of the incident; it runs here, once, so that
    the orchestration's history holds its result rather than a storm's signals.
    """
    stores = runtime.stores()
    env = runtime.config().environment(req.environment)
    signals = stores.signal_log.signals(req.incident_id)
    notes: list[str] = []
    database = None
    earlier = req.earlier or observations().latest(req.environment)
    if req.probe_database:
        config = plan_config(req.environment, env)
        request = EvidenceRequest(
            incident_id=req.incident_id,
            step_id="assess",
            primary=DbServer(**config["db"]["primary"]),
            replica=DbServer(**config["db"]["replica"]),
            rpo_target_s=config["targets"]["rpo_s"],
            earlier=earlier,
        )
        try:
            result = probe_databases(request)
        except Exception as exc:  # the probe failing is evidence too, not a failed assessment
            notes.append(f"the database probe failed: {exc}")
            log.warning("incident '%s': database probe failed: %s", req.incident_id, exc)
        else:
            database = result.model_dump(mode="json")
            for fact in result.facts():
                stores.stores.evidence.add(req.incident_id, fact)
    evidence: list[Evidence] = stores.stores.evidence.list(req.incident_id)
    return Assessment(
        classification=classify(signals, evidence, primary_region=env.primary_region),
        signal_facts=signal_facts(signals),
        signals_read=len(signals),
        evidence=evidence,
        counts=stores.signal_log.counts(req.incident_id),
        database=database,
        primary_region=env.primary_region,
        doorbells_rung=stores.doorbells.rung(req.incident_id),
        earlier=earlier.model_dump(mode="json") if earlier else None,
        notes=notes,
    )


def plan(req: PlanRequest) -> PlannedIncident:
    """Build this incident's plan from its path's runbook, the environment and the evidence."""
    env = runtime.config().environment(req.environment)
    config = plan_config(req.environment, env)
    evidence = plan_evidence(req.assessment, req.classification)
    try:
        runbook = load_runbook(req.classification.path.value)
        built = build_plan(runbook, evidence, config, incident_id=req.incident_id)
    except (PlanError, RunbookError) as exc:
        return PlannedIncident(error=str(exc), context={"config": config, "evidence": evidence})
    return PlannedIncident(
        plan=built.model_dump(mode="json"), context={"config": config, "evidence": evidence}
    )


def record(req: RecordRequest) -> dict:
    """Append the record to the audit trail, update the index, and tell the audiences."""
    stores = runtime.stores()
    entry = runtime.audit().append(
        req.incident_id,
        req.action,
        actor="system",
        reason=req.reason,
        detail={
            **req.detail,
            "phase": req.phase.value if req.phase else None,
            "path": req.path.value if req.path else None,
        },
    )
    if req.end:
        stores.stores.incidents.end(
            req.incident_id, outcome=req.outcome or req.reason, phase=req.phase or Phase.ABORTED
        )
    elif req.phase is not None or req.path is not None:
        stores.stores.incidents.update(req.incident_id, phase=req.phase, path=req.path)
    deliveries = []
    if req.notify and req.phase is not None:
        from shared.comms import phase_messages

        for channel, body in phase_messages(req.incident_id, req.phase, req.reason, req.detail):
            deliveries.append(notify.send(channel, body, incident_id=req.incident_id).model_dump())
    return {"seq": entry.seq, "hash": entry.hash, "deliveries": deliveries}


@bp.activity_trigger(input_name="payload", activity="incident_assess")
def incident_assess(payload: dict) -> dict:
    return assess(AssessRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="incident_plan")
def incident_plan(payload: dict) -> dict:
    return plan(PlanRequest.model_validate(payload)).model_dump(mode="json")


def counts(incident_id: str) -> dict:
    stores = runtime.stores()
    return {
        "counts": stores.signal_log.counts(incident_id).model_dump(),
        "rung": stores.doorbells.rung(incident_id),
    }


@bp.activity_trigger(input_name="payload", activity="incident_counts")
def incident_counts(payload: dict) -> dict:
    return counts(payload["incident_id"])


@bp.activity_trigger(input_name="payload", activity="incident_report")
def incident_report(payload: dict) -> dict:
    from shared.report import write_report

    return write_report(
        payload["incident_id"], payload["status"], payload.get("plan_result"), payload.get("plan")
    )


@bp.activity_trigger(input_name="payload", activity="incident_record")
def incident_record(payload: dict) -> dict:
    return record(RecordRequest.model_validate(payload))
