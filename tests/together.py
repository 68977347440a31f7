"""Concurrent calls released at one moment, for the tests of races that storage decides."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def in_parallel(n: int, work: Callable[[int], T], timeout_s: float = 120) -> list[T]:
    """``work(0) .. work(n - 1)``, each in a thread of its own, all released together by a
    barrier; the results in that order."""
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    return results
