"""IOMMU_TEST_CMD over the raw uAPI transport (kabi.py, docs/uapi-transport.md):
struct iommu_test_cmd decoded with the kernel's size rule (min 68, size 72),
each op dispatched onto its Test* row, the answer written back as
iommufd_ucmd_respond does, the access fd handed over as a new file, ACCESS_RW
served as memmoves in the caller's memory, and the ops iommud does not model
answered as iommufd_test() answers an op it does not know. The client does
what the preload shim does (uapi_client.py); every failure asserts its errno.
"""
from __future__ import annotations

import errno as E
import struct

import pytest
from uapi_client import IOCTL, PATH_DEVICE, PATH_IOMMU, U32, File, Process, io

S = struct.Struct
IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_MAP, IOMMU_IOAS_UNMAP = (
    io(0x80), io(0x81), io(0x85), io(0x86))
IOMMU_HWPT_ALLOC, IOMMU_TEST_CMD = io(0x89), io(0xA0)
VFIO_DEVICE_BIND_IOMMUFD = io(118)
IOAS_ALLOC, IOAS_MAP, IOAS_UNMAP = S("<III"), S("<IIIIQQQ"), S("<IIQQ")
HWPT_ALLOC, BIND = S("<IIIIIIIIQII"), S("<IIiIQ")
TEST_HEAD = S("<IIII")
FIXED_RW = 7                 # FIXED_IOVA | WRITEABLE | READABLE
APERTURE = 1 << 24           # MOCK_APERTURE_START
PAGE = 4096
# iommu_test_cmd ops (iommufd_test.h, as facts).
(ADD_RESERVED, MOCK_DOMAIN, MD_CHECK_MAP, MD_CHECK_REFS, CREATE_ACCESS, DESTROY_ACCESS_PAGES,
 ACCESS_PAGES, ACCESS_RW, SET_TEMP_MEMORY_LIMIT, MOCK_DOMAIN_REPLACE, ACCESS_REPLACE_IOAS,
 MOCK_DOMAIN_FLAGS, DIRTY, MD_CHECK_IOTLB, TRIGGER_IOPF, DEV_CHECK_CACHE, TRIGGER_VEVENT,
 PASID_ATTACH, PASID_REPLACE, PASID_DETACH, PASID_CHECK_HWPT, DMABUF_GET,
 DMABUF_REVOKE) = range(1, 24)
DEV_CACHE_DEFAULT = 0xBADDAD
ACCESS_RW_WRITE, ACCESS_SYZ = 1 << 0, 1 << 16
NEEDS_PIN_PAGES = 1
DATA_SELFTEST, ALLOC_DIRTY_TRACKING = 0xDEAD, 1 << 1
USER_HOLE = 1 << 2           # header flag: the user range has a hole


def name_of(ret: int) -> str:
    return E.errorcode.get(-ret, str(ret)) if ret < 0 else f"success ({ret})"


def check(ret: int, name: str) -> None:
    __tracebackhide__ = True
    assert ret == -getattr(E, name), f"expected {name}, got {name_of(ret)}"


def ok(ret: int) -> int:
    __tracebackhide__ = True
    assert ret >= 0, f"expected success, got {name_of(ret)}"
    return ret


def cmd(op: int, obj_id: int = 0, union: bytes = b"", size: int = 72, last: int = 0,
        reserved: int = 0) -> bytes:
    """struct iommu_test_cmd: the head, the 48-byte union, `last`, padding."""
    assert len(union) <= 48
    return (TEST_HEAD.pack(size, op, obj_id, reserved) + union.ljust(48, b"\0")
            + U32.pack(last) + bytes(4))


def tcmd(f: File, op: int, obj_id: int = 0, union: bytes = b"", **kw: int) -> tuple[int, int]:
    """Issue one IOMMU_TEST_CMD; its result and the struct's address."""
    addr = f.proc.mem.alloc(cmd(op, obj_id, union, **kw))
    return f.ioctl(IOMMU_TEST_CMD, addr), addr


def union_of(f: File, addr: int) -> bytes:
    data = f.proc.mem.read(addr + 16, 48)
    assert data is not None
    return data


def alloc_ioas(f: File) -> int:
    a = f.proc.mem.struct(IOAS_ALLOC, 12, 0, 0)
    ok(f.ioctl(IOMMU_IOAS_ALLOC, a))
    return f.proc.mem.unpack(IOAS_ALLOC, a)[2]


def ioas_map(f: File, ioas: int, user_va: int, length: int, iova: int,
             flags: int = FIXED_RW) -> int:
    return f.ioctl(IOMMU_IOAS_MAP, f.proc.mem.struct(IOAS_MAP, 40, flags, ioas, 0, user_va,
                                                      length, iova))


def mock_domain(f: File, pt_id: int) -> tuple[int, int, int]:
    ret, addr = tcmd(f, MOCK_DOMAIN, pt_id)
    ok(ret)
    stdev, hwpt, idev = S("<III").unpack_from(union_of(f, addr))
    return stdev, hwpt, idev


def create_access(f: File, ioas: int, flags: int = 0) -> File:
    ret, addr = tcmd(f, CREATE_ACCESS, ioas, S("<II").pack(0xFFFF_FFFF, flags))
    ok(ret)
    (fd,) = S("<i").unpack_from(union_of(f, addr))
    assert fd in f.proc.files and fd != f.fd
    return f.proc.files[fd]


@pytest.fixture(scope="module")
def st(module_daemon_factory):
    return module_daemon_factory("--debug-selftest", "1", "--debug-fail-nth", "1",
                                 name="uapi-selftest")


@pytest.fixture(scope="module")
def plain(module_daemon_factory):
    return module_daemon_factory(name="uapi-plain")


def uapi(daemon) -> str:
    return str(daemon.socket_path.parent / "iommud.uapi.sock")


@pytest.fixture
def proc(st):
    p = Process(uapi(st))
    yield p
    p.close()


# -- the multiplexer -----------------------------------------------------------------------------

def test_without_debug_selftest_the_request_is_enotty_before_any_size_rule(plain) -> None:
    p = Process(uapi(plain))
    try:
        f = p.open(PATH_IOMMU)
        check(tcmd(f, MOCK_DOMAIN, 1)[0], "ENOTTY")
        check(tcmd(f, MOCK_DOMAIN, 1, size=8)[0], "ENOTTY")    # no EINVAL: no table entry
    finally:
        p.close()


def test_size_rule_and_unknown_ops(proc) -> None:
    f = proc.open(PATH_IOMMU)
    check(tcmd(f, SET_TEMP_MEMORY_LIMIT, 0, U32.pack(65536), size=67)[0], "EINVAL")
    ok(tcmd(f, SET_TEMP_MEMORY_LIMIT, 0, U32.pack(65536), size=68)[0])   # min: offsetofend(last)
    # A non-zero byte past the kernel's 72: E2BIG; zero bytes read as the struct.
    big = proc.mem.alloc(cmd(SET_TEMP_MEMORY_LIMIT, 0, U32.pack(65536), size=76) + b"\x01\0\0\0")
    check(f.ioctl(IOMMU_TEST_CMD, big), "E2BIG")
    zero = proc.mem.alloc(cmd(SET_TEMP_MEMORY_LIMIT, 0, U32.pack(65536), size=76) + bytes(4))
    ok(f.ioctl(IOMMU_TEST_CMD, zero))
    check(tcmd(f, SET_TEMP_MEMORY_LIMIT, 0, U32.pack(11))[0], "EINVAL")
    # An op iommufd_test() does not know, and the ones iommud does not model.
    for op in (0, 24, 0xFFFF):
        check(tcmd(f, op, 1)[0], "EOPNOTSUPP")
    # __reserved is not checked.
    ok(tcmd(f, SET_TEMP_MEMORY_LIMIT, 0, U32.pack(65536), reserved=0xFFFF)[0])


# -- mock devices ----------------------------------------------------------------------------------

def test_mock_domain_writes_back_the_three_ids_and_keeps_the_rest(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    ret, addr = tcmd(f, MOCK_DOMAIN, ioas, S("<IIII").pack(9, 9, 9, 0x55), last=0x77)
    ok(ret)
    stdev, hwpt, idev, flags = S("<IIII").unpack_from(union_of(f, addr))
    assert (stdev, idev, hwpt) == (2, 3, 4) and flags == 0x55   # stdev < idev < auto HWPT
    data = proc.mem.read(addr, 72)
    assert data is not None and TEST_HEAD.unpack_from(data)[:3] == (72, MOCK_DOMAIN, ioas)
    assert U32.unpack_from(data, 64)[0] == 0x77
    # dev_flags is read only by MOCK_DOMAIN_FLAGS (HUGE_IOVA, 1 << 1, is gone).
    check(tcmd(f, MOCK_DOMAIN_FLAGS, ioas, S("<IIII").pack(0, 0, 0, 1 << 1))[0], "EINVAL")
    ok(tcmd(f, MOCK_DOMAIN, ioas, S("<IIII").pack(0, 0, 0, 1 << 1))[0])
    check(tcmd(f, MOCK_DOMAIN, 99)[0], "ENOENT")
    # A size short of the union's out fields gets only `size` bytes back.
    ret, addr = tcmd(f, MOCK_DOMAIN, ioas, S("<III").pack(0xAA, 0xAA, 0xAA), size=68)
    ok(ret)
    assert S("<III").unpack_from(union_of(f, addr))[0] != 0xAA
    assert proc.mem.read(addr + 68, 4) == bytes(4)
    ret, addr = tcmd(f, MOCK_DOMAIN_REPLACE, stdev, U32.pack(hwpt))
    ok(ret)
    assert U32.unpack_from(union_of(f, addr))[0] == hwpt
    ok(f.ioctl(IOMMU_DESTROY, proc.mem.struct(S("<II"), 8, stdev)))
    check(tcmd(f, MOCK_DOMAIN_REPLACE, stdev, U32.pack(ioas))[0], "ENOENT")


def test_dev_check_cache(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    _, _, idev = mock_domain(f, ioas)
    for slot in range(4):
        ok(tcmd(f, DEV_CHECK_CACHE, idev, S("<II").pack(slot, DEV_CACHE_DEFAULT))[0])
    check(tcmd(f, DEV_CHECK_CACHE, idev, S("<II").pack(4, DEV_CACHE_DEFAULT))[0], "EINVAL")
    check(tcmd(f, DEV_CHECK_CACHE, idev, S("<II").pack(0, 0))[0], "EINVAL")
    check(tcmd(f, DEV_CHECK_CACHE, ioas, S("<II").pack(0, DEV_CACHE_DEFAULT))[0], "ENOENT")
    check(tcmd(f, DEV_CHECK_CACHE, 99, S("<II").pack(0, DEV_CACHE_DEFAULT))[0], "ENOENT")
    # A DEVICE that is no mock device (a vfio cdev bound to this iommufd).
    dev = proc.open(PATH_DEVICE, 1)
    b = proc.mem.struct(BIND, 16, 0, f.fd, 0, 0)
    ok(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, b))
    dev_id = proc.mem.unpack(BIND, b)[3]
    check(tcmd(f, DEV_CHECK_CACHE, dev_id, S("<II").pack(0, DEV_CACHE_DEFAULT))[0], "EINVAL")


def test_pasid_ops_write_back_pt_id(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    ret, addr = tcmd(f, MOCK_DOMAIN_FLAGS, ioas, S("<IIII").pack(0, 0, 0, 1 << 2))   # PASID
    ok(ret)
    stdev, hwpt, _ = S("<III").unpack_from(union_of(f, addr))
    ok(tcmd(f, PASID_DETACH, stdev, U32.pack(7))[0])    # nothing attached: still 0
    ok(tcmd(f, PASID_CHECK_HWPT, stdev, S("<II").pack(7, 0))[0])
    check(tcmd(f, PASID_ATTACH, stdev, S("<II").pack(7, ioas))[0], "EINVAL")   # an IOAS
    check(tcmd(f, PASID_ATTACH, 99, S("<II").pack(7, hwpt))[0], "ENOENT")
    check(tcmd(f, PASID_REPLACE, stdev, S("<II").pack(7, hwpt))[0], "EINVAL")  # not attached
    check(tcmd(f, PASID_CHECK_HWPT, stdev, S("<II").pack(7, 99))[0], "ENOENT")


# -- accesses ---------------------------------------------------------------------------------------

def test_create_access_hands_over_an_access_fd(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    acc = create_access(f, ioas)
    assert acc.describe()[:2] == (7, 0)     # FileKind.ACCESS
    check(acc.ioctl(IOMMU_IOAS_ALLOC, proc.mem.struct(IOAS_ALLOC, 12, 0, 0)), "ENOTTY")
    # The access holds its IOAS and cannot be destroyed by id (its fd holds it).
    check(f.ioctl(IOMMU_DESTROY, proc.mem.struct(S("<II"), 8, ioas)), "EBUSY")
    check(f.ioctl(IOMMU_DESTROY, proc.mem.struct(S("<II"), 8, ioas + 1)), "EBUSY")
    check(tcmd(f, CREATE_ACCESS, ioas, S("<II").pack(0, 2))[0], "EOPNOTSUPP")
    check(tcmd(f, CREATE_ACCESS, 99)[0], "ENOENT")
    # Closing the fd is the access's release: the IOAS is free again.
    acc.close()
    ok(f.ioctl(IOMMU_DESTROY, proc.mem.struct(S("<II"), 8, ioas)))


def test_access_rw_moves_bytes_through_the_caller_memory(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    mock_domain(f, ioas)
    memory = proc.mem.alloc(bytes(range(256)) * 32)                  # 2 pages behind the IOVA
    ok(ioas_map(f, ioas, memory, 2 * PAGE, APERTURE))
    acc = create_access(f, ioas)
    buf = proc.mem.alloc(64)
    # READ: 64 bytes across the two pages land in the buffer.
    ok(tcmd(f, ACCESS_RW, acc.fd, S("<QQQI").pack(APERTURE + PAGE - 32, 64, buf, 0))[0])
    assert proc.mem.read(buf, 64) == (bytes(range(256)) * 32)[PAGE - 32:PAGE + 32]
    # WRITE: the buffer's bytes land behind the IOVA.
    assert proc.mem.write(buf, b"\xEE" * 64)
    ok(tcmd(f, ACCESS_RW, acc.fd, S("<QQQI").pack(APERTURE + 8, 64, buf, ACCESS_RW_WRITE))[0])
    assert proc.mem.read(memory + 8, 64) == b"\xEE" * 64
    # SYZ: the IOVA is {u32 nth_area, u32 offset}.
    ok(tcmd(f, ACCESS_RW, acc.fd, S("<QQQI").pack(0x110 << 32, 4, buf, ACCESS_SYZ))[0])
    assert proc.mem.read(buf, 4) == bytes(range(0x10, 0x14))
    # The checks: no area, a length above 16 MiB, unknown flags, a buffer that faults.
    check(tcmd(f, ACCESS_RW, acc.fd, S("<QQQI").pack(APERTURE + 2 * PAGE, 8, buf, 0))[0],
          "ENOENT")
    check(tcmd(f, ACCESS_RW, acc.fd, S("<QQQI").pack(APERTURE, 8, buf, 1 << 3))[0], "EOPNOTSUPP")
    check(tcmd(f, ACCESS_RW, acc.fd, S("<QQQI").pack(APERTURE, (16 << 20) + 1, buf, 0))[0],
          "ENOMEM")
    check(tcmd(f, ACCESS_RW, acc.fd, S("<QQQI").pack(APERTURE, 0, buf, 0))[0], "EINVAL")
    check(tcmd(f, ACCESS_RW, acc.fd, S("<QQQI").pack(APERTURE, 8, 0xDEAD_0000, 0))[0], "EFAULT")


def test_access_ops_take_an_access_fd_and_nothing_else(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    create_access(f, ioas)
    rw = S("<QQQI").pack(APERTURE, 8, proc.mem.alloc(8), 0)
    check(tcmd(f, ACCESS_RW, f.fd, rw)[0], "EBADFD")        # an iommufd, not an access
    check(tcmd(f, ACCESS_RW, 999, rw)[0], "EBADFD")         # not open at all
    check(tcmd(f, ACCESS_RW, 0x8000_0000, rw)[0], "EBADFD")  # not an int
    proc.real_fds[998] = 0                                    # a real fd: not ours
    check(tcmd(f, ACCESS_RW, 998, rw)[0], "EBADFD")
    check(tcmd(f, DESTROY_ACCESS_PAGES, 999, U32.pack(0))[0], "EBADFD")
    check(tcmd(f, ACCESS_REPLACE_IOAS, 999, U32.pack(ioas))[0], "EBADFD")
    # The length and flags checks come before the fd's.
    check(tcmd(f, ACCESS_PAGES, 999, S("<IIQQQ").pack(0, 0, APERTURE, 17 << 20, 0))[0],
          "ENOMEM")
    check(tcmd(f, ACCESS_PAGES, 999, S("<IIQQQ").pack(2, 0, APERTURE, 8, 0))[0], "EOPNOTSUPP")


def test_access_pages_pins_and_unmap_unpins(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    memory = proc.mem.alloc(4 * PAGE)
    ok(ioas_map(f, ioas, memory, 4 * PAGE, APERTURE))
    acc = create_access(f, ioas, NEEDS_PIN_PAGES)
    plain = create_access(f, ioas)
    pages = S("<IIQQQ").pack(0, 0xFFFF_FFFF, APERTURE, PAGE, memory)
    check(tcmd(f, ACCESS_PAGES, plain.fd, pages)[0], "EOPNOTSUPP")   # no pin ops
    for item in range(2):
        ret, addr = tcmd(f, ACCESS_PAGES, acc.fd, pages)
        ok(ret)
        assert S("<II").unpack_from(union_of(f, addr)) == (0, item)  # ids from 0
    # The pinned pages must be the user pages named (EBADE).
    wrong = S("<IIQQQ").pack(0, 0, APERTURE, PAGE, memory + PAGE)
    check(tcmd(f, ACCESS_PAGES, acc.fd, wrong)[0], "EBADE")
    refs = S("<QQI")
    ok(tcmd(f, MD_CHECK_REFS, 0, refs.pack(PAGE, memory, 1))[0])
    ok(tcmd(f, DESTROY_ACCESS_PAGES, acc.fd, U32.pack(0))[0])
    check(tcmd(f, DESTROY_ACCESS_PAGES, acc.fd, U32.pack(0))[0], "ENOENT")
    # The unmap drops item 1 (the test access's unmap callback).
    ok(f.ioctl(IOMMU_IOAS_UNMAP, proc.mem.struct(IOAS_UNMAP, 24, ioas, APERTURE, 4 * PAGE)))
    check(tcmd(f, DESTROY_ACCESS_PAGES, acc.fd, U32.pack(1))[0], "ENOENT")
    ok(tcmd(f, MD_CHECK_REFS, 0, refs.pack(PAGE, memory, 0))[0])
    check(tcmd(f, MD_CHECK_REFS, 0, refs.pack(PAGE, memory, 1))[0], "EIO")
    # ACCESS_REPLACE_IOAS moves the access.
    other = alloc_ioas(f)
    ok(tcmd(f, ACCESS_REPLACE_IOAS, acc.fd, U32.pack(other))[0])
    check(tcmd(f, ACCESS_REPLACE_IOAS, acc.fd, U32.pack(99))[0], "ENOENT")


# -- domains ------------------------------------------------------------------------------------------

def test_md_check_map_and_add_reserved(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    _, hwpt, _ = mock_domain(f, ioas)
    memory = proc.mem.alloc(2 * PAGE)
    ok(ioas_map(f, ioas, memory, 2 * PAGE, APERTURE))
    ok(tcmd(f, MD_CHECK_MAP, hwpt, S("<QQQ").pack(APERTURE, 2 * PAGE, memory))[0])
    check(tcmd(f, MD_CHECK_MAP, hwpt, S("<QQQ").pack(APERTURE, PAGE, memory + PAGE))[0],
          "EINVAL")
    check(tcmd(f, MD_CHECK_MAP, ioas, S("<QQQ").pack(APERTURE, PAGE, memory))[0], "ENOENT")
    check(tcmd(f, ADD_RESERVED, ioas, S("<QQ").pack(APERTURE, PAGE))[0], "EADDRINUSE")
    ok(tcmd(f, ADD_RESERVED, ioas, S("<QQ").pack(APERTURE + 4 * PAGE, PAGE))[0])
    check(ioas_map(f, ioas, memory, PAGE, APERTURE + 4 * PAGE), "EINVAL")
    check(tcmd(f, ADD_RESERVED, ioas, S("<QQ").pack(0, 0))[0], "EINVAL")
    check(tcmd(f, ADD_RESERVED, ioas, S("<QQ").pack(1 << 63, 1 << 63 | 1))[0], "EOVERFLOW")


def hwpt_alloc(f: File, dev_id: int, pt_id: int, flags: int = 0, data: bytes | None = None
               ) -> tuple[int, int]:
    mem = f.proc.mem
    if data is None:
        a = mem.struct(HWPT_ALLOC, 48, flags, dev_id, pt_id, 0, 0, 0, 0, 0, 0, 0)
    else:
        a = mem.struct(HWPT_ALLOC, 48, flags, dev_id, pt_id, 0, 0, DATA_SELFTEST, len(data),
                       mem.alloc(data), 0, 0)
    ret = f.ioctl(IOMMU_HWPT_ALLOC, a)
    return ret, mem.unpack(HWPT_ALLOC, a)[4]


def test_hwpt_alloc_driver_data_reaches_the_mock_iommu(proc) -> None:
    """kabi's HWPT_ALLOC read the driver data and dropped it, so the mock
    IOMMU found none (EFAULT for every IOMMU_HWPT_DATA_SELFTEST allocation):
    mock_domain_alloc_paging_flags reads iotlb and pagetable_type from it."""
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    _, _, idev = mock_domain(f, ioas)
    ret, hwpt = hwpt_alloc(f, idev, ioas, ALLOC_DIRTY_TRACKING, S("<II").pack(0, 0))
    ok(ret)
    ret, huge = hwpt_alloc(f, idev, ioas, 0, S("<II").pack(0, 1))    # MOCK_IOMMUPT_HUGE
    ok(ret)
    assert hwpt and huge and hwpt != huge
    check(hwpt_alloc(f, idev, ioas, 0, S("<II").pack(0, 2))[0], "EOPNOTSUPP")
    check(hwpt_alloc(f, idev, ioas, 0, b"\0" * 3)[0], "EINVAL")
    ok(hwpt_alloc(f, idev, ioas, 0, b"\0" * 4)[0])      # iotlb alone: pagetable_type 0


def test_dirty_reads_the_bitmap_and_writes_back_the_count(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    _, _, idev = mock_domain(f, ioas)
    memory = proc.mem.alloc(8 * PAGE)
    ok(ioas_map(f, ioas, memory, 8 * PAGE, APERTURE))
    ret, hwpt = hwpt_alloc(f, idev, ioas, ALLOC_DIRTY_TRACKING)
    ok(ret)
    ok(f.ioctl(io(0x8B), proc.mem.struct(S("<IIII"), 16, 1, hwpt, 0)))   # tracking on
    bitmap = proc.mem.alloc(bytes([0b1010_0101]))
    dirty = S("<I4xQQQQQ")
    ret, addr = tcmd(f, DIRTY, hwpt, dirty.pack(0, APERTURE, 8 * PAGE, PAGE, bitmap, 0))
    ok(ret)
    assert dirty.unpack_from(union_of(f, addr))[5] == 4
    check(tcmd(f, DIRTY, hwpt, dirty.pack(0, APERTURE, 8 * PAGE, PAGE, 0xDEAD_0000, 0))[0],
          "EFAULT")
    check(tcmd(f, DIRTY, hwpt, dirty.pack(0, APERTURE, 8 * PAGE, PAGE, 0, 0))[0], "EINVAL")
    check(tcmd(f, DIRTY, hwpt, dirty.pack(0, APERTURE + 1, 8 * PAGE, PAGE, bitmap, 0))[0],
          "EINVAL")
    check(tcmd(f, DIRTY, 99, dirty.pack(0, APERTURE, 8 * PAGE, PAGE, bitmap, 0))[0], "ENOENT")
    # More pages than a 16 MiB bitmap holds: EOVERFLOW before the HWPT lookup.
    huge = (16 << 20) * 8 * 2048 + 2048
    check(tcmd(f, DIRTY, 99, dirty.pack(0, 0, huge, 2048, bitmap, 0))[0], "EOVERFLOW")


def test_a_user_hole_fails_a_map_that_pins(proc) -> None:
    """Header flag USER_HOLE (the shim found unmapped pages in the user
    range): iopt_map_user_pages pins for every domain right after placing
    the area, so the map is EFAULT, after the IOVA checks and leaving
    nothing; without a domain nothing is pinned and it maps."""
    f = proc.open(PATH_IOMMU)
    ioas, plain = alloc_ioas(f), alloc_ioas(f)
    mock_domain(f, ioas)

    def map_with_hole(ioas_id: int, iova: int) -> int:
        arg = proc.mem.struct(IOAS_MAP, 40, FIXED_RW, ioas_id, 0, 0x7000_0000, PAGE, iova)
        first = f.first_copy(IOMMU_IOAS_MAP, arg)
        assert not isinstance(first, int)
        return f.exchange(f.send(IOCTL, IOMMU_IOAS_MAP, arg, first[0], flags=USER_HOLE))

    check(map_with_hole(ioas, APERTURE), "EFAULT")
    ok(ioas_map(f, ioas, proc.mem.alloc(PAGE), PAGE, APERTURE))   # nothing stayed there
    check(map_with_hole(ioas, APERTURE), "EEXIST")                # placement comes first
    ok(map_with_hole(plain, APERTURE))


FAIL_NTH = 1 << 3            # header flag: the task's fail-nth count rides in `result`


def armed_ioctl(f: File, cmd_value: int, arg: int, nth: int) -> tuple[int, int]:
    """An ioctl with FAIL_NTH armed at `nth`: its result, and the reply's
    `arg` (what the task's fail-nth file reads afterwards)."""
    first = f.first_copy(cmd_value, arg)
    assert not isinstance(first, int)
    seq = f.send(IOCTL, cmd_value, arg, first[0], flags=FAIL_NTH, result=nth)
    hdr, body, fds = f.recv()
    assert hdr[1] == 5 and hdr[5] == seq, hdr    # a REPLY, no NEED for IOAS_ALLOC
    return f.apply(hdr[9], body, fds), hdr[7]


def test_fail_nth_walks_the_steps_of_one_ioctl(proc, plain) -> None:
    """FAIL_NTH (the shim's emulated /proc/self/task/T/fail-nth): step N of
    the ioctl fails ENOMEM and nothing is left (0); fewer steps leave N minus
    the steps taken. A daemon without debug_fail_nth refuses it (EPERM)."""
    f = proc.open(PATH_IOMMU)
    a = proc.mem.struct(IOAS_ALLOC, 12, 0, 0)
    ret, left = armed_ioctl(f, IOMMU_IOAS_ALLOC, a, 1)
    check(ret, "ENOMEM")
    assert left == 0
    ret, left = armed_ioctl(f, IOMMU_IOAS_ALLOC, a, 5)
    ok(ret)
    assert left == 4 and proc.mem.unpack(IOAS_ALLOC, a)[2] == 1   # one step: the object id
    other = Process(uapi(plain))
    try:
        g = other.open(PATH_IOMMU)
        ret, left = armed_ioctl(g, IOMMU_IOAS_ALLOC, other.mem.struct(IOAS_ALLOC, 12, 0, 0), 3)
        check(ret, "EPERM")
        assert left == 3
    finally:
        other.close()
