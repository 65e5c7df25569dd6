/* SPDX-License-Identifier: Apache-2.0
 *
 * uapi_probe: small scenarios for tests/test_preload.py, run under
 * iommud-preload. Each step prints one line, "STEP RESULT ERRNO", where
 * ERRNO is the errno's name when RESULT is -1 and "-" otherwise; the test
 * asserts on those. `uapi_probe SCENARIO [ARGS...]`; see main().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "iommud_uapi.h"

static long step(const char *name, long rc)
{
	int e = errno;
	const char *en = strerrorname_np(e);
	printf("%s %ld %s\n", name, rc, rc == -1 ? (en ? en : "?") : "-");
	fflush(stdout);
	errno = e;
	return rc;
}

static int must(const char *what, long rc)
{
	if (rc < 0) {
		step(what, rc);
		printf("ABORT %s\n", what);
		exit(3);
	}
	return (int)rc;
}

static int open_iommu(int flags)
{
	return must("open_iommu", open("/dev/iommu", O_RDWR | flags));
}

static long ioas_alloc(int fd)
{
	struct uapi_ioas_alloc a = { .size = sizeof(a) };
	long rc = ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, &a);
	return rc < 0 ? rc : (long)a.out_ioas_id;
}

static long destroy(int fd, uint32_t id)
{
	struct uapi_destroy d = { .size = sizeof(d), .id = id };
	return ioctl(fd, UAPI_IOMMU_DESTROY, &d);
}

static long group_status(int fd)
{
	struct uapi_group_status s = { .argsz = sizeof(s) };
	long rc = ioctl(fd, UAPI_VFIO_GROUP_GET_STATUS, &s);
	return rc < 0 ? rc : (long)s.flags;
}

static char *group_path(const char *g)
{
	static char p[64];
	snprintf(p, sizeof(p), "/dev/vfio/%s", g);
	return p;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A page of each protection, the second right after the first. */
static uint8_t *two_pages(int prot_second)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		must("mmap", -1);
	memset(p, 0, 2 * pg);
	must("mprotect", mprotect(p + pg, pg, prot_second));
	return p;
}

/* Wild pointers in ioctl arguments: EFAULT, never a crash, nothing sent. */
static int wild(const char *group)
{
	long pg = sysconf(_SC_PAGESIZE);
	int fd = open_iommu(0);
	step("alloc_null", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, NULL));
	step("alloc_wild", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, (void *)0x10));
	step("alloc_kernel_address", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, (void *)0xffffffff81000000ul));
	step("destroy_null", ioctl(fd, UAPI_IOMMU_DESTROY, NULL));

	uint8_t *p = two_pages(PROT_NONE);
	step("alloc_prot_none", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, p + pg));
	/* The struct's size field is readable, the rest runs into PROT_NONE. */
	struct uapi_ioas_map *m = (struct uapi_ioas_map *)(p + pg - 8);
	m->size = sizeof(*m);
	step("map_straddles_page", ioctl(fd, UAPI_IOMMU_IOAS_MAP, m));
	/* Readable but not writable: the write-back could not be done. */
	uint8_t *ro = two_pages(PROT_READ);
	struct uapi_ioas_alloc a = { .size = sizeof(a) };
	must("mprotect", mprotect(ro + pg, pg, PROT_READ | PROT_WRITE));
	memcpy(ro + pg, &a, sizeof(a));
	must("mprotect", mprotect(ro + pg, pg, PROT_READ));
	step("alloc_read_only", ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, ro + pg));
	/* Both pages good: a struct across the boundary (the shim reads what
	 * lies in the first page, then the rest), and a size word across it. */
	uint8_t *rw = two_pages(PROT_READ | PROT_WRITE);
	for (int back = 6; back >= 2; back -= 4) {
		struct uapi_ioas_alloc a = { .size = sizeof(a) };
		memcpy(rw + pg - back, &a, sizeof(a));
		long rc = ioctl(fd, UAPI_IOMMU_IOAS_ALLOC, rw + pg - back);
		memcpy(&a, rw + pg - back, sizeof(a));
		step(back == 6 ? "alloc_across_pages" : "alloc_size_across_pages",
		     rc < 0 ? rc : (long)a.out_ioas_id);
		if (rc == 0)
			destroy(fd, a.out_ioas_id);
	}

	if (group) {
		int g = must("open_group", open(group_path(group), O_RDWR));
		step("get_device_fd_wild", ioctl(g, UAPI_VFIO_GROUP_GET_DEVICE_FD, (void *)0x10));
		step("get_device_fd_prot_none", ioctl(g, UAPI_VFIO_GROUP_GET_DEVICE_FD, p + pg));
		/* A name that runs into PROT_NONE before its NUL; one of a whole
		 * page without a NUL is too long (strndup_user's EINVAL). */
		memset(p, 'a', pg);
		step("get_device_fd_unterminated", ioctl(g, UAPI_VFIO_GROUP_GET_DEVICE_FD, p + 100));
		step("get_device_fd_too_long", ioctl(g, UAPI_VFIO_GROUP_GET_DEVICE_FD, p));
		step("set_container_wild", ioctl(g, UAPI_VFIO_GROUP_SET_CONTAINER, (void *)0x10));
		close(g);
	}
	/* The connection is still good: nothing half-sent. */
	step("alloc_after", ioas_alloc(fd));
	return 0;
}

/* Unknown ioctls, other ioctl types and the VFS's own ioctls. */
static int unknown(void)
{
	int fd = open_iommu(0);
	struct uapi_destroy d = { .size = sizeof(d) };
	step("nr_0x7f", ioctl(fd, UAPI_IOCTL(0x7f), &d));
	step("nr_0x9f_hole", ioctl(fd, UAPI_IOCTL(0x9f), &d));
	step("iowr_spelling", ioctl(fd, _IOWR(';', 0x81, struct uapi_ioas_alloc), &d));
	step("group_status_on_iommufd", group_status(fd));
	struct termios t;
	step("tcgets", ioctl(fd, TCGETS, &t));
	int n = 0;
	step("fionread", ioctl(fd, FIONREAD, &n));
	step("fioclex", ioctl(fd, FIOCLEX));
	step("fd_flags_after_fioclex", fcntl(fd, F_GETFD));
	step("alloc_after", ioas_alloc(fd));
	return 0;
}

/* fork: the child uses the inherited fds; the files live until both close. */
static int do_fork(const char *group)
{
	int fd = open_iommu(0);
	step("parent_alloc", ioas_alloc(fd));
	int g = must("open_group", open(group_path(group), O_RDWR));
	pid_t pid = fork();
	if (pid < 0)
		must("fork", -1);
	if (pid == 0) {
		step("child_alloc", ioas_alloc(fd));
		step("child_group_status", group_status(g));
		step("child_close_group", close(g));
		step("child_close_iommufd", close(fd));
		_exit(0);
	}
	int st;
	must("waitpid", waitpid(pid, &st, 0));
	step("child_exit", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	step("parent_alloc_after_child", ioas_alloc(fd));
	step("parent_destroy_child_ioas", destroy(fd, 2));
	step("parent_group_status", group_status(g));
	step("reopen_group_while_open", open(group_path(group), O_RDWR));
	step("parent_close_group", close(g));
	int g2 = (int)step("reopen_group_after_close", open(group_path(group), O_RDWR));
	if (g2 >= 0)
		close(g2);
	return 0;
}

/* dup/dup2/dup3/F_DUPFD: one file, closed when its last copy is. */
static int do_dup(const char *group)
{
	int fd = open_iommu(0);
	step("alloc", ioas_alloc(fd));
	int d = must("dup", dup(fd));
	step("close_original", close(fd));
	step("alloc_through_dup", ioas_alloc(d));

	int g = must("open_group", open(group_path(group), O_RDWR));
	int g1 = must("dup2", dup2(g, 50));
	int g2 = must("dup3", dup3(g, 51, O_CLOEXEC));
	int g3 = must("fcntl_dupfd", fcntl(g, F_DUPFD_CLOEXEC, 60));
	step("close_group", close(g));
	step("status_through_dup2", group_status(g1));
	step("status_through_dup3", group_status(g2));
	step("status_through_f_dupfd", group_status(g3));
	step("reopen_group_while_copies_open", open(group_path(group), O_RDWR));
	close(g1);
	close(g2);
	step("status_through_last_copy", group_status(g3));
	close(g3);
	int again = (int)step("reopen_group_after_last_close", open(group_path(group), O_RDWR));
	if (again >= 0)
		close(again);
	return 0;
}

/* exec with and without O_CLOEXEC; the new image recognises a kept fd. */
static int do_exec(const char *self, const char *mode)
{
	int cloexec = !strcmp(mode, "cloexec");
	int fd = open_iommu(cloexec ? O_CLOEXEC : 0);
	step("fd_flags_before_exec", fcntl(fd, F_GETFD));
	step("alloc_before_exec", ioas_alloc(fd));
	char num[16];
	snprintf(num, sizeof(num), "%d", fd);
	execl(self, self, "after-exec", num, (char *)NULL);
	must("execl", -1);
	return 1;
}

static int after_exec(const char *num)
{
	int fd = atoi(num);
	step("fd_flags_after_exec", fcntl(fd, F_GETFD));
	step("alloc_after_exec", ioas_alloc(fd));
	step("alloc_after_exec_again", ioas_alloc(fd));
	return 0;
}

static long device_info(int fd)
{
	struct uapi_device_info info = { .argsz = sizeof(info) };
	long rc = ioctl(fd, UAPI_VFIO_DEVICE_GET_INFO, &info);
	return rc < 0 ? rc : (long)info.num_regions;
}

/* A device fd made by GROUP_GET_DEVICE_FD, kept over exec: its socket has no
 * peer address, so the new image knows it by its peer, the daemon. */
static int exec_device(const char *self, const char *group, const char *name)
{
	int c = must("open_container", open("/dev/vfio/vfio", O_RDWR));
	int g = must("open_group", open(group_path(group), O_RDWR));
	must("set_container", ioctl(g, UAPI_VFIO_GROUP_SET_CONTAINER, &c));
	must("set_iommu", ioctl(c, UAPI_VFIO_SET_IOMMU, UAPI_VFIO_TYPE1v2_IOMMU));
	int d = must("get_device_fd", ioctl(g, UAPI_VFIO_GROUP_GET_DEVICE_FD, name));
	step("device_fd_flags", fcntl(d, F_GETFD));
	step("device_info_before_exec", device_info(d));
	must("keep_over_exec", fcntl(d, F_SETFD, 0));
	char num[16];
	snprintf(num, sizeof(num), "%d", d);
	execl(self, self, "after-exec-device", num, (char *)NULL);
	must("execl", -1);
	return 1;
}

static int after_exec_device(const char *num)
{
	int d = atoi(num);
	step("device_info_after_exec", device_info(d));
	struct uapi_ioas_alloc a = { .size = sizeof(a) };
	step("iommufd_ioctl_on_device_after_exec", ioctl(d, UAPI_IOMMU_IOAS_ALLOC, &a));
	return 0;
}

/* The daemon goes away (or stops answering) between two ioctls. */
static int outage(void)
{
	int fd = open_iommu(0);
	step("alloc_before", ioas_alloc(fd));
	printf("ready\n");
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		return 3;
	int64_t t0 = now_ms();
	step("alloc_during", ioas_alloc(fd));
	step("elapsed_ms", now_ms() - t0);
	step("open_during", open("/dev/iommu", O_RDWR));
	return 0;
}

static int nodaemon(void)
{
	step("open_iommu", open("/dev/iommu", O_RDWR));
	step("open_container", open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC));
	step("open_group", openat(AT_FDCWD, "/dev/vfio/12", O_RDWR));
	step("open_device", open64("/dev/vfio/devices/vfio0", O_RDWR));
	return 0;
}

/* Paths and fds that are not ours go to libc untouched. */
static int passthrough(const char *file)
{
	int f = (int)step("open_file", open(file, O_RDWR));
	struct uapi_ioas_alloc a = { .size = sizeof(a), .out_ioas_id = 0x5a5a };
	step("semicolon_ioctl_on_file", ioctl(f, UAPI_IOMMU_IOAS_ALLOC, &a));
	step("struct_untouched", a.out_ioas_id == 0x5a5a);
	char buf[8] = { 0 };
	step("read_file", read(f, buf, sizeof(buf)));
	close(f);

	int sv[2];
	must("socketpair", socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
	step("semicolon_ioctl_on_socket", ioctl(sv[0], UAPI_IOMMU_IOAS_ALLOC, &a));
	step("peer_received_nothing", recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT));
	step("read_socket_zero_length", read(sv[0], buf, 0));

	step("open_dev_null", open("/dev/null", O_RDONLY));
	step("openat_dev_null", openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC));
	step("open_vfio_noiommu", open("/dev/vfio/noiommu-0", O_RDWR));
	step("open_vfio_leading_zero", open("/dev/vfio/012", O_RDWR));
	FILE *fp = fopen("/dev/null", "r");
	step("fopen_dev_null", fp ? 0 : -1);
	if (fp)
		fclose(fp);
	int n = -1;
	int p[2];
	must("pipe", pipe(p));
	must("write", write(p[1], "xy", 2));
	step("fionread_pipe", ioctl(p[0], FIONREAD, &n));
	step("fionread_value", n);
	return 0;
}

/* The fault queue fd FAULT_QUEUE_ALLOC hands out: the kernel's read and
 * write rules on an empty queue (the model raises no IO page faults). */
static int fault_fd(void)
{
	int fd = open_iommu(0);
	struct uapi_fault_queue_alloc q = { .size = sizeof(q), .out_fault_fd = 0xffff };
	step("fault_queue_alloc", ioctl(fd, UAPI_IOMMU_FAULT_QUEUE_ALLOC, &q));
	int ffd = (int)q.out_fault_fd;
	step("fault_id", q.out_fault_id);
	step("fault_fd_flags", fcntl(ffd, F_GETFD));
	uint8_t rec[80];
	step("read_zero", read(ffd, rec, 0));
	step("read_one_byte", read(ffd, rec, 1));
	step("read_two_records_empty", read(ffd, rec, sizeof(rec)));
	uint32_t resp[2] = { 1, 0 };
	step("write_partial_response", write(ffd, resp, 3));
	step("write_unknown_cookie", write(ffd, resp, sizeof(resp)));
	const void *volatile wild_ptr = (const void *)0x10; /* opaque to gcc's checks */
	step("write_wild", write(ffd, wild_ptr, sizeof(resp)));
	step("write_zero", write(ffd, resp, 0));
	struct pollfd pf = { .fd = ffd, .events = POLLIN };
	step("poll_empty", poll(&pf, 1, 0));
	struct uapi_ioas_alloc a = { .size = sizeof(a) };
	step("ioctl_on_fault_fd", ioctl(ffd, UAPI_IOMMU_IOAS_ALLOC, &a));
	step("close_fault_fd", close(ffd));
	step("alloc_after", ioas_alloc(fd));
	return 0;
}

struct range {
	uint64_t start, last;
};

/* Bodies over 64 KiB travel in a sealed memfd. ALLOW_IOVAS: the daemon asks
 * for 96,000 bytes of ranges (a GIVE in a memfd); only the last range is
 * big enough for a 128 KiB map, so where that map lands shows the tail of
 * the array arrived intact. */
static int bigbody(void)
{
	enum { N = 6000 };
	int fd = open_iommu(0);
	long ioas = step("ioas", ioas_alloc(fd));
	struct range *in = calloc(N, sizeof(*in));
	for (int i = 0; i < N; i++)
		in[i] = (struct range){ (uint64_t)(i + 1) << 20, ((uint64_t)(i + 1) << 20) + 0xffff };
	in[N - 1].last += 0x10000;
	struct uapi_allow_iovas allow = {
		.size = sizeof(allow), .ioas_id = (uint32_t)ioas, .num_iovas = N, .allowed_iovas = (uintptr_t)in
	};
	step("allow_iovas", ioctl(fd, UAPI_IOMMU_IOAS_ALLOW_IOVAS, &allow));
	void *mem = mmap(NULL, 0x20000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uapi_ioas_map map = {
		.size = sizeof(map), .flags = UAPI_MAP_READABLE, .ioas_id = (uint32_t)ioas,
		.user_va = (uintptr_t)mem, .length = 0x20000,
	};
	step("map_128k", ioctl(fd, UAPI_IOMMU_IOAS_MAP, &map));
	step("map_128k_at_last_range", map.iova == in[N - 1].start);
	allow.allowed_iovas = 0x10;
	step("allow_iovas_wild_array", ioctl(fd, UAPI_IOMMU_IOAS_ALLOW_IOVAS, &allow));
	return 0;
}

/* GET_DIRTY_BITMAP over 4 GiB at 4 KiB pages: a 128 KiB bitmap that the
 * daemon reads (GIVE in a memfd) and writes back OR-ed with the dirty bits
 * (REPLY in a memfd). Nothing is dirty, so the caller's bits come back. */
static int dirty(const char *device)
{
	enum { BITMAP = 128 << 10 };
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%s", device);
	int dev = must("open_device", open(path, O_RDWR));
	int fd = open_iommu(0);
	struct uapi_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = fd };
	must("bind", ioctl(dev, UAPI_VFIO_DEVICE_BIND_IOMMUFD, &bind));
	long ioas = must("ioas", ioas_alloc(fd));
	struct uapi_hwpt_alloc hwpt = { .size = sizeof(hwpt), .flags = UAPI_HWPT_ALLOC_DIRTY_TRACKING,
					.dev_id = bind.out_devid, .pt_id = (uint32_t)ioas };
	step("hwpt_alloc_dirty", ioctl(fd, UAPI_IOMMU_HWPT_ALLOC, &hwpt));
	struct uapi_set_dirty_tracking on = { .size = sizeof(on), .flags = UAPI_DIRTY_TRACKING_ENABLE,
					      .hwpt_id = hwpt.out_hwpt_id };
	step("dirty_tracking_on", ioctl(fd, UAPI_IOMMU_HWPT_SET_DIRTY_TRACKING, &on));
	uint8_t *bitmap = malloc(BITMAP), *want = malloc(BITMAP);
	for (size_t i = 0; i < BITMAP; i++)
		bitmap[i] = want[i] = (uint8_t)(i * 7 + (i >> 16));
	struct uapi_get_dirty_bitmap get = { .size = sizeof(get), .hwpt_id = hwpt.out_hwpt_id, .iova = 0,
					     .length = 1ull << 32, .page_size = 4096,
					     .data = (uintptr_t)bitmap };
	step("get_dirty_bitmap", ioctl(fd, UAPI_IOMMU_HWPT_GET_DIRTY_BITMAP, &get));
	step("bitmap_kept", !memcmp(bitmap, want, BITMAP));
	get.data = (uintptr_t)want + 1; /* unaligned, as the selftests do */
	step("get_dirty_bitmap_unaligned", ioctl(fd, UAPI_IOMMU_HWPT_GET_DIRTY_BITMAP, &get));
	get.data = 0x10;
	step("get_dirty_bitmap_wild", ioctl(fd, UAPI_IOMMU_HWPT_GET_DIRTY_BITMAP, &get));
	return 0;
}

/* fd arguments: the shim answers the daemon's NEED FD. */
static int fdargs(const char *group)
{
	int g = must("open_group", open(group_path(group), O_RDWR));
	int closed = must("dup", dup(g));
	close(closed);
	step("set_container_closed_fd", ioctl(g, UAPI_VFIO_GROUP_SET_CONTAINER, &closed));
	int p[2];
	must("pipe", pipe(p));
	step("set_container_pipe", ioctl(g, UAPI_VFIO_GROUP_SET_CONTAINER, &p[0]));
	int negative = -1;
	step("set_container_negative", ioctl(g, UAPI_VFIO_GROUP_SET_CONTAINER, &negative));
	int c = must("open_container", open("/dev/vfio/vfio", O_RDWR));
	int cdup = must("dup", fcntl(c, F_DUPFD, 100));
	step("set_container_through_dup", ioctl(g, UAPI_VFIO_GROUP_SET_CONTAINER, &cdup));
	step("group_status", group_status(g));
	return 0;
}

static volatile sig_atomic_t ticks;

static void on_tick(int sig)
{
	(void)sig;
	ticks++;
}

/* A timer signal without SA_RESTART lands in the middle of exchanges: no
 * ioctl may fail with EINTR once its request went out. */
static int signals(void)
{
	int fd = open_iommu(0);
	struct sigaction sa = { .sa_handler = on_tick }; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	must("sigaction", sigaction(SIGALRM, &sa, NULL));
	struct itimerval it = { .it_interval = { 0, 200 }, .it_value = { 0, 200 } };
	must("setitimer", setitimer(ITIMER_REAL, &it, NULL));
	int errors = 0, eintr = 0;
	for (int i = 0; i < 2000; i++) {
		long id = ioas_alloc(fd);
		if (id <= 0 || destroy(fd, (uint32_t)id) < 0) {
			errors++;
			eintr += errno == EINTR;
		}
	}
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	step("signals_delivered", ticks > 10);
	step("errors", errors);
	step("eintr", eintr);
	return 0;
}

struct worker {
	int fd, errors, iterations;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < w->iterations; i++) {
		long id = ioas_alloc(w->fd);
		if (id <= 0 || destroy(w->fd, (uint32_t)id) < 0)
			w->errors++;
	}
	return NULL;
}

/* Threads share one connection: each exchange holds its mutex. */
static int threads(void)
{
	int fd = open_iommu(0);
	pthread_t t[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ .fd = i % 2 ? fd : must("dup", dup(fd)), .iterations = 100 };
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	int errors = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		errors += w[i].errors;
	}
	step("errors", errors);
	step("alloc_after", ioas_alloc(fd));
	/* Many files opened and closed: the shim's table forgets closed ones
	 * (a socket's inode number can come back) and every new one works. */
	int churn_errors = 0;
	for (int i = 0; i < 300; i++) {
		int f = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		if (f < 0 || ioas_alloc(f) != 1 || close(f))
			churn_errors++;
	}
	step("churn_errors", churn_errors);
	step("alloc_after_churn", ioas_alloc(fd));
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *s = argc > 1 ? argv[1] : "";
	const char *a2 = argc > 2 ? argv[2] : NULL;
	if (!strcmp(s, "wild"))
		return wild(a2);
	if (!strcmp(s, "unknown"))
		return unknown();
	if (!strcmp(s, "fork") && a2)
		return do_fork(a2);
	if (!strcmp(s, "dup") && a2)
		return do_dup(a2);
	if (!strcmp(s, "exec") && a2)
		return do_exec(argv[0], a2);
	if (!strcmp(s, "after-exec") && a2)
		return after_exec(a2);
	if (!strcmp(s, "exec-device") && a2 && argc > 3)
		return exec_device(argv[0], a2, argv[3]);
	if (!strcmp(s, "after-exec-device") && a2)
		return after_exec_device(a2);
	if (!strcmp(s, "outage"))
		return outage();
	if (!strcmp(s, "nodaemon"))
		return nodaemon();
	if (!strcmp(s, "passthrough") && a2)
		return passthrough(a2);
	if (!strcmp(s, "threads"))
		return threads();
	if (!strcmp(s, "signals"))
		return signals();
	if (!strcmp(s, "fault"))
		return fault_fd();
	if (!strcmp(s, "bigbody"))
		return bigbody();
	if (!strcmp(s, "dirty") && a2)
		return dirty(a2);
	if (!strcmp(s, "fdargs") && a2)
		return fdargs(a2);
	fprintf(stderr, "usage: %s wild [GROUP] | unknown | fork GROUP | dup GROUP | exec keep|cloexec | exec-device GROUP NAME | "
			"outage | nodaemon | passthrough FILE | threads | signals | fault | bigbody | dirty N | fdargs GROUP\n", argv[0]);
	return 2;
}
