"""Runbooks' action steps, in plan order, against local Azure: each step's input built from the
plan and the results of the steps before it, as the executor builds it, and given as JSON to the
activity the app registers under the step's name. Gates count as approved.

Database corruption: a faulty batch lands after a good invoice; the run ends with Odoo on the
restored server, which holds the invoice and none of the batch. Security incident: the same,
from the compromise time, with the environment locked and then unlocked. High availability and
dependency failure: reroute, restart, pause and resume, and the checks after them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import pytest

from orchestrators.plan import step_input
from shared.config import cached_config
from shared.finance.live import append_invoice, post_faulty_batch
from shared.finance.seed import SeedOptions, seed_database
from shared.incident import plan_config
from shared.plans import build_plan, resolve, topological_order
from shared.runbooks import load_runbook
from tests.activities.conftest import base_topology
from tests.app_index import functions

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def activities() -> dict[str, Callable[[dict], dict]]:
    """activity name -> the function the app registered for it."""
    found = {}
    for function in functions():
        trigger = function.get_trigger()
        if trigger is not None and trigger.type == "activityTrigger":
            found[trigger.activity] = function.get_user_function()
    return found


def run_steps(env, activities, path: str, since: str, **evidence: object) -> dict[str, dict]:
    """Every action step of the path's plan, in order; the results by step id."""
    config = plan_config(
        "prod-eu",
        cached_config().environment("prod-eu"),
        frontdoor_url=env.settings["DR_FRONTDOOR_URL"],
    )
    context = {
        "damage": {"suspected_since": since},
        "security": {"compromised_since": since},
        "ingress": {"degraded": True, "endpoint": "primary"},
        "dependency": {"kind": "integration", "name": "odoo-bank-sync"},
        **evidence,
    }
    plan = build_plan(load_runbook(path), context, config, incident_id=f"prod-eu:{path}:7")
    results: dict[str, dict] = {}
    for step_id in topological_order(plan):
        step = next(s for s in plan.steps if s.id == step_id)
        if step.kind == "gate" or step.skipped:
            continue
        inputs = resolve(step.inputs, {"steps": results})
        payload = json.loads(json.dumps(step_input(plan, step.id, inputs, "plan-1"), default=str))
        results[step.id] = activities[step.activity](payload)
    return results


def _seeded(env) -> str:
    dsn = f"host=127.0.0.1 port={env.port('odoo-pg-weu')} user=postgres dbname=odoo"
    seed_database(dsn, SeedOptions(odoo=17, companies=1, moves=40, attachments=0, years=1))
    return dsn


def _app_topology() -> dict:
    topology = base_topology()
    topology["odoo"] = {"regions": {"westeurope": {"cluster": "aks-odoo-weu"}}}
    return topology


def test_database_corruption_steps_end_on_the_restored_server_without_the_damage(
    start_env, activities
):
    env = start_env(_app_topology())
    dsn = _seeded(env)
    suspected = env.sql("odoo-pg-weu", "SELECT now()")[0][0]
    good = append_invoice(dsn, seed=3)
    batch = post_faulty_batch(dsn, count=2)

    results = run_steps(env, activities, "database-corruption", suspected.isoformat())

    point = results["find-last-good-point"]
    assert point["basis"] == "damage_found"
    assert sorted(m["move_id"] for m in point["damaged_moves"]) == sorted(batch.move_ids)
    assert results["validate-restored"]["summary"]["fail"] == 0
    assert results["validate-technical"]["ok"], results["validate-technical"]
    assert results["repoint-app"]["db_host"] == "odoo-pg-restore.postgres.database.azure.com"
    assert results["repoint-app"]["health"]["ok"]
    assert not results["reopen-posting"]["enabled"]
    ids = env.sql(
        "odoo-pg-restore",
        "SELECT id FROM account_move WHERE id = ANY(%s)",
        ([good.id, *batch.move_ids],),
    )
    assert [r[0] for r in ids] == [good.id]


def test_security_incident_steps_restore_the_clean_point_and_lift_the_isolation(
    start_env, activities
):
    env = start_env(_app_topology())
    dsn = _seeded(env)
    good = append_invoice(dsn, seed=4)
    compromised = env.sql("odoo-pg-weu", "SELECT now()")[0][0]
    batch = post_faulty_batch(dsn, count=1)

    results = run_steps(env, activities, "security-incident", compromised.isoformat())

    point = results["find-clean-point"]
    assert datetime.fromisoformat(point["point_in_time"].replace("Z", "+00:00")) < compromised
    assert len(results["isolate"]["locks"]) == len(results["lift-isolation"]["removed"])
    assert results["rotate-secrets"]["rotated"][0]["name"] == "odoo-db-password"
    assert results["validate-strict"]["summary"]["fail"] == 0
    assert results["repoint-app"]["health"]["ok"]
    ids = env.sql(
        "odoo-pg-restore",
        "SELECT id FROM account_move WHERE id = ANY(%s)",
        ([good.id, *batch.move_ids],),
    )
    assert [r[0] for r in ids] == [good.id]


def test_ha_handled_steps_keep_the_only_endpoint_of_the_region_and_restart(start_env, activities):
    env = start_env(_app_topology())

    results = run_steps(env, activities, "ha-handled", "2026-12-04T09:00:00Z")

    assert results["check-database"]["primary"]["reachable"]
    assert results["reroute-ingress"]["endpoint"] == "odoo-weu"
    assert not results["reroute-ingress"]["rerouted"]
    assert not results["restart-odoo"]["already_restarted"]
    assert results["validate-technical"]["ok"], results["validate-technical"]


def test_dependency_failure_steps_pause_and_resume_the_integration(start_env, activities):
    env = start_env(_app_topology())

    results = run_steps(env, activities, "dependency-failure", "2026-12-04T09:00:00Z")

    assert results["check-dependency"]["kind"] == "integration"
    assert results["pause-integration"]["paused"]
    assert not results["resume-integration"]["paused"]
    assert [d["after"] for d in results["resume-integration"]["deployments"]] == [1]
    assert "flush-cache" not in results and "switch-storage" not in results
