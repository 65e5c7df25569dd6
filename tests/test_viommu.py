"""Nested translation and vIOMMUs through the client library, against a
daemon run with debug_selftest: nested HWPTs on a NEST_PARENT parent or a
vIOMMU, their cache invalidation, vDEVICEs, HW queues and vEVENTQs, with the
selftest mock driver's behaviour. The rules are those of
drivers/iommu/iommufd/hw_pagetable.c, viommu.c, eventq.c and selftest.c at
v7.3; each test names the kernel function it follows."""
from __future__ import annotations

import asyncio
import struct
import threading

import pytest
from support import raises_errno

from iommud_client.aio import AsyncClient
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_HW_QUEUE_TYPE_SELFTEST,
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    IOMMU_HWPT_ALLOC_NEST_PARENT,
    IOMMU_HWPT_ALLOC_PASID,
    IOMMU_HWPT_DATA_SELFTEST,
    IOMMU_HWPT_FAULT_ID_VALID,
    IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
    IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
    IOMMU_TEST_DEV_CACHE_DEFAULT,
    IOMMU_TEST_INVALIDATE_FLAG_ALL,
    IOMMU_TEST_IOTLB_DEFAULT,
    IOMMU_VEVENTQ_TYPE_SELFTEST,
    IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
    IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID,
    IOMMU_VIOMMU_TYPE_SELFTEST,
    MOCK_APERTURE_START,
    MOCK_FLAGS_DEVICE_PASID,
    PAGE_SIZE,
    VEVENTQ_MAX_DEPTH,
)

BUF = 0x7F00_0000_0000
SEL = IOMMU_HWPT_DATA_SELFTEST
INV = IOMMU_HWPT_INVALIDATE_DATA_SELFTEST
VINV = IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST
DATA = struct.pack("<II", IOMMU_TEST_IOTLB_DEFAULT, 0)


def hwpt_inv(flags: int, iotlb_id: int) -> bytes:
    """struct iommu_hwpt_invalidate_selftest."""
    return struct.pack("<II", flags, iotlb_id)


def viommu_inv(flags: int, vdev_id: int, cache_id: int) -> bytes:
    """struct iommu_viommu_invalidate_selftest."""
    return struct.pack("<III", flags, vdev_id, cache_id)


@pytest.fixture(scope="module")
def mock_daemon(module_daemon_factory):
    return module_daemon_factory("--debug-selftest", "1", name="viommu")


@pytest.fixture
def session(mock_daemon):
    with mock_daemon.client() as c, c.open_session("viommu") as s:
        yield s


@pytest.fixture
def ctx(session):
    return session.open_context()


class Setup:
    """The selftest's iommufd_viommu fixture: a mock device on an IOAS, a
    NEST_PARENT HWPT, a vIOMMU over it and a nested HWPT on the vIOMMU."""

    def __init__(self, ctx, dev_flags: int | None = None) -> None:
        self.ctx = ctx
        self.ioas = ctx.ioas_alloc()
        self.md = ctx.mock_domain(self.ioas, dev_flags)
        self.dev = self.md.idev_id
        self.parent = ctx.hwpt_alloc(self.dev, self.ioas, IOMMU_HWPT_ALLOC_NEST_PARENT)
        self.viommu = ctx.viommu_alloc(self.dev, self.parent)
        self.nested = ctx.hwpt_alloc(self.dev, self.viommu, data_type=SEL, data=DATA)


def objects(ctx) -> dict[int, pb.ObjectInfo]:
    return {o.id: o for o in ctx.list_objects()}


# -- nested HWPTs (hw_pagetable.c, selftest.c mock_domain_alloc_nested) ------------------------

def test_nested_hwpt_alloc_rules(ctx) -> None:
    """iommufd_hwpt_alloc, iommufd_hwpt_nested_alloc, __mock_domain_alloc_nested:
    the checks in the kernel's order, and nothing left behind by a failure."""
    ioas = ctx.ioas_alloc()
    dev = ctx.mock_domain(ioas).idev_id
    parent = ctx.hwpt_alloc(dev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT)
    plain = ctx.hwpt_alloc(dev, ioas)
    before = sorted(objects(ctx))
    raises_errno(lambda: ctx.hwpt_alloc(dev, parent, data=DATA), "EINVAL")     # type NONE
    raises_errno(lambda: ctx.hwpt_alloc(dev, parent, data_type=SEL + 1, data=DATA),
                 "EOPNOTSUPP")
    raises_errno(lambda: ctx.hwpt_alloc(dev, parent, data_type=SEL, data=DATA[:3]), "EINVAL")
    raises_errno(lambda: ctx.hwpt_alloc(dev, parent, data_type=SEL, data=DATA + b"\0"),
                 "EINVAL")
    raises_errno(lambda: ctx.hwpt_alloc(dev, parent, data_type=SEL, data_len=8), "EFAULT")
    raises_errno(lambda: ctx.hwpt_alloc(dev, parent, IOMMU_HWPT_ALLOC_NEST_PARENT,
                                        data_type=SEL, data=DATA), "EOPNOTSUPP")
    raises_errno(lambda: ctx.hwpt_alloc(dev, parent, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
                                        data_type=SEL, data=DATA), "EOPNOTSUPP")
    raises_errno(lambda: ctx.hwpt_alloc(dev, plain, data_type=SEL, data=DATA), "EINVAL")
    raises_errno(lambda: ctx.hwpt_alloc(dev, 999, data_type=SEL, data=DATA), "EINVAL")
    raises_errno(lambda: ctx.hwpt_alloc(999, parent, data_type=SEL, data=DATA), "ENOENT")
    raises_errno(lambda: ctx.hwpt_alloc(dev, parent, IOMMU_HWPT_FAULT_ID_VALID,
                                        data_type=SEL, data=DATA, fault_id=999), "ENOENT")
    assert sorted(objects(ctx)) == before
    nested = ctx.hwpt_alloc(dev, parent, data_type=SEL, data=DATA[:4])       # the first version
    info = objects(ctx)[nested]
    assert (info.type, info.parent_id, info.ioas_id) == (pb.OBJECT_TYPE_HWPT_NESTED, parent,
                                                         ioas)
    assert objects(ctx)[parent].users == 1
    # An automatic HWPT, or a nested one, is no parent.
    auto = ctx.mock_domain(ctx.ioas_alloc()).hwpt_id
    raises_errno(lambda: ctx.hwpt_alloc(dev, auto, data_type=SEL, data=DATA), "EINVAL")
    raises_errno(lambda: ctx.hwpt_alloc(dev, nested, data_type=SEL, data=DATA), "EINVAL")
    raises_errno(lambda: ctx.destroy(parent), "EBUSY")
    ctx.destroy(nested)
    ctx.destroy(parent)


def test_md_check_iotlb(ctx) -> None:
    """iommufd_test_md_check_iotlb: four slots set from the data's iotlb."""
    s = Setup(ctx)
    for slot in range(4):
        ctx.md_check_iotlb(s.nested, slot, IOMMU_TEST_IOTLB_DEFAULT)
    raises_errno(lambda: ctx.md_check_iotlb(s.nested, 0, 0), "EINVAL")
    raises_errno(lambda: ctx.md_check_iotlb(s.nested, 4, IOMMU_TEST_IOTLB_DEFAULT), "EINVAL")
    raises_errno(lambda: ctx.md_check_iotlb(s.parent, 0, 0), "ENOENT")      # a paging HWPT
    raises_errno(lambda: ctx.md_check_iotlb(999, 0, 0), "ENOENT")


def test_nested_invalidate_writes_back_entry_num(ctx) -> None:
    """iommufd_hwpt_invalidate and mock_domain_cache_invalidate_user: the
    entries handled come back on success and, in the error, on failure."""
    ioas = ctx.ioas_alloc()
    dev = ctx.mock_domain(ioas).idev_id
    parent = ctx.hwpt_alloc(dev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT)
    nested = ctx.hwpt_alloc(dev, parent, data_type=SEL, data=DATA)
    other = ctx.hwpt_alloc(dev, parent, data_type=SEL, data=DATA)
    two = hwpt_inv(0, 0) + hwpt_inv(0, 0)

    def fails(errno: str, hwpt: int, data: bytes, **kw: int) -> int:
        kw.setdefault("data_type", INV)
        err = raises_errno(lambda: ctx.hwpt_invalidate(hwpt, data, **kw), errno)
        return int(err.metadata["entry_num"])

    assert fails("EINVAL", parent, two, entry_len=8, entry_num=1) == 0       # not nested
    assert ctx.hwpt_invalidate(nested, two, data_type=INV, entry_len=8, entry_num=0) == 0
    assert fails("EINVAL", nested, two, data_type=IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
                 entry_len=8, entry_num=1) == 0
    assert fails("EINVAL", nested, two + b"\0", entry_len=9, entry_num=1) == 0
    assert fails("EINVAL", nested, two, entry_len=1, entry_num=1) == 0
    assert fails("EINVAL", nested, two, entry_len=PAGE_SIZE + 1, entry_num=1) == 0
    assert fails("EINVAL", nested, two, entry_len=8, entry_num=(1 << 19) + 1) == 0
    assert fails("EOPNOTSUPP", nested, hwpt_inv(0xFFFF_FFFF, 0), entry_len=8, entry_num=1) == 0
    assert fails("EINVAL", nested, b"", entry_len=8, entry_num=1) == 0       # no data
    assert fails("EINVAL", nested, two, entry_len=0, entry_num=1) == 0
    assert fails("EINVAL", nested, hwpt_inv(0, 4), entry_len=8, entry_num=1) == 0
    assert fails("EOPNOTSUPP", nested, two, entry_len=8, entry_num=1, reserved=1) == 0
    assert fails("ENOENT", 999, two, entry_len=8, entry_num=1) == 0
    # The second entry fails: the first is done, and counted.
    assert fails("EOPNOTSUPP", nested, hwpt_inv(0, 0) + hwpt_inv(0xFFFF_FFFF, 1),
                 entry_len=8, entry_num=2) == 1
    assert fails("EINVAL", nested, hwpt_inv(0, 0) + hwpt_inv(0, 4), entry_len=8,
                 entry_num=2) == 1
    # An entry the data does not hold is a fault (the copy of entry 1).
    assert fails("EFAULT", nested, hwpt_inv(0, 1), entry_len=8, entry_num=2) == 1
    ctx.md_check_iotlb(nested, 0, 0)
    ctx.md_check_iotlb(nested, 1, 0)
    ctx.md_check_iotlb(nested, 2, IOMMU_TEST_IOTLB_DEFAULT)
    assert ctx.hwpt_invalidate(nested, hwpt_inv(0, 2) + hwpt_inv(0, 3), data_type=INV,
                               entry_len=8, entry_num=2) == 2
    for slot in range(4):
        ctx.md_check_iotlb(nested, slot, 0)
    assert ctx.hwpt_invalidate(other, hwpt_inv(IOMMU_TEST_INVALIDATE_FLAG_ALL, 0),
                               data_type=INV, entry_len=8, entry_num=1) == 1
    for slot in range(4):
        ctx.md_check_iotlb(other, slot, 0)


def test_attach_and_replace_to_nested_hwpts(ctx) -> None:
    """iommufd_device_attach/replace onto a nested HWPT: it holds the
    attachment (EBUSY to destroy), replaces move between nested HWPTs, and
    the device's DMA goes through the parent's stage 2."""
    ioas = ctx.ioas_alloc()
    md = ctx.mock_domain(ioas)
    iova = ctx.ioas_map(ioas, BUF, 0x2000, MOCK_APERTURE_START)
    parent = ctx.hwpt_alloc(md.idev_id, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT)
    n0 = ctx.hwpt_alloc(md.idev_id, parent, data_type=SEL, data=DATA)
    n1 = ctx.hwpt_alloc(md.idev_id, parent, data_type=SEL, data=DATA)
    assert ctx.mock_domain_replace(md.stdev_id, n0) == n0
    assert md.hwpt_id not in objects(ctx)            # the automatic HWPT went with its device
    raises_errno(lambda: ctx.destroy(n0), "EBUSY")
    ctx.mock_domain_replace(md.stdev_id, n1)
    raises_errno(lambda: ctx.destroy(n1), "EBUSY")
    ctx.destroy(n0)
    dma = ctx.device_dma(md.idev_id, [pb.DmaAccess(iova=iova + 8, length=4, write=True)])
    assert dma.results[0].ok and dma.results[0].pa == BUF + 8
    ctx.mock_domain_replace(md.stdev_id, parent)
    ctx.destroy(n1)
    ctx.mock_domain_replace(md.stdev_id, ioas)
    ctx.destroy(parent)


def test_pasid_attach_of_nested_hwpts(ctx) -> None:
    """iommufd_hwpt_pasid_compat with nested HWPTs (the selftest's
    pasid_attach): PASID needs a PASID-compatible HWPT, and a RID on a
    non-compatible one refuses PASIDs; PASID_CHECK_HWPT sees nested HWPTs."""
    ioas = ctx.ioas_alloc()
    md = ctx.mock_domain(ioas, MOCK_FLAGS_DEVICE_PASID)
    parent = ctx.hwpt_alloc(md.idev_id, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT)
    nested = ctx.hwpt_alloc(md.idev_id, parent, IOMMU_HWPT_ALLOC_PASID, data_type=SEL,
                            data=DATA)
    plain_nested = ctx.hwpt_alloc(md.idev_id, parent, data_type=SEL, data=DATA)
    s2 = ctx.hwpt_alloc(md.idev_id, ioas, IOMMU_HWPT_ALLOC_PASID)
    ctx.mock_domain_replace(md.stdev_id, parent)
    raises_errno(lambda: ctx.pasid_attach(md.stdev_id, 100, s2), "EINVAL")
    ctx.mock_domain_replace(md.stdev_id, s2)
    raises_errno(lambda: ctx.pasid_attach(md.stdev_id, 100, plain_nested), "EINVAL")
    assert ctx.pasid_attach(md.stdev_id, 100, nested) == nested
    ctx.pasid_check_hwpt(md.stdev_id, 100, nested)
    raises_errno(lambda: ctx.mock_domain_replace(md.stdev_id, parent), "EINVAL")
    raises_errno(lambda: ctx.pasid_attach(md.stdev_id, 100, nested), "EBUSY")
    ctx.pasid_detach(md.stdev_id, 100)
    ctx.pasid_check_hwpt(md.stdev_id, 100, 0)


# -- vIOMMUs (viommu.c iommufd_viommu_alloc_ioctl, selftest.c mock_viommu_init) ----------------

def test_viommu_alloc_rules(ctx, session) -> None:
    """The selftest's viommu_negative_tests, then the mock's driver data."""
    ioas = ctx.ioas_alloc()
    dev = ctx.mock_domain(ioas).idev_id
    parent = ctx.hwpt_alloc(dev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT)
    plain = ctx.hwpt_alloc(dev, ioas)
    before = sorted(objects(ctx))
    raises_errno(lambda: ctx.viommu_alloc(dev, parent, flags=1), "EOPNOTSUPP")
    raises_errno(lambda: ctx.viommu_alloc(dev, parent, 0), "EOPNOTSUPP")         # DEFAULT
    raises_errno(lambda: ctx.viommu_alloc(999, parent), "ENOENT")
    raises_errno(lambda: ctx.viommu_alloc(dev, parent, 0xDEAD), "EOPNOTSUPP")
    raises_errno(lambda: ctx.viommu_alloc(dev, 0), "ENOENT")
    raises_errno(lambda: ctx.viommu_alloc(dev, ioas), "ENOENT")                  # not a HWPT
    raises_errno(lambda: ctx.viommu_alloc(dev, plain), "EINVAL")                 # no NEST_PARENT
    data = struct.pack("<IIQQ", 0xBEEF, 0, 0, 0)
    raises_errno(lambda: ctx.viommu_alloc_data(dev, parent, data[:7]), "EINVAL")
    raises_errno(lambda: ctx.viommu_alloc_data(dev, parent, data + b"\0"), "EINVAL")
    raises_errno(lambda: ctx.viommu_alloc_data(dev, parent, b"", data_len=24), "EFAULT")
    # copy_struct_to_user: the driver's answer does not fit 8 bytes.
    raises_errno(lambda: ctx.viommu_alloc_data(dev, parent, data[:8]), "E2BIG")
    assert sorted(objects(ctx)) == before
    viommu = ctx.viommu_alloc(dev, parent, IOMMU_VIOMMU_TYPE_SELFTEST)
    assert objects(ctx)[viommu].type == pb.OBJECT_TYPE_VIOMMU
    assert objects(ctx)[viommu].parent_id == parent
    first, out = ctx.viommu_alloc_data(dev, parent, data)
    in_data, out_data, offset, length = struct.unpack("<IIQQ", out)
    assert (in_data, out_data, length) == (0xBEEF, 0xBEEF, 2 * PAGE_SIZE)
    assert offset == PAGE_SIZE                       # the first page of the space is skipped
    _, out2 = ctx.viommu_alloc_data(dev, parent, data)
    assert struct.unpack("<IIQQ", out2)[2] == 3 * PAGE_SIZE
    raises_errno(lambda: ctx.destroy(parent), "EBUSY")
    ctx.destroy(first)
    assert struct.unpack("<IIQQ", ctx.viommu_alloc_data(dev, parent, data)[1])[2] == PAGE_SIZE
    # The VT-d model's driver has no vIOMMU.
    name = next(d.name for d in session.list_devices() if d.driver == "vfio-pci")
    with session.open_device(name) as devfd:
        real = ctx.bind_device(devfd)
        raises_errno(lambda: ctx.viommu_alloc(real, parent), "EOPNOTSUPP")


def test_vdevice_rules_and_tombstone(ctx) -> None:
    """iommufd_vdevice_alloc_ioctl; an unbound DEVICE's vDEVICE is destroyed
    and its id stays taken (iommufd_device_remove_vdev: a tombstone)."""
    s = Setup(ctx)
    other = ctx.mock_domain(s.ioas)
    raises_errno(lambda: ctx.vdevice_alloc(0, s.dev, 0x99), "ENOENT")
    raises_errno(lambda: ctx.vdevice_alloc(s.viommu, 999, 0x99), "ENOENT")
    vdev = ctx.vdevice_alloc(s.viommu, s.dev, 0x99)
    info = objects(ctx)[vdev]
    assert (info.type, info.viommu_id, info.virt_id, info.dev_id) == (
        pb.OBJECT_TYPE_VDEVICE, s.viommu, 0x99, s.dev)
    raises_errno(lambda: ctx.vdevice_alloc(s.viommu, s.dev, 0x88), "EEXIST")   # one per device
    raises_errno(lambda: ctx.vdevice_alloc(s.viommu, other.idev_id, 0x99), "EEXIST")
    assert max(objects(ctx)) == vdev                 # the refused ids were given back
    raises_errno(lambda: ctx.destroy(s.viommu), "EBUSY")
    ctx.destroy(vdev)
    vdev = ctx.vdevice_alloc(s.viommu, s.dev, 0x99)
    ctx.destroy(s.md.stdev_id)
    raises_errno(lambda: ctx.destroy(vdev), "ENOENT")
    assert vdev not in objects(ctx)
    free = [i for i in range(1, vdev) if i not in objects(ctx)]   # the mock device's ids
    assert [ctx.ioas_alloc() for _ in free] == free
    assert ctx.ioas_alloc() == vdev + 1              # the tombstone keeps its id
    ctx.destroy(s.nested)
    ctx.destroy(s.viommu)                            # the vDEVICE's hold went with it


def test_nested_hwpt_of_a_viommu_needs_a_vdevice(ctx) -> None:
    """mock_domain_nop_attach: a vIOMMU's nested HWPT takes a device only
    through its vDEVICE (iommufd_viommu_get_vdev_id: ENOENT); the device of
    another IOMMU instance is EINVAL (iommufd_hwpt_alloc)."""
    s = Setup(ctx)
    raises_errno(lambda: ctx.mock_domain_replace(s.md.stdev_id, s.nested), "ENOENT")
    ctx.pasid_check_hwpt(s.md.stdev_id, 0, s.md.hwpt_id)        # nothing changed
    ctx.vdevice_alloc(s.viommu, s.dev, 0x99)
    assert ctx.mock_domain_replace(s.md.stdev_id, s.nested) == s.nested
    assert objects(ctx)[s.nested].viommu_id == s.viommu
    raises_errno(lambda: ctx.destroy(s.nested), "EBUSY")
    raises_errno(lambda: ctx.hwpt_alloc(s.dev, s.viommu, 1 << 31, data_type=SEL, data=DATA),
                 "EOPNOTSUPP")
    raises_errno(lambda: ctx.hwpt_alloc(s.dev, s.viommu), "EOPNOTSUPP")   # no driver data


def test_viommu_cache_invalidation(ctx) -> None:
    """mock_viommu_cache_invalidate and DEV_CHECK_CACHE (the selftest's
    vdevice_cache)."""
    s = Setup(ctx)
    ctx.vdevice_alloc(s.viommu, s.dev, 0x99)
    for slot in range(4):
        ctx.dev_check_cache(s.dev, slot, IOMMU_TEST_DEV_CACHE_DEFAULT)

    def fails(errno: str, data: bytes, **kw: int) -> int:
        kw.setdefault("data_type", VINV)
        err = raises_errno(lambda: ctx.hwpt_invalidate(s.viommu, data, **kw), errno)
        return int(err.metadata["entry_num"])

    good = viommu_inv(0, 0x99, 0)
    assert ctx.hwpt_invalidate(s.viommu, good, data_type=VINV, entry_len=12, entry_num=0) == 0
    assert fails("EINVAL", good, data_type=IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID,
                 entry_len=12, entry_num=1) == 0
    assert fails("EINVAL", bytes(13), entry_len=13, entry_num=1) == 0         # vdev_id 0
    assert fails("E2BIG", good + b"\x01", entry_len=13, entry_num=1) == 0
    assert fails("EINVAL", good, entry_len=1, entry_num=1) == 0
    assert fails("EOPNOTSUPP", viommu_inv(0xFFFF_FFFF, 0x99, 0), entry_len=12, entry_num=1) == 0
    assert fails("EINVAL", b"", entry_len=12, entry_num=1) == 0
    assert fails("EINVAL", good, entry_len=0, entry_num=1) == 0
    assert fails("EINVAL", viommu_inv(0, 0x99, 4), entry_len=12, entry_num=1) == 0
    assert fails("EINVAL", viommu_inv(0, 0x9, 0), entry_len=12, entry_num=1) == 0
    assert fails("EFAULT", good, entry_len=12, entry_num=2) == 0       # copied whole, first
    assert fails("EOPNOTSUPP", good + viommu_inv(0xFFFF_FFFF, 0x99, 1), entry_len=12,
                 entry_num=2) == 1
    ctx.dev_check_cache(s.dev, 0, 0)
    ctx.dev_check_cache(s.dev, 1, IOMMU_TEST_DEV_CACHE_DEFAULT)
    assert fails("EINVAL", good + viommu_inv(0, 0x99, 4), entry_len=12, entry_num=2) == 1
    assert ctx.hwpt_invalidate(s.viommu, viommu_inv(0, 0x99, 1), data_type=VINV, entry_len=12,
                               entry_num=1) == 1
    ctx.dev_check_cache(s.dev, 1, 0)
    ctx.dev_check_cache(s.dev, 2, IOMMU_TEST_DEV_CACHE_DEFAULT)
    assert ctx.hwpt_invalidate(s.viommu, viommu_inv(IOMMU_TEST_INVALIDATE_FLAG_ALL, 0x99, 0),
                               data_type=VINV, entry_len=12, entry_num=1) == 1
    for slot in range(4):
        ctx.dev_check_cache(s.dev, slot, 0)
    raises_errno(lambda: ctx.dev_check_cache(s.dev, 4, 0), "EINVAL")


# -- HW queues (viommu.c iommufd_hw_queue_alloc_ioctl, selftest.c mock_hw_queue_init_phys) -------

def test_hw_queue_rules(ctx) -> None:
    """The selftest's hw_queue: the checks in order, the pinned first page
    locked against unmap (EBUSY), queue 1 holding queue 0 (EBUSY), and the
    internal access of each queue."""
    s = Setup(ctx)
    q = IOMMU_HW_QUEUE_TYPE_SELFTEST
    iova = MOCK_APERTURE_START
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, iova, PAGE_SIZE, 0), "EOPNOTSUPP")
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, iova, PAGE_SIZE, q, flags=1),
                 "EOPNOTSUPP")
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, iova, 0, q), "EINVAL")
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, (1 << 64) - 1, PAGE_SIZE, q),
                 "EOVERFLOW")
    raises_errno(lambda: ctx.hw_queue_alloc(999, 0, iova, PAGE_SIZE, q), "ENOENT")
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, iova, PAGE_SIZE, 7), "EOPNOTSUPP")
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, iova, PAGE_SIZE, q), "ENOENT")
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, 1, (1 << 64) - 1, q), "ERANGE")
    before = sorted(objects(ctx))
    ctx.ioas_map(s.ioas, BUF, PAGE_SIZE, iova)
    iova2 = ctx.ioas_map(s.ioas, BUF + PAGE_SIZE, PAGE_SIZE)
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 1, iova, PAGE_SIZE, q), "EIO")
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 2, iova, PAGE_SIZE, q), "EINVAL")
    assert sorted(objects(ctx)) == before            # the queue's and its access's ids went back
    q0 = ctx.hw_queue_alloc(s.viommu, 0, iova, PAGE_SIZE, q)
    access = q0 + 1                                   # iommufd_access_create_internal's object
    assert objects(ctx)[q0].type == pb.OBJECT_TYPE_HW_QUEUE
    assert objects(ctx)[access].type == pb.OBJECT_TYPE_ACCESS
    raises_errno(lambda: ctx.destroy(access), "EBUSY")
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, iova, PAGE_SIZE, q), "EEXIST")
    raises_errno(lambda: ctx.ioas_unmap(s.ioas, iova, PAGE_SIZE), "EBUSY")
    raises_errno(lambda: ctx.ioas_unmap_all(s.ioas), "EBUSY")
    ctx.ioas_unmap(s.ioas, iova2, PAGE_SIZE)          # not pinned by a queue
    q1 = ctx.hw_queue_alloc(s.viommu, 1, iova + PAGE_SIZE // 2, PAGE_SIZE // 2, q)
    raises_errno(lambda: ctx.destroy(q0), "EBUSY")
    raises_errno(lambda: ctx.destroy(s.viommu), "EBUSY")
    ctx.destroy(q1)
    ctx.destroy(q0)
    assert access not in objects(ctx)
    assert ctx.ioas_unmap(s.ioas, iova, PAGE_SIZE) == PAGE_SIZE


def test_hw_queue_memory_must_be_readable_and_contiguous(ctx) -> None:
    """iommufd_access_pin_pages (EPERM without READ) and
    iommufd_hw_queue_alloc_phys (EFAULT over pages that are not contiguous)."""
    s = Setup(ctx)
    q = IOMMU_HW_QUEUE_TYPE_SELFTEST
    base = MOCK_APERTURE_START
    ctx.ioas_map(s.ioas, BUF, PAGE_SIZE, base, readable=False)
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, base, PAGE_SIZE, q), "EPERM")
    ctx.ioas_map(s.ioas, BUF + 0x10000, PAGE_SIZE, base + PAGE_SIZE)
    ctx.ioas_map(s.ioas, BUF + 0x30000, PAGE_SIZE, base + 2 * PAGE_SIZE)
    raises_errno(lambda: ctx.hw_queue_alloc(s.viommu, 0, base + PAGE_SIZE, 2 * PAGE_SIZE, q),
                 "EFAULT")
    ctx.ioas_map(s.ioas, BUF + 0x11000, PAGE_SIZE, base + 3 * PAGE_SIZE)
    ctx.hw_queue_alloc(s.viommu, 0, base + PAGE_SIZE, PAGE_SIZE, q)
    # The internal access pins with PAGE_SIZE alignment (iopt_add_access).
    assert ctx.ioas_iova_ranges(s.ioas)[1] == PAGE_SIZE


# -- vEVENTQs (eventq.c iommufd_veventq_alloc and its fd's read) ------------------------------

def test_veventq_alloc_rules(ctx) -> None:
    s = Setup(ctx)
    t = IOMMU_VEVENTQ_TYPE_SELFTEST
    raises_errno(lambda: ctx.veventq_alloc(s.viommu, 2, 0), "EOPNOTSUPP")
    raises_errno(lambda: ctx.veventq_alloc(s.viommu, 2, t, flags=1), "EOPNOTSUPP")
    raises_errno(lambda: ctx.veventq_alloc(s.viommu, 2, t, reserved=1), "EOPNOTSUPP")
    raises_errno(lambda: ctx.veventq_alloc(s.viommu, 0, t), "EINVAL")
    raises_errno(lambda: ctx.veventq_alloc(s.viommu, VEVENTQ_MAX_DEPTH + 1, t), "EINVAL")
    raises_errno(lambda: ctx.veventq_alloc(999, 2, t), "ENOENT")
    big = ctx.veventq_alloc(s.viommu, VEVENTQ_MAX_DEPTH, t)
    raises_errno(lambda: ctx.veventq_alloc(s.viommu, 2, t), "EEXIST")
    other = ctx.veventq_alloc(s.viommu, 2, t + 1)     # one queue per type
    info = objects(ctx)[big.veventq_id]
    assert (info.type, info.viommu_id, info.users) == (pb.OBJECT_TYPE_VEVENTQ, s.viommu, 1)
    raises_errno(lambda: ctx.destroy(big.veventq_id), "EBUSY")          # its fd holds it
    raises_errno(lambda: ctx.destroy(s.viommu), "EBUSY")
    big.close()
    ctx.destroy(big.veventq_id)
    other.close()
    ctx.destroy(other.veventq_id)
    raises_errno(lambda: big.read(), "EBADF")


def test_veventq_read_rules_sequence_and_lost_events(ctx) -> None:
    """The selftest's vdevice_alloc: iommufd_veventq_fops_read's size rules,
    sequence numbers, and the lost-events header of a full queue
    (iommufd_viommu_report_event, iommufd_vevent_handler)."""
    s = Setup(ctx)
    q = ctx.veventq_alloc(s.viommu, 2)
    raises_errno(lambda: q.read(0), "EINVAL")
    raises_errno(lambda: q.read(7), "EINVAL")
    assert q.read(8) == b""                           # empty: nothing, at once
    raises_errno(lambda: ctx.trigger_vevent(s.dev), "ENOENT")           # not through a vDEVICE
    vdev = ctx.vdevice_alloc(s.viommu, s.dev, 0x99)
    ctx.mock_domain_replace(s.md.stdev_id, s.nested)
    ctx.trigger_vevent(s.dev)
    raises_errno(lambda: q.read(0), "EINVAL")
    raises_errno(lambda: q.read(8), "EINVAL")         # the header fits, its data does not
    events = q.read_events(4, 24)
    assert [(e.flags, e.sequence, e.data) for e in events] == [(0, 0, b"\x99\0\0\0")]
    ctx.mock_domain_replace(s.md.stdev_id, s.ioas)
    ctx.destroy(vdev)
    ctx.vdevice_alloc(s.viommu, s.dev, 0x88)
    ctx.mock_domain_replace(s.md.stdev_id, s.nested)
    for _ in range(3):
        ctx.trigger_vevent(s.dev)                     # the third is lost: depth 2
    events = q.read_events(4, 36)
    assert [(e.sequence, e.lost_events, e.data) for e in events] == [
        (1, False, b"\x88\0\0\0"), (2, False, b"\x88\0\0\0"), (3, True, b"")]
    ctx.trigger_vevent(s.dev)                         # the overflow is gone after the read
    assert [(e.sequence, e.lost_events) for e in q.read_events(4)] == [(4, False)]
    # A lost-events header gives way to the next event, which takes a later
    # sequence number (the gap tells the reader what was lost).
    for _ in range(4):
        ctx.trigger_vevent(s.dev)
    assert [(e.sequence, e.lost_events) for e in q.read_events(4, 12)] == [(5, False)]
    ctx.trigger_vevent(s.dev)
    assert [(e.sequence, e.lost_events) for e in q.read_events(4)] == [(6, False), (9, False)]
    # A queue of another type only: EOPNOTSUPP.
    q.close()
    ctx.destroy(q.veventq_id)
    ctx.veventq_alloc(s.viommu, 2, IOMMU_VEVENTQ_TYPE_SELFTEST + 1)
    raises_errno(lambda: ctx.trigger_vevent(s.dev), "EOPNOTSUPP")
    raises_errno(lambda: ctx.trigger_vevent(999), "ENOENT")


def test_veventq_read_of_another_fd_is_enotty(ctx, session) -> None:
    from iommud_client.client import Veventq

    raises_errno(lambda: Veventq(ctx, 0, ctx.iommufd).read(), "ENOTTY")
    raises_errno(lambda: Veventq(ctx, 0, 999).read(), "EBADF")


def test_watch_veventq_streams_and_ends_with_the_fd(ctx) -> None:
    """WatchVeventq: every record as it is queued, taken off the queue; the
    stream ends when the fd is closed."""
    s = Setup(ctx)
    ctx.vdevice_alloc(s.viommu, s.dev, 0x42)
    ctx.mock_domain_replace(s.md.stdev_id, s.nested)
    q = ctx.veventq_alloc(s.viommu, 4)
    ctx.trigger_vevent(s.dev)
    stream = q.watch()
    got: list[pb.WatchVeventqResponse] = []
    second = threading.Event()

    def reader() -> None:
        for record in stream:
            got.append(record)
            if len(got) == 2:
                second.set()

    thread = threading.Thread(target=reader)
    thread.start()
    ctx.trigger_vevent(s.dev)
    assert second.wait(20)
    assert [(r.sequence, r.flags, r.data) for r in got] == [(0, 0, b"\x42\0\0\0"),
                                                            (1, 0, b"\x42\0\0\0")]
    assert q.read(64) == b""                          # the stream took them
    q.close()
    thread.join(20)
    assert not thread.is_alive()


def test_closing_the_context_after_the_veventq_fd(ctx, session) -> None:
    """The vEVENTQ's fd holds its context (iommufd_eventq_init): closing the
    iommufd destroys nothing until the fd goes; then everything goes."""
    s = Setup(ctx)
    ctx.vdevice_alloc(s.viommu, s.dev, 1)
    ctx.ioas_map(s.ioas, BUF, PAGE_SIZE, MOCK_APERTURE_START)
    ctx.hw_queue_alloc(s.viommu, 0, MOCK_APERTURE_START, PAGE_SIZE)
    q = ctx.veventq_alloc(s.viommu, 2)
    assert ctx.close() == 0
    destroyed = session.call("CloseFd", pb.CloseFdRequest(fd=q.veventq_fd)).destroyed_objects
    # IOAS, stdev, idev, automatic HWPT, parent, vIOMMU, nested HWPT, vDEVICE,
    # HW queue and its access, vEVENTQ.
    assert destroyed == 11
    raises_errno(lambda: ctx.list_objects(), "EBADF")


def test_async_client_veventq(mock_daemon) -> None:
    async def main() -> None:
        async with AsyncClient(mock_daemon.endpoint) as c, await c.open_session() as s:
            ctx = await s.open_context()
            ioas = await ctx.ioas_alloc()
            md = await ctx.mock_domain(ioas)
            parent = await ctx.hwpt_alloc(md.idev_id, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT)
            viommu = await ctx.viommu_alloc(md.idev_id, parent)
            nested = await ctx.hwpt_alloc(md.idev_id, viommu, data_type=SEL, data=DATA)
            await ctx.vdevice_alloc(viommu, md.idev_id, 7)
            await ctx.mock_domain_replace(md.stdev_id, nested)
            q = await ctx.veventq_alloc(viommu, 2)
            await ctx.trigger_vevent(md.idev_id)
            assert [e.data for e in await q.read_events(4)] == [b"\x07\0\0\0"]
            await ctx.trigger_vevent(md.idev_id)
            stream = q.watch()
            record = await stream.read()
            assert (record.sequence, record.data) == (1, b"\x07\0\0\0")
            stream.cancel()
            await q.close()
            await ctx.md_check_iotlb(nested, 0, IOMMU_TEST_IOTLB_DEFAULT)
            await ctx.dev_check_cache(md.idev_id, 0, IOMMU_TEST_DEV_CACHE_DEFAULT)
    asyncio.run(main())


def test_the_journal_brings_the_objects_back(tmp_path, daemon_factory) -> None:
    """kill -9, then a graceful stop (a snapshot): the vIOMMU objects come
    back with their holds, the HW queue's lock, the cleared IOTLB and cache
    slots, the tombstone and the vEVENTQ's fd; the queue's records do not
    (events are not journaled)."""
    from test_journal import kill9

    db = tmp_path / "journal.db"
    d = daemon_factory("--journal", str(db), "--debug-selftest", "1", name="a")
    with d.client() as c:
        s = c.open_session("vm", lease_seconds=600)
        ctx = s.open_context()
        st = Setup(ctx)
        other = ctx.mock_domain(st.ioas)
        gone = ctx.vdevice_alloc(st.viommu, other.idev_id, 0x77)
        ctx.destroy(other.stdev_id)                            # a tombstone
        ctx.vdevice_alloc(st.viommu, st.dev, 0x99)
        ctx.mock_domain_replace(st.md.stdev_id, st.nested)
        nested = ctx.hwpt_alloc(st.dev, st.parent, data_type=SEL, data=DATA)
        ctx.hwpt_invalidate(nested, hwpt_inv(0, 2), data_type=INV, entry_len=8, entry_num=1)
        ctx.hwpt_invalidate(st.viommu, viommu_inv(0, 0x99, 3), data_type=VINV, entry_len=12,
                            entry_num=1)
        ctx.ioas_map(st.ioas, BUF, PAGE_SIZE, MOCK_APERTURE_START)
        ctx.hw_queue_alloc(st.viommu, 0, MOCK_APERTURE_START, PAGE_SIZE)
        q = ctx.veventq_alloc(st.viommu, 2)
        ctx.trigger_vevent(st.dev)
        before = [str(o) for o in ctx.list_objects()]

    def check(daemon) -> None:
        with daemon.client() as c2:
            back = c2.attach_session(s.token).context(ctx.iommufd)
            assert [str(o) for o in back.list_objects()] == before
            raises_errno(lambda: back.destroy(gone), "ENOENT")
            raises_errno(lambda: back.ioas_unmap(st.ioas, MOCK_APERTURE_START, PAGE_SIZE),
                         "EBUSY")
            back.md_check_iotlb(nested, 2, 0)
            back.md_check_iotlb(nested, 3, IOMMU_TEST_IOTLB_DEFAULT)
            back.dev_check_cache(st.dev, 3, 0)
            back.dev_check_cache(st.dev, 2, IOMMU_TEST_DEV_CACHE_DEFAULT)
            from iommud_client.client import Veventq
            fd = Veventq(back, q.veventq_id, q.veventq_fd)
            assert fd.read(64) == b""                          # the records are not journaled
            back.trigger_vevent(st.dev)
            assert [(e.sequence, e.data) for e in fd.read_events(4)] == [(0, b"\x99\0\0\0")]

    kill9(d)
    d2 = daemon_factory("--journal", str(db), "--debug-selftest", "1", name="b")
    check(d2)
    assert d2.stop() == 0                                     # writes a snapshot
    d3 = daemon_factory("--journal", str(db), "--debug-selftest", "1", name="c")
    assert d3.events("journal.recovered")[0]["snapshot_sessions"] >= 1
    check(d3)


def test_mmap_of_the_viommu_region(ctx, session) -> None:
    """iommufd_fops_mmap (the selftest's viommu_alloc_with_data): exactly the
    region VIOMMU_ALLOC handed out, shared, not executable; each mapping
    holds the vIOMMU until unmapped; a closing context drops them."""
    s = Setup(ctx)
    vid, out = ctx.viommu_alloc_data(s.dev, s.parent, struct.pack("<IIQQ", 0xBEEF, 0, 0, 0))
    _, _, offset, length = struct.unpack("<IIQQ", out)
    for off, size in ((offset + PAGE_SIZE, length), (offset + 2 * PAGE_SIZE, length),
                      (offset, length // 2), (offset, length * 2), (0, length)):
        raises_errno(lambda off=off, size=size: ctx.mmap(off, size), "ENXIO")
    raises_errno(lambda: ctx.mmap(offset, length - 1), "EINVAL")
    raises_errno(lambda: ctx.mmap(offset, length, shared=False), "EINVAL")
    raises_errno(lambda: ctx.mmap(offset, length, exec=True), "EPERM")
    data = ctx.mmap(offset, length)
    assert len(data) == length and data[:4] == struct.pack("<I", 0xBEEF)
    assert data[4:] == bytes(length - 4)
    ctx.mmap(offset, length)                          # a second mapping: a second hold
    raises_errno(lambda: ctx.destroy(vid), "EBUSY")
    ctx.munmap(offset)
    raises_errno(lambda: ctx.destroy(vid), "EBUSY")
    ctx.munmap(offset)
    raises_errno(lambda: ctx.munmap(offset), "EINVAL")
    raises_errno(lambda: ctx.munmap(offset + PAGE_SIZE), "EINVAL")
    ctx.destroy(vid)
    raises_errno(lambda: ctx.mmap(offset, length), "ENXIO")   # the region went with it
    # A mapping still held when the context closes does not keep it alive.
    _, out = ctx.viommu_alloc_data(s.dev, s.parent, struct.pack("<IIQQ", 1, 0, 0, 0))
    ctx.mmap(*struct.unpack("<IIQQ", out)[2:])
    assert ctx.close() == 8       # IOAS, stdev, idev, automatic HWPT, parent, 2 vIOMMUs, nested
