"""DispositionBatch: concurrent dispositions of one trail share records, none lost or doubled."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.folding import DispositionBatch


class SlowTrail:
    """An append that takes a while and refuses a second concurrent writer per trail."""

    def __init__(self, delay_s: float = 0.01, fail: bool = False):
        self.records: list[tuple[str, str, dict]] = []
        self.delay_s = delay_s
        self.fail = fail
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def append(self, trail, action, *, actor, reason, detail):
        with self._lock:
            assert trail not in self._busy, "two writers on one trail at once"
            self._busy.add(trail)
        try:
            time.sleep(self.delay_s)
            if self.fail:
                raise RuntimeError("storage is down")
            self.records.append((trail, action, {"actor": actor, "reason": reason, **detail}))
        finally:
            with self._lock:
                self._busy.discard(trail)


def _entries(records):
    for trail, action, body in records:
        if action == "signal.batch":
            for entry in body["signals"]:
                yield trail, entry["n"]
        else:
            yield trail, body["n"]


def test_a_lone_disposition_is_written_as_one_plain_record():
    trail = SlowTrail(delay_s=0)
    batch = DispositionBatch(trail.append)

    batch.record("inc.1", "signal.started", actor="rule", reason="first", detail={"n": 0})

    assert trail.records == [
        ("inc.1", "signal.started", {"actor": "rule", "reason": "first", "n": 0})
    ]


def test_concurrent_dispositions_are_each_written_once_in_fewer_records():
    trail = SlowTrail()
    batch = DispositionBatch(trail.append, max_batch=50)

    def send(n):
        batch.record(f"inc.{n % 3}", "signal.folded", actor="r", reason="f", detail={"n": n})

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(send, range(600)))

    written = sorted(_entries(trail.records))
    assert written == sorted((f"inc.{n % 3}", n) for n in range(600))
    assert len(trail.records) < 600 / 4
    assert all(len(body.get("signals", [1])) <= 50 for _, _, body in trail.records), (
        "no record holds more than max_batch entries"
    )


def test_a_failed_write_reaches_every_caller_of_that_batch_and_the_next_one_writes():
    trail = SlowTrail(fail=True)
    batch = DispositionBatch(trail.append)
    errors = []

    def send(n):
        try:
            batch.record("inc.1", "signal.folded", actor="r", reason="f", detail={"n": n})
        except RuntimeError as exc:
            errors.append(exc)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, range(40)))
    trail.fail = False
    batch.record("inc.1", "signal.folded", actor="r", reason="f", detail={"n": 99})

    assert len(errors) == 40
    assert list(_entries(trail.records)) == [("inc.1", 99)]


@pytest.mark.parametrize("size", [2, 7])
def test_a_batch_record_says_what_it_holds(size):
    trail = SlowTrail(delay_s=0.05)
    batch = DispositionBatch(trail.append)

    def send(n):
        action = "signal.ignored" if n % 2 else "signal.folded"
        batch.record("t", action, actor=f"a{n}", reason=f"r{n}", detail={"n": n})

    with ThreadPoolExecutor(max_workers=size + 1) as pool:
        list(pool.map(send, range(size + 1)))

    batched = [body for _, action, body in trail.records if action == "signal.batch"]
    assert batched, "the first write held the others back into a batch"
    for body in batched:
        assert body["actor"] == "intake"
        assert f"{len(body['signals'])} signals" in body["reason"]
        assert {e["action"] for e in body["signals"]} <= {"signal.ignored", "signal.folded"}


def test_coalescer_hands_each_caller_its_own_result():
    from shared.folding import Coalescer

    flushed: list[list[int]] = []

    def flush(key, items):
        time.sleep(0.01)
        flushed.append(items)
        return [f"{key}:{i}" for i in items]

    coalescer = Coalescer(flush, max_batch=10)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: coalescer.submit(f"k{i % 2}", i), range(200)))

    assert results == [f"k{i % 2}:{i}" for i in range(200)]
    assert sorted(i for batch in flushed for i in batch) == list(range(200))
    assert max(len(b) for b in flushed) <= 10
    assert len(flushed) < 200
