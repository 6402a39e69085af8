/*
 * spinpp.h - the one loop of every spinning ping-pong (fab-spin, the
 * cache-line and two-line floors, the bare rings), inline in each mechanism
 * so that no indirect call sits in the timed round trip: the step functions
 * are passed as constants and inlined with the loop.
 *
 * Paired mode (run.pair_cl, the round-trip cells other than the floor
 * itself): the same two processes alternate blocks of PP_BLOCK round trips
 * of the mechanism with blocks of the cache-line floor, and report both
 * (p50/p99 and ref_p50/ref_p99).  A block of ~1000 round trips lasts
 * 0.1-0.5 ms, far shorter than the vCPUs' placement episodes, so the ratio
 * of the two is taken in the same placement, which separate cells run up to
 * a second apart cannot promise (docs/performance.md).  The first PP_SKIP
 * round trips of each block are not timed: the lines of the mechanism that
 * just took over are still where the other one left them.
 */
#ifndef FAB_BENCH_SPINPP_H
#define FAB_BENCH_SPINPP_H

#include "bench.h"

#include <stdlib.h>

#define PP_BLOCK 1024u
#define PP_SKIP 16u

/* One round trip k of the cache-line floor: the pinger stores 2k+1, the
 * ponger answers 2k+2 (release stores, acquire loads: the floor publishes
 * nothing, but it orders like a channel that does). */
static inline __attribute__((always_inline)) void pp_cl_ping(_Atomic uint64_t *w, uint64_t k)
{
	atomic_store_explicit(w, 2 * k + 1, memory_order_release);
	while (atomic_load_explicit(w, memory_order_acquire) != 2 * k + 2)
		cpu_relax();
}

/* 0, or 1 when the pinger stored UINT64_MAX (the end of the floor's run). */
static inline __attribute__((always_inline)) int pp_cl_pong(_Atomic uint64_t *w, uint64_t k)
{
	uint64_t v;

	while ((v = atomic_load_explicit(w, memory_order_acquire)) != 2 * k + 1) {
		if (v == UINT64_MAX)
			return 1;
		cpu_relax();
	}
	atomic_store_explicit(w, 2 * k + 2, memory_order_release);
	return 0;
}

/*
 * Runs role's side of the ping-pong.  ping(ctx, i) makes round trip i and
 * checks the answer (0, or a child_fail result); pong(ctx, i) answers it
 * (0, 1 when the end record came instead, or a child_fail result negated);
 * end(ctx) tells the ponger to stop (0 or a child_fail result).  The
 * pinger's figures go to out[slot].
 */
static inline __attribute__((always_inline)) int
spin_pp(struct run *r, enum bench_role role, unsigned slot, void *ctx,
	int (*ping)(void *, uint64_t), int (*pong)(void *, uint64_t), int (*end)(void *))
{
	_Atomic uint64_t *w = &r->sh->cl_word;
	struct child_out *o = &r->sh->out[slot];
	const int paired = r->pair_cl;
	const uint64_t blk = paired ? PP_BLOCK : 64, skip = paired ? PP_SKIP : 0;
	struct hist *h, *hr = NULL;
	int64_t t0, t1 = 0, deadline;
	uint64_t i = 0, k = 0, j;
	int rc;

	if (role == ROLE_PONG) {
		barrier_wait(r);
		for (;;) {
			for (j = 0; j < blk; j++, i++)
				if ((rc = pong(ctx, i)))
					return rc > 0 ? 0 : 1;
			for (j = 0; paired && j < blk; j++, k++)
				if (pp_cl_pong(w, k))
					return 0;
		}
	}
	h = calloc(1, sizeof *h);
	if (paired)
		hr = calloc(1, sizeof *hr);
	if (!h || (paired && !hr)) {
		free(h);
		free(hr);
		return child_fail(r, slot, "out of memory");
	}
	barrier_wait(r);
	deadline = r->sh->deadline;
	for (;;) {
		for (j = 0; j < blk; j++, i++) {
			t0 = now_ns();
			if ((rc = ping(ctx, i)))
				goto out;
			t1 = now_ns();
			if ((int64_t)i >= r->warmup_rt && j >= skip)
				hist_add(h, t1 > t0 ? (uint64_t)(t1 - t0) : 0);
		}
		for (j = 0; paired && j < blk; j++, k++) {
			t0 = now_ns();
			pp_cl_ping(w, k);
			t1 = now_ns();
			if ((int64_t)i >= r->warmup_rt && j >= skip)
				hist_add(hr, t1 > t0 ? (uint64_t)(t1 - t0) : 0);
		}
		if (t1 >= deadline && (int64_t)i >= r->warmup_rt)
			break;
	}
	rc = end(ctx);
	o->count = i;
	o->p50_ns = hist_pct(h, 0.50);
	o->p99_ns = hist_pct(h, 0.99);
	o->samples = h->n;
	if (paired) {
		o->ref_p50_ns = hist_pct(hr, 0.50);
		o->ref_p99_ns = hist_pct(hr, 0.99);
		o->ref_samples = hr->n;
	}
out:
	free(h);
	free(hr);
	return rc;
}

#endif /* FAB_BENCH_SPINPP_H */
