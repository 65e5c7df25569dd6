"""iommuctl against a real daemon: in-process through click's runner, and
once as the installed executable."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from support import raises_errno

from iommuctl.cli import cli, parse_number
from iommud_wire import pb


@pytest.fixture
def run(daemon, tmp_path):
    env = {"IOMMUD_ENDPOINT": daemon.endpoint, "IOMMUCTL_STATE_DIR": str(tmp_path / "state"),
           "IOMMUD_SESSION": "", "IOMMUD_IOMMUFD": ""}

    def invoke(*args: str):
        result = CliRunner().invoke(cli, list(args), env={k: v or None for k, v in env.items()},
                                    catch_exceptions=False)
        return result

    return invoke


@pytest.mark.parametrize("text,value", [
    ("4096", 4096), ("0x1000", 4096), ("4K", 4096), ("4k", 4096), ("2M", 2 << 20),
    ("1G", 1 << 30), ("1T", 1 << 40), ("0x10K", 16 << 10), ("18446744073709551615", (1 << 64) - 1),
])
def test_parse_number(text: str, value: int) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "x", "4Q", "0xZZ", "-1", "16E", "18446744073709551616"])
def test_parse_number_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_number(text)


def test_health(run) -> None:
    result = run("health")
    assert result.exit_code == 0 and result.output.strip() == "SERVING"


def test_map_translate_unmap_round_trip(run) -> None:
    assert run("ioas", "create").output.strip() == "1"
    r = run("ioas", "map", "1", "--iova", "0x100000", "--length", "2M", "--user-va", "0x7f0000000000")
    assert r.exit_code == 0 and r.output.strip() == "0x100000"
    r = run("ioas", "map", "1", "--length", "64K", "--user-va", "0x7f0000210000", "--readonly")
    auto = int(r.output.strip(), 16)
    assert auto != 0 and auto % 0x10000 == 0
    r = run("ioas", "translate", "1", "0x180123")
    assert "0x7f0000080123" in r.output and "rw" in r.output
    r = run("-o", "json", "ioas", "translate", "1", "0x100000", hex(auto + 8), "0x5")
    rows = json.loads(r.output)
    assert rows == [{"iova": 0x100000, "pa": 0x7F0000000000, "prot": 6},
                    {"iova": auto + 8, "pa": 0x7F0000210008, "prot": 4},
                    {"iova": 5, "pa": None, "prot": 0}]
    shown = json.loads(run("-o", "json", "ioas", "show", "1").output)
    assert [a["iova"] for a in shown["areas"]] == sorted([0x100000, auto])
    r = run("ioas", "unmap", "1", "--iova", "0x100000", "--length", "2M")
    assert r.output.strip() == "0x200000"
    assert run("ioas", "unmap", "1", "--all").output.strip() == "0x10000"
    listed = json.loads(run("-o", "json", "ioas", "list").output)
    assert listed == [{"ioas_id": 1, "areas": 0, "mapped_bytes": 0, "users": 0}]


def test_errors_name_the_errno_and_exit_1(run) -> None:
    run("ioas", "create")
    run("ioas", "map", "1", "--iova", "0x1000", "--length", "4K")
    r = run("ioas", "map", "1", "--iova", "0x1000", "--length", "4K")
    assert r.exit_code == 1
    assert r.stderr.startswith("iommuctl: EEXIST: ") and r.stderr.count("\n") == 1
    r = run("ioas", "translate", "7", "0x1000")
    assert r.exit_code == 1 and "ENOENT" in r.stderr
    r = run("ioas", "unmap", "1", "--iova", "0x1000", "--length", "0x800")
    assert r.exit_code == 1 and "ENOENT" in r.stderr


def test_usage_errors_exit_2(run) -> None:
    assert run("ioas", "map", "1", "--length", "4Q").exit_code == 2
    assert run("ioas", "unmap", "1").exit_code == 2
    assert run("ioas", "unmap", "1", "--all", "--iova", "0").exit_code == 2


def test_allow_and_ranges(run) -> None:
    run("ioas", "create")
    assert run("ioas", "allow", "1", "0x100000-0x1fffff").exit_code == 0
    r = run("ioas", "map", "1", "--length", "4K")
    assert 0x100000 <= int(r.output, 16) <= 0x1FFFFF
    ranges = json.loads(run("-o", "json", "ioas", "ranges", "1").output)
    assert ranges == {"iova_alignment": 1, "ranges": [{"start": 0, "last": (1 << 64) - 1}]}
    r = run("ioas", "allow", "1", "0x5000-0x5000")
    assert r.exit_code == 1 and "EINVAL" in r.stderr


def test_unreachable_daemon_exits_3(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["--endpoint", f"unix:{tmp_path}/nobody.sock", "--timeout", "2",
                                 "health"], env={"IOMMUCTL_STATE_DIR": str(tmp_path)})
    assert r.exit_code == 3 and "EIO" in r.stderr


def test_state_file_recovers_from_a_closed_session(run) -> None:
    assert run("ioas", "create").output.strip() == "1"
    assert run("session", "close").exit_code == 0
    # The remembered token is gone: a new session and context are made.
    assert run("ioas", "create").output.strip() == "1"
    assert json.loads(run("-o", "json", "info").output)["session"]["ioas"] == 1


def test_explicit_session_and_context(run) -> None:
    token = json.loads(run("-o", "json", "session", "open").output)["token"]
    fd = json.loads(run("-o", "json", "--session", token, "context", "open").output)["iommufd"]
    assert fd == 3
    r = run("--session", token, "--iommufd", str(fd), "ioas", "create")
    assert r.output.strip() == "1"
    r = run("--session", token, "--iommufd", "9", "ioas", "create")
    assert r.exit_code == 1 and "EBADF" in r.stderr
    r = run("--session", "bogus", "ioas", "create")
    assert r.exit_code == 1 and "ESRCH" in r.stderr


def test_group_and_device_listing_and_driver_probe(run) -> None:
    groups = json.loads(run("-o", "json", "group", "list").output)
    bridge = next(g for g in groups if len(g["devices"]) == 2 and g["viable"])
    sibling = bridge["devices"][1]
    assert run("driver", "unbind", sibling).exit_code == 0
    assert run("driver", "bind", sibling, "e1000e").exit_code == 0
    after = {g["group"]: g for g in json.loads(run("-o", "json", "group", "list").output)}
    assert after[bridge["group"]]["viable"] is False
    run("driver", "unbind", sibling)
    run("driver", "bind", sibling, "vfio-pci")
    devices = run("device", "list").output
    assert sibling in devices and "vfio-pci" in devices
    r = run("driver", "bind", "0000:ff:00.0", "vfio-pci")
    assert r.exit_code == 1 and "ENODEV" in r.stderr


def test_installed_executable(daemon, tmp_path) -> None:
    exe = shutil.which("iommuctl")
    assert exe is not None, "iommuctl is not on PATH"
    env = {**os.environ, "IOMMUD_ENDPOINT": daemon.endpoint, "IOMMUCTL_STATE_DIR": str(tmp_path)}
    env.pop("IOMMUD_SESSION", None)
    out = subprocess.run([exe, "health"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "SERVING"
    out = subprocess.run([exe, "ioas", "translate", "1", "0x0"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("iommuctl: ENOENT")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert "Exit codes" in out.stdout and "3  the daemon cannot be reached" in out.stdout


def test_compat_commands_drive_a_legacy_container(run) -> None:
    groups = json.loads(run("-o", "json", "group", "list").output)
    group = next(g for g in groups if len(g["devices"]) == 1 and g["viable"]
                 and g["owner"] == "none")
    cfd = run("compat", "container-open").output.strip()
    assert run("compat", "get-api-version", cfd).output.strip() == "0"
    assert run("compat", "check-extension", cfd, "type1v2").output.strip() == "1"
    gfd = run("compat", "group-open", str(group["group"])).output.strip()
    assert run("compat", "group-get-status", gfd).output.strip() == "VIABLE"
    r = run("compat", "set-iommu", cfd, "type1v2")
    assert r.exit_code == 1 and "EINVAL" in r.stderr                    # no group set yet
    assert run("compat", "group-set-container", gfd, cfd).exit_code == 0
    assert run("compat", "group-get-status", gfd).output.strip() == "VIABLE | CONTAINER_SET"
    assert run("compat", "set-iommu", cfd, "type1v2").exit_code == 0
    info = json.loads(run("-o", "json", "compat", "iommu-get-info", cfd).output)
    assert info["dma_avail"] == 65535 and info["migration"] is True
    assert run("compat", "map-dma", cfd, "--iova", "1M", "--size", "2M", "--vaddr",
               "0x7f0000000000").exit_code == 0
    r = run("compat", "map-dma", cfd, "--iova", "2M", "--size", "4K")
    assert r.exit_code == 1 and "EEXIST" in r.stderr
    dfd = run("compat", "group-get-device-fd", gfd, group["devices"][0]).output.strip()
    assert int(dfd) > int(gfd)
    assert run("compat", "unmap-dma", cfd, "--all").output.strip() == "0x200000"
    r = run("compat", "group-unset-container", gfd)
    assert r.exit_code == 1 and "EBUSY" in r.stderr                     # the device fd is open


def test_host_inventory_needs_no_session(daemon_factory) -> None:
    """ListDevices and ListGroups answer without a token, as lspci needs no
    open fd; a token that names no session is still ESRCH."""
    d = daemon_factory(name="inventory")
    with d.client(keepalive=False) as c:
        groups = c.call("ListGroups", pb.ListGroupsRequest()).groups
        devices = c.call("ListDevices", pb.ListDevicesRequest()).devices
        assert groups and devices and {dev.group for dev in devices} <= {g.group for g in groups}
        assert c.info().daemon.sessions == 0
        raises_errno(lambda: c.call("ListGroups", pb.ListGroupsRequest(), "bogus"), "ESRCH")
