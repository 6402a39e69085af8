/*
 * fault_test.c - injected failures of malloc, calloc, mmap, ftruncate,
 * shm_open, fchmod and posix_fallocate at the N-th call inside one libfab
 * call (STYLE.md, "Tests": anomaly tests).
 *
 * How: this program links the static libfab with -Wl,--wrap=<fn> for every
 * one of those functions libfab calls (nm -u libfab.a), so each call from
 * libfab (and from this file) goes to __wrap_<fn> below.  While `fi.armed`
 * is set, a wrapper counts the call and fails the N-th one (one-shot mode)
 * or the N-th and every later one (sticky mode), with the errno a real
 * failure would give; otherwise, and always outside the armed window, it
 * calls __real_<fn>.  Only the one libfab call under test runs armed, so
 * Check, ASan and this file's own allocations are never counted.
 *
 * For N = 1, 2, ... until a run sees no injected failure, each test checks
 * that the failed call returned FAB_ENOMEM or FAB_ESYS (the code that fits
 * the injected failure) with a detail message, left *out NULL, and left no
 * state behind: no segment, registry entry, attachment, spsc end, mapping,
 * file descriptor or fabric reference (a leaked reference keeps the control
 * segment mapped after fab_fabric_close).  Then the same call, not injected,
 * must succeed and the object must work.  Assertions are on codes and on
 * state, never on timing.
 *
 * FAB_FAULT_TRACE=1 prints, for each operation, the wrapped calls it makes;
 * t_ctx_cancel_no_memory is the regression test of a fixed bug: a cancel
 * that could not allocate its work list reached only the root context.
 *
 * Cleanup: Check (fork mode) skips the rest of a test after a failed
 * assertion, so every fabric is named "tfault<runner>-<pid>-<n>"
 * (ft_fabric_name) and main() destroys whatever is left with that prefix,
 * as tests/unit/unit.h does.  A passing run that leaves a segment fails.
 */
#include "fabtest.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/stat.h>

#define FI_MAX_N 200 /* give up if an operation makes more wrapped calls */

/* ---- the wrappers -------------------------------------------------------- */

enum fi_fn {
	FI_MALLOC,
	FI_CALLOC,
	FI_MMAP,
	FI_FTRUNCATE,
	FI_SHM_OPEN,
	FI_FCHMOD,
	FI_FALLOCATE,
	FI_NFN
};

static const char *const fi_fn_name[FI_NFN] = {"malloc",   "calloc", "mmap",          "ftruncate",
					       "shm_open", "fchmod", "posix_fallocate"};
/* The errno each injected failure sets: what the real call gives when the
 * machine is out of memory, out of descriptors, or the disk/tmpfs fails;
 * posix_fallocate returns it (ENOSPC: /dev/shm is full). */
static const int fi_fn_errno[FI_NFN] = {ENOMEM, ENOMEM, ENOMEM, EIO, EMFILE, EIO, ENOSPC};

static struct {
	bool armed;
	bool sticky;         /* fail every call from the N-th on, not only the N-th */
	long fail_at;        /* 1-based call to fail */
	long calls;          /* wrapped calls seen while armed */
	long per_fn[FI_NFN]; /* the same, by function */
	int failed_fn;       /* the first function failed, -1 none */
	long nfailed;        /* how many calls were failed */
} fi = {.failed_fn = -1};

static bool fi_hit(enum fi_fn f)
{
	if (!fi.armed)
		return false;
	fi.calls++;
	fi.per_fn[f]++;
	if (fi.calls == fi.fail_at || (fi.sticky && fi.calls > fi.fail_at)) {
		if (fi.failed_fn < 0)
			fi.failed_fn = (int)f;
		fi.nfailed++;
		errno = fi_fn_errno[f];
		return true;
	}
	return false;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t sz);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_ftruncate(int fd, off_t len);
int __real_shm_open(const char *name, int oflag, mode_t mode);
int __real_fchmod(int fd, mode_t mode);
int __real_posix_fallocate(int fd, off_t off, off_t len);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t sz);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __wrap_ftruncate(int fd, off_t len);
int __wrap_shm_open(const char *name, int oflag, mode_t mode);
int __wrap_fchmod(int fd, mode_t mode);
int __wrap_posix_fallocate(int fd, off_t off, off_t len);

void *__wrap_malloc(size_t n)
{
	return fi_hit(FI_MALLOC) ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t sz)
{
	return fi_hit(FI_CALLOC) ? NULL : __real_calloc(n, sz);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return fi_hit(FI_MMAP) ? MAP_FAILED : __real_mmap(addr, len, prot, flags, fd, off);
}

int __wrap_ftruncate(int fd, off_t len)
{
	return fi_hit(FI_FTRUNCATE) ? -1 : __real_ftruncate(fd, len);
}

int __wrap_shm_open(const char *name, int oflag, mode_t mode)
{
	return fi_hit(FI_SHM_OPEN) ? -1 : __real_shm_open(name, oflag, mode);
}

int __wrap_fchmod(int fd, mode_t mode)
{
	return fi_hit(FI_FCHMOD) ? -1 : __real_fchmod(fd, mode);
}

int __wrap_posix_fallocate(int fd, off_t off, off_t len)
{
	return fi_hit(FI_FALLOCATE) ? ENOSPC : __real_posix_fallocate(fd, off, len);
}

/* shm_unlink is not in the N-th-call sweep (no call above needs it): it
 * fails, with EPERM as for another user's segment in sticky /dev/shm, only
 * at the unlink_fail_at-th call while that is set (t_destroy_refused). */
static long unlink_fail_at, unlink_calls;
int __real_shm_unlink(const char *name);
int __wrap_shm_unlink(const char *name);
int __wrap_shm_unlink(const char *name)
{
	if (unlink_fail_at && ++unlink_calls == unlink_fail_at) {
		errno = EPERM;
		return -1;
	}
	return __real_shm_unlink(name);
}

static void fi_arm(long n, bool sticky)
{
	memset(&fi, 0, sizeof fi);
	fi.failed_fn = -1;
	fi.fail_at = n;
	fi.sticky = sticky;
	fi.armed = true;
}

static void fi_disarm(void)
{
	fi.armed = false;
}

static const char *fi_mode(void)
{
	return fi.sticky ? "sticky" : "one-shot";
}

static const char *fi_failed_name(void)
{
	return fi.failed_fn < 0 ? "nothing" : fi_fn_name[fi.failed_fn];
}

/* ---- names, state probes, sweep ------------------------------------------- */

static pid_t fi_runner; /* the Check runner; set by main */

/* "tfault<runner>-" : the prefix of every fabric of this run. */
static const char *fi_tag(void)
{
	static char tag[24];
	snprintf(tag, sizeof tag, "fault%d", (int)fi_runner);
	return tag;
}

static void fi_new_name(char *buf)
{
	snprintf(buf, FAB_NAME_MAX + 1, "%s", ft_fabric_name(fi_tag()));
}

static const char *rcname(long long rc)
{
	if (rc >= 0)
		return "ok";
	const char *n = fab_errname((int)rc);
	return n ? n : "(null)";
}

static const char *errmsg(void)
{
	const char *m = fab_errmsg();
	return m ? m : "(null)";
}

#define FI_RC(expr, want)                                                          \
	do {                                                                       \
		long long fi_got_ = (long long)(expr);                             \
		long long fi_want_ = (long long)(want);                            \
		ck_assert_msg(fi_got_ == fi_want_, "%s: got %lld (%s), want %lld (%s); errmsg: %s", \
			      #expr, fi_got_, rcname(fi_got_), fi_want_, rcname(fi_want_), \
			      errmsg());                                           \
	} while (0)

/* /dev/shm entries of fabric `name`: its control segment and its channels. */
static int fi_segments_of(const char *name)
{
	char pre[FAB_NAME_MAX + 8];
	snprintf(pre, sizeof pre, "fab.%s", name);
	size_t pl = strlen(pre);
	int n = 0;
	DIR *d = opendir("/dev/shm");
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, pre, pl) == 0 && (e->d_name[pl] == '\0' || e->d_name[pl] == '.'))
			n++;
	closedir(d);
	return n;
}

static bool fi_shm_exists(const char *fabric, const char *chan)
{
	char p[160];
	struct stat st;
	if (chan)
		snprintf(p, sizeof p, "/dev/shm/fab.%s.%s", fabric, chan);
	else
		snprintf(p, sizeof p, "/dev/shm/fab.%s", fabric);
	return stat(p, &st) == 0;
}

/* Mappings in this process of fabric `fabric`'s segments: chan NULL counts
 * the control segment and every channel, else only that channel's. */
static int fi_maps_of(const char *fabric, const char *chan)
{
	char pre[160];
	if (chan)
		snprintf(pre, sizeof pre, "/dev/shm/fab.%s.%s", fabric, chan);
	else
		snprintf(pre, sizeof pre, "/dev/shm/fab.%s", fabric);
	size_t pl = strlen(pre);
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	char line[512];
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		char *p = strstr(line, pre);
		if (!p)
			continue;
		char c = p[pl];
		if (c == '\0' || c == '\n' || c == ' ' || (!chan && c == '.'))
			n++;
	}
	fclose(f);
	return n;
}

/* Open file descriptors of this process. */
static int fi_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Destroy every fabric of this run, then unlink any stray segment.
 * Returns how many entries were found. */
static int fi_sweep(void)
{
	char full[48];
	snprintf(full, sizeof full, "fab.t%s-", fi_tag());
	return ft_sweep_prefix(full);
}

/* ---- what every failed call must satisfy ---------------------------------- */

/*
 * The injected failure must come back as the code that fits it, with a
 * detail message: malloc/calloc as FAB_ENOMEM; shm_open, fchmod and
 * ftruncate as FAB_ESYS whose message carries strerror(errno); mmap
 * (ENOMEM) as FAB_ENOMEM or as FAB_ESYS with strerror(ENOMEM);
 * posix_fallocate's ENOSPC (a full /dev/shm) as FAB_ENOMEM naming /dev/shm.
 */
static void fi_expect_failure(int rc, const char *op, long n)
{
	ck_assert_msg(fi.failed_fn >= 0, "%s: N=%ld: nothing was injected", op, n);
	int err = errno; /* FAB_ESYS: "system call failed (see errno)" */
	const char *m = errmsg();
	ck_assert_msg(rc == FAB_ENOMEM || rc == FAB_ESYS,
		      "%s: %s failure of %s (call %ld): got %d (%s), want FAB_ENOMEM or "
		      "FAB_ESYS; errmsg: %s",
		      op, fi_mode(), fi_failed_name(), n, rc, rcname(rc), m);
	ck_assert_msg(m[0] != '\0', "%s: %s failure of %s (call %ld): %s with no detail message",
		      op, fi_mode(), fi_failed_name(), n, rcname(rc));
	int e = fi_fn_errno[fi.failed_fn];
	ck_assert_msg(rc != FAB_ESYS || err == e,
		      "%s: %s failure of %s (call %ld): FAB_ESYS but errno is %d (%s), want %d (%s)",
		      op, fi_mode(), fi_failed_name(), n, err, strerror(err), e, strerror(e));
	switch (fi.failed_fn) {
	case FI_MALLOC:
	case FI_CALLOC:
		ck_assert_msg(rc == FAB_ENOMEM, "%s: %s failure of %s (call %ld): got %s, want "
			      "FAB_ENOMEM; errmsg: %s",
			      op, fi_mode(), fi_failed_name(), n, rcname(rc), m);
		break;
	case FI_FALLOCATE:
		ck_assert_msg(rc == FAB_ENOMEM && strstr(m, "no room in /dev/shm") != NULL,
			      "%s: failure of posix_fallocate (call %ld): got %s, want FAB_ENOMEM "
			      "saying \"no room in /dev/shm\"; errmsg: %s",
			      op, n, rcname(rc), m);
		break;
	case FI_MMAP:
		ck_assert_msg(rc == FAB_ENOMEM || strstr(m, strerror(e)) != NULL,
			      "%s: failure of mmap (call %ld): %s whose message lacks \"%s\": %s",
			      op, n, rcname(rc), strerror(e), m);
		break;
	default:
		ck_assert_msg(rc == FAB_ESYS && strstr(m, strerror(e)) != NULL,
			      "%s: %s failure of %s (call %ld): got %s, want FAB_ESYS with \"%s\"; "
			      "errmsg: %s",
			      op, fi_mode(), fi_failed_name(), n, rcname(rc), strerror(e), m);
		break;
	}
}

/* After the loop: it ended (a run saw no failure) and the wrapped functions
 * listed in `want` were reached (so the wrapping works at all). */
static void fi_expect_reached(long n, const char *op, const long *calls, unsigned want)
{
	ck_assert_msg(n <= FI_MAX_N, "%s: still failing after %d injected calls", op, FI_MAX_N);
	if (getenv("FAB_FAULT_TRACE")) {
		fprintf(stderr, "%s (%s): %ld wrapped call(s):", op, fi_mode(), n - 1);
		for (int f = 0; f < FI_NFN; f++)
			if (calls[f])
				fprintf(stderr, " %s %ld", fi_fn_name[f], calls[f]);
		fprintf(stderr, "\n");
	}
	for (int f = 0; f < FI_NFN; f++)
		ck_assert_msg(!(want & (1u << f)) || calls[f] > 0,
			      "%s made no call to %s: is the --wrap link option missing?", op,
			      fi_fn_name[f]);
}

#define BIT(f) (1u << (f))

static fab_chan_opts opts(uint32_t kind)
{
	fab_chan_opts o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.kind = kind;
	o.capacity = 8;
	o.msg_size = 32;
	return o;
}

static fab_stats stats(fab_chan *ch)
{
	fab_stats st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	FI_RC(fab_chan_stats(ch, &st), 0);
	return st;
}

/* One message from tx to rx, compared. */
static void exchange(fab_chan *tx, fab_chan *rx, int tag)
{
	char out[32], in[32];
	memset(out, 0, sizeof out);
	memset(in, 0xff, sizeof in);
	snprintf(out, sizeof out, "fault message %d", tag);
	FI_RC(fab_try_send(tx, out, sizeof out), 0);
	FI_RC(fab_try_recv(rx, in, sizeof in), (long long)sizeof out);
	ck_assert_msg(memcmp(in, out, sizeof out) == 0, "message %d came back different", tag);
}

/* A fabric that can be used: a channel, one message through it. */
static void fabric_works(fab_fabric *f)
{
	fab_chan_opts o = opts(FAB_MPMC);
	fab_chan *c = NULL;
	FI_RC(fab_chan_create(f, "probe", &o, &c), 0);
	exchange(c, c, 0);
	fab_chan_release(c);
	FI_RC(fab_chan_destroy(f, "probe"), 0);
}

/* Close the test's fabric and destroy it: nothing of it may stay mapped (a
 * leaked handle reference would keep the control segment mapped) or in
 * /dev/shm. */
static void fabric_done(fab_fabric *f, const char *name)
{
	fab_fabric_close(f);
	int maps = fi_maps_of(name, NULL);
	FI_RC(fab_fabric_destroy(name), 0);
	ck_assert_msg(maps == 0,
		      "%d mapping(s) of fabric %s left after every handle was released and the "
		      "fabric closed: a failed call leaked a fabric reference or a mapping",
		      maps, name);
	ck_assert_int_eq(fi_segments_of(name), 0);
}

/* ---- 1. fab_fabric_open ------------------------------------------------------ */

/* Create a fabric with the N-th call failing: nothing may be left behind,
 * and a retry of the same name creates it. */
START_TEST(t_fabric_create)
{
	bool sticky = _i != 0;
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	int fds = fi_fds();
	long n;
	long calls[FI_NFN] = {0};
	for (n = 1; n <= FI_MAX_N; n++) {
		fab_fabric *f = (fab_fabric *)0x1;
		fi_arm(n, sticky);
		int rc = fab_fabric_open(name, FAB_CREATE, &f);
		fi_disarm();
		if (fi.failed_fn < 0) {
			FI_RC(rc, 0);
			memcpy(calls, fi.per_fn, sizeof calls);
			ck_assert_ptr_nonnull(f);
			fabric_works(f);
			fabric_done(f, name);
			break;
		}
		fi_expect_failure(rc, "fab_fabric_open(FAB_CREATE)", n);
		ck_assert_msg(f == NULL, "fab_fabric_open failed (%s) but *out is %p", rcname(rc),
			      (void *)f);
		ck_assert_msg(fi_segments_of(name) == 0,
			      "failure of %s (call %ld) left /dev/shm/fab.%s behind", fi_failed_name(),
			      n, name);
		ck_assert_msg(fi_maps_of(name, NULL) == 0,
			      "failure of %s (call %ld) left the control segment mapped",
			      fi_failed_name(), n);
		ck_assert_msg(fi_fds() == fds, "failure of %s (call %ld) leaked a descriptor (%d -> %d)",
			      fi_failed_name(), n, fds, fi_fds());
		/* The retry, not injected. */
		FI_RC(fab_fabric_open(name, FAB_CREATE, &f), 0);
		ck_assert_ptr_nonnull(f);
		fabric_works(f);
		fabric_done(f, name);
		ck_assert_int_eq(fi_fds(), fds);
	}
	fi_expect_reached(n, "fab_fabric_open(FAB_CREATE)", calls,
			  BIT(FI_CALLOC) | BIT(FI_SHM_OPEN) | BIT(FI_FCHMOD) | BIT(FI_FTRUNCATE) |
				  BIT(FI_MMAP) | BIT(FI_FALLOCATE));
	ck_assert_msg(calls[FI_SHM_OPEN] >= 2, "create: %ld shm_open calls, want the open attempt "
		      "and the exclusive create", calls[FI_SHM_OPEN]);
}
END_TEST

/* Open an existing fabric with the N-th call failing: the fabric and its
 * channels stay usable, and the retry attaches. */
START_TEST(t_fabric_open_existing)
{
	bool sticky = _i != 0;
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	fab_fabric *owner = NULL;
	FI_RC(fab_fabric_open(name, FAB_CREATE, &owner), 0);
	fab_chan_opts o = opts(FAB_MPMC);
	fab_chan *rx = NULL;
	FI_RC(fab_chan_create(owner, "c", &o, &rx), 0);
	int fds = fi_fds();
	long n;
	long calls[FI_NFN] = {0};
	for (n = 1; n <= FI_MAX_N; n++) {
		fab_fabric *f = (fab_fabric *)0x1;
		fi_arm(n, sticky);
		int rc = fab_fabric_open(name, 0, &f);
		fi_disarm();
		if (fi.failed_fn < 0) {
			FI_RC(rc, 0);
			memcpy(calls, fi.per_fn, sizeof calls);
		} else {
			fi_expect_failure(rc, "fab_fabric_open(existing)", n);
			ck_assert_msg(f == NULL, "fab_fabric_open failed (%s) but *out is %p",
				      rcname(rc), (void *)f);
			ck_assert_msg(fi_maps_of(name, NULL) == 2,
				      "failure of %s (call %ld): %d mappings of the fabric, want 2 "
				      "(the owner's control segment and channel)",
				      fi_failed_name(), n, fi_maps_of(name, NULL));
			ck_assert_msg(fi_fds() == fds,
				      "failure of %s (call %ld) leaked a descriptor (%d -> %d)",
				      fi_failed_name(), n, fds, fi_fds());
			ck_assert_msg(fi_shm_exists(name, NULL) && fi_shm_exists(name, "c"),
				      "failure of %s (call %ld) removed a segment", fi_failed_name(), n);
			FI_RC(fab_fabric_open(name, 0, &f), 0);
		}
		ck_assert_ptr_nonnull(f);
		fab_chan *tx = NULL;
		FI_RC(fab_chan_open(f, "c", FAB_SEND, &tx), 0);
		exchange(tx, rx, (int)n);
		fab_chan_release(tx);
		fab_fabric_close(f);
		ck_assert_int_eq(fi_fds(), fds);
		if (fi.failed_fn < 0)
			break;
	}
	fi_expect_reached(n, "fab_fabric_open(existing)", calls,
			  BIT(FI_CALLOC) | BIT(FI_SHM_OPEN) | BIT(FI_MMAP));
	fab_chan_release(rx);
	fabric_done(owner, name);
}
END_TEST

/* ---- 2. fab_chan_create ------------------------------------------------------ */

/* _i: bit 0 kind (0 mpmc, 1 spsc), bit 1 sticky. */
START_TEST(t_chan_create)
{
	uint32_t kind = (_i & 1) ? FAB_SPSC : FAB_MPMC;
	bool sticky = (_i & 2) != 0;
	const char *op = kind == FAB_SPSC ? "fab_chan_create(spsc)" : "fab_chan_create(mpmc)";
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	fab_fabric *f = NULL;
	FI_RC(fab_fabric_open(name, FAB_CREATE, &f), 0);
	fab_chan_opts o = opts(kind);
	int fds = fi_fds();
	long n;
	long calls[FI_NFN] = {0};
	for (n = 1; n <= FI_MAX_N; n++) {
		fab_chan *ch = (fab_chan *)0x1;
		fi_arm(n, sticky);
		int rc = fab_chan_create(f, "c", &o, &ch);
		fi_disarm();
		if (fi.failed_fn < 0) {
			FI_RC(rc, 0);
			memcpy(calls, fi.per_fn, sizeof calls);
		} else {
			fi_expect_failure(rc, op, n);
			ck_assert_msg(ch == NULL, "%s failed (%s) but *out is %p", op, rcname(rc),
				      (void *)ch);
			ck_assert_msg(!fi_shm_exists(name, "c"),
				      "%s: failure of %s (call %ld) left /dev/shm/fab.%s.c behind", op,
				      fi_failed_name(), n, name);
			ck_assert_msg(fi_maps_of(name, "c") == 0,
				      "%s: failure of %s (call %ld) left the channel mapped", op,
				      fi_failed_name(), n);
			ck_assert_msg(fi_fds() == fds,
				      "%s: failure of %s (call %ld) leaked a descriptor (%d -> %d)", op,
				      fi_failed_name(), n, fds, fi_fds());
			/* No registry entry or segment under the name. */
			fab_chan *x = (fab_chan *)0x1;
			FI_RC(fab_chan_open(f, "c", FAB_RECV, &x), FAB_ENOENT);
			ck_assert_ptr_null(x);
			/* The retry, not injected. */
			FI_RC(fab_chan_create(f, "c", &o, &ch), 0);
		}
		ck_assert_ptr_nonnull(ch);
		fab_stats st = stats(ch);
		ck_assert_uint_eq(st.kind, kind);
		ck_assert_uint_eq(st.capacity, 8);
		ck_assert_uint_eq(st.msg_size, 32);
		ck_assert_uint_eq(st.senders, 1);
		ck_assert_uint_eq(st.receivers, 1);
		exchange(ch, ch, (int)n);
		fab_chan *dup = NULL;
		FI_RC(fab_chan_create(f, "c", &o, &dup), FAB_EEXIST);
		fab_chan_release(ch);
		FI_RC(fab_chan_destroy(f, "c"), 0);
		ck_assert_int_eq(fi_fds(), fds);
		if (fi.failed_fn < 0)
			break;
	}
	fi_expect_reached(n, op, calls,
			  BIT(FI_CALLOC) | BIT(FI_SHM_OPEN) | BIT(FI_FCHMOD) | BIT(FI_FTRUNCATE) |
				  BIT(FI_MMAP) | BIT(FI_FALLOCATE));
	fabric_done(f, name);
}
END_TEST

/* ---- 3. fab_chan_open, fab_ctx_create/open/with_timeout ---------------------- */

static const unsigned roles[3] = {FAB_SEND, FAB_RECV, FAB_SEND | FAB_RECV};

/* _i: bit 0 kind, bits 1-2 role, bit 3 sticky.  The creator's handle only
 * watches the counters: it never sends or receives, so it never takes an
 * spsc end (the creator takes them lazily). */
START_TEST(t_chan_open)
{
	uint32_t kind = (_i & 1) ? FAB_SPSC : FAB_MPMC;
	unsigned role = roles[(_i >> 1) % 3];
	bool sticky = (_i & 8) != 0;
	char op[64];
	snprintf(op, sizeof op, "fab_chan_open(%s, %s)", kind == FAB_SPSC ? "spsc" : "mpmc",
		 role == FAB_SEND ? "send" : role == FAB_RECV ? "recv" : "send|recv");
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	fab_fabric *f = NULL;
	FI_RC(fab_fabric_open(name, FAB_CREATE, &f), 0);
	fab_chan_opts o = opts(kind);
	fab_chan *own = NULL;
	FI_RC(fab_chan_create(f, "c", &o, &own), 0);
	fab_stats base = stats(own);
	int fds = fi_fds();
	long n;
	long calls[FI_NFN] = {0};
	for (n = 1; n <= FI_MAX_N; n++) {
		fab_chan *ch = (fab_chan *)0x1;
		fi_arm(n, sticky);
		int rc = fab_chan_open(f, "c", role, &ch);
		fi_disarm();
		if (fi.failed_fn < 0) {
			FI_RC(rc, 0);
			memcpy(calls, fi.per_fn, sizeof calls);
		} else {
			fi_expect_failure(rc, op, n);
			ck_assert_msg(ch == NULL, "%s failed (%s) but *out is %p", op, rcname(rc),
				      (void *)ch);
			fab_stats st = stats(own);
			ck_assert_msg(st.senders == base.senders && st.receivers == base.receivers,
				      "%s: failure of %s (call %ld) leaked an attachment: senders %u "
				      "receivers %u, were %u %u",
				      op, fi_failed_name(), n, st.senders, st.receivers, base.senders,
				      base.receivers);
			ck_assert_msg(fi_maps_of(name, "c") == 1,
				      "%s: failure of %s (call %ld): %d mappings of the channel, want 1",
				      op, fi_failed_name(), n, fi_maps_of(name, "c"));
			ck_assert_msg(fi_fds() == fds,
				      "%s: failure of %s (call %ld) leaked a descriptor (%d -> %d)", op,
				      fi_failed_name(), n, fds, fi_fds());
			/* The retry, not injected: an spsc end left held would
			 * make it FAB_EBUSY. */
			FI_RC(fab_chan_open(f, "c", role, &ch), 0);
		}
		ck_assert_ptr_nonnull(ch);
		fab_stats st = stats(own);
		ck_assert_uint_eq(st.senders, base.senders + ((role & FAB_SEND) ? 1 : 0));
		ck_assert_uint_eq(st.receivers, base.receivers + ((role & FAB_RECV) ? 1 : 0));
		/* It works: one message through it, with a peer for the other end. */
		if (role == (FAB_SEND | FAB_RECV)) {
			exchange(ch, ch, (int)n);
		} else {
			fab_chan *peer = NULL;
			FI_RC(fab_chan_open(f, "c", role == FAB_SEND ? FAB_RECV : FAB_SEND, &peer), 0);
			if (role == FAB_SEND)
				exchange(ch, peer, (int)n);
			else
				exchange(peer, ch, (int)n);
			fab_chan_release(peer);
		}
		fab_chan_release(ch);
		st = stats(own);
		ck_assert_uint_eq(st.senders, base.senders);
		ck_assert_uint_eq(st.receivers, base.receivers);
		ck_assert_int_eq(fi_fds(), fds);
		if (fi.failed_fn < 0)
			break;
	}
	fi_expect_reached(n, op, calls, BIT(FI_CALLOC) | BIT(FI_SHM_OPEN) | BIT(FI_MMAP));
	fab_chan_release(own);
	FI_RC(fab_chan_destroy(f, "c"), 0);
	fabric_done(f, name);
}
END_TEST

/* _i: bits 0-1 parent (0 none, 1 live shared parent, 2 cancelled shared
 * parent), bit 2 sticky.  Contexts cannot be destroyed, so each run uses a
 * new name; the retry reuses the failed run's name. */
START_TEST(t_ctx_create)
{
	int pk = (_i & 3) % 3;
	bool sticky = (_i & 4) != 0;
	static const char *const pnames[3] = {"no parent", "live parent", "cancelled parent"};
	char op[64];
	snprintf(op, sizeof op, "fab_ctx_create(%s)", pnames[pk]);
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	fab_fabric *f = NULL;
	FI_RC(fab_fabric_open(name, FAB_CREATE, &f), 0);
	fab_ctx *parent = NULL;
	if (pk) {
		FI_RC(fab_ctx_create(f, "parent", NULL, &parent), 0);
		if (pk == 2)
			FI_RC(fab_ctx_cancel(parent, 42), 0);
	}
	int want_err = pk == 2 ? FAB_ECANCELED : 0;
	long n;
	long calls[FI_NFN] = {0};
	for (n = 1; n <= FI_MAX_N; n++) {
		char cname[32];
		snprintf(cname, sizeof cname, "k%ld", n);
		fab_ctx *c = (fab_ctx *)0x1;
		fi_arm(n, sticky);
		int rc = fab_ctx_create(f, cname, parent, &c);
		fi_disarm();
		if (fi.failed_fn < 0) {
			FI_RC(rc, 0);
			memcpy(calls, fi.per_fn, sizeof calls);
		} else {
			fi_expect_failure(rc, op, n);
			ck_assert_msg(c == NULL, "%s failed (%s) but *out is %p", op, rcname(rc),
				      (void *)c);
			fab_ctx *x = (fab_ctx *)0x1;
			FI_RC(fab_ctx_open(f, cname, &x), FAB_ENOENT);
			ck_assert_ptr_null(x);
			FI_RC(fab_ctx_create(f, cname, parent, &c), 0);
		}
		ck_assert_ptr_nonnull(c);
		FI_RC(fab_ctx_err(c), want_err);
		if (pk == 2)
			FI_RC(fab_ctx_reason(c), 42);
		fab_ctx *x = NULL;
		FI_RC(fab_ctx_create(f, cname, parent, &x), FAB_EEXIST);
		FI_RC(fab_ctx_open(f, cname, &x), 0);
		FI_RC(fab_ctx_cancel(c, 7), 0);
		FI_RC(fab_ctx_err(x), FAB_ECANCELED);
		FI_RC(fab_ctx_reason(x), pk == 2 ? 42 : 7);
		fab_ctx_release(x);
		fab_ctx_release(c);
		if (fi.failed_fn < 0)
			break;
	}
	/* Cancelling (a cancelled parent's new child) allocates nothing. */
	fi_expect_reached(n, op, calls, BIT(FI_CALLOC));
	ck_assert_msg(calls[FI_MALLOC] == 0, "%s called malloc %ld times", op, calls[FI_MALLOC]);
	if (pk == 1) {
		/* The children of the live parent, created after failed runs,
		 * are its children: cancelling it reaches them. */
		FI_RC(fab_ctx_cancel(parent, 9), 0);
		fab_ctx *x = NULL;
		FI_RC(fab_ctx_open(f, "k1", &x), 0);
		FI_RC(fab_ctx_err(x), FAB_ECANCELED);
		fab_ctx_release(x);
	}
	fab_ctx_release(parent);
	fabric_done(f, name);
}
END_TEST

START_TEST(t_ctx_open)
{
	bool sticky = _i != 0;
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	fab_fabric *f = NULL;
	FI_RC(fab_fabric_open(name, FAB_CREATE, &f), 0);
	fab_ctx *own = NULL;
	FI_RC(fab_ctx_create(f, "k", NULL, &own), 0);
	long n;
	long calls[FI_NFN] = {0};
	for (n = 1; n <= FI_MAX_N; n++) {
		fab_ctx *c = (fab_ctx *)0x1;
		fi_arm(n, sticky);
		int rc = fab_ctx_open(f, "k", &c);
		fi_disarm();
		if (fi.failed_fn < 0) {
			FI_RC(rc, 0);
			memcpy(calls, fi.per_fn, sizeof calls);
		} else {
			fi_expect_failure(rc, "fab_ctx_open", n);
			ck_assert_msg(c == NULL, "fab_ctx_open failed (%s) but *out is %p", rcname(rc),
				      (void *)c);
			FI_RC(fab_ctx_open(f, "k", &c), 0);
		}
		ck_assert_ptr_nonnull(c);
		FI_RC(fab_ctx_err(c), 0);
		fab_ctx_release(c);
		if (fi.failed_fn < 0)
			break;
	}
	fi_expect_reached(n, "fab_ctx_open", calls, BIT(FI_CALLOC));
	fab_ctx_release(own);
	fabric_done(f, name);
}
END_TEST

/* _i: bit 0 parent (0 none, 1 a shared context), bit 1 sticky. */
START_TEST(t_ctx_with_timeout)
{
	bool with_parent = (_i & 1) != 0;
	bool sticky = (_i & 2) != 0;
	const char *op = with_parent ? "fab_ctx_with_timeout(shared parent)"
				     : "fab_ctx_with_timeout(no parent)";
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	fab_fabric *f = NULL;
	FI_RC(fab_fabric_open(name, FAB_CREATE, &f), 0);
	long n;
	long calls[FI_NFN] = {0};
	for (n = 1; n <= FI_MAX_N; n++) {
		fab_ctx *parent = NULL;
		if (with_parent) {
			char pname[32];
			snprintf(pname, sizeof pname, "p%ld", n);
			FI_RC(fab_ctx_create(f, pname, NULL, &parent), 0);
		}
		fab_ctx *c = (fab_ctx *)0x1;
		fi_arm(n, sticky);
		int rc = fab_ctx_with_timeout(parent, 3600 * 1000000000LL, &c);
		fi_disarm();
		if (fi.failed_fn < 0) {
			FI_RC(rc, 0);
			memcpy(calls, fi.per_fn, sizeof calls);
		} else {
			fi_expect_failure(rc, op, n);
			ck_assert_msg(c == NULL, "%s failed (%s) but *out is %p", op, rcname(rc),
				      (void *)c);
			FI_RC(fab_ctx_with_timeout(parent, 3600 * 1000000000LL, &c), 0);
		}
		ck_assert_ptr_nonnull(c);
		FI_RC(fab_ctx_err(c), 0);
		/* Its parent's cancel reaches it, or its own does. */
		FI_RC(fab_ctx_cancel(parent ? parent : c, 5), 0);
		FI_RC(fab_ctx_err(c), FAB_ECANCELED);
		FI_RC(fab_ctx_reason(c), 5);
		fab_ctx_release(c);
		fab_ctx_release(parent);
		/* An expired deadline ends a wait (a code, not a duration). */
		fab_ctx *d = NULL;
		FI_RC(fab_ctx_with_timeout(NULL, 0, &d), 0);
		FI_RC(fab_ctx_wait(d), FAB_ETIMEDOUT);
		fab_ctx_release(d);
		if (fi.failed_fn < 0)
			break;
	}
	fi_expect_reached(n, op, calls, BIT(FI_CALLOC));
	fabric_done(f, name);
}
END_TEST

/* ---- regressions ---------------------------------------------------------------- */

/*
 * fab_ctx_cancel without memory must still cancel the whole subtree.
 * ctx.c fab__ctx_cancel_tree() falls back to cancelling the root only when
 * its malloc fails ("never fail a cancel"), but fab__ctx_done() reads only a
 * shared context's own word ("shared cancels cascade down the table: our
 * word suffices"), so the children stay live: fab_ctx_cancel returns 0 and a
 * process blocked under a child is never woken.
 */
START_TEST(t_ctx_cancel_no_memory)
{
	bool sticky = _i != 0;
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	fab_fabric *f = NULL;
	FI_RC(fab_fabric_open(name, FAB_CREATE, &f), 0);
	long n;
	for (n = 1; n <= FI_MAX_N; n++) {
		char pn[16], cn[16], gn[16];
		snprintf(pn, sizeof pn, "p%ld", n);
		snprintf(cn, sizeof cn, "c%ld", n);
		snprintf(gn, sizeof gn, "g%ld", n);
		fab_ctx *p = NULL, *c = NULL, *g = NULL;
		FI_RC(fab_ctx_create(f, pn, NULL, &p), 0);
		FI_RC(fab_ctx_create(f, cn, p, &c), 0);
		FI_RC(fab_ctx_create(f, gn, c, &g), 0);
		fi_arm(n, sticky);
		int rc = fab_ctx_cancel(p, 3);
		fi_disarm();
		bool injected = fi.failed_fn >= 0;
		const char *what = fi_failed_name();
		if (rc != 0)
			fi_expect_failure(rc, "fab_ctx_cancel", n);
		else {
			FI_RC(fab_ctx_err(p), FAB_ECANCELED);
			ck_assert_msg(fab_ctx_err(c) == FAB_ECANCELED,
				      "fab_ctx_cancel returned 0 with %s failing (call %ld), but the "
				      "child is not cancelled (fab_ctx_err = %s)",
				      what, n, rcname(fab_ctx_err(c)));
			ck_assert_msg(fab_ctx_err(g) == FAB_ECANCELED,
				      "fab_ctx_cancel returned 0 with %s failing (call %ld), but the "
				      "grandchild is not cancelled (fab_ctx_err = %s)",
				      what, n, rcname(fab_ctx_err(g)));
		}
		fab_ctx_release(g);
		fab_ctx_release(c);
		fab_ctx_release(p);
		if (!injected)
			break;
	}
	ck_assert_int_le(n, FI_MAX_N);
	fabric_done(f, name);
}
END_TEST

/* ---- fab_fabric_destroy refused half-way -------------------------------------- */

/*
 * A destroy marks the fabric destroyed before it removes anything, so a
 * create through a handle still open is refused (FAB_ENOENT) rather than
 * leaving a segment no fabric lists.  When a removal is then refused
 * (EPERM: in a fabric shared with a group, a member's segment made after
 * the destroy's first check), the fabric stays, and so must its creates:
 * the destroy clears its own mark.  _i picks which unlink fails: the
 * channel's (1) or the control segment's (2, after the channel went).
 */
START_TEST(t_destroy_refused)
{
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	fab_fabric *f = NULL;
	fab_chan *a = NULL, *b = NULL;
	FI_RC(fab_fabric_open(name, FAB_CREATE, &f), 0);
	fab_chan_opts o = {.size = sizeof o, .kind = FAB_MPMC, .capacity = 4, .msg_size = 8};
	FI_RC(fab_chan_create(f, "a", &o, &a), 0);
	fab_chan_release(a);
	unlink_calls = 0;
	unlink_fail_at = _i;
	int rc = fab_fabric_destroy(name);
	unlink_fail_at = 0;
	ck_assert_msg(unlink_calls >= _i, "destroy made %ld shm_unlink calls, want >= %d",
		      unlink_calls, _i);
	ck_assert_msg(rc == FAB_EPERM, "destroy with unlink %d refused: got %s, want FAB_EPERM",
		      _i, rcname(rc));
	/* The fabric stays: creates through the open handle work. */
	rc = fab_chan_create(f, "b", &o, &b);
	ck_assert_msg(rc == 0,
		      "after a refused destroy, fab_chan_create through the open handle: %s (%s); "
		      "the destroy left its mark on a fabric that stays",
		      rcname(rc), errmsg());
	uint64_t v = 42, got = 0;
	FI_RC(fab_try_send(b, &v, sizeof v), 0);
	FI_RC(fab_try_recv(b, &got, sizeof got), (long long)sizeof v);
	ck_assert_uint_eq(got, 42);
	fab_chan_release(b);
	fabric_done(f, name);
}
END_TEST

/* ---- a file-size limit ----------------------------------------------------------- */

/*
 * ulimit -f below a segment's size: ftruncate past it raises SIGXFSZ, which
 * kills by default.  Until 28 Nov (eleventh session; a resource-exhaustion
 * trial) fab_fabric_open(FAB_CREATE) and fab_chan_create died of it (exit
 * 153) and left a 0-byte segment; now they return FAB_ENOMEM naming the
 * limit, leave nothing, and the limit's raise makes them work.  In a child:
 * the limit is the process's.
 */
START_TEST(t_fsize_limit)
{
	char name[FAB_NAME_MAX + 1];
	fi_new_name(name);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct rlimit rl = {100 * 1024, RLIM_INFINITY};
		fab_fabric *f = NULL;
		if (setrlimit(RLIMIT_FSIZE, &rl))
			_exit(10);
		int rc = fab_fabric_open(name, FAB_CREATE, &f);
		if (rc != FAB_ENOMEM || !strstr(fab_errmsg(), "ulimit -f") ||
		    fi_shm_exists(name, NULL))
			_exit(11);
		rl.rlim_cur = 1024 * 1024;
		if (setrlimit(RLIMIT_FSIZE, &rl) || fab_fabric_open(name, FAB_CREATE, &f))
			_exit(12);
		fab_chan_opts o = {.size = sizeof o, .capacity = 16, .msg_size = 256 << 10};
		fab_chan *c = NULL;
		rc = fab_chan_create(f, "big", &o, &c);
		if (rc != FAB_ENOMEM || !strstr(fab_errmsg(), "ulimit -f") ||
		    fi_shm_exists(name, "big"))
			_exit(13);
		o.msg_size = 64;
		if (fab_chan_create(f, "small", &o, &c))
			_exit(14);
		fab_chan_release(c);
		fab_fabric_close(f);
		_exit(fab_fabric_destroy(name) ? 15 : 0);
	}
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(!WIFSIGNALED(st), "killed by signal %d (%s): SIGXFSZ is the old bug",
		      WIFSIGNALED(st) ? WTERMSIG(st) : 0, WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "");
	ck_assert_msg(WEXITSTATUS(st) == 0, "step %d failed (t_fsize_limit)", WEXITSTATUS(st));
	ck_assert_int_eq(fi_segments_of(name), 0);
}
END_TEST

/* ---- the suite ------------------------------------------------------------------ */

static Suite *fault_suite(void)
{
	Suite *s = suite_create("fault");
	TCase *tc = tcase_create("fabric");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, t_fabric_create, 0, 2);
	tcase_add_loop_test(tc, t_fabric_open_existing, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("chan");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, t_chan_create, 0, 4);
	tcase_add_loop_test(tc, t_chan_open, 0, 6);      /* one-shot: 2 kinds x 3 roles */
	tcase_add_loop_test(tc, t_chan_open, 8, 8 + 6);  /* sticky */
	suite_add_tcase(s, tc);

	tc = tcase_create("ctx");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, t_ctx_create, 0, 3);
	tcase_add_loop_test(tc, t_ctx_create, 4, 4 + 3);
	tcase_add_loop_test(tc, t_ctx_open, 0, 2);
	tcase_add_loop_test(tc, t_ctx_with_timeout, 0, 4);
	suite_add_tcase(s, tc);

	/* Regression: fab_ctx_cancel without memory cancelled only the root. */
	tc = tcase_create("regress");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, t_ctx_cancel_no_memory, 0, 2);
	tcase_add_loop_test(tc, t_destroy_refused, 1, 3);
	tcase_add_test(tc, t_fsize_limit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	fi_runner = getpid();
	SRunner *sr = srunner_create(fault_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	int left = fi_sweep();
	if (left > 0 && failed == 0) {
		fprintf(stderr, "FAIL: %d segment(s) left in /dev/shm by passing tests\n", left);
		return 1;
	}
	return failed ? 1 : 0;
}
