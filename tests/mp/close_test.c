/*
 * close_test.c - close and drain across processes (DESIGN §3a, §4 "Close").
 *
 * quorum: a channel declared with N producers; N producer processes send M
 * messages each, then wait at a gate the parent opens one at a time.  Each
 * producer raises its `closing` flag just before fab_chan_close.  While
 * fewer than N have closed the channel stays open: the consumer, having
 * received everything, sleeps in fab_recv (the parent waits until it is
 * counted in blocked_receivers and checks it has not exited).  The consumer
 * accepts FAB_ECLOSED only if every `closing` flag is up and it has received
 * all N*M messages.
 *
 * drain: producers fill the channel and close before any consumer exists;
 * a consumer started afterwards gets every message, then FAB_ECLOSED.
 *
 * Child exit codes: 0 ok; 10 open; 11 send/recv failed; 13 corrupt; 14 close
 * behaviour wrong; 16 ECLOSED too early (a closing flag down or messages
 * missing); 17 gate wait timed out.
 */
#include "mp_util.h"

#define NPROD 5

struct shared {
	volatile int gate[NPROD];
	volatile int closing[NPROD];
	volatile int closed_ok[NPROD];
	volatile uint64_t received;
};

struct cfg {
	const char *fabric;
	uint32_t kind, cap;
	unsigned np;
	uint32_t per_prod;
	int gated;
	struct shared *sh;
	int id;
};

#define MSZ 32u

static int producer(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char buf[MSZ];
	int rc = mt_open(c->fabric, "c", FAB_SEND, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "producer %d open: %s", c->id, fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 40 * MT_SEC, &dl);
	for (uint32_t s = 0; s < c->per_prod; s++) {
		size_t len = mt_msg_len((uint32_t)c->id, s, MSZ);
		mt_fill(buf, (uint32_t)c->id, s, len);
		rc = fab_send(ch, buf, len, dl);
		if (rc != 0)
			MT_CHILD_FAIL(11, "producer %d send %u: %s", c->id, s, fab_strerror(rc));
	}
	if (c->gated) {
		int64_t end = ft_now_ns() + 40 * MT_SEC;
		while (!__atomic_load_n(&c->sh->gate[c->id], __ATOMIC_ACQUIRE)) {
			if (ft_now_ns() > end)
				MT_CHILD_FAIL(17, "producer %d: gate never opened", c->id);
			usleep(500);
		}
	}
	__atomic_store_n(&c->sh->closing[c->id], 1, __ATOMIC_SEQ_CST);
	rc = fab_chan_close(ch);
	if (rc != 0)
		MT_CHILD_FAIL(14, "producer %d close: %s", c->id, fab_strerror(rc));
	rc = fab_chan_close(ch);
	if (rc != FAB_ECLOSED)
		MT_CHILD_FAIL(14, "producer %d second close: %d, want FAB_ECLOSED", c->id, rc);
	__atomic_store_n(&c->sh->closed_ok[c->id], 1, __ATOMIC_SEQ_CST);
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

static int consumer(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char buf[MSZ];
	uint32_t next[NPROD] = {0};
	uint64_t total = (uint64_t)c->np * c->per_prod, got = 0;
	int rc = mt_open(c->fabric, "c", FAB_RECV, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "consumer open: %s", fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 45 * MT_SEC, &dl);
	for (;;) {
		ssize_t n = fab_recv(ch, buf, sizeof buf, dl);
		uint32_t p, s;
		if (n == FAB_ECLOSED)
			break;
		if (n < 0)
			MT_CHILD_FAIL(11, "recv after %llu: %s", (unsigned long long)got,
				      fab_strerror((int)n));
		if (mt_verify(buf, (size_t)n, MSZ, &p, &s) != 0 || p >= c->np)
			MT_CHILD_FAIL(13, "corrupt message");
		if (s != next[p])
			MT_CHILD_FAIL(13, "producer %u: seq %u, want %u", p, s, next[p]);
		next[p]++;
		got++;
		__atomic_store_n(&c->sh->received, got, __ATOMIC_RELEASE);
	}
	for (unsigned i = 0; i < c->np; i++)
		if (!__atomic_load_n(&c->sh->closing[i], __ATOMIC_SEQ_CST))
			MT_CHILD_FAIL(16, "FAB_ECLOSED while producer %u had not closed", i);
	if (got != total)
		MT_CHILD_FAIL(16, "FAB_ECLOSED after %llu of %llu messages", (unsigned long long)got,
			      (unsigned long long)total);
	/* Closed and drained stays so, for blocking and non-blocking calls. */
	if (fab_try_recv(ch, buf, sizeof buf) != FAB_ECLOSED || fab_recv(ch, buf, sizeof buf, dl) != FAB_ECLOSED)
		MT_CHILD_FAIL(14, "closed channel did not stay closed");
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

static void quorum(const char *tag, uint32_t kind, uint32_t cap)
{
	struct cfg c = {mt_fabric_name(tag), kind, cap, NPROD, 200, 1, NULL, 0};
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	pid_t cons, prod[NPROD];
	int rc;

	c.sh = mt_shared(sizeof *c.sh);
	ck_assert(c.sh);
	rc = mt_make_chan(c.fabric, "c", kind, cap, MSZ, NPROD, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	rc = fab_chan_open(fab, "c", FAB_SEND, &ch); /* the parent watches through a send handle */
	ck_assert_msg(rc == 0, "open: %s", fab_strerror(rc));
	cons = mt_spawn(consumer, &c);
	for (int i = 0; i < NPROD; i++) {
		c.id = i;
		prod[i] = mt_spawn(producer, &c);
	}
	/* Everything arrives while the channel is still open. */
	ck_assert_msg(MT_WAIT_UNTIL(c.sh->received == (uint64_t)NPROD * c.per_prod, 30 * MT_SEC),
		      "consumer got only %llu messages", (unsigned long long)c.sh->received);

	int cons_code = MT_RUNNING;
	for (int i = 0; i < NPROD; i++) {
		/* i producers closed: the drained consumer must be waiting, not done. */
		int blocked = MT_WAIT_UNTIL(
			mt_stats(ch).blocked_receivers >= 1 || mt_exited(cons, &cons_code), 30 * MT_SEC);
		ck_assert_msg(cons_code == MT_RUNNING,
			      "consumer finished (exit %d) after only %d of %d closes", cons_code, i,
			      NPROD);
		ck_assert_msg(blocked, "consumer not blocked after %d closes", i);
		fab_stats st = mt_stats(ch);
		ck_assert_uint_eq(st.closes, (unsigned)i);
		ck_assert_uint_eq(st.closed, 0);
		ck_assert_uint_eq(st.len, 0);
		__atomic_store_n(&c.sh->gate[i], 1, __ATOMIC_RELEASE);
		rc = mt_wait(prod[i], 30 * MT_SEC);
		ck_assert_msg(rc == 0, "producer %d exited %d", i, rc);
	}
	rc = cons_code != MT_RUNNING ? cons_code : mt_wait(cons, 30 * MT_SEC);
	ck_assert_msg(rc == 0, "consumer exited %d (-2 = hung)", rc);
	mt_kill_all();

	fab_stats st = mt_stats(ch);
	ck_assert_uint_eq(st.closed, 1);
	ck_assert_uint_eq(st.closes, NPROD);
	/* Opening a closed channel to send is allowed; its sends fail. */
	ck_assert_int_eq(fab_send(ch, "x", 1, NULL), FAB_ECLOSED);
	ck_assert_int_eq(fab_try_send(ch, "x", 1), FAB_ECLOSED);
	fab_chan *ch2 = NULL;
	rc = fab_chan_open(fab, "c", FAB_SEND, &ch2);
	ck_assert_msg(rc == 0, "open a closed channel to send: %s", fab_strerror(rc));
	ck_assert_int_eq(fab_try_send(ch2, "x", 1), FAB_ECLOSED);
	fab_chan_release(ch2);
	fab_chan_release(ch);
	mt_destroy(c.fabric, &fab);
}

START_TEST(close_quorum_mpmc)
{
	quorum("clq", FAB_MPMC, 16);
}
END_TEST

START_TEST(close_quorum_mpmc_unbuffered)
{
	quorum("clq0", FAB_MPMC, 0);
}
END_TEST

/* Producers fill and close with no consumer; a late consumer drains. */
static void drain(const char *tag, uint32_t kind, unsigned np)
{
	struct cfg c = {mt_fabric_name(tag), kind, 0, np, 20, 0, NULL, 0};
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	int rc;

	c.cap = np * c.per_prod;
	c.sh = mt_shared(sizeof *c.sh);
	rc = mt_make_chan(c.fabric, "c", kind, c.cap, MSZ, np, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	for (unsigned i = 0; i < np; i++) {
		/* One at a time: an spsc channel has one sender attached at a
		 * time; it is handed over by release, then open elsewhere. */
		c.id = (int)i;
		pid_t p = mt_spawn(producer, &c);
		rc = mt_wait(p, 30 * MT_SEC);
		ck_assert_msg(rc == 0, "producer %u exited %d", i, rc);
	}
	rc = fab_chan_open(fab, "c", FAB_SEND, &ch);
	ck_assert_int_eq(rc, 0);
	fab_stats st = mt_stats(ch);
	ck_assert_uint_eq(st.closed, 1);
	ck_assert_uint_eq(st.len, c.cap);
	ck_assert_uint_eq(fab_chan_len(ch), c.cap);
	fab_chan_release(ch);
	pid_t cons = mt_spawn(consumer, &c);
	rc = mt_wait(cons, 30 * MT_SEC);
	mt_kill_all();
	ck_assert_msg(rc == 0, "consumer exited %d", rc);
	mt_destroy(c.fabric, &fab);
}

START_TEST(close_then_drain_mpmc)
{
	drain("cldm", FAB_MPMC, 4);
}
END_TEST

START_TEST(close_then_drain_spsc)
{
	/* An spsc end handed over between producer processes; quorum 3. */
	drain("clds", FAB_SPSC, 3);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mp_close");
	TCase *tc = mt_tcase("close", 60);
	mt_init();
	tcase_add_test(tc, close_quorum_mpmc);
	tcase_add_test(tc, close_quorum_mpmc_unbuffered);
	tcase_add_test(tc, close_then_drain_mpmc);
	tcase_add_test(tc, close_then_drain_spsc);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
