/*
 * chan.c - channels: create/open/release/close/destroy, send and receive
 * (blocking, try_, zero-copy, batch), and the wait path shared by all of
 * them.  The ring files do the lock-free part; this file adds Go's
 * semantics (exact capacity, close quorum, unbuffered rendezvous) and the
 * sleep/wake protocol.
 *
 * Wait path: try, spin (adaptive budget), yield a little, then announce in
 * the waiter count, re-check, and sleep on the channel's futex word together
 * with the context's words.  A waiter stuck behind a slot held by another
 * process sleeps with a growing timeout and checks that holder's liveness,
 * running recovery if it died, so no waiter depends on a dead process.
 */
#include "internal.h"
#include "geom.h"
#include "ring_spsc.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FAB__SPIN_MIN 32u
#define FAB__SPIN_MAX 4096u
#define FAB__SPIN_INIT 512u
#define FAB__INFLIGHT_MAX 1024u  /* leases one handle may hold */
#define FAB__DELIVERIES_MAX 1000u
#define FAB__YIELDS 8
#define FAB__HDR_BYTES FAB_CHAN_HDR_BYTES

static _Atomic uint32_t fab__serial;

static void fab__alo_give_back(fab_chan *ch);

/* ---- handle checks ---------------------------------------------------- */

static inline int fab__chan_check(fab_chan *ch, unsigned need)
{
	if (unlikely(!ch))
		return fab__err(FAB_EINVAL, "NULL channel handle");
	if (unlikely(ch->fork_gen != load_relaxed(&fab__fork_gen)))
		return fab__err(FAB_EINVAL, "channel handle inherited across fork(); open a new one");
	if (unlikely(need && !(ch->role & need)))
		return fab__err(FAB_EPERM, "channel %s: handle lacks the %s role", ch->name,
				need == FAB_SEND ? "send" : "receive");
	fab__pulse(ch->calls);
	return 0;
}

/* ---- wake (Dekker, waker half) ---------------------------------------- */

/*
 * Each wait word is a sequence counter (bits 1..31) plus a "sleepers
 * present" bit (bit 0).  A sleeper sets the bit before its last look; a
 * waker that finds the bit set clears it, bumps the sequence and wakes every
 * sleeper on the word.  So one FUTEX_WAKE serves one sleep episode however
 * many messages are published meanwhile, and the fast path is one plain
 * load of a line that only changes when someone goes to sleep.
 */
static inline void fab__wake(fab_chan *ch, _Atomic uint32_t *word)
{
	if (unlikely(fab__wake_word(word)))
		fetch_add_relaxed(&ch->hdr->futex_wakes, 1);
}

void fab__wake_receivers(fab_chan *ch)
{
	fab__wake(ch, &ch->hdr->recv_futex);
}

void fab__wake_senders(fab_chan *ch)
{
	fab__wake(ch, &ch->hdr->send_futex);
}

/* Wake everyone unconditionally (close, recovery): +2 keeps the bit. */
void fab__wake_all(fab_chan_hdr *h)
{
	fence_seq_cst();
	atomic_fetch_add_explicit(&h->recv_futex, 2, memory_order_release);
	atomic_fetch_add_explicit(&h->send_futex, 2, memory_order_release);
	fab__futex_wake(&h->recv_futex, INT_MAX);
	fab__futex_wake(&h->send_futex, INT_MAX);
}

/* ---- generic wait ----------------------------------------------------- */

typedef int (*fab__try_fn)(fab_chan *ch, void *arg, fab__block *blk);

/*
 * The sleep marks (layout.h FAB_ATT_SLEEP_*): a thread about to sleep in a
 * blocking send or receive counts itself in the channel's gauge
 * (send_waiters / recv_waiters), then marks its handle's attach word; on
 * waking it clears the mark, then uncounts itself.  So a mark always stands
 * for a count, and the one CAS that clears a dead handle's word
 * (fab__chan_recover) takes its sleepers out of the counts exactly once.
 * The blocked gauges users see (fab_chan_stats, the inspector: fabctl and
 * /metrics) count the marks themselves, since 28 Nov (seventh session).
 * Until 28 Nov a process killed while asleep left the gauge one high for
 * good: fabctl, fab_chan_stats and /metrics (fab_channel_blocked_*) showed
 * a blocked process that did not exist, and under fabd, whose watchdog
 * kills hung stages, the gauge drifted up with every such kill.  A kill
 * between the count and the mark, or between the unmark and the uncount,
 * still leaves the count one high (never low); the gauges, counting marks,
 * are exact, and the count's only other reader, recovery, at worst wakes
 * the channel's sleepers once more than needed.  One mark per direction
 * and handle: a handle is used by one thread at a time.
 */
bool fab__sleep_mark(fab_chan *ch, uint64_t mark)
{
	if (ch->attach_idx < 0)
		return false;
	_Atomic uint64_t *a = &ch->attach[ch->attach_idx];
	uint64_t id = FAB_ATT_MAKE(ch->fab->tag, ch->role, ch->serial);
	uint64_t w = load_relaxed(a);
	/* Relaxed: the mark publishes nothing; recovery acts on the word it
	 * clears by CAS, and the count went up before (program order is
	 * enough for a recoverer of a dead process: it runs after our death). */
	while (FAB_ATT_ID(w) == id && !(w & mark))
		if (atomic_compare_exchange_weak_explicit(a, &w, w | mark, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	return false; /* not our word any more (taken for dead), or marked */
}

/* Clear a mark fab__sleep_mark set.  False if the word is no longer ours:
 * recovery cleared it and took our count out already. */
bool fab__sleep_unmark(fab_chan *ch, uint64_t mark)
{
	_Atomic uint64_t *a = &ch->attach[ch->attach_idx];
	uint64_t id = FAB_ATT_MAKE(ch->fab->tag, ch->role, ch->serial);
	uint64_t w = load_relaxed(a);
	while (FAB_ATT_ID(w) == id && (w & mark))
		if (atomic_compare_exchange_weak_explicit(a, &w, w & ~mark, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	return false;
}

/*
 * Run try() until it stops returning FAB_EAGAIN, the context ends, or an
 * error.  dir_recv selects the word: receivers sleep on recv_futex, senders
 * on send_futex.  Returns try()'s result or the context's error.
 */
static int fab__wait(fab_chan *ch, int dir_recv, fab_ctx *ctx, fab__try_fn try, void *arg)
{
	fab__block blk;
	int r = try(ch, arg, &blk);
	if (r != FAB_EAGAIN)
		return r;
	if (ctx && (r = fab__ctx_done(ctx)))
		return fab__ctx_fail(r);

	/* Spin with exponential back-off (1..64 pauses between looks): a
	 * caught-up peer that polls the other side's line on every pause
	 * steals it from the writer once per message (PLATFORM §9). */
	uint32_t *budget = dir_recv ? &ch->spin_recv : &ch->spin_send;
	uint32_t backoff = 1;
	for (uint32_t i = 0; i < *budget; i += backoff) {
		for (uint32_t k = 0; k < backoff; k++)
			cpu_relax();
		if (backoff < 64)
			backoff <<= 1;
		r = try(ch, arg, &blk);
		if (r != FAB_EAGAIN) {
			if (*budget < FAB__SPIN_MAX)
				*budget *= 2;
			return r;
		}
	}
	if (*budget > FAB__SPIN_MIN)
		*budget /= 2;
	for (int i = 0; i < FAB__YIELDS; i++) {
		sched_yield();
		r = try(ch, arg, &blk);
		if (r != FAB_EAGAIN)
			return r;
		if (ctx && (r = fab__ctx_done(ctx)))
			return fab__ctx_fail(r);
	}

	fab_chan_hdr *h = ch->hdr;
	_Atomic uint32_t *word = dir_recv ? &h->recv_futex : &h->send_futex;
	_Atomic uint32_t *waiters = dir_recv ? &h->recv_waiters : &h->send_waiters;
	/* A gauge for fabctl, stats and /metrics, with this handle's sleep
	 * mark in its attach word (fab__sleep_mark). */
	fetch_add_relaxed(waiters, 1);
	uint64_t mark = dir_recv ? FAB_ATT_SLEEP_RECV : FAB_ATT_SLEEP_SEND;
	bool marked = fab__sleep_mark(ch, mark);
	uint64_t what = FAB_WAIT_MAKE(FAB_WAIT_CHAN, dir_recv ? FAB_WAIT_RECV : FAB_WAIT_SEND, 1,
				      ch->reg_idx);
	fab__wait_mark(ch->fab, what);
	fab__hist_flush(&ch->lat, &h->latency); /* an idle handle's figures are visible */
	int64_t slept_from = 0; /* the first futex sleep, for the wait histogram */
	/* Liveness poll when behind another's slot: the first after 1 ms, then
	 * doubling to 100 ms.  The due time is kept across wake-ups, so a
	 * waiter woken often (later commits) still polls on time. */
	int64_t poll_ns = 1000000, next_poll = 0;
	/* Receiving on an open at-least-once channel with nothing to take:
	 * leases that other handles hold come back if their holder dies, but
	 * without a broker nobody else might notice (found by a user trial:
	 * the idle workers of a pool never got a killed worker's message
	 * until someone ran fab_fabric_recover).  While such leases exist, look
	 * at their holders: after 10 ms, then doubling to 1 s; the channel of
	 * a dead one is recovered, which gives its leases back.  No lease
	 * held elsewhere, no timer: an idle receiver still sleeps for good. */
	bool watch = dir_recv && ch->delivery == FAB_AT_LEAST_ONCE && ch->ring == FAB_RING_MPMC;
	int64_t watch_ns = 10000000, next_watch = 0;
	for (;;) {
		/* Dekker, sleeper half: set the sleepers bit (seq_cst RMW), make
		 * it visible to every waker (membarrier, only when we set it:
		 * if it was set already, whoever set it did that), then take the
		 * last look, then sleep only if the word is unchanged.  Pairs
		 * with fab__wake. */
		uint32_t v = fab__sleep_announce(word);
		/* Unbuffered: a sender whose offer we missed (a select's send
		 * case, fab__send_unbuffered_now, withdraws after 2 ms and sleeps
		 * until a receiver announces itself) must hear that we still
		 * wait, each time we go back to sleep.  After our announce, so
		 * its next offer's wake sees our bit. */
		if (dir_recv && ch->capacity == 0)
			fab__wake_senders(ch);
		r = try(ch, arg, &blk);
		if (r != FAB_EAGAIN)
			break;
		if (ctx && (r = fab__ctx_done(ctx))) {
			fab__ctx_fail(r);
			break;
		}
		fab__waitset ws = {.n = 1, .deadline_ns = INT64_MAX};
		ws.word[0] = word;
		ws.val[0] = v;
		fab__ctx_arm(ctx, &ws);
		if (blk.behind_tag) {
			int64_t now = fab__now_ns();
			if (next_poll == 0)
				next_poll = now + poll_ns;
			if (now >= next_poll) {
				if (!fab__tag_alive(ch->fab, blk.behind_tag))
					fab__chan_recover(ch, ch->fab, blk.behind_tag);
				if (poll_ns < 100000000)
					poll_ns *= 2;
				next_poll = now + poll_ns;
				continue; /* look again at once */
			}
			if (next_poll < ws.deadline_ns)
				ws.deadline_ns = next_poll;
		} else {
			next_poll = 0;
			uint32_t dead = 0;
			int64_t now = watch ? fab__now_ns() : 0;
			bool due = watch && next_watch && now >= next_watch;
			if (watch && fab__mpmc_lessees(ch, due, &dead)) {
				if (due) {
					if (watch_ns < 1000000000)
						watch_ns *= 2;
					next_watch = now + watch_ns;
					if (dead) {
						fab__chan_recover(ch, ch->fab, dead);
						continue; /* look again at once */
					}
				} else if (!next_watch) {
					next_watch = now + watch_ns;
				}
				if (next_watch < ws.deadline_ns)
					ws.deadline_ns = next_watch;
			} else {
				next_watch = 0;
				watch_ns = 10000000;
			}
		}
		fetch_add_relaxed(&h->futex_waits, 1);
		if (!slept_from)
			slept_from = fab__now_ns();
		int wr = fab__futex_waitv(&ws);
		if (wr == FAB_ESYS) {
			r = wr;
			break;
		}
		/* Woken: look before re-arming.  The waker usually published
		 * what we wait for, and re-arming costs a membarrier (~7 us
		 * here) that would double a sleeping round trip. */
		r = try(ch, arg, &blk);
		if (r != FAB_EAGAIN)
			break;
	}
	fab__wait_unmark(ch->fab, what);
	if (!marked || fab__sleep_unmark(ch, mark))
		atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
	if (slept_from)
		fab__hist_add(dir_recv ? &h->recv_wait : &h->send_wait, fab__now_ns() - slept_from);
	return r;
}

/* ---- spsc ends ---------------------------------------------------------- */

static int fab__spsc_attach_end(fab_chan *ch, _Atomic uint64_t *end)
{
	uint64_t mine = ((uint64_t)ch->fab->tag << 32) | ch->serial;
	uint64_t cur = load_acquire(end);
	for (int tries = 0; tries < 8; tries++) {
		if (cur == mine)
			return 0;
		if (cur == 0) {
			/* acq_rel: we see the previous holder's last index store. */
			if (cas(end, &cur, mine))
				return 0;
			continue;
		}
		uint32_t tag = (uint32_t)(cur >> 32);
		if (fab__tag_alive(ch->fab, tag))
			return fab__err(FAB_EBUSY, "channel %s: spsc end held by a live process (pid %u)",
					ch->name,
					load_relaxed(&ch->fab->procs[FAB_TAG_IDX(tag)].pid));
		/* The holder died: hand the end over.  It may have died between
		 * publishing (a message, or room) and its wake: wake everyone,
		 * as recovery does, or the other side may sleep for good. */
		if (cas(end, &cur, mine)) {
			fetch_add_relaxed(&ch->hdr->recovered, 1);
			fab__wake_all(ch->hdr);
			return 0;
		}
	}
	return fab__err(FAB_EBUSY, "channel %s: spsc end contended", ch->name);
}

static int fab__spsc_take_send_end(fab_chan *ch)
{
	if (ch->end_word & 1)
		return 0;
	int rc = fab__spsc_attach_end(ch, &ch->hdr->spsc_sender);
	if (rc)
		return rc;
	ch->end_word |= 1;
	ch->tail_local = fab__spsc_find_tail(ch);
	ch->send_limit = ch->tail_local; /* first send asks the ring */
	/* A sender killed between its commit word and its hint left the
	 * hint behind: len, stats and fabd's leftover check read it. */
	fab__spsc_hint_tail(ch, ch->tail_local);
	return 0;
}

static int fab__spsc_take_recv_end(fab_chan *ch)
{
	if (ch->end_word & 2)
		return 0;
	int rc = fab__spsc_attach_end(ch, &ch->hdr->spsc_receiver);
	if (rc)
		return rc;
	ch->end_word |= 2;
	ch->head_local = fab__spsc_find_head(ch);
	return 0;
}

static void fab__spsc_drop_end(fab_chan *ch, _Atomic uint64_t *end)
{
	uint64_t mine = ((uint64_t)ch->fab->tag << 32) | ch->serial;
	/* Release: our index stores are visible to the next holder. */
	atomic_compare_exchange_strong_explicit(end, &mine, 0, memory_order_release,
						memory_order_relaxed);
}

/* ---- mapping ------------------------------------------------------------- */

/* Geometry of a channel (geom.h): the same function builds a new segment
 * and validates an existing one. */
typedef fab_geom fab__geom;

static int fab__geometry(uint32_t kind, uint32_t delivery, uint32_t capacity, uint32_t msg_size,
			 fab__geom *g)
{
	if (fab_chan_geometry(kind, delivery, capacity, msg_size, g) < 0)
		return fab__err(FAB_ENOMEM, "channel of %llu bytes exceeds the 4 GiB limit",
				(unsigned long long)g->total);
	return 0;
}

/* Map channel `name` of `fab` into ch (no attach).  Validates everything the
 * library later relies on; fields are copied into ch so a scribbled header
 * cannot move our bounds afterwards. */
int fab__chan_map(fab_fabric *fab, const char *name, fab_chan *ch)
{
	char path[128];
	fab__chan_path(path, sizeof path, fab->name, name);
	ch->seg.fd = -1;
	int rc = fab__seg_open(path, FAB__HDR_BYTES, true, &ch->seg);
	if (rc)
		return rc;
	fab_chan_hdr *h = ch->seg.base;
	uint32_t v;
	if ((rc = fab__seg_wait_version(&h->version, &v)))
		goto fail;
	rc = FAB_ECORRUPT;
	if (h->magic == FAB_TOPIC_MAGIC) {
		rc = fab__err(FAB_EINVAL, "%s is a topic, not a channel (fab_topic_open)", name);
		goto fail;
	}
	if (h->magic != FAB_CHAN_MAGIC) {
		fab__err(rc, "channel %s: bad magic", name);
		goto fail;
	}
	if ((v >> 16) != FAB_LAYOUT_MAJOR) {
		rc = fab__err(FAB_EVERSION, "channel %s: layout %u.%u, this library speaks %u.x",
			      name, v >> 16, v & 0xffff, FAB_LAYOUT_MAJOR);
		goto fail;
	}
	/* The minor too, both ways: the header differs between minors, and
	 * a library of another minor attaching to this channel would not keep
	 * attach_hi (1.3), so our non-blocking sends would miss its waiting
	 * receivers.  A control segment of a newer minor is fine; a channel
	 * segment is not.  Checked before the sizes, so the answer is this
	 * and not FAB_ECORRUPT. */
	if ((v & 0xffff) != FAB_LAYOUT_MINOR) {
		rc = fab__err(FAB_EVERSION,
			      "channel %s: layout %u.%u, this library needs %u.%u exactly (another "
			      "libfab version made it); destroy and recreate the channel",
			      name, v >> 16, v & 0xffff, FAB_LAYOUT_MAJOR, FAB_LAYOUT_MINOR);
		goto fail;
	}
	uint32_t kind = h->kind, cap = h->capacity, msz = h->msg_size, dlv = h->delivery;
	uint32_t mif = h->max_inflight, mdl = h->max_deliveries;
	fab__geom g;
	if ((kind != FAB_SPSC && kind != FAB_MPMC) || cap > FAB_CAPACITY_MAX ||
	    (dlv != FAB_AT_MOST_ONCE && dlv != FAB_AT_LEAST_ONCE) ||
	    (dlv == FAB_AT_LEAST_ONCE &&
	     (mif == 0 || mif > FAB__INFLIGHT_MAX || mdl == 0 || mdl > FAB__DELIVERIES_MAX)) ||
	    msz > FAB_MSG_SIZE_MAX || fab__geometry(kind, dlv, cap, msz, &g) ||
	    h->hdr_size != sizeof(fab_chan_hdr) || h->ring != g.ring || h->nslots != g.nslots ||
	    h->slot_size != g.slot_size || h->attach_off != g.attach_off ||
	    h->ents_off != g.ents_off || h->slots_off != g.slots_off || h->total_size != g.total ||
	    g.total > ch->seg.size || h->attach_max != FAB_ATTACH_MAX || h->producers == 0 ||
	    h->producers > FAB_PRODUCERS_MAX) {
		fab__err(rc, "channel %s: header does not match the segment", name);
		goto fail;
	}
	ch->hdr = h;
	ch->fab = fab;
	ch->kind = kind;
	ch->ring = g.ring;
	ch->capacity = cap;
	ch->cap_eff = cap ? cap : 1;
	ch->msg_size = msz;
	ch->slot_size = g.slot_size;
	ch->nslots = g.nslots;
	ch->mask = g.nslots - 1;
	ch->attach_max = FAB_ATTACH_MAX;
	ch->attach = (_Atomic uint64_t *)((uint8_t *)h + g.attach_off);
	ch->ents = (uint8_t *)h + g.ents_off;
	ch->ent_stride = g.ent_stride;
	ch->payload_off = g.payload_off;
	if (g.ring == FAB_RING_SPSC_INLINE)
		ch->ring = FAB_RING_SPSC; /* same ring, words placed differently */
	ch->delivery = dlv;
	ch->mhdr = dlv == FAB_AT_LEAST_ONCE ? (uint32_t)sizeof(fab_mslot_alo)
					    : (uint32_t)sizeof(fab_mslot);
	int ri = fab__reg_find(fab, name);
	ch->reg_idx = ri >= 0 ? (uint32_t)ri : UINT32_MAX;
	ch->calls = fab__calls(fab);
	ch->max_inflight = dlv == FAB_AT_LEAST_ONCE ? mif : 0;
	ch->max_deliveries = dlv == FAB_AT_LEAST_ONCE ? mdl : 0;
	ch->dead_letter[0] = 0;
	if (dlv == FAB_AT_LEAST_ONCE) {
		char dl[FAB_NAME_MAX + 1];
		memcpy(dl, h->dead_letter, FAB_NAME_MAX);
		dl[FAB_NAME_MAX] = 0;
		if (dl[0] && fab__name_ok(dl))
			snprintf(ch->dead_letter, sizeof ch->dead_letter, "%s", dl);
	}
	ch->slots = (uint8_t *)h + g.slots_off;
	snprintf(ch->name, sizeof ch->name, "%s", name);
	return 0;
fail:
	fab__seg_unmap(&ch->seg);
	return rc;
}

void fab__chan_unmap(fab_chan *ch)
{
	fab__seg_unmap(&ch->seg);
	ch->hdr = NULL;
}

/* Raise the channel's attach_hi to at least i + 1 (never lower it). */
static void fab__attach_hi_raise(fab_chan *ch, uint32_t i)
{
	_Atomic uint32_t *hi = &ch->hdr->attach_hi;
	uint32_t cur = load_relaxed(hi); /* a first guess for the CAS */
	/* The raise is sequenced before every fab__ready_raise of this
	 * handle, whose seq_cst (so release) increment of recv_ready a sender
	 * acquires before it loads attach_hi: a sender that counts this
	 * handle's receiver sees attach_hi > i (fab__ready_confirm).  That
	 * needs no order of the raise's own; `cas` is acq_rel anyway.  A
	 * CAS-max loop, not a store: attachers race, and the mark may only
	 * grow.  It is never lowered, not even when the top handle detaches:
	 * a lowering (a look at the table, then a store) would race with an
	 * attach that claimed a word above the new mark and raised it in
	 * between, and that attacher's receivers would go unseen. */
	while (cur < i + 1 && !cas(hi, &cur, i + 1))
		;
}

static int fab__attach(fab_chan *ch)
{
	uint64_t mine = FAB_ATT_MAKE(ch->fab->tag, ch->role, ch->serial);
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < ch->attach_max; i++) {
			uint64_t z = 0;
			if (load_relaxed(&ch->attach[i]) == 0 && cas(&ch->attach[i], &z, mine)) {
				/* Before the handle is returned, so before it can
				 * count a waiting receiver in word i.  A process
				 * killed between the claim and the raise leaves a
				 * word above the mark that counts no receiver;
				 * recovery, which scans the whole table, clears it. */
				fab__attach_hi_raise(ch, i);
				ch->attach_idx = (int)i;
				return 0;
			}
		}
		if (pass == 0)
			fab__chan_recover(ch, ch->fab, 0);
	}
	return fab__err(FAB_ENOMEM, "channel %s: attach table full", ch->name);
}

static fab_chan *fab__chan_alloc(fab_fabric *fab, unsigned role)
{
	fab_chan *ch = calloc(1, sizeof *ch);
	if (!ch)
		return NULL;
	ch->fork_gen = load_relaxed(&fab__fork_gen);
	ch->role = role;
	ch->attach_idx = -1;
	ch->seg.fd = -1;
	ch->spin_send = ch->spin_recv = FAB__SPIN_INIT;
	ch->serial = (atomic_fetch_add_explicit(&fab__serial, 1, memory_order_relaxed) + 1) & 0xffffffu;
	/* A producer is the stage replica under fabd (FAB_PRODUCER_ID), the
	 * handle otherwise. */
	const char *pid = getenv("FAB_PRODUCER_ID");
	if (pid && *pid) {
		ch->producer_id = fab__producer_hash(pid);
	} else {
		ch->producer_id = fab__random64();
	}
	(void)fab;
	return ch;
}

static void fab__chan_free(fab_chan *ch)
{
	if (ch->hdr)
		fab__chan_unmap(ch);
	free(ch->leases);
	if (ch->fab)
		fab__fabric_unref(ch->fab);
	free(ch);
}

/* Finish opening: attach, take spsc ends for the roles asked. */
static int fab__chan_attach_roles(fab_chan *ch, int take_ends)
{
	if (ch->delivery == FAB_AT_LEAST_ONCE && (ch->role & FAB_RECV)) {
		ch->leases = calloc(ch->max_inflight, sizeof *ch->leases);
		if (!ch->leases)
			return fab__err(FAB_ENOMEM, "out of memory");
	}
	int rc = fab__attach(ch);
	if (rc)
		return rc;
	if (ch->kind == FAB_SPSC && ch->ring == FAB_RING_SPSC && take_ends) {
		if ((ch->role & FAB_SEND) && (rc = fab__spsc_take_send_end(ch)))
			return rc;
		if ((ch->role & FAB_RECV) && (rc = fab__spsc_take_recv_end(ch)))
			return rc;
	}
	if (ch->kind == FAB_SPSC && ch->ring == FAB_RING_MPMC && take_ends) {
		/* Unbuffered spsc: the ends are exclusive too, though the ring
		 * is the mpmc one. */
		if ((ch->role & FAB_SEND) &&
		    (rc = fab__spsc_attach_end(ch, &ch->hdr->spsc_sender)) == 0)
			ch->end_word |= 1;
		if (rc)
			return rc;
		if ((ch->role & FAB_RECV) &&
		    (rc = fab__spsc_attach_end(ch, &ch->hdr->spsc_receiver)) == 0)
			ch->end_word |= 2;
		if (rc)
			return rc;
	}
	return 0;
}

static void fab__chan_detach(fab_chan *ch)
{
	if (ch->end_word & 1)
		fab__spsc_drop_end(ch, &ch->hdr->spsc_sender);
	if (ch->end_word & 2)
		fab__spsc_drop_end(ch, &ch->hdr->spsc_receiver);
	ch->end_word = 0;
	if (ch->attach_idx >= 0) {
		/* Our word, with whatever counts and marks it still carries
		 * (none, unless a wait ended without its unmark): they go with
		 * it, as when recovery clears a dead handle's word. */
		_Atomic uint64_t *a = &ch->attach[ch->attach_idx];
		uint64_t id = FAB_ATT_MAKE(ch->fab->tag, ch->role, ch->serial);
		uint64_t w = load_relaxed(a);
		while (FAB_ATT_ID(w) == id) {
			if (!cas(a, &w, 0))
				continue;
			fab__att_cleared(ch->hdr, w);
			break;
		}
		ch->attach_idx = -1;
	}
}

/* ---- registry ------------------------------------------------------------ */

int fab__reg_find(fab_fabric *fab, const char *name)
{
	for (uint32_t i = 0; i < FAB_MAX_CHANS; i++) {
		fab_chan_ent *e = &fab->chans[i];
		uint32_t st = load_acquire(&e->state);
		if (st == FAB_ENT_FREE)
			continue;
		if (strncmp(e->name, name, sizeof e->name) == 0)
			return (int)i;
	}
	return -1;
}

/* 0 when no channel or topic is named `name`; else FAB_EEXIST with the
 * message.  An entry left CREATING by a creator that died (killed
 * mid-create: by the kernel's OOM killer when the segment's pages cross a
 * memory limit, say) is first recovered as fab_fabric_recover does, so a
 * name nobody lists is not taken until someone runs recovery (found by the
 * eleventh session: create said "exists", fabctl chan showed nothing). */
int fab__reg_name_free(fab_fabric *fab, const char *name)
{
	int i = fab__reg_find(fab, name);
	if (i < 0)
		return 0;
	fab_chan_ent *e = &fab->chans[i];
	uint32_t owner;
	if (load_acquire(&e->state) == FAB_ENT_CREATING && (owner = load_relaxed(&e->owner)) != 0 &&
	    !fab__tag_alive(fab, owner)) {
		/* Its error (some other object it could not repair) is not
		 * ours: what matters is whether the name was freed (review). */
		(void)fab_fabric_recover(fab);
		if ((i = fab__reg_find(fab, name)) < 0)
			return 0;
		e = &fab->chans[i];
		if (load_acquire(&e->state) == FAB_ENT_CREATING &&
		    (owner = load_relaxed(&e->owner)) != 0 && !fab__tag_alive(fab, owner))
			return fab__err(FAB_EEXIST,
					"a channel or topic named %s was being created in fabric %s by a "
					"process that died, and its segment could not be removed (another "
					"user's? its owner's fab_fabric_recover removes it)",
					name, fab->name);
	}
	if (load_acquire(&e->state) == FAB_ENT_CREATING)
		return fab__err(FAB_EEXIST, "a channel or topic named %s is being created in fabric %s",
				name, fab->name);
	return fab__err(FAB_EEXIST, "a %s named %s exists in fabric %s",
			e->type == FAB_OBJ_TOPIC ? "topic" : "channel", name, fab->name);
}

bool fab__seg_orphan(fab_fabric *fab, const fab_chan_ent *ours, const char *name,
		     const char *path)
{
	for (uint32_t j = 0; j < FAB_MAX_CHANS; j++) {
		const fab_chan_ent *e = &fab->chans[j];
		/* Acquire: a creator writes the name before its segment (and
		 * its LIVE); a creator of this name whose segment we met has
		 * its name in its entry by now (the O_EXCL create that failed
		 * for us came after its create). */
		if (e != ours && load_acquire(&((fab_chan_ent *)e)->state) != FAB_ENT_FREE &&
		    strncmp(e->name, name, sizeof e->name) == 0)
			return false; /* that entry's segment, or its creator's race */
	}
	uint32_t seg_owner = 0;
	if (!fab__seg_unlinkable(path, &seg_owner))
		return false;
	return shm_unlink(path) == 0;
}

/* Claim a free registry entry (CREATING, owned by us) and write the name and
 * type; NULL (FAB_ENOMEM recorded) when the table is full.  The caller
 * store-releases LIVE when the segment is ready, or FREE on failure, and
 * then clears its tag (fab__ent_unown).
 *
 * The tag goes in first, by CAS from 0 on the FREE entry, and only then the
 * state: so a CREATING entry always names its creator, and a creator killed
 * at any instruction leaves either a FREE entry (maybe with its dead tag,
 * which the next claimer or recovery clears) or a CREATING one with its
 * dead tag, which recovery settles.  Until 1.6.1 the state went first and
 * the tag was cleared before LIVE or FREE: a creator killed between the two
 * stores left CREATING with owner 0, which recovery must take for a live
 * claimer's (an older library's claim), and the name was taken for good
 * (found by an upgrade trial). */
bool fab__ent_claim(fab_fabric *fab, _Atomic uint32_t *state, _Atomic uint32_t *owner)
{
	uint32_t tag = fab->tag;
	if (load_relaxed(state) != FAB_ENT_FREE)
		return false;
	uint32_t o = load_relaxed(owner);
	/* A tag on a free entry: a claimer between its two CASes (live: leave
	 * it the entry), or one killed there or before its clear (dead: clear
	 * it). */
	if (o != 0 && (fab__tag_alive(fab, o) || !cas(owner, &o, 0)))
		return false;
	uint32_t zero = 0, st = FAB_ENT_FREE;
	if (!cas(owner, &zero, tag))
		return false;
	/* acq_rel: pairs with the release of FREE by the entry's last user;
	 * the entry is ours from here. */
	if (!cas(state, &st, FAB_ENT_CREATING)) {
		fab__ent_unown(owner, tag); /* someone of an older library took it */
		return false;
	}
	return true;
}

fab_chan_ent *fab__reg_claim(fab_fabric *fab, const char *name, uint32_t type)
{
	fab_chan_ent *ent = NULL;
	for (uint32_t i = 0; i < FAB_MAX_CHANS && !ent; i++)
		if (fab__ent_claim(fab, &fab->chans[i].state, &fab->chans[i].owner))
			ent = &fab->chans[i];
	if (!ent) {
		fab__err(FAB_ENOMEM, "registry of fabric %s is full (%u channels and topics)",
			 fab->name, FAB_MAX_CHANS);
		return NULL;
	}
	memset(ent->name, 0, sizeof ent->name);
	memcpy(ent->name, name, strlen(name));
	ent->type = type;
	return ent;
}

/* ---- create / open / release ------------------------------------------- */

static int fab__opts(const fab_chan_opts *o, unsigned fab_mode, fab_chan_opts *out)
{
	int rc;
	if ((rc = fab__chan_opts_in(o, out)))
		return rc;
	out->size = sizeof *out;
	if (out->kind == 0)
		out->kind = FAB_MPMC;
	if (out->kind != FAB_MPMC && out->kind != FAB_SPSC)
		return fab__err(FAB_EINVAL, "unknown channel kind %u", out->kind);
	if (out->delivery == 0)
		out->delivery = FAB_AT_MOST_ONCE;
	if (out->delivery != FAB_AT_MOST_ONCE && out->delivery != FAB_AT_LEAST_ONCE)
		return fab__err(FAB_EINVAL, "unknown delivery %u", out->delivery);
	if (out->delivery == FAB_AT_MOST_ONCE) {
		if (out->max_inflight || out->max_deliveries || out->dead_letter)
			return fab__err(FAB_EINVAL, "max_inflight, max_deliveries and dead_letter need "
						    "at-least-once delivery");
	} else {
		if (out->max_inflight == 0)
			out->max_inflight = 1;
		if (out->max_inflight > FAB__INFLIGHT_MAX)
			return fab__err(FAB_EINVAL, "max_inflight %u > %u", out->max_inflight,
					FAB__INFLIGHT_MAX);
		if (out->max_deliveries == 0)
			out->max_deliveries = 5;
		if (out->max_deliveries > FAB__DELIVERIES_MAX)
			return fab__err(FAB_EINVAL, "max_deliveries %u > %u", out->max_deliveries,
					FAB__DELIVERIES_MAX);
		if (out->dead_letter && !fab__name_ok(out->dead_letter))
			return fab__err(FAB_EINVAL, "bad dead_letter channel name");
	}
	if (out->producers == 0)
		out->producers = 1;
	if (out->producers > FAB_PRODUCERS_MAX)
		return fab__err(FAB_EINVAL, "producers %u > %u", out->producers, FAB_PRODUCERS_MAX);
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

static void fab__chan_init(fab_chan_hdr *h, const char *name, const fab_chan_opts *o,
			   const fab__geom *g)
{
	h->magic = FAB_CHAN_MAGIC;
	h->hdr_size = sizeof *h;
	h->total_size = g->total;
	h->kind = o->kind;
	h->ring = g->ring;
	h->delivery = o->delivery;
	if (o->delivery == FAB_AT_LEAST_ONCE) {
		h->max_inflight = o->max_inflight;
		h->max_deliveries = o->max_deliveries;
		if (o->dead_letter)
			snprintf(h->dead_letter, sizeof h->dead_letter, "%s", o->dead_letter);
	}
	h->capacity = o->capacity;
	h->msg_size = o->msg_size;
	h->slot_size = g->slot_size;
	h->nslots = g->nslots;
	h->producers = o->producers;
	h->mode = o->mode;
	h->attach_max = FAB_ATTACH_MAX;
	h->attach_off = g->attach_off;
	h->ents_off = g->ents_off;
	h->slots_off = g->slots_off;
	snprintf(h->name, sizeof h->name, "%s", name);
	/* Positions start at 0, or where FAB_TEST_START_POS says: a test hook
	 * so the anomaly tests can run a channel across 2^64 (and across the
	 * 45-bit sequence field of mpmc slot words) without 2^64 messages. */
	uint64_t start = 0;
	const char *sp = getenv("FAB_TEST_START_POS");
	if (sp && *sp)
		start = strtoull(sp, NULL, 0);
	h->start_pos = start;
	store_relaxed(&h->tail, start);
	store_relaxed(&h->head, start);
	store_relaxed(&h->redo_low, start);
	if (g->ring == FAB_RING_SPSC || g->ring == FAB_RING_SPSC_INLINE)
		fab__spsc_init((uint8_t *)h + g->ents_off, g->ent_stride, g->nslots, start);
	if (g->ring == FAB_RING_MPMC) {
		uint8_t *slots = (uint8_t *)h + g->slots_off;
		for (uint32_t k = 0; k < g->nslots; k++) {
			uint64_t p = start + k;
			fab_mslot *s = (fab_mslot *)(slots + (size_t)(p & (g->nslots - 1)) * g->slot_size);
			store_relaxed(&s->state, FAB_SW_MAKE(p, FAB_SLOT_FREE, 0));
		}
	}
	/* Pairs with fab__seg_wait_version's load_acquire in every opener:
	 * the header and the slot states are visible before the version. */
	store_release(&h->version, FAB_LAYOUT_VERSION);
}

int fab_chan_create(fab_fabric *fab, const char *name, const fab_chan_opts *opts,
		    fab_chan **out)
{
	int rc;
	if (out)
		*out = NULL; /* on every failure, *out is NULL */
	if ((rc = fab__named_args(fab, name, out, "channel")))
		return rc;
	fab_chan_opts o;
	if ((rc = fab__opts(opts, fab->mode, &o)))
		return rc;
	if (o.dead_letter && strcmp(o.dead_letter, name) == 0)
		return fab__err(FAB_EINVAL, "channel %s cannot be its own dead letter", name);
	fab__geom g;
	if ((rc = fab__geometry(o.kind, o.delivery, o.capacity, o.msg_size, &g)))
		return rc;
	if ((rc = fab__reg_name_free(fab, name)))
		return rc;

	/* Claim a registry entry first (so the table bounds the number of
	 * channels), then create the segment with O_EXCL, which settles any
	 * race between two creators of one name. */
	fab_chan_ent *ent = fab__reg_claim(fab, name, FAB_OBJ_CHAN);
	if (!ent)
		return FAB_ENOMEM;

	fab_chan *ch = fab__chan_alloc(fab, FAB_SEND | FAB_RECV);
	char path[128];
	fab__chan_path(path, sizeof path, fab->name, name);
	fab__seg seg = {.fd = -1};
	if (!ch) {
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
	fab__chan_init(seg.base, name, &o, &g);
	fab__seg_unmap(&seg); /* re-map through the validating path */
	fab__fabric_ref(fab);
	ch->fab = fab;
	if ((rc = fab__chan_map(fab, name, ch))) {
		shm_unlink(path);
		goto fail_ent;
	}
	/* The creator's handle has both roles but takes spsc ends lazily, on
	 * first use, so creating a channel does not lock others out of it. */
	if ((rc = fab__chan_attach_roles(ch, 0))) {
		shm_unlink(path);
		goto fail_ent;
	}
	atomic_fetch_add_explicit(&ent->gen, 1, memory_order_relaxed);
	/* Release: the name is visible before LIVE.  Then our tag, which
	 * matters only while CREATING: left on a LIVE entry, a destroyer
	 * killed between its state CAS and its clear left a free entry that
	 * every claimer took for a claim in progress while we lived (review).
	 * A destroyer holds the entry through `owner` before it frees it
	 * (fab_chan_destroy), so its clear never meets a later claim. */
	store_release(&ent->state, FAB_ENT_LIVE);
	fab__ent_unown(&ent->owner, fab->tag);
	*out = ch;
	return 0;

fail_ent:
	store_release(&ent->state, FAB_ENT_FREE);
	fab__ent_unown(&ent->owner, fab->tag); /* as above */
	if (ch)
		fab__chan_free(ch);
	return rc;
}

int fab_chan_open(fab_fabric *fab, const char *name, unsigned role, fab_chan **out)
{
	int rc;
	if (out)
		*out = NULL; /* on every failure, *out is NULL */
	if ((rc = fab__named_args(fab, name, out, "channel")))
		return rc;
	if (role == 0 || (role & ~(FAB_SEND | FAB_RECV)))
		return fab__err(FAB_EINVAL, "role must be FAB_SEND, FAB_RECV or both");
	fab_chan *ch = fab__chan_alloc(fab, role);
	if (!ch)
		return fab__err(FAB_ENOMEM, "out of memory");
	fab__fabric_ref(fab);
	ch->fab = fab;
	/* A handle of a destroyed fabric must not attach to what may be a
	 * new fabric's channel of that name: its owner tag indexes the old
	 * process table, where recovery would take it for dead (found by
	 * review).  Checked after the map, so the segment mapped is ours. */
	if ((rc = fab__chan_map(fab, name, ch)) || (rc = fab__fabric_gone(fab)) ||
	    (rc = fab__chan_attach_roles(ch, 1))) {
		fab__chan_detach(ch);
		fab__chan_free(ch);
		return rc;
	}
	*out = ch;
	return 0;
}

void fab_chan_release(fab_chan *ch)
{
	if (!ch)
		return;
	if (ch->fork_gen != load_relaxed(&fab__fork_gen) || !ch->hdr) {
		/* A child after fork: free our copy only; the registration
		 * belongs to the parent. */
		if (ch->hdr)
			fab__chan_unmap(ch);
		if (ch->fab)
			fab__fabric_unref(ch->fab);
		free(ch);
		return;
	}
	if (ch->reserved) {
		if (ch->ring == FAB_RING_MPMC) {
			fab__mpmc_skip(ch, ch->reserved_pos, FAB_SLOT_WRITING);
			fab__wake_receivers(ch);
		}
		ch->reserved = false;
	}
	if (ch->delivery == FAB_AT_LEAST_ONCE && ch->nleases) {
		/* Leases not acked go back for redelivery. */
		fab__alo_give_back(ch);
	} else if (ch->acquired && ch->ring == FAB_RING_MPMC) {
		/* At-most-once: an acquired, unreleased message is consumed. */
		fab__mpmc_unhold(ch, ch->acquired_pos);
		fab__wake_senders(ch);
	}
	fab__hist_flush(&ch->lat, &ch->hdr->latency);
	fab__chan_detach(ch);
	fab__chan_free(ch);
}

/*
 * Free LIVE registry entry e named `name`, holding it through `owner`
 * first (since 1.6.1): CAS owner from what it holds (0, a dead creator's
 * tag, or a creator's between its LIVE and its clear) to ours, check it is
 * still the LIVE `name` of the generation we found, CAS the state to FREE,
 * then CAS owner back to 0.  Until then a claimer passes the entry (its
 * owner is a live tag), so the clear never meets a later claim.  Before,
 * destroy read the owner, CASed LIVE -> FREE on the state alone and then
 * cleared what it had read: a destroyer paused after its find freed
 * another channel's entry created meanwhile in the same place (its segment
 * then unregistered: "exists" for good), and its late clear could wipe a
 * new claim's tag (review).  A destroyer killed while it holds the entry
 * leaves its dead tag there: on a LIVE entry it means nothing, on a FREE
 * one the next claimer or recovery clears it.
 */
static bool fab__reg_free_live(fab_fabric *fab, fab_chan_ent *e, const char *name)
{
	uint32_t me = fab->tag;
	/* Acquire: pairs with the creator's release of LIVE (gen and name
	 * written before it). */
	if (load_acquire(&e->state) != FAB_ENT_LIVE)
		return false;
	uint64_t gen = load_relaxed(&e->gen);
	uint32_t o = load_relaxed(&e->owner);
	if (me == 0) {
		/* No tag to hold it with (a handle without a process entry):
		 * the state alone, as before 1.6.1. */
		uint32_t st = FAB_ENT_LIVE;
		if (!cas(&e->state, &st, FAB_ENT_FREE))
			return false;
		atomic_fetch_add_explicit(&e->gen, 1, memory_order_relaxed);
		return true;
	}
	for (int tries = 0; !cas(&e->owner, &o, me); tries++)
		if (tries > 1000 || (o != 0 && o != me && fab__tag_alive(fab, o) &&
				     load_acquire(&e->state) != FAB_ENT_LIVE))
			return false; /* someone else's now */
	bool freed = false;
	uint32_t st = FAB_ENT_LIVE;
	if (load_relaxed(&e->gen) == gen && strncmp(e->name, name, sizeof e->name) == 0 &&
	    cas(&e->state, &st, FAB_ENT_FREE)) {
		atomic_fetch_add_explicit(&e->gen, 1, memory_order_relaxed);
		freed = true;
	}
	/* Release the hold: 0 on the entry we freed (or one that is free by
	 * now), else what it held. */
	uint32_t back = freed || load_acquire(&e->state) == FAB_ENT_FREE ? 0 : o;
	cas(&e->owner, &me, back);
	return freed;
}

int fab_chan_destroy(fab_fabric *fab, const char *name)
{
	int rc;
	if ((rc = fab__fabric_valid(fab)))
		return rc;
	if (!fab__name_ok(name))
		return fab__err(FAB_EINVAL, "bad channel name (want [A-Za-z0-9_-]{1,48})");
	/* A handle of a destroyed fabric would remove a new fabric's channel
	 * of that name (found by review). */
	if ((rc = fab__fabric_gone(fab)))
		return rc;
	int found = 0;
	char path[128];
	fab__chan_path(path, sizeof path, fab->name, name);
	/* Before the registry: a member of a shared fabric may not unlink
	 * another user's segment (/dev/shm is sticky), and freeing the entry
	 * first left a segment that still worked but was no longer registered
	 * (found by review). */
	uint32_t seg_owner = 0;
	if (!fab__seg_unlinkable(path, &seg_owner))
		return fab__err(FAB_EPERM,
				"channel %s belongs to uid %u: only its owner or root can destroy it",
				name, seg_owner);
	int i = fab__reg_find(fab, name);
	if (i >= 0 && fab__reg_free_live(fab, &fab->chans[i], name))
		found = 1;
	if (shm_unlink(path) == 0)
		found = 1;
	else if (errno == EACCES || errno == EPERM)
		return fab__err(FAB_EPERM, "%s: permission denied", path);
	else if (errno != ENOENT)
		return fab__errno("shm_unlink");
	return found ? 0 : fab__err(FAB_ENOENT, "no channel %s in fabric %s", name, fab->name);
}

/* ---- close ---------------------------------------------------------------- */

uint64_t fab__producer_hash(const char *id)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const char *p = id; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	return h ? h : 1;
}

/* Settle a close: if the recorded closer ids, less those a rejoin withdrew,
 * reach the quorum, the channel is closed and every sleeper woken -- again
 * if need be.  Idempotent; run by every close (also a refused one), by a
 * rejoin that finds the channel closing, and by recovery, so a closer
 * killed between recording its id and counting it, between the decision
 * and `closed`, or between `closed` and the wake, stalls nobody.  1 if the
 * channel is closed.
 *
 * The decision is one read-modify-write of `close_epoch` (setting
 * FAB_CLOSE_DECIDED) from the value read before counting, and every
 * withdrawal by fab_chan_rejoin_as bumps that word after setting its
 * `rejoined` bit: so either the rejoin's bump comes first, our CAS fails and
 * we count again (now without the withdrawn id), or the decision comes
 * first and the rejoin sees it and reports FAB_ECLOSED.  A rejoin never
 * wins after the decision: `closed` is final. */
int fab__chan_close_settle(fab_chan_hdr *h)
{
	uint32_t quorum = h->producers;
	/* seq_cst: ordered against producers' slot claims and receivers'
	 * emptiness checks (fab__chan_closed_empty), as the store below. */
	while (!load_seq_cst(&h->closed)) {
		/* seq_cst (acquire is what matters): pairs with the release of
		 * a rejoin's bump; seeing the bump, we see its `rejoined` bit. */
		uint64_t e = load_seq_cst(&h->close_epoch);
		if (!(e & FAB_CLOSE_DECIDED)) {
			if (quorum == 0 || quorum > FAB_PRODUCERS_MAX)
				return 0;
			/* seq_cst, as the ids: the closers' records and counts
			 * (fab_chan_close) and these loads are in one order, so
			 * of two last closers at least one sees the other. */
			uint64_t wd = load_seq_cst(&h->rejoined);
			uint32_t n = 0;
			for (uint32_t i = 0; i < FAB_PRODUCERS_MAX; i++)
				n += load_seq_cst(&h->closer_ids[i]) != 0 && !((wd >> i) & 1u);
			if (n < quorum)
				return 0;
			/* seq_cst: the decision, ordered with every rejoin's bump
			 * (same word) and before our store of `closed`.  Fails
			 * if a rejoin bumped the epoch since we read it: count
			 * again. */
			if (!cas_seq_cst(&h->close_epoch, &e, e | FAB_CLOSE_DECIDED))
				continue;
		}
		/* Decided, by us or by a settle killed before this store. */
		store_seq_cst(&h->closed, 1);
	}
	fab__wake_all(h);
	return 1;
}

int fab_chan_close_as(fab_chan *ch, const char *producer)
{
	int rc;
	if ((rc = fab__chan_check(ch, 0)))
		return rc;
	if (!producer || !*producer || strlen(producer) > FAB__PRODUCER_ID_MAX)
		return fab__err(FAB_EINVAL, "producer id must be 1..%d characters",
				FAB__PRODUCER_ID_MAX);
	/* The handle closes once more, as that producer; its own identity
	 * and whether it closed as itself are kept. */
	uint64_t id = ch->producer_id;
	bool closed = ch->closed_local;
	ch->producer_id = fab__producer_hash(producer);
	ch->closed_local = false;
	rc = fab_chan_close(ch);
	ch->producer_id = id;
	ch->closed_local = closed;
	return rc;
}

/* Our id is recorded in closer_ids[i]: count the close again if a rejoin
 * withdrew it (clear its `rejoined` bit); 1 if we did, 0 if the producer
 * had closed already. */
static int fab__chan_reclose(fab_chan_hdr *h, uint32_t i)
{
	uint64_t bit = 1ull << i;
	/* Acquire: pairs with the rejoin's CAS that set the bit. */
	uint64_t wd = load_acquire(&h->rejoined);
	while (wd & bit)
		/* acq_rel: publishes the close like a slot claim does; the
		 * seq_cst count that follows (fab_chan_close) orders it
		 * against the other closers' settles. */
		if (cas(&h->rejoined, &wd, wd & ~bit))
			return 1;
	return 0;
}

int fab_chan_close(fab_chan *ch)
{
	int rc;
	if ((rc = fab__chan_check(ch, 0)))
		return rc;
	if (!(ch->role & FAB_SEND))
		return fab__err(FAB_EPERM, "channel %s: only a sending handle can close", ch->name);
	if (ch->closed_local)
		return fab__err(FAB_ECLOSED, "channel %s: this producer already closed", ch->name);
	if (ch->reserved)
		return fab__err(FAB_EINVAL, "channel %s: commit the pending reservation first",
				ch->name);
	fab_chan_hdr *h = ch->hdr;
	uint32_t quorum = h->producers;
	if (quorum == 0 || quorum > FAB_PRODUCERS_MAX)
		return fab__err(FAB_ECORRUPT, "channel %s: bad producer quorum", ch->name);
	if (ch->ring == FAB_RING_SPSC && !(ch->end_word & 1) && !load_seq_cst(&h->closed)) {
		/* On the spsc ring the sender's fast path looks at `closed`
		 * without a fence, which is exact only if the closer is the
		 * sender itself (its sends come before its close in program
		 * order).  So a close takes the send end, like a send; while
		 * another live handle holds it, FAB_EBUSY.  A channel closed
		 * already says so first, as an mpmc one does (a user trial got
		 * FAB_EBUSY naming its own pid). */
		if ((rc = fab__spsc_take_send_end(ch)))
			return rc;
	}
	if (load_seq_cst(&h->closed)) {
		/* Go panics on closing a closed channel; fab reports it, and a
		 * refused close does not count towards anything (it only
		 * repeats the wake a killed closer may have missed). */
		fab__chan_close_settle(h);
		ch->closed_local = true;
		return fab__err(FAB_ECLOSED, "channel %s already closed", ch->name);
	}
	/* Slots are claimed in order and never cleared (a rejoin withdraws a
	 * close with a bit, keeping the slot), so an id is in at most one
	 * slot, before the first free one. */
	uint64_t id = ch->producer_id;
	for (uint32_t i = 0; i < FAB_PRODUCERS_MAX; i++) {
		/* Acquire: pairs with the claiming CAS below of another
		 * closer. */
		uint64_t cur = load_acquire(&h->closer_ids[i]);
		/* acq_rel: publishes our id to the settles that count it. */
		if (cur == 0 && cas(&h->closer_ids[i], &cur, id))
			goto counted;
		if (cur != id)
			continue; /* another producer's slot */
		if (fab__chan_reclose(h, i))
			goto counted;
		/* Recorded already (maybe by our killed predecessor, before it
		 * counted): finish what it started. */
		fab__chan_close_settle(h);
		ch->closed_local = true;
		return fab__err(FAB_ECLOSED, "channel %s: this producer already closed", ch->name);
	}
	/* Every slot holds another producer's id: FAB_PRODUCERS_MAX distinct
	 * producers have closed the channel over its life (a rejoin keeps the
	 * slot).  This close cannot count; saying "already closed" here was
	 * false (the channel stayed open and its receivers waited for good;
	 * found by a user trial). */
	if (fab__chan_close_settle(h)) {
		ch->closed_local = true;
		return fab__err(FAB_ECLOSED, "channel %s already closed", ch->name);
	}
	return fab__err(FAB_ENOMEM,
			"channel %s: its close table is full (%u distinct producer ids have closed "
			"it since it was created, rejoins included): this producer's close cannot "
			"count; reuse producer ids (fab_chan_close_as)",
			ch->name, (unsigned)FAB_PRODUCERS_MAX);
counted:
	ch->closed_local = true;
	/* seq_cst: the closers' counts are totally ordered, so the last one
	 * to count sees every earlier record when it settles. */
	uint32_t n = fetch_add_seq_cst(&h->closes, 1) + 1;
	if (n > quorum) {
		/* `closes` may run high: a rejoin killed between its
		 * withdrawal and its decrement (fab_chan_rejoin_as) never
		 * takes the withdrawn close out of the figure, and this close
		 * would be refused although the ids count it.  The ids decide:
		 * refuse only if, with ours, more closes count than the quorum
		 * (we raced past a close that completed it).  seq_cst, as the
		 * settle's loads: our count follows every earlier closer's. */
		uint64_t wd = load_seq_cst(&h->rejoined);
		uint32_t m = 0;
		for (uint32_t i = 0; i < FAB_PRODUCERS_MAX; i++)
			m += load_seq_cst(&h->closer_ids[i]) != 0 && !((wd >> i) & 1u);
		if (m > quorum) {
			/* Raced past a close that completed the quorum. */
			fetch_sub_seq_cst(&h->closes, 1);
			fab__chan_close_settle(h);
			return fab__err(FAB_ECLOSED, "channel %s already closed", ch->name);
		}
		/* Counted.  Put the figure right if nobody counted since
		 * (acq_rel, a figure: nothing is published through it). */
		cas(&h->closes, &n, m);
	}
	/* The ids decide, not `closes`: a closer killed between its id and
	 * its count still counts. */
	fab__chan_close_settle(h);
	return 0;
}

int fab_chan_rejoin_as(fab_chan *ch, const char *producer)
{
	int rc;
	if ((rc = fab__chan_check(ch, 0)))
		return rc;
	if (!(ch->role & FAB_SEND))
		return fab__err(FAB_EPERM, "channel %s: only a sending handle can rejoin a producer",
				ch->name);
	if (!producer || !*producer || strlen(producer) > FAB__PRODUCER_ID_MAX)
		return fab__err(FAB_EINVAL, "producer id must be 1..%d characters",
				FAB__PRODUCER_ID_MAX);
	fab_chan_hdr *h = ch->hdr;
	uint64_t id = fab__producer_hash(producer);
	/* seq_cst, as in fab__chan_close_settle. */
	if (load_seq_cst(&h->closed))
		goto closed;
	/* Its slot, if it ever closed (slots fill in order, see
	 * fab_chan_close). */
	uint32_t i = 0;
	uint64_t cur = 0;
	/* Acquire: pairs with a closer's claiming CAS. */
	while (i < FAB_PRODUCERS_MAX && (cur = load_acquire(&h->closer_ids[i])) != id && cur != 0)
		i++;
	if (i == FAB_PRODUCERS_MAX && !fab__chan_close_settle(h))
		/* A producer the table has no room for: its close could never
		 * count (fab_chan_close), so the channel could never close. */
		return fab__err(FAB_ENOMEM,
				"channel %s: its close table is full (%u distinct producer ids have "
				"closed it since it was created): producer %s cannot join; reuse "
				"producer ids",
				ch->name, (unsigned)FAB_PRODUCERS_MAX, producer);
	uint64_t bit = i < FAB_PRODUCERS_MAX && cur == id ? 1ull << i : 0, mine = 0;
	if (bit) {
		/* Acquire: pairs with the bit's last change. */
		uint64_t wd = load_acquire(&h->rejoined);
		/* seq_cst: the withdrawal is ordered before our bump below,
		 * so a settle that sees the bump sees the bit. */
		while (!(wd & bit) && !cas_seq_cst(&h->rejoined, &wd, wd | bit))
			;
		mine = !(wd & bit) ? bit : 0;
	}
	/* Bump the epoch unless the close is decided: a settle that counted
	 * our producer's close before the withdrawal then fails its decision
	 * and counts again.  Also when the close was withdrawn already (by
	 * another rejoin that may not have bumped yet) or never recorded:
	 * the answer is then still exact. */
	uint64_t e = load_seq_cst(&h->close_epoch); /* seq_cst: as the CAS */
	while (!(e & FAB_CLOSE_DECIDED)) {
		/* seq_cst: ordered with the settles' decisions on this word;
		 * release of the withdrawal above to the settles that read
		 * the new epoch. */
		if (cas_seq_cst(&h->close_epoch, &e, e + 2)) {
			if (mine) {
				/* `closes` counted that close (unless its closer
				 * was killed before counting: never below 0). */
				uint32_t c = load_relaxed(&h->closes);
				/* acq_rel, though nothing is published: a figure
				 * for fab_chan_stats and the closers' "raced past
				 * the quorum" test; the ids decide. */
				while (c && !cas(&h->closes, &c, c - 1))
					;
			}
			if (id == ch->producer_id)
				ch->closed_local = false;
			return 0;
		}
	}
	/* The quorum closed the channel first, counting that close: put the
	 * bit back, so the recorded closes say who closed. */
	if (mine) {
		/* Acquire: pairs with our own CAS above (and any since). */
		uint64_t wd = load_acquire(&h->rejoined);
		/* acq_rel: nothing depends on it but the figures. */
		while ((wd & mine) && !cas(&h->rejoined, &wd, wd & ~mine))
			;
	}
closed:
	fab__chan_close_settle(h);
	return fab__err(FAB_ECLOSED, "channel %s is closed: producer %s cannot rejoin", ch->name,
			producer);
}

/* After a receive found nothing: is the channel closed AND still empty?
 * The second look after reading `closed` catches a producer that claimed a
 * slot before the close became visible (its claim is then seen as WRITING
 * or FULL, not empty). */
static int fab__chan_closed_empty(fab_chan *ch, fab__block *blk)
{
	if (likely(!load_seq_cst(&ch->hdr->closed)))
		return 0;
	if (ch->ring == FAB_RING_SPSC) {
		/* Single sender: its sends happen before its close; the
		 * seq_cst load of `closed` above makes them visible. */
		uint64_t e = load_acquire(fab__spsc_word(ch, ch->head_local));
		return FAB_SE_MARK(e) != FAB_SE_MARK(FAB_SE_FULL(ch->head_local, 0));
	}
	uint64_t q = load_seq_cst(&ch->hdr->head);
	fab_mslot *s = (fab_mslot *)(ch->slots + (size_t)(q & ch->mask) * ch->slot_size);
	uint64_t w = load_seq_cst(&s->state);
	uint32_t st = FAB_SW_STATE(w);
	/* A producer claimed q after our take looked: it commits (FULL, and
	 * wakes us) or, seeing `closed`, skips.  Watch it like a take does
	 * (fab__mpmc_take's WRITING case), so its death or skip is seen. */
	if (FAB_SW_SAMEPOS(w, q) && st == FAB_SLOT_WRITING)
		blk->behind_tag = FAB_SW_TAG(w);
	/* Skipped since our take looked, or a held slot passed at q (or a
	 * passed lease being given back): not a verdict, look again (the
	 * take passes it). */
	if (FAB_SW_SAMEPOS(w, q) &&
	    (st == FAB_SLOT_SKIP || st == FAB_SLOT_HELD || st == FAB_SLOT_RETURNING))
		return -1;
	/* Empty: free for position q, or the previous lap still in the slot
	 * (read out, leased, being given back or waiting for redelivery: no
	 * producer can have written q; at-least-once then checks leases). */
	return w == FAB_SW_MAKE(q, FAB_SLOT_FREE, 0) ||
	       (FAB_SW_SAMEPOS(w, q - ch->nslots) &&
		(st == FAB_SLOT_READING || st == FAB_SLOT_HELD || st == FAB_SLOT_RETURNING ||
		 (st == FAB_SLOT_FULL && ch->delivery == FAB_AT_LEAST_ONCE)));
}

/* ---- send ------------------------------------------------------------------ */

typedef struct fab__send_arg {
	const void *msg;
	size_t len;
	uint64_t pos; /* mpmc: claimed position */
	void **slot;  /* reserve: where to return the slot */
} fab__send_arg;

static int fab__try_send_once(fab_chan *ch, void *a, fab__block *blk)
{
	fab__send_arg *arg = a;
	blk->behind_tag = 0;
	if (unlikely(load_acquire(&ch->hdr->closed)))
		return fab__err(FAB_ECLOSED, "channel %s is closed", ch->name);
	if (ch->ring == FAB_RING_SPSC) {
		if (arg->slot)
			return fab__spsc_reserve(ch, arg->slot);
		return fab__spsc_push(ch, arg->msg, arg->len);
	}
	int rc = fab__mpmc_claim(ch, &arg->pos, blk);
	if (rc)
		return rc;
	if (arg->slot) {
		*arg->slot = fab__mpmc_slot_payload(ch, arg->pos);
		return 0;
	}
	fab__mpmc_fill(ch, arg->pos, arg->msg, arg->len);
	return fab__mpmc_commit(ch, arg->pos, arg->len);
}

static int fab__try_taken(fab_chan *ch, void *a, fab__block *blk)
{
	fab__send_arg *arg = a;
	blk->behind_tag = 0;
	if (fab__mpmc_taken(ch, arg->pos))
		return 0;
	if (load_acquire(&ch->hdr->closed) && fab__mpmc_withdraw(ch, arg->pos))
		return fab__err(FAB_ECLOSED, "channel %s closed before a receiver came", ch->name);
	/* The taker wakes us after its take; one killed in between never
	 * does.  Name our own (live) tag: fab__wait then re-looks after 1 ms,
	 * doubling to 100 ms, instead of sleeping for good. */
	blk->behind_tag = ch->fab->tag;
	return FAB_EAGAIN;
}

/* ---- waiting unbuffered receivers ---------------------------------------- */

/*
 * A receiver blocked on an unbuffered channel (fab_recv, fab_recv_acquire,
 * a select's receive case) is counted twice: in the header's recv_ready, a
 * hint that a non-blocking sender reads first, and in its handle's attach
 * word (FAB_ATT_READY), the truth.  The word names its owner, so a receiver
 * killed while it waits is taken out by whoever clears the word of the dead
 * handle (fab__chan_recover: one CAS from the exact word, so once, whatever
 * other recoverers and live receivers do).  Until 28 Nov only recv_ready
 * counted, and a receiver killed while blocked left it raised for good:
 * every unbuffered fab_try_send and select send case offered its message to
 * nobody and waited 2 ms for the take.
 *
 * The hint goes up before the word and down after it, so recv_ready never
 * falls below the words' sum: a receiver killed between the two leaves the
 * hint one high, never low (no sender ever misses a waiting receiver).  A
 * sender confirms a raised hint against the words before offering
 * (fab__ready_confirm), and after an offer nobody took it repairs the
 * channel of any dead handle still counted (fab__ready_reap), so neither
 * case costs more than a scan of the attach table -- and both scans stop
 * at the header's attach_hi (since layout 1.3): one more than the highest
 * word any handle ever claimed, raised by every attach before the handle
 * can count a receiver.  A hint left one high for good by a receiver
 * killed between its two steps (or a recoverer killed between clearing a
 * dead word and subtracting its count) makes every non-blocking send
 * confirm in vain.  Until 1.3 that was a scan of all 1024 words per call
 * (17 ns -> 1.1-1.7 us); now it is a scan of attach_hi words.  An attach
 * takes the lowest free word, so that is the channel's peak number of
 * simultaneously attached handles (give or take attaches that raced).
 * Recovery and fab_chan_stats still read the whole table: a process
 * killed between its claim and its raise of attach_hi leaves a word above
 * the mark, which only a full scan finds and clears.
 * Buffered channels never touch either word.
 */

/* Count one receiver of this handle as waiting.  Returns true if it was
 * counted; false (nothing changed) if the handle's attach word is no longer
 * its own (recovery took the process for dead) or its count is full: the
 * receiver then waits unannounced, found by blocking senders only. */
static bool fab__ready_raise(fab_chan *ch)
{
	if (ch->attach_idx < 0)
		return false;
	_Atomic uint64_t *a = &ch->attach[ch->attach_idx];
	uint64_t id = FAB_ATT_MAKE(ch->fab->tag, ch->role, ch->serial);
	/* The hint first.  seq_cst: pairs with fab__send_unbuffered_now's
	 * seq_cst load. */
	fetch_add_seq_cst(&ch->hdr->recv_ready, 1);
	uint64_t w = load_relaxed(a);
	while (FAB_ATT_ID(w) == id && FAB_ATT_READY(w) < FAB_ATT_READY_MAX) {
		/* seq_cst: pairs with fab__ready_confirm's seq_cst loads; a
		 * select sender that missed this count sees our wake, which
		 * follows (Dekker with its sleep announce). */
		if (cas_seq_cst(a, &w, w + FAB_ATT_READY_ONE))
			return true;
	}
	fetch_sub_seq_cst(&ch->hdr->recv_ready, 1); /* as the increment */
	return false;
}

/* Undo a fab__ready_raise that returned true. */
static void fab__ready_lower(fab_chan *ch)
{
	_Atomic uint64_t *a = &ch->attach[ch->attach_idx];
	uint64_t id = FAB_ATT_MAKE(ch->fab->tag, ch->role, ch->serial);
	uint64_t w = load_relaxed(a);
	while (FAB_ATT_ID(w) == id && FAB_ATT_READY(w) > 0) {
		/* The word first, then the hint.  seq_cst as the raise: a
		 * sender that still sees the count offers, and withdraws after
		 * 2 ms, so no ordering is needed for correctness; the same
		 * order as the raise keeps the argument short. */
		if (cas_seq_cst(a, &w, w - FAB_ATT_READY_ONE)) {
			fetch_sub_seq_cst(&ch->hdr->recv_ready, 1);
			return;
		}
	}
	/* The word was cleared meanwhile (recovery took us for dead): the CAS
	 * that cleared it took our count out of recv_ready already. */
}

/* How many attach words may count a waiting receiver: attach_hi, bounded
 * by the table (a scribbled mark cannot take a scan past it). */
static uint32_t fab__attach_hi(fab_chan *ch)
{
	/* Relaxed: the caller's seq_cst load of recv_ready came first, and
	 * orders this one (fab__ready_confirm says why that suffices). */
	uint32_t n = load_relaxed(&ch->hdr->attach_hi);
	return n < ch->attach_max ? n : ch->attach_max;
}

/* Do more than `self` receivers wait, by the attach words?  Stops at the
 * first word that shows it (handles attach lowest index first, so a
 * waiting receiver is met within the first few words), and looks only
 * below attach_hi: a stale recv_ready (a receiver killed between its two
 * steps) costs a scan of the channel's peak number of attached handles,
 * not of the whole table.
 *
 * Why the bound misses no receiver the sender may claim to have seen: the
 * caller loaded recv_ready (seq_cst) before calling.  If that load counted
 * a receiver of word i, it read the receiver's seq_cst increment or a later
 * value (every write to recv_ready is a read-modify-write, so they all
 * continue that increment's release sequence) and so acquired it; the
 * receiver's attach raised attach_hi above i before that increment, so the
 * attach happens before our load of attach_hi, which therefore reads that
 * raise or a later (larger) value.  If our load still misses word i, the
 * recv_ready load missed the receiver too: it arrived after we looked, and
 * a try_send may answer FAB_EAGAIN (a select's send case hears the wake the
 * receiver issues after raising, Dekker with its sleep announce, as when
 * the hint itself was missed). */
static bool fab__ready_confirm(fab_chan *ch, uint32_t self)
{
	uint32_t n = 0, hi = fab__attach_hi(ch);
	for (uint32_t i = 0; i < hi; i++) {
		/* seq_cst: pairs with fab__ready_raise's CAS (see there). */
		n += FAB_ATT_READY(load_seq_cst(&ch->attach[i]));
		if (n > self)
			return true;
	}
	return false;
}

/* After an offer nobody took: repair the channel of every handle counted as
 * a waiting receiver whose process is dead (killed while blocked), which
 * also takes it out of recv_ready.  Our own process is alive. */
static void fab__ready_reap(fab_chan *ch)
{
	/* Only below attach_hi: a dead handle counted in recv_ready raised the
	 * mark when it attached (fab__ready_confirm: our load of recv_ready
	 * came first). */
	uint32_t last_alive = 0, hi = fab__attach_hi(ch);
	for (uint32_t i = 0; i < hi; i++) {
		/* Relaxed: a hint of whom to check; fab__chan_recover acts by
		 * CAS on what it loads itself. */
		uint64_t w = load_relaxed(&ch->attach[i]);
		uint32_t t = FAB_ATT_TAG(w);
		if (!FAB_ATT_READY(w) || t == ch->fab->tag || t == last_alive)
			continue;
		if (fab__tag_alive(ch->fab, t))
			last_alive = t;
		else
			fab__chan_recover(ch, ch->fab, t);
	}
}

static int fab__try_recv_once(fab_chan *ch, void *a, fab__block *blk);

/*
 * Waiting unbuffered senders that have published nothing: a select's send
 * case asleep (a blocking fab_send publishes its message before it waits,
 * so a receiver finds it in the slot).  Go pairs a non-blocking receive
 * with such a sender; fab__recv_unbuffered_now does, by announcing the
 * receiver for a moment (found by a user trial: a select blocked on a send
 * case and a consumer polling fab_try_recv never met).  True if a handle's
 * attach word carries the offer mark FAB_ATT_OFFER, which such a select
 * sets with its sleep mark (below attach_hi, after the send_waiters gauge
 * says someone sleeps: two loads when nobody does).
 * Relaxed: a hint; missing a sender that is about to sleep answers "no
 * sender blocked yet", as Go would a moment earlier.
 */
bool fab__send_sleeper(fab_chan *ch)
{
	if (!load_relaxed(&ch->hdr->send_waiters))
		return false;
	/* The offer mark, not the send sleep mark: a blocking fab_send keeps
	 * that one until it has woken after its take, so a consumer draining
	 * such a sender found the slot empty, the mark still set, and waited
	 * 2 ms for nothing after every message (found by review). */
	uint32_t hi = fab__attach_hi(ch);
	for (uint32_t i = 0; i < hi; i++)
		if (load_relaxed(&ch->attach[i]) & FAB_ATT_OFFER)
			return true;
	return false;
}

/* After an announce nobody answered: repair the channel of every handle
 * with the offer mark whose process is dead (a select killed asleep), so
 * its mark stops costing each non-blocking receive a wait. */
void fab__send_sleeper_reap(fab_chan *ch)
{
	uint32_t last_alive = 0, hi = fab__attach_hi(ch);
	for (uint32_t i = 0; i < hi; i++) {
		uint64_t w = load_relaxed(&ch->attach[i]);
		uint32_t t = FAB_ATT_TAG(w);
		if (!(w & FAB_ATT_OFFER) || t == ch->fab->tag || t == last_alive)
			continue;
		if (fab__tag_alive(ch->fab, t))
			last_alive = t;
		else
			fab__chan_recover(ch, ch->fab, t);
	}
}

/*
 * Go's non-blocking receive on an unbuffered channel when the slot is
 * empty but a select sleeps there on a send case (fab__send_sleeper):
 * count this handle as a waiting receiver, wake the senders, and look for
 * up to 2 ms for the message a select's send case then offers (its pass
 * sees a waiting receiver and publishes, fab__send_unbuffered_now).  The
 * mirror of a non-blocking send's offer.  The received length, FAB_EAGAIN,
 * or another code.  ch->fab's wake after a take is the caller's.
 */
static int fab__recv_unbuffered_now(fab_chan *ch, void *a)
{
	if (!fab__send_sleeper(ch) || !fab__ready_raise(ch))
		return FAB_EAGAIN;
	fab__wake_senders(ch);
	int64_t until = fab__now_ns() + FAB__OFFER_NS;
	fab__block blk;
	int r;
	for (uint32_t i = 0;; i++)
		if ((r = fab__try_recv_once(ch, a, &blk)) != FAB_EAGAIN || !fab__offer_wait(i, until))
			break;
	fab__ready_lower(ch);
	if (r == FAB_EAGAIN)
		fab__send_sleeper_reap(ch);
	return r;
}

/* Unbuffered: after publishing, wait until a receiver took the message; if
 * the context ends first, withdraw it (unless taken meanwhile). */
static int fab__rendezvous(fab_chan *ch, fab__send_arg *arg, fab_ctx *ctx)
{
	int rc = fab__wait(ch, 0, ctx, fab__try_taken, arg);
	if (rc == FAB_ECANCELED || rc == FAB_ETIMEDOUT || rc == FAB_ESYS) {
		if (!fab__mpmc_withdraw(ch, arg->pos))
			return 0; /* a receiver took it after all */
		fab__wake_receivers(ch);
	}
	return rc;
}

/*
 * The message at `pos` of an unbuffered channel is published (FULL) and the
 * receivers woken, and a receiver was counted waiting: give it up to 2 ms
 * to take the message, then withdraw it.  0 taken, FAB_EAGAIN withdrawn.
 */
static int fab__offer_published(fab_chan *ch, uint64_t pos)
{
	int64_t until = fab__now_ns() + FAB__OFFER_NS;
	for (uint32_t i = 0;; i++) {
		if (fab__mpmc_taken(ch, pos))
			return 0;
		if (!fab__offer_wait(i, until))
			break;
	}
	if (!fab__mpmc_withdraw(ch, pos))
		return 0; /* taken after all */
	fab__wake_receivers(ch);
	/* No taker: perhaps the receiver we counted was killed while waiting. */
	fab__ready_reap(ch);
	return FAB_EAGAIN;
}

/*
 * Go's non-blocking send on an unbuffered channel: it succeeds only if a
 * receiver is waiting.  `self` is how many of the waiting receivers are the
 * caller's own (a select's receive cases on this channel), so a select
 * never matches itself.  Publishes, gives the receiver a moment to take the
 * message, and withdraws it if the receiver left meanwhile.  0, FAB_EAGAIN,
 * FAB_ECLOSED or another code.
 */
static int fab__send_unbuffered_now(fab_chan *ch, fab__send_arg *arg, uint32_t self)
{
	/* seq_cst: ordered against receivers' seq_cst increments of
	 * recv_ready and the closer's store. */
	if (load_seq_cst(&ch->hdr->closed))
		return fab__err(FAB_ECLOSED, "channel %s is closed", ch->name);
	if (load_seq_cst(&ch->hdr->recv_ready) <= self || !fab__ready_confirm(ch, self))
		return FAB_EAGAIN;
	fab__block blk;
	int rc = fab__try_send_once(ch, arg, &blk);
	if (rc)
		return rc;
	fab__wake_receivers(ch);
	return fab__offer_published(ch, arg->pos);
}

static inline int fab__send_check(fab_chan *ch, const void *msg, size_t len)
{
	int rc;
	if ((rc = fab__chan_check(ch, FAB_SEND)))
		return rc;
	if (unlikely(len > ch->msg_size))
		return fab__err(FAB_EMSGSIZE, "message of %zu bytes > msg_size %u of %s", len,
				ch->msg_size, ch->name);
	if (unlikely(!msg && len))
		return fab__err(FAB_EINVAL, "NULL message with length %zu", len);
	if (unlikely(ch->reserved))
		return fab__err(FAB_EINVAL, "channel %s: commit the pending reservation first",
				ch->name);
	if (unlikely(ch->kind == FAB_SPSC && !(ch->end_word & 1))) {
		if (ch->ring == FAB_RING_SPSC)
			return fab__spsc_take_send_end(ch);
		if ((rc = fab__spsc_attach_end(ch, &ch->hdr->spsc_sender)))
			return rc;
		ch->end_word |= 1;
	}
	return 0;
}

static __attribute__((noinline)) int fab__send_slow(fab_chan *ch, const void *msg, size_t len,
						      fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__send_check(ch, msg, len)))
		return rc;
	if (ctx && (rc = fab__ctx_valid(ctx)))
		return rc;
	if (likely(ch->ring == FAB_RING_SPSC)) {
		/* Fast path: one straight line when there is room. */
		if (unlikely(load_acquire(&ch->hdr->closed)))
			return fab__err(FAB_ECLOSED, "channel %s is closed", ch->name);
		rc = fab__spsc_push(ch, msg, len);
		if (likely(rc == 0)) {
			fab__wake_receivers(ch);
			return 0;
		}
		if (rc != FAB_EAGAIN)
			return rc;
	}
	fab__send_arg arg = {.msg = msg, .len = len};
	if (ch->capacity == 0 && ctx && (rc = fab__ctx_done(ctx))) {
		/* A context that has already ended: the send proceeds only if it
		 * can at once, i.e. a receiver is waiting, exactly as
		 * fab_try_send (fab_send(3): the context is consulted only when
		 * the call cannot complete at once).  The rendezvous below would
		 * publish and then, its context ended, withdraw the message
		 * before the waiting receiver could take it (found by a user
		 * trial: fab_send failed where fab_try_send and a select send
		 * case succeeded). */
		int r = fab__send_unbuffered_now(ch, &arg, 0);
		return r == FAB_EAGAIN ? fab__ctx_fail(rc) : r;
	}
	rc = fab__wait(ch, 0, ctx, fab__try_send_once, &arg);
	if (rc)
		return rc;
	fab__wake_receivers(ch);
	if (ch->capacity == 0)
		return fab__rendezvous(ch, &arg, ctx);
	return 0;
}

static __attribute__((noinline)) int fab__try_send_slow(fab_chan *ch, const void *msg, size_t len)
{
	int rc;
	if ((rc = fab__send_check(ch, msg, len)))
		return rc;
	if (likely(ch->ring == FAB_RING_SPSC)) {
		/* Fast path, as in fab_send. */
		if (unlikely(load_acquire(&ch->hdr->closed)))
			return fab__err(FAB_ECLOSED, "channel %s is closed", ch->name);
		rc = fab__spsc_push(ch, msg, len);
		if (likely(rc == 0))
			fab__wake_receivers(ch);
		return rc == FAB_EAGAIN ? fab__err_none(rc) : rc;
	}
	fab__send_arg arg = {.msg = msg, .len = len};
	fab__block blk;
	if (ch->capacity == 0) {
		rc = fab__send_unbuffered_now(ch, &arg, 0);
		return rc == FAB_EAGAIN ? fab__err_none(rc) : rc;
	}
	rc = fab__try_send_once(ch, &arg, &blk);
	if (rc == 0)
		fab__wake_receivers(ch);
	return rc == FAB_EAGAIN ? fab__err_none(rc) : rc;
}

int fab_send_reserve(fab_chan *ch, size_t len, void **slot, fab_ctx *ctx)
{
	int rc;
	if (!slot) {
		/* Before fab__send_check, which would call it a NULL message
		 * (a user trial). */
		if ((rc = fab__chan_check(ch, FAB_SEND)))
			return rc;
		return fab__err(FAB_EINVAL, "NULL slot pointer");
	}
	if ((rc = fab__send_check(ch, slot, len)))
		return rc;
	if (ch->reserved)
		return fab__err(FAB_EINVAL, "channel %s: a reservation is already pending", ch->name);
	if (ctx && (rc = fab__ctx_valid(ctx)))
		return rc;
	fab__send_arg arg = {.slot = slot};
	rc = fab__wait(ch, 0, ctx, fab__try_send_once, &arg);
	if (rc)
		return rc;
	ch->reserved = true;
	ch->reserved_pos = arg.pos;
	ch->reserved_len = len;
	ch->reserve_ctx = ctx;
	return 0;
}

int fab_send_commit(fab_chan *ch, size_t len)
{
	int rc;
	if ((rc = fab__chan_check(ch, FAB_SEND)))
		return rc;
	if (!ch->reserved)
		return fab__err(FAB_EINVAL, "channel %s: commit without reserve", ch->name);
	if (len > ch->reserved_len)
		return fab__err(FAB_EMSGSIZE, "commit of %zu bytes > %zu reserved", len,
				ch->reserved_len);
	ch->reserved = false;
	if (ch->ring == FAB_RING_SPSC) {
		/* Only the holder of the send end closes an spsc ring (see
		 * fab_chan_close), so this look cannot race a close. */
		if (load_acquire(&ch->hdr->closed))
			return fab__err(FAB_ECLOSED, "channel %s is closed", ch->name);
		fab__spsc_commit(ch, len);
		fab__wake_receivers(ch);
		return 0;
	}
	if ((rc = fab__mpmc_commit(ch, ch->reserved_pos, len)))
		return rc;
	fab__wake_receivers(ch);
	if (ch->capacity == 0) {
		fab__send_arg arg = {.pos = ch->reserved_pos};
		fab_ctx *ctx = ch->reserve_ctx;
		if (ctx && (rc = fab__ctx_done(ctx))) {
			/* The reservation's context has already ended: as
			 * fab_send with such a context, the message goes only
			 * to a receiver waiting now (the rendezvous would
			 * withdraw it before that receiver ran; found by the
			 * tenth session's review, fixed in the eleventh).
			 * seq_cst: as in fab__send_unbuffered_now. */
			if (load_seq_cst(&ch->hdr->recv_ready) > 0 && fab__ready_confirm(ch, 0)) {
				if (fab__offer_published(ch, arg.pos) == 0)
					return 0;
				return fab__ctx_fail(rc);
			}
			if (!fab__mpmc_withdraw(ch, arg.pos))
				return 0; /* a receiver took it after all */
			fab__wake_receivers(ch);
			return fab__ctx_fail(rc);
		}
		return fab__rendezvous(ch, &arg, ctx);
	}
	return 0;
}

/* ---- receive --------------------------------------------------------------- */

typedef struct fab__recv_arg {
	void *buf;
	size_t cap;
	uint64_t pos;
	const void **msg; /* acquire */
	size_t *len;
} fab__recv_arg;

/* ---- at-least-once ------------------------------------------------------- */

static int fab__lease_end(fab_chan *ch, uint64_t pos, int nack, int64_t *now);

/* Finish every lease the handle holds (the messages of its last receive
 * call), oldest first: ack, or give them back (nack).  The first error is
 * returned; the others are still settled. */
static int fab__leases_end(fab_chan *ch, int nack)
{
	int rc = 0;
	int64_t now = 0; /* read once for the latency of the whole batch */
	while (ch->nleases) {
		uint64_t pos = ch->leases[ch->lease_first];
		ch->lease_first = (ch->lease_first + 1) % ch->max_inflight;
		ch->nleases--;
		int r = fab__lease_end(ch, pos, nack, &now);
		if (r && !rc)
			rc = r;
	}
	ch->acquired = false;
	return rc;
}

/* A receive call begins: on an at-least-once channel it acks what the
 * handle's previous receive left leased (the implicit ack). */
int fab__alo_begin_recv(fab_chan *ch)
{
	if (ch->delivery != FAB_AT_LEAST_ONCE || ch->nleases == 0)
		return 0;
	return fab__leases_end(ch, 0);
}

/* Finish one lease (already removed from the handle's list).  An ack
 * records the message's pipeline latency (now - its origin time). */
static int fab__lease_end(fab_chan *ch, uint64_t pos, int nack, int64_t *now)
{
	if (nack) {
		if (!fab__mpmc_give_back(ch, pos))
			return fab__err(FAB_ECORRUPT, "channel %s: lease at %llu is no longer ours",
					ch->name, (unsigned long long)pos);
		fetch_add_relaxed(&ch->hdr->nacked, 1);
		return 0;
	}
	/* The lease is ours: the slot's header is stable until the ack. */
	const fab_mslot_alo *a =
		(const fab_mslot_alo *)((const uint8_t *)fab__mpmc_slot_payload(ch, pos) - ch->mhdr);
	int64_t origin = a->origin_ns;
	int rc = fab__mpmc_ack(ch, pos);
	if (rc == 0 && origin) {
		if (!*now)
			*now = fab__now_ns();
		fab__hist_note(&ch->lat, &ch->hdr->latency, *now - origin);
	}
	fab__wake_senders(ch);
	/* A drain (receivers of a closed channel) waits for every lease.
	 * seq_cst load: see the Dekker argument in docs/delivery.md. */
	if (load_seq_cst(&ch->hdr->closed))
		fab__wake_receivers(ch);
	return rc;
}

/* A message at `pos` was just taken (READING, our tag): record the lease in
 * the handle (which holds fewer than max_inflight), take a given-back one
 * off the gauge, fill fab_recv_info and the thread's origin time.  Shared
 * by fab__alo_take and the fast line. */
static inline __attribute__((always_inline)) void fab__alo_leased(fab_chan *ch, uint64_t pos,
								  const fab_mslot_alo *a)
{
	uint32_t k = ch->lease_first + ch->nleases; /* both < max_inflight */
	ch->leases[k >= ch->max_inflight ? k - ch->max_inflight : k] = pos;
	ch->nleases++;
	uint32_t returns = a->m.returns;
	if (unlikely(returns)) {
		/* It was given back: one fewer waits behind head. */
		fab__mpmc_returned_taken(ch);
		fetch_add_relaxed(&ch->hdr->redelivered, 1);
	}
	memset(&ch->info, 0, sizeof ch->info);
	ch->info.size = sizeof ch->info;
	ch->info.redelivered = returns ? 1 : 0;
	ch->info.deliveries = returns < UINT32_MAX ? returns + 1 : UINT32_MAX;
	ch->info.enqueue_ns = a->enqueue_ns;
	ch->info.origin_ns = a->origin_ns;
	ch->have_info = true;
	fab__origin_ns = a->origin_ns; /* this thread's next send inherits it */
}

/* One receive attempt on an at-least-once channel: a given-back message if
 * any waits (redeliveries go first), else the next one.  The handle holds
 * at most max_inflight leases (a batch stops there). */
static int fab__alo_take(fab_chan *ch, fab__recv_arg *arg, fab__block *blk)
{
	int r;
	if (ch->nleases >= ch->max_inflight)
		return fab__err(FAB_EAGAIN, "channel %s: max_inflight %u leases held", ch->name,
				ch->max_inflight);
	size_t cap = (arg->msg || (!arg->buf && !arg->cap)) ? SIZE_MAX : arg->cap;
	r = FAB_EAGAIN;
	/* Acquire: pairs with the returner's seq_cst increment.  A draining
	 * receiver (closed channel) always looks: the gauge is only a hint. */
	bool scanned = false;
	if (FAB__RET_COUNT(load_acquire(&ch->hdr->returned)) != 0 ||
	    load_relaxed(&ch->hdr->closed)) {
		r = fab__mpmc_take_returned(ch, &arg->pos, cap, blk);
		scanned = true;
	}
	if (r == FAB_EAGAIN) {
		r = fab__mpmc_take(ch, &arg->pos, cap, blk, FAB_SLOT_HELD);
		/* The head found a redelivery nobody counted and counted it
		 * (fab__mpmc_recount): take it now. */
		if (r == FAB_EAGAIN && !scanned &&
		    FAB__RET_COUNT(load_acquire(&ch->hdr->returned)) != 0)
			r = fab__mpmc_take_returned(ch, &arg->pos, cap, blk);
	}
	if (r)
		return r;
	size_t len;
	const void *p = fab__mpmc_payload(ch, arg->pos, &len);
	fab__alo_leased(ch, arg->pos, (const fab_mslot_alo *)((const uint8_t *)p - ch->mhdr));
	if (arg->msg) {
		*arg->msg = p;
		*arg->len = len;
		return 0;
	}
	if (len && arg->buf)
		memcpy(arg->buf, p, len);
	return (int)len;
}

static int fab__alo_check(fab_chan *ch, const char *what)
{
	int rc;
	if ((rc = fab__chan_check(ch, FAB_RECV)))
		return rc;
	if (ch->delivery != FAB_AT_LEAST_ONCE)
		return fab__err(FAB_EINVAL,
				"%s: channel %s is at-most-once (a message is consumed when received)",
				what, ch->name);
	return 0;
}

int fab_ack(fab_chan *ch)
{
	int rc;
	if ((rc = fab__alo_check(ch, "fab_ack")))
		return rc;
	if (ch->nleases == 0)
		return fab__err(FAB_EINVAL, "fab_ack: handle holds no lease on %s", ch->name);
	return fab__leases_end(ch, 0);
}

int fab_nack(fab_chan *ch)
{
	int rc;
	if ((rc = fab__alo_check(ch, "fab_nack")))
		return rc;
	if (ch->nleases == 0)
		return fab__err(FAB_EINVAL, "fab_nack: handle holds no lease on %s", ch->name);
	return fab__leases_end(ch, 1);
}

int fab_recv_info(fab_chan *ch, fab_msg_info *info)
{
	int rc;
	if ((rc = fab__alo_check(ch, "fab_recv_info")))
		return rc;
	if (!info)
		return fab__err(FAB_EINVAL, "fab_recv_info: NULL fab_msg_info pointer");
	if (info->size < offsetof(fab_msg_info, enqueue_ns) + sizeof(int64_t) || info->size > 4096)
		return fab__err(FAB_EINVAL,
				"fab_msg_info.size is %u: set it to sizeof(fab_msg_info) (%zu bytes "
				"here)",
				info->size, sizeof(fab_msg_info));
	if (!ch->have_info)
		return fab__err(FAB_ENOENT, "no message received through this handle yet");
	fab__out_struct(info, &ch->info, sizeof ch->info);
	return 0;
}

/* Give back every lease a handle still holds (its release): they were
 * neither acked nor nacked, so they count towards max_deliveries but not as
 * nacked. */
static void fab__alo_give_back(fab_chan *ch)
{
	while (ch->nleases) {
		uint64_t pos = ch->leases[ch->lease_first];
		ch->lease_first = (ch->lease_first + 1) % ch->max_inflight;
		ch->nleases--;
		fab__mpmc_give_back(ch, pos);
	}
	ch->acquired = false;
}


static int fab__try_recv_once(fab_chan *ch, void *a, fab__block *blk)
{
	fab__recv_arg *arg = a;
	int ce = 0, again = 0;
retry:
	blk->behind_tag = 0;
	ssize_t r;
	if (ch->ring == FAB_RING_SPSC) {
		if (arg->msg)
			r = fab__spsc_peek(ch, arg->msg, arg->len);
		else
			r = fab__spsc_pop(ch, arg->buf, arg->cap);
	} else if (ch->delivery == FAB_AT_LEAST_ONCE) {
		r = fab__alo_take(ch, arg, blk);
	} else {
		size_t cap = (arg->msg || (!arg->buf && !arg->cap)) ? SIZE_MAX : arg->cap;
		/* An acquired message stays in its slot: HELD, so producers
		 * pass it (a copy is READING for the moment it takes). */
		r = fab__mpmc_take(ch, &arg->pos, cap, blk,
				   arg->msg ? FAB_SLOT_HELD : FAB_SLOT_READING);
		if (r == 0) {
			size_t len;
			const void *p = fab__mpmc_payload(ch, arg->pos, &len);
			if (arg->msg) {
				*arg->msg = p;
				*arg->len = len;
			} else {
				if (len && arg->buf)
					memcpy(arg->buf, p, len);
				fab__mpmc_free(ch, arg->pos);
				r = (ssize_t)len;
			}
		}
	}
	if (r == FAB_EAGAIN && !blk->behind_tag && (ce = fab__chan_closed_empty(ch, blk)) < 0 &&
	    again++ < 4)
		goto retry; /* a SKIP at head: the take clears it */
	if (r == FAB_EAGAIN && !blk->behind_tag && ce > 0) {
		if (ch->delivery == FAB_AT_LEAST_ONCE) {
			/* Not drained while another handle's lease may still come
			 * back: wait for it (watching its owner's liveness). */
			uint32_t tag = 0;
			if (fab__mpmc_foreign_leases(ch, &tag) != 0) {
				blk->behind_tag = tag;
				return FAB_EAGAIN;
			}
		}
		return fab__err(FAB_ECLOSED, "channel %s is closed and drained", ch->name);
	}
	return (int)r;
}

static inline int fab__recv_check(fab_chan *ch)
{
	int rc;
	if ((rc = fab__chan_check(ch, FAB_RECV)))
		return rc;
	/* A receive forgets the last origin time; one from an at-least-once
	 * channel sets it again (at-most-once slots carry no time). */
	fab__origin_ns = 0;
	if (unlikely(ch->acquired))
		return fab__err(FAB_EINVAL, "channel %s: release the acquired message first", ch->name);
	if (unlikely(ch->kind == FAB_SPSC && !(ch->end_word & 2))) {
		if (ch->ring == FAB_RING_SPSC)
			return fab__spsc_take_recv_end(ch);
		if ((rc = fab__spsc_attach_end(ch, &ch->hdr->spsc_receiver)))
			return rc;
		ch->end_word |= 2;
	}
	return 0;
}

static ssize_t fab__recv_blocking(fab_chan *ch, fab__recv_arg *arg, fab_ctx *ctx)
{
	int rc;
	if (ch->capacity == 0 && ctx && (rc = fab__ctx_done(ctx))) {
		/* An ended context (fab_recv, fab_recv_acquire): proceed only if
		 * that is possible at once, as fab_try_recv (a message in the
		 * slot, or a select's send case asleep with its message), the
		 * mirror of fab__send_slow. */
		fab__block blk;
		int r = fab__try_recv_once(ch, arg, &blk);
		if (r == FAB_EAGAIN)
			r = fab__recv_unbuffered_now(ch, arg);
		return r == FAB_EAGAIN ? fab__ctx_fail(rc) : r;
	}
	if (ch->capacity == 0) {
		/* Announce a waiting receiver for unbuffered try_send and for
		 * select's send cases, which sleep until one appears. */
		bool ready = fab__ready_raise(ch);
		fab__wake_senders(ch);
		rc = fab__wait(ch, 1, ctx, fab__try_recv_once, arg);
		if (ready)
			fab__ready_lower(ch);
	} else {
		rc = fab__wait(ch, 1, ctx, fab__try_recv_once, arg);
	}
	return rc;
}

static __attribute__((noinline)) ssize_t fab__recv_slow(fab_chan *ch, void *buf, size_t cap,
							  fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__recv_check(ch)))
		return rc;
	if (ctx && (rc = fab__ctx_valid(ctx)))
		return rc;
	if (!buf && cap)
		return fab__err(FAB_EINVAL, "NULL buffer with capacity %zu", cap);
	if (unlikely(ch->nleases) && (rc = fab__alo_begin_recv(ch)))
		return rc;
	if (likely(ch->ring == FAB_RING_SPSC)) {
		/* Fast path: one straight line when a message is there. */
		ssize_t r = fab__spsc_pop(ch, buf, cap);
		if (likely(r >= 0)) {
			fab__wake_senders(ch);
			return r;
		}
		if (r != FAB_EAGAIN)
			return r;
	}
	fab__recv_arg arg = {.buf = buf, .cap = cap};
	ssize_t r = fab__recv_blocking(ch, &arg, ctx);
	if (r >= 0)
		fab__wake_senders(ch);
	return r;
}

static __attribute__((noinline)) ssize_t fab__try_recv_slow(fab_chan *ch, void *buf, size_t cap)
{
	int rc;
	if ((rc = fab__recv_check(ch)))
		return rc;
	if (!buf && cap)
		return fab__err(FAB_EINVAL, "NULL buffer with capacity %zu", cap);
	if (unlikely(ch->nleases) && (rc = fab__alo_begin_recv(ch)))
		return rc;
	if (likely(ch->ring == FAB_RING_SPSC)) {
		/* Fast path, as in fab_recv. */
		ssize_t k = fab__spsc_pop(ch, buf, cap);
		if (likely(k >= 0)) {
			fab__wake_senders(ch);
			return k;
		}
		if (k != FAB_EAGAIN)
			return k;
		fab__block blk;
		if (fab__chan_closed_empty(ch, &blk) > 0)
			return fab__err(FAB_ECLOSED, "channel %s is closed and drained", ch->name);
		return fab__err_none(FAB_EAGAIN);
	}
	fab__recv_arg arg = {.buf = buf, .cap = cap};
	fab__block blk;
	int r = fab__try_recv_once(ch, &arg, &blk);
	if (r == FAB_EAGAIN && ch->capacity == 0)
		r = fab__recv_unbuffered_now(ch, &arg);
	if (r >= 0)
		fab__wake_senders(ch);
	return r == FAB_EAGAIN ? fab__err_none(r) : r;
}

int fab_recv_acquire(fab_chan *ch, const void **msg, size_t *len, fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__recv_check(ch)))
		return rc;
	if (!msg || !len)
		return fab__err(FAB_EINVAL, "NULL msg or len pointer");
	if (ctx && (rc = fab__ctx_valid(ctx)))
		return rc;
	if (ch->nleases && (rc = fab__alo_begin_recv(ch)))
		return rc;
	fab__recv_arg arg = {.msg = msg, .len = len};
	ssize_t r = fab__recv_blocking(ch, &arg, ctx);
	if (r < 0)
		return (int)r;
	ch->acquired = true;
	ch->acquired_pos = arg.pos;
	if (ch->ring == FAB_RING_MPMC)
		fab__wake_senders(ch); /* an unbuffered sender waits for the take */
	return 0;
}

int fab_recv_release(fab_chan *ch)
{
	int rc;
	if ((rc = fab__chan_check(ch, FAB_RECV)))
		return rc;
	if (!ch->acquired)
		return fab__err(FAB_EINVAL, "channel %s: release without acquire", ch->name);
	if (ch->delivery == FAB_AT_LEAST_ONCE)
		return fab__leases_end(ch, 0); /* the lease ends with the borrow */
	ch->acquired = false;
	if (ch->ring == FAB_RING_SPSC) {
		fab__spsc_consume(ch);
	} else if ((rc = fab__mpmc_unhold(ch, ch->acquired_pos))) {
		fab__wake_senders(ch);
		return rc;
	}
	fab__wake_senders(ch);
	return 0;
}

/* ---- batches --------------------------------------------------------------- */

int fab_send_batch(fab_chan *ch, const fab_iov *msgs, unsigned n, fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__chan_check(ch, FAB_SEND)))
		return rc;
	if (!msgs || n == 0)
		return fab__err(FAB_EINVAL, "empty batch");
	for (unsigned i = 0; i < n; i++)
		if (!msgs[i].base && msgs[i].len)
			return fab__err(FAB_EINVAL, "batch entry %u: NULL message with length %zu", i,
					msgs[i].len);
	if ((rc = fab_send(ch, msgs[0].base, msgs[0].len, ctx)))
		return rc;
	unsigned i = 1;
	if (ch->ring == FAB_RING_SPSC) {
		/* One wake check for the rest.  `closed` cannot change under us:
		 * only the holder of the send end closes an spsc ring, and the
		 * first send made us the holder (see fab_chan_close). */
		if (load_relaxed(&ch->hdr->closed))
			return (int)i;
		for (; i < n; i++) {
			if (msgs[i].len > ch->msg_size || (!msgs[i].base && msgs[i].len))
				break;
			if (fab__spsc_push(ch, msgs[i].base, msgs[i].len))
				break;
		}
		fab__wake_receivers(ch);
		return (int)i;
	}
	for (; i < n; i++)
		if (fab_try_send(ch, msgs[i].base, msgs[i].len))
			break;
	return (int)i;
}

int fab_recv_batch(fab_chan *ch, fab_iov *msgs, unsigned n, fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__chan_check(ch, FAB_RECV)))
		return rc;
	if (!msgs || n == 0)
		return fab__err(FAB_EINVAL, "empty batch");
	for (unsigned i = 0; i < n; i++)
		if (!msgs[i].base && msgs[i].len)
			return fab__err(FAB_EINVAL, "batch entry %u: NULL buffer with length %zu", i,
					msgs[i].len);
	ssize_t r = fab_recv(ch, msgs[0].base, msgs[0].len, ctx);
	if (r < 0)
		return (int)r;
	msgs[0].len = (size_t)r;
	unsigned i = 1;
	if (ch->ring == FAB_RING_SPSC) {
		/* The rest straight off the ring while messages are there. */
		for (; i < n; i++) {
			if (!msgs[i].base && msgs[i].len)
				break;
			r = fab__spsc_pop(ch, msgs[i].base, msgs[i].len);
			if (r < 0)
				break;
			msgs[i].len = (size_t)r;
		}
		fab__wake_senders(ch);
		return (int)i;
	}
	for (; i < n; i++) {
		fab__recv_arg arg = {.buf = msgs[i].base, .cap = msgs[i].len};
		fab__block blk;
		if (ch->delivery == FAB_AT_LEAST_ONCE && ch->nleases >= ch->max_inflight)
			break; /* a batch leases at most max_inflight messages */
		r = fab__try_recv_once(ch, &arg, &blk);
		if (r < 0)
			break;
		msgs[i].len = (size_t)r;
	}
	fab__wake_senders(ch);
	return (int)i;
}

/* ---- the fast paths ---------------------------------------------------------- */

/*
 * fab_send, fab_try_send, fab_recv and fab_try_recv for messages of at most
 * FAB__FAST_MAX bytes on an spsc ring whose end this handle holds, or on a
 * buffered at-most-once mpmc ring: straight lines with few or no register
 * saves and no call, that do only what the message needs (spsc: the copy,
 * the word, tail or head, the pulse; mpmc: the first pass of the claim or
 * take, the copy, the state).  Every other case, and every case where the
 * fast line would have to wait, fail or wake someone, goes to the general
 * functions above, which start over: the fast line changes nothing before
 * it knows it will finish (an mpmc send that finds the channel closed after
 * its claim gives the slot up exactly as fab__mpmc_commit does).
 *
 * In one process a send+recv pair of 8..64 bytes costs about half what the
 * general functions cost (register saves, a call to memcpy, calls for the
 * ring, the wait loop's indirect first try); docs/performance.md "Fast
 * paths" has the figures.
 *
 * A larger message on an spsc ring passes the same checks in the fast line
 * and is then copied by a function of its own reached by a tail call
 * (fab__spsc_send_big, fab__spsc_recv_big): the copy needs memcpy, whose
 * call would cost the small messages' line its frame, and the general path
 * would check everything a second time (~10 ns a send+receive pair of
 * 1 KiB in one process; "The larger message's line" in performance.md).
 */

/* A sleeper on `word`?  fab__wake_word's check without the wake. */
static inline __attribute__((always_inline)) int fab__sleepers(_Atomic uint32_t *word)
{
	/* As fab__wake_word: our publication is ordered before this load. */
	if (likely(fab__mb_registered))
		atomic_signal_fence(memory_order_seq_cst);
	else
		atomic_thread_fence(memory_order_seq_cst);
	return load_relaxed(word) & 1u;
}

static __attribute__((noinline)) int fab__sent_wake(fab_chan *ch)
{
	fab__wake_receivers(ch);
	return 0;
}

static __attribute__((noinline)) ssize_t fab__received_wake(fab_chan *ch, ssize_t n)
{
	fab__wake_senders(ch);
	return n;
}

/* An at-most-once mpmc ring with room at the tail hint and a free slot
 * there: fab__mpmc_claim's first pass, fab__mpmc_fill and fab__mpmc_commit
 * in one line.  0 sent; 1 general path (nothing changed); 2 the channel
 * closed after we claimed (*pos is ours to skip, see fab__send_closed). */
static inline __attribute__((always_inline)) int fab__mpmc_send_fast(fab_chan *ch, const void *msg,
								     size_t len, uint64_t *pos,
								     bool alo)
{
	fab_chan_hdr *hd = ch->hdr;
	/* As fab__try_send_once: a closed channel takes the general path. */
	if (unlikely(load_acquire(&hd->closed)))
		return 1;
	/* As fab__mpmc_claim: acquire the tail hint; the cached head errs
	 * towards "full", which the general path refreshes. */
	uint64_t p = load_acquire(&hd->tail);
	int64_t d = (int64_t)(p - ch->head_cache);
	if (unlikely(d >= (int64_t)ch->cap_eff) || unlikely(d < 0))
		return 1;
	fab_mslot *sl = (fab_mslot *)(ch->slots + (size_t)(p & ch->mask) * ch->slot_size);
	uint64_t w = load_acquire(&sl->state);
	if (unlikely(w != FAB_SW_MAKE(p, FAB_SLOT_FREE, 0)))
		return 1;
	/* seq_cst, as in fab__mpmc_claim: the claim and our load of `closed`
	 * below are in one total order with a closer's store. */
	if (unlikely(!cas_seq_cst(&sl->state, &w, FAB_SW_MAKE(p, FAB_SLOT_WRITING, ch->fab->tag))))
		return 1;
	uint64_t t = p; /* fab__bump: move the hint on if nobody did */
	cas(&hd->tail, &t, p + 1);
	sl->len = (uint32_t)len;
	fab__copy_small((uint8_t *)sl + ch->mhdr, msg, len);
	if (alo) {
		/* The delivery header, as fab__mpmc_commit writes it. */
		fab_mslot_alo *a = (fab_mslot_alo *)sl;
		int64_t now = fab__now_ns();
		sl->returns = 0;
		a->enqueue_ns = now;
		a->origin_ns = fab__origin_ns ? fab__origin_ns : now;
	}
	*pos = p;
	if (unlikely(load_seq_cst(&hd->closed))) /* as fab__mpmc_commit */
		return 2;
	/* Pairs with fab__mpmc_take's load of the state (fab__mpmc_commit). */
	store_release(&sl->state, FAB_SW_MAKE(p, FAB_SLOT_FULL, ch->fab->tag));
	return 0;
}

static __attribute__((noinline)) int fab__send_closed(fab_chan *ch, uint64_t pos)
{
	fab__mpmc_skip(ch, pos, FAB_SLOT_WRITING);
	fab__wake_receivers(ch); /* a draining receiver may have seen our claim */
	return fab__err(FAB_ECLOSED, "channel %s is closed", ch->name);
}

/* At-least-once: the at-most-once line with the delivery header, then what
 * fab_send or fab_try_send does after its fast line.  Out of line and
 * reached by a tail call (fab__send_fast answers 3): its clock read is a
 * call, and a call in fab_send itself would cost the other fast lines their
 * frameless code (register saves on every send; measured, 64 B spsc
 * 45 -> 38 M msg/s). */
static __attribute__((noinline)) int fab__alo_send(fab_chan *ch, const void *msg, size_t len,
						    fab_ctx *ctx, bool try)
{
	uint64_t pos = 0;
	int rc = fab__mpmc_send_fast(ch, msg, len, &pos, true);
	if (rc != 1)
		fab__pulse(ch->calls);
	if (unlikely(rc == 2))
		return fab__send_closed(ch, pos);
	if (unlikely(rc))
		return try ? fab__try_send_slow(ch, msg, len) : fab__send_slow(ch, msg, len, ctx);
	if (unlikely(fab__sleepers(&ch->hdr->recv_futex)))
		return fab__sent_wake(ch);
	return 0;
}

/*
 * A message larger than FAB__FAST_MAX on an spsc ring that has room for it
 * (fab__send_fast checked the handle, the arguments, the room and `closed`
 * and answered 4): the copy, the word, the pulse and the sleeper check,
 * without the general path's second round of checks.  Reached by a tail
 * call, so fab_send and fab_try_send stay frameless for small messages.
 */
static __attribute__((noinline)) int fab__spsc_send_big(fab_chan *ch, const void *msg, size_t len)
{
	uint64_t p = ch->tail_local;
	memcpy(fab__spsc_slot(ch, p), msg, len);
	fab__spsc_publish(ch, p, len);
	fab__pulse(ch->calls);
	if (unlikely(fab__sleepers(&ch->hdr->recv_futex)))
		fab__wake_receivers(ch);
	return 0;
}

/* 0 sent, 1 general path, 2 closed after an mpmc claim (*pos), 3 an
 * at-least-once mpmc ring (the handle checked): fab__alo_send; 4 a larger
 * message with room on an spsc ring: fab__spsc_send_big. */
static inline __attribute__((always_inline)) int
fab__send_fast(fab_chan *ch, const void *msg, size_t len, fab_ctx *ctx, uint64_t *pos)
{
	unsigned gen = load_relaxed(&fab__fork_gen);
	if (unlikely(!ch) || unlikely(ch->fork_gen != gen) || unlikely(!(ch->role & FAB_SEND)) ||
	    unlikely(ch->reserved) || unlikely(len > ch->msg_size) ||
	    unlikely(!msg && len) || unlikely(ctx && ctx->fork_gen != gen))
		return 1;
	if (ch->ring != FAB_RING_SPSC) {
		if (unlikely(len > FAB__FAST_MAX))
			return 1;
		/* An at-least-once spsc channel (the mpmc ring): the send end
		 * is taken by fab__send_check on the general path. */
		if (unlikely(ch->capacity == 0) ||
		    unlikely(ch->kind == FAB_SPSC && !(ch->end_word & 1)))
			return 1;
		if (ch->delivery == FAB_AT_LEAST_ONCE)
			return 3;
		int rc = fab__mpmc_send_fast(ch, msg, len, pos, false);
		if (rc != 1)
			fab__pulse(ch->calls);
		return rc;
	}
	if (unlikely(!(ch->end_word & 1)))
		return 1;
	uint64_t p = ch->tail_local;
	/* As in the general path: `closed` is exact for the holder of the
	 * send end (see fab_chan_close). */
	if (unlikely(p >= ch->send_limit) || unlikely(load_acquire(&ch->hdr->closed)))
		return 1;
	if (unlikely(len > FAB__FAST_MAX))
		return 4; /* room for it: fab__spsc_send_big */
	fab__copy_small(fab__spsc_slot(ch, p), msg, len);
	fab__spsc_publish(ch, p, len);
	fab__pulse(ch->calls);
	return 0;
}

int fab_send(fab_chan *ch, const void *msg, size_t len, fab_ctx *ctx)
{
	uint64_t pos = 0;
	int rc = fab__send_fast(ch, msg, len, ctx, &pos);
	if (unlikely(rc == 4))
		return fab__spsc_send_big(ch, msg, len);
	if (unlikely(rc == 3))
		return fab__alo_send(ch, msg, len, ctx, false);
	if (unlikely(rc == 2))
		return fab__send_closed(ch, pos);
	if (unlikely(rc))
		return fab__send_slow(ch, msg, len, ctx);
	if (unlikely(fab__sleepers(&ch->hdr->recv_futex)))
		return fab__sent_wake(ch);
	return 0;
}

int fab_try_send(fab_chan *ch, const void *msg, size_t len)
{
	uint64_t pos = 0;
	int rc = fab__send_fast(ch, msg, len, NULL, &pos);
	if (unlikely(rc == 4))
		return fab__spsc_send_big(ch, msg, len);
	if (unlikely(rc == 3))
		return fab__alo_send(ch, msg, len, NULL, true);
	if (unlikely(rc == 2))
		return fab__send_closed(ch, pos);
	if (unlikely(rc))
		return fab__try_send_slow(ch, msg, len);
	if (unlikely(fab__sleepers(&ch->hdr->recv_futex)))
		return fab__sent_wake(ch);
	return 0;
}

/* fab__mpmc_take's first pass: a FULL slot at the head hint with a message
 * of at most FAB__FAST_MAX bytes that fits `cap`, claimed (`as`: READING
 * for a copy, HELD for a lease; our tag) and the hint moved on.  The slot,
 * or NULL for the general path (nothing changed). */
static inline __attribute__((always_inline)) fab_mslot *fab__mpmc_take_fast(fab_chan *ch, size_t cap,
									   uint64_t *pos, uint32_t *len,
									   uint32_t as)
{
	fab_chan_hdr *hd = ch->hdr;
	uint64_t q = load_acquire(&hd->head);
	fab_mslot *sl = (fab_mslot *)(ch->slots + (size_t)(q & ch->mask) * ch->slot_size);
	/* seq_cst, as in fab__mpmc_take (see fab__chan_closed_empty). */
	uint64_t w = load_seq_cst(&sl->state);
	if (unlikely(!FAB_SW_SAMEPOS(w, q)) || unlikely(FAB_SW_STATE(w) != FAB_SLOT_FULL))
		return NULL;
	uint32_t l = sl->len;
	if (unlikely(l > ch->msg_size) || unlikely(l > cap) || unlikely(l > FAB__FAST_MAX))
		return NULL;
	/* A lease given back where a producer had passed it: only the
	 * redelivery scan takes it (fab__mpmc_take). */
	if (as == FAB_SLOT_HELD && unlikely(sl->returns != 0))
		return NULL;
	if (unlikely(!cas(&sl->state, &w, FAB_SW_MAKE(q, as, ch->fab->tag))))
		return NULL;
	uint64_t hq = q; /* fab__bump */
	cas(&hd->head, &hq, q + 1);
	*pos = q;
	*len = l;
	return sl;
}

/* An at-most-once mpmc ring with a full slot at the head hint:
 * fab__mpmc_take's first pass, the copy and fab__mpmc_free in one line.
 * The length, or -1 for the general path (nothing changed). */
static inline __attribute__((always_inline)) ssize_t fab__mpmc_recv_fast(fab_chan *ch, void *buf,
									 size_t cap)
{
	uint64_t q;
	uint32_t len;
	fab_mslot *sl = fab__mpmc_take_fast(ch, cap, &q, &len, FAB_SLOT_READING);
	if (!sl)
		return -1;
	fab__copy_small(buf, (uint8_t *)sl + ch->mhdr, len);
	/* As fab__mpmc_free: our reads finish before the next lap's writer. */
	store_release(&sl->state, FAB_SW_MAKE(q + ch->nslots, FAB_SLOT_FREE, 0));
	fab__origin_ns = 0;
	fab__pulse(ch->calls);
	return len;
}

/* At-least-once: the implicit ack of the handle's one lease (fab__lease_end)
 * and a take at the head (fab__alo_take's first pass) in one call, for a
 * handle holding at most one lease (max_inflight 1, the default, or a
 * single-message receive) on a channel with nothing waiting for redelivery.
 * The length, or -1 for the general path; an ack done here stays done (the
 * general path then finds no lease to end). */
static inline __attribute__((always_inline)) ssize_t fab__alo_recv_fast(fab_chan *ch, void *buf,
									size_t cap)
{
	fab_chan_hdr *hd = ch->hdr;
	uint32_t tag = ch->fab->tag;
	if (ch->nleases) {
		if (unlikely(ch->nleases != 1))
			return -1;
		uint64_t lp = ch->leases[ch->lease_first];
		fab_mslot_alo *la = (fab_mslot_alo *)(ch->slots + (size_t)(lp & ch->mask) * ch->slot_size);
		/* The lease is ours: its header is stable until the ack. */
		int64_t origin = la->origin_ns;
		uint64_t lw = FAB_SW_MAKE(lp, FAB_SLOT_HELD, tag);
		/* Release, as fab__mpmc_ack: our reads of the payload finish
		 * before a producer of the next lap writes.  A producer that
		 * passed the slot moved its position: the general path. */
		if (unlikely(!atomic_compare_exchange_strong_explicit(
			    &la->m.state, &lw, FAB_SW_MAKE(lp + ch->nslots, FAB_SLOT_FREE, 0),
			    memory_order_release, memory_order_relaxed)))
			return -1; /* the general path reports it */
		ch->lease_first = ch->lease_first + 1 == ch->max_inflight ? 0 : ch->lease_first + 1;
		ch->nleases = 0;
		if (origin)
			fab__hist_note(&ch->lat, &hd->latency, fab__now_ns() - origin);
		/* As fab__lease_end: a freed slot for a sleeping sender, and a
		 * drain (closed channel) waits for every lease; the seq_cst
		 * load is its Dekker half (docs/delivery.md). */
		if (unlikely(fab__sleepers(&hd->send_futex)))
			fab__wake_senders(ch);
		if (unlikely(load_seq_cst(&hd->closed))) {
			fab__wake_receivers(ch);
			return -1;
		}
	}
	/* As fab__alo_take: redeliveries go first, and a closed channel
	 * drains through the general path. */
	if (unlikely(FAB__RET_COUNT(load_acquire(&hd->returned)) != 0) ||
	    unlikely(load_relaxed(&hd->closed)))
		return -1;
	uint64_t q;
	uint32_t len;
	fab_mslot *sl = fab__mpmc_take_fast(ch, cap, &q, &len, FAB_SLOT_HELD);
	if (!sl)
		return -1;
	fab__alo_leased(ch, q, (const fab_mslot_alo *)sl); /* the handle held none */
	fab__copy_small(buf, (uint8_t *)sl + ch->mhdr, len);
	fab__pulse(ch->calls);
	return len;
}

/* fab_recv and fab_try_recv on an at-least-once mpmc ring: the fast line,
 * then what they do after theirs.  Out of line and reached by a tail call
 * (fab__recv_fast answers -3), as fab__alo_send. */
static __attribute__((noinline)) ssize_t fab__alo_recv(fab_chan *ch, void *buf, size_t cap,
						       fab_ctx *ctx, bool try)
{
	ssize_t n = fab__alo_recv_fast(ch, buf, cap);
	if (unlikely(n < 0))
		return try ? fab__try_recv_slow(ch, buf, cap) : fab__recv_slow(ch, buf, cap, ctx);
	if (unlikely(fab__sleepers(&ch->hdr->send_futex)))
		return fab__received_wake(ch, n);
	return n;
}

/* The receive of a message larger than FAB__FAST_MAX that fab__recv_fast
 * found committed at our head of an spsc ring and that fits the buffer
 * (it answered -4, with the length it checked): as fab__spsc_send_big, the
 * copy, head, the pulse and the sleeper check without a second round of
 * checks.  The length is the one checked, not read again: the word cannot
 * change under us unless the segment is scribbled on. */
static __attribute__((noinline)) ssize_t fab__spsc_recv_big(fab_chan *ch, void *buf, uint32_t len)
{
	uint64_t h = ch->head_local;
	memcpy(buf, fab__spsc_slot(ch, h), len);
	fab__spsc_advance(ch, h);
	fab__origin_ns = 0;
	fab__pulse(ch->calls);
	if (unlikely(fab__sleepers(&ch->hdr->send_futex)))
		fab__wake_senders(ch);
	return len;
}

/* The fast receive: the length (>= 0), -2 when the ring is empty (the
 * handle and arguments checked), -3 for fab__alo_recv (the handle and
 * arguments checked), -4 for fab__spsc_recv_big, or -1 to take the general
 * path. */
static inline __attribute__((always_inline)) ssize_t fab__recv_fast(fab_chan *ch, void *buf,
								    size_t cap, fab_ctx *ctx,
								    uint32_t *biglen)
{
	unsigned gen = load_relaxed(&fab__fork_gen);
	if (unlikely(!ch) || unlikely(ch->fork_gen != gen) || unlikely(!(ch->role & FAB_RECV)) ||
	    unlikely(ch->acquired) || unlikely(!buf) || unlikely(ctx && ctx->fork_gen != gen))
		return -1;
	if (ch->ring != FAB_RING_SPSC) {
		/* As above: fab__recv_check takes an spsc receive end. */
		if (unlikely(ch->capacity == 0) ||
		    unlikely(ch->kind == FAB_SPSC && !(ch->end_word & 2)))
			return -1;
		if (ch->delivery == FAB_AT_LEAST_ONCE)
			return -3;
		return fab__mpmc_recv_fast(ch, buf, cap);
	}
	if (unlikely(!(ch->end_word & 2)))
		return -1;
	/* fab__spsc_front without its error paths (the general path has
	 * them): a call would cost this function its frameless line. */
	uint64_t h = ch->head_local;
	uint64_t e = load_acquire(fab__spsc_word(ch, h)); /* as fab__spsc_front */
	if (unlikely(FAB_SE_MARK(e) != FAB_SE_MARK(FAB_SE_FULL(h, 0)))) {
		/* Empty: the slot still holds the lap before (the only word
		 * fab__spsc_empty accepts for an empty ring, since every
		 * position is written in turn). */
		if (FAB_SE_MARK(e) == FAB_SE_MARK(FAB_SE_FULL(h - ch->nslots, 0)))
			return -2;
		return -1;
	}
	uint32_t len = FAB_SE_LEN(e);
	if (unlikely(len > cap) || unlikely(len > ch->msg_size))
		return -1;
	if (unlikely(len > FAB__FAST_MAX)) {
		*biglen = len;
		return -4; /* fab__spsc_recv_big */
	}
	fab__copy_small(buf, fab__spsc_slot(ch, h), len);
	fab__spsc_advance(ch, h);
	fab__origin_ns = 0; /* as fab__recv_check: a receive forgets the origin */
	fab__pulse(ch->calls);
	return len;
}

ssize_t fab_recv(fab_chan *ch, void *buf, size_t cap, fab_ctx *ctx)
{
	uint32_t big = 0;
	ssize_t n = fab__recv_fast(ch, buf, cap, ctx, &big);
	if (unlikely(n == -4))
		return fab__spsc_recv_big(ch, buf, big);
	if (unlikely(n == -3))
		return fab__alo_recv(ch, buf, cap, ctx, false);
	if (unlikely(n < 0))
		return fab__recv_slow(ch, buf, cap, ctx);
	if (unlikely(fab__sleepers(&ch->hdr->send_futex)))
		return fab__received_wake(ch, n);
	return n;
}

ssize_t fab_try_recv(fab_chan *ch, void *buf, size_t cap)
{
	uint32_t big = 0;
	ssize_t n = fab__recv_fast(ch, buf, cap, NULL, &big);
	if (unlikely(n == -4))
		return fab__spsc_recv_big(ch, buf, big);
	if (unlikely(n == -3))
		return fab__alo_recv(ch, buf, cap, NULL, true);
	if (n == -2 && likely(!load_seq_cst(&ch->hdr->closed))) {
		/* Empty and open: what the general path would answer, without
		 * its walk (a poll loop spends most of its time here).  The
		 * seq_cst load is fab__chan_closed_empty's.  A receive
		 * forgets the origin time, as fab__recv_check does. */
		fab__origin_ns = 0;
		fab__pulse(ch->calls);
		return fab__err_none(FAB_EAGAIN);
	}
	if (unlikely(n < 0))
		return fab__try_recv_slow(ch, buf, cap);
	if (unlikely(fab__sleepers(&ch->hdr->send_futex)))
		return fab__received_wake(ch, n);
	return n;
}

/* ---- introspection ----------------------------------------------------------- */

static uint64_t fab__chan_len_raw(fab_chan *ch)
{
	uint64_t t = load_acquire(&ch->hdr->tail);
	uint64_t h = load_acquire(&ch->hdr->head);
	int64_t d = (int64_t)(t - h);
	if (d < 0)
		d = 0;
	if (ch->ring == FAB_RING_MPMC && d > 0) {
		/* The positions where senders passed a held slot stand in
		 * [head, tail) until receivers reach them, held or not any
		 * more: they are not messages (a user trial saw a channel of
		 * 16 with 4 queued read 16/16 while workers held jobs).  A scan
		 * of at most the queue's positions, as fab_chan_stats does. */
		uint64_t a = fab__mpmc_passed_ahead(ch, false);
		d = a < (uint64_t)d ? d - (int64_t)a : 0;
	}
	if (ch->delivery == FAB_AT_LEAST_ONCE) {
		/* Given-back messages wait behind head for redelivery (counted
		 * from the slots: the `returned` gauge is only a hint). */
		d += (int64_t)fab__mpmc_returned_now(ch);
	}
	if (d > (int64_t)ch->capacity)
		d = ch->capacity;
	return (uint64_t)d;
}

size_t fab_chan_len(fab_chan *ch)
{
	if (fab__chan_check(ch, 0))
		return 0;
	return (size_t)fab__chan_len_raw(ch);
}

size_t fab_chan_cap(fab_chan *ch)
{
	if (fab__chan_check(ch, 0))
		return 0;
	return ch->capacity;
}

int fab_chan_stats(fab_chan *ch, fab_stats *st)
{
	int rc;
	if ((rc = fab__chan_check(ch, 0)))
		return rc;
	if (!st)
		return fab__err(FAB_EINVAL, "fab_chan_stats: NULL fab_stats pointer");
	if (st->size < offsetof(fab_stats, len) || st->size > 4096)
		return fab__err(FAB_EINVAL,
				"fab_stats.size is %u: set it to sizeof(fab_stats) (%zu bytes here; "
				"%zu to 4096 accepted)",
				st->size, sizeof(fab_stats), offsetof(fab_stats, len));
	fab_chan_hdr *h = ch->hdr;
	fab_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	s.kind = ch->kind;
	s.delivery = ch->delivery;
	s.capacity = ch->capacity;
	s.msg_size = ch->msg_size;
	s.producers = h->producers;
	uint32_t closes = load_relaxed(&h->closes);
	s.closes = closes > FAB_PRODUCERS_MAX ? FAB_PRODUCERS_MAX : closes;
	s.closed = load_relaxed(&h->closed) ? 1 : 0;
	/* The blocked gauges count the sleep marks ("The sleep marks"), not
	 * the header's send_waiters / recv_waiters: a process killed between
	 * counting itself and marking its word, or between unmarking and
	 * uncounting, leaves those one high; a mark goes with its handle's
	 * word, which recovery clears. */
	for (uint32_t i = 0; i < ch->attach_max; i++) {
		uint64_t w = load_relaxed(&ch->attach[i]);
		if (!w)
			continue;
		if (FAB_ATT_ROLE(w) & FAB_SEND)
			s.senders++;
		if (FAB_ATT_ROLE(w) & FAB_RECV)
			s.receivers++;
		if (w & FAB_ATT_SLEEP_SEND)
			s.blocked_senders++;
		if (w & FAB_ATT_SLEEP_RECV)
			s.blocked_receivers++;
	}
	s.len = fab__chan_len_raw(ch);
	uint64_t skipped = load_relaxed(&h->skipped);
	uint64_t tail = load_relaxed(&h->tail) - h->start_pos;
	uint64_t head = load_relaxed(&h->head) - h->start_pos;
	/* Positions that carried no message (SKIP, counted when cleared at the
	 * head; a held slot's pass, counted when passed) are not messages.
	 * A pass that head has not reached yet is in `skipped` but not behind
	 * head: add it back, or `received` would go down at each pass and up
	 * again when head reaches it (found by review). */
	uint64_t ahead = ch->ring == FAB_RING_MPMC ? fab__mpmc_passed_ahead(ch, true) : 0;
	s.sent = tail - (skipped <= tail ? skipped : tail);
	skipped = ahead <= skipped ? skipped - ahead : 0;
	s.received = head - (skipped <= head ? skipped : head);
	if (ch->capacity == 0) {
		/* Unbuffered: a message sitting in the slot is not yet sent. */
		s.sent = s.received;
	}
	s.futex_waits = load_relaxed(&h->futex_waits);
	s.futex_wakes = load_relaxed(&h->futex_wakes);
	s.recovered = load_relaxed(&h->recovered);
	if (ch->delivery == FAB_AT_LEAST_ONCE) {
		/* Leases are counted from the slots (nothing on the fast path
		 * counts them); acked is what is left of the positions head has
		 * passed once the other outcomes are taken away. */
		s.leased = fab__mpmc_leased(ch);
		s.nacked = load_relaxed(&h->nacked);
		s.redelivered = load_relaxed(&h->redelivered);
		s.dead_lettered = load_relaxed(&h->dead_lettered);
		s.dead_dropped = load_relaxed(&h->dead_dropped);
		uint64_t gone = s.leased + fab__mpmc_returned_now(ch) + s.dead_lettered +
				s.dead_dropped;
		s.acked = s.received > gone ? s.received - gone : 0;
	}
	fab__out_struct(st, &s, sizeof s);
	return 0;
}

/* ---- select support (select.c drives these) ------------------------------ */

int fab__case_prepare(fab_case *c)
{
	int rc;
	fab_chan *ch = c->ch;
	/* Reserved words must be zero, so that a later ABI may give them a
	 * meaning without an old caller's garbage taking it (found by a
	 * binding trial). */
	if (c->resv[0] || c->resv[1])
		return fab__err(FAB_EINVAL, "fab_case.resv must be zero");
	if (c->op == FAB_OP_SEND)
		return fab__send_check(ch, c->send_msg, c->send_len);
	if (c->op != FAB_OP_RECV)
		return fab__err(FAB_EINVAL, "case op %u: want FAB_OP_SEND or FAB_OP_RECV", c->op);
	if ((rc = fab__recv_check(ch)))
		return rc;
	if (!c->recv_buf && c->recv_cap)
		return fab__err(FAB_EINVAL, "NULL recv_buf with recv_cap %zu", c->recv_cap);
	return 0;
}

int fab__case_try(fab_case *c, uint32_t self_ready, fab__block *blk)
{
	fab_chan *ch = c->ch;
	int r;
	blk->behind_tag = 0;
	if (c->op == FAB_OP_RECV) {
		fab__recv_arg arg = {.buf = c->recv_buf, .cap = c->recv_cap};
		r = fab__try_recv_once(ch, &arg, blk);
		if (r == FAB_EAGAIN)
			return FAB_EAGAIN;
		if (r >= 0)
			fab__wake_senders(ch); /* room, or an unbuffered sender's take */
		c->result = r;
		return 0;
	}
	if (ch->capacity == 0) {
		fab__send_arg arg = {.msg = c->send_msg, .len = c->send_len};
		r = fab__send_unbuffered_now(ch, &arg, self_ready);
	} else {
		fab__send_arg arg = {.msg = c->send_msg, .len = c->send_len};
		r = fab__try_send_once(ch, &arg, blk);
		if (r == 0)
			fab__wake_receivers(ch);
	}
	if (r == FAB_EAGAIN)
		return FAB_EAGAIN;
	c->result = r;
	return 0;
}

_Atomic uint32_t *fab__case_word(fab_case *c, _Atomic uint32_t **waiters)
{
	fab_chan_hdr *h = c->ch->hdr;
	if (c->op == FAB_OP_RECV) {
		*waiters = &h->recv_waiters;
		return &h->recv_futex;
	}
	*waiters = &h->send_waiters;
	return &h->send_futex;
}

bool fab__case_ready(fab_case *c, bool on)
{
	/* Only receive cases on unbuffered channels announce themselves; see
	 * fab__recv_blocking and "Waiting unbuffered receivers". */
	fab_chan *ch = c->ch;
	if (!on) {
		fab__ready_lower(ch);
		return false;
	}
	bool ready = fab__ready_raise(ch);
	fab__wake_senders(ch);
	return ready;
}

void fab__case_recover(fab_case *c, uint32_t dead_tag)
{
	fab__chan_recover(c->ch, c->ch->fab, dead_tag);
}
