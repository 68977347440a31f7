"""Fake activities for every catalogue action: they sleep and fail as a test script says.

The script is a module-level mapping set by the test (or, for a devhost subprocess, read from
the ``PLAN_FAKES_SCRIPT`` environment variable as JSON), keyed by step id (``"<step>:undo"`` for a
compensation): ``{"sleep_s": 0.5, "fail_times": 2, "result": {...}}``. Every call is recorded
with wall-clock start and end times, so tests can see when each step really ran.
"""

import json
import os
import threading
import time

import azure.durable_functions as df

from shared.runbooks import ACTIVITY_FOR_ACTION

bp = df.Blueprint()

# Under a devhost subprocess the test cannot reach this module: it passes the script by env.
SCRIPT: dict[str, dict] = json.loads(os.environ.get("PLAN_FAKES_SCRIPT") or "{}")
CALLS: list[dict] = []
_lock = threading.Lock()
_failures: dict[str, int] = {}


def reset(script: dict[str, dict] | None = None) -> None:
    """Start a test with a new script and no recorded calls."""
    with _lock:
        SCRIPT.clear()
        SCRIPT.update(script or {})
        CALLS.clear()
        _failures.clear()


def calls_of(step_id: str) -> list[dict]:
    with _lock:
        return [c for c in CALLS if c["step_id"] == step_id]


def _make(activity: str):
    def fake(step: dict) -> dict:
        step_id = step["step_id"]
        rule = SCRIPT.get(step_id, {})
        started = time.time()
        time.sleep(rule.get("sleep_s", 0.0))
        with _lock:
            failed_so_far = _failures.get(step_id, 0)
            fail = failed_so_far < rule.get("fail_times", 0)
            if fail:
                _failures[step_id] = failed_so_far + 1
            CALLS.append(
                {
                    "activity": activity,
                    "step_id": step_id,
                    "input": step,
                    "started": started,
                    "ended": time.time(),
                    "failed": fail,
                }
            )
        if fail:
            raise RuntimeError(f"{step_id} failed on purpose ({failed_so_far + 1})")
        return {"step": step_id, **rule.get("result", {})}

    fake.__name__ = f"fake_{activity}"
    return fake


for _activity in sorted(set(ACTIVITY_FOR_ACTION.values())):
    bp.activity_trigger(input_name="step", activity=_activity)(_make(_activity))


@bp.orchestration_trigger(context_name="context", orchestration="fake_gate_approver")
def fake_gate_approver(context: df.DurableOrchestrationContext):
    """A gate sub-orchestrator that approves at once, naming who it asked for."""
    request = context.get_input()
    return {
        "decision": "approved",
        "reason": f"asked {', '.join(request['approvers'])} for {request['gate']}",
        "approvers": ["alice"],
    }
    yield  # a generator, as orchestrators are
