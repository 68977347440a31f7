"""The hash check's two paths: the fast one (one aggregated text per move) is trusted only when
it reproduces the stored hash; every other move is verified again from its lines, so the
results do not depend on which path a move took."""

from __future__ import annotations

import pytest

from shared.finance import hashchain, hashcheck
from shared.finance.hashchain import HashLine, HashMove


@pytest.mark.parametrize("odoo", [17, 18])
def test_the_exact_path_alone_gives_the_same_results(seeded, monkeypatch, odoo):
    db = seeded(odoo, moves=300)
    fast = db.validate().check("hash_chain.broken")
    assert fast.status == "pass"
    altered = db.one(
        "SELECT id FROM account_move WHERE inalterable_hash IS NOT NULL "
        "ORDER BY id LIMIT 1 OFFSET 7"
    )
    db.sql(
        "UPDATE account_move_line SET name = coalesce(name, '') || ' (edited)' WHERE id = "
        "(SELECT min(id) FROM account_move_line WHERE move_id = %s)",
        (altered,),
    )
    damaged_fast = db.validate().check("hash_chain.broken")
    monkeypatch.setattr(hashcheck, "payload_from_body", lambda *args: "")
    damaged_exact = db.validate().check("hash_chain.broken")
    assert damaged_exact.count == damaged_fast.count == 1
    assert damaged_exact.samples == damaged_fast.samples
    assert damaged_exact.samples[0]["move_id"] == altered
    # The versions recomputed are named in the detail: the same under both paths.
    assert damaged_exact.detail.split(" at ")[0] == damaged_fast.detail.split(" at ")[0]


def test_labels_holding_the_separators_verify_through_the_exact_path(seeded, monkeypatch):
    db = seeded(17, moves=300)
    journal, move_id, secure = db.one(
        "SELECT journal_id, id, secure_sequence_number FROM account_move "
        "WHERE secure_sequence_number > 1 ORDER BY journal_id, secure_sequence_number DESC "
        "LIMIT 1"
    )  # the last move of its chain: rehashing it changes no other move's input
    labels = ["a\x1eb\x1fc", "\x1d"]
    for label, (line_id,) in zip(
        labels,
        db.sql("SELECT id FROM account_move_line WHERE move_id = %s ORDER BY id", (move_id,)),
        strict=False,
    ):
        db.sql("UPDATE account_move_line SET name = %s WHERE id = %s", (label, line_id))
    previous = db.one(
        "SELECT inalterable_hash FROM account_move WHERE journal_id = %s "
        "AND secure_sequence_number = %s",
        (journal, secure - 1),
    )
    name, day, company = db.one(
        "SELECT name, date, company_id FROM account_move WHERE id = %s", (move_id,)
    )
    lines = [
        HashLine(lid, label, float(debit), float(credit), account, partner, decimals)
        for lid, label, debit, credit, account, partner, decimals in db.sql(
            "SELECT l.id, l.name, l.debit, l.credit, l.account_id, l.partner_id, c.decimal_places "
            "FROM account_move_line l JOIN res_currency c ON c.id = l.currency_id "
            "WHERE l.move_id = %s",
            (move_id,),
        )
    ]
    move = HashMove(move_id, name, day, journal, company)
    digest = hashchain.compute(previous, move, lines, 3)
    db.sql("UPDATE account_move SET inalterable_hash = %s WHERE id = %s", (digest, move_id))
    exact = []
    verify_exactly = hashcheck._Walk.verify_exactly

    def spy(walk, row, lines):
        exact.append(row[0])
        return verify_exactly(walk, row, lines)

    monkeypatch.setattr(hashcheck._Walk, "verify_exactly", spy)
    check = db.validate().check("hash_chain.broken")
    assert check.status == "pass", check.samples
    assert exact == [move_id]


@pytest.mark.parametrize("odoo", [16, 17, 18])
def test_secure_number_duplicates_and_holes_come_first_in_the_samples(seeded, odoo):
    db = seeded(odoo, moves=400)
    journal = db.one(
        "SELECT journal_id FROM account_move WHERE coalesce(secure_sequence_number, 0) <> 0 "
        "GROUP BY journal_id ORDER BY count(*) DESC, journal_id LIMIT 1"
    )
    rows = db.sql(
        "SELECT id, secure_sequence_number FROM account_move WHERE journal_id = %s "
        "AND coalesce(secure_sequence_number, 0) <> 0 ORDER BY secure_sequence_number",
        (journal,),
    )
    (_, number), (second, _), (third, later) = rows[2], rows[3], rows[4]
    # The second move takes the first's number; from the third on, every number moves up two.
    db.sql("UPDATE account_move SET secure_sequence_number = %s WHERE id = %s", (number, second))
    db.sql(
        "UPDATE account_move SET secure_sequence_number = secure_sequence_number + 2 "
        "WHERE journal_id = %s AND secure_sequence_number >= %s",
        (journal, later),
    )
    check = db.validate(sample_limit=100).check("hash_chain.broken")
    kinds = [s["kind"] for s in check.samples]
    assert kinds[:2] == ["duplicate_secure_number", "secure_numbers_missing"]
    duplicate, hole = check.samples[:2]
    assert duplicate["move_id"] == second and duplicate["journal_id"] == journal
    assert hole["next_move_id"] == third
    assert (hole["first_missing"], hole["last_missing"]) == (number + 1, later + 1)
