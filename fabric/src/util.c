/*
 * util.c - small helpers: name validation, clocks, randomness, process
 * identity (start time from /proc), and the fork generation that makes
 * inherited handles invalid in a child.
 */
#include "internal.h"
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

_Atomic unsigned fab__fork_gen;
int fab__mb_ok;         /* the kernel has MEMBARRIER_CMD_GLOBAL_EXPEDITED */
int fab__mb_registered; /* this process receives those barriers */

/*
 * Asymmetric Dekker handshake (as liburcu's membarrier flavour): a sleeper
 * that announced itself issues membarrier(GLOBAL_EXPEDITED), which runs a
 * full barrier on every running thread of every registered process.  A
 * registered waker therefore needs only a compiler barrier between its
 * publication and its read of the waiter count, so the fast path has no
 * fence.  A process that could not register keeps the fence (fab__wake).
 */
static void fab__membarrier_register(void)
{
	long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	fab__mb_ok = q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
		     (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
	fab__mb_registered =
		fab__mb_ok &&
		syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}

void fab__membarrier(void)
{
	if (fab__mb_ok)
		syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
}

static void fab__atfork_child(void)
{
	/* Relaxed: the child is single-threaded here; handles compare their
	 * stored generation with this on every call. */
	atomic_fetch_add_explicit(&fab__fork_gen, 1, memory_order_relaxed);
	/* The registration belongs to the address space; make sure the
	 * child's new one is registered too before it may skip fences. */
	fab__membarrier_register();
	/* The parent's liveness locks are the parent's (proc.c). */
	fab__live_forget_all();
}

__attribute__((constructor)) static void fab__init(void)
{
	fab__membarrier_register();
	pthread_atfork(fab__live_fork_prepare, fab__live_fork_parent, fab__atfork_child);
}

/*
 * An options struct of `size` bytes from a caller built against a newer
 * fab.h than this library's (`size` > `known`): the fields this library
 * does not know must be zero, as the kernel does for clone3/openat2
 * (copy_struct_from_user).  Otherwise an option the caller set would be
 * ignored without a word (found by a binding trial: a nonzero byte past
 * the known fields was accepted).  FAB_EINVAL naming the first such byte,
 * or 0.
 */
int fab__opts_tail(const void *opts, uint32_t size, size_t known, const char *what)
{
	const unsigned char *b = opts;
	for (size_t i = known; i < size; i++)
		if (b[i])
			return fab__err(FAB_EINVAL,
					"%s: byte %zu is set, past the %zu this libfab %s knows "
					"(built against a newer fab.h? those options are not supported here)",
					what, i, known, fab_version());
	return 0;
}

/*
 * The caller's fab_chan_opts (NULL: all defaults) into *out, a zeroed
 * struct of this library's size, for fab_chan_create and fab_topic_create.
 * `size` must reach `kind`, stop at the end of a field (a caller's struct
 * of an older fab.h ends at one of its fields, or its padding), and stay
 * below 4096; bytes past what this library knows must be zero
 * (fab__opts_tail).  A size that ends inside a field took half of it, and
 * half a dead_letter pointer was then read as a string (found by an
 * adversarial trial: a segfault for sizes 33..39).  FAB_EINVAL or 0.
 */
int fab__chan_opts_in(const fab_chan_opts *o, fab_chan_opts *out)
{
	static const uint32_t ends[] = {
		offsetof(fab_chan_opts, kind),          offsetof(fab_chan_opts, delivery),
		offsetof(fab_chan_opts, producers),
		offsetof(fab_chan_opts, max_inflight),  offsetof(fab_chan_opts, max_deliveries),
		offsetof(fab_chan_opts, dead_letter),   offsetof(fab_chan_opts, mode),
		offsetof(fab_chan_opts, mode) + sizeof(uint32_t)};
	memset(out, 0, sizeof *out);
	if (!o)
		return 0;
	bool whole = o->size >= sizeof *out && o->size <= 4096;
	for (size_t i = 0; i < sizeof ends / sizeof ends[0] && !whole; i++)
		whole = o->size == ends[i];
	if (!whole)
		return fab__err(FAB_EINVAL,
				"fab_chan_opts.size %u ends inside a field or is out of range: set it "
				"to sizeof(fab_chan_opts)",
				o->size);
	int rc;
	if (o->size > sizeof *out && (rc = fab__opts_tail(o, o->size, sizeof *out, "fab_chan_opts")))
		return rc;
	memcpy(out, o, o->size < sizeof *out ? o->size : sizeof *out);
	return 0;
}

/*
 * Copy a result struct (its first member the uint32_t size) out to a caller
 * whose struct has `size` bytes: at most that many; a larger one gets the
 * bytes this library does not know zeroed and `size` set to the bytes it
 * filled, so a caller built against a newer fab.h can tell "zero" from "not
 * supported" (found by a binding trial; as the kernel's sched_getattr).  A
 * smaller one keeps its size.
 */
void fab__out_struct(void *out, const void *ours, size_t ours_size)
{
	uint32_t size;
	memcpy(&size, out, sizeof size);
	if (size <= ours_size) {
		memcpy(out, ours, size);
		memcpy(out, &size, sizeof size);
		return;
	}
	memcpy(out, ours, ours_size);
	memset((char *)out + ours_size, 0, size - ours_size);
	uint32_t filled = (uint32_t)ours_size;
	memcpy(out, &filled, sizeof filled);
}

int fab__name_ok(const char *name)
{
	if (!name)
		return 0;
	size_t n = 0;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		if (n >= FAB_NAME_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	return n >= 1;
}

int64_t fab__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t fab__realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

uint64_t fab__random64(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
		/* Fallback mixes time and pid; uniqueness, not secrecy, is what
		 * producer ids need. */
		v = (uint64_t)fab__now_ns() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
	}
	return v ? v : 1;
}

/* Does process pid map the shm object (dev, ino)?  1 yes, 0 no, -1 when
 * its /proc/<pid>/maps cannot be read (another user's, hidepid) or shows
 * no mapping at all (found by review: a live process whose main thread
 * exited has an empty maps under its pid).  Each line of maps is
 * "start-end perms offset major:minor inode [path]"; the device and inode
 * identify the object even after an unlink, so a mapping of an older
 * segment of the same name is not taken for ours.  Read in chunks, so a
 * line longer than the buffer is skipped, never misparsed. */
int fab__proc_maps_object(int pid, uint64_t dev, uint64_t ino)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t have = 0;
	int found = 0, lines = 0;
	bool skipping = false; /* inside a line longer than buf */
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return -1;
		}
		have += (size_t)n;
		char *line = buf, *nl;
		while (!found && (nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
			*nl = 0;
			unsigned maj, min;
			unsigned long long in;
			if (!skipping &&
			    sscanf(line, "%*x-%*x %*4s %*x %x:%x %llu", &maj, &min, &in) == 3 &&
			    in == ino && makedev(maj, min) == dev)
				found = 1;
			skipping = false;
			lines++;
			line = nl + 1;
		}
		size_t rest = have - (size_t)(line - buf);
		if (rest == sizeof buf - 1) {
			rest = 0; /* no newline in a full buffer: skip that line */
			skipping = true;
		}
		memmove(buf, line, rest);
		have = rest;
		if (found || n == 0)
			break;
	}
	close(fd);
	/* No mapping at all: a kernel thread, which maps nothing (so no
	 * fabric: found by review, such a pid kept a claim alive), or a
	 * process whose main thread has exited while others run (its leader,
	 * whose pid this is, shows no memory map), or one being torn down;
	 * of those, its maps say nothing: cannot tell. */
	if (!found && !lines)
		return fab__proc_is_kthread(pid) ? 0 : -1;
	return found;
}
