"""The ledger checks read the lines once: balances, lines out of step and lineless moves come
from one grouped full join, and each keeps its own meaning, with a company filter too."""

from __future__ import annotations


def test_one_pass_names_each_kind_of_ledger_damage(seeded):
    db = seeded(17, moves=300)
    (unbalanced,), (lineless,), (drifting,) = db.sql(
        "SELECT m.id FROM account_move m JOIN account_journal j ON j.id = m.journal_id "
        "WHERE j.code = 'MISC' AND m.company_id = 1 AND m.state = 'posted' "
        "ORDER BY m.id LIMIT 3"
    )
    db.sql(
        "UPDATE account_move_line SET balance = balance + 2, debit = debit + 2 WHERE id = "
        "(SELECT min(id) FROM account_move_line WHERE move_id = %s)",
        (unbalanced,),
    )
    db.sql("DELETE FROM account_move_line WHERE move_id = %s", (lineless,))
    line = db.one("SELECT max(id) FROM account_move_line WHERE move_id = %s", (drifting,))
    db.sql("UPDATE account_move_line SET date = date + 1 WHERE id = %s", (line,))
    report = db.validate()
    ledger = report.check("ledger.unbalanced_moves")
    assert ledger.count == 2
    assert [(s["move_id"], "imbalance" in s) for s in ledger.samples] == [
        (unbalanced, True),
        (lineless, False),
    ]
    assert ledger.samples[0]["imbalance"] == "2.00"
    orphans = report.check("ledger.orphan_lines")
    assert orphans.count == 1
    assert orphans.samples == [
        {"line_id": line, "move_id": drifting, "parent_state": "posted",
         "reason": "date differs from the move"}
    ]  # fmt: skip


def test_a_move_whose_lines_all_went_to_another_company_is_not_lineless(seeded):
    db = seeded(17, moves=300)
    move = db.one(
        "SELECT min(m.id) FROM account_move m JOIN account_journal j ON j.id = m.journal_id "
        "WHERE j.code = 'MISC' AND m.company_id = 1 AND m.state = 'posted'"
    )
    lines = db.one("SELECT count(*) FROM account_move_line WHERE move_id = %s", (move,))
    db.sql("UPDATE account_move_line SET company_id = 2 WHERE move_id = %s", (move,))
    first = db.validate(companies=[1])
    assert first.check("ledger.unbalanced_moves").status == "pass"
    assert first.check("ledger.orphan_lines").status == "pass"  # its lines are company 2's now
    second = db.validate(companies=[2])
    orphans = second.check("ledger.orphan_lines")
    assert orphans.count == lines
    assert {s["reason"] for s in orphans.samples} == {"company differs from the move"}
    assert second.check("ledger.unbalanced_moves").status == "pass"
    everything = db.validate()
    assert everything.check("ledger.orphan_lines").count == lines


def test_lines_whose_move_is_gone_are_found_when_no_line_is_out_of_step(seeded):
    db = seeded(17, moves=300)
    gone = db.one(
        "SELECT min(m.id) FROM account_move m JOIN account_journal j ON j.id = m.journal_id "
        "WHERE j.code = 'MISC' AND m.state = 'posted'"
    )
    lines = {r[0] for r in db.sql("SELECT id FROM account_move_line WHERE move_id = %s", (gone,))}
    db.sql("ALTER TABLE account_move_line DROP CONSTRAINT account_move_line_move_id_fkey")
    db.sql("DELETE FROM account_move WHERE id = %s", (gone,))
    report = db.validate()
    orphans = report.check("ledger.orphan_lines")
    assert orphans.count == len(lines)
    assert {s["line_id"] for s in orphans.samples} == lines
    assert {s["reason"] for s in orphans.samples} == {"move missing"}
    assert report.check("ledger.unbalanced_moves").status == "pass"


def test_the_planner_settings_change_no_result(seeded, monkeypatch):
    """The ledger pass, the reconciliation, the duplicated names and the recovery point steer
    the planner (walks in index order, probes, sorts, scans); the plans it picks unsteered give
    the same findings."""
    from datetime import UTC, datetime, timedelta

    from shared.finance import checks

    db = seeded(17, moves=300)
    misc = [r[0] for r in db.sql(
        "SELECT m.id FROM account_move m JOIN account_journal j ON j.id = m.journal_id "
        "WHERE j.code = 'MISC' AND m.state = 'posted' ORDER BY m.id LIMIT 5"
    )]  # fmt: skip
    db.sql(
        "UPDATE account_move_line SET balance = balance + 2, debit = debit + 2 WHERE id = "
        "(SELECT min(id) FROM account_move_line WHERE move_id = %s)",
        (misc[0],),
    )
    db.sql("DELETE FROM account_move_line WHERE move_id = %s", (misc[1],))
    db.sql("ALTER TABLE account_move_line DROP CONSTRAINT account_move_line_move_id_fkey")
    db.sql("DELETE FROM account_move WHERE id = %s", (misc[2],))
    db.sql(
        "UPDATE account_move_line SET amount_residual = amount_residual + 1 WHERE id = "
        "(SELECT min(debit_move_id) FROM account_partial_reconcile)"
    )
    db.sql("DROP INDEX account_move_unique_name")
    db.sql(
        "UPDATE account_move SET name = (SELECT name FROM account_move WHERE id = %s) "
        "WHERE id = %s",
        (misc[3], misc[4]),
    )
    point = datetime.now(UTC) + timedelta(hours=1)
    db.sql(
        "UPDATE account_move SET write_date = %s WHERE id = (SELECT max(id) FROM account_move)",
        (point.replace(tzinfo=None) + timedelta(minutes=5),),
    )
    ids = ("ledger.unbalanced_moves", "ledger.orphan_lines", "reconcile.inconsistent",
           "sequence.duplicates", "recovery_point.after")  # fmt: skip
    steered = db.validate(recovery_point=point)
    monkeypatch.setattr(checks, "_lines_in_move_order", lambda conn: ())
    for name in ("PROBE_SIDES", "GROUP_IN_ORDER", "SORTED_NAMES", "SCAN_ALL"):
        monkeypatch.setattr(checks, name, ())
    plain = db.validate(recovery_point=point)
    for check_id in ids:
        a, b = steered.check(check_id), plain.check(check_id)
        assert a.status == "fail", check_id
        assert (a.count, a.samples, a.detail) == (b.count, b.samples, b.detail), check_id
