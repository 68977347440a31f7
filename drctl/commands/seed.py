"""create an Odoo-shaped finance database with realistic data"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from drctl.cli import CommandError, bad_options, emit_json
from shared.finance.seed import SeedError, SeedOptions, seed_database


def add_arguments(parser) -> None:
    parser.add_argument("--dsn", required=True, help="libpq DSN of the database to create")
    parser.add_argument("--odoo", type=int, choices=(16, 17, 18), required=True)
    parser.add_argument("--companies", type=int, default=3)
    parser.add_argument("--moves", type=int, default=1000, help="about this many moves")
    parser.add_argument("--filestore", type=Path, help="the database's own filestore folder")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same data")
    parser.add_argument("--attachments", type=int, default=200, help="invoice PDFs, at most")
    parser.add_argument("--force", action="store_true", help="drop and recreate existing tables")
    parser.add_argument("--queue-jobs", action="store_true", help="install OCA queue_job rows")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    try:
        options = SeedOptions(
            odoo=args.odoo,
            companies=args.companies,
            moves=args.moves,
            seed=args.seed,
            filestore=args.filestore,
            force=args.force,
            queue_jobs=args.queue_jobs,
            attachments=args.attachments,
        )
    except ValidationError as exc:
        options = {field: "--" + field.replace("_", "-") for field in SeedOptions.model_fields}
        raise bad_options(exc, options) from exc
    try:
        result = seed_database(args.dsn, options)
    except SeedError as exc:
        raise CommandError(str(exc)) from exc
    if args.json:
        emit_json(result.model_dump(mode="json"))
    else:
        print(
            f"seeded {result.database} (Odoo {result.odoo_version}): {result.companies} "
            f"companies, {result.moves} moves, {result.lines} lines, {result.hashed_moves} "
            f"hashed, {result.attachments} attachments ({result.attachment_location}) "
            f"in {result.duration_s:.1f}s"
        )
    return 0
