"""FAULT objects and their fds: IO page faults (eventq.c's fault half,
io-pgfault.c's delivery, selftest.c's TRIGGER_IOPF).

A fault queue (IOMMU_FAULT_QUEUE_ALLOC) is what a HWPT allocated with
FAULT_ID_VALID reports IO page faults to. It is an object (held, `users`,
by each such HWPT and by its fd) and an fd of the session: the fd reads the
faults and takes the responses, under eventq.c's rules:

- read (iommufd_fault_fops_read): `count` a multiple of the 40-byte
  struct iommu_hwpt_pgfault (ESPIPE otherwise); whole fault groups only, as
  many as fit; a first group that does not fit is EINVAL; an empty queue
  reads nothing, without waiting. A group read gets its response cookie
  then (xa_alloc from 1, lowest free) and waits in `response`.
- write (iommufd_fault_fops_write): 8-byte struct iommu_hwpt_page_response
  entries {u32 cookie, u32 code} (ESPIPE for another count), each code
  SUCCESS or INVALID and each cookie a read group's (EINVAL otherwise);
  they are taken in order until the first bad one, and the bytes taken are
  the answer (the error only when none was).
- Detaching or replacing the attachment a group came through answers its
  groups INVALID, read or not (iommufd_auto_response_faults), and so does
  destroying the queue.

Faults come from the device: DMA through a fault-capable HWPT that finds
no mapping or no permission raises a page request (one fault, a group of
its own: LAST_PAGE, with the PASID if it came from one), and the
selftest's TRIGGER_IOPF reports one as the mock device would. The queue's
records and cookies are not journaled: a restarted daemon's queues start
empty, as a device's outstanding page requests do not survive a reset.
"""
from __future__ import annotations

import errno as E
import struct
from collections import deque
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iommud import eventq
from iommud.errors import IommuError
from iommud.eventq import Eventq, EventqFd
from iommud.ids import LowestFreeAllocator
from iommud.objects import ObjType
from iommud_wire import pb
from iommud_wire.uapi import PAGE_SIZE, U32_MAX

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from iommud.call import Call

#: struct iommu_hwpt_pgfault {u32 flags, u32 dev_id, u32 pasid, u32 grpid,
#: u32 perm, u32 __reserved, u64 addr, u32 length, u32 cookie}: 40 bytes.
S_PGFAULT = struct.Struct("<IIIIIIQII")
#: struct iommu_hwpt_page_response {u32 cookie, u32 code}: 8 bytes.
S_RESPONSE = struct.Struct("<II")
FAULT_RECORD, RESPONSE_SIZE = S_PGFAULT.size, S_RESPONSE.size
#: enum iommu_hwpt_pgfault_flags, _perm; enum iommufd_page_response_code.
PGFAULT_FLAGS_PASID_VALID, PGFAULT_FLAGS_LAST_PAGE = 1 << 0, 1 << 1
PGFAULT_PERM_READ, PGFAULT_PERM_WRITE = 1 << 0, 1 << 1
PAGE_RESP_SUCCESS, PAGE_RESP_INVALID = 0, 1
#: A PCIe page request group index is 9 bits (PRG index).
PRG_INDEX_MASK = 0x1FF


@dataclass(eq=False)
class FaultGroup:
    """struct iopf_group: the faults of one page request group, reported
    through one attachment: (device, PASID or None for the RID, HWPT)."""

    idev: Any
    pasid: int | None
    hwpt: Any
    #: (flags, pasid, grpid, perm, addr) of each fault, the last LAST_PAGE.
    faults: list[tuple[int, int, int, int, int]]
    #: The response cookie, once read.
    cookie: int = 0

    def records(self) -> bytes:
        """The group as read() copies it (iommufd_compose_fault_message)."""
        return b"".join(S_PGFAULT.pack(flags, self.idev.id, pasid, grpid, perm, 0, addr, 0,
                                       self.cookie)
                        for flags, pasid, grpid, perm, addr in self.faults)

    def messages(self) -> list[pb.PageFault]:
        """The group for gRPC: the records, and the device's bind cookie."""
        return [pb.PageFault(flags=flags, dev_id=self.idev.id, pasid=pasid, grpid=grpid,
                             perm=perm, addr=addr, cookie=self.cookie,
                             bind_cookie=self.idev.cookie)
                for flags, pasid, grpid, perm, addr in self.faults]


class FaultQueue(Eventq):
    """IOMMUFD_OBJ_FAULT: groups delivered and not read (`deliver`), and
    groups read and not answered (`response`, by cookie)."""

    type = ObjType.FAULT

    def __init__(self, obj_id: int) -> None:
        super().__init__(obj_id)
        self.deliver: deque[FaultGroup] = deque()
        self.response: dict[int, FaultGroup] = {}
        self._cookies = LowestFreeAllocator(1, U32_MAX)

    def __getstate__(self) -> dict[str, Any]:
        """For a snapshot: the queue, not its faults (they are not durable:
        module docstring)."""
        state = super().__getstate__()
        state["response"] = {}
        state["_cookies"] = LowestFreeAllocator(1, U32_MAX)
        return state

    def report(self, group: FaultGroup) -> None:
        """iommufd_fault_iopf_handler: the group joins the deliver list."""
        self.deliver.append(group)
        self.notify()

    def plan(self, count: int) -> list[int]:
        """The record bytes of each group a read of `count` bytes takes now
        (iommufd_fault_fops_read): ESPIPE for a count that is not whole
        records, EINVAL when the first group does not fit."""
        if count % FAULT_RECORD:
            raise IommuError(E.ESPIPE, f"A fault queue is read in whole {FAULT_RECORD}-byte "
                             f"records, not {count} bytes.")
        out: list[int] = []
        done = 0
        for group in self.deliver:
            size = len(group.faults) * FAULT_RECORD
            if done >= count or size > count - done:
                if not out:
                    raise IommuError(E.EINVAL, f"The next fault group is {size} bytes; a read "
                                     f"of {count} bytes cannot hold it.")
                break
            out.append(size)
            done += size
        return out

    def _take(self) -> FaultGroup:
        """The first group, read: its cookie allocated, waiting for its response."""
        group = self.deliver.popleft()
        cookie = self._cookies.alloc()
        if cookie is None:  # 2^32-1 groups unanswered: xa_alloc's -EBUSY
            self.deliver.appendleft(group)
            raise IommuError(E.EBUSY, "Every response cookie is taken.")
        group.cookie = cookie
        self.response[cookie] = group
        return group

    def read(self, count: int) -> bytes:
        """read() of the fault fd: the groups that fit, read."""
        return b"".join(self._take().records() for _ in self.plan(count))

    def pop(self) -> FaultGroup | None:
        """The first group, read (a stream's read), or None."""
        return self._take() if self.deliver else None

    def respond(self, responses: list[tuple[int, int]]) -> int:
        """write() of responses, in order until the first bad one; returns
        how many were taken (EINVAL when the first is bad)."""
        done = 0
        for cookie, code in responses:
            group = self.response.get(cookie) if code in (PAGE_RESP_SUCCESS,
                                                          PAGE_RESP_INVALID) else None
            if group is None:
                if not done:
                    raise IommuError(E.EINVAL, f"No fault group waits for cookie {cookie:#x} "
                                     f"(code {code}).", cookie=cookie, code=code)
                break
            del self.response[cookie]
            self._cookies.release(cookie)
            done += 1
        if done:
            self.notify()
        return done

    def auto_respond(self, idev: Any, pasid: int | None, hwpt: Any) -> None:
        """iommufd_auto_response_faults: the groups of an attachment that
        goes answer INVALID, read or not."""
        kept = deque(g for g in self.deliver
                     if not (g.idev is idev and g.pasid == pasid and g.hwpt is hwpt))
        dropped = len(kept) != len(self.deliver)
        self.deliver = kept
        for cookie, group in list(self.response.items()):
            if group.idev is idev and group.pasid == pasid and group.hwpt is hwpt:
                del self.response[cookie]
                self._cookies.release(cookie)
                dropped = True
        if dropped:
            self.notify()

    def destroy(self) -> None:
        """iommufd_fault_destroy: every group answers INVALID and goes."""
        self.deliver.clear()
        self.response.clear()
        self.notify()


class FaultFd(EventqFd):
    """The fault queue's fd ("[iommufd-pgfault]")."""

    kind = "fault"
    queue: FaultQueue


# -- delivery -----------------------------------------------------------------------------------

def handler(idev: Any, pasid: int | None) -> tuple[Any, int | None] | None:
    """find_fault_handler (io-pgfault.c): the attachment a fault of `idev`
    (from `pasid`, None for none) goes through, as (HWPT, the attachment's
    PASID), when its HWPT takes faults. A PASID not attached falls back to
    a nested domain on the RID when the IOMMU keeps the PASID table in the
    guest (the mock's user_pasid_table)."""
    attached = idev.attached
    hwpt, at = attached.get(pasid), pasid
    if hwpt is None and pasid is not None and idev.host_dev.is_mock:
        rid = attached.get(None)
        if rid is not None and rid.type is ObjType.HWPT_NESTED:
            hwpt, at = rid, None
    if hwpt is None or getattr(hwpt, "fault", None) is None:
        return None
    return hwpt, at


def report(idev: Any, pasid: int | None, grpid: int, perm: int, addr: int,
           last: bool = True) -> bool:
    """iommu_report_device_fault of one page request: to its attachment's
    fault queue; False when nothing takes it (dropped: the device gets an
    error response, as iopf_error_response sends). A request that is not
    the group's last is kept for it (report_partial_fault): the model's
    sources always send whole groups, so `last` is always true here."""
    found = handler(idev, pasid)
    if found is None or not last:
        return False
    hwpt, at = found
    flags = PGFAULT_FLAGS_LAST_PAGE | (PGFAULT_FLAGS_PASID_VALID if pasid is not None else 0)
    hwpt.fault.report(FaultGroup(idev, at, hwpt, [(flags, pasid or 0, grpid, perm, addr)]))
    return True


def page_request(idev: Any, pasid: int | None, iova: int, write: bool) -> bool:
    """A device's DMA that faulted on a fault-capable HWPT asks for the page
    (ATS/PRI): one fault, a group of its own, with the device's next PRG
    index. False when its HWPT takes no faults."""
    if handler(idev, pasid) is None:
        return False
    grpid = getattr(idev, "prg_index", 0)
    idev.prg_index = (grpid + 1) & PRG_INDEX_MASK
    perm = PGFAULT_PERM_WRITE if write else PGFAULT_PERM_READ
    return report(idev, pasid, grpid, perm, iova & ~(PAGE_SIZE - 1))


def detached(idev: Any, pasid: int | None, hwpt: Any) -> None:
    """An attachment of `idev` to `hwpt` went (detach or replace): its
    fault groups are answered (iommufd_hwpt_detach_device,
    iommufd_hwpt_replace_device)."""
    fault = getattr(hwpt, "fault", None)
    if isinstance(fault, FaultQueue):
        fault.auto_respond(idev, pasid, hwpt)


# -- handlers -----------------------------------------------------------------------------------

def fault_queue_alloc(call: Call, req: pb.FaultQueueAllocRequest) -> pb.FaultQueueAllocResponse:
    """IOMMU_FAULT_QUEUE_ALLOC (iommufd_fault_alloc): the object, then its
    fd, which holds it and the context (iommufd_eventq_init)."""
    if req.flags:
        raise IommuError(E.EOPNOTSUPP, f"FAULT_QUEUE_ALLOC takes no flags; got {req.flags:#x}.")
    ctx, sess = call.ctx, call.sess
    sess.check_fd_room()
    obj_id = ctx.new_id()
    fault = FaultQueue(obj_id)
    fault.users = 1                                 # its fd
    ctx.insert(fault)
    ctx.holders += 1
    fd = sess.install(FaultFd(fault, ctx))
    return pb.FaultQueueAllocResponse(out_fault_id=obj_id, out_fault_fd=fd)


def fault_queue_read(call: Call, req: pb.FaultQueueReadRequest) -> pb.FaultQueueReadResponse:
    """read() of a fault fd (iommufd_fault_fops_read)."""
    ffd: FaultFd = call.target
    data = ffd.queue.read(req.count)
    groups = [data[i:i + FAULT_RECORD] for i in range(0, len(data), FAULT_RECORD)]
    faults = []
    for rec in groups:
        flags, dev_id, pasid, grpid, perm, _, addr, length, cookie = S_PGFAULT.unpack(rec)
        group = ffd.queue.response.get(cookie)
        faults.append(pb.PageFault(flags=flags, dev_id=dev_id, pasid=pasid, grpid=grpid,
                                   perm=perm, addr=addr, length=length, cookie=cookie,
                                   bind_cookie=group.idev.cookie if group else 0))
    return pb.FaultQueueReadResponse(data=data, faults=faults)


def fault_queue_respond(call: Call, req: pb.FaultQueueRespondRequest
                        ) -> pb.FaultQueueRespondResponse:
    """write() of page responses to a fault fd (iommufd_fault_fops_write)."""
    ffd: FaultFd = call.target
    done = ffd.queue.respond([(r.cookie, r.code) for r in req.responses])
    return pb.FaultQueueRespondResponse(count=done)


async def watch_fault_queue(call: Call, req: pb.WatchFaultQueueRequest
                            ) -> AsyncIterator[pb.WatchFaultQueueResponse]:
    """A fault fd read as a stream: each group as it is delivered, read as
    it is sent (its cookie allocated); the stream ends when the fd closes."""
    async with aclosing(eventq.watch(
            call, lambda group: pb.WatchFaultQueueResponse(faults=group.messages()))) as groups:
        async for reply in groups:
            yield reply


def test_trigger_iopf(call: Call, req: pb.TestTriggerIopfRequest
                      ) -> pb.TestTriggerIopfResponse:
    """IOMMU_TEST_OP_TRIGGER_IOPF (iommufd_test_trigger_iopf): the DEVICE
    (ENOENT) of a mock device (EINVAL) reports one page request, the last
    of its group, from `pasid` (IOMMU_NO_PASID 0: the RID). Where no
    fault-capable HWPT takes it the device gets its error response, and the
    call still succeeds."""
    obj = call.ctx.lookup_type(req.dev_id, ObjType.DEVICE, "device")
    idev: Any = obj
    if not idev.host_dev.is_mock:
        raise IommuError(E.EINVAL, f"Device {req.dev_id} is not a mock device.",
                         dev_id=req.dev_id)
    report(idev, req.pasid or None, req.grpid, req.perm, req.addr)
    return pb.TestTriggerIopfResponse()
