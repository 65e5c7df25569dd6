"""HWPT objects (hw_pagetable.c): HWPT_PAGING, an IOMMU domain that mirrors
one IOAS, and HWPT_NESTED, a stage-1 domain nested on a paging parent.

A paging HWPT holds a users ref on its IOAS for its whole life; every device
(or device PASID) attached to a HWPT holds a users ref on it. While it
exists its IOAS reserves the complement of the domain's aperture and aligns
IOVAs to the largest minimum page size of all its domains. Automatic HWPTs
(made by attaching a device to an IOAS) die with their last attachment;
user-allocated ones stay until IOMMU_DESTROY.

A nested HWPT holds a users ref on its NEST_PARENT paging HWPT, or, when it
was allocated on a vIOMMU, on the vIOMMU (which holds the parent). Its
stage-1 table is the user's (a guest's page table in guest memory) and
iommud does not walk it: a device attached to a nested HWPT translates
through the parent's stage 2 as if stage 1 were the identity. Cache
invalidations (IOMMU_HWPT_INVALIDATE) go to the nested HWPT's driver or to
the vIOMMU's.
"""
from __future__ import annotations

import dataclasses
import errno as E
import itertools
from typing import TYPE_CHECKING, Any, cast

from iommud import _core, files
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
    IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
    IOMMU_TEST_INVALIDATE_FLAG_ALL,
    MOCK_HUGE_APERTURE_LAST,
    MOCK_HUGE_PGSIZE_BITMAP,
    MOCK_IOMMUPT_DEFAULT,
    MOCK_IOMMUPT_HUGE,
    MOCK_NESTED_DOMAIN_IOTLB_ID_MAX,
    PAGE_SIZE,
    U64_MAX,
)

if TYPE_CHECKING:
    from iommud.call import Call
    from iommud.context import IommufdContext
    from iommud.device import DeviceObj
    from iommud.topology import Device as HostDevice
    from iommud.viommu import Viommu

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


def iommu_instance(dev: HostDevice) -> tuple[str, Geometry]:
    """The modelled IOMMU instance behind `dev` (its iommu_device): devices
    of one IOMMU kind with the same page sizes and aperture share one driver
    instance, as every mock device shares the selftest's mock IOMMU."""
    return dev.iommu, Geometry.of(dev)


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
            if len(self.ioas.domains) == 1:  # iopt_fill_domain pins what no domain holds
                files.sources_of(self.ioas).check_pins(self.ioas.pinned_by_access)
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


def hwpt_put(ctx: IommufdContext, hwpt: Hwpt) -> None:
    """Drop one attachment's ref; an automatic HWPT goes with its last one."""
    hwpt.users -= 1
    if hwpt.auto_domain and hwpt.users == 0:
        ctx.destroy(hwpt.id)


#: The mock nested domain's IOTLB slots (MOCK_NESTED_DOMAIN_IOTLB_NUM).
MOCK_IOTLB_SLOTS = MOCK_NESTED_DOMAIN_IOTLB_ID_MAX + 1


class HwptNested(IommufdObject):
    """IOMMUFD_OBJ_HWPT_NESTED (iommufd_hwpt_nested_alloc,
    iommufd_viommu_alloc_hwpt_nested): a stage-1 domain over `parent`, its
    stage 2. Attachments see the parent's IOAS and IO page table (the
    stage-1 table is the user's and is not walked). The mock IOMMU's nested
    domain keeps four IOTLB slots (struct mock_iommu_domain_nested)."""

    type = ObjType.HWPT_NESTED
    #: Never made by an attach: it stays until IOMMU_DESTROY.
    auto_domain = False
    #: No dirty ops: a nested domain never refuses a device for them.
    dirty_tracking = False

    def __init__(self, obj_id: int, parent: HwptPaging, flags: int, iotlb: int,
                 viommu: Viommu | None) -> None:
        super().__init__(obj_id)
        self.parent = parent
        self.viommu = viommu
        self.pasid_compat = bool(flags & IOMMU_HWPT_ALLOC_PASID)
        self.iommu = parent.iommu
        #: The mock nested domain's IOTLB, every slot set from the data's iotlb.
        self.iotlb = [iotlb] * MOCK_IOTLB_SLOTS
        #: The fault queue this HWPT reports to (it holds a users ref on it).
        self.fault: IommufdObject | None = None

    @property
    def ioas(self) -> Ioas:
        """The IOAS of the stage 2: what an attach enforces reserved regions
        in (find_hwpt_paging gives the parent)."""
        return self.parent.ioas

    @property
    def domain(self) -> Any:
        """The IO page table a device attached here translates through."""
        return self.parent.domain

    def compatible(self, dev: HostDevice) -> bool:
        """A nested domain belongs to its parent's IOMMU instance (the
        domain's owner ops); it has no dirty ops to refuse a device for."""
        return iommu_instance(dev) == (self.iommu, self.parent.dev_geometry)

    def describe(self, info: Any) -> None:
        info.ioas_id = self.parent.ioas.id
        info.parent_id = self.parent.id
        if self.viommu is not None:
            info.viommu_id = self.viommu.id

    def destroy(self) -> None:
        """iommufd_hwpt_nested_destroy: the fault queue's ref, then the
        vIOMMU's, or the parent's."""
        if self.fault is not None:
            self.fault.users -= 1
        if self.viommu is not None:
            self.viommu.users -= 1
        else:
            self.parent.users -= 1


#: What an attachment holds: a paging or a nested HWPT.
Hwpt = HwptPaging | HwptNested


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


def copy_struct_from_user(src: bytes, ksize: int) -> bytes:
    """copy_struct_from_user: the caller's `src` as a struct of `ksize`
    bytes: a shorter one is zero-filled, a longer one must be zero past
    `ksize` (E2BIG)."""
    if len(src) > ksize and src.count(0, ksize) != len(src) - ksize:
        raise IommuError(E.E2BIG, f"Non-zero bytes past the driver's {ksize}-byte struct.")
    return src[:ksize].ljust(ksize, b"\0")


def _user_data(req: Any, min_len: int, ksize: int) -> bytes:
    """iommu_copy_struct_from_user of a request's driver data: data_len below
    the struct's first version or above its size is EINVAL; data that does
    not hold data_len bytes (a NULL or faulting pointer) is EFAULT."""
    if not min_len <= req.data_len <= ksize:
        raise IommuError(E.EINVAL, f"The driver data is {min_len} to {ksize} bytes, not "
                         f"{req.data_len:#x}.", data_len=req.data_len)
    if len(req.data) < req.data_len:
        raise IommuError(E.EFAULT, f"The driver data holds {len(req.data):#x} of the "
                         f"{req.data_len:#x} bytes data_len names.", data_len=req.data_len)
    return copy_struct_from_user(req.data[:req.data_len], ksize)


#: struct iommu_hwpt_selftest {u32 iotlb, u32 pagetable_type}: 8 bytes, 4 at first.
HWPT_SELFTEST_SIZE, HWPT_SELFTEST_MIN = 8, 4
#: IOMMU_HWPT_DATA_VTD_S1: struct iommu_hwpt_vtd_s1 {u64 flags, u64 pgtbl_addr,
#: u32 addr_width, u32 __reserved}: 24 bytes.
IOMMU_HWPT_DATA_VTD_S1, HWPT_VTD_S1_SIZE = 1, 24


def _mock_nested_iotlb(flags: int, req: pb.HwptAllocRequest) -> int:
    """__mock_domain_alloc_nested (after mock_domain_alloc_nested's or
    mock_viommu_alloc_domain_nested's flag check): only the selftest data
    type; every IOTLB slot takes its `iotlb`."""
    if flags & ~IOMMU_HWPT_ALLOC_PASID:
        raise IommuError(E.EOPNOTSUPP, f"The mock nested domain takes no flags but PASID, "
                         f"not {flags:#x}.", flags=flags)
    if req.data_type != IOMMU_HWPT_DATA_SELFTEST:
        raise IommuError(E.EOPNOTSUPP, f"The mock IOMMU has no nested data type "
                         f"{req.data_type:#x}.", data_type=req.data_type)
    data = _user_data(req, HWPT_SELFTEST_MIN, HWPT_SELFTEST_SIZE)
    return int.from_bytes(data[:4], "little")


def _nested_new(ctx: IommufdContext, parent: HwptPaging, viommu: Viommu | None,
                host_dev: HostDevice, req: pb.HwptAllocRequest) -> HwptNested:
    """The object, the hold on its parent (or vIOMMU), then the driver's
    domain_alloc_nested; nothing is left behind on failure."""
    obj_id = ctx.new_id()
    try:
        if not host_dev.is_mock:
            # The VT-d model's driver takes struct iommu_hwpt_vtd_s1 (read as
            # the driver reads it: EINVAL, EFAULT) but does not model a
            # stage-1 table: EOPNOTSUPP for every nested domain.
            if req.data_type == IOMMU_HWPT_DATA_VTD_S1:
                _user_data(req, HWPT_VTD_S1_SIZE, HWPT_VTD_S1_SIZE)
            raise IommuError(E.EOPNOTSUPP, f"Nested domains of data type {req.data_type:#x} "
                             f"are not modelled for the IOMMU of {host_dev.name}.",
                             dev_id=req.dev_id)
        iotlb = _mock_nested_iotlb(req.flags & ~IOMMU_HWPT_FAULT_ID_VALID, req)
    except BaseException:
        ctx.abort_id(obj_id)
        raise
    hwpt = HwptNested(obj_id, parent, req.flags, iotlb, viommu)
    if viommu is not None:
        viommu.users += 1
    else:
        parent.users += 1
    ctx.insert(hwpt)
    return hwpt


def _nested_alloc(ctx: IommufdContext, dev: DeviceObj, parent: HwptPaging,
                  req: pb.HwptAllocRequest) -> HwptNested:
    """iommufd_hwpt_nested_alloc: flags other than FAULT_ID_VALID and PASID,
    or no driver data, are EOPNOTSUPP; a parent made by an attach, one
    without NEST_PARENT, or one of another IOMMU is EINVAL."""
    if req.flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID) or not req.data_len:
        raise IommuError(E.EOPNOTSUPP, f"A nested HWPT takes flags FAULT_ID_VALID and PASID "
                         f"only, and driver data (flags {req.flags:#x}, data_len "
                         f"{req.data_len:#x}).", flags=req.flags)
    if parent.auto_domain or not parent.nest_parent or \
            iommu_instance(dev.host_dev) != (parent.iommu, parent.dev_geometry):
        raise IommuError(E.EINVAL, f"HWPT {parent.id} is no NEST_PARENT paging HWPT of the "
                         f"IOMMU of {dev.host_dev.name}.", pt_id=parent.id)
    return _nested_new(ctx, parent, None, dev.host_dev, req)


def _viommu_nested_alloc(ctx: IommufdContext, dev: DeviceObj, viommu: Viommu,
                         req: pb.HwptAllocRequest) -> HwptNested:
    """iommufd_hwpt_alloc's vIOMMU branch: the device must be behind the
    vIOMMU's IOMMU (EINVAL); then iommufd_viommu_alloc_hwpt_nested."""
    if iommu_instance(dev.host_dev) != viommu.iommu_dev:
        raise IommuError(E.EINVAL, f"vIOMMU {viommu.id} is not of the IOMMU of "
                         f"{dev.host_dev.name}.", pt_id=viommu.id)
    if req.flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID) or not req.data_len:
        raise IommuError(E.EOPNOTSUPP, f"A nested HWPT takes flags FAULT_ID_VALID and PASID "
                         f"only, and driver data (flags {req.flags:#x}, data_len "
                         f"{req.data_len:#x}).", flags=req.flags)
    return _nested_new(ctx, viommu.hwpt, viommu, dev.host_dev, req)


def hwpt_alloc(call: Call, req: pb.HwptAllocRequest) -> pb.HwptAllocResponse:
    """IOMMU_HWPT_ALLOC (iommufd_hwpt_alloc): a paging HWPT on an IOAS
    (iommufd_hwpt_paging_alloc), a nested one on a paging HWPT or a vIOMMU;
    then the fault queue when FAULT_ID_VALID (the new HWPT goes if it is
    not there)."""
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
    hwpt: Hwpt
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
    elif isinstance(pt, HwptPaging):
        hwpt = _nested_alloc(ctx, dev, pt, req)
    elif pt.type is ObjType.VIOMMU:
        hwpt = _viommu_nested_alloc(ctx, dev, cast("Viommu", pt), req)
    else:
        raise IommuError(E.EINVAL, f"Object {req.pt_id} is neither an IOAS, a paging HWPT nor "
                         f"a vIOMMU.", pt_id=req.pt_id)
    if flags & IOMMU_HWPT_FAULT_ID_VALID:
        try:
            fault = ctx.get(req.fault_id, FaultQueue, "fault queue")
        except BaseException:
            ctx.destroy(hwpt.id)
            raise
        hwpt.fault = fault
        fault.users += 1
    return pb.HwptAllocResponse(out_hwpt_id=hwpt.id)


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


def invalidation_entries(req: pb.HwptInvalidateRequest) -> list[bytes | None]:
    """The request's entries, entry_len bytes each; None for an entry the
    data does not hold (the caller's copy of it would fault)."""
    out: list[bytes | None] = []
    for i in range(req.entry_num):
        at = i * req.entry_len
        out.append(req.data[at:at + req.entry_len]
                   if at + req.entry_len <= len(req.data) else None)
    return out


#: struct iommu_hwpt_invalidate_selftest {u32 flags, u32 iotlb_id}: 8 bytes.
HWPT_INVALIDATE_SELFTEST_SIZE = 8


def _mock_nested_invalidate(hwpt: HwptNested, req: pb.HwptInvalidateRequest) -> int:
    """mock_domain_cache_invalidate_user: another data type is EINVAL; each
    entry in turn (iommu_copy_struct_from_user_array: an entry_len other
    than the struct's is EINVAL, a fault EFAULT), flags beyond ALL
    EOPNOTSUPP, an iotlb_id past 3 EINVAL; ALL clears every slot, else the
    one. Returns the entries handled; an error carries that count too."""
    if req.data_type != IOMMU_HWPT_INVALIDATE_DATA_SELFTEST:
        raise IommuError(E.EINVAL, f"The mock nested domain takes invalidation data type "
                         f"{IOMMU_HWPT_INVALIDATE_DATA_SELFTEST:#x}, not {req.data_type:#x}.",
                         entry_num=0)
    done = 0
    for entry in invalidation_entries(req):
        if req.entry_len != HWPT_INVALIDATE_SELFTEST_SIZE:
            raise IommuError(E.EINVAL, f"An entry is {HWPT_INVALIDATE_SELFTEST_SIZE} bytes, "
                             f"not {req.entry_len:#x}.", entry_num=done)
        if entry is None:
            raise IommuError(E.EFAULT, f"Entry {done} could not be read.", entry_num=done)
        inv_flags = int.from_bytes(entry[0:4], "little")
        iotlb_id = int.from_bytes(entry[4:8], "little")
        if inv_flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL:
            raise IommuError(E.EOPNOTSUPP, f"Entry {done}: unknown flags {inv_flags:#x}.",
                             entry_num=done)
        if iotlb_id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX:
            raise IommuError(E.EINVAL, f"Entry {done}: no IOTLB slot {iotlb_id}.",
                             entry_num=done)
        if inv_flags & IOMMU_TEST_INVALIDATE_FLAG_ALL:
            hwpt.iotlb = [0] * MOCK_IOTLB_SLOTS
        else:
            hwpt.iotlb[iotlb_id] = 0
        done += 1
    return done


def hwpt_invalidate(call: Call, req: pb.HwptInvalidateRequest) -> pb.HwptInvalidateResponse:
    """IOMMU_HWPT_INVALIDATE (iommufd_hwpt_invalidate): the bounds, the
    lookup, then a nested HWPT's cache_invalidate_user or a vIOMMU's
    cache_invalidate; anything else is EINVAL. The count of entries handled
    comes back on success and on failure (`entry_num` in the error)."""
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
    obj = call.ctx.lookup(req.hwpt_id)
    if obj is None:
        raise IommuError(E.ENOENT, f"No object with id {req.hwpt_id} exists in this context.",
                         hwpt_id=req.hwpt_id, **handled)
    if isinstance(obj, HwptNested):
        if obj.iommu != "mock":
            raise IommuError(E.EOPNOTSUPP, f"HWPT {req.hwpt_id}'s driver takes no cache "
                             f"invalidations.", hwpt_id=req.hwpt_id, **handled)
        done = _mock_nested_invalidate(obj, req)
    elif obj.type is ObjType.VIOMMU:
        done = cast("Viommu", obj).cache_invalidate(req)
    else:
        raise IommuError(E.EINVAL, f"Object {req.hwpt_id} is not a nested HWPT or a vIOMMU; "
                         f"only those take invalidations.", hwpt_id=req.hwpt_id, **handled)
    return pb.HwptInvalidateResponse(entry_num=done)
