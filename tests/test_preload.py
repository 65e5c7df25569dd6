"""The preload shim (clients/preload) against real daemons.

C programs are compiled at test time (gcc) and run under the installed
`iommud-preload` launcher, pointed at a daemon's raw uAPI socket:
examples/seed_flow.c walks the 2021 thread's two flows, and
tests/preload/uapi_probe.c runs small scenarios, printing one line per step,
"STEP RESULT ERRNO", on which these tests assert exact errno names.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from support import DaemonFactory, DaemonProcess

REPO = pathlib.Path(__file__).resolve().parents[1]
PRELOAD = REPO / "clients" / "preload"
EXAMPLES = PRELOAD / "examples"
PROBE_SRC = pathlib.Path(__file__).resolve().parent / "preload" / "uapi_probe.c"
RUN_TIMEOUT = 60.0
OK = "-"

# The embedded default topology's 1:1 groups (docs/topology.md), one per test
# that claims one, so that no test waits for another's release.
DEVICE_FLOW_DEVICE = "0000:03:00.0"
LEGACY_GROUP, LEGACY_DEVICE = 14, "0000:04:10.0"
WILD_GROUP = 13
FORK_GROUP = 15
DUP_GROUP = 16
FDARG_GROUP = 20
EXEC_GROUP, EXEC_DEVICE = 22, "0000:07:01.0"
DIRTY_DEVICE = "0000:03:00.0"   # dirty_tracking = true
INTERPOSED = {"open", "open64", "__open_2", "__open64_2", "openat", "openat64", "__openat_2",
              "__openat64_2", "ioctl", "read", "write", "pread", "pread64", "pwrite", "pwrite64",
              "opendir", "fopen", "fopen64", "mmap", "mmap64", "munmap"}


# -- building and running ------------------------------------------------------------

def _gcc(*args: str | os.PathLike[str]) -> None:
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the preload tests' C programs"
    proc = subprocess.run([gcc, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"gcc {' '.join(map(str, args))}:\n{proc.stderr}"


@pytest.fixture(scope="module")
def launcher() -> str:
    path = shutil.which("iommud-preload")
    assert path, "iommud-preload is not installed (README: pip install ... ./clients/preload)"
    return path


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    out = tmp_path_factory.mktemp("preload-bin")
    flags = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-I", EXAMPLES]
    built = {"seed_flow": EXAMPLES / "seed_flow.c", "probe": PROBE_SRC}
    for name, src in built.items():
        _gcc(*flags, src, "-o", out / name)
    return {name: out / name for name in built}


def uapi_socket(daemon: DaemonProcess) -> pathlib.Path:
    """The raw uAPI socket beside the daemon's gRPC socket (docs/uapi-transport.md)."""
    return daemon.socket_path.parent / "iommud.uapi.sock"


@pytest.fixture(scope="module")
def uapi_daemon(module_daemon_factory: DaemonFactory) -> DaemonProcess:
    daemon = module_daemon_factory(name="preload")
    assert uapi_socket(daemon).exists(), "the daemon serves no raw uAPI socket"
    return daemon


def preload_cmd(launcher: str, endpoint: pathlib.Path | str, *argv: str | os.PathLike[str],
                timeout: float | None = None) -> list[str]:
    cmd = [launcher, "--endpoint", str(endpoint)]
    if timeout is not None:
        cmd += ["--timeout", str(timeout)]
    return [*cmd, "--", *map(str, argv)]


def run(launcher: str, endpoint: pathlib.Path | str, *argv: str | os.PathLike[str],
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(preload_cmd(launcher, endpoint, *argv), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, env=_env())
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _env() -> dict[str, str]:
    """This environment without the shim's settings: each test sets its own."""
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "IOMMUD_PRELOAD_SOCKET", "IOMMUD_PRELOAD_TIMEOUT")}


def steps(stdout: str) -> dict[str, tuple[int, str]]:
    """The probe's "STEP RESULT ERRNO" lines; a step printed twice (two
    processes, or before and after exec) keeps its last value."""
    out: dict[str, tuple[int, str]] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = (int(parts[1]), parts[2])
    assert "ABORT" not in stdout, stdout
    return out


def probe(launcher: str, daemon_or_socket: DaemonProcess | pathlib.Path,
          programs: dict[str, pathlib.Path], *args: str | int) -> dict[str, tuple[int, str]]:
    sock = (daemon_or_socket if isinstance(daemon_or_socket, pathlib.Path)
            else uapi_socket(daemon_or_socket))
    proc = run(launcher, sock, programs["probe"], *map(str, args))
    return steps(proc.stdout)


def failed(errno_name: str) -> tuple[int, str]:
    return (-1, errno_name)


def cdev_number(daemon: DaemonProcess, name: str) -> int:
    """N of /dev/vfio/devices/vfioN for a device: at start the daemon numbers
    the devices on vfio-pci in PCI address order."""
    with daemon.client() as c, c.open_session("preload-test") as s:
        devices = sorted(d.name for d in s.list_devices() if d.driver == "vfio-pci")
    return devices.index(name)


# -- the library and the launcher ----------------------------------------------------

@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_library_builds_warning_free(tmp_path: pathlib.Path, opt: str) -> None:
    _gcc("-std=gnu11", opt, "-fPIC", "-shared", "-fvisibility=hidden", "-U_FORTIFY_SOURCE",
         "-Wall", "-Wextra", "-Werror", PRELOAD / "csrc" / "preload.c", "-o", tmp_path / "lib.so",
         "-ldl", "-pthread")


def test_installed_library_exports_only_the_interposed_symbols() -> None:
    from iommud_preload import library_path
    nm = subprocess.run(["nm", "-D", "--defined-only", str(library_path())], capture_output=True,
                        text=True, check=True)
    exported = {line.split()[-1] for line in nm.stdout.splitlines() if line.split()[1:2] == ["T"]}
    assert exported == INTERPOSED


def test_launcher_appends_to_ld_preload_and_sets_the_socket(launcher: str,
                                                             tmp_path: pathlib.Path) -> None:
    from iommud_preload import library_path
    other = tmp_path / "other.so"
    _gcc("-shared", "-fPIC", "-x", "c", "/dev/null", "-o", other)
    env = {**_env(), "LD_PRELOAD": str(other)}
    proc = subprocess.run([launcher, "--endpoint", "unix:rel/uapi.sock", "--timeout", "2.5", "--",
                           sys.executable, "-c",
                           "import os; print(os.environ['LD_PRELOAD']); "
                           "print(os.environ['IOMMUD_PRELOAD_SOCKET']); "
                           "print(os.environ['IOMMUD_PRELOAD_TIMEOUT'])"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{other}:{library_path()}", str(tmp_path / "rel" / "uapi.sock"),
                                        "2.5"]


def test_launcher_reports_a_missing_program(launcher: str) -> None:
    proc = subprocess.run([launcher, "--", "/nonexistent/program"], capture_output=True, text=True,
                          env=_env(), timeout=RUN_TIMEOUT)
    assert proc.returncode == 127
    assert "/nonexistent/program" in proc.stderr


# -- the seed thread's flows ---------------------------------------------------------

def test_device_centric_flow(launcher: str, programs: dict[str, pathlib.Path],
                             uapi_daemon: DaemonProcess) -> None:
    n = cdev_number(uapi_daemon, DEVICE_FLOW_DEVICE)
    # Twice: the second run binds the same device again, so the first run's
    # closes released it (the daemon saw EOF on every connection).
    for _ in range(2):
        proc = run(launcher, uapi_socket(uapi_daemon), programs["seed_flow"], "device", "--device",
                   str(n))
        assert "device-centric flow: ok" in proc.stdout
        assert "IOMMU_IOAS_MAP (fixed IOVA 0x100000)" in proc.stdout


def test_legacy_container_flow(launcher: str, programs: dict[str, pathlib.Path],
                               uapi_daemon: DaemonProcess) -> None:
    for _ in range(2):
        proc = run(launcher, uapi_socket(uapi_daemon), programs["seed_flow"], "legacy", "--group",
                   str(LEGACY_GROUP), "--name", LEGACY_DEVICE)
        assert "legacy flow: ok" in proc.stdout
        assert "VFIO_GROUP_GET_DEVICE_FD" in proc.stdout


# -- errors made in the shim ----------------------------------------------------------

def test_wild_pointers_give_efault(launcher: str, programs: dict[str, pathlib.Path],
                                   uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "wild", WILD_GROUP)
    for step in ("alloc_null", "alloc_wild", "alloc_kernel_address", "destroy_null", "alloc_prot_none",
                 "map_straddles_page", "alloc_read_only", "get_device_fd_wild",
                 "get_device_fd_prot_none", "get_device_fd_unterminated", "set_container_wild"):
        assert out[step] == failed("EFAULT"), step
    assert out["get_device_fd_too_long"] == failed("EINVAL")
    assert out["alloc_across_pages"] == out["alloc_size_across_pages"] == (1, OK)
    assert out["alloc_after"] == (1, OK)


def test_unknown_and_foreign_ioctls_give_enotty(launcher: str, programs: dict[str, pathlib.Path],
                                                uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "unknown")
    for step in ("nr_0x7f", "nr_0x9f_hole", "iowr_spelling", "group_status_on_iommufd", "tcgets",
                 "fionread"):
        assert out[step] == failed("ENOTTY"), step
    # FIOCLEX is the VFS's, for every file: it works on an emulated fd too.
    assert out["fioclex"] == (0, OK)
    assert out["fd_flags_after_fioclex"] == (1, OK)
    assert out["alloc_after"] == (1, OK)


def test_fd_arguments_are_answered_by_the_shim(launcher: str, programs: dict[str, pathlib.Path],
                                               uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "fdargs", FDARG_GROUP)
    assert out["set_container_closed_fd"] == failed("EBADF")
    assert out["set_container_pipe"] == failed("EBADFD")        # a real fd, but no container
    assert out["set_container_negative"] == failed("EBADF")
    assert out["set_container_through_dup"] == (0, OK)          # a copy names the same file
    assert out["group_status"] == (3, OK)                        # VIABLE | CONTAINER_SET


# -- bodies over 64 KiB, and daemon-made fds ----------------------------------------

def test_large_bodies_travel_in_memfds(launcher: str, programs: dict[str, pathlib.Path],
                                       uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "bigbody")
    assert out["allow_iovas"] == (0, OK)
    assert out["map_128k"] == (0, OK)
    assert out["map_128k_at_last_range"] == (1, OK)
    assert out["allow_iovas_wild_array"] == failed("EFAULT")
    out = probe(launcher, uapi_daemon, programs, "dirty", cdev_number(uapi_daemon, DIRTY_DEVICE))
    for step in ("hwpt_alloc_dirty", "dirty_tracking_on", "get_dirty_bitmap",
                 "get_dirty_bitmap_unaligned"):
        assert out[step] == (0, OK), step
    assert out["bitmap_kept"] == (1, OK)
    assert out["get_dirty_bitmap_wild"] == failed("EFAULT")


def test_fault_queue_fd_reads_and_writes_as_the_kernels(
        launcher: str, programs: dict[str, pathlib.Path], uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "fault")
    assert out["fault_queue_alloc"] == (0, OK)
    assert out["fault_fd_flags"] == (1, OK)                      # O_CLOEXEC, as the kernel's
    assert out["read_zero"] == (0, OK)                           # an empty queue reads 0
    assert out["read_one_byte"] == failed("ESPIPE")              # not whole iommu_hwpt_pgfaults
    assert out["read_two_records_empty"] == (0, OK)              # never waits
    assert out["write_partial_response"] == failed("ESPIPE")
    assert out["write_unknown_cookie"] == failed("EINVAL")       # no fault is waiting for it
    assert out["write_wild"] == failed("EFAULT")
    assert out["write_zero"] == (0, OK)
    assert out["poll_empty"] == (0, OK)
    assert out["ioctl_on_fault_fd"] == failed("ENOTTY")
    assert out["close_fault_fd"] == (0, OK)
    assert out["alloc_after"][1] == OK


# -- fork, dup, exec --------------------------------------------------------------------

def test_fork_child_uses_inherited_fds_and_files_outlive_its_close(
        launcher: str, programs: dict[str, pathlib.Path], uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "fork", FORK_GROUP)
    assert out["parent_alloc"] == (1, OK)
    assert out["child_alloc"] == (2, OK)          # the parent's context: ids go on from 1
    assert out["child_group_status"][1] == OK
    assert out["child_exit"] == (0, OK)
    assert out["parent_alloc_after_child"] == (3, OK)
    assert out["parent_destroy_child_ioas"] == (0, OK)
    assert out["parent_group_status"][1] == OK
    assert out["reopen_group_while_open"] == failed("EBUSY")
    assert out["reopen_group_after_close"][1] == OK


def test_dup_copies_share_the_file_until_the_last_close(
        launcher: str, programs: dict[str, pathlib.Path], uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "dup", DUP_GROUP)
    assert out["alloc"] == (1, OK)
    assert out["close_original"] == (0, OK)
    assert out["alloc_through_dup"] == (2, OK)
    for step in ("status_through_dup2", "status_through_dup3", "status_through_f_dupfd",
                 "status_through_last_copy"):
        assert out[step][1] == OK, step
    assert out["reopen_group_while_copies_open"] == failed("EBUSY")
    assert out["reopen_group_after_last_close"][1] == OK


def test_exec_keeps_an_fd_without_cloexec(launcher: str, programs: dict[str, pathlib.Path],
                                          uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "exec", "keep")
    assert out["fd_flags_before_exec"] == (0, OK)
    assert out["alloc_before_exec"] == (1, OK)
    assert out["fd_flags_after_exec"] == (0, OK)
    # The new image recognises the inherited connection (peer address, then
    # DESCRIBE) and it is the same file: the ids go on.
    assert out["alloc_after_exec"] == (2, OK)
    assert out["alloc_after_exec_again"] == (3, OK)


def test_exec_closes_a_cloexec_fd(launcher: str, programs: dict[str, pathlib.Path],
                                  uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "exec", "cloexec")
    assert out["fd_flags_before_exec"] == (1, OK)
    assert out["alloc_before_exec"] == (1, OK)
    assert out["fd_flags_after_exec"] == failed("EBADF")
    assert out["alloc_after_exec"] == failed("EBADF")


def test_exec_keeps_a_device_fd_the_daemon_made(launcher: str, programs: dict[str, pathlib.Path],
                                                uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "exec-device", EXEC_GROUP, EXEC_DEVICE)
    assert out["device_fd_flags"] == (1, OK)                 # GET_DEVICE_FD's fd is O_CLOEXEC
    assert out["device_info_before_exec"] == (9, OK)         # vfio-pci's 9 regions
    # No peer address (a socketpair the daemon made), but the daemon as its
    # peer process: recognised, then DESCRIBE says it is a group's device fd.
    assert out["device_info_after_exec"] == (9, OK)
    assert out["iommufd_ioctl_on_device_after_exec"] == failed("ENOTTY")


def test_threads_share_a_connection(launcher: str, programs: dict[str, pathlib.Path],
                                    uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "threads")
    assert out["errors"] == (0, OK)
    assert out["alloc_after"] == (1, OK)
    assert out["churn_errors"] == (0, OK)
    assert out["alloc_after_churn"] == (2, OK)


def test_signals_never_make_an_ioctl_fail_with_eintr(
        launcher: str, programs: dict[str, pathlib.Path], uapi_daemon: DaemonProcess) -> None:
    out = probe(launcher, uapi_daemon, programs, "signals")
    assert out["signals_delivered"] == (1, OK)
    assert out["errors"] == (0, OK)
    assert out["eintr"] == (0, OK)


@pytest.mark.skipif(pathlib.Path("/run/iommud/iommud.uapi.sock").exists(),
                    reason="a daemon serves /run/iommud, which the shim tries first")
def test_socket_found_under_xdg_runtime_dir(launcher: str, programs: dict[str, pathlib.Path],
                                            uapi_daemon: DaemonProcess,
                                            tmp_path: pathlib.Path) -> None:
    (tmp_path / "iommud").mkdir()
    (tmp_path / "iommud" / "iommud.uapi.sock").symlink_to(uapi_socket(uapi_daemon))
    proc = subprocess.run([launcher, "--", programs["probe"], "exec", "keep"], capture_output=True,
                          text=True, timeout=RUN_TIMEOUT,
                          env={**_env(), "XDG_RUNTIME_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    out = steps(proc.stdout)
    # The exec'd image recognises its inherited fd through the same lookup.
    assert out["alloc_before_exec"] == (1, OK)
    assert out["alloc_after_exec"] == (2, OK)


# -- the daemon absent, gone or stuck ------------------------------------------------

def test_no_daemon_opens_fail_with_enodev(launcher: str, programs: dict[str, pathlib.Path],
                                          tmp_path: pathlib.Path) -> None:
    out = probe(launcher, tmp_path / "absent.uapi.sock", programs, "nodaemon")
    assert out == {step: failed("ENODEV") for step in
                   ("open_iommu", "open_container", "open_group", "open_device")}


def _outage(launcher: str, programs: dict[str, pathlib.Path], daemon: DaemonProcess,
            act: signal.Signals, timeout: float | None) -> dict[str, tuple[int, str]]:
    """Start the probe's outage scenario, `act` on the daemon between its two
    ioctls, and return its steps."""
    proc = subprocess.Popen(preload_cmd(launcher, uapi_socket(daemon), programs["probe"], "outage",
                                        timeout=timeout),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    try:
        assert proc.stdout is not None and proc.stdin is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "ready":
                break
        else:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the probe did not get ready: {''.join(lines)}{err}")
        os.kill(daemon.proc.pid, act)
        if act is signal.SIGKILL:
            daemon.proc.wait(RUN_TIMEOUT)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if act is signal.SIGSTOP:
            os.kill(daemon.proc.pid, signal.SIGCONT)
    assert proc.returncode == 0, err
    result = steps("".join(lines) + out)
    assert result["alloc_before"] == (1, OK)
    return result


def test_daemon_killed_mid_run_gives_eio(launcher: str, programs: dict[str, pathlib.Path],
                                         daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(name="killed")
    out = _outage(launcher, programs, daemon, signal.SIGKILL, timeout=None)
    assert out["alloc_during"] == failed("EIO")
    assert out["elapsed_ms"][0] < 2000            # at once, not after the 25 s timeout
    assert out["open_during"] == failed("ENODEV")


def test_daemon_not_answering_gives_etimedout(launcher: str, programs: dict[str, pathlib.Path],
                                              daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(name="stopped")
    t0 = time.monotonic()
    out = _outage(launcher, programs, daemon, signal.SIGSTOP, timeout=1.0)
    assert out["alloc_during"] == failed("ETIMEDOUT")
    assert 900 <= out["elapsed_ms"][0] < 5000
    assert out["open_during"] == failed("ETIMEDOUT")
    assert time.monotonic() - t0 < RUN_TIMEOUT


# -- what is not ours --------------------------------------------------------------------

def test_foreign_paths_and_fds_pass_through(launcher: str, programs: dict[str, pathlib.Path],
                                            uapi_daemon: DaemonProcess,
                                            tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    data.write_text("abc")
    out = probe(launcher, uapi_daemon, programs, "passthrough", data)
    assert out["open_file"][1] == OK
    assert out["semicolon_ioctl_on_file"] == failed("ENOTTY")   # the kernel's answer
    assert out["struct_untouched"] == (1, OK)
    assert out["read_file"] == (3, OK)
    assert out["semicolon_ioctl_on_socket"] == failed("ENOTTY")
    assert out["peer_received_nothing"] == failed("EAGAIN")     # nothing was sent on it
    assert out["read_socket_zero_length"] == (0, OK)
    assert out["open_dev_null"][1] == OK
    assert out["openat_dev_null"][1] == OK
    assert out["open_vfio_noiommu"] == failed("ENOENT")
    assert out["open_vfio_leading_zero"] == failed("ENOENT")
    assert out["fopen_dev_null"] == (0, OK)
    assert out["fionread_pipe"] == (0, OK)
    assert out["fionread_value"] == (2, OK)


# -- what the upstream selftest needs (tests/preload/selftest_probe.c) ---------------------

@pytest.fixture(scope="module")
def selftest_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("selftest-bin") / "selftest_probe"
    _gcc("-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-I", EXAMPLES,
         PROBE_SRC.parent / "selftest_probe.c", "-o", out)
    return out


@pytest.fixture(scope="module")
def selftest_daemon(module_daemon_factory: DaemonFactory) -> DaemonProcess:
    return module_daemon_factory("--debug-selftest", "1", name="preload-selftest")


def test_selftest_access_fd_and_access_rw_through_the_shim(
        launcher: str, selftest_probe: pathlib.Path, selftest_daemon: DaemonProcess) -> None:
    """CREATE_ACCESS's fd is a real O_CLOEXEC socket the shim installed;
    ACCESS_RW's COPY items move bytes inside the process; an access op on any
    other fd is EBADFD (iommufd_access_get); close() releases the access."""
    out = steps(run(launcher, uapi_socket(selftest_daemon), selftest_probe, "access").stdout)
    for ok_step in ("create_access", "access_fd_is_socket", "access_fd_cloexec",
                    "access_fd_not_the_iommufd", "rw_read", "rw_read_bytes", "rw_write",
                    "rw_write_bytes", "close_access"):
        assert out[ok_step] == (0, OK), ok_step
    assert out["rw_bad_buffer"] == failed("EFAULT")
    assert out["rw_hole"] == failed("ENOENT")
    assert out["rw_iommufd_as_access"] == failed("EBADFD")
    assert out["rw_real_fd"] == failed("EBADFD")
    assert out["access_fd_ioctl"] == failed("ENOTTY")
    assert out["rw_closed_fd"] == failed("EBADFD")


def test_map_of_a_user_range_with_a_hole_is_efault_with_a_domain(
        launcher: str, selftest_probe: pathlib.Path, selftest_daemon: DaemonProcess) -> None:
    """iopt_map_user_pages pins at once for an IOAS with a domain: the shim
    finds the hole (msync), the daemon answers EFAULT after the IOVA checks,
    and a map into an IOAS without a domain pins nothing and succeeds."""
    out = steps(run(launcher, uapi_socket(selftest_daemon), selftest_probe, "map_hole").stdout)
    assert out["map_whole"] == (0, OK)
    assert out["map_tail_hole"] == failed("EFAULT")
    assert out["map_head_ok"] == (0, OK)          # the failed map left nothing at its IOVA
    assert out["map_all_hole"] == failed("EFAULT")
    assert out["map_no_domain"] == (0, OK)
    assert out["map_hole_overlap"] == failed("EEXIST")


def test_map_file_of_a_memfd_through_the_shim(
        launcher: str, selftest_probe: pathlib.Path, selftest_daemon: DaemonProcess) -> None:
    """IOAS_MAP_FILE: the shim passes the memfd with SCM_RIGHTS and the
    daemon holds the file while it is mapped (the caller's close changes
    nothing); MD_CHECK_MAP and MD_CHECK_REFS find the file's pages behind
    the process's mmap of it (NEED BACKING, from /proc/self/maps), not
    behind anonymous memory; /proc/self/status shows the pinned pages in
    VmPin with IOMMUD_PRELOAD_PROC_STATUS=1."""
    env = {**_env(), "IOMMUD_PRELOAD_PROC_STATUS": "1"}
    proc = subprocess.run(preload_cmd(launcher, uapi_socket(selftest_daemon), selftest_probe,
                                      "map_file"),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    out = steps(proc.stdout)
    for ok_step in ("map_file", "iova_in_aperture", "close_memfd", "check_map_mmap",
                    "check_refs_pinned", "check_refs_unpinned", "change_process", "unmap",
                    "check_refs_after", "vm_pin_after_kb"):
        assert out[ok_step][0] >= 0 and out[ok_step][1] == OK, (ok_step, out[ok_step])
    assert out["check_map_other_pages"] == failed("EINVAL")
    assert out["check_map_anon"] == failed("EINVAL")
    assert out["map_file_ebadf"] == failed("EBADF")
    assert out["map_file_iommufd"] == failed("EINVAL")
    assert out["vm_pin_added_kb"] == (2 * os.sysconf("SC_PAGESIZE") // 1024, OK)
    assert out["vm_pin_after_kb"] == (0, OK)


def test_io_page_faults_through_the_shims_fault_fd(
        launcher: str, selftest_probe: pathlib.Path, selftest_daemon: DaemonProcess) -> None:
    """The fault fd FAULT_QUEUE_ALLOC hands over: a fault TRIGGER_IOPF raises
    on a fault-capable HWPT makes it readable (the daemon's doorbell), read()
    takes the record from the daemon (a READ record), write() answers it (a
    WRITE record: EINVAL once answered), and poll() follows the queue."""
    out = steps(run(launcher, uapi_socket(selftest_daemon), selftest_probe, "iopf").stdout)
    assert out["poll_before"] == (0, OK)
    assert out["trigger_iopf"] == (0, OK)
    assert out["poll_readable"] == (1, OK)
    assert out["read_short"] == failed("ESPIPE")
    assert out["read"] == (40, OK)
    assert out["record_dev_id"] == (0, OK)
    assert out["record_addr"] == (0, OK)
    assert out["poll_after_read"] == (0, OK)
    assert out["respond"] == (8, OK)
    assert out["respond_again"] == failed("EINVAL")
    assert out["read_empty"] == (0, OK)
    assert out["close_fault_fd"] == (0, OK)


@pytest.fixture(scope="module")
def failnth_daemon(module_daemon_factory: DaemonFactory) -> DaemonProcess:
    return module_daemon_factory("--debug-selftest", "1", "--debug-fail-nth", "1",
                                 name="preload-failnth")


def fail_nth_run(launcher: str, daemon: DaemonProcess, probe_bin: pathlib.Path,
                 debugfs: pathlib.Path) -> dict[str, tuple[int, str]]:
    env = {**_env(), "IOMMUD_PRELOAD_FAIL_NTH": "1", "IOMMUD_PRELOAD_DEBUGFS": str(debugfs)}
    proc = subprocess.run(preload_cmd(launcher, uapi_socket(daemon), probe_bin, "fail_nth"),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return steps(proc.stdout)


def test_fail_nth_file_arms_the_daemons_walk(launcher: str, selftest_probe: pathlib.Path,
                                             failnth_daemon: DaemonProcess,
                                             tmp_path: pathlib.Path) -> None:
    """With IOMMUD_PRELOAD_FAIL_NTH=1 the task's /proc/self/task/T/fail-nth is
    the shim's: N written arms the N-th step of the daemon's walk over the
    task's ioctls (failnth.py), and it reads back what is left, 0 once the
    failure was injected, as the kernel's file does. opendir of
    /sys/kernel/debug opens IOMMUD_PRELOAD_DEBUGFS."""
    (tmp_path / "failslab").mkdir()
    out = fail_nth_run(launcher, failnth_daemon, selftest_probe, tmp_path)
    assert out["debugfs_failslab"] == (0, OK)
    assert out["nth_initial"] == (0, OK)
    assert out["write_junk"] == failed("EINVAL")
    assert out["write_empty"] == failed("EINVAL")
    assert out["write_negative"] == failed("EINVAL")
    assert out["write_huge"] == failed("ERANGE")
    assert out["read_bad_buffer"] == failed("EFAULT")
    assert out["ioctl_on_fail_nth"] == failed("ENOTTY")
    assert out["arm_1"] == (2, OK)
    assert out["ioas_alloc_fails"] == failed("ENOMEM")       # the injected failure
    assert out["nth_after_injection"] == (0, OK)
    assert out["ioas_alloc_disarmed"] == (0, OK)
    assert out["arm_100"] == (3, OK)
    assert out["ioas_alloc_counts"] == (0, OK)
    assert out["nth_left"] == (99, OK)                        # one step: the object id
    assert out["read_from_position"] == (3, OK)               # "99\n"
    assert out["read_at_end"] == (0, OK)
    assert out["disarm"] == (1, OK)
    assert out["nth_disarmed"] == (0, OK)
    assert out["ioas_alloc_after"] == (0, OK)


def test_fail_nth_needs_a_daemon_with_injection(launcher: str, selftest_probe: pathlib.Path,
                                                selftest_daemon: DaemonProcess,
                                                tmp_path: pathlib.Path) -> None:
    """An armed ioctl to a daemon without debug_fail_nth is EPERM, as an
    iommud-fail-nth call is: nobody makes a production daemon fail."""
    out = fail_nth_run(launcher, selftest_daemon, selftest_probe, tmp_path)
    assert out["ioas_alloc_fails"] == failed("EPERM")
    assert out["nth_after_injection"] == (1, OK)              # nothing was counted
    assert out["ioas_alloc_disarmed"] == failed("EPERM")


def test_viommu_mmap_and_veventq_through_the_shim(
        launcher: str, selftest_probe: pathlib.Path, selftest_daemon: DaemonProcess) -> None:
    """mmap() of the iommufd maps exactly the vIOMMU's region
    (iommufd_fops_mmap), holding the vIOMMU until munmap(); the vEVENTQ fd's
    read() follows iommufd_veventq_fops_read, and poll() is readable exactly
    while its queue has records (the daemon's doorbells)."""
    out = steps(run(launcher, uapi_socket(selftest_daemon), selftest_probe, "viommu").stdout)
    for ok_step in ("out_data", "mmap", "region_word", "munmap", "destroy_unmapped",
                    "read_empty", "readable_empty", "trigger", "record", "readable_drained",
                    "lost_header", "close_veventq", "destroy_veventq"):
        assert out[ok_step] == (0, OK), ok_step
    assert out["mmap_other_offset"] == failed("ENXIO")
    assert out["mmap_half"] == failed("ENXIO")
    assert out["mmap_private"] == failed("EINVAL")
    assert out["mmap_exec"] == failed("EPERM")
    assert out["destroy_mapped"] == failed("EBUSY")
    assert out["read_short"] == failed("EINVAL")
    assert out["readable_one"] == (1, OK)
    assert out["read_header_only"] == failed("EINVAL")
    assert out["readable_still"] == (1, OK)
    assert out["read_one"] == (12, OK)
    assert out["read_lost"] == (32, OK)      # two events and the lost-events header
    assert out["ioctl_veventq"] == failed("ENOTTY")
    assert out["pread_veventq"] == failed("ESPIPE")
    assert out["destroy_open_veventq"] == failed("EBUSY")
