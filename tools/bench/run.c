/*
 * run.c - executes one measured run: sets the mechanism up, forks its
 * processes (pinned when there are one or two), releases them together
 * through a futex barrier, waits for them under a watchdog, and tears
 * everything down again, on success and on every error path.  Also the
 * parent's signal handling: SIGCHLD is blocked and taken with sigtimedwait;
 * SIGINT/SIGTERM/SIGHUP only set a flag, which the waits look at every
 * 100 ms, so an interrupt is acted on at a well-defined point (children
 * killed and reaped, then main destroys the fabric).  A second interrupt
 * means the parent is stuck somewhere else: the handler kills the children
 * and exits at once (the next run removes the fabric left behind).
 */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static pid_t g_parent;
static volatile sig_atomic_t g_interrupted;
static sigset_t g_set;         /* SIGCHLD, taken with sigtimedwait */
static pid_t g_pids[BENCH_MAXCHILD];
static unsigned g_npids;

static void on_sigchld(int sig)
{
	(void)sig; /* never runs: SIGCHLD stays blocked; see sig_setup */
}

static void on_term(int sig)
{
	unsigned i;

	if (g_interrupted && getpid() == g_parent) {
		for (i = 0; i < BENCH_MAXCHILD; i++)
			if (g_pids[i] > 0)
				kill(g_pids[i], SIGKILL);
		_exit(128 + sig);
	}
	g_interrupted = sig;
}

/* SIGCHLD gets a handler (never called) rather than SIG_DFL so that, blocked,
 * it is surely queued for sigtimedwait, not discarded.  The interrupts get
 * a handler without SA_RESTART. */
void sig_setup(void)
{
	struct sigaction sa;

	g_parent = getpid();
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_sigchld;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = on_term;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigemptyset(&g_set);
	sigaddset(&g_set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &g_set, NULL);
}

/* Waits up to timeout_ns for SIGCHLD: at most 100 ms, so that an interrupt
 * whose handler ran just before the call is still acted on soon. */
static void sig_wait(int64_t timeout_ns)
{
	struct timespec ts;

	if (g_interrupted)
		return;
	if (timeout_ns < 0)
		timeout_ns = 0;
	if (timeout_ns > 100000000)
		timeout_ns = 100000000;
	ts.tv_sec = timeout_ns / 1000000000;
	ts.tv_nsec = timeout_ns % 1000000000;
	sigtimedwait(&g_set, NULL, &ts);
}

int sig_interrupted(void)
{
	return g_interrupted;
}

long futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	/* Shared, not FUTEX_PRIVATE_FLAG: the word is in MAP_SHARED memory. */
	return syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, NULL, NULL, 0);
}

long futex_wake(_Atomic uint32_t *w, int n)
{
	return syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

int child_fail(struct run *r, unsigned slot, const char *fmt, ...)
{
	va_list ap;

	if (slot < BENCH_MAXCHILD && r->sh->out[slot].err[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(r->sh->out[slot].err, sizeof r->sh->out[slot].err, fmt, ap);
		va_end(ap);
	}
	return 1;
}

int barrier_wait(struct run *r)
{
	atomic_fetch_add_explicit(&r->sh->ready, 1, memory_order_release);
	/* Pairs with run_exec's release store of go: the deadline is visible. */
	while (atomic_load_explicit(&r->sh->go, memory_order_acquire) == 0)
		futex_wait(&r->sh->go, 0);
	return 0;
}

/* Maps every page of [p, p+len) into this process's page tables (a read is
 * enough for shared memory; writing would race with the other processes). */
void prefault(const void *p, size_t len)
{
	const volatile unsigned char *c = p;
	size_t i;

	for (i = 0; i < len; i += 4096)
		(void)c[i];
	if (len)
		(void)c[len - 1];
}

void hist_add(struct hist *h, uint64_t v)
{
	unsigned idx, e;

	if (v < 128) {
		idx = (unsigned)v;
	} else {
		e = 63u - (unsigned)__builtin_clzll(v); /* 2^e <= v < 2^(e+1), e >= 7 */
		idx = 128 + (e - 7) * 64 + (unsigned)((v >> (e - 6)) & 63);
		if (idx >= HIST_BUCKETS)
			idx = HIST_BUCKETS - 1;
	}
	h->b[idx]++;
	h->n++;
}

/* The p-quantile (0 < p <= 1): the middle of the bucket holding it. */
uint64_t hist_pct(const struct hist *h, double p)
{
	uint64_t want, seen = 0;
	unsigned i, e, sub;

	if (h->n == 0)
		return 0;
	want = (uint64_t)(p * (double)h->n + 0.999999);
	if (want < 1)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want)
			break;
	}
	if (i >= HIST_BUCKETS)
		i = HIST_BUCKETS - 1;
	if (i < 128)
		return i;
	e = (i - 128) / 64 + 7;
	sub = (i - 128) % 64;
	return ((uint64_t)(64 + sub) << (e - 6)) + ((uint64_t)1 << (e - 6)) / 2;
}

void run_kill_all(void)
{
	unsigned i;

	for (i = 0; i < g_npids; i++)
		if (g_pids[i] > 0)
			kill(g_pids[i], SIGKILL);
	for (i = 0; i < g_npids; i++) {
		if (g_pids[i] > 0) {
			while (waitpid(g_pids[i], NULL, 0) < 0 && errno == EINTR)
				;
			g_pids[i] = 0;
		}
	}
	g_npids = 0;
}

/* The child's side of fork: a clean signal state, death with the parent,
 * the CPU it is pinned to, then the mechanism's body. */
static void child_main(struct run *r, const struct mech *m, enum bench_role role,
		       unsigned slot, int cpu)
{
	sigset_t none;
	cpu_set_t cs;
	int rc;

	signal(SIGCHLD, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_IGN); /* a dead reader shows as EPIPE, with a message */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != g_parent)
		_exit(3);
	if (cpu >= 0) {
		CPU_ZERO(&cs);
		CPU_SET(cpu, &cs);
		if (sched_setaffinity(0, sizeof cs, &cs) != 0) {
			child_fail(r, slot, "sched_setaffinity(cpu %d): %s", cpu,
				   strerror(errno));
			_exit(1);
		}
	}
	rc = m->child(r, role, slot);
	r->sh->out[slot].done = 1;
	_exit(rc);
}

/* Reaps whatever exited; returns how many of ours are still running.  Marks
 * the first failure in *failed (slot + 1) and its status in *fstatus. */
static unsigned reap(const pid_t *pids, int *alive, unsigned n, int *failed,
		     int *fstatus)
{
	unsigned i, left = 0;
	int st;
	pid_t p;

	for (i = 0; i < n; i++) {
		if (!alive[i])
			continue;
		p = waitpid(pids[i], &st, WNOHANG);
		if (p == pids[i]) {
			alive[i] = 0;
			g_pids[i] = 0;
			if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !*failed) {
				*failed = (int)i + 1;
				*fstatus = st;
			}
		} else {
			left++;
		}
	}
	return left;
}

static const char *role_name(const struct run *r, unsigned slot)
{
	if (r->shape == SHAPE_PP)
		return slot == 0 ? "pinger" : "ponger";
	if (r->shape == SHAPE_BCAST)
		return slot == 0 ? "publisher" : "subscriber";
	if (r->shape == SHAPE_CALLS)
		return "caller";
	return slot < r->nprod ? "producer" : "consumer";
}

/*
 * Runs r with mechanism m.  Returns 0 when every process finished cleanly
 * (results in r->sh->out), 1 when the mechanism is unavailable here, -1 on a
 * failure (a child's error, a crash or a hang), -2 when interrupted; err
 * says why.  Every child is reaped and the mechanism torn down before it
 * returns.
 */
int run_exec(struct run *r, const struct mech *m, char *err, size_t errlen)
{
	pid_t pids[BENCH_MAXCHILD];
	int alive[BENCH_MAXCHILD];
	unsigned n, i, left;
	int rc, failed = 0, fstatus = 0, timed_out = 0;
	int64_t t_go, limit;
	pid_t pid;

	err[0] = '\0';
	memset(r->sh, 0, sizeof *r->sh);
	n = r->shape == SHAPE_PP ? 2 : r->nprod + r->ncons;
	atomic_store(&r->sh->cons_left, r->ncons);
	atomic_store(&r->sh->calls_left, r->shape == SHAPE_CALLS ? r->nprod : 0);
	rc = m->setup(r, err, errlen);
	if (rc != 0)
		return rc > 0 ? 1 : -1;

	fflush(stdout);
	fflush(stderr);
	g_npids = 0;
	for (i = 0; i < n; i++) {
		enum bench_role role;
		int cpu = -1;

		if (r->shape == SHAPE_PP)
			role = i == 0 ? ROLE_PING : ROLE_PONG;
		else
			role = i < r->nprod ? ROLE_PROD : ROLE_CONS;
		/* Shapes of one or two processes are pinned (one CPU each);
		 * larger ones are left to the scheduler. */
		if (n <= 2)
			cpu = r->cpu[i];
		pid = fork();
		if (pid < 0) {
			snprintf(err, errlen, "fork: %s", strerror(errno));
			run_kill_all();
			m->teardown(r);
			return -1;
		}
		if (pid == 0)
			child_main(r, m, role, i, cpu);
		pids[i] = pid;
		alive[i] = 1;
		g_pids[i] = pid;
		g_npids = i + 1;
	}

	/* Wait until all are attached (or one failed while attaching). */
	limit = now_ns() + (int64_t)20 * 1000000000;
	for (;;) {
		left = reap(pids, alive, n, &failed, &fstatus);
		if (failed || g_interrupted)
			break;
		if (left < n) {
			snprintf(err, errlen, "a child exited before the start");
			failed = -1;
			break;
		}
		if (atomic_load(&r->sh->ready) >= n)
			break;
		if (now_ns() > limit) {
			timed_out = 1;
			break;
		}
		sig_wait(200000);
	}

	if (!failed && !timed_out && !g_interrupted) {
		t_go = now_ns();
		r->sh->deadline = t_go + r->duration_ns;
		/* Pairs with barrier_wait's acquire: publishes the deadline. */
		atomic_store_explicit(&r->sh->go, 1, memory_order_release);
		futex_wake(&r->sh->go, INT_MAX);
		/* Watchdog: generous, since 17 processes share 2 CPUs and a
		 * sleeping ping-pong may run a little past its deadline. */
		limit = t_go + r->duration_ns + (int64_t)30 * 1000000000;
		for (;;) {
			left = reap(pids, alive, n, &failed, &fstatus);
			if (left == 0 || failed || g_interrupted)
				break;
			if (now_ns() > limit) {
				timed_out = 1;
				break;
			}
			sig_wait(limit - now_ns());
		}
	}

	/* On any failure the others may wait forever for the one that died. */
	run_kill_all();
	m->teardown(r);

	if (g_interrupted) {
		snprintf(err, errlen, "interrupted by signal %d", g_interrupted);
		return -2;
	}
	if (failed > 0) {
		unsigned s = (unsigned)failed - 1;
		const char *why = r->sh->out[s].err;

		if (WIFSIGNALED(fstatus))
			snprintf(err, errlen, "%s %u killed by signal %d%s%s", role_name(r, s),
				 s, WTERMSIG(fstatus), why[0] ? ": " : "", why);
		else
			snprintf(err, errlen, "%s %u failed: %s", role_name(r, s), s,
				 why[0] ? why : "(no reason given)");
		return -1;
	}
	if (failed < 0)
		return -1;
	if (timed_out) {
		snprintf(err, errlen, "timed out (a process hung); killed the run's processes");
		for (i = 0; i < n; i++) {
			if (r->sh->out[i].err[0]) {
				size_t l = strlen(err);

				snprintf(err + l, errlen - l, "; %s %u: %s", role_name(r, i), i,
					 r->sh->out[i].err);
				break;
			}
		}
		return -1;
	}
	return 0;
}
