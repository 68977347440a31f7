"""Durable engine benchmark: fan-out throughput and event-to-next-step latency on devhost.

Starts its own devhost (subprocess, free port, temporary state dir) with the bench app in
drctl/benches/host_app/, then measures through the management API as a client would.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from drctl.cli import CommandError, emit_json

log = logging.getLogger(__name__)

BENCH_APP = Path(__file__).resolve().parent / "host_app"
REPO = Path(__file__).resolve().parents[2]
REQUEST_TIMEOUT_S = 30


def add_arguments(parser) -> None:
    parser.add_argument("--activities", type=int, default=1000, help="fan-out width (1000)")
    parser.add_argument("--rounds", type=int, default=50, help="event rounds (50)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Host:
    """A devhost subprocess on the bench app."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.url}/runtime/webhooks/durabletask"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = open(self.state_dir / "host.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drctl",
                "serve",
                "--app-dir",
                str(BENCH_APP),
                "--port",
                str(self.port),
                "--state-dir",
                str(self.state_dir),
                "--no-services",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )
        out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CommandError(f"devhost exited early; see {self.state_dir / 'host.log'}")
            try:
                if requests.get(self.url + "/admin/host/status", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise CommandError(f"devhost did not start in {timeout_s:.0f}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def start_instance(self, name: str, value) -> str:
        r = requests.post(
            f"{self.base}/orchestrators/{name}",
            data=json.dumps(json.dumps(value)),
            headers={"Content-Type": "application/json"},
            timeout=REQUEST_TIMEOUT_S,
        )
        if r.status_code != 202:
            raise CommandError(f"start of {name} answered {r.status_code}: {r.text}")
        return r.json()["id"]

    def wait(self, instance_id: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            r = requests.get(f"{self.base}/instances/{instance_id}", timeout=REQUEST_TIMEOUT_S)
            body = r.json()
            if body["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
                return body
            time.sleep(0.01)
        raise CommandError(f"instance {instance_id} did not finish in {timeout_s:.0f}s")


def _fan_out(host: _Host, n: int) -> dict:
    started = time.perf_counter()
    iid = host.start_instance("fan_out", n)
    status = host.wait(iid, timeout_s=max(60.0, n / 10))
    elapsed = time.perf_counter() - started
    if status["runtimeStatus"] != "Completed" or status["output"] != n:
        raise CommandError(f"fan-out did not complete correctly: {status}")
    return {"activities": n, "fanout_s": round(elapsed, 3), "activities_per_s": round(n / elapsed)}


def _event_rounds(host: _Host, rounds: int) -> dict:
    steps = host.state_dir / "steps.log"
    iid = host.start_instance("event_rounds", rounds)
    latencies = []
    for i in range(rounds):
        raised = time.time()
        r = requests.post(
            f"{host.base}/instances/{iid}/raiseEvent/go",
            data="null",
            headers={"Content-Type": "application/json"},
            timeout=REQUEST_TIMEOUT_S,
        )
        if r.status_code != 202:
            raise CommandError(f"raise event answered {r.status_code}")
        deadline = time.monotonic() + 30
        while True:
            lines = steps.read_text().splitlines() if steps.exists() else []
            if len(lines) > i:
                n, at = lines[i].split()
                latencies.append((float(at) - raised) * 1000.0)
                break
            if time.monotonic() > deadline:
                raise CommandError(f"step {i} did not start within 30 s of its event")
            time.sleep(0.001)
    host.wait(iid, timeout_s=30)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    return {
        "event_rounds": rounds,
        "event_to_next_step_ms_p50": round(statistics.median(latencies), 2),
        "event_to_next_step_ms_p95": round(p95, 2),
    }


def run(args) -> int:
    if args.activities < 1 or args.rounds < 1:
        raise CommandError("--activities and --rounds must be positive")
    state_dir = Path(tempfile.mkdtemp(prefix="drbench-host-"))
    host = _Host(state_dir)
    try:
        host.start()
        result = {**_fan_out(host, args.activities), **_event_rounds(host, args.rounds)}
    finally:
        host.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
    if args.json:
        emit_json(result)
    else:
        print(
            f"fan-out: {result['activities']} activities in {result['fanout_s']} s "
            f"({result['activities_per_s']}/s); event to next step: "
            f"p50 {result['event_to_next_step_ms_p50']} ms, "
            f"p95 {result['event_to_next_step_ms_p95']} ms"
        )
    return 0
