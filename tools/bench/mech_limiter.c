/*
 * mech_limiter.c - the cost of one call: fab_limiter_try on one limiter
 * shared by every caller, and, for scale, a bare atomic fetch_add on one
 * shared word (the cheapest operation that every caller must serialise on).
 * Both run as SHAPE_CALLS: r->nprod processes (1 = uncontended, 2 =
 * contended, pinned to two CPUs) each call the operation in a loop until the
 * deadline, looking at the clock once every BATCH calls; each reports its
 * calls and the span of its loop, and the figure is nanoseconds per call per
 * process.  The two loops are written out separately, like mech_fab's, so
 * that no indirect call is measured as part of either.
 *
 * The limiter is created by the parent for each run (a fresh name, rate
 * 1e9 tokens/s, the largest the API takes, so T = 1 ns, and burst 2^24 - 1,
 * the largest: docs/limiters.md "Rate and interval").  A call takes one
 * token; the callers together make far fewer than 10^9 calls a second, so
 * the bucket never empties and every call must return 0: any other return
 * (FAB_EAGAIN included) fails the cell.  The last caller out then checks
 * that the limiter still limits: after 1 ms of rest (the bucket refills at
 * one token per ns) a request for the whole burst must be granted and a
 * second one at once refused with FAB_EAGAIN.  ABI 1.1 cannot remove a
 * limiter and the fabric's table holds 256, so each run leaves one entry
 * behind until main destroys the fabric: --rounds (<= 64) x 2 cells fit.
 *
 * The atomic baseline adds 1 (relaxed: on x86 the same `lock xadd` as
 * seq_cst) to a word alone on its 128-byte pair of lines in the run's shared
 * memory; the last caller out checks that the word equals the sum of every
 * caller's count, so a lost update would fail the cell.
 */
#include "bench.h"

#include <stdlib.h>

#define BATCH 64
#define LIM_RATE 1e9
#define LIM_BURST ((1u << 24) - 1)

static unsigned g_serial;

/* fab_errmsg, or a word in its place: an expected outcome (FAB_EAGAIN)
 * leaves no detail. */
static const char *detail(void)
{
	const char *m = fab_errmsg();

	return m && m[0] ? m : "no detail";
}

static int calls_check_shape(const struct run *r, char *why, size_t whylen)
{
	if (r->shape != SHAPE_CALLS || r->nprod < 1 || r->nprod > BENCH_MAXPROD || r->ncons != 0) {
		snprintf(why, whylen, "a calls run is 1..%d callers and nothing else",
			 BENCH_MAXPROD);
		return -1;
	}
	return 0;
}

/* ---- fab_limiter_try ------------------------------------------------------ */

static int lim_setup(struct run *r, char *why, size_t whylen)
{
	fab_limiter *l = NULL;
	int rc;

	r->chan[0][0] = r->chan[1][0] = '\0';
	if (calls_check_shape(r, why, whylen))
		return -1;
	if (!bench_fab) {
		snprintf(why, whylen, "the fabric could not be opened");
		return -1;
	}
	snprintf(r->chan[0], sizeof r->chan[0], "lim%u", ++g_serial);
	rc = fab_limiter_create(bench_fab, r->chan[0], LIM_RATE, LIM_BURST, &l);
	if (rc != 0) {
		snprintf(why, whylen, "fab_limiter_create(%s, %g/s, burst %u): %s: %s", r->chan[0],
			 LIM_RATE, LIM_BURST, fab_errname(rc), fab_errmsg());
		return -1;
	}
	fab_limiter_release(l);
	return 0;
}

static void lim_teardown(struct run *r)
{
	/* Nothing to remove: ABI 1.1 has no call for it (see above). */
	r->chan[0][0] = '\0';
}

/* The last caller out: does the limiter still limit? */
static int lim_final_check(struct run *r, unsigned slot, fab_limiter *l)
{
	struct timespec ts = { 0, 1000000 };
	int rc;

	while (nanosleep(&ts, &ts) != 0)
		;
	rc = fab_limiter_try(l, LIM_BURST);
	if (rc != 0)
		return child_fail(r, slot,
				  "after the run and 1 ms of rest, fab_limiter_try(burst %u) "
				  "returned %s (%s), not 0: the bucket did not refill",
				  LIM_BURST, fab_errname(rc), detail());
	rc = fab_limiter_try(l, LIM_BURST);
	if (rc != FAB_EAGAIN)
		return child_fail(r, slot,
				  "fab_limiter_try(burst %u) on the bucket just emptied returned "
				  "%s, not FAB_EAGAIN: the limiter does not limit",
				  LIM_BURST, rc ? fab_errname(rc) : "0");
	return 0;
}

static int lim_child(struct run *r, enum bench_role role, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	fab_fabric *f = NULL;
	fab_limiter *l = NULL;
	int64_t deadline;
	uint64_t calls = 0;
	unsigned k;
	int rc;

	(void)role;
	/* The parent's handles are invalid here: open our own. */
	rc = fab_fabric_open(bench_fabric, 0, &f);
	if (rc != 0)
		return child_fail(r, slot, "fab_fabric_open(%s): %s: %s", bench_fabric,
				  fab_errname(rc), fab_errmsg());
	rc = fab_limiter_open(f, r->chan[0], &l);
	if (rc != 0) {
		child_fail(r, slot, "fab_limiter_open(%s): %s: %s", r->chan[0], fab_errname(rc),
			   fab_errmsg());
		fab_fabric_close(f);
		return 1;
	}
	barrier_wait(r);
	deadline = r->sh->deadline;
	o->t_start = now_ns();
	for (;;) {
		for (k = 0; k < BATCH; k++) {
			rc = fab_limiter_try(l, 1);
			if (rc != 0) {
				child_fail(
				    r, slot,
				    "fab_limiter_try(1) returned %s (%s) after %llu calls; a "
				    "limiter of %g/s and burst %u must never refuse this caller",
				    fab_errname(rc), detail(), (unsigned long long)(calls + k),
				    LIM_RATE, LIM_BURST);
				goto out;
			}
		}
		calls += BATCH;
		if (now_ns() >= deadline)
			break;
	}
	o->t_end = now_ns();
	o->count = calls;
	rc = 0;
	/* Pairs with the other callers' decrement: they stopped calling. */
	if (atomic_fetch_sub(&r->sh->calls_left, 1) == 1)
		rc = lim_final_check(r, slot, l);
out:
	fab_limiter_release(l);
	fab_fabric_close(f);
	return rc ? 1 : 0;
}

const struct mech mech_limiter = { "limiter", lim_setup, lim_child, lim_teardown };

/* ---- the atomic baseline ------------------------------------------------- */

static int faa_setup(struct run *r, char *why, size_t whylen)
{
	return calls_check_shape(r, why, whylen);
}

static int faa_child(struct run *r, enum bench_role role, unsigned slot)
{
	_Atomic uint64_t *w = &r->sh->faa_word;
	struct child_out *o = &r->sh->out[slot];
	uint64_t calls = 0, sum = 0, v;
	int64_t deadline;
	unsigned k;

	(void)role;
	barrier_wait(r);
	deadline = r->sh->deadline;
	o->t_start = now_ns();
	for (;;) {
		for (k = 0; k < BATCH; k++)
			atomic_fetch_add_explicit(w, 1, memory_order_relaxed);
		calls += BATCH;
		if (now_ns() >= deadline)
			break;
	}
	o->t_end = now_ns();
	o->count = calls;
	/* seq_cst: publishes our count to the last caller, and (as the last)
	 * makes every other caller's count and additions visible to us. */
	if (atomic_fetch_sub(&r->sh->calls_left, 1) != 1)
		return 0;
	for (k = 0; k < r->nprod; k++)
		sum += r->sh->out[k].count;
	v = atomic_load(w);
	if (v != sum)
		return child_fail(r, slot, "the shared word is %llu after %llu additions of 1",
				  (unsigned long long)v, (unsigned long long)sum);
	return 0;
}

static void nothing(struct run *r)
{
	(void)r;
}

const struct mech mech_atomic = { "atomic", faa_setup, faa_child, nothing };
