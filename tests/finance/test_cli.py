"""drctl seed and drctl validate: exit codes 0, 1, 2 and the JSON last line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

from devhost.pg import free_port

ROOT = Path(__file__).resolve().parents[2]


def drctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "drctl", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def last_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_seed_then_validate_exits_0_and_1_once_damaged(pg_server):
    dsn = pg_server.dsn_for("fin_cli_seeded")
    try:
        seeded = drctl("seed", "--dsn", dsn, "--odoo", "18", "--moves", "150", "--json")
        assert seeded.returncode == 0, seeded.stderr
        assert last_json(seeded)["database"] == "fin_cli_seeded"

        again = drctl("seed", "--dsn", dsn, "--odoo", "18", "--moves", "150")
        assert again.returncode == 2 and "--force" in again.stderr

        clean = drctl("validate", "--dsn", dsn, "--json")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        report = last_json(clean)
        assert set(report) == {
            "database", "odoo_version", "started_at", "duration_s", "summary", "checks"
        }  # fmt: skip
        assert set(report["summary"]) == {"pass", "warn", "fail", "skip"}
        assert set(report["checks"][0]) == {
            "id", "status", "count", "samples", "detail", "duration_s"
        }  # fmt: skip

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE account_move_line SET debit = debit + 1, balance = balance + 1 "
                "WHERE id = (SELECT min(id) FROM account_move_line WHERE debit > 0 "
                "AND parent_state = 'posted')"
            )
        damaged = drctl("validate", "--dsn", dsn)
        assert damaged.returncode == 1
        assert "ledger.unbalanced_moves    fail" in damaged.stdout
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS fin_cli_seeded WITH (FORCE)")


def test_validate_exits_2_on_a_database_that_is_not_odoo(pg_server):
    proc = drctl("validate", "--dsn", pg_server.dsn, "--json")
    assert proc.returncode == 2
    assert "not an Odoo database" in last_json(proc)["error"]


def test_validate_exits_2_when_the_connection_is_refused():
    port = free_port()  # nothing listens there
    proc = drctl("validate", "--dsn", f"host=127.0.0.1 port={port} user=postgres dbname=x")
    assert proc.returncode == 2
    assert "could not connect to database x" in proc.stderr
    assert "refused" in proc.stderr.lower()


def test_validate_rejects_a_recovery_point_that_is_not_a_time(pg_server):
    proc = drctl("validate", "--dsn", pg_server.dsn, "--recovery-point", "yesterday")
    assert proc.returncode == 2 and "ISO-8601" in proc.stderr


def test_every_finance_command_has_help():
    for args in (("seed", "--help"), ("validate", "--help"), ("bench", "validation", "--help")):
        proc = drctl(*args)
        assert proc.returncode == 0, proc.stderr
        assert "--dsn" in proc.stdout


def test_bench_validation_prints_its_figures_and_reuses_its_database(pg_server):
    args = ("bench", "validation", "--lines", "2000", "--naive-sample", "50", "--json")
    first = drctl(*args, "--dsn", pg_server.dsn)
    assert first.returncode == 0, first.stderr
    out = last_json(first)
    expected = {
        "lines",
        "validate_s",
        "naive_s",
        "seqscan_s",
        "speedup_vs_naive",
        "ratio_to_seqscan",
    }
    assert expected <= set(out)
    assert out["failing_checks"] == []
    assert out["hashed_moves"] > 0 and out["hash_moves_per_s_alone"] > 0
    assert out["seed_s"] is not None
    again = last_json(drctl(*args, "--dsn", pg_server.dsn))
    assert again["seed_s"] is None, "a database of the same size and seed is reused"
    assert again["lines"] == out["lines"]


def test_validate_exits_2_naming_a_company_that_does_not_exist(seeded):
    db = seeded(17, moves=60)
    db.sql(
        "UPDATE account_move_line SET debit = debit + 1, balance = balance + 1 WHERE id = "
        "(SELECT min(id) FROM account_move_line WHERE debit > 0 AND parent_state = 'posted' "
        "AND company_id = 1)"
    )
    proc = drctl("validate", "--dsn", db.dsn, "--company", "99", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = last_json(proc)["error"]
    assert "has no company with id 99;" in error and "its companies are 1 (" in error


def test_validate_exits_2_when_the_database_does_not_answer_within_the_timeout(seeded):
    db = seeded(17, moves=40)
    with psycopg.connect(db.dsn) as other:
        other.execute("LOCK TABLE ir_module_module IN ACCESS EXCLUSIVE MODE")
        proc = drctl("validate", "--dsn", db.dsn, "--statement-timeout", "1")
        other.rollback()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "did not answer within the statement timeout of 1 s" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_option_values_are_named_with_what_is_accepted(pg_server):
    forms = "a date (2025-12-04, midnight UTC) or a date and time"
    cases = [
        (("validate", "--recovery-point", "2025-W53-3"), "--recovery-point '2025-W53-3' is not"),
        (("validate", "--recovery-point", "T24:00:00"), forms),
        (("validate", "--recovery-point=-infinity"), forms),
        (("validate", "--recovery-point", "-infinity"), "written --recovery-point=VALUE"),
        (("validate", "--recovery-point", "2025-02-30"), "is not a time: day is out of range"),
        (("validate", "--statement-timeout", "0"), "--statement-timeout 0.0: Input should be"),
        (("validate", "--statement-timeout", "inf"), "--statement-timeout inf: Input should be"),
        (("validate", "--workers", "0"), "--workers 0: Input should be"),
        (("seed", "--odoo", "17", "--companies", "99"), "--companies 99: Input should be"),
    ]
    for args, expected in cases:
        proc = drctl(args[0], "--dsn", pg_server.dsn, *args[1:])
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr, (args, proc.stderr)
        assert "pydantic" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_recovery_point_as_a_date_or_a_time_with_an_offset_is_accepted(pg_server):
    for point in ("2025-12-04", "2025-12-04 10:15+01:00", "2025-12-04T10:15:00.5Z"):
        proc = drctl("validate", "--dsn", pg_server.dsn, "--recovery-point", point)
        # Read, then stopped by the database, which is not Odoo.
        assert proc.returncode == 2 and "not an Odoo database" in proc.stderr, proc.stderr


def test_seed_exits_2_on_a_filestore_that_is_a_file_and_creates_no_database(
    pg_server, enterable_tmp
):
    not_a_folder = enterable_tmp / "filestore-is-a-file"
    not_a_folder.write_text("x")
    name = "fin_cli_filestore_file"
    proc = drctl("seed", "--dsn", pg_server.dsn_for(name), "--odoo", "17",
                 "--filestore", str(not_a_folder))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"the filestore {not_a_folder} exists and is not a folder" in proc.stderr
    with psycopg.connect(pg_server.dsn) as conn:
        assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall()
