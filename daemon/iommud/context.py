"""The iommufd context: one per OpenContext, the analogue of an open of
/dev/iommu. It owns an object table with a single id space for every type.

Ownership: a Session holds contexts in its fd table; a context holds its
objects; closing the context destroys them leaves-first (objects nobody else
holds go first, then the ones they released), as iommufd_fops_release does.
"""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, TypeVar, cast

from iommud.errors import IommuError
from iommud.failnth import step
from iommud.ids import LowestFreeAllocator
from iommud.limits import OBJECT_BYTES, Accounting, Limits, enforced
from iommud.objects import IommufdObject, ObjType
from iommud_wire import pb
from iommud_wire.uapi import INT_MAX

if TYPE_CHECKING:
    from collections.abc import Iterator

    from iommud.call import Call
    from iommud.host import Host
    from iommud.ioas import Ioas
    from iommud.vfio_group import Container

_Obj = TypeVar("_Obj", bound=IommufdObject)


class IommufdContext:
    kind = "iommufd"

    def __init__(self, limits: Limits | None = None, host: Host | None = None,
                 account: Accounting | None = None) -> None:
        self._objects: dict[int, IommufdObject] = {}
        self._ids = LowestFreeAllocator(1, INT_MAX)
        self.limits = limits or Limits()
        self._max_objects = self.limits.max_objects_per_context
        self.host = host
        #: The owning session's mapped-bytes account (shared by its contexts).
        self.account = account or Accounting(self.limits.max_mapped_bytes_per_session)
        #: IOMMU_OPTION_RLIMIT_MODE: 0 user accounting (/dev/iommu), 1 per-mm.
        self.account_mode = 0
        #: Bound devices and legacy groups set on it keep the context alive
        #: after its fd is closed, as VFIO device and group files hold a
        #: reference on the iommufd file (§1.5).
        self.holders = 0
        #: IOMMU_VFIO_IOAS: the IOAS the legacy container calls act on.
        self.vfio_ioas: Ioas | None = None
        #: Legacy container state, when the context is used as a container.
        self.container: Container | None = None
        self.fd_closed = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._objects)

    def set_max_objects(self, limit: int) -> None:
        """A new limit for new objects; objects already over it stay."""
        self._max_objects = limit

    def objects(self) -> Iterator[IommufdObject]:
        return iter(sorted(self._objects.values(), key=lambda o: o.id))

    def object_list(self) -> list[IommufdObject]:
        """The objects in no particular order: a copy, cheap to take, for a
        walk that may yield the event loop half way (counting)."""
        return list(self._objects.values())

    def new_id(self) -> int:
        """Reserve the lowest free id for an object about to be inserted."""
        if len(self._objects) >= self._max_objects and enforced():
            raise IommuError(E.ENOSPC, f"The context already holds {len(self._objects)} objects, "
                             f"its limit.", limit=self._max_objects)
        self.account.charge_memory(OBJECT_BYTES, "one more object")
        step("object id")
        obj_id = self._ids.alloc()
        if obj_id is None:
            raise IommuError(E.ENOSPC, "The context has no free object id left.")
        return obj_id

    def abort_id(self, obj_id: int) -> None:
        """Give back an id from new_id() whose object was never inserted."""
        self._ids.release(obj_id)

    def insert(self, obj: IommufdObject) -> None:
        self._objects[obj.id] = obj

    def lookup(self, obj_id: int) -> IommufdObject | None:
        return self._objects.get(obj_id)

    def get(self, obj_id: int, kind: type[_Obj], what: str = "object") -> _Obj:
        """Look up `obj_id` as `kind`; a missing id or the wrong type is ENOENT."""
        obj = self._objects.get(obj_id)
        if not isinstance(obj, kind):
            raise IommuError(E.ENOENT, f"No {what} with id {obj_id} exists in this context.",
                             id=obj_id)
        return obj

    def destroy(self, obj_id: int) -> None:
        """IOMMU_DESTROY: ENOENT for an unknown id, EBUSY while anything holds it."""
        obj = self._objects.get(obj_id)
        if obj is None:
            raise IommuError(E.ENOENT, f"No object with id {obj_id} exists in this context.",
                             id=obj_id)
        if obj.type is ObjType.DEVICE or obj.users:
            raise IommuError(E.EBUSY, f"Object {obj_id} ({obj.type.name}) is still in use by "
                             f"{obj.users} holder(s).", id=obj_id, users=obj.users)
        self._remove(obj)

    def remove_device(self, obj: IommufdObject) -> None:
        """Unbind's teardown of a DEVICE object, which DESTROY may not do."""
        if obj.users:
            raise RuntimeError(f"device {obj.id} still has {obj.users} users")  # invariant
        self._remove(obj)

    def remove_held(self, obj: IommufdObject) -> None:
        """Remove an object its holder is done with (an access when its fd
        closes), whatever DESTROY would say."""
        if self._objects.get(obj.id) is obj:
            self._remove(obj)

    def tombstone(self, obj: IommufdObject) -> None:
        """iommufd_object_tombstone_user: destroy `obj` now and keep its id
        taken until the context closes: a lookup of it is ENOENT, and it is
        not handed out again (a vDEVICE whose DEVICE was unbound)."""
        if self._objects.get(obj.id) is obj:
            del self._objects[obj.id]
            obj.destroy()

    def release(self) -> int:
        """The fd was closed (iommufd_fops_release): tear down now, or once
        the last device unbinds. Returns how many objects were destroyed now."""
        self.fd_closed = True
        return self.maybe_release()

    def lookup_type(self, obj_id: int, kind: ObjType, what: str) -> IommufdObject:
        """Look up `obj_id` by its type tag (for modules that may not import
        the object's class); a missing id or the wrong type is ENOENT."""
        obj = self._objects.get(obj_id)
        if obj is None or obj.type is not kind:
            raise IommuError(E.ENOENT, f"No {what} with id {obj_id} exists in this context.",
                             id=obj_id)
        return obj

    def maybe_release(self) -> int:
        if self.fd_closed and not self.holders and not self.closed:
            return self.close()
        return 0

    def _remove(self, obj: IommufdObject) -> None:
        if obj is self.vfio_ioas:
            self.vfio_ioas = None  # destroying the compat IOAS clears it (§5.8)
        del self._objects[obj.id]
        self._ids.release(obj.id)
        obj.destroy()

    def close(self) -> int:
        """Destroy every object, leaves first; returns how many were destroyed.
        Selftest mock devices go first: destroying one unbinds its DEVICE
        (iommufd_selftest_destroy), which no other path may do."""
        destroyed = 0
        for obj in list(self._objects.values()):
            obj.context_closing()
        while self._objects:
            leaves = sorted((o for o in self._objects.values() if o.users == 0),
                            key=lambda o: (o.type is not ObjType.SELFTEST, o.id))
            if not leaves:
                raise RuntimeError("iommufd context holds a reference cycle")  # invariant broken
            for obj in leaves:
                if self._objects.get(obj.id) is obj:  # an earlier destroy may have taken it
                    before = len(self._objects)
                    self._remove(obj)
                    destroyed += before - len(self._objects)
        self.closed = True
        return destroyed


# -- handlers (main.c) --------------------------------------------------------------------

def open_context(call: Call, req: pb.OpenContextRequest) -> pb.OpenContextResponse:
    """open("/dev/iommu") (iommufd_fops_open): the new fd, lowest free from 3."""
    return pb.OpenContextResponse(iommufd=call.sess.open_context())


def close_context(call: Call, req: pb.CloseContextRequest) -> pb.CloseContextResponse:
    """close() of an iommufd (iommufd_fops_release)."""
    return pb.CloseContextResponse(destroyed_objects=call.sess.close_fd(req.iommufd))


def destroy(call: Call, req: pb.DestroyRequest) -> pb.DestroyResponse:
    """IOMMU_DESTROY (iommufd_destroy)."""
    call.ctx.destroy(req.id)
    return pb.DestroyResponse()


def list_objects(call: Call, req: pb.ListObjectsRequest) -> pb.ListObjectsResponse:
    out = []
    for obj in call.ctx.objects():
        info = pb.ObjectInfo(id=obj.id, type=cast("pb.ObjectType", int(obj.type)),
                             users=obj.users)
        obj.describe(info)
        out.append(info)
    return pb.ListObjectsResponse(objects=out)


def get_capabilities(call: Call, req: pb.GetCapabilitiesRequest) -> pb.GetCapabilitiesResponse:
    stage = call.rt.config.group_stage
    return pb.GetCapabilitiesResponse(group_stage=stage, multi_device_groups=stage >= 2,
                                      split_groups=stage >= 3, bind_on_iommufd=True, pasid=True)
