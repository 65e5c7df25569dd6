"""Prometheus metrics on an opt-in HTTP listener (`metrics_address`).

What is recorded where it happens (stats.py): every call's method, status
and latency by the dispatcher, once per call and per transport; the
journal's rows, write and fdatasync latency and refused writes. What is read
at scrape time: the object counts and memory (info.counts, the same walk as
GetInfo), the peer gate's connection counters, the journal's rows since its
snapshot, and an event-loop lag probe's histogram. ProcessCollector adds
the process's RSS, CPU time and open fds.

prometheus_client serves HTTP from its own thread. A scrape asks the event
loop for a snapshot (run_coroutine_threadsafe), so the daemon's state is
read only on the loop, as every mutation runs there, and the walk over the
sessions yields the loop in slices (info.drive) as GetInfo's does.

Series (`errno` is "OK" or the errno name of a refusal; `transport` is
"grpc" or "uapi"):
  iommud_build_info{version,core_version}
  iommud_rpcs_total{method,errno,transport}                 counter
  iommud_rpc_duration_seconds{method,errno,transport}       histogram (unary calls)
  iommud_rpcs_in_flight{transport}, iommud_streams_open{method}
  iommud_sessions, _contexts, _objects, _ioas, _hwpts, _devices, _device_fds,
  iommud_areas, iommud_mapped_bytes, iommud_session_memory_bytes
  iommud_journal_rows, iommud_journal_rows_written_total{kind},
  iommud_journal_write_seconds, iommud_journal_fsync_seconds (histograms),
  iommud_journal_write_errors_total{errno}, iommud_journal_snapshots_total
  iommud_event_loop_lag_seconds                              histogram
  iommud_connections_{accepted,failed,refused,idle_closed}_total, iommud_connections_live
"""
from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from iommud import __version__, _core, info
from iommud.logsetup import get_logger
from iommud.stats import LAG_BUCKETS, Histogram, JournalStats, RpcStats

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator
    from wsgiref.simple_server import WSGIServer

    from iommud.call import Runtime
    from iommud.dispatch import Dispatcher
    from iommud_wire import pb

log = get_logger("iommud.metrics")

#: How often the lag probe's timer fires, in seconds.
LAG_INTERVAL = 0.25
#: How long a scrape waits for the event loop's snapshot.
SCRAPE_TIMEOUT = 10.0
_COUNTS = ("sessions", "contexts", "objects", "ioas", "hwpts", "devices", "device_fds", "areas",
           "mapped_bytes")


def parse_address(text: str) -> tuple[str, int]:
    """"PORT" (on 127.0.0.1) or "HOST:PORT" ("[::1]:PORT" for IPv6)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]")
    if not port.isdigit() or int(port) > 65535 or not host:
        raise ValueError(f"metrics_address must be PORT or HOST:PORT, not {text!r}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"metrics_address: {host!r} is not an IP address") from None
    return host, int(port)


class LagProbe:
    """A timer every LAG_INTERVAL: how late it fires is how long the loop
    was busy with something else (two callbacks a second; no task)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = LAG_INTERVAL) -> None:
        self.loop = loop
        self.interval = interval
        self.hist = Histogram(LAG_BUCKETS)
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due = self.loop.time() + self.interval
        self._handle = self.loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        self.hist.observe(max(0.0, now - self._due))
        self._due = now + self.interval
        self._handle = self.loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


@dataclass
class Snapshot:
    """Everything a scrape exposes, taken on the event loop."""

    rpc: dict[str, RpcStats] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    counts: pb.ObjectCounts | None = None
    journal: JournalStats | None = None
    journal_rows: int = 0
    lag: Histogram | None = None
    gate: tuple[int, int, int, int, int] | None = None


class Metrics:
    """The metrics of one daemon: recording switched on in its dispatchers,
    the lag probe, and the HTTP listener."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dispatchers: dict[str, Dispatcher] = {}
        self.loop = asyncio.get_running_loop()
        self.lag = LagProbe(self.loop)
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.registry.register(_Collector(self))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def attach(self, transport: str, dispatcher: Dispatcher) -> None:
        """Record the calls `dispatcher` serves, labelled `transport`."""
        dispatcher.stats = RpcStats()
        self.dispatchers[transport] = dispatcher

    def start(self, address: str) -> str:
        """Listen on `address`; returns the "host:port" bound."""
        host, port = parse_address(address)
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics_address {address}: {exc.strerror}") from exc
        self.lag.start()
        bound = self._server.server_address[1]
        shown = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        log.info("metrics.serving", address=shown)
        return shown

    async def stop(self) -> None:
        """Close the listener (its serving thread notices within its 0.5 s
        poll, waited for off the loop) and stop recording."""
        self.lag.stop()
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        for dispatcher in self.dispatchers.values():
            dispatcher.stats = None

    async def snapshot(self) -> Snapshot:
        """Copies of the recorded stats and fresh counts, on the loop."""
        snap = Snapshot()
        for name, dispatcher in self.dispatchers.items():
            if dispatcher.stats is not None:
                snap.rpc[name] = dispatcher.stats.copy()
            snap.in_flight[name] = dispatcher.in_flight
        journal = self.rt.journal
        if journal is not None:
            snap.journal = journal.stats.copy()
            snap.journal_rows = len(journal)
        snap.lag = self.lag.hist.copy()
        gate = self.rt.gate
        if gate is not None:
            snap.gate = gate.stats()
        snap.counts = await info.counts(self.rt.sessions)
        return snap

    def collect_snapshot(self) -> Snapshot | None:
        """From the HTTP thread: the loop's snapshot, or None when the loop
        cannot answer (stopping)."""
        try:
            future = asyncio.run_coroutine_threadsafe(self.snapshot(), self.loop)
            return future.result(SCRAPE_TIMEOUT)
        except Exception as exc:    # the loop is closed or stuck: expose what we can
            log.warning("metrics.snapshot_failed", error=repr(exc)[:200])
            return None


def _histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    family.add_metric(labels, hist.cumulative(), hist.total)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        build = GaugeMetricFamily("iommud_build_info", "The daemon's and its core's versions.",
                                  labels=["version", "core_version"])
        build.add_metric([__version__, _core.__version__], 1)
        yield build
        snap = self.metrics.collect_snapshot()
        if snap is None:
            return
        yield from self._rpcs(snap)
        if snap.counts is not None:
            for name in _COUNTS:
                yield GaugeMetricFamily(f"iommud_{name}", f"Live {name.replace('_', ' ')}, "
                                        "over every session (as GetInfo's daemon counts).",
                                        value=getattr(snap.counts, name))
            yield GaugeMetricFamily("iommud_session_memory_bytes", "Daemon memory the "
                                    "sessions' state holds, as their memory budgets count it.",
                                    value=snap.counts.memory_bytes)
        yield from self._journal(snap)
        if snap.lag is not None:
            lag = HistogramMetricFamily("iommud_event_loop_lag_seconds", "How late a timer on "
                                        "the event loop fired: how long the loop was busy.")
            _histogram(lag, [], snap.lag)
            yield lag
        if snap.gate is not None:
            accepted, failed, live, refused, idle = snap.gate
            for name, value, doc in (
                    ("accepted", accepted, "Connections accepted on the UNIX socket "
                     "(refused ones included)."),
                    ("failed", failed, "Connections the gate could not relay to the server."),
                    ("refused", refused, "Connections closed at once: over max_connections "
                     "or max_connections_per_uid."),
                    ("idle_closed", idle, "Connections closed after connection_idle_seconds "
                     "of silence.")):
                yield CounterMetricFamily(f"iommud_connections_{name}", doc, value=value)
            yield GaugeMetricFamily("iommud_connections_live", "Connections open on the UNIX "
                                    "socket now.", value=live)

    @staticmethod
    def _rpcs(snap: Snapshot) -> Iterator[Any]:
        labels = ["method", "errno", "transport"]
        total = CounterMetricFamily("iommud_rpcs", "Calls by method and result: errno \"OK\" "
                                    "or the errno name of the refusal.", labels=labels)
        duration = HistogramMetricFamily("iommud_rpc_duration_seconds", "Time from dispatch to "
                                         "reply of unary calls, by method and result.",
                                         labels=labels)
        streams = GaugeMetricFamily("iommud_streams_open", "Server streams open now "
                                    "(WatchSession, WatchHost).", labels=["method"])
        in_flight = GaugeMetricFamily("iommud_rpcs_in_flight", "Calls being served now.",
                                      labels=["transport"])
        for transport, stats in sorted(snap.rpc.items()):
            keys = sorted(set(stats.latency) | set(stats.counted))
            for method, status in keys:
                hist = stats.latency.get((method, status))
                count = stats.counted.get((method, status), 0) + (hist.count if hist else 0)
                total.add_metric([method, status, transport], count)
                if hist is not None:
                    _histogram(duration, [method, status, transport], hist)
            for method, n in sorted(stats.streams.items()):
                streams.add_metric([method], n)
        for transport, n in sorted(snap.in_flight.items()):
            in_flight.add_metric([transport], n)
        yield from (total, duration, streams, in_flight)

    @staticmethod
    def _journal(snap: Snapshot) -> Iterator[Any]:
        stats = snap.journal
        if stats is None:
            return
        yield GaugeMetricFamily("iommud_journal_rows", "Rows in the journal since its last "
                                "snapshot (what a restart replays).", value=snap.journal_rows)
        rows = CounterMetricFamily("iommud_journal_rows_written", "Rows appended, by kind "
                                   "(op, fail, forget).", labels=["kind"])
        for kind, n in sorted(stats.rows.items()):
            rows.add_metric([kind], n)
        yield rows
        for name, hist, doc in (
                ("write", stats.write_seconds, "Time to write one row (pwrite, and "
                 "preallocation when it grows)."),
                ("fsync", stats.fsync_seconds, "Time to fdatasync one row "
                 "(journal_sync=full).")):
            family = HistogramMetricFamily(f"iommud_journal_{name}_seconds", doc)
            _histogram(family, [], hist)
            yield family
        errors = CounterMetricFamily("iommud_journal_write_errors", "Rows the journal could "
                                     "not write (the call was refused), by errno.",
                                     labels=["errno"])
        for name, n in sorted(stats.errors.items()):
            errors.add_metric([name], n)
        yield errors
        yield CounterMetricFamily("iommud_journal_snapshots", "Snapshots made since start.",
                                  value=stats.snapshots)
