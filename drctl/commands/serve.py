"""Run devhost: the Functions + Durable host for the app, the message sink, local services."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from drctl.cli import CommandError

log = logging.getLogger(__name__)


@dataclass
class ServeContext:
    """What a service starter is built from."""

    app_dir: Path
    state_dir: Path
    port: int
    host_url: str
    topology: Path | None


class ServiceStarter(Protocol):
    """A local service that serve starts before it imports the app.

    `settings()` are app settings put into os.environ for the app; an optional
    `routes() -> list[aiohttp.web.RouteDef]` is mounted on the host.
    """

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def settings(self) -> dict[str, str]: ...


@dataclass
class StarterSpec:
    """One entry of the registry: which class to build, and when."""

    name: str
    module: str
    class_name: str
    only_with_topology: bool = False
    # How to build it when the class has no from_serve_context(ctx); default Class(ctx).
    factory: Callable[[Any, ServeContext], Any] | None = None


# The registry of service starters, started in this order and stopped in reverse. A class is
# built as `Class.from_serve_context(ctx)` when it has that classmethod, else `Class(ctx)`.
# A module that does not exist (yet) is skipped, except that --topology needs local Azure.
STARTERS: list[StarterSpec] = [
    StarterSpec("azurite", "devhost.azurite", "Azurite"),
    StarterSpec("issuer", "devhost.issuer", "LocalIssuer"),
    StarterSpec(
        "localazure",
        "devhost.localazure",
        "LocalAzure",
        only_with_topology=True,
        factory=lambda cls, ctx: cls(ctx.state_dir / "localazure", ctx.topology),
    ),
]


def add_arguments(parser) -> None:
    parser.add_argument("--app-dir", default=".", help="Functions app folder (function_app.py)")
    parser.add_argument("--port", type=int, default=7071, help="port on 127.0.0.1 (7071)")
    parser.add_argument("--state-dir", default=".devhost", help="state folder (.devhost/)")
    parser.add_argument(
        "--enforce-keys", action="store_true", help="require function keys, as Azure does"
    )
    parser.add_argument("--topology", help="local Azure topology file (starts local Azure)")
    parser.add_argument(
        "--no-services", action="store_true", help="start no service starters (host only)"
    )


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def build_starters(ctx: ServeContext, specs: list[StarterSpec]) -> list[Any]:
    """Instantiate the starters that apply; raise CommandError when a required one is missing."""
    out = []
    for spec in specs:
        if spec.only_with_topology and ctx.topology is None:
            continue
        if not _module_exists(spec.module):
            if spec.only_with_topology:
                raise CommandError(f"--topology needs {spec.module}, which is not installed")
            log.info("service %s skipped: %s is not present", spec.name, spec.module)
            continue
        cls = getattr(importlib.import_module(spec.module), spec.class_name, None)
        if cls is None:
            if spec.only_with_topology:
                raise CommandError(f"--topology needs {spec.module}.{spec.class_name}")
            log.info("service %s skipped: no %s in %s", spec.name, spec.class_name, spec.module)
            continue
        from_ctx = getattr(cls, "from_serve_context", None)
        if from_ctx is not None:
            out.append(from_ctx(ctx))
        elif spec.factory is not None:
            out.append(spec.factory(cls, ctx))
        else:
            out.append(cls(ctx))
    return out


def run(args) -> int:
    from devhost.host import DevHost, HostError, HostOptions
    from devhost.settings import HostSettingsError, apply_local_settings
    from devhost.sink import MessageSink

    app_dir = Path(args.app_dir).resolve()
    state_dir = Path(args.state_dir).resolve()
    topology = Path(args.topology).resolve() if args.topology else None
    if not (app_dir / "function_app.py").exists():
        raise CommandError(f"{app_dir} has no function_app.py")
    if topology is not None and not topology.exists():
        raise CommandError(f"topology file {topology} does not exist")
    if not 0 < args.port < 65536:
        raise CommandError(f"port {args.port} is not a TCP port")
    try:
        applied = apply_local_settings(app_dir)
    except HostSettingsError as exc:
        raise CommandError(str(exc)) from exc
    if applied:
        log.info("app settings from local.settings.json: %s", ", ".join(sorted(applied)))
    host_url = f"http://127.0.0.1:{args.port}"
    state_dir.mkdir(parents=True, exist_ok=True)
    os.environ["DR_STATE_DIR"] = str(state_dir)
    os.environ["DR_HOST_URL"] = host_url

    ctx = ServeContext(app_dir, state_dir, args.port, host_url, topology)
    starters = [] if args.no_services else build_starters(ctx, STARTERS)
    started: list[Any] = []
    sink = MessageSink(state_dir / "sink")
    try:
        extra_routes = list(sink.routes())
        for starter in starters:
            try:
                starter.start()
            except Exception as exc:
                raise CommandError(f"{type(starter).__name__} did not start: {exc}") from exc
            started.append(starter)
            os.environ.update(starter.settings())
            routes = getattr(starter, "routes", None)
            if routes:
                extra_routes.extend(routes())
        # Notifications go to the message sink unless local.settings.json names other targets.
        os.environ.setdefault("DR_NOTIFY_TEAMS_URL", f"{host_url}/.devhost/sink/teams")
        os.environ.setdefault("DR_NOTIFY_WEBHOOK_URL", f"{host_url}/.devhost/sink/webhook")
        _write_settings(state_dir, host_url, started)
        options = HostOptions(app_dir, state_dir, args.port, args.enforce_keys, extra_routes)
        asyncio.run(_serve(DevHost(options)))
    except (HostError, HostSettingsError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        for starter in reversed(started):
            try:
                starter.stop()
            except Exception:
                log.exception("service %s did not stop cleanly", type(starter).__name__)
        sink.close()
    return 0


def _write_settings(state_dir: Path, host_url: str, started: list[Any]) -> None:
    """Keep the settings handed to the app in the state dir, for tools that explore it."""
    values = {"DR_HOST_URL": host_url, "DR_STATE_DIR": str(state_dir)}
    for name in ("DR_NOTIFY_TEAMS_URL", "DR_NOTIFY_WEBHOOK_URL"):
        values[name] = os.environ[name]
    for starter in started:
        values.update(starter.settings())
    path = state_dir / "settings.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True))
    tmp.chmod(0o600)
    tmp.replace(path)


async def _serve(host) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await host.start()
    except BaseException:
        await host.stop()
        raise
    if host.keys:
        print(f"function key: {host.keys['default']}", flush=True)
        print(f"master key: {host.keys['master']}", flush=True)
    print(f"devhost listening on {host.origin}", flush=True)
    try:
        await stop.wait()
    finally:
        await host.stop()
