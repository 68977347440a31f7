"""Azurite, the local Azure Storage emulator: blob and table services for devhost and tests.

Installed from npm into a cache folder on first use and reused afterwards; started on free
127.0.0.1 ports with its data in the state dir, so audit trails and the incident index outlive
a restart. ``settings()`` gives the app its ``AzureWebJobsStorage`` connection string.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from devhost.pg import free_port

log = logging.getLogger(__name__)

AZURITE_VERSION = "3.37.0"
ACCOUNT = "devstoreaccount1"
# Azurite's published development key: not a secret, every Azurite install accepts it.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
COMMON_FLAGS = ["--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"]
# Seconds an idle keep-alive connection stays open. Node's default (5 s) closes pooled
# connections that the Python clients are about to reuse; a request sent on one as it closes
# fails with "Remote end closed connection" and azure-core does not retry a POST or PATCH.
KEEP_ALIVE_S = 600
ENDPOINT_FILE = "endpoint.json"


class AzuriteUnavailable(RuntimeError):
    """Azurite could not be installed or started; the message says why."""


def default_cache_dir() -> Path:
    configured = os.environ.get("DR_AZURITE_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "odoo-finance-dr" / "azurite"


def connection_string(blob_port: int, table_port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{ACCOUNT};"
        f"TableEndpoint=http://{host}:{table_port}/{ACCOUNT};"
    )


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Azurite:
    """Blob and table services of Azurite for one state dir.

    ``start()`` installs (first time) and starts both services; ``stop()`` ends them.
    ``running_settings(state_dir)`` finds an Azurite that another process started there.
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        cache_dir: str | Path | None = None,
        version: str = AZURITE_VERSION,
        install_timeout: float = 600,
        start_timeout: float = 60,
    ):
        self.state_dir = Path(state_dir)
        self.data_dir = self.state_dir / "azurite"
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.version = version
        self.install_timeout = install_timeout
        self.start_timeout = start_timeout
        self.blob_port: int | None = None
        self.table_port: int | None = None
        self._procs: list[subprocess.Popen] = []

    @classmethod
    def from_serve_context(cls, ctx) -> Azurite:
        """How ``drctl serve`` builds it: data under the serve state dir."""
        return cls(ctx.state_dir)

    # -- install ----------------------------------------------------------------------

    def binary(self, service: str) -> Path:
        return self.cache_dir / "node_modules" / ".bin" / f"azurite-{service}"

    def installed_version(self) -> str | None:
        manifest = self.cache_dir / "node_modules" / "azurite" / "package.json"
        try:
            return json.loads(manifest.read_text()).get("version")
        except (OSError, ValueError):
            return None

    def ensure_installed(self) -> None:
        """Install azurite@version with npm into the cache folder unless it is there."""
        if self.installed_version() == self.version and self.binary("blob").exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise AzuriteUnavailable(
                "npm was not found: install Node.js and npm (Debian/Ubuntu: apt-get install npm)"
            )
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        log.info("installing azurite %s into %s", self.version, self.cache_dir)
        cmd = [
            npm,
            "install",
            "--prefix",
            str(self.cache_dir),
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            "--loglevel=error",
            f"azurite@{self.version}",
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=self.install_timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AzuriteUnavailable(
                f"npm install azurite timed out after {self.install_timeout:.0f}s"
            ) from exc
        if proc.returncode != 0 or not self.binary("blob").exists():
            raise AzuriteUnavailable(
                f"npm install azurite@{self.version} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}"
            )

    # -- run --------------------------------------------------------------------------

    def start(self) -> Azurite:
        """Start blob and table services on free ports; return once both accept connections."""
        if self._procs:
            return self
        self.ensure_installed()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.blob_port, self.table_port = free_port(), free_port()
            try:
                self._spawn("blob", self.blob_port)
                self._spawn("table", self.table_port)
                self._wait_ready()
                break
            except AzuriteUnavailable:
                # Another process may have taken a port between probing and binding.
                self.stop()
                if attempt == 2:
                    raise
        self._write_endpoint()
        log.info("azurite blob on %s, table on %s", self.blob_port, self.table_port)
        return self

    def _spawn(self, service: str, port: int) -> None:
        log_file = open(self.data_dir / f"{service}.log", "ab")  # noqa: SIM115
        cmd = [
            str(self.binary(service)),
            f"--{service}Host",
            "127.0.0.1",
            f"--{service}Port",
            str(port),
            f"--{service}KeepAliveTimeout",
            str(KEEP_ALIVE_S),
            "--location",
            str(self.data_dir),
            *COMMON_FLAGS,
        ]
        env = {**os.environ, "AZURITE_DISABLE_TELEMETRY": "1", "NO_UPDATE_NOTIFIER": "1"}
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log_file.close()
        self._procs.append(proc)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise AzuriteUnavailable(
                        f"azurite exited with {proc.returncode}; see {self.data_dir}/*.log"
                    )
            if _port_open(self.blob_port) and _port_open(self.table_port):
                return
            time.sleep(0.1)
        raise AzuriteUnavailable(f"azurite did not answer within {self.start_timeout:.0f}s")

    def _write_endpoint(self) -> None:
        info = {
            "blob_port": self.blob_port,
            "table_port": self.table_port,
            "pids": [p.pid for p in self._procs],
        }
        (self.data_dir / ENDPOINT_FILE).write_text(json.dumps(info))

    def settings(self) -> dict[str, str]:
        """App settings for the running services: ``AzureWebJobsStorage``."""
        if self.blob_port is None or self.table_port is None:
            raise AzuriteUnavailable("azurite is not started")
        return {"AzureWebJobsStorage": connection_string(self.blob_port, self.table_port)}

    def stop(self, timeout: float = 10) -> None:
        """End both services (terminate, then kill after ``timeout``)."""
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self._procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        self._procs = []
        endpoint = self.data_dir / ENDPOINT_FILE
        endpoint.unlink(missing_ok=True)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def running_settings(state_dir: str | Path) -> dict[str, str] | None:
    """Settings of an Azurite that some process started for ``state_dir``, if it still runs."""
    endpoint = Path(state_dir) / "azurite" / ENDPOINT_FILE
    try:
        info = json.loads(endpoint.read_text())
        pids, blob, table = info["pids"], int(info["blob_port"]), int(info["table_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if all(_pid_alive(int(p)) for p in pids) and _port_open(blob) and _port_open(table):
        return {"AzureWebJobsStorage": connection_string(blob, table)}
    return None
