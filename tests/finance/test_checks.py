"""Each check finds its damage, with the ids a controller looks up, and a clean database has
no failing check (no false positives) in 16, 17 and 18."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.finance.introspect import ValidationCannotRun
from shared.finance.live import append_invoice
from shared.finance.models import CHECK_IDS
from tests.finance.conftest import statuses

FUTURE = datetime(2090, 1, 1, tzinfo=UTC)


def _misc_moves(db, limit=3):
    """Posted misc entries of company 1 (not hashed), as (id, name, journal_id)."""
    return db.sql(
        "SELECT m.id, m.name, m.journal_id FROM account_move m "
        "JOIN account_journal j ON j.id = m.journal_id "
        "WHERE j.code = 'MISC' AND m.company_id = 1 AND m.state = 'posted' "
        "ORDER BY m.sequence_prefix, m.sequence_number LIMIT %s",
        (limit,),
    )


def _hashed_move(db, odoo: int, offset: int = 5):
    """A hashed customer invoice in the middle of its chain, and the next move of that chain."""
    if odoo < 18:
        rows = db.sql(
            "SELECT m.id FROM account_move m JOIN account_journal j ON j.id = m.journal_id "
            "WHERE j.code = 'INV' AND m.company_id = 1 AND m.inalterable_hash IS NOT NULL "
            "ORDER BY m.secure_sequence_number LIMIT 2 OFFSET %s",
            (offset,),
        )
    else:
        prefix = db.one(
            "SELECT sequence_prefix FROM account_move WHERE inalterable_hash LIKE '$4$%%' "
            "AND company_id = 1 AND move_type = 'out_invoice' ORDER BY id LIMIT 1"
        )
        rows = db.sql(
            "SELECT id FROM account_move WHERE sequence_prefix = %s AND company_id = 1 "
            "AND inalterable_hash IS NOT NULL ORDER BY sequence_number LIMIT 2 OFFSET %s",
            (prefix, offset),
        )
    return rows[0][0], rows[1][0]


@pytest.mark.parametrize("odoo", [16, 17, 18])
def test_a_clean_seeded_database_has_no_failing_check(seeded, odoo):
    db = seeded(odoo, moves=400, filestore=True, queue_jobs=True)
    report = db.validate(recovery_point=FUTURE)
    assert [c.id for c in report.checks] == list(CHECK_IDS)
    failing = {c.id: c.detail for c in report.checks if c.status == "fail"}
    assert failing == {}
    assert report.summary.fail == 0 and report.summary.skip == 0
    assert report.odoo_version.startswith(f"{odoo}.0")
    assert statuses(report)["cron.active"] == "warn"
    assert statuses(report)["queue.requeued"] == "warn"


def test_an_unbalanced_posted_move_is_named_with_its_imbalance(seeded):
    db = seeded(17)
    move_id, name, _ = _misc_moves(db, 1)[0]
    db.sql(
        "UPDATE account_move_line SET debit = debit + 5, balance = balance + 5 WHERE id = "
        "(SELECT min(id) FROM account_move_line WHERE move_id = %s AND debit > 0)",
        (move_id,),
    )
    report = db.validate()
    check = report.check("ledger.unbalanced_moves")
    assert check.status == "fail" and check.count == 1
    assert check.samples[0]["move_id"] == move_id and check.samples[0]["name"] == name
    assert check.samples[0]["imbalance"] in ("5.00", "5")
    trial = report.check("ledger.trial_balance")
    assert trial.status == "fail" and [s["company_id"] for s in trial.samples] == [1]


def test_lines_missing_from_a_move_are_found(seeded):
    db = seeded(16)
    (one, one_name, _), (all_, all_name, _) = _misc_moves(db, 2)
    db.sql(
        "DELETE FROM account_move_line WHERE id = (SELECT max(id) FROM account_move_line "
        "WHERE move_id = %s)",
        (one,),
    )
    db.sql("DELETE FROM account_move_line WHERE move_id = %s", (all_,))
    check = db.validate().check("ledger.unbalanced_moves")
    assert check.status == "fail" and check.count == 2
    by_move = {s["move_id"]: s for s in check.samples}
    assert "imbalance" in by_move[one]
    assert by_move[all_]["problem"] == "posted move without lines"


def test_orphan_lines_and_lines_out_of_step_with_their_move_are_listed(seeded):
    db = seeded(18)
    (gone, _, _), (other, _, _) = _misc_moves(db, 2)
    lines = [r[0] for r in db.sql("SELECT id FROM account_move_line WHERE move_id = %s", (gone,))]
    db.sql("ALTER TABLE account_move_line DROP CONSTRAINT account_move_line_move_id_fkey")
    db.sql("DELETE FROM account_move WHERE id = %s", (gone,))
    drifted = db.one("SELECT min(id) FROM account_move_line WHERE move_id = %s", (other,))
    db.sql("UPDATE account_move_line SET parent_state = 'draft' WHERE id = %s", (drifted,))
    check = db.validate().check("ledger.orphan_lines")
    assert check.status == "fail" and check.count == len(lines) + 1
    reasons = {s["line_id"]: s["reason"] for s in check.samples}
    assert all(reasons[line] == "move missing" for line in lines)
    assert reasons[drifted] == "state differs from the move"


@pytest.mark.parametrize("odoo", [16, 17])
def test_a_duplicated_number_is_found_with_both_moves(seeded, odoo):
    db = seeded(odoo)
    (first, name, journal), (second, _, _) = _misc_moves(db, 2)
    if odoo == 17:  # a restore that lost the unique index
        db.sql("DROP INDEX account_move_unique_name")
    db.sql(
        "UPDATE account_move SET name = %s, sequence_number = sequence_number - 1 WHERE id = %s",
        (name, second),
    )
    check = db.validate().check("sequence.duplicates")
    assert check.status == "fail" and check.count == 1
    assert check.samples[0]["move_ids"] == [first, second]
    assert check.samples[0]["journal_id"] == journal and check.samples[0]["name"] == name
    if odoo == 17:
        assert "account_move_unique_name is missing" in check.detail


def test_one_number_posted_twice_under_two_paddings_is_a_duplicate(seeded):
    db = seeded(17)
    first, _, journal = _misc_moves(db, 2)[1]
    prefix, number = db.one(
        "SELECT sequence_prefix, sequence_number FROM account_move WHERE id = %s", (first,)
    )
    padded = f"{prefix}{number:03d}"  # MISC/2024/01/002 beside MISC/2024/01/0002
    copy = db.copy_move(first, name=padded)
    report = db.validate()
    check = report.check("sequence.duplicates")
    assert check.status == "fail" and check.count == 1
    sample = check.samples[0]
    assert (sample["journal_id"], sample["prefix"], sample["number"]) == (journal, prefix, number)
    assert sample["move_ids"] == [first, copy]
    assert padded in sample["names"]
    assert report.check("sequence.gaps").status == "pass"


@pytest.mark.parametrize(
    ("replacement", "told"),
    [
        ("CREATE INDEX account_move_unique_name ON account_move (name, journal_id)",
         "account_move_unique_name is not unique"),
        ("CREATE UNIQUE INDEX account_move_unique_name ON account_move (name, date) "
         "WHERE state = 'posted'",
         "account_move_unique_name is unique on (name, date), not (name, journal_id)"),
    ],
)  # fmt: skip
def test_a_replaced_unique_name_index_is_named_in_the_duplicates_detail(seeded, replacement, told):
    db = seeded(17)
    db.sql("DROP INDEX account_move_unique_name")
    db.sql(replacement)
    check = db.validate().check("sequence.duplicates")
    assert check.status == "pass"
    assert told in check.detail


def test_a_gap_names_the_journal_the_prefix_and_the_missing_number(seeded):
    db = seeded(17)
    middle, journal, prefix, number = db.one(
        "SELECT m.id, m.journal_id, m.sequence_prefix, m.sequence_number FROM account_move m "
        "JOIN account_journal j ON j.id = m.journal_id WHERE j.code = 'BNK1' "
        "AND m.company_id = 1 AND m.state = 'posted' ORDER BY m.sequence_prefix, "
        "m.sequence_number LIMIT 1 OFFSET 3"
    )
    db.sql("DELETE FROM account_move WHERE id = %s", (middle,))
    check = db.validate().check("sequence.gaps")
    assert check.status == "fail" and check.count == 1
    sample = check.samples[0]
    assert (sample["journal_id"], sample["prefix"], sample["missing"]) == (
        journal,
        prefix,
        [number],
    )
    assert sample["journal"] == "BNK1"


@pytest.mark.parametrize("odoo", [16, 17, 18])
def test_an_altered_amount_in_a_hashed_move_breaks_the_chain_at_that_move(seeded, odoo):
    db = seeded(odoo, moves=400)
    move_id, successor = _hashed_move(db, odoo)
    # Move 1.00 between two lines: still balanced, but not what was hashed.
    db.sql(
        "UPDATE account_move_line SET debit = debit + 1, balance = balance + 1 "
        "WHERE move_id = %s AND display_type = 'payment_term'",
        (move_id,),
    )
    db.sql(
        "UPDATE account_move_line SET credit = credit + 1, balance = balance - 1 "
        "WHERE id = (SELECT min(id) FROM account_move_line WHERE move_id = %s "
        "AND display_type = 'product')",
        (move_id,),
    )
    report = db.validate()
    assert statuses(report)["ledger.unbalanced_moves"] == "pass"
    check = report.check("hash_chain.broken")
    assert check.status == "fail" and check.count == 1
    assert check.samples[0]["kind"] == "hash_mismatch"
    assert check.samples[0]["move_id"] == move_id


@pytest.mark.parametrize("odoo", [16, 17, 18])
def test_a_removed_hashed_move_is_found_at_its_successor(seeded, odoo):
    db = seeded(odoo, moves=400)
    move_id, successor = _hashed_move(db, odoo)
    db.sql("DELETE FROM account_move WHERE id = %s", (move_id,))
    check = db.validate().check("hash_chain.broken")
    assert check.status == "fail"
    kinds = {(s["kind"], s.get("move_id") or s.get("next_move_id")) for s in check.samples}
    assert ("hash_mismatch", successor) in kinds
    if odoo < 18:
        assert ("secure_numbers_missing", successor) in kinds


def test_a_changed_line_label_in_a_hashed_move_is_found(seeded):
    db = seeded(18, moves=300)
    move_id, _ = _hashed_move(db, 18, offset=2)
    db.sql(
        "UPDATE account_move_line SET name = name || ' (edited)' WHERE id = "
        "(SELECT min(id) FROM account_move_line WHERE move_id = %s)",
        (move_id,),
    )
    check = db.validate().check("hash_chain.broken")
    assert [s["move_id"] for s in check.samples] == [move_id]


def test_a_missing_file_and_a_file_with_other_content_are_told_apart(seeded):
    db = seeded(17, moves=300, filestore=True)
    (gone_id, gone_file), (bad_id, bad_file) = db.sql(
        "SELECT min(id), store_fname FROM ir_attachment GROUP BY store_fname "
        "HAVING count(*) = 1 ORDER BY 1 LIMIT 2"
    )
    (db.filestore / gone_file).unlink()
    (db.filestore / bad_file).write_bytes(b"%PDF-1.4 not the invoice that was sent")
    report = db.validate()
    missing, wrong = report.check("attachments.missing"), report.check("attachments.checksum")
    assert missing.status == "fail" and [s["attachment_id"] for s in missing.samples] == [gone_id]
    assert wrong.status == "fail" and [s["attachment_id"] for s in wrong.samples] == [bad_id]
    assert wrong.samples[0]["problem"] == "sha1 differs"


def test_database_stored_attachments_are_checked_without_a_filestore(seeded):
    db = seeded(18, moves=200)
    aid = db.one("SELECT min(id) FROM ir_attachment")
    db.sql("UPDATE ir_attachment SET db_datas = 'garbage'::bytea WHERE id = %s", (aid,))
    wrong = db.validate().check("attachments.checksum")
    assert wrong.status == "fail" and wrong.samples[0]["attachment_id"] == aid


def test_attachments_on_disk_are_skipped_without_a_filestore(seeded):
    db = seeded(16, moves=100, filestore=True)
    report = db.validate(filestore=None)
    assert statuses(report)["attachments.missing"] == "skip"
    assert "--filestore" in report.check("attachments.missing").detail


def test_entries_written_after_the_recovery_point_are_listed(seeded):
    db = seeded(17, moves=100)
    assert db.validate().check("recovery_point.after").status == "skip"
    point = datetime.now(UTC) - timedelta(seconds=1)
    invoice = append_invoice(db.dsn, seed=3)
    check = db.validate(recovery_point=point).check("recovery_point.after")
    assert check.status == "fail" and check.count == 4  # the move and its three lines
    assert {"table": "account_move", "id": invoice.id} == {
        k: v for k, v in check.samples[0].items() if k in ("table", "id")
    }
    assert "account_move_line: 3" in check.detail


def test_inconsistent_reconciliations_name_the_partial_and_the_lines(seeded):
    db = seeded(17, moves=400)
    (across, _), (dropped, debit_line) = db.sql(
        "SELECT id, debit_move_id FROM account_partial_reconcile ORDER BY id LIMIT 2"
    )
    tax_line = db.one("SELECT min(id) FROM account_move_line WHERE display_type = 'tax'")
    db.sql(
        "UPDATE account_partial_reconcile SET credit_move_id = %s WHERE id = %s",
        (tax_line, across),
    )
    db.sql("DELETE FROM account_partial_reconcile WHERE id = %s", (dropped,))
    check = db.validate().check("reconcile.inconsistent")
    assert check.status == "fail"
    partials = {s["partial_id"]: s["reason"] for s in check.samples if s["kind"] == "partial"}
    assert partials[across] == "lines on different accounts"
    lines = {s["line_id"] for s in check.samples if s["kind"] == "line"}
    assert debit_line in lines


def test_due_scheduled_jobs_warn_and_fail_when_jobs_are_expected_held(seeded):
    db = seeded(16, moves=50)
    warned = db.validate().check("cron.active")
    assert warned.status == "warn" and warned.count == 3
    assert "mail.ir_cron_mail_scheduler_action" in {s["xml_id"] for s in warned.samples}
    assert db.validate(expect_jobs_held=True).check("cron.active").status == "fail"
    db.sql("UPDATE ir_cron SET active = false")
    assert db.validate(expect_jobs_held=True).check("cron.active").status == "pass"


def test_queue_jobs_put_back_in_the_queue_warn_with_their_ids(seeded):
    db = seeded(18, moves=50, queue_jobs=True)
    db.sql("UPDATE queue_job SET state = 'done' WHERE state IN ('enqueued', 'started')")
    assert db.validate().check("queue.requeued").status == "pass"
    ids = [r[0] for r in db.sql("UPDATE queue_job SET state = 'started' WHERE id IN (3, 5) "
                                "RETURNING id")]  # fmt: skip
    check = db.validate().check("queue.requeued")
    assert check.status == "warn" and sorted(s["job_id"] for s in check.samples) == sorted(ids)
    without = seeded(18, moves=50)
    assert without.validate().check("queue.requeued").status == "pass"


def test_a_company_filter_keeps_other_companies_damage_out(seeded):
    db = seeded(17)
    move = db.one(
        "SELECT min(id) FROM account_move WHERE company_id = 2 AND state = 'posted' "
        "AND move_type = 'entry'"
    )
    db.sql(
        "UPDATE account_move_line SET debit = debit + 3, balance = balance + 3 WHERE id = "
        "(SELECT min(id) FROM account_move_line WHERE move_id = %s AND debit > 0)",
        (move,),
    )
    assert db.validate(companies=[1]).check("ledger.unbalanced_moves").status == "pass"
    assert db.validate(companies=[2]).check("ledger.unbalanced_moves").status == "fail"


def test_a_database_that_is_not_odoo_cannot_be_validated(seeded, pg_server):
    db = seeded(17, moves=20)
    db.sql("DROP TABLE ir_module_module CASCADE")
    with pytest.raises(ValidationCannotRun, match="not an Odoo database"):
        db.validate()


def test_odoo_without_accounting_or_too_old_cannot_be_validated(seeded):
    db = seeded(16, moves=20)
    db.sql("UPDATE ir_module_module SET latest_version = '15.0.1.3' WHERE name = 'base'")
    with pytest.raises(ValidationCannotRun, match="the checks know Odoo 16, 17 and 18"):
        db.validate()
    db.sql("UPDATE ir_module_module SET latest_version = '16.0.1.3' WHERE name = 'base'")
    db.sql("UPDATE ir_module_module SET state = 'uninstalled' WHERE name = 'account'")
    with pytest.raises(ValidationCannotRun, match="without accounting"):
        db.validate()


def test_a_missing_column_is_named_rather_than_assumed(seeded):
    db = seeded(18, moves=20)
    db.sql("ALTER TABLE account_move_line DROP COLUMN balance")
    with pytest.raises(ValidationCannotRun, match="missing account_move_line.balance"):
        db.validate()


def test_a_secure_counter_ahead_of_the_chain_means_hashed_moves_are_gone(seeded):
    db = seeded(16, moves=200)
    journal = db.one("SELECT j.id FROM account_journal j WHERE j.code = 'INV' AND j.company_id = 1")
    db.sql(
        "UPDATE ir_sequence SET number_next = number_next + 3 WHERE id = "
        "(SELECT secure_sequence_id FROM account_journal WHERE id = %s)",
        (journal,),
    )
    check = db.validate().check("hash_chain.broken")
    assert check.status == "fail"
    assert [(s["kind"], s["journal_id"]) for s in check.samples] == [
        ("hashed_moves_missing_at_end", journal)
    ]


def _last_invoice(db):
    """The newest posted customer invoice of company 1, with its journal and prefix."""
    return db.one(
        "SELECT m.id, m.journal_id, m.sequence_prefix FROM account_move m "
        "JOIN account_journal j ON j.id = m.journal_id WHERE j.code = 'INV' "
        "AND m.company_id = 1 AND m.state = 'posted' AND m.move_type = 'out_invoice' "
        "ORDER BY m.date DESC, m.sequence_number DESC LIMIT 1"
    )


@pytest.mark.parametrize("odoo", [16, 17, 18])
def test_a_posted_move_without_hash_after_its_chain_began_is_found(seeded, odoo):
    db = seeded(odoo)
    last, journal, prefix = _last_invoice(db)
    number = db.one(
        "SELECT max(sequence_number) + 1 FROM account_move "
        "WHERE journal_id = %s AND sequence_prefix = %s",
        (journal, prefix),
    )
    copy = db.copy_move(
        last, name=f"{prefix}{number:05d}", sequence_number=number, inalterable_hash=None,
        secure_sequence_number=None,
    )  # fmt: skip
    check = db.validate().check("hash_chain.broken")
    assert check.status == "fail" and check.count == 1
    sample = check.samples[0]
    assert (sample["kind"], sample["move_id"], sample["journal_id"]) == (
        "posted_move_without_hash",
        copy,
        journal,
    )


def test_hashes_stripped_from_a_whole_prefix_leave_every_move_of_it_named(seeded):
    db = seeded(18)
    last, journal, prefix = _last_invoice(db)
    stripped = {r[0] for r in db.sql(
        "UPDATE account_move SET inalterable_hash = NULL WHERE journal_id = %s "
        "AND sequence_prefix = %s AND state = 'posted' RETURNING id", (journal, prefix),
    )}  # fmt: skip
    assert last in stripped and len(stripped) > 3
    db.sql(
        "UPDATE account_move_line SET debit = debit + 1, balance = balance + 1 "
        "WHERE move_id = %s AND display_type = 'payment_term'",
        (last,),
    )
    db.sql(
        "UPDATE account_move_line SET credit = credit + 1, balance = balance - 1 "
        "WHERE id = (SELECT min(id) FROM account_move_line WHERE move_id = %s "
        "AND display_type = 'product')",
        (last,),
    )
    check = db.validate(sample_limit=1000).check("hash_chain.broken")
    assert check.status == "fail" and check.count == len(stripped)
    assert {s["move_id"] for s in check.samples} == stripped
    assert {s["kind"] for s in check.samples} == {"posted_move_without_hash"}


def test_a_move_posted_before_its_journal_began_hashing_needs_no_hash(seeded):
    db = seeded(17)
    last, journal, _ = _last_invoice(db)
    db.copy_move(
        last, name="INV/2023/00001", sequence_prefix="INV/2023/", sequence_number=1,
        date="2023-12-29", inalterable_hash=None, secure_sequence_number=None,
    )  # fmt: skip
    assert db.validate().check("hash_chain.broken").status == "pass"


def test_a_hashed_move_set_back_to_draft_is_found(seeded):
    db = seeded(17, moves=200)
    move_id, _ = _hashed_move(db, 17, offset=1)
    db.sql("UPDATE account_move SET state = 'draft' WHERE id = %s", (move_id,))
    check = db.validate().check("hash_chain.broken")
    assert ("hashed_move_not_posted", move_id) in {(s["kind"], s["move_id"]) for s in check.samples}


def test_a_check_that_cannot_complete_fails_rather_than_passes(seeded, monkeypatch):
    from shared.finance import validate

    db = seeded(17, moves=50)

    def times_out(ctx, conn):
        conn.execute("SET LOCAL statement_timeout = 1")
        conn.execute("SELECT pg_sleep(1)")

    tasks = [(ids, times_out if "hash_chain.broken" in ids else fn) for ids, fn in validate.TASKS]
    monkeypatch.setattr(validate, "TASKS", tasks)
    check = db.validate().check("hash_chain.broken")
    assert check.status == "fail" and "could not complete" in check.detail
    assert "statement timeout" in check.detail


def test_every_kind_of_reconcile_damage_is_named_with_its_reason(seeded):
    db = seeded(17, moves=400)
    for (name,) in db.sql(
        "SELECT conname FROM pg_constraint WHERE contype = 'f' "
        "AND conrelid = 'account_partial_reconcile'::regclass"
    ):
        db.sql(f'ALTER TABLE account_partial_reconcile DROP CONSTRAINT "{name}"')
    partials = db.sql(
        "SELECT p.id, p.debit_move_id, p.credit_move_id FROM account_partial_reconcile p "
        "WHERE p.full_reconcile_id IS NOT NULL ORDER BY p.id LIMIT 8"
    )
    touched = {line for _, debit, credit in partials for line in (debit, credit)}
    assert len(touched) >= 8, "the seed gives partials on separate lines"
    (missing, _, _), (negative, _, _), (unposted, _, unposted_line), (full, _, _) = partials[:4]
    db.sql("UPDATE account_partial_reconcile SET debit_move_id = 2000000000 WHERE id = %s",
           (missing,))  # fmt: skip
    db.sql("UPDATE account_partial_reconcile SET amount = -amount WHERE id = %s", (negative,))
    db.sql("UPDATE account_move_line SET parent_state = 'draft' WHERE id = %s", (unposted_line,))
    db.sql("UPDATE account_partial_reconcile SET full_reconcile_id = NULL WHERE id = %s", (full,))
    currency_line, flag_line = db.sql(
        "SELECT l.id FROM account_move_line l JOIN account_account a ON a.id = l.account_id "
        "WHERE a.reconcile AND l.id <> ALL(%s) AND l.reconciled ORDER BY l.id LIMIT 2",
        (sorted(touched),),
    )
    db.sql("UPDATE account_move_line SET amount_residual_currency = 5 WHERE id = %s",
           (currency_line[0],))  # fmt: skip
    db.sql("UPDATE account_move_line SET reconciled = false WHERE id = %s", (flag_line[0],))
    check = db.validate(sample_limit=100).check("reconcile.inconsistent")
    assert check.status == "fail"
    reasons = {s["partial_id"]: s["reason"] for s in check.samples if s["kind"] == "partial"}
    assert reasons == {
        missing: "line missing",
        negative: "negative amount",
        unposted: "line not posted",
        full: "full reconcile differs from its lines",
    }
    lines = {s["line_id"]: s["reason"] for s in check.samples if s["kind"] == "line"}
    assert lines[currency_line[0]] == "residual in currency differs from its reconciliations"
    assert lines[flag_line[0]] == "reconciled flag disagrees with the residual"


@pytest.mark.parametrize("odoo", [17, 18])
def test_damage_in_several_journals_is_sampled_in_move_order(seeded, odoo):
    db = seeded(odoo, moves=400)
    altered = []
    for journal in db.sql("SELECT DISTINCT journal_id FROM account_move "
                          "WHERE inalterable_hash IS NOT NULL ORDER BY journal_id"):  # fmt: skip
        altered += [r[0] for r in db.sql(
            "SELECT id FROM account_move WHERE journal_id = %s AND inalterable_hash IS NOT NULL "
            "ORDER BY id DESC LIMIT 2", journal,
        )]  # fmt: skip
    assert len(altered) >= 4, "hashed moves in two journals or more"
    db.sql(
        "UPDATE account_move_line SET name = coalesce(name, '') || ' (edited)' "
        "WHERE id IN (SELECT min(id) FROM account_move_line WHERE move_id = ANY(%s) "
        "GROUP BY move_id)",
        (altered,),
    )
    check = db.validate().check("hash_chain.broken")
    assert check.count == len(altered)
    assert [s["move_id"] for s in check.samples] == sorted(altered)
    few = db.validate(sample_limit=3).check("hash_chain.broken")
    assert few.count == len(altered)
    assert [s["move_id"] for s in few.samples] == sorted(altered)[:3]


def test_a_wrong_residual_in_currency_is_shown_with_the_currency_residual(seeded):
    db = seeded(17, moves=300)
    line = db.one(
        "SELECT l.id FROM account_move_line l JOIN account_account a ON a.id = l.account_id "
        "WHERE a.reconcile AND l.reconciled AND l.amount_residual = 0 "
        "AND l.amount_residual_currency = 0 ORDER BY l.id LIMIT 1"
    )
    db.sql("UPDATE account_move_line SET amount_residual_currency = 100 WHERE id = %s", (line,))
    check = db.validate().check("reconcile.inconsistent")
    samples = [s for s in check.samples if s.get("line_id") == line]
    assert len(samples) == 1
    sample = samples[0]
    assert sample["field"] == "amount_residual_currency"
    assert Decimal(sample["stored"]) == 100 and Decimal(sample["expected"]) == 0
    assert sample["reason"] == "residual in currency differs from its reconciliations"
