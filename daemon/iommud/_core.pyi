"""Type stub for iommud._core, the Rust translation core (rust_core/).

Every method raises OSError(errno, message) with the kernel's errno on
failure; addresses and lengths are unsigned 64-bit integers.
"""
from collections.abc import Callable
from typing import Any, final

__all__ = [
    "BATCH_RELEASE_GIL",
    "IOMMU_IOAS_MAP_FIXED_IOVA",
    "IOMMU_IOAS_MAP_READABLE",
    "IOMMU_IOAS_MAP_WRITEABLE",
    "PAGE_SIZE",
    "IoPagetable",
    "PeerGate",
    "Type1Dma",
    "__version__",
    "check_copy_args",
    "check_map_args",
    "copy",
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
    def map(self, flags: int, user_va: int, length: int, iova: int) -> int:
        """IOMMU_IOAS_MAP after the IOAS lookup; returns the IOVA."""
    def unmap(self, iova: int, length: int) -> int:
        """IOMMU_IOAS_UNMAP after the IOAS lookup; returns the bytes unmapped."""
    def unmap_all(self) -> int: ...
    def map_batch(self, flags: int, user_vas: Any, lengths: Any, iovas: Any) -> bytes:
        """Many IOAS_MAPs, all or nothing: u64 buffers of user_vas, lengths and
        iovas (used with FIXED_IOVA only); returns the IOVAs packed as u64.
        On failure nothing stays mapped; the OSError names the request."""
    def unmap_batch(self, iovas: Any, lengths: Any) -> int:
        """Many IOAS_UNMAPs in order; returns the bytes unmapped. Not atomic,
        as the kernel's unmap: earlier requests stay done on a failure."""
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
        """Heap bytes held by the area map (about 32 per area in full leaves)."""
    def set_max_areas(self, max: int | None) -> None:
        """Most areas the table may hold (None: unlimited); ENOSPC past it."""
    @property
    def iova_alignment(self) -> int: ...
    def set_iova_alignment(self, align: int) -> None: ...
    def add_reserved(self, start: int, last: int, owner: int) -> None: ...
    def remove_reserved(self, owner: int) -> None: ...
    def reserved(self) -> list[tuple[int, int, int]]: ...
    def allow_iovas(self, ranges: list[tuple[int, int]]) -> None: ...
    def allowed_iovas(self) -> list[tuple[int, int]]: ...
    def areas(self) -> list[tuple[int, int, int, int]]:
        """[(iova, length, user_va, prot)] in IOVA order."""
    def area_from(self, iova: int) -> tuple[int, int, int, int] | None:
        """The area containing iova, else the first above it: (iova, length, user_va, prot)."""
    @property
    def num_areas(self) -> int: ...
    @property
    def mapped_bytes(self) -> int: ...
    def set_dirty_tracking(self, enable: bool) -> None: ...
    @property
    def dirty_tracking(self) -> bool: ...
    def dma(self, iova: int, length: int, write: bool) -> int:
        """A device access; the PA of the first byte. ENOENT/EPERM faults."""
    def read_dirty_bitmap(self, iova: int, length: int, page_size: int, clear: bool) -> bytes:
        """Packed native-endian u64 words, one bit per page_size unit."""

def check_map_args(flags: int, iova: int, length: int) -> None: ...
def check_copy_args(flags: int, src_iova: int, length: int, dst_iova: int) -> None: ...
def copy(dst: IoPagetable, src: IoPagetable, flags: int, src_iova: int, length: int,
         dst_iova: int) -> int: ...

@final
class PeerGate:
    """The UNIX socket's peer gate: accepts on `listen_fd` (ownership passes
    to the gate), records each connection's SO_PEERCRED/SO_PEERGROUPS, and
    relays it to `upstream` from the abstract address `<tag>/<n>`."""

    def __new__(cls, listen_fd: int, upstream: str, tag: str) -> PeerGate: ...
    def peer(self, peer: str) -> tuple[int, int, int, list[int]] | None:
        """(pid, uid, gid, groups) behind gRPC peer string `peer`, or None."""
    def stats(self) -> tuple[int, int, int]:
        """(accepted, failed to relay, live connections)."""
    def stop(self) -> None:
        """Stop accepting and end every relay. Idempotent."""

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
        unmap everything, type back to 0, dma_avail = limit, no invalid vaddrs."""
    def map_dma(self, iopt: IoPagetable | None, argsz: int, flags: int, vaddr: int, iova: int,
                size: int, charge: Callable[[int], object]) -> None:
        """VFIO_IOMMU_MAP_DMA in type1's order. `charge(size)` is called right
        before the new mapping is made (not for a VADDR update), with no lock
        held; an exception from it propagates unchanged and nothing changes."""
    def unmap_dma(self, iopt: IoPagetable | None, argsz: int, flags: int, iova: int, size: int,
                  bitmap_pgsize: int, bitmap_size: int) -> tuple[int, bytes]:
        """VFIO_IOMMU_UNMAP_DMA: (bytes unmapped, or invalidated with VADDR;
        the dirty bitmap as packed native-endian u64 words, or b"")."""
    def dirty_pages(self, iopt: IoPagetable | None, argsz: int, flags: int, iova: int, size: int,
                    bitmap_pgsize: int, bitmap_size: int) -> bytes:
        """VFIO_IOMMU_DIRTY_PAGES START/STOP/GET_BITMAP in type1's order (ready
        EINVAL, not v2 EACCES, then argsz, ...): b"" for START and STOP, the
        bitmap (packed native-endian u64 words) for GET_BITMAP."""
    def check_extension_update_vaddr(self) -> int:
        """1 once an IOMMU type is set, else 0."""
