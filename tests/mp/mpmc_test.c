/*
 * mpmc_test.c - P producer processes and C consumer processes on one mpmc
 * channel (4 -> 4 moving 1,000,000 messages, plus small-capacity and
 * unbuffered variants).
 *
 * Each message is tagged (producer id, seq) and self-checking.  Consumers
 * count every message they receive in a MAP_SHARED table (one byte per
 * message, atomically incremented) and check, locally, that the messages of
 * each producer reach them in increasing seq order.  At the end the parent
 * asserts every message was received exactly once, and the channel's
 * counters agree.  Producers declare a close quorum of P; consumers stop at
 * FAB_ECLOSED.
 *
 * Child exit codes: 0 ok; 10 open; 11 send/recv failed; 12 per-producer
 * order broken; 13 corrupt message; 14 close wrong; 15 bad producer id/seq.
 */
#include "mp_util.h"

#define MAXP 8

struct cfg {
	const char *fabric;
	uint32_t cap, msg_size;
	unsigned np, nc;
	uint32_t per_prod;          /* messages per producer */
	uint8_t *seen;              /* [np][per_prod] receive counts (shared) */
	uint64_t *per_cons;         /* [nc] messages each consumer got (shared) */
	int id;                     /* set in the child's copy */
	int use_batch;
};

static int producer(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char *buf;
	int rc = mt_open(c->fabric, "c", FAB_SEND, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "producer %d open: %s", c->id, fab_strerror(rc));
	if (fab_ctx_with_timeout(NULL, 60 * MT_SEC, &dl) != 0)
		MT_CHILD_FAIL(10, "ctx");
	buf = malloc(c->msg_size + MT_HDR);
	for (uint32_t s = 0; s < c->per_prod; s++) {
		size_t len = mt_msg_len((uint32_t)c->id, s, c->msg_size);
		mt_fill(buf, (uint32_t)c->id, s, len);
		rc = fab_send(ch, buf, len, dl);
		if (rc != 0)
			MT_CHILD_FAIL(11, "producer %d send %u: %s", c->id, s, fab_strerror(rc));
	}
	rc = fab_chan_close(ch);
	if (rc != 0)
		MT_CHILD_FAIL(14, "producer %d close: %s", c->id, fab_strerror(rc));
	free(buf);
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
	int64_t last[MAXP];
	enum { B = 8 };
	fab_iov iov[B];
	unsigned char *bufs;
	uint64_t got = 0;
	int rc = mt_open(c->fabric, "c", FAB_RECV, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "consumer %d open: %s", c->id, fab_strerror(rc));
	if (fab_ctx_with_timeout(NULL, 60 * MT_SEC, &dl) != 0)
		MT_CHILD_FAIL(10, "ctx");
	for (int i = 0; i < MAXP; i++)
		last[i] = -1;
	bufs = malloc((size_t)B * c->msg_size + 1);
	for (;;) {
		int k;
		if (c->use_batch) {
			for (int i = 0; i < B; i++) {
				iov[i].base = bufs + (size_t)i * c->msg_size;
				iov[i].len = c->msg_size;
			}
			k = fab_recv_batch(ch, iov, B, dl);
			if (k == 0 || k > B)
				MT_CHILD_FAIL(11, "consumer %d recv_batch returned %d", c->id, k);
		} else {
			ssize_t n = fab_recv(ch, bufs, c->msg_size, dl);
			k = n < 0 ? (int)n : 1;
			iov[0].base = bufs;
			iov[0].len = n < 0 ? 0 : (size_t)n;
		}
		if (k == FAB_ECLOSED)
			break;
		if (k < 0)
			MT_CHILD_FAIL(11, "consumer %d recv after %llu: %s", c->id,
				      (unsigned long long)got, fab_strerror(k));
		for (int i = 0; i < k; i++) {
			uint32_t p, s;
			int why = mt_verify(iov[i].base, iov[i].len, c->msg_size, &p, &s);
			if (why != 0)
				MT_CHILD_FAIL(13, "consumer %d corrupt message (reason %d, len %zu)",
					      c->id, why, iov[i].len);
			if (p >= c->np || s >= c->per_prod)
				MT_CHILD_FAIL(15, "consumer %d got producer %u seq %u", c->id, p, s);
			if ((int64_t)s <= last[p])
				MT_CHILD_FAIL(12, "consumer %d: producer %u seq %u after seq %lld",
					      c->id, p, s, (long long)last[p]);
			last[p] = s;
			__atomic_fetch_add(&c->seen[(size_t)p * c->per_prod + s], 1, __ATOMIC_RELAXED);
			got++;
		}
	}
	c->per_cons[c->id] = got;
	free(bufs);
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

static void run(const char *tag, uint32_t cap, uint32_t msg_size, unsigned np, unsigned nc,
		uint32_t per_prod, int use_batch)
{
	struct cfg c = {mt_fabric_name(tag), cap, msg_size, np, nc, per_prod, NULL, NULL, 0,
			use_batch};
	size_t total = (size_t)np * per_prod;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	pid_t pids[2 * MAXP];
	int codes[2 * MAXP];
	int64_t t0 = ft_now_ns();
	int rc;

	c.seen = mt_shared(total);
	c.per_cons = mt_shared(sizeof(uint64_t) * nc);
	ck_assert(c.seen && c.per_cons);
	rc = mt_make_chan(c.fabric, "c", FAB_MPMC, cap, msg_size, np, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));

	/* Consumers first so some of them block on the empty channel. */
	for (unsigned i = 0; i < nc; i++) {
		c.id = (int)i;
		pids[np + i] = mt_spawn(consumer, &c);
	}
	for (unsigned i = 0; i < np; i++) {
		c.id = (int)i;
		pids[i] = mt_spawn(producer, &c);
	}
	int bad = mt_wait_all(pids, (int)(np + nc), 70 * MT_SEC, codes);
	mt_kill_all();
	if (bad >= 0) {
		unsigned i = (unsigned)bad;
		ck_abort_msg("%s %u exited %d (-2 = hung); the others were stopped",
			     i < np ? "producer" : "consumer", i < np ? i : i - np, codes[i]);
	}

	/* Exactly once. */
	uint64_t sum = 0;
	for (unsigned i = 0; i < nc; i++)
		sum += c.per_cons[i];
	for (size_t i = 0; i < total; i++)
		MT_CHECK(c.seen[i] == 1, "producer %zu seq %zu received %u times", i / per_prod,
			 i % per_prod, c.seen[i]);
	ck_assert_uint_eq(sum, total);

	rc = fab_chan_open(fab, "c", FAB_RECV, &ch);
	ck_assert_msg(rc == 0, "reopen: %s", fab_strerror(rc));
	fab_stats st = mt_stats(ch);
	ck_assert_uint_eq(st.kind, FAB_MPMC);
	/* "Messages since creation", whatever position the ring started at. */
	ck_assert_msg(st.sent == total && st.received == total,
		      "fab_stats sent %llu received %llu, but %llu messages went through",
		      (unsigned long long)st.sent, (unsigned long long)st.received,
		      (unsigned long long)total);
	ck_assert_uint_eq(st.len, 0);
	ck_assert_uint_eq(st.closed, 1);
	ck_assert_uint_eq(st.closes, np);
	ck_assert_uint_eq(st.producers, np);
	ck_assert_int_eq(fab_try_recv(ch, NULL, 0), FAB_ECLOSED);
	printf("mpmc %u->%u cap %u msg_size %u%s: %zu msgs in %.2f s, futex waits %llu wakes %llu;"
	       " per consumer:",
	       np, nc, cap, msg_size, use_batch ? " (batch recv)" : "", total,
	       (ft_now_ns() - t0) / 1e9, (unsigned long long)st.futex_waits,
	       (unsigned long long)st.futex_wakes);
	for (unsigned i = 0; i < nc; i++)
		printf(" %llu", (unsigned long long)c.per_cons[i]);
	printf("\n");
	fab_chan_release(ch);
	munmap(c.seen, total);
	munmap(c.per_cons, sizeof(uint64_t) * nc);
	mt_destroy(c.fabric, &fab);
}

START_TEST(mpmc_4x4_1m)
{
	/* 4 x 250,000 = 1,000,000 messages (kept under ASan too). */
	run("mp4x4", 256, 64, 4, 4, 250000, 0);
}
END_TEST

START_TEST(mpmc_small_caps)
{
	run("mpc1", 1, 64, 4, 4, MT_SCALE(100000, 25000), 0);
	run("mpc7", 7, 1000, 3, 2, MT_SCALE(100000, 40000), 0);
	run("mpc8", 8, 8, 2, 3, MT_SCALE(200000, 60000), 1);
}
END_TEST

START_TEST(mpmc_unbuffered)
{
	/* Capacity 0: every send is a rendezvous with some receiver. */
	run("mpu", 0, 64, 2, 2, MT_SCALE(50000, 10000), 0);
	run("mpu31", 0, 16, 3, 1, MT_SCALE(20000, 5000), 0);
}
END_TEST

START_TEST(mpmc_wrap)
{
	/* Across the 45-bit position field of the slot words and across 2^64,
	 * with 4 producers and 4 consumers racing over the wrap. */
	mt_start_pos((1ULL << 45) - 200000);
	run("mpw45", 16, 64, 4, 4, 100000, 0);
	mt_start_pos(UINT64_MAX - 200000);
	run("mpw64", 16, 64, 4, 4, 100000, 0);
	run("mpw64u", 0, 64, 2, 2, 100000, 0);
	mt_start_pos(0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mp_mpmc");
	TCase *tc = mt_tcase("mpmc", 90);
	mt_init();
	tcase_add_test(tc, mpmc_4x4_1m);
	tcase_add_test(tc, mpmc_small_caps);
	tcase_add_test(tc, mpmc_unbuffered);
	tcase_add_test(tc, mpmc_wrap);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
