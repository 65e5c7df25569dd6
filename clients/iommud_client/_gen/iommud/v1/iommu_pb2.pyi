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

class IoasMapFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IOAS_MAP_FLAG_UNSPECIFIED: _ClassVar[IoasMapFlag]
    IOAS_MAP_FLAG_FIXED_IOVA: _ClassVar[IoasMapFlag]
    IOAS_MAP_FLAG_WRITEABLE: _ClassVar[IoasMapFlag]
    IOAS_MAP_FLAG_READABLE: _ClassVar[IoasMapFlag]
OBJECT_TYPE_UNSPECIFIED: ObjectType
OBJECT_TYPE_IOAS: ObjectType
OBJECT_TYPE_HWPT_PAGING: ObjectType
OBJECT_TYPE_HWPT_NESTED: ObjectType
OBJECT_TYPE_DEVICE: ObjectType
IOAS_MAP_FLAG_UNSPECIFIED: IoasMapFlag
IOAS_MAP_FLAG_FIXED_IOVA: IoasMapFlag
IOAS_MAP_FLAG_WRITEABLE: IoasMapFlag
IOAS_MAP_FLAG_READABLE: IoasMapFlag

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
    __slots__ = ("iommufd", "flags", "ioas_id", "reserved", "user_va", "length", "iova")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    USER_VA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    IOVA_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    flags: int
    ioas_id: int
    reserved: int
    user_va: int
    length: int
    iova: int
    def __init__(self, iommufd: _Optional[int] = ..., flags: _Optional[int] = ..., ioas_id: _Optional[int] = ..., reserved: _Optional[int] = ..., user_va: _Optional[int] = ..., length: _Optional[int] = ..., iova: _Optional[int] = ...) -> None: ...

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

class Limits(_message.Message):
    __slots__ = ("max_contexts_per_session", "max_objects_per_context", "max_translate_batch", "max_message_bytes", "lease_seconds_default", "lease_seconds_max")
    MAX_CONTEXTS_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_OBJECTS_PER_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_TRANSLATE_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_MAX_FIELD_NUMBER: _ClassVar[int]
    max_contexts_per_session: int
    max_objects_per_context: int
    max_translate_batch: int
    max_message_bytes: int
    lease_seconds_default: int
    lease_seconds_max: int
    def __init__(self, max_contexts_per_session: _Optional[int] = ..., max_objects_per_context: _Optional[int] = ..., max_translate_batch: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., lease_seconds_default: _Optional[int] = ..., lease_seconds_max: _Optional[int] = ...) -> None: ...

class ObjectCounts(_message.Message):
    __slots__ = ("sessions", "contexts", "objects", "ioas", "areas", "mapped_bytes")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    IOAS_FIELD_NUMBER: _ClassVar[int]
    AREAS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    sessions: int
    contexts: int
    objects: int
    ioas: int
    areas: int
    mapped_bytes: int
    def __init__(self, sessions: _Optional[int] = ..., contexts: _Optional[int] = ..., objects: _Optional[int] = ..., ioas: _Optional[int] = ..., areas: _Optional[int] = ..., mapped_bytes: _Optional[int] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("version", "core_version", "page_size", "limits", "daemon", "session", "session_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DAEMON_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    version: str
    core_version: str
    page_size: int
    limits: Limits
    daemon: ObjectCounts
    session: ObjectCounts
    session_id: str
    def __init__(self, version: _Optional[str] = ..., core_version: _Optional[str] = ..., page_size: _Optional[int] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., daemon: _Optional[_Union[ObjectCounts, _Mapping]] = ..., session: _Optional[_Union[ObjectCounts, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class ListObjectsRequest(_message.Message):
    __slots__ = ("iommufd",)
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    def __init__(self, iommufd: _Optional[int] = ...) -> None: ...

class ObjectInfo(_message.Message):
    __slots__ = ("id", "type", "users", "areas", "mapped_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    AREAS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: int
    type: ObjectType
    users: int
    areas: int
    mapped_bytes: int
    def __init__(self, id: _Optional[int] = ..., type: _Optional[_Union[ObjectType, str]] = ..., users: _Optional[int] = ..., areas: _Optional[int] = ..., mapped_bytes: _Optional[int] = ...) -> None: ...

class ListObjectsResponse(_message.Message):
    __slots__ = ("objects",)
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectInfo]
    def __init__(self, objects: _Optional[_Iterable[_Union[ObjectInfo, _Mapping]]] = ...) -> None: ...

class ListAreasRequest(_message.Message):
    __slots__ = ("iommufd", "ioas_id")
    IOMMUFD_FIELD_NUMBER: _ClassVar[int]
    IOAS_ID_FIELD_NUMBER: _ClassVar[int]
    iommufd: int
    ioas_id: int
    def __init__(self, iommufd: _Optional[int] = ..., ioas_id: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("areas",)
    AREAS_FIELD_NUMBER: _ClassVar[int]
    areas: _containers.RepeatedCompositeFieldContainer[Area]
    def __init__(self, areas: _Optional[_Iterable[_Union[Area, _Mapping]]] = ...) -> None: ...
