/*
 * limiter_test.c - a limiter shared by 8 processes never grants more than
 * rate * t + burst tokens over any interval t (DESIGN §2, docs/limiters.md).
 *
 * The parent creates the limiter, notes t_start, forks 8 children and lets
 * them hammer it for a while: most call fab_limiter_try in a tight loop,
 * some fab_limiter_wait under short deadlines, with requests of 1..3
 * tokens.  Each child adds the tokens it was granted to its own counter in
 * shared memory.  After every child has exited the parent notes t_end and
 * asserts, as a count and not as a timing threshold:
 *
 *   total <= (t_end - t_start) / T + burst     (T = 1e9/rate, exact here)
 *
 * which holds however slow or preempted the machine is (a slow machine
 * only makes the bound looser), and total >= burst (the bucket starts full
 * and the children try far more often than that), and that the limiter's
 * own `granted` counter agrees with the children's sum.
 *
 * The second test adds a child that keeps switching the limiter between
 * two rates and bursts with fab_limiter_set, logging when each call began
 * and returned: the bound is then the integral of the rate in effect (each
 * set counted at both rates while it ran) plus the burst at t_start, since
 * a set never adds tokens to the bucket.
 *
 * Child exit codes: 0 ok; 10 open; 20 an unexpected return code; 21 a wait
 * with a deadline returned something other than 0 / FAB_ETIMEDOUT.
 */
#include "mp_util.h"

#include "layout.h"

#include <stdatomic.h>

#define NPROC 8
#define MAXTOK 3
#define MAXSETS 65536

enum { K_TRY, K_WAIT, K_SET, K_SET_SAME };

struct shared {
	_Atomic int stop;
	_Atomic uint64_t tokens[NPROC]; /* granted to child i */
	_Atomic uint64_t calls[NPROC];  /* try/wait calls made by child i */
	_Atomic uint64_t sets;          /* logged fab_limiter_set calls (K_SET) */
	_Atomic uint64_t storm;         /* unlogged ones (K_SET_SAME) */
	/* the setter's log: set k took effect at some instant in
	 * [before, after], with the high (1) or low (0) parameters */
	struct {
		int64_t before, after;
		uint32_t hi;
	} log[MAXSETS];
};
static struct shared *sh;

struct cfg {
	const char *fabric;
	int idx, kind;
	double rate_a, rate_b;
	uint32_t burst_a, burst_b;
};

static int hammer(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_limiter *l = NULL;
	mt_rng rng = {mt_mix64((uint64_t)c->idx * 7919 + (uint64_t)getpid())};
	int rc = fab_fabric_open(c->fabric, 0, &fab);
	if (rc != 0)
		MT_CHILD_FAIL(10, "fabric_open: %s", fab_strerror(rc));
	rc = fab_limiter_open(fab, "lim", &l);
	if (rc != 0)
		MT_CHILD_FAIL(10, "limiter_open: %s", fab_strerror(rc));
	uint64_t n = 0, sets = 0;
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
		uint32_t tok = 1 + (uint32_t)mt_below(&rng, MAXTOK);
		if (c->kind == K_SET_SAME) {
			/* The creation parameters again and again, no pause:
			 * the set() lock under fire, the rate never changes. */
			rc = fab_limiter_set(l, c->rate_a, c->burst_a);
			if (rc != 0)
				MT_CHILD_FAIL(20, "set: %d (%s)", rc, fab_strerror(rc));
			atomic_fetch_add_explicit(&sh->storm, 1, memory_order_relaxed);
			if ((++sets & 63) == 0)
				sched_yield(); /* let the takers run on 2 cores */
			continue;
		}
		if (c->kind == K_SET) {
			/* First to the creation parameters, then alternate. */
			if (sets == MAXSETS) {
				usleep(1000);
				continue;
			}
			int hi = (sets & 1) == 0;
			int64_t before = ft_now_ns();
			rc = fab_limiter_set(l, hi ? c->rate_a : c->rate_b,
					     hi ? c->burst_a : c->burst_b);
			int64_t after = ft_now_ns();
			if (rc != 0)
				MT_CHILD_FAIL(20, "set: %d (%s)", rc, fab_strerror(rc));
			sh->log[sets].before = before;
			sh->log[sets].after = after;
			sh->log[sets].hi = (uint32_t)hi;
			sets++;
			atomic_store(&sh->sets, sets); /* the parent reads after we exit */
			usleep(200);
			continue;
		}
		n++;
		if (c->kind == K_TRY) {
			rc = fab_limiter_try(l, tok);
			if (rc == 0)
				atomic_fetch_add_explicit(&sh->tokens[c->idx], tok,
							  memory_order_relaxed);
			else if (rc != FAB_EAGAIN)
				MT_CHILD_FAIL(20, "try(%u): %d (%s)", tok, rc, fab_strerror(rc));
		} else {
			fab_ctx *d = NULL;
			rc = fab_ctx_with_timeout(NULL, 20 * MT_MS, &d);
			if (rc != 0)
				MT_CHILD_FAIL(20, "with_timeout: %s", fab_strerror(rc));
			rc = fab_limiter_wait(l, tok, d);
			fab_ctx_release(d);
			if (rc == 0)
				atomic_fetch_add_explicit(&sh->tokens[c->idx], tok,
							  memory_order_relaxed);
			else if (rc != FAB_ETIMEDOUT)
				MT_CHILD_FAIL(21, "wait(%u): %d (%s)", tok, rc, fab_strerror(rc));
		}
		if ((n & 255) == 0)
			atomic_store_explicit(&sh->calls[c->idx], n, memory_order_relaxed);
	}
	atomic_store(&sh->calls[c->idx], n);
	fab_limiter_release(l);
	fab_fabric_close(fab);
	return 0;
}

/* The limiter's own counter of granted tokens (read-only map). */
static uint64_t granted_counter(const char *fabric)
{
	char p[80];
	snprintf(p, sizeof p, "/fab.%s", fabric);
	int fd = shm_open(p, O_RDONLY, 0);
	ck_assert_msg(fd >= 0, "shm_open %s: %s", p, strerror(errno));
	uint8_t *m = mmap(NULL, FAB_CTL_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert_msg(m != MAP_FAILED, "mmap: %s", strerror(errno));
	fab_lim_ent *t = (fab_lim_ent *)(m + FAB_CTL_LIMS_OFF);
	uint64_t g = UINT64_MAX;
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++)
		if (atomic_load(&t[i].state) == FAB_ENT_LIVE &&
		    strncmp(t[i].name, "lim", sizeof t[i].name) == 0)
			g = atomic_load(&t[i].granted);
	munmap(m, FAB_CTL_SIZE);
	return g;
}

/*
 * Run NPROC children of the given kinds against limiter "lim" (created at
 * rate_a/burst_a) for run_ms; returns the tokens granted and stores the
 * interval in *dt_ns.
 */
static uint64_t run(const char *fabric, const int *kinds, double rate_a, uint32_t burst_a,
		    double rate_b, uint32_t burst_b, int run_ms, int64_t *dt_ns,
		    uint64_t *calls_out, int64_t *integral_out)
{
	fab_fabric *fab = NULL;
	fab_limiter *l = NULL;
	struct cfg cfgs[NPROC];
	pid_t kids[NPROC];
	int codes[NPROC];
	int rc = fab_fabric_open(fabric, FAB_CREATE, &fab);
	ck_assert_msg(rc == 0, "fabric_open: %s", fab_strerror(rc));
	rc = fab_limiter_create(fab, "lim", rate_a, burst_a, &l);
	ck_assert_msg(rc == 0, "limiter_create: %s (%s)", fab_strerror(rc), fab_errmsg());
	fab_limiter_release(l);

	sh = mt_shared(sizeof *sh);
	ck_assert_ptr_nonnull(sh);
	int64_t t_start = ft_now_ns(); /* before any child can take a token */
	for (int i = 0; i < NPROC; i++) {
		cfgs[i] = (struct cfg){fabric, i, kinds[i], rate_a, rate_b, burst_a, burst_b};
		kids[i] = mt_spawn(hammer, &cfgs[i]);
		ck_assert_int_gt(kids[i], 0);
	}
	usleep((useconds_t)run_ms * 1000);
	atomic_store(&sh->stop, 1);
	int bad = mt_wait_all(kids, NPROC, 60 * MT_SEC, codes);
	int64_t t_end = ft_now_ns(); /* after every child has stopped */
	mt_kill_all();
	ck_assert_msg(bad < 0, "child %d (kind %d) exited %d", bad, bad >= 0 ? kinds[bad] : -1,
		      bad >= 0 ? codes[bad] : 0);

	uint64_t total = 0, calls = 0;
	for (int i = 0; i < NPROC; i++) {
		total += atomic_load(&sh->tokens[i]);
		calls += atomic_load(&sh->calls[i]);
	}
	uint64_t counted = granted_counter(fabric);
	printf("limiter: %llu tokens in %.3f s by %llu calls (%llu + %llu sets); counter %llu\n",
	       (unsigned long long)total, (double)(t_end - t_start) / 1e9,
	       (unsigned long long)calls, (unsigned long long)atomic_load(&sh->sets),
	       (unsigned long long)atomic_load(&sh->storm), (unsigned long long)counted);
	ck_assert_msg(counted == total, "limiter counter %llu != children's sum %llu",
		      (unsigned long long)counted, (unsigned long long)total);
	/* The integral of the rate over [t_start, t_end], counting each set's
	 * uncertain instant [before, after] at both rates (an overestimate,
	 * so the bound stays a bound).  The rates are whole numbers, so the
	 * sum is exact in integers. */
	uint64_t ns = atomic_load(&sh->sets);
	int64_t acc = 0; /* token-nanoseconds per second */
	for (uint64_t k = 0; k <= ns; k++) {
		double r = k == 0 ? rate_a : sh->log[k - 1].hi ? rate_a : rate_b;
		int64_t from = k == 0 ? t_start : sh->log[k - 1].before;
		int64_t to = k == ns ? t_end : sh->log[k].after;
		acc += (to - from) * (int64_t)r;
	}
	*integral_out = acc / 1000000000LL;
	munmap(sh, sizeof *sh);
	sh = NULL;
	mt_destroy(fabric, &fab);
	*dt_ns = t_end - t_start;
	*calls_out = calls;
	return total;
}

START_TEST(rate_bound_under_contention)
{
	/* 20000/s: T = 50 us exactly. */
	const double rate = 20000;
	const uint64_t T = 50000;
	const uint32_t burst = 200;
	static const int kinds[NPROC] = {K_TRY, K_TRY, K_TRY, K_TRY, K_TRY, K_TRY, K_WAIT, K_WAIT};
	int64_t dt, integral;
	uint64_t calls;
	uint64_t total = run(mt_fabric_name("lim"), kinds, rate, burst, rate, burst,
			     MT_SCALE(1500, 1000), &dt, &calls, &integral);
	uint64_t bound = (uint64_t)dt / T + burst;
	printf("limiter: bound %llu (rate %.0f/s, burst %u)\n", (unsigned long long)bound, rate,
	       burst);
	ck_assert_msg(total <= bound, "granted %llu tokens, more than rate*t + burst = %llu",
		      (unsigned long long)total, (unsigned long long)bound);
	/* Not grossly under-granting, in a form that cannot flake: the level
	 * starts at `burst` and only grants lower it, so until the children
	 * were granted burst - MAXTOK + 1 tokens every request (<= MAXTOK)
	 * succeeded. */
	uint64_t floor_ = burst - MAXTOK + 1;
	ck_assert_msg(total >= (calls < floor_ ? calls : floor_),
		      "granted %llu tokens in %llu calls; a full bucket holds %u",
		      (unsigned long long)total, (unsigned long long)calls, burst);
}
END_TEST

START_TEST(rate_bound_with_live_set)
{
	/* One child switches between 20000/s burst 200 and 4000/s burst 50
	 * every ~200 us while the others take tokens.  A set never adds
	 * tokens, so the bound is the higher rate plus the burst at start. */
	const double rate_hi = 20000, rate_lo = 4000;
	const uint64_t T_hi = 50000;
	const uint32_t burst_hi = 200, burst_lo = 50;
	static const int kinds[NPROC] = {K_SET, K_TRY, K_TRY, K_TRY, K_TRY, K_TRY, K_WAIT, K_WAIT};
	int64_t dt, integral;
	uint64_t calls;
	uint64_t total = run(mt_fabric_name("limset"), kinds, rate_hi, burst_hi, rate_lo, burst_lo,
			     MT_SCALE(1500, 1000), &dt, &calls, &integral);
	/* The coarse bound (the higher rate all the time), then the tight
	 * one: the integral of the rate in effect, from the setter's log. */
	uint64_t coarse = (uint64_t)dt / T_hi + burst_hi;
	uint64_t bound = (uint64_t)integral + burst_hi;
	printf("limiter+set: bound %llu (coarse %llu)\n", (unsigned long long)bound,
	       (unsigned long long)coarse);
	ck_assert_msg(total <= coarse, "granted %llu tokens, more than max rate*t + burst = %llu",
		      (unsigned long long)total, (unsigned long long)coarse);
	ck_assert_msg(total <= bound,
		      "granted %llu tokens, more than the integral of the rate + burst = %llu",
		      (unsigned long long)total, (unsigned long long)bound);
	/* The level starts at burst_hi and a set keeps min(level, burst), so
	 * it stays >= burst_lo - (tokens granted): until burst_lo - MAXTOK + 1
	 * tokens were granted, every request succeeded. */
	ck_assert_msg(total >= (calls < burst_lo - MAXTOK + 1 ? calls : burst_lo - MAXTOK + 1),
		      "granted %llu tokens in %llu calls", (unsigned long long)total,
		      (unsigned long long)calls);
	ck_assert_msg(total > 0 && calls > 0, "nothing happened");
}
END_TEST

START_TEST(rate_bound_with_set_storm)
{
	/* One child calls fab_limiter_set with unchanged parameters as fast
	 * as it can while the others take tokens.  The rate never changes, so
	 * the bound is exactly rate*t + burst: a set that lost a concurrent
	 * grant (its tat update) would show up as tokens beyond it. */
	const double rate = 20000;
	const uint64_t T = 50000;
	const uint32_t burst = 200;
	static const int kinds[NPROC] = {K_SET_SAME, K_TRY, K_TRY,  K_TRY,
					 K_TRY,      K_TRY, K_WAIT, K_WAIT};
	int64_t dt, integral;
	uint64_t calls;
	uint64_t total = run(mt_fabric_name("limstorm"), kinds, rate, burst, rate, burst,
			     MT_SCALE(1500, 1000), &dt, &calls, &integral);
	uint64_t bound = (uint64_t)dt / T + burst;
	printf("limiter+set storm: bound %llu\n", (unsigned long long)bound);
	ck_assert_msg(total <= bound, "granted %llu tokens, more than rate*t + burst = %llu",
		      (unsigned long long)total, (unsigned long long)bound);
	ck_assert_msg(total > 0 && calls > 0, "nothing happened");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mp_limiter");
	TCase *tc = mt_tcase("limiter", 100);
	mt_init();
	tcase_add_test(tc, rate_bound_under_contention);
	tcase_add_test(tc, rate_bound_with_live_set);
	tcase_add_test(tc, rate_bound_with_set_storm);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
