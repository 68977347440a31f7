"""The SQL checks: ledger, numbering, reconciliation, recovery point, scheduled and queued jobs.

Each function takes the run's context and an open READ ONLY connection and returns one or
more check results. The ledger checks share one pass over ``account_move_line`` (grouped per
move and per stored copy of the move's fields), because that table dominates the run time
and reading it once is the floor the checks are measured against.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any

import psycopg

from shared.finance.introspect import Context
from shared.finance.models import CheckResult

log = logging.getLogger(__name__)

WORK_MEM = "256MB"


def result(check_id: str, found: int, samples, detail: str, started: float, warn=False):
    """A finding makes the check fail (or warn for the operational checks)."""
    status = ("warn" if warn else "fail") if found else "pass"
    return CheckResult(
        id=check_id,
        status=status,
        count=found,
        samples=[_jsonable(s) for s in samples],
        detail=detail,
        duration_s=round(time.monotonic() - started, 3),
    )


def _jsonable(sample: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in sample.items():
        if isinstance(value, Decimal):
            value = str(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        out[key] = value
    return out


def _rows(conn: psycopg.Connection, query: str, params: dict) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


# --------------------------------------------------------------------------- ledger

LEDGER_SQL = """
WITH g AS MATERIALIZED (
    SELECT l.move_id, l.parent_state, l.journal_id, l.company_id, l.date, l.move_name,
           count(*) AS n, sum(l.balance) AS bal, sum(l.debit) AS d, sum(l.credit) AS c
    FROM account_move_line l
    WHERE true {line_filter}
    GROUP BY 1, 2, 3, 4, 5, 6
), j AS MATERIALIZED (
    SELECT g.*, m.id AS m_id, m.state, m.name, m.journal_id AS m_journal,
           m.company_id AS m_company, m.date AS m_date
    FROM g LEFT JOIN account_move m ON m.id = g.move_id
), unbalanced AS (
    SELECT j.move_id, min(j.name) AS name, min(j.m_journal) AS journal_id,
           round(sum(j.bal), min(cur.decimal_places)) AS imbalance
    FROM j
    JOIN res_company co ON co.id = j.m_company
    JOIN res_currency cur ON cur.id = co.currency_id
    WHERE j.state = 'posted'
    GROUP BY j.move_id
    HAVING round(sum(j.bal), min(cur.decimal_places)) <> 0
), lineless AS (
    SELECT m.id AS move_id, m.name, m.journal_id
    FROM account_move m
    WHERE m.state = 'posted' {move_filter}
      AND NOT EXISTS (SELECT 1 FROM g WHERE g.move_id = m.id)
), orphan AS (
    SELECT j.move_id, j.n,
           CASE WHEN j.m_id IS NULL THEN 'move missing'
                WHEN j.parent_state IS DISTINCT FROM j.state THEN 'state differs from the move'
                WHEN j.journal_id IS DISTINCT FROM j.m_journal THEN 'journal differs from the move'
                WHEN j.company_id IS DISTINCT FROM j.m_company THEN 'company differs from the move'
                WHEN j.date IS DISTINCT FROM j.m_date THEN 'date differs from the move'
                ELSE 'number differs from the move' END AS reason
    FROM j
    WHERE j.m_id IS NULL OR j.parent_state IS DISTINCT FROM j.state
       OR j.journal_id IS DISTINCT FROM j.m_journal OR j.company_id IS DISTINCT FROM j.m_company
       OR j.date IS DISTINCT FROM j.m_date OR j.move_name IS DISTINCT FROM j.name
), trial AS (
    SELECT j.company_id, sum(j.d) AS debit, sum(j.c) AS credit, sum(j.bal) AS balance
    FROM j WHERE j.parent_state = 'posted' GROUP BY j.company_id
)
SELECT 'unbalanced' AS kind, count(*) OVER () AS total, 0::bigint AS lines,
       json_build_object('move_id', move_id, 'name', name, 'journal_id', journal_id,
                         'imbalance', imbalance::text) AS data
FROM (SELECT * FROM unbalanced ORDER BY move_id LIMIT %(limit)s) s
UNION ALL
SELECT 'unbalanced_total', (SELECT count(*) FROM unbalanced), 0, NULL
UNION ALL
SELECT 'lineless', (SELECT count(*) FROM lineless), 0,
       json_build_object('move_id', move_id, 'name', name, 'journal_id', journal_id,
                         'problem', 'posted move without lines')
FROM (SELECT * FROM lineless ORDER BY move_id LIMIT %(limit)s) s
UNION ALL
SELECT 'orphan', (SELECT count(*) FROM orphan), (SELECT coalesce(sum(n), 0) FROM orphan),
       json_build_object('move_id', move_id, 'lines', n, 'reason', reason)
FROM (SELECT * FROM orphan ORDER BY move_id LIMIT %(limit)s) s
UNION ALL
SELECT 'trial', 0, 0,
       json_build_object('company_id', t.company_id, 'debit', t.debit::text,
                         'credit', t.credit::text, 'balance', t.balance::text,
                         'decimals', cur.decimal_places,
                         'company', co.name)
FROM trial t
LEFT JOIN res_company co ON co.id = t.company_id
LEFT JOIN res_currency cur ON cur.id = co.currency_id
"""


def ledger_checks(ctx: Context, conn: psycopg.Connection) -> list[CheckResult]:
    """ledger.unbalanced_moves, ledger.trial_balance and ledger.orphan_lines in one pass."""
    started = time.monotonic()
    limit = ctx.request.sample_limit
    conn.execute(f"SET work_mem = '{WORK_MEM}'")
    query = LEDGER_SQL.format(
        line_filter=ctx.company_filter("l"), move_filter=ctx.company_filter("m")
    )
    rows = conn.execute(query, {**ctx.params, "limit": limit}).fetchall()
    by_kind: dict[str, list] = {}
    for kind, total, lines, data in rows:
        by_kind.setdefault(kind, []).append((total, lines, data))

    unbalanced = [r[2] for r in by_kind.get("unbalanced", [])]
    unbalanced_total = by_kind["unbalanced_total"][0][0]
    lineless = [r[2] for r in by_kind.get("lineless", []) if r[2] is not None]
    lineless_total = lineless and by_kind["lineless"][0][0] or 0
    samples = (unbalanced + lineless)[:limit]
    found = unbalanced_total + lineless_total
    detail = (
        f"{unbalanced_total} posted moves whose lines do not sum to zero at the company "
        f"currency's precision, {lineless_total} posted moves without lines"
    )
    out = [result("ledger.unbalanced_moves", found, samples, detail, started)]

    trial_samples = []
    for _, _, data in by_kind.get("trial", []):
        decimals = data["decimals"] if data["decimals"] is not None else 2
        debit, credit = Decimal(data["debit"]), Decimal(data["credit"])
        balance = Decimal(data["balance"])
        quant = Decimal(1).scaleb(-decimals)
        difference = (debit - credit).quantize(quant)
        arithmetic = (balance - (debit - credit)).quantize(quant)
        if difference != 0 or arithmetic != 0:
            trial_samples.append(
                {
                    "company_id": data["company_id"],
                    "company": data["company"],
                    "debit": str(debit),
                    "credit": str(credit),
                    "difference": str(difference),
                    "balance_minus_debit_credit": str(arithmetic),
                }
            )
    companies = len(by_kind.get("trial", []))
    detail = (
        f"{len(trial_samples)} of {companies} companies whose posted debits and credits differ "
        "(or whose balances disagree with debit minus credit)"
    )
    out.append(result("ledger.trial_balance", len(trial_samples), trial_samples, detail, started))

    orphan_groups = [r[2] for r in by_kind.get("orphan", []) if r[2] is not None]
    orphan_lines = by_kind["orphan"][0][1] if orphan_groups else 0
    samples = _orphan_line_samples(conn, orphan_groups, limit)
    detail = (
        f"{orphan_lines} lines whose move is missing or whose stored copy of the move's state, "
        "journal, company, date or number differs from the move"
    )
    out.append(result("ledger.orphan_lines", orphan_lines, samples, detail, started))
    return out


def _orphan_line_samples(conn, groups: list[dict], limit: int) -> list[dict]:
    """Line ids for the sampled moves (the aggregate pass knows moves, not lines)."""
    if not groups:
        return []
    reasons = {g["move_id"]: g["reason"] for g in groups}
    rows = conn.execute(
        "SELECT id, move_id, parent_state FROM account_move_line WHERE move_id = ANY(%s) "
        "ORDER BY move_id, id LIMIT %s",
        (list(reasons), limit * 4),
    ).fetchall()
    samples = [
        {"line_id": lid, "move_id": mid, "parent_state": st, "reason": reasons[mid]}
        for lid, mid, st in rows
    ]
    return samples[:limit]


# --------------------------------------------------------------------------- numbering

DUPLICATES_SQL = """
SELECT m.journal_id, j.code AS journal, m.name, array_agg(m.id ORDER BY m.id) AS move_ids,
       count(*) OVER () AS total
FROM account_move m JOIN account_journal j ON j.id = m.journal_id
WHERE m.state = 'posted' AND m.name IS NOT NULL AND m.name <> '/' {move_filter}
GROUP BY m.journal_id, j.code, m.name
HAVING count(*) > 1
ORDER BY m.journal_id, m.name
LIMIT %(limit)s
"""

GAPS_SQL = """
WITH issued AS (
    SELECT m.journal_id, m.sequence_prefix, m.sequence_number
    FROM account_move m
    WHERE m.name IS NOT NULL AND m.name <> '/' AND m.sequence_number > 0
      AND (m.state IN ('posted', 'cancel') OR m.posted_before) {move_filter}
), numbered AS (
    SELECT journal_id, sequence_prefix, sequence_number,
           lag(sequence_number) OVER (PARTITION BY journal_id, sequence_prefix
                                      ORDER BY sequence_number) AS prev
    FROM issued
), holes AS (
    SELECT journal_id, sequence_prefix, coalesce(prev, 0) + 1 AS first_missing,
           sequence_number - 1 AS last_missing
    FROM numbered WHERE sequence_number > coalesce(prev, 0) + 1
)
SELECT h.journal_id, j.code AS journal, h.sequence_prefix AS prefix, h.first_missing,
       h.last_missing, count(*) OVER () AS ranges,
       sum(h.last_missing - h.first_missing + 1) OVER () AS missing
FROM holes h JOIN account_journal j ON j.id = h.journal_id
ORDER BY h.journal_id, h.sequence_prefix, h.first_missing
LIMIT 1000
"""

MAX_LISTED_NUMBERS = 50


def sequence_checks(ctx: Context, conn: psycopg.Connection) -> list[CheckResult]:
    """sequence.duplicates and sequence.gaps over account_move."""
    started = time.monotonic()
    limit = ctx.request.sample_limit
    params = {**ctx.params, "limit": limit}
    conn.execute(f"SET work_mem = '{WORK_MEM}'")
    rows = _rows(conn, DUPLICATES_SQL.format(move_filter=ctx.company_filter("m")), params)
    total = rows[0]["total"] if rows else 0
    samples = [{k: v for k, v in r.items() if k != "total"} for r in rows]
    index_note = _unique_index_note(ctx, conn)
    detail = f"{total} names held by more than one posted move of the same journal" + index_note
    out = [result("sequence.duplicates", total, samples, detail, started)]

    started = time.monotonic()
    rows = _rows(conn, GAPS_SQL.format(move_filter=ctx.company_filter("m")), params)
    missing = int(rows[0]["missing"]) if rows else 0
    ranges = rows[0]["ranges"] if rows else 0
    grouped: dict[tuple, dict] = {}
    for r in rows:
        key = (r["journal_id"], r["prefix"])
        sample = grouped.setdefault(
            key,
            {"journal_id": r["journal_id"], "journal": r["journal"], "prefix": r["prefix"],
             "missing": [], "missing_count": 0},
        )  # fmt: skip
        first, last = r["first_missing"], r["last_missing"]
        sample["missing_count"] += last - first + 1
        room = MAX_LISTED_NUMBERS - len(sample["missing"])
        sample["missing"] += list(range(first, min(last, first + room - 1) + 1)) if room > 0 else []
    samples = list(grouped.values())[:limit]
    detail = (
        f"{missing} numbers missing in {ranges} holes, among the numbers issued to posted moves "
        "(cancelled moves that keep their number count as issued), per journal and prefix"
    )
    out.append(result("sequence.gaps", missing, samples, detail, started))
    return out


def _unique_index_note(ctx: Context, conn: psycopg.Connection) -> str:
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'account_move_unique_name'"
    ).fetchone()
    if row is None:
        if ctx.version >= 17:
            return "; the unique index account_move_unique_name is missing"
        return "; Odoo 16 enforces unique names in Python only (no unique index)"
    if not row[0]:
        return "; the unique index account_move_unique_name is INVALID"
    return ""


# --------------------------------------------------------------------------- reconciliation

PARTIALS_SQL = """
SELECT p.id AS partial_id, p.debit_move_id, p.credit_move_id,
       CASE WHEN d.id IS NULL OR c.id IS NULL THEN 'line missing'
            WHEN p.amount < 0 THEN 'negative amount'
            WHEN d.account_id IS DISTINCT FROM c.account_id THEN 'lines on different accounts'
            WHEN d.parent_state <> 'posted' OR c.parent_state <> 'posted' THEN 'line not posted'
            ELSE 'full reconcile differs from its lines' END AS reason,
       count(*) OVER () AS total
FROM account_partial_reconcile p
LEFT JOIN account_move_line d ON d.id = p.debit_move_id
LEFT JOIN account_move_line c ON c.id = p.credit_move_id
WHERE (d.id IS NULL OR c.id IS NULL OR p.amount < 0 OR d.account_id IS DISTINCT FROM c.account_id
       OR d.parent_state <> 'posted' OR c.parent_state <> 'posted'
       OR p.full_reconcile_id IS DISTINCT FROM d.full_reconcile_id
       OR p.full_reconcile_id IS DISTINCT FROM c.full_reconcile_id) {partial_filter}
ORDER BY p.id
LIMIT %(limit)s
"""

RESIDUALS_SQL = """
WITH part AS (
    SELECT debit_move_id AS line_id, amount AS as_debit, 0::numeric AS as_credit,
           debit_amount_currency AS cur_debit, 0::numeric AS cur_credit
    FROM account_partial_reconcile
    UNION ALL
    SELECT credit_move_id, 0, amount, 0, credit_amount_currency
    FROM account_partial_reconcile
), agg AS (
    SELECT line_id, sum(as_debit) AS d, sum(as_credit) AS c,
           sum(cur_debit) AS cd, sum(cur_credit) AS cc
    FROM part GROUP BY line_id
), expected AS (
    SELECT l.id, l.move_id, l.move_name, l.amount_residual, l.amount_residual_currency,
           l.reconciled,
           round(l.balance - coalesce(a.d, 0) + coalesce(a.c, 0), cc.decimal_places) AS residual,
           round(l.amount_currency - coalesce(a.cd, 0) + coalesce(a.cc, 0), lc.decimal_places)
               AS residual_currency,
           power(10::numeric, -cc.decimal_places) AS unit,
           power(10::numeric, -lc.decimal_places) AS unit_currency
    FROM account_move_line l
    JOIN account_account acc ON acc.id = l.account_id
    JOIN res_currency cc ON cc.id = l.company_currency_id
    JOIN res_currency lc ON lc.id = l.currency_id
    LEFT JOIN agg a ON a.line_id = l.id
    WHERE (acc.reconcile OR acc.account_type IN ('asset_cash', 'liability_credit_card'))
      {line_filter}
), wrong AS (
    SELECT *,
           CASE WHEN abs(amount_residual - residual) > unit
                  THEN 'residual differs from balance minus its reconciliations'
                WHEN abs(amount_residual_currency - residual_currency) > unit_currency
                  THEN 'residual in currency differs from its reconciliations'
                ELSE 'reconciled flag disagrees with the residual' END AS reason
    FROM expected
    WHERE abs(amount_residual - residual) > unit
       OR abs(amount_residual_currency - residual_currency) > unit_currency
       OR reconciled IS DISTINCT FROM (residual = 0 AND residual_currency = 0)
)
SELECT id AS line_id, move_id, move_name, amount_residual AS stored, residual AS expected,
       reason, count(*) OVER () AS total
FROM wrong ORDER BY id LIMIT %(limit)s
"""

FULL_SQL = """
SELECT l.full_reconcile_id, round(sum(l.balance), min(cur.decimal_places)) AS imbalance,
       bool_and(l.reconciled) AS all_reconciled, count(*) OVER () AS total
FROM account_move_line l JOIN res_currency cur ON cur.id = l.company_currency_id
WHERE l.full_reconcile_id IS NOT NULL {line_filter}
GROUP BY l.full_reconcile_id
HAVING round(sum(l.balance), min(cur.decimal_places)) <> 0 OR NOT bool_and(l.reconciled)
ORDER BY l.full_reconcile_id
LIMIT %(limit)s
"""


def reconcile_check(ctx: Context, conn: psycopg.Connection) -> CheckResult:
    """reconcile.inconsistent: partials, stored residuals and full reconciles that disagree."""
    started = time.monotonic()
    limit = ctx.request.sample_limit
    params = {**ctx.params, "limit": limit}
    conn.execute(f"SET work_mem = '{WORK_MEM}'")
    partial_filter = (
        ctx.company_filter("p") if ctx.has("account_partial_reconcile", "company_id") else ""
    )
    partials = _rows(conn, PARTIALS_SQL.format(partial_filter=partial_filter), params)
    residuals = _rows(conn, RESIDUALS_SQL.format(line_filter=ctx.company_filter("l")), params)
    fulls = _rows(conn, FULL_SQL.format(line_filter=ctx.company_filter("l")), params)
    n_partials = partials[0]["total"] if partials else 0
    n_lines = residuals[0]["total"] if residuals else 0
    n_full = fulls[0]["total"] if fulls else 0
    samples = []
    for r in partials:
        samples.append({"kind": "partial", **{k: v for k, v in r.items() if k != "total"}})
    for r in residuals:
        samples.append({"kind": "line", **{k: v for k, v in r.items() if k != "total"}})
    for r in fulls:
        samples.append(
            {"kind": "full_reconcile", "full_reconcile_id": r["full_reconcile_id"],
             "imbalance": r["imbalance"], "all_lines_reconciled": r["all_reconciled"]}
        )  # fmt: skip
    detail = (
        f"{n_partials} partial reconciles dangling, across accounts, on unposted lines or out of "
        f"step with their full reconcile; {n_lines} lines whose stored residual or reconciled "
        f"flag disagrees with their partials (one unit tolerance); {n_full} full reconciles "
        "not netting to zero or holding open lines"
    )
    found = n_partials + n_lines + n_full
    return result("reconcile.inconsistent", found, samples[:limit], detail, started)


# --------------------------------------------------------------------------- recovery point


def recovery_point_check(ctx: Context, conn: psycopg.Connection) -> CheckResult:
    """recovery_point.after: moves, lines and payments created or written after the point."""
    started = time.monotonic()
    point = ctx.recovery_point_utc()
    if point is None:
        return CheckResult(
            id="recovery_point.after",
            status="skip",
            detail="no recovery point given (--recovery-point)",
        )
    limit = ctx.request.sample_limit
    parts = []
    for table, label_col in (
        ("account_move", "name"),
        ("account_move_line", "move_name"),
        ("account_payment", "name" if ctx.has("account_payment", "name") else None),
    ):
        if not ctx.has(table, "write_date"):
            continue
        label = f"t.{label_col}" if label_col else "NULL::varchar"
        company = ctx.company_filter("t") if ctx.has(table, "company_id") else ""
        parts.append(
            f"(SELECT '{table}' AS tbl, t.id, {label} AS name, t.create_date, t.write_date,"
            f" count(*) OVER () AS total FROM {table} t"
            f" WHERE (t.create_date > %(point)s OR t.write_date > %(point)s){company}"
            f" ORDER BY t.id LIMIT %(limit)s)"
        )
    rows = _rows(conn, " UNION ALL ".join(parts), {**ctx.params, "point": point, "limit": limit})
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["tbl"]] = r["total"]
    found = sum(totals.values())
    samples = [
        {"table": r["tbl"], "id": r["id"], "name": r["name"], "create_date": r["create_date"],
         "write_date": r["write_date"]}
        for r in rows
    ][:limit]  # fmt: skip
    per_table = ", ".join(f"{t}: {n}" for t, n in sorted(totals.items())) or "none"
    detail = f"rows created or written after {point.isoformat()} UTC ({per_table})"
    return result("recovery_point.after", found, samples, detail, started)


# --------------------------------------------------------------------------- jobs

HOUSEKEEPING = {"base.autovacuum_job"}


def cron_check(ctx: Context, conn: psycopg.Connection) -> CheckResult:
    """cron.active: active scheduled jobs already due, which fire as soon as a worker starts."""
    started = time.monotonic()
    name = "c.cron_name" if ctx.has("ir_cron", "cron_name") else "NULL::varchar"
    if name.startswith("NULL") and ctx.has("ir_act_server", "name"):
        name = "(SELECT a.name::text FROM ir_act_server a WHERE a.id = c.ir_actions_server_id)"
    numbercall = " AND c.numbercall <> 0" if ctx.has("ir_cron", "numbercall") else ""
    xml = "NULL::text"
    if ctx.has("ir_model_data", "res_id"):
        xml = (
            "(SELECT d.module || '.' || d.name FROM ir_model_data d "
            "WHERE d.model = 'ir.cron' AND d.res_id = c.id LIMIT 1)"
        )
    trigger = ""
    if ctx.has("ir_cron_trigger", "call_at"):
        trigger = (
            " OR EXISTS (SELECT 1 FROM ir_cron_trigger t WHERE t.cron_id = c.id"
            " AND t.call_at <= now() AT TIME ZONE 'UTC')"
        )
    rows = _rows(
        conn,
        f"SELECT c.id AS cron_id, {name} AS name, {xml} AS xml_id, c.nextcall"
        f" FROM ir_cron c WHERE c.active{numbercall}"
        f" AND (c.nextcall <= now() AT TIME ZONE 'UTC'{trigger}) ORDER BY c.nextcall, c.id",
        {},
    )
    due = [r for r in rows if r["xml_id"] not in HOUSEKEEPING]
    kept = [r["xml_id"] for r in rows if r["xml_id"] in HOUSEKEEPING]
    held = ctx.request.expect_jobs_held
    detail = (
        f"{len(due)} active scheduled jobs are already due and fire the moment job workers start"
    )
    if kept:
        detail += f"; not counted: {', '.join(kept)} (housekeeping, kept active by neutralize)"
    detail += "; jobs are expected held: failing" if held and due else ""
    return result(
        "cron.active", len(due), due[: ctx.request.sample_limit], detail, started, warn=not held
    )


def queue_check(ctx: Context, conn: psycopg.Connection) -> CheckResult:
    """queue.requeued: OCA queue jobs enqueued or started at the recovery point; the job runner
    treats them as dead and puts them back in the queue, so they run again."""
    started = time.monotonic()
    if not ctx.has("queue_job", "state"):
        return CheckResult(
            id="queue.requeued",
            status="pass",
            detail="queue_job is not installed: no job queue to re-run",
            duration_s=round(time.monotonic() - started, 3),
        )
    cols = [c for c in ("uuid", "name", "date_enqueued", "date_started") if ctx.has("queue_job", c)]
    select = ", ".join(["id AS job_id", "state", *cols])
    rows = _rows(
        conn,
        f"SELECT {select} FROM queue_job WHERE state IN ('enqueued', 'started') ORDER BY id",
        {},
    )
    pending = conn.execute("SELECT count(*) FROM queue_job WHERE state = 'pending'").fetchone()[0]
    detail = (
        f"{len(rows)} jobs enqueued or started at the recovery point will be re-queued and run "
        f"again; {pending} pending jobs will run when the runner starts"
    )
    return result(
        "queue.requeued", len(rows), rows[: ctx.request.sample_limit], detail, started, warn=True
    )
