"""Real local PostgreSQL instances behind the local flexible servers: create, replicate, promote.

Each server is a cluster under ``<state_dir>/postgres/<name>/`` (``data``, ``archive``,
``backups``) run as the postgres user through ``devhost.pg``. A primary archives its WAL into
its own archive (``archive_timeout`` of about a second, so a point-in-time restore finds recent
WAL); a replica is a streaming standby on a replication slot and has no ``restore_command``, so
it can only learn what it received over the wire. Every setting a server runs with is written
by ``_write_conf``, which owns ``postgresql.auto.conf``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from devhost.localazure.arm import ArmError, utc_now_iso
from devhost.pg import (
    SERVER_USER,
    LocalPostgres,
    bin_dir,
    ensure_enterable,
    free_port,
    run_server_tool,
    running_as_root,
)

log = logging.getLogger(__name__)

Role = Literal["Primary", "AsyncReplica", "None"]
TRANSITIONAL = ("Provisioning", "Updating", "Starting", "Stopping", "Dropping", "Restarting")
CONNECT_TIMEOUT_S = 3
SQL_TIMEOUT_MS = 10_000
PROMOTE_TIMEOUT_S = 60
RECOVERY_TIMEOUT_S = 120
WAL_SEGMENT_MB = 1


class DatabaseSpec(BaseModel):
    """A database to create on a new primary, with its owner login and that login's password."""

    name: str
    owner: str | None = None
    owner_password: str | None = None


class BackupRecord(BaseModel):
    """A physical base backup of one server, usable for point-in-time restore."""

    name: str
    backupType: Literal["Full", "Customer On-Demand"] = "Full"
    completedTime: str
    source: str = "Automatic"


class ServerRecord(BaseModel):
    """What local Azure remembers about one server (persisted in ``servers.json``)."""

    name: str
    resourceGroup: str
    location: str
    port: int
    role: Role = "None"
    replicaOf: str | None = None
    state: str = "Provisioning"
    createdAt: str = Field(default_factory=utc_now_iso)
    administratorLogin: str = "odooadmin"
    skuName: str = "Standard_D4ds_v5"
    skuTier: str = "GeneralPurpose"
    storageSizeGB: int = 128
    version: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    partitioned: bool = False
    createMode: str = "Default"
    sourceServer: str | None = None
    pointInTimeUTC: str | None = None
    restoredTo: str | None = Field(default=None, description="where recovery really stopped")
    promotedAt: str | None = None
    backups: list[BackupRecord] = Field(default_factory=list)

    @property
    def slot(self) -> str:
        return self.name.lower().replace("-", "_")

    @property
    def earliest_restore(self) -> str | None:
        return min((b.completedTime for b in self.backups), default=None)


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC) as an aware datetime."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ArmError(400, "InvalidParameterValue", f"{value!r} is not an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def run_sql(
    port: int, query: str | sql.Composable, params: Any = None, *, dbname: str = "postgres"
) -> list[tuple]:
    """Run one statement as the postgres superuser (autocommit); rows, or [] without any."""
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        dbname=dbname,
        connect_timeout=CONNECT_TIMEOUT_S,
        autocommit=True,
    ) as conn:
        conn.execute(f"SET statement_timeout = {SQL_TIMEOUT_MS}")
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def lsn_int(lsn: str | None) -> int:
    if not lsn:
        return 0
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


class PostgresFleet:
    """The local instances of every flexible server, and the operations on them."""

    def __init__(
        self,
        root: Path,
        *,
        archive_timeout_s: int = 1,
        region_failed: Callable[[str], bool] = lambda region: False,
    ):
        self.root = root
        self.archive_timeout_s = archive_timeout_s
        self.region_failed = region_failed
        self.lock = threading.RLock()
        self.records: dict[str, ServerRecord] = {}
        self._server_locks: dict[str, threading.RLock] = {}
        self.version = ""

    # -- records -----------------------------------------------------------------------------

    def get(self, name: str) -> ServerRecord | None:
        with self.lock:
            return self.records.get(name.lower())

    def require(self, name: str) -> ServerRecord:
        rec = self.get(name)
        if rec is None:
            raise ArmError(404, "ResourceNotFound", f"flexible server {name!r} was not found")
        return rec

    def server_lock(self, name: str) -> threading.RLock:
        with self.lock:
            return self._server_locks.setdefault(name.lower(), threading.RLock())

    def add(self, rec: ServerRecord) -> None:
        with self.lock:
            self.records[rec.name.lower()] = rec
        self.save()

    def remove(self, name: str) -> None:
        with self.lock:
            self.records.pop(name.lower(), None)
        self.save()

    def save(self) -> None:
        with self.lock:
            data = "[" + ",".join(r.model_dump_json() for r in self.records.values()) + "]"
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "servers.json.tmp"
        tmp.write_text(data)
        tmp.replace(self.root / "servers.json")

    def load(self) -> bool:
        """Read ``servers.json`` from an earlier run; False when there is none."""
        path = self.root / "servers.json"
        if not path.exists():
            return False
        with self.lock:
            for item in json.loads(path.read_text()):
                rec = ServerRecord.model_validate(item)
                self.records[rec.name.lower()] = rec
        return True

    def replicas_of(self, name: str) -> list[ServerRecord]:
        with self.lock:
            return [
                r
                for r in self.records.values()
                if r.replicaOf and r.replicaOf.lower() == name.lower()
            ]

    # -- paths and instances -----------------------------------------------------------------

    def home(self, rec: ServerRecord) -> Path:
        return self.root / rec.name.lower()

    def archive_dir(self, rec: ServerRecord) -> Path:
        return self.home(rec) / "archive"

    def backup_dir(self, rec: ServerRecord, backup: str) -> Path:
        return self.home(rec) / "backups" / backup

    def instance(self, rec: ServerRecord) -> LocalPostgres:
        return LocalPostgres(self.home(rec) / "data", rec.port)

    def dsn(self, rec: ServerRecord, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={rec.port} user=postgres dbname={dbname}"

    def _prepare_home(self, rec: ServerRecord) -> None:
        for folder in (self.home(rec), self.archive_dir(rec), self.home(rec) / "backups"):
            ensure_enterable(folder)

    def _write_conf(
        self,
        rec: ServerRecord,
        *,
        primary_port: int | None = None,
        recovery: dict[str, str] | None = None,
    ) -> None:
        """Write every setting of ``rec``'s instance (and its standby/recovery signal files)."""
        data = self.home(rec) / "data"
        archive = self.archive_dir(rec)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(rec.port),
            "unix_socket_directories": "''",
            "fsync": "off",
            # Commits are written before they return (as on Azure), so what a client saw
            # committed is in the WAL a standby can receive; fsync stays off for speed.
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "wal_log_hints": "on",
            "max_connections": "100",
            "wal_level": "replica",
            # Limitation: the archive is never pruned; each archive_timeout with writes adds a
            # segment (1 MB), which is what keeps point-in-time restore within a second or two.
            "archive_mode": "on",
            "archive_command": f'\'test ! -f "{archive}/%f" && cp %p "{archive}/%f"\'',
            "archive_timeout": f"'{self.archive_timeout_s}s'",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "max_slot_wal_keep_size": "'1GB'",
            "hot_standby": "on",
            "track_commit_timestamp": "on",
            "wal_receiver_status_interval": "'1s'",
            "wal_retrieve_retry_interval": "'1s'",
            "password_encryption": "'scram-sha-256'",
            "cluster_name": f"'{rec.name}'",
        }
        for signal in ("standby.signal", "recovery.signal"):
            (data / signal).unlink(missing_ok=True)
        if primary_port is not None:
            # A partitioned standby points at a port nothing listens on: its walreceiver keeps
            # failing to connect, exactly as if the network between the regions were cut.
            port = free_port() if rec.partitioned else primary_port
            conf["primary_conninfo"] = (
                f"'host=127.0.0.1 port={port} user=postgres application_name={rec.slot} "
                "connect_timeout=2'"
            )
            conf["primary_slot_name"] = f"'{rec.slot}'"
            (data / "standby.signal").write_text("")
        if recovery is not None:
            conf.update(recovery)
            (data / "recovery.signal").write_text("")
        text = "".join(f"{key} = {value}\n" for key, value in conf.items())
        (data / "postgresql.auto.conf").write_text(text)
        self._hba(data)
        if running_as_root():
            _chown_to_server_user(data)

    @staticmethod
    def _hba(data: Path) -> None:
        # The postgres superuser (local Azure itself, replication) is trusted on loopback; every
        # other login, the administrator and application logins, needs its password.
        # Limitation: any local process may connect as that superuser; fine on one machine.
        (data / "pg_hba.conf").write_text(
            "host all postgres 127.0.0.1/32 trust\n"
            "host replication postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )

    def _primary_port(self, rec: ServerRecord) -> int | None:
        if rec.role != "AsyncReplica" or rec.replicaOf is None:
            return None
        return self.require(rec.replicaOf).port

    def _start(self, rec: ServerRecord) -> None:
        instance = self.instance(rec)
        instance.start()
        if not self.version:
            self.version = str(run_sql(rec.port, "SHOW server_version_num")[0][0])[:2]

    # -- creation ----------------------------------------------------------------------------

    def create_primary(
        self, rec: ServerRecord, databases: list[DatabaseSpec], admin_password: str | None
    ) -> None:
        """A new, empty primary with the administrator login, databases and a base backup."""
        self._prepare_home(rec)
        instance = self.instance(rec)
        instance.init(initdb_args=[f"--wal-segsize={WAL_SEGMENT_MB}"])
        self._write_conf(rec)
        self._start(rec)
        self._create_logins(rec, databases, admin_password)
        rec.role = "Primary"
        self.take_backup(rec, "initial", backup_type="Full", source="Automatic")
        rec.state = "Ready"
        rec.version = self.version
        self.save()
        log.info("primary %s created on port %s", rec.name, rec.port)

    def _create_logins(
        self, rec: ServerRecord, databases: list[DatabaseSpec], admin_password: str | None
    ) -> None:
        self._ensure_login(rec.port, rec.administratorLogin, admin_password, admin=True)
        for db in databases:
            owner = db.owner or rec.administratorLogin
            if owner != rec.administratorLogin:
                self._ensure_login(rec.port, owner, db.owner_password, admin=False)
                # On Azure the administrator creates the application's login and so may alter
                # it (password, LOGIN, fencing); the same right, given explicitly.
                run_sql(
                    rec.port,
                    sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(
                        sql.Identifier(owner), sql.Identifier(rec.administratorLogin)
                    ),
                )
            run_sql(
                rec.port,
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(db.name), sql.Identifier(owner)
                ),
            )

    @staticmethod
    def _ensure_login(port: int, login: str, password: str | None, *, admin: bool) -> None:
        exists = run_sql(port, "SELECT 1 FROM pg_roles WHERE rolname = %s", [login])
        if not exists:
            extra = sql.SQL(" CREATEDB CREATEROLE") if admin else sql.SQL("")
            run_sql(port, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)) + extra)
        if password:
            run_sql(
                port,
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(login), sql.Literal(password)
                ),
            )
        if admin:
            # What azure_pg_admin grants on Azure that the evidence queries need.
            for role in ("pg_monitor", "pg_signal_backend", "pg_read_all_data"):
                run_sql(
                    port,
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(login)),
                )

    def create_replica(self, rec: ServerRecord, primary: ServerRecord) -> None:
        """A streaming standby of ``primary``: a replication slot, pg_basebackup, standby.signal."""
        self._prepare_home(rec)
        self._ensure_slot(primary, rec)
        self._basebackup(rec, primary)
        rec.role = "AsyncReplica"
        rec.replicaOf = primary.name
        self._write_conf(rec, primary_port=primary.port)
        self._start(rec)
        rec.state = "Ready"
        rec.version = self.version
        self.save()
        log.info("replica %s of %s created on port %s", rec.name, primary.name, rec.port)

    @staticmethod
    def _ensure_slot(primary: ServerRecord, replica: ServerRecord) -> None:
        found = run_sql(
            primary.port, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [replica.slot]
        )
        if not found:
            run_sql(primary.port, "SELECT pg_create_physical_replication_slot(%s)", [replica.slot])

    def take_backup(
        self, rec: ServerRecord, name: str, *, backup_type: str, source: str
    ) -> BackupRecord:
        """A plain-format base backup of ``rec`` under ``backups/<name>``."""
        target = self.backup_dir(rec, name)
        if target.exists():
            shutil.rmtree(target)
        run_server_tool(
            [
                str(bin_dir() / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(rec.port),
                "-U",
                "postgres",
                "-D",
                str(target),
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            timeout=300,
        )
        backup = BackupRecord(
            name=name, backupType=backup_type, completedTime=utc_now_iso(), source=source
        )
        with self.lock:
            rec.backups = [b for b in rec.backups if b.name != name] + [backup]
        self.save()
        log.info("base backup %s of %s taken", name, rec.name)
        return backup

    # -- facts -------------------------------------------------------------------------------

    def facts(self, rec: ServerRecord) -> dict[str, Any]:
        """What the instance says right now; ``reachable`` False when it does not answer."""
        facts: dict[str, Any] = {"running": self.instance(rec).is_running(), "reachable": False}
        if not facts["running"] or self.region_failed(rec.location):
            return facts
        try:
            row = run_sql(
                rec.port,
                "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, "
                "pg_last_wal_replay_lsn()::text, "
                "(SELECT status FROM pg_stat_wal_receiver LIMIT 1), "
                "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, "
                "CASE WHEN pg_is_in_recovery() THEN NULL "
                "ELSE pg_current_wal_insert_lsn()::text END",
            )[0]
        except psycopg.Error as exc:
            log.debug("server %s does not answer: %s", rec.name, exc)
            return facts
        facts.update(
            reachable=True,
            in_recovery=row[0],
            receive_lsn=row[1],
            replay_lsn=row[2],
            receiver_status=row[3],
            current_lsn=row[4],
            insert_lsn=row[5],
        )
        return facts

    def public_state(self, rec: ServerRecord, facts: dict[str, Any]) -> str:
        if self.region_failed(rec.location):
            return "Inaccessible"
        if rec.state in TRANSITIONAL or rec.state == "Stopped":
            return rec.state
        return "Ready" if facts["reachable"] else "Inaccessible"

    def replication_state(self, rec: ServerRecord, facts: dict[str, Any]) -> str | None:
        if rec.role != "AsyncReplica":
            return None
        primary = self.get(rec.replicaOf or "")
        if rec.partitioned or not facts["reachable"] or primary is None:
            return "Broken"
        if self.region_failed(primary.location) or not self.instance(primary).is_running():
            return "Broken"
        return "Active" if facts.get("receiver_status") == "streaming" else "Catchup"

    # -- stop, start, partition, region ------------------------------------------------------

    def stop(self, rec: ServerRecord, mode: str = "fast") -> None:
        self.instance(rec).stop(mode)

    def start(self, rec: ServerRecord) -> None:
        self._write_conf(rec, primary_port=self._primary_port(rec))
        self._start(rec)

    def set_partitioned(self, rec: ServerRecord, partitioned: bool) -> None:
        """Cut (or mend) the replication link of a standby; waits until it took effect."""
        if rec.role != "AsyncReplica":
            raise ArmError(409, "NotAReplica", f"{rec.name} is not a replica: nothing to partition")
        with self.server_lock(rec.name):
            rec.partitioned = partitioned
            self.save()
            self._write_conf(rec, primary_port=self._primary_port(rec))
            if not self.instance(rec).is_running():
                return
            run_sql(rec.port, "SELECT pg_reload_conf()")
            want = (lambda s: s != "streaming") if partitioned else (lambda s: s == "streaming")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if want(self.facts(rec).get("receiver_status")):
                    break
                time.sleep(0.1)
            else:
                log.warning("replica %s: link still not %s after 20s", rec.name, partitioned)
        log.info("replica %s %s", rec.name, "partitioned" if partitioned else "healed")

    def on_region_failed(self, region: str) -> None:
        with self.lock:
            hit = [r for r in self.records.values() if _region(r.location) == region]
        for rec in hit:
            # Limitation: "no WAL handed over" is approximated by an immediate stop; WAL the
            # walsender had already sent before the stop is on the standby, as it would be.
            self.instance(rec).stop("immediate")
            log.warning("server %s down with region %s", rec.name, region)

    def on_region_restored(self, region: str) -> None:
        with self.lock:
            hit = [r for r in self.records.values() if _region(r.location) == region]
        for rec in hit:
            if rec.state != "Stopped":
                self.start(rec)
                log.info("server %s back with region %s", rec.name, region)

    # -- promotion ---------------------------------------------------------------------------

    def promote(self, rec: ServerRecord, mode: str, option: str, wait_s: float) -> str:
        """Promote replica ``rec``; returns a sentence saying what was done and why."""
        if rec.role != "AsyncReplica":
            return f"{rec.name} is not a replica (role {rec.role}): promotion already done"
        if not self.facts(rec)["reachable"]:
            raise ArmError(
                409, "ServerNotReady", f"replica {rec.name} does not answer: start it first"
            )
        primary = self.require(rec.replicaOf or "")
        if option == "Planned":
            self._catch_up(rec, primary, wait_s, switchover=mode == "Switchover")
        run_sql(rec.port, "SELECT pg_promote(true, %s)", [PROMOTE_TIMEOUT_S])
        rec.promotedAt = utc_now_iso()
        lost_link = rec.partitioned
        rec.role, rec.replicaOf, rec.partitioned = "None", None, False
        self._write_conf(rec)
        run_sql(rec.port, "SELECT pg_reload_conf()")
        self._drop_slot(primary, rec)
        self.save()
        if mode == "Switchover":
            rec.role = "Primary"
            self._demote(primary, rec)
        self.take_backup(
            rec, f"promoted-{int(time.time())}", backup_type="Full", source="Automatic"
        )
        reason = (
            f"{rec.name} promoted ({mode}, {option})"
            + (" after catching up with the primary" if option == "Planned" else "")
            + (", with the replication link cut" if lost_link else "")
        )
        log.info("%s", reason)
        return reason

    def _catch_up(
        self, rec: ServerRecord, primary: ServerRecord, wait_s: float, *, switchover: bool
    ) -> None:
        facts = self.facts(primary)
        if not facts["reachable"]:
            raise ArmError(
                409,
                "PlannedPromotionNotPossible",
                f"planned promotion of {rec.name} needs its primary {primary.name}, which does "
                "not answer; promote with promoteOption Forced",
            )
        if switchover:
            # A clean shutdown hands every WAL record, the shutdown checkpoint included, to
            # the connected standby, so nothing is lost and the old primary can follow later.
            self.stop(primary, "fast")
            target = _controldata_redo_end(self.home(primary) / "data")
        else:
            target = lsn_int(facts["insert_lsn"])
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            replay = lsn_int(self.facts(rec).get("replay_lsn"))
            if replay >= target:
                return
            time.sleep(0.1)
        if switchover:
            self.start(primary)
        raise ArmError(
            409,
            "PlannedPromotionTimedOut",
            f"replica {rec.name} did not replay up to its primary's position within {wait_s:g}s "
            f"(replication state {self.replication_state(rec, self.facts(rec))})",
        )

    def _drop_slot(self, primary: ServerRecord, replica: ServerRecord) -> None:
        """Drop the promoted replica's slot on its old primary, once the walsender let go."""
        if not self.facts(primary)["reachable"]:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                rows = run_sql(
                    primary.port,
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                    [replica.slot],
                )
                if not rows:
                    return
                if not rows[0][0]:
                    run_sql(primary.port, "SELECT pg_drop_replication_slot(%s)", [replica.slot])
                    return
            except psycopg.Error as exc:
                log.warning("could not drop slot %s on %s: %s", replica.slot, primary.name, exc)
                return
            time.sleep(0.1)
        log.warning("slot %s on %s still in use: left in place", replica.slot, primary.name)

    def _demote(self, old: ServerRecord, new: ServerRecord) -> None:
        """Make the old primary a standby of the new one, rewound first (timelines split)."""
        if self.region_failed(old.location):
            # Limitation: an unreachable old primary is left as it is; it comes back writable
            # with its region, which is the split brain the runbook's fence step guards against.
            log.warning("switchover: old primary %s unreachable, left as it is", old.name)
            return
        self.stop(old, "fast")
        self._ensure_slot(new, old)
        # pg_rewind reads the new primary's timeline from its control file, which says the new
        # timeline only after a checkpoint; without one it wrongly finds nothing to rewind.
        run_sql(new.port, "CHECKPOINT")
        try:
            self._rewind(old, new)
        except RuntimeError as exc:
            log.warning(
                "pg_rewind of %s failed (%s): copying it afresh from %s", old.name, exc, new.name
            )
            self._basebackup(old, new)
        old.role, old.replicaOf, old.partitioned = "AsyncReplica", new.name, False
        self._write_conf(old, primary_port=new.port)
        self._start(old)
        self.save()
        log.info("switchover: %s now follows %s", old.name, new.name)

    def _rewind(self, old: ServerRecord, new: ServerRecord) -> None:
        """Rewind the old primary's data to where the timelines split, using its own archive."""
        archive = self.archive_dir(old)
        self._write_conf(old, recovery={"restore_command": f"'cp \"{archive}/%f\" %p'"})
        (self.home(old) / "data" / "recovery.signal").unlink(missing_ok=True)
        run_server_tool(
            [
                str(bin_dir() / "pg_rewind"),
                "-D",
                str(self.home(old) / "data"),
                "--source-server",
                self.dsn(new),
                "--restore-target-wal",
            ],
            timeout=300,
        )

    def _basebackup(self, rec: ServerRecord, primary: ServerRecord) -> None:
        data = self.home(rec) / "data"
        if data.exists():
            shutil.rmtree(data)
        run_server_tool(
            [
                str(bin_dir() / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(data),
                "-X",
                "stream",
                "-S",
                rec.slot,
                "-c",
                "fast",
            ],
            timeout=300,
        )

    # -- point-in-time restore ---------------------------------------------------------------

    def restore(self, rec: ServerRecord, source: ServerRecord, target: dt.datetime) -> None:
        """Build ``rec`` from ``source``'s base backup and archive, up to ``target``."""
        # Limitation: only the source's own backups and archive are used, so a server promoted
        # recently restores only to points after its post-promotion backup (no GeoRestore).
        backup = self._backup_before(source, target)
        self._flush_archive(source)
        self._prepare_home(rec)
        data = self.home(rec) / "data"
        if data.exists():
            shutil.rmtree(data)
        run_server_tool(["cp", "-a", str(self.backup_dir(source, backup.name)), str(data)])
        archive = self.archive_dir(source)
        recovery = {
            "restore_command": f"'cp \"{archive}/%f\" %p'",
            "recovery_target_time": f"'{target.isoformat()}'",
            "recovery_target_action": "'promote'",
        }
        self._write_conf(rec, recovery=recovery)
        try:
            self._start(rec)
            rec.restoredTo = target.isoformat()
        except RuntimeError:
            if "before configured recovery target" not in _tail(self.instance(rec).log_file):
                raise
            # The archive ends before the target (the source is down): recover all there is.
            log.warning("archive of %s ends before %s: restoring to its end", source.name, target)
            del recovery["recovery_target_time"]
            self._write_conf(rec, recovery=recovery)
            self._start(rec)
            rec.restoredTo = "end-of-archive"
        self._wait_promoted(rec)
        self._write_conf(rec)
        run_sql(rec.port, "SELECT pg_reload_conf()")
        rec.role = "None"
        self.take_backup(rec, "initial", backup_type="Full", source="Automatic")
        rec.state = "Ready"
        rec.version = self.version
        self.save()
        log.info("restored %s from %s to %s", rec.name, source.name, rec.restoredTo)

    @staticmethod
    def _backup_before(source: ServerRecord, target: dt.datetime) -> BackupRecord:
        usable = [b for b in source.backups if parse_time(b.completedTime) <= target]
        if not usable:
            raise ArmError(
                400,
                "PointInTimeBeforeEarliestRestoreDate",
                f"pointInTimeUTC {target.isoformat()} is before the earliest restore point of "
                f"{source.name} ({source.earliest_restore})",
            )
        return max(usable, key=lambda b: b.completedTime)

    def _flush_archive(self, source: ServerRecord) -> None:
        """Make the running source archive everything up to now, so the target is covered."""
        facts = self.facts(source)
        if not facts["reachable"] or facts.get("in_recovery"):
            return
        # A transaction id forces a commit record stamped now, after any target in the past,
        # so recovery can tell where the target lies; then close and archive the segment.
        run_sql(source.port, "SELECT pg_current_xact_id()")
        segment = run_sql(source.port, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (self.archive_dir(source) / segment).exists():
                return
            time.sleep(0.1)
        log.warning("segment %s of %s not archived within 30s", segment, source.name)

    def _wait_promoted(self, rec: ServerRecord) -> None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if not run_sql(rec.port, "SELECT pg_is_in_recovery()")[0][0]:
                    return
            except psycopg.Error:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{rec.name}: recovery did not end within {RECOVERY_TIMEOUT_S}s")

    # -- deletion ----------------------------------------------------------------------------

    def delete(self, rec: ServerRecord) -> None:
        self.instance(rec).stop("immediate")
        shutil.rmtree(self.home(rec), ignore_errors=True)
        self.remove(rec.name)
        log.info("server %s deleted", rec.name)

    def stop_all(self) -> None:
        with self.lock:
            records = list(self.records.values())
        for rec in records:
            try:
                self.instance(rec).stop("fast")
            except Exception:  # keep stopping the others
                log.exception("could not stop %s", rec.name)


def _region(location: str) -> str:
    return location.lower().replace(" ", "")


def _chown_to_server_user(data: Path) -> None:
    import pwd

    user = pwd.getpwnam(SERVER_USER)
    for name in ("postgresql.auto.conf", "pg_hba.conf", "standby.signal", "recovery.signal"):
        path = data / name
        if path.exists():
            os.chown(path, user.pw_uid, user.pw_gid)


def _tail(path: Path, size: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - size))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _controldata_redo_end(data: Path) -> int:
    """The position of the latest checkpoint of a cleanly stopped cluster (pg_controldata)."""
    out = run_server_tool([str(bin_dir() / "pg_controldata"), "-D", str(data)]).stdout
    for line in out.splitlines():
        if line.startswith("Latest checkpoint location:"):
            return lsn_int(line.split(":", 1)[1].strip())
    raise RuntimeError(f"pg_controldata gave no checkpoint location for {data}")
