"""Local PostgreSQL instances run as the ``postgres`` user, for local Azure and for tests.

``initdb`` refuses to run as root, so when this process is root every server binary runs
through ``runuser -u postgres``; the data directory and every folder above it must then be
enterable by that user, which ``ensure_enterable`` arranges.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries, or the user to run them as, are missing."""


def bin_dir() -> Path:
    """Folder of initdb/pg_ctl: ``DR_PG_BIN`` if set, else the newest Debian install, else PATH."""
    configured = os.environ.get("DR_PG_BIN")
    if configured:
        return Path(configured)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found: install them "
        "(Debian/Ubuntu: apt-get install postgresql) or set DR_PG_BIN to their folder"
    )


def running_as_root() -> bool:
    return os.geteuid() == 0


def server_command(args: list[str]) -> list[str]:
    """Wrap a server command so it runs as the postgres user when we are root."""
    if not running_as_root():
        return args
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root needs runuser to start PostgreSQL as postgres")
    try:
        import pwd

        pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise PostgresUnavailable(
            "running as root: PostgreSQL must run as the 'postgres' user, which does not exist"
        ) from exc
    return ["runuser", "-u", SERVER_USER, "--", *args]


def ensure_enterable(path: Path) -> None:
    """Make ``path`` (created if needed) owned by postgres and each parent enterable by it."""
    path.mkdir(parents=True, exist_ok=True)
    if not running_as_root():
        return
    import pwd

    user = pwd.getpwnam(SERVER_USER)
    os.chown(path, user.pw_uid, user.pw_gid)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_server_tool(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a server binary (as postgres when root); raise with its output when it fails."""
    proc = subprocess.run(
        server_command(args), capture_output=True, text=True, timeout=timeout, cwd="/"
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
        )
    return proc


@dataclass
class LocalPostgres:
    """One PostgreSQL cluster in ``data_dir`` listening on 127.0.0.1:``port``."""

    data_dir: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def dsn_for(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(
        self, extra_conf: dict[str, str] | None = None, initdb_args: list[str] | None = None
    ) -> None:
        """Create the cluster (trust auth on loopback) unless it exists."""
        if self.initialized():
            return
        ensure_enterable(self.data_dir)
        run_server_tool(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                *(initdb_args or []),
            ]
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
        }
        conf.update(extra_conf or {})
        with open(self.data_dir / "postgresql.auto.conf", "a") as fh:
            for key, value in conf.items():
                fh.write(f"{key} = {value}\n")
        log.info("initialised PostgreSQL cluster in %s (port %s)", self.data_dir, self.port)

    def start(self, timeout: float = 60) -> None:
        if self.is_running():
            return
        ensure_enterable(self.log_file.parent)
        if running_as_root() and self.log_file.exists():
            import pwd

            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.log_file, user.pw_uid, user.pw_gid)
        run_server_tool(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                f"-p {self.port}",
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 10,
        )
        self.wait_ready(timeout)
        log.info("started PostgreSQL on 127.0.0.1:%s (%s)", self.port, self.data_dir)

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server: ``fast`` (clean), or ``immediate`` (as if the machine died)."""
        if not self.is_running():
            return
        run_server_tool(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
            timeout=timeout + 10,
        )
        log.info("stopped PostgreSQL on port %s (%s)", self.port, mode)

    def is_running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return False
        return True

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL on port {self.port} did not answer within {timeout}s")
