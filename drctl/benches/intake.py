"""Signals folded per second: a storm of alerts into a stack of its own, spread over K keys.

Starts `drctl serve` without local Azure on a free port with a temporary state dir and a
workloads file of its own (the demo environment cloned ``--environments`` times, none with a
reachable database, Azure Resource Manager a closed port on 127.0.0.1), then posts
``--alerts`` distinct alerts with bounded concurrency, spread round-robin over two scenario
families (a database alert folds into ``availability``, a Redis alert into ``dependency``) of
every environment. Every correlation key must end with exactly one incident; the exit code is
1 when one has more or none, or when any alert was refused.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from drctl.cli import CommandError, emit_json

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = REPO / "config" / "workloads.yaml"
START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 120
# (family the alert folds into, resource the alert names, its alert rule)
FAMILIES = (
    ("availability", "postgres", "bench-pg-health"),
    ("dependency", "redis", "bench-redis-health"),
)


def add_arguments(parser) -> None:
    parser.add_argument("--alerts", type=int, default=10000, help="alerts to post (10000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (32)")
    parser.add_argument(
        "--environments", type=int, default=4, help="environments; keys = 2 x this (4)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the state dir afterwards")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _program(proc: Path, name: str) -> str:
    """A readable program name: the Azurite service or drctl command rather than node/python."""
    try:
        args = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return name
    for arg in args:
        text = arg.decode(errors="replace")
        if "azurite-" in text:
            return "azurite-" + text.rsplit("azurite-", 1)[1]
    if b"drctl" in args and b"serve" in args:
        return "drctl serve"
    return name


def _tree_cpu_s(root_pid: int) -> dict[str, float]:
    """CPU seconds of a process and its live descendants, by program name (user and system).

    Read from /proc, so it is empty where there is none; children that already exited are
    not in it."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    stats: dict[int, tuple[str, float, float]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = _program(entry, text[text.index("(") + 1 : text.rindex(")")])
        fields = text[text.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        stats[int(entry.name)] = (name, int(fields[11]) / tick, int(fields[12]) / tick)
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    by_name: dict[str, float] = {}
    for pid in tree:
        if pid in stats:
            name, user, system = stats[pid]
            by_name[name] = by_name.get(name, 0.0) + user
            by_name[f"{name} (system)"] = by_name.get(f"{name} (system)", 0.0) + system
    return by_name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workloads(environments: int) -> dict:
    """The demo workloads file with its environment cloned as bench-1 .. bench-N."""
    import yaml

    base = yaml.safe_load(WORKLOADS.read_text())
    demo = base["environments"]["prod-eu"]
    out = {}
    for n in range(1, environments + 1):
        env = copy.deepcopy(demo)
        env["resource_group"] = f"rg-bench-{n}"
        out[f"bench-{n}"] = env
    return {"version": base.get("version", 1), "environments": out}


def _alert(doc: dict, environment: str, resource: str, rule: str) -> dict:
    env = doc["environments"][environment]
    scope = f"/subscriptions/{env['subscription_id']}/resourceGroups/{env['resource_group']}"
    if resource == "postgres":
        target = f"{scope}/providers/Microsoft.DBforPostgreSQL/flexibleServers/"
        target += env["postgres"]["primary"]["name"]
    else:
        target = f"{scope}/providers/Microsoft.Cache/redis/{env['redis']['name']}"
    alert_id = f"/subscriptions/{env['subscription_id']}/providers/Microsoft.AlertsManagement/"
    alert_id += f"alerts/{uuid.uuid4()}"
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": alert_id,
                "alertRule": rule,
                "severity": "Sev1",
                "signalType": "Activity Log",
                "monitorCondition": "Fired",
                "monitoringService": "Resource Health",
                "alertTargetIDs": [target],
                "firedDateTime": "2026-11-30T22:07:00Z",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": {
                "eventSource": "ResourceHealth",
                "properties": {
                    "currentHealthStatus": "Unavailable",
                    "previousHealthStatus": "Available",
                    "type": "Downtime",
                },
                "status": "Active",
            },
        },
    }


class _Serve:
    """`drctl serve` as a child process, stopped with SIGTERM (its services stop in order)."""

    def __init__(self, state: Path, config: Path):
        self.state = state
        self.config = config
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = state.parent / "serve.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import requests

        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DR_CONFIG": str(self.config),
            "DR_NOTIFY_TEAMS_URL": f"{self.url}/.devhost/sink/teams",
            "DR_NOTIFY_WEBHOOK_URL": f"{self.url}/.devhost/sink/webhook",
            # No Azure here: management calls go to a closed port on 127.0.0.1 with a static
            # token, so the incidents' activities fail at once instead of probing for
            # credentials (DefaultAzureCredential asks the instance metadata endpoint) or
            # leaving the machine.
            "DR_ARM_ENDPOINT": f"https://127.0.0.1:{_free_port()}",
            "DR_ARM_STATIC_TOKEN": "bench-intake-no-azure",
        }
        cmd = [sys.executable, "-m", "drctl", "serve", "--port", str(self.port)]
        cmd += ["--state-dir", str(self.state)]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CommandError(f"drctl serve exited with {self.proc.returncode}: {self.tail()}")
            try:
                r = requests.get(self.url + "/admin/host/status", timeout=2)
                if r.status_code == 200 and r.json().get("state") == "Running":
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise CommandError(f"drctl serve did not start in {START_TIMEOUT_S}s: {self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-20:])


async def _storm(url: str, bodies: list[bytes], concurrency: int) -> list[tuple[int, dict]]:
    import aiohttp

    limit = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def post(body: bytes) -> tuple[int, dict]:
            async with limit:
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as r:
                        text = await r.text()
                        try:
                            return r.status, json.loads(text)
                        except ValueError:
                            return r.status, {"error": text[:200]}
                except (aiohttp.ClientError, TimeoutError) as exc:
                    return 0, {"error": str(exc)}

        return await asyncio.gather(*(post(b) for b in bodies))


def measure(alerts: int, concurrency: int, environments: int, keep: bool = False) -> dict:
    """Run the storm and return the figures (started stack included, stopped afterwards)."""
    import yaml

    root = Path(tempfile.mkdtemp(prefix="dr-bench-intake-"))
    doc = workloads(environments)
    config = root / "workloads.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    keys = [(f"bench-{n}", fam) for n in range(1, environments + 1) for fam in FAMILIES]
    bodies = [
        json.dumps(_alert(doc, env, fam[1], fam[2])).encode()
        for env, fam in (keys[i % len(keys)] for i in range(alerts))
    ]
    serve = _Serve(root / "state", config)
    serve.start()
    try:
        cpu_before = _tree_cpu_s(serve.proc.pid)
        client_before = time.process_time()
        started = time.perf_counter()
        answers = asyncio.run(_storm(serve.url + "/api/alerts", bodies, concurrency))
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - client_before
        cpu_after = _tree_cpu_s(serve.proc.pid)
    finally:
        serve.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    accepted = [body for status, body in answers if status == 202]
    errors = [body.get("error") for status, body in answers if status != 202]
    incidents = {b["incidentId"] for b in accepted if b.get("incidentId")}
    dispositions: dict[str, int] = {}
    for body in accepted:
        dispositions[body["disposition"]] = dispositions.get(body["disposition"], 0) + 1
    return {
        "alerts": alerts,
        "seconds": round(seconds, 3),
        "per_second": round(alerts / seconds, 1) if seconds > 0 else None,
        "incidents": len(incidents),
        "correlation_keys": len(keys),
        "concurrency": concurrency,
        "dispositions": dispositions,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        # CPU per alert of the stack (drctl serve, Azurite) and of this load generator: on a
        # shared machine these move less than the wall-clock rate does.
        "cpu_ms_per_alert": {
            name: round(1000 * (cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0)) / alerts, 2)
            for name in sorted(cpu_after)
        }
        | {"bench_client": round(1000 * client_cpu / alerts, 2)},
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "state_dir": str(root) if keep else None,
    }


def run(args) -> int:
    if args.alerts < 1:
        raise CommandError("--alerts must be 1 or more")
    if not 1 <= args.concurrency <= 512:
        raise CommandError("--concurrency must be between 1 and 512")
    if not 1 <= args.environments <= 50:
        raise CommandError("--environments must be between 1 and 50")
    result = measure(args.alerts, args.concurrency, args.environments, keep=args.keep)
    ok = result["incidents"] == result["correlation_keys"] and result["errors"] == 0
    if args.json:
        emit_json(result)
    else:
        print(
            f"{result['alerts']} alerts in {result['seconds']} s: {result['per_second']}/s; "
            f"{result['incidents']} incidents for {result['correlation_keys']} correlation keys; "
            f"{result['errors']} refused"
        )
    return 0 if ok else 1
