"""Known traps of Python Durable Functions, each stated as the behaviour devhost chose."""

import json
import time
from datetime import datetime

import azure.durable_functions as df

from devhost.durable.api import client_binding


def _events(status: dict, name: str) -> list[dict]:
    return [e for e in status.get("historyEvents") or [] if e["EventType"] == name]


def test_early_event_is_delivered_to_every_later_wait_with_that_name(devhost):
    """The SDK never forgets an event that arrived before its wait; devhost keeps that."""
    iid = devhost.start_orchestration("two_waits")
    assert devhost.raise_event(iid, "E", "first") == 202
    status = devhost.wait(iid, timeout_s=15)
    assert status["output"] == ["first", "first"]


def test_real_client_event_data_reaches_the_orchestrator_as_json_text(devhost, client_loop):
    """Azure-faithful: the Python client encodes event data twice, the orchestrator gets text."""
    iid = devhost.start_orchestration("wait_event")

    async def send():
        client = df.DurableOrchestrationClient(client_binding(devhost.url, "DevhostTests", None))
        await client.raise_event(iid, "E", {"ok": True})

    client_loop.run_until_complete(send())
    status = devhost.wait(iid)
    assert status["output"] == '{"ok": true}'


def test_cancelled_timer_lets_the_instance_complete_at_once(devhost):
    iid = devhost.start_orchestration("approval", {"timeout_s": 60})
    devhost.wait(iid, statuses=("Running",))
    time.sleep(0.2)
    devhost.raise_event(iid, "Approval", "yes")
    status = devhost.wait(iid, timeout_s=5)
    assert status["runtimeStatus"] == "Completed"


def test_uncancelled_timer_does_not_keep_a_returned_instance_running(devhost):
    """Decision: an instance completes when its function returns; Azure would wait 30 s."""
    iid = devhost.start_orchestration("uncancelled_timer")
    status = devhost.wait(iid, timeout_s=5)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == "Hello quick"


def test_long_timer_is_one_timer_and_cancelling_it_completes_the_instance(devhost):
    """devhost sends no long-timer durations, so a ten-day timer is a single CreateTimer."""
    iid = devhost.start_orchestration("long_timer")
    devhost.wait(iid, statuses=("Running",))
    time.sleep(0.2)
    devhost.raise_event(iid, "Approval", 1)
    status = devhost.wait(iid, timeout_s=5)
    assert status["output"] == "event"
    assert len(_events(status, "TimerCreated")) == 1


def test_task_any_with_timer_inside_a_sub_orchestration_keeps_progressing(devhost):
    iid = devhost.start_orchestration("sub_any")
    status = devhost.wait(iid, timeout_s=10)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"timer_won": True, "after": "Hello after any"}


def test_activity_exception_reaches_the_orchestrator_as_a_plain_exception(devhost):
    iid = devhost.start_orchestration("typed_catch")
    out = devhost.wait(iid)["output"]
    assert out["caught"] == "Exception"
    assert out["message"].startswith("Activity function 'boom' failed: bad ledger")
    assert "ValueError: bad ledger" in out["message"]


def test_all_settled_pattern_rereads_each_task_after_task_all_fails(devhost):
    iid = devhost.start_orchestration("all_settled")
    status = devhost.wait(iid)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == [0, "failed", 4]


def test_continue_as_new_drops_events_the_old_execution_did_not_use(devhost):
    iid = devhost.start_orchestration("can_drop", 0)
    devhost.wait(iid, statuses=("Running",))
    time.sleep(0.3)
    assert devhost.raise_event(iid, "E", "lost") == 202
    status = devhost.wait(iid, timeout_s=10)
    assert status["output"] == "dropped"


def test_unknown_activity_fails_the_instance_with_the_extension_message(devhost):
    iid = devhost.start_orchestration("unknown_activity")
    status = devhost.wait(iid, timeout_s=5)
    assert status["runtimeStatus"] == "Failed"
    assert (
        "The function 'no_such_activity' doesn't exist, is disabled, or is not an activity"
        in (status["output"])
    )


def test_unknown_sub_orchestrator_fails_the_instance_with_the_extension_message(devhost):
    iid = devhost.start_orchestration("unknown_sub")
    status = devhost.wait(iid, timeout_s=5)
    assert status["runtimeStatus"] == "Failed"
    assert "'no_such_orchestrator' doesn't exist" in status["output"]
    assert "not an orchestrator function" in status["output"]


def test_episode_clock_moves_between_episodes_and_holds_on_replay(devhost):
    iid = devhost.start_orchestration("clock")
    out = devhost.wait(iid)["output"]
    t0, t1, t2 = (datetime.fromisoformat(t) for t in out["times"])
    assert t0 < t1 < t2
    assert t0.tzinfo is not None
    assert out["first_on_replay"] == out["first_recorded"]


def test_replay_that_schedules_a_different_activity_fails_as_non_deterministic(devhost):
    iid = devhost.start_orchestration("nondeterministic")
    status = devhost.wait(iid, timeout_s=10)
    assert status["runtimeStatus"] == "Failed"
    assert "Non-Deterministic workflow detected" in status["output"]
    assert "'hello'" in status["output"] and "'square'" in status["output"]


def test_calling_an_activity_by_function_object_uses_its_python_name(devhost):
    """The SDK schedules `py_named`, not the alias `aliased_name`, so the call fails."""
    iid = devhost.start_orchestration("name_quirk")
    status = devhost.wait(iid, timeout_s=5)
    assert status["runtimeStatus"] == "Failed"
    assert "'py_named' doesn't exist" in status["output"]
    ok = devhost.wait(devhost.start_orchestration("alias_by_string"))
    assert ok["output"] == "aliased v"


def test_falsy_custom_status_is_dropped(devhost):
    iid = devhost.start_orchestration("falsy_status")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = devhost.status(iid, showHistory="true")
        if len(_events(status, "TaskCompleted")) == 1 and status["runtimeStatus"] == "Running":
            break
        time.sleep(0.05)
    time.sleep(0.3)
    assert devhost.status(iid)["customStatus"] is None
    devhost.mgmt("POST", f"instances/{iid}/terminate", params={"reason": "done"})


def test_start_input_keeps_the_clients_json_text_encoding(devhost):
    iid = devhost.start_orchestration("chain", "Tokyo")
    status = devhost.wait(iid)
    assert status["input"] == json.dumps("Tokyo")
