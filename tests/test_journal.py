"""The durable journal: kill -9 the daemon and get back exactly what it had
acknowledged: sessions (reachable by their old tokens), contexts, bindings,
attachments, mappings, group claims, containers and host driver changes."""
from __future__ import annotations

import os
import signal
import threading
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
from support import DaemonFactory, raises_errno, run_daemon

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
    # 10,000 map rows outweigh the state they left: the daemon compacted them
    # into a snapshot while serving, so recovery reads a snapshot and a tail.
    assert d.events("journal.snapshot")
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
        assert d2.events("journal.recovered")[0]["snapshot_sessions"] >= 1
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


def test_closed_sessions_leave_only_host_state(tmp_path: pathlib.Path, daemon_factory) -> None:
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c, c.open_session("vm") as s:
        ctx = s.open_context()
        ctx.ioas_map(ctx.ioas_alloc(), 0x1000, 0x1000, iova=0x1000)
        s.unbind_host_driver(GPU)
        token = s.token
    assert d.stop() == 0
    d2 = daemon_factory("--journal", str(db), name="b")
    with d2.client() as c:
        raises_errno(lambda: c.attach_session(token).info(), "ESRCH")
        assert c.info().daemon.sessions == 0
        with c.open_session("probe") as s:
            [gpu] = [dev for dev in s.list_devices() if dev.name == GPU]
            assert gpu.driver == ""                   # the host change stayed


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
    path = str(tmp_path / "j.db")
    j = Journal(path)
    j.bind(Journal.fingerprint(topology="default"))
    j.record("tok", "OpenSession", b"")
    j.close()
    j = Journal(path)
    with pytest.raises(JournalMismatch, match="another topology or configuration"):
        j.bind(Journal.fingerprint(topology="other"))
    j.close()
    j = Journal(path)
    j.bind(Journal.fingerprint(topology="default"))
    assert [r.method for r in j.records()] == ["OpenSession"]
    j.close()
    fresh = Journal(str(tmp_path / "fresh.db"))
    fresh.bind(Journal.fingerprint(topology="default"))
    fresh.close()
    fresh = Journal(str(tmp_path / "fresh.db"))
    fresh.bind(Journal.fingerprint(topology="other"))   # an empty journal takes any
    fresh.close()


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


# -- the journal's own guarantees ------------------------------------------------------------

def _journal_files(db: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in (db, db.with_name(db.name + ".snap"), db.with_name(db.name + ".lock"))
            if p.exists()]


def test_journal_files_are_private(tmp_path: pathlib.Path, daemon_factory) -> None:
    """The journal holds session tokens: owner-only, however umask is set."""
    db = tmp_path / "journal.db"
    workdir = tmp_path / "a"
    workdir.mkdir(mode=0o700)
    old_umask = os.umask(0)                           # the daemon inherits it
    try:
        d = daemon_factory("--journal", str(db), name="a", workdir=workdir)
    finally:
        os.umask(old_umask)
    with d.client() as c:
        c.open_session("vm", lease_seconds=60).open_context()
    assert d.stop() == 0                              # writes a snapshot too
    files = _journal_files(db)
    assert len(files) == 3
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == \
        {p.name: "0o600" for p in files}


def test_a_second_daemon_on_the_same_journal_is_refused(tmp_path: pathlib.Path,
                                                        daemon_factory) -> None:
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    other = run_daemon("--socket", str(tmp_path / "other.sock"), "--journal", str(db))
    assert other.returncode == 1
    lines = other.stderr.strip().splitlines()
    assert lines == [f"iommud: the journal {db} is in use by another daemon (pid {d.proc.pid})"]
    with d.client() as c:                             # the first one is untouched
        assert c.echo(b"x") == b"x"


def _journal_end(db: pathlib.Path) -> int:
    """Where the log's next row goes: the log is preallocated with zeros."""
    return len(db.read_bytes().rstrip(b"\0"))


def _fill_until_refused(ctx, ioas: int, start: int) -> tuple[list[int], int]:
    """Map 4 KiB areas until the journal refuses one; the acknowledged IOVAs
    and the refused one."""
    done = []
    for k in range(200_000):
        iova = start + k * 0x2000
        try:
            ctx.ioas_map(ioas, 0x7F00_0000_0000 + iova, 0x1000, iova=iova)
        except IommudError as exc:
            assert exc.errno_name == "ENOSPC", exc
            assert done, "the journal had no room from the start"
            return done, iova
        done.append(iova)
    raise AssertionError("the journal never ran out of room")


def test_a_full_journal_refuses_calls_with_enospc_and_no_effect(tmp_path: pathlib.Path,
                                                                daemon_factory) -> None:
    """Out of room (here: RLIMIT_FSIZE at the journal's current size, the
    kernel answering EFBIG as a full disk answers ENOSPC) a state-changing call
    is refused with ENOSPC and changes nothing; reads, keepalives and the
    reaper go on; writes resume once room is made; nothing acknowledged is
    lost across a kill -9."""
    import resource
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), "--debug-clock", "1", name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=600)
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        ctx.ioas_map(ioas, 0x7000_0000, 0x1000, iova=0x1000)
        short = c.open_session("short-lease", lease_seconds=60, keepalive=False)
        limit = _journal_end(db) + 0x800      # room for a few rows, then none
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        done, refused = _fill_until_refused(ctx, ioas, 0x10_0000)
        areas = [a.iova for a in ctx.list_areas(ioas)]
        assert refused not in areas                   # no effect
        assert areas == [0x1000, *done]
        raises_errno(lambda: ctx.ioas_alloc(), "ENOSPC")
        assert [o.type for o in ctx.list_objects()] == [pb.OBJECT_TYPE_IOAS]
        assert ctx.translate(ioas, 0x1008).pa == 0x7000_0008         # reads go on
        s.keepalive()
        # The reaper still ends a session whose client is gone (its FORGET row
        # has no room; it comes back on restart and is reaped again).
        s.keepalive()
        assert c.call("DebugAdvanceClock", pb.DebugAdvanceClockRequest(seconds=100),
                      s.token).reaped == 1
        raises_errno(lambda: short.keepalive(), "ESRCH")
        # Room again: the refused call now succeeds.
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        ctx.ioas_map(ioas, 0x7F00_0000_0000 + refused, 0x1000, iova=refused)
        want = [a.iova for a in ctx.list_areas(ioas)]
    kill9(d)
    d2 = daemon_factory("--journal", str(db), name="b")
    with d2.client() as c:
        back = c.attach_session(s.token).context(ctx.iommufd)
        assert [a.iova for a in back.list_areas(ioas)] == want == [0x1000, *done, refused]


def test_a_full_journal_still_lets_the_daemon_stop_cleanly(tmp_path: pathlib.Path,
                                                           daemon_factory) -> None:
    import resource
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=60)
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (_journal_end(db) + 0x800,) * 2)
        done, _ = _fill_until_refused(ctx, ioas, 0x10_0000)
    assert d.stop() == 0                    # the snapshot fails for room; the log holds all
    assert d.events("journal.snapshot_failed")
    d2 = daemon_factory("--journal", str(db), name="b")
    with d2.client() as c:
        back = c.attach_session(s.token).context(ctx.iommufd)
        assert [a.iova for a in back.list_areas(ioas)] == done


@pytest.mark.parametrize("where", ["row", "header", "snapshot"])
def test_a_damaged_journal_is_refused_naming_what_is_wrong(tmp_path: pathlib.Path,
                                                           daemon_factory, where: str) -> None:
    db = tmp_path / "journal.db"
    snap = db.with_name(db.name + ".snap")
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c:
        ctx = c.open_session("vm", lease_seconds=60).open_context()
        ioas = ctx.ioas_alloc()
        if where == "snapshot":
            d.stop()                        # the state goes into the snapshot
        else:
            for i in range(4):
                ctx.ioas_map(ioas, 0x7000_0000, 0x1000, iova=0x1000 * (i + 1))
            kill9(d)
    target = snap if where == "snapshot" else db
    data = bytearray(target.read_bytes())
    at = {"row": 128 + 40, "header": 20, "snapshot": len(data) - 3}[where]
    data[at] ^= 0x01
    target.write_bytes(bytes(data))
    out = run_daemon("--socket", str(tmp_path / "b.sock"), "--journal", str(db))
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    want = {"row": "row 1 at offset 0x80 fails its checksum",
            "header": "the header's checksum does not match",
            "snapshot": "the state fails its checksum"}[where]
    assert want in line and str(target) in line, line


def test_a_missing_snapshot_or_log_is_detected(tmp_path: pathlib.Path, daemon_factory) -> None:
    db = tmp_path / "journal.db"
    snap = db.with_name(db.name + ".snap")
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c:
        c.open_session("vm", lease_seconds=60).open_context()
    d.stop()
    kept = snap.read_bytes()
    snap.unlink()
    out = run_daemon("--socket", str(tmp_path / "b.sock"), "--journal", str(db))
    assert out.returncode == 1 and f"but {snap} is missing" in out.stderr
    snap.write_bytes(kept)
    snap.chmod(0o600)
    db.unlink()
    out = run_daemon("--socket", str(tmp_path / "b.sock"), "--journal", str(db))
    assert out.returncode == 1 and f"the log {db} is missing" in out.stderr


def test_a_lowered_limit_keeps_existing_objects_and_bounds_new_ones(
        tmp_path: pathlib.Path, daemon_factory) -> None:
    """As a shrunken rlimit in the kernel: what exists stays, new requests
    meet the new limit (docs/object-model.md, The journal)."""
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), "--max-areas-per-ioas", "16", name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=60)
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        for i in range(10):
            ctx.ioas_map(ioas, 0x7000_0000, 0x1000, iova=0x1000 * (2 * i + 1))
    kill9(d)
    d2 = daemon_factory("--journal", str(db), "--max-areas-per-ioas", "4", name="b")
    with d2.client() as c:
        back = c.attach_session(s.token).context(ctx.iommufd)
        assert len(back.list_areas(ioas)) == 10
        raises_errno(lambda: back.ioas_map(ioas, 0x7000_0000, 0x1000, iova=0x10_0000),
                     "ENOSPC")
        back.ioas_unmap(ioas, 0x1000, 0x1000)
        assert len(back.list_areas(ioas)) == 9


def test_churn_is_compacted_so_restart_follows_the_live_state(tmp_path: pathlib.Path,
                                                               daemon_factory) -> None:
    """Thousands of map/unmap rows behind a 10-area state: the daemon writes a
    snapshot while serving, and a restart replays only what came after it."""
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=60)
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        for i in range(10):
            ctx.ioas_map(ioas, 0x7000_0000, 0x1000, iova=0x1000 * (2 * i + 1))
        for _ in range(3_000):
            ctx.ioas_map(ioas, 0x7100_0000, 0x1000, iova=0x100_0000)
            ctx.ioas_unmap(ioas, 0x100_0000, 0x1000)
        want = [(a.iova, a.user_va) for a in ctx.list_areas(ioas)]
    assert d.events("journal.snapshot")
    size = db.stat().st_size
    kill9(d)
    assert size < 4 << 20                             # the log restarted after the snapshot
    d2 = daemon_factory("--journal", str(db), name="b")
    assert recovered_rows(d2) < 4_096
    with d2.client() as c:
        back = c.attach_session(s.token).context(ctx.iommufd)
        assert [(a.iova, a.user_va) for a in back.list_areas(ioas)] == want


def test_rows_written_while_a_snapshot_is_written_move_to_its_log(tmp_path: pathlib.Path) -> None:
    """The daemon writes a snapshot's files off the loop while calls go on:
    rows journaled meanwhile belong after the snapshot, in its fresh log,
    and an interrupted snapshot leaves the journal as it was."""
    path = str(tmp_path / "j")
    fp = Journal.fingerprint(topology="default")
    j = Journal(path)
    j.bind(fp)
    for i in range(3):
        j.record("tok", "IoasMap", bytes([i]))
    pending = j.begin_snapshot(b"state-as-of-row-3")
    j.record("tok", "IoasMap", b"during-1")
    pending.write()
    j.record("tok", "IoasMap", b"during-2")
    j.finish_snapshot(pending)
    j.record("tok", "IoasMap", b"after")
    assert len(j) == 3
    j.close()
    j = Journal(path)
    j.bind(fp)
    assert j.load_snapshot() == b"state-as-of-row-3"
    assert [r.request for r in j.records()] == [b"during-1", b"during-2", b"after"]
    assert [r.seq for r in j.records()] == [4, 5, 6]
    # Interrupted (the daemon died, or the disk filled) before it took over:
    # the old snapshot and log still hold everything.
    pending = j.begin_snapshot(b"never-finished")
    pending.write()
    j.record("tok", "IoasMap", b"later")
    pending.abandon()
    j.close()
    j = Journal(path)
    j.bind(fp)
    assert j.load_snapshot() == b"state-as-of-row-3"
    assert [r.request for r in j.records()] == [b"during-1", b"during-2", b"after", b"later"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j", "j.lock", "j.snap"]
    j.close()
