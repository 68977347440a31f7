"""Counters and the signal log on Azurite: concurrent callers share writes, none is lost."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from azure.data.tables import TableServiceClient

from shared.folding import Counters, Doorbells, SignalLog
from shared.models import MonitorCondition, Signal, SignalKind, SignalSource
from shared.stores import CLIENT_OPTIONS, _Table


def _table(connection: str, name: str) -> _Table:
    service = TableServiceClient.from_connection_string(connection, **CLIENT_OPTIONS)
    return _Table(service, f"{name}{uuid.uuid4().hex[:8]}")


def test_concurrent_increments_each_see_their_own_total(storage_connection_string):
    counters = Counters(_table(storage_connection_string, "counters"))

    with ThreadPoolExecutor(max_workers=32) as pool:
        totals = list(
            pool.map(lambda _: counters.add_many("inc", "counts", {"total": 1, "x": 2}), range(200))
        )

    assert sorted(t["total"] for t in totals) == list(range(1, 201))
    assert sorted(t["x"] for t in totals) == list(range(2, 401, 2))
    assert counters.get("inc", "counts") == {"total": 200, "x": 400}


def _signal(n: int, kind: SignalKind = SignalKind.METRIC) -> Signal:
    return Signal.model_validate(
        {
            "source": SignalSource.AZURE_MONITOR.value,
            "kind": kind.value,
            "dedupe_key": f"alert:test-{n}:fired",
            "condition": MonitorCondition.FIRED.value,
            "environment": "prod-eu",
        }
    )


def test_a_signal_is_stored_once_however_many_deliveries_race(storage_connection_string):
    counters = Counters(_table(storage_connection_string, "counters"))
    log = SignalLog(_table(storage_connection_string, "signals"), counters)
    now = datetime.now(UTC)
    deliveries = [_signal(n % 40) for n in range(160)]

    with ThreadPoolExecutor(max_workers=32) as pool:
        added = list(pool.map(lambda s: log.add("inc.1", s, now), deliveries))

    stored = [a for a in added if a is not None]
    assert len(stored) == 40
    assert sorted(total for _, total in stored) == list(range(1, 41))
    assert sum(new_kind for new_kind, _ in stored) == 1, "one shape, so one 'new kind'"
    assert len(log.signals("inc.1")) == 40
    assert log.counts("inc.1").total == 40


def test_two_writers_of_one_row_each_skip_reads_yet_lose_nothing(storage_connection_string):
    table = _table(storage_connection_string, "counters")
    one, other = Counters(table), Counters(table)
    reads = []
    original = table.client.get_entity
    table.client.get_entity = lambda *a, **k: reads.append(a) or original(*a, **k)

    assert one.add("inc", "counts", "total") == 1
    assert one.add("inc", "counts", "total") == 2, "its own last write is known: no read"
    assert len(reads) == 1, "only the first write (row absent) read the row"
    assert other.add("inc", "counts", "total") == 3
    assert one.add("inc", "counts", "total", by=2) == 5, "the other's write is found by ETag"
    assert one.get("inc", "counts") == {"total": 5}


def test_a_pending_doorbell_is_rung_once_until_the_instance_hears_it(storage_connection_string):
    table = _table(storage_connection_string, "counters")
    # Two processes: each shares a look at the row among its own callers, not with the other.
    here, there = Doorbells(Counters(table)), Doorbells(Counters(table))

    with ThreadPoolExecutor(max_workers=16) as pool:
        rung = list(
            pool.map(lambda n: (here, there)[n % 2].ring_unless_pending("gate-1"), range(40))
        )

    assert [n for n in rung if n is not None] == [1], "one ring; the rest found it pending"
    assert here.hear("gate-1") == 1
    assert there.ring_unless_pending("gate-1") == 2, "heard, so the next one rings"
    assert here.ring_unless_pending("gate-1") is None
    assert here.ring("gate-1") == 3, "a plain ring (a decision) always rings"
    assert there.hear("gate-1") == 3 and here.rung("gate-1") == 3
    assert here.ring_unless_pending("gate-1") == 4
