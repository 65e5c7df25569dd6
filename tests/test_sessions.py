"""Sessions and contexts: isolation between sessions, fd numbering, context
and session teardown, lease reaping, WatchSession keeping a session alive,
and the per-RPC log event."""
from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

import grpc
import pytest
from support import raises_errno

from iommud_wire import pb

if TYPE_CHECKING:
    from collections.abc import Callable


def poll(fn: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Re-evaluate `fn` until it holds or `timeout` passes (a bounded poll on
    daemon state, not a sleep standing in for synchronisation).

    The watch test uses it to see the daemon take a stream's cancel, which it
    does on its own time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    return fn()


def test_context_fds_start_at_3_and_are_lowest_free(session) -> None:
    fds = [session.open_context().iommufd for _ in range(3)]
    assert fds == [3, 4, 5]
    session.context(4).close()
    assert session.open_context().iommufd == 4


def test_sessions_cannot_see_each_other(client) -> None:
    with client.open_session("a") as a, client.open_session("b") as b:
        ca = a.open_context()
        ioas = ca.ioas_alloc()
        ca.ioas_map(ioas, 0x1000, 0x1000, 0x1000)
        # b has no fd 3 yet: the same answer as a never-opened fd.
        foreign = b.context(ca.iommufd)
        raises_errno(lambda: foreign.ioas_alloc(), "EBADF")
        raises_errno(lambda: foreign.translate(ioas, 0x1000), "EBADF")
        raises_errno(lambda: b.context(99).ioas_alloc(), "EBADF")
        # b's own fd 3 is its own context: a's IOAS id is ENOENT there.
        cb = b.open_context()
        assert cb.iommufd == ca.iommufd
        raises_errno(lambda: cb.translate(ioas, 0x1000), "ENOENT")
        raises_errno(lambda: cb.destroy(ioas), "ENOENT")
        assert cb.ioas_alloc() == 1 and cb.list_areas(1) == []
        assert ca.translate(ioas, 0x1000).pa == 0x1000
        assert b.info().session.areas == 0 and a.info().session.areas == 1


def test_missing_or_bogus_token_is_esrch(client) -> None:
    for token in (None, "not-a-token"):
        err = raises_errno(lambda t=token: client.call("OpenContext", pb.OpenContextRequest(), t),
                           "ESRCH")
        assert err.code is grpc.StatusCode.UNAUTHENTICATED


def test_echo_returns_its_payload_and_checks_a_token_if_sent(client, session) -> None:
    before = client.info().daemon
    assert client.echo(b"\x00ping" * 100) == b"\x00ping" * 100
    assert client.echo(b"x", token=session.token) == b"x"
    raises_errno(lambda: client.echo(b"x", token="not-a-token"), "ESRCH")
    assert client.info().daemon == before


def test_closed_session_token_is_dead(client) -> None:
    s = client.open_session()
    s.close()
    raises_errno(s.open_context, "ESRCH")
    raises_errno(s.keepalive, "ESRCH")


def test_closing_a_context_leaves_nothing(client, session) -> None:
    before = client.info().daemon
    ctx = session.open_context()
    for _ in range(3):
        i = ctx.ioas_alloc()
        ctx.ioas_map(i, 0, 0x2000, 0x1000)
    assert session.info().session.objects == 3
    assert ctx.close() == 3
    after = client.info().daemon
    assert (after.contexts, after.objects, after.areas, after.mapped_bytes) == (
        before.contexts, before.objects, before.areas, before.mapped_bytes)
    raises_errno(ctx.list_objects, "EBADF")


def test_closing_a_session_closes_its_contexts(client) -> None:
    s = client.open_session()
    for _ in range(2):
        s.open_context().ioas_alloc()
    before = client.info().daemon
    assert s.close() == 2
    after = client.info().daemon
    assert after.sessions == before.sessions - 1
    assert after.objects == before.objects - 2 and after.contexts == before.contexts - 2


@pytest.fixture(scope="module")
def short_lease(module_daemon_factory):
    """Leases of 30 s that the debug clock ages at will (DebugAdvanceClock):
    the reaper's decisions without waiting for them."""
    return module_daemon_factory("--lease-seconds", "30", "--debug-clock", "1", name="lease")


def advance(c, seconds: float) -> int:
    """Age every lease by `seconds` and reap at once; how many were reaped.
    The caller's own session is opened for the call and left open."""
    admin = c.open_session("clock", lease_seconds=3600, keepalive=False)
    reaped = 0
    try:
        while seconds > 0:                # steps shorter than the caller's own lease
            step = min(seconds, 1800)
            reaped += c.call("DebugAdvanceClock", pb.DebugAdvanceClockRequest(seconds=step),
                             admin.token).reaped
            seconds -= step
    finally:
        admin.close()
    return reaped


def test_expired_session_is_reaped_and_leaves_nothing(short_lease) -> None:
    with short_lease.client() as c:
        s = c.open_session("forgetful", keepalive=False)   # the lease is left to run out
        assert s.lease_seconds == 30
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        ctx.ioas_map(ioas, 0, 0x1000, 0x1000)
        assert advance(c, 29) == 0
        assert c.info().daemon.sessions == 1            # asked without its token: no renewal
        assert advance(c, 2) == 1                       # 31 s without a call
        d = c.info().daemon
        assert (d.sessions, d.contexts, d.objects, d.areas) == (0, 0, 0, 0)
        raises_errno(s.keepalive, "ESRCH")
        reaped = short_lease.events("session.reaped")
        assert reaped and reaped[-1]["session"] == s.session_id


def test_watch_stream_keeps_session_alive_then_lease_runs(short_lease) -> None:
    with short_lease.client() as c:
        s = c.open_session("watcher", keepalive=False)     # only this stream holds it
        s.open_context().ioas_alloc()
        stream = s.watch(interval_ms=100)
        assert next(stream).sequence == 1                   # the stream is open
        assert advance(c, 3600) == 0                        # hours of lease, held by it
        assert s.info().session.objects == 1
        stream.cancel()
        # The daemon sees the cancel on its own time: age leases until it has.
        assert poll(lambda: advance(c, 31) == 1)
        raises_errno(s.keepalive, "ESRCH")


def test_calls_renew_the_lease(short_lease) -> None:
    with short_lease.client() as c:
        s = c.open_session(keepalive=False)    # only the calls below renew it
        for _ in range(5):                     # 100 s in all: more than three leases
            assert advance(c, 20) == 0
            assert s.keepalive() == 30
        assert s.open_context().iommufd == 3
        s.close()


def test_one_log_event_per_rpc(daemon_factory) -> None:
    # Per-call events are debug-level: cheap when the level is off.
    d = daemon_factory("--log-level", "debug")
    with d.client() as c, c.open_session("logged") as s:
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        raises_errno(lambda: ctx.ioas_map(ioas, 0, 0x1000, 0x1000, flags=1 << 9), "EOPNOTSUPP")
        sid = s.session_id
    d.stop()
    events = d.events()
    rpcs = [e for e in events if e.get("event") == "rpc" and e.get("session") == sid]
    assert [e["method"] for e in rpcs] == ["OpenContext", "IoasAlloc", "IoasMap", "CloseSession"]
    failed = rpcs[2]
    assert failed["status"] == "EOPNOTSUPP" and failed["ioas_id"] == str(ioas)
    assert failed["iova"] == "0x1000" and failed["flags"] == str(1 << 9)
    assert all(isinstance(e["duration_ms"], float) and e["status"] for e in rpcs)
    assert all(token_free(e, s.token) for e in events)


def token_free(event: dict, token: str) -> bool:
    return token not in json.dumps(event)


def test_at_info_level_only_failed_calls_are_logged(daemon_factory) -> None:
    """The dispatcher builds a call's event only when it is kept: at the
    default level a success writes nothing, a refusal one event with the
    caller's uid and pid."""
    d = daemon_factory()
    with d.client() as c, c.open_session("quiet") as s:
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        raises_errno(lambda: ctx.ioas_map(ioas, 0, 0x1000, 0x1000, flags=1 << 9), "EOPNOTSUPP")
        sid = s.session_id
    d.stop()
    rpcs = [e for e in d.events() if e.get("event") == "rpc" and e.get("session") == sid]
    assert [(e["method"], e["status"]) for e in rpcs] == [("IoasMap", "EOPNOTSUPP")]
    assert rpcs[0]["uid"] == os.geteuid() and rpcs[0]["pid"] == os.getpid()
