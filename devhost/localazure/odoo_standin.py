"""A stand-in Odoo per region: just enough of the application for probes and the front door.

Each region of the topology's ``odoo`` section gets a small HTTP server on 127.0.0.1. Its
``GET /web/health`` answers ``{"status": "pass", "region", "database": {"writable", "server"}}``
after really connecting to the PostgreSQL server the region's application points at and
trying a canary write. It listens only while its region is up (a failed region refuses
connections), and answers 503 while its ``odoo-web`` deployment has no ready replicas.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from pydantic import BaseModel

from devhost.localazure import aks, kubernetes
from devhost.localazure.arm import ProviderEnv
from devhost.localazure.topology_f import OdooRegionTopology, network_topology

log = logging.getLogger(__name__)

NAME = "odoo"
AZURE_PG_SUFFIX = ".postgres.database.azure.com"
CONNECT_TIMEOUT_S = 2
STATEMENT_TIMEOUT_MS = 2000
CANARY_TABLE = "dr_standin_canary"


class DatabaseHealth(BaseModel):
    """What the stand-in found when it tried its database."""

    server: str
    reachable: bool
    writable: bool
    in_recovery: bool | None = None
    error: str | None = None


class Health(BaseModel):
    """One health answer: HTTP status and the body ``/web/health`` sends."""

    http_status: int
    status: str
    region: str
    reason: str
    database: DatabaseHealth | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "region": self.region}
        if self.database is not None:
            body["database"] = {
                "writable": self.database.writable,
                "server": self.database.server,
            }
            if self.database.error:
                body["database"]["error"] = self.database.error
        if self.status != "pass":
            body["reason"] = self.reason
        return body


class DatabaseTarget(BaseModel):
    """Where the application's database is: the server's name and a DSN to reach it."""

    server: str
    dsn: str


class StandinOdoo:
    """The stand-in of one region and its HTTP server (closed while the region is down)."""

    def __init__(self, provider: OdooStandinProvider, region: str, spec: OdooRegionTopology):
        self.provider = provider
        self.region = region
        self.spec = spec
        self.port = spec.port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None

    def up(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
            except OSError as exc:
                # The port was taken while the region was down; the front door follows
                # ``url``, so a new port only leaves DR_ODOO_STANDIN_URLS out of date.
                log.warning("stand-in %s: port %s is taken (%s)", self.region, self.port, exc)
                server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
            server.daemon_threads = True
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, name=f"odoo-{self.region}", daemon=True
            )
            self._thread.start()
        log.info("stand-in Odoo of %s listening on %s", self.region, self.url)

    def down(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        log.warning("stand-in Odoo of %s is down (connections refused)", self.region)

    def health(self) -> Health:
        return self.provider.health(self.region)


def _handler_for(standin: StandinOdoo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "odoo-standin"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("stand-in %s: %s", standin.region, format % args)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Odoo-Region", standin.region)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            health = standin.health()
            if self.path.split("?")[0].rstrip("/") == "/web/health":
                self._send(health.http_status, health.body())
            elif health.http_status != 200:
                self._send(health.http_status, {"error": health.reason, "region": standin.region})
            else:
                self._send(200, {"app": "odoo", "region": standin.region, "path": self.path})

        do_GET = _answer
        do_POST = _answer
        do_HEAD = _answer

    return Handler


def resolve_database(
    state: Any, state_dir: Path | None, host: str, env: dict[str, str], password: str | None
) -> DatabaseTarget:
    """The DSN of the server that ``host`` names, logging in as the application does.

    A flexible server of local Azure (bare name or ``<name>.postgres.database.azure.com``) is
    reached on the local instance that stands for it; anything else is taken as a host with
    ``DB_PORT``. The login is ``DB_USER`` (default ``postgres``, trusted on loopback).
    """
    name = host[: -len(AZURE_PG_SUFFIX)] if host.lower().endswith(AZURE_PG_SUFFIX) else host
    params = {"dbname": env.get("DB_NAME", "postgres"), "user": env.get("DB_USER", "postgres")}
    if password:
        params["password"] = password
    port = _local_server_port(state, state_dir, name)
    if port is not None:
        params.update(host="127.0.0.1", port=str(port))
    else:
        params.update(host=host, port=env.get("DB_PORT", "5432"))
    return DatabaseTarget(server=name, dsn=make_conninfo(**params))


def _local_server_port(state: Any, state_dir: Path | None, name: str) -> int | None:
    """The port of local Azure's instance for flexible server ``name``, if there is one."""
    try:
        from devhost.localazure import postgres
    except ImportError:
        postgres = None
    finder = getattr(postgres, "local_port", None)
    if finder is not None:
        return finder(state, name)
    # Limitation: the PostgreSQL provider offers no lookup by name to other providers, so
    # the stand-in reads the server records it persists (name and port) in its state folder.
    if state_dir is None:
        return None
    records = state_dir / "postgres" / "servers.json"
    try:
        servers = json.loads(records.read_text())
    except (OSError, ValueError):
        return None
    for server in servers:
        if str(server.get("name", "")).lower() == name.lower() and server.get("port"):
            return int(server["port"])
    return None


def current_secret(state: Any, state_dir: Path | None, name: str) -> str | None:
    """The newest enabled value of Key Vault secret ``name`` in local Azure, if it exists."""
    try:
        from devhost.localazure import keyvault
    except ImportError:
        keyvault = None
    reader = getattr(keyvault, "current_secret", None)
    if reader is not None:
        return reader(state, name)
    # Limitation: the Key Vault provider offers no read of a secret to other providers, so
    # the stand-in reads the versions each vault persists in its state folder (newest last).
    for store in sorted((state_dir / "keyvault").glob("*.json")) if state_dir else []:
        try:
            versions = json.loads(store.read_text()).get(name) or []
        except (OSError, ValueError, AttributeError):
            continue
        enabled = [v for v in versions if v.get("enabled", True)]
        if enabled:
            return str(enabled[-1].get("value"))
    return state.topology.secret(name)


def check_database(target: DatabaseTarget) -> DatabaseHealth:
    """Connect, ask ``pg_is_in_recovery()``, and try a canary write (short timeouts)."""
    try:
        with psycopg.connect(
            target.dsn,
            connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            autocommit=True,
        ) as conn:
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            if in_recovery:
                return DatabaseHealth(
                    server=target.server, reachable=True, writable=False, in_recovery=True
                )
            try:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {CANARY_TABLE} "
                    "(id int PRIMARY KEY, written_at timestamptz NOT NULL)"
                )
                conn.execute(
                    f"INSERT INTO {CANARY_TABLE} VALUES (1, now()) "
                    "ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at"
                )
            except psycopg.Error as exc:
                return DatabaseHealth(
                    server=target.server,
                    reachable=True,
                    writable=False,
                    in_recovery=False,
                    error=f"canary write refused: {_first_line(exc)}",
                )
            return DatabaseHealth(
                server=target.server, reachable=True, writable=True, in_recovery=False
            )
    except psycopg.Error as exc:
        return DatabaseHealth(
            server=target.server, reachable=False, writable=False, error=_first_line(exc)
        )


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class OdooStandinProvider:
    """Every region's stand-in Odoo, brought down and up with its region."""

    name = NAME

    def __init__(self, env: ProviderEnv):
        self.env = env
        self.state = env.state
        network = network_topology(self.state)
        self.broken_images = set(network.kubernetes.broken_images)
        self.standins = {
            region: StandinOdoo(self, region, spec) for region, spec in network.odoo.regions.items()
        }
        for region, spec in network.odoo.regions.items():
            if aks.find_cluster(self.state, spec.cluster) is None and network.aks.clusters:
                raise ValueError(f"topology odoo.regions.{region}: no AKS cluster {spec.cluster}")
        self.state.on_region_failed(self._region_failed)
        self.state.on_region_restored(self._region_restored)
        self.state.register_dump(NAME, self.dump)
        self.state.provider_state(NAME)["provider"] = self

    def routes(self) -> list:
        return []

    def start(self) -> None:
        for region, standin in self.standins.items():
            if not self.state.region_failed(region):
                standin.up()

    def stop(self) -> None:
        for standin in self.standins.values():
            standin.down()

    def settings(self) -> dict[str, str]:
        urls = {region: s.url for region, s in self.standins.items()}
        return {"DR_ODOO_STANDIN_URLS": json.dumps(urls, sort_keys=True)}

    def dump(self) -> dict[str, Any]:
        return {
            region: {"url": s.url, "listening": s.listening, "cluster": s.spec.cluster}
            for region, s in self.standins.items()
        }

    def _region_failed(self, region: str) -> None:
        standin = self.standins.get(region.replace(" ", "").lower())
        if standin is not None:
            standin.down()

    def _region_restored(self, region: str) -> None:
        standin = self.standins.get(region.replace(" ", "").lower())
        if standin is not None:
            standin.up()

    def standin(self, region: str) -> StandinOdoo | None:
        return self.standins.get(region.replace(" ", "").lower())

    def database_target(self, region: str) -> DatabaseTarget | None:
        """Where the region's application points: Key Vault secret first, else DB_HOST."""
        standin = self.standin(region)
        k8s = kubernetes.provider(self.state)
        if standin is None or k8s is None:
            return None
        dep = k8s.find(standin.spec.cluster, standin.spec.deployment)
        env = _container_env(dep.template) if dep is not None else {}
        state_dir = self.env.state_dir
        host = env.get("DB_HOST")
        if standin.spec.db_host_secret:
            host = current_secret(self.state, state_dir, standin.spec.db_host_secret) or host
        if not host:
            return None
        password = env.get("DB_PASSWORD")
        if standin.spec.db_password_secret:
            password = current_secret(self.state, state_dir, standin.spec.db_password_secret)
        return resolve_database(self.state, state_dir, host, env, password)

    def health(self, region: str) -> Health:
        """The answer of the region's ``/web/health`` now (also what Traffic Manager probes)."""
        region = region.replace(" ", "").lower()
        problem = self._application_problem(region)
        if problem is not None:
            return _failing(region, *problem)
        target = self.database_target(region)
        if target is None:
            return _failing(region, 503, "the application has no DB_HOST: it has no database")
        database = check_database(target)
        if not database.reachable:
            return _failing(
                region, 503, f"database server {target.server} is unreachable", database
            )
        return Health(
            http_status=200,
            status="pass",
            region=region,
            reason="application serving",
            database=database,
        )

    def _application_problem(self, region: str) -> tuple[int, str] | None:
        """Why the application itself cannot answer (HTTP status and reason), or None."""
        standin = self.standin(region)
        if standin is None:
            return 404, f"no Odoo in {region}"
        if self.state.region_failed(region):
            return 503, f"region {region} is down"
        k8s = kubernetes.provider(self.state)
        dep = k8s.find(standin.spec.cluster, standin.spec.deployment) if k8s else None
        if dep is None:
            return 503, f"no deployment {standin.spec.deployment} in {standin.spec.cluster}"
        if k8s.status_of(dep).ready == 0:
            return 503, f"{dep.name} in {dep.cluster} has no ready replicas"
        broken = set(dep.current.images.values()) & self.broken_images
        if broken:
            return 500, f"release {dep.current.revision} ({', '.join(sorted(broken))}) is failing"
        return None


def _failing(
    region: str, http_status: int, reason: str, database: DatabaseHealth | None = None
) -> Health:
    return Health(
        http_status=http_status, status="fail", region=region, reason=reason, database=database
    )


def _container_env(template: dict[str, Any]) -> dict[str, str]:
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        return {}
    return {
        e["name"]: str(e.get("value", "")) for e in containers[0].get("env") or [] if "name" in e
    }


def provider(state: Any) -> OdooStandinProvider | None:
    return state.provider_state(NAME).get("provider")


def create_provider(env: ProviderEnv) -> OdooStandinProvider:
    return OdooStandinProvider(env)
