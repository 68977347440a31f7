"""Damage to single lines that nets to zero in every move and every company is still found, and
named line by line; a move in a state Odoo does not know is not left out of the ledger."""

from __future__ import annotations

import pytest


def _misc_move(db, company: int = 1, offset: int = 0) -> int:
    return db.one(
        "SELECT m.id FROM account_move m JOIN account_journal j ON j.id = m.journal_id "
        "WHERE j.code = 'MISC' AND m.company_id = %s AND m.state = 'posted' "
        "ORDER BY m.id LIMIT 1 OFFSET %s",
        (company, offset),
    )


def _lines(db, move_id: int) -> list[int]:
    return [r[0] for r in db.sql(
        "SELECT id FROM account_move_line WHERE move_id = %s ORDER BY id", (move_id,)
    )]  # fmt: skip


def _account_of_company(db, odoo: int, company: int) -> int:
    if odoo == 18:
        return db.one(
            "SELECT min(account_account_id) FROM account_account_res_company_rel "
            "WHERE res_company_id = %s",
            (company,),
        )
    return db.one("SELECT min(id) FROM account_account WHERE company_id = %s", (company,))


def _shift_balance(db, odoo, lines):
    db.sql("UPDATE account_move_line SET balance = balance + 10 WHERE id = %s", (lines[0],))
    db.sql("UPDATE account_move_line SET balance = balance - 10 WHERE id = %s", (lines[1],))
    return lines[:2]


def _debit_and_credit(db, odoo, lines):
    db.sql("ALTER TABLE account_move_line DROP CONSTRAINT account_move_line_check_credit_debit")
    db.sql(
        "UPDATE account_move_line SET debit = debit + 10, credit = credit + 10 WHERE id = %s",
        (lines[0],),
    )
    return lines[:1]


def _foreign_account(db, odoo, lines):
    account = _account_of_company(db, odoo, 2)
    db.sql("UPDATE account_move_line SET account_id = %s WHERE id = %s", (account, lines[0]))
    return lines[:1]


def _missing_account(db, odoo, lines):
    db.sql("ALTER TABLE account_move_line DROP CONSTRAINT account_move_line_account_id_fkey")
    db.sql("UPDATE account_move_line SET account_id = 2000000000 WHERE id = %s", (lines[0],))
    return lines[:1]


def _move_to_another_company(db, odoo, lines):
    move = db.one("SELECT move_id FROM account_move_line WHERE id = %s", (lines[0],))
    db.sql("UPDATE account_move SET company_id = 2 WHERE id = %s", (move,))
    db.sql("UPDATE account_move_line SET company_id = 2 WHERE move_id = %s", (move,))
    return lines


def _currency_sign(db, odoo, lines):
    db.sql(
        "ALTER TABLE account_move_line "
        "DROP CONSTRAINT account_move_line_check_amount_currency_balance_sign"
    )
    db.sql(
        "UPDATE account_move_line SET amount_currency = -amount_currency WHERE id = %s",
        (lines[0],),
    )
    return lines[:1]


@pytest.mark.parametrize(
    ("odoo", "damage", "reason"),
    [
        (16, _shift_balance, "balance differs from debit minus credit"),
        (17, _debit_and_credit, "debit and credit both set"),
        (17, _foreign_account, "account of another company"),
        (18, _foreign_account, "account of another company"),
        (16, _missing_account, "account missing"),
        (17, _move_to_another_company, "journal of another company"),
        (18, _move_to_another_company, "journal of another company"),
        (18, _currency_sign, "amount in currency of the other sign than the balance"),
    ],
)
def test_a_damaged_line_that_nets_to_zero_is_named_under_the_trial_balance(
    seeded, odoo, damage, reason
):
    db = seeded(odoo)
    move = _misc_move(db)
    damaged = damage(db, odoo, _lines(db, move))
    report = db.validate()
    assert report.check("ledger.unbalanced_moves").status == "pass"
    trial = report.check("ledger.trial_balance")
    assert trial.status == "fail" and trial.count == len(damaged)
    assert [(s["line_id"], s["move_id"], s["reason"]) for s in trial.samples] == [
        (line, move, reason) for line in damaged
    ]


@pytest.mark.parametrize("odoo", [17, 18])
def test_a_branch_posts_on_its_parent_companys_journals_and_accounts(seeded, odoo):
    db = seeded(odoo)
    db.sql("UPDATE res_company SET parent_id = 1, parent_path = '1/3/' WHERE id = 3")
    db.sql("UPDATE res_company SET parent_path = '1/' WHERE id = 1")
    move = _misc_move(db)
    db.sql("UPDATE account_move SET company_id = 3 WHERE id = %s", (move,))
    db.sql("UPDATE account_move_line SET company_id = 3 WHERE move_id = %s", (move,))
    assert db.validate().check("ledger.trial_balance").status == "pass"


def test_a_move_in_a_state_odoo_does_not_know_is_named(seeded):
    db = seeded(17)
    move = _misc_move(db)
    db.sql("UPDATE account_move SET state = 'Posted' WHERE id = %s", (move,))
    db.sql("UPDATE account_move_line SET parent_state = 'Posted' WHERE move_id = %s", (move,))
    check = db.validate().check("ledger.unbalanced_moves")
    assert check.status == "fail" and check.count == 1
    assert check.samples[0]["move_id"] == move
    assert check.samples[0]["problem"] == "state 'Posted' is none of draft, posted, cancel"


def test_a_line_rule_held_by_a_constraint_added_not_valid_is_run_on_the_lines(seeded):
    db = seeded(18)
    line = _lines(db, _misc_move(db))[0]
    db.sql("ALTER TABLE account_move_line DROP CONSTRAINT account_move_line_check_credit_debit")
    db.sql(
        "UPDATE account_move_line SET debit = debit + 7, credit = credit + 7 WHERE id = %s", (line,)
    )
    db.sql(
        "ALTER TABLE account_move_line ADD CONSTRAINT account_move_line_check_credit_debit "
        "CHECK (display_type IN ('line_section', 'line_note') OR credit * debit = 0) NOT VALID"
    )
    trial = db.validate().check("ledger.trial_balance")
    assert [(s["line_id"], s["reason"]) for s in trial.samples] == [
        (line, "debit and credit both set")
    ]
    assert "account_move_line_check_credit_debit is NOT VALID" in trial.detail
