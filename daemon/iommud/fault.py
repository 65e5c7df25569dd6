"""FAULT objects: IOMMU_FAULT_QUEUE_ALLOC. A fault queue is what a HWPT
allocated with FAULT_ID_VALID reports I/O page faults to; it holds nothing
and is held (users) by every such HWPT."""
from __future__ import annotations

import errno as E

from iommud.context import IommufdContext
from iommud.errors import IommuError
from iommud.objects import IommufdObject, ObjType


class FaultQueue(IommufdObject):
    type = ObjType.FAULT


def fault_queue_alloc(ctx: IommufdContext, flags: int) -> int:
    if flags:
        raise IommuError(E.EOPNOTSUPP, f"FAULT_QUEUE_ALLOC takes no flags; got {flags:#x}.")
    obj_id = ctx.new_id()
    ctx.insert(FaultQueue(obj_id))
    return obj_id
