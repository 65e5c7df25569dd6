"""The daemon process: health, reflection, listeners, graceful shutdown,
background start. Every daemon here is a real subprocess."""
from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from conftest import start_daemon, wait_serving
from iommud_client import Client


def _events(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_health_serving_for_server_and_service(daemon) -> None:
    with grpc.insecure_channel(daemon.endpoint) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "iommud.v1.IommuService"):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_services_and_resolves_methods(daemon) -> None:
    with grpc.insecure_channel(daemon.endpoint) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert {"iommud.v1.IommuService", "grpc.health.v1.Health"} <= services
        from google.protobuf.descriptor_pool import DescriptorPool
        pool = DescriptorPool(db)
        svc = pool.FindServiceByName("iommud.v1.IommuService")
        assert svc.FindMethodByName("IoasMap").input_type.name == "IoasMapRequest"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_gracefully(tmp_path: pathlib.Path, sig: signal.Signals) -> None:
    d = start_daemon(tmp_path)
    with d.client() as c:
        s = c.open_session("doomed")
        ctx = s.open_context()
        ctx.ioas_alloc()
    d.proc.send_signal(sig)
    assert d.proc.wait(30) == 0
    assert not d.socket_path.exists(), "the socket file is removed on shutdown"
    events = [e["event"] for e in _events(d.log_lines())]
    assert "shutdown.requested" in events and events[-1] == "stopped"
    stopped = [e for e in _events(d.log_lines()) if e["event"] == "stopped"][0]
    assert stopped["closed_sessions"] == 1


def test_stale_socket_is_replaced_but_live_one_is_not_stolen(tmp_path: pathlib.Path) -> None:
    sock_path = tmp_path / "iommud.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens
    d = start_daemon(tmp_path)
    try:
        second = subprocess.run([sys.executable, "-m", "iommud", "--socket", str(sock_path),
                                 "--log-format", "json"], capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1
        assert "another daemon is serving" in second.stderr
        with d.client() as c:
            assert c.health() == "SERVING"
    finally:
        assert d.stop() == 0


def test_tcp_listener_on_loopback(tmp_path: pathlib.Path) -> None:
    d = start_daemon(tmp_path, "--tcp", "127.0.0.1:0")
    try:
        serving = [e for e in _events(d.log_lines()) if e["event"] == "serving"][0]
        tcp = [e for e in serving["endpoints"] if not e.startswith("unix:")][0]
        assert tcp.startswith("127.0.0.1:") and not tcp.endswith(":0")
        with Client(tcp) as c:
            assert c.health() == "SERVING"
            with c.open_session() as s:
                assert s.open_context().ioas_alloc() == 1
    finally:
        d.stop()


def test_tcp_refuses_non_loopback_without_tls(tmp_path: pathlib.Path) -> None:
    result = subprocess.run([sys.executable, "-m", "iommud", "--socket", str(tmp_path / "s"),
                             "--tcp", "0.0.0.0:0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "loopback" in result.stderr


def test_background_returns_once_serving(tmp_path: pathlib.Path) -> None:
    sock = tmp_path / "bg.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
    result = subprocess.run([sys.executable, "-m", "iommud", "--background", "--socket", str(sock)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("(pid ")[1].split(")")[0])
    pidfd = os.pidfd_open(pid)  # the daemon is not our child: wait on its pidfd instead
    try:
        # No waiting: --background returned only after the daemon was serving.
        with Client(f"unix:{sock}") as c:
            assert c.health() == "SERVING"
        assert (tmp_path / "iommud.log").exists()
    finally:
        os.kill(pid, signal.SIGTERM)
    readable, _, _ = select.select([pidfd], [], [], 30)
    os.close(pidfd)
    assert readable, "the background daemon did not exit on SIGTERM"
    assert not sock.exists()


def test_print_config_reflects_environment(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "IOMMUD_LEASE_SECONDS": "77"}
    result = subprocess.run([sys.executable, "-m", "iommud", "--print-config"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0
    assert "lease_seconds = 77" in result.stdout
