"""Corruption: point-in-time restore to just before the bad transaction, into an isolated
server; the forensic backup under its own name; database secrets as references."""

from __future__ import annotations

import pytest

from activities.database import db_secrets, forensic_backup, pitr
from shared.recovery import ForensicBackupRequest, PitrRequest, SecretRef, SecretsRequest
from tests.activities.conftest import PRIMARY_ID, base_topology, db

pytestmark = pytest.mark.timeout(300)

STEP = {"incident_id": "prod-eu/data#1", "step_id": "test"}


def test_restore_to_just_before_the_bad_transaction_keeps_what_it_destroyed(start_env):
    env = start_env(base_topology(network=False))
    env.sql("odoo-pg-weu", "CREATE TABLE ledger (id int PRIMARY KEY)")
    for i in range(1, 6):
        env.sql("odoo-pg-weu", "INSERT INTO ledger VALUES (%s)", (i,))
    last_good = env.sql("odoo-pg-weu", "SELECT max(pg_xact_commit_timestamp(xmin)) FROM ledger")[0][
        0
    ]
    env.sql("odoo-pg-weu", "DELETE FROM ledger WHERE id <= 3")  # the bad transaction
    env.sql("odoo-pg-weu", "INSERT INTO ledger VALUES (6)")  # and work after it

    request = PitrRequest(
        **STEP, source=db(PRIMARY_ID), target_name="odoo-pg-restore1", point_in_time=last_good
    )
    restored = pitr(request)
    assert not restored.already_existed and not restored.in_recovery
    assert restored.server_id.endswith("/flexibleServers/odoo-pg-restore1")
    ids = [r[0] for r in env.sql("odoo-pg-restore1", "SELECT id FROM ledger ORDER BY id")]
    assert ids == [1, 2, 3, 4, 5]
    assert [r[0] for r in env.sql("odoo-pg-weu", "SELECT id FROM ledger ORDER BY id")] == [4, 5, 6]

    again = pitr(request)
    assert again.already_existed and again.port == restored.port


def test_forensic_backup_has_a_name_of_its_own_and_is_taken_once(start_env):
    start_env(base_topology(network=False))
    request = ForensicBackupRequest(**STEP, server=db(PRIMARY_ID))
    first = forensic_backup(request)
    assert first.backup_name == "forensic-prod-eu-data-1" and not first.already_existed
    assert forensic_backup(request).already_existed


def test_secrets_come_back_as_references_unless_revealed(start_env):
    start_env(base_topology(network=False))
    refs = {"app": SecretRef(name="odoo-db-password")}
    hidden = db_secrets(SecretsRequest(**STEP, secrets=refs))
    assert hidden.secrets["app"].value is None and hidden.secrets["app"].version
    shown = db_secrets(SecretsRequest(**STEP, secrets=refs, reveal=True))
    assert shown.secrets["app"].value == "test-odoo-Pa55"
