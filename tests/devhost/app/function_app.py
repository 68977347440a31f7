"""The devhost test app: one orchestration per behaviour the engine must get right.

Activities that the tests need to observe write small files under DR_STATE_DIR, which devhost
sets for the app.
"""

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func
from azure.core.messaging import CloudEvent

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


def _state(name: str) -> Path:
    return Path(os.environ["DR_STATE_DIR"]) / name


def _append(name: str, line: str) -> None:
    with open(_state(name), "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


# ------------------------------------------------------------------------------ activities


@app.activity_trigger(input_name="name")
def hello(name: str) -> str:
    return f"Hello {name}"


@app.activity_trigger(input_name="n")
def square(n: int) -> int:
    return n * n


@app.activity_trigger(input_name="n")
def slow_square(n: int) -> int:
    time.sleep(0.2)
    _append("runs.log", f"{os.getpid()} {n}")
    return n * n


@app.activity_trigger(input_name="payload")
def flaky(payload: dict) -> int:
    """Fail until it has been called more than payload['fail_times'] times for its key."""
    path = _state(f"flaky-{payload['key']}")
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    if count <= payload["fail_times"]:
        raise RuntimeError(f"attempt {count} fails on purpose")
    return count


@app.activity_trigger(input_name="key")
def attempts(key: str) -> int:
    path = _state(f"flaky-{key}")
    return int(path.read_text()) if path.exists() else 0


@app.activity_trigger(input_name="message")
def boom(message: str) -> None:
    raise ValueError(message)


@app.activity_trigger(input_name="n")
def maybe_fail(n: int) -> int:
    if n == 1:
        raise ValueError("one is not allowed")
    return n * 2


@app.activity_trigger(input_name="value")
def echo(value):
    return value


@app.activity_trigger(input_name="key")
async def async_hello(key: str) -> str:
    return f"async {key}"


@app.activity_trigger(input_name="key")
def make_flag(key: str) -> None:
    _state(f"flag-{key}").write_text("set")


@app.activity_trigger(input_name="n")
def probe(n: int) -> int:
    """Count the probes running at once; keep the highest count seen."""
    import fcntl

    def update(delta: int) -> None:
        with open(_state("probe.lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = _state("probe.json")
            counts = json.loads(path.read_text()) if path.exists() else {"now": 0, "max": 0}
            counts["now"] += delta
            counts["max"] = max(counts["max"], counts["now"])
            path.write_text(json.dumps(counts))

    update(1)
    time.sleep(0.15)
    update(-1)
    return n


@app.activity_trigger(input_name="value", activity="aliased_name")
def py_named(value: str) -> str:
    return f"aliased {value}"


# --------------------------------------------------------------------------- orchestrators


@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext):
    name = context.get_input()
    first = yield context.call_activity("hello", name)
    second = yield context.call_activity("hello", first)
    third = yield context.call_activity("async_hello", name)
    return [first, second, third]


@app.orchestration_trigger(context_name="context")
def fanout(context: df.DurableOrchestrationContext):
    params = context.get_input()
    activity = params.get("activity", "square")
    results = yield context.task_all(
        [context.call_activity(activity, i) for i in range(params["n"])]
    )
    return {"count": len(results), "sum": sum(results)}


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    """Wait for 'Approval' bounded by a timer; optionally do a slow step first."""
    params = context.get_input()
    if params.get("work_first"):
        yield context.call_activity("slow_square", 1)
    deadline = context.current_utc_datetime + timedelta(seconds=params["timeout_s"])
    timer = context.create_timer(deadline)
    event = context.wait_for_external_event("Approval")
    context.set_custom_status({"waiting": True})
    winner = yield context.task_any([event, timer])
    if winner is event:
        if params.get("cancel", True):
            timer.cancel()
        context.set_custom_status({"waiting": False})
        return {"approved": event.result}
    context.set_custom_status({"waiting": False})
    return {"approved": "timeout"}


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext):
    params = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=50, max_number_of_attempts=3)
    try:
        result = yield context.call_activity_with_retry("flaky", options, params)
    except Exception as exc:
        result = {"error": str(exc)}
    count = yield context.call_activity("attempts", params["key"])
    after = yield context.call_activity("hello", "after")
    return {"result": result, "attempts": count, "after": after}


@app.orchestration_trigger(context_name="context")
def slow_retry(context: df.DurableOrchestrationContext):
    params = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1500, max_number_of_attempts=3)
    result = yield context.call_activity_with_retry("flaky", options, params)
    after = yield context.call_activity("hello", "after")
    return {"result": result, "after": after}


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext):
    params = context.get_input()
    return (yield context.call_activity("flaky", params))


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    key = context.get_input()
    first = yield context.call_sub_orchestrator("chain", "Ada", f"{context.instance_id}-child")
    both = yield context.task_all(
        [context.call_sub_orchestrator("fanout", {"n": n}) for n in (3, 4)]
    )
    options = df.RetryOptions(first_retry_interval_in_milliseconds=50, max_number_of_attempts=3)
    retried = yield context.call_sub_orchestrator_with_retry(
        "flaky_child", options, {"key": key, "fail_times": 1}
    )
    return {"first": first, "both": both, "retried": retried}


@app.orchestration_trigger(context_name="context")
def parent_of_failing(context: df.DurableOrchestrationContext):
    try:
        yield context.call_sub_orchestrator("fails", None)
    except Exception as exc:
        return str(exc)
    return "child did not fail"


@app.orchestration_trigger(context_name="context")
def parent_of_waiting(context: df.DurableOrchestrationContext):
    try:
        yield context.call_sub_orchestrator("wait_forever", None, f"{context.instance_id}-child")
    except Exception as exc:
        return str(exc)
    return "child completed"


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    n = context.get_input() or 0
    yield context.call_activity("square", n)
    if n < 3:
        context.continue_as_new(n + 1)
        return None
    return n


@app.orchestration_trigger(context_name="context")
def can_drop(context: df.DurableOrchestrationContext):
    """Execution 0 ignores an 'E' raised while it sleeps; execution 1 waits briefly for 'E'."""
    generation = context.get_input() or 0
    if generation == 0:
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=1.5))
        context.continue_as_new(1)
        return None
    timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=1))
    event = context.wait_for_external_event("E")
    winner = yield context.task_any([event, timer])
    if winner is event:
        timer.cancel()
        return "kept"
    return "dropped"


@app.orchestration_trigger(context_name="context")
def wait_forever(context: df.DurableOrchestrationContext):
    value = yield context.wait_for_external_event("never")
    return value


@app.orchestration_trigger(context_name="context")
def wait_event(context: df.DurableOrchestrationContext):
    value = yield context.wait_for_external_event("E")
    return value


@app.orchestration_trigger(context_name="context")
def two_waits(context: df.DurableOrchestrationContext):
    yield context.call_activity("slow_square", 2)
    first = yield context.wait_for_external_event("E")
    second = yield context.wait_for_external_event("E")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext):
    seconds = context.get_input()
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=seconds))
    return "fired"


@app.orchestration_trigger(context_name="context")
def uncancelled_timer(context: df.DurableOrchestrationContext):
    timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=30))
    quick = context.call_activity("hello", "quick")
    winner = yield context.task_any([quick, timer])
    return winner.result


@app.orchestration_trigger(context_name="context")
def long_timer(context: df.DurableOrchestrationContext):
    timer = context.create_timer(context.current_utc_datetime + timedelta(days=10))
    event = context.wait_for_external_event("Approval")
    winner = yield context.task_any([event, timer])
    if winner is event:
        timer.cancel()
    return "event" if winner is event else "timer"


@app.orchestration_trigger(context_name="context")
def any_then_more(context: df.DurableOrchestrationContext):
    timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=0.5))
    event = context.wait_for_external_event("never")
    winner = yield context.task_any([event, timer])
    after = yield context.call_activity("hello", "after any")
    return {"timer_won": winner is timer, "after": after}


@app.orchestration_trigger(context_name="context")
def sub_any(context: df.DurableOrchestrationContext):
    return (yield context.call_sub_orchestrator("any_then_more", None))


@app.orchestration_trigger(context_name="context")
def typed_catch(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("boom", "bad ledger")
    except ValueError:
        return {"caught": "ValueError"}
    except Exception as exc:
        return {"caught": type(exc).__name__, "message": str(exc)}
    return {"caught": None}


@app.orchestration_trigger(context_name="context")
def all_settled(context: df.DurableOrchestrationContext):
    tasks = [context.call_activity("maybe_fail", i) for i in range(3)]
    try:
        results = yield context.task_all(tasks)
    except Exception:
        results = []
        for task in tasks:
            try:
                results.append((yield task))
            except Exception:
                results.append("failed")
    return results


@app.orchestration_trigger(context_name="context")
def unknown_activity(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("no_such_activity", 1))


@app.orchestration_trigger(context_name="context")
def unknown_sub(context: df.DurableOrchestrationContext):
    return (yield context.call_sub_orchestrator("no_such_orchestrator", 1))


@app.orchestration_trigger(context_name="context")
def clock(context: df.DurableOrchestrationContext):
    t0 = context.current_utc_datetime.isoformat()
    echoed = yield context.call_activity("echo", t0)
    t1 = context.current_utc_datetime.isoformat()
    yield context.call_activity("echo", t1)
    t2 = context.current_utc_datetime.isoformat()
    return {"times": [t0, t1, t2], "first_on_replay": t0, "first_recorded": echoed}


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext):
    key = context.instance_id
    first = "square" if _state(f"flag-{key}").exists() else "hello"
    yield context.call_activity(first, 3 if first == "square" else "x")
    yield context.call_activity("make_flag", key)
    yield context.call_activity("hello", "end")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def name_quirk(context: df.DurableOrchestrationContext):
    return (yield context.call_activity(py_named, "v"))


@app.orchestration_trigger(context_name="context")
def alias_by_string(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("aliased_name", "v"))


@app.orchestration_trigger(context_name="context")
def falsy_status(context: df.DurableOrchestrationContext):
    context.set_custom_status({})
    yield context.call_activity("hello", "x")
    context.set_custom_status(0)
    yield context.wait_for_external_event("never")


@app.orchestration_trigger(context_name="context")
def fails(context: df.DurableOrchestrationContext):
    yield context.call_activity("hello", "x")
    raise RuntimeError("ledger does not balance")


# ------------------------------------------------------------------------ HTTP and clients


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start_any(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    body = req.get_body()
    instance_id = await client.start_new(
        req.route_params["name"], req.params.get("id"), json.loads(body) if body else None
    )
    return client.create_check_status_response(req, instance_id)


@app.route(route="run/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def run_and_wait(req: func.HttpRequest, client: df.DurableOrchestrationClient, context):
    body = req.get_body()
    instance_id = await client.start_new(
        req.route_params["name"], None, json.loads(body) if body else None
    )
    _append("contexts.log", context.invocation_id)
    return await client.wait_for_completion_or_create_check_status_response(
        req, instance_id, timeout_in_milliseconds=10000, retry_interval_in_milliseconds=200
    )


@app.route(route="items/{id:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"by": "id", "id": req.route_params["id"], "q": req.params.get("q")}),
        mimetype="application/json",
    )


@app.route(route="items/{name:alpha}", methods=["GET", "PUT"], auth_level=func.AuthLevel.ANONYMOUS)
def item_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"by": "name", "name": req.route_params["name"], "method": req.method}),
        mimetype="application/json",
    )


@app.route(route="echo/{rest?}", auth_level=func.AuthLevel.ANONYMOUS)
def echo_http(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(
            {
                "rest": req.route_params.get("rest"),
                "body": req.get_body().decode(),
                "header": req.headers.get("x-test"),
            }
        ),
        status_code=201,
        headers={"x-reply": "yes"},
        mimetype="application/json",
    )


@app.route(route="settings/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def read_setting(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"value": os.environ.get(req.route_params["name"])}),
        mimetype="application/json",
    )


@app.route(route="explode", auth_level=func.AuthLevel.ANONYMOUS)
def explode(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("bug in the app")


# ------------------------------------------------------------------ Event Grid and timers


@app.event_grid_trigger(arg_name="event")
def eg_plain(event: func.EventGridEvent) -> None:
    _append(
        "eventgrid.log",
        json.dumps({"fn": "eg_plain", "type": type(event).__name__, "id": event.id}),
    )


@app.event_grid_trigger(arg_name="event")
def eg_cloud(event: CloudEvent) -> None:
    _append(
        "eventgrid.log",
        json.dumps(
            {
                "fn": "eg_cloud",
                "type": f"{type(event).__module__}.{type(event).__name__}",
                "id": event.id,
                "source": event.source,
                "data": event.data,
            }
        ),
    )


@app.event_grid_trigger(arg_name="event")
def eg_fails(event: func.EventGridEvent) -> None:
    raise RuntimeError("cannot use this event")


@app.event_grid_trigger(arg_name="event")
@app.durable_client_input(client_name="client")
async def eg_starts(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("chain", f"eg-{event.id}", event.subject)


@app.timer_trigger(
    arg_name="timer",
    schedule=os.environ.get("TEST_TIMER_SCHEDULE", "0 0 0 1 1 *"),
    run_on_startup=os.environ.get("TEST_TIMER_ON_STARTUP") == "1",
)
def tick(timer: func.TimerRequest) -> None:
    _append("ticks.log", json.dumps({"past_due": timer.past_due, "at": time.time()}))
