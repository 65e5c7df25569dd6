/* SPDX-License-Identifier: Apache-2.0
 *
 * shim_bench: the C side of bench/shim_bench.py.
 *
 *   shim_bench loop              (run under iommud-preload) reads commands on stdin,
 *                                one a line, and answers each with "OPS SECONDS":
 *     map_unmap SECS             IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of one FIXED_IOVA page at
 *                                a fresh IOVA, serially (OPS counts ioctls, two a pair)
 *     iova_ranges SECS           IOMMU_IOAS_IOVA_RANGES with room for 4 ranges
 *     api_version SECS           VFIO_GET_API_VERSION on the iommufd (no struct)
 *     echo PATH SECS             a record of IOAS_MAP's size (header, size word, struct)
 *                                sent to a SEQPACKET echo server and received back
 *   shim_bench serve-echo PATH   a blocking C SEQPACKET echo server: one connection at a
 *                                time, every record returned as it came; prints "ready"
 *                                once listening
 *
 * Every ioctl is checked; a failure prints "FAIL what errno-name" and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "iommud_uapi.h"

#define PAGE 4096u
#define BATCH 64
#define RECORD 92 /* the transport's 48-byte header, the size word, IOAS_MAP's 40 bytes */

static void fail(const char *what)
{
	int e = errno;
	printf("FAIL %s %s\n", what, strerrorname_np(e) ? strerrorname_np(e) : "?");
	fflush(stdout);
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int iommufd = -1;
static uint32_t ioas_id;
static uint8_t *guest; /* the memory the maps name */
static uint64_t next_iova = 1ull << 32;

static void setup_iommufd(void)
{
	struct uapi_ioas_alloc alloc = { .size = sizeof(alloc) };

	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0)
		fail("open /dev/iommu");
	if (ioctl(iommufd, UAPI_IOMMU_IOAS_ALLOC, &alloc))
		fail("IOMMU_IOAS_ALLOC");
	ioas_id = alloc.out_ioas_id;
	guest = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guest == MAP_FAILED)
		fail("mmap");
}

static long map_unmap(void)
{
	struct uapi_ioas_map map = {
		.size = sizeof(map),
		.flags = UAPI_MAP_FIXED_IOVA | UAPI_MAP_READABLE | UAPI_MAP_WRITEABLE,
		.ioas_id = ioas_id,
		.user_va = (uintptr_t)guest,
		.length = PAGE,
		.iova = next_iova,
	};
	struct uapi_ioas_unmap unmap = {
		.size = sizeof(unmap), .ioas_id = ioas_id, .iova = next_iova, .length = PAGE,
	};

	next_iova += 2 * PAGE;
	if (ioctl(iommufd, UAPI_IOMMU_IOAS_MAP, &map))
		fail("IOMMU_IOAS_MAP");
	if (ioctl(iommufd, UAPI_IOMMU_IOAS_UNMAP, &unmap))
		fail("IOMMU_IOAS_UNMAP");
	if (unmap.length != PAGE) {
		errno = 0;
		fail("IOMMU_IOAS_UNMAP length");
	}
	return 2;
}

static long iova_ranges(void)
{
	uint64_t ranges[4][2];
	struct uapi_iova_ranges r = {
		.size = sizeof(r), .ioas_id = ioas_id, .num_iovas = 4, .allowed_iovas = (uintptr_t)ranges,
	};

	if (ioctl(iommufd, UAPI_IOMMU_IOAS_IOVA_RANGES, &r))
		fail("IOMMU_IOAS_IOVA_RANGES");
	if (r.num_iovas == 0 || r.out_iova_alignment == 0) {
		errno = 0;
		fail("IOMMU_IOAS_IOVA_RANGES answer");
	}
	return 1;
}

static long api_version(void)
{
	if (ioctl(iommufd, UAPI_VFIO_GET_API_VERSION) != UAPI_VFIO_API_VERSION)
		fail("VFIO_GET_API_VERSION");
	return 1;
}

static int echo_sock = -1;
static char echo_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static int connect_seqpacket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (s < 0)
		fail("socket");
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		fail("connect");
	}
	memcpy(sa.sun_path, path, strlen(path));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		fail("connect");
	return s;
}

static long echo_once(void)
{
	static uint8_t out[RECORD] = { 0x49, 0x55, 0x41, 0x31 }, in[4096];

	if (send(echo_sock, out, sizeof(out), MSG_NOSIGNAL) != (ssize_t)sizeof(out))
		fail("echo send");
	if (recv(echo_sock, in, sizeof(in), 0) != (ssize_t)sizeof(out))
		fail("echo recv");
	return 1;
}

static void run(long (*op)(void), double seconds)
{
	double start = now(), deadline = start + seconds, t;
	long ops = 0;

	do {
		for (int i = 0; i < BATCH; i++)
			ops += op();
	} while ((t = now()) < deadline);
	printf("%ld %.9f\n", ops, t - start);
	fflush(stdout);
}

static int loop(void)
{
	char line[512], path[sizeof(echo_path)];
	double seconds;

	setup_iommufd();
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		if (sscanf(line, "map_unmap %lf", &seconds) == 1) {
			run(map_unmap, seconds);
		} else if (sscanf(line, "iova_ranges %lf", &seconds) == 1) {
			run(iova_ranges, seconds);
		} else if (sscanf(line, "api_version %lf", &seconds) == 1) {
			run(api_version, seconds);
		} else if (sscanf(line, "echo %107s %lf", path, &seconds) == 2) {
			if (echo_sock < 0 || strcmp(path, echo_path)) {
				if (echo_sock >= 0)
					close(echo_sock);
				echo_sock = connect_seqpacket(path);
				memcpy(echo_path, path, sizeof(echo_path));
			}
			run(echo_once, seconds);
		} else {
			errno = EINVAL;
			fail(line);
		}
	}
	return 0;
}

static __attribute__((noreturn)) void serve_echo(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint8_t buf[65536];
	int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (l < 0)
		fail("socket");
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		fail("bind");
	}
	memcpy(sa.sun_path, path, strlen(path));
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 16))
		fail("bind");
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		ssize_t n;

		if (c < 0)
			fail("accept");
		while ((n = recv(c, buf, sizeof(buf), 0)) > 0)
			if (send(c, buf, (size_t)n, MSG_NOSIGNAL) != n)
				break;
		close(c);
	}
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "loop"))
		return loop();
	if (argc == 3 && !strcmp(argv[1], "serve-echo"))
		serve_echo(argv[2]);
	fprintf(stderr, "usage: shim_bench loop | shim_bench serve-echo PATH\n");
	return 2;
}
