"""Optional OpenTelemetry tracing of RPCs (the `tracing` setting).

One SERVER span per unary call, opened by the dispatcher around its framing
and handler (dispatch.Dispatcher.call), on either transport. The span is
named as gRPC tracers name it, "iommud.v1.IommuService/IoasMap", and carries
the RPC semantic-convention attributes (rpc.system, rpc.service,
rpc.method) and iommud's own: the transport ("grpc" or "uapi"), the session
id once the call found its session, and, for a refused call, the errno name
as `iommud.errno` with the span's status ERROR and the error's message. The
span never holds a session token or request payload.

A gRPC client's W3C trace context (the `traceparent` and `tracestate`
metadata that OpenTelemetry's gRPC instrumentation and other tracers send)
parents the span, so that a VMM's own trace continues into the daemon.

Exporters: `otlp` sends batches over OTLP/gRPC, configured by
OpenTelemetry's standard variables (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS,
_CERTIFICATE, ...; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the
resource); `console` writes each span as one JSON object per line on
standard output (the daemon's log goes to standard error). Both export from
the SDK's batch thread, never on the event loop, and flush at shutdown.
With tracing off (the default) nothing of OpenTelemetry is imported and a
call pays one `is None` test.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from iommud_wire import SERVICE_NAME

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from iommud.dispatch import Dispatcher
    from iommud.errors import IommuError

#: The modules each exporter needs (the `otel` extra installs them all).
_NEEDS = {"console": ("opentelemetry.sdk",),
          "otlp": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.grpc")}


def missing(exporter: str) -> str | None:
    """The first module `exporter` needs that is not installed, else None."""
    for module in _NEEDS.get(exporter, ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return module
    return None


class Spans:
    """What a dispatcher holds while tracing is on: its transport's name and
    the tracer, opening one span per call."""

    def __init__(self, tracer: Any, transport: str) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._tracer = tracer
        self._extract = propagate.extract
        self._current = trace.get_current_span
        self._kind = SpanKind.SERVER
        self._status, self._error = Status, StatusCode.ERROR
        self._transport = transport

    @contextmanager
    def span(self, method: str, carrier: Mapping[str, str] | None) -> Iterator[Any]:
        parent = self._extract(carrier) if carrier else None
        attributes = {"rpc.system": "grpc", "rpc.service": SERVICE_NAME, "rpc.method": method,
                      "iommud.transport": self._transport}
        with self._tracer.start_as_current_span(
                f"{SERVICE_NAME}/{method}", context=parent, kind=self._kind,
                attributes=attributes, record_exception=False,
                set_status_on_exception=False) as span:
            yield span

    def session(self, session_id: str) -> None:
        """Name the call's session on the current span."""
        self._current().set_attribute("iommud.session", session_id)

    def refused(self, span: Any, err: IommuError) -> None:
        span.set_attribute("iommud.errno", err.name)
        span.set_status(self._status(self._error, str(err)))

    def failed(self, span: Any, exc: BaseException) -> None:
        """A daemon bug: the exception's type, never its arguments."""
        span.set_attribute("iommud.errno", type(exc).__name__)
        span.set_status(self._status(self._error, type(exc).__name__))


class Tracing:
    """The tracer provider of one daemon: started with the daemon, attached
    to each transport's dispatcher, flushed and shut down at its stop."""

    def __init__(self, exporter: str, version: str) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

        span_exporter: SpanExporter
        if exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            span_exporter = OTLPSpanExporter()
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter
            span_exporter = ConsoleSpanExporter(
                out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + os.linesep)
        # OpenTelemetry's variables win over our name for the service.
        ours: dict[str, str] = {"service.version": version}
        if not os.environ.get("OTEL_SERVICE_NAME") and \
                "service.name=" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
            ours["service.name"] = "iommud"
        resource = Resource.create().merge(Resource(ours))
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(span_exporter))
        self._tracer = self.provider.get_tracer("iommud", version)

    def attach(self, transport: str, dispatcher: Dispatcher) -> None:
        dispatcher.spans = Spans(self._tracer, transport)

    def stop(self) -> None:
        """Export what is queued, then stop the batch thread."""
        self.provider.shutdown()
