"""Many timeouts on one event-loop timer.

``request()`` and ``next_msg()`` each need a timeout, usually one that is never reached.  A
``TimerHandle`` per call costs a heap push with Python-level comparisons and a cancellation;
here every deadline is a plain tuple in one heap, and one loop timer waits for the earliest.
When a deadline passes, its future gets ``None`` as result (the waiter then sees that it
timed out); futures already done by then are skipped.  Entries of futures that finished early
stay until their time comes or until stale ones are the majority, then the heap is rebuilt.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

_REBUILD_MIN = 1024


class Deadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, asyncio.Future[Any]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._finished = 0  # entries whose future is known to be done

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, delay: float, fut: asyncio.Future[Any]) -> None:
        """Resolve ``fut`` with ``None`` after ``delay`` seconds unless it is done by then."""
        when = self._loop.time() + delay
        heapq.heappush(self._heap, (when, next(self._seq), fut))
        if self._timer is None or when < self._timer_at:
            self._arm(when)

    def finished(self) -> None:
        """Tell that one added future finished before its deadline (for the heap's upkeep)."""
        self._finished += 1
        heap = self._heap
        if self._finished * 2 > len(heap) >= _REBUILD_MIN:
            self._heap = [e for e in heap if not e[2].done()]
            heapq.heapify(self._heap)
            self._finished = 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        heap = self._heap
        now = self._loop.time()
        while heap and heap[0][0] <= now:
            fut = heapq.heappop(heap)[2]
            if fut.done():
                self._finished = max(0, self._finished - 1)
            else:
                fut.set_result(None)
        while heap and heap[0][2].done():
            heapq.heappop(heap)
            self._finished = max(0, self._finished - 1)
        if heap:
            self._arm(heap[0][0])
