/*
 * spsc_test.c - one producer process, one consumer process, one spsc channel.
 *
 * Every message is sequence-numbered and self-checking (mp_util.h): the
 * consumer asserts each arrives exactly once, in order, with the right
 * length and bytes, then that the channel reports FAB_ECLOSED after the
 * producer's close.  The big run moves 1,000,000 messages; a matrix covers
 * message sizes 8/64/1000 and capacities 0/1/7/1024; two more runs use the
 * zero-copy and batch calls across processes.
 *
 * Child exit codes: 0 ok; 10 open failed; 11 send/recv failed; 12 out of
 * order; 13 corrupt message; 14 close/after-close behaviour wrong.
 */
#include "mp_util.h"

enum { MODE_COPY, MODE_ZC, MODE_BATCH };
#define BATCH 16

struct cfg {
	const char *fabric;
	uint32_t kind, cap, msg_size;
	uint64_t n;
	int mode;
};

static int producer(void *arg)
{
	const struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL; /* a stall becomes ETIMEDOUT, not a hang */
	unsigned char *bufs;
	fab_iov iov[BATCH];
	int rc = mt_open(c->fabric, "c", FAB_SEND, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "producer open: %s", fab_strerror(rc));
	if (fab_ctx_with_timeout(NULL, 40 * MT_SEC, &dl) != 0)
		MT_CHILD_FAIL(10, "producer ctx");
	bufs = malloc((size_t)BATCH * (c->msg_size + MT_HDR));
	for (uint64_t seq = 0; seq < c->n;) {
		uint32_t s = (uint32_t)seq;
		size_t len = mt_msg_len(0, s, c->msg_size);
		if (c->mode == MODE_COPY) {
			mt_fill(bufs, 0, s, len);
			rc = fab_send(ch, bufs, len, dl);
			if (rc != 0)
				MT_CHILD_FAIL(11, "fab_send seq %u: %s", s, fab_strerror(rc));
			seq++;
		} else if (c->mode == MODE_ZC) {
			void *slot = NULL;
			rc = fab_send_reserve(ch, len, &slot, dl);
			if (rc != 0 || slot == NULL)
				MT_CHILD_FAIL(11, "fab_send_reserve seq %u: %s", s, fab_strerror(rc));
			mt_fill(slot, 0, s, len);
			rc = fab_send_commit(ch, len);
			if (rc != 0)
				MT_CHILD_FAIL(11, "fab_send_commit seq %u: %s", s, fab_strerror(rc));
			seq++;
		} else {
			unsigned k = 0;
			for (; k < BATCH && seq + k < c->n; k++) {
				uint32_t sk = (uint32_t)(seq + k);
				iov[k].base = bufs + (size_t)k * (c->msg_size + MT_HDR);
				iov[k].len = mt_msg_len(0, sk, c->msg_size);
				mt_fill(iov[k].base, 0, sk, iov[k].len);
			}
			rc = fab_send_batch(ch, iov, k, dl);
			if (rc < 1 || (unsigned)rc > k)
				MT_CHILD_FAIL(11, "fab_send_batch at %llu: %d %s", (unsigned long long)seq,
					      rc, fab_strerror(rc));
			seq += (unsigned)rc;
		}
	}
	rc = fab_chan_close(ch);
	if (rc != 0)
		MT_CHILD_FAIL(14, "fab_chan_close: %s", fab_strerror(rc));
	mt_fill(bufs, 0, 0, MT_HDR);
	rc = fab_send(ch, bufs, MT_HDR, dl);
	if (rc != FAB_ECLOSED)
		MT_CHILD_FAIL(14, "send after close: %d, want FAB_ECLOSED", rc);
	rc = fab_chan_close(ch);
	if (rc != FAB_ECLOSED)
		MT_CHILD_FAIL(14, "second close: %d, want FAB_ECLOSED", rc);
	free(bufs);
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

static int check_one(const struct cfg *c, const void *m, size_t len, uint64_t want)
{
	uint32_t p, s;
	int why = mt_verify(m, len, c->msg_size, &p, &s);
	if (why != 0)
		MT_CHILD_FAIL(13, "corrupt message (reason %d) len %zu expecting seq %llu", why, len,
			      (unsigned long long)want);
	if (p != 0 || s != (uint32_t)want)
		MT_CHILD_FAIL(12, "got seq %u from %u, want seq %llu", s, p,
			      (unsigned long long)want);
	return 0;
}

static int consumer(void *arg)
{
	const struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char *bufs;
	fab_iov iov[BATCH];
	ssize_t n;
	int rc = mt_open(c->fabric, "c", FAB_RECV, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "consumer open: %s", fab_strerror(rc));
	if (fab_ctx_with_timeout(NULL, 40 * MT_SEC, &dl) != 0)
		MT_CHILD_FAIL(10, "consumer ctx");
	/* Exactly msg_size bytes per buffer: a library that writes past the
	 * capacity it was given is caught by ASan. */
	bufs = malloc((size_t)BATCH * c->msg_size + 1);
	for (uint64_t seq = 0; seq < c->n;) {
		if (c->mode == MODE_COPY) {
			n = fab_recv(ch, bufs, c->msg_size, dl);
			if (n < 0)
				MT_CHILD_FAIL(11, "fab_recv at %llu: %s", (unsigned long long)seq,
					      fab_strerror((int)n));
			if ((rc = check_one(c, bufs, (size_t)n, seq)) != 0)
				return rc;
			seq++;
		} else if (c->mode == MODE_ZC) {
			const void *m = NULL;
			size_t len = 0;
			rc = fab_recv_acquire(ch, &m, &len, dl);
			if (rc != 0 || m == NULL)
				MT_CHILD_FAIL(11, "fab_recv_acquire at %llu: %s", (unsigned long long)seq,
					      fab_strerror(rc));
			if ((rc = check_one(c, m, len, seq)) != 0)
				return rc;
			rc = fab_recv_release(ch);
			if (rc != 0)
				MT_CHILD_FAIL(11, "fab_recv_release: %s", fab_strerror(rc));
			seq++;
		} else {
			for (unsigned k = 0; k < BATCH; k++) {
				iov[k].base = bufs + (size_t)k * c->msg_size;
				iov[k].len = c->msg_size;
			}
			rc = fab_recv_batch(ch, iov, BATCH, dl);
			if (rc < 1 || rc > BATCH)
				MT_CHILD_FAIL(11, "fab_recv_batch at %llu: %d %s", (unsigned long long)seq,
					      rc, fab_strerror(rc));
			for (int k = 0; k < rc; k++) {
				if (seq >= c->n)
					MT_CHILD_FAIL(12, "more messages than sent");
				int r2 = check_one(c, iov[k].base, iov[k].len, seq);
				if (r2 != 0)
					return r2;
				seq++;
			}
		}
	}
	/* Everything received: the next receive waits for the close, then
	 * reports it; so does the non-blocking one. */
	n = fab_recv(ch, bufs, c->msg_size, dl);
	if (n != FAB_ECLOSED)
		MT_CHILD_FAIL(14, "recv after last message: %zd, want FAB_ECLOSED", n);
	n = fab_try_recv(ch, bufs, c->msg_size);
	if (n != FAB_ECLOSED)
		MT_CHILD_FAIL(14, "try_recv after close: %zd, want FAB_ECLOSED", n);
	free(bufs);
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

/* One producer/consumer run, asserted in the parent. */
static void run(const char *tag, uint32_t cap, uint32_t msg_size, uint64_t n, int mode)
{
	struct cfg c = {mt_fabric_name(tag), FAB_SPSC, cap, msg_size, n, mode};
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	pid_t cons, prod;
	int64_t t0 = ft_now_ns();
	int rc;

	rc = mt_make_chan(c.fabric, "c", FAB_SPSC, cap, msg_size, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	cons = mt_spawn(consumer, &c);
	prod = mt_spawn(producer, &c);
	ck_assert(cons > 0 && prod > 0);
	pid_t kids[2] = {prod, cons};
	int codes[2];
	mt_wait_all(kids, 2, 50 * MT_SEC, codes);
	mt_kill_all();
	ck_assert_msg(codes[0] == 0 && codes[1] == 0,
		      "cap %u msg_size %u mode %d: producer exit %d, consumer exit %d "
		      "(-2 = hung, -3 = stopped after the other failed)",
		      cap, msg_size, mode, codes[0], codes[1]);

	/* The segment's counters agree. */
	rc = fab_chan_open(fab, "c", FAB_RECV, &ch);
	ck_assert_msg(rc == 0, "reopen: %s", fab_strerror(rc));
	fab_stats st = mt_stats(ch);
	ck_assert_uint_eq(st.kind, FAB_SPSC);
	ck_assert_uint_eq(st.capacity, cap);
	ck_assert_uint_eq(st.msg_size, msg_size);
	/* "Messages since creation", whatever position the ring started at. */
	ck_assert_msg(st.sent == n && st.received == n,
		      "fab_stats sent %llu received %llu, but %llu messages went through",
		      (unsigned long long)st.sent, (unsigned long long)st.received,
		      (unsigned long long)n);
	ck_assert_uint_eq(st.len, 0);
	ck_assert_uint_eq(st.closed, 1);
	ck_assert_uint_eq(fab_chan_len(ch), 0);
	ck_assert_uint_eq(fab_chan_cap(ch), cap);
	printf("spsc cap %u msg_size %u mode %d: %llu msgs in %.2f s, futex waits %llu wakes %llu\n",
	       cap, msg_size, mode, (unsigned long long)n, (ft_now_ns() - t0) / 1e9,
	       (unsigned long long)st.futex_waits, (unsigned long long)st.futex_wakes);
	fab_chan_release(ch);
	mt_destroy(c.fabric, &fab);
}

START_TEST(spsc_1m)
{
	/* The headline run: >= 1,000,000 messages (kept under ASan too). */
	run("spsc1m", 1024, 64, 1000000, MODE_COPY);
}
END_TEST

static const uint32_t sizes[] = {8, 64, 1000};
static const uint32_t caps[] = {0, 1, 7, 1024};

START_TEST(spsc_matrix)
{
	/* _i indexes sizes x caps. */
	uint32_t ms = sizes[_i / 4], cap = caps[_i % 4];
	char tag[24];
	uint64_t n = cap == 0 ? MT_SCALE(50000, 20000) : MT_SCALE(300000, 100000);
	snprintf(tag, sizeof tag, "spm%d", _i);
	run(tag, cap, ms, n, MODE_COPY);
}
END_TEST

START_TEST(spsc_zero_copy)
{
	run("spzc", 7, 1000, MT_SCALE(200000, 50000), MODE_ZC);
	run("spzc1", 1, 64, MT_SCALE(100000, 30000), MODE_ZC);
}
END_TEST

START_TEST(spsc_batch)
{
	run("spb", 64, 64, MT_SCALE(300000, 50000), MODE_BATCH);
	run("spb0", 0, 64, MT_SCALE(50000, 10000), MODE_BATCH);
}
END_TEST

/* Positions across the 31-bit mark of the commit words, 2^32 and 2^64:
 * with capacity 7 (8 slots) and 1024 the wrap falls mid-ring. */
static const uint64_t starts[] = {(1ULL << 31) - 100000, (1ULL << 32) - 100001,
				  UINT64_MAX - 100002};

START_TEST(spsc_wrap)
{
	char tag[24];
	snprintf(tag, sizeof tag, "spw%d", _i);
	mt_start_pos(starts[_i / 2]);
	run(tag, _i % 2 ? 1024 : 7, 64, MT_SCALE(200000, 200000), MODE_COPY);
	mt_start_pos(0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mp_spsc");
	TCase *tc = mt_tcase("spsc", 60);
	mt_init();
	tcase_add_test(tc, spsc_1m);
	tcase_add_loop_test(tc, spsc_matrix, 0, 12);
	tcase_add_test(tc, spsc_zero_copy);
	tcase_add_test(tc, spsc_batch);
	tcase_add_loop_test(tc, spsc_wrap, 0, 6);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
