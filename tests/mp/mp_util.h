/*
 * mp_util.h - helpers shared by the multi-process and crash tests
 * (tests/mp, tests/crash): fabric names that the runner can sweep, children
 * tracked for teardown, shared (MAP_SHARED) scratch memory, self-checking
 * message payloads and a seeded PRNG.
 *
 * Cleanup on failure: a failing ck_assert in Check's fork mode _exit()s the
 * test process, so neither checked teardown nor atexit runs.  Check then
 * kills the test's process group (our children go with it), and main()
 * calls mt_sweep_shm() after srunner_run_all(), which unlinks every
 * /dev/shm segment of a fabric named by mt_fabric_name() in this run.
 *
 * Children never ck_assert (PLATFORM.md §5): they return an exit code and
 * the parent asserts on it.  Codes below 100 are test-defined; see each test.
 */
#ifndef MP_UTIL_H
#define MP_UTIL_H

#include "fabtest.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/types.h>

#if defined(__SANITIZE_ADDRESS__)
#define MT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MT_ASAN 1
#endif
#endif
#ifndef MT_ASAN
#define MT_ASAN 0
#endif

/* Scale a workload down under ASan (slower, and the machine is shared). */
#define MT_SCALE(normal, asan) (MT_ASAN ? (asan) : (normal))

static pid_t mt_runner_pid;

static inline void mt_sweep_stale(void);

/* Call first in main(): fabric names carry the runner's pid. */
static inline void mt_init(void)
{
	mt_runner_pid = getpid();
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Children of a test that failed (its process _exit()ed; Check then
	 * SIGKILLs the group) are re-parented to the runner, which reaps them
	 * at the end instead of leaving zombies for init. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	mt_sweep_stale();
}

/* "m<tag>-<runner pid>": unique per test (tags are) and per run. */
static inline const char *mt_fabric_name(const char *tag)
{
	static char buf[8][FAB_NAME_MAX + 1];
	static int n;
	char *b = buf[n++ % 8];
	snprintf(b, FAB_NAME_MAX + 1, "m%.20s-%d", tag, (int)mt_runner_pid);
	return b;
}

/* Is /dev/shm entry `ent` a segment of fabric `fab` ("fab.<fab>" or
 * "fab.<fab>.<anything>")? */
static inline int mt_shm_belongs(const char *ent, const char *fab)
{
	size_t n = strlen(fab);
	if (strncmp(ent, "fab.", 4) != 0 || strncmp(ent + 4, fab, n) != 0)
		return 0;
	return ent[4 + n] == '\0' || ent[4 + n] == '.';
}

/* Count (and with unlink != 0, remove) the segments of one fabric. */
static inline int mt_shm_scan(const char *fab, int unlink_them)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	int n = 0;
	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (!mt_shm_belongs(e->d_name, fab))
			continue;
		n++;
		if (unlink_them)
			shm_unlink(e->d_name);
	}
	closedir(d);
	return n;
}

/* Remove every segment of every fabric this run named ("fab.m*-<pid>..."). */
static inline void mt_sweep_shm(void)
{
	char suffix[32];
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	int n = snprintf(suffix, sizeof suffix, "-%d", (int)mt_runner_pid);
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		const char *s = e->d_name, *p;
		if (strncmp(s, "fab.m", 5) != 0)
			continue;
		p = strstr(s, suffix);
		if (p && (p[n] == '\0' || p[n] == '.')) {
			fprintf(stderr, "sweep: removing leftover /dev/shm/%s\n", s);
			shm_unlink(s);
		}
	}
	closedir(d);
}

/* Remove segments left by an earlier run of these tests that was killed
 * before its own sweep (a ctest timeout): "fab.m<tag>-<pid>[.<chan>]" whose
 * pid no longer exists.  Other fabrics are never touched. */
static inline void mt_sweep_stale(void)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		char fab[FAB_NAME_MAX + 8], *dash, *end;
		const char *s = e->d_name;
		if (strncmp(s, "fab.m", 5) != 0)
			continue;
		snprintf(fab, sizeof fab, "%s", s + 4);
		fab[strcspn(fab, ".")] = '\0';
		dash = strrchr(fab, '-');
		if (!dash || !dash[1])
			continue;
		long pid = strtol(dash + 1, &end, 10);
		if (*end != '\0' || pid <= 1 || pid == (long)mt_runner_pid)
			continue;
		if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
			fprintf(stderr, "sweep: removing stale /dev/shm/%s (pid %ld is gone)\n", s, pid);
			shm_unlink(s);
		}
	}
	closedir(d);
}

/* A test case whose Check timeout (a hang detector) is `seconds`, kept
 * below the ctest TIMEOUT so a hang is reported by Check and the runner
 * still sweeps its segments. */
static inline TCase *mt_tcase(const char *name, double seconds)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, seconds);
	return tc;
}

/* Run a suite the house way and sweep segments whatever happened. */
static inline int mt_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int nf;
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	/* Reap re-parented children of failed tests (all SIGKILLed by then). */
	for (int tries = 0; tries < 100; tries++) {
		pid_t r;
		while ((r = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (r < 0) /* ECHILD: none left */
			break;
		usleep(10000);
	}
	mt_sweep_shm();
	return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* A check for hot loops: Check's ck_assert* reports its location to the
 * runner through a pipe even when it passes (a system call each), which
 * costs seconds over millions of messages. */
#define MT_CHECK(cond, ...)                                                      \
	do {                                                                     \
		if (!(cond))                                                     \
			ck_abort_msg(__VA_ARGS__);                               \
	} while (0)

/* ---- children ---------------------------------------------------------- */

#define MT_MAX_CHILDREN 64
#define MT_RUNNING (-1000) /* "no exit status yet" for mt_exited() */
static pid_t mt_kids[MT_MAX_CHILDREN];

/* fork() a child running fn(arg), then _exit(its return value).  Tracked for
 * mt_kill_all(); at most MT_MAX_CHILDREN alive at once (slots are reused). */
static inline pid_t mt_spawn(int (*fn)(void *), void *arg)
{
	pid_t pid;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		int rc = fn(arg);
		_exit(rc & 0xff);
	}
	if (pid > 0) {
		for (int i = 0; i < MT_MAX_CHILDREN; i++) {
			if (mt_kids[i] == 0) {
				mt_kids[i] = pid;
				break;
			}
		}
	}
	return pid;
}

static inline void mt_forget(pid_t pid)
{
	for (int i = 0; i < MT_MAX_CHILDREN; i++)
		if (mt_kids[i] == pid)
			mt_kids[i] = 0;
}

/* Decode a wait status: exit code, 128+signal, or -1. */
static inline int mt_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* Wait for a child for at most timeout_ns (a hang detector, not a timing
 * assertion).  Returns its code as mt_status(), or -2 if it is still running
 * at the deadline (it is then killed and reaped). */
static inline int mt_wait(pid_t pid, int64_t timeout_ns)
{
	int64_t dl = ft_now_ns() + timeout_ns;
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			mt_forget(pid);
			return mt_status(st);
		}
		if (r < 0 && errno != EINTR) {
			mt_forget(pid);
			return -1;
		}
		if (ft_now_ns() > dl) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			mt_forget(pid);
			return -2;
		}
		usleep(1000);
	}
}

/* Wait for n children together, until timeout_ns (a hang detector).
 * codes[i] gets each one's mt_status().  As soon as one exits non-zero the
 * others are killed (code -3: "stopped after a sibling failed"), so a dead
 * producer does not leave its consumers waiting out their deadlines; those
 * still running at the deadline are killed with code -2.  Returns the index
 * of the first child that failed, or -1 if all exited 0. */
static inline int mt_wait_all(const pid_t *pids, int n, int64_t timeout_ns, int *codes)
{
	int64_t dl = ft_now_ns() + timeout_ns;
	int left = n, first = -1;
	for (int i = 0; i < n; i++)
		codes[i] = -1000;
	while (left > 0) {
		int progressed = 0;
		for (int i = 0; i < n; i++) {
			int st;
			if (codes[i] != -1000)
				continue;
			pid_t r = waitpid(pids[i], &st, WNOHANG);
			if (r == 0)
				continue;
			codes[i] = r == pids[i] ? mt_status(st) : -1;
			mt_forget(pids[i]);
			left--;
			progressed = 1;
			if (codes[i] != 0 && first < 0) {
				first = i;
				for (int j = 0; j < n; j++) {
					if (codes[j] != -1000)
						continue;
					kill(pids[j], SIGKILL);
					waitpid(pids[j], NULL, 0);
					mt_forget(pids[j]);
					codes[j] = -3;
					left--;
				}
			}
		}
		if (left > 0 && !progressed) {
			if (ft_now_ns() > dl) {
				for (int j = 0; j < n; j++) {
					if (codes[j] != -1000)
						continue;
					kill(pids[j], SIGKILL);
					waitpid(pids[j], NULL, 0);
					mt_forget(pids[j]);
					codes[j] = -2;
					if (first < 0)
						first = j;
				}
				break;
			}
			usleep(1000);
		}
	}
	return first;
}

/* Has child pid exited?  If so reap it, store its mt_status() in *code
 * and return 1; return 0 while it runs.  For waits that should end early
 * (with the child's own diagnosis) when the child dies. */
static inline int mt_exited(pid_t pid, int *code)
{
	int st;
	if (*code != MT_RUNNING)
		return 1;
	if (waitpid(pid, &st, WNOHANG) != pid)
		return 0;
	mt_forget(pid);
	*code = mt_status(st);
	return 1;
}

/* Teardown: kill and reap every tracked child. */
static inline void mt_kill_all(void)
{
	for (int i = 0; i < MT_MAX_CHILDREN; i++) {
		if (mt_kids[i] > 0) {
			kill(mt_kids[i], SIGKILL);
			waitpid(mt_kids[i], NULL, 0);
			mt_kids[i] = 0;
		}
	}
}

/* Zeroed MAP_SHARED anonymous memory, inherited by children. */
static inline void *mt_shared(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* ---- stats and polling --------------------------------------------------- */

static inline fab_stats mt_stats(fab_chan *ch)
{
	fab_stats st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	if (fab_chan_stats(ch, &st) != 0)
		memset(&st, 0xff, sizeof st); /* makes every comparison below fail loudly */
	return st;
}

/* Poll `cond` every 200 us until it holds or timeout_ns passes; yields its
 * final truth value.  A hang detector, never a timing assertion. */
#define MT_WAIT_UNTIL(cond, timeout_ns)                                          \
	({                                                                       \
		int64_t mt_dl_ = ft_now_ns() + (int64_t)(timeout_ns);            \
		int mt_ok_;                                                      \
		while (!(mt_ok_ = !!(cond)) && ft_now_ns() < mt_dl_)             \
			usleep(200);                                             \
		mt_ok_;                                                          \
	})

#define MT_SEC 1000000000LL
#define MT_MS 1000000LL

/* ---- PRNG ---------------------------------------------------------------- */

static inline uint64_t mt_mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

typedef struct mt_rng {
	uint64_t s;
} mt_rng;

static inline uint64_t mt_next(mt_rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return mt_mix64(r->s);
}

/* Uniform in [0, n); n > 0. */
static inline uint64_t mt_below(mt_rng *r, uint64_t n)
{
	return mt_next(r) % n;
}

/* The run's seed: $FAB_SEED if set, else time-based; printed either way. */
static inline uint64_t mt_seed(const char *what)
{
	const char *e = getenv("FAB_SEED");
	uint64_t s;
	if (e && *e)
		s = strtoull(e, NULL, 0);
	else
		s = mt_mix64((uint64_t)ft_now_ns() ^ ((uint64_t)getpid() << 32));
	printf("%s: seed %llu (rerun with FAB_SEED=%llu)\n", what, (unsigned long long)s,
	       (unsigned long long)s);
	fflush(stdout);
	return s;
}

/* ---- self-checking messages ---------------------------------------------
 * Layout (little-endian, len >= 8):
 *   [0..4)  seq
 *   [4..6)  producer id
 *   [6..8)  check16 = hash(producer, seq, len)
 *   [8..len) bytes of the stream mt_mix64(key + i)
 * The length of message (producer, seq) on a channel of msg_size ms is a
 * function of both, so a truncated or padded message is caught too.
 */
#define MT_HDR 8u

static inline uint64_t mt_key(uint32_t prod, uint32_t seq)
{
	return ((uint64_t)prod << 32) | seq;
}

static inline size_t mt_msg_len(uint32_t prod, uint32_t seq, uint32_t msg_size)
{
	if (msg_size <= MT_HDR)
		return MT_HDR;
	return MT_HDR + (size_t)(mt_mix64(mt_key(prod, seq) ^ 0x5eedULL) % (msg_size - MT_HDR + 1));
}

static inline uint16_t mt_check16(uint32_t prod, uint32_t seq, size_t len)
{
	return (uint16_t)mt_mix64(mt_key(prod, seq) * 31 + len);
}

static inline void mt_fill(void *buf, uint32_t prod, uint32_t seq, size_t len)
{
	unsigned char *b = buf;
	uint64_t key = mt_key(prod, seq), w = 0;
	uint16_t p16 = (uint16_t)prod, c16 = mt_check16(prod, seq, len);
	memcpy(b, &seq, 4);
	memcpy(b + 4, &p16, 2);
	memcpy(b + 6, &c16, 2);
	for (size_t i = MT_HDR; i < len; i++) {
		if (((i - MT_HDR) & 7) == 0)
			w = mt_mix64(key + i);
		b[i] = (unsigned char)(w >> (8 * ((i - MT_HDR) & 7)));
	}
}

/* Verify a received message.  On success stores its producer and seq and
 * returns 0; otherwise returns a nonzero reason:
 *   1 too short, 2 check16 wrong, 3 length wrong for (prod, seq), 4 payload. */
static inline int mt_verify(const void *buf, size_t len, uint32_t msg_size, uint32_t *prod,
			    uint32_t *seq)
{
	const unsigned char *b = buf;
	uint32_t s;
	uint16_t p16, c16;
	uint64_t key, w = 0;
	if (len < MT_HDR)
		return 1;
	memcpy(&s, b, 4);
	memcpy(&p16, b + 4, 2);
	memcpy(&c16, b + 6, 2);
	if (c16 != mt_check16(p16, s, len))
		return 2;
	if (len != mt_msg_len(p16, s, msg_size))
		return 3;
	key = mt_key(p16, s);
	for (size_t i = MT_HDR; i < len; i++) {
		if (((i - MT_HDR) & 7) == 0)
			w = mt_mix64(key + i);
		if (b[i] != (unsigned char)(w >> (8 * ((i - MT_HDR) & 7))))
			return 4;
	}
	*prod = p16;
	*seq = s;
	return 0;
}

/* Child-side open of a fabric and channel; 0 or a negative FAB_E* code. */
static inline int mt_open(const char *fabric, const char *chan, unsigned role, fab_fabric **fab,
			  fab_chan **ch)
{
	int rc = fab_fabric_open(fabric, 0, fab);
	if (rc != 0)
		return rc;
	rc = fab_chan_open(*fab, chan, role, ch);
	if (rc != 0) {
		fab_fabric_close(*fab);
		*fab = NULL;
	}
	return rc;
}

static inline void mt_close(fab_fabric *fab, fab_chan *ch)
{
	if (ch)
		fab_chan_release(ch);
	if (fab)
		fab_fabric_close(fab);
}

/* Child diagnostics go to stderr (ctest --output-on-failure shows them),
 * with the library's detail of its last error. */
#define MT_CHILD_FAIL(code, ...)                                                 \
	do {                                                                     \
		fprintf(stderr, "[child %d] ", (int)getpid());                   \
		fprintf(stderr, __VA_ARGS__);                                    \
		fprintf(stderr, " [last detail: %s] -> exit %d\n",              \
			fab_errmsg() ? fab_errmsg() : "", (code));               \
		return (code);                                                   \
	} while (0)

/* A child's whole body: receive one message from `chan` and check it, the
 * string `expect` (its NUL included), or FAB_ECLOSED when expect is NULL.
 * Exit 0; 20 the open failed; 10 anything else was received. */
static inline int mt_child_recv_one(const char *fabric, const char *chan, const char *expect)
{
	fab_fabric *f = NULL;
	fab_chan *rx = NULL;
	char buf[64] = {0};
	int rc = mt_open(fabric, chan, FAB_RECV, &f, &rx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	ssize_t n = fab_recv(rx, buf, sizeof buf - 1, NULL);
	if (expect ? n != (ssize_t)strlen(expect) + 1 || strcmp(buf, expect) != 0 : n != FAB_ECLOSED)
		MT_CHILD_FAIL(10, "recv: %zd (%s), expected %s", n,
			      n < 0 ? fab_errname((int)n) : buf, expect ? expect : "FAB_ECLOSED");
	mt_close(f, rx);
	return 0;
}

/* Parent: create a fabric (FAB_CREATE) and a channel, then release the
 * channel handle (an spsc end held by the parent would make a child's
 * open FAB_EBUSY).  Returns 0 or the failing code. */
static inline int mt_make_chan(const char *fabric, const char *chan, uint32_t kind, uint32_t cap,
			       uint32_t msg_size, uint32_t producers, fab_fabric **fab)
{
	fab_chan_opts o;
	fab_chan *ch = NULL;
	int rc;
	if (*fab == NULL) {
		rc = fab_fabric_open(fabric, FAB_CREATE, fab);
		if (rc != 0)
			return rc;
	}
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.capacity = cap;
	o.msg_size = msg_size;
	o.kind = kind;
	o.producers = producers;
	rc = fab_chan_create(*fab, chan, &o, &ch);
	if (rc != 0)
		return rc;
	fab_chan_release(ch);
	return 0;
}

/* The library's test hook FAB_TEST_START_POS (read by fab_chan_create in
 * the creating process): channels created until mt_start_pos(0) start
 * their positions there, so a run crosses 2^31, 2^45 or 2^64 without
 * billions of messages. */
static inline void mt_start_pos(uint64_t start)
{
	char v[32];
	if (start == 0) {
		unsetenv("FAB_TEST_START_POS");
		return;
	}
	snprintf(v, sizeof v, "%llu", (unsigned long long)start);
	setenv("FAB_TEST_START_POS", v, 1);
}

/* Parent teardown for the success path: close, destroy, and check that
 * destroy left nothing in /dev/shm. */
static inline void mt_destroy(const char *fabric, fab_fabric **fab)
{
	if (*fab) {
		fab_fabric_close(*fab);
		*fab = NULL;
	}
	ck_assert_int_eq(fab_fabric_destroy(fabric), 0);
	ck_assert_msg(mt_shm_scan(fabric, 0) == 0, "fab_fabric_destroy(%s) left segments in /dev/shm",
		      fabric);
}

/* The lowest mapping of `path` (a /dev/shm file) in this process that is not
 * in known[], or NULL: how a test finds the mapping a new handle made (to
 * stage a crash state or protect a page in it alone).  Usable in children
 * (no ck_assert). */
static inline uint8_t *mt_new_map(const char *path, uint8_t *const *known, int nknown)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	uint8_t *found = NULL;
	if (!f)
		return NULL;
	while (fgets(line, sizeof line, f)) {
		char *at = strstr(line, path);
		if (!at || at[strlen(path)] != '\n')
			continue;
		uint8_t *lo = (uint8_t *)(uintptr_t)strtoull(line, NULL, 16);
		int old = 0;
		for (int i = 0; i < nknown; i++)
			old |= known[i] == lo;
		if (!old && !found)
			found = lo;
	}
	fclose(f);
	return found;
}

/* The state letter of process pid (/proc/<pid>/stat), 0 if unreadable. */
static inline char mt_proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Is pid asleep in futex/futex_waitv, i.e. past its last look?  Where
 * /proc/<pid>/syscall cannot be read, any interruptible sleep counts.  A
 * state check for tests that must act only once a peer sleeps. */
static inline int mt_in_futex(pid_t pid)
{
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
	char path[64], buf[64];
	snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return mt_proc_state(pid) == 'S';
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return mt_proc_state(pid) == 'S';
	buf[n] = '\0';
	if (buf[0] < '0' || buf[0] > '9')
		return 0; /* "running" */
	long nr = strtol(buf, NULL, 10);
	return (nr == SYS_futex || nr == SYS_futex_waitv) && mt_proc_state(pid) == 'S';
}

/* For failure messages: what an mt_wait code of -2 means. */
static inline const char *mt_code_why(int code)
{
	return code == -2 ? " (still blocked: killed at the deadline)" : "";
}

#endif /* MP_UTIL_H */
