"""The IO page table as the daemon sees it (io_pagetable.c).

Every rule about areas, reserved and allowed ranges, IOVA allocation,
alignment and dirty bits lives in rust_core's IoPagetable; this module holds
what the daemon adds around it: the packed u64 buffers of the batch fields.
"""
from __future__ import annotations

import array
import errno as E
import sys

from iommud.errors import IommuError


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
