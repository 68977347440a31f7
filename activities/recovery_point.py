"""Recovery point activities: find the last good point in time before damage to the books, and
delete a server a point-in-time restore created (the undo of ``db_pitr``).

The search reads the damaged server only (a read-only session): posted journal entries written
in the suspected window that fail the ledger checks (lines that do not balance, or no lines at
all), timed by the commit timestamp of the transaction that wrote them (``track_commit_timestamp``,
a server parameter on Azure and on in local Azure; without it the rows' ``write_date`` stands
in). The recovery point is one millisecond before the earliest.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import psycopg
from azure.core.exceptions import AzureError, ResourceNotFoundError

from activities.database import (
    ARM_TIMEOUTS,
    ActivityError,
    admin_connection,
    audit,
    azure_error,
    first_line,
    pg_client,
    step_log,
    wait_lro,
)
from shared.config import ConfigError, cached_config
from shared.recovery import CREATED_BY, CREATED_BY_TAG, parse_resource_id
from shared.recovery_extra import (
    MILLISECOND,
    DamagedMove,
    DropServerRequest,
    DropServerResult,
    FindRecoveryPointRequest,
    RecoveryPointResult,
    environment_name,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

# No-damage fallback: a point this far before the suspected time.
FALLBACK = timedelta(seconds=1)

# Posted moves written in the window (the move row or any of its lines) whose lines do not sum
# to zero at the company currency's precision, or that have no lines. Each row's commit time is
# the earliest commit among the pieces written in the window: restoring to before it is safe
# even when a later transaction touched the move again.
DAMAGE_SQL = """
WITH touched AS (
    SELECT m.id FROM account_move m WHERE m.write_date >= %(since)s
    UNION
    SELECT l.move_id FROM account_move_line l WHERE l.write_date >= %(since)s
), sums AS (
    SELECT l.move_id, count(*) AS n, sum(l.balance) AS balance,
           min(pg_xact_commit_timestamp(l.xmin))
               FILTER (WHERE l.write_date >= %(since)s) AS line_commit,
           min(l.write_date) FILTER (WHERE l.write_date >= %(since)s) AS line_written
    FROM account_move_line l
    WHERE l.move_id IN (SELECT id FROM touched)
    GROUP BY l.move_id
), damaged AS (
    SELECT m.id, m.name,
           CASE WHEN s.move_id IS NULL THEN 'posted move without lines'
                ELSE 'lines do not balance (off by ' || round(s.balance, cur.decimal_places) || ')'
           END AS problem,
           least(CASE WHEN m.write_date >= %(since)s THEN pg_xact_commit_timestamp(m.xmin) END,
                 s.line_commit) AS committed_at,
           least(CASE WHEN m.write_date >= %(since)s THEN m.write_date END,
                 s.line_written) AS written_at
    FROM account_move m
    JOIN touched t ON t.id = m.id
    LEFT JOIN sums s ON s.move_id = m.id
    JOIN res_company co ON co.id = m.company_id
    JOIN res_currency cur ON cur.id = co.currency_id
    WHERE m.state = 'posted'
      AND (s.move_id IS NULL OR round(s.balance, cur.decimal_places) <> 0)
)
SELECT id, name, problem, committed_at, written_at, count(*) OVER () AS total
FROM damaged
ORDER BY coalesce(committed_at, written_at AT TIME ZONE 'UTC'), id
LIMIT %(limit)s
"""


def find_recovery_point(req: FindRecoveryPointRequest) -> RecoveryPointResult:
    """The last good point in time: just before the earliest damaged write, or, with no damage
    found, just before the suspected start."""
    slog = step_log(log, req)
    since = req.window_start()
    database = req.database or _database_of(req.incident_id)
    target = req.server.model_copy(update={"dbname": database})
    try:
        with admin_connection(target, req.connect_timeout_s) as conn:
            rows = _damaged_rows(conn, req, since)
    except (psycopg.Error, OSError) as exc:
        raise ActivityError(
            f"searching {req.server.resource.name}/{database} for damage failed: {first_line(exc)}"
        ) from exc

    damaged = [_damaged_move(row) for row in rows]
    total = int(rows[0][5]) if rows else 0
    result = _decide(req, since, damaged, total)
    slog.info("recovery point %s: %s", result.point_in_time.isoformat(), result.reason)
    audit(
        req.incident_id,
        req.step_id,
        "db_find_recovery_point",
        result.reason,
        server=req.server.server_id,
        point_in_time=result.point_in_time.isoformat(),
        damaged_moves=[m.move_id for m in damaged],
    )
    return result


def _database_of(incident_id: str) -> str:
    env = _environment(incident_id)
    return env.postgres.database if env is not None else "odoo"


def _damaged_rows(
    conn: psycopg.Connection, req: FindRecoveryPointRequest, since: datetime
) -> list[tuple]:
    # A read-only session: this runs on the damaged production server while people decide.
    conn.execute("SET default_transaction_read_only = on")
    conn.execute(f"SET statement_timeout = {int(req.statement_timeout_s * 1000)}")
    conn.execute("SET TIME ZONE 'UTC'")
    naive_since = since.astimezone(UTC).replace(tzinfo=None)
    return conn.execute(DAMAGE_SQL, {"since": naive_since, "limit": req.sample_limit}).fetchall()


def _damaged_move(row: tuple) -> DamagedMove:
    move_id, name, problem, committed_at, written_at, _ = row
    if committed_at is not None:
        return DamagedMove(
            move_id=move_id,
            name=name,
            problem=problem,
            committed_at=committed_at.astimezone(UTC),
            commit_time_basis="commit_timestamp",
        )
    return DamagedMove(
        move_id=move_id,
        name=name,
        problem=problem,
        committed_at=written_at.replace(tzinfo=UTC) if written_at else None,
        commit_time_basis="write_date",
    )


def _decide(
    req: FindRecoveryPointRequest, since: datetime, damaged: list[DamagedMove], total: int
) -> RecoveryPointResult:
    timed = [m for m in damaged if m.committed_at is not None]
    first = min(timed, key=lambda m: m.committed_at) if timed else None
    if first is not None:
        point = first.committed_at - MILLISECOND
        basis = "damage_found"
        how = (
            "its commit timestamp"
            if first.commit_time_basis == "commit_timestamp"
            else "its write_date, because the server keeps no commit timestamp for it (a "
            "transaction started earlier may have written it, so check the point)"
        )
        reason = (
            f"{total} posted entries written since {since.isoformat()} fail the ledger checks; "
            f"the earliest, {first.name or first.move_id} ({first.problem}), was committed at "
            f"{first.committed_at.isoformat()} by {how}; the last good point is 1 ms before it"
        )
    else:
        anchor = req.suspected_since or req.before
        point = anchor - FALLBACK
        basis = "no_damage_found"
        reason = (
            f"no posted entry written since {since.isoformat()} fails the ledger checks, so the "
            f"point falls back to 1 s before the suspected start {anchor.isoformat()}"
        )
    if req.before is not None and point >= req.before:
        point = req.before - MILLISECOND
        reason += f"; moved to 1 ms before {req.before.isoformat()}, the latest allowed point"
    return RecoveryPointResult(
        point_in_time=point,
        basis=basis,
        first_damage_at=first.committed_at if first else None,
        damaged_count=total,
        damaged_moves=damaged,
        searched_since=since,
        reason=reason,
    )


# Limitation: deleted entries leave no row to time, so an accidental deletion is found only by
# the sequence checks of validate.finance, not here; the fallback point then applies.


# --------------------------------------------------------------------------------------------
# db_drop_server


def drop_server(req: DropServerRequest) -> DropServerResult:
    """Delete a restored server through ARM; one already gone is success. Only a server this
    product created (its restores carry the ``created-by`` tag) is deleted; a server configured
    as an environment's primary or replica is refused before ARM is asked."""
    slog = step_log(log, req)
    server_id = _server_id(req)
    _refuse_configured(server_id)
    rid = parse_resource_id(server_id)
    client = pg_client(server_id)
    try:
        try:
            existing = client.servers.get(rid.resource_group, rid.name, **ARM_TIMEOUTS)
        except ResourceNotFoundError:
            result = DropServerResult(
                server_id=server_id,
                deleted=False,
                already_gone=True,
                detail=f"{rid.name} does not exist (already deleted)",
            )
        else:
            tags = getattr(existing, "tags", None) or {}
            if tags.get(CREATED_BY_TAG) != CREATED_BY:
                raise ActivityError(
                    f"refusing to delete {rid.name}: it carries no tag {CREATED_BY_TAG}="
                    f"{CREATED_BY}, so this product did not create it"
                )
            slog.info("deleting server %s", rid.name)
            poller = client.servers.begin_delete(rid.resource_group, rid.name, **ARM_TIMEOUTS)
            wait_lro(poller, req.timeout_s, f"deleting server {rid.name}")
            result = DropServerResult(
                server_id=server_id, deleted=True, already_gone=False, detail=f"deleted {rid.name}"
            )
    except AzureError as exc:
        raise ActivityError(f"deleting server {rid.name} failed: {azure_error(exc)}") from exc
    finally:
        client.close()
    audit(req.incident_id, req.step_id, "db_drop_server", result.detail, server=server_id)
    return result


def _server_id(req: DropServerRequest) -> str:
    if not isinstance(req.server, str):
        return req.server.server_id
    if "/" in req.server:
        return req.server
    env = _environment(req.incident_id)
    if env is None:
        raise ActivityError(
            f"server {req.server!r} is a bare name and no environment is configured to say "
            "which subscription and resource group it is in; give its ARM id"
        )
    return (
        f"/subscriptions/{env.subscription_id}/resourceGroups/{env.resource_group}"
        f"/providers/Microsoft.DBforPostgreSQL/flexibleServers/{req.server}"
    )


def _environment(incident_id: str) -> Any | None:
    try:
        config = cached_config()
        name = environment_name(incident_id, list(config.environments))
    except (ConfigError, ValueError) as exc:
        log.info("no environment for %s: %s", incident_id, exc)
        return None
    return config.environments[name]


def _refuse_configured(server_id: str) -> None:
    try:
        match = cached_config().locate(server_id)
    except ConfigError:
        return
    if match is not None and match.component in ("postgres-primary", "postgres-replica"):
        raise ActivityError(
            f"refusing to delete {server_id}: it is the {match.component.split('-')[1]} of "
            f"environment {match.environment}, not a server a restore created"
        )


# --------------------------------------------------------------------------------------------
# Function bindings


@bp.activity_trigger(input_name="payload", activity="db_find_recovery_point")
def db_find_recovery_point(payload: dict) -> dict:
    req = FindRecoveryPointRequest.model_validate(payload)
    return find_recovery_point(req).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="db_drop_server")
def db_drop_server(payload: dict) -> dict:
    return drop_server(DropServerRequest.model_validate(payload)).model_dump(mode="json")
