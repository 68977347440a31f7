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
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from pydantic import BaseModel, Field

from shared.classification import correlation_key, scenario_family
from shared.config import DrConfig
from shared.gates import GateRegistry
from shared.models import MonitorCondition, ScenarioFamily, Signal, SignalKind
from shared.stores import (
    MAX_TRANSACTION,
    DedupeResult,
    IncidentSlot,
    StoreError,
    Stores,
    _calling,
    _digest,
    _Table,
)

log = logging.getLogger(__name__)

# Signal counts at which the orchestration hears about a storm growing.
COUNT_THRESHOLDS = (5, 25, 100, 500, 2500, 10000)
# Signals of these kinds say nothing is wrong; they are recorded and answered "ignored".
INFORMATIONAL_KINDS = frozenset({SignalKind.KEYVAULT_OTHER, SignalKind.EVENT_OTHER})
# Severity 4 is Azure Monitor's "Verbose".
INFORMATIONAL_SEVERITY = 4
DOORBELL_EVENT = "doorbell"
MAX_COUNTER_ATTEMPTS = 50
KIND_PREFIX = "kind_"
# Increments of one counters row summed into one conditional write.
MAX_COUNTER_BATCH = 500
# Counter rows whose last written state a process keeps (one per incident, one per doorbell).
MAX_KNOWN_ROWS = 10000
SHAPE_PREFIX = "shape_"
# Raw payloads up to this size are kept in the signal's own row (a table property holds 64 KiB,
# a transaction of 100 rows 4 MiB): no blob upload per signal. Larger ones go to blob storage.
INLINE_RAW_BYTES = 16 * 1024

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
    raw_kept: bool = Field(
        default=False, description="the raw payload was stored in the signal's row on its incident"
    )


class SignalCounts(BaseModel):
    """Folded signals of an incident, for the custom status and the report."""

    total: int = 0
    firing: int = 0
    resolved: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict)


class Counters:
    """Monotonic counters in a table row, raised with optimistic concurrency (ETag).

    Concurrent callers in one process that raise the same row are coalesced: one of them
    writes the sum of the increments queued for the row in one conditional write, and each
    caller gets the values as they stood right after its own increment, as if written alone.
    The row as this process last wrote it (values and ETag) is kept, so the next write of it
    skips the read; a write by anyone else changes the ETag, and then the row is read again.
    """

    def __init__(self, table: _Table):
        self.table = table
        self._writes = Coalescer(self._raise_batch, max_batch=MAX_COUNTER_BATCH)
        # (partition, row) -> (the row's values, its ETag) after this process's last write.
        # Only the Coalescer's single writer of a row reads or replaces its entry.
        self._known: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}

    def add(self, partition: str, row: str, field: str, by: int = 1) -> int:
        """Add ``by`` to ``field``; returns the new value. Safe under concurrent callers."""
        return self.add_many(partition, row, {field: by})[field]

    def add_many(self, partition: str, row: str, by: dict[str, int]) -> dict[str, int]:
        """Add to several fields of one row; returns their new values (after this increment)."""
        return self.add_each(partition, row, [by])[0]

    def add_each(
        self, partition: str, row: str, increments: list[dict[str, int]]
    ) -> list[dict[str, int]]:
        """Several increments of one row, in order; the values right after each of them."""
        return self._writes.submit((partition, row), [dict(by) for by in increments])

    def _raise_batch(self, target: tuple[str, str], groups: list[list[dict[str, int]]]):
        total: dict[str, int] = {}
        for group in groups:
            for by in group:
                for f, n in by.items():
                    total[f] = total.get(f, 0) + n
        running = self._raise(*target, total)
        results = []
        for group in groups:
            values = []
            for by in group:
                for f, n in by.items():
                    running[f] = running.get(f, 0) + n
                values.append({f: running[f] for f in by})
            results.append(values)
        return results

    def _raise(self, partition: str, row: str, by: dict[str, int]) -> dict[str, int]:
        """One conditional write adding ``by``; returns the values of those fields before it."""
        client = self.table.client
        target = (partition, row)
        known = self._known.pop(target, None)
        for _ in range(MAX_COUNTER_ATTEMPTS):
            if known is None:
                try:
                    entity = client.get_entity(partition, row)
                except ResourceNotFoundError:
                    first = {"PartitionKey": partition, "RowKey": row, **by}
                    try:
                        with _calling(f"insert into {self.table.name}"):
                            meta = client.create_entity(first)
                    except ResourceExistsError:
                        continue
                    self._keep(target, dict(by), meta)
                    return dict.fromkeys(by, 0)
                known = (dict(entity), entity.metadata["etag"])
            values, etag = known
            before = {f: int(values.get(f) or 0) for f in by}
            after = {f: before[f] + n for f, n in by.items()}
            try:
                meta = client.update_entity(
                    {"PartitionKey": partition, "RowKey": row} | after,
                    mode=UpdateMode.MERGE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, HttpResponseError) as exc:
                if getattr(exc, "status_code", 412) in (409, 412):
                    known = None  # someone else wrote it: read it again
                    continue
                raise StoreError(f"raising counters {partition}/{row}: {exc}") from exc
            self._keep(target, values | after, meta)
            return before
        raise StoreError(f"counters {partition}/{row} stayed contended; try again")

    def _keep(self, target: tuple[str, str], values: dict[str, Any], meta: dict) -> None:
        etag = (meta or {}).get("etag")
        if not etag:
            return
        if len(self._known) >= MAX_KNOWN_ROWS:
            self._known.clear()  # a bound on memory; a forgotten row is read once more
        self._known[target] = (values, etag)

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

    @staticmethod
    def _row_key(signal: Signal) -> str:
        return f"s.{_digest(signal.dedupe_key, 32)}"

    def stored(self, incident_id: str, signal: Signal) -> bool:
        """Whether the signal is stored on the incident (a duplicate's first delivery got there)."""
        return self.table.get(incident_id, self._row_key(signal)) is not None

    def raw(self, incident_id: str, signal: Signal) -> bytes | None:
        """The raw payload kept in the signal's row, or None (not stored, or kept as a blob)."""
        row = self.table.get(incident_id, self._row_key(signal))
        value = (row or {}).get("raw")
        return bytes(value) if value is not None else None

    def add(
        self, incident_id: str, signal: Signal, now: datetime, raw: bytes | None = None
    ) -> tuple[bool, int] | None:
        """Store a signal on its incident; returns (new kind of signal, count after it).

        None when the signal was already stored on it: the row key is the signal's dedupe key,
        so a retried or concurrent delivery of one signal is counted once. ``raw`` is kept in
        the row when it is at most ``INLINE_RAW_BYTES``.
        """
        return self.add_many(incident_id, [(signal, now, raw)])[0]

    def add_many(
        self, incident_id: str, entries: list[tuple[Signal, datetime, bytes | None]]
    ) -> list[tuple[bool, int] | None]:
        """``add`` for each (signal, time, raw): one transaction of rows, one counters write."""
        rows = []
        for signal, now, raw in entries:
            row = {
                "PartitionKey": incident_id,
                "RowKey": self._row_key(signal),
                "at": now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ"),
                "body": signal.model_dump_json(),
            }
            if raw is not None and len(raw) <= INLINE_RAW_BYTES:
                row["raw"] = bytes(raw)
            rows.append(row)
        stored = self.table.insert_many(rows)
        # Limitation: the rows and their counts are two writes (two tables). When the counts'
        # write fails after the rows went in, the sender hears 503 and sends again, and that
        # delivery finds its row and is answered duplicate: the signal is kept as evidence but
        # missing from the counts. One table partition for both would make it one transaction.
        increments = []
        shapes = []
        for (signal, _, _), new in zip(entries, stored, strict=True):
            if not new:
                continue
            # The shape (kind, component, condition) is counted in the same row as the totals,
            # so "a new kind of signal" is the shape's count reaching one: no extra round trip.
            shape = f"{signal.kind.value}|{signal.component or ''}|{signal.condition.value}"
            shape_field = f"{SHAPE_PREFIX}{_digest(shape, 24)}"
            state = "resolved" if signal.condition == MonitorCondition.RESOLVED else "firing"
            kind = f"{KIND_PREFIX}{signal.kind.value.replace('-', '_')}"
            increments.append({"total": 1, state: 1, kind: 1, shape_field: 1})
            shapes.append(shape_field)
        after = self.counters.add_each(incident_id, "counts", increments) if increments else []
        counted = iter(zip(after, shapes, strict=True))
        results: list[tuple[bool, int] | None] = []
        for new in stored:
            if not new:
                results.append(None)
                continue
            counts, shape_field = next(counted)
            results.append((counts[shape_field] == 1, counts["total"]))
        return results

    def signals(self, incident_id: str) -> list[Signal]:
        return [signal for signal, _ in self.received(incident_id)]

    def received(self, incident_id: str) -> list[tuple[Signal, datetime | None]]:
        """The incident's signals in arrival order, each with when this app received it (the
        sender's own times can be late, skewed or nonsense; this one is ours)."""
        rows = [r for r in self.table.partition(incident_id) if r["RowKey"].startswith("s.")]
        rows.sort(key=lambda r: (r.get("at") or "", r["RowKey"]))
        return [(Signal.model_validate_json(r["body"]), _received_at(r.get("at"))) for r in rows]

    def counts(self, incident_id: str) -> SignalCounts:
        raw = self.counters.get(incident_id, "counts")
        return SignalCounts(
            total=raw.get("total", 0),
            firing=raw.get("firing", 0),
            resolved=raw.get("resolved", 0),
            by_kind={
                k.removeprefix(KIND_PREFIX).replace("_", "-"): v
                for k, v in raw.items()
                if k.startswith(KIND_PREFIX)
            },
        )


def _received_at(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC) if text else None
    except ValueError:
        return None


class Doorbells:
    """Numbered doorbells per orchestration instance: ring n raises the event ``doorbell-n``.

    Beside the rings (``rung``) the row keeps how many of them the instance had heard when it
    last looked at the store (``heard``), for callers that only need the instance to look
    again: while a ring is pending (rung, not yet heard) it covers whatever they stored before
    asking, so a storm raises one event per look of the instance, not one per signal.
    """

    ROW = "doorbell"

    def __init__(self, counters: Counters):
        self.counters = counters
        self._pending = Coalescer(self._ring_batch, max_batch=MAX_COUNTER_BATCH)

    def ring(self, instance_id: str) -> int:
        return self.counters.add(_digest(instance_id, 32), self.ROW, "rung")

    def rung(self, instance_id: str) -> int:
        return self.counters.get(_digest(instance_id, 32), self.ROW).get("rung", 0)

    def ring_unless_pending(self, instance_id: str) -> int | None:
        """Ring unless a ring is pending; the number rung, or None when one was pending.

        Call after storing what the instance should read: the instance marks what it heard
        (``hear``) before it reads the store, so a pending ring's wake reads this too.
        Concurrent callers in this process share one look at the row, and at most one of
        them gets a number to raise.
        """
        return self._pending.submit(instance_id, None)

    def _ring_batch(self, instance_id: str, callers: list[None]) -> list[int | None]:
        return [self._ring_once(instance_id)] + [None] * (len(callers) - 1)

    def _ring_once(self, instance_id: str) -> int | None:
        table = self.counters.table
        partition = _digest(instance_id, 32)
        for _ in range(MAX_COUNTER_ATTEMPTS):
            entity = self._entity(partition)
            if entity is None:
                first = {"PartitionKey": partition, "RowKey": self.ROW, "rung": 1, "heard": 0}
                if table.insert(first):
                    return 1
                continue
            rung, heard = int(entity.get("rung") or 0), int(entity.get("heard") or 0)
            if rung > heard:
                return None
            if self._ring_if_unchanged(partition, rung + 1, entity.metadata["etag"]):
                return rung + 1
            # Rung or heard by someone else meanwhile: look again.
        raise StoreError(f"doorbell of {instance_id} stayed contended; try again")

    def _entity(self, partition: str):
        try:
            with _calling(f"read from {self.counters.table.name}"):
                return self.counters.table.client.get_entity(partition, self.ROW)
        except ResourceNotFoundError:
            return None

    def _ring_if_unchanged(self, partition: str, rung: int, etag: str) -> bool:
        row = {"PartitionKey": partition, "RowKey": self.ROW, "rung": rung}
        try:
            self.counters.table.merge(row, etag=etag)
        except ResourceModifiedError:
            return False
        except StoreError as exc:
            if getattr(exc.__cause__, "status_code", None) in (409, 412):
                return False
            raise
        return True

    def hear(self, instance_id: str) -> int:
        """Mark every ring so far as heard; returns how many were rung.

        The instance calls this before it reads the store, and it alone writes ``heard``.
        """
        partition = _digest(instance_id, 32)
        entity = self.counters.table.get(partition, self.ROW)
        if entity is None:
            return 0
        rung = int(entity.get("rung") or 0)
        if int(entity.get("heard") or 0) < rung:
            heard = {"PartitionKey": partition, "RowKey": self.ROW, "heard": rung}
            self.counters.table.merge(heard)
        return rung


class IncidentStores:
    """Every table of intake and incidents: the base stores, signal log, doorbells, gates."""

    def __init__(self, stores: Stores, *, prefix: str = "dr"):
        from azure.data.tables import TableServiceClient

        from shared.stores import storage_options

        self.stores = stores
        service = TableServiceClient.from_connection_string(
            stores.connection_string, **storage_options(stores.connection_string)
        )
        counters = Counters(_Table(service, f"{prefix}counters"))
        self.signal_log = SignalLog(_Table(service, f"{prefix}incidentsignals"), counters)
        self.doorbells = Doorbells(counters)
        self.gates = GateRegistry(_Table(service, f"{prefix}gates"))
        # Signals of one correlation key queued while a batch of them is folded.
        self.folds = Coalescer(
            lambda key, items: _fold_batch(self, key, items), max_batch=MAX_TRANSACTION
        )

    @classmethod
    def from_settings(cls, env: dict[str, str] | None = None, *, prefix: str = "dr"):
        return cls(Stores.from_settings(env, prefix=prefix), prefix=prefix)


def _informational(signal: Signal) -> str | None:
    if signal.kind in INFORMATIONAL_KINDS:
        return f"a {signal.kind.value} signal is informational: nothing to recover"
    if signal.severity == INFORMATIONAL_SEVERITY and signal.fired:
        return "severity 4 (verbose) is informational: nothing to recover"
    return None


# Records what became of folded signals: (signal, its answer, its raw bytes) for each.
Recorder = Callable[[list[tuple[Signal, "Intake", bytes | None]]], None]


class _Folding(NamedTuple):
    """One signal waiting to be folded with the others of its correlation key."""

    signal: Signal
    declared_by: str
    now: datetime
    family: ScenarioFamily
    raw: bytes | None
    record: Recorder | None


def fold(
    signal: Signal,
    *,
    config: DrConfig,
    stores: IncidentStores,
    declared_by: str = "system",
    now: datetime | None = None,
    family: ScenarioFamily | None = None,
    raw: bytes | None = None,
    record: Recorder | None = None,
) -> Intake:
    """Decide what one signal does: start an incident, join one, or nothing (and why).

    ``raw`` (the exact bytes received) is kept in the signal's row when it is small enough;
    the answer's ``raw_kept`` says so, and the caller keeps larger or unfolded ones as blobs.
    Concurrent signals of one correlation key are folded together (``IncidentStores.folds``):
    their dedupe rows in one transaction, their signal rows in another, their counts in one
    conditional write; each gets the answer it would have had alone, in arrival order.
    ``record``, when given, is called with what became of the signal before this returns:
    once for the whole batch it was folded in (so their audit records can be one write).
    """
    now = now or datetime.now(UTC)
    ignored = _ignored(signal, config)
    if ignored is not None:
        if record is not None:
            record([(signal, ignored, raw)])
        return ignored
    family = family or scenario_family(signal)
    key = correlation_key(signal.environment, family)
    answer = stores.folds.submit(key, _Folding(signal, declared_by, now, family, raw, record))
    if isinstance(answer, Exception):
        raise answer  # this signal's own failure; the others of its batch were folded
    return answer


def _ignored(signal: Signal, config: DrConfig) -> Intake | None:
    if signal.environment is None:
        reason = (
            f"no environment in the configuration owns {signal.resource_id}"
            if signal.resource_id
            else "the signal names no resource, so no environment can be found for it"
        )
        return Intake(disposition="ignored", reason=reason)
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
    return None


def _fold_batch(
    stores: IncidentStores, key: str, items: list[_Folding]
) -> list[Intake | Exception]:
    """Fold the queued signals of one correlation key, in order (``fold`` for each)."""
    base = stores.stores
    # The dedupe rows are written with the incident this process expects the signals to join,
    # which saves the attach afterwards whenever that guess holds (all of a storm but its
    # first signals).
    expected = base.incidents.cached_open(key)
    if expected is None:
        # Every OPEN_INCIDENT_TTL_S the cache of the open incident lapses; one read of the index
        # here saves an attach per signal of the batch.
        current = base.incidents.current(key)
        if current is not None and current.ended_at is None:
            expected = current.incident_id
    seens = base.signals.record_many(
        [(i.signal, i.now) for i in items], incident_id=expected, partition=key
    )
    answers: list[Intake | Exception | None] = [None] * len(items)
    joining: dict[str, list[tuple[int, _Folding, DedupeResult, IncidentSlot]]] = {}
    for n, (item, seen) in enumerate(zip(items, seens, strict=True)):
        try:
            outcome = _join(stores, key, item, seen)
        except StoreError:
            raise  # storage failed for the batch: every caller hears of it
        except Exception as exc:  # this signal's own fault: the others are still folded
            log.exception("signal %s could not be folded", item.signal.dedupe_key)
            answers[n] = exc
            continue
        if isinstance(outcome, Intake):
            answers[n] = outcome
        else:
            joining.setdefault(outcome.incident.incident_id, []).append((n, item, seen, outcome))
    for incident_id, entries in joining.items():
        added_all = stores.signal_log.add_many(
            incident_id, [(i.signal, i.now, i.raw) for _, i, _, _ in entries]
        )
        for (n, item, seen, slot), added in zip(entries, added_all, strict=True):
            answers[n] = _joined(key, item, seen, slot, added)
    recorders: dict[int, tuple[Recorder, list]] = {}
    for item, answer in zip(items, answers, strict=True):
        if item.record is not None and isinstance(answer, Intake):
            _, folded = recorders.setdefault(id(item.record), (item.record, []))
            folded.append((item.signal, answer, item.raw))
    for record, folded in recorders.values():
        record(folded)
    return answers


def _join(
    stores: IncidentStores, key: str, item: _Folding, seen: DedupeResult
) -> Intake | IncidentSlot:
    """The answer of a signal decided before any row of it is added, else the incident it joins."""
    base = stores.stores
    signal = item.signal
    if not seen.first and seen.incident_id and stores.signal_log.stored(seen.incident_id, signal):
        return Intake(
            incident_id=seen.incident_id,
            disposition="folded",
            duplicate=True,
            reason=(
                f"already received at {seen.first_seen_at.isoformat()} and folded into "
                f"{seen.incident_id}; nothing changed"
            ),
        )
    if signal.condition == MonitorCondition.RESOLVED:
        current = base.incidents.current(key)
        if current is None or current.ended_at is not None:
            if seen.first:
                # It changed nothing, so it is not remembered either: delivered again once an
                # incident is open, it is news for that incident.
                base.signals.forget(signal.dedupe_key, partition=key)
            return Intake(
                disposition="ignored",
                reason=f"a resolved signal with no open incident for {key}: nothing to stand down",
                correlation_key=key,
                family=item.family,
            )
    slot = base.incidents.open_or_join(
        key,
        environment=signal.environment,
        family=item.family,
        declared_by=item.declared_by,
        first_signal=signal.dedupe_key,
        now=item.now,
    )
    incident_id = slot.incident.incident_id
    if item.declared_by not in ("", "system"):
        # Four-eyes: whoever declared an incident may not decide its gates, also when the
        # declaration joined an incident a signal had started. Recorded before the declaration
        # is stored, so no gate sees the declaration without its declarer.
        name = str(signal.facts.get("declared_by") or "")
        base.incidents.add_declarer(incident_id, item.declared_by, name)
    if not seen.first or seen.incident_id != incident_id:
        base.signals.attach(signal.dedupe_key, incident_id, partition=key)
    return slot


def _joined(
    key: str,
    item: _Folding,
    seen: DedupeResult,
    slot: IncidentSlot,
    added: tuple[bool, int] | None,
) -> Intake:
    """The answer of a signal that reached its incident's signal log."""
    incident_id = slot.incident.incident_id
    raw = item.raw
    raw_kept = added is not None and raw is not None and len(raw) <= INLINE_RAW_BYTES
    if added is None and not slot.started:
        return Intake(
            incident_id=incident_id,
            disposition="folded",
            duplicate=True,
            reason=f"already folded into {incident_id}; nothing changed",
            correlation_key=key,
            family=item.family,
        )
    # A delivery that lost the dedupe insert is a duplicate even when it got here first.
    duplicate = not seen.first
    if slot.started:
        return Intake(
            incident_id=incident_id,
            disposition="started",
            started=True,
            duplicate=duplicate,
            reason=f"first signal for {key}: incident {incident_id} declared",
            correlation_key=key,
            family=item.family,
            raw_kept=raw_kept,
        )
    new_kind, total = added
    why = _why_notify(item.signal, new_kind, total)
    return Intake(
        incident_id=incident_id,
        disposition="folded",
        reason=f"folded into open incident {incident_id}" + (f" ({why})" if why else ""),
        notify=why is not None,
        duplicate=duplicate,
        correlation_key=key,
        family=item.family,
        raw_kept=raw_kept,
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


class DispositionBatch:
    """Group commit of signal dispositions: one audit record for what arrived together.

    Every signal's disposition goes to the audit trail of its incident (or the day's intake
    trail), a hash chain in one append blob. Written one record per signal, a storm has every
    request racing for the end of one blob, and most appends fail and retry. Here concurrent
    callers of one trail share a write (see ``Coalescer``): a lone signal is written as it
    always was (``signal.<disposition>``); several become one ``signal.batch`` record listing
    each (action, actor, reason and the detail).
    """

    # A group is what one caller records at once (a fold batch: at most MAX_TRANSACTION
    # entries), so one record holds at most 20 x 100 entries, well under an append block.
    def __init__(self, append: Callable[..., object], *, max_batch: int = 20):
        self._append = append
        self._writes = Coalescer(self._write, max_batch=max_batch)

    def record(self, trail: str, action: str, *, actor: str, reason: str, detail: dict) -> None:
        """Return once the record holding this entry is written (or raise why not)."""
        entry = {"action": action, "actor": actor, "reason": reason, "detail": detail}
        self.record_many(trail, [entry])

    def record_many(self, trail: str, entries: list[dict]) -> None:
        """Several entries (``action``, ``actor``, ``reason``, ``detail``) of one trail."""
        if entries:
            self._writes.submit(trail, list(entries))

    def _write(self, trail: str, groups: list[list[dict]]) -> list[None]:
        batch = [entry for group in groups for entry in group]
        if len(batch) == 1:
            one = batch[0]
            self._append(
                trail, one["action"], actor=one["actor"], reason=one["reason"], detail=one["detail"]
            )
            return [None] * len(groups)
        tally: dict[str, int] = {}
        for entry in batch:
            tally[entry["action"]] = tally.get(entry["action"], 0) + 1
        summary = ", ".join(f"{n} {a.removeprefix('signal.')}" for a, n in sorted(tally.items()))
        self._append(
            trail,
            "signal.batch",
            actor="intake",
            reason=f"{len(batch)} signals recorded together: {summary}",
            detail={
                "signals": [
                    {"action": e["action"], "actor": e["actor"], "reason": e["reason"]}
                    | e["detail"]
                    for e in batch
                ]
            },
        )
        log.debug("audit of %s: %s signals in one record", trail, len(batch))
        return [None] * len(groups)


class Coalescer:
    """Concurrent callers with the same key share one write.

    ``submit(key, item)`` queues the item and waits. Whoever finds no write in progress for
    the key writes the oldest ``max_batch`` queued items with ``flush(key, items)``, which
    returns one result per item; each caller gets its own result back (or the exception).
    A caller writes only until its own item is written and then leaves, and the next waiting
    caller takes over, so no request carries a whole storm's writes.
    """

    # Limitation: callers share writes only inside one process; instances of a scaled-out
    # app each write their own batches, so they still race (less) for one trail or row.
    def __init__(self, flush: Callable[[Any, list], list], *, max_batch: int = 100):
        self._flush = flush
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queues: dict[Any, list[_Pending]] = {}
        self._writing: set[Any] = set()

    def submit(self, key: Any, item: object, timeout_s: float = 60.0):
        entry = _Pending(item)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._queues.setdefault(key, []).append(entry)
        while True:
            with self._cond:
                while not entry.done and key in self._writing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise StoreError(f"a shared write for {key} did not finish in time")
                    self._cond.wait(left)
                if entry.done:
                    break
                self._writing.add(key)
                queue = self._queues.get(key, [])
                batch, self._queues[key] = queue[: self.max_batch], queue[self.max_batch :]
            self._write(key, batch)
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _write(self, key: Any, batch: list[_Pending]) -> None:
        try:
            results = self._flush(key, [e.item for e in batch])
            for entry, result in zip(batch, results, strict=True):
                entry.result = result
        except Exception as exc:  # every caller of this batch hears of it
            for entry in batch:
                entry.error = exc
        with self._cond:
            for entry in batch:
                entry.done = True
            self._writing.discard(key)
            if not self._queues.get(key):
                self._queues.pop(key, None)
            self._cond.notify_all()


class _Pending:
    """One caller's item in a shared write, and what came of it."""

    __slots__ = ("item", "done", "error", "result")

    def __init__(self, item: object):
        self.item = item
        self.done = False
        self.error: Exception | None = None
        self.result: Any = None
