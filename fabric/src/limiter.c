/*
 * limiter.c - token buckets shared by every process of a fabric (GCRA).
 *
 * A limiter is an entry of the fabric's limiter table (layout.h,
 * fab_lim_ent).  Its whole state is two words:
 *
 *   params  emission interval T (ns, whole) << 24 | burst b, one load;
 *   tat     the theoretical arrival time (CLOCK_MONOTONIC ns): the instant
 *           at which the bucket is full again.  tat <= now means full.
 *
 * A request of n tokens at `now` computes tat' = max(tat, now) + n*T and is
 * granted iff tat' - now <= b*T; the grant is one CAS of tat.  Every grant
 * pushes tat up by n*T and no grant leaves tat above now + b*T, so over any
 * interval of length t all processes together get at most t/T + b tokens,
 * and T is 1e9/rate rounded UP: at most rate*t + burst (docs/limiters.md
 * has the proof, also across fab_limiter_set).
 *
 * Invariants (checked on every look; a violation is FAB_ECORRUPT):
 *   - params: 1 <= T < FAB_LIM_INTERVAL_MAX, 1 <= b <= FAB_LIM_BURST_MAX,
 *     b*T <= FAB__LIM_WINDOW_MAX;
 *   - tat >= 0 is a time with tat <= now + b*T (+ FAB__LIM_SLACK_NS);
 *   - tat < 0 is a lock held by fab_limiter_set: INT64_MIN + owner tag.
 *
 * fab_limiter_set changes params and tat together, which one CAS cannot
 * do, so it holds tat locked for the few instructions in between (grants
 * CAS tat, so they cannot slip in).  A grant that finds the lock spins
 * briefly; if the holder died there it resets the bucket to empty (the safe
 * side) itself; try returns FAB_EAGAIN if a live holder is slow; wait
 * sleeps on `seq`, which set() bumps when it is done.
 *
 * Sleeping: fab_limiter_wait computes when its request becomes grantable
 * (tat - (b - n)*T) and sleeps on `seq` and the context's words with that
 * absolute deadline (futex_waitv); it re-evaluates when woken.  Nothing
 * wakes it but set() (params changed: re-plan), its deadline, or its
 * context: grants only ever move tat later, and a waiter whose tokens were
 * taken meanwhile re-plans from the new tat.
 */
#include "internal.h"

#include <float.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* b*T at most 2^61 ns (73 years), so max(tat, now) + n*T never overflows:
 * now < 2^62 (146 years of uptime), tat <= now + 2^61, n*T <= 2^61. */
#define FAB__LIM_WINDOW_MAX (INT64_C(1) << 61)
/* Tolerance of the "tat too far in the future" check: the one-nanosecond
 * nudge of set() and clock reads on different CPUs. */
#define FAB__LIM_SLACK_NS INT64_C(1000000)
/* fab_limiter_wait spins instead of sleeping when its tokens are due this
 * soon: a futex timeout oversleeps by the timer slack (50 us by default). */
#define FAB__LIM_SPIN_NS INT64_C(20000)
/* How long create and set wait for another live process to finish its few
 * instructions of create or set before giving up with FAB_EBUSY. */
#define FAB__LIM_PATIENCE_NS (INT64_C(5) * 1000000000)
/* Internal result of lim_take: tat is locked by a live set(). */
#define FAB__LIM_LOCKED 1

struct fab_limiter {
	unsigned fork_gen; /* fab__fork_gen at open: inherited handles are refused */
	fab_fabric *fab;   /* holds a reference */
	fab_lim_ent *ent;  /* our table entry (immutable: a limiter is never destroyed) */
	uint32_t idx;
	uint64_t gen; /* entry generation at open, for inspectors and a future destroy */
	char name[FAB_NAME_MAX + 1];
};

/* ---- parameters --------------------------------------------------------- */

static int fab__lim_params_ok(uint64_t p)
{
	uint64_t t = FAB_LIM_INTERVAL(p);
	uint64_t b = FAB_LIM_BURST(p);
	return t >= 1 && t < FAB_LIM_INTERVAL_MAX && b >= 1 &&
	       b * t <= (uint64_t)FAB__LIM_WINDOW_MAX;
}

/*
 * Validate a rate and a burst and pack them.  T = 1e9/rate ns rounded up,
 * so the limiter never grants faster than asked; a quotient within
 * floating-point error of a whole number is that number (rate 1e9/7 gives
 * T = 7, not 8).  Returns 0 or FAB_EINVAL with a message.
 */
static int fab__lim_params(double rate, uint32_t burst, uint64_t *out)
{
	if (!(rate > 0) || rate > DBL_MAX) /* also NaN and +inf */
		return fab__err(FAB_EINVAL,
				"rate %g/s: want a finite number of tokens per second > 0", rate);
	if (rate > 1e9)
		return fab__err(FAB_EINVAL,
				"rate %g/s above 1e9/s: the emission interval is counted in whole "
				"nanoseconds (use bigger tokens)",
				rate);
	double x = 1e9 / rate; /* >= 1 */
	if (x >= (double)FAB_LIM_INTERVAL_MAX)
		return fab__err(FAB_EINVAL,
				"rate %g/s too small: one token every %.0f s, the limit is %.0f s",
				rate, x / 1e9, (double)(FAB_LIM_INTERVAL_MAX - 1) / 1e9);
	uint64_t t = (uint64_t)(x + 0.5);
	double d = x - (double)t;
	if (d < 0)
		d = -d;
	if (d > 4 * DBL_EPSILON * x) { /* not an integer: round up */
		t = (uint64_t)x;
		if ((double)t < x)
			t++;
	}
	if (t >= FAB_LIM_INTERVAL_MAX)
		return fab__err(FAB_EINVAL,
				"rate %g/s too small: one token every %.0f s, the limit is %.0f s",
				rate, (double)t / 1e9, (double)(FAB_LIM_INTERVAL_MAX - 1) / 1e9);
	if (burst == 0)
		return fab__err(FAB_EINVAL, "burst 0: a limiter must hold at least one token");
	if (burst > FAB_LIM_BURST_MAX)
		return fab__err(FAB_EINVAL, "burst %u above the limit of %u tokens", burst,
				FAB_LIM_BURST_MAX);
	if ((uint64_t)burst * t > (uint64_t)FAB__LIM_WINDOW_MAX)
		return fab__err(
		    FAB_EINVAL,
		    "burst %u at rate %g/s takes %.3g s to refill; the limit is 2^61 ns (73 years)",
		    burst, rate, (double)burst * (double)t / 1e9);
	*out = FAB_LIM_PARAMS(t, burst);
	return 0;
}

/* ---- the set() lock in tat ---------------------------------------------- */

static inline int64_t fab__lim_lock_word(uint32_t tag)
{
	return INT64_MIN + (int64_t)tag;
}

/* The owner tag of a lock word, or 0 if t is not one (t < 0 assumed). */
static inline uint32_t fab__lim_lock_tag(int64_t t)
{
	uint64_t v = (uint64_t)(t - INT64_MIN); /* t < 0: no overflow */
	if (v > 0xffffu || !(v & FAB_TAG_VALID))
		return 0;
	return (uint32_t)v;
}

static int fab__lim_corrupt(const char *name, const char *what)
{
	return fab__err(FAB_ECORRUPT, "limiter %s: %s", name, what);
}

/*
 * The holder of the lock word t died inside fab_limiter_set: it may or may
 * not have stored its new params; either set is valid.  Reset the bucket
 * to empty under whatever params are there (never more tokens than a
 * finished set could have left) and wake the sleepers it would have woken.
 */
static void fab__lim_steal(fab_lim_ent *e, int64_t t)
{
	/* Relaxed: any params value is acceptable here (see above); the CAS
	 * below is what decides. */
	uint64_t p = load_relaxed(&e->params);
	int64_t now = fab__now_ns();
	int64_t r = now;
	if (fab__lim_params_ok(p))
		r = now + (int64_t)(FAB_LIM_INTERVAL(p) * FAB_LIM_BURST(p));
	/* acq_rel (house cas): the release publishes nothing new (the dead
	 * holder's params store is already visible or lost), the acquire
	 * orders us after its last writes.  Losing the CAS means someone
	 * else stole it first. */
	if (cas(&e->tat, &t, r))
		fab__wake_word(&e->seq);
}

/*
 * tat holds t < 0.  Wait a little for the set() holding it to finish.
 * Returns 0 (look again), FAB__LIM_LOCKED (a live holder is slow) or
 * FAB_ECORRUPT (t is not a lock word).
 */
static int fab__lim_locked(fab_limiter *l, int64_t t)
{
	fab_lim_ent *e = l->ent;
	uint32_t tag = fab__lim_lock_tag(t);
	if (!tag)
		return fab__lim_corrupt(l->name, "tat holds neither a time nor a set() lock");
	/* Relaxed looks: they only detect a change; the caller reloads tat
	 * with acquire before using it. */
	uint32_t backoff = 1;
	for (int i = 0; i < 16; i++) {
		for (uint32_t k = 0; k < backoff; k++)
			cpu_relax();
		if (backoff < 64)
			backoff <<= 1;
		if (load_relaxed(&e->tat) != t)
			return 0;
	}
	for (int i = 0; i < 4; i++) {
		sched_yield();
		if (load_relaxed(&e->tat) != t)
			return 0;
	}
	if (!fab__tag_alive(l->fab, tag)) {
		fab__lim_steal(e, t);
		return 0;
	}
	return FAB__LIM_LOCKED;
}

/* ---- taking tokens ------------------------------------------------------ */

/*
 * One attempt to take n (1..burst) tokens.  Returns 0 (granted),
 * FAB_EAGAIN (not now; *due = the CLOCK_MONOTONIC instant it would be
 * granted if nobody else takes tokens first), FAB__LIM_LOCKED, FAB_EINVAL
 * (n above the burst) or FAB_ECORRUPT.  Any thread of any process may
 * call it concurrently.
 */
static int fab__lim_take(fab_limiter *l, uint32_t n, int64_t *due)
{
	fab_lim_ent *e = l->ent;
	for (;;) {
		/* Acquire: pairs with fab_limiter_set's store_release of tat and
		 * (through the release sequence) with every grant's CAS after
		 * it, so the params read below are at least those of the set
		 * that wrote this tat. */
		int64_t t = load_acquire(&e->tat);
		if (unlikely(t < 0)) {
			int rc = fab__lim_locked(l, t);
			if (rc)
				return rc;
			continue;
		}
		/* Relaxed: ordered by the acquire above.  A newer params than
		 * our t is possible (a set right now); then our CAS below fails,
		 * because set() always leaves a tat different from the one it
		 * locked. */
		uint64_t p = load_relaxed(&e->params);
		if (unlikely(!fab__lim_params_ok(p)))
			return fab__lim_corrupt(l->name, "parameters fail validation");
		int64_t T = (int64_t)FAB_LIM_INTERVAL(p);
		int64_t b = (int64_t)FAB_LIM_BURST(p);
		if (unlikely((int64_t)n > b))
			return fab__err(
			    FAB_EINVAL,
			    "limiter %s: %u tokens exceed the burst of %lld; such a request "
			    "can never be granted",
			    l->name, n, (long long)b);
		/* The clock after the load: every grant that wrote t read its
		 * clock before its CAS, so t <= now + b*T is an invariant. */
		int64_t now = fab__now_ns();
		int64_t win = b * T;
		if (unlikely(t - now > win + FAB__LIM_SLACK_NS)) {
			/* A set() raced us (our t and params are of different
			 * generations), or the word is scribbled.  The first
			 * changes tat, the second does not. */
			if (load_acquire(&e->tat) != t || load_relaxed(&e->params) != p)
				continue;
			return fab__lim_corrupt(l->name, "tat lies beyond a full bucket's time");
		}
		int64_t nt = (t > now ? t : now) + (int64_t)n * T;
		if (nt - now > win) {
			*due = t - (b - (int64_t)n) * T; /* > now, as t > now here */
			return FAB_EAGAIN;
		}
		/* acq_rel (house cas): the grant is the CAS; a failure reloads t
		 * with acquire and we decide again. */
		if (cas(&e->tat, &t, nt)) {
			fetch_add_relaxed(&e->granted, n); /* a counter for inspectors */
			return 0;
		}
	}
}

static inline int fab__lim_check(fab_limiter *l)
{
	if (unlikely(!l))
		return fab__err(FAB_EINVAL, "NULL limiter handle");
	if (unlikely(l->fork_gen != load_relaxed(&fab__fork_gen)))
		return fab__err(FAB_EINVAL,
				"limiter handle inherited across fork(); open a new one");
	fab__pulse(fab__calls(l->fab));
	return 0;
}

int fab_limiter_try(fab_limiter *l, uint32_t tokens)
{
	int rc;
	if ((rc = fab__lim_check(l)))
		return rc;
	if (tokens == 0)
		return 0;
	int64_t due;
	rc = fab__lim_take(l, tokens, &due);
	if (rc == FAB_EAGAIN || rc == FAB__LIM_LOCKED)
		return fab__err_none(FAB_EAGAIN);
	return rc;
}

int fab_limiter_wait(fab_limiter *l, uint32_t tokens, fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__lim_check(l)))
		return rc;
	if (ctx && (rc = fab__ctx_valid(ctx)))
		return rc;
	if (tokens == 0)
		return 0;
	/* As the channel calls: what can be granted now is granted, even
	 * under a context that has ended. */
	int64_t due;
	int r = fab__lim_take(l, tokens, &due);
	if (r != FAB_EAGAIN && r != FAB__LIM_LOCKED)
		return r;
	if (ctx && (rc = fab__ctx_done(ctx)))
		return fab__ctx_fail(rc);

	fab_lim_ent *e = l->ent;
	int64_t start = fab__now_ns();
	if (r == FAB_EAGAIN && due - start <= FAB__LIM_SPIN_NS) {
		/* Due within microseconds: a sleep would overshoot by the
		 * timer slack.  Bounded by FAB__LIM_SPIN_NS. */
		while (fab__now_ns() < due)
			cpu_relax();
		r = fab__lim_take(l, tokens, &due);
		if (r != FAB_EAGAIN && r != FAB__LIM_LOCKED) {
			/* Relaxed: a counter for inspectors. */
			int64_t waited = fab__now_ns() - start;
			fetch_add_relaxed(&e->waited_ns, (uint64_t)waited);
			fab__hist_add(&l->fab->lhists[l->idx], waited);
			return r;
		}
	}

	fetch_add_relaxed(&e->waiters, 1); /* a gauge for inspectors */
	uint64_t what = FAB_WAIT_MAKE(FAB_WAIT_LIMITER, 0, 1, l->idx);
	fab__wait_mark(l->fab, what);
	int64_t poll_ns = 1000000;         /* liveness poll behind a slow set() */
	for (;;) {
		/* Dekker, sleeper half: set the sleepers bit (seq_cst RMW plus
		 * membarrier), then take the last look, then sleep only if seq
		 * is unchanged.  Pairs with fab__wake_word in fab_limiter_set:
		 * either our look sees its new params and tat, or it sees our
		 * bit and wakes us. */
		uint32_t v = fab__sleep_announce(&e->seq);
		r = fab__lim_take(l, tokens, &due);
		if (r != FAB_EAGAIN && r != FAB__LIM_LOCKED)
			break;
		if (ctx && (rc = fab__ctx_done(ctx))) {
			r = fab__ctx_fail(rc);
			break;
		}
		fab__waitset ws = {.n = 1, .deadline_ns = INT64_MAX};
		ws.word[0] = &e->seq;
		ws.val[0] = v;
		if (r == FAB_EAGAIN) {
			ws.deadline_ns = due;
		} else {
			/* Behind a live set() that is slow (descheduled): it
			 * wakes us when done; the timeout is for its death. */
			ws.deadline_ns = fab__now_ns() + poll_ns;
			if (poll_ns < 100000000)
				poll_ns *= 2;
		}
		fab__ctx_arm(ctx, &ws);
		int wr = fab__futex_waitv(&ws);
		if (wr == FAB_ESYS) {
			r = wr;
			break;
		}
		/* Woken (set, context, or due): look before re-arming. */
		r = fab__lim_take(l, tokens, &due);
		if (r != FAB_EAGAIN && r != FAB__LIM_LOCKED)
			break;
	}
	/* Relaxed: gauge and counter for inspectors; nothing is ordered by them. */
	atomic_fetch_sub_explicit(&e->waiters, 1, memory_order_relaxed);
	fab__wait_unmark(l->fab, what);
	int64_t waited = fab__now_ns() - start;
	fetch_add_relaxed(&e->waited_ns, (uint64_t)waited);
	fab__hist_add(&l->fab->lhists[l->idx], waited);
	return r;
}

/* ---- set ---------------------------------------------------------------- */

/*
 * The new tat when params change from p1 to p2 at `now`, given the locked
 * tat t (a time).  The bucket keeps its level in tokens (as Go's
 * rate.Limiter.SetLimit/SetBurst), capped at the new burst:
 *   level L1 = b1 - D1/T1, D1 = max(0, t - now)  (tokens available)
 *   level L2 = min(L1, b2)                       (never more than before)
 *   tat'     = now + (b2 - L2) * T2              (rounded up: the safe side)
 * Tokens already granted stay granted; their debt is repaid at the new
 * rate.  The result always differs from t (see fab__lim_take's CAS).
 */
static int64_t fab__lim_rescale(int64_t t, uint64_t p1, uint64_t p2, int64_t now)
{
	__int128 T1 = FAB_LIM_INTERVAL(p1), b1 = FAB_LIM_BURST(p1);
	__int128 T2 = FAB_LIM_INTERVAL(p2), b2 = FAB_LIM_BURST(p2);
	__int128 d1 = t > now ? t - now : 0;
	if (d1 > b1 * T1)
		d1 = b1 * T1; /* at most the 1 ns nudge below, from an earlier set */
	/* (b2 - L2) * T2 = max(0, (b2 - b1) * T2 + D1 * T2 / T1), rounded up */
	__int128 d2 = (b2 - b1) * T2 + (d1 * T2 + T1 - 1) / T1;
	if (d2 < 0)
		d2 = 0;
	if (d2 > b2 * T2)
		d2 = b2 * T2;
	if (d2 == 0)
		return t != now ? now : now - 1; /* full: any time <= now */
	int64_t r = now + (int64_t)d2;
	return r != t ? r : r + 1; /* one more nanosecond of debt: safe */
}

int fab_limiter_set(fab_limiter *l, double rate_per_s, uint32_t burst)
{
	int rc;
	if ((rc = fab__lim_check(l)))
		return rc;
	uint64_t p2;
	if ((rc = fab__lim_params(rate_per_s, burst, &p2)))
		return rc;
	fab_lim_ent *e = l->ent;
	int64_t mine = fab__lim_lock_word(l->fab->tag);
	int64_t t, give_up = 0;
	int corrupt_tat = 0;
	for (;;) {
		/* Acquire: pairs with the previous set's store_release of tat. */
		t = load_acquire(&e->tat);
		if (t >= 0 || !fab__lim_lock_tag(t)) {
			/* acq_rel (house cas): taking the lock orders us after the
			 * previous set's params store (through the release
			 * sequence of tat) and before our own stores. */
			if (cas(&e->tat, &t, mine)) {
				corrupt_tat = t < 0; /* a scribbled word: we rewrite it */
				break;
			}
			continue;
		}
		/* Another set() holds it. */
		rc = fab__lim_locked(l, t);
		if (rc == 0)
			continue;
		int64_t now = fab__now_ns();
		if (!give_up)
			give_up = now + FAB__LIM_PATIENCE_NS;
		if (now >= give_up)
			return fab__err(
			    FAB_EBUSY, "limiter %s: a fab_limiter_set in pid %u does not finish",
			    l->name,
			    load_relaxed(&l->fab->procs[FAB_TAG_IDX(fab__lim_lock_tag(t))].pid));
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
	}

	/* We hold tat: no grant can land until we store it back. */
	/* Relaxed: params change only under this lock, and our CAS ordered us
	 * after the previous holder. */
	uint64_t p1 = load_relaxed(&e->params);
	int64_t now = fab__now_ns();
	int64_t r;
	if (corrupt_tat || !fab__lim_params_ok(p1) ||
	    t - now > (int64_t)(FAB_LIM_INTERVAL(p1) * FAB_LIM_BURST(p1)) + FAB__LIM_SLACK_NS) {
		/* The entry failed validation: start over with an empty bucket
		 * under the new params (never more tokens than a sound one). */
		r = now + (int64_t)(FAB_LIM_INTERVAL(p2) * FAB_LIM_BURST(p2));
	} else {
		r = fab__lim_rescale(t, p1, p2, now);
	}
	/* Relaxed: published by the release store of tat below. */
	store_relaxed(&e->params, p2);
	/* Release: pairs with the acquire loads of tat in fab__lim_take and
	 * here: whoever sees r sees p2.  This also drops the lock. */
	store_release(&e->tat, r);
	/* Dekker, waker half: our publication is the store above.  Pairs
	 * with fab__sleep_announce in fab_limiter_wait: sleepers re-plan. */
	fab__wake_word(&e->seq);
	return 0;
}

/*
 * fab_fabric_recover: finish what a killed fab_limiter_set left.  Its lock
 * is broken here, while the process entry its tag names is still the dead
 * one's (stealing lazily, in the next caller, may come after that entry was
 * claimed again and its 5-bit generation wrapped: a live process would then
 * hold the lock for good).  Its wake is redone when anyone sleeps: killed
 * inside fab__wake_word after the CAS that cleared the sleepers bit, it left
 * them asleep until the due time of the old parameters, and no later set()
 * would wake them (no bit).  +2 keeps the sleepers bit.
 */
void fab__lim_recover(fab_fabric *fab)
{
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++) {
		fab_lim_ent *e = &fab->lims[i];
		/* Acquire: pairs with fab_limiter_create's release of LIVE. */
		if (load_acquire(&e->state) != FAB_ENT_LIVE)
			continue;
		int64_t t = load_acquire(&e->tat); /* as fab__lim_take */
		uint32_t tag = t < 0 ? fab__lim_lock_tag(t) : 0;
		if (tag && !fab__tag_alive(fab, tag))
			fab__lim_steal(e, t);
		/* Relaxed: a gauge; a sleeper counts itself before its announce. */
		if (load_relaxed(&e->waiters)) {
			atomic_fetch_add_explicit(&e->seq, 2, memory_order_release);
			fab__futex_wake(&e->seq, INT_MAX);
		}
	}
}

/* ---- create / open / release ------------------------------------------- */

/* Index of the live limiter `name`, or -1. */
static int fab__lim_find(fab_fabric *fab, const char *name)
{
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++) {
		fab_lim_ent *e = &fab->lims[i];
		/* Acquire: pairs with fab_limiter_create's store_release of LIVE:
		 * name, params and tat are visible. */
		if (load_acquire(&e->state) != FAB_ENT_LIVE)
			continue;
		if (strncmp(e->name, name, sizeof e->name) == 0)
			return (int)i;
	}
	return -1;
}

/*
 * We are creating `name` in entry i (CREATING, name written, fenced).
 * Decide against every other entry of the same name: a LIVE one means it
 * exists; a CREATING one of a live creator at a lower index wins; one at a
 * higher index is waited for (it yields to us if it saw us, else it goes
 * LIVE and we yield).  Both creators fence between writing their name and
 * looking, so at least one sees the other: never two LIVE entries of one
 * name.  Waits only go to higher indices, so they end.  Returns 0 (we
 * win), FAB_EEXIST, or FAB_EBUSY (a live creator does not finish).
 */
static int fab__lim_resolve(fab_fabric *fab, uint32_t i, const char *name)
{
	int64_t give_up = 0;
	for (uint32_t j = 0; j < FAB_MAX_LIMS; j++) {
		if (j == i)
			continue;
		fab_lim_ent *e = &fab->lims[j];
		for (;;) {
			/* Acquire: pairs with the other creator's CAS and
			 * store_release of the state: its name is visible. */
			uint32_t st = load_acquire(&e->state);
			if (st != FAB_ENT_CREATING && st != FAB_ENT_LIVE)
				break;
			if (strncmp(e->name, name, sizeof e->name) != 0)
				break;
			if (st == FAB_ENT_LIVE)
				return fab__err(FAB_EEXIST, "limiter %s exists in fabric %s", name,
						fab->name);
			/* Relaxed: if this is not the owner that wrote the name
			 * we matched, we did not see all of that creator's
			 * writes, so by the fences it sees ours and yields or
			 * waits for us; skipping it is then safe. */
			uint32_t owner = load_relaxed(&e->owner);
			if (!fab__tag_alive(fab, owner))
				break; /* its creator died: it never goes LIVE */
			if (j < i)
				return fab__err(FAB_EEXIST,
						"limiter %s is being created in fabric %s", name,
						fab->name);
			int64_t now = fab__now_ns();
			if (!give_up)
				give_up = now + FAB__LIM_PATIENCE_NS;
			if (now >= give_up)
				return fab__err(
				    FAB_EBUSY,
				    "limiter %s: a concurrent creator (pid %u) does not finish",
				    name, load_relaxed(&fab->procs[FAB_TAG_IDX(owner)].pid));
			sched_yield();
		}
	}
	return 0;
}

int fab_limiter_create(fab_fabric *fab, const char *name, double rate_per_s, uint32_t burst,
		       fab_limiter **out)
{
	int rc;
	if (out)
		*out = NULL; /* on every failure, *out is NULL */
	if ((rc = fab__named_args(fab, name, out, "limiter")))
		return rc;
	uint64_t p;
	if ((rc = fab__lim_params(rate_per_s, burst, &p)))
		return rc;
	if (fab__lim_find(fab, name) >= 0)
		return fab__err(FAB_EEXIST, "limiter %s exists in fabric %s", name, fab->name);
	fab_limiter *l = calloc(1, sizeof *l);
	if (!l)
		return fab__err(FAB_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++) {
		fab_lim_ent *e = &fab->lims[i];
		/* Tag first, then CREATING (fab__ent_claim; its CASes are
		 * acq_rel): the entry is ours until we publish it. */
		if (!fab__ent_claim(fab, &e->state, &e->owner))
			continue;
		/* Relaxed stores: the entry is ours; the fence below orders them
		 * for concurrent creators, the release of LIVE for openers. */
		memset(e->name, 0, sizeof e->name);
		memcpy(e->name, name, strlen(name));
		store_relaxed(&e->params, p);
		store_relaxed(&e->tat, 0); /* <= now: a new limiter starts full */
		store_relaxed(&e->waiters, 0);
		store_relaxed(&e->granted, 0);
		store_relaxed(&e->waited_ns, 0);
		uint64_t gen = atomic_fetch_add_explicit(&e->gen, 1, memory_order_relaxed) + 1;
		/* Dekker between creators of one name: our CREATING state and
		 * name are ordered before our look at the other entries.  Pairs
		 * with this same fence in a concurrent fab_limiter_create. */
		fence_seq_cst();
		rc = fab__lim_resolve(fab, i, name);
		if (rc) {
			/* Release: a later claimer of the entry sees us gone.
			 * Then our tag (a claimer clears it if we die first). */
			store_release(&e->state, FAB_ENT_FREE);
			fab__ent_unown(&e->owner, fab->tag);
			free(l);
			return rc;
		}
		/* Release: name, params and tat are visible before LIVE; pairs
		 * with fab__lim_find's load_acquire. */
		store_release(&e->state, FAB_ENT_LIVE);
		l->fork_gen = load_relaxed(&fab__fork_gen);
		l->fab = fab;
		l->ent = e;
		l->idx = i;
		l->gen = gen;
		snprintf(l->name, sizeof l->name, "%s", name);
		fab__fabric_ref(fab);
		*out = l;
		return 0;
	}
	free(l);
	return fab__err(FAB_ENOMEM, "limiter table of fabric %s is full (%u limiters)", fab->name,
			FAB_MAX_LIMS);
}

int fab_limiter_open(fab_fabric *fab, const char *name, fab_limiter **out)
{
	int rc;
	if (out)
		*out = NULL; /* on every failure, *out is NULL */
	if ((rc = fab__named_args(fab, name, out, "limiter")))
		return rc;
	int i = fab__lim_find(fab, name);
	if (i < 0)
		return fab__err(FAB_ENOENT, "no limiter named %s in fabric %s", name, fab->name);
	fab_lim_ent *e = &fab->lims[i];
	/* Relaxed: ordered by fab__lim_find's acquire of LIVE. */
	uint64_t p = load_relaxed(&e->params);
	if (!fab__lim_params_ok(p))
		return fab__lim_corrupt(name, "parameters fail validation");
	/* Relaxed: a shape check only; every call reloads tat with acquire. */
	int64_t t = load_relaxed(&e->tat);
	if (t < 0 && !fab__lim_lock_tag(t))
		return fab__lim_corrupt(name, "tat holds neither a time nor a set() lock");
	fab_limiter *l = calloc(1, sizeof *l);
	if (!l)
		return fab__err(FAB_ENOMEM, "out of memory");
	l->fork_gen = load_relaxed(&fab__fork_gen);
	l->fab = fab;
	l->ent = e;
	l->idx = (uint32_t)i;
	l->gen = load_relaxed(&e->gen); /* ordered by the acquire of LIVE */
	snprintf(l->name, sizeof l->name, "%s", name);
	fab__fabric_ref(fab);
	*out = l;
	return 0;
}

void fab_limiter_release(fab_limiter *l)
{
	if (!l)
		return;
	/* In a child after fork() this drops the child's copy of the fabric
	 * reference only (fab__fabric_unref checks the fork generation). */
	if (l->fab)
		fab__fabric_unref(l->fab);
	free(l);
}
