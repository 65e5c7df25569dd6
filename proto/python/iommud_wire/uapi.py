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
