"""HWPT_PAGING objects: an IOMMU domain that mirrors one IOAS (hw_pagetable.c).

A paging HWPT holds a users ref on its IOAS for its whole life; every device
(or device PASID) attached to it holds a users ref on the HWPT. While it
exists its IOAS reserves the complement of the domain's aperture and aligns
IOVAs to the largest minimum page size of all its domains. Automatic HWPTs
(made by attaching a device to an IOAS) die with their last attachment;
user-allocated ones stay until IOMMU_DESTROY.
"""
from __future__ import annotations

import dataclasses
import errno as E
import itertools
from typing import TYPE_CHECKING, Any, cast

from iommud import _core
from iommud.errors import IommuError, check_reserved
from iommud.failnth import step
from iommud.fault import FaultQueue
from iommud.ioas import Ioas
from iommud.objects import IommufdObject, ObjType
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    IOMMU_HWPT_ALLOC_FLAGS,
    IOMMU_HWPT_ALLOC_NEST_PARENT,
    IOMMU_HWPT_ALLOC_PASID,
    IOMMU_HWPT_DATA_NONE,
    IOMMU_HWPT_DATA_SELFTEST,
    IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
    IOMMU_HWPT_FAULT_ID_VALID,
    IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
    MOCK_HUGE_APERTURE_LAST,
    MOCK_HUGE_PGSIZE_BITMAP,
    MOCK_IOMMUPT_DEFAULT,
    MOCK_IOMMUPT_HUGE,
    PAGE_SIZE,
    U64_MAX,
)

if TYPE_CHECKING:
    from iommud.call import Call
    from iommud.context import IommufdContext
    from iommud.device import DeviceObj
    from iommud.topology import Device as HostDevice

#: Reservation owners must be unique per IOAS across devices and HWPTs.
_resv_owner = itertools.count(1)


def new_resv_owner() -> int:
    return next(_resv_owner)


def resv_owner_next() -> int:
    """The next owner number, for a snapshot (without using it up)."""
    global _resv_owner
    value = next(_resv_owner)
    _resv_owner = itertools.count(value)
    return value


def resv_owner_continue(value: int) -> None:
    """Go on from a snapshot's numbering: owners must stay unique per IOAS."""
    global _resv_owner
    _resv_owner = itertools.count(max(value, resv_owner_next()))


@dataclasses.dataclass(frozen=True)
class Geometry:
    """What a domain's driver decides at allocation: its page sizes and
    aperture (iommu_domain.pgsize_bitmap and .geometry)."""

    pgsize_bitmap: int
    aperture_start: int
    aperture_last: int

    @classmethod
    def of(cls, dev: HostDevice) -> Geometry:
        return cls(dev.pgsize_bitmap, dev.aperture_start, dev.aperture_last)

    @property
    def min_page_size(self) -> int:
        return self.pgsize_bitmap & -self.pgsize_bitmap


class HwptPaging(IommufdObject):
    type = ObjType.HWPT_PAGING

    def __init__(self, obj_id: int, ioas: Ioas, dev: HostDevice, *, auto_domain: bool,
                 flags: int, geometry: Geometry | None = None) -> None:
        super().__init__(obj_id)
        self.ioas = ioas
        self.auto_domain = auto_domain
        self.flags = flags
        self.nest_parent = bool(flags & IOMMU_HWPT_ALLOC_NEST_PARENT)
        self.dirty_tracking = bool(flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
        self.pasid_compat = bool(flags & IOMMU_HWPT_ALLOC_PASID)
        # The modelled IOMMU instance: devices of one IOMMU kind with the same
        # page sizes and aperture share one driver and may share a domain.
        self.iommu = dev.iommu
        self.dev_geometry = Geometry.of(dev)
        self.geometry = geometry or self.dev_geometry
        self.pgsize_bitmap = self.geometry.pgsize_bitmap
        self.aperture_start = self.geometry.aperture_start
        self.aperture_last = self.geometry.aperture_last
        self.min_page_size = self.geometry.min_page_size
        self.resv_owner = new_resv_owner()
        #: The domain's own IO page table: what was filled into it from the
        #: IOAS, as leaves of its page sizes, with its dirty state per leaf.
        self.domain = _core.Domain(self.pgsize_bitmap, self.aperture_start, self.aperture_last)
        self.added = False
        #: The fault queue this HWPT reports to (it holds a users ref on it).
        self.fault: IommufdObject | None = None

    def describe(self, info: Any) -> None:
        info.ioas_id = self.ioas.id
        info.auto_domain = self.auto_domain

    def compatible(self, dev: HostDevice) -> bool:
        """Could `dev` attach to this domain? A domain belongs to one IOMMU
        instance (the device's kind and geometry); a dirty-tracking domain
        refuses a device whose IOMMU cannot track (mock_domain_nop_attach).
        Incompatibility is EINVAL."""
        return (dev.iommu == self.iommu and Geometry.of(dev) == self.dev_geometry
                and (dev.dirty_tracking or not self.dirty_tracking))

    def add_to_ioas(self) -> None:
        """iopt_table_add_domain: the alignment first (EINVAL above
        PAGE_SIZE, EADDRINUSE over misaligned areas), then reserve what lies
        outside the aperture (EADDRINUSE over an area or allowed range); on
        failure the IOAS is unchanged."""
        iopt = self.ioas.iopt
        if self.min_page_size > PAGE_SIZE:
            raise IommuError(E.EINVAL, f"The domain's minimum page size {self.min_page_size:#x} "
                             f"exceeds the CPU page size {PAGE_SIZE:#x}.")
        self.ioas.domains.append(self)
        try:
            step("iova alignment")
            iopt.set_iova_alignment(self.ioas.required_alignment())
            if self.aperture_start:
                step("aperture reservation")
                iopt.add_reserved(0, self.aperture_start - 1, self.resv_owner)
            if self.aperture_last < U64_MAX:
                step("aperture reservation")
                iopt.add_reserved(self.aperture_last + 1, U64_MAX, self.resv_owner)
            step("domain fill")
            iopt.add_domain(self.domain)  # iopt_fill_domain: EINVAL for an area without R/W
        except BaseException:
            self.ioas.domains.remove(self)
            iopt.remove_reserved(self.resv_owner)
            iopt.set_iova_alignment(self.ioas.required_alignment())
            raise
        self.ioas.users += 1
        self.added = True

    def destroy(self) -> None:
        if not self.added:
            return
        iopt = self.ioas.iopt
        iopt.remove_domain(self.domain)
        iopt.remove_reserved(self.resv_owner)
        self.ioas.domains.remove(self)
        self.ioas.users -= 1
        # Lowering the alignment never conflicts with existing areas.
        iopt.set_iova_alignment(self.ioas.required_alignment())
        self.added = False
        if self.fault is not None:
            self.fault.users -= 1


def hwpt_paging_new(ctx: IommufdContext, ioas: Ioas, dev: HostDevice, *, auto_domain: bool,
                    flags: int, geometry: Geometry | None = None) -> HwptPaging:
    """Allocate, add to the IOAS and publish a paging HWPT; nothing is left
    behind on failure."""
    obj_id = ctx.new_id()
    hwpt = HwptPaging(obj_id, ioas, dev, auto_domain=auto_domain, flags=flags,
                      geometry=geometry)
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


def _driver_geometry(dev: HostDevice, flags: int, req: pb.HwptAllocRequest) -> Geometry | None:
    """The driver's domain_alloc_paging_flags: what it accepts and the
    domain it makes (None: the device's own geometry)."""
    if dev.is_mock:
        # mock_domain_alloc_paging_flags: only its selftest data type; the
        # data is copied as iommu_copy_struct_from_user does (4..8 bytes).
        if req.data_type not in (IOMMU_HWPT_DATA_NONE, IOMMU_HWPT_DATA_SELFTEST):
            raise IommuError(E.EOPNOTSUPP, f"The mock IOMMU has no driver data type "
                             f"{req.data_type:#x}.", dev_id=req.dev_id)
        if req.data_type == IOMMU_HWPT_DATA_NONE:
            return None
        if not 4 <= req.data_len <= 8:
            raise IommuError(E.EINVAL, f"Selftest HWPT data is 4 to 8 bytes, not "
                             f"{req.data_len:#x}.", dev_id=req.dev_id)
        if len(req.data) < req.data_len:
            raise IommuError(E.EFAULT, f"The driver data holds {len(req.data):#x} of the "
                             f"{req.data_len:#x} bytes data_len names.", dev_id=req.dev_id)
        data = req.data[:req.data_len].ljust(8, b"\0")
        pagetable_type = int.from_bytes(data[4:8], "little")
        if pagetable_type == MOCK_IOMMUPT_DEFAULT:
            return None
        if pagetable_type == MOCK_IOMMUPT_HUGE:
            return Geometry(MOCK_HUGE_PGSIZE_BITMAP, 0, MOCK_HUGE_APERTURE_LAST)
        raise IommuError(E.EOPNOTSUPP, f"The mock IOMMU has no page table type "
                         f"{pagetable_type}.", dev_id=req.dev_id)
    if req.data_type != IOMMU_HWPT_DATA_NONE:
        raise IommuError(E.EOPNOTSUPP, f"This IOMMU has no driver data type {req.data_type} "
                         f"for paging domains.")
    if flags & IOMMU_HWPT_ALLOC_PASID and not dev.max_pasid_log2:
        raise IommuError(E.EOPNOTSUPP, f"The IOMMU of {dev.name} has no PASID support.",
                         dev_id=req.dev_id)
    return None


def hwpt_alloc(call: Call, req: pb.HwptAllocRequest) -> pb.HwptAllocResponse:
    """IOMMU_HWPT_ALLOC (iommufd_hwpt_alloc, iommufd_hwpt_paging_alloc order)."""
    ctx = call.ctx
    flags, data_type, data_len = req.flags, req.data_type, req.data_len
    check_reserved(req.reserved)
    if (data_type == IOMMU_HWPT_DATA_NONE) != (data_len == 0):
        raise IommuError(E.EINVAL, f"data_type {data_type} does not agree with data_len "
                         f"{data_len:#x}.")
    dev = cast("DeviceObj", ctx.lookup_type(req.dev_id, ObjType.DEVICE, "device"))
    pt = ctx.lookup(req.pt_id)
    if pt is None:
        raise IommuError(E.EINVAL, f"pt_id {req.pt_id} names no IOAS or HWPT in this context.",
                         pt_id=req.pt_id)
    if isinstance(pt, Ioas):
        host_dev = dev.host_dev
        if flags & ~IOMMU_HWPT_ALLOC_FLAGS:
            raise IommuError(E.EOPNOTSUPP, f"Unknown HWPT_ALLOC flag bits "
                             f"{flags & ~IOMMU_HWPT_ALLOC_FLAGS:#x}.")
        if flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING and not host_dev.dirty_tracking:
            raise IommuError(E.EOPNOTSUPP, f"The IOMMU of {host_dev.name} cannot track "
                             f"dirty pages.", dev_id=req.dev_id)
        if flags & IOMMU_HWPT_FAULT_ID_VALID and flags & IOMMU_HWPT_ALLOC_NEST_PARENT:
            raise IommuError(E.EOPNOTSUPP, "A NEST_PARENT HWPT takes no fault queue.",
                             dev_id=req.dev_id)
        geometry = _driver_geometry(host_dev, flags, req)
        hwpt = hwpt_paging_new(ctx, pt, host_dev, auto_domain=False, flags=flags,
                               geometry=geometry)
        if flags & IOMMU_HWPT_FAULT_ID_VALID:
            try:
                fault = ctx.get(req.fault_id, FaultQueue, "fault queue")
            except BaseException:
                ctx.destroy(hwpt.id)
                raise
            hwpt.fault = fault
            fault.users += 1
        return pb.HwptAllocResponse(out_hwpt_id=hwpt.id)
    if isinstance(pt, HwptPaging):
        if data_len == 0:
            raise IommuError(E.EOPNOTSUPP, "A nested HWPT needs driver data; none was given.")
        if pt.auto_domain or not pt.nest_parent:
            raise IommuError(E.EINVAL, f"HWPT {req.pt_id} was not allocated with NEST_PARENT.",
                             pt_id=req.pt_id)
        raise IommuError(E.EOPNOTSUPP, f"Nested domains of data type {data_type} are not "
                         f"modelled.", pt_id=req.pt_id)
    raise IommuError(E.EINVAL, f"Object {req.pt_id} is neither an IOAS nor a paging HWPT.",
                     pt_id=req.pt_id)


def hwpt_set_dirty_tracking(call: Call, req: pb.HwptSetDirtyTrackingRequest
                            ) -> pb.HwptSetDirtyTrackingResponse:
    """IOMMU_HWPT_SET_DIRTY_TRACKING (iommufd_hwpt_set_dirty_tracking). Dirty
    state lives in the IOAS's table, which every paging HWPT of the IOAS
    mirrors."""
    if req.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE:
        raise IommuError(E.EOPNOTSUPP, f"Unknown SET_DIRTY_TRACKING flag bits {req.flags:#x}.")
    hwpt = call.ctx.get(req.hwpt_id, HwptPaging, "paging HWPT")
    if not hwpt.dirty_tracking:
        raise IommuError(E.EOPNOTSUPP, f"HWPT {req.hwpt_id} was not allocated with "
                         f"DIRTY_TRACKING.", hwpt_id=req.hwpt_id)
    hwpt.domain.set_dirty_tracking(bool(req.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE))
    return pb.HwptSetDirtyTrackingResponse()


def hwpt_get_dirty_bitmap(call: Call, req: pb.HwptGetDirtyBitmapRequest
                          ) -> pb.HwptGetDirtyBitmapResponse:
    """IOMMU_HWPT_GET_DIRTY_BITMAP (iommufd_hwpt_get_dirty_bitmap); the range
    checks run in the core."""
    if req.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR or req.reserved:
        raise IommuError(E.EOPNOTSUPP, f"Unknown GET_DIRTY_BITMAP flags {req.flags:#x} or "
                         f"reserved {req.reserved:#x}.")
    hwpt = call.ctx.get(req.hwpt_id, HwptPaging, "paging HWPT")
    if not hwpt.dirty_tracking:
        raise IommuError(E.EOPNOTSUPP, f"HWPT {req.hwpt_id} cannot read dirty bits.",
                         hwpt_id=req.hwpt_id)
    clear = not req.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
    return pb.HwptGetDirtyBitmapResponse(data=hwpt.ioas.iopt.read_dirty_bitmap(
        req.iova, req.length, req.page_size, clear, domain=hwpt.domain))


#: IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX (hw_pagetable.c).
INVALIDATE_ENTRY_NUM_MAX = 1 << 19


def hwpt_invalidate(call: Call, req: pb.HwptInvalidateRequest) -> pb.HwptInvalidateResponse:
    """IOMMU_HWPT_INVALIDATE (iommufd_hwpt_invalidate). Only nested HWPTs and
    vIOMMUs take cache invalidations, and none exist in this model, so a
    valid request ends at the type check; the entry count handled (0) is
    reported even on error."""
    handled = {"entry_num": 0}
    if req.reserved:
        raise IommuError(E.EOPNOTSUPP, f"The reserved field must be zero, not "
                         f"{req.reserved:#x}.", **handled)
    # Bounded so that one call cannot pin the CPU (the kernel's own reason).
    if req.entry_num and (not req.data or not req.entry_len or req.entry_len > PAGE_SIZE
                          or req.entry_num > INVALIDATE_ENTRY_NUM_MAX):
        raise IommuError(E.EINVAL, f"{req.entry_num:#x} entries of {req.entry_len:#x} bytes: "
                         f"entries need data, and a length from 1 to {PAGE_SIZE:#x}, at most "
                         f"{INVALIDATE_ENTRY_NUM_MAX:#x} of them.", **handled)
    if call.ctx.lookup(req.hwpt_id) is None:
        raise IommuError(E.ENOENT, f"No object with id {req.hwpt_id} exists in this context.",
                         hwpt_id=req.hwpt_id, **handled)
    raise IommuError(E.EINVAL, f"Object {req.hwpt_id} is not a nested HWPT or a vIOMMU; only "
                     f"those take invalidations.", hwpt_id=req.hwpt_id, **handled)
