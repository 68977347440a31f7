"""The generator: Odoo-shaped, deterministic, refuses to overwrite, files in filestore layout."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from shared.finance.live import append_invoice, post_faulty_batch
from shared.finance.seed import SeedError, SeedOptions, seed_database
from tests.finance.conftest import statuses

FINGERPRINT = (
    "SELECT md5(string_agg(concat_ws('|', id, name, state, journal_id, sequence_prefix, "
    "sequence_number, secure_sequence_number, inalterable_hash, amount_total), ',' ORDER BY id)) "
    "FROM account_move"
)


def test_same_seed_gives_the_same_database(seeded):
    first = seeded(17, moves=200, seed=7)
    second = seeded(17, moves=200, seed=7)
    other = seeded(17, moves=200, seed=8)
    assert first.one(FINGERPRINT) == second.one(FINGERPRINT)
    assert first.one(FINGERPRINT) != other.one(FINGERPRINT)


def test_refuses_a_database_that_holds_tables_unless_forced(seeded):
    db = seeded(16, moves=50)
    with pytest.raises(SeedError, match="already holds .* tables; pass --force"):
        seed_database(db.dsn, SeedOptions(odoo=16, moves=50))
    again = seed_database(db.dsn, SeedOptions(odoo=18, moves=50, force=True))
    assert again.odoo_version == "18.0"
    assert db.one("SELECT latest_version FROM ir_module_module WHERE name = 'base'") == "18.0.1.3"


@pytest.mark.parametrize("odoo", [16, 17, 18])
def test_version_specific_columns_are_there(seeded, odoo):
    db = seeded(odoo, moves=60)
    cols = {
        r[0]
        for r in db.sql(
            "SELECT table_name || '.' || column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
    }
    assert ("account_move.origin_payment_id" in cols) == (odoo == 18)
    assert ("account_move.payment_id" in cols) == (odoo < 18)
    assert ("account_full_reconcile.name" in cols) == (odoo == 16)
    assert ("account_account.company_id" in cols) == (odoo < 18)
    assert ("ir_cron.numbercall" in cols) == (odoo < 18)
    assert ("account_payment.state" in cols) == (odoo == 18)
    unique = db.sql("SELECT 1 FROM pg_indexes WHERE indexname = 'account_move_unique_name'")
    assert bool(unique) == (odoo >= 17)


def test_numbers_reset_yearly_and_monthly_and_a_company_has_zero_decimals(seeded):
    db = seeded(17, moves=400)
    names = {r[0] for r in db.sql("SELECT name FROM account_move WHERE state = 'posted'")}
    assert {"INV/2024/00001", "INV/2025/00001", "BILL/2024/01/0001", "PBNK1/2024/00001"} <= names
    assert (
        db.one(
            "SELECT count(*) FROM res_company c JOIN res_currency r ON r.id = c.currency_id "
            "WHERE r.decimal_places = 0"
        )
        >= 1
    )
    assert db.one("SELECT count(*) FROM account_full_reconcile") > 0
    assert (
        db.one("SELECT count(*) FROM account_partial_reconcile WHERE full_reconcile_id IS NULL") > 0
    )


def test_18_hashes_new_moves_per_prefix_with_the_v4_marker(seeded):
    db = seeded(18, moves=300)
    v4 = db.one("SELECT count(*) FROM account_move WHERE inalterable_hash LIKE '$4$%'")
    legacy = db.one("SELECT count(*) FROM account_move WHERE secure_sequence_number IS NOT NULL")
    assert v4 > 0 and legacy > 0


def test_attachments_are_files_named_by_their_sha1(seeded):
    db = seeded(17, moves=200, filestore=True)
    rows = db.sql("SELECT store_fname, checksum, file_size FROM ir_attachment")
    assert rows and db.result.attachments == len(rows)
    for store_fname, checksum, size in rows:
        data = (db.filestore / store_fname).read_bytes()
        assert store_fname == f"{checksum[:2]}/{checksum}"
        assert hashlib.sha1(data).hexdigest() == checksum and len(data) == size


def test_appended_invoices_continue_the_sequence_and_the_hash_chain(seeded):
    db = seeded(17, moves=100)
    first = append_invoice(db.dsn, seed=1)
    second = append_invoice(db.dsn, seed=2)
    assert first.name.endswith("00001") and second.name.endswith("00002")
    assert second.committed_at >= first.committed_at
    report = db.validate()
    assert statuses(report)["hash_chain.broken"] == "pass"
    assert statuses(report)["sequence.gaps"] == "pass"


def test_faulty_batch_posts_entries_that_do_not_balance(seeded):
    db = seeded(16, moves=100)
    batch = post_faulty_batch(db.dsn, count=3)
    unbalanced = db.validate().check("ledger.unbalanced_moves")
    assert unbalanced.status == "fail"
    assert sorted(s["move_id"] for s in unbalanced.samples) == sorted(batch.move_ids)


def test_a_table_in_any_schema_makes_a_database_not_empty(pg_server):
    name = "fin_seed_other_schema"
    dsn = pg_server.dsn_for(name)
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA other")
            conn.execute("CREATE TABLE other.t (i integer)")
            conn.execute("INSERT INTO other.t VALUES (1)")
        with pytest.raises(SeedError, match=r"already holds 1 table; .*other: 1"):
            seed_database(dsn, SeedOptions(odoo=17, moves=30))
        seed_database(dsn, SeedOptions(odoo=17, moves=30, force=True))
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM other.t").fetchone()[0] == 1
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
