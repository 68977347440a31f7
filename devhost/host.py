"""The local Functions host: discovers the app's functions once and serves them on 127.0.0.1.

HTTP triggers under the route prefix (`/api`), Event Grid triggers at the extension's webhook,
timer triggers on their NCRONTAB schedule, the admin endpoints, the durable engine with its
management API, and any extra routes the service starters mount.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import inspect
import json
import logging
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import azure.functions as func
from aiohttp import web
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.timer import TimerRequest

from devhost.durable import ActivitySpec, Engine, ManagementApi, client_binding
from devhost.durable.api import PUBLIC_PREFIX, RPC_PREFIX
from devhost.settings import HostJson, load_host_json

log = logging.getLogger(__name__)

EVENTGRID_PATH = "/runtime/webhooks/eventgrid"


class HostError(RuntimeError):
    """The app could not be loaded or served; the message says what was wrong."""


# ------------------------------------------------------------------------------- NCRONTAB

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_FIELDS = [
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
]


class Schedule:
    """A six-field NCRONTAB expression: second minute hour day month day-of-week (UTC).

    Day and day of week must both match (NCrontab semantics, unlike Vixie cron's either).
    """

    def __init__(self, expression: str) -> None:
        self.expression = expression
        parts = expression.split()
        if len(parts) != 6:
            raise HostError(
                f"schedule {expression!r} must have six fields (second minute hour day month "
                f"day-of-week), not {len(parts)}"
            )
        self.sets = [
            self._field(text, name, lo, hi, names)
            for text, (name, lo, hi, names) in zip(parts, _FIELDS, strict=True)
        ]

    def _value(self, text: str, name: str, lo: int, hi: int, names: dict) -> int:
        upper = text.upper()
        if upper in names:
            return names[upper]
        if name == "day of week" and upper == "7":
            return 0
        if not text.isdigit():
            raise HostError(f"schedule {self.expression!r}: {name} value {text!r} is not valid")
        value = int(text)
        if not lo <= value <= hi:
            raise HostError(
                f"schedule {self.expression!r}: {name} value {value} is outside {lo}-{hi}"
            )
        return value

    def _field(self, text: str, name: str, lo: int, hi: int, names: dict) -> frozenset[int]:
        out: set[int] = set()
        for part in text.split(","):
            step = 1
            if "/" in part:
                part, step_text = part.split("/", 1)
                if not step_text.isdigit() or int(step_text) == 0:
                    raise HostError(
                        f"schedule {self.expression!r}: {name} step {step_text!r} is not valid"
                    )
                step = int(step_text)
            if part == "*":
                start, end = lo, hi
            elif "-" in part:
                a, b = part.split("-", 1)
                start, end = (
                    self._value(a, name, lo, hi, names),
                    self._value(b, name, lo, hi, names),
                )
                if end < start:
                    raise HostError(f"schedule {self.expression!r}: {name} range {part!r} is empty")
            else:
                start = self._value(part, name, lo, hi, names)
                end = hi if step > 1 else start
            out.update(range(start, end + 1, step))
        return frozenset(out)

    def next_after(self, t: datetime) -> datetime | None:
        """The first occurrence strictly after `t` (None if none within five years)."""
        seconds, minutes, hours, days, months, dows = (sorted(s) for s in self.sets)
        t = t.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        start = (t.hour, t.minute, t.second)
        for offset in range(366 * 5):
            d: date = t.date() + timedelta(days=offset)
            if d.month not in months or d.day not in days or (d.isoweekday() % 7) not in dows:
                continue
            floor = start if offset == 0 else (0, 0, 0)
            for hh in hours:
                if hh < floor[0]:
                    continue
                for mm in minutes:
                    if (hh, mm) < floor[:2]:
                        continue
                    for ss in seconds:
                        if (hh, mm, ss) >= floor:
                            return datetime(d.year, d.month, d.day, hh, mm, ss, tzinfo=UTC)
        return None


# --------------------------------------------------------------------------- route templates

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _is_int(v: str, bounds: tuple[int, int]) -> bool:
    return re.fullmatch(r"-?\d+", v) is not None and bounds[0] <= int(v) <= bounds[1]


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _is_guid(v: str) -> bool:
    try:
        uuid.UUID(v)
        return True
    except ValueError:
        return False


def _is_datetime(v: str) -> bool:
    try:
        datetime.fromisoformat(v)
        return True
    except ValueError:
        return False


_SIMPLE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": lambda v: _is_int(v, _INT32),
    "long": lambda v: _is_int(v, _INT64),
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "bool": lambda v: v.lower() in ("true", "false"),
    "guid": _is_guid,
    "double": _is_float,
    "float": _is_float,
    "decimal": _is_float,
    "datetime": _is_datetime,
}


def _constraint(text: str, template: str) -> Callable[[str], bool]:
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", text)
    if not m:
        raise HostError(f"route {template!r}: constraint {text!r} is not valid")
    name, arg = m.group(1).lower(), m.group(2)
    if arg is None and name in _SIMPLE_CONSTRAINTS:
        return _SIMPLE_CONSTRAINTS[name]
    if name == "regex" and arg is not None:
        pattern = re.compile(arg)
        return lambda v: pattern.search(v) is not None
    try:
        nums = [int(x) for x in (arg or "").split(",")]
    except ValueError as exc:
        raise HostError(f"route {template!r}: constraint {text!r} needs integers") from exc
    checks: dict[str, Callable[[str], bool]] = {
        "minlength": lambda v: len(v) >= nums[0],
        "maxlength": lambda v: len(v) <= nums[0],
        "length": lambda v: (len(v) == nums[0]) if len(nums) == 1 else nums[0] <= len(v) <= nums[1],
        "min": lambda v: _is_int(v, _INT64) and int(v) >= nums[0],
        "max": lambda v: _is_int(v, _INT64) and int(v) <= nums[0],
        "range": lambda v: _is_int(v, _INT64) and nums[0] <= int(v) <= nums[-1],
    }
    if name not in checks or arg is None:
        raise HostError(f"route {template!r}: constraint {text!r} is not supported")
    return checks[name]


@dataclass
class _Param:
    name: str
    checks: list[Callable[[str], bool]]
    optional: bool
    catch_all: bool


class RouteTemplate:
    """An HTTP trigger route: literal segments and `{name}`, `{name?}`, `{name:int}`, `{*rest}`."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.segments: list[str | _Param] = []
        for seg in [s for s in template.strip("/").split("/") if s != ""]:
            m = re.fullmatch(r"\{(\*?)([A-Za-z_]\w*)((?::[^{}?]+?)*)(\?)?(?:=[^{}]*)?\}", seg)
            if m:
                checks = [_constraint(c, template) for c in m.group(3).split(":")[1:]]
                self.segments.append(_Param(m.group(2), checks, bool(m.group(4)), bool(m.group(1))))
            elif "{" in seg or "}" in seg:
                raise HostError(
                    f"route {template!r}: segment {seg!r} mixes text and parameters, "
                    "which devhost does not support"
                )
            else:
                self.segments.append(seg.lower())
        # More literal and more constrained segments first, as ASP.NET routing orders them.
        self.rank = tuple(
            0
            if isinstance(s, str)
            else 4
            if s.catch_all
            else 3
            if s.optional
            else 1
            if s.checks
            else 2
            for s in self.segments
        )

    def match(self, parts: list[str]) -> dict[str, str] | None:
        values: dict[str, str] = {}
        for i, seg in enumerate(self.segments):
            if isinstance(seg, _Param) and seg.catch_all:
                values[seg.name] = "/".join(parts[i:])
                return values
            if i >= len(parts):
                if isinstance(seg, _Param) and seg.optional:
                    continue
                return None
            part = parts[i]
            if isinstance(seg, str):
                if part.lower() != seg:
                    return None
                continue
            if not all(check(part) for check in seg.checks):
                return None
            values[seg.name] = part
        if len(parts) > len(self.segments):
            return None
        return values


# ------------------------------------------------------------------------------ discovery


@dataclass
class FunctionInfo:
    """One function of the app as the host invokes it."""

    name: str
    trigger_type: str
    func: Callable[..., Any]
    trigger_name: str
    trigger: Any
    client_name: str | None = None
    wants_context: bool = False
    annotation: Any = None
    route: RouteTemplate | None = None
    methods: frozenset[str] | None = None
    auth_level: str = "function"
    schedule: Schedule | None = None
    run_on_startup: bool = False


@dataclass
class FunctionIndex:
    """The app's functions, grouped by trigger type."""

    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    http: list[FunctionInfo] = field(default_factory=list)
    orchestrators: dict[str, Callable[[str], str]] = field(default_factory=dict)
    activities: dict[str, ActivitySpec] = field(default_factory=dict)


def load_app(app_dir: Path):
    """Import DIR/function_app.py (DIR goes on sys.path) and return its FunctionApp object."""
    path = app_dir / "function_app.py"
    if not path.exists():
        raise HostError(f"{path} does not exist: --app-dir must name a Functions app folder")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location("function_app", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        log.exception("importing %s failed", path)
        raise HostError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    for value in vars(module).values():
        if isinstance(value, func.FunctionRegister):
            return value
    raise HostError(f"{path} defines no FunctionApp / DFApp object")


def index_functions(app) -> FunctionIndex:
    """Call app.get_functions() once and sort the functions by how the host invokes them."""
    index = FunctionIndex()
    try:
        functions = app.get_functions()
    except Exception as exc:
        raise HostError(f"the app's functions could not be indexed: {exc}") from exc
    for f in functions:
        trigger = f.get_trigger()
        ttype = trigger.get_binding_name()
        name = f.get_function_name()
        user = f.get_user_function()
        bindings = [b.get_dict_repr() for b in f.get_bindings()]
        client = next((b["name"] for b in bindings if b.get("type") == "durableClient"), None)
        try:
            params = inspect.signature(user).parameters
        except (TypeError, ValueError):
            params = {}
        info = FunctionInfo(
            name=name,
            trigger_type=ttype,
            func=user,
            trigger_name=trigger.name,
            trigger=trigger,
            client_name=client,
            wants_context="context" in params and trigger.name != "context",
            annotation=params[trigger.name].annotation if trigger.name in params else None,
        )
        index.functions[name] = info
        if ttype == "httpTrigger":
            info.route = RouteTemplate(trigger.route or name)
            methods = getattr(trigger, "methods", None)
            info.methods = (
                frozenset(str(getattr(m, "value", m)).upper() for m in methods) if methods else None
            )
            level = getattr(trigger, "auth_level", None)
            info.auth_level = str(getattr(level, "value", level) or "function").lower()
            index.http.append(info)
        elif ttype == "orchestrationTrigger":
            index.orchestrators[getattr(trigger, "orchestration", None) or name] = user
        elif ttype == "activityTrigger":
            index.activities[getattr(trigger, "activity", None) or name] = ActivitySpec(
                user, trigger.name
            )
        elif ttype == "timerTrigger":
            info.schedule = Schedule(trigger.schedule)
            info.run_on_startup = bool(getattr(trigger, "run_on_startup", False))
    index.http.sort(key=lambda i: i.route.rank)
    return index


class InvocationContext:
    """The `context` argument a function may declare (invocation id and function name)."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_directory = function_directory
        self.trace_context = None
        self.retry_context = None


# ------------------------------------------------------------------------------------ host


# Seconds a request may take to deliver its body. A client that announces a Content-Length
# and sends less would otherwise hold its connection and handler forever.
BODY_TIMEOUT_S = 60.0


def _body_timeout_s() -> float:
    text = os.environ.get("DEVHOST_BODY_TIMEOUT_S", "")
    try:
        value = float(text) if text else BODY_TIMEOUT_S
    except ValueError:
        raise HostError(
            f"DEVHOST_BODY_TIMEOUT_S must be a number of seconds, not {text!r}"
        ) from None
    if not value > 0:
        raise HostError(f"DEVHOST_BODY_TIMEOUT_S must be above 0, not {text!r}")
    return value


@dataclass
class HostOptions:
    app_dir: Path
    state_dir: Path
    port: int = 7071
    enforce_keys: bool = False
    extra_routes: list[web.RouteDef] = field(default_factory=list)
    body_timeout_s: float = field(default_factory=_body_timeout_s)


class _SlowBody(Exception):
    """The client did not deliver the body it announced in time."""


@web.middleware
async def _refuse_encoded_bodies(request: web.Request, handler):
    """Answer 415 to a request whose body arrives compressed, before anything reads it.

    Azure Monitor and Event Grid send webhook bodies uncompressed, and a body decompressed here
    would grow past every route's size limit before a route could check it (a 90 KB gzip body
    holds 90 MiB). The server does not decompress either (``auto_decompress=False``), so
    refusing is the only thing that happens to such a body.
    """
    codings = [
        coding.strip().lower()
        for header in request.headers.getall("Content-Encoding", [])
        for coding in header.split(",")
    ]
    refused = [coding for coding in codings if coding not in ("", "identity")]
    if refused:
        return web.json_response(
            {
                "error": f"request bodies in Content-Encoding {', '.join(refused)} are not "
                "accepted; send the body uncompressed"
            },
            status=415,
            headers={"Accept-Encoding": "identity"},
        )
    return await handler(request)


class DevHost:
    """The running host. `await start()` serves until `await stop()`."""

    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.app_dir = options.app_dir.resolve()
        self.state_dir = options.state_dir.resolve()
        self.origin = f"http://127.0.0.1:{options.port}"
        self.host_json: HostJson = load_host_json(self.app_dir)
        self.keys = self._load_keys() if options.enforce_keys else {}
        self.index: FunctionIndex | None = None
        self.engine: Engine | None = None
        self.runner: web.AppRunner | None = None
        self._timer_tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._started = time.monotonic()

    def _load_keys(self) -> dict[str, str]:
        path = self.state_dir / "keys.json"
        if path.exists():
            keys = json.loads(path.read_text())
        else:
            keys = {"default": secrets.token_urlsafe(32), "master": secrets.token_urlsafe(32)}
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(keys, indent=2))
            path.chmod(0o600)
        return keys

    def _lock_state_dir(self) -> None:
        """Hold an exclusive lock on the state dir: two hosts would both run its work."""
        self._lock_file = open(self.state_dir / "host.lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_file.close()
            raise HostError(
                f"another devhost is already using the state dir {self.state_dir}"
            ) from exc

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_state_dir()
        # Sync activities run in threads; a short GIL switch interval keeps the event loop
        # answering promptly while they run.
        sys.setswitchinterval(0.001)
        self.index = index_functions(load_app(self.app_dir))
        durable = self.host_json.durable
        self.engine = Engine(
            self.state_dir / "durable.sqlite",
            self.index.orchestrators,
            self.index.activities,
            max_activities=durable.max_concurrent_activities,
            max_orchestrators=durable.max_concurrent_orchestrators,
            hub_name=durable.hub_name,
        )
        self.client_binding = client_binding(
            self.origin, durable.hub_name, self.keys.get("default")
        )
        app = web.Application(
            client_max_size=100 * 1024**2,
            middlewares=[self._keys_middleware, _refuse_encoded_bodies],
        )
        api = ManagementApi(self.engine, self.keys.get("default"))
        app.add_routes(api.routes(PUBLIC_PREFIX))
        app.add_routes(api.routes(RPC_PREFIX))
        app.add_routes(
            [
                web.get("/admin/host/status", self._host_status),
                web.post("/admin/functions/{name}", self._admin_invoke),
                web.post(EVENTGRID_PATH, self._eventgrid),
                web.options(EVENTGRID_PATH, self._eventgrid_options),
            ]
        )
        app.add_routes(self.options.extra_routes)
        prefix = "/" + self.host_json.route_prefix if self.host_json.route_prefix else ""
        app.add_routes([web.route("*", prefix + "/{tail:.*}", self._http)])
        await self.engine.start()
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, auto_decompress=False
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.options.port)
        await site.start()
        for name, info in self.index.functions.items():
            log.info("function %s (%s) loaded", name, info.trigger_type)
        self._start_timers()
        log.info("host running at %s (app %s, state %s)", self.origin, self.app_dir, self.state_dir)

    async def stop(self) -> None:
        for task in self._timer_tasks + list(self._background):
            task.cancel()
        if self.runner:
            await self.runner.cleanup()
            self.runner = None
        if self.engine:
            await self.engine.stop()
            self.engine = None
        if getattr(self, "_lock_file", None):
            self._lock_file.close()
            self._lock_file = None
        log.info("host stopped")

    # ------------------------------------------------------------------------- keys, status

    @web.middleware
    async def _keys_middleware(self, request: web.Request, handler):
        if not self.keys:
            return await handler(request)
        path = request.path
        needs = None
        if path.startswith("/admin/"):
            needs = "master"
        elif path.startswith(PUBLIC_PREFIX) or path.startswith(EVENTGRID_PATH):
            needs = "default"
        if needs is not None and request.method != "OPTIONS" and not self._key_ok(request, needs):
            return _error(401, "a valid function key is required (code query or x-functions-key)")
        return await handler(request)

    def _key_ok(self, request: web.Request, level: str) -> bool:
        given = request.query.get("code") or request.headers.get("x-functions-key")
        if not given:
            return False
        allowed = [self.keys["master"]] if level == "master" else list(self.keys.values())
        return any(secrets.compare_digest(given, k) for k in allowed)

    async def _host_status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": "devhost",
                "state": "Running",
                "version": "devhost",
                "processUptime": int((time.monotonic() - self._started) * 1000),
                "functions": sorted(self.index.functions),
            }
        )

    # ----------------------------------------------------------------------------- invoking

    async def invoke(self, info: FunctionInfo, trigger_value: Any, reason: str) -> Any:
        """Call one function with its trigger value (and client binding / context)."""
        kwargs = {info.trigger_name: trigger_value}
        if info.client_name:
            kwargs[info.client_name] = self.client_binding
        context = InvocationContext(info.name, str(self.app_dir))
        if info.wants_context:
            kwargs["context"] = context
        log.info("executing %s (reason: %s, id %s)", info.name, reason, context.invocation_id)
        started = time.monotonic()
        try:
            if inspect.iscoroutinefunction(info.func):
                result = await info.func(**kwargs)
            else:
                result = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: info.func(**kwargs)
                )
                if inspect.isawaitable(result):
                    result = await result
        except Exception:
            log.exception(
                "executed %s (failed, id %s, %.0f ms)",
                info.name,
                context.invocation_id,
                (time.monotonic() - started) * 1000,
            )
            raise
        log.info(
            "executed %s (succeeded, id %s, %.0f ms)",
            info.name,
            context.invocation_id,
            (time.monotonic() - started) * 1000,
        )
        return result

    # ---------------------------------------------------------------------------- HTTP

    def _find_route(self, path_tail: str, method: str):
        parts = [unquote(p) for p in path_tail.strip("/").split("/") if p != ""]
        matched_path = False
        for info in self.index.http:
            values = info.route.match(parts)
            if values is None:
                continue
            matched_path = True
            if info.methods is None or method in info.methods:
                return info, values, True
        return None, None, matched_path

    async def _read(self, request: web.Request) -> bytes:
        """The request's body, or _SlowBody when it has not all arrived in time."""
        seconds = self.options.body_timeout_s
        try:
            return await asyncio.wait_for(request.read(), seconds)
        except TimeoutError:
            raise _SlowBody(
                f"the request body did not arrive within {seconds:g} s "
                f"(Content-Length {request.content_length})"
            ) from None

    async def _http(self, request: web.Request) -> web.StreamResponse:
        # Split the raw path, then decode each segment: an encoded "/" stays inside its segment.
        raw = request.rel_url.raw_path
        prefix = "/" + self.host_json.route_prefix if self.host_json.route_prefix else ""
        tail = raw[len(prefix) :] if raw.startswith(prefix) else raw
        info, values, matched = self._find_route(tail, request.method)
        if info is None:
            if matched:
                return _error(405, f"method {request.method} is not allowed on {unquote(tail)}")
            return _error(404, f"no function serves {unquote(tail)}")
        if self.keys and info.auth_level != "anonymous":
            if not self._key_ok(request, "master" if info.auth_level == "admin" else "default"):
                return _error(401, "a valid function key is required (code or x-functions-key)")
        try:
            body = await self._read(request)
        except _SlowBody as exc:
            return _error(408, str(exc))
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=values,
            body=body,
        )
        try:
            result = await self.invoke(info, req, "HTTP request")
        except Exception as exc:
            return _error(500, f"function {info.name} raised {type(exc).__name__}: {exc}")
        return _to_response(result)

    # ------------------------------------------------------------------------ Event Grid

    def _eventgrid_function(self, request: web.Request) -> FunctionInfo | None:
        name = request.query.get("functionName", "")
        info = self.index.functions.get(name)
        if info is None or info.trigger_type != "eventGridTrigger":
            return None
        return info

    async def _eventgrid_options(self, request: web.Request) -> web.Response:
        # CloudEvents webhook abuse protection: allow the origin that asks.
        origin = request.headers.get("WebHook-Request-Origin", "*")
        return web.Response(
            status=200,
            headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"},
        )

    async def _eventgrid(self, request: web.Request) -> web.Response:
        info = self._eventgrid_function(request)
        if info is None:
            name = request.query.get("functionName", "")
            return _error(404, f"no Event Grid function named {name!r}")
        try:
            payload = json.loads(await self._read(request))
        except _SlowBody as exc:
            return _error(408, str(exc))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the Event Grid delivery is not valid JSON")
        except RecursionError:
            return _error(400, "the Event Grid delivery is not JSON: nested too deeply")
        events, wrong = _delivered_events(payload, request.content_type)
        if wrong:
            return _error(400, wrong)
        if request.headers.get("aeg-event-type", "").lower() == "subscriptionvalidation":
            data = (events[0].get("data") or {}) if events else {}
            code = data.get("validationCode") if isinstance(data, dict) else None
            if not code or not isinstance(code, str):
                return _error(400, "subscription validation event without data.validationCode")
            log.info("Event Grid subscription validated for %s", info.name)
            return web.json_response({"validationResponse": code})
        failed = 0
        for ev in events:
            try:
                await self.invoke(info, _event_argument(ev, info.annotation), "Event Grid event")
            except Exception:
                failed += 1
        if failed:
            return _error(500, f"{failed} of {len(events)} event(s) failed in {info.name}")
        return web.Response(status=200)

    # ---------------------------------------------------------------------------- admin

    async def _admin_invoke(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        info = self.index.functions.get(name)
        if info is None:
            return _error(404, f"no function named {name!r}")
        try:
            raw = await self._read(request)
            body = json.loads(raw) if raw.strip() else {}
        except _SlowBody as exc:
            return _error(408, str(exc))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return _error(400, 'the body must be JSON: {"input": "..."}')
        text = body.get("input") if isinstance(body, dict) else None
        if info.trigger_type == "timerTrigger":
            value: Any = TimerRequest(past_due=False)
        elif info.trigger_type == "eventGridTrigger":
            try:
                ev = json.loads(text) if isinstance(text, str) else text
            except json.JSONDecodeError:
                return _error(400, "input of an Event Grid function must be an event as JSON")
            if not isinstance(ev, dict):
                return _error(400, "input of an Event Grid function must be a JSON object")
            value = _event_argument(ev, info.annotation)
        else:
            return _error(
                400,
                f"{name} is a {info.trigger_type} function; only timer and Event Grid functions "
                "can be run through /admin/functions",
            )
        self._run_background(info, value, "admin request")
        return web.Response(status=202)

    def _run_background(self, info: FunctionInfo, value: Any, reason: str) -> None:
        async def run():
            try:
                await self.invoke(info, value, reason)
            except Exception:
                pass  # already logged by invoke; a background run has nobody to answer

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----------------------------------------------------------------------------- timers

    def _start_timers(self) -> None:
        for info in self.index.functions.values():
            if info.trigger_type == "timerTrigger":
                self._timer_tasks.append(asyncio.ensure_future(self._timer_loop(info)))

    def _timer_state(self) -> dict:
        path = self.state_dir / "timers.json"
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError:
            log.warning("%s is not valid JSON; timers start without their last runs", path)
            return {}

    def _record_run(self, name: str, when: datetime) -> None:
        state = self._timer_state()
        state[name] = {"last": when.isoformat()}
        path = self.state_dir / "timers.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    async def _timer_loop(self, info: FunctionInfo) -> None:
        last_text = (self._timer_state().get(info.name) or {}).get("last")
        now = datetime.now(UTC)
        if last_text:
            missed = info.schedule.next_after(datetime.fromisoformat(last_text))
            if missed is not None and missed < now:
                # A run came due while the host was down: run once now, marked past due.
                log.info("timer %s missed its run at %s; running now", info.name, missed)
                await self._fire(info, now, past_due=True)
            elif info.run_on_startup:
                await self._fire(info, now, past_due=False)
        elif info.run_on_startup:
            await self._fire(info, now, past_due=False)
        else:
            self._record_run(info.name, now)  # the schedule starts counting from now
        while True:
            due = info.schedule.next_after(datetime.now(UTC))
            if due is None:
                log.warning("timer %s has no run in the next five years", info.name)
                return
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            late = (datetime.now(UTC) - due).total_seconds() > 1.0
            await self._fire(info, due, past_due=late)

    async def _fire(self, info: FunctionInfo, when: datetime, past_due: bool) -> None:
        self._record_run(info.name, when)
        try:
            await self.invoke(info, TimerRequest(past_due=past_due), "timer")
        except Exception:
            pass  # logged by invoke; the schedule goes on


CLOUDEVENT = "application/cloudevents+json"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"


def _delivered_events(payload: Any, content_type: str) -> tuple[list[dict], str | None]:
    """The events of an Event Grid delivery, or what is wrong with it for its content type.

    ``application/cloudevents+json`` is one CloudEvent (an object);
    ``application/cloudevents-batch+json`` an array of CloudEvents; anything else the Event
    Grid schema, an array of events.
    """
    if content_type == CLOUDEVENT:
        if not isinstance(payload, dict):
            return [], (
                f"a CloudEvents delivery as {CLOUDEVENT} is one event, a JSON object, not "
                f"{_json_kind(payload)} (a batch of CloudEvents is sent as {CLOUDEVENTS_BATCH})"
            )
        return [payload], None
    if content_type == CLOUDEVENTS_BATCH:
        what = f"a CloudEvents batch ({CLOUDEVENTS_BATCH})"
        other = f"one CloudEvent alone is sent as {CLOUDEVENT}"
    else:
        what = "an Event Grid schema delivery"
        other = f"a single CloudEvent is sent as {CLOUDEVENT}"
    if not isinstance(payload, list):
        return [], f"{what} must be a JSON array of events, not {_json_kind(payload)} ({other})"
    for index, event in enumerate(payload):
        if not isinstance(event, dict):
            return [], f"event {index} of {what} must be a JSON object, not {_json_kind(event)}"
    return payload, None


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")


def _event_argument(ev: dict, annotation: Any) -> Any:
    """What the Python worker hands an Event Grid function for one event.

    The worker's converter gives func.EventGridEvent for the Event Grid schema and
    func.CloudEvent for CloudEvents. Functions annotated with the Azure SDK types get those:
    azure.core.messaging.CloudEvent, azure.eventgrid.EventGridEvent.
    """
    if isinstance(annotation, type):
        if f"{annotation.__module__}.{annotation.__name__}".startswith("azure.core.messaging"):
            return annotation.from_dict(ev)
        if annotation.__module__.startswith("azure.eventgrid"):
            return annotation.from_dict(ev)
    datum = meta.Datum(json.dumps(ev), "json")
    return EventGridEventInConverter.decode(datum, trigger_metadata=None)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _to_response(result: Any) -> web.Response:
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items()}
        if not any(k.lower() == "content-type" for k in headers) and result.mimetype:
            charset = f"; charset={result.charset}" if result.charset else ""
            headers["Content-Type"] = f"{result.mimetype}{charset}"
        return web.Response(body=result.get_body(), status=result.status_code, headers=headers)
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str | bytes):
        return web.Response(body=result, status=200, content_type="text/plain")
    return web.json_response(result)
