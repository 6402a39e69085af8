/*
 * records_test.c - unit suite for what the library leaves in the segments
 * for inspectors (layout 1.2): each process's pulse and wait record, the
 * stage it runs, the wait and latency histograms of a channel, the limiter
 * wait histogram, and the origin time a message chain carries.
 *
 * What a user relies on: fabctl and fabd's watchdog read these without
 * asking the process.  A process sleeping in a receive is recorded as such
 * (which channel, which direction) while it sleeps and not after; the pulse
 * moves with every call; a blocked call is one histogram observation; a
 * stage's send inherits the origin of the message it last received on an
 * at-least-once channel, and the ack of the last hop records the whole
 * chain's latency.  Read through layout.h, as the inspectors do.
 */
#include "unit.h"

#include "layout.h"

#define MS 1000000LL

static fab_ctl_hdr *ctl_map(void)
{
	char p[128];
	snprintf(p, sizeof p, "/dev/shm/fab.%s", fname);
	int fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	void *m = mmap(NULL, FAB_CTL_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert_ptr_ne(m, MAP_FAILED);
	return m;
}

static fab_proc_ent *procs_of(fab_ctl_hdr *h)
{
	return (fab_proc_ent *)((uint8_t *)h + FAB_CTL_PROCS_OFF);
}

/* The live entry of `pid`, or NULL. */
static fab_proc_ent *entry_of(fab_ctl_hdr *h, pid_t pid)
{
	fab_proc_ent *p = procs_of(h);
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++)
		if (FAB_SG_STATE(atomic_load(&p[i].sg)) == FAB_PROC_LIVE &&
		    atomic_load(&p[i].pid) == (uint32_t)pid)
			return &p[i];
	return NULL;
}

static int reg_index(fab_ctl_hdr *h, const char *name)
{
	fab_chan_ent *e = (fab_chan_ent *)((uint8_t *)h + FAB_CTL_CHANS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_CHANS; i++)
		if (atomic_load(&e[i].state) == FAB_ENT_LIVE && !strcmp(e[i].name, name))
			return (int)i;
	return -1;
}

static fab_chan_hdr *chan_map(const char *name)
{
	char p[160];
	snprintf(p, sizeof p, "/dev/shm/fab.%s.%s", fname, name);
	int fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert_ptr_ne(m, MAP_FAILED);
	return m;
}

static uint64_t hist_count(fab_hist *h)
{
	uint64_t n = 0;
	for (int i = 0; i <= FAB_HIST_BUCKETS; i++)
		n += atomic_load(&h->b[i]);
	ck_assert_uint_eq(n, atomic_load(&h->count));
	return n;
}

static fab_chan *mk(const char *name, uint32_t kind, uint32_t delivery)
{
	fab_chan_opts o = ut_opts(kind, 4, 32);
	o.delivery = delivery;
	fab_chan *c = NULL;
	UT_RC(fab_chan_create(fab, name, &o, &c), 0);
	return c;
}

static int child_recv_one(void *arg)
{
	const char *name = arg;
	fab_fabric *f = NULL;
	fab_chan *c = NULL;
	alarm(20);
	CHILD_RC(fab_fabric_open(fname, 0, &f), 0, 10);
	CHILD_RC(fab_chan_open(f, name, FAB_RECV, &c), 0, 11);
	char b[32];
	CHILD_RC(fab_recv(c, b, sizeof b, NULL), 2, 12);
	/* Stay attached until the parent has looked at the cleared record. */
	CHILD_RC(fab_recv(c, b, sizeof b, NULL), 2, 13);
	fab_chan_release(c);
	fab_fabric_close(f);
	return 0;
}

/* A receiver asleep in fab_recv is recorded: channel, direction, since
 * when; the record is gone once the receive returned.  Its pulse moved. */
START_TEST(t_wait_record)
{
	fab_chan *c = mk("w", _i ? FAB_MPMC : FAB_SPSC, FAB_AT_MOST_ONCE);
	fab_ctl_hdr *h = ctl_map();
	int64_t before = ft_now_ns();
	pid_t p = ft_spawn(child_recv_one, "w");
	fab_proc_ent *e;
	while (!(e = entry_of(h, p)) || !atomic_load(&e->wait))
		ut_sleep_ms(1);
	uint64_t w = atomic_load(&e->wait);
	ck_assert_uint_eq(FAB_WAIT_KIND(w), FAB_WAIT_CHAN);
	ck_assert_uint_eq(FAB_WAIT_OP(w), FAB_WAIT_RECV);
	ck_assert_uint_eq(FAB_WAIT_CASES(w), 1);
	ck_assert_int_eq((int)FAB_WAIT_IDX(w), reg_index(h, "w"));
	int64_t since = atomic_load(&e->wait_ns);
	ck_assert_int_ge(since, before);
	ck_assert_int_le(since, ft_now_ns());
	ck_assert_uint_ge(atomic_load(&e->calls), 1);
	uint64_t calls = atomic_load(&e->calls);
	UT_RC(fab_send(c, "m1", 2, NULL), 0);
	/* Woken: the record clears, the pulse moves (the second receive). */
	while (atomic_load(&e->calls) == calls)
		ut_sleep_ms(1);
	while (atomic_load(&e->wait) != 0 && atomic_load(&e->wait_ns) == since)
		ut_sleep_ms(1);
	ck_assert(atomic_load(&e->wait) == 0 || atomic_load(&e->wait_ns) > since);
	UT_RC(fab_send(c, "m2", 2, NULL), 0);
	UT_CHILD_OK(p);
	/* One observation per call that slept: the first receive surely
	 * slept (we waited for its record); the second maybe. */
	fab_chan_hdr *ch = chan_map("w");
	ck_assert_uint_ge(hist_count(&ch->recv_wait), 1);
	ck_assert_uint_le(hist_count(&ch->recv_wait), 2);
	ck_assert_uint_eq(hist_count(&ch->send_wait), 0);
	ck_assert_uint_gt(atomic_load(&ch->recv_wait.sum_ns), 0);
	munmap(ch, 4096);
	munmap(h, FAB_CTL_SIZE);
	fab_chan_release(c);
}
END_TEST

static int child_send_full(void *arg)
{
	(void)arg;
	fab_fabric *f = NULL;
	fab_chan *c = NULL;
	alarm(20);
	CHILD_RC(fab_fabric_open(fname, 0, &f), 0, 20);
	CHILD_RC(fab_chan_open(f, "full", FAB_SEND, &c), 0, 21);
	for (int i = 0; i < 5; i++) /* capacity 4: the fifth blocks */
		CHILD_RC(fab_send(c, "xx", 2, NULL), 0, 22);
	fab_chan_release(c);
	fab_fabric_close(f);
	return 0;
}

/* A sender blocked on a full channel: send direction; select records the
 * first case and the case count. */
START_TEST(t_wait_record_send)
{
	fab_chan *c = mk("full", FAB_MPMC, FAB_AT_MOST_ONCE);
	fab_ctl_hdr *h = ctl_map();
	pid_t p = ft_spawn(child_send_full, NULL);
	fab_proc_ent *e;
	while (!(e = entry_of(h, p)) || !atomic_load(&e->wait))
		ut_sleep_ms(1);
	uint64_t w = atomic_load(&e->wait);
	ck_assert_uint_eq(FAB_WAIT_KIND(w), FAB_WAIT_CHAN);
	ck_assert_uint_eq(FAB_WAIT_OP(w), FAB_WAIT_SEND);
	ck_assert_int_eq((int)FAB_WAIT_IDX(w), reg_index(h, "full"));
	char b[8];
	UT_RC(fab_recv(c, b, sizeof b, NULL), 2);
	UT_CHILD_OK(p);
	fab_chan_hdr *ch = chan_map("full");
	ck_assert_uint_eq(hist_count(&ch->send_wait), 1);
	munmap(ch, 4096);
	munmap(h, FAB_CTL_SIZE);
	fab_chan_release(c);
}
END_TEST

static int child_select(void *arg)
{
	(void)arg;
	fab_fabric *f = NULL;
	fab_chan *a = NULL, *b = NULL;
	alarm(20);
	CHILD_RC(fab_fabric_open(fname, 0, &f), 0, 30);
	CHILD_RC(fab_chan_open(f, "sa", FAB_RECV, &a), 0, 31);
	CHILD_RC(fab_chan_open(f, "sb", FAB_RECV, &b), 0, 32);
	char x[8], y[8];
	fab_case cs[2] = {{.ch = a, .op = FAB_OP_RECV, .recv_buf = x, .recv_cap = sizeof x},
			  {.ch = b, .op = FAB_OP_RECV, .recv_buf = y, .recv_cap = sizeof y}};
	CHILD_CHECK(fab_select(cs, 2, NULL, 0) >= 0, 33);
	fab_chan_release(a);
	fab_chan_release(b);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_wait_record_select)
{
	fab_chan *a = mk("sa", FAB_MPMC, FAB_AT_MOST_ONCE);
	fab_chan *b = mk("sb", FAB_MPMC, FAB_AT_MOST_ONCE);
	fab_ctl_hdr *h = ctl_map();
	pid_t p = ft_spawn(child_select, NULL);
	fab_proc_ent *e;
	while (!(e = entry_of(h, p)) || !atomic_load(&e->wait))
		ut_sleep_ms(1);
	uint64_t w = atomic_load(&e->wait);
	ck_assert_uint_eq(FAB_WAIT_KIND(w), FAB_WAIT_SELECT);
	ck_assert_uint_eq(FAB_WAIT_OP(w), FAB_WAIT_RECV);
	ck_assert_uint_eq(FAB_WAIT_CASES(w), 2);
	int ia = reg_index(h, "sa"), ib = reg_index(h, "sb");
	ck_assert((int)FAB_WAIT_IDX(w) == ia || (int)FAB_WAIT_IDX(w) == ib);
	UT_RC(fab_send(b, "go", 2, NULL), 0);
	UT_CHILD_OK(p);
	munmap(h, FAB_CTL_SIZE);
	fab_chan_release(a);
	fab_chan_release(b);
}
END_TEST

/* Origin: A sends on an at-least-once channel (stamped now); B receives
 * it and sends on; the second message carries the FIRST one's origin.  A
 * receive from an at-most-once channel forgets it (its slots carry no
 * time): the next send starts a new chain.  Every ack records latency. */
START_TEST(t_origin_inherited)
{
	fab_chan *c1 = mk("c1", FAB_MPMC, FAB_AT_LEAST_ONCE);
	fab_chan *c2 = mk("c2", FAB_MPMC, FAB_AT_LEAST_ONCE);
	fab_chan *keep = NULL; /* keeps c2's segment while c2's handle is released */
	UT_RC(fab_chan_open(fab, "c2", FAB_RECV, &keep), 0);
	fab_chan *plain = mk("plain", FAB_MPMC, FAB_AT_MOST_ONCE);
	fab_msg_info mi;
	char b[32];
	/* A fresh thread state: no origin yet, so the send stamps now. */
	int64_t t0 = ft_now_ns();
	UT_RC(fab_send(c1, "m", 1, NULL), 0);
	UT_RC(fab_recv(c1, b, sizeof b, NULL), 1);
	memset(&mi, 0, sizeof mi);
	mi.size = sizeof mi;
	UT_RC(fab_recv_info(c1, &mi), 0);
	int64_t origin = mi.origin_ns;
	ck_assert_int_ge(origin, t0);
	ut_sleep_ms(5);
	UT_RC(fab_send(c2, "n", 1, NULL), 0); /* inherits */
	UT_RC(fab_ack(c1), 0);
	UT_RC(fab_recv(c2, b, sizeof b, NULL), 1);
	memset(&mi, 0, sizeof mi);
	mi.size = sizeof mi;
	UT_RC(fab_recv_info(c2, &mi), 0);
	ck_assert_int_eq(mi.origin_ns, origin);
	ck_assert_int_gt(mi.enqueue_ns, origin); /* its own enqueue time is later */
	UT_RC(fab_ack(c2), 0);

	UT_RC(fab_send(plain, "p", 1, NULL), 0);
	UT_RC(fab_recv(plain, b, sizeof b, NULL), 1);
	int64_t t1 = ft_now_ns();
	UT_RC(fab_send(c2, "q", 1, NULL), 0); /* a new chain */
	UT_RC(fab_recv(c2, b, sizeof b, NULL), 1);
	memset(&mi, 0, sizeof mi);
	mi.size = sizeof mi;
	UT_RC(fab_recv_info(c2, &mi), 0);
	ck_assert_int_ge(mi.origin_ns, t1);
	/* A nack records nothing; the implicit ack of release does not
	 * either (the lease goes back). */
	UT_RC(fab_nack(c2), 0);
	/* Any receive call forgets the origin, an empty poll too: on an spsc
	 * ring it is answered by the fast line, on an mpmc one by the
	 * general path; after either, a send starts a new chain. */
	fab_chan *spsc = mk("spsc", FAB_SPSC, FAB_AT_MOST_ONCE);
	UT_RC(fab_send(spsc, "s", 1, NULL), 0); /* the handle takes its ends */
	UT_RC(fab_recv(spsc, b, sizeof b, NULL), 1);
	for (int k = 0; k < 2; k++) {
		UT_RC(fab_recv(c2, b, sizeof b, NULL), 1); /* the given-back q */
		memset(&mi, 0, sizeof mi);
		mi.size = sizeof mi;
		UT_RC(fab_recv_info(c2, &mi), 0);
		ck_assert_uint_eq(mi.deliveries, 2 + (uint32_t)k);
		UT_RC(fab_nack(c2), 0);
		ut_sleep_ms(2);
		int64_t t2 = ft_now_ns();
		UT_RC(fab_try_recv(k ? plain : spsc, b, sizeof b), FAB_EAGAIN);
		UT_RC(fab_send(c1, "r", 1, NULL), 0);
		UT_RC(fab_recv(c1, b, sizeof b, NULL), 1);
		memset(&mi, 0, sizeof mi);
		mi.size = sizeof mi;
		UT_RC(fab_recv_info(c1, &mi), 0);
		ck_assert_msg(mi.origin_ns >= t2, "%s poll: origin %lld before the poll at %lld",
			      k ? "mpmc" : "spsc", (long long)mi.origin_ns, (long long)t2);
		UT_RC(fab_ack(c1), 0);
	}
	fab_chan_release(spsc);
	/* A handle adds its latencies to the header in batches, before it
	 * sleeps and at release: one ack recorded, >= the 5 ms between the
	 * chain's start and that ack. */
	fab_chan_hdr *h2 = chan_map("c2");
	ck_assert_uint_eq(hist_count(&h2->latency), 0);
	fab_chan_release(c2);
	ck_assert_uint_eq(hist_count(&h2->latency), 1);
	ck_assert_uint_ge(atomic_load(&h2->latency.sum_ns), 5 * MS);
	munmap(h2, 4096);
	fab_chan_release(c1);
	fab_chan_release(plain);
	fab_chan_release(keep);
}
END_TEST

/* A limiter wait that had to wait is one observation; a grant at once is
 * none. */
START_TEST(t_limiter_hist)
{
	fab_limiter *l = NULL;
	UT_RC(fab_limiter_create(fab, "lim", 100.0, 1, &l), 0); /* 10 ms a token */
	fab_ctl_hdr *h = ctl_map();
	fab_lim_ent *le = (fab_lim_ent *)((uint8_t *)h + FAB_CTL_LIMS_OFF);
	fab_hist *lh = (fab_hist *)((uint8_t *)h + FAB_CTL_LHISTS_OFF);
	int idx = -1;
	for (int i = 0; i < (int)FAB_MAX_LIMS; i++)
		if (atomic_load(&le[i].state) == FAB_ENT_LIVE && !strcmp(le[i].name, "lim"))
			idx = i;
	ck_assert_int_ge(idx, 0);
	UT_RC(fab_limiter_wait(l, 1, NULL), 0); /* the burst token: at once */
	ck_assert_uint_eq(hist_count(&lh[idx]), 0);
	UT_RC(fab_limiter_wait(l, 1, NULL), 0); /* waits ~10 ms */
	ck_assert_uint_eq(hist_count(&lh[idx]), 1);
	ck_assert_uint_gt(atomic_load(&lh[idx].sum_ns), 0);
	munmap(h, FAB_CTL_SIZE);
	fab_limiter_release(l);
}
END_TEST

static Suite *records_suite(void)
{
	Suite *s = suite_create("records");
	TCase *tc = tcase_create("records");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, ut_fabric_setup, ut_fabric_teardown);
	tcase_add_loop_test(tc, t_wait_record, 0, 2);
	tcase_add_test(tc, t_wait_record_send);
	tcase_add_test(tc, t_wait_record_select);
	tcase_add_test(tc, t_origin_inherited);
	tcase_add_test(tc, t_limiter_hist);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ut_main(records_suite(), "rec");
}
