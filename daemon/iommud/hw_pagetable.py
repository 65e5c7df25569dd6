"""HWPT_PAGING objects: an IOMMU domain that mirrors one IOAS (hw_pagetable.c).

A paging HWPT holds a users ref on its IOAS for its whole life; every device
(or device PASID) attached to it holds a users ref on the HWPT. While it
exists its IOAS reserves the complement of the domain's aperture and aligns
IOVAs to the largest minimum page size of all its domains. Automatic HWPTs
(made by attaching a device to an IOAS) die with their last attachment;
user-allocated ones stay until IOMMU_DESTROY.
"""
from __future__ import annotations

import errno as E
import itertools

from iommud.context import IommufdContext
from iommud.errors import IommuError
from iommud.failnth import step
from iommud.fault import FaultQueue
from iommud.ioas import Ioas
from iommud.objects import IommufdObject, ObjType
from iommud.topology import Device as HostDevice

U64_MAX = (1 << 64) - 1
PAGE_SIZE = 4096

IOMMU_HWPT_ALLOC_NEST_PARENT = 1
IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 2
IOMMU_HWPT_FAULT_ID_VALID = 4
IOMMU_HWPT_ALLOC_PASID = 8
HWPT_ALLOC_FLAGS = (IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING
                    | IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID)
IOMMU_HWPT_DATA_NONE = 0

#: Reservation owners must be unique per IOAS across devices and HWPTs.
_resv_owner = itertools.count(1)


def new_resv_owner() -> int:
    return next(_resv_owner)


class HwptPaging(IommufdObject):
    type = ObjType.HWPT_PAGING

    def __init__(self, obj_id: int, ioas: Ioas, dev: HostDevice, *, auto_domain: bool,
                 flags: int) -> None:
        super().__init__(obj_id)
        self.ioas = ioas
        self.auto_domain = auto_domain
        self.flags = flags
        self.nest_parent = bool(flags & IOMMU_HWPT_ALLOC_NEST_PARENT)
        self.dirty_tracking = bool(flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
        self.pasid_compat = bool(flags & IOMMU_HWPT_ALLOC_PASID)
        # The modelled IOMMU instance: devices with the same page sizes and
        # aperture share one driver and may share a domain.
        self.pgsize_bitmap = dev.pgsize_bitmap
        self.aperture_last = dev.aperture_last
        self.min_page_size = dev.min_page_size
        self.resv_owner = new_resv_owner()
        self.added = False
        #: The fault queue this HWPT reports to (it holds a users ref on it).
        self.fault: IommufdObject | None = None

    def compatible(self, dev: HostDevice) -> bool:
        """Could `dev` attach to this domain? (Incompatibility is EINVAL.)"""
        return (dev.pgsize_bitmap == self.pgsize_bitmap and dev.aperture_last == self.aperture_last
                and (dev.dirty_tracking or not self.dirty_tracking))

    def add_to_ioas(self) -> None:
        """iopt_table_add_domain: reserve the aperture complement and raise
        the IOAS alignment; EINVAL/EADDRINUSE leave the IOAS unchanged."""
        iopt = self.ioas.iopt
        if self.min_page_size > PAGE_SIZE:
            raise IommuError(E.EINVAL, f"The domain's minimum page size {self.min_page_size:#x} "
                             f"exceeds the CPU page size {PAGE_SIZE:#x}.")
        if self.aperture_last < U64_MAX:
            step("aperture reservation")
            iopt.add_reserved(self.aperture_last + 1, U64_MAX, self.resv_owner)
        self.ioas.domains.append(self)
        try:
            step("iova alignment")
            iopt.set_iova_alignment(self.ioas.required_alignment())
        except BaseException:
            self.ioas.domains.remove(self)
            iopt.remove_reserved(self.resv_owner)
            raise
        self.ioas.users += 1
        self.added = True

    def destroy(self) -> None:
        if not self.added:
            return
        iopt = self.ioas.iopt
        iopt.remove_reserved(self.resv_owner)
        self.ioas.domains.remove(self)
        self.ioas.users -= 1
        # Lowering the alignment never conflicts with existing areas.
        iopt.set_iova_alignment(self.ioas.required_alignment())
        self.added = False
        if self.fault is not None:
            self.fault.users -= 1


def hwpt_paging_new(ctx: IommufdContext, ioas: Ioas, dev: HostDevice, *, auto_domain: bool,
                    flags: int) -> HwptPaging:
    """Allocate, add to the IOAS and publish a paging HWPT; nothing is left
    behind on failure."""
    obj_id = ctx.new_id()
    hwpt = HwptPaging(obj_id, ioas, dev, auto_domain=auto_domain, flags=flags)
    try:
        hwpt.add_to_ioas()
    except BaseException:
        ctx.abort_id(obj_id)
        raise
    ctx.insert(hwpt)
    return hwpt


def hwpt_put(ctx: IommufdContext, hwpt: HwptPaging) -> None:
    """Drop one attachment's ref; an automatic HWPT goes with its last one."""
    hwpt.users -= 1
    if hwpt.auto_domain and hwpt.users == 0:
        ctx.destroy(hwpt.id)


def hwpt_alloc(ctx: IommufdContext, flags: int, dev_id: int, pt_id: int, data_type: int,
               data_len: int, fault_id: int, reserved: int) -> int:
    """IOMMU_HWPT_ALLOC for paging HWPTs (hw_pagetable.c order)."""
    from iommud.device import DeviceObj  # device.py imports this module

    if reserved:
        raise IommuError(E.EOPNOTSUPP, f"The reserved field must be zero, not {reserved:#x}.")
    if (data_type == IOMMU_HWPT_DATA_NONE) != (data_len == 0):
        raise IommuError(E.EINVAL, f"data_type {data_type} does not agree with data_len "
                         f"{data_len:#x}.")
    dev = ctx.get(dev_id, DeviceObj, "device")
    pt = ctx.lookup(pt_id)
    if pt is None:
        raise IommuError(E.EINVAL, f"pt_id {pt_id} names no IOAS or HWPT in this context.",
                         pt_id=pt_id)
    if isinstance(pt, Ioas):
        if flags & ~HWPT_ALLOC_FLAGS:
            raise IommuError(E.EOPNOTSUPP, f"Unknown HWPT_ALLOC flag bits {flags & ~HWPT_ALLOC_FLAGS:#x}.")
        if data_type != IOMMU_HWPT_DATA_NONE:
            raise IommuError(E.EOPNOTSUPP, f"This IOMMU has no driver data type {data_type} for "
                             f"paging domains.")
        if flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING and not dev.host_dev.dirty_tracking:
            raise IommuError(E.EOPNOTSUPP, f"The IOMMU of {dev.host_dev.name} cannot track "
                             f"dirty pages.", dev_id=dev_id)
        if flags & IOMMU_HWPT_ALLOC_PASID and not dev.host_dev.max_pasid_log2:
            raise IommuError(E.EOPNOTSUPP, f"{dev.host_dev.name} has no PASID support.",
                             dev_id=dev_id)
        fault = None
        if flags & IOMMU_HWPT_FAULT_ID_VALID:
            fault = ctx.get(fault_id, FaultQueue, "fault queue")
        hwpt = hwpt_paging_new(ctx, pt, dev.host_dev, auto_domain=False, flags=flags)
        if fault is not None:
            hwpt.fault = fault
            fault.users += 1
        return hwpt.id
    if isinstance(pt, HwptPaging):
        if data_len == 0:
            raise IommuError(E.EOPNOTSUPP, "A nested HWPT needs driver data; none was given.")
        if pt.auto_domain or not pt.nest_parent:
            raise IommuError(E.EINVAL, f"HWPT {pt_id} was not allocated with NEST_PARENT.",
                             pt_id=pt_id)
        raise IommuError(E.EOPNOTSUPP, f"Nested domains of data type {data_type} are not "
                         f"modelled.", pt_id=pt_id)
    raise IommuError(E.EINVAL, f"Object {pt_id} is neither an IOAS nor a paging HWPT.",
                     pt_id=pt_id)


IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1
IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1


def set_dirty_tracking(ctx: IommufdContext, flags: int, hwpt_id: int) -> None:
    """IOMMU_HWPT_SET_DIRTY_TRACKING. Dirty state lives in the IOAS's table,
    which every paging HWPT of the IOAS mirrors."""
    if flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE:
        raise IommuError(E.EOPNOTSUPP, f"Unknown SET_DIRTY_TRACKING flag bits {flags:#x}.")
    hwpt = ctx.get(hwpt_id, HwptPaging, "paging HWPT")
    if not hwpt.dirty_tracking:
        raise IommuError(E.EOPNOTSUPP, f"HWPT {hwpt_id} was not allocated with DIRTY_TRACKING.",
                         hwpt_id=hwpt_id)
    hwpt.ioas.iopt.set_dirty_tracking(bool(flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE))


def get_dirty_bitmap(ctx: IommufdContext, hwpt_id: int, flags: int, reserved: int, iova: int,
                     length: int, page_size: int) -> bytes:
    """IOMMU_HWPT_GET_DIRTY_BITMAP; the range checks run in the core."""
    if flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR or reserved:
        raise IommuError(E.EOPNOTSUPP, f"Unknown GET_DIRTY_BITMAP flags {flags:#x} or reserved "
                         f"{reserved:#x}.")
    hwpt = ctx.get(hwpt_id, HwptPaging, "paging HWPT")
    if not hwpt.dirty_tracking:
        raise IommuError(E.EOPNOTSUPP, f"HWPT {hwpt_id} cannot read dirty bits.", hwpt_id=hwpt_id)
    clear = not flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
    return hwpt.ioas.iopt.read_dirty_bitmap(iova, length, page_size, clear)


def invalidate(ctx: IommufdContext, hwpt_id: int, data: bytes, data_type: int, entry_len: int,
               entry_num: int, reserved: int) -> int:
    """IOMMU_HWPT_INVALIDATE. Only nested HWPTs and vIOMMUs take cache
    invalidations, and none exist in this model, so a valid request ends at
    the type check; the entry count handled (0) is reported even on error."""
    handled = {"entry_num": 0}
    if reserved:
        raise IommuError(E.EOPNOTSUPP, f"The reserved field must be zero, not {reserved:#x}.",
                         **handled)
    if entry_num and (not data or not entry_len):
        raise IommuError(E.EINVAL, f"{entry_num} entries need data and a non-zero entry_len.",
                         **handled)
    obj = ctx.lookup(hwpt_id)
    if obj is None:
        raise IommuError(E.ENOENT, f"No object with id {hwpt_id} exists in this context.",
                         hwpt_id=hwpt_id, **handled)
    raise IommuError(E.EINVAL, f"Object {hwpt_id} is not a nested HWPT or a vIOMMU; only those "
                     f"take invalidations.", hwpt_id=hwpt_id, **handled)
