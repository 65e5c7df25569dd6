"""The six deviations the conformance checks found, each with the kernel's
answer and the function it comes from (v7.3). PASID attach of an IOAS and
PASID on a device without PASID support are in test_device.py
(test_pasid_rules) and test_selftest_mock.py (test_pasid_operations)."""
from __future__ import annotations

import pytest
from support import raises_errno

from iommud_client import Container, DmaAccess
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    IOMMU_HWPT_DATA_SELFTEST,
    IOMMU_OPTION_HUGE_PAGES,
    IOMMU_OPTION_OP_GET,
    IOMMU_OPTION_OP_SET,
    IOMMU_VFIO_IOAS_SET,
    MOCK_APERTURE_START,
    MOCK_HUGE_PAGE_SIZE,
    MOCK_IOMMUPT_HUGE,
    MOCK_PAGE_SIZE,
    VFIO_TYPE1_IOMMU,
    VFIO_TYPE1v2_IOMMU,
)

BUF = 0x7F00_0000_0000
HUGE_BUF = 0x7F00_4000_0000                  # 1 GiB aligned: huge leaves fit


@pytest.fixture(scope="module")
def mock_daemon(module_daemon_factory):
    return module_daemon_factory("--debug-selftest", "1", "--vfio-mode", "iommufd",
                                 name="fidelity")


@pytest.fixture
def s(mock_daemon):
    with mock_daemon.client() as c, c.open_session("fidelity") as sess:
        yield sess


def bits(data: bytes) -> list[int]:
    value = int.from_bytes(data, "little")
    return [i for i in range(len(data) * 8) if value >> i & 1]


def dirty_hwpt(ctx, huge: bool = False):
    """A mock device on a dirty-tracking HWPT of a fresh IOAS with 64 KiB
    (or 2 MiB) mapped at the aperture start."""
    ioas = ctx.ioas_alloc()
    if not huge:
        ctx.option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 0)
    length = 2 * MOCK_HUGE_PAGE_SIZE if huge else 0x10000
    ctx.ioas_map(ioas, HUGE_BUF if huge else BUF, length, iova=MOCK_APERTURE_START)
    md = ctx.mock_domain(ioas)
    data = (0).to_bytes(4, "little") + MOCK_IOMMUPT_HUGE.to_bytes(4, "little") if huge else b""
    hwpt = ctx.hwpt_alloc(md.idev_id, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
                          data_type=IOMMU_HWPT_DATA_SELFTEST if huge else 0, data=data)
    ctx.mock_domain_replace(md.stdev_id, hwpt)
    ctx.hwpt_set_dirty_tracking(hwpt, True)
    return ioas, md, hwpt, length


# -- 1. dirty bits per IO page ---------------------------------------------------------------

def test_dirty_bits_are_recorded_per_io_page_table_entry(s) -> None:
    """iommu_dirty_bitmap_record with the leaf's size (generic_pt
    record_dirty): with huge pages off each CPU page is one 4 KiB entry of
    the 2 KiB-granule mock, so a one-byte write reads back as two bits at
    page_size 2048, one at 4096, and its neighbours stay clean."""
    ctx = s.open_context()
    _, md, hwpt, length = dirty_hwpt(ctx)
    base = MOCK_APERTURE_START
    ctx.device_dma(md.idev_id, [DmaAccess(base + 0x1800, 1, True)])
    no_clear = ctx.hwpt_get_dirty_bitmap(hwpt, base, length, MOCK_PAGE_SIZE, no_clear=True)
    assert bits(no_clear) == [2, 3]
    assert bits(ctx.hwpt_get_dirty_bitmap(hwpt, base, length, 0x1000)) == [1]
    assert bits(ctx.hwpt_get_dirty_bitmap(hwpt, base, length, MOCK_PAGE_SIZE)) == []
    # TEST_OP_DIRTY marks the entry under each set bit; out_nr_dirty counts bits.
    assert ctx.test_dirty(hwpt, base, length, MOCK_PAGE_SIZE, bytes([0b1000_0001]) + bytes(3)) == 2
    assert bits(ctx.hwpt_get_dirty_bitmap(hwpt, base, length, MOCK_PAGE_SIZE)) == [0, 1, 6, 7]
    ctx.hwpt_set_dirty_tracking(hwpt, False)
    raises_errno(lambda: ctx.test_dirty(hwpt, base, length, MOCK_PAGE_SIZE, b"\x01"), "EINVAL")
    raises_errno(lambda: ctx.test_dirty(hwpt, base, length, 0, b"\x01"), "EINVAL")
    raises_errno(lambda: ctx.test_dirty(hwpt, base, length, MOCK_PAGE_SIZE, b""), "EINVAL")


def test_a_huge_mock_domain_dirties_whole_1mib_entries(s) -> None:
    ctx = s.open_context()
    _, md, hwpt, length = dirty_hwpt(ctx, huge=True)
    base = MOCK_APERTURE_START
    ctx.device_dma(md.idev_id, [DmaAccess(base + 0x12345, 1, True)])
    marked = bits(ctx.hwpt_get_dirty_bitmap(hwpt, base, length, MOCK_PAGE_SIZE))
    assert marked == list(range(0, MOCK_HUGE_PAGE_SIZE // MOCK_PAGE_SIZE))


def test_dirty_state_belongs_to_each_domain(s) -> None:
    """Two HWPTs of one IOAS each hold their own page table and D bits: a
    write through one dirties nothing in the other."""
    ctx = s.open_context()
    ioas, md, hwpt, length = dirty_hwpt(ctx)
    other = ctx.mock_domain(ioas)
    second = ctx.hwpt_alloc(other.idev_id, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
    ctx.mock_domain_replace(other.stdev_id, second)
    ctx.hwpt_set_dirty_tracking(second, True)
    ctx.device_dma(md.idev_id, [DmaAccess(MOCK_APERTURE_START, 8, True)])
    assert bits(ctx.hwpt_get_dirty_bitmap(second, MOCK_APERTURE_START, length, 0x1000)) == []
    assert bits(ctx.hwpt_get_dirty_bitmap(hwpt, MOCK_APERTURE_START, length, 0x1000)) == [0]


def test_md_check_map_reads_the_hwpts_own_page_table(s) -> None:
    """iommufd_test_md_check_pa walks the domain, not the IOAS: what was
    filled into it, gone once unmapped."""
    ctx = s.open_context()
    ioas = ctx.ioas_alloc()
    iova = ctx.ioas_map(ioas, BUF, 0x4000, iova=MOCK_APERTURE_START)
    md = ctx.mock_domain(ioas)
    ctx.md_check_map(md.hwpt_id, iova, 0x4000, BUF)
    raises_errno(lambda: ctx.md_check_map(md.hwpt_id, iova, 0x4000, BUF + 0x800), "EINVAL")
    raises_errno(lambda: ctx.md_check_map(md.hwpt_id, iova + 1, 0x800, BUF + 1), "EINVAL")
    raises_errno(lambda: ctx.md_check_map(ioas, iova, 0x800, BUF), "ENOENT")
    ctx.ioas_unmap(ioas, iova, 0x4000)
    raises_errno(lambda: ctx.md_check_map(md.hwpt_id, iova, 0x800, BUF), "EINVAL")


# -- 4. VFIO iova_pgsizes ----------------------------------------------------------------------

def compat_on(s, ctx, ioas: int) -> Container:
    cont = Container(s, ctx.iommufd)
    cont.vfio_ioas(IOMMU_VFIO_IOAS_SET, ioas)
    return cont


@pytest.mark.parametrize(("pgsizes", "expected"), [
    (0x800 | 0x20_0000, 0x20_1000),              # the sub-page size folds into PAGE_SIZE
    (0x800, 0x1000),
    (0x1000 | 0x20_0000 | 0x4000_0000, 0x4020_1000),
])
def test_vfio_iova_pgsizes_fold_sub_page_sizes(s, pgsizes, expected) -> None:
    """iommufd_get_pagesizes (as vfio_update_pgsize_bitmap): the domains'
    sizes ANDed from ULONG_MAX; any size below PAGE_SIZE becomes PAGE_SIZE."""
    name = f"0000:3e:00.{pgsizes.bit_length() % 8}"
    s.hot_add_device(pb.HostDevice(name=name, group=3000 + pgsizes.bit_length(),
                                   driver="vfio-pci", pgsize_bitmap=pgsizes))
    try:
        with s.open_device(name) as dev:
            ctx = s.open_context()
            dev.bind(ctx)
            ioas = ctx.ioas_alloc()
            dev.attach(ioas)
            assert compat_on(s, ctx, ioas).iommu_get_info().iova_pgsizes == expected
    finally:
        s.hot_remove_device(name)


def test_vfio_iova_pgsizes_with_the_mock_domain(s) -> None:
    ctx = s.open_context()
    ioas = ctx.ioas_alloc()
    ctx.mock_domain(ioas)
    assert compat_on(s, ctx, ioas).iommu_get_info().iova_pgsizes == 0x1F_FFFF_F000
    bare = s.open_context()
    assert compat_on(s, bare, bare.ioas_alloc()).iommu_get_info().iova_pgsizes == \
        0xFFFF_FFFF_FFFF_F000                    # no domain: ULONG_MAX folded


# -- 5. compat TYPE1 (v1) ------------------------------------------------------------------------

def test_compat_set_iommu_type1_disables_large_pages(s) -> None:
    """iommufd_vfio_set_iommu: the type is checked before the IOAS, TYPE1
    disables large pages (iopt_disable_large_pages), TYPE1v2 does not give
    them back."""
    ctx = s.open_context()
    cont = Container(s, ctx.iommufd)
    raises_errno(lambda: cont.set_iommu(5), "EINVAL")
    raises_errno(lambda: cont.set_iommu(VFIO_TYPE1_IOMMU), "ENODEV")
    ioas = ctx.ioas_alloc()
    cont.vfio_ioas(IOMMU_VFIO_IOAS_SET, ioas)
    assert ctx.option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas) == 1
    cont.set_iommu(VFIO_TYPE1_IOMMU)
    assert ctx.option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas) == 0
    cont.set_iommu(VFIO_TYPE1v2_IOMMU)
    assert ctx.option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas) == 0


def test_compat_v1_unmap_inside_a_mapping_cuts_it(s) -> None:
    """iommufd_vfio_unmap_dma → iopt_cut_iova at both ends, then the unmap."""
    ctx = s.open_context()
    ioas = ctx.ioas_alloc()
    cont = compat_on(s, ctx, ioas)
    cont.set_iommu(VFIO_TYPE1_IOMMU)
    cont.map_dma(0x10000, 0x4000, BUF)
    assert cont.unmap_dma(0x11000, 0x1000).size == 0x1000
    assert [(a.iova, a.length) for a in ctx.list_areas(ioas)] == [(0x10000, 0x1000),
                                                                   (0x12000, 0x2000)]
    assert cont.unmap_dma(0x10000, 0x1000).size == 0x1000       # cut at iova 0x10000 - 1
    assert cont.unmap_dma(0x13000, 0x2000).size == 0x1000       # past the end: cut skipped
    # v2 on an IOAS with large pages: a bisecting unmap is ENOENT (no cut).
    v2 = s.open_context()
    v2_ioas = v2.ioas_alloc()
    c2 = compat_on(s, v2, v2_ioas)
    c2.set_iommu(VFIO_TYPE1v2_IOMMU)
    c2.map_dma(0x10000, 0x4000, BUF)
    raises_errno(lambda: c2.unmap_dma(0x11000, 0x1000), "ENOENT")


# -- 6. compat MAP_DMA without READ or WRITE -------------------------------------------------------

def test_compat_map_dma_without_permissions(s) -> None:
    """iommufd_vfio_map_dma takes neither READ nor WRITE (the EINVAL is in
    iommufd_ioas_map only); a domain refuses to map such an area (the mock's
    map_range), when it is attached later as when it is already there."""
    ctx = s.open_context()
    ioas = ctx.ioas_alloc()
    cont = compat_on(s, ctx, ioas)
    cont.map_dma(MOCK_APERTURE_START, 0x1000, BUF, flags=0)
    assert [(a.iova, a.prot) for a in ctx.list_areas(ioas)] == [(MOCK_APERTURE_START, 0)]
    raises_errno(lambda: ctx.mock_domain(ioas), "EINVAL")
    raises_errno(lambda: ctx.ioas_map(ioas, BUF, 0x1000, readable=False, writeable=False),
                 "EINVAL")                                       # IOAS_MAP keeps its rule
    cont.unmap_dma(MOCK_APERTURE_START, 0x1000)
    ctx.mock_domain(ioas)
    raises_errno(lambda: cont.map_dma(MOCK_APERTURE_START, 0x1000, BUF, flags=0), "EINVAL")
