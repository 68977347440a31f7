"""Database activities: evidence, fencing, promotion, point-in-time restore, backups, secrets.

Each activity parses its payload into a model of ``shared.recovery``, calls the plain function of
the same name below (which the tests call directly), and returns the result as JSON. ARM calls go
through ``shared.azure_clients``; SQL goes straight to the servers with short timeouts. The
helpers at the top (Key Vault, connections, long-running operations, the audit record) are also
used by the other activity modules.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import azure.durable_functions as df
import psycopg
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from psycopg import errors as pg_errors
from psycopg import sql

from shared import azure_clients
from shared.recovery import (
    CREATED_BY,
    CREATED_BY_TAG,
    AppCredential,
    CanaryResult,
    DbEvidence,
    DbServer,
    EarlierObservation,
    EvidenceRequest,
    FenceFacts,
    FenceRequest,
    FenceResult,
    ForensicBackupRequest,
    ForensicBackupResult,
    PitrRequest,
    PitrResult,
    PromoteRequest,
    PromoteResult,
    SecretInfo,
    SecretRef,
    SecretsRequest,
    SecretsResult,
    ServerObservation,
    TrafficEndpoint,
    WriteProof,
    decide_promote_option,
    estimate_exposure,
    evaluate_fence,
    forensic_backup_name,
    now_utc,
    parse_resource_id,
    rpo_within_target,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

# Every ARM call states its timeouts; the SDK's own retry policy (with Retry-After) stays on.
ARM_TIMEOUTS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 30}
STATEMENT_TIMEOUT_MS = 10_000
PROBE_TABLE = "dr_write_probe"
ROTATED_BY_TAG = "rotated-by"


class ActivityError(RuntimeError):
    """An activity could not do its job; the message says what failed and why."""


class StepLog(logging.LoggerAdapter):
    """A logger whose every record starts with the incident and plan step it runs for."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        prefix = f"'{self.extra['incident_id']}' {self.extra['step_id']}: ".replace("%", "%%")
        kwargs.setdefault("extra", {}).update(self.extra)
        return prefix + str(msg), kwargs


def step_log(logger: logging.Logger, req: Any) -> StepLog:
    return StepLog(logger, {"incident_id": req.incident_id, "step_id": req.step_id})


# --------------------------------------------------------------------------------------------
# Helpers shared by the recovery activities


def audit(incident_id: str, step_id: str, action: str, outcome: str, **detail: Any) -> None:
    """Append one record to the incident's audit trail: what this step did and how it ended.

    The trail is ``shared.audit``'s hash-chained blob in ``AzureWebJobsStorage``. Without that
    setting (a plain test run) the record goes to the log only; with it, a failed append fails
    the activity, so no step runs unrecorded (each activity is safe to retry).
    """
    log.info("audit %s/%s: %s -> %s", incident_id, step_id, action, outcome)
    writer = _audit_writer()
    if writer is None:
        return
    writer.append(
        incident_id,
        action,
        actor=f"activity:{action}",
        reason=outcome,
        detail={"step_id": step_id, **detail},
    )


_writers: dict[str, Any] = {}


def _audit_writer() -> Any | None:
    storage = os.environ.get("AzureWebJobsStorage")
    if not storage:
        # Limitation: with no storage configured (plain test runs) there is no trail to append
        # to; the record is only logged.
        if not _writers.get(""):
            log.warning("AzureWebJobsStorage is unset: audit records go to the log only")
            _writers[""] = True
        return None
    if storage not in _writers:
        from shared.audit import AuditWriter

        _writers[storage] = AuditWriter(storage)
    return _writers[storage]


def vault_url(ref: SecretRef) -> str:
    url = ref.vault_url or os.environ.get("DR_KEYVAULT_URL")
    if not url:
        raise ActivityError(
            f"secret {ref.name!r} names no vault and the DR_KEYVAULT_URL app setting is unset"
        )
    return url


def read_secret(ref: SecretRef) -> tuple[str, Any]:
    """The value of a Key Vault secret and the SDK's secret object (for its version)."""
    client = azure_clients.secret_client(vault_url(ref), **ARM_TIMEOUTS)
    try:
        secret = client.get_secret(ref.name, ref.version, **ARM_TIMEOUTS)
    except ResourceNotFoundError as exc:
        raise ActivityError(f"Key Vault secret {ref.name!r} does not exist") from exc
    except AzureError as exc:
        raise ActivityError(
            f"reading Key Vault secret {ref.name!r} failed: {azure_error(exc)}"
        ) from exc
    finally:
        client.close()
    return secret.value, secret


def write_secret(ref: SecretRef, value: str, tags: dict[str, str] | None = None) -> str | None:
    """Set a new version of a Key Vault secret; returns the new version."""
    client = azure_clients.secret_client(vault_url(ref), **ARM_TIMEOUTS)
    try:
        secret = client.set_secret(ref.name, value, tags=tags, **ARM_TIMEOUTS)
    except AzureError as exc:
        raise ActivityError(
            f"writing Key Vault secret {ref.name!r} failed: {azure_error(exc)}"
        ) from exc
    finally:
        client.close()
    return secret.properties.version


def azure_error(exc: Exception) -> str:
    """A one-line account of an Azure SDK error: status, ARM error code and message."""
    if isinstance(exc, HttpResponseError):
        code = getattr(getattr(exc, "error", None), "code", None)
        status = getattr(exc, "status_code", None)
        message = str(exc.message or exc).splitlines()[0]
        return f"HTTP {status} {code or ''}: {message}".replace("  ", " ")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def wait_lro(poller: Any, timeout_s: float, what: str) -> Any:
    """Wait for a long-running operation; raise naming ``what`` on failure or timeout."""
    try:
        # wait() then result(): result() on an unfinished operation would parse the last
        # in-progress answer as if it were the final one.
        poller.wait(timeout=timeout_s)
        if not poller.done():
            raise ActivityError(f"{what} did not finish within {timeout_s:.0f} s")
        return poller.result(timeout=1)
    except AzureError as exc:
        raise ActivityError(f"{what} failed: {azure_error(exc)}") from exc


def pg_client(server_id: str) -> Any:
    return azure_clients.postgres_client(parse_resource_id(server_id).subscription)


def arm_get_server(server_id: str, *, quick: bool = False) -> Any:
    """ARM's view of a server; ``quick`` retries once only (evidence must not wait long)."""
    rid = parse_resource_id(server_id)
    client = pg_client(server_id)
    retries = {"retry_total": 1} if quick else {}
    try:
        return client.servers.get(rid.resource_group, rid.name, **ARM_TIMEOUTS, **retries)
    finally:
        client.close()


def prop(obj: Any, *path: str) -> Any:
    """Follow attributes through an SDK model, None when any step is missing."""
    for name in path:
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


AZURE_PG_SUFFIX = ".postgres.database.azure.com"
_known_addresses: dict[str, tuple[str, int]] = {}


def server_address(
    server: DbServer, arm_server: Any | None = None, *, ask_arm: bool = True
) -> tuple[str, int]:
    """Host and port of a server.

    The request's ``host`` wins. Otherwise ARM's ``fullyQualifiedDomainName`` and, when the
    server carries one, its ``localPort`` tag (local PostgreSQL instances each listen on their
    own port). When ARM cannot be asked (a failed region), the address last seen in this
    process is used, else, on public Azure only, Azure's naming convention
    ``<name>.postgres.database.azure.com``. Against another ARM endpoint (local Azure, whose
    servers have no such name) that name is not guessed: looking it up would only send a DNS
    query off the machine.
    """
    if server.host:
        return server.host, server.port
    key = server.server_id.lower()
    if arm_server is None:
        try:
            if not ask_arm:
                raise ActivityError("ARM was not asked")
            arm_server = arm_get_server(server.server_id)
        except (AzureError, ActivityError) as exc:
            if key in _known_addresses:
                return _known_addresses[key]
            if azure_clients.AzureSettings.from_env().arm_endpoint not in (
                None,
                azure_clients.PUBLIC_ARM_ENDPOINT,
            ):
                raise ActivityError(
                    f"ARM cannot say where {server.resource.name} is ({exc}), and Azure's "
                    "naming convention only holds on public Azure"
                ) from exc
            # Limitation: local PostgreSQL instances are found by the port ARM reports; with
            # ARM silent and nothing seen earlier in this process, only a host/port given in
            # the request reaches them (on Azure the conventional name below is right).
            log.info("ARM cannot say where %s is (%s); using Azure's name", key, exc)
            return server.resource.name + AZURE_PG_SUFFIX, server.port
    fqdn = prop(arm_server, "properties", "fully_qualified_domain_name")
    if not fqdn:
        raise ActivityError(f"server {server.server_id} has no fullyQualifiedDomainName in ARM")
    tags = getattr(arm_server, "tags", None) or {}
    port = int(tags.get("localPort") or server.port)
    _known_addresses[key] = (str(fqdn), port)
    return str(fqdn), port


def _conninfo(
    host: str, port: int, dbname: str, user: str, password: str | None, timeout_s: float, ssl: str
) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "dbname": dbname,
        "user": user,
        "password": password,
        "sslmode": ssl,
        # libpq takes whole seconds; round up so a 1.5 s budget is not cut to 1 s.
        "connect_timeout": max(1, math.ceil(timeout_s)),
        "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        "application_name": "odoo-finance-dr",
    }


def admin_connect(
    server: DbServer, timeout_s: float, arm_server: Any | None = None, *, ask_arm: bool = True
) -> psycopg.Connection:
    """An autocommit connection as the server's admin, password from Key Vault if one is set."""
    host, port = server_address(server, arm_server, ask_arm=ask_arm)
    password = None
    if server.admin_password_secret is not None:
        password = read_secret(server.admin_password_secret)[0]
    params = _conninfo(
        host, port, server.dbname, server.admin_user, password, timeout_s, server.sslmode
    )
    return psycopg.connect(autocommit=True, **params)


@contextmanager
def admin_connection(
    server: DbServer, timeout_s: float, arm_server: Any | None = None, *, ask_arm: bool = True
) -> Iterator[psycopg.Connection]:
    """``admin_connect`` as a context manager that closes the connection."""
    with admin_connect(server, timeout_s, arm_server, ask_arm=ask_arm) as conn:
        yield conn


def app_connection(
    host: str, port: int, app: AppCredential, password: str, timeout_s: float, ssl: str
) -> psycopg.Connection:
    params = _conninfo(host, port, app.dbname, app.role, password, timeout_s, ssl)
    return psycopg.connect(autocommit=True, **params)


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# db_evidence


def evidence(req: EvidenceRequest) -> DbEvidence:
    """Gather what both servers say and estimate the data a promotion now would lose."""
    primary = observe_server(req.primary, req.connect_timeout_s, primary=True)
    replica = observe_server(req.replica, req.connect_timeout_s, primary=False)
    now = now_utc()

    exposure = estimate_exposure(primary, replica, req.earlier, now)
    option, option_reason = decide_promote_option(primary, replica)
    within, rpo_reason = (None, None)
    if req.rpo_target_s is not None:
        within, rpo_reason = rpo_within_target(exposure, req.rpo_target_s)

    carry = req.earlier
    if primary.reachable and not primary.in_recovery:
        carry = EarlierObservation(
            observed_at=primary.observed_at,
            primary_lsn=primary.current_lsn,
            primary_last_commit_at=primary.last_commit_at,
        )
    backup_age = None
    if primary.latest_backup_at:
        backup_age = max(0.0, (now - primary.latest_backup_at).total_seconds())

    result = DbEvidence(
        observed_at=now,
        primary=primary,
        replica=replica,
        lag_bytes=exposure.bytes,
        lag_seconds=exposure.seconds,
        exposure=exposure,
        promote_option=option,
        promote_reason=option_reason,
        rpo_within_target=within,
        rpo_reason=rpo_reason,
        backup_age_s=backup_age,
        carry_forward=carry,
    )
    audit(
        req.incident_id,
        req.step_id,
        "db_evidence",
        "gathered",
        primary_reachable=primary.reachable,
        replica_reachable=replica.reachable,
        exposure=exposure.reason,
        promote=option_reason,
    )
    return result


def observe_server(server: DbServer, timeout_s: float, *, primary: bool) -> ServerObservation:
    """ARM's view and the server's own view of one server; a failure is recorded, not raised."""
    arm_server, arm_error = None, None
    try:
        arm_server = arm_get_server(server.server_id, quick=True)
    except AzureError as exc:
        arm_error = azure_error(exc)
        log.info("ARM GET of %s failed: %s", server.server_id, arm_error)

    fields: dict[str, Any] = {
        "arm_state": _text(prop(arm_server, "properties", "state")),
        "arm_role": _text(prop(arm_server, "properties", "replica", "role")),
        "arm_replication_state": _text(
            prop(arm_server, "properties", "replica", "replication_state")
        ),
        "arm_error": arm_error,
        "earliest_restore_at": prop(arm_server, "properties", "backup", "earliest_restore_date"),
        "latest_backup_at": _latest_backup(server) if primary and arm_server else None,
    }
    try:
        with admin_connection(server, timeout_s, arm_server, ask_arm=False) as conn:
            fields.update(_primary_sql(conn) if primary else _replica_sql(conn))
    except (psycopg.Error, OSError, ActivityError) as exc:
        return ServerObservation(
            server_id=server.server_id,
            reachable=False,
            error=first_line(exc),
            observed_at=now_utc(),
            **fields,
        )
    return ServerObservation(server_id=server.server_id, reachable=True, **fields)


def _latest_backup(server: DbServer) -> datetime | None:
    """Completion time of the server's newest backup; None when ARM cannot list them."""
    rid = server.resource
    client = pg_client(server.server_id)
    try:
        backups = client.backups_automatic_and_on_demand.list_by_server(
            rid.resource_group, rid.name, **ARM_TIMEOUTS, retry_total=1
        )
        times = [prop(b, "properties", "completed_time") for b in backups]
    except AzureError as exc:
        log.info("backups of %s could not be listed: %s", rid.name, azure_error(exc))
        return None
    finally:
        client.close()
    return max((t for t in times if t is not None), default=None)


def _text(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _primary_sql(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute(
        "SELECT now(), pg_is_in_recovery(),"
        " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END"
    ).fetchone()
    facts: dict[str, Any] = {"observed_at": row[0], "in_recovery": row[1], "current_lsn": row[2]}
    try:
        last = conn.execute("SELECT (pg_last_committed_xact()).timestamp").fetchone()
        facts["last_commit_at"] = last[0]
    except pg_errors.ObjectNotInPrerequisiteState:
        # Limitation: without track_commit_timestamp the primary cannot say when it last
        # committed, so the exposure is known in bytes only.
        log.info("track_commit_timestamp is off; the primary's last commit time is unknown")
    return facts


def _replica_sql(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute(
        "SELECT now(), pg_is_in_recovery(), pg_last_wal_receive_lsn()::text,"
        " pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(),"
        " (SELECT status FROM pg_stat_wal_receiver LIMIT 1)"
    ).fetchone()
    return {
        "observed_at": row[0],
        "in_recovery": row[1],
        "receive_lsn": row[2],
        "replay_lsn": row[3],
        "last_replay_at": row[4],
        "wal_receiver_status": row[5],
    }


# --------------------------------------------------------------------------------------------
# db_fence


def fence(req: FenceRequest) -> FenceResult:
    """Make the old primary unable to take the application's writes, and prove it.

    Order: read the application's current (old) password; shut the role out on the old primary
    when it answers; stop it through ARM; disable its traffic endpoint; rotate the password in
    Key Vault; then try a write with the old password, which must fail.
    """
    old_password, secret = read_secret(req.app.password_secret)
    host, port = _fence_address(req.old_primary)

    password_rotated, shut_detail = _shut_out_role(req, host, port)
    stopped, stop_detail = None, "not asked to stop it"
    if req.stop_server == "always" or (
        req.stop_server == "unless_shut_out" and not password_rotated
    ):
        stopped, stop_detail = _stop_server(req)
    endpoint_disabled = None
    if req.endpoint is not None:
        endpoint_disabled = set_endpoint_status(req.endpoint, "Disabled")[0]
    new_version = _rotate_once(req, secret)
    canary = canary_write(host, port, req.app, old_password, req.connect_timeout_s, req.old_primary)

    facts = FenceFacts(
        server_stopped=stopped,
        server_stop_detail=stop_detail,
        secret_rotated=new_version is not None,
        server_password_rotated=password_rotated,
        server_password_detail=shut_detail,
        endpoint_disabled=endpoint_disabled,
        canary=canary,
    )
    fenced, proofs, gaps = evaluate_fence(facts)
    result = FenceResult(
        fenced=fenced, proofs=proofs, gaps=gaps, facts=facts, new_secret_version=new_version
    )
    audit(
        req.incident_id,
        req.step_id,
        "db_fence",
        "fenced" if fenced else "not fenced",
        server=req.old_primary.server_id,
        proofs=proofs,
        gaps=gaps,
    )
    return result


def _rotate_once(req: FenceRequest, current: Any) -> str | None:
    """Rotate the application's password, once per incident.

    A second fence of the same incident (the old primary came back, say) must not rotate again:
    the promoted server was given the first new password, and a second one would lock the
    application out of it. The version this incident wrote is recognised by its tags.
    """
    tags = getattr(current.properties, "tags", None) or {}
    if tags.get(ROTATED_BY_TAG) == CREATED_BY and tags.get("incident") == req.incident_id:
        step_log(log, req).info("the password was already rotated for this incident; kept")
        return current.properties.version
    return write_secret(
        req.app.password_secret,
        secrets.token_urlsafe(24),
        tags={ROTATED_BY_TAG: CREATED_BY, "incident": req.incident_id},
    )


def _fence_address(server: DbServer) -> tuple[str | None, int]:
    try:
        return server_address(server)
    except (AzureError, ActivityError) as exc:
        log.info("address of %s unknown (%s); no canary possible", server.server_id, exc)
        return None, server.port


def _shut_out_role(req: FenceRequest, host: str | None, port: int) -> tuple[bool | None, str]:
    """On the old primary: the role NOLOGIN with an unknown password and read-only by default,
    its open sessions ended. (None, why) when the server does not answer; (False, why) when it
    answers but refuses the change (the admin lacks ADMIN OPTION on the role, say)."""
    slog = step_log(log, req)
    if host is None:
        return None, "its address is unknown"
    server = req.old_primary.model_copy(update={"host": host, "port": port})
    role = sql.Identifier(req.app.role)
    try:
        conn = admin_connect(server, req.connect_timeout_s)
    except (psycopg.Error, OSError) as exc:
        slog.info("old primary %s does not answer: %s", server.server_id, first_line(exc))
        return None, first_line(exc)
    try:
        with conn:
            if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return True, "it is in recovery, so it takes no writes"
            conn.execute(
                sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD {}").format(
                    role, sql.Literal(secrets.token_urlsafe(24))
                )
            )
            conn.execute(
                sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role)
            )
            ended = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s",
                (req.app.role,),
            ).fetchone()[0]
    except psycopg.Error as exc:
        slog.warning("could not shut %s out of %s: %s", req.app.role, host, first_line(exc))
        return False, first_line(exc)
    slog.info("fenced role %s on %s; ended %s of its sessions", req.app.role, host, ended)
    return True, f"role {req.app.role} set NOLOGIN and read-only; {ended} sessions ended"


def _stop_server(req: FenceRequest) -> tuple[bool | None, str]:
    rid = req.old_primary.resource
    try:
        current = arm_get_server(req.old_primary.server_id)
        if _text(prop(current, "properties", "state")) == "Stopped":
            return True, "it was already Stopped"
        client = pg_client(req.old_primary.server_id)
        try:
            poller = client.servers.begin_stop(rid.resource_group, rid.name, **ARM_TIMEOUTS)
            wait_lro(poller, req.stop_timeout_s, f"stopping {rid.name}")
        finally:
            client.close()
    except (AzureError, ActivityError) as exc:
        return False, azure_error(exc) if isinstance(exc, AzureError) else str(exc)
    return True, "stop operation Succeeded"


def set_endpoint_status(endpoint: TrafficEndpoint, status: str) -> tuple[bool, str]:
    """Enable or disable one Traffic Manager endpoint; (done, detail)."""
    rid = parse_resource_id(endpoint.profile_id)
    client = azure_clients.trafficmanager_client(rid.subscription)
    try:
        client.endpoints.update(
            rid.resource_group,
            rid.name,
            endpoint.endpoint_type,
            endpoint.name,
            {"properties": {"endpointStatus": status}},
            **ARM_TIMEOUTS,
        )
    except AzureError as exc:
        log.info("setting endpoint %s to %s failed: %s", endpoint.name, status, azure_error(exc))
        return False, azure_error(exc)
    finally:
        client.close()
    return True, f"endpoint {endpoint.name} is {status}"


def canary_write(
    host: str | None,
    port: int,
    app: AppCredential,
    password: str,
    timeout_s: float,
    server: DbServer,
) -> CanaryResult:
    """Try a write as the application with ``password``; the write leaves nothing behind."""
    if host is None:
        return CanaryResult(attempted=False, wrote=False, error="the server's address is unknown")
    try:
        with app_connection(host, port, app, password, timeout_s, server.sslmode) as conn:
            conn.execute("CREATE TEMP TABLE dr_fence_canary (at timestamptz)")
            conn.execute("INSERT INTO dr_fence_canary VALUES (now())")
    except pg_errors.ReadOnlySqlTransaction as exc:
        return _refused(exc, "read_only")
    except psycopg.OperationalError as exc:
        text = first_line(exc).lower()
        kind = "other"
        if "password" in text or "not permitted to log in" in text or "authentication" in text:
            kind = "authentication"
        elif any(w in text for w in ("refused", "timeout", "could not", "no route", "closed")):
            kind = "connection"
        return _refused(exc, kind)
    except (psycopg.Error, OSError) as exc:
        return _refused(exc, "other")
    return CanaryResult(attempted=True, wrote=True)


def _refused(exc: Exception, kind: str) -> CanaryResult:
    return CanaryResult(attempted=True, wrote=False, error=first_line(exc), refused_by=kind)


# --------------------------------------------------------------------------------------------
# db_promote


def promote(req: PromoteRequest) -> PromoteResult:
    """Promote the replica to a standalone server (planned or forced) and prove it writable.

    Idempotent: a server that ARM already reports with no replica role and that is out of
    recovery is not promoted again. With ``req.app`` the application's role gets its Key Vault
    password and LOGIN on the promoted server, since fencing changed both.
    """
    slog = step_log(log, req)
    started = time.monotonic()
    rid = req.replica.resource
    before = arm_get_server(req.replica.server_id)
    role_before = _text(prop(before, "properties", "replica", "role"))
    already = role_before in (None, "None", "Primary") and not _in_recovery(req, before)

    if not already:
        body = promote_body(req.option)
        slog.info("promoting %s (%s): %s", rid.name, req.option, req.reason or "no reason given")
        client = pg_client(req.replica.server_id)
        try:
            poller = client.servers.begin_update(rid.resource_group, rid.name, body, **ARM_TIMEOUTS)
            wait_lro(poller, req.timeout_s, f"{req.option.lower()} promotion of {rid.name}")
        except AzureError as exc:
            raise ActivityError(f"promotion of {rid.name} failed: {azure_error(exc)}") from exc
        finally:
            client.close()

    after = arm_get_server(req.replica.server_id)
    role_after = _text(prop(after, "properties", "replica", "role"))
    _wait_out_of_recovery(req, after)
    if req.app is not None:
        apply_app_password(req.replica, req.app, req.connect_timeout_s, after)
    proof = write_probe(req.replica, req.incident_id, req.step_id, req.connect_timeout_s, after)
    if not proof.writable:
        raise ActivityError(f"{rid.name} was promoted but does not take writes: {proof.detail}")

    result = PromoteResult(
        server_id=req.replica.server_id,
        option=req.option,
        promoted=True,
        already_promoted=already,
        role_after=role_after,
        writable=proof,
        duration_s=round(time.monotonic() - started, 3),
        reason=(
            "the server was already promoted; nothing was done twice"
            if already
            else f"{req.option.lower()} promotion to a standalone server: {req.reason}".rstrip(": ")
        ),
    )
    audit(
        req.incident_id,
        req.step_id,
        "db_promote",
        "already promoted" if already else "promoted",
        server=req.replica.server_id,
        option=req.option,
        write_proof=proof.detail,
    )
    return result


def promote_body(option: str) -> dict[str, Any]:
    """The Servers_Update body of a promotion to an independent (standalone) server."""
    return {"properties": {"replica": {"promoteMode": "Standalone", "promoteOption": option}}}


def pitr_body(
    location: str, source_id: str, point_in_time: datetime, tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """The Servers_CreateOrUpdate body of a point-in-time restore of ``source_id``."""
    body: dict[str, Any] = {"tags": tags} if tags else {}
    return body | {
        "location": location,
        "properties": {
            "createMode": "PointInTimeRestore",
            "sourceServerResourceId": source_id,
            "pointInTimeUTC": point_in_time.isoformat().replace("+00:00", "Z"),
        },
    }


def _in_recovery(req: PromoteRequest, arm_server: Any) -> bool:
    try:
        with admin_connection(req.replica, req.connect_timeout_s, arm_server) as conn:
            return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])
    except (psycopg.Error, OSError) as exc:
        raise ActivityError(
            f"the replica {req.replica.server_id} does not answer: {first_line(exc)}"
        ) from exc


def _wait_out_of_recovery(req: PromoteRequest, arm_server: Any, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while _in_recovery(req, arm_server):
        if time.monotonic() > deadline:
            raise ActivityError(
                f"ARM reports {req.replica.resource.name} promoted, but it is still in "
                f"recovery after {limit_s:.0f} s"
            )
        time.sleep(0.5)


def apply_app_password(
    server: DbServer, app: AppCredential, timeout_s: float, arm_server: Any = None
) -> None:
    """Give the application role LOGIN and its current Key Vault password on ``server``."""
    password, _ = read_secret(app.password_secret)
    with admin_connection(server, timeout_s, arm_server) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(app.role), sql.Literal(password)
            )
        )
        # Undo the fence's per-role read-only default, which replicated with the catalog.
        conn.execute(
            sql.SQL("ALTER ROLE {} RESET default_transaction_read_only").format(
                sql.Identifier(app.role)
            )
        )


def write_probe(
    server: DbServer, incident_id: str, step_id: str, timeout_s: float, arm_server: Any = None
) -> WriteProof:
    """Commit a write on ``server`` to show it takes writes.

    The write goes to a temporary table: it needs a read-write server and a transaction id like
    any write, needs no privilege on a schema, and leaves nothing behind in the database.
    """
    try:
        with admin_connection(server, timeout_s, arm_server) as conn:
            conn.execute(
                f"CREATE TEMP TABLE {PROBE_TABLE} (incident_id text, step_id text,"
                " written_at timestamptz DEFAULT now())"
            )
            row = conn.execute(
                f"INSERT INTO {PROBE_TABLE} (incident_id, step_id) VALUES (%s, %s)"
                " RETURNING written_at, txid_current()",
                (incident_id, step_id),
            ).fetchone()
    except (psycopg.Error, OSError, ActivityError) as exc:
        return WriteProof(writable=False, detail=first_line(exc))
    return WriteProof(
        writable=True, detail=f"committed a write (transaction {row[1]}) at {row[0].isoformat()}"
    )


# --------------------------------------------------------------------------------------------
# db_pitr


def pitr(req: PitrRequest) -> PitrResult:
    """Restore the source at a point in time into an isolated new server, wait, and check it."""
    slog = step_log(log, req)
    started = time.monotonic()
    source = req.source.resource
    target_id = (
        f"/subscriptions/{source.subscription}/resourceGroups/{source.resource_group}"
        f"/providers/Microsoft.DBforPostgreSQL/flexibleServers/{req.target_name}"
    )
    client = pg_client(req.source.server_id)
    try:
        existing = _get_or_none(client, source.resource_group, req.target_name)
        if existing is None:
            src = client.servers.get(source.resource_group, source.name, **ARM_TIMEOUTS)
            tags = {CREATED_BY_TAG: CREATED_BY, "incident": req.incident_id}
            body = pitr_body(src.location, req.source.server_id, req.point_in_time, tags)
            slog.info("restoring %s at %s into %s", source.name, req.point_in_time, req.target_name)
            poller = client.servers.begin_create_or_update(
                source.resource_group, req.target_name, body, **ARM_TIMEOUTS
            )
            wait_lro(poller, req.timeout_s, f"point-in-time restore into {req.target_name}")
        restored = client.servers.get(source.resource_group, req.target_name, **ARM_TIMEOUTS)
    except AzureError as exc:
        raise ActivityError(
            f"point-in-time restore into {req.target_name}: {azure_error(exc)}"
        ) from exc
    finally:
        client.close()

    target = req.source.model_copy(
        update={"server_id": target_id, "host": req.target_host, "port": req.target_port or 5432}
    )
    host, port = server_address(target, restored)
    target = target.model_copy(update={"host": host, "port": port})
    try:
        with admin_connection(target, req.connect_timeout_s) as conn:
            in_recovery = bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])
    except (psycopg.Error, OSError) as exc:
        raise ActivityError(f"restored server {req.target_name} does not answer: {exc}") from exc
    if in_recovery:
        raise ActivityError(f"restored server {req.target_name} is still in recovery")

    result = PitrResult(
        server_id=target_id,
        server=target,
        point_in_time=req.point_in_time,
        already_existed=existing is not None,
        state=_text(prop(restored, "properties", "state")),
        in_recovery=in_recovery,
        host=host,
        port=port,
        duration_s=round(time.monotonic() - started, 3),
        detail=(
            f"{req.target_name} already existed; checked it answers and takes writes"
            if existing is not None
            else f"restored {source.name} at {req.point_in_time.isoformat()} into "
            f"{req.target_name}; it answers and is out of recovery"
        ),
    )
    audit(
        req.incident_id,
        req.step_id,
        "db_pitr",
        "restored" if existing is None else "already restored",
        source=req.source.server_id,
        target=target_id,
        point_in_time=req.point_in_time.isoformat(),
    )
    return result


def _get_or_none(client: Any, rg: str, name: str) -> Any | None:
    try:
        return client.servers.get(rg, name, **ARM_TIMEOUTS)
    except ResourceNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# db_forensic_backup


def forensic_backup(req: ForensicBackupRequest) -> ForensicBackupResult:
    """Take an on-demand backup under a name of its own, so investigators can find it."""
    rid = req.server.resource
    name = req.backup_name or forensic_backup_name(req.incident_id)
    client = pg_client(req.server.server_id)
    ops = client.backups_automatic_and_on_demand
    try:
        existing = _backup_or_none(ops, rid.resource_group, rid.name, name)
        if existing is None:
            poller = ops.begin_create(rid.resource_group, rid.name, name, **ARM_TIMEOUTS)
            wait_lro(poller, req.timeout_s, f"on-demand backup {name} of {rid.name}")
            existing = ops.get(rid.resource_group, rid.name, name, **ARM_TIMEOUTS)
            already = False
        else:
            already = True
    except AzureError as exc:
        raise ActivityError(
            f"on-demand backup {name} of {rid.name} failed: {azure_error(exc)}"
        ) from exc
    finally:
        client.close()

    completed = prop(existing, "properties", "completed_time")
    result = ForensicBackupResult(
        server_id=req.server.server_id,
        backup_name=name,
        already_existed=already,
        completed_at=completed,
        detail=f"backup {name} of {rid.name} {'already existed' if already else 'taken'}",
    )
    audit(req.incident_id, req.step_id, "db_forensic_backup", result.detail, backup=name)
    return result


def _backup_or_none(ops: Any, rg: str, server: str, name: str) -> Any | None:
    try:
        return ops.get(rg, server, name, **ARM_TIMEOUTS)
    except ResourceNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# db_secrets


def db_secrets(req: SecretsRequest) -> SecretsResult:
    """Resolve database secrets to references (version, id); values only when asked."""
    found: dict[str, SecretInfo] = {}
    for key, ref in req.secrets.items():
        value, secret = read_secret(ref)
        found[key] = SecretInfo(
            name=ref.name,
            vault_url=vault_url(ref),
            version=secret.properties.version,
            id=secret.id,
            updated_at=secret.properties.updated_on,
            value=value if req.reveal else None,
        )
    audit(
        req.incident_id,
        req.step_id,
        "db_secrets",
        "revealed" if req.reveal else "resolved",
        secrets=sorted(found),
    )
    return SecretsResult(secrets=found, revealed=req.reveal)


# --------------------------------------------------------------------------------------------
# Function bindings


@bp.activity_trigger(input_name="payload", activity="db_evidence")
def db_evidence(payload: dict) -> dict:
    return evidence(EvidenceRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="db_fence")
def db_fence(payload: dict) -> dict:
    return fence(FenceRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="db_promote")
def db_promote(payload: dict) -> dict:
    return promote(PromoteRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="db_pitr")
def db_pitr(payload: dict) -> dict:
    return pitr(PitrRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="db_forensic_backup")
def db_forensic_backup(payload: dict) -> dict:
    return forensic_backup(ForensicBackupRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="db_secrets")
def db_secrets_activity(payload: dict) -> dict:
    return db_secrets(SecretsRequest.model_validate(payload)).model_dump(mode="json")
