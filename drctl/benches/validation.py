"""finance checks against a sequential scan

Seeds (once, then reuses) a database of about ``--lines`` move lines, then times three things
on it: the floor (``SELECT sum(debit), sum(credit) FROM account_move_line``), the whole
validation, and the naive way an ORM script checks balances (one query per move; measured on a
sample and scaled by the move count when the full run would take too long, which the output
says with ``naive_extrapolated``).
"""

from __future__ import annotations

import logging
import os
import random
import time
from datetime import UTC, datetime

import psycopg
from psycopg import conninfo

from drctl.cli import CommandError, emit_json
from shared.finance import hashcheck
from shared.finance.introspect import introspect
from shared.finance.seed import SeedError, SeedOptions, seed_database
from shared.finance.validate import (
    ValidationCannotRun,
    ValidationRequest,
    _run_task,
    run_validation,
)

log = logging.getLogger(__name__)

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
LINES_PER_MOVE = 3.28  # what the generator's mix of invoices, payments and entries averages
MARKER_KEY = "drctl.bench.validation"
SEQSCAN_SQL = "SELECT sum(debit), sum(credit) FROM account_move_line"


def add_arguments(parser) -> None:
    parser.add_argument("--lines", type=int, default=1_000_000, help="move lines to check")
    parser.add_argument("--dsn", help=f"server to use (default: {DEFAULT_DSN})")
    parser.add_argument("--odoo", type=int, choices=(16, 17, 18), default=17)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--naive-sample", type=int, default=5000, help="moves timed one by one")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", action="store_true")


def _bench_dsn(base: str, lines: int, seed: int, odoo: int) -> tuple[str, str]:
    name = f"drbench_validation_{lines}_s{seed}_v{odoo}"
    return conninfo.make_conninfo(base, dbname=name), name


def _marker(lines: int, seed: int, odoo: int) -> str:
    return f"lines={lines} seed={seed} odoo={odoo}"


def _reusable(dsn: str, marker: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT value FROM ir_config_parameter WHERE key = %s", (MARKER_KEY,)
            ).fetchone()
            return row is not None and row[0] == marker
    except psycopg.Error:
        return False


def _seed(dsn: str, args) -> float:
    started = time.monotonic()
    moves = max(1, round(args.lines / LINES_PER_MOVE))
    options = SeedOptions(odoo=args.odoo, moves=moves, seed=args.seed, force=True)
    try:
        seed_database(dsn, options)
    except SeedError as exc:
        raise CommandError(f"could not seed the benchmark database: {exc}") from exc
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s)",
            (MARKER_KEY, _marker(args.lines, args.seed, args.odoo)),
        )
    return time.monotonic() - started


def _seqscan(dsn: str) -> float:
    with psycopg.connect(dsn) as conn:
        conn.execute(SEQSCAN_SQL).fetchone()  # warm the cache the same way for both
        started = time.monotonic()
        conn.execute(SEQSCAN_SQL).fetchone()
        return time.monotonic() - started


def _naive(dsn: str, sample: int, seed: int) -> tuple[float, bool, int, int]:
    """One query per posted move, as an ORM loop over ``move.line_ids`` would do."""
    with psycopg.connect(dsn) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM account_move WHERE state = 'posted'")]
        chosen = ids if len(ids) <= sample else random.Random(seed).sample(ids, sample)
        started = time.monotonic()
        for move_id in chosen:
            rows = conn.execute(
                "SELECT debit, credit, balance FROM account_move_line WHERE move_id = %s",
                (move_id,),
            ).fetchall()
            sum(r[2] for r in rows)
        elapsed = time.monotonic() - started
    extrapolated = len(chosen) < len(ids)
    return elapsed * len(ids) / max(1, len(chosen)), extrapolated, len(chosen), len(ids)


def _hash_alone(request: ValidationRequest) -> float:
    """The hash check on its own, with the machine to itself (in the whole run it shares the
    cores with the other checks): its duration in seconds."""
    ctx = introspect(request)
    [found] = _run_task(ctx, ("hash_chain.broken",), hashcheck.hash_chain_check)
    if found.status == "fail":
        raise CommandError(f"the hash check alone failed: {found.detail}")
    return found.duration_s


def run(args) -> int:
    base = args.dsn or DEFAULT_DSN
    dsn, name = _bench_dsn(base, args.lines, args.seed, args.odoo)
    marker = _marker(args.lines, args.seed, args.odoo)
    seed_s = None
    if not _reusable(dsn, marker):
        log.info("seeding %s (about %s lines)", name, args.lines)
        seed_s = _seed(dsn, args)
    with psycopg.connect(dsn) as conn:
        lines = conn.execute("SELECT count(*) FROM account_move_line").fetchone()[0]
        hashed = conn.execute(
            "SELECT count(*) FROM account_move WHERE inalterable_hash IS NOT NULL"
        ).fetchone()[0]
    seqscan_s = _seqscan(dsn)
    request = ValidationRequest(dsn=dsn, recovery_point=datetime.now(UTC), max_workers=args.workers)
    load_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    try:
        report = run_validation(request)
    except ValidationCannotRun as exc:
        raise CommandError(str(exc)) from exc
    client_cpu_s = time.process_time() - cpu_before
    naive_s, extrapolated, sampled, moves = _naive(dsn, args.naive_sample, args.seed)
    hash_check = report.check("hash_chain.broken")
    hash_alone_s = _hash_alone(request)
    out = {
        "lines": lines,
        "moves": moves,
        "validate_s": round(report.duration_s, 3),
        "naive_s": round(naive_s, 3),
        "seqscan_s": round(seqscan_s, 3),
        "speedup_vs_naive": round(naive_s / report.duration_s, 1),
        "ratio_to_seqscan": round(report.duration_s / seqscan_s, 2),
        "naive_extrapolated": extrapolated,
        "naive_sample_moves": sampled,
        "hashed_moves": hashed,
        # The hash check's rate in the whole run (sharing the cores with the other checks) and
        # run again on its own just after.
        "hash_moves_per_s": round(hashed / hash_check.duration_s)
        if hash_check.duration_s
        else None,
        "hash_alone_s": round(hash_alone_s, 3),
        "hash_moves_per_s_alone": round(hashed / hash_alone_s) if hash_alone_s else None,
        "checks_s": {c.id: c.duration_s for c in report.checks},
        # The machine may be shared: the validator's own CPU time (its Python work, which
        # includes the hash recomputation) and the load when it started put validate_s in
        # context.
        "client_cpu_s": round(client_cpu_s, 2),
        "load_average": round(load_before, 2),
        "failing_checks": [c.id for c in report.checks if c.status == "fail"],
        "database": name,
        "seed_s": None if seed_s is None else round(seed_s, 1),
    }
    if args.json:
        emit_json(out)
    else:
        for key, value in out.items():
            print(f"{key:>20}: {value}")
    return 0
