/*
 * ring_spsc.c - the single-producer single-consumer ring: invariants, slow
 * paths, attach-time cursor recovery, validation.  The fast paths are in
 * ring_spsc.h.
 *
 * Invariants (checked by fab__spsc_validate):
 *   - every slot i has a commit word (layout.h FAB_SE_*): FULL(p) for a
 *     message at position p not yet consumed, DONE(p) once consumed; p is
 *     always congruent to i modulo nslots and within one lap of head;
 *   - positions below the receiver's cursor are DONE, positions from it up
 *     to the sender's cursor are FULL, in order; at most `capacity` are FULL
 *     (exact capacity, not the power of two);
 *   - FULL words carry len <= msg_size.
 * head and tail in the header are hints, stored once per message by their
 * owners and read on slow paths only, so neither line travels per message.
 *
 * The sender may write position p when position p - capacity is DONE (then
 * at most capacity - 1 messages are queued).  It learns that from the head
 * hint (which lags the words, never leads them) and, when the hint says
 * full, from the word itself, so the capacity is exact.
 *
 * Crash safety: a sender killed mid-send never stored FULL, so nothing is
 * half-visible; a receiver killed before storing DONE leaves the message
 * queued.  A new holder of an end rebuilds its cursor from the words
 * (fab__spsc_find_*), so a hint that lags because its owner died is harmless.
 */
#include "ring_spsc.h"

int fab__spsc_room_slow(fab_chan *ch, uint64_t p)
{
	/* Pairs with fab__spsc_advance's store_release of head: the
	 * receiver's reads of every slot below head are complete. */
	uint64_t h = load_acquire(&ch->hdr->head);
	if (p - h < ch->cap_eff) {
		ch->send_limit = h + ch->cap_eff;
		return 0;
	}
	/* The hint says full (or is nonsense): ask the word of p - capacity. */
	uint64_t q = p - ch->cap_eff;
	uint64_t e = load_acquire(&ch->ents[q & ch->mask]);
	if (FAB_SE_MARK(e) == FAB_SE_MARK(FAB_SE_DONE(q))) {
		ch->send_limit = p + 1;
		return 0;
	}
	if (FAB_SE_MARK(e) == FAB_SE_MARK(FAB_SE_FULL(q, 0)))
		return FAB_EAGAIN;
	return fab__err(FAB_ECORRUPT, "channel %s: slot word %#llx does not belong to position %llu",
			ch->name, (unsigned long long)e, (unsigned long long)q);
}

int fab__spsc_empty(fab_chan *ch, uint64_t h, uint64_t e)
{
	/* Empty: the slot still holds the previous lap, consumed. */
	if (FAB_SE_MARK(e) == FAB_SE_MARK(FAB_SE_DONE(h - ch->nslots)))
		return FAB_EAGAIN;
	return fab__err(FAB_ECORRUPT, "channel %s: slot word %#llx at head %llu", ch->name,
			(unsigned long long)e, (unsigned long long)h);
}

ssize_t fab__spsc_bad_len(fab_chan *ch, uint64_t h, uint32_t len)
{
	/* A scribbled length: drop this one record so the rest flow. */
	fab__spsc_advance(ch, h);
	return fab__err(FAB_ECORRUPT, "channel %s: message length %u > msg_size %u", ch->name, len,
			ch->msg_size);
}

/* The sender's cursor for a new holder of the send end: the tail hint,
 * moved past positions a dead sender committed but did not hint. */
uint64_t fab__spsc_find_tail(fab_chan *ch)
{
	uint64_t t = load_acquire(&ch->hdr->tail);
	for (uint32_t i = 0; i < ch->nslots; i++, t++) {
		uint64_t e = load_acquire(&ch->ents[t & ch->mask]);
		if (FAB_SE_MARK(e) != FAB_SE_MARK(FAB_SE_FULL(t, 0)) &&
		    FAB_SE_MARK(e) != FAB_SE_MARK(FAB_SE_DONE(t)))
			break;
	}
	return t;
}

/* The receiver's cursor for a new holder of the receive end. */
uint64_t fab__spsc_find_head(fab_chan *ch)
{
	uint64_t h = load_acquire(&ch->hdr->head);
	for (uint32_t i = 0; i < ch->nslots; i++, h++) {
		uint64_t e = load_acquire(&ch->ents[h & ch->mask]);
		if (FAB_SE_MARK(e) == FAB_SE_MARK(FAB_SE_DONE(h)))
			continue;
		/* A receiver killed between storing DONE(h) and the hint lets
		 * the sender reuse the slot for a later lap: a word of a later
		 * position (31-bit distance, forward) also means h was consumed.
		 * Regression: crash_kill kill_spsc. */
		uint32_t d = ((FAB_SE_MARK(e) >> 1) - (uint32_t)h) & 0x7fffffffu;
		if (d != 0 && d < 0x40000000u && d % ch->nslots == 0)
			continue;
		break;
	}
	return h;
}

/* A new ring: every slot consumed for the lap before `start`. */
void fab__spsc_init(fab_chan_hdr *h, uint8_t *ents, uint32_t nslots, uint64_t start)
{
	_Atomic uint64_t *w = (_Atomic uint64_t *)ents;
	for (uint32_t k = 0; k < nslots; k++) {
		uint64_t p = start + k - nslots;
		store_relaxed(&w[p & (nslots - 1)], FAB_SE_DONE(p));
	}
	(void)h;
}

int fab__spsc_validate(fab_chan *ch)
{
	uint64_t h = fab__spsc_find_head(ch);
	uint64_t queued = 0;
	for (uint64_t p = h; queued <= ch->nslots; p++, queued++) {
		uint64_t e = load_acquire(&ch->ents[p & ch->mask]);
		if (FAB_SE_MARK(e) != FAB_SE_MARK(FAB_SE_FULL(p, 0)))
			break;
		if (FAB_SE_LEN(e) > ch->msg_size)
			return fab__err(FAB_ECORRUPT, "channel %s: bad length at %llu", ch->name,
					(unsigned long long)p);
	}
	if (queued > ch->cap_eff)
		return fab__err(FAB_ECORRUPT, "channel %s: %llu queued > capacity %u", ch->name,
				(unsigned long long)queued, ch->cap_eff);
	return 0;
}
