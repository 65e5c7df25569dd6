"""Synchronous client for the iommud IommuService.

The objects mirror the kernel's: a Client is a connection, a Session is a
process (it owns an fd table and a secret token), a Context is one open
/dev/iommu fd. Every method is one RPC, named after the ioctl it models, and
raises IommudError carrying the errno on failure.

A session opened or attached by the client keeps itself alive for as long as
it is held: a daemon thread holds a WatchSession stream open and reopens it
after transient failures (see `iommud_client.lease`). Pass keepalive=False
to leave the lease to the caller.

Each operation's request and reply handling is defined once, in `_ops`, and
bound here as a method; `iommud_client.aio` binds the same definitions as
coroutines.
"""
from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Self, TypeVar

import grpc

from iommud_client import _ops
from iommud_client._ops import (
    BatchTranslation as BatchTranslation,
    Buffer as Buffer,
    DmaAccess as DmaAccess,
    IovaRange as IovaRange,
    MockDomain as MockDomain,
    Op,
    Translation as Translation,
    Vevent as Vevent,
    pack_u64 as _pack_u64,  # noqa: F401  (kept for callers of the old private name)
    parse_vevents,
    sync_method as _m,
)
from iommud_client.errors import IommudError
from iommud_client.lease import KeepalivePolicy, KeepaliveStatus, LeaseKeeper, StopReason
from iommud_wire import metadata, pb, pb_grpc
from iommud_wire.endpoint import default_endpoint, normalize_endpoint

# The uAPI constants callers pass, re-exported so `iommud_client` is the one import.
from iommud_wire.uapi import (
    IOMMU_IOAS_MAP_FIXED_IOVA as IOMMU_IOAS_MAP_FIXED_IOVA,
    IOMMU_IOAS_MAP_READABLE as IOMMU_IOAS_MAP_READABLE,
    IOMMU_IOAS_MAP_WRITEABLE as IOMMU_IOAS_MAP_WRITEABLE,
    IOMMU_VEVENTQ_TYPE_SELFTEST,
    UNMAP_ALL_LENGTH as UNMAP_ALL_LENGTH,
    VFIO_DEVICE_ATTACH_PASID as VFIO_DEVICE_ATTACH_PASID,
    VFIO_DEVICE_BIND_FLAG_TOKEN as VFIO_DEVICE_BIND_FLAG_TOKEN,
    VFIO_DEVICE_DETACH_PASID as VFIO_DEVICE_DETACH_PASID,
    VFIO_DMA_MAP_FLAG_READ as VFIO_DMA_MAP_FLAG_READ,
    VFIO_DMA_MAP_FLAG_WRITE as VFIO_DMA_MAP_FLAG_WRITE,
    VFIO_DMA_UNMAP_FLAG_ALL as VFIO_DMA_UNMAP_FLAG_ALL,
    VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP as VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
    VFIO_GROUP_FLAGS_CONTAINER_SET as VFIO_GROUP_FLAGS_CONTAINER_SET,
    VFIO_GROUP_FLAGS_VIABLE as VFIO_GROUP_FLAGS_VIABLE,
    VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP as VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
    VFIO_IOMMU_DIRTY_PAGES_FLAG_START as VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
    VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP as VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
    VFIO_TYPE1_IOMMU as VFIO_TYPE1_IOMMU,
    VFIO_TYPE1v2_IOMMU as VFIO_TYPE1v2_IOMMU,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

#: Request metadata key that carries the session token.
SESSION_METADATA_KEY = metadata.SESSION

#: Channel options every client sets before the caller's own (which win):
#: large messages for batches, and reconnection attempts at most 1 s apart
#: (gRPC's default backoff grows to 120 s, longer than any lease, so a
#: restarted daemon would be found only after it had reaped the session).
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)

_T = TypeVar("_T")
_R = TypeVar("_R")


def name_bound_ops(cls: type[_T]) -> type[_T]:
    """Give the methods bound from `_ops` the names they have in `cls`
    (help() and tracebacks show Context.ioas_map, not the builder's name)."""
    for attr, value in vars(cls).items():
        if callable(value) and hasattr(value, "__wrapped__"):
            value.__name__ = attr
            value.__qualname__ = f"{cls.__qualname__}.{attr}"
    return cls


def read_file(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


@name_bound_ops
class Client:
    """A connection to one iommud daemon.

    Args:
        endpoint: gRPC target ('unix:/run/iommud/iommud.sock', a bare socket
            path, or 'host:port'); default from IOMMUD_ENDPOINT or the
            daemon's default socket.
        timeout: per-call deadline in seconds.
        options: extra gRPC channel options (after CHANNEL_OPTIONS, so they win).
        tls_ca: PEM file of the CA that signed the daemon's certificate; with
            it the channel uses TLS (TCP endpoints only).
        tls_cert, tls_key: PEM client certificate and key for mutual TLS; the
            certificate's subject CN is the caller's identity.
        keepalive: whether sessions opened or attached through this client
            keep themselves alive (default); each call may override it.
    """

    def __init__(self, endpoint: str | None = None, *, timeout: float | None = 30.0,
                 options: Sequence[tuple[str, Any]] = (), tls_ca: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 keepalive: bool = True) -> None:
        self.endpoint = normalize_endpoint(endpoint) if endpoint else default_endpoint()
        self.timeout = timeout
        self.keepalive = keepalive
        opts = [*CHANNEL_OPTIONS, *options]
        if tls_ca or tls_cert or tls_key:
            creds = grpc.ssl_channel_credentials(read_file(tls_ca), read_file(tls_key),
                                                 read_file(tls_cert))
            self.channel = grpc.secure_channel(self.endpoint, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(self.endpoint, options=opts)
        self.stub = pb_grpc.IommuServiceStub(self.channel)  # type: ignore[no-untyped-call]
        #: Extra metadata sent with every call, e.g. tracing headers, or
        #: ("iommud-fail-nth", "3") against a daemon run with debug_fail_nth.
        #: Keepalive streams never carry it.
        self.metadata: list[tuple[str, str]] = []
        self._keepers: weakref.WeakSet[LeaseKeeper] = weakref.WeakSet()
        self._keepers_lock = threading.Lock()

    def close(self) -> None:
        """Stop every session's keepalive (their leases run from now), then
        close the channel."""
        with self._keepers_lock:
            keepers = list(self._keepers)
        for keeper in keepers:
            keeper.stop(StopReason.CLIENT_CLOSED, timeout=0)
        for keeper in keepers:
            keeper.stop(StopReason.CLIENT_CLOSED)
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, request: Any, token: str | None = None) -> Any:
        """Invoke `method` of IommuService with `request`, as `token`'s session.

        This is the raw form every helper below uses; conformance tests use it
        to send requests the helpers would not build.
        """
        fn: Callable[..., Any] = getattr(self.stub, method)
        md = (((SESSION_METADATA_KEY, token),) if token else ()) + tuple(self.metadata)
        try:
            return fn(request, metadata=md, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise IommudError.from_rpc_error(exc) from None

    def _run(self, op: Op[_R]) -> _R:
        """An operation that needs no session, sent without a token."""
        return op.read(self.call(op.method, op.request))

    admin_sessions = _m(_ops.admin_sessions)

    def health(self, service: str = "") -> str:
        """The grpc.health.v1 status name of `service` (default: the server)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # a dependency; imported when used

        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise IommudError.from_rpc_error(exc) from None
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        return name

    def info(self, token: str | None = None) -> pb.GetInfoResponse:
        resp: pb.GetInfoResponse = self.call("GetInfo", pb.GetInfoRequest(), token)
        return resp

    def echo(self, payload: bytes = b"", token: str | None = None) -> bytes:
        """Round-trip `payload` through the daemon (token checked if given)."""
        resp: pb.EchoResponse = self.call("Echo", pb.EchoRequest(payload=payload), token)
        return resp.payload

    def open_session(self, client_name: str = "", lease_seconds: int = 0, *,
                     keepalive: bool | None = None) -> Session:
        """Start a session (a process); close it, or use it as a context manager.

        With keepalive (the client's default) the session lives until it is
        closed, the client is closed, or nobody holds it; without, it is
        reaped `lease_seconds` after its last call."""
        resp = self.call("OpenSession", pb.OpenSessionRequest(client_name=client_name,
                                                              lease_seconds=lease_seconds))
        return Session(self, resp.token, resp.session_id, resp.lease_seconds,
                       keepalive=self.keepalive if keepalive is None else keepalive)

    def attach_session(self, token: str, *, keepalive: bool | None = None) -> Session:
        """Use an existing session by its token (for example from another
        process); it is kept alive from here as open_session's are."""
        resp = self.call("KeepAlive", pb.KeepAliveRequest(), token)
        info = self.info(token)
        return Session(self, token, info.session_id, resp.lease_seconds,
                       keepalive=self.keepalive if keepalive is None else keepalive)

    def _adopt(self, keeper: LeaseKeeper) -> None:
        with self._keepers_lock:
            self._keepers.add(keeper)


@name_bound_ops
class Session:
    """A session: the analogue of a process, owning an fd table.

    With keepalive=True a LeaseKeeper (`lease_keeper`) holds its lease for as
    long as this object is alive and not closed.
    """

    def __init__(self, client: Client, token: str, session_id: str, lease_seconds: int, *,
                 keepalive: bool = False) -> None:
        self.client = client
        self.token = token
        self.session_id = session_id
        self.lease_seconds = lease_seconds
        #: The keeper holding the lease, or None (keepalive=False).
        self.lease_keeper: LeaseKeeper | None = None
        self._keeper_finalizer: weakref.finalize[Any, Any] | None = None
        if keepalive:
            self.start_keepalive()

    def call(self, method: str, request: Any) -> Any:
        return self.client.call(method, request, self.token)

    def _run(self, op: Op[_R]) -> _R:
        return op.read(self.call(op.method, op.request))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        except IommudError:
            pass  # already reaped or closed

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> int:
        """Stop the keepalive, then close every fd of the session; returns
        how many were closed."""
        self.stop_keepalive(StopReason.CLOSED)
        return self._run(_ops.close_session(self))

    def start_keepalive(self, policy: KeepalivePolicy | None = None) -> LeaseKeeper:
        """Keep the lease alive in the background (a no-op while it is)."""
        keeper = self.lease_keeper
        if keeper is not None and keeper.alive:
            return keeper
        if self._keeper_finalizer is not None:
            self._keeper_finalizer.detach()
        keeper = LeaseKeeper(self.client.stub, self.token, self.lease_seconds,
                             session_id=self.session_id, policy=policy)
        self.lease_keeper = keeper
        self.client._adopt(keeper)
        # Nobody holds the session any more: let its lease run out.
        self._keeper_finalizer = weakref.finalize(self, keeper._release)
        self._keeper_finalizer.atexit = False      # lease.py's own exit hook stops it
        return keeper.start()

    def stop_keepalive(self, reason: StopReason = StopReason.CLOSED,
                       timeout: float | None = 5.0) -> None:
        """Stop keeping the lease alive: it runs out `lease_seconds` after
        the last call."""
        if self.lease_keeper is not None:
            self.lease_keeper.stop(reason, timeout)

    @property
    def keepalive_alive(self) -> bool:
        """The session's lease is being kept alive in the background."""
        return self.lease_keeper is not None and self.lease_keeper.alive

    @property
    def keepalive_error(self) -> IommudError | None:
        """The keepalive's most recent failure (ESRCH when it stopped because
        the session is gone), or None."""
        return self.lease_keeper.last_error if self.lease_keeper is not None else None

    def keepalive_status(self) -> KeepaliveStatus | None:
        """A snapshot of the keepalive, or None without one."""
        return self.lease_keeper.status() if self.lease_keeper is not None else None

    keepalive = _m(_ops.keepalive)

    def watch(self, interval_ms: int = 1000) -> Iterator[pb.WatchSessionResponse]:
        """Hold the session alive while iterating; yields heartbeats.

        Cancel with the returned iterator's .cancel() (it is a grpc call).
        """
        it: Iterator[pb.WatchSessionResponse] = self.client.stub.WatchSession(
            pb.WatchSessionRequest(interval_ms=interval_ms),
            metadata=((SESSION_METADATA_KEY, self.token),))
        return it

    info = _m(_ops.session_info)
    debug_advance_clock = _m(_ops.debug_advance_clock)

    # -- fds ------------------------------------------------------------------------------------

    def open_context(self) -> Context:
        """open("/dev/iommu"): a new iommufd context."""
        return Context(self, self._run(_ops.open_context(self)))

    def context(self, iommufd: int) -> Context:
        """A handle on an already open context fd of this session."""
        return Context(self, iommufd)

    def open_device(self, name: str) -> DeviceFd:
        """open("/dev/vfio/devices/vfioN") of the host device `name` (e.g. 0000:03:00.0)."""
        return DeviceFd(self, self._run(_ops.open_device(self, name)), name)

    def open_container(self) -> Container:
        """open("/dev/vfio/vfio"): a legacy VFIO container (also an iommufd)."""
        return Container(self, self._run(_ops.open_container(self)))

    def open_group(self, group: int) -> Group:
        """open("/dev/vfio/<group>")."""
        return Group(self, self._run(_ops.open_group(self, group)), group)

    def open_memfd(self, size: int, name: str = "") -> Memfd:
        """memfd_create() and ftruncate() in the daemon: a file to map with
        Context.ioas_map_file (gRPC cannot pass one of the caller's fds)."""
        return Memfd(self, self._run(_ops.open_memfd(self, size, name)))

    process_pins = _m(_ops.process_pins)

    # -- devices and the host -------------------------------------------------------------------

    list_devices = _m(_ops.list_devices)
    list_groups = _m(_ops.list_groups)
    group = _m(_ops.group)
    bind_host_driver = _m(_ops.bind_host_driver)
    unbind_host_driver = _m(_ops.unbind_host_driver)
    hot_add_device = _m(_ops.hot_add_device)
    hot_remove_device = _m(_ops.hot_remove_device)

    def watch_host(self) -> Iterator[pb.WatchHostResponse]:
        """Stream of ownership, viability, driver and hot-plug events (cancel() to stop)."""
        it: Iterator[pb.WatchHostResponse] = self.client.stub.WatchHost(
            pb.WatchHostRequest(), metadata=((SESSION_METADATA_KEY, self.token),))
        return it


class _FdHandle:
    """Shared shape of a session's fd handles: calls go out as the session,
    and `with` closes the fd (ignoring an fd the daemon already closed)."""

    session: Session

    def _call(self, method: str, request: Any) -> Any:
        return self.session.call(method, request)

    def _run(self, op: Op[_R]) -> _R:
        return op.read(self.session.call(op.method, op.request))

    #: close() of the fd: each handle binds its own from `_ops`.
    close: Callable[[], Any]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        except IommudError:
            pass


@name_bound_ops
class Context(_FdHandle):
    """One iommufd context (an open /dev/iommu fd) of a session."""

    def __init__(self, session: Session, iommufd: int) -> None:
        self.session = session
        self.iommufd = iommufd

    close = _m(_ops.close_context)
    destroy = _m(_ops.destroy)
    ioas_alloc = _m(_ops.ioas_alloc)
    ioas_iova_ranges = _m(_ops.ioas_iova_ranges)
    ioas_allow_iovas = _m(_ops.ioas_allow_iovas)
    ioas_map = _m(_ops.ioas_map)
    ioas_map_batch = _m(_ops.ioas_map_batch)
    ioas_copy = _m(_ops.ioas_copy)
    ioas_unmap = _m(_ops.ioas_unmap)
    ioas_unmap_all = _m(_ops.ioas_unmap_all)
    option = _m(_ops.option)
    ioas_change_process = _m(_ops.ioas_change_process)
    ioas_map_file = _m(_ops.ioas_map_file)
    hwpt_invalidate = _m(_ops.hwpt_invalidate)

    def fault_queue_alloc(self, flags: int = 0) -> FaultQueue:
        """IOMMU_FAULT_QUEUE_ALLOC: a fault queue and its fd."""
        fault_id, fd = self._run(_ops.fault_queue_alloc(self, flags))
        return FaultQueue(self, fault_id, fd)

    viommu_alloc = _m(_ops.viommu_alloc)
    viommu_alloc_data = _m(_ops.viommu_alloc_data)
    mmap = _m(_ops.iommufd_mmap)
    munmap = _m(_ops.iommufd_munmap)
    vdevice_alloc = _m(_ops.vdevice_alloc)
    hw_queue_alloc = _m(_ops.hw_queue_alloc)

    def veventq_alloc(self, viommu_id: int, depth: int,
                      type: int = IOMMU_VEVENTQ_TYPE_SELFTEST, *, flags: int = 0,
                      reserved: int = 0) -> Veventq:
        """IOMMU_VEVENTQ_ALLOC: the vIOMMU's event queue of `type`, and its fd."""
        veventq_id, fd = self._run(_ops.veventq_alloc(self, viommu_id, depth, type,
                                                      flags=flags, reserved=reserved))
        return Veventq(self, veventq_id, fd)
    translate = _m(_ops.translate)
    translate_batch = _m(_ops.translate_batch)
    bind_device = _m(_ops.bind_device)
    hwpt_alloc = _m(_ops.hwpt_alloc)
    hwpt_set_dirty_tracking = _m(_ops.hwpt_set_dirty_tracking)
    hwpt_get_dirty_bitmap = _m(_ops.hwpt_get_dirty_bitmap)
    get_hw_info = _m(_ops.get_hw_info)
    capabilities = _m(_ops.capabilities)
    list_objects = _m(_ops.list_objects)
    list_areas_page = _m(_ops.list_areas_page)

    def list_areas(self, ioas_id: int) -> list[pb.Area]:
        """Every area of the IOAS, in IOVA order, fetched page by page (the
        daemon answers at most 4096 per call). Each page is consistent; an
        IOAS changed by another caller meanwhile may show a mix of both."""
        areas: list[pb.Area] = []
        start = 0
        while True:
            page = self.list_areas_page(ioas_id, start)
            areas.extend(page.areas)
            if not page.more:
                return areas
            start = page.next_iova

    # -- the kAPI by dev_id ----------------------------------------------------------------------
    device_attach = _m(_ops.device_attach)
    device_replace = _m(_ops.device_replace)
    device_detach = _m(_ops.device_detach)
    device_dma = _m(_ops.device_dma)

    # -- the selftest mock driver (a daemon with debug_selftest) --------------------------------
    mock_domain = _m(_ops.mock_domain)
    mock_domain_replace = _m(_ops.mock_domain_replace)
    test_add_reserved = _m(_ops.test_add_reserved)
    md_check_map = _m(_ops.md_check_map)
    md_check_refs = _m(_ops.md_check_refs)
    test_dirty = _m(_ops.test_dirty)

    def create_access(self, ioas_id: int, flags: int = 0) -> Access:
        """IOMMU_TEST_OP_CREATE_ACCESS: an emulated device's access fd."""
        return Access(self, self._run(_ops.create_access(self, ioas_id, flags)))

    set_temp_memory_limit = _m(_ops.set_temp_memory_limit)
    pasid_attach = _m(_ops.pasid_attach)
    pasid_replace = _m(_ops.pasid_replace)
    pasid_detach = _m(_ops.pasid_detach)
    pasid_check_hwpt = _m(_ops.pasid_check_hwpt)
    dev_check_cache = _m(_ops.dev_check_cache)
    md_check_iotlb = _m(_ops.md_check_iotlb)
    trigger_iopf = _m(_ops.trigger_iopf)

    def dmabuf_get(self, length: int, open_flags: int = 0) -> Dmabuf:
        """IOMMU_TEST_OP_DMABUF_GET: a test dma-buf, as an fd of the session."""
        return Dmabuf(self, self._run(_ops.dmabuf_get(self, length, open_flags)))
    trigger_vevent = _m(_ops.trigger_vevent)


@name_bound_ops
class Veventq(_FdHandle):
    """A vEVENTQ of a context, and its fd (which holds it until closed)."""

    def __init__(self, ctx: Context, veventq_id: int, veventq_fd: int) -> None:
        self.session = ctx.session
        self.ctx = ctx
        self.veventq_id = veventq_id
        self.veventq_fd = veventq_fd

    close = _m(_ops.close_veventq)
    read = _m(_ops.veventq_read)

    def read_events(self, data_len: int, count: int = 4096) -> list[Vevent]:
        """read() of the fd, parsed: the records that fit `count` bytes, each
        with `data_len` bytes of data (lost-events headers have none)."""
        return parse_vevents(self.read(count), data_len)

    def watch(self) -> Iterator[pb.WatchVeventqResponse]:
        """The queue as a stream: each record as it is queued, taken off the
        queue as it is sent; it ends when the fd is closed (.cancel() to stop)."""
        it: Iterator[pb.WatchVeventqResponse] = self.session.client.stub.WatchVeventq(
            pb.WatchVeventqRequest(veventq_fd=self.veventq_fd),
            metadata=((SESSION_METADATA_KEY, self.session.token),))
        return it


@name_bound_ops
class FaultQueue(_FdHandle):
    """A fault queue of a context, and its fd (which holds it until closed)."""

    def __init__(self, ctx: Context, fault_id: int, fault_fd: int) -> None:
        self.session = ctx.session
        self.ctx = ctx
        self.fault_id = fault_id
        self.fault_fd = fault_fd

    close = _m(_ops.close_fault_queue)
    read = _m(_ops.fault_queue_read)
    respond = _m(_ops.fault_queue_respond)

    def watch(self) -> Iterator[pb.WatchFaultQueueResponse]:
        """The queue as a stream: each fault group as it is delivered, read
        as it is sent; it ends when the fd is closed (.cancel() to stop)."""
        it: Iterator[pb.WatchFaultQueueResponse] = self.session.client.stub.WatchFaultQueue(
            pb.WatchFaultQueueRequest(fault_fd=self.fault_fd),
            metadata=((SESSION_METADATA_KEY, self.session.token),))
        return it


@name_bound_ops
class Access(_FdHandle):
    """A selftest access fd on an iommufd context (an emulated device)."""

    def __init__(self, ctx: Context, access_fd: int) -> None:
        self.session = ctx.session
        self.ctx = ctx
        self.access_fd = access_fd

    close = _m(_ops.close_access)
    pages = _m(_ops.access_pages)
    destroy_pages = _m(_ops.access_destroy_pages)
    rw = _m(_ops.access_rw)
    replace_ioas = _m(_ops.access_replace_ioas)


@name_bound_ops
class Memfd(_FdHandle):
    """A daemon-side memfd of the session (OpenMemfd)."""

    def __init__(self, session: Session, fd: int) -> None:
        self.session = session
        self.fd = fd

    close = _m(_ops.close_file)
    truncate = _m(_ops.memfd_truncate)


@name_bound_ops
class Dmabuf(_FdHandle):
    """A selftest dma-buf's fd (TestDmabufGet), issued on a context."""

    def __init__(self, ctx: Context, fd: int) -> None:
        self.session = ctx.session
        self.ctx = ctx
        self.fd = fd

    close = _m(_ops.close_file)
    revoke = _m(_ops.dmabuf_revoke)


@name_bound_ops
class DeviceFd(_FdHandle):
    """A session's open VFIO device fd (the device cdev)."""

    def __init__(self, session: Session, device_fd: int, name: str) -> None:
        self.session = session
        self.device_fd = device_fd
        self.name = name

    close = _m(_ops.close_device)
    info = _m(_ops.device_info)
    bind = _m(_ops.device_bind)
    attach = _m(_ops.device_attach_pt)
    detach = _m(_ops.device_detach_pt)
    dma = _m(_ops.device_dma_fd)
    read = _m(_ops.device_read)
    write = _m(_ops.device_write)


@name_bound_ops
class Container(Context):
    """A legacy VFIO container fd. It is an iommufd context too, so the
    native IOMMU_* methods of Context work on it, as in the kernel."""

    @property
    def container_fd(self) -> int:
        return self.iommufd

    get_api_version = _m(_ops.get_api_version)
    check_extension = _m(_ops.check_extension)
    set_iommu = _m(_ops.set_iommu)
    iommu_get_info = _m(_ops.iommu_get_info)
    map_dma = _m(_ops.map_dma)
    unmap_dma = _m(_ops.unmap_dma)
    dirty_pages = _m(_ops.dirty_pages)
    vfio_ioas = _m(_ops.vfio_ioas)


def vfio_ioas(ctx: Context, op: int, ioas_id: int = 0, reserved: int = 0) -> int:
    """IOMMU_VFIO_IOAS on any iommufd: GET 0, SET 1, CLEAR 2."""
    return ctx._run(_ops.vfio_ioas(ctx, op, ioas_id, reserved))


@name_bound_ops
class Group(_FdHandle):
    """A legacy VFIO group fd (/dev/vfio/<group>)."""

    def __init__(self, session: Session, group_fd: int, group: int) -> None:
        self.session = session
        self.group_fd = group_fd
        self.group = group

    close = _m(_ops.close_group)
    get_status = _m(_ops.group_get_status)
    set_container = _m(_ops.group_set_container)
    unset_container = _m(_ops.group_unset_container)

    def get_device_fd(self, name: str) -> DeviceFd:
        return DeviceFd(self.session, self._run(_ops.group_get_device_fd(self, name)), name)
