"""The durable engine through the management API: the orchestration patterns it must run."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import requests


def _events(status: dict, name: str) -> list[dict]:
    return [e for e in status.get("historyEvents") or [] if e["EventType"] == name]


def test_chaining_runs_activities_in_order_and_returns_their_results(devhost):
    iid = devhost.start_orchestration("chain", "Tokyo")
    status = devhost.wait(iid)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == ["Hello Tokyo", "Hello Hello Tokyo", "async Tokyo"]
    assert status["input"] == '"Tokyo"'


def test_fan_out_of_100_activities_collects_every_result(devhost):
    iid = devhost.start_orchestration("fanout", {"n": 100})
    status = devhost.wait(iid, timeout_s=60)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"count": 100, "sum": sum(i * i for i in range(100))}
    assert len(_events(status, "TaskScheduled")) == 100


def test_human_interaction_event_wins_and_cancelled_timer_does_not_hold_the_instance(devhost):
    iid = devhost.start_orchestration("approval", {"timeout_s": 30})
    devhost.wait(iid, statuses=("Running",))
    time.sleep(0.3)
    assert devhost.raise_event(iid, "Approval", {"ok": True}) == 202
    started = time.monotonic()
    status = devhost.wait(iid, timeout_s=10)
    assert time.monotonic() - started < 5
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"approved": {"ok": True}}
    assert status["customStatus"] == {"waiting": False}


def test_human_interaction_timer_wins_when_no_event_comes(devhost):
    iid = devhost.start_orchestration("approval", {"timeout_s": 0.5})
    status = devhost.wait(iid, timeout_s=10)
    assert status["output"] == {"approved": "timeout"}
    assert len(_events(status, "TimerFired")) == 1


def test_event_raised_before_the_wait_point_is_kept_until_the_wait(devhost):
    iid = devhost.start_orchestration("approval", {"timeout_s": 30, "work_first": True})
    assert devhost.raise_event(iid, "Approval", "early") == 202
    status = devhost.wait(iid, timeout_s=15)
    assert status["output"] == {"approved": "early"}


def test_retry_succeeds_on_the_third_attempt_and_later_task_ids_stay_right(devhost):
    key = f"ok-{time.time_ns()}"
    iid = devhost.start_orchestration("retrying", {"key": key, "fail_times": 2})
    status = devhost.wait(iid, timeout_s=15)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"] == {"result": 3, "attempts": 3, "after": "Hello after"}
    # attempt 0, timer 1, attempt 2, timer 3, attempt 4; then the next tasks get 5 and 6.
    scheduled = {e["EventId"]: e["FunctionName"] for e in _events(status, "TaskScheduled")}
    assert scheduled == {0: "flaky", 2: "flaky", 4: "flaky", 5: "attempts", 6: "hello"}
    assert sorted(e["EventId"] for e in _events(status, "TimerCreated")) == [1, 3]


def test_retry_running_out_fails_the_task_after_max_attempts(devhost):
    key = f"out-{time.time_ns()}"
    iid = devhost.start_orchestration("retrying", {"key": key, "fail_times": 10})
    status = devhost.wait(iid, timeout_s=15)
    assert status["runtimeStatus"] == "Completed", status
    out = status["output"]
    assert out["attempts"] == 3
    assert "Activity function 'flaky' failed: attempt 3 fails on purpose" in out["result"]["error"]
    assert out["after"] == "Hello after"
    # three attempts, two retry timers and the immediate timer after the last attempt
    assert sorted(e["EventId"] for e in _events(status, "TimerCreated")) == [1, 3, 5]


def test_sub_orchestrations_with_ids_fan_out_and_retry(devhost):
    key = f"child-{time.time_ns()}"
    iid = devhost.start_orchestration("parent", key)
    status = devhost.wait(iid, timeout_s=30)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"] == {
        "first": ["Hello Ada", "Hello Hello Ada", "async Ada"],
        "both": [{"count": 3, "sum": 5}, {"count": 4, "sum": 14}],
        "retried": 2,
    }
    child = devhost.status(f"{iid}-child")
    assert child["runtimeStatus"] == "Completed"
    assert child["input"] == '"Ada"'


def test_continue_as_new_restarts_with_new_input_and_keeps_the_id(devhost):
    iid = devhost.start_orchestration("counter", 0)
    status = devhost.wait(iid, timeout_s=15)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == 3
    assert status["input"] == "3"
    # only the last execution's history is kept
    assert len(_events(status, "TaskScheduled")) == 1


def test_terminate_stops_a_waiting_instance_with_the_reason_as_output(devhost):
    iid = devhost.start_orchestration("wait_forever")
    devhost.wait(iid, statuses=("Running",))
    r = devhost.mgmt("POST", f"instances/{iid}/terminate", params={"reason": "operator said so"})
    assert r.status_code == 202
    status = devhost.wait(iid)
    assert status["runtimeStatus"] == "Terminated"
    assert status["output"] == "operator said so"
    assert devhost.raise_event(iid, "never", 1) == 410
    again = devhost.mgmt("POST", f"instances/{iid}/terminate", params={"reason": "x"})
    assert again.status_code == 410


def test_orchestrator_exception_fails_the_instance_with_its_message(devhost):
    iid = devhost.start_orchestration("fails")
    status = devhost.wait(iid)
    assert status["runtimeStatus"] == "Failed"
    assert "Orchestrator function 'fails' failed" in status["output"]
    assert "ledger does not balance" in status["output"]
    r = devhost.mgmt(
        "GET", f"instances/{iid}", params={"returnInternalServerErrorOnFailure": "true"}
    )
    assert r.status_code == 500
    assert devhost.mgmt("GET", f"instances/{iid}").status_code == 200


def test_fifty_concurrent_starts_with_one_id_create_exactly_one_instance(devhost):
    iid = f"same-{time.time_ns()}"

    def start(_):
        return devhost.mgmt(
            "POST",
            f"orchestrators/wait_forever/{iid}",
            headers={"Content-Type": "application/json"},
        )

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(start, range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(202) == 1
    assert codes.count(400) == 49
    refused = next(r for r in responses if r.status_code == 400).json()
    assert "already exists" in refused["ExceptionMessage"]
    listed = devhost.mgmt("GET", "instances/", params={"instanceIdPrefix": iid}).json()
    assert len(listed) == 1
    devhost.mgmt("POST", f"instances/{iid}/terminate", params={"reason": "done"})


def test_a_finished_id_can_be_started_again(devhost):
    iid = f"again-{time.time_ns()}"
    devhost.start_orchestration("chain", "one", instance_id=iid)
    devhost.wait(iid)
    devhost.start_orchestration("chain", "two", instance_id=iid)
    status = devhost.wait(iid)
    assert status["output"][0] == "Hello two"


def test_bad_start_requests_answer_400_with_a_reason(devhost):
    r = devhost.mgmt("POST", "orchestrators/no_such_orchestrator")
    assert r.status_code == 400
    assert "doesn't exist" in r.json()["ExceptionMessage"]
    r = devhost.mgmt("POST", "orchestrators/chain/@bad")
    assert r.status_code == 400
    r = devhost.mgmt("POST", "orchestrators/chain", data=b"{not json")
    assert r.status_code == 400


def test_suspend_holds_events_until_resume(devhost):
    iid = devhost.start_orchestration("wait_event")
    devhost.wait(iid, statuses=("Running",))
    assert (
        devhost.mgmt("POST", f"instances/{iid}/suspend", params={"reason": "r"}).status_code == 202
    )
    assert devhost.status(iid)["runtimeStatus"] == "Suspended"
    assert devhost.raise_event(iid, "E", "while suspended") == 202
    time.sleep(0.5)
    assert devhost.status(iid)["runtimeStatus"] == "Suspended"
    assert (
        devhost.mgmt("POST", f"instances/{iid}/resume", params={"reason": "r"}).status_code == 202
    )
    status = devhost.wait(iid)
    assert status["output"] == "while suspended"


def test_purge_by_id_and_by_filter(devhost):
    a = devhost.start_orchestration("chain", "a")
    b = devhost.start_orchestration("chain", "b")
    devhost.wait(a)
    devhost.wait(b)
    r = devhost.mgmt("DELETE", f"instances/{a}")
    assert r.status_code == 200 and r.json() == {"instancesDeleted": 1}
    assert devhost.status(a) is None
    assert devhost.mgmt("DELETE", f"instances/{a}").status_code == 404
    assert devhost.mgmt("DELETE", "instances/").status_code == 400
    created = devhost.status(b)["createdTime"]
    r = devhost.mgmt(
        "DELETE",
        "instances/",
        params={"createdTimeFrom": created, "runtimeStatus": "Completed", "instanceIdPrefix": b},
    )
    assert r.status_code == 200 and r.json()["instancesDeleted"] >= 1
    assert devhost.status(b) is None


def test_list_pages_with_top_and_continuation_token(devhost):
    prefix = f"page-{time.time_ns()}-"
    ids = [devhost.start_orchestration("chain", "p", instance_id=f"{prefix}{i}") for i in range(5)]
    for iid in ids:
        devhost.wait(iid)
    seen, token, pages = [], None, 0
    while True:
        headers = {"x-ms-continuation-token": token} if token else {}
        r = devhost.mgmt(
            "GET", "instances/", params={"instanceIdPrefix": prefix, "top": "2"}, headers=headers
        )
        assert r.status_code == 200
        seen.extend(s["instanceId"] for s in r.json())
        pages += 1
        token = r.headers.get("x-ms-continuation-token")
        if not token:
            break
    assert sorted(seen) == sorted(ids)
    assert pages == 3
    filtered = devhost.mgmt(
        "GET", "instances/", params={"instanceIdPrefix": prefix, "runtimeStatus": "Running"}
    ).json()
    assert filtered == []


def test_status_of_unknown_instance_is_404_with_empty_body(devhost):
    r = devhost.mgmt("GET", "instances/nobody-has-this-id")
    assert r.status_code == 404
    assert r.content == b""


def test_running_status_answers_202_with_location(devhost):
    iid = devhost.start_orchestration("wait_forever")
    devhost.wait(iid, statuses=("Running",))
    r = devhost.mgmt("GET", f"instances/{iid}")
    assert r.status_code == 202
    assert r.headers["Location"]
    assert r.headers["Retry-After"] == "5"
    devhost.mgmt("POST", f"instances/{iid}/terminate", params={"reason": "done"})


def test_raise_event_needs_json_content_type(devhost):
    iid = devhost.start_orchestration("wait_event")
    r = devhost.mgmt(
        "POST", f"instances/{iid}/raiseEvent/E", data="x", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 400
    assert devhost.raise_event("nobody-has-this-id", "E", 1) == 404
    devhost.raise_event(iid, "E", json.dumps("done"))
    devhost.wait(iid)


def test_rpc_base_path_serves_the_same_api(devhost):
    iid = devhost.start_orchestration("chain", "rpc")
    devhost.wait(iid)
    r = requests.get(f"{devhost.url}/durabletask/instances/{iid}", timeout=10)
    assert r.status_code == 200
    assert r.json()["runtimeStatus"] == "Completed"


def test_activities_run_at_most_max_concurrent_activity_functions_at_once(devhost):
    """The test app's host.json allows 8 activities at once."""
    iid = devhost.start_orchestration("fanout", {"n": 24, "activity": "probe"})
    assert devhost.wait(iid, timeout_s=30)["runtimeStatus"] == "Completed"
    counts = json.loads((devhost.state_dir / "probe.json").read_text())
    assert 2 <= counts["max"] <= 8
    assert counts["now"] == 0
