"""The workloads file: validation names the bad field; resource lookup ignores case."""

import copy
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from shared.config import DEFAULT_CONFIG, ConfigError, config_path, load_config, parse_config
from shared.models import Gate, Role, RunbookPath

SUB = "00000000-0000-0000-0000-000000000001"
BASE = f"/subscriptions/{SUB}/resourceGroups/rg-odoo-prod/providers"


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def broken(document: dict, edit) -> str:
    doc = copy.deepcopy(document)
    edit(doc["environments"]["prod-eu"])
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    return str(caught.value)


def test_repository_file_describes_the_demo_environment():
    env = load_config().environment("prod-eu")
    assert env.subscription_id == SUB and env.resource_group == "rg-odoo-prod"
    assert (
        env.postgres.primary.name == "odoo-pg-weu" and env.postgres.primary.region == "westeurope"
    )
    assert (
        env.postgres.replica.name == "odoo-pg-neu" and env.postgres.replica.region == "northeurope"
    )
    assert env.aks.primary.name == "aks-odoo-weu" and env.aks.secondary.name == "aks-odoo-neu"
    assert env.traffic_manager.profile.name == "tm-odoo"
    assert env.key_vault.name == "kv-odoo-prod" and env.redis is not None


def test_resource_ids_are_derived_from_subscription_and_resource_group():
    env = load_config().environment("prod-eu")
    assert env.postgres.primary.resource_id == (
        f"{BASE}/Microsoft.DBforPostgreSQL/flexibleServers/odoo-pg-weu"
    )
    assert env.traffic_manager.endpoints["secondary"].resource_id == (
        f"{BASE}/Microsoft.Network/trafficManagerProfiles/tm-odoo/ExternalEndpoints/odoo-neu"
    )


def test_every_gate_has_bounded_timings_and_targets_cover_every_workload():
    env = load_config().environment("prod-eu")
    assert set(env.approvals) == set(Gate)
    for policy in env.approvals.values():
        t = policy.timings
        assert t.remind_after < t.escalate_after < t.expire_after <= timedelta(hours=72)
    assert set(env.workloads) == {"accounting", "invoicing", "payments", "reporting"}
    assert env.workloads["payments"].rpo == timedelta(minutes=1)
    assert env.tightest_rpo() == timedelta(minutes=1)


def test_security_incident_needs_security_officer_and_dr_approver():
    recovery = load_config().environment("prod-eu").approvals[Gate.RECOVERY]
    need = recovery.requirement(RunbookPath.SECURITY_INCIDENT)
    assert set(need.required_roles) == {Role.SECURITY_OFFICER, Role.APPROVER}
    assert need.required_approvals == 2
    assert recovery.requirement(RunbookPath.REGIONAL_OUTAGE).required_approvals == 1


def test_lookup_by_resource_id_ignores_case_and_matches_children():
    config = load_config()
    child = f"{BASE}/Microsoft.DBforPostgreSQL/flexibleServers/odoo-pg-weu/databases/odoo".upper()
    match = config.locate(child)
    assert (match.environment, match.component, match.region) == (
        "prod-eu",
        "postgres-primary",
        "westeurope",
    )
    assert config.locate(f"{BASE}/Microsoft.Cache/redis/other").component == "resource-group"
    assert config.locate("/subscriptions/ffffffff-0000-0000-0000-000000000000/x") is None
    assert config.locate(None) is None


def test_missing_field_is_named(document):
    message = broken(document, lambda env: env["postgres"]["replica"].pop("name"))
    assert "environments.prod-eu.postgres.replica.name: Field required" in message


def test_unknown_role_is_named(document):
    def edit(env):
        env["approvals"]["signoff"]["groups"][0]["role"] = "Finance.Intern"

    assert "approvals.signoff.groups.0.role" in broken(document, edit)


def test_timings_that_do_not_grow_are_refused(document):
    def edit(env):
        env["approvals"]["rpo"]["timings"] = {
            "remind_after": "30m",
            "escalate_after": "20m",
            "expire_after": "1h",
        }

    assert "approvals.rpo.timings" in broken(document, edit)


def test_expiry_beyond_the_bound_is_refused(document):
    def edit(env):
        env["approvals"]["fence"]["timings"]["expire_after"] = "6d"

    message = broken(document, edit)
    assert "approvals.fence.timings" in message and "six-day" in message


def test_missing_gate_and_missing_workload_are_named(document):
    assert "missing the gate(s) cutover" in broken(
        document, lambda e: e["approvals"].pop("cutover")
    )
    assert "missing targets for payments" in broken(
        document, lambda e: e["workloads"].pop("payments")
    )


def test_required_role_held_by_no_group_is_refused(document):
    def edit(env):
        env["approvals"]["cutover"]["required_roles"] = ["Security.Officer"]

    assert "held by no approver group" in broken(document, edit)


def test_unknown_key_is_refused_so_typos_do_not_pass(document):
    assert "tierr" in broken(document, lambda env: env.update(tierr="x"))


def test_bad_yaml_and_missing_file_give_config_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("environments: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_dr_config_names_the_file(tmp_path: Path):
    assert config_path({}) == DEFAULT_CONFIG
    assert config_path({"DR_CONFIG": str(tmp_path / "w.yaml")}) == tmp_path / "w.yaml"
    assert config_path({"DR_CONFIG": "config/workloads.yaml"}) == DEFAULT_CONFIG


def test_missing_resource_sections_are_named_as_required(document):
    assert "key_vault: Field required" in broken(document, lambda env: env.pop("key_vault"))
    message = broken(document, lambda env: env["traffic_manager"].pop("profile"))
    assert "traffic_manager.profile: Field required" in message


def test_redis_is_optional(document):
    doc = copy.deepcopy(document)
    doc["environments"]["prod-eu"].pop("redis")
    assert parse_config(doc).environment("prod-eu").redis is None
