"""Kernel uAPI constants carried by iommud requests, one definition each.

Names and values are those of include/uapi/linux/iommufd.h and
include/uapi/linux/vfio.h at the pinned kernel (v7.3); a VMM engineer finds
each name in those headers. tests/test_wire.py checks the ones the proto also
spells as enums against the generated enum values.
"""
from __future__ import annotations

# -- sizes ---------------------------------------------------------------------
#: The CPU page size iommud models (x86-64, arm64 4K kernels).
PAGE_SIZE = 4096
PAGE_MASK = ((1 << 64) - 1) & ~(PAGE_SIZE - 1)
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
INT_MAX = (1 << 31) - 1
#: IOMMU_IOAS_UNMAP with iova 0 and this length unmaps everything.
UNMAP_ALL_LENGTH = U64_MAX

# -- enum iommufd_object_type (the ids iommud reports in ObjectInfo.type) --------
IOMMUFD_OBJ_IOAS = 1
IOMMUFD_OBJ_HWPT_PAGING = 2
IOMMUFD_OBJ_HWPT_NESTED = 3
IOMMUFD_OBJ_DEVICE = 4
IOMMUFD_OBJ_FAULT = 5

# -- IOMMU_IOAS_MAP / IOMMU_IOAS_COPY flags (enum iommufd_ioap_map_flags) ------
IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0
IOMMU_IOAS_MAP_WRITEABLE = 1 << 1
IOMMU_IOAS_MAP_READABLE = 1 << 2

# -- IOMMU_OPTION --------------------------------------------------------------
IOMMU_OPTION_RLIMIT_MODE = 0
IOMMU_OPTION_HUGE_PAGES = 1
IOMMU_OPTION_OP_SET = 0
IOMMU_OPTION_OP_GET = 1

# -- IOMMU_VFIO_IOAS -----------------------------------------------------------
IOMMU_VFIO_IOAS_GET = 0
IOMMU_VFIO_IOAS_SET = 1
IOMMU_VFIO_IOAS_CLEAR = 2

# -- IOMMU_HWPT_ALLOC (enum iommufd_hwpt_alloc_flags, iommu_hwpt_data_type) ----
IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0
IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1
IOMMU_HWPT_FAULT_ID_VALID = 1 << 2
IOMMU_HWPT_ALLOC_PASID = 1 << 3
IOMMU_HWPT_ALLOC_FLAGS = (IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING
                          | IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID)
IOMMU_HWPT_DATA_NONE = 0

# -- dirty tracking ------------------------------------------------------------
IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1 << 0
IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1 << 0

# -- IOMMU_GET_HW_INFO ---------------------------------------------------------
IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0
IOMMU_HW_INFO_TYPE_DEFAULT = 0
IOMMU_HW_INFO_TYPE_NONE = 0
IOMMU_HW_INFO_TYPE_INTEL_VTD = 1
IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0
IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1
IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2

# -- VFIO device cdev (drivers/vfio/device_cdev.c) -----------------------------
VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0
VFIO_DEVICE_ATTACH_PASID = 1 << 0
VFIO_DEVICE_DETACH_PASID = 1 << 0

# -- VFIO container and group (the legacy type1 API) ---------------------------
VFIO_API_VERSION = 0
VFIO_TYPE1_IOMMU = 1
VFIO_SPAPR_TCE_IOMMU = 2
VFIO_TYPE1v2_IOMMU = 3
VFIO_DMA_CC_IOMMU = 4
VFIO_EEH = 5
VFIO_TYPE1_NESTING_IOMMU = 6
VFIO_SPAPR_TCE_v2_IOMMU = 7
VFIO_NOIOMMU_IOMMU = 8
VFIO_UNMAP_ALL = 9
VFIO_UPDATE_VADDR = 10

VFIO_DMA_MAP_FLAG_READ = 1 << 0
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1
VFIO_DMA_MAP_FLAG_VADDR = 1 << 2
VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0
VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1
VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2
VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0
VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1
VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2
VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1
VFIO_IOMMU_INFO_PGSIZES = 1 << 0
VFIO_IOMMU_INFO_CAPS = 1 << 1
VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1
VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2
VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3

# -- object types beyond the proto's first five ----------------------------------
IOMMUFD_OBJ_ACCESS = 6
IOMMUFD_OBJ_SELFTEST = 7

IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3
IOMMU_NO_PASID = 0

# -- the selftest mock driver (drivers/iommu/iommufd/iommufd_test.h, as facts) ---
MOCK_APERTURE_START = 1 << 24
MOCK_APERTURE_LAST = (1 << 31) - 1
MOCK_PAGE_SIZE = 2048
MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE
#: The default mock domain's page sizes: every power of two from 2 KiB to 64 GiB.
MOCK_PGSIZE_BITMAP = ((1 << 37) - 1) & ~(MOCK_PAGE_SIZE - 1)
#: The huge mock domain's: 1 MiB leaves, and PAGE_SIZE for iommufd to accept it.
MOCK_HUGE_PGSIZE_BITMAP = MOCK_HUGE_PAGE_SIZE | PAGE_SIZE
#: The huge mock domain keeps its page table's own aperture (38-bit VA).
MOCK_HUGE_APERTURE_LAST = (1 << 38) - 1
MOCK_IOMMUPT_DEFAULT = 0
MOCK_IOMMUPT_HUGE = 1
MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0
MOCK_FLAGS_DEVICE_PASID = 1 << 2
MOCK_PASID_WIDTH = 20
MOCK_FLAGS_ACCESS_WRITE = 1 << 0
MOCK_FLAGS_ACCESS_SYZ = 1 << 16
MOCK_ACCESS_RW_WRITE = 1 << 0
MOCK_ACCESS_RW_SLOW_PATH = 1 << 2
MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0
#: A PASID whose second non-blocking set fails ENOMEM (the replace-failure quirk).
IOMMU_TEST_PASID_RESERVED = 1024
IOMMU_HW_INFO_TYPE_SELFTEST = 0xFEEDBEEF
IOMMU_HW_INFO_SELFTEST_REGVAL = 0xDEADBEEF
IOMMU_HWPT_DATA_SELFTEST = 0xDEAD
#: A mock device's cache slots (mock_dev_create fills them with the default).
MOCK_DEV_CACHE_ID_MAX = 3
IOMMU_TEST_DEV_CACHE_DEFAULT = 0xBADDAD

# -- nested translation, vIOMMUs, vDEVICEs, vEVENTQs, HW queues (iommufd.h) -----------
IOMMUFD_OBJ_VIOMMU = 8
IOMMUFD_OBJ_VDEVICE = 9
IOMMUFD_OBJ_VEVENTQ = 10
IOMMUFD_OBJ_HW_QUEUE = 11
IOMMU_VIOMMU_TYPE_DEFAULT = 0
IOMMU_VEVENTQ_TYPE_DEFAULT = 0
IOMMU_HW_QUEUE_TYPE_DEFAULT = 0
#: struct iommufd_vevent_header flags: the queue lost vEVENTs (a header with no data).
IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0
#: The deepest vEVENTQ (iommufd_veventq_alloc's VEVENTQ_MAX_DEPTH).
VEVENTQ_MAX_DEPTH = 1 << 19
#: Size of struct iommufd_vevent_header {u32 flags, u32 sequence}.
VEVENT_HEADER_SIZE = 8

# -- the selftest mock's nested domains and vIOMMU (iommufd_test.h, as facts) --------------
#: A mock nested domain's IOTLB slots (iotlb ids 0..3), each set from the
#: HWPT_ALLOC data's `iotlb` and cleared by an invalidation.
MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3
IOMMU_TEST_IOTLB_DEFAULT = 0xBADBEEF
IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xDEADBEEF
IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID = 0xDADBEEF
#: struct iommu_hwpt_invalidate_selftest / iommu_viommu_invalidate_selftest flags.
IOMMU_TEST_INVALIDATE_FLAG_ALL = 1 << 0
IOMMU_VIOMMU_TYPE_SELFTEST = 0xDEADBEEF
IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xDEADBEEF
IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID = 0xDADBEEF
IOMMU_VEVENTQ_TYPE_SELFTEST = 0xBEEFBEEF
IOMMU_HW_QUEUE_TYPE_SELFTEST = 0xDEADBEEF
#: The mock vIOMMU's HW queue indexes: 0 and 1, each needing the one before.
IOMMU_TEST_HW_QUEUE_MAX = 2
