"""run the finance checks on a (recovered) database"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from drctl.cli import EXIT_FAILED_RESULT, EXIT_OK, CommandError, bad_options, emit_json
from shared.finance.validate import ValidationCannotRun, ValidationRequest, run_validation

RECOVERY_POINT_FORMATS = (
    "a date (2025-12-04, midnight UTC) or a date and time with optional seconds and UTC offset "
    "(2025-12-04T10:15, 2025-12-04 10:15:00Z, 2025-12-04T10:15:00.5+01:00; UTC without one)"
)
# What RECOVERY_POINT_FORMATS says, and nothing more of ISO-8601 (no week or ordinal dates,
# no 24:00): a recovery point is read the one way a person reading the report expects.
RECOVERY_POINT = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?"
)

# The request's fields as the command line names them.
OPTIONS = {
    "dsn": "--dsn",
    "filestore": "--filestore",
    "blob_container_url": "--blob-container",
    "blob_connection_string": "AzureWebJobsStorage",
    "recovery_point": "--recovery-point",
    "companies": "--company",
    "statement_timeout_s": "--statement-timeout",
    "max_workers": "--workers",
}


def add_arguments(parser) -> None:
    parser.add_argument("--dsn", required=True, help="libpq DSN of the database to check")
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--filestore", type=Path, help="the database's own filestore folder")
    store.add_argument(
        "--blob-container",
        help="Blob container URL holding the attachments (with a SAS, or with "
        "AzureWebJobsStorage set for the credentials)",
    )
    parser.add_argument(
        "--recovery-point",
        help=f"the time the database was recovered to: {RECOVERY_POINT_FORMATS}",
    )
    parser.add_argument(
        "--expect-jobs-held", action="store_true", help="fail (not warn) on active due jobs"
    )
    parser.add_argument("--company", type=int, action="append", help="only this company id")
    parser.add_argument(
        "--statement-timeout", type=float, default=600.0, help="seconds per statement (>0)"
    )
    parser.add_argument("--workers", type=int, default=4, help="checks run in parallel")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _recovery_point(text: str | None) -> datetime | None:
    if text is None:
        return None
    problem = "is not one of the ISO-8601 forms this option reads"
    if RECOVERY_POINT.fullmatch(text.strip()):
        try:
            return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            problem = f"is not a time: {exc}"  # a field out of range: "month must be in 1..12"
    raise CommandError(f"--recovery-point {text!r} {problem}; give {RECOVERY_POINT_FORMATS}")


def run(args) -> int:
    if args.filestore is not None and not args.filestore.is_dir():
        raise CommandError(f"--filestore {args.filestore} is not a folder")
    connection_string = os.environ.get("AzureWebJobsStorage") if args.blob_container else None
    try:
        request = ValidationRequest(
            dsn=args.dsn,
            filestore=args.filestore,
            blob_container_url=args.blob_container,
            blob_connection_string=connection_string,
            recovery_point=_recovery_point(args.recovery_point),
            expect_jobs_held=args.expect_jobs_held,
            companies=args.company,
            statement_timeout_s=args.statement_timeout,
            max_workers=args.workers,
        )
    except ValidationError as exc:
        raise bad_options(exc, OPTIONS, secret=("dsn", "blob_connection_string")) from exc
    try:
        report = run_validation(request)
    except ValidationCannotRun as exc:
        raise CommandError(str(exc)) from exc
    if not args.json:
        _print_table(report)
    else:
        emit_json(report.to_json_dict())
    return EXIT_FAILED_RESULT if report.failed else EXIT_OK


def _print_table(report) -> None:
    s = report.summary
    print(
        f"{report.database} (Odoo {report.odoo_version}) checked in {report.duration_s:.2f}s: "
        f"{s.pass_} pass, {s.warn} warn, {s.fail} fail, {s.skip} skip"
    )
    print(f"{'check':<26} {'status':<6} {'count':>7} {'secs':>6}  detail")
    for check in report.checks:
        print(
            f"{check.id:<26} {check.status:<6} {check.count:>7} {check.duration_s:>6.2f}  "
            f"{check.detail}"
        )
        for sample in check.samples[:3]:
            shown = ", ".join(f"{k}={v}" for k, v in sample.items() if v is not None)
            print(f"{'':<26} {'':<6} {'':>7} {'':>6}    - {shown[:160]}")
