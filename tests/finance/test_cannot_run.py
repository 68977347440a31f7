"""What the validator says when it cannot run, or a check cannot complete: the real cause
(a missing company, the statement timeout and its value, a missing privilege, an unknown Odoo
version), never a pass on nothing and never a follow-on error in place of the first."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import conninfo

from shared.finance import validate
from shared.finance.introspect import ValidationCannotRun, connect
from shared.finance.models import ValidationRequest


@contextmanager
def locked(dsn: str, table: str):
    """Another session holding ``table`` in ACCESS EXCLUSIVE mode: every read of it waits."""
    with psycopg.connect(dsn) as other:
        other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            other.rollback()


@pytest.mark.parametrize("company", [99, -1, 0, 99999999999])
def test_a_company_that_does_not_exist_cannot_be_validated(seeded, company):
    db = seeded(17, moves=40)
    with pytest.raises(ValidationCannotRun) as raised:
        db.validate(companies=[1, company])
    message = str(raised.value)
    assert f"has no company with id {company};" in message
    assert "its companies are 1 (" in message and ", 3 (" in message


def test_a_statement_timeout_while_reading_the_schema_says_the_database_did_not_answer(seeded):
    db = seeded(17, moves=40)
    with locked(db.dsn, "ir_module_module"):
        with pytest.raises(ValidationCannotRun) as raised:
            db.validate(statement_timeout_s=1)
    assert "did not answer within the statement timeout of 1 s" in str(raised.value)


def test_a_statement_timeout_under_a_millisecond_is_not_turned_off(pg_server):
    request = ValidationRequest(dsn=pg_server.dsn, statement_timeout_s=0.0004)
    with connect(request) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1ms"


def test_every_check_stopped_by_the_statement_timeout_names_it(seeded):
    db = seeded(17, moves=40)
    with locked(db.dsn, "account_move_line"):
        report = db.validate(statement_timeout_s=1)
    stopped = {c.id: c.detail for c in report.checks if "could not complete" in c.detail}
    assert {"ledger.unbalanced_moves", "ledger.orphan_lines", "reconcile.inconsistent"} <= set(
        stopped
    )
    for check_id, detail in stopped.items():
        assert "within the statement timeout of 1 s" in detail, (check_id, detail)
        assert "aborted" not in detail, (check_id, detail)


def test_a_client_error_after_a_failed_statement_is_reported_as_the_server_error(
    seeded, monkeypatch
):
    # A statement timeout that fires as a FETCH finishes sends the rows and then the error:
    # psycopg raises "received 2 results from command", which says nothing of the timeout.
    def timeout_then_client_error(ctx, conn):
        try:
            conn.execute("SELECT pg_sleep(3)")
        except psycopg.errors.QueryCanceled:
            pass
        raise psycopg.InternalError("received 2 results from command 'FETCH FORWARD 5000'")

    db = seeded(17, moves=40)
    tasks = [
        (ids, timeout_then_client_error if "hash_chain.broken" in ids else task)
        for ids, task in validate.TASKS
    ]
    monkeypatch.setattr(validate, "TASKS", tasks)
    check = db.validate(statement_timeout_s=1).check("hash_chain.broken")
    assert check.status == "fail"
    assert "within the statement timeout of 1 s" in check.detail
    assert "received 2 results" not in check.detail


def test_tables_the_user_may_not_read_are_named_as_a_missing_privilege(seeded):
    db = seeded(17, moves=40)
    role = f"reader_{db.result.database}"
    db.sql(f"CREATE ROLE {role} LOGIN")
    try:
        db.sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        db.sql(f"REVOKE SELECT ON ir_attachment, account_partial_reconcile FROM {role}")
        db.sql(f"GRANT SELECT (id, name) ON ir_attachment TO {role}")
        request = ValidationRequest(dsn=conninfo.make_conninfo(db.dsn, user=role))
        with pytest.raises(ValidationCannotRun) as raised:
            validate.run_validation(request)
    finally:
        db.sql(f"DROP OWNED BY {role}")
        db.sql(f"DROP ROLE {role}")
    message = str(raised.value)
    assert f"user {role} lacks the SELECT privilege on account_partial_reconcile, " in message
    assert "ir_attachment (" in message and " of its " in message
    assert "missing" not in message


def test_an_odoo_newer_than_known_is_noted_once_with_the_one_rule_set_applied(seeded, caplog):
    db = seeded(17, moves=40)
    db.sql("UPDATE ir_module_module SET latest_version = '19.0.1.0' WHERE name = 'base'")
    with caplog.at_level(logging.INFO, logger="shared.finance"):
        report = db.validate()
    assert not report.failed
    rules = [r.getMessage() for r in caplog.records if "rules" in r.getMessage()]
    assert rules == [f"database {db.result.database}: Odoo 19.0.1.0, applying the 17 rules"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "newer than the versions these checks know" in warnings[0]
    assert "look like Odoo 17" in warnings[0]
