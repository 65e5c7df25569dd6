"""TEMPORARY stand-in for rust_core's Type1Dma while it is being ported;
the same API and rules. Deleted once _core.Type1Dma lands."""
from __future__ import annotations

import errno as E
from collections.abc import Callable
from typing import Any

from iommud.errors import IommuError
from iommud_wire.uapi import (
    PAGE_SIZE,
    U64_MAX,
    VFIO_DMA_MAP_FLAG_READ,
    VFIO_DMA_MAP_FLAG_VADDR,
    VFIO_DMA_MAP_FLAG_WRITE,
    VFIO_DMA_UNMAP_FLAG_ALL,
    VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
    VFIO_DMA_UNMAP_FLAG_VADDR,
    VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
    VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
    VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
    VFIO_TYPE1v2_IOMMU,
)

DIRTY_BITMAP_MAX = 1 << 28
MAP_MINSZ, UNMAP_MINSZ, DIRTY_MINSZ = 32, 24, 8


def _check_argsz(argsz: int, minsz: int, what: str) -> None:
    if argsz and argsz < minsz:
        raise IommuError(E.EINVAL, f"{what} needs argsz of at least {minsz}, not {argsz}.")


def _end(start: int, size: int) -> int:
    last = start + size - 1
    if last > U64_MAX:
        raise IommuError(E.EOVERFLOW, f"{start:#x} + {size:#x} wraps past 2^64.")
    return last


class Type1Dma:
    def __init__(self, dma_entry_limit: int) -> None:
        self.dma_entry_limit = dma_entry_limit
        self.dma_avail = dma_entry_limit
        self.iommu_type = 0
        self.dirty_started = False
        self.invalid_vaddr: set[int] = set()

    def set_iommu_type(self, iommu_type: int) -> None:
        self.iommu_type = iommu_type

    def check_extension_update_vaddr(self) -> int:
        return 1 if self.iommu_type else 0

    def reset(self, iopt: Any) -> None:
        if iopt is not None:
            iopt.set_dirty_tracking(False)
            iopt.unmap_all()
        self.iommu_type, self.dirty_started, self.dma_avail = 0, False, self.dma_entry_limit
        self.invalid_vaddr.clear()

    def _ready(self) -> None:
        if not self.iommu_type:
            raise IommuError(E.EINVAL, "Set an IOMMU type on the container (VFIO_SET_IOMMU) first.")

    @staticmethod
    def _ioas(iopt: Any) -> Any:
        if iopt is None:
            raise IommuError(E.ENODEV, "This container has no compat IOAS: set a group on it first.")
        return iopt

    def map_dma(self, iopt: Any, argsz: int, flags: int, vaddr: int, iova: int, size: int,
                charge: Callable[[int], object]) -> None:
        _check_argsz(argsz, MAP_MINSZ, "VFIO_IOMMU_MAP_DMA")
        rw = flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
        prot = (4 if flags & VFIO_DMA_MAP_FLAG_READ else 0) | (2 if flags & VFIO_DMA_MAP_FLAG_WRITE else 0)
        if flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR):
            raise IommuError(E.EINVAL, f"Unknown MAP_DMA flag bits {flags:#x}.")
        self._ready()
        if size == 0:
            raise IommuError(E.EINVAL, "MAP_DMA of zero bytes.")
        last = _end(iova, size)
        _end(vaddr, size)
        vaddr_update = bool(flags & VFIO_DMA_MAP_FLAG_VADDR)
        if rw and vaddr_update or not rw and not vaddr_update:
            raise IommuError(E.EINVAL, "MAP_DMA needs READ and/or WRITE, or VADDR alone.")
        if (size | iova | vaddr) & (PAGE_SIZE - 1):
            raise IommuError(E.EINVAL, f"iova {iova:#x}, vaddr {vaddr:#x} and size {size:#x} must be "
                             f"multiples of {PAGE_SIZE:#x}.")
        iopt = self._ioas(iopt)
        if vaddr_update:
            area = iopt.area_from(iova)
            if area is None or area[0] > iova or area[0] + area[1] - 1 < iova:
                raise IommuError(E.ENOENT, f"No mapping at {iova:#x} to update.")
            if area[0] != iova or area[1] != size or iova not in self.invalid_vaddr:
                raise IommuError(E.EINVAL, f"The mapping at {area[0]:#x} (size {area[1]:#x}) is not an "
                                 f"invalidated mapping of exactly {iova:#x}+{size:#x}.")
            iopt.unmap(iova, size)
            iopt.map(1 | area[3], vaddr, size, iova)
            self.invalid_vaddr.discard(iova)
            return
        near = iopt.area_from(iova)
        if near is not None and near[0] <= last:
            raise IommuError(E.EEXIST, f"{iova:#x}..{last:#x} overlaps the mapping at {near[0]:#x}.")
        if self.dma_avail == 0:
            raise IommuError(E.ENOSPC, f"The container holds {self.dma_entry_limit} mappings, its "
                             f"dma_entry_limit.", limit=self.dma_entry_limit)
        charge(size)
        iopt.map(1 | prot, vaddr, size, iova)
        self.dma_avail -= 1

    def _invalidate_vaddr(self, iopt: Any, iova: int, last: int) -> int:
        hits = []
        area = iopt.area_from(iova)
        while area is not None and area[0] <= last:
            if area[0] in self.invalid_vaddr:
                raise IommuError(E.EINVAL, f"The vaddr of the mapping at {area[0]:#x} is already invalid.")
            hits.append(area)
            end = area[0] + area[1]
            area = iopt.area_from(end) if end <= U64_MAX else None
        self.invalid_vaddr.update(a[0] for a in hits)
        return sum(a[1] for a in hits)

    def _bitmap_check(self, size: int, pgsize: int, bitmap_size: int) -> None:
        if not self.dirty_started:
            raise IommuError(E.EINVAL, "Dirty page tracking is not started on this container.")
        if pgsize != PAGE_SIZE:
            raise IommuError(E.EINVAL, f"The bitmap page size must be {PAGE_SIZE:#x}, not {pgsize:#x}.")
        need = (size // pgsize + 63) // 64 * 8
        if bitmap_size < need or bitmap_size > DIRTY_BITMAP_MAX or bitmap_size == 0:
            raise IommuError(E.EINVAL, f"A bitmap of {bitmap_size:#x} bytes cannot describe "
                             f"{size:#x} bytes (needs {need:#x}).")

    @staticmethod
    def _bisects(iopt: Any, iova: int, last: int) -> bool:
        first = iopt.area_from(iova)
        if first is not None and first[0] < iova <= first[0] + first[1] - 1:
            return True
        end = iopt.area_from(last)
        return end is not None and end[0] <= last < end[0] + end[1] - 1

    def _unmap_counted(self, iopt: Any, iova: int, length: int) -> int:
        before = iopt.num_areas
        try:
            return iopt.unmap(iova, length)
        finally:
            self.dma_avail += before - iopt.num_areas
            self.invalid_vaddr = {i for i in self.invalid_vaddr if not iova <= i <= iova + length - 1}

    def unmap_dma(self, iopt: Any, argsz: int, flags: int, iova: int, size: int,
                  bitmap_pgsize: int, bitmap_size: int) -> tuple[int, bytes]:
        _check_argsz(argsz, UNMAP_MINSZ, "VFIO_IOMMU_UNMAP_DMA")
        all_flag = bool(flags & VFIO_DMA_UNMAP_FLAG_ALL)
        valid = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR
        if flags & ~valid:
            raise IommuError(E.EINVAL, f"Unknown UNMAP_DMA flag bits {flags:#x}.")
        get_bitmap = bool(flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)
        if get_bitmap and flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR):
            raise IommuError(E.EINVAL, "GET_DIRTY_BITMAP cannot be combined with ALL or VADDR.")
        self._ready()
        iopt = self._ioas(iopt)
        if all_flag:
            if iova or size:
                raise IommuError(E.EINVAL, "UNMAP_DMA with ALL takes iova 0 and size 0.")
            if flags & VFIO_DMA_UNMAP_FLAG_VADDR:
                return self._invalidate_vaddr(iopt, 0, U64_MAX), b""
            n = iopt.num_areas
            total = iopt.unmap_all()
            self.dma_avail += n
            self.invalid_vaddr.clear()
            return total, b""
        if iova & (PAGE_SIZE - 1) or size == 0 or size & (PAGE_SIZE - 1):
            raise IommuError(E.EINVAL, f"iova {iova:#x} and size {size:#x} must be non-zero multiples "
                             f"of {PAGE_SIZE:#x}.")
        last = _end(iova, size)
        if get_bitmap:
            self._bitmap_check(size, bitmap_pgsize, bitmap_size)
        if self.iommu_type == VFIO_TYPE1v2_IOMMU:
            if self._bisects(iopt, iova, last):
                raise IommuError(E.EINVAL, f"{iova:#x}..{last:#x} bisects a mapping; v2 unmaps whole "
                                 f"mappings only.")
        else:
            first = iopt.area_from(iova)
            if first is not None and first[0] < iova:
                return 0, b""
            end = iopt.area_from(last)
            if end is not None and iova <= end[0] <= last:
                last = max(last, end[0] + end[1] - 1)
        if flags & VFIO_DMA_UNMAP_FLAG_VADDR:
            return self._invalidate_vaddr(iopt, iova, last), b""
        near = iopt.area_from(iova)
        if near is None or near[0] > last:
            return 0, b""
        bitmap = b""
        if get_bitmap:
            bitmap = iopt.read_dirty_bitmap(iova, size, PAGE_SIZE, True)
        return self._unmap_counted(iopt, iova, last - iova + 1), bitmap

    def dirty_pages(self, iopt: Any, argsz: int, flags: int, iova: int, size: int,
                    bitmap_pgsize: int, bitmap_size: int) -> bytes:
        self._ready()
        if self.iommu_type != VFIO_TYPE1v2_IOMMU:
            raise IommuError(E.EACCES, "Dirty page tracking needs a TYPE1v2 container.")
        _check_argsz(argsz, DIRTY_MINSZ, "VFIO_IOMMU_DIRTY_PAGES")
        ops = (VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
               VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)
        if flags not in ops:
            raise IommuError(E.EINVAL, f"DIRTY_PAGES takes exactly one of START, STOP and GET_BITMAP, "
                             f"not {flags:#x}.")
        iopt = self._ioas(iopt)
        if flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_START:
            if not self.dirty_started:
                iopt.set_dirty_tracking(True)
                self.dirty_started = True
            return b""
        if flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP:
            if self.dirty_started:
                iopt.set_dirty_tracking(False)
                self.dirty_started = False
            return b""
        if size == 0:
            raise IommuError(E.EINVAL, "GET_BITMAP of zero bytes.")
        last = _end(iova, size)
        if (iova | size) & (PAGE_SIZE - 1):
            raise IommuError(E.EINVAL, f"iova {iova:#x} and size {size:#x} must be multiples of "
                             f"{PAGE_SIZE:#x}.")
        self._bitmap_check(size, bitmap_pgsize, bitmap_size)
        if self._bisects(iopt, iova, last):
            raise IommuError(E.EINVAL, f"{iova:#x}..{last:#x} bisects a mapping.")
        return iopt.read_dirty_bitmap(iova, size, PAGE_SIZE, True)
