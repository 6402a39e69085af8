/*
 * wait.c - sleeping and waking on shared futex words.  Every sleep goes
 * through futex_waitv(2) so a channel word and the context words are
 * watched together (a cancel wakes the sleeper at once).  Never
 * FUTEX_PRIVATE_FLAG: the words live in shared memory (PLATFORM §1).
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef FUTEX_32
#define FUTEX_32 2
#endif

int fab__futex_waitv(fab__waitset *ws)
{
	struct futex_waitv w[FAB__WAIT_MAX];
	if (ws->n < 1 || ws->n > FAB__WAIT_MAX)
		return fab__err(FAB_EINVAL, "wait set of %d words", ws->n);
	memset(w, 0, sizeof w[0] * (size_t)ws->n); /* __reserved must be 0 */
	for (int i = 0; i < ws->n; i++) {
		w[i].uaddr = (uintptr_t)ws->word[i];
		w[i].val = ws->val[i];
		w[i].flags = FUTEX_32;
	}
	struct timespec ts, *tsp = NULL;
	if (ws->deadline_ns != INT64_MAX) {
		if (fab__now_ns() >= ws->deadline_ns)
			return FAB_ETIMEDOUT;
		ts.tv_sec = ws->deadline_ns / 1000000000LL;
		ts.tv_nsec = ws->deadline_ns % 1000000000LL;
		tsp = &ts;
	}
	long r = syscall(SYS_futex_waitv, w, (unsigned)ws->n, 0, tsp, CLOCK_MONOTONIC);
	if (r >= 0)
		return 0;
	switch (errno) {
	case EAGAIN: /* a word already changed */
	case EINTR:
		return 0;
	case ETIMEDOUT:
		return FAB_ETIMEDOUT;
	default:
		return fab__errno("futex_waitv");
	}
}

void fab__futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
}

uint32_t fab__sleep_announce(_Atomic uint32_t *word)
{
	/* seq_cst RMW, then (only if we set the bit: whoever set it before
	 * did this) make it visible to every waker with a membarrier, so a
	 * waker's plain load after its publication sees it.  Pairs with
	 * fab__wake_word. */
	uint32_t v = atomic_fetch_or_explicit(word, 1u, memory_order_seq_cst);
	if (!(v & 1u))
		fab__membarrier();
	return v | 1u;
}

/* ---- activity and wait records, histograms ---------------------------- */

_Thread_local int64_t fab__origin_ns __attribute__((tls_model("initial-exec")));

void fab__wait_mark(fab_fabric *fab, uint64_t what)
{
	fab_proc_ent *e = &fab->procs[fab->proc_idx];
	store_relaxed(&e->wait_ns, fab__now_ns());
	/* Release: a reader (fabctl) that loads `what` with acquire sees the
	 * start time stored before it. */
	store_release(&e->wait, what);
}

void fab__wait_unmark(fab_fabric *fab, uint64_t what)
{
	fab_proc_ent *e = &fab->procs[fab->proc_idx];
	/* Only if it is still ours: another thread of this process may have
	 * begun a sleep since (relaxed: nothing is published with it). */
	uint64_t w = what;
	atomic_compare_exchange_strong_explicit(&e->wait, &w, 0, memory_order_relaxed,
						memory_order_relaxed);
}

static inline unsigned fab__hist_bucket(uint64_t v)
{
	/* bucket i holds v <= 1000 << i: the smallest i with (v - 1) / 1000
	 * < 1 << i, i.e. the bit length of (v - 1) / 1000 */
	uint64_t q = v ? (v - 1) / 1000 : 0;
	unsigned i = q ? 64u - (unsigned)__builtin_clzll(q) : 0;
	return i > FAB_HIST_BUCKETS ? FAB_HIST_BUCKETS : i;
}

void fab__hist_add(fab_hist *h, int64_t ns)
{
	uint64_t v = ns > 0 ? (uint64_t)ns : 0;
	/* Relaxed counters: a reader wants totals, not an order between them. */
	fetch_add_relaxed(&h->b[fab__hist_bucket(v)], 1);
	fetch_add_relaxed(&h->sum_ns, v);
	fetch_add_relaxed(&h->count, 1);
}

void fab__hist_note(fab__hist_local *l, fab_hist *h, int64_t ns)
{
	uint64_t v = ns > 0 ? (uint64_t)ns : 0;
	l->b[fab__hist_bucket(v)]++;
	l->sum_ns += v;
	if (++l->n >= FAB__HIST_BATCH)
		fab__hist_flush(l, h);
}

void fab__hist_flush(fab__hist_local *l, fab_hist *h)
{
	if (!l->n)
		return;
	/* Relaxed, as fab__hist_add; buckets before count, so a reader that
	 * sums the buckets is never behind count by more than a batch. */
	for (int i = 0; i <= FAB_HIST_BUCKETS; i++)
		if (l->b[i]) {
			fetch_add_relaxed(&h->b[i], l->b[i]);
			l->b[i] = 0;
		}
	fetch_add_relaxed(&h->sum_ns, l->sum_ns);
	fetch_add_relaxed(&h->count, l->n);
	l->sum_ns = 0;
	l->n = 0;
}
