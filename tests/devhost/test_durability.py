"""A host killed with SIGKILL and restarted on the same state dir resumes every instance."""

import json
import sqlite3
import time

TASK_SCHEDULED, TASK_COMPLETED = 4, 5


def _completed_inputs(state_dir) -> set[int]:
    """Activity inputs whose TaskCompleted is committed (history or inbox) in the database."""
    db = sqlite3.connect(state_dir / "durable.sqlite")
    try:
        scheduled, done = {}, set()
        for (history,) in db.execute("SELECT history FROM instances"):
            for ev in json.loads(history):
                if ev["EventType"] == TASK_SCHEDULED:
                    scheduled[ev["EventId"]] = json.loads(ev["Input"])
                elif ev["EventType"] == TASK_COMPLETED:
                    done.add(ev["TaskScheduledId"])
        for (text,) in db.execute("SELECT event FROM inbox"):
            ev = json.loads(text)
            if ev["EventType"] == TASK_COMPLETED:
                done.add(ev["TaskScheduledId"])
        return {scheduled[i] for i in done}
    finally:
        db.close()


def _runs(state_dir) -> list[tuple[int, int]]:
    path = state_dir / "runs.log"
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines()]


def test_sigkill_during_fan_out_resumes_without_rerunning_completed_activities(devhost_factory):
    host = devhost_factory().start()
    iid = host.start_orchestration("fanout", {"n": 40, "activity": "slow_square"})
    deadline = time.monotonic() + 20
    while len(_runs(host.state_dir)) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    first_pid = host.proc.pid
    host.kill()
    committed = _completed_inputs(host.state_dir)
    assert 0 < len(committed) < 40, "the kill should land in the middle of the fan-out"

    host.start()
    status = host.wait(iid, timeout_s=30)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"count": 40, "sum": sum(i * i for i in range(40))}
    rerun = {n for pid, n in _runs(host.state_dir) if pid != first_pid}
    assert not (rerun & committed), "an activity with a committed result ran again"
    assert rerun | committed >= set(range(40))
    host.stop()


def test_sigkill_during_a_timer_fires_it_at_restart_when_it_came_due_while_down(
    devhost_factory,
):
    host = devhost_factory().start()
    iid = host.start_orchestration("sleeper", 1.5)
    host.wait(iid, statuses=("Running",))
    host.kill()
    time.sleep(2.0)  # the timer comes due while no host runs
    host.start()
    started = time.monotonic()
    status = host.wait(iid, timeout_s=10)
    assert status["output"] == "fired"
    assert time.monotonic() - started < 3
    host.stop()


def test_sigkill_while_waiting_for_an_event_keeps_the_instance_waiting(devhost_factory):
    host = devhost_factory().start()
    iid = host.start_orchestration("approval", {"timeout_s": 60})
    host.wait(iid, statuses=("Running",))
    time.sleep(0.2)
    host.kill()
    host.start()
    assert host.status(iid)["runtimeStatus"] == "Running"
    assert host.raise_event(iid, "Approval", "after restart") == 202
    assert host.wait(iid)["output"] == {"approved": "after restart"}
    host.stop()


def test_a_second_host_on_the_same_state_dir_refuses_to_start(devhost_factory, devhost):
    second = devhost_factory(state_dir=devhost.state_dir)
    try:
        second.start(timeout_s=15)
    except RuntimeError as exc:
        assert "already using the state dir" in str(exc)
    else:
        raise AssertionError("a second host started on a state dir in use")


def test_sigkill_while_a_retry_waits_resumes_the_retry_with_the_right_ids(devhost_factory):
    host = devhost_factory().start()
    key = f"kill-{time.time_ns()}"
    iid = host.start_orchestration("slow_retry", {"key": key, "fail_times": 1})
    counter = host.state_dir / f"flaky-{key}"
    deadline = time.monotonic() + 10
    while not counter.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the failure is committed and the retry timer is waiting
    host.kill()
    host.start()
    status = host.wait(iid, timeout_s=15)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"] == {"result": 2, "after": "Hello after"}
    assert counter.read_text() == "2"
    host.stop()


def test_sigkill_during_sub_orchestrations_resumes_parent_and_children(devhost_factory):
    host = devhost_factory().start()
    key = f"subkill-{time.time_ns()}"
    iid = host.start_orchestration("parent", key)
    deadline = time.monotonic() + 10
    while host.status(f"{iid}-child") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    host.kill()
    host.start()
    status = host.wait(iid, timeout_s=30)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"]["retried"] == 2
    host.stop()


def test_terminate_while_an_activity_runs_drops_its_result(devhost):
    iid = devhost.start_orchestration("fanout", {"n": 16, "activity": "slow_square"})
    devhost.wait(iid, statuses=("Running",))
    r = devhost.mgmt("POST", f"instances/{iid}/terminate", params={"reason": "abort"})
    assert r.status_code == 202
    time.sleep(0.8)  # the activities in flight finish meanwhile
    status = devhost.status(iid, showHistory="true")
    assert status["runtimeStatus"] == "Terminated"
    assert status["historyEvents"][-1]["EventType"] == "ExecutionTerminated"
