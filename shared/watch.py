"""What the replication monitor last saw of each environment's primary, kept between incidents.

When a region fails, its primary cannot be asked what it had committed. The monitor's last
observation (taken every few seconds while it answered) is what lets the RPO estimate say how
much the replica had not yet received, instead of only an upper bound.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from azure.data.tables import TableServiceClient
from pydantic import BaseModel

from shared.recovery import EarlierObservation
from shared.stores import _Table, connection_string_from_settings, storage_options

log = logging.getLogger(__name__)

# How long the monitor waits at most between tries at a primary it could not observe. Each
# failed try doubles the wait from the configured interval up to this: a primary that is down,
# or an app with no Azure to ask, costs one probe and one log line a minute, not one a second.
MAX_WATCH_BACKOFF_S = 60.0


def next_watch_interval(interval_s: float, failures: int) -> float:
    """Seconds until the next observation of a primary.

    ``interval_s`` (the environment's ``watch_interval``) while the primary answers; after
    ``failures`` failed tries in a row, ``interval_s`` doubled once per failure, up to
    ``MAX_WATCH_BACKOFF_S`` (and never less than ``interval_s``).
    """
    if failures <= 0:
        return interval_s
    backed_off = interval_s * 2 ** min(failures, 32)
    return max(interval_s, min(backed_off, MAX_WATCH_BACKOFF_S))


class WatchRecord(BaseModel):
    environment: str
    observation: EarlierObservation
    recorded_at: datetime


class ObservationStore:
    """One row per environment: the latest observation of a primary that answered."""

    def __init__(self, connection_string: str, *, prefix: str = "dr"):
        service = TableServiceClient.from_connection_string(
            connection_string, **storage_options(connection_string)
        )
        self.table = _Table(service, f"{prefix}watch")

    @classmethod
    def from_settings(cls, *, prefix: str = "dr") -> ObservationStore:
        return cls(connection_string_from_settings(), prefix=prefix)

    def save(self, environment: str, observation: EarlierObservation) -> None:
        record = WatchRecord(
            environment=environment, observation=observation, recorded_at=datetime.now(UTC)
        )
        entity = {
            "PartitionKey": "primary",
            "RowKey": environment,
            "body": record.model_dump_json(),
        }
        if not self.table.insert(entity):
            self.table.merge(entity)

    def latest(self, environment: str) -> EarlierObservation | None:
        entity = self.table.get("primary", environment)
        if not entity:
            return None
        return WatchRecord.model_validate_json(entity["body"]).observation
