"""Device fds and DEVICE objects: the device-centric path of the design thread
(vfio device cdev + iommufd device.c).

A DeviceFd is a session's open of /dev/vfio/devices/vfioN. Until it is bound
it grants info queries only; every VFIO operation that needs DMA isolation is
EINVAL, as in the kernel. Binding claims DMA ownership of the device's group
for the iommufd context and creates a DEVICE object there (its dev_id); the
DEVICE is destroyed only by unbinding, i.e. closing the fd.

Attachments: each (device, pasid) attachment holds a users ref on one HWPT,
paging or nested. pasid None is the RID. All RID attachments of one group
share one HWPT unless the group stage allows 1:N and every device involved
is reliably identifiable (stage 3).
"""
from __future__ import annotations

import asyncio
import errno as E
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iommud import fault, files
from iommud.errors import IommuError
from iommud.failnth import step
from iommud.host import DOMAIN_BLOCKING, Host, host_device_pb
from iommud.hw_pagetable import (
    Hwpt,
    HwptNested,
    HwptPaging,
    hwpt_paging_new,
    hwpt_put,
    new_resv_owner,
)
from iommud.ioas import Ioas
from iommud.objects import IommufdObject, ObjType
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_HW_CAP_DIRTY_TRACKING,
    IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED,
    IOMMU_HW_CAP_PCI_PASID_EXEC,
    IOMMU_HW_INFO_FLAG_INPUT_TYPE,
    IOMMU_HW_INFO_SELFTEST_REGVAL,
    IOMMU_HW_INFO_TYPE_DEFAULT,
    IOMMU_HW_INFO_TYPE_INTEL_VTD,
    IOMMU_HW_INFO_TYPE_SELFTEST,
    IOMMU_NO_PASID,
    IOMMU_TEST_DEV_CACHE_DEFAULT,
    IOMMU_TEST_PASID_RESERVED,
    MOCK_DEV_CACHE_ID_MAX,
    VFIO_DEVICE_ATTACH_PASID,
    VFIO_DEVICE_BIND_FLAG_TOKEN,
    VFIO_DEVICE_DETACH_PASID,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from iommud.call import Call
    from iommud.context import IommufdContext
    from iommud.topology import Device as HostDevice
    from iommud.viommu import Vdevice, Viommu

#: Thread stages of group support (chosen at daemon start).
STAGE_1_SINGLETON = 1
STAGE_2_SHARED = 2
STAGE_3_SPLIT = 3


class DeviceObj(IommufdObject):
    """IOMMUFD_OBJ_DEVICE: a host device bound to one iommufd context."""

    type = ObjType.DEVICE
    #: Its vDEVICE (idev->vdev): at most one, on one vIOMMU.
    vdev: Vdevice | None = None
    #: The mock IOMMU's view of the device (struct mock_dev): the vIOMMU of
    #: the nested domain its RID is attached to and its virtual id there,
    #: set by each RID attach (mock_domain_nop_attach), and its cache slots
    #: (mock_dev_create fills them; a vIOMMU invalidation clears them).
    mock_viommu: Viommu | None = None
    mock_vdev_id = 0
    cache: tuple[int, ...] = (IOMMU_TEST_DEV_CACHE_DEFAULT,) * (MOCK_DEV_CACHE_ID_MAX + 1)

    def __init__(self, obj_id: int, host: Host, host_dev: HostDevice, ctx: IommufdContext,
                 cookie: int) -> None:
        super().__init__(obj_id)
        self.host = host
        self.host_dev = host_dev
        self.ctx = ctx
        self.cookie = cookie
        #: pasid (None = RID) -> attached HWPT
        self.attached: dict[int | None, Hwpt] = {}
        self.resv_owner = new_resv_owner()
        #: IOAS objects holding this device's reserved regions.
        self.resv_in: set[int] = set()
        #: Whether the binding holds its context open (not for mock devices).
        self.holds_ctx = True
        #: The mock IOMMU's replace-failure quirk for IOMMU_TEST_PASID_RESERVED
        #: (mock_domain_set_dev_pasid_nop): armed by a set, fires on the next.
        self.pasid_quirk_armed = False

    @property
    def max_pasids(self) -> int:
        """dev_iommu_get_max_pasids: a width of 0 bits still allows one PASID
        value (0, the RID), so every PASID >= 1 is beyond it."""
        return 1 << self.host_dev.max_pasid_log2

    def describe(self, info: Any) -> None:
        info.device = self.host_dev.name
        info.cookie = self.cookie


class DeviceFd:
    """An open device fd of a session."""

    kind = "device"

    def __init__(self, host: Host, host_dev: HostDevice, via_group: bool = False) -> None:
        self.host = host
        self.host_dev = host_dev
        self.via_group = via_group
        self.bound: DeviceObj | None = None
        #: False when the binding belongs to a legacy container, which keeps
        #: it after this fd closes.
        self.owns_binding = False
        #: Called once when the fd is closed (the group fd counts its devices).
        self.on_close: list[Callable[[DeviceFd], None]] = []
        self.closed = False

    def release(self) -> int:
        """close(device_fd): unbind a binding this fd owns; returns how many
        objects of its context went with it."""
        ctx = self.bound.ctx if self.bound else None
        before = len(ctx) if ctx is not None else 0
        unbind(self)
        self.closed = True
        for callback in self.on_close:
            callback(self)
        return before - (len(ctx) if ctx is not None else 0)

    def require_bound(self, what: str) -> DeviceObj:
        if self.bound is None:
            raise IommuError(E.EINVAL, f"{what} needs the device fd of {self.host_dev.name} to "
                             f"be bound to an iommufd first.", device=self.host_dev.name)
        return self.bound


@dataclass(frozen=True)
class DmaResult:
    ok: bool
    pa: int = 0
    fault: str = ""


def open_cdev(host: Host, name: str) -> DeviceFd:
    """open("/dev/vfio/devices/vfioN"): the cdev exists only while the device
    is bound to a VFIO host driver."""
    dev = host.device(name)
    if host.bound_driver.get(name) != "vfio-pci":
        raise IommuError(E.ENODEV, f"{name} is not bound to vfio-pci, so it has no VFIO device "
                         f"node to open.", device=name)
    return DeviceFd(host, dev)


def bind_check(devfd: DeviceFd, flags: int, iommufd: int) -> None:
    """VFIO_DEVICE_BIND_IOMMUFD steps 1-4, which precede resolving the iommufd."""
    dev = devfd.host_dev
    if flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN:
        raise IommuError(E.EINVAL, f"Unknown bind flag bits {flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN:#x}.")
    if iommufd < 0:
        raise IommuError(E.EINVAL, f"iommufd {iommufd} is negative.")
    if devfd.via_group:
        raise IommuError(E.EINVAL, "A device fd obtained through a group cannot be bound to an "
                         "iommufd.", device=dev.name)
    group = devfd.host.group_state(dev.group)
    if group.legacy_open:
        raise IommuError(E.EBUSY, f"IOMMU group {dev.group} of {dev.name} is open through the "
                         f"legacy group interface.", group=dev.group)
    if devfd.bound is not None:
        raise IommuError(E.EINVAL, f"This device fd of {dev.name} is already bound.",
                         device=dev.name)
    if dev.name in group.open_devices:
        raise IommuError(E.EINVAL, f"{dev.name} is already opened through another fd.",
                         device=dev.name)


def bind(devfd: DeviceFd, ctx: IommufdContext, cookie: int, stage: int) -> int:
    """Bind after bind_check and the iommufd lookup; returns dev_id."""
    dev = devfd.host_dev
    if stage == STAGE_1_SINGLETON and len(devfd.host.members(dev.group)) > 1:
        raise IommuError(E.EOPNOTSUPP, f"Stage 1 serves only 1:1 groups; {dev.name} shares IOMMU "
                         f"group {dev.group}. Use the legacy group path.", device=dev.name,
                         group=dev.group)
    devfd.bound = bind_obj(devfd.host, dev, ctx, cookie)
    devfd.owns_binding = True
    return devfd.bound.id


def bind_obj(host: Host, dev: HostDevice, ctx: IommufdContext, cookie: int,
             hold_ctx: bool = True) -> DeviceObj:
    """iommufd_device_bind: claim DMA ownership for ctx and create the DEVICE.
    Shared by the cdev binds, the legacy group path and the selftest's mock
    devices; nothing is left behind on failure. A VFIO device file holds
    its iommufd (hold_ctx); a mock device does not, so closing the iommufd
    tears it down (iommufd_test_mock_domain)."""
    obj_id = ctx.new_id()
    try:
        host.claim_dma_owner(dev, ctx)
    except BaseException:
        ctx.abort_id(obj_id)
        raise
    obj = DeviceObj(obj_id, host, dev, ctx, cookie)
    obj.holds_ctx = hold_ctx
    ctx.insert(obj)
    if hold_ctx:
        ctx.holders += 1
    host.groups[dev.group].open_devices.add(dev.name)
    return obj


def unbind(devfd: DeviceFd) -> None:
    """Closing a device fd that owns its binding: unbind the device."""
    if devfd.bound is not None and devfd.owns_binding:
        unbind_obj(devfd.bound)
    devfd.bound = None


def unbind_obj(obj: DeviceObj) -> None:
    """Detach every PASID, then the RID, destroy the DEVICE object (its
    vDEVICE first, leaving a tombstone: iommufd_device_remove_vdev) and
    release the group; the context goes if this was its last holder."""
    for pasid in sorted(p for p in obj.attached if p is not None):
        detach_obj(obj, pasid)
    detach_obj(obj, None)
    ctx = obj.ctx
    if obj.vdev is not None:
        ctx.tombstone(obj.vdev)
    ctx.remove_device(obj)
    host = obj.host
    host.groups[obj.host_dev.group].open_devices.discard(obj.host_dev.name)
    host.release_dma_owner(obj.host_dev.group)
    if obj.holds_ctx:
        ctx.holders -= 1
        ctx.maybe_release()


def _rid_siblings(obj: DeviceObj) -> list[DeviceObj]:
    """Group siblings of obj bound in the same context with a RID attachment."""
    return [s for s in obj.ctx.objects()
            if isinstance(s, DeviceObj) and s is not obj
            and s.host_dev.group == obj.host_dev.group and None in s.attached]


def _check_group_rule(obj: DeviceObj, hwpt: Hwpt, stage: int,
                      movers: list[DeviceObj]) -> None:
    """All RID attachments of a group share one HWPT (EINVAL), except in
    stage 3 when every device involved has a reliably identifiable source."""
    for sibling in _rid_siblings(obj):
        other = sibling.attached[None]
        if sibling in movers or other is hwpt:
            continue
        split_ok = (stage == STAGE_3_SPLIT and obj.host_dev.reliable_source_id
                    and sibling.host_dev.reliable_source_id)
        if not split_ok:
            raise IommuError(E.EINVAL, f"{obj.host_dev.name} must use the same HWPT as its group "
                             f"sibling {sibling.host_dev.name} (HWPT {other.id}), not HWPT "
                             f"{hwpt.id}.", hwpt_id=hwpt.id)


def _enforce_resv(obj: DeviceObj, ioas: Ioas) -> bool:
    """Reserve the device's regions in `ioas`; True if this call added them.
    EADDRINUSE (a mapping or allowed range in the way) leaves nothing behind."""
    if ioas.id in obj.resv_in:
        return False
    try:
        for region in obj.host_dev.reserved_regions:
            if region.enforced:
                step("reserved region")
                ioas.iopt.add_reserved(region.start, region.last, obj.resv_owner)
    except BaseException:
        ioas.iopt.remove_reserved(obj.resv_owner)
        raise
    obj.resv_in.add(ioas.id)
    return True


def _drop_resv(obj: DeviceObj, ioas: Ioas) -> None:
    if ioas.id in obj.resv_in:
        ioas.iopt.remove_reserved(obj.resv_owner)
        obj.resv_in.discard(ioas.id)


def _mock_attach(obj: DeviceObj, hwpt: Hwpt) -> tuple[Viommu | None, int]:
    """mock_domain_nop_attach's vIOMMU step: a nested domain of a vIOMMU
    needs the device's vDEVICE there (iommufd_viommu_get_vdev_id: ENOENT);
    returns the vIOMMU and the virtual id the mock device takes."""
    viommu = hwpt.viommu if isinstance(hwpt, HwptNested) else None
    if viommu is None or not obj.host_dev.is_mock:
        return None, 0
    vdev = obj.vdev
    if vdev is None or vdev.viommu is not viommu:
        raise IommuError(E.ENOENT, f"{obj.host_dev.name} has no vDEVICE on vIOMMU {viommu.id}, "
                         f"whose nested HWPT {hwpt.id} it is attaching to.", hwpt_id=hwpt.id)
    return viommu, vdev.virt_id


def _attach_pasid(obj: DeviceObj, hwpt: Hwpt, pasid: int) -> None:
    """PASID attach or replace; PASIDs enforce no reserved regions.
    iommufd_hwpt_pasid_compat, then iommu_attach_device_pasid's range check."""
    if not hwpt.pasid_compat:
        raise IommuError(E.EINVAL, f"HWPT {hwpt.id} was not allocated for PASID use.",
                         hwpt_id=hwpt.id, pasid=pasid)
    rid = obj.attached.get(None)
    if rid is not None and not rid.pasid_compat:
        raise IommuError(E.EINVAL, f"The RID domain of {obj.host_dev.name} (HWPT {rid.id}) is "
                         f"not PASID-compatible.", hwpt_id=rid.id, pasid=pasid)
    if pasid >= obj.max_pasids:
        raise IommuError(E.EINVAL, f"PASID {pasid:#x} is beyond the "
                         f"{obj.host_dev.max_pasid_log2}-bit PASID width of "
                         f"{obj.host_dev.name}.", pasid=pasid)
    if obj.host_dev.is_mock and pasid == IOMMU_TEST_PASID_RESERVED:
        if obj.pasid_quirk_armed:
            obj.pasid_quirk_armed = False
            raise IommuError(E.ENOMEM, f"The mock IOMMU fails this set of PASID {pasid:#x} "
                             f"(its replace-failure test).", pasid=pasid)
        obj.pasid_quirk_armed = True
    old = obj.attached.get(pasid)
    obj.attached[pasid] = hwpt
    hwpt.users += 1
    if old is not None:
        fault.detached(obj, pasid, old)   # iommufd_hwpt_replace_device
        hwpt_put(obj.ctx, old)


def _attach_rid(obj: DeviceObj, hwpt: Hwpt, stage: int) -> None:
    """RID attach, or replace. A replace moves every sibling that shared the
    old HWPT, as iommu_group_replace_domain moves the whole group; the new
    IOAS must accept all of their reserved regions first."""
    old = obj.attached.get(None)
    if any(p is not None for p in obj.attached) and not hwpt.pasid_compat:
        raise IommuError(E.EINVAL, f"{obj.host_dev.name} has PASIDs attached, so its RID domain "
                         f"must be PASID-compatible; HWPT {hwpt.id} is not.", hwpt_id=hwpt.id)
    movers = [obj]
    if old is not None:
        movers += [s for s in _rid_siblings(obj) if s.attached[None] is old]
    _check_group_rule(obj, hwpt, stage, movers)
    added: list[DeviceObj] = []
    try:
        for mover in movers:
            if _enforce_resv(mover, hwpt.ioas):
                added.append(mover)
        mock_state = _mock_attach(obj, hwpt)   # the driver's attach, after the regions
    except BaseException:
        for mover in added:
            _drop_resv(mover, hwpt.ioas)
        raise
    obj.mock_viommu, obj.mock_vdev_id = mock_state
    for mover in movers:
        prev = mover.attached.get(None)
        mover.attached[None] = hwpt
        hwpt.users += 1
        if prev is not None:
            if prev.ioas is not hwpt.ioas:
                _drop_resv(mover, prev.ioas)
            fault.detached(mover, None, prev)   # iommufd_hwpt_replace_device
            hwpt_put(mover.ctx, prev)
    group = obj.host.groups[obj.host_dev.group]
    if not isinstance(group.domain, (HwptPaging, HwptNested)) or group.domain is old:
        group.domain = hwpt


def _attach_hwpt(obj: DeviceObj, hwpt: Hwpt, pasid: int | None, stage: int) -> None:
    """Attach (or replace) obj's `pasid` onto `hwpt`; on failure nothing changes."""
    if not hwpt.compatible(obj.host_dev):
        raise IommuError(E.EINVAL, f"HWPT {hwpt.id} belongs to an IOMMU {obj.host_dev.name} is "
                         f"not behind, or lacks a capability it needs.", hwpt_id=hwpt.id)
    if obj.attached.get(pasid) is hwpt:
        return  # replacing a HWPT with itself is a no-op
    if pasid is None:
        _attach_rid(obj, hwpt, stage)
    else:
        _attach_pasid(obj, hwpt, pasid)


def attach(devfd: DeviceFd, flags: int, pt_id: int, pasid: int, stage: int) -> int:
    """VFIO_DEVICE_ATTACH_IOMMUFD_PT; attaching an attached RID/PASID replaces.
    Returns the id of the HWPT actually attached."""
    if flags & ~VFIO_DEVICE_ATTACH_PASID:
        raise IommuError(E.EINVAL, f"Unknown attach flag bits {flags & ~VFIO_DEVICE_ATTACH_PASID:#x}.")
    obj = devfd.require_bound("ATTACH_IOMMUFD_PT")
    # vfio-pci has the PASID ops (vfio_iommufd_physical_pasid_attach_ioas), so
    # a device without PASID support is refused by the core's range check
    # (EINVAL), never with EOPNOTSUPP; PASID 0 is the RID (IOMMU_NO_PASID).
    use_pasid = pasid if flags & VFIO_DEVICE_ATTACH_PASID and pasid != IOMMU_NO_PASID else None
    return attach_obj(obj, pt_id, use_pasid, stage)


def attach_obj(obj: DeviceObj, pt_id: int, use_pasid: int | None, stage: int) -> int:
    """iommufd_device_attach/replace onto an IOAS (automatic HWPT) or a HWPT."""
    dev = obj.host_dev
    ctx = obj.ctx
    pt = ctx.lookup(pt_id)
    if pt is None:
        raise IommuError(E.ENOENT, f"No object with id {pt_id} exists in this context.",
                         pt_id=pt_id)
    if isinstance(pt, (HwptPaging, HwptNested)):
        _attach_hwpt(obj, pt, use_pasid, stage)
        return pt.id
    if not isinstance(pt, Ioas):
        raise IommuError(E.EINVAL, f"Object {pt_id} is neither an IOAS nor a HWPT.", pt_id=pt_id)
    # Auto domain: reuse a compatible automatic HWPT of this IOAS; EINVAL
    # means "incompatible, try the next one", anything else stops the walk.
    for hwpt in [d for d in pt.domains if d.auto_domain]:
        try:
            _attach_hwpt(obj, hwpt, use_pasid, stage)
            return hwpt.id
        except IommuError as err:
            if err.errno != E.EINVAL:
                raise
    # iommufd_device_auto_get_domain allocates with flags 0: an automatic
    # HWPT is never PASID-compatible, so a PASID attach of an IOAS is EINVAL.
    hwpt = hwpt_paging_new(ctx, pt, dev, auto_domain=True, flags=0)
    try:
        _attach_hwpt(obj, hwpt, use_pasid, stage)
    except BaseException:
        ctx.destroy(hwpt.id)
        raise
    return hwpt.id


def detach_request(devfd: DeviceFd, flags: int, pasid: int) -> None:
    """VFIO_DEVICE_DETACH_IOMMUFD_PT: flag checks, then a detach that always succeeds."""
    if flags & ~VFIO_DEVICE_DETACH_PASID:
        raise IommuError(E.EINVAL, f"Unknown detach flag bits {flags & ~VFIO_DEVICE_DETACH_PASID:#x}.")
    obj = devfd.require_bound("DETACH_IOMMUFD_PT")
    # vfio_iommufd_physical_pasid_detach_ioas: a PASID never attached is a
    # silent no-op, with or without PASID support.
    if flags & VFIO_DEVICE_DETACH_PASID and pasid != IOMMU_NO_PASID:
        detach_obj(obj, pasid)
    else:
        detach_obj(obj, None)


def detach_obj(obj: DeviceObj, pasid: int | None) -> None:
    """Detaching what is not attached is a silent no-op; afterwards the
    RID/PASID is blocked."""
    hwpt = obj.attached.pop(pasid, None)
    if hwpt is None:
        return
    if pasid is None:
        obj.mock_viommu, obj.mock_vdev_id = None, 0   # the blocking domain's attach
        _drop_resv(obj, hwpt.ioas)
        group = obj.host.groups[obj.host_dev.group]
        if group.domain is hwpt:
            remaining = [s.attached[None] for s in _rid_siblings(obj)]
            group.domain = remaining[0] if remaining else DOMAIN_BLOCKING
    fault.detached(obj, pasid, hwpt)   # iommufd_hwpt_detach_device
    hwpt_put(obj.ctx, hwpt)


def dma(obj: DeviceObj, pasid: int | None, iova: int, length: int, write: bool) -> DmaResult:
    """One DMA access by the device; faults are results, not call errors."""
    hwpt = obj.attached.get(pasid)
    if hwpt is None:
        return DmaResult(False, fault="blocked")
    if files.revoked_in(hwpt.ioas, iova, length):  # iopt_revoke_notify unmapped them
        return DmaResult(False, fault="unmapped")
    try:
        # Through the HWPT's own page table; a write dirties its leaves there
        # (and in the IOAS, which the type1 emulation reads).
        return DmaResult(True, pa=hwpt.ioas.iopt.dma(iova, length, write, domain=hwpt.domain))
    except OSError as exc:
        reason = {E.ENOENT: "unmapped", E.EPERM: "permission"}.get(exc.errno or 0, "invalid")
        return DmaResult(False, fault=reason)


#: Size of struct iommu_hw_info_vtd {u32 flags, u32 __reserved, u64 cap_reg, u64 ecap_reg}.
VTD_INFO_LEN = 24


def _vtd_info(dev: HostDevice) -> bytes:
    """Modelled VT-d capability registers: SAGAW from the aperture, PASID
    and second-level dirty support (SSADS) from the device's IOMMU."""
    cap = (1 << 10 if dev.aperture_bits >= 57 else 1 << 9 if dev.aperture_bits >= 48 else 1 << 8)
    cap |= (dev.aperture_bits - 1) << 16  # MGAW
    ecap = (1 << 40) if dev.max_pasid_log2 else 0
    if dev.dirty_tracking:
        ecap |= 1 << 50
    return (0).to_bytes(8, "little") + cap.to_bytes(8, "little") + ecap.to_bytes(8, "little")


def _hw_info(ctx: IommufdContext, req: pb.GetHwInfoRequest) -> pb.GetHwInfoResponse:
    """IOMMU_GET_HW_INFO (iommufd_get_hw_info): driver data truncated to the
    caller's buffer and zero-filled to its length; data_len reports the
    driver's full length. The mock IOMMU answers as mock_domain_hw_info:
    type IOMMU_HW_INFO_TYPE_SELFTEST, {u32 flags, u32 test_reg}, and
    capabilities DIRTY_TRACKING (unless the device has none) and
    PCI_ATS_NOT_SUPPORTED (mock_domain_capable)."""
    flags, in_data_type, data_len = req.flags, req.in_data_type, req.data_len
    if flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE or req.reserved:
        raise IommuError(E.EOPNOTSUPP, f"Unknown GET_HW_INFO flag bits or reserved field "
                         f"({flags:#x}, {req.reserved:#x}).")
    if not flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE:
        in_data_type = IOMMU_HW_INFO_TYPE_DEFAULT
    obj = ctx.get(req.dev_id, DeviceObj, "device")
    dev = obj.host_dev
    own_type = IOMMU_HW_INFO_TYPE_SELFTEST if dev.is_mock else IOMMU_HW_INFO_TYPE_INTEL_VTD
    if in_data_type not in (IOMMU_HW_INFO_TYPE_DEFAULT, own_type):
        raise IommuError(E.EOPNOTSUPP, f"The IOMMU of {dev.name} reports no hw_info "
                         f"of type {in_data_type:#x}.", dev_id=req.dev_id)
    if data_len > 1 << 16:
        raise IommuError(E.EINVAL, f"data_len {data_len:#x} is larger than any driver's data.")
    if dev.is_mock:
        data = (0).to_bytes(4, "little") + IOMMU_HW_INFO_SELFTEST_REGVAL.to_bytes(4, "little")
        caps = (IOMMU_HW_CAP_DIRTY_TRACKING if dev.dirty_tracking else 0) | (
            IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED)
    else:
        data = _vtd_info(dev)
        caps = (IOMMU_HW_CAP_DIRTY_TRACKING if dev.dirty_tracking else 0) | (
            IOMMU_HW_CAP_PCI_PASID_EXEC if dev.max_pasid_log2 else 0)
    return pb.GetHwInfoResponse(data=data[:data_len].ljust(data_len, b"\0"), data_len=len(data),
                                out_data_type=own_type, out_max_pasid_log2=dev.max_pasid_log2,
                                out_capabilities=caps)


# -- the in-kernel API by dev_id (device.c) ----------------------------------------------------

def _pt_object(obj: DeviceObj, pt_id: int) -> Hwpt | Ioas:
    """iommufd_device_change_pt's lookup: ENOENT for a missing id, EINVAL
    for an object that is neither an IOAS nor a HWPT."""
    pt = obj.ctx.lookup(pt_id)
    if pt is None:
        raise IommuError(E.ENOENT, f"No object with id {pt_id} exists in this context.",
                         pt_id=pt_id)
    if not isinstance(pt, (HwptPaging, HwptNested, Ioas)):
        raise IommuError(E.EINVAL, f"Object {pt_id} is neither an IOAS nor a HWPT.", pt_id=pt_id)
    return pt


def kapi_attach(obj: DeviceObj, pasid: int | None, pt_id: int, stage: int) -> int:
    """iommufd_device_attach: a RID or PASID already attached is EBUSY (its
    xa_insert comes before any other check); returns the HWPT id."""
    _pt_object(obj, pt_id)
    if pasid in obj.attached:
        what = "RID" if pasid is None else f"PASID {pasid:#x}"
        raise IommuError(E.EBUSY, f"The {what} of {obj.host_dev.name} is already attached; "
                         f"replace it instead.", dev_id=obj.id, pt_id=pt_id)
    return attach_obj(obj, pt_id, pasid, stage)


def kapi_replace(obj: DeviceObj, pasid: int | None, pt_id: int, stage: int) -> int:
    """iommufd_device_replace: EINVAL unless attached; on failure the old
    attachment stays; returns the HWPT id."""
    _pt_object(obj, pt_id)
    if pasid not in obj.attached:
        what = "RID" if pasid is None else f"PASID {pasid:#x}"
        raise IommuError(E.EINVAL, f"The {what} of {obj.host_dev.name} is not attached, so "
                         f"there is nothing to replace.", dev_id=obj.id, pt_id=pt_id)
    return attach_obj(obj, pt_id, pasid, stage)


def _pasid_arg(pasid: int | None) -> int | None:
    """An unset or zero PASID is the RID (IOMMU_NO_PASID)."""
    return pasid or None


def _device_by_id(call: Call, dev_id: int) -> DeviceObj:
    return call.ctx.get(dev_id, DeviceObj, "device")


def iommufd_device_attach(call: Call, req: pb.IommufdDeviceAttachRequest
                          ) -> pb.IommufdDeviceAttachResponse:
    obj = _device_by_id(call, req.dev_id)
    pasid = _pasid_arg(req.pasid if req.HasField("pasid") else None)
    return pb.IommufdDeviceAttachResponse(pt_id=kapi_attach(obj, pasid, req.pt_id,
                                                            call.rt.config.group_stage))


def iommufd_device_replace(call: Call, req: pb.IommufdDeviceReplaceRequest
                           ) -> pb.IommufdDeviceReplaceResponse:
    obj = _device_by_id(call, req.dev_id)
    pasid = _pasid_arg(req.pasid if req.HasField("pasid") else None)
    return pb.IommufdDeviceReplaceResponse(pt_id=kapi_replace(obj, pasid, req.pt_id,
                                                              call.rt.config.group_stage))


def iommufd_device_detach(call: Call, req: pb.IommufdDeviceDetachRequest
                          ) -> pb.IommufdDeviceDetachResponse:
    obj = _device_by_id(call, req.dev_id)
    detach_obj(obj, _pasid_arg(req.pasid if req.HasField("pasid") else None))
    return pb.IommufdDeviceDetachResponse()


async def iommufd_device_dma(call: Call, req: pb.IommufdDeviceDmaRequest
                             ) -> pb.IommufdDeviceDmaResponse:
    obj = _device_by_id(call, req.dev_id)
    resp = pb.IommufdDeviceDmaResponse()
    await _dma_accesses(obj, req.pasid if req.HasField("pasid") else None, req.accesses, resp,
                        call.replaying)
    return resp


# -- handlers (device_cdev.c, device.c) ------------------------------------------------------

def open_device(call: Call, req: pb.OpenDeviceRequest) -> pb.OpenDeviceResponse:
    """open("/dev/vfio/devices/vfioN") for the host device `name`."""
    sess = call.sess
    sess.check_fd_room()
    return pb.OpenDeviceResponse(device_fd=sess.install(open_cdev(call.rt.host, req.name)))


def close_device(call: Call, req: pb.CloseDeviceRequest) -> pb.CloseDeviceResponse:
    call.sess.close_fd(req.device_fd)
    return pb.CloseDeviceResponse()


def device_get_info(call: Call, req: pb.DeviceGetInfoRequest) -> pb.DeviceGetInfoResponse:
    devfd = call.device
    resp = pb.DeviceGetInfoResponse(device=host_device_pb(call.rt.host, devfd.host_dev.name),
                                    bound=devfd.bound is not None)
    if devfd.bound is not None:
        resp.dev_id = devfd.bound.id
        for pasid, hwpt in devfd.bound.attached.items():
            if pasid is None:
                resp.rid_hwpt_id = hwpt.id
            else:
                resp.pasid_hwpt_ids[pasid] = hwpt.id
    return resp


def _bind(call: Call, devfd: DeviceFd, iommufd: int, flags: int, cookie: int) -> int:
    bind_check(devfd, flags, iommufd)  # device-side checks come before the fd's
    ctx = call.sess.iommufd_arg(iommufd)
    return bind(devfd, ctx, cookie, call.rt.config.group_stage)


def device_bind_iommufd(call: Call, req: pb.DeviceBindIommufdRequest
                        ) -> pb.DeviceBindIommufdResponse:
    """VFIO_DEVICE_BIND_IOMMUFD (vfio_df_ioctl_bind_iommufd)."""
    return pb.DeviceBindIommufdResponse(out_devid=_bind(call, call.device, req.iommufd,
                                                        req.flags, req.cookie))


def iommufd_bind_device(call: Call, req: pb.IommufdBindDeviceRequest
                        ) -> pb.IommufdBindDeviceResponse:
    """The kAPI's iommufd_device_bind, addressed by iommufd and device fd."""
    devfd = call.sess.device_fd(req.device_fd)
    return pb.IommufdBindDeviceResponse(dev_id=_bind(call, devfd, req.iommufd, 0, req.cookie))


def device_attach_iommufd_pt(call: Call, req: pb.DeviceAttachIommufdPtRequest
                             ) -> pb.DeviceAttachIommufdPtResponse:
    """VFIO_DEVICE_ATTACH_IOMMUFD_PT (vfio_df_ioctl_attach_pt)."""
    return pb.DeviceAttachIommufdPtResponse(pt_id=attach(
        call.device, req.flags, req.pt_id, req.pasid, call.rt.config.group_stage))


def device_detach_iommufd_pt(call: Call, req: pb.DeviceDetachIommufdPtRequest
                             ) -> pb.DeviceDetachIommufdPtResponse:
    """VFIO_DEVICE_DETACH_IOMMUFD_PT (vfio_df_ioctl_detach_pt)."""
    detach_request(call.device, req.flags, req.pasid)
    return pb.DeviceDetachIommufdPtResponse()


_FAULT_REASONS = {"blocked": pb.DMA_FAULT_REASON_BLOCKED, "unmapped": pb.DMA_FAULT_REASON_UNMAPPED,
                  "permission": pb.DMA_FAULT_REASON_PERMISSION}


#: DMA accesses handled between two yields of the event loop.
DMA_CHUNK = 128


async def _dma_accesses(obj: DeviceObj, pasid: int | None, accesses: Sequence[pb.DmaAccess],
                        resp: pb.DeviceDmaResponse | pb.IommufdDeviceDmaResponse,
                        replaying: bool = False) -> None:
    """Each access in turn, its result added to `resp` as it comes, yielding
    to the event loop every DMA_CHUNK: a device's accesses are independent,
    so others may run between them, and no step builds more than a chunk of
    the reply. An access that finds no mapping or no permission through a
    fault-capable HWPT also asks for the page (fault.page_request), except
    on replay: page requests are not durable."""
    for index, access in enumerate(accesses):
        if index and not index % DMA_CHUNK:
            await asyncio.sleep(0)
        result = dma(obj, pasid, access.iova, access.length, access.write)
        reason = _FAULT_REASONS.get(result.fault, pb.DMA_FAULT_REASON_UNSPECIFIED)
        resp.results.add(ok=result.ok, pa=result.pa, fault=reason)
        if not result.ok:
            record = resp.faults.add(dev_id=obj.id, cookie=obj.cookie, iova=access.iova,
                                     write=access.write, reason=reason)
            if pasid is not None:
                record.pasid = pasid
            if result.fault in ("unmapped", "permission") and not replaying:
                record.page_request = fault.page_request(obj, pasid, access.iova,
                                                         access.write)


async def device_dma(call: Call, req: pb.DeviceDmaRequest) -> pb.DeviceDmaResponse:
    """DMA issued by the device: translated, permission checked and
    dirty-tracked; faults are results, not call errors."""
    obj = call.device.require_bound("Device DMA")
    resp = pb.DeviceDmaResponse()
    await _dma_accesses(obj, req.pasid if req.HasField("pasid") else None, req.accesses, resp,
                        call.replaying)
    return resp


def get_hw_info(call: Call, req: pb.GetHwInfoRequest) -> pb.GetHwInfoResponse:
    return _hw_info(call.ctx, req)
