/*
 * select_test.c - unit suite for fab_select (DESIGN §3, §3a).
 *
 * What a user relies on: the index of the case that proceeded and its
 * result (length, 0, or FAB_ECLOSED); cases not chosen left untouched; a
 * uniform choice among ready cases (a chi-square count with one case never
 * ready, which a "random start, then scan" select fails by a wide margin);
 * FAB_NONBLOCK as Go's default; NULL channels never ready; n == 0; the
 * unbuffered rendezvous in both directions and never with itself; wake-up by
 * a send or a close from another process and by the context.  Assertions
 * check codes and counts, never elapsed times.
 */
#include "unit.h"

#define MS 1000000LL

static fab_chan *mk(const char *name, uint32_t kind, uint32_t cap, uint32_t msg)
{
	fab_chan_opts o = ut_opts(kind, cap, msg);
	fab_chan *c = NULL;
	UT_RC(fab_chan_create(fab, name, &o, &c), 0);
	ck_assert_ptr_nonnull(c);
	return c;
}

static fab_chan *op(const char *name, unsigned role)
{
	fab_chan *c = NULL;
	UT_RC(fab_chan_open(fab, name, role, &c), 0);
	return c;
}

static fab_case rcase(fab_chan *ch, void *buf, size_t cap)
{
	fab_case c;
	memset(&c, 0, sizeof c);
	c.ch = ch;
	c.op = FAB_OP_RECV;
	c.recv_buf = buf;
	c.recv_cap = cap;
	c.result = 12345; /* sentinel: a case not chosen keeps it */
	return c;
}

static fab_case scase(fab_chan *ch, const void *msg, size_t len)
{
	fab_case c;
	memset(&c, 0, sizeof c);
	c.ch = ch;
	c.op = FAB_OP_SEND;
	c.send_msg = msg;
	c.send_len = len;
	c.result = 12345;
	return c;
}

static fab_fabric *child_fabric(int code)
{
	fab_fabric *f = NULL;
	alarm(20); /* a hang is reported as 128+SIGALRM */
	CHILD_RC(fab_fabric_open(fname, 0, &f), 0, code);
	return f;
}

/* ---- arguments ------------------------------------------------------------ */

START_TEST(t_args)
{
	fab_chan *a = mk("a", FAB_MPMC, 4, 8);
	fab_chan *r = op("a", FAB_RECV);
	char buf[8];
	fab_case c[2] = {rcase(a, buf, sizeof buf), rcase(a, buf, sizeof buf)};
	UT_RC(fab_select(c, -1, NULL, FAB_NONBLOCK), FAB_EINVAL);
	UT_RC(fab_select(c, FAB_SELECT_MAX + 1, NULL, FAB_NONBLOCK), FAB_EINVAL);
	UT_RC(fab_select(NULL, 1, NULL, FAB_NONBLOCK), FAB_EINVAL);
	UT_RC(fab_select(c, 1, NULL, 0x80), FAB_EINVAL);
	c[1].op = 7;
	UT_RC(fab_select(c, 2, NULL, FAB_NONBLOCK), FAB_EINVAL);
	ck_assert_msg(fab_errmsg()[0] != '\0', "no detail for a bad op");
	/* A send case on a receive-only handle. */
	c[1] = scase(r, "x", 1);
	UT_RC(fab_select(c, 2, NULL, FAB_NONBLOCK), FAB_EPERM);
	/* Too long for the channel. */
	char big[16] = {0};
	c[1] = scase(a, big, sizeof big);
	UT_RC(fab_select(c, 2, NULL, FAB_NONBLOCK), FAB_EMSGSIZE);
	/* NULL buffer with a capacity. */
	c[1] = rcase(a, NULL, 8);
	UT_RC(fab_select(c, 2, NULL, FAB_NONBLOCK), FAB_EINVAL);
	/* Reserved words not zero (a later ABI may give them a meaning). */
	c[1] = scase(a, "x", 1);
	c[1].resv[1] = 1;
	UT_RC(fab_select(c, 2, NULL, FAB_NONBLOCK), FAB_EINVAL);
	ck_assert_msg(strstr(fab_errmsg(), "resv") != NULL, "errmsg: %s", fab_errmsg());
	/* Nothing was sent by the failed calls. */
	ck_assert_uint_eq(fab_chan_len(a), 0);
	fab_chan_release(r);
	fab_chan_release(a);
}
END_TEST

START_TEST(t_nonblock_and_empty)
{
	fab_chan *a = mk("a", FAB_MPMC, 4, 8);
	char buf[8];
	fab_case c[3] = {rcase(a, buf, sizeof buf), rcase(NULL, buf, sizeof buf),
			 rcase(a, buf, sizeof buf)};
	UT_RC(fab_select(c, 3, NULL, FAB_NONBLOCK), FAB_EAGAIN);
	ck_assert_int_eq(c[0].result, 12345);
	UT_RC(fab_select(c, 0, NULL, FAB_NONBLOCK), FAB_EAGAIN);
	UT_RC(fab_select(NULL, 0, NULL, FAB_NONBLOCK), FAB_EAGAIN);
	/* Only NULL channels: never ready. */
	UT_RC(fab_select(&c[1], 1, NULL, FAB_NONBLOCK), FAB_EAGAIN);
	/* select {} ends with its context. */
	fab_ctx *t = NULL;
	UT_RC(fab_ctx_with_timeout(NULL, 20 * MS, &t), 0);
	UT_RC(fab_select(NULL, 0, t, 0), FAB_ETIMEDOUT);
	UT_RC(fab_select(&c[1], 1, t, 0), FAB_ETIMEDOUT);
	fab_ctx_release(t);
	/* A blocking select on empty channels ends with its deadline. */
	UT_RC(fab_ctx_with_timeout(NULL, 20 * MS, &t), 0);
	UT_RC(fab_select(c, 3, t, 0), FAB_ETIMEDOUT);
	fab_ctx_release(t);
	/* A cancelled context, nothing ready. */
	fab_ctx *x = NULL;
	UT_RC(fab_ctx_create(fab, "x", NULL, &x), 0);
	UT_RC(fab_ctx_cancel(x, 3), 0);
	UT_RC(fab_select(c, 3, x, 0), FAB_ECANCELED);
	UT_RC(fab_select(NULL, 0, x, 0), FAB_ECANCELED);
	fab_ctx_release(x);
	fab_chan_release(a);
}
END_TEST

/* ---- choosing ---------------------------------------------------------------- */

START_TEST(t_recv_ready_case)
{
	uint32_t kind = _i ? FAB_SPSC : FAB_MPMC;
	fab_chan *a = mk("a", kind, 4, 8), *b = mk("b", kind, 4, 8), *c3 = mk("c", kind, 4, 8);
	UT_RC(fab_send(b, "hello", 5, NULL), 0);
	char ba[8] = "AAAAAAA", bb[8] = {0}, bc[8] = "CCCCCCC";
	fab_case c[4] = {rcase(a, ba, 8), rcase(NULL, NULL, 0), rcase(b, bb, 8), rcase(c3, bc, 8)};
	UT_RC(fab_select(c, 4, NULL, 0), 2);
	ck_assert_int_eq(c[2].result, 5);
	ck_assert_mem_eq(bb, "hello", 5);
	/* Cases not chosen are untouched. */
	ck_assert_int_eq(c[0].result, 12345);
	ck_assert_int_eq(c[3].result, 12345);
	ck_assert_mem_eq(ba, "AAAAAAA", 8);
	ck_assert_mem_eq(bc, "CCCCCCC", 8);
	ck_assert_uint_eq(fab_chan_len(b), 0);
	fab_chan_release(a);
	fab_chan_release(b);
	fab_chan_release(c3);
}
END_TEST

START_TEST(t_send_ready_case)
{
	fab_chan *full = mk("full", FAB_MPMC, 1, 8), *room = mk("room", FAB_MPMC, 2, 8);
	UT_RC(fab_send(full, "x", 1, NULL), 0);
	fab_case c[2] = {scase(full, "f", 1), scase(room, "roomy", 5)};
	UT_RC(fab_select(c, 2, NULL, FAB_NONBLOCK), 1);
	ck_assert_int_eq(c[1].result, 0);
	ck_assert_int_eq(c[0].result, 12345);
	char buf[8];
	UT_RC(fab_recv(room, buf, sizeof buf, NULL), 5);
	ck_assert_mem_eq(buf, "roomy", 5);
	UT_RC(fab_recv(full, buf, sizeof buf, NULL), 1);
	ck_assert_int_eq(buf[0], 'x');
	fab_chan_release(full);
	fab_chan_release(room);
}
END_TEST

START_TEST(t_closed_cases)
{
	fab_chan *a = mk("a", FAB_MPMC, 4, 8), *e = mk("e", FAB_MPMC, 4, 8);
	UT_RC(fab_send(a, "m1", 2, NULL), 0);
	UT_RC(fab_chan_close(a), 0);
	char buf[8];
	/* Closed but not drained: the message first. */
	fab_case c[2] = {rcase(e, buf, 8), rcase(a, buf, 8)};
	UT_RC(fab_select(c, 2, NULL, 0), 1);
	ck_assert_int_eq(c[1].result, 2);
	/* Closed and drained: ready, reporting FAB_ECLOSED (v, ok := <-ch). */
	c[1] = rcase(a, buf, 8);
	UT_RC(fab_select(c, 2, NULL, 0), 1);
	ck_assert_int_eq(c[1].result, FAB_ECLOSED);
	UT_RC(fab_select(c, 2, NULL, FAB_NONBLOCK), 1);
	/* A send on a closed channel is ready and reports it. */
	fab_case s[2] = {rcase(e, buf, 8), scase(a, "z", 1)};
	UT_RC(fab_select(s, 2, NULL, 0), 1);
	ck_assert_int_eq(s[1].result, FAB_ECLOSED);
	fab_chan_release(a);
	fab_chan_release(e);
}
END_TEST

START_TEST(t_emsgsize_leaves_message)
{
	fab_chan *a = mk("a", FAB_MPMC, 4, 16);
	UT_RC(fab_send(a, "0123456789", 10, NULL), 0);
	char small[4], big[16];
	fab_case c[1] = {rcase(a, small, sizeof small)};
	UT_RC(fab_select(c, 1, NULL, 0), 0);
	ck_assert_int_eq(c[0].result, FAB_EMSGSIZE);
	ck_assert_uint_eq(fab_chan_len(a), 1);
	c[0] = rcase(a, big, sizeof big);
	UT_RC(fab_select(c, 1, NULL, 0), 0);
	ck_assert_int_eq(c[0].result, 10);
	ck_assert_mem_eq(big, "0123456789", 10);
	fab_chan_release(a);
}
END_TEST

START_TEST(t_same_channel_twice_and_two_fabrics)
{
	fab_chan *a = mk("a", FAB_MPMC, 4, 8);
	/* A second fabric. */
	char other[FAB_NAME_MAX + 1];
	snprintf(other, sizeof other, "%s", ut_fabric_name());
	fab_fabric *f2 = NULL;
	UT_RC(fab_fabric_open(other, FAB_CREATE, &f2), 0);
	fab_chan_opts o = ut_opts(FAB_MPMC, 4, 8);
	fab_chan *b = NULL;
	UT_RC(fab_chan_create(f2, "a", &o, &b), 0);
	UT_RC(fab_send(a, "1", 1, NULL), 0);
	char b1[8], b2[8], b3[8];
	fab_case c[3] = {rcase(a, b1, 8), rcase(a, b2, 8), rcase(b, b3, 8)};
	int got = fab_select(c, 3, NULL, FAB_NONBLOCK);
	ck_assert_msg(got == 0 || got == 1, "select = %d", got);
	UT_RC(fab_select(c, 3, NULL, FAB_NONBLOCK), FAB_EAGAIN);
	UT_RC(fab_send(b, "2", 1, NULL), 0);
	c[2].result = 12345;
	UT_RC(fab_select(c, 3, NULL, FAB_NONBLOCK), 2);
	ck_assert_int_eq(c[2].result, 1);
	ck_assert_int_eq(b3[0], '2');
	fab_chan_release(b);
	fab_fabric_close(f2);
	UT_RC(fab_fabric_destroy(other), 0);
	fab_chan_release(a);
}
END_TEST

/*
 * Fairness.  k channels always hold a message; one more never does.  Each
 * round selects once (non-blocking) and puts the message back.  Go's rule
 * gives each ready case 1/k of the rounds.  The never-ready case sits just
 * before a ready one, where "random start, then scan" would give that one
 * twice its share.  Chi-square with k-1 degrees of freedom against a bound
 * whose chance of a false alarm is about 1e-6.
 */
static void fairness(int ncases, int empty_at, int rounds, double bound)
{
	fab_chan *ch[FAB_SELECT_MAX];
	char name[16], buf[8];
	fab_case c[FAB_SELECT_MAX];
	long count[FAB_SELECT_MAX] = {0};
	for (int i = 0; i < ncases; i++) {
		snprintf(name, sizeof name, "c%d", i);
		ch[i] = mk(name, FAB_MPMC, 2, 8);
		if (i != empty_at)
			UT_RC(fab_send(ch[i], "m", 1, NULL), 0);
	}
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < ncases; i++)
			c[i] = rcase(ch[i], buf, sizeof buf);
		int got = fab_select(c, ncases, NULL, FAB_NONBLOCK);
		ck_assert_msg(got >= 0 && got < ncases && got != empty_at, "select = %d (%s)", got,
			      ut_name(got));
		count[got]++;
		UT_RC(fab_send(ch[got], "m", 1, NULL), 0);
	}
	int k = ncases - 1;
	double expect = (double)rounds / k, chi2 = 0;
	for (int i = 0; i < ncases; i++) {
		if (i == empty_at)
			continue;
		double d = (double)count[i] - expect;
		chi2 += d * d / expect;
	}
	ck_assert_msg(chi2 < bound, "chi-square %.1f >= %.1f over %d rounds: case %d got %ld, %d got %ld",
		      chi2, bound, rounds, (empty_at + 1) % ncases, count[(empty_at + 1) % ncases],
		      (empty_at + 2) % ncases, count[(empty_at + 2) % ncases]);
	for (int i = 0; i < ncases; i++)
		fab_chan_release(ch[i]);
}

START_TEST(t_fair_among_ready)
{
	/* 3 ready of 4; chi-square, 2 dof: P(X > 27.6) = 1e-6.  A biased
	 * scan scores about 3750 here. */
	fairness(4, _i, 30000, 27.6);
}
END_TEST

START_TEST(t_fair_many_cases)
{
	/* 15 ready of 16; 14 dof: P(X > 54) < 1e-6. */
	fairness(16, 7, 32000, 54.0);
}
END_TEST

/* ---- unbuffered ------------------------------------------------------------ */

START_TEST(t_unbuffered_never_matches_itself)
{
	fab_chan *u = mk("u", FAB_MPMC, 0, 8);
	char buf[8];
	fab_case c[2] = {scase(u, "me", 2), rcase(u, buf, 8)};
	UT_RC(fab_select(c, 2, NULL, FAB_NONBLOCK), FAB_EAGAIN);
	fab_ctx *t = NULL;
	UT_RC(fab_ctx_with_timeout(NULL, 50 * MS, &t), 0);
	UT_RC(fab_select(c, 2, t, 0), FAB_ETIMEDOUT);
	fab_ctx_release(t);
	ck_assert_uint_eq(fab_chan_len(u), 0);
	fab_chan_release(u);
}
END_TEST

static int child_recv_unbuffered(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(10);
	fab_chan *u = NULL;
	CHILD_RC(fab_chan_open(f, "u", FAB_RECV, &u), 0, 11);
	char buf[8];
	CHILD_RC(fab_recv(u, buf, sizeof buf, NULL), 3, 12);
	CHILD_CHECK(memcmp(buf, "abc", 3) == 0, 13);
	fab_chan_release(u);
	fab_fabric_close(f);
	return 0;
}

static int child_send_unbuffered(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(20);
	fab_chan *u = NULL;
	CHILD_RC(fab_chan_open(f, "u", FAB_SEND, &u), 0, 21);
	CHILD_RC(fab_send(u, "xyz", 3, NULL), 0, 22);
	fab_chan_release(u);
	fab_fabric_close(f);
	return 0;
}

/* A select's send case meets a blocked fab_recv, and its receive case a
 * blocked fab_send: in both the select sleeps first (no receiver or no
 * sender yet) or finds the peer waiting, depending on the schedule. */
START_TEST(t_unbuffered_with_blocking_peer)
{
	fab_chan *u = mk("u", FAB_MPMC, 0, 8);
	fab_chan *idle = mk("idle", FAB_MPMC, 1, 8);
	char buf[8];
	pid_t p = ft_spawn(child_recv_unbuffered, NULL);
	fab_case c[2] = {rcase(idle, buf, 8), scase(u, "abc", 3)};
	UT_RC(fab_select(c, 2, NULL, 0), 1);
	ck_assert_int_eq(c[1].result, 0);
	UT_CHILD_OK(p);

	p = ft_spawn(child_send_unbuffered, NULL);
	fab_case d[2] = {rcase(idle, buf, 8), rcase(u, buf, 8)};
	UT_RC(fab_select(d, 2, NULL, 0), 1);
	ck_assert_int_eq(d[1].result, 3);
	ck_assert_mem_eq(buf, "xyz", 3);
	UT_CHILD_OK(p);
	fab_chan_release(idle);
	fab_chan_release(u);
}
END_TEST

static int child_select_send(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(30);
	fab_chan *u = NULL, *idle = NULL;
	CHILD_RC(fab_chan_open(f, "u", FAB_SEND, &u), 0, 31);
	CHILD_RC(fab_chan_open(f, "idle", FAB_RECV, &idle), 0, 32);
	char buf[8];
	for (int i = 0; i < 20; i++) {
		fab_case c[2] = {rcase(idle, buf, 8), scase(u, &i, sizeof i)};
		CHILD_RC(fab_select(c, 2, NULL, 0), 1, 33);
		CHILD_RC(c[1].result, 0, 34);
	}
	fab_chan_release(u);
	fab_chan_release(idle);
	fab_fabric_close(f);
	return 0;
}

/* Both sides in select on one unbuffered channel, 20 hand-overs in order. */
START_TEST(t_unbuffered_select_both_sides)
{
	fab_chan *u = mk("u", FAB_MPMC, 0, 8);
	fab_chan *idle = mk("idle", FAB_MPMC, 1, 8);
	pid_t p = ft_spawn(child_select_send, NULL);
	char other[8];
	for (int i = 0; i < 20; i++) {
		int v = -1;
		fab_case c[2] = {rcase(idle, other, 8), rcase(u, &v, sizeof v)};
		UT_RC(fab_select(c, 2, NULL, 0), 1);
		ck_assert_int_eq(c[1].result, (int)sizeof v);
		ck_assert_int_eq(v, i);
	}
	UT_CHILD_OK(p);
	fab_chan_release(idle);
	fab_chan_release(u);
}
END_TEST

/* ---- waking ---------------------------------------------------------------- */

static int child_send_later(void *arg)
{
	const char *which = arg;
	fab_fabric *f = child_fabric(40);
	fab_chan *c = NULL;
	CHILD_RC(fab_chan_open(f, which, FAB_SEND, &c), 0, 41);
	ut_sleep_ms(50);
	CHILD_RC(fab_send(c, "late", 4, NULL), 0, 42);
	fab_chan_release(c);
	fab_fabric_close(f);
	return 0;
}

static int child_close_later(void *arg)
{
	const char *which = arg;
	fab_fabric *f = child_fabric(50);
	fab_chan *c = NULL;
	CHILD_RC(fab_chan_open(f, which, FAB_SEND, &c), 0, 51);
	ut_sleep_ms(50);
	CHILD_RC(fab_chan_close(c), 0, 52);
	fab_chan_release(c);
	fab_fabric_close(f);
	return 0;
}

static int child_cancel_later(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(60);
	fab_ctx *x = NULL;
	CHILD_RC(fab_ctx_open(f, "x", &x), 0, 61);
	ut_sleep_ms(50);
	CHILD_RC(fab_ctx_cancel(x, 9), 0, 62);
	fab_ctx_release(x);
	fab_fabric_close(f);
	return 0;
}

/* A select asleep on three empty channels is woken by a send, a close, or a
 * cancel from another process; it slept (futex counter) rather than spun. */
START_TEST(t_wakes)
{
	uint32_t kind = _i ? FAB_SPSC : FAB_MPMC;
	fab_chan *a = mk("a", kind, 4, 8), *b = mk("b", FAB_MPMC, 4, 8), *c3 = mk("c", kind, 4, 8);
	fab_ctx *x = NULL;
	UT_RC(fab_ctx_create(fab, "x", NULL, &x), 0);
	char ba[8], bb[8], bc[8];
	fab_chan *ra = op("a", FAB_RECV), *rb = op("b", FAB_RECV), *rc = op("c", FAB_RECV);
	fab_chan_release(a); /* spsc: let the child take the send end */
	fab_chan_release(c3);

	pid_t p = ft_spawn(child_send_later, "c");
	fab_case c[3] = {rcase(ra, ba, 8), rcase(rb, bb, 8), rcase(rc, bc, 8)};
	UT_RC(fab_select(c, 3, x, 0), 2);
	ck_assert_int_eq(c[2].result, 4);
	ck_assert_mem_eq(bc, "late", 4);
	UT_CHILD_OK(p);

	p = ft_spawn(child_close_later, "b");
	c[0] = rcase(ra, ba, 8), c[1] = rcase(rb, bb, 8), c[2] = rcase(rc, bc, 8);
	UT_RC(fab_select(c, 3, x, 0), 1);
	ck_assert_int_eq(c[1].result, FAB_ECLOSED);
	UT_CHILD_OK(p);

	p = ft_spawn(child_cancel_later, NULL);
	fab_case d[2] = {rcase(ra, ba, 8), rcase(rc, bc, 8)};
	UT_RC(fab_select(d, 2, x, 0), FAB_ECANCELED);
	ck_assert_int_eq(d[0].result, 12345);
	UT_CHILD_OK(p);
	fab_stats st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	UT_RC(fab_chan_stats(ra, &st), 0);
	ck_assert_uint_eq(st.blocked_receivers, 0);

	fab_ctx_release(x);
	fab_chan_release(b);
	fab_chan_release(ra);
	fab_chan_release(rb);
	fab_chan_release(rc);
}
END_TEST

static int child_recv_later(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(70);
	fab_chan *r = NULL;
	CHILD_RC(fab_chan_open(f, "a", FAB_RECV, &r), 0, 71);
	ut_sleep_ms(50);
	char buf[8];
	CHILD_RC(fab_recv(r, buf, sizeof buf, NULL), 1, 72);
	fab_chan_release(r);
	fab_fabric_close(f);
	return 0;
}

/* A send case asleep on a full channel is woken when another process
 * makes room. */
START_TEST(t_send_case_wakes_on_room)
{
	fab_chan *a = mk("a", FAB_MPMC, 1, 8);
	UT_RC(fab_send(a, "1", 1, NULL), 0);
	pid_t p = ft_spawn(child_recv_later, NULL);
	fab_case c[1] = {scase(a, "2", 1)};
	UT_RC(fab_select(c, 1, NULL, 0), 0);
	ck_assert_int_eq(c[0].result, 0);
	UT_CHILD_OK(p);
	char buf[8];
	UT_RC(fab_recv(a, buf, sizeof buf, NULL), 1);
	ck_assert_int_eq(buf[0], '2');
	fab_chan_release(a);
}
END_TEST

static fab_chan *inherited;

static int child_inherited(void *arg)
{
	(void)arg;
	char buf[8];
	fab_case c[1] = {rcase(inherited, buf, 8)};
	CHILD_RC(fab_select(c, 1, NULL, FAB_NONBLOCK), FAB_EINVAL, 80);
	return 0;
}

START_TEST(t_fork_inherited_handle)
{
	inherited = mk("a", FAB_MPMC, 4, 8);
	UT_CHILD_OK(ft_spawn(child_inherited, NULL));
	fab_chan_release(inherited);
}
END_TEST

static Suite *select_suite(void)
{
	Suite *s = suite_create("select");
	TCase *tc = tcase_create("select");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, ut_fabric_setup, ut_fabric_teardown);
	tcase_add_test(tc, t_args);
	tcase_add_test(tc, t_nonblock_and_empty);
	tcase_add_loop_test(tc, t_recv_ready_case, 0, 2);
	tcase_add_test(tc, t_send_ready_case);
	tcase_add_test(tc, t_closed_cases);
	tcase_add_test(tc, t_emsgsize_leaves_message);
	tcase_add_test(tc, t_same_channel_twice_and_two_fabrics);
	tcase_add_loop_test(tc, t_fair_among_ready, 0, 4);
	tcase_add_test(tc, t_fair_many_cases);
	tcase_add_test(tc, t_unbuffered_never_matches_itself);
	tcase_add_test(tc, t_unbuffered_with_blocking_peer);
	tcase_add_test(tc, t_unbuffered_select_both_sides);
	tcase_add_loop_test(tc, t_wakes, 0, 2);
	tcase_add_test(tc, t_send_case_wakes_on_room);
	tcase_add_test(tc, t_fork_inherited_handle);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ut_main(select_suite(), "sel");
}
