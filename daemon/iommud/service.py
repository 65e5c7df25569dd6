"""IommuService: decode a request, call the object model, encode the reply.

Each handler is wrapped by `rpc`, which owns the per-call policy shared by
every method: unknown protobuf fields are refused (E2BIG), the session token
is resolved (ESRCH), errors are turned into a status by errors.to_status, and
exactly one structlog event is written per call with the method, session, ids,
status and duration. Handlers themselves never touch grpc status codes.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno as E
import functools
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from google.protobuf import unknown_fields

from iommud import __version__, _core, device, failnth, fault, hw_pagetable, ioas, vfio_compat
from iommud._core import PeerGate
from iommud.access import AccessPolicy, Caller
from iommud.config import Config
from iommud.errors import IommuError, request_details, to_status
from iommud.device import DeviceObj
from iommud.host import Host
from iommud.hw_pagetable import HwptPaging
from iommud.ioas import Ioas
from iommud.journal import HOST_METHODS, Journal
from iommud.topology import Device as HostDevice
from iommud.topology import ReservedRegion
from iommud.logsetup import get_logger
from iommud.session import Session, SessionRegistry
from iommud_wire import metadata, pb, pb_grpc

SESSION_METADATA_KEY = metadata.SESSION

log = get_logger("iommud.rpc")

if sys.byteorder != "little":  # the wire format of TranslateBatch is little-endian u64
    raise ImportError("iommud's TranslateBatch packing assumes a little-endian host")

Handler = Callable[..., Any]


def _unknown_field_path(msg: Any, path: str = "") -> str | None:
    """The dotted path of the first message carrying unknown fields, if any."""
    if len(unknown_fields.UnknownFieldSet(msg)):
        return path or msg.DESCRIPTOR.name
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        items = value if field.is_repeated else (value,)
        for i, item in enumerate(items):
            found = _unknown_field_path(item, f"{path or msg.DESCRIPTOR.name}.{field.name}[{i}]")
            if found:
                return found
    return None


class Malformed:
    """Stands in for a request whose bytes are not a valid protobuf, so that
    the handler can answer EINVAL with ErrorInfo instead of grpc's UNKNOWN."""

    DESCRIPTOR = None

    def __init__(self, type_name: str, error: Exception) -> None:
        self.type_name = type_name
        self.error = error


def _deserializer(message_type: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except Exception as exc:  # DecodeError, or anything the parser raises
            return Malformed(message_type.DESCRIPTOR.full_name, exc)
    return parse


def _check_wellformed(request: Any) -> None:
    if isinstance(request, Malformed):
        raise IommuError(E.EINVAL, f"The request bytes are not a valid {request.type_name} "
                         f"message ({request.error}).")
    where = _unknown_field_path(request)
    if where is not None:
        raise IommuError(E.E2BIG, f"The request carries fields this daemon does not know "
                         f"(in {where}); refusing rather than ignoring them.")


def generic_handler(servicer: "IommuServicer") -> grpc.GenericRpcHandler:
    """IommuService's handlers, with deserializers that never raise."""
    service = pb.DESCRIPTOR.services_by_name["IommuService"]
    handlers = {}
    for method in service.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        make = (grpc.unary_stream_rpc_method_handler if method.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(getattr(servicer, method.name),
                                     request_deserializer=_deserializer(request_type),
                                     response_serializer=response_type.SerializeToString)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _tls_identity(context: grpc.aio.ServicerContext) -> str:
    """The caller's client-certificate subject CN under mutual TLS, else ""."""
    auth = context.auth_context() or {}
    names = auth.get("x509_common_name") or []
    return names[0].decode() if names else ""


def _metadata(context: grpc.aio.ServicerContext, wanted: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == wanted:
            return value
    return None


def _token(context: grpc.aio.ServicerContext) -> str | None:
    return _metadata(context, SESSION_METADATA_KEY)


def with_fields(message: Any, **fields: Any) -> Any:
    """A copy of a protobuf message with some fields changed."""
    out = type(message)()
    out.CopyFrom(message)
    for name, value in fields.items():
        setattr(out, name, value)
    return out


def rpc(*, session: str = "required", journal: bool = True) -> Callable[[Handler], Handler]:
    """Wrap a handler `(self, request, session) -> response`.

    session="required": a valid token is needed; "optional": a token is
    used if sent; "none": the call opens a session, and the handler gets
    the Caller in place of a session. Every call first passes the access
    policy (allowed uids/gids, admin RPCs; see access.py).
    journal=False marks a handler that changes no state; every other one
    that succeeds is journaled before its reply is sent.
    """

    def decorate(handler: Handler) -> Handler:
        method = handler.__name__

        @functools.wraps(handler)
        async def wrapper(self: "IommuServicer", request: Any,
                          context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            details = request_details(request)
            sess: Session | None = None
            outcome = "OK"
            try:
                _check_wellformed(request)
                caller = self.caller(context)
                self.access.check_call(caller, method)
                identity = caller.identity
                token = _token(context)
                if session == "required" or (session == "optional" and token):
                    sess = self.sessions.lookup(token, identity)
                nth = failnth.parse(_metadata(context, failnth.METADATA_KEY),
                                    bool(self.config.debug_fail_nth))
                with failnth.armed(nth):
                    # Handlers that open sessions get the caller in place of a session.
                    result = handler(self, request, caller if session == "none" else sess)
                    if isinstance(result, Awaitable):
                        result = await result
                if journal and self.journal is not None:
                    token = result.token if sess is None else sess.token
                    self.journal.record(token, method, request.SerializeToString(), identity)
                return result
            except (IommuError, OSError) as exc:
                err = exc if isinstance(exc, IommuError) else IommuError.from_oserror(exc)
                outcome = err.name
                status = to_status(err, details)
                await context.abort(status.code, status.details, status.trailing_metadata)
            except Exception as exc:
                if outcome != "OK":
                    raise  # abort() unwinding after an errno reply
                # A daemon bug: answer INTERNAL and keep the traceback.
                outcome = type(exc).__name__
                log.exception("rpc.bug", method=method)
                await context.abort(grpc.StatusCode.INTERNAL, f"iommud bug: {exc!r}")
            finally:
                log.info("rpc", method=method, session=sess.session_id if sess else None,
                         status=outcome, duration_ms=round((time.perf_counter() - started) * 1e3, 3),
                         **details)

        return wrapper

    return decorate


def _counts(sessions: list[Session]) -> pb.ObjectCounts:
    counts = pb.ObjectCounts(sessions=len(sessions))
    contexts = set()
    for sess in sessions:
        for _fd, entry in sess.fds():
            if isinstance(entry, device.DeviceFd):
                counts.device_fds += 1
                if entry.bound is not None:
                    contexts.add(entry.bound.ctx)  # a context kept alive by its devices
            elif isinstance(entry, vfio_compat.GroupFd):
                if entry.ctx is not None:
                    contexts.add(entry.ctx)  # a container kept alive by its groups
            else:
                contexts.add(entry)
    for ctx in contexts:
        counts.contexts += 1
        for obj in ctx.objects():
            counts.objects += 1
            if isinstance(obj, Ioas):
                counts.ioas += 1
                counts.areas += obj.num_areas
                counts.mapped_bytes += obj.mapped_bytes
            elif isinstance(obj, HwptPaging):
                counts.hwpts += 1
            elif isinstance(obj, DeviceObj):
                counts.devices += 1
    return counts


def _host_device(host: Host, name: str) -> pb.HostDevice:
    dev = host.devices[name]
    drv = host.driver_of(name)
    return pb.HostDevice(
        name=dev.name, group=dev.group, vendor=dev.vendor, device=dev.device,
        class_code=dev.class_code, driver=drv.name if drv else "",
        driver_managed_dma=bool(drv and drv.driver_managed_dma),
        reserved_regions=[pb.ReservedRegion(start=r.start, last=r.last, kind=r.kind)
                          for r in dev.reserved_regions],
        pgsize_bitmap=dev.pgsize_bitmap, max_pasid_log2=dev.max_pasid_log2,
        dirty_tracking=dev.dirty_tracking, reliable_source_id=dev.reliable_source_id,
        aperture_bits=dev.aperture_bits, description=dev.description,
        user_open=name in host.groups[dev.group].open_devices)


def _device_from_proto(msg: pb.HostDevice) -> HostDevice:
    """A hot-added device; unset properties take the topology defaults."""
    defaults = HostDevice(name=msg.name, group=msg.group)
    if not re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", msg.name):
        raise IommuError(E.EINVAL, f"{msg.name!r} is not a PCI address of the form "
                         f"DDDD:BB:DD.F.", device=msg.name)
    regions = tuple(ReservedRegion(r.start, r.last, r.kind or "msi") for r in msg.reserved_regions)
    for r in regions:
        if r.start > r.last:
            raise IommuError(E.EINVAL, f"Reserved region {r.start:#x}..{r.last:#x} ends before "
                             f"it starts.", device=msg.name)
    if msg.max_pasid_log2 > 20 or (msg.aperture_bits and not 32 <= msg.aperture_bits <= 64):
        raise IommuError(E.EINVAL, "max_pasid_log2 must be at most 20 and aperture_bits within "
                         "32..64.", device=msg.name)
    return dataclasses.replace(
        defaults, vendor=msg.vendor, device=msg.device, class_code=msg.class_code,
        driver=msg.driver or None, reserved_regions=regions or defaults.reserved_regions,
        pgsize_bitmap=msg.pgsize_bitmap or defaults.pgsize_bitmap,
        max_pasid_log2=msg.max_pasid_log2, dirty_tracking=msg.dirty_tracking,
        reliable_source_id=msg.reliable_source_id,
        aperture_bits=msg.aperture_bits or defaults.aperture_bits, description=msg.description)


_FAULT_REASONS = {"blocked": pb.DMA_FAULT_REASON_BLOCKED, "unmapped": pb.DMA_FAULT_REASON_UNMAPPED,
                  "permission": pb.DMA_FAULT_REASON_PERMISSION}


class IommuServicer(pb_grpc.IommuServiceServicer):
    def __init__(self, config: Config, sessions: SessionRegistry, host: Host,
                 journal: Journal | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.host = host
        self.journal = journal
        if journal is not None:
            sessions.on_forget.append(lambda sess: journal.forget_session(sess.token))
        self.access = AccessPolicy(config.allow_uids, config.allow_gids, config.admin_uids,
                                   config.admin_identities)
        #: The UNIX socket's peer gate (rust_core), set by the daemon once listening.
        self.gate: PeerGate | None = None

    def _stream_session(self, request: Any, context: grpc.aio.ServicerContext,
                        method: str) -> Session:
        """The checks `rpc` applies, for the streaming handlers it cannot wrap."""
        _check_wellformed(request)
        caller = self.caller(context)
        self.access.check_call(caller, method)
        return self.sessions.lookup(_token(context), caller.identity)

    def caller(self, context: grpc.aio.ServicerContext) -> Caller:
        """Who is calling: the mTLS identity, else the UNIX peer's credentials."""
        tls = _tls_identity(context)
        if tls:
            return Caller(tls_identity=tls)
        cred = self.gate.peer(context.peer()) if self.gate is not None else None
        if cred is None:
            return Caller()
        pid, uid, gid, groups = cred
        return Caller(pid=pid, uid=uid, gid=gid, groups=frozenset(groups))

    async def replay(self) -> int:
        """Rebuild the state the journal acknowledged; returns the rows replayed.

        Runs before the server listens. Each row goes through the handler
        that first served it, without the journaling wrapper; a row that
        fails means the journal and this daemon disagree, and starting
        anyway would serve a state no client was promised, so it raises."""
        if self.journal is None:
            return 0
        service = pb.DESCRIPTOR.services_by_name["IommuService"]
        count = 0
        for rec in self.journal.records():
            method = service.methods_by_name.get(rec.method)
            if method is None:
                raise RuntimeError(f"journal row {rec.seq} names an unknown method {rec.method!r}")
            request = getattr(pb, method.input_type.name).FromString(rec.request)
            try:
                if rec.method == "OpenSession":
                    self.sessions.open(request.client_name, request.lease_seconds, rec.identity,
                                       token=rec.token)
                else:
                    sess = self.sessions.get(rec.token)
                    if sess is None and rec.method not in HOST_METHODS:
                        raise IommuError(E.ESRCH, "its session is not open")
                    result = getattr(type(self), rec.method).__wrapped__(self, request, sess)
                    if isinstance(result, Awaitable):
                        await result
            except IommuError as exc:
                raise RuntimeError(f"journal row {rec.seq} ({rec.method}) no longer applies: "
                                   f"{exc}") from exc
            count += 1
        return count

    # -- sessions -----------------------------------------------------------

    @rpc(session="none")
    def OpenSession(self, request: pb.OpenSessionRequest, caller: Caller) -> pb.OpenSessionResponse:
        sess = self.sessions.open(request.client_name, request.lease_seconds, caller.identity)
        log.info("session.open", session=sess.session_id, client_name=sess.client_name,
                 lease_seconds=sess.lease_seconds, identity=caller.identity or None,
                 pid=caller.pid)
        return pb.OpenSessionResponse(token=sess.token, session_id=sess.session_id,
                                      lease_seconds=sess.lease_seconds)

    @rpc(journal=False)
    def CloseSession(self, request: pb.CloseSessionRequest, sess: Session) -> pb.CloseSessionResponse:
        return pb.CloseSessionResponse(closed_fds=self.sessions.close(sess))

    @rpc(journal=False)
    def KeepAlive(self, request: pb.KeepAliveRequest, sess: Session) -> pb.KeepAliveResponse:
        return pb.KeepAliveResponse(lease_seconds=sess.lease_seconds)

    async def WatchSession(self, request: pb.WatchSessionRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.WatchSessionResponse]:
        # Streaming does not fit `rpc`; it applies the same checks by hand.
        try:
            sess = self._stream_session(request, context, "WatchSession")
        except IommuError as err:
            status = to_status(err)
            await context.abort(status.code, status.details, status.trailing_metadata)
            return
        interval = (request.interval_ms or 1000) / 1000.0
        interval = min(max(interval, 0.1), 60.0)
        sess.streams += 1
        log.info("session.watch", session=sess.session_id, streams=sess.streams)
        try:
            sequence = 0
            while not sess.closed:
                sequence += 1
                yield pb.WatchSessionResponse(session_id=sess.session_id, sequence=sequence)
                await asyncio.sleep(interval)
        finally:
            sess.streams -= 1
            sess.touch()  # the lease counts from the moment the stream ended

    # -- contexts -----------------------------------------------------------

    @rpc()
    def OpenContext(self, request: pb.OpenContextRequest, sess: Session) -> pb.OpenContextResponse:
        return pb.OpenContextResponse(iommufd=sess.open_context())

    @rpc()
    def CloseContext(self, request: pb.CloseContextRequest, sess: Session) -> pb.CloseContextResponse:
        return pb.CloseContextResponse(destroyed_objects=sess.close_context(request.iommufd))

    @rpc()
    def Destroy(self, request: pb.DestroyRequest, sess: Session) -> pb.DestroyResponse:
        sess.context(request.iommufd).destroy(request.id)
        return pb.DestroyResponse()

    # -- IOAS ---------------------------------------------------------------

    @rpc()
    def IoasAlloc(self, request: pb.IoasAllocRequest, sess: Session) -> pb.IoasAllocResponse:
        ctx = sess.context(request.iommufd)
        return pb.IoasAllocResponse(out_ioas_id=ioas.ioas_alloc(ctx, request.flags))

    @rpc(journal=False)
    def IoasIovaRanges(self, request: pb.IoasIovaRangesRequest,
                       sess: Session) -> pb.IoasIovaRangesResponse:
        ctx = sess.context(request.iommufd)
        capacity = request.num_iovas if request.HasField("num_iovas") else None
        ranges, alignment = ioas.ioas_iova_ranges(ctx, request.ioas_id, capacity, request.reserved)
        return pb.IoasIovaRangesResponse(
            num_iovas=len(ranges), out_iova_alignment=alignment,
            allowed_iovas=[pb.IovaRange(start=s, last=l) for s, l in ranges])

    @rpc()
    def IoasAllowIovas(self, request: pb.IoasAllowIovasRequest,
                       sess: Session) -> pb.IoasAllowIovasResponse:
        ctx = sess.context(request.iommufd)
        ioas.ioas_allow_iovas(ctx, request.ioas_id,
                              [(r.start, r.last) for r in request.allowed_iovas], request.reserved)
        return pb.IoasAllowIovasResponse()

    @rpc()
    def IoasMap(self, request: pb.IoasMapRequest, sess: Session) -> pb.IoasMapResponse:
        ctx = sess.context(request.iommufd)
        iova = ioas.ioas_map(ctx, request.flags, request.ioas_id, request.reserved,
                             request.user_va, request.length, request.iova)
        return pb.IoasMapResponse(iova=iova)

    @rpc()
    def IoasMapBatch(self, request: pb.IoasMapBatchRequest,
                     sess: Session) -> pb.IoasMapBatchResponse:
        ctx = sess.context(request.iommufd)
        return pb.IoasMapBatchResponse(iovas=ioas.ioas_map_batch(
            ctx, request.flags, request.ioas_id, request.reserved, request.user_vas,
            request.lengths, request.iovas))

    @rpc()
    def IoasCopy(self, request: pb.IoasCopyRequest, sess: Session) -> pb.IoasCopyResponse:
        ctx = sess.context(request.iommufd)
        iova = ioas.ioas_copy(ctx, request.flags, request.dst_ioas_id, request.src_ioas_id,
                              request.length, request.dst_iova, request.src_iova)
        return pb.IoasCopyResponse(dst_iova=iova)

    @rpc()
    def IoasUnmap(self, request: pb.IoasUnmapRequest, sess: Session) -> pb.IoasUnmapResponse:
        ctx = sess.context(request.iommufd)
        iopt = ioas.find(ctx, request.ioas_id)
        with self._partial_unmap_journaled(sess, "IoasUnmap", iopt, request.iova, request.length,
                                           lambda n: with_fields(request, length=n)):
            return pb.IoasUnmapResponse(length=ioas.ioas_unmap(ctx, request.ioas_id, request.iova,
                                                               request.length))

    @contextlib.contextmanager
    def _partial_unmap_journaled(self, sess: Session, method: str,
                                 iopt: _core.IoPagetable | None, iova: int, length: int,
                                 prefix: Callable[[int], Any]) -> Iterator[None]:
        """IOAS_UNMAP (and the compat UNMAP_DMA on it) is not atomic: a range
        whose end cuts an area fails with ENOENT after removing the whole
        areas before that one. Only successes are journaled, so such an
        effect is journaled here as the same request shortened to the prefix
        up to the cut area (`prefix(length)`), which removes exactly those
        areas when replayed; an error with no effect writes nothing."""
        before = iopt.mapped_bytes if iopt is not None else None
        try:
            yield
        except (IommuError, OSError):
            if self.journal is not None and before is not None and iopt.mapped_bytes != before:
                cut = iopt.area_from(iova + length - 1)
                assert cut is not None and iova < cut[0] <= iova + length - 1, \
                    "a partial unmap stops at the area cut by the range's end"
                self.journal.record(sess.token, method, prefix(cut[0] - iova).SerializeToString())
            raise

    @rpc()
    def Option(self, request: pb.OptionRequest, sess: Session) -> pb.OptionResponse:
        ctx = sess.context(request.iommufd)
        return pb.OptionResponse(val64=ioas.option(
            ctx, request.option_id, request.op, request.reserved, request.object_id,
            request.val64, bool(self.config.cap_sys_resource)))

    @rpc()
    def IoasChangeProcess(self, request: pb.IoasChangeProcessRequest,
                          sess: Session) -> pb.IoasChangeProcessResponse:
        ioas.change_process(sess.context(request.iommufd), request.reserved)
        return pb.IoasChangeProcessResponse()

    @rpc(journal=False)
    def Translate(self, request: pb.TranslateRequest, sess: Session) -> pb.TranslateResponse:
        ctx = sess.context(request.iommufd)
        pa, prot = ioas.translate(ctx, request.ioas_id, request.iova)
        return pb.TranslateResponse(iova=request.iova, pa=pa, prot=prot)

    @rpc(journal=False)
    async def TranslateBatch(self, request: pb.TranslateBatchRequest,
                             sess: Session) -> pb.TranslateBatchResponse:
        ctx = sess.context(request.iommufd)
        data = request.iovas
        if len(data) % 8:
            raise IommuError(E.EINVAL, f"The iovas field holds {len(data):#x} bytes, not a "
                             f"whole number of 8-byte addresses.")
        count = len(data) // 8
        if count > self.config.max_translate_batch:
            raise IommuError(E.ENOMEM, f"A batch of {count:#x} addresses exceeds the limit of "
                             f"{self.config.max_translate_batch:#x}.",
                             limit=self.config.max_translate_batch)
        iopt = ctx.get(request.ioas_id, Ioas, "IOAS").iopt
        if count >= self.config.offload_batch:
            # The core drops the GIL for large batches; keep the loop serving meanwhile.
            pas, prots = await asyncio.to_thread(iopt.translate_batch, data)
        else:
            pas, prots = iopt.translate_batch(data)
        return pb.TranslateBatchResponse(pas=pas, prots=prots,
                                         mapped_count=count - prots.count(0))

    # -- host topology and ownership ------------------------------------------

    @rpc(journal=False)
    def ListDevices(self, request: pb.ListDevicesRequest, sess: Session) -> pb.ListDevicesResponse:
        return pb.ListDevicesResponse(devices=[_host_device(self.host, n)
                                               for n in sorted(self.host.devices)])

    @rpc(journal=False)
    def ListGroups(self, request: pb.ListGroupsRequest, sess: Session) -> pb.ListGroupsResponse:
        out = []
        for g in self.host.iter_groups():
            if g.owner is None:
                owner = pb.GROUP_OWNER_NONE
            elif getattr(g.owner, "container", None) is not None and \
                    g.owner.container.mode == vfio_compat.MODE_TYPE1:
                owner = pb.GROUP_OWNER_CONTAINER
            else:
                owner = pb.GROUP_OWNER_IOMMUFD
            domain = g.domain if isinstance(g.domain, str) else f"hwpt:{g.domain.id}"
            out.append(pb.IommuGroup(group=g.group, devices=[d.name for d in self.host.members(g.group)],
                                     viable=self.host.viable(g.group), owner=owner,
                                     owner_cnt=g.owner_cnt, domain=domain))
        return pb.ListGroupsResponse(groups=out)

    @rpc()
    def BindHostDriver(self, request: pb.BindHostDriverRequest,
                       sess: Session) -> pb.BindHostDriverResponse:
        self.host.bind_driver(request.device, request.driver)
        return pb.BindHostDriverResponse()

    @rpc()
    def UnbindHostDriver(self, request: pb.UnbindHostDriverRequest,
                         sess: Session) -> pb.UnbindHostDriverResponse:
        self.host.unbind_driver(request.device)
        return pb.UnbindHostDriverResponse()

    @rpc()
    def HotAddDevice(self, request: pb.HotAddDeviceRequest,
                     sess: Session) -> pb.HotAddDeviceResponse:
        self.host.hot_add(_device_from_proto(request.device))
        return pb.HotAddDeviceResponse()

    @rpc()
    def HotRemoveDevice(self, request: pb.HotRemoveDeviceRequest,
                        sess: Session) -> pb.HotRemoveDeviceResponse:
        self.host.hot_remove(request.device)
        return pb.HotRemoveDeviceResponse()

    async def WatchHost(self, request: pb.WatchHostRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[pb.WatchHostResponse]:
        try:
            sess = self._stream_session(request, context, "WatchHost")
        except IommuError as err:
            status = to_status(err)
            await context.abort(status.code, status.details, status.trailing_metadata)
            return
        queue = self.host.subscribe()
        sess.streams += 1
        try:
            while not sess.closed:
                event = await queue.get()
                yield pb.WatchHostResponse(kind=event.kind, group=event.group,
                                           device=event.device, detail=event.detail)
        finally:
            sess.streams -= 1
            sess.touch()
            self.host.unsubscribe(queue)

    # -- device fds -------------------------------------------------------------

    @rpc()
    def OpenDevice(self, request: pb.OpenDeviceRequest, sess: Session) -> pb.OpenDeviceResponse:
        return pb.OpenDeviceResponse(device_fd=sess.open_device(request.name))

    @rpc()
    def CloseDevice(self, request: pb.CloseDeviceRequest, sess: Session) -> pb.CloseDeviceResponse:
        sess.device_fd(request.device_fd)
        sess.close_fd(request.device_fd)
        return pb.CloseDeviceResponse()

    @rpc(journal=False)
    def DeviceGetInfo(self, request: pb.DeviceGetInfoRequest,
                      sess: Session) -> pb.DeviceGetInfoResponse:
        devfd = sess.device_fd(request.device_fd)
        resp = pb.DeviceGetInfoResponse(device=_host_device(self.host, devfd.host_dev.name),
                                        bound=devfd.bound is not None)
        if devfd.bound is not None:
            resp.dev_id = devfd.bound.id
            for pasid, hwpt in devfd.bound.attached.items():
                if pasid is None:
                    resp.rid_hwpt_id = hwpt.id
                else:
                    resp.pasid_hwpt_ids[pasid] = hwpt.id
        return resp

    def _bind(self, sess: Session, device_fd: int, iommufd: int, flags: int, cookie: int) -> int:
        devfd = sess.device_fd(device_fd)
        device.bind_check(devfd, flags, iommufd)  # device-side checks come before the fd's
        ctx = sess.iommufd_arg(iommufd)
        return device.bind(devfd, ctx, cookie, self.config.group_stage)

    @rpc()
    def DeviceBindIommufd(self, request: pb.DeviceBindIommufdRequest,
                          sess: Session) -> pb.DeviceBindIommufdResponse:
        return pb.DeviceBindIommufdResponse(out_devid=self._bind(
            sess, request.device_fd, request.iommufd, request.flags, request.cookie))

    @rpc()
    def IommufdBindDevice(self, request: pb.IommufdBindDeviceRequest,
                          sess: Session) -> pb.IommufdBindDeviceResponse:
        sess.context(request.iommufd)
        return pb.IommufdBindDeviceResponse(dev_id=self._bind(
            sess, request.device_fd, request.iommufd, 0, request.cookie))

    @rpc()
    def DeviceAttachIommufdPt(self, request: pb.DeviceAttachIommufdPtRequest,
                              sess: Session) -> pb.DeviceAttachIommufdPtResponse:
        devfd = sess.device_fd(request.device_fd)
        return pb.DeviceAttachIommufdPtResponse(pt_id=device.attach(
            devfd, request.flags, request.pt_id, request.pasid, self.config.group_stage))

    @rpc()
    def DeviceDetachIommufdPt(self, request: pb.DeviceDetachIommufdPtRequest,
                              sess: Session) -> pb.DeviceDetachIommufdPtResponse:
        devfd = sess.device_fd(request.device_fd)
        device.detach_request(devfd, request.flags, request.pasid)
        return pb.DeviceDetachIommufdPtResponse()

    @rpc()
    def DeviceDma(self, request: pb.DeviceDmaRequest, sess: Session) -> pb.DeviceDmaResponse:
        devfd = sess.device_fd(request.device_fd)
        pasid = request.pasid if request.HasField("pasid") else None
        obj = devfd.require_bound("Device DMA")
        resp = pb.DeviceDmaResponse()
        for access in request.accesses:
            result = device.dma(devfd, pasid, access.iova, access.length, access.write)
            reason = _FAULT_REASONS.get(result.fault, pb.DMA_FAULT_REASON_UNSPECIFIED)
            resp.results.append(pb.DmaResult(ok=result.ok, pa=result.pa, fault=reason))
            if not result.ok:
                fault = pb.DmaFault(dev_id=obj.id, cookie=obj.cookie, iova=access.iova,
                                    write=access.write, reason=reason)
                if pasid is not None:
                    fault.pasid = pasid
                resp.faults.append(fault)
        return resp

    @rpc()
    def HwptAlloc(self, request: pb.HwptAllocRequest, sess: Session) -> pb.HwptAllocResponse:
        ctx = sess.context(request.iommufd)
        return pb.HwptAllocResponse(out_hwpt_id=hw_pagetable.hwpt_alloc(
            ctx, request.flags, request.dev_id, request.pt_id, request.data_type,
            request.data_len, request.fault_id, request.reserved))

    @rpc()
    def HwptSetDirtyTracking(self, request: pb.HwptSetDirtyTrackingRequest,
                             sess: Session) -> pb.HwptSetDirtyTrackingResponse:
        hw_pagetable.set_dirty_tracking(sess.context(request.iommufd), request.flags,
                                        request.hwpt_id)
        return pb.HwptSetDirtyTrackingResponse()

    @rpc()
    def HwptGetDirtyBitmap(self, request: pb.HwptGetDirtyBitmapRequest,
                           sess: Session) -> pb.HwptGetDirtyBitmapResponse:
        return pb.HwptGetDirtyBitmapResponse(data=hw_pagetable.get_dirty_bitmap(
            sess.context(request.iommufd), request.hwpt_id, request.flags, request.reserved,
            request.iova, request.length, request.page_size))

    @rpc()
    def HwptInvalidate(self, request: pb.HwptInvalidateRequest,
                       sess: Session) -> pb.HwptInvalidateResponse:
        return pb.HwptInvalidateResponse(entry_num=hw_pagetable.invalidate(
            sess.context(request.iommufd), request.hwpt_id, request.data, request.data_type,
            request.entry_len, request.entry_num, request.reserved))

    @rpc()
    def FaultQueueAlloc(self, request: pb.FaultQueueAllocRequest,
                        sess: Session) -> pb.FaultQueueAllocResponse:
        return pb.FaultQueueAllocResponse(out_fault_id=fault.fault_queue_alloc(
            sess.context(request.iommufd), request.flags))

    @rpc(journal=False)
    def GetHwInfo(self, request: pb.GetHwInfoRequest, sess: Session) -> pb.GetHwInfoResponse:
        ctx = sess.context(request.iommufd)
        info = device.get_hw_info(ctx, request.flags, request.dev_id, request.data_len,
                                  request.in_data_type, request.reserved)
        return pb.GetHwInfoResponse(**info)

    @rpc(journal=False)
    def GetCapabilities(self, request: pb.GetCapabilitiesRequest,
                        sess: Session) -> pb.GetCapabilitiesResponse:
        sess.context(request.iommufd)
        stage = self.config.group_stage
        return pb.GetCapabilitiesResponse(group_stage=stage, multi_device_groups=stage >= 2,
                                          split_groups=stage >= 3, bind_on_iommufd=True,
                                          pasid=True)

    # -- legacy VFIO container/group ------------------------------------------

    @rpc()
    def OpenContainer(self, request: pb.OpenContainerRequest,
                      sess: Session) -> pb.OpenContainerResponse:
        return pb.OpenContainerResponse(container_fd=vfio_compat.open_container(
            sess, self.config.vfio_mode, self.config.dma_entry_limit))

    @rpc(journal=False)
    def VfioGetApiVersion(self, request: pb.VfioGetApiVersionRequest,
                          sess: Session) -> pb.VfioGetApiVersionResponse:
        sess.context(request.container_fd)
        return pb.VfioGetApiVersionResponse(version=vfio_compat.VFIO_API_VERSION)

    @rpc(journal=False)
    def VfioCheckExtension(self, request: pb.VfioCheckExtensionRequest,
                           sess: Session) -> pb.VfioCheckExtensionResponse:
        ctx = sess.context(request.container_fd)
        return pb.VfioCheckExtensionResponse(
            value=vfio_compat.check_extension(ctx, request.extension))

    @rpc()
    def VfioSetIommu(self, request: pb.VfioSetIommuRequest, sess: Session) -> pb.VfioSetIommuResponse:
        vfio_compat.set_iommu(sess.context(request.container_fd), request.type,
                              self.config.group_stage)
        return pb.VfioSetIommuResponse()

    @rpc(journal=False)
    def VfioIommuGetInfo(self, request: pb.VfioIommuGetInfoRequest,
                         sess: Session) -> pb.VfioIommuGetInfoResponse:
        info = vfio_compat.get_info(sess.context(request.container_fd), request.argsz)
        resp = pb.VfioIommuGetInfoResponse(argsz=info["argsz"], flags=info["flags"],
                                           iova_pgsizes=info["iova_pgsizes"],
                                           cap_offset=info["cap_offset"])
        resp.iova_ranges.extend(pb.IovaRange(start=s, last=l) for s, l in info.get("iova_ranges", []))
        if "dma_avail" in info:
            resp.dma_avail = info["dma_avail"]
        if "migration" in info:
            flags, pgsize, max_size = info["migration"]
            resp.migration.CopyFrom(pb.VfioMigrationCap(flags=flags, pgsize_bitmap=pgsize,
                                                        max_dirty_bitmap_size=max_size))
        return resp

    @rpc()
    def VfioIommuMapDma(self, request: pb.VfioIommuMapDmaRequest,
                        sess: Session) -> pb.VfioIommuMapDmaResponse:
        vfio_compat.map_dma(sess.context(request.container_fd), request.argsz, request.flags,
                            request.vaddr, request.iova, request.size)
        return pb.VfioIommuMapDmaResponse()

    @rpc()
    def VfioIommuUnmapDma(self, request: pb.VfioIommuUnmapDmaRequest,
                          sess: Session) -> pb.VfioIommuUnmapDmaResponse:
        ctx = sess.context(request.container_fd)
        with self._partial_unmap_journaled(sess, "VfioIommuUnmapDma", vfio_compat.compat_iopt(ctx),
                                           request.iova, request.size,
                                           lambda n: with_fields(request, size=n)):
            size, bitmap = vfio_compat.unmap_dma(ctx, request.argsz, request.flags, request.iova,
                                                 request.size, request.bitmap_pgsize,
                                                 request.bitmap_size)
        return pb.VfioIommuUnmapDmaResponse(size=size, bitmap=bitmap)

    @rpc()
    def VfioIommuDirtyPages(self, request: pb.VfioIommuDirtyPagesRequest,
                            sess: Session) -> pb.VfioIommuDirtyPagesResponse:
        return pb.VfioIommuDirtyPagesResponse(bitmap=vfio_compat.dirty_pages(
            sess.context(request.container_fd), request.argsz, request.flags, request.iova,
            request.size, request.bitmap_pgsize, request.bitmap_size))

    @rpc()
    def OpenGroup(self, request: pb.OpenGroupRequest, sess: Session) -> pb.OpenGroupResponse:
        return pb.OpenGroupResponse(group_fd=sess.open_group(request.group))

    @rpc()
    def CloseGroup(self, request: pb.CloseGroupRequest, sess: Session) -> pb.CloseGroupResponse:
        sess.group_fd(request.group_fd)
        sess.close_fd(request.group_fd)
        return pb.CloseGroupResponse()

    @rpc(journal=False)
    def VfioGroupGetStatus(self, request: pb.VfioGroupGetStatusRequest,
                           sess: Session) -> pb.VfioGroupGetStatusResponse:
        return pb.VfioGroupGetStatusResponse(flags=vfio_compat.get_status(
            sess.group_fd(request.group_fd), request.argsz))

    @rpc()
    def VfioGroupSetContainer(self, request: pb.VfioGroupSetContainerRequest,
                              sess: Session) -> pb.VfioGroupSetContainerResponse:
        gfd = sess.group_fd(request.group_fd)
        ctx = sess.iommufd_arg(request.container_fd)
        vfio_compat.set_container(gfd, ctx, self.config.group_stage)
        return pb.VfioGroupSetContainerResponse()

    @rpc()
    def VfioGroupUnsetContainer(self, request: pb.VfioGroupUnsetContainerRequest,
                                sess: Session) -> pb.VfioGroupUnsetContainerResponse:
        vfio_compat.unset_container(sess.group_fd(request.group_fd))
        return pb.VfioGroupUnsetContainerResponse()

    @rpc()
    def VfioGroupGetDeviceFd(self, request: pb.VfioGroupGetDeviceFdRequest,
                             sess: Session) -> pb.VfioGroupGetDeviceFdResponse:
        group = sess.group_fd(request.group_fd)
        sess.check_fd_room()
        devfd = vfio_compat.get_device_fd(group, request.name, self.config.group_stage)
        return pb.VfioGroupGetDeviceFdResponse(device_fd=sess.install_device_fd(devfd))

    @rpc()
    def IommuVfioIoas(self, request: pb.IommuVfioIoasRequest,
                      sess: Session) -> pb.IommuVfioIoasResponse:
        return pb.IommuVfioIoasResponse(ioas_id=vfio_compat.vfio_ioas(
            sess.context(request.iommufd), request.ioas_id, request.op, request.reserved))

    # -- introspection ------------------------------------------------------

    @rpc(session="optional", journal=False)
    def Echo(self, request: pb.EchoRequest, sess: Session | None) -> pb.EchoResponse:
        return pb.EchoResponse(payload=request.payload)

    @rpc(session="optional", journal=False)
    def GetInfo(self, request: pb.GetInfoRequest, sess: Session | None) -> pb.GetInfoResponse:
        cfg = self.config
        resp = pb.GetInfoResponse(
            version=__version__, core_version=_core.__version__, page_size=_core.PAGE_SIZE,
            limits=pb.Limits(
                max_contexts_per_session=cfg.max_contexts_per_session,
                max_objects_per_context=cfg.max_objects_per_context,
                max_translate_batch=cfg.max_translate_batch,
                max_message_bytes=cfg.max_message_bytes,
                lease_seconds_default=cfg.lease_seconds,
                lease_seconds_max=cfg.lease_max_seconds,
                max_fds_per_session=cfg.max_fds_per_session,
                max_areas_per_ioas=cfg.max_areas_per_ioas,
                max_mapped_bytes_per_session=cfg.max_mapped_bytes_per_session,
                max_sessions=cfg.max_sessions,
                dma_entry_limit=cfg.dma_entry_limit),
            daemon=_counts(list(self.sessions)), group_stage=cfg.group_stage,
            topology_source=self.host.topology.source)
        if sess is not None:
            resp.session.CopyFrom(_counts([sess]))
            resp.session_id = sess.session_id
        return resp

    @rpc(journal=False)
    def ListObjects(self, request: pb.ListObjectsRequest, sess: Session) -> pb.ListObjectsResponse:
        ctx = sess.context(request.iommufd)
        out = []
        for obj in ctx.objects():
            info = pb.ObjectInfo(id=obj.id, type=int(obj.type), users=obj.users)
            if isinstance(obj, Ioas):
                info.areas = obj.num_areas
                info.mapped_bytes = obj.mapped_bytes
            elif isinstance(obj, HwptPaging):
                info.ioas_id = obj.ioas.id
                info.auto_domain = obj.auto_domain
            elif isinstance(obj, DeviceObj):
                info.device = obj.host_dev.name
                info.cookie = obj.cookie
            out.append(info)
        return pb.ListObjectsResponse(objects=out)

    @rpc(journal=False)
    def ListAreas(self, request: pb.ListAreasRequest, sess: Session) -> pb.ListAreasResponse:
        iopt = sess.context(request.iommufd).get(request.ioas_id, Ioas, "IOAS").iopt
        return pb.ListAreasResponse(areas=[
            pb.Area(iova=iova, length=length, user_va=user_va, prot=prot)
            for iova, length, user_va, prot in iopt.areas()])
