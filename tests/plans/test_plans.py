"""The plan builder and the plan graph (pure)."""

import pytest

from shared.plans import (
    PlanError,
    blocked_by,
    build_plan,
    critical_path,
    decide_runtime_condition,
    prestage_saved_s,
    ready_steps,
    resolve,
    sequential_s,
)
from shared.runbooks import PATH_NAMES, load_runbook
from tests.plans.helpers import check, config, evidence, gate, hold, runbook


def _regional(**ev):
    return build_plan(load_runbook("regional-outage"), evidence(**ev), config(), incident_id="i-1")


@pytest.mark.parametrize("path", PATH_NAMES)
def test_every_runbook_builds_with_the_documented_context(path):
    plan = build_plan(load_runbook(path), evidence(), config(), incident_id="i-1")
    assert plan.path == path and plan.steps
    assert plan.estimated_rto_s > 0
    assert plan.critical_path[-1] in {s.id for s in plan.steps}


def test_rpo_gate_appears_when_exposure_exceeds_target():
    plan = _regional(rpo__exposure_s=900)
    step = plan.step("accept-data-loss")
    assert not step.skipped
    assert "rpo" in plan.gates
    assert "evidence.rpo.exposure_s = 900" in plan.gates["rpo"].reason
    assert plan.gates["rpo"].min_approvers == 2


def test_rpo_gate_is_skipped_with_its_reason_when_exposure_is_within_target():
    plan = _regional(rpo__exposure_s=12)
    step = plan.step("accept-data-loss")
    assert step.skipped
    assert "is false (evidence.rpo.exposure_s = 12, config.targets.rpo_s = 300)" in step.skip_reason
    assert "rpo" not in plan.gates
    assert any("accept-data-loss" in d and "skipped" in d for d in plan.decisions)


def test_fence_gate_is_left_to_the_executor():
    step = _regional().step("accept-unfenced")
    assert step.runtime_condition and not step.skipped and step.condition_reason is None


def test_references_resolve_with_their_types():
    plan = _regional()
    promote = plan.step("promote-replica")
    assert promote.inputs["option"] == "Forced"
    assert promote.inputs["replica"] == config()["db"]["replica"]
    pool = plan.step("warm-secondary-pool")
    assert pool.inputs["count"] == 3
    assert pool.compensation.activity == "compute_scale_pool"
    assert pool.compensation.inputs["count"] == 1


def test_reference_inside_text_is_formatted():
    assert resolve("db ${config.db.database} now", {"config": config()}) == "db odoo now"


def test_evidence_keys_with_dots_and_nested_mappings_both_resolve():
    context = {"evidence": {"postgres.primary.reachable": False, "a": {"b": 2}}}
    assert resolve("${evidence.postgres.primary.reachable}", context) is False
    assert resolve("${evidence.a.b}", context) == 2


def test_step_references_are_kept_for_the_executor():
    plan = build_plan(load_runbook("database-corruption"), evidence(), config())
    restore = plan.step("restore-isolated")
    assert restore.inputs["point_in_time"] == "${steps.find-last-good-point.point_in_time}"


def test_missing_evidence_names_step_and_field():
    ev = evidence()
    del ev["promote.option"]
    with pytest.raises(PlanError) as caught:
        build_plan(load_runbook("regional-outage"), ev, config())
    assert "step 'promote-replica' inputs 'option': evidence.promote.option" in str(caught.value)


def test_missing_config_names_step_and_field_for_every_problem():
    cfg = config()
    del cfg["aks"]
    with pytest.raises(PlanError) as caught:
        build_plan(load_runbook("regional-outage"), evidence(), cfg)
    problems = caught.value.problems
    assert any(p.startswith("step 'warm-secondary-pool' inputs 'cluster'") for p in problems)
    assert any("compensation.inputs 'count'" in p for p in problems)
    assert any(p.startswith("step 'start-odoo-secondary'") for p in problems)


def test_null_required_input_is_refused():
    with pytest.raises(PlanError, match="inputs 'option': resolved to nothing"):
        build_plan(load_runbook("regional-outage"), evidence(promote__option=None), config())


def test_null_optional_input_is_left_to_the_activity_default():
    plan = build_plan(load_runbook("regional-outage"), evidence(promote__reason=None), config())
    assert "reason" not in plan.step("promote-replica").inputs


def test_condition_of_a_step_on_missing_evidence_is_refused():
    ev = evidence()
    del ev["dependency.kind"]
    with pytest.raises(PlanError, match="step 'pause-integration' field 'when': evidence.depen"):
        build_plan(load_runbook("dependency-failure"), ev, config())


def test_gate_stays_when_the_evidence_cannot_decide_it():
    for ev in (
        evidence(rpo__exposure_s=None),
        {k: v for k, v in evidence().items() if k != "rpo.exposure_s"},
    ):
        plan = build_plan(load_runbook("regional-outage"), ev, config())
        step = plan.step("accept-data-loss")
        assert not step.skipped and "rpo" in plan.gates
        assert "cannot be decided" in plan.gates["rpo"].reason


def test_skipped_step_does_not_need_its_inputs():
    cfg = config()
    del cfg["storage"]
    plan = build_plan(load_runbook("dependency-failure"), evidence(dependency__kind="redis"), cfg)
    assert plan.step("switch-storage").skipped
    assert not plan.step("flush-cache").skipped


def test_reference_to_a_skipped_step_is_refused():
    doc = runbook([check("a", when="evidence.go"), check("b", after=["a"])])
    doc["steps"][1]["inputs"] = {"server": "${steps.a.server}"}
    with pytest.raises(PlanError, match="step 'b' inputs 'server': reads step 'a', which"):
        build_plan(doc, {"go": False}, {})


def test_invalid_runbook_document_is_a_plan_error():
    with pytest.raises(PlanError, match="unknown action"):
        build_plan(runbook([{"id": "a", "title": "a", "action": "nope"}]), {}, {})


def _graph():
    # a(10) -> c(5); b(30) -> d(1); c, d -> e(2); p is prestaged (40) and e also needs it.
    return runbook(
        [
            hold("p", prestage=True, estimate_s=40),
            gate(estimate_s=20),
            check("a", after=["approve"], estimate_s=10),
            check("b", after=["approve"], estimate_s=30),
            check("c", after=["a"], estimate_s=5),
            check("d", after=["b"], estimate_s=1),
            check("e", after=["c", "d", "p"], estimate_s=2),
        ]
    )


def test_critical_path_and_estimated_rto():
    plan = build_plan(_graph(), {}, {})
    assert plan.critical_path == ["approve", "b", "d", "e"]
    assert plan.estimated_rto_s == 53
    assert critical_path(plan, durations={"a": 100})[0] == ["approve", "a", "c", "e"]


def test_prestage_saved_and_sequential():
    plan = build_plan(_graph(), {}, {})
    # Without prestaging, p (40 s) would start after the gate (20 s): 20 + 40 + 2 = 62 > 53.
    assert prestage_saved_s(plan) == 9
    assert sequential_s(plan) == 108


def test_ready_steps_put_prestaged_first_and_do_not_wait_for_waves():
    plan = build_plan(_graph(), {}, {})
    assert ready_steps(plan, [], []) == ["p", "approve"]
    assert ready_steps(plan, ["approve"], ["p"]) == ["a", "b"]
    # c starts once a ends, whether or not b (its sibling) has ended.
    assert ready_steps(plan, ["approve", "a"], ["p", "b"]) == ["c"]


def test_blocked_by_covers_descendants_only():
    plan = build_plan(_graph(), {}, {})
    assert blocked_by(plan, ["a"]) == {"c", "e"}


def test_runtime_condition_reads_results_and_says_when_it_cannot_decide():
    plan = _regional()
    step = plan.step("accept-unfenced")
    assert decide_runtime_condition(step, {"fence-old-primary": {"fenced": False}})[0] is True
    assert decide_runtime_condition(step, {"fence-old-primary": {"fenced": True}})[0] is False
    holds, why = decide_runtime_condition(step, {"fence-old-primary": {}})
    assert holds is None and "steps.fence-old-primary.fenced is missing" in why


def test_plan_round_trips_as_plain_json():
    plan = _regional()
    again = type(plan).model_validate_json(plan.model_dump_json())
    assert again == plan
