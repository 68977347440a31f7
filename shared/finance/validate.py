"""run_validation: every finance check on a (recovered) Odoo database, in parallel.

The database is introspected first (Odoo or not, version, columns). The checks then run as
independent tasks on a thread pool, each on its own connection in one READ ONLY transaction
with the request's statement timeout. A task that cannot complete turns its checks into
``fail`` with the error as detail: a check that did not run has not passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import psycopg

from shared.finance import attachments, checks, hashcheck
from shared.finance.introspect import (
    Context,
    ValidationCannotRun,
    connect,
    describe_error,
    describe_server_message,
    introspect,
)
from shared.finance.models import (
    CHECK_IDS,
    CheckResult,
    Summary,
    ValidationReport,
    ValidationRequest,
)

log = logging.getLogger(__name__)

Task = Callable[[Context, psycopg.Connection], CheckResult | list[CheckResult]]

# Longest first, so the pool starts the tasks that bound the run time right away.
TASKS: list[tuple[tuple[str, ...], Task]] = [
    (("hash_chain.broken",), hashcheck.hash_chain_check),
    (("ledger.unbalanced_moves", "ledger.orphan_lines"), checks.ledger_checks),
    (("reconcile.inconsistent",), checks.reconcile_check),
    (("recovery_point.after",), checks.recovery_point_check),
    (("sequence.duplicates", "sequence.gaps"), checks.sequence_checks),
    (("ledger.trial_balance",), checks.trial_balance_check),
    (("attachments.missing", "attachments.checksum"), attachments.attachment_checks),
    (("cron.active",), checks.cron_check),
    (("queue.requeued",), checks.queue_check),
]  # fmt: skip

# The server's answer to every statement after a failed one in the same transaction.
ABORTED = "current transaction is aborted"

__all__ = ["ValidationCannotRun", "ValidationReport", "ValidationRequest", "run_validation"]


def _run_task(ctx: Context, ids: tuple[str, ...], task: Task) -> list[CheckResult]:
    started = time.monotonic()
    try:
        with connect(ctx.request) as conn:
            try:
                out = task(ctx, conn)
            except Exception as exc:
                # Read the connection's first error before the rollback clears it.
                raise TaskFailed(_first_error(ctx, exc, conn)) from exc
            finally:
                if not conn.closed:
                    conn.rollback()
    except Exception as exc:  # one check's failure must not hide the others' results
        cause = str(exc) if isinstance(exc, TaskFailed) else describe_error(exc, ctx.request)
        log.warning("checks %s could not complete: %s", ", ".join(ids), cause)
        detail = f"could not complete: {cause[:500]}"
        elapsed = round(time.monotonic() - started, 3)
        return [CheckResult(id=i, status="fail", detail=detail, duration_s=elapsed) for i in ids]
    results = out if isinstance(out, list) else [out]
    for r in results:
        log.info("check %s: %s (%s) in %.2fs", r.id, r.status, r.count, r.duration_s)
    return results


class TaskFailed(Exception):
    """A task raised; the message names the first error of its connection."""


def _first_error(ctx: Context, exc: BaseException, conn: psycopg.Connection) -> str:
    """What made a task fail, rather than what its last statement met.

    Once a statement fails, the server refuses every later statement of the transaction
    ("current transaction is aborted"), so cleanup code that runs one (a RESET in a
    ``finally``) raises an error that hides the real one: the real one is found earlier in the
    exception's chain. And a statement timeout that fires as a command finishes sends its rows
    and then the error, which psycopg reports as "received 2 results from command"; the
    server's own message is then still the connection's last error."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        if _server_error(seen) and not isinstance(seen, psycopg.errors.InFailedSqlTransaction):
            return describe_error(seen, ctx.request)
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    aborted = conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    if isinstance(exc, psycopg.Error) and aborted:
        message = conn.info.error_message.strip().removeprefix("ERROR:").strip()
        if message and not message.startswith(ABORTED):
            return describe_server_message(message, ctx.request)
    return describe_error(exc, ctx.request)


def _server_error(exc: BaseException) -> bool:
    """An error the server sent (it has a SQLSTATE), not one psycopg raised on its own."""
    return isinstance(exc, psycopg.Error) and bool(exc.sqlstate)


def run_validation(request: ValidationRequest) -> ValidationReport:
    """Run every check of docs/validation.md; raise ValidationCannotRun when the database cannot
    be reached, is not an Odoo 16+ database with accounting, cannot be read by this user, does
    not answer within the statement timeout, or lacks a requested company."""
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    ctx = introspect(request)
    with ThreadPoolExecutor(max_workers=request.max_workers, thread_name_prefix="check") as pool:
        futures = [pool.submit(_run_task, ctx, ids, task) for ids, task in TASKS]
        found = [r for f in futures for r in f.result()]
    by_id = {r.id: r for r in found}
    ordered = [by_id[i] for i in CHECK_IDS]
    counts = {s: sum(1 for r in ordered if r.status == s) for s in ("pass", "warn", "fail", "skip")}
    report = ValidationReport(
        database=ctx.database,
        odoo_version=ctx.version_text,
        started_at=started_at,
        duration_s=round(time.monotonic() - t0, 3),
        summary=Summary(**counts),
        checks=ordered,
    )
    log.info(
        "validated %s (Odoo %s) in %.2fs: %s pass, %s warn, %s fail, %s skip",
        ctx.database, ctx.version_text, report.duration_s, counts["pass"], counts["warn"],
        counts["fail"], counts["skip"],
    )  # fmt: skip
    return report
