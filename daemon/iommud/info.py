"""Introspection: Echo, GetInfo (the daemon's version, limits, object counts
and memory) and AdminListSessions (the admin view of who holds what). Not in
the kernel's uAPI; it reads every object type, so it sits above all of their
modules.

Counting walks every session's fds, contexts and objects. With a thousand
sessions that is milliseconds of Python, so the walks are generators that a
driver runs in slices of at most SLICE_SECONDS, yielding the event loop in
between: other clients are served while a GetInfo or a metrics scrape
counts. Each object is read whole (its areas and bytes in one native call);
a call that lands between two slices is counted or not, as if it came just
after or just before the walk.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

from iommud import __version__, _core
from iommud.context import IommufdContext
from iommud.device import DeviceFd, DeviceObj
from iommud.hw_pagetable import HwptPaging
from iommud.ioas import Ioas
from iommud.vfio_group import GroupFd
from iommud_wire import pb

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from iommud.call import Call, Runtime
    from iommud.session import Session

#: The longest a walk holds the event loop before it lets others run.
SLICE_SECONDS = 0.002
#: Objects counted between two looks at the clock.
OBJECTS_PER_STEP = 1024

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """The daemon's resident set size (/proc/self/statm), 0 where unreadable."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


async def drive(steps: Iterator[None]) -> None:
    """Run a walk, yielding the loop whenever a slice is used up."""
    started = time.perf_counter()
    for _ in steps:
        if time.perf_counter() - started > SLICE_SECONDS:
            await asyncio.sleep(0)
            started = time.perf_counter()


def _contexts(sess: Session) -> list[tuple[int, IommufdContext]]:
    """(fd, context) of every context the session holds: its iommufds, and
    (fd -1) those its bound device fds and legacy group fds keep alive."""
    out: dict[int, tuple[int, IommufdContext]] = {}
    for fd, entry in sess.fds():
        if isinstance(entry, IommufdContext):
            out[id(entry)] = (fd, entry)
    for _fd, entry in sess.fds():
        ctx = None
        if isinstance(entry, DeviceFd) and entry.bound is not None:
            ctx = entry.bound.ctx
        elif isinstance(entry, GroupFd):
            ctx = entry.ctx
        if ctx is not None and id(ctx) not in out:
            out[id(ctx)] = (-1, ctx)
    return list(out.values())


def _count_session(sess: Session, counts: pb.ObjectCounts, seen: set[int]) -> Iterator[None]:
    """Add one session to `counts` (contexts already in `seen` once only)."""
    if sess.closed:
        return
    counts.sessions += 1
    counts.memory_bytes += sess.account.memory_bytes
    counts.device_fds += sum(1 for _fd, entry in sess.fds() if isinstance(entry, DeviceFd))
    for _fd, ctx in _contexts(sess):
        if id(ctx) in seen:
            continue
        seen.add(id(ctx))
        counts.contexts += 1
        for n, obj in enumerate(ctx.object_list(), 1):
            counts.objects += 1
            if isinstance(obj, Ioas):
                counts.ioas += 1
                counts.areas += obj.num_areas
                counts.mapped_bytes += obj.mapped_bytes
            elif isinstance(obj, HwptPaging):
                counts.hwpts += 1
            elif isinstance(obj, DeviceObj):
                counts.devices += 1
            if n % OBJECTS_PER_STEP == 0:
                yield
    yield


def _count(sessions: Iterable[Session], counts: pb.ObjectCounts) -> Iterator[None]:
    seen: set[int] = set()
    for sess in sessions:
        yield from _count_session(sess, counts, seen)


async def counts(sessions: Iterable[Session]) -> pb.ObjectCounts:
    """The object counts and memory of `sessions`, the loop yielded between
    slices."""
    out = pb.ObjectCounts()
    await drive(_count(list(sessions), out))
    return out


def echo(call: Call, req: pb.EchoRequest) -> pb.EchoResponse:
    return pb.EchoResponse(payload=req.payload)


def limits(rt: Runtime) -> pb.Limits:
    cfg = rt.config
    return pb.Limits(
        max_contexts_per_session=cfg.max_contexts_per_session,
        max_objects_per_context=cfg.max_objects_per_context,
        max_translate_batch=cfg.max_translate_batch,
        max_message_bytes=cfg.max_message_bytes,
        lease_seconds_default=cfg.lease_seconds,
        lease_seconds_max=cfg.lease_max_seconds,
        max_fds_per_session=cfg.max_fds_per_session,
        max_areas_per_ioas=cfg.max_areas_per_ioas,
        max_mapped_bytes_per_session=cfg.max_mapped_bytes_per_session,
        max_sessions=cfg.max_sessions,
        dma_entry_limit=cfg.dma_entry_limit,
        max_memory_bytes_per_session=cfg.max_memory_bytes_per_session)


async def get_info(call: Call, req: pb.GetInfoRequest) -> pb.GetInfoResponse:
    cfg = call.rt.config
    resp = pb.GetInfoResponse(
        version=__version__, core_version=_core.__version__, page_size=_core.PAGE_SIZE,
        limits=limits(call.rt), group_stage=cfg.group_stage,
        topology_source=call.rt.host.topology.source)
    resp.daemon.CopyFrom(await counts(call.rt.sessions))
    if call.session is not None:
        resp.session.CopyFrom(await counts([call.session]))
        resp.session_id = call.session.session_id
    resp.rss_bytes = rss_bytes()
    return resp


# -- the admin view ---------------------------------------------------------------------------

def _owners(rt: Runtime) -> dict[int, list[int]]:
    """Groups by the id() of the context owning their DMA."""
    out: dict[int, list[int]] = {}
    for state in rt.host.groups.values():
        if state.owner is not None:
            out.setdefault(id(state.owner), []).append(state.group)
    return out


def _describe(sess: Session, owners: dict[int, list[int]], now: float,
              out: list[pb.AdminSession]) -> Iterator[None]:
    if sess.closed:
        return
    entry = pb.AdminSession(
        session_id=sess.session_id, client_name=sess.client_name, identity=sess.identity,
        mapped_bytes=sess.account.mapped_bytes, memory_bytes=sess.account.memory_bytes,
        lease_seconds=sess.lease_seconds, watch_streams=sess.streams,
        lease_remaining_seconds=max(0.0, sess.lease_seconds - (now - sess.last_seen)))
    if sess.opener_uid is not None:
        entry.uid = sess.opener_uid
    if sess.opener_pid is not None:
        entry.pid = sess.opener_pid
    groups: set[int] = set()
    devices: set[str] = set()
    for _fd, fd_entry in sess.fds():
        entry.fds += 1
        if isinstance(fd_entry, DeviceFd):
            devices.add(fd_entry.host_dev.name)
        elif isinstance(fd_entry, GroupFd):
            groups.add(fd_entry.group)
    for fd, ctx in _contexts(sess):
        groups.update(owners.get(id(ctx), ()))
        view = entry.contexts.add(iommufd=fd)
        for n, obj in enumerate(ctx.object_list(), 1):
            view.objects += 1
            if isinstance(obj, Ioas):
                view.areas += obj.num_areas
                view.mapped_bytes += obj.mapped_bytes
            elif isinstance(obj, DeviceObj):
                devices.add(obj.host_dev.name)
            if n % OBJECTS_PER_STEP == 0:
                yield
    entry.groups.extend(sorted(groups))
    entry.devices.extend(sorted(devices))
    out.append(entry)
    yield


def _describe_all(sessions: list[Session], rt: Runtime, out: list[pb.AdminSession]
                  ) -> Iterator[None]:
    owners = _owners(rt)
    now = rt.sessions.clock.now()
    for sess in sessions:
        yield from _describe(sess, owners, now, out)


async def admin_list_sessions(call: Call, req: pb.AdminListSessionsRequest
                              ) -> pb.AdminListSessionsResponse:
    """Who holds what: every live session, its opener, contexts, groups,
    devices, memory and lease (admin only; the access policy checked it)."""
    out: list[pb.AdminSession] = []
    await drive(_describe_all(list(call.rt.sessions), call.rt, out))
    out.sort(key=lambda s: s.session_id)
    return pb.AdminListSessionsResponse(sessions=out)
