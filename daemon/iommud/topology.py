"""The modelled host: PCI-style devices, IOMMU groups, host drivers.

This module is data only: what exists on the host and what each device's
IOMMU can do. Who owns a group, which driver is bound now, and what is
attached where is live state kept by iommud.host. Loaders fill a Topology
from the embedded default, a topology file, or a sysfs tree.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from iommud_wire.uapi import (
    MOCK_APERTURE_LAST,
    MOCK_APERTURE_START,
    MOCK_PASID_WIDTH,
    MOCK_PGSIZE_BITMAP,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

PAGE_4K = 1 << 12
PAGE_2M = 1 << 21
PAGE_1G = 1 << 30
#: x86 interrupt-remapping window, reserved in every IOAS a device attaches to.
X86_MSI_START = 0xFEE0_0000
X86_MSI_LAST = 0xFEEF_FFFF

#: IOMMU kinds: "vtd", a VT-d-like IOMMU (the default), and "mock", the kernel
#: selftest's mock IOMMU (drivers/iommu/iommufd/selftest.c): 2 KiB IO pages,
#: aperture [MOCK_APERTURE_START, MOCK_APERTURE_LAST], hw_info of type
#: IOMMU_HW_INFO_TYPE_SELFTEST, no reserved regions.
IOMMU_KINDS = ("vtd", "mock")


@dataclasses.dataclass(frozen=True)
class ReservedRegion:
    """An IOVA range the device's IOMMU cannot translate (inclusive last).

    kind follows enum iommu_resv_type: "msi", "sw_msi", "reserved", "direct",
    "direct_relaxable". Every kind but direct_relaxable is enforced in an IOAS.
    """

    start: int
    last: int
    kind: str = "msi"

    @property
    def enforced(self) -> bool:
        return self.kind != "direct_relaxable"


@dataclasses.dataclass(frozen=True)
class Driver:
    """A host driver. driver_managed_dma: it promises no kernel DMA, so it
    may sit on a device whose group is owned by iommufd (vfio-pci, pci-stub)."""

    name: str
    driver_managed_dma: bool


#: Drivers known to the model; a topology may add more.
KNOWN_DRIVERS: dict[str, Driver] = {
    d.name: d for d in (
        Driver("vfio-pci", True),
        Driver("pci-stub", True),
        Driver("pcieport", True),
        Driver("e1000e", False),
        Driver("nvme", False),
        Driver("ixgbe", False),
        Driver("ixgbevf", False),
        Driver("mlx5_core", False),
        Driver("snd_hda_intel", False),
        Driver("xhci_hcd", False),
        Driver("ahci", False),
        Driver("i915", False),
    )
}


@dataclasses.dataclass
class Device:
    """One device as the host sees it.

    name: PCI address such as 0000:03:00.0. group: IOMMU group number.
    driver: host driver bound at load time, or None.
    pgsize_bitmap: IO page sizes the IOMMU supports (bit n = 2^n bytes).
    max_pasid_log2: PASID width; 0 means no PASID support.
    reliable_source_id: its DMA can be told apart from its group siblings'
    (the thread's condition for 1:N groups, stage 3).
    """

    name: str
    group: int
    vendor: int = 0x8086
    device: int = 0x0000
    class_code: int = 0x000000
    driver: str | None = None
    reserved_regions: tuple[ReservedRegion, ...] = (ReservedRegion(X86_MSI_START, X86_MSI_LAST),)
    pgsize_bitmap: int = PAGE_4K | PAGE_2M | PAGE_1G
    max_pasid_log2: int = 0
    dirty_tracking: bool = False
    reliable_source_id: bool = True
    #: The domain aperture is [aperture_start, 2^aperture_bits - 1] (the
    #: domain's geometry); its complement is reserved in an IOAS the domain
    #: is added to (iopt_table_add_domain).
    aperture_bits: int = 48
    description: str = ""
    #: The IOMMU behind the device: one of IOMMU_KINDS.
    iommu: str = "vtd"
    aperture_start: int = 0

    @property
    def min_page_size(self) -> int:
        return self.pgsize_bitmap & -self.pgsize_bitmap

    @property
    def aperture_last(self) -> int:
        return (1 << self.aperture_bits) - 1

    @property
    def is_mock(self) -> bool:
        return self.iommu == "mock"


def mock_device(name: str, group: int, *, pasid: bool = False, dirty: bool = True,
                driver: str | None = "vfio-pci", description: str = "") -> Device:
    """A device behind the selftest's mock IOMMU (mock_dev_create): its own
    group, no reserved regions, a 20-bit PASID width with MOCK_FLAGS_DEVICE_PASID,
    dirty tracking unless MOCK_FLAGS_DEVICE_NO_DIRTY."""
    assert MOCK_APERTURE_LAST == (1 << 31) - 1
    return Device(name=name, group=group, vendor=0, device=0, class_code=0, driver=driver,
                  reserved_regions=(), pgsize_bitmap=MOCK_PGSIZE_BITMAP,
                  max_pasid_log2=MOCK_PASID_WIDTH if pasid else 0, dirty_tracking=dirty,
                  reliable_source_id=True, aperture_bits=31, iommu="mock",
                  aperture_start=MOCK_APERTURE_START,
                  description=description or "selftest mock device")


@dataclasses.dataclass
class Topology:
    devices: dict[str, Device] = dataclasses.field(default_factory=dict)
    drivers: dict[str, Driver] = dataclasses.field(default_factory=lambda: dict(KNOWN_DRIVERS))
    source: str = "empty"

    def groups(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for dev in sorted(self.devices.values(), key=lambda d: d.name):
            out.setdefault(dev.group, []).append(dev.name)
        return dict(sorted(out.items()))

    def add(self, devices: Iterable[Device]) -> None:
        for dev in devices:
            self.devices[dev.name] = dev
