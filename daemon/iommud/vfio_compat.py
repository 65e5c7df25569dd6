"""The legacy VFIO container/group API, translated onto iommufd objects.

As the design thread asks, a container is an iommufd context (the kernel's
/dev/vfio/vfio is the same file as /dev/iommu), its DMA map is one IOAS of
that context (the compat IOAS, IOMMU_VFIO_IOAS), and attaching a group binds
each of its VFIO devices to the context with an internal cookie and attaches
it to that IOAS through the ordinary automatic-HWPT path. Maps, unmaps,
translation and dirty bits go through the same IO page table as the native
API; the Container only keeps what type1 adds on top (the IOMMU type, the
mapping-count limit, dirty tracking started through the container).

Two behaviours, chosen per container when it is opened:
- "type1" (the default): vfio_iommu_type1.c. The group is claimed at
  SET_CONTAINER, v2 unmaps that bisect a mapping are EINVAL and atomic, v1
  unmaps follow type1's start-of-mapping rule, MAP_DMA counts against
  dma_entry_limit (ENOSPC), DIRTY_PAGES works.
- "iommufd": the kernel's vfio_compat.c. The group is claimed at
  GET_DEVICE_FD, a bisecting unmap is ENOENT and not atomic, there is no
  mapping limit, DIRTY_PAGES is ENOTTY, DMA_AVAIL reports U32_MAX.
A plain iommufd context used as a container always behaves as "iommufd".
"""
from __future__ import annotations

import dataclasses
import errno as E
from typing import TYPE_CHECKING

from iommud import _core
from iommud import device as dev_mod
from iommud.context import IommufdContext
from iommud.device import DeviceFd, DeviceObj
from iommud.errors import IommuError
from iommud.failnth import step
from iommud.host import Host
from iommud.ioas import Ioas, new_ioas

if TYPE_CHECKING:
    from iommud.session import Session

VFIO_API_VERSION = 0
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3
VFIO_DMA_CC_IOMMU = 4
VFIO_NOIOMMU_IOMMU = 8
VFIO_UNMAP_ALL = 9
VFIO_UPDATE_VADDR = 10

VFIO_DMA_MAP_FLAG_READ = 1
VFIO_DMA_MAP_FLAG_WRITE = 2
VFIO_DMA_MAP_FLAG_VADDR = 4
VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1
VFIO_DMA_UNMAP_FLAG_ALL = 2
VFIO_DMA_UNMAP_FLAG_VADDR = 4
VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1
VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 2
VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 4
VFIO_GROUP_FLAGS_VIABLE = 1
VFIO_GROUP_FLAGS_CONTAINER_SET = 2
VFIO_IOMMU_INFO_PGSIZES = 1
VFIO_IOMMU_INFO_CAPS = 2

IOMMU_VFIO_IOAS_GET, IOMMU_VFIO_IOAS_SET, IOMMU_VFIO_IOAS_CLEAR = 0, 1, 2

PAGE_SIZE = 4096
PAGE_MASK = ((1 << 64) - 1) & ~(PAGE_SIZE - 1)
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
DIRTY_BITMAP_MAX = 1 << 28  # bytes: type1's DIRTY_BITMAP_SIZE_MAX
MAP_MINSZ, UNMAP_MINSZ, INFO_MINSZ, STATUS_MINSZ, DIRTY_MINSZ = 32, 24, 16, 8, 8
INFO_SIZE = 24
#: Internal bind cookies: the container owns them, the user never sees them.
COOKIE_BASE = 0x7F1F_0000_0000_0000

MODE_TYPE1 = "type1"
MODE_IOMMUFD = "iommufd"


@dataclasses.dataclass
class Container:
    mode: str
    dma_entry_limit: int
    iommu_type: int = 0
    dma_avail: int = 0
    dirty_started: bool = False
    groups: dict[int, "GroupFd"] = dataclasses.field(default_factory=dict)
    #: Mappings (by IOVA) whose vaddr was invalidated by UNMAP_DMA(VADDR) and
    #: awaits MAP_DMA(VADDR): type1's UPDATE_VADDR for live update.
    invalid_vaddr: set[int] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        self.dma_avail = self.dma_entry_limit

    @property
    def v2(self) -> bool:
        return self.iommu_type == VFIO_TYPE1v2_IOMMU


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


def _check_argsz(argsz: int, minsz: int, what: str) -> None:
    if argsz and argsz < minsz:
        raise IommuError(E.EINVAL, f"{what} needs argsz of at least {minsz}, not {argsz}.")


def _container(ctx: IommufdContext) -> Container:
    if ctx.container is None:
        # A plain iommufd used through the container API is the kernel's compat layer.
        ctx.container = Container(MODE_IOMMUFD, dma_entry_limit=U32_MAX)
    return ctx.container


def _compat_ioas(ctx: IommufdContext) -> Ioas:
    if ctx.vfio_ioas is None:
        raise IommuError(E.ENODEV, "This container has no compat IOAS: set a group on it first.")
    return ctx.vfio_ioas


def compat_iopt(ctx: IommufdContext) -> _core.IoPagetable | None:
    """The table of an iommufd-mode container's compat IOAS, if it has one
    (type1 mode's unmap is atomic, so only this one is asked for)."""
    try:
        cont = _container(ctx)
    except IommuError:
        return None
    return ctx.vfio_ioas.iopt if cont.mode == MODE_IOMMUFD and ctx.vfio_ioas else None


def _type1_ready(ctx: IommufdContext) -> Container:
    """Container calls after SET_IOMMU (type1 mode needs it, EINVAL)."""
    cont = _container(ctx)
    if cont.mode == MODE_TYPE1 and not cont.iommu_type:
        raise IommuError(E.EINVAL, "Set an IOMMU type on the container (VFIO_SET_IOMMU) first.")
    return cont


# -- container ---------------------------------------------------------------------

def open_container(sess: Session, mode: str, dma_entry_limit: int) -> int:
    fd = sess.open_context()
    ctx = sess.context(fd)
    ctx.container = Container(mode, dma_entry_limit)
    return fd


def check_extension(ctx: IommufdContext, extension: int) -> int:
    cont = _container(ctx)
    if extension in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL):
        return 1
    if extension == VFIO_DMA_CC_IOMMU:
        if cont.mode == MODE_IOMMUFD:
            _compat_ioas(ctx)  # ENODEV without one, as vfio_compat.c
            return 1
        return 1 if cont.iommu_type else 0
    if extension == VFIO_UPDATE_VADDR:
        # type1 answers 1 once it has IOMMU data (there are no mdev groups here).
        return 1 if cont.mode == MODE_TYPE1 and cont.iommu_type else 0
    return 0  # NOIOMMU, SPAPR and nesting do not exist here


def set_iommu(ctx: IommufdContext, iommu_type: int, stage: int) -> None:
    cont = _container(ctx)
    if cont.mode == MODE_IOMMUFD:
        _compat_ioas(ctx)
        if iommu_type not in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU):
            raise IommuError(E.EINVAL, f"The compat container serves TYPE1 and TYPE1v2, not "
                             f"{iommu_type}.")
        cont.iommu_type = iommu_type  # may be called repeatedly
        return
    if not cont.groups:
        raise IommuError(E.EINVAL, "VFIO_SET_IOMMU needs a group set on the container first.")
    if cont.iommu_type:
        raise IommuError(E.EINVAL, "The container already has an IOMMU type.")
    if iommu_type not in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU):
        raise IommuError(E.ENODEV, f"No IOMMU driver serves type {iommu_type}.")
    attached: list[GroupFd] = []
    try:
        for gfd in cont.groups.values():
            _attach_group(ctx, gfd, stage)
            attached.append(gfd)
    except BaseException:
        for gfd in attached:
            _detach_group(gfd)
        raise
    cont.iommu_type = iommu_type


def _attach_group(ctx: IommufdContext, gfd: GroupFd, stage: int) -> None:
    """Bind every VFIO device of the group with an internal cookie and attach
    it to the compat IOAS; on failure nothing stays bound."""
    ioas = _compat_ioas(ctx)
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
        _detach_group(gfd)
        raise


def _detach_group(gfd: GroupFd) -> None:
    for obj in list(gfd.bound.values()):
        dev_mod.unbind_obj(obj)
    gfd.bound.clear()


# -- groups ------------------------------------------------------------------------------

def open_group(host: Host, group: int) -> GroupFd:
    state = host.group_state(group)
    if state.legacy_open:
        raise IommuError(E.EBUSY, f"IOMMU group {group} is already open.", group=group)
    if state.open_devices:
        raise IommuError(E.EBUSY, f"A device of IOMMU group {group} is bound through its VFIO "
                         f"device node; the group node cannot be opened.", group=group)
    state.legacy_open = True
    return GroupFd(host, group)


def get_status(gfd: GroupFd, argsz: int) -> int:
    _check_argsz(argsz, STATUS_MINSZ, "VFIO_GROUP_GET_STATUS")
    if gfd.ctx is not None:
        return VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET
    return VFIO_GROUP_FLAGS_VIABLE if gfd.host.group_state(gfd.group).owner_cnt == 0 else 0


def set_container(gfd: GroupFd, ctx: IommufdContext, stage: int) -> None:
    if gfd.ctx is not None:
        raise IommuError(E.EINVAL, f"IOMMU group {gfd.group} already has a container.",
                         group=gfd.group)
    cont = _container(ctx)
    if cont.mode == MODE_TYPE1:
        gfd.host.claim_group(gfd.group, ctx)  # EPERM while any member is in use
    created = None
    try:
        if ctx.vfio_ioas is None:
            created = ctx.vfio_ioas = _new_ioas(ctx)
        if cont.mode == MODE_TYPE1 and cont.iommu_type:
            _attach_group(ctx, gfd, stage)
    except BaseException:
        if created is not None:
            ctx.destroy(created.id)
        if cont.mode == MODE_TYPE1:
            gfd.host.release_dma_owner(gfd.group)
        raise
    gfd.ctx = ctx
    cont.groups[gfd.group] = gfd
    ctx.holders += 1


def _new_ioas(ctx: IommufdContext) -> Ioas:
    return new_ioas(ctx)


def unset_container(gfd: GroupFd) -> None:
    if gfd.ctx is None:
        raise IommuError(E.EINVAL, f"IOMMU group {gfd.group} has no container.", group=gfd.group)
    if gfd.device_fds:
        raise IommuError(E.EBUSY, f"{len(gfd.device_fds)} device fd(s) of IOMMU group "
                         f"{gfd.group} are still open.", group=gfd.group)
    ctx, cont = gfd.ctx, _container(gfd.ctx)
    _detach_group(gfd)
    if cont.mode == MODE_TYPE1:
        gfd.host.release_dma_owner(gfd.group)
    del cont.groups[gfd.group]
    gfd.ctx = None
    if cont.mode == MODE_TYPE1 and not cont.groups:
        # The last group leaving releases the IOMMU driver and every mapping.
        if ctx.vfio_ioas is not None:
            ctx.vfio_ioas.iopt.set_dirty_tracking(False)
            ctx.vfio_ioas.iopt.unmap_all()
        cont.iommu_type, cont.dirty_started, cont.dma_avail = 0, False, cont.dma_entry_limit
        cont.invalid_vaddr.clear()
    ctx.holders -= 1
    ctx.maybe_release()


def close_group(gfd: GroupFd) -> None:
    """close(group_fd): the group leaves its container once its device fds
    are closed too (they hold the group open)."""
    gfd.closed = True
    _finish_group(gfd)


def _finish_group(gfd: GroupFd) -> None:
    if gfd.closed and not gfd.device_fds:
        if gfd.ctx is not None:
            unset_container(gfd)
        gfd.host.group_state(gfd.group).legacy_open = False


def get_device_fd(gfd: GroupFd, name: str, stage: int) -> DeviceFd:
    if gfd.ctx is None:
        raise IommuError(E.EINVAL, f"IOMMU group {gfd.group} has no container.", group=gfd.group)
    member = gfd.host.devices.get(name)
    if member is None or member.group != gfd.group or gfd.host.bound_driver.get(name) != "vfio-pci":
        raise IommuError(E.ENODEV, f"IOMMU group {gfd.group} has no VFIO device named {name!r}.",
                         group=gfd.group, device=name)
    ctx, cont = gfd.ctx, _container(gfd.ctx)
    devfd = DeviceFd(gfd.host, member, via_group=True)
    if cont.mode == MODE_TYPE1:
        if not cont.iommu_type:
            raise IommuError(E.EINVAL, "Set an IOMMU type on the container first.")
        devfd.bound = gfd.bound[name]
    else:
        ioas = _compat_ioas(ctx)
        obj = gfd.bound.get(name)
        if obj is None:
            obj = dev_mod.bind_obj(gfd.host, member, ctx, COOKIE_BASE | gfd.group << 16)
            try:
                dev_mod.attach_obj(obj, ioas.id, None, stage)
            except BaseException:
                dev_mod.unbind_obj(obj)
                raise
            gfd.bound[name] = obj
        devfd.bound = obj
    gfd.device_fds.append(devfd)

    def closed(fd: DeviceFd) -> None:
        gfd.device_fds.remove(fd)
        if cont.mode == MODE_IOMMUFD and not any(f.host_dev.name == name for f in gfd.device_fds):
            dev_mod.unbind_obj(gfd.bound.pop(name))
        _finish_group(gfd)

    devfd.on_close.append(closed)
    return devfd


# -- DMA mapping ----------------------------------------------------------------------------

def _pgsize_bitmap(ioas: Ioas) -> int:
    bitmap = PAGE_MASK
    for domain in ioas.domains:
        bitmap &= domain.pgsize_bitmap
    if bitmap & (PAGE_SIZE - 1):
        bitmap = (bitmap & ~(PAGE_SIZE - 1)) | PAGE_SIZE
    return bitmap


def get_info(ctx: IommufdContext, argsz: int) -> dict:
    _check_argsz(argsz, INFO_MINSZ, "VFIO_IOMMU_GET_INFO")
    cont = _type1_ready(ctx)
    ioas = _compat_ioas(ctx)
    ranges = ioas.iopt.iova_ranges()
    pgsizes = _pgsize_bitmap(ioas)
    if cont.mode == MODE_IOMMUFD:
        pgsizes = max(pgsizes, ioas.iopt.iova_alignment)
    caps_size = 16 + 16 * len(ranges) + 16 + (32 if cont.mode == MODE_TYPE1 else 0)
    full = INFO_SIZE + caps_size
    out: dict = {"flags": VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, "iova_pgsizes": pgsizes}
    if argsz and argsz < full:
        out.update(argsz=full, cap_offset=0)  # only the fixed part fits
        return out
    out.update(argsz=argsz or full, cap_offset=INFO_SIZE, iova_ranges=ranges,
               dma_avail=cont.dma_avail if cont.mode == MODE_TYPE1 else U32_MAX)
    if cont.mode == MODE_TYPE1:
        out["migration"] = (0, PAGE_SIZE, DIRTY_BITMAP_MAX)
    return out


def _end(start: int, size: int) -> int:
    last = start + size - 1
    if last > U64_MAX:
        raise IommuError(E.EOVERFLOW, f"{start:#x} + {size:#x} wraps past 2^64.")
    return last


def map_dma(ctx: IommufdContext, argsz: int, flags: int, vaddr: int, iova: int, size: int) -> None:
    _check_argsz(argsz, MAP_MINSZ, "VFIO_IOMMU_MAP_DMA")
    cont = _container(ctx)
    rw = flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
    prot = (4 if flags & VFIO_DMA_MAP_FLAG_READ else 0) | (2 if flags & VFIO_DMA_MAP_FLAG_WRITE else 0)
    if cont.mode == MODE_IOMMUFD:
        if flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE):
            raise IommuError(E.EINVAL, f"The compat MAP_DMA takes READ and WRITE only, not {flags:#x}.")
        ioas = _compat_ioas(ctx)
        ctx.account.charge(size)
        step("area")
        ioas.iopt.map(1 | prot, vaddr, size, iova)  # IOAS_MAP(FIXED_IOVA): its errno as-is
        return
    if flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR):
        raise IommuError(E.EINVAL, f"Unknown MAP_DMA flag bits {flags:#x}.")
    _type1_ready(ctx)
    if size == 0:
        raise IommuError(E.EINVAL, "MAP_DMA of zero bytes.")
    last = _end(iova, size)
    _end(vaddr, size)
    vaddr_update = bool(flags & VFIO_DMA_MAP_FLAG_VADDR)
    if rw and vaddr_update or not rw and not vaddr_update:
        raise IommuError(E.EINVAL, "MAP_DMA needs READ and/or WRITE, or VADDR alone.")
    if (size | iova | vaddr) & (PAGE_SIZE - 1):
        raise IommuError(E.EINVAL, f"iova {iova:#x}, vaddr {vaddr:#x} and size {size:#x} must be "
                         f"multiples of {PAGE_SIZE:#x}.")
    ioas = _compat_ioas(ctx)
    if vaddr_update:
        _update_vaddr(cont, ioas, iova, size, vaddr)
        return
    near = ioas.iopt.area_from(iova)
    if near is not None and near[0] <= last:
        raise IommuError(E.EEXIST, f"{iova:#x}..{last:#x} overlaps the mapping at {near[0]:#x}.")
    if cont.dma_avail == 0:
        raise IommuError(E.ENOSPC, f"The container holds {cont.dma_entry_limit} mappings, its "
                         f"dma_entry_limit.", limit=cont.dma_entry_limit)
    ctx.account.charge(size)
    step("area")
    ioas.iopt.map(1 | prot, vaddr, size, iova)  # reserved ranges -> EINVAL, as type1
    cont.dma_avail -= 1


def _update_vaddr(cont: Container, ioas: Ioas, iova: int, size: int, vaddr: int) -> None:
    """MAP_DMA(VADDR): give an invalidated mapping its new user address. The
    IOVA range and permissions stay; only the backing address moves."""
    area = ioas.iopt.area_from(iova)
    if area is None or area[0] > iova or area[0] + area[1] - 1 < iova:
        raise IommuError(E.ENOENT, f"No mapping at {iova:#x} to update.")
    if area[0] != iova or area[1] != size or iova not in cont.invalid_vaddr:
        raise IommuError(E.EINVAL, f"The mapping at {area[0]:#x} (size {area[1]:#x}) is not an "
                         f"invalidated mapping of exactly {iova:#x}+{size:#x}.")
    ioas.iopt.unmap(iova, size)
    ioas.iopt.map(1 | area[3], vaddr, size, iova)  # same range, so it cannot fail
    cont.invalid_vaddr.discard(iova)


def _invalidate_vaddr(cont: Container, ioas: Ioas, iova: int, last: int) -> int:
    """UNMAP_DMA(VADDR): mark every mapping in [iova, last] invalid; one that
    already is makes the whole call EINVAL with nothing marked."""
    hits = []
    area = ioas.iopt.area_from(iova)
    while area is not None and area[0] <= last:
        if area[0] in cont.invalid_vaddr:
            raise IommuError(E.EINVAL, f"The vaddr of the mapping at {area[0]:#x} is already "
                             f"invalid.")
        hits.append(area)
        end = area[0] + area[1]
        area = ioas.iopt.area_from(end) if end <= U64_MAX else None
    cont.invalid_vaddr.update(a[0] for a in hits)
    return sum(a[1] for a in hits)


def _bitmap_check(cont: Container, size: int, pgsize: int, bitmap_size: int) -> None:
    if not cont.dirty_started:
        raise IommuError(E.EINVAL, "Dirty page tracking is not started on this container.")
    if pgsize != PAGE_SIZE:
        raise IommuError(E.EINVAL, f"The bitmap page size must be {PAGE_SIZE:#x}, not {pgsize:#x}.")
    need = (size // pgsize + 63) // 64 * 8
    if bitmap_size < need or bitmap_size > DIRTY_BITMAP_MAX or bitmap_size == 0:
        raise IommuError(E.EINVAL, f"A bitmap of {bitmap_size:#x} bytes cannot describe "
                         f"{size:#x} bytes (needs {need:#x}).")


def _bisects(ioas: Ioas, iova: int, last: int) -> bool:
    first = ioas.iopt.area_from(iova)
    if first is not None and first[0] < iova <= first[0] + first[1] - 1:
        return True
    end = ioas.iopt.area_from(last)
    return end is not None and end[0] <= last < end[0] + end[1] - 1


def _unmap_counted(cont: Container, ioas: Ioas, iova: int, length: int) -> int:
    before = ioas.iopt.num_areas
    try:
        return ioas.iopt.unmap(iova, length)
    finally:
        if cont.mode == MODE_TYPE1:
            cont.dma_avail += before - ioas.iopt.num_areas
            cont.invalid_vaddr = {i for i in cont.invalid_vaddr
                                  if not iova <= i <= iova + length - 1}


def unmap_dma(ctx: IommufdContext, argsz: int, flags: int, iova: int, size: int,
              bitmap_pgsize: int, bitmap_size: int) -> tuple[int, bytes]:
    _check_argsz(argsz, UNMAP_MINSZ, "VFIO_IOMMU_UNMAP_DMA")
    cont = _container(ctx)
    all_flag = bool(flags & VFIO_DMA_UNMAP_FLAG_ALL)
    if cont.mode == MODE_IOMMUFD:
        if flags & ~VFIO_DMA_UNMAP_FLAG_ALL:
            raise IommuError(E.EINVAL, f"The compat UNMAP_DMA takes ALL only, not {flags:#x}.")
        if all_flag and (iova or size):
            raise IommuError(E.EINVAL, "UNMAP_DMA with ALL takes iova 0 and size 0.")
        ioas = _compat_ioas(ctx)
        if all_flag:
            return ioas.iopt.unmap_all(), b""
        near = ioas.iopt.area_from(iova)
        if size and iova + size - 1 <= U64_MAX and (near is None or near[0] > iova + size - 1):
            return 0, b""  # an empty range succeeds with size 0 (post Oct-2025)
        return ioas.iopt.unmap(iova, size), b""  # bisect: ENOENT, not atomic
    valid = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR
    if flags & ~valid:
        raise IommuError(E.EINVAL, f"Unknown UNMAP_DMA flag bits {flags:#x}.")
    get_bitmap = bool(flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)
    if get_bitmap and flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR):
        raise IommuError(E.EINVAL, "GET_DIRTY_BITMAP cannot be combined with ALL or VADDR.")
    _type1_ready(ctx)
    ioas = _compat_ioas(ctx)
    if all_flag:
        if iova or size:
            raise IommuError(E.EINVAL, "UNMAP_DMA with ALL takes iova 0 and size 0.")
        if flags & VFIO_DMA_UNMAP_FLAG_VADDR:
            return _invalidate_vaddr(cont, ioas, 0, U64_MAX), b""
        n = ioas.iopt.num_areas
        total = ioas.iopt.unmap_all()
        cont.dma_avail += n
        cont.invalid_vaddr.clear()
        return total, b""
    if iova & (PAGE_SIZE - 1) or size == 0 or size & (PAGE_SIZE - 1):
        raise IommuError(E.EINVAL, f"iova {iova:#x} and size {size:#x} must be non-zero multiples "
                         f"of {PAGE_SIZE:#x}.")
    last = _end(iova, size)
    if get_bitmap:
        _bitmap_check(cont, size, bitmap_pgsize, bitmap_size)
    if cont.v2:
        if _bisects(ioas, iova, last):
            raise IommuError(E.EINVAL, f"{iova:#x}..{last:#x} bisects a mapping; v2 unmaps whole "
                             f"mappings only.")
    else:
        # v1: a request starting inside a mapping unmaps nothing; one covering
        # a mapping's first IOVA takes the whole mapping, even past its end.
        first = ioas.iopt.area_from(iova)
        if first is not None and first[0] < iova:
            return 0, b""
        end = ioas.iopt.area_from(last)
        if end is not None and iova <= end[0] <= last:
            last = max(last, end[0] + end[1] - 1)
    if flags & VFIO_DMA_UNMAP_FLAG_VADDR:
        return _invalidate_vaddr(cont, ioas, iova, last), b""
    near = ioas.iopt.area_from(iova)
    if near is None or near[0] > last:
        return 0, b""
    bitmap = b""
    if get_bitmap:
        bitmap = ioas.iopt.read_dirty_bitmap(iova, size, PAGE_SIZE, True)
    return _unmap_counted(cont, ioas, iova, last - iova + 1), bitmap


def dirty_pages(ctx: IommufdContext, argsz: int, flags: int, iova: int, size: int,
                bitmap_pgsize: int, bitmap_size: int) -> bytes:
    cont = _container(ctx)
    if cont.mode == MODE_IOMMUFD:
        raise IommuError(E.ENOTTY, "The iommufd compat container has no VFIO_IOMMU_DIRTY_PAGES; "
                         "use IOMMU_HWPT_SET_DIRTY_TRACKING.")
    _type1_ready(ctx)
    if not cont.v2:
        raise IommuError(E.EACCES, "Dirty page tracking needs a TYPE1v2 container.")
    _check_argsz(argsz, DIRTY_MINSZ, "VFIO_IOMMU_DIRTY_PAGES")
    ops = (VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
           VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)
    if flags not in ops:
        raise IommuError(E.EINVAL, f"DIRTY_PAGES takes exactly one of START, STOP and GET_BITMAP, "
                         f"not {flags:#x}.")
    ioas = _compat_ioas(ctx)
    if flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_START:
        if not cont.dirty_started:
            ioas.iopt.set_dirty_tracking(True)
            cont.dirty_started = True
        return b""
    if flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP:
        if cont.dirty_started:
            ioas.iopt.set_dirty_tracking(False)
            cont.dirty_started = False
        return b""
    if size == 0:
        raise IommuError(E.EINVAL, "GET_BITMAP of zero bytes.")
    last = _end(iova, size)
    if (iova | size) & (PAGE_SIZE - 1):
        raise IommuError(E.EINVAL, f"iova {iova:#x} and size {size:#x} must be multiples of "
                         f"{PAGE_SIZE:#x}.")
    _bitmap_check(cont, size, bitmap_pgsize, bitmap_size)
    if _bisects(ioas, iova, last):
        raise IommuError(E.EINVAL, f"{iova:#x}..{last:#x} bisects a mapping.")
    return ioas.iopt.read_dirty_bitmap(iova, size, PAGE_SIZE, True)


def vfio_ioas(ctx: IommufdContext, ioas_id: int, op: int, reserved: int) -> int:
    """IOMMU_VFIO_IOAS."""
    if reserved:
        raise IommuError(E.EOPNOTSUPP, f"The reserved field must be zero, not {reserved:#x}.")
    if op == IOMMU_VFIO_IOAS_GET:
        return _compat_ioas(ctx).id
    if op == IOMMU_VFIO_IOAS_SET:
        ctx.vfio_ioas = ctx.get(ioas_id, Ioas, "IOAS")
        return ioas_id
    if op == IOMMU_VFIO_IOAS_CLEAR:
        ctx.vfio_ioas = None
        return 0
    raise IommuError(E.EOPNOTSUPP, f"Unknown IOMMU_VFIO_IOAS op {op}.")
