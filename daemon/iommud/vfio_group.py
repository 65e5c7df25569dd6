"""Legacy VFIO groups and containers (drivers/vfio/group.c, container.c) as
iommufd objects see them.

A container is an iommufd context (`ctx.container` holds what the legacy API
adds) and its DMA map is one IOAS of that context, the compat IOAS
(IOMMU_VFIO_IOAS). Attaching a group binds each of its VFIO devices to the
context with an internal cookie and attaches it to the compat IOAS through
the ordinary automatic-HWPT path of device.py, as the kernel's
vfio_iommufd_compat_attach_ioas does.

How a container behaves beyond that is its `Backend`, chosen once when the
container is opened: the kernel's own compat layer (vfio_compat.py) or the
type1 driver it emulates (vfio_type1.py). This module is below both.
"""
from __future__ import annotations

import errno as E
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from iommud import device as dev_mod
from iommud.errors import IommuError
from iommud_wire.uapi import PAGE_SIZE, U64_MAX, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU

if TYPE_CHECKING:
    from iommud.call import Call
    from iommud.context import IommufdContext
    from iommud.device import DeviceFd, DeviceObj
    from iommud.host import Host
    from iommud.ioas import Ioas
    from iommud_wire import pb

#: Internal bind cookies: the container owns them, the user never sees them.
COOKIE_BASE = 0x7F1F_0000_0000_0000
TYPE1_TYPES = (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU)


class Backend(Protocol):
    """What differs between the kernel's compat container and type1."""

    #: The container claims a whole group's DMA ownership at SET_CONTAINER
    #: (type1, iommu_group_claim_dma_owner) instead of per device at
    #: GET_DEVICE_FD (the compat layer, via iommufd_device_bind).
    claims_groups: bool

    @property
    def iommu_type(self) -> int: ...

    def check_extension(self, ctx: IommufdContext, extension: int) -> int: ...

    def set_iommu(self, ctx: IommufdContext, iommu_type: int, stage: int) -> None: ...

    def ready(self) -> bool:
        """Container calls are allowed (an IOMMU type is set, where needed)."""
        ...

    def get_info(self, ctx: IommufdContext, argsz: int) -> pb.VfioIommuGetInfoResponse: ...

    def map_dma(self, ctx: IommufdContext, req: pb.VfioIommuMapDmaRequest) -> None: ...

    def unmap_dma(self, call: Call, ctx: IommufdContext,
                  req: pb.VfioIommuUnmapDmaRequest) -> tuple[int, bytes]: ...

    def dirty_pages(self, ctx: IommufdContext, req: pb.VfioIommuDirtyPagesRequest) -> bytes: ...

    def last_group_left(self, ctx: IommufdContext) -> None:
        """The container's last group left (vfio_group_detach_container)."""
        ...


@dataclass(eq=False)
class Container:
    backend: Backend
    groups: dict[int, GroupFd] = field(default_factory=dict)

    @property
    def claims_groups(self) -> bool:
        return self.backend.claims_groups


class GroupFd:
    """An open /dev/vfio/<group>."""

    kind = "group"

    def __init__(self, host: Host, group: int) -> None:
        self.host = host
        self.group = group
        self.ctx: IommufdContext | None = None
        #: Devices bound by the container on this group's behalf.
        self.bound: dict[str, DeviceObj] = {}
        self.device_fds: list[DeviceFd] = []
        self.closed = False

    def release(self) -> int:
        """close(group_fd): the group leaves its container once its device
        fds are closed too (they hold the group open)."""
        self.closed = True
        finish_group(self)
        return 0


def check_argsz(argsz: int, minsz: int, what: str) -> None:
    """VFIO's argsz rule: below minsz is EINVAL, larger is accepted. 0 means
    "not given" (the gRPC API needs no argsz)."""
    if argsz and argsz < minsz:
        raise IommuError(E.EINVAL, f"{what} needs argsz of at least {minsz}, not {argsz}.")


def compat_ioas(ctx: IommufdContext) -> Ioas:
    """The IOAS container calls act on (iommufd_vfio_get_ioas): ENODEV without one."""
    if ctx.vfio_ioas is None:
        raise IommuError(E.ENODEV, "This container has no compat IOAS: set a group on it first.")
    return ctx.vfio_ioas


def vfio_pgsize_bitmap(ioas: Ioas) -> int:
    """iommufd_get_pagesizes (and type1's vfio_update_pgsize_bitmap): every
    domain's page sizes ANDed from ULONG_MAX; sub-page sizes fold into
    PAGE_SIZE rather than vanish ({0x800, 0x200000} reads 0x201000)."""
    bitmap = U64_MAX
    for domain in ioas.domains:
        bitmap &= domain.pgsize_bitmap
    if bitmap & (PAGE_SIZE - 1):
        bitmap = (bitmap & ~(PAGE_SIZE - 1)) | PAGE_SIZE
    return bitmap


def attach_group(ctx: IommufdContext, gfd: GroupFd, stage: int) -> None:
    """Bind every VFIO device of the group with an internal cookie and attach
    it to the compat IOAS; on failure nothing stays bound."""
    ioas = compat_ioas(ctx)
    try:
        for index, member in enumerate(gfd.host.members(gfd.group)):
            if gfd.host.bound_driver.get(member.name) != "vfio-pci":
                continue  # driverless members stay blocked, which is safe
            obj = dev_mod.bind_obj(gfd.host, member, ctx, COOKIE_BASE | gfd.group << 16 | index)
            gfd.bound[member.name] = obj
            try:
                dev_mod.attach_obj(obj, ioas.id, None, stage)
            except IommuError as err:
                if err.errno == E.EADDRINUSE:  # type1 reports reserved-region conflicts as EINVAL
                    raise IommuError(E.EINVAL, err.message, **err.details) from err
                raise
    except BaseException:
        detach_group(gfd)
        raise


def detach_group(gfd: GroupFd) -> None:
    for obj in list(gfd.bound.values()):
        dev_mod.unbind_obj(obj)
    gfd.bound.clear()


def unset_container(gfd: GroupFd) -> None:
    """VFIO_GROUP_UNSET_CONTAINER, and a closing group's implicit one."""
    ctx = gfd.ctx
    if ctx is None:
        raise IommuError(E.EINVAL, f"IOMMU group {gfd.group} has no container.", group=gfd.group)
    if gfd.device_fds:
        raise IommuError(E.EBUSY, f"{len(gfd.device_fds)} device fd(s) of IOMMU group "
                         f"{gfd.group} are still open.", group=gfd.group)
    cont = container_of(ctx)
    detach_group(gfd)
    if cont.claims_groups:
        gfd.host.release_dma_owner(gfd.group)
    del cont.groups[gfd.group]
    gfd.ctx = None
    if not cont.groups:
        cont.backend.last_group_left(ctx)
    ctx.holders -= 1
    ctx.maybe_release()


def finish_group(gfd: GroupFd) -> None:
    if gfd.closed and not gfd.device_fds:
        if gfd.ctx is not None:
            unset_container(gfd)
        gfd.host.group_state(gfd.group).legacy_open = False


def container_of(ctx: IommufdContext) -> Container:
    """The container state of `ctx`; a plain iommufd used through the
    container API is the kernel's compat layer (vfio_compat.py sets it)."""
    cont = ctx.container
    assert cont is not None, "container_of() before the context became a container"
    return cont
