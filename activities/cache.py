"""Cache activity: flush Odoo's sessions in Redis on the recovered side.

Sessions are deleted by key prefix (SCAN + UNLINK in batches), so queues and other keys in the
same Redis stay; FLUSHDB only when the request says so. The Redis URL is the request's, a Key
Vault secret's, or the ``DR_REDIS_URL`` app setting.
"""

from __future__ import annotations

import logging
import os
import re

import azure.durable_functions as df
import redis

from activities.database import ActivityError, audit, read_secret
from shared.recovery import CacheFlushRequest, CacheFlushResult

log = logging.getLogger(__name__)

bp = df.Blueprint()

_GLOB = re.compile(r"([*?\[\]\\])")


def redis_client(req: CacheFlushRequest) -> redis.Redis:
    """A client with the request's timeout on connecting and on every command."""
    url = req.redis
    if url is None and req.redis_secret is not None:
        url = read_secret(req.redis_secret)[0]
    url = url or os.environ.get("DR_REDIS_URL")
    if not url:
        raise ActivityError("no Redis given: set redis, redis_secret or the DR_REDIS_URL setting")
    return redis.Redis.from_url(
        url,
        socket_timeout=req.timeout_s,
        socket_connect_timeout=req.timeout_s,
        retry_on_timeout=False,
    )


def session_pattern(prefix: str) -> str:
    """The SCAN pattern for keys that start with ``prefix`` (glob characters escaped)."""
    return _GLOB.sub(r"\\\1", prefix) + "*"


def delete_by_prefix(client: redis.Redis, prefix: str, batch: int) -> int:
    deleted = 0
    pending: list[bytes] = []
    for key in client.scan_iter(match=session_pattern(prefix), count=batch):
        pending.append(key)
        if len(pending) >= batch:
            deleted += client.unlink(*pending)
            pending.clear()
    if pending:
        deleted += client.unlink(*pending)
    return deleted


def flush(req: CacheFlushRequest) -> CacheFlushResult:
    """Delete the sessions (or, with ``flush_all``, every key of the database)."""
    client = redis_client(req)
    try:
        if req.flush_all:
            deleted = int(client.dbsize())
            client.flushdb()
            pattern, left = None, int(client.dbsize())
            detail = f"flushed the whole Redis database ({deleted} keys)"
        else:
            deleted = delete_by_prefix(client, req.prefix, req.batch)
            pattern = session_pattern(req.prefix)
            left = sum(1 for _ in client.scan_iter(match=pattern, count=req.batch))
            detail = f"deleted {deleted} session keys matching {pattern!r}; {left} left"
    except redis.RedisError as exc:
        raise ActivityError(f"flushing Redis sessions failed: {exc}") from exc
    finally:
        client.close()
    audit(req.incident_id, req.step_id, "cache_flush", detail, deleted=deleted)
    return CacheFlushResult(
        deleted=deleted, pattern=pattern, flushed_all=req.flush_all, keys_after=left, detail=detail
    )


@bp.activity_trigger(input_name="payload", activity="cache_flush")
def cache_flush(payload: dict) -> dict:
    return flush(CacheFlushRequest.model_validate(payload)).model_dump(mode="json")
