"""Host topology: the embedded default, the file format (TOML and JSON), and
the sysfs import on a fake tree, down to a daemon serving an imported host."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest
from support import run_daemon

from iommud.topology import X86_MSI_LAST, X86_MSI_START, ReservedRegion
from iommud.topology_load import (
    TopologyError,
    import_sysfs,
    load_default,
    load_file,
    to_json,
    write_fake_sysfs,
)

if TYPE_CHECKING:
    import pathlib


def test_default_host_shape() -> None:
    topo = load_default()
    groups = topo.groups()
    singles = [g for g, names in groups.items() if len(names) == 1]
    multis = {g: names for g, names in groups.items() if len(names) > 1}
    assert len(singles) >= 5 and len(multis) >= 3
    vfio_singles = [topo.devices[groups[g][0]] for g in singles
                    if topo.devices[groups[g][0]].driver == "vfio-pci"]
    assert any(d.class_code == 0x010802 for d in vfio_singles)        # NVMe on vfio-pci
    assert any(d.class_code == 0x020000 for d in vfio_singles)        # NIC VF on vfio-pci
    kernel = [d for d in topo.devices.values() if d.driver in ("e1000e", "nvme")]
    assert kernel                                                      # still on a kernel driver
    reliable = [n for n in multis.values()
                if all(topo.devices[x].driver == "vfio-pci" and topo.devices[x].reliable_source_id
                       for x in n)]
    aliased = [n for n in multis.values() if not all(topo.devices[x].reliable_source_id for x in n)]
    mixed = [n for n in multis.values()
             if {topo.devices[x].driver for x in n} >= {"vfio-pci", "snd_hda_intel"}]
    assert reliable and aliased and mixed
    for dev in topo.devices.values():
        assert ReservedRegion(X86_MSI_START, X86_MSI_LAST, "msi") in dev.reserved_regions
    assert any(d.max_pasid_log2 == 20 for d in topo.devices.values())
    assert any(d.dirty_tracking for d in topo.devices.values())


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_file_round_trip(tmp_path: pathlib.Path, suffix: str) -> None:
    topo = load_default()
    path = tmp_path / f"host{suffix}"
    if suffix == ".json":
        path.write_text(to_json(topo))
    else:
        data = json.loads(to_json(topo))
        lines = []
        for dev in data["device"]:
            lines.append("[[device]]")
            for k, v in dev.items():
                if k == "reserved_regions":
                    lines.append("reserved_regions = [" + ", ".join(
                        f'{{start = "{r["start"]}", last = "{r["last"]}", kind = "{r["kind"]}"}}'
                        for r in v) + "]")
                else:
                    lines.append(f"{k} = {json.dumps(v)}")
        path.write_text("\n".join(lines) + "\n")
    again = load_file(path)
    assert again.devices == topo.devices
    assert again.source == str(path)


@pytest.mark.parametrize("device,message", [
    ({"name": "03:00.0", "group": 1}, "PCI address"),
    ({"name": "0000:03:00.0"}, "no IOMMU group"),
    ({"name": "0000:03:00.0", "group": 1, "colour": "red"}, "unknown key"),
    ({"name": "0000:03:00.0", "group": 1, "driver": "mystery"}, "unknown driver"),
    ({"name": "0000:03:00.0", "group": 1, "reserved_regions": [{"start": 2, "last": 1}]}, "ends before"),
    ({"name": "0000:03:00.0", "group": 1,
      "reserved_regions": [{"start": 1, "last": 2, "kind": "odd"}]}, "kind"),
    ({"name": "0000:03:00.0", "group": 1, "pgsize_bitmap": 0}, "pgsize_bitmap"),
    ({"name": "0000:03:00.0", "group": 1, "page_sizes": ["3K"]}, "power of two"),
    ({"name": "0000:03:00.0", "group": 1, "max_pasid_log2": 21}, "max_pasid_log2"),
    ({"name": "0000:03:00.0", "group": "x"}, "number"),
])
def test_validation_errors(tmp_path: pathlib.Path, device: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"device": [device]}))
    with pytest.raises(TopologyError, match=message):
        load_file(path)


def test_duplicates_and_declared_drivers(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "t.json"
    dev = {"name": "0000:03:00.0", "group": 1}
    path.write_text(json.dumps({"device": [dev, dev]}))
    with pytest.raises(TopologyError, match="twice"):
        load_file(path)
    path.write_text(json.dumps({"driver": [{"name": "mydrv", "driver_managed_dma": True}],
                                "device": [{**dev, "driver": "mydrv", "page_sizes": ["4K", "2M"]}]}))
    topo = load_file(path)
    assert topo.drivers["mydrv"].driver_managed_dma
    assert topo.devices["0000:03:00.0"].pgsize_bitmap == 0x1000 | 0x200000


def test_sysfs_import_of_a_fake_tree(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    grp = root / "sys/kernel/iommu_groups/7"
    pci = root / "sys/bus/pci/devices"
    drivers = root / "sys/bus/pci/drivers"
    (grp / "devices").mkdir(parents=True)
    (grp / "reserved_regions").write_text("0x00000000fee00000 0x00000000feefffff msi\n"
                                          "0x0000000000000000 0x0000000000ffffff direct-relaxable\n")
    for name, driver, cls in [("0000:65:00.0", "vfio-pci", "0x020000"),
                              ("0000:65:00.1", None, "0x020000")]:
        (pci / name).mkdir(parents=True)
        (pci / name / "vendor").write_text("0x15b3\n")
        (pci / name / "device").write_text("0x101e\n")
        (pci / name / "class").write_text(cls + "\n")
        os.symlink(os.path.relpath(pci / name, grp / "devices"), grp / "devices" / name)
        if driver:
            (drivers / driver).mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(drivers / driver, pci / name), pci / name / "driver")
    # A group member that is missing from the PCI tree is still imported.
    os.symlink("../../../../bus/pci/devices/0000:66:00.0", grp / "devices" / "0000:66:00.0")
    topo = import_sysfs(root)
    assert topo.groups() == {7: ["0000:65:00.0", "0000:65:00.1", "0000:66:00.0"]}
    dev = topo.devices["0000:65:00.0"]
    assert (dev.vendor, dev.device, dev.class_code, dev.driver) == (0x15B3, 0x101E, 0x020000, "vfio-pci")
    assert topo.devices["0000:65:00.1"].driver is None
    assert topo.devices["0000:66:00.0"].vendor == 0
    kinds = {r.kind: r.enforced for r in dev.reserved_regions}
    assert kinds == {"msi": True, "direct_relaxable": False}
    assert topo.source == f"sysfs:{root}"


def test_sysfs_import_without_groups_fails(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TopologyError, match="iommu_groups"):
        import_sysfs(tmp_path)


def test_fake_sysfs_round_trip_of_the_default(tmp_path: pathlib.Path) -> None:
    topo = load_default()
    write_fake_sysfs(topo, tmp_path)
    again = import_sysfs(tmp_path)
    assert again.groups() == topo.groups()
    for name, dev in topo.devices.items():
        got = again.devices[name]
        assert (got.vendor, got.device, got.class_code, got.driver) == (
            dev.vendor, dev.device, dev.class_code, dev.driver)


def test_daemon_serves_a_sysfs_host(tmp_path: pathlib.Path, daemon_factory) -> None:
    write_fake_sysfs(load_default(), tmp_path / "root")
    d = daemon_factory("--topology", f"sysfs:{tmp_path / 'root'}", name="d")
    with d.client() as c, c.open_session() as s:
        assert s.info().topology_source == f"sysfs:{tmp_path / 'root'}"
        names = {dev.name for dev in s.list_devices()}
        assert "0000:05:00.1" in names
        ctx = s.open_context()
        dev = s.open_device("0000:03:00.0")
        dev.bind(ctx)
        assert dev.attach(ctx.ioas_alloc()) > 0


def test_daemon_refuses_a_broken_topology_file(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[device]]\nname = "nope"\ngroup = 1\n')
    out = run_daemon("--socket", str(tmp_path / "s"), "--topology", str(bad))
    assert out.returncode == 1 and "PCI address" in out.stderr
