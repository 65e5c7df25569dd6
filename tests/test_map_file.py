"""IOMMU_IOAS_MAP_FILE and what backs an area (files.py, ioas.py): pages
named by file and offset, the gRPC form on the daemon's own memfds
(OpenMemfd, MemfdTruncate), the raw transport's memfds passed with
SCM_RIGHTS, IOAS_CHANGE_PROCESS, the pages a process is charged
(ProcessPins) and a gone process's pages (the selftest's fork_gone). Rules
of ioas.c iommufd_ioas_map_file / iommufd_ioas_change_process,
io_pagetable.c iopt_map_file_pages and pages.c; every failure asserts its
errno."""
from __future__ import annotations

import os
import struct

import pytest
from support import raises_errno
from uapi_client import PATH_IOMMU, File, Process, io

from iommud_wire import pb
from iommud_wire.uapi import MOCK_APERTURE_START, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES

PAGE = 4096
FILE_PA = 1 << 63
GRPC_SPACE = 1 << 62
SLOT = 1 << 40
RW = 4 | 2
FIXED_RW = 1 | RW


@pytest.fixture(scope="module")
def mock_daemon(module_daemon_factory):
    return module_daemon_factory("--debug-selftest", "1", "--cap-sys-resource", "1", name="map-file")


@pytest.fixture
def session(mock_daemon):
    with mock_daemon.client() as c, c.open_session("map-file") as s:
        yield s


@pytest.fixture
def ctx(session):
    return session.open_context()


def file_slot(pa: int) -> int:
    assert pa & FILE_PA, hex(pa)
    return (pa & (GRPC_SPACE - 1)) >> 40


# -- gRPC: the daemon's memfds -----------------------------------------------------------------

def test_map_file_names_pages_by_file_and_offset(session, ctx) -> None:
    mfd = session.open_memfd(16 * PAGE, name="guest")
    ioas = ctx.ioas_alloc()
    iova = ctx.ioas_map_file(ioas, mfd, 4 * PAGE, 2 * PAGE)
    pa = ctx.translate(ioas, iova).pa
    assert pa & FILE_PA and pa & GRPC_SPACE
    assert pa % SLOT == 4 * PAGE          # the offset in the file is the offset in its slot
    # The same file page has one PA, mapped again elsewhere or in another IOAS.
    other = ctx.ioas_alloc()
    again = ctx.ioas_map_file(other, mfd, 5 * PAGE, PAGE)
    assert ctx.translate(other, again).pa == pa + PAGE
    assert ctx.translate(ioas, iova + PAGE + 7).pa == pa + PAGE + 7
    # Another file is another slot.
    second = session.open_memfd(PAGE)
    iova2 = ctx.ioas_map_file(ioas, second, 0, PAGE)
    assert file_slot(ctx.translate(ioas, iova2).pa) != file_slot(pa)
    # A user mapping of the same IOAS stays at its address.
    user = ctx.ioas_map(ioas, 0x7F00_0000_0000, PAGE)
    assert ctx.translate(ioas, user).pa == 0x7F00_0000_0000


def test_map_file_checks_in_the_kernels_order(session, ctx) -> None:
    mfd = session.open_memfd(4 * PAGE)
    ioas = ctx.ioas_alloc()
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, 0, PAGE, flags=8 | RW), "EOPNOTSUPP")
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, 0, (1 << 64) - 1), "EOVERFLOW")
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, 0, PAGE, flags=0), "EINVAL")
    raises_errno(lambda: ctx.ioas_map_file(99, mfd, 0, PAGE), "ENOENT")
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, 0, 0), "EINVAL")          # length 0
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, (1 << 64) - PAGE, 2 * PAGE), "EOVERFLOW")
    raises_errno(lambda: ctx.ioas_map_file(ioas, 77, 0, PAGE), "EBADF")
    raises_errno(lambda: ctx.ioas_map_file(ioas, ctx.iommufd, 0, PAGE), "EINVAL")
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, SLOT - PAGE, 2 * PAGE), "EOVERFLOW")
    iova = ctx.ioas_map_file(ioas, mfd, 0, PAGE, iova=0x10000)
    assert iova == 0x10000
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, 0, PAGE, iova=0x10000), "EEXIST")
    assert ctx.ioas_unmap(ioas, 0x10000, PAGE) == PAGE


def test_pages_past_the_end_cannot_be_pinned(session, ctx) -> None:
    """Without a domain nothing is pinned (any range maps); with one the map
    pins at once: past the file's end is EINVAL and the area goes again
    (memfd_pin_folios; the selftest's basic_file)."""
    mfd = session.open_memfd(2 * PAGE)
    ioas = ctx.ioas_alloc()
    lazy = ctx.ioas_map_file(ioas, mfd, 0, 4 * PAGE, iova=MOCK_APERTURE_START)  # nothing pinned
    raises_errno(lambda: ctx.mock_domain(ioas), "EINVAL")    # the fill pins it now
    ctx.ioas_unmap(ioas, lazy, 4 * PAGE)
    dom = ctx.mock_domain(ioas)
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, 0, 2 * PAGE + 1), "EINVAL")
    assert next(o for o in ctx.list_objects() if o.id == ioas).areas == 0
    iova = ctx.ioas_map_file(ioas, mfd, 0, 2 * PAGE)
    ctx.md_check_map(dom.hwpt_id, iova, 2 * PAGE, ctx.translate(ioas, iova).pa)
    mfd.truncate(0)
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, 0, PAGE), "EINVAL")
    # The pinned pages stay mapped; a second domain copies them from the first.
    ctx.mock_domain(ioas)
    raises_errno(lambda: mfd.truncate(1 << 63), "EINVAL")
    raises_errno(lambda: session.open_memfd(PAGE, name="x" * 250), "EINVAL")


def test_a_file_outlives_its_fd_while_mapped(session, ctx) -> None:
    mfd = session.open_memfd(PAGE)
    ioas = ctx.ioas_alloc()
    iova = ctx.ioas_map_file(ioas, mfd, 0, PAGE)
    pa = ctx.translate(ioas, iova).pa
    mfd.close()
    raises_errno(lambda: ctx.ioas_map_file(ioas, mfd, 0, PAGE), "EBADF")
    raises_errno(lambda: mfd.truncate(PAGE), "EBADF")
    copy = ctx.ioas_alloc()
    dst = ctx.ioas_copy(copy, ioas, iova, PAGE)
    assert ctx.translate(copy, dst).pa == pa
    ctx.destroy(ioas)
    assert ctx.translate(copy, dst).pa == pa
    ctx.ioas_unmap(copy, dst, PAGE)
    # Its slot is free again: the next file takes the lowest free one.
    assert file_slot(ctx.translate(copy, ctx.ioas_map_file(
        copy, session.open_memfd(PAGE), 0, PAGE)).pa) <= file_slot(pa)


def test_change_process_needs_file_pages_only(session, ctx) -> None:
    """iommufd_ioas_change_process: EINVAL while any IOAS maps user memory;
    with only file pages the session (gRPC's process) keeps them."""
    mfd = session.open_memfd(PAGE)
    ioas = ctx.ioas_alloc()
    ctx.ioas_change_process()                                  # no areas at all
    user = ctx.ioas_map(ioas, 0x7F00_0000_0000, PAGE)
    raises_errno(lambda: ctx.ioas_change_process(), "EINVAL")
    raises_errno(lambda: ctx.ioas_change_process(reserved=1), "EOPNOTSUPP")
    ctx.ioas_unmap(ioas, user, PAGE)
    iova = ctx.ioas_map_file(ioas, mfd, 0, PAGE)
    other = ctx.ioas_alloc()
    ctx.ioas_copy(other, ioas, iova, PAGE)
    ctx.ioas_change_process()
    assert session.process_pins(os.getpid()) == pb.ProcessPinsResponse() or \
        session.process_pins(os.getpid()).pinned_pages == 0   # gRPC charges no process


def test_access_rw_plan_names_file_pages(session, ctx) -> None:
    """ACCESS_RW over a file's area: the copy plan names the file's PAs (a
    daemon-side memfd has no bytes; the raw transport copies through the
    passed file, below). With no domain the pages must be pinnable
    (iopt_pages_rw_slow): past the file's end EINVAL."""
    mfd = session.open_memfd(2 * PAGE)
    ioas = ctx.ioas_alloc()
    iova = ctx.ioas_map_file(ioas, mfd, 0, 2 * PAGE)
    pa = ctx.translate(ioas, iova).pa
    access = ctx.create_access(ioas)
    plan = access.rw(iova + PAGE - 8, 16, 0x1000)
    assert [(s.user_va, s.length, s.buffer_offset) for s in plan.segments] == \
        [(pa + PAGE - 8, 16, 0)]
    mfd.truncate(PAGE)
    raises_errno(lambda: access.rw(iova + PAGE - 8, 16, 0x1000), "EINVAL")
    access.rw(iova, 8, 0x1000)                       # the page before the end is there
    access.close()


# -- the raw transport: memfds passed with SCM_RIGHTS -------------------------------------------

IOMMU_IOAS_ALLOC, IOMMU_IOAS_MAP, IOMMU_IOAS_UNMAP = io(0x81), io(0x85), io(0x86)
IOMMU_IOAS_MAP_FILE, IOMMU_IOAS_CHANGE_PROCESS, IOMMU_OPTION = io(0x8F), io(0x92), io(0x87)
IOMMU_TEST_CMD = io(0xA0)
IOAS_ALLOC, IOAS_MAP, IOAS_UNMAP = struct.Struct("<III"), struct.Struct("<IIIIQQQ"), \
    struct.Struct("<IIQQ")
MAP_FILE = struct.Struct("<IIIiQQQ")
OPTION = struct.Struct("<IIHHIQ")
MOCK_DOMAIN, MD_CHECK_MAP, MD_CHECK_REFS, CREATE_ACCESS, ACCESS_PAGES = 2, 3, 4, 5, 7
PATH_PINS = 16


def _errno(ret: int) -> str:
    import errno as E
    return E.errorcode.get(-ret, str(ret)) if ret < 0 else f"success ({ret})"


def check(ret: int, name: str) -> None:
    import errno as E
    __tracebackhide__ = True
    assert ret == -getattr(E, name), f"expected {name}, got {_errno(ret)}"


def ok(ret: int) -> int:
    __tracebackhide__ = True
    assert ret >= 0, f"expected success, got {_errno(ret)}"
    return ret


def tcmd(f: File, op: int, obj_id: int = 0, union: bytes = b"") -> tuple[int, int]:
    addr = f.proc.mem.alloc(struct.pack("<IIII", 72, op, obj_id, 0) + union.ljust(48, b"\0")
                            + bytes(8))
    return f.ioctl(IOMMU_TEST_CMD, addr), addr


def alloc_ioas(f: File) -> int:
    a = f.proc.mem.struct(IOAS_ALLOC, 12, 0, 0)
    ok(f.ioctl(IOMMU_IOAS_ALLOC, a))
    return f.proc.mem.unpack(IOAS_ALLOC, a)[2]


def mock_domain(f: File, ioas: int) -> tuple[int, int, int]:
    ret, addr = tcmd(f, MOCK_DOMAIN, ioas)
    ok(ret)
    data = f.proc.mem.read(addr + 16, 12)
    assert data is not None
    stdev, hwpt, idev = struct.unpack("<III", data)
    return stdev, hwpt, idev


def map_file(f: File, ioas: int, fd: int, start: int, length: int, iova: int = 0,
             flags: int = RW) -> tuple[int, int]:
    a = f.proc.mem.struct(MAP_FILE, 40, flags | (1 if iova else 0), ioas, fd, start, length,
                          iova)
    ret = f.ioctl(IOMMU_IOAS_MAP_FILE, a)
    return ret, f.proc.mem.unpack(MAP_FILE, a)[6]


def check_map(f: File, hwpt: int, iova: int, length: int, uptr: int) -> int:
    return tcmd(f, MD_CHECK_MAP, hwpt, struct.pack("<QQQ", iova, length, uptr))[0]


def check_refs(f: File, uptr: int, length: int, refs: int) -> int:
    return tcmd(f, MD_CHECK_REFS, 0, struct.pack("<QQI", length, uptr, refs))[0]


def pins(proc: Process, pid: int) -> tuple[int, int]:
    """OPEN of path kind 16: the pages charged to `pid` (VmPin, VmLck)."""
    f = proc.connect()
    seq = f.send(1, PATH_PINS, pid, struct.pack("<I", 0))
    hdr, body, _ = f.recv()
    assert hdr[1] == 5 and hdr[5] == seq and hdr[9] == 0, hdr
    f.sock.close()
    pinned, locked = struct.unpack("<QQ", body)
    return pinned, locked


@pytest.fixture
def proc(mock_daemon):
    p = Process(str(mock_daemon.socket_path.parent / "iommud.uapi.sock"))
    yield p
    p.close()
    for fd in p.real_fds.values():
        os.close(fd)


def memfd(proc: Process, size: int) -> int:
    fd = os.memfd_create("guest", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    proc.real_fds[fd] = fd
    return fd


def test_raw_map_file_of_a_passed_memfd(proc) -> None:
    """The shim passes the memfd (a real fd: SCM_RIGHTS); the daemon holds
    the file while an area maps it, so the caller may close its fd; the
    pages behind the caller's own mmap of the memfd are the file's pages
    (MD_CHECK_MAP asks the caller what backs its memory: BACKING)."""
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    _, hwpt, _ = mock_domain(f, ioas)
    mfd = memfd(proc, 8 * PAGE)
    ret, iova = map_file(f, ioas, mfd, 2 * PAGE, 4 * PAGE)
    ok(ret)
    buf = proc.mem.map_file(mfd, 8 * PAGE)              # an mmap of the whole memfd
    anon = proc.mem.alloc(8 * PAGE)
    ok(check_map(f, hwpt, iova, 4 * PAGE, buf + 2 * PAGE))
    check(check_map(f, hwpt, iova, 4 * PAGE, buf), "EINVAL")     # other pages of the file
    check(check_map(f, hwpt, iova, 4 * PAGE, anon + 2 * PAGE), "EINVAL")  # not the file's
    assert proc.stats.backings >= 3
    # Pinned once each by the domain, as the kernel's refcounts show.
    ok(check_refs(f, buf + 2 * PAGE, 4 * PAGE, 1))
    ok(check_refs(f, buf, 2 * PAGE, 0))
    check(check_refs(f, buf, 4 * PAGE, 1), "EIO")
    # Past the end of the file, with a domain: the pin fails, nothing stays.
    check(map_file(f, ioas, mfd, 0, 8 * PAGE + 1)[0], "EINVAL")
    # A file that is no memfd cannot be pinned.
    with open("/proc/self/exe", "rb") as exe:
        exe_fd = os.dup(exe.fileno())
    proc.real_fds[exe_fd] = exe_fd
    check(map_file(f, ioas, exe_fd, 0, PAGE)[0], "EINVAL")
    # Not open: EBADF; an emulated fd (the iommufd itself) names no pages.
    check(map_file(f, ioas, 999, 0, PAGE)[0], "EBADF")
    check(map_file(f, ioas, f.fd, 0, PAGE)[0], "EINVAL")
    os.ftruncate(mfd, 0)
    check(map_file(f, ioas, mfd, 0, PAGE)[0], "EINVAL")
    ok(f.ioctl(IOMMU_IOAS_UNMAP, proc.mem.struct(IOAS_UNMAP, 24, ioas, iova, 4 * PAGE)))
    ok(check_refs(f, buf, 8 * PAGE, 0))


def test_raw_map_file_struct_rules(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    mfd = memfd(proc, PAGE)
    a = proc.mem.struct(MAP_FILE, 39, RW, ioas, mfd, 0, PAGE, 0)
    check(f.ioctl(IOMMU_IOAS_MAP_FILE, a), "EINVAL")                 # below its 40 bytes
    big = proc.mem.alloc(MAP_FILE.pack(48, RW, ioas, mfd, 0, PAGE, 0) + b"\1" + bytes(7))
    check(f.ioctl(IOMMU_IOAS_MAP_FILE, big), "E2BIG")
    check(map_file(f, ioas, mfd, 0, PAGE, flags=8 | RW)[0], "EOPNOTSUPP")
    check(map_file(f, 99, mfd, 0, PAGE)[0], "ENOENT")
    check(map_file(f, ioas, -1, 0, PAGE)[0], "EBADF")
    ret, iova = map_file(f, ioas, mfd, 0, PAGE, iova=MOCK_APERTURE_START)
    ok(ret)
    assert iova == MOCK_APERTURE_START


def test_change_process_moves_the_charge(proc) -> None:
    """The selftest's change_process: user memory is EINVAL; a file's pages
    are charged to the process that last called CHANGE_PROCESS, pinned
    (VmPin) and, under RLIMIT_MODE 1, locked (VmLck)."""
    f = proc.open(PATH_IOMMU)
    mode = proc.mem.struct(OPTION, 24, 0, 0, 0, 0, 1)               # RLIMIT_MODE SET 1
    ok(f.ioctl(IOMMU_OPTION, mode))
    ioas = alloc_ioas(f)
    mock_domain(f, ioas)
    a = proc.mem.struct(IOAS_MAP, 40, RW, ioas, 0, proc.mem.alloc(PAGE), PAGE, 0)
    ok(f.ioctl(IOMMU_IOAS_MAP, a))
    assert pins(proc, os.getpid()) == (1, 1)
    change = proc.mem.struct(struct.Struct("<II"), 8, 0)
    check(f.ioctl(IOMMU_IOAS_CHANGE_PROCESS, change), "EINVAL")
    ok(f.ioctl(IOMMU_IOAS_UNMAP, proc.mem.struct(IOAS_UNMAP, 24, ioas, 0, (1 << 64) - 1)))
    assert pins(proc, os.getpid()) == (0, 0)
    mfd = memfd(proc, PAGE)
    ok(map_file(f, ioas, mfd, 0, PAGE)[0])
    assert pins(proc, os.getpid()) == (1, 1)
    ok(f.ioctl(IOMMU_IOAS_CHANGE_PROCESS, change))
    child = os.fork()
    if not child:   # a process that is not the mapper takes the charge
        code = 1
        try:
            proc.pid = os.getpid()
            before = pins(proc, os.getppid()), pins(proc, proc.pid)
            ret = f.ioctl(IOMMU_IOAS_CHANGE_PROCESS, change)
            after = pins(proc, os.getppid()), pins(proc, proc.pid)
            code = 0 if (before, ret, after) == (((1, 1), (0, 0)), 0, ((0, 0), (1, 1))) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The child is gone: nobody is charged (its mm is dropped with it).
    assert pins(proc, os.getpid()) == (0, 0)
    ok(f.ioctl(IOMMU_IOAS_CHANGE_PROCESS, change))
    assert pins(proc, os.getpid()) == (1, 1)
    change_bad = proc.mem.struct(struct.Struct("<II"), 8, 1)
    check(f.ioctl(IOMMU_IOAS_CHANGE_PROCESS, change_bad), "EOPNOTSUPP")


def test_pages_of_a_gone_process_cannot_be_pinned(proc) -> None:
    """The selftest's fork_gone: a child maps its memory and exits; with no
    domain nothing was pinned, and a domain's fill must pin from its gone
    mm: EFAULT. With a domain at map time the pages were pinned then, and a
    second domain copies them."""
    f = proc.open(PATH_IOMMU)
    for with_domain in (False, True):
        ioas = alloc_ioas(f)
        if with_domain:
            mock_domain(f, ioas)
        buf = proc.mem.alloc(4 * PAGE)
        child = os.fork()
        if not child:
            code = 1
            try:
                proc.pid = os.getpid()
                a = proc.mem.struct(IOAS_MAP, 40, FIXED_RW, ioas, 0, buf, 4 * PAGE,
                                    MOCK_APERTURE_START)
                code = 0 if f.ioctl(IOMMU_IOAS_MAP, a) == 0 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        if with_domain:
            mock_domain(f, ioas)
        else:
            check(tcmd(f, MOCK_DOMAIN, ioas)[0], "EFAULT")
        # Mapped again by a live process, it pins.
        ok(f.ioctl(IOMMU_IOAS_UNMAP, proc.mem.struct(IOAS_UNMAP, 24, ioas, 0, (1 << 64) - 1)))
        ok(f.ioctl(IOMMU_IOAS_MAP, proc.mem.struct(IOAS_MAP, 40, FIXED_RW, ioas, 0, buf,
                                                   4 * PAGE, MOCK_APERTURE_START)))
        mock_domain(f, ioas)


def test_access_pages_of_a_file_are_the_mmaps(proc) -> None:
    """ACCESS_PAGES with the caller's mmap of the memfd (the selftest's
    user_copy, file variants): the pages pinned are the user pages named."""
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    mfd = memfd(proc, 4 * PAGE)
    buf = proc.mem.map_file(mfd, 4 * PAGE)
    ret, iova = map_file(f, ioas, mfd, 0, 4 * PAGE)
    ok(ret)
    ret, addr = tcmd(f, CREATE_ACCESS, ioas,
                     struct.pack("<II", 0, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES))
    ok(ret)
    data = proc.mem.read(addr + 16, 4)
    assert data is not None
    (access_fd,) = struct.unpack("<i", data)
    good = struct.pack("<IIQQQ", 0, 0, iova, 4 * PAGE, buf)
    ok(tcmd(f, ACCESS_PAGES, access_fd, good)[0])
    other = struct.pack("<IIQQQ", 0, 0, iova, 4 * PAGE, proc.mem.alloc(4 * PAGE))
    check(tcmd(f, ACCESS_PAGES, access_fd, other)[0], "EBADE")
    ok(check_refs(f, buf, 4 * PAGE, 1))        # the access pins them


ACCESS_RW, MOCK_ACCESS_RW_WRITE = 8, 1


def create_access(f: File, ioas: int, flags: int = 0) -> int:
    ret, addr = tcmd(f, CREATE_ACCESS, ioas, struct.pack("<II", 0, flags))
    ok(ret)
    data = f.proc.mem.read(addr + 16, 4)
    assert data is not None
    return int(struct.unpack("<i", data)[0])


def access_rw(f: File, access_fd: int, iova: int, length: int, uptr: int, flags: int = 0) -> int:
    return tcmd(f, ACCESS_RW, access_fd, struct.pack("<QQQI", iova, length, uptr, flags))[0]


def test_raw_access_rw_copies_through_the_file(proc) -> None:
    """ACCESS_RW over a passed memfd's area reads and writes the file's
    bytes (the daemon's fd of it), and the caller's own memory where user
    memory is mapped, in one call; the buffer is read before any write (a
    fault leaves the file as it was); a write never grows the file."""
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    mfd = memfd(proc, 2 * PAGE)
    os.pwrite(mfd, b"0123456789abcdef", 2 * PAGE - 16)
    ret, iova = map_file(f, ioas, mfd, 0, 2 * PAGE, iova=MOCK_APERTURE_START)
    ok(ret)
    user = proc.mem.alloc(b"USERPAGE" + bytes(PAGE - 8))
    ok(f.ioctl(IOMMU_IOAS_MAP, proc.mem.struct(IOAS_MAP, 40, FIXED_RW, ioas, 0, user, PAGE,
                                               iova + 2 * PAGE)))
    access_fd = create_access(f, ioas)
    buf = proc.mem.alloc(32)
    ok(access_rw(f, access_fd, iova + 2 * PAGE - 8, 16, buf))   # the file's end, then user
    assert proc.mem.read(buf, 16) == b"89abcdefUSERPAGE"
    proc.mem.write(buf, b"W" * 16)
    ok(access_rw(f, access_fd, iova + 2 * PAGE - 8, 16, buf, MOCK_ACCESS_RW_WRITE))
    assert os.pread(mfd, 16, 2 * PAGE - 16) == b"01234567" + b"W" * 8
    assert proc.mem.read(user, 8) == b"W" * 8
    # A buffer that faults: EFAULT, and the file keeps its bytes.
    check(access_rw(f, access_fd, iova, 8, 0x10, MOCK_ACCESS_RW_WRITE), "EFAULT")
    assert os.pread(mfd, 8, 0) == bytes(8)
    # Read-only area: EPERM before anything is copied.
    ok(f.ioctl(IOMMU_IOAS_UNMAP, proc.mem.struct(IOAS_UNMAP, 24, ioas, iova, 2 * PAGE)))
    ok(map_file(f, ioas, mfd, 0, 2 * PAGE, iova=iova, flags=4)[0])
    check(access_rw(f, access_fd, iova, 8, buf, MOCK_ACCESS_RW_WRITE), "EPERM")
    # Shrunk, with no domain holding the pages: past the end cannot be pinned.
    os.ftruncate(mfd, PAGE)
    check(access_rw(f, access_fd, iova + PAGE, 8, buf), "EINVAL")
    ok(access_rw(f, access_fd, iova, 8, buf))
    assert os.fstat(mfd).st_size == PAGE


def test_raw_access_rw_past_the_end_with_a_domain(proc) -> None:
    """With a domain holding the pages the copy succeeds past a shrunk
    file's end. The kernel copies the pinned folio, which keeps the bytes it
    had; the model keeps no bytes of its own, so it reads zeros there, and a
    write there goes nowhere: the file never grows."""
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    mock_domain(f, ioas)
    mfd = memfd(proc, 2 * PAGE)
    os.pwrite(mfd, b"x" * 8, PAGE)
    ret, iova = map_file(f, ioas, mfd, 0, 2 * PAGE)
    ok(ret)
    access_fd = create_access(f, ioas)
    os.ftruncate(mfd, PAGE)
    buf = proc.mem.alloc(b"y" * 8)
    ok(access_rw(f, access_fd, iova + PAGE, 8, buf))
    assert proc.mem.read(buf, 8) == bytes(8)
    proc.mem.write(buf, b"z" * 8)
    ok(access_rw(f, access_fd, iova + PAGE, 8, buf, MOCK_ACCESS_RW_WRITE))
    assert os.fstat(mfd).st_size == PAGE


# -- the journal -------------------------------------------------------------------------------

@pytest.mark.parametrize("stop", ["kill9", "sigterm"])
def test_file_pages_keep_their_pas_across_a_restart(tmp_path, daemon_factory, stop) -> None:
    """gRPC's memfds take lowest-free slots in their own space, and replay
    re-runs the calls in order (a closed session's too, up to its FORGET);
    a clean stop snapshots the allocator: the PAs come back the same."""
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="a")
    with d.client() as c:
        gone = c.open_session("gone", lease_seconds=60)
        gone_ctx = gone.open_context()
        gone_ctx.ioas_map_file(gone_ctx.ioas_alloc(), gone.open_memfd(PAGE), 0, PAGE)
        s = c.open_session("vm", lease_seconds=60, keepalive=False)
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        first = s.open_memfd(16 * PAGE, name="ram")
        iova = ctx.ioas_map_file(ioas, first, 2 * PAGE, 4 * PAGE)
        gone.close()          # its file's slot is free again
        second = s.open_memfd(PAGE)
        iova2 = ctx.ioas_map_file(ioas, second, 0, PAGE)
        second.truncate(0)
        pas = ctx.translate(ioas, iova).pa, ctx.translate(ioas, iova2).pa
        assert file_slot(pas[1]) == 0 and file_slot(pas[0]) == 1
    if stop == "kill9":
        d.proc.kill()
        d.proc.wait()
    else:
        assert d.stop() == 0
    d2 = daemon_factory("--journal", str(db), name="b")
    with d2.client() as c:
        s2 = c.attach_session(s.token, keepalive=False)
        back = s2.context(ctx.iommufd)
        assert (back.translate(ioas, iova).pa, back.translate(ioas, iova2).pa) == pas
        third = s2.open_memfd(PAGE)
        assert file_slot(back.translate(ioas, back.ioas_map_file(ioas, third, 0, PAGE)).pa) == 2
        # The truncated file came back truncated: a domain cannot pin it.
        dev = s2.open_device("0000:03:00.1")
        dev.bind(back)
        raises_errno(lambda: dev.attach(ioas), "EINVAL")
        back.ioas_unmap(ioas, iova2, PAGE)
        dev.attach(ioas)
