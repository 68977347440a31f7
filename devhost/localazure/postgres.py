"""Microsoft.DBforPostgreSQL/flexibleServers on real local instances: the ARM side.

Answers in the 2025-08-01 shapes (any api-version is accepted). Each server is a local
PostgreSQL instance (``pg_fleet``); its port is in the tag ``localPort`` and in the extra
property ``localPort``, and ``fullyQualifiedDomainName`` is ``127.0.0.1``. Control routes:
``GET /_local/postgres/servers``, ``POST /_local/postgres/{server}/partition``, ``.../heal``,
``.../crash`` (immediate stop, as if the host died).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from devhost.localazure.arm import (
    ArmContext,
    ArmError,
    ArmRequest,
    ArmResponse,
    ProviderEnv,
    Route,
)
from devhost.localazure.pg_fleet import (
    DatabaseSpec,
    PostgresFleet,
    ServerRecord,
    parse_time,
)
from devhost.localazure.topology import PostgresServer, Topology
from devhost.pg import free_port

log = logging.getLogger(__name__)

NAMESPACE = "Microsoft.DBforPostgreSQL"
TYPE = f"{NAMESPACE}/flexibleServers"
OP = TYPE
RG_BASE = "/subscriptions/{subscription}/resourceGroups/{rg}/providers/" + TYPE
SERVER = RG_BASE + "/{server}"
PROMOTE_MODES = {"standalone": "Standalone", "switchover": "Switchover"}
PROMOTE_OPTIONS = {"planned": "Planned", "forced": "Forced"}
CREATE_MODES = ("Default", "Create", "PointInTimeRestore", "Replica", "Update")
PLANNED_CATCH_UP_S = 30.0


class PostgresProvider:
    """Flexible servers, their replicas, backups and point-in-time restores."""

    name = "postgres"

    def __init__(self, env: ProviderEnv):
        self.env = env
        self.state = env.state
        self.topology: Topology = env.state.topology
        section = self.topology.postgres
        self.fleet = PostgresFleet(
            env.state_dir / "postgres",
            archive_timeout_s=section.archiveTimeoutSeconds,
            region_failed=self.state.region_failed,
        )
        self.state.on_region_failed(self.fleet.on_region_failed)
        self.state.on_region_restored(self.fleet.on_region_restored)
        self.state.register_dump(self.name, self.dump)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bring back the servers of an earlier run, or create the topology's servers."""
        if self.fleet.load():
            for rec in list(self.fleet.records.values()):
                if rec.state in ("Stopped", "Dropping"):
                    continue
                self.fleet.start(rec)
                rec.state = "Ready"
            self.fleet.save()
            log.info("postgres: %d servers from the earlier run are up", len(self.fleet.records))
            return
        servers = self.topology.postgres.servers
        for spec in [s for s in servers if s.replicaOf is None]:
            self._create_from_topology(spec)
        for spec in [s for s in servers if s.replicaOf is not None]:
            self._create_from_topology(spec)

    def stop(self) -> None:
        self.fleet.stop_all()

    def settings(self) -> dict[str, str]:
        return {}

    def _create_from_topology(self, spec: PostgresServer) -> None:
        rec = self._record_from_spec(spec)
        self.fleet.add(rec)
        if spec.replicaOf is None:
            databases = [
                DatabaseSpec(
                    name=db.name,
                    owner=db.owner,
                    owner_password=self._secret(db.ownerPasswordSecret),
                )
                for db in spec.databases
            ]
            self.fleet.create_primary(
                rec, databases, self._secret(spec.administratorPasswordSecret)
            )
        else:
            self.fleet.create_replica(rec, self.fleet.require(spec.replicaOf))

    def _record_from_spec(self, spec: PostgresServer) -> ServerRecord:
        return ServerRecord(
            name=spec.name,
            resourceGroup=self.topology.resource_group_of(spec),
            location=spec.location,
            port=free_port(),
            administratorLogin=spec.administratorLogin,
            skuName=spec.skuName,
            skuTier=spec.skuTier,
            storageSizeGB=spec.storageSizeGB,
            tags=dict(spec.tags),
            createMode="Replica" if spec.replicaOf else "Default",
            sourceServer=spec.replicaOf,
        )

    def _secret(self, name: str | None) -> str | None:
        return self.topology.secret(name) if name else None

    # -- routes ------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route(
                "GET",
                "/subscriptions/{subscription}/providers/" + TYPE,
                self.list_all,
                OP + "/read",
            ),
            Route("GET", RG_BASE, self.list_group, OP + "/read"),
            Route("GET", SERVER, self.get, OP + "/read"),
            Route("PUT", SERVER, self.put, OP + "/write"),
            Route("PATCH", SERVER, self.patch, OP + "/write"),
            Route("DELETE", SERVER, self.delete, OP + "/delete"),
            Route("POST", SERVER + "/start", self.start_server, OP + "/start/action"),
            Route("POST", SERVER + "/stop", self.stop_server, OP + "/stop/action"),
            Route("POST", SERVER + "/restart", self.restart_server, OP + "/restart/action"),
            Route("GET", SERVER + "/replicas", self.list_replicas, OP + "/replicas/read"),
            Route("GET", SERVER + "/backups", self.list_backups, OP + "/backups/read"),
            Route("GET", SERVER + "/backups/{backup}", self.get_backup, OP + "/backups/read"),
            Route("PUT", SERVER + "/backups/{backup}", self.put_backup, OP + "/backups/write"),
            Route("GET", "/_local/postgres/servers", self.control_list, "local/postgres/read"),
            Route(
                "POST", "/_local/postgres/{server}/partition", self.partition, "local/postgres/cut"
            ),
            Route("POST", "/_local/postgres/{server}/heal", self.heal, "local/postgres/heal"),
            Route("POST", "/_local/postgres/{server}/crash", self.crash, "local/postgres/crash"),
        ]

    # -- shapes ------------------------------------------------------------------------------

    def resource_id(self, rec: ServerRecord) -> str:
        return (
            f"/subscriptions/{self.topology.subscription}/resourceGroups/{rec.resourceGroup}"
            f"/providers/{TYPE}/{rec.name}"
        )

    def shape(self, rec: ServerRecord) -> dict[str, Any]:
        """The server as ARM shows it, with the live state of its instance."""
        facts = self.fleet.facts(rec)
        replica: dict[str, Any] = {
            "role": rec.role,
            "capacity": 0 if rec.role == "AsyncReplica" else 5,
        }
        replication_state = self.fleet.replication_state(rec, facts)
        if replication_state is not None:
            replica["replicationState"] = replication_state
        properties: dict[str, Any] = {
            "replica": replica,
            "storage": {
                "type": "",
                "iops": 500,
                "tier": "P10",
                "storageSizeGB": rec.storageSizeGB,
                "autoGrow": "Disabled",
            },
            "network": {"publicNetworkAccess": "Enabled"},
            "privateEndpointConnections": [],
            "dataEncryption": {"type": "SystemManaged"},
            "authConfig": {"activeDirectoryAuth": "Disabled", "passwordAuth": "Enabled"},
            "fullyQualifiedDomainName": "127.0.0.1",
            "localPort": rec.port,
            "version": rec.version or self.fleet.version or "",
            "minorVersion": "0",
            "administratorLogin": rec.administratorLogin,
            "state": self.fleet.public_state(rec, facts),
            "availabilityZone": "1",
            "backup": {
                "backupRetentionDays": self.topology.postgres.backupRetentionDays,
                "geoRedundantBackup": "Disabled",
                "earliestRestoreDate": rec.earliest_restore or rec.createdAt,
            },
            "highAvailability": {"mode": "Disabled", "state": "NotEnabled"},
            "maintenanceWindow": {
                "customWindow": "Disabled",
                "dayOfWeek": 0,
                "startHour": 0,
                "startMinute": 0,
            },
            "replicationRole": rec.role,
            "replicaCapacity": replica["capacity"],
        }
        if rec.replicaOf:
            properties["sourceServerResourceId"] = self.resource_id(
                self.fleet.require(rec.replicaOf)
            )
        if rec.pointInTimeUTC:
            properties["pointInTimeUTC"] = rec.pointInTimeUTC
        return {
            "sku": {"name": rec.skuName, "tier": rec.skuTier},
            "systemData": {"createdAt": rec.createdAt},
            "properties": properties,
            "location": rec.location,
            "tags": {**rec.tags, "localPort": str(rec.port)},
            "id": self.resource_id(rec),
            "name": rec.name,
            "type": TYPE,
        }

    # -- lookups -----------------------------------------------------------------------------

    def _check_scope(self, req: ArmRequest) -> None:
        subscription = req.params.get("subscription", "")
        if subscription.lower() != self.topology.subscription.lower():
            raise ArmError(
                404, "SubscriptionNotFound", f"subscription {subscription!r} is not local Azure's"
            )

    def _server(self, req: ArmRequest) -> ServerRecord:
        self._check_scope(req)
        rec = self.fleet.get(req.params["server"])
        if rec is None or rec.resourceGroup.lower() != req.params["rg"].lower():
            raise ArmError(
                404,
                "ResourceNotFound",
                f"flexible server {req.params['server']!r} was not found in resource group "
                f"{req.params['rg']!r}",
            )
        return rec

    def _writable(self, rec: ServerRecord) -> None:
        """Management writes need the server's region up and no operation running on it."""
        if rec.state in ("Provisioning", "Updating", "Starting", "Stopping", "Dropping"):
            raise ArmError(
                409, "ServerBusy", f"{rec.name} is {rec.state}: another operation is running"
            )

    def _region_up(self, rec: ServerRecord) -> None:
        """Inside an operation: a server whose region is down makes the operation fail."""
        if self.state.region_failed(rec.location):
            raise ArmError(
                503,
                "RegionUnavailable",
                f"region {rec.location} of {rec.name} is unavailable",
            )

    # -- read --------------------------------------------------------------------------------

    def get(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return ArmResponse(200, self.shape(self._server(req)))

    def list_all(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        self._check_scope(req)
        with self.fleet.lock:
            records = list(self.fleet.records.values())
        return ArmResponse(200, {"value": [self.shape(r) for r in records]})

    def list_group(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        self._check_scope(req)
        with self.fleet.lock:
            records = [
                r
                for r in self.fleet.records.values()
                if r.resourceGroup.lower() == req.params["rg"].lower()
            ]
        return ArmResponse(200, {"value": [self.shape(r) for r in records]})

    def list_replicas(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rec = self._server(req)
        return ArmResponse(
            200, {"value": [self.shape(r) for r in self.fleet.replicas_of(rec.name)]}
        )

    # -- create, restore, update -------------------------------------------------------------

    def put(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        self._check_scope(req)
        body = _object(req.body)
        properties = _object(body.get("properties") or {}, "properties")
        existing = self.fleet.get(req.params["server"])
        if existing is not None:
            return self._update_tags(req, existing, body, status=200)
        mode = _canonical(properties.get("createMode") or "Default", CREATE_MODES, "createMode")
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise ArmError(400, "InvalidParameterValue", "location is required to create a server")

        if mode == "PointInTimeRestore":
            return self._begin_restore(req, ctx, body, properties, location)
        if mode == "Replica":
            return self._begin_replica(req, ctx, body, properties, location)
        if mode in ("Default", "Create"):
            return self._begin_create(req, ctx, body, properties, location)
        raise ArmError(
            404, "ResourceNotFound", f"server {req.params['server']!r} does not exist to update"
        )

    def _new_record(
        self, req: ArmRequest, body: dict, properties: dict, location: str, mode: str
    ) -> ServerRecord:
        sku = body.get("sku") or {}
        storage = properties.get("storage") or {}
        return ServerRecord(
            name=req.params["server"],
            resourceGroup=req.params["rg"],
            location=location,
            port=free_port(),
            administratorLogin=properties.get("administratorLogin") or "odooadmin",
            skuName=sku.get("name") or "Standard_D4ds_v5",
            skuTier=sku.get("tier") or "GeneralPurpose",
            storageSizeGB=int(storage.get("storageSizeGB") or 128),
            tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
            createMode=mode,
        )

    def _begin_create(
        self, req: ArmRequest, ctx: ArmContext, body: dict, properties: dict, location: str
    ) -> ArmResponse:
        rec = self._new_record(req, body, properties, location, "Default")
        password = properties.get("administratorLoginPassword")
        self.fleet.add(rec)

        def work() -> dict:
            try:
                self._region_up(rec)
                self.fleet.create_primary(rec, [], password)
            except Exception:
                self.fleet.delete(rec)
                raise
            return self.shape(rec)

        return ctx.begin_operation(region=location, work=work)

    def _source(self, properties: dict) -> ServerRecord:
        source_id = properties.get("sourceServerResourceId")
        if not isinstance(source_id, str) or "/flexibleServers/" not in source_id:
            raise ArmError(
                400,
                "InvalidParameterValue",
                "sourceServerResourceId must be the resource id of a flexible server",
            )
        return self.fleet.require(source_id.rstrip("/").rsplit("/", 1)[-1])

    def _begin_restore(
        self, req: ArmRequest, ctx: ArmContext, body: dict, properties: dict, location: str
    ) -> ArmResponse:
        source = self._source(properties)
        raw_time = properties.get("pointInTimeUTC")
        if not isinstance(raw_time, str):
            raise ArmError(400, "InvalidParameterValue", "pointInTimeUTC is required (ISO 8601)")
        target = parse_time(raw_time)
        if target > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5):
            raise ArmError(
                400, "InvalidParameterValue", f"pointInTimeUTC {raw_time} is in the future"
            )
        rec = self._new_record(req, body, properties, location, "PointInTimeRestore")
        rec.administratorLogin = source.administratorLogin
        rec.sourceServer = source.name
        rec.pointInTimeUTC = target.isoformat().replace("+00:00", "Z")
        self.fleet.add(rec)

        def work() -> dict:
            try:
                # Backups and the WAL archive live in the source's region (no geo-redundant
                # backup here), so a failed region has nothing to restore from.
                self._region_up(source)
                self._region_up(rec)
                self.fleet.restore(rec, source, target)
            except Exception:
                self.fleet.delete(rec)
                raise
            return self.shape(rec)

        return ctx.begin_operation(region=location, work=work)

    def _begin_replica(
        self, req: ArmRequest, ctx: ArmContext, body: dict, properties: dict, location: str
    ) -> ArmResponse:
        source = self._source(properties)
        rec = self._new_record(req, body, properties, location, "Replica")
        rec.administratorLogin = source.administratorLogin
        rec.sourceServer = source.name
        self.fleet.add(rec)

        def work() -> dict:
            try:
                self._region_up(source)
                self._region_up(rec)
                self.fleet.create_replica(rec, source)
            except Exception:
                self.fleet.delete(rec)
                raise
            return self.shape(rec)

        return ctx.begin_operation(region=location, work=work)

    def _update_tags(
        self, req: ArmRequest, rec: ServerRecord, body: dict, status: int
    ) -> ArmResponse:
        tags = body.get("tags")
        if isinstance(tags, dict):
            rec.tags = {str(k): str(v) for k, v in tags.items() if k != "localPort"}
            self.fleet.save()
        return ArmResponse(status, self.shape(rec))

    def patch(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rec = self._server(req)
        body = _object(req.body)
        properties = _object(body.get("properties") or {}, "properties")
        replica = properties.get("replica")
        if not isinstance(replica, dict) or "promoteMode" not in replica:
            return self._update_tags(req, rec, body, status=200)
        mode = _canonical(replica.get("promoteMode"), PROMOTE_MODES.values(), "promoteMode")
        option = _canonical(
            replica.get("promoteOption") or "Planned", PROMOTE_OPTIONS.values(), "promoteOption"
        )
        return self._begin_promote(ctx, rec, mode, option)

    def _begin_promote(
        self, ctx: ArmContext, rec: ServerRecord, mode: str, option: str
    ) -> ArmResponse:
        if rec.role != "AsyncReplica" and rec.promotedAt is None:
            raise ArmError(
                400,
                "ServerIsNotAReplica",
                f"{rec.name} is not a replica (role {rec.role}): only a replica can be promoted",
            )
        lock = self.fleet.server_lock(rec.name)
        with self.fleet.lock:
            before = rec.state
            if rec.role == "AsyncReplica":
                self._writable(rec)
                rec.state = "Updating"

        def work() -> dict:
            with lock:
                if rec.role != "AsyncReplica":
                    log.info("%s is already promoted (role %s): nothing to do", rec.name, rec.role)
                    return self.shape(rec)
                try:
                    self._region_up(rec)
                    self.fleet.promote(rec, mode, option, PLANNED_CATCH_UP_S)
                finally:
                    rec.state = before
                    self.fleet.save()
                return self.shape(rec)

        return ctx.begin_operation(region=rec.location, work=work)

    # -- start, stop, restart, delete --------------------------------------------------------

    def _begin_power(self, ctx: ArmContext, rec: ServerRecord, action: str) -> ArmResponse:
        lock = self.fleet.server_lock(rec.name)
        with self.fleet.lock:
            self._writable(rec)
            before = rec.state
            # Shown from the moment the operation is accepted, so GET tells it is under way.
            rec.state = {"stop": "Stopping", "start": "Starting", "restart": "Restarting"}[action]

        def work() -> None:
            with lock:
                try:
                    self._region_up(rec)
                    if action in ("stop", "restart"):
                        self.fleet.stop(rec, "fast")
                    if action in ("start", "restart"):
                        self.fleet.start(rec)
                    rec.state = "Stopped" if action == "stop" else "Ready"
                except Exception:
                    rec.state = before
                    raise
                finally:
                    self.fleet.save()
                log.info("server %s: %s done", rec.name, action)

        return ctx.begin_operation(region=rec.location, work=work)

    def start_server(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return self._begin_power(ctx, self._server(req), "start")

    def stop_server(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return self._begin_power(ctx, self._server(req), "stop")

    def restart_server(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return self._begin_power(ctx, self._server(req), "restart")

    def delete(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rec = self._server(req)
        if self.fleet.replicas_of(rec.name):
            raise ArmError(
                409, "ServerHasReplicas", f"{rec.name} has replicas: delete or promote them first"
            )
        rec.state = "Dropping"

        def work() -> None:
            with self.fleet.server_lock(rec.name):
                self.fleet.delete(rec)

        return ctx.begin_operation(region=rec.location, work=work)

    # -- backups -----------------------------------------------------------------------------

    def backup_shape(self, rec: ServerRecord, backup: Any) -> dict[str, Any]:
        return {
            "properties": {
                "backupType": backup.backupType,
                "completedTime": backup.completedTime,
                "source": backup.source,
            },
            "id": f"{self.resource_id(rec)}/backups/{backup.name}",
            "name": backup.name,
            "type": f"{TYPE}/backups",
        }

    def list_backups(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rec = self._server(req)
        return ArmResponse(200, {"value": [self.backup_shape(rec, b) for b in rec.backups]})

    def get_backup(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rec = self._server(req)
        for backup in rec.backups:
            if backup.name.lower() == req.params["backup"].lower():
                return ArmResponse(200, self.backup_shape(rec, backup))
        raise ArmError(404, "ResourceNotFound", f"backup {req.params['backup']!r} was not found")

    def put_backup(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rec = self._server(req)
        name = req.params["backup"]

        def work() -> dict:
            with self.fleet.server_lock(rec.name):
                self._region_up(rec)
                backup = self.fleet.take_backup(
                    rec, name, backup_type="Customer On-Demand", source="Customer"
                )
                return self.backup_shape(rec, backup)

        return ctx.begin_operation(region=rec.location, work=work)

    # -- control -----------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        with self.fleet.lock:
            records = list(self.fleet.records.values())
        return {r.name: self.local_facts(r) for r in records}

    def local_facts(self, rec: ServerRecord) -> dict[str, Any]:
        """What a test needs and ARM does not say: port, DSN, folders, the live facts."""
        facts = self.fleet.facts(rec)
        return {
            "name": rec.name,
            "location": rec.location,
            "role": rec.role,
            "replicaOf": rec.replicaOf,
            "state": self.fleet.public_state(rec, facts),
            "port": rec.port,
            "dsn": self.fleet.dsn(rec),
            "dataDir": str(self.fleet.home(rec) / "data"),
            "archiveDir": str(self.fleet.archive_dir(rec)),
            "partitioned": rec.partitioned,
            "restoredTo": rec.restoredTo,
            "facts": facts,
        }

    def control_list(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return ArmResponse(200, {"value": list(self.dump().values())})

    def partition(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rec = self.fleet.require(req.params["server"])
        self.fleet.set_partitioned(rec, True)
        return ArmResponse(200, self.local_facts(rec))

    def heal(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rec = self.fleet.require(req.params["server"])
        self.fleet.set_partitioned(rec, False)
        return ArmResponse(200, self.local_facts(rec))

    def crash(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        rec = self.fleet.require(req.params["server"])
        self.fleet.stop(rec, "immediate")
        return ArmResponse(200, self.local_facts(rec))


def _object(value: Any, what: str = "the request body") -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ArmError(400, "InvalidRequestContent", f"{what} must be a JSON object")
    return value


def _canonical(value: Any, allowed: Any, field: str) -> str:
    """The canonical casing of an enum value sent in any casing (older examples use lower)."""
    allowed = list(allowed)
    if isinstance(value, str):
        for option in allowed:
            if option.lower() == value.lower():
                return option
    raise ArmError(
        400, "InvalidParameterValue", f"{field} {value!r} is not one of {', '.join(allowed)}"
    )


def create_provider(env: ProviderEnv) -> PostgresProvider:
    return PostgresProvider(env)
