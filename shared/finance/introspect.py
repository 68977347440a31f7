"""What database is this: Odoo or not, which version, which columns. Nothing is assumed.

The version comes from ``ir_module_module`` (the ``base`` row), cross-checked with structural
fingerprints; columns come from ``pg_catalog`` so a check only reads columns it saw, and a
table the user may not read is named as such rather than taken for a missing one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import conninfo

from shared.finance.models import ValidationRequest

log = logging.getLogger(__name__)

# The tables the checks read. The user must be able to read every column of those present: a
# check that could not read its rows has not passed.
TABLES_READ = (
    "res_company",
    "res_currency",
    "account_journal",
    "account_account",
    "account_account_res_company_rel",
    "account_move",
    "account_move_line",
    "account_partial_reconcile",
    "account_full_reconcile",
    "account_payment",
    "ir_attachment",
    "ir_cron",
    "ir_cron_trigger",
    "ir_model_data",
    "ir_act_server",
    "ir_sequence",
    "ir_module_module",
    "queue_job",
)

# Columns every check of a version needs; a database without them is not a complete Odoo
# finance schema, and the validator says so rather than guessing.
REQUIRED = {
    "res_company": ("id", "currency_id", "name"),
    "res_currency": ("id", "name", "decimal_places"),
    "account_journal": ("id", "code", "company_id", "type"),
    "account_move": (
        "id", "name", "state", "date", "journal_id", "company_id", "sequence_prefix",
        "sequence_number", "posted_before", "inalterable_hash", "secure_sequence_number",
        "create_date", "write_date",
    ),
    "account_move_line": (
        "id", "move_id", "parent_state", "journal_id", "company_id", "date", "move_name",
        "account_id", "partner_id", "name", "debit", "credit", "balance", "amount_currency",
        "currency_id", "company_currency_id", "amount_residual", "amount_residual_currency",
        "reconciled", "full_reconcile_id", "create_date", "write_date",
    ),
    "account_partial_reconcile": (
        "id", "debit_move_id", "credit_move_id", "amount", "debit_amount_currency",
        "credit_amount_currency", "full_reconcile_id",
    ),
    "account_account": ("id", "account_type", "reconcile"),
    "ir_attachment": ("id", "name", "type", "store_fname", "db_datas", "file_size", "checksum"),
    "ir_cron": ("id", "active", "nextcall"),
}  # fmt: skip


# The newest Odoo whose rules the checks know; a newer one is checked by its tables' shape.
NEWEST_KNOWN = 18


class ValidationCannotRun(Exception):
    """The validation could not run (connection, not Odoo, unsupported); the message says why."""


@dataclass
class Context:
    """What one validation run knows about its database."""

    request: ValidationRequest
    database: str
    version: int  # the rules applied: 16, 17 or 18
    version_text: str  # as installed, e.g. 17.0.1.3
    columns: dict[str, set[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    installed_modules: set[str] = field(default_factory=set)

    def has(self, table: str, column: str | None = None) -> bool:
        cols = self.columns.get(table)
        if cols is None:
            return False
        return column is None or column in cols

    def company_filter(self, alias: str, column: str = "company_id") -> str:
        """SQL fragment restricting rows to the requested companies (``%(companies)s``)."""
        if not self.request.companies:
            return ""
        return f" AND {alias}.{column} = ANY(%(companies)s)"

    @property
    def params(self) -> dict:
        return {"companies": self.request.companies or []}

    def recovery_point_utc(self) -> datetime | None:
        """The recovery point as naive UTC, the way Odoo stores timestamps."""
        point = self.request.recovery_point
        if point is None:
            return None
        if point.tzinfo is not None:
            point = point.astimezone(UTC).replace(tzinfo=None)
        return point


def database_name(dsn: str) -> str:
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ValidationCannotRun(f"the DSN is not valid: {exc}") from exc
    return str(parts.get("dbname") or parts.get("user") or "postgres")


def connect(request: ValidationRequest) -> psycopg.Connection:
    """A connection whose one transaction is READ ONLY and REPEATABLE READ (one snapshot for
    all its queries), with the request's statement timeout and no JIT (its compile time costs
    more than it saves on these queries)."""
    dsn = request.dsn.get_secret_value()
    # At least 1 ms: 0 would turn the timeout off.
    timeout_ms = max(1, round(request.statement_timeout_s * 1000))
    try:
        conn = psycopg.connect(
            dsn,
            connect_timeout=max(1, int(request.connect_timeout_s)),
            application_name="drctl-validate",
            options=(
                f"-c statement_timeout={timeout_ms} -c default_transaction_read_only=on -c jit=off"
            ),
        )
    except psycopg.OperationalError as exc:
        message = first_line(exc)
        raise ValidationCannotRun(
            f"could not connect to database {database_name(dsn)}: {message}"
        ) from exc
    # One snapshot for every query of a check: REPEATABLE READ, read only.
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def introspect(request: ValidationRequest) -> Context:
    """Detect the Odoo version and read the columns; raise ValidationCannotRun for a database
    that is not Odoo, lacks accounting, is older than 16, holds tables this user may not read,
    does not answer within the statement timeout, or lacks a requested company."""
    name = database_name(request.dsn.get_secret_value())
    with connect(request) as conn:
        try:
            found = _read_catalog(conn, name)
        except psycopg.Error as exc:
            raise ValidationCannotRun(
                f"database {name}: reading its schema failed: {describe_error(exc, request)}"
            ) from exc
    columns, modules, companies = found
    base = modules.get("base")
    if not base:
        raise ValidationCannotRun(
            f"database {name} is not an Odoo database: no installed 'base' module"
        )
    if "account" not in modules or "account_move" not in columns:
        raise ValidationCannotRun(
            f"database {name} is Odoo {base} without accounting (module 'account' not installed)"
        )
    ctx = Context(request, name, 0, base, columns, installed_modules=set(modules))
    ctx.version = _rules_version(ctx, base)
    _require_columns(ctx)
    _require_companies(ctx, companies)
    for note in ctx.notes:
        log.warning("database %s: %s", name, note)
    log.info("database %s: Odoo %s, applying the %s rules", name, base, ctx.version)
    return ctx


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (psycopg and azure-core add context lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def describe_error(exc: BaseException, request: ValidationRequest) -> str:
    """One line for a failed statement; a statement timeout says so, with its value."""
    message = first_line(exc)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return _cancelled(message, request)
    return f"{type(exc).__name__}: {message}"


def describe_server_message(message: str, request: ValidationRequest) -> str:
    """One line for an error known only by the server's message (no SQLSTATE at hand)."""
    if "statement timeout" in message:
        return _cancelled(message, request)
    return message


def _cancelled(message: str, request: ValidationRequest) -> str:
    """A statement the server cancelled. SQLSTATE 57014 is also a cancel by an administrator,
    so the timeout is named as the cause only when the server's message says so."""
    timeout = f"{request.statement_timeout_s:g} s"
    if "statement timeout" in message:
        return f"the database did not answer within the statement timeout of {timeout} ({message})"
    return f"a statement was cancelled (the statement timeout is {timeout}): {message}"


def _read_catalog(conn: psycopg.Connection, name: str):
    """Columns (with the ones this user may not read), installed modules and company ids.

    Columns come from pg_catalog, not information_schema, which hides the columns a user has
    no privilege on: a table this user may not read would look like a missing one."""
    schema_name, user, path = conn.execute(
        "SELECT current_schema(), current_user, current_setting('search_path')"
    ).fetchone()
    if schema_name is None:
        raise ValidationCannotRun(
            f"database {name}: user {user} lacks the USAGE privilege on every schema of its "
            f"search_path ({path}), so it cannot see the Odoo tables"
        )
    found = conn.execute(
        "SELECT c.relname, a.attname, has_column_privilege(c.oid, a.attnum, 'SELECT') "
        "FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
        "WHERE n.nspname = current_schema() AND c.relname = ANY(%s) "
        "AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped",
        (list(TABLES_READ),),
    ).fetchall()
    columns: dict[str, set[str]] = {}
    unreadable: dict[str, set[str]] = {}
    for table, column, readable in found:
        columns.setdefault(table, set()).add(column)
        if not readable:
            unreadable.setdefault(table, set()).add(column)
    if "ir_module_module" not in columns:
        raise ValidationCannotRun(
            f"database {name} is not an Odoo database: it has no ir_module_module table"
        )
    if unreadable:
        raise ValidationCannotRun(_privileges_missing(name, user, columns, unreadable))
    rows = conn.execute(
        "SELECT name, state, latest_version FROM ir_module_module "
        "WHERE state IN ('installed', 'to upgrade', 'to remove')"
    ).fetchall()
    companies: dict[int, str] = {}
    if "res_company" in columns:
        companies = dict(conn.execute("SELECT id, name FROM res_company ORDER BY id").fetchall())
    conn.rollback()
    return columns, {r[0]: r[2] for r in rows}, companies


def _privileges_missing(
    name: str, user: str, columns: dict[str, set[str]], unreadable: dict[str, set[str]]
) -> str:
    """The tables (or, under column grants, how many of their columns) this user may not read."""
    parts = []
    for table in sorted(unreadable):
        hidden, total = len(unreadable[table]), len(columns[table])
        parts.append(table if hidden == total else f"{table} ({hidden} of its {total} columns)")
    return (
        f"database {name}: user {user} lacks the SELECT privilege on {', '.join(parts)}; the "
        "checks read these tables: grant SELECT on them to that user and run again"
    )


def _require_companies(ctx: Context, companies: dict[int, str]) -> None:
    """Every requested company must exist: a filter on none of them would read no rows, and
    every check would pass on an empty selection."""
    unknown = sorted({c for c in ctx.request.companies or () if c not in companies})
    if not unknown:
        return
    known = ", ".join(f"{cid} ({cname})" for cid, cname in list(companies.items())[:20])
    known += " ..." if len(companies) > 20 else ""
    raise ValidationCannotRun(
        f"database {ctx.database} has no company with id {', '.join(map(str, unknown))}; "
        f"its companies are {known or 'none'}"
    )


def _rules_version(ctx: Context, base: str) -> int:
    """The rule set the checks apply (16, 17 or 18); each doubt about it becomes one note."""
    match = re.search(r"(\d+)\.\d", base)
    if match is None:
        raise ValidationCannotRun(f"database {ctx.database}: unreadable Odoo version {base!r}")
    major = int(match.group(1))
    if major < 16:
        raise ValidationCannotRun(
            f"database {ctx.database} is Odoo {base}; the checks know Odoo 16, 17 and 18"
        )
    # Structural fingerprints: 18 renamed payment_id to origin_payment_id; 17 dropped the
    # full reconcile's name. A mismatch with ir_module_module is noted and the columns win,
    # since the queries must match the columns that are really there.
    if ctx.has("account_move", "origin_payment_id"):
        shape = 18
    elif ctx.has("account_full_reconcile", "name"):
        shape = 16
    else:
        shape = 17
    # One note for each doubt; the rule set itself is said once, by introspect's log line.
    if major > NEWEST_KNOWN:
        # Limitation: the rules of an Odoo newer than 18 are not known here; the tables decide
        # which known rule set applies, and a finding may come from a change of Odoo's rules.
        ctx.notes.append(
            f"Odoo {base} is newer than the versions these checks know (16 to {NEWEST_KNOWN}): "
            f"its tables look like Odoo {shape}, and a finding may come from a rule Odoo "
            "changed since"
        )
    elif shape != major:
        ctx.notes.append(f"ir_module_module says {base} but the tables look like Odoo {shape}")
    return shape


def _require_columns(ctx: Context) -> None:
    missing = [
        f"{table}.{column}"
        for table, cols in REQUIRED.items()
        for column in cols
        if not ctx.has(table, column)
    ]
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise ValidationCannotRun(
            f"database {ctx.database} is not a complete Odoo {ctx.version} finance schema: "
            f"missing {shown}"
        )
