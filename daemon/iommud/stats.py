"""Counters and histograms kept where things happen, read by metrics.py.

The dispatcher and the journal record into these plain structures on the
event loop thread: a dict lookup, a bisect and three additions per event,
well under a microsecond, and nothing at all for the dispatcher while
metrics are off (its `stats` is None). metrics.py reads them on the loop
too, when a scrape asks, and turns them into Prometheus series; this module
imports nothing of prometheus_client, so the modules that record stay free
of it.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

#: Upper bounds, in seconds, of RPC latency buckets (an Echo takes about
#: 0.2 ms on the daemon's side; an offloaded batch may take seconds).
RPC_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
#: Journal row writes and syncs: a pwrite takes microseconds, an fdatasync
#: on a disk milliseconds.
IO_BUCKETS: tuple[float, ...] = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
#: Event-loop lag, seconds late of a timer (iommud's target: a stall never
#: passes 10 ms).
LAG_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Histogram:
    """Counts per bucket (the last one is +Inf), their sum and count."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def copy(self) -> Histogram:
        out = Histogram(self.bounds)
        out.counts = list(self.counts)
        out.total, out.count = self.total, self.count
        return out

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, count at or below it) as Prometheus buckets want."""
        out, running = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class RpcStats:
    """One transport's calls: a latency histogram per (method, status), where
    status is "OK" or the errno name, and the calls counted without a
    latency (stream opens and refusals)."""

    def __init__(self) -> None:
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.counted: dict[tuple[str, str], int] = {}
        #: Server streams open now, by method.
        self.streams: dict[str, int] = {}

    def record(self, method: str, status: str, seconds: float) -> None:
        key = (method, status)
        hist = self.latency.get(key)
        if hist is None:
            hist = self.latency[key] = Histogram(RPC_BUCKETS)
        hist.observe(seconds)

    def count(self, method: str, status: str) -> None:
        key = (method, status)
        self.counted[key] = self.counted.get(key, 0) + 1

    def stream_opened(self, method: str, delta: int) -> None:
        self.streams[method] = self.streams.get(method, 0) + delta

    def copy(self) -> RpcStats:
        out = RpcStats()
        out.latency = {k: h.copy() for k, h in self.latency.items()}
        out.counted = dict(self.counted)
        out.streams = dict(self.streams)
        return out


@dataclass
class JournalStats:
    """What the journal did: rows appended by kind, how long each row's
    write and (journal_sync=full) fdatasync took, refused writes by errno,
    snapshots made."""

    rows: dict[str, int] = field(default_factory=dict)
    write_seconds: Histogram = field(default_factory=lambda: Histogram(IO_BUCKETS))
    fsync_seconds: Histogram = field(default_factory=lambda: Histogram(IO_BUCKETS))
    errors: dict[str, int] = field(default_factory=dict)
    snapshots: int = 0

    def copy(self) -> JournalStats:
        return JournalStats(dict(self.rows), self.write_seconds.copy(), self.fsync_seconds.copy(),
                            dict(self.errors), self.snapshots)
