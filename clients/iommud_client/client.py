"""Synchronous client for the iommud IommuService.

The objects mirror the kernel's: a Client is a connection, a Session is a
process (it owns an fd table and a secret token), a Context is one open
/dev/iommu fd. Every method is one RPC, named after the ioctl it models, and
raises IommudError carrying the errno on failure.
"""
from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from iommud_client.errors import IommudError
from iommud_wire import metadata, pb, pb_grpc
from iommud_wire.endpoint import default_endpoint, normalize_endpoint

# The uAPI constants callers pass, re-exported so `iommud_client` is the one import.
from iommud_wire.uapi import (
    IOMMU_IOAS_MAP_FIXED_IOVA as IOMMU_IOAS_MAP_FIXED_IOVA,
    IOMMU_IOAS_MAP_READABLE as IOMMU_IOAS_MAP_READABLE,
    IOMMU_IOAS_MAP_WRITEABLE as IOMMU_IOAS_MAP_WRITEABLE,
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

#: Any object with the buffer protocol (collections.abc.Buffer from Python 3.12).
Buffer = Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

#: Request metadata key that carries the session token.
SESSION_METADATA_KEY = metadata.SESSION

_Resp = TypeVar("_Resp")


@dataclass(frozen=True)
class IovaRange:
    """An IOVA interval with an inclusive `last`, as struct iommu_iova_range."""

    start: int
    last: int


@dataclass(frozen=True)
class Translation:
    """The result of translating one IOVA."""

    iova: int
    pa: int
    prot: int

    @property
    def readable(self) -> bool:
        return bool(self.prot & IOMMU_IOAS_MAP_READABLE)

    @property
    def writeable(self) -> bool:
        return bool(self.prot & IOMMU_IOAS_MAP_WRITEABLE)


@dataclass(frozen=True)
class BatchTranslation:
    """Results of TranslateBatch as packed arrays: pas[i] is 0 and prots[i]
    is 0 where iovas[i] is unmapped."""

    pas: array.array[int]
    prots: bytes
    mapped_count: int


def _pack_u64(values: Sequence[int] | Buffer) -> bytes:
    """Little-endian u64 packing without per-element work for buffers."""
    if isinstance(values, (bytes, bytearray, memoryview)):
        return bytes(values)
    if hasattr(values, "astype") and hasattr(values, "tobytes"):  # numpy, without importing it
        return bytes(values.astype("<u8", copy=False).tobytes())
    arr = array.array("Q", values)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tobytes()


class Client:
    """A connection to one iommud daemon.

    Args:
        endpoint: gRPC target ('unix:/run/iommud/iommud.sock', a bare socket
            path, or 'host:port'); default from IOMMUD_ENDPOINT or the
            daemon's default socket.
        timeout: per-call deadline in seconds.
        tls_ca: PEM file of the CA that signed the daemon's certificate; with
            it the channel uses TLS (TCP endpoints only).
        tls_cert, tls_key: PEM client certificate and key for mutual TLS; the
            certificate's subject CN is the caller's identity.
    """

    def __init__(self, endpoint: str | None = None, *, timeout: float | None = 30.0,
                 options: Sequence[tuple[str, Any]] = (), tls_ca: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None) -> None:
        self.endpoint = normalize_endpoint(endpoint) if endpoint else default_endpoint()
        self.timeout = timeout
        opts = [("grpc.max_receive_message_length", 256 << 20),
                ("grpc.max_send_message_length", 256 << 20), *options]
        if tls_ca or tls_cert or tls_key:
            def read(path: str | None) -> bytes | None:
                return open(path, "rb").read() if path else None
            creds = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key), read(tls_cert))
            self.channel = grpc.secure_channel(self.endpoint, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(self.endpoint, options=opts)
        self.stub = pb_grpc.IommuServiceStub(self.channel)  # type: ignore[no-untyped-call]
        #: Extra metadata sent with every call, e.g. tracing headers, or
        #: ("iommud-fail-nth", "3") against a daemon run with debug_fail_nth.
        self.metadata: list[tuple[str, str]] = []

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, request: Any, token: str | None = None) -> Any:
        """Invoke `method` of IommuService with `request`, as `token`'s session.

        This is the raw form every helper below uses; conformance tests use it
        to send requests the helpers would not build.
        """
        fn: Callable[..., Any] = getattr(self.stub, method)
        metadata = (((SESSION_METADATA_KEY, token),) if token else ()) + tuple(self.metadata)
        try:
            return fn(request, metadata=metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise IommudError.from_rpc_error(exc) from None

    def health(self, service: str = "") -> str:
        """The grpc.health.v1 status name of `service` (default: the server)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # optional dependency

        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise IommudError.from_rpc_error(exc) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def info(self, token: str | None = None) -> pb.GetInfoResponse:
        return self.call("GetInfo", pb.GetInfoRequest(), token)

    def echo(self, payload: bytes = b"", token: str | None = None) -> bytes:
        """Round-trip `payload` through the daemon (token checked if given)."""
        return self.call("Echo", pb.EchoRequest(payload=payload), token).payload

    def open_session(self, client_name: str = "", lease_seconds: int = 0) -> Session:
        """Start a session (a process); close it, or use it as a context manager."""
        resp = self.call("OpenSession", pb.OpenSessionRequest(client_name=client_name,
                                                              lease_seconds=lease_seconds))
        return Session(self, resp.token, resp.session_id, resp.lease_seconds)

    def attach_session(self, token: str) -> Session:
        """Use an existing session by its token (for example from another process)."""
        resp = self.call("KeepAlive", pb.KeepAliveRequest(), token)
        info = self.info(token)
        return Session(self, token, info.session_id, resp.lease_seconds)


class Session:
    """A session: the analogue of a process, owning an fd table."""

    def __init__(self, client: Client, token: str, session_id: str, lease_seconds: int) -> None:
        self.client = client
        self.token = token
        self.session_id = session_id
        self.lease_seconds = lease_seconds

    def call(self, method: str, request: Any) -> Any:
        return self.client.call(method, request, self.token)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        except IommudError:
            pass  # already reaped or closed

    def close(self) -> int:
        """Close every fd of the session; returns how many were closed."""
        return self.call("CloseSession", pb.CloseSessionRequest()).closed_fds

    def keepalive(self) -> int:
        return self.call("KeepAlive", pb.KeepAliveRequest()).lease_seconds

    def watch(self, interval_ms: int = 1000) -> Iterator[pb.WatchSessionResponse]:
        """Hold the session alive while iterating; yields heartbeats.

        Cancel with the returned iterator's .cancel() (it is a grpc call).
        """
        return self.client.stub.WatchSession(
            pb.WatchSessionRequest(interval_ms=interval_ms),
            metadata=((SESSION_METADATA_KEY, self.token),))

    def info(self) -> pb.GetInfoResponse:
        return self.call("GetInfo", pb.GetInfoRequest())

    def open_context(self) -> Context:
        """open("/dev/iommu"): a new iommufd context."""
        return Context(self, self.call("OpenContext", pb.OpenContextRequest()).iommufd)

    def context(self, iommufd: int) -> Context:
        """A handle on an already open context fd of this session."""
        return Context(self, iommufd)

    # -- devices and the host ---------------------------------------------

    def open_device(self, name: str) -> DeviceFd:
        """open("/dev/vfio/devices/vfioN") of the host device `name` (e.g. 0000:03:00.0)."""
        return DeviceFd(self, self.call("OpenDevice", pb.OpenDeviceRequest(name=name)).device_fd,
                        name)

    def open_container(self) -> Container:
        """open("/dev/vfio/vfio"): a legacy VFIO container (also an iommufd)."""
        return Container(self, self.call("OpenContainer", pb.OpenContainerRequest()).container_fd)

    def open_group(self, group: int) -> Group:
        """open("/dev/vfio/<group>")."""
        return Group(self, self.call("OpenGroup", pb.OpenGroupRequest(group=group)).group_fd, group)

    def list_devices(self) -> list[pb.HostDevice]:
        return list(self.call("ListDevices", pb.ListDevicesRequest()).devices)

    def list_groups(self) -> list[pb.IommuGroup]:
        return list(self.call("ListGroups", pb.ListGroupsRequest()).groups)

    def group(self, group: int) -> pb.IommuGroup:
        for g in self.list_groups():
            if g.group == group:
                return g
        raise KeyError(group)

    def bind_host_driver(self, device: str, driver: str) -> None:
        """Probe a host driver onto a device (admin)."""
        self.call("BindHostDriver", pb.BindHostDriverRequest(device=device, driver=driver))

    def unbind_host_driver(self, device: str) -> None:
        self.call("UnbindHostDriver", pb.UnbindHostDriverRequest(device=device))

    def hot_add_device(self, device: pb.HostDevice) -> None:
        self.call("HotAddDevice", pb.HotAddDeviceRequest(device=device))

    def hot_remove_device(self, device: str) -> None:
        self.call("HotRemoveDevice", pb.HotRemoveDeviceRequest(device=device))

    def watch_host(self) -> Iterator[pb.WatchHostResponse]:
        """Stream of ownership, viability, driver and hot-plug events (cancel() to stop)."""
        return self.client.stub.WatchHost(pb.WatchHostRequest(),
                                          metadata=((SESSION_METADATA_KEY, self.token),))


class _FdHandle:
    """Shared shape of a session's fd handles: calls go out as the session,
    and `with` closes the fd (ignoring an fd the daemon already closed)."""

    session: Session

    def _call(self, method: str, request: Any) -> Any:
        return self.session.call(method, request)

    def close(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        except IommudError:
            pass


class Context(_FdHandle):
    """One iommufd context (an open /dev/iommu fd) of a session."""

    def __init__(self, session: Session, iommufd: int) -> None:
        self.session = session
        self.iommufd = iommufd

    def close(self) -> int:
        """close(iommufd): destroys every object; returns how many."""
        return self._call("CloseContext", pb.CloseContextRequest(iommufd=self.iommufd)).destroyed_objects

    def destroy(self, id: int) -> None:
        """IOMMU_DESTROY."""
        self._call("Destroy", pb.DestroyRequest(iommufd=self.iommufd, id=id))

    def ioas_alloc(self, flags: int = 0) -> int:
        """IOMMU_IOAS_ALLOC; returns the new ioas_id."""
        return self._call("IoasAlloc", pb.IoasAllocRequest(iommufd=self.iommufd, flags=flags)).out_ioas_id

    def ioas_iova_ranges(self, ioas_id: int, num_iovas: int | None = None,
                         reserved: int = 0) -> tuple[list[IovaRange], int]:
        """IOMMU_IOAS_IOVA_RANGES; returns (ranges, out_iova_alignment)."""
        req = pb.IoasIovaRangesRequest(iommufd=self.iommufd, ioas_id=ioas_id, reserved=reserved)
        if num_iovas is not None:
            req.num_iovas = num_iovas
        resp = self._call("IoasIovaRanges", req)
        return [IovaRange(r.start, r.last) for r in resp.allowed_iovas], resp.out_iova_alignment

    def ioas_allow_iovas(self, ioas_id: int, ranges: Sequence[tuple[int, int] | IovaRange],
                         reserved: int = 0) -> None:
        """IOMMU_IOAS_ALLOW_IOVAS: replace the allowed list (empty clears it)."""
        items = [r if isinstance(r, IovaRange) else IovaRange(*r) for r in ranges]
        self._call("IoasAllowIovas", pb.IoasAllowIovasRequest(
            iommufd=self.iommufd, ioas_id=ioas_id, reserved=reserved,
            allowed_iovas=[pb.IovaRange(start=r.start, last=r.last) for r in items]))

    def ioas_map(self, ioas_id: int, user_va: int, length: int, iova: int | None = None, *,
                 readable: bool = True, writeable: bool = True, flags: int | None = None,
                 reserved: int = 0) -> int:
        """IOMMU_IOAS_MAP; returns the IOVA of the new area.

        With `iova` given the map is FIXED_IOVA; otherwise the daemon picks the
        IOVA. `flags` overrides the computed flags word entirely.
        """
        if flags is None:
            flags = ((IOMMU_IOAS_MAP_FIXED_IOVA if iova is not None else 0)
                     | (IOMMU_IOAS_MAP_READABLE if readable else 0)
                     | (IOMMU_IOAS_MAP_WRITEABLE if writeable else 0))
        return self._call("IoasMap", pb.IoasMapRequest(
            iommufd=self.iommufd, ioas_id=ioas_id, flags=flags, reserved=reserved,
            user_va=user_va, length=length, iova=iova or 0)).iova

    def ioas_map_batch(self, ioas_id: int, user_vas: Sequence[int] | Buffer,
                       lengths: Sequence[int] | Buffer,
                       iovas: Sequence[int] | Buffer | None = None, *, readable: bool = True,
                       writeable: bool = True, flags: int | None = None,
                       reserved: int = 0) -> array.array[int]:
        """Many IOMMU_IOAS_MAPs in one call, all or nothing; returns the new
        areas' IOVAs as array('Q'). With `iovas` given every map is
        FIXED_IOVA; otherwise the daemon picks each IOVA. On a failure nothing
        is mapped and the error's message names the failing entry."""
        if flags is None:
            flags = ((IOMMU_IOAS_MAP_FIXED_IOVA if iovas is not None else 0)
                     | (IOMMU_IOAS_MAP_READABLE if readable else 0)
                     | (IOMMU_IOAS_MAP_WRITEABLE if writeable else 0))
        resp = self._call("IoasMapBatch", pb.IoasMapBatchRequest(
            iommufd=self.iommufd, ioas_id=ioas_id, flags=flags, reserved=reserved,
            user_vas=_pack_u64(user_vas), lengths=_pack_u64(lengths),
            iovas=_pack_u64(iovas) if iovas is not None else b""))
        out = array.array("Q")
        out.frombytes(resp.iovas)
        if sys.byteorder != "little":
            out.byteswap()
        return out

    def ioas_copy(self, dst_ioas_id: int, src_ioas_id: int, src_iova: int, length: int,
                  dst_iova: int | None = None, *, readable: bool = True, writeable: bool = True,
                  flags: int | None = None) -> int:
        """IOMMU_IOAS_COPY; returns the destination IOVA."""
        if flags is None:
            flags = ((IOMMU_IOAS_MAP_FIXED_IOVA if dst_iova is not None else 0)
                     | (IOMMU_IOAS_MAP_READABLE if readable else 0)
                     | (IOMMU_IOAS_MAP_WRITEABLE if writeable else 0))
        return self._call("IoasCopy", pb.IoasCopyRequest(
            iommufd=self.iommufd, flags=flags, dst_ioas_id=dst_ioas_id, src_ioas_id=src_ioas_id,
            length=length, dst_iova=dst_iova or 0, src_iova=src_iova)).dst_iova

    def ioas_unmap(self, ioas_id: int, iova: int, length: int) -> int:
        """IOMMU_IOAS_UNMAP; returns the bytes unmapped."""
        return self._call("IoasUnmap", pb.IoasUnmapRequest(
            iommufd=self.iommufd, ioas_id=ioas_id, iova=iova, length=length)).length

    def ioas_unmap_all(self, ioas_id: int) -> int:
        """IOMMU_IOAS_UNMAP with iova 0 and length 2^64-1."""
        return self.ioas_unmap(ioas_id, 0, UNMAP_ALL_LENGTH)

    def option(self, option_id: int, op: int, object_id: int = 0, val64: int = 0,
               reserved: int = 0) -> int:
        """IOMMU_OPTION (RLIMIT_MODE 0, HUGE_PAGES 1; op SET 0, GET 1); returns val64."""
        return self._call("Option", pb.OptionRequest(
            iommufd=self.iommufd, option_id=option_id, op=op, object_id=object_id, val64=val64,
            reserved=reserved)).val64

    def ioas_change_process(self, reserved: int = 0) -> None:
        """IOMMU_IOAS_CHANGE_PROCESS."""
        self._call("IoasChangeProcess", pb.IoasChangeProcessRequest(iommufd=self.iommufd,
                                                                    reserved=reserved))

    def hwpt_invalidate(self, hwpt_id: int, data: bytes = b"", *, data_type: int = 0,
                        entry_len: int = 0, entry_num: int = 0, reserved: int = 0) -> int:
        """IOMMU_HWPT_INVALIDATE; returns the entries handled."""
        return self._call("HwptInvalidate", pb.HwptInvalidateRequest(
            iommufd=self.iommufd, hwpt_id=hwpt_id, data=data, data_type=data_type,
            entry_len=entry_len, entry_num=entry_num, reserved=reserved)).entry_num

    def fault_queue_alloc(self, flags: int = 0) -> int:
        """IOMMU_FAULT_QUEUE_ALLOC; returns the fault object id."""
        return self._call("FaultQueueAlloc", pb.FaultQueueAllocRequest(
            iommufd=self.iommufd, flags=flags)).out_fault_id

    def translate(self, ioas_id: int, iova: int) -> Translation:
        """Translate one IOVA; ENOENT when nothing is mapped there."""
        resp = self._call("Translate", pb.TranslateRequest(iommufd=self.iommufd, ioas_id=ioas_id,
                                                           iova=iova))
        return Translation(resp.iova, resp.pa, resp.prot)

    def translate_batch(self, ioas_id: int, iovas: Sequence[int] | Buffer) -> BatchTranslation:
        """Translate many IOVAs in one call (a list, array('Q'), numpy u64 or LE bytes)."""
        resp = self._call("TranslateBatch", pb.TranslateBatchRequest(
            iommufd=self.iommufd, ioas_id=ioas_id, iovas=_pack_u64(iovas)))
        pas = array.array("Q")
        pas.frombytes(resp.pas)
        if sys.byteorder != "little":
            pas.byteswap()
        return BatchTranslation(pas, resp.prots, resp.mapped_count)

    def bind_device(self, device: DeviceFd, cookie: int = 0) -> int:
        """The design thread's bind, issued on the iommufd; returns dev_id."""
        return self._call("IommufdBindDevice", pb.IommufdBindDeviceRequest(
            iommufd=self.iommufd, device_fd=device.device_fd, cookie=cookie)).dev_id

    def hwpt_alloc(self, dev_id: int, pt_id: int, flags: int = 0, *, data_type: int = 0,
                   data_len: int | None = None, data: bytes = b"", fault_id: int = 0,
                   reserved: int = 0) -> int:
        """IOMMU_HWPT_ALLOC; returns the new hwpt_id. `data` is the driver
        data (data_len defaults to its length)."""
        return self._call("HwptAlloc", pb.HwptAllocRequest(
            iommufd=self.iommufd, flags=flags, dev_id=dev_id, pt_id=pt_id, data_type=data_type,
            data_len=len(data) if data_len is None else data_len, data=data,
            fault_id=fault_id, reserved=reserved)).out_hwpt_id

    def hwpt_set_dirty_tracking(self, hwpt_id: int, enable: bool = True, *,
                                flags: int | None = None) -> None:
        """IOMMU_HWPT_SET_DIRTY_TRACKING."""
        self._call("HwptSetDirtyTracking", pb.HwptSetDirtyTrackingRequest(
            iommufd=self.iommufd, hwpt_id=hwpt_id,
            flags=int(enable) if flags is None else flags))

    def hwpt_get_dirty_bitmap(self, hwpt_id: int, iova: int, length: int, page_size: int = 4096,
                              *, no_clear: bool = False, flags: int | None = None,
                              reserved: int = 0) -> bytes:
        """IOMMU_HWPT_GET_DIRTY_BITMAP; little-endian u64 words."""
        return self._call("HwptGetDirtyBitmap", pb.HwptGetDirtyBitmapRequest(
            iommufd=self.iommufd, hwpt_id=hwpt_id, iova=iova, length=length,
            page_size=page_size, reserved=reserved,
            flags=int(no_clear) if flags is None else flags)).data

    def get_hw_info(self, dev_id: int, data_len: int = 0, *, flags: int = 0,
                    in_data_type: int = 0, reserved: int = 0) -> pb.GetHwInfoResponse:
        """IOMMU_GET_HW_INFO."""
        return self._call("GetHwInfo", pb.GetHwInfoRequest(
            iommufd=self.iommufd, flags=flags, dev_id=dev_id, data_len=data_len,
            in_data_type=in_data_type, reserved=reserved))

    def capabilities(self) -> pb.GetCapabilitiesResponse:
        return self._call("GetCapabilities", pb.GetCapabilitiesRequest(iommufd=self.iommufd))

    def list_objects(self) -> list[pb.ObjectInfo]:
        return list(self._call("ListObjects", pb.ListObjectsRequest(iommufd=self.iommufd)).objects)

    def list_areas(self, ioas_id: int) -> list[pb.Area]:
        return list(self._call("ListAreas", pb.ListAreasRequest(iommufd=self.iommufd,
                                                                ioas_id=ioas_id)).areas)

    # -- the kAPI by dev_id --------------------------------------------------------------------

    def device_attach(self, dev_id: int, pt_id: int, pasid: int | None = None) -> int:
        """iommufd_device_attach; returns the HWPT attached (EBUSY if attached)."""
        return self._call("IommufdDeviceAttach", pb.IommufdDeviceAttachRequest(
            iommufd=self.iommufd, dev_id=dev_id, pt_id=pt_id, pasid=pasid)).pt_id

    def device_replace(self, dev_id: int, pt_id: int, pasid: int | None = None) -> int:
        """iommufd_device_replace; returns the HWPT now attached."""
        return self._call("IommufdDeviceReplace", pb.IommufdDeviceReplaceRequest(
            iommufd=self.iommufd, dev_id=dev_id, pt_id=pt_id, pasid=pasid)).pt_id

    def device_detach(self, dev_id: int, pasid: int | None = None) -> None:
        """iommufd_device_detach (a no-op when nothing is attached)."""
        self._call("IommufdDeviceDetach", pb.IommufdDeviceDetachRequest(
            iommufd=self.iommufd, dev_id=dev_id, pasid=pasid))

    def device_dma(self, dev_id: int, accesses: Sequence[DmaAccess],
                   pasid: int | None = None) -> pb.IommufdDeviceDmaResponse:
        """DMA by the DEVICE `dev_id`; faults are in the reply."""
        return self._call("IommufdDeviceDma", pb.IommufdDeviceDmaRequest(
            iommufd=self.iommufd, dev_id=dev_id, pasid=pasid, accesses=[
                pb.DmaAccess(iova=a.iova, length=a.length, write=a.write) for a in accesses]))

    # -- the selftest mock driver (a daemon with debug_selftest) ------------------------------

    def mock_domain(self, pt_id: int, dev_flags: int | None = None) -> MockDomain:
        """IOMMU_TEST_OP_MOCK_DOMAIN(_FLAGS): a mock device bound and attached."""
        resp = self._call("TestMockDomain", pb.TestMockDomainRequest(
            iommufd=self.iommufd, pt_id=pt_id, dev_flags=dev_flags))
        return MockDomain(resp.out_stdev_id, resp.out_hwpt_id, resp.out_idev_id)

    def mock_domain_replace(self, stdev_id: int, pt_id: int) -> int:
        return self._call("TestMockDomainReplace", pb.TestMockDomainReplaceRequest(
            iommufd=self.iommufd, stdev_id=stdev_id, pt_id=pt_id)).pt_id

    def test_add_reserved(self, ioas_id: int, start: int, length: int) -> None:
        self._call("TestAddReserved", pb.TestAddReservedRequest(
            iommufd=self.iommufd, ioas_id=ioas_id, start=start, length=length))

    def md_check_map(self, hwpt_id: int, iova: int, length: int, user_va: int) -> None:
        self._call("TestMdCheckMap", pb.TestMdCheckMapRequest(
            iommufd=self.iommufd, hwpt_id=hwpt_id, iova=iova, length=length, user_va=user_va))

    def md_check_refs(self, user_va: int, length: int, refs: int) -> None:
        self._call("TestMdCheckRefs", pb.TestMdCheckRefsRequest(
            iommufd=self.iommufd, user_va=user_va, length=length, refs=refs))

    def test_dirty(self, hwpt_id: int, iova: int, length: int, page_size: int,
                   bitmap: bytes, flags: int = 0) -> int:
        """IOMMU_TEST_OP_DIRTY; returns out_nr_dirty."""
        return self._call("TestDirty", pb.TestDirtyRequest(
            iommufd=self.iommufd, hwpt_id=hwpt_id, flags=flags, iova=iova, length=length,
            page_size=page_size, bitmap=bitmap)).out_nr_dirty

    def create_access(self, ioas_id: int, flags: int = 0) -> Access:
        """IOMMU_TEST_OP_CREATE_ACCESS: an emulated device's access fd."""
        fd = self._call("TestCreateAccess", pb.TestCreateAccessRequest(
            iommufd=self.iommufd, ioas_id=ioas_id, flags=flags)).out_access_fd
        return Access(self, fd)

    def set_temp_memory_limit(self, limit: int) -> None:
        self._call("TestSetTempMemoryLimit", pb.TestSetTempMemoryLimitRequest(
            iommufd=self.iommufd, limit=limit))

    def pasid_attach(self, stdev_id: int, pasid: int, pt_id: int) -> int:
        return self._call("TestPasidAttach", pb.TestPasidAttachRequest(
            iommufd=self.iommufd, stdev_id=stdev_id, pasid=pasid, pt_id=pt_id)).pt_id

    def pasid_replace(self, stdev_id: int, pasid: int, pt_id: int) -> int:
        return self._call("TestPasidReplace", pb.TestPasidReplaceRequest(
            iommufd=self.iommufd, stdev_id=stdev_id, pasid=pasid, pt_id=pt_id)).pt_id

    def pasid_detach(self, stdev_id: int, pasid: int) -> None:
        self._call("TestPasidDetach", pb.TestPasidDetachRequest(
            iommufd=self.iommufd, stdev_id=stdev_id, pasid=pasid))

    def pasid_check_hwpt(self, stdev_id: int, pasid: int, hwpt_id: int) -> None:
        self._call("TestPasidCheckHwpt", pb.TestPasidCheckHwptRequest(
            iommufd=self.iommufd, stdev_id=stdev_id, pasid=pasid, hwpt_id=hwpt_id))


@dataclass(frozen=True)
class MockDomain:
    """The ids IOMMU_TEST_OP_MOCK_DOMAIN hands back."""

    stdev_id: int
    hwpt_id: int
    idev_id: int


class Access(_FdHandle):
    """A selftest access fd on an iommufd context (an emulated device)."""

    def __init__(self, ctx: Context, access_fd: int) -> None:
        self.session = ctx.session
        self.ctx = ctx
        self.access_fd = access_fd

    def close(self) -> None:
        """close(access_fd): unpins everything and destroys the access."""
        self._call("CloseFd", pb.CloseFdRequest(fd=self.access_fd))

    def pages(self, iova: int, length: int, user_va: int = 0, flags: int = 0) -> int:
        """IOMMU_TEST_OP_ACCESS_PAGES; returns the item id."""
        return self._call("TestAccessPages", pb.TestAccessPagesRequest(
            iommufd=self.ctx.iommufd, access_fd=self.access_fd, flags=flags, iova=iova,
            length=length, user_va=user_va)).out_access_pages_id

    def destroy_pages(self, access_pages_id: int) -> None:
        self._call("TestDestroyAccessPages", pb.TestDestroyAccessPagesRequest(
            iommufd=self.ctx.iommufd, access_fd=self.access_fd, access_pages_id=access_pages_id))

    def rw(self, iova: int, length: int, user_va: int = 0,
           flags: int = 0) -> pb.TestAccessRwResponse:
        """IOMMU_TEST_OP_ACCESS_RW: the copy plan behind the IOVA range."""
        return self._call("TestAccessRw", pb.TestAccessRwRequest(
            iommufd=self.ctx.iommufd, access_fd=self.access_fd, iova=iova, length=length,
            user_va=user_va, flags=flags))

    def replace_ioas(self, ioas_id: int) -> None:
        self._call("TestAccessReplaceIoas", pb.TestAccessReplaceIoasRequest(
            iommufd=self.ctx.iommufd, access_fd=self.access_fd, ioas_id=ioas_id))


@dataclass(frozen=True)
class DmaAccess:
    """One device DMA access: `length` bytes at `iova`, a write or a read."""

    iova: int
    length: int
    write: bool = False


class DeviceFd(_FdHandle):
    """A session's open VFIO device fd (the device cdev)."""

    def __init__(self, session: Session, device_fd: int, name: str) -> None:
        self.session = session
        self.device_fd = device_fd
        self.name = name

    def close(self) -> None:
        """close(device_fd): unbinds the device and revokes the fd."""
        self._call("CloseDevice", pb.CloseDeviceRequest(device_fd=self.device_fd))

    def info(self) -> pb.DeviceGetInfoResponse:
        return self._call("DeviceGetInfo", pb.DeviceGetInfoRequest(device_fd=self.device_fd))

    def bind(self, ctx: Context | int, cookie: int = 0, flags: int = 0) -> int:
        """VFIO_DEVICE_BIND_IOMMUFD; returns the dev_id."""
        iommufd = ctx.iommufd if isinstance(ctx, Context) else ctx
        return self._call("DeviceBindIommufd", pb.DeviceBindIommufdRequest(
            device_fd=self.device_fd, flags=flags, iommufd=iommufd, cookie=cookie)).out_devid

    def attach(self, pt_id: int, pasid: int | None = None, *, flags: int | None = None) -> int:
        """VFIO_DEVICE_ATTACH_IOMMUFD_PT (a replace when already attached);
        returns the id of the HWPT actually attached."""
        if flags is None:
            flags = VFIO_DEVICE_ATTACH_PASID if pasid is not None else 0
        return self._call("DeviceAttachIommufdPt", pb.DeviceAttachIommufdPtRequest(
            device_fd=self.device_fd, flags=flags, pt_id=pt_id, pasid=pasid or 0)).pt_id

    def detach(self, pasid: int | None = None, *, flags: int | None = None) -> None:
        """VFIO_DEVICE_DETACH_IOMMUFD_PT."""
        if flags is None:
            flags = VFIO_DEVICE_DETACH_PASID if pasid is not None else 0
        self._call("DeviceDetachIommufdPt", pb.DeviceDetachIommufdPtRequest(
            device_fd=self.device_fd, flags=flags, pasid=pasid or 0))

    def dma(self, accesses: Sequence[DmaAccess], pasid: int | None = None) -> pb.DeviceDmaResponse:
        """Issue DMA accesses as the device (RID, or `pasid`); faults are in the reply."""
        req = pb.DeviceDmaRequest(device_fd=self.device_fd, accesses=[
            pb.DmaAccess(iova=a.iova, length=a.length, write=a.write) for a in accesses])
        if pasid is not None:
            req.pasid = pasid
        return self._call("DeviceDma", req)

    def read(self, iova: int, length: int = 4, pasid: int | None = None) -> pb.DmaResult:
        return self.dma([DmaAccess(iova, length, False)], pasid).results[0]

    def write(self, iova: int, length: int = 4, pasid: int | None = None) -> pb.DmaResult:
        return self.dma([DmaAccess(iova, length, True)], pasid).results[0]


class Container(Context):
    """A legacy VFIO container fd. It is an iommufd context too, so the
    native IOMMU_* methods of Context work on it, as in the kernel."""

    @property
    def container_fd(self) -> int:
        return self.iommufd

    def get_api_version(self) -> int:
        return self._call("VfioGetApiVersion",
                          pb.VfioGetApiVersionRequest(container_fd=self.iommufd)).version

    def check_extension(self, extension: int) -> int:
        return self._call("VfioCheckExtension", pb.VfioCheckExtensionRequest(
            container_fd=self.iommufd, extension=extension)).value

    def set_iommu(self, iommu_type: int = VFIO_TYPE1v2_IOMMU) -> None:
        self._call("VfioSetIommu", pb.VfioSetIommuRequest(container_fd=self.iommufd,
                                                          type=iommu_type))

    def iommu_get_info(self, argsz: int = 0) -> pb.VfioIommuGetInfoResponse:
        return self._call("VfioIommuGetInfo", pb.VfioIommuGetInfoRequest(
            container_fd=self.iommufd, argsz=argsz))

    def map_dma(self, iova: int, size: int, vaddr: int, *, flags: int | None = None,
                argsz: int = 0) -> None:
        """VFIO_IOMMU_MAP_DMA (READ|WRITE unless `flags` says otherwise)."""
        if flags is None:
            flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE
        self._call("VfioIommuMapDma", pb.VfioIommuMapDmaRequest(
            container_fd=self.iommufd, argsz=argsz, flags=flags, vaddr=vaddr, iova=iova, size=size))

    def unmap_dma(self, iova: int, size: int, *, flags: int = 0, bitmap_pgsize: int = 0,
                  bitmap_size: int = 0, argsz: int = 0) -> pb.VfioIommuUnmapDmaResponse:
        """VFIO_IOMMU_UNMAP_DMA; the reply's size is the bytes unmapped."""
        return self._call("VfioIommuUnmapDma", pb.VfioIommuUnmapDmaRequest(
            container_fd=self.iommufd, argsz=argsz, flags=flags, iova=iova, size=size,
            bitmap_pgsize=bitmap_pgsize, bitmap_size=bitmap_size))

    def dirty_pages(self, flags: int, iova: int = 0, size: int = 0, *, bitmap_pgsize: int = 0,
                    bitmap_size: int = 0, argsz: int = 0) -> bytes:
        """VFIO_IOMMU_DIRTY_PAGES; GET_BITMAP returns the bitmap bytes."""
        return self._call("VfioIommuDirtyPages", pb.VfioIommuDirtyPagesRequest(
            container_fd=self.iommufd, argsz=argsz, flags=flags, iova=iova, size=size,
            bitmap_pgsize=bitmap_pgsize, bitmap_size=bitmap_size)).bitmap

    def vfio_ioas(self, op: int, ioas_id: int = 0, reserved: int = 0) -> int:
        return vfio_ioas(self, op, ioas_id, reserved)


def vfio_ioas(ctx: Context, op: int, ioas_id: int = 0, reserved: int = 0) -> int:
    """IOMMU_VFIO_IOAS on any iommufd: GET 0, SET 1, CLEAR 2."""
    return ctx._call("IommuVfioIoas", pb.IommuVfioIoasRequest(
        iommufd=ctx.iommufd, ioas_id=ioas_id, op=op, reserved=reserved)).ioas_id


class Group(_FdHandle):
    """A legacy VFIO group fd (/dev/vfio/<group>)."""

    def __init__(self, session: Session, group_fd: int, group: int) -> None:
        self.session = session
        self.group_fd = group_fd
        self.group = group

    def close(self) -> None:
        self._call("CloseGroup", pb.CloseGroupRequest(group_fd=self.group_fd))

    def get_status(self, argsz: int = 0) -> int:
        """VIABLE (1) | CONTAINER_SET (2)."""
        return self._call("VfioGroupGetStatus", pb.VfioGroupGetStatusRequest(
            group_fd=self.group_fd, argsz=argsz)).flags

    def set_container(self, container: Context | int) -> None:
        fd = container.iommufd if isinstance(container, Context) else container
        self._call("VfioGroupSetContainer", pb.VfioGroupSetContainerRequest(
            group_fd=self.group_fd, container_fd=fd))

    def unset_container(self) -> None:
        self._call("VfioGroupUnsetContainer", pb.VfioGroupUnsetContainerRequest(
            group_fd=self.group_fd))

    def get_device_fd(self, name: str) -> DeviceFd:
        fd = self._call("VfioGroupGetDeviceFd", pb.VfioGroupGetDeviceFdRequest(
            group_fd=self.group_fd, name=name)).device_fd
        return DeviceFd(self.session, fd, name)
