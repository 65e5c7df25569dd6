"""The gRPC adapter: IommuService served from the op table.

It does only what is particular to gRPC: decoding request bytes (a message
that is not valid protobuf is EINVAL, one carrying fields this daemon does
not know is E2BIG, both with ErrorInfo rather than grpc's bare UNKNOWN),
reading the caller (mutual-TLS identity, or the UNIX peer's credentials from
the peer gate), the token and fail-nth metadata, and turning an IommuError
into a status (errors.to_status). Everything else is the dispatcher's.
"""
from __future__ import annotations

import contextvars
import errno as E
import sys
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf import unknown_fields

from iommud.access import Caller
from iommud.errors import IommuError, request_details, to_status
from iommud.logsetup import get_logger
from iommud_wire import SERVICE_NAME, metadata

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from iommud.call import Runtime
    from iommud.dispatch import Dispatcher
    from iommud.ops import Op

log = get_logger("iommud.rpc")

if sys.byteorder != "little":  # the wire format of the packed u64 fields is little-endian
    raise ImportError("iommud's packed u64 fields assume a little-endian host")

_ANONYMOUS = Caller()
#: The W3C trace-context metadata a traced client sends (tracing.py).
_TRACE_KEYS = frozenset({"traceparent", "tracestate"})
Context = grpc.aio.ServicerContext[Any, Any]


def _unknown_field_path(msg: Any, path: str = "") -> str | None:
    """The dotted path of the first message carrying unknown fields, if any."""
    if len(unknown_fields.UnknownFieldSet(msg)):
        return path or msg.DESCRIPTOR.name
    for fdesc, value in msg.ListFields():
        if fdesc.message_type is None:
            continue
        items = value if fdesc.is_repeated else (value,)
        for i, item in enumerate(items):
            found = _unknown_field_path(item, f"{path or msg.DESCRIPTOR.name}.{fdesc.name}[{i}]")
            if found:
                return found
    return None


class Malformed:
    """Stands in for a request whose bytes are not a valid protobuf, or are
    more than its operation parses (`too_big`)."""

    DESCRIPTOR = None

    def __init__(self, type_name: str, error: Exception | None, too_big: int = 0,
                 limit: int = 0, unknown: str = "") -> None:
        self.type_name = type_name
        self.error = error
        self.too_big = too_big
        self.limit = limit
        self.unknown = unknown


def _nests(descriptor: Any) -> bool:
    """Whether messages of this type can hold other messages."""
    return any(f.message_type is not None for f in descriptor.fields)


def _deserializer(message_type: Any, limit: int) -> Callable[[bytes], Any]:
    name = message_type.DESCRIPTOR.full_name
    nests = _nests(message_type.DESCRIPTOR)

    def parse(data: bytes) -> Any:
        if len(data) > limit:  # never parse it: parsing runs on the event loop
            return Malformed(name, None, len(data), limit)
        try:
            msg = message_type.FromString(data)
            if not nests:                      # unknown fields can only be at the top
                if len(unknown_fields.UnknownFieldSet(msg)):
                    return Malformed(name, None, unknown=name)
                return msg
            # Unknown fields, in C: without them the message serializes back
            # to as many bytes as came in (every proto3 encoder writes the
            # canonical form). Only when it does not (unknown fields, or an
            # odd encoder) is the message walked in Python to find them, so
            # a request of 65,536 sub-messages costs one pass, not 65,536.
            msg.DiscardUnknownFields()
            if msg.ByteSize() != len(data):
                where = _unknown_field_path(message_type.FromString(data))
                if where is not None:
                    return Malformed(name, None, unknown=where)
            return msg
        except Exception as exc:  # DecodeError, or anything the parser raises
            return Malformed(name, exc)
    return parse


def check_wellformed(request: Any) -> None:
    """The errno of a request the deserializer could not take as it came."""
    if isinstance(request, Malformed):
        if request.too_big:
            raise IommuError(E.EMSGSIZE, f"A {request.type_name} of {request.too_big:#x} bytes "
                             f"is larger than the {request.limit:#x} this operation takes; "
                             f"split it.", limit=request.limit)
        if request.unknown:
            raise IommuError(E.E2BIG, f"The request carries fields this daemon does not know "
                             f"(in {request.unknown}); refusing rather than ignoring them.")
        raise IommuError(E.EINVAL, f"The request bytes are not a valid {request.type_name} "
                         f"message ({str(request.error)[:200]}).")


class _Unread:
    """One call's reply, counted as unread under `key` once serialized."""

    __slots__ = ("key", "size")

    def __init__(self, key: str) -> None:
        self.key, self.size = key, 0


#: The call being served's unread cell, from its handler to its reply's
#: serializer (gRPC runs both in the call's context).
_REPLY: contextvars.ContextVar[_Unread | None] = contextvars.ContextVar("iommud_reply",
                                                                       default=None)


class GrpcService:
    """Serves every row of the op table as IommuService over gRPC."""

    def __init__(self, rt: Runtime, dispatcher: Dispatcher) -> None:
        self.rt = rt
        self.dispatcher = dispatcher
        self._tls = bool(rt.config.tls_cert)
        #: Bytes of replies answered but not yet taken by the client, by
        #: session token (by peer for calls without one). A client that stops
        #: reading leaves them queued in the daemon; past a quarter of the
        #: session memory budget its new calls are refused (ENOBUFS) before
        #: they run, so what it costs stays bounded by the budget plus one
        #: reply, and nothing it asked for is done without its answer.
        self.unread: dict[str, int] = {}

    def caller(self, context: Context) -> Caller:
        """Who is calling: the mTLS identity, else the UNIX peer's credentials."""
        if self._tls:
            names = list((context.auth_context() or {}).get("x509_common_name") or [])
            if names:
                return Caller(tls_identity=names[0].decode())
        gate = self.rt.gate
        cred = gate.peer(context.peer()) if gate is not None else None
        if cred is None:
            return _ANONYMOUS
        pid, uid, gid, groups = cred
        return Caller(pid=pid, uid=uid, gid=gid, groups=frozenset(groups))

    @staticmethod
    def _metadata(context: Context) -> tuple[str | None, str | None, dict[str, str] | None]:
        """The session token, the fail-nth step and the W3C trace context."""
        token = nth = None
        trace: dict[str, str] | None = None
        for key, value in context.invocation_metadata() or ():
            if key == metadata.SESSION:
                token = str(value)
            elif key == metadata.FAIL_NTH:
                nth = str(value)
            elif key in _TRACE_KEYS:
                trace = trace or {}
                trace[key] = str(value)
        return token, nth, trace

    @staticmethod
    async def _abort(context: Context, err: IommuError, request: Any) -> None:
        status = to_status(err, request_details(request))
        await context.abort(status.code, status.details, status.trailing_metadata)

    def _unary(self, op: Op) -> Callable[..., Any]:
        dispatcher = self.dispatcher

        async def handle(request: Any, context: Context) -> Any:
            try:
                token, nth, trace = self._metadata(context)
                key = token or context.peer()
                try:
                    check_wellformed(request)
                    self._check_unread(key)
                except IommuError as err:
                    dispatcher.refused(op, request, self.caller(context), err)
                    raise
                reply = await dispatcher.call(op, request, self.caller(context), token, nth,
                                              trace)
                self._queue(key, context)
                return reply
            except IommuError as err:
                await self._abort(context, err, request)
            except Exception as exc:
                # A daemon bug: answer INTERNAL and keep the traceback.
                log.exception("rpc.bug", method=op.name)
                await context.abort(grpc.StatusCode.INTERNAL, f"iommud bug: {exc!r}"[:1000])

        return handle

    def _check_unread(self, key: str) -> None:
        queued = self.unread.get(key, 0)
        allowed = self.rt.config.max_memory_bytes_per_session // 4
        if queued > allowed:
            raise IommuError(E.ENOBUFS, f"{queued:#x} bytes of earlier replies are still waiting "
                             f"for this client to read them (at most {allowed:#x}); read them "
                             f"before sending more calls.", queued=queued, limit=allowed)

    def _queue(self, key: str, context: Context) -> None:
        """Count the call's reply as unread from when it is serialized
        (`serialize`, which learns its size for free) until gRPC is done with
        the call: the reply's size is never computed twice."""
        cell = _Unread(key)
        _REPLY.set(cell)

        def done(_: Context) -> None:
            left = self.unread.get(key, 0) - cell.size
            if left > 0:
                self.unread[key] = left
            else:
                self.unread.pop(key, None)

        # grpc-stubs names the callback type as a class; any callable works.
        context.add_done_callback(cast("Any", done))

    def serializer(self, reply_type: Any) -> Callable[[Any], bytes]:
        """The reply serializer: gRPC calls it in the call's own context,
        after the handler, so it finds the call's unread cell there."""
        unread = self.unread

        def serialize(reply: Any) -> bytes:
            data: bytes = reply.SerializeToString()
            cell = _REPLY.get()
            if cell is not None:
                _REPLY.set(None)
                cell.size = len(data)
                unread[cell.key] = unread.get(cell.key, 0) + len(data)
            return data

        return serialize

    def _stream(self, op: Op) -> Callable[..., AsyncIterator[Any]]:
        dispatcher = self.dispatcher

        async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                try:
                    check_wellformed(request)
                except IommuError as err:
                    dispatcher.refused(op, request, self.caller(context), err)
                    raise
                token, _, _ = self._metadata(context)
                stream = dispatcher.stream(op, request, self.caller(context), token)
                async for item in stream:
                    yield item
            except IommuError as err:
                await self._abort(context, err, request)

        return handle

    def generic_handler(self, table: dict[str, Op] | None = None
                        ) -> grpc.GenericRpcHandler[Any, Any]:
        """The service's method handlers, with deserializers that never raise."""
        handlers = {}
        for op in (table or self.dispatcher.table).values():
            if op.stream:
                handlers[op.name] = grpc.unary_stream_rpc_method_handler(
                    self._stream(op), request_deserializer=_deserializer(op.request,
                                                                         op.max_request),
                    response_serializer=op.reply.SerializeToString)
            else:
                handlers[op.name] = grpc.unary_unary_rpc_method_handler(
                    self._unary(op), request_deserializer=_deserializer(op.request,
                                                                        op.max_request),
                    response_serializer=self.serializer(op.reply))
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
