"""The admin view (AdminListSessions, `iommuctl admin ...`) and the memory
GetInfo reports: against real daemons, through the client and the CLI."""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time

import pytest
from click.testing import CliRunner
from support import raises_errno

from iommuctl.cli import cli
from iommud.access import AccessPolicy, Caller
from iommud.call import Runtime
from iommud.config import Config
from iommud.dispatch import Dispatcher
from iommud.host import Host
from iommud.ops import TABLE
from iommud.server import load_topology
from iommud.session import SessionRegistry
from iommud_client import Client
from iommud_client.aio import AsyncClient
from iommud_wire import pb

RW = 4 | 2
PAGE = 4096


def vfio_singleton(s) -> str:
    """A vfio-pci device alone in its group, from the default topology."""
    devices = s.list_devices()
    per_group: dict[int, int] = {}
    for d in devices:
        per_group[d.group] = per_group.get(d.group, 0) + 1
    return sorted(d.name for d in devices if d.driver == "vfio-pci" and per_group[d.group] == 1)[0]


def statm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def private(daemon_factory):
    """A daemon of this test's own, so that daemon-wide figures are exact."""
    return daemon_factory(name="admin")


# -- GetInfo: memory ---------------------------------------------------------------------------

def test_get_info_reports_memory_and_its_limit(daemon_factory) -> None:
    d = daemon_factory("--max-memory-bytes-per-session", str(64 << 20), name="mem")
    with d.client() as c, c.open_session("vmm") as s:
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        before = s.info()
        assert before.limits.max_memory_bytes_per_session == 64 << 20
        assert before.session.memory_bytes > 0          # one context, one IOAS
        assert before.daemon.memory_bytes == before.session.memory_bytes
        # The daemon's RSS, from its own /proc/self/statm: the same figure
        # this process reads for it, give or take what moved in between.
        rss = statm_rss(d.proc.pid)
        assert 0.5 * rss < before.rss_bytes < 2 * rss

        iovas = [ctx.ioas_map(ioas, user_va=0x7F00_0000_0000 + k * 2 * PAGE, length=PAGE)
                 for k in range(256)]
        mapped = s.info()
        assert mapped.session.memory_bytes > before.session.memory_bytes
        assert mapped.daemon.memory_bytes == mapped.session.memory_bytes
        assert mapped.session.areas == 256 and mapped.session.mapped_bytes == 256 * PAGE

        # A second session's memory adds to the daemon's, not to this one's.
        with c.open_session("other") as other:
            other.open_context().ioas_alloc()
            both = s.info()
            assert both.session.memory_bytes == mapped.session.memory_bytes
            assert both.daemon.memory_bytes == (mapped.session.memory_bytes
                                                + other.info().session.memory_bytes)
        for iova in iovas:
            ctx.ioas_unmap(ioas, iova, PAGE)
        # The count follows the core's heap, which keeps some leaf capacity.
        assert s.info().session.memory_bytes <= mapped.session.memory_bytes


def test_get_info_without_a_session_counts_the_daemon(private) -> None:
    with private.client() as c, c.open_session("vmm") as s:
        ctx = s.open_context()
        ctx.ioas_map(ctx.ioas_alloc(), user_va=0x1000, length=0x200000)
        anon = c.info()
        assert not anon.HasField("session") and anon.session_id == ""
        assert anon.daemon.memory_bytes == s.info().session.memory_bytes > 0
        assert anon.daemon.mapped_bytes == 0x200000 and anon.rss_bytes > 0


def test_get_info_yields_the_loop_with_a_thousand_sessions() -> None:
    """GetInfo walks every session in slices: with 1,000 sessions, each with a
    context, an IOAS and mappings, no slice keeps the loop (its thread's CPU
    time, which other processes cannot inflate) for 10 ms, and other
    coroutines run in between."""
    cfg = Config()
    host = Host(load_topology("default"))
    rt = Runtime(config=cfg, host=host, access=AccessPolicy(),
                 sessions=SessionRegistry(30, 60, 2000, cfg.limits(), host))
    dispatcher = Dispatcher(rt)
    caller = Caller(uid=0, gid=0, pid=1)

    async def scenario() -> tuple[pb.GetInfoResponse, float, int]:
        for i in range(1000):
            token = (await dispatcher.call(TABLE["OpenSession"],
                                           pb.OpenSessionRequest(client_name=f"s{i}"), caller,
                                           None)).token
            fd = (await dispatcher.call(TABLE["OpenContext"], pb.OpenContextRequest(), caller,
                                        token)).iommufd
            ioas = (await dispatcher.call(TABLE["IoasAlloc"], pb.IoasAllocRequest(iommufd=fd),
                                          caller, token)).out_ioas_id
            for k in range(4):
                await dispatcher.call(TABLE["IoasMap"], pb.IoasMapRequest(
                    iommufd=fd, ioas_id=ioas, flags=RW | 1, user_va=k * PAGE, length=PAGE,
                    iova=0x100000 + 2 * k * PAGE), caller, token)
        slices: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.thread_time()
            while not done.is_set():
                await asyncio.sleep(0)
                now = time.thread_time()
                slices.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        reply = await dispatcher.call(TABLE["GetInfo"], pb.GetInfoRequest(), caller, None)
        done.set()
        await task
        return reply, max(slices), len(slices)

    # Quiet (a thousand session.open events), and without the cyclic
    # collector, whose pauses are not the walk's to answer for.
    logging.disable(logging.INFO)
    gc.disable()
    try:
        reply, longest, ticks = asyncio.run(scenario())
    finally:
        gc.enable()
        logging.disable(logging.NOTSET)
    assert reply.daemon.sessions == 1000 and reply.daemon.areas == 4000
    assert ticks > 2                    # the walk let the ticker run in between
    assert longest < 0.010, f"a slice kept the loop {longest * 1e3:.1f} ms"


# -- the admin view ------------------------------------------------------------------------------

def test_admin_view_shows_who_holds_what(private) -> None:
    with private.client() as c:
        with c.open_session("vmm-a", keepalive=False) as a, \
                c.open_session("vmm-b", keepalive=False) as b:
            check_holdings(c, a, b)
        assert c.admin_sessions() == []


def check_holdings(c: Client, a, b) -> None:
    """Session a holds a context, a mapping and a bound, attached device;
    session b an empty context."""
    ctx = a.open_context()
    ioas = ctx.ioas_alloc()
    ctx.ioas_map(ioas, user_va=0x7F00_0000_0000, length=0x200000)
    name = vfio_singleton(a)
    group = {d.name: d.group for d in a.list_devices()}[name]
    dev = a.open_device(name)
    dev.bind(ctx)
    dev.attach(ioas)
    b.open_context()
    watch = a.watch(interval_ms=60_000)
    next(watch)                                     # the stream is open once it answers

    view = {s.session_id: s for s in c.admin_sessions()}
    assert set(view) == {a.session_id, b.session_id}
    va, vb = view[a.session_id], view[b.session_id]
    assert (va.client_name, va.identity) == ("vmm-a", f"uid:{os.getuid()}")
    assert va.uid == os.getuid() and va.pid == os.getpid()
    assert list(va.devices) == [name] and list(va.groups) == [group]
    assert [(x.iommufd, x.areas, x.mapped_bytes) for x in va.contexts] == [
        (ctx.iommufd, 1, 0x200000)]
    assert va.contexts[0].objects == len(ctx.list_objects())
    assert va.mapped_bytes == 0x200000 == a.info().session.mapped_bytes
    assert va.memory_bytes == a.info().session.memory_bytes
    assert va.fds == 2 and va.lease_seconds == a.lease_seconds
    assert (va.watch_streams, vb.watch_streams) == (1, 0)
    assert 0 < va.lease_remaining_seconds <= a.lease_seconds
    watch.cancel()
    assert (len(vb.contexts), list(vb.devices), list(vb.groups), vb.mapped_bytes) == (
        1, [], [], 0)
    # Never a token.
    raw = pb.AdminListSessionsResponse(sessions=view.values()).SerializeToString()
    assert a.token.encode() not in raw and b.token.encode() not in raw

    # Closing the device fd gives the group and the device back.
    dev.close()
    again = {s.session_id: s for s in c.admin_sessions()}[a.session_id]
    assert list(again.devices) == [] and list(again.groups) == []


def test_admin_view_needs_no_session_and_opens_none(private) -> None:
    with private.client() as c:
        assert c.admin_sessions() == []
        assert c.info().daemon.sessions == 0


def test_admin_view_is_admin_only(daemon_factory) -> None:
    d = daemon_factory("--admin-uids", "4242", name="notadmin")
    with d.client() as c, c.open_session("vmm") as s:
        err = raises_errno(c.admin_sessions, "EPERM")
        assert err.metadata["uid"] == str(os.getuid())
        # The same with a session's token: being a client is not being an admin.
        raises_errno(lambda: s.call("AdminListSessions", pb.AdminListSessionsRequest()), "EPERM")
        refusal = [e for e in d.events("rpc") if e.get("method") == "AdminListSessions"]
        assert refusal and refusal[-1]["status"] == "EPERM"
        assert refusal[-1]["uid"] == os.getuid() and refusal[-1]["pid"] == os.getpid()
        assert refusal[-1]["identity"] == f"uid:{os.getuid()}"


def test_admin_view_through_the_asyncio_client(private) -> None:
    async def scenario() -> tuple[list[pb.AdminSession], str]:
        async with AsyncClient(private.endpoint) as ac, await ac.open_session("aio") as s:
            return await ac.admin_sessions(), s.session_id

    sessions, sid = asyncio.run(scenario())
    assert [(x.session_id, x.client_name) for x in sessions] == [(sid, "aio")]


# -- iommuctl admin -------------------------------------------------------------------------------

def _invoke(endpoint: str, tmp_path, *args: str):
    env = {"IOMMUD_ENDPOINT": endpoint, "IOMMUCTL_STATE_DIR": str(tmp_path / "state"),
           "IOMMUD_SESSION": None, "IOMMUD_IOMMUFD": None}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_iommuctl_admin_sessions(private, tmp_path) -> None:
    with Client(private.endpoint) as c, c.open_session("vmm-a") as s:
        ctx = s.open_context()
        ctx.ioas_map(ctx.ioas_alloc(), user_va=0x1000, length=0x200000)
        out = _invoke(private.endpoint, tmp_path, "-o", "json", "admin", "sessions")
        assert out.exit_code == 0, out.output
        rows = json.loads(out.output)
        # The CLI opened no session of its own to ask.
        assert [r["session_id"] for r in rows] == [s.session_id]
        row = rows[0]
        assert (row["client_name"], row["pid"], row["mapped_bytes"]) == (
            "vmm-a", os.getpid(), 0x200000)
        assert row["contexts"] == [{"iommufd": ctx.iommufd, "objects": 1, "areas": 1,
                                    "mapped_bytes": 0x200000}]
        assert row["memory_bytes"] == s.info().session.memory_bytes

        table = _invoke(private.endpoint, tmp_path, "admin", "sessions")
        assert table.exit_code == 0
        header, line = table.output.splitlines()
        assert header.split()[:4] == ["SESSION", "NAME", "IDENTITY", "PID"]
        assert line.split()[:4] == [s.session_id, "vmm-a", f"uid:{os.getuid()}", str(os.getpid())]
        assert "2M" in line.split()

        one = _invoke(private.endpoint, tmp_path, "admin", "session", s.session_id)
        assert one.exit_code == 0
        assert f"session_id: {s.session_id}" in one.output
        assert "client_name: vmm-a" in one.output
        missing = _invoke(private.endpoint, tmp_path, "admin", "session", "s-000000000000")
        assert missing.exit_code == 1 and "no live session" in missing.stderr
    assert not (tmp_path / "state").exists()


def test_iommuctl_admin_refused_names_eperm(daemon_factory, tmp_path) -> None:
    d = daemon_factory("--admin-uids", "4242", name="cli-notadmin")
    out = _invoke(d.endpoint, tmp_path, "admin", "sessions")
    assert out.exit_code == 1
    assert out.stderr.startswith("iommuctl: EPERM: AdminListSessions")
