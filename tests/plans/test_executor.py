"""The plan executor on devhost's durable engine, with fake activities (tests/plans/app)."""

import asyncio
import json
import time

import pytest

from devhost.durable import Engine, status_of
from devhost.host import index_functions
from shared.plans import OPERATOR_EVENT, build_plan, gate_event_name
from tests.plans.app import fakes
from tests.plans.app.function_app import app
from tests.plans.helpers import check, gate, hold, runbook

FAST = {"first_interval_s": 0.1, "max_attempts": 2}


@pytest.fixture(scope="module")
def index():
    return index_functions(app)


class Run:
    """One executor instance on a fresh engine, driven from a test's async body."""

    def __init__(self, engine: Engine, instance_id: str):
        self.engine, self.id = engine, instance_id

    def status(self):
        return status_of(self.engine.get(self.id), with_output=True)

    async def until(self, predicate, timeout_s=15.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            custom = self.status().customStatus or {}
            if predicate(custom):
                return custom
            await asyncio.sleep(0.05)
        raise AssertionError(f"condition not met; custom status {self.status().customStatus}")

    def raise_event(self, name, payload):
        # As the Python client sends it: JSON text inside JSON.
        self.engine.raise_event(self.id, name, json.dumps(json.dumps(payload)))

    def operator(self, action, step=None, reason="tested", actor="oscar"):
        body = {"action": action, "step": step, "reason": reason, "actor": actor}
        self.raise_event(OPERATOR_EVENT, body)

    async def result(self, timeout_s=20.0):
        row = await self.engine.wait_for(self.id, timeout_s)
        status = status_of(row, with_output=True)
        assert status.runtimeStatus == "Completed", status
        return status.output


def execute(index, tmp_path, doc, body, script=None, **request):
    """Build the plan from ``doc``, start the executor, and run ``body(run)`` until it returns."""
    fakes.reset(script)
    plan = build_plan(doc, {}, {}, incident_id="inc-test")

    async def main():
        engine = Engine(tmp_path / "durable.sqlite", index.orchestrators, index.activities)
        await engine.start()
        try:
            payload = {"plan": plan.model_dump(mode="json"), **request}
            engine.start_instance("plan_executor", "plan-1", json.dumps(payload))
            return await body(Run(engine, "plan-1"))
        finally:
            await engine.stop()

    return asyncio.run(main())


def _call(step_id):
    calls = fakes.calls_of(step_id)
    assert calls, f"step {step_id} never ran"
    return calls[-1]


def test_steps_start_as_soon_as_their_own_dependencies_end(index, tmp_path):
    doc = runbook(
        [
            check("a"),
            check("b"),
            check("c", after=["a"]),
            check("d", after=["b"]),
            check("e", after=["c", "d"]),
        ],
        gates={},
    )
    script = {"a": {"sleep_s": 0.2}, "b": {"sleep_s": 1.5}, "c": {"sleep_s": 0.2}}

    async def body(run):
        return await run.result()

    result = execute(index, tmp_path, doc, body, script)
    assert result["outcome"] == "completed"
    a, b, c, e = _call("a"), _call("b"), _call("c"), _call("e")
    assert c["started"] - a["ended"] < 0.5  # c followed a at once ...
    assert c["ended"] < b["ended"] - 0.5  # ... and ended while b still ran: no waves
    assert e["started"] >= b["ended"]


def test_prestaged_steps_start_before_the_gate_is_approved(index, tmp_path):
    doc = runbook([hold("warm", prestage=True), gate(), check("act", after=["approve", "warm"])])

    async def body(run):
        status = await run.until(lambda s: "warm" in s.get("finished", []))
        assert status["phase"] == "awaiting-approval"
        assert status["waiting_gates"] == ["recovery"]
        assert not fakes.calls_of("act")
        approved_at = time.time()
        run.raise_event(gate_event_name("recovery"), {"decision": "approved", "approvers": ["al"]})
        return approved_at, await run.result()

    approved_at, result = execute(index, tmp_path, doc, body, {"warm": {"sleep_s": 0.2}})
    assert _call("warm")["ended"] < approved_at < _call("act")["started"]
    assert result["outcome"] == "completed"
    assert result["gates"]["recovery"]["approvers"] == ["al"]


def test_failed_step_parks_and_abort_runs_compensations_in_reverse(index, tmp_path):
    doc = runbook(
        [
            hold("first"),
            hold("second", after=["first"]),
            check("breaks", after=["second"], retry=FAST),
            check("later", after=["breaks"]),
        ],
        gates={},
    )

    async def body(run):
        status = await run.until(lambda s: s.get("phase") == "needs-operator")
        assert [f["step"] for f in status["failed"]] == ["breaks"]
        assert "failed on purpose" in status["failed"][0]["error"]
        run.operator("abort", reason="region is back, stop here")
        return await run.result()

    result = execute(index, tmp_path, doc, body, {"breaks": {"fail_times": 99}})
    assert len(fakes.calls_of("breaks")) == 2  # max_attempts counts every attempt
    assert result["outcome"] == "aborted"
    assert "oscar (region is back, stop here)" in result["reason"]
    assert [c["step"] for c in result["compensations"]] == ["second", "first"]
    assert _call("second:undo")["ended"] <= _call("first:undo")["started"]
    assert _call("first:undo")["activity"] == "jobs_release"
    assert not fakes.calls_of("later")


def test_skip_lets_the_dependents_of_a_parked_step_go_on(index, tmp_path):
    doc = runbook([check("breaks", retry=FAST), check("after-it", after=["breaks"])], gates={})

    async def body(run):
        await run.until(lambda s: s.get("phase") == "needs-operator")
        run.operator("skip", "breaks", reason="checked by hand")
        return await run.result()

    result = execute(index, tmp_path, doc, body, {"breaks": {"fail_times": 99}})
    assert result["outcome"] == "completed"
    assert "skipped by an operator: breaks" in result["reason"]
    assert result["steps"]["breaks"]["status"] == "skipped"
    assert result["steps"]["after-it"]["status"] == "succeeded"


def test_retry_runs_a_parked_step_again(index, tmp_path):
    doc = runbook([check("flaky", retry=FAST)], gates={})

    async def body(run):
        await run.until(lambda s: s.get("phase") == "needs-operator")
        run.operator("retry", "flaky")
        return await run.result()

    result = execute(index, tmp_path, doc, body, {"flaky": {"fail_times": 2}})
    assert result["outcome"] == "completed"
    assert result["steps"]["flaky"]["runs"] == 2
    assert len(fakes.calls_of("flaky")) == 3


def test_nothing_continues_past_a_failed_destructive_step(index, tmp_path):
    doc = runbook(
        [
            gate(),
            hold("cut", after=["approve"], destructive=True, retry=FAST),
            check("slow", after=["approve"]),
            check("after-slow", after=["slow"]),
        ]
    )

    async def body(run):
        run.raise_event(gate_event_name("recovery"), {"decision": "approved"})
        status = await run.until(lambda s: s.get("phase") == "needs-operator" and not s["running"])
        assert "after-slow" not in status["finished"]
        run.operator("skip", "cut")
        run.operator("abort", reason="giving up")
        return await run.result()

    script = {"cut": {"fail_times": 99}, "slow": {"sleep_s": 0.5}}
    result = execute(index, tmp_path, doc, body, script)
    assert result["outcome"] == "aborted"
    assert not fakes.calls_of("after-slow")
    refused = [a for a in result["operator_actions"] if not a["accepted"]]
    assert "is a destructive step; retry or abort" in refused[0]["reason"]


def test_rejected_gate_undoes_prestaged_steps(index, tmp_path):
    doc = runbook([hold("warm", prestage=True), gate(), check("act", after=["approve"])])

    async def body(run):
        await run.until(lambda s: "warm" in s.get("finished", []))
        run.raise_event(
            gate_event_name("recovery"),
            {"decision": "rejected", "reason": "not a disaster", "approvers": ["bo"]},
        )
        return await run.result()

    result = execute(index, tmp_path, doc, body)
    assert result["outcome"] == "rejected"
    assert "gate 'recovery' rejected by bo: not a disaster" in result["reason"]
    assert [c["step"] for c in result["compensations"]] == ["warm"]
    assert not fakes.calls_of("act")


def test_unanswered_failure_ends_needs_operator_after_compensating(index, tmp_path):
    doc = runbook([hold("done-first"), check("breaks", after=["done-first"], retry=FAST)], gates={})

    async def body(run):
        return await run.result()

    result = execute(
        index, tmp_path, doc, body, {"breaks": {"fail_times": 99}}, operator_timeout_s=0
    )
    assert result["outcome"] == "needs-operator"
    assert "'breaks': " in result["reason"] and "failed on purpose" in result["reason"]
    assert [c["step"] for c in result["compensations"]] == ["done-first"]


def test_step_that_outlives_its_timeout_fails(index, tmp_path):
    doc = runbook([check("stuck", timeout_s=0.5, retry=FAST)], gates={})

    async def body(run):
        return await run.result()

    result = execute(index, tmp_path, doc, body, {"stuck": {"sleep_s": 2}}, operator_timeout_s=1)
    assert result["outcome"] == "needs-operator"
    assert result["steps"]["stuck"]["error"] == "did not finish within 0.5 s"


def test_gate_decided_by_a_sub_orchestrator(index, tmp_path):
    doc = runbook([gate(), check("act", after=["approve"])])

    async def body(run):
        return await run.result()

    result = execute(index, tmp_path, doc, body, gate_orchestrator="fake_gate_approver")
    assert result["outcome"] == "completed"
    assert result["gates"]["recovery"] == {
        "decision": "approved",
        "reason": "asked DR.Approver for recovery",
        "approvers": ["alice"],
    }


def test_step_results_feed_later_inputs(index, tmp_path):
    doc = runbook([check("find"), check("use", after=["find"])], gates={})
    doc["steps"][1]["inputs"] = {"server": "${steps.find.server}"}

    async def body(run):
        return await run.result()

    result = execute(index, tmp_path, doc, body, {"find": {"result": {"server": "restored-1"}}})
    assert result["outcome"] == "completed"
    assert _call("use")["input"] == {
        "incident_id": "inc-test",
        "step_id": "use",
        "server": "restored-1",
    }


def test_gate_without_a_decision_expires_at_its_timeout(index, tmp_path):
    doc = runbook(
        [hold("warm", prestage=True), gate(timeout_s=0.5), check("act", after=["approve"])]
    )

    async def body(run):
        return await run.result()

    result = execute(index, tmp_path, doc, body)
    assert result["outcome"] == "expired"
    assert result["reason"] == "gate 'recovery' expired: no decision within 0.5 s"
    assert [c["step"] for c in result["compensations"]] == ["warm"]


def test_unreadable_gate_decision_counts_as_rejected(index, tmp_path):
    doc = runbook([gate(), check("act", after=["approve"])])

    async def body(run):
        await run.until(lambda s: s.get("waiting_gates") == ["recovery"])
        run.raise_event(gate_event_name("recovery"), {"decision": "maybe"})
        return await run.result()

    result = execute(index, tmp_path, doc, body)
    assert result["outcome"] == "rejected"
    assert "unreadable decision" in result["reason"]
    assert not fakes.calls_of("act")


def test_input_that_is_not_a_plan_fails_the_orchestration_with_the_reason(index, tmp_path):
    async def main():
        engine = Engine(tmp_path / "durable.sqlite", index.orchestrators, index.activities)
        await engine.start()
        try:
            engine.start_instance("plan_executor", "bad", json.dumps({"plan": {"steps": 3}}))
            return status_of(await engine.wait_for("bad", 10), with_output=True)
        finally:
            await engine.stop()

    status = asyncio.run(main())
    assert status.runtimeStatus == "Failed"
    assert "PlanRunRequest" in str(status.output)
