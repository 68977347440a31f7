"""The plan executor in a devhost subprocess, driven through the durable management API."""

import json
import time
from datetime import datetime
from pathlib import Path

from shared.plans import build_plan, gate_event_name
from tests.plans.helpers import check, gate, hold, runbook
from tests.plugins.devhost import DevhostProcess

APP = Path(__file__).resolve().parent / "app"


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_plan_survives_a_host_crash_while_waiting_for_approval(devhost_factory):
    doc = runbook(
        [
            hold("warm", prestage=True),
            gate(),
            check("short", after=["approve"]),
            check("long", after=["approve"]),
            check("after-short", after=["short"]),
            check("last", after=["after-short", "long", "warm"]),
        ]
    )
    script = {"warm": {"sleep_s": 0.3}, "short": {"sleep_s": 0.2}, "long": {"sleep_s": 1.5}}
    plan = build_plan(doc, {}, {}, incident_id="inc-devhost")
    host: DevhostProcess = devhost_factory(
        app_dir=APP, env={"PLAN_FAKES_SCRIPT": json.dumps(script)}
    )
    host.start()
    iid = host.start_orchestration("plan_executor", {"plan": plan.model_dump(mode="json")})

    host.wait(iid, statuses=("Running",))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = host.status(iid)
        if "warm" in (status.get("customStatus") or {}).get("finished", []):
            break
        time.sleep(0.05)
    assert status["customStatus"]["phase"] == "awaiting-approval"

    host.kill()
    host.start()
    decision = json.dumps({"decision": "approved", "approvers": ["alice"]})
    assert host.raise_event(iid, gate_event_name("recovery"), decision) == 202
    final = host.wait(iid, timeout_s=30)

    assert final["runtimeStatus"] == "Completed", final
    result = final["output"]
    assert result["outcome"] == "completed"
    steps = result["steps"]
    assert all(s["runs"] == 1 for s in steps.values())
    # after-short began when short ended, while long was still running.
    assert steps["after-short"]["started_at"] == steps["short"]["ended_at"]
    assert _at(steps["after-short"]["ended_at"]) < _at(steps["long"]["ended_at"])
    assert _at(steps["warm"]["ended_at"]) < _at(steps["approve"]["ended_at"])
