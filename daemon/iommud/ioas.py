"""IOAS objects: an I/O address space backed by one native IoPagetable.

All address arithmetic, validation after the IOAS lookup, IOVA allocation,
map, unmap and translation happen in rust_core; this module only orders the
steps the way ioas.c does (argument checks, then lookup, then the table).
"""
from __future__ import annotations

import array
import errno as E
import sys

from iommud import _core
from iommud.context import IommufdContext
from iommud.errors import IommuError
from iommud.failnth import step
from iommud.objects import IommufdObject, ObjType

U64_MAX = (1 << 64) - 1
IOMMU_IOAS_MAP_FIXED_IOVA = _core.IOMMU_IOAS_MAP_FIXED_IOVA
IOMMU_IOAS_MAP_WRITEABLE = _core.IOMMU_IOAS_MAP_WRITEABLE
IOMMU_IOAS_MAP_READABLE = _core.IOMMU_IOAS_MAP_READABLE


class Ioas(IommufdObject):
    type = ObjType.IOAS

    def __init__(self, obj_id: int, max_areas: int | None = None) -> None:
        super().__init__(obj_id)
        self.iopt = _core.IoPagetable()
        self.iopt.set_max_areas(max_areas)
        #: Paging HWPTs mirroring this IOAS (each holds a users ref on it).
        self.domains: list = []
        #: IOMMU_OPTION_HUGE_PAGES; off forces PAGE_SIZE alignment.
        self.huge_pages = True

    def required_alignment(self) -> int:
        """The largest minimum page size among the domains, and PAGE_SIZE
        while huge pages are disabled (io_pagetable.c iopt_calculate_iova_alignment)."""
        align = max([1, *(d.min_page_size for d in self.domains)])
        return align if self.huge_pages else max(align, _core.PAGE_SIZE)

    def destroy(self) -> None:
        # Destroying an IOAS drops every mapping it still holds (ioas.c).
        self.iopt.unmap_all()

    @property
    def num_areas(self) -> int:
        return self.iopt.num_areas

    @property
    def mapped_bytes(self) -> int:
        return self.iopt.mapped_bytes


def check_reserved(reserved: int) -> None:
    if reserved:
        raise IommuError(E.EOPNOTSUPP, f"The reserved field must be zero, not {reserved:#x}.",
                         reserved=reserved)


def check_alloc_flags(flags: int) -> None:
    if flags:
        raise IommuError(E.EOPNOTSUPP, f"IOAS_ALLOC takes no flags; got {flags:#x}.")


def ioas_alloc(ctx: IommufdContext, flags: int) -> int:
    """IOMMU_IOAS_ALLOC."""
    check_alloc_flags(flags)
    return new_ioas(ctx).id


def new_ioas(ctx: IommufdContext) -> Ioas:
    """A fresh IOAS in `ctx`, under the context's limits and account."""
    ioas = Ioas(ctx.new_id(), ctx.limits.max_areas_per_ioas)
    ctx.insert(ioas)
    ctx.account.track(ioas)
    return ioas


def ioas_iova_ranges(ctx: IommufdContext, ioas_id: int, num_iovas: int | None,
                     reserved: int) -> tuple[list[tuple[int, int]], int]:
    """IOMMU_IOAS_IOVA_RANGES: the holes of the reserved ranges, and the alignment.

    With a capacity `num_iovas` below the count, EMSGSIZE reports the count
    needed in the error's metadata (the kernel writes it back in num_iovas).
    """
    check_reserved(reserved)
    ioas = ctx.get(ioas_id, Ioas, "IOAS")
    ranges = ioas.iopt.iova_ranges()
    if num_iovas is not None and len(ranges) > num_iovas:
        raise IommuError(E.EMSGSIZE, f"IOAS {ioas_id} has {len(ranges)} usable IOVA ranges but "
                         f"the caller has room for {num_iovas}.", num_iovas=len(ranges))
    return ranges, ioas.iopt.iova_alignment


def ioas_allow_iovas(ctx: IommufdContext, ioas_id: int, ranges: list[tuple[int, int]],
                     reserved: int) -> None:
    """IOMMU_IOAS_ALLOW_IOVAS: replace the allowed list atomically."""
    check_reserved(reserved)
    ctx.get(ioas_id, Ioas, "IOAS").iopt.allow_iovas(ranges)


def ioas_map(ctx: IommufdContext, flags: int, ioas_id: int, reserved: int, user_va: int,
             length: int, iova: int) -> int:
    """IOMMU_IOAS_MAP; returns the IOVA of the new area."""
    check_reserved(reserved)
    _core.check_map_args(flags, iova, length)
    ioas = ctx.get(ioas_id, Ioas, "IOAS")
    ctx.account.charge(length)
    step("area")
    return ioas.iopt.map(flags, user_va, length, iova)


def _u64s(data: bytes, field: str) -> array.array:
    """The packed little-endian u64 values of a batch field; EINVAL if ragged."""
    if len(data) % 8:
        raise IommuError(E.EINVAL, f"The {field} field holds {len(data):#x} bytes, not a whole "
                         f"number of 8-byte values.", field=field, length=len(data))
    values = array.array("Q", data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def ioas_map_batch(ctx: IommufdContext, flags: int, ioas_id: int, reserved: int,
                   user_vas: bytes, lengths: bytes, iovas: bytes) -> bytes:
    """Many IOMMU_IOAS_MAPs with one flags value, all or nothing; returns the
    new areas' IOVAs packed little-endian. The checks run in IOAS_MAP's
    order over the whole batch (reserved, flags, overflow, lookup, the
    session's mapped-bytes limit), then the core maps every entry or, on
    the first failure, none, naming the entry in its message."""
    check_reserved(reserved)
    vas, lens = _u64s(user_vas, "user_vas"), _u64s(lengths, "lengths")
    fixed = bool(flags & IOMMU_IOAS_MAP_FIXED_IOVA)
    ios = _u64s(iovas, "iovas") if (fixed or iovas) else array.array("Q", bytes(len(lengths)))
    if not len(vas) == len(lens) == len(ios):
        raise IommuError(E.EINVAL, f"A map batch needs equal counts of user_vas, lengths and "
                         f"iovas, not {len(vas):#x}, {len(lens):#x} and {len(ios):#x}.",
                         user_vas=len(vas), lengths=len(lens), iovas=len(ios))
    _core.check_map_args(flags, max(ios, default=0) if fixed else 0, max(lens, default=0))
    ioas = ctx.get(ioas_id, Ioas, "IOAS")
    ctx.account.charge(sum(lens))
    step("area")
    out = array.array("Q", ioas.iopt.map_batch(flags, vas, lens, ios))
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def ioas_copy(ctx: IommufdContext, flags: int, dst_ioas_id: int, src_ioas_id: int,
              length: int, dst_iova: int, src_iova: int) -> int:
    """IOMMU_IOAS_COPY; returns the destination IOVA."""
    _core.check_copy_args(flags, src_iova, length, dst_iova)
    src = ctx.get(src_ioas_id, Ioas, "source IOAS")
    dst = ctx.get(dst_ioas_id, Ioas, "destination IOAS")
    ctx.account.charge(length)
    step("area")
    return _core.copy(dst.iopt, src.iopt, flags, src_iova, length, dst_iova)


def ioas_unmap(ctx: IommufdContext, ioas_id: int, iova: int, length: int) -> int:
    """IOMMU_IOAS_UNMAP; returns the bytes unmapped (whole areas only)."""
    ioas = ctx.get(ioas_id, Ioas, "IOAS")
    return ioas.iopt.unmap(iova, length)


def find(ctx: IommufdContext, ioas_id: int) -> _core.IoPagetable | None:
    """The table of IOAS `ioas_id`, or None when there is none (the call
    that needs it reports that, in its own order of checks)."""
    try:
        return ctx.get(ioas_id, Ioas, "IOAS").iopt
    except IommuError:
        return None


def translate(ctx: IommufdContext, ioas_id: int, iova: int) -> tuple[int, int]:
    """(pa, prot) of one IOVA; ENOENT when unmapped."""
    return ctx.get(ioas_id, Ioas, "IOAS").iopt.translate(iova)



IOMMU_OPTION_RLIMIT_MODE = 0
IOMMU_OPTION_HUGE_PAGES = 1
IOMMU_OPTION_OP_SET = 0
IOMMU_OPTION_OP_GET = 1


def option(ctx: IommufdContext, option_id: int, op: int, reserved: int, object_id: int,
           val64: int, cap_sys_resource: bool) -> int:
    """IOMMU_OPTION; returns val64 (written back for GET and SET)."""
    if reserved:
        raise IommuError(E.EOPNOTSUPP, f"The reserved field must be zero, not {reserved:#x}.")
    if op not in (IOMMU_OPTION_OP_SET, IOMMU_OPTION_OP_GET):
        raise IommuError(E.EOPNOTSUPP, f"Unknown IOMMU_OPTION op {op}.")
    if option_id == IOMMU_OPTION_RLIMIT_MODE:
        if object_id:
            raise IommuError(E.EOPNOTSUPP, "RLIMIT_MODE is global; object_id must be 0.")
        if op == IOMMU_OPTION_OP_GET:
            return ctx.account_mode
        if not cap_sys_resource:
            raise IommuError(E.EPERM, "Changing RLIMIT_MODE needs CAP_SYS_RESOURCE.")
        if len(ctx):
            raise IommuError(E.EBUSY, f"RLIMIT_MODE cannot change while the context holds "
                             f"{len(ctx)} objects.")
        if val64 > 1:
            raise IommuError(E.EINVAL, f"RLIMIT_MODE is 0 or 1, not {val64:#x}.")
        ctx.account_mode = val64
        return val64
    if option_id == IOMMU_OPTION_HUGE_PAGES:
        ioas = ctx.get(object_id, Ioas, "IOAS")
        if op == IOMMU_OPTION_OP_GET:
            return int(ioas.huge_pages)
        if val64 not in (0, 1):
            raise IommuError(E.EINVAL, f"HUGE_PAGES is 0 or 1, not {val64:#x}.")
        if val64 == 0 and ioas.domains and ioas.num_areas:
            raise IommuError(E.EINVAL, f"Huge pages cannot be disabled on IOAS {object_id} while "
                             f"it has both domains and mappings.", ioas_id=object_id)
        previous = ioas.huge_pages
        ioas.huge_pages = bool(val64)
        try:
            ioas.iopt.set_iova_alignment(ioas.required_alignment())  # EADDRINUSE
        except OSError:
            ioas.huge_pages = previous
            raise
        return val64
    raise IommuError(E.EOPNOTSUPP, f"Unknown IOMMU_OPTION id {option_id}.")


def change_process(ctx: IommufdContext, reserved: int) -> None:
    """IOMMU_IOAS_CHANGE_PROCESS: every mapping here is of user memory (there
    is no MAP_FILE), so any area makes it EINVAL; otherwise nothing to move."""
    if reserved:
        raise IommuError(E.EOPNOTSUPP, f"The reserved field must be zero, not {reserved:#x}.")
    for obj in ctx.objects():
        if isinstance(obj, Ioas) and obj.num_areas:
            raise IommuError(E.EINVAL, f"IOAS {obj.id} maps user memory; only file-backed "
                             f"mappings can change process.", ioas_id=obj.id)
