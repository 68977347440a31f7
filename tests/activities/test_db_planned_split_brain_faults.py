"""Planned promotion with the primary answering, split brain after fencing, and ARM faults
(throttling, a failed long-running operation, a timeout) surfacing as clear errors."""

from __future__ import annotations

import psycopg
import pytest

from activities.database import ActivityError, evidence, fence, promote, read_secret
from shared.recovery import EvidenceRequest, FenceRequest, PromoteRequest
from tests.activities.conftest import APP, PRIMARY_ID, REPLICA_ID, base_topology, db, endpoint

pytestmark = pytest.mark.timeout(300)

STEP = {"incident_id": "prod-eu/availability#2", "step_id": "test"}
WRITE_OP = "Microsoft.DBforPostgreSQL/flexibleServers/write"


def _app_write(env, server: str, password: str) -> None:
    """Write as the application would: its role, a password, the Odoo database."""
    dsn = f"host=127.0.0.1 port={env.port(server)} dbname=odoo user=odoo connect_timeout=3"
    with psycopg.connect(dsn, password=password, autocommit=True) as conn:
        conn.execute("INSERT INTO ledger VALUES ((SELECT coalesce(max(id), 0) + 1 FROM ledger))")


def _ledger(env) -> None:
    env.sql("odoo-pg-weu", "CREATE TABLE ledger (id int PRIMARY KEY)")
    env.sql("odoo-pg-weu", "GRANT ALL ON ledger TO odoo")


def test_primary_answering_gives_planned_promotion_and_loses_nothing(start_env):
    env = start_env(base_topology(network=False))
    _ledger(env)
    _app_write(env, "odoo-pg-weu", read_secret(APP.password_secret)[0])
    env.wait_replayed()
    primary, replica = db(PRIMARY_ID), db(REPLICA_ID)

    seen = evidence(EvidenceRequest(**STEP, primary=primary, replica=replica))
    assert seen.promote_option == "Planned", seen.promote_reason
    assert seen.exposure.seconds == 0 and seen.exposure.bytes == 0
    assert seen.primary.latest_backup_at is not None and seen.backup_age_s >= 0

    fenced = fence(FenceRequest(**STEP, old_primary=primary, app=APP))
    assert fenced.fenced, fenced.gaps
    assert fenced.facts.canary.refused_by == "authentication", fenced.facts.canary
    assert fenced.facts.server_stopped is None, "kept running so the promotion can catch up"

    done = promote(PromoteRequest(**STEP, replica=replica, option="Planned", app=APP))
    assert done.promoted and done.writable.writable
    assert env.sql("odoo-pg-neu", "SELECT count(*) FROM ledger")[0][0] == 1
    _app_write(env, "odoo-pg-neu", read_secret(APP.password_secret)[0])
    assert env.sql("odoo-pg-neu", "SELECT count(*) FROM ledger")[0][0] == 2


def test_old_primary_back_after_outage_refuses_the_application(start_env):
    env = start_env()
    _ledger(env)
    env.wait_replayed()
    old_password = read_secret(APP.password_secret)[0]
    primary, replica = db(PRIMARY_ID), db(REPLICA_ID)
    evidence(EvidenceRequest(**STEP, primary=primary, replica=replica))  # learns addresses

    env.control("POST", "regions/westeurope/fail")
    first = fence(FenceRequest(**STEP, old_primary=primary, app=APP, endpoint=endpoint("odoo-weu")))
    assert first.fenced and first.facts.endpoint_disabled
    promote(PromoteRequest(**STEP, replica=replica, option="Forced", app=APP))

    env.control("POST", "regions/westeurope/restore")
    env.azure.provider("postgres").fleet.instance(
        env.azure.provider("postgres").fleet.require("odoo-pg-weu")
    ).wait_ready(30)
    new_password = read_secret(APP.password_secret)[0]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _app_write(env, "odoo-pg-weu", new_password)
    _app_write(env, "odoo-pg-neu", new_password)

    # A stray application server still holding the old password is the gap the first fence
    # named; fencing again now that the old primary answers closes it.
    assert any("open connections" in g for g in first.gaps)
    _app_write(env, "odoo-pg-weu", old_password)
    again = fence(FenceRequest(**STEP, old_primary=primary, app=APP))
    assert again.fenced and again.facts.canary.refused_by == "authentication"
    assert again.new_secret_version == first.new_secret_version  # rotated once per incident
    _app_write(env, "odoo-pg-neu", new_password)  # so the promoted server still lets it in
    for password in (old_password, new_password):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _app_write(env, "odoo-pg-weu", password)


def test_throttling_beyond_the_clients_retries_is_a_clear_error(start_env):
    env = start_env(base_topology(network=False))
    env.control("POST", "faults", {"operation": WRITE_OP, "kind": "throttle", "count": -1,
                                   "seconds": 0.1})  # fmt: skip
    with pytest.raises(ActivityError, match=r"promotion of odoo-pg-neu failed: HTTP 429"):
        promote(PromoteRequest(**STEP, replica=db(REPLICA_ID), option="Forced"))


def test_throttling_within_the_clients_retries_is_absorbed(start_env):
    env = start_env(base_topology(network=False))
    env.control("POST", "faults", {"operation": WRITE_OP, "kind": "throttle", "count": 2,
                                   "seconds": 0.1})  # fmt: skip
    assert promote(PromoteRequest(**STEP, replica=db(REPLICA_ID), option="Forced")).promoted


def test_failed_operation_is_reported_and_a_retry_finds_the_work_done(start_env):
    env = start_env(base_topology(network=False))
    env.control("POST", "faults", {"operation": WRITE_OP, "kind": "lro_fail"})
    request = PromoteRequest(**STEP, replica=db(REPLICA_ID), option="Forced")
    with pytest.raises(ActivityError, match="forced promotion of odoo-pg-neu failed"):
        promote(request)
    retried = promote(request)
    assert retried.already_promoted and retried.writable.writable


def test_operation_slower_than_the_timeout_is_a_clear_error(start_env):
    env = start_env(base_topology(network=False))
    env.control("POST", "faults", {"operation": WRITE_OP, "kind": "latency", "seconds": 8})
    request = PromoteRequest(**STEP, replica=db(REPLICA_ID), option="Forced", timeout_s=5)
    with pytest.raises(ActivityError, match="did not finish within 5 s"):
        promote(request)
