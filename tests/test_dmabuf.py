"""The selftest's dma-bufs (IOMMU_TEST_OP_DMABUF_GET and _REVOKE) and
IOAS_MAP_FILE of one (selftest.c iommufd_test_dmabuf_*, pages.c
iopt_alloc_dmabuf_pages, iopt_revoke_notify), through the client library
and the raw transport; every failure asserts its errno."""
from __future__ import annotations

import os
import struct

import pytest
from support import raises_errno
from uapi_client import PATH_IOMMU, File, Process, io

from iommud_client import DmaAccess
from iommud_wire import pb
from iommud_wire.uapi import MOCK_APERTURE_START, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES

PAGE = 4096
FILE_PA = 1 << 63


@pytest.fixture(scope="module")
def mock_daemon(module_daemon_factory):
    return module_daemon_factory("--debug-selftest", "1", name="dmabuf")


@pytest.fixture
def ctx(mock_daemon):
    with mock_daemon.client() as c, c.open_session("dmabuf") as s:
        yield s.open_context()


def test_dmabuf_get_sizes(ctx) -> None:
    """iommufd_test_dmabuf_get: the length rounds up to pages, 1..512 of them."""
    raises_errno(lambda: ctx.dmabuf_get(0), "EINVAL")
    raises_errno(lambda: ctx.dmabuf_get(512 * PAGE + 1), "EINVAL")
    dfd = ctx.dmabuf_get(512 * PAGE)
    small = ctx.dmabuf_get(1)                         # one page
    ioas = ctx.ioas_alloc()
    ctx.ioas_map_file(ioas, small, 0, PAGE)
    raises_errno(lambda: ctx.ioas_map_file(ioas, small, 0, PAGE + 1), "EINVAL")
    dfd.close()
    small.close()


def test_map_file_of_a_dmabuf(ctx) -> None:
    """The selftest's dmabuf_simple: length 0, a range past the dma-buf's end
    are EINVAL; a whole one maps, its memory contiguous (one PA slot); the
    fd may close while it is mapped. A dma-buf's area cannot change process
    (EINVAL) and an access cannot pin or copy it (EINVAL)."""
    size = 4 * PAGE
    dfd = ctx.dmabuf_get(size)
    ioas = ctx.ioas_alloc()
    raises_errno(lambda: ctx.ioas_map_file(ioas, dfd, 0, 0), "EINVAL")
    raises_errno(lambda: ctx.ioas_map_file(ioas, dfd, size, size), "EINVAL")
    raises_errno(lambda: ctx.ioas_map_file(ioas, dfd, 0, size + 1), "EINVAL")
    iova = ctx.ioas_map_file(ioas, dfd, 0, size)
    pa = ctx.translate(ioas, iova).pa
    assert pa & FILE_PA and ctx.translate(ioas, iova + size - 1).pa == pa + size - 1
    dfd.close()
    assert ctx.translate(ioas, iova).pa == pa
    raises_errno(lambda: ctx.ioas_change_process(), "EINVAL")
    access = ctx.create_access(ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES)
    raises_errno(lambda: access.pages(iova, PAGE), "EINVAL")
    raises_errno(lambda: access.rw(iova, 8, 0x10000), "EINVAL")
    access.close()


def test_revoke_unmaps_what_was_mapped_for_good(ctx) -> None:
    """The selftest's dmabuf_revoke: once revoked, MAP_FILE is ENODEV and the
    mapped pages are gone from every domain (a new domain is filled without
    them, DMA faults, MD_CHECK_MAP fails), though the area keeps its IOVA
    until unmapped; a restore lets new maps in, the old pages stay revoked."""
    size = 4 * PAGE
    ioas = ctx.ioas_alloc()
    mock = ctx.mock_domain(ioas)
    dfd = ctx.dmabuf_get(size)
    iova = ctx.ioas_map_file(ioas, dfd, 0, size, iova=MOCK_APERTURE_START)
    pa = ctx.translate(ioas, iova).pa
    ctx.md_check_map(mock.hwpt_id, iova, size, pa)
    ok = ctx.device_dma(mock.idev_id, [DmaAccess(iova, 8)])
    assert ok.results[0].ok
    dfd.revoke()
    raises_errno(lambda: ctx.md_check_map(mock.hwpt_id, iova, size, pa), "EINVAL")
    faulted = ctx.device_dma(mock.idev_id, [DmaAccess(iova, 8)])
    assert faulted.faults[0].reason == pb.DMA_FAULT_REASON_UNMAPPED
    ctx.hwpt_alloc(mock.idev_id, ioas)                       # the fill skips them
    raises_errno(lambda: ctx.ioas_map_file(ioas, dfd, 0, size), "ENODEV")
    raises_errno(lambda: ctx.ioas_map_file(ioas, dfd, 0, size, iova=iova), "ENODEV")
    dfd.revoke(False)
    again = ctx.ioas_map_file(ioas, dfd, 0, size, iova=MOCK_APERTURE_START + size)
    assert ctx.device_dma(mock.idev_id, [DmaAccess(again, 8)]).results[0].ok
    assert not ctx.device_dma(mock.idev_id, [DmaAccess(iova, 8)]).results[0].ok   # still
    assert ctx.ioas_unmap(ioas, iova, size) == size
    ctx.ioas_map_file(ioas, dfd, 0, size, iova=iova)
    assert ctx.device_dma(mock.idev_id, [DmaAccess(iova, 8)]).results[0].ok
    raises_errno(lambda: ctx.session.call("TestDmabufRevoke", pb.TestDmabufRevokeRequest(
        iommufd=ctx.iommufd, dmabuf_fd=ctx.iommufd, revoked=True)), "EINVAL")
    raises_errno(lambda: ctx.session.call("TestDmabufRevoke", pb.TestDmabufRevokeRequest(
        iommufd=ctx.iommufd, dmabuf_fd=99, revoked=True)), "EBADF")


def test_dmabuf_ops_need_debug_selftest(daemon) -> None:
    with daemon.client() as c, c.open_session() as s:
        plain = s.open_context()
        raises_errno(lambda: plain.dmabuf_get(PAGE), "ENOTTY")


# -- the raw transport ----------------------------------------------------------------------------

IOMMU_IOAS_ALLOC, IOMMU_IOAS_MAP_FILE, IOMMU_TEST_CMD = io(0x81), io(0x8F), io(0xA0)
DMABUF_GET, DMABUF_REVOKE = 22, 23
O_CLOEXEC = os.O_CLOEXEC


def _check(ret: int, name: str) -> None:
    import errno as E
    __tracebackhide__ = True
    assert ret == -getattr(E, name), f"expected {name}, got {ret}"


def tcmd(f: File, op: int, union: bytes) -> int:
    return f.ioctl(IOMMU_TEST_CMD, f.proc.mem.alloc(struct.pack("<IIII", 72, op, 0, 0)
                                                    + union.ljust(48, b"\0") + bytes(8)))


def map_file(f: File, ioas: int, fd: int, start: int, length: int) -> int:
    return f.ioctl(IOMMU_IOAS_MAP_FILE, f.proc.mem.struct(
        struct.Struct("<IIIiQQQ"), 40, 6, ioas, fd, start, length, 0))


@pytest.fixture
def proc(mock_daemon):
    p = Process(str(mock_daemon.socket_path.parent / "iommud.uapi.sock"))
    yield p
    p.close()


def test_raw_dmabuf_get_returns_its_fd(proc) -> None:
    """DMABUF_GET's result is the new fd (a file the daemon made, path kind
    12; the selftest reads it so), O_CLOEXEC as asked; MAP_FILE of it maps;
    REVOKE takes it by the caller's fd (a real fd: EINVAL; none: EBADF)."""
    f = proc.open(PATH_IOMMU)
    a = proc.mem.struct(struct.Struct("<III"), 12, 0, 0)
    assert f.ioctl(IOMMU_IOAS_ALLOC, a) == 0
    ioas = proc.mem.unpack(struct.Struct("<III"), a)[2]
    _check(tcmd(f, DMABUF_GET, struct.pack("<II", 0, O_CLOEXEC)), "EINVAL")
    dfd = tcmd(f, DMABUF_GET, struct.pack("<II", 4 * PAGE, O_CLOEXEC))
    assert dfd > 0 and dfd in proc.files
    assert proc.files[dfd].describe()[0] == 12
    _check(map_file(f, ioas, dfd, 0, 0), "EINVAL")
    _check(map_file(f, ioas, dfd, 0, 4 * PAGE + 1), "EINVAL")
    assert map_file(f, ioas, dfd, 0, 4 * PAGE) == 0
    assert tcmd(f, DMABUF_REVOKE, struct.pack("<iI", dfd, 1)) == 0
    _check(map_file(f, ioas, dfd, 0, 4 * PAGE), "ENODEV")
    assert tcmd(f, DMABUF_REVOKE, struct.pack("<iI", dfd, 0)) == 0
    assert map_file(f, ioas, dfd, 0, 4 * PAGE) == 0
    r, w = os.pipe()
    proc.real_fds[r] = r
    try:
        _check(tcmd(f, DMABUF_REVOKE, struct.pack("<iI", r, 1)), "EINVAL")
    finally:
        os.close(r)
        os.close(w)
    _check(tcmd(f, DMABUF_REVOKE, struct.pack("<iI", 9999, 1)), "EBADF")
    proc.files[dfd].close()
