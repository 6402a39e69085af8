/*
 * select.c - Go's select across processes.
 *
 * One call: validate every case, shuffle the cases (Fisher-Yates, a fresh
 * permutation per call), then look at them in that order; the first ready
 * one proceeds.  The first ready case of a uniformly random permutation is
 * uniform among the ready cases, which is Go's rule; "random start, then
 * scan" is not (a case after a run of unready ones would be favoured).
 *
 * Blocking follows fab__wait in chan.c: a few passes with exponential
 * back-off, a few yields, then the sleep protocol on every distinct wait
 * word of the cases at once (receive cases sleep on the channel's
 * recv_futex, send cases on its send_futex) plus the context's words, with
 * one futex_waitv.  There is no polling loop: a sleeping select is woken by
 * the publication it waits for, a close, or its context.
 *
 * Unbuffered channels: a receive case of a blocking select announces a
 * waiting receiver (recv_ready), as fab_recv does, so a sender's try_send or
 * another select's send case can hand it a message; a send case proceeds
 * only if a receiver other than this select's own receive cases waits, so a
 * select offering a send and a receive on one unbuffered channel never
 * matches itself.
 */
#include "internal.h"

#include <sched.h>
#include <string.h>

#define FAB__SEL_SPIN 512 /* pauses, with back-off, before yielding */
#define FAB__SEL_YIELDS 8

/* initial-exec: a plain %fs-relative load, no __tls_get_addr call on every
 * select (libfab is small enough for the static TLS surplus, dlopen too). */
static _Thread_local uint64_t fab__sel_rng __attribute__((tls_model("initial-exec")));

/* xorshift64*: a per-thread stream seeded once from getrandom. */
static uint32_t fab__sel_rand(void)
{
	uint64_t x = fab__sel_rng;
	if (x == 0)
		x = fab__random64() | 1u;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	fab__sel_rng = x;
	return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Uniform in [0, n) (Lemire's multiply-shift; the bias for n <= 64 is
 * below 2^-26, far under what any test can see). */
static uint32_t fab__sel_below(uint32_t n)
{
	return (uint32_t)(((uint64_t)fab__sel_rand() * n) >> 32);
}

typedef struct fab__sel {
	fab_case *cases;
	int n;
	uint8_t order[FAB_SELECT_MAX];
	int nlive; /* cases with a channel, in order[0..nlive) */
	uint32_t self_ready[FAB_SELECT_MAX]; /* send case i: own waiting receivers on its channel */
	bool ready[FAB_SELECT_MAX]; /* receive case i is counted as a waiting receiver */
	bool announced;
	uint32_t behind_tag; /* some case is stuck behind another's slot */
	uint32_t behind[FAB_SELECT_MAX]; /* case i: the owner it is stuck behind, 0 none */
} fab__sel;

/* One pass over the cases in the shuffled order: the index of the case
 * that proceeded, or FAB_EAGAIN. */
static int fab__sel_pass(fab__sel *s)
{
	s->behind_tag = 0;
	for (int k = 0; k < s->nlive; k++) {
		int i = s->order[k];
		fab__block blk;
		int r = fab__case_try(&s->cases[i], s->announced ? s->self_ready[i] : 0, &blk);
		if (r == 0)
			return i;
		s->behind[i] = blk.behind_tag;
		if (blk.behind_tag)
			s->behind_tag = blk.behind_tag;
	}
	return FAB_EAGAIN;
}

static bool fab__sel_is_unbuffered_recv(const fab_case *c)
{
	return c->op == FAB_OP_RECV && c->ch->capacity == 0;
}

/* Announce (or withdraw) this select's waiting unbuffered receive cases,
 * and count, for each send case, how many of those counted share its
 * channel. */
static void fab__sel_announce(fab__sel *s, int on)
{
	for (int k = 0; k < s->nlive; k++) {
		int i = s->order[k];
		fab_case *c = &s->cases[i];
		if (on)
			s->ready[i] = fab__sel_is_unbuffered_recv(c) && fab__case_ready(c, true);
		else if (s->ready[i])
			fab__case_ready(c, false);
	}
	s->announced = on;
	if (!on)
		return;
	for (int k = 0; k < s->nlive; k++) {
		int i = s->order[k];
		fab_case *c = &s->cases[i];
		s->self_ready[i] = 0;
		if (c->op != FAB_OP_SEND || c->ch->capacity != 0)
			continue;
		for (int m = 0; m < s->nlive; m++) {
			int j = s->order[m];
			/* The same channel, also through another handle (its own
			 * mapping): compared by the segment's identity.  Until
			 * 28 Nov by address, so a select that received through
			 * one handle and sent through another counted its own
			 * receiver as a peer and offered it every message. */
			if (s->ready[j] && fab__seg_same(&s->cases[j].ch->seg, &c->ch->seg))
				s->self_ready[i]++;
		}
	}
}

/* A select that may not wait, with a receive case on an unbuffered channel
 * where a sender sleeps with nothing published (a select's send case):
 * announce the receive cases as waiting receivers, which wakes the senders,
 * and pass over the cases for up to 2 ms while the sender's select offers
 * its message.  The index of the case that proceeded, or FAB_EAGAIN (found
 * by a user trial: a select blocked on a send case never met fab_try_recv
 * or a non-blocking select). */
static int fab__sel_offered(fab__sel *s)
{
	bool any = false;
	for (int k = 0; k < s->nlive && !any; k++)
		any = fab__sel_is_unbuffered_recv(&s->cases[s->order[k]]) &&
		      fab__send_sleeper(s->cases[s->order[k]].ch);
	if (!any)
		return FAB_EAGAIN;
	fab__sel_announce(s, 1);
	int64_t until = fab__now_ns() + FAB__OFFER_NS;
	int r;
	for (uint32_t i = 0;; i++)
		if ((r = fab__sel_pass(s)) != FAB_EAGAIN || !fab__offer_wait(i, until))
			break;
	fab__sel_announce(s, 0);
	if (r == FAB_EAGAIN) {
		/* Nobody offered: a select killed asleep leaves its mark until
		 * recovery, and would cost every such call 2 ms (found by
		 * review); recover the dead marked handles, as
		 * fab__recv_unbuffered_now does. */
		for (int k = 0; k < s->nlive; k++) {
			fab_case *c = &s->cases[s->order[k]];
			if (fab__sel_is_unbuffered_recv(c) && fab__send_sleeper(c->ch))
				fab__send_sleeper_reap(c->ch);
		}
	}
	return r;
}

/* Does case c watch other handles' leases while the select sleeps (a
 * receive on an open at-least-once mpmc ring, as fab__wait's watch)? */
static bool fab__sel_watches(const fab_case *c)
{
	return c->op == FAB_OP_RECV && c->ch->delivery == FAB_AT_LEAST_ONCE &&
	       c->ch->ring == FAB_RING_MPMC;
}

/* select {}: nothing can proceed; wait for the context (forever without one). */
static int fab__sel_forever(fab_ctx *ctx)
{
	if (ctx)
		return fab_ctx_wait(ctx);
	_Atomic uint32_t never = 0;
	for (;;) {
		fab__waitset ws = {.n = 1, .deadline_ns = INT64_MAX};
		ws.word[0] = &never;
		ws.val[0] = 0;
		int r = fab__futex_waitv(&ws);
		if (r == FAB_ESYS)
			return r;
	}
}

int fab_select(fab_case *cases, int n, fab_ctx *ctx, unsigned flags)
{
	int rc;
	if (n < 0 || n > FAB_SELECT_MAX)
		return fab__err(FAB_EINVAL, "select of %d cases (0..%d)", n, FAB_SELECT_MAX);
	if (n > 0 && !cases)
		return fab__err(FAB_EINVAL, "NULL cases with n = %d", n);
	if (flags & ~FAB_NONBLOCK)
		return fab__err(FAB_EINVAL, "unknown select flags %#x", flags & ~FAB_NONBLOCK);
	if (ctx && (rc = fab__ctx_valid(ctx)))
		return rc;

	fab__sel s; /* self_ready is filled by fab__sel_announce before use */
	s.cases = cases;
	s.n = n;
	s.nlive = 0;
	s.announced = false;
	s.behind_tag = 0;
	/* Shuffle the live cases: a NULL channel is never ready (Go's nil
	 * channel) and takes no part. */
	for (int i = 0; i < n; i++) {
		if (!cases[i].ch)
			continue;
		if ((rc = fab__case_prepare(&cases[i])))
			return rc;
		uint32_t j = s.nlive ? fab__sel_below((uint32_t)s.nlive + 1) : 0;
		s.order[s.nlive] = s.order[j];
		s.order[j] = (uint8_t)i;
		s.nlive++;
	}
	/* Every argument is valid: this call is the next receive of each
	 * at-least-once handle it receives on (the implicit ack). */
	for (int k = 0; k < s.nlive; k++) {
		fab_case *c = &cases[s.order[k]];
		if (c->op == FAB_OP_RECV && (rc = fab__alo_begin_recv(c->ch)))
			return rc;
	}
	if (s.nlive == 0) {
		if (flags & FAB_NONBLOCK)
			return fab__err_none(FAB_EAGAIN);
		return fab__sel_forever(ctx);
	}

	int r = fab__sel_pass(&s);
	if (r != FAB_EAGAIN)
		return r;
	if ((flags & FAB_NONBLOCK) || (ctx && fab__ctx_done(ctx))) {
		/* Nothing proceeds and the select may not wait.  Go still pairs
		 * a receive case with a sender blocked on an unbuffered
		 * channel; one blocked in a select has published nothing, so
		 * announce our receive cases for a moment and let it offer
		 * (fab__sel_offered; the mirror of a non-blocking send case's
		 * offer). */
		if ((r = fab__sel_offered(&s)) != FAB_EAGAIN)
			return r;
		if (flags & FAB_NONBLOCK)
			return fab__err_none(FAB_EAGAIN);
		return fab__ctx_fail(fab__ctx_done(ctx));
	}

	fab__sel_announce(&s, 1);
	uint32_t backoff = 1;
	for (uint32_t i = 0; i < FAB__SEL_SPIN; i += backoff) {
		for (uint32_t k = 0; k < backoff; k++)
			cpu_relax();
		if (backoff < 64)
			backoff <<= 1;
		if ((r = fab__sel_pass(&s)) != FAB_EAGAIN)
			goto out;
	}
	for (int i = 0; i < FAB__SEL_YIELDS; i++) {
		sched_yield();
		if ((r = fab__sel_pass(&s)) != FAB_EAGAIN)
			goto out;
		if (ctx && (rc = fab__ctx_done(ctx))) {
			r = fab__ctx_fail(rc);
			goto out;
		}
	}

	/* Sleep on every distinct word.  The gauges count this select as a
	 * blocked sender or receiver of each channel it waits on, once: two
	 * handles of one channel map its header at two addresses, so a word
	 * is the same when the segment and the offset are (until 28 Nov such
	 * a select was counted, and marked, twice). */
	fab__waitset ws;
	_Atomic uint32_t *gauge[FAB_SELECT_MAX];
	fab_chan *gch[FAB_SELECT_MAX];  /* the handle each gauge's mark is on */
	uint64_t gmark[FAB_SELECT_MAX]; /* the mark we set, or 0 */
	int nw = 0;
	for (int k = 0; k < s.nlive; k++) {
		_Atomic uint32_t *waiters;
		fab_chan *ch = cases[s.order[k]].ch;
		_Atomic uint32_t *w = fab__case_word(&cases[s.order[k]], &waiters);
		uintptr_t off = (uintptr_t)w - (uintptr_t)ch->hdr;
		int dup = 0;
		for (int m = 0; m < nw && !dup; m++)
			dup = ws.word[m] == w ||
			      (gch[m]->seg.ino == ch->seg.ino && gch[m]->seg.dev == ch->seg.dev &&
			       (uintptr_t)ws.word[m] - (uintptr_t)gch[m]->hdr == off);
		if (dup)
			continue;
		ws.word[nw] = w;
		gauge[nw] = waiters;
		/* A gauge for fabctl, stats and /metrics, and the sleep mark on
		 * the case's handle, as fab__wait (chan.c). */
		fetch_add_relaxed(waiters, 1);
		gch[nw] = ch;
		gmark[nw] = cases[s.order[k]].op == FAB_OP_SEND ? FAB_ATT_SLEEP_SEND
								: FAB_ATT_SLEEP_RECV;
		/* A send case on an unbuffered channel has published nothing:
		 * the offer mark lets a non-blocking receiver find us
		 * (fab__send_sleeper in chan.c). */
		if (cases[s.order[k]].op == FAB_OP_SEND && ch->capacity == 0)
			gmark[nw] |= FAB_ATT_OFFER;
		if (!fab__sleep_mark(gch[nw], gmark[nw]))
			gmark[nw] = 0;
		nw++;
	}
	/* Liveness poll when behind another's slot (see fab__wait in chan.c):
	 * due 1 ms after it is first seen, then doubling to 100 ms, kept
	 * across wake-ups. */
	int64_t poll_ns = 1000000, next_poll = 0;
	/* The lease watch of fab__wait (chan.c), over the receive cases on
	 * open at-least-once mpmc rings: while other handles hold leases on
	 * one of them, look at the holders after 10 ms, then doubling to 1 s,
	 * and recover the channel of a dead one (its leases come back to the
	 * ring).  No such lease, no timer. */
	int64_t watch_ns = 10000000, next_watch = 0;
	bool watch = false;
	for (int k = 0; k < s.nlive; k++)
		watch |= fab__sel_watches(&cases[s.order[k]]);
	/* The wait record names the first case (fabctl shows the count). */
	fab_chan *first = s.nlive ? cases[s.order[0]].ch : NULL;
	uint64_t what = 0;
	for (int k = 0; k < s.nlive; k++) { /* an idle handle's figures are visible */
		fab_chan *ch = cases[s.order[k]].ch;
		fab__hist_flush(&ch->lat, &ch->hdr->latency);
	}
	if (first) {
		what = FAB_WAIT_MAKE(FAB_WAIT_SELECT,
				     cases[s.order[0]].op == FAB_OP_SEND ? FAB_WAIT_SEND : FAB_WAIT_RECV,
				     s.nlive, first->reg_idx);
		fab__wait_mark(first->fab, what);
	}
	for (;;) {
		/* Dekker, sleeper half, on every word; then the last look. */
		for (int m = 0; m < nw; m++)
			ws.val[m] = fab__sleep_announce(ws.word[m]);
		/* As fab__wait: our unbuffered receive cases still wait. */
		for (int k = 0; k < s.nlive; k++)
			if (fab__sel_is_unbuffered_recv(&cases[s.order[k]]))
				fab__wake_senders(cases[s.order[k]].ch);
		if ((r = fab__sel_pass(&s)) != FAB_EAGAIN)
			break;
		if (ctx && (rc = fab__ctx_done(ctx))) {
			r = fab__ctx_fail(rc);
			break;
		}
		ws.n = nw;
		ws.deadline_ns = INT64_MAX;
		fab__ctx_arm(ctx, &ws);
		if (s.behind_tag) {
			int64_t now = fab__now_ns();
			if (next_poll == 0)
				next_poll = now + poll_ns;
			if (now >= next_poll) {
				/* Every stuck case: one behind a live owner must not
				 * hide another behind a dead one. */
				for (int k = 0; k < s.nlive; k++) {
					fab_case *bc = &cases[s.order[k]];
					uint32_t t = s.behind[s.order[k]];
					if (t && !fab__tag_alive(bc->ch->fab, t))
						fab__case_recover(bc, t);
				}
				if (poll_ns < 100000000)
					poll_ns *= 2;
				next_poll = now + poll_ns;
				continue; /* look again at once */
			}
			if (next_poll < ws.deadline_ns)
				ws.deadline_ns = next_poll;
		} else {
			next_poll = 0;
		}
		if (watch) {
			int64_t now = fab__now_ns();
			bool due = next_watch && now >= next_watch, leases = false, recovered = false;
			for (int k = 0; k < s.nlive; k++) {
				fab_case *wc = &cases[s.order[k]];
				uint32_t dead = 0;
				if (!fab__sel_watches(wc) || !fab__mpmc_lessees(wc->ch, due, &dead))
					continue;
				leases = true;
				if (dead) {
					fab__chan_recover(wc->ch, wc->ch->fab, dead);
					recovered = true;
				}
			}
			if (leases && due) {
				if (watch_ns < 1000000000)
					watch_ns *= 2;
				next_watch = now + watch_ns;
			} else if (leases && !next_watch) {
				next_watch = now + watch_ns;
			} else if (!leases) {
				next_watch = 0;
				watch_ns = 10000000;
			}
			if (recovered)
				continue; /* look again at once */
			if (next_watch && next_watch < ws.deadline_ns)
				ws.deadline_ns = next_watch;
		}
		int wr = fab__futex_waitv(&ws);
		if (wr == FAB_ESYS) {
			r = wr;
			break;
		}
		/* Woken: look before re-arming (see fab__wait). */
		if ((r = fab__sel_pass(&s)) != FAB_EAGAIN)
			break;
	}
	for (int m = 0; m < nw; m++)
		if (!gmark[m] || fab__sleep_unmark(gch[m], gmark[m]))
			atomic_fetch_sub_explicit(gauge[m], 1, memory_order_relaxed);
	if (first)
		fab__wait_unmark(first->fab, what);
out:
	fab__sel_announce(&s, 0);
	return r;
}
