"""Type stub for iommud._core, the Rust translation core (rust_core/).

Every method raises OSError(errno, message) with the kernel's errno on
failure; addresses and lengths are unsigned 64-bit integers.

Methods that can take long (marked "Releases the GIL") do their work, locks
included, with the GIL released, so the daemon may run them on worker
threads (asyncio.to_thread) while its loop serves other calls; each holds
its object's lock for the whole operation, so every other caller sees it
whole or not at all. The others never wait for a lock while holding the GIL.
Lock order: Type1Dma, then tables (two: lower address first), then their
domains.
"""
from collections.abc import Callable
from typing import Any, final

__all__ = [
    "BATCH_RELEASE_GIL",
    "IOMMU_IOAS_MAP_FIXED_IOVA",
    "IOMMU_IOAS_MAP_READABLE",
    "IOMMU_IOAS_MAP_WRITEABLE",
    "PAGE_SIZE",
    "Domain",
    "IoPagetable",
    "PeerGate",
    "Type1Dma",
    "__version__",
    "check_copy_args",
    "check_map_args",
    "copy",
    "domain_from_state",
    "domain_state",
    "iopt_attach_filled",
    "iopt_from_state",
    "iopt_state",
    "type1_from_state",
    "type1_state",
]

__version__: str
PAGE_SIZE: int
IOMMU_IOAS_MAP_FIXED_IOVA: int
IOMMU_IOAS_MAP_WRITEABLE: int
IOMMU_IOAS_MAP_READABLE: int
BATCH_RELEASE_GIL: int

@final
class IoPagetable:
    """The IO page table of one IOAS: areas, reserved and allowed ranges,
    alignment and dirty state, behind a reader-writer lock."""

    def __new__(cls) -> IoPagetable: ...
    @property
    def generation(self) -> int:
        """Changes so far (write locks): equal generations mean equal states
        (snapshot.py reuses an unchanged table's state)."""
    def map(self, flags: int, user_va: int, length: int, iova: int) -> int:
        """IOMMU_IOAS_MAP after the IOAS lookup; returns the IOVA. The new
        area is filled into every attached domain; if a fill fails nothing
        stays (EINVAL/ENXIO from the domain)."""
    def map_user_pages(self, flags: int, user_va: int, length: int, iova: int) -> int:
        """iopt_map_user_pages (compat MAP_DMA): IOAS_MAP without the ioctl's
        READABLE/WRITEABLE requirement (unknown flags still EOPNOTSUPP, an
        IOVA or length of 2^64-1 EOVERFLOW). An area with neither fails any
        domain fill with EINVAL."""
    def unmap(self, iova: int, length: int) -> int:
        """IOMMU_IOAS_UNMAP after the IOAS lookup; returns the bytes unmapped.
        The areas leave every domain with their dirty state. Releases the GIL."""
    def unmap_all(self) -> int:
        """Drop every area; returns the bytes they covered. Releases the GIL."""
    def map_batch(self, flags: int, user_vas: Any, lengths: Any, iovas: Any) -> bytes:
        """Many IOAS_MAPs, all or nothing: u64 buffers of user_vas, lengths and
        iovas (used with FIXED_IOVA only); returns the IOVAs packed as u64.
        On failure nothing stays mapped; the OSError names the request.
        Releases the GIL."""
    def unmap_batch(self, iovas: Any, lengths: Any) -> int:
        """Many IOAS_UNMAPs in order; returns the bytes unmapped. Not atomic,
        as the kernel's unmap: earlier requests stay done on a failure.
        Releases the GIL."""
    def translate(self, iova: int) -> tuple[int, int]:
        """(pa, prot) of one IOVA; OSError(ENOENT) when unmapped."""
    def translate_batch(self, iovas: Any, *, threads: int | None = None) -> tuple[bytes, bytes]:
        """Translate a buffer of native-endian u64 IOVAs (bytes, array('Q'),
        numpy uint64, ...). Returns packed u64 PAs and one prot byte each, 0
        where unmapped. Large batches release the GIL and use up to
        `threads` threads (None: every core)."""
    def translate_into(self, iovas: Any, pas: Any, prots: Any, *,
                       threads: int | None = None) -> int:
        """Translate into caller buffers: writable `pas` (8 bytes per IOVA)
        and `prots` (1 byte per IOVA); returns how many were mapped. `pas`
        may be the `iovas` buffer itself; `prots` may share memory with
        neither (ValueError)."""
    def iova_ranges(self) -> list[tuple[int, int]]: ...
    @property
    def area_heap_bytes(self) -> int:
        """Heap bytes held by the area map (about 35 per area in full leaves)."""
    @property
    def memory_bytes(self) -> int:
        """Heap bytes of the whole table, for a memory budget: the area map,
        the dirty state, the reserved and allowed lists, and every attached
        domain's memory_bytes (so an attached domain is counted here too)."""
    def set_max_areas(self, max: int | None) -> None:
        """Most areas the table may hold (None: unlimited); ENOSPC past it."""
    @property
    def iova_alignment(self) -> int: ...
    def set_iova_alignment(self, align: int) -> None:
        """EADDRINUSE if an area is not aligned. Releases the GIL."""
    def add_reserved(self, start: int, last: int, owner: int) -> None: ...
    def remove_reserved(self, owner: int) -> None: ...
    def reserved(self) -> list[tuple[int, int, int]]: ...
    def allow_iovas(self, ranges: list[tuple[int, int]]) -> None:
        """IOMMU_IOAS_ALLOW_IOVAS: replace the allowed list atomically.
        Releases the GIL."""
    def allowed_iovas(self) -> list[tuple[int, int]]: ...
    def areas(self) -> list[tuple[int, int, int, int]]:
        """[(iova, length, user_va, prot)] in IOVA order (collected with the
        GIL released)."""
    def area_from(self, iova: int) -> tuple[int, int, int, int] | None:
        """The area containing iova, else the first above it: (iova, length, user_va, prot)."""
    @property
    def num_areas(self) -> int: ...
    @property
    def mapped_bytes(self) -> int: ...
    def set_dirty_tracking(self, enable: bool) -> None:
        """The table's own dirty pages (type1's): on from a clean state, off
        drops them. Releases the GIL."""
    @property
    def dirty_tracking(self) -> bool: ...
    def dma(self, iova: int, length: int, write: bool, domain: Domain | None = None) -> int:
        """A device access; the PA of the first byte. ENOENT (unmapped),
        EPERM (not permitted), EINVAL (length 0), EOVERFLOW (past 2^64).
        With `domain` (attached here, else EINVAL) the access translates
        through it and a write dirties its leaves while it tracks; the
        table's own dirty pages are marked either way, under one lock.
        Accesses of 64 KiB or more release the GIL."""
    def read_dirty_bitmap(self, iova: int, length: int, page_size: int, clear: bool,
                          domain: Domain | None = None) -> bytes:
        """Packed native-endian u64 words, one bit per page_size unit; `clear`
        cleans what was read. Without `domain`: the table's 4 KiB pages.
        With `domain` (attached here, else EINVAL): IOMMU_HWPT_GET_DIRTY_BITMAP
        (iopt_read_and_clear_dirty_data). Checks: length 0 EINVAL; range past
        2^64-1 EOVERFLOW; iova or end not aligned to iova_alignment EINVAL;
        page_size 0 EINVAL; iova or end not aligned to page_size EINVAL;
        tracking not checked. A dirty leaf sets bits (leaf_start - iova) >> s
        to (leaf_last - iova) >> s, s = lowest set bit of page_size, clipped
        to the bitmap; a leaf starting below iova sets none; the walk stops at
        the first hole in the areas (the kernel drops that error). Releases
        the GIL."""
    def add_domain(self, domain: Domain) -> None:
        """iopt_table_add_domain's fill step: fill every area into `domain`,
        all or nothing; later maps and copies fill it too. EINVAL for an area
        neither readable nor writeable, ENXIO for one not aligned to the
        domain's smallest page, EEXIST if attached here, EBUSY if attached
        elsewhere. The alignment and aperture reservations are the caller's.
        Lock order: a table's lock, then its domains'. Releases the GIL."""
    def remove_domain(self, domain: Domain) -> None:
        """iopt_table_remove_domain: unmap everything from `domain` (its dirty
        state goes) and release it; ENOENT if not attached here. Releases
        the GIL."""
    @property
    def num_domains(self) -> int: ...
    @property
    def large_pages(self) -> bool:
        """IOMMU_OPTION HUGE_PAGES: whether fills may use large leaves."""
    def set_large_pages(self, enabled: bool) -> None:
        """Disabled: fills made from now on map one PAGE_SIZE at a time
        (batch_iommu_map_small); existing entries keep their leaves. The
        kernel's conditions (iopt_disable_large_pages) are the caller's."""
    def cut(self, iovas: list[int]) -> None:
        """iopt_cut_iova: for each IOVA p, split the area holding it into
        [start, p] and [p + 1, last], with its dirty bits and domain entries
        (which keep their leaves). p in no area, or at an area's first or last
        IOVA: nothing. EINVAL when p + 1 is not aligned to iova_alignment or
        the area is filled into a domain while large pages are enabled. Not
        atomic: cuts before a failing one stay done. Releases the GIL."""

@final
class Domain:
    """The IO page table of one paging HWPT: entries (iova, length, pa,
    prot, leaf_cap) mirroring the areas its IOAS filled into it, whose
    leaves are the generic page table's choice (the largest page size to
    which IOVA and PA are aligned and that fits, within PAGE_SIZE chunks
    when the fill was capped), with dirty state per leaf. A pa is the user
    address at fill time. OSError(EINVAL) for pgsize_bitmap 0 or
    aperture_start > aperture_last."""

    def __new__(cls, pgsize_bitmap: int, aperture_start: int, aperture_last: int) -> Domain: ...
    @property
    def generation(self) -> int:
        """Changes so far (write locks): equal generations mean equal states
        (snapshot.py reuses an unchanged domain's state)."""
    @property
    def pgsize_bitmap(self) -> int: ...
    @property
    def aperture_start(self) -> int: ...
    @property
    def aperture_last(self) -> int: ...
    @property
    def min_page_size(self) -> int:
        """The lowest set bit of pgsize_bitmap."""
    @property
    def num_entries(self) -> int: ...
    @property
    def mapped_bytes(self) -> int: ...
    @property
    def memory_bytes(self) -> int:
        """Heap bytes of the domain (an upper estimate, for memory budgets):
        its entries and dirty ranges. An attached domain is also counted in
        its table's memory_bytes."""
    @property
    def dirty_tracking(self) -> bool: ...
    @property
    def attached(self) -> bool:
        """Whether an IoPagetable holds this domain."""
    def entries(self) -> list[tuple[int, int, int, int, int]]:
        """[(iova, length, pa, prot, leaf_cap)] in IOVA order; leaf_cap 0: none.
        Collected with the GIL released."""
    def leaf_at(self, iova: int) -> tuple[int, int]:
        """The leaf (IOPTE) holding iova as (start, size); ENOENT when unmapped."""
    def translate(self, iova: int) -> tuple[int, int]:
        """(pa, prot) through the domain; ENOENT when unmapped."""
    def check_map(self, iova: int, length: int, user_va: int) -> None:
        """IOMMU_TEST_OP_MD_CHECK_MAP (iommufd_test_md_check_pa): step =
        min_page_size; EINVAL when iova, length or user_va is not a multiple
        of it, user_va + length overflows, or any step is a hole or does not
        translate to user_va + offset. Length 0 succeeds. Releases the GIL."""
    def set_dirty_tracking(self, enable: bool) -> None:
        """Enabling clears every D bit first (iopt_set_dirty_tracking's clean
        snapshot, also when already on); disabling keeps them. Releases the GIL."""
    def mark_dirty(self, iova: int, length: int, page_size: int, bitmap: bytes) -> int:
        """IOMMU_TEST_OP_DIRTY (iommufd_test_dirty) after the HWPT lookup: for
        each set bit i (bit i % 8 of byte i // 8) among length // page_size,
        dirty the leaf holding iova + i * page_size (unmapped IOVAs skipped);
        returns the number of set bits. EINVAL: page_size or length 0, iova or
        length not a multiple of page_size, empty bitmap; EOVERFLOW: more than
        2^27 bits; EINVAL: tracking off; EFAULT: bitmap shorter than
        ceil(bits / 8) bytes. Releases the GIL."""

def check_map_args(flags: int, iova: int, length: int) -> None: ...
def check_copy_args(flags: int, src_iova: int, length: int, dst_iova: int) -> None: ...
def copy(dst: IoPagetable, src: IoPagetable, flags: int, src_iova: int, length: int,
         dst_iova: int) -> int:
    """IOMMU_IOAS_COPY after the lookups; returns the destination IOVA.
    Releases the GIL; two tables are locked lower address first."""

@final
class PeerGate:
    """The UNIX socket's peer gate: accepts on `listen_fd` (ownership passes
    to the gate), records each connection's SO_PEERCRED/SO_PEERGROUPS, and
    relays it to `upstream` from the abstract address `<tag>/<id>`, `id`
    being 128 random bits (32 hex digits) per connection, so that no other
    user can predict or squat it. One thread relays every connection
    (epoll), with at most 256 KiB buffered per connection and direction.

    At most `max_connections` connections are relayed at once (None: what
    the soft RLIMIT_NOFILE leaves after 256 descriptors, at 3 per
    connection, at least 16) and at most `max_per_uid` per peer uid (None:
    max_connections); a connection over either is accepted and closed at
    once, and counted as refused. A connection without a byte either way
    for `idle_timeout` seconds is closed (0: never). Out of descriptors,
    the gate leaves clients in the listen backlog until a connection closes
    or 100 ms pass. OSError for a bad fd or a tag not 1..74 bytes long;
    ValueError for a limit of 0 or a negative or non-finite idle_timeout."""

    def __new__(cls, listen_fd: int, upstream: str, tag: str, *,
                max_connections: int | None = None, max_per_uid: int | None = None,
                idle_timeout: float = 0.0) -> PeerGate: ...
    def peer(self, peer: str) -> tuple[int, int, int, list[int]] | None:
        """(pid, uid, gid, groups) behind gRPC peer string `peer`, or None."""
    def stats(self) -> tuple[int, int, int, int, int]:
        """(accepted, failed to relay, live connections, refused over a
        limit, closed idle). Accepted counts refused ones too."""
    def stop(self) -> None:
        """Stop accepting and close every connection. Idempotent."""

@final
class Type1Dma:
    """vfio_iommu_type1's per-container DMA state: IOMMU type, dma_entry_limit
    accounting, UPDATE_VADDR invalidations, dirty logging. `iopt` is the
    compat IOAS's table, None when the container has none (ENODEV where
    type1 needs it). argsz 0 means "not given"; a refused call changes
    nothing."""

    def __new__(cls, dma_entry_limit: int) -> Type1Dma: ...
    @property
    def dma_entry_limit(self) -> int: ...
    @property
    def dma_avail(self) -> int: ...
    @property
    def iommu_type(self) -> int:
        """0 until set."""
    @property
    def dirty_started(self) -> bool: ...
    def set_iommu_type(self, iommu_type: int) -> None:
        """VFIO_SET_IOMMU's effect once the caller has applied the container
        rules; EINVAL for a type other than 1 (TYPE1) or 3 (TYPE1v2)."""
    def reset(self, iopt: IoPagetable | None) -> None:
        """The last group left the container: stop dirty tracking on iopt,
        unmap everything, type back to 0, dma_avail = limit, no invalid vaddrs.
        Releases the GIL."""
    def map_dma(self, iopt: IoPagetable | None, argsz: int, flags: int, vaddr: int, iova: int,
                size: int, charge: Callable[[int], object]) -> None:
        """VFIO_IOMMU_MAP_DMA in type1's order. `charge(size)` is called right
        before the new mapping is made (not for a VADDR update), with no lock
        held; an exception from it propagates unchanged and nothing changes.
        The checks and the mapping run with the GIL released."""
    def unmap_dma(self, iopt: IoPagetable | None, argsz: int, flags: int, iova: int, size: int,
                  bitmap_pgsize: int, bitmap_size: int) -> tuple[int, bytes]:
        """VFIO_IOMMU_UNMAP_DMA: (bytes unmapped, or invalidated with VADDR;
        the dirty bitmap as packed native-endian u64 words, or b"").
        Releases the GIL."""
    def dirty_pages(self, iopt: IoPagetable | None, argsz: int, flags: int, iova: int, size: int,
                    bitmap_pgsize: int, bitmap_size: int) -> bytes:
        """VFIO_IOMMU_DIRTY_PAGES START/STOP/GET_BITMAP in type1's order (ready
        EINVAL, not v2 EACCES, then argsz, ...): b"" for START and STOP, the
        bitmap (packed native-endian u64 words) for GET_BITMAP. Releases the GIL."""
    def check_extension_update_vaddr(self) -> int:
        """1 once an IOMMU type is set, else 0."""

# Snapshot records (rust_core/src/state.rs), the pickle reductions of the
# three stateful classes (snapshot.py). A record loads only into the version
# that wrote it; anything else is OSError(EINVAL).
def iopt_state(table: IoPagetable) -> bytes: ...
def iopt_from_state(state: bytes) -> IoPagetable: ...
def domain_state(domain: Domain) -> bytes: ...
def domain_from_state(state: bytes) -> Domain: ...
def type1_state(dma: Type1Dma) -> bytes: ...
def type1_from_state(state: bytes) -> Type1Dma: ...
def iopt_attach_filled(table: IoPagetable, domain: Domain) -> None: ...
