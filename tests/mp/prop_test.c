/*
 * prop_test.c - property tests in the spirit of Go's testing/quick.
 *
 * A seeded PRNG (seed printed; FAB_SEED=<n> replays a run, FAB_PROP_ITERS=<n>
 * changes the iteration counts) draws channels and schedules:
 *
 * model (one process): random capacity 0..64 (0 included), msg_size 0..300,
 * kind, and a random sequence of try_send / send / reserve+commit /
 * send_batch / try_recv / recv / discard / acquire+release / recv_batch /
 * close against a model queue.  After every step: fab_chan_len equals the
 * model's length; try_send fails with FAB_EAGAIN exactly when the channel
 * holds `capacity` messages (and is otherwise accepted); a blocking send on a
 * full channel times out (it blocks); receives return the model's head
 * byte-for-byte; a too-small buffer gives FAB_EMSGSIZE and leaves the
 * message queued; an oversized message gives FAB_EMSGSIZE; after close,
 * sends give FAB_ECLOSED and receives drain then give FAB_ECLOSED.
 *
 * processes (two or three): 1->1 (spsc or mpmc), 2->1, 1->2 with random
 * capacities and sizes; each child follows its own random schedule of
 * try_/blocking/zero-copy/batch calls.  No producer's messages are reordered
 * (per consumer) or altered, and each is received exactly once.
 *
 * Child exit codes: 0 ok; 10 open; 11 call failed; 12 reordered; 13 altered;
 * 15 unexpected result; 18 stall (a 30 s deadline passed).
 */
#include "mp_util.h"

static int iters(int normal, int asan)
{
	const char *e = getenv("FAB_PROP_ITERS");
	if (e && *e)
		return atoi(e);
	return MT_SCALE(normal, asan);
}

/* ---------------------------------------------------------------- model */

#define MAXCAP 64
#define MAXMS 300

struct model {
	uint32_t cap, ms;
	unsigned head, n;
	size_t len[MAXCAP + 1];
	unsigned char data[MAXCAP + 1][MAXMS + 1];
};

static void m_push(struct model *m, const void *p, size_t len)
{
	unsigned i = (m->head + m->n) % (MAXCAP + 1);
	m->len[i] = len;
	memcpy(m->data[i], p, len);
	m->n++;
}

static void m_pop(struct model *m)
{
	m->head = (m->head + 1) % (MAXCAP + 1);
	m->n--;
}

/* Check a received message against the model's head and pop it. */
#define EXPECT_HEAD(m, buf, got)                                                 \
	do {                                                                     \
		MT_CHECK((m)->n > 0, "%s: received from an empty channel", where); \
		MT_CHECK((size_t)(got) == (m)->len[(m)->head],              \
			      "%s: length %zd, want %zu", where, (ssize_t)(got), \
			      (m)->len[(m)->head]);                              \
		MT_CHECK(memcmp((buf), (m)->data[(m)->head], (size_t)(got)) == 0, \
			      "%s: bytes differ", where);                        \
		m_pop(m);                                                        \
	} while (0)

static size_t rnd_len(mt_rng *r, uint32_t ms)
{
	switch (mt_below(r, 4)) {
	case 0:
		return ms;
	case 1:
		return 0;
	default:
		return (size_t)mt_below(r, ms + 1);
	}
}

static void rnd_bytes(mt_rng *r, unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)mt_next(r);
}

static void model_iteration(fab_fabric *fab, uint64_t seed, int iter)
{
	mt_rng r = {seed};
	static struct model M;
	struct model *m = &M;
	char name[32], where[96];
	fab_chan_opts o;
	fab_chan *ch = NULL;
	unsigned char buf[MAXMS + 16], out[MAXMS + 16];
	int closed = 0, rc;
	ssize_t n;

	memset(m, 0, sizeof *m);
	m->cap = (uint32_t)mt_below(&r, MAXCAP + 1);
	if (mt_below(&r, 8) == 0)
		m->cap = 0;
	m->ms = mt_below(&r, 6) == 0 ? 0 : (uint32_t)mt_below(&r, MAXMS + 1);
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.capacity = m->cap;
	o.msg_size = m->ms;
	o.kind = mt_below(&r, 2) ? FAB_SPSC : FAB_MPMC;
	snprintf(name, sizeof name, "m%d", iter);
	rc = fab_chan_create(fab, name, &o, &ch);
	MT_CHECK(rc == 0, "iter %d (seed %llu): create cap %u ms %u: %s", iter,
		      (unsigned long long)seed, m->cap, m->ms, fab_strerror(rc));
	MT_CHECK(fab_chan_cap(ch) == m->cap, "iter %d: fab_chan_cap %zu, want %u", iter,
		 fab_chan_cap(ch), m->cap);

	unsigned steps = 50 + (unsigned)mt_below(&r, 1500);
	for (unsigned step = 0; step < steps; step++) {
		int full = m->n == m->cap, empty = m->n == 0;
		unsigned op = (unsigned)mt_below(&r, 100);
		size_t len = rnd_len(&r, m->ms);
		snprintf(where, sizeof where,
			 "iter %d seed %llu step %u op %u (cap %u ms %u kind %u len %u%s)", iter,
			 (unsigned long long)seed, step, op, m->cap, m->ms, o.kind, m->n,
			 closed ? " closed" : "");
		rnd_bytes(&r, buf, len);

		if (op < 25) { /* try_send */
			rc = fab_try_send(ch, buf, len);
			if (closed)
				MT_CHECK(rc == FAB_ECLOSED, "%s: try_send %d", where, rc);
			else if (full)
				MT_CHECK(rc == FAB_EAGAIN, "%s: try_send on a full channel: %d",
					      where, rc);
			else {
				MT_CHECK(rc == 0, "%s: try_send with room: %d", where, rc);
				m_push(m, buf, len);
			}
		} else if (op < 30) { /* oversized */
			size_t big = (size_t)m->ms + 1 + (size_t)mt_below(&r, 8);
			unsigned char *b = calloc(1, big);
			/* The size is checked before anything else: a blocking send
			 * of an oversized message fails at once, even when full (the
			 * deadline only turns a wrong wait into a clear failure). */
			fab_ctx *t = NULL;
			MT_CHECK(fab_ctx_with_timeout(NULL, 5 * MT_SEC, &t) == 0, "%s: with_timeout", where);
			rc = mt_below(&r, 2) ? fab_try_send(ch, b, big) : fab_send(ch, b, big, t);
			fab_ctx_release(t);
			free(b);
			if (!closed)
				MT_CHECK(rc == FAB_EMSGSIZE, "%s: oversized send %d", where, rc);
			else
				MT_CHECK(rc == FAB_EMSGSIZE || rc == FAB_ECLOSED,
					      "%s: oversized send on closed %d", where, rc);
		} else if (op < 37) { /* blocking send */
			if (full || closed) {
				if (mt_below(&r, 8) != 0)
					continue; /* timeouts are slow: only sometimes */
				fab_ctx *t = NULL;
				MT_CHECK(fab_ctx_with_timeout(NULL, 2 * MT_MS, &t) == 0, "%s: with_timeout", where);
				rc = fab_send(ch, buf, len, t);
				fab_ctx_release(t);
				MT_CHECK(rc == (closed ? FAB_ECLOSED : FAB_ETIMEDOUT),
					      "%s: send on a full channel: %d", where, rc);
			} else {
				rc = fab_send(ch, buf, len, NULL);
				MT_CHECK(rc == 0, "%s: send with room: %d", where, rc);
				m_push(m, buf, len);
			}
		} else if (op < 41) { /* zero-copy send */
			if (full || closed)
				continue;
			void *slot = NULL;
			rc = fab_send_reserve(ch, len, &slot, NULL);
			MT_CHECK(rc == 0 && (slot != NULL || len == 0), "%s: reserve %d", where, rc);
			if (len)
				memcpy(slot, buf, len);
			rc = fab_send_commit(ch, len);
			MT_CHECK(rc == 0, "%s: commit %d", where, rc);
			m_push(m, buf, len);
		} else if (op < 45) { /* send_batch */
			if (full || closed)
				continue;
			enum { K = 6 };
			fab_iov v[K];
			static unsigned char bb[K][MAXMS + 1];
			unsigned k = 1 + (unsigned)mt_below(&r, K);
			for (unsigned i = 0; i < k; i++) {
				v[i].len = rnd_len(&r, m->ms);
				rnd_bytes(&r, bb[i], v[i].len);
				v[i].base = bb[i];
			}
			rc = fab_send_batch(ch, v, k, NULL);
			unsigned fit = m->cap - m->n < k ? m->cap - m->n : k;
			MT_CHECK(rc == (int)fit, "%s: send_batch of %u with room %u: %d", where, k,
				      m->cap - m->n, rc);
			for (int i = 0; i < rc; i++)
				m_push(m, bb[i], v[i].len);
		} else if (op < 65) { /* try_recv, sometimes into a small buffer */
			size_t cap = m->ms + 8;
			if (!empty && mt_below(&r, 5) == 0 && m->len[m->head] > 0)
				cap = (size_t)mt_below(&r, m->len[m->head]);
			n = fab_try_recv(ch, out, cap);
			if (empty)
				MT_CHECK(n == (closed ? FAB_ECLOSED : FAB_EAGAIN),
					      "%s: try_recv on empty: %zd", where, n);
			else if (cap < m->len[m->head]) {
				MT_CHECK(n == FAB_EMSGSIZE, "%s: small buffer: %zd", where, n);
				MT_CHECK(fab_chan_len(ch) == m->n, "%s: EMSGSIZE took the message", where);
			} else
				EXPECT_HEAD(m, out, n);
		} else if (op < 70) { /* receive and discard */
			n = mt_below(&r, 2) || empty ? fab_try_recv(ch, NULL, 0)
						     : fab_recv(ch, NULL, 0, NULL);
			if (empty)
				MT_CHECK(n == (closed ? FAB_ECLOSED : FAB_EAGAIN),
					      "%s: discard on empty: %zd", where, n);
			else {
				MT_CHECK(n == (ssize_t)m->len[m->head], "%s: discard returned %zd",
					      where, n);
				m_pop(m);
			}
		} else if (op < 80) { /* blocking recv */
			if (empty && !closed) {
				if (mt_below(&r, 8) != 0)
					continue;
				fab_ctx *t = NULL;
				MT_CHECK(fab_ctx_with_timeout(NULL, 2 * MT_MS, &t) == 0, "%s: with_timeout", where);
				n = fab_recv(ch, out, sizeof out, t);
				fab_ctx_release(t);
				MT_CHECK(n == FAB_ETIMEDOUT, "%s: recv on empty: %zd", where, n);
			} else {
				n = fab_recv(ch, out, m->ms, NULL);
				if (empty)
					MT_CHECK(n == FAB_ECLOSED, "%s: recv drained: %zd", where, n);
				else
					EXPECT_HEAD(m, out, n);
			}
		} else if (op < 85) { /* acquire / release */
			if (empty)
				continue;
			const void *p = NULL;
			size_t l = 0;
			rc = fab_recv_acquire(ch, &p, &l, NULL);
			MT_CHECK(rc == 0, "%s: acquire %d", where, rc);
			EXPECT_HEAD(m, p, l);
			MT_CHECK(fab_recv_release(ch) == 0, "%s: recv_release", where);
		} else if (op < 90) { /* recv_batch */
			if (empty)
				continue;
			enum { K = 6 };
			fab_iov v[K];
			static unsigned char bb[K][MAXMS + 1];
			unsigned k = 1 + (unsigned)mt_below(&r, K);
			for (unsigned i = 0; i < k; i++) {
				v[i].base = bb[i];
				v[i].len = m->ms;
			}
			rc = fab_recv_batch(ch, v, k, NULL);
			MT_CHECK(rc >= 1 && (unsigned)rc <= k && (unsigned)rc <= m->n,
				      "%s: recv_batch of %u with %u queued: %d", where, k, m->n, rc);
			for (int i = 0; i < rc; i++)
				EXPECT_HEAD(m, bb[i], v[i].len);
		} else if (op < 91 && step > steps / 2 && !closed) {
			MT_CHECK(fab_chan_close(ch) == 0, "%s: close", where);
			MT_CHECK(fab_chan_close(ch) == FAB_ECLOSED, "%s: second close", where);
			closed = 1;
		} else {
			/* inspect */
			fab_stats st = mt_stats(ch);
			MT_CHECK(st.len == m->n && st.capacity == m->cap && st.closed == (uint32_t)closed,
				      "%s: stats len %llu cap %u closed %u", where,
				      (unsigned long long)st.len, st.capacity, st.closed);
		}
		MT_CHECK(fab_chan_len(ch) == m->n, "%s: fab_chan_len %zu, model %u", where,
			      fab_chan_len(ch), m->n);
	}
	fab_chan_release(ch);
	rc = fab_chan_destroy(fab, name);
	MT_CHECK(rc == 0, "destroy %s: %s", name, fab_strerror(rc));
}

START_TEST(prop_model_single_process)
{
	const char *fabric = mt_fabric_name("propm");
	fab_fabric *fab = NULL;
	uint64_t seed = mt_seed("prop_model_single_process");
	int n = iters(1500, 500);
	ck_assert_int_eq(fab_fabric_open(fabric, FAB_CREATE, &fab), 0);
	for (int i = 0; i < n; i++)
		model_iteration(fab, mt_mix64(seed + (uint64_t)i), i);
	mt_destroy(fabric, &fab);
}
END_TEST

/* ------------------------------------------------------ across processes */

struct pcfg {
	const char *fabric;
	char chan[16];
	uint32_t ms;
	unsigned np, nc;
	uint32_t per_prod;
	uint8_t *seen; /* [np][per_prod], shared */
	uint64_t seed;
	int id;
};

/* Send seq..seq+k-1 by one randomly chosen method; returns how many were
 * sent (>= 0) or a negative exit code for the child. */
static int p_send(struct pcfg *c, fab_chan *ch, mt_rng *r, uint32_t seq, uint32_t left,
		  fab_ctx *dl, int *fails)
{
	static unsigned char b[8][MAXMS + 16];
	uint32_t p = (uint32_t)c->id;
	size_t len = mt_msg_len(p, seq, c->ms);
	unsigned op = (unsigned)mt_below(r, 10);
	int rc;
	/* Progress guarantee: after a run of EAGAINs use a blocking call (a
	 * rendezvous needs one blocking side). */
	if (*fails > 3 && op < 4)
		op = 4;
	if (op < 4) {
		mt_fill(b[0], p, seq, len);
		rc = fab_try_send(ch, b[0], len);
		if (rc == FAB_EAGAIN) {
			(*fails)++;
			if (mt_below(r, 2))
				sched_yield();
			return 0;
		}
		*fails = 0;
		return rc == 0 ? 1 : -11;
	}
	*fails = 0;
	if (op < 7) {
		mt_fill(b[0], p, seq, len);
		rc = fab_send(ch, b[0], len, dl);
		return rc == 0 ? 1 : rc == FAB_ETIMEDOUT ? -18 : -11;
	}
	if (op < 8) {
		void *slot = NULL;
		rc = fab_send_reserve(ch, len, &slot, dl);
		if (rc != 0)
			return rc == FAB_ETIMEDOUT ? -18 : -11;
		mt_fill(slot, p, seq, len);
		return fab_send_commit(ch, len) == 0 ? 1 : -11;
	}
	fab_iov v[8];
	unsigned k = 1 + (unsigned)mt_below(r, 8);
	if (k > left)
		k = left;
	for (unsigned i = 0; i < k; i++) {
		v[i].len = mt_msg_len(p, seq + i, c->ms);
		v[i].base = b[i];
		mt_fill(b[i], p, seq + i, v[i].len);
	}
	rc = fab_send_batch(ch, v, k, dl);
	if (rc < 0)
		return rc == FAB_ETIMEDOUT ? -18 : -11;
	if (rc == 0 || (unsigned)rc > k)
		return -15;
	return rc;
}

static int p_producer(void *arg)
{
	struct pcfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	mt_rng r = {mt_mix64(c->seed ^ (0x100u + (unsigned)c->id))};
	int fails = 0;
	int rc = mt_open(c->fabric, c->chan, FAB_SEND, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "producer open: %s", fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 30 * MT_SEC, &dl);
	for (uint32_t seq = 0; seq < c->per_prod;) {
		int k = p_send(c, ch, &r, seq, c->per_prod - seq, dl, &fails);
		if (k < 0)
			MT_CHILD_FAIL(-k, "producer %d at seq %u (seed %llu)", c->id, seq,
				      (unsigned long long)c->seed);
		seq += (uint32_t)k;
	}
	rc = fab_chan_close(ch);
	if (rc != 0)
		MT_CHILD_FAIL(11, "producer close: %s", fab_strerror(rc));
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

static int p_consumer(void *arg)
{
	struct pcfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	mt_rng r = {mt_mix64(c->seed ^ (0x200u + (unsigned)c->id))};
	int64_t last[2] = {-1, -1};
	unsigned char bufs[8][MAXMS + 16];
	fab_iov v[8];
	int fails = 0;
	int rc = mt_open(c->fabric, c->chan, FAB_RECV, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "consumer open: %s", fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 30 * MT_SEC, &dl);
	for (;;) {
		unsigned op = (unsigned)mt_below(&r, 10);
		int k = 0;
		if (fails > 3 && op < 4)
			op = 4;
		v[0].base = bufs[0];
		if (op < 3) {
			ssize_t n = fab_try_recv(ch, bufs[0], c->ms);
			if (n == FAB_EAGAIN) {
				fails++;
				if (mt_below(&r, 2))
					sched_yield();
				continue;
			}
			k = n < 0 ? (int)n : 1;
			v[0].len = n < 0 ? 0 : (size_t)n;
		} else if (op < 4) {
			/* Too small for any message (they are >= 8 bytes). */
			ssize_t n = fab_try_recv(ch, bufs[0], MT_HDR - 1);
			if (n == FAB_ECLOSED)
				break;
			if (n != FAB_EMSGSIZE && n != FAB_EAGAIN)
				MT_CHILD_FAIL(15, "try_recv into 7 bytes: %zd", n);
			fails++;
			continue;
		} else if (op < 7) {
			ssize_t n = fab_recv(ch, bufs[0], c->ms, dl);
			k = n < 0 ? (int)n : 1;
			v[0].len = n < 0 ? 0 : (size_t)n;
		} else if (op < 8) {
			const void *p = NULL;
			size_t l = 0;
			rc = fab_recv_acquire(ch, &p, &l, dl);
			if (rc == 0) {
				if (l > c->ms)
					MT_CHILD_FAIL(15, "acquired %zu bytes > msg_size", l);
				memcpy(bufs[0], p, l);
				v[0].len = l;
				if (fab_recv_release(ch) != 0)
					MT_CHILD_FAIL(11, "recv_release");
				k = 1;
			} else
				k = rc;
		} else {
			unsigned nb = 1 + (unsigned)mt_below(&r, 8);
			for (unsigned i = 0; i < nb; i++) {
				v[i].base = bufs[i];
				v[i].len = c->ms;
			}
			k = fab_recv_batch(ch, v, nb, dl);
			if (k == 0 || k > (int)nb)
				MT_CHILD_FAIL(15, "recv_batch of %u returned %d", nb, k);
		}
		fails = 0;
		if (k == FAB_ECLOSED)
			break;
		if (k < 0)
			MT_CHILD_FAIL(k == FAB_ETIMEDOUT ? 18 : 11, "consumer %d op %u: %s (seed %llu)",
				      c->id, op, fab_strerror(k), (unsigned long long)c->seed);
		for (int i = 0; i < k; i++) {
			uint32_t p, s;
			if (mt_verify(v[i].base, v[i].len, c->ms, &p, &s) != 0 || p >= c->np ||
			    s >= c->per_prod)
				MT_CHILD_FAIL(13, "consumer %d: altered message (seed %llu)", c->id,
					      (unsigned long long)c->seed);
			if ((int64_t)s <= last[p])
				MT_CHILD_FAIL(12, "consumer %d: producer %u seq %u after %lld (seed %llu)",
					      c->id, p, s, (long long)last[p],
					      (unsigned long long)c->seed);
			last[p] = s;
			__atomic_fetch_add(&c->seen[(size_t)p * c->per_prod + s], 1, __ATOMIC_RELAXED);
		}
	}
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

START_TEST(prop_processes)
{
	const char *fabric = mt_fabric_name("propp");
	fab_fabric *fab = NULL;
	uint64_t seed = mt_seed("prop_processes");
	int n = iters(200, 80);
	enum { MAXPER = 3000 };
	uint8_t *seen = mt_shared(2 * MAXPER);
	ck_assert(seen);
	ck_assert_int_eq(fab_fabric_open(fabric, FAB_CREATE, &fab), 0);
	for (int it = 0; it < n; it++) {
		uint64_t s = mt_mix64(seed + 1000003u * (uint64_t)it);
		mt_rng r = {s};
		struct pcfg c;
		memset(&c, 0, sizeof c);
		c.fabric = fabric;
		snprintf(c.chan, sizeof c.chan, "p%d", it);
		c.seed = s;
		c.seen = seen;
		unsigned topo = (unsigned)mt_below(&r, 4);
		uint32_t kind = topo == 0 ? FAB_SPSC : FAB_MPMC;
		c.np = topo == 2 ? 2 : 1;
		c.nc = topo == 3 ? 2 : 1;
		uint32_t cap = (uint32_t)mt_below(&r, MAXCAP + 1);
		if (mt_below(&r, 6) == 0)
			cap = 0;
		c.ms = MT_HDR + (uint32_t)mt_below(&r, MAXMS - MT_HDR + 1);
		c.per_prod = 100 + (uint32_t)mt_below(&r, cap == 0 ? 500 : MAXPER - 100);
		memset(seen, 0, 2 * MAXPER);
		fab_chan_opts o;
		fab_chan *ch = NULL;
		memset(&o, 0, sizeof o);
		o.size = sizeof o;
		o.capacity = cap;
		o.msg_size = c.ms;
		o.kind = kind;
		o.producers = c.np;
		int rc = fab_chan_create(fab, c.chan, &o, &ch);
		MT_CHECK(rc == 0, "create: %s", fab_strerror(rc));
		fab_chan_release(ch);

		pid_t kids[4];
		unsigned nk = 0;
		for (unsigned i = 0; i < c.nc; i++) {
			c.id = (int)i;
			kids[nk++] = mt_spawn(p_consumer, &c);
		}
		for (unsigned i = 0; i < c.np; i++) {
			c.id = (int)i;
			kids[nk++] = mt_spawn(p_producer, &c);
		}
		int codes[4];
		int bad = mt_wait_all(kids, (int)nk, 40 * MT_SEC, codes);
		MT_CHECK(bad < 0,
			      "iteration %d (seed %llu: %u->%u kind %u cap %u ms %u n %u): "
			      "child %d (%s) exited %d (-2 = hung)",
			      it, (unsigned long long)s, c.np, c.nc, kind, cap, c.ms, c.per_prod, bad,
			      bad < (int)c.nc ? "consumer" : "producer", bad >= 0 ? codes[bad] : 0);
		for (unsigned p = 0; p < c.np; p++)
			for (uint32_t q = 0; q < c.per_prod; q++)
				MT_CHECK(seen[p * c.per_prod + q] == 1,
					      "iteration %d (seed %llu): producer %u seq %u seen %u times",
					      it, (unsigned long long)s, p, q, seen[p * c.per_prod + q]);
		rc = fab_chan_destroy(fab, c.chan);
		MT_CHECK(rc == 0, "destroy: %s", fab_strerror(rc));
	}
	mt_kill_all();
	munmap(seen, 2 * MAXPER);
	mt_destroy(fabric, &fab);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mp_prop");
	TCase *tc = mt_tcase("prop", 120);
	mt_init();
	tcase_add_test(tc, prop_model_single_process);
	tcase_add_test(tc, prop_processes);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
