"""What backs an area: the pages of a process, of a file, or of a dma-buf
(pages.c's iopt_pages and its three address types; io_pagetable.c's
iopt_map_file_pages; ioas.c's change_process).

Physical addresses. The model's PA of a user page is its address in the
mapping process (rust_core fills a domain with the area's `user_va`). A file
page has no user address, so the model gives every file it maps a slot of
PA space: PA = FILE_PA | space | slot << SLOT_SHIFT | offset. Bit 63 is never
set in a Linux user address, so a file page's PA cannot be a user page's;
within a slot the PA is the file offset, so pages of one file at one offset
have one PA however many times, and by whomever, they are mapped. Files of
the raw uAPI transport (memfds passed with SCM_RIGHTS, and the selftest's
dma-bufs it makes) take slots in one space, lowest free; files of gRPC
sessions (memfds the daemon makes for them, OpenMemfd, and their dma-bufs)
take slots in the other, lowest free too, so that journal replay, which
re-runs every gRPC call in order, gives every file the slot it had.

A file keeps its slot while anything holds it: an fd of a session (its
FileFd) or an area's pages (Pages, shared by IOAS_COPY as the kernel shares
iopt_pages). Each IOAS keeps, beside its native table, the Pages of the
areas it knows the source of (`Ioas.pages`): every area of IOAS_MAP_FILE and
every area a process of the raw transport mapped; an area without an entry
is user memory of no process the model follows (gRPC's user addresses, and
the legacy container paths).

Processes. A raw-transport caller's pid names the mm whose memory an
IOAS_MAP maps, and to which pinned pages are charged; the model follows it
with a pidfd, so that a domain that must pin an exited process's pages fails
EFAULT (iopt_fill_domain through GUP of a gone mm), and so that
/proc/<pid>/status's VmPin and VmLck can be told (pinned_vm, locked_vm).
"""
from __future__ import annotations

import bisect
import enum
import errno as E
import fcntl
import os
import select
import threading
import weakref
from typing import TYPE_CHECKING, Any

from iommud.errors import IommuError
from iommud.ids import LowestFreeAllocator
from iommud_wire import pb
from iommud_wire.uapi import PAGE_SIZE, U64_MAX

if TYPE_CHECKING:
    from iommud.call import Call

#: Every file page's PA has bit 63 set; bit 62 picks the space (gRPC's files).
FILE_PA = 1 << 63
GRPC_SPACE = 1 << 62
#: A file's slot is 1 TiB of PA: offsets at or past it are not mapped.
SLOT_SHIFT = 40
FILE_OFFSET_LIMIT = 1 << SLOT_SHIFT
SLOTS = 1 << 22


class Kind(enum.IntEnum):
    """enum iopt_address_type: what an area's pages are."""

    USER = 0
    FILE = 1
    DMABUF = 2


#: enum iopt_pages_account_mode: IOPT_PAGES_ACCOUNT_NONE, _USER, _MM.
ACCOUNT_NONE, ACCOUNT_USER, ACCOUNT_MM = 0, 1, 2


def is_file_pa(pa: int) -> bool:
    return bool(pa & FILE_PA)


# -- processes --------------------------------------------------------------------------------

class Mm:
    """A process (its mm) of the raw transport, followed by a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except OSError:
            self._pidfd = None  # already gone (or not ours to see): treated as gone

    def alive(self) -> bool:
        """mmget_not_zero: the process has not exited."""
        if self._pidfd is None:
            return False
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        return not poller.poll(0)

    def __del__(self) -> None:
        if self._pidfd is not None:
            try:
                os.close(self._pidfd)
            except OSError:
                pass
            self._pidfd = None

    def __reduce__(self) -> Any:  # never snapshotted: raw sessions are not
        raise TypeError("a raw transport process cannot be snapshotted")


_mms: weakref.WeakValueDictionary[int, Mm] = weakref.WeakValueDictionary()
_mms_lock = threading.Lock()


def mm_of(call: Call) -> Mm | None:
    """The process a call of the raw transport acts for (current->mm); None
    for gRPC, whose calls name no process's memory."""
    caller = call.caller
    if not caller.process or not caller.pid:
        return None
    with _mms_lock:
        mm = _mms.get(caller.pid)
        if mm is None or not mm.alive():
            mm = _mms[caller.pid] = Mm(caller.pid)
        return mm


# -- files ------------------------------------------------------------------------------------

class _Slots:
    """Lowest-free slots of one PA space."""

    def __init__(self) -> None:
        self.alloc = LowestFreeAllocator(0, SLOTS - 1)

    def take(self) -> int:
        slot = self.alloc.alloc()
        if slot is None:
            raise IommuError(E.ENOSPC, f"Every one of the {SLOTS:#x} file slots of PA space "
                             f"is in use.")
        return slot


_raw_slots = _Slots()
_grpc_slots = _Slots()
_lock = threading.RLock()
#: Host files of the raw transport by (st_dev, st_ino): one file, one slot.
_host_files: dict[tuple[int, int], MappedFile] = {}


class MappedFile:
    """A file whose pages an area may map: a memfd (or any shmem or
    hugetlbfs file) a process passed (`fd` is the daemon's own open file), a
    daemon-side memfd of a gRPC session (its size only: no bytes), or a
    selftest dma-buf."""

    def __init__(self, kind: Kind, grpc: bool, *, fd: int | None = None, size: int = 0,
                 name: str = "", key: tuple[int, int] | None = None) -> None:
        self.kind = kind
        self.grpc = grpc
        self.fd = fd
        self._size = size
        self.name = name
        self.key = key
        #: Holders: fds of sessions and areas' Pages.
        self.refs = 0
        #: A dma-buf's exporter revoked it (IOMMU_TEST_OP_DMABUF_REVOKE).
        self.revoked = False
        #: A dma-buf's Pages (its iommufd attachments), told of a revoke.
        self.attachments: weakref.WeakSet[Pages] = weakref.WeakSet()
        settle_all()  # a slot an unmapped area freed is free again first
        self.slot = (_grpc_slots if grpc else _raw_slots).take()

    @property
    def base(self) -> int:
        return FILE_PA | (GRPC_SPACE if self.grpc else 0) | self.slot << SLOT_SHIFT

    def pa(self, offset: int) -> int:
        return self.base + offset

    def size(self) -> int:
        """i_size now: a passed file is asked (its owner may ftruncate it)."""
        if self.fd is not None:
            try:
                return os.fstat(self.fd).st_size
            except OSError:
                return 0
        return self._size

    def truncate(self, size: int) -> None:
        self._size = size

    def read(self, offset: int, length: int) -> bytes:
        """A passed file's bytes at `offset`, as a copy from its pages finds
        them (iopt_pages_rw_slow). Past its end, where only a domain's pin
        still holds a truncated folio, the kernel reads the folio's old
        bytes; iommud keeps no bytes and reads zeros."""
        assert self.fd is not None
        data = os.pread(self.fd, length, offset) if offset < self.size() else b""
        return data.ljust(length, b"\0")

    def write(self, offset: int, data: bytes) -> None:
        """Into a passed file's pages at `offset`: what lies past its end now
        goes nowhere (a folio truncated away is no longer the file's); a
        write never grows the file."""
        assert self.fd is not None
        keep = max(0, min(len(data), self.size() - offset))
        if keep:
            os.pwrite(self.fd, data[:keep], offset)

    def shmem(self) -> bool:
        """memfd_pin_folios pins only shmem and hugetlbfs files; those are the
        files F_GET_SEALS answers for."""
        if self.kind is not Kind.FILE:
            return False
        if self.fd is None:
            return True  # a daemon-side memfd
        try:
            fcntl.fcntl(self.fd, fcntl.F_GET_SEALS)
        except OSError:
            return False
        return True

    def get(self) -> MappedFile:
        with _lock:
            self.refs += 1
        return self

    def put(self) -> None:
        with _lock:
            self.refs -= 1
            if self.refs:
                return
            if self.key is not None and _host_files.get(self.key) is self:
                del _host_files[self.key]
            (_grpc_slots if self.grpc else _raw_slots).alloc.release(self.slot)
            if self.fd is not None:
                fd, self.fd = self.fd, None
                os.close(fd)

    def __getstate__(self) -> dict[str, Any]:
        """For a snapshot (gRPC files only: raw sessions are never in one)."""
        if self.fd is not None:
            raise TypeError("a file of the raw transport cannot be snapshotted")
        state = self.__dict__.copy()
        state["attachments"] = list(self.attachments)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        attachments = state.pop("attachments", [])
        self.__dict__.update(state)
        self.attachments = weakref.WeakSet(attachments)

    def invalidate(self) -> None:
        """dma_buf_invalidate_mappings: every attachment's pages are revoked
        for good (iopt_revoke_notify unmaps them from every domain), whether
        the exporter revokes or restores."""
        global _revoked_seen
        for pages in list(self.attachments):
            if not pages.revoked:
                pages.revoked = True
                _revoked_seen = True


def host_file(fd: int) -> MappedFile:
    """The MappedFile of a file a raw-transport process passed (the daemon's
    `fd` stays the caller's to close): one per (st_dev, st_ino), its own dup
    of the file kept while anything holds it."""
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _lock:
        found = _host_files.get(key)
        if found is not None:
            return found
        mine = os.dup(fd)
        try:
            file = MappedFile(Kind.FILE, False, fd=mine, key=key)
        except BaseException:
            os.close(mine)
            raise
        _host_files[key] = file
        return file


def host_file_at(major: int, minor: int, ino: int) -> MappedFile | None:
    """The mapped host file behind a shared mapping /proc/<pid>/maps shows
    as major:minor and inode, if the daemon holds it."""
    return _host_files.get((os.makedev(major, minor), ino))


def host_file_of_pa(pa: int) -> tuple[MappedFile, int] | None:
    """The raw transport's file whose slot names `pa`, and the offset in it
    (None for a PA no held host file names)."""
    if not is_file_pa(pa) or pa & GRPC_SPACE:
        return None
    slot = (pa & ~(FILE_PA | GRPC_SPACE)) >> SLOT_SHIFT
    with _lock:
        for file in _host_files.values():
            if file.slot == slot and file.fd is not None:
                return file, pa - file.base
    return None


def host_files_live() -> bool:
    return bool(_host_files)


def grpc_slots_state() -> Any:
    return _grpc_slots.alloc


def grpc_slots_continue(state: Any) -> None:
    """A snapshot's gRPC slot allocator (the files it names came with it)."""
    if isinstance(state, LowestFreeAllocator):
        _grpc_slots.alloc = state


class FileFd:
    """A session's fd of a file it may map: a daemon-side memfd (OpenMemfd),
    a selftest dma-buf (DMABUF_GET), or, for the length of one call, a file
    a raw-transport process passed. Closing it drops the fd's hold."""

    kind = "file"

    def __init__(self, file: MappedFile) -> None:
        self.file = file.get()
        self.closed = False

    def release(self) -> int:
        if not self.closed:
            self.closed = True
            self.file.put()
        return 0


# -- the pages behind areas ----------------------------------------------------------------------

class Pages:
    """iopt_pages: one mapping's source, shared by the areas IOAS_COPY makes
    of it. `base` is where its first byte is in PA space (a user address, or
    the file's PA of `start`)."""

    __slots__ = ("__weakref__", "account_mode", "areas", "base", "file", "kind", "length", "mm",
                 "revoked")

    def __init__(self, kind: Kind, base: int, length: int, *, file: MappedFile | None = None,
                 mm: Mm | None = None, account_mode: int = ACCOUNT_USER) -> None:
        self.kind = kind
        self.base = base
        self.length = length
        self.file = file
        self.mm = mm
        self.account_mode = account_mode
        #: Areas (in any IOAS) made of these pages.
        self.areas = 0
        #: A dma-buf's pages stay revoked once its exporter revoked them
        #: (iopt_revoke_notify zeroes their phys for good).
        self.revoked = False
        if file is not None and file.kind is Kind.DMABUF:
            file.attachments.add(self)

    def hold(self) -> None:
        """One more area is made of these pages (the first holds the file)."""
        if not self.areas and self.file is not None:
            self.file.get()
        self.areas += 1

    def drop(self) -> None:
        self.areas -= 1
        if not self.areas and self.file is not None:
            self.file.put()

    def __getstate__(self) -> dict[str, Any]:
        if self.mm is not None:
            raise TypeError("pages of a raw transport process cannot be snapshotted")
        return {name: getattr(self, name) for name in self.__slots__ if name != "__weakref__"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        global _revoked_seen
        for name, value in state.items():
            setattr(self, name, value)
        _revoked_seen = _revoked_seen or self.revoked


def check_pin(pages: Pages, pa: int, length: int) -> None:
    """Could the pages under [pa, pa + length) be pinned now, for a domain?
    pfn_reader_user_pin: a file's through memfd_pin_folios (EINVAL for a file
    that is no shmem or hugetlbfs file, and past i_size); a process's through
    GUP of its mm (EFAULT once it exited, iopt_fill_domain's pin). A revoked
    dma-buf is skipped, nothing to pin."""
    if pages.kind is Kind.USER:
        if pages.mm is not None and not pages.mm.alive():
            raise IommuError(E.EFAULT, f"The process {pages.mm.pid} that mapped the user "
                             f"memory at {pa:#x} has exited; its pages cannot be pinned.",
                             user_va=pa, pid=pages.mm.pid)
        return
    file = pages.file
    if file is None or pages.kind is Kind.DMABUF:
        return
    if not file.shmem():
        raise IommuError(E.EINVAL, "Only pages of a memfd (shmem or hugetlbfs file) can be "
                         "pinned.")
    offset = pa - file.base
    size = file.size()
    last_page = (offset + length - 1) // PAGE_SIZE
    if not size or last_page > (size - 1) // PAGE_SIZE:
        raise IommuError(E.EINVAL, f"The file range {offset:#x} + {length:#x} runs past the "
                         f"file's end at {size:#x}.", start=offset, length=length, size=size)


# -- an IOAS's sources ------------------------------------------------------------------------

class AreaSources:
    """The Pages of an IOAS's areas, by the IOVA each area starts at. Kept
    beside the native table, which knows an area by (iova, length, PA):
    maps, copies and cuts record here; an unmap announces its range
    (`unmapping`, from Ioas.notify_unmap, before the table changes) and the
    entries whose area is gone are dropped at the next use (`settle`)."""

    def __init__(self, iopt: Any) -> None:
        self.iopt = iopt
        self.by_iova: dict[int, Pages] = {}
        self._keys: list[int] = []
        self._pending: list[tuple[int, int]] = []

    def __getstate__(self) -> dict[str, Any]:
        self.settle()
        return self.__dict__.copy()

    def __len__(self) -> int:
        return len(self.by_iova)

    def unmapping(self, iova: int, length: int) -> None:
        """[iova, iova + length) is about to be unmapped."""
        if self.by_iova and length:
            self._pending.append((iova, min(iova + length - 1, U64_MAX)))
            _unsettled.add(self)

    def settle(self) -> None:
        """Drop the entries whose area an unmap took (whole or partial)."""
        pending, self._pending = self._pending, []
        for first, last in pending:
            # An unmap removes only whole areas inside its range. One still
            # there keeps the range pending: the unmap may be running on a
            # worker thread (an offloaded call of another session), or it
            # failed part way (ENOENT), leaving it for good.
            kept = False
            for iova in self.within(first, last):
                area = self.iopt.area_from(iova)
                if area is None or area[0] != iova:
                    self._forget(iova)
                else:
                    kept = True
            if kept:
                self._pending.append((first, last))
                _unsettled.add(self)

    def record(self, iova: int, pages: Pages) -> None:
        self.settle()
        old = self.by_iova.get(iova)
        if old is pages:
            return
        if old is not None:
            old.drop()
        else:
            bisect.insort(self._keys, iova)
        pages.hold()
        self.by_iova[iova] = pages

    def _forget(self, iova: int) -> None:
        pages = self.by_iova.pop(iova)
        del self._keys[bisect.bisect_left(self._keys, iova)]
        pages.drop()

    def within(self, first: int, last: int) -> list[int]:
        """The recorded area starts in [first, last]."""
        lo = bisect.bisect_left(self._keys, first)
        hi = bisect.bisect_right(self._keys, last)
        return self._keys[lo:hi]

    def entries(self) -> list[tuple[tuple[int, int, int, int], Pages]]:
        """Every recorded area, as (iova, length, PA, prot), with its Pages."""
        self.settle()
        out = []
        for iova in self._keys:
            area = self.iopt.area_from(iova)
            if area is not None and area[0] == iova:
                out.append((area, self.by_iova[iova]))
        return out

    def clear(self) -> None:
        self._pending = []
        for iova in list(self._keys):
            self._forget(iova)

    def covering(self, iova: int) -> tuple[tuple[int, int, int, int], Pages] | None:
        """The area holding `iova` and its Pages, if recorded."""
        self.settle()
        area = self.iopt.area_from(iova)
        if area is None or area[0] > iova:
            return None
        pages = self.by_iova.get(area[0])
        return (area, pages) if pages is not None else None

    def after_copy(self, src: AreaSources, src_iova: int, length: int, dst_iova: int) -> None:
        """IOAS_COPY shares the source areas' pages (iopt_get_pages): each
        new area at dst takes the Pages of the area it copies."""
        src.settle()
        last = src_iova + length - 1
        at = src_iova
        while at <= last:
            area = src.iopt.area_from(at)
            if area is None or area[0] > last:
                return
            pages = src.by_iova.get(area[0])
            start = max(area[0], src_iova)
            if pages is not None:
                self.record(dst_iova + (start - src_iova), pages)
            end = area[0] + area[1] - 1
            if end >= last:
                return
            at = end + 1

    def pages_in(self, src_iova: int, length: int) -> list[tuple[tuple[int, int, int, int], Pages]]:
        """The recorded areas overlapping [src_iova, src_iova + length)."""
        last = src_iova + length - 1
        return [(a, p) for a, p in self.entries() if a[0] <= last and src_iova <= a[0] + a[1] - 1]

    def after_cut(self, cuts: list[int]) -> None:
        """iopt_cut_iova split the areas at `cuts`: the new area after each
        cut point shares the pages of the area it was cut from."""
        self.settle()
        for p in cuts:
            if p >= U64_MAX:
                continue
            right = self.iopt.area_from(p + 1)
            if right is None or right[0] != p + 1 or right[0] in self.by_iova:
                continue
            left = self.iopt.area_from(p)
            if left is not None and left[0] <= p and left[0] in self.by_iova:
                self.record(p + 1, self.by_iova[left[0]])

    def check_pins(self, pinned: Any = None) -> None:
        """Before a domain is filled with areas no other domain holds: every
        recorded area's pages must be pinnable now (iopt_fill_domain's
        pfn_reader: GUP of the source mm, memfd_pin_folios of a file).
        `pinned(first, last)` says an access already pins part of an area,
        whose pages the fill then reads from the access."""
        for area, pages in self.entries():
            if pinned is not None and pinned(area[0], area[0] + area[1] - 1):
                continue
            check_pin(pages, area[2], area[1])


def sources_of(ioas: Any) -> AreaSources:
    """The IOAS's AreaSources (made on first use: an IOAS from an older
    snapshot has none)."""
    found: AreaSources | None = ioas.__dict__.get("sources")
    if found is None:
        found = ioas.__dict__["sources"] = AreaSources(ioas.iopt)
    return found


def account_mode(ctx: Any) -> int:
    """The pages' accounting (iopt_alloc_pages, iopt_map_common): the
    context's RLIMIT_MODE, 0 USER, 1 MM. (The kernel makes it NONE for a
    caller with CAP_IPC_LOCK, which the model does not see.)"""
    return ACCOUNT_MM if getattr(ctx, "account_mode", 0) else ACCOUNT_USER


def current_mm(pid: int) -> Mm | None:
    """The process `pid` now is, if the model follows it."""
    with _mms_lock:
        mm = _mms.get(pid)
    return mm if mm is not None and mm.alive() else None


# -- handlers: the daemon-side memfds of gRPC sessions ------------------------------------------

#: memfd_create's name limit (MFD_NAME_MAX_LEN).
MEMFD_NAME_MAX = 249


def open_memfd(call: Call, req: pb.OpenMemfdRequest) -> pb.OpenMemfdResponse:
    """memfd_create(name) and ftruncate(size) in the daemon: a file of the
    session whose pages IOAS_MAP_FILE maps (gRPC cannot pass a client's
    fd). The model keeps its size and its slot of PA space, not its bytes."""
    if len(req.name.encode()) > MEMFD_NAME_MAX:
        raise IommuError(E.EINVAL, f"A memfd name is at most {MEMFD_NAME_MAX} bytes.")
    _check_size(req.size)
    sess = call.sess
    sess.check_fd_room()
    file = MappedFile(Kind.FILE, not call.caller.process, size=req.size, name=req.name)
    return pb.OpenMemfdResponse(fd=sess.install(FileFd(file)))


def memfd_truncate(call: Call, req: pb.MemfdTruncateRequest) -> pb.MemfdTruncateResponse:
    """ftruncate() of an OpenMemfd fd: EBADF for an fd not open, EINVAL for
    one that is no daemon-side memfd (as ftruncate of a file not open for
    writing) or for a negative size."""
    entry = call.sess.fd_entry(req.fd)
    if not isinstance(entry, FileFd) or entry.file.kind is not Kind.FILE \
            or entry.file.fd is not None:
        raise IommuError(E.EINVAL, f"fd {req.fd} is no memfd of the daemon's.", fd=req.fd)
    _check_size(req.size)
    entry.file.truncate(req.size)
    return pb.MemfdTruncateResponse()


def _check_size(size: int) -> None:
    """do_ftruncate: a length that is negative as a loff_t is EINVAL (on
    64-bit nothing else is past MAX_LFS_FILESIZE)."""
    if size >= 1 << 63:
        raise IommuError(E.EINVAL, f"{size:#x} is a negative file size.", size=size)


# -- the pages behind a user range ------------------------------------------------------------

#: One piece of a user range: (offset in the range, length, PA of its first
#: byte, or None where nothing is mapped).
Piece = tuple[int, int, "int | None"]


def user_pages(user_va: int, length: int, backing: Any) -> list[Piece]:
    """The pages behind [user_va, user_va + length), as GUP of the caller's
    memory finds them: a shared mapping of a file the daemon holds gives the
    file's pages (its slot's PAs); anything else is the caller's own memory
    (PA = its address). `backing` (a pb.UserBacking, or None when the
    caller was not asked) lists the mappings; a part none covers is a hole."""
    if backing is None:
        return [(0, length, user_va)]
    out: list[Piece] = []
    at = 0
    for m in sorted(backing.mappings, key=lambda m: m.offset):
        start, end = max(m.offset, at), min(m.offset + m.length, length)
        if end <= start:
            continue
        if start > at:
            out.append((at, start - at, None))
        pa = user_va + start
        if m.shared and m.inode:
            file = host_file_at(m.dev_major, m.dev_minor, m.inode)
            if file is not None:
                pa = file.pa(m.file_offset + (start - m.offset))
        out.append((start, end - start, pa))
        at = end
    if at < length:
        out.append((at, length - at, None))
    return out


def pa_matches(pieces: list[Piece], user_va: int, offset: int, length: int, pa: int) -> bool:
    """Are [offset, offset + length) of the user range the pages at `pa`?
    A page of a shared file mapping has two names in the model: the file's
    PA (IOAS_MAP_FILE's) and its user address (IOAS_MAP's, which maps user
    memory at its address without looking behind it); either matches."""
    for p_off, p_len, p_pa in pieces:
        lo, hi = max(p_off, offset), min(p_off + p_len, offset + length)
        if lo >= hi:
            continue
        want = pa + (lo - offset)
        if p_pa is None:
            return False
        if p_pa + (lo - p_off) != want and user_va + lo != want:
            return False
    return True


#: AreaSources with an unmap announced and not yet settled.
_unsettled: weakref.WeakSet[AreaSources] = weakref.WeakSet()


def settle_all() -> None:
    """Settle every IOAS's sources after the unmaps announced so far: the
    files their areas held are let go."""
    for sources in list(_unsettled):
        _unsettled.discard(sources)
        sources.settle()


# -- the selftest's dma-bufs (selftest.c iommufd_test_dmabuf_*) ------------------------------------

#: IOMMU_TEST_OP_DMABUF_GET: at most 512 pages.
DMABUF_MAX_PAGES = 512
#: Whether any dma-buf's pages were ever revoked (a fast path for DMA).
_revoked_seen = False


def revoked_in(ioas: Any, iova: int, length: int) -> bool:
    """Do revoked dma-buf pages back any of [iova, iova + length)? Their
    IOVAs stay in the IOAS (the area is not unmapped) but no domain maps
    them: DMA there faults, and MD_CHECK_MAP finds nothing."""
    if not _revoked_seen or not length:
        return False
    last = iova + length - 1
    return any(p.revoked for a, p in sources_of(ioas).entries()
               if a[0] <= last and iova <= a[0] + a[1] - 1)


def dmabuf_at(ioas: Any, iova: int) -> bool:
    """Is the area holding `iova` a dma-buf's?"""
    found = sources_of(ioas).covering(iova)
    return found is not None and found[1].kind is Kind.DMABUF


def test_dmabuf_get(call: Call, req: pb.TestDmabufGetRequest) -> pb.TestDmabufGetResponse:
    """IOMMU_TEST_OP_DMABUF_GET (iommufd_test_dmabuf_get): a dma-buf of
    `length` bytes rounded up to pages (none, or past 512 pages: EINVAL),
    exported by the test driver, as a new fd of the session. Its memory is
    contiguous: one slot of PA space, as virt_to_phys of its kzalloc."""
    length = -(-req.length // PAGE_SIZE) * PAGE_SIZE
    if not length or length > DMABUF_MAX_PAGES * PAGE_SIZE:
        raise IommuError(E.EINVAL, f"A test dma-buf is 1 to {DMABUF_MAX_PAGES} pages, not "
                         f"{req.length:#x} bytes.", length=req.length)
    sess = call.sess
    sess.check_fd_room()
    file = MappedFile(Kind.DMABUF, not call.caller.process, size=length, name="dmabuf")
    return pb.TestDmabufGetResponse(fd=sess.install(FileFd(file)))


def test_dmabuf_revoke(call: Call, req: pb.TestDmabufRevokeRequest
                       ) -> pb.TestDmabufRevokeResponse:
    """IOMMU_TEST_OP_DMABUF_REVOKE (iommufd_test_dmabuf_revoke): dma_buf_get
    of the fd (EBADF not open, EINVAL no dma-buf), the test exporter's
    (every dma-buf here is), then its revoked state, and every mapping of it
    so far is invalidated (for good, even by a restore)."""
    entry = call.sess.fd_entry(req.dmabuf_fd)
    if not isinstance(entry, FileFd) or entry.file.kind is not Kind.DMABUF:
        raise IommuError(E.EINVAL, f"fd {req.dmabuf_fd} is no dma-buf.", fd=req.dmabuf_fd)
    file = entry.file
    file.revoked = req.revoked
    file.invalidate()
    return pb.TestDmabufRevokeResponse()
