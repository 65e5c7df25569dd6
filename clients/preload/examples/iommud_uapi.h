/* SPDX-License-Identifier: Apache-2.0
 *
 * The few iommufd and VFIO uAPI numbers and layouts that the examples and
 * tests use, written down from the documented ABI (ioctl numbers are
 * _IO(';', nr); every struct starts with its u32 size or argsz). Debian 12's
 * linux-libc-dev has no <linux/iommufd.h>, and iommud copies no kernel
 * header, so the names here are our own (uapi_*), not the kernel's.
 */
#ifndef IOMMUD_UAPI_H
#define IOMMUD_UAPI_H

#include <stdint.h>
#include <sys/ioctl.h>

#define UAPI_IOCTL(nr) _IO(';', (nr))

/* /dev/iommu */
#define UAPI_IOMMU_DESTROY UAPI_IOCTL(0x80)
#define UAPI_IOMMU_IOAS_ALLOC UAPI_IOCTL(0x81)
#define UAPI_IOMMU_IOAS_ALLOW_IOVAS UAPI_IOCTL(0x82)
#define UAPI_IOMMU_IOAS_IOVA_RANGES UAPI_IOCTL(0x84)
#define UAPI_IOMMU_IOAS_MAP UAPI_IOCTL(0x85)
#define UAPI_IOMMU_IOAS_UNMAP UAPI_IOCTL(0x86)
#define UAPI_IOMMU_HWPT_ALLOC UAPI_IOCTL(0x89)
#define UAPI_IOMMU_HWPT_SET_DIRTY_TRACKING UAPI_IOCTL(0x8b)
#define UAPI_IOMMU_HWPT_GET_DIRTY_BITMAP UAPI_IOCTL(0x8c)
#define UAPI_IOMMU_FAULT_QUEUE_ALLOC UAPI_IOCTL(0x8e)

struct uapi_destroy {
	uint32_t size;
	uint32_t id;
};

struct uapi_ioas_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_ioas_id;
};

/* The ranges are struct { u64 start; u64 last; } (last inclusive). */
struct uapi_allow_iovas {
	uint32_t size;
	uint32_t ioas_id;
	uint32_t num_iovas;
	uint32_t reserved;
	uint64_t allowed_iovas; /* user pointer to num_iovas ranges */
};

struct uapi_iova_ranges {
	uint32_t size;
	uint32_t ioas_id;
	uint32_t num_iovas; /* in: room in the array; out: how many there are */
	uint32_t reserved;
	uint64_t allowed_iovas; /* user pointer to the array */
	uint64_t out_iova_alignment;
};

#define UAPI_MAP_FIXED_IOVA (1u << 0)
#define UAPI_MAP_WRITEABLE (1u << 1)
#define UAPI_MAP_READABLE (1u << 2)

struct uapi_ioas_map {
	uint32_t size;
	uint32_t flags;
	uint32_t ioas_id;
	uint32_t reserved;
	uint64_t user_va;
	uint64_t length;
	uint64_t iova;
};

struct uapi_ioas_unmap {
	uint32_t size;
	uint32_t ioas_id;
	uint64_t iova;
	uint64_t length; /* in: the range; out: how much was unmapped */
};

#define UAPI_HWPT_ALLOC_DIRTY_TRACKING (1u << 1)

struct uapi_hwpt_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pt_id;
	uint32_t out_hwpt_id;
	uint32_t reserved;
	uint32_t data_type;
	uint32_t data_len;
	uint64_t data_uptr;
	uint32_t fault_id;
	uint32_t reserved2;
};

#define UAPI_DIRTY_TRACKING_ENABLE 1u

struct uapi_set_dirty_tracking {
	uint32_t size;
	uint32_t flags;
	uint32_t hwpt_id;
	uint32_t reserved;
};

/* One bit per page_size page of [iova, iova + length), set where dirty. */
struct uapi_get_dirty_bitmap {
	uint32_t size;
	uint32_t hwpt_id;
	uint32_t flags;
	uint32_t reserved;
	uint64_t iova;
	uint64_t length;
	uint64_t page_size;
	uint64_t data; /* user pointer to the bitmap */
};

struct uapi_fault_queue_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_fault_id;
	uint32_t out_fault_fd;
};

/* VFIO: container, group and device fds */
#define UAPI_VFIO_API_VERSION 0
#define UAPI_VFIO_TYPE1_IOMMU 1
#define UAPI_VFIO_TYPE1v2_IOMMU 3

#define UAPI_VFIO_GET_API_VERSION UAPI_IOCTL(100)
#define UAPI_VFIO_CHECK_EXTENSION UAPI_IOCTL(101) /* integer argument */
#define UAPI_VFIO_SET_IOMMU UAPI_IOCTL(102)       /* integer argument */
#define UAPI_VFIO_GROUP_GET_STATUS UAPI_IOCTL(103)
#define UAPI_VFIO_GROUP_SET_CONTAINER UAPI_IOCTL(104) /* pointer to an int fd */
#define UAPI_VFIO_GROUP_UNSET_CONTAINER UAPI_IOCTL(105)
#define UAPI_VFIO_GROUP_GET_DEVICE_FD UAPI_IOCTL(106) /* pointer to a name; returns an fd */
#define UAPI_VFIO_DEVICE_GET_INFO UAPI_IOCTL(107)
#define UAPI_VFIO_IOMMU_MAP_DMA UAPI_IOCTL(113)
#define UAPI_VFIO_IOMMU_UNMAP_DMA UAPI_IOCTL(114)
#define UAPI_VFIO_DEVICE_BIND_IOMMUFD UAPI_IOCTL(118)
#define UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT UAPI_IOCTL(119)
#define UAPI_VFIO_DEVICE_DETACH_IOMMUFD_PT UAPI_IOCTL(120)

#define UAPI_GROUP_VIABLE (1u << 0)
#define UAPI_GROUP_CONTAINER_SET (1u << 1)

struct uapi_group_status {
	uint32_t argsz;
	uint32_t flags;
};

struct uapi_device_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t num_regions;
	uint32_t num_irqs;
	uint32_t cap_offset;
	uint32_t pad;
};

#define UAPI_DMA_MAP_READ (1u << 0)
#define UAPI_DMA_MAP_WRITE (1u << 1)

struct uapi_dma_map {
	uint32_t argsz;
	uint32_t flags;
	uint64_t vaddr;
	uint64_t iova;
	uint64_t size;
};

struct uapi_dma_unmap {
	uint32_t argsz;
	uint32_t flags;
	uint64_t iova;
	uint64_t size; /* in: the range; out: how much was unmapped */
};

struct uapi_bind_iommufd {
	uint32_t argsz;
	uint32_t flags;
	int32_t iommufd;
	uint32_t out_devid;
};

struct uapi_attach_pt {
	uint32_t argsz;
	uint32_t flags;
	uint32_t pt_id;
};

struct uapi_detach_pt {
	uint32_t argsz;
	uint32_t flags;
};

#endif
