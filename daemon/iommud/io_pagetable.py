"""The IO page table as the daemon sees it (io_pagetable.c).

Every rule about areas, reserved and allowed ranges, IOVA allocation,
alignment and dirty bits lives in rust_core's IoPagetable; this module holds
what the daemon adds around it: the packed u64 buffers of the batch fields,
and the journaling of an unmap that fails after removing areas.
"""
from __future__ import annotations

import array
import contextlib
import errno as E
import sys
from typing import TYPE_CHECKING, Any

from iommud.errors import IommuError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from iommud import _core
    from iommud.call import Call


def u64s(data: bytes, field: str) -> array.array[int]:
    """The packed little-endian u64 values of a batch field; EINVAL if ragged."""
    if len(data) % 8:
        raise IommuError(E.EINVAL, f"The {field} field holds {len(data):#x} bytes, not a whole "
                         f"number of 8-byte values.", field=field, length=len(data))
    values = array.array("Q", data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def pack_u64s(values: array.array[int] | bytes) -> bytes:
    out = array.array("Q", values)
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


@contextlib.contextmanager
def partial_unmap_journaled(call: Call, iopt: _core.IoPagetable | None, iova: int, length: int,
                            prefix: Callable[[int], Any]) -> Iterator[None]:
    """IOAS_UNMAP (iopt_unmap_iova_range), and the compat UNMAP_DMA on it, is
    not atomic: a range whose end cuts an area fails with ENOENT after
    removing the whole areas before that one. Only successes are journaled,
    so such an effect is journaled here as the same request shortened to the
    prefix up to the cut area (`prefix(length)`), which removes exactly those
    areas when replayed; an error with no effect writes nothing."""
    before = iopt.mapped_bytes if iopt is not None else None
    try:
        yield
    except (IommuError, OSError):
        if iopt is not None and before is not None and iopt.mapped_bytes != before:
            cut = iopt.area_from(iova + length - 1)
            assert cut is not None and iova < cut[0] <= iova + length - 1, \
                "a partial unmap stops at the area cut by the range's end"
            call.record(prefix(cut[0] - iova))
        raise


def with_fields(message: Any, **fields: Any) -> Any:
    """A copy of a protobuf message with some fields changed."""
    out = type(message)()
    out.CopyFrom(message)
    for name, value in fields.items():
        setattr(out, name, value)
    return out
