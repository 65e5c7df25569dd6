/* SPDX-License-Identifier: Apache-2.0
 *
 * seed_flow: the 2021 iommufd design thread's two flows, with raw ioctls, as a
 * VMM would make them. Run it under the preload shim:
 *
 *   gcc -Wall -Wextra -O2 -I clients/preload/examples \
 *       clients/preload/examples/seed_flow.c -o seed_flow
 *   iommud-preload -- ./seed_flow [--device N] [--group G --name BDF] [device|legacy|both]
 *
 * device: open /dev/vfio/devices/vfioN and /dev/iommu, BIND_IOMMUFD,
 *         IOAS_ALLOC, ATTACH_IOMMUFD_PT, IOAS_MAP, IOAS_UNMAP, close.
 * legacy: open the /dev/vfio/vfio container and the /dev/vfio/G group,
 *         GROUP_SET_CONTAINER, SET_IOMMU(type1v2), IOMMU_MAP_DMA,
 *         GROUP_GET_DEVICE_FD, IOMMU_UNMAP_DMA, close.
 *
 * Every call is checked; the first failure prints the errno's name and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "iommud_uapi.h"

#define MAP_LEN (2u << 20)

static const char *step_name;

static long check(long rc, const char *what)
{
	if (rc < 0) {
		int e = errno;
		printf("FAIL %s: %s (%s)\n", what, strerrorname_np(e) ? strerrorname_np(e) : "?", strerror(e));
		fflush(stdout);
		exit(1);
	}
	printf("  %-44s -> %ld\n", what, rc);
	return rc;
}

static void expect(int ok, const char *what)
{
	if (!ok) {
		printf("FAIL %s: %s\n", step_name, what);
		exit(1);
	}
}

static void *buffer(void)
{
	void *p = mmap(NULL, MAP_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		check(-1, "mmap 2 MiB of guest memory");
	memset(p, 0x5a, MAP_LEN);
	return p;
}

static void device_centric(unsigned device)
{
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%u", device);
	printf("device-centric flow on %s\n", path);

	step_name = "open device";
	int devfd = (int)check(open(path, O_RDWR | O_CLOEXEC), path);
	int iommufd = (int)check(open("/dev/iommu", O_RDWR | O_CLOEXEC), "/dev/iommu");

	struct uapi_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	check(ioctl(devfd, UAPI_VFIO_DEVICE_BIND_IOMMUFD, &bind), "VFIO_DEVICE_BIND_IOMMUFD");
	printf("  device id %u\n", bind.out_devid);

	struct uapi_ioas_alloc alloc = { .size = sizeof(alloc) };
	check(ioctl(iommufd, UAPI_IOMMU_IOAS_ALLOC, &alloc), "IOMMU_IOAS_ALLOC");
	printf("  ioas id %u\n", alloc.out_ioas_id);
	step_name = "IOAS_ALLOC";
	expect(alloc.out_ioas_id != 0 && alloc.out_ioas_id != bind.out_devid, "a fresh object id");

	struct uapi_attach_pt attach = { .argsz = sizeof(attach), .pt_id = alloc.out_ioas_id };
	check(ioctl(devfd, UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach), "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	printf("  attached to pt %u\n", attach.pt_id);

	void *mem = buffer();
	struct uapi_ioas_map map = {
		.size = sizeof(map),
		.flags = UAPI_MAP_FIXED_IOVA | UAPI_MAP_READABLE | UAPI_MAP_WRITEABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)mem,
		.length = MAP_LEN,
		.iova = 0x100000,
	};
	check(ioctl(iommufd, UAPI_IOMMU_IOAS_MAP, &map), "IOMMU_IOAS_MAP (fixed IOVA 0x100000)");

	struct uapi_ioas_map auto_map = {
		.size = sizeof(auto_map),
		.flags = UAPI_MAP_READABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)mem,
		.length = 0x10000,
	};
	check(ioctl(iommufd, UAPI_IOMMU_IOAS_MAP, &auto_map), "IOMMU_IOAS_MAP (the daemon picks the IOVA)");
	printf("  allocated iova 0x%llx\n", (unsigned long long)auto_map.iova);
	step_name = "IOAS_MAP";
	expect(auto_map.iova % 0x1000 == 0 &&
		       (auto_map.iova + auto_map.length <= map.iova || auto_map.iova >= map.iova + map.length),
	       "an aligned IOVA outside the fixed mapping");

	struct uapi_ioas_unmap unmap = {
		.size = sizeof(unmap), .ioas_id = alloc.out_ioas_id, .iova = 0x100000, .length = MAP_LEN
	};
	check(ioctl(iommufd, UAPI_IOMMU_IOAS_UNMAP, &unmap), "IOMMU_IOAS_UNMAP (0x100000, 2 MiB)");
	step_name = "IOAS_UNMAP";
	expect(unmap.length == MAP_LEN, "the unmapped length written back");

	struct uapi_ioas_unmap all = {
		.size = sizeof(all), .ioas_id = alloc.out_ioas_id, .iova = 0, .length = UINT64_MAX
	};
	check(ioctl(iommufd, UAPI_IOMMU_IOAS_UNMAP, &all), "IOMMU_IOAS_UNMAP (everything)");
	expect(all.length == 0x10000, "the allocated mapping was the one left");

	check(close(devfd), "close device fd");
	check(close(iommufd), "close iommufd");
	munmap(mem, MAP_LEN);
	printf("device-centric flow: ok\n");
}

static void legacy(unsigned group, const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/%u", group);
	printf("legacy container/group flow on %s, device %s\n", path, name);

	int container = (int)check(open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC), "/dev/vfio/vfio");
	long v = check(ioctl(container, UAPI_VFIO_GET_API_VERSION), "VFIO_GET_API_VERSION");
	step_name = "GET_API_VERSION";
	expect(v == UAPI_VFIO_API_VERSION, "API version 0");
	long ext = check(ioctl(container, UAPI_VFIO_CHECK_EXTENSION, UAPI_VFIO_TYPE1v2_IOMMU),
			 "VFIO_CHECK_EXTENSION(TYPE1v2)");
	step_name = "CHECK_EXTENSION";
	expect(ext == 1, "type1v2 is supported");

	int groupfd = (int)check(open(path, O_RDWR | O_CLOEXEC), path);
	struct uapi_group_status status = { .argsz = sizeof(status) };
	check(ioctl(groupfd, UAPI_VFIO_GROUP_GET_STATUS, &status), "VFIO_GROUP_GET_STATUS");
	step_name = "GROUP_GET_STATUS";
	expect(status.flags & UAPI_GROUP_VIABLE, "the group is viable");
	expect(!(status.flags & UAPI_GROUP_CONTAINER_SET), "no container yet");

	check(ioctl(groupfd, UAPI_VFIO_GROUP_SET_CONTAINER, &container), "VFIO_GROUP_SET_CONTAINER");
	check(ioctl(container, UAPI_VFIO_SET_IOMMU, UAPI_VFIO_TYPE1v2_IOMMU), "VFIO_SET_IOMMU(TYPE1v2)");
	status.flags = 0;
	check(ioctl(groupfd, UAPI_VFIO_GROUP_GET_STATUS, &status), "VFIO_GROUP_GET_STATUS");
	step_name = "GROUP_GET_STATUS after SET_CONTAINER";
	expect(status.flags & UAPI_GROUP_CONTAINER_SET, "the container is set");

	void *mem = buffer();
	struct uapi_dma_map map = {
		.argsz = sizeof(map),
		.flags = UAPI_DMA_MAP_READ | UAPI_DMA_MAP_WRITE,
		.vaddr = (uintptr_t)mem,
		.iova = 0x200000,
		.size = MAP_LEN,
	};
	check(ioctl(container, UAPI_VFIO_IOMMU_MAP_DMA, &map), "VFIO_IOMMU_MAP_DMA (iova 0x200000, 2 MiB)");

	int devfd = (int)check(ioctl(groupfd, UAPI_VFIO_GROUP_GET_DEVICE_FD, name), "VFIO_GROUP_GET_DEVICE_FD");
	step_name = "GROUP_GET_DEVICE_FD";
	expect(devfd > 2 && fcntl(devfd, F_GETFD) == FD_CLOEXEC, "a new fd, close-on-exec");

	struct uapi_dma_unmap unmap = { .argsz = sizeof(unmap), .iova = 0x200000, .size = MAP_LEN };
	check(ioctl(container, UAPI_VFIO_IOMMU_UNMAP_DMA, &unmap), "VFIO_IOMMU_UNMAP_DMA");
	step_name = "UNMAP_DMA";
	expect(unmap.size == MAP_LEN, "the unmapped size written back");

	check(close(devfd), "close device fd");
	check(close(groupfd), "close group fd");
	check(close(container), "close container fd");
	munmap(mem, MAP_LEN);
	printf("legacy flow: ok\n");
}

int main(int argc, char **argv)
{
	unsigned device = 0, group = 14;
	const char *name = "0000:04:10.0", *which = "both";
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--device") && i + 1 < argc)
			device = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--group") && i + 1 < argc)
			group = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--name") && i + 1 < argc)
			name = argv[++i];
		else if (!strcmp(argv[i], "device") || !strcmp(argv[i], "legacy") || !strcmp(argv[i], "both"))
			which = argv[i];
		else {
			fprintf(stderr, "usage: %s [--device N] [--group G --name BDF] [device|legacy|both]\n",
				argv[0]);
			return 2;
		}
	}
	if (strcmp(which, "legacy"))
		device_centric(device);
	if (strcmp(which, "device"))
		legacy(group, name);
	return 0;
}
