"""Management locks (Microsoft.Authorization/locks) in local Azure, and their enforcement.

A lock sits on a scope (a subscription, a resource group or a resource) and covers
everything below it. ``CanNotDelete`` refuses deletes; ``ReadOnly`` refuses every write and
every POST action (as on Azure, where it also blocks POSTs that only read, such as listing
credentials).
Providers call ``enforce(state, method, path)`` before a change, which raises the 409
``ScopeLocked`` that Azure answers, naming the lock.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field

from devhost.localazure.arm import (
    ArmContext,
    ArmError,
    ArmRequest,
    ArmResponse,
    ProviderEnv,
    Route,
)
from devhost.localazure.topology_f import load_state, network_topology, save_state

log = logging.getLogger(__name__)

NAME = "locks"
LOCK_TYPE = "Microsoft.Authorization/locks"
LOCKS_SUFFIX = "/providers/Microsoft.Authorization/locks"
LEVELS = ("CanNotDelete", "ReadOnly")
WRITE_METHODS = ("PUT", "PATCH", "DELETE", "POST")
# Scopes a lock can be placed on: subscription, resource group, resource, child resource.
SCOPES = [
    "/subscriptions/{subscription}",
    "/subscriptions/{subscription}/resourceGroups/{rg}",
    "/subscriptions/{subscription}/resourceGroups/{rg}/providers/{ns}/{type}/{resource}",
    "/subscriptions/{subscription}/resourceGroups/{rg}/providers/{ns}/{type}/{resource}"
    "/{childType}/{child}",
]


class Lock(BaseModel):
    scope: str = Field(description="the scope path, as given, without a trailing slash")
    name: str
    level: str
    notes: str | None = None

    @property
    def id(self) -> str:
        return f"{self.scope}{LOCKS_SUFFIX}/{self.name}"

    def body(self) -> dict[str, Any]:
        props: dict[str, Any] = {"level": self.level}
        if self.notes:
            props["notes"] = self.notes
        return {"id": self.id, "name": self.name, "type": LOCK_TYPE, "properties": props}


def _locks(state: Any) -> dict[str, Lock]:
    return state.provider_state(NAME).setdefault("locks", {})


def _norm(path: str) -> str:
    return path.rstrip("/").lower()


def covering(state: Any, path: str) -> list[Lock]:
    """Locks on ``path`` or on a scope above it."""
    target = _norm(path)
    with state.lock:
        return [
            lock
            for lock in _locks(state).values()
            if target == _norm(lock.scope) or target.startswith(_norm(lock.scope) + "/")
        ]


def enforce(state: Any, method: str, path: str) -> None:
    """Raise 409 ScopeLocked when a lock forbids ``method`` on the resource at ``path``."""
    method = method.upper()
    if method not in WRITE_METHODS or LOCKS_SUFFIX.lower() in path.lower():
        return
    for lock in covering(state, path):
        if lock.level == "ReadOnly" or method == "DELETE":
            operation = "delete" if method == "DELETE" else "write"
            log.info("refused %s %s: lock %s (%s)", method, path, lock.name, lock.level)
            raise ArmError(
                409,
                "ScopeLocked",
                f"the scope '{path}' cannot perform {operation} operation because the scope "
                f"'{lock.scope}' is locked by '{lock.name}' ({lock.level}); remove the lock "
                "and try again",
            )


class LocksProvider:
    """ARM routes of management locks at every scope."""

    name = NAME

    def __init__(self, env: ProviderEnv):
        self.env = env
        self.state = env.state
        saved = load_state(env.state_dir, NAME)
        with self.state.lock:
            if saved is not None:
                for raw in saved.get("locks", []):
                    lock = Lock.model_validate(raw)
                    _locks(self.state)[_norm(lock.id)] = lock
            for spec in network_topology(self.state).locks if saved is None else []:
                lock = Lock(
                    scope=spec.scope.rstrip("/"),
                    name=spec.name,
                    level=spec.level,
                    notes=spec.notes,
                )
                _locks(self.state)[_norm(lock.id)] = lock
        self.state.register_dump(NAME, self.dump)

    def dump(self) -> dict[str, Any]:
        with self.state.lock:
            return {"locks": [lock.body() for lock in _locks(self.state).values()]}

    def save(self) -> None:
        with self.state.lock:
            data = [lock.model_dump(mode="json") for lock in _locks(self.state).values()]
            save_state(self.env.state_dir, NAME, {"locks": data})

    def routes(self) -> list[Route]:
        op = "Microsoft.Authorization/locks"
        routes = []
        for scope in SCOPES:
            one = scope + LOCKS_SUFFIX + "/{lockName}"
            routes += [
                Route("GET", scope + LOCKS_SUFFIX, self.list_locks, f"{op}/read"),
                Route("GET", one, self.get_lock, f"{op}/read"),
                Route("PUT", one, self.put_lock, f"{op}/write"),
                Route("DELETE", one, self.delete_lock, f"{op}/delete"),
            ]
        return routes

    @staticmethod
    def _scope(req: ArmRequest) -> str:
        return req.path[: req.path.lower().index(LOCKS_SUFFIX.lower())].rstrip("/")

    def list_locks(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        found = covering(self.state, self._scope(req))
        return ArmResponse(200, {"value": [lock.body() for lock in found]})

    def get_lock(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        lock = _locks(self.state).get(_norm(req.path))
        if lock is None:
            raise ArmError(404, "LockNotFound", f"the lock {req.params['lockName']} was not found")
        return ArmResponse(200, lock.body())

    def put_lock(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        body = req.body if isinstance(req.body, dict) else None
        props = (body or {}).get("properties")
        if not isinstance(props, dict):
            raise ArmError(400, "InvalidRequestContent", "a lock is {'properties': {'level'}}")
        level = props.get("level")
        if level not in LEVELS:
            raise ArmError(
                400, "InvalidLockLevel", f"lock level {level!r} is not CanNotDelete or ReadOnly"
            )
        lock = Lock(
            scope=self._scope(req),
            name=req.params["lockName"],
            level=level,
            notes=props.get("notes"),
        )
        with self.state.lock:
            existed = _norm(lock.id) in _locks(self.state)
            _locks(self.state)[_norm(lock.id)] = lock
            self.save()
        log.info("lock %s (%s) placed on %s", lock.name, lock.level, lock.scope)
        return ArmResponse(200 if existed else 201, lock.body())

    def delete_lock(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        with self.state.lock:
            removed = _locks(self.state).pop(_norm(req.path), None)
            self.save()
        if removed is None:
            return ArmResponse(204)
        log.info("lock %s removed from %s", removed.name, removed.scope)
        return ArmResponse(200)


def create_provider(env: ProviderEnv) -> LocksProvider:
    return LocksProvider(env)
