/* SPDX-License-Identifier: Apache-2.0
 *
 * selftest_probe: what the upstream iommufd selftest asks of the preload shim
 * beyond plain ioctls, in small scenarios for tests/test_preload.py, run under
 * iommud-preload against a daemon with debug_selftest. Each step prints one
 * line, "STEP RESULT ERRNO" (ERRNO the errno's name when RESULT is -1, else
 * "-"). `selftest_probe SCENARIO`; see main().
 *
 * struct iommu_test_cmd is written here from its facts (size 72, the op's
 * union at offset 16, `last` at 64); nothing of the kernel's header is used.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "iommud_uapi.h"

#define TEST_CMD UAPI_IOCTL(0xa0)
enum { OP_MOCK_DOMAIN = 2, OP_MD_CHECK_MAP = 3, OP_MD_CHECK_REFS = 4, OP_CREATE_ACCESS = 5,
       OP_ACCESS_RW = 8, OP_REPLACE_PT = 10 /* MOCK_DOMAIN_REPLACE */, OP_TRIGGER_IOPF = 15 };
#define IOAS_MAP_FILE UAPI_IOCTL(0x8f)
#define IOAS_CHANGE_PROCESS UAPI_IOCTL(0x92)

/* struct iommu_ioas_map_file, from its facts: 40 bytes. */
struct map_file {
	uint32_t size, flags, ioas_id;
	int32_t fd;
	uint64_t start, length, iova;
};
#define ACCESS_RW_WRITE 1u
#define APERTURE (1ull << 24) /* MOCK_APERTURE_START */

struct test_cmd {
	uint32_t size, op, id, reserved;
	union {
		struct {
			uint32_t out_stdev_id, out_hwpt_id, out_idev_id;
		} mock_domain;
		struct {
			uint32_t out_access_fd, flags;
		} create_access;
		struct {
			uint64_t iova, length, uptr;
			uint32_t flags;
		} access_rw;
		struct {
			uint64_t iova, length, uptr;
		} check_map;
		struct {
			uint32_t pt_id;
		} replace;
		struct {
			uint32_t dev_id, pasid, grpid, perm;
			uint64_t addr;
		} trigger_iopf;
		struct {
			uint64_t length, uptr;
			uint32_t refs;
		} check_refs;
		uint8_t raw[48];
	};
	uint32_t last;
	uint32_t pad;
};
_Static_assert(sizeof(struct test_cmd) == 72, "iommu_test_cmd is 72 bytes");

static long step(const char *name, long rc)
{
	int e = errno;
	const char *en = strerrorname_np(e);
	printf("%s %ld %s\n", name, rc, rc == -1 ? (en ? en : "?") : "-");
	fflush(stdout);
	errno = e;
	return rc;
}

static long must(const char *what, long rc)
{
	if (rc < 0) {
		step(what, rc);
		printf("ABORT %s\n", what);
		exit(3);
	}
	return rc;
}

static uint32_t ioas_alloc(int fd)
{
	struct uapi_ioas_alloc a = { .size = sizeof(a) };
	must("ioas_alloc", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, &a));
	return a.out_ioas_id;
}

static long ioas_map(int fd, uint32_t ioas, void *va, uint64_t length, uint64_t iova)
{
	struct uapi_ioas_map m = {
		.size = sizeof(m),
		.flags = UAPI_MAP_FIXED_IOVA | UAPI_MAP_READABLE | UAPI_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)va,
		.length = length,
		.iova = iova,
	};
	return ioctl(fd, UAPI_IOMMU_IOAS_MAP, &m);
}

static void mock_domain(int fd, uint32_t ioas)
{
	struct test_cmd c = { .size = sizeof(c), .op = OP_MOCK_DOMAIN, .id = ioas };
	must("mock_domain", ioctl(fd, TEST_CMD, &c));
}

static long access_rw(int fd, uint32_t access_fd, uint64_t iova, void *buf, uint64_t len,
		      uint32_t flags)
{
	struct test_cmd c = { .size = sizeof(c), .op = OP_ACCESS_RW, .id = access_fd };
	c.access_rw.iova = iova;
	c.access_rw.length = len;
	c.access_rw.uptr = (uintptr_t)buf;
	c.access_rw.flags = flags;
	return ioctl(fd, TEST_CMD, &c);
}

/* CREATE_ACCESS hands over a real fd (a socket, O_CLOEXEC); ACCESS_RW moves
 * bytes between the caller's buffer and the memory behind the IOVA inside
 * this process; the access ops take only that fd; close() releases it. */
static int scenario_access(void)
{
	int fd = (int)must("open", open("/dev/iommu", O_RDWR));
	uint32_t ioas = ioas_alloc(fd);
	mock_domain(fd, ioas);
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *mem = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		must("mmap", -1);
	for (long i = 0; i < 2 * page; i++)
		mem[i] = (uint8_t)i;
	must("map", ioas_map(fd, ioas, mem, 2 * page, APERTURE));

	struct test_cmd c = { .size = sizeof(c), .op = OP_CREATE_ACCESS, .id = ioas };
	c.create_access.out_access_fd = 0xffffffff;
	step("create_access", ioctl(fd, TEST_CMD, &c));
	int afd = (int)c.create_access.out_access_fd;
	struct stat st;
	step("access_fd_is_socket", fstat(afd, &st) == 0 && S_ISSOCK(st.st_mode) ? 0 : -1);
	step("access_fd_cloexec", (fcntl(afd, F_GETFD) & FD_CLOEXEC) ? 0 : -1);
	step("access_fd_not_the_iommufd", afd != fd ? 0 : -1);

	uint8_t buf[64];
	step("rw_read", access_rw(fd, afd, APERTURE + page - 32, buf, 64, 0));
	step("rw_read_bytes", memcmp(buf, mem + page - 32, 64) == 0 ? 0 : -1);
	memset(buf, 0xee, sizeof(buf));
	step("rw_write", access_rw(fd, afd, APERTURE + 8, buf, 64, ACCESS_RW_WRITE));
	step("rw_write_bytes", mem[8] == 0xee && mem[71] == 0xee && mem[72] == 72 ? 0 : -1);
	step("rw_bad_buffer", access_rw(fd, afd, APERTURE, (void *)16, 8, 0));
	step("rw_hole", access_rw(fd, afd, APERTURE + 2 * page, buf, 8, 0));
	step("rw_iommufd_as_access", access_rw(fd, (uint32_t)fd, APERTURE, buf, 8, 0));
	int pipefd[2];
	must("pipe", pipe(pipefd));
	step("rw_real_fd", access_rw(fd, (uint32_t)pipefd[0], APERTURE, buf, 8, 0));
	step("access_fd_ioctl", ioctl(afd, UAPI_IOMMU_IOAS_ALLOC, &(struct uapi_ioas_alloc){ .size = 12 }));
	step("close_access", close(afd));
	step("rw_closed_fd", access_rw(fd, (uint32_t)afd, APERTURE, buf, 8, 0));
	return 0;
}

/* With a domain, IOAS_MAP pins the user pages at once: a hole in the user
 * range is EFAULT, wherever it is. Without one nothing is pinned yet. */
static int scenario_map_hole(void)
{
	int fd = (int)must("open", open("/dev/iommu", O_RDWR));
	uint32_t ioas = ioas_alloc(fd), plain = ioas_alloc(fd);
	mock_domain(fd, ioas);
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *mem = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		must("mmap", -1);
	step("map_whole", ioas_map(fd, ioas, mem, 4 * page, APERTURE));
	must("munmap_tail", munmap(mem + 2 * page, 2 * page));
	step("map_tail_hole", ioas_map(fd, ioas, mem, 4 * page, APERTURE + 8 * page));
	step("map_head_ok", ioas_map(fd, ioas, mem, 2 * page, APERTURE + 8 * page));
	must("munmap_head", munmap(mem, 2 * page));
	step("map_all_hole", ioas_map(fd, ioas, mem, 4 * page, APERTURE + 16 * page));
	step("map_no_domain", ioas_map(fd, plain, mem, 4 * page, APERTURE));
	/* A hole is EFAULT only once the IOVA is placed: an overlap comes first. */
	step("map_hole_overlap", ioas_map(fd, ioas, mem, 4 * page, APERTURE));
	return 0;
}

static long check_map(int fd, uint32_t hwpt, uint64_t iova, void *uptr, uint64_t len)
{
	struct test_cmd c = { .size = sizeof(c), .op = OP_MD_CHECK_MAP, .id = hwpt };
	c.check_map.iova = iova;
	c.check_map.length = len;
	c.check_map.uptr = (uintptr_t)uptr;
	return ioctl(fd, TEST_CMD, &c);
}

static long check_refs(int fd, void *uptr, uint64_t len, uint32_t refs)
{
	struct test_cmd c = { .size = sizeof(c), .op = OP_MD_CHECK_REFS };
	c.check_refs.length = len;
	c.check_refs.uptr = (uintptr_t)uptr;
	c.check_refs.refs = refs;
	return ioctl(fd, TEST_CMD, &c);
}

/* VmPin of /proc/self/status in kB as fopen reads it, or -1. */
static long vm_pinned(const char *tag)
{
	FILE *fp = fopen("/proc/self/status", "re");
	if (!fp)
		return -1;
	char line[128];
	long v = -1;
	while (fgets(line, sizeof(line), fp))
		if (!strncmp(line, tag, strlen(tag)))
			v = strtol(line + strlen(tag), NULL, 10);
	fclose(fp);
	return v;
}

/* IOAS_MAP_FILE of a memfd: the shim passes the memfd (SCM_RIGHTS); the
 * pages behind this process's mmap of it are the file's (the shim tells the
 * daemon from /proc/self/maps); the daemon keeps the file while it is
 * mapped; /proc/self/status shows the pinned page in VmPin (with
 * IOMMUD_PRELOAD_PROC_STATUS=1). */
static int scenario_map_file(void)
{
	int fd = (int)must("open", open("/dev/iommu", O_RDWR));
	uint32_t ioas = ioas_alloc(fd);
	struct test_cmd c = { .size = sizeof(c), .op = OP_MOCK_DOMAIN, .id = ioas };
	must("mock_domain", ioctl(fd, TEST_CMD, &c));
	uint32_t hwpt = c.mock_domain.out_hwpt_id;
	long page = sysconf(_SC_PAGESIZE);
	int mfd = (int)must("memfd", memfd_create("guest", MFD_CLOEXEC));
	must("ftruncate", ftruncate(mfd, 4 * page));
	uint8_t *mem = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	uint8_t *anon = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || anon == MAP_FAILED)
		must("mmap", -1);
	long before = vm_pinned("VmPin:");
	struct map_file m = { .size = sizeof(m), .flags = UAPI_MAP_READABLE | UAPI_MAP_WRITEABLE,
			      .ioas_id = ioas, .fd = mfd, .start = page, .length = 2 * page };
	step("map_file", ioctl(fd, IOAS_MAP_FILE, &m));
	step("iova_in_aperture", m.iova >= APERTURE ? 0 : -1);
	step("close_memfd", close(mfd));
	step("check_map_mmap", check_map(fd, hwpt, m.iova, mem + page, 2 * page));
	step("check_map_other_pages", check_map(fd, hwpt, m.iova, mem, 2 * page));
	step("check_map_anon", check_map(fd, hwpt, m.iova, anon + page, 2 * page));
	step("check_refs_pinned", check_refs(fd, mem + page, 2 * page, 1));
	step("check_refs_unpinned", check_refs(fd, mem, page, 0));
	step("vm_pin_added_kb", vm_pinned("VmPin:") - before);
	step("change_process", ioctl(fd, IOAS_CHANGE_PROCESS, &(uint32_t[2]){ 8, 0 }));
	struct map_file bad = m;
	bad.fd = 0x7ffff;
	step("map_file_ebadf", ioctl(fd, IOAS_MAP_FILE, &bad));
	bad.fd = fd;
	step("map_file_iommufd", ioctl(fd, IOAS_MAP_FILE, &bad));
	struct uapi_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = m.iova,
				     .length = 2 * page };
	step("unmap", ioctl(fd, UAPI_IOMMU_IOAS_UNMAP, &u));
	step("check_refs_after", check_refs(fd, mem, 4 * page, 0));
	step("vm_pin_after_kb", vm_pinned("VmPin:") - before);
	return 0;
}

/* An IO page fault through the shim's fault fd: TRIGGER_IOPF of a mock
 * device attached to a fault-capable HWPT makes the fd readable (poll), a
 * read takes the 40-byte record, a write of its cookie answers it, and the
 * fd is empty (poll) again. */
static int scenario_iopf(void)
{
	int fd = (int)must("open", open("/dev/iommu", O_RDWR));
	uint32_t ioas = ioas_alloc(fd);
	struct test_cmd c = { .size = sizeof(c), .op = OP_MOCK_DOMAIN, .id = ioas };
	must("mock_domain", ioctl(fd, TEST_CMD, &c));
	uint32_t stdev = c.mock_domain.out_stdev_id, idev = c.mock_domain.out_idev_id;
	struct uapi_fault_queue_alloc q = { .size = sizeof(q) };
	must("fault_queue_alloc", ioctl(fd, UAPI_IOMMU_FAULT_QUEUE_ALLOC, &q));
	int ffd = (int)q.out_fault_fd;
	struct uapi_hwpt_alloc h = { .size = sizeof(h), .flags = 1u << 2 /* FAULT_ID_VALID */,
				     .dev_id = idev, .pt_id = ioas, .fault_id = q.out_fault_id };
	must("hwpt_alloc", ioctl(fd, UAPI_IOMMU_HWPT_ALLOC, &h));
	struct test_cmd r = { .size = sizeof(r), .op = OP_REPLACE_PT, .id = stdev };
	r.replace.pt_id = h.out_hwpt_id;
	must("replace", ioctl(fd, TEST_CMD, &r));

	struct pollfd pf = { .fd = ffd, .events = POLLIN };
	step("poll_before", poll(&pf, 1, 0));
	struct test_cmd t = { .size = sizeof(t), .op = OP_TRIGGER_IOPF };
	t.trigger_iopf.dev_id = idev;
	t.trigger_iopf.grpid = 2;
	t.trigger_iopf.perm = 1;
	t.trigger_iopf.addr = 0xdeadbeaf;
	step("trigger_iopf", ioctl(fd, TEST_CMD, &t));
	step("poll_readable", poll(&pf, 1, 0));
	uint32_t rec[10];
	step("read_short", read(ffd, rec, 39));
	step("read", read(ffd, rec, sizeof(rec)));
	step("record_dev_id", rec[1] == idev ? 0 : -1);
	step("record_addr", ((uint64_t)rec[7] << 32 | rec[6]) == 0xdeadbeaf ? 0 : -1);
	step("poll_after_read", poll(&pf, 1, 0));
	uint32_t resp[2] = { rec[9], 0 };
	step("respond", write(ffd, resp, sizeof(resp)));
	step("respond_again", write(ffd, resp, sizeof(resp)));
	step("read_empty", read(ffd, rec, sizeof(rec)));
	step("close_fault_fd", close(ffd));
	return 0;
}

static long pwrite_str(int fd, const char *s)
{
	return pwrite(fd, s, strlen(s), 0);
}

/* "name N -" with the number fail-nth reads, or the read's failure. */
static void print_fail_nth(const char *name, int fd)
{
	char buf[32] = { 0 };
	long n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0) {
		step(name, n);
		return;
	}
	printf("%s %ld %s\n", name, strtol(buf, NULL, 10), n >= 2 && buf[n - 1] == '\n' ? "-" : "?");
	fflush(stdout);
}

/* The task's fail-nth file, as iommufd_fail_nth uses it (the shim emulates
 * it with IOMMUD_PRELOAD_FAIL_NTH=1), and the stand-in debugfs. */
static int scenario_fail_nth(void)
{
	DIR *dbg = opendir("/sys/kernel//debug/");
	int found = 0;
	for (struct dirent *d; dbg && (d = readdir(dbg));)
		found |= !strcmp(d->d_name, "failslab");
	step("debugfs_failslab", found ? 0 : -1);
	if (dbg)
		closedir(dbg);

	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%ld/fail-nth", (long)syscall(SYS_gettid));
	int nth = (int)must("open_fail_nth", open(path, O_RDWR | O_CLOEXEC));
	print_fail_nth("nth_initial", nth);
	step("write_junk", pwrite_str(nth, "abc"));
	step("write_empty", pwrite(nth, "", 0, 0));
	step("write_negative", pwrite_str(nth, "-1"));
	step("write_huge", pwrite_str(nth, "4294967296"));
	volatile uintptr_t wild = 16; /* never mapped */
	step("read_bad_buffer", pread(nth, (void *)wild, 8, 0));
	step("ioctl_on_fail_nth", ioctl(nth, UAPI_IOMMU_IOAS_ALLOC, &(struct uapi_ioas_alloc){ .size = 12 }));

	int fd = (int)must("open", open("/dev/iommu", O_RDWR));
	step("arm_1", pwrite_str(nth, "1\n"));
	struct uapi_ioas_alloc a = { .size = sizeof(a) };
	step("ioas_alloc_fails", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, &a));
	print_fail_nth("nth_after_injection", nth);
	step("ioas_alloc_disarmed", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, &a));
	step("arm_100", pwrite_str(nth, "100"));
	step("ioas_alloc_counts", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, &a));
	print_fail_nth("nth_left", nth);
	char buf[8];
	step("read_from_position", read(nth, buf, sizeof(buf)));
	step("read_at_end", read(nth, buf, sizeof(buf)));
	step("disarm", pwrite_str(nth, "0"));
	print_fail_nth("nth_disarmed", nth);
	step("ioas_alloc_after", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, &a));
	return 0;
}

/* The vIOMMU objects through the shim (iommufd.h's structs from their facts):
 * mmap() of the iommufd maps exactly the vIOMMU's region, which holds the
 * vIOMMU until munmap(); a vEVENTQ fd's read() follows the kernel's rules and
 * poll() is readable exactly while its queue has records. */
#define VIOMMU_ALLOC UAPI_IOCTL(0x90)
#define VDEVICE_ALLOC UAPI_IOCTL(0x91)
#define VEVENTQ_ALLOC UAPI_IOCTL(0x93)
#define DESTROY UAPI_IOCTL(0x80)
enum { OP_MOCK_DOMAIN_REPLACE = 10, OP_TRIGGER_VEVENT = 17 };
struct viommu_alloc {
	uint32_t size, flags, type, dev_id, hwpt_id, out_viommu_id, data_len, reserved;
	uint64_t data_uptr;
};
struct viommu_selftest {
	uint32_t in_data, out_data;
	uint64_t out_mmap_offset, out_mmap_length;
};
struct vdevice_alloc {
	uint32_t size, viommu_id, dev_id, out_vdevice_id;
	uint64_t virt_id;
};
struct veventq_alloc {
	uint32_t size, flags, viommu_id, type, depth, out_veventq_id, out_veventq_fd, reserved;
};

static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static long destroy(int fd, uint32_t id)
{
	struct uapi_destroy d = { .size = sizeof(d), .id = id };
	return ioctl(fd, DESTROY, &d);
}

static int scenario_viommu(void)
{
	int fd = (int)must("open", open("/dev/iommu", O_RDWR));
	uint32_t ioas = ioas_alloc(fd);
	struct test_cmd md = { .size = sizeof(md), .op = OP_MOCK_DOMAIN, .id = ioas };
	must("mock_domain", ioctl(fd, TEST_CMD, &md));
	struct uapi_hwpt_alloc parent = { .size = sizeof(parent), .flags = 1, /* NEST_PARENT */
					  .dev_id = md.mock_domain.out_idev_id, .pt_id = ioas };
	must("parent", ioctl(fd, UAPI_IOMMU_HWPT_ALLOC, &parent));
	struct viommu_selftest data = { .in_data = 0xbeef };
	struct viommu_alloc va = { .size = sizeof(va), .type = 0xdeadbeef,
				   .dev_id = md.mock_domain.out_idev_id,
				   .hwpt_id = parent.out_hwpt_id, .data_len = sizeof(data),
				   .data_uptr = (uintptr_t)&data };
	must("viommu_alloc", ioctl(fd, VIOMMU_ALLOC, &va));
	step("out_data", data.out_data == 0xbeef ? 0 : -1);
	size_t len = data.out_mmap_length;
	off_t off = (off_t)data.out_mmap_offset;
	step("mmap_other_offset", mmap(NULL, len, PROT_READ, MAP_SHARED, fd, off + (off_t)len) ==
				       MAP_FAILED ? -1 : 0);
	step("mmap_half", mmap(NULL, len / 2, PROT_READ, MAP_SHARED, fd, off) == MAP_FAILED ? -1 : 0);
	step("mmap_private", mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, off) == MAP_FAILED ? -1 : 0);
	step("mmap_exec", mmap(NULL, len, PROT_READ | PROT_EXEC, MAP_SHARED, fd, off) == MAP_FAILED
				  ? -1 : 0);
	uint32_t *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	step("mmap", region == MAP_FAILED ? -1 : 0);
	if (region == MAP_FAILED)
		return 1;
	step("region_word", region[0] == 0xbeef ? 0 : -1);
	step("destroy_mapped", destroy(fd, va.out_viommu_id));
	step("munmap", munmap(region, len));
	step("destroy_unmapped", destroy(fd, va.out_viommu_id));

	/* A vIOMMU without data, its nested HWPT, the device's vDEVICE on it. */
	struct viommu_alloc vb = { .size = sizeof(vb), .type = 0xdeadbeef,
				   .dev_id = md.mock_domain.out_idev_id, .hwpt_id = parent.out_hwpt_id };
	must("viommu_plain", ioctl(fd, VIOMMU_ALLOC, &vb));
	uint32_t iotlb[2] = { 0xbadbeef, 0 };
	struct uapi_hwpt_alloc nested = { .size = sizeof(nested), .dev_id = md.mock_domain.out_idev_id,
					  .pt_id = vb.out_viommu_id, .data_type = 0xdead,
					  .data_len = sizeof(iotlb), .data_uptr = (uintptr_t)iotlb };
	must("nested", ioctl(fd, UAPI_IOMMU_HWPT_ALLOC, &nested));
	struct vdevice_alloc vd = { .size = sizeof(vd), .viommu_id = vb.out_viommu_id,
				    .dev_id = md.mock_domain.out_idev_id, .virt_id = 0x99 };
	must("vdevice", ioctl(fd, VDEVICE_ALLOC, &vd));
	struct test_cmd rp = { .size = sizeof(rp), .op = OP_MOCK_DOMAIN_REPLACE,
			       .id = md.mock_domain.out_stdev_id };
	memcpy(rp.raw, &nested.out_hwpt_id, sizeof(uint32_t)); /* pt_id, at the union's start */
	must("replace", ioctl(fd, TEST_CMD, &rp));
	struct veventq_alloc vq = { .size = sizeof(vq), .viommu_id = vb.out_viommu_id,
				    .type = 0xbeefbeef, .depth = 2, .out_veventq_fd = 0xffffffffu };
	must("veventq", ioctl(fd, VEVENTQ_ALLOC, &vq));
	int q = (int)vq.out_veventq_fd;
	uint8_t buf[64];
	step("read_empty", read(q, buf, sizeof(buf)));
	step("read_short", read(q, buf, 7));
	step("readable_empty", readable(q));
	struct test_cmd tv = { .size = sizeof(tv), .op = OP_TRIGGER_VEVENT };
	memcpy(tv.raw, &md.mock_domain.out_idev_id, sizeof(uint32_t)); /* dev_id */
	step("trigger", ioctl(fd, TEST_CMD, &tv));
	step("readable_one", readable(q));
	step("read_header_only", read(q, buf, 8));
	step("readable_still", readable(q));
	step("read_one", read(q, buf, sizeof(buf)));
	uint32_t rec[3];
	memcpy(rec, buf, sizeof(rec));
	step("record", rec[0] == 0 && rec[1] == 0 && rec[2] == 0x99 ? 0 : -1);
	step("readable_drained", readable(q));
	for (int i = 0; i < 3; i++)
		ioctl(fd, TEST_CMD, &tv); /* depth 2: the third is lost */
	step("read_lost", read(q, buf, sizeof(buf)));
	memcpy(rec, buf + 24, 2 * sizeof(uint32_t));
	step("lost_header", rec[0] == 1 && rec[1] == 3 ? 0 : -1);
	step("ioctl_veventq", ioctl(q, UAPI_IOMMU_IOAS_ALLOC, buf));
	step("pread_veventq", pread(q, buf, sizeof(buf), 0));
	step("destroy_open_veventq", destroy(fd, vq.out_veventq_id));
	step("close_veventq", close(q));
	step("destroy_veventq", destroy(fd, vq.out_veventq_id));
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: selftest_probe access|map_hole|fail_nth|map_file|viommu|iopf\n");
		return 2;
	}
	if (!strcmp(argv[1], "access"))
		return scenario_access();
	if (!strcmp(argv[1], "map_hole"))
		return scenario_map_hole();
	if (!strcmp(argv[1], "fail_nth"))
		return scenario_fail_nth();
	if (!strcmp(argv[1], "map_file"))
		return scenario_map_file();
	if (!strcmp(argv[1], "iopf"))
		return scenario_iopf();
	if (!strcmp(argv[1], "viommu"))
		return scenario_viommu();
	fprintf(stderr, "unknown scenario %s\n", argv[1]);
	return 2;
}
