/*
 * drivers.c - the two measurement loops that the kernel baselines (pipe,
 * socket, POSIX mq, mutex+condvar queue) and fab's ping-pong share, written
 * once so that every mechanism is timed and checked the same way.  A
 * mechanism supplies only send and recv (struct xport).
 *
 * Ping-pong: the pinger sends record i on direction 0 and waits for it back on
 * direction 1; each round trip is timed on the pinger's clock.  In sleeping
 * mode each side first busy-waits delay_ns, so the other side is surely asleep
 * in its receive when the record arrives, and the figure is the sum of the two
 * one-way latencies (sender's stamp taken just before sending, to the
 * receiver's clock when its receive returned), which leaves the delays out.
 *
 * Stream: producers send tagged, sequence-numbered records until the deadline;
 * the last producer to finish sends one end record per consumer (these
 * mechanisms have no close); consumers check every record (cons_check_rec).
 */
#include "bench.h"

#include <stdlib.h>

void *bench_buf_alloc(size_t len)
{
	size_t sz = (len + 63) / 64 * 64;
	void *p = aligned_alloc(64, sz ? sz : 64);

	if (p)
		memset(p, 0, sz ? sz : 64); /* pre-fault */
	return p;
}

int drive_pp(struct run *r, const struct xport *x, enum bench_role role, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	int sleeping = r->mode == MODE_SLEEP;
	struct pp_rec m, in;
	int64_t t0, t1, lat, deadline;
	uint64_t i;
	ssize_t n;

	memset(&m, 0, sizeof m);
	memset(&in, 0, sizeof in);
	if (role == ROLE_PING) {
		struct hist *h = calloc(1, sizeof *h);

		if (!h)
			return child_fail(r, slot, "out of memory");
		barrier_wait(r);
		deadline = r->sh->deadline;
		for (i = 0;; i++) {
			if (sleeping)
				busy_delay(r->delay_ns);
			t0 = now_ns();
			m.seq = i;
			m.t_send = t0;
			if (x->send(r, slot, 0, &m, sizeof m) < 0)
				return 1;
			n = x->recv(r, slot, 1, &in, sizeof in);
			if (n < 0)
				return 1;
			t1 = now_ns();
			if (n != (ssize_t)sizeof in || in.seq != i)
				return child_fail(r, slot,
						  "round trip %llu: got record %llu of %zd bytes",
						  (unsigned long long)i,
						  (unsigned long long)in.seq, n);
			lat = sleeping ? in.peer_lat + (t1 - in.t_send) : t1 - t0;
			if ((int64_t)i >= r->warmup_rt)
				hist_add(h, lat > 0 ? (uint64_t)lat : 0);
			if (t1 >= deadline && (int64_t)i >= r->warmup_rt)
				break;
		}
		m.seq = BENCH_END;
		if (x->send(r, slot, 0, &m, sizeof m) < 0)
			return 1;
		o->count = i + 1;
		o->p50_ns = hist_pct(h, 0.50);
		o->p99_ns = hist_pct(h, 0.99);
		o->samples = h->n;
		free(h);
		return 0;
	}

	barrier_wait(r);
	for (i = 0;; i++) {
		n = x->recv(r, slot, 0, &in, sizeof in);
		if (n < 0)
			return 1;
		/* The answerer reads the clock only in sleeping mode, where the
		 * figure is built from one-way latencies: elsewhere two clock
		 * reads (~33 ns each here) would sit on the measured path, which
		 * the floors' answerers (cacheline, two-line) do not pay. */
		t1 = sleeping ? now_ns() : 0;
		if (n == (ssize_t)sizeof in && in.seq == BENCH_END)
			break;
		if (n != (ssize_t)sizeof in || in.seq != i)
			return child_fail(r, slot, "expected record %llu, got %llu of %zd bytes",
					  (unsigned long long)i, (unsigned long long)in.seq, n);
		m.seq = i;
		m.peer_lat = sleeping ? t1 - in.t_send : 0;
		if (sleeping)
			busy_delay(r->delay_ns);
		m.t_send = sleeping ? now_ns() : 0;
		if (x->send(r, slot, 1, &m, sizeof m) < 0)
			return 1;
	}
	o->count = i;
	return 0;
}

int drive_stream(struct run *r, const struct xport *x, enum bench_role role,
		 unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	unsigned char *buf = bench_buf_alloc(r->msg);
	int64_t deadline;
	uint64_t seq;
	unsigned i;
	ssize_t n;

	if (!buf)
		return child_fail(r, slot, "out of memory");
	if (role == ROLE_PROD) {
		barrier_wait(r);
		deadline = r->sh->deadline;
		o->t_start = now_ns();
		for (seq = 0;; seq++) {
			if ((seq & 63) == 0 && now_ns() >= deadline)
				break;
			rec_stamp(buf, r->msg, rec_tag(slot, seq));
			if (x->send(r, slot, 0, buf, r->msg) < 0)
				return 1;
		}
		o->count = seq;
		/* The last producer out ends the stream: everything the others
		 * sent is already queued ahead of these records. */
		if (atomic_fetch_add(&r->sh->done, 1) + 1 == r->nprod) {
			for (i = 0; i < r->ncons; i++) {
				rec_stamp(buf, r->msg, BENCH_END);
				if (x->send(r, slot, 0, buf, r->msg) < 0)
					return 1;
			}
		}
		free(buf);
		return 0;
	}

	struct cons_check c;
	char why[BENCH_ERRLEN];
	uint64_t tag;

	memset(&c, 0, sizeof c);
	c.nprod = r->nprod;
	c.strict = r->nprod == 1 && r->ncons == 1;
	barrier_wait(r);
	for (;;) {
		n = x->recv(r, slot, 0, buf, r->msg);
		if (n < 0)
			return 1;
		if (n != (ssize_t)r->msg)
			return child_fail(r, slot, "short record: %zd of %zu bytes", n, r->msg);
		memcpy(&tag, buf, sizeof tag);
		if (tag == BENCH_END)
			break;
		if (cons_check_rec(&c, buf, r->msg, why, sizeof why) < 0)
			return child_fail(r, slot, "%s", why);
	}
	o->t_end = now_ns();
	cons_check_out(&c, o);
	free(buf);
	return 0;
}
