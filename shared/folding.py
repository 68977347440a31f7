"""Folding signals into incidents: one incident per correlation key, every signal kept as evidence.

A storm of alerts starts one orchestration. Whoever wins the conditional insert into the
incident index starts it; every other signal is stored on the incident it joins. The
orchestration is told only when something changes what it would decide (a new kind of signal,
a resolved signal, the count of signals crossing a threshold), by ringing a numbered
*doorbell* event: the SDK keeps one pending slot per event name and replays the whole history
for every event, so one event per signal would both lose signals and slow the run down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from pydantic import BaseModel, Field

from shared.classification import correlation_key, scenario_family
from shared.config import DrConfig
from shared.gates import GateRegistry
from shared.models import MonitorCondition, ScenarioFamily, Signal, SignalKind
from shared.stores import StoreError, Stores, _digest, _Table

log = logging.getLogger(__name__)

# Signal counts at which the orchestration hears about a storm growing.
COUNT_THRESHOLDS = (5, 25, 100, 500, 2500, 10000)
# Signals of these kinds say nothing is wrong; they are recorded and answered "ignored".
INFORMATIONAL_KINDS = frozenset({SignalKind.KEYVAULT_OTHER, SignalKind.EVENT_OTHER})
# Severity 4 is Azure Monitor's "Verbose".
INFORMATIONAL_SEVERITY = 4
DOORBELL_EVENT = "doorbell"
MAX_COUNTER_ATTEMPTS = 50

Disposition = Literal["started", "folded", "ignored"]


def doorbell_event(number: int) -> str:
    """The name of the n-th doorbell of an instance: each name is raised once and waited once."""
    return f"{DOORBELL_EVENT}-{number}"


class Intake(BaseModel):
    """What happened to one signal, as the intake endpoints answer it."""

    incident_id: str | None = None
    disposition: Disposition
    reason: str
    duplicate: bool = False
    started: bool = False
    notify: bool = Field(
        default=False, description="the incident's orchestration should re-read its signals"
    )
    correlation_key: str | None = None
    family: ScenarioFamily | None = None


class SignalCounts(BaseModel):
    """Folded signals of an incident, for the custom status and the report."""

    total: int = 0
    firing: int = 0
    resolved: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict)


class Counters:
    """Monotonic counters in a table row, raised with optimistic concurrency (ETag)."""

    def __init__(self, table: _Table):
        self.table = table

    def add(self, partition: str, row: str, field: str, by: int = 1) -> int:
        """Add ``by`` to ``field``; returns the new value. Safe under concurrent callers."""
        client = self.table.client
        for _ in range(MAX_COUNTER_ATTEMPTS):
            try:
                entity = client.get_entity(partition, row)
            except ResourceNotFoundError:
                if self.table.insert({"PartitionKey": partition, "RowKey": row, field: by}):
                    return by
                continue
            value = int(entity.get(field) or 0) + by
            try:
                client.update_entity(
                    {"PartitionKey": partition, "RowKey": row, field: value},
                    mode=UpdateMode.MERGE,
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, HttpResponseError) as exc:
                if getattr(exc, "status_code", 412) in (409, 412):
                    continue
                raise StoreError(f"raising counter {partition}/{row}.{field}: {exc}") from exc
            return value
        raise StoreError(f"counter {partition}/{row}.{field} stayed contended; try again")

    def get(self, partition: str, row: str) -> dict[str, int]:
        entity = self.table.get(partition, row) or {}
        return {
            k: int(v)
            for k, v in entity.items()
            if k not in ("PartitionKey", "RowKey") and isinstance(v, int)
        }


class SignalLog:
    """The signals folded into each incident, in arrival order, with their counts."""

    def __init__(self, table: _Table, counters: Counters):
        self.table = table
        self.counters = counters

    def add(self, incident_id: str, signal: Signal, now: datetime) -> tuple[bool, int]:
        """Store a signal on its incident; returns (new kind of signal, count after it)."""
        stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.table.insert(
            {
                "PartitionKey": incident_id,
                "RowKey": f"s.{stamp}.{_digest(signal.dedupe_key, 16)}",
                "body": signal.model_dump_json(),
            }
        )
        shape = f"{signal.kind.value}|{signal.component or ''}|{signal.condition.value}"
        new_kind = self.table.insert(
            {"PartitionKey": incident_id, "RowKey": f"k.{_digest(shape, 24)}", "shape": shape}
        )
        total = self.counters.add(incident_id, "counts", "total")
        state = "resolved" if signal.condition == MonitorCondition.RESOLVED else "firing"
        self.counters.add(incident_id, "counts", state)
        self.counters.add(incident_id, "counts", f"kind_{signal.kind.value.replace('-', '_')}")
        return new_kind, total

    def signals(self, incident_id: str) -> list[Signal]:
        rows = [r for r in self.table.partition(incident_id) if r["RowKey"].startswith("s.")]
        rows.sort(key=lambda r: r["RowKey"])
        return [Signal.model_validate_json(r["body"]) for r in rows]

    def counts(self, incident_id: str) -> SignalCounts:
        raw = self.counters.get(incident_id, "counts")
        return SignalCounts(
            total=raw.get("total", 0),
            firing=raw.get("firing", 0),
            resolved=raw.get("resolved", 0),
            by_kind={
                k.removeprefix("kind_").replace("_", "-"): v
                for k, v in raw.items()
                if k.startswith("kind_")
            },
        )


class Doorbells:
    """Numbered doorbells per orchestration instance: ring n raises the event ``doorbell-n``."""

    def __init__(self, counters: Counters):
        self.counters = counters

    def ring(self, instance_id: str) -> int:
        return self.counters.add(_digest(instance_id, 32), "doorbell", "rung")

    def rung(self, instance_id: str) -> int:
        return self.counters.get(_digest(instance_id, 32), "doorbell").get("rung", 0)


class IncidentStores:
    """Every table of intake and incidents: the base stores, signal log, doorbells, gates."""

    def __init__(self, stores: Stores, *, prefix: str = "dr"):
        from azure.data.tables import TableServiceClient

        from shared.stores import CLIENT_OPTIONS

        self.stores = stores
        service = TableServiceClient.from_connection_string(
            stores.connection_string, **CLIENT_OPTIONS
        )
        counters = Counters(_Table(service, f"{prefix}counters"))
        self.signal_log = SignalLog(_Table(service, f"{prefix}incidentsignals"), counters)
        self.doorbells = Doorbells(counters)
        self.gates = GateRegistry(_Table(service, f"{prefix}gates"))

    @classmethod
    def from_settings(cls, env: dict[str, str] | None = None, *, prefix: str = "dr"):
        return cls(Stores.from_settings(env, prefix=prefix), prefix=prefix)


def _informational(signal: Signal) -> str | None:
    if signal.kind in INFORMATIONAL_KINDS:
        return f"a {signal.kind.value} signal is informational: nothing to recover"
    if signal.severity == INFORMATIONAL_SEVERITY and signal.fired:
        return "severity 4 (verbose) is informational: nothing to recover"
    return None


def fold(
    signal: Signal,
    *,
    config: DrConfig,
    stores: IncidentStores,
    declared_by: str = "system",
    now: datetime | None = None,
    family: ScenarioFamily | None = None,
) -> Intake:
    """Decide what one signal does: start an incident, join one, or nothing (and why)."""
    now = now or datetime.now(UTC)
    if signal.environment is None:
        where = signal.resource_id or "no resource"
        return Intake(
            disposition="ignored",
            reason=f"no environment in the configuration owns {where}",
        )
    try:
        config.environment(signal.environment)
    except KeyError:
        return Intake(
            disposition="ignored",
            reason=f"environment {signal.environment!r} is not in the configuration",
        )
    informational = _informational(signal)
    if informational:
        return Intake(disposition="ignored", reason=informational)

    base = stores.stores
    seen = base.signals.record(signal, now=now)
    if not seen.first and seen.incident_id:
        return Intake(
            incident_id=seen.incident_id,
            disposition="folded",
            duplicate=True,
            reason=(
                f"already received at {seen.first_seen_at.isoformat()} and folded into "
                f"{seen.incident_id}; nothing changed"
            ),
        )

    family = family or scenario_family(signal)
    key = correlation_key(signal.environment, family)
    if signal.condition == MonitorCondition.RESOLVED:
        current = base.incidents.current(key)
        if current is None or current.ended_at is not None:
            return Intake(
                disposition="ignored",
                reason=f"a resolved signal with no open incident for {key}: nothing to stand down",
                correlation_key=key,
                family=family,
            )

    slot = base.incidents.open_or_join(
        key,
        environment=signal.environment,
        family=family,
        declared_by=declared_by,
        first_signal=signal.dedupe_key,
        now=now,
    )
    incident_id = slot.incident.incident_id
    base.signals.attach(signal.dedupe_key, incident_id)
    new_kind, total = stores.signal_log.add(incident_id, signal, now)
    if slot.started:
        return Intake(
            incident_id=incident_id,
            disposition="started",
            started=True,
            reason=f"first signal for {key}: incident {incident_id} declared",
            correlation_key=key,
            family=family,
        )
    why = _why_notify(signal, new_kind, total)
    return Intake(
        incident_id=incident_id,
        disposition="folded",
        reason=f"folded into open incident {incident_id}" + (f" ({why})" if why else ""),
        notify=why is not None,
        correlation_key=key,
        family=family,
    )


def _why_notify(signal: Signal, new_kind: bool, total: int) -> str | None:
    if signal.condition == MonitorCondition.RESOLVED:
        return "a resolved signal: the incident re-checks whether it can stand down"
    if new_kind:
        return f"a new kind of signal ({signal.kind.value}): the incident re-reads its evidence"
    if total in COUNT_THRESHOLDS:
        return f"{total} signals folded: the incident re-reads its evidence"
    return None


def ring_for(intake: Intake, stores: IncidentStores, raise_event: Callable[[str, str], None]):
    """Ring the incident's doorbell when the intake says its orchestration should hear of it."""
    if not intake.notify or intake.incident_id is None:
        return None
    number = stores.doorbells.ring(intake.incident_id)
    raise_event(intake.incident_id, doorbell_event(number))
    return number
