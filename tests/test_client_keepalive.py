"""The synchronous client keeps its sessions alive (iommud_client.lease).

Against real daemons with short leases: a kept session outlives several
leases of idleness while one opened with keepalive=False is reaped; the
keeper stops on close, on Client.close(), on ESRCH, when the Session is
dropped, at interpreter exit and in a forked child; it rides out a daemon
restart with the journal and a stalled daemon. Waits block on the keeper's
own state (LeaseKeeper.wait) or poll the daemon's log, always bounded.
"""
from __future__ import annotations

import errno as E
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING

import grpc
import pytest
from support import raises_errno

from iommud_client import IommudError
from iommud_client.lease import KeepalivePolicy, KeepaliveStatus, LeaseKeeper, StopReason, _KeeperCore
from iommud_wire import pb

if TYPE_CHECKING:
    from collections.abc import Callable

    from support import DaemonProcess

    from iommud_client import Session

#: Bound on every wait for the keeper or the daemon (never reached when all is well).
WAIT = 15.0
LEASE = 1


def poll(fn: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Re-evaluate `fn` (daemon state) until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    return fn()


def keeper_of(s: Session) -> LeaseKeeper:
    assert s.lease_keeper is not None
    return s.lease_keeper


def wait_connected(s: Session) -> KeepaliveStatus:
    keeper = keeper_of(s)
    assert keeper.wait(lambda st: st.connected, WAIT), keeper.status()
    return keeper.status()


def wait_stopped(s: Session) -> KeepaliveStatus:
    keeper = keeper_of(s)
    assert keeper.wait(lambda st: not st.running, WAIT), keeper.status()
    thread = keeper._thread
    assert thread is not None
    thread.join(WAIT)
    assert not thread.is_alive()
    return keeper.status()


def reaped_ids(d: DaemonProcess) -> set[str]:
    return {e["session"] for e in d.events("session.reaped")}


@pytest.fixture(scope="module")
def short(module_daemon_factory) -> DaemonProcess:
    """A 1 s lease, a fast reaper, and the debug clock (to reap at will)."""
    return module_daemon_factory("--lease-seconds", str(LEASE), "--reap-interval", "0.1",
                                 "--debug-clock", "1", name="short-lease")


# -- idleness ---------------------------------------------------------------------------------

def test_a_kept_session_outlives_several_leases_of_idleness(short) -> None:
    """Both sessions map, then nobody calls: the one without keepalive is
    reaped after its lease; the kept one is still whole three leases later."""
    with short.client() as c:
        kept = c.open_session("kept")
        bare = c.open_session("bare", keepalive=False)
        assert kept.keepalive_alive and not bare.keepalive_alive
        assert bare.lease_keeper is None and bare.keepalive_status() is None
        ctx = kept.open_context()
        ioas = ctx.ioas_alloc()
        iova = ctx.ioas_map(ioas, user_va=0x7F0000000000, length=0x200000)
        bare.open_context().ioas_alloc()
        idle_from = time.monotonic()
        # Idle: the bare session goes once its lease has run out ...
        assert poll(lambda: bare.session_id in reaped_ids(short))
        # ... and the kept one is still heart-beating three leases on.
        keeper = keeper_of(kept)
        assert keeper.wait(lambda st: st.last_heartbeat is not None
                           and st.last_heartbeat - idle_from > 3 * LEASE, WAIT)
        assert kept.session_id not in reaped_ids(short)
        status = keeper.status()
        assert status.running and status.connected and status.streams == 1
        assert status.last_error is None and status.stop_reason is None
        assert ctx.translate(ioas, iova).pa == 0x7F0000000000
        raises_errno(bare.keepalive, "ESRCH")
        kept.close()


def test_the_debug_clock_reaps_only_the_session_without_keepalive(short) -> None:
    """Deterministic: an hour of leases at once reaps exactly the bare
    session; the open WatchSession stream holds the kept one."""
    with short.client() as c:
        kept = c.open_session("kept")
        bare = c.open_session("bare", keepalive=False)
        wait_connected(kept)
        assert kept.debug_advance_clock(3600) == 1
        assert kept.keepalive() == LEASE
        raises_errno(bare.keepalive, "ESRCH")
        kept.close()


def test_attach_session_keeps_the_attached_session_alive(short) -> None:
    with short.client() as owner, short.client() as other:
        s = owner.open_session("owner", keepalive=False)
        attached = other.attach_session(s.token)
        assert attached.session_id == s.session_id and attached.lease_seconds == LEASE
        wait_connected(attached)
        assert attached.debug_advance_clock(3600) == 0
        assert s.keepalive() == LEASE
        assert attached.close() == 0
        raises_errno(s.keepalive, "ESRCH")


# -- stopping ---------------------------------------------------------------------------------

def test_close_stops_the_keepalive_first(short) -> None:
    with short.client() as c:
        s = c.open_session("closing")
        wait_connected(s)
        s.open_context()
        assert s.close() == 1
        status = wait_stopped(s)
        assert status.stop_reason is StopReason.CLOSED and not status.connected
        assert not s.keepalive_alive and s.keepalive_error is None


def test_with_block_exit_stops_the_keepalive(short) -> None:
    with short.client() as c:
        with c.open_session("scoped") as s:
            wait_connected(s)
        assert wait_stopped(s).stop_reason is StopReason.CLOSED


def test_client_close_stops_every_keepalive_and_the_leases_run(short) -> None:
    c = short.client()
    sessions = [c.open_session(f"client-{i}") for i in range(3)]
    for s in sessions:
        wait_connected(s)
    c.close()
    for s in sessions:
        assert wait_stopped(s).stop_reason is StopReason.CLIENT_CLOSED
    # Their streams are gone from the daemon too: their leases run again.
    with short.client() as probe, probe.open_session("probe") as p:
        wait_connected(p)
        assert p.debug_advance_clock(3600) >= 3
        assert not {s.session_id for s in sessions} - reaped_ids(short)


def test_esrch_stops_the_keepalive_for_good(short) -> None:
    """Another client closes the session: the stream ends, the reopen is
    ESRCH, and the keeper stops and says why."""
    with short.client() as c, short.client() as other:
        s = c.open_session("doomed")
        wait_connected(s)
        other.call("CloseSession", pb.CloseSessionRequest(), s.token)
        status = wait_stopped(s)
        assert status.stop_reason is StopReason.SESSION_GONE
        err = s.keepalive_error
        assert isinstance(err, IommudError) and err.errno_name == "ESRCH" and err.errno == E.ESRCH


def test_dropping_the_session_object_stops_its_keepalive(short) -> None:
    with short.client() as c:
        s = c.open_session("dropped")
        keeper = keeper_of(s)
        assert keeper.wait(lambda st: st.connected, WAIT)
        session_id = s.session_id
        del s
        gc.collect()
        assert keeper.wait(lambda st: not st.running, WAIT)
        assert keeper.status().stop_reason is StopReason.RELEASED
        with c.open_session("probe") as p:
            wait_connected(p)
            p.debug_advance_clock(3600)
        assert session_id in reaped_ids(short)


def test_interpreter_exit_stops_the_keepalive_without_hanging(short) -> None:
    """A process that exits holding a kept session exits at once; its
    stream is gone, so the lease runs (here: the debug clock reaps it)."""
    script = textwrap.dedent(f"""
        from iommud_client import Client
        c = Client({short.endpoint!r})
        s = c.open_session("exiting")
        assert s.lease_keeper.wait(lambda st: st.connected, {WAIT})
        print(s.session_id, flush=True)
    """)
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 20
    session_id = out.stdout.strip()
    with short.client() as c, c.open_session("probe") as p:
        wait_connected(p)
        p.debug_advance_clock(3600)
    assert session_id in reaped_ids(short)


def test_a_forked_child_sees_the_keeper_stopped_and_the_parent_keeps_it(short) -> None:
    script = textwrap.dedent(f"""
        import os, sys
        from iommud_client import Client
        c = Client({short.endpoint!r})
        s = c.open_session("forking")
        k = s.lease_keeper
        assert k.wait(lambda st: st.connected, {WAIT})
        pid = os.fork()
        if pid == 0:
            st = s.keepalive_status()
            ok = (not s.keepalive_alive and st.stop_reason == "fork" and not st.connected
                  and k.wait(lambda st: not st.running, 0))
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        beats = k.status().heartbeats
        assert k.wait(lambda st: st.heartbeats > beats + 2 and st.connected, {WAIT})
        assert s.keepalive_alive
        s.close()
        print("ok", flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# -- failures it rides out ----------------------------------------------------------------------

def test_a_journaled_restart_is_ridden_out_and_the_same_token_reattaches(daemon_factory,
                                                                           tmp_path) -> None:
    journal = str(tmp_path / "journal.db")
    flags = ("--journal", journal, "--lease-seconds", "2", "--reap-interval", "0.1")
    d = daemon_factory(*flags, name="journaled")
    with d.client() as c:
        s = c.open_session("vmm")
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        iova = ctx.ioas_map(ioas, user_va=0x7F0000000000, length=0x200000)
        before = wait_connected(s)
        assert d.stop() == 0
        keeper = keeper_of(s)
        # The stream broke; the keeper keeps trying (the daemon is down).
        assert keeper.wait(lambda st: not st.connected and st.last_error is not None, WAIT)
        assert keeper.alive
        d2 = daemon_factory(*flags, name="journaled", workdir=d.socket_path.parent)
        assert keeper.wait(lambda st: st.connected and st.streams > before.streams, WAIT)
        restarted = time.monotonic()
        # Two leases of idleness after the restart: still there, mapping and all.
        assert keeper.wait(lambda st: st.last_heartbeat is not None
                           and st.last_heartbeat - restarted > 2 * 2, WAIT)
        assert s.session_id not in reaped_ids(d2)
        assert ctx.translate(ioas, iova).pa == 0x7F0000000000
        status = keeper.status()
        assert status.running and status.stop_reason is None
        assert status.last_error is not None and status.last_error.errno_name in {
            "EIO", "ESHUTDOWN"}          # UNAVAILABLE without ErrorInfo, or the drain's refusal
        s.close()


def test_a_restart_without_the_journal_ends_the_keepalive_with_esrch(daemon_factory) -> None:
    d = daemon_factory("--lease-seconds", "2", name="amnesiac")
    with d.client() as c:
        s = c.open_session("vmm")
        wait_connected(s)
        d.stop()
        daemon_factory("--lease-seconds", "2", name="amnesiac", workdir=d.socket_path.parent)
        status = wait_stopped(s)
        assert status.stop_reason is StopReason.SESSION_GONE
        assert s.keepalive_error is not None and s.keepalive_error.errno_name == "ESRCH"


def test_a_stalled_stream_is_cancelled_and_reopened(daemon_factory) -> None:
    """SIGSTOP the daemon: the heartbeats stop, the keeper gives up on the
    stream after stall_after (ETIMEDOUT) and reopens it once the daemon
    runs again; the daemon does not age leases while it is stopped."""
    d = daemon_factory("--lease-seconds", str(LEASE), "--reap-interval", "0.1", name="stalled")
    with d.client() as c:
        s = c.open_session("vmm")
        before = wait_connected(s)
        keeper = keeper_of(s)
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            assert keeper.wait(lambda st: st.last_error is not None
                               and st.last_error.errno_name == "ETIMEDOUT", WAIT)
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        assert keeper.wait(lambda st: st.connected and st.streams > before.streams, WAIT)
        assert s.keepalive() == LEASE
        assert s.session_id not in reaped_ids(d)
        s.close()


def test_calls_on_many_threads_while_the_keeper_reopens_its_stream(short) -> None:
    """The keeper shares only the channel (thread-safe) with the session's
    callers: four threads map, translate and unmap on one session while its
    stream is cut three times (as a broken connection would) and reopened."""
    with short.client() as c, c.open_session("busy") as s:
        keeper = keeper_of(s)
        wait_connected(s)
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                ctx = s.open_context()
                ioas = ctx.ioas_alloc()
                for i in range(100):
                    iova = ctx.ioas_map(ioas, user_va=(n << 32) + (i << 12), length=0x1000)
                    assert ctx.translate(ioas, iova).pa == (n << 32) + (i << 12)
                    assert ctx.ioas_unmap(ioas, iova, 0x1000) == 0x1000
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for cut in range(3):
            streams = keeper.status().streams
            with keeper._cond:                   # the open stream, as the keeper holds it
                call = keeper._call
            if call is not None:
                call.cancel()
            assert keeper.wait(lambda st, n=streams: st.streams > n and st.connected, WAIT), cut
        for t in threads:
            t.join(WAIT * 4)
        assert errors == [] and not any(t.is_alive() for t in threads)
        status = keeper.status()
        assert status.running and status.streams >= 4
        assert status.last_error is not None and status.last_error.code is grpc.StatusCode.CANCELLED


# -- the keeper's decisions, without a daemon --------------------------------------------------

def test_policy_scales_with_the_lease_within_bounds() -> None:
    p = KeepalivePolicy.for_lease(30)
    assert (p.interval, p.stall_after, p.backoff_initial, p.backoff_max) == (6.0, 18.0, 0.1, 5.0)
    p = KeepalivePolicy.for_lease(1)
    assert (p.interval, p.stall_after, p.backoff_max) == (0.2, 1.0, 0.25)
    p = KeepalivePolicy.for_lease(3600)
    assert (p.interval, p.stall_after, p.backoff_max) == (10.0, 30.0, 5.0)
    for lease in (1, 2, 5, 30, 600, 3600):
        p = KeepalivePolicy.for_lease(lease)
        assert p.backoff_max < lease and p.interval < lease


#: What the daemon answers while it drains at shutdown (UNAVAILABLE, with ErrorInfo).
REFUSED = IommudError(E.ESHUTDOWN, "The daemon is shutting down", errno_name="ESHUTDOWN",
                      code=grpc.StatusCode.UNAVAILABLE, metadata={"errno": str(E.ESHUTDOWN)})
#: What gRPC itself reports when the channel cannot connect (no ErrorInfo).
UNREACHABLE = IommudError(E.EIO, "transport error UNAVAILABLE: failed to connect",
                          errno_name="EIO", code=grpc.StatusCode.UNAVAILABLE)


def test_backoff_doubles_to_its_cap_and_restarts_after_a_heartbeat() -> None:
    core = _KeeperCore(KeepalivePolicy(interval=1, stall_after=3, backoff_initial=0.1,
                                       backoff_max=0.5), rng=lambda: 1.0)   # no jitter
    delays = []
    for _ in range(5):
        core.stream_opened(0.0)
        delays.append(core.stream_ended(REFUSED))
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5]
    core.stream_opened(1.0)
    core.heartbeat(1.5)
    assert core.status(True).connected
    assert core.stream_ended(None) == 0.1          # a clean end after a heartbeat: start over
    assert core.status(True).running and core.status(True).last_error is REFUSED


def test_transport_failures_retry_on_a_short_fixed_period() -> None:
    """While the channel cannot connect a retry costs no I/O; gRPC's own
    reconnection paces the real attempts, so the keeper adds no backoff."""
    core = _KeeperCore(KeepalivePolicy(1, 3, 0.1, 5.0, transport_retry=0.2), rng=lambda: 1.0)
    assert [core.stream_ended(UNREACHABLE) for _ in range(4)] == [0.2] * 4
    assert core.stream_ended(REFUSED) == 0.1       # the daemon's own refusals still back off
    assert core.stream_ended(REFUSED) == 0.2
    assert core.status(True).running


def test_jitter_only_shortens_a_delay_by_up_to_half() -> None:
    core = _KeeperCore(KeepalivePolicy(1, 3, 0.4, 0.4), rng=lambda: 0.0)
    assert core.stream_ended(None) == 0.2


def test_esrch_is_final_and_the_first_stop_reason_stays() -> None:
    core = _KeeperCore(KeepalivePolicy.for_lease(30))
    gone = IommudError(E.ESRCH, "no such session")
    assert core.stream_ended(gone) is None
    core.stop(StopReason.CLOSED)
    status = core.status(True)
    assert not status.running and status.stop_reason is StopReason.SESSION_GONE
    assert status.last_error is gone


def test_silence_is_measured_from_the_last_heartbeat_or_the_stream_start() -> None:
    core = _KeeperCore(KeepalivePolicy.for_lease(30))
    core.stream_opened(10.0)
    assert core.silent_for(12.0) == 2.0
    core.heartbeat(11.0)
    assert core.silent_for(12.0) == 1.0
    core.stream_ended(None)
    core.stream_opened(20.0)                      # a new stream: its own start counts
    assert core.silent_for(21.0) == 1.0
