"""PlanRun, the executor's decisions without a host: which steps start, park, stop, undo."""

from datetime import UTC, datetime, timedelta

from orchestrators.plan import PlanRun
from shared.plans import GateOutcome, PlanRunRequest, build_plan
from tests.plans.helpers import check, gate, hold, runbook

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def _run(doc, **request) -> PlanRun:
    plan = build_plan(doc, {"go": False}, {}, incident_id="inc-1")
    return PlanRun(PlanRunRequest(plan=plan, **request), "plan-1", T0)


def _started(run, at=T0):
    return [s.step.id for s in run.starts(at)]


def test_prestaged_and_gate_start_together_and_skipped_steps_settle_on_the_way():
    doc = runbook(
        [
            hold("warm", prestage=True),
            gate(),
            check("maybe", when="evidence.go", after=["approve"]),
            check("then", after=["maybe"]),
        ]
    )
    run = _run(doc)
    assert _started(run) == ["warm", "approve"]
    run.gate_decided("approve", GateOutcome(decision="approved"), T0)
    assert _started(run) == ["then"]
    assert run.records["maybe"].status == "skipped"
    assert "is false" in run.records["maybe"].reason


def test_independent_branch_goes_on_after_a_non_destructive_failure():
    run = _run(
        runbook(
            [check("a"), check("b"), check("a2", after=["a"]), check("b2", after=["b"])], gates={}
        )
    )
    assert _started(run) == ["a", "b"]
    run.failed("a", "boom", T0)
    run.succeeded("b", {}, T0)
    assert _started(run) == ["b2"]
    assert run.parked == ["a"]
    assert not run.finished(in_flight=1)


def test_operator_action_for_a_step_that_is_not_parked_is_refused():
    run = _run(runbook([check("a")], gates={}))
    _started(run)
    sentence = run.operator({"action": "retry", "step": "a", "reason": "r", "actor": "o"}, T0)
    assert "refused: step 'a' is not parked (parked: none)" in sentence
    assert run.operator_log[-1]["accepted"] is False


def test_operator_action_without_a_reason_is_refused():
    run = _run(runbook([check("a")], gates={}))
    sentence = run.operator('{"action": "abort", "actor": "o", "reason": ""}', T0)
    assert sentence.startswith("operator action refused: cannot read it")
    assert run.stop is None


def test_compensations_run_last_completed_first_and_only_where_declared():
    run = _run(runbook([hold("one"), check("two"), hold("three")], gates={}))
    _started(run)
    later = T0 + timedelta(seconds=5)
    run.succeeded("three", {}, T0)
    run.succeeded("two", {}, T0)
    run.succeeded("one", {}, later)
    run.stop_run("aborted", "test")
    items = run.compensation_plan()
    assert [i.step_id for i in items] == ["one", "three"]
    assert items[0].input == {
        "incident_id": "inc-1",
        "step_id": "one:undo",
        "server": "srv",
        "database": "odoo",
    }


def test_compensation_that_reads_a_missing_result_is_recorded_as_not_undone():
    doc = runbook([check("find"), hold("use", after=["find"])], gates={})
    doc["steps"][1]["compensation"]["inputs"]["server"] = "${steps.find.server}"
    run = _run(doc)
    _started(run)
    run.succeeded("find", {}, T0)
    _started(run)
    run.succeeded("use", {}, T0)
    run.stop_run("aborted", "test")
    (item,) = run.compensation_plan()
    assert item.input is None and "steps.find.server" in item.error
    run.compensated(item, T0, T0, error=item.error)
    assert "compensations that failed: use" in run.result(T0).reason


def test_expired_gate_stops_the_run_with_its_reason():
    run = _run(runbook([gate(), check("a", after=["approve"])]))
    _started(run)
    run.gate_decided("approve", GateOutcome(decision="expired", reason="nobody answered"), T0)
    assert run.stop == ("expired", "gate 'recovery' expired: nobody answered")
    assert _started(run) == []
    assert run.finished(in_flight=0)


def test_fence_gate_opens_when_the_fence_result_cannot_say_it_fenced():
    doc = runbook(
        [
            gate(),
            hold("fence", after=["approve"]),
            gate("unfenced", name="fence", when="not steps.fence.fenced", after=["fence"]),
        ],
        gates={
            "recovery": {"approvers": ["DR.Approver"], "explain": "x"},
            "fence": {"approvers": ["DR.Approver"], "explain": "y"},
        },
    )
    for result, opens in (({"fenced": True}, False), ({"fenced": False}, True), ({}, True)):
        run = _run(doc)
        _started(run)
        run.gate_decided("approve", GateOutcome(decision="approved"), T0)
        _started(run)
        run.succeeded("fence", result, T0)
        assert (_started(run) == ["unfenced"]) is opens
        assert run.records["unfenced"].status == ("running" if opens else "skipped")


def test_action_whose_condition_cannot_be_decided_parks():
    run = _run(runbook([check("a"), check("b", when="steps.a.ok", after=["a"])], gates={}))
    _started(run)
    run.succeeded("a", {}, T0)
    assert _started(run) == []
    assert run.parked == ["b"]
    assert "steps.a.ok is missing" in run.records["b"].error
