/*
 * mech_fab.c - fab itself, measured through its public API only.
 *
 * Ping-pong: two SPSC channels (one each way) driven by drive_pp, waiting
 * by spinning on fab_try_send/fab_try_recv (MODE_SPIN) or by the library's
 * own fab_send/fab_recv with ctx NULL (MODE_DEFAULT, MODE_SLEEP).
 *
 * Streams: one channel (SPSC or MPMC) with a close quorum of nprod; the loops
 * are written out here rather than through struct xport, because at a few
 * nanoseconds a message an extra indirect call per message would be measured
 * as part of fab.  Producers close their handle at the end (Go's close; the
 * channel closes when all of them did) and consumers drain to FAB_ECLOSED.
 * The last consumer reads the channel's counters for the futex figure.
 *
 * At-least-once (r->delivery, the "alo" group): the same loops on an MPMC
 * channel created with FAB_AT_LEAST_ONCE and the default max_inflight of 1,
 * so each fab_recv first acks the message the previous one leased (the
 * implicit ack) and the final fab_recv, which returns FAB_ECLOSED, acks the
 * last message.  The last consumer's counters must then show every message
 * acked, none leased, none given back or redelivered (stream_result checks
 * them).  In a ping-pong each side acks its last lease explicitly with
 * fab_ack before it releases its handles, which would otherwise give the
 * message back for redelivery.
 *
 * The parent creates each run's channels with fresh names and releases its
 * handles before forking (an SPSC end may be held once); children open the
 * fabric themselves, since handles do not survive fork.
 */
#include "bench.h"
#include "spinpp.h"

#include <stdlib.h>
#include <unistd.h>

fab_fabric *bench_fab;
static unsigned g_serial;

/* The child's handle for each direction of a ping-pong. */
static fab_chan *g_ch[2];

static int create(struct run *r, unsigned i, const fab_chan_opts *o, char *why,
		  size_t whylen)
{
	fab_chan *ch = NULL;
	int rc;

	rc = fab_chan_create(bench_fab, r->chan[i], o, &ch);
	if (rc != 0) {
		snprintf(why, whylen, "fab_chan_create(%s): %s: %s", r->chan[i],
			 fab_errname(rc), fab_errmsg());
		return -1;
	}
	fab_chan_release(ch);
	return 0;
}

static void fab_teardown(struct run *r)
{
	unsigned i;
	int rc;

	for (i = 0; i < 2; i++) {
		if (!r->chan[i][0])
			continue;
		rc = fab_chan_destroy(bench_fab, r->chan[i]);
		if (rc != 0)
			fprintf(stderr, "fab-bench: fab_chan_destroy(%s): %s: %s\n",
				r->chan[i], fab_errname(rc), fab_errmsg());
		r->chan[i][0] = '\0';
	}
}

static int fab_setup(struct run *r, char *why, size_t whylen)
{
	fab_chan_opts o;
	unsigned serial = ++g_serial;

	r->chan[0][0] = r->chan[1][0] = '\0';
	if (!bench_fab) {
		snprintf(why, whylen, "the fabric could not be opened");
		return -1;
	}
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	if (r->shape == SHAPE_PP) {
		o.capacity = BENCH_PP_CAP;
		o.msg_size = BENCH_PP_MSG;
		o.kind = r->fab_kind ? r->fab_kind : FAB_SPSC;
		o.delivery = r->delivery;
		o.producers = 1;
		snprintf(r->chan[0], sizeof r->chan[0], "pp%u-ping", serial);
		snprintf(r->chan[1], sizeof r->chan[1], "pp%u-pong", serial);
		if (create(r, 0, &o, why, whylen) || create(r, 1, &o, why, whylen)) {
			fab_teardown(r);
			return -1;
		}
		return 0;
	}
	o.capacity = r->capacity;
	o.msg_size = (uint32_t)r->msg;
	o.kind = r->fab_kind;
	o.delivery = r->delivery;
	o.producers = r->nprod;
	snprintf(r->chan[0], sizeof r->chan[0], "st%u", serial);
	if (create(r, 0, &o, why, whylen)) {
		fab_teardown(r);
		return -1;
	}
	return 0;
}

static int fail_rc(struct run *r, unsigned slot, const char *call, long rc)
{
	child_fail(r, slot, "%s: %s: %s", call, fab_errname((int)rc), fab_errmsg());
	return -1;
}

static int fabx_send(struct run *r, unsigned slot, int dir, const void *m, size_t n)
{
	int rc;

	if (r->mode == MODE_SPIN) {
		while ((rc = fab_try_send(g_ch[dir], m, n)) == FAB_EAGAIN)
			cpu_relax();
		return rc == 0 ? 0 : fail_rc(r, slot, "fab_try_send", rc);
	}
	rc = fab_send(g_ch[dir], m, n, NULL);
	return rc == 0 ? 0 : fail_rc(r, slot, "fab_send", rc);
}

static ssize_t fabx_recv(struct run *r, unsigned slot, int dir, void *b, size_t n)
{
	ssize_t k;

	if (r->mode == MODE_SPIN) {
		while ((k = fab_try_recv(g_ch[dir], b, n)) == FAB_EAGAIN)
			cpu_relax();
		return k >= 0 ? k : fail_rc(r, slot, "fab_try_recv", k);
	}
	k = fab_recv(g_ch[dir], b, n, NULL);
	return k >= 0 ? k : fail_rc(r, slot, "fab_recv", k);
}

static const struct xport xp_fab = { fabx_send, fabx_recv };

static int open_chan(struct run *r, unsigned slot, fab_fabric *f, const char *name,
		     unsigned role, fab_chan **out)
{
	int rc = fab_chan_open(f, name, role, out);

	if (rc != 0)
		return child_fail(r, slot, "fab_chan_open(%s, %s): %s: %s", name,
				  role == FAB_SEND ? "FAB_SEND" : "FAB_RECV", fab_errname(rc),
				  fab_errmsg());
	return 0;
}

static void take_stats(struct run *r, unsigned slot, fab_chan *const *chs, unsigned n)
{
	struct child_out *o = &r->sh->out[slot];
	fab_stats st;
	unsigned i;

	for (i = 0; i < n; i++) {
		memset(&st, 0, sizeof st);
		st.size = sizeof st;
		if (fab_chan_stats(chs[i], &st) != 0)
			return;
		o->futex_waits += st.futex_waits;
		o->futex_wakes += st.futex_wakes;
		o->fab_sent += st.sent;
		o->fab_acked += st.acked;
		o->fab_leased += st.leased;
		o->fab_redelivered += st.redelivered;
		o->fab_nacked += st.nacked;
	}
	o->have_futex = 1;
}

/*
 * MODE_SPIN at-most-once: drive_pp's loop written out with fab_try_send and
 * fab_try_recv called directly, in the loop the floors use (spinpp.h: the
 * same clock reads, record and checks, and no indirect call through struct
 * xport).  Those calls and their wrappers cost ~5-10 ns a round trip here,
 * which the floors never pay and which is not fab's (docs/performance.md).
 */
struct spin_ctx {
	struct run *r;
	unsigned slot;
	fab_chan *out, *in;
	struct pp_rec m, got;
};

static inline __attribute__((always_inline)) int spin_send(struct spin_ctx *c)
{
	int rc;

	while ((rc = fab_try_send(c->out, &c->m, sizeof c->m)) == FAB_EAGAIN)
		cpu_relax();
	return rc ? fail_rc(c->r, c->slot, "fab_try_send", rc), 1 : 0;
}

static inline __attribute__((always_inline)) ssize_t spin_recv(struct spin_ctx *c)
{
	ssize_t n;

	while ((n = fab_try_recv(c->in, &c->got, sizeof c->got)) == FAB_EAGAIN)
		cpu_relax();
	return n;
}

static int spin_ping(void *ctx, uint64_t i)
{
	struct spin_ctx *c = ctx;
	ssize_t n;

	c->m.seq = i;
	if (spin_send(c))
		return 1;
	n = spin_recv(c);
	if (n != (ssize_t)sizeof c->got || c->got.seq != i) {
		if (n < 0)
			return fail_rc(c->r, c->slot, "fab_try_recv", n), 1;
		return child_fail(c->r, c->slot, "round trip %llu: got record %llu of %zd bytes",
				  (unsigned long long)i, (unsigned long long)c->got.seq, n);
	}
	return 0;
}

static int spin_pong(void *ctx, uint64_t i)
{
	struct spin_ctx *c = ctx;
	ssize_t n = spin_recv(c);

	if (n == (ssize_t)sizeof c->got && c->got.seq == BENCH_END)
		return 1;
	if (n != (ssize_t)sizeof c->got || c->got.seq != i) {
		if (n < 0)
			return -(fail_rc(c->r, c->slot, "fab_try_recv", n), 1);
		return -child_fail(c->r, c->slot, "expected record %llu, got %llu of %zd bytes",
				   (unsigned long long)i, (unsigned long long)c->got.seq, n);
	}
	c->m.seq = i;
	return spin_send(c) ? -1 : 0;
}

static int spin_end(void *ctx)
{
	struct spin_ctx *c = ctx;

	c->m.seq = BENCH_END;
	return spin_send(c);
}

static int fab_pp_spin(struct run *r, enum bench_role role, unsigned slot)
{
	struct spin_ctx c;

	memset(&c, 0, sizeof c);
	c.r = r;
	c.slot = slot;
	c.out = g_ch[role == ROLE_PING ? 0 : 1];
	c.in = g_ch[role == ROLE_PING ? 1 : 0];
	return spin_pp(r, role, slot, &c, spin_ping, spin_pong, spin_end);
}

static int fab_pp(struct run *r, fab_fabric *f, enum bench_role role, unsigned slot)
{
	int rc;

	if (role == ROLE_PING) {
		if (open_chan(r, slot, f, r->chan[0], FAB_SEND, &g_ch[0]) ||
		    open_chan(r, slot, f, r->chan[1], FAB_RECV, &g_ch[1]))
			return 1;
	} else {
		if (open_chan(r, slot, f, r->chan[0], FAB_RECV, &g_ch[0]) ||
		    open_chan(r, slot, f, r->chan[1], FAB_SEND, &g_ch[1]))
			return 1;
	}
	if (r->mode == MODE_SPIN && r->delivery != FAB_AT_LEAST_ONCE)
		rc = fab_pp_spin(r, role, slot);
	else
		rc = drive_pp(r, &xp_fab, role, slot);
	if (rc == 0 && r->delivery == FAB_AT_LEAST_ONCE) {
		/* The last message received (the pinger's last answer, the
		 * ponger's end record) is still leased: ack it. */
		int k = role == ROLE_PING ? 1 : 0;
		int a = fab_ack(g_ch[k]);

		if (a != 0)
			rc = (fail_rc(r, slot, "fab_ack", a), 1);
	}
	if (rc == 0 && role == ROLE_PING)
		take_stats(r, slot, g_ch, 2);
	fab_chan_release(g_ch[0]);
	fab_chan_release(g_ch[1]);
	return rc;
}

static int64_t cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* MODE_IDLE: the producer sends nothing and closes at the deadline; the
 * consumer must block until then and get FAB_ECLOSED, and reports the CPU
 * time its blocked fab_recv used (the spin before sleeping included). */
static int fab_idle(struct run *r, fab_chan *ch, enum bench_role role, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	struct timespec ts;
	int64_t t0, c0;
	char b[64];
	ssize_t n;
	int rc;

	barrier_wait(r);
	if (role == ROLE_PROD) {
		ts.tv_sec = r->sh->deadline / 1000000000;
		ts.tv_nsec = r->sh->deadline % 1000000000;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
			;
		rc = fab_chan_close(ch);
		return rc == 0 ? 0 : (fail_rc(r, slot, "fab_chan_close", rc), 1);
	}
	t0 = now_ns();
	c0 = cpu_now();
	n = fab_recv(ch, b, sizeof b, NULL);
	o->cpu_ns = cpu_now() - c0;
	o->wall_ns = now_ns() - t0;
	if (n != FAB_ECLOSED)
		return child_fail(r, slot, "fab_recv on an empty channel returned %zd (%s), not FAB_ECLOSED at its close",
				  n, n < 0 ? fab_errname((int)n) : "a message");
	take_stats(r, slot, &ch, 1);
	return 0;
}

/* MODE_BATCH: whole messages through fab_send_batch / fab_recv_batch, up to
 * BENCH_BATCH per call; every record is still stamped and checked. */
#define BENCH_BATCH 32

static int fab_produce_batch(struct run *r, fab_chan *ch, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	const size_t msg = r->msg;
	unsigned char *buf = bench_buf_alloc(msg * BENCH_BATCH);
	fab_iov v[BENCH_BATCH];
	int64_t deadline;
	uint64_t seq = 0;
	unsigned i;
	int rc;

	if (!buf)
		return child_fail(r, slot, "out of memory");
	barrier_wait(r);
	deadline = r->sh->deadline;
	o->t_start = now_ns();
	while (now_ns() < deadline) {
		for (i = 0; i < BENCH_BATCH; i++) {
			v[i].base = buf + i * msg;
			v[i].len = msg;
			rec_stamp(v[i].base, msg, rec_tag(slot, seq + i));
		}
		for (i = 0; i < BENCH_BATCH;) {
			rc = fab_send_batch(ch, v + i, BENCH_BATCH - i, NULL);
			if (rc <= 0) {
				fail_rc(r, slot, "fab_send_batch", rc);
				free(buf);
				return 1;
			}
			i += (unsigned)rc;
		}
		seq += BENCH_BATCH;
	}
	o->count = seq;
	free(buf);
	rc = fab_chan_close(ch);
	if (rc != 0) {
		fail_rc(r, slot, "fab_chan_close", rc);
		return 1;
	}
	return 0;
}

static int fab_produce(struct run *r, fab_chan *ch, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	unsigned char *buf = bench_buf_alloc(r->msg);
	const size_t msg = r->msg;
	int64_t deadline;
	uint64_t seq;
	int rc;

	if (!buf)
		return child_fail(r, slot, "out of memory");
	barrier_wait(r);
	deadline = r->sh->deadline;
	o->t_start = now_ns();
	for (seq = 0;; seq++) {
		if ((seq & 63) == 0 && now_ns() >= deadline)
			break;
		rec_stamp(buf, msg, rec_tag(slot, seq));
		rc = fab_send(ch, buf, msg, NULL);
		if (rc != 0) {
			fail_rc(r, slot, "fab_send", rc);
			free(buf);
			return 1;
		}
	}
	o->count = seq;
	free(buf);
	rc = fab_chan_close(ch);
	if (rc != 0) {
		fail_rc(r, slot, "fab_chan_close", rc);
		return 1;
	}
	return 0;
}

/* MODE_SEL1 / MODE_SEL4: the consumer receives through fab_select over the
 * stream's channel alone, or with three more channels that stay empty (made
 * by the consumer, removed at the end), so every pass tries four cases. */
static fab_case g_sel[4];
static unsigned g_nsel;
static fab_chan *g_idle[3];
static fab_fabric *g_sel_fab;
static char g_idle_name[3][FAB_NAME_MAX + 1];

static int sel_setup(struct run *r, unsigned slot, fab_chan *ch, void *buf, size_t msg)
{
	fab_chan_opts o;
	unsigned i;
	int rc;

	memset(g_sel, 0, sizeof g_sel);
	g_nsel = r->mode == MODE_SEL4 ? 4 : 1;
	rc = fab_fabric_open(bench_fabric, 0, &g_sel_fab);
	if (rc != 0)
		return fail_rc(r, slot, "fab_fabric_open", rc);
	for (i = 0; i + 1 < g_nsel; i++) {
		memset(&o, 0, sizeof o);
		o.size = sizeof o;
		o.kind = FAB_SPSC;
		o.capacity = r->capacity;
		o.msg_size = (uint32_t)msg;
		snprintf(g_idle_name[i], sizeof g_idle_name[i], "idle%d-%u", (int)getpid(), i);
		rc = fab_chan_create(g_sel_fab, g_idle_name[i], &o, &g_idle[i]);
		if (rc != 0)
			return fail_rc(r, slot, "fab_chan_create (idle)", rc);
	}
	for (i = 0; i < g_nsel; i++) {
		g_sel[i].ch = i == 0 ? ch : g_idle[i - 1];
		g_sel[i].op = FAB_OP_RECV;
		g_sel[i].recv_buf = buf;
		g_sel[i].recv_cap = msg;
	}
	return 0;
}

static ssize_t sel_recv(struct run *r)
{
	(void)r;
	int i = fab_select(g_sel, (int)g_nsel, NULL, 0);
	if (i < 0)
		return i;
	if (i != 0)
		return FAB_ECORRUPT; /* an idle channel proceeded: impossible */
	return g_sel[0].result;
}

static void sel_teardown(void)
{
	unsigned i;

	if (!g_sel_fab)
		return;
	for (i = 0; i + 1 < g_nsel; i++) {
		fab_chan_release(g_idle[i]);
		fab_chan_destroy(g_sel_fab, g_idle_name[i]);
	}
	fab_fabric_close(g_sel_fab);
	g_sel_fab = NULL;
}

static int fab_consume(struct run *r, fab_chan *ch, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	unsigned char *buf = bench_buf_alloc(r->msg);
	const size_t msg = r->msg;
	char why[BENCH_ERRLEN];
	struct cons_check c;
	ssize_t n;

	if (!buf)
		return child_fail(r, slot, "out of memory");
	memset(&c, 0, sizeof c);
	c.nprod = r->nprod;
	c.strict = r->nprod == 1 && r->ncons == 1;
	if (r->mode == MODE_SEL1 || r->mode == MODE_SEL4) {
		if (sel_setup(r, slot, ch, buf, msg)) {
			free(buf);
			return 1;
		}
	}
	barrier_wait(r);
	if (r->mode == MODE_BATCH) {
		unsigned char *bb = bench_buf_alloc(msg * BENCH_BATCH);
		fab_iov v[BENCH_BATCH];
		int k, j;

		if (!bb) {
			free(buf);
			return child_fail(r, slot, "out of memory");
		}
		for (;;) {
			for (j = 0; j < BENCH_BATCH; j++) {
				v[j].base = bb + (size_t)j * msg;
				v[j].len = msg;
			}
			k = fab_recv_batch(ch, v, BENCH_BATCH, NULL);
			if (k == FAB_ECLOSED)
				break;
			if (k <= 0) {
				fail_rc(r, slot, "fab_recv_batch", k);
				free(bb);
				free(buf);
				return 1;
			}
			for (j = 0; j < k; j++) {
				if (v[j].len != msg) {
					free(bb);
					free(buf);
					return child_fail(r, slot, "batch record of %zu bytes, sent %zu",
							  v[j].len, msg);
				}
				if (cons_check_rec(&c, v[j].base, msg, why, sizeof why) < 0) {
					free(bb);
					free(buf);
					return child_fail(r, slot, "%s", why);
				}
			}
		}
		free(bb);
	}
	for (; r->mode != MODE_BATCH;) {
		n = r->mode == MODE_SEL1 || r->mode == MODE_SEL4 ? sel_recv(r) : fab_recv(ch, buf, msg, NULL);
		if (n == FAB_ECLOSED)
			break;
		if (n < 0) {
			fail_rc(r, slot, "fab_recv", n);
			free(buf);
			return 1;
		}
		if ((size_t)n != msg) {
			free(buf);
			return child_fail(r, slot, "fab_recv returned %zd bytes, sent %zu", n,
					  msg);
		}
		if (cons_check_rec(&c, buf, msg, why, sizeof why) < 0) {
			free(buf);
			return child_fail(r, slot, "%s", why);
		}
	}
	o->t_end = now_ns();
	sel_teardown();
	cons_check_out(&c, o);
	free(buf);
	/* The last consumer out sees the final counters. */
	if (atomic_fetch_sub(&r->sh->cons_left, 1) == 1)
		take_stats(r, slot, &ch, 1);
	return 0;
}

static int fab_child(struct run *r, enum bench_role role, unsigned slot)
{
	fab_fabric *f = NULL;
	fab_chan *ch = NULL;
	int rc;

	/* The parent's handles are invalid here: open our own. */
	rc = fab_fabric_open(bench_fabric, 0, &f);
	if (rc != 0)
		return child_fail(r, slot, "fab_fabric_open(%s): %s: %s", bench_fabric,
				  fab_errname(rc), fab_errmsg());
	if (r->shape == SHAPE_PP) {
		rc = fab_pp(r, f, role, slot);
	} else if (open_chan(r, slot, f, r->chan[0],
			     role == ROLE_PROD ? FAB_SEND : FAB_RECV, &ch)) {
		rc = 1;
	} else {
		if (r->mode == MODE_IDLE)
			rc = fab_idle(r, ch, role, slot);
		else if (role == ROLE_PROD && r->mode == MODE_BATCH)
			rc = fab_produce_batch(r, ch, slot);
		else if (role == ROLE_PROD)
			rc = fab_produce(r, ch, slot);
		else
			rc = fab_consume(r, ch, slot);
		fab_chan_release(ch);
	}
	fab_fabric_close(f);
	return rc;
}

const struct mech mech_fab = { "fab", fab_setup, fab_child, fab_teardown };
