"""The ARM framework of local Azure: requests, routes, providers, long-running operations, faults.

A provider (PostgreSQL, Key Vault, Traffic Manager, ...) is a module that lists its routes; the
server matches a request to a route, applies injected faults and latency, and runs the handler
in a worker thread. Everything a provider keeps lives in ``LocalAzureState``.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field, field_validator

if TYPE_CHECKING:
    from devhost.localazure.topology import Topology

log = logging.getLogger(__name__)

TERMINAL_STATES = ("Succeeded", "Failed", "Canceled")
CONTROL_PREFIX = "local/"
FaultKind = Literal["throttle", "error500", "conflict409", "lro_fail", "latency"]


@dataclass
class ArmRequest:
    """One request as a handler sees it."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: Mapping[str, str]
    body: Any
    api_version: str | None


@dataclass
class ArmResponse:
    """What a handler answers; ``body`` is JSON-serialisable or None (no body)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ArmError(Exception):
    """An answer in ARM's error shape: ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self, headers: dict[str, str] | None = None) -> ArmResponse:
        body = {"error": {"code": self.code, "message": self.message}}
        return ArmResponse(self.status, body, dict(headers or {}))


Handler = Callable[[ArmRequest, "ArmContext"], ArmResponse]


@dataclass
class Route:
    """``template`` has ``{name}`` segments; literal segments match case-insensitively."""

    method: str
    template: str
    handler: Handler
    operation: str

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self._segments = [s for s in self.template.split("/") if s]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when ``method`` and ``path`` fit this route, else None."""
        if method.upper() != self.method:
            return None
        parts = [s for s in path.split("/") if s]
        if len(parts) != len(self._segments):
            return None
        params: dict[str, str] = {}
        for pattern, actual in zip(self._segments, parts, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                params[pattern[1:-1]] = actual
            elif pattern.lower() != actual.lower():
                return None
        return params


class Provider(Protocol):
    """A local Azure service: a name (its key in the state) and its routes.

    A provider module has ``create_provider(env: ProviderEnv) -> Provider``. A provider may also
    have ``start()`` (called once its routes are served, before ``LocalAzure.start`` returns),
    ``stop()`` and ``settings() -> dict[str, str]`` (app settings it adds); the server calls
    those that exist. Control routes use templates under ``/_local/<provider>/`` and operation
    names starting with ``local/``.
    """

    name: str

    def routes(self) -> list[Route]: ...


@dataclass
class RawRequest:
    """A request to a listener of a provider's own (see ``ProviderEnv.listen``)."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes


RawHandler = Callable[[RawRequest], ArmResponse]


@dataclass
class ProviderEnv:
    """What a provider factory gets: the shared state and the facts of the running server.

    ``listen(handler, tls=True)`` opens one more port on 127.0.0.1 served by the same event
    loop (blocking ``handler`` runs in a worker thread) and returns its base URL; an
    ``ArmResponse`` body that is ``bytes`` or ``str`` is sent as is, anything else as JSON.
    """

    state: LocalAzureState
    base_url: str
    state_dir: Path
    ca_bundle: Path
    server_cert: Path
    server_key: Path
    static_token: str
    listen: Callable[..., str]


class Fault(BaseModel):
    """One injected fault: what it matches, what it does, and how many times it is left."""

    operation: str = Field(description="ARM operation name or a glob over operation names")
    kind: FaultKind
    count: int = Field(default=1, description="how many times it fires; -1 is forever")
    seconds: float = Field(default=0.0, ge=0, description="latency, or Retry-After of throttle")
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    fired: int = 0

    @field_validator("count")
    @classmethod
    def _count_is_positive_or_forever(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("count must be a positive number of times, or -1 for forever")
        return value

    def matches(self, operation: str) -> bool:
        return fnmatch.fnmatchcase(operation.lower(), self.operation.lower())

    @property
    def exhausted(self) -> bool:
        return self.count != -1 and self.fired >= self.count


class Faults:
    """The injected faults, consumed one firing at a time (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        log.info("fault added: %s on %s (count %s)", fault.kind, fault.operation, fault.count)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        with self._lock:
            return [f.model_copy() for f in self._faults]

    def take(self, operation: str, kinds: tuple[str, ...]) -> Fault | None:
        """The first live fault of one of ``kinds`` matching ``operation``, counted as fired."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and not fault.exhausted and fault.matches(operation):
                    fault.fired += 1
                    return fault.model_copy()
        return None


class Operation(BaseModel):
    """A long-running operation as its status URL reports it."""

    id: str
    name: str
    operation: str
    region: str
    status: str = "InProgress"
    startTime: str
    endTime: str | None = None
    error: dict[str, str] | None = None
    result: Any = None
    retry_after_s: float = 0.2

    def status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "startTime": self.startTime,
        }
        if self.endTime:
            body["endTime"] = self.endTime
        if self.status in ("Succeeded", "Failed"):
            body["percentComplete"] = 100
        if self.error:
            body["error"] = self.error
        return body


class LocalAzureState:
    """Everything local Azure knows: topology, per-provider state, operations, faults, regions.

    Providers keep their own state in ``provider_state(name)`` (a plain dict, JSON-friendly for
    ``GET /_local/state``) and take ``lock`` around changes that span several fields.
    """

    def __init__(self, topology: Topology, state_dir: Any):
        self.topology = topology
        self.state_dir = state_dir
        self.lock = threading.RLock()
        self.faults = Faults()
        self.failed_regions: set[str] = set()
        self._providers: dict[str, dict] = {}
        self._operations: dict[str, Operation] = {}
        self._region_failed: list[Callable[[str], None]] = []
        self._region_restored: list[Callable[[str], None]] = []
        self._dumpers: dict[str, Callable[[], Any]] = {}

    def provider_state(self, name: str) -> dict:
        with self.lock:
            return self._providers.setdefault(name, {})

    def on_region_failed(self, callback: Callable[[str], None]) -> None:
        self._region_failed.append(callback)

    def on_region_restored(self, callback: Callable[[str], None]) -> None:
        self._region_restored.append(callback)

    def register_dump(self, name: str, dump: Callable[[], Any]) -> None:
        """Let ``GET /_local/state`` show ``dump()`` for ``name`` instead of the raw dict."""
        self._dumpers[name] = dump

    def fail_region(self, region: str) -> None:
        region = region.lower()
        with self.lock:
            self.failed_regions.add(region)
        log.warning("region %s failed: telling %d providers", region, len(self._region_failed))
        for callback in self._region_failed:
            callback(region)

    def restore_region(self, region: str) -> None:
        region = region.lower()
        with self.lock:
            self.failed_regions.discard(region)
        log.info("region %s restored: telling %d providers", region, len(self._region_restored))
        for callback in self._region_restored:
            callback(region)

    def region_failed(self, region: str) -> bool:
        return region.lower() in self.failed_regions

    def latency_for(self, operation: str) -> float:
        """Configured latency (topology ``latencies``, exact or glob) for ``operation``."""
        best = 0.0
        for pattern, seconds in self.topology.latencies.items():
            if fnmatch.fnmatchcase(operation.lower(), pattern.lower()):
                best = max(best, seconds)
        return best

    def dump(self) -> dict[str, Any]:
        with self.lock:
            providers: dict[str, Any] = dict(self._providers)
            dumpers = dict(self._dumpers)
        # Dumps may ask live instances (SQL, files), so they run without holding the lock.
        providers.update({name: dump() for name, dump in dumpers.items()})
        with self.lock:
            return {
                "failedRegions": sorted(self.failed_regions),
                "faults": [f.model_dump() for f in self.faults.list()],
                "operations": [
                    op.model_dump(exclude={"result"}) for op in self._operations.values()
                ],
                "providers": providers,
            }

    def add_operation(self, op: Operation) -> None:
        with self.lock:
            self._operations[op.id] = op

    def operation(self, op_id: str) -> Operation | None:
        with self.lock:
            return self._operations.get(op_id)


def utc_now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e6):06d}Z"


class ArmContext:
    """What a handler may use besides its request: the base URL, the state, LRO helpers.

    One context is made per request, so ``operation`` and ``request`` are the current ones.
    """

    def __init__(self, base_url: str, state: LocalAzureState, request: ArmRequest, operation: str):
        self.base_url = base_url.rstrip("/")
        self.state = state
        self.request = request
        self.operation = operation
        self.pending_latency_s = 0.0

    def provider_state(self, name: str) -> dict:
        return self.state.provider_state(name)

    def add_latency(self, operation: str) -> float:
        """Seconds of latency configured for ``operation`` (topology ``latencies``)."""
        return self.state.latency_for(operation)

    def begin_operation(
        self,
        *,
        region: str,
        work: Callable[[], Any],
        status_style: str = "async",
        initial: ArmResponse | None = None,
        retry_after_s: float = 0.2,
    ) -> ArmResponse:
        """Start a long-running operation: ``work`` runs in the background.

        ``status_style`` picks the headers: ``async`` (Azure-AsyncOperation and Location),
        ``azure-async`` (Azure-AsyncOperation only) or ``location`` (Location only).
        The answer is ``initial`` (with the headers added) or a bare 202.
        """
        if status_style not in ("async", "azure-async", "location"):
            raise ValueError(f"status_style {status_style!r} is not async, azure-async, location")
        op = Operation(
            id=str(uuid.uuid4()),
            name=str(uuid.uuid4()),
            operation=self.operation,
            region=region.lower().replace(" ", ""),
            startTime=utc_now_iso(),
            retry_after_s=retry_after_s,
        )
        op.name = op.id
        self.state.add_operation(op)
        fail_fault = self.state.faults.take(self.operation, ("lro_fail",))
        delay, self.pending_latency_s = self.pending_latency_s, 0.0
        threading.Thread(
            target=self._run_operation, args=(op, work, fail_fault, delay), daemon=True, name=op.id
        ).start()

        response = initial or ArmResponse(202)
        headers = dict(response.headers)
        if status_style in ("async", "azure-async"):
            headers["Azure-AsyncOperation"] = self._operation_url(op, "azureAsyncOperation")
        if status_style in ("async", "location"):
            headers["Location"] = self._operation_url(op, "operationResults")
        # The generated SDKs read the initial Retry-After as an int (a fraction raises), while
        # azure-core's poller reads the status answers' Retry-After as a float: so the initial
        # answer says whole seconds (0 means poll at once) and the status URLs carry fractions.
        headers["Retry-After"] = str(int(retry_after_s))
        return ArmResponse(response.status, response.body, headers)

    def _operation_url(self, op: Operation, kind: str) -> str:
        subscription = self.request.params.get("subscription") or self.state.topology.subscription
        namespace = self.operation.split("/", 1)[0]
        api = self.request.api_version or "2025-08-01"
        return (
            f"{self.base_url}/subscriptions/{subscription}/providers/{namespace}/locations/"
            f"{op.region}/{kind}/{op.id}?api-version={api}"
        )

    def _run_operation(
        self, op: Operation, work: Callable[[], Any], fault: Fault | None, delay_s: float
    ) -> None:
        try:
            if delay_s > 0:
                time.sleep(delay_s)
            result = work()
            if fault is not None:
                raise RuntimeError(f"injected failure of {op.operation}")
            op.result = result
            op.status = "Succeeded"
        except ArmError as exc:
            op.status = "Failed"
            op.error = {"code": exc.code, "message": exc.message}
        except Exception as exc:  # the operation's failure is its result, reported by polling
            log.warning("operation %s (%s) failed: %s", op.id, op.operation, exc)
            op.status = "Failed"
            op.error = {"code": "InternalServerError", "message": str(exc)}
        op.endTime = utc_now_iso()
        log.info("operation %s (%s) ended %s", op.id, op.operation, op.status)


def _seconds_header(seconds: float) -> str:
    """Retry-After in seconds; fractions are kept (azure-core reads floats)."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class OperationsProvider:
    """The status URLs of long-running operations, for every resource provider namespace."""

    name = "operations"

    def routes(self) -> list[Route]:
        base = "/subscriptions/{subscription}/providers/{namespace}/locations/{region}"
        return [
            Route("GET", base + "/azureAsyncOperation/{id}", self.status, "operations/read"),
            Route("GET", base + "/operationResults/{id}", self.result, "operations/read"),
        ]

    @staticmethod
    def _find(req: ArmRequest, ctx: ArmContext) -> Operation:
        op = ctx.state.operation(req.params["id"])
        if op is None:
            raise ArmError(404, "OperationNotFound", f"operation {req.params['id']} is unknown")
        return op

    def status(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        op = self._find(req, ctx)
        headers = {}
        if op.status not in TERMINAL_STATES:
            headers["Retry-After"] = _seconds_header(op.retry_after_s)
        return ArmResponse(200, op.status_body(), headers)

    def result(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        op = self._find(req, ctx)
        if op.status not in TERMINAL_STATES:
            headers = {"Retry-After": _seconds_header(op.retry_after_s)}
            headers["Location"] = ctx.base_url + req.path + f"?api-version={req.api_version or ''}"
            return ArmResponse(202, None, headers)
        if op.status == "Failed":
            # 400, not 5xx: clients would retry a 5xx poll as if the poll itself had failed.
            error = op.error or {"code": "OperationFailed", "message": "the operation failed"}
            raise ArmError(400, **error)
        if op.result is None:
            return ArmResponse(204)
        return ArmResponse(200, op.result)


class Router:
    """Routes of every provider, matched in registration order."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add_provider(self, provider: Provider) -> None:
        self._routes.extend(provider.routes())

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self._routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def path_known(self, path: str) -> bool:
        return any(route.match(route.method, path) is not None for route in self._routes)


def dispatch(
    router: Router,
    state: LocalAzureState,
    base_url: str,
    *,
    method: str,
    path: str,
    query: dict[str, str],
    headers: Mapping[str, str],
    body: Any,
) -> ArmResponse:
    """Answer one ARM request: match a route, apply faults and latency, run the handler.

    Blocking: the server calls this in a worker thread.
    """
    found = router.match(method, path)
    if found is None:
        if router.path_known(path):
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
        raise ArmError(404, "ResourceNotFound", f"no local Azure resource answers {path}")
    route, params = found
    request = ArmRequest(
        method=method.upper(),
        path=path,
        params=params,
        query=query,
        headers=headers,
        body=body,
        api_version=query.get("api-version"),
    )
    ctx = ArmContext(base_url, state, request, route.operation)

    if route.operation.startswith(CONTROL_PREFIX):
        # The control API is how faults are managed, so faults never apply to it.
        return route.handler(request, ctx)

    fault = state.faults.take(route.operation, ("throttle", "error500", "conflict409"))
    if fault is not None:
        log.info("injected %s on %s", fault.kind, route.operation)
        return _fault_response(fault)

    # Latency stands in for how long the operation takes on Azure: a long-running operation
    # spends it in the background (begin_operation takes it), anything else before answering.
    ctx.pending_latency_s = state.latency_for(route.operation)
    latency = state.faults.take(route.operation, ("latency",))
    if latency is not None:
        ctx.pending_latency_s += latency.seconds
    response = route.handler(request, ctx)
    if ctx.pending_latency_s > 0:
        log.debug("adding %.2fs latency to %s", ctx.pending_latency_s, route.operation)
        time.sleep(ctx.pending_latency_s)
    return response


def _fault_response(fault: Fault) -> ArmResponse:
    if fault.kind == "throttle":
        seconds = fault.seconds or 0.1
        error = ArmError(429, "TooManyRequests", f"injected throttling of {fault.operation}")
        return error.response({"Retry-After": _seconds_header(seconds)})
    if fault.kind == "conflict409":
        return ArmError(409, "Conflict", f"injected conflict on {fault.operation}").response()
    return ArmError(500, "InternalServerError", f"injected failure of {fault.operation}").response()
