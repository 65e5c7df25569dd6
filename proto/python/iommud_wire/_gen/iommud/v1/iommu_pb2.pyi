from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObjectType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECT_TYPE_UNSPECIFIED: _ClassVar[ObjectType]
    OBJECT_TYPE_IOAS: _ClassVar[ObjectType]
    OBJECT_TYPE_HWPT_PAGING: _ClassVar[ObjectType]
    OBJECT_TYPE_HWPT_NESTED: _ClassVar[ObjectType]
    OBJECT_TYPE_DEVICE: _ClassVar[ObjectType]
    OBJECT_TYPE_FAULT: _ClassVar[ObjectType]
    OBJECT_TYPE_ACCESS: _ClassVar[ObjectType]
    OBJECT_TYPE_SELFTEST: _ClassVar[ObjectType]
    OBJECT_TYPE_VIOMMU: _ClassVar[ObjectType]
    OBJECT_TYPE_VDEVICE: _ClassVar[ObjectType]
    OBJECT_TYPE_VEVENTQ: _ClassVar[ObjectType]
    OBJECT_TYPE_HW_QUEUE: _ClassVar[ObjectType]

class IoasMapFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IOAS_MAP_FLAG_UNSPECIFIED: _ClassVar[IoasMapFlag]
    IOAS_MAP_FLAG_FIXED_IOVA: _ClassVar[IoasMapFlag]
    IOAS_MAP_FLAG_WRITEABLE: _ClassVar[IoasMapFlag]
    IOAS_MAP_FLAG_READABLE: _ClassVar[IoasMapFlag]

class GroupOwner(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUP_OWNER_UNSPECIFIED: _ClassVar[GroupOwner]
    GROUP_OWNER_NONE: _ClassVar[GroupOwner]
    GROUP_OWNER_IOMMUFD: _ClassVar[GroupOwner]
    GROUP_OWNER_CONTAINER: _ClassVar[GroupOwner]

class DmaFaultReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DMA_FAULT_REASON_UNSPECIFIED: _ClassVar[DmaFaultReason]
    DMA_FAULT_REASON_BLOCKED: _ClassVar[DmaFaultReason]
    DMA_FAULT_REASON_UNMAPPED: _ClassVar[DmaFaultReason]
    DMA_FAULT_REASON_PERMISSION: _ClassVar[DmaFaultReason]
OBJECT_TYPE_UNSPECIFIED: ObjectType
OBJECT_TYPE_IOAS: ObjectType
OBJECT_TYPE_HWPT_PAGING: ObjectType
OBJECT_TYPE_HWPT_NESTED: ObjectType
OBJECT_TYPE_DEVICE: ObjectType
OBJECT_TYPE_FAULT: ObjectType
OBJECT_TYPE_ACCESS: ObjectType
OBJECT_TYPE_SELFTEST: ObjectType
OBJECT_TYPE_VIOMMU: ObjectType
OBJECT_TYPE_VDEVICE: ObjectType
OBJECT_TYPE_VEVENTQ: ObjectType
OBJECT_TYPE_HW_QUEUE: ObjectType
IOAS_MAP_FLAG_UNSPECIFIED: IoasMapFlag
IOAS_MAP_FLAG_FIXED_IOVA: IoasMapFlag
IOAS_MAP_FLAG_WRITEABLE: IoasMapFlag
IOAS_MAP_FLAG_READABLE: IoasMapFlag
GROUP_OWNER_UNSPECIFIED: GroupOwner
GROUP_OWNER_NONE: GroupOwner
GROUP_OWNER_IOMMUFD: GroupOwner
GROUP_OWNER_CONTAINER: GroupOwner
DMA_FAULT_REASON_UNSPECIFIED: DmaFaultReason
DMA_FAULT_REASON_BLOCKED: DmaFaultReason
DMA_FAULT_REASON_UNMAPPED: DmaFaultReason
DMA_FAULT_REASON_PERMISSION: DmaFaultReason

class IovaRange(_message.Message):
    __slots__ = ("start", "last")
    START_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    start: int
    last: int
    def __init__(self, start: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = ("client_name", "lease_seconds")
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    client_name: str
    lease_seconds: int
    def __init__(self, client_name: _Optional[str] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ("token", "session_id", "lease_seconds")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    token: str
    session_id: str
    lease_seconds: int
    def __init__(self, token: _Optional[str] = ..., session_id: _Optional[str] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ("closed_fds",)
    CLOSED_FDS_FIELD_NUMBER: _ClassVar[int]
    closed_fds: int
    def __init__(self, closed_fds: _Optional[int] = ...) -> None: ...

class KeepAliveRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KeepAliveResponse(_message.Message):
    __slots__ = ("lease_seconds",)
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    lease_seconds: int
    def __init__(self, lease_seconds: _Optional[int] = ...) -> None: ...

class WatchSessionRequest(_message.Message):
    __slots__ = ("interval_ms",)
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    interval_ms: int
    def __init__(self, interval_ms: _Optional[int] = ...) -> None: ...

class WatchSessionResponse(_message.Message):
    __slots__ = ("session_id", "sequence")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    sequence: int
    def __init__(self, session_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class OpenContextRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OpenContextResponse(_message.Message):
    __slots__ = ("iommufd",)
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    def __init__(self, iommufd: _Optional[int] = ...) -> None: ...

class CloseContextRequest(_message.Message):
    __slots__ = ("iommufd",)
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    def __init__(self, iommufd: _Optional[int] = ...) -> None: ...

class CloseContextResponse(_message.Message):
    __slots__ = ("destroyed_objects",)
    DESTROYED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    destroyed_objects: int
    def __init__(self, destroyed_objects: _Optional[int] = ...) -> None: ...

class DestroyRequest(_message.Message):
    __slots__ = ("iommufd", "id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    id: int
    def __init__(self, iommufd: _Optional[int] = ..., id: _Optional[int] = ...) -> None: ...

class DestroyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IoasAllocRequest(_message.Message):
    __slots__ = ("iommufd", "flags")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class IoasAllocResponse(_message.Message):
    __slots__ = ("out_ioas_id",)
    OUT_IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    out_ioas_id: int
    def __init__(self, out_ioas_id: _Optional[int] = ...) -> None: ...

class IoasIovaRangesRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id", "num_iovas", "reserved")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_IOVAS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    num_iovas: int
    reserved: int
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ..., num_iovas: _Optional[int] = ..., reserved: _Optional[int] = ...) -> None: ...

class IoasIovaRangesResponse(_message.Message):
    __slots__ = ("num_iovas", "allowed_iovas", "out_iova_alignment")
    NUM_IOVAS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_IOVAS_FIELD_NUMBER: _ClassVar[int]
    OUT_IOVA_ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    num_iovas: int
    allowed_iovas: _containers.RepeatedCompositeFieldContainer[IovaRange]
    out_iova_alignment: int
    def __init__(self, num_iovas: _Optional[int] = ..., allowed_iovas: _Optional[_Iterable[_Union[IovaRange, _Mapping]]] = ..., out_iova_alignment: _Optional[int] = ...) -> None: ...

class IoasAllowIovasRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id", "allowed_iovas", "reserved")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_IOVAS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    allowed_iovas: _containers.RepeatedCompositeFieldContainer[IovaRange]
    reserved: int
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ..., allowed_iovas: _Optional[_Iterable[_Union[IovaRange, _Mapping]]] = ..., reserved: _Optional[int] = ...) -> None: ...

class IoasAllowIovasResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IoasMapRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "ioas_id", "reserved", "user_va", "length", "iova", "user_pages_missing")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    USER_VA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    USER_PAGES_MISSING_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    ioas_id: int
    reserved: int
    user_va: int
    length: int
    iova: int
    user_pages_missing: bool
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., ioas_id: _Optional[int] = ..., reserved: _Optional[int] = ..., user_va: _Optional[int] = ..., length: _Optional[int] = ..., iova: _Optional[int] = ..., user_pages_missing: _Optional[bool] = ...) -> None: ...

class IoasMapResponse(_message.Message):
    __slots__ = ("iova",)
    IOVA_FIELD_NUMBER: _ClassVar[int]
    iova: int
    def __init__(self, iova: _Optional[int] = ...) -> None: ...

class IoasCopyRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "dst_ioas_id", "src_ioas_id", "length", "dst_iova", "src_iova")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    DST_IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    SRC_IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    DST_IOVA_FIELD_NUMBER: _ClassVar[int]
    SRC_IOVA_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    dst_ioas_id: int
    src_ioas_id: int
    length: int
    dst_iova: int
    src_iova: int
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., dst_ioas_id: _Optional[int] = ..., src_ioas_id: _Optional[int] = ..., length: _Optional[int] = ..., dst_iova: _Optional[int] = ..., src_iova: _Optional[int] = ...) -> None: ...

class IoasCopyResponse(_message.Message):
    __slots__ = ("dst_iova",)
    DST_IOVA_FIELD_NUMBER: _ClassVar[int]
    dst_iova: int
    def __init__(self, dst_iova: _Optional[int] = ...) -> None: ...

class IoasUnmapRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id", "iova", "length")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    iova: int
    length: int
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ..., iova: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class IoasUnmapResponse(_message.Message):
    __slots__ = ("length",)
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    length: int
    def __init__(self, length: _Optional[int] = ...) -> None: ...

class IoasMapBatchRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "ioas_id", "reserved", "user_vas", "lengths", "iovas")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    USER_VAS_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    IOVAS_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    ioas_id: int
    reserved: int
    user_vas: bytes
    lengths: bytes
    iovas: bytes
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., ioas_id: _Optional[int] = ..., reserved: _Optional[int] = ..., user_vas: _Optional[bytes] = ..., lengths: _Optional[bytes] = ..., iovas: _Optional[bytes] = ...) -> None: ...

class IoasMapBatchResponse(_message.Message):
    __slots__ = ("iovas",)
    IOVAS_FIELD_NUMBER: _ClassVar[int]
    iovas: bytes
    def __init__(self, iovas: _Optional[bytes] = ...) -> None: ...

class OptionRequest(_message.Message):
    __slots__ = ("iommufd", "option_id", "op", "reserved", "object_id", "val64")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    OPTION_ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VAL64_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    option_id: int
    op: int
    reserved: int
    object_id: int
    val64: int
    def __init__(self, iommufd: _Optional[int] = ..., option_id: _Optional[int] = ..., op: _Optional[int] = ..., reserved: _Optional[int] = ..., object_id: _Optional[int] = ..., val64: _Optional[int] = ...) -> None: ...

class OptionResponse(_message.Message):
    __slots__ = ("val64",)
    VAL64_FIELD_NUMBER: _ClassVar[int]
    val64: int
    def __init__(self, val64: _Optional[int] = ...) -> None: ...

class IoasChangeProcessRequest(_message.Message):
    __slots__ = ("iommufd", "reserved")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    reserved: int
    def __init__(self, iommufd: _Optional[int] = ..., reserved: _Optional[int] = ...) -> None: ...

class IoasChangeProcessResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IoasMapFileRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "ioas_id", "fd", "start", "length", "iova")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    ioas_id: int
    fd: int
    start: int
    length: int
    iova: int
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., ioas_id: _Optional[int] = ..., fd: _Optional[int] = ..., start: _Optional[int] = ..., length: _Optional[int] = ..., iova: _Optional[int] = ...) -> None: ...

class IoasMapFileResponse(_message.Message):
    __slots__ = ("iova",)
    IOVA_FIELD_NUMBER: _ClassVar[int]
    iova: int
    def __init__(self, iova: _Optional[int] = ...) -> None: ...

class OpenMemfdRequest(_message.Message):
    __slots__ = ("name", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class OpenMemfdResponse(_message.Message):
    __slots__ = ("fd",)
    FD_FIELD_NUMBER: _ClassVar[int]
    fd: int
    def __init__(self, fd: _Optional[int] = ...) -> None: ...

class MemfdTruncateRequest(_message.Message):
    __slots__ = ("fd", "size")
    FD_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    fd: int
    size: int
    def __init__(self, fd: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class MemfdTruncateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProcessPinsRequest(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class ProcessPinsResponse(_message.Message):
    __slots__ = ("pinned_pages", "locked_pages")
    PINNED_PAGES_FIELD_NUMBER: _ClassVar[int]
    LOCKED_PAGES_FIELD_NUMBER: _ClassVar[int]
    pinned_pages: int
    locked_pages: int
    def __init__(self, pinned_pages: _Optional[int] = ..., locked_pages: _Optional[int] = ...) -> None: ...

class TranslateRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id", "iova")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    iova: int
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ..., iova: _Optional[int] = ...) -> None: ...

class TranslateResponse(_message.Message):
    __slots__ = ("iova", "pa", "prot")
    IOVA_FIELD_NUMBER: _ClassVar[int]
    PA_FIELD_NUMBER: _ClassVar[int]
    PROT_FIELD_NUMBER: _ClassVar[int]
    iova: int
    pa: int
    prot: int
    def __init__(self, iova: _Optional[int] = ..., pa: _Optional[int] = ..., prot: _Optional[int] = ...) -> None: ...

class TranslateBatchRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id", "iovas")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    IOVAS_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    iovas: bytes
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ..., iovas: _Optional[bytes] = ...) -> None: ...

class TranslateBatchResponse(_message.Message):
    __slots__ = ("pas", "prots", "mapped_count")
    PAS_FIELD_NUMBER: _ClassVar[int]
    PROTS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_COUNT_FIELD_NUMBER: _ClassVar[int]
    pas: bytes
    prots: bytes
    mapped_count: int
    def __init__(self, pas: _Optional[bytes] = ..., prots: _Optional[bytes] = ..., mapped_count: _Optional[int] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EchoRequest(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_contexts_per_session", "max_objects_per_context", "max_translate_batch", "max_message_bytes", "lease_seconds_default", "lease_seconds_max", "max_fds_per_session", "max_areas_per_ioas", "max_mapped_bytes_per_session", "max_sessions", "dma_entry_limit", "max_memory_bytes_per_session")
    MAX_CONTEXTS_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_OBJECTS_PER_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_TRANSLATE_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_MAX_FIELD_NUMBER: _ClassVar[int]
    MAX_FDS_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_AREAS_PER_IOAS_FIELD_NUMBER: _ClassVar[int]
    MAX_MAPPED_BYTES_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    DMA_ENTRY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_BYTES_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    max_contexts_per_session: int
    max_objects_per_context: int
    max_translate_batch: int
    max_message_bytes: int
    lease_seconds_default: int
    lease_seconds_max: int
    max_fds_per_session: int
    max_areas_per_ioas: int
    max_mapped_bytes_per_session: int
    max_sessions: int
    dma_entry_limit: int
    max_memory_bytes_per_session: int
    def __init__(self, max_contexts_per_session: _Optional[int] = ..., max_objects_per_context: _Optional[int] = ..., max_translate_batch: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., lease_seconds_default: _Optional[int] = ..., lease_seconds_max: _Optional[int] = ..., max_fds_per_session: _Optional[int] = ..., max_areas_per_ioas: _Optional[int] = ..., max_mapped_bytes_per_session: _Optional[int] = ..., max_sessions: _Optional[int] = ..., dma_entry_limit: _Optional[int] = ..., max_memory_bytes_per_session: _Optional[int] = ...) -> None: ...

class ObjectCounts(_message.Message):
    __slots__ = ("sessions", "contexts", "objects", "ioas", "areas", "mapped_bytes", "hwpts", "devices", "device_fds", "memory_bytes")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    IOAS_FIELD_NUMBER: _ClassVar[int]
    AREAS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    HWPTS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    sessions: int
    contexts: int
    objects: int
    ioas: int
    areas: int
    mapped_bytes: int
    hwpts: int
    devices: int
    device_fds: int
    memory_bytes: int
    def __init__(self, sessions: _Optional[int] = ..., contexts: _Optional[int] = ..., objects: _Optional[int] = ..., ioas: _Optional[int] = ..., areas: _Optional[int] = ..., mapped_bytes: _Optional[int] = ..., hwpts: _Optional[int] = ..., devices: _Optional[int] = ..., device_fds: _Optional[int] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("version", "core_version", "page_size", "limits", "daemon", "session", "session_id", "group_stage", "topology_source", "rss_bytes")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DAEMON_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_STAGE_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    version: str
    core_version: str
    page_size: int
    limits: Limits
    daemon: ObjectCounts
    session: ObjectCounts
    session_id: str
    group_stage: int
    topology_source: str
    rss_bytes: int
    def __init__(self, version: _Optional[str] = ..., core_version: _Optional[str] = ..., page_size: _Optional[int] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., daemon: _Optional[_Union[ObjectCounts, _Mapping]] = ..., session: _Optional[_Union[ObjectCounts, _Mapping]] = ..., session_id: _Optional[str] = ..., group_stage: _Optional[int] = ..., topology_source: _Optional[str] = ..., rss_bytes: _Optional[int] = ...) -> None: ...

class AdminListSessionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AdminListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[AdminSession]
    def __init__(self, sessions: _Optional[_Iterable[_Union[AdminSession, _Mapping]]] = ...) -> None: ...

class AdminSession(_message.Message):
    __slots__ = ("session_id", "client_name", "identity", "uid", "pid", "contexts", "groups", "devices", "mapped_bytes", "memory_bytes", "lease_seconds", "lease_remaining_seconds", "watch_streams", "fds")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    MAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WATCH_STREAMS_FIELD_NUMBER: _ClassVar[int]
    FDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    client_name: str
    identity: str
    uid: int
    pid: int
    contexts: _containers.RepeatedCompositeFieldContainer[AdminContext]
    groups: _containers.RepeatedScalarFieldContainer[int]
    devices: _containers.RepeatedScalarFieldContainer[str]
    mapped_bytes: int
    memory_bytes: int
    lease_seconds: int
    lease_remaining_seconds: float
    watch_streams: int
    fds: int
    def __init__(self, session_id: _Optional[str] = ..., client_name: _Optional[str] = ..., identity: _Optional[str] = ..., uid: _Optional[int] = ..., pid: _Optional[int] = ..., contexts: _Optional[_Iterable[_Union[AdminContext, _Mapping]]] = ..., groups: _Optional[_Iterable[int]] = ..., devices: _Optional[_Iterable[str]] = ..., mapped_bytes: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., lease_seconds: _Optional[int] = ..., lease_remaining_seconds: _Optional[float] = ..., watch_streams: _Optional[int] = ..., fds: _Optional[int] = ...) -> None: ...

class AdminContext(_message.Message):
    __slots__ = ("iommufd", "objects", "areas", "mapped_bytes")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    AREAS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    objects: int
    areas: int
    mapped_bytes: int
    def __init__(self, iommufd: _Optional[int] = ..., objects: _Optional[int] = ..., areas: _Optional[int] = ..., mapped_bytes: _Optional[int] = ...) -> None: ...

class ListObjectsRequest(_message.Message):
    __slots__ = ("iommufd",)
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    def __init__(self, iommufd: _Optional[int] = ...) -> None: ...

class ObjectInfo(_message.Message):
    __slots__ = ("id", "type", "users", "areas", "mapped_bytes", "ioas_id", "auto_domain", "device", "cookie", "parent_id", "viommu_id", "virt_id", "dev_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    AREAS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    AUTO_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    VIOMMU_ID_FIELD_NUMBER: _ClassVar[int]
    VIRT_ID_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    type: ObjectType
    users: int
    areas: int
    mapped_bytes: int
    ioas_id: int
    auto_domain: bool
    device: str
    cookie: int
    parent_id: int
    viommu_id: int
    virt_id: int
    dev_id: int
    def __init__(self, id: _Optional[int] = ..., type: _Optional[_Union[ObjectType, str]] = ..., users: _Optional[int] = ..., areas: _Optional[int] = ..., mapped_bytes: _Optional[int] = ..., ioas_id: _Optional[int] = ..., auto_domain: _Optional[bool] = ..., device: _Optional[str] = ..., cookie: _Optional[int] = ..., parent_id: _Optional[int] = ..., viommu_id: _Optional[int] = ..., virt_id: _Optional[int] = ..., dev_id: _Optional[int] = ...) -> None: ...

class ListObjectsResponse(_message.Message):
    __slots__ = ("objects",)
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectInfo]
    def __init__(self, objects: _Optional[_Iterable[_Union[ObjectInfo, _Mapping]]] = ...) -> None: ...

class ListAreasRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id", "start_iova", "max_areas")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    START_IOVA_FIELD_NUMBER: _ClassVar[int]
    MAX_AREAS_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    start_iova: int
    max_areas: int
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ..., start_iova: _Optional[int] = ..., max_areas: _Optional[int] = ...) -> None: ...

class Area(_message.Message):
    __slots__ = ("iova", "length", "user_va", "prot")
    IOVA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    USER_VA_FIELD_NUMBER: _ClassVar[int]
    PROT_FIELD_NUMBER: _ClassVar[int]
    iova: int
    length: int
    user_va: int
    prot: int
    def __init__(self, iova: _Optional[int] = ..., length: _Optional[int] = ..., user_va: _Optional[int] = ..., prot: _Optional[int] = ...) -> None: ...

class ListAreasResponse(_message.Message):
    __slots__ = ("areas", "more", "next_iova")
    AREAS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    NEXT_IOVA_FIELD_NUMBER: _ClassVar[int]
    areas: _containers.RepeatedCompositeFieldContainer[Area]
    more: bool
    next_iova: int
    def __init__(self, areas: _Optional[_Iterable[_Union[Area, _Mapping]]] = ..., more: _Optional[bool] = ..., next_iova: _Optional[int] = ...) -> None: ...

class ReservedRegion(_message.Message):
    __slots__ = ("start", "last", "kind")
    START_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    start: int
    last: int
    kind: str
    def __init__(self, start: _Optional[int] = ..., last: _Optional[int] = ..., kind: _Optional[str] = ...) -> None: ...

class HostDevice(_message.Message):
    __slots__ = ("name", "group", "vendor", "device", "class_code", "driver", "driver_managed_dma", "reserved_regions", "pgsize_bitmap", "max_pasid_log2", "dirty_tracking", "reliable_source_id", "aperture_bits", "description", "user_open", "iommu", "aperture_start")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CLASS_CODE_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    DRIVER_MANAGED_DMA_FIELD_NUMBER: _ClassVar[int]
    RESERVED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    PGSIZE_BITMAP_FIELD_NUMBER: _ClassVar[int]
    MAX_PASID_LOG2_FIELD_NUMBER: _ClassVar[int]
    DIRTY_TRACKING_FIELD_NUMBER: _ClassVar[int]
    RELIABLE_SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    APERTURE_BITS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    USER_OPEN_FIELD_NUMBER: _ClassVar[int]
    IOMMU_FIELD_NUMBER: _ClassVar[int]
    APERTURE_START_FIELD_NUMBER: _ClassVar[int]
    name: str
    group: int
    vendor: int
    device: int
    class_code: int
    driver: str
    driver_managed_dma: bool
    reserved_regions: _containers.RepeatedCompositeFieldContainer[ReservedRegion]
    pgsize_bitmap: int
    max_pasid_log2: int
    dirty_tracking: bool
    reliable_source_id: bool
    aperture_bits: int
    description: str
    user_open: bool
    iommu: str
    aperture_start: int
    def __init__(self, name: _Optional[str] = ..., group: _Optional[int] = ..., vendor: _Optional[int] = ..., device: _Optional[int] = ..., class_code: _Optional[int] = ..., driver: _Optional[str] = ..., driver_managed_dma: _Optional[bool] = ..., reserved_regions: _Optional[_Iterable[_Union[ReservedRegion, _Mapping]]] = ..., pgsize_bitmap: _Optional[int] = ..., max_pasid_log2: _Optional[int] = ..., dirty_tracking: _Optional[bool] = ..., reliable_source_id: _Optional[bool] = ..., aperture_bits: _Optional[int] = ..., description: _Optional[str] = ..., user_open: _Optional[bool] = ..., iommu: _Optional[str] = ..., aperture_start: _Optional[int] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[HostDevice]
    def __init__(self, devices: _Optional[_Iterable[_Union[HostDevice, _Mapping]]] = ...) -> None: ...

class IommuGroup(_message.Message):
    __slots__ = ("group", "devices", "viable", "owner", "owner_cnt", "domain")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    VIABLE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    OWNER_CNT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    group: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    viable: bool
    owner: GroupOwner
    owner_cnt: int
    domain: str
    def __init__(self, group: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ..., viable: _Optional[bool] = ..., owner: _Optional[_Union[GroupOwner, str]] = ..., owner_cnt: _Optional[int] = ..., domain: _Optional[str] = ...) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGroupsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[IommuGroup]
    def __init__(self, groups: _Optional[_Iterable[_Union[IommuGroup, _Mapping]]] = ...) -> None: ...

class BindHostDriverRequest(_message.Message):
    __slots__ = ("device", "driver")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    device: str
    driver: str
    def __init__(self, device: _Optional[str] = ..., driver: _Optional[str] = ...) -> None: ...

class BindHostDriverResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnbindHostDriverRequest(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: str
    def __init__(self, device: _Optional[str] = ...) -> None: ...

class UnbindHostDriverResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HotAddDeviceRequest(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: HostDevice
    def __init__(self, device: _Optional[_Union[HostDevice, _Mapping]] = ...) -> None: ...

class HotAddDeviceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HotRemoveDeviceRequest(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: str
    def __init__(self, device: _Optional[str] = ...) -> None: ...

class HotRemoveDeviceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchHostRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchHostResponse(_message.Message):
    __slots__ = ("kind", "group", "device", "detail")
    KIND_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    group: int
    device: str
    detail: str
    def __init__(self, kind: _Optional[str] = ..., group: _Optional[int] = ..., device: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class OpenDeviceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class OpenDeviceResponse(_message.Message):
    __slots__ = ("device_fd",)
    DEVICE_FD_FIELD_NUMBER: _ClassVar[int]
    device_fd: int
    def __init__(self, device_fd: _Optional[int] = ...) -> None: ...

class CloseDeviceRequest(_message.Message):
    __slots__ = ("device_fd",)
    DEVICE_FD_FIELD_NUMBER: _ClassVar[int]
    device_fd: int
    def __init__(self, device_fd: _Optional[int] = ...) -> None: ...

class CloseDeviceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceGetInfoRequest(_message.Message):
    __slots__ = ("device_fd",)
    DEVICE_FD_FIELD_NUMBER: _ClassVar[int]
    device_fd: int
    def __init__(self, device_fd: _Optional[int] = ...) -> None: ...

class DeviceGetInfoResponse(_message.Message):
    __slots__ = ("device", "bound", "dev_id", "rid_hwpt_id", "pasid_hwpt_ids")
    class PasidHwptIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    RID_HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_HWPT_IDS_FIELD_NUMBER: _ClassVar[int]
    device: HostDevice
    bound: bool
    dev_id: int
    rid_hwpt_id: int
    pasid_hwpt_ids: _containers.ScalarMap[int, int]
    def __init__(self, device: _Optional[_Union[HostDevice, _Mapping]] = ..., bound: _Optional[bool] = ..., dev_id: _Optional[int] = ..., rid_hwpt_id: _Optional[int] = ..., pasid_hwpt_ids: _Optional[_Mapping[int, int]] = ...) -> None: ...

class DeviceBindIommufdRequest(_message.Message):
    __slots__ = ("device_fd", "flags", "iommufd", "cookie")
    DEVICE_FD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    device_fd: int
    flags: int
    iommufd: int
    cookie: int
    def __init__(self, device_fd: _Optional[int] = ..., flags: _Optional[int] = ..., iommufd: _Optional[int] = ..., cookie: _Optional[int] = ...) -> None: ...

class DeviceBindIommufdResponse(_message.Message):
    __slots__ = ("out_devid",)
    OUT_DEVID_FIELD_NUMBER: _ClassVar[int]
    out_devid: int
    def __init__(self, out_devid: _Optional[int] = ...) -> None: ...

class IommufdBindDeviceRequest(_message.Message):
    __slots__ = ("iommufd", "device_fd", "cookie")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FD_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    device_fd: int
    cookie: int
    def __init__(self, iommufd: _Optional[int] = ..., device_fd: _Optional[int] = ..., cookie: _Optional[int] = ...) -> None: ...

class IommufdBindDeviceResponse(_message.Message):
    __slots__ = ("dev_id",)
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    dev_id: int
    def __init__(self, dev_id: _Optional[int] = ...) -> None: ...

class DeviceAttachIommufdPtRequest(_message.Message):
    __slots__ = ("device_fd", "flags", "pt_id", "pasid")
    DEVICE_FD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    device_fd: int
    flags: int
    pt_id: int
    pasid: int
    def __init__(self, device_fd: _Optional[int] = ..., flags: _Optional[int] = ..., pt_id: _Optional[int] = ..., pasid: _Optional[int] = ...) -> None: ...

class DeviceAttachIommufdPtResponse(_message.Message):
    __slots__ = ("pt_id",)
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    pt_id: int
    def __init__(self, pt_id: _Optional[int] = ...) -> None: ...

class DeviceDetachIommufdPtRequest(_message.Message):
    __slots__ = ("device_fd", "flags", "pasid")
    DEVICE_FD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    device_fd: int
    flags: int
    pasid: int
    def __init__(self, device_fd: _Optional[int] = ..., flags: _Optional[int] = ..., pasid: _Optional[int] = ...) -> None: ...

class DeviceDetachIommufdPtResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DmaAccess(_message.Message):
    __slots__ = ("iova", "length", "write")
    IOVA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    iova: int
    length: int
    write: bool
    def __init__(self, iova: _Optional[int] = ..., length: _Optional[int] = ..., write: _Optional[bool] = ...) -> None: ...

class DmaResult(_message.Message):
    __slots__ = ("ok", "pa", "fault")
    OK_FIELD_NUMBER: _ClassVar[int]
    PA_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    pa: int
    fault: DmaFaultReason
    def __init__(self, ok: _Optional[bool] = ..., pa: _Optional[int] = ..., fault: _Optional[_Union[DmaFaultReason, str]] = ...) -> None: ...

class DmaFault(_message.Message):
    __slots__ = ("dev_id", "cookie", "pasid", "iova", "write", "reason", "page_request")
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAGE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    dev_id: int
    cookie: int
    pasid: int
    iova: int
    write: bool
    reason: DmaFaultReason
    page_request: bool
    def __init__(self, dev_id: _Optional[int] = ..., cookie: _Optional[int] = ..., pasid: _Optional[int] = ..., iova: _Optional[int] = ..., write: _Optional[bool] = ..., reason: _Optional[_Union[DmaFaultReason, str]] = ..., page_request: _Optional[bool] = ...) -> None: ...

class DeviceDmaRequest(_message.Message):
    __slots__ = ("device_fd", "pasid", "accesses")
    DEVICE_FD_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    device_fd: int
    pasid: int
    accesses: _containers.RepeatedCompositeFieldContainer[DmaAccess]
    def __init__(self, device_fd: _Optional[int] = ..., pasid: _Optional[int] = ..., accesses: _Optional[_Iterable[_Union[DmaAccess, _Mapping]]] = ...) -> None: ...

class DeviceDmaResponse(_message.Message):
    __slots__ = ("results", "faults")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DmaResult]
    faults: _containers.RepeatedCompositeFieldContainer[DmaFault]
    def __init__(self, results: _Optional[_Iterable[_Union[DmaResult, _Mapping]]] = ..., faults: _Optional[_Iterable[_Union[DmaFault, _Mapping]]] = ...) -> None: ...

class HwptAllocRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "dev_id", "pt_id", "reserved", "data_type", "data_len", "fault_id", "data")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_LEN_FIELD_NUMBER: _ClassVar[int]
    FAULT_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    dev_id: int
    pt_id: int
    reserved: int
    data_type: int
    data_len: int
    fault_id: int
    data: bytes
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., dev_id: _Optional[int] = ..., pt_id: _Optional[int] = ..., reserved: _Optional[int] = ..., data_type: _Optional[int] = ..., data_len: _Optional[int] = ..., fault_id: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class HwptAllocResponse(_message.Message):
    __slots__ = ("out_hwpt_id",)
    OUT_HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    out_hwpt_id: int
    def __init__(self, out_hwpt_id: _Optional[int] = ...) -> None: ...

class HwptSetDirtyTrackingRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "hwpt_id", "reserved")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    hwpt_id: int
    reserved: int
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., hwpt_id: _Optional[int] = ..., reserved: _Optional[int] = ...) -> None: ...

class HwptSetDirtyTrackingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HwptGetDirtyBitmapRequest(_message.Message):
    __slots__ = ("iommufd", "hwpt_id", "flags", "reserved", "iova", "length", "page_size")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    hwpt_id: int
    flags: int
    reserved: int
    iova: int
    length: int
    page_size: int
    def __init__(self, iommufd: _Optional[int] = ..., hwpt_id: _Optional[int] = ..., flags: _Optional[int] = ..., reserved: _Optional[int] = ..., iova: _Optional[int] = ..., length: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class HwptGetDirtyBitmapResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class HwptInvalidateRequest(_message.Message):
    __slots__ = ("iommufd", "hwpt_id", "data", "data_type", "entry_len", "entry_num", "reserved")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_LEN_FIELD_NUMBER: _ClassVar[int]
    ENTRY_NUM_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    hwpt_id: int
    data: bytes
    data_type: int
    entry_len: int
    entry_num: int
    reserved: int
    def __init__(self, iommufd: _Optional[int] = ..., hwpt_id: _Optional[int] = ..., data: _Optional[bytes] = ..., data_type: _Optional[int] = ..., entry_len: _Optional[int] = ..., entry_num: _Optional[int] = ..., reserved: _Optional[int] = ...) -> None: ...

class HwptInvalidateResponse(_message.Message):
    __slots__ = ("entry_num",)
    ENTRY_NUM_FIELD_NUMBER: _ClassVar[int]
    entry_num: int
    def __init__(self, entry_num: _Optional[int] = ...) -> None: ...

class FaultQueueAllocRequest(_message.Message):
    __slots__ = ("iommufd", "flags")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class FaultQueueAllocResponse(_message.Message):
    __slots__ = ("out_fault_id", "out_fault_fd")
    OUT_FAULT_ID_FIELD_NUMBER: _ClassVar[int]
    OUT_FAULT_FD_FIELD_NUMBER: _ClassVar[int]
    out_fault_id: int
    out_fault_fd: int
    def __init__(self, out_fault_id: _Optional[int] = ..., out_fault_fd: _Optional[int] = ...) -> None: ...

class PageFault(_message.Message):
    __slots__ = ("flags", "dev_id", "pasid", "grpid", "perm", "addr", "length", "cookie", "bind_cookie")
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    GRPID_FIELD_NUMBER: _ClassVar[int]
    PERM_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    BIND_COOKIE_FIELD_NUMBER: _ClassVar[int]
    flags: int
    dev_id: int
    pasid: int
    grpid: int
    perm: int
    addr: int
    length: int
    cookie: int
    bind_cookie: int
    def __init__(self, flags: _Optional[int] = ..., dev_id: _Optional[int] = ..., pasid: _Optional[int] = ..., grpid: _Optional[int] = ..., perm: _Optional[int] = ..., addr: _Optional[int] = ..., length: _Optional[int] = ..., cookie: _Optional[int] = ..., bind_cookie: _Optional[int] = ...) -> None: ...

class PageResponse(_message.Message):
    __slots__ = ("cookie", "code")
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    cookie: int
    code: int
    def __init__(self, cookie: _Optional[int] = ..., code: _Optional[int] = ...) -> None: ...

class FaultQueueReadRequest(_message.Message):
    __slots__ = ("fault_fd", "count")
    FAULT_FD_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    fault_fd: int
    count: int
    def __init__(self, fault_fd: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class FaultQueueReadResponse(_message.Message):
    __slots__ = ("data", "faults")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    faults: _containers.RepeatedCompositeFieldContainer[PageFault]
    def __init__(self, data: _Optional[bytes] = ..., faults: _Optional[_Iterable[_Union[PageFault, _Mapping]]] = ...) -> None: ...

class WatchFaultQueueRequest(_message.Message):
    __slots__ = ("fault_fd",)
    FAULT_FD_FIELD_NUMBER: _ClassVar[int]
    fault_fd: int
    def __init__(self, fault_fd: _Optional[int] = ...) -> None: ...

class WatchFaultQueueResponse(_message.Message):
    __slots__ = ("faults",)
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    faults: _containers.RepeatedCompositeFieldContainer[PageFault]
    def __init__(self, faults: _Optional[_Iterable[_Union[PageFault, _Mapping]]] = ...) -> None: ...

class FaultQueueRespondRequest(_message.Message):
    __slots__ = ("fault_fd", "responses")
    FAULT_FD_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    fault_fd: int
    responses: _containers.RepeatedCompositeFieldContainer[PageResponse]
    def __init__(self, fault_fd: _Optional[int] = ..., responses: _Optional[_Iterable[_Union[PageResponse, _Mapping]]] = ...) -> None: ...

class FaultQueueRespondResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class ViommuAllocRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "type", "dev_id", "hwpt_id", "data_len", "reserved", "data")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_LEN_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    type: int
    dev_id: int
    hwpt_id: int
    data_len: int
    reserved: int
    data: bytes
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., type: _Optional[int] = ..., dev_id: _Optional[int] = ..., hwpt_id: _Optional[int] = ..., data_len: _Optional[int] = ..., reserved: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ViommuAllocResponse(_message.Message):
    __slots__ = ("out_viommu_id", "data")
    OUT_VIOMMU_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    out_viommu_id: int
    data: bytes
    def __init__(self, out_viommu_id: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class VdeviceAllocRequest(_message.Message):
    __slots__ = ("iommufd", "viommu_id", "dev_id", "virt_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    VIOMMU_ID_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    VIRT_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    viommu_id: int
    dev_id: int
    virt_id: int
    def __init__(self, iommufd: _Optional[int] = ..., viommu_id: _Optional[int] = ..., dev_id: _Optional[int] = ..., virt_id: _Optional[int] = ...) -> None: ...

class VdeviceAllocResponse(_message.Message):
    __slots__ = ("out_vdevice_id",)
    OUT_VDEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    out_vdevice_id: int
    def __init__(self, out_vdevice_id: _Optional[int] = ...) -> None: ...

class HwQueueAllocRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "viommu_id", "type", "index", "nesting_parent_iova", "length")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    VIOMMU_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NESTING_PARENT_IOVA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    viommu_id: int
    type: int
    index: int
    nesting_parent_iova: int
    length: int
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., viommu_id: _Optional[int] = ..., type: _Optional[int] = ..., index: _Optional[int] = ..., nesting_parent_iova: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class HwQueueAllocResponse(_message.Message):
    __slots__ = ("out_hw_queue_id",)
    OUT_HW_QUEUE_ID_FIELD_NUMBER: _ClassVar[int]
    out_hw_queue_id: int
    def __init__(self, out_hw_queue_id: _Optional[int] = ...) -> None: ...

class VeventqAllocRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "viommu_id", "type", "veventq_depth", "reserved")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    VIOMMU_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VEVENTQ_DEPTH_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    viommu_id: int
    type: int
    veventq_depth: int
    reserved: int
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., viommu_id: _Optional[int] = ..., type: _Optional[int] = ..., veventq_depth: _Optional[int] = ..., reserved: _Optional[int] = ...) -> None: ...

class VeventqAllocResponse(_message.Message):
    __slots__ = ("out_veventq_id", "out_veventq_fd")
    OUT_VEVENTQ_ID_FIELD_NUMBER: _ClassVar[int]
    OUT_VEVENTQ_FD_FIELD_NUMBER: _ClassVar[int]
    out_veventq_id: int
    out_veventq_fd: int
    def __init__(self, out_veventq_id: _Optional[int] = ..., out_veventq_fd: _Optional[int] = ...) -> None: ...

class VeventqReadRequest(_message.Message):
    __slots__ = ("veventq_fd", "count")
    VEVENTQ_FD_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    veventq_fd: int
    count: int
    def __init__(self, veventq_fd: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class VeventqReadResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class WatchVeventqRequest(_message.Message):
    __slots__ = ("veventq_fd",)
    VEVENTQ_FD_FIELD_NUMBER: _ClassVar[int]
    veventq_fd: int
    def __init__(self, veventq_fd: _Optional[int] = ...) -> None: ...

class IommufdMmapRequest(_message.Message):
    __slots__ = ("iommufd", "offset", "length", "shared", "exec")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    offset: int
    length: int
    shared: bool
    exec: bool
    def __init__(self, iommufd: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., shared: _Optional[bool] = ..., exec: _Optional[bool] = ...) -> None: ...

class IommufdMmapResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class IommufdMunmapRequest(_message.Message):
    __slots__ = ("iommufd", "offset")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    offset: int
    def __init__(self, iommufd: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class IommufdMunmapResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchVeventqResponse(_message.Message):
    __slots__ = ("flags", "sequence", "data")
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    flags: int
    sequence: int
    data: bytes
    def __init__(self, flags: _Optional[int] = ..., sequence: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetHwInfoRequest(_message.Message):
    __slots__ = ("iommufd", "flags", "dev_id", "data_len", "in_data_type", "reserved")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_LEN_FIELD_NUMBER: _ClassVar[int]
    IN_DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    dev_id: int
    data_len: int
    in_data_type: int
    reserved: int
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., dev_id: _Optional[int] = ..., data_len: _Optional[int] = ..., in_data_type: _Optional[int] = ..., reserved: _Optional[int] = ...) -> None: ...

class GetHwInfoResponse(_message.Message):
    __slots__ = ("data", "data_len", "out_data_type", "out_max_pasid_log2", "out_capabilities")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_LEN_FIELD_NUMBER: _ClassVar[int]
    OUT_DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUT_MAX_PASID_LOG2_FIELD_NUMBER: _ClassVar[int]
    OUT_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    data_len: int
    out_data_type: int
    out_max_pasid_log2: int
    out_capabilities: int
    def __init__(self, data: _Optional[bytes] = ..., data_len: _Optional[int] = ..., out_data_type: _Optional[int] = ..., out_max_pasid_log2: _Optional[int] = ..., out_capabilities: _Optional[int] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ("iommufd",)
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    def __init__(self, iommufd: _Optional[int] = ...) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("group_stage", "multi_device_groups", "split_groups", "bind_on_iommufd", "pasid")
    GROUP_STAGE_FIELD_NUMBER: _ClassVar[int]
    MULTI_DEVICE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_GROUPS_FIELD_NUMBER: _ClassVar[int]
    BIND_ON_IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    group_stage: int
    multi_device_groups: bool
    split_groups: bool
    bind_on_iommufd: bool
    pasid: bool
    def __init__(self, group_stage: _Optional[int] = ..., multi_device_groups: _Optional[bool] = ..., split_groups: _Optional[bool] = ..., bind_on_iommufd: _Optional[bool] = ..., pasid: _Optional[bool] = ...) -> None: ...

class OpenContainerRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OpenContainerResponse(_message.Message):
    __slots__ = ("container_fd",)
    CONTAINER_FD_FIELD_NUMBER: _ClassVar[int]
    container_fd: int
    def __init__(self, container_fd: _Optional[int] = ...) -> None: ...

class VfioGetApiVersionRequest(_message.Message):
    __slots__ = ("container_fd",)
    CONTAINER_FD_FIELD_NUMBER: _ClassVar[int]
    container_fd: int
    def __init__(self, container_fd: _Optional[int] = ...) -> None: ...

class VfioGetApiVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class VfioCheckExtensionRequest(_message.Message):
    __slots__ = ("container_fd", "extension")
    CONTAINER_FD_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    container_fd: int
    extension: int
    def __init__(self, container_fd: _Optional[int] = ..., extension: _Optional[int] = ...) -> None: ...

class VfioCheckExtensionResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...

class VfioSetIommuRequest(_message.Message):
    __slots__ = ("container_fd", "type")
    CONTAINER_FD_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    container_fd: int
    type: int
    def __init__(self, container_fd: _Optional[int] = ..., type: _Optional[int] = ...) -> None: ...

class VfioSetIommuResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VfioIommuGetInfoRequest(_message.Message):
    __slots__ = ("container_fd", "argsz")
    CONTAINER_FD_FIELD_NUMBER: _ClassVar[int]
    ARGSZ_FIELD_NUMBER: _ClassVar[int]
    container_fd: int
    argsz: int
    def __init__(self, container_fd: _Optional[int] = ..., argsz: _Optional[int] = ...) -> None: ...

class VfioMigrationCap(_message.Message):
    __slots__ = ("flags", "pgsize_bitmap", "max_dirty_bitmap_size")
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    PGSIZE_BITMAP_FIELD_NUMBER: _ClassVar[int]
    MAX_DIRTY_BITMAP_SIZE_FIELD_NUMBER: _ClassVar[int]
    flags: int
    pgsize_bitmap: int
    max_dirty_bitmap_size: int
    def __init__(self, flags: _Optional[int] = ..., pgsize_bitmap: _Optional[int] = ..., max_dirty_bitmap_size: _Optional[int] = ...) -> None: ...

class VfioIommuGetInfoResponse(_message.Message):
    __slots__ = ("argsz", "flags", "iova_pgsizes", "cap_offset", "iova_ranges", "dma_avail", "migration")
    ARGSZ_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOVA_PGSIZES_FIELD_NUMBER: _ClassVar[int]
    CAP_OFFSET_FIELD_NUMBER: _ClassVar[int]
    IOVA_RANGES_FIELD_NUMBER: _ClassVar[int]
    DMA_AVAIL_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_FIELD_NUMBER: _ClassVar[int]
    argsz: int
    flags: int
    iova_pgsizes: int
    cap_offset: int
    iova_ranges: _containers.RepeatedCompositeFieldContainer[IovaRange]
    dma_avail: int
    migration: VfioMigrationCap
    def __init__(self, argsz: _Optional[int] = ..., flags: _Optional[int] = ..., iova_pgsizes: _Optional[int] = ..., cap_offset: _Optional[int] = ..., iova_ranges: _Optional[_Iterable[_Union[IovaRange, _Mapping]]] = ..., dma_avail: _Optional[int] = ..., migration: _Optional[_Union[VfioMigrationCap, _Mapping]] = ...) -> None: ...

class VfioIommuMapDmaRequest(_message.Message):
    __slots__ = ("container_fd", "argsz", "flags", "vaddr", "iova", "size")
    CONTAINER_FD_FIELD_NUMBER: _ClassVar[int]
    ARGSZ_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    VADDR_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    container_fd: int
    argsz: int
    flags: int
    vaddr: int
    iova: int
    size: int
    def __init__(self, container_fd: _Optional[int] = ..., argsz: _Optional[int] = ..., flags: _Optional[int] = ..., vaddr: _Optional[int] = ..., iova: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class VfioIommuMapDmaResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VfioIommuUnmapDmaRequest(_message.Message):
    __slots__ = ("container_fd", "argsz", "flags", "iova", "size", "bitmap_pgsize", "bitmap_size")
    CONTAINER_FD_FIELD_NUMBER: _ClassVar[int]
    ARGSZ_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BITMAP_PGSIZE_FIELD_NUMBER: _ClassVar[int]
    BITMAP_SIZE_FIELD_NUMBER: _ClassVar[int]
    container_fd: int
    argsz: int
    flags: int
    iova: int
    size: int
    bitmap_pgsize: int
    bitmap_size: int
    def __init__(self, container_fd: _Optional[int] = ..., argsz: _Optional[int] = ..., flags: _Optional[int] = ..., iova: _Optional[int] = ..., size: _Optional[int] = ..., bitmap_pgsize: _Optional[int] = ..., bitmap_size: _Optional[int] = ...) -> None: ...

class VfioIommuUnmapDmaResponse(_message.Message):
    __slots__ = ("size", "bitmap")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BITMAP_FIELD_NUMBER: _ClassVar[int]
    size: int
    bitmap: bytes
    def __init__(self, size: _Optional[int] = ..., bitmap: _Optional[bytes] = ...) -> None: ...

class VfioIommuDirtyPagesRequest(_message.Message):
    __slots__ = ("container_fd", "argsz", "flags", "iova", "size", "bitmap_pgsize", "bitmap_size")
    CONTAINER_FD_FIELD_NUMBER: _ClassVar[int]
    ARGSZ_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BITMAP_PGSIZE_FIELD_NUMBER: _ClassVar[int]
    BITMAP_SIZE_FIELD_NUMBER: _ClassVar[int]
    container_fd: int
    argsz: int
    flags: int
    iova: int
    size: int
    bitmap_pgsize: int
    bitmap_size: int
    def __init__(self, container_fd: _Optional[int] = ..., argsz: _Optional[int] = ..., flags: _Optional[int] = ..., iova: _Optional[int] = ..., size: _Optional[int] = ..., bitmap_pgsize: _Optional[int] = ..., bitmap_size: _Optional[int] = ...) -> None: ...

class VfioIommuDirtyPagesResponse(_message.Message):
    __slots__ = ("bitmap",)
    BITMAP_FIELD_NUMBER: _ClassVar[int]
    bitmap: bytes
    def __init__(self, bitmap: _Optional[bytes] = ...) -> None: ...

class OpenGroupRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: int
    def __init__(self, group: _Optional[int] = ...) -> None: ...

class OpenGroupResponse(_message.Message):
    __slots__ = ("group_fd",)
    GROUP_FD_FIELD_NUMBER: _ClassVar[int]
    group_fd: int
    def __init__(self, group_fd: _Optional[int] = ...) -> None: ...

class CloseGroupRequest(_message.Message):
    __slots__ = ("group_fd",)
    GROUP_FD_FIELD_NUMBER: _ClassVar[int]
    group_fd: int
    def __init__(self, group_fd: _Optional[int] = ...) -> None: ...

class CloseGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VfioGroupGetStatusRequest(_message.Message):
    __slots__ = ("group_fd", "argsz")
    GROUP_FD_FIELD_NUMBER: _ClassVar[int]
    ARGSZ_FIELD_NUMBER: _ClassVar[int]
    group_fd: int
    argsz: int
    def __init__(self, group_fd: _Optional[int] = ..., argsz: _Optional[int] = ...) -> None: ...

class VfioGroupGetStatusResponse(_message.Message):
    __slots__ = ("flags",)
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    flags: int
    def __init__(self, flags: _Optional[int] = ...) -> None: ...

class VfioGroupSetContainerRequest(_message.Message):
    __slots__ = ("group_fd", "container_fd")
    GROUP_FD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FD_FIELD_NUMBER: _ClassVar[int]
    group_fd: int
    container_fd: int
    def __init__(self, group_fd: _Optional[int] = ..., container_fd: _Optional[int] = ...) -> None: ...

class VfioGroupSetContainerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VfioGroupUnsetContainerRequest(_message.Message):
    __slots__ = ("group_fd",)
    GROUP_FD_FIELD_NUMBER: _ClassVar[int]
    group_fd: int
    def __init__(self, group_fd: _Optional[int] = ...) -> None: ...

class VfioGroupUnsetContainerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VfioGroupGetDeviceFdRequest(_message.Message):
    __slots__ = ("group_fd", "name")
    GROUP_FD_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    group_fd: int
    name: str
    def __init__(self, group_fd: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class VfioGroupGetDeviceFdResponse(_message.Message):
    __slots__ = ("device_fd",)
    DEVICE_FD_FIELD_NUMBER: _ClassVar[int]
    device_fd: int
    def __init__(self, device_fd: _Optional[int] = ...) -> None: ...

class IommuVfioIoasRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id", "op", "reserved")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    op: int
    reserved: int
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ..., op: _Optional[int] = ..., reserved: _Optional[int] = ...) -> None: ...

class IommuVfioIoasResponse(_message.Message):
    __slots__ = ("ioas_id",)
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    ioas_id: int
    def __init__(self, ioas_id: _Optional[int] = ...) -> None: ...

class DebugAdvanceClockRequest(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    def __init__(self, seconds: _Optional[float] = ...) -> None: ...

class DebugAdvanceClockResponse(_message.Message):
    __slots__ = ("reaped",)
    REAPED_FIELD_NUMBER: _ClassVar[int]
    reaped: int
    def __init__(self, reaped: _Optional[int] = ...) -> None: ...

class CloseFdRequest(_message.Message):
    __slots__ = ("fd",)
    FD_FIELD_NUMBER: _ClassVar[int]
    fd: int
    def __init__(self, fd: _Optional[int] = ...) -> None: ...

class CloseFdResponse(_message.Message):
    __slots__ = ("destroyed_objects",)
    DESTROYED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    destroyed_objects: int
    def __init__(self, destroyed_objects: _Optional[int] = ...) -> None: ...

class IommufdDeviceAttachRequest(_message.Message):
    __slots__ = ("iommufd", "dev_id", "pasid", "pt_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    dev_id: int
    pasid: int
    pt_id: int
    def __init__(self, iommufd: _Optional[int] = ..., dev_id: _Optional[int] = ..., pasid: _Optional[int] = ..., pt_id: _Optional[int] = ...) -> None: ...

class IommufdDeviceAttachResponse(_message.Message):
    __slots__ = ("pt_id",)
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    pt_id: int
    def __init__(self, pt_id: _Optional[int] = ...) -> None: ...

class IommufdDeviceReplaceRequest(_message.Message):
    __slots__ = ("iommufd", "dev_id", "pasid", "pt_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    dev_id: int
    pasid: int
    pt_id: int
    def __init__(self, iommufd: _Optional[int] = ..., dev_id: _Optional[int] = ..., pasid: _Optional[int] = ..., pt_id: _Optional[int] = ...) -> None: ...

class IommufdDeviceReplaceResponse(_message.Message):
    __slots__ = ("pt_id",)
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    pt_id: int
    def __init__(self, pt_id: _Optional[int] = ...) -> None: ...

class IommufdDeviceDetachRequest(_message.Message):
    __slots__ = ("iommufd", "dev_id", "pasid")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    dev_id: int
    pasid: int
    def __init__(self, iommufd: _Optional[int] = ..., dev_id: _Optional[int] = ..., pasid: _Optional[int] = ...) -> None: ...

class IommufdDeviceDetachResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IommufdDeviceDmaRequest(_message.Message):
    __slots__ = ("iommufd", "dev_id", "pasid", "accesses")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    dev_id: int
    pasid: int
    accesses: _containers.RepeatedCompositeFieldContainer[DmaAccess]
    def __init__(self, iommufd: _Optional[int] = ..., dev_id: _Optional[int] = ..., pasid: _Optional[int] = ..., accesses: _Optional[_Iterable[_Union[DmaAccess, _Mapping]]] = ...) -> None: ...

class IommufdDeviceDmaResponse(_message.Message):
    __slots__ = ("results", "faults")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DmaResult]
    faults: _containers.RepeatedCompositeFieldContainer[DmaFault]
    def __init__(self, results: _Optional[_Iterable[_Union[DmaResult, _Mapping]]] = ..., faults: _Optional[_Iterable[_Union[DmaFault, _Mapping]]] = ...) -> None: ...

class TestMockDomainRequest(_message.Message):
    __slots__ = ("iommufd", "pt_id", "dev_flags")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    DEV_FLAGS_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    pt_id: int
    dev_flags: int
    def __init__(self, iommufd: _Optional[int] = ..., pt_id: _Optional[int] = ..., dev_flags: _Optional[int] = ...) -> None: ...

class TestMockDomainResponse(_message.Message):
    __slots__ = ("out_stdev_id", "out_hwpt_id", "out_idev_id")
    OUT_STDEV_ID_FIELD_NUMBER: _ClassVar[int]
    OUT_HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    OUT_IDEV_ID_FIELD_NUMBER: _ClassVar[int]
    out_stdev_id: int
    out_hwpt_id: int
    out_idev_id: int
    def __init__(self, out_stdev_id: _Optional[int] = ..., out_hwpt_id: _Optional[int] = ..., out_idev_id: _Optional[int] = ...) -> None: ...

class TestMockDomainReplaceRequest(_message.Message):
    __slots__ = ("iommufd", "stdev_id", "pt_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    STDEV_ID_FIELD_NUMBER: _ClassVar[int]
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    stdev_id: int
    pt_id: int
    def __init__(self, iommufd: _Optional[int] = ..., stdev_id: _Optional[int] = ..., pt_id: _Optional[int] = ...) -> None: ...

class TestMockDomainReplaceResponse(_message.Message):
    __slots__ = ("pt_id",)
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    pt_id: int
    def __init__(self, pt_id: _Optional[int] = ...) -> None: ...

class TestAddReservedRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id", "start", "length")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    start: int
    length: int
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ..., start: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class TestAddReservedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UserBacking(_message.Message):
    __slots__ = ("mappings",)
    MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    mappings: _containers.RepeatedCompositeFieldContainer[MemoryMapping]
    def __init__(self, mappings: _Optional[_Iterable[_Union[MemoryMapping, _Mapping]]] = ...) -> None: ...

class MemoryMapping(_message.Message):
    __slots__ = ("offset", "length", "dev_major", "dev_minor", "inode", "file_offset", "shared")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    DEV_MAJOR_FIELD_NUMBER: _ClassVar[int]
    DEV_MINOR_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    FILE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    offset: int
    length: int
    dev_major: int
    dev_minor: int
    inode: int
    file_offset: int
    shared: bool
    def __init__(self, offset: _Optional[int] = ..., length: _Optional[int] = ..., dev_major: _Optional[int] = ..., dev_minor: _Optional[int] = ..., inode: _Optional[int] = ..., file_offset: _Optional[int] = ..., shared: _Optional[bool] = ...) -> None: ...

class TestMdCheckMapRequest(_message.Message):
    __slots__ = ("iommufd", "hwpt_id", "iova", "length", "user_va", "backing")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    USER_VA_FIELD_NUMBER: _ClassVar[int]
    BACKING_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    hwpt_id: int
    iova: int
    length: int
    user_va: int
    backing: UserBacking
    def __init__(self, iommufd: _Optional[int] = ..., hwpt_id: _Optional[int] = ..., iova: _Optional[int] = ..., length: _Optional[int] = ..., user_va: _Optional[int] = ..., backing: _Optional[_Union[UserBacking, _Mapping]] = ...) -> None: ...

class TestMdCheckMapResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestMdCheckRefsRequest(_message.Message):
    __slots__ = ("iommufd", "user_va", "length", "refs", "backing")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    USER_VA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    BACKING_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    user_va: int
    length: int
    refs: int
    backing: UserBacking
    def __init__(self, iommufd: _Optional[int] = ..., user_va: _Optional[int] = ..., length: _Optional[int] = ..., refs: _Optional[int] = ..., backing: _Optional[_Union[UserBacking, _Mapping]] = ...) -> None: ...

class TestMdCheckRefsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestDirtyRequest(_message.Message):
    __slots__ = ("iommufd", "hwpt_id", "flags", "iova", "length", "page_size", "bitmap")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    BITMAP_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    hwpt_id: int
    flags: int
    iova: int
    length: int
    page_size: int
    bitmap: bytes
    def __init__(self, iommufd: _Optional[int] = ..., hwpt_id: _Optional[int] = ..., flags: _Optional[int] = ..., iova: _Optional[int] = ..., length: _Optional[int] = ..., page_size: _Optional[int] = ..., bitmap: _Optional[bytes] = ...) -> None: ...

class TestDirtyResponse(_message.Message):
    __slots__ = ("out_nr_dirty",)
    OUT_NR_DIRTY_FIELD_NUMBER: _ClassVar[int]
    out_nr_dirty: int
    def __init__(self, out_nr_dirty: _Optional[int] = ...) -> None: ...

class TestCreateAccessRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id", "flags")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    flags: int
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class TestCreateAccessResponse(_message.Message):
    __slots__ = ("out_access_fd",)
    OUT_ACCESS_FD_FIELD_NUMBER: _ClassVar[int]
    out_access_fd: int
    def __init__(self, out_access_fd: _Optional[int] = ...) -> None: ...

class TestAccessReplaceIoasRequest(_message.Message):
    __slots__ = ("iommufd", "access_fd", "ioas_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    access_fd: int
    ioas_id: int
    def __init__(self, iommufd: _Optional[int] = ..., access_fd: _Optional[int] = ..., ioas_id: _Optional[int] = ...) -> None: ...

class TestAccessReplaceIoasResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestAccessPagesRequest(_message.Message):
    __slots__ = ("iommufd", "access_fd", "flags", "iova", "length", "user_va", "backing")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    USER_VA_FIELD_NUMBER: _ClassVar[int]
    BACKING_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    access_fd: int
    flags: int
    iova: int
    length: int
    user_va: int
    backing: UserBacking
    def __init__(self, iommufd: _Optional[int] = ..., access_fd: _Optional[int] = ..., flags: _Optional[int] = ..., iova: _Optional[int] = ..., length: _Optional[int] = ..., user_va: _Optional[int] = ..., backing: _Optional[_Union[UserBacking, _Mapping]] = ...) -> None: ...

class TestAccessPagesResponse(_message.Message):
    __slots__ = ("out_access_pages_id",)
    OUT_ACCESS_PAGES_ID_FIELD_NUMBER: _ClassVar[int]
    out_access_pages_id: int
    def __init__(self, out_access_pages_id: _Optional[int] = ...) -> None: ...

class TestDestroyAccessPagesRequest(_message.Message):
    __slots__ = ("iommufd", "access_fd", "access_pages_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FD_FIELD_NUMBER: _ClassVar[int]
    ACCESS_PAGES_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    access_fd: int
    access_pages_id: int
    def __init__(self, iommufd: _Optional[int] = ..., access_fd: _Optional[int] = ..., access_pages_id: _Optional[int] = ...) -> None: ...

class TestDestroyAccessPagesResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestAccessRwRequest(_message.Message):
    __slots__ = ("iommufd", "access_fd", "iova", "length", "user_va", "flags")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FD_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    USER_VA_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    access_fd: int
    iova: int
    length: int
    user_va: int
    flags: int
    def __init__(self, iommufd: _Optional[int] = ..., access_fd: _Optional[int] = ..., iova: _Optional[int] = ..., length: _Optional[int] = ..., user_va: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class CopySegment(_message.Message):
    __slots__ = ("user_va", "length", "buffer_offset")
    USER_VA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    BUFFER_OFFSET_FIELD_NUMBER: _ClassVar[int]
    user_va: int
    length: int
    buffer_offset: int
    def __init__(self, user_va: _Optional[int] = ..., length: _Optional[int] = ..., buffer_offset: _Optional[int] = ...) -> None: ...

class TestAccessRwResponse(_message.Message):
    __slots__ = ("segments", "write")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[CopySegment]
    write: bool
    def __init__(self, segments: _Optional[_Iterable[_Union[CopySegment, _Mapping]]] = ..., write: _Optional[bool] = ...) -> None: ...

class TestSetTempMemoryLimitRequest(_message.Message):
    __slots__ = ("iommufd", "limit")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    limit: int
    def __init__(self, iommufd: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class TestSetTempMemoryLimitResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestPasidAttachRequest(_message.Message):
    __slots__ = ("iommufd", "stdev_id", "pasid", "pt_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    STDEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    stdev_id: int
    pasid: int
    pt_id: int
    def __init__(self, iommufd: _Optional[int] = ..., stdev_id: _Optional[int] = ..., pasid: _Optional[int] = ..., pt_id: _Optional[int] = ...) -> None: ...

class TestPasidAttachResponse(_message.Message):
    __slots__ = ("pt_id",)
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    pt_id: int
    def __init__(self, pt_id: _Optional[int] = ...) -> None: ...

class TestPasidReplaceRequest(_message.Message):
    __slots__ = ("iommufd", "stdev_id", "pasid", "pt_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    STDEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    stdev_id: int
    pasid: int
    pt_id: int
    def __init__(self, iommufd: _Optional[int] = ..., stdev_id: _Optional[int] = ..., pasid: _Optional[int] = ..., pt_id: _Optional[int] = ...) -> None: ...

class TestPasidReplaceResponse(_message.Message):
    __slots__ = ("pt_id",)
    PT_ID_FIELD_NUMBER: _ClassVar[int]
    pt_id: int
    def __init__(self, pt_id: _Optional[int] = ...) -> None: ...

class TestPasidDetachRequest(_message.Message):
    __slots__ = ("iommufd", "stdev_id", "pasid")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    STDEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    stdev_id: int
    pasid: int
    def __init__(self, iommufd: _Optional[int] = ..., stdev_id: _Optional[int] = ..., pasid: _Optional[int] = ...) -> None: ...

class TestPasidDetachResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestPasidCheckHwptRequest(_message.Message):
    __slots__ = ("iommufd", "stdev_id", "pasid", "hwpt_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    STDEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    stdev_id: int
    pasid: int
    hwpt_id: int
    def __init__(self, iommufd: _Optional[int] = ..., stdev_id: _Optional[int] = ..., pasid: _Optional[int] = ..., hwpt_id: _Optional[int] = ...) -> None: ...

class TestPasidCheckHwptResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestDevCheckCacheRequest(_message.Message):
    __slots__ = ("iommufd", "dev_id", "cache_id", "cache")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    CACHE_ID_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    dev_id: int
    cache_id: int
    cache: int
    def __init__(self, iommufd: _Optional[int] = ..., dev_id: _Optional[int] = ..., cache_id: _Optional[int] = ..., cache: _Optional[int] = ...) -> None: ...

class TestDevCheckCacheResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestMdCheckIotlbRequest(_message.Message):
    __slots__ = ("iommufd", "hwpt_id", "iotlb_id", "iotlb")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    HWPT_ID_FIELD_NUMBER: _ClassVar[int]
    IOTLB_ID_FIELD_NUMBER: _ClassVar[int]
    IOTLB_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    hwpt_id: int
    iotlb_id: int
    iotlb: int
    def __init__(self, iommufd: _Optional[int] = ..., hwpt_id: _Optional[int] = ..., iotlb_id: _Optional[int] = ..., iotlb: _Optional[int] = ...) -> None: ...

class TestMdCheckIotlbResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestTriggerVeventRequest(_message.Message):
    __slots__ = ("iommufd", "dev_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    dev_id: int
    def __init__(self, iommufd: _Optional[int] = ..., dev_id: _Optional[int] = ...) -> None: ...

class TestTriggerVeventResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestTriggerIopfRequest(_message.Message):
    __slots__ = ("iommufd", "dev_id", "pasid", "grpid", "perm", "addr")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    DEV_ID_FIELD_NUMBER: _ClassVar[int]
    PASID_FIELD_NUMBER: _ClassVar[int]
    GRPID_FIELD_NUMBER: _ClassVar[int]
    PERM_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    dev_id: int
    pasid: int
    grpid: int
    perm: int
    addr: int
    def __init__(self, iommufd: _Optional[int] = ..., dev_id: _Optional[int] = ..., pasid: _Optional[int] = ..., grpid: _Optional[int] = ..., perm: _Optional[int] = ..., addr: _Optional[int] = ...) -> None: ...

class TestTriggerIopfResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestDmabufGetRequest(_message.Message):
    __slots__ = ("iommufd", "length", "open_flags")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    OPEN_FLAGS_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    length: int
    open_flags: int
    def __init__(self, iommufd: _Optional[int] = ..., length: _Optional[int] = ..., open_flags: _Optional[int] = ...) -> None: ...

class TestDmabufGetResponse(_message.Message):
    __slots__ = ("fd",)
    FD_FIELD_NUMBER: _ClassVar[int]
    fd: int
    def __init__(self, fd: _Optional[int] = ...) -> None: ...

class TestDmabufRevokeRequest(_message.Message):
    __slots__ = ("iommufd", "dmabuf_fd", "revoked")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    DMABUF_FD_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    dmabuf_fd: int
    revoked: bool
    def __init__(self, iommufd: _Optional[int] = ..., dmabuf_fd: _Optional[int] = ..., revoked: _Optional[bool] = ...) -> None: ...

class TestDmabufRevokeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
