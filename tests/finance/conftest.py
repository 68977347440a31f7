"""Fixtures of the finance tests: each test seeds its own small database on the session's
PostgreSQL server and damages it as a test needs."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from shared.finance.models import ValidationReport, ValidationRequest
from shared.finance.seed import SeedOptions, SeedResult, seed_database
from shared.finance.validate import run_validation

_names = itertools.count(1)


@dataclass
class Seeded:
    """A freshly seeded database: its DSN, what was generated, its filestore (if any)."""

    dsn: str
    result: SeedResult
    filestore: Path | None

    def sql(self, statement: str, params=None) -> list[tuple]:
        """Run one statement with autocommit (damage, or a look-up) and return its rows."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def one(self, statement: str, params=None):
        rows = self.sql(statement, params)
        assert rows, f"no row for: {statement}"
        return rows[0][0] if len(rows[0]) == 1 else rows[0]

    def copy_move(self, move_id: int, **changes) -> int:
        """Copy a move and its lines as SQL would (no Odoo rule applied), with ``changes`` to
        the move's columns (a new ``name`` goes to the lines' stored copy too); the new id."""
        move = Jsonb(changes)
        line = Jsonb({"move_name": changes["name"]} if "name" in changes else {})
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            new_id = conn.execute(
                "INSERT INTO account_move SELECT (jsonb_populate_record(NULL::account_move, "
                "to_jsonb(m) || jsonb_build_object('id', nextval('account_move_id_seq')) || %s)).* "
                "FROM account_move m WHERE m.id = %s RETURNING id",
                (move, move_id),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO account_move_line SELECT (jsonb_populate_record("
                "NULL::account_move_line, to_jsonb(l) || jsonb_build_object("
                "'id', nextval('account_move_line_id_seq'), 'move_id', %s) || %s)).* "
                "FROM account_move_line l WHERE l.move_id = %s ORDER BY l.id",
                (new_id, line, move_id),
            )
        return new_id

    def validate(self, **kwargs) -> ValidationReport:
        kwargs.setdefault("filestore", self.filestore)
        return run_validation(ValidationRequest(dsn=self.dsn, **kwargs))


@pytest.fixture
def seeded(pg_server, enterable_tmp) -> Callable[..., Seeded]:
    """``seeded(odoo, moves=..., filestore=True, ...)`` builds a new database for this test."""
    made: list[tuple[str, Path | None]] = []

    def build(odoo: int = 17, *, moves: int = 300, filestore: bool = False, **options) -> Seeded:
        name = f"fin_{odoo}_{next(_names)}_{id(made) % 10000}"
        folder = enterable_tmp / "filestore" / name if filestore else None
        dsn = pg_server.dsn_for(name)
        options.setdefault("force", True)
        result = seed_database(
            dsn, SeedOptions(odoo=odoo, moves=moves, filestore=folder, **options)
        )
        made.append((name, folder))
        return Seeded(dsn, result, folder)

    yield build
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        for name, folder in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def statuses(report: ValidationReport) -> dict[str, str]:
    return {c.id: c.status for c in report.checks}
