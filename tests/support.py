"""Helpers shared by every test module (pytest puts tests/ on sys.path, so
`from support import raises_errno` works from any of them).

- `raises_errno(fn, "EEXIST")`: the one way a test asserts a failed call.
- `DaemonProcess` / `DaemonFactory`: a real `python -m iommud` subprocess on a
  private UNIX socket, as a user would start it. Tests get them through the
  `daemon_factory`, `module_daemon_factory` and `daemon` fixtures of
  conftest.py, which stop every daemon they started.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from iommud_client import Client, IommudError
from iommud_wire import errnos

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable, Iterator, Mapping

START_TIMEOUT = 30.0
#: The service whose health the daemon sets last, right before it logs its
#: "serving" event without yielding in between: once a client sees it SERVING,
#: the event is in the log (the "" service is SERVING from the start).
SERVICE_NAME = "iommud.v1.IommuService"
LOG_TAIL_LINES = 40


# -- errno assertions ------------------------------------------------------------------

def raises_errno(fn: Callable[[], object], errno_name: str) -> IommudError:
    """Call `fn`, assert that it fails with exactly `errno_name`, and return
    the error for further checks (its metadata, message or gRPC code).

    A raw `grpc.RpcError` (from a hand-made channel call) is read as the
    client library would read it. The errno number the daemon sent must be
    the one the name stands for, so a misspelt name cannot pass either.
    """
    __tracebackhide__ = True
    number = errnos.number_of(errno_name)
    assert number is not None, f"{errno_name!r} is not an errno name"
    try:
        result = fn()
    except IommudError as exc:
        err = exc
    except grpc.RpcError as exc:
        err = IommudError.from_rpc_error(exc)
    else:
        pytest.fail(f"expected {errno_name}, but the call returned {_short(result)}")
    assert err.errno_name == errno_name, f"expected {errno_name}, got {err}"
    assert err.errno == number, f"{errno_name} carried errno {err.errno}, not {number}"
    return err


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- daemons -----------------------------------------------------------------------------

def daemon_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without IOMMUD_* settings, plus `env`."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
    out.update(env or {})
    return out


class DaemonProcess:
    """A daemon subprocess: its Popen, socket, log file and JSON log events."""

    def __init__(self, proc: subprocess.Popen, socket_path: pathlib.Path,
                 log_path: pathlib.Path, name: str = "iommud") -> None:
        self.proc = proc
        self.socket_path = socket_path
        self.log_path = log_path
        self.name = name
        self.endpoint = f"unix:{socket_path}"

    def client(self, **kw) -> Client:
        return Client(self.endpoint, **kw)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return "\n".join(self.log_lines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def events(self, event: str | None = None) -> list[dict]:
        """The JSON log events, in order; only those named `event` if given."""
        out = []
        for line in self.log_lines():
            if not line.startswith("{"):
                continue          # a traceback or a plain message on stderr
            record = json.loads(line)
            if event is None or record.get("event") == event:
                out.append(record)
        return out

    @property
    def tcp_endpoint(self) -> str:
        """The host:port of the --tcp listener, as the "serving" event names it."""
        serving = self.events("serving")[0]
        return next(e for e in serving["endpoints"] if not e.startswith("unix:"))

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (SIGKILL after `timeout`) and reap; returns the exit status.
        A no-op returning the status if the daemon already exited."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_serving(daemon: DaemonProcess, timeout: float = START_TIMEOUT) -> None:
    """Block until the daemon reports SERVING on its health Watch stream.

    No polling: the Watch call waits for the socket (wait_for_ready), and a
    helper thread cancels it the moment the process exits (its pidfd turns
    readable), so an early exit is reported at once with the log's tail.
    """
    pidfd = os.pidfd_open(daemon.proc.pid)
    done_r, done_w = os.pipe()
    # Reconnect quickly while the daemon creates its socket (the default
    # backoff starts at 1 s and would add up to seconds to every start).
    options = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
               ("grpc.max_reconnect_backoff_ms", 250)]
    try:
        with grpc.insecure_channel(daemon.endpoint, options=options) as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout,
                wait_for_ready=True)

            def cancel_on_exit() -> None:
                readable, _, _ = select.select([pidfd, done_r], [], [])
                if pidfd in readable:
                    call.cancel()

            watcher = threading.Thread(target=cancel_on_exit, daemon=True)
            watcher.start()
            try:
                for resp in call:
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            except grpc.RpcError as exc:
                if daemon.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited early with {daemon.proc.returncode}; "
                                       f"log tail:\n{daemon.log_tail()}") from None
                if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise TimeoutError(f"daemon at {daemon.endpoint} not serving after "
                                       f"{timeout}s; log tail:\n{daemon.log_tail()}") from None
                raise
            finally:
                call.cancel()
                os.write(done_w, b"x")
                watcher.join()
            raise RuntimeError(f"health stream of {daemon.endpoint} ended before SERVING")
    finally:
        for fd in (pidfd, done_r, done_w):
            os.close(fd)


def start_daemon(workdir: pathlib.Path, *args: str, env: Mapping[str, str] | None = None,
                 name: str = "iommud") -> DaemonProcess:
    """Start `python -m iommud` on workdir/iommud.sock, logging JSON to
    workdir/iommud.log, and return once it is serving."""
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "iommud.sock"
    log_path = workdir / "iommud.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iommud", "--socket", str(sock), "--log-format", "json",
             *args], stdout=log, stderr=subprocess.STDOUT, env=daemon_env(env), cwd=workdir)
    daemon = DaemonProcess(proc, sock, log_path, name)
    try:
        wait_serving(daemon)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def run_daemon(*args: str, env: Mapping[str, str] | None = None,
               timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m iommud *args` to its exit and capture its output: for
    start-up refusals, --print-config and --background."""
    return subprocess.run([sys.executable, "-m", "iommud", *args], capture_output=True,
                          text=True, timeout=timeout, env=daemon_env(env))


class DaemonFactory:
    """Starts daemons and remembers them, so that whoever owns the factory
    (a fixture) stops every one of them, and a failing test shows their logs."""

    def __init__(self, new_workdir: Callable[[str], pathlib.Path]) -> None:
        self._new_workdir = new_workdir
        self.started: list[DaemonProcess] = []

    def __call__(self, *args: str, env: Mapping[str, str] | None = None, name: str = "iommud",
                 workdir: pathlib.Path | None = None) -> DaemonProcess:
        """Start a daemon with these command-line flags and extra environment,
        in `workdir` (default: a fresh directory named after `name`)."""
        daemon = start_daemon(workdir if workdir is not None else self._new_workdir(name),
                              *args, env=env, name=name)
        self.started.append(daemon)
        return daemon

    def __iter__(self) -> Iterator[DaemonProcess]:
        return iter(self.started)

    def stop_all(self) -> None:
        for daemon in reversed(self.started):
            daemon.stop()
