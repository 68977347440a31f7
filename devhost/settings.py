"""What devhost reads from the app folder: local.settings.json (app settings) and host.json."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class HostSettingsError(ValueError):
    """local.settings.json or host.json could not be used; the message names the file and why."""


class DurableSettings(BaseModel):
    """The host.json `extensions.durableTask` values devhost honours."""

    hub_name: str = "TestHubName"
    max_concurrent_activities: int = Field(default=10, ge=1, le=1000)
    max_concurrent_orchestrators: int = Field(default=8, ge=1, le=1000)


class HostJson(BaseModel):
    """The host.json values devhost honours; the rest of the file is accepted and ignored."""

    route_prefix: str = "api"
    durable: DurableSettings = DurableSettings()


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise HostSettingsError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise HostSettingsError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def load_local_settings(app_dir: Path) -> dict[str, str]:
    """Return the "Values" of DIR/local.settings.json as strings ({} when the file is absent)."""
    path = app_dir / "local.settings.json"
    if not path.exists():
        return {}
    values = _read_json(path).get("Values") or {}
    if not isinstance(values, dict):
        raise HostSettingsError(f"{path}: 'Values' must be an object of app settings")
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def apply_local_settings(app_dir: Path) -> list[str]:
    """Put local.settings.json's Values into os.environ, as Core Tools does; return the names.

    A variable that is already set in the environment wins over the file, as with Core Tools.
    """
    applied = []
    for name, value in load_local_settings(app_dir).items():
        if name in os.environ:
            log.debug(
                "app setting %s already in the environment; local.settings.json skipped", name
            )
            continue
        os.environ[name] = value
        applied.append(name)
    return applied


def load_host_json(app_dir: Path) -> HostJson:
    """Read DIR/host.json (defaults when absent)."""
    path = app_dir / "host.json"
    if not path.exists():
        return HostJson()
    data = _read_json(path)
    extensions = data.get("extensions") or {}
    http = extensions.get("http") or {}
    durable = extensions.get("durableTask") or {}
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise HostSettingsError(f"{path}: extensions.http.routePrefix must be a string")
    try:
        durable_settings = DurableSettings(
            hub_name=durable.get("hubName", "TestHubName"),
            max_concurrent_activities=durable.get("maxConcurrentActivityFunctions", 10),
            max_concurrent_orchestrators=durable.get("maxConcurrentOrchestratorFunctions", 8),
        )
    except ValueError as exc:
        raise HostSettingsError(f"{path}: extensions.durableTask: {exc}") from exc
    return HostJson(route_prefix=prefix.strip("/"), durable=durable_settings)
