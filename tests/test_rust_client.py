"""The Rust client crate (clients/rust/iommud-client) against real daemons.

The crate is built with cargo (its own Cargo.lock, --locked, two jobs) into a
target directory outside the repository that later runs reuse:
$IOMMUD_RUST_CLIENT_TARGET, else ~/.cache/iommud/rust-client-target. Its
checks run here, in that same target directory so that they reuse the build:
`cargo fmt --check`, `cargo clippy -D warnings` and its unit tests.

Its two examples are the client at work: `demo` walks the typed layer
(session and keepalive, IOAS map/translate/batch, a device on a
dirty-tracking HWPT and the 8 MiB dirty bitmap of 256 GiB, the legacy
container, errors by errno name), and `lease` exercises the keepalive: a kept
session outlives a jump of the lease clock while a bare one is reaped, and a
daemon restart with the journal is ridden out.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from support import DaemonFactory, DaemonProcess

REPO = pathlib.Path(__file__).resolve().parents[1]
CRATE = REPO / "clients" / "rust" / "iommud-client"
BUILD_TIMEOUT = 900.0
RUN_TIMEOUT = 60.0


def _target() -> pathlib.Path:
    return pathlib.Path(os.environ.get("IOMMUD_RUST_CLIENT_TARGET")
                        or pathlib.Path.home() / ".cache" / "iommud" / "rust-client-target")


def cargo(*args: str, timeout: float = BUILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run `cargo ARGS` on the crate, in its cached target directory."""
    exe = shutil.which("cargo")
    assert exe, "cargo is needed to build clients/rust/iommud-client"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
    env.update(CARGO_TARGET_DIR=str(_target()), CARGO_TERM_COLOR="never")
    return subprocess.run([exe, *args], cwd=CRATE, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def client_env(endpoint: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
    if endpoint is not None:
        env["IOMMUD_ENDPOINT"] = endpoint
    return env


@pytest.fixture(scope="module")
def examples() -> dict[str, pathlib.Path]:
    proc = cargo("build", "--locked", "--quiet", "--jobs", "2", "--examples")
    assert proc.returncode == 0, f"cargo build of {CRATE}:\n{proc.stderr}"
    built = {name: _target() / "debug" / "examples" / name for name in ("demo", "lease")}
    for path in built.values():
        assert path.is_file(), path
    return built


def run(binary: pathlib.Path, *args: str, endpoint: str | None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True,
                          env=client_env(endpoint), timeout=RUN_TIMEOUT, check=False)


# -- the crate's own checks ------------------------------------------------------------------

def test_the_crate_is_formatted() -> None:
    proc = cargo("fmt", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_clippy_finds_nothing(examples: dict[str, pathlib.Path]) -> None:
    proc = cargo("clippy", "--locked", "--quiet", "--jobs", "2", "--all-targets", "--", "-D",
                 "warnings")
    assert proc.returncode == 0, proc.stderr


def test_the_unit_tests_pass(examples: dict[str, pathlib.Path]) -> None:
    proc = cargo("test", "--locked", "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test result: ok. 11 passed; 0 failed" in proc.stdout, proc.stdout


# -- the demo ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def d(module_daemon_factory: DaemonFactory) -> DaemonProcess:
    """A daemon with the default topology and limits."""
    return module_daemon_factory(name="rust-client")


DEMO = [
    "connected: {endpoint}",
    "limits: max_message_bytes 0x1000000, max_translate_batch 0x40000",
    "session: lease 30 s, keepalive connected",
    "context: iommufd 3",
    "ioas: 1",
    "map: iova 0x100000 length 0x200000",
    "map: iova 0x10000 length 0x10000 (the daemon's choice)",
    "translate: 0x180123 -> 0x7f0000080123 rw",
    "map again: EEXIST (errno 17, AlreadyExists)",
    "translate unmapped: ENOENT (errno 2, NotFound)",
    # 2^18 addresses, the daemon's largest batch: a 2.25 MiB reply.
    "translate batch: 0x40000 iovas, 0x40000 mapped, reply 0x240000 bytes",
    "translate batch: first 0x7f0000000000 rw",
    "areas: 0x10000+0x10000 r-, 0x100000+0x200000 rw",
    "device: 0000:03:00.0 open as fd 4",
    "device: bound as dev id 2",
    "map: guest RAM at iova 0x100000000, 256 GiB",
    "device: attached to hwpt 3 (rid on 3), bound true",
    "device: DMA write at 0x100005008: ok true, pa 0x40000005008",
    # 256 GiB at 4 KiB a bit is an 8 MiB reply: the crate's raised limit takes
    # it, tonic's default 4 MiB does not. The write dirtied its 1 GiB IO page.
    "dirty bitmap: 0x800000 bytes, 0x40000 pages dirty (0x0..=0x3ffff)",
    "dirty bitmap, tonic's default limit: EIO (errno 5, OutOfRange) (transport: true)",
    "destroy ioas: EBUSY (errno 16, FailedPrecondition)",
    "device: detached and closed, hwpt 3 destroyed",
    "unmap: 0x200000 bytes",
    "unmap again: ENOENT (errno 2, NotFound)",
    "unmap all: 0x4000010000 bytes",
    "context: closed, 0 objects destroyed",
    "legacy: container fd 3, api version 0, TYPE1v2 1",
    "legacy: group 13 fd 4, viable true",
    "legacy: in the container (status 0x3), TYPE1v2 set",
    "legacy: device 0000:03:00.1 fd 5",
    "legacy: map_dma again: EEXIST (errno 17, AlreadyExists)",
    "legacy: unmap_dma 0x100000 bytes",
    "legacy: closed",
    "bogus token: ESRCH (errno 3, Unauthenticated)",
    "session: closed, 0 fds",
    "demo: ok",
]


def counts(daemon: DaemonProcess) -> tuple[int, ...]:
    with daemon.client() as c:
        n = c.info().daemon
        return (n.sessions, n.contexts, n.objects, n.ioas, n.areas, n.mapped_bytes, n.hwpts,
                n.devices, n.device_fds)


def test_the_demo_walks_the_api_against_a_daemon(examples: dict[str, pathlib.Path],
                                                  d: DaemonProcess) -> None:
    before = counts(d)
    proc = run(examples["demo"], endpoint=d.endpoint)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [line.format(endpoint=d.endpoint) for line in DEMO]
    assert counts(d) == before      # everything it opened is closed again


def test_a_bare_socket_path_is_an_endpoint_too(examples: dict[str, pathlib.Path],
                                               d: DaemonProcess) -> None:
    proc = run(examples["demo"], "--endpoint", str(d.socket_path), endpoint=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert (lines[0], lines[-1]) == (f"connected: unix:{d.socket_path}", "demo: ok")


def test_no_daemon_is_a_transport_eio(examples: dict[str, pathlib.Path],
                                      tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "none.sock"
    proc = run(examples["demo"], endpoint=f"unix:{missing}")
    assert proc.returncode == 1
    [line] = proc.stdout.splitlines()
    assert line.startswith(f"demo: failed: EIO: transport error: cannot connect to unix:{missing}: ")
    assert line.endswith("(errno 5, transport: true)")


def test_an_https_endpoint_is_refused_before_any_io(examples: dict[str, pathlib.Path]) -> None:
    proc = run(examples["demo"], endpoint="https://127.0.0.1:1")
    assert proc.returncode == 1
    [line] = proc.stdout.splitlines()
    assert line.startswith('demo: failed: EINVAL: endpoint "https://127.0.0.1:1": TLS is not supported')


# -- the keepalive -----------------------------------------------------------------------------

def test_a_kept_session_outlives_the_clock_and_a_bare_one_is_reaped(
        examples: dict[str, pathlib.Path], daemon_factory: DaemonFactory) -> None:
    """A 1 s lease and the debug clock: an hour passes at once; the session
    whose keeper holds a WatchSession stream open survives, the bare one is
    ESRCH; closing the kept session behind its keeper's back stops the keeper
    for good on ESRCH."""
    short = daemon_factory("--lease-seconds", "1", "--reap-interval", "0.1",
                                  "--debug-clock", "1", name="rust-short-lease")
    proc = run(examples["lease"], "idle", endpoint=short.endpoint)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "kept: keepalive connected true",
        "bare: keepalive None",
        "clock: +3600 s, 1 reaped",
        "bare: ESRCH (errno 3)",
        "kept: translate 0x1000 -> 0x7f0000000000",
        "kept: keeper stopped: SessionGone, last error ESRCH (errno 3)",
        "lease idle: ok",
    ]


def test_the_keeper_rides_out_a_journaled_restart(examples: dict[str, pathlib.Path],
                                                  daemon_factory: DaemonFactory,
                                                  tmp_path: pathlib.Path) -> None:
    """The daemon stops and comes back with its journal while the client
    waits: the keeper reopens its stream on the new daemon, and the session,
    its context and its mapping are all there."""
    flags = ("--journal", str(tmp_path / "journal.db"), "--lease-seconds", "2",
             "--reap-interval", "0.1")
    first = daemon_factory(*flags, name="rust-journaled")
    child = subprocess.Popen([str(examples["lease"]), "restart"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=client_env(first.endpoint))
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready: keepalive connected true\n"
        first.stop()
        daemon_factory(*flags, name="rust-journaled", workdir=first.socket_path.parent)
        out, err = child.communicate("go\n", timeout=RUN_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, out + err
    lines = out.splitlines()
    streams = next(int(line.split()[1]) for line in lines if line.startswith("streams: "))
    assert streams >= 2
    assert [line for line in lines if not line.startswith("streams: ")] == [
        "reopened: connected, running true",
        "session: translate 0x180000 -> 0x7f0000080000",
        "session: closed, 1 fds",
        "lease restart: ok",
    ]
