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
from shared.finance.introspect import Context, ValidationCannotRun, connect, introspect
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

__all__ = ["ValidationCannotRun", "ValidationReport", "ValidationRequest", "run_validation"]


def _run_task(ctx: Context, ids: tuple[str, ...], task: Task) -> list[CheckResult]:
    started = time.monotonic()
    try:
        with connect(ctx.request) as conn:
            try:
                out = task(ctx, conn)
            finally:
                conn.rollback()
    except Exception as exc:  # one check's failure must not hide the others' results
        log.warning("checks %s could not complete: %s", ", ".join(ids), exc)
        detail = f"could not complete: {type(exc).__name__}: {str(exc).strip()[:500]}"
        elapsed = round(time.monotonic() - started, 3)
        return [CheckResult(id=i, status="fail", detail=detail, duration_s=elapsed) for i in ids]
    results = out if isinstance(out, list) else [out]
    for r in results:
        log.info("check %s: %s (%s) in %.2fs", r.id, r.status, r.count, r.duration_s)
    return results


def run_validation(request: ValidationRequest) -> ValidationReport:
    """Run every check of docs/validation.md; raise ValidationCannotRun when the database cannot
    be reached or is not an Odoo 16+ database with accounting."""
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    ctx = introspect(request)
    with ThreadPoolExecutor(max_workers=request.max_workers, thread_name_prefix="check") as pool:
        futures = [pool.submit(_run_task, ctx, ids, task) for ids, task in TASKS]
        found = [r for f in futures for r in f.result()]
    by_id = {r.id: r for r in found}
    ordered = [by_id[i] for i in CHECK_IDS]
    for note in ctx.notes:
        log.info("database %s: %s", ctx.database, note)
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
