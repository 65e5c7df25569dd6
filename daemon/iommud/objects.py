"""The iommufd object base: one id space per context shared by every type.

Refcount model (kernel main.c): the context's table holds each object once;
`users` counts every other holder (a HWPT on its IOAS, a device on its HWPT).
IOMMU_DESTROY succeeds only when `users == 0`, i.e. the table is the sole
holder; otherwise EBUSY.
"""
from __future__ import annotations

import enum
from typing import Any


class ObjType(enum.IntEnum):
    """Values match iommud.v1.ObjectType."""

    IOAS = 1
    HWPT_PAGING = 2
    HWPT_NESTED = 3
    DEVICE = 4
    FAULT = 5
    ACCESS = 6
    SELFTEST = 7
    VIOMMU = 8
    VDEVICE = 9
    VEVENTQ = 10
    HW_QUEUE = 11


class IommufdObject:
    type: ObjType

    def __init__(self, obj_id: int) -> None:
        self.id = obj_id
        self.users = 0

    def destroy(self) -> None:
        """Release what the object holds; called once, after it left the table."""

    def context_closing(self) -> None:
        """Its context is being torn down (its file released): drop holds
        that only live processes have (a vIOMMU's mmaps, whose vmas a
        process's exit closes before its files)."""

    def describe(self, info: Any) -> None:
        """Fill the type's own fields of a pb.ObjectInfo (ListObjects)."""
