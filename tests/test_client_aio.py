"""The asyncio client (iommud_client.aio) against real daemons.

It mirrors a representative set of the synchronous suites (map, unmap and
translate; errors with their exact errno; device bind, attach and DMA; the
legacy container flow) and the keepalive tests, with the asyncio task in
place of the thread. A drift test holds the two clients to the same surface.
Each test runs its coroutine with asyncio.run (no plugin needed).
"""
from __future__ import annotations

import asyncio
import errno as E
import gc
import inspect
import time
from typing import TYPE_CHECKING, Any

import grpc
import pytest

import iommud_client.aio as aio
import iommud_client.client as sync
from iommud_client import DmaAccess, IommudError, StopReason
from iommud_client.aio import AsyncClient, AsyncSession
from iommud_client.client import (
    VFIO_DMA_UNMAP_FLAG_ALL,
    VFIO_GROUP_FLAGS_CONTAINER_SET,
    VFIO_GROUP_FLAGS_VIABLE,
    VFIO_TYPE1v2_IOMMU,
)
from iommud_wire import errnos, pb

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from support import DaemonProcess

    from iommud_client import KeepaliveStatus
    from iommud_client.aio import AsyncLeaseKeeper

WAIT = 15.0
LEASE = 1
MSI_START, MSI_LAST = 0xFEE00000, 0xFEEFFFFF
NVME, G_NVME = "0000:03:00.0", 12


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """One test's coroutine on a fresh loop, bounded."""
    return asyncio.run(asyncio.wait_for(coro, 90))


async def raises_errno(aw: Awaitable[object], errno_name: str) -> IommudError:
    """support.raises_errno for coroutines: exactly `errno_name`, number and all."""
    number = errnos.number_of(errno_name)
    assert number is not None, errno_name
    try:
        result = await aw
    except IommudError as exc:
        assert exc.errno_name == errno_name, f"expected {errno_name}, got {exc}"
        assert exc.errno == number
        return exc
    pytest.fail(f"expected {errno_name}, but the call returned {result!r}")


def keeper_of(s: AsyncSession) -> AsyncLeaseKeeper:
    assert s.lease_keeper is not None
    return s.lease_keeper


async def wait_for(s: AsyncSession, predicate: Callable[[KeepaliveStatus], bool]) -> None:
    keeper = keeper_of(s)
    assert await keeper.wait(predicate, WAIT), keeper.status()


def reaped_ids(d: DaemonProcess) -> set[str]:
    return {e["session"] for e in d.events("session.reaped")}


# -- IOAS map, unmap, translate ------------------------------------------------------------------

def test_map_translate_unmap(daemon) -> None:
    async def body() -> None:
        async with AsyncClient(daemon.endpoint) as c, await c.open_session("aio") as s, \
                await s.open_context() as ctx:
            ioas = await ctx.ioas_alloc()
            await ctx.ioas_map(ioas, 0x7F00_0000_0000, 0x20_0000, 0x10_0000, writeable=False)
            t = await ctx.translate(ioas, 0x10_0123)
            assert (t.pa, t.readable, t.writeable) == (0x7F00_0000_0123, True, False)
            iova = await ctx.ioas_map(ioas, user_va=0x4000_0000, length=0x20_0000)
            assert iova % 0x20_0000 == 0 and (await ctx.translate(ioas, iova)).pa == 0x4000_0000
            res = await ctx.translate_batch(ioas, [0x10_0000, iova + 8, 0x30_0000])
            assert list(res.pas) == [0x7F00_0000_0000, 0x4000_0008, 0] and res.mapped_count == 2
            iovas = await ctx.ioas_map_batch(ioas, [0x1000, 0x2000], [0x1000, 0x1000],
                                             [0x100_0000, 0x200_0000])
            assert list(iovas) == [0x100_0000, 0x200_0000]
            assert [(a.iova, a.length) for a in await ctx.list_areas(ioas)] == [
                (0x10_0000, 0x20_0000), (iova, 0x20_0000), (0x100_0000, 0x1000),
                (0x200_0000, 0x1000)]
            assert await ctx.ioas_unmap(ioas, 0x10_0000, 0x20_0000) == 0x20_0000
            assert await ctx.ioas_unmap_all(ioas) == 0x20_0000 + 0x2000
            assert await ctx.list_areas(ioas) == []
            assert (await s.info()).session.objects == 1
        assert not s.keepalive_alive
    run(body())


def test_errors_carry_the_exact_errno(daemon) -> None:
    async def body() -> None:
        async with AsyncClient(daemon.endpoint) as c:
            s = await c.open_session("aio-errors")
            ctx = await s.open_context()
            ioas = await ctx.ioas_alloc()
            await ctx.ioas_map(ioas, 0x5000_0000, 0x1000, 0x1000)
            err = await raises_errno(ctx.ioas_map(ioas, 0, 0x1000, 0x1000), "EEXIST")
            assert err.code is grpc.StatusCode.ALREADY_EXISTS
            err = await raises_errno(ctx.translate(ioas, 0x30_0000), "ENOENT")
            assert err.metadata["iova"] == "0x300000"
            await raises_errno(ctx.ioas_map(ioas, 0, 0x1000, 0x2000, flags=1 << 9), "EOPNOTSUPP")
            await raises_errno(s.context(99).ioas_alloc(), "EBADF")
            await raises_errno(c.call("OpenContext", pb.OpenContextRequest(), "not-a-token"),
                               "ESRCH")
            await raises_errno(ctx.destroy(0), "ENOENT")
            assert await s.close() == 1
            await raises_errno(s.keepalive(), "ESRCH")
            await raises_errno(ctx.ioas_alloc(), "ESRCH")
    run(body())


def test_echo_health_and_attach(daemon) -> None:
    async def body() -> None:
        async with AsyncClient(daemon.endpoint) as c, await c.open_session("owner") as s:
            assert await c.echo(b"\x00ping") == b"\x00ping"
            assert await c.health() == "SERVING"
            other = await c.attach_session(s.token, keepalive=False)
            assert other.session_id == s.session_id and other.lease_keeper is None
            await (await other.open_context()).ioas_alloc()
            assert (await s.info()).session.objects == 1
    run(body())


# -- devices: open, bind, attach, DMA -------------------------------------------------------------

@pytest.fixture(scope="module")
def dev_daemon(module_daemon_factory):
    return module_daemon_factory(name="aio-dev")


def test_device_bind_attach_and_dma(dev_daemon) -> None:
    async def body() -> None:
        async with AsyncClient(dev_daemon.endpoint) as c, await c.open_session("aio-dev") as s:
            devices = await s.list_devices()
            sizes: dict[int, int] = {}
            for d in devices:
                sizes[d.group] = sizes.get(d.group, 0) + 1
            name = sorted(d.name for d in devices
                          if d.driver == "vfio-pci" and sizes[d.group] == 1)[0]
            ctx = await s.open_context()
            async with await s.open_device(name) as dev:
                assert not (await dev.info()).bound
                dev_id = await dev.bind(ctx, cookie=0xC0FFEE)
                group = next(d.group for d in devices if d.name == name)
                g = await s.group(group)
                assert (g.owner, g.owner_cnt, g.domain) == (pb.GROUP_OWNER_IOMMUFD, 1, "blocking")
                assert (await dev.read(0x1000)).fault == pb.DMA_FAULT_REASON_BLOCKED
                await raises_errno(ctx.destroy(dev_id), "EBUSY")
                ioas = await ctx.ioas_alloc()
                hwpt = await dev.attach(ioas)
                objs = {o.id: o for o in await ctx.list_objects()}
                assert objs[hwpt].type == pb.OBJECT_TYPE_HWPT_PAGING and objs[hwpt].auto_domain
                ranges, align = await ctx.ioas_iova_ranges(ioas)
                assert align == 0x1000
                assert all(r.last < MSI_START or r.start > MSI_LAST for r in ranges)
                await ctx.ioas_map(ioas, user_va=0x8000_0000, length=0x4000, iova=0x10_0000)
                resp = await dev.dma([DmaAccess(0x10_0008, 8, True), DmaAccess(0x30_0000, 4)])
                assert [(r.ok, r.pa) for r in resp.results] == [(True, 0x8000_0008), (False, 0)]
                assert [(f.dev_id, f.cookie, f.iova) for f in resp.faults] == [
                    (dev_id, 0xC0FFEE, 0x30_0000)]
                await dev.detach()
                assert hwpt not in {o.id for o in await ctx.list_objects()}
            g = await s.group(group)
            assert (g.owner, g.owner_cnt, g.domain) == (pb.GROUP_OWNER_NONE, 0, "default")
            await raises_errno(s.open_device("0000:ff:1f.7"), "ENODEV")
    run(body())


# -- the legacy VFIO container ------------------------------------------------------------------

@pytest.fixture(scope="module")
def type1_daemon(module_daemon_factory):
    return module_daemon_factory("--dma-entry-limit", "4", name="aio-type1")


def test_legacy_type1_container_flow(type1_daemon) -> None:
    async def body() -> None:
        async with AsyncClient(type1_daemon.endpoint) as c, await c.open_session("qemu") as s:
            cont = await s.open_container()
            assert cont.container_fd == cont.iommufd
            assert await cont.get_api_version() == 0
            grp = await s.open_group(G_NVME)
            assert await grp.get_status() == VFIO_GROUP_FLAGS_VIABLE
            assert await cont.check_extension(VFIO_TYPE1v2_IOMMU) == 1
            await grp.set_container(cont)
            assert await grp.get_status() == (VFIO_GROUP_FLAGS_VIABLE
                                               | VFIO_GROUP_FLAGS_CONTAINER_SET)
            await cont.set_iommu(VFIO_TYPE1v2_IOMMU)
            assert (await cont.iommu_get_info()).dma_avail == 4
            dev = await grp.get_device_fd(NVME)
            assert (await dev.info()).bound
            await cont.map_dma(0x10_0000, 0x4000, 0x7F00_0000_0000)
            assert (await cont.iommu_get_info()).dma_avail == 3
            assert (await dev.write(0x10_1008, 8)).pa == 0x7F00_0000_1008
            ioas = await aio.vfio_ioas(cont, 0)
            assert await cont.vfio_ioas(0) == ioas
            for i in range(3):
                await cont.map_dma(0x100_0000 * (i + 1), 0x1000, 0x1000)
            await raises_errno(cont.map_dma(0x900_0000, 0x1000, 0x1000), "ENOSPC")
            resp = await cont.unmap_dma(0, 0, flags=VFIO_DMA_UNMAP_FLAG_ALL)
            assert resp.size == 0x4000 + 3 * 0x1000
            await dev.close()
            await grp.unset_container()
            await grp.close()
            g = await s.group(G_NVME)
            assert (g.owner, g.owner_cnt) == (pb.GROUP_OWNER_NONE, 0)
    run(body())


# -- the keepalive task -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def short(module_daemon_factory):
    return module_daemon_factory("--lease-seconds", str(LEASE), "--reap-interval", "0.1",
                                 "--debug-clock", "1", name="aio-short-lease")


def test_keepalive_task_outlives_several_leases_of_idleness(short) -> None:
    async def body() -> None:
        async with AsyncClient(short.endpoint) as c:
            kept = await c.open_session("kept")
            bare = await c.open_session("bare", keepalive=False)
            ctx = await kept.open_context()
            ioas = await ctx.ioas_alloc()
            iova = await ctx.ioas_map(ioas, user_va=0x7F00_0000_0000, length=0x20_0000)
            idle_from = time.monotonic()
            deadline = idle_from + WAIT
            while bare.session_id not in reaped_ids(short) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)                  # a bounded poll of the daemon's log
            assert bare.session_id in reaped_ids(short)
            await wait_for(kept, lambda st: st.last_heartbeat is not None
                           and st.last_heartbeat - idle_from > 3 * LEASE)
            assert kept.session_id not in reaped_ids(short)
            status = kept.keepalive_status()
            assert status is not None and status.connected and status.streams == 1
            assert (await ctx.translate(ioas, iova)).pa == 0x7F00_0000_0000
            await raises_errno(bare.keepalive(), "ESRCH")
            await kept.close()
    run(body())


def test_keepalive_task_holds_against_the_debug_clock_and_stops_on_close(short) -> None:
    async def body() -> None:
        async with AsyncClient(short.endpoint) as c:
            kept = await c.open_session("kept")
            bare = await c.open_session("bare", keepalive=False)
            await wait_for(kept, lambda st: st.connected)
            assert await kept.debug_advance_clock(3600) == 1
            await raises_errno(bare.keepalive(), "ESRCH")
            assert await kept.keepalive() == LEASE
            await kept.close()
            status = keeper_of(kept).status()
            assert not status.running and status.stop_reason is StopReason.CLOSED
    run(body())


def test_keepalive_task_stops_on_esrch(short) -> None:
    async def body() -> None:
        async with AsyncClient(short.endpoint) as c:
            s = await c.open_session("doomed")
            await wait_for(s, lambda st: st.connected)
            await c.call("CloseSession", pb.CloseSessionRequest(), s.token)
            await wait_for(s, lambda st: not st.running)
            assert keeper_of(s).status().stop_reason is StopReason.SESSION_GONE
            err = s.keepalive_error
            assert err is not None and err.errno == E.ESRCH and err.errno_name == "ESRCH"
    run(body())


def test_client_close_and_loop_end_stop_the_tasks(short) -> None:
    """AsyncClient.close() stops its sessions' tasks; a session still open
    when asyncio.run ends has its task cancelled with the loop. Both leave
    the daemon with no stream, so the debug clock reaps them."""
    keepers: dict[str, AsyncLeaseKeeper] = {}
    held: list[AsyncSession] = []         # held past the loop: its end, not GC, stops the task

    async def closed_client() -> None:
        c = AsyncClient(short.endpoint)
        s = await c.open_session("client-closed")
        await wait_for(s, lambda st: st.connected)
        await c.close()
        keepers[s.session_id] = keeper_of(s)

    async def abandoned() -> None:
        c = AsyncClient(short.endpoint)
        s = await c.open_session("abandoned")
        await wait_for(s, lambda st: st.connected)
        keepers[s.session_id] = keeper_of(s)
        held.append(s)

    run(closed_client())
    run(abandoned())
    reasons = {sid: k.status().stop_reason for sid, k in keepers.items()}
    assert sorted(reasons.values()) == [StopReason.CLIENT_CLOSED, StopReason.EXIT]
    assert not any(k.status().running for k in keepers.values())

    async def probe() -> None:
        async with AsyncClient(short.endpoint) as c, await c.open_session("probe") as p:
            await wait_for(p, lambda st: st.connected)
            await p.debug_advance_clock(3600)
    run(probe())
    assert set(keepers) <= reaped_ids(short)


def test_dropping_the_session_stops_its_task(short) -> None:
    async def body() -> None:
        async with AsyncClient(short.endpoint) as c:
            s = await c.open_session("dropped")
            keeper = keeper_of(s)
            assert await keeper.wait(lambda st: st.connected, WAIT)
            del s
            gc.collect()
            assert await keeper.wait(lambda st: not st.running, WAIT)
            assert keeper.status().stop_reason is StopReason.RELEASED
    run(body())


def test_keepalive_task_rides_out_a_journaled_restart(daemon_factory, tmp_path) -> None:
    flags = ("--journal", str(tmp_path / "journal.db"), "--lease-seconds", "2",
             "--reap-interval", "0.1")
    d = daemon_factory(*flags, name="aio-journaled")

    async def body() -> None:
        async with AsyncClient(d.endpoint) as c:
            s = await c.open_session("vmm")
            ctx = await s.open_context()
            ioas = await ctx.ioas_alloc()
            iova = await ctx.ioas_map(ioas, user_va=0x7F00_0000_0000, length=0x20_0000)
            await wait_for(s, lambda st: st.connected)
            streams = keeper_of(s).status().streams
            assert await asyncio.to_thread(d.stop) == 0
            await wait_for(s, lambda st: not st.connected and st.last_error is not None)
            d2 = await asyncio.to_thread(daemon_factory, *flags, name="aio-journaled",
                                         workdir=d.socket_path.parent)
            await wait_for(s, lambda st: st.connected and st.streams > streams)
            restarted = time.monotonic()
            await wait_for(s, lambda st: st.last_heartbeat is not None
                           and st.last_heartbeat - restarted > 2 * 2)
            assert s.session_id not in reaped_ids(d2)
            assert (await ctx.translate(ioas, iova)).pa == 0x7F00_0000_0000
            assert s.keepalive_alive
            await s.close()
    run(body())


# -- the two clients keep one surface ------------------------------------------------------------

PAIRS = [(sync.Client, aio.AsyncClient), (sync.Session, aio.AsyncSession),
         (sync.Context, aio.AsyncContext), (sync.Container, aio.AsyncContainer),
         (sync.DeviceFd, aio.AsyncDeviceFd), (sync.Group, aio.AsyncGroup),
         (sync.Access, aio.AsyncAccess)]
#: Methods that do no I/O (or return a stream): plain methods in both.
NOT_COROUTINES = {"context", "watch", "watch_host", "keepalive_status", "start_keepalive"}


def _public(cls: type) -> dict[str, Any]:
    return {n: inspect.getattr_static(cls, n) for n in dir(cls) if not n.startswith("_")}


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    """Parameters after self/h, as (name, kind, default)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    return [(p.name, p.kind, p.default) for p in params]


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=lambda c: c.__name__)
def test_the_async_class_mirrors_the_sync_one(sync_cls, async_cls) -> None:
    s_attrs, a_attrs = _public(sync_cls), _public(async_cls)
    assert set(s_attrs) == set(a_attrs)
    for name, s_attr in s_attrs.items():
        a_attr = a_attrs[name]
        if isinstance(s_attr, property):
            assert isinstance(a_attr, property), name
            continue
        if not callable(s_attr):
            continue
        assert _params(s_attr) == _params(a_attr), name
        assert bool(inspect.getdoc(a_attr)) >= bool(inspect.getdoc(s_attr)), name
        assert not inspect.iscoroutinefunction(s_attr), name
        assert inspect.iscoroutinefunction(a_attr) == (name not in NOT_COROUTINES), name
    has_with = hasattr(sync_cls, "__enter__")
    assert has_with == inspect.iscoroutinefunction(getattr(async_cls, "__aenter__", None))


def test_module_level_helpers_match() -> None:
    assert _params(sync.vfio_ioas) == _params(aio.vfio_ioas)
    assert inspect.iscoroutinefunction(aio.vfio_ioas)


def test_bound_operations_carry_their_class_names() -> None:
    assert sync.Context.ioas_map.__qualname__ == "Context.ioas_map"
    assert aio.AsyncDeviceFd.attach.__qualname__ == "AsyncDeviceFd.attach"
    assert "IOMMU_IOAS_MAP" in (aio.AsyncContext.ioas_map.__doc__ or "")
