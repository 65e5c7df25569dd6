"""Fault queues and their fds (fault.py): IO page faults raised by device DMA
on a fault-capable HWPT and by the selftest's TRIGGER_IOPF, read with their
cookies and the device's bind cookie, answered with page responses, under
eventq.c's rules (iommufd_fault_fops_read/_write, iommufd_auto_response_faults),
through the client library and through the raw transport. Every failure
asserts its errno."""
from __future__ import annotations

import os
import select
import struct

import pytest
from support import raises_errno
from uapi_client import EVENT, PATH_IOMMU, REPLY, File, Process, io

from iommud_client import DmaAccess
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_HWPT_ALLOC_PASID,
    IOMMU_HWPT_FAULT_ID_VALID,
    MOCK_APERTURE_START,
    MOCK_FLAGS_DEVICE_PASID,
)

PAGE = 4096
RECORD = 40
LAST_PAGE, PASID_VALID = 2, 1
PERM_READ, PERM_WRITE = 1, 2
SUCCESS, INVALID = 0, 1
DEV = "0000:03:00.1"          # a VT-d device of the default topology, alone in its group


@pytest.fixture(scope="module")
def mock_daemon(module_daemon_factory):
    return module_daemon_factory("--debug-selftest", "1", name="fault")


@pytest.fixture
def session(mock_daemon):
    with mock_daemon.client() as c, c.open_session("fault") as s:
        yield s


@pytest.fixture
def ctx(session):
    return session.open_context()


def fault_hwpt(session, ctx, cookie: int = 0x5EED):
    """A device bound with `cookie`, attached to a fault-capable HWPT over an
    IOAS that maps one page read-only at 0x10000."""
    fq = ctx.fault_queue_alloc()
    dev = session.open_device(DEV)
    dev_id = dev.bind(ctx, cookie=cookie)
    ioas = ctx.ioas_alloc()
    ctx.ioas_map(ioas, 0x7F00_0000_0000, PAGE, iova=0x10000, writeable=False)
    hwpt = ctx.hwpt_alloc(dev_id, ioas, IOMMU_HWPT_FAULT_ID_VALID, fault_id=fq.fault_id)
    dev.attach(hwpt)
    return fq, dev, dev_id, ioas, hwpt


# -- gRPC ------------------------------------------------------------------------------------------

def test_a_fault_queue_fd_holds_its_queue(session, ctx) -> None:
    raises_errno(lambda: ctx.fault_queue_alloc(flags=1), "EOPNOTSUPP")
    fq = ctx.fault_queue_alloc()
    assert fq.fault_fd >= 3 and fq.fault_id
    raises_errno(lambda: ctx.destroy(fq.fault_id), "EBUSY")
    assert fq.read() == []                                   # empty: nothing, no wait
    fq.close()
    ctx.destroy(fq.fault_id)
    raises_errno(lambda: fq.read(), "EBADF")
    raises_errno(lambda: session.call("FaultQueueRead", pb.FaultQueueReadRequest(
        fault_fd=ctx.iommufd, count=RECORD)), "ENOTTY")


def test_dma_through_a_fault_capable_hwpt_asks_for_the_page(session, ctx) -> None:
    """A DMA that finds no mapping, or no permission, through a HWPT with a
    fault queue raises a page request there: one fault, its own group
    (LAST_PAGE), the page's address, READ or WRITE, the device's next PRG
    index; a DMA that succeeds raises nothing."""
    fq, dev, dev_id, _ioas, _hwpt = fault_hwpt(session, ctx)
    resp = dev.dma([DmaAccess(0x10000, 8), DmaAccess(0x20010, 8),
                    DmaAccess(0x10008, 8, write=True)])
    results, faults = resp.results, resp.faults
    assert [r.ok for r in results] == [True, False, False]
    assert [f.page_request for f in faults] == [True, True]
    assert faults[0].reason == pb.DMA_FAULT_REASON_UNMAPPED
    assert faults[1].reason == pb.DMA_FAULT_REASON_PERMISSION
    got = fq.read(4 * RECORD)
    assert [(f.flags, f.dev_id, f.addr, f.perm, f.grpid, f.length) for f in got] == [
        (LAST_PAGE, dev_id, 0x20000, PERM_READ, 0, 0),
        (LAST_PAGE, dev_id, 0x10000, PERM_WRITE, 1, 0)]
    assert [f.bind_cookie for f in got] == [0x5EED, 0x5EED]
    assert sorted(f.cookie for f in got) == [1, 2]             # xa_alloc from 1
    assert fq.read() == []                                     # read once
    assert fq.respond([(got[0].cookie, SUCCESS), (got[1].cookie, INVALID)]) == 2
    raises_errno(lambda: fq.respond([(got[0].cookie, SUCCESS)]), "EINVAL")   # answered
    dev.close()


def test_read_and_write_rules(session, ctx) -> None:
    """iommufd_fault_fops_read: whole records (ESPIPE), the first group must
    fit (EINVAL, also for a read of 0 with one waiting); _write: each
    response's code and cookie, in order, stopping at the first bad one."""
    fq, dev, _dev_id, _ioas, _hwpt = fault_hwpt(session, ctx)
    raises_errno(lambda: fq.read(RECORD + 1), "ESPIPE")
    assert fq.read(0) == []                                    # empty: 0, no error
    dev.dma([DmaAccess(0x30000, 1), DmaAccess(0x31000, 1)])
    raises_errno(lambda: fq.read(0), "EINVAL")
    [first] = fq.read(RECORD)                                  # one group fits
    [second] = fq.read(RECORD)
    raises_errno(lambda: fq.respond([(first.cookie, 2)]), "EINVAL")          # a bad code
    raises_errno(lambda: fq.respond([(99, SUCCESS)]), "EINVAL")              # no such group
    assert fq.respond([(first.cookie, SUCCESS), (99, SUCCESS),
                       (second.cookie, SUCCESS)]) == 1         # stops at the bad one
    assert fq.respond([pb.PageResponse(cookie=second.cookie, code=SUCCESS)]) == 1
    assert fq.respond([]) == 0
    dev.close()


def test_detach_answers_the_attachments_faults(session, ctx) -> None:
    """iommufd_auto_response_faults: detaching (or replacing) the attachment a
    group came through answers it INVALID, read or not: it leaves the queue,
    and its cookie is gone."""
    fq, dev, _dev_id, ioas, _hwpt = fault_hwpt(session, ctx)
    dev.dma([DmaAccess(0x40000, 1), DmaAccess(0x41000, 1)])
    [read_one] = fq.read(RECORD)
    dev.attach(ioas)                                           # a replace
    assert fq.read() == []
    raises_errno(lambda: fq.respond([(read_one.cookie, SUCCESS)]), "EINVAL")
    faults = dev.dma([DmaAccess(0x40000, 1)]).faults           # no fault queue now
    assert [f.page_request for f in faults] == [False]
    dev.close()


def test_faults_stream_as_they_come(session, ctx) -> None:
    fq, dev, dev_id, _ioas, _hwpt = fault_hwpt(session, ctx, cookie=7)
    stream = fq.watch()
    try:
        dev.dma([DmaAccess(0x50000, 4, write=True)])
        group = next(stream)
        [fault] = group.faults
        assert (fault.dev_id, fault.addr, fault.perm, fault.bind_cookie) == (
            dev_id, 0x50000, PERM_WRITE, 7)
        assert fq.read() == []                       # the stream read it
        assert fq.respond([(fault.cookie, SUCCESS)]) == 1
    finally:
        stream.cancel()
    dev.close()


def test_trigger_iopf_on_mock_devices(ctx) -> None:
    """iommufd_test_trigger_iopf: the DEVICE (ENOENT) of a mock device
    (EINVAL); the fault goes where find_fault_handler finds a fault-capable
    HWPT: the RID for pasid 0, that PASID's attachment for another (the
    mock's nested RID domain only for a PASID not attached), else nowhere,
    and the call succeeds all the same."""
    raises_errno(lambda: ctx.trigger_iopf(99), "ENOENT")
    ioas = ctx.ioas_alloc()
    fq = ctx.fault_queue_alloc()
    mock = ctx.mock_domain(ioas, dev_flags=MOCK_FLAGS_DEVICE_PASID)
    plain = ctx.ioas_alloc()
    ctx.trigger_iopf(mock.idev_id, 0, 3, PERM_READ, 0xDEAD0000)   # no fault HWPT: dropped
    assert fq.read() == []
    hwpt = ctx.hwpt_alloc(mock.idev_id, plain, IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID,
                          fault_id=fq.fault_id)
    ctx.mock_domain_replace(mock.stdev_id, hwpt)
    ctx.trigger_iopf(mock.idev_id, 0, 3, PERM_READ | PERM_WRITE, 0xDEAD0000)
    ctx.trigger_iopf(mock.idev_id, 5, 4, PERM_READ, 0xBEEF)      # PASID 5: not attached
    got = fq.read()
    assert [(f.flags, f.pasid, f.grpid, f.perm, f.addr) for f in got] == [
        (LAST_PAGE, 0, 3, PERM_READ | PERM_WRITE, 0xDEAD0000)]
    ctx.pasid_attach(mock.stdev_id, 5, hwpt)
    ctx.trigger_iopf(mock.idev_id, 5, 4, PERM_READ, 0xBEEF)
    [pasid_fault] = fq.read()
    assert (pasid_fault.flags, pasid_fault.pasid) == (LAST_PAGE | PASID_VALID, 5)
    ctx.pasid_detach(mock.stdev_id, 5)                            # answers its faults
    raises_errno(lambda: fq.respond([(pasid_fault.cookie, SUCCESS)]), "EINVAL")
    assert fq.respond([(got[0].cookie, SUCCESS)]) == 1


def test_closing_the_context_releases_queue_and_fd(session) -> None:
    ctx = session.open_context()
    fq = ctx.fault_queue_alloc()
    ctx.close()                                   # the fd keeps the context alive
    assert fq.read() == []
    fq.close()
    raises_errno(lambda: ctx.ioas_alloc(), "EBADF")


def test_faults_are_not_journaled(tmp_path, daemon_factory) -> None:
    """A restarted daemon's queues start empty: the faults of the replayed
    DMA are not raised again; the queue and its fd come back."""
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=60, keepalive=False)
        ctx = s.open_context()
        fq, dev, _dev_id, _ioas, _hwpt = fault_hwpt(s, ctx)
        dev.dma([DmaAccess(0x60000, 1)])
        assert len(fq.read()) == 1
        dev.dma([DmaAccess(0x61000, 1)])
    d.proc.kill()
    d.proc.wait()
    d2 = daemon_factory("--journal", str(db), name="b")
    with d2.client() as c:
        s2 = c.attach_session(s.token, keepalive=False)
        back = s2.context(ctx.iommufd)
        from iommud_client.client import DeviceFd, FaultQueue
        again = FaultQueue(back, fq.fault_id, fq.fault_fd)
        assert again.read() == []
        raises_errno(lambda: back.destroy(fq.fault_id), "EBUSY")
        dev2 = DeviceFd(s2, dev.device_fd, dev.name)
        dev2.dma([DmaAccess(0x62000, 1)])                   # a fault waits in the queue
    # A clean stop writes a snapshot holding the queue (its records left out,
    # as a plain list); the next daemon loads it and the queue starts empty.
    assert d2.stop() == 0
    d3 = daemon_factory("--journal", str(db), name="c")
    with d3.client() as c:
        s3 = c.attach_session(s.token, keepalive=False)
        back3 = s3.context(ctx.iommufd)
        assert FaultQueue(back3, fq.fault_id, fq.fault_fd).read() == []
        raises_errno(lambda: back3.destroy(fq.fault_id), "EBUSY")


# -- the raw transport -----------------------------------------------------------------------------

IOMMU_IOAS_ALLOC, IOMMU_HWPT_ALLOC, IOMMU_FAULT_QUEUE_ALLOC = io(0x81), io(0x89), io(0x8E)
IOMMU_TEST_CMD = io(0xA0)
READ, WRITE = 8, 9
MOCK_DOMAIN, MOCK_DOMAIN_REPLACE, TRIGGER_IOPF = 2, 10, 15


def _ok(ret: int) -> int:
    assert ret >= 0, os.strerror(-ret)
    return ret


def _check(ret: int, name: str) -> None:
    import errno as E
    __tracebackhide__ = True
    assert ret == -getattr(E, name), f"expected {name}, got {ret}"


def tcmd(f: File, op: int, obj_id: int = 0, union: bytes = b"") -> tuple[int, int]:
    addr = f.proc.mem.alloc(struct.pack("<IIII", 72, op, obj_id, 0) + union.ljust(48, b"\0")
                            + bytes(8))
    return f.ioctl(IOMMU_TEST_CMD, addr), addr


def rw(fq: File, kind: int, count: int, buf: int) -> tuple[int, bool]:
    """A READ or WRITE record on an event fd, as the shim sends it (its
    doorbells drained first); the result, and whether the REPLY says a
    doorbell follows (BELL)."""
    while select.select([fq.sock], [], [], 0)[0]:
        hdr, _body, _ = fq.recv()
        assert hdr[1] == EVENT, hdr                  # only doorbells wait there
    seq = fq.send(kind, count, buf)
    while True:
        hdr, body, fds = fq.recv()
        if hdr[1] == EVENT:
            continue
        assert hdr[1] in (REPLY, 3) and hdr[5] == seq, hdr
        if hdr[1] == 3:                               # NEED
            give, give_fds = fq.proc.answer(body)
            fq.send(4, body=give, seq=seq, fds=give_fds)
            continue
        return fq.apply(hdr[9], body, fds), bool(hdr[2] & (1 << 4))


@pytest.fixture
def proc(mock_daemon):
    p = Process(str(mock_daemon.socket_path.parent / "iommud.uapi.sock"))
    yield p
    p.close()


def test_raw_fault_fd_reads_and_answers(proc) -> None:
    """FAULT_QUEUE_ALLOC hands over the queue's fd; TRIGGER_IOPF's fault rings
    its doorbell (poll readable), a READ takes the record (40 bytes, the
    cookie in its last word), a WRITE answers it; the kernel's size rules."""
    f = proc.open(PATH_IOMMU)
    a = proc.mem.struct(struct.Struct("<III"), 12, 0, 0)
    _ok(f.ioctl(IOMMU_IOAS_ALLOC, a))
    ioas = proc.mem.unpack(struct.Struct("<III"), a)[2]
    ret, addr = tcmd(f, MOCK_DOMAIN, ioas)
    _ok(ret)
    stdev, _hwpt, idev = struct.unpack("<III", proc.mem.read(addr + 16, 12) or b"")
    q = proc.mem.struct(struct.Struct("<IIII"), 16, 0, 0, 0xFFFF_FFFF)
    _ok(f.ioctl(IOMMU_FAULT_QUEUE_ALLOC, q))
    _, _, fault_id, fault_fd = proc.mem.unpack(struct.Struct("<IIII"), q)
    fq = proc.files[fault_fd]
    assert fq.describe()[:2] == (6, fault_id)
    h = proc.mem.struct(struct.Struct("<IIIIIIIIQII"), 48, IOMMU_HWPT_FAULT_ID_VALID, idev, ioas,
                        0, 0, 0, 0, 0, fault_id, 0)
    _ok(f.ioctl(IOMMU_HWPT_ALLOC, h))
    hwpt = proc.mem.unpack(struct.Struct("<IIIIIIIIQII"), h)[4]
    _ok(tcmd(f, MOCK_DOMAIN_REPLACE, stdev, struct.pack("<I", hwpt))[0])

    buf = proc.mem.alloc(2 * RECORD)
    assert rw(fq, READ, 2 * RECORD, buf) == (0, False)                  # empty
    assert not select.select([fq.sock], [], [], 0)[0]
    _ok(tcmd(f, TRIGGER_IOPF, 0, struct.pack("<IIIIQ", idev, 0, 2, PERM_READ, 0xDEAD_BEAF))[0])
    assert select.select([fq.sock], [], [], 0)[0]                       # the doorbell
    _check(rw(fq, READ, RECORD + 8, buf)[0], "ESPIPE")
    _check(rw(fq, READ, 0, buf)[0], "EINVAL")                           # a group waits
    _check(rw(fq, READ, RECORD, 0xDEAD_0000)[0], "EFAULT")               # the copy faults
    assert rw(fq, READ, 2 * RECORD, buf) == (RECORD, False)
    flags, dev_id, pasid, grpid, perm, _, faddr, length, cookie = struct.unpack(
        "<IIIIIIQII", proc.mem.read(buf, RECORD) or b"")
    assert (flags, dev_id, pasid, grpid, perm, faddr, length, cookie) == (
        LAST_PAGE, idev, 0, 2, PERM_READ, 0xDEAD_BEAF, 0, 1)
    resp = proc.mem.alloc(struct.pack("<II", cookie, SUCCESS) + struct.pack("<II", 5, SUCCESS))
    _check(rw(fq, WRITE, 3, resp)[0], "ESPIPE")
    assert rw(fq, WRITE, 0, resp)[0] == 0
    _check(rw(fq, WRITE, 8, 0xDEAD_0000)[0], "EFAULT")
    assert rw(fq, WRITE, 16, resp)[0] == 8                              # the second is bad
    _check(rw(fq, WRITE, 8, resp)[0], "EINVAL")                         # answered already
    # Two faults, a read that holds one: the reply says a doorbell follows.
    for grp in (7, 8):
        _ok(tcmd(f, TRIGGER_IOPF, 0, struct.pack("<IIIIQ", idev, 0, grp, PERM_READ, 0))[0])
    assert rw(fq, READ, RECORD, buf) == (RECORD, True)
    hdr, _, _ = fq.recv()
    assert hdr[1] == EVENT
    fq.close()
    _ok(tcmd(f, MOCK_DOMAIN_REPLACE, stdev, struct.pack("<I", ioas))[0])
    _ok(f.ioctl(io(0x80), proc.mem.struct(struct.Struct("<II"), 8, hwpt)))      # DESTROY
    _ok(f.ioctl(io(0x80), proc.mem.struct(struct.Struct("<II"), 8, fault_id)))  # fd closed
    assert MOCK_APERTURE_START
