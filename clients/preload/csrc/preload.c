/* SPDX-License-Identifier: Apache-2.0
 *
 * libiommud-preload: serves the opens and ioctls of /dev/iommu and the /dev/vfio nodes
 * from iommud's raw uAPI socket, so that programs written against the kernel's
 * iommufd and VFIO ioctls run unmodified against the daemon.
 *
 * The contract with the daemon is docs/uapi-transport.md; the kernel facts
 * come from the documented uAPI (include/uapi/linux/iommufd.h and vfio.h),
 * re-expressed here as the few numbers the shim needs.
 *
 * Plain C with libc only: no runtime, no threads and no I/O of its own at
 * load time (the constructor reads the environment and registers fork
 * handlers). Every emulated fd is a real SOCK_SEQPACKET socket connected to
 * the daemon, so dup, fork, close and close-on-exec are the kernel's own; the
 * shim's per-file state is keyed by the socket's (st_dev, st_ino).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* glibc declares these only under _FORTIFY_SOURCE. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* ---- The wire protocol (docs/uapi-transport.md) ------------------------------- */

#define IUA_MAGIC 0x31415549u /* "IUA1" */
#define IUA_HDR_LEN 48u
#define IUA_INLINE_MAX 65536u /* larger bodies travel in a sealed memfd */
#define IUA_FIRST_MAX 512u    /* struct bytes sent with an IOCTL */
#define IUA_NAME_MAX 4096u    /* GROUP_GET_DEVICE_FD's name, NUL included */
#define IUA_MAX_FDS 64        /* fds carried by one record */
#define IUA_MAX_ROUNDS 64     /* NEED rounds in one exchange */

enum { K_OPEN = 1, K_IOCTL = 2, K_NEED = 3, K_GIVE = 4, K_REPLY = 5, K_DESCRIBE = 6, K_EVENT = 7,
       K_READ = 8, K_WRITE = 9, K_MMAP = 10, K_MUNMAP = 11 };
enum { FL_BODY_MEMFD = 1u << 0, FL_TAIL_NONZERO = 1u << 1, FL_USER_HOLE = 1u << 2, FL_FAIL_NTH = 1u << 3,
       FL_BELL = 1u << 4 };
enum { PK_IOMMU = 1, PK_CONTAINER = 2, PK_GROUP = 3, PK_DEVICE = 4, PK_GROUP_DEVICE = 5, PK_FAULT = 6,
       PK_VEVENTQ = 8 };
/* A path the shim serves itself, never sent to the daemon. */
enum { PK_FAIL_NTH = 0x100 };
enum { NEED_MEM = 1, NEED_FD = 2, NEED_WRITABLE = 3, NEED_BACKING = 4 };
/* OPEN's path kind 16: a question, not a file (what iommufd charges a pid). */
enum { PK_PINS = 16 };
/* A path the shim serves itself: /proc/<pid>/status with iommufd's charge. */
enum { PK_PROC_STATUS = 0x101 };
static int classify_proc_status(const char *path, uint32_t *n);
static int proc_status_open(uint32_t pid, int flags);
#define BACKING_SEGMENT 48u /* {u64 offset, length; u32 major, minor; u64 inode, file_offset; u32 flags, pad} */
enum { REP_WRITE = 1, REP_COPY = 2, REP_NEWFD = 3 };
enum { NEWFD_CLOEXEC = 1u << 0, NEWFD_RESULT = 1u << 1 };

/* The uAPI's ioctl type, and the VFIO numbers whose argument is not a sized struct. */
#define UAPI_TYPE ';'
#define NR_GET_API_VERSION 100
#define NR_CHECK_EXTENSION 101
#define NR_SET_IOMMU 102
#define NR_GROUP_SET_CONTAINER 104
#define NR_GROUP_UNSET_CONTAINER 105
#define NR_GROUP_GET_DEVICE_FD 106
#define NR_DEVICE_RESET 111
#define NR_DEVICE_BIND_IOMMUFD 118
#define NR_IOMMUFD_FIRST 0x80
#define NR_IOMMUFD_LAST 0xa0
#define NR_IOAS_MAP 0x85
#define NR_FAULT_QUEUE_ALLOC 0x8e
#define NR_VEVENTQ_ALLOC 0x93

/* Daemon-made event fds and the kernel's read/write rules for them
 * (drivers/iommu/iommufd/eventq.c). */
enum { EV_NONE = 0, EV_FAULT = 1, EV_VEVENTQ = 2, EV_FAIL_NTH = 3 };
#define FAULT_RECORD 40u    /* struct iommu_hwpt_pgfault */
#define FAULT_RESPONSE 8u   /* struct iommu_hwpt_page_response {u32 cookie, u32 code} */

struct hdr {
	uint32_t magic;
	uint16_t kind, flags;
	uint32_t pid, tid;
	uint64_t seq, cmd, arg;
	uint32_t body_len;
	int32_t result;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) | ((uint32_t)get16(p + 2) << 16);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

static void hdr_encode(uint8_t *out, const struct hdr *h)
{
	put32(out + 0, h->magic);
	put16(out + 4, h->kind);
	put16(out + 6, h->flags);
	put32(out + 8, h->pid);
	put32(out + 12, h->tid);
	put64(out + 16, h->seq);
	put64(out + 24, h->cmd);
	put64(out + 32, h->arg);
	put32(out + 40, h->body_len);
	put32(out + 44, (uint32_t)h->result);
}

static void hdr_decode(struct hdr *h, const uint8_t *in)
{
	h->magic = get32(in + 0);
	h->kind = get16(in + 4);
	h->flags = get16(in + 6);
	h->pid = get32(in + 8);
	h->tid = get32(in + 12);
	h->seq = get64(in + 16);
	h->cmd = get64(in + 24);
	h->arg = get64(in + 32);
	h->body_len = get32(in + 40);
	h->result = (int32_t)get32(in + 44);
}

/* A growable byte buffer; an allocation failure sticks in `err`. */
struct buf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static uint8_t *buf_grow(struct buf *b, size_t n)
{
	if (b->err)
		return NULL;
	if (n > SIZE_MAX - b->len) {
		b->err = -ENOMEM;
		return NULL;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->p = p;
		b->cap = cap;
	}
	uint8_t *at = b->p + b->len;
	b->len += n;
	return at;
}

static void buf_u32(struct buf *b, uint32_t v)
{
	uint8_t *p = buf_grow(b, 4);
	if (p)
		put32(p, v);
}

static void buf_u64(struct buf *b, uint64_t v)
{
	uint8_t *p = buf_grow(b, 8);
	if (p)
		put64(p, v);
}

static void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- The next definitions of what we interpose ----------------------------------- */

/* A thread resolving a symbol (dlsym may allocate, and an allocator may open
 * files) gets the raw system call instead of recursing. */
static __thread int resolving __attribute__((tls_model("initial-exec")));

static void *resolve(void **slot, const char *name)
{
	void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	if (p || resolving)
		return p;
	resolving = 1;
	p = dlsym(RTLD_NEXT, name);
	resolving = 0;
	if (p)
		__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	return p;
}

#define NEXT(type, name) ((type)resolve(&next_##name, #name))

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*open2_fn)(const char *, int);
typedef int (*openat2_fn)(int, const char *, int);
typedef int (*ioctl_fn)(int, unsigned long, ...);
typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef DIR *(*opendir_fn)(const char *);
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);

static void *next_open, *next_open64, *next___open_2, *next___open64_2;
static void *next_openat, *next_openat64, *next___openat_2, *next___openat64_2;
static void *next_ioctl, *next_read, *next_write;
static void *next_pread, *next_pwrite, *next_pread64, *next_pwrite64, *next_opendir;
static void *next_mmap, *next_mmap64, *next_munmap;

static ssize_t raw_read(int fd, void *buf, size_t n)
{
	return syscall(SYS_read, fd, buf, n);
}

static ssize_t raw_write(int fd, const void *buf, size_t n)
{
	return syscall(SYS_write, fd, buf, n);
}

/* ---- Configuration, read once from the environment ----------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static char path_env[PATH_MAX];
static char path_xdg[PATH_MAX];
static const char path_run[] = "/run/iommud/iommud.uapi.sock";
static const char *paths[2];
static int npaths;
static int64_t timeout_ms = 25000;
/* Fault injection for the kernel's selftest, opt-in (both off by default):
 * IOMMUD_PRELOAD_DEBUGFS names a directory that opendir() of /sys/kernel/debug
 * opens instead, and IOMMUD_PRELOAD_FAIL_NTH=1 emulates the tasks'
 * /proc/.../fail-nth files against the daemon's fail-nth walk. */
static char debugfs_env[PATH_MAX];
static int fail_nth_env;
/* IOMMUD_PRELOAD_PROC_STATUS=1: /proc/<pid>/status shows in VmPin and VmLck
 * the pages iommufd charges the process (the daemon's ProcessPins). */
static int proc_status_env;
static pid_t my_pid;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static void at_fork_prepare(void);
static void at_fork_parent(void);
static void at_fork_child(void);

/* IOMMUD_PRELOAD_TIMEOUT: seconds, with an optional fraction ("25", "0.5"). */
static int64_t parse_timeout(const char *s)
{
	int64_t ms = 0, scale = 1000;
	int digits = 0;
	if (!s)
		return -1;
	for (; *s >= '0' && *s <= '9'; s++, digits++) {
		ms = ms * 10 + (*s - '0') * 1000;
		if (ms > 86400000)
			return -1;
	}
	if (*s == '.') {
		for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
			scale /= 10;
			ms += (*s - '0') * scale;
		}
	}
	if (*s || !digits || ms <= 0)
		return -1;
	return ms;
}

static void copy_env(char *dst, size_t cap, const char *value, const char *suffix)
{
	dst[0] = 0;
	if (!value || !*value)
		return;
	size_t a = strlen(value), b = suffix ? strlen(suffix) : 0;
	if (a + b + 1 > cap)
		return;
	memcpy(dst, value, a);
	if (b)
		memcpy(dst + a, suffix, b);
	dst[a + b] = 0;
}

static void init(void)
{
	copy_env(path_env, sizeof(path_env), getenv("IOMMUD_PRELOAD_SOCKET"), NULL);
	copy_env(path_xdg, sizeof(path_xdg), getenv("XDG_RUNTIME_DIR"), "/iommud/iommud.uapi.sock");
	if (path_env[0]) {
		paths[npaths++] = path_env;
	} else {
		paths[npaths++] = path_run;
		if (path_xdg[0])
			paths[npaths++] = path_xdg;
	}
	int64_t t = parse_timeout(getenv("IOMMUD_PRELOAD_TIMEOUT"));
	if (t > 0)
		timeout_ms = t;
	copy_env(debugfs_env, sizeof(debugfs_env), getenv("IOMMUD_PRELOAD_DEBUGFS"), NULL);
	const char *fn = getenv("IOMMUD_PRELOAD_FAIL_NTH");
	fail_nth_env = fn && !strcmp(fn, "1");
	const char *ps = getenv("IOMMUD_PRELOAD_PROC_STATUS");
	proc_status_env = ps && !strcmp(ps, "1");
	my_pid = getpid();
	pthread_atfork(at_fork_prepare, at_fork_parent, at_fork_child);
}

static void ensure_init(void)
{
	pthread_once(&init_once, init);
}

__attribute__((constructor)) static void preload_ctor(void)
{
	ensure_init();
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The thread id, cached per thread: a syscall saved on every exchange. The
 * cache is keyed by the pid, so that a forked child's thread (my_pid re-read
 * in at_fork_child) asks again. */
static __thread pid_t tid_pid __attribute__((tls_model("initial-exec")));
static __thread uint32_t tid_cached __attribute__((tls_model("initial-exec")));

static uint32_t my_tid(void)
{
	if (tid_pid != my_pid || !tid_cached) {
		tid_cached = (uint32_t)syscall(SYS_gettid);
		tid_pid = my_pid;
	}
	return tid_cached;
}

/* ---- The caller's memory: copy_from_user / copy_to_user ------------------------- */

/* process_vm_readv/writev on our own pid turn a bad address into EFAULT
 * instead of SIGSEGV. Where they are refused (seccomp), a pipe does the same. */
static int use_pipe_copies;

static int pipe_copy(int to_user, uintptr_t user, void *local, size_t len)
{
	int p[2], rc = 0;
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	while (len) {
		size_t c = len < 4096 ? len : 4096;
		const void *src = to_user ? local : (const void *)user;
		void *dst = to_user ? (void *)user : local;
		ssize_t n;
		do
			n = raw_write(p[1], src, c);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)c) {
			rc = -EFAULT;
			break;
		}
		do
			n = raw_read(p[0], dst, c);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)c) {
			rc = -EFAULT;
			break;
		}
		user += c;
		local = (uint8_t *)local + c;
		len -= c;
	}
	close(p[0]);
	close(p[1]);
	return rc;
}

static int user_copy(int to_user, uintptr_t user, void *local, size_t len)
{
	while (len) {
		if (__atomic_load_n(&use_pipe_copies, __ATOMIC_RELAXED))
			return pipe_copy(to_user, user, local, len);
		struct iovec l = { local, len }, r = { (void *)user, len };
		ssize_t n = to_user ? process_vm_writev(my_pid, &l, 1, &r, 1, 0)
				    : process_vm_readv(my_pid, &l, 1, &r, 1, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOSYS || errno == EPERM) {
				__atomic_store_n(&use_pipe_copies, 1, __ATOMIC_RELAXED);
				continue;
			}
			return -EFAULT;
		}
		if (n == 0)
			return -EFAULT;
		user += (size_t)n;
		local = (uint8_t *)local + n;
		len -= (size_t)n;
	}
	return 0;
}

static int copy_from_user(void *dst, uintptr_t src, size_t len)
{
	return user_copy(0, src, dst, len);
}

static int copy_to_user(uintptr_t dst, const void *src, size_t len)
{
	return user_copy(1, dst, (void *)src, len);
}

/* Probe that [addr, addr+len) can be written: write back what is there. */
static int probe_writable(uintptr_t addr, size_t len)
{
	uint8_t tmp[4096];
	while (len) {
		size_t c = len < sizeof(tmp) ? len : sizeof(tmp);
		if (copy_from_user(tmp, addr, c) || copy_to_user(addr, tmp, c))
			return -EFAULT;
		addr += c;
		len -= c;
	}
	return 0;
}

/* memmove inside the caller's memory (a REPLY's COPY item). */
static int user_move(uintptr_t dst, uintptr_t src, size_t len)
{
	uint8_t tmp[4096];
	int backward = dst > src && dst - src < len;
	size_t done = 0;
	while (done < len) {
		size_t c = len - done < sizeof(tmp) ? len - done : sizeof(tmp);
		size_t off = backward ? len - done - c : done;
		if (copy_from_user(tmp, src + off, c) || copy_to_user(dst + off, tmp, c))
			return -EFAULT;
		done += c;
	}
	return 0;
}

/* ---- The per-file table -------------------------------------------------------------- */

struct file {
	dev_t dev;
	ino_t ino;
	int described;  /* token, kind and n known (always, but for inherited fds) */
	int event;      /* EV_*: a daemon-made event fd, read and written by the kernel's rules */
	uint32_t kind, n;
	uint64_t token;
	uint64_t pos;     /* a fail-nth file's read position, under `lock` */
	uint32_t counter; /* request sequence, under `lock` */
	unsigned refs;    /* under table_lock */
	int unlinked;     /* no longer in the table: freed at the last file_put */
	int mark;         /* garbage collection */
	pthread_mutex_t lock; /* one exchange at a time on this connection */
};

static struct file **table;
static size_t table_len, table_cap;
static int table_used; /* atomic mirror of table_len != 0, for the fast paths */
static int event_files; /* atomic: how many table entries are event fds */

static void table_changed_locked(void)
{
	int events = 0;
	for (size_t i = 0; i < table_len; i++)
		events += table[i]->event != EV_NONE;
	__atomic_store_n(&event_files, events, __ATOMIC_RELAXED);
	__atomic_store_n(&table_used, table_len != 0, __ATOMIC_RELAXED);
}

static struct file *find_locked(dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < table_len; i++)
		if (table[i]->ino == ino && table[i]->dev == dev)
			return table[i];
	return NULL;
}

static void file_free(struct file *f)
{
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static void unlink_locked(size_t i)
{
	struct file *f = table[i];
	table[i] = table[--table_len];
	if (f->refs)
		f->unlinked = 1;
	else
		file_free(f);
}

/* Drop the entries of files no fd of this process refers to any more (all
 * copies closed, or passed away): a socket's inode number can be reused. */
static void collect_locked(void)
{
	int dfd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	for (size_t i = 0; i < table_len; i++)
		table[i]->mark = 0;
	char dents[4096] __attribute__((aligned(8)));
	for (;;) {
		long n = syscall(SYS_getdents64, dfd, dents, sizeof(dents));
		if (n <= 0) {
			if (n < 0) {
				close(dfd);
				return; /* unsure what is live: keep everything */
			}
			break;
		}
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(void *)(dents + off);
			off += d->d_reclen;
			char *end;
			long fd = strtol(d->d_name, &end, 10);
			struct stat st;
			if (*end || end == d->d_name || fd == dfd || fstat((int)fd, &st) || !S_ISSOCK(st.st_mode))
				continue;
			struct file *f = find_locked(st.st_dev, st.st_ino);
			if (f)
				f->mark = 1;
		}
	}
	close(dfd);
	for (size_t i = table_len; i-- > 0;)
		if (!table[i]->mark && !table[i]->refs)
			unlink_locked(i);
	table_changed_locked();
}

/* Insert f (its dev/ino set), replacing a stale entry for the same inode.
 * Returns the entry now in the table, referenced: f, or an existing live
 * entry when `keep_existing` (a concurrent recognition got there first). */
static struct file *insert_locked(struct file *f, int keep_existing)
{
	for (size_t i = 0; i < table_len; i++) {
		if (table[i]->ino != f->ino || table[i]->dev != f->dev)
			continue;
		if (keep_existing) {
			table[i]->refs++;
			file_free(f);
			return table[i];
		}
		unlink_locked(i);
		break;
	}
	if (table_len == table_cap) {
		collect_locked();
		if (table_len == table_cap) {
			size_t cap = table_cap ? table_cap * 2 : 16;
			struct file **t = realloc(table, cap * sizeof(*t));
			if (!t) {
				file_free(f);
				return NULL;
			}
			table = t;
			table_cap = cap;
		}
	}
	f->refs++;
	table[table_len++] = f;
	table_changed_locked();
	return f;
}

static struct file *file_new(const struct stat *st)
{
	struct file *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	pthread_mutex_init(&f->lock, NULL);
	return f;
}

static void file_put(struct file *f)
{
	pthread_mutex_lock(&table_lock);
	if (--f->refs == 0 && f->unlinked)
		file_free(f);
	pthread_mutex_unlock(&table_lock);
}

static int same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (!strcmp(a, b))
		return 1;
	return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int unnamed_peer_is_daemon(int fd);

/* An fd inherited over exec: a SEQPACKET socket whose peer is the daemon's
 * uAPI socket. (Nothing is ever sent to a socket that is not.) */
static int peer_is_daemon(int fd)
{
	int type = 0;
	socklen_t tl = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) || type != SOCK_SEQPACKET)
		return 0;
	struct sockaddr_un a;
	socklen_t al = sizeof(a);
	memset(&a, 0, sizeof(a));
	if (getpeername(fd, (struct sockaddr *)&a, &al) || a.sun_family != AF_UNIX)
		return 0;
	if (al <= offsetof(struct sockaddr_un, sun_path))
		return unnamed_peer_is_daemon(fd);
	if (!a.sun_path[0])
		return 0; /* abstract */
	char path[sizeof(a.sun_path) + 1];
	size_t len = al - offsetof(struct sockaddr_un, sun_path);
	if (len > sizeof(a.sun_path))
		len = sizeof(a.sun_path);
	memcpy(path, a.sun_path, len);
	path[len] = 0;
	for (int i = 0; i < npaths; i++)
		if (same_file(path, paths[i]))
			return 1;
	return 0;
}

/* The daemon's pid, from SO_PEERCRED of a connection to its socket (one
 * made and closed here, without an OPEN), or -1. */
static pid_t daemon_pid(void)
{
	for (int i = 0; i < npaths; i++) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		size_t len = strlen(paths[i]);
		if (len >= sizeof(a.sun_path))
			continue;
		memcpy(a.sun_path, paths[i], len + 1);
		int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (s < 0)
			return -1;
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		int ok = !connect(s, (struct sockaddr *)&a, sizeof(a)) &&
			 !getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
		close(s);
		if (ok)
			return cred.pid;
	}
	return -1;
}

/* A daemon-made file inherited over exec (a device fd from a group): an
 * unnamed SEQPACKET socket has no peer address, but its peer credentials
 * are those of the process that made the pair, the daemon. */
static int unnamed_peer_is_daemon(int fd)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) || cred.pid <= 0)
		return 0;
	return cred.pid == daemon_pid();
}

/* The entry of an emulated fd, referenced (file_put it), or NULL when the fd
 * is not one of ours. `recognise`: also adopt an inherited connection. */
static struct file *file_get(int fd, int recognise)
{
	struct stat st;
	if (fd < 0 || fstat(fd, &st) || !S_ISSOCK(st.st_mode))
		return NULL;
	pthread_mutex_lock(&table_lock);
	struct file *f = find_locked(st.st_dev, st.st_ino);
	if (f)
		f->refs++;
	pthread_mutex_unlock(&table_lock);
	if (f || !recognise)
		return f;
	ensure_init();
	if (!peer_is_daemon(fd) || !(f = file_new(&st)))
		return NULL;
	pthread_mutex_lock(&table_lock);
	f = insert_locked(f, 1);
	pthread_mutex_unlock(&table_lock);
	return f;
}

/* ---- Fork --------------------------------------------------------------------------- */

static void fail_nth_forked(void);

static void at_fork_prepare(void)
{
	pthread_mutex_lock(&table_lock);
}

static void at_fork_parent(void)
{
	pthread_mutex_unlock(&table_lock);
}

/* The child has one thread: locks held by the parent's other threads are
 * re-made, references they held are dropped. No allocation here. */
static void at_fork_child(void)
{
	pthread_mutex_init(&table_lock, NULL);
	for (size_t i = 0; i < table_len; i++) {
		pthread_mutex_init(&table[i]->lock, NULL);
		table[i]->refs = 0;
	}
	my_pid = (pid_t)syscall(SYS_getpid);
	fail_nth_forked();
}

/* ---- Records on a connection --------------------------------------------------------- */

struct msg {
	struct hdr h;
	uint8_t *raw;  /* what was received (header and inline body), malloc'd */
	uint8_t *body; /* the body: inside raw, or its own allocation (memfd) */
	int body_owned;
	int fds[IUA_MAX_FDS];
	int nfds, next_fd;
};

static void msg_release(struct msg *m)
{
	if (m->body_owned)
		free(m->body);
	free(m->raw);
	for (int i = m->next_fd; i < m->nfds; i++)
		close(m->fds[i]);
	memset(m, 0, sizeof(*m));
}

static int wait_io(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -EIO;
	}
}

static int is_peer_gone(int e)
{
	return e == EPIPE || e == ECONNRESET || e == ENOTCONN || e == ECONNREFUSED || e == ESHUTDOWN;
}

static int body_memfd(const uint8_t *body, size_t len)
{
	int fd = memfd_create("iommud-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, body + done, len - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(fd);
			return -e;
		}
		done += (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int send_record(int s, struct hdr *h, const uint8_t *body, size_t len, const int *fds, int nfds,
		       int64_t deadline)
{
	int memfd = -1, all[IUA_MAX_FDS + 1], nall = 0, rc = 0;
	if (len > UINT32_MAX || nfds > IUA_MAX_FDS)
		return -E2BIG;
	h->body_len = (uint32_t)len;
	if (len > IUA_INLINE_MAX) {
		memfd = body_memfd(body, len);
		if (memfd < 0)
			return memfd;
		h->flags |= FL_BODY_MEMFD;
		all[nall++] = memfd;
	}
	for (int i = 0; i < nfds; i++)
		all[nall++] = fds[i];
	uint8_t head[IUA_HDR_LEN];
	hdr_encode(head, h);
	struct iovec iov[2] = { { head, sizeof(head) }, { (void *)body, len } };
	union {
		char buf[CMSG_SPACE(sizeof(int) * (IUA_MAX_FDS + 1))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (memfd >= 0 || !len) ? 1 : 2 };
	if (nall) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nall);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nall);
		memcpy(CMSG_DATA(c), all, sizeof(int) * (size_t)nall);
	}
	for (;;) {
		if (sendmsg(s, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
			break;
		int e = errno;
		if (e == EINTR)
			continue;
		if (e == EAGAIN || e == EWOULDBLOCK) {
			rc = wait_io(s, POLLOUT, deadline);
			if (rc)
				break;
			continue;
		}
		rc = is_peer_gone(e) ? -EIO : -e;
		break;
	}
	if (memfd >= 0)
		close(memfd);
	return rc;
}

static int recv_record(int s, struct msg *m, int64_t deadline)
{
	memset(m, 0, sizeof(*m));
	m->raw = malloc(IUA_HDR_LEN + IUA_INLINE_MAX);
	if (!m->raw)
		return -ENOMEM;
	union {
		char buf[CMSG_SPACE(sizeof(int) * IUA_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { m->raw, IUA_HDR_LEN + IUA_INLINE_MAX };
	struct msghdr mh;
	ssize_t n;
	/* An answer is almost never there the moment its request went out:
	 * wait first, and save a recvmsg that would say EAGAIN. */
	int rc = wait_io(s, POLLIN, deadline);
	if (rc) {
		msg_release(m);
		return rc;
	}
	for (;;) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(s, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= 0)
			break;
		int e = errno;
		if (e == EINTR)
			continue;
		if (e == EAGAIN || e == EWOULDBLOCK) {
			rc = wait_io(s, POLLIN, deadline);
			if (rc) {
				msg_release(m);
				return rc;
			}
			continue;
		}
		msg_release(m);
		return -EIO;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (m->nfds < IUA_MAX_FDS)
				m->fds[m->nfds++] = fd;
			else
				close(fd);
		}
	}
	if (n == 0 || n < (ssize_t)IUA_HDR_LEN || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		msg_release(m); /* EOF: the daemon is gone; or a record we cannot read */
		return -EIO;
	}
	hdr_decode(&m->h, m->raw);
	if (m->h.magic != IUA_MAGIC) {
		msg_release(m);
		return -EIO;
	}
	if (m->h.flags & FL_BODY_MEMFD) {
		if (m->next_fd >= m->nfds || n != (ssize_t)IUA_HDR_LEN) {
			msg_release(m);
			return -EIO;
		}
		int memfd = m->fds[m->next_fd++];
		m->body = m->h.body_len ? malloc(m->h.body_len) : NULL;
		m->body_owned = 1;
		size_t done = 0;
		while (done < m->h.body_len) {
			ssize_t r = pread(memfd, m->body + done, m->h.body_len - done, (off_t)done);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0 || !m->body)
				break;
			done += (size_t)r;
		}
		close(memfd);
		if (done != m->h.body_len) {
			msg_release(m);
			return -EIO;
		}
	} else {
		if ((size_t)n - IUA_HDR_LEN != m->h.body_len) {
			msg_release(m);
			return -EIO;
		}
		m->body = m->raw + IUA_HDR_LEN;
	}
	return 0;
}

/* The fd that came next with a record, or -1. The caller now owns it. */
static int msg_take_fd(struct msg *m)
{
	return m->next_fd < m->nfds ? m->fds[m->next_fd++] : -1;
}

/* ---- One exchange: request, NEED rounds, REPLY -------------------------------------- */

static int describe_locked(int fd, struct file *f);

static uint64_t next_seq(struct file *f)
{
	/* The pid keeps a forked child's requests apart from its parent's on a
	 * shared connection: a reply is taken only for the request it echoes. */
	return ((uint64_t)(uint32_t)my_pid << 32) | ++f->counter;
}

/* The token of fd for a NEED FD item: 0 and *is_real for a foreign fd. */
static int token_of(int fd, struct file *current, uint64_t *token, int *is_real)
{
	*is_real = 0;
	*token = 0;
	if (fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	struct file *f = file_get(fd, 1);
	if (!f) {
		*is_real = 1;
		return 0;
	}
	int rc = 0;
	if (f != current && !__atomic_load_n(&f->described, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&f->lock);
		rc = describe_locked(fd, f);
		pthread_mutex_unlock(&f->lock);
	}
	*token = f->token;
	file_put(f);
	return rc;
}

/* The whole of a /proc file, read with raw system calls (no interposer
 * runs): NUL-terminated in `out`; 0 or -errno. */
static int slurp(const char *path, struct buf *out)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = 0;
	for (;;) {
		uint8_t *at = buf_grow(out, 4096);
		if (!at) {
			rc = out->err;
			break;
		}
		ssize_t n = raw_read(fd, at, 4096);
		if (n < 0 && errno == EINTR) {
			out->len -= 4096;
			continue;
		}
		if (n <= 0) {
			out->len -= 4096;
			if (n < 0)
				rc = -errno;
			break;
		}
		out->len -= 4096 - (size_t)n;
	}
	close(fd);
	uint8_t *nul = rc ? NULL : buf_grow(out, 1);
	if (nul) {
		*nul = 0;
		out->len--;
	} else if (!rc) {
		rc = out->err;
	}
	return rc;
}

/* NEED BACKING: the mappings behind [addr, addr + len), as /proc/self/maps
 * shows them (a hole is left out): for each, the part of the range it
 * covers, the file's device and inode and the file offset there, and
 * whether it is a shared mapping. GUP of the range finds the same pages. */
static void give_backing(struct buf *give, uint64_t addr, uint32_t len)
{
	buf_u32(give, NEED_BACKING);
	size_t status_at = give->len;
	buf_u32(give, 0);
	size_t count_at = give->len;
	buf_u32(give, 0);
	struct buf maps = { 0 };
	int rc = slurp("/proc/self/maps", &maps);
	uint32_t count = 0;
	uint64_t end = addr + len;
	for (char *line = rc ? NULL : (char *)maps.p; line && *line;) {
		char *next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		unsigned long long start, stop, off, inode;
		unsigned major, minor;
		char perms[8];
		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &stop, perms, &off, &major,
			   &minor, &inode) == 7 && stop > addr && start < end) {
			uint64_t lo = start > addr ? start : addr, hi = stop < end ? stop : end;
			uint8_t *seg = buf_grow(give, BACKING_SEGMENT);
			if (!seg)
				break;
			memset(seg, 0, BACKING_SEGMENT);
			put64(seg, lo - addr);
			put64(seg + 8, hi - lo);
			put32(seg + 16, major);
			put32(seg + 20, minor);
			put64(seg + 24, inode);
			put64(seg + 32, off + (lo - start));
			put32(seg + 40, perms[3] == 's' ? 1u : 0u);
			count++;
		}
		line = next;
	}
	buf_free(&maps);
	if (give->err)
		return;
	if (rc) {
		give->len = count_at + 4; /* status -errno, no segments */
		put32(give->p + status_at, (uint32_t)rc);
		count = 0;
	}
	put32(give->p + count_at, count);
}

static int serve_need(int s, struct file *f, const struct hdr *req, struct msg *need, int64_t deadline)
{
	const uint8_t *p = need->body, *end = need->body + need->h.body_len;
	struct buf give = { 0 };
	int fds[IUA_MAX_FDS], nfds = 0, rc = 0;
	if (end - p < 4)
		return -EIO;
	uint32_t count = get32(p);
	p += 4;
	buf_u32(&give, count);
	for (uint32_t i = 0; i < count && !rc; i++) {
		if (end - p < 8) {
			rc = -EIO;
			break;
		}
		uint32_t type = get32(p);
		if (type == NEED_MEM || type == NEED_WRITABLE) {
			if (end - p < 16) {
				rc = -EIO;
				break;
			}
			uint32_t len = get32(p + 4);
			uint64_t addr = get64(p + 8);
			p += 16;
			if (type == NEED_WRITABLE) {
				buf_u32(&give, NEED_WRITABLE);
				buf_u32(&give, (uint32_t)probe_writable((uintptr_t)addr, len));
				continue;
			}
			size_t at = give.len;
			uint8_t *item = buf_grow(&give, 12 + (size_t)len);
			if (!item)
				break;
			put32(item, NEED_MEM);
			if (copy_from_user(item + 12, (uintptr_t)addr, len)) {
				give.len = at + 12; /* status -EFAULT, no bytes */
				put32(item + 4, (uint32_t)-EFAULT);
				put32(item + 8, 0);
			} else {
				put32(item + 4, 0);
				put32(item + 8, len);
			}
		} else if (type == NEED_BACKING) {
			if (end - p < 16) {
				rc = -EIO;
				break;
			}
			uint32_t len = get32(p + 4);
			uint64_t addr = get64(p + 8);
			p += 16;
			give_backing(&give, addr, len);
		} else if (type == NEED_FD) {
			int32_t fd = (int32_t)get32(p + 4);
			p += 8;
			uint64_t token;
			int is_real;
			int st = token_of(fd, f, &token, &is_real);
			if (st == 0 && is_real) {
				if (nfds == IUA_MAX_FDS) {
					rc = -EIO;
					break;
				}
				fds[nfds++] = fd;
			}
			buf_u32(&give, NEED_FD);
			buf_u32(&give, (uint32_t)st);
			buf_u64(&give, st ? 0 : token);
		} else {
			rc = -EIO; /* an item this shim does not know */
		}
	}
	if (!rc && give.err)
		rc = give.err;
	if (!rc) {
		struct hdr h = *req;
		h.kind = K_GIVE;
		h.flags = 0;
		h.result = 0;
		rc = send_record(s, &h, give.p, give.len, fds, nfds, deadline);
	}
	buf_free(&give);
	return rc;
}

/* Send one request on connection s (the caller holds f->lock, or owns f
 * alone) and serve NEED rounds until the REPLY, returned in *reply. */
static int exchange(int s, struct file *f, uint16_t kind, uint16_t flags, uint64_t cmd, uint64_t arg,
		    const struct buf *body, struct msg *reply, int32_t nth)
{
	struct hdr h = {
		.magic = IUA_MAGIC,
		.kind = kind,
		.flags = flags,
		.pid = (uint32_t)my_pid,
		.tid = my_tid(),
		.seq = next_seq(f),
		.cmd = cmd,
		.arg = arg,
		.result = nth, /* FL_FAIL_NTH: the task's fail-nth count */
	};
	int64_t deadline = now_ms() + timeout_ms;
	int rc = send_record(s, &h, body ? body->p : NULL, body ? body->len : 0, NULL, 0, deadline);
	if (rc)
		return rc;
	for (int rounds = 0;;) {
		struct msg m;
		rc = recv_record(s, &m, deadline);
		if (rc)
			return rc;
		if (m.h.seq != h.seq) {
			msg_release(&m); /* the late answer to a call that timed out */
			continue;
		}
		if (m.h.kind == K_REPLY) {
			*reply = m;
			return 0;
		}
		if (m.h.kind != K_NEED || ++rounds > IUA_MAX_ROUNDS) {
			msg_release(&m);
			return -EIO;
		}
		deadline = now_ms() + timeout_ms;
		rc = serve_need(s, f, &h, &m, deadline);
		msg_release(&m);
		if (rc)
			return rc;
	}
}

/* DESCRIBE an inherited connection (caller holds f->lock). */
static int describe_locked(int fd, struct file *f)
{
	if (__atomic_load_n(&f->described, __ATOMIC_ACQUIRE))
		return 0;
	struct msg m;
	int rc = exchange(fd, f, K_DESCRIBE, 0, 0, 0, NULL, &m, 0);
	if (rc)
		return rc;
	if (m.h.result < 0) {
		rc = m.h.result;
	} else if (m.h.body_len < 16) {
		rc = -EIO;
	} else {
		f->kind = get32(m.body);
		f->n = get32(m.body + 4);
		f->token = get64(m.body + 8);
		if (f->kind == PK_FAULT || f->kind == PK_VEVENTQ) {
			f->event = f->kind == PK_FAULT ? EV_FAULT : EV_VEVENTQ;
			pthread_mutex_lock(&table_lock);
			table_changed_locked();
			pthread_mutex_unlock(&table_lock);
		}
		__atomic_store_n(&f->described, 1, __ATOMIC_RELEASE);
	}
	msg_release(&m);
	return rc;
}

/* ---- Open ----------------------------------------------------------------------------- */

/* Collapse "//" and "/./" so that "/dev//iommu" is still ours. */
static int normalise(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	if (in[0] != '/')
		return -1;
	for (const char *p = in; *p;) {
		if (*p == '/') {
			while (*p == '/' || (p[0] == '.' && (p[1] == '/' || !p[1]) && p[-1] == '/'))
				p++;
			if (o + 1 >= cap)
				return -1;
			out[o++] = '/';
			continue;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = *p++;
	}
	if (o > 1 && out[o - 1] == '/')
		return -1; /* a trailing slash asks for a directory: not ours */
	out[o] = 0;
	return 0;
}

static int parse_n(const char *s, uint32_t *n)
{
	uint64_t v = 0;
	if (!*s || (s[0] == '0' && s[1]))
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > INT32_MAX)
			return 0;
	}
	*n = (uint32_t)v;
	return 1;
}

/* Is this one of the emulated device nodes? Only absolute paths are. */
static int classify_fail_nth(const char *path, uint32_t *n);

static int classify(const char *path, uint32_t *kind, uint32_t *n)
{
	char p[64];
	if (path && !strncmp(path, "/proc/", 6) && classify_fail_nth(path, n)) {
		*kind = PK_FAIL_NTH;
		return 1;
	}
	if (path && !strncmp(path, "/proc/", 6) && classify_proc_status(path, n)) {
		*kind = PK_PROC_STATUS;
		return 1;
	}
	if (!path || path[0] != '/' || strncmp(path, "/dev", 4) || normalise(path, p, sizeof(p)))
		return 0;
	*n = 0;
	if (!strcmp(p, "/dev/iommu")) {
		*kind = PK_IOMMU;
		return 1;
	}
	if (!strcmp(p, "/dev/vfio/vfio")) {
		*kind = PK_CONTAINER;
		return 1;
	}
	if (!strncmp(p, "/dev/vfio/devices/vfio", 22) && parse_n(p + 22, n)) {
		*kind = PK_DEVICE;
		return 1;
	}
	if (!strncmp(p, "/dev/vfio/", 10) && parse_n(p + 10, n)) {
		*kind = PK_GROUP;
		return 1;
	}
	return 0;
}

static int connect_daemon(int type)
{
	int err = ENODEV;
	for (int i = 0; i < npaths; i++) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		size_t len = strlen(paths[i]);
		if (len >= sizeof(a.sun_path))
			continue;
		memcpy(a.sun_path, paths[i], len + 1);
		int s = socket(AF_UNIX, type, 0);
		if (s < 0)
			return -1; /* EMFILE, ENFILE, ...: as the kernel's open would */
		/* A full backlog must not hang the open: bound the wait. */
		struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		int rc;
		do
			rc = connect(s, (struct sockaddr *)&a, sizeof(a));
		while (rc && errno == EINTR);
		if (!rc) {
			struct timeval zero = { 0, 0 };
			setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof(zero));
			return s;
		}
		if (errno == EACCES || errno == EPERM)
			err = EACCES;
		else if (errno == EAGAIN)
			err = ETIMEDOUT;
		close(s);
	}
	errno = err;
	return -1;
}

static int emu_open_connection(uint32_t kind, uint32_t n, int flags)
{
	ensure_init();
	int type = SOCK_SEQPACKET | ((flags & O_CLOEXEC) ? SOCK_CLOEXEC : 0);
	int s = connect_daemon(type);
	if (s < 0)
		return -1;
	struct stat st;
	struct file *f = NULL;
	if (fstat(s, &st) || !(f = file_new(&st))) {
		close(s);
		errno = ENOMEM;
		return -1;
	}
	struct buf body = { 0 };
	buf_u32(&body, (uint32_t)flags);
	struct msg m;
	int rc = body.err ? body.err : exchange(s, f, K_OPEN, 0, kind, n, &body, &m, 0);
	buf_free(&body);
	if (!rc) {
		if (m.h.result < 0)
			rc = m.h.result;
		else if (m.h.body_len < 8)
			rc = -EIO;
		else
			f->token = get64(m.body);
		msg_release(&m);
	}
	if (!rc && (flags & O_NONBLOCK))
		fcntl(s, F_SETFL, O_NONBLOCK);
	if (rc) {
		file_free(f);
		close(s);
		errno = -rc;
		return -1;
	}
	f->kind = kind;
	f->n = n;
	f->described = 1;
	pthread_mutex_lock(&table_lock);
	f = insert_locked(f, 0);
	if (f)
		f->refs--;
	pthread_mutex_unlock(&table_lock);
	if (!f) {
		close(s);
		errno = ENOMEM;
		return -1;
	}
	return s;
}


/* ---- Fault injection for the selftest: debugfs and fail-nth (opt-in) ----------------------
 *
 * The kernel's iommufd_fail_nth test looks for fault injection in debugfs
 * (it writes a few of its knobs) and then, per case, arms
 * /proc/self/task/<tid>/fail-nth: writing N makes the N-th fault-injection
 * site the task reaches fail; reading gives what is left, 0 once the failure
 * was injected. With IOMMUD_PRELOAD_FAIL_NTH=1 the shim keeps each task's
 * count and sends it with the task's ioctls (FL_FAIL_NTH, the request's
 * `result`); the daemon walks its own steps (failnth.py) and answers what is
 * left in the reply's `arg`. The file is a socket the shim made (the file
 * table's EV_FAIL_NTH), so fork, dup and close are native. */

struct fail_slot {
	pid_t tid;
	uint32_t nth;
};
static struct fail_slot fail_slots[64];
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static int fail_armed; /* atomic: slots with a count, for the ioctl fast path */

static uint32_t fail_nth_get(pid_t tid)
{
	uint32_t nth = 0;
	pthread_mutex_lock(&fail_lock);
	for (size_t i = 0; i < sizeof(fail_slots) / sizeof(fail_slots[0]); i++)
		if (fail_slots[i].tid == tid && fail_slots[i].nth)
			nth = fail_slots[i].nth;
	pthread_mutex_unlock(&fail_lock);
	return nth;
}

static int fail_nth_set(pid_t tid, uint32_t nth)
{
	int rc = -ENOMEM, armed = 0;
	pthread_mutex_lock(&fail_lock);
	struct fail_slot *free_slot = NULL;
	for (size_t i = 0; i < sizeof(fail_slots) / sizeof(fail_slots[0]); i++) {
		struct fail_slot *s = &fail_slots[i];
		if (s->tid == tid) {
			s->nth = nth;
			rc = 0;
		} else if (!s->nth && !free_slot) {
			free_slot = s;
		}
	}
	if (rc && free_slot) {
		free_slot->tid = tid;
		free_slot->nth = nth;
		rc = 0;
	}
	for (size_t i = 0; i < sizeof(fail_slots) / sizeof(fail_slots[0]); i++)
		armed += fail_slots[i].nth != 0;
	__atomic_store_n(&fail_armed, armed, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&fail_lock);
	return rc;
}

/* A forked child is a new task: nothing armed (and a fresh lock). */
static void fail_nth_forked(void)
{
	pthread_mutex_init(&fail_lock, NULL);
	memset(fail_slots, 0, sizeof(fail_slots));
	__atomic_store_n(&fail_armed, 0, __ATOMIC_RELAXED);
}

/* /proc/self/task/T/fail-nth, /proc/<our pid>/task/T/fail-nth and
 * /proc/thread-self/fail-nth, when the emulation is on: n = T. */
static int classify_fail_nth(const char *path, uint32_t *n)
{
	char p[96];
	ensure_init();
	if (!fail_nth_env || normalise(path, p, sizeof(p)))
		return 0;
	if (!strcmp(p, "/proc/thread-self/fail-nth")) {
		*n = my_tid();
		return 1;
	}
	const char *rest;
	if (!strncmp(p, "/proc/self/task/", 16)) {
		rest = p + 16;
	} else {
		char own[48];
		int len = snprintf(own, sizeof(own), "/proc/%d/task/", (int)my_pid);
		if (strncmp(p, own, (size_t)len))
			return 0;
		rest = p + len;
	}
	char *end;
	unsigned long tid = strtoul(rest, &end, 10);
	if (end == rest || *rest == '0' || tid > INT32_MAX || strcmp(end, "/fail-nth"))
		return 0;
	*n = (uint32_t)tid;
	return 1;
}

static int fail_nth_open(uint32_t tid, int flags)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | ((flags & O_CLOEXEC) ? SOCK_CLOEXEC : 0), 0, sv))
		return -1;
	close(sv[1]);
	struct stat st;
	struct file *f = fstat(sv[0], &st) ? NULL : file_new(&st);
	if (!f) {
		close(sv[0]);
		errno = ENOMEM;
		return -1;
	}
	f->event = EV_FAIL_NTH;
	f->n = tid;
	f->described = 1;
	pthread_mutex_lock(&table_lock);
	f = insert_locked(f, 0);
	if (f)
		f->refs--;
	pthread_mutex_unlock(&table_lock);
	if (!f) {
		close(sv[0]);
		errno = ENOMEM;
		return -1;
	}
	return sv[0];
}

/* A read gives "%u\n" of what is left, from `off` (the file position for
 * read(), the argument for pread()). */
static ssize_t fail_nth_read(struct file *f, uint8_t *buf, size_t count, int64_t off)
{
	char text[16];
	int len = snprintf(text, sizeof(text), "%u\n", fail_nth_get((pid_t)f->n));
	pthread_mutex_lock(&f->lock);
	uint64_t at = off < 0 ? f->pos : (uint64_t)off;
	size_t take = at >= (uint64_t)len ? 0 : (size_t)len - (size_t)at;
	if (take > count)
		take = count;
	ssize_t rc = (ssize_t)take;
	if (take && copy_to_user((uintptr_t)buf, text + at, take))
		rc = -EFAULT;
	else if (off < 0)
		f->pos = at + take;
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* A write arms the task: an unsigned number (0x and 0 prefixes as base 0
 * reads them), an optional newline; 0 disarms. */
static ssize_t fail_nth_write(struct file *f, const uint8_t *buf, size_t count)
{
	char text[32];
	if (!count || count >= sizeof(text))
		return -EINVAL;
	if (copy_from_user(text, (uintptr_t)buf, count))
		return -EFAULT;
	text[count] = 0;
	if (text[count - 1] == '\n')
		text[count - 1] = 0;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 0);
	if (end == text || *end || text[0] == '-' || text[0] == '+' || text[0] == ' ')
		return -EINVAL;
	if (errno == ERANGE || v > UINT32_MAX)
		return -ERANGE;
	int rc = fail_nth_set((pid_t)f->n, (uint32_t)v);
	return rc ? rc : (ssize_t)count;
}

/* ---- /proc/<pid>/status with iommufd's charge (opt-in) -------------------------------------
 *
 * The kernel charges the pages iommufd pins to the mm they come from:
 * pinned_vm (VmPin) always, locked_vm (VmLck) too under RLIMIT_MODE 1, and
 * IOAS_CHANGE_PROCESS moves the charge to its caller. The model pins
 * nothing real, so with IOMMUD_PRELOAD_PROC_STATUS=1 an open or fopen of
 * /proc/self/status or /proc/<pid>/status reads the real file with the
 * daemon's count (OPEN of path kind 16) added to those two lines. */

static int classify_proc_status(const char *path, uint32_t *n)
{
	char p[64];
	ensure_init();
	if (!proc_status_env || normalise(path, p, sizeof(p)))
		return 0;
	if (!strcmp(p, "/proc/self/status")) {
		*n = (uint32_t)my_pid;
		return 1;
	}
	char *slash = strchr(p + 6, '/');
	if (!slash || strcmp(slash, "/status"))
		return 0;
	*slash = 0;
	return parse_n(p + 6, n) && *n;
}

/* What the daemon charges `pid`: 0, or -errno (no daemon: nothing to add). */
static int query_pins(uint32_t pid, uint64_t *pinned, uint64_t *locked)
{
	int s = connect_daemon(SOCK_SEQPACKET | SOCK_CLOEXEC);
	if (s < 0)
		return -errno;
	struct file f = { 0 };
	struct buf body = { 0 };
	buf_u32(&body, 0);
	struct msg m;
	int rc = body.err ? body.err : exchange(s, &f, K_OPEN, 0, PK_PINS, pid, &body, &m, 0);
	buf_free(&body);
	if (!rc) {
		if (m.h.result < 0)
			rc = m.h.result;
		else if (m.h.body_len < 16)
			rc = -EIO;
		else {
			*pinned = get64(m.body);
			*locked = get64(m.body + 8);
		}
		msg_release(&m);
	}
	close(s);
	return rc;
}

/* A line "Tag:\t<n> kB" with `add` kB more; 0 when it is no such line. */
static int add_kb(struct buf *out, const char *line, size_t len, const char *tag, uint64_t add)
{
	size_t tl = strlen(tag);
	if (len < tl || memcmp(line, tag, tl))
		return 0;
	unsigned long long kb = strtoull(line + tl, NULL, 10) + add;
	char text[64];
	int n = snprintf(text, sizeof(text), "%s\t%8llu kB", tag, kb);
	uint8_t *at = n > 0 ? buf_grow(out, (size_t)n) : NULL;
	if (at)
		memcpy(at, text, (size_t)n);
	return 1;
}

static int proc_status_open(uint32_t pid, int flags)
{
	char path[48];
	snprintf(path, sizeof(path), "/proc/%u/status", pid);
	struct buf text = { 0 };
	int rc = slurp(path, &text);
	if (rc) {
		buf_free(&text);
		errno = -rc;
		return -1;
	}
	uint64_t pinned = 0, locked = 0;
	int saved = errno;
	query_pins(pid, &pinned, &locked); /* no daemon: the kernel's own lines */
	errno = saved;
	uint64_t kb = (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
	struct buf out = { 0 };
	for (const char *line = (const char *)text.p; line && *line;) {
		const char *next = strchr(line, '\n');
		size_t len = next ? (size_t)(next - line) : strlen(line);
		if (!add_kb(&out, line, len, "VmPin:", pinned * kb) &&
		    !add_kb(&out, line, len, "VmLck:", locked * kb)) {
			uint8_t *at = buf_grow(&out, len);
			if (at)
				memcpy(at, line, len);
		}
		if (next) {
			uint8_t *nl = buf_grow(&out, 1);
			if (nl)
				*nl = '\n';
		}
		line = next ? next + 1 : NULL;
	}
	buf_free(&text);
	int fd = out.err ? -1 : memfd_create("status", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0) {
		buf_free(&out);
		errno = out.err ? ENOMEM : errno;
		return -1;
	}
	for (size_t done = 0; done < out.len;) {
		ssize_t w = raw_write(fd, out.p + done, out.len - done);
		if (w <= 0 && errno != EINTR) {
			close(fd);
			buf_free(&out);
			errno = EIO;
			return -1;
		}
		done += w > 0 ? (size_t)w : 0;
	}
	buf_free(&out);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

typedef FILE *(*fopen_fn)(const char *, const char *);
static void *next_fopen, *next_fopen64;

static FILE *status_fopen(const char *path, const char *mode, fopen_fn next)
{
	uint32_t pid;
	if (path && !strncmp(path, "/proc/", 6) && classify_proc_status(path, &pid) &&
	    mode[0] == 'r' && !strchr(mode, '+')) {
		int fd = proc_status_open(pid, strchr(mode, 'e') ? O_CLOEXEC : 0);
		if (fd < 0)
			return NULL;
		FILE *fp = fdopen(fd, mode);
		if (!fp)
			close(fd);
		return fp;
	}
	if (!next) {
		errno = ENOSYS;
		return NULL;
	}
	return next(path, mode);
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	return status_fopen(path, mode, NEXT(fopen_fn, fopen));
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	return status_fopen(path, mode, NEXT(fopen_fn, fopen64));
}

/* opendir() of /sys/kernel/debug opens IOMMUD_PRELOAD_DEBUGFS instead. */
EXPORT DIR *opendir(const char *name)
{
	char p[32];
	ensure_init();
	if (debugfs_env[0] && !strncmp(name, "/sys/", 5) && strlen(name) < sizeof(p) - 1) {
		size_t len = strlen(name);
		memcpy(p, name, len + 1);
		while (len > 1 && p[len - 1] == '/')
			p[--len] = 0;
		char q[32];
		if (!normalise(p, q, sizeof(q)) && !strcmp(q, "/sys/kernel/debug"))
			name = debugfs_env;
	}
	opendir_fn next = NEXT(opendir_fn, opendir);
	if (!next) {
		errno = ENOSYS;
		return NULL;
	}
	return next(name);
}

static int emu_open(uint32_t kind, uint32_t n, int flags)
{
	if (kind == PK_FAIL_NTH)
		return fail_nth_open(n, flags);
	if (kind == PK_PROC_STATUS)
		return proc_status_open(n, flags);
	int saved = errno, cancel;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	int fd = emu_open_connection(kind, n, flags);
	pthread_setcancelstate(cancel, NULL);
	if (fd >= 0)
		errno = saved;
	return fd;
}

static int needs_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

#define VA_MODE(flags, last)                             \
	mode_t mode = 0;                                 \
	if (needs_mode(flags)) {                         \
		va_list ap;                              \
		va_start(ap, last);                      \
		mode = (mode_t)va_arg(ap, int);          \
		va_end(ap);                              \
	}

static int fallback_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

/* O_PATH opens no device: let it through to the real node (if any). */
#define OURS(path, flags, kind, n) (!((flags) & O_PATH) && classify(path, kind, n))

EXPORT int open(const char *path, int flags, ...)
{
	VA_MODE(flags, flags);
	uint32_t kind, n;
	if (OURS(path, flags, &kind, &n))
		return emu_open(kind, n, flags);
	open_fn next = NEXT(open_fn, open);
	return next ? next(path, flags, mode) : fallback_openat(AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	VA_MODE(flags, flags);
	uint32_t kind, n;
	if (OURS(path, flags, &kind, &n))
		return emu_open(kind, n, flags);
	open_fn next = NEXT(open_fn, open64);
	return next ? next(path, flags, mode) : fallback_openat(AT_FDCWD, path, flags, mode);
}

EXPORT int __open_2(const char *path, int flags)
{
	uint32_t kind, n;
	if (OURS(path, flags, &kind, &n))
		return emu_open(kind, n, flags);
	open2_fn next = NEXT(open2_fn, __open_2);
	return next ? next(path, flags) : fallback_openat(AT_FDCWD, path, flags, 0);
}

EXPORT int __open64_2(const char *path, int flags)
{
	uint32_t kind, n;
	if (OURS(path, flags, &kind, &n))
		return emu_open(kind, n, flags);
	open2_fn next = NEXT(open2_fn, __open64_2);
	return next ? next(path, flags) : fallback_openat(AT_FDCWD, path, flags, 0);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	VA_MODE(flags, flags);
	uint32_t kind, n;
	if (OURS(path, flags, &kind, &n))
		return emu_open(kind, n, flags);
	openat_fn next = NEXT(openat_fn, openat);
	return next ? next(dirfd, path, flags, mode) : fallback_openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	VA_MODE(flags, flags);
	uint32_t kind, n;
	if (OURS(path, flags, &kind, &n))
		return emu_open(kind, n, flags);
	openat_fn next = NEXT(openat_fn, openat64);
	return next ? next(dirfd, path, flags, mode) : fallback_openat(dirfd, path, flags, mode);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	uint32_t kind, n;
	if (OURS(path, flags, &kind, &n))
		return emu_open(kind, n, flags);
	openat2_fn next = NEXT(openat2_fn, __openat_2);
	return next ? next(dirfd, path, flags) : fallback_openat(dirfd, path, flags, 0);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	uint32_t kind, n;
	if (OURS(path, flags, &kind, &n))
		return emu_open(kind, n, flags);
	openat2_fn next = NEXT(openat2_fn, __openat64_2);
	return next ? next(dirfd, path, flags) : fallback_openat(dirfd, path, flags, 0);
}

/* ---- ioctl ---------------------------------------------------------------------------- */

static int is_sized_by_kernel_rule(unsigned nr)
{
	return (nr >= NR_IOMMUFD_FIRST && nr <= NR_IOMMUFD_LAST) || nr == NR_DEVICE_BIND_IOMMUFD;
}

/* The first copy (docs/uapi-transport.md): what the shim sends with an IOCTL. */
static int first_copy(unsigned long req, uintptr_t arg, struct buf *body, uint16_t *flags)
{
	unsigned nr = _IOC_NR(req);
	switch (nr) {
	case NR_GET_API_VERSION:
	case NR_GROUP_UNSET_CONTAINER:
	case NR_DEVICE_RESET:
	case NR_CHECK_EXTENSION:
	case NR_SET_IOMMU:
		return 0; /* no argument, or an integer carried in `arg` */
	case NR_GROUP_SET_CONTAINER: {
		uint8_t *p = buf_grow(body, 4);
		if (!p)
			return body->err;
		return copy_from_user(p, arg, 4);
	}
	case NR_GROUP_GET_DEVICE_FD: {
		uint8_t tmp[4096];
		for (size_t got = 0; got < IUA_NAME_MAX;) {
			size_t c = 4096 - ((arg + got) & 4095); /* never across a page */
			if (c > IUA_NAME_MAX - got)
				c = IUA_NAME_MAX - got;
			if (copy_from_user(tmp, arg + got, c))
				return -EFAULT;
			uint8_t *z = memchr(tmp, 0, c);
			size_t take = z ? (size_t)(z - tmp) + 1 : c;
			uint8_t *p = buf_grow(body, take);
			if (!p)
				return body->err;
			memcpy(p, tmp, take);
			if (z)
				return 0;
			got += c;
		}
		return -EINVAL; /* longer than a page, as strndup_user says */
	}
	default: {
		/* One read for the size and the struct: as much of the first copy
		 * as lies in arg's 4 KiB page (no fault there that the size word's
		 * read would not meet), and a second read only for the rest. */
		uint8_t head[IUA_FIRST_MAX];
		size_t in_page = 4096 - (arg & 4095);
		size_t got = in_page < sizeof(head) ? in_page : sizeof(head);
		if (got < 4)
			got = 4;
		if (copy_from_user(head, arg, got))
			return -EFAULT;
		uint32_t size;
		memcpy(&size, head, 4); /* the caller's struct: native order */
		size_t first = size < IUA_FIRST_MAX ? size : IUA_FIRST_MAX;
		uint8_t *p = buf_grow(body, 4 + first);
		if (!p)
			return body->err;
		put32(p, size);
		if (first <= got)
			memcpy(p + 4, head, first);
		else if (copy_from_user(p + 4, arg, first))
			return -EFAULT;
		/* The daemon's write-back must not fault after it acted. */
		if (copy_to_user(arg, p + 4, first))
			return -EFAULT;
		if (size > IUA_FIRST_MAX) {
			uint8_t tmp[4096];
			for (uintptr_t at = arg + IUA_FIRST_MAX, end = arg + size; at < end;) {
				size_t c = end - at < sizeof(tmp) ? end - at : sizeof(tmp);
				if (copy_from_user(tmp, at, c)) {
					/* The kernel's zero check faults for the
					 * size-checked ioctls; VFIO never reads it. */
					if (is_sized_by_kernel_rule(nr))
						return -EFAULT;
					break;
				}
				int nonzero = 0;
				for (size_t i = 0; i < c && !nonzero; i++)
					nonzero = tmp[i] != 0;
				if (nonzero) {
					*flags |= FL_TAIL_NONZERO;
					break;
				}
				at += c;
			}
		}
		return 0;
	}
	}
}

static int install_newfd(int fd, uint32_t flags, uint64_t token, int event)
{
	if (!(flags & NEWFD_CLOEXEC)) {
		int fdf = fcntl(fd, F_GETFD);
		if (fdf >= 0)
			fcntl(fd, F_SETFD, fdf & ~FD_CLOEXEC);
	}
	struct stat st;
	if (fstat(fd, &st) || !S_ISSOCK(st.st_mode))
		return 0; /* a memfd (dma-buf): nothing to serve */
	struct file *f = file_new(&st);
	if (!f)
		return -ENOMEM;
	f->token = token;
	f->described = 1;
	f->event = event;
	pthread_mutex_lock(&table_lock);
	f = insert_locked(f, 0);
	if (f)
		f->refs--;
	pthread_mutex_unlock(&table_lock);
	return f ? 0 : -ENOMEM;
}

/* Apply a REPLY's items in order; the call's result. */
static long apply_reply(struct msg *m, unsigned nr)
{
	long result = m->h.result;
	int installed[IUA_MAX_FDS], ninstalled = 0;
	const uint8_t *p = m->body, *end = m->body + m->h.body_len;
	if (m->h.body_len == 0)
		return result;
	if (end - p < 4)
		return -EIO;
	uint32_t count = get32(p);
	p += 4;
	for (uint32_t i = 0; i < count; i++) {
		if (end - p < 8) {
			result = -EIO;
			break;
		}
		uint32_t type = get32(p);
		if (type == REP_WRITE) {
			if (end - p < 16) {
				result = -EIO;
				break;
			}
			uint32_t len = get32(p + 4);
			uint64_t addr = get64(p + 8);
			if ((size_t)(end - p - 16) < len) {
				result = -EIO;
				break;
			}
			if (copy_to_user((uintptr_t)addr, p + 16, len)) {
				result = -EFAULT; /* the kernel stops at its first failed copy */
				break;
			}
			p += 16 + (size_t)len;
		} else if (type == REP_COPY) {
			if (end - p < 24) {
				result = -EIO;
				break;
			}
			uint32_t len = get32(p + 4);
			if (user_move((uintptr_t)get64(p + 8), (uintptr_t)get64(p + 16), len)) {
				result = -EFAULT;
				break;
			}
			p += 24;
		} else if (type == REP_NEWFD) {
			if (end - p < 24) {
				result = -EIO;
				break;
			}
			uint32_t fl = get32(p + 4);
			uint64_t addr = get64(p + 8), token = get64(p + 16);
			p += 24;
			int fd = msg_take_fd(m);
			if (fd < 0) {
				result = -EIO;
				break;
			}
			installed[ninstalled++] = fd;
			int event = nr == NR_FAULT_QUEUE_ALLOC ? EV_FAULT
				    : nr == NR_VEVENTQ_ALLOC   ? EV_VEVENTQ
							       : EV_NONE;
			int rc = install_newfd(fd, fl, token, event);
			if (rc)
				result = rc;
			if (addr) {
				int32_t v = fd;
				if (copy_to_user((uintptr_t)addr, &v, sizeof(v))) {
					result = -EFAULT;
					break;
				}
			}
			if ((fl & NEWFD_RESULT) && result >= 0)
				result = fd; /* GROUP_GET_DEVICE_FD: the fd is the result */
			if (ninstalled == IUA_MAX_FDS)
				break;
		} else {
			result = -EIO;
			break;
		}
	}
	if (result < 0)
		for (int i = 0; i < ninstalled; i++)
			close(installed[i]); /* as the kernel, which installs fds last */
	return result;
}

/* IOAS_MAP's user range [user_va, user_va + length) has a hole: the pages a
 * pin would meet are not all mapped (the kernel's GUP then fails EFAULT).
 * msync with MS_ASYNC writes nothing and fails ENOMEM where part of the range
 * is unmapped, in one call whatever the length; by syscall(), which is no
 * cancellation point. Whether the map pins is the daemon's to decide. */
static int ioas_map_has_hole(const struct buf *body)
{
	uint64_t va, len;
	if (body->len < 4 + 32)
		return 0;
	memcpy(&va, body->p + 4 + 16, 8); /* iommu_ioas_map: user_va at 16, length at 24 */
	memcpy(&len, body->p + 4 + 24, 8);
	if (!len || va + len < va)
		return 0;
	uint64_t start = va & ~((uint64_t)getpagesize() - 1);
	int saved = errno;
	int hole = syscall(SYS_msync, (uintptr_t)start, (size_t)(va + len - start), MS_ASYNC) < 0 &&
		   errno == ENOMEM;
	errno = saved;
	return hole;
}

static long emu_ioctl(int fd, struct file *f, unsigned long req, uintptr_t arg)
{
	struct buf body = { 0 };
	uint16_t flags = 0;
	int rc = first_copy(req, arg, &body, &flags);
	if (rc) {
		buf_free(&body);
		return rc;
	}
	if (_IOC_NR(req) == NR_IOAS_MAP && ioas_map_has_hole(&body))
		flags |= FL_USER_HOLE;
	/* This task's fail-nth, armed through its emulated file: the daemon's
	 * walk of this ioctl counts it down. */
	uint32_t nth = __atomic_load_n(&fail_armed, __ATOMIC_RELAXED) ? fail_nth_get((pid_t)my_tid()) : 0;
	if (nth > INT32_MAX)
		nth = INT32_MAX;
	if (nth)
		flags |= FL_FAIL_NTH;
	struct msg m;
	/* poll() is a cancellation point: a thread cancelled mid-exchange
	 * would leave the connection locked and half-read. */
	int cancel;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	pthread_mutex_lock(&f->lock);
	rc = describe_locked(fd, f);
	if (!rc)
		rc = exchange(fd, f, K_IOCTL, flags, req, arg, &body, &m, (int32_t)nth);
	pthread_mutex_unlock(&f->lock);
	pthread_setcancelstate(cancel, NULL);
	buf_free(&body);
	if (rc)
		return rc;
	if (nth)
		fail_nth_set((pid_t)my_tid(), m.h.arg > nth ? nth : (uint32_t)m.h.arg);
	long result = apply_reply(&m, _IOC_NR(req));
	msg_release(&m);
	return result;
}

/* ioctls that the VFS serves for every file before the driver sees them. */
static int vfs_generic(unsigned long req)
{
	return req == FIOCLEX || req == FIONCLEX || req == FIONBIO || req == FIOASYNC;
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	int saved = errno;
	if (_IOC_TYPE(req) == UAPI_TYPE) {
		struct file *f = file_get(fd, 1);
		if (f) {
			/* A fault queue or vEVENTQ fd has no ioctls. */
			long r = f->event ? -ENOTTY : emu_ioctl(fd, f, req, (uintptr_t)arg);
			file_put(f);
			errno = r < 0 ? (int)-r : saved;
			return r < 0 ? -1 : (int)r;
		}
	} else if (__atomic_load_n(&table_used, __ATOMIC_RELAXED) && !vfs_generic(req)) {
		struct file *f = file_get(fd, 0);
		if (f) {
			file_put(f);
			errno = ENOTTY; /* /dev/iommu and VFIO know only ';' */
			return -1;
		}
	}
	errno = saved;
	ioctl_fn next = NEXT(ioctl_fn, ioctl);
	return next ? next(fd, req, arg) : (int)syscall(SYS_ioctl, fd, req, arg);
}

/* ---- mmap of an iommufd ---------------------------------------------------------------- */

/* An iommufd's regions (a vIOMMU's, iommufd_fops_mmap) are the daemon's: an
 * MMAP record (cmd the offset, arg the length in whole pages, body {u32 prot,
 * u32 flags}) asks for one; the REPLY's body is its bytes, copied into an
 * anonymous shared mapping. The mapping holds the region until a munmap
 * covering all of it sends MUNMAP (cmd the offset) on a connection of the
 * same file; a file whose every fd is closed has released its context and
 * the mapping's hold with it. A partial munmap shrinks the record (a cut in
 * the middle keeps it whole), and a forked child's records are the parent's. */
struct emu_map {
	uintptr_t addr;
	size_t len;
	uint64_t offset;
	dev_t dev;
	ino_t ino;
	struct emu_map *next;
};
static struct emu_map *emu_maps; /* under maps_lock */
static int emu_maps_used;        /* atomic: emu_maps != NULL, munmap's fast path */
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t page_size(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	return ps > 0 ? (size_t)ps : 4096;
}

/* An fd of this process on the socket (dev, ino), or -1. */
static int fd_of_socket(dev_t dev, ino_t ino)
{
	int dfd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	char dents[4096] __attribute__((aligned(8)));
	int found = -1;
	while (found < 0) {
		long n = syscall(SYS_getdents64, dfd, dents, sizeof(dents));
		if (n <= 0)
			break;
		for (long off = 0; off < n && found < 0;) {
			struct dirent64 *d = (struct dirent64 *)(void *)(dents + off);
			off += d->d_reclen;
			char *end;
			long fd = strtol(d->d_name, &end, 10);
			struct stat st;
			if (*end || end == d->d_name || fd == dfd || fstat((int)fd, &st))
				continue;
			if (S_ISSOCK(st.st_mode) && st.st_dev == dev && st.st_ino == ino)
				found = (int)fd;
		}
	}
	close(dfd);
	return found;
}

static void send_munmap(int fd, struct file *f, uint64_t offset)
{
	struct msg m;
	pthread_mutex_lock(&f->lock);
	if (!exchange(fd, f, K_MUNMAP, 0, offset, 0, NULL, &m, 0))
		msg_release(&m);
	pthread_mutex_unlock(&f->lock);
}

static void *emu_mmap(int fd, struct file *f, void *addr, size_t len, int prot, int flags,
		      off_t off, mmap_fn next)
{
	size_t ps = page_size();
	if (!len || (off & (off_t)(ps - 1))) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	size_t plen = (len + ps - 1) & ~(ps - 1);
	struct buf body = { 0 };
	buf_u32(&body, (uint32_t)prot);
	buf_u32(&body, (uint32_t)flags);
	struct msg m;
	int rc = body.err;
	if (!rc) {
		pthread_mutex_lock(&f->lock);
		rc = exchange(fd, f, K_MMAP, 0, (uint64_t)off, plen, &body, &m, 0);
		pthread_mutex_unlock(&f->lock);
	}
	buf_free(&body);
	if (rc) {
		errno = -rc;
		return MAP_FAILED;
	}
	if (m.h.result < 0 || m.h.body_len != plen) {
		errno = m.h.result < 0 ? -m.h.result : EIO;
		msg_release(&m);
		return MAP_FAILED;
	}
	struct stat st;
	struct emu_map *rec = malloc(sizeof(*rec));
	/* Anonymous shared memory at the caller's address and with its other
	 * flags (MAP_FIXED, MAP_POPULATE, ...): the region's bytes go in. */
	int anon = (flags & ~(MAP_TYPE | MAP_ANONYMOUS | MAP_HUGETLB | (0x3f << MAP_HUGE_SHIFT)))
		   | MAP_SHARED | MAP_ANONYMOUS;
	void *p = MAP_FAILED;
	if (rec && !fstat(fd, &st))
		p = next ? next(addr, plen, prot | PROT_WRITE, anon, -1, 0)
			 : (void *)syscall(SYS_mmap, addr, plen, prot | PROT_WRITE, anon, -1, 0);
	if (p == MAP_FAILED) {
		int e = rec ? errno : ENOMEM;
		msg_release(&m);
		free(rec);
		send_munmap(fd, f, (uint64_t)off); /* give the hold back */
		errno = e;
		return MAP_FAILED;
	}
	memcpy(p, m.body, plen);
	msg_release(&m);
	if (!(prot & PROT_WRITE))
		mprotect(p, plen, prot);
	*rec = (struct emu_map){ (uintptr_t)p, plen, (uint64_t)off, st.st_dev, st.st_ino, NULL };
	pthread_mutex_lock(&maps_lock);
	rec->next = emu_maps;
	emu_maps = rec;
	__atomic_store_n(&emu_maps_used, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&maps_lock);
	return p;
}

static void *mmap_common(void *addr, size_t len, int prot, int flags, int fd, off_t off, mmap_fn next)
{
	if (fd >= 0 && !(flags & MAP_ANONYMOUS) && __atomic_load_n(&table_used, __ATOMIC_RELAXED)) {
		int saved = errno;
		struct file *f = file_get(fd, 0);
		if (f && (f->kind == PK_IOMMU || f->kind == PK_CONTAINER)) {
			void *p = emu_mmap(fd, f, addr, len, prot, flags, off, next);
			file_put(f);
			if (p != MAP_FAILED)
				errno = saved;
			return p;
		}
		if (f)
			file_put(f);
		errno = saved;
	}
	return next ? next(addr, len, prot, flags, fd, off)
		    : (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap_common(addr, len, prot, flags, fd, off, NEXT(mmap_fn, mmap));
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap_common(addr, len, prot, flags, fd, off, NEXT(mmap_fn, mmap64));
}

EXPORT int munmap(void *addr, size_t len)
{
	if (__atomic_load_n(&emu_maps_used, __ATOMIC_RELAXED)) {
		size_t ps = page_size();
		uintptr_t lo = (uintptr_t)addr, hi = lo + ((len + ps - 1) & ~(ps - 1));
		struct emu_map *gone = NULL;
		pthread_mutex_lock(&maps_lock);
		for (struct emu_map **pp = &emu_maps; *pp;) {
			struct emu_map *r = *pp;
			uintptr_t end = r->addr + r->len;
			if (hi <= r->addr || lo >= end) {
				pp = &r->next;
			} else if (lo <= r->addr && hi >= end) {
				*pp = r->next; /* all of it: the hold goes */
				r->next = gone;
				gone = r;
			} else {
				if (lo <= r->addr) { /* the head */
					r->len = end - hi;
					r->addr = hi;
				} else if (hi >= end) { /* the tail */
					r->len = lo - r->addr;
				}
				pp = &r->next;
			}
		}
		__atomic_store_n(&emu_maps_used, emu_maps != NULL, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&maps_lock);
		while (gone) {
			struct emu_map *r = gone;
			gone = r->next;
			int saved = errno;
			int fd = fd_of_socket(r->dev, r->ino);
			struct file *f = fd >= 0 ? file_get(fd, 0) : NULL;
			if (f) { /* else the file is released, and the hold with it */
				send_munmap(fd, f, r->offset);
				file_put(f);
			}
			errno = saved;
			free(r);
		}
	}
	munmap_fn next = NEXT(munmap_fn, munmap);
	return next ? next(addr, len) : (int)syscall(SYS_munmap, addr, len);
}

/* ---- read and write on daemon-made event fds ---------------------------------------- */

/* The event fd's kind, or EV_NONE for every other fd (cheaply, while the
 * process has no event fds at all). */
static struct file *event_file(int fd)
{
	if (!__atomic_load_n(&event_files, __ATOMIC_RELAXED))
		return NULL;
	int saved = errno;
	struct file *f = file_get(fd, 0);
	if (f && f->event == EV_NONE) {
		file_put(f);
		f = NULL;
	}
	errno = saved;
	return f;
}

/* A vEVENTQ's read is the daemon's (a READ record: the queue, its depth and
 * its lost-events header live there): the doorbells waiting on the socket
 * (empty EVENT records, which make poll() readable while the queue has
 * records) are drained first, then one exchange, whose REPLY writes the
 * records into buf and returns the count read (or -errno). A REPLY flagged
 * BELL has a doorbell right behind it: the read returns once it is there, so
 * that a poll() after the read sees what is left. */
/* Drop the doorbells waiting on an event fd's socket (caller holds f->lock). */
static void drain_bells(int fd)
{
	for (;;) {
		uint8_t head[IUA_HDR_LEN];
		ssize_t n = recv(fd, head, sizeof(head), MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < (ssize_t)IUA_HDR_LEN)
			break;
		struct hdr h;
		hdr_decode(&h, head);
		if (h.magic != IUA_MAGIC || h.kind != K_EVENT)
			break;
		recv(fd, NULL, 0, MSG_DONTWAIT); /* a doorbell */
	}
}

static ssize_t veventq_read(int fd, struct file *f, uint8_t *buf, size_t count)
{
	pthread_mutex_lock(&f->lock);
	drain_bells(fd);
	struct msg m;
	long rc = exchange(fd, f, K_READ, 0, (uint64_t)count, (uintptr_t)buf, NULL, &m, 0);
	if (!rc) {
		int bell = m.h.flags & FL_BELL;
		rc = apply_reply(&m, 0);
		msg_release(&m);
		if (bell)
			wait_io(fd, POLLIN, now_ms() + timeout_ms);
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* A fault queue's read is the daemon's too (a READ record, the kernel's
 * rules there: whole records, a first group that does not fit EINVAL,
 * the groups read getting their response cookies); only a count that is not
 * whole records is refused here first (ESPIPE, as the kernel does first). */
static ssize_t event_read(int fd, struct file *f, uint8_t *buf, size_t count)
{
	if (f->event == EV_FAULT && count % FAULT_RECORD)
		return -ESPIPE;
	return veventq_read(fd, f, buf, count);
}

/* A fault queue takes page responses: the daemon reads them from buf (a
 * NEED round, one item per response, so that the kernel's stop at the first
 * response it cannot copy is kept) and answers the bytes taken (a WRITE
 * record, with the doorbells drained as for a read). A vEVENTQ has no write. */
static ssize_t event_write(int fd, struct file *f, const uint8_t *buf, size_t count)
{
	if (f->event != EV_FAULT)
		return -EINVAL;
	if (count % FAULT_RESPONSE)
		return -ESPIPE;
	if (!count)
		return 0;
	pthread_mutex_lock(&f->lock);
	drain_bells(fd);
	struct msg m;
	long rc = exchange(fd, f, K_WRITE, 0, (uint64_t)count, (uintptr_t)buf, NULL, &m, 0);
	if (!rc) {
		int bell = m.h.flags & FL_BELL;
		rc = apply_reply(&m, 0);
		msg_release(&m);
		if (bell)
			wait_io(fd, POLLIN, now_ms() + timeout_ms);
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

EXPORT ssize_t read(int fd, void *buf, size_t count)
{
	struct file *f = event_file(fd);
	if (f) {
		int saved = errno, cancel;
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
		ssize_t r = f->event == EV_FAIL_NTH ? fail_nth_read(f, buf, count, -1)
						    : event_read(fd, f, buf, count);
		pthread_setcancelstate(cancel, NULL);
		file_put(f);
		errno = r < 0 ? (int)-r : saved;
		return r < 0 ? -1 : r;
	}
	read_fn next = NEXT(read_fn, read);
	return next ? next(fd, buf, count) : raw_read(fd, buf, count);
}

EXPORT ssize_t write(int fd, const void *buf, size_t count)
{
	struct file *f = event_file(fd);
	if (f) {
		int saved = errno;
		ssize_t r = f->event == EV_FAIL_NTH ? fail_nth_write(f, buf, count)
						    : event_write(fd, f, buf, count);
		file_put(f);
		errno = r < 0 ? (int)-r : saved;
		return r < 0 ? -1 : r;
	}
	write_fn next = NEXT(write_fn, write);
	return next ? next(fd, buf, count) : raw_write(fd, buf, count);
}

/* pread and pwrite: a fail-nth file's (the rest go to libc: a daemon-made
 * event fd is a socket, which has no offsets: ESPIPE, as its kernel file). */
static ssize_t fail_nth_pio(int fd, void *buf, size_t count, off_t off, int write_it, int *handled)
{
	struct file *f = event_file(fd);
	if (!f || f->event != EV_FAIL_NTH) {
		if (f)
			file_put(f);
		*handled = 0;
		return 0;
	}
	*handled = 1;
	int saved = errno;
	ssize_t r = off < 0 ? -EINVAL
		    : write_it ? fail_nth_write(f, buf, count)
			       : fail_nth_read(f, buf, count, off);
	file_put(f);
	errno = r < 0 ? (int)-r : saved;
	return r < 0 ? -1 : r;
}

EXPORT ssize_t pread(int fd, void *buf, size_t count, off_t off)
{
	int handled;
	ssize_t r = fail_nth_pio(fd, buf, count, off, 0, &handled);
	if (handled)
		return r;
	pread_fn next = NEXT(pread_fn, pread);
	return next ? next(fd, buf, count, off) : syscall(SYS_pread64, fd, buf, count, off);
}

EXPORT ssize_t pread64(int fd, void *buf, size_t count, off_t off)
{
	int handled;
	ssize_t r = fail_nth_pio(fd, buf, count, off, 0, &handled);
	if (handled)
		return r;
	pread_fn next = NEXT(pread_fn, pread64);
	return next ? next(fd, buf, count, off) : syscall(SYS_pread64, fd, buf, count, off);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
	int handled;
	ssize_t r = fail_nth_pio(fd, (void *)buf, count, off, 1, &handled);
	if (handled)
		return r;
	pwrite_fn next = NEXT(pwrite_fn, pwrite);
	return next ? next(fd, buf, count, off) : syscall(SYS_pwrite64, fd, buf, count, off);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t count, off_t off)
{
	int handled;
	ssize_t r = fail_nth_pio(fd, (void *)buf, count, off, 1, &handled);
	if (handled)
		return r;
	pwrite_fn next = NEXT(pwrite_fn, pwrite64);
	return next ? next(fd, buf, count, off) : syscall(SYS_pwrite64, fd, buf, count, off);
}
