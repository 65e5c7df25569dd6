"""vIOMMU objects and their queues (viommu.c, eventq.c; the selftest's mock
vIOMMU driver, selftest.c mock_viommu_*).

Objects and who holds whom:
- A VIOMMU is a VM's slice of one physical IOMMU: it holds a users ref on
  its NEST_PARENT paging HWPT, and is held by every nested HWPT allocated on
  it, every vDEVICE, vEVENTQ and HW queue (IOMMU_DESTROY is EBUSY while any
  exists).
- A VDEVICE gives a bound DEVICE a virtual id on a vIOMMU (one vDEVICE per
  DEVICE, one device per virtual id). Unbinding the DEVICE destroys its
  vDEVICE and leaves its id a tombstone (ENOENT) until the context closes.
- A VEVENTQ queues the vIOMMU's events of one type for the VMM, up to its
  depth; what does not fit is lost and reported by a lost-events header.
  Its fd holds it (and the context) while open; reads take whole events.
- A HW_QUEUE is a vIOMMU's hardware-accelerated queue over guest memory (an
  IOVA range of the nesting parent). Its internal ACCESS object pins that
  memory and locks its areas (IOAS_UNMAP is EBUSY over them); the mock's
  queue i > 0 holds queue i-1 (EBUSY to destroy it first).

Only the selftest's mock IOMMU has vIOMMU support in the model (the VT-d
model's driver has none: EOPNOTSUPP).
"""
from __future__ import annotations

import errno as E
from collections import deque
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from iommud import eventq
from iommud.device import DeviceObj
from iommud.errors import IommuError
from iommud.eventq import Eventq, EventqFd
from iommud.hw_pagetable import (
    HwptPaging,
    copy_struct_from_user,
    invalidation_entries,
    iommu_instance,
)
from iommud.ioas import IoasAccess
from iommud.objects import IommufdObject, ObjType
from iommud_wire import pb
from iommud_wire.uapi import (
    INT_MAX,
    IOMMU_HW_QUEUE_TYPE_DEFAULT,
    IOMMU_HW_QUEUE_TYPE_SELFTEST,
    IOMMU_IOAS_MAP_READABLE,
    IOMMU_TEST_HW_QUEUE_MAX,
    IOMMU_TEST_INVALIDATE_FLAG_ALL,
    IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
    IOMMU_VEVENTQ_TYPE_DEFAULT,
    IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
    IOMMU_VIOMMU_TYPE_DEFAULT,
    IOMMU_VIOMMU_TYPE_SELFTEST,
    MOCK_DEV_CACHE_ID_MAX,
    PAGE_SIZE,
    U32_MAX,
    U64_MAX,
    VEVENT_HEADER_SIZE,
    VEVENTQ_MAX_DEPTH,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from iommud.call import Call
    from iommud.context import IommufdContext
    from iommud.hw_pagetable import Geometry

#: struct iommu_viommu_selftest {u32 in_data, u32 out_data, u64 out_mmap_offset,
#: u64 out_mmap_length}: 24 bytes, 8 in its first version (offsetofend out_data).
VIOMMU_SELFTEST_SIZE, VIOMMU_SELFTEST_MIN = 24, 8
#: struct iommu_viommu_invalidate_selftest {u32 flags, u32 vdev_id, u32 cache_id}.
VIOMMU_INVALIDATE_SELFTEST_SIZE = 12
#: The mock vIOMMU's mmap region: two pages (mock_viommu_init).
MOCK_MMAP_LENGTH = 2 * PAGE_SIZE


class Viommu(IommufdObject):
    """IOMMUFD_OBJ_VIOMMU (iommufd_viommu_alloc_ioctl), with the mock
    driver's state (struct mock_viommu)."""

    type = ObjType.VIOMMU

    def __init__(self, obj_id: int, ctx: IommufdContext, hwpt: HwptPaging, vtype: int,
                 iommu_dev: tuple[str, Geometry]) -> None:
        super().__init__(obj_id)
        self.ctx = ctx
        self.hwpt = hwpt
        self.vtype = vtype
        #: The physical IOMMU instance it slices (viommu->iommu_dev).
        self.iommu_dev = iommu_dev
        #: Its vDEVICEs by virtual id (viommu->vdevs).
        self.vdevs: dict[int, Vdevice] = {}
        #: Its vEVENTQs by type, one each (viommu->veventqs).
        self.veventqs: dict[int, Veventq] = {}
        #: The mock's HW queues by index (mock_viommu->hw_queue).
        self.hw_queues: list[HwQueue | None] = [None] * IOMMU_TEST_HW_QUEUE_MAX
        #: The mock's mmap region (offset, length), when allocated with data.
        self.mmap: tuple[int, int] | None = None
        #: The first u32 of the region (the mock's loopback of in_data).
        self.mmap_word = 0
        #: Mappings of the region (each holds the vIOMMU: users).
        self.mapped = 0

    def describe(self, info: Any) -> None:
        info.parent_id = self.hwpt.id

    def destroy(self) -> None:
        """iommufd_viommu_destroy: the driver's destroy (its mmap region
        goes), then the parent's ref."""
        self.mmap = None
        self.hwpt.users -= 1

    def context_closing(self) -> None:
        """The mappings' holds go first (a process's exit closes its vmas)."""
        self.users -= self.mapped
        self.mapped = 0

    def cache_invalidate(self, req: pb.HwptInvalidateRequest) -> int:
        """viommu->ops->cache_invalidate, the mock's
        (mock_viommu_cache_invalidate): an empty array of its type is fine;
        the whole array is copied first (iommu_copy_struct_from_full_user_array:
        another type or no entries EINVAL, a longer entry with non-zero bytes
        past the struct E2BIG, a fault EFAULT); then each entry: flags beyond
        ALL EOPNOTSUPP, a cache_id past 3 EINVAL, a virtual id with no
        vDEVICE EINVAL; ALL clears the device's four slots, else the one.
        Returns the entries handled (an error carries the count too)."""
        if req.entry_num == 0 and req.data_type == IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST:
            return 0
        if req.data_type != IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST:
            raise IommuError(E.EINVAL, f"The mock vIOMMU takes invalidation data type "
                             f"{IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST:#x}, not "
                             f"{req.data_type:#x}.", entry_num=0)
        if not req.entry_num:
            raise IommuError(E.EINVAL, "An invalidation of no entries.", entry_num=0)
        cmds = []
        for entry in invalidation_entries(req):
            if entry is None:
                raise IommuError(E.EFAULT, "The invalidation entries could not be read.",
                                 entry_num=0)
            try:
                cmds.append(copy_struct_from_user(entry, VIOMMU_INVALIDATE_SELFTEST_SIZE))
            except IommuError as err:
                err.details["entry_num"] = 0
                raise
        done = 0
        for cmd in cmds:
            flags, vdev_id, cache_id = (int.from_bytes(cmd[i:i + 4], "little") for i in (0, 4, 8))
            if flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL:
                raise IommuError(E.EOPNOTSUPP, f"Entry {done}: unknown flags {flags:#x}.",
                                 entry_num=done)
            if cache_id > MOCK_DEV_CACHE_ID_MAX:
                raise IommuError(E.EINVAL, f"Entry {done}: no cache slot {cache_id}.",
                                 entry_num=done)
            vdev = self.vdevs.get(vdev_id)
            if vdev is None:
                raise IommuError(E.EINVAL, f"Entry {done}: vIOMMU {self.id} has no vDEVICE "
                                 f"{vdev_id:#x}.", entry_num=done)
            idev = vdev.idev
            if flags & IOMMU_TEST_INVALIDATE_FLAG_ALL:
                idev.cache = (0,) * len(idev.cache)
            else:
                idev.cache = tuple(0 if i == cache_id else v for i, v in enumerate(idev.cache))
            done += 1
        return done

    def report_event(self, vtype: int, data: bytes) -> None:
        """iommufd_viommu_report_event: onto the vEVENTQ of `vtype`
        (EOPNOTSUPP when there is none)."""
        veventq = self.veventqs.get(vtype)
        if veventq is None:
            raise IommuError(E.EOPNOTSUPP, f"vIOMMU {self.id} has no vEVENTQ of type "
                             f"{vtype:#x}.", viommu_id=self.id)
        veventq.report(data)


class Vdevice(IommufdObject):
    """IOMMUFD_OBJ_VDEVICE (iommufd_vdevice_alloc_ioctl): a DEVICE's virtual
    id on a vIOMMU; it holds the vIOMMU."""

    type = ObjType.VDEVICE

    def __init__(self, obj_id: int, viommu: Viommu, idev: DeviceObj, virt_id: int) -> None:
        super().__init__(obj_id)
        self.viommu = viommu
        self.idev = idev
        self.virt_id = virt_id

    def describe(self, info: Any) -> None:
        info.viommu_id = self.viommu.id
        info.virt_id = self.virt_id
        info.dev_id = self.idev.id

    def destroy(self) -> None:
        """iommufd_vdevice_destroy (iommufd_vdevice_abort)."""
        if self.viommu.vdevs.get(self.virt_id) is self:
            del self.viommu.vdevs[self.virt_id]
        self.viommu.users -= 1
        if self.idev.vdev is self:
            self.idev.vdev = None


# -- vEVENTQs (eventq.c) ---------------------------------------------------------------------


class Veventq(Eventq):
    """IOMMUFD_OBJ_VEVENTQ (iommufd_veventq_alloc): the vIOMMU's events of
    one type, in order, each with a sequence number (0..INT_MAX, wrapping).
    At most `depth` events wait; one more is lost, and a lost-events header
    (flags LOST_EVENTS, no data) takes the tail with the next sequence
    number until a later event takes its place (iommufd_vevent_handler)."""

    type = ObjType.VEVENTQ

    def __init__(self, obj_id: int, viommu: Viommu, vtype: int, depth: int) -> None:
        super().__init__(obj_id)
        self.viommu = viommu
        self.vtype = vtype
        self.depth = depth
        #: Queued records, (sequence, data); data None is the lost-events header.
        self.deliver: deque[tuple[int, bytes | None]] = deque()
        #: Normal events queued (the lost-events header does not count).
        self.num_events = 0
        self.sequence = 0

    def __getstate__(self) -> dict[str, Any]:
        """For a snapshot: the queue without its records, as journal replay
        leaves it (events are not journaled: a restarted daemon's queues
        start empty, at sequence 0, as a rebooted kernel's)."""
        state = super().__getstate__()
        state.update(num_events=0, sequence=0)
        return state

    def describe(self, info: Any) -> None:
        info.viommu_id = self.viommu.id

    def report(self, data: bytes) -> None:
        """iommufd_viommu_report_event: a full queue (num_events == depth)
        loses the event; iommufd_vevent_handler: a lost-events header at
        the tail gives way to what comes, which takes the next sequence."""
        record: bytes | None = None
        if self.num_events < self.depth:
            record = data
            self.num_events += 1
        if self.deliver and self.deliver[-1][1] is None:
            self.deliver.pop()
        self.deliver.append((self.sequence, record))
        self.sequence = (self.sequence + 1) & INT_MAX
        self.notify()

    @staticmethod
    def encode(sequence: int, data: bytes | None) -> bytes:
        """A record as read() copies it: struct iommufd_vevent_header, then the data."""
        flags = IOMMU_VEVENTQ_FLAG_LOST_EVENTS if data is None else 0
        return (flags.to_bytes(4, "little") + sequence.to_bytes(4, "little") + (data or b""))

    def plan(self, count: int) -> list[int]:
        """The lengths of the records a read of `count` bytes takes now
        (iommufd_veventq_fops_read): below a header is EINVAL; records go
        while a header fits and, for a normal event, its data too; a first
        event whose data does not fit is EINVAL."""
        if count < VEVENT_HEADER_SIZE:
            raise IommuError(E.EINVAL, f"A vEVENTQ read takes at least a "
                             f"{VEVENT_HEADER_SIZE}-byte header, not {count} bytes.")
        out: list[int] = []
        done = 0
        for _seq, data in self.deliver:
            if done >= count or count - done < VEVENT_HEADER_SIZE:
                break
            size = VEVENT_HEADER_SIZE + len(data or b"")
            if data is not None and size > count - done:
                if not out:
                    raise IommuError(E.EINVAL, f"The next vEVENT is {size} bytes; a read of "
                                     f"{count} bytes cannot hold it.")
                break
            out.append(size)
            done += size
        return out

    def read(self, count: int) -> bytes:
        """read() of the queue's fd: the records that fit, taken off the queue."""
        out = []
        for _ in self.plan(count):
            seq, data = self.deliver.popleft()
            if data is not None:
                self.num_events -= 1
            out.append(self.encode(seq, data))
        return b"".join(out)

    def pop(self) -> tuple[int, bytes | None] | None:
        """The first record, taken off the queue (a stream's read), or None."""
        if not self.deliver:
            return None
        seq, data = self.deliver.popleft()
        if data is not None:
            self.num_events -= 1
        return seq, data

    def destroy(self) -> None:
        """iommufd_veventq_destroy (iommufd_veventq_abort): the records go,
        the vIOMMU's ref and its place in the vIOMMU's list."""
        self.deliver.clear()
        self.num_events = 0
        if self.viommu.veventqs.get(self.vtype) is self:
            del self.viommu.veventqs[self.vtype]
        self.viommu.users -= 1
        self.notify()


class VeventqFd(EventqFd):
    """The vEVENTQ's fd ("[iommufd-viommu-event]")."""

    kind = "veventq"
    queue: Veventq


# -- HW queues (viommu.c iommufd_hw_queue_*, selftest.c mock_hw_queue_*) ---------------------


class HwQueueAccess(IoasAccess):
    """The internal IOMMUFD_OBJ_ACCESS a HW queue pins its guest memory with
    (iommufd_access_create_internal): an object of the context (an id, held
    by its queue: DESTROY is EBUSY), PAGE_SIZE alignment on its IOAS, and
    pins that lock their areas against unmap (area->num_locks)."""

    locks_areas = True

    def __init__(self, obj_id: int) -> None:
        super().__init__(obj_id)
        self.users = 1       # "the calling driver is a user": its HW queue

    def describe(self, info: Any) -> None:
        if self.ioas is not None:
            info.ioas_id = self.ioas.id

    def unmap_notify(self, first: int, last: int) -> None:
        """Locked areas are never unmapped (EBUSY first): nothing to drop."""


class HwQueue(IommufdObject):
    """IOMMUFD_OBJ_HW_QUEUE (iommufd_hw_queue_alloc_ioctl), the mock's
    (struct mock_hw_queue): it holds its vIOMMU, its access, and, at index
    i > 0, the queue at i-1 (iommufd_hw_queue_depend)."""

    type = ObjType.HW_QUEUE

    def __init__(self, obj_id: int, viommu: Viommu, access: HwQueueAccess, qtype: int,
                 index: int, base_addr: int, length: int, prev: HwQueue | None) -> None:
        super().__init__(obj_id)
        self.viommu = viommu
        self.access = access
        self.qtype = qtype
        self.index = index
        self.base_addr = base_addr
        self.length = length
        self.prev = prev

    def describe(self, info: Any) -> None:
        info.viommu_id = self.viommu.id

    def destroy(self) -> None:
        """iommufd_hw_queue_destroy: the driver's destroy
        (mock_hw_queue_destroy: its slot, its hold on the queue before it),
        then the access (unpinned, detached, destroyed), then the vIOMMU's ref."""
        if self.viommu.hw_queues[self.index] is self:
            self.viommu.hw_queues[self.index] = None
        if self.prev is not None:
            self.prev.users -= 1
            self.prev = None
        _access_destroy(self.viommu.ctx, self.access)
        self.viommu.users -= 1


def _access_destroy(ctx: IommufdContext, access: HwQueueAccess) -> None:
    """iommufd_hw_queue_destroy_access: unpin, detach, destroy."""
    access.detach()
    access.users -= 1
    ctx.remove_held(access)


def _pin_queue_memory(ctx: IommufdContext, viommu: Viommu, base: int,
                      length: int) -> HwQueueAccess:
    """iommufd_hw_queue_alloc_phys: the page-aligned range behind the queue
    (ERANGE past 2^64), an internal access on the parent's IOAS (an object
    id), its pins (iommufd_access_pin_pages: a hole ENOENT, an area without
    READ EPERM), and physically contiguous pages (EFAULT): the model's
    physical address of an IOVA is its user address."""
    aligned = base & ~(PAGE_SIZE - 1)
    span = base - aligned + length
    if span > U64_MAX or span + PAGE_SIZE - 1 > U64_MAX:
        raise IommuError(E.ERANGE, f"The queue at {base:#x} (+{length:#x}) does not fit a "
                         f"page-aligned range.")
    span = (span + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
    last = aligned + span - 1
    access_id = ctx.new_id()
    access = HwQueueAccess(access_id)
    try:
        access.attach(viommu.hwpt.ioas)
        try:
            iopt = viommu.hwpt.ioas.iopt
            at, expect = aligned, None
            while True:
                area = iopt.area_from(at)
                if area is None or area[0] > at:
                    raise IommuError(E.ENOENT, f"Nothing is mapped at {at:#x} of the queue "
                                     f"memory.", iova=at)
                a_iova, a_len, a_va, a_prot = area
                if not a_prot & IOMMU_IOAS_MAP_READABLE:
                    raise IommuError(E.EPERM, f"The area at {a_iova:#x} is not readable.",
                                     iova=a_iova)
                va = a_va + (at - a_iova)
                if expect is not None and va != expect:
                    raise IommuError(E.EFAULT, f"The queue memory at {at:#x} is not "
                                     f"physically contiguous.", iova=at)
                end = min(last, a_iova + a_len - 1)
                expect = va + (end - at + 1)
                if end >= last:
                    break
                at = end + 1
            access.items[0] = (aligned, last)
        except BaseException:
            access.detach()
            raise
    except BaseException:
        ctx.abort_id(access_id)
        raise
    ctx.insert(access)
    return access


def _mock_hw_queue_init_phys(viommu: Viommu, index: int) -> HwQueue | None:
    """mock_hw_queue_init_phys: index 0 or 1 (EINVAL), not taken (EEXIST),
    and queue i > 0 needs queue i-1 (EIO); returns the queue it depends on.
    Its check of the physical address against the parent's translation
    always agrees in the model (one address space)."""
    if index >= IOMMU_TEST_HW_QUEUE_MAX:
        raise IommuError(E.EINVAL, f"The mock vIOMMU has HW queues 0 to "
                         f"{IOMMU_TEST_HW_QUEUE_MAX - 1}, not {index}.", index=index)
    if viommu.hw_queues[index] is not None:
        raise IommuError(E.EEXIST, f"vIOMMU {viommu.id} already has HW queue {index}.",
                         index=index)
    prev = None
    if index:
        prev = viommu.hw_queues[index - 1]
        if prev is None:
            raise IommuError(E.EIO, f"HW queue {index} needs queue {index - 1} first.",
                             index=index)
    return prev


# -- handlers ----------------------------------------------------------------------------------


def _mmap_offset(ctx: IommufdContext, length: int) -> int:
    """_iommufd_alloc_mmap: the lowest free range of the context's mmap
    space, from PAGE_SIZE (the first page is skipped)."""
    taken = sorted(o.mmap for o in ctx.objects()
                   if isinstance(o, Viommu) and o.mmap is not None)
    at = PAGE_SIZE
    for start, size in taken:
        if at + length <= start:
            break
        at = max(at, start + size)
    return at


def _mock_viommu_init(ctx: IommufdContext, viommu: Viommu, req: pb.ViommuAllocRequest) -> bytes:
    """mock_viommu_init with driver data: 8 to 24 bytes (EINVAL), there
    (EFAULT); two pages for an mmap region, whose first word and out_data
    loop in_data back; then the struct goes back as copy_struct_to_user
    does: shorter than the driver's and non-zero past it is E2BIG."""
    if not req.data_len:
        return b""
    if not VIOMMU_SELFTEST_MIN <= req.data_len <= VIOMMU_SELFTEST_SIZE:
        raise IommuError(E.EINVAL, f"Selftest vIOMMU data is {VIOMMU_SELFTEST_MIN} to "
                         f"{VIOMMU_SELFTEST_SIZE} bytes, not {req.data_len:#x}.",
                         data_len=req.data_len)
    if len(req.data) < req.data_len:
        raise IommuError(E.EFAULT, f"The driver data holds {len(req.data):#x} of the "
                         f"{req.data_len:#x} bytes data_len names.", data_len=req.data_len)
    data = copy_struct_from_user(req.data[:req.data_len], VIOMMU_SELFTEST_SIZE)
    in_data = int.from_bytes(data[:4], "little")
    offset = _mmap_offset(ctx, MOCK_MMAP_LENGTH)
    out = (in_data.to_bytes(4, "little") + in_data.to_bytes(4, "little")
           + offset.to_bytes(8, "little") + MOCK_MMAP_LENGTH.to_bytes(8, "little"))
    if out.count(0, req.data_len) != len(out) - req.data_len:
        raise IommuError(E.E2BIG, f"The driver's {VIOMMU_SELFTEST_SIZE}-byte answer does not "
                         f"fit {req.data_len} bytes.", data_len=req.data_len)
    viommu.mmap = (offset, MOCK_MMAP_LENGTH)
    viommu.mmap_word = in_data
    return out[:req.data_len]


def viommu_alloc(call: Call, req: pb.ViommuAllocRequest) -> pb.ViommuAllocResponse:
    """IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl): flags, or the
    default type, EOPNOTSUPP; the DEVICE (ENOENT); its IOMMU must have the
    type (EOPNOTSUPP); a paging HWPT (ENOENT) allocated with NEST_PARENT
    (EINVAL); then the driver's viommu_init. `reserved` is not checked, as
    in the kernel."""
    ctx = call.ctx
    if req.flags or req.type == IOMMU_VIOMMU_TYPE_DEFAULT:
        raise IommuError(E.EOPNOTSUPP, f"VIOMMU_ALLOC takes no flags ({req.flags:#x}) and a "
                         f"type other than the default.", type=req.type)
    dev = ctx.get(req.dev_id, DeviceObj, "device")
    host_dev = dev.host_dev
    if not host_dev.is_mock:
        raise IommuError(E.EOPNOTSUPP, f"The IOMMU of {host_dev.name} has no vIOMMU support "
                         f"in the model.", dev_id=req.dev_id)
    if req.type != IOMMU_VIOMMU_TYPE_SELFTEST:   # mock_get_viommu_size
        raise IommuError(E.EOPNOTSUPP, f"The mock IOMMU has no vIOMMU type {req.type:#x}.",
                         type=req.type)
    hwpt = ctx.get(req.hwpt_id, HwptPaging, "paging HWPT")
    if not hwpt.nest_parent:
        raise IommuError(E.EINVAL, f"HWPT {req.hwpt_id} was not allocated with NEST_PARENT.",
                         hwpt_id=req.hwpt_id)
    obj_id = ctx.new_id()
    viommu = Viommu(obj_id, ctx, hwpt, req.type, iommu_instance(host_dev))
    try:
        data = _mock_viommu_init(ctx, viommu, req)
    except BaseException:
        ctx.abort_id(obj_id)
        raise
    hwpt.users += 1
    ctx.insert(viommu)
    return pb.ViommuAllocResponse(out_viommu_id=obj_id, data=data)


def vdevice_alloc(call: Call, req: pb.VdeviceAllocRequest) -> pb.VdeviceAllocResponse:
    """IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl): the vIOMMU and
    the DEVICE (ENOENT), of the same IOMMU (EINVAL); a DEVICE has one
    vDEVICE and a virtual id one device (EEXIST)."""
    ctx = call.ctx
    viommu = ctx.get(req.viommu_id, Viommu, "vIOMMU")
    idev = ctx.get(req.dev_id, DeviceObj, "device")
    if iommu_instance(idev.host_dev) != viommu.iommu_dev:
        raise IommuError(E.EINVAL, f"Device {req.dev_id} is not behind the IOMMU of vIOMMU "
                         f"{req.viommu_id}.", dev_id=req.dev_id)
    if idev.vdev is not None:
        raise IommuError(E.EEXIST, f"Device {req.dev_id} already has vDEVICE "
                         f"{idev.vdev.id}.", dev_id=req.dev_id)
    obj_id = ctx.new_id()
    if req.virt_id in viommu.vdevs:
        ctx.abort_id(obj_id)
        raise IommuError(E.EEXIST, f"vIOMMU {req.viommu_id} already has a device at virtual "
                         f"id {req.virt_id:#x}.", virt_id=req.virt_id)
    vdev = Vdevice(obj_id, viommu, idev, req.virt_id)
    viommu.users += 1
    viommu.vdevs[req.virt_id] = vdev
    idev.vdev = vdev
    ctx.insert(vdev)
    return pb.VdeviceAllocResponse(out_vdevice_id=obj_id)


def hw_queue_alloc(call: Call, req: pb.HwQueueAllocRequest) -> pb.HwQueueAllocResponse:
    """IOMMU_HW_QUEUE_ALLOC (iommufd_hw_queue_alloc_ioctl): flags, or the
    default type, EOPNOTSUPP; length 0 EINVAL; past 2^64 EOVERFLOW; the
    vIOMMU (ENOENT) and its driver's type (EOPNOTSUPP); then the queue's id,
    its memory pinned by an internal access, and the driver's
    hw_queue_init_phys."""
    ctx = call.ctx
    if req.flags or req.type == IOMMU_HW_QUEUE_TYPE_DEFAULT:
        raise IommuError(E.EOPNOTSUPP, f"HW_QUEUE_ALLOC takes no flags ({req.flags:#x}) and a "
                         f"type other than the default.", type=req.type)
    if not req.length:
        raise IommuError(E.EINVAL, "The HW queue's length is zero.")
    if req.nesting_parent_iova + req.length - 1 > U64_MAX:
        raise IommuError(E.EOVERFLOW, f"{req.nesting_parent_iova:#x} + {req.length:#x} wraps "
                         f"past 2^64.")
    viommu = ctx.get(req.viommu_id, Viommu, "vIOMMU")
    if req.type != IOMMU_HW_QUEUE_TYPE_SELFTEST:   # mock_viommu_get_hw_queue_size
        raise IommuError(E.EOPNOTSUPP, f"The mock vIOMMU has no HW queue type {req.type:#x}.",
                         type=req.type)
    obj_id = ctx.new_id()
    try:
        access = _pin_queue_memory(ctx, viommu, req.nesting_parent_iova, req.length)
        try:
            prev = _mock_hw_queue_init_phys(viommu, req.index)
        except BaseException:
            _access_destroy(ctx, access)
            raise
    except BaseException:
        ctx.abort_id(obj_id)
        raise
    queue = HwQueue(obj_id, viommu, access, req.type, req.index, req.nesting_parent_iova,
                    req.length, prev)
    if prev is not None:
        prev.users += 1
    viommu.hw_queues[req.index] = queue
    viommu.users += 1
    ctx.insert(queue)
    return pb.HwQueueAllocResponse(out_hw_queue_id=obj_id)


def veventq_alloc(call: Call, req: pb.VeventqAllocRequest) -> pb.VeventqAllocResponse:
    """IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc): flags, reserved or the
    default type EOPNOTSUPP; a depth of 0 or past 2^19 EINVAL; the vIOMMU
    (ENOENT); one queue per type (EEXIST); then the object and its fd."""
    ctx, sess = call.ctx, call.sess
    if req.flags or req.reserved or req.type == IOMMU_VEVENTQ_TYPE_DEFAULT:
        raise IommuError(E.EOPNOTSUPP, f"VEVENTQ_ALLOC takes no flags ({req.flags:#x}) or "
                         f"reserved bits, and a type other than the default.", type=req.type)
    if not 1 <= req.veventq_depth <= VEVENTQ_MAX_DEPTH:
        raise IommuError(E.EINVAL, f"A vEVENTQ is 1 to {VEVENTQ_MAX_DEPTH:#x} events deep, not "
                         f"{req.veventq_depth:#x}.", depth=req.veventq_depth)
    viommu = ctx.get(req.viommu_id, Viommu, "vIOMMU")
    if req.type in viommu.veventqs:
        raise IommuError(E.EEXIST, f"vIOMMU {req.viommu_id} already has a vEVENTQ of type "
                         f"{req.type:#x}.", type=req.type)
    obj_id = ctx.new_id()
    try:
        sess.check_fd_room()                        # get_unused_fd_flags
    except BaseException:
        ctx.abort_id(obj_id)
        raise
    veventq = Veventq(obj_id, viommu, req.type, req.veventq_depth)
    viommu.users += 1
    viommu.veventqs[req.type] = veventq
    veventq.users = 1                               # its fd
    ctx.insert(veventq)
    ctx.holders += 1
    fd = sess.install(VeventqFd(veventq, ctx))
    return pb.VeventqAllocResponse(out_veventq_id=obj_id, out_veventq_fd=fd)


def veventq_read(call: Call, req: pb.VeventqReadRequest) -> pb.VeventqReadResponse:
    """read() of a vEVENTQ fd (iommufd_veventq_fops_read): whole records that
    fit `count` bytes; an empty queue reads nothing, without waiting."""
    vfd: VeventqFd = call.target
    return pb.VeventqReadResponse(data=vfd.queue.read(req.count))


async def watch_veventq(call: Call, req: pb.WatchVeventqRequest
                        ) -> AsyncIterator[pb.WatchVeventqResponse]:
    """A vEVENTQ fd read as a stream: each record as it is queued, taken off
    the queue as it is sent; the stream ends when the fd is closed."""
    async with aclosing(eventq.watch(call, lambda record: pb.WatchVeventqResponse(
            flags=IOMMU_VEVENTQ_FLAG_LOST_EVENTS if record[1] is None else 0,
            sequence=record[0], data=record[1] or b""))) as records:
        async for reply in records:
            yield reply


def _region(ctx: IommufdContext, offset: int) -> Viommu | None:
    """mtree_load of the context's mmap space: the vIOMMU whose region
    holds `offset`."""
    for obj in ctx.objects():
        if isinstance(obj, Viommu) and obj.mmap is not None:
            start, length = obj.mmap
            if start <= offset < start + length:
                return obj
    return None


def iommufd_mmap(call: Call, req: pb.IommufdMmapRequest) -> pb.IommufdMmapResponse:
    """mmap() of an iommufd (iommufd_fops_mmap): a length that is not whole
    pages, or a private mapping, is EINVAL; an executable one EPERM; an
    offset in no region, or not a whole region, ENXIO. The mapping holds
    the region's vIOMMU (DESTROY is EBUSY) until it is unmapped."""
    if req.length % PAGE_SIZE or not req.shared:
        raise IommuError(E.EINVAL, f"An iommufd maps whole pages ({req.length:#x}) and shared "
                         f"only (MAP_SHARED: {req.shared}).", length=req.length)
    if req.exec:
        raise IommuError(E.EPERM, "An iommufd's regions are not executable.")
    viommu = _region(call.ctx, req.offset)
    if viommu is None or viommu.mmap != (req.offset, req.length):
        raise IommuError(E.ENXIO, f"No region of this iommufd is {req.length:#x} bytes at "
                         f"offset {req.offset:#x}.", offset=req.offset, length=req.length)
    viommu.mapped += 1
    viommu.users += 1
    return pb.IommufdMmapResponse(
        data=viommu.mmap_word.to_bytes(4, "little") + bytes(req.length - 4))


def iommufd_munmap(call: Call, req: pb.IommufdMunmapRequest) -> pb.IommufdMunmapResponse:
    """munmap() of a mapping iommufd_mmap made (iommufd_vma_close): its
    hold on the vIOMMU goes; EINVAL when no mapping of the region is held."""
    viommu = _region(call.ctx, req.offset)
    if viommu is None or viommu.mmap is None or viommu.mmap[0] != req.offset \
            or not viommu.mapped:
        raise IommuError(E.EINVAL, f"No mapping of a region at offset {req.offset:#x} is "
                         f"held.", offset=req.offset)
    viommu.mapped -= 1
    viommu.users -= 1
    return pb.IommufdMunmapResponse()


def mock_vevent(idev: DeviceObj) -> tuple[Viommu, bytes]:
    """iommufd_test_trigger_vevent's source: the vIOMMU the mock device's
    RID is attached through and its virtual id, as struct
    iommu_viommu_event_selftest {u32 virt_id}; ENOENT without them."""
    viommu = idev.mock_viommu
    if viommu is None or not idev.mock_vdev_id:
        raise IommuError(E.ENOENT, f"Device {idev.id} is not attached to a nested HWPT of a "
                         f"vIOMMU through a vDEVICE with a virtual id.", dev_id=idev.id)
    return viommu, (idev.mock_vdev_id & U32_MAX).to_bytes(4, "little")
