"""IOAS objects and their operations (ioas.c): an I/O address space backed by
one native IoPagetable.

All address arithmetic, validation after the IOAS lookup, IOVA allocation,
map, unmap and translation happen in rust_core; the handlers here only order
the steps the way ioas.c does (argument checks, then the lookup, then the
table).
"""
from __future__ import annotations

import array
import asyncio
import errno as E
from typing import TYPE_CHECKING, Any

from iommud import _core, files
from iommud.errors import IommuError, check_reserved
from iommud.failnth import step
from iommud.io_pagetable import pack_u64s, u64s
from iommud.limits import enforced
from iommud.objects import IommufdObject, ObjType
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_IOAS_MAP_FIXED_IOVA,
    IOMMU_OPTION_HUGE_PAGES,
    IOMMU_OPTION_OP_GET,
    IOMMU_OPTION_OP_SET,
    IOMMU_OPTION_RLIMIT_MODE,
    PAGE_SIZE,
    U64_MAX,
)

if TYPE_CHECKING:
    from iommud.call import Call
    from iommud.context import IommufdContext
    from iommud.hw_pagetable import HwptPaging


class IoasAccess(IommufdObject):
    """IOMMUFD_OBJ_ACCESS (struct iommufd_access, device.c): an in-kernel
    user of one IOAS's pages, the selftest's access (selftest.Access) or
    the internal one a HW queue pins its memory with (viommu.HwQueueAccess).
    Attaching it imposes its alignment on the IOAS; its pins keep their
    areas from being unmapped under it (or, `locks_areas`, at all)."""

    type = ObjType.ACCESS
    #: Whether its pins lock their areas against unmap (area->num_locks).
    locks_areas = False

    def __init__(self, obj_id: int) -> None:
        super().__init__(obj_id)
        self.ioas: Ioas | None = None
        #: Pinned ranges by item id: (iova, last).
        self.items: dict[int, tuple[int, int]] = {}

    @property
    def iova_alignment(self) -> int:
        """What iopt_add_access imposes: PAGE_SIZE for an access that pins."""
        return PAGE_SIZE

    def attach(self, ioas: Ioas) -> None:
        """iopt_add_access (iommufd_access_attach_internal): the IOAS takes
        this access's alignment (EADDRINUSE over misaligned areas) and
        holds it."""
        ioas.accesses.append(self)
        try:
            ioas.iopt.set_iova_alignment(ioas.required_alignment())
        except BaseException:
            ioas.accesses.remove(self)
            raise
        ioas.users += 1
        self.ioas = ioas

    def detach(self) -> None:
        """iommufd_access_unpin_pages, then iommufd_access_detach_internal."""
        ioas = self.ioas
        if ioas is None:
            return
        self.items.clear()
        ioas.accesses.remove(self)
        ioas.users -= 1
        ioas.iopt.set_iova_alignment(ioas.required_alignment())
        self.ioas = None

    def pins(self, first: int, last: int) -> bool:
        return any(lo <= last and first <= hi for lo, hi in self.items.values())

    def unmap_notify(self, first: int, last: int) -> None:
        """The access's unmap callback for [first, last]."""
        raise NotImplementedError


class Ioas(IommufdObject):
    type = ObjType.IOAS

    def __init__(self, obj_id: int, max_areas: int | None = None) -> None:
        super().__init__(obj_id)
        self.iopt = _core.IoPagetable()
        #: The configured areas limit; the table enforces it outside replay.
        self.max_areas = max_areas
        self.iopt.set_max_areas(max_areas if enforced() else None)
        #: Paging HWPTs mirroring this IOAS (each holds a users ref on it).
        self.domains: list[HwptPaging] = []
        #: IOMMU_OPTION_HUGE_PAGES; off forces PAGE_SIZE alignment.
        self.huge_pages = True
        #: Emulated devices' accesses attached to this IOAS (each holds a
        #: users ref); they are told before their pinned ranges are unmapped.
        self.accesses: list[IoasAccess] = []

    def required_alignment(self) -> int:
        """The largest minimum page size among the domains and the accesses
        that pin pages, and PAGE_SIZE while huge pages are disabled
        (iopt_calculate_iova_alignment)."""
        align = max([1, *(d.min_page_size for d in self.domains),
                     *(a.iova_alignment for a in self.accesses)])
        return align if self.huge_pages else max(align, PAGE_SIZE)

    def set_huge_pages(self, enabled: bool) -> None:
        """iopt_enable_large_pages / iopt_disable_large_pages: disabling is
        EINVAL while the IOAS has both domains and areas (filled leaves cannot
        shrink), and EADDRINUSE when an area is not PAGE_SIZE aligned; on
        failure nothing changes."""
        if enabled == self.huge_pages:
            return
        if not enabled and self.domains and self.num_areas:
            raise IommuError(E.EINVAL, f"Huge pages cannot be disabled on IOAS {self.id} while "
                             f"it has both domains and mappings.", ioas_id=self.id)
        self.huge_pages = enabled
        try:
            self.iopt.set_iova_alignment(self.required_alignment())  # EADDRINUSE
        except OSError:
            self.huge_pages = not enabled
            raise
        # Fills from now on map one PAGE_SIZE at a time (batch_iommu_map_small).
        self.iopt.set_large_pages(enabled)

    def notify_unmap(self, iova: int, length: int) -> None:
        """Before [iova, iova+length) is unmapped, every access with pins in
        the areas it touches drops them (iommufd_access_notify_unmap, called
        from iopt_unmap_iova_range with each area's whole range)."""
        files.sources_of(self).unmapping(iova, length)
        if not self.accesses or not length:
            return
        last = min(iova + length - 1, (1 << 64) - 1)
        first = self.iopt.area_from(iova)
        end = self.iopt.area_from(last)
        start = min(iova, first[0]) if first is not None else iova
        if end is not None and end[0] <= last:
            last = max(last, end[0] + end[1] - 1)
        for access in list(self.accesses):
            access.unmap_notify(start, last)

    def first_locked_area(self, iova: int, length: int) -> int | None:
        """The IOVA of the first area in [iova, iova+length) that an
        internal access pins and locks (area->num_locks: a HW queue's
        memory), or None."""
        locking = [a for a in self.accesses if a.locks_areas and a.items]
        if not locking or not length or iova + length - 1 > U64_MAX:
            return None
        last = iova + length - 1
        at = iova
        while at <= last:
            area = self.iopt.area_from(at)
            if area is None or area[0] > last:
                return None
            a_last = area[0] + area[1] - 1
            if any(a.pins(area[0], a_last) for a in locking):
                return area[0]
            if a_last >= last:
                return None
            at = a_last + 1
        return None

    def pinned_by_access(self, first: int, last: int) -> bool:
        """Does an access pin pages of [first, last]?"""
        return any(a.pins(first, last) for a in self.accesses)

    def destroy(self) -> None:
        # Destroying an IOAS drops every mapping it still holds (iommufd_ioas_destroy).
        self.iopt.unmap_all()
        files.sources_of(self).clear()

    def describe(self, info: Any) -> None:
        info.areas = self.num_areas
        info.mapped_bytes = self.mapped_bytes

    @property
    def num_areas(self) -> int:
        return self.iopt.num_areas

    @property
    def mapped_bytes(self) -> int:
        return self.iopt.mapped_bytes


def new_ioas(ctx: IommufdContext) -> Ioas:
    """A fresh IOAS in `ctx`, under the context's limits and account."""
    ioas = Ioas(ctx.new_id(), ctx.limits.max_areas_per_ioas)
    ctx.insert(ioas)
    ctx.account.track(ioas)
    return ioas


# -- handlers -------------------------------------------------------------------------------

def ioas_alloc(call: Call, req: pb.IoasAllocRequest) -> pb.IoasAllocResponse:
    """IOMMU_IOAS_ALLOC (iommufd_ioas_alloc_ioctl)."""
    if req.flags:
        raise IommuError(E.EOPNOTSUPP, f"IOAS_ALLOC takes no flags; got {req.flags:#x}.")
    return pb.IoasAllocResponse(out_ioas_id=new_ioas(call.ctx).id)


def ioas_iova_ranges(call: Call, req: pb.IoasIovaRangesRequest) -> pb.IoasIovaRangesResponse:
    """IOMMU_IOAS_IOVA_RANGES (iommufd_ioas_iova_ranges): the holes of the
    reserved ranges, and the alignment. With a capacity `num_iovas` below
    the count, EMSGSIZE reports the count needed in the error's metadata
    (the kernel writes it back in num_iovas)."""
    check_reserved(req.reserved)
    ioas = call.ctx.get(req.ioas_id, Ioas, "IOAS")
    ranges = ioas.iopt.iova_ranges()
    if req.HasField("num_iovas") and len(ranges) > req.num_iovas:
        raise IommuError(E.EMSGSIZE, f"IOAS {req.ioas_id} has {len(ranges)} usable IOVA ranges "
                         f"but the caller has room for {req.num_iovas}.", num_iovas=len(ranges))
    return pb.IoasIovaRangesResponse(
        num_iovas=len(ranges), out_iova_alignment=ioas.iopt.iova_alignment,
        allowed_iovas=[pb.IovaRange(start=s, last=last) for s, last in ranges])


def ioas_allow_iovas(call: Call, req: pb.IoasAllowIovasRequest) -> pb.IoasAllowIovasResponse:
    """IOMMU_IOAS_ALLOW_IOVAS (iommufd_ioas_allow_iovas): replace the allowed
    list atomically."""
    check_reserved(req.reserved)
    ioas = call.ctx.get(req.ioas_id, Ioas, "IOAS")
    ioas.iopt.allow_iovas([(r.start, r.last) for r in req.allowed_iovas])
    return pb.IoasAllowIovasResponse()


def ioas_map(call: Call, req: pb.IoasMapRequest) -> pb.IoasMapResponse:
    """IOMMU_IOAS_MAP (iommufd_ioas_map); returns the IOVA of the new area."""
    ctx = call.ctx
    check_reserved(req.reserved)
    _core.check_map_args(req.flags, req.iova, req.length)
    ioas = ctx.get(req.ioas_id, Ioas, "IOAS")
    ctx.account.charge(req.length)
    step("area")
    iova = ioas.iopt.map(req.flags, req.user_va, req.length, req.iova)
    if req.user_pages_missing and ioas.domains:
        # iopt_map_user_pages places the area, then pins its pages for every
        # domain (iopt_fill_domains_pages, through GUP): pages that are not
        # there fault, and the area goes again.
        ioas.iopt.unmap(iova, req.length)
        raise IommuError(E.EFAULT, f"The user memory at {req.user_va:#x} (+{req.length:#x}) is "
                         f"not all mapped; the IOAS's domains pin it at once.",
                         user_va=req.user_va, length=req.length)
    mm = files.mm_of(call)
    if mm is not None:  # iopt_alloc_user_pages: the pages of current->mm
        files.sources_of(ioas).record(iova, files.Pages(
            files.Kind.USER, req.user_va, req.length, mm=mm, account_mode=files.account_mode(ctx)))
    return pb.IoasMapResponse(iova=iova)


def ioas_map_batch(call: Call, req: pb.IoasMapBatchRequest) -> pb.IoasMapBatchResponse:
    """Many IOMMU_IOAS_MAPs with one flags value, all or nothing; returns the
    new areas' IOVAs packed little-endian. Not in the kernel's uAPI. The
    checks run in IOAS_MAP's order over the whole batch (reserved, flags,
    overflow, lookup, the session's mapped-bytes limit), then the core maps
    every entry or, on the first failure, none, naming the entry."""
    ctx = call.ctx
    check_reserved(req.reserved)
    vas, lens = u64s(req.user_vas, "user_vas"), u64s(req.lengths, "lengths")
    fixed = bool(req.flags & IOMMU_IOAS_MAP_FIXED_IOVA)
    ios = (u64s(req.iovas, "iovas") if (fixed or req.iovas)
           else array.array("Q", bytes(len(req.lengths))))
    if not len(vas) == len(lens) == len(ios):
        raise IommuError(E.EINVAL, f"A map batch needs equal counts of user_vas, lengths and "
                         f"iovas, not {len(vas):#x}, {len(lens):#x} and {len(ios):#x}.",
                         user_vas=len(vas), lengths=len(lens), iovas=len(ios))
    _core.check_map_args(req.flags, max(ios, default=0) if fixed else 0, max(lens, default=0))
    ioas = ctx.get(req.ioas_id, Ioas, "IOAS")
    ctx.account.charge(sum(lens), areas=len(lens))
    step("area")
    return pb.IoasMapBatchResponse(iovas=pack_u64s(ioas.iopt.map_batch(req.flags, vas, lens, ios)))


def ioas_copy(call: Call, req: pb.IoasCopyRequest) -> pb.IoasCopyResponse:
    """IOMMU_IOAS_COPY (iommufd_ioas_copy); returns the destination IOVA."""
    ctx = call.ctx
    _core.check_copy_args(req.flags, req.src_iova, req.length, req.dst_iova)
    src = ctx.get(req.src_ioas_id, Ioas, "source IOAS")
    dst = ctx.get(req.dst_ioas_id, Ioas, "destination IOAS")
    # The areas the range holds, at most: the budget charges them ahead.
    ctx.account.charge(req.length, areas=min(src.num_areas, req.length))
    step("area")
    src_sources = files.sources_of(src)
    if dst.domains and not src.domains:
        # iopt_copy_iova fills dst's domains from the source's pages: those
        # no domain holds yet must be pinned now.
        for area, pages in src_sources.pages_in(req.src_iova, req.length):
            files.check_pin(pages, area[2], area[1])
    dst_iova = _core.copy(dst.iopt, src.iopt, req.flags, req.src_iova, req.length, req.dst_iova)
    if src_sources:
        files.sources_of(dst).after_copy(src_sources, req.src_iova, req.length, dst_iova)
    return pb.IoasCopyResponse(dst_iova=dst_iova)


def ioas_unmap(call: Call, req: pb.IoasUnmapRequest) -> pb.IoasUnmapResponse:
    """IOMMU_IOAS_UNMAP (iommufd_ioas_unmap): whole areas only; returns the
    bytes unmapped. Not atomic (iopt_unmap_iova_range): a range whose end cuts
    an area fails with ENOENT after removing the whole areas before it; the
    op table marks it `partial`, so the journal replays it rather than
    skipping it, and it does the same again."""
    ioas = call.ctx.get(req.ioas_id, Ioas, "IOAS")
    locked = ioas.first_locked_area(req.iova, req.length)
    if locked is not None:
        # iopt_unmap_iova_range walks the areas in order: those before the
        # locked one go, then it stops at it (EBUSY).
        first = ioas.iopt.area_from(req.iova)
        if first is not None and first[0] < locked:
            ioas.notify_unmap(req.iova, locked - req.iova)
            ioas.iopt.unmap(req.iova, locked - req.iova)
        raise IommuError(E.EBUSY, f"The area at {locked:#x} is locked by a HW queue that "
                         f"pins it; destroy the queue first.", iova=locked)
    ioas.notify_unmap(req.iova, req.length)
    return pb.IoasUnmapResponse(length=ioas.iopt.unmap(req.iova, req.length))


def translate(call: Call, req: pb.TranslateRequest) -> pb.TranslateResponse:
    """(pa, prot) of one IOVA; ENOENT when unmapped."""
    pa, prot = call.ctx.get(req.ioas_id, Ioas, "IOAS").iopt.translate(req.iova)
    return pb.TranslateResponse(iova=req.iova, pa=pa, prot=prot)


async def translate_batch(call: Call, req: pb.TranslateBatchRequest) -> pb.TranslateBatchResponse:
    """Many IOVAs in one call, packed u64; large batches run off the event
    loop (the core drops the GIL)."""
    data = req.iovas
    if len(data) % 8:
        raise IommuError(E.EINVAL, f"The iovas field holds {len(data):#x} bytes, not a whole "
                         f"number of 8-byte addresses.")
    count = len(data) // 8
    cfg = call.rt.config
    if count > cfg.max_translate_batch:
        raise IommuError(E.ENOMEM, f"A batch of {count:#x} addresses exceeds the limit of "
                         f"{cfg.max_translate_batch:#x}.", limit=cfg.max_translate_batch)
    iopt = call.ctx.get(req.ioas_id, Ioas, "IOAS").iopt
    if count >= cfg.offload_batch:
        pas, prots = await asyncio.to_thread(iopt.translate_batch, data)
    else:
        pas, prots = iopt.translate_batch(data)
    return pb.TranslateBatchResponse(pas=pas, prots=prots, mapped_count=count - prots.count(0))


#: The most areas one ListAreas answers: a page, so that no call keeps the
#: event loop busy for long (an IOAS may hold a million areas).
LIST_AREAS_PAGE = 4096


def list_areas(call: Call, req: pb.ListAreasRequest) -> pb.ListAreasResponse:
    """One page of the IOAS's areas, from the one holding or following
    `start_iova`; `more`/`next_iova` say where the next page starts."""
    iopt = call.ctx.get(req.ioas_id, Ioas, "IOAS").iopt
    limit = min(req.max_areas or LIST_AREAS_PAGE, LIST_AREAS_PAGE)
    resp = pb.ListAreasResponse()
    at = req.start_iova
    while True:
        area = iopt.area_from(at)
        if area is None:
            return resp
        if len(resp.areas) == limit:
            resp.more, resp.next_iova = True, area[0]
            return resp
        iova, length, user_va, prot = area
        resp.areas.add(iova=iova, length=length, user_va=user_va, prot=prot)
        if iova + length > (1 << 64) - 1:
            return resp
        at = iova + length


def option(call: Call, req: pb.OptionRequest) -> pb.OptionResponse:
    """IOMMU_OPTION (iommufd_option, iommufd_ioas_option); val64 is written
    back for GET and SET."""
    ctx = call.ctx
    check_reserved(req.reserved)
    if req.op not in (IOMMU_OPTION_OP_SET, IOMMU_OPTION_OP_GET):
        raise IommuError(E.EOPNOTSUPP, f"Unknown IOMMU_OPTION op {req.op}.")
    if req.option_id == IOMMU_OPTION_RLIMIT_MODE:
        return pb.OptionResponse(val64=_rlimit_mode(call, req))
    if req.option_id == IOMMU_OPTION_HUGE_PAGES:
        return pb.OptionResponse(val64=_huge_pages(ctx, req))
    raise IommuError(E.EOPNOTSUPP, f"Unknown IOMMU_OPTION id {req.option_id}.")


def _rlimit_mode(call: Call, req: pb.OptionRequest) -> int:
    ctx = call.ctx
    if req.object_id:
        raise IommuError(E.EOPNOTSUPP, "RLIMIT_MODE is global; object_id must be 0.")
    if req.op == IOMMU_OPTION_OP_GET:
        return ctx.account_mode
    if not call.rt.config.cap_sys_resource:
        raise IommuError(E.EPERM, "Changing RLIMIT_MODE needs CAP_SYS_RESOURCE.")
    if len(ctx):
        raise IommuError(E.EBUSY, f"RLIMIT_MODE cannot change while the context holds "
                         f"{len(ctx)} objects.")
    if req.val64 > 1:
        raise IommuError(E.EINVAL, f"RLIMIT_MODE is 0 or 1, not {req.val64:#x}.")
    ctx.account_mode = req.val64
    return req.val64


def _huge_pages(ctx: IommufdContext, req: pb.OptionRequest) -> int:
    ioas = ctx.get(req.object_id, Ioas, "IOAS")
    if req.op == IOMMU_OPTION_OP_GET:
        return int(ioas.huge_pages)
    if req.val64 not in (0, 1):
        raise IommuError(E.EINVAL, f"HUGE_PAGES is 0 or 1, not {req.val64:#x}.")
    ioas.set_huge_pages(bool(req.val64))
    return req.val64


def ioas_change_process(call: Call,
                        req: pb.IoasChangeProcessRequest) -> pb.IoasChangeProcessResponse:
    """IOMMU_IOAS_CHANGE_PROCESS (iommufd_ioas_change_process): every area
    of every IOAS of the context must be a file's (EINVAL otherwise: user
    memory is its process's, a dma-buf its exporter's); then the pages of
    them all are charged to the caller (change_mm): a raw-transport process
    moves them to its own VmPin and VmLck; over gRPC, where the session is
    the process, nothing moves."""
    check_reserved(req.reserved)
    moving: dict[int, files.Pages] = {}
    for obj in call.ctx.objects():
        if not isinstance(obj, Ioas) or not obj.num_areas:
            continue
        known = {area[0]: pages for area, pages in files.sources_of(obj).entries()}
        for iova, _length, _pa, _prot in obj.iopt.areas():
            pages = known.get(iova)
            if pages is None or pages.kind is not files.Kind.FILE:
                raise IommuError(E.EINVAL, f"IOAS {obj.id} maps {_source_name(pages)} at "
                                 f"{iova:#x}; only the pages of files can change process.",
                                 ioas_id=obj.id, iova=iova)
            moving[id(pages)] = pages
    mm = files.mm_of(call)
    for pages in moving.values():
        pages.mm = mm
    return pb.IoasChangeProcessResponse()


def _source_name(pages: files.Pages | None) -> str:
    if pages is not None and pages.kind is files.Kind.DMABUF:
        return "a dma-buf"
    return "user memory"


def ioas_map_file(call: Call, req: pb.IoasMapFileRequest) -> pb.IoasMapFileResponse:
    """IOMMU_IOAS_MAP_FILE (iommufd_ioas_map_file, iopt_map_file_pages):
    IOAS_MAP's flag checks, the IOAS, the file range, the file (a dma-buf:
    iopt_alloc_dmabuf_pages; anything else: iopt_alloc_file_pages), then the
    area is placed and, into an IOAS with domains, its pages pinned at once
    (memfd_pin_folios: EINVAL for pages past the file's end or of a file
    that is no memfd), the area going again if they cannot be."""
    ctx = call.ctx
    _core.check_map_args(req.flags, req.iova, req.length)
    ioas = ctx.get(req.ioas_id, Ioas, "IOAS")
    if not req.length:
        raise IommuError(E.EINVAL, "The length is zero.")
    if req.start + req.length - 1 > U64_MAX:
        raise IommuError(E.EOVERFLOW, f"start {req.start:#x} + length {req.length:#x} wraps "
                         f"past 2^64.", start=req.start, length=req.length)
    entry = call.sess.fd_entry(req.fd)  # EBADF
    if not isinstance(entry, files.FileFd):
        raise IommuError(E.EINVAL, f"fd {req.fd} is a {entry.kind} fd; iommud maps the pages of "
                         f"memfds and dma-bufs only.", fd=req.fd)
    file = entry.file
    kind, mode = files.Kind.FILE, files.account_mode(ctx)
    if file.kind is files.Kind.DMABUF:
        if file.size() <= req.start + req.length - 1:
            raise IommuError(E.EINVAL, f"The range {req.start:#x} + {req.length:#x} runs past "
                             f"the dma-buf's {file.size():#x} bytes.", start=req.start,
                             length=req.length)
        if file.revoked:  # the exporter's map callback refuses (iopt_map_dmabuf)
            raise IommuError(E.ENODEV, "The dma-buf is revoked.", fd=req.fd)
        kind, mode = files.Kind.DMABUF, files.ACCOUNT_NONE  # no pinned-page accounting
    if req.start + req.length > files.FILE_OFFSET_LIMIT:
        raise IommuError(E.EOVERFLOW, f"iommud names file pages up to offset "
                         f"{files.FILE_OFFSET_LIMIT:#x}; {req.start:#x} + {req.length:#x} is "
                         f"past it.", start=req.start, length=req.length)
    ctx.account.charge(req.length)
    step("area")
    pages = files.Pages(kind, file.pa(req.start), req.length, file=file,
                        mm=files.mm_of(call), account_mode=mode)
    iova = ioas.iopt.map(req.flags, pages.base, req.length, req.iova)
    if ioas.domains:
        try:
            files.check_pin(pages, pages.base, req.length)  # iopt_fill_domains_pages
        except BaseException:
            ioas.iopt.unmap(iova, req.length)
            raise
    files.sources_of(ioas).record(iova, pages)
    return pb.IoasMapFileResponse(iova=iova)


def process_pins(call: Call, req: pb.ProcessPinsRequest) -> pb.ProcessPinsResponse:
    """What iommufd charges process `pid` (iopt_pages_update_pinned): the
    pages of the areas it is the source of that a domain or an access pins,
    counted once per source (areas IOAS_COPY made share their pages), all in
    pinned_vm (VmPin), those under RLIMIT_MODE 1 in locked_vm too (VmLck).
    A dma-buf's pages are not accounted."""
    mm = files.current_mm(req.pid)
    if mm is None:
        return pb.ProcessPinsResponse()
    pinned: dict[int, tuple[files.Pages, set[int]]] = {}
    for sess in call.rt.sessions:
        for ctx in sess.reachable_contexts():
            for obj in ctx.object_list():
                if isinstance(obj, Ioas):
                    _count_pins(obj, mm, pinned)
    total = sum(len(pages) for _, pages in pinned.values())
    locked = sum(len(pages) for p, pages in pinned.values()
                 if p.account_mode == files.ACCOUNT_MM)
    return pb.ProcessPinsResponse(pinned_pages=total, locked_pages=locked)


def _count_pins(ioas: Ioas, mm: files.Mm,
                pinned: dict[int, tuple[files.Pages, set[int]]]) -> None:
    sources = files.sources_of(ioas)
    if not sources:
        return
    for (iova, length, pa, _prot), pages in sources.entries():
        if pages.mm is not mm or pages.kind is files.Kind.DMABUF:
            continue
        if ioas.domains:
            ranges = [(iova, iova + length - 1)]
        else:  # only what accesses pin
            last = iova + length - 1
            ranges = [(max(lo, iova), min(hi, last)) for a in ioas.accesses
                      for lo, hi in a.items.values() if lo <= last and iova <= hi]
        if not ranges:
            continue
        entry = pinned.setdefault(id(pages), (pages, set()))
        for lo, hi in ranges:
            first_pa, last_pa = pa + (lo - iova), pa + (hi - iova)
            entry[1].update(range(first_pa // PAGE_SIZE, last_pa // PAGE_SIZE + 1))
