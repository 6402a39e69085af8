/*
 * unit.h - what fab's unit suites share beyond tests/common/fabtest.h:
 * fabric names that a final sweep can find, a per-test fabric fixture,
 * assertion macros that print the library's error name and detail, helpers
 * for children (which never ck_assert, PLATFORM.md §5) and memory shared
 * with them.
 *
 * Cleanup: Check (fork mode) does not run a checked teardown after a failed
 * assertion, because the test process exits at once.  So every fabric a test
 * makes is named "u<tag>-<runner pid>-<test pid>-<n>", and ut_main() destroys
 * whatever is left with that prefix after the run.  A passing run that
 * leaves a segment behind fails: the teardown should have removed it.
 */
#ifndef FAB_UNIT_H
#define FAB_UNIT_H

#include "fabtest.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>

#if defined(__SANITIZE_ADDRESS__)
#define UT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UT_SANITIZED 1
#endif
#endif
#ifndef UT_SANITIZED
#define UT_SANITIZED 0
#endif

static pid_t ut_runner;          /* the Check runner; set by ut_main */
static const char *ut_tag = "x"; /* the suite's short tag */

/* "u<tag>-<runner>-" : the prefix of every fabric of this run. */
static inline void ut_prefix(char *b, size_t n)
{
	snprintf(b, n, "u%s-%d-", ut_tag, (int)ut_runner);
}

/* A fabric name unique to this test: "u<tag>-<runner>-<pid>-<n>". */
static inline const char *ut_fabric_name(void)
{
	static char buf[8][FAB_NAME_MAX + 1];
	static int n;
	char pre[32];
	char *b = buf[n % 8];
	ut_prefix(pre, sizeof pre);
	snprintf(b, FAB_NAME_MAX + 1, "%s%d-%d", pre, (int)getpid(), n);
	n++;
	return b;
}

/* How many /dev/shm entries belong to fabric `name` (its control segment
 * "fab.<name>" and its channels "fab.<name>.<chan>"). */
static inline int ut_segments_of(const char *name)
{
	char pre[FAB_NAME_MAX + 8];
	int n = 0;
	snprintf(pre, sizeof pre, "fab.%s", name);
	size_t pl = strlen(pre);
	DIR *d = opendir("/dev/shm");
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, pre, pl) == 0 &&
		    (e->d_name[pl] == '\0' || e->d_name[pl] == '.'))
			n++;
	}
	closedir(d);
	return n;
}

static inline bool ut_shm_exists(const char *fabric, const char *chan)
{
	return ft_shm_mode(fabric, chan) >= 0;
}

/* Mode bits of a segment, or -1. */
static inline int ut_shm_mode(const char *fabric, const char *chan)
{
	return ft_shm_mode(fabric, chan);
}

/* Destroy every fabric of this run, then unlink any stray segment.
 * Returns how many entries were found. */
static inline int ut_sweep(void)
{
	char pre[40];
	char full[48];
	ut_prefix(pre, sizeof pre);
	snprintf(full, sizeof full, "fab.%s", pre);
	return ft_sweep_prefix(full);
}

/* Run a suite; sweep; exit status for ctest. */
static inline int ut_main(Suite *s, const char *tag)
{
	ut_tag = tag;
	ut_runner = getpid();
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	int left = ut_sweep();
	if (left > 0 && failed == 0) {
		fprintf(stderr, "FAIL: %d segment(s) left in /dev/shm by passing tests\n", left);
		return 1;
	}
	return failed ? 1 : 0;
}

/* ---- assertions ------------------------------------------------------- */

/* Assert that an int/ssize_t-returning call gives exactly `want`; on failure
 * print both codes by name and the library's detail message. */
#define UT_RC(expr, want)                                                        \
	do {                                                                     \
		long long ut_got_ = (long long)(expr);                           \
		long long ut_want_ = (long long)(want);                          \
		ck_assert_msg(ut_got_ == ut_want_,                               \
			      "%s: got %lld (%s), want %lld (%s); errmsg: %s",   \
			      #expr, ut_got_, ut_name(ut_got_), ut_want_,        \
			      ut_name(ut_want_), ut_msg());                      \
	} while (0)

static inline const char *ut_name(long long rc)
{
	if (rc >= 0)
		return "ok";
	const char *n = fab_errname((int)rc);
	return n ? n : "(null)";
}

static inline const char *ut_msg(void)
{
	const char *m = fab_errmsg();
	return m ? m : "(null)";
}

/* ---- children --------------------------------------------------------- */

/* In a child: if cond is false, say why on stderr and _exit(code). */
#define CHILD_CHECK(cond, code)                                                  \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "child %d %s:%d: check failed: %s (exit %d)\n", \
				(int)getpid(), __FILE__, __LINE__, #cond, (code)); \
			_exit(code);                                             \
		}                                                                \
	} while (0)

/* In a child: a call must return want. */
#define CHILD_RC(expr, want, code)                                               \
	do {                                                                     \
		long long c_got_ = (long long)(expr);                            \
		if (c_got_ != (long long)(want)) {                               \
			fprintf(stderr, "child %d %s:%d: %s = %lld (%s), want %lld (%s); %s (exit %d)\n", \
				(int)getpid(), __FILE__, __LINE__, #expr, c_got_, \
				ut_name(c_got_), (long long)(want),              \
				ut_name((long long)(want)), ut_msg(), (code));   \
			_exit(code);                                             \
		}                                                                \
	} while (0)

/* Parent: a child must exit 0. */
#define UT_CHILD_OK(pid)                                                         \
	do {                                                                     \
		int ut_st_ = ft_wait(pid);                                       \
		ck_assert_msg(ut_st_ == 0, "child %d exited with %d%s", (int)(pid), \
			      ut_st_, ut_st_ > 128 ? " (128+signal)" : "");     \
	} while (0)

/* Memory shared with children (MAP_SHARED | MAP_ANONYMOUS); zeroed. */
static inline void *ut_shared(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_msg(p != MAP_FAILED, "mmap shared: %s", strerror(errno));
	return p;
}

static inline void ut_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* ---- the per-test fabric fixture -------------------------------------- */

static fab_fabric *fab;     /* this test's fabric */
static char fname[FAB_NAME_MAX + 1];

static inline void ut_fabric_setup(void)
{
	snprintf(fname, sizeof fname, "%s", ut_fabric_name());
	fab = NULL;
	UT_RC(fab_fabric_open(fname, FAB_CREATE, &fab), 0);
	ck_assert_ptr_nonnull(fab);
}

static inline void ut_fabric_teardown(void)
{
	ft_reap_all();
	if (fab)
		fab_fabric_close(fab);
	fab = NULL;
	int rc = fab_fabric_destroy(fname);
	ck_assert_msg(rc == 0 || rc == FAB_ENOENT, "teardown: fab_fabric_destroy(%s) = %d (%s)",
		      fname, rc, ut_name(rc));
	ck_assert_msg(ut_segments_of(fname) == 0, "teardown: segments of %s left in /dev/shm",
		      fname);
}

/* Wait (bounded, best effort) until a channel reports at least n blocked
 * receivers (recv=true) or senders.  It only gives the peer a chance to
 * block; callers never assert on it. */
static inline bool ut_wait_blocked(fab_chan *ch, bool recv, uint32_t n)
{
	int64_t end = ft_now_ns() + 5LL * 1000000000LL;
	while (ft_now_ns() < end) {
		fab_stats st;
		memset(&st, 0, sizeof st);
		st.size = sizeof st;
		if (fab_chan_stats(ch, &st) == 0 &&
		    (recv ? st.blocked_receivers : st.blocked_senders) >= n) {
			ut_sleep_ms(5);
			return true;
		}
		ut_sleep_ms(2);
	}
	return false;
}

static inline fab_stats ut_stats(fab_chan *ch)
{
	fab_stats st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	UT_RC(fab_chan_stats(ch, &st), 0);
	return st;
}

static inline fab_chan_opts ut_opts(uint32_t kind, uint32_t cap, uint32_t msg_size)
{
	fab_chan_opts o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.kind = kind;
	o.capacity = cap;
	o.msg_size = msg_size;
	return o;
}

static inline const char *ut_kind_name(uint32_t k)
{
	return k == FAB_SPSC ? "spsc" : k == FAB_MPMC ? "mpmc" : "?";
}

/* Add a test to a TCase once per kind (_i = 0: mpmc, 1: spsc). */
static const uint32_t ut_kinds[2] = {FAB_MPMC, FAB_SPSC};
#define UT_KIND (ut_kinds[_i % 2])

#endif /* FAB_UNIT_H */
