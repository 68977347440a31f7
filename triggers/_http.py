"""Small helpers the HTTP triggers share: JSON answers, bodies, bearer tokens, thread hops."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from shared.auth import (
    AuthConfigError,
    AuthError,
    Forbidden,
    TokenValidator,
    Unauthenticated,
    require_role,
)
from shared.models import Principal

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BODY_BYTES = 1024 * 1024


# Seconds a sender is asked to wait before sending again what storage could not take.
RETRY_AFTER_S = 5


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/json",
        headers=headers or {},
    )


def error(status: int, message: str) -> func.HttpResponse:
    return answer(status, {"error": message})


def storage_failed(what: str, exc: Exception) -> func.HttpResponse:
    """503 with Retry-After for ``what`` (e.g. "the signal") that storage could not record:
    senders resend on 503 (Azure Monitor does not on a plain 500), and what was recorded
    before the failure is recognised when it comes again."""
    return answer(
        503,
        {"error": f"{what} could not be recorded (storage failed); send it again: {exc}"},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class BadRequest(Exception):
    """The request cannot be used; the message says why (answered 400, or the given status)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def json_object(req: func.HttpRequest, *, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The body as a JSON object, or BadRequest naming what is wrong with it."""
    body = req.get_body() or b""
    if len(body) > limit:
        raise BadRequest(f"body is {len(body)} bytes; the limit is {limit}", 413)
    if not body.strip():
        raise BadRequest("body is empty; a JSON object is expected")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"body must be a JSON object, not {type(value).__name__}")
    return value


@lru_cache(maxsize=1)
def _validator() -> TokenValidator:
    return TokenValidator.from_settings()


def authenticate(req: func.HttpRequest) -> Principal:
    """The caller behind the bearer token. Raises Unauthenticated before anything is looked up."""
    try:
        validator = _validator()
    except AuthConfigError as exc:
        log.error("bearer tokens cannot be checked: %s", exc)
        raise Unauthenticated(f"this app cannot check bearer tokens: {exc}") from None
    return validator.authenticate(req.headers.get("Authorization"))


def auth_error(exc: Exception) -> func.HttpResponse:
    if isinstance(exc, Forbidden):
        return error(403, str(exc))
    return answer(
        401, {"error": str(exc)}, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


# Storage work waits on the network, not the CPU: asyncio's default pool (cpu count + 4
# threads) would hold a storm of signals to a handful in flight. Signals of one incident wait
# in these threads while a batch of theirs is written, so the pool bounds how many a batch
# can hold. ``DR_STORAGE_THREADS`` changes it.
DEFAULT_STORAGE_THREADS = 64


def _storage_threads() -> int:
    text = os.environ.get("DR_STORAGE_THREADS") or str(DEFAULT_STORAGE_THREADS)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1024:
        raise ValueError(f"DR_STORAGE_THREADS must be a whole number from 1 to 1024, not {text!r}")
    return value


STORAGE_THREADS = _storage_threads()
_POOL = ThreadPoolExecutor(max_workers=STORAGE_THREADS, thread_name_prefix="dr-storage")


async def in_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run blocking storage work off the event loop the async client functions run on."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(_POOL, call)


M = TypeVar("M", bound=BaseModel)


class Refusal(Exception):
    """A request refused before any work: ``response`` is the answer to send."""

    def __init__(self, response: func.HttpResponse):
        super().__init__(response.status_code)
        self.response = response


def validation_message(exc: ValidationError) -> str:
    """Every field pydantic refused, with where it is: ``gate: Input should be ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


async def caller_and_body(
    req: func.HttpRequest, model: type[M], *roles: str
) -> tuple[Principal, M]:
    """The bearer token first (401/403 before anything is read), then the body (400/413).

    :raises Refusal: with the answer to send.
    """
    try:
        principal = await in_thread(authenticate, req)
        if roles:
            require_role(principal, *roles)
    except AuthError as exc:
        raise Refusal(auth_error(exc)) from None
    try:
        return principal, model.model_validate(json_object(req))
    except BadRequest as exc:
        raise Refusal(error(exc.status, str(exc))) from None
    except ValidationError as exc:
        raise Refusal(error(400, validation_message(exc))) from None
