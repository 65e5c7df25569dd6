"""bench/shim_bench.c, the C side of bench/shim_bench.py, kept working: it
builds warning-free, and under the shim against a real daemon each of its
loops runs, answers "OPS SECONDS" and leaves the daemon as it found it."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest
from uapi_client import PATH_IOMMU, Process

if TYPE_CHECKING:
    from support import DaemonFactory, DaemonProcess
    from uapi_client import File

REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCE = REPO / "bench" / "shim_bench.c"
TIMEOUT = 60.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "IOMMUD_PRELOAD_SOCKET", "IOMMUD_PRELOAD_TIMEOUT")}


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build bench/shim_bench.c"
    out = tmp_path_factory.mktemp("shim-bench") / "shim_bench"
    proc = subprocess.run([gcc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
                           str(REPO / "clients" / "preload" / "examples"), str(SOURCE), "-o",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def d(module_daemon_factory: DaemonFactory) -> DaemonProcess:
    return module_daemon_factory(name="shim-bench")


def test_every_loop_runs_under_the_shim_and_leaves_nothing_behind(
        binary: pathlib.Path, d: DaemonProcess, tmp_path: pathlib.Path) -> None:
    launcher = shutil.which("iommud-preload")
    assert launcher, "iommud-preload is not installed"
    uapi = str(d.socket_path.parent / "iommud.uapi.sock")
    witness_proc = Process(uapi)
    try:
        check_loops(launcher, uapi, binary, d, witness_proc.open(PATH_IOMMU), tmp_path)
    finally:
        witness_proc.close()


def check_loops(launcher: str, uapi: str, binary: pathlib.Path, d: DaemonProcess, witness: File,
                tmp_path: pathlib.Path) -> None:
    with d.client() as c:
        before = c.info().daemon
    echo_sock = tmp_path / "echo.sock"
    echo = subprocess.Popen([binary, "serve-echo", str(echo_sock)], stdout=subprocess.PIPE,
                            text=True, env=_env())
    try:
        assert echo.stdout is not None and echo.stdout.readline() == "ready\n"
        commands = ["map_unmap 0.05", "iova_ranges 0.05", "api_version 0.05",
                    f"echo {echo_sock} 0.05"]
        proc = subprocess.run([launcher, "--endpoint", uapi, "--", binary, "loop"],
                              input="".join(f"{c}\n" for c in commands), capture_output=True,
                              text=True, env=_env(), timeout=TIMEOUT)
    finally:
        echo.kill()
        echo.wait()
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert lines[0] == "ready" and len(lines) == 1 + len(commands), proc.stdout
    answers = [(int(ops), float(took)) for ops, took in (line.split() for line in lines[1:])]
    for command, (ops, took) in zip(commands, answers, strict=True):
        assert ops > 0 and took >= 0.05, command
    assert answers[0][0] % 2 == 0   # MAP and UNMAP in pairs
    # Every map was unmapped; the program's iommufd and IOAS went at its exit.
    witness.describe()
    with d.client() as c:
        after = c.info().daemon
    assert (after.contexts, after.ioas, after.areas, after.mapped_bytes) == (
        before.contexts, before.ioas, before.areas, before.mapped_bytes)


def test_a_failing_ioctl_is_reported_with_its_errno_name(binary: pathlib.Path,
                                                          tmp_path: pathlib.Path) -> None:
    """Without a daemon the open of /dev/iommu fails: ENODEV, exit status 1."""
    launcher = shutil.which("iommud-preload")
    assert launcher, "iommud-preload is not installed"
    proc = subprocess.run([launcher, "--endpoint", str(tmp_path / "none.sock"), "--", binary,
                           "loop"], input="", capture_output=True, text=True, env=_env(),
                          timeout=TIMEOUT)
    assert (proc.returncode, proc.stdout) == (1, "FAIL open /dev/iommu ENODEV\n")
