"""Loading a Topology: the embedded default, a topology file (TOML or JSON,
docs/topology.md), or a sysfs tree (/sys/kernel/iommu_groups and
/sys/bus/pci/devices) under a configurable root so tests can use a fake one.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
import pathlib
import re
import tomllib
from typing import Any

from iommud.topology import (
    IOMMU_KINDS,
    KNOWN_DRIVERS,
    PAGE_1G,
    PAGE_2M,
    PAGE_4K,
    Device,
    Driver,
    ReservedRegion,
    Topology,
    mock_device,
)

PCI_NAME = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
RESV_KINDS = ("msi", "sw_msi", "reserved", "direct", "direct_relaxable")
# sysfs spells the kinds "msi", "reserved", "direct", "direct-relaxable".
_SYSFS_KIND = {"direct-relaxable": "direct_relaxable"}
_DEVICE_KEYS = {"name", "group", "vendor", "device", "class", "driver", "reserved_regions",
                "pgsize_bitmap", "page_sizes", "max_pasid_log2", "dirty_tracking",
                "reliable_source_id", "aperture_bits", "description", "iommu",
                "aperture_start"}
#: What a mock IOMMU fixes: a topology may not set these for one.
_MOCK_FIXED = {"reserved_regions", "page_sizes", "pgsize_bitmap", "aperture_bits",
               "aperture_start"}
_SIZE = re.compile(r"(?i)^(\d+)([KMG])$")


class TopologyError(ValueError):
    """A topology source that does not describe a valid host."""


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise TopologyError(f"{what} must be a number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            pass
    raise TopologyError(f"{what} must be a number, not {value!r}")


def _page_sizes(values: list[Any], what: str) -> int:
    bitmap = 0
    for v in values:
        m = _SIZE.match(str(v))
        if not m:
            raise TopologyError(f"{what}: page size {v!r} is not like 4K, 2M or 1G")
        size = int(m.group(1)) << {"K": 10, "M": 20, "G": 30}[m.group(2).upper()]
        if size & (size - 1):
            raise TopologyError(f"{what}: page size {v!r} is not a power of two")
        bitmap |= size
    return bitmap


def device_from_dict(raw: dict[str, Any], drivers: dict[str, Driver]) -> Device:
    name = raw.get("name")
    what = f"device {name!r}"
    if not isinstance(name, str) or not PCI_NAME.fullmatch(name):
        raise TopologyError(f"{what}: the name must be a PCI address DDDD:BB:DD.F in lowercase hex")
    unknown = sorted(set(raw) - _DEVICE_KEYS)
    if unknown:
        raise TopologyError(f"{what}: unknown key(s) {', '.join(unknown)}")
    if "group" not in raw:
        raise TopologyError(f"{what}: no IOMMU group")
    driver = raw.get("driver") or None
    if driver is not None and driver not in drivers:
        raise TopologyError(f"{what}: unknown driver {driver!r}; declare it in a [[driver]] table")
    iommu = raw.get("iommu", "vtd")
    if iommu not in IOMMU_KINDS:
        raise TopologyError(f"{what}: iommu must be one of {', '.join(IOMMU_KINDS)}")
    if iommu == "mock":
        fixed = sorted(set(raw) & _MOCK_FIXED)
        if fixed:
            raise TopologyError(f"{what}: the mock IOMMU's geometry is fixed; drop "
                                f"{', '.join(fixed)}")
        pasid = _int(raw.get("max_pasid_log2", 0), f"{what} max_pasid_log2")
        if pasid not in (0, 20):
            raise TopologyError(f"{what}: a mock device's max_pasid_log2 is 0 or 20")
        return dataclasses.replace(
            mock_device(name, _int(raw["group"], f"{what} group"), pasid=bool(pasid),
                        dirty=bool(raw.get("dirty_tracking", True)), driver=driver,
                        description=str(raw.get("description", ""))),
            vendor=_int(raw.get("vendor", 0), f"{what} vendor"),
            device=_int(raw.get("device", 0), f"{what} device"),
            class_code=_int(raw.get("class", 0), f"{what} class"),
            reliable_source_id=bool(raw.get("reliable_source_id", True)))
    regions = []
    for r in raw.get("reserved_regions", [
            {"start": 0xFEE00000, "last": 0xFEEFFFFF, "kind": "msi"}]):
        start, last = _int(r.get("start"), f"{what} region start"), _int(r.get("last"), f"{what} region last")
        kind = r.get("kind", "reserved")
        if start > last:
            raise TopologyError(f"{what}: reserved region {start:#x}..{last:#x} ends before it starts")
        if kind not in RESV_KINDS:
            raise TopologyError(f"{what}: unknown reserved region kind {kind!r}")
        regions.append(ReservedRegion(start, last, kind))
    if "page_sizes" in raw:
        pgsize = _page_sizes(raw["page_sizes"], what)
    else:
        pgsize = _int(raw.get("pgsize_bitmap", PAGE_4K | PAGE_2M | PAGE_1G), f"{what} pgsize_bitmap")
    if pgsize <= 0:
        raise TopologyError(f"{what}: pgsize_bitmap must name at least one page size")
    pasid = _int(raw.get("max_pasid_log2", 0), f"{what} max_pasid_log2")
    if not 0 <= pasid <= 20:
        raise TopologyError(f"{what}: max_pasid_log2 must be within 0..20")
    aperture = _int(raw.get("aperture_bits", 48), f"{what} aperture_bits")
    if not 32 <= aperture <= 64:
        raise TopologyError(f"{what}: aperture_bits must be within 32..64")
    aperture_start = _int(raw.get("aperture_start", 0), f"{what} aperture_start")
    if aperture_start >= 1 << aperture or aperture_start & (PAGE_4K - 1):
        raise TopologyError(f"{what}: aperture_start must be page aligned and below "
                            f"2^aperture_bits")
    return Device(
        name=name, group=_int(raw["group"], f"{what} group"),
        vendor=_int(raw.get("vendor", 0), f"{what} vendor"),
        device=_int(raw.get("device", 0), f"{what} device"),
        class_code=_int(raw.get("class", 0), f"{what} class"), driver=driver,
        reserved_regions=tuple(regions), pgsize_bitmap=pgsize, max_pasid_log2=pasid,
        dirty_tracking=bool(raw.get("dirty_tracking", False)),
        reliable_source_id=bool(raw.get("reliable_source_id", True)),
        aperture_bits=aperture, aperture_start=aperture_start,
        description=str(raw.get("description", "")))


def from_dict(data: dict[str, Any], source: str) -> Topology:
    unknown = sorted(set(data) - {"driver", "device"})
    if unknown:
        raise TopologyError(f"{source}: unknown top-level key(s) {', '.join(unknown)}")
    drivers = dict(KNOWN_DRIVERS)
    for d in data.get("driver", []):
        if not isinstance(d.get("name"), str):
            raise TopologyError(f"{source}: a [[driver]] needs a name")
        drivers[d["name"]] = Driver(d["name"], bool(d.get("driver_managed_dma", False)))
    topo = Topology(drivers=drivers, source=source)
    for raw in data.get("device", []):
        dev = device_from_dict(raw, drivers)
        if dev.name in topo.devices:
            raise TopologyError(f"{source}: device {dev.name} is listed twice")
        topo.devices[dev.name] = dev
    return topo


def load_default() -> Topology:
    text = (importlib.resources.files("iommud") / "default_topology.toml").read_text()
    return from_dict(tomllib.loads(text), "default")


def load_file(path: str | os.PathLike[str]) -> Topology:
    p = pathlib.Path(path)
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text())
        else:
            data = tomllib.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise TopologyError(f"cannot read topology {p}: {exc}") from exc
    return from_dict(data, str(p))


def to_dict(topo: Topology) -> dict[str, Any]:
    extra = [{"name": d.name, "driver_managed_dma": d.driver_managed_dma}
             for n, d in sorted(topo.drivers.items()) if KNOWN_DRIVERS.get(n) != d]
    devices = []
    for dev in sorted(topo.devices.values(), key=lambda d: d.name):
        devices.append({
            "name": dev.name, "group": dev.group, "vendor": hex(dev.vendor),
            "device": hex(dev.device), "class": hex(dev.class_code), "driver": dev.driver or "",
            "reserved_regions": [{"start": hex(r.start), "last": hex(r.last), "kind": r.kind}
                                 for r in dev.reserved_regions],
            "pgsize_bitmap": hex(dev.pgsize_bitmap), "max_pasid_log2": dev.max_pasid_log2,
            "dirty_tracking": dev.dirty_tracking, "reliable_source_id": dev.reliable_source_id,
            "aperture_bits": dev.aperture_bits, "aperture_start": dev.aperture_start,
            "iommu": dev.iommu, "description": dev.description})
        if dev.is_mock:
            for key in _MOCK_FIXED & set(devices[-1]):
                del devices[-1][key]
    return {"driver": extra, "device": devices}


def to_json(topo: Topology) -> str:
    return json.dumps(to_dict(topo), indent=2) + "\n"


def _read(path: pathlib.Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def import_sysfs(root: str | os.PathLike[str] = "/") -> Topology:
    """Read IOMMU groups, PCI ids, bound drivers and reserved regions from a
    sysfs tree under `root`."""
    base = pathlib.Path(root)
    groups_dir = base / "sys" / "kernel" / "iommu_groups"
    pci_dir = base / "sys" / "bus" / "pci" / "devices"
    if not groups_dir.is_dir():
        raise TopologyError(f"{groups_dir} does not exist: no IOMMU groups to import")
    topo = Topology(source=f"sysfs:{root}")
    for gdir in sorted(groups_dir.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1):
        if not gdir.name.isdigit():
            continue
        regions = []
        for line in (_read(gdir / "reserved_regions") or "").splitlines():
            parts = line.split()
            if len(parts) == 3:
                kind = _SYSFS_KIND.get(parts[2], parts[2])
                if kind in RESV_KINDS:
                    regions.append(ReservedRegion(int(parts[0], 16), int(parts[1], 16), kind))
        devdir = gdir / "devices"
        for entry in sorted(devdir.iterdir()) if devdir.is_dir() else []:
            name = entry.name
            if not PCI_NAME.fullmatch(name):
                continue
            pdir = pci_dir / name
            driver_link = pdir / "driver"
            driver = os.path.basename(os.readlink(driver_link)) if driver_link.is_symlink() else None
            if driver is not None and driver not in topo.drivers:
                safe = driver.startswith("vfio")
                topo.drivers[driver] = Driver(driver, safe)
            topo.devices[name] = Device(
                name=name, group=int(gdir.name),
                vendor=int(_read(pdir / "vendor") or "0", 16),
                device=int(_read(pdir / "device") or "0", 16),
                class_code=int(_read(pdir / "class") or "0", 16), driver=driver,
                reserved_regions=tuple(regions), description="imported from sysfs")
    return topo


def write_fake_sysfs(topo: Topology, root: str | os.PathLike[str]) -> pathlib.Path:
    """Lay `topo` out as a sysfs tree under `root` (for tests and demos)."""
    base = pathlib.Path(root)
    groups_dir = base / "sys" / "kernel" / "iommu_groups"
    pci_dir = base / "sys" / "bus" / "pci" / "devices"
    drivers_dir = base / "sys" / "bus" / "pci" / "drivers"
    for group, names in topo.groups().items():
        gdir = groups_dir / str(group)
        (gdir / "devices").mkdir(parents=True, exist_ok=True)
        regions = {r for n in names for r in topo.devices[n].reserved_regions}
        (gdir / "reserved_regions").write_text("".join(
            f"0x{r.start:016x} 0x{r.last:016x} {r.kind.replace('_relaxable', '-relaxable')}\n"
            for r in sorted(regions, key=lambda r: r.start)))
        for name in names:
            dev = topo.devices[name]
            pdir = pci_dir / name
            pdir.mkdir(parents=True, exist_ok=True)
            (pdir / "vendor").write_text(f"0x{dev.vendor:04x}\n")
            (pdir / "device").write_text(f"0x{dev.device:04x}\n")
            (pdir / "class").write_text(f"0x{dev.class_code:06x}\n")
            link = gdir / "devices" / name
            if not link.exists():
                link.symlink_to(os.path.relpath(pdir, link.parent))
            if dev.driver:
                (drivers_dir / dev.driver).mkdir(parents=True, exist_ok=True)
                dlink = pdir / "driver"
                if not dlink.is_symlink():
                    dlink.symlink_to(os.path.relpath(drivers_dir / dev.driver, pdir))
    return base

