"""devhost as a subprocess on a free port with a temporary state dir, for tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from devhost.pg import free_port

REPO = Path(__file__).resolve().parents[2]
TEST_APP = REPO / "tests" / "devhost" / "app"


class DevhostProcess:
    """One `python -m drctl serve` process; restartable on the same state dir."""

    def __init__(
        self,
        app_dir: Path = TEST_APP,
        state_dir: Path | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.app_dir = app_dir
        self.owns_state_dir = state_dir is None
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="devhost-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.state_dir / "host.log"

    def start(self, timeout_s: float = 30.0) -> DevhostProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        log = open(self.log_path, "ab")
        cmd = [
            sys.executable,
            "-m",
            "drctl",
            "serve",
            "--app-dir",
            str(self.app_dir),
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
            "--no-services",
            *self.args,
        ]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"devhost exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = requests.get(self.url + "/admin/host/status", timeout=1, params=self._key())
                if r.status_code == 200 and r.json().get("state") == "Running":
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"devhost did not become ready in {timeout_s}s:\n{self.log()}")

    def _key(self) -> dict:
        keys = self.state_dir / "keys.json"
        if "--enforce-keys" in self.args and keys.exists():
            import json

            return {"code": json.loads(keys.read_text())["master"]}
        return {}

    def kill(self) -> None:
        """SIGKILL: the crash a durable host must survive."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ---------------------------------------------------------------- management helpers

    def mgmt(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.request(method, f"{self.url}/runtime/webhooks/durabletask/{path}", **kw)

    def start_orchestration(self, name: str, input_value=None, instance_id: str | None = None):
        """Start like the Python client does (input as JSON text inside JSON); return the id."""
        import json

        path = f"orchestrators/{name}" + (f"/{instance_id}" if instance_id else "")
        data = None if input_value is None else json.dumps(json.dumps(input_value))
        r = self.mgmt("POST", path, data=data, headers={"Content-Type": "application/json"})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def status(self, instance_id: str, **params) -> dict | None:
        r = self.mgmt("GET", f"instances/{instance_id}", params=params)
        if r.status_code == 404:
            return None
        return r.json()

    def wait(self, instance_id: str, timeout_s: float = 20.0, statuses=None) -> dict:
        """Poll until the instance reaches one of `statuses` (default: any finished state)."""
        wanted = statuses or ("Completed", "Failed", "Terminated", "Canceled")
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            last = self.status(instance_id, showHistory="true", showHistoryOutput="true")
            if last and last["runtimeStatus"] in wanted:
                return last
            time.sleep(0.05)
        raise AssertionError(f"instance {instance_id} not in {wanted} after {timeout_s}s: {last}")

    def raise_event(self, instance_id: str, name: str, data) -> int:
        import json

        r = self.mgmt(
            "POST",
            f"instances/{instance_id}/raiseEvent/{name}",
            data=json.dumps(data),
            headers={"Content-Type": "application/json"},
        )
        return r.status_code


@pytest.fixture(scope="session")
def devhost_factory():
    """Build DevhostProcess objects; every one of them is stopped at the end of the session."""
    made: list[DevhostProcess] = []

    def make(**kw) -> DevhostProcess:
        host = DevhostProcess(**kw)
        made.append(host)
        return host

    yield make
    for host in made:
        host.stop()
    for host in made:
        if host.owns_state_dir:
            shutil.rmtree(host.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def devhost(devhost_factory) -> DevhostProcess:
    """One running devhost with the test app, shared by the tests that do not restart it."""
    return devhost_factory().start()


@pytest.fixture(scope="session")
def client_loop():
    """One event loop for every test that uses the SDK's client: the client keeps one shared
    aiohttp session, bound to the loop it was first used on."""
    loop = asyncio.new_event_loop()
    yield loop
    from azure.durable_functions.models.utils import http_utils

    session = http_utils._client_session
    if session is not None and not session.closed:
        loop.run_until_complete(session.close())
    loop.close()
