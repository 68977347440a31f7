"""The local stack the demo (and the end-to-end tests) drive: Redis, then devhost with local Azure.

Everything listens on 127.0.0.1. The stack talks to the product only the way a person or an
Azure service would: HTTP to the app's routes, the control API of local Azure to break things,
tokens from the local issuer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from devhost.pg import free_port

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO / "config" / "topology.yaml"
HTTP_TIMEOUT = (3.05, 60)


class StackError(RuntimeError):
    """The stack could not start or a call to it failed; the message says which."""


@dataclass
class Stack:
    """Redis and ``drctl serve --topology`` as subprocesses on free ports under ``state_dir``."""

    state_dir: Path
    topology: Path = TOPOLOGY
    config: Path | None = None
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    redis_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout_s: float = 600) -> Stack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._start_redis()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DR_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            # Odoo's filestore as the app would mount it (an Azure Files share on Azure).
            "DR_ODOO_FILESTORE": str(self.state_dir / "filestore" / "odoo"),
            **({"DR_CONFIG": str(self.config)} if self.config else {}),
            **self.env,
        }
        log_file = open(self.state_dir / "devhost.log", "ab")
        cmd = [
            sys.executable, "-m", "drctl", "serve", "--app-dir", str(REPO),
            "--port", str(self.port), "--state-dir", str(self.state_dir / "devhost"),
            "--topology", str(self.topology),
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log_file, stderr=log_file, start_new_session=True
        )
        log_file.close()
        self.processes.append(proc)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"devhost exited with {proc.returncode}:\n{self.log_tail()}")
            try:
                r = requests.get(self.url + "/admin/host/status", timeout=1)
                if r.status_code == 200 and r.json().get("state") == "Running":
                    break
            except requests.RequestException:
                pass
            time.sleep(0.25)
        else:
            self.stop()
            raise StackError(
                f"devhost did not become ready in {timeout_s:.0f}s:\n{self.log_tail()}"
            )
        self.settings = json.loads((self.state_dir / "devhost" / "settings.json").read_text())
        return self

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError(
                "redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)"
            )
        proc = subprocess.Popen(
            [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.processes.append(proc)

    def stop(self) -> None:
        """Stop devhost (which stops local Azure, its PostgreSQL instances and Azurite), Redis."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.processes.clear()

    def log_tail(self, lines: int = 40) -> str:
        path = self.state_dir / "devhost.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- the product's HTTP API ---------------------------------------------------------------

    def api(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return requests.request(method, f"{self.url}/api/{path.lstrip('/')}", **kw)

    def post_alert(self, payload: dict[str, Any]) -> dict[str, Any]:
        r = self.api("POST", "alerts", json=payload)
        if r.status_code != 202:
            raise StackError(f"POST /api/alerts answered {r.status_code}: {r.text}")
        return r.json()

    def incident(self, incident_id: str) -> dict[str, Any]:
        r = self.api("GET", f"incidents/{incident_id}")
        if r.status_code != 200:
            raise StackError(f"GET /api/incidents/{incident_id} answered {r.status_code}: {r.text}")
        return r.json()

    def decide(self, incident_id: str, gate: str, token: str, decision="approve", comment=""):
        r = self.api(
            "POST",
            f"incidents/{incident_id}/approvals",
            json={"gate": gate, "decision": decision, "comment": comment},
            headers={"Authorization": f"Bearer {token}"},
        )
        return r.status_code, r.json()

    def token(self, user: str, roles: list[str]) -> str:
        from devhost.issuer import LocalIssuer

        return LocalIssuer(self.state_dir / "devhost", host_url=self.url).mint(user, roles)

    def sink(self, channel: str | None = None) -> list[dict[str, Any]]:
        path = "/.devhost/sink" + (f"/{channel}" if channel else "")
        r = requests.get(self.url + path, timeout=HTTP_TIMEOUT)
        r.raise_for_status()
        body = r.json()
        return body.get("messages", body) if isinstance(body, dict) else body

    # -- local Azure --------------------------------------------------------------------------

    def control(self, method: str, path: str, body: Any = None) -> Any:
        base = self.settings["DR_LOCALAZURE_CONTROL_URL"]
        r = requests.request(
            method,
            f"{base}/{path.lstrip('/')}",
            json=body,
            headers={"Authorization": f"Bearer {self.settings['DR_ARM_STATIC_TOKEN']}"},
            verify=self.settings["DR_CA_BUNDLE"],
            timeout=(3.05, 120),
        )
        if r.status_code >= 400:
            raise StackError(f"local Azure {method} {path} answered {r.status_code}: {r.text}")
        return r.json() if r.content else None

    def servers(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.control("GET", "postgres/servers")["value"]}

    def dsn(self, server: str, dbname: str = "odoo") -> str:
        port = self.servers()[server]["port"]
        return f"host=127.0.0.1 port={port} user=postgres dbname={dbname} connect_timeout=3"
