"""The notifier: Teams adaptive cards and plain webhook messages, to the URLs in app settings.

On Azure ``DR_NOTIFY_TEAMS_URL`` is the Logic App (or Teams workflow) that posts cards and
``DR_NOTIFY_WEBHOOK_URL`` a plain JSON webhook; under devhost both point at its message sink.
A message that cannot be delivered is reported to the caller, never raised: a notification
failure must not stop a recovery, but it goes into the audit trail.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import requests
from pydantic import BaseModel

log = logging.getLogger(__name__)

Channel = Literal["teams", "webhook"]
SETTING = {"teams": "DR_NOTIFY_TEAMS_URL", "webhook": "DR_NOTIFY_WEBHOOK_URL"}
TIMEOUT_S = (3.05, 10)


class Delivery(BaseModel):
    channel: Channel
    delivered: bool
    detail: str


def send(channel: Channel, body: dict[str, Any], *, incident_id: str | None = None) -> Delivery:
    """POST one message; the result says whether it was delivered and, if not, why."""
    url = os.environ.get(SETTING[channel])
    if not url:
        return Delivery(channel=channel, delivered=False, detail=f"{SETTING[channel]} is not set")
    try:
        response = requests.post(url, json=body, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        log.warning("notification to %s for incident '%s' failed: %s", channel, incident_id, exc)
        return Delivery(channel=channel, delivered=False, detail=f"{type(exc).__name__}: {exc}")
    if response.status_code >= 300:
        log.warning(
            "notification to %s for incident '%s' answered %s",
            channel,
            incident_id,
            response.status_code,
        )
        return Delivery(
            channel=channel, delivered=False, detail=f"answered HTTP {response.status_code}"
        )
    log.debug("notification to %s for incident '%s' delivered", channel, incident_id)
    return Delivery(channel=channel, delivered=True, detail=f"HTTP {response.status_code}")
