/*
 * limiter_test.c - unit suite for limiters: fab_limiter_create/open/try/
 * wait/set/release (docs/limiters.md).
 *
 * What a user relies on: a new limiter holds `burst` tokens; a request is
 * granted at once or refused (try) / slept on (wait) until the bucket has
 * refilled at `rate`; fab_limiter_set changes both live and wakes sleepers;
 * wait ends with the context; every argument error is FAB_EINVAL with a
 * message; a scribbled entry is FAB_ECORRUPT, never a crash or a hang.
 *
 * No assertion depends on how fast the machine is: refusals are asserted
 * only at rates so slow (a token per 100 s or 1000 s) that no refill can
 * happen during the test, grants after sleeping at least as long as the
 * refill needs.  The white-box checks (interval rounding, counters, scribbles)
 * map the control segment through layout.h.
 */
#include "unit.h"

#include "layout.h"

#define MS 1000000LL
#define SEC 1000000000LL

/* Rates at which nothing refills during a test. */
#define SLOW 0.01    /* a token per 100 s */
#define SLOWER 0.001 /* a token per 1000 s */

static fab_limiter *lim_mk(const char *name, double rate, uint32_t burst)
{
	fab_limiter *l = NULL;
	UT_RC(fab_limiter_create(fab, name, rate, burst, &l), 0);
	ck_assert_ptr_nonnull(l);
	return l;
}

/* The control segment of this test's fabric, mapped read-write. */
static uint8_t *ctl_map(void)
{
	char p[80];
	snprintf(p, sizeof p, "/fab.%s", fname);
	int fd = shm_open(p, O_RDWR, 0);
	ck_assert_msg(fd >= 0, "shm_open %s: %s", p, strerror(errno));
	void *m = mmap(NULL, FAB_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert_msg(m != MAP_FAILED, "mmap: %s", strerror(errno));
	return m;
}

/* The table entry of live limiter `name` (asserts there is exactly one). */
static fab_lim_ent *lim_ent(const char *name)
{
	fab_lim_ent *t = (fab_lim_ent *)(ctl_map() + FAB_CTL_LIMS_OFF), *found = NULL;
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++) {
		if (atomic_load(&t[i].state) == FAB_ENT_LIVE &&
		    strncmp(t[i].name, name, sizeof t[i].name) == 0) {
			ck_assert_msg(found == NULL, "two live limiters named %s", name);
			found = &t[i];
		}
	}
	ck_assert_msg(found != NULL, "no live limiter named %s in the table", name);
	return found;
}

/* Our process-table tag (to forge a set() lock held by a live process). */
static uint32_t own_tag(void)
{
	fab_proc_ent *p = (fab_proc_ent *)(ctl_map() + FAB_CTL_PROCS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
		uint64_t sg = atomic_load(&p[i].sg);
		if (FAB_SG_STATE(sg) == FAB_PROC_LIVE &&
		    atomic_load(&p[i].pid) == (uint32_t)getpid())
			return FAB_TAG_MAKE(i, FAB_SG_GEN(sg));
	}
	ck_abort_msg("no process-table entry for this process");
	return 0;
}

static bool msg_has(const char *word)
{
	return strstr(fab_errmsg(), word) != NULL;
}

#define UT_EINVAL_MSG(expr, word)                                                      \
	do {                                                                           \
		UT_RC(expr, FAB_EINVAL);                                               \
		ck_assert_msg(msg_has(word), "%s: message \"%s\" lacks \"%s\"", #expr, \
			      fab_errmsg(), word);                                     \
	} while (0)

/* Wait (bounded; never asserted) until the entry counts n sleepers. */
static void wait_sleepers(fab_lim_ent *e, uint32_t n)
{
	int64_t end = ft_now_ns() + 10 * SEC;
	while (atomic_load(&e->waiters) < n && ft_now_ns() < end)
		ut_sleep_ms(2);
	ut_sleep_ms(20); /* from "counted" to asleep; not an assertion */
}

/* In a child: its own fabric and limiter handles. */
static fab_limiter *child_lim(const char *name, fab_fabric **f, int code)
{
	fab_limiter *l = NULL;
	alarm(30); /* a hang is reported as 128+SIGALRM */
	CHILD_RC(fab_fabric_open(fname, 0, f), 0, code);
	CHILD_RC(fab_limiter_open(*f, name, &l), 0, code + 1);
	return l;
}

/* ---- arguments ---------------------------------------------------------- */

START_TEST(t_args)
{
	fab_limiter *l = (fab_limiter *)&l; /* must be reset to NULL on failure */
	UT_RC(fab_limiter_create(NULL, "a", 1, 1, &l), FAB_EINVAL);
	ck_assert_ptr_null(l);
	UT_RC(fab_limiter_create(fab, NULL, 1, 1, &l), FAB_EINVAL);
	UT_EINVAL_MSG(fab_limiter_create(fab, "", 1, 1, &l), "name");
	UT_EINVAL_MSG(fab_limiter_create(fab, "a.b", 1, 1, &l), "name");
	UT_RC(fab_limiter_create(fab, "a", 1, 1, NULL), FAB_EINVAL);
	/* Rates: NaN, infinities, zero, negative, above 1e9/s, below one token
	 * per 2^40 ns. */
	double bad_rates[] = {__builtin_nan(""),
			      __builtin_inf(),
			      -__builtin_inf(),
			      0.0,
			      -0.0,
			      -1.0,
			      1e9 * 1.5,
			      1e10,
			      1e-4,
			      1e-300};
	for (unsigned i = 0; i < sizeof bad_rates / sizeof bad_rates[0]; i++) {
		l = (fab_limiter *)&l;
		UT_EINVAL_MSG(fab_limiter_create(fab, "a", bad_rates[i], 1, &l), "rate");
		ck_assert_ptr_null(l);
	}
	UT_EINVAL_MSG(fab_limiter_create(fab, "a", 1, 0, &l), "burst");
	UT_EINVAL_MSG(fab_limiter_create(fab, "a", 1, FAB_LIM_BURST_MAX + 1, &l), "burst");
	UT_EINVAL_MSG(fab_limiter_create(fab, "a", 1, UINT32_MAX, &l), "burst");
	/* burst x interval above 2^61 ns */
	UT_EINVAL_MSG(fab_limiter_create(fab, "a", SLOWER, FAB_LIM_BURST_MAX, &l), "burst");
	UT_RC(fab_limiter_open(fab, "a", &l), FAB_ENOENT); /* nothing was created */

	/* The extremes that are valid. */
	fab_limiter *x = lim_mk("max", 1e9, FAB_LIM_BURST_MAX);
	fab_limiter *y = lim_mk("slowest", SLOWER, 1);
	fab_limiter *z = lim_mk("widest", SLOWER, 2000000); /* 2e18 ns <= 2^61 */

	/* Open. */
	UT_RC(fab_limiter_open(NULL, "max", &l), FAB_EINVAL);
	UT_RC(fab_limiter_open(fab, NULL, &l), FAB_EINVAL);
	UT_EINVAL_MSG(fab_limiter_open(fab, "m.x", &l), "name");
	UT_RC(fab_limiter_open(fab, "max", NULL), FAB_EINVAL);

	/* NULL handles. */
	UT_RC(fab_limiter_try(NULL, 1), FAB_EINVAL);
	UT_RC(fab_limiter_wait(NULL, 1, NULL), FAB_EINVAL);
	UT_RC(fab_limiter_set(NULL, 1, 1), FAB_EINVAL);
	fab_limiter_release(NULL);

	/* More tokens than the burst can never be granted: EINVAL, also from
	 * wait (which must not block). */
	UT_EINVAL_MSG(fab_limiter_try(y, 2), "burst");
	UT_EINVAL_MSG(fab_limiter_wait(y, 2, NULL), "burst");
	UT_EINVAL_MSG(fab_limiter_try(y, UINT32_MAX), "burst");
	UT_EINVAL_MSG(fab_limiter_wait(x, FAB_LIM_BURST_MAX + 1, NULL), "burst");

	/* set validates like create and changes nothing on failure. */
	UT_EINVAL_MSG(fab_limiter_set(y, __builtin_nan(""), 1), "rate");
	UT_EINVAL_MSG(fab_limiter_set(y, SLOWER, 0), "burst");
	UT_EINVAL_MSG(fab_limiter_set(y, 1e12, 2), "rate");
	UT_RC(fab_limiter_try(y, 1), 0);
	UT_RC(fab_limiter_try(y, 1), FAB_EAGAIN); /* still one token per 1000 s */
	UT_EINVAL_MSG(fab_limiter_try(y, 2), "burst");

	fab_limiter_release(x);
	fab_limiter_release(y);
	fab_limiter_release(z);
}
END_TEST

/* T = 1e9/rate rounded up; a quotient within rounding error of an
 * integer is that integer (docs/limiters.md). */
START_TEST(t_interval_rounding)
{
	struct {
		double rate;
		uint64_t interval;
	} cases[] = {
	    {1e9, 1},       {1e9 / 7, 7},    {1e6, 1000},
	    {3, 333333334}, {1000, 1000000}, {0.001, 1000000000000ULL},
	    {7e8, 2},       {2.5e8, 4},      {1, 1000000000},
	};
	for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char n[16];
		snprintf(n, sizeof n, "r%u", i);
		fab_limiter *l = lim_mk(n, cases[i].rate, 1);
		uint64_t p = atomic_load(&lim_ent(n)->params);
		ck_assert_msg(FAB_LIM_INTERVAL(p) == cases[i].interval,
			      "rate %g: interval %llu ns, want %llu", cases[i].rate,
			      (unsigned long long)FAB_LIM_INTERVAL(p),
			      (unsigned long long)cases[i].interval);
		ck_assert_uint_eq(FAB_LIM_BURST(p), 1);
		fab_limiter_release(l);
	}
}
END_TEST

/* ---- create / open ------------------------------------------------------ */

START_TEST(t_create_open)
{
	fab_limiter *a = lim_mk("a", SLOWER, 3), *b = NULL;
	UT_RC(fab_limiter_create(fab, "a", 5, 5, &b), FAB_EEXIST);
	ck_assert_ptr_null(b);
	ck_assert_msg(msg_has("a"), "EEXIST message: %s", fab_errmsg());
	UT_RC(fab_limiter_open(fab, "b", &b), FAB_ENOENT);
	ck_assert_ptr_null(b);
	ck_assert_msg(msg_has("b"), "ENOENT message: %s", fab_errmsg());
	UT_RC(fab_limiter_open(fab, "a", &b), 0);
	ck_assert_ptr_nonnull(b);

	/* One bucket behind both handles. */
	UT_RC(fab_limiter_try(a, 2), 0);
	UT_RC(fab_limiter_try(b, 2), FAB_EAGAIN);
	UT_RC(fab_limiter_try(b, 1), 0);
	UT_RC(fab_limiter_try(a, 1), FAB_EAGAIN);
	fab_limiter_release(a);
	fab_limiter_release(b);

	/* Releasing every handle neither removes nor refills it. */
	UT_RC(fab_limiter_open(fab, "a", &a), 0);
	UT_RC(fab_limiter_try(a, 1), FAB_EAGAIN);
	UT_RC(fab_limiter_create(fab, "a", 5, 5, &b), FAB_EEXIST);

	/* Limiters have their own namespace. */
	fab_ctx *c = NULL;
	UT_RC(fab_ctx_create(fab, "a", NULL, &c), 0);
	fab_ctx_release(c);
	fab_limiter *d = lim_mk("d", SLOW, 1);
	UT_RC(fab_ctx_open(fab, "d", &c), FAB_ENOENT);

	/* A limiter handle keeps its fabric handle alive. */
	fab_fabric_close(fab);
	fab = NULL;
	UT_RC(fab_limiter_try(d, 1), 0);
	UT_RC(fab_limiter_try(d, 1), FAB_EAGAIN);
	UT_RC(fab_limiter_set(d, SLOW, 2), 0);
	fab_limiter_release(d);
	fab_limiter_release(a);
}
END_TEST

START_TEST(t_table_full)
{
	fab_limiter *ls[FAB_MAX_LIMS];
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++) {
		char n[16];
		snprintf(n, sizeof n, "l%u", i);
		ls[i] = lim_mk(n, 1000, 1);
	}
	fab_limiter *l = NULL;
	UT_RC(fab_limiter_create(fab, "one-more", 1000, 1, &l), FAB_ENOMEM);
	ck_assert_msg(msg_has("full"), "message: %s", fab_errmsg());
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++)
		fab_limiter_release(ls[i]);
}
END_TEST

/* ---- tokens ------------------------------------------------------------- */

START_TEST(t_starts_full)
{
	fab_limiter *l = lim_mk("l", SLOW, 5);
	for (int i = 0; i < 5; i++)
		UT_RC(fab_limiter_try(l, 1), 0);
	UT_RC(fab_limiter_try(l, 1), FAB_EAGAIN);
	ck_assert_msg(fab_errmsg()[0] == '\0', "FAB_EAGAIN is not an error: \"%s\"", fab_errmsg());
	UT_RC(fab_limiter_try(l, 0), 0); /* zero tokens: always */
	UT_RC(fab_limiter_wait(l, 0, NULL), 0);
	ck_assert_uint_eq(atomic_load(&lim_ent("l")->granted), 5);

	fab_limiter *m = lim_mk("m", SLOW, 5);
	UT_RC(fab_limiter_try(m, 5), 0); /* the whole burst at once */
	UT_RC(fab_limiter_try(m, 1), FAB_EAGAIN);

	fab_limiter *n = lim_mk("n", SLOW, 5);
	UT_RC(fab_limiter_try(n, 3), 0);
	UT_RC(fab_limiter_try(n, 3), FAB_EAGAIN); /* a refused request takes nothing */
	UT_RC(fab_limiter_try(n, 2), 0);
	UT_RC(fab_limiter_try(n, 1), FAB_EAGAIN);
	ck_assert_uint_eq(atomic_load(&lim_ent("n")->granted), 5);
	fab_limiter_release(l);
	fab_limiter_release(m);
	fab_limiter_release(n);
}
END_TEST

START_TEST(t_refill)
{
	/* 100/s: after 30 ms at least 2 tokens are back (sleeps are never
	 * shorter than asked). */
	fab_limiter *l = lim_mk("l", 100, 2);
	UT_RC(fab_limiter_try(l, 2), 0);
	ut_sleep_ms(30);
	UT_RC(fab_limiter_try(l, 2), 0);
	/* Never more than the burst, however long it rested. */
	ut_sleep_ms(50);
	UT_RC(fab_limiter_try(l, 2), 0);
	int64_t t0 = ft_now_ns();
	int rc = fab_limiter_try(l, 1);
	/* Only if under 10 ms passed is the answer certain. */
	if (ft_now_ns() - t0 < 10 * MS)
		ck_assert_int_eq(rc, FAB_EAGAIN);
	fab_limiter_release(l);

	/* The fastest rate: nothing breaks. */
	fab_limiter *f = lim_mk("f", 1e9, 1);
	for (int i = 0; i < 100000; i++) {
		rc = fab_limiter_try(f, 1);
		if (rc != 0 && rc != FAB_EAGAIN)
			ck_abort_msg("try at 1e9/s: %d (%s)", rc, ut_name(rc));
	}
	fab_limiter_release(f);
}
END_TEST

/* ---- set ---------------------------------------------------------------- */

START_TEST(t_set_burst)
{
	/* Lowering the burst of a full bucket: it holds the new burst. */
	fab_limiter *a = lim_mk("a", SLOWER, 10);
	UT_RC(fab_limiter_set(a, SLOWER, 4), 0);
	UT_EINVAL_MSG(fab_limiter_try(a, 5), "burst");
	UT_RC(fab_limiter_try(a, 4), 0);
	UT_RC(fab_limiter_try(a, 1), FAB_EAGAIN);

	/* Raising it keeps the tokens there are (Go's SetBurst): the new room
	 * fills at the rate. */
	fab_limiter *b = lim_mk("b", SLOWER, 2);
	UT_RC(fab_limiter_set(b, SLOWER, 5), 0);
	UT_RC(fab_limiter_try(b, 2), 0);
	UT_RC(fab_limiter_try(b, 1), FAB_EAGAIN);
	/* ... at a new rate it fills to the new burst. */
	UT_RC(fab_limiter_set(b, 1e6, 5), 0);
	ut_sleep_ms(5);
	UT_RC(fab_limiter_try(b, 5), 0);

	/* Lowering the burst of an empty bucket leaves it empty. */
	fab_limiter *c = lim_mk("c", SLOWER, 6);
	UT_RC(fab_limiter_try(c, 6), 0);
	UT_RC(fab_limiter_set(c, SLOWER, 2), 0);
	UT_RC(fab_limiter_try(c, 1), FAB_EAGAIN);
	fab_limiter_release(a);
	fab_limiter_release(b);
	fab_limiter_release(c);
}
END_TEST

START_TEST(t_set_rate)
{
	/* The level in tokens survives a rate change: 3 of 4 left. */
	fab_limiter *a = lim_mk("a", SLOWER, 4);
	UT_RC(fab_limiter_try(a, 1), 0);
	UT_RC(fab_limiter_set(a, 2 * SLOWER, 4), 0);
	UT_RC(fab_limiter_try(a, 3), 0);
	UT_RC(fab_limiter_try(a, 1), FAB_EAGAIN);

	/* Raising the rate repays the debt faster. */
	fab_limiter *b = lim_mk("b", SLOWER, 3), *b2 = NULL;
	UT_RC(fab_limiter_open(fab, "b", &b2), 0);
	UT_RC(fab_limiter_try(b, 3), 0);
	UT_RC(fab_limiter_try(b, 1), FAB_EAGAIN);
	UT_RC(fab_limiter_set(b2, 1000, 3), 0); /* through another handle */
	ut_sleep_ms(10);
	UT_RC(fab_limiter_try(b, 3), 0);
	uint64_t p = atomic_load(&lim_ent("b")->params);
	ck_assert_uint_eq(FAB_LIM_INTERVAL(p), 1000000);
	ck_assert_uint_eq(FAB_LIM_BURST(p), 3);

	/* Lowering it: a drained bucket at 1/s stays empty at one token per
	 * 1000 s (certain unless a whole second passes between the calls). */
	fab_limiter *c = lim_mk("c", 1, 3);
	UT_RC(fab_limiter_try(c, 3), 0);
	UT_RC(fab_limiter_set(c, SLOWER, 3), 0);
	UT_RC(fab_limiter_try(c, 1), FAB_EAGAIN);
	/* A set with the same parameters changes nothing. */
	UT_RC(fab_limiter_set(c, SLOWER, 3), 0);
	UT_RC(fab_limiter_try(c, 1), FAB_EAGAIN);
	fab_limiter_release(a);
	fab_limiter_release(b);
	fab_limiter_release(b2);
	fab_limiter_release(c);
}
END_TEST

/* ---- wait --------------------------------------------------------------- */

START_TEST(t_wait_ctx)
{
	fab_limiter *l = lim_mk("l", SLOWER, 2);
	UT_RC(fab_limiter_try(l, 1), 0);
	/* Grantable now: granted even under an ended context (as channels). */
	fab_ctx *d = NULL;
	UT_RC(fab_ctx_with_timeout(NULL, 0, &d), 0);
	UT_RC(fab_limiter_wait(l, 1, d), 0);
	fab_ctx_release(d);

	/* Empty: a deadline ends the wait. */
	UT_RC(fab_ctx_with_timeout(NULL, 30 * MS, &d), 0);
	UT_RC(fab_limiter_wait(l, 1, d), FAB_ETIMEDOUT);
	ck_assert_msg(msg_has("deadline"), "message: %s", fab_errmsg());
	UT_RC(fab_limiter_wait(l, 1, d), FAB_ETIMEDOUT); /* and stays ended */
	fab_ctx_release(d);

	/* A cancelled shared context, and a local one. */
	fab_ctx *c = NULL;
	UT_RC(fab_ctx_create(fab, "c", NULL, &c), 0);
	UT_RC(fab_ctx_cancel(c, 3), 0);
	UT_RC(fab_limiter_wait(l, 1, c), FAB_ECANCELED);
	ck_assert_msg(msg_has("cancel"), "message: %s", fab_errmsg());
	UT_RC(fab_ctx_with_timeout(NULL, 3600 * SEC, &d), 0);
	UT_RC(fab_ctx_cancel(d, 1), 0);
	UT_RC(fab_limiter_wait(l, 1, d), FAB_ECANCELED);
	fab_ctx_release(d);
	/* A deadline under a cancelled parent: cancelled. */
	UT_RC(fab_ctx_with_timeout(c, 3600 * SEC, &d), 0);
	UT_RC(fab_limiter_wait(l, 1, d), FAB_ECANCELED);
	fab_ctx_release(d);
	fab_ctx_release(c);

	fab_lim_ent *e = lim_ent("l");
	ck_assert_uint_eq(atomic_load(&e->waiters), 0);
	ck_assert_uint_eq(atomic_load(&e->granted), 2);
	ck_assert_msg(atomic_load(&e->waited_ns) > 0, "the deadline wait slept");
	fab_limiter_release(l);
}
END_TEST

START_TEST(t_wait_by_time)
{
	/* 50/s: the next token is at most 20 ms away. */
	fab_limiter *l = lim_mk("l", 50, 1);
	UT_RC(fab_limiter_try(l, 1), 0);
	UT_RC(fab_limiter_wait(l, 1, NULL), 0);
	fab_ctx *d = NULL;
	UT_RC(fab_ctx_with_timeout(NULL, 20 * SEC, &d), 0);
	for (int i = 0; i < 3; i++)
		UT_RC(fab_limiter_wait(l, 1, d), 0);
	fab_ctx_release(d);
	fab_lim_ent *e = lim_ent("l");
	ck_assert_uint_eq(atomic_load(&e->granted), 5);
	ck_assert_uint_eq(atomic_load(&e->waiters), 0);
	ck_assert_msg(atomic_load(&e->waited_ns) > 0, "waited_ns counts the waits");
	fab_limiter_release(l);
}
END_TEST

static int child_wait_cancel(void *arg)
{
	(void)arg;
	fab_fabric *f = NULL;
	fab_limiter *l = child_lim("l", &f, 10);
	fab_ctx *c = NULL;
	CHILD_RC(fab_ctx_open(f, "c", &c), 0, 12);
	CHILD_RC(fab_limiter_wait(l, 1, c), FAB_ECANCELED, 13);
	CHILD_RC(fab_ctx_reason(c), 77, 14);
	fab_ctx_release(c);
	fab_limiter_release(l);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_wait_cancel_other_process)
{
	fab_limiter *l = lim_mk("l", SLOWER, 1);
	UT_RC(fab_limiter_try(l, 1), 0);
	fab_ctx *c = NULL;
	UT_RC(fab_ctx_create(fab, "c", NULL, &c), 0);
	pid_t kids[3];
	for (int i = 0; i < 3; i++)
		kids[i] = ft_spawn(child_wait_cancel, NULL);
	wait_sleepers(lim_ent("l"), 3);
	UT_RC(fab_ctx_cancel(c, 77), 0);
	for (int i = 0; i < 3; i++)
		UT_CHILD_OK(kids[i]);
	ck_assert_uint_eq(atomic_load(&lim_ent("l")->waiters), 0);
	UT_RC(fab_limiter_try(l, 1), FAB_EAGAIN); /* nobody took a token */
	fab_ctx_release(c);
	fab_limiter_release(l);
}
END_TEST

static int child_wait_ok(void *arg)
{
	(void)arg;
	fab_fabric *f = NULL;
	fab_limiter *l = child_lim("l", &f, 10);
	CHILD_RC(fab_limiter_wait(l, 1, NULL), 0, 12);
	fab_limiter_release(l);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_wait_wakes_on_set)
{
	/* The sleepers' tokens are 1000 s away until set() raises the rate;
	 * they return within the children's 30 s alarm only if set() woke
	 * them to re-plan. */
	fab_limiter *l = lim_mk("l", SLOWER, 1);
	UT_RC(fab_limiter_try(l, 1), 0);
	pid_t kids[3];
	for (int i = 0; i < 3; i++)
		kids[i] = ft_spawn(child_wait_ok, NULL);
	fab_lim_ent *e = lim_ent("l");
	wait_sleepers(e, 3);
	for (int i = 0; i < 3; i++)
		ck_assert_msg(waitpid(kids[i], NULL, WNOHANG) == 0, "waiter %d returned early", i);
	UT_RC(fab_limiter_set(l, 1e6, 1), 0);
	for (int i = 0; i < 3; i++)
		UT_CHILD_OK(kids[i]);
	ck_assert_uint_eq(atomic_load(&e->granted), 4);
	ck_assert_uint_eq(atomic_load(&e->waiters), 0);
	fab_limiter_release(l);
}
END_TEST

static int child_wait_too_many(void *arg)
{
	(void)arg;
	fab_fabric *f = NULL;
	fab_limiter *l = child_lim("l", &f, 10);
	CHILD_RC(fab_limiter_wait(l, 3, NULL), FAB_EINVAL, 12);
	fab_limiter_release(l);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_wait_burst_lowered)
{
	/* A sleeper for 3 tokens when set() lowers the burst to 2: its
	 * request can never be granted any more. */
	fab_limiter *l = lim_mk("l", SLOWER, 4);
	UT_RC(fab_limiter_try(l, 4), 0);
	pid_t kid = ft_spawn(child_wait_too_many, NULL);
	wait_sleepers(lim_ent("l"), 1);
	UT_RC(fab_limiter_set(l, SLOWER, 2), 0);
	UT_CHILD_OK(kid);
	fab_limiter_release(l);
}
END_TEST

/* ---- fork --------------------------------------------------------------- */

static fab_limiter *inherited;

static int child_inherited(void *arg)
{
	(void)arg;
	alarm(20);
	CHILD_RC(fab_limiter_try(inherited, 1), FAB_EINVAL, 10);
	CHILD_RC(fab_limiter_wait(inherited, 1, NULL), FAB_EINVAL, 11);
	CHILD_RC(fab_limiter_set(inherited, 1, 1), FAB_EINVAL, 12);
	fab_limiter *x = NULL;
	CHILD_RC(fab_limiter_open(fab, "l", &x), FAB_EINVAL, 13); /* inherited fabric */
	CHILD_RC(fab_limiter_create(fab, "l2", 1, 1, &x), FAB_EINVAL, 14);
	fab_limiter_release(inherited); /* frees the child's copy only */
	/* Its own handles work, and see the parent's bucket. */
	fab_fabric *f = NULL;
	fab_limiter *l = child_lim("l", &f, 15);
	CHILD_RC(fab_limiter_try(l, 1), 0, 17);
	CHILD_RC(fab_limiter_try(l, 2), FAB_EAGAIN, 18);
	fab_limiter_release(l);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_fork_inherited)
{
	inherited = lim_mk("l", SLOWER, 3);
	UT_RC(fab_limiter_try(inherited, 1), 0);
	UT_CHILD_OK(ft_spawn(child_inherited, NULL));
	/* The parent's handle is untouched: one token is left. */
	UT_RC(fab_limiter_try(inherited, 1), 0);
	UT_RC(fab_limiter_try(inherited, 1), FAB_EAGAIN);
	fab_limiter_release(inherited);
}
END_TEST

/* An inherited context is refused too. */
static fab_ctx *inherited_ctx;
static int child_inherited_ctx(void *arg)
{
	(void)arg;
	fab_fabric *f = NULL;
	fab_limiter *l = child_lim("l", &f, 10);
	CHILD_RC(fab_limiter_wait(l, 1, inherited_ctx), FAB_EINVAL, 12);
	fab_limiter_release(l);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_fork_inherited_ctx)
{
	fab_limiter *l = lim_mk("l", SLOWER, 1);
	UT_RC(fab_ctx_with_timeout(NULL, 3600 * SEC, &inherited_ctx), 0);
	UT_CHILD_OK(ft_spawn(child_inherited_ctx, NULL));
	fab_ctx_release(inherited_ctx);
	fab_limiter_release(l);
}
END_TEST

/* ---- concurrent creation ------------------------------------------------ */

#define RACERS 6
#define RACE_NAMES 24

struct race {
	_Atomic int go;
	_Atomic int rc[RACERS][RACE_NAMES];
};
static struct race *race;

static int child_racer(void *arg)
{
	int me = (int)(intptr_t)arg;
	fab_fabric *f = NULL;
	alarm(30);
	CHILD_RC(fab_fabric_open(fname, 0, &f), 0, 10);
	while (!atomic_load(&race->go))
		sched_yield();
	for (int k = 0; k < RACE_NAMES; k++) {
		char n[16];
		fab_limiter *l = NULL;
		snprintf(n, sizeof n, "race%d", k);
		int rc = fab_limiter_create(f, n, 1000, 10, &l);
		atomic_store(&race->rc[me][k], rc);
		if (rc == 0)
			fab_limiter_release(l);
	}
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_create_race)
{
	race = ut_shared(sizeof *race);
	for (int i = 0; i < RACERS; i++)
		for (int k = 0; k < RACE_NAMES; k++)
			atomic_store(&race->rc[i][k], 1);
	pid_t kids[RACERS];
	for (int i = 0; i < RACERS; i++)
		kids[i] = ft_spawn(child_racer, (void *)(intptr_t)i);
	ut_sleep_ms(20);
	atomic_store(&race->go, 1);
	for (int i = 0; i < RACERS; i++)
		UT_CHILD_OK(kids[i]);
	for (int k = 0; k < RACE_NAMES; k++) {
		int wins = 0;
		for (int i = 0; i < RACERS; i++) {
			int rc = atomic_load(&race->rc[i][k]);
			ck_assert_msg(rc == 0 || rc == FAB_EEXIST, "racer %d, name %d: %d (%s)", i,
				      k, rc, ut_name(rc));
			wins += rc == 0;
		}
		ck_assert_msg(wins == 1, "name race%d created %d times", k, wins);
		char n[16];
		snprintf(n, sizeof n, "race%d", k);
		(void)lim_ent(n); /* asserts exactly one live entry */
	}
}
END_TEST

/* ---- corrupted entries -------------------------------------------------- */

START_TEST(t_corrupt_params)
{
	fab_limiter *l = lim_mk("l", 1000, 5), *o = NULL;
	fab_lim_ent *e = lim_ent("l");
	uint64_t good = atomic_load(&e->params);
	uint64_t bad[] = {
	    FAB_LIM_PARAMS(0, 5),                    /* interval 0 */
	    FAB_LIM_PARAMS(1000000, 0),              /* burst 0 */
	    FAB_LIM_PARAMS(FAB_LIM_INTERVAL_MAX, 1), /* interval too long */
	    FAB_LIM_PARAMS(1ULL << 39, 1u << 23),    /* window 2^62 ns */
	    UINT64_MAX,
	};
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		atomic_store(&e->params, bad[i]);
		UT_RC(fab_limiter_try(l, 1), FAB_ECORRUPT);
		ck_assert_msg(msg_has("limiter l"), "message: %s", fab_errmsg());
		UT_RC(fab_limiter_wait(l, 1, NULL), FAB_ECORRUPT); /* returns, never sleeps */
		UT_RC(fab_limiter_open(fab, "l", &o), FAB_ECORRUPT);
		ck_assert_ptr_null(o);
		atomic_store(&e->params, good);
		UT_RC(fab_limiter_try(l, 1), 0);
	}
	/* set() rewrites a corrupted entry: an empty bucket under the new
	 * parameters, which then refills. */
	atomic_store(&e->params, bad[0]);
	UT_RC(fab_limiter_set(l, 1000, 2), 0);
	ut_sleep_ms(10);
	UT_RC(fab_limiter_try(l, 2), 0);
	UT_RC(fab_limiter_open(fab, "l", &o), 0);
	fab_limiter_release(o);
	fab_limiter_release(l);
}
END_TEST

START_TEST(t_corrupt_tat)
{
	fab_limiter *l = lim_mk("l", 1000, 5), *o = NULL;
	fab_lim_ent *e = lim_ent("l");
	/* Far beyond a full bucket's 5 ms. */
	int64_t bad[] = {INT64_MAX, ft_now_ns() + 3600 * SEC, ft_now_ns() + 100 * SEC};
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		atomic_store(&e->tat, bad[i]);
		UT_RC(fab_limiter_try(l, 1), FAB_ECORRUPT);
		UT_RC(fab_limiter_wait(l, 1, NULL), FAB_ECORRUPT);
	}
	/* Negative but not a lock word. */
	int64_t neg[] = {-5, INT64_MIN, INT64_MIN + 0x10000, INT64_MIN + 0x7fff};
	for (unsigned i = 0; i < sizeof neg / sizeof neg[0]; i++) {
		atomic_store(&e->tat, neg[i]);
		UT_RC(fab_limiter_try(l, 1), FAB_ECORRUPT);
		ck_assert_msg(msg_has("lock"), "message: %s", fab_errmsg());
		UT_RC(fab_limiter_open(fab, "l", &o), FAB_ECORRUPT);
	}
	/* set() repairs it. */
	UT_RC(fab_limiter_set(l, 1000, 5), 0);
	ut_sleep_ms(10);
	UT_RC(fab_limiter_try(l, 5), 0);

	/* A state word scribbled: the limiter is gone for open (no crash). */
	uint32_t st = atomic_load(&e->state);
	atomic_store(&e->state, 77);
	UT_RC(fab_limiter_open(fab, "l", &o), FAB_ENOENT);
	atomic_store(&e->state, st);
	/* A name without its NUL. */
	char saved[64];
	memcpy(saved, e->name, 64);
	memset(e->name, 'l', 64);
	UT_RC(fab_limiter_open(fab, "l", &o), FAB_ENOENT);
	memcpy(e->name, saved, 64);
	UT_RC(fab_limiter_open(fab, "l", &o), 0);
	fab_limiter_release(o);
	fab_limiter_release(l);
}
END_TEST

START_TEST(t_lock_of_dead_setter)
{
	/* A set() killed while it held tat: the next caller resets the bucket
	 * to empty (the safe side) and carries on. */
	fab_limiter *l = lim_mk("l", 1000, 3);
	fab_lim_ent *e = lim_ent("l");
	uint32_t dead = FAB_TAG_MAKE(FAB_MAX_PROCS - 1, 9); /* a free entry */
	atomic_store(&e->tat, INT64_MIN + (int64_t)dead);
	int rc = fab_limiter_try(l, 1);
	ck_assert_msg(rc == 0 || rc == FAB_EAGAIN, "try: %d (%s)", rc, ut_name(rc));
	ck_assert_msg(atomic_load(&e->tat) >= 0, "lock not taken over");
	ut_sleep_ms(10);
	UT_RC(fab_limiter_try(l, 3), 0);
	/* wait and set take it over too. */
	atomic_store(&e->tat, INT64_MIN + (int64_t)dead);
	UT_RC(fab_limiter_wait(l, 1, NULL), 0);
	atomic_store(&e->tat, INT64_MIN + (int64_t)dead);
	UT_RC(fab_limiter_set(l, 1000, 3), 0);
	ck_assert_msg(atomic_load(&e->tat) >= 0, "set left the lock");
	fab_limiter_release(l);
}
END_TEST

static int child_wait_behind_lock(void *arg)
{
	(void)arg;
	fab_fabric *f = NULL;
	fab_limiter *l = child_lim("l", &f, 10);
	fab_ctx *d = NULL;
	CHILD_RC(fab_ctx_with_timeout(NULL, 20 * SEC, &d), 0, 12);
	CHILD_RC(fab_limiter_wait(l, 1, d), 0, 13);
	fab_ctx_release(d);
	fab_limiter_release(l);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_lock_of_live_setter)
{
	/* A live set() that is slow (here: a forged lock of this process):
	 * try says EAGAIN, wait sleeps and proceeds once it is released. */
	fab_limiter *l = lim_mk("l", 1000, 3);
	fab_lim_ent *e = lim_ent("l");
	int64_t saved = atomic_load(&e->tat);
	atomic_store(&e->tat, INT64_MIN + (int64_t)own_tag());
	UT_RC(fab_limiter_try(l, 1), FAB_EAGAIN);
	fab_ctx *d = NULL;
	UT_RC(fab_ctx_with_timeout(NULL, 20 * MS, &d), 0);
	UT_RC(fab_limiter_wait(l, 1, d), FAB_ETIMEDOUT);
	fab_ctx_release(d);
	pid_t kid = ft_spawn(child_wait_behind_lock, NULL);
	wait_sleepers(e, 1);
	atomic_store(&e->tat, saved); /* "set() finished" */
	UT_CHILD_OK(kid);
	fab_limiter_release(l);
}
END_TEST

static Suite *limiter_suite(void)
{
	Suite *s = suite_create("limiter");
	TCase *tc = tcase_create("limiter");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, ut_fabric_setup, ut_fabric_teardown);
	tcase_add_test(tc, t_args);
	tcase_add_test(tc, t_interval_rounding);
	tcase_add_test(tc, t_create_open);
	tcase_add_test(tc, t_table_full);
	tcase_add_test(tc, t_starts_full);
	tcase_add_test(tc, t_refill);
	tcase_add_test(tc, t_set_burst);
	tcase_add_test(tc, t_set_rate);
	tcase_add_test(tc, t_wait_ctx);
	tcase_add_test(tc, t_wait_by_time);
	tcase_add_test(tc, t_wait_cancel_other_process);
	tcase_add_test(tc, t_wait_wakes_on_set);
	tcase_add_test(tc, t_wait_burst_lowered);
	tcase_add_test(tc, t_fork_inherited);
	tcase_add_test(tc, t_fork_inherited_ctx);
	tcase_add_test(tc, t_create_race);
	tcase_add_test(tc, t_corrupt_params);
	tcase_add_test(tc, t_corrupt_tat);
	tcase_add_test(tc, t_lock_of_dead_setter);
	tcase_add_test(tc, t_lock_of_live_setter);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ut_main(limiter_suite(), "lim");
}
