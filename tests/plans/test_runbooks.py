"""Runbook files and the rules every runbook keeps."""

import pytest

from shared.runbooks import (
    ACTIONS,
    ACTIVITY_FOR_ACTION,
    PATH_NAMES,
    RunbookError,
    ancestors,
    load_all,
    load_runbook,
    parse_runbook,
)
from tests.plans.helpers import check, gate, hold, runbook


@pytest.fixture(scope="module")
def runbooks():
    return load_all()


def _problems(doc) -> str:
    with pytest.raises(RunbookError) as caught:
        parse_runbook(doc, source="test.yaml")
    return str(caught.value)


def test_every_path_has_a_versioned_runbook(runbooks):
    assert set(runbooks) == set(PATH_NAMES)
    assert all(rb.version >= 1 for rb in runbooks.values())


def test_every_action_maps_to_an_activity_name():
    assert ACTIVITY_FOR_ACTION["db.promote"] == "db_promote"
    assert ACTIVITY_FOR_ACTION["traffic.cutover"] == "traffic_cutover"
    assert set(ACTIVITY_FOR_ACTION) == set(ACTIONS)
    assert all("." not in name for name in ACTIVITY_FOR_ACTION.values())


def test_regional_outage_fences_before_any_promotion(runbooks):
    rb = runbooks["regional-outage"]
    promotions = [s for s in rb.steps if s.action == "db.promote"]
    assert promotions
    for step in promotions:
        before = ancestors(rb.steps, step.id)
        assert any(rb.step(a).action == "db.fence" for a in before)
        assert "accept-data-loss" in before and "accept-unfenced" in before


def test_regional_outage_holds_jobs_until_signoff(runbooks):
    rb = runbooks["regional-outage"]
    release = next(s for s in rb.steps if s.action == "jobs.release")
    assert "finance-signoff" in ancestors(rb.steps, release.id)
    start = rb.step("start-odoo-secondary")
    assert "hold-jobs" in ancestors(rb.steps, start.id)


def test_rpo_gate_is_conditional_on_measured_exposure(runbooks):
    step = runbooks["regional-outage"].step("accept-data-loss")
    assert step.gate == "rpo"
    assert step.when == "evidence.rpo.exposure_s > config.targets.rpo_s"


def test_database_corruption_never_fails_over_to_the_replica(runbooks):
    rb = runbooks["database-corruption"]
    assert not [s for s in rb.steps if s.action == "db.promote"]
    assert [s for s in rb.steps if s.action == "db.pitr"]
    assert "approve-cutover" in ancestors(rb.steps, "repoint-app")


def test_security_incident_needs_security_officer_and_dr_approver(runbooks):
    rb = runbooks["security-incident"]
    recovery = rb.gates["recovery"]
    assert set(recovery.approvers) == {"Security.Officer", "DR.Approver"}
    assert recovery.min_approvers == 2
    assert rb.step("validate-strict").inputs["strict"] is True
    assert not [s for s in rb.steps if s.action == "db.promote"]


def test_security_incident_without_both_roles_is_refused():
    doc = load_runbook("security-incident").model_dump(mode="json")
    doc["gates"]["recovery"]["approvers"] = ["DR.Approver"]
    assert "needs approvers DR.Approver, Security.Officer" in _problems(doc)


def test_dependency_failure_and_ha_handled_touch_no_database_failover(runbooks):
    for name in ("dependency-failure", "ha-handled"):
        actions = {s.action for s in runbooks[name].steps}
        assert not actions & {"db.promote", "db.pitr", "db.fence", "traffic.cutover"}
    assert runbooks["ha-handled"].gates == {}
    assert not [s for s in runbooks["ha-handled"].steps if s.destructive]


def test_destructive_steps_all_wait_for_a_gate(runbooks):
    for rb in runbooks.values():
        for step in rb.steps:
            if step.destructive:
                before = ancestors(rb.steps, step.id)
                assert any(rb.step(a).gate and rb.step(a).when is None for a in before), step.id


def test_unknown_action_is_named_with_its_step():
    message = _problems(runbook([{"id": "x", "title": "x", "action": "db.explode"}]))
    assert "step 'x': unknown action 'db.explode'" in message


def test_unknown_after_name_is_named_with_its_step():
    message = _problems(runbook([check("a", after=["nowhere"])]))
    assert "step 'a': 'after' names unknown step 'nowhere'" in message


def test_cycle_is_refused_and_shown():
    message = _problems(runbook([check("a", after=["b"]), check("b", after=["a"])]))
    assert "dependency cycle: a -> b -> a" in message or "dependency cycle: b -> a -> b" in message


def test_missing_required_input_is_named():
    step = check("a")
    step["inputs"] = {}
    expected = "step 'a': action 'validate.technical' needs input 'server'"
    assert expected in _problems(runbook([step]))


def test_unknown_input_is_named():
    step = check("a")
    step["inputs"]["sever"] = "typo"
    assert "takes no input 'sever'" in _problems(runbook([step]))


def test_prestaged_step_cannot_wait_for_a_gate():
    message = _problems(runbook([gate(), hold("a", prestage=True, after=["approve"])]))
    assert "step 'a': a prestaged step cannot wait for a gate" in message


def test_prestaged_step_must_be_undoable():
    step = hold("a", prestage=True)
    del step["compensation"]
    assert "must be read-only or compensable" in _problems(runbook([step]))


def test_destructive_step_needs_an_unconditional_gate_before_it():
    step = hold("a", destructive=True)
    assert "must run after an unconditional gate" in _problems(runbook([step]))
    conditional = gate(when="evidence.x > 1")
    message = _problems(runbook([conditional, hold("a", destructive=True, after=["approve"])]))
    assert "must run after an unconditional gate" in message


def test_promotion_without_a_fence_step_is_refused():
    promote = {
        "id": "promote",
        "title": "promote",
        "action": "db.promote",
        "after": ["approve"],
        "destructive": True,
        "inputs": {"replica": "r", "option": "Forced"},
    }
    message = _problems(runbook([gate(), promote], path="regional-outage"))
    assert "'db.promote' must run after a 'db.fence' step" in message


def test_path_rules_refuse_forbidden_actions():
    promote = {
        "id": "promote",
        "title": "promote",
        "action": "db.promote",
        "inputs": {"replica": "r", "option": "Forced"},
    }
    message = _problems(runbook([promote], path="database-corruption"))
    assert "path 'database-corruption' must never run 'db.promote'" in message


def test_reference_to_a_step_that_does_not_run_before_is_refused():
    message = _problems(runbook([check("a", inputs={"server": "${steps.b.server}"}), check("b")]))
    assert "step 'a': 'steps.b.server' reads step 'b'" in message


def test_reference_outside_evidence_config_and_steps_is_refused():
    message = _problems(runbook([check("a", inputs={"server": "${env.HOME}"})]))
    assert "must start with evidence., config. or steps." in message


def test_unreadable_condition_is_refused():
    assert "cannot read condition" in _problems(runbook([check("a", when="x is big")]))


def test_gate_must_be_declared():
    assert "gate 'signoff' is not declared" in _problems(runbook([gate(name="signoff")]))


def test_file_name_must_match_path(tmp_path):
    source = load_runbook("ha-handled").model_dump_json()
    source = source.replace('"ha-handled"', '"failed-release"')
    (tmp_path / "ha-handled.yaml").write_text(source)
    with pytest.raises(RunbookError, match="named 'ha-handled' but describes 'failed-release'"):
        load_runbook("ha-handled", tmp_path)


def test_unknown_runbook_name_lists_the_paths(tmp_path):
    with pytest.raises(RunbookError, match="no runbook 'nope'"):
        load_runbook("nope", tmp_path)


def test_condition_mixing_step_results_and_evidence_is_refused():
    doc = runbook([check("a"), check("b", after=["a"], when="steps.a.lag > config.max")])
    assert "mixes steps. with evidence. or config." in _problems(doc)
