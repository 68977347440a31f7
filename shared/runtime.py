"""The process-wide handles that activities and triggers share: configuration, stores, audit.

Each is built on first use from app settings and kept for the life of the worker process, as
the Functions worker keeps module state between invocations.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache

from shared.audit import AuditWriter
from shared.config import DrConfig, cached_config
from shared.folding import IncidentStores
from shared.stores import connection_string_from_settings

_lock = threading.Lock()


def config() -> DrConfig:
    return cached_config()


def table_prefix() -> str:
    """Tables of one deployment share a prefix (``DR_TABLE_PREFIX``, default ``dr``)."""
    return os.environ.get("DR_TABLE_PREFIX", "dr")


@lru_cache(maxsize=1)
def stores() -> IncidentStores:
    with _lock:
        return IncidentStores.from_settings(prefix=table_prefix())


@lru_cache(maxsize=1)
def audit() -> AuditWriter:
    with _lock:
        return AuditWriter(connection_string_from_settings())


def reset() -> None:
    """Forget every handle (tests that change app settings call this)."""
    stores.cache_clear()
    audit.cache_clear()
