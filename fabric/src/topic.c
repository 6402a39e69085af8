/*
 * topic.c - broadcast topics: one ring of slots that every subscriber reads
 * with its own cursor (docs/topics.md is the contract, docs/layout.md the
 * bytes).
 *
 * Publishers claim positions like the mpmc ring does: a slot's 64-bit state
 * word {position, state, owner tag} goes by CAS from "done with position
 * p - nslots" (FULL or SKIP, or FREE(p) in a new ring) to WRITING(p, me),
 * then the payload is copied in and FULL(p, me) is store-released.  `tail`
 * is a hint: whoever finds the slot at tail already claimed moves it on, so
 * a publisher killed between its claim and the hint update stalls nobody.
 * Slots are never "freed" by readers; a FULL slot stays readable until a
 * publisher claims the same slot one lap later.
 *
 * Subscribers never write slots.  A subscriber at cursor c loads the state
 * word of c's slot: FULL(c) -> copy, then look at the word again (seqlock):
 * unchanged means the copy is the message; SKIP(c) -> no message, move on;
 * WRITING(c) or the previous lap -> nothing yet, wait; a later lap -> this
 * subscriber was lapped: it adds the positions it lost to its dropped count
 * and jumps to the oldest position that may still be intact.
 *
 * Flow control: a publisher may claim position p only while
 * p - cursor < capacity for every ACTIVE BLOCK subscriber.  Publishers
 * cache the minimum cursor and rescan the subscriber table only when the
 * cache says "full" or when `sub_gen` changed (a subscribe happened), so a
 * topic with no BLOCK subscriber costs one extra load per publish.  DROP
 * subscribers are invisible to publishers.
 *
 * Joining without stopping publishers (the subscribe protocol).  A new
 * subscriber S claims a table entry, sets cursor = T1 (the tail hint), marks
 * it ACTIVE, bumps `sub_gen` (seq_cst), then finds T2, the first unclaimed
 * position (seq_cst loads of tail and of that slot), and raises its cursor to
 * T2.  Every publisher loads tail, THEN sub_gen (both seq_cst), then CASes
 * the slot (seq_cst), claiming exactly the position it loaded.  A publisher
 * whose sub_gen load missed S's bump loaded tail before the bump too, so it
 * loaded a value <= T2; a claim at a position < T2 after S looked fails (that
 * slot is already claimed), so at most one such "stale" claim succeeds after
 * S looked, at exactly T2, and it overwrites T2 - nslots, which S never
 * reads.  Every other claim sees the new sub_gen, rescans, and respects S's
 * cursor (T1 <= T2: conservative until S raises it).  So a BLOCK subscriber
 * receives every message whose publish started after its subscribe returned.
 *
 * Liveness: nothing waits on another process without a way out.  A
 * subscriber stuck at WRITING(c, o) and a publisher stuck behind
 * WRITING(p - nslots, o) poll o's liveness with a growing sleep timeout
 * (1 ms doubling to 100 ms) and turn the slot into SKIP if o is dead.  A
 * publisher held back by a BLOCK subscriber polls that subscriber's owner
 * the same way and prunes its entry if it is dead.  fab_fabric_recover does
 * both for every topic (fab__topic_recover).
 *
 * Invariants (fab__topic_validate checks the local ones):  claimed
 * positions form a prefix [start, first unclaimed) and tail <= first
 * unclaimed; every slot's position is congruent to its index mod nslots and
 * within a lap of tail; FULL slots carry len <= msg_size; no cursor is ahead
 * of the first unclaimed position; once a subscribe has returned, an ACTIVE
 * BLOCK cursor c satisfies first unclaimed - c <= capacity.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define FAB__T_SPIN_MIN 32u
#define FAB__T_SPIN_MAX 4096u
#define FAB__T_SPIN_INIT 256u
#define FAB__T_YIELDS 8
#define FAB__T_GUARD (1u << 20) /* bound on retries: a corrupted ring cannot spin us forever */
#define FAB__T_POLL_MIN_NS 1000000LL
#define FAB__T_POLL_MAX_NS 100000000LL

/* ---- handles ------------------------------------------------------------- */

/* A mapped, validated topic segment: the immutable header fields are copied
 * here once, so a header scribbled later cannot move our bounds. */
typedef struct fab__tmap {
	fab_fabric *fab;
	fab__seg seg;
	fab_topic_hdr *hdr;
	uint32_t capacity, msg_size, slot_size, nslots, mask, sub_max;
	fab_topic_sub *subs;
	uint8_t *slots;
	uint32_t reg_idx; /* registry index (wait records), ~0 if not found */
	char name[FAB_NAME_MAX + 1];
} fab__tmap;

/* A publisher handle. */
struct fab_topic {
	unsigned fork_gen;
	fab__tmap m;
	/* flow-control cache: the slowest ACTIVE BLOCK subscriber as last seen */
	uint32_t gen_seen;   /* sub_gen at the last rescan */
	bool has_limit;      /* any BLOCK subscriber at all */
	uint64_t min_cursor; /* its cursor (only grows while gen_seen holds) */
	int laggard;         /* its entry */
	uint64_t laggard_word;
	uint32_t spin; /* adaptive spin budget */
};

/* A subscription. */
struct fab_sub {
	unsigned fork_gen;
	fab__tmap m;
	fab_topic_sub *ent; /* our entry */
	uint64_t word;      /* our entry's state word (ACTIVE) */
	unsigned policy;
	uint64_t cursor; /* next position to read (private copy) */
	uint64_t delivered, dropped;
	uint32_t spin;
};

/* Why a try could not proceed, and what to watch while waiting. */
typedef struct fab__tblock {
	_Atomic uint32_t *word; /* the futex word to sleep on */
	uint32_t behind_tag;    /* a slot held WRITING by this owner, 0 none */
	uint32_t slot_idx;
	uint64_t slot_word; /* that slot's word as seen */
	int behind_sub;     /* a BLOCK subscriber entry holding us back, -1 none */
	uint64_t sub_word;  /* its state word as seen */
} fab__tblock;

static inline fab_mslot *fab__tslot(fab__tmap *m, uint64_t pos)
{
	return (fab_mslot *)(m->slots + (size_t)(pos & m->mask) * m->slot_size);
}

/* Move the tail hint from `from` to from + 1 if nobody did yet. */
static inline void fab__tbump(_Atomic uint64_t *hint, uint64_t from)
{
	/* acq_rel (cas): only a hint; every reader checks the slot word it
	 * leads to, which carries its own ordering. */
	cas(hint, &from, from + 1);
}

/* Signed distance from position c to the 45-bit position of slot word w. */
static inline int64_t fab__seqdist(uint64_t w, uint64_t c)
{
	uint64_t d = (FAB_SW_SEQ(w) - c) & FAB_SEQ_MASK;
	return (d & (1ULL << (FAB_SEQ_BITS - 1))) ? (int64_t)d - (int64_t)(1ULL << FAB_SEQ_BITS)
						  : (int64_t)d;
}

static inline int fab__topic_check(fab_topic *t)
{
	if (unlikely(!t))
		return fab__err(FAB_EINVAL, "NULL topic handle");
	if (unlikely(t->fork_gen != load_relaxed(&fab__fork_gen)))
		return fab__err(FAB_EINVAL, "topic handle inherited across fork(); open a new one");
	return 0;
}

static inline int fab__sub_check(fab_sub *u)
{
	if (unlikely(!u))
		return fab__err(FAB_EINVAL, "NULL subscription handle");
	if (unlikely(u->fork_gen != load_relaxed(&fab__fork_gen)))
		return fab__err(
		    FAB_EINVAL,
		    "subscription inherited across fork(); subscribe again in this process");
	return 0;
}

/* ---- wake ------------------------------------------------------------------ */

static inline void fab__twake(fab_topic_hdr *h, _Atomic uint32_t *word)
{
	/* Dekker, waker half: see fab__wake_word (pairs with the sleeper's
	 * fab__sleep_announce in fab__twait). */
	if (unlikely(fab__wake_word(word)))
		fetch_add_relaxed(&h->futex_wakes, 1);
}

/* Wake every sleeper on both words (recovery, pruning): +2 changes the
 * word and keeps the sleepers bit. */
static void fab__twake_all(fab_topic_hdr *h)
{
	/* Our repair is ordered before the words change: a sleeper woken by
	 * the change sees it. */
	fence_seq_cst();
	atomic_fetch_add_explicit(&h->data_futex, 2, memory_order_release);
	atomic_fetch_add_explicit(&h->space_futex, 2, memory_order_release);
	fab__futex_wake(&h->data_futex, INT_MAX);
	fab__futex_wake(&h->space_futex, INT_MAX);
}

/* ---- repair ---------------------------------------------------------------- */

/* Turn slot idx from the exact word w = WRITING(p, dead) into SKIP(p).
 * Returns 1 if this call did it.  The CAS from the exact word means a
 * publisher that committed meanwhile (it was not dead after all) or a new
 * lap is never touched. */
static int fab__tfix_slot(fab__tmap *m, uint32_t idx, uint64_t w)
{
	if (FAB_SW_STATE(w) != FAB_SLOT_WRITING || idx >= m->nslots)
		return 0;
	fab_mslot *s = (fab_mslot *)(m->slots + (size_t)idx * m->slot_size);
	/* acq_rel (cas): subscribers that load SKIP(p) see nothing of the
	 * dead publisher's partial payload as a message. */
	if (!cas(&s->state, &w, FAB_SW_MAKE(FAB_SW_SEQ(w), FAB_SLOT_SKIP, 0)))
		return 0;
	fetch_add_relaxed(&m->hdr->recovered, 1);
	return 1;
}

/* Free subscriber entry i from the exact word w (its owner is dead).  The
 * generation in the word means a subscriber that re-claimed the entry is
 * never touched.  Returns 1 if this call did it. */
static int fab__tprune(fab__tmap *m, uint32_t i, uint64_t w)
{
	if (i >= m->sub_max || FAB_TSUB_STATE(w) == FAB_TSUB_FREE)
		return 0;
	/* acq_rel (cas): publishers that load FREE stop counting the entry. */
	if (!cas(&m->subs[i].sw, &w, FAB_TSUB_MAKE(FAB_TSUB_GEN(w), 0, 0, FAB_TSUB_FREE)))
		return 0;
	/* A subscriber killed asleep: its mark holds the word we just pruned
	 * from.  Whoever clears the mark (this CAS, or the sleeper's own on
	 * waking) takes it out of data_waiters, so once.  Relaxed: a gauge. */
	uint64_t mk = w;
	if (atomic_compare_exchange_strong_explicit(&m->subs[i].sleeping, &mk, 0,
						    memory_order_relaxed, memory_order_relaxed))
		fab__gauge_dec(&m->hdr->data_waiters);
	fetch_add_relaxed(&m->hdr->pruned, 1);
	return 1;
}

/* Liveness with a small cache, for scans that meet the same owners often. */
typedef struct fab__alive_cache {
	uint32_t dead[16], alive[16];
	int nd, na;
} fab__alive_cache;

static int fab__cached_alive(fab_fabric *fab, fab__alive_cache *c, uint32_t tag)
{
	for (int k = 0; k < c->nd; k++)
		if (c->dead[k] == tag)
			return 0;
	for (int k = 0; k < c->na; k++)
		if (c->alive[k] == tag)
			return 1;
	int a = fab__tag_alive(fab, tag);
	if (a && c->na < 16)
		c->alive[c->na++] = tag;
	else if (!a && c->nd < 16)
		c->dead[c->nd++] = tag;
	return a;
}

/* Repair a whole topic: slots WRITING by dead publishers become SKIP, entries
 * of dead subscribers are freed.  Safe to run concurrently (every repair is
 * a CAS from the exact word seen).  Returns how many objects changed. */
static int fab__topic_repair(fab__tmap *m)
{
	fab__alive_cache c = {.nd = 0, .na = 0};
	int fixed = 0;
	for (uint32_t i = 0; i < m->nslots; i++) {
		fab_mslot *s = (fab_mslot *)(m->slots + (size_t)i * m->slot_size);
		/* Acquire: pairs with a claim's CAS; the repair CASes from
		 * exactly this word anyway. */
		uint64_t w = load_acquire(&s->state);
		uint32_t t = FAB_SW_TAG(w);
		if (FAB_SW_STATE(w) != FAB_SLOT_WRITING || !t || fab__cached_alive(m->fab, &c, t))
			continue;
		fixed += fab__tfix_slot(m, i, w);
	}
	for (uint32_t i = 0; i < m->sub_max; i++) {
		/* Acquire: pairs with subscribe's claim and store_release of
		 * ACTIVE; the prune CASes from exactly this word. */
		uint64_t w = load_acquire(&m->subs[i].sw);
		uint32_t st = FAB_TSUB_STATE(w);
		if (st != FAB_TSUB_JOINING && st != FAB_TSUB_ACTIVE)
			continue;
		if (fab__cached_alive(m->fab, &c, FAB_TSUB_TAG(w)))
			continue;
		fixed += fab__tprune(m, i, w);
	}
	/* Also when nothing was repaired but someone sleeps: a publisher (or a
	 * BLOCK subscriber) killed after its commit (cursor store) and before
	 * or inside its wake -- whose CAS may already have cleared the sleepers
	 * bit, so later commits skip the FUTEX_WAKE -- left sleepers asleep for
	 * good with a message (room) there.  Relaxed gauges: a sleeper that
	 * missed that wake incremented its gauge before its announce. */
	if (fixed || load_relaxed(&m->hdr->data_waiters) || load_relaxed(&m->hdr->space_waiters))
		fab__twake_all(m->hdr);
	return fixed;
}

/* A waiter's liveness poll: repair what blocks it if the holder is dead. */
static void fab__tpoll(fab__tmap *m, const fab__tblock *blk)
{
	int fixed = 0;
	if (blk->behind_tag && !fab__tag_alive(m->fab, blk->behind_tag))
		fixed += fab__tfix_slot(m, blk->slot_idx, blk->slot_word);
	if (blk->behind_sub >= 0 && !fab__tag_alive(m->fab, FAB_TSUB_TAG(blk->sub_word)))
		fixed += fab__tprune(m, (uint32_t)blk->behind_sub, blk->sub_word);
	if (fixed)
		fab__twake_all(m->hdr);
}

/* ---- generic wait ------------------------------------------------------- */

typedef ssize_t (*fab__ttry_fn)(void *self, void *arg, fab__tblock *blk);

/*
 * Run try() until it stops returning FAB_EAGAIN, the context ends, or an
 * error: try, spin with exponential back-off (adaptive budget), yield a
 * little, then sleep on the word try() named (data_futex for subscribers and
 * for publishers behind a slow writer, space_futex for publishers behind a
 * BLOCK subscriber) together with the context's words.  Behind another
 * process, the sleep has a growing timeout and that process's liveness is
 * polled.  Returns try()'s result or the context's error.
 */
static ssize_t fab__twait(fab__tmap *m, uint32_t *budget, _Atomic uint32_t *gauge, fab_ctx *ctx,
			  fab__ttry_fn try, void *self, void *arg, fab_sub *sleeper)
{
	fab__tblock blk;
	ssize_t r = try(self, arg, &blk);
	int c;
	if (r != FAB_EAGAIN)
		return r;
	if (ctx && (c = fab__ctx_done(ctx)))
		return fab__ctx_fail(c);

	/* Spin with back-off: a caught-up peer that polls the other side's
	 * line on every pause steals it from the writer (PLATFORM §9). */
	uint32_t backoff = 1;
	for (uint32_t i = 0; i < *budget; i += backoff) {
		for (uint32_t k = 0; k < backoff; k++)
			cpu_relax();
		if (backoff < 64)
			backoff <<= 1;
		r = try(self, arg, &blk);
		if (r != FAB_EAGAIN) {
			if (*budget < FAB__T_SPIN_MAX)
				*budget *= 2;
			return r;
		}
	}
	if (*budget > FAB__T_SPIN_MIN)
		*budget /= 2;
	for (int i = 0; i < FAB__T_YIELDS; i++) {
		sched_yield();
		r = try(self, arg, &blk);
		if (r != FAB_EAGAIN)
			return r;
		if (ctx && (c = fab__ctx_done(ctx)))
			return fab__ctx_fail(c);
	}

	fab_topic_hdr *h = m->hdr;
	fetch_add_relaxed(gauge, 1); /* a gauge for fabctl and tests */
	/* A subscriber marks its entry after counting itself (layout.h
	 * fab_topic_sub.sleeping): a prune of it, dead, then uncounts it. */
	bool marked = false;
	if (sleeper) {
		uint64_t z = 0;
		marked = atomic_compare_exchange_strong_explicit(&sleeper->ent->sleeping, &z,
								 sleeper->word, memory_order_relaxed,
								 memory_order_relaxed);
	}
	uint64_t what = FAB_WAIT_MAKE(FAB_WAIT_TOPIC,
				      gauge == &h->data_waiters ? FAB_WAIT_RECV : FAB_WAIT_SEND, 1,
				      m->reg_idx);
	fab__wait_mark(m->fab, what);
	/* Liveness polls behind another process: at next_poll, then after a
	 * doubled interval.  The deadline is kept across wake-ups, so a
	 * waiter woken often (commits of later positions) still polls. */
	int64_t poll_ns = FAB__T_POLL_MIN_NS, next_poll = 0;
	for (;;) {
		/* Dekker, sleeper half: set the sleepers bit (seq_cst RMW plus
		 * membarrier, fab__sleep_announce), take the last look, sleep
		 * only if the word is unchanged.  Pairs with fab__twake. */
		_Atomic uint32_t *word = blk.word;
		uint32_t v = fab__sleep_announce(word);
		r = try(self, arg, &blk);
		if (r != FAB_EAGAIN)
			break;
		if (ctx && (c = fab__ctx_done(ctx))) {
			r = fab__ctx_fail(c);
			break;
		}
		if (blk.word != word)
			continue; /* now blocked on the other word: announce there */
		fab__waitset ws = {.n = 1, .deadline_ns = INT64_MAX};
		ws.word[0] = word;
		ws.val[0] = v;
		fab__ctx_arm(ctx, &ws);
		bool behind = blk.behind_tag || blk.behind_sub >= 0;
		if (!behind) {
			next_poll = 0;
		} else {
			if (next_poll == 0) {
				next_poll = fab__now_ns() + poll_ns;
				if (poll_ns < FAB__T_POLL_MAX_NS)
					poll_ns *= 2;
			}
			if (next_poll < ws.deadline_ns)
				ws.deadline_ns = next_poll;
		}
		fetch_add_relaxed(&h->futex_waits, 1);
		int wr = fab__futex_waitv(&ws);
		if (wr == FAB_ESYS) {
			r = wr;
			break;
		}
		if (behind && fab__now_ns() >= next_poll) {
			fab__tpoll(m, &blk);
			next_poll = 0;
		}
		/* Woken: look before re-arming (re-arming costs a membarrier). */
		r = try(self, arg, &blk);
		if (r != FAB_EAGAIN)
			break;
	}
	/* The process's wait record goes before our uncount: recovery
	 * uncounts a dead publisher whose record still names the topic
	 * (fab__topic_uncount_publisher), so a record that is still there
	 * means the count is too.  Killed between the two, we leave the count
	 * one high, as between the count and the record on the way in. */
	fab__wait_unmark(m->fab, what);
	/* Unmark, then uncount; if the mark is gone, a prune (we were taken
	 * for dead) uncounted us already. */
	uint64_t mk = sleeper ? sleeper->word : 0;
	if (!marked || atomic_compare_exchange_strong_explicit(&sleeper->ent->sleeping, &mk, 0,
							       memory_order_relaxed,
							       memory_order_relaxed))
		fab__gauge_dec(gauge); /* never below zero, as recovery's */
	return r;
}

/* ---- geometry and mapping ---------------------------------------------- */

typedef struct fab__tgeom {
	uint32_t nslots, slot_size;
	uint64_t total;
} fab__tgeom;

/* Geometry from (capacity, msg_size); the same function builds a new
 * segment and validates an existing one. */
static int fab__topic_geometry(uint32_t capacity, uint32_t msg_size, fab__tgeom *g)
{
	uint32_t n = 1;
	while (n < capacity)
		n <<= 1;
	g->nslots = n;
	g->slot_size = (uint32_t)((sizeof(fab_mslot) + (uint64_t)msg_size + 63u) & ~63ULL);
	uint64_t total = FAB_TOPIC_SLOTS_OFF + (uint64_t)n * g->slot_size;
	g->total = (total + 4095u) & ~4095ULL;
	if (g->total > (1ULL << 32))
		return fab__err(FAB_ENOMEM, "topic of %llu bytes exceeds the 4 GiB limit",
				(unsigned long long)g->total);
	return 0;
}

/* Map topic `name` of `fab` into m and validate it (magic, version, every
 * size against the file).  A channel's segment is refused with FAB_EINVAL;
 * anything else that does not validate is FAB_ECORRUPT. */
static int fab__topic_map(fab_fabric *fab, const char *name, fab__tmap *m)
{
	char path[128];
	fab__chan_path(path, sizeof path, fab->name, name);
	m->seg.fd = -1;
	int rc = fab__seg_open(path, FAB_TOPIC_SUBS_OFF, true, &m->seg);
	if (rc == FAB_ENOENT)
		return fab__err(FAB_ENOENT, "no topic %s in fabric %s", name, fab->name);
	if (rc)
		return rc;
	fab_topic_hdr *h = m->seg.base;
	uint32_t v;
	if ((rc = fab__seg_wait_version(&h->version, &v)))
		goto fail;
	if (h->magic == FAB_CHAN_MAGIC) {
		rc = fab__err(FAB_EINVAL, "%s is a channel, not a topic", name);
		goto fail;
	}
	if (h->magic != FAB_TOPIC_MAGIC) {
		rc = fab__err(FAB_ECORRUPT, "topic %s: bad magic", name);
		goto fail;
	}
	if ((v >> 16) != FAB_LAYOUT_MAJOR) {
		rc = fab__err(FAB_EVERSION, "topic %s: layout %u.%u, this library speaks %u.x",
			      name, v >> 16, v & 0xffff, FAB_LAYOUT_MAJOR);
		goto fail;
	}
	uint32_t cap = h->capacity, msz = h->msg_size;
	fab__tgeom g;
	if (cap == 0 || cap > FAB_CAPACITY_MAX || msz > FAB_MSG_SIZE_MAX ||
	    fab__topic_geometry(cap, msz, &g) || h->hdr_size != sizeof(fab_topic_hdr) ||
	    h->nslots != g.nslots || h->slot_size != g.slot_size ||
	    h->subs_off != FAB_TOPIC_SUBS_OFF || h->slots_off != FAB_TOPIC_SLOTS_OFF ||
	    h->total_size != g.total || g.total > m->seg.size || h->sub_max != FAB_TOPIC_SUBS_MAX) {
		rc = fab__err(FAB_ECORRUPT, "topic %s: header does not match the segment", name);
		goto fail;
	}
	m->fab = fab;
	m->hdr = h;
	m->capacity = cap;
	m->msg_size = msz;
	m->slot_size = g.slot_size;
	m->nslots = g.nslots;
	m->mask = g.nslots - 1;
	m->sub_max = FAB_TOPIC_SUBS_MAX;
	m->subs = (fab_topic_sub *)((uint8_t *)h + FAB_TOPIC_SUBS_OFF);
	m->slots = (uint8_t *)h + FAB_TOPIC_SLOTS_OFF;
	snprintf(m->name, sizeof m->name, "%s", name);
	int ri = fab__reg_find(fab, name);
	m->reg_idx = ri >= 0 ? (uint32_t)ri : UINT32_MAX;
	return 0;
fail:
	fab__seg_unmap(&m->seg);
	return rc;
}

static void fab__topic_unmap(fab__tmap *m)
{
	fab__seg_unmap(&m->seg);
	m->hdr = NULL;
}

/* ---- options and creation ------------------------------------------------ */

static int fab__topic_opts(const fab_chan_opts *o, unsigned fab_mode, fab_chan_opts *out)
{
	int rc;
	if ((rc = fab__chan_opts_in(o, out)))
		return rc;
	out->size = sizeof *out;
	if (out->kind || out->delivery || out->producers || out->max_inflight ||
	    out->max_deliveries || out->dead_letter)
		return fab__err(
		    FAB_EINVAL,
		    "a topic takes capacity, msg_size and mode only: kind, delivery, "
		    "producers, max_inflight, max_deliveries and dead_letter must be 0");
	if (out->capacity == 0)
		out->capacity = FAB_TOPIC_CAP_DEFAULT;
	if (out->capacity > FAB_CAPACITY_MAX)
		return fab__err(FAB_EINVAL, "capacity %u > %u", out->capacity, FAB_CAPACITY_MAX);
	if (out->msg_size > FAB_MSG_SIZE_MAX)
		return fab__err(FAB_EINVAL, "msg_size %u > %u", out->msg_size, FAB_MSG_SIZE_MAX);
	if (out->mode == 0)
		out->mode = fab_mode; /* the fabric's (fab_fabric_open FAB_MODE) */
	if (out->mode & ~0777u)
		return fab__err(FAB_EINVAL, "mode %o has bits beyond 0777", out->mode);
	/* As FAB_MODE for a fabric (a user trial: 0777 and 0200 were taken
	 * here while the fabric refused them): the owner reads and writes,
	 * group and others get rw, r or nothing, and nobody executes. */
	if (!fab__mode_ok(out->mode))
		return fab__err(FAB_EINVAL,
				"mode %o: the owner needs rw (0600), group and others rw, r or "
				"nothing, and no execute bits",
				out->mode);
	return 0;
}

static void fab__topic_init(fab_topic_hdr *h, const char *name, const fab_chan_opts *o,
			    const fab__tgeom *g)
{
	h->magic = FAB_TOPIC_MAGIC;
	h->hdr_size = sizeof *h;
	h->total_size = g->total;
	h->capacity = o->capacity;
	h->msg_size = o->msg_size;
	h->slot_size = g->slot_size;
	h->nslots = g->nslots;
	h->mode = o->mode;
	h->sub_max = FAB_TOPIC_SUBS_MAX;
	h->subs_off = FAB_TOPIC_SUBS_OFF;
	h->slots_off = FAB_TOPIC_SLOTS_OFF;
	snprintf(h->name, sizeof h->name, "%s", name);
	/* The channels' test hook (fab_chan_create): positions start where
	 * FAB_TEST_START_POS says, so tests cross 2^45 and 2^64 cheaply. */
	uint64_t start = 0;
	const char *sp = getenv("FAB_TEST_START_POS");
	if (sp && *sp)
		start = strtoull(sp, NULL, 0);
	h->start_pos = start;
	h->created_mono_ns = fab__now_ns();
	store_relaxed(&h->tail, start);
	uint8_t *slots = (uint8_t *)h + FAB_TOPIC_SLOTS_OFF;
	for (uint32_t k = 0; k < g->nslots; k++) {
		uint64_t p = start + k;
		fab_mslot *s = (fab_mslot *)(slots + (size_t)(p & (g->nslots - 1)) * g->slot_size);
		store_relaxed(&s->state, FAB_SW_MAKE(p, FAB_SLOT_FREE, 0));
	}
	/* Pairs with fab__seg_wait_version's load_acquire in every opener:
	 * header and slot states are visible before the version. */
	store_release(&h->version, FAB_LAYOUT_VERSION);
}

static fab_topic *fab__topic_alloc(void)
{
	fab_topic *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->fork_gen = load_relaxed(&fab__fork_gen);
	t->m.seg.fd = -1;
	t->laggard = -1;
	t->spin = FAB__T_SPIN_INIT;
	return t;
}

static void fab__topic_free(fab_topic *t)
{
	if (t->m.hdr)
		fab__topic_unmap(&t->m);
	if (t->m.fab)
		fab__fabric_unref(t->m.fab);
	free(t);
}

int fab_topic_create(fab_fabric *fab, const char *name, const fab_chan_opts *opts, fab_topic **out)
{
	int rc;
	if (out)
		*out = NULL; /* on every failure, *out is NULL */
	if ((rc = fab__named_args(fab, name, out, "topic")))
		return rc;
	fab_chan_opts o;
	if ((rc = fab__topic_opts(opts, fab->mode, &o)))
		return rc;
	fab__tgeom g;
	if ((rc = fab__topic_geometry(o.capacity, o.msg_size, &g)))
		return rc;
	if ((rc = fab__reg_name_free(fab, name)))
		return rc;
	/* Registry entry first (the table bounds channels and topics
	 * together), then the segment with O_EXCL, which settles a race
	 * between two creators of one name. */
	fab_chan_ent *ent = fab__reg_claim(fab, name, FAB_OBJ_TOPIC);
	if (!ent)
		return FAB_ENOMEM;
	fab_topic *t = fab__topic_alloc();
	char path[128];
	fab__chan_path(path, sizeof path, fab->name, name);
	fab__seg seg = {.fd = -1};
	if (!t) {
		rc = fab__err(FAB_ENOMEM, "out of memory");
		goto fail_ent;
	}
	if ((rc = fab__seg_create(path, g.total, o.mode, (long)fab->ctl.gid, &seg)) == FAB_EEXIST &&
	    fab__seg_orphan(fab, ent, name, path))
		rc = fab__seg_create(path, g.total, o.mode, (long)fab->ctl.gid, &seg);
	if (rc)
		goto fail_ent;
	if ((rc = fab__seg_created_in(fab, path, &seg)))
		goto fail_ent;
	fab__topic_init(seg.base, name, &o, &g);
	fab__seg_unmap(&seg); /* re-map through the validating path */
	fab__fabric_ref(fab);
	t->m.fab = fab;
	if ((rc = fab__topic_map(fab, name, &t->m))) {
		shm_unlink(path);
		goto fail_ent;
	}
	t->gen_seen = load_relaxed(&t->m.hdr->sub_gen) - 1; /* first publish scans */
	atomic_fetch_add_explicit(&ent->gen, 1, memory_order_relaxed);
	/* Release: name and type are visible before LIVE.  Then our tag
	 * (fab_chan_create says why). */
	store_release(&ent->state, FAB_ENT_LIVE);
	fab__ent_unown(&ent->owner, fab->tag);
	*out = t;
	return 0;

fail_ent:
	/* Release: pairs with fab__reg_claim's CAS of a later creator. */
	store_release(&ent->state, FAB_ENT_FREE);
	fab__ent_unown(&ent->owner, fab->tag); /* as above */
	if (t)
		fab__topic_free(t);
	return rc;
}

int fab_topic_open(fab_fabric *fab, const char *name, fab_topic **out)
{
	int rc;
	if (out)
		*out = NULL;
	if ((rc = fab__named_args(fab, name, out, "topic")))
		return rc;
	fab_topic *t = fab__topic_alloc();
	if (!t)
		return fab__err(FAB_ENOMEM, "out of memory");
	fab__fabric_ref(fab);
	t->m.fab = fab;
	if ((rc = fab__topic_map(fab, name, &t->m)) || (rc = fab__fabric_gone(fab))) { /* as fab_chan_open */
		fab__topic_free(t);
		return rc;
	}
	t->gen_seen = load_relaxed(&t->m.hdr->sub_gen) - 1; /* first publish scans */
	*out = t;
	return 0;
}

void fab_topic_release(fab_topic *t)
{
	/* A publisher holds nothing in the segment between calls, so releasing
	 * (also in a child after fork) only frees local memory. */
	if (!t)
		return;
	fab__topic_free(t);
}

/* ---- publish ------------------------------------------------------------------ */

/* Find the slowest ACTIVE BLOCK subscriber (entries below the high-water
 * mark) and cache it with the sub_gen it belongs to. */
static void fab__topic_rescan(fab_topic *t, uint32_t gen)
{
	fab__tmap *m = &t->m;
	/* Acquire: pairs with subscribe's CAS raising the mark (done before
	 * its entry turns ACTIVE and before its sub_gen bump). */
	uint32_t hi = load_acquire(&m->hdr->sub_hiwat);
	if (hi > m->sub_max)
		hi = m->sub_max; /* bounded even if scribbled */
	bool any = false;
	uint64_t min = 0, lagw = 0;
	int lag = -1;
	for (uint32_t i = 0; i < hi; i++) {
		fab_topic_sub *e = &m->subs[i];
		/* Acquire: pairs with subscribe's store_release of ACTIVE, so the
		 * cursor written before it is seen. */
		uint64_t w = load_acquire(&e->sw);
		if (FAB_TSUB_STATE(w) != FAB_TSUB_ACTIVE || FAB_TSUB_POLICY(w) != FAB_SUB_BLOCK)
			continue;
		/* Acquire: pairs with the subscriber's store_release of its
		 * cursor after copying, so its reads of the slots below the
		 * cursor are done before we overwrite them. */
		uint64_t c = load_acquire(&e->cursor);
		if (!any || (int64_t)(c - min) < 0) {
			min = c;
			lag = (int)i;
			lagw = w;
			any = true;
		}
	}
	t->gen_seen = gen;
	t->has_limit = any;
	t->min_cursor = min;
	t->laggard = lag;
	t->laggard_word = lagw;
}

/* Claim the next position (WRITING(p, me)) or say why not. */
static ssize_t fab__try_claim(void *self, void *arg, fab__tblock *blk)
{
	fab_topic *t = self;
	fab__tmap *m = &t->m;
	fab_topic_hdr *h = m->hdr;
	uint64_t *pos = arg;
	uint32_t tag = m->fab->tag;
	blk->word = &h->space_futex;
	blk->behind_tag = 0;
	blk->behind_sub = -1;
	for (uint32_t guard = 0; guard < FAB__T_GUARD; guard++) {
		/* seq_cst, tail BEFORE sub_gen, and the claim below at exactly
		 * this tail value: the order subscribe's join argument rests on
		 * (file comment). */
		uint64_t p = load_seq_cst(&h->tail);
		uint32_t g = load_seq_cst(&h->sub_gen);
		if (unlikely(g != t->gen_seen) ||
		    (t->has_limit && (int64_t)(p - t->min_cursor) >= (int64_t)m->capacity))
			fab__topic_rescan(t, g);
		if (t->has_limit && (int64_t)(p - t->min_cursor) >= (int64_t)m->capacity) {
			/* seq_cst, as the first load of tail. */
			if (load_seq_cst(&h->tail) != p)
				continue; /* the hint moved: look again */
			blk->behind_sub = t->laggard;
			blk->sub_word = t->laggard_word;
			return FAB_EAGAIN;
		}
		fab_mslot *s = fab__tslot(m, p);
		/* Acquire: pairs with the previous lap's commit (store_release
		 * of FULL) or repair, so we write after its last write. */
		uint64_t w = load_acquire(&s->state);
		uint32_t st = FAB_SW_STATE(w);
		if (w == FAB_SW_MAKE(p, FAB_SLOT_FREE, 0) ||
		    (FAB_SW_SAMEPOS(w, p - m->nslots) &&
		     (st == FAB_SLOT_FULL || st == FAB_SLOT_SKIP))) {
			/* seq_cst: one total order with the tail and sub_gen loads
			 * above and subscribe's loads (file comment). */
			if (cas_seq_cst(&s->state, &w, FAB_SW_MAKE(p, FAB_SLOT_WRITING, tag))) {
				/* Seqlock writer: WRITING is visible before any
				 * payload store, so a reader that copied a byte
				 * of ours sees the state word changed. */
				fence_release();
				fab__tbump(&h->tail, p);
				*pos = p;
				return 0;
			}
			continue;
		}
		if (FAB_SW_SAMEPOS(w, p) || FAB_SW_SAMEPOS(w, p + m->nslots)) {
			/* Claimed by someone who has not moved the hint yet
			 * (perhaps killed right after the claim): help. */
			fab__tbump(&h->tail, p);
			continue;
		}
		if (FAB_SW_SAMEPOS(w, p - m->nslots) && st == FAB_SLOT_WRITING) {
			/* The previous lap's publisher is still writing (or
			 * dead: the waiter polls its liveness).  It wakes the
			 * data word when it commits.  Acquire (re-reading the
			 * hint): as the slot load above. */
			if (load_acquire(&h->tail) != p)
				continue;
			blk->word = &h->data_futex;
			blk->behind_tag = FAB_SW_TAG(w);
			blk->slot_idx = (uint32_t)(p & m->mask);
			blk->slot_word = w;
			return FAB_EAGAIN;
		}
		if (load_acquire(&h->tail) != p) /* acquire, as above */
			continue;                /* stale hint */
		return fab__err(FAB_ECORRUPT, "topic %s: slot state %#llx at tail %llu", m->name,
				(unsigned long long)w, (unsigned long long)p);
	}
	return fab__err(FAB_ECORRUPT, "topic %s: no progress claiming a slot", m->name);
}

int fab_topic_publish(fab_topic *t, const void *msg, size_t len, fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__topic_check(t)))
		return rc;
	fab__pulse(fab__calls(t->m.fab));
	if (unlikely(len > t->m.msg_size))
		return fab__err(FAB_EMSGSIZE, "message of %zu bytes > msg_size %u of topic %s", len,
				t->m.msg_size, t->m.name);
	if (unlikely(!msg && len))
		return fab__err(FAB_EINVAL, "NULL message with length %zu", len);
	if (ctx && (rc = fab__ctx_valid(ctx)))
		return rc;
	fab__tmap *m = &t->m;
	fab_topic_hdr *h = m->hdr;
	uint64_t p;
	fab__tblock blk;
	ssize_t r = fab__try_claim(t, &p, &blk);
	if (r == FAB_EAGAIN)
		r = fab__twait(m, &t->spin, &h->space_waiters, ctx, fab__try_claim, t, &p, NULL);
	if (r)
		return (int)r;
	fab_mslot *s = fab__tslot(m, p);
	s->len = (uint32_t)len;
	if (len)
		memcpy(s + 1, msg, len);
	/* Pairs with the subscriber's load_acquire of the state word: length
	 * and payload are visible before FULL. */
	store_release(&s->state, FAB_SW_MAKE(p, FAB_SLOT_FULL, m->fab->tag));
	fetch_add_relaxed(&h->published, 1);
	fab__twake(h, &h->data_futex);
	return 0;
}

/* ---- subscribe ------------------------------------------------------------ */

/* The first position nobody has claimed yet (moving the tail hint over
 * claims it lags behind).  seq_cst loads: see the file comment. */
static uint64_t fab__topic_first_unclaimed(fab__tmap *m)
{
	fab_topic_hdr *h = m->hdr;
	uint64_t t = 0;
	for (uint32_t guard = 0; guard < FAB__T_GUARD; guard++) {
		/* seq_cst both: in one total order with the publishers' tail
		 * and sub_gen loads and claims (file comment). */
		t = load_seq_cst(&h->tail);
		uint64_t w = load_seq_cst(&fab__tslot(m, t)->state);
		if ((FAB_SW_SAMEPOS(w, t) && w != FAB_SW_MAKE(t, FAB_SLOT_FREE, 0)) ||
		    FAB_SW_SAMEPOS(w, t + m->nslots)) {
			fab__tbump(&h->tail, t);
			continue;
		}
		return t;
	}
	return t; /* a corrupted ring: any position will do */
}

static int fab__sub_join(fab_sub *u, unsigned policy)
{
	fab__tmap *m = &u->m;
	fab_topic_hdr *h = m->hdr;
	uint32_t tag = m->fab->tag;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < m->sub_max; i++) {
			fab_topic_sub *e = &m->subs[i];
			/* Acquire: pairs with the release or prune that freed
			 * the entry. */
			uint64_t w = load_acquire(&e->sw);
			if (FAB_TSUB_STATE(w) != FAB_TSUB_FREE)
				continue;
			uint32_t gen = FAB_TSUB_GEN(w) + 1;
			/* acq_rel: the entry is ours until we free it; we see the
			 * previous owner's last writes. */
			if (!cas(&e->sw, &w, FAB_TSUB_MAKE(gen, tag, policy, FAB_TSUB_JOINING)))
				continue;
			/* Publishers scan entries below the high-water mark.
			 * acq_rel (cas), before ACTIVE and the sub_gen bump:
			 * pairs with fab__topic_rescan's load_acquire. */
			uint32_t hi = load_relaxed(&h->sub_hiwat);
			while (hi < i + 1 && !cas(&h->sub_hiwat, &hi, i + 1))
				;
			/* T1, a lower bound of the final cursor (seq_cst: the
			 * tail is monotonic, T1 <= T2). */
			uint64_t t1 = load_seq_cst(&h->tail);
			store_relaxed(&e->cursor, t1);
			store_relaxed(&e->delivered, 0);
			store_relaxed(&e->dropped, 0);
			store_relaxed(&e->joined_ns, fab__realtime_ns());
			/* No mark of an earlier claim (a prune clears one; this
			 * makes sure): ours is set only while we sleep. */
			store_relaxed(&e->sleeping, 0);
			uint64_t act = FAB_TSUB_MAKE(gen, tag, policy, FAB_TSUB_ACTIVE);
			/* Pairs with fab__topic_rescan's load_acquire of sw: the
			 * cursor is visible with ACTIVE. */
			store_release(&e->sw, act);
			/* seq_cst RMW: publishers load tail, then sub_gen, then
			 * claim; see the join argument in the file comment. */
			fetch_add_seq_cst(&h->sub_gen, 1);
			uint64_t t2 = fab__topic_first_unclaimed(m);
			if ((int64_t)(t2 - t1) < 0)
				t2 = t1; /* a cursor only grows */
			/* Release: publishers that see the raised cursor may
			 * claim further (nothing of ours to order yet). */
			store_release(&e->cursor, t2);
			fetch_add_relaxed(&h->subscribes, 1);
			u->ent = e;
			u->word = act;
			u->policy = policy;
			u->cursor = t2;
			if (t2 != t1)
				fab__twake(h, &h->space_futex);
			return 0;
		}
		/* Full: entries of dead subscribers may be reclaimable. */
		if (pass == 0)
			fab__topic_repair(m);
	}
	return fab__err(FAB_ENOMEM, "topic %s: subscriber table full (%u subscribers)", m->name,
			m->sub_max);
}

int fab_topic_subscribe(fab_fabric *fab, const char *name, unsigned policy, fab_sub **out)
{
	int rc;
	if (out)
		*out = NULL;
	if ((rc = fab__named_args(fab, name, out, "topic")))
		return rc;
	if (policy != FAB_SUB_BLOCK && policy != FAB_SUB_DROP)
		return fab__err(FAB_EINVAL, "policy must be FAB_SUB_BLOCK or FAB_SUB_DROP, not %u",
				policy);
	fab_sub *u = calloc(1, sizeof *u);
	if (!u)
		return fab__err(FAB_ENOMEM, "out of memory");
	u->fork_gen = load_relaxed(&fab__fork_gen);
	u->m.seg.fd = -1;
	u->spin = FAB__T_SPIN_INIT;
	fab__fabric_ref(fab);
	u->m.fab = fab;
	if ((rc = fab__topic_map(fab, name, &u->m)) || (rc = fab__fabric_gone(fab)) ||
	    (rc = fab__sub_join(u, policy))) { /* as fab_chan_open */
		if (u->m.hdr)
			fab__topic_unmap(&u->m);
		fab__fabric_unref(fab);
		free(u);
		return rc;
	}
	*out = u;
	return 0;
}

/* ---- receive -------------------------------------------------------------------- */

/* Move our cursor to n and publish it. */
static inline void fab__sub_advance(fab_sub *u, uint64_t n)
{
	u->cursor = n;
	/* Release: our reads of every slot below n are done before a
	 * publisher that acquires this cursor reuses them (pairs with
	 * fab__topic_rescan). */
	store_release(&u->ent->cursor, n);
	if (u->policy == FAB_SUB_BLOCK)
		fab__twake(u->m.hdr, &u->m.hdr->space_futex);
}

/* Lapped at cursor c by a slot holding position c + d (d > 0): count what
 * is lost and jump to the oldest position that may still be intact. */
static int fab__sub_jump(fab_sub *u, uint64_t c, int64_t d)
{
	fab__tmap *m = &u->m;
	if ((uint64_t)d % m->nslots != 0) {
		/* Not a position of this slot: scribbled.  Give up this one
		 * position so the next call makes progress. */
		fab__sub_advance(u, c + 1);
		return fab__err(FAB_ECORRUPT,
				"topic %s: slot of position %llu holds position %+lld", m->name,
				(unsigned long long)c, (long long)d);
	}
	/* c + d is claimed, so every position <= c + d - nslots was
	 * overwritten; the tail hint t says positions < t are claimed, so
	 * those <= t - 1 - nslots are gone too. */
	uint64_t n = c + (uint64_t)d - m->nslots + 1;
	/* Acquire: pairs with the publishers' claim-then-bump; the slots we
	 * then read carry their own ordering. */
	uint64_t tn = load_acquire(&m->hdr->tail) - m->nslots;
	if ((int64_t)(tn - n) > 0 && tn - c < (1ULL << (FAB_SEQ_BITS - 1)))
		n = tn;
	uint64_t lost = n - c;
	u->dropped += lost;
	store_relaxed(&u->ent->dropped, u->dropped);
	fetch_add_relaxed(&m->hdr->dropped_total, lost);
	fab__sub_advance(u, n);
	return 0;
}

typedef struct fab__take_arg {
	void *buf;
	size_t cap;
} fab__take_arg;

/* Take the message at our cursor, or say why not. */
static ssize_t fab__try_take(void *self, void *arg, fab__tblock *blk)
{
	fab_sub *u = self;
	fab__take_arg *a = arg;
	fab__tmap *m = &u->m;
	bool discard = !a->buf && !a->cap;
	blk->word = &m->hdr->data_futex;
	blk->behind_tag = 0;
	blk->behind_sub = -1;
	for (uint32_t guard = 0; guard < FAB__T_GUARD; guard++) {
		uint64_t c = u->cursor;
		fab_mslot *s = fab__tslot(m, c);
		/* Acquire: pairs with the publisher's store_release of FULL:
		 * length and payload are visible. */
		uint64_t w = load_acquire(&s->state);
		int64_t d = fab__seqdist(w, c);
		if (d == 0) {
			switch (FAB_SW_STATE(w)) {
			case FAB_SLOT_FULL: {
				/* One read of the length (it may change under a
				 * DROP reader), validated by the second look. */
				uint32_t len = __atomic_load_n(&s->len, __ATOMIC_RELAXED);
				/* Seqlock reader: our reads of the slot finish
				 * before we look at the state word again. */
				fence_acquire();
				if (load_relaxed(&s->state) != w)
					continue; /* overwritten: look again */
				if (unlikely(len > m->msg_size)) {
					fab__sub_advance(u, c + 1);
					return fab__err(FAB_ECORRUPT,
							"topic %s: message length %u > msg_size %u",
							m->name, len, m->msg_size);
				}
				if (!discard && len > a->cap)
					return fab__err(FAB_EMSGSIZE,
							"message of %u bytes, buffer of %zu", len,
							a->cap);
				if (len && a->buf)
					memcpy(a->buf, s + 1, len);
				fence_acquire(); /* seqlock reader, as above */
				if (load_relaxed(&s->state) != w)
					continue; /* lapped while copying */
				u->delivered++;
				store_relaxed(&u->ent->delivered, u->delivered);
				fab__sub_advance(u, c + 1);
				return (ssize_t)len;
			}
			case FAB_SLOT_SKIP:
				fab__sub_advance(u, c + 1); /* no message at c */
				continue;
			case FAB_SLOT_WRITING:
				blk->behind_tag = FAB_SW_TAG(w);
				blk->slot_idx = (uint32_t)(c & m->mask);
				blk->slot_word = w;
				return FAB_EAGAIN;
			case FAB_SLOT_FREE:
				return FAB_EAGAIN; /* a new ring: nothing yet */
			default:
				fab__sub_advance(u, c + 1);
				return fab__err(FAB_ECORRUPT, "topic %s: slot state %#llx at %llu",
						m->name, (unsigned long long)w,
						(unsigned long long)c);
			}
		}
		if (d == -(int64_t)m->nslots)
			return FAB_EAGAIN; /* the previous lap: not published yet */
		if (d > 0 && d < (int64_t)(1ULL << (FAB_SEQ_BITS - 2))) {
			int rc = fab__sub_jump(u, c, d);
			if (rc)
				return rc;
			continue;
		}
		fab__sub_advance(u, c + 1);
		return fab__err(FAB_ECORRUPT, "topic %s: slot state %#llx at %llu", m->name,
				(unsigned long long)w, (unsigned long long)c);
	}
	return fab__err(FAB_ECORRUPT, "topic %s: no progress reading", m->name);
}

/* fab__try_take plus a check that our entry is still ours (only a
 * scribbled segment, or a recovery that wrongly found us dead, takes it). */
static ssize_t fab__try_take_checked(void *self, void *arg, fab__tblock *blk)
{
	fab_sub *u = self;
	ssize_t r = fab__try_take(self, arg, blk);
	if (r == FAB_EAGAIN && unlikely(load_relaxed(&u->ent->sw) != u->word))
		return fab__err(FAB_ECORRUPT, "topic %s: this subscription was removed", u->m.name);
	return r;
}

ssize_t fab_sub_recv(fab_sub *u, void *buf, size_t cap, fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__sub_check(u)))
		return rc;
	fab__pulse(fab__calls(u->m.fab));
	if (!buf && cap)
		return fab__err(FAB_EINVAL, "NULL buffer with capacity %zu", cap);
	if (ctx && (rc = fab__ctx_valid(ctx)))
		return rc;
	fab__take_arg a = {.buf = buf, .cap = cap};
	fab__tblock blk;
	ssize_t r = fab__try_take(u, &a, &blk);
	if (r != FAB_EAGAIN)
		return r;
	return fab__twait(&u->m, &u->spin, &u->m.hdr->data_waiters, ctx, fab__try_take_checked, u,
			  &a, u);
}

uint64_t fab_sub_dropped(fab_sub *u)
{
	if (!u || u->fork_gen != load_relaxed(&fab__fork_gen))
		return 0;
	return u->dropped;
}

void fab_sub_release(fab_sub *u)
{
	if (!u)
		return;
	if (u->fork_gen == load_relaxed(&fab__fork_gen) && u->m.hdr) {
		/* Release: our reads of the slots are done before publishers stop
		 * counting us.  From our exact word, so an entry pruned and
		 * re-claimed meanwhile is left alone. */
		uint64_t w = u->word;
		atomic_compare_exchange_strong_explicit(
		    &u->ent->sw, &w, FAB_TSUB_MAKE(FAB_TSUB_GEN(w), 0, 0, FAB_TSUB_FREE),
		    memory_order_release, memory_order_relaxed);
		/* Publishers blocked on us may go on. */
		fab__twake(u->m.hdr, &u->m.hdr->space_futex);
	}
	/* In a child after fork, only the local copy is freed: the entry
	 * belongs to the parent. */
	if (u->m.hdr)
		fab__topic_unmap(&u->m);
	if (u->m.fab)
		fab__fabric_unref(u->m.fab);
	free(u);
}

/* ---- validation and recovery ----------------------------------------------- */

int fab__topic_validate(fab_topic *t)
{
	int rc;
	if ((rc = fab__topic_check(t)))
		return rc;
	fab__tmap *m = &t->m;
	/* A diagnostic snapshot: acquire loads, no pairing required (a
	 * concurrent publish may make a consistent ring look off by a lap,
	 * which the bounds below allow). */
	uint64_t tail = load_acquire(&m->hdr->tail);
	for (uint32_t i = 0; i < m->nslots; i++) {
		fab_mslot *s = (fab_mslot *)(m->slots + (size_t)i * m->slot_size);
		uint64_t w = load_acquire(&s->state);
		uint32_t st = FAB_SW_STATE(w);
		int64_t d = fab__seqdist(w, tail);
		if (st > FAB_SLOT_SKIP || st == FAB_SLOT_READING)
			return fab__err(FAB_ECORRUPT, "topic %s: slot %u bad state %u", m->name, i,
					st);
		if ((FAB_SW_SEQ(w) & m->mask) != i)
			return fab__err(FAB_ECORRUPT,
					"topic %s: slot %u holds a position of slot %llu", m->name,
					i, (unsigned long long)(FAB_SW_SEQ(w) & m->mask));
		if (d < -2 * (int64_t)m->nslots || d > (int64_t)m->nslots)
			return fab__err(FAB_ECORRUPT,
					"topic %s: slot %u is %lld positions from tail", m->name, i,
					(long long)d);
		if (st == FAB_SLOT_FULL && s->len > m->msg_size)
			return fab__err(FAB_ECORRUPT, "topic %s: slot %u bad length", m->name, i);
	}
	for (uint32_t i = 0; i < m->sub_max; i++) {
		uint64_t w = load_acquire(&m->subs[i].sw);
		uint32_t st = FAB_TSUB_STATE(w), pol = FAB_TSUB_POLICY(w);
		if (st > FAB_TSUB_ACTIVE ||
		    (st != FAB_TSUB_FREE && pol != FAB_SUB_BLOCK && pol != FAB_SUB_DROP))
			return fab__err(FAB_ECORRUPT, "topic %s: subscriber %u bad word %#llx",
					m->name, i, (unsigned long long)w);
		if (st == FAB_TSUB_ACTIVE &&
		    (int64_t)(load_acquire(&m->subs[i].cursor) - tail) > (int64_t)m->nslots)
			return fab__err(FAB_ECORRUPT, "topic %s: subscriber %u ahead of tail",
					m->name, i);
	}
	return 0;
}

void fab__topic_uncount_publisher(fab_fabric *fab, uint32_t reg_idx, int64_t slept_ns)
{
	if (reg_idx >= FAB_MAX_CHANS)
		return;
	fab_chan_ent *e = &fab->chans[reg_idx];
	if (load_acquire(&e->state) != FAB_ENT_LIVE || e->type != FAB_OBJ_TOPIC)
		return; /* destroyed since: its count went with it */
	char name[FAB_NAME_MAX + 1];
	memcpy(name, e->name, FAB_NAME_MAX);
	name[FAB_NAME_MAX] = 0;
	if (!fab__name_ok(name))
		return;
	fab__tmap m;
	memset(&m, 0, sizeof m);
	if (fab__topic_map(fab, name, &m))
		return;
	/* A topic created after the sleep began is another one under the
	 * same registry index (found by review: recovery took a live
	 * publisher's count off it, and that publisher's own uncount then
	 * wrapped the gauge).  0: a topic made before the field, unknown. */
	int64_t born = m.hdr->created_mono_ns;
	if (!born || born <= slept_ns)
		fab__gauge_dec(&m.hdr->space_waiters); /* never below zero */
	fab__topic_unmap(&m);
}

int fab__topic_recover(fab_fabric *fab, fab_chan_ent *e, uint32_t st, const char *name, int *fail)
{
	fab__tmap m;
	memset(&m, 0, sizeof m);
	if (st == FAB_ENT_CREATING) {
		/* 0: a creator that has claimed the entry and not yet written
		 * its tag (fab__reg_claim), i.e. alive. */
		uint32_t owner = load_relaxed(&e->owner);
		if (owner == 0 || fab__tag_alive(fab, owner))
			return 0;
		/* Its creator died: keep a finished segment, drop the rest. */
		int mrc = fab__topic_map(fab, name, &m);
		if (mrc == 0) {
			fab__topic_unmap(&m);
			/* acq_rel (cas) from CREATING: one recoverer settles it. */
			cas(&e->state, &st, FAB_ENT_LIVE);
			return 1;
		}
		if (mrc == FAB_EINVAL)
			return -1; /* a channel's segment under a stale type */
		if (mrc != FAB_ECORRUPT && mrc != FAB_ENOENT)
			return 0; /* a passing failure (memory, fds): not evidence */
		char path[128];
		uint32_t seg_owner = 0;
		fab__chan_path(path, sizeof path, fab->name, name);
		if (!fab__seg_unlinkable(path, &seg_owner))
			return 0; /* another user's: as recover.c, for its owner */
		if (cas(&e->state, &st, FAB_ENT_FREE)) {
			/* No stale tag on a free entry (fab__reg_claim). */
			cas(&e->owner, &owner, 0);
			shm_unlink(path);
		}
		return 1;
	}
	int mrc = fab__topic_map(fab, name, &m);
	int merr = errno;
	if (mrc == FAB_EINVAL)
		return -1;
	if (mrc && !fab__passing_failure(mrc, merr))
		return 0; /* removed meanwhile, or not ours to repair: skip it */
	if (mrc) {
		/* A passing failure (no fd, no memory): not repaired. */
		if (!*fail)
			*fail = mrc;
		return 0;
	}
	int fixed = fab__topic_repair(&m);
	fab__topic_unmap(&m);
	return fixed;
}
