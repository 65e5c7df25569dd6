"""The kernel's selftest mock driver and its test operations
(drivers/iommu/iommufd/selftest.c, CONFIG_IOMMUFD_TEST), behind the debug
setting `debug_selftest`; without it every operation here is ENOTTY, as a
kernel built without the test driver has no IOMMU_TEST_CMD.

Objects:
- A mock device (IOMMUFD_OBJ_SELFTEST, its "stdev" id) is a host device
  behind the mock IOMMU (topology.mock_device), in a group of its own, bound
  to the context as a DEVICE without holding the context open: closing the
  iommufd tears it down, and so does IOMMU_DESTROY of the stdev
  (iommufd_selftest_destroy).
- An access (IOMMUFD_OBJ_ACCESS) is an emulated device's window on an IOAS
  (iommufd_access_create/attach): an fd of the session, an object of the
  context that DESTROY cannot remove (its fd holds it), pinned page ranges
  ("items") that an unmap of their area drops (the test access's unmap
  callback), and reads and writes answered as copy plans, since IOVA memory
  is the caller's own user memory.

Pins (for MD_CHECK_REFS): the kernel pins each page once per iopt_pages, for
as long as any domain or access needs it. The model counts, per user page,
the areas covering it in IOASes that have a domain or an access pin on that
area; an IOAS_COPY of an area counts as a second pin (the kernel shares the
pages), which no selftest observes.
"""
from __future__ import annotations

import errno as E
import itertools
from typing import TYPE_CHECKING, Any, cast

from iommud import files
from iommud.device import DeviceObj, bind_obj, detach_obj, kapi_attach, kapi_replace, unbind_obj
from iommud.errors import IommuError
from iommud.hw_pagetable import HwptNested, HwptPaging, new_resv_owner
from iommud.ioas import Ioas, IoasAccess
from iommud.objects import IommufdObject, ObjType
from iommud.topology import mock_device
from iommud.viommu import mock_vevent
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_IOAS_MAP_READABLE,
    IOMMU_IOAS_MAP_WRITEABLE,
    IOMMU_VEVENTQ_TYPE_SELFTEST,
    MOCK_ACCESS_RW_SLOW_PATH,
    MOCK_ACCESS_RW_WRITE,
    MOCK_DEV_CACHE_ID_MAX,
    MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
    MOCK_FLAGS_ACCESS_SYZ,
    MOCK_FLAGS_ACCESS_WRITE,
    MOCK_FLAGS_DEVICE_NO_DIRTY,
    MOCK_FLAGS_DEVICE_PASID,
    MOCK_NESTED_DOMAIN_IOTLB_ID_MAX,
    PAGE_SIZE,
    U64_MAX,
)

if TYPE_CHECKING:
    from iommud.call import Call
    from iommud.context import IommufdContext
    from iommud.host import Host
    from iommud.topology import Device as HostDevice

#: Mock devices live in groups of their own above every topology's.
MOCK_GROUP_BASE = 0x4000_0000
#: The most one ACCESS_PAGES or ACCESS_RW may move (iommufd_test_access_*).
ACCESS_MAX_LENGTH = 16 << 20
_mock_names = itertools.count()


def mock_name_next() -> int:
    global _mock_names
    value = next(_mock_names)
    _mock_names = itertools.count(value)
    return value


def mock_name_continue(value: int) -> None:
    global _mock_names
    _mock_names = itertools.count(max(value, mock_name_next()))


# -- mock devices -------------------------------------------------------------------------

class MockDevice(IommufdObject):
    """IOMMUFD_OBJ_SELFTEST: a mock device and its binding."""

    type = ObjType.SELFTEST

    def __init__(self, obj_id: int, host: Host, host_dev: HostDevice, idev: DeviceObj) -> None:
        super().__init__(obj_id)
        self.host = host
        self.host_dev = host_dev
        self.idev: DeviceObj | None = idev

    def describe(self, info: Any) -> None:
        info.device = self.host_dev.name

    def destroy(self) -> None:
        """iommufd_selftest_destroy: detach, unbind (the DEVICE goes), unplug."""
        if self.idev is not None:
            unbind_obj(self.idev)
            self.idev = None
        self.host.hot_remove(self.host_dev.name)


def _free_group(host: Host) -> int:
    group = MOCK_GROUP_BASE
    while group in host.groups:
        group += 1
    return group


def _stdev(call: Call, stdev_id: int) -> MockDevice:
    """The mock device `stdev_id`; a stale or wrong id is ENOENT."""
    obj = call.ctx.lookup_type(stdev_id, ObjType.SELFTEST, "mock device")
    stdev = cast("MockDevice", obj)
    if stdev.idev is None:
        raise IommuError(E.ENOENT, f"Mock device {stdev_id} is gone.", id=stdev_id)
    return stdev


def test_mock_domain(call: Call, req: pb.TestMockDomainRequest) -> pb.TestMockDomainResponse:
    """IOMMU_TEST_OP_MOCK_DOMAIN(_FLAGS) (iommufd_test_mock_domain): the
    stdev id first, then the bind's DEVICE id, then an automatic HWPT's;
    every step is undone when a later one fails."""
    ctx, host = call.ctx, call.rt.host
    dev_flags = req.dev_flags if req.HasField("dev_flags") else 0
    stdev_id = ctx.new_id()
    try:
        if dev_flags & ~(MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_PASID):
            raise IommuError(E.EINVAL, f"Unknown mock device flags {dev_flags:#x}.",
                             flags=dev_flags)
        host_dev = mock_device(f"mock{next(_mock_names)}", _free_group(host),
                               pasid=bool(dev_flags & MOCK_FLAGS_DEVICE_PASID),
                               dirty=not dev_flags & MOCK_FLAGS_DEVICE_NO_DIRTY, driver=None)
        host.hot_add(host_dev)
        try:
            idev = bind_obj(host, host_dev, ctx, cookie=0, hold_ctx=False)
            try:
                hwpt_id = kapi_attach(idev, None, req.pt_id, call.rt.config.group_stage)
            except BaseException:
                unbind_obj(idev)
                raise
        except BaseException:
            host.hot_remove(host_dev.name)
            raise
    except BaseException:
        ctx.abort_id(stdev_id)
        raise
    ctx.insert(MockDevice(stdev_id, host, host_dev, idev))
    return pb.TestMockDomainResponse(out_stdev_id=stdev_id, out_hwpt_id=hwpt_id,
                                     out_idev_id=idev.id)


def test_mock_domain_replace(call: Call, req: pb.TestMockDomainReplaceRequest
                             ) -> pb.TestMockDomainReplaceResponse:
    """IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: iommufd_device_replace of the RID."""
    idev = cast("DeviceObj", _stdev(call, req.stdev_id).idev)
    return pb.TestMockDomainReplaceResponse(pt_id=kapi_replace(
        idev, None, req.pt_id, call.rt.config.group_stage))


def test_pasid_attach(call: Call, req: pb.TestPasidAttachRequest) -> pb.TestPasidAttachResponse:
    idev = cast("DeviceObj", _stdev(call, req.stdev_id).idev)
    return pb.TestPasidAttachResponse(pt_id=kapi_attach(
        idev, req.pasid or None, req.pt_id, call.rt.config.group_stage))


def test_pasid_replace(call: Call, req: pb.TestPasidReplaceRequest
                       ) -> pb.TestPasidReplaceResponse:
    idev = cast("DeviceObj", _stdev(call, req.stdev_id).idev)
    return pb.TestPasidReplaceResponse(pt_id=kapi_replace(
        idev, req.pasid or None, req.pt_id, call.rt.config.group_stage))


def test_pasid_detach(call: Call, req: pb.TestPasidDetachRequest) -> pb.TestPasidDetachResponse:
    """IOMMU_TEST_OP_PASID_DETACH: always succeeds once the stdev exists."""
    idev = cast("DeviceObj", _stdev(call, req.stdev_id).idev)
    detach_obj(idev, req.pasid or None)
    if req.pasid:
        idev.pasid_quirk_armed = False  # a blocking set disarms the quirk
    return pb.TestPasidDetachResponse()


def test_pasid_check_hwpt(call: Call, req: pb.TestPasidCheckHwptRequest
                          ) -> pb.TestPasidCheckHwptResponse:
    """IOMMU_TEST_OP_PASID_CHECK_HWPT (iommufd_test_pasid_check_hwpt)."""
    idev = cast("DeviceObj", _stdev(call, req.stdev_id).idev)
    attached = idev.attached.get(req.pasid or None)
    if req.hwpt_id == 0:
        if attached is not None:
            raise IommuError(E.EINVAL, f"PASID {req.pasid:#x} is attached to HWPT "
                             f"{attached.id}.", pasid=req.pasid)
        return pb.TestPasidCheckHwptResponse()
    obj = call.ctx.lookup(req.hwpt_id)
    if obj is None:
        raise IommuError(E.ENOENT, f"No object with id {req.hwpt_id} exists in this context.",
                         hwpt_id=req.hwpt_id)
    if not isinstance(obj, (HwptPaging, HwptNested)):   # iommufd_get_hwpt
        raise IommuError(E.EINVAL, f"Object {req.hwpt_id} is not a HWPT.", hwpt_id=req.hwpt_id)
    if attached is not obj:
        raise IommuError(E.EINVAL, f"PASID {req.pasid:#x} is not attached to HWPT "
                         f"{req.hwpt_id}.", pasid=req.pasid, hwpt_id=req.hwpt_id)
    return pb.TestPasidCheckHwptResponse()


def test_dev_check_cache(call: Call, req: pb.TestDevCheckCacheRequest
                        ) -> pb.TestDevCheckCacheResponse:
    """IOMMU_TEST_OP_DEV_CHECK_CACHE (iommufd_test_dev_check_cache): the DEVICE
    lookup (ENOENT), then slot `cache_id` must exist and hold `cache` (EINVAL).
    mock_dev_create fills every slot with IOMMU_TEST_DEV_CACHE_DEFAULT; a
    vIOMMU's cache invalidation clears them (mock_viommu_cache_invalidate).
    A DEVICE that is no mock device is EINVAL here (the kernel reads its
    cache without looking)."""
    idev = call.ctx.get(req.dev_id, DeviceObj, "device")
    if idev.host_dev.iommu != "mock":
        raise IommuError(E.EINVAL, f"Device {req.dev_id} is not a mock device.",
                         dev_id=req.dev_id)
    if req.cache_id > MOCK_DEV_CACHE_ID_MAX or idev.cache[req.cache_id] != req.cache:
        raise IommuError(E.EINVAL, f"Cache slot {req.cache_id} of device {req.dev_id} does "
                         f"not hold {req.cache:#x}.", dev_id=req.dev_id, cache_id=req.cache_id)
    return pb.TestDevCheckCacheResponse()


def test_md_check_iotlb(call: Call, req: pb.TestMdCheckIotlbRequest
                        ) -> pb.TestMdCheckIotlbResponse:
    """IOMMU_TEST_OP_MD_CHECK_IOTLB (iommufd_test_md_check_iotlb): a nested
    HWPT (ENOENT) of the mock IOMMU (EINVAL, get_md_pagetable_nested) whose
    slot `iotlb_id` exists and holds `iotlb` (EINVAL)."""
    hwpt = call.ctx.get(req.hwpt_id, HwptNested, "nested HWPT")
    if hwpt.iommu != "mock":
        raise IommuError(E.EINVAL, f"HWPT {req.hwpt_id} is not a mock nested domain.",
                         hwpt_id=req.hwpt_id)
    if req.iotlb_id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX or hwpt.iotlb[req.iotlb_id] != req.iotlb:
        raise IommuError(E.EINVAL, f"IOTLB slot {req.iotlb_id} of HWPT {req.hwpt_id} does not "
                         f"hold {req.iotlb:#x}.", hwpt_id=req.hwpt_id, iotlb_id=req.iotlb_id)
    return pb.TestMdCheckIotlbResponse()


def test_trigger_vevent(call: Call, req: pb.TestTriggerVeventRequest
                        ) -> pb.TestTriggerVeventResponse:
    """IOMMU_TEST_OP_TRIGGER_VEVENT (iommufd_test_trigger_vevent): the DEVICE
    (ENOENT), attached through a vIOMMU's nested HWPT with a virtual id
    (ENOENT), reports {u32 virt_id} to the vIOMMU's selftest-type vEVENTQ
    (EOPNOTSUPP without one; a full queue loses it and still succeeds)."""
    idev = call.ctx.get(req.dev_id, DeviceObj, "device")
    viommu, data = mock_vevent(idev)
    viommu.report_event(IOMMU_VEVENTQ_TYPE_SELFTEST, data)
    return pb.TestTriggerVeventResponse()


# -- IOAS and domain checks ---------------------------------------------------------------

def _range_last(start: int, length: int) -> int:
    if length == 0:
        raise IommuError(E.EINVAL, "The length is zero.")
    last = start + length - 1
    if last > U64_MAX:
        raise IommuError(E.EOVERFLOW, f"{start:#x} + {length:#x} wraps past 2^64.")
    return last


def test_add_reserved(call: Call, req: pb.TestAddReservedRequest) -> pb.TestAddReservedResponse:
    """IOMMU_TEST_OP_ADD_RESERVED (iommufd_test_add_reserved, iopt_reserve_iova)."""
    last = _range_last(req.start, req.length)
    ioas = call.ctx.get(req.ioas_id, Ioas, "IOAS")
    ioas.iopt.add_reserved(req.start, last, new_resv_owner())  # EADDRINUSE over an area
    return pb.TestAddReservedResponse()


def _mock_hwpt(call: Call, hwpt_id: int) -> HwptPaging:
    """get_md_pagetable: a paging HWPT (ENOENT) of the mock IOMMU (EINVAL)."""
    hwpt = call.ctx.get(hwpt_id, HwptPaging, "paging HWPT")
    if hwpt.iommu != "mock":
        raise IommuError(E.EINVAL, f"HWPT {hwpt_id} is not a mock IOMMU domain.",
                         hwpt_id=hwpt_id)
    return hwpt


def test_md_check_map(call: Call, req: pb.TestMdCheckMapRequest) -> pb.TestMdCheckMapResponse:
    """IOMMU_TEST_OP_MD_CHECK_MAP (iommufd_test_md_check_pa): the HWPT's own
    IO page table maps the range to the pages at `user_va` (GUP of them: a
    hole is EFAULT); EINVAL where it does not. A page of a shared file
    mapping matches by the file's PA or by its user address (files.py)."""
    hwpt = _mock_hwpt(call, req.hwpt_id)
    if files.revoked_in(hwpt.ioas, req.iova, req.length):
        raise IommuError(E.EINVAL, f"A revoked dma-buf's pages are no longer mapped at "
                         f"{req.iova:#x} (+{req.length:#x}).", iova=req.iova)
    backing = req.backing if req.HasField("backing") else None
    for offset, length, pa in files.user_pages(req.user_va, req.length, backing):
        if pa is None:
            raise IommuError(E.EFAULT, f"Nothing is mapped at {req.user_va + offset:#x}.",
                             user_va=req.user_va + offset)
        try:
            hwpt.domain.check_map(req.iova + offset, length, pa)
        except OSError as exc:
            if exc.errno != E.EINVAL or pa == req.user_va + offset:
                raise
            hwpt.domain.check_map(req.iova + offset, length, req.user_va + offset)
    return pb.TestMdCheckMapResponse()


def test_dirty(call: Call, req: pb.TestDirtyRequest) -> pb.TestDirtyResponse:
    """IOMMU_TEST_OP_DIRTY (iommufd_test_dirty): the argument checks run in
    the domain before the HWPT lookup in the kernel; an empty bitmap is the
    kernel's NULL uptr (EINVAL)."""
    if not req.page_size or not req.length or req.iova % req.page_size \
            or req.length % req.page_size or not req.bitmap:
        raise IommuError(E.EINVAL, f"DIRTY needs a non-zero page_size dividing iova "
                         f"{req.iova:#x} and length {req.length:#x}, and a bitmap.")
    hwpt = _mock_hwpt(call, req.hwpt_id)
    return pb.TestDirtyResponse(out_nr_dirty=hwpt.domain.mark_dirty(
        req.iova, req.length, req.page_size, req.bitmap))


def _pinned_ranges(call: Call) -> list[tuple[int, int]]:
    """[user_va, user_va+length) of every pinned area of the session."""
    out = []
    for _fd, ctx in call.sess.contexts():
        for obj in ctx.objects():
            if not isinstance(obj, Ioas):
                continue
            pinned_by_access = [a for a in obj.accesses if a.items]
            if not obj.domains and not pinned_by_access:
                continue
            for iova, length, user_va, _prot in obj.iopt.areas():
                if obj.domains or any(a.pins(iova, iova + length - 1)
                                      for a in pinned_by_access):
                    out.append((user_va, user_va + length))
    return out


def test_md_check_refs(call: Call, req: pb.TestMdCheckRefsRequest) -> pb.TestMdCheckRefsResponse:
    """IOMMU_TEST_OP_MD_CHECK_REFS (iommufd_test_md_check_refs): EIO unless
    every page of the range is pinned exactly `refs` times."""
    if req.user_va % PAGE_SIZE or req.length % PAGE_SIZE:
        raise IommuError(E.EINVAL, f"user_va {req.user_va:#x} and length {req.length:#x} must "
                         f"be page aligned.")
    if req.user_va + req.length - 1 > U64_MAX:
        raise IommuError(E.EINVAL, f"{req.user_va:#x} + {req.length:#x} wraps past 2^64.")
    pinned = _pinned_ranges(call)
    backing = req.backing if req.HasField("backing") else None
    for offset, length, pa in files.user_pages(req.user_va, req.length, backing):
        if pa is None:
            raise IommuError(E.EFAULT, f"Nothing is mapped at {req.user_va + offset:#x}.",
                             user_va=req.user_va + offset)
        _check_refs(pinned, pa, length, req.refs, req.user_va + offset)
    return pb.TestMdCheckRefsResponse()


def _check_refs(pinned: list[tuple[int, int]], pa: int, length: int, refs: int,
                user_va: int) -> None:
    start, end = pa, pa + length
    # Sweep the pinned ranges clipped to [start, end): the count must be
    # `refs` everywhere, including where no range covers a page.
    events: dict[int, int] = {start: 0}
    for lo, hi in pinned:
        lo, hi = max(lo, start), min(hi, end)
        if lo < hi:
            lo -= lo % PAGE_SIZE
            hi += -hi % PAGE_SIZE
            events[lo] = events.get(lo, 0) + 1
            events[hi] = events.get(hi, 0) - 1
    count = 0
    for at in sorted(events):
        if at >= end:
            break
        count += events[at]
        if count != refs:
            page = user_va + max(at, start) - start
            raise IommuError(E.EIO, f"The page at {page:#x} has {count} pins, not {refs}.",
                             user_va=page)


def test_set_temp_memory_limit(call: Call, req: pb.TestSetTempMemoryLimitRequest
                               ) -> pb.TestSetTempMemoryLimitResponse:
    """IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT: the model has no batch memory to
    shrink; the kernel's floor still applies."""
    if req.limit < 12:
        raise IommuError(E.EINVAL, f"The memory limit {req.limit} is below 12.")
    return pb.TestSetTempMemoryLimitResponse()


# -- accesses -----------------------------------------------------------------------------

class Access(IoasAccess):
    """IOMMUFD_OBJ_ACCESS: an emulated device's access to one IOAS."""

    def __init__(self, obj_id: int, ctx: IommufdContext, needs_pin: bool) -> None:
        super().__init__(obj_id)
        self.ctx = ctx
        self.needs_pin = needs_pin
        self._next_item = 0

    @property
    def iova_alignment(self) -> int:
        """An access that pins pages needs PAGE_SIZE-aligned IOVAs (iopt_add_access)."""
        return PAGE_SIZE if self.needs_pin else 1

    def unmap_notify(self, first: int, last: int) -> None:
        """The test access's unmap callback: drop every item in the range."""
        for item, (lo, hi) in list(self.items.items()):
            if lo <= last and first <= hi:
                del self.items[item]

    def add_item(self, iova: int, last: int) -> int:
        item = self._next_item
        self._next_item += 1
        self.items[item] = (iova, last)
        return item


class AccessFd:
    """The access's fd ("[iommufd_test_staccess]"); closing it destroys the access."""

    kind = "access"

    def __init__(self, access: Access) -> None:
        self.access = access

    def release(self) -> int:
        access = self.access
        access.detach()
        access.users -= 1
        ctx = access.ctx
        ctx.remove_held(access)
        ctx.holders -= 1
        ctx.maybe_release()
        return 1


def test_create_access(call: Call, req: pb.TestCreateAccessRequest
                       ) -> pb.TestCreateAccessResponse:
    """IOMMU_TEST_OP_CREATE_ACCESS (iommufd_test_create_access): the fd, the
    ACCESS object (an object id, a hold on the context), then the attach."""
    ctx, sess = call.ctx, call.sess
    if req.flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES:
        raise IommuError(E.EOPNOTSUPP, f"Unknown CREATE_ACCESS flags {req.flags:#x}.",
                         flags=req.flags)
    sess.check_fd_room()
    obj_id = ctx.new_id()
    access = Access(obj_id, ctx, bool(req.flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES))
    try:
        access.attach(ctx.get(req.ioas_id, Ioas, "IOAS"))
    except BaseException:
        ctx.abort_id(obj_id)
        raise
    access.users = 1  # the fd holds it: DESTROY is EBUSY while it is open
    ctx.insert(access)
    ctx.holders += 1
    return pb.TestCreateAccessResponse(out_access_fd=sess.install(AccessFd(access)))


def _access(call: Call, access_fd: int) -> Access:
    """iommufd_access_get: an fd that is not an open test access is EBADFD."""
    try:
        entry = call.sess.fd_entry(access_fd)
    except IommuError:
        entry = None
    if not isinstance(entry, AccessFd):
        raise IommuError(E.EBADFD, f"fd {access_fd} is not a test access fd.",
                         access_fd=access_fd)
    return entry.access


def _walk(access: Access, iova: int, length: int, write: bool, read: bool
          ) -> list[tuple[int, int, int]]:
    """The areas behind [iova, iova+length) as (iova, user_va, length)
    pieces, for iommufd_access_pin_pages / iommufd_access_rw: a detached
    access is ENOENT, a hole ENOENT, a missing permission EPERM."""
    if length == 0:
        raise IommuError(E.EINVAL, "The length is zero.")
    last = iova + length - 1
    if last > U64_MAX:
        raise IommuError(E.EOVERFLOW, f"{iova:#x} + {length:#x} wraps past 2^64.")
    if access.ioas is None:
        raise IommuError(E.ENOENT, "The access is not attached to an IOAS.")
    iopt = access.ioas.iopt
    pieces = []
    at = iova
    while at <= last:
        area = iopt.area_from(at)
        if area is None or area[0] > at:
            raise IommuError(E.ENOENT, f"Nothing is mapped at {at:#x}.", iova=at)
        a_iova, a_len, a_va, a_prot = area
        if (write and not a_prot & IOMMU_IOAS_MAP_WRITEABLE) or \
                (read and not a_prot & IOMMU_IOAS_MAP_READABLE):
            raise IommuError(E.EPERM, f"The area at {a_iova:#x} does not allow this access.",
                             iova=a_iova)
        if files.dmabuf_at(access.ioas, a_iova):  # iopt_area_add_access, iopt_pages_rw_access
            raise IommuError(E.EINVAL, f"The area at {a_iova:#x} is a dma-buf's; an access "
                             f"cannot pin or copy it.", iova=a_iova)
        end = min(last, a_iova + a_len - 1)
        pieces.append((at, a_va + (at - a_iova), end - at + 1))
        if end == U64_MAX:
            break
        at = end + 1
    return pieces


def _syz_iova(access: Access, flags: int, iova: int) -> int:
    """With MOCK_FLAGS_ACCESS_SYZ the IOVA is {u32 nth_area, u32 offset}: the
    offset from the start of the access's IOAS's nth area, or 0 when there is
    no such area or no IOAS (iommufd_test_syz_conv_iova)."""
    if not flags & MOCK_FLAGS_ACCESS_SYZ:
        return iova
    if access.ioas is None:
        return 0
    nth, offset = iova & 0xFFFF_FFFF, iova >> 32
    areas = access.ioas.iopt.areas()
    return areas[nth][0] + offset if nth < len(areas) else 0


def test_access_pages(call: Call, req: pb.TestAccessPagesRequest) -> pb.TestAccessPagesResponse:
    """IOMMU_TEST_OP_ACCESS_PAGES (iommufd_test_access_pages)."""
    if req.length > ACCESS_MAX_LENGTH:
        raise IommuError(E.ENOMEM, f"An access of {req.length:#x} bytes is above the test's "
                         f"{ACCESS_MAX_LENGTH:#x}.")
    if req.flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ):
        raise IommuError(E.EOPNOTSUPP, f"Unknown ACCESS_PAGES flags {req.flags:#x}.",
                         flags=req.flags)
    access = _access(call, req.access_fd)
    if not access.needs_pin:
        raise IommuError(E.EOPNOTSUPP, "This access was created without pin operations.")
    start = _syz_iova(access, req.flags, req.iova)
    write = bool(req.flags & MOCK_FLAGS_ACCESS_WRITE)
    pieces = _walk(access, start, req.length, write=write, read=not write)
    if req.user_va:
        backing = req.backing if req.HasField("backing") else None
        user = files.user_pages(req.user_va, req.length, backing)
        for iova, pa, n in pieces:
            if not files.pa_matches(user, req.user_va, iova - start, n, pa):
                raise IommuError(E.EBADE, f"The pages at {iova:#x} are not the user pages at "
                                 f"{req.user_va + (iova - start):#x}.", iova=iova)
    item = access.add_item(start, start + req.length - 1)
    return pb.TestAccessPagesResponse(out_access_pages_id=item)


def test_destroy_access_pages(call: Call, req: pb.TestDestroyAccessPagesRequest
                              ) -> pb.TestDestroyAccessPagesResponse:
    """IOMMU_TEST_OP_DESTROY_ACCESS_PAGES: ENOENT for an unknown (or already
    auto-unpinned) item."""
    access = _access(call, req.access_fd)
    if access.items.pop(req.access_pages_id, None) is None:
        raise IommuError(E.ENOENT, f"The access has no pinned item {req.access_pages_id}.",
                         id=req.access_pages_id)
    return pb.TestDestroyAccessPagesResponse()


def test_access_rw(call: Call, req: pb.TestAccessRwRequest) -> pb.TestAccessRwResponse:
    """IOMMU_TEST_OP_ACCESS_RW (iommufd_test_access_rw): the copy plan."""
    if req.length > ACCESS_MAX_LENGTH:
        raise IommuError(E.ENOMEM, f"An access of {req.length:#x} bytes is above the test's "
                         f"{ACCESS_MAX_LENGTH:#x}.")
    if req.flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ):
        raise IommuError(E.EOPNOTSUPP, f"Unknown ACCESS_RW flags {req.flags:#x}.",
                         flags=req.flags)
    access = _access(call, req.access_fd)
    start = _syz_iova(access, req.flags, req.iova)
    write = bool(req.flags & MOCK_ACCESS_RW_WRITE)
    pieces = _walk(access, start, req.length, write=write, read=not write)
    ioas = access.ioas
    if ioas is not None and not ioas.domains:
        # iopt_pages_rw_slow reads pages no domain holds through a pin: a
        # file's past its end, or a process's after it exited, are not there.
        sources = files.sources_of(ioas)
        for iova, pa, n in pieces:
            found = sources.covering(iova)
            if found is not None and not ioas.pinned_by_access(iova, iova + n - 1):
                files.check_pin(found[1], pa, n)
    return pb.TestAccessRwResponse(write=write, segments=[
        pb.CopySegment(user_va=user_va, length=n, buffer_offset=iova - start)
        for iova, user_va, n in pieces])


def test_access_replace_ioas(call: Call, req: pb.TestAccessReplaceIoasRequest
                             ) -> pb.TestAccessReplaceIoasResponse:
    """IOMMU_TEST_OP_ACCESS_REPLACE_IOAS (iommufd_access_replace): the pins
    go, the access moves."""
    access = _access(call, req.access_fd)
    if access.ioas is None:
        raise IommuError(E.ENOENT, "The access is not attached to an IOAS.")
    new = call.ctx.get(req.ioas_id, Ioas, "IOAS")
    if new is access.ioas:
        return pb.TestAccessReplaceIoasResponse()
    old = access.ioas
    saved = dict(access.items)
    access.detach()
    try:
        access.attach(new)
    except BaseException:
        access.attach(old)
        access.items.update(saved)
        raise
    return pb.TestAccessReplaceIoasResponse()
