"""Real VMM code against iommud: clients/vmm-demo, a Rust program built on
cloud-hypervisor's `vfio-ioctls` and `iommufd-ioctls` crates from crates.io,
unmodified, run under `iommud-preload` against a real daemon.

The demo is built with cargo (its own Cargo.lock, --locked) into a target
directory outside the repository that later runs reuse:
$IOMMUD_VMM_DEMO_TARGET, else ~/.cache/iommud/vmm-demo-target.
"""
from __future__ import annotations

import errno as E
import os
import pathlib
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest
from uapi_client import PATH_IOMMU, Process

from iommud_wire import pb

if TYPE_CHECKING:
    from collections.abc import Iterator

    from support import DaemonFactory, DaemonProcess
    from uapi_client import File

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO = REPO / "clients" / "vmm-demo"
BUILD_TIMEOUT = 900.0
RUN_TIMEOUT = 60.0
DEVICE = "0000:03:00.0"   # the default topology's first vfio-pci device, alone in its group

# What the demo prints for that device (the vfio_pci_core-style device of
# docs/uapi-transport.md): one line per step, in order.
TRANSCRIPT = [
    "iommufd: opened /dev/iommu",
    "ioas: allocated id 1",
    "device: opened /dev/vfio/devices/vfio{n}",
    "device: bound as dev id 2, attached to ioas 1",
    "region 0: size 0x4000 flags 0x7 offset 0x0",
    *(f"region {i}: size 0x0 flags 0x0 offset {i << 40:#x}" for i in range(1, 7)),
    "region 7: size 0x1000 flags 0x3 offset 0x70000000000",
    "irq 0: count 1 flags 0x7",
    "irq 1: count 1 flags 0x9",
    "irq 2: count 0 flags 0x9",
    "irq 3: count 1 flags 0x9",
    "irq 4: count 1 flags 0x9",
    "device: max interrupts 1",
    "map: iova 0x100000 length 0x200000",
    "map: iova 0x100000000 length 0x100000",
    "map again: iova 0x100000 refused with EEXIST",
    # No config space, BARs or interrupts behind a device fd: it is a socket.
    "limits: config space read: ESPIPE",
    "limits: BAR0 mmap: ENODEV",
    "limits: VFIO_DEVICE_SET_IRQS: ENOTTY",
    "limits: enable_irq(INTx): refused",
    "paused",
    "unmap: iova 0x100000 length 0x200000",
    "unmap: iova 0x100000000 length 0x100000",
    "unmap again: iova 0x100000 refused with ENOENT",
    "drop: device detached and closed",
    "drop: ioas 1 destroyed",
    "drop: iommufd closed",
    "vmm-demo: ok",
]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "IOMMUD_PRELOAD_SOCKET", "IOMMUD_PRELOAD_TIMEOUT")}


@pytest.fixture(scope="module")
def demo() -> pathlib.Path:
    cargo = shutil.which("cargo")
    assert cargo, "cargo is needed to build clients/vmm-demo"
    target = pathlib.Path(os.environ.get("IOMMUD_VMM_DEMO_TARGET")
                          or pathlib.Path.home() / ".cache" / "iommud" / "vmm-demo-target")
    proc = subprocess.run([cargo, "build", "--locked", "--quiet", "--manifest-path",
                           str(DEMO / "Cargo.toml")],
                          env={**_env(), "CARGO_TARGET_DIR": str(target), "CARGO_TERM_COLOR": "never"},
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, f"cargo build of {DEMO}:\n{proc.stderr}"
    binary = target / "debug" / "iommud-vmm-demo"
    assert binary.is_file(), binary
    return binary


@pytest.fixture(scope="module")
def launcher() -> str:
    path = shutil.which("iommud-preload")
    assert path, "iommud-preload is not installed (README: pip install ... ./clients/preload)"
    return path


@pytest.fixture(scope="module")
def d(module_daemon_factory: DaemonFactory) -> DaemonProcess:
    return module_daemon_factory(name="vmm-demo")


def uapi_path(daemon: DaemonProcess) -> str:
    return str(daemon.socket_path.parent / "iommud.uapi.sock")


@pytest.fixture
def witness(d: DaemonProcess) -> Iterator[File]:
    """An iommufd of the test's own, held throughout: a round trip on it
    serves every hang-up before it (docs/uapi-transport.md), so after the
    demo exits the daemon has released its files."""
    p = Process(uapi_path(d))
    try:
        yield p.open(PATH_IOMMU)
    finally:
        p.close()


def info(daemon: DaemonProcess) -> pb.ObjectCounts:
    with daemon.client() as c:
        counts: pb.ObjectCounts = c.info().daemon
        return counts


def objects(daemon: DaemonProcess) -> tuple[int, ...]:
    """The daemon's object counts: what a run that dropped everything gives back."""
    n = info(daemon)
    return (n.sessions, n.contexts, n.objects, n.ioas, n.areas, n.mapped_bytes, n.hwpts, n.devices,
            n.device_fds)


def host(daemon: DaemonProcess) -> tuple[int, pb.HostDevice, pb.IommuGroup]:
    """DEVICE's cdev number (the devices on vfio-pci, numbered in PCI address
    order at start), the device, and its group."""
    with daemon.client() as c, c.open_session("vmm-demo-check") as s:
        devices = sorted((x for x in s.list_devices() if x.driver == "vfio-pci"),
                         key=lambda x: x.name)
        n = [x.name for x in devices].index(DEVICE)
        group = s.group(devices[n].group)
        return n, devices[n], group


def test_cloud_hypervisor_crates_run_unmodified_under_the_shim(
        demo: pathlib.Path, launcher: str, d: DaemonProcess, witness: File) -> None:
    n, dev, group = host(d)
    assert (dev.user_open, group.owner) == (False, pb.GROUP_OWNER_NONE)
    base, base_objects = info(d), objects(d)
    child = subprocess.Popen([launcher, "--endpoint", uapi_path(d), "--", demo, "--device", str(n),
                              "--pause"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env())
    try:
        assert child.stdout is not None and child.stdin is not None
        lines = []
        while (line := child.stdout.readline()) and line != "paused\n":
            lines.append(line)
        assert line == "paused\n", "".join(lines)
        # Both regions mapped, the device bound and attached to the IOAS.
        now = info(d)
        assert (now.contexts, now.ioas, now.areas, now.mapped_bytes, now.devices, now.device_fds) == (
            base.contexts + 1, base.ioas + 1, base.areas + 2, base.mapped_bytes + 0x300000,
            base.devices + 1, base.device_fds + 1)
        _, dev, group = host(d)
        assert (dev.user_open, group.owner) == (True, pb.GROUP_OWNER_IOMMUFD)
        out, err = child.communicate("\n", timeout=RUN_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, f"exit {child.returncode}\n{''.join(lines)}{out}\n{err}"
    assert [*"".join(lines).splitlines(), "paused", *out.splitlines()] == [
        line.format(n=n) for line in TRANSCRIPT]
    # Everything dropped: the daemon is back where it was, the group free.
    witness.describe()
    assert objects(d) == base_objects
    _, dev, group = host(d)
    assert (dev.user_open, group.owner) == (False, pb.GROUP_OWNER_NONE)


def test_demo_runs_twice_on_the_same_device(demo: pathlib.Path, launcher: str, d: DaemonProcess,
                                           witness: File) -> None:
    """The second run binds the device the first run's drop released."""
    n, _, _ = host(d)
    base = objects(d)
    for _ in range(2):
        proc = subprocess.run([launcher, "--endpoint", uapi_path(d), "--", demo, "--device", str(n)],
                              capture_output=True, text=True, env=_env(), timeout=RUN_TIMEOUT)
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        assert proc.stdout.splitlines()[-1] == "vmm-demo: ok"
        witness.describe()
    assert objects(d) == base


def test_demo_without_a_daemon_fails_to_open_the_iommufd_with_enodev(
        demo: pathlib.Path, launcher: str, tmp_path: pathlib.Path) -> None:
    proc = subprocess.run([launcher, "--endpoint", str(tmp_path / "none.sock"), "--", demo],
                          capture_output=True, text=True, env=_env(), timeout=RUN_TIMEOUT)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"vmm-demo: failed: failed to open /dev/iommufd: {os.strerror(E.ENODEV)} (os error {E.ENODEV})"]
