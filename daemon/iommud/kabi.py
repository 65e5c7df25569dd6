"""The kernel's ioctl structs and how each becomes an operation of the op
table: the codec of the raw uAPI transport (uapi_transport.py,
docs/uapi-transport.md).

Every layout here is written down as facts (field names, offsets, sizes) of
`include/uapi/linux/iommufd.h` and `include/uapi/linux/vfio.h` at the pinned
kernel (v7.3); no kernel code or header is copied. Each rule names the
kernel function it follows.

For one ioctl the transport finds its `Spec` by the file's kind and the
request value (`lookup`), applies the argument's size rule (`prepare`:
iommufd_fops_ioctl's for iommufd structs, each VFIO ioctl's argsz rule for
VFIO structs), and runs the spec's codec with an `Ioctl`. A codec decodes
the struct into the op's request message, dispatches it through the op
table (`Ioctl.call`, the dispatcher), and encodes the kernel's answer: the
return value and the bytes written back to the caller's memory (`Reply`).
A codec that needs more of the caller's memory, or the identity of an fd
argument, is a generator: it yields the items it needs (`Mem`, `FdArg`,
`Writable`) and receives what the caller gave, in the same order, before it
dispatches, so that a fault is EFAULT before anything changed.
"""
from __future__ import annotations

import enum
import errno as E
import struct
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from iommud import files, vfio_type1
from iommud.errors import IommuError
from iommud.fault import RESPONSE_SIZE, S_RESPONSE
from iommud.hw_pagetable import INVALIDATE_ENTRY_NUM_MAX
from iommud.selftest import ACCESS_MAX_LENGTH
from iommud.session import FD_MAX
from iommud_wire import pb
from iommud_wire.uapi import (
    IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
    MOCK_ACCESS_RW_SLOW_PATH,
    MOCK_ACCESS_RW_WRITE,
    MOCK_FLAGS_ACCESS_SYZ,
    MOCK_FLAGS_ACCESS_WRITE,
    PAGE_SIZE,
    U32_MAX,
    U64_MAX,
)

if TYPE_CHECKING:
    from iommud.context import IommufdContext
    from iommud.device import DeviceFd

# -- files -----------------------------------------------------------------------------------


class FileKind(enum.IntEnum):
    """What an emulated fd is: OPEN's `cmd` (1-4) and DESCRIBE's path kind."""

    #: open("/dev/iommu"): an iommufd.
    IOMMU = 1
    #: open("/dev/vfio/vfio"): a container (an iommufd under vfio_mode
    #: iommufd; a legacy type1 container under vfio_mode type1).
    CONTAINER = 2
    #: open("/dev/vfio/N"): a VFIO group.
    GROUP = 3
    #: open("/dev/vfio/devices/vfioN"): a VFIO device cdev.
    DEVICE = 4
    #: A device fd made by VFIO_GROUP_GET_DEVICE_FD (an anonymous file).
    GROUP_DEVICE = 5
    #: A fault queue's fd, made by IOMMU_FAULT_QUEUE_ALLOC.
    FAULT = 6
    #: A selftest access's fd ("[iommufd_test_staccess]"), made by
    #: IOMMU_TEST_CMD's CREATE_ACCESS (debug_selftest).
    ACCESS = 7
    #: A vEVENTQ's fd ("[iommufd-viommu-event]"), made by IOMMU_VEVENTQ_ALLOC.
    VEVENTQ = 8
    #: A selftest dma-buf's fd, made by IOMMU_TEST_CMD's DMABUF_GET.
    DMABUF = 12


# -- request values --------------------------------------------------------------------------

#: The ioctl type of both iommufd and VFIO (IOMMUFD_TYPE, VFIO_TYPE).
IOC_TYPE = ord(";")


def _io(nr: int) -> int:
    """_IO(';', nr): every iommufd and VFIO request value (no direction, no size)."""
    return IOC_TYPE << 8 | nr


IOMMU_DESTROY = _io(0x80)
IOMMU_IOAS_ALLOC = _io(0x81)
IOMMU_IOAS_ALLOW_IOVAS = _io(0x82)
IOMMU_IOAS_COPY = _io(0x83)
IOMMU_IOAS_IOVA_RANGES = _io(0x84)
IOMMU_IOAS_MAP = _io(0x85)
IOMMU_IOAS_UNMAP = _io(0x86)
IOMMU_OPTION = _io(0x87)
IOMMU_VFIO_IOAS = _io(0x88)
IOMMU_HWPT_ALLOC = _io(0x89)
IOMMU_GET_HW_INFO = _io(0x8A)
IOMMU_HWPT_SET_DIRTY_TRACKING = _io(0x8B)
IOMMU_HWPT_GET_DIRTY_BITMAP = _io(0x8C)
IOMMU_HWPT_INVALIDATE = _io(0x8D)
IOMMU_FAULT_QUEUE_ALLOC = _io(0x8E)
IOMMU_IOAS_MAP_FILE = _io(0x8F)
IOMMU_VIOMMU_ALLOC = _io(0x90)
IOMMU_VDEVICE_ALLOC = _io(0x91)
IOMMU_IOAS_CHANGE_PROCESS = _io(0x92)
IOMMU_VEVENTQ_ALLOC = _io(0x93)
IOMMU_HW_QUEUE_ALLOC = _io(0x94)
IOMMU_IOAS_NOIOMMU_GET_PA = _io(0x95)
#: The selftest multiplexer (CONFIG_IOMMUFD_TEST): struct iommu_test_cmd,
#: min 68, size 72; served only with debug_selftest (`lookup`).
IOMMU_TEST_CMD = _io(0xA0)

VFIO_GET_API_VERSION = _io(100)
VFIO_CHECK_EXTENSION = _io(101)
VFIO_SET_IOMMU = _io(102)
VFIO_GROUP_GET_STATUS = _io(103)
VFIO_GROUP_SET_CONTAINER = _io(104)
VFIO_GROUP_UNSET_CONTAINER = _io(105)
VFIO_GROUP_GET_DEVICE_FD = _io(106)
VFIO_DEVICE_GET_INFO = _io(107)
VFIO_DEVICE_GET_REGION_INFO = _io(108)
VFIO_DEVICE_GET_IRQ_INFO = _io(109)
VFIO_DEVICE_SET_IRQS = _io(110)
VFIO_DEVICE_RESET = _io(111)
VFIO_IOMMU_GET_INFO = _io(112)
VFIO_IOMMU_MAP_DMA = _io(113)
VFIO_IOMMU_UNMAP_DMA = _io(114)
VFIO_IOMMU_DIRTY_PAGES = _io(117)
VFIO_DEVICE_BIND_IOMMUFD = _io(118)
VFIO_DEVICE_ATTACH_IOMMUFD_PT = _io(119)
VFIO_DEVICE_DETACH_IOMMUFD_PT = _io(120)

#: Kernel ioctls that exist at v7.3 but have no operation in iommud yet
#: (ENOTTY, as a kernel without them): named for the log and the docs.
NOT_SERVED: dict[int, str] = {
    IOMMU_IOAS_NOIOMMU_GET_PA: "IOMMU_IOAS_NOIOMMU_GET_PA",
    VFIO_DEVICE_SET_IRQS: "VFIO_DEVICE_SET_IRQS",
    VFIO_DEVICE_RESET: "VFIO_DEVICE_RESET",
}

# -- layouts (little-endian, as the kernel's on x86-64 and arm64) -------------------------------
# iommufd.h: every struct starts with `u32 size`.

#: iommu_destroy {u32 size, u32 id}: 8 bytes, min 8.
S_DESTROY = struct.Struct("<II")
#: iommu_ioas_alloc {u32 size, u32 flags, u32 out_ioas_id}: 12, min 12.
S_IOAS_ALLOC = struct.Struct("<III")
#: iommu_ioas_allow_iovas {u32 size, u32 ioas_id, u32 num_iovas, u32 __reserved,
#: u64 allowed_iovas}: 24, min 24.
S_ALLOW_IOVAS = struct.Struct("<IIIIQ")
#: iommu_ioas_copy {u32 size, u32 flags, u32 dst_ioas_id, u32 src_ioas_id,
#: u64 length, u64 dst_iova, u64 src_iova}: 40, min 40.
S_IOAS_COPY = struct.Struct("<IIIIQQQ")
#: iommu_ioas_iova_ranges {u32 size, u32 ioas_id, u32 num_iovas, u32 __reserved,
#: u64 allowed_iovas, u64 out_iova_alignment}: 32, min 32.
S_IOVA_RANGES = struct.Struct("<IIIIQQ")
#: iommu_iova_range {u64 start, u64 last}: 16.
S_IOVA_RANGE = struct.Struct("<QQ")
#: iommu_ioas_map {u32 size, u32 flags, u32 ioas_id, u32 __reserved, u64 user_va,
#: u64 length, u64 iova}: 40, min 40.
S_IOAS_MAP = struct.Struct("<IIIIQQQ")
#: iommu_ioas_unmap {u32 size, u32 ioas_id, u64 iova, u64 length}: 24, min 24.
S_IOAS_UNMAP = struct.Struct("<IIQQ")
#: iommu_option {u32 size, u32 option_id, u16 op, u16 __reserved, u32 object_id,
#: u64 val64}: 24, min 24 (val64 at offset 16).
S_OPTION = struct.Struct("<IIHHIQ")
S_U64 = struct.Struct("<Q")
S_U32 = struct.Struct("<I")
S_S32 = struct.Struct("<i")
#: iommu_vfio_ioas {u32 size, u32 ioas_id, u16 op, u16 __reserved}: 12, min 12.
S_VFIO_IOAS = struct.Struct("<IIHH")
#: iommu_hwpt_alloc {u32 size, u32 flags, u32 dev_id, u32 pt_id, u32 out_hwpt_id,
#: u32 __reserved, u32 data_type, u32 data_len, u64 data_uptr, u32 fault_id,
#: u32 __reserved2}: 48, min 24 (offsetofend __reserved).
S_HWPT_ALLOC = struct.Struct("<IIIIIIIIQII")
#: iommu_hw_info {u32 size, u32 flags, u32 dev_id, u32 data_len, u64 data_uptr,
#: u32 in_data_type / out_data_type, u8 out_max_pasid_log2, u8 __reserved[3],
#: u64 out_capabilities}: 40, min 32 (offsetofend __reserved).
S_HW_INFO = struct.Struct("<IIIIQIB3sQ")
#: iommu_hwpt_set_dirty_tracking {u32 size, u32 flags, u32 hwpt_id,
#: u32 __reserved}: 16, min 16.
S_SET_DIRTY = struct.Struct("<IIII")
#: iommu_hwpt_get_dirty_bitmap {u32 size, u32 hwpt_id, u32 flags, u32 __reserved,
#: u64 iova, u64 length, u64 page_size, u64 data}: 48, min 48.
S_GET_DIRTY = struct.Struct("<IIIIQQQQ")
#: iommu_hwpt_invalidate {u32 size, u32 hwpt_id, u64 data_uptr, u32 data_type,
#: u32 entry_len, u32 entry_num, u32 __reserved}: 32, min 32.
S_INVALIDATE = struct.Struct("<IIQIIII")
#: iommu_fault_alloc {u32 size, u32 flags, u32 out_fault_id, u32 out_fault_fd}:
#: 16, min 16 (out_fault_fd at offset 12).
S_FAULT_ALLOC = struct.Struct("<IIII")
#: iommu_ioas_change_process {u32 size, u32 __reserved}: 8, min 8.
S_CHANGE_PROCESS = struct.Struct("<II")
#: iommu_ioas_map_file {u32 size, u32 flags, u32 ioas_id, s32 fd, u64 start,
#: u64 length, u64 iova}: 40, min 40.
S_MAP_FILE = struct.Struct("<IIIiQQQ")
#: iommu_viommu_alloc {u32 size, u32 flags, u32 type, u32 dev_id, u32 hwpt_id,
#: u32 out_viommu_id, u32 data_len, u32 __reserved, u64 data_uptr}: 40, min 24
#: (offsetofend out_viommu_id).
S_VIOMMU_ALLOC = struct.Struct("<IIIIIIIIQ")
#: iommu_vdevice_alloc {u32 size, u32 viommu_id, u32 dev_id, u32 out_vdevice_id,
#: u64 virt_id}: 24, min 24.
S_VDEVICE_ALLOC = struct.Struct("<IIIIQ")
#: iommu_veventq_alloc {u32 size, u32 flags, u32 viommu_id, u32 type,
#: u32 veventq_depth, u32 out_veventq_id, u32 out_veventq_fd, u32 __reserved}:
#: 32, min 28 (offsetofend out_veventq_fd; the fd at offset 24).
S_VEVENTQ_ALLOC = struct.Struct("<IIIIIIII")
#: iommu_hw_queue_alloc {u32 size, u32 flags, u32 viommu_id, u32 type, u32 index,
#: u32 out_hw_queue_id, u64 nesting_parent_iova, u64 length}: 40, min 40.
S_HW_QUEUE_ALLOC = struct.Struct("<IIIIIIQQ")
# iommu_ioas_noiommu_get_pa {u32 size, u32 flags, u32 ioas_id, u32 __reserved,
# u64 iova, u64 length, u64 out_phys}: 40, min 40 (answered past its size rules
# without reading it: _noiommu_get_pa).

# The selftest's iommu_test_cmd (drivers/iommu/iommufd/iommufd_test.h, as facts):
# {u32 size, u32 op, u32 id, u32 __reserved, a 48-byte union at 16, u32 last at
# 64, 4 bytes of tail padding}: 72, min 68 (offsetofend last). `id` is the op's
# object (IOAS, HWPT, stdev, idev) or an access fd; the union's members below
# are unpacked at offset 16 of the struct.
TEST_CMD_SIZE, TEST_CMD_MIN = 72, 68
S_TEST_HEAD = struct.Struct("<IIII")
TEST_UNION = 16
#: add_reserved {u64 start, u64 length}.
S_T_RESERVED = struct.Struct("<QQ")
#: mock_domain(_flags) {u32 out_stdev_id, u32 out_hwpt_id, u32 out_idev_id, u32 dev_flags}.
S_T_MOCK_DOMAIN = struct.Struct("<IIII")
#: check_map {u64 iova, u64 length, u64 uptr}.
S_T_CHECK_MAP = struct.Struct("<QQQ")
#: check_refs {u64 length, u64 uptr, u32 refs}.
S_T_CHECK_REFS = struct.Struct("<QQI")
#: create_access {u32 out_access_fd, u32 flags}; check_dev_cache {u32 id, u32 cache};
#: pasid_attach / pasid_replace / pasid_check {u32 pasid, u32 pt_id or hwpt_id}.
S_T_TWO = struct.Struct("<II")
#: access_pages {u32 flags, u32 out_access_pages_id, u64 iova, u64 length, u64 uptr}.
S_T_ACCESS_PAGES = struct.Struct("<IIQQQ")
#: access_rw {u64 iova, u64 length, u64 uptr, u32 flags}.
S_T_ACCESS_RW = struct.Struct("<QQQI")
#: trigger_iopf {u32 dev_id, u32 pasid, u32 grpid, u32 perm, u64 addr}.
S_T_TRIGGER_IOPF = struct.Struct("<IIIIQ")
#: dmabuf_get {u32 length, u32 open_flags}; dmabuf_revoke {s32 dmabuf_fd,
#: u32 revoked (a bool)}.
S_T_DMABUF_GET = struct.Struct("<II")
S_T_DMABUF_REVOKE = struct.Struct("<iI")
#: O_CLOEXEC (asm-generic/fcntl.h).
O_CLOEXEC = 0o2000000
#: dirty {u32 flags, (4 pad), u64 iova, u64 length, u64 page_size, u64 uptr,
#: u64 out_nr_dirty}.
S_T_DIRTY = struct.Struct("<I4xQQQQQ")

# vfio.h: every struct starts with `u32 argsz`.

#: vfio_iommu_type1_info {u32 argsz, u32 flags, u64 iova_pgsizes, u32 cap_offset,
#: u32 pad}: 24, minsz 16 (offsetofend iova_pgsizes).
S_IOMMU_INFO = struct.Struct("<IIQII")
#: vfio_info_cap_header {u16 id, u16 version, u32 next}: 8.
S_CAP_HEADER = struct.Struct("<HHI")
#: vfio_iommu_type1_info_cap_iova_range after its header: {u32 nr_iovas,
#: u32 reserved}, then vfio_iova_range {u64 start, u64 end} each.
S_CAP_IOVA_RANGE = struct.Struct("<II")
#: vfio_iommu_type1_info_cap_migration after its header: {u32 flags, (4 pad),
#: u64 pgsize_bitmap, u64 max_dirty_bitmap_size}.
S_CAP_MIGRATION = struct.Struct("<I4xQQ")
#: vfio_iommu_type1_info_dma_avail after its header: {u32 avail}.
S_CAP_DMA_AVAIL = S_U32
#: vfio_iommu_type1_dma_map {u32 argsz, u32 flags, u64 vaddr, u64 iova, u64 size}:
#: 32, minsz 32.
S_DMA_MAP = struct.Struct("<IIQQQ")
#: vfio_iommu_type1_dma_unmap {u32 argsz, u32 flags, u64 iova, u64 size, u8 data[]}:
#: minsz 24; with GET_DIRTY_BITMAP, data is a vfio_bitmap {u64 pgsize, u64 size,
#: u64 data}: 48 in all.
S_DMA_UNMAP = struct.Struct("<IIQQQQQ")
#: vfio_iommu_type1_dirty_bitmap {u32 argsz, u32 flags, u8 data[]}: minsz 8; with
#: GET_BITMAP, data is a vfio_iommu_type1_dirty_bitmap_get {u64 iova, u64 size,
#: vfio_bitmap bitmap}: 48 in all.
S_DIRTY_PAGES = struct.Struct("<IIQQQQQ")
#: vfio_group_status {u32 argsz, u32 flags}: 8, minsz 8.
S_GROUP_STATUS = struct.Struct("<II")
#: vfio_device_info {u32 argsz, u32 flags, u32 num_regions, u32 num_irqs,
#: u32 cap_offset, u32 pad}: 24, minsz 16 (offsetofend num_irqs).
S_DEVICE_INFO = struct.Struct("<IIIIII")
#: vfio_region_info {u32 argsz, u32 flags, u32 index, u32 cap_offset, u64 size,
#: u64 offset}: 32, minsz 32 (offsetofend offset).
S_REGION_INFO = struct.Struct("<IIIIQQ")
#: vfio_irq_info {u32 argsz, u32 flags, u32 index, u32 count}: 16, minsz 16.
S_IRQ_INFO = struct.Struct("<IIII")
#: vfio_device_bind_iommufd {u32 argsz, u32 flags, s32 iommufd, u32 out_devid,
#: u64 token_uuid_ptr}: 24, min 16 (offsetofend out_devid); the iommufd size rule.
S_BIND = struct.Struct("<IIiIQ")
#: vfio_device_attach_iommufd_pt {u32 argsz, u32 flags, u32 pt_id, u32 pasid}:
#: 16, minsz 12; 16 with VFIO_DEVICE_ATTACH_PASID.
S_ATTACH = struct.Struct("<IIII")
#: vfio_device_detach_iommufd_pt {u32 argsz, u32 flags, u32 pasid}: 12, minsz 8;
#: 12 with VFIO_DEVICE_DETACH_PASID.
S_DETACH = struct.Struct("<III")

# vfio.h constants the codec writes (not carried by the proto).
VFIO_DEVICE_FLAGS_PCI = 1 << 1
VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_IRQ_INFO_EVENTFD = 1 << 0
VFIO_IRQ_INFO_MASKABLE = 1 << 1
VFIO_IRQ_INFO_AUTOMASKED = 1 << 2
VFIO_IRQ_INFO_NORESIZE = 1 << 3
VFIO_PCI_NUM_REGIONS = 9    # BAR0-5, ROM, CONFIG, VGA
VFIO_PCI_NUM_IRQS = 5       # INTX, MSI, MSIX, ERR, REQ
VFIO_PCI_ROM_REGION_INDEX = 6
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_PCI_VGA_REGION_INDEX = 8
VFIO_PCI_INTX_IRQ_INDEX = 0
VFIO_PCI_MSIX_IRQ_INDEX = 2
#: VFIO_PCI_INDEX_TO_OFFSET: region i lives at offset i << 40 of the device fd.
VFIO_PCI_OFFSET_SHIFT = 40
VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1
VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2
VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3
VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0
VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2
VFIO_DEVICE_ATTACH_PASID = 1 << 0
VFIO_DEVICE_DETACH_PASID = 1 << 0
#: strndup_user(arg, PAGE_SIZE): GET_DEVICE_FD's name with its NUL.
NAME_MAX_BYTES = 4096
#: What the shim copies first of a struct (docs/uapi-transport.md).
FIRST_COPY_MAX = 512

# -- what a codec needs of the caller, and what it answers ----------------------------------------


class Mem(NamedTuple):
    """NEED MEM: `length` bytes of the caller's memory at `addr`; given as
    bytes, or None when the read faulted."""

    addr: int
    length: int


class FdArg(NamedTuple):
    """NEED FD: what the caller's fd `fd` is; given as a `GivenFd`."""

    fd: int


class Writable(NamedTuple):
    """NEED WRITABLE: can `length` bytes at `addr` be written? Given as a bool."""

    addr: int
    length: int


class Backing(NamedTuple):
    """NEED BACKING: what backs the caller's memory at [addr, addr+length),
    as its /proc/self/maps tells; given as a list of `Segment` (a hole is
    left out), or None when the caller could not tell."""

    addr: int
    length: int


class Segment(NamedTuple):
    """One mapping behind part of a BACKING range: `offset` and `length` in
    the range; the file's device (major:minor), inode and the file offset of
    the segment's first byte; whether the mapping is shared."""

    offset: int
    length: int
    major: int
    minor: int
    inode: int
    file_offset: int
    shared: bool


Need = Mem | FdArg | Writable | Backing


class GivenFd(NamedTuple):
    """The caller's answer about an fd argument: `status` 0 or -EBADF; an
    emulated fd's file `token`, or `real` for a fd the shim does not emulate."""

    status: int
    token: int
    real: bool
    #: The real fd as it arrived (SCM_RIGHTS), open while the codec's step
    #: runs; -1 for an emulated fd or none.
    os_fd: int = -1


@dataclass(slots=True)
class NewFile:
    """A daemon-made file the reply hands over (REPLY NEWFD): a new
    connection of `kind` for the session's fd `fd` (0 when the file is no fd
    of the session), described with `n`. The shim writes the new fd number at
    `addr` when it is not 0, and returns it as the ioctl's result with
    `result`."""

    kind: FileKind
    fd: int
    n: int
    addr: int = 0
    result: bool = False
    #: Installed O_CLOEXEC (every daemon-made fd but a dma-buf opened without).
    cloexec: bool = True


@dataclass(slots=True)
class Reply:
    """An ioctl's answer: its return value (>= 0, or -errno), the writes to
    the caller's memory in the kernel's order, and a new file."""

    result: int = 0
    writes: list[tuple[int, bytes]] | None = None
    newfile: NewFile | None = None
    #: memmoves inside the caller's memory, (dst, src, length), after the
    #: writes (REPLY COPY: ACCESS_RW, whose IOVA memory is the caller's own).
    copies: list[tuple[int, int, int]] | None = None


DONE = Reply()
Flow = Generator[list[Need], list[Any], Reply]
Codec = Callable[["Ioctl"], "Reply | Flow"]


class Arg(enum.Enum):
    """How an ioctl passes its argument, and so what the shim sends first."""

    #: No argument (GET_API_VERSION, UNSET_CONTAINER): an empty body.
    NONE = 0
    #: An integer in `arg` (CHECK_EXTENSION, SET_IOMMU): an empty body.
    INT = 1
    #: A pointer to an s32 fd (GROUP_SET_CONTAINER): 4 bytes.
    FD_PTR = 2
    #: A NUL-terminated string (GROUP_GET_DEVICE_FD): the string and its NUL.
    STRING = 3
    #: A struct whose first u32 is `size`: iommufd_fops_ioctl's rule
    #: (size < min EINVAL; non-zero bytes past the kernel's size E2BIG).
    SIZE = 4
    #: A struct whose first u32 is `argsz`: VFIO's rule (argsz < minsz
    #: EINVAL; a larger argsz is accepted and its extra bytes ignored).
    ARGSZ = 5


@dataclass(frozen=True, slots=True)
class Spec:
    """One ioctl on one kind of file."""

    cmd: int
    name: str
    arg: Arg
    #: SIZE: the least `size` (offsetofend of the last required field);
    #: ARGSZ: minsz.
    min: int
    #: The struct's size at v7.3, or (ARGSZ) what the codec reads at most.
    size: int
    codec: Codec
    #: ARGSZ: the generic `argsz < minsz` check runs before the codec
    #: (False where the kernel checks something else first).
    check_argsz: bool = True


class Ioctl:
    """One ioctl as a codec sees it (filled by the transport)."""

    __slots__ = ("adopt", "arg", "body", "call", "fd", "image", "limit", "resolve", "size",
                 "target", "user_hole", "wb")

    def __init__(self, arg: int, body: bytes, fd: int, target: Any,
                 call: Callable[[str, Any], Any], limit: int,
                 resolve: Callable[[int], int | None]) -> None:
        #: The ioctl's raw argument: the struct's address, or the integer.
        self.arg = arg
        #: The first copy (docs/uapi-transport.md).
        self.body = body
        #: The file's fd number in the raw session.
        self.fd = fd
        #: The file's object (IommufdContext, DeviceFd, GroupFd).
        self.target = target
        #: Dispatch an operation by name through the op table; returns its
        #: reply or raises IommuError.
        self.call = call
        #: The most bytes of the caller's memory one request may need.
        self.limit = limit
        #: A file token given for an fd argument -> its fd number in the same
        #: raw session, or None (another session's file, or none).
        self.resolve = resolve
        #: The struct's `size` / `argsz`.
        self.size = 0
        #: The struct as the kernel copies it: the caller's first bytes,
        #: zero-filled to the spec's size.
        self.image = b""
        #: How much of the struct the kernel writes back: min(size, its size).
        self.wb = 0
        #: The shim found a hole in IOAS_MAP's user range (header USER_HOLE).
        self.user_hole = False
        #: A real fd the caller passed -> the number of a session fd for the
        #: same file, for the length of the call (fget): IOAS_MAP_FILE's file.
        #: The codec closes it (CloseFd) when the call is done.
        self.adopt: Callable[[int], int] | None = None

    def respond(self, data: bytes) -> Reply:
        """iommufd_ucmd_respond: copy back min(size, kernel size) bytes."""
        return Reply(0, [(self.arg, data[:self.wb])])

    def need_bytes(self, length: int, what: str) -> None:
        """ENOMEM for a request that needs more of the caller's memory than
        the daemon takes in one message."""
        if length > self.limit:
            raise IommuError(E.ENOMEM, f"{what} needs {length:#x} bytes of the caller's memory; "
                             f"the raw transport takes at most {self.limit:#x}.")


def efault(what: str) -> IommuError:
    return IommuError(E.EFAULT, f"The caller's memory for {what} could not be accessed.")


def _u32(value: int) -> int:
    """An `unsigned long` argument as the proto's u32: a value past U32_MAX
    stays unknown to the handler instead of wrapping onto a known one."""
    return value if value <= U32_MAX else U32_MAX


# -- size rules --------------------------------------------------------------------------------


def prepare(spec: Spec, x: Ioctl, tail_nonzero: bool) -> None:
    """Check the argument as the kernel does before the handler, and fill
    x.size, x.image and x.wb. Raises IommuError (EINVAL, E2BIG), or
    ProtocolError when the first copy is not what the shim must send."""
    body = x.body
    arg = spec.arg
    if arg is Arg.NONE or arg is Arg.INT:
        if body:
            raise ProtocolError(f"{spec.name} takes no first copy, got {len(body)} bytes")
        return
    if arg is Arg.FD_PTR:
        if len(body) != 4:
            raise ProtocolError(f"{spec.name} takes a 4-byte fd, got {len(body)} bytes")
        return
    if arg is Arg.STRING:
        if not 1 <= len(body) <= NAME_MAX_BYTES:
            raise ProtocolError(f"{spec.name} takes 1..4096 bytes of string, got {len(body)}")
        return
    if len(body) < 4:
        raise ProtocolError(f"{spec.name} needs its size word, got {len(body)} bytes")
    (size,) = S_U32.unpack_from(body)
    if len(body) != 4 + min(size, FIRST_COPY_MAX):
        raise ProtocolError(f"{spec.name} with size {size:#x} needs a first copy of "
                            f"{4 + min(size, FIRST_COPY_MAX):#x} bytes, got {len(body):#x}")
    x.size = size
    ksize = spec.size
    if arg is Arg.SIZE:
        # iommufd_fops_ioctl: size < min_size is EINVAL; copy_struct_from_user
        # refuses non-zero bytes past the kernel's struct with E2BIG.
        if size < spec.min:
            raise IommuError(E.EINVAL, f"{spec.name} needs a size of at least {spec.min}, "
                             f"not {size}.")
        tail = body[4 + ksize:]
        if size > ksize and (tail_nonzero or tail.count(0) != len(tail)):
            raise IommuError(E.E2BIG, f"{spec.name}: non-zero bytes past the kernel's "
                             f"{ksize}-byte struct.")
    elif spec.check_argsz and size < spec.min:
        raise IommuError(E.EINVAL, f"{spec.name} needs argsz of at least {spec.min}, "
                         f"not {size}.")
    if size == ksize:  # the common case: the caller's struct is the kernel's
        x.wb, x.image = size, body[4:]
        return
    have = min(size, ksize)
    x.wb = have
    x.image = body[4:4 + ksize] if have == ksize else body[4:4 + have] + bytes(ksize - have)


class ProtocolError(Exception):
    """The shim sent what the protocol does not allow: EPROTO to the shim."""


# -- iommufd ioctls (main.c iommufd_ioctl_ops) ---------------------------------------------------


def _destroy(x: Ioctl) -> Reply:
    """IOMMU_DESTROY (iommufd_destroy): nothing is written back."""
    _, obj_id = S_DESTROY.unpack(x.image)
    x.call("Destroy", pb.DestroyRequest(iommufd=x.fd, id=obj_id))
    return DONE


def _ioas_alloc(x: Ioctl) -> Reply:
    """IOMMU_IOAS_ALLOC (iommufd_ioas_alloc_ioctl)."""
    size, flags, _ = S_IOAS_ALLOC.unpack(x.image)
    r = x.call("IoasAlloc", pb.IoasAllocRequest(iommufd=x.fd, flags=flags))
    return x.respond(S_IOAS_ALLOC.pack(size, flags, r.out_ioas_id))


def _ioas_allow_iovas(x: Ioctl) -> Flow:
    """IOMMU_IOAS_ALLOW_IOVAS (iommufd_ioas_allow_iovas): the range array is
    read first (iommufd_ioas_load_iovas reads it after the IOAS lookup)."""
    _, ioas_id, num, reserved, ptr = S_ALLOW_IOVAS.unpack(x.image)
    ranges: list[pb.IovaRange] = []
    if num:
        x.need_bytes(num * S_IOVA_RANGE.size, "IOMMU_IOAS_ALLOW_IOVAS")
        (data,) = yield [Mem(ptr, num * S_IOVA_RANGE.size)]
        if data is None:
            raise efault("allowed_iovas")
        ranges = [pb.IovaRange(start=s, last=last) for s, last in S_IOVA_RANGE.iter_unpack(data)]
    x.call("IoasAllowIovas", pb.IoasAllowIovasRequest(
        iommufd=x.fd, ioas_id=ioas_id, allowed_iovas=ranges, reserved=reserved))
    return DONE


def _ioas_copy(x: Ioctl) -> Reply:
    """IOMMU_IOAS_COPY (iommufd_ioas_copy): dst_iova comes back."""
    size, flags, dst, src, length, dst_iova, src_iova = S_IOAS_COPY.unpack(x.image)
    r = x.call("IoasCopy", pb.IoasCopyRequest(
        iommufd=x.fd, flags=flags, dst_ioas_id=dst, src_ioas_id=src, length=length,
        dst_iova=dst_iova, src_iova=src_iova))
    return x.respond(S_IOAS_COPY.pack(size, flags, dst, src, length, r.dst_iova, src_iova))


def _ioas_iova_ranges(x: Ioctl) -> Reply:
    """IOMMU_IOAS_IOVA_RANGES (iommufd_ioas_iova_ranges): the ranges that fit
    the caller's num_iovas are written, then the struct with the total count
    and the alignment; EMSGSIZE after that when they did not all fit."""
    size, ioas_id, room, reserved, ptr, _ = S_IOVA_RANGES.unpack(x.image)
    r = x.call("IoasIovaRanges", pb.IoasIovaRangesRequest(
        iommufd=x.fd, ioas_id=ioas_id, reserved=reserved))  # no num_iovas: every range
    ranges = r.allowed_iovas
    total = len(ranges)
    writes: list[tuple[int, bytes]] = []
    fit = min(total, room)
    if fit:
        pack = S_IOVA_RANGE.pack
        writes.append((ptr, b"".join([pack(rg.start, rg.last) for rg in ranges[:fit]])))
    writes.append((x.arg, S_IOVA_RANGES.pack(size, ioas_id, total, reserved, ptr,
                                             r.out_iova_alignment)[:x.wb]))
    return Reply(-E.EMSGSIZE if total > room else 0, writes)


def _ioas_map(x: Ioctl) -> Reply:
    """IOMMU_IOAS_MAP (iommufd_ioas_map): the IOVA comes back. A hole the shim
    found in the user range goes with the request: a map that pins (into an
    IOAS with a domain) is then EFAULT."""
    size, flags, ioas_id, reserved, user_va, length, iova = S_IOAS_MAP.unpack(x.image)
    r = x.call("IoasMap", pb.IoasMapRequest(
        iommufd=x.fd, flags=flags, ioas_id=ioas_id, reserved=reserved, user_va=user_va,
        length=length, iova=iova, user_pages_missing=x.user_hole))
    return x.respond(S_IOAS_MAP.pack(size, flags, ioas_id, reserved, user_va, length, r.iova))


def _ioas_unmap(x: Ioctl) -> Reply:
    """IOMMU_IOAS_UNMAP (iommufd_ioas_unmap): the bytes unmapped come back
    in length; a failure writes nothing."""
    size, ioas_id, iova, length = S_IOAS_UNMAP.unpack(x.image)
    r = x.call("IoasUnmap", pb.IoasUnmapRequest(iommufd=x.fd, ioas_id=ioas_id, iova=iova,
                                                length=length))
    return x.respond(S_IOAS_UNMAP.pack(size, ioas_id, iova, r.length))


def _option(x: Ioctl) -> Reply:
    """IOMMU_OPTION (iommufd_option): only val64 is written back."""
    _, option_id, op, reserved, object_id, val64 = S_OPTION.unpack(x.image)
    r = x.call("Option", pb.OptionRequest(iommufd=x.fd, option_id=option_id, op=op,
                                          reserved=reserved, object_id=object_id, val64=val64))
    return Reply(0, [(x.arg + 16, S_U64.pack(r.val64))])


def _vfio_ioas(x: Ioctl) -> Reply:
    """IOMMU_VFIO_IOAS (iommufd_vfio_ioas): only GET writes back."""
    size, ioas_id, op, reserved = S_VFIO_IOAS.unpack(x.image)
    r = x.call("IommuVfioIoas", pb.IommuVfioIoasRequest(iommufd=x.fd, ioas_id=ioas_id, op=op,
                                                       reserved=reserved))
    if op != 0:  # IOMMU_VFIO_IOAS_GET
        return DONE
    return x.respond(S_VFIO_IOAS.pack(size, r.ioas_id, op, reserved))


def _hwpt_alloc(x: Ioctl) -> Flow:
    """IOMMU_HWPT_ALLOC (iommufd_hwpt_alloc). Driver data (data_type not NONE,
    data_len not 0) is read from data_uptr before the handler and goes to
    it: the mock IOMMU reads its page table type (mock_domain_alloc_paging_flags)
    or its nested domain's IOTLB value (__mock_domain_alloc_nested) from it.
    A NULL or faulting pointer sends no bytes, and the handler answers EFAULT
    where the driver's copy would, after the checks before it."""
    (size, flags, dev_id, pt_id, _, reserved, data_type, data_len, data_uptr, fault_id,
     reserved2) = S_HWPT_ALLOC.unpack(x.image)
    data = b""
    if data_type and data_len:
        x.need_bytes(data_len, "IOMMU_HWPT_ALLOC data")
        (given,) = yield [Mem(data_uptr, data_len)]
        data = given or b""      # a fault: the driver's copy is EFAULT, where it happens
    r = x.call("HwptAlloc", pb.HwptAllocRequest(
        iommufd=x.fd, flags=flags, dev_id=dev_id, pt_id=pt_id, reserved=reserved,
        data_type=data_type, data_len=data_len, fault_id=fault_id, data=data))
    return x.respond(S_HWPT_ALLOC.pack(size, flags, dev_id, pt_id, r.out_hwpt_id, reserved,
                                       data_type, data_len, data_uptr, fault_id, reserved2))


def _get_hw_info(x: Ioctl) -> Reply:
    """IOMMU_GET_HW_INFO (iommufd_get_hw_info): data_len bytes at data_uptr
    (the driver's data, zero-filled past its length), then the struct with
    the driver's data_len, type, PASID width and capabilities."""
    (size, flags, dev_id, data_len, data_uptr, data_type, _, reserved, _) = S_HW_INFO.unpack(
        x.image)
    r = x.call("GetHwInfo", pb.GetHwInfoRequest(
        iommufd=x.fd, flags=flags, dev_id=dev_id, data_len=data_len, in_data_type=data_type,
        reserved=int.from_bytes(reserved, "little")))
    writes: list[tuple[int, bytes]] = []
    if data_len:
        writes.append((data_uptr, bytes(r.data[:data_len]).ljust(data_len, b"\0")))
    writes.append((x.arg, S_HW_INFO.pack(size, flags, dev_id, r.data_len, data_uptr,
                                         r.out_data_type, r.out_max_pasid_log2, reserved,
                                         r.out_capabilities)[:x.wb]))
    return Reply(0, writes)


def _set_dirty_tracking(x: Ioctl) -> Reply:
    """IOMMU_HWPT_SET_DIRTY_TRACKING (iommufd_hwpt_set_dirty_tracking)."""
    _, flags, hwpt_id, reserved = S_SET_DIRTY.unpack(x.image)
    x.call("HwptSetDirtyTracking", pb.HwptSetDirtyTrackingRequest(
        iommufd=x.fd, flags=flags, hwpt_id=hwpt_id, reserved=reserved))
    return DONE


def _get_dirty_bitmap(x: Ioctl) -> Flow:
    """IOMMU_HWPT_GET_DIRTY_BITMAP (iommufd_hwpt_get_dirty_bitmap): the kernel
    sets bits in the caller's bitmap (iova_bitmap_set) and clears none, so
    the caller's bytes are read first and the dirty bits OR-ed into them.
    Bitmap memory that cannot be read and written is EFAULT after the
    handler's own checks: the handler runs with NO_CLEAR, so nothing
    changes, and EFAULT replaces its success."""
    _, hwpt_id, flags, reserved, iova, length, page_size, data = S_GET_DIRTY.unpack(x.image)
    nbytes = 0
    if page_size and not page_size & (page_size - 1):
        nbytes = (-(-length // page_size) + 7) // 8
    faulted = False
    old = b""
    if nbytes:
        x.need_bytes(nbytes, "IOMMU_HWPT_GET_DIRTY_BITMAP")
        given = yield [Mem(data, nbytes), Writable(data, nbytes)]
        faulted = given[0] is None or not given[1]
        old = given[0] or b""
    if faulted:
        flags |= IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
    r = x.call("HwptGetDirtyBitmap", pb.HwptGetDirtyBitmapRequest(
        iommufd=x.fd, hwpt_id=hwpt_id, flags=flags, reserved=reserved, iova=iova,
        length=length, page_size=page_size))
    if faulted:
        raise efault("the dirty bitmap")
    if not nbytes:
        return DONE
    bits = int.from_bytes(bytes(r.data[:nbytes]), "little") | int.from_bytes(old, "little")
    return Reply(0, [(data, bits.to_bytes(nbytes, "little"))])


def _hwpt_invalidate(x: Ioctl) -> Flow:
    """IOMMU_HWPT_INVALIDATE (iommufd_hwpt_invalidate): entry_num comes back
    with the entries handled, on success and on failure."""
    size, hwpt_id, data_uptr, data_type, entry_len, entry_num, reserved = S_INVALIDATE.unpack(
        x.image)
    result, done = 0, 0
    data = b""
    try:
        # The kernel checks the bounds before it reads any entry: out of
        # them, nothing is read and the handler answers the errno.
        if (entry_num and entry_len and data_uptr and not reserved
                and entry_len <= PAGE_SIZE and entry_num <= INVALIDATE_ENTRY_NUM_MAX):
            x.need_bytes(entry_num * entry_len, "IOMMU_HWPT_INVALIDATE entries")
            (got,) = yield [Mem(data_uptr, entry_num * entry_len)]
            if got is None:
                raise efault("the invalidation entries")
            data = got
        r = x.call("HwptInvalidate", pb.HwptInvalidateRequest(
            iommufd=x.fd, hwpt_id=hwpt_id, data=data, data_type=data_type, entry_len=entry_len,
            entry_num=entry_num, reserved=reserved))
        done = r.entry_num
    except IommuError as err:
        result, done = -err.errno, int(err.details.get("entry_num", 0))
    return Reply(result, [(x.arg, S_INVALIDATE.pack(size, hwpt_id, data_uptr, data_type,
                                                    entry_len, done, reserved)[:x.wb])])


def _fault_queue_alloc(x: Ioctl) -> Reply:
    """IOMMU_FAULT_QUEUE_ALLOC (iommufd_fault_alloc): out_fault_id in the
    struct, and the queue's fd (the session's), whose number the shim
    writes to out_fault_fd; it is read and written with READ and WRITE
    records (fault_read, fault_write)."""
    size, flags, _, fault_fd = S_FAULT_ALLOC.unpack(x.image)
    r = x.call("FaultQueueAlloc", pb.FaultQueueAllocRequest(iommufd=x.fd, flags=flags))
    reply = x.respond(S_FAULT_ALLOC.pack(size, flags, r.out_fault_id, fault_fd))
    reply.newfile = NewFile(FileKind.FAULT, r.out_fault_fd, r.out_fault_id, addr=x.arg + 12)
    return reply


def _eventq_read(x: Ioctl, count: int, read: Callable[[int], bytes]) -> Flow:
    """read() of a queue's fd: the records the read would take now are
    probed for writability one by one, and the read takes only the prefix
    the caller can receive (the kernel stops at, or puts back, the first
    record whose copy faults: EFAULT when that is the first). `read(limit)`
    reads through the op table. The bytes come back as a WRITE at the
    caller's buffer, the count read as the result."""
    qfd = x.target
    count = min(count, U64_MAX)
    try:
        sizes = qfd.queue.plan(count) if qfd is not None and not qfd.closed else []
    except IommuError:
        sizes = []          # the read itself refuses it, through the op table
    limit = count
    if sizes:
        probes: list[Need] = []
        at = x.arg
        for size in sizes:
            probes.append(Writable(at, size))
            at += size
        given = yield probes
        ok = 0
        for size, writable in zip(sizes, given, strict=True):
            if not writable:
                break
            ok += size
        if not ok:
            raise efault("the read buffer")
        limit = ok
    data = read(limit)
    return Reply(len(data), [(x.arg, data)] if data else None)


def fault_read(x: Ioctl, count: int) -> Flow:
    """read() of a fault queue's fd (iommufd_fault_fops_read; a READ record)."""
    return _eventq_read(x, count, lambda limit: bytes(x.call(
        "FaultQueueRead", pb.FaultQueueReadRequest(fault_fd=x.fd, count=limit)).data))


def fault_write(x: Ioctl, count: int) -> Flow:
    """write() of page responses to a fault queue's fd
    (iommufd_fault_fops_write; a WRITE record): a count that is not whole
    responses is ESPIPE; each response is read as an item of its own, so
    that the kernel's stop at the first it cannot copy holds (EFAULT when
    that is the first); the bytes taken are the result."""
    if count % RESPONSE_SIZE:
        raise IommuError(E.ESPIPE, f"Page responses are {RESPONSE_SIZE} bytes each; a write of "
                         f"{count} bytes is not whole ones.")
    if not count:
        return Reply(0)
    x.need_bytes(count, "a fault queue's write")
    given = yield [Mem(x.arg + i, RESPONSE_SIZE) for i in range(0, count, RESPONSE_SIZE)]
    responses: list[pb.PageResponse] = []
    for data in given:
        if data is None:
            break
        cookie, code = S_RESPONSE.unpack(data)
        responses.append(pb.PageResponse(cookie=cookie, code=code))
    if not responses:
        raise efault("the page responses")
    r = x.call("FaultQueueRespond", pb.FaultQueueRespondRequest(fault_fd=x.fd,
                                                                responses=responses))
    return Reply(r.count * RESPONSE_SIZE)


def _viommu_alloc(x: Ioctl) -> Flow:
    """IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl): driver data is read
    from data_uptr before the handler (a read that faults sends none: EFAULT
    where the driver copies it), and must be writable (EFAULT before the
    handler); the driver's answer goes back there (mock_viommu_init's
    copy_struct_to_user), then out_viommu_id in the struct."""
    (size, flags, vtype, dev_id, hwpt_id, _, data_len, reserved,
     data_uptr) = S_VIOMMU_ALLOC.unpack(x.image)
    data = b""
    if data_len:
        x.need_bytes(data_len, "IOMMU_VIOMMU_ALLOC data")
        given, writable = yield [Mem(data_uptr, data_len), Writable(data_uptr, data_len)]
        if given is not None and not writable:
            raise efault("data_uptr")
        data = given or b""
    r = x.call("ViommuAlloc", pb.ViommuAllocRequest(
        iommufd=x.fd, flags=flags, type=vtype, dev_id=dev_id, hwpt_id=hwpt_id,
        data_len=data_len, reserved=reserved, data=data))
    writes = [(data_uptr, bytes(r.data))] if r.data else []
    writes.append((x.arg, S_VIOMMU_ALLOC.pack(size, flags, vtype, dev_id, hwpt_id,
                                              r.out_viommu_id, data_len, reserved,
                                              data_uptr)[:x.wb]))
    return Reply(0, writes)


def _vdevice_alloc(x: Ioctl) -> Reply:
    """IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl): out_vdevice_id comes back."""
    size, viommu_id, dev_id, _, virt_id = S_VDEVICE_ALLOC.unpack(x.image)
    r = x.call("VdeviceAlloc", pb.VdeviceAllocRequest(iommufd=x.fd, viommu_id=viommu_id,
                                                      dev_id=dev_id, virt_id=virt_id))
    return x.respond(S_VDEVICE_ALLOC.pack(size, viommu_id, dev_id, r.out_vdevice_id, virt_id))


def _hw_queue_alloc(x: Ioctl) -> Reply:
    """IOMMU_HW_QUEUE_ALLOC (iommufd_hw_queue_alloc_ioctl): out_hw_queue_id comes back."""
    size, flags, viommu_id, qtype, index, _, iova, length = S_HW_QUEUE_ALLOC.unpack(x.image)
    r = x.call("HwQueueAlloc", pb.HwQueueAllocRequest(
        iommufd=x.fd, flags=flags, viommu_id=viommu_id, type=qtype, index=index,
        nesting_parent_iova=iova, length=length))
    return x.respond(S_HW_QUEUE_ALLOC.pack(size, flags, viommu_id, qtype, index,
                                           r.out_hw_queue_id, iova, length))


def _veventq_alloc(x: Ioctl) -> Reply:
    """IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc): out_veventq_id in the
    struct, and the queue's fd (a file of the session, path kind 8), whose
    number the shim writes to out_veventq_fd."""
    size, flags, viommu_id, vtype, depth, _, fd_field, reserved = S_VEVENTQ_ALLOC.unpack(
        x.image)
    r = x.call("VeventqAlloc", pb.VeventqAllocRequest(
        iommufd=x.fd, flags=flags, viommu_id=viommu_id, type=vtype, veventq_depth=depth,
        reserved=reserved))
    reply = x.respond(S_VEVENTQ_ALLOC.pack(size, flags, viommu_id, vtype, depth,
                                           r.out_veventq_id, fd_field, reserved))
    reply.newfile = NewFile(FileKind.VEVENTQ, r.out_veventq_fd, r.out_veventq_id,
                            addr=x.arg + 24)
    return reply


def veventq_read(x: Ioctl, count: int) -> Flow:
    """read() of a vEVENTQ fd (iommufd_veventq_fops_read; a READ record,
    docs/uapi-transport.md)."""
    return _eventq_read(x, count, lambda limit: bytes(x.call(
        "VeventqRead", pb.VeventqReadRequest(veventq_fd=x.fd, count=limit)).data))


def _ioas_map_file(x: Ioctl) -> Flow:
    """IOMMU_IOAS_MAP_FILE (iommufd_ioas_map_file): `fd` is the caller's, by a
    NEED FD round: a file the daemon made for it (a selftest dma-buf) is its
    session fd; a real file (a memfd the shim passes with SCM_RIGHTS) becomes
    a session fd for the length of the call, as fget holds it. iova comes
    back."""
    size, flags, ioas_id, fd, start, length, iova = S_MAP_FILE.unpack(x.image)
    number, adopted = FD_MAX, False
    if fd >= 0:
        (given,) = yield [FdArg(fd)]
        if given.status == 0 and given.real and given.os_fd >= 0 and x.adopt is not None:
            number, adopted = x.adopt(given.os_fd), True
        else:
            number, _ = _fd_number(given, x.resolve)
    try:
        r = x.call("IoasMapFile", pb.IoasMapFileRequest(
            iommufd=x.fd, flags=flags, ioas_id=ioas_id, fd=number, start=start, length=length,
            iova=iova))
    finally:
        if adopted:
            x.call("CloseFd", pb.CloseFdRequest(fd=number))
    return x.respond(S_MAP_FILE.pack(size, flags, ioas_id, fd, start, length, r.iova))


def _backing(x: Ioctl, uptr: int, length: int
             ) -> Generator[list[Need], list[Any], pb.UserBacking | None]:
    """What backs the caller's memory at uptr (NEED BACKING), asked only
    while the daemon holds files a process may have mapped: the selftest's
    checks of user pages then find a memfd's pages behind its mmap. Without
    any, the pages are the caller's own at their address, and no round
    trip is spent."""
    if not length or not files.host_files_live() or uptr + length - 1 > U64_MAX:
        return None
    (segments,) = yield [Backing(uptr, length)]
    if segments is None:
        return None
    return pb.UserBacking(mappings=[pb.MemoryMapping(
        offset=g.offset, length=g.length, dev_major=g.major, dev_minor=g.minor, inode=g.inode,
        file_offset=g.file_offset, shared=g.shared) for g in segments])


def _ioas_change_process(x: Ioctl) -> Reply:
    """IOMMU_IOAS_CHANGE_PROCESS (iommufd_ioas_change_process)."""
    _, reserved = S_CHANGE_PROCESS.unpack(x.image)
    x.call("IoasChangeProcess", pb.IoasChangeProcessRequest(iommufd=x.fd, reserved=reserved))
    return DONE


def _noiommu_get_pa(x: Ioctl) -> Reply:
    """IOMMU_IOAS_NOIOMMU_GET_PA: in the v7.3 table whatever the config, so
    the size rules above hold; past them iommud answers as a kernel built
    without CONFIG_IOMMUFD_NOIOMMU (the stub iommufd_ioas_noiommu_get_pa in
    iommufd_private.h): EOPNOTSUPP. Built with it, the kernel answers only
    for areas whose storage domain is a noiommu domain (iopt_get_phys), and
    no iommud device is a noiommu one, so no query would find a physical
    address either; no gRPC call exists for it."""
    raise IommuError(E.EOPNOTSUPP, "IOMMU_IOAS_NOIOMMU_GET_PA: iommud has no noiommu devices "
                     "(a kernel without CONFIG_IOMMUFD_NOIOMMU).")


# -- VFIO on a container or an iommufd (vfio_compat.c, container.c, vfio_iommu_type1.c) ----------


def _get_api_version(x: Ioctl) -> Reply:
    """VFIO_GET_API_VERSION: returns VFIO_API_VERSION."""
    r = x.call("VfioGetApiVersion", pb.VfioGetApiVersionRequest(container_fd=x.fd))
    return Reply(r.version)


def _check_extension(x: Ioctl) -> Reply:
    """VFIO_CHECK_EXTENSION: the integer argument; returns 0 or 1."""
    r = x.call("VfioCheckExtension", pb.VfioCheckExtensionRequest(container_fd=x.fd,
                                                                  extension=_u32(x.arg)))
    return Reply(r.value)


def _set_iommu(x: Ioctl) -> Reply:
    """VFIO_SET_IOMMU: the integer argument."""
    x.call("VfioSetIommu", pb.VfioSetIommuRequest(container_fd=x.fd, type=_u32(x.arg)))
    return DONE


def _cap(cap_id: int, payload: bytes) -> bytes:
    """One capability (vfio_info_cap_add), its `next` filled in by _chain;
    padded to 8 bytes so that the next one is aligned."""
    return S_CAP_HEADER.pack(cap_id, 1, 0) + payload + bytes(-(8 + len(payload)) % 8)


def _chain(caps: list[bytes], base: int) -> bytes:
    """Link capabilities placed at offset `base` of the info struct
    (vfio_info_cap_shift): each `next` is the offset of the following one
    from the start of the struct, 0 for the last."""
    out = bytearray()
    offset = base
    for i, cap in enumerate(caps):
        nxt = offset + len(cap) if i + 1 < len(caps) else 0
        out += cap[:4] + S_U32.pack(nxt) + cap[8:]
        offset += len(cap)
    return bytes(out)


def _iommu_get_info(x: Ioctl) -> Reply:
    """VFIO_IOMMU_GET_INFO: the fixed part (min(argsz, 24) bytes), and the
    capability chain after it when the handler says it fits (cap_offset),
    never past argsz. The chain's order is the kernel's: type1 gives
    MIGRATION, DMA_AVAIL, IOVA_RANGE (vfio_iommu_type1_get_info); the compat
    layer DMA_AVAIL, IOVA_RANGE (iommufd_vfio_iommu_get_info)."""
    argsz = x.size
    r = x.call("VfioIommuGetInfo", pb.VfioIommuGetInfoRequest(container_fd=x.fd, argsz=argsz))
    info = S_IOMMU_INFO.pack(r.argsz, r.flags, r.iova_pgsizes, r.cap_offset, 0)
    data = info[:x.wb]
    if r.cap_offset:
        caps: list[bytes] = []
        if r.HasField("migration"):
            m = r.migration
            caps.append(_cap(VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, S_CAP_MIGRATION.pack(
                m.flags, m.pgsize_bitmap, m.max_dirty_bitmap_size)))
        if r.HasField("dma_avail"):
            caps.append(_cap(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, S_CAP_DMA_AVAIL.pack(r.dma_avail)))
        if r.iova_ranges or not r.HasField("migration"):
            caps.append(_cap(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, S_CAP_IOVA_RANGE.pack(
                len(r.iova_ranges), 0) + b"".join(
                    [S_IOVA_RANGE.pack(rg.start, rg.last) for rg in r.iova_ranges])))
        data = (info + _chain(caps, r.cap_offset))[:argsz]
    return Reply(0, [(x.arg, data)])


def _map_dma(x: Ioctl) -> Reply:
    """VFIO_IOMMU_MAP_DMA: nothing is written back."""
    argsz, flags, vaddr, iova, size = S_DMA_MAP.unpack(x.image)
    x.call("VfioIommuMapDma", pb.VfioIommuMapDmaRequest(
        container_fd=x.fd, argsz=argsz, flags=flags, vaddr=vaddr, iova=iova, size=size))
    return DONE


def _unmap_request(x: Ioctl) -> tuple[pb.VfioIommuUnmapDmaRequest, int]:
    argsz, flags, iova, size, pgsize, bsize, bdata = S_DMA_UNMAP.unpack(x.image)
    return pb.VfioIommuUnmapDmaRequest(container_fd=x.fd, argsz=argsz, flags=flags, iova=iova,
                                       size=size, bitmap_pgsize=pgsize,
                                       bitmap_size=bsize), bdata


def _unmap_reply(x: Ioctl, req: pb.VfioIommuUnmapDmaRequest, bdata: int) -> Reply:
    r = x.call("VfioIommuUnmapDma", req)
    writes: list[tuple[int, bytes]] = []
    if r.bitmap:
        writes.append((bdata, bytes(r.bitmap[:req.bitmap_size])))
    # copy_to_user(arg, &unmap, minsz): argsz, flags, iova and the size unmapped.
    writes.append((x.arg, S_DMA_UNMAP.pack(req.argsz, req.flags, req.iova, r.size, 0, 0,
                                           0)[:24]))
    return Reply(0, writes)


def _unmap_dma_compat(x: Ioctl) -> Reply:
    """VFIO_IOMMU_UNMAP_DMA on an iommufd (iommufd_vfio_unmap_dma): size comes
    back with the bytes unmapped (a failure writes nothing here)."""
    req, bdata = _unmap_request(x)
    return _unmap_reply(x, req, bdata)


def _unmap_dma_type1(x: Ioctl) -> Flow:
    """VFIO_IOMMU_UNMAP_DMA on a type1 container (vfio_iommu_type1_unmap_dma):
    with GET_DIRTY_BITMAP the vfio_bitmap follows the struct (argsz below 48
    is EINVAL) and the bitmap is written at its data pointer, which is
    probed first so that a fault unmaps nothing."""
    req, bdata = _unmap_request(x)
    if req.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP:
        if req.argsz < S_DMA_UNMAP.size:
            raise IommuError(E.EINVAL, "UNMAP_DMA with GET_DIRTY_BITMAP needs argsz of at least "
                             f"48, not {req.argsz}.")
        if req.bitmap_size:
            x.need_bytes(req.bitmap_size, "VFIO_IOMMU_UNMAP_DMA bitmap")
            (ok,) = yield [Writable(bdata, req.bitmap_size)]
            if not ok:
                raise efault("the dirty bitmap")
    return _unmap_reply(x, req, bdata)


def _dirty_pages(x: Ioctl) -> Flow:
    """VFIO_IOMMU_DIRTY_PAGES (vfio_iommu_type1_dirty_pages). The handler
    checks argsz after the IOMMU type (EACCES for v1 comes first), so argsz 0,
    which the handler reads as "not given", is passed as 1. GET_BITMAP's
    range follows the struct (argsz below 48 reads as an empty range:
    EINVAL); its bitmap is probed before and written after."""
    argsz, flags, iova, size, pgsize, bsize, bdata = S_DIRTY_PAGES.unpack(x.image)
    get = flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP
    if not get or argsz < S_DIRTY_PAGES.size:
        iova = size = pgsize = bsize = bdata = 0
    if bsize:
        x.need_bytes(bsize, "VFIO_IOMMU_DIRTY_PAGES bitmap")
        (ok,) = yield [Writable(bdata, bsize)]
        if not ok:
            raise efault("the dirty bitmap")
    r = x.call("VfioIommuDirtyPages", pb.VfioIommuDirtyPagesRequest(
        container_fd=x.fd, argsz=argsz or 1, flags=flags, iova=iova, size=size,
        bitmap_pgsize=pgsize, bitmap_size=bsize))
    if r.bitmap:
        return Reply(0, [(bdata, bytes(r.bitmap[:bsize]))])
    return DONE


# -- VFIO groups (group.c) ------------------------------------------------------------------------


def _group_get_status(x: Ioctl) -> Reply:
    """VFIO_GROUP_GET_STATUS (vfio_group_ioctl_get_status): argsz and flags."""
    r = x.call("VfioGroupGetStatus", pb.VfioGroupGetStatusRequest(group_fd=x.fd, argsz=x.size))
    return Reply(0, [(x.arg, S_GROUP_STATUS.pack(x.size, r.flags))])


def _fd_number(given: GivenFd, resolve: Callable[[int], int | None]) -> tuple[int, bool]:
    """The session fd number an fd argument stands for, and whether it is a
    real fd. An fd the caller has not open, or a file of another session, is
    a number no file has (EBADF from the handler, after its own checks)."""
    if given.status == 0 and given.real:
        return FD_MAX, True
    number = resolve(given.token) if given.status == 0 else None
    return (FD_MAX if number is None else number), False


def _real_fd_is_ebadfd(call: Callable[[str, Any], Any], real: bool, name: str,
                       request: Any) -> Any:
    """A fd the shim does not emulate is no iommufd (iommufd_ctx_from_file):
    EBADFD where the handler found no file."""
    try:
        return call(name, request)
    except IommuError as err:
        if real and err.errno == E.EBADF:
            raise IommuError(E.EBADFD, "The fd argument is not an iommufd.") from err
        raise


def _group_set_container(x: Ioctl) -> Flow:
    """VFIO_GROUP_SET_CONTAINER (vfio_group_ioctl_set_container): the s32 the
    argument points to names a container or an iommufd of the caller."""
    (fd,) = S_S32.unpack(x.body)
    if fd < 0:
        raise IommuError(E.EBADF, f"fd {fd} is not open.")
    (given,) = yield [FdArg(fd)]
    number, real = _fd_number(given, x.resolve)
    _real_fd_is_ebadfd(x.call, real, "VfioGroupSetContainer", pb.VfioGroupSetContainerRequest(
        group_fd=x.fd, container_fd=number))
    return DONE


def _group_unset_container(x: Ioctl) -> Reply:
    """VFIO_GROUP_UNSET_CONTAINER."""
    x.call("VfioGroupUnsetContainer", pb.VfioGroupUnsetContainerRequest(group_fd=x.fd))
    return DONE


def _group_get_device_fd(x: Ioctl) -> Reply:
    """VFIO_GROUP_GET_DEVICE_FD (vfio_group_ioctl_get_device_fd): the name up
    to its NUL (none within 4096 bytes: EINVAL, as strndup_user); returns a
    new device fd, O_CLOEXEC."""
    end = x.body.find(b"\0")
    if end < 0:
        raise IommuError(E.EINVAL, "The device name has no NUL within 4096 bytes.")
    name = x.body[:end].decode("utf-8", "replace")
    r = x.call("VfioGroupGetDeviceFd", pb.VfioGroupGetDeviceFdRequest(group_fd=x.fd, name=name))
    return Reply(0, None, NewFile(FileKind.GROUP_DEVICE, r.device_fd, 0, result=True))


# -- VFIO devices (device_cdev.c, vfio_main.c, vfio_pci_core.c) ------------------------------------


def _bind_iommufd(x: Ioctl) -> Flow:
    """VFIO_DEVICE_BIND_IOMMUFD (vfio_df_ioctl_bind_iommufd): the iommufd is
    an fd of the caller; out_devid comes back. The bind's user cookie, which
    the kernel's struct lacks, is 0."""
    _, flags, iommufd, _, _ = S_BIND.unpack(x.image)
    number, real = iommufd, False
    if iommufd >= 0:
        (given,) = yield [FdArg(iommufd)]
        number, real = _fd_number(given, x.resolve)
    r = _real_fd_is_ebadfd(x.call, real, "DeviceBindIommufd", pb.DeviceBindIommufdRequest(
        device_fd=x.fd, flags=flags, iommufd=number, cookie=0))
    return Reply(0, [(x.arg + 12, S_U32.pack(r.out_devid))])


def _attach_pt(x: Ioctl) -> Reply:
    """VFIO_DEVICE_ATTACH_IOMMUFD_PT (vfio_df_ioctl_attach_pt): the pasid
    field needs argsz 16; pt_id comes back with the HWPT attached."""
    argsz, flags, pt_id, pasid = S_ATTACH.unpack(x.image)
    if flags & VFIO_DEVICE_ATTACH_PASID and not flags & ~VFIO_DEVICE_ATTACH_PASID \
            and argsz < S_ATTACH.size:
        raise IommuError(E.EINVAL, f"ATTACH with a PASID needs argsz 16, not {argsz}.")
    r = x.call("DeviceAttachIommufdPt", pb.DeviceAttachIommufdPtRequest(
        device_fd=x.fd, flags=flags, pt_id=pt_id, pasid=pasid))
    return Reply(0, [(x.arg + 8, S_U32.pack(r.pt_id))])


def _detach_pt(x: Ioctl) -> Reply:
    """VFIO_DEVICE_DETACH_IOMMUFD_PT (vfio_df_ioctl_detach_pt): the pasid
    field needs argsz 12."""
    argsz, flags, pasid = S_DETACH.unpack(x.image)
    if flags & VFIO_DEVICE_DETACH_PASID and not flags & ~VFIO_DEVICE_DETACH_PASID \
            and argsz < S_DETACH.size:
        raise IommuError(E.EINVAL, f"DETACH with a PASID needs argsz 12, not {argsz}.")
    x.call("DeviceDetachIommufdPt", pb.DeviceDetachIommufdPtRequest(
        device_fd=x.fd, flags=flags, pasid=pasid))
    return DONE


#: The modelled PCI function behind every device fd, as vfio-pci reports it:
#: one 64-bit memory BAR0 of 16 KiB (BAR1 is its upper half), no other BARs,
#: no expansion ROM, PCIe configuration space, and a VGA window only for VGA
#: class devices. Sizes and flags are what vfio_pci_ioctl_get_region_info
#: would give; the regions themselves are not served (docs/uapi-transport.md).
BAR0_SIZE = 16 << 10
CONFIG_SIZE = 4096
VGA_SIZE = 0xC0000
RW = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE


def region(class_code: int, index: int) -> tuple[int, int] | None:
    """(flags, size) of region `index`, or None where vfio-pci says EINVAL."""
    if index == 0:
        return RW | VFIO_REGION_INFO_FLAG_MMAP, BAR0_SIZE
    if index <= VFIO_PCI_ROM_REGION_INDEX:  # BAR1 (BAR0's upper half) to BAR5, the ROM
        return 0, 0
    if index == VFIO_PCI_CONFIG_REGION_INDEX:
        return RW, CONFIG_SIZE
    if index == VFIO_PCI_VGA_REGION_INDEX and class_code >> 8 == 0x0300:
        return RW, VGA_SIZE
    return None


def irq(index: int) -> tuple[int, int] | None:
    """(flags, count) of interrupt `index` (vfio_pci_ioctl_get_irq_info): INTx
    (pin A), one MSI vector, no MSI-X, and the ERR and REQ eventfds."""
    if index >= VFIO_PCI_NUM_IRQS:
        return None
    if index == VFIO_PCI_INTX_IRQ_INDEX:
        return VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1
    count = 0 if index == VFIO_PCI_MSIX_IRQ_INDEX else 1
    return VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, count


def _device(x: Ioctl) -> pb.HostDevice:
    info: pb.DeviceGetInfoResponse = x.call("DeviceGetInfo",
                                            pb.DeviceGetInfoRequest(device_fd=x.fd))
    return info.device


def _device_get_info(x: Ioctl) -> Reply:
    """VFIO_DEVICE_GET_INFO (vfio_pci_ioctl_get_info): a PCI device with 9
    regions and 5 interrupts, no RESET, no capabilities; min(argsz, 24)
    bytes come back."""
    _device(x)
    data = S_DEVICE_INFO.pack(x.size, VFIO_DEVICE_FLAGS_PCI, VFIO_PCI_NUM_REGIONS,
                              VFIO_PCI_NUM_IRQS, 0, 0)
    return Reply(0, [(x.arg, data[:x.wb])])


def _device_get_region_info(x: Ioctl) -> Reply:
    """VFIO_DEVICE_GET_REGION_INFO (vfio_get_region_info): 32 bytes come back."""
    _, _, index, _, _, _ = S_REGION_INFO.unpack(x.image)
    dev = _device(x)
    found = region(dev.class_code, index)
    if found is None:
        raise IommuError(E.EINVAL, f"Region index {index} does not exist on {dev.name}.")
    flags, size = found
    return Reply(0, [(x.arg, S_REGION_INFO.pack(x.size, flags, index, 0, size,
                                                index << VFIO_PCI_OFFSET_SHIFT))])


def _device_get_irq_info(x: Ioctl) -> Reply:
    """VFIO_DEVICE_GET_IRQ_INFO (vfio_pci_ioctl_get_irq_info): 16 bytes come back."""
    _, _, index, _ = S_IRQ_INFO.unpack(x.image)
    dev = _device(x)
    found = irq(index)
    if found is None:
        raise IommuError(E.EINVAL, f"IRQ index {index} does not exist on {dev.name}.")
    flags, count = found
    return Reply(0, [(x.arg, S_IRQ_INFO.pack(x.size, flags, index, count))])


# -- IOMMU_TEST_CMD (selftest.c iommufd_test), with debug_selftest -------------------------------
# One codec per op, onto the op table's Test* rows. `id` is the op's object,
# or, for the access ops, an fd of the caller: its identity comes by a NEED
# FD round, as iommufd_access_get's fget reads the caller's fd table.


def _t_respond(x: Ioctl, offset: int, data: bytes) -> Reply:
    """iommufd_ucmd_respond(ucmd, sizeof(*cmd)): the kernel's copy of the
    struct, with the op's out fields set, min(size, 72) bytes of it."""
    image = x.image[:offset] + data + x.image[offset + len(data):]
    return x.respond(image)


def _t_access_fd(x: Ioctl, fd: int) -> Generator[list[Need], list[Any], int]:
    """The session fd an access fd argument stands for; iommufd_access_get:
    anything but an open test access fd is EBADFD (no fd at all too)."""
    if fd > 0x7FFF_FFFF:
        raise IommuError(E.EBADFD, f"fd {fd} is not a test access fd.")
    (given,) = yield [FdArg(fd)]
    number, real = _fd_number(given, x.resolve)
    if real:
        raise IommuError(E.EBADFD, f"fd {fd} is not a test access fd.")
    return number


def _t_add_reserved(x: Ioctl, obj_id: int) -> Reply:
    """ADD_RESERVED (iommufd_test_add_reserved)."""
    start, length = S_T_RESERVED.unpack_from(x.image, TEST_UNION)
    x.call("TestAddReserved", pb.TestAddReservedRequest(iommufd=x.fd, ioas_id=obj_id,
                                                        start=start, length=length))
    return DONE


def _t_mock_domain(x: Ioctl, obj_id: int, flags_op: bool) -> Reply:
    """MOCK_DOMAIN and MOCK_DOMAIN_FLAGS (iommufd_test_mock_domain): the three
    ids come back; dev_flags is read only by the _FLAGS op."""
    dev_flags = S_T_MOCK_DOMAIN.unpack_from(x.image, TEST_UNION)[3]
    req = pb.TestMockDomainRequest(iommufd=x.fd, pt_id=obj_id)
    if flags_op:
        req.dev_flags = dev_flags
    r = x.call("TestMockDomain", req)
    return _t_respond(x, TEST_UNION, S_T_MOCK_DOMAIN.pack(
        r.out_stdev_id, r.out_hwpt_id, r.out_idev_id, dev_flags)[:12])


def _t_mock_domain_replace(x: Ioctl, obj_id: int) -> Reply:
    """MOCK_DOMAIN_REPLACE (iommufd_test_mock_domain_replace): pt_id comes back."""
    (pt_id,) = S_U32.unpack_from(x.image, TEST_UNION)
    r = x.call("TestMockDomainReplace", pb.TestMockDomainReplaceRequest(
        iommufd=x.fd, stdev_id=obj_id, pt_id=pt_id))
    return _t_respond(x, TEST_UNION, S_U32.pack(r.pt_id))


def _t_check_map(x: Ioctl, obj_id: int) -> Flow:
    """MD_CHECK_MAP (iommufd_test_md_check_pa): the pages behind uptr are
    what the kernel's GUP of them finds (`_backing`)."""
    iova, length, uptr = S_T_CHECK_MAP.unpack_from(x.image, TEST_UNION)
    req = pb.TestMdCheckMapRequest(iommufd=x.fd, hwpt_id=obj_id, iova=iova, length=length,
                                   user_va=uptr)
    backing = yield from _backing(x, uptr, length)
    if backing is not None:
        req.backing.CopyFrom(backing)
    x.call("TestMdCheckMap", req)
    return DONE


def _t_check_refs(x: Ioctl, obj_id: int) -> Flow:
    """MD_CHECK_REFS (iommufd_test_md_check_refs): `id` is not read."""
    length, uptr, refs = S_T_CHECK_REFS.unpack_from(x.image, TEST_UNION)
    req = pb.TestMdCheckRefsRequest(iommufd=x.fd, user_va=uptr, length=length, refs=refs)
    backing = yield from _backing(x, uptr, length)
    if backing is not None:
        req.backing.CopyFrom(backing)
    x.call("TestMdCheckRefs", req)
    return DONE


def _t_create_access(x: Ioctl, obj_id: int) -> Reply:
    """CREATE_ACCESS (iommufd_test_create_access): a new O_CLOEXEC fd, the
    access's own file, whose number the shim writes to out_access_fd."""
    flags = S_T_TWO.unpack_from(x.image, TEST_UNION)[1]
    r = x.call("TestCreateAccess", pb.TestCreateAccessRequest(iommufd=x.fd, ioas_id=obj_id,
                                                              flags=flags))
    reply = _t_respond(x, TEST_UNION, S_T_TWO.pack(0, flags))
    reply.newfile = NewFile(FileKind.ACCESS, r.out_access_fd, 0, addr=x.arg + TEST_UNION)
    return reply


def _t_destroy_access_pages(x: Ioctl, obj_id: int) -> Flow:
    """DESTROY_ACCESS_PAGES (iommufd_test_access_item_destroy)."""
    (item,) = S_U32.unpack_from(x.image, TEST_UNION)
    access_fd = yield from _t_access_fd(x, obj_id)
    x.call("TestDestroyAccessPages", pb.TestDestroyAccessPagesRequest(
        iommufd=x.fd, access_fd=access_fd, access_pages_id=item))
    return DONE


def _t_access_pages(x: Ioctl, obj_id: int) -> Flow:
    """ACCESS_PAGES (iommufd_test_access_pages): the length and flags checks
    come before the fd's (ENOMEM, EOPNOTSUPP); the item id comes back."""
    flags, _, iova, length, uptr = S_T_ACCESS_PAGES.unpack_from(x.image, TEST_UNION)
    req = pb.TestAccessPagesRequest(iommufd=x.fd, flags=flags, iova=iova, length=length,
                                    user_va=uptr)
    if length <= ACCESS_MAX_LENGTH and not flags & ~ACCESS_PAGES_FLAGS:
        req.access_fd = yield from _t_access_fd(x, obj_id)
        if uptr:
            backing = yield from _backing(x, uptr, length)
            if backing is not None:
                req.backing.CopyFrom(backing)
    r = x.call("TestAccessPages", req)
    return _t_respond(x, TEST_UNION + 4, S_U32.pack(r.out_access_pages_id))


def _t_access_rw(x: Ioctl, obj_id: int) -> Flow:
    """ACCESS_RW (iommufd_test_access_rw): the handler's copy plan becomes
    memmoves in the caller's memory, between its buffer and the user memory
    behind the IOVA range (a fault there is EFAULT, after the checks). A
    piece in a passed file's pages (IOAS_MAP_FILE) is no address of the
    caller's: the daemon reads or writes the file through its own fd, as
    iopt_pages_rw_slow copies through the file's folios, and the buffer's
    side travels as NEED MEM (all of it read before any write, as the test
    copies the user buffer in first) or as a write to the caller."""
    iova, length, uptr, flags = S_T_ACCESS_RW.unpack_from(x.image, TEST_UNION)
    req = pb.TestAccessRwRequest(iommufd=x.fd, iova=iova, length=length, user_va=uptr,
                                 flags=flags)
    if length <= ACCESS_MAX_LENGTH and not flags & ~ACCESS_RW_FLAGS:
        req.access_fd = yield from _t_access_fd(x, obj_id)
    r = x.call("TestAccessRw", req)
    copies: list[tuple[int, int, int]] = []
    in_files: list[tuple[files.MappedFile, int, int, int]] = []  # file, offset, buffer, length
    for s in r.segments:
        buf = uptr + s.buffer_offset
        found = files.host_file_of_pa(s.user_va)
        if found is not None:
            in_files.append((found[0], found[1], buf, s.length))
        elif r.write:
            copies.append((s.user_va, buf, s.length))
        else:
            copies.append((buf, s.user_va, s.length))
    if not in_files:
        return Reply(0, copies=copies)
    if r.write:
        given = yield [Mem(buf, n) for _, _, buf, n in in_files]
        if any(data is None for data in given):
            raise efault("the buffer")
        for (file, offset, _, _), data in zip(in_files, given, strict=True):
            file.write(offset, data)
        return Reply(0, copies=copies)
    return Reply(0, writes=[(buf, file.read(offset, n)) for file, offset, buf, n in in_files],
                 copies=copies)


def _t_memory_limit(x: Ioctl, obj_id: int) -> Reply:
    """SET_TEMP_MEMORY_LIMIT (iommufd_test)."""
    (limit,) = S_U32.unpack_from(x.image, TEST_UNION)
    x.call("TestSetTempMemoryLimit", pb.TestSetTempMemoryLimitRequest(iommufd=x.fd,
                                                                      limit=limit))
    return DONE


def _t_access_replace_ioas(x: Ioctl, obj_id: int) -> Flow:
    """ACCESS_REPLACE_IOAS (iommufd_test_access_replace_ioas)."""
    (ioas_id,) = S_U32.unpack_from(x.image, TEST_UNION)
    access_fd = yield from _t_access_fd(x, obj_id)
    x.call("TestAccessReplaceIoas", pb.TestAccessReplaceIoasRequest(
        iommufd=x.fd, access_fd=access_fd, ioas_id=ioas_id))
    return DONE


def _t_dirty(x: Ioctl, obj_id: int) -> Flow:
    """DIRTY (iommufd_test_dirty): the bitmap, one bit per page_size unit,
    is read before the handler once the arguments make sense (the kernel
    reads it after the HWPT lookup); out_nr_dirty comes back."""
    flags, iova, length, page_size, uptr, _ = S_T_DIRTY.unpack_from(x.image, TEST_UNION)
    bitmap = b""
    if page_size and length and uptr and not iova % page_size and not length % page_size:
        if length // page_size > DIRTY_MAX_BITS:
            # iommufd_test_dirty: past its 16 MiB bitmap, before the HWPT lookup.
            raise IommuError(E.EOVERFLOW, f"DIRTY over {length // page_size:#x} pages is more "
                             f"than its bitmap holds.")
        nbytes = -(-(length // page_size) // 8)
        x.need_bytes(nbytes, "IOMMU_TEST_OP_DIRTY")
        (data,) = yield [Mem(uptr, nbytes)]
        if data is None:
            raise efault("the dirty bitmap")
        bitmap = data
    r = x.call("TestDirty", pb.TestDirtyRequest(
        iommufd=x.fd, hwpt_id=obj_id, flags=flags, iova=iova, length=length,
        page_size=page_size, bitmap=bitmap))
    return _t_respond(x, TEST_UNION + 40, S_U64.pack(r.out_nr_dirty))


def _t_dev_check_cache(x: Ioctl, obj_id: int) -> Reply:
    """DEV_CHECK_CACHE (iommufd_test_dev_check_cache)."""
    cache_id, cache = S_T_TWO.unpack_from(x.image, TEST_UNION)
    x.call("TestDevCheckCache", pb.TestDevCheckCacheRequest(iommufd=x.fd, dev_id=obj_id,
                                                            cache_id=cache_id, cache=cache))
    return DONE


def _t_pasid_attach(x: Ioctl, obj_id: int) -> Reply:
    """PASID_ATTACH (iommufd_test_pasid_attach): pt_id comes back."""
    pasid, pt_id = S_T_TWO.unpack_from(x.image, TEST_UNION)
    r = x.call("TestPasidAttach", pb.TestPasidAttachRequest(iommufd=x.fd, stdev_id=obj_id,
                                                            pasid=pasid, pt_id=pt_id))
    return _t_respond(x, TEST_UNION + 4, S_U32.pack(r.pt_id))


def _t_pasid_replace(x: Ioctl, obj_id: int) -> Reply:
    """PASID_REPLACE (iommufd_test_pasid_replace): pt_id comes back."""
    pasid, pt_id = S_T_TWO.unpack_from(x.image, TEST_UNION)
    r = x.call("TestPasidReplace", pb.TestPasidReplaceRequest(iommufd=x.fd, stdev_id=obj_id,
                                                              pasid=pasid, pt_id=pt_id))
    return _t_respond(x, TEST_UNION + 4, S_U32.pack(r.pt_id))


def _t_pasid_detach(x: Ioctl, obj_id: int) -> Reply:
    """PASID_DETACH (iommufd_test_pasid_detach)."""
    (pasid,) = S_U32.unpack_from(x.image, TEST_UNION)
    x.call("TestPasidDetach", pb.TestPasidDetachRequest(iommufd=x.fd, stdev_id=obj_id,
                                                        pasid=pasid))
    return DONE


def _t_pasid_check_hwpt(x: Ioctl, obj_id: int) -> Reply:
    """PASID_CHECK_HWPT (iommufd_test_pasid_check_hwpt)."""
    pasid, hwpt_id = S_T_TWO.unpack_from(x.image, TEST_UNION)
    x.call("TestPasidCheckHwpt", pb.TestPasidCheckHwptRequest(
        iommufd=x.fd, stdev_id=obj_id, pasid=pasid, hwpt_id=hwpt_id))
    return DONE


def _t_check_iotlb(x: Ioctl, obj_id: int) -> Reply:
    """MD_CHECK_IOTLB (iommufd_test_md_check_iotlb): {u32 id, u32 iotlb}."""
    iotlb_id, iotlb = S_T_TWO.unpack_from(x.image, TEST_UNION)
    x.call("TestMdCheckIotlb", pb.TestMdCheckIotlbRequest(iommufd=x.fd, hwpt_id=obj_id,
                                                          iotlb_id=iotlb_id, iotlb=iotlb))
    return DONE


def _t_trigger_vevent(x: Ioctl, obj_id: int) -> Reply:
    """TRIGGER_VEVENT (iommufd_test_trigger_vevent): {u32 dev_id}; `id` is not read."""
    (dev_id,) = S_U32.unpack_from(x.image, TEST_UNION)
    x.call("TestTriggerVevent", pb.TestTriggerVeventRequest(iommufd=x.fd, dev_id=dev_id))
    return DONE


def _t_dmabuf_get(x: Ioctl, obj_id: int) -> Reply:
    """DMABUF_GET (iommufd_test_dmabuf_get): {u32 length, u32 open_flags};
    the new dma-buf's fd is the ioctl's result, with its
    O_CLOEXEC (the selftest reads the result as the fd; 7.3.4's handler
    installs the fd and returns 0, losing it: iommud returns it)."""
    length, open_flags = S_T_DMABUF_GET.unpack_from(x.image, TEST_UNION)
    r = x.call("TestDmabufGet", pb.TestDmabufGetRequest(iommufd=x.fd, length=length,
                                                        open_flags=open_flags))
    return Reply(0, None, NewFile(FileKind.DMABUF, r.fd, 0, result=True,
                                  cloexec=bool(open_flags & O_CLOEXEC)))


def _t_dmabuf_revoke(x: Ioctl, obj_id: int) -> Flow:
    """DMABUF_REVOKE (iommufd_test_dmabuf_revoke): {s32 dmabuf_fd, u32
    revoked}; the fd is the caller's (NEED FD): a real fd is no dma-buf the
    test exported (EINVAL, as dma_buf_get answers a file of another kind)."""
    dmabuf_fd, revoked = S_T_DMABUF_REVOKE.unpack_from(x.image, TEST_UNION)
    number = FD_MAX
    if dmabuf_fd >= 0:
        (given,) = yield [FdArg(dmabuf_fd)]
        number, real = _fd_number(given, x.resolve)
        if real:
            raise IommuError(E.EINVAL, f"fd {dmabuf_fd} is no dma-buf.")
    x.call("TestDmabufRevoke", pb.TestDmabufRevokeRequest(iommufd=x.fd, dmabuf_fd=number,
                                                          revoked=bool(revoked)))
    return DONE


def _t_trigger_iopf(x: Ioctl, obj_id: int) -> Reply:
    """TRIGGER_IOPF (iommufd_test_trigger_iopf): {u32 dev_id, u32 pasid,
    u32 grpid, u32 perm, u64 addr}; `id` is not read."""
    dev_id, pasid, grpid, perm, addr = S_T_TRIGGER_IOPF.unpack_from(x.image, TEST_UNION)
    x.call("TestTriggerIopf", pb.TestTriggerIopfRequest(
        iommufd=x.fd, dev_id=dev_id, pasid=pasid, grpid=grpid, perm=perm, addr=addr))
    return DONE


#: ACCESS_PAGES and ACCESS_RW refuse lengths above 16 MiB (ENOMEM) and
#: unknown flags (EOPNOTSUPP) before they look at the fd.
ACCESS_PAGES_FLAGS = MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ
ACCESS_RW_FLAGS = MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ
#: DIRTY takes at most a 16 MiB bitmap (EOVERFLOW past it).
DIRTY_MAX_BITS = (16 << 20) * 8

TestCodec = Callable[[Ioctl, int], "Reply | Flow"]

#: The ops of iommufd_test() that iommud models, by op number. The rest
#: are EOPNOTSUPP, iommufd_test()'s answer to an op it does not know, as
#: from a kernel without them.
TEST_OPS: dict[int, tuple[str, TestCodec]] = {
    1: ("ADD_RESERVED", _t_add_reserved),
    2: ("MOCK_DOMAIN", lambda x, i: _t_mock_domain(x, i, False)),
    3: ("MD_CHECK_MAP", _t_check_map),
    4: ("MD_CHECK_REFS", _t_check_refs),
    5: ("CREATE_ACCESS", _t_create_access),
    6: ("DESTROY_ACCESS_PAGES", _t_destroy_access_pages),
    7: ("ACCESS_PAGES", _t_access_pages),
    8: ("ACCESS_RW", _t_access_rw),
    9: ("SET_TEMP_MEMORY_LIMIT", _t_memory_limit),
    10: ("MOCK_DOMAIN_REPLACE", _t_mock_domain_replace),
    11: ("ACCESS_REPLACE_IOAS", _t_access_replace_ioas),
    12: ("MOCK_DOMAIN_FLAGS", lambda x, i: _t_mock_domain(x, i, True)),
    13: ("DIRTY", _t_dirty),
    16: ("DEV_CHECK_CACHE", _t_dev_check_cache),
    18: ("PASID_ATTACH", _t_pasid_attach),
    19: ("PASID_REPLACE", _t_pasid_replace),
    20: ("PASID_DETACH", _t_pasid_detach),
    21: ("PASID_CHECK_HWPT", _t_pasid_check_hwpt),
    14: ("MD_CHECK_IOTLB", _t_check_iotlb),
    17: ("TRIGGER_VEVENT", _t_trigger_vevent),
    15: ("TRIGGER_IOPF", _t_trigger_iopf),
    22: ("DMABUF_GET", _t_dmabuf_get),
    23: ("DMABUF_REVOKE", _t_dmabuf_revoke),
}


def _test_cmd(x: Ioctl) -> Reply | Flow:
    """IOMMU_TEST_CMD (iommufd_test): dispatch on `op`; `__reserved` is not
    checked; an op iommud does not model is EOPNOTSUPP."""
    _, op, obj_id, _ = S_TEST_HEAD.unpack_from(x.image)
    entry = TEST_OPS.get(op)
    if entry is None:
        raise IommuError(E.EOPNOTSUPP, f"IOMMU_TEST_CMD op {op} is not served.")
    return entry[1](x, obj_id)


# -- the tables ----------------------------------------------------------------------------------


def _table(*specs: Spec) -> dict[int, Spec]:
    return {s.cmd: s for s in specs}


A = Arg
_IOMMUFD_TABLE = _table(
    Spec(IOMMU_DESTROY, "IOMMU_DESTROY", A.SIZE, 8, 8, _destroy),
    Spec(IOMMU_IOAS_ALLOC, "IOMMU_IOAS_ALLOC", A.SIZE, 12, 12, _ioas_alloc),
    Spec(IOMMU_IOAS_ALLOW_IOVAS, "IOMMU_IOAS_ALLOW_IOVAS", A.SIZE, 24, 24, _ioas_allow_iovas),
    Spec(IOMMU_IOAS_COPY, "IOMMU_IOAS_COPY", A.SIZE, 40, 40, _ioas_copy),
    Spec(IOMMU_IOAS_IOVA_RANGES, "IOMMU_IOAS_IOVA_RANGES", A.SIZE, 32, 32, _ioas_iova_ranges),
    Spec(IOMMU_IOAS_MAP, "IOMMU_IOAS_MAP", A.SIZE, 40, 40, _ioas_map),
    Spec(IOMMU_IOAS_UNMAP, "IOMMU_IOAS_UNMAP", A.SIZE, 24, 24, _ioas_unmap),
    Spec(IOMMU_OPTION, "IOMMU_OPTION", A.SIZE, 24, 24, _option),
    Spec(IOMMU_VFIO_IOAS, "IOMMU_VFIO_IOAS", A.SIZE, 12, 12, _vfio_ioas),
    Spec(IOMMU_HWPT_ALLOC, "IOMMU_HWPT_ALLOC", A.SIZE, 24, 48, _hwpt_alloc),
    Spec(IOMMU_GET_HW_INFO, "IOMMU_GET_HW_INFO", A.SIZE, 32, 40, _get_hw_info),
    Spec(IOMMU_HWPT_SET_DIRTY_TRACKING, "IOMMU_HWPT_SET_DIRTY_TRACKING", A.SIZE, 16, 16,
         _set_dirty_tracking),
    Spec(IOMMU_HWPT_GET_DIRTY_BITMAP, "IOMMU_HWPT_GET_DIRTY_BITMAP", A.SIZE, 48, 48,
         _get_dirty_bitmap),
    Spec(IOMMU_HWPT_INVALIDATE, "IOMMU_HWPT_INVALIDATE", A.SIZE, 32, 32, _hwpt_invalidate),
    Spec(IOMMU_FAULT_QUEUE_ALLOC, "IOMMU_FAULT_QUEUE_ALLOC", A.SIZE, 16, 16,
         _fault_queue_alloc),
    Spec(IOMMU_IOAS_CHANGE_PROCESS, "IOMMU_IOAS_CHANGE_PROCESS", A.SIZE, 8, 8,
         _ioas_change_process),
    Spec(IOMMU_IOAS_MAP_FILE, "IOMMU_IOAS_MAP_FILE", A.SIZE, 40, 40, _ioas_map_file),
    Spec(IOMMU_VIOMMU_ALLOC, "IOMMU_VIOMMU_ALLOC", A.SIZE, 24, 40, _viommu_alloc),
    Spec(IOMMU_VDEVICE_ALLOC, "IOMMU_VDEVICE_ALLOC", A.SIZE, 24, 24, _vdevice_alloc),
    Spec(IOMMU_VEVENTQ_ALLOC, "IOMMU_VEVENTQ_ALLOC", A.SIZE, 28, 32, _veventq_alloc),
    Spec(IOMMU_HW_QUEUE_ALLOC, "IOMMU_HW_QUEUE_ALLOC", A.SIZE, 40, 40, _hw_queue_alloc),
    Spec(IOMMU_IOAS_NOIOMMU_GET_PA, "IOMMU_IOAS_NOIOMMU_GET_PA", A.SIZE, 40, 40,
         _noiommu_get_pa),
)

#: IOMMU_TEST_CMD, in iommufd_fops_ioctl's table only when the daemon runs
#: with debug_selftest (`lookup`); without it the table ends at 0x95, so the
#: request is ENOTTY before any size rule, as without CONFIG_IOMMUFD_TEST.
TEST_CMD_SPEC = Spec(IOMMU_TEST_CMD, "IOMMU_TEST_CMD", A.SIZE, TEST_CMD_MIN, TEST_CMD_SIZE,
                     _test_cmd)

#: iommufd_vfio_ioctl: the VFIO ioctls an iommufd serves (a compat container too).
_VFIO_ON_IOMMUFD = _table(
    Spec(VFIO_GET_API_VERSION, "VFIO_GET_API_VERSION", A.NONE, 0, 0, _get_api_version),
    Spec(VFIO_CHECK_EXTENSION, "VFIO_CHECK_EXTENSION", A.INT, 0, 0, _check_extension),
    Spec(VFIO_SET_IOMMU, "VFIO_SET_IOMMU", A.INT, 0, 0, _set_iommu),
    Spec(VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO", A.ARGSZ, 16, 24, _iommu_get_info),
    Spec(VFIO_IOMMU_MAP_DMA, "VFIO_IOMMU_MAP_DMA", A.ARGSZ, 32, 32, _map_dma),
    Spec(VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA", A.ARGSZ, 24, 48, _unmap_dma_compat),
)

#: An iommufd: iommufd_fops_ioctl's table, then iommufd_vfio_ioctl's.
IOMMUFD_IOCTLS = {**_IOMMUFD_TABLE, **_VFIO_ON_IOMMUFD}

#: A legacy type1 container (vfio_fops_unl_ioctl, vfio_iommu_type1_ioctl).
TYPE1_CONTAINER_IOCTLS = {
    **_VFIO_ON_IOMMUFD,
    **_table(
        Spec(VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA", A.ARGSZ, 24, 48, _unmap_dma_type1),
        Spec(VFIO_IOMMU_DIRTY_PAGES, "VFIO_IOMMU_DIRTY_PAGES", A.ARGSZ, 8, 48, _dirty_pages,
             check_argsz=False),
    ),
}

#: A VFIO group (vfio_group_fops_unl_ioctl).
GROUP_IOCTLS = _table(
    Spec(VFIO_GROUP_GET_STATUS, "VFIO_GROUP_GET_STATUS", A.ARGSZ, 8, 8, _group_get_status),
    Spec(VFIO_GROUP_SET_CONTAINER, "VFIO_GROUP_SET_CONTAINER", A.FD_PTR, 0, 0,
         _group_set_container),
    Spec(VFIO_GROUP_UNSET_CONTAINER, "VFIO_GROUP_UNSET_CONTAINER", A.NONE, 0, 0,
         _group_unset_container),
    Spec(VFIO_GROUP_GET_DEVICE_FD, "VFIO_GROUP_GET_DEVICE_FD", A.STRING, 0, 0,
         _group_get_device_fd),
)

_BIND = Spec(VFIO_DEVICE_BIND_IOMMUFD, "VFIO_DEVICE_BIND_IOMMUFD", A.SIZE, 16, 24, _bind_iommufd)

#: A bound VFIO device, any fd (vfio_pci_core_ioctl, vfio_get_region_info).
_DEVICE_INFO = _table(
    _BIND,
    Spec(VFIO_DEVICE_GET_INFO, "VFIO_DEVICE_GET_INFO", A.ARGSZ, 16, 24, _device_get_info),
    Spec(VFIO_DEVICE_GET_REGION_INFO, "VFIO_DEVICE_GET_REGION_INFO", A.ARGSZ, 32, 32,
         _device_get_region_info),
    Spec(VFIO_DEVICE_GET_IRQ_INFO, "VFIO_DEVICE_GET_IRQ_INFO", A.ARGSZ, 16, 16,
         _device_get_irq_info),
)

#: A bound device cdev adds ATTACH and DETACH (vfio_device_fops_unl_ioctl).
CDEV_IOCTLS = {
    **_DEVICE_INFO,
    **_table(
        Spec(VFIO_DEVICE_ATTACH_IOMMUFD_PT, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", A.ARGSZ, 12, 16,
             _attach_pt),
        Spec(VFIO_DEVICE_DETACH_IOMMUFD_PT, "VFIO_DEVICE_DETACH_IOMMUFD_PT", A.ARGSZ, 8, 12,
             _detach_pt),
    ),
}

#: A device fd from a group: no ATTACH/DETACH (cdev only), BIND is EINVAL.
GROUP_DEVICE_IOCTLS = _DEVICE_INFO


def lookup(kind: FileKind, target: Any, cmd: int, selftest: bool = False) -> Spec | int:
    """The spec of `cmd` on a file of `kind`, or the errno the kernel answers
    an ioctl the file does not serve: dispatch is on the file first, then the
    request value, which must match exactly. `selftest`: the daemon runs with
    debug_selftest, so an iommufd serves IOMMU_TEST_CMD."""
    if kind is FileKind.IOMMU:
        if cmd == IOMMU_TEST_CMD and selftest:
            return TEST_CMD_SPEC
        return IOMMUFD_IOCTLS.get(cmd) or E.ENOTTY
    if kind is FileKind.CONTAINER:
        ctx: IommufdContext = target
        cont = ctx.container
        if cont is None or not isinstance(cont.backend, vfio_type1.Type1):
            if cmd == IOMMU_TEST_CMD and selftest:
                return TEST_CMD_SPEC
            return IOMMUFD_IOCTLS.get(cmd) or E.ENOTTY  # an iommufd (vfio_compat.c)
        spec = TYPE1_CONTAINER_IOCTLS.get(cmd)
        if spec is not None:
            return spec
        # vfio_fops_unl_ioctl: without an IOMMU driver every other ioctl is
        # EINVAL; with one, type1 answers ENOTTY.
        return E.ENOTTY if cont.backend.ready() else E.EINVAL
    if kind is FileKind.GROUP:
        return GROUP_IOCTLS.get(cmd) or E.ENOTTY
    if kind is FileKind.DEVICE:
        devfd: DeviceFd = target
        if cmd == VFIO_DEVICE_BIND_IOMMUFD:
            return _BIND
        # vfio_device_fops_unl_ioctl: an unbound cdev answers EINVAL to all
        # but BIND; vfio_pci_core_ioctl answers ENOTTY to what it lacks.
        if devfd.bound is None:
            return E.EINVAL
        return CDEV_IOCTLS.get(cmd) or E.ENOTTY
    if kind is FileKind.GROUP_DEVICE:
        return GROUP_DEVICE_IOCTLS.get(cmd) or E.ENOTTY
    return E.ENOTTY  # a fault queue or vEVENTQ fd has no ioctls
