"""hash_chain.broken: every hashed move recomputed from its rows and checked against its chain.

16 and 17 chain the moves of a journal by ``secure_sequence_number``. 18 chains per journal and
sequence prefix in number order (``$4$`` hashes) and keeps pre-upgrade moves (those with a
secure number) in their old journal-wide chain.

Each move's stored hash is checked as ``sha256(stored hash of its chain predecessor + its own
payload)``; the predecessor is found in SQL with a window over the moves, so the lines can be
streamed in ``move_id`` order (an index walk, no sort of the lines) and every move verified as
its lines arrive. Unlike Odoo's report, which stops a chain at its first mismatch, this walks
on from the stored hashes: one altered move is reported once, and a removed move shows as the
mismatch of its successor, so every damaged point of a chain is listed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import date
from hashlib import sha256

import psycopg
from psycopg import sql

from shared.finance.checks import WORK_MEM, result
from shared.finance.hashchain import (
    HashLine,
    HashMove,
    VersionedVerifier,
    _quote,
    chain_input,
)
from shared.finance.introspect import Context, connect
from shared.finance.models import CheckResult

log = logging.getLogger(__name__)

FETCH_ROWS = 20_000
STREAM_ROWS = 5_000
_FALSE = '"False"'
Q = '"'
# Localisation modules known to replace the hashed fields or the whole mechanism.
OVERRIDING_MODULES = ("l10n_pt_certification", "l10n_pt_account", "l10n_de_pos_cert")

# 16/17 chain per journal only (a hashed move without a secure number is a finding, never
# verified), so they need one window; each window is a sort of every hashed move.
PREVIOUS_16 = "lag(m.inalterable_hash) OVER legacy"
PREVIOUS_18 = (
    "CASE WHEN coalesce(m.secure_sequence_number, 0) <> 0 THEN lag(m.inalterable_hash) OVER legacy"
    " ELSE lag(m.inalterable_hash) OVER per_prefix END"
)

MOVES_SQL = """
SELECT m.id, m.name, to_char(m.date, 'YYYY-MM-DD'), m.journal_id, m.company_id, m.state,
       m.secure_sequence_number, m.sequence_prefix, m.inalterable_hash,
       {previous} AS previous_hash
FROM account_move m
WHERE {hashed} {move_filter}
WINDOW legacy AS (PARTITION BY m.journal_id, coalesce(m.secure_sequence_number, 0) <> 0
                  ORDER BY m.secure_sequence_number, m.id),
       per_prefix AS (PARTITION BY m.journal_id, m.sequence_prefix COLLATE "C"
                      ORDER BY m.secure_sequence_number NULLS LAST, m.sequence_number, m.id)
ORDER BY m.id
"""

LINES_SQL = """
SELECT l.move_id, l.id::text, l.name, l.debit::text, l.credit::text, l.account_id::text,
       l.partner_id::text, l.currency_id
FROM account_move_line l
WHERE l.move_id IN (SELECT m.id FROM account_move m WHERE {hashed} {move_filter})
ORDER BY l.move_id, l.id
"""

SECURE_SQL = """
SELECT journal_id, id, name, secure_sequence_number AS secure, previous
FROM (
    SELECT m.journal_id, m.id, m.name, m.secure_sequence_number,
           lag(m.secure_sequence_number) OVER (PARTITION BY m.journal_id
                                              ORDER BY m.secure_sequence_number, m.id) AS previous
    FROM account_move m
    WHERE coalesce(m.secure_sequence_number, 0) <> 0 {move_filter}
) s
WHERE secure_sequence_number = previous OR secure_sequence_number > coalesce(previous, 0) + 1
ORDER BY journal_id, secure_sequence_number
"""


def _money(text: str | None, decimals: int) -> str:
    """Odoo's ``"%.{d}f" % float(value)`` from numeric text. Numeric text that already has
    ``d`` decimals is that result as it stands (up to 15 digits, where a float holds it
    exactly); anything else goes through float as Odoo does."""
    if text is not None and len(text) <= 16:
        if decimals:
            if text[-decimals - 1 : -decimals] == ".":
                return text
        elif "." not in text:
            return text
    return f"{0.0 if text is None else float(text):.{decimals}f}"


def _text_key(row: tuple) -> str:
    return row[1] + "_"


def payload_v3(move_row: tuple, lines: list[tuple], decimals: dict[int, int]) -> str:
    """The version 3/4 hash input from streamed text rows (same bytes as hashchain.payload).

    ``lines`` come in id order; JSON key order is the text order of "<id>_", which is the
    same unless the ids differ in length."""
    if len(lines) > 1 and len(lines[0][1]) != len(lines[-1][1]):
        lines = sorted(lines, key=_text_key)
    parts = []
    append = parts.append
    get = decimals.get
    for _, lid, name, debit, credit, account, partner, currency in lines:
        d = get(currency, 2)
        # The common case inline: amounts already carrying the currency's decimals.
        if (
            d == 2
            and debit is not None
            and credit is not None
            and len(debit) <= 16
            and len(credit) <= 16
            and debit[-3:-2] == "."
            and credit[-3:-2] == "."
        ):
            pass
        else:
            debit, credit = _money(debit, d), _money(credit, d)
        key = ',"line_' + lid
        append(
            f'{key}_account_id":{_FALSE if account is None else Q + account + Q}'
            f'{key}_credit":"{credit}"{key}_debit":"{debit}"'
            f'{key}_name":{_FALSE if name is None else _quote(name)}'
            f'{key}_partner_id":{_FALSE if partner is None else Q + partner + Q}'
        )  # fmt: skip
    _, name, mdate, journal, company = move_row[:5]
    return (
        f'{{"company_id":{_FALSE if company is None else Q + str(company) + Q}'
        f',"date":"{mdate}"'
        f',"journal_id":{_FALSE if journal is None else Q + str(journal) + Q}'
        f'{"".join(parts)},"name":{_FALSE if name is None else _quote(name)}}}'
    )


class _Walk:
    """Verification state over all chains of one database."""

    def __init__(self, ctx: Context, decimals: dict[int, int]) -> None:
        self.ctx = ctx
        self.decimals = decimals
        self.findings: list[dict] = []
        self.count = 0
        self.moves = 0
        self.slow = 0
        self.versions: Counter = Counter()
        self.chains: set = set()
        # legacy chain -> version -> lowest secure number verified under it, to apply Odoo's
        # rule that a chain's version never goes back down.
        self.first_at: dict[int, dict[int, int]] = {}
        self.low_versions: list[tuple] = []

    def finding(self, kind: str, **extra) -> None:
        self.count += 1
        if len(self.findings) < self.ctx.request.sample_limit:
            self.findings.append({"kind": kind} | extra)

    def move(self, row: tuple, lines: list[tuple]) -> None:
        mid, name, mdate, journal, company, state, secure, prefix, stored, previous = row
        self.moves += 1
        legacy = bool(secure)
        if state != "posted" and stored:
            self.finding("hashed_move_not_posted", move_id=mid, name=name, journal_id=journal,
                         state=state)  # fmt: skip
        if stored is None:
            self.finding("secure_number_without_hash", move_id=mid, name=name,
                         journal_id=journal, secure_sequence_number=secure)  # fmt: skip
            return
        if self.ctx.version < 18 and not legacy:
            self.finding("hash_without_secure_number", move_id=mid, name=name, journal_id=journal)
            return
        self.chains.add(journal if legacy else (journal, prefix))
        version = self._verify(row, lines, legacy)
        if version is None:
            self.finding(
                "hash_mismatch", move_id=mid, name=name, journal_id=journal, prefix=prefix,
                secure_sequence_number=secure,
                reason="recomputed hash differs: the move, its lines, or its predecessor in the "
                "chain changed or is gone",
            )  # fmt: skip
            return
        self.versions[version] += 1
        if legacy:
            seen = self.first_at.setdefault(journal, {})
            if secure < seen.get(version, secure + 1):
                seen[version] = secure
            if version < 3:
                self.low_versions.append((journal, secure, version, mid, name))

    def _verify(self, row: tuple, lines: list[tuple], legacy: bool) -> int | None:
        stored, previous = row[8], row[9]
        text = chain_input(previous) + payload_v3(row, lines, self.decimals)
        digest = sha256(text.encode()).hexdigest()
        if stored.startswith("$4$"):
            return 4 if not legacy and stored[3:] == digest else None
        if stored == digest:
            return 3
        # Versions 1 and 2 (older chains) hash other fields or render money otherwise.
        self.slow += 1
        mid, name, mdate, journal, company = row[:5]
        move = HashMove(mid, name, date.fromisoformat(mdate), journal, company)
        hlines = [
            HashLine(int(r[1]), r[2], None if r[3] is None else float(r[3]),
                     None if r[4] is None else float(r[4]),
                     None if r[5] is None else int(r[5]), None if r[6] is None else int(r[6]),
                     self.decimals.get(r[7], 2))
            for r in lines
        ]  # fmt: skip
        return VersionedVerifier(2).matches(previous, move, hlines, stored)

    def version_rule(self) -> None:
        """A move verified under a lower version than an earlier move of its chain is corrupt
        by Odoo's reading (the version only goes up along a chain)."""
        for journal, secure, version, mid, name in self.low_versions:
            higher = [s for v, s in self.first_at.get(journal, {}).items() if v > version]
            if higher and min(higher) < secure:
                self.finding("hash_version_went_back", move_id=mid, name=name,
                             journal_id=journal, version=version)  # fmt: skip


def hash_chain_check(ctx: Context, conn: psycopg.Connection) -> CheckResult:
    """Recompute every hash; also secure numbering (gaps, duplicates) and 16/17 counters."""
    started = time.monotonic()
    conn.execute(f"SET work_mem = '{WORK_MEM}'")
    conn.execute("SET jit = off")
    decimals = dict(conn.execute("SELECT id, decimal_places FROM res_currency").fetchall())
    walk = _Walk(ctx, decimals)
    if ctx.version < 18:
        hashed = "(coalesce(m.secure_sequence_number, 0) <> 0 OR m.inalterable_hash IS NOT NULL)"
    else:
        hashed = "m.inalterable_hash IS NOT NULL"
    fmt = {"hashed": hashed, "move_filter": ctx.company_filter("m")}
    previous = PREVIOUS_16 if ctx.version < 18 else PREVIOUS_18
    _secure_numbers(ctx, conn, walk, fmt)
    _stream(ctx, conn, fmt, previous, walk)
    walk.version_rule()
    if ctx.version < 18 and ctx.has("account_journal", "secure_sequence_id"):
        _secure_counters(ctx, conn, walk)
    elapsed = time.monotonic() - started
    rate = walk.moves / elapsed if elapsed > 0 else 0.0
    versions = ", ".join(f"v{v}: {n}" for v, n in sorted(walk.versions.items())) or "none"
    detail = (
        f"{walk.moves} hashed moves in {len(walk.chains)} chains recomputed ({versions}) at "
        f"{rate:,.0f} moves/s; {walk.count} findings"
    )
    overriding = sorted(set(OVERRIDING_MODULES) & ctx.installed_modules)
    if overriding:
        detail += f"; WARNING: {', '.join(overriding)} installed, which may change what is hashed"
    # Limitation: a removed last move of a chain leaves no trace in the database itself
    # (16/17 show it through the secure counter only); external anchors are needed for that.
    return result("hash_chain.broken", walk.count, walk.findings, detail, started)


def _stream(ctx: Context, conn: psycopg.Connection, fmt: dict, previous: str, walk: _Walk) -> None:
    """Merge the moves (id order, with their predecessor's hash) with their lines.

    The lines come on a second connection sharing this transaction's snapshot, streamed in
    chunks, so the server produces them while Python hashes (the two overlap on two cores)."""
    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
    with (
        connect(ctx.request) as lines_conn,
        conn.cursor(name="drctl_hash_moves", binary=True) as moves,
        lines_conn.cursor(binary=True) as lines,
    ):
        lines_conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        lines_conn.execute("SET jit = off")
        moves.execute(MOVES_SQL.format(previous=previous, **fmt), ctx.params)
        move_iter = _rows(moves)
        current = next(move_iter, None)
        group: list[tuple] = []
        group_id = None
        for line in lines.stream(LINES_SQL.format(**fmt), ctx.params, size=STREAM_ROWS):
            if line[0] != group_id:
                if group_id is not None:
                    current = _advance(walk, move_iter, current, group_id, group)
                group_id, group = line[0], []
            group.append(line)
        if group_id is not None:
            current = _advance(walk, move_iter, current, group_id, group)
        while current is not None:  # hashed moves without any line
            walk.move(current, [])
            current = next(move_iter, None)
        lines_conn.rollback()


def _advance(walk: _Walk, move_iter, current, move_id: int, group: list[tuple]):
    while current is not None and current[0] < move_id:
        walk.move(current, [])
        current = next(move_iter, None)
    if current is not None and current[0] == move_id:
        walk.move(current, group)
        current = next(move_iter, None)
    return current


def _rows(cursor):
    while batch := cursor.fetchmany(FETCH_ROWS):
        yield from batch


def _secure_numbers(ctx: Context, conn: psycopg.Connection, walk: _Walk, fmt: dict) -> None:
    rows = conn.execute(SECURE_SQL.format(move_filter=fmt["move_filter"]), ctx.params).fetchall()
    for journal, mid, name, secure, previous in rows:
        if secure == previous:
            walk.finding("duplicate_secure_number", move_id=mid, name=name, journal_id=journal,
                         secure_sequence_number=secure)  # fmt: skip
        else:
            walk.finding(
                "secure_numbers_missing", journal_id=journal, first_missing=(previous or 0) + 1,
                last_missing=secure - 1, next_move_id=mid, next_name=name,
            )  # fmt: skip


def _secure_counters(ctx: Context, conn: psycopg.Connection, walk: _Walk) -> None:
    """16/17: the journal's no-gap counter must sit at the highest secure number plus one."""
    rows = conn.execute(
        "SELECT j.id, j.code, s.number_next, "
        " (SELECT max(m.secure_sequence_number) FROM account_move m WHERE m.journal_id = j.id)"
        " FROM account_journal j JOIN ir_sequence s ON s.id = j.secure_sequence_id"
        " WHERE j.secure_sequence_id IS NOT NULL" + ctx.company_filter("j"),
        ctx.params,
    ).fetchall()
    for journal_id, code, number_next, highest in rows:
        highest = highest or 0
        if number_next <= highest:
            walk.finding(
                "secure_counter_behind", journal_id=journal_id, journal=code,
                number_next=number_next, highest_secure_number=highest,
                reason="the next posting would reuse a secure number",
            )  # fmt: skip
        elif number_next > highest + 1:
            walk.finding(
                "hashed_moves_missing_at_end", journal_id=journal_id, journal=code,
                number_next=number_next, highest_secure_number=highest,
                reason="the counter says secure numbers up to number_next - 1 were issued",
            )  # fmt: skip
