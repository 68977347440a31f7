"""Folding writes a signal's dedupe row once, with the incident it expects, on Azurite.

The incident named in the dedupe row is only trusted once the signal is stored there: a first
delivery that died between the two writes is folded by its retry, not answered "duplicate".
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.config import load_config
from shared.folding import IncidentStores, fold
from shared.models import Signal, SignalKind, SignalSource
from shared.stores import Stores

WORKLOADS = Path(__file__).resolve().parents[2] / "config" / "workloads.yaml"


@pytest.fixture
def stores(storage_connection_string) -> IncidentStores:
    prefix = f"f{uuid.uuid4().hex[:10]}"
    return IncidentStores(Stores(storage_connection_string, prefix=prefix), prefix=prefix)


def _signal(n: int) -> Signal:
    return Signal(
        source=SignalSource.AZURE_MONITOR,
        kind=SignalKind.METRIC,
        dedupe_key=f"alert:/once-{n}:fired",
        environment="prod-eu",
    )


def test_later_signals_of_a_storm_write_no_attach(stores, monkeypatch):
    config = load_config(WORKLOADS)
    started = fold(_signal(0), config=config, stores=stores)
    assert started.disposition == "started"
    attached = []
    original = stores.stores.signals.attach
    monkeypatch.setattr(
        stores.stores.signals, "attach", lambda *a: attached.append(a) or original(*a)
    )
    folded = [fold(_signal(n), config=config, stores=stores) for n in range(1, 4)]
    assert [f.disposition for f in folded] == ["folded"] * 3
    assert {f.incident_id for f in folded} == {started.incident_id}
    assert attached == []
    again = fold(_signal(2), config=config, stores=stores)
    assert again.duplicate and again.incident_id == started.incident_id
    assert stores.signal_log.counts(started.incident_id).total == 4


def test_a_retry_of_a_delivery_that_died_after_its_dedupe_row_is_folded(stores):
    config = load_config(WORKLOADS)
    started = fold(_signal(0), config=config, stores=stores)
    lost = _signal(7)
    # The first delivery wrote its dedupe row (in its correlation key's partition) naming the
    # incident, then died.
    stores.stores.signals.record(
        lost,
        now=datetime.now(UTC),
        incident_id=started.incident_id,
        partition=started.correlation_key,
    )
    retry = fold(lost, config=config, stores=stores)
    assert retry.disposition == "folded" and retry.incident_id == started.incident_id
    assert retry.duplicate, "the retry is still a repeated delivery"
    assert [s.dedupe_key for s in stores.signal_log.signals(started.incident_id)] == [
        _signal(0).dedupe_key,
        lost.dedupe_key,
    ]
    assert fold(lost, config=config, stores=stores).reason.startswith("already received")


def test_a_small_raw_payload_is_kept_in_the_signal_row_and_a_large_one_is_not(stores):
    from shared.folding import INLINE_RAW_BYTES

    config = load_config(WORKLOADS)
    small, large = b'{"small": true}', b'{"pad": "' + b"x" * INLINE_RAW_BYTES + b'"}'
    started = fold(_signal(0), config=config, stores=stores, raw=small)
    assert started.raw_kept
    assert stores.signal_log.raw(started.incident_id, _signal(0)) == small
    folded = fold(_signal(1), config=config, stores=stores, raw=large)
    assert folded.disposition == "folded" and not folded.raw_kept
    assert stores.signal_log.raw(started.incident_id, _signal(1)) is None
    repeat = fold(_signal(0), config=config, stores=stores, raw=small)
    assert repeat.duplicate and not repeat.raw_kept


def test_concurrent_signals_of_one_key_fold_together_and_each_gets_its_own_answer(stores):
    from concurrent.futures import ThreadPoolExecutor

    config = load_config(WORKLOADS)
    transactions = []
    table = stores.stores.signals.table
    together = table._create_together

    def counting(rows):
        transactions.append(len(rows))
        return together(rows)

    table._create_together = counting
    # 30 distinct signals and a second delivery of ten of them, all at once.
    deliveries = [_signal(n) for n in range(30)] + [_signal(n) for n in range(0, 30, 3)]
    with ThreadPoolExecutor(max_workers=len(deliveries)) as pool:
        answers = list(pool.map(lambda s: fold(s, config=config, stores=stores), deliveries))
    started = [a for a in answers if a.disposition == "started"]
    assert len(started) == 1
    incident = started[0].incident_id
    assert {a.incident_id for a in answers} == {incident}
    assert sum(a.duplicate for a in answers) == 10
    assert stores.signal_log.counts(incident).total == 30
    stored = stores.signal_log.signals(incident)
    assert sorted(s.dedupe_key for s in stored) == sorted(s.dedupe_key for s in deliveries[:30])
    assert any(n > 1 for n in transactions), "no two dedupe rows were inserted together"


def _resolved(n: int) -> Signal:
    from shared.models import MonitorCondition

    return Signal(
        source=SignalSource.AZURE_MONITOR,
        kind=SignalKind.METRIC,
        dedupe_key=f"alert:/once-{n}:resolved",
        condition=MonitorCondition.RESOLVED,
        environment="prod-eu",
    )


def test_a_resolved_signal_ignored_for_want_of_an_incident_is_news_once_one_is_open(stores):
    config = load_config(WORKLOADS)
    first = fold(_resolved(5), config=config, stores=stores)
    again = fold(_resolved(5), config=config, stores=stores)
    assert first.disposition == again.disposition == "ignored"
    assert not again.duplicate, "nothing was kept of the first, so nothing is repeated"
    started = fold(_signal(5), config=config, stores=stores)
    late = fold(_resolved(5), config=config, stores=stores)
    assert late.disposition == "folded" and not late.duplicate
    counts = stores.signal_log.counts(started.incident_id)
    assert (counts.total, counts.firing, counts.resolved) == (2, 1, 1)
    repeat = fold(_resolved(5), config=config, stores=stores)
    assert repeat.duplicate
    assert stores.signal_log.counts(started.incident_id).total == 2, "a repeat changes nothing"


def test_a_signal_that_fails_alone_does_not_fail_the_others_of_its_batch(stores, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    config = load_config(WORKLOADS)
    fold(_signal(0), config=config, stores=stores)
    index = stores.stores.incidents
    original = index.open_or_join

    def poisoned(key, **kwargs):
        if kwargs.get("first_signal") == _signal(13).dedupe_key:
            raise ValueError("this one signal cannot be folded")
        return original(key, **kwargs)

    monkeypatch.setattr(index, "open_or_join", poisoned)

    def one(n):
        try:
            return fold(_signal(n), config=config, stores=stores)
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one, range(1, 21)))
    failed = [n for n, a in zip(range(1, 21), answers, strict=True) if isinstance(a, Exception)]
    assert failed == [13]
    folded = [a for a in answers if not isinstance(a, Exception)]
    assert all(a.disposition == "folded" for a in folded)
    incident = folded[0].incident_id
    assert stores.signal_log.counts(incident).total == 20, "the signal before and 19 of the 20"
