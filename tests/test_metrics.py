"""Prometheus metrics (metrics_address): scraped over HTTP from real daemons,
each figure checked to move by exactly what the calls made in between did."""
from __future__ import annotations

import asyncio
import errno as E
import os
import socket
import struct
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import raises_errno, run_daemon
from uapi_client import PATH_IOMMU, Process, io

from iommud.metrics import LagProbe, parse_address
from iommud_client.client import SESSION_METADATA_KEY
from iommud_wire import pb

PAGE = 4096
RW = 4 | 2
FIXED = 1


class Scraper:
    """GET /metrics of one daemon, parsed: {(sample name, labels): value}."""

    def __init__(self, daemon) -> None:
        self.daemon = daemon
        address = daemon.events("metrics.serving")[0]["address"]
        self.url = f"http://{address}/metrics"

    def text(self) -> str:
        with urllib.request.urlopen(self.url, timeout=30) as resp:
            assert resp.status == 200
            return resp.read().decode()

    def __call__(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        out = {}
        for family in text_string_to_metric_families(self.text()):
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return out


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def rpc(samples, method: str, errno: str, transport: str = "grpc") -> tuple[float, float]:
    """(iommud_rpcs_total, the latency histogram's count) of one series."""
    labels = {"method": method, "errno": errno, "transport": transport}
    return (value(samples, "iommud_rpcs_total", **labels),
            value(samples, "iommud_rpc_duration_seconds_count", **labels))


@pytest.fixture
def metered(daemon_factory):
    return daemon_factory("--metrics-address", "127.0.0.1:0", name="metrics")


def test_a_refused_map_moves_exactly_its_errno_series(metered) -> None:
    scrape = Scraper(metered)
    with metered.client() as c, c.open_session("vmm", keepalive=False) as s:
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        before = scrape()
        raises_errno(lambda: ctx.ioas_map(ioas, user_va=0, length=PAGE, flags=1 << 20),
                     "EOPNOTSUPP")
        after = scrape()
        count, timed = rpc(before, "IoasMap", "EOPNOTSUPP")
        assert rpc(after, "IoasMap", "EOPNOTSUPP") == (count + 1, timed + 1)
        assert rpc(after, "IoasMap", "OK") == rpc(before, "IoasMap", "OK") == (0, 0)
        # Its latency landed in a bucket: +Inf counts it, as the count does.
        assert value(after, "iommud_rpc_duration_seconds_bucket", method="IoasMap",
                     errno="EOPNOTSUPP", transport="grpc", le="+Inf") == 1
        assert value(after, "iommud_rpc_duration_seconds_sum", method="IoasMap",
                     errno="EOPNOTSUPP", transport="grpc") > 0

        ctx.ioas_map(ioas, user_va=0x7F00_0000_0000, length=0x200000)
        mapped = scrape()
        assert rpc(mapped, "IoasMap", "OK") == (1, 1)
        assert rpc(mapped, "IoasMap", "EOPNOTSUPP") == rpc(after, "IoasMap", "EOPNOTSUPP")
        assert value(mapped, "iommud_areas") == value(after, "iommud_areas") + 1
        assert value(mapped, "iommud_mapped_bytes") == value(after, "iommud_mapped_bytes") + \
            0x200000
        assert value(mapped, "iommud_session_memory_bytes") > value(after,
                                                                    "iommud_session_memory_bytes")
        assert value(mapped, "iommud_session_memory_bytes") == s.info().daemon.memory_bytes


def test_sessions_objects_and_streams(metered) -> None:
    scrape = Scraper(metered)
    with metered.client() as c:
        empty = scrape()
        assert value(empty, "iommud_sessions") == 0
        with c.open_session("vmm", keepalive=False) as s:
            ctx = s.open_context()
            ctx.ioas_alloc()
            watch = s.watch(interval_ms=60_000)
            next(watch)                              # open once it answered
            live = scrape()
            assert (value(live, "iommud_sessions"), value(live, "iommud_contexts"),
                    value(live, "iommud_objects"), value(live, "iommud_ioas")) == (1, 1, 1, 1)
            assert value(live, "iommud_streams_open", method="WatchSession") == 1
            assert rpc(live, "WatchSession", "OK") == (1, 0)   # counted; a stream has no latency
            watch.cancel()
        closed = scrape()
        assert value(closed, "iommud_sessions") == 0 and value(closed, "iommud_objects") == 0
        assert rpc(closed, "CloseSession", "OK") == (1, 1)


def test_refusals_before_dispatch_are_counted_and_logged(metered) -> None:
    """A request with a field the daemon does not know never reaches the
    dispatcher proper: it is still counted under its errno, and logged with
    the caller's uid, pid and identity, as every refusal is."""
    scrape = Scraper(metered)
    with metered.client() as c, c.open_session("vmm", keepalive=False) as s:
        ctx = s.open_context()
        raw = pb.IoasMapRequest(iommufd=ctx.iommufd, ioas_id=1, flags=FIXED | RW, length=PAGE,
                                iova=PAGE).SerializeToString() + b"\xa8\x06\x01"  # field 101
        call = c.channel.unary_unary("/iommud.v1.IommuService/IoasMap", request_serializer=None,
                                     response_deserializer=pb.IoasMapResponse.FromString)
        raises_errno(lambda: call(raw, metadata=((SESSION_METADATA_KEY, s.token),), timeout=10),
                     "E2BIG")
        raises_errno(lambda: c.call("KeepAlive", pb.KeepAliveRequest(), "no-such-token"),
                     "ESRCH")
        after = scrape()
    assert rpc(after, "IoasMap", "E2BIG") == (1, 0)
    assert rpc(after, "KeepAlive", "ESRCH") == (1, 1)
    logged = {e["status"]: e for e in metered.events("rpc") if e["status"] in ("E2BIG", "ESRCH")}
    for status in ("E2BIG", "ESRCH"):
        event = logged[status]
        assert (event["uid"], event["pid"], event["identity"]) == (
            os.getuid(), os.getpid(), f"uid:{os.getuid()}")


def test_journal_rows_and_their_write_and_sync_latency(daemon_factory, tmp_path) -> None:
    d = daemon_factory("--metrics-address", "127.0.0.1:0", "--journal",
                       str(tmp_path / "iommud.journal"), "--journal-sync", "full",
                       name="metered-journal")
    scrape = Scraper(d)
    with d.client() as c, c.open_session("vmm", keepalive=False) as s:
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        before = scrape()
        ctx.ioas_map(ioas, user_va=0, length=PAGE, iova=PAGE)
        one = scrape()
        raises_errno(lambda: ctx.ioas_map(ioas, user_va=0, length=PAGE, iova=PAGE), "EEXIST")
        two = scrape()

    def rows(samples, kind: str) -> float:
        return value(samples, "iommud_journal_rows_written_total", kind=kind)

    assert rows(one, "op") == rows(before, "op") + 1 and rows(one, "fail") == rows(before, "fail")
    assert value(one, "iommud_journal_rows") == value(before, "iommud_journal_rows") + 1
    for hist in ("iommud_journal_write_seconds_count", "iommud_journal_fsync_seconds_count"):
        assert value(one, hist) == value(before, hist) + 1
    # A refused call: written ahead, then marked failed (two rows, two syncs).
    assert (rows(two, "op"), rows(two, "fail")) == (rows(one, "op") + 1, rows(one, "fail") + 1)
    assert value(two, "iommud_journal_fsync_seconds_count") == value(
        one, "iommud_journal_fsync_seconds_count") + 2
    assert value(two, "iommud_journal_write_errors_total", errno="ENOSPC") == 0
    assert value(two, "iommud_journal_snapshots_total") == 0


def test_connections_from_the_peer_gate(metered) -> None:
    scrape = Scraper(metered)
    first = scrape()
    with metered.client() as c:
        c.echo(b"x")                        # relayed: the gate accepted it before it answered
        second = scrape()
    assert value(second, "iommud_connections_accepted_total") == value(
        first, "iommud_connections_accepted_total") + 1
    assert value(second, "iommud_connections_live") >= 1
    for name in ("failed", "refused", "idle_closed"):
        assert value(second, f"iommud_connections_{name}_total") == 0


def test_raw_transport_calls_are_labelled_uapi(metered) -> None:
    scrape = Scraper(metered)
    proc = Process(str(metered.socket_path.parent / "iommud.uapi.sock"))
    try:
        f = proc.open(PATH_IOMMU)
        alloc = proc.mem.struct(struct.Struct("<III"), 12, 0, 0)
        assert f.ioctl(io(0x81), alloc) >= 0            # IOMMU_IOAS_ALLOC
        samples = scrape()
    finally:
        proc.close()
    assert rpc(samples, "IoasAlloc", "OK", "uapi") == (1, 1)
    assert rpc(samples, "IoasAlloc", "OK", "grpc") == (0, 0)


def test_process_and_loop_series_are_there(metered) -> None:
    text = Scraper(metered).text()
    for name in ("process_resident_memory_bytes", "process_open_fds", "iommud_build_info",
                 "iommud_event_loop_lag_seconds_bucket", "iommud_rpcs_in_flight"):
        assert f"\n{name}" in text, name


def test_a_clean_stop_closes_the_listener(metered) -> None:
    scrape = Scraper(metered)
    assert value(scrape(), "iommud_sessions") == 0
    assert metered.stop() == 0 and metered.events("stopped")
    with pytest.raises(OSError):
        scrape.text()


def test_metrics_are_off_by_default(daemon) -> None:
    assert daemon.events("metrics.serving") == []


def test_a_bad_address_or_a_busy_port_stops_the_start(tmp_path) -> None:
    sock = str(tmp_path / "iommud.sock")
    out = run_daemon("--socket", sock, "--metrics-address", "nowhere:port")
    assert out.returncode != 0 and "metrics_address" in out.stderr + out.stdout
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_daemon("--socket", sock, "--metrics-address", str(port))
    assert out.returncode != 0
    assert os.strerror(E.EADDRINUSE) in out.stderr + out.stdout
    assert not os.path.exists(sock)                 # nothing else was started


@pytest.mark.parametrize(("text", "expected"), [
    ("9464", ("127.0.0.1", 9464)), ("0.0.0.0:9464", ("0.0.0.0", 9464)),
    ("[::1]:9464", ("::1", 9464)), ("localhost:0", ("localhost", 0))])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "x", "host:", ":9464", "example.com:80", "1:65536"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="metrics_address"):
        parse_address(text)


def test_the_lag_probe_sees_a_stall() -> None:
    """A callback that holds the loop for 30 ms makes the probe's next timer
    fire at least that late."""
    async def scenario() -> LagProbe:
        loop = asyncio.get_running_loop()
        fired = asyncio.Event()

        class Probe(LagProbe):
            def _tick(self) -> None:
                super()._tick()
                fired.set()

        probe = Probe(loop, interval=0.001)
        probe.start()
        loop.call_soon(time.sleep, 0.03)             # the stall being measured
        await fired.wait()
        probe.stop()
        return probe

    probe = asyncio.run(scenario())
    assert probe.hist.count == 1 and probe.hist.total >= 0.025

