"""Regional outage after a partition: forced promotion, and the evidence estimate of the loss
matches the rows that were really lost."""

from __future__ import annotations

import pytest

from activities.database import evidence, fence, promote
from shared.recovery import EvidenceRequest, FenceRequest, PromoteRequest
from tests.activities.conftest import APP, PRIMARY_ID, REPLICA_ID, db, endpoint

pytestmark = pytest.mark.timeout(240)

STEP = {"incident_id": "prod-eu/availability#1", "step_id": "test"}


def _ledger(env) -> None:
    env.sql("odoo-pg-weu", "CREATE TABLE ledger (id int PRIMARY KEY, note text)")
    env.sql("odoo-pg-weu", "GRANT ALL ON ledger TO odoo")


def _commit_rows(env, ids) -> None:
    for i in ids:  # one transaction each, so each has its own commit time
        env.sql("odoo-pg-weu", "INSERT INTO ledger VALUES (%s, 'row')", (i,))


def test_partition_then_outage_forces_promotion_and_estimate_matches_the_loss(start_env):
    env = start_env()
    _ledger(env)
    _commit_rows(env, range(1, 6))
    env.wait_replayed()
    env.control("POST", "postgres/odoo-pg-neu/partition")

    _commit_rows(env, range(6, 11))
    lost_until = env.sql(
        "odoo-pg-weu", "SELECT max(pg_xact_commit_timestamp(xmin)) FROM ledger WHERE id > 5"
    )[0][0]
    primary, replica = db(PRIMARY_ID), db(REPLICA_ID)

    seen = evidence(EvidenceRequest(**STEP, primary=primary, replica=replica))
    assert seen.primary.reachable and seen.replica.reachable
    assert seen.promote_option == "Forced", seen.promote_reason
    assert seen.exposure.basis == "measured" and seen.exposure.bytes > 0

    env.control("POST", "regions/westeurope/fail")
    later = evidence(
        EvidenceRequest(
            **STEP, primary=primary, replica=replica, earlier=seen.carry_forward, rpo_target_s=300
        )
    )
    assert not later.primary.reachable
    assert later.promote_option == "Forced"
    assert later.exposure.basis == "earlier_observation"

    replayed_until = env.sql("odoo-pg-neu", "SELECT pg_last_xact_replay_timestamp()")[0][0]
    really_lost_s = (lost_until - replayed_until).total_seconds()
    assert really_lost_s > 0
    assert later.exposure.seconds == pytest.approx(really_lost_s, abs=0.001)
    assert later.exposure.bytes == seen.exposure.bytes

    fenced = fence(
        FenceRequest(**STEP, old_primary=primary, app=APP, endpoint=endpoint("odoo-weu"))
    )
    assert fenced.fenced, fenced.gaps
    assert fenced.facts.canary.refused_by == "connection"

    done = promote(PromoteRequest(**STEP, replica=replica, option=later.promote_option, app=APP))
    assert done.promoted and not done.already_promoted and done.writable.writable
    ids = [r[0] for r in env.sql("odoo-pg-neu", "SELECT id FROM ledger ORDER BY id")]
    assert ids == [1, 2, 3, 4, 5]


def test_promoting_twice_does_it_once(start_env):
    start_env(_no_network())
    replica = db(REPLICA_ID)
    first = promote(PromoteRequest(**STEP, replica=replica, option="Forced"))
    again = promote(PromoteRequest(**STEP, replica=replica, option="Forced"))
    assert first.promoted and not first.already_promoted
    assert again.already_promoted and again.writable.writable


def _no_network():
    from tests.activities.conftest import base_topology

    return base_topology(network=False)


def test_without_an_earlier_look_at_the_primary_the_estimate_bounds_the_loss(start_env):
    env = start_env(_no_network())
    _ledger(env)
    _commit_rows(env, range(1, 3))
    env.wait_replayed()
    primary, replica = db(PRIMARY_ID), db(REPLICA_ID)
    evidence(EvidenceRequest(**STEP, primary=primary, replica=replica))  # learns addresses
    env.control("POST", "postgres/odoo-pg-neu/partition")
    _commit_rows(env, range(3, 6))
    lost_until = env.sql("odoo-pg-weu", "SELECT max(pg_xact_commit_timestamp(xmin)) FROM ledger")[
        0
    ][0]
    env.control("POST", "regions/westeurope/fail")

    blind = evidence(EvidenceRequest(**STEP, primary=primary, replica=replica, rpo_target_s=3600))
    replayed_until = env.sql("odoo-pg-neu", "SELECT pg_last_xact_replay_timestamp()")[0][0]
    assert blind.exposure.basis == "replay_age" and blind.exposure.bytes is None
    assert blind.exposure.seconds >= (lost_until - replayed_until).total_seconds()
    assert blind.rpo_within_target is True and "within" in blind.rpo_reason
