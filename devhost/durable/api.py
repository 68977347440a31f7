"""The Durable HTTP management API (`/runtime/webhooks/durabletask/...`), as the extension
answers it, so the unmodified DurableOrchestrationClient works against devhost.

Also builds the `durableClient` binding value that client functions receive.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from urllib.parse import quote

from aiohttp import web

from devhost.durable import history as h
from devhost.durable.engine import Engine, EngineError
from devhost.durable.status import status_of
from devhost.durable.store import TERMINAL_STATUSES

log = logging.getLogger(__name__)

PUBLIC_PREFIX = "/runtime/webhooks/durabletask"
RPC_PREFIX = "/durabletask"
CONTINUATION_HEADER = "x-ms-continuation-token"
PLACEHOLDER = "INSTANCEID"


def _flag(request: web.Request, name: str, default: bool) -> bool:
    for key, value in request.query.items():
        if key.lower() == name.lower():
            return value.strip().lower() == "true"
    return default


def _query(request: web.Request, name: str) -> str | None:
    for key, value in request.query.items():
        if key.lower() == name.lower():
            return value
    return None


def _json(body, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _bad_request(message: str) -> web.Response:
    return _json({"Message": message, "ExceptionMessage": message}, status=400)


def management_urls(base: str, hub: str, key: str | None, instance_id: str) -> dict:
    """The check-status URLs for one instance (`base` is `<origin>/runtime/webhooks/...`)."""
    tail = f"taskHub={quote(hub)}&connection=Storage" + (f"&code={key}" if key else "")
    i = f"{base}/instances/{instance_id}"
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{i}?{tail}",
        "sendEventPostUri": f"{i}/raiseEvent/{{eventName}}?{tail}",
        "terminatePostUri": f"{i}/terminate?reason={{text}}&{tail}",
        "rewindPostUri": f"{i}/rewind?reason={{text}}&{tail}",
        "purgeHistoryDeleteUri": f"{i}?{tail}",
        "restartPostUri": f"{i}/restart?{tail}",
        "suspendPostUri": f"{i}/suspend?reason={{text}}&{tail}",
        "resumePostUri": f"{i}/resume?reason={{text}}&{tail}",
    }


def client_binding(origin: str, hub: str, key: str | None) -> str:
    """The `durableClient` binding value (JSON text), pointing at this host."""
    base = origin.rstrip("/") + PUBLIC_PREFIX
    code = f"&code={key}" if key else ""
    start = f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
    return json.dumps(
        {
            "taskHubName": hub,
            "creationUrls": {
                "createNewInstancePostUri": start + (f"?code={key}" if key else ""),
                "createAndWaitOnNewInstancePostUri": start
                + "?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}"
                + code,
            },
            "managementUrls": management_urls(base, hub, key, PLACEHOLDER),
            "baseUrl": base,
            "requiredQueryStringParameters": f"code={key}" if key else "",
            "rpcBaseUrl": origin.rstrip("/") + RPC_PREFIX + "/",
        }
    )


def _parse_time(text: str | None, name: str) -> str | None:
    if not text:
        return None
    try:
        return h.fmt(h.parse(text))
    except ValueError as exc:
        raise EngineError(f"{name} is not an ISO-8601 time: {text!r}") from exc


def _statuses(text: str | None) -> list[str] | None:
    if not text:
        return None
    known = {
        s.lower(): s
        for s in (
            "Pending",
            "Running",
            "Suspended",
            "Completed",
            "Failed",
            "Terminated",
            "Canceled",
            "ContinuedAsNew",
        )
    }
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.lower() not in known:
            raise EngineError(f"runtimeStatus {part!r} is not a runtime status")
        out.append(known[part.lower()])
    return out or None


class ManagementApi:
    """aiohttp handlers of the management API over one engine."""

    def __init__(self, engine: Engine, key_for_urls: str | None = None) -> None:
        self.engine = engine
        self.key = key_for_urls

    def routes(self, prefix: str) -> list[web.RouteDef]:
        p = prefix.rstrip("/")
        return [
            web.post(p + "/orchestrators/{name}", self.start),
            web.post(p + "/orchestrators/{name}/{id}", self.start),
            web.get(p + "/instances", self.list_instances),
            web.get(p + "/instances/", self.list_instances),
            web.delete(p + "/instances", self.purge_by),
            web.delete(p + "/instances/", self.purge_by),
            web.get(p + "/instances/{id}", self.get_status),
            web.delete(p + "/instances/{id}", self.purge_one),
            web.post(p + "/instances/{id}/raiseEvent/{event}", self.raise_event),
            web.post(p + "/instances/{id}/terminate", self.terminate),
            web.post(p + "/instances/{id}/suspend", self.suspend),
            web.post(p + "/instances/{id}/resume", self.resume),
            web.post(p + "/instances/{id}/restart", self.restart),
            web.post(p + "/instances/{id}/rewind", self.rewind),
        ]

    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}{PUBLIC_PREFIX}"

    def _check_status(self, request: web.Request, instance_id: str) -> web.Response:
        urls = management_urls(
            self._base(request), self.engine.hub_name, self.key, quote(instance_id, safe="")
        )
        urls["id"] = instance_id
        body = {k: v for k, v in urls.items() if k != "rewindPostUri"}
        return _json(
            body,
            status=202,
            headers={"Location": urls["statusQueryGetUri"], "Retry-After": "10"},
        )

    async def start(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = await request.read()
        value = None
        if raw.strip():
            try:
                value = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return _bad_request("the request body is not valid JSON")
        # The Python client sends JSON text inside JSON (a str); a dict is used as it is.
        # Decision: other JSON values (numbers, lists, booleans) are passed as JSON text, so
        # get_input() decodes them instead of raising as it would on Azure.
        if value is not None and not isinstance(value, str | dict):
            value = json.dumps(value)
        try:
            outcome = self.engine.start_instance(name, request.match_info.get("id"), value)
        except EngineError as exc:
            return _bad_request(str(exc))
        if not outcome.created:
            return _bad_request(
                f"An Orchestration instance with the status {outcome.existing_status} already "
                f"exists: instance id '{outcome.instance_id}' cannot be started again until "
                "it has finished."
            )
        timeout = _query(request, "timeout")
        if timeout:
            try:
                wait_s = float(timeout)
            except ValueError:
                return _bad_request(f"timeout must be a number of seconds, not {timeout!r}")
            row = await self.engine.wait_for(outcome.instance_id, min(wait_s, 600.0))
            if row is not None and row.status in TERMINAL_STATUSES:
                return _json(status_of(row).model_dump(exclude_none=True), status=200)
        return self._check_status(request, outcome.instance_id)

    async def get_status(self, request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        row = self.engine.get(iid)
        if row is None:
            return web.Response(status=404)
        status = status_of(
            row,
            show_input=_flag(request, "showInput", True),
            show_history=_flag(request, "showHistory", False),
            with_output=_flag(request, "showHistoryOutput", False),
        )
        body = status.model_dump(exclude={"historyEvents"} if status.historyEvents is None else {})
        if row.status == "Failed" and _flag(request, "returnInternalServerErrorOnFailure", False):
            return _json(body, status=500)
        if row.status in TERMINAL_STATUSES:
            return _json(body, status=200)
        location = str(request.url)
        return _json(body, status=202, headers={"Location": location, "Retry-After": "5"})

    async def list_instances(self, request: web.Request) -> web.Response:
        try:
            created_from = _parse_time(_query(request, "createdTimeFrom"), "createdTimeFrom")
            created_to = _parse_time(_query(request, "createdTimeTo"), "createdTimeTo")
            statuses = _statuses(_query(request, "runtimeStatus"))
            top_text = _query(request, "top")
            top = int(top_text) if top_text else None
            if top is not None and top < 1:
                raise EngineError("top must be a positive integer")
            after = _decode_token(request.headers.get(CONTINUATION_HEADER))
        except ValueError as exc:
            return _bad_request(str(exc))
        rows = self.engine.store.query(
            created_from,
            created_to,
            statuses,
            _query(request, "instanceIdPrefix"),
            after,
            (top + 1) if top else None,
        )
        headers = {}
        if top and len(rows) > top:
            rows = rows[:top]
            last = rows[-1]
            headers[CONTINUATION_HEADER] = _encode_token(last.created_time, last.instance_id)
        show_input = _flag(request, "showInput", True)
        body = [
            status_of(r, show_input=show_input).model_dump(exclude={"historyEvents"}) for r in rows
        ]
        return _json(body, status=200, headers=headers)

    async def raise_event(self, request: web.Request) -> web.Response:
        iid, name = request.match_info["id"], request.match_info["event"]
        if request.content_type != "application/json":
            return _bad_request("raise event needs Content-Type: application/json")
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _bad_request("the event data is not valid JSON")
        # Azure parses the body once and stores it re-serialized: the Python client's
        # double-encoded data therefore reaches the orchestrator as JSON text.
        outcome = self.engine.raise_event(iid, name, json.dumps(parsed))
        return _outcome(outcome)

    async def terminate(self, request: web.Request) -> web.Response:
        reason = _query(request, "reason")
        return _outcome(self.engine.terminate(request.match_info["id"], reason))

    async def suspend(self, request: web.Request) -> web.Response:
        reason = _query(request, "reason")
        return _outcome(self.engine.suspend(request.match_info["id"], reason))

    async def resume(self, request: web.Request) -> web.Response:
        reason = _query(request, "reason")
        return _outcome(self.engine.resume(request.match_info["id"], reason))

    async def rewind(self, request: web.Request) -> web.Response:
        row = self.engine.get(request.match_info["id"])
        if row is None:
            return web.Response(status=404)
        # Limitation: rewind (re-running a failed instance from its failure) is not supported.
        return _bad_request("devhost does not support rewind; start a new instance instead")

    async def restart(self, request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        row = self.engine.get(iid)
        if row is None:
            return web.Response(status=404)
        new_id = _flag(request, "restartWithNewInstanceId", True)
        value = json.loads(row.input) if row.input is not None else None
        try:
            outcome = self.engine.start_instance(row.name, None if new_id else iid, value)
        except EngineError as exc:
            return _bad_request(str(exc))
        if not outcome.created:
            return web.Response(status=410)
        return _json(outcome.instance_id, status=202)

    async def purge_one(self, request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        n = self.engine.purge([iid])
        if n == 0:
            return web.Response(status=404)
        return _json({"instancesDeleted": n})

    async def purge_by(self, request: web.Request) -> web.Response:
        try:
            created_from = _parse_time(_query(request, "createdTimeFrom"), "createdTimeFrom")
            created_to = _parse_time(_query(request, "createdTimeTo"), "createdTimeTo")
            statuses = _statuses(_query(request, "runtimeStatus"))
        except ValueError as exc:
            return _bad_request(str(exc))
        if not created_from:
            return _bad_request("purge by filter needs createdTimeFrom")
        rows = self.engine.store.query(created_from, created_to, statuses, None, None, None)
        n = self.engine.purge([r.instance_id for r in rows])
        if n == 0:
            return web.Response(status=404)
        return _json({"instancesDeleted": n})


def _outcome(outcome: str) -> web.Response:
    if outcome == "not_found":
        return web.Response(status=404)
    if outcome == "gone":
        return web.Response(status=410)
    return web.Response(status=202)


def _encode_token(created: str, instance_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created, instance_id]).encode()).decode()


def _decode_token(token: str | None) -> tuple[str, str] | None:
    if not token or token == "null":
        return None
    try:
        created, iid = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(created), str(iid)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise EngineError(f"{CONTINUATION_HEADER} is not a token this host issued") from exc
