"""The SQL checks: ledger, numbering, reconciliation, recovery point, scheduled and queued jobs.

Each function takes the run's context and an open READ ONLY connection and returns one or
more check results. The ledger checks share one pass over ``account_move_line`` (walked with
the moves in id order and grouped per move), because that table dominates the run time and
reading it once is the floor the checks are measured against. Where the planner's cheapest
plan is not (hash tables that spill, index walks for a LIMIT that reads every row), a query
turns the planner settings it must avoid off for itself alone.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg

from shared.finance.introspect import Context
from shared.finance.models import CheckResult

log = logging.getLogger(__name__)

WORK_MEM = "256MB"


def limited(query: str, order: str) -> str:
    """Wrap ``query`` so it returns its first rows (by ``order``) with the total count.

    The rows are found first and sorted after, so the planner scans and hash-joins instead of
    walking an index in ``order`` to stop early (a walk that reads every row anyway here).
    """
    return (
        f"WITH found AS MATERIALIZED ({query}) "
        f"SELECT found.*, (SELECT count(*) FROM found) AS total FROM found "
        f"ORDER BY {order} LIMIT %(limit)s"
    )


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


def _steered(conn: psycopg.Connection, settings: tuple[str, ...], query: str, params: dict):
    """``_rows`` with the planner settings off for this one query."""
    for setting in settings:
        conn.execute(f"SET {setting} = off")
    # Not reset in a ``finally``: after a failed query the transaction is aborted, and a RESET
    # would fail with "current transaction is aborted", hiding the query's own error (a
    # statement timeout, say).
    rows = _rows(conn, query, params)
    for setting in settings:
        conn.execute(f"RESET {setting}")
    return rows


# --------------------------------------------------------------------------- ledger

# Moves against their lines in one pass, in id order: the moves' primary key and the lines'
# move_id index are walked side by side (a merge join), so each move's group is complete when
# the walk leaves it and is aggregated at once; no hash table of every move (at ten million
# lines the hashed groups spilled to disk) and nothing is sorted. Each group gives the move's
# balance, its line count and its lines out of step with it; one aggregate over the groups
# keeps the totals and only the moves that may be a finding (posted with a balance or without
# a line, or in a state Odoo does not know), whose fields are joined afterwards. A line whose
# move is missing belongs to no group: such lines show as fewer lines matched to moves than the
# table holds. With a company filter the lines of other companies still join (a move is
# lineless only without any line) but are left out of the sums and counts.
DRIFT = """(l.parent_state IS DISTINCT FROM m.state
            OR l.journal_id IS DISTINCT FROM m.journal_id
            OR l.company_id IS DISTINCT FROM m.company_id
            OR l.date IS DISTINCT FROM m.date OR l.move_name IS DISTINCT FROM m.name)"""
# A move whose state is none of Odoo's (a state typed 'Posted') is in no ledger check's scope:
# it is a finding itself, kept with the candidates.
KNOWN_STATES = "('draft', 'posted', 'cancel')"
# Whether a move may be a finding is decided once per group, where its sums are at hand, and
# read by the three array aggregates that keep the candidates.
CANDIDATE = (
    "(m.state = 'posted' AND (sum(l.balance) FILTER (WHERE true {line_cond}) <> 0 "
    f"OR count(l.id) = 0)) OR coalesce(m.state, '') NOT IN {KNOWN_STATES}"
)

MOVES_LINES_SQL = f"""
WITH per_move AS (
    SELECT m.id AS move_id, m.state, count(l.id) AS n_lines,
           sum(l.balance) FILTER (WHERE true {{line_cond}}) AS balance,
           count(l.id) FILTER (WHERE true {{line_cond}}) AS matched,
           count(l.id) FILTER (WHERE {DRIFT} {{line_cond}}) AS drifted,
           {CANDIDATE} AS candidate
    FROM account_move m LEFT JOIN account_move_line l ON l.move_id = m.id
    GROUP BY m.id
), totals AS (
    SELECT coalesce(sum(matched), 0) AS matched, coalesce(sum(drifted), 0) AS drifted,
           array_agg(move_id) FILTER (WHERE candidate) AS ids,
           array_agg(balance) FILTER (WHERE candidate) AS balances,
           array_agg(n_lines) FILTER (WHERE candidate) AS counts
    FROM per_move
), found AS (
    SELECT f.move_id, f.balance, f.n_lines, m.name, m.journal_id, m.company_id, m.state
    FROM totals t
    CROSS JOIN LATERAL unnest(t.ids, t.balances, t.counts) AS f(move_id, balance, n_lines)
    JOIN account_move m ON m.id = f.move_id
), unbalanced AS (
    SELECT f.move_id, f.name, f.journal_id, round(f.balance, cur.decimal_places) AS imbalance
    FROM found f
    LEFT JOIN res_company co ON co.id = f.company_id
    LEFT JOIN res_currency cur ON cur.id = co.currency_id
    WHERE f.state = 'posted' AND round(f.balance, coalesce(cur.decimal_places, 2)) <> 0
), lineless AS (
    SELECT f.move_id, f.name, f.journal_id FROM found f
    WHERE f.state = 'posted' AND f.n_lines = 0 {{move_filter}}
), unknown AS (
    SELECT f.move_id, f.name, f.journal_id, f.state FROM found f
    WHERE coalesce(f.state, '') NOT IN {KNOWN_STATES} {{move_filter}}
)
SELECT 'unbalanced' AS kind, (SELECT count(*) FROM unbalanced) AS total, u.*, NULL AS state
FROM (SELECT * FROM unbalanced ORDER BY move_id LIMIT %(limit)s) u
UNION ALL
SELECT 'lineless', (SELECT count(*) FROM lineless), z.*, NULL, NULL
FROM (SELECT * FROM lineless ORDER BY move_id LIMIT %(limit)s) z
UNION ALL
SELECT 'unknown', (SELECT count(*) FROM unknown), k.move_id, k.name, k.journal_id, NULL, k.state
FROM (SELECT * FROM unknown ORDER BY move_id LIMIT %(limit)s) k
UNION ALL
SELECT 'drifted', (SELECT drifted FROM totals), NULL, NULL, NULL, NULL, NULL
UNION ALL
SELECT 'matched', (SELECT matched FROM totals), NULL, NULL, NULL, NULL, NULL
UNION ALL
SELECT 'lines', (SELECT count(*) FROM account_move_line l WHERE true {{line_cond}}),
       NULL, NULL, NULL, NULL, NULL
"""

# The walk in id order is what the pass is written for, but the planner prices a hash join and
# a hash aggregate lower (it does not see that the groups then spill); it is steered to the
# walk unless the statistics say the lines are not stored in move order, where the walk would
# be random reads.
INDEX_ORDER = ("enable_hashjoin", "enable_hashagg")
CORRELATION_SQL = """
SELECT correlation FROM pg_stats
WHERE schemaname = current_schema() AND tablename = 'account_move_line' AND attname = 'move_id'
"""


# The company an account or a journal belongs to may post on it, and so may that company's
# branches (17+: a branch's parent_path starts with its parent's); 18 lists an account's
# companies in a table instead of a column. These pairs are a few rows per account and journal.
ALLOWED_SQL = """
company AS (
    SELECT id, {path} AS path FROM res_company
), allowed_account AS (
    SELECT DISTINCT o.account_id, c.id AS company_id
    FROM ({account_companies}) o
    JOIN company p ON p.id = o.company_id
    JOIN company c ON c.path LIKE p.path || '%%'
), allowed_journal AS (
    SELECT DISTINCT j.id AS journal_id, c.id AS company_id
    FROM account_journal j
    JOIN company p ON p.id = j.company_id
    JOIN company c ON c.path LIKE p.path || '%%'
)"""


def _allowed_joins(alias: str) -> str:
    return (
        f" LEFT JOIN allowed_account aa ON aa.account_id = {alias}.account_id"
        f" AND aa.company_id = {alias}.company_id"
        f" LEFT JOIN allowed_journal aj ON aj.journal_id = {alias}.journal_id"
        f" AND aj.company_id = {alias}.company_id"
    )


def _not_belonging(alias: str) -> str:
    """Rows (lines, or groups of lines) on an account or journal their company may not use."""
    return (
        f"(({alias}.account_id IS NOT NULL AND aa.account_id IS NULL)"
        f" OR ({alias}.journal_id IS NOT NULL AND aj.journal_id IS NULL))"
    )


class AmountRule(NamedTuple):
    """A rule on a posted line's own amounts, and the CHECK constraint Odoo keeps it with."""

    condition: str  # true when the line breaks the rule
    reason: str
    constraint: str | None = None
    columns: tuple[str, ...] = ()  # the constraint's columns, sorted


# Two of the rules are CHECK constraints Odoo creates. A CHECK that is present and validated
# holds on every row (PostgreSQL enforces it on every write, COPY and restores included, and
# disabling triggers does not lift it), so its rule is run on the lines only where the
# constraint is missing, NOT VALID or on other columns. Nothing in the database keeps balance
# equal to debit minus credit: that rule always runs.
# Limitation: a constraint of Odoo's name and columns whose expression was rewritten is trusted.
AMOUNT_RULES = (
    AmountRule("l.balance IS DISTINCT FROM l.debit - l.credit",
               "balance differs from debit minus credit"),
    AmountRule("(l.debit <> 0 AND l.credit <> 0)", "debit and credit both set",
               "account_move_line_check_credit_debit", ("credit", "debit", "display_type")),
    AmountRule("((l.balance < 0 AND l.amount_currency > 0) "
               "OR (l.balance > 0 AND l.amount_currency < 0))",
               "amount in currency of the other sign than the balance",
               "account_move_line_check_amount_currency_balance_sign",
               ("amount_currency", "balance", "display_type")),
)  # fmt: skip
CONSTRAINTS_SQL = """
SELECT c.conname, c.convalidated,
       (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
        WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)) AS columns
FROM pg_constraint c
WHERE c.conrelid = 'account_move_line'::regclass AND c.contype = 'c' AND c.conname = ANY(%s)
"""

# Per company over the posted lines, summed first per company, account and journal (a few
# thousand groups, hashed), then per company: the company and currency joins see one row per
# company, and the pairs an account or journal allows are looked up once per group, not once
# per line. The same scan counts the lines whose amounts break a rule that no constraint holds.
TRIAL_SQL = f"""
WITH {ALLOWED_SQL}, grouped AS (
    SELECT l.company_id, l.account_id, l.journal_id, sum(l.debit) AS debit,
           sum(l.credit) AS credit, sum(l.balance) AS balance, count(*) AS n_lines,
           count(*) FILTER (WHERE {{amounts_wrong}} OR (l.account_id IS NULL {{accountable}}))
               AS wrong
    FROM account_move_line l
    WHERE l.parent_state = 'posted' {{line_filter}}
    GROUP BY l.company_id, l.account_id, l.journal_id
), per_company AS (
    SELECT g.company_id, sum(g.debit) AS debit, sum(g.credit) AS credit,
           sum(g.balance) AS balance,
           sum(g.wrong) + coalesce(sum(g.n_lines) FILTER (WHERE {_not_belonging("g")}), 0)
               AS wrong_lines
    FROM grouped g {_allowed_joins("g")}
    GROUP BY g.company_id
)
SELECT t.company_id, co.name AS company, cur.decimal_places AS decimals,
       t.debit, t.credit, t.balance, t.wrong_lines
FROM per_company t
LEFT JOIN res_company co ON co.id = t.company_id
LEFT JOIN res_currency cur ON cur.id = co.currency_id
ORDER BY t.company_id
"""

# The wrong lines themselves, each with its first reason, only when the scan counted some.
WRONG_LINES_SQL = f"""
WITH {ALLOWED_SQL}, found AS MATERIALIZED (
    SELECT l.id AS line_id, l.move_id, l.company_id,
           CASE {{reasons}}
                WHEN l.account_id IS NULL OR acc.id IS NULL THEN 'account missing'
                WHEN l.journal_id IS NOT NULL AND aj.journal_id IS NULL
                  THEN 'journal of another company'
                ELSE 'account of another company' END AS reason
    FROM account_move_line l {_allowed_joins("l")}
    LEFT JOIN account_account acc ON acc.id = l.account_id
    WHERE l.parent_state = 'posted' {{line_filter}}
      AND ({{amounts_wrong}} OR (l.account_id IS NULL {{accountable}}) OR {_not_belonging("l")})
)
SELECT found.*, (SELECT count(*) FROM found) AS total FROM found
ORDER BY line_id LIMIT %(limit)s
"""


def _trial_format(ctx: Context, rules: list[AmountRule]) -> dict[str, str]:
    """The parts of the trial balance's queries that depend on the version's columns, and the
    amount rules to run (``_rules_to_run``)."""
    path = "id::text || '/'"
    if ctx.has("res_company", "parent_path"):
        path = f"coalesce(nullif(parent_path, ''), {path})"
    if ctx.has("account_account", "company_id"):
        accounts = "SELECT a.id AS account_id, a.company_id FROM account_account a"
    elif ctx.has("account_account_res_company_rel", "res_company_id"):
        accounts = (
            "SELECT r.account_account_id AS account_id, r.res_company_id AS company_id "
            "FROM account_account_res_company_rel r"
        )
    else:
        # Limitation: without the accounts' companies only a missing account can be seen.
        accounts = (
            "SELECT a.id AS account_id, c.id AS company_id FROM account_account a "
            "CROSS JOIN res_company c"
        )
    accountable = "AND false"
    if ctx.has("account_move_line", "display_type"):
        accountable = "AND coalesce(l.display_type, '') NOT IN ('line_section', 'line_note')"
    reasons = " ".join(f"WHEN {r.condition} THEN '{r.reason}'" for r in rules)
    return {
        "path": path, "account_companies": accounts, "accountable": accountable,
        "reasons": reasons, "line_filter": ctx.company_filter("l"),
        "amounts_wrong": " OR ".join(r.condition for r in rules),
    }  # fmt: skip


def _rules_to_run(conn: psycopg.Connection) -> tuple[list[AmountRule], list[str]]:
    """The amount rules no validated constraint holds, and a note for each such constraint."""
    names = [r.constraint for r in AMOUNT_RULES if r.constraint]
    found = {row[0]: row[1:] for row in conn.execute(CONSTRAINTS_SQL, (names,)).fetchall()}
    rules, notes = [], []
    for rule in AMOUNT_RULES:
        if rule.constraint is None:
            rules.append(rule)
            continue
        if rule.constraint not in found:
            problem = "is missing"
        else:
            validated, columns = found[rule.constraint]
            if not validated:
                problem = "is NOT VALID"
            elif tuple(columns or ()) != rule.columns:
                problem = f"is on ({', '.join(columns or ())}), not ({', '.join(rule.columns)})"
            else:
                continue
        rules.append(rule)
        notes.append(f"the CHECK constraint {rule.constraint} {problem}: its rule was run on "
                     "every posted line")  # fmt: skip
    return rules, notes


ORPHAN_SQL = limited(
    """
SELECT l.id AS line_id, l.move_id, l.parent_state,
       CASE WHEN m.id IS NULL THEN 'move missing'
            WHEN l.parent_state IS DISTINCT FROM m.state THEN 'state differs from the move'
            WHEN l.journal_id IS DISTINCT FROM m.journal_id THEN 'journal differs from the move'
            WHEN l.company_id IS DISTINCT FROM m.company_id THEN 'company differs from the move'
            WHEN l.date IS DISTINCT FROM m.date THEN 'date differs from the move'
            ELSE 'number differs from the move' END AS reason
FROM account_move_line l
LEFT JOIN account_move m ON m.id = l.move_id
WHERE (m.id IS NULL OR l.parent_state IS DISTINCT FROM m.state
       OR l.journal_id IS DISTINCT FROM m.journal_id OR l.company_id IS DISTINCT FROM m.company_id
       OR l.date IS DISTINCT FROM m.date OR l.move_name IS DISTINCT FROM m.name) {line_filter}
""",
    "line_id",
)


def _found(rows: list[dict]) -> tuple[int, list[dict]]:
    """(total, samples) from rows carrying a ``total`` window count."""
    total = rows[0]["total"] if rows else 0
    return total, [{k: v for k, v in r.items() if k != "total"} for r in rows]


def ledger_checks(ctx: Context, conn: psycopg.Connection) -> list[CheckResult]:
    """ledger.unbalanced_moves (Odoo's rule: the lines of a posted move sum to zero once rounded
    to the company currency's decimals, and a posted move has lines; a move's state is one Odoo
    knows) and ledger.orphan_lines (lines without their move, or out of step with it), from one
    pass over the lines."""
    started = time.monotonic()
    conn.execute(f"SET work_mem = '{WORK_MEM}'")
    limit = ctx.request.sample_limit
    params = {**ctx.params, "limit": limit}
    line_cond = " AND l.company_id = ANY(%(companies)s)" if ctx.request.companies else ""
    query = MOVES_LINES_SQL.format(line_cond=line_cond, move_filter=ctx.company_filter("f"))
    totals: dict[str, int] = {"unbalanced": 0, "lineless": 0, "unknown": 0, "drifted": 0,
                              "matched": 0, "lines": 0}  # fmt: skip
    samples: dict[str, list[dict]] = {"unbalanced": [], "lineless": [], "unknown": []}
    for r in _steered(conn, _lines_in_move_order(conn), query, params):
        kind = r["kind"]
        totals[kind] = int(r["total"] or 0)
        if kind == "unbalanced":
            samples[kind].append({k: r[k] for k in ("move_id", "name", "journal_id", "imbalance")})
        elif kind == "lineless":
            samples[kind].append(
                {"move_id": r["move_id"], "name": r["name"], "journal_id": r["journal_id"],
                 "problem": "posted move without lines"}
            )  # fmt: skip
        elif kind == "unknown":
            samples[kind].append(
                {"move_id": r["move_id"], "name": r["name"], "journal_id": r["journal_id"],
                 "problem": f"state {r['state']!r} is none of draft, posted, cancel"}
            )  # fmt: skip
    unbalanced, lineless, unknown = totals["unbalanced"], totals["lineless"], totals["unknown"]
    detail = (
        f"{unbalanced} posted moves whose lines do not sum to zero at the company currency's "
        f"precision, {lineless} posted moves without lines, {unknown} moves in a state Odoo "
        "does not know (no ledger check sees them as posted)"
    )
    found = samples["unbalanced"] + samples["lineless"] + samples["unknown"]
    out = [
        result("ledger.unbalanced_moves", unbalanced + lineless + unknown, found[:limit], detail,
               started)
    ]  # fmt: skip
    drifted, orphans = 0, []
    # Lines out of step with their move, or lines matched to no move (fewer matched than held):
    # the lines themselves, named with their reason (only when there are any).
    if totals["drifted"] or totals["matched"] != totals["lines"]:
        drifted, orphans = _found(
            _rows(conn, ORPHAN_SQL.format(line_filter=ctx.company_filter("l")), params)
        )
    detail = (
        f"{drifted} lines whose move is missing or whose stored copy of the move's state, "
        "journal, company, date or number differs from the move"
    )
    out.append(result("ledger.orphan_lines", drifted, orphans, detail, started))
    return out


def _lines_in_move_order(conn: psycopg.Connection) -> tuple[str, ...]:
    """The planner settings that steer the ledger pass to the walk in move order: all of them
    unless the statistics say the lines are not stored in move order (none then)."""
    row = conn.execute(CORRELATION_SQL).fetchone()
    if row is not None and row[0] is not None and row[0] < 0.5:
        return ()
    return INDEX_ORDER


def trial_balance_check(ctx: Context, conn: psycopg.Connection) -> CheckResult:
    """ledger.trial_balance: per company, posted debits equal posted credits, and the stored
    balances agree with debit minus credit; and each posted line on its own: its amounts agree
    with one another, its account exists, and its account and journal are its company's."""
    started = time.monotonic()
    rules, notes = _rules_to_run(conn)
    fmt = _trial_format(ctx, rules)
    rows = _rows(conn, TRIAL_SQL.format(**fmt), ctx.params)
    samples = []
    for r in rows:
        quant = Decimal(1).scaleb(-(r["decimals"] if r["decimals"] is not None else 2))
        debit, credit, balance = (r[k] or Decimal(0) for k in ("debit", "credit", "balance"))
        difference = (debit - credit).quantize(quant)
        arithmetic = (balance - (debit - credit)).quantize(quant)
        if difference != 0 or arithmetic != 0:
            samples.append(
                {"company_id": r["company_id"], "company": r["company"], "debit": str(debit),
                 "credit": str(credit), "difference": str(difference),
                 "balance_minus_debit_credit": str(arithmetic)}
            )  # fmt: skip
    companies, lines = len(samples), 0
    if any(r["wrong_lines"] for r in rows):
        params = {**ctx.params, "limit": ctx.request.sample_limit}
        lines, found = _found(_rows(conn, WRONG_LINES_SQL.format(**fmt), params))
        samples += found
    detail = "; ".join(
        [f"{companies} of {len(rows)} companies whose posted debits and credits differ (or "
         "whose balances disagree with debit minus credit)",
         f"{lines} posted lines whose amounts disagree with one another (balance, debit, credit, "
         "amount in currency), or whose account is missing or whose account or journal is not "
         "their company's", *notes]
    )  # fmt: skip
    limit = ctx.request.sample_limit
    return result("ledger.trial_balance", companies + lines, samples[:limit], detail, started)


# --------------------------------------------------------------------------- numbering

# The names held twice are found by an aggregate that only counts (no array per name); the
# moves holding each are looked up for the samples only, by the unique index where Odoo has
# one. The count is grouped over the moves sorted by journal and name (SORTED_NAMES): hashed,
# three million names spilled the table to disk and cost a quarter more; at one million
# lines the two are even.
DUPLICATES_SQL = """
WITH found AS MATERIALIZED (
    SELECT m.journal_id, m.name COLLATE "C" AS name
    FROM account_move m
    WHERE m.state = 'posted' AND m.name IS NOT NULL AND m.name <> '/' {move_filter}
    GROUP BY m.journal_id, m.name COLLATE "C"
    HAVING count(*) > 1
)
SELECT d.journal_id, j.code AS journal, d.name,
       (SELECT array_agg(m.id ORDER BY m.id) FROM account_move m
        WHERE m.name = d.name COLLATE "default" AND m.journal_id = d.journal_id
          AND m.state = 'posted' {move_filter}) AS move_ids,
       (SELECT count(*) FROM found) AS total
FROM (SELECT * FROM found ORDER BY journal_id, name LIMIT %(limit)s) d
JOIN account_journal j ON j.id = d.journal_id
ORDER BY d.journal_id, d.name
"""

SORTED_NAMES = ("enable_hashagg",)

# The numbers issued per journal and prefix, in number order (one sort of the moves): a number
# more than one past its predecessor ends a hole; a number equal to its predecessor was issued
# twice, which costs the pass nothing to notice. Only for such numbers are the moves looked up
# (by the sequence index, one probe each): two posted moves under different names hold one
# number (``0002`` and ``002``), a duplicate that the names alone do not show. The holes come
# first (at most 1000 rows), then those numbers.
GAPS_SQL = """
WITH issued AS (
    SELECT m.journal_id, m.sequence_prefix, m.sequence_number
    FROM account_move m
    WHERE m.name IS NOT NULL AND m.name <> '/' AND m.sequence_number > 0
      AND (m.state IN ('posted', 'cancel') OR m.posted_before) {move_filter}
), numbered AS (
    SELECT journal_id, sequence_prefix, sequence_number,
           lag(sequence_number) OVER (PARTITION BY journal_id, sequence_prefix COLLATE "C"
                                      ORDER BY sequence_number) AS prev
    FROM issued
), found AS MATERIALIZED (
    SELECT journal_id, sequence_prefix, sequence_number, prev
    FROM numbered
    WHERE sequence_number > coalesce(prev, 0) + 1 OR sequence_number = prev
), holes AS (
    SELECT journal_id, sequence_prefix, coalesce(prev, 0) + 1 AS first_missing,
           sequence_number - 1 AS last_missing
    FROM found WHERE sequence_number IS DISTINCT FROM prev
), reused AS (
    SELECT r.journal_id, r.sequence_prefix, r.sequence_number, held.move_ids, held.names
    FROM (SELECT DISTINCT journal_id, sequence_prefix, sequence_number
          FROM found WHERE sequence_number = prev) r
    CROSS JOIN LATERAL (
        SELECT array_agg(m.id ORDER BY m.id) AS move_ids,
               array_agg(m.name ORDER BY m.id) AS names, count(DISTINCT m.name) AS n_names
        FROM account_move m
        WHERE m.journal_id = r.journal_id AND m.sequence_prefix = r.sequence_prefix
          AND m.sequence_number = r.sequence_number AND m.state = 'posted' {move_filter}
    ) held
    WHERE held.n_names > 1
)
(SELECT 'hole' AS kind, h.journal_id, j.code AS journal, h.sequence_prefix AS prefix,
        h.first_missing, h.last_missing, NULL::integer AS number, NULL::integer[] AS move_ids,
        NULL::varchar[] AS names, count(*) OVER () AS total,
        sum(h.last_missing - h.first_missing + 1) OVER () AS missing
 FROM holes h JOIN account_journal j ON j.id = h.journal_id
 ORDER BY h.journal_id, h.sequence_prefix, h.first_missing
 LIMIT 1000)
UNION ALL
(SELECT 'reused', r.journal_id, j.code, r.sequence_prefix, NULL, NULL, r.sequence_number,
        r.move_ids, r.names, count(*) OVER (), NULL
 FROM reused r JOIN account_journal j ON j.id = r.journal_id
 ORDER BY r.journal_id, r.sequence_prefix, r.sequence_number
 LIMIT %(limit)s)
"""

MAX_LISTED_NUMBERS = 50


def sequence_checks(ctx: Context, conn: psycopg.Connection) -> list[CheckResult]:
    """sequence.duplicates and sequence.gaps over account_move."""
    # Limitation: gaps use the stored sequence_prefix/sequence_number; a move renamed by SQL
    # without updating them is not re-split from its name, and name/date alignment and
    # sequence_override_regex journals are not checked.
    started = time.monotonic()
    limit = ctx.request.sample_limit
    params = {**ctx.params, "limit": limit}
    conn.execute(f"SET work_mem = '{WORK_MEM}'")
    query = DUPLICATES_SQL.format(move_filter=ctx.company_filter("m"))
    rows = _steered(conn, SORTED_NAMES, query, params)
    names = rows[0]["total"] if rows else 0
    samples = [{k: v for k, v in r.items() if k != "total"} for r in rows]
    index_note = _unique_index_note(ctx, conn)

    # The duplicated numbers come from the gaps pass: the duplicates' time includes it.
    gaps_started = time.monotonic()
    rows = _rows(conn, GAPS_SQL.format(move_filter=ctx.company_filter("m")), params)
    holes = [r for r in rows if r["kind"] == "hole"]
    reused = [r for r in rows if r["kind"] == "reused"]
    numbers = reused[0]["total"] if reused else 0
    samples += [
        {"journal_id": r["journal_id"], "journal": r["journal"], "prefix": r["prefix"],
         "number": r["number"], "names": r["names"], "move_ids": r["move_ids"]}
        for r in reused
    ]  # fmt: skip
    detail = (
        f"{names} names held by more than one posted move of the same journal, {numbers} "
        "numbers (journal, prefix, number) held by posted moves under different names" + index_note
    )
    gaps = _gaps_result(holes, limit, gaps_started)
    return [result("sequence.duplicates", names + numbers, samples[:limit], detail, started), gaps]


def _gaps_result(rows: list[dict], limit: int, started: float) -> CheckResult:
    """sequence.gaps from the holes of GAPS_SQL, grouped per journal and prefix."""
    missing = int(rows[0]["missing"]) if rows else 0
    ranges = rows[0]["total"] if rows else 0
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
    return result("sequence.gaps", missing, samples, detail, started)


# What stands in place of Odoo's unique index on posted names: its validity, whether it is
# unique, and its key columns (an expression column has no name).
UNIQUE_NAME_INDEX_SQL = """
SELECT i.indisvalid, i.indisunique, i.indrelid = 'account_move'::regclass AS on_moves,
       (SELECT array_agg(a.attname::text ORDER BY k.n)
        FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, n)
        LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS columns
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = 'account_move_unique_name' AND c.relnamespace = current_schema()::regnamespace
"""
UNIQUE_NAME_COLUMNS = ("name", "journal_id")


def _unique_index_note(ctx: Context, conn: psycopg.Connection) -> str:
    """What the detail says of the index that keeps posted names unique per journal: missing,
    invalid, not unique, or unique on other columns (each lets duplicates in)."""
    row = conn.execute(UNIQUE_NAME_INDEX_SQL).fetchone()
    if row is None:
        if ctx.version >= 17:
            return "; the unique index account_move_unique_name is missing"
        return "; Odoo 16 enforces unique names in Python only (no unique index)"
    valid, unique, on_moves, columns = row
    columns = [c or "(expression)" for c in columns or ()]
    problems = []
    if not on_moves:
        problems.append("is not on account_move")
    if not valid:
        problems.append("is INVALID")
    if not unique:
        problems.append("is not unique")
    elif sorted(columns) != sorted(UNIQUE_NAME_COLUMNS):
        problems.append(
            f"is unique on ({', '.join(columns)}), not ({', '.join(UNIQUE_NAME_COLUMNS)})"
        )
    if not problems:
        return ""
    return "; the index account_move_unique_name " + " and ".join(problems)


# --------------------------------------------------------------------------- reconciliation

# Each side of a partial is looked up by the lines' primary key (two probes per partial, steered
# by PROBE_SIDES): two hash joins against full scans of the lines cost more than twice as much
# at ten million lines, where the partials are a tenth of the lines. (A semi-join on the ids
# the partials name misleads the planner, which cannot count them through the union, into one
# index probe per line instead.)
PARTIALS_SQL = limited(
    """
SELECT p.id AS partial_id, p.debit_move_id, p.credit_move_id,
       CASE WHEN d.id IS NULL OR c.id IS NULL THEN 'line missing'
            WHEN p.amount < 0 THEN 'negative amount'
            WHEN d.account_id IS DISTINCT FROM c.account_id THEN 'lines on different accounts'
            WHEN d.parent_state <> 'posted' OR c.parent_state <> 'posted' THEN 'line not posted'
            ELSE 'full reconcile differs from its lines' END AS reason
FROM account_partial_reconcile p
LEFT JOIN account_move_line d ON d.id = p.debit_move_id
LEFT JOIN account_move_line c ON c.id = p.credit_move_id
WHERE (d.id IS NULL OR c.id IS NULL OR p.amount < 0 OR d.account_id IS DISTINCT FROM c.account_id
       OR d.parent_state <> 'posted' OR c.parent_state <> 'posted'
       OR p.full_reconcile_id IS DISTINCT FROM d.full_reconcile_id
       OR p.full_reconcile_id IS DISTINCT FROM c.full_reconcile_id) {partial_filter}
""",
    "partial_id",
)

# What the partials take from each line is summed once, signed (a line's residual is its
# balance minus what it gives as debit side plus what it takes as credit side): two numeric
# sums per line instead of four. The recomputed residuals are evaluated once per line in a
# subquery kept apart from the filter (OFFSET 0), rather than once per use in the filter, and
# each currency's unit is computed per currency, not per line. A sample names the first field that
# disagrees (company residual, residual in currency, reconciled flag) with its stored and
# expected values, as text.
RESIDUALS_SQL = limited(
    """
WITH agg AS (
    SELECT line_id, sum(amount) AS net, sum(amount_currency) AS net_currency
    FROM (
        SELECT debit_move_id AS line_id, -amount AS amount,
               -debit_amount_currency AS amount_currency
        FROM account_partial_reconcile
        UNION ALL
        SELECT credit_move_id, amount, credit_amount_currency FROM account_partial_reconcile
    ) sides
    GROUP BY line_id
), currency AS (
    SELECT id, decimal_places, power(10::numeric, -decimal_places) AS unit FROM res_currency
), expected AS (
    SELECT l.id, l.move_id, l.move_name, l.amount_residual, l.amount_residual_currency,
           l.reconciled,
           round(l.balance + coalesce(a.net, 0), cc.decimal_places) AS residual,
           round(l.amount_currency + coalesce(a.net_currency, 0), lc.decimal_places)
               AS residual_currency,
           cc.unit, lc.unit AS unit_currency
    FROM account_move_line l
    JOIN account_account acc ON acc.id = l.account_id
    JOIN currency cc ON cc.id = l.company_currency_id
    JOIN currency lc ON lc.id = l.currency_id
    LEFT JOIN agg a ON a.line_id = l.id
    WHERE (acc.reconcile OR acc.account_type IN ('asset_cash', 'liability_credit_card'))
      {line_filter}
    OFFSET 0
), wrong AS (
    SELECT *,
           CASE WHEN abs(amount_residual - residual) > unit THEN 'amount_residual'
                WHEN abs(amount_residual_currency - residual_currency) > unit_currency
                  THEN 'amount_residual_currency'
                ELSE 'reconciled' END AS field
    FROM expected
    WHERE abs(amount_residual - residual) > unit
       OR abs(amount_residual_currency - residual_currency) > unit_currency
       OR reconciled IS DISTINCT FROM (residual = 0 AND residual_currency = 0)
)
SELECT id AS line_id, move_id, move_name, field,
       CASE field WHEN 'amount_residual' THEN amount_residual::text
                  WHEN 'amount_residual_currency' THEN amount_residual_currency::text
                  ELSE reconciled::text END AS stored,
       CASE field WHEN 'amount_residual' THEN residual::text
                  WHEN 'amount_residual_currency' THEN residual_currency::text
                  ELSE (residual = 0 AND residual_currency = 0)::text END AS expected,
       CASE field WHEN 'amount_residual'
                    THEN 'residual differs from balance minus its reconciliations'
                  WHEN 'amount_residual_currency'
                    THEN 'residual in currency differs from its reconciliations'
                  ELSE 'reconciled flag disagrees with the residual' END AS reason
FROM wrong
""",
    "line_id",
)

FULL_SQL = limited(
    """
SELECT l.full_reconcile_id, round(sum(l.balance), min(cur.decimal_places)) AS imbalance,
       bool_and(l.reconciled) AS all_reconciled
FROM account_move_line l JOIN res_currency cur ON cur.id = l.company_currency_id
WHERE l.full_reconcile_id IS NOT NULL {line_filter}
GROUP BY l.full_reconcile_id
HAVING round(sum(l.balance), min(cur.decimal_places)) <> 0 OR NOT bool_and(l.reconciled)
""",
    "full_reconcile_id",
)


# The planner's choices the reconciliation queries are steered away from: hash joins and merge
# joins for the partials' two sides (probes instead), and hash aggregates for all three (the
# sums per line and per full reconcile are grouped in index order: sides merged from the
# partials' two indexes, lines walked by full_reconcile_id; hashed, their groups spill to disk
# at ten million lines).
PROBE_SIDES = ("enable_hashjoin", "enable_mergejoin", "enable_hashagg")
GROUP_IN_ORDER = ("enable_hashagg",)
SCAN_ALL = ("enable_indexscan", "enable_bitmapscan")


def reconcile_check(ctx: Context, conn: psycopg.Connection) -> CheckResult:
    """reconcile.inconsistent: partials, stored residuals and full reconciles that disagree."""
    # Limitation: matching numbers, invoice payment states and totals (caches) and payments
    # versus their moves are not compared yet.
    started = time.monotonic()
    limit = ctx.request.sample_limit
    params = {**ctx.params, "limit": limit}
    conn.execute(f"SET work_mem = '{WORK_MEM}'")
    partial_filter = (
        ctx.company_filter("p") if ctx.has("account_partial_reconcile", "company_id") else ""
    )
    partials = _steered(
        conn, PROBE_SIDES, PARTIALS_SQL.format(partial_filter=partial_filter), params
    )
    line_filter = ctx.company_filter("l")
    residuals = _steered(
        conn, GROUP_IN_ORDER, RESIDUALS_SQL.format(line_filter=line_filter), params
    )
    fulls = _steered(conn, GROUP_IN_ORDER, FULL_SQL.format(line_filter=line_filter), params)
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
    # Every row is read for the counts, so a scan of each table; an index walk in id order
    # (which the planner takes for the LIMIT) visits the same rows in index order, slower.
    rows = _steered(
        conn, SCAN_ALL, " UNION ALL ".join(parts), {**ctx.params, "point": point, "limit": limit}
    )
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

# odoo-bin neutralize keeps the autovacuum job active on purpose; it is named, not counted.
# It deletes filestore files whose rows are gone, so a copy must never share production's
# filestore folder (a deployment check, not one this database can answer).
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
