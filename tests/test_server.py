"""The daemon process: health, reflection, listeners, graceful shutdown,
background start. Every daemon here is a real subprocess."""
from __future__ import annotations

import os
import select
import signal
import socket
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from support import run_daemon

from iommud_client import Client

if TYPE_CHECKING:
    import pathlib


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
def test_signal_shuts_down_gracefully(daemon_factory, sig: signal.Signals) -> None:
    d = daemon_factory()
    with d.client() as c:
        s = c.open_session("doomed")
        ctx = s.open_context()
        ctx.ioas_alloc()
    d.proc.send_signal(sig)
    assert d.proc.wait(30) == 0
    assert not d.socket_path.exists(), "the socket file is removed on shutdown"
    events = [e["event"] for e in d.events()]
    assert "shutdown.requested" in events and events[-1] == "stopped"
    stopped = d.events("stopped")[0]
    assert stopped["closed_sessions"] == 1


def test_stale_socket_is_replaced_but_live_one_is_not_stolen(tmp_path: pathlib.Path,
                                                            daemon_factory) -> None:
    sock_path = tmp_path / "iommud.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens
    d = daemon_factory(workdir=tmp_path)
    assert d.socket_path == sock_path
    second = run_daemon("--socket", str(sock_path), "--log-format", "json")
    assert second.returncode == 1
    assert "another daemon is serving" in second.stderr
    with d.client() as c:
        assert c.health() == "SERVING"
    assert d.stop() == 0


def test_tcp_listener_on_loopback(daemon_factory) -> None:
    d = daemon_factory("--tcp", "127.0.0.1:0")
    tcp = d.tcp_endpoint
    assert tcp.startswith("127.0.0.1:") and not tcp.endswith(":0")
    with Client(tcp) as c:
        assert c.health() == "SERVING"
        with c.open_session() as s:
            assert s.open_context().ioas_alloc() == 1


def test_tcp_refuses_non_loopback_without_tls(tmp_path: pathlib.Path) -> None:
    result = run_daemon("--socket", str(tmp_path / "s"), "--tcp", "0.0.0.0:0")
    assert result.returncode == 1
    assert "loopback" in result.stderr


def test_background_returns_once_serving(tmp_path: pathlib.Path) -> None:
    sock = tmp_path / "bg.sock"
    result = run_daemon("--background", "--socket", str(sock), timeout=120)
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


def test_print_config_reflects_environment() -> None:
    result = run_daemon("--print-config", env={"IOMMUD_LEASE_SECONDS": "77"})
    assert result.returncode == 0
    assert "lease_seconds = 77" in result.stdout
