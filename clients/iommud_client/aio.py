"""The asyncio client: the synchronous client's surface, awaited.

    from iommud_client.aio import AsyncClient

    async with AsyncClient() as c, await c.open_session("vmm") as s, \\
            await s.open_context() as ctx:
        ioas = await ctx.ioas_alloc()
        iova = await ctx.ioas_map(ioas, user_va=0x7f0000000000, length=0x200000)

Every class mirrors one of iommud_client.client (AsyncClient, AsyncSession,
AsyncContext, AsyncContainer, AsyncDeviceFd, AsyncGroup, AsyncAccess) with
the same method names and arguments; each method that makes an RPC is a
coroutine. The operations themselves (requests, replies) are the very
definitions the synchronous classes use (`_ops`), bound with `async_method`.
What does no I/O stays a plain method (`Session.context`, the keepalive
state) and streams (`watch`, `watch_host`) return the grpc.aio call, an
async iterator with .cancel(). `async with` closes what it opened.

Sessions keep themselves alive as the synchronous ones do, with an asyncio
task in place of the thread (AsyncLeaseKeeper, same policy and status; see
iommud_client.lease). The task runs on the loop that opened the session and
stops on ESRCH, on close, on AsyncClient.close(), when the session object is
garbage collected, and when its loop shuts down (asyncio.run cancels it).
Use a client from the one event loop that created it, as grpc.aio requires.
"""
from __future__ import annotations

import asyncio
import errno as E
import time
import weakref
from typing import TYPE_CHECKING, Any, Self, TypeVar

import grpc
import grpc.aio

from iommud_client import _ops
from iommud_client._ops import Op, Vevent, async_method as _am, parse_vevents
from iommud_client.client import CHANNEL_OPTIONS, SESSION_METADATA_KEY, name_bound_ops, read_file
from iommud_client.errors import IommudError
from iommud_client.lease import (
    KeepalivePolicy,
    KeepaliveStatus,
    StopReason,
    _KeeperCore,
    _register,
    session_metadata,
    stall_error,
    watch_request,
)
from iommud_wire import pb, pb_grpc
from iommud_wire.endpoint import default_endpoint, normalize_endpoint
from iommud_wire.uapi import IOMMU_VEVENTQ_TYPE_SELFTEST

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

_R = TypeVar("_R")

__all__ = [
    "AsyncAccess",
    "AsyncClient",
    "AsyncContainer",
    "AsyncContext",
    "AsyncDeviceFd",
    "AsyncDmabuf",
    "AsyncFaultQueue",
    "AsyncGroup",
    "AsyncLeaseKeeper",
    "AsyncMemfd",
    "AsyncSession",
    "vfio_ioas",
]


class AsyncLeaseKeeper:
    """LeaseKeeper's asyncio form: one task holds the WatchSession stream.

    Made by AsyncSession.start_keepalive(), inside the running loop. Its
    methods belong to that loop, except `status()` and the properties,
    which only read.
    """

    def __init__(self, stub: Any, token: str, lease_seconds: float, *, session_id: str = "",
                 policy: KeepalivePolicy | None = None) -> None:
        self.policy = policy or KeepalivePolicy.for_lease(lease_seconds)
        self.session_id = session_id
        self._stub = stub
        self._metadata = session_metadata(token)
        self._request = watch_request(self.policy)
        self._core = _KeeperCore(self.policy)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._changed = asyncio.Event()

    def start(self) -> Self:
        """Start the task on the running loop (a no-op once started)."""
        if self._task is not None or self._core.stopped:
            return self
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._task = self._loop.create_task(
            self._run(), name=f"iommud-keepalive-{self.session_id or 'session'}")
        _register(self)
        return self

    # -- state -------------------------------------------------------------------------------

    def status(self) -> KeepaliveStatus:
        return self._core.status(self._running)

    @property
    def alive(self) -> bool:
        return self.status().running

    @property
    def last_error(self) -> IommudError | None:
        return self._core.last_error

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, predicate: Callable[[KeepaliveStatus], bool],
                   timeout: float | None = None) -> bool:
        """Until `predicate(status)` holds (True) or `timeout` passes (False)."""
        async def until() -> None:
            while not predicate(self.status()):
                await self._changed.wait()
        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            return predicate(self.status())
        return True

    # -- stopping ----------------------------------------------------------------------------

    async def stop(self, reason: StopReason = StopReason.CLOSED,
                   timeout: float | None = 5.0) -> bool:
        """Stop for good: cancel the task (which cancels its stream) and,
        unless `timeout` is 0, wait up to `timeout` for it. True once ended."""
        self._core.stop(reason)
        task = self._task
        if task is None or task.done():
            return True
        task.cancel()
        if task is asyncio.current_task() or timeout == 0:
            return False
        done, _ = await asyncio.wait({task}, timeout=timeout)
        return bool(done)

    def _stop_soon(self, reason: StopReason) -> None:
        """Stop from outside a coroutine, from any thread."""
        loop, task = self._loop, self._task
        if loop is None or task is None or task.done() or loop.is_closed():
            self._core.stop(reason)
            return

        def stop_now() -> None:
            self._core.stop(reason)
            task.cancel()
        try:
            loop.call_soon_threadsafe(stop_now)
        except RuntimeError:              # the loop closed in between
            self._core.stop(reason)

    def _release(self) -> None:
        """The AsyncSession was garbage collected."""
        self._stop_soon(StopReason.RELEASED)

    def _after_fork_in_child(self) -> None:
        self._core.stop(StopReason.FORK)
        self._running = False

    # -- the task ----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            delay = 0.0
            while not self._core.stopped:
                if delay:
                    await asyncio.sleep(delay)
                call = self._stub.WatchSession(self._request, metadata=self._metadata)
                self._core.stream_opened(time.monotonic())
                self._notify()
                try:
                    error = await self._drain(call)
                finally:
                    call.cancel()
                if self._core.stopped:
                    return
                next_delay = self._core.stream_ended(error)
                self._notify()
                if next_delay is None:
                    return
                delay = next_delay
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                self._core.stop(StopReason.EXIT)      # no-op after stop(): its reason stays
                raise
            # The stream was cancelled under us: the channel was closed.
            self._core.stop(StopReason.CLIENT_CLOSED)
        except Exception as exc:   # a bug: say so in the status rather than die silently
            self._core.last_error = IommudError(E.EIO, f"keepalive failed: {exc!r}",
                                                errno_name="EIO")
            self._core.stop(StopReason.FAILED)
            raise
        finally:
            self._running = False
            self._notify()

    async def _drain(self, call: Any) -> IommudError | None:
        """Read heartbeats until the stream ends (None), fails (its error)
        or falls silent for stall_after (ETIMEDOUT)."""
        beats: AsyncIterator[pb.WatchSessionResponse] = call.__aiter__()
        try:
            while True:
                try:
                    await asyncio.wait_for(anext(beats), self.policy.stall_after)
                except StopAsyncIteration:
                    return None
                except TimeoutError:
                    return stall_error(self.policy.stall_after)
                self._core.heartbeat(time.monotonic())
                self._notify()
        except grpc.RpcError as exc:
            return IommudError.from_rpc_error(exc)


@name_bound_ops
class AsyncClient:
    """A connection to one iommud daemon, for asyncio (see Client for the
    arguments). Create and use it inside the one event loop it serves."""

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
            self.channel = grpc.aio.secure_channel(self.endpoint, creds, options=opts)
        else:
            self.channel = grpc.aio.insecure_channel(self.endpoint, options=opts)
        self.stub = pb_grpc.IommuServiceStub(self.channel)  # type: ignore[no-untyped-call]
        #: Extra metadata sent with every call (not with keepalive streams).
        self.metadata: list[tuple[str, str]] = []
        self._keepers: weakref.WeakSet[AsyncLeaseKeeper] = weakref.WeakSet()

    async def close(self) -> None:
        """Stop every session's keepalive (their leases run from now), then
        close the channel."""
        keepers = list(self._keepers)
        await asyncio.gather(*(k.stop(StopReason.CLIENT_CLOSED) for k in keepers))
        await self.channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(self, method: str, request: Any, token: str | None = None) -> Any:
        """Invoke `method` of IommuService with `request`, as `token`'s session."""
        fn: Callable[..., Any] = getattr(self.stub, method)
        md = (((SESSION_METADATA_KEY, token),) if token else ()) + tuple(self.metadata)
        try:
            return await fn(request, metadata=md, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise IommudError.from_rpc_error(exc) from None

    async def _run(self, op: Op[_R]) -> _R:
        """An operation that needs no session, sent without a token."""
        return op.read(await self.call(op.method, op.request))

    admin_sessions = _am(_ops.admin_sessions)

    async def health(self, service: str = "") -> str:
        """The grpc.health.v1 status name of `service` (default: the server)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # a dependency; imported when used

        stub: Any = health_pb2_grpc.HealthStub(self.channel)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                    timeout=self.timeout)
        except grpc.RpcError as exc:
            raise IommudError.from_rpc_error(exc) from None
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        return name

    async def info(self, token: str | None = None) -> pb.GetInfoResponse:
        resp: pb.GetInfoResponse = await self.call("GetInfo", pb.GetInfoRequest(), token)
        return resp

    async def echo(self, payload: bytes = b"", token: str | None = None) -> bytes:
        """Round-trip `payload` through the daemon (token checked if given)."""
        resp: pb.EchoResponse = await self.call("Echo", pb.EchoRequest(payload=payload), token)
        return resp.payload

    async def open_session(self, client_name: str = "", lease_seconds: int = 0, *,
                           keepalive: bool | None = None) -> AsyncSession:
        """Start a session; it keeps itself alive unless keepalive=False."""
        resp: pb.OpenSessionResponse = await self.call("OpenSession", pb.OpenSessionRequest(
            client_name=client_name, lease_seconds=lease_seconds))
        return AsyncSession(self, resp.token, resp.session_id, resp.lease_seconds,
                            keepalive=self.keepalive if keepalive is None else keepalive)

    async def attach_session(self, token: str, *, keepalive: bool | None = None) -> AsyncSession:
        """Use an existing session by its token; it is kept alive from here."""
        resp: pb.KeepAliveResponse = await self.call("KeepAlive", pb.KeepAliveRequest(), token)
        info = await self.info(token)
        return AsyncSession(self, token, info.session_id, resp.lease_seconds,
                            keepalive=self.keepalive if keepalive is None else keepalive)

    def _adopt(self, keeper: AsyncLeaseKeeper) -> None:
        self._keepers.add(keeper)


@name_bound_ops
class AsyncSession:
    """Session, for asyncio. Made by AsyncClient.open_session/attach_session."""

    def __init__(self, client: AsyncClient, token: str, session_id: str, lease_seconds: int, *,
                 keepalive: bool = False) -> None:
        self.client = client
        self.token = token
        self.session_id = session_id
        self.lease_seconds = lease_seconds
        #: The keeper holding the lease, or None (keepalive=False).
        self.lease_keeper: AsyncLeaseKeeper | None = None
        self._keeper_finalizer: weakref.finalize[Any, Any] | None = None
        if keepalive:
            self.start_keepalive()

    async def call(self, method: str, request: Any) -> Any:
        return await self.client.call(method, request, self.token)

    async def _run(self, op: Op[_R]) -> _R:
        return op.read(await self.call(op.method, op.request))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.close()
        except IommudError:
            pass  # already reaped or closed

    # -- lifetime ------------------------------------------------------------------------------

    async def close(self) -> int:
        """Stop the keepalive, then close every fd of the session; returns
        how many were closed."""
        await self.stop_keepalive(StopReason.CLOSED)
        return await self._run(_ops.close_session(self))

    def start_keepalive(self, policy: KeepalivePolicy | None = None) -> AsyncLeaseKeeper:
        """Keep the lease alive with a task on the running loop (a no-op
        while it is)."""
        keeper = self.lease_keeper
        if keeper is not None and keeper.alive:
            return keeper
        if self._keeper_finalizer is not None:
            self._keeper_finalizer.detach()
        keeper = AsyncLeaseKeeper(self.client.stub, self.token, self.lease_seconds,
                                  session_id=self.session_id, policy=policy)
        self.lease_keeper = keeper
        self.client._adopt(keeper)
        self._keeper_finalizer = weakref.finalize(self, keeper._release)
        self._keeper_finalizer.atexit = False
        return keeper.start()

    async def stop_keepalive(self, reason: StopReason = StopReason.CLOSED,
                             timeout: float | None = 5.0) -> None:
        """Stop keeping the lease alive: it runs out `lease_seconds` after
        the last call."""
        if self.lease_keeper is not None:
            await self.lease_keeper.stop(reason, timeout)

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

    keepalive = _am(_ops.keepalive)

    def watch(self, interval_ms: int = 1000
              ) -> grpc.aio.UnaryStreamCall[pb.WatchSessionRequest, pb.WatchSessionResponse]:
        """Hold the session alive while iterating (async for); yields
        heartbeats. .cancel() ends it."""
        call: grpc.aio.UnaryStreamCall[pb.WatchSessionRequest, pb.WatchSessionResponse] = (
            self.client.stub.WatchSession(pb.WatchSessionRequest(interval_ms=interval_ms),
                                          metadata=((SESSION_METADATA_KEY, self.token),)))
        return call

    info = _am(_ops.session_info)
    debug_advance_clock = _am(_ops.debug_advance_clock)

    # -- fds ------------------------------------------------------------------------------------

    async def open_context(self) -> AsyncContext:
        """open("/dev/iommu"): a new iommufd context."""
        return AsyncContext(self, await self._run(_ops.open_context(self)))

    def context(self, iommufd: int) -> AsyncContext:
        """A handle on an already open context fd of this session (no I/O)."""
        return AsyncContext(self, iommufd)

    async def open_device(self, name: str) -> AsyncDeviceFd:
        """open("/dev/vfio/devices/vfioN") of the host device `name`."""
        return AsyncDeviceFd(self, await self._run(_ops.open_device(self, name)), name)

    async def open_container(self) -> AsyncContainer:
        """open("/dev/vfio/vfio"): a legacy VFIO container (also an iommufd)."""
        return AsyncContainer(self, await self._run(_ops.open_container(self)))

    async def open_group(self, group: int) -> AsyncGroup:
        """open("/dev/vfio/<group>")."""
        return AsyncGroup(self, await self._run(_ops.open_group(self, group)), group)

    async def open_memfd(self, size: int, name: str = "") -> AsyncMemfd:
        """memfd_create() and ftruncate() in the daemon: a file to map."""
        return AsyncMemfd(self, await self._run(_ops.open_memfd(self, size, name)))

    process_pins = _am(_ops.process_pins)

    # -- devices and the host -------------------------------------------------------------------

    list_devices = _am(_ops.list_devices)
    list_groups = _am(_ops.list_groups)
    group = _am(_ops.group)
    bind_host_driver = _am(_ops.bind_host_driver)
    unbind_host_driver = _am(_ops.unbind_host_driver)
    hot_add_device = _am(_ops.hot_add_device)
    hot_remove_device = _am(_ops.hot_remove_device)

    def watch_host(self) -> grpc.aio.UnaryStreamCall[pb.WatchHostRequest, pb.WatchHostResponse]:
        """Stream of ownership, viability, driver and hot-plug events (async
        for; .cancel() ends it)."""
        call: grpc.aio.UnaryStreamCall[pb.WatchHostRequest, pb.WatchHostResponse] = (
            self.client.stub.WatchHost(pb.WatchHostRequest(),
                                       metadata=((SESSION_METADATA_KEY, self.token),)))
        return call


class _AsyncFdHandle:
    """Shared shape of an AsyncSession's fd handles: calls go out as the
    session, and `async with` closes the fd (ignoring one already closed)."""

    session: AsyncSession

    async def _call(self, method: str, request: Any) -> Any:
        return await self.session.call(method, request)

    async def _run(self, op: Op[_R]) -> _R:
        return op.read(await self.session.call(op.method, op.request))

    #: close() of the fd: each handle binds its own from `_ops`.
    close: Callable[[], Awaitable[Any]]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.close()
        except IommudError:
            pass


@name_bound_ops
class AsyncContext(_AsyncFdHandle):
    """Context, for asyncio: one iommufd context of a session."""

    def __init__(self, session: AsyncSession, iommufd: int) -> None:
        self.session = session
        self.iommufd = iommufd

    close = _am(_ops.close_context)
    destroy = _am(_ops.destroy)
    ioas_alloc = _am(_ops.ioas_alloc)
    ioas_iova_ranges = _am(_ops.ioas_iova_ranges)
    ioas_allow_iovas = _am(_ops.ioas_allow_iovas)
    ioas_map = _am(_ops.ioas_map)
    ioas_map_batch = _am(_ops.ioas_map_batch)
    ioas_copy = _am(_ops.ioas_copy)
    ioas_unmap = _am(_ops.ioas_unmap)
    ioas_unmap_all = _am(_ops.ioas_unmap_all)
    option = _am(_ops.option)
    ioas_change_process = _am(_ops.ioas_change_process)
    ioas_map_file = _am(_ops.ioas_map_file)
    hwpt_invalidate = _am(_ops.hwpt_invalidate)

    async def fault_queue_alloc(self, flags: int = 0) -> AsyncFaultQueue:
        """IOMMU_FAULT_QUEUE_ALLOC: a fault queue and its fd."""
        fault_id, fd = await self._run(_ops.fault_queue_alloc(self, flags))
        return AsyncFaultQueue(self, fault_id, fd)

    viommu_alloc = _am(_ops.viommu_alloc)
    viommu_alloc_data = _am(_ops.viommu_alloc_data)
    mmap = _am(_ops.iommufd_mmap)
    munmap = _am(_ops.iommufd_munmap)
    vdevice_alloc = _am(_ops.vdevice_alloc)
    hw_queue_alloc = _am(_ops.hw_queue_alloc)

    async def veventq_alloc(self, viommu_id: int, depth: int,
                            type: int = IOMMU_VEVENTQ_TYPE_SELFTEST, *, flags: int = 0,
                            reserved: int = 0) -> AsyncVeventq:
        """IOMMU_VEVENTQ_ALLOC: the vIOMMU's event queue of `type`, and its fd."""
        veventq_id, fd = await self._run(_ops.veventq_alloc(self, viommu_id, depth, type,
                                                            flags=flags, reserved=reserved))
        return AsyncVeventq(self, veventq_id, fd)
    translate = _am(_ops.translate)
    translate_batch = _am(_ops.translate_batch)
    bind_device = _am(_ops.bind_device)
    hwpt_alloc = _am(_ops.hwpt_alloc)
    hwpt_set_dirty_tracking = _am(_ops.hwpt_set_dirty_tracking)
    hwpt_get_dirty_bitmap = _am(_ops.hwpt_get_dirty_bitmap)
    get_hw_info = _am(_ops.get_hw_info)
    capabilities = _am(_ops.capabilities)
    list_objects = _am(_ops.list_objects)
    list_areas_page = _am(_ops.list_areas_page)

    async def list_areas(self, ioas_id: int) -> list[pb.Area]:
        """Every area of the IOAS, page by page (see Context.list_areas)."""
        areas: list[pb.Area] = []
        start = 0
        while True:
            page = await self.list_areas_page(ioas_id, start)
            areas.extend(page.areas)
            if not page.more:
                return areas
            start = page.next_iova

    # -- the kAPI by dev_id ----------------------------------------------------------------------
    device_attach = _am(_ops.device_attach)
    device_replace = _am(_ops.device_replace)
    device_detach = _am(_ops.device_detach)
    device_dma = _am(_ops.device_dma)

    # -- the selftest mock driver (a daemon with debug_selftest) --------------------------------
    mock_domain = _am(_ops.mock_domain)
    mock_domain_replace = _am(_ops.mock_domain_replace)
    test_add_reserved = _am(_ops.test_add_reserved)
    md_check_map = _am(_ops.md_check_map)
    md_check_refs = _am(_ops.md_check_refs)
    test_dirty = _am(_ops.test_dirty)

    async def create_access(self, ioas_id: int, flags: int = 0) -> AsyncAccess:
        """IOMMU_TEST_OP_CREATE_ACCESS: an emulated device's access fd."""
        return AsyncAccess(self, await self._run(_ops.create_access(self, ioas_id, flags)))

    set_temp_memory_limit = _am(_ops.set_temp_memory_limit)
    pasid_attach = _am(_ops.pasid_attach)
    pasid_replace = _am(_ops.pasid_replace)
    pasid_detach = _am(_ops.pasid_detach)
    pasid_check_hwpt = _am(_ops.pasid_check_hwpt)
    dev_check_cache = _am(_ops.dev_check_cache)
    md_check_iotlb = _am(_ops.md_check_iotlb)
    trigger_iopf = _am(_ops.trigger_iopf)

    async def dmabuf_get(self, length: int, open_flags: int = 0) -> AsyncDmabuf:
        """IOMMU_TEST_OP_DMABUF_GET: a test dma-buf, as an fd of the session."""
        return AsyncDmabuf(self, await self._run(_ops.dmabuf_get(self, length, open_flags)))
    trigger_vevent = _am(_ops.trigger_vevent)


@name_bound_ops
class AsyncVeventq(_AsyncFdHandle):
    """Veventq, for asyncio: a vEVENTQ of a context, and its fd."""

    def __init__(self, ctx: AsyncContext, veventq_id: int, veventq_fd: int) -> None:
        self.session = ctx.session
        self.ctx = ctx
        self.veventq_id = veventq_id
        self.veventq_fd = veventq_fd

    close = _am(_ops.close_veventq)
    read = _am(_ops.veventq_read)

    async def read_events(self, data_len: int, count: int = 4096) -> list[Vevent]:
        """read() of the fd, parsed (see Veventq.read_events)."""
        return parse_vevents(await self.read(count), data_len)

    def watch(self) -> grpc.aio.UnaryStreamCall[pb.WatchVeventqRequest,
                                                 pb.WatchVeventqResponse]:
        """The queue as a stream (async for): each record as it is queued,
        taken off the queue as it is sent; it ends when the fd is closed."""
        call: grpc.aio.UnaryStreamCall[pb.WatchVeventqRequest, pb.WatchVeventqResponse] = (
            self.session.client.stub.WatchVeventq(
                pb.WatchVeventqRequest(veventq_fd=self.veventq_fd),
                metadata=((SESSION_METADATA_KEY, self.session.token),)))
        return call


@name_bound_ops
class AsyncFaultQueue(_AsyncFdHandle):
    """FaultQueue, for asyncio: a fault queue of a context, and its fd."""

    def __init__(self, ctx: AsyncContext, fault_id: int, fault_fd: int) -> None:
        self.session = ctx.session
        self.ctx = ctx
        self.fault_id = fault_id
        self.fault_fd = fault_fd

    close = _am(_ops.close_fault_queue)
    read = _am(_ops.fault_queue_read)
    respond = _am(_ops.fault_queue_respond)

    def watch(self) -> grpc.aio.UnaryStreamCall[pb.WatchFaultQueueRequest,
                                                 pb.WatchFaultQueueResponse]:
        """The queue as a stream (async for): each fault group as it is
        delivered, read as it is sent; it ends when the fd is closed."""
        call: grpc.aio.UnaryStreamCall[pb.WatchFaultQueueRequest, pb.WatchFaultQueueResponse] = (
            self.session.client.stub.WatchFaultQueue(
                pb.WatchFaultQueueRequest(fault_fd=self.fault_fd),
                metadata=((SESSION_METADATA_KEY, self.session.token),)))
        return call


@name_bound_ops
class AsyncAccess(_AsyncFdHandle):
    """Access, for asyncio: a selftest access fd on an iommufd context."""

    def __init__(self, ctx: AsyncContext, access_fd: int) -> None:
        self.session = ctx.session
        self.ctx = ctx
        self.access_fd = access_fd

    close = _am(_ops.close_access)
    pages = _am(_ops.access_pages)
    destroy_pages = _am(_ops.access_destroy_pages)
    rw = _am(_ops.access_rw)
    replace_ioas = _am(_ops.access_replace_ioas)


@name_bound_ops
class AsyncMemfd(_AsyncFdHandle):
    """Memfd, for asyncio: a daemon-side memfd of the session."""

    def __init__(self, session: AsyncSession, fd: int) -> None:
        self.session = session
        self.fd = fd

    close = _am(_ops.close_file)
    truncate = _am(_ops.memfd_truncate)


@name_bound_ops
class AsyncDmabuf(_AsyncFdHandle):
    """Dmabuf, for asyncio: a selftest dma-buf's fd."""

    def __init__(self, ctx: AsyncContext, fd: int) -> None:
        self.session = ctx.session
        self.ctx = ctx
        self.fd = fd

    close = _am(_ops.close_file)
    revoke = _am(_ops.dmabuf_revoke)


@name_bound_ops
class AsyncDeviceFd(_AsyncFdHandle):
    """DeviceFd, for asyncio: an open VFIO device fd."""

    def __init__(self, session: AsyncSession, device_fd: int, name: str) -> None:
        self.session = session
        self.device_fd = device_fd
        self.name = name

    close = _am(_ops.close_device)
    info = _am(_ops.device_info)
    bind = _am(_ops.device_bind)
    attach = _am(_ops.device_attach_pt)
    detach = _am(_ops.device_detach_pt)
    dma = _am(_ops.device_dma_fd)
    read = _am(_ops.device_read)
    write = _am(_ops.device_write)


@name_bound_ops
class AsyncContainer(AsyncContext):
    """Container, for asyncio: a legacy VFIO container fd (an iommufd context too)."""

    @property
    def container_fd(self) -> int:
        return self.iommufd

    get_api_version = _am(_ops.get_api_version)
    check_extension = _am(_ops.check_extension)
    set_iommu = _am(_ops.set_iommu)
    iommu_get_info = _am(_ops.iommu_get_info)
    map_dma = _am(_ops.map_dma)
    unmap_dma = _am(_ops.unmap_dma)
    dirty_pages = _am(_ops.dirty_pages)
    vfio_ioas = _am(_ops.vfio_ioas)


async def vfio_ioas(ctx: AsyncContext, op: int, ioas_id: int = 0, reserved: int = 0) -> int:
    """IOMMU_VFIO_IOAS on any iommufd: GET 0, SET 1, CLEAR 2."""
    return await ctx._run(_ops.vfio_ioas(ctx, op, ioas_id, reserved))


@name_bound_ops
class AsyncGroup(_AsyncFdHandle):
    """Group, for asyncio: a legacy VFIO group fd (/dev/vfio/<group>)."""

    def __init__(self, session: AsyncSession, group_fd: int, group: int) -> None:
        self.session = session
        self.group_fd = group_fd
        self.group = group

    close = _am(_ops.close_group)
    get_status = _am(_ops.group_get_status)
    set_container = _am(_ops.group_set_container)
    unset_container = _am(_ops.group_unset_container)

    async def get_device_fd(self, name: str) -> AsyncDeviceFd:
        return AsyncDeviceFd(self.session, await self._run(_ops.group_get_device_fd(self, name)),
                             name)
