"""Live host state: which driver each device is bound to, and who owns each
IOMMU group's DMA (the kernel's iommu.c ownership rules, §4 of the semantics).

Ownership model per group:
- owner_cnt counts users: every device on a DMA-API kernel driver (owner None)
  or every device bound to an iommufd / the group claimed by a legacy
  container (owner = that context or container).
- A user-owned group sits on the blocking domain until a HWPT is attached;
  a kernel driver may not probe any member while it is owned (EBUSY) — the
  thread's "deny probe instead of BUG_ON".
- Claiming for iommufd fails with EPERM while kernel drivers or another
  owner use the group; the last release returns it to the default domain.

Every change is published to subscribers (the WatchHost stream).
"""
from __future__ import annotations

import asyncio
import dataclasses
import errno as E
import re
from typing import TYPE_CHECKING, Any

from iommud.errors import IommuError
from iommud.failnth import step
from iommud.topology import IOMMU_KINDS, Device, Driver, ReservedRegion, Topology, mock_device
from iommud_wire import pb

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from iommud.call import Call

DOMAIN_DEFAULT = "default"
DOMAIN_BLOCKING = "blocking"


@dataclasses.dataclass
class GroupState:
    group: int
    owner_cnt: int = 0
    owner: Any = None
    #: "default", "blocking", or the attached HWPT object (first device's).
    domain: Any = DOMAIN_DEFAULT
    #: Devices of this group currently open through a device fd or a group fd.
    open_devices: set[str] = dataclasses.field(default_factory=set)
    #: The legacy /dev/vfio/N group node is open (the type1 path).
    legacy_open: bool = False

    @property
    def user_owned(self) -> bool:
        return self.owner is not None


@dataclasses.dataclass(frozen=True)
class HostEvent:
    kind: str  # "driver", "ownership", "viability", "hotplug"
    group: int
    device: str = ""
    detail: str = ""


class Host:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.drivers: dict[str, Driver] = dict(topology.drivers)
        self.devices: dict[str, Device] = {}
        self.bound_driver: dict[str, str | None] = {}
        self.groups: dict[int, GroupState] = {}
        self._subscribers: set[asyncio.Queue[HostEvent]] = set()
        for dev in topology.devices.values():
            self._add(dev)

    def __getstate__(self) -> dict[str, Any]:
        """For a snapshot: the host's state, not its watchers (streams of
        this daemon's loop)."""
        state = self.__dict__.copy()
        state.pop("_subscribers", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._subscribers = set()

    # -- queries --------------------------------------------------------

    def device(self, name: str) -> Device:
        dev = self.devices.get(name)
        if dev is None:
            raise IommuError(E.ENODEV, f"No device named {name!r} exists on this host.",
                             device=name)
        return dev

    def group_state(self, group: int) -> GroupState:
        state = self.groups.get(group)
        if state is None:
            raise IommuError(E.ENODEV, f"No IOMMU group {group} exists on this host.", group=group)
        return state

    def members(self, group: int) -> list[Device]:
        return sorted((d for d in self.devices.values() if d.group == group), key=lambda d: d.name)

    def driver_of(self, name: str) -> Driver | None:
        drv = self.bound_driver.get(name)
        return self.drivers[drv] if drv else None

    def is_kernel_dma_user(self, name: str) -> bool:
        drv = self.driver_of(name)
        return drv is not None and not drv.driver_managed_dma

    def viable(self, group: int) -> bool:
        """Every member is driverless or on an IOMMU-safe driver (§4.4)."""
        return not any(self.is_kernel_dma_user(d.name) for d in self.members(group))

    def iter_groups(self) -> Iterator[GroupState]:
        return iter(sorted(self.groups.values(), key=lambda g: g.group))

    # -- ownership (iommu.c) --------------------------------------------

    def claim_dma_owner(self, dev: Device, owner: Any) -> None:
        """iommu_device_claim_dma_owner: a device bound to an iommufd."""
        g = self.group_state(dev.group)
        if g.owner_cnt:
            if g.owner is not owner:
                who = "kernel drivers" if g.owner is None else "another owner"
                raise IommuError(E.EPERM, f"IOMMU group {g.group} of {dev.name} is in use by "
                                 f"{who}; its DMA cannot be claimed.", group=g.group)
            g.owner_cnt += 1
            return
        self._take_ownership(g, owner)

    def claim_group(self, group: int, owner: Any) -> None:
        """iommu_group_claim_dma_owner: the legacy container claims a whole group."""
        g = self.group_state(group)
        if g.owner_cnt:
            raise IommuError(E.EPERM, f"IOMMU group {group} is in use ({g.owner_cnt} user(s)); "
                             f"it cannot be claimed.", group=group)
        self._take_ownership(g, owner)

    def _take_ownership(self, g: GroupState, owner: Any) -> None:
        if g.domain != DOMAIN_DEFAULT:
            raise IommuError(E.EBUSY, f"IOMMU group {g.group} is not on its default domain.",
                             group=g.group)
        step("dma ownership")
        g.owner, g.owner_cnt, g.domain = owner, 1, DOMAIN_BLOCKING
        self.publish(HostEvent("ownership", g.group, detail="claimed"))

    def release_dma_owner(self, group: int) -> None:
        g = self.group_state(group)
        if g.owner_cnt <= 0 or g.owner is None:
            raise RuntimeError(f"release of unowned group {group}")  # invariant broken
        g.owner_cnt -= 1
        if g.owner_cnt == 0:
            g.owner, g.domain = None, DOMAIN_DEFAULT
            self.publish(HostEvent("ownership", g.group, detail="released"))

    # -- host drivers (admin) --------------------------------------------

    def bind_driver(self, name: str, driver: str) -> None:
        """Probe `driver` onto device `name`. A DMA-API driver on a device of
        a user-owned group is refused with EBUSY and nothing changes."""
        dev = self.device(name)
        drv = self.drivers.get(driver)
        if drv is None:
            raise IommuError(E.ENODEV, f"No host driver named {driver!r} is known.", driver=driver)
        if self.bound_driver.get(name):
            raise IommuError(E.EBUSY, f"{name} is already bound to {self.bound_driver[name]}.",
                             device=name)
        g = self.group_state(dev.group)
        if not drv.driver_managed_dma:
            # iommu_device_use_default_domain
            if g.owner_cnt and (g.user_owned or g.domain != DOMAIN_DEFAULT):
                raise IommuError(E.EBUSY, f"Probe of {driver} on {name} refused: IOMMU group "
                                 f"{g.group} is owned for user DMA.", device=name, group=g.group)
            g.owner_cnt += 1
        was_viable = self.viable(dev.group)
        self.bound_driver[name] = driver
        self.publish(HostEvent("driver", dev.group, name, f"bound {driver}"))
        self._viability_changed(dev.group, was_viable)

    def unbind_driver(self, name: str) -> None:
        dev = self.device(name)
        driver = self.bound_driver.get(name)
        if not driver:
            raise IommuError(E.ENODEV, f"{name} is not bound to any host driver.", device=name)
        g = self.group_state(dev.group)
        if name in g.open_devices:
            # vfio's remove() would block until the user closes the device.
            raise IommuError(E.EBUSY, f"{name} is open by a user; close its device fd first.",
                             device=name)
        if not self.drivers[driver].driver_managed_dma:
            g.owner_cnt -= 1
        was_viable = self.viable(dev.group)
        self.bound_driver[name] = None
        self.publish(HostEvent("driver", dev.group, name, f"unbound {driver}"))
        self._viability_changed(dev.group, was_viable)

    def hot_add(self, dev: Device) -> None:
        if dev.name in self.devices:
            raise IommuError(E.EEXIST, f"A device named {dev.name} already exists.",
                             device=dev.name)
        if dev.driver is not None:
            drv = self.drivers.get(dev.driver)
            if drv is None:
                raise IommuError(E.ENODEV, f"No host driver named {dev.driver!r} is known.")
            g = self.groups.get(dev.group)
            if g is not None and not drv.driver_managed_dma and g.owner_cnt and g.user_owned:
                raise IommuError(E.EBUSY, f"Probe of {dev.driver} on hot-added {dev.name} "
                                 f"refused: IOMMU group {dev.group} is owned for user DMA.",
                                 device=dev.name, group=dev.group)
        was_viable = self.viable(dev.group) if dev.group in self.groups else True
        self._add(dev)
        self.publish(HostEvent("hotplug", dev.group, dev.name, "added"))
        self._viability_changed(dev.group, was_viable)

    def hot_remove(self, name: str) -> None:
        dev = self.device(name)
        g = self.group_state(dev.group)
        if name in g.open_devices:
            raise IommuError(E.EBUSY, f"{name} is open by a user; close its device fd first.",
                             device=name)
        was_viable = self.viable(dev.group)
        if self.is_kernel_dma_user(name):
            g.owner_cnt -= 1
        del self.devices[name]
        del self.bound_driver[name]
        self.publish(HostEvent("hotplug", dev.group, name, "removed"))
        if not self.members(dev.group) and g.owner_cnt == 0:
            del self.groups[dev.group]
        else:
            self._viability_changed(dev.group, was_viable)

    def _add(self, dev: Device) -> None:
        self.devices[dev.name] = dev
        self.bound_driver[dev.name] = dev.driver
        g = self.groups.setdefault(dev.group, GroupState(dev.group))
        if self.is_kernel_dma_user(dev.name):
            g.owner_cnt += 1

    def _viability_changed(self, group: int, was_viable: bool) -> None:
        now = self.viable(group)
        if now != was_viable:
            self.publish(HostEvent("viability", group, detail="viable" if now else "not viable"))

    # -- events ---------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[HostEvent]:
        queue: asyncio.Queue[HostEvent] = asyncio.Queue(maxsize=1024)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[HostEvent]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event: HostEvent) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()  # a slow watcher loses the oldest event, not the daemon
            queue.put_nowait(event)


# -- handlers: the host's devices, groups and drivers ---------------------------------------

def host_device_pb(host: Host, name: str) -> pb.HostDevice:
    dev = host.devices[name]
    drv = host.driver_of(name)
    return pb.HostDevice(
        name=dev.name, group=dev.group, vendor=dev.vendor, device=dev.device,
        class_code=dev.class_code, driver=drv.name if drv else "",
        driver_managed_dma=bool(drv and drv.driver_managed_dma),
        reserved_regions=[pb.ReservedRegion(start=r.start, last=r.last, kind=r.kind)
                          for r in dev.reserved_regions],
        pgsize_bitmap=dev.pgsize_bitmap, max_pasid_log2=dev.max_pasid_log2,
        dirty_tracking=dev.dirty_tracking, reliable_source_id=dev.reliable_source_id,
        aperture_bits=dev.aperture_bits, description=dev.description,
        user_open=name in host.groups[dev.group].open_devices, iommu=dev.iommu,
        aperture_start=dev.aperture_start)


def _device_from_proto(msg: pb.HostDevice) -> Device:
    """A hot-added device; unset properties take the topology defaults."""
    defaults = Device(name=msg.name, group=msg.group)
    if not re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", msg.name):
        raise IommuError(E.EINVAL, f"{msg.name[:64]!r} is not a PCI address of the form "
                         f"DDDD:BB:DD.F.", device=msg.name[:64])
    if msg.iommu not in ("", *IOMMU_KINDS):
        raise IommuError(E.EINVAL, f"iommu must be one of {', '.join(IOMMU_KINDS)}.",
                         device=msg.name)
    if msg.iommu == "mock":
        if (msg.reserved_regions or msg.pgsize_bitmap or msg.aperture_bits
                or msg.aperture_start or msg.max_pasid_log2 not in (0, 20)):
            raise IommuError(E.EINVAL, "The mock IOMMU's geometry is fixed: no reserved regions, "
                             "page sizes or aperture, and a PASID width of 0 or 20.",
                             device=msg.name)
        return dataclasses.replace(
            mock_device(msg.name, msg.group, pasid=bool(msg.max_pasid_log2),
                        dirty=msg.dirty_tracking, driver=msg.driver or None,
                        description=msg.description),
            vendor=msg.vendor, device=msg.device, class_code=msg.class_code,
            reliable_source_id=msg.reliable_source_id)
    regions = tuple(ReservedRegion(r.start, r.last, r.kind or "msi") for r in msg.reserved_regions)
    for r in regions:
        if r.start > r.last:
            raise IommuError(E.EINVAL, f"Reserved region {r.start:#x}..{r.last:#x} ends before "
                             f"it starts.", device=msg.name)
    if msg.max_pasid_log2 > 20 or (msg.aperture_bits and not 32 <= msg.aperture_bits <= 64):
        raise IommuError(E.EINVAL, "max_pasid_log2 must be at most 20 and aperture_bits within "
                         "32..64.", device=msg.name)
    if msg.aperture_start and (msg.aperture_start >= 1 << (msg.aperture_bits or 48)
                               or msg.aperture_start % 4096):
        raise IommuError(E.EINVAL, f"aperture_start {msg.aperture_start:#x} must be page "
                         f"aligned and below the aperture's end.", device=msg.name)
    return dataclasses.replace(
        defaults, vendor=msg.vendor, device=msg.device, class_code=msg.class_code,
        driver=msg.driver or None, reserved_regions=regions or defaults.reserved_regions,
        pgsize_bitmap=msg.pgsize_bitmap or defaults.pgsize_bitmap,
        max_pasid_log2=msg.max_pasid_log2, dirty_tracking=msg.dirty_tracking,
        reliable_source_id=msg.reliable_source_id,
        aperture_bits=msg.aperture_bits or defaults.aperture_bits,
        aperture_start=msg.aperture_start, description=msg.description)


def list_devices(call: Call, req: pb.ListDevicesRequest) -> pb.ListDevicesResponse:
    host = call.rt.host
    return pb.ListDevicesResponse(devices=[host_device_pb(host, n) for n in sorted(host.devices)])


def list_groups(call: Call, req: pb.ListGroupsRequest) -> pb.ListGroupsResponse:
    host = call.rt.host
    out = []
    for g in host.iter_groups():
        if g.owner is None:
            owner = pb.GROUP_OWNER_NONE
        elif getattr(getattr(g.owner, "container", None), "claims_groups", False):
            owner = pb.GROUP_OWNER_CONTAINER  # a type1 container claims whole groups
        else:
            owner = pb.GROUP_OWNER_IOMMUFD
        domain = g.domain if isinstance(g.domain, str) else f"hwpt:{g.domain.id}"
        out.append(pb.IommuGroup(group=g.group, devices=[d.name for d in host.members(g.group)],
                                 viable=host.viable(g.group), owner=owner,
                                 owner_cnt=g.owner_cnt, domain=domain))
    return pb.ListGroupsResponse(groups=out)


def bind_host_driver(call: Call, req: pb.BindHostDriverRequest) -> pb.BindHostDriverResponse:
    """Writing the driver's sysfs bind file (admin)."""
    call.rt.host.bind_driver(req.device, req.driver)
    return pb.BindHostDriverResponse()


def unbind_host_driver(call: Call, req: pb.UnbindHostDriverRequest
                       ) -> pb.UnbindHostDriverResponse:
    call.rt.host.unbind_driver(req.device)
    return pb.UnbindHostDriverResponse()


def hot_add_device(call: Call, req: pb.HotAddDeviceRequest) -> pb.HotAddDeviceResponse:
    call.rt.host.hot_add(_device_from_proto(req.device))
    return pb.HotAddDeviceResponse()


def hot_remove_device(call: Call, req: pb.HotRemoveDeviceRequest) -> pb.HotRemoveDeviceResponse:
    call.rt.host.hot_remove(req.device)
    return pb.HotRemoveDeviceResponse()


async def watch_host(call: Call, req: pb.WatchHostRequest) -> AsyncIterator[pb.WatchHostResponse]:
    """Every driver, ownership, viability and hot-plug change, as it happens."""
    sess, host = call.sess, call.rt.host
    queue = host.subscribe()
    sess.streams += 1
    try:
        while not sess.closed:
            event = await queue.get()
            yield pb.WatchHostResponse(kind=event.kind, group=event.group, device=event.device,
                                       detail=event.detail)
    finally:
        sess.streams -= 1
        sess.touch()
        host.unsubscribe(queue)
