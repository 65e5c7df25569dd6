"""The VFIO type1 IOMMU driver (drivers/vfio/vfio_iommu_type1.c), emulated
for containers opened with vfio_mode "type1", on the same IOAS and IO page
table as the native path.

What type1 adds over the kernel's compat layer: the group is claimed at
SET_CONTAINER; VFIO_SET_IOMMU needs a group and may be called once; v2
unmaps that bisect a mapping are EINVAL and atomic, v1 unmaps follow type1's
start-of-mapping rule; MAP_DMA counts against dma_entry_limit (ENOSPC);
UPDATE_VADDR; VFIO_IOMMU_DIRTY_PAGES. Every rule on ranges, counts and
bitmaps runs in rust_core (`_core.Type1Dma`); this module holds the container
side: groups, readiness and the GET_INFO capability chain.
"""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING

from iommud import _core
from iommud.errors import IommuError
from iommud.failnth import step
from iommud.vfio_group import (
    TYPE1_TYPES,
    Container,
    attach_group,
    check_argsz,
    compat_ioas,
    container_of,
    detach_group,
    vfio_pgsize_bitmap,
)
from iommud_wire import pb
from iommud_wire.uapi import (
    PAGE_SIZE,
    VFIO_DMA_CC_IOMMU,
    VFIO_IOMMU_INFO_CAPS,
    VFIO_IOMMU_INFO_PGSIZES,
    VFIO_TYPE1_IOMMU,
    VFIO_UNMAP_ALL,
    VFIO_UPDATE_VADDR,
    VFIO_TYPE1v2_IOMMU,
)

if TYPE_CHECKING:
    from iommud.call import Call
    from iommud.context import IommufdContext

#: type1's DIRTY_BITMAP_SIZE_MAX, in bytes.
DIRTY_BITMAP_MAX = 1 << 28
INFO_MINSZ, INFO_SIZE = 16, 24


class Type1:
    """A type1 container's IOMMU driver state."""

    claims_groups = True

    def __init__(self, dma_entry_limit: int) -> None:
        self.dma = _core.Type1Dma(dma_entry_limit)

    @property
    def iommu_type(self) -> int:
        return self.dma.iommu_type

    def ready(self) -> bool:
        return self.dma.iommu_type != 0

    def _require_ready(self) -> None:
        if not self.ready():
            raise IommuError(E.EINVAL, "Set an IOMMU type on the container (VFIO_SET_IOMMU) "
                             "first.")

    def check_extension(self, ctx: IommufdContext, extension: int) -> int:
        """vfio_iommu_type1_check_extension, through the container
        (vfio_container_ioctl_check_extension): 0 for what type1 lacks."""
        if extension in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL):
            return 1
        if extension == VFIO_DMA_CC_IOMMU:
            return 1 if self.ready() else 0
        if extension == VFIO_UPDATE_VADDR:
            # type1 answers 1 once it has IOMMU data (there are no mdev groups here).
            return self.dma.check_extension_update_vaddr()
        return 0  # NOIOMMU, SPAPR and nesting do not exist here

    def set_iommu(self, ctx: IommufdContext, iommu_type: int, stage: int) -> None:
        """VFIO_SET_IOMMU (vfio_ioctl_set_iommu): once, after a group is set;
        every group of the container attaches to the compat IOAS."""
        cont = container_of(ctx)
        if not cont.groups:
            raise IommuError(E.EINVAL, "VFIO_SET_IOMMU needs a group set on the container "
                             "first.")
        if self.ready():
            raise IommuError(E.EINVAL, "The container already has an IOMMU type.")
        if iommu_type not in TYPE1_TYPES:
            raise IommuError(E.ENODEV, f"No IOMMU driver serves type {iommu_type}.")
        attached = []
        try:
            for gfd in cont.groups.values():
                attach_group(ctx, gfd, stage)
                attached.append(gfd)
        except BaseException:
            for gfd in attached:
                detach_group(gfd)
            raise
        self.dma.set_iommu_type(iommu_type)

    def get_info(self, ctx: IommufdContext, argsz: int) -> pb.VfioIommuGetInfoResponse:
        """VFIO_IOMMU_GET_INFO (vfio_iommu_type1_get_info): page sizes, then
        the IOVA range, migration and DMA_AVAIL capabilities when argsz
        leaves room for them; otherwise argsz is raised to what they need."""
        check_argsz(argsz, INFO_MINSZ, "VFIO_IOMMU_GET_INFO")
        self._require_ready()
        ioas = compat_ioas(ctx)
        ranges = ioas.iopt.iova_ranges()
        bitmap = vfio_pgsize_bitmap(ioas)
        full = INFO_SIZE + 16 + 16 * len(ranges) + 16 + 32
        resp = pb.VfioIommuGetInfoResponse(flags=VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
                                           iova_pgsizes=bitmap)
        if argsz and argsz < full:
            resp.argsz, resp.cap_offset = full, 0  # only the fixed part fits
            return resp
        resp.argsz, resp.cap_offset = argsz or full, INFO_SIZE
        resp.iova_ranges.extend(pb.IovaRange(start=s, last=last) for s, last in ranges)
        resp.dma_avail = self.dma.dma_avail
        resp.migration.CopyFrom(pb.VfioMigrationCap(flags=0, pgsize_bitmap=PAGE_SIZE,
                                                    max_dirty_bitmap_size=DIRTY_BITMAP_MAX))
        return resp

    def map_dma(self, ctx: IommufdContext, req: pb.VfioIommuMapDmaRequest) -> None:
        """VFIO_IOMMU_MAP_DMA (vfio_dma_do_map), in rust_core."""

        def charge(size: int) -> None:
            ctx.account.charge(size)
            step("area")

        self.dma.map_dma(ctx.vfio_ioas.iopt if ctx.vfio_ioas else None, req.argsz, req.flags,
                         req.vaddr, req.iova, req.size, charge)

    def unmap_dma(self, call: Call, ctx: IommufdContext,
                  req: pb.VfioIommuUnmapDmaRequest) -> tuple[int, bytes]:
        """VFIO_IOMMU_UNMAP_DMA (vfio_dma_do_unmap), in rust_core; atomic."""
        return self.dma.unmap_dma(ctx.vfio_ioas.iopt if ctx.vfio_ioas else None, req.argsz,
                                  req.flags, req.iova, req.size, req.bitmap_pgsize,
                                  req.bitmap_size)

    def dirty_pages(self, ctx: IommufdContext, req: pb.VfioIommuDirtyPagesRequest) -> bytes:
        """VFIO_IOMMU_DIRTY_PAGES (vfio_iommu_type1_dirty_pages), in rust_core."""
        return self.dma.dirty_pages(ctx.vfio_ioas.iopt if ctx.vfio_ioas else None, req.argsz,
                                    req.flags, req.iova, req.size, req.bitmap_pgsize,
                                    req.bitmap_size)

    def last_group_left(self, ctx: IommufdContext) -> None:
        """The last group leaving releases the IOMMU driver and every mapping
        (vfio_iommu_type1_detach_group of the last group)."""
        self.dma.reset(ctx.vfio_ioas.iopt if ctx.vfio_ioas else None)


def new_container(dma_entry_limit: int) -> Container:
    return Container(Type1(dma_entry_limit))
