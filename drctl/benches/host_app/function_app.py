"""The app that `drctl bench host` runs on devhost: a wide fan-out and an event-driven loop."""

import os
import time
from pathlib import Path

import azure.durable_functions as df

app = df.DFApp()


@app.activity_trigger(input_name="n")
def empty(n: int) -> int:
    return n


@app.activity_trigger(input_name="n")
def step(n: int) -> int:
    """Record when the step after an event started (wall clock, read by the benchmark)."""
    with open(Path(os.environ["DR_STATE_DIR"]) / "steps.log", "a", encoding="utf-8") as fh:
        fh.write(f"{n} {time.time()}\n")
    return n


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("empty", i) for i in range(n)])
    return len(results)


@app.orchestration_trigger(context_name="context")
def event_rounds(context: df.DurableOrchestrationContext):
    rounds = context.get_input()
    for i in range(rounds):
        yield context.wait_for_external_event("go")
        yield context.call_activity("step", i)
    return rounds
