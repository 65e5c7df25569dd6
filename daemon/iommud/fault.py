"""FAULT objects: IOMMU_FAULT_QUEUE_ALLOC (eventq.c). A fault queue is what
a HWPT allocated with FAULT_ID_VALID reports I/O page faults to; it holds
nothing and is held (users) by every such HWPT."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING

from iommud.errors import IommuError
from iommud.objects import IommufdObject, ObjType
from iommud_wire import pb

if TYPE_CHECKING:
    from iommud.call import Call


class FaultQueue(IommufdObject):
    type = ObjType.FAULT


def fault_queue_alloc(call: Call, req: pb.FaultQueueAllocRequest) -> pb.FaultQueueAllocResponse:
    """IOMMU_FAULT_QUEUE_ALLOC (iommufd_fault_alloc)."""
    if req.flags:
        raise IommuError(E.EOPNOTSUPP, f"FAULT_QUEUE_ALLOC takes no flags; got {req.flags:#x}.")
    ctx = call.ctx
    obj_id = ctx.new_id()
    ctx.insert(FaultQueue(obj_id))
    return pb.FaultQueueAllocResponse(out_fault_id=obj_id)
