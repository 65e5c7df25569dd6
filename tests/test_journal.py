"""The durable journal: kill -9 the daemon and get back exactly what it had
acknowledged: sessions (reachable by their old tokens), contexts, bindings,
attachments, mappings, group claims, containers and host driver changes."""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
from support import DaemonFactory, raises_errno

from iommud.journal import Journal, JournalMismatch
from iommud_client import Client, IommudError
from iommud_client.client import Container, DeviceFd, Group, VFIO_TYPE1v2_IOMMU
from iommud_wire import pb

if TYPE_CHECKING:
    import pathlib

NVME, BRIDGE_A, BRIDGE_B, GPU = "0000:03:00.0", "0000:05:00.0", "0000:05:00.1", "0000:0a:00.0"
G_NVME2 = 13
MAPPINGS = 10_000


def snapshot(sess, ctx_fds: list[int], dev_fds: list[tuple[int, str]]) -> dict:
    """Everything a client can observe of its session's objects and of the host."""
    out: dict = {"counts": str(sess.info().session)}
    for fd in ctx_fds:
        ctx = sess.context(fd)
        objs = ctx.list_objects()
        out[f"ctx{fd}"] = [str(o) for o in objs]
        for o in objs:
            if o.type == pb.OBJECT_TYPE_IOAS:
                out[f"ctx{fd}.ioas{o.id}"] = [str(a).replace("\n", " ")
                                             for a in ctx.list_areas(o.id)]
    for fd, name in dev_fds:
        out[f"dev{fd}"] = str(DeviceFd(sess, fd, name).info())
    out["groups"] = [str(g) for g in sess.list_groups()]
    out["devices"] = [str(d) for d in sess.list_devices()]
    return out


def kill9(daemon) -> None:
    os.kill(daemon.proc.pid, signal.SIGKILL)
    assert daemon.proc.wait(10) == -signal.SIGKILL


def recovered_rows(daemon) -> int:
    recovered = daemon.events("journal.recovered")
    assert recovered, "no journal.recovered event"
    return recovered[0]["rows"]


def test_kill9_brings_back_every_acknowledged_object(tmp_path: pathlib.Path,
                                                     daemon_factory) -> None:
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    v = _populate(d)
    v.c.close()
    kill9(d)
    _check_recovered(daemon_factory, db, v)


def _both(sa, sb, ctx, dev, bridge, cont, grp) -> tuple[dict, dict]:
    a = snapshot(sa, [ctx.iommufd], [(dev.device_fd, NVME), (bridge.device_fd, BRIDGE_A)])
    b = snapshot(sb, [], [])
    b["container"] = str(Container(sb, cont.container_fd).iommu_get_info())
    b["group"] = Group(sb, grp.group_fd, G_NVME2).get_status()
    return a, b


def _populate(d) -> SimpleNamespace:
    """Two VMs' worth of state, and what a client sees of it."""
    c = d.client()
    s = c.open_session("vm-1", lease_seconds=120)
    ctx = s.open_context()
    ioas = ctx.ioas_alloc()
    for i in range(MAPPINGS):
        ctx.ioas_map(ioas, 0x7F00_0000_0000 + i * 0x2000, 0x1000, iova=0x1_0000_0000 + i * 0x2000)
    allocated = ctx.ioas_map(ioas, 0x7E00_0000_0000, 0x10000)   # an allocated IOVA
    dev = s.open_device(NVME)
    dev_id = dev.bind(ctx, cookie=0xC00C1E)
    hwpt = ctx.hwpt_alloc(dev_id, ioas)
    dev.attach(hwpt)
    bridge = s.open_device(BRIDGE_A)
    bridge_id = bridge.bind(ctx)
    bridge.attach(ioas)
    # A second session with a type1 container, and a host driver change.
    s2 = c.open_session("vm-2", lease_seconds=120)
    cont = s2.open_container()
    grp = s2.open_group(G_NVME2)
    grp.set_container(cont)
    cont.set_iommu(VFIO_TYPE1v2_IOMMU)
    cont.map_dma(0x10_0000, 0x4000, 0x7F00_0000_0000)
    s2.unbind_host_driver(GPU)
    # A closed session leaves nothing behind, in memory or in the journal.
    with c.open_session("short") as s3:
        s3.open_context().ioas_alloc()
    # An operation that failed was never acknowledged and is not journaled.
    raises_errno(lambda: ctx.ioas_map(ioas, 0x1000, 0x1000, iova=0x1_0000_0000), "EEXIST")
    before = _both(s, s2, ctx, dev, bridge, cont, grp)
    return SimpleNamespace(**locals())


def _check_recovered(daemon_factory: DaemonFactory, db: pathlib.Path,
                     v: SimpleNamespace) -> None:
    s, s2, ctx, ioas, dev, bridge = v.s, v.s2, v.ctx, v.ioas, v.dev, v.bridge
    d2 = daemon_factory("--journal", str(db), name="b")
    with d2.client() as c2:
        again = c2.attach_session(s.token)
        again2 = c2.attach_session(s2.token)
        assert _both(again, again2, ctx, dev, bridge, v.cont, v.grp) == v.before
        assert recovered_rows(d2) > MAPPINGS
        ctx2 = again.context(ctx.iommufd)
        assert ctx2.translate(ioas, 0x1_0000_0000 + 17 * 0x2000 + 5).pa == \
            0x7F00_0000_0000 + 17 * 0x2000 + 5
        assert ctx2.translate(ioas, v.allocated).pa == 0x7E00_0000_0000
        # Bindings and attachments: DMA from the devices translates again.
        nvme, bridged = DeviceFd(again, dev.device_fd, NVME), DeviceFd(again, bridge.device_fd,
                                                                       BRIDGE_A)
        assert nvme.write(0x1_0000_0000, 4).pa == 0x7F00_0000_0000
        assert bridged.read(0x1_0000_2000, 4).pa == 0x7F00_0000_2000
        assert DeviceFd(again, dev.device_fd, NVME).info().dev_id == v.dev_id
        assert v.bridge_id != v.dev_id
        # Group claims: the bridge's sibling cannot be taken by another session.
        other = c2.open_session("intruder")
        sib = other.open_device(BRIDGE_B)
        raises_errno(lambda: sib.bind(other.open_context()), "EPERM")
        raises_errno(lambda: other.open_group(G_NVME2), "EBUSY")   # still open in vm-2
        # The recovered state keeps going, and is journaled in its turn.
        ctx2.ioas_unmap_all(ioas)
        other.close()
    d2.stop()
    d3 = daemon_factory("--journal", str(db), name="c")
    with d3.client() as c3:
        back = c3.attach_session(s.token)
        assert back.context(ctx.iommufd).list_areas(ioas) == []
        raises_errno(lambda: c3.attach_session("no-such-token").info(), "ESRCH")


def test_closed_sessions_leave_only_host_rows(tmp_path: pathlib.Path, daemon_factory) -> None:
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c, c.open_session("vm") as s:
        ctx = s.open_context()
        ctx.ioas_map(ctx.ioas_alloc(), 0x1000, 0x1000, iova=0x1000)
        s.unbind_host_driver(GPU)
    assert d.stop() == 0
    rows = sqlite3.connect(db).execute("SELECT method FROM ops ORDER BY seq").fetchall()
    assert rows == [("UnbindHostDriver",)]
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_graceful_restart_keeps_sessions(tmp_path: pathlib.Path, daemon_factory) -> None:
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=60)
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        ctx.ioas_map(ioas, 0x5000, 0x1000, iova=0x1000)
        batch = list(ctx.ioas_map_batch(ioas, [0x7000, 0x9000], [0x1000, 0x2000]))
    assert d.stop() == 0      # SIGTERM
    d2 = daemon_factory("--journal", str(db), name="b")
    with d2.client() as c:
        back = c.attach_session(s.token).context(ctx.iommufd)
        assert back.translate(ioas, 0x1010).pa == 0x5010
        assert [back.translate(ioas, iova + 8).pa for iova in batch] == [0x7008, 0x9008]


def test_a_journal_from_another_topology_is_refused(tmp_path: pathlib.Path) -> None:
    j = Journal(str(tmp_path / "j.db"))
    j.bind(Journal.fingerprint(topology="default"))
    j.record("tok", "OpenSession", b"")
    with pytest.raises(JournalMismatch):
        j.bind(Journal.fingerprint(topology="other"))
    j.bind(Journal.fingerprint(topology="default"))
    j.forget_session("tok")
    assert len(j) == 0
    j.bind(Journal.fingerprint(topology="other"))   # an empty journal takes any
    j.close()


def test_kill9_mid_flight_leaves_each_operation_whole_or_absent(tmp_path: pathlib.Path,
                                                               daemon_factory) -> None:
    """Eight clients map as fast as they can while the daemon is killed. After
    recovery every acknowledged map is there, each map that was in flight is
    there whole or not at all, and nothing else is."""
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=120)
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
    workers = 8
    acked: list[list[tuple[int, int, int]]] = [[] for _ in range(workers)]
    in_flight: list[tuple[int, int, int] | None] = [None] * workers
    stopped_by: list[str | None] = [None] * workers     # the errno that ended each mapper
    enough = threading.Event()

    def mapper(w: int) -> None:
        with Client(d.endpoint, timeout=10) as cl:
            try:
                mine = cl.attach_session(s.token).context(ctx.iommufd)
                for k in range(100_000):
                    iova, length = (w << 40) + k * 0x10000, 0x1000 * (1 + k % 4)
                    va = 0x7F00_0000_0000 + iova
                    in_flight[w] = (iova, length, va)
                    mine.ioas_map(ioas, va, length, iova=iova)
                    acked[w].append((iova, length, va))
                    in_flight[w] = None
                    if sum(map(len, acked)) >= 2_000:
                        enough.set()
            except IommudError as exc:
                stopped_by[w] = exc.errno_name      # EIO once the daemon is gone

    threads = [threading.Thread(target=mapper, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    assert enough.wait(120), "the mappers never got going"
    kill9(d)
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    # Every mapper ran until the kill, and only the kill stopped it.
    assert stopped_by == ["EIO"] * workers, stopped_by

    d2 = daemon_factory("--journal", str(db), name="b")
    with d2.client() as c:
        areas = {(a.iova, a.length, a.user_va)
                 for a in c.attach_session(s.token).context(ctx.iommufd).list_areas(ioas)}
    done = {m for ms in acked for m in ms}
    assert done <= areas, "an acknowledged map was lost"
    extra = areas - done
    # Anything else is a whole in-flight request, at most one per client.
    assert extra <= {m for m in in_flight if m is not None}, extra


def test_a_partial_unmap_is_recovered_as_it_was_left(tmp_path: pathlib.Path,
                                                     daemon_factory) -> None:
    """IOAS_UNMAP is not atomic: a range whose end cuts an area fails with
    ENOENT after removing the areas before it. Those stay removed across a
    kill -9 too, though the call answered an error."""
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=60)
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        areas = ((0x1000, 0x1000), (0x2000, 0x1000), (0x3000, 0x2000), (0x9000, 0x1000))
        for iova, length in areas:
            ctx.ioas_map(ioas, 0x7000_0000 + iova, length, iova=iova)
        raises_errno(lambda: ctx.ioas_unmap(ioas, 0x1000, 0x3000),
                     "ENOENT")                        # cuts [0x3000, 0x4fff]
        raises_errno(lambda: ctx.ioas_unmap(ioas, 0x4000, 0x1000),
                     "ENOENT")                        # cuts at once: no effect, no row
        left = [(a.iova, a.length) for a in ctx.list_areas(ioas)]
        assert left == [(0x3000, 0x2000), (0x9000, 0x1000)]
    kill9(d)
    d2 = daemon_factory("--journal", str(db), name="b")
    with d2.client() as c:
        back = c.attach_session(s.token).context(ctx.iommufd)
        assert [(a.iova, a.length) for a in back.list_areas(ioas)] == left


def test_a_partial_compat_unmap_dma_is_recovered_as_it_was_left(tmp_path: pathlib.Path,
                                                                 daemon_factory) -> None:
    """The same for VFIO_IOMMU_UNMAP_DMA on an iommufd-mode container, which
    the kernel's vfio_compat.c runs as IOAS_UNMAP: not atomic either."""
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), "--vfio-mode", "iommufd", name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=60)
        cont = s.open_container()
        grp = s.open_group(G_NVME2)
        grp.set_container(cont)
        cont.set_iommu(VFIO_TYPE1v2_IOMMU)
        for iova, size in ((0x10_0000, 0x1000), (0x10_1000, 0x1000), (0x10_2000, 0x2000)):
            cont.map_dma(iova, size, 0x7F00_0000_0000 + iova)
        raises_errno(lambda: cont.unmap_dma(0x10_0000, 0x3000),
                     "ENOENT")                        # cuts [0x10_2000, 0x10_3fff]
        [ioas] = [o.id for o in cont.list_objects() if o.type == pb.OBJECT_TYPE_IOAS]
        left = [(a.iova, a.length) for a in cont.list_areas(ioas)]
        assert left == [(0x10_2000, 0x2000)]
    kill9(d)
    d2 = daemon_factory("--journal", str(db), "--vfio-mode", "iommufd", name="b")
    with d2.client() as c:
        back = Container(c.attach_session(s.token), cont.container_fd)
        assert [(a.iova, a.length) for a in back.list_areas(ioas)] == left
