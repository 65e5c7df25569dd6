"""Sessions that live as long as their client, signals, shutdown and the
daemon's trust boundaries (the reliability issue)."""
from __future__ import annotations

import asyncio
import errno as E
import os
import pathlib
import signal
import time

import grpc
import pytest
from support import raises_errno, run_daemon

from iommud.access import AccessPolicy, Caller
from iommud.call import Runtime
from iommud.config import Config
from iommud.dispatch import Dispatcher
from iommud.errors import IommuError, to_status
from iommud.host import Host
from iommud.ops import Fd, Limit, Needs, Op
from iommud.session import LeaseClock, SessionRegistry
from iommud.topology import Topology
from iommud_client import IommudError
from iommud_wire import pb

# -- leases ---------------------------------------------------------------------------------

def test_the_debug_clock_ages_leases_and_reaps_at_once(daemon_factory) -> None:
    d = daemon_factory("--debug-clock", "1", "--lease-seconds", "30")
    with d.client() as c:
        s = c.open_session("short", keepalive=False)
        kept = c.open_session("kept", lease_seconds=600)
        assert c.call("DebugAdvanceClock", pb.DebugAdvanceClockRequest(seconds=20),
                      kept.token).reaped == 0
        s.keepalive()                                  # renewed: 30 s from now
        assert c.call("DebugAdvanceClock", pb.DebugAdvanceClockRequest(seconds=29),
                      kept.token).reaped == 0
        assert c.call("DebugAdvanceClock", pb.DebugAdvanceClockRequest(seconds=2),
                      kept.token).reaped == 1
        raises_errno(s.keepalive, "ESRCH")
        assert kept.keepalive() == 600


def test_the_debug_clock_is_off_by_default(daemon) -> None:
    with daemon.client() as c, c.open_session() as s:
        raises_errno(lambda: s.call("DebugAdvanceClock",
                                    pb.DebugAdvanceClockRequest(seconds=1)), "ENOTTY")


def test_a_stopped_daemon_does_not_age_leases() -> None:
    """LeaseClock: a reaper round that comes late by more than its slack was
    time the daemon could not serve; no lease pays for it."""
    clock = LeaseClock()
    reg = SessionRegistry(lease_default=1, lease_max=10, max_sessions=4,
                          limits=Config().limits())
    reg.clock = clock
    sess = reg.open("c", 1)
    # The loop was stuck for 5 s right after the session's last call.
    clock._last_tick -= 5.0
    sess.last_seen -= 5.0
    assert clock.tick(0.2) == pytest.approx(4.8, abs=0.1)
    assert reg.reap() == [] and not sess.closed
    clock.advance(1.5)
    assert reg.reap() == [sess]


def test_sigstop_longer_than_a_lease_reaps_nobody(daemon_factory) -> None:
    """A daemon that cannot run (here SIGSTOP, as a stalled loop) must not
    hold that against its clients' leases."""
    d = daemon_factory("--lease-seconds", "1", "--reap-interval", "0.1")
    with d.client() as c:
        s = c.open_session("vmm", keepalive=False)
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)                            # the stimulus: > 2 leases stopped
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        assert ctx.ioas_iova_ranges(ioas)[1] == 1      # the session and its IOAS are there
        assert d.events("loop.stalled")


# -- signals and shutdown -----------------------------------------------------------------

def test_sighup_reloads_the_log_level_and_never_exits(daemon_factory, tmp_path) -> None:
    conf = tmp_path / "iommud.toml"
    conf.write_text('[iommud]\nlog_level = "info"\n')
    d = daemon_factory("--config", str(conf))
    conf.write_text('[iommud]\nlog_level = "debug"\n')
    d.proc.send_signal(signal.SIGHUP)
    with d.client() as c, c.open_session("reloaded") as s:
        # The reload runs on the daemon's loop before it reads this call.
        deadline = time.monotonic() + 10
        while not d.events("reload.done") and time.monotonic() < deadline:
            s.keepalive()
        s.keepalive()
        sid = s.session_id
    assert d.events("reload.done")[0]["log_level"] == "debug"
    assert any(e.get("session") == sid and e["method"] == "KeepAlive"
               for e in d.events("rpc"))
    conf.write_text('[iommud]\nlog_level = "verbose"\n')   # a bad value keeps the old
    d.proc.send_signal(signal.SIGHUP)
    with d.client() as c:
        deadline = time.monotonic() + 10
        while not d.events("reload.failed") and time.monotonic() < deadline:
            c.echo(b"x")
    assert d.proc.poll() is None and d.socket_path.exists()
    assert "verbose" in d.events("reload.failed")[0]["error"]
    assert d.stop() == 0 and not d.socket_path.exists()


def test_shutdown_refuses_new_calls_with_eshutdown_while_in_flight_ones_finish() -> None:
    """Dispatcher.drain: a call in flight finishes; one arriving meanwhile
    gets ESHUTDOWN, which is UNAVAILABLE with ErrorInfo."""
    release = asyncio.Event()

    async def slow(call, req):
        await release.wait()
        return pb.EchoResponse(payload=req.payload)

    def op(name: str, handler) -> Op:
        return Op(name=name, handler=handler, request=pb.EchoRequest, reply=pb.EchoResponse,
                  fd=Fd.NONE, journal=False, admin=False, limit=Limit.NONE,
                  needs=Needs.OPTIONAL, is_async=asyncio.iscoroutinefunction(handler))

    slow_op = op("Echo", slow)
    cfg = Config()
    rt = Runtime(config=cfg, host=Host(Topology()),
                 sessions=SessionRegistry(30, 60, 4, cfg.limits()), access=AccessPolicy())
    dispatcher = Dispatcher(rt, {"Echo": slow_op})

    async def scenario() -> tuple[pb.EchoResponse, IommuError, bool]:
        first = asyncio.create_task(dispatcher.call(slow_op, pb.EchoRequest(payload=b"a"),
                                                    Caller(), None))
        await asyncio.sleep(0)                        # let it start
        drain = asyncio.create_task(dispatcher.drain(5.0))
        await asyncio.sleep(0)
        with pytest.raises(IommuError) as refused:
            await dispatcher.call(slow_op, pb.EchoRequest(payload=b"b"), Caller(), None)
        release.set()
        return await first, refused.value, await drain

    reply, err, drained = asyncio.run(scenario())
    assert reply.payload == b"a" and drained
    assert err.errno == E.ESHUTDOWN
    assert to_status(err).code is grpc.StatusCode.UNAVAILABLE


def test_sigterm_stops_cleanly(daemon_factory) -> None:
    d = daemon_factory()
    with d.client() as c, c.open_session() as s:
        s.open_context().ioas_alloc()
    assert d.stop() == 0
    assert not d.socket_path.exists()
    assert d.events("stopped")


# -- trust boundaries -----------------------------------------------------------------------

def test_allow_lists_with_tls_but_no_client_ca_are_refused(tmp_path) -> None:
    from test_tls import _issue, _write  # the TLS tests' throwaway PKI

    ca_key, ca_cert = _issue("test CA", None, None, ca=True)
    cert, key = _write(tmp_path / "server", *_issue("iommud", ca_key, ca_cert.subject))
    out = run_daemon("--socket", str(tmp_path / "s.sock"), "--tcp", "127.0.0.1:0",
                     "--tls-cert", cert, "--tls-key", key, "--allow-uids", "0")
    assert out.returncode == 1
    assert "tls_client_ca" in out.stderr


@pytest.mark.parametrize("setup", ["foreign_owner", "world_writable"])
def test_a_socket_directory_others_can_write_is_refused(tmp_path, setup) -> None:
    sockdir = tmp_path / "run"
    sockdir.mkdir()
    if setup == "foreign_owner":
        os.chown(sockdir, 12345, 12345)
    else:
        sockdir.chmod(0o777)
    out = run_daemon("--socket", str(sockdir / "iommud.sock"))
    assert out.returncode == 1
    assert ("owned by uid 12345" if setup == "foreign_owner" else "writable by others") \
        in out.stderr


def test_a_planted_log_symlink_is_not_followed(tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (tmp_path / "iommud.log").symlink_to(victim)
    out = run_daemon("--socket", str(tmp_path / "iommud.sock"), "--background",
                     "--log-file", str(tmp_path / "iommud.log"))
    assert out.returncode != 0
    assert victim.read_text() == "root's file\n"


def test_a_huge_name_is_cut_from_the_error_and_the_errno_survives(daemon) -> None:
    with daemon.client() as c, c.open_session() as s:
        err = raises_errno(lambda: s.hot_add_device(pb.HostDevice(name="x" * 16000, group=1)),
                           "EINVAL")
        assert len(err.message) < 1100 and all(len(v) <= 256 for v in err.metadata.values())
        err = raises_errno(lambda: s.open_device("y" * 16000), "ENODEV")
        assert len(err.message) < 1100


def test_shutdown_errno_is_documented() -> None:
    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "errors.md").read_text()
    assert "| ESHUTDOWN | 108 | UNAVAILABLE |" in text
    assert IommudError(E.ESHUTDOWN, "x").errno_name == "ESHUTDOWN"


# -- the loop never stalls ----------------------------------------------------------------------

def _fill(ctx, ioas: int, areas: int) -> None:
    import array
    step = 32768
    for base in range(0, areas, step):
        n = min(step, areas - base)
        ctx.ioas_map_batch(ioas, array.array("Q", (0x7F00_0000_0000 + (base + k) * 0x1000
                                                   for k in range(n))),
                           array.array("Q", [0x1000] * n))


def test_a_long_copy_runs_off_the_loop_and_holds_only_its_own_session(daemon_factory) -> None:
    """IoasCopy of a million areas runs in a worker thread: while it runs,
    another session's calls are answered (the loop is free), and a call of
    the copying session itself waits for it instead of interleaving."""
    import threading
    import urllib.request
    d = daemon_factory("--metrics-address", "127.0.0.1:0")
    metrics = f"http://{d.events('metrics.serving')[0]['address']}/metrics"

    def calls_in_flight() -> float:
        """The dispatcher's gauge, read over HTTP (the scrape runs on the loop)."""
        with urllib.request.urlopen(metrics, timeout=30) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith('iommud_rpcs_in_flight{transport="grpc"}'):
                    return float(line.rsplit(" ", 1)[1])
        raise AssertionError("no iommud_rpcs_in_flight series")

    with d.client() as c, d.client() as other_c:
        s = c.open_session("copier")
        ctx = s.open_context()
        src, dst = ctx.ioas_alloc(), ctx.ioas_alloc()
        areas = (1 << 20) - 16                 # the most an IOAS holds, less room for one more
        _fill(ctx, src, areas)
        first = min(a.iova for a in ctx.list_areas_page(src, 0, 1).areas)
        other = other_c.open_session("other").open_context()
        other_ioas = other.ioas_alloc()
        events: list[str] = []
        copying = threading.Event()

        def copy() -> None:
            copying.set()
            ctx.ioas_copy(dst, src, first, areas * 0x1000)
            events.append("copy done")

        t = threading.Thread(target=copy)
        t.start()
        copying.wait()
        # The copy has reached the dispatcher, so it holds its session's lock
        # (taken in the same loop step): a sync point, not a guess at timing.
        while calls_in_flight() < 1:
            assert t.is_alive(), "the copy ended before it was seen in flight"
        answered = 0
        while t.is_alive() and answered < 5:
            other.ioas_map(other_ioas, 0x1000 * (answered + 1), 0x1000,
                           iova=0x1000 * (answered + 1))
            answered += 1
            events.append("other session answered")
        same = ctx.ioas_map(src, 0x10_0000_0000, 0x1000)   # queued behind the copy
        events.append("same session answered")
        t.join()
        assert events.index("copy done") < events.index("same session answered")
        assert "other session answered" in events[:events.index("copy done")], events
        assert ctx.translate(src, same).pa == 0x10_0000_0000
        assert [o.areas for o in ctx.list_objects() if o.id == dst] == [areas]


def test_a_client_that_stops_reading_is_refused_enobufs_before_anything_runs() -> None:
    """GrpcService counts each reply as unread until gRPC is done with its
    call (the client took it). Past a quarter of the session memory budget,
    that client's next calls are refused with ENOBUFS before their handler
    runs, so they change nothing and queue nothing; once it reads, it is
    served again. Other clients are not affected."""
    from iommud.service import GrpcService

    ran: list[bytes] = []

    def echo(call, req):
        ran.append(req.payload)
        return pb.EchoResponse(payload=req.payload)

    echo_op = Op(name="Echo", handler=echo, request=pb.EchoRequest, reply=pb.EchoResponse,
                 fd=Fd.NONE, journal=False, admin=False, limit=Limit.NONE,
                 needs=Needs.OPTIONAL)
    cfg = Config(max_memory_bytes_per_session=4 << 20)    # 1 MiB of unread replies allowed
    rt = Runtime(config=cfg, host=Host(Topology()),
                 sessions=SessionRegistry(30, 60, 4, cfg.limits()), access=AccessPolicy())
    svc = GrpcService(rt, Dispatcher(rt, {"Echo": echo_op}))
    unary = svc._unary(echo_op)
    serialize = svc.serializer(pb.EchoResponse)

    async def handle(request, context):
        """As gRPC serves a call: the handler, then the reply's serializer,
        in the same context."""
        reply = await unary(request, context)
        serialize(reply)
        return reply

    class Aborted(Exception):
        pass

    class FakeContext:
        """A call whose reply the client has not read until `read()`."""

        def __init__(self, peer: str) -> None:
            self._peer, self.callbacks, self.aborted = peer, [], None

        def peer(self) -> str:
            return self._peer

        def invocation_metadata(self):
            return ()

        def auth_context(self):
            return {}

        def add_done_callback(self, cb) -> None:
            self.callbacks.append(cb)

        async def abort(self, code, details, trailing_metadata=()):
            self.aborted = (code, dict(trailing_metadata))
            raise Aborted

        def read(self) -> None:
            for cb in self.callbacks:
                cb(self)

    async def scenario() -> None:
        slow = []
        big = b"x" * (256 << 10)
        for _ in range(4):                                # just over 1 MiB unread
            ctx = FakeContext("unix:slow")
            assert (await handle(pb.EchoRequest(payload=big), ctx)).payload == big
            slow.append(ctx)
        assert svc.unread["unix:slow"] > 1 << 20
        refused = FakeContext("unix:slow")
        with pytest.raises(Aborted):
            await handle(pb.EchoRequest(payload=b"refused"), refused)
        code, trailers = refused.aborted
        from google.rpc import error_details_pb2, status_pb2
        [detail] = status_pb2.Status.FromString(trailers["grpc-status-details-bin"]).details
        info = error_details_pb2.ErrorInfo()
        detail.Unpack(info)
        assert info.reason == "ENOBUFS" and code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert b"refused" not in ran                       # refused before it ran
        # Another client is served meanwhile.
        assert (await handle(pb.EchoRequest(payload=b"other"), FakeContext("unix:fast"))
                ).payload == b"other"
        for ctx in slow:                                  # the slow client reads at last
            ctx.read()
        assert "unix:slow" not in svc.unread
        assert (await handle(pb.EchoRequest(payload=b"again"), FakeContext("unix:slow"))
                ).payload == b"again"

    asyncio.run(scenario())


# -- connections ----------------------------------------------------------------------------------

def _quiet_stream_with_client_pings(endpoint: str, token: str, seconds: float) -> str:
    """A WatchSession stream with no heartbeat due for a minute, on a channel
    whose client pings every second, held until its deadline: the status it
    ended with (DEADLINE_EXCEEDED: it lived that long)."""
    from iommud_wire import metadata, pb_grpc
    opts = [("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 5000),
            ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
            ("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(endpoint, options=opts) as channel:
        stream = pb_grpc.IommuServiceStub(channel).WatchSession(
            pb.WatchSessionRequest(interval_ms=60_000), metadata=[(metadata.SESSION, token)],
            timeout=seconds)
        try:
            for _ in stream:
                pass
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    return "ended"


@pytest.mark.parametrize(("min_ping", "want"), [("0.5", "DEADLINE_EXCEEDED"),
                                                ("30", "UNAVAILABLE")])
def test_client_keepalive_pings_are_taken_as_often_as_the_policy_allows(daemon_factory,
                                                                        min_ping, want) -> None:
    """A client that pings every second keeps a quiet stream open until its
    own deadline when the daemon allows pings that often; a daemon that
    allows one every 30 s ends it with GOAWAY (too_many_pings) after a few
    strikes, as gRPC servers do. The default (5 s) takes the common client
    settings (10 s and up)."""
    d = daemon_factory("--keepalive-min-client-ping-seconds", min_ping)
    with d.client() as c, c.open_session("watch", keepalive=False) as s:
        got = _quiet_stream_with_client_pings(d.endpoint, s.token, seconds=6)
    assert got.split(":")[0] == want, got


def test_connections_past_the_per_uid_limit_are_closed_and_others_served(daemon_factory) -> None:
    d = daemon_factory("--max-connections-per-uid", "3")
    own = [("grpc.use_local_subchannel_pool", 1)]         # one connection per channel
    channels = [grpc.insecure_channel(d.endpoint, options=own) for _ in range(4)]
    from iommud_wire import pb_grpc
    try:
        outcomes = []
        for ch in channels:
            try:
                pb_grpc.IommuServiceStub(ch).Echo(pb.EchoRequest(payload=b"x"), timeout=5)
                outcomes.append("ok")
            except grpc.RpcError as exc:
                outcomes.append(exc.code().name)
        assert outcomes == ["ok", "ok", "ok", "UNAVAILABLE"]
        channels[0].close()                                  # room again
        again = grpc.insecure_channel(d.endpoint, options=own)
        channels[0] = again
        assert pb_grpc.IommuServiceStub(again).Echo(pb.EchoRequest(payload=b"y"),
                                                    timeout=10, wait_for_ready=True).payload == b"y"
    finally:
        for ch in channels:
            ch.close()
