"""Every operation of the client library, defined once for both clients.

An operation is one RPC: a builder here takes the handle it acts on (a
context, device, group or access fd; a session for session-wide calls) and
the caller's arguments, and returns an `Op`: the request to send and how to
read the reply. The synchronous classes (client.py) and the asyncio classes
(aio.py) bind the same builder as a method with `sync_method` or
`async_method`, so the signature, the docstring, the request's fields and
the reading of the reply exist once, and the two clients cannot drift apart
on any of them. Only what differs by flavour is written per class: opening
fds (which returns a handle of that flavour), streams, and session and
client lifetime.

Builders never do I/O; they are pure functions of their arguments.
"""
from __future__ import annotations

import array
import functools
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, cast

from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_HW_QUEUE_TYPE_SELFTEST,
    IOMMU_IOAS_MAP_FIXED_IOVA,
    IOMMU_IOAS_MAP_READABLE,
    IOMMU_IOAS_MAP_WRITEABLE,
    IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
    IOMMU_VEVENTQ_TYPE_SELFTEST,
    IOMMU_VIOMMU_TYPE_SELFTEST,
    UNMAP_ALL_LENGTH,
    VFIO_DEVICE_ATTACH_PASID,
    VFIO_DEVICE_DETACH_PASID,
    VFIO_DMA_MAP_FLAG_READ,
    VFIO_DMA_MAP_FLAG_WRITE,
    VFIO_TYPE1v2_IOMMU,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

#: Any object with the buffer protocol (collections.abc.Buffer from Python 3.12).
Buffer = Any

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
H = TypeVar("H")
M = TypeVar("M")


# -- values --------------------------------------------------------------------------------

@dataclass(frozen=True)
class IovaRange:
    """An IOVA interval with an inclusive `last`, as struct iommu_iova_range."""

    start: int
    last: int


@dataclass(frozen=True)
class Translation:
    """The result of translating one IOVA."""

    iova: int
    pa: int
    prot: int

    @property
    def readable(self) -> bool:
        return bool(self.prot & IOMMU_IOAS_MAP_READABLE)

    @property
    def writeable(self) -> bool:
        return bool(self.prot & IOMMU_IOAS_MAP_WRITEABLE)


@dataclass(frozen=True)
class BatchTranslation:
    """Results of TranslateBatch as packed arrays: pas[i] is 0 and prots[i]
    is 0 where iovas[i] is unmapped."""

    pas: array.array[int]
    prots: bytes
    mapped_count: int


@dataclass(frozen=True)
class MockDomain:
    """The ids IOMMU_TEST_OP_MOCK_DOMAIN hands back."""

    stdev_id: int
    hwpt_id: int
    idev_id: int


@dataclass(frozen=True)
class Vevent:
    """One record read from a vEVENTQ: struct iommufd_vevent_header {flags,
    sequence} and the event's data; a lost-events header has no data."""

    flags: int
    sequence: int
    data: bytes = b""

    @property
    def lost_events(self) -> bool:
        """The queue lost events here (IOMMU_VEVENTQ_FLAG_LOST_EVENTS)."""
        return bool(self.flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS)


def parse_vevents(data: bytes, data_len: int) -> list[Vevent]:
    """The records of a vEVENTQ read: each header, then `data_len` bytes of
    data (the queue's event size: 4 for the selftest's, 32 for an ARM
    SMMUv3's), except after a lost-events header."""
    out = []
    at = 0
    while at + 8 <= len(data):
        flags = int.from_bytes(data[at:at + 4], "little")
        sequence = int.from_bytes(data[at + 4:at + 8], "little")
        at += 8
        size = 0 if flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS else data_len
        out.append(Vevent(flags, sequence, bytes(data[at:at + size])))
        at += size
    return out


@dataclass(frozen=True)
class DmaAccess:
    """One device DMA access: `length` bytes at `iova`, a write or a read."""

    iova: int
    length: int
    write: bool = False


def pack_u64(values: Sequence[int] | Buffer) -> bytes:
    """Little-endian u64 packing without per-element work for buffers."""
    if isinstance(values, (bytes, bytearray, memoryview)):
        return bytes(values)
    if hasattr(values, "astype") and hasattr(values, "tobytes"):  # numpy, without importing it
        return bytes(values.astype("<u8", copy=False).tobytes())
    arr = array.array("Q", values)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tobytes()


def unpack_u64(data: bytes) -> array.array[int]:
    out = array.array("Q")
    out.frombytes(data)
    if sys.byteorder != "little":
        out.byteswap()
    return out


# -- the operation type and the binders -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Op(Generic[R_co]):
    """One RPC to make: IommuService's `method` with `request`, and `read`,
    which turns the reply into what the caller gets."""

    method: str
    request: Any
    read: Callable[[Any], R_co]


def _op(reply: type[M], request: Any, read: Callable[[M], R]) -> Op[R]:
    """An Op whose method is named by its request type (FooRequest -> Foo),
    as the daemon's op table names them; `reply` types the reader."""
    name: str = request.DESCRIPTOR.name
    return Op(name.removesuffix("Request"), request, cast("Callable[[Any], R]", read))


class _SyncRunner(Protocol):
    def _run(self, op: Op[R]) -> R: ...


class _AsyncRunner(Protocol):
    async def _run(self, op: Op[R]) -> R: ...


def sync_method(builder: Callable[Concatenate[H, P], Op[R]]) -> Callable[Concatenate[H, P], R]:
    """The builder as a method of a synchronous class (one with `_run`)."""
    @functools.wraps(builder)
    def method(self: H, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return cast("_SyncRunner", self)._run(builder(self, *args, **kwargs))
    return method


def async_method(builder: Callable[Concatenate[H, P], Op[R]]
                 ) -> Callable[Concatenate[H, P], Coroutine[Any, Any, R]]:
    """The builder as a coroutine method of an asyncio class (one with `_run`)."""
    @functools.wraps(builder)
    async def method(self: H, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await cast("_AsyncRunner", self)._run(builder(self, *args, **kwargs))
    return method


# -- what the builders read from their handle ---------------------------------------------------

class HasIommufd(Protocol):
    @property
    def iommufd(self) -> int: ...


class HasDeviceFd(Protocol):
    @property
    def device_fd(self) -> int: ...


class HasGroupFd(Protocol):
    @property
    def group_fd(self) -> int: ...


class HasAccessFd(Protocol):
    @property
    def ctx(self) -> HasIommufd: ...

    @property
    def access_fd(self) -> int: ...


class HasVeventqFd(Protocol):
    @property
    def veventq_fd(self) -> int: ...


class HasFaultFd(Protocol):
    @property
    def fault_fd(self) -> int: ...


class HasFileFd(Protocol):
    @property
    def fd(self) -> int: ...


def _fd_of(handle: HasIommufd | int) -> int:
    return handle if isinstance(handle, int) else handle.iommufd


def _file_fd(handle: HasFileFd | int) -> int:
    return handle if isinstance(handle, int) else handle.fd


def _map_flags(fixed: bool, readable: bool, writeable: bool) -> int:
    return ((IOMMU_IOAS_MAP_FIXED_IOVA if fixed else 0)
            | (IOMMU_IOAS_MAP_READABLE if readable else 0)
            | (IOMMU_IOAS_MAP_WRITEABLE if writeable else 0))


# -- sessions (the first argument is the session; these read nothing from it) -------------------

def close_session(s: object) -> Op[int]:
    """Close every fd of the session; returns how many were closed."""
    return _op(pb.CloseSessionResponse, pb.CloseSessionRequest(), lambda r: r.closed_fds)


def keepalive(s: object) -> Op[int]:
    """Renew the lease once (KeepAlive); returns the lease in force, in seconds."""
    return _op(pb.KeepAliveResponse, pb.KeepAliveRequest(), lambda r: r.lease_seconds)


def session_info(s: object) -> Op[pb.GetInfoResponse]:
    """GetInfo as this session: limits, and daemon and session counts."""
    return _op(pb.GetInfoResponse, pb.GetInfoRequest(), lambda r: r)


def open_context(s: object) -> Op[int]:
    return _op(pb.OpenContextResponse, pb.OpenContextRequest(), lambda r: r.iommufd)


def open_device(s: object, name: str) -> Op[int]:
    return _op(pb.OpenDeviceResponse, pb.OpenDeviceRequest(name=name), lambda r: r.device_fd)


def open_container(s: object) -> Op[int]:
    return _op(pb.OpenContainerResponse, pb.OpenContainerRequest(), lambda r: r.container_fd)


def open_group(s: object, group: int) -> Op[int]:
    return _op(pb.OpenGroupResponse, pb.OpenGroupRequest(group=group), lambda r: r.group_fd)


def list_devices(s: object) -> Op[list[pb.HostDevice]]:
    return _op(pb.ListDevicesResponse, pb.ListDevicesRequest(), lambda r: list(r.devices))


def list_groups(s: object) -> Op[list[pb.IommuGroup]]:
    return _op(pb.ListGroupsResponse, pb.ListGroupsRequest(), lambda r: list(r.groups))


def group(s: object, group: int) -> Op[pb.IommuGroup]:
    """The IOMMU group `group` as ListGroups reports it; KeyError if none."""
    def find(resp: pb.ListGroupsResponse) -> pb.IommuGroup:
        for g in resp.groups:
            if g.group == group:
                return g
        raise KeyError(group)
    return _op(pb.ListGroupsResponse, pb.ListGroupsRequest(), find)


def bind_host_driver(s: object, device: str, driver: str) -> Op[None]:
    """Probe a host driver onto a device (admin)."""
    return _op(pb.BindHostDriverResponse,
               pb.BindHostDriverRequest(device=device, driver=driver), lambda r: None)


def unbind_host_driver(s: object, device: str) -> Op[None]:
    return _op(pb.UnbindHostDriverResponse, pb.UnbindHostDriverRequest(device=device),
               lambda r: None)


def hot_add_device(s: object, device: pb.HostDevice) -> Op[None]:
    return _op(pb.HotAddDeviceResponse, pb.HotAddDeviceRequest(device=device), lambda r: None)


def hot_remove_device(s: object, device: str) -> Op[None]:
    return _op(pb.HotRemoveDeviceResponse, pb.HotRemoveDeviceRequest(device=device),
               lambda r: None)


def open_memfd(s: object, size: int, name: str = "") -> Op[int]:
    """memfd_create(name) and ftruncate(size) in the daemon: a file whose
    pages IOAS_MAP_FILE maps; returns its fd in the session."""
    return _op(pb.OpenMemfdResponse, pb.OpenMemfdRequest(name=name, size=size), lambda r: r.fd)


@dataclass(frozen=True)
class ProcessPins:
    """What iommufd charges a process of the raw uAPI transport, in pages:
    /proc/<pid>/status shows them (times 4 KiB) as VmPin and VmLck."""

    pinned_pages: int
    locked_pages: int


def process_pins(s: object, pid: int) -> Op[ProcessPins]:
    """The pages iommufd pins for, and charges to, process `pid` (a process
    speaking the raw uAPI through the preload shim)."""
    return _op(pb.ProcessPinsResponse, pb.ProcessPinsRequest(pid=pid),
               lambda r: ProcessPins(r.pinned_pages, r.locked_pages))


def debug_advance_clock(s: object, seconds: float) -> Op[int]:
    """Age every lease by `seconds` and reap at once (admin, a daemon run with
    debug_clock; tests); returns how many sessions were reaped."""
    return _op(pb.DebugAdvanceClockResponse, pb.DebugAdvanceClockRequest(seconds=seconds),
               lambda r: r.reaped)


# -- the daemon (the first argument is the client: these need no session) ---------------------

def admin_sessions(c: object) -> Op[list[pb.AdminSession]]:
    """The admin view (AdminListSessions): every live session of the daemon
    with its opener, contexts, groups, devices, memory and lease, never a
    token. Admin only (EPERM otherwise); needs no session."""
    return _op(pb.AdminListSessionsResponse, pb.AdminListSessionsRequest(),
               lambda r: list(r.sessions))


# -- iommufd contexts -------------------------------------------------------------------------

def close_context(h: HasIommufd) -> Op[int]:
    """close(iommufd): destroys every object; returns how many."""
    return _op(pb.CloseContextResponse, pb.CloseContextRequest(iommufd=h.iommufd),
               lambda r: r.destroyed_objects)


def destroy(h: HasIommufd, id: int) -> Op[None]:
    """IOMMU_DESTROY."""
    return _op(pb.DestroyResponse, pb.DestroyRequest(iommufd=h.iommufd, id=id), lambda r: None)


def ioas_alloc(h: HasIommufd, flags: int = 0) -> Op[int]:
    """IOMMU_IOAS_ALLOC; returns the new ioas_id."""
    return _op(pb.IoasAllocResponse, pb.IoasAllocRequest(iommufd=h.iommufd, flags=flags),
               lambda r: r.out_ioas_id)


def ioas_iova_ranges(h: HasIommufd, ioas_id: int, num_iovas: int | None = None,
                     reserved: int = 0) -> Op[tuple[list[IovaRange], int]]:
    """IOMMU_IOAS_IOVA_RANGES; returns (ranges, out_iova_alignment)."""
    req = pb.IoasIovaRangesRequest(iommufd=h.iommufd, ioas_id=ioas_id, reserved=reserved)
    if num_iovas is not None:
        req.num_iovas = num_iovas
    return _op(pb.IoasIovaRangesResponse, req, lambda r: (
        [IovaRange(x.start, x.last) for x in r.allowed_iovas], r.out_iova_alignment))


def ioas_allow_iovas(h: HasIommufd, ioas_id: int, ranges: Sequence[tuple[int, int] | IovaRange],
                     reserved: int = 0) -> Op[None]:
    """IOMMU_IOAS_ALLOW_IOVAS: replace the allowed list (empty clears it)."""
    items = [r if isinstance(r, IovaRange) else IovaRange(*r) for r in ranges]
    return _op(pb.IoasAllowIovasResponse, pb.IoasAllowIovasRequest(
        iommufd=h.iommufd, ioas_id=ioas_id, reserved=reserved,
        allowed_iovas=[pb.IovaRange(start=r.start, last=r.last) for r in items]), lambda r: None)


def ioas_map(h: HasIommufd, ioas_id: int, user_va: int, length: int, iova: int | None = None, *,
             readable: bool = True, writeable: bool = True, flags: int | None = None,
             reserved: int = 0) -> Op[int]:
    """IOMMU_IOAS_MAP; returns the IOVA of the new area.

    With `iova` given the map is FIXED_IOVA; otherwise the daemon picks the
    IOVA. `flags` overrides the computed flags word entirely.
    """
    if flags is None:
        flags = _map_flags(iova is not None, readable, writeable)
    return _op(pb.IoasMapResponse, pb.IoasMapRequest(
        iommufd=h.iommufd, ioas_id=ioas_id, flags=flags, reserved=reserved,
        user_va=user_va, length=length, iova=iova or 0), lambda r: r.iova)


def ioas_map_batch(h: HasIommufd, ioas_id: int, user_vas: Sequence[int] | Buffer,
                   lengths: Sequence[int] | Buffer, iovas: Sequence[int] | Buffer | None = None,
                   *, readable: bool = True, writeable: bool = True, flags: int | None = None,
                   reserved: int = 0) -> Op[array.array[int]]:
    """Many IOMMU_IOAS_MAPs in one call, all or nothing; returns the new
    areas' IOVAs as array('Q'). With `iovas` given every map is
    FIXED_IOVA; otherwise the daemon picks each IOVA. On a failure nothing
    is mapped and the error's message names the failing entry."""
    if flags is None:
        flags = _map_flags(iovas is not None, readable, writeable)
    return _op(pb.IoasMapBatchResponse, pb.IoasMapBatchRequest(
        iommufd=h.iommufd, ioas_id=ioas_id, flags=flags, reserved=reserved,
        user_vas=pack_u64(user_vas), lengths=pack_u64(lengths),
        iovas=pack_u64(iovas) if iovas is not None else b""), lambda r: unpack_u64(r.iovas))


def ioas_copy(h: HasIommufd, dst_ioas_id: int, src_ioas_id: int, src_iova: int, length: int,
              dst_iova: int | None = None, *, readable: bool = True, writeable: bool = True,
              flags: int | None = None) -> Op[int]:
    """IOMMU_IOAS_COPY; returns the destination IOVA."""
    if flags is None:
        flags = _map_flags(dst_iova is not None, readable, writeable)
    return _op(pb.IoasCopyResponse, pb.IoasCopyRequest(
        iommufd=h.iommufd, flags=flags, dst_ioas_id=dst_ioas_id, src_ioas_id=src_ioas_id,
        length=length, dst_iova=dst_iova or 0, src_iova=src_iova), lambda r: r.dst_iova)


def ioas_unmap(h: HasIommufd, ioas_id: int, iova: int, length: int) -> Op[int]:
    """IOMMU_IOAS_UNMAP; returns the bytes unmapped."""
    return _op(pb.IoasUnmapResponse, pb.IoasUnmapRequest(
        iommufd=h.iommufd, ioas_id=ioas_id, iova=iova, length=length), lambda r: r.length)


def ioas_unmap_all(h: HasIommufd, ioas_id: int) -> Op[int]:
    """IOMMU_IOAS_UNMAP with iova 0 and length 2^64-1."""
    return ioas_unmap(h, ioas_id, 0, UNMAP_ALL_LENGTH)


def option(h: HasIommufd, option_id: int, op: int, object_id: int = 0, val64: int = 0,
           reserved: int = 0) -> Op[int]:
    """IOMMU_OPTION (RLIMIT_MODE 0, HUGE_PAGES 1; op SET 0, GET 1); returns val64."""
    return _op(pb.OptionResponse, pb.OptionRequest(
        iommufd=h.iommufd, option_id=option_id, op=op, object_id=object_id, val64=val64,
        reserved=reserved), lambda r: r.val64)


def ioas_map_file(h: HasIommufd, ioas_id: int, fd: HasFileFd | int, start: int, length: int,
                  iova: int | None = None, *, readable: bool = True, writeable: bool = True,
                  flags: int | None = None) -> Op[int]:
    """IOMMU_IOAS_MAP_FILE: map `length` bytes of the file `fd` (a Memfd, or
    a session fd number) from byte `start`; returns the IOVA of the new
    area. With `iova` given the map is FIXED_IOVA. The pages' PA is the
    file's, by file and offset, not a user address."""
    if flags is None:
        flags = _map_flags(iova is not None, readable, writeable)
    return _op(pb.IoasMapFileResponse, pb.IoasMapFileRequest(
        iommufd=h.iommufd, ioas_id=ioas_id, flags=flags, fd=_file_fd(fd), start=start,
        length=length, iova=iova or 0), lambda r: r.iova)


def ioas_change_process(h: HasIommufd, reserved: int = 0) -> Op[None]:
    """IOMMU_IOAS_CHANGE_PROCESS."""
    return _op(pb.IoasChangeProcessResponse,
               pb.IoasChangeProcessRequest(iommufd=h.iommufd, reserved=reserved), lambda r: None)


def hwpt_invalidate(h: HasIommufd, hwpt_id: int, data: bytes = b"", *, data_type: int = 0,
                    entry_len: int = 0, entry_num: int = 0, reserved: int = 0) -> Op[int]:
    """IOMMU_HWPT_INVALIDATE; returns the entries handled."""
    return _op(pb.HwptInvalidateResponse, pb.HwptInvalidateRequest(
        iommufd=h.iommufd, hwpt_id=hwpt_id, data=data, data_type=data_type,
        entry_len=entry_len, entry_num=entry_num, reserved=reserved), lambda r: r.entry_num)


def fault_queue_alloc(h: HasIommufd, flags: int = 0) -> Op[tuple[int, int]]:
    """IOMMU_FAULT_QUEUE_ALLOC; returns (the FAULT object's id, its fd in
    the session, which holds it until closed)."""
    return _op(pb.FaultQueueAllocResponse,
               pb.FaultQueueAllocRequest(iommufd=h.iommufd, flags=flags),
               lambda r: (r.out_fault_id, r.out_fault_fd))


def dmabuf_get(h: HasIommufd, length: int, open_flags: int = 0) -> Op[int]:
    """IOMMU_TEST_OP_DMABUF_GET: a dma-buf the test driver exports; returns
    its fd in the session."""
    return _op(pb.TestDmabufGetResponse, pb.TestDmabufGetRequest(
        iommufd=h.iommufd, length=length, open_flags=open_flags), lambda r: r.fd)


class HasDmabuf(Protocol):
    @property
    def ctx(self) -> HasIommufd: ...

    @property
    def fd(self) -> int: ...


def dmabuf_revoke(h: HasDmabuf, revoked: bool = True) -> Op[None]:
    """IOMMU_TEST_OP_DMABUF_REVOKE: its exporter revokes (or restores) the
    dma-buf; the pages mapped so far are revoked for good."""
    return _op(pb.TestDmabufRevokeResponse, pb.TestDmabufRevokeRequest(
        iommufd=h.ctx.iommufd, dmabuf_fd=h.fd, revoked=revoked), lambda r: None)


def trigger_iopf(h: HasIommufd, dev_id: int, pasid: int = 0, grpid: int = 0, perm: int = 0,
                 addr: int = 0) -> Op[None]:
    """IOMMU_TEST_OP_TRIGGER_IOPF: the mock device `dev_id` reports one IO
    page fault from `pasid` (0: the RID)."""
    return _op(pb.TestTriggerIopfResponse, pb.TestTriggerIopfRequest(
        iommufd=h.iommufd, dev_id=dev_id, pasid=pasid, grpid=grpid, perm=perm, addr=addr),
        lambda r: None)


# -- vIOMMUs, vDEVICEs, HW queues and vEVENTQs -------------------------------------------------

def viommu_alloc(h: HasIommufd, dev_id: int, hwpt_id: int,
                 type: int = IOMMU_VIOMMU_TYPE_SELFTEST, *, flags: int = 0,
                 reserved: int = 0) -> Op[int]:
    """IOMMU_VIOMMU_ALLOC without driver data over the NEST_PARENT HWPT
    `hwpt_id`; returns the viommu_id."""
    return _op(pb.ViommuAllocResponse, pb.ViommuAllocRequest(
        iommufd=h.iommufd, flags=flags, type=type, dev_id=dev_id, hwpt_id=hwpt_id,
        reserved=reserved), lambda r: r.out_viommu_id)


def viommu_alloc_data(h: HasIommufd, dev_id: int, hwpt_id: int, data: bytes,
                      type: int = IOMMU_VIOMMU_TYPE_SELFTEST, *, data_len: int | None = None,
                      flags: int = 0) -> Op[tuple[int, bytes]]:
    """IOMMU_VIOMMU_ALLOC with driver data (data_len defaults to its length);
    returns (viommu_id, the data as the driver wrote it back)."""
    return _op(pb.ViommuAllocResponse, pb.ViommuAllocRequest(
        iommufd=h.iommufd, flags=flags, type=type, dev_id=dev_id, hwpt_id=hwpt_id,
        data_len=len(data) if data_len is None else data_len, data=data),
        lambda r: (r.out_viommu_id, r.data))


def vdevice_alloc(h: HasIommufd, viommu_id: int, dev_id: int, virt_id: int) -> Op[int]:
    """IOMMU_VDEVICE_ALLOC: `dev_id`'s virtual id on the vIOMMU; returns the vdevice id."""
    return _op(pb.VdeviceAllocResponse, pb.VdeviceAllocRequest(
        iommufd=h.iommufd, viommu_id=viommu_id, dev_id=dev_id, virt_id=virt_id),
        lambda r: r.out_vdevice_id)


def hw_queue_alloc(h: HasIommufd, viommu_id: int, index: int, nesting_parent_iova: int,
                   length: int, type: int = IOMMU_HW_QUEUE_TYPE_SELFTEST, *,
                   flags: int = 0) -> Op[int]:
    """IOMMU_HW_QUEUE_ALLOC over guest memory at an IOVA of the vIOMMU's
    nesting parent; returns the hw_queue id."""
    return _op(pb.HwQueueAllocResponse, pb.HwQueueAllocRequest(
        iommufd=h.iommufd, flags=flags, viommu_id=viommu_id, type=type, index=index,
        nesting_parent_iova=nesting_parent_iova, length=length), lambda r: r.out_hw_queue_id)


def veventq_alloc(h: HasIommufd, viommu_id: int, depth: int,
                  type: int = IOMMU_VEVENTQ_TYPE_SELFTEST, *, flags: int = 0,
                  reserved: int = 0) -> Op[tuple[int, int]]:
    """IOMMU_VEVENTQ_ALLOC; returns (veventq id, its fd in the session)."""
    return _op(pb.VeventqAllocResponse, pb.VeventqAllocRequest(
        iommufd=h.iommufd, flags=flags, viommu_id=viommu_id, type=type, veventq_depth=depth,
        reserved=reserved), lambda r: (r.out_veventq_id, r.out_veventq_fd))


def translate(h: HasIommufd, ioas_id: int, iova: int) -> Op[Translation]:
    """Translate one IOVA; ENOENT when nothing is mapped there."""
    return _op(pb.TranslateResponse,
               pb.TranslateRequest(iommufd=h.iommufd, ioas_id=ioas_id, iova=iova),
               lambda r: Translation(r.iova, r.pa, r.prot))


def translate_batch(h: HasIommufd, ioas_id: int, iovas: Sequence[int] | Buffer
                    ) -> Op[BatchTranslation]:
    """Translate many IOVAs in one call (a list, array('Q'), numpy u64 or LE bytes)."""
    return _op(pb.TranslateBatchResponse, pb.TranslateBatchRequest(
        iommufd=h.iommufd, ioas_id=ioas_id, iovas=pack_u64(iovas)),
        lambda r: BatchTranslation(unpack_u64(r.pas), r.prots, r.mapped_count))


def bind_device(h: HasIommufd, device: HasDeviceFd, cookie: int = 0) -> Op[int]:
    """The design thread's bind, issued on the iommufd; returns dev_id."""
    return _op(pb.IommufdBindDeviceResponse, pb.IommufdBindDeviceRequest(
        iommufd=h.iommufd, device_fd=device.device_fd, cookie=cookie), lambda r: r.dev_id)


def hwpt_alloc(h: HasIommufd, dev_id: int, pt_id: int, flags: int = 0, *, data_type: int = 0,
               data_len: int | None = None, data: bytes = b"", fault_id: int = 0,
               reserved: int = 0) -> Op[int]:
    """IOMMU_HWPT_ALLOC; returns the new hwpt_id. `data` is the driver
    data (data_len defaults to its length)."""
    return _op(pb.HwptAllocResponse, pb.HwptAllocRequest(
        iommufd=h.iommufd, flags=flags, dev_id=dev_id, pt_id=pt_id, data_type=data_type,
        data_len=len(data) if data_len is None else data_len, data=data,
        fault_id=fault_id, reserved=reserved), lambda r: r.out_hwpt_id)


def hwpt_set_dirty_tracking(h: HasIommufd, hwpt_id: int, enable: bool = True, *,
                            flags: int | None = None) -> Op[None]:
    """IOMMU_HWPT_SET_DIRTY_TRACKING."""
    return _op(pb.HwptSetDirtyTrackingResponse, pb.HwptSetDirtyTrackingRequest(
        iommufd=h.iommufd, hwpt_id=hwpt_id, flags=int(enable) if flags is None else flags),
        lambda r: None)


def hwpt_get_dirty_bitmap(h: HasIommufd, hwpt_id: int, iova: int, length: int,
                          page_size: int = 4096, *, no_clear: bool = False,
                          flags: int | None = None, reserved: int = 0) -> Op[bytes]:
    """IOMMU_HWPT_GET_DIRTY_BITMAP; little-endian u64 words."""
    return _op(pb.HwptGetDirtyBitmapResponse, pb.HwptGetDirtyBitmapRequest(
        iommufd=h.iommufd, hwpt_id=hwpt_id, iova=iova, length=length, page_size=page_size,
        reserved=reserved, flags=int(no_clear) if flags is None else flags), lambda r: r.data)


def get_hw_info(h: HasIommufd, dev_id: int, data_len: int = 0, *, flags: int = 0,
                in_data_type: int = 0, reserved: int = 0) -> Op[pb.GetHwInfoResponse]:
    """IOMMU_GET_HW_INFO."""
    return _op(pb.GetHwInfoResponse, pb.GetHwInfoRequest(
        iommufd=h.iommufd, flags=flags, dev_id=dev_id, data_len=data_len,
        in_data_type=in_data_type, reserved=reserved), lambda r: r)


def capabilities(h: HasIommufd) -> Op[pb.GetCapabilitiesResponse]:
    return _op(pb.GetCapabilitiesResponse, pb.GetCapabilitiesRequest(iommufd=h.iommufd),
               lambda r: r)


def list_objects(h: HasIommufd) -> Op[list[pb.ObjectInfo]]:
    return _op(pb.ListObjectsResponse, pb.ListObjectsRequest(iommufd=h.iommufd),
               lambda r: list(r.objects))


def list_areas_page(h: HasIommufd, ioas_id: int, start_iova: int = 0,
                    max_areas: int = 0) -> Op[pb.ListAreasResponse]:
    """One page of an IOAS's areas, from the one containing or following
    `start_iova`; `more` and `next_iova` say where the next page starts."""
    return _op(pb.ListAreasResponse,
               pb.ListAreasRequest(iommufd=h.iommufd, ioas_id=ioas_id, start_iova=start_iova,
                                   max_areas=max_areas),
               lambda r: r)


# -- the kAPI by dev_id ---------------------------------------------------------------------------

def device_attach(h: HasIommufd, dev_id: int, pt_id: int, pasid: int | None = None) -> Op[int]:
    """iommufd_device_attach; returns the HWPT attached (EBUSY if attached)."""
    return _op(pb.IommufdDeviceAttachResponse, pb.IommufdDeviceAttachRequest(
        iommufd=h.iommufd, dev_id=dev_id, pt_id=pt_id, pasid=pasid), lambda r: r.pt_id)


def device_replace(h: HasIommufd, dev_id: int, pt_id: int, pasid: int | None = None) -> Op[int]:
    """iommufd_device_replace; returns the HWPT now attached."""
    return _op(pb.IommufdDeviceReplaceResponse, pb.IommufdDeviceReplaceRequest(
        iommufd=h.iommufd, dev_id=dev_id, pt_id=pt_id, pasid=pasid), lambda r: r.pt_id)


def device_detach(h: HasIommufd, dev_id: int, pasid: int | None = None) -> Op[None]:
    """iommufd_device_detach (a no-op when nothing is attached)."""
    return _op(pb.IommufdDeviceDetachResponse, pb.IommufdDeviceDetachRequest(
        iommufd=h.iommufd, dev_id=dev_id, pasid=pasid), lambda r: None)


def device_dma(h: HasIommufd, dev_id: int, accesses: Sequence[DmaAccess],
               pasid: int | None = None) -> Op[pb.IommufdDeviceDmaResponse]:
    """DMA by the DEVICE `dev_id`; faults are in the reply."""
    return _op(pb.IommufdDeviceDmaResponse, pb.IommufdDeviceDmaRequest(
        iommufd=h.iommufd, dev_id=dev_id, pasid=pasid, accesses=[
            pb.DmaAccess(iova=a.iova, length=a.length, write=a.write) for a in accesses]),
        lambda r: r)


# -- the selftest mock driver (a daemon with debug_selftest) ----------------------------------

def mock_domain(h: HasIommufd, pt_id: int, dev_flags: int | None = None) -> Op[MockDomain]:
    """IOMMU_TEST_OP_MOCK_DOMAIN(_FLAGS): a mock device bound and attached."""
    return _op(pb.TestMockDomainResponse, pb.TestMockDomainRequest(
        iommufd=h.iommufd, pt_id=pt_id, dev_flags=dev_flags),
        lambda r: MockDomain(r.out_stdev_id, r.out_hwpt_id, r.out_idev_id))


def mock_domain_replace(h: HasIommufd, stdev_id: int, pt_id: int) -> Op[int]:
    return _op(pb.TestMockDomainReplaceResponse, pb.TestMockDomainReplaceRequest(
        iommufd=h.iommufd, stdev_id=stdev_id, pt_id=pt_id), lambda r: r.pt_id)


def test_add_reserved(h: HasIommufd, ioas_id: int, start: int, length: int) -> Op[None]:
    return _op(pb.TestAddReservedResponse, pb.TestAddReservedRequest(
        iommufd=h.iommufd, ioas_id=ioas_id, start=start, length=length), lambda r: None)


def md_check_map(h: HasIommufd, hwpt_id: int, iova: int, length: int, user_va: int) -> Op[None]:
    return _op(pb.TestMdCheckMapResponse, pb.TestMdCheckMapRequest(
        iommufd=h.iommufd, hwpt_id=hwpt_id, iova=iova, length=length, user_va=user_va),
        lambda r: None)


def md_check_refs(h: HasIommufd, user_va: int, length: int, refs: int) -> Op[None]:
    return _op(pb.TestMdCheckRefsResponse, pb.TestMdCheckRefsRequest(
        iommufd=h.iommufd, user_va=user_va, length=length, refs=refs), lambda r: None)


def test_dirty(h: HasIommufd, hwpt_id: int, iova: int, length: int, page_size: int,
               bitmap: bytes, flags: int = 0) -> Op[int]:
    """IOMMU_TEST_OP_DIRTY; returns out_nr_dirty."""
    return _op(pb.TestDirtyResponse, pb.TestDirtyRequest(
        iommufd=h.iommufd, hwpt_id=hwpt_id, flags=flags, iova=iova, length=length,
        page_size=page_size, bitmap=bitmap), lambda r: r.out_nr_dirty)


def create_access(h: HasIommufd, ioas_id: int, flags: int = 0) -> Op[int]:
    return _op(pb.TestCreateAccessResponse, pb.TestCreateAccessRequest(
        iommufd=h.iommufd, ioas_id=ioas_id, flags=flags), lambda r: r.out_access_fd)


def set_temp_memory_limit(h: HasIommufd, limit: int) -> Op[None]:
    return _op(pb.TestSetTempMemoryLimitResponse, pb.TestSetTempMemoryLimitRequest(
        iommufd=h.iommufd, limit=limit), lambda r: None)


def pasid_attach(h: HasIommufd, stdev_id: int, pasid: int, pt_id: int) -> Op[int]:
    return _op(pb.TestPasidAttachResponse, pb.TestPasidAttachRequest(
        iommufd=h.iommufd, stdev_id=stdev_id, pasid=pasid, pt_id=pt_id), lambda r: r.pt_id)


def pasid_replace(h: HasIommufd, stdev_id: int, pasid: int, pt_id: int) -> Op[int]:
    return _op(pb.TestPasidReplaceResponse, pb.TestPasidReplaceRequest(
        iommufd=h.iommufd, stdev_id=stdev_id, pasid=pasid, pt_id=pt_id), lambda r: r.pt_id)


def pasid_detach(h: HasIommufd, stdev_id: int, pasid: int) -> Op[None]:
    return _op(pb.TestPasidDetachResponse, pb.TestPasidDetachRequest(
        iommufd=h.iommufd, stdev_id=stdev_id, pasid=pasid), lambda r: None)


def pasid_check_hwpt(h: HasIommufd, stdev_id: int, pasid: int, hwpt_id: int) -> Op[None]:
    return _op(pb.TestPasidCheckHwptResponse, pb.TestPasidCheckHwptRequest(
        iommufd=h.iommufd, stdev_id=stdev_id, pasid=pasid, hwpt_id=hwpt_id), lambda r: None)


def dev_check_cache(h: HasIommufd, dev_id: int, cache_id: int, cache: int) -> Op[None]:
    """IOMMU_TEST_OP_DEV_CHECK_CACHE: does the mock device's slot hold `cache`?"""
    return _op(pb.TestDevCheckCacheResponse, pb.TestDevCheckCacheRequest(
        iommufd=h.iommufd, dev_id=dev_id, cache_id=cache_id, cache=cache), lambda r: None)


def md_check_iotlb(h: HasIommufd, hwpt_id: int, iotlb_id: int, iotlb: int) -> Op[None]:
    """IOMMU_TEST_OP_MD_CHECK_IOTLB: does the mock nested HWPT's slot hold `iotlb`?"""
    return _op(pb.TestMdCheckIotlbResponse, pb.TestMdCheckIotlbRequest(
        iommufd=h.iommufd, hwpt_id=hwpt_id, iotlb_id=iotlb_id, iotlb=iotlb), lambda r: None)


def trigger_vevent(h: HasIommufd, dev_id: int) -> Op[None]:
    """IOMMU_TEST_OP_TRIGGER_VEVENT: the mock device reports one vEVENT."""
    return _op(pb.TestTriggerVeventResponse, pb.TestTriggerVeventRequest(
        iommufd=h.iommufd, dev_id=dev_id), lambda r: None)


def iommufd_mmap(h: HasIommufd, offset: int, length: int, *, shared: bool = True,
                 exec: bool = False) -> Op[bytes]:
    """mmap() of the iommufd at `offset` (a vIOMMU's region, VIOMMU_ALLOC's
    out_mmap_offset): its bytes; the mapping holds the vIOMMU until munmap."""
    return _op(pb.IommufdMmapResponse, pb.IommufdMmapRequest(
        iommufd=h.iommufd, offset=offset, length=length, shared=shared, exec=exec),
        lambda r: r.data)


def iommufd_munmap(h: HasIommufd, offset: int) -> Op[None]:
    """munmap() of a mapping iommufd_mmap made."""
    return _op(pb.IommufdMunmapResponse, pb.IommufdMunmapRequest(
        iommufd=h.iommufd, offset=offset), lambda r: None)


# -- vEVENTQ fds ----------------------------------------------------------------------------

def close_veventq(h: HasVeventqFd) -> Op[None]:
    """close(veventq_fd): the vEVENTQ can be destroyed afterwards."""
    return _op(pb.CloseFdResponse, pb.CloseFdRequest(fd=h.veventq_fd), lambda r: None)


def veventq_read(h: HasVeventqFd, count: int = 4096) -> Op[bytes]:
    """read(veventq_fd, count): the whole records that fit, as bytes (an
    empty queue reads nothing)."""
    return _op(pb.VeventqReadResponse, pb.VeventqReadRequest(
        veventq_fd=h.veventq_fd, count=count), lambda r: r.data)


# -- fault queue fds -------------------------------------------------------------------------

#: The size of one fault record (struct iommu_hwpt_pgfault).
FAULT_RECORD = 40


def close_fault_queue(h: HasFaultFd) -> Op[None]:
    """close(fault_fd): the fault queue can be destroyed afterwards."""
    return _op(pb.CloseFdResponse, pb.CloseFdRequest(fd=h.fault_fd), lambda r: None)


def fault_queue_read(h: HasFaultFd, count: int = 64 * FAULT_RECORD) -> Op[list[pb.PageFault]]:
    """read(fault_fd, count): the whole fault groups that fit, read (each
    fault has its group's response cookie, and its device's bind cookie);
    an empty queue reads nothing."""
    return _op(pb.FaultQueueReadResponse, pb.FaultQueueReadRequest(
        fault_fd=h.fault_fd, count=count), lambda r: list(r.faults))


def fault_queue_respond(h: HasFaultFd, responses: Sequence[tuple[int, int] | pb.PageResponse]
                        ) -> Op[int]:
    """write(fault_fd) of page responses, (cookie, code) each: taken in
    order until the first bad one; returns how many were taken."""
    items = [r if isinstance(r, pb.PageResponse) else pb.PageResponse(cookie=r[0], code=r[1])
             for r in responses]
    return _op(pb.FaultQueueRespondResponse, pb.FaultQueueRespondRequest(
        fault_fd=h.fault_fd, responses=items), lambda r: r.count)


# -- selftest access fds ---------------------------------------------------------------------

def close_file(h: HasFileFd) -> Op[None]:
    """close() of a file fd (a memfd or a dma-buf): the file lives on while
    an area maps its pages."""
    return _op(pb.CloseFdResponse, pb.CloseFdRequest(fd=h.fd), lambda r: None)


def memfd_truncate(h: HasFileFd, size: int) -> Op[None]:
    """ftruncate() of a daemon-side memfd."""
    return _op(pb.MemfdTruncateResponse, pb.MemfdTruncateRequest(fd=h.fd, size=size),
               lambda r: None)


def close_access(h: HasAccessFd) -> Op[None]:
    """close(access_fd): unpins everything and destroys the access."""
    return _op(pb.CloseFdResponse, pb.CloseFdRequest(fd=h.access_fd), lambda r: None)


def access_pages(h: HasAccessFd, iova: int, length: int, user_va: int = 0,
                 flags: int = 0) -> Op[int]:
    """IOMMU_TEST_OP_ACCESS_PAGES; returns the item id."""
    return _op(pb.TestAccessPagesResponse, pb.TestAccessPagesRequest(
        iommufd=h.ctx.iommufd, access_fd=h.access_fd, flags=flags, iova=iova, length=length,
        user_va=user_va), lambda r: r.out_access_pages_id)


def access_destroy_pages(h: HasAccessFd, access_pages_id: int) -> Op[None]:
    return _op(pb.TestDestroyAccessPagesResponse, pb.TestDestroyAccessPagesRequest(
        iommufd=h.ctx.iommufd, access_fd=h.access_fd, access_pages_id=access_pages_id),
        lambda r: None)


def access_rw(h: HasAccessFd, iova: int, length: int, user_va: int = 0,
              flags: int = 0) -> Op[pb.TestAccessRwResponse]:
    """IOMMU_TEST_OP_ACCESS_RW: the copy plan behind the IOVA range."""
    return _op(pb.TestAccessRwResponse, pb.TestAccessRwRequest(
        iommufd=h.ctx.iommufd, access_fd=h.access_fd, iova=iova, length=length,
        user_va=user_va, flags=flags), lambda r: r)


def access_replace_ioas(h: HasAccessFd, ioas_id: int) -> Op[None]:
    return _op(pb.TestAccessReplaceIoasResponse, pb.TestAccessReplaceIoasRequest(
        iommufd=h.ctx.iommufd, access_fd=h.access_fd, ioas_id=ioas_id), lambda r: None)


# -- VFIO device fds -------------------------------------------------------------------------

def close_device(h: HasDeviceFd) -> Op[None]:
    """close(device_fd): unbinds the device and revokes the fd."""
    return _op(pb.CloseDeviceResponse, pb.CloseDeviceRequest(device_fd=h.device_fd),
               lambda r: None)


def device_info(h: HasDeviceFd) -> Op[pb.DeviceGetInfoResponse]:
    return _op(pb.DeviceGetInfoResponse, pb.DeviceGetInfoRequest(device_fd=h.device_fd),
               lambda r: r)


def device_bind(h: HasDeviceFd, ctx: HasIommufd | int, cookie: int = 0, flags: int = 0) -> Op[int]:
    """VFIO_DEVICE_BIND_IOMMUFD; returns the dev_id."""
    return _op(pb.DeviceBindIommufdResponse, pb.DeviceBindIommufdRequest(
        device_fd=h.device_fd, flags=flags, iommufd=_fd_of(ctx), cookie=cookie),
        lambda r: r.out_devid)


def device_attach_pt(h: HasDeviceFd, pt_id: int, pasid: int | None = None, *,
                     flags: int | None = None) -> Op[int]:
    """VFIO_DEVICE_ATTACH_IOMMUFD_PT (a replace when already attached);
    returns the id of the HWPT actually attached."""
    if flags is None:
        flags = VFIO_DEVICE_ATTACH_PASID if pasid is not None else 0
    return _op(pb.DeviceAttachIommufdPtResponse, pb.DeviceAttachIommufdPtRequest(
        device_fd=h.device_fd, flags=flags, pt_id=pt_id, pasid=pasid or 0), lambda r: r.pt_id)


def device_detach_pt(h: HasDeviceFd, pasid: int | None = None, *,
                     flags: int | None = None) -> Op[None]:
    """VFIO_DEVICE_DETACH_IOMMUFD_PT."""
    if flags is None:
        flags = VFIO_DEVICE_DETACH_PASID if pasid is not None else 0
    return _op(pb.DeviceDetachIommufdPtResponse, pb.DeviceDetachIommufdPtRequest(
        device_fd=h.device_fd, flags=flags, pasid=pasid or 0), lambda r: None)


def device_dma_fd(h: HasDeviceFd, accesses: Sequence[DmaAccess],
                  pasid: int | None = None) -> Op[pb.DeviceDmaResponse]:
    """Issue DMA accesses as the device (RID, or `pasid`); faults are in the reply."""
    req = pb.DeviceDmaRequest(device_fd=h.device_fd, accesses=[
        pb.DmaAccess(iova=a.iova, length=a.length, write=a.write) for a in accesses])
    if pasid is not None:
        req.pasid = pasid
    return _op(pb.DeviceDmaResponse, req, lambda r: r)


def device_read(h: HasDeviceFd, iova: int, length: int = 4,
                pasid: int | None = None) -> Op[pb.DmaResult]:
    """One DMA read of `length` bytes at `iova`; its result."""
    op = device_dma_fd(h, [DmaAccess(iova, length, False)], pasid)
    return Op(op.method, op.request, lambda r: op.read(r).results[0])


def device_write(h: HasDeviceFd, iova: int, length: int = 4,
                 pasid: int | None = None) -> Op[pb.DmaResult]:
    """One DMA write of `length` bytes at `iova`; its result."""
    op = device_dma_fd(h, [DmaAccess(iova, length, True)], pasid)
    return Op(op.method, op.request, lambda r: op.read(r).results[0])


# -- legacy VFIO containers (an iommufd context) ------------------------------------------------

def get_api_version(h: HasIommufd) -> Op[int]:
    return _op(pb.VfioGetApiVersionResponse,
               pb.VfioGetApiVersionRequest(container_fd=h.iommufd), lambda r: r.version)


def check_extension(h: HasIommufd, extension: int) -> Op[int]:
    return _op(pb.VfioCheckExtensionResponse, pb.VfioCheckExtensionRequest(
        container_fd=h.iommufd, extension=extension), lambda r: r.value)


def set_iommu(h: HasIommufd, iommu_type: int = VFIO_TYPE1v2_IOMMU) -> Op[None]:
    return _op(pb.VfioSetIommuResponse,
               pb.VfioSetIommuRequest(container_fd=h.iommufd, type=iommu_type), lambda r: None)


def iommu_get_info(h: HasIommufd, argsz: int = 0) -> Op[pb.VfioIommuGetInfoResponse]:
    return _op(pb.VfioIommuGetInfoResponse,
               pb.VfioIommuGetInfoRequest(container_fd=h.iommufd, argsz=argsz), lambda r: r)


def map_dma(h: HasIommufd, iova: int, size: int, vaddr: int, *, flags: int | None = None,
            argsz: int = 0) -> Op[None]:
    """VFIO_IOMMU_MAP_DMA (READ|WRITE unless `flags` says otherwise)."""
    if flags is None:
        flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE
    return _op(pb.VfioIommuMapDmaResponse, pb.VfioIommuMapDmaRequest(
        container_fd=h.iommufd, argsz=argsz, flags=flags, vaddr=vaddr, iova=iova, size=size),
        lambda r: None)


def unmap_dma(h: HasIommufd, iova: int, size: int, *, flags: int = 0, bitmap_pgsize: int = 0,
              bitmap_size: int = 0, argsz: int = 0) -> Op[pb.VfioIommuUnmapDmaResponse]:
    """VFIO_IOMMU_UNMAP_DMA; the reply's size is the bytes unmapped."""
    return _op(pb.VfioIommuUnmapDmaResponse, pb.VfioIommuUnmapDmaRequest(
        container_fd=h.iommufd, argsz=argsz, flags=flags, iova=iova, size=size,
        bitmap_pgsize=bitmap_pgsize, bitmap_size=bitmap_size), lambda r: r)


def dirty_pages(h: HasIommufd, flags: int, iova: int = 0, size: int = 0, *,
                bitmap_pgsize: int = 0, bitmap_size: int = 0, argsz: int = 0) -> Op[bytes]:
    """VFIO_IOMMU_DIRTY_PAGES; GET_BITMAP returns the bitmap bytes."""
    return _op(pb.VfioIommuDirtyPagesResponse, pb.VfioIommuDirtyPagesRequest(
        container_fd=h.iommufd, argsz=argsz, flags=flags, iova=iova, size=size,
        bitmap_pgsize=bitmap_pgsize, bitmap_size=bitmap_size), lambda r: r.bitmap)


def vfio_ioas(h: HasIommufd, op: int, ioas_id: int = 0, reserved: int = 0) -> Op[int]:
    """IOMMU_VFIO_IOAS on any iommufd: GET 0, SET 1, CLEAR 2."""
    return _op(pb.IommuVfioIoasResponse, pb.IommuVfioIoasRequest(
        iommufd=h.iommufd, ioas_id=ioas_id, op=op, reserved=reserved), lambda r: r.ioas_id)


# -- legacy VFIO group fds ------------------------------------------------------------------

def close_group(h: HasGroupFd) -> Op[None]:
    return _op(pb.CloseGroupResponse, pb.CloseGroupRequest(group_fd=h.group_fd), lambda r: None)


def group_get_status(h: HasGroupFd, argsz: int = 0) -> Op[int]:
    """VIABLE (1) | CONTAINER_SET (2)."""
    return _op(pb.VfioGroupGetStatusResponse, pb.VfioGroupGetStatusRequest(
        group_fd=h.group_fd, argsz=argsz), lambda r: r.flags)


def group_set_container(h: HasGroupFd, container: HasIommufd | int) -> Op[None]:
    return _op(pb.VfioGroupSetContainerResponse, pb.VfioGroupSetContainerRequest(
        group_fd=h.group_fd, container_fd=_fd_of(container)), lambda r: None)


def group_unset_container(h: HasGroupFd) -> Op[None]:
    return _op(pb.VfioGroupUnsetContainerResponse,
               pb.VfioGroupUnsetContainerRequest(group_fd=h.group_fd), lambda r: None)


def group_get_device_fd(h: HasGroupFd, name: str) -> Op[int]:
    return _op(pb.VfioGroupGetDeviceFdResponse, pb.VfioGroupGetDeviceFdRequest(
        group_fd=h.group_fd, name=name), lambda r: r.device_fd)
