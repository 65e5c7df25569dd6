"""OpenTelemetry tracing of RPCs (the `tracing` setting, daemon/iommud/tracing.py):
the spans real daemons export, to standard output and over OTLP/gRPC to a
collector this test runs, each span checked against the call that made it."""
from __future__ import annotations

import errno
import json
import os
import secrets
import struct
import subprocess
import sys
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from support import raises_errno, run_daemon
from uapi_client import PATH_IOMMU, Process, io

from iommud_wire import SERVICE_NAME, pb

if TYPE_CHECKING:
    import pathlib

PAGE = 4096
SERVER_KIND = "SpanKind.SERVER"


def console_spans(daemon: Any) -> list[dict[str, Any]]:
    """The spans a stopped daemon wrote on standard output (its log file
    holds both streams; spans are the JSON lines with a span context)."""
    out = []
    for line in daemon.log_lines():
        if line.startswith("{"):
            record = json.loads(line)
            if "context" in record and "kind" in record:
                out.append(record)
    return out


def by_method(spans: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == f"{SERVICE_NAME}/{method}"]


def test_each_call_is_a_server_span_continuing_the_callers_trace(daemon_factory) -> None:
    daemon = daemon_factory("--tracing", "console", name="traced")
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    with daemon.client() as c, c.open_session("vmm", keepalive=False) as s:
        token = s.token
        # A traced client's call: the W3C traceparent header, as
        # OpenTelemetry's gRPC instrumentation sends it.
        c.stub.Echo(pb.EchoRequest(payload=b"x"),
                    metadata=(("traceparent", f"00-{trace_id}-{parent_id}-01"),))
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        raises_errno(lambda: ctx.ioas_map(ioas, user_va=0, length=PAGE, flags=1 << 20),
                     "EOPNOTSUPP")
        session_id = s.session_id
    assert daemon.stop() == 0            # the batch exporter flushes at shutdown
    spans = console_spans(daemon)

    [echo] = by_method(spans, "Echo")
    assert echo["kind"] == SERVER_KIND
    assert echo["context"]["trace_id"] == f"0x{trace_id}"
    assert echo["parent_id"] == f"0x{parent_id}"
    assert echo["attributes"] == {"rpc.system": "grpc", "rpc.service": SERVICE_NAME,
                                  "rpc.method": "Echo", "iommud.transport": "grpc"}
    assert echo["status"]["status_code"] == "UNSET"
    assert echo["resource"]["attributes"]["service.name"] == "iommud"

    [alloc] = by_method(spans, "IoasAlloc")
    assert alloc["parent_id"] is None                     # no traceparent: a new trace
    assert alloc["context"]["trace_id"] != echo["context"]["trace_id"]
    assert alloc["attributes"]["iommud.session"] == session_id
    assert "iommud.errno" not in alloc["attributes"]

    [refused] = by_method(spans, "IoasMap")
    assert refused["attributes"]["iommud.errno"] == "EOPNOTSUPP"
    assert refused["attributes"]["iommud.session"] == session_id
    assert refused["status"]["status_code"] == "ERROR"
    assert "0x100000" in refused["status"]["description"]   # the message, its flag in hex
    # A span names the session by id; the token that grants it never appears.
    assert not any(token in json.dumps(span) for span in spans)
    assert {s["name"].rpartition("/")[2] for s in spans} >= {
        "OpenSession", "OpenContext", "IoasAlloc", "IoasMap", "Echo", "CloseSession"}


def test_raw_transport_calls_are_spans_of_transport_uapi(daemon_factory) -> None:
    daemon = daemon_factory("--tracing", "console", name="traced-uapi")
    proc = Process(str(daemon.socket_path.parent / "iommud.uapi.sock"))
    try:
        f = proc.open(PATH_IOMMU)
        alloc = proc.mem.struct(struct.Struct("<III"), 12, 0, 0)
        assert f.ioctl(io(0x81), alloc) >= 0            # IOMMU_IOAS_ALLOC
        bad = proc.mem.struct(struct.Struct("<III"), 12, 1, 0)   # an unknown flag
        # iommufd_ioas_alloc_ioctl: any flag is EOPNOTSUPP.
        assert f.ioctl(io(0x81), bad) == -errno.EOPNOTSUPP
    finally:
        proc.close()
    assert daemon.stop() == 0
    spans = by_method(console_spans(daemon), "IoasAlloc")
    assert [s["attributes"]["iommud.transport"] for s in spans] == ["uapi", "uapi"]
    assert "iommud.errno" not in spans[0]["attributes"]
    assert spans[1]["attributes"]["iommud.errno"] == "EOPNOTSUPP"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[Any] = []

    def Export(self, request: Any, context: Any) -> Any:
        for resource_spans in request.resource_spans:
            self.resources.append(resource_spans.resource)
            for scope in resource_spans.scope_spans:
                self.spans.extend(scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_otlp_exports_the_spans_to_the_collector_the_environment_names(daemon_factory) -> None:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        daemon = daemon_factory("--tracing", "otlp", name="otlp", env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_SERVICE_NAME": "iommud-node-7"})
        with daemon.client() as c, c.open_session("vmm", keepalive=False) as s:
            ctx = s.open_context()
            raises_errno(lambda: ctx.ioas_map(0x77, user_va=0, length=PAGE), "ENOENT")
        assert daemon.stop() == 0
    finally:
        server.stop(None)
    names = [span.name for span in collector.spans]
    assert f"{SERVICE_NAME}/OpenContext" in names
    [refused] = [span for span in collector.spans if span.name == f"{SERVICE_NAME}/IoasMap"]
    attributes = {kv.key: kv.value.string_value for kv in refused.attributes}
    assert attributes["iommud.errno"] == "ENOENT"
    assert attributes["rpc.method"] == "IoasMap"
    assert refused.kind == refused.SPAN_KIND_SERVER
    assert refused.status.code == refused.status.STATUS_CODE_ERROR
    service = {kv.key: kv.value.string_value for kv in collector.resources[0].attributes}
    assert service["service.name"] == "iommud-node-7"     # OpenTelemetry's variable wins


def without_opentelemetry(tmp_path: pathlib.Path) -> dict[str, str]:
    """An environment where a package of that name shadows the real one: as
    if the otel extra were not installed."""
    (tmp_path / "opentelemetry").mkdir()
    (tmp_path / "opentelemetry" / "__init__.py").write_text("")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path),
                                                        os.environ.get("PYTHONPATH")]))}


def test_tracing_without_opentelemetry_is_one_line_and_exit_2(tmp_path: pathlib.Path) -> None:
    out = run_daemon("--tracing", "otlp", "--socket", str(tmp_path / "s.sock"),
                     env=without_opentelemetry(tmp_path))
    assert out.returncode == 2
    assert out.stdout == ""
    [line] = out.stderr.splitlines()
    assert line.startswith("iommud: --tracing: cannot use 'otlp' (opentelemetry.sdk is not "
                           "installed); expected off, or the otel extra installed")
    out = run_daemon("--tracing", "jaeger", env={"IOMMUD_TRACING": "console"})
    assert out.returncode == 2
    [line] = out.stderr.splitlines()
    assert line == "iommud: --tracing: invalid value 'jaeger'; expected one of off, otlp, console"


@pytest.mark.parametrize("source", ["env", "file"])
def test_the_refusal_names_where_tracing_was_set(tmp_path: pathlib.Path, source: str) -> None:
    env = without_opentelemetry(tmp_path)
    args: list[str] = []
    if source == "env":
        env["IOMMUD_TRACING"] = "console"
        where = "IOMMUD_TRACING"
    else:
        conf = tmp_path / "iommud.toml"
        conf.write_text('[iommud]\ntracing = "console"\n')
        args = ["--config", str(conf)]
        where = f"tracing in {conf}"
    out = run_daemon(*args, env=env)
    assert out.returncode == 2
    assert out.stderr.startswith(f"iommud: {where}: cannot use 'console'")


def test_with_tracing_off_the_daemon_imports_nothing_of_opentelemetry() -> None:
    """The default costs nothing: serving modules load without the SDK."""
    code = ("import sys, iommud.server, iommud.service, iommud.dispatch, iommud.uapi_transport; "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
