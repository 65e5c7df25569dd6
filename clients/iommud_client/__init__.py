"""Client library for iommud, the userspace /dev/iommu (iommufd) control plane.

    from iommud_client import Client
    with Client() as c, c.open_session("vmm") as s, s.open_context() as ctx:
        ioas = ctx.ioas_alloc()
        iova = ctx.ioas_map(ioas, user_va=0x7f0000000000, length=0x200000)
        print(hex(ctx.translate(ioas, iova).pa))

Sessions keep themselves alive while they are held (a background
WatchSession stream, `iommud_client.lease`); open_session(keepalive=False)
leaves the lease to the caller. Every failure raises IommudError with
`.errno` and `.errno_name`.
"""
from iommud_client.client import (
    IOMMU_IOAS_MAP_FIXED_IOVA,
    IOMMU_IOAS_MAP_READABLE,
    IOMMU_IOAS_MAP_WRITEABLE,
    SESSION_METADATA_KEY,
    UNMAP_ALL_LENGTH,
    VFIO_DEVICE_ATTACH_PASID,
    VFIO_DEVICE_BIND_FLAG_TOKEN,
    VFIO_DEVICE_DETACH_PASID,
    BatchTranslation,
    Client,
    Container,
    Context,
    DeviceFd,
    DmaAccess,
    Group,
    IovaRange,
    Memfd,
    Session,
    Translation,
)
from iommud_client.errors import ERROR_DOMAIN, IommudError
from iommud_client.lease import KeepalivePolicy, KeepaliveStatus, LeaseKeeper, StopReason
from iommud_wire.endpoint import default_endpoint, default_socket_path, normalize_endpoint

__version__ = "0.1.0"

__all__ = [
    "ERROR_DOMAIN",
    "IOMMU_IOAS_MAP_FIXED_IOVA",
    "IOMMU_IOAS_MAP_READABLE",
    "IOMMU_IOAS_MAP_WRITEABLE",
    "SESSION_METADATA_KEY",
    "UNMAP_ALL_LENGTH",
    "VFIO_DEVICE_ATTACH_PASID",
    "VFIO_DEVICE_BIND_FLAG_TOKEN",
    "VFIO_DEVICE_DETACH_PASID",
    "BatchTranslation",
    "Client",
    "Container",
    "Context",
    "DeviceFd",
    "DmaAccess",
    "Group",
    "IommudError",
    "IovaRange",
    "KeepalivePolicy",
    "KeepaliveStatus",
    "LeaseKeeper",
    "Memfd",
    "Session",
    "StopReason",
    "Translation",
    "default_endpoint",
    "default_socket_path",
    "normalize_endpoint",
]
