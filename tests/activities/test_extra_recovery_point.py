"""The last good point in time: found from the first damaged journal entry on a seeded ledger,
and a restore to it holds none of the damage and all the work before; dropping a restore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from activities.database import ActivityError, pitr
from activities.recovery_point import _decide, drop_server, find_recovery_point
from shared.finance.live import append_invoice, post_faulty_batch
from shared.finance.seed import SeedOptions, seed_database
from shared.recovery import PitrRequest
from shared.recovery_extra import DropServerRequest, FindRecoveryPointRequest
from tests.activities.conftest import PG, PRIMARY_ID, base_topology, db

pytestmark = pytest.mark.timeout(300)

# The incident ids name the environment of config/workloads.yaml (same subscription and group).
STEP = {"incident_id": "prod-eu:corruption:1", "step_id": "find-last-good-point"}


def _dsn(env, server: str) -> str:
    return f"host=127.0.0.1 port={env.port(server)} user=postgres dbname=odoo"


def _moves(env, server: str, ids: list[int]) -> list[int]:
    rows = env.sql(server, "SELECT id FROM account_move WHERE id = ANY(%s) ORDER BY id", (ids,))
    return [r[0] for r in rows]


def test_last_good_point_is_just_before_the_first_damaged_entry_and_restores_clean(start_env):
    env = start_env(base_topology(network=False))
    dsn = _dsn(env, "odoo-pg-weu")
    seed_database(dsn, SeedOptions(odoo=17, companies=1, moves=40, attachments=0, years=1))
    suspected = env.sql("odoo-pg-weu", "SELECT now()")[0][0]
    good = append_invoice(dsn, seed=1)
    batch = post_faulty_batch(dsn, count=3)
    later = append_invoice(dsn, seed=2)

    found = find_recovery_point(
        FindRecoveryPointRequest(**STEP, server=db(PRIMARY_ID), suspected_since=suspected)
    )

    assert found.basis == "damage_found"
    assert sorted(m.move_id for m in found.damaged_moves) == sorted(batch.move_ids)
    assert {m.commit_time_basis for m in found.damaged_moves} == {"commit_timestamp"}
    committed = env.sql(
        "odoo-pg-weu",
        "SELECT min(pg_xact_commit_timestamp(xmin)) FROM account_move WHERE id = ANY(%s)",
        (batch.move_ids,),
    )[0][0]
    assert found.point_in_time == committed - timedelta(milliseconds=1)
    good_at = env.sql(
        "odoo-pg-weu",
        "SELECT pg_xact_commit_timestamp(xmin) FROM account_move WHERE id = %s",
        (good.id,),
    )[0][0]
    assert good_at < found.point_in_time
    assert batch.names[0] in found.reason

    restored = pitr(
        PitrRequest(
            **{**STEP, "step_id": "restore-isolated"},
            source=db(PRIMARY_ID),
            target_name="odoo-pg-weu-restore",
            point_in_time=found.point_in_time,
        )
    )
    assert restored.port is not None
    assert _moves(env, "odoo-pg-weu-restore", batch.move_ids + [later.id]) == []
    assert _moves(env, "odoo-pg-weu-restore", [good.id]) == [good.id]

    clean = find_recovery_point(
        FindRecoveryPointRequest(
            **STEP, server=db(restored.server_id, host="127.0.0.1", port=restored.port),
            suspected_since=suspected,
        )
    )  # fmt: skip
    assert clean.basis == "no_damage_found" and clean.damaged_moves == []
    assert clean.point_in_time == suspected - timedelta(seconds=1)
    assert "falls back" in clean.reason


def test_drop_restore_deletes_it_once_and_refuses_servers_it_did_not_create(start_env):
    topology = base_topology(network=False)
    topology["postgres"]["servers"].append({"name": "odoo-pg-other", "location": "westeurope"})
    env = start_env(topology)
    env.sql("odoo-pg-weu", "CREATE TABLE t (id int)")
    env.sql("odoo-pg-weu", "INSERT INTO t VALUES (1)")
    point = env.sql("odoo-pg-weu", "SELECT max(pg_xact_commit_timestamp(xmin)) FROM t")[0][0]
    pitr(
        PitrRequest(
            **STEP, source=db(PRIMARY_ID), target_name="odoo-pg-weu-restore", point_in_time=point
        )
    )

    first = drop_server(DropServerRequest(**STEP, server="odoo-pg-weu-restore"))
    again = drop_server(DropServerRequest(**STEP, server=f"{PG}/odoo-pg-weu-restore"))

    assert first.deleted and not first.already_gone
    assert first.server_id == f"{PG}/odoo-pg-weu-restore"
    assert again.already_gone and not again.deleted
    with pytest.raises(ActivityError, match="primary of environment prod-eu"):
        drop_server(DropServerRequest(**STEP, server=PRIMARY_ID))
    with pytest.raises(ActivityError, match="no tag created-by=odoo-finance-dr"):
        drop_server(DropServerRequest(**STEP, server="odoo-pg-other"))
    assert env.sql("odoo-pg-other", "SELECT 1", dbname="postgres") == [(1,)]
    assert env.sql("odoo-pg-weu", "SELECT count(*) FROM t")[0][0] == 1


def test_the_point_never_reaches_the_before_bound():
    before = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    req = FindRecoveryPointRequest(**STEP, server=db(PRIMARY_ID), before=before)

    result = _decide(req, req.window_start(), [], 0)

    assert result.point_in_time < before
    assert result.basis == "no_damage_found"
    assert req.window_start() == before - timedelta(seconds=300)


def test_the_search_needs_a_starting_time():
    with pytest.raises(ValidationError, match="suspected_since or before"):
        FindRecoveryPointRequest(**STEP, server=db(PRIMARY_ID))
