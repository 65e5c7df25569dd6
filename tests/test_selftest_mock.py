"""The kernel selftest's mock IOMMU and its test operations, through the
client library, against a daemon run with debug_selftest (the rules are those
of drivers/iommu/iommufd/selftest.c and device.c at v7.3; each test names the
kernel function it follows)."""
from __future__ import annotations

import pytest
from support import raises_errno

from iommud_client import DmaAccess
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_HW_CAP_DIRTY_TRACKING,
    IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED,
    IOMMU_HW_INFO_SELFTEST_REGVAL,
    IOMMU_HW_INFO_TYPE_SELFTEST,
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    IOMMU_HWPT_ALLOC_NEST_PARENT,
    IOMMU_HWPT_ALLOC_PASID,
    IOMMU_HWPT_DATA_SELFTEST,
    IOMMU_HWPT_FAULT_ID_VALID,
    MOCK_ACCESS_RW_WRITE,
    MOCK_APERTURE_LAST,
    MOCK_APERTURE_START,
    MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
    MOCK_FLAGS_ACCESS_WRITE,
    MOCK_FLAGS_DEVICE_NO_DIRTY,
    MOCK_FLAGS_DEVICE_PASID,
    MOCK_HUGE_APERTURE_LAST,
    MOCK_IOMMUPT_HUGE,
    MOCK_PAGE_SIZE,
)

RW = 4 | 2
BUF = 0x7F00_0000_0000


@pytest.fixture(scope="module")
def mock_daemon(module_daemon_factory):
    return module_daemon_factory("--debug-selftest", "1", name="selftest")


@pytest.fixture
def ctx(mock_daemon):
    with mock_daemon.client() as c, c.open_session("selftest") as s:
        yield s.open_context()


def selftest_data(pagetable_type: int = 0, iotlb: int = 0) -> bytes:
    return iotlb.to_bytes(4, "little") + pagetable_type.to_bytes(4, "little")


def test_test_operations_are_enotty_without_debug_selftest(ctx, daemon) -> None:
    with daemon.client() as c, c.open_session() as s:
        plain = s.open_context()
        ioas = plain.ioas_alloc()
        raises_errno(lambda: plain.mock_domain(ioas), "ENOTTY")
        raises_errno(lambda: plain.test_add_reserved(ioas, 0, 0x1000), "ENOTTY")


def test_mock_domain_ids_geometry_and_hw_info(ctx) -> None:
    """iommufd_test_mock_domain: stdev, then the DEVICE, then the automatic
    HWPT; the mock aperture reserves everything outside [1<<24, (1<<31)-1]
    and the 2 KiB IO page sets the IOAS alignment (iopt_table_add_domain)."""
    ioas = ctx.ioas_alloc()
    md = ctx.mock_domain(ioas)
    assert (md.stdev_id, md.idev_id, md.hwpt_id) == (ioas + 1, ioas + 2, ioas + 3)
    ranges, align = ctx.ioas_iova_ranges(ioas)
    assert [(r.start, r.last) for r in ranges] == [(MOCK_APERTURE_START, MOCK_APERTURE_LAST)]
    assert align == MOCK_PAGE_SIZE
    types = {o.id: o.type for o in ctx.list_objects()}
    assert types[md.stdev_id] == pb.OBJECT_TYPE_SELFTEST
    assert types[md.idev_id] == pb.OBJECT_TYPE_DEVICE
    # mock_domain_hw_info and mock_domain_capable.
    info = ctx.get_hw_info(md.idev_id, data_len=16)
    assert info.out_data_type == IOMMU_HW_INFO_TYPE_SELFTEST and info.data_len == 8
    assert info.data == (0).to_bytes(4, "little") + \
        IOMMU_HW_INFO_SELFTEST_REGVAL.to_bytes(4, "little") + bytes(8)
    assert info.out_capabilities == IOMMU_HW_CAP_DIRTY_TRACKING | IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED
    assert info.out_max_pasid_log2 == 0
    raises_errno(lambda: ctx.get_hw_info(md.idev_id, flags=1, in_data_type=1), "EOPNOTSUPP")
    assert ctx.get_hw_info(md.idev_id, flags=1,
                           in_data_type=IOMMU_HW_INFO_TYPE_SELFTEST).data_len == 8
    # A second mock device on the same IOAS shares the automatic HWPT.
    assert ctx.mock_domain(ioas).hwpt_id == md.hwpt_id


def test_mock_domain_flags_and_failures(ctx) -> None:
    ioas = ctx.ioas_alloc()
    pasid = ctx.mock_domain(ioas, MOCK_FLAGS_DEVICE_PASID)
    assert ctx.get_hw_info(pasid.idev_id).out_max_pasid_log2 == 20
    nodirty = ctx.mock_domain(ctx.ioas_alloc(), MOCK_FLAGS_DEVICE_NO_DIRTY)
    assert ctx.get_hw_info(nodirty.idev_id).out_capabilities == IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED
    before = [o.id for o in ctx.list_objects()]
    raises_errno(lambda: ctx.mock_domain(ioas, 1 << 1), "EINVAL")   # HUGE_IOVA is gone in 7.x
    raises_errno(lambda: ctx.mock_domain(999), "ENOENT")
    raises_errno(lambda: ctx.mock_domain(pasid.stdev_id), "EINVAL")  # neither IOAS nor HWPT
    assert [o.id for o in ctx.list_objects()] == before              # every step undone
    # A map below the aperture start is in the way of the domain's reservation.
    low = ctx.ioas_alloc()
    ctx.ioas_map(low, BUF, 0x1000, iova=0x10_0000)
    raises_errno(lambda: ctx.mock_domain(low), "EADDRINUSE")
    ctx.ioas_unmap(low, 0x10_0000, 0x1000)
    ctx.mock_domain(low)
    raises_errno(lambda: ctx.ioas_map(low, BUF, 0x1000, iova=0x10_0000), "EINVAL")
    assert MOCK_APERTURE_START <= ctx.ioas_map(low, BUF, 0x1000) <= MOCK_APERTURE_LAST


def test_destroying_the_mock_device_unbinds_it(ctx) -> None:
    """iommufd_selftest_destroy: the DEVICE goes with it, an automatic HWPT
    with its last device; a stale stdev is ENOENT, the DEVICE is never
    destroyed directly (EBUSY)."""
    ioas = ctx.ioas_alloc()
    md = ctx.mock_domain(ioas)
    raises_errno(lambda: ctx.destroy(md.idev_id), "EBUSY")
    raises_errno(lambda: ctx.destroy(ioas), "EBUSY")
    ctx.destroy(md.stdev_id)
    assert [o.id for o in ctx.list_objects()] == [ioas]
    raises_errno(lambda: ctx.mock_domain_replace(md.stdev_id, ioas), "ENOENT")
    raises_errno(lambda: ctx.pasid_detach(md.stdev_id, 1), "ENOENT")
    ctx.destroy(ioas)


def test_closing_the_iommufd_unplugs_its_mock_devices(mock_daemon) -> None:
    with mock_daemon.client() as c, c.open_session() as s:
        ctx = s.open_context()
        md = ctx.mock_domain(ctx.ioas_alloc())
        name = next(o.device for o in ctx.list_objects() if o.id == md.stdev_id)
        assert name in {d.name for d in s.list_devices()}
        assert ctx.close() == 4
        assert name not in {d.name for d in s.list_devices()}


def test_mock_domain_replace(ctx) -> None:
    """iommufd_device_replace: EINVAL when not attached, nothing changes on
    failure, the old automatic HWPT goes when its last device leaves."""
    ioas, other = ctx.ioas_alloc(), ctx.ioas_alloc()
    md = ctx.mock_domain(ioas)
    new = ctx.mock_domain_replace(md.stdev_id, other)
    assert new != md.hwpt_id and md.hwpt_id not in {o.id for o in ctx.list_objects()}
    raises_errno(lambda: ctx.mock_domain_replace(md.stdev_id, md.hwpt_id), "ENOENT")
    assert ctx.mock_domain_replace(md.stdev_id, new) == new              # same HWPT: a no-op
    # A dirty-tracking HWPT refuses a device that cannot track: EINVAL, kept.
    nodirty = ctx.mock_domain(ctx.ioas_alloc(), MOCK_FLAGS_DEVICE_NO_DIRTY)
    dirty_hwpt = ctx.hwpt_alloc(md.idev_id, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
    raises_errno(lambda: ctx.mock_domain_replace(nodirty.stdev_id, dirty_hwpt), "EINVAL")
    ctx.pasid_check_hwpt(nodirty.stdev_id, 0, nodirty.hwpt_id)
    ctx.device_detach(md.idev_id)
    raises_errno(lambda: ctx.mock_domain_replace(md.stdev_id, ioas), "EINVAL")


def test_hwpt_alloc_with_selftest_data(ctx) -> None:
    """mock_domain_alloc_paging_flags and iommufd_hwpt_paging_alloc."""
    ioas = ctx.ioas_alloc()
    md = ctx.mock_domain(ioas)
    nodirty = ctx.mock_domain(ctx.ioas_alloc(), MOCK_FLAGS_DEVICE_NO_DIRTY)
    sel = IOMMU_HWPT_DATA_SELFTEST
    raises_errno(lambda: ctx.hwpt_alloc(md.idev_id, ioas, data_type=sel, data=b"\0" * 3),
                 "EINVAL")
    raises_errno(lambda: ctx.hwpt_alloc(md.idev_id, ioas, data_type=sel, data=b"\0" * 9),
                 "EINVAL")
    raises_errno(lambda: ctx.hwpt_alloc(md.idev_id, ioas, data_type=sel, data=selftest_data(2)),
                 "EOPNOTSUPP")
    raises_errno(lambda: ctx.hwpt_alloc(md.idev_id, ioas, data_type=0xBEEF, data=b"\0" * 8),
                 "EOPNOTSUPP")
    raises_errno(lambda: ctx.hwpt_alloc(md.idev_id, ioas, data_type=sel, data_len=8), "EFAULT")
    raises_errno(lambda: ctx.hwpt_alloc(nodirty.idev_id, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING),
                 "EOPNOTSUPP")
    raises_errno(lambda: ctx.hwpt_alloc(md.idev_id, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT
                                        | IOMMU_HWPT_FAULT_ID_VALID), "EOPNOTSUPP")
    # The huge page table: 1 MiB | PAGE_SIZE, its own 38-bit aperture.
    huge_ioas = ctx.ioas_alloc()
    ctx.hwpt_alloc(md.idev_id, huge_ioas, data_type=sel, data=selftest_data(MOCK_IOMMUPT_HUGE))
    ranges, align = ctx.ioas_iova_ranges(huge_ioas)
    assert [(r.start, r.last) for r in ranges] == [(0, MOCK_HUGE_APERTURE_LAST)]
    assert align == 0x1000
    ctx.hwpt_alloc(md.idev_id, ctx.ioas_alloc(), data_type=sel, data=selftest_data()[:4])


def test_add_reserved(ctx) -> None:
    """iommufd_test_add_reserved → iopt_reserve_iova."""
    ioas = ctx.ioas_alloc()
    raises_errno(lambda: ctx.test_add_reserved(ioas, 0x1000, 0), "EINVAL")
    raises_errno(lambda: ctx.test_add_reserved(ioas, 1 << 63, 1 << 63 | 1), "EOVERFLOW")
    raises_errno(lambda: ctx.test_add_reserved(999, 0x1000, 0x1000), "ENOENT")
    ctx.ioas_map(ioas, BUF, 0x2000, iova=0x40_0000)
    raises_errno(lambda: ctx.test_add_reserved(ioas, 0x40_1000, 0x1000), "EADDRINUSE")
    ctx.test_add_reserved(ioas, 0x10_0000, 0x10_0000)
    ctx.test_add_reserved(ioas, 0x18_0000, 0x10_0000)                   # overlap is fine
    raises_errno(lambda: ctx.ioas_map(ioas, BUF, 0x1000, iova=0x10_0000), "EINVAL")
    raises_errno(lambda: ctx.ioas_allow_iovas(ioas, [(0x10_0000, 0x10_ffff)]), "EADDRINUSE")


def test_pasid_operations(ctx) -> None:
    """iommufd_device_attach/replace/detach with a PASID, through the test
    ops: EBUSY before anything else on a second attach, EINVAL for an IOAS
    (automatic HWPTs are not PASID-compatible) and for a device without PASID
    support, the 1024 replace-failure quirk (mock_domain_set_dev_pasid_nop)."""
    ioas = ctx.ioas_alloc()
    dev = ctx.mock_domain(ioas, MOCK_FLAGS_DEVICE_PASID)
    plain = ctx.mock_domain(ioas)
    ctx.pasid_detach(dev.stdev_id, 100)                                   # nothing: a no-op
    ctx.pasid_check_hwpt(dev.stdev_id, 100, 0)
    raises_errno(lambda: ctx.pasid_attach(dev.stdev_id, 100, ioas), "EINVAL")
    ctx.pasid_check_hwpt(dev.stdev_id, 100, 0)
    # The RID sits on an automatic HWPT, which is not PASID-compatible.
    s2 = ctx.hwpt_alloc(dev.idev_id, ioas, IOMMU_HWPT_ALLOC_PASID)
    raises_errno(lambda: ctx.pasid_attach(dev.stdev_id, 100, s2), "EINVAL")
    ctx.mock_domain_replace(dev.stdev_id, s2)
    assert ctx.pasid_attach(dev.stdev_id, 100, s2) == s2
    ctx.pasid_check_hwpt(dev.stdev_id, 100, s2)
    raises_errno(lambda: ctx.pasid_check_hwpt(dev.stdev_id, 100, 0), "EINVAL")
    raises_errno(lambda: ctx.pasid_check_hwpt(dev.stdev_id, 100, 999), "ENOENT")
    raises_errno(lambda: ctx.pasid_check_hwpt(dev.stdev_id, 100, ioas), "EINVAL")
    other = ctx.hwpt_alloc(dev.idev_id, ioas, IOMMU_HWPT_ALLOC_PASID)
    raises_errno(lambda: ctx.pasid_attach(dev.stdev_id, 100, other), "EBUSY")
    raises_errno(lambda: ctx.pasid_replace(dev.stdev_id, 200, other), "EINVAL")
    raises_errno(lambda: ctx.pasid_replace(dev.stdev_id, 100, ioas), "EINVAL")
    assert ctx.pasid_replace(dev.stdev_id, 100, other) == other
    # A RID attach of a non-PASID-compatible HWPT while a PASID is attached.
    raises_errno(lambda: ctx.mock_domain_replace(dev.stdev_id, ioas), "EINVAL")
    # The quirk: PASID 1024's second set fails ENOMEM and keeps the first.
    ctx.pasid_attach(dev.stdev_id, 1024, s2)
    raises_errno(lambda: ctx.pasid_replace(dev.stdev_id, 1024, other), "ENOMEM")
    ctx.pasid_check_hwpt(dev.stdev_id, 1024, s2)
    ctx.pasid_detach(dev.stdev_id, 1024)
    ctx.pasid_check_hwpt(dev.stdev_id, 1024, 0)
    # A device without PASID support: any PASID >= 1 is beyond max_pasids = 1.
    ctx.mock_domain_replace(plain.stdev_id, s2)
    raises_errno(lambda: ctx.pasid_attach(plain.stdev_id, 1, s2), "EINVAL")


def test_kapi_by_dev_id(ctx) -> None:
    """iommufd_device_attach (EBUSY when attached), _replace (EINVAL when
    not), _detach (a no-op twice), and DMA by dev_id."""
    ioas = ctx.ioas_alloc()
    md = ctx.mock_domain(ioas)
    raises_errno(lambda: ctx.device_attach(md.idev_id, ioas), "EBUSY")
    raises_errno(lambda: ctx.device_attach(md.idev_id, 999), "ENOENT")
    raises_errno(lambda: ctx.device_attach(999, ioas), "ENOENT")
    iova = ctx.ioas_map(ioas, BUF, 0x1000)
    assert ctx.device_dma(md.idev_id, [DmaAccess(iova + 8, 4, True)]).results[0].pa == BUF + 8
    ctx.device_detach(md.idev_id)
    ctx.device_detach(md.idev_id)
    blocked = ctx.device_dma(md.idev_id, [DmaAccess(iova, 4)])
    assert blocked.faults[0].reason == pb.DMA_FAULT_REASON_BLOCKED
    raises_errno(lambda: ctx.device_replace(md.idev_id, ioas), "EINVAL")
    hwpt = ctx.device_attach(md.idev_id, ioas)
    assert ctx.device_replace(md.idev_id, ioas) == hwpt


def test_accesses(ctx) -> None:
    """iommufd_test_create_access / _access_pages / _access_rw and the test
    access's unmap callback."""
    ioas = ctx.ioas_alloc()
    ro = ctx.ioas_map(ioas, BUF, 0x4000, iova=0x100_0000, readable=True, writeable=False)
    rw = ctx.ioas_map(ioas, BUF + 0x4000, 0x4000, iova=0x100_4000)
    raises_errno(lambda: ctx.create_access(ioas, 1 << 3), "EOPNOTSUPP")
    raises_errno(lambda: ctx.create_access(999), "ENOENT")
    acc = ctx.create_access(ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES)
    access_obj = next(o.id for o in ctx.list_objects() if o.type == pb.OBJECT_TYPE_ACCESS)
    raises_errno(lambda: ctx.destroy(access_obj), "EBUSY")
    raises_errno(lambda: ctx.destroy(ioas), "EBUSY")
    # ACCESS_PAGES: the length cap first, flags, permissions, holes, identity.
    raises_errno(lambda: acc.pages(ro, (16 << 20) + 1), "ENOMEM")
    raises_errno(lambda: acc.pages(ro, 0x1000, flags=1 << 4), "EOPNOTSUPP")
    raises_errno(lambda: acc.pages(ro, 0x1000, flags=MOCK_FLAGS_ACCESS_WRITE), "EPERM")
    raises_errno(lambda: acc.pages(ro, 0), "EINVAL")
    raises_errno(lambda: acc.pages(0x200_0000, 0x1000), "ENOENT")
    raises_errno(lambda: acc.pages(ro, 0x1000, user_va=BUF + 0x1000), "EBADE")
    assert acc.pages(ro, 0x2000, user_va=BUF) == 0
    assert acc.pages(ro, 0x8000) == 1                                     # spans both areas
    assert acc.pages(rw, 0x1000, flags=MOCK_FLAGS_ACCESS_WRITE) == 2
    ctx.md_check_refs(BUF, 0x8000, 1)
    raises_errno(lambda: ctx.md_check_refs(BUF, 0x8000, 0), "EIO")
    raises_errno(lambda: ctx.md_check_refs(BUF + 1, 0x1000, 1), "EINVAL")
    acc.destroy_pages(0)
    raises_errno(lambda: acc.destroy_pages(0), "ENOENT")
    # Unmapping an area tells the access, which drops what it pinned there.
    ctx.ioas_unmap(ioas, rw, 0x4000)
    raises_errno(lambda: acc.destroy_pages(1), "ENOENT")
    raises_errno(lambda: acc.destroy_pages(2), "ENOENT")
    # ACCESS_RW answers a copy plan: the user addresses behind the range.
    plan = acc.rw(ro + 0x10, 0x20, user_va=0x5000)
    assert not plan.write and [(s.user_va, s.length, s.buffer_offset)
                               for s in plan.segments] == [(BUF + 0x10, 0x20, 0)]
    raises_errno(lambda: acc.rw(ro, 0x10, flags=MOCK_ACCESS_RW_WRITE), "EPERM")
    raises_errno(lambda: acc.rw(ro + 0x3FF0, 0x20), "ENOENT")
    raises_errno(lambda: acc.rw(ro, 0x10, flags=1 << 5), "EOPNOTSUPP")
    other = ctx.ioas_alloc()
    acc.replace_ioas(other)
    ctx.destroy(ioas)
    raises_errno(lambda: acc.rw(ro, 0x10), "ENOENT")
    # An fd that is not an access is EBADFD; an access without pin ops EOPNOTSUPP.
    raises_errno(lambda: ctx.session.call("TestAccessRw", pb.TestAccessRwRequest(
        iommufd=ctx.iommufd, access_fd=ctx.iommufd, iova=0, length=1)), "EBADFD")
    plain = ctx.create_access(other)
    raises_errno(lambda: plain.pages(0x100_0000, 0x1000), "EOPNOTSUPP")
    acc.close()
    plain.close()
    assert ctx.list_objects()[-1].type == pb.OBJECT_TYPE_IOAS
    ctx.destroy(other)


def test_md_check_refs_counts_pins_of_domain_areas(ctx) -> None:
    """iommufd_test_md_check_refs: an area is pinned while its IOAS has a
    domain; EIO on a mismatch, EINVAL for unaligned arguments."""
    ioas = ctx.ioas_alloc()
    iova = ctx.ioas_map(ioas, BUF, 0x4000, iova=MOCK_APERTURE_START)
    ctx.md_check_refs(BUF, 0x4000, 0)                                    # no domain: not pinned
    md = ctx.mock_domain(ioas)
    ctx.md_check_refs(BUF, 0x4000, 1)
    ctx.md_check_refs(BUF + 0x4000, 0x1000, 0)
    raises_errno(lambda: ctx.md_check_refs(BUF, 0x5000, 1), "EIO")
    raises_errno(lambda: ctx.md_check_refs(BUF, 0x800, 1), "EINVAL")
    ctx.destroy(md.stdev_id)
    ctx.md_check_refs(BUF, 0x4000, 0)
    ctx.ioas_unmap(ioas, iova, 0x4000)


def test_set_temp_memory_limit(ctx) -> None:
    raises_errno(lambda: ctx.set_temp_memory_limit(11), "EINVAL")
    ctx.set_temp_memory_limit(16)


def test_mock_iommu_kind_by_hot_add(mock_daemon) -> None:
    """A mock IOMMU in the host topology: fixed geometry, PASID width 0 or 20."""
    with mock_daemon.client() as c, c.open_session() as s:
        dev = pb.HostDevice(name="0000:3f:00.0", group=900, driver="vfio-pci", iommu="mock",
                            max_pasid_log2=20, dirty_tracking=True)
        raises_errno(lambda: s.hot_add_device(pb.HostDevice(
            name="0000:3f:00.1", group=901, iommu="mock", pgsize_bitmap=0x1000)), "EINVAL")
        raises_errno(lambda: s.hot_add_device(pb.HostDevice(
            name="0000:3f:00.1", group=901, iommu="amd")), "EINVAL")
        s.hot_add_device(dev)
        shown = {d.name: d for d in s.list_devices()}["0000:3f:00.0"]
        assert shown.iommu == "mock" and shown.aperture_start == MOCK_APERTURE_START
        with s.open_device(dev.name) as fd:
            ctx = s.open_context()
            dev_id = fd.bind(ctx)
            ioas = ctx.ioas_alloc()
            fd.attach(ioas)
            assert ctx.get_hw_info(dev_id).out_data_type == IOMMU_HW_INFO_TYPE_SELFTEST
            ranges, _ = ctx.ioas_iova_ranges(ioas)
            assert ranges[0].start == MOCK_APERTURE_START
        s.hot_remove_device(dev.name)
