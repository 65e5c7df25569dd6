"""Lowest-free number allocation, for object ids and session fd numbers.

The kernel allocates iommufd object ids with xa_alloc over [1, INT_MAX]
(lowest free index, so an id is reused right after destroy) and a process's
fds lowest-free from 0. Invariant: every number below `_next` that is not in
`_free` is in use, so the lowest free number is min(_free) or `_next`.
"""
from __future__ import annotations

import heapq


class LowestFreeAllocator:
    def __init__(self, first: int, last: int) -> None:
        self._first = first
        self._last = last
        self._next = first
        self._free: list[int] = []

    def alloc(self) -> int | None:
        """The lowest free number, or None when [first, last] is exhausted."""
        if self._free:
            return heapq.heappop(self._free)
        if self._next > self._last:
            return None
        number = self._next
        self._next += 1
        return number

    def release(self, number: int) -> None:
        heapq.heappush(self._free, number)
