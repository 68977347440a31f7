"""Verify an incident's hash-chained audit trail: python -m drctl audit verify INCIDENT_ID."""

from __future__ import annotations

import os
from pathlib import Path

from drctl.cli import EXIT_FAILED_RESULT, EXIT_OK, CommandError, emit_json


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="audit_command", metavar="ACTION")
    verify = sub.add_parser("verify", help="check the chain; exit 1 when it is broken")
    verify.add_argument("incident_id", metavar="INCIDENT_ID")
    verify.add_argument(
        "--state-dir",
        help="devhost state folder whose Azurite holds the trail (used when "
        "AzureWebJobsStorage is not set; DR_STATE_DIR, else .devhost)",
    )
    verify.add_argument("--expected-head", help="head hash recorded elsewhere, to catch a cut tail")
    verify.add_argument("--json", action="store_true", help="print one JSON object")


def _storage(args):
    """The connection string, and an Azurite this command started (to stop), if any."""
    configured = os.environ.get("AzureWebJobsStorage")
    if configured and not args.state_dir:
        return configured, None
    from devhost.azurite import Azurite, AzuriteUnavailable, running_settings

    state_dir = Path(args.state_dir or os.environ.get("DR_STATE_DIR") or ".devhost")
    running = running_settings(state_dir)
    if running:
        return running["AzureWebJobsStorage"], None
    if not (state_dir / "azurite").is_dir():
        raise CommandError(
            f"no storage: AzureWebJobsStorage is not set and {state_dir} has no Azurite data"
        )
    azurite = Azurite(state_dir)
    try:
        azurite.start()
    except AzuriteUnavailable as exc:
        raise CommandError(f"cannot start Azurite over {state_dir}: {exc}") from exc
    return azurite.settings()["AzureWebJobsStorage"], azurite


def run(args) -> int:
    if args.audit_command != "verify":
        raise CommandError("name an action: verify")
    from shared.audit import AuditError, AuditWriter

    connection, started = _storage(args)
    try:
        writer = AuditWriter(connection)
        if not writer.exists(args.incident_id):
            raise CommandError(f"incident {args.incident_id} has no audit trail")
        report = writer.verify(args.incident_id, expected_head=args.expected_head)
    except AuditError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        if started is not None:
            started.stop()
    if report.ok:
        print(f"{args.incident_id}: {report.records} records, chain intact, head {report.head}")
    else:
        print(f"{args.incident_id}: chain BROKEN ({len(report.problems)} problem(s))")
        for problem in report.problems:
            print(f"  {problem.kind}: {problem.detail}")
    if args.json:
        emit_json(report.model_dump(mode="json"))
    return EXIT_OK if report.ok else EXIT_FAILED_RESULT
