"""Writes into a running (seeded) Odoo-shaped database the way Odoo would post them.

``append_invoice`` posts one customer invoice per transaction with the next number of its
sequence (and its hash on a restricted journal): the demo's trickle of business, whose last
commit time measures the data a recovery loses. ``post_faulty_batch`` posts wrong entries, as
a faulty release would, for the corruption scenario.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from shared.finance import hashchain, schema
from shared.finance.numbering import format_number, monthly_prefix, yearly_prefix
from shared.finance.seed import CONNECT_TIMEOUT_S, SeedError, money

log = logging.getLogger(__name__)

STATEMENT_TIMEOUT_MS = 30_000
TAX_RATE = 0.15


class AppendedInvoice(BaseModel):
    """One posted invoice: what it is and when its transaction committed (UTC)."""

    id: int
    name: str
    journal_id: int
    company_id: int
    amount_total: str
    written_at: datetime = Field(description="create_date of the rows (transaction start, UTC)")
    committed_at: datetime = Field(description="when the commit returned, UTC")


class FaultyBatch(BaseModel):
    """Entries a faulty release posted: ids, names and the commit time (UTC)."""

    move_ids: list[int]
    names: list[str]
    company_id: int
    committed_at: datetime


def _connect(dsn: str) -> psycopg.Connection:
    try:
        return psycopg.connect(
            dsn,
            connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            application_name="drctl-live",
        )
    except psycopg.OperationalError as exc:
        raise SeedError(f"could not connect: {str(exc).strip()}") from exc


def _version(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT latest_version FROM ir_module_module WHERE name = 'base' AND state = 'installed'"
    ).fetchone()
    if not row or not row[0]:
        raise SeedError("not an Odoo database (no installed base module)")
    major = int(row[0].split(".")[0])
    if major not in (16, 17, 18):
        raise SeedError(f"Odoo {row[0]} is not one of 16, 17, 18")
    return major


def _insert(cur: psycopg.Cursor, table: str, version: int, row: dict) -> None:
    known = schema.columns(table, version)
    cols = [c for c in row if c in known]
    cur.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, cols)),
            sql.SQL(", ").join(sql.Placeholder() * len(cols)),
        ),
        [row[c] for c in cols],
    )


def _company(cur: psycopg.Cursor, company_id: int | None) -> tuple[int, int, int]:
    query = (
        "SELECT co.id, cur.id, cur.decimal_places FROM res_company co "
        "JOIN res_currency cur ON cur.id = co.currency_id "
    )
    if company_id is None:
        row = cur.execute(query + "ORDER BY co.id LIMIT 1").fetchone()
    else:
        row = cur.execute(query + "WHERE co.id = %s", (company_id,)).fetchone()
    if row is None:
        raise SeedError(f"no company {company_id if company_id is not None else ''}".strip())
    return row


def _journal(cur: psycopg.Cursor, company: int, jtype: str) -> tuple[int, str, bool, int | None]:
    """The company's first journal of ``jtype``, locked so concurrent postings take turns."""
    row = cur.execute(
        "SELECT id, code, restrict_mode_hash_table, default_account_id FROM account_journal "
        "WHERE company_id = %s AND type = %s AND active ORDER BY id LIMIT 1 FOR UPDATE",
        (company, jtype),
    ).fetchone()
    if row is None:
        raise SeedError(f"company {company} has no {jtype} journal")
    return row


def _account(cur: psycopg.Cursor, version: int, company: int, account_type: str) -> int:
    if version == 18:
        query = (
            "SELECT a.id FROM account_account a JOIN account_account_res_company_rel r "
            "ON r.account_account_id = a.id WHERE r.res_company_id = %s AND a.account_type = %s "
            "ORDER BY a.id LIMIT 1"
        )
    else:
        query = (
            "SELECT id FROM account_account WHERE company_id = %s AND account_type = %s "
            "ORDER BY id LIMIT 1"
        )
    row = cur.execute(query, (company, account_type)).fetchone()
    if row is None:
        raise SeedError(f"company {company} has no {account_type} account")
    return row[0]


def _next_number(cur: psycopg.Cursor, journal: int, prefix: str) -> int:
    row = cur.execute(
        "SELECT max(sequence_number) FROM account_move WHERE journal_id = %s "
        "AND sequence_prefix = %s",
        (journal, prefix),
    ).fetchone()
    return (row[0] or 0) + 1


def _hash(cur, version: int, journal: int, company: int, move: dict, lines: list[dict], dp: int):
    """Secure number and hash of a newly posted move, chained as the version chains."""
    hmove = hashchain.HashMove(move["id"], move["name"], move["date"], journal, company)
    decimals = dict(cur.execute("SELECT id, decimal_places FROM res_currency").fetchall())
    hlines = [
        hashchain.HashLine(
            ln["id"], ln["name"], float(ln["debit"]), float(ln["credit"]), ln["account_id"],
            ln["partner_id"], decimals.get(ln["currency_id"], dp),
        )
        for ln in lines
    ]  # fmt: skip
    if version in (16, 17):
        row = cur.execute(
            "SELECT secure_sequence_number, inalterable_hash FROM account_move "
            "WHERE journal_id = %s AND secure_sequence_number IS NOT NULL "
            "ORDER BY secure_sequence_number DESC LIMIT 1",
            (journal,),
        ).fetchone()
        secure, previous = (row[0] + 1, row[1]) if row else (1, None)
        cur.execute(
            "UPDATE ir_sequence SET number_next = %s WHERE id = "
            "(SELECT secure_sequence_id FROM account_journal WHERE id = %s)",
            (secure + 1, journal),
        )
        return secure, hashchain.compute(previous, hmove, hlines, 3)
    row = cur.execute(
        "SELECT inalterable_hash FROM account_move WHERE journal_id = %s AND sequence_prefix = %s "
        "AND inalterable_hash IS NOT NULL ORDER BY sequence_number DESC LIMIT 1",
        (journal, move["sequence_prefix"]),
    ).fetchone()
    return None, hashchain.compute(row[0] if row else None, hmove, hlines, 4)


def _move_row(version, move_id, name, prefix, number, day, journal, company, currency, partner,
              now, move_type, total_text) -> dict:  # fmt: skip
    return {
        "id": move_id, "name": name, "state": "posted", "move_type": move_type, "date": day,
        "invoice_date": day if move_type != "entry" else None,
        "invoice_date_due": day + timedelta(days=30) if move_type != "entry" else None,
        "journal_id": journal, "company_id": company, "currency_id": currency,
        "partner_id": partner, "commercial_partner_id": partner, "sequence_prefix": prefix,
        "sequence_number": number, "posted_before": True, "payment_state": "not_paid",
        "amount_total": total_text, "amount_residual": total_text if move_type != "entry" else 0,
        "amount_total_signed": total_text, "auto_post": "no", "is_storno": False,
        "is_move_sent": False, "to_check": False, "checked": True, "made_sequence_gap": False,
        "create_uid": 2, "create_date": now, "write_uid": 2, "write_date": now,
    }  # fmt: skip


def _line_row(move: dict, line_id, account, partner, name, display, currency, balance_text,
              debit, credit, residual="0") -> dict:  # fmt: skip
    return {
        "id": line_id, "move_id": move["id"], "move_name": move["name"], "date": move["date"],
        "parent_state": "posted", "journal_id": move["journal_id"],
        "company_id": move["company_id"], "company_currency_id": currency,
        "account_id": account, "partner_id": partner, "name": name, "display_type": display,
        "currency_id": currency, "debit": debit, "credit": credit, "balance": balance_text,
        "amount_currency": balance_text, "amount_residual": residual,
        "amount_residual_currency": residual, "reconciled": False, "blocked": False,
        "invoice_date": move["invoice_date"], "create_uid": 2,
        "create_date": move["create_date"], "write_uid": 2, "write_date": move["write_date"],
    }  # fmt: skip


def append_invoice(dsn: str, company_id: int | None = None, seed: int | None = None):
    """Post one customer invoice (product, tax and receivable lines) in one transaction."""
    rng = random.Random(seed)
    with _connect(dsn) as conn, conn.cursor() as cur:
        version = _version(conn)
        company, currency, dp = _company(cur, company_id)
        journal, code, restricted, income = _journal(cur, company, "sale")
        income = income or _account(cur, version, company, "income")
        receivable = _account(cur, version, company, "asset_receivable")
        tax_account = _account(cur, version, company, "liability_current")
        partner = cur.execute(
            "SELECT id FROM res_partner WHERE id NOT IN (SELECT partner_id FROM res_company) "
            "ORDER BY id LIMIT 1 OFFSET %s",
            (rng.randrange(8),),
        ).fetchone()[0]
        now = cur.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()[0]
        day = now.date()
        prefix = yearly_prefix(code, day.year)
        number = _next_number(cur, journal, prefix)
        name = format_number(prefix, number, monthly=False)
        untaxed = round(rng.uniform(50, 5000) * 10**dp)
        tax = round(untaxed * TAX_RATE)
        total = untaxed + tax
        move_id = cur.execute("SELECT nextval('account_move_id_seq')").fetchone()[0]
        ids = [cur.execute("SELECT nextval('account_move_line_id_seq')").fetchone()[0]
               for _ in range(3)]  # fmt: skip
        move = _move_row(version, move_id, name, prefix, number, day, journal, company, currency,
                         partner, now, "out_invoice", money(total, dp))  # fmt: skip
        lines = [
            _line_row(move, ids[0], income, partner, "Consulting services", "product", currency,
                      money(-untaxed, dp), "0", money(untaxed, dp)),
            _line_row(move, ids[1], tax_account, partner, "Tax 15%", "tax", currency,
                      money(-tax, dp), "0", money(tax, dp)),
            _line_row(move, ids[2], receivable, partner, name, "payment_term", currency,
                      money(total, dp), money(total, dp), "0", residual=money(total, dp)),
        ]  # fmt: skip
        if restricted:
            move["secure_sequence_number"], move["inalterable_hash"] = _hash(
                cur, version, journal, company, move, lines, dp
            )
        _insert(cur, "account_move", version, move)
        for line in lines:
            _insert(cur, "account_move_line", version, line)
        conn.commit()
        committed = datetime.now(UTC)
    log.info("posted invoice %s (id %s) in company %s", name, move_id, company)
    return AppendedInvoice(
        id=move_id, name=name, journal_id=journal, company_id=company,
        amount_total=money(total, dp), written_at=now.replace(tzinfo=UTC), committed_at=committed,
    )  # fmt: skip


def post_faulty_batch(dsn: str, count: int = 5, company_id: int | None = None) -> FaultyBatch:
    """Post ``count`` misc entries whose credit falls short of their debit, in one transaction,
    as a release with broken posting logic would."""
    if count < 1:
        raise SeedError("count must be at least 1")
    with _connect(dsn) as conn, conn.cursor() as cur:
        version = _version(conn)
        company, currency, dp = _company(cur, company_id)
        journal, code, _, _ = _journal(cur, company, "general")
        expense = _account(cur, version, company, "expense")
        accrual = _account(cur, version, company, "liability_current")
        now = cur.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()[0]
        day = now.date()
        prefix = monthly_prefix(code, day.year, day.month)
        number = _next_number(cur, journal, prefix)
        ids, names = [], []
        for index in range(count):
            amount = (index + 1) * 1000 * 10**dp
            short = amount - (index + 1) * 7 * 10**dp
            name = format_number(prefix, number + index, monthly=True)
            move_id = cur.execute("SELECT nextval('account_move_id_seq')").fetchone()[0]
            move = _move_row(version, move_id, name, prefix, number + index, day, journal,
                             company, currency, None, now, "entry", money(amount, dp))  # fmt: skip
            l1, l2 = (cur.execute("SELECT nextval('account_move_line_id_seq')").fetchone()[0]
                      for _ in range(2))  # fmt: skip
            _insert(cur, "account_move", version, move)
            _insert(cur, "account_move_line", version, _line_row(
                move, l1, expense, None, "Accrual (release 2.4.1)", "product", currency,
                money(amount, dp), money(amount, dp), "0"))  # fmt: skip
            _insert(cur, "account_move_line", version, _line_row(
                move, l2, accrual, None, "Accrual (release 2.4.1)", "product", currency,
                money(-short, dp), "0", money(short, dp)))  # fmt: skip
            ids.append(move_id)
            names.append(name)
        conn.commit()
        committed = datetime.now(UTC)
    log.info("posted %s faulty entries in company %s: %s", count, company, ", ".join(names))
    return FaultyBatch(move_ids=ids, names=names, company_id=company, committed_at=committed)
