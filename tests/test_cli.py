"""iommuctl against a real daemon: in-process through click's runner, and
as a process (`python -m iommuctl`, and the installed executable) where what
a user sees matters: exit codes, one-line errors, sessions left behind."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st
from packaging.requirements import Requirement
from support import raises_errno

from iommuctl.cli import GLOBAL_OPTIONS, cli, parse_number, to_yaml
from iommud import config as daemon_config
from iommud_client import Client
from iommud_wire import pb

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: Every variable iommuctl reads, cleared so that the caller's shell cannot leak in.
CLIENT_ENV = ("IOMMUCTL_ENDPOINT", "IOMMUD_ENDPOINT", "IOMMUCTL_OUTPUT", "IOMMUCTL_TIMEOUT",
              "IOMMUCTL_SESSION", "IOMMUD_SESSION", "IOMMUCTL_IOMMUFD", "IOMMUD_IOMMUFD",
              "IOMMUCTL_TLS_CA", "IOMMUCTL_TLS_CERT", "IOMMUCTL_TLS_KEY", "IOMMUCTL_STATE_DIR")


@pytest.fixture
def run(daemon, tmp_path):
    env: dict[str, str | None] = dict.fromkeys(CLIENT_ENV)
    env.update(IOMMUCTL_ENDPOINT=daemon.endpoint, IOMMUCTL_STATE_DIR=str(tmp_path / "state"))

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


def ctl_env(endpoint: str, state: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    env.update(IOMMUCTL_ENDPOINT=endpoint, IOMMUCTL_STATE_DIR=str(state), **extra)
    return env


def ctl(*args: str, env: dict[str, str], stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`python -m iommuctl ARGS` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "iommuctl", *args], capture_output=True,
                          text=True, env=env, input=stdin, timeout=60)


def one_line(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


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
    assert r.exit_code == 3 and r.stderr.startswith("iommuctl: EIO: ")
    assert r.stderr.count("\n") == 1


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
    assert r.exit_code == 1 and r.stderr.startswith("iommuctl: ESRCH: ")
    r = run("ioas", "create", "--session", token, "--iommufd", str(fd))   # after the command
    assert r.output.strip() == "2"


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
    env = ctl_env(daemon.endpoint, tmp_path)
    out = subprocess.run([exe, "health"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "SERVING"
    out = subprocess.run([exe, "ioas", "translate", "1", "0x0"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert one_line(out, 1).startswith("iommuctl: ESRCH: iommuctl has no session or context")
    subprocess.run([exe, "ioas", "create"], env=env, timeout=60, check=True, capture_output=True)
    out = subprocess.run([exe, "ioas", "translate", "1", "0x0"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert one_line(out, 1).startswith("iommuctl: ENOENT: ")
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


# -- version, help, usage errors -------------------------------------------------------------

def test_version(tmp_path) -> None:
    out = ctl("--version", env=ctl_env("unix:/nowhere", tmp_path))
    assert out.returncode == 0 and out.stdout == "iommuctl 0.1.0\n" and out.stderr == ""


@pytest.mark.parametrize("args,line", [
    (["-o", "xml", "info"],
     "iommuctl: Invalid value for '-o' / '--output': 'xml' is not one of 'table', 'wide', "
     "'json', 'yaml'. (see 'iommuctl --help')"),
    (["info", "--timeout", "abc"],
     "iommuctl: Invalid value for '--timeout': 'abc' is not a valid float range. "
     "(see 'iommuctl info --help')"),
    (["ioas", "map", "1", "--length", "4Q"],
     "iommuctl: Invalid value for '--length': '4Q' is not a number (hex, decimal or a size like "
     "4K, 2M, 1G) (see 'iommuctl ioas map --help')"),
    (["bogus"], "iommuctl: No such command 'bogus'. (see 'iommuctl --help')"),
    (["--iommufd", "three", "ioas", "list"],
     "iommuctl: Invalid value for '--iommufd': 'three' is not a valid integer. "
     "(see 'iommuctl --help')"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, args, line) -> None:
    assert one_line(ctl(*args, env=ctl_env("unix:/nowhere", tmp_path)), 2) == line


def test_a_bad_environment_value_is_one_line(tmp_path) -> None:
    env = ctl_env("unix:/nowhere", tmp_path, IOMMUCTL_OUTPUT="xml")
    assert one_line(ctl("info", env=env), 2).startswith(
        "iommuctl: Invalid value for '-o' / '--output': 'xml' is not one of")


def test_tls_options_on_a_unix_endpoint_are_a_usage_error(daemon, tmp_path) -> None:
    """On the command line TLS with a socket is a mistake; in the environment
    it is meant for TCP daemons, and the socket ignores it (probes rely on it)."""
    env = ctl_env(daemon.endpoint, tmp_path, IOMMUCTL_TLS_CA="/etc/ssl/ca.crt",
                  IOMMUCTL_TLS_CERT="/etc/ssl/vmm.crt", IOMMUCTL_TLS_KEY="/etc/ssl/vmm.key")
    out = ctl("health", env=env)
    assert out.returncode == 0 and out.stdout == "SERVING\n"
    env = ctl_env("unix:/run/x.sock", tmp_path)
    assert one_line(ctl("health", "--tls-ca", "/etc/ssl/ca.crt", env=env), 2) == (
        "iommuctl: --tls-ca/--tls-cert/--tls-key apply to TCP endpoints; unix:/run/x.sock is a "
        "UNIX socket, which is never TLS (see 'iommuctl health --help')")


def test_an_unreadable_tls_file_is_one_line(tmp_path) -> None:
    env = ctl_env("127.0.0.1:1", tmp_path)
    out = ctl("health", "--tls-ca", str(tmp_path / "none.crt"), env=env)
    assert one_line(out, 2) == (f"iommuctl: Invalid value for '--tls-ca': cannot read "
                                f"'{tmp_path / 'none.crt'}' (see 'iommuctl health --help')")


# -- global options, output formats ----------------------------------------------------------

def test_global_options_may_follow_the_command(run) -> None:
    before = run("-o", "json", "group", "list")
    after = run("group", "list", "-o", "json")
    assert before.exit_code == after.exit_code == 0
    assert json.loads(after.output) == json.loads(before.output)
    # The later one wins, as with kubectl: here the command's -o over the group's.
    assert json.loads(run("-o", "table", "group", "list", "--output", "json").output)
    assert run("ioas", "create", "--timeout", "5").output.strip() == "1"
    assert json.loads(run("ioas", "list", "-o", "json").output)[0]["ioas_id"] == 1
    r = run("group", "list", "--endpoint", "unix:/nonexistent.sock", "--timeout", "1")
    assert r.exit_code == 3          # --endpoint after the command is the one used


@pytest.mark.parametrize("argv", [["group", "list"], ["device", "list"], ["info"],
                                  ["ioas", "list"], ["session", "list"], ["health"]])
def test_yaml_is_the_json_data(run, argv) -> None:
    run("ioas", "create")
    as_json = json.loads(run(*argv, "-o", "json").output)
    as_yaml = yaml.safe_load(run(*argv, "-o", "yaml").output)
    if argv == ["info"]:           # counters move between the two calls' sessions
        for d in (as_json, as_yaml):
            d.pop("daemon")
    assert as_yaml == as_json


def test_wide_adds_columns(run) -> None:
    table = run("group", "list").output.splitlines()[0].split()
    wide = run("group", "list", "-o", "wide").output.splitlines()[0].split()
    assert table == ["GROUP", "VIABLE", "OWNER", "USERS", "DEVICES"]
    assert wide == ["GROUP", "VIABLE", "OWNER", "USERS", "DOMAIN", "DEVICES"]
    table = run("device", "list").output.splitlines()[0].split()
    wide = run("device", "list", "-o", "wide").output.splitlines()[0].split()
    assert set(wide) - set(table) == {"CLASS", "DESCRIPTION"}
    # A command without extra columns prints its table.
    assert run("health", "-o", "wide").output == "SERVING\n"


_json_scalars = (st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70)
                 | st.floats(allow_nan=False) | st.text())
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_to_yaml_round_trips_through_a_yaml_parser(data) -> None:
    assert yaml.safe_load(to_yaml(data)) == data


def test_to_yaml_reads_like_kubectl() -> None:
    data = {"group": 20, "devices": ["0000:05:00.0", "vfio-pci"], "viable": True,
            "owner": None, "name": "no", "nested": [{"a": 1, "b": []}, {}]}
    assert to_yaml(data) == ('group: 20\ndevices:\n- "0000:05:00.0"\n- vfio-pci\nviable: true\n'
                             'owner: null\nname: "no"\nnested:\n- a: 1\n  b: []\n- {}\n')


# -- completion -----------------------------------------------------------------------------

def test_completion_scripts(tmp_path) -> None:
    env = ctl_env("unix:/nowhere", tmp_path)
    for shell, marker in (("bash", "bash_complete"), ("zsh", "zsh_complete"),
                          ("fish", "fish_complete")):
        out = ctl("completion", shell, env=env)
        assert out.returncode == 0 and "_IOMMUCTL_COMPLETE" in out.stdout, shell
        assert marker in out.stdout, shell
    assert one_line(ctl("completion", "tcsh", env=env), 2).startswith(
        "iommuctl: Invalid value for '{bash|zsh|fish}': 'tcsh' is not one of")


def test_bash_completes_commands_and_choices(tmp_path) -> None:
    """The script, sourced into bash, completes through the installed executable."""
    assert shutil.which("iommuctl") and shutil.which("bash")
    env = ctl_env("unix:/nowhere", tmp_path)
    script = tmp_path / "iommuctl.bash"
    script.write_text(ctl("completion", "bash", env=env).stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        cmd = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
               f"_iommuctl_completion iommuctl; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
        out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert complete("iommuctl", "gr") == ["group"]
    assert set(complete("iommuctl", "ioas", "")) >= {"create", "map", "map-batch", "list"}
    assert complete("iommuctl", "group", "list", "-o", "") == ["table", "wide", "json", "yaml"]


# -- sessions: read-only commands hold none, and none leaks -------------------------------------

def _sessions(d) -> int:
    with d.client(keepalive=False) as c:
        return c.info().daemon.sessions


def test_read_only_commands_open_no_session_and_write_nothing(daemon_factory, tmp_path) -> None:
    d = daemon_factory(name="readonly")
    state = tmp_path / "state"
    env = ctl_env(d.endpoint, state)
    for argv in (["health"], ["info"], ["group", "list"], ["device", "list"], ["ioas", "list"],
                 ["hwpt", "list"], ["session", "list"], ["-o", "yaml", "info"]):
        out = ctl(*argv, env=env)
        assert out.returncode == 0 and out.stderr == "", (argv, out.stderr)
    assert json.loads(ctl("-o", "json", "info", env=env).stdout)["session"] is None
    assert json.loads(ctl("-o", "json", "ioas", "list", env=env).stdout) == []
    assert not state.exists()
    assert _sessions(d) == 0
    # Asking about an object needs a context: ESRCH, as the daemon answers without a session.
    line = one_line(ctl("ioas", "show", "1", env=env), 1)
    assert line == (f"iommuctl: ESRCH: iommuctl has no session or context for {d.endpoint}: "
                    f"`iommuctl ioas create` (or --session and --iommufd) makes one")
    assert _sessions(d) == 0
    # Once a session exists, the read-only commands use it and make no other.
    assert ctl("ioas", "create", env=env).stdout == "1\n"
    for argv in (["info"], ["group", "list"], ["ioas", "list"], ["ioas", "show", "1"]):
        assert ctl(*argv, env=env).returncode == 0, argv
    assert _sessions(d) == 1
    assert json.loads(ctl("-o", "json", "info", env=env).stdout)["session"]["ioas"] == 1


def test_an_unwritable_state_directory_is_one_line_and_leaks_no_session(daemon_factory,
                                                                        tmp_path) -> None:
    d = daemon_factory(name="nostate")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = ctl_env(d.endpoint, blocker / "state")
    line = one_line(ctl("ioas", "create", env=env), 4)
    assert line == (f"iommuctl: ENOTDIR: cannot keep the session in {blocker / 'state'}: Not a "
                    f"directory; set IOMMUCTL_STATE_DIR to a writable directory, or pass "
                    f"--session")
    assert _sessions(d) == 0
    assert ctl("group", "list", env=env).returncode == 0          # reading needs no state
    # The directory is fine but the state file cannot be replaced: the session
    # just opened is closed again, not left to its hour-long lease.
    state = tmp_path / "state"
    key = hashlib.sha256(d.endpoint.encode()).hexdigest()[:16]
    (state / f"{key}.json" / "in-the-way").mkdir(parents=True)
    line = one_line(ctl("ioas", "create", env=ctl_env(d.endpoint, state)), 4)
    assert line.startswith(f"iommuctl: EISDIR: cannot keep the session in {state}: Is a directory")
    assert _sessions(d) == 0


def test_session_list_shows_what_iommuctl_remembers(run, tmp_path) -> None:
    assert json.loads(run("session", "list", "-o", "json").output) == []
    run("ioas", "create")
    [row] = json.loads(run("session", "list", "-o", "json").output)
    assert row["state"] == "open" and row["iommufd"] == 3
    assert row["counts"]["contexts"] == 1 and row["counts"]["ioas"] == 1
    # Another endpoint's remembered session is listed, but not asked about.
    other = {"endpoint": "unix:/elsewhere.sock", "token": "t", "session_id": "s-other"}
    (tmp_path / "state" / "0123456789abcdef.json").write_text(json.dumps(other))
    rows = {r["session_id"]: r for r in json.loads(run("session", "list", "-o", "json").output)}
    assert rows["s-other"]["state"] == "unknown" and rows[row["session_id"]]["state"] == "open"
    wide = run("session", "list", "-o", "wide").output.splitlines()[0].split()
    assert wide == ["SESSION", "ENDPOINT", "IOMMUFD", "STATE", "CONTEXTS", "OBJECTS", "AREAS",
                    "MAPPED"]
    assert run("session", "close").output == "closed 1 fd(s)\n"
    assert [r["session_id"] for r in json.loads(run("session", "list", "-o", "json").output)] \
        == ["s-other"]
    r = run("session", "close")
    assert r.exit_code == 1 and r.stderr.startswith("iommuctl: ESRCH: iommuctl has no session")


def test_iommuctl_clients_are_one_shot(monkeypatch, run) -> None:
    made: list[Client] = []
    real = Client.__init__

    def spy(self, *args, **kw):
        real(self, *args, **kw)
        made.append(self)

    monkeypatch.setattr(Client, "__init__", spy)
    assert run("ioas", "create").exit_code == 0
    assert made and all(c.keepalive is False for c in made)


# -- devices, HWPTs, map batches -----------------------------------------------------------------

def test_device_open_bind_attach_detach(run) -> None:
    groups = json.loads(run("-o", "json", "group", "list").output)
    name = next(g for g in groups if len(g["devices"]) == 1 and g["viable"]
                and g["owner"] == "none")["devices"][0]
    assert run("ioas", "create").output.strip() == "1"
    r = run("device", "open", "0000:00:19.0")                      # on its host driver
    assert r.exit_code == 1 and r.stderr.startswith("iommuctl: ENODEV: ")
    dfd = run("device", "open", name).output.strip()
    r = run("device", "attach", dfd, "1")
    assert r.exit_code == 1 and r.stderr.startswith("iommuctl: EINVAL: ")   # not bound yet
    dev_id = json.loads(run("device", "bind", dfd, "--cookie", "0x77", "-o", "json").output)
    assert dev_id == {"dev_id": 2, "iommufd": 3}
    assert json.loads(run("-o", "json", "group", "list").output)[
        [g["devices"] for g in groups].index([name])]["owner"] == "iommufd"
    auto = int(run("device", "attach", dfd, "1").output)           # an automatic domain
    [hw] = json.loads(run("hwpt", "list", "-o", "json").output)
    assert hw == {"hwpt_id": auto, "type": "paging", "ioas_id": 1, "users": 1,
                  "auto_domain": True}
    hwpt_id = int(run("hwpt", "alloc", "2", "1").output)
    r = run("hwpt", "alloc", "9", "1")
    assert r.exit_code == 1 and r.stderr.startswith("iommuctl: ENOENT: ")
    assert int(run("device", "attach", dfd, str(hwpt_id)).output) == hwpt_id   # a replace
    listed = {h["hwpt_id"]: h for h in json.loads(run("hwpt", "list", "-o", "json").output)}
    assert listed[hwpt_id]["users"] == 1 and listed[hwpt_id]["auto_domain"] is False
    assert run("hwpt", "list", "-o", "wide").output.splitlines()[0].split() == [
        "HWPT", "TYPE", "IOAS", "USERS", "AUTO"]
    assert run("device", "detach", dfd).output == f"device fd {dfd} detached\n"
    assert run("device", "close", dfd).exit_code == 0
    r = run("device", "close", dfd)
    assert r.exit_code == 1 and r.stderr.startswith("iommuctl: EBADF: ")


def test_map_batch_from_a_file(run, tmp_path) -> None:
    run("ioas", "create")
    fixed = tmp_path / "fixed.txt"
    fixed.write_text("# user_va   length  iova\n0x7f0000000000 2M 0x100000\n\n"
                     "0x7f0000200000 64K 0x400000   # the second\n")
    rows = json.loads(run("ioas", "map-batch", "1", str(fixed), "-o", "json").output)
    assert rows == [{"line": 2, "iova": 0x100000, "length": 2 << 20, "user_va": 0x7F0000000000},
                    {"line": 4, "iova": 0x400000, "length": 64 << 10, "user_va": 0x7F0000200000}]
    auto = tmp_path / "auto.txt"
    auto.write_text("".join(f"{0x10000000 + i * 0x1000:#x} 4K\n" for i in range(5000)))
    r = run("ioas", "map-batch", "1", str(auto), "--chunk", "1024", "--readonly")
    iovas = [int(x, 16) for x in r.output.split()]
    assert r.exit_code == 0 and len(set(iovas)) == 5000
    [ioas] = json.loads(run("ioas", "list", "-o", "json").output)
    assert ioas["areas"] == 5002 and ioas["mapped_bytes"] == (2 << 20) + (64 << 10) + 5000 * 4096
    assert json.loads(run("-o", "json", "ioas", "translate", "1", hex(iovas[7])).output)[0] == {
        "iova": iovas[7], "pa": 0x10007000, "prot": 4}


def test_a_failing_map_batch_undoes_what_it_mapped(run, tmp_path) -> None:
    run("ioas", "create")
    run("ioas", "map", "1", "--iova", "0x90000000", "--length", "4K")
    batch = tmp_path / "clash.txt"
    # 3000 maps in chunks of 1000: the third chunk's last entry hits the existing area.
    batch.write_text("".join(f"0x0 4K {0x1000000 + i * 0x1000:#x}\n" for i in range(2999))
                     + "0x0 4K 0x90000000\n")
    r = run("ioas", "map-batch", "1", str(batch), "--chunk", "1000")
    assert r.exit_code == 1
    assert r.stderr == (f"iommuctl: EEXIST: Request 0x3e7 of the batch: IOVA range "
                        f"0x90000000..=0x90000fff overlaps an existing area. (line 3000 of "
                        f"{batch}; the 2000 maps made before were undone)\n")
    assert json.loads(run("ioas", "list", "-o", "json").output)[0]["areas"] == 1


@pytest.mark.parametrize("text,line", [
    ("0x1000 4K 0x100000\n0x2000 8K\n",
     "iommuctl: {f}:2: every line gives an IOVA or none does; expected USER_VA LENGTH [IOVA]"),
    ("0x1000 4Q\n", "iommuctl: {f}:1: '4Q' is not a number (hex, decimal or a size like 4K, 2M, "
                    "1G); expected USER_VA LENGTH [IOVA]"),
    ("0x1000\n", "iommuctl: {f}:1: 1 fields; expected USER_VA LENGTH [IOVA]"),
    ("# nothing\n", "iommuctl: {f}: no maps; expected lines of USER_VA LENGTH [IOVA]"),
])
def test_a_bad_batch_file_is_a_usage_error_naming_the_line(daemon, tmp_path, text, line) -> None:
    batch = tmp_path / "batch.txt"
    batch.write_text(text)
    env = ctl_env(daemon.endpoint, tmp_path / "state")
    got = one_line(ctl("ioas", "map-batch", "1", str(batch), env=env), 2)
    assert got == line.format(f=batch) + " (see 'iommuctl ioas map-batch --help')"
    got = one_line(ctl("ioas", "map-batch", "1", "-", env=env, stdin=text), 2)
    assert got.startswith(line.format(f="<stdin>")[:30])
    missing = one_line(ctl("ioas", "map-batch", "1", str(tmp_path / "none"), env=env), 2)
    assert missing.startswith("iommuctl: Invalid value for 'FILE': ")


def test_map_batch_shows_a_progress_bar(daemon, tmp_path) -> None:
    batch = tmp_path / "batch.txt"
    batch.write_text("".join(f"{0x10000000 + i * 0x1000:#x} 4K\n" for i in range(3000)))
    env = ctl_env(daemon.endpoint, tmp_path / "state", COLUMNS="100")
    out = ctl("ioas", "create", env=env)
    out = ctl("ioas", "map-batch", "1", str(batch), "--progress", env=env)
    assert out.returncode == 0 and len(out.stdout.split()) == 3000
    assert re.search(r"mapping .* 3000/3000", out.stderr), out.stderr
    out = ctl("ioas", "map-batch", "1", str(batch), env=env)      # stderr is no terminal
    assert out.returncode == 0 and out.stderr == ""


# -- environment names and the client-only install ------------------------------------------------

def test_client_and_daemon_environment_names_never_meet() -> None:
    """IOMMUD_<SETTING> is the daemon's; iommuctl reads IOMMUCTL_* (and two old
    names no daemon setting has), and the client library IOMMUD_ENDPOINT."""
    daemon_names = {daemon_config.env_of(f) for f in daemon_config._FIELDS} | {
        daemon_config.CONFIG_ENV}
    client_names = {"IOMMUD_ENDPOINT", "IOMMUCTL_STATE_DIR"}
    for _name, _decls, kw in GLOBAL_OPTIONS:
        envvar = kw.get("envvar") or []
        client_names.update([envvar] if isinstance(envvar, str) else envvar)
    assert {"IOMMUCTL_TLS_CERT", "IOMMUCTL_TLS_KEY", "IOMMUCTL_TLS_CA"} <= client_names
    assert not daemon_names & client_names
    assert all(n.startswith("IOMMUCTL_") for n in client_names - {
        "IOMMUD_ENDPOINT", "IOMMUD_SESSION", "IOMMUD_IOMMUFD"})


def test_the_daemons_tls_variables_do_not_reach_iommuctl(daemon, tmp_path) -> None:
    """A shell (or a container) configured for a TLS daemon keeps the daemon's
    certificate in IOMMUD_TLS_CERT: iommuctl on the socket ignores it."""
    env = ctl_env(daemon.endpoint, tmp_path, IOMMUD_TLS_CERT="/etc/iommud/server.crt",
                  IOMMUD_TLS_KEY="/etc/iommud/server.key", IOMMUD_TLS_CLIENT_CA="/etc/ca.crt")
    out = ctl("health", env=env)
    assert out.returncode == 0 and out.stdout == "SERVING\n"


def _client_only_tree(dest: pathlib.Path, leave_out: frozenset[str] = frozenset()) -> None:
    """What `pip install ./proto './clients[cli]'` puts on sys.path, as links:
    the two source packages, and every file of every distribution they
    require (transitively, by their metadata), and nothing else."""
    project = tomllib.loads((ROOT / "clients" / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["cli"]]
    for pkg, src in (("iommud_client", ROOT / "clients"), ("iommuctl", ROOT / "clients"),
                     ("iommud_wire", ROOT / "proto" / "python")):
        (dest / pkg).symlink_to(src / pkg)
    wanted += tomllib.loads((ROOT / "proto" / "pyproject.toml").read_text())["project"][
        "dependencies"]
    seen: set[str] = set()
    while wanted:
        req = Requirement(wanted.pop())
        name = req.name.lower().replace("_", "-")
        if name in seen or name in {"iommud-wire", "iommud-client"} or name in leave_out:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        seen.add(name)
        dist = importlib.metadata.distribution(name)
        for file in dist.files or ():
            parts = file.parts
            if parts[0] == ".." or parts[0].endswith(".dist-info") or "__pycache__" in parts:
                continue
            link = dest.joinpath(*parts)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(pathlib.Path(str(dist.locate_file(file))))
        wanted += dist.requires or []
    assert "grpcio-health-checking" in seen or "grpcio-health-checking" in leave_out


def test_health_works_on_a_client_only_install(daemon, tmp_path) -> None:
    """Without the daemon's packages on the path (-S: no site-packages, -I:
    no PYTHONPATH), `iommuctl health` runs on what the client distribution
    declares; the same tree without grpcio-health-checking is the failure
    the issue saw, so the check is not vacuous."""
    def health(tree: pathlib.Path) -> subprocess.CompletedProcess[str]:
        code = (f"import sys; sys.path.insert(0, {str(tree)!r}); "
                f"from iommuctl.cli import main; sys.exit(main())")
        return subprocess.run([sys.executable, "-I", "-S", "-c", code, "--endpoint",
                               daemon.endpoint, "health"], capture_output=True, text=True,
                              env=ctl_env(daemon.endpoint, tmp_path / "state"), timeout=60)

    full, lacking = tmp_path / "full", tmp_path / "lacking"
    full.mkdir()
    lacking.mkdir()
    _client_only_tree(full)
    _client_only_tree(lacking, frozenset({"grpcio-health-checking"}))
    out = health(full)
    assert out.returncode == 0 and out.stdout == "SERVING\n", out.stderr
    out = health(lacking)
    assert out.returncode != 0 and "No module named 'grpc_health'" in out.stderr


def test_a_reader_that_goes_away_ends_iommuctl_quietly() -> None:
    """`iommuctl ... | head`: when the reader closes the pipe, iommuctl
    stops with exit 1 and no traceback, and its exit-time flush does not
    raise either."""
    r, w = os.pipe()
    os.close(r)                                  # the reader is gone before the first write
    try:
        out = subprocess.run([sys.executable, "-m", "iommuctl", "completion", "bash"],
                             stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert out.returncode == 1
    assert out.stderr == ""
