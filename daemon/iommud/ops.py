"""The op table: every operation iommud serves, one row each.

As the kernel's iommufd has one ioctl table (main.c `iommufd_ioctl_ops`,
with each ioctl's handler and struct sizes), iommud has one table. A row
names the operation, its handler (beside its object, in ioas.py, device.py,
hw_pagetable.py, ...), its request and reply messages, the kind of fd it acts
on, whether its success is journaled, whether it needs an admin identity, and
the limit that bounds it. The dispatcher (dispatch.py) reads the row to do
the framing every operation shares; the gRPC adapter (service.py) and the
journal's replay go through the table and nothing else.

Adding an operation touches three places: the proto (a `rpc` with its
Request/Response messages), the handler in its object's module, and one row
here. tests/test_ops.py checks that every RPC of the proto is exactly one row.
"""
from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iommud import (
    context,
    device,
    fault,
    files,
    host,
    hw_pagetable,
    info,
    ioas,
    selftest,
    session,
    vfio_compat,
    viommu,
)
from iommud_wire import pb


class Fd(enum.Enum):
    """The kind of fd an operation acts on: the dispatcher resolves the
    request's fd field to that object (`call.target`) before the handler
    runs. An fd that is not open is EBADF; an fd of another kind is
    ENOTTY, as an ioctl issued on the wrong kind of file."""

    #: No fd: the operation acts on the session or the host.
    NONE = ""
    #: `iommufd`: an open of /dev/iommu (IommufdContext).
    IOMMUFD = "iommufd"
    #: `container_fd`: a legacy VFIO container, which is an iommufd too.
    CONTAINER = "container_fd"
    #: `device_fd`: an open VFIO device cdev (DeviceFd).
    DEVICE = "device_fd"
    #: `group_fd`: an open legacy VFIO group node (GroupFd).
    GROUP = "group_fd"
    #: `veventq_fd`: a vEVENTQ's fd, made by VEVENTQ_ALLOC (VeventqFd).
    VEVENTQ = "veventq_fd"
    #: `fault_fd`: a fault queue's fd, made by FAULT_QUEUE_ALLOC (FaultFd).
    FAULT = "fault_fd"


class Needs(enum.Enum):
    """What the operation needs of the session token."""

    #: A live session (ESRCH without one).
    SESSION = "session"
    #: Uses the session if a token is sent.
    OPTIONAL = "optional"
    #: Opens a session; the handler gets no session.
    OPENS = "opens"


class Limit(enum.Enum):
    """The configured limit that bounds an operation (docs/object-model.md)."""

    NONE = ""
    #: max_sessions: ENOSPC.
    SESSIONS = "sessions"
    #: max_fds_per_session / max_contexts_per_session: EMFILE.
    FDS = "fds"
    #: max_objects_per_context: ENOSPC.
    OBJECTS = "objects"
    #: max_areas_per_ioas (ENOSPC), max_mapped_bytes_per_session (ENOMEM),
    #: a container's dma_entry_limit (ENOSPC).
    AREAS = "areas"
    #: max_translate_batch: ENOMEM.
    BATCH = "batch"


Handler = Callable[..., Any]


@dataclass(frozen=True)
class Op:
    name: str
    handler: Handler
    request: type[Any]
    reply: type[Any]
    fd: Fd
    journal: bool
    admin: bool
    limit: Limit
    needs: Needs
    #: A debug operation: the config switch it needs ("debug_selftest" for
    #: the selftest mock driver, "debug_clock"); without it the operation is
    #: ENOTTY, as IOMMU_TEST_CMD is without CONFIG_IOMMUFD_TEST.
    debug: str = ""
    #: A failure may leave an effect (a non-atomic unmap): the journal reruns
    #: the call on replay instead of skipping it, and it fails the same way.
    partial: bool = False
    #: The largest request message, in bytes, the transport parses for this
    #: operation (EMSGSIZE past it): parsing and walking a request run on the
    #: event loop, so its size bounds how long one call can keep it busy.
    max_request: int = 64 << 10
    #: Its work grows with the request or with the session's state (a map
    #: batch, a copy or unmap of many areas, a dirty bitmap): on the gRPC
    #: path the (synchronous) handler runs in a worker thread, holding the
    #: session's lock, so the event loop keeps serving everyone else; the
    #: core releases the GIL for the long part. Only for handlers that change
    #: nothing beyond their own session (attach reads the host's groups, but
    #: their ownership is this session's, claimed at bind), which the lock
    #: serializes. The raw transport and replay run it inline.
    offload: bool = False
    #: A server stream (the handler is an async generator).
    stream: bool = False
    #: The handler is a coroutine function (it awaits work run off the loop).
    is_async: bool = field(default=False, compare=False)


def _row(name: str, handler: Handler, fd: Fd = Fd.NONE, *, journal: bool = True,
         admin: bool = False, limit: Limit = Limit.NONE, needs: Needs = Needs.SESSION,
         debug: str = "", max_request: int = 64 << 10, partial: bool = False,
         offload: bool = False) -> Op:
    return Op(name=name, handler=handler, request=getattr(pb, f"{name}Request"),
              reply=getattr(pb, f"{name}Response"), fd=fd, journal=journal, admin=admin,
              limit=limit, needs=needs, debug=debug, max_request=max_request, partial=partial,
              offload=offload,
              stream=inspect.isasyncgenfunction(handler),
              is_async=inspect.iscoroutinefunction(handler))


F, L = Fd, Limit
#: Request sizes of the batch operations: a batch of MAP_BATCH_MAX maps
#: (three packed u64 fields), TRANSLATE_BATCH_MAX IOVAs, DMA_ACCESSES_MAX
#: accesses (each under 24 bytes on the wire).
MAP_BATCH_MAX = 1 << 16
TRANSLATE_BATCH_MAX = 1 << 18
DMA_ACCESSES_MAX = 1 << 16
_BATCH = 3 * 8 * MAP_BATCH_MAX + 4096
_TRANSLATE = 8 * TRANSLATE_BATCH_MAX + 4096
_DMA = 24 * DMA_ACCESSES_MAX + 4096
ST = "debug_selftest"

ROWS: tuple[Op, ...] = (
    # -- sessions and contexts (main.c) ---------------------------------------------------
    _row("OpenSession", session.open_session, needs=Needs.OPENS, limit=L.SESSIONS),
    _row("CloseSession", session.close_session, journal=False),  # forgetting it drops its rows
    _row("KeepAlive", session.keep_alive, journal=False),
    _row("DebugAdvanceClock", session.debug_advance_clock, journal=False, admin=True,
         debug="debug_clock"),
    _row("WatchSession", session.watch_session, journal=False),
    _row("OpenContext", context.open_context, limit=L.FDS),
    _row("CloseContext", context.close_context, F.IOMMUFD),
    _row("CloseFd", session.close_fd),
    _row("Destroy", context.destroy, F.IOMMUFD),
    _row("ListObjects", context.list_objects, F.IOMMUFD, journal=False),
    _row("GetCapabilities", context.get_capabilities, F.IOMMUFD, journal=False),
    # -- IOAS (ioas.c, io_pagetable.c) --------------------------------------------------------
    _row("IoasAlloc", ioas.ioas_alloc, F.IOMMUFD, limit=L.OBJECTS),
    _row("IoasIovaRanges", ioas.ioas_iova_ranges, F.IOMMUFD, journal=False),
    _row("IoasAllowIovas", ioas.ioas_allow_iovas, F.IOMMUFD, offload=True),
    _row("IoasMap", ioas.ioas_map, F.IOMMUFD, limit=L.AREAS),
    _row("IoasMapBatch", ioas.ioas_map_batch, F.IOMMUFD, limit=L.AREAS, max_request=_BATCH,
         offload=True),
    _row("IoasCopy", ioas.ioas_copy, F.IOMMUFD, limit=L.AREAS, offload=True),
    _row("IoasUnmap", ioas.ioas_unmap, F.IOMMUFD, partial=True, offload=True),
    _row("Option", ioas.option, F.IOMMUFD),
    _row("IoasChangeProcess", ioas.ioas_change_process, F.IOMMUFD),
    _row("IoasMapFile", ioas.ioas_map_file, F.IOMMUFD, limit=L.AREAS),
    # Files to map (files.py): gRPC's memfds live in the daemon; what a
    # raw-transport process's pages are charged (its /proc status).
    _row("OpenMemfd", files.open_memfd, limit=L.FDS),
    _row("MemfdTruncate", files.memfd_truncate),
    _row("ProcessPins", ioas.process_pins, journal=False, needs=Needs.OPTIONAL),
    _row("Translate", ioas.translate, F.IOMMUFD, journal=False),
    _row("TranslateBatch", ioas.translate_batch, F.IOMMUFD, limit=L.BATCH, journal=False,
         max_request=_TRANSLATE),
    _row("ListAreas", ioas.list_areas, F.IOMMUFD, journal=False),
    # -- host topology and DMA ownership (iommu.c, driver core) ----------------------------------
    # Host inventory, as lspci and /sys/kernel/iommu_groups: no session needed,
    # so that monitoring and `iommuctl group list` hold none.
    _row("ListDevices", host.list_devices, journal=False, needs=Needs.OPTIONAL),
    _row("ListGroups", host.list_groups, journal=False, needs=Needs.OPTIONAL),
    _row("BindHostDriver", host.bind_host_driver, admin=True),
    _row("UnbindHostDriver", host.unbind_host_driver, admin=True),
    _row("HotAddDevice", host.hot_add_device, admin=True),
    _row("HotRemoveDevice", host.hot_remove_device, admin=True),
    _row("WatchHost", host.watch_host, journal=False),
    # -- VFIO device cdev and DEVICE objects (device_cdev.c, device.c) ---------------------------
    _row("OpenDevice", device.open_device, limit=L.FDS),
    _row("CloseDevice", device.close_device, F.DEVICE),
    _row("DeviceGetInfo", device.device_get_info, F.DEVICE, journal=False),
    _row("DeviceBindIommufd", device.device_bind_iommufd, F.DEVICE, limit=L.OBJECTS),
    _row("IommufdBindDevice", device.iommufd_bind_device, F.IOMMUFD, limit=L.OBJECTS),
    _row("DeviceAttachIommufdPt", device.device_attach_iommufd_pt, F.DEVICE, limit=L.OBJECTS,
         offload=True),                     # fills a domain with every area of the IOAS
    _row("DeviceDetachIommufdPt", device.device_detach_iommufd_pt, F.DEVICE,
         offload=True),                     # empties the domain: 17 ms on the loop at 1M areas
    _row("DeviceDma", device.device_dma, F.DEVICE, max_request=_DMA),  # marks dirty bits
    _row("GetHwInfo", device.get_hw_info, F.IOMMUFD, journal=False),
    # -- the in-kernel API by dev_id (device.c) ---------------------------------------------------
    _row("IommufdDeviceAttach", device.iommufd_device_attach, F.IOMMUFD, limit=L.OBJECTS,
         offload=True),
    _row("IommufdDeviceReplace", device.iommufd_device_replace, F.IOMMUFD, limit=L.OBJECTS,
         offload=True),
    _row("IommufdDeviceDetach", device.iommufd_device_detach, F.IOMMUFD, offload=True),
    _row("IommufdDeviceDma", device.iommufd_device_dma, F.IOMMUFD,
         max_request=_DMA),  # marks dirty bits
    # -- HWPTs and fault queues (hw_pagetable.c, eventq.c) ---------------------------------------
    _row("HwptAlloc", hw_pagetable.hwpt_alloc, F.IOMMUFD, limit=L.OBJECTS, offload=True),
    _row("HwptSetDirtyTracking", hw_pagetable.hwpt_set_dirty_tracking, F.IOMMUFD, offload=True),
    _row("HwptGetDirtyBitmap", hw_pagetable.hwpt_get_dirty_bitmap, F.IOMMUFD,  # clears bits
         offload=True),
    _row("HwptInvalidate", hw_pagetable.hwpt_invalidate, F.IOMMUFD),
    _row("FaultQueueAlloc", fault.fault_queue_alloc, F.IOMMUFD, limit=L.OBJECTS),
    # Reads and responses move faults, which are not journaled (fault.py).
    _row("FaultQueueRead", fault.fault_queue_read, F.FAULT, journal=False),
    _row("WatchFaultQueue", fault.watch_fault_queue, F.FAULT, journal=False),
    _row("FaultQueueRespond", fault.fault_queue_respond, F.FAULT, journal=False),
    # -- vIOMMUs, vDEVICEs, HW queues and vEVENTQs (viommu.c, eventq.c) --------------------------
    _row("ViommuAlloc", viommu.viommu_alloc, F.IOMMUFD, limit=L.OBJECTS),
    _row("VdeviceAlloc", viommu.vdevice_alloc, F.IOMMUFD, limit=L.OBJECTS),
    _row("HwQueueAlloc", viommu.hw_queue_alloc, F.IOMMUFD, limit=L.OBJECTS),
    _row("VeventqAlloc", viommu.veventq_alloc, F.IOMMUFD, limit=L.OBJECTS),
    # A read takes events off the queue; events are not journaled (a
    # restarted daemon's queues start empty, as a kernel's after a reboot).
    _row("VeventqRead", viommu.veventq_read, F.VEVENTQ, journal=False),
    _row("WatchVeventq", viommu.watch_veventq, F.VEVENTQ, journal=False),
    # mmap() of an iommufd: a vIOMMU's region (iommufd_fops_mmap).
    _row("IommufdMmap", viommu.iommufd_mmap, F.IOMMUFD),
    _row("IommufdMunmap", viommu.iommufd_munmap, F.IOMMUFD),
    # -- the legacy VFIO container/group API (vfio_compat.c, container.c, group.c) ----------------
    _row("OpenContainer", vfio_compat.open_container, limit=L.FDS),
    _row("VfioGetApiVersion", vfio_compat.vfio_get_api_version, F.CONTAINER, journal=False),
    _row("VfioCheckExtension", vfio_compat.vfio_check_extension, F.CONTAINER, journal=False),
    _row("VfioSetIommu", vfio_compat.vfio_set_iommu, F.CONTAINER),
    _row("VfioIommuGetInfo", vfio_compat.vfio_iommu_get_info, F.CONTAINER, journal=False),
    _row("VfioIommuMapDma", vfio_compat.vfio_iommu_map_dma, F.CONTAINER, limit=L.AREAS),
    _row("VfioIommuUnmapDma", vfio_compat.vfio_iommu_unmap_dma, F.CONTAINER, partial=True,
         offload=True),
    _row("VfioIommuDirtyPages", vfio_compat.vfio_iommu_dirty_pages, F.CONTAINER, offload=True),
    _row("OpenGroup", vfio_compat.open_group, limit=L.FDS),
    _row("CloseGroup", vfio_compat.close_group, F.GROUP),
    _row("VfioGroupGetStatus", vfio_compat.vfio_group_get_status, F.GROUP, journal=False),
    _row("VfioGroupSetContainer", vfio_compat.vfio_group_set_container, F.GROUP),
    _row("VfioGroupUnsetContainer", vfio_compat.vfio_group_unset_container, F.GROUP),
    _row("VfioGroupGetDeviceFd", vfio_compat.vfio_group_get_device_fd, F.GROUP, limit=L.FDS),
    _row("IommuVfioIoas", vfio_compat.iommu_vfio_ioas, F.IOMMUFD),
    # -- introspection ------------------------------------------------------------------------
    _row("Echo", info.echo, needs=Needs.OPTIONAL, journal=False),
    _row("GetInfo", info.get_info, needs=Needs.OPTIONAL, journal=False),
    _row("AdminListSessions", info.admin_list_sessions, needs=Needs.OPTIONAL, journal=False,
         admin=True),
    # -- the selftest mock driver, debug only (selftest.c IOMMU_TEST_CMD) ------------------------
    _row("TestMockDomain", selftest.test_mock_domain, F.IOMMUFD, limit=L.OBJECTS, debug=ST),
    _row("TestMockDomainReplace", selftest.test_mock_domain_replace, F.IOMMUFD,
         limit=L.OBJECTS, debug=ST),
    _row("TestAddReserved", selftest.test_add_reserved, F.IOMMUFD, debug=ST),
    _row("TestMdCheckMap", selftest.test_md_check_map, F.IOMMUFD, journal=False, debug=ST),
    _row("TestMdCheckRefs", selftest.test_md_check_refs, F.IOMMUFD, journal=False, debug=ST),
    _row("TestDirty", selftest.test_dirty, F.IOMMUFD, debug=ST),
    _row("TestCreateAccess", selftest.test_create_access, F.IOMMUFD, limit=L.FDS, debug=ST),
    _row("TestAccessReplaceIoas", selftest.test_access_replace_ioas, F.IOMMUFD, debug=ST),
    _row("TestAccessPages", selftest.test_access_pages, F.IOMMUFD, debug=ST),
    _row("TestDestroyAccessPages", selftest.test_destroy_access_pages, F.IOMMUFD, debug=ST),
    _row("TestAccessRw", selftest.test_access_rw, F.IOMMUFD, journal=False, debug=ST),
    _row("TestSetTempMemoryLimit", selftest.test_set_temp_memory_limit, F.IOMMUFD,
         journal=False, debug=ST),
    _row("TestPasidAttach", selftest.test_pasid_attach, F.IOMMUFD, limit=L.OBJECTS, debug=ST),
    _row("TestPasidReplace", selftest.test_pasid_replace, F.IOMMUFD, limit=L.OBJECTS,
         debug=ST),
    _row("TestPasidDetach", selftest.test_pasid_detach, F.IOMMUFD, debug=ST),
    _row("TestPasidCheckHwpt", selftest.test_pasid_check_hwpt, F.IOMMUFD, journal=False,
         debug=ST),
    _row("TestDevCheckCache", selftest.test_dev_check_cache, F.IOMMUFD, journal=False,
         debug=ST),
    _row("TestMdCheckIotlb", selftest.test_md_check_iotlb, F.IOMMUFD, journal=False, debug=ST),
    _row("TestTriggerIopf", fault.test_trigger_iopf, F.IOMMUFD, journal=False, debug=ST),
    _row("TestDmabufGet", files.test_dmabuf_get, F.IOMMUFD, limit=L.FDS, debug=ST),
    _row("TestDmabufRevoke", files.test_dmabuf_revoke, F.IOMMUFD, debug=ST),
    _row("TestTriggerVevent", selftest.test_trigger_vevent, F.IOMMUFD, journal=False, debug=ST),
)

TABLE: Mapping[str, Op] = {op.name: op for op in ROWS}
assert len(TABLE) == len(ROWS), "an operation has two rows"
