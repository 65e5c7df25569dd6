"""The legacy VFIO container/group API, translated onto iommufd objects
(drivers/iommu/iommufd/vfio_compat.c, drivers/vfio/container.c, group.c).

As the design thread asks, a container is an iommufd context (the kernel's
/dev/vfio/vfio is the same file as /dev/iommu), its DMA map is one IOAS of
that context (the compat IOAS, IOMMU_VFIO_IOAS), and a group's devices are
bound and attached to it through the ordinary device path (vfio_group.py).
The handlers here translate each container and group call into those native
operations; what differs between containers is their backend, chosen once
when the container is opened:

- `IommufdCompat` (here): the kernel's compat layer. The group is claimed per
  device at GET_DEVICE_FD, a bisecting unmap is ENOENT and not atomic, there
  is no mapping limit, DIRTY_PAGES is ENOTTY, DMA_AVAIL reports U32_MAX. A
  plain iommufd context used as a container is always this.
- `Type1` (vfio_type1.py): vfio_iommu_type1.c, for vfio_mode "type1".
"""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING

from iommud import device as dev_mod, files, vfio_type1
from iommud.errors import IommuError, check_reserved
from iommud.failnth import step
from iommud.ioas import Ioas, new_ioas
from iommud.vfio_group import (
    COOKIE_BASE,
    TYPE1_TYPES,
    Container,
    GroupFd,
    attach_group,
    check_argsz,
    compat_ioas,
    finish_group,
    unset_container,
    vfio_pgsize_bitmap,
)
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_IOAS_MAP_FIXED_IOVA,
    IOMMU_IOAS_MAP_READABLE,
    IOMMU_IOAS_MAP_WRITEABLE,
    IOMMU_VFIO_IOAS_CLEAR,
    IOMMU_VFIO_IOAS_GET,
    IOMMU_VFIO_IOAS_SET,
    U32_MAX,
    U64_MAX,
    VFIO_API_VERSION,
    VFIO_DMA_CC_IOMMU,
    VFIO_DMA_MAP_FLAG_READ,
    VFIO_DMA_MAP_FLAG_WRITE,
    VFIO_DMA_UNMAP_FLAG_ALL,
    VFIO_GROUP_FLAGS_CONTAINER_SET,
    VFIO_GROUP_FLAGS_VIABLE,
    VFIO_IOMMU_INFO_CAPS,
    VFIO_IOMMU_INFO_PGSIZES,
    VFIO_TYPE1_IOMMU,
    VFIO_UNMAP_ALL,
    VFIO_TYPE1v2_IOMMU,
)

if TYPE_CHECKING:
    from iommud.call import Call
    from iommud.context import IommufdContext
    from iommud.device import DeviceObj
    from iommud.topology import Device as HostDevice

MAP_MINSZ, UNMAP_MINSZ, INFO_MINSZ, STATUS_MINSZ = 32, 24, 16, 8
INFO_SIZE = 24
MODE_TYPE1 = "type1"
MODE_IOMMUFD = "iommufd"


class IommufdCompat:
    """The kernel's own compat container (vfio_compat.c)."""

    claims_groups = False

    def __init__(self) -> None:
        self._iommu_type = 0

    @property
    def iommu_type(self) -> int:
        return self._iommu_type

    def ready(self) -> bool:
        return True  # the compat layer needs no VFIO_SET_IOMMU before its calls

    def check_extension(self, ctx: IommufdContext, extension: int) -> int:
        """iommufd_vfio_check_extension."""
        if extension in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL):
            return 1
        if extension == VFIO_DMA_CC_IOMMU:
            compat_ioas(ctx)  # ENODEV without one
            return 1
        return 0

    def set_iommu(self, ctx: IommufdContext, iommu_type: int, stage: int) -> None:
        """iommufd_vfio_set_iommu: the type (EINVAL) before the IOAS (ENODEV);
        TYPE1 disables large pages on the compat IOAS, so that v1 unmaps can
        cut mappings (iopt_disable_large_pages); TYPE1v2 changes nothing and
        does not re-enable them. It may be called repeatedly."""
        if iommu_type not in TYPE1_TYPES:
            raise IommuError(E.EINVAL, f"The compat container serves TYPE1 and TYPE1v2, not "
                             f"{iommu_type}.")
        ioas = compat_ioas(ctx)
        if iommu_type == VFIO_TYPE1_IOMMU:
            ioas.set_huge_pages(False)
        self._iommu_type = iommu_type

    def get_info(self, ctx: IommufdContext, argsz: int) -> pb.VfioIommuGetInfoResponse:
        """iommufd_vfio_iommu_get_info: page sizes and the IOVA ranges; no
        migration capability; DMA_AVAIL is U32_MAX."""
        check_argsz(argsz, INFO_MINSZ, "VFIO_IOMMU_GET_INFO")
        ioas = compat_ioas(ctx)
        ranges = ioas.iopt.iova_ranges()
        bitmap = vfio_pgsize_bitmap(ioas)
        full = INFO_SIZE + 16 + 16 * len(ranges) + 16
        resp = pb.VfioIommuGetInfoResponse(flags=VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
                                           iova_pgsizes=max(bitmap, ioas.iopt.iova_alignment))
        if argsz and argsz < full:
            resp.argsz, resp.cap_offset = full, 0  # only the fixed part fits
            return resp
        # argsz comes back as the size of everything, whatever was passed
        # (iommufd_vfio_iommu_get_info: info.argsz = total_cap_size).
        resp.argsz, resp.cap_offset = full, INFO_SIZE
        resp.iova_ranges.extend(pb.IovaRange(start=s, last=last) for s, last in ranges)
        resp.dma_avail = U32_MAX
        return resp

    def map_dma(self, ctx: IommufdContext, req: pb.VfioIommuMapDmaRequest) -> None:
        """iommufd_vfio_map_dma: iopt_map_user_pages with a fixed IOVA, its
        errno as-is. Neither READ nor WRITE is accepted here (the EINVAL for
        it lives in IOAS_MAP's handler); a domain then refuses to map such
        an area (EINVAL from its map_range), now or when one is attached."""
        flags = req.flags
        if flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE):
            raise IommuError(E.EINVAL, f"The compat MAP_DMA takes READ and WRITE only, not "
                             f"{flags:#x}.")
        prot = ((IOMMU_IOAS_MAP_READABLE if flags & VFIO_DMA_MAP_FLAG_READ else 0)
                | (IOMMU_IOAS_MAP_WRITEABLE if flags & VFIO_DMA_MAP_FLAG_WRITE else 0))
        ioas = compat_ioas(ctx)
        ctx.account.charge(req.size)
        step("area")
        ioas.iopt.map_user_pages(IOMMU_IOAS_MAP_FIXED_IOVA | prot, req.vaddr, req.size, req.iova)

    def unmap_dma(self, call: Call, ctx: IommufdContext,
                  req: pb.VfioIommuUnmapDmaRequest) -> tuple[int, bytes]:
        """iommufd_vfio_unmap_dma: IOAS_UNMAP, not atomic (a bisected area is
        ENOENT after the whole areas before it went)."""
        flags, iova, size = req.flags, req.iova, req.size
        if flags & ~VFIO_DMA_UNMAP_FLAG_ALL:
            raise IommuError(E.EINVAL, f"The compat UNMAP_DMA takes ALL only, not {flags:#x}.")
        if flags & VFIO_DMA_UNMAP_FLAG_ALL and (iova or size):
            raise IommuError(E.EINVAL, "UNMAP_DMA with ALL takes iova 0 and size 0.")
        ioas = compat_ioas(ctx)
        if flags & VFIO_DMA_UNMAP_FLAG_ALL:
            ioas.notify_unmap(0, U64_MAX)
            return ioas.iopt.unmap_all(), b""
        if not ioas.huge_pages and size and iova + size - 1 <= U64_MAX:
            # v1 semantics: cut the mappings at both ends of the range first,
            # so the unmap takes exactly the range (iopt_cut_iova).
            cuts = [iova + size - 1, iova - 1] if iova else [iova + size - 1]
            for p in cuts:  # iopt_area_split: a dma-buf's area is not cut
                area = ioas.iopt.area_from(p)
                if (area is not None and area[0] < p < area[0] + area[1] - 1
                        and files.dmabuf_at(ioas, p)):
                    raise IommuError(E.EOPNOTSUPP, f"The area at {area[0]:#x} is a dma-buf's; "
                                     f"it cannot be cut.", iova=area[0])
            try:
                ioas.iopt.cut(cuts)
            finally:  # cuts before a failing one stay done
                files.sources_of(ioas).after_cut(cuts)
        near = ioas.iopt.area_from(iova)
        if size and iova + size - 1 <= U64_MAX and (near is None or near[0] > iova + size - 1):
            return 0, b""  # iopt_unmap_iova_range: an empty range succeeds with size 0
        ioas.notify_unmap(iova, size)
        return ioas.iopt.unmap(iova, size), b""  # partial on ENOENT, as IOAS_UNMAP

    def dirty_pages(self, ctx: IommufdContext, req: pb.VfioIommuDirtyPagesRequest) -> bytes:
        raise IommuError(E.ENOTTY, "The iommufd compat container has no VFIO_IOMMU_DIRTY_PAGES; "
                         "use IOMMU_HWPT_SET_DIRTY_TRACKING.")

    def last_group_left(self, ctx: IommufdContext) -> None:
        """Nothing: the compat IOAS and its mappings stay with the iommufd."""


def container_for(ctx: IommufdContext) -> Container:
    """The container state of `ctx`. A plain iommufd used through the
    container API is the kernel's compat layer (iommufd_vfio_ioctl)."""
    if ctx.container is None:
        ctx.container = Container(IommufdCompat())
    return ctx.container


# -- container handlers (container.c, vfio_compat.c) ----------------------------------------

def open_container(call: Call, req: pb.OpenContainerRequest) -> pb.OpenContainerResponse:
    """open("/dev/vfio/vfio"): an iommufd whose container calls follow the
    daemon's vfio_mode."""
    sess, cfg = call.sess, call.rt.config
    fd = sess.open_context()
    sess.context(fd).container = (vfio_type1.new_container(cfg.dma_entry_limit)
                                  if cfg.vfio_mode == MODE_TYPE1 else Container(IommufdCompat()))
    return pb.OpenContainerResponse(container_fd=fd)


def vfio_get_api_version(call: Call, req: pb.VfioGetApiVersionRequest
                         ) -> pb.VfioGetApiVersionResponse:
    return pb.VfioGetApiVersionResponse(version=VFIO_API_VERSION)


def vfio_check_extension(call: Call, req: pb.VfioCheckExtensionRequest
                         ) -> pb.VfioCheckExtensionResponse:
    ctx = call.ctx
    return pb.VfioCheckExtensionResponse(
        value=container_for(ctx).backend.check_extension(ctx, req.extension))


def vfio_set_iommu(call: Call, req: pb.VfioSetIommuRequest) -> pb.VfioSetIommuResponse:
    ctx = call.ctx
    container_for(ctx).backend.set_iommu(ctx, req.type, call.rt.config.group_stage)
    return pb.VfioSetIommuResponse()


def vfio_iommu_get_info(call: Call, req: pb.VfioIommuGetInfoRequest
                        ) -> pb.VfioIommuGetInfoResponse:
    ctx = call.ctx
    return container_for(ctx).backend.get_info(ctx, req.argsz)


def vfio_iommu_map_dma(call: Call, req: pb.VfioIommuMapDmaRequest) -> pb.VfioIommuMapDmaResponse:
    check_argsz(req.argsz, MAP_MINSZ, "VFIO_IOMMU_MAP_DMA")
    ctx = call.ctx
    container_for(ctx).backend.map_dma(ctx, req)
    return pb.VfioIommuMapDmaResponse()


def vfio_iommu_unmap_dma(call: Call, req: pb.VfioIommuUnmapDmaRequest
                         ) -> pb.VfioIommuUnmapDmaResponse:
    check_argsz(req.argsz, UNMAP_MINSZ, "VFIO_IOMMU_UNMAP_DMA")
    ctx = call.ctx
    size, bitmap = container_for(ctx).backend.unmap_dma(call, ctx, req)
    return pb.VfioIommuUnmapDmaResponse(size=size, bitmap=bitmap)


def vfio_iommu_dirty_pages(call: Call, req: pb.VfioIommuDirtyPagesRequest
                           ) -> pb.VfioIommuDirtyPagesResponse:
    ctx = call.ctx
    return pb.VfioIommuDirtyPagesResponse(bitmap=container_for(ctx).backend.dirty_pages(ctx, req))


def iommu_vfio_ioas(call: Call, req: pb.IommuVfioIoasRequest) -> pb.IommuVfioIoasResponse:
    """IOMMU_VFIO_IOAS (iommufd_vfio_ioas): get, set or clear the compat IOAS."""
    ctx = call.ctx
    check_reserved(req.reserved)
    if req.op == IOMMU_VFIO_IOAS_GET:
        return pb.IommuVfioIoasResponse(ioas_id=compat_ioas(ctx).id)
    if req.op == IOMMU_VFIO_IOAS_SET:
        ctx.vfio_ioas = ctx.get(req.ioas_id, Ioas, "IOAS")
        return pb.IommuVfioIoasResponse(ioas_id=req.ioas_id)
    if req.op == IOMMU_VFIO_IOAS_CLEAR:
        ctx.vfio_ioas = None
        return pb.IommuVfioIoasResponse(ioas_id=0)
    raise IommuError(E.EOPNOTSUPP, f"Unknown IOMMU_VFIO_IOAS op {req.op}.")


# -- group handlers (group.c) ----------------------------------------------------------------

def open_group(call: Call, req: pb.OpenGroupRequest) -> pb.OpenGroupResponse:
    """open("/dev/vfio/<group>") (vfio_group_fops_open)."""
    sess, host = call.sess, call.rt.host
    sess.check_fd_room()
    state = host.group_state(req.group)
    if state.legacy_open:
        raise IommuError(E.EBUSY, f"IOMMU group {req.group} is already open.", group=req.group)
    if state.open_devices:
        raise IommuError(E.EBUSY, f"A device of IOMMU group {req.group} is bound through its "
                         f"VFIO device node; the group node cannot be opened.", group=req.group)
    state.legacy_open = True
    return pb.OpenGroupResponse(group_fd=sess.install(GroupFd(host, req.group)))


def close_group(call: Call, req: pb.CloseGroupRequest) -> pb.CloseGroupResponse:
    call.sess.close_fd(req.group_fd)
    return pb.CloseGroupResponse()


def vfio_group_get_status(call: Call, req: pb.VfioGroupGetStatusRequest
                          ) -> pb.VfioGroupGetStatusResponse:
    """VFIO_GROUP_GET_STATUS (vfio_group_ioctl_get_status)."""
    gfd = call.group
    check_argsz(req.argsz, STATUS_MINSZ, "VFIO_GROUP_GET_STATUS")
    if gfd.ctx is not None:
        flags = VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET
    else:
        flags = VFIO_GROUP_FLAGS_VIABLE if gfd.host.group_state(gfd.group).owner_cnt == 0 else 0
    return pb.VfioGroupGetStatusResponse(flags=flags)


def vfio_group_set_container(call: Call, req: pb.VfioGroupSetContainerRequest
                             ) -> pb.VfioGroupSetContainerResponse:
    """VFIO_GROUP_SET_CONTAINER (vfio_container_attach_group): the compat IOAS
    is made with the first group; a group-claiming container attaches the
    group now if its IOMMU type is already set."""
    gfd = call.group
    ctx = call.sess.iommufd_arg(req.container_fd)
    if gfd.ctx is not None:
        raise IommuError(E.EINVAL, f"IOMMU group {gfd.group} already has a container.",
                         group=gfd.group)
    cont = container_for(ctx)
    if cont.claims_groups:
        gfd.host.claim_group(gfd.group, ctx)  # EPERM while any member is in use
    created = None
    try:
        if ctx.vfio_ioas is None:
            created = ctx.vfio_ioas = new_ioas(ctx)
        if cont.claims_groups and cont.backend.ready():
            attach_group(ctx, gfd, call.rt.config.group_stage)
    except BaseException:
        if created is not None:
            ctx.destroy(created.id)
        if cont.claims_groups:
            gfd.host.release_dma_owner(gfd.group)
        raise
    gfd.ctx = ctx
    cont.groups[gfd.group] = gfd
    ctx.holders += 1
    return pb.VfioGroupSetContainerResponse()


def vfio_group_unset_container(call: Call, req: pb.VfioGroupUnsetContainerRequest
                               ) -> pb.VfioGroupUnsetContainerResponse:
    unset_container(call.group)
    return pb.VfioGroupUnsetContainerResponse()


def vfio_group_get_device_fd(call: Call, req: pb.VfioGroupGetDeviceFdRequest
                             ) -> pb.VfioGroupGetDeviceFdResponse:
    """VFIO_GROUP_GET_DEVICE_FD (vfio_group_ioctl_get_device_fd). A
    group-claiming container bound the device when the group attached; the
    compat layer binds it now, once per device, and unbinds it when its last
    fd closes."""
    gfd, sess = call.group, call.sess
    sess.check_fd_room()
    if gfd.ctx is None:
        raise IommuError(E.EINVAL, f"IOMMU group {gfd.group} has no container.", group=gfd.group)
    name = req.name
    member = gfd.host.devices.get(name)
    if member is None or member.group != gfd.group or gfd.host.bound_driver.get(name) != "vfio-pci":
        raise IommuError(E.ENODEV, f"IOMMU group {gfd.group} has no VFIO device named "
                         f"{name[:64]!r}.", group=gfd.group, device=name[:64])
    ctx = gfd.ctx
    cont = container_for(ctx)
    devfd = dev_mod.DeviceFd(gfd.host, member, via_group=True)
    if cont.claims_groups:
        if not cont.backend.ready():
            raise IommuError(E.EINVAL, "Set an IOMMU type on the container first.")
        devfd.bound = gfd.bound[name]
        per_device = False
    else:
        devfd.bound = _compat_bind(ctx, gfd, member, call.rt.config.group_stage)
        per_device = True
    gfd.device_fds.append(devfd)

    devfd.on_close.append(_GroupDeviceClosed(gfd, name, per_device))
    return pb.VfioGroupGetDeviceFdResponse(device_fd=sess.install(devfd))


class _GroupDeviceClosed:
    """A group-obtained device fd closed: the group counts its device fds
    (they hold it open); the compat layer unbinds the device with its last
    fd. An object, not a closure, so that a snapshot can hold it."""

    def __init__(self, gfd: GroupFd, name: str, per_device: bool) -> None:
        self.gfd = gfd
        self.name = name
        self.per_device = per_device

    def __call__(self, fd: dev_mod.DeviceFd) -> None:
        gfd = self.gfd
        gfd.device_fds.remove(fd)
        if self.per_device and not any(f.host_dev.name == self.name for f in gfd.device_fds):
            dev_mod.unbind_obj(gfd.bound.pop(self.name))
        finish_group(gfd)


def _compat_bind(ctx: IommufdContext, gfd: GroupFd, member: HostDevice, stage: int) -> DeviceObj:
    """vfio_df_group_open → vfio_iommufd_compat_attach_ioas: bind the device
    to the container's iommufd and attach it to the compat IOAS, once."""
    ioas = compat_ioas(ctx)
    obj = gfd.bound.get(member.name)
    if obj is None:
        obj = dev_mod.bind_obj(gfd.host, member, ctx, COOKIE_BASE | gfd.group << 16)
        try:
            dev_mod.attach_obj(obj, ioas.id, None, stage)
        except BaseException:
            dev_mod.unbind_obj(obj)
            raise
        gfd.bound[member.name] = obj
    return obj
