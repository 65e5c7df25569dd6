"""The raw uAPI transport (docs/uapi-transport.md) against real daemons: a
client that does what the preload shim does (uapi_client.py) opens emulated
files and issues kernel ioctls with struct bytes built by hand, answering the
daemon's NEEDs from its fake memory. Every ioctl the transport maps succeeds
once; the size, argsz and request-value rules, fd arguments, faults, release
at EOF, uid isolation, the access policy and malformed records each fail with
the exact errno the kernel gives (or a closed connection)."""
from __future__ import annotations

import errno as E
import json
import os
import pathlib
import socket
import struct
import subprocess
import sys
import tempfile

import pytest
from uapi_client import (
    DESCRIBE,
    GIVE,
    HDR,
    IOCTL,
    MAGIC,
    NEED,
    OPEN,
    PATH_CONTAINER,
    PATH_DEVICE,
    PATH_GROUP,
    PATH_IOMMU,
    REPLY,
    U32,
    File,
    Process,
    io,
)

from iommud_wire import pb

S = struct.Struct
DESTROY, IOAS_ALLOC, ALLOW_IOVAS = S("<II"), S("<III"), S("<IIIIQ")
IOAS_COPY, IOVA_RANGES, IOAS_MAP = S("<IIIIQQQ"), S("<IIIIQQ"), S("<IIIIQQQ")
IOAS_UNMAP, OPTION, VFIO_IOAS = S("<IIQQ"), S("<IIHHIQ"), S("<IIHH")
HWPT_ALLOC, HW_INFO = S("<IIIIIIIIQII"), S("<IIIIQIB3sQ")
SET_DIRTY, GET_DIRTY, INVALIDATE = S("<IIII"), S("<IIIIQQQQ"), S("<IIQIIII")
FAULT_ALLOC, CHANGE_PROCESS = S("<IIII"), S("<II")
IOMMU_INFO, DMA_MAP, DMA_UNMAP, DMA_UNMAP_BITMAP = S("<IIQII"), S("<IIQQQ"), S("<IIQQ"), \
    S("<IIQQQQQ")
DIRTY_PAGES, DIRTY_GET = S("<II"), S("<IIQQQQQ")
GROUP_STATUS, DEVICE_INFO, REGION_INFO, IRQ_INFO = S("<II"), S("<IIIIII"), S("<IIIIQQ"), \
    S("<IIII")
BIND, ATTACH, DETACH = S("<IIiIQ"), S("<IIII"), S("<III")
RANGE = S("<QQ")

(IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_ALLOW_IOVAS, IOMMU_IOAS_COPY,
 IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_MAP, IOMMU_IOAS_UNMAP, IOMMU_OPTION, IOMMU_VFIO_IOAS,
 IOMMU_HWPT_ALLOC, IOMMU_GET_HW_INFO, IOMMU_HWPT_SET_DIRTY_TRACKING,
 IOMMU_HWPT_GET_DIRTY_BITMAP, IOMMU_HWPT_INVALIDATE, IOMMU_FAULT_QUEUE_ALLOC) = (
    io(nr) for nr in range(0x80, 0x8F))
IOMMU_IOAS_CHANGE_PROCESS, IOMMU_TEST_CMD = io(0x92), io(0xA0)
IOMMU_IOAS_MAP_FILE, IOMMU_IOAS_NOIOMMU_GET_PA = io(0x8F), io(0x95)
(VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU, VFIO_GROUP_GET_STATUS,
 VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_GROUP_GET_DEVICE_FD,
 VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_GET_IRQ_INFO,
 VFIO_DEVICE_SET_IRQS, VFIO_DEVICE_RESET, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA,
 VFIO_IOMMU_UNMAP_DMA) = (io(nr) for nr in range(100, 115))
VFIO_IOMMU_DIRTY_PAGES = io(117)
VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_DETACH_IOMMUFD_PT = (
    io(118), io(119), io(120))

RW = 7            # FIXED_IOVA | WRITEABLE | READABLE
UVA = 0x7F00_0000_0000
NVME, NVME_GROUP = "0000:03:00.0", 12   # vfio0 in the default topology: dirty tracking, PASID
NVME2_GROUP = 13
#: The default topology's devices on vfio-pci, in address order: vfio0, vfio1, ...
VFIO_DEVICES = ["0000:03:00.0", "0000:03:00.1", "0000:04:10.0", "0000:04:10.1",
                "0000:04:10.2", "0000:05:00.0", "0000:05:00.1", "0000:07:01.0",
                "0000:07:02.0", "0000:0a:00.0"]


def errno_name(ret: int) -> str:
    return E.errorcode.get(-ret, str(ret)) if ret < 0 else f"success ({ret})"


def check(ret: int, name: str) -> None:
    """The call failed with exactly `name`."""
    __tracebackhide__ = True
    assert ret == -getattr(E, name), f"expected {name}, got {errno_name(ret)}"


def ok(ret: int) -> int:
    __tracebackhide__ = True
    assert ret >= 0, f"expected success, got {errno_name(ret)}"
    return ret


def uapi_path(daemon) -> str:
    return str(daemon.socket_path.parent / "iommud.uapi.sock")


@pytest.fixture(scope="module")
def d(module_daemon_factory):
    """vfio_mode type1 (the default): /dev/vfio/vfio is a legacy container."""
    return module_daemon_factory(name="uapi")


@pytest.fixture(scope="module")
def dc(module_daemon_factory):
    """vfio_mode iommufd: /dev/vfio/vfio is an iommufd (vfio_compat.c)."""
    return module_daemon_factory("--vfio-mode", "iommufd", name="uapi-compat")


@pytest.fixture
def proc(d):
    p = Process(uapi_path(d))
    yield p
    p.close()


@pytest.fixture
def cproc(dc):
    p = Process(uapi_path(dc))
    yield p
    p.close()


# -- small wrappers: one struct in the process's memory per call ---------------------------------

def alloc_ioas(f: File) -> int:
    p = f.proc
    a = p.mem.struct(IOAS_ALLOC, 12, 0, 0)
    ok(f.ioctl(IOMMU_IOAS_ALLOC, a))
    return p.mem.unpack(IOAS_ALLOC, a)[2]


def ioas_map(f: File, ioas: int, iova: int, length: int, flags: int = RW) -> tuple[int, int]:
    a = f.proc.mem.struct(IOAS_MAP, 40, flags, ioas, 0, UVA + iova, length, iova)
    ret = f.ioctl(IOMMU_IOAS_MAP, a)
    return ret, f.proc.mem.unpack(IOAS_MAP, a)[6]


def ioas_unmap(f: File, ioas: int, iova: int, length: int) -> tuple[int, int]:
    a = f.proc.mem.struct(IOAS_UNMAP, 24, ioas, iova, length)
    ret = f.ioctl(IOMMU_IOAS_UNMAP, a)
    return ret, f.proc.mem.unpack(IOAS_UNMAP, a)[3]


def iova_ranges(f: File, ioas: int, room: int) -> tuple[int, int, list[tuple[int, int]], int]:
    """(ret, num_iovas written back, the room's ranges, out_iova_alignment)."""
    mem = f.proc.mem
    arr = mem.alloc(16 * room + 16)
    a = mem.struct(IOVA_RANGES, 32, ioas, room, 0, arr, 0)
    ret = f.ioctl(IOMMU_IOAS_IOVA_RANGES, a)
    _, _, num, _, _, align = mem.unpack(IOVA_RANGES, a)
    data = mem.read(arr, 16 * room) or b""
    return ret, num, [RANGE.unpack_from(data, 16 * i) for i in range(room)], align


def bind(dev: File, ictx: File) -> int:
    a = dev.proc.mem.struct(BIND, 24, 0, ictx.fd, 0, 0)
    ok(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, a))
    return dev.proc.mem.unpack(BIND, a)[3]


def attach(dev: File, pt_id: int) -> int:
    a = dev.proc.mem.struct(ATTACH, 12, 0, pt_id, 0)
    ok(dev.ioctl(VFIO_DEVICE_ATTACH_IOMMUFD_PT, a))
    return dev.proc.mem.unpack(ATTACH, a)[2]


def info(daemon) -> pb.GetInfoResponse:
    with daemon.client() as c:
        return c.info()


def groups(daemon) -> dict[int, pb.IommuGroup]:
    with daemon.client() as c, c.open_session("check") as s:
        return {g.group: g for g in s.list_groups()}


def sync(f: File) -> None:
    """A round trip on an open file: the daemon serves every hang-up before it."""
    f.describe()


# -- the iommufd ioctls --------------------------------------------------------------------------

def test_open_and_describe_an_iommufd(proc) -> None:
    f = proc.open(PATH_IOMMU)
    assert f.token and f.describe() == (PATH_IOMMU, 0, f.token)


def test_ioas_alloc_map_copy_unmap_and_destroy(proc) -> None:
    f = proc.open(PATH_IOMMU)
    a, b = alloc_ioas(f), alloc_ioas(f)
    assert (a, b) == (1, 2)
    assert ioas_map(f, a, 0x100000, 0x200000) == (0, 0x100000)
    ret, allocated = ioas_map(f, a, 0, 0x1000, flags=6)   # no FIXED_IOVA: the daemon picks
    ok(ret)
    assert allocated and allocated % 0x1000 == 0
    c = proc.mem.struct(IOAS_COPY, 40, RW, b, a, 0x200000, 0x400000, 0x100000)
    ok(f.ioctl(IOMMU_IOAS_COPY, c))
    assert proc.mem.unpack(IOAS_COPY, c)[5] == 0x400000
    assert ioas_unmap(f, a, 0, (1 << 64) - 1) == (0, 0x201000)   # unmap-all: the bytes come back
    assert ioas_unmap(f, b, 0x400000, 0x200000) == (0, 0x200000)
    ok(f.ioctl(IOMMU_DESTROY, proc.mem.struct(DESTROY, 8, b)))
    check(f.ioctl(IOMMU_DESTROY, proc.mem.struct(DESTROY, 8, b)), "ENOENT")


def test_a_failed_map_writes_nothing_back(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    ok(ioas_map(f, ioas, 0x100000, 0x1000)[0])
    a = proc.mem.struct(IOAS_MAP, 40, RW, ioas, 0, UVA, 0x1000, 0x100000)
    before = proc.mem.read(a, 40)
    check(f.ioctl(IOMMU_IOAS_MAP, a), "EEXIST")
    assert proc.mem.read(a, 40) == before


def test_iova_ranges_fills_what_fits_and_reports_the_count(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    ret, num, ranges, align = iova_ranges(f, ioas, 4)
    ok(ret)
    assert num == 1 and ranges[0] == (0, (1 << 64) - 1) and ranges[1] == (0, 0) and align == 1
    # A device attached reserves its MSI window and its aperture's complement:
    # two ranges. Room for one: EMSGSIZE, the first written, the count back.
    dev = proc.open(PATH_DEVICE, 0)
    bind(dev, f)
    attach(dev, ioas)
    ret, num, ranges, align = iova_ranges(f, ioas, 1)
    check(ret, "EMSGSIZE")
    assert num == 2 and ranges == [(0, 0xFEDFFFFF)] and align == 0x1000
    ret, num, ranges, _ = iova_ranges(f, ioas, 3)
    ok(ret)
    assert num == 2 and ranges == [(0, 0xFEDFFFFF), (0xFEF00000, (1 << 48) - 1), (0, 0)]


def test_allow_iovas_reads_its_array_and_checks_it(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    bad = proc.mem.alloc(RANGE.pack(0x2000, 0x1000))
    check(f.ioctl(IOMMU_IOAS_ALLOW_IOVAS, proc.mem.struct(ALLOW_IOVAS, 24, ioas, 1, 0, bad)),
          "EINVAL")
    check(f.ioctl(IOMMU_IOAS_ALLOW_IOVAS, proc.mem.struct(ALLOW_IOVAS, 24, ioas, 1, 1, bad)),
          "EOPNOTSUPP")
    # num_iovas 0 clears the list without reading any array.
    ok(f.ioctl(IOMMU_IOAS_ALLOW_IOVAS, proc.mem.struct(ALLOW_IOVAS, 24, ioas, 0, 0, 0)))


def test_option_writes_back_val64_only(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    get = proc.mem.struct(OPTION, 24, 1, 1, 0, ioas, 0xAAAA)   # HUGE_PAGES, GET
    ok(f.ioctl(IOMMU_OPTION, get))
    assert proc.mem.unpack(OPTION, get) == (24, 1, 1, 0, ioas, 1)
    ok(f.ioctl(IOMMU_OPTION, proc.mem.struct(OPTION, 24, 1, 0, 0, ioas, 0)))   # SET 0
    get = proc.mem.struct(OPTION, 24, 1, 1, 0, ioas, 0xAAAA)
    ok(f.ioctl(IOMMU_OPTION, get))
    assert proc.mem.unpack(OPTION, get)[5] == 0
    check(f.ioctl(IOMMU_OPTION, proc.mem.struct(OPTION, 24, 9, 1, 0, 0, 0)), "EOPNOTSUPP")


def test_vfio_ioas_get_set_clear(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    check(f.ioctl(IOMMU_VFIO_IOAS, proc.mem.struct(VFIO_IOAS, 12, 0, 0, 0)), "ENODEV")
    setting = proc.mem.struct(VFIO_IOAS, 12, ioas, 1, 0)
    ok(f.ioctl(IOMMU_VFIO_IOAS, setting))
    get = proc.mem.struct(VFIO_IOAS, 12, 0, 0, 0)
    ok(f.ioctl(IOMMU_VFIO_IOAS, get))
    assert proc.mem.unpack(VFIO_IOAS, get) == (12, ioas, 0, 0)
    ok(f.ioctl(IOMMU_VFIO_IOAS, proc.mem.struct(VFIO_IOAS, 12, 0, 2, 0)))   # CLEAR
    check(f.ioctl(IOMMU_VFIO_IOAS, proc.mem.struct(VFIO_IOAS, 12, 0, 0, 0)), "ENODEV")


def test_change_process(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ok(f.ioctl(IOMMU_IOAS_CHANGE_PROCESS, proc.mem.struct(CHANGE_PROCESS, 8, 0)))
    ioas = alloc_ioas(f)
    ok(ioas_map(f, ioas, 0x100000, 0x1000)[0])
    check(f.ioctl(IOMMU_IOAS_CHANGE_PROCESS, proc.mem.struct(CHANGE_PROCESS, 8, 0)), "EINVAL")


def test_vfio_ioctls_an_iommufd_serves(proc) -> None:
    """iommufd_vfio_ioctl: 100-102 and 112-114 on /dev/iommu; the rest ENOTTY."""
    f = proc.open(PATH_IOMMU)
    assert f.ioctl(VFIO_GET_API_VERSION) == 0
    assert f.ioctl(VFIO_CHECK_EXTENSION, 3) == 1      # TYPE1v2
    assert f.ioctl(VFIO_CHECK_EXTENSION, 2) == 0      # SPAPR
    assert f.ioctl(VFIO_CHECK_EXTENSION, 1 << 40) == 0
    check(f.ioctl(VFIO_SET_IOMMU, 3), "ENODEV")       # no compat IOAS yet
    check(f.ioctl(VFIO_IOMMU_GET_INFO, proc.mem.struct(IOMMU_INFO, 24, 0, 0, 0, 0)), "ENODEV")
    ioas = alloc_ioas(f)
    ok(f.ioctl(IOMMU_VFIO_IOAS, proc.mem.struct(VFIO_IOAS, 12, ioas, 1, 0)))
    ok(f.ioctl(VFIO_SET_IOMMU, 3))
    ok(f.ioctl(VFIO_IOMMU_MAP_DMA, proc.mem.struct(DMA_MAP, 32, 3, UVA, 0x100000, 0x2000)))
    u = proc.mem.struct(DMA_UNMAP, 24, 0, 0x100000, 0x2000)
    ok(f.ioctl(VFIO_IOMMU_UNMAP_DMA, u))
    assert proc.mem.unpack(DMA_UNMAP, u)[3] == 0x2000
    for cmd in (VFIO_GROUP_GET_STATUS, VFIO_GROUP_UNSET_CONTAINER, VFIO_DEVICE_GET_INFO,
                VFIO_DEVICE_RESET, VFIO_IOMMU_DIRTY_PAGES, VFIO_DEVICE_BIND_IOMMUFD):
        check(f.ioctl(cmd, proc.mem.struct(GROUP_STATUS, 8, 0)), "ENOTTY")


# -- size and request-value rules (iommufd_fops_ioctl, the VFIO argsz rules) ------------------------

#: (request, min, kernel size) of every iommufd ioctl the transport maps.
SIZED = [(IOMMU_DESTROY, 8, 8), (IOMMU_IOAS_ALLOC, 12, 12), (IOMMU_IOAS_ALLOW_IOVAS, 24, 24),
         (IOMMU_IOAS_COPY, 40, 40), (IOMMU_IOAS_IOVA_RANGES, 32, 32), (IOMMU_IOAS_MAP, 40, 40),
         (IOMMU_IOAS_UNMAP, 24, 24), (IOMMU_OPTION, 24, 24), (IOMMU_VFIO_IOAS, 12, 12),
         (IOMMU_HWPT_ALLOC, 24, 48), (IOMMU_GET_HW_INFO, 32, 40),
         (IOMMU_HWPT_SET_DIRTY_TRACKING, 16, 16), (IOMMU_HWPT_GET_DIRTY_BITMAP, 48, 48),
         (IOMMU_HWPT_INVALIDATE, 32, 32), (IOMMU_FAULT_QUEUE_ALLOC, 16, 16),
         (IOMMU_IOAS_CHANGE_PROCESS, 8, 8), (IOMMU_IOAS_MAP_FILE, 40, 40),
         (IOMMU_IOAS_NOIOMMU_GET_PA, 40, 40)]


@pytest.mark.parametrize(("cmd", "minsz", "size"), SIZED, ids=[hex(c) for c, _, _ in SIZED])
def test_size_below_min_is_einval_and_a_nonzero_tail_e2big(proc, cmd, minsz, size) -> None:
    f = proc.open(PATH_IOMMU)
    check(f.ioctl(cmd, proc.mem.alloc(U32.pack(minsz - 1) + bytes(size))), "EINVAL")
    tail = proc.mem.alloc(U32.pack(size + 1) + bytes(size - 4) + b"\x01")
    check(f.ioctl(cmd, tail), "E2BIG")
    far = bytearray(U32.pack(4096) + bytes(4092))
    far[4000] = 1   # past the first 512 bytes: the shim's TAIL_NONZERO flag
    check(f.ioctl(cmd, proc.mem.alloc(far)), "E2BIG")


def test_a_zero_tail_acts_like_the_kernel_size(proc) -> None:
    f = proc.open(PATH_IOMMU)
    # cmd_ex_fail: DESTROY with a zero tail reaches the handler.
    check(f.ioctl(IOMMU_DESTROY, proc.mem.alloc(U32.pack(9) + bytes(5))), "ENOENT")
    a = proc.mem.alloc(U32.pack(13) + bytes(9))   # IOAS_ALLOC, size 13
    ok(f.ioctl(IOMMU_IOAS_ALLOC, a))
    data = proc.mem.read(a, 13)
    assert data is not None and IOAS_ALLOC.unpack(data[:12])[2] == 1 and data[12] == 0
    # A size between min and the kernel's size: the rest reads as zero and only
    # `size` bytes come back (HWPT_ALLOC's min is 24 of 48).
    g = proc.mem.alloc(U32.pack(32) + bytes(28) + b"\xaa" * 16)
    check(f.ioctl(IOMMU_HWPT_ALLOC, g), "ENOENT")   # dev_id 0
    assert proc.mem.read(g + 32, 16) == b"\xaa" * 16


HOLES = [io(nr) for nr in range(0x96, 0xA0)] + [
    IOMMU_TEST_CMD,        # the selftest multiplexer: only with debug_selftest
    io(0x7F),              # T cmd_fail
    (2 << 30) | (8 << 16) | 0x3B80,   # IOMMU_DESTROY spelled _IOR
    0x5B80,                # another ioctl type with the same number
]


@pytest.mark.parametrize("cmd", HOLES, ids=[hex(c) for c in HOLES])
def test_holes_and_other_spellings_are_enotty(proc, cmd) -> None:
    f = proc.open(PATH_IOMMU)
    check(f.ioctl(cmd, proc.mem.struct(IOAS_MAP, 40, 0, 0, 0, 0, 0, 0)), "ENOTTY")


def test_noiommu_get_pa_is_eopnotsupp_past_its_size_rules(proc) -> None:
    """iommud answers as a kernel without CONFIG_IOMMUFD_NOIOMMU: the op is in
    the table (size rules above), its stub EOPNOTSUPP."""
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    ok(f.ioctl(IOMMU_IOAS_MAP, proc.mem.struct(IOAS_MAP, 40, 3, ioas, 0, UVA, 0x1000, 0x100000)))
    get_pa = struct.Struct("<IIIIQQQ")
    check(f.ioctl(IOMMU_IOAS_NOIOMMU_GET_PA,
                  proc.mem.struct(get_pa, 40, 0, ioas, 0, 0x100000, 0x1000, 0)), "EOPNOTSUPP")


def test_vfio_argsz_rules(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    ok(f.ioctl(IOMMU_VFIO_IOAS, proc.mem.struct(VFIO_IOAS, 12, ioas, 1, 0)))
    check(f.ioctl(VFIO_IOMMU_MAP_DMA, proc.mem.struct(DMA_MAP, 31, 3, UVA, 0x100000, 0x1000)),
          "EINVAL")
    check(f.ioctl(VFIO_IOMMU_MAP_DMA, proc.mem.struct(DMA_MAP, 0, 3, UVA, 0x100000, 0x1000)),
          "EINVAL")
    # A larger argsz is accepted and its extra bytes ignored (no E2BIG in VFIO).
    big = proc.mem.alloc(DMA_MAP.pack(64, 3, UVA, 0x100000, 0x1000) + b"\xff" * 32)
    ok(f.ioctl(VFIO_IOMMU_MAP_DMA, big))
    check(f.ioctl(VFIO_IOMMU_GET_INFO, proc.mem.struct(IOMMU_INFO, 15, 0, 0, 0, 0)), "EINVAL")
    check(f.ioctl(VFIO_IOMMU_UNMAP_DMA, proc.mem.struct(DMA_UNMAP, 23, 0, 0x100000, 0x1000)),
          "EINVAL")


# -- the device path: cdev, bind, HWPT, dirty tracking, info --------------------------------------

def test_device_cdev_bind_attach_and_hw_info(proc, d) -> None:
    ictx = proc.open(PATH_IOMMU)
    dev = proc.open(PATH_DEVICE, 0)
    assert dev.describe() == (PATH_DEVICE, 0, dev.token)
    ioas = alloc_ioas(ictx)
    dev_id = bind(dev, ictx)
    assert dev_id == 2
    # GET_HW_INFO: the VT-d data, zero-filled up to data_len; data_len back is the driver's.
    data = proc.mem.alloc(b"\xee" * 64)
    h = proc.mem.struct(HW_INFO, 40, 0, dev_id, 64, data, 0, 0, b"\0\0\0", 0)
    ok(ictx.ioctl(IOMMU_GET_HW_INFO, h))
    _, _, _, data_len, _, dtype, pasid, _, caps = proc.mem.unpack(HW_INFO, h)
    assert (data_len, dtype, pasid, caps & 1) == (24, 1, 20, 1)
    got = proc.mem.read(data, 64)
    assert got is not None and got[24:] == bytes(40) and got[:24] != bytes(24)
    # HWPT_ALLOC with dirty tracking, then ATTACH writes back the HWPT attached.
    hw = proc.mem.struct(HWPT_ALLOC, 48, 2, dev_id, ioas, 0, 0, 0, 0, 0, 0, 0)
    ok(ictx.ioctl(IOMMU_HWPT_ALLOC, hw))
    hwpt = proc.mem.unpack(HWPT_ALLOC, hw)[4]
    assert attach(dev, hwpt) == hwpt
    assert ioas_map(ictx, ioas, 0x100000, 0x4000)[0] == 0
    ok(ictx.ioctl(IOMMU_HWPT_SET_DIRTY_TRACKING, proc.mem.struct(SET_DIRTY, 16, 1, hwpt, 0)))
    # GET_DIRTY_BITMAP sets bits and clears none: a bit the caller had set stays,
    # and nothing past the bitmap's 1 byte (4 pages) is written.
    bitmap = proc.mem.alloc(b"\x08\x55")
    ok(ictx.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP,
                  proc.mem.struct(GET_DIRTY, 48, hwpt, 0, 0, 0x100000, 0x4000, 0x1000, bitmap)))
    assert proc.mem.read(bitmap, 2) == b"\x08\x55"
    # DETACH, then the HWPT can go.
    ok(dev.ioctl(VFIO_DEVICE_DETACH_IOMMUFD_PT, proc.mem.struct(DETACH, 8, 0, 0)))
    ok(ictx.ioctl(IOMMU_DESTROY, proc.mem.struct(DESTROY, 8, hwpt)))
    assert groups(d)[NVME_GROUP].owner == pb.GROUP_OWNER_IOMMUFD


def test_device_info_regions_and_irqs(proc) -> None:
    ictx = proc.open(PATH_IOMMU)
    dev = proc.open(PATH_DEVICE, 0)
    # An unbound cdev answers EINVAL to everything but BIND (vfio_device_fops_unl_ioctl).
    check(dev.ioctl(VFIO_DEVICE_GET_INFO, proc.mem.struct(DEVICE_INFO, 24, 0, 0, 0, 0, 0)),
          "EINVAL")
    check(dev.ioctl(io(0x7F), proc.mem.struct(DEVICE_INFO, 24, 0, 0, 0, 0, 0)), "EINVAL")
    bind(dev, ictx)
    a = proc.mem.struct(DEVICE_INFO, 24, 0xFF, 0, 0, 0xFF, 0xFF)
    ok(dev.ioctl(VFIO_DEVICE_GET_INFO, a))
    assert proc.mem.unpack(DEVICE_INFO, a) == (24, 2, 9, 5, 0, 0)   # PCI, 9 regions, 5 irqs
    short = proc.mem.alloc(DEVICE_INFO.pack(16, 0, 0, 0, 0xAAAA, 0xAAAA))
    ok(dev.ioctl(VFIO_DEVICE_GET_INFO, short))
    assert proc.mem.unpack(DEVICE_INFO, short) == (16, 2, 9, 5, 0xAAAA, 0xAAAA)
    check(dev.ioctl(VFIO_DEVICE_GET_INFO, proc.mem.struct(DEVICE_INFO, 15, 0, 0, 0, 0, 0)),
          "EINVAL")
    regions = {}
    for index in range(8):
        r = proc.mem.struct(REGION_INFO, 32, 0, index, 0, 0, 0)
        ok(dev.ioctl(VFIO_DEVICE_GET_REGION_INFO, r))
        regions[index] = proc.mem.unpack(REGION_INFO, r)
    assert regions[0] == (32, 7, 0, 0, 0x4000, 0)                 # BAR0: R/W/MMAP, 16 KiB
    assert regions[1][1] == regions[6][1] == 0 and regions[6][4] == 0
    assert regions[7] == (32, 3, 7, 0, 4096, 7 << 40)             # config space
    for index in (8, 9):   # no VGA on an NVMe drive; no device-specific regions
        check(dev.ioctl(VFIO_DEVICE_GET_REGION_INFO,
                        proc.mem.struct(REGION_INFO, 32, 0, index, 0, 0, 0)), "EINVAL")
    irqs = {}
    for index in range(5):
        r = proc.mem.struct(IRQ_INFO, 16, 0, index, 0)
        ok(dev.ioctl(VFIO_DEVICE_GET_IRQ_INFO, r))
        irqs[index] = proc.mem.unpack(IRQ_INFO, r)[1:]
    assert irqs == {0: (7, 0, 1), 1: (9, 1, 1), 2: (9, 2, 0), 3: (9, 3, 1), 4: (9, 4, 1)}
    check(dev.ioctl(VFIO_DEVICE_GET_IRQ_INFO, proc.mem.struct(IRQ_INFO, 16, 0, 5, 0)), "EINVAL")
    # What a device fd does not do: interrupts, reset, other vfio-pci ioctls.
    check(dev.ioctl(VFIO_DEVICE_SET_IRQS, proc.mem.alloc(S("<IIIII").pack(20, 0x24, 0, 0, 1))),
          "ENOTTY")
    check(dev.ioctl(VFIO_DEVICE_RESET), "ENOTTY")
    check(dev.ioctl(io(0x7F), proc.mem.struct(DEVICE_INFO, 24, 0, 0, 0, 0, 0)), "ENOTTY")


def test_bind_and_attach_size_rules(proc) -> None:
    ictx = proc.open(PATH_IOMMU)
    dev = proc.open(PATH_DEVICE, 1)
    check(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, proc.mem.struct(BIND, 15, 0, ictx.fd, 0, 0)),
          "EINVAL")
    tail = proc.mem.alloc(BIND.pack(25, 0, ictx.fd, 0, 0) + b"\x01")
    check(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, tail), "E2BIG")
    check(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, proc.mem.struct(BIND, 24, 2, ictx.fd, 0, 0)),
          "EINVAL")   # unknown flag
    check(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, proc.mem.struct(BIND, 24, 0, -1, 0, 0)), "EINVAL")
    bind(dev, ictx)
    ioas = alloc_ioas(ictx)
    check(dev.ioctl(VFIO_DEVICE_ATTACH_IOMMUFD_PT, proc.mem.struct(ATTACH, 11, 0, ioas, 0)),
          "EINVAL")
    check(dev.ioctl(VFIO_DEVICE_ATTACH_IOMMUFD_PT, proc.mem.struct(ATTACH, 12, 1, ioas, 0)),
          "EINVAL")   # a PASID attach needs argsz 16
    check(dev.ioctl(VFIO_DEVICE_DETACH_IOMMUFD_PT, proc.mem.struct(DETACH, 7, 0, 0)), "EINVAL")
    check(dev.ioctl(VFIO_DEVICE_DETACH_IOMMUFD_PT, proc.mem.struct(DETACH, 8, 1, 0)), "EINVAL")


def test_hwpt_invalidate_writes_back_entry_num_on_failure(proc) -> None:
    ictx = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(ictx)
    entries = proc.mem.alloc(bytes(48))
    a = proc.mem.struct(INVALIDATE, 32, ioas, entries, 0, 24, 2, 0)
    check(ictx.ioctl(IOMMU_HWPT_INVALIDATE, a), "EINVAL")   # an IOAS takes no invalidation
    assert proc.mem.unpack(INVALIDATE, a)[5] == 0
    a = proc.mem.struct(INVALIDATE, 32, 99, entries, 0, 24, 2, 0)
    check(ictx.ioctl(IOMMU_HWPT_INVALIDATE, a), "ENOENT")
    assert proc.mem.unpack(INVALIDATE, a)[5] == 0
    a = proc.mem.struct(INVALIDATE, 32, ioas, 0xDEAD_0000, 0, 24, 2, 0)   # entries fault
    check(ictx.ioctl(IOMMU_HWPT_INVALIDATE, a), "EFAULT")
    assert proc.mem.unpack(INVALIDATE, a)[5] == 0
    a = proc.mem.struct(INVALIDATE, 32, ioas, 0, 0, 24, 2, 0)   # entries without a pointer
    check(ictx.ioctl(IOMMU_HWPT_INVALIDATE, a), "EINVAL")
    a = proc.mem.struct(INVALIDATE, 32, ioas, entries, 0, 24, 2, 1)
    check(ictx.ioctl(IOMMU_HWPT_INVALIDATE, a), "EOPNOTSUPP")
    assert proc.mem.unpack(INVALIDATE, a)[5] == 0


def test_fault_queue_alloc_hands_over_an_fd(proc) -> None:
    ictx = proc.open(PATH_IOMMU)
    a = proc.mem.struct(FAULT_ALLOC, 16, 0, 0, 0xFFFF_FFFF)
    ok(ictx.ioctl(IOMMU_FAULT_QUEUE_ALLOC, a))
    _, _, fault_id, fault_fd = proc.mem.unpack(FAULT_ALLOC, a)
    assert fault_id == 1 and fault_fd in proc.files and fault_fd != ictx.fd
    fq = proc.files[fault_fd]
    assert fq.describe() == (6, fault_id, fq.token)
    check(fq.ioctl(IOMMU_IOAS_ALLOC, proc.mem.struct(IOAS_ALLOC, 12, 0, 0)), "ENOTTY")
    check(ictx.ioctl(IOMMU_FAULT_QUEUE_ALLOC, proc.mem.struct(FAULT_ALLOC, 16, 1, 0, 0)),
          "EOPNOTSUPP")


# -- faults ------------------------------------------------------------------------------------------

def test_faults_are_efault_and_change_nothing(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    arr = proc.mem.alloc(RANGE.pack(0x10000, 0x1FFFF))
    ok(f.ioctl(IOMMU_IOAS_ALLOW_IOVAS, proc.mem.struct(ALLOW_IOVAS, 24, ioas, 1, 0, arr)))
    # The array runs past its allocation: the GIVE reports a fault.
    check(f.ioctl(IOMMU_IOAS_ALLOW_IOVAS, proc.mem.struct(ALLOW_IOVAS, 24, ioas, 2, 0, arr)),
          "EFAULT")
    ret, allocated = ioas_map(f, ioas, 0, 0x1000, flags=6)   # the old list stands
    ok(ret)
    assert 0x10000 <= allocated <= 0x1F000
    # The shim's own first copy: an unmapped struct never reaches the daemon.
    check(f.ioctl(IOMMU_IOAS_MAP, 0xDEAD_0000), "EFAULT")
    # A write-back to read-only memory turns the result into EFAULT.
    ro = proc.mem.alloc(16 * 2, readonly=True)
    check(f.ioctl(IOMMU_IOAS_IOVA_RANGES, proc.mem.struct(IOVA_RANGES, 32, ioas, 2, 0, ro, 0)),
          "EFAULT")


def test_hwpt_alloc_reads_driver_data_and_a_null_pointer_is_efault(proc) -> None:
    ictx = proc.open(PATH_IOMMU)
    dev = proc.open(PATH_DEVICE, 0)
    ioas = alloc_ioas(ictx)
    dev_id = bind(dev, ictx)
    parent = proc.mem.struct(HWPT_ALLOC, 48, 1, dev_id, ioas, 0, 0, 0, 0, 0, 0, 0)  # NEST_PARENT
    ok(ictx.ioctl(IOMMU_HWPT_ALLOC, parent))
    parent_id = proc.mem.unpack(HWPT_ALLOC, parent)[4]
    nested = proc.mem.struct(HWPT_ALLOC, 48, 0, dev_id, parent_id, 0, 0, 1, 24, 0, 0, 0)
    check(ictx.ioctl(IOMMU_HWPT_ALLOC, nested), "EFAULT")   # alloc_hwpt_nested
    data = proc.mem.alloc(24)
    nested = proc.mem.struct(HWPT_ALLOC, 48, 0, dev_id, parent_id, 0, 0, 1, 24, data, 0, 0)
    check(ictx.ioctl(IOMMU_HWPT_ALLOC, nested), "EOPNOTSUPP")   # read, then: not modelled
    check(ictx.ioctl(IOMMU_HWPT_ALLOC,
                     proc.mem.struct(HWPT_ALLOC, 48, 0, dev_id, ioas, 0, 0, 0, 24, 0, 0, 0)),
          "EINVAL")   # data_len without a data_type: refused before anything is read


def test_a_dirty_bitmap_that_faults_is_efault_after_the_handlers_checks(proc) -> None:
    ictx = proc.open(PATH_IOMMU)
    dev = proc.open(PATH_DEVICE, 0)
    ioas = alloc_ioas(ictx)
    dev_id = bind(dev, ictx)
    hw = proc.mem.struct(HWPT_ALLOC, 48, 2, dev_id, ioas, 0, 0, 0, 0, 0, 0, 0)
    ok(ictx.ioctl(IOMMU_HWPT_ALLOC, hw))
    hwpt = proc.mem.unpack(HWPT_ALLOC, hw)[4]
    ro = proc.mem.alloc(8, readonly=True)
    check(ictx.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP,
                     proc.mem.struct(GET_DIRTY, 48, hwpt, 0, 0, 0x100000, 0x4000, 0x1000, ro)),
          "EFAULT")
    check(ictx.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP,
                     proc.mem.struct(GET_DIRTY, 48, 99, 0, 0, 0x100000, 0x4000, 0x1000, ro)),
          "ENOENT")   # the handler's own error comes first


# -- fd arguments ---------------------------------------------------------------------------------

def test_fd_arguments_by_token_and_ebadf(proc) -> None:
    ictx = proc.open(PATH_IOMMU)
    dev = proc.open(PATH_DEVICE, 2)
    check(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, proc.mem.struct(BIND, 24, 0, 999, 0, 0)), "EBADF")
    group = proc.open(PATH_GROUP, NVME2_GROUP)
    check(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, proc.mem.struct(BIND, 24, 0, group.fd, 0, 0)),
          "EBADFD")   # open, but not an iommufd
    r, w = os.pipe()
    proc.real_fds[r] = r
    try:
        check(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, proc.mem.struct(BIND, 24, 0, r, 0, 0)),
              "EBADFD")   # a real fd the shim passes over SCM_RIGHTS
    finally:
        os.close(r)
        os.close(w)
    b = proc.mem.struct(BIND, 24, 0, ictx.fd, 0, 0)
    ok(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, b))
    assert proc.mem.unpack(BIND, b)[3] == 1
    check(group.ioctl(VFIO_GROUP_SET_CONTAINER, proc.mem.alloc(struct.pack("<i", 999))), "EBADF")
    check(group.ioctl(VFIO_GROUP_SET_CONTAINER, proc.mem.alloc(struct.pack("<i", -1))), "EBADF")


# -- the legacy container and group path -------------------------------------------------------------

def walk_caps(buf: bytes) -> list[tuple[int, int]]:
    """(id, offset) of each capability of a VFIO info struct's chain."""
    argsz, _, _, cap_offset, _ = IOMMU_INFO.unpack_from(buf)
    out, offset = [], cap_offset
    while offset:
        cap_id, version, nxt = struct.unpack_from("<HHI", buf, offset)
        assert version == 1 and offset + 8 <= argsz
        out.append((cap_id, offset))
        assert nxt == 0 or nxt > offset
        offset = nxt
    return out


def test_type1_container_group_and_device_fd(proc, d) -> None:
    cont = proc.open(PATH_CONTAINER)
    check(cont.ioctl(IOMMU_IOAS_ALLOC, proc.mem.struct(IOAS_ALLOC, 12, 0, 0)),
          "EINVAL")   # a legacy container without an IOMMU driver (vfio_fops_unl_ioctl)
    group = proc.open(PATH_GROUP, NVME_GROUP)
    assert group.describe() == (PATH_GROUP, NVME_GROUP, group.token)
    st = proc.mem.struct(GROUP_STATUS, 8, 0)
    ok(group.ioctl(VFIO_GROUP_GET_STATUS, st))
    assert proc.mem.unpack(GROUP_STATUS, st) == (8, 1)               # VIABLE
    check(group.ioctl(VFIO_GROUP_GET_STATUS, proc.mem.struct(GROUP_STATUS, 7, 0)), "EINVAL")
    ok(group.ioctl(VFIO_GROUP_SET_CONTAINER, proc.mem.alloc(struct.pack("<i", cont.fd))))
    ok(group.ioctl(VFIO_GROUP_GET_STATUS, st))
    assert proc.mem.unpack(GROUP_STATUS, st) == (8, 3)               # VIABLE | CONTAINER_SET
    assert cont.ioctl(VFIO_GET_API_VERSION) == 0
    assert cont.ioctl(VFIO_CHECK_EXTENSION, 3) == 1
    ok(cont.ioctl(VFIO_SET_IOMMU, 3))
    check(cont.ioctl(IOMMU_IOAS_ALLOC, proc.mem.struct(IOAS_ALLOC, 12, 0, 0)), "ENOTTY")
    # GET_INFO: the pre-cap size, then argsz raised, then the chain in type1's order.
    a = proc.mem.struct(IOMMU_INFO, 16, 0, 0, 0, 0)
    ok(cont.ioctl(VFIO_IOMMU_GET_INFO, a))
    full, flags, pgsizes, _, _ = proc.mem.unpack(IOMMU_INFO, a)
    assert full > 24 and flags == 3 and pgsizes & 0x1000   # argsz raised to what caps need
    a = proc.mem.struct(IOMMU_INFO, 24, 0, 0, 0, 0xAAAA)
    ok(cont.ioctl(VFIO_IOMMU_GET_INFO, a))
    assert proc.mem.unpack(IOMMU_INFO, a)[0::3] == (full, 0)   # no caps, cap_offset 0
    buf = proc.mem.alloc(IOMMU_INFO.pack(full, 0, 0, 0, 0) + b"\xaa" * (full - 24 + 64))
    ok(cont.ioctl(VFIO_IOMMU_GET_INFO, buf))
    got = proc.mem.read(buf, full + 64)
    assert got is not None and got[full:] == b"\xaa" * 64
    assert [c for c, _ in walk_caps(got)] == [2, 3, 1]   # MIGRATION, DMA_AVAIL, IOVA_RANGE
    # MAP_DMA, DIRTY_PAGES and UNMAP_DMA with its bitmap.
    ok(cont.ioctl(VFIO_IOMMU_MAP_DMA, proc.mem.struct(DMA_MAP, 32, 3, UVA, 0x100000, 0x4000)))
    ok(cont.ioctl(VFIO_IOMMU_DIRTY_PAGES, proc.mem.struct(DIRTY_PAGES, 8, 1)))   # START
    bits = proc.mem.alloc(b"\xff" * 8)
    ok(cont.ioctl(VFIO_IOMMU_DIRTY_PAGES,
                  proc.mem.struct(DIRTY_GET, 48, 4, 0x100000, 0x4000, 0x1000, 8, bits)))
    assert proc.mem.read(bits, 8) == bytes(8)   # type1 copies the bitmap: nothing was written
    check(cont.ioctl(VFIO_IOMMU_DIRTY_PAGES,
                     proc.mem.struct(DIRTY_GET, 47, 4, 0x100000, 0x4000, 0x1000, 8, bits)),
          "EINVAL")
    bits = proc.mem.alloc(b"\xff" * 8)
    u = proc.mem.struct(DMA_UNMAP_BITMAP, 48, 1, 0x100000, 0x4000, 0x1000, 8, bits)
    ok(cont.ioctl(VFIO_IOMMU_UNMAP_DMA, u))
    assert proc.mem.unpack(DMA_UNMAP, u)[3] == 0x4000 and proc.mem.read(bits, 8) == bytes(8)
    check(cont.ioctl(VFIO_IOMMU_UNMAP_DMA, proc.mem.struct(DMA_UNMAP_BITMAP, 47, 1, 0x100000,
                                                          0x4000, 0x1000, 8, bits)), "EINVAL")
    # GET_DEVICE_FD returns a new fd, a device fd from a group.
    name = proc.mem.alloc(NVME.encode() + b"\0")
    devfd = ok(group.ioctl(VFIO_GROUP_GET_DEVICE_FD, name))
    dev = proc.files[devfd]
    assert dev.describe() == (5, 0, dev.token)
    a = proc.mem.struct(DEVICE_INFO, 24, 0, 0, 0, 0, 0)
    ok(dev.ioctl(VFIO_DEVICE_GET_INFO, a))
    assert proc.mem.unpack(DEVICE_INFO, a)[1:4] == (2, 9, 5)
    check(dev.ioctl(VFIO_DEVICE_ATTACH_IOMMUFD_PT, proc.mem.struct(ATTACH, 12, 0, 1, 0)),
          "ENOTTY")   # cdev only
    check(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, proc.mem.struct(BIND, 24, 0, cont.fd, 0, 0)),
          "EINVAL")   # not a cdev fd
    check(group.ioctl(VFIO_GROUP_GET_DEVICE_FD, proc.mem.alloc(b"0000:99:00.0\0")), "ENODEV")
    check(group.ioctl(VFIO_GROUP_GET_DEVICE_FD, proc.mem.alloc(b"x" * 5000)), "EINVAL")
    check(group.ioctl(VFIO_GROUP_UNSET_CONTAINER), "EBUSY")   # its device fd is open
    dev.close()
    sync(group)
    ok(group.ioctl(VFIO_GROUP_UNSET_CONTAINER))
    check(group.ioctl(VFIO_GROUP_UNSET_CONTAINER), "EINVAL")
    check(group.ioctl(io(0x7F), st), "ENOTTY")


def test_a_group_opens_once_and_its_release_frees_it(proc) -> None:
    group = proc.open(PATH_GROUP, NVME_GROUP)
    with pytest.raises(OSError) as err:
        proc.open(PATH_GROUP, NVME_GROUP)
    assert err.value.errno == E.EBUSY
    group.close()
    proc.open(PATH_GROUP, NVME_GROUP)   # the hang-up was served before this OPEN


def test_compat_container_is_an_iommufd(cproc) -> None:
    cont = cproc.open(PATH_CONTAINER)
    ioas = alloc_ioas(cont)                       # IOMMU_* work on it
    assert ioas == 1
    group = cproc.open(PATH_GROUP, NVME_GROUP)
    ok(group.ioctl(VFIO_GROUP_SET_CONTAINER, cproc.mem.alloc(struct.pack("<i", cont.fd))))
    ok(cont.ioctl(VFIO_SET_IOMMU, 3))
    a = cproc.mem.struct(IOMMU_INFO, 24, 0, 0, 0, 0)
    ok(cont.ioctl(VFIO_IOMMU_GET_INFO, a))
    full = cproc.mem.unpack(IOMMU_INFO, a)[0]
    buf = cproc.mem.alloc(IOMMU_INFO.pack(full, 0, 0, 0, 0) + b"\xaa" * (full - 24 + 8))
    ok(cont.ioctl(VFIO_IOMMU_GET_INFO, buf))
    got = cproc.mem.read(buf, full + 8)
    assert got is not None and got[full:] == b"\xaa" * 8
    assert [c for c, _ in walk_caps(got)] == [3, 1]   # DMA_AVAIL, IOVA_RANGE
    check(cont.ioctl(VFIO_IOMMU_DIRTY_PAGES, cproc.mem.struct(DIRTY_PAGES, 8, 1)), "ENOTTY")
    ok(cont.ioctl(VFIO_IOMMU_MAP_DMA, cproc.mem.struct(DMA_MAP, 32, 3, UVA, 0x100000, 0x1000)))
    # Every argsz up to the full one: never a byte past argsz, never a broken chain.
    for argsz in range(24, full):
        b = cproc.mem.alloc(IOMMU_INFO.pack(argsz, 0, 0, 0, 0) + b"\xaa" * (full - 24))
        ok(cont.ioctl(VFIO_IOMMU_GET_INFO, b))
        got = cproc.mem.read(b, full)
        assert got is not None and got[argsz:] == b"\xaa" * (full - argsz), argsz
        if IOMMU_INFO.unpack_from(got)[3]:
            walk_caps(got)


# -- release at EOF, and the sessions behind the files ------------------------------------------------

def test_eof_releases_the_file_its_objects_and_its_group(proc, d) -> None:
    witness = proc.open(PATH_IOMMU)
    base = info(d).daemon
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    ok(ioas_map(f, ioas, 0x100000, 0x2000)[0])
    dev = proc.open(PATH_DEVICE, 0)
    attach_to = bind(dev, f)
    assert attach_to
    attach(dev, ioas)
    now = info(d).daemon
    assert (now.contexts, now.ioas, now.areas, now.devices) == (
        base.contexts + 1, base.ioas + 1, base.areas + 1, base.devices + 1)
    assert groups(d)[NVME_GROUP].owner == pb.GROUP_OWNER_IOMMUFD
    f.close()   # the context lives on while the device is bound to it
    sync(witness)
    assert info(d).daemon.devices == base.devices + 1
    dev.close()
    sync(witness)
    now = info(d).daemon
    assert (now.contexts, now.ioas, now.areas, now.devices, now.device_fds) == (
        base.contexts, base.ioas, base.areas, base.devices, base.device_fds)
    assert groups(d)[NVME_GROUP].owner == pb.GROUP_OWNER_NONE


def test_the_raw_session_lives_while_files_are_open(proc, d) -> None:
    before = info(d).daemon.sessions
    f = proc.open(PATH_IOMMU)
    g = proc.open(PATH_IOMMU)
    assert info(d).daemon.sessions == before + 1   # one session per uid
    f.close()
    sync(g)
    assert info(d).daemon.sessions == before + 1
    g.close()
    proc.open(PATH_IOMMU).close()   # its OPEN serves g's hang-up first
    witness = proc.open(PATH_IOMMU)
    sync(witness)
    assert info(d).daemon.sessions == before + 1   # the witness's own session


def test_raw_sessions_leave_nothing_in_the_journal(daemon_factory, tmp_path) -> None:
    """A raw session is never journaled, not even a partial unmap's effect
    (Call.record); a daemon killed with raw files open restarts cleanly."""
    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), name="j1")
    p = Process(uapi_path(d))
    f = p.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    ok(ioas_map(f, ioas, 0x100000, 0x1000)[0])
    ok(ioas_map(f, ioas, 0x102000, 0x2000)[0])
    # The range's end cuts the second area: ENOENT after the first one went.
    check(ioas_unmap(f, ioas, 0x100000, 0x3000)[0], "ENOENT")
    dev = p.open(PATH_DEVICE, 0)
    bind(dev, f)
    attach(dev, ioas)
    d.proc.kill()
    d.proc.wait(30)
    p.close()
    d2 = daemon_factory("--journal", str(db), name="j2")
    assert info(d2).daemon.sessions == 0
    assert groups(d2)[NVME_GROUP].owner == pb.GROUP_OWNER_NONE


CHILD = r"""
import os, sys, struct, time
sys.path.insert(0, sys.argv[2])
from uapi_client import Process, PATH_IOMMU, io
os.setgid(65534)
os.setuid(65534)
p = Process(sys.argv[1])
f = p.open(PATH_IOMMU)
a = p.mem.struct(struct.Struct("<III"), 12, 0, 0)
assert f.ioctl(io(0x81), a) == 0
print(f.token, f.fd, flush=True)
sys.stdin.readline()
"""


def test_two_uids_are_two_sessions_and_cannot_use_each_others_files(daemon_factory) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a caller of another uid needs root")
    shared = pathlib.Path(tempfile.mkdtemp(prefix="iommud-uapi-"))
    shared.chmod(0o755)
    d = daemon_factory("--socket-mode", "0o666", name="uids", workdir=shared / "d")
    (shared / "d").chmod(0o755)
    here = str(pathlib.Path(__file__).parent)
    child = subprocess.Popen([sys.executable, "-c", CHILD, uapi_path(d), here],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        token = int(child.stdout.readline().split()[0])
        p = Process(uapi_path(d))
        f = p.open(PATH_IOMMU)
        assert alloc_ioas(f) == 1   # its own context and session
        assert info(d).daemon.sessions == 2
        dev = p.open(PATH_DEVICE, 3)
        # The other uid's iommufd, named by its token: not a file of this session.
        other = File(p, socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET), token)
        p.files[other.fd] = other
        check(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, p.mem.struct(BIND, 24, 0, other.fd, 0, 0)),
              "EBADF")
        other.sock.close()
        p.files.pop(other.fd)
        ok(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, p.mem.struct(BIND, 24, 0, f.fd, 0, 0)))
        p.close()
    finally:
        child.communicate("\n", timeout=30)
    assert child.returncode == 0


def test_the_allow_list_refuses_other_uids_with_eacces(daemon_factory) -> None:
    d = daemon_factory("--allow-uids", "4242", name="allow")
    p = Process(uapi_path(d))
    f = p.connect()
    seq = f.send(OPEN, PATH_IOMMU, 0, U32.pack(2))
    hdr, _, _ = f.recv()
    assert hdr[1] == REPLY and hdr[5] == seq
    check(hdr[9], "EACCES")
    with pytest.raises(EOFError):
        f.recv()
    assert not d.events("session.open")   # refused before any session


# -- vfioN numbering -------------------------------------------------------------------------------

def test_vfio_n_follows_vfio_pci_binding(daemon_factory) -> None:
    d = daemon_factory(name="cdev")
    p = Process(uapi_path(d))
    with pytest.raises(OSError) as err:
        p.open(PATH_DEVICE, len(VFIO_DEVICES))
    assert err.value.errno == E.ENOENT
    with pytest.raises(OSError) as err:
        p.open(PATH_GROUP, 5)   # the host NIC's group has no VFIO device
    assert err.value.errno == E.ENOENT
    with d.client() as c, c.open_session("admin") as s:
        s.unbind_host_driver(VFIO_DEVICES[1])
        with pytest.raises(OSError) as err:
            p.open(PATH_DEVICE, 1)
        assert err.value.errno == E.ENOENT
        s.unbind_host_driver("0000:00:19.0")
        s.bind_host_driver("0000:00:19.0", "vfio-pci")   # the lowest free number: 1
        s.bind_host_driver(VFIO_DEVICES[1], "vfio-pci")  # then the next: 10
    ictx = p.open(PATH_IOMMU)
    for n, name in ((1, "0000:00:19.0"), (10, VFIO_DEVICES[1]), (2, VFIO_DEVICES[2])):
        dev = p.open(PATH_DEVICE, n)
        bind(dev, ictx)
        with d.client() as c, c.open_session("check") as s:
            by_name = {x.name: x for x in s.list_devices()}
        assert by_name[name].user_open, (n, name)
        dev.close()
        sync(ictx)
    p.close()


# -- malformed records ---------------------------------------------------------------------------

def closed(f: File) -> bool:
    """The daemon closed the connection (its next record is EOF)."""
    f.sock.settimeout(10)
    try:
        n = f.sock.recv(65536)
    except ConnectionResetError:
        return True
    return n == b""


@pytest.mark.parametrize("record", [
    b"\x49\x55\x41\x31" + bytes(6),                                    # short
    HDR.pack(0x12345678, OPEN, 0, 1, 1, 1, 1, 0, 4, 0) + U32.pack(2),  # bad magic
    HDR.pack(MAGIC, OPEN, 0, 1, 1, 1, 1, 0, 400, 0) + U32.pack(2),     # body_len wrong
    HDR.pack(MAGIC, OPEN, 1, 1, 1, 1, 1, 0, 1 << 30, 0),               # memfd body, no fd
    HDR.pack(MAGIC, OPEN, 0, 1, 1, 1, 1, 0, 70000, 0) + bytes(70000),  # over the inline limit
], ids=["short", "magic", "body_len", "memfd", "huge"])
def test_broken_framing_closes_the_connection(proc, record) -> None:
    f = proc.connect()
    f.sock.send(record)
    assert closed(f)


def test_a_memfd_body_must_be_sealed(proc) -> None:
    f = proc.connect()
    memfd = os.memfd_create("body", os.MFD_CLOEXEC)
    try:
        os.write(memfd, U32.pack(2))
        f.sock.sendmsg([HDR.pack(MAGIC, OPEN, 1, 1, 1, 1, PATH_IOMMU, 0, 4, 0)],
                       [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("<i", memfd))])
    finally:
        os.close(memfd)
    assert closed(f)


@pytest.mark.parametrize(("kind", "cmd", "body"), [
    (IOCTL, IOMMU_IOAS_ALLOC, U32.pack(12) + bytes(12)),
    (DESCRIBE, 0, b""),
    (GIVE, 0, U32.pack(0)),
    (OPEN, PATH_IOMMU, b"\0\0"),
], ids=["ioctl", "describe", "give", "open-body"])
def test_a_first_record_that_is_not_a_valid_open_is_refused(proc, kind, cmd, body) -> None:
    f = proc.connect()
    seq = f.send(kind, cmd, 0, body)
    hdr, _, _ = f.recv()
    assert hdr[1] == REPLY and hdr[5] == seq
    check(hdr[9], "EPROTO")
    assert closed(f)


def test_opens_that_name_nothing(proc) -> None:
    for kind, n, name in ((9, 0, "EINVAL"), (PATH_DEVICE, 99, "ENOENT"),
                          (PATH_GROUP, 1 << 40, "ENOENT"), (PATH_GROUP, 31, "ENOENT")):
        with pytest.raises(OSError) as err:
            proc.open(kind, n)
        assert err.value.errno == getattr(E, name), (kind, n)


def test_protocol_errors_on_an_open_file_are_eproto_and_the_file_stays(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    arr = proc.mem.alloc(RANGE.pack(0x10000, 0x1FFFF))
    allow = proc.mem.struct(ALLOW_IOVAS, 24, ioas, 1, 0, arr)
    allow_body = U32.pack(24) + (proc.mem.read(allow, 24) or b"")

    def answered(give: bytes, seq_delta: int = 0) -> int:
        seq = f.send(IOCTL, IOMMU_IOAS_ALLOW_IOVAS, allow, allow_body)
        hdr, body, _ = f.recv()
        assert hdr[1] == NEED and hdr[5] == seq and body == U32.pack(1) + struct.pack(
            "<IIQ", 1, 16, arr)
        f.send(GIVE, body=give, seq=seq + seq_delta)
        hdr, _, _ = f.recv()
        assert hdr[1] == REPLY and hdr[5] == seq
        return int(hdr[9])

    good = U32.pack(1) + struct.pack("<IiI", 1, 0, 16) + RANGE.pack(0x10000, 0x1FFFF)
    check(answered(U32.pack(2) + good[4:]), "EPROTO")                       # wrong count
    check(answered(good[:4] + struct.pack("<IiI", 3, 0, 16) + good[16:]), "EPROTO")  # type
    check(answered(good[:-1]), "EPROTO")                                    # short bytes
    check(answered(good + b"x"), "EPROTO")                                  # trailing bytes
    check(answered(good, seq_delta=1), "EPROTO")                            # wrong seq
    assert iova_ranges(f, ioas, 1)[2] == [(0, (1 << 64) - 1)]               # nothing applied
    # A GIVE nobody asked for; a second OPEN; a NEED from the shim.
    for kind in (GIVE, OPEN, NEED):
        seq = f.send(kind, body=U32.pack(0))
        hdr, _, _ = f.recv()
        assert hdr[5] == seq
        check(hdr[9], "EPROTO")
    # A new IOCTL while a NEED waits: the waiting one fails, the new one is served.
    seq = f.send(IOCTL, IOMMU_IOAS_ALLOW_IOVAS, allow, allow_body)
    assert f.recv()[0][1] == NEED
    body = U32.pack(12) + IOAS_ALLOC.pack(12, 0, 0)
    seq2 = f.send(IOCTL, IOMMU_IOAS_ALLOC, 0xDEAD_0000, body)
    hdr, _, _ = f.recv()
    assert hdr[5] == seq
    check(hdr[9], "EPROTO")
    hdr, body, _ = f.recv()
    assert hdr[5] == seq2 and hdr[9] == 0
    # A first copy of the wrong length for its size word.
    seq = f.send(IOCTL, IOMMU_IOAS_ALLOC, 0, U32.pack(12) + bytes(8))
    hdr, _, _ = f.recv()
    check(hdr[9], "EPROTO")
    ok(answered(good))   # the file still works


def test_large_bodies_travel_in_memfds_both_ways(proc) -> None:
    f = proc.open(PATH_IOMMU)
    ioas = alloc_ioas(f)
    count = 5000   # 80,000 bytes of ranges: a GIVE past the 64 KiB inline limit
    arr = proc.mem.alloc(b"".join(RANGE.pack(i << 20, (i << 20) + 0xFFFF) for i in range(count)))
    ok(f.ioctl(IOMMU_IOAS_ALLOW_IOVAS, proc.mem.struct(ALLOW_IOVAS, 24, ioas, count, 0, arr)))
    for _ in range(2):   # allocations fall inside the allowed ranges
        ret, allocated = ioas_map(f, ioas, 0, 0x10000, flags=6)
        ok(ret)
        assert allocated % (1 << 20) == 0 and allocated < count << 20
    # A dirty bitmap of 4 GiB in 4 KiB pages, 128 KiB: a NEED and a REPLY past the limit.
    dev = proc.open(PATH_DEVICE, 0)
    dev_id = bind(dev, f)
    hw = proc.mem.struct(HWPT_ALLOC, 48, 2, dev_id, ioas, 0, 0, 0, 0, 0, 0, 0)
    ok(f.ioctl(IOMMU_HWPT_ALLOC, hw))
    hwpt = proc.mem.unpack(HWPT_ALLOC, hw)[4]
    ok(f.ioctl(IOMMU_HWPT_SET_DIRTY_TRACKING, proc.mem.struct(SET_DIRTY, 16, 1, hwpt, 0)))
    bitmap = proc.mem.alloc(b"\x01" + bytes((128 << 10) - 2) + b"\x80" + b"\x77")
    ok(f.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP,
               proc.mem.struct(GET_DIRTY, 48, hwpt, 0, 0, 0, 1 << 32, 0x1000, bitmap)))
    got = proc.mem.read(bitmap, (128 << 10) + 1)
    assert got is not None and got[0] == 1 and got[-2] == 0x80 and got[-1] == 0x77
    assert got[1:-2].count(0) == len(got) - 3
    assert proc.stats.needs >= 2


def test_the_daemon_serves_on_after_all_that(proc, d) -> None:
    f = proc.open(PATH_IOMMU)
    assert alloc_ioas(f) == 1
    with d.client() as c:
        assert c.health() == "SERVING"
    assert not [e for e in d.events() if e.get("event") == "uapi.bug"]


def test_a_disabled_socket_and_print_config(daemon_factory) -> None:
    d = daemon_factory("--uapi-socket", "", name="off")
    assert not pathlib.Path(uapi_path(d)).exists()
    out = subprocess.run([sys.executable, "-m", "iommud", "--print-config"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert 'uapi_socket = "iommud.uapi.sock"' in out.stdout
    events = [json.loads(line) for line in d.log_lines() if line.startswith("{")]
    assert not [e for e in events if e.get("event") == "uapi.listening"]
