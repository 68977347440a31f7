"""Plan execution against its critical path: does the executor follow the graph, and at what cost?

Runs the regional-outage plan on devhost's durable engine (in this process, state in a temporary
folder) with activities that only sleep for the time a latency table gives their action, and
approvers who answer each gate a fixed time after it opens. Prints the critical path of that
table, the time the same steps would take one after another, the measured wall time, their
ratio, and what prestaging saved.
"""

import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

from drctl.cli import CommandError, emit_json
from shared.plans import (
    build_plan,
    critical_path,
    gate_event_name,
    prestage_saved_s,
    sequential_s,
)
from shared.runbooks import ACTIONS, RunbookError, load_runbook

log = logging.getLogger(__name__)

# Seconds per action; a few seconds each, so that the run's own overhead is measurable.
LATENCY_S = {
    "compute.scale_pool": 6.0,
    "db.fence": 1.0,
    "db.evidence": 0.5,
    "db.promote": 2.0,
    "jobs.hold": 0.5,
    "compute.scale_deployment": 2.0,
    "validate.finance": 3.0,
    "traffic.cutover": 2.0,
    "validate.technical": 1.0,
    "jobs.release": 0.5,
}
DEFAULT_LATENCY_S = 1.0
APPROVAL_WAIT_S = {"recovery": 3.0, "signoff": 2.0}

# The plan context: placeholders, since the activities here only sleep.
_SERVER = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/"
CONTEXT_CONFIG = {
    "db": {
        "primary": {"server_id": _SERVER + "odoo-pg-weu"},
        "replica": {"server_id": _SERVER + "odoo-pg-neu"},
        "app": {"role": "odoo", "password_secret": {"name": "odoo-db-password"}},
        "database": "odoo",
    },
    "aks": {
        "secondary": "aks-odoo-neu",
        "secondary_pool": "odoo",
        "secondary_nodes": 3,
        "idle_nodes": 1,
        "deployment": "odoo",
        "replicas": 3,
    },
    "traffic": {
        "profile": "tm-odoo",
        "primary_endpoint": {"name": "odoo-weu"},
        "secondary_endpoint": {"name": "odoo-neu", "endpoint_type": "ExternalEndpoints"},
    },
    "frontdoor_url": "http://127.0.0.1:8069",
    "secondary_region": "northeurope",
    "targets": {"rpo_s": 300},
    "attachments": {"filestore": None},
}
CONTEXT_EVIDENCE = {
    "rpo.exposure_s": 20.0,
    "promote.option": "Forced",
    "promote.reason": "the primary region does not answer",
    "earlier": None,
}

_scale = {"factor": 1.0}
bench_bp = df.Blueprint()


def _sleeper(action: str):
    def activity(step: dict) -> dict:
        time.sleep(LATENCY_S.get(action, DEFAULT_LATENCY_S) * _scale["factor"])
        return {"fenced": True} if action == "db.fence" else {"slept": action}

    activity.__name__ = "bench_" + ACTIONS[action].activity
    return activity


for _name, _spec in ACTIONS.items():
    bench_bp.activity_trigger(input_name="step", activity=_spec.activity)(_sleeper(_name))


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every latency (default 1.0)"
    )
    parser.add_argument("--runbook", default="regional-outage", help="runbook to run")


def run(args) -> int:
    if not 0.05 <= args.scale <= 20:
        raise CommandError("--scale must be between 0.05 and 20")
    try:
        from devhost.durable import Engine, status_of
        from devhost.host import index_functions
    except ImportError as exc:
        raise CommandError(f"devhost's durable engine is not available: {exc}") from None
    try:
        runbook = load_runbook(args.runbook)
        plan = build_plan(runbook, CONTEXT_EVIDENCE, CONTEXT_CONFIG, incident_id="bench")
    except RunbookError as exc:
        raise CommandError(f"cannot build the bench plan: {exc}") from None
    _scale["factor"] = args.scale

    durations = {}
    for step in plan.steps:
        if step.kind == "gate":
            durations[step.id] = APPROVAL_WAIT_S.get(step.gate, 1.0) * args.scale
        else:
            durations[step.id] = LATENCY_S.get(step.action, DEFAULT_LATENCY_S) * args.scale
    approvals = {s.gate: durations[s.id] for s in plan.steps if s.kind == "gate"}

    from orchestrators.plan import bp as plan_bp

    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(plan_bp)
    app.register_functions(bench_bp)
    index = index_functions(app)
    with tempfile.TemporaryDirectory(prefix="drctl-bench-") as tmp:
        wall_s, output = asyncio.run(
            _execute(Engine, status_of, index, Path(tmp), plan, approvals, len(plan.steps))
        )

    # The critical path of what ran: a step the executor skipped (the fence gate, once the fake
    # fence proved the fence) took no time.
    for sid, record in output.get("steps", {}).items():
        if record.get("status") == "skipped":
            durations[sid] = 0.0
    chain, critical_s = critical_path(plan, durations=durations)

    report = {
        "runbook": plan.path,
        "outcome": output.get("outcome"),
        "critical_path_s": round(critical_s, 3),
        "sequential_s": round(sequential_s(plan, durations), 3),
        "wall_s": round(wall_s, 3),
        "overhead_ratio": round(wall_s / critical_s, 4) if critical_s else None,
        "prestage_saved_s": round(prestage_saved_s(plan, durations), 3),
        "critical_path": chain,
        "scale": args.scale,
    }
    if args.json:
        emit_json(report)
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0 if report["outcome"] == "completed" else 1


async def _execute(engine_cls, status_of, index, state_dir, plan, approvals, n_steps):
    """Start the plan, answer each gate its approval wait after it opens, time the whole run."""
    engine = engine_cls(
        state_dir / "durable.sqlite",
        index.orchestrators,
        index.activities,
        max_activities=max(4, n_steps),
    )
    await engine.start()
    try:
        started = time.monotonic()
        engine.start_instance(
            "plan_executor", "bench-plan", json.dumps({"plan": plan.model_dump(mode="json")})
        )
        answered: set[str] = set()
        pending: list[asyncio.Task] = []
        deadline = started + 600
        while time.monotonic() < deadline:
            row = engine.get("bench-plan")
            status = status_of(row, with_output=True)
            if status.runtimeStatus not in ("Pending", "Running"):
                break
            for gate in (status.customStatus or {}).get("waiting_gates", []):
                if gate not in answered:
                    answered.add(gate)
                    pending.append(asyncio.ensure_future(_approve(engine, gate, approvals[gate])))
            await asyncio.sleep(0.01)
        else:
            raise CommandError("the bench plan did not finish within 600 s")
        wall = time.monotonic() - started
        for task in pending:
            task.cancel()
        if status.runtimeStatus != "Completed":
            raise CommandError(f"the bench plan ended {status.runtimeStatus}: {status.output}")
        return wall, status.output
    finally:
        await engine.stop()


async def _approve(engine, gate: str, wait_s: float) -> None:
    await asyncio.sleep(wait_s)
    decision = {"decision": "approved", "approvers": ["bench"], "reason": "benchmark"}
    engine.raise_event("bench-plan", gate_event_name(gate), json.dumps(json.dumps(decision)))
