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

The lines reach Python as one text per move (``string_agg`` of each line's raw fields, in no
particular order; Python sorts them): a quarter of the rows to decode, and the payload is built
from plain string splits. That fast path is only ever trusted when it reproduces the stored
hash; a move it does not reproduce (altered, a version 1 or 2 chain, a label holding one of the
separators, amounts that need float rounding) is verified again from its lines fetched one
column per field, exactly as before, so a false mismatch cannot come from the fast path and a
false match would need a sha256 collision.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from datetime import date
from hashlib import sha256

import psycopg
import psycopg.rows
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
# verified), so they need one window; each window is a sort of every hashed move. 16/17 also
# take the previous secure number from that window (the secure-number check); 18 keeps a
# separate query for it, its moves query leaving out moves without a hash.
PREVIOUS_16 = "lag(m.inalterable_hash) OVER legacy"
SECURE_16 = "lag(m.secure_sequence_number) OVER legacy"
PREVIOUS_18 = (
    "CASE WHEN coalesce(m.secure_sequence_number, 0) <> 0 THEN lag(m.inalterable_hash) OVER legacy"
    " ELSE lag(m.inalterable_hash) OVER per_prefix END"
)

MOVES_SQL = """
SELECT m.id, m.name, to_char(m.date, 'YYYY-MM-DD'), m.journal_id, m.company_id, m.state,
       m.secure_sequence_number, m.sequence_prefix, m.inalterable_hash,
       {previous} AS previous_hash, {previous_secure} AS previous_secure
FROM account_move m
WHERE {hashed} {move_filter}
WINDOW legacy AS (PARTITION BY m.journal_id, coalesce(m.secure_sequence_number, 0) <> 0
                  ORDER BY m.secure_sequence_number, m.id),
       per_prefix AS (PARTITION BY m.journal_id, m.sequence_prefix COLLATE "C"
                      ORDER BY m.secure_sequence_number NULLS LAST, m.sequence_number, m.id)
ORDER BY m.id
"""

# One row per move: its lines' fields, a line per \x1e and a field per \x1f (a NULL label as
# \x1d). concat() renders NULL as the empty string, which no id or amount is. No ORDER BY in
# the aggregate (that is a sort per move): Python sorts the lines.
SEP_LINE, SEP_FIELD, NULL_NAME = "\x1e", "\x1f", "\x1d"
BODIES_SQL = """
SELECT l.move_id,
       string_agg(concat(l.id, E'\\x1f', l.debit, E'\\x1f', l.credit, E'\\x1f', l.account_id,
                         E'\\x1f', l.partner_id, E'\\x1f', l.currency_id, E'\\x1f',
                         coalesce(l.name, E'\\x1d')), E'\\x1e')
FROM account_move_line l
WHERE l.move_id IN (SELECT m.id FROM account_move m WHERE {hashed} {move_filter})
GROUP BY l.move_id
ORDER BY l.move_id
"""

# The exact path, for the moves the fast path does not reproduce.
LINES_SQL = """
SELECT l.move_id, l.id::text, l.name, l.debit::text, l.credit::text, l.account_id::text,
       l.partner_id::text, l.currency_id
FROM account_move_line l
WHERE l.move_id = ANY(%(ids)s)
ORDER BY l.move_id, l.id
"""
RECHECK_BATCH = 5_000

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

# Posted moves that should carry a hash and do not. Odoo hashes a move when it is posted in a
# journal that locks posted entries (restrict_mode_hash_table): 16/17 draw its secure number
# then, 18 hashes every posted move of the prefix up to it. A journal's moves posted before
# hashing began keep none, legitimately. Which moves came after is read from the numbers Odoo
# issues in posting order: within a journal and prefix, an unhashed posted move numbered after
# the prefix's first hashed move; and a prefix with no hash at all in a journal that hashes,
# whose unhashed posted moves are dated after the journal's first hashed move (18 would have
# hashed the whole prefix at the first posting after hashing began). The chains are summed in
# one scan of the moves of those journals; the moves themselves are read only for the chains
# found, by the sequence index. A move with a secure number and no hash is its own finding.
# Limitation: Odoo keeps no posting time, so a move posted before hashing began whose number
# was issued after a move hashed later (16/17: a period's first move, numbered as a draft) is
# named, and one numbered or dated before the journal's first hashed move is taken as legitimate.
UNHASHED = (
    "m.state = 'posted' AND m.inalterable_hash IS NULL "
    "AND coalesce(m.secure_sequence_number, 0) = 0"
)
UNHASHED_CHAINS_SQL = f"""
WITH chains AS (
    SELECT m.journal_id, m.sequence_prefix,
           min(m.sequence_number) FILTER (WHERE m.inalterable_hash IS NOT NULL) AS first_hashed,
           min(m.date) FILTER (WHERE m.inalterable_hash IS NOT NULL) AS first_hashed_on,
           max(m.sequence_number) FILTER (WHERE m.inalterable_hash IS NULL) AS last_unhashed,
           max(m.date) FILTER (WHERE m.inalterable_hash IS NULL) AS last_unhashed_on
    FROM account_move m
    JOIN account_journal j ON j.id = m.journal_id AND j.restrict_mode_hash_table
    WHERE (m.inalterable_hash IS NOT NULL OR ({UNHASHED})) {{move_filter}}
    GROUP BY m.journal_id, m.sequence_prefix
), journals AS (
    SELECT journal_id, min(first_hashed_on) AS started FROM chains GROUP BY journal_id
)
SELECT c.journal_id, c.sequence_prefix, c.first_hashed, j.started
FROM chains c JOIN journals j ON j.journal_id = c.journal_id
WHERE c.last_unhashed > c.first_hashed
   OR (c.first_hashed IS NULL AND c.last_unhashed_on > j.started)
"""
UNHASHED_MOVES_SQL = f"""
WITH found AS MATERIALIZED (
    SELECT m.id, m.name, m.journal_id, m.sequence_prefix, m.sequence_number,
           c.first_hashed, c.started
    FROM unnest(%(journals)s::integer[], %(prefixes)s::varchar[], %(first)s::integer[],
                %(started)s::date[]) AS c(journal_id, prefix, first_hashed, started)
    JOIN account_move m ON m.journal_id = c.journal_id AND m.sequence_prefix = c.prefix
    WHERE {UNHASHED} {{move_filter}}
      AND (m.sequence_number > c.first_hashed OR (c.first_hashed IS NULL AND m.date > c.started))
)
SELECT found.*, (SELECT count(*) FROM found) AS total FROM found ORDER BY id LIMIT %(limit)s
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


_ZEROS = {d: f"{0:.{d}f}" for d in range(7)}


def _amount(text: str, decimals: int) -> str:
    """``_money`` for a field split from a body, where NULL is the empty string."""
    if text == "0" and decimals in _ZEROS:
        return _ZEROS[decimals]
    return _money(text or None, decimals)


def payload_from_body(move_row: tuple, body: str, decimals: dict[str, int]) -> str:
    """The version 3/4 hash input from one move's aggregated line text (BODIES_SQL), the same
    bytes as ``payload_v3``; ``decimals`` is keyed by the currency id as text.

    A label holding a separator splits wrongly and gives a text that does not reproduce the
    stored hash, so that move goes to the exact path (it never raises for it)."""
    parts = []
    append = parts.append
    get = decimals.get
    previous = ""
    in_order = True
    for text in body.split(SEP_LINE) if body else ():
        try:
            lid, debit, credit, account, partner, currency, name = text.split(SEP_FIELD, 6)
        except ValueError:  # a label holding \x1e: not this move's lines
            return ""
        d = get(currency, 2)
        # The common cases inline: amounts already carrying the currency's decimals.
        if d == 2:
            if debit[-3:-2] != "." or len(debit) > 16:
                debit = _amount(debit, 2)
            if credit[-3:-2] != "." or len(credit) > 16:
                credit = _amount(credit, 2)
        elif d == 0:
            if not debit or "." in debit or len(debit) > 16:
                debit = _amount(debit, 0)
            if not credit or "." in credit or len(credit) > 16:
                credit = _amount(credit, 0)
        else:
            debit, credit = _amount(debit, d), _amount(credit, d)
        # JSON sorts the keys "line_<id>_<field>": the lines go by "<id>_" as text ("10_"
        # before "1_"), which is the order of these keys and of the fragments they begin
        # (ids differ by the "_" at the latest). The lines mostly come in that order already.
        key = ',"line_' + lid + "_"
        if key < previous:
            in_order = False
        previous = key
        append(
            f'{key}account_id":{Q + account + Q if account else _FALSE}'
            f'{key}credit":"{credit}"{key}debit":"{debit}"'
            f'{key}name":{_FALSE if name == NULL_NAME else _quote(name)}'
            f'{key}partner_id":{Q + partner + Q if partner else _FALSE}'
        )  # fmt: skip
    if not in_order:
        parts.sort()
    _, name, mdate, journal, company = move_row[:5]
    return (
        f'{{"company_id":{_FALSE if company is None else Q + str(company) + Q}'
        f',"date":"{mdate}"'
        f',"journal_id":{_FALSE if journal is None else Q + str(journal) + Q}'
        f'{"".join(parts)},"name":{_FALSE if name is None else _quote(name)}}}'
    )


# Order of the samples: secure-number findings by journal and number, then the moves' findings
# in move order, then the version rule's, then the counters'.
_SECURE, _MOVE, _VERSION, _COUNTER = range(4)


class _Walk:
    """Verification state over all chains of one database."""

    def __init__(self, ctx: Context, decimals: dict[int, int]) -> None:
        self.ctx = ctx
        self.version = ctx.version
        self.decimals = decimals
        self.text_decimals = {str(k): v for k, v in decimals.items()}
        self.samples: list[tuple[tuple, dict]] = []  # (order, sample), pruned to the limit
        self.count = 0
        self.moves = 0
        self.slow = 0
        self.versions: Counter = Counter()
        self.chains: set = set()
        # legacy chain -> version -> lowest secure number verified under it, to apply Odoo's
        # rule that a chain's version never goes back down.
        self.first_at: dict[int, dict[int, int]] = {}
        self.low_versions: list[tuple] = []
        self.recheck: list[tuple] = []  # move rows the fast path did not reproduce

    def finding(self, order: tuple, kind: str, **extra) -> None:
        self.count += 1
        limit = self.ctx.request.sample_limit
        self.samples.append((order, {"kind": kind} | extra))
        if len(self.samples) > 4 * limit + 64:
            self.samples = heapq.nsmallest(limit, self.samples, key=_order)

    @property
    def findings(self) -> list[dict]:
        return [s for _, s in heapq.nsmallest(self.ctx.request.sample_limit, self.samples,
                                              key=_order)]  # fmt: skip

    def move(self, row: tuple, body: str | None) -> None:
        """One move of the moves query with its aggregated lines (``body``, None without)."""
        mid, name, mdate, journal, company, state, secure, prefix, stored, previous = row[:10]
        self.moves += 1
        legacy = bool(secure)
        # 16/17: the window's previous secure number is one less, or there is a finding.
        if legacy and self.version < 18 and row[10] != secure - 1:
            self._secure_number(row)
        if state != "posted" and stored:
            self.finding((_MOVE, mid, 0), "hashed_move_not_posted", move_id=mid, name=name,
                         journal_id=journal, state=state)  # fmt: skip
        if stored is None:
            self.finding((_MOVE, mid, 1), "secure_number_without_hash", move_id=mid, name=name,
                         journal_id=journal, secure_sequence_number=secure)  # fmt: skip
            return
        if self.version < 18 and not legacy:
            self.finding((_MOVE, mid, 1), "hash_without_secure_number", move_id=mid, name=name,
                         journal_id=journal)  # fmt: skip
            return
        self.chains.add(journal if legacy else (journal, prefix))
        if body is not None:
            text = chain_input(previous) + payload_from_body(row, body, self.text_decimals)
            digest = sha256(text.encode()).hexdigest()
            if stored.startswith("$4$"):
                if not legacy and stored[3:] == digest:
                    return self._verified(row, 4)
            elif stored == digest:
                return self._verified(row, 3)
        self.recheck.append(row)

    def verify_exactly(self, row: tuple, lines: list[tuple]) -> None:
        """A move the fast path did not reproduce, from its lines one column per field."""
        version = self._verify(row, lines, bool(row[6]))
        if version is None:
            mid, name, _, journal, _, _, secure, prefix = row[:8]
            self.finding(
                (_MOVE, mid, 1), "hash_mismatch", move_id=mid, name=name, journal_id=journal,
                prefix=prefix, secure_sequence_number=secure,
                reason="recomputed hash differs: the move, its lines, or its predecessor in the "
                "chain changed or is gone",
            )  # fmt: skip
            return
        self._verified(row, version)

    def unhashed(self, row: dict) -> None:
        """A posted move without hash in a chain that hashes (UNHASHED_CHAINS_SQL)."""
        if row["first_hashed"] is not None:
            reason = (
                f"posted without hash after number {row['first_hashed']} of its prefix was "
                "hashed, in a journal that locks posted entries with a hash"
            )
        else:
            reason = (
                "posted without hash, dated after its journal's first hashed move "
                f"({row['started'].isoformat()}), in a journal that locks posted entries with a "
                "hash; no move of its prefix is hashed"
            )
        mid = row["id"]
        self.finding((_MOVE, mid, 2), "posted_move_without_hash", move_id=mid, name=row["name"],
                     journal_id=row["journal_id"], prefix=row["sequence_prefix"],
                     number=row["sequence_number"], reason=reason)  # fmt: skip

    def _verified(self, row: tuple, version: int) -> None:
        self.versions[version] += 1
        secure = row[6]
        if secure:
            journal = row[3]
            seen = self.first_at.setdefault(journal, {})
            if secure < seen.get(version, secure + 1):
                seen[version] = secure
            if version < 3:
                self.low_versions.append((journal, secure, version, row[0], row[1]))

    def _secure_number(self, row: tuple) -> None:
        """16/17: the secure numbers of a journal run 1, 2, 3... (the window's predecessor)."""
        mid, name, _, journal, _, _, secure = row[:7]
        previous = row[10]
        if secure == previous:
            self.finding((_SECURE, journal, secure, mid), "duplicate_secure_number", move_id=mid,
                         name=name, journal_id=journal, secure_sequence_number=secure)  # fmt: skip
        elif secure > (previous or 0) + 1:
            self.finding(
                (_SECURE, journal, secure, mid), "secure_numbers_missing", journal_id=journal,
                first_missing=(previous or 0) + 1, last_missing=secure - 1, next_move_id=mid,
                next_name=name,
            )  # fmt: skip

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
        for i, (journal, secure, version, mid, name) in enumerate(self.low_versions):
            higher = [s for v, s in self.first_at.get(journal, {}).items() if v > version]
            if higher and min(higher) < secure:
                self.finding((_VERSION, i), "hash_version_went_back", move_id=mid, name=name,
                             journal_id=journal, version=version)  # fmt: skip


def _order(item: tuple) -> tuple:
    return item[0]


def hash_chain_check(ctx: Context, conn: psycopg.Connection) -> CheckResult:
    """Recompute every hash; also secure numbering (gaps, duplicates), 16/17 counters, and
    posted moves without hash where their chain hashes."""
    started = time.monotonic()
    conn.execute(f"SET work_mem = '{WORK_MEM}'")
    conn.execute("SET jit = off")
    decimals = dict(conn.execute("SELECT id, decimal_places FROM res_currency").fetchall())
    walk = _Walk(ctx, decimals)
    if ctx.version < 18:
        hashed = "(coalesce(m.secure_sequence_number, 0) <> 0 OR m.inalterable_hash IS NOT NULL)"
        previous, previous_secure = PREVIOUS_16, SECURE_16
    else:
        hashed = "m.inalterable_hash IS NOT NULL"
        previous, previous_secure = PREVIOUS_18, "NULL::integer"
        _secure_numbers(ctx, conn, walk, {"move_filter": ctx.company_filter("m")})
    fmt = {"hashed": hashed, "move_filter": ctx.company_filter("m")}
    _stream(ctx, conn, fmt, previous, previous_secure, walk)
    walk.version_rule()
    _unhashed(ctx, conn, walk)
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


def _stream(
    ctx: Context, conn: psycopg.Connection, fmt: dict, previous: str, previous_secure: str,
    walk: _Walk,
) -> None:  # fmt: skip
    """Merge the moves (id order, with their predecessor's hash) with their lines (one row
    per move, id order), then verify exactly the moves the fast path did not reproduce.

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
        lines_conn.execute(f"SET work_mem = '{WORK_MEM}'")
        moves.execute(
            MOVES_SQL.format(previous=previous, previous_secure=previous_secure, **fmt),
            ctx.params,
        )
        move_iter = _rows(moves)
        current = next(move_iter, None)
        for move_id, body in lines.stream(BODIES_SQL.format(**fmt), ctx.params,
                                                 size=STREAM_ROWS):  # fmt: skip
            while current is not None and current[0] < move_id:
                walk.move(current, None)  # a hashed move without any line
                current = next(move_iter, None)
            if current is not None and current[0] == move_id:
                walk.move(current, body)
                current = next(move_iter, None)
        while current is not None:
            walk.move(current, None)
            current = next(move_iter, None)
        _recheck(ctx, lines, walk)
        lines_conn.rollback()


def _recheck(ctx: Context, cursor, walk: _Walk) -> None:
    """The exact path for the moves the fast path did not reproduce, a batch of ids at once."""
    pending = walk.recheck
    walk.recheck = []
    for start in range(0, len(pending), RECHECK_BATCH):
        batch = pending[start : start + RECHECK_BATCH]
        grouped: dict[int, list[tuple]] = {row[0]: [] for row in batch}
        cursor.execute(LINES_SQL, {"ids": list(grouped)})
        for line in cursor:
            grouped[line[0]].append(line)
        for row in batch:
            walk.verify_exactly(row, grouped[row[0]])


def _rows(cursor):
    while batch := cursor.fetchmany(FETCH_ROWS):
        yield from batch


def _secure_numbers(ctx: Context, conn: psycopg.Connection, walk: _Walk, fmt: dict) -> None:
    rows = conn.execute(SECURE_SQL.format(move_filter=fmt["move_filter"]), ctx.params).fetchall()
    for journal, mid, name, secure, previous in rows:
        order = (_SECURE, journal, secure, mid)
        if secure == previous:
            walk.finding(order, "duplicate_secure_number", move_id=mid, name=name,
                         journal_id=journal, secure_sequence_number=secure)  # fmt: skip
        else:
            walk.finding(
                order, "secure_numbers_missing", journal_id=journal,
                first_missing=(previous or 0) + 1, last_missing=secure - 1, next_move_id=mid,
                next_name=name,
            )  # fmt: skip


def _unhashed(ctx: Context, conn: psycopg.Connection, walk: _Walk) -> None:
    """Posted moves without hash where their chain hashes (UNHASHED_CHAINS_SQL)."""
    fmt = {"move_filter": ctx.company_filter("m")}
    chains = conn.execute(UNHASHED_CHAINS_SQL.format(**fmt), ctx.params).fetchall()
    if not chains:
        return
    journals, prefixes, first, started = (list(column) for column in zip(*chains, strict=True))
    params = {**ctx.params, "journals": journals, "prefixes": prefixes, "first": first,
              "started": started, "limit": ctx.request.sample_limit}  # fmt: skip
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        rows = cursor.execute(UNHASHED_MOVES_SQL.format(**fmt), params).fetchall()
    for row in rows:
        walk.unhashed(row)
    # Only the first moves by id are sampled; the others count.
    walk.count += (rows[0]["total"] - len(rows)) if rows else 0


def _secure_counters(ctx: Context, conn: psycopg.Connection, walk: _Walk) -> None:
    """16/17: the journal's no-gap counter must sit at the highest secure number plus one."""
    rows = conn.execute(
        "SELECT j.id, j.code, s.number_next, "
        " (SELECT max(m.secure_sequence_number) FROM account_move m WHERE m.journal_id = j.id)"
        " FROM account_journal j JOIN ir_sequence s ON s.id = j.secure_sequence_id"
        " WHERE j.secure_sequence_id IS NOT NULL" + ctx.company_filter("j"),
        ctx.params,
    ).fetchall()
    for i, (journal_id, code, number_next, highest) in enumerate(rows):
        highest = highest or 0
        if number_next <= highest:
            walk.finding(
                (_COUNTER, i), "secure_counter_behind", journal_id=journal_id, journal=code,
                number_next=number_next, highest_secure_number=highest,
                reason="the next posting would reuse a secure number",
            )  # fmt: skip
        elif number_next > highest + 1:
            walk.finding(
                (_COUNTER, i), "hashed_moves_missing_at_end", journal_id=journal_id, journal=code,
                number_next=number_next, highest_secure_number=highest,
                reason="the counter says secure numbers up to number_next - 1 were issued",
            )  # fmt: skip
