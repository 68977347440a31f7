"""The engine's in-process API (start, raise_event, wait_for, status) without HTTP."""

import asyncio
import json

import azure.durable_functions as df

from devhost.durable import ActivitySpec, Engine


def _approval(context: df.DurableOrchestrationContext):
    who = context.get_input()
    greeting = yield context.call_activity("greet", who)
    decision = yield context.wait_for_external_event("Decision")
    return {"greeting": greeting, "decision": decision}


def _greet(name: str) -> str:
    return f"Hello {name}"


def test_in_process_start_raise_event_and_status(tmp_path):
    async def scenario():
        engine = Engine(
            tmp_path / "durable.sqlite",
            {"approval": df.Orchestrator.create(_approval)},
            {"greet": ActivitySpec(_greet, "name")},
            max_activities=2,
        )
        await engine.start()
        try:
            outcome = engine.start_instance("approval", "inproc-1", json.dumps("Ada"))
            assert outcome.created
            again = engine.start_instance("approval", "inproc-1", json.dumps("Bob"))
            assert not again.created and again.existing_status in ("Pending", "Running")
            for _ in range(200):
                if engine.status("inproc-1").runtimeStatus == "Running":
                    break
                await asyncio.sleep(0.01)
            assert engine.raise_event("inproc-1", "Decision", json.dumps("approve")) == "accepted"
            row = await engine.wait_for("inproc-1", timeout_s=10)
            assert row.status == "Completed"
            status = engine.status("inproc-1", show_history=True)
            assert status.output == {"greeting": "Hello Ada", "decision": "approve"}
            assert status.input == '"Ada"'
            assert [e["EventType"] for e in status.historyEvents][-1] == "ExecutionCompleted"
            assert engine.raise_event("inproc-1", "Decision", "null") == "gone"
            assert engine.raise_event("nobody", "Decision", "null") == "not_found"
            assert engine.status("nobody") is None
        finally:
            await engine.stop()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def test_an_episode_devhost_cannot_process_fails_the_instance_instead_of_hanging(tmp_path):
    def malformed(context_json: str) -> str:
        return json.dumps({"isDone": False, "schemaVersion": 2, "actions": [[{"actionType": 0}]]})

    async def scenario():
        engine = Engine(tmp_path / "durable.sqlite", {"malformed": malformed}, {})
        await engine.start()
        try:
            engine.start_instance("malformed", "broken-1", None)
            row = await engine.wait_for("broken-1", timeout_s=10)
            assert row.status == "Failed"
            assert "devhost could not run an episode" in engine.status("broken-1").output
        finally:
            await engine.stop()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
