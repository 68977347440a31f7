"""The open incident a process remembers per correlation key, against a real Azurite.

A storm joins its incident without reading the index per signal; ending the incident in the
process forgets it at once, and starting is still decided by the conditional insert.
"""

import uuid

import pytest

from shared.models import Phase, ScenarioFamily, Signal, SignalKind, SignalSource
from shared.stores import IncidentIndex, Stores

KWARGS = {"environment": "prod-eu", "family": ScenarioFamily.AVAILABILITY}
KEY = "prod-eu.availability"


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


class _CountingPartition:
    """Counts index queries of one table (the read a cached join saves)."""

    def __init__(self, index: IncidentIndex):
        self.calls = 0
        original = index.table.partition

        def partition(key):
            self.calls += 1
            return original(key)

        index.table.partition = partition


def test_joins_after_the_first_do_not_read_the_index(storage_connection_string, prefix):
    index = Stores(storage_connection_string, prefix=prefix).incidents
    counted = _CountingPartition(index)
    assert index.open_or_join(KEY, **KWARGS).started
    reads = counted.calls
    for _ in range(5):
        assert not index.open_or_join(KEY, **KWARGS).started
    assert counted.calls == reads
    assert index.cached_open(KEY) == f"{KEY}.1"


def test_an_end_by_another_stores_object_of_the_process_is_seen_at_once(
    storage_connection_string, prefix
):
    joiner = Stores(storage_connection_string, prefix=prefix).incidents
    ender = Stores(storage_connection_string, prefix=prefix).incidents
    first = joiner.open_or_join(KEY, **KWARGS)
    assert joiner.cached_open(KEY) == first.incident.incident_id
    ender.end(first.incident.incident_id, outcome="recovered", phase=Phase.RECOVERED)
    assert joiner.cached_open(KEY) is None
    second = joiner.open_or_join(KEY, **KWARGS)
    assert second.started and second.incident.generation == 2


def test_other_tables_do_not_share_what_is_remembered(storage_connection_string, prefix):
    one = Stores(storage_connection_string, prefix=prefix).incidents
    other = Stores(storage_connection_string, prefix=f"{prefix}x").incidents
    one.open_or_join(KEY, **KWARGS)
    assert other.cached_open(KEY) is None
    assert other.open_or_join(KEY, **KWARGS).started


def test_a_read_begun_before_an_end_does_not_bring_the_incident_back(
    storage_connection_string, prefix
):
    index = Stores(storage_connection_string, prefix=prefix).incidents
    slot = index.open_or_join(KEY, **KWARGS)
    index._forget(KEY)
    # A join that read the index while the incident was open, then lost the race with end().
    epoch = index._epoch(KEY)
    stale = index.table.partition(KEY)[0]
    index.end(slot.incident.incident_id, outcome="aborted", phase=Phase.ABORTED)
    index._remember(KEY, stale, epoch)
    assert index.cached_open(KEY) is None


def test_expired_memory_reads_the_index_again(storage_connection_string, prefix, monkeypatch):
    index = Stores(storage_connection_string, prefix=prefix).incidents
    index.open_or_join(KEY, **KWARGS)
    monkeypatch.setattr("shared.stores.OPEN_INCIDENT_TTL_S", -1.0)
    assert index.cached_open(KEY) is None
    counted = _CountingPartition(index)
    assert not index.open_or_join(KEY, **KWARGS).started
    assert counted.calls == 1


def test_dedupe_row_written_with_its_incident_answers_duplicates(storage_connection_string, prefix):
    stores = Stores(storage_connection_string, prefix=prefix)
    signal = Signal(
        source=SignalSource.AZURE_MONITOR,
        kind=SignalKind.METRIC,
        dedupe_key="alert:/b:fired",
        environment="prod-eu",
    )
    first = stores.signals.record(signal, incident_id=f"{KEY}.3")
    assert first.first and first.incident_id == f"{KEY}.3"
    again = stores.signals.record(signal)
    assert not again.first and again.incident_id == f"{KEY}.3"
