/*
 * ring_mpmc.c - the multi-producer multi-consumer ring, also used for
 * unbuffered (capacity 0) channels of either kind.
 *
 * Each slot has a 64-bit state word {position, state, owner tag} (layout.h)
 * changed only by CAS, so every slot has exactly one owner at any moment and
 * recovery can read who holds it:
 *
 *   FREE(p) --producer CAS--> WRITING(p,me) --store--> FULL(p,me)
 *   FULL(p) --consumer CAS--> READING(p,me) --store--> FREE(p+nslots)
 *   WRITING(p,dead) --recovery--> SKIP(p)     (no message at p)
 *   READING(p,dead) --recovery--> FREE(p+nslots)
 *   SKIP(p) --anyone--> FREE(p+nslots)
 *
 * A message kept past its receive (fab_recv_acquire, an at-least-once
 * lease) is HELD instead of READING, and producers pass it (layout 1.4):
 *   FULL(p) --consumer CAS--> HELD(p,me)
 *   HELD(x,h) --producer at x+nslots CAS--> HELD(x+nslots,h)  (x+nslots: no message)
 *   HELD(x,me) --release/ack CAS--> FREE(x+nslots)
 *   HELD(x,dead) --recovery--> FREE(x+nslots)   (at-least-once: given back)
 * so a held message stops no producer, however long it is held.
 *
 * head and tail are hints: a producer claims the slot first and then moves
 * tail; anyone who finds the slot at tail already claimed moves tail on for
 * it (and likewise for head).  So a process killed between the two steps
 * never stalls the others, and no commit waits on another producer.
 *
 * Invariants (fab__mpmc_validate): every slot's position is within one lap
 * of [head, tail]; 0 <= tail - head <= capacity (+ the transient in-flight
 * claims); FULL slots carry len <= msg_size.
 *
 * Exact capacity: a producer may claim position p only while
 * p - head < max(capacity, 1).  head counts positions consumers have
 * claimed, so a sender blocks exactly when `capacity` messages are queued --
 * or earlier by the positions producers passed held slots at that receivers
 * have not reached yet, held or released since (one per held slot per lap,
 * so they pile up while receivers lag; docs/channels.md).  When every slot
 * a producer meets in a lap is held, it waits for a release.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define FAB__GUARD (1u << 20) /* bound on retries: a corrupted ring cannot spin us forever */

static void fab__mpmc_recount(fab_chan *ch);

static inline fab_mslot *fab__mslot(fab_chan *ch, uint64_t pos)
{
	return (fab_mslot *)(ch->slots + (size_t)(pos & ch->mask) * ch->slot_size);
}

/* Move a hint (head or tail) from `from` to from+1 if nobody did yet. */
static inline void fab__bump(_Atomic uint64_t *hint, uint64_t from)
{
	cas(hint, &from, from + 1);
}

/* Free a SKIP(p) slot at the head so positions keep flowing. */
static void fab__mpmc_clear_skip(fab_chan *ch, fab_mslot *s, uint64_t w, uint64_t p)
{
	if (cas(&s->state, &w, FAB_SW_MAKE(p + ch->nslots, FAB_SLOT_FREE, 0)))
		fetch_add_relaxed(&ch->hdr->skipped, 1);
	fab__bump(&ch->hdr->head, p);
}

int fab__mpmc_claim(fab_chan *ch, uint64_t *pos, fab__block *blk)
{
	fab_chan_hdr *hd = ch->hdr;
	uint32_t tag = ch->fab->tag;
	uint32_t passed = 0; /* held slots this call passed */
	blk->behind_tag = 0;
	for (uint32_t guard = 0; guard < FAB__GUARD; guard++) {
		/* Acquire the tail hint: a later slot read must not see a state
		 * older than the hint that led us to it.  head only grows, so a
		 * cached copy errs on the safe side ("full"); it is refreshed
		 * only when it says full, so the consumers' line is not pulled
		 * on every send. */
		uint64_t p = load_acquire(&hd->tail);
		uint64_t h = ch->head_cache;
		int64_t d = (int64_t)(p - h);
		if (d >= (int64_t)ch->cap_eff || d < 0) {
			h = ch->head_cache = load_acquire(&hd->head);
			d = (int64_t)(p - h);
		}
		if (unlikely(d > (int64_t)ch->nslots + 1 || d < -(int64_t)ch->nslots)) {
			/* A snapshot taken across a preemption (old tail, new
			 * head) looks like this too: only a stable one is
			 * corruption. */
			if (load_acquire(&hd->tail) != p || load_acquire(&hd->head) != h ||
			    guard < 64) {
				cpu_relax();
				continue;
			}
			return fab__err(FAB_ECORRUPT, "channel %s: head/tail %lld apart", ch->name,
					(long long)d);
		}
		if (d >= (int64_t)ch->cap_eff) {
			/* Full by the hints; the head hint may be stale. */
			fab_mslot *hs = fab__mslot(ch, h);
			uint64_t hw = load_acquire(&hs->state);
			if (FAB_SW_SAMEPOS(hw, h) && (FAB_SW_STATE(hw) == FAB_SLOT_READING ||
						      FAB_SW_STATE(hw) == FAB_SLOT_HELD)) {
				/* Taken, or a held slot passed at h: no message. */
				fab__bump(&hd->head, h);
				continue;
			}
			if (FAB_SW_SAMEPOS(hw, h) && FAB_SW_STATE(hw) == FAB_SLOT_SKIP) {
				fab__mpmc_clear_skip(ch, hs, hw, h);
				continue;
			}
			if (hw == FAB_SW_MAKE(h + ch->nslots, FAB_SLOT_FREE, 0)) {
				fab__bump(&hd->head, h);
				continue;
			}
			if (load_acquire(&hd->head) != h || load_acquire(&hd->tail) != p)
				continue;
			return FAB_EAGAIN;
		}
		fab_mslot *s = fab__mslot(ch, p);
		uint64_t w = load_acquire(&s->state);
		if (w == FAB_SW_MAKE(p, FAB_SLOT_FREE, 0)) {
			/* seq_cst: the claim and our later load of `closed` are in
			 * one total order with the closer's store and a receiver's
			 * loads (see fab__chan_closed_empty in chan.c). */
			if (cas_seq_cst(&s->state, &w, FAB_SW_MAKE(p, FAB_SLOT_WRITING, tag))) {
				fab__bump(&hd->tail, p);
				*pos = p;
				return 0;
			}
			continue;
		}
		if (FAB_SW_SAMEPOS(w, p) || FAB_SW_SAMEPOS(w, p + ch->nslots)) {
			/* Someone claimed p and has not moved tail yet (or p was
			 * skipped and already recycled for the next lap): help. */
			fab__bump(&hd->tail, p);
			continue;
		}
		if (FAB_SW_SAMEPOS(w, p - ch->nslots) && FAB_SW_STATE(w) == FAB_SLOT_HELD) {
			/* A message held past its receive: pass it.  Position p
			 * carries no message; the holder's tag stays, so its
			 * release (or recovery) finds the slot.  After a whole
			 * lap of held slots, wait for a release (it wakes us). */
			/* A holder that died holding is recovered (the slot comes
			 * free, or its lease goes back for redelivery) rather than
			 * passed for good: before 1.4 the producer that waited at
			 * its slot found it dead, and a busy channel, whose
			 * receivers never wait, may have nobody else to look.  At
			 * most every 50 ms per handle: the look costs system calls,
			 * a pass (once a lap per held slot) only a clock read. */
			int64_t now = fab__now_ns();
			if (now >= ch->pass_check_ns) {
				ch->pass_check_ns = now + 50000000;
				if (!fab__tag_alive(ch->fab, FAB_SW_TAG(w))) {
					fab__chan_recover(ch, ch->fab, FAB_SW_TAG(w));
					continue;
				}
			}
			bool all_held = passed >= ch->nslots;
			/* Before the first pass of a call, look (reads only)
			 * whether any other slot is not held: when none is, a
			 * pass only burns a position, and a sender that retries
			 * would burn one on every try. */
			for (uint32_t k = 1; !passed && k <= ch->nslots; k++) {
				if (k == ch->nslots) {
					all_held = true;
					break;
				}
				if (FAB_SW_STATE(load_relaxed(&fab__mslot(ch, p + k)->state)) !=
				    FAB_SLOT_HELD)
					break;
			}
			if (all_held) {
				blk->behind_tag = FAB_SW_TAG(w);
				if (load_acquire(&hd->tail) != p)
					continue;
				return FAB_EAGAIN;
			}
			/* seq_cst, like a claim: a draining receiver that reads
			 * this slot (seq_cst) after our later claim of p + 1 and
			 * a close must see the pass, not the previous lap's word
			 * ("empty"), or it could miss the message we commit at
			 * p + 1 (fab__chan_closed_empty; found by review: acq_rel
			 * is enough on x86, not in C11). */
			if (cas_seq_cst(&s->state, &w, FAB_SW_MAKE(p, FAB_SLOT_HELD, FAB_SW_TAG(w)))) {
				passed++;
				/* Counted like a SKIP: sent and received leave it out. */
				fetch_add_relaxed(&hd->skipped, 1);
				fab__bump(&hd->tail, p);
			}
			continue;
		}
		if (FAB_SW_SAMEPOS(w, p - ch->nslots)) {
			/* The previous lap is still being read out of this slot
			 * (or, at-least-once, leased, given back and waiting for
			 * redelivery, or being given back). */
			if (FAB_SW_STATE(w) == FAB_SLOT_READING ||
			    FAB_SW_STATE(w) == FAB_SLOT_RETURNING)
				blk->behind_tag = FAB_SW_TAG(w);
			if (load_acquire(&hd->tail) != p)
				continue;
			if (FAB_SW_STATE(w) == FAB_SLOT_FULL && ch->delivery == FAB_AT_LEAST_ONCE)
				fab__mpmc_recount(ch); /* a redelivery waits in our slot */
			return FAB_EAGAIN;
		}
		if (load_acquire(&hd->tail) != p)
			continue; /* stale hint */
		return fab__err(FAB_ECORRUPT, "channel %s: slot state %#llx at tail %llu", ch->name,
				(unsigned long long)w, (unsigned long long)p);
	}
	return fab__err(FAB_ECORRUPT, "channel %s: no progress claiming a slot", ch->name);
}

void fab__mpmc_fill(fab_chan *ch, uint64_t pos, const void *msg, size_t len)
{
	fab_mslot *s = fab__mslot(ch, pos);
	s->len = (uint32_t)len;
	if (len)
		memcpy((uint8_t *)s + ch->mhdr, msg, len);
}

void *fab__mpmc_slot_payload(fab_chan *ch, uint64_t pos)
{
	return (uint8_t *)fab__mslot(ch, pos) + ch->mhdr;
}

int fab__mpmc_commit(fab_chan *ch, uint64_t pos, size_t len)
{
	fab_mslot *s = fab__mslot(ch, pos);
	s->len = (uint32_t)len;
	if (ch->delivery == FAB_AT_LEAST_ONCE) {
		fab_mslot_alo *a = (fab_mslot_alo *)s;
		s->returns = 0;
		int64_t now = fab__now_ns();
		a->enqueue_ns = now;
		/* The chain's origin: inherited from the message this thread
		 * last received (DESIGN §5), else this send starts a chain. */
		a->origin_ns = fab__origin_ns ? fab__origin_ns : now;
	}
	/* After our seq_cst claim: a close that completed before the claim is
	 * seen here, and then the position carries no message. */
	if (unlikely(load_seq_cst(&ch->hdr->closed))) {
		fab__mpmc_skip(ch, pos, FAB_SLOT_WRITING);
		/* A draining receiver may have seen our claim (WRITING) and
		 * gone to sleep waiting for it: wake it to see the SKIP. */
		fab__wake_receivers(ch);
		return fab__err(FAB_ECLOSED, "channel %s is closed", ch->name);
	}
	/* Pairs with fab__mpmc_take's load of the state: length and payload
	 * are visible before FULL. */
	store_release(&s->state, FAB_SW_MAKE(pos, FAB_SLOT_FULL, ch->fab->tag));
	return 0;
}

void fab__mpmc_skip(fab_chan *ch, uint64_t pos, uint32_t state_from)
{
	fab_mslot *s = fab__mslot(ch, pos);
	uint64_t w = FAB_SW_MAKE(pos, state_from, ch->fab->tag);
	/* Release: nothing we wrote matters any more, but ordering our slot
	 * writes before the state keeps the slot's history simple. */
	cas(&s->state, &w, FAB_SW_MAKE(pos, FAB_SLOT_SKIP, 0));
}

int fab__mpmc_take(fab_chan *ch, uint64_t *pos, size_t cap, fab__block *blk, uint32_t as)
{
	fab_chan_hdr *hd = ch->hdr;
	uint32_t tag = ch->fab->tag;
	blk->behind_tag = 0;
	for (uint32_t guard = 0; guard < FAB__GUARD; guard++) {
		uint64_t q = load_acquire(&hd->head);
		fab_mslot *s = fab__mslot(ch, q);
		/* seq_cst load: see fab__chan_closed_empty (a FREE read here and
		 * a later `closed` read are ordered against producers' claims). */
		uint64_t w = load_seq_cst(&s->state);
		if (FAB_SW_SAMEPOS(w, q)) {
			switch (FAB_SW_STATE(w)) {
			case FAB_SLOT_FULL: {
				if (ch->delivery == FAB_AT_LEAST_ONCE && s->returns != 0) {
					/* A lease given back at a position a producer
					 * passed it at (HELD, then RETURNING): the
					 * redelivery scan takes it, which keeps the
					 * `returned` gauge exact; leave it behind head. */
					fab__bump(&hd->head, q);
					continue;
				}
				uint32_t len = s->len;
				if (unlikely(len > ch->msg_size)) {
					/* Corrupt length: take and drop this record. */
					if (cas(&s->state, &w, FAB_SW_MAKE(q, FAB_SLOT_READING, tag))) {
						fab__bump(&hd->head, q);
						fab__mpmc_free(ch, q);
						return fab__err(FAB_ECORRUPT,
								"channel %s: message length %u > msg_size %u",
								ch->name, len, ch->msg_size);
					}
					continue;
				}
				if (len > cap) {
					/* Re-check it is still this message before
					 * reporting its size. */
					if (load_acquire(&s->state) != w)
						continue;
					return fab__err(FAB_EMSGSIZE, "message of %u bytes, buffer of %zu",
							len, cap);
				}
				/* `as`: READING for a copy, HELD for a message kept
				 * past the call (acquire, lease). */
				if (cas(&s->state, &w, FAB_SW_MAKE(q, as, tag))) {
					fab__bump(&hd->head, q);
					*pos = q;
					return 0;
				}
				continue;
			}
			case FAB_SLOT_READING:
			case FAB_SLOT_HELD:	 /* taken, or a held slot passed at q */
			case FAB_SLOT_RETURNING: /* a passed lease given back: its
						  * returner counts it, and it is
						  * redelivered from behind head */
				fab__bump(&hd->head, q);
				continue;
			case FAB_SLOT_SKIP:
				fab__mpmc_clear_skip(ch, s, w, q);
				continue;
			case FAB_SLOT_WRITING:
				blk->behind_tag = FAB_SW_TAG(w);
				return FAB_EAGAIN;
			case FAB_SLOT_FREE:
				if (load_acquire(&hd->head) != q)
					continue;
				return FAB_EAGAIN; /* empty */
			default:
				break;
			}
		} else if (FAB_SW_SAMEPOS(w, q + ch->nslots)) {
			fab__bump(&hd->head, q); /* consumed already; hint is stale */
			continue;
		} else if (FAB_SW_SAMEPOS(w, q - ch->nslots) &&
			   (FAB_SW_STATE(w) == FAB_SLOT_READING ||
			    FAB_SW_STATE(w) == FAB_SLOT_HELD ||
			    FAB_SW_STATE(w) == FAB_SLOT_RETURNING ||
			    (FAB_SW_STATE(w) == FAB_SLOT_FULL &&
			     ch->delivery == FAB_AT_LEAST_ONCE))) {
			/* A receiver of the previous lap is still copying out of
			 * this slot, so no producer can have written position q:
			 * empty.  (If that receiver died, the producer that needs
			 * the slot finds it and recovers it.)  A FULL one is a
			 * redelivery waiting behind head: make sure it is counted
			 * (the caller scans for it when the gauge is not 0). */
			if (load_acquire(&hd->head) != q)
				continue;
			if (FAB_SW_STATE(w) == FAB_SLOT_FULL)
				fab__mpmc_recount(ch);
			return FAB_EAGAIN;
		}
		if (load_acquire(&hd->head) != q)
			continue;
		return fab__err(FAB_ECORRUPT, "channel %s: slot state %#llx at head %llu", ch->name,
				(unsigned long long)w, (unsigned long long)q);
	}
	return fab__err(FAB_ECORRUPT, "channel %s: no progress taking a slot", ch->name);
}

const void *fab__mpmc_payload(fab_chan *ch, uint64_t pos, size_t *len)
{
	fab_mslot *s = fab__mslot(ch, pos);
	uint32_t l = s->len;
	*len = l <= ch->msg_size ? l : ch->msg_size; /* bounded even if scribbled */
	return (uint8_t *)s + ch->mhdr;
}

void fab__mpmc_free(fab_chan *ch, uint64_t pos)
{
	fab_mslot *s = fab__mslot(ch, pos);
	/* Pairs with fab__mpmc_claim's load_acquire of the state: our reads
	 * of the payload finish before a producer of the next lap writes. */
	store_release(&s->state, FAB_SW_MAKE(pos + ch->nslots, FAB_SLOT_FREE, 0));
}

/* The word of the slot of `pos`, taken HELD by this process: HELD(x, me)
 * with x a whole number of laps at or after pos (each producer that passed
 * the slot moved x on by one lap).  0 if the slot is not ours (scribbled, or
 * recovered after a false death verdict). */
static uint64_t fab__held_word(fab_chan *ch, uint64_t pos, uint64_t *x)
{
	uint64_t w = load_acquire(&fab__mslot(ch, pos)->state);
	if (FAB_SW_STATE(w) != FAB_SLOT_HELD || FAB_SW_TAG(w) != ch->fab->tag)
		return 0;
	uint64_t d = (FAB_SW_SEQ(w) - pos) & FAB_SEQ_MASK;
	if ((d & ch->mask) != 0 || d > (1ULL << 44))
		return 0;
	*x = pos + d;
	return w;
}

int fab__mpmc_unhold(fab_chan *ch, uint64_t pos)
{
	fab_mslot *s = fab__mslot(ch, pos);
	for (uint32_t guard = 0; guard < FAB__GUARD; guard++) {
		uint64_t x, w = fab__held_word(ch, pos, &x);
		if (!w)
			break;
		/* Release: our reads of the payload finish before a producer
		 * of the next lap writes (pairs with fab__mpmc_claim's acquire).
		 * It fails only when a producer passed the slot meanwhile. */
		if (atomic_compare_exchange_strong_explicit(
			    &s->state, &w, FAB_SW_MAKE(x + ch->nslots, FAB_SLOT_FREE, 0),
			    memory_order_release, memory_order_relaxed))
			return 0;
	}
	uint64_t w = load_relaxed(&s->state);
	return fab__err(FAB_ECORRUPT, "channel %s: message at %llu is no longer held by us (%#llx)",
			ch->name, (unsigned long long)pos, (unsigned long long)w);
}

int fab__mpmc_give_back(fab_chan *ch, uint64_t pos)
{
	for (uint32_t guard = 0; guard < FAB__GUARD; guard++) {
		uint64_t x, w = fab__held_word(ch, pos, &x);
		if (!w)
			return 0;
		if (fab__mpmc_return(ch, x, w))
			return 1;
		/* A producer passed the slot between our look and the CAS. */
	}
	return 0;
}

int fab__mpmc_taken(fab_chan *ch, uint64_t pos)
{
	uint64_t w = load_acquire(&fab__mslot(ch, pos)->state);
	return !(FAB_SW_SAMEPOS(w, pos) && FAB_SW_STATE(w) == FAB_SLOT_FULL);
}

int fab__mpmc_withdraw(fab_chan *ch, uint64_t pos)
{
	fab_mslot *s = fab__mslot(ch, pos);
	uint64_t w = FAB_SW_MAKE(pos, FAB_SLOT_FULL, ch->fab->tag);
	return cas(&s->state, &w, FAB_SW_MAKE(pos, FAB_SLOT_SKIP, 0));
}

/*
 * Repair slots held by dead owners: WRITING -> SKIP (the send never returned,
 * so no message is lost), READING -> FREE of the next lap (an at-most-once
 * message being copied out by a killed receiver is gone with it).
 * only_tag != 0 repairs just that owner's slots, without liveness checks
 * (the caller knows it is dead).  Returns how many slots were repaired.
 * Safe to run concurrently: every repair is a CAS from the exact word seen.
 */
uint64_t fab__mpmc_recover(fab_chan *ch, fab_fabric *fab, int only_tag)
{
	uint64_t fixed = 0;
	uint32_t dead[16], alive[16];
	int nd = 0, na = 0;
	for (uint32_t i = 0; i < ch->nslots; i++) {
		fab_mslot *s = (fab_mslot *)(ch->slots + (size_t)i * ch->slot_size);
		uint64_t w = load_acquire(&s->state);
		uint32_t st = FAB_SW_STATE(w), t = FAB_SW_TAG(w);
		if (!t || (st != FAB_SLOT_WRITING && st != FAB_SLOT_READING &&
			   st != FAB_SLOT_RETURNING && st != FAB_SLOT_HELD))
			continue;
		int is_dead;
		if (only_tag) {
			is_dead = (t == (uint32_t)only_tag);
		} else {
			is_dead = -1;
			for (int k = 0; k < nd && is_dead < 0; k++)
				if (dead[k] == t)
					is_dead = 1;
			for (int k = 0; k < na && is_dead < 0; k++)
				if (alive[k] == t)
					is_dead = 0;
			if (is_dead < 0) {
				is_dead = !fab__tag_alive(fab, t);
				if (is_dead && nd < 16)
					dead[nd++] = t;
				else if (!is_dead && na < 16)
					alive[na++] = t;
			}
		}
		if (!is_dead)
			continue;
		/* Only a HELD slot changes under us legitimately (a producer
		 * passes it between our load and the CAS): follow it a few
		 * times; a later recovery finishes what we could not. */
		for (int again = 0; again < 8; again++) {
			/* The slot's position, rebuilt from the 45 stored bits
			 * and the slot index, near the head hint. */
			uint64_t h = load_acquire(&ch->hdr->head);
			uint64_t p = (h & ~FAB_SEQ_MASK) | FAB_SW_SEQ(w);
			if (p > h + (1ULL << 44))
				p -= 1ULL << FAB_SEQ_BITS;
			else if (p + (1ULL << 44) < h)
				p += 1ULL << FAB_SEQ_BITS;
			int ok;
			if (st != FAB_SLOT_WRITING && ch->delivery == FAB_AT_LEAST_ONCE) {
				/* A dead lessee (or a returner that died giving a
				 * lease back): the message goes back for
				 * redelivery, or to the dead letter. */
				ok = fab__mpmc_return(ch, p, w);
			} else {
				uint64_t nw = st == FAB_SLOT_WRITING
						      ? FAB_SW_MAKE(p, FAB_SLOT_SKIP, 0)
						      : FAB_SW_MAKE(p + ch->nslots, FAB_SLOT_FREE, 0);
				ok = cas(&s->state, &w, nw);
				if (ok && st == FAB_SLOT_WRITING)
					fab__bump(&ch->hdr->tail, p);
				else if (ok)
					fab__bump(&ch->hdr->head, p);
			}
			if (ok) {
				fixed++;
				break;
			}
			if (st != FAB_SLOT_HELD)
				break;
			w = load_acquire(&s->state);
			if (FAB_SW_STATE(w) != FAB_SLOT_HELD || FAB_SW_TAG(w) != t)
				break;
		}
	}
	if (fixed)
		fetch_add_relaxed(&ch->hdr->recovered, fixed);
	return fixed;
}

int fab__mpmc_validate(fab_chan *ch)
{
	uint64_t h = load_acquire(&ch->hdr->head);
	uint64_t t = load_acquire(&ch->hdr->tail);
	if ((int64_t)(t - h) > (int64_t)ch->nslots + 1)
		return fab__err(FAB_ECORRUPT, "channel %s: tail - head = %lld", ch->name,
				(long long)(t - h));
	for (uint32_t i = 0; i < ch->nslots; i++) {
		fab_mslot *s = (fab_mslot *)(ch->slots + (size_t)i * ch->slot_size);
		uint64_t w = load_acquire(&s->state);
		if (FAB_SW_STATE(w) > FAB_SLOT_HELD ||
		    (FAB_SW_STATE(w) == FAB_SLOT_RETURNING && ch->delivery != FAB_AT_LEAST_ONCE))
			return fab__err(FAB_ECORRUPT, "channel %s: slot %u bad state", ch->name, i);
		if (FAB_SW_STATE(w) == FAB_SLOT_FULL && s->len > ch->msg_size)
			return fab__err(FAB_ECORRUPT, "channel %s: slot %u bad length", ch->name, i);
		if ((FAB_SW_SEQ(w) & ch->mask) != (i & ch->mask))
			return fab__err(FAB_ECORRUPT, "channel %s: slot %u holds position of slot %llu",
					ch->name, i, (unsigned long long)(FAB_SW_SEQ(w) & ch->mask));
	}
	return 0;
}

/* ---- at-least-once ------------------------------------------------------- */

/*
 * Leases.  A receive on an at-least-once channel takes FULL(p) to
 * HELD(p, tag) (READING until layout 1.4): the slot is not freed after the
 * copy; it stays HELD (leased to the receiving handle; the tag names its
 * process) until
 *   ack:      HELD(x, me)  --CAS--> FREE(x + nslots)
 *   give back HELD(x, h)   --CAS--> RETURNING(x, me) --> FULL(x)
 *             (nack by the holder; recovery when h is dead), or, after
 *             max_deliveries returns, a copy to the dead-letter channel
 *             and FREE(x + nslots).
 * x is p, or a later lap's position where producers passed the lease
 * (fab__mpmc_claim).  A given-back FULL(x) behind head, and one at or after
 * head (its `returns` is not 0: receivers at head pass it, fab__mpmc_take),
 * is taken by the redelivery scan (fab__mpmc_take_returned), run first
 * whenever the `returned` gauge is not 0, so redeliveries go ahead of new
 * messages.  It scans [redo_low, head): every position below redo_low is
 * finished (a word of a later lap, or SKIP), and a scanner moves redo_low
 * past the finished positions it walks over.  A leased or given-back
 * position is never finished, so redo_low never passes one, and a give-back
 * never needs to lower it (a passed lease's new position is later still).
 *
 * Producers pass a leased slot like any held one; they wait for a slot
 * whose previous lap is being given back (RETURNING) or waits for
 * redelivery (FULL behind head), both short-lived.
 */

/* Where a scan of [.., h) starts; *raw is redo_low as loaded, which a
 * scanner that moves the mark must CAS from (not the clamped start: a mark
 * left a lap behind, as it is after a quiet lap, then never moved again,
 * and every scan walked a whole lap; found by review). */
static uint64_t fab__redo_start(fab_chan *ch, uint64_t h, uint64_t *raw)
{
	uint64_t lo = load_acquire(&ch->hdr->redo_low);
	if (raw)
		*raw = lo;
	/* Anything a lap or more behind head is finished (a producer could
	 * only have reused its slot after that), and a scribbled hint must not
	 * send us scanning: clamp to one lap. */
	if ((int64_t)(h - lo) > (int64_t)ch->nslots || (int64_t)(h - lo) < 0)
		lo = h - ch->nslots;
	return lo;
}

/* Is position q finished (acked, dead-lettered or skipped: nothing of it
 * can come back) by its slot word w? */
static inline bool fab__redo_finished(fab_chan *ch, uint64_t w, uint64_t q)
{
	return FAB_SW_SAMEPOS(w, q + ch->nslots) ||
	       (FAB_SW_SAMEPOS(w, q) && FAB_SW_STATE(w) == FAB_SLOT_SKIP);
}

/* Move the mark from raw (as loaded) to q, the end of a finished run that
 * began at the scan's start (if nobody moved it meanwhile; a stale mark
 * only costs a longer scan).  The CAS is acq_rel (`cas`): a scanner that
 * loads the mark with acquire also sees the finished slot states we read
 * before moving it, so nobody reads a position below the mark as still in
 * play. */
static inline void fab__redo_advance(fab_chan *ch, uint64_t raw, uint64_t q)
{
	uint64_t seen = raw;
	/* Forward only: a mark another scanner moved past our snapshot of
	 * head was clamped into our scan, and must not be moved back (found
	 * by review; harmless, but longer scans). */
	if ((int64_t)(q - raw) > 0)
		cas(&ch->hdr->redo_low, &seen, q);
}

/* Take the given-back message FULL(q) (word w) of slot s for redelivery:
 * 0 taken (HELD by us), 1 it changed under us (in flight: the caller counts
 * it busy), 2 gone meanwhile (look on), or a negative code. */
static int fab__take_given_back(fab_chan *ch, fab_mslot *s, uint64_t q, uint64_t w, size_t cap)
{
	uint32_t len = s->len;
	if (len > ch->msg_size) {
		/* Scribbled: drop it (as fab__mpmc_take does). */
		if (cas(&s->state, &w, FAB_SW_MAKE(q + ch->nslots, FAB_SLOT_FREE, 0)))
			fab__mpmc_returned_taken(ch);
		return fab__err(FAB_ECORRUPT, "channel %s: message length %u", ch->name, len);
	}
	if (len > cap) {
		if (load_acquire(&s->state) != w)
			return 2;
		return fab__err(FAB_EMSGSIZE, "message of %u bytes, buffer of %zu", len, cap);
	}
	/* Acquire on success: the returner's writes (returns count) and the
	 * producer's payload are visible.  The caller takes it off the
	 * `returned` gauge (it does so for any given-back message it gets,
	 * however it found it). */
	if (atomic_compare_exchange_strong_explicit(&s->state, &w,
						    FAB_SW_MAKE(q, FAB_SLOT_HELD, ch->fab->tag),
						    memory_order_acq_rel, memory_order_relaxed))
		return 0;
	return 1;
}

int fab__mpmc_take_returned(fab_chan *ch, uint64_t *pos, size_t cap, fab__block *blk)
{
	fab_chan_hdr *hd = ch->hdr;
	blk->behind_tag = 0;
	/* Acquire: read before the scan (see the reset at the end). */
	uint64_t g = load_acquire(&hd->returned);
	bool busy = false; /* a given-back message in flight (RETURNING, FULL) */
	uint64_t h = load_acquire(&hd->head);
	uint64_t raw;
	uint64_t lo = fab__redo_start(ch, h, &raw), q = lo;
	bool finished_run = true; /* every position in [lo, q) is finished */
	int r;
	for (; q != h; q++) {
		fab_mslot *s = fab__mslot(ch, q);
		uint64_t w = load_acquire(&s->state);
		if (FAB_SW_SAMEPOS(w, q) && FAB_SW_STATE(w) == FAB_SLOT_FULL) {
			if ((r = fab__take_given_back(ch, s, q, w, cap)) == 0) {
				if (finished_run)
					fab__redo_advance(ch, raw, q);
				*pos = q;
				return 0;
			}
			if (r < 0)
				return r;
			if (r == 2)
				continue;
			busy = true;
			finished_run = false;
			continue;
		}
		if (FAB_SW_SAMEPOS(w, q) && FAB_SW_STATE(w) == FAB_SLOT_RETURNING)
			busy = true;
		/* A redelivered message just taken: its taker may not have
		 * taken it off the gauge yet (it does so after its claim), and
		 * a reset now would erase the count that decrement is owed. */
		if (FAB_SW_SAMEPOS(w, q) &&
		    (FAB_SW_STATE(w) == FAB_SLOT_READING || FAB_SW_STATE(w) == FAB_SLOT_HELD) &&
		    s->returns != 0)
			busy = true;
		if (finished_run && fab__redo_finished(ch, w, q))
			continue; /* finished: acked, dead-lettered or skipped */
		if (finished_run)
			fab__redo_advance(ch, raw, q); /* past the finished run */
		finished_run = false;
	}
	if (finished_run)
		fab__redo_advance(ch, raw, q);
	/* At or after head: a lease that producers had passed (HELD at a
	 * later lap's position) is given back where it stands, ahead of head
	 * (layout 1.4).  Take it here, ahead of new messages and off the gauge
	 * like any redelivery (receivers at head pass it, fab__mpmc_take), and
	 * count as in flight such a message being given back, or a passed
	 * redelivery whose taker has not uncounted it yet.  Found by review:
	 * the reset below erased the count of a message given back ahead of
	 * head, and while the channel stayed open nobody looked for it again.
	 * Only while the gauge says something is in flight and nothing was
	 * taken behind head: a scan of at most one lap, no cost otherwise. */
	if (FAB__RET_COUNT(g) != 0) {
		uint64_t t = load_acquire(&hd->tail);
		int64_t d = (int64_t)(t - h);
		uint64_t end = h + (d < 0 ? 0 : d >= (int64_t)ch->nslots ? ch->nslots : (uint64_t)d + 1);
		for (q = h; q != end; q++) {
			fab_mslot *s = fab__mslot(ch, q);
			uint64_t w = load_acquire(&s->state);
			if (!FAB_SW_SAMEPOS(w, q))
				continue;
			uint32_t st = FAB_SW_STATE(w);
			if (st == FAB_SLOT_RETURNING ||
			    ((st == FAB_SLOT_HELD || st == FAB_SLOT_READING) && s->returns != 0)) {
				busy = true;
				continue;
			}
			if (st != FAB_SLOT_FULL || s->returns == 0)
				continue; /* a new message: the head's */
			if ((r = fab__take_given_back(ch, s, q, w, cap)) == 0) {
				*pos = q;
				return 0;
			}
			if (r < 0)
				return r;
			if (r == 1)
				busy = true;
		}
	}
	/* Nothing given back is in flight, yet the gauge says so: a taker
	 * died between its claim and its decrement, or a repairer recounted
	 * (fab__mpmc_recount).  Every give-back makes its slot RETURNING
	 * before it counts, so one counted before our load of g was visible to
	 * the scans (RETURNING or FULL: busy; READING or HELD with returns !=
	 * 0, taken but maybe not yet uncounted: busy).  Reset the count from
	 * exactly g: a give-back since then advanced the epoch and a take
	 * lowered the count, so either fails the CAS (the epoch rules out the
	 * ABA of a take and a give-back between our load and the CAS, which
	 * once left a given-back message behind head with the gauge at 0 and
	 * nobody looking for it; docs/delivery.md "The gauge"). */
	if (!busy && FAB__RET_COUNT(g) != 0)
		cas(&hd->returned, &g, g & ~(uint64_t)UINT32_MAX);
	return FAB_EAGAIN;
}

void fab__mpmc_returned_taken(fab_chan *ch)
{
	_Atomic uint64_t *r = &ch->hdr->returned;
	/* Relaxed: the gauge orders nothing (takers find messages by their
	 * slot states).  A count already at 0 stays 0: a decrement never
	 * borrows from the epoch, and a gauge wrapped to 2^32 - 1 would send
	 * every receiver scanning until the next reset. */
	uint64_t v = load_relaxed(r);
	while (FAB__RET_COUNT(v) != 0 &&
	       !atomic_compare_exchange_weak_explicit(r, &v, v - 1, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

/*
 * A given-back message waits in a slot a producer or the head needs (FULL
 * of the previous lap) while the gauge reads 0, so no receiver would look
 * for it: the count was lost (a receiver reset the gauge in a race that the
 * epoch now rules out, or a segment written by an older library).  Count it
 * again and wake the receivers.  It may be counted twice (a taker took it
 * and uncounted it between the caller's look and ours); a gauge that reads
 * high only costs scans until a scan resets it.
 */
static void fab__mpmc_recount(fab_chan *ch)
{
	fab_chan_hdr *hd = ch->hdr;
	/* seq_cst, with the CAS: ordered like the give-back's increment. */
	uint64_t g = load_seq_cst(&hd->returned);
	if (FAB__RET_COUNT(g) != 0)
		return; /* receivers are looking */
	if (cas_seq_cst(&hd->returned, &g, g + FAB__RET_GIVE))
		fab__wake_receivers(ch);
}

uint64_t fab__mpmc_returned_now(fab_chan *ch)
{
	uint64_t h = load_acquire(&ch->hdr->head), n = 0;
	for (uint64_t q = fab__redo_start(ch, h, NULL); q != h; q++) {
		uint64_t w = load_acquire(&fab__mslot(ch, q)->state);
		if (FAB_SW_SAMEPOS(w, q) &&
		    (FAB_SW_STATE(w) == FAB_SLOT_FULL || FAB_SW_STATE(w) == FAB_SLOT_RETURNING))
			n++;
	}
	return n;
}

/* Pass a poison message on to the channel's dead letter.  The channel is
 * opened for each message (poison is rare): a handle kept open would go on
 * sending into a dead-letter channel that was destroyed and created again,
 * and would keep an spsc dead letter's send end from everyone else.  1 if
 * it was moved, 0 if it had to be dropped. */
static int fab__dead_letter(fab_chan *ch, const void *msg, size_t len)
{
	fab_chan *dl = NULL;
	if (!ch->dead_letter[0] || fab_chan_open(ch->fab, ch->dead_letter, FAB_SEND, &dl) != 0)
		return 0;
	/* Never block here: this runs inside nack and recovery. */
	int moved = fab_try_send(dl, msg, len) == 0;
	fab_chan_release(dl);
	return moved;
}

int fab__mpmc_return(fab_chan *ch, uint64_t pos, uint64_t word)
{
	fab_chan_hdr *hd = ch->hdr;
	fab_mslot *s = fab__mslot(ch, pos);
	uint64_t w = word;
	/* Acquire: the previous owner's reads (and, for a RETURNING word, the
	 * dead returner's writes) happen before ours. */
	if (!atomic_compare_exchange_strong_explicit(
		    &s->state, &w, FAB_SW_MAKE(pos, FAB_SLOT_RETURNING, ch->fab->tag),
		    memory_order_acq_rel, memory_order_relaxed))
		return 0;
	/* A taker's head bump may be missing (it was killed right after its
	 * claim): do it, so the message lies behind head before it is FULL. */
	fab__bump(&hd->head, pos);
	uint32_t n = s->returns + 1;
	if (n == 0)
		n = UINT32_MAX;
	s->returns = n;
	if (n >= ch->max_deliveries) {
		/* Poison: it has been handed out max_deliveries times and never
		 * acked.  Move it to the dead letter (or drop it, counted). */
		uint32_t len = s->len <= ch->msg_size ? s->len : ch->msg_size;
		if (fab__dead_letter(ch, (uint8_t *)s + ch->mhdr, len))
			fetch_add_relaxed(&hd->dead_lettered, 1);
		else
			fetch_add_relaxed(&hd->dead_dropped, 1);
		/* Release: our reads of the payload finish before a producer of
		 * the next lap writes. */
		store_release(&s->state, FAB_SW_MAKE(pos + ch->nslots, FAB_SLOT_FREE, 0));
		fab__wake_senders(ch);
		fab__wake_receivers(ch); /* a drain may have waited for this lease */
		return 1;
	}
	/* Count it before it can be taken, so the gauge never undercounts:
	 * receivers scan while it is not 0. */
	fetch_add_seq_cst(&hd->returned, FAB__RET_GIVE);
	/* Release: `returns` is visible to the receiver that takes it. */
	store_release(&s->state, FAB_SW_MAKE(pos, FAB_SLOT_FULL, ch->fab->tag));
	fab__wake_receivers(ch);
	return 1;
}

int fab__mpmc_ack(fab_chan *ch, uint64_t pos)
{
	return fab__mpmc_unhold(ch, pos);
}

uint64_t fab__mpmc_foreign_leases(fab_chan *ch, uint32_t *tag)
{
	uint64_t h = load_acquire(&ch->hdr->head);
	uint64_t n = 0;
	*tag = 0;
	for (uint64_t q = fab__redo_start(ch, h, NULL); q != h; q++) {
		uint64_t w = load_acquire(&fab__mslot(ch, q)->state);
		if (!FAB_SW_SAMEPOS(w, q))
			continue;
		uint32_t st = FAB_SW_STATE(w);
		if (st != FAB_SLOT_READING && st != FAB_SLOT_HELD && st != FAB_SLOT_RETURNING &&
		    st != FAB_SLOT_FULL)
			continue;
		/* Ours: a lease of this handle in this slot (producers that
		 * passed it moved its position on by whole laps). */
		bool mine = false;
		for (uint32_t k = 0; k < ch->nleases && !mine && st == FAB_SLOT_HELD &&
				     FAB_SW_TAG(w) == ch->fab->tag;
		     k++)
			mine = ((ch->leases[(ch->lease_first + k) % ch->max_inflight] ^ q) & ch->mask) ==
			       0;
		if (mine)
			continue;
		n++;
		if (!*tag && st != FAB_SLOT_FULL)
			*tag = FAB_SW_TAG(w);
	}
	return n;
}

/*
 * Leases other handles hold on this at-least-once ring (READING or
 * RETURNING behind head, which fab__mpmc_foreign_leases also sees), for a
 * receiver that finds nothing to take on an open channel.  Returns how many;
 * with check, *dead is the tag of one whose holder is dead (each distinct
 * holder looked up once), else 0.  Reads only; the caller recovers.
 */
uint64_t fab__mpmc_lessees(fab_chan *ch, bool check, uint32_t *dead)
{
	uint64_t h = load_acquire(&ch->hdr->head);
	uint64_t n = 0, raw;
	uint32_t alive[8];
	int na = 0;
	bool finished_run = true;
	*dead = 0;
	for (uint64_t q = fab__redo_start(ch, h, &raw); q != h; q++) {
		uint64_t w = load_acquire(&fab__mslot(ch, q)->state);
		if (finished_run) {
			if (fab__redo_finished(ch, w, q))
				continue;
			/* Move the mark past what is finished, so the next
			 * scan starts at the oldest position still in play
			 * (found by review: a mark left a lap behind made every
			 * sleep of a receiver walk a whole lap). */
			fab__redo_advance(ch, raw, q);
			finished_run = false;
		}
		uint32_t st = FAB_SW_STATE(w), t = FAB_SW_TAG(w);
		if (!FAB_SW_SAMEPOS(w, q) ||
		    (st != FAB_SLOT_READING && st != FAB_SLOT_HELD && st != FAB_SLOT_RETURNING) ||
		    t == ch->fab->tag)
			continue;
		n++;
		if (!check)
			return n; /* one is enough to know the watch is needed */
		if (*dead)
			continue;
		bool known = false;
		for (int k = 0; k < na && !known; k++)
			known = alive[k] == t;
		if (known)
			continue;
		if (!fab__tag_alive(ch->fab, t))
			*dead = t;
		else if (na < 8)
			alive[na++] = t;
	}
	if (finished_run)
		fab__redo_advance(ch, raw, h);
	return n;
}

uint64_t fab__mpmc_passed_ahead(fab_chan *ch, bool given_back)
{
	uint64_t h = load_acquire(&ch->hdr->head), t = load_acquire(&ch->hdr->tail), n = 0;
	int64_t d = (int64_t)(t - h);
	if (d > (int64_t)ch->nslots)
		d = ch->nslots;
	for (uint64_t q = h; (int64_t)(q - h) < d; q++) {
		fab_mslot *s = fab__mslot(ch, q);
		/* (an ended hold counts too: second review, `received` went
		 * back by one until head got there) */
		n += (uint64_t)fab_sw_is_pass(load_relaxed(&s->state), q, ch->nslots, s->returns,
					      ch->delivery == FAB_AT_LEAST_ONCE, given_back);
	}
	return n;
}

uint64_t fab__mpmc_leased(fab_chan *ch)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < ch->nslots; i++) {
		fab_mslot *s = (fab_mslot *)(ch->slots + (size_t)i * ch->slot_size);
		if (FAB_SW_STATE(load_relaxed(&s->state)) == FAB_SLOT_HELD)
			n++;
	}
	return n;
}
