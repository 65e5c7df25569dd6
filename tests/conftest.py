"""Shared fixtures: a real iommud daemon on a private UNIX socket.

Each daemon is a subprocess started exactly as a user would (`python -m
iommud`), and the fixture waits on the gRPC health service (a bounded poll,
not a fixed sleep) before handing out the endpoint.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from iommud_client import Client

START_TIMEOUT = 30.0


class DaemonProcess:
    def __init__(self, proc: subprocess.Popen, socket_path: pathlib.Path,
                 log_path: pathlib.Path) -> None:
        self.proc = proc
        self.socket_path = socket_path
        self.log_path = log_path
        self.endpoint = f"unix:{socket_path}"

    def client(self, **kw) -> Client:
        return Client(self.endpoint, **kw)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_serving(endpoint: str, proc: subprocess.Popen | None = None,
                 timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(endpoint) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"daemon exited early with {proc.returncode}")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0,
                                  wait_for_ready=True)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"daemon at {endpoint} not serving after {timeout}s")


def start_daemon(tmp: pathlib.Path, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    sock = tmp / "iommud.sock"
    log_path = tmp / "iommud.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
    full_env.update(env or {})
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iommud", "--socket", str(sock), "--log-format", "json",
             *args], stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=tmp)
    daemon = DaemonProcess(proc, sock, log_path)
    try:
        wait_serving(daemon.endpoint, proc)
    except Exception:
        daemon.stop()
        raise
    return daemon


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon shared by the tests that only need isolation by session."""
    d = start_daemon(tmp_path_factory.mktemp("iommud"))
    yield d
    d.stop()


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


@pytest.fixture
def session(client: Client):
    with client.open_session("pytest") as s:
        yield s


@pytest.fixture
def ctx(session):
    return session.open_context()
