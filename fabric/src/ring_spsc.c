/*
 * ring_spsc.c - the single-producer single-consumer ring: invariants, slow
 * paths, attach-time cursor recovery, validation.  The fast paths are in
 * ring_spsc.h.
 *
 * Invariants (checked by fab__spsc_validate):
 *   - head is written only by the holder of the receive end, after it has
 *     copied a message out: it is the exact count of consumed positions.
 *   - every slot i has a commit word (layout.h FAB_SE_*) FULL(p, len) for
 *     the last position p (congruent to i modulo nslots) the sender
 *     committed there; positions [head, sender's cursor) are FULL, in order,
 *     at most `capacity` of them (exact capacity, not the power of two);
 *   - FULL words carry len <= msg_size.
 * tail is a hint, stored once per message by the sender and read only when
 * a new sender attaches (and by stats), so its line stays in the sender's
 * cache.  The receiver learns of new messages from the commit words alone
 * and only reads the sender's lines; the sender reads head only when its
 * private limit (last head seen + capacity) runs out.
 *
 * Crash safety: a sender killed mid-send never stored FULL, so nothing is
 * half-visible; a receiver killed before storing head leaves the message
 * queued (it never returned it).  A new sender rebuilds its cursor from the
 * tail hint and the words (a dead sender may have committed without
 * hinting); a new receiver starts at head.
 */
#include "ring_spsc.h"

int fab__spsc_room_slow(fab_chan *ch, uint64_t p)
{
	/* Pairs with fab__spsc_advance's store_release of head: the
	 * receiver's reads of every slot below head are complete. */
	uint64_t h = load_acquire(&ch->hdr->head);
	uint64_t used = p - h;
	if (used < ch->cap_eff) {
		ch->send_limit = h + ch->cap_eff;
		return 0;
	}
	if (used == ch->cap_eff)
		return FAB_EAGAIN;
	return fab__err(FAB_ECORRUPT, "channel %s: head %llu inconsistent with tail %llu", ch->name,
			(unsigned long long)h, (unsigned long long)p);
}

int fab__spsc_empty(fab_chan *ch, uint64_t h, uint64_t e)
{
	/* Empty: the slot still holds an earlier lap's message. */
	uint32_t d = ((uint32_t)h - (FAB_SE_MARK(e) >> 1)) & 0x7fffffffu;
	if (d != 0 && d % ch->nslots == 0 && !(FAB_SE_MARK(e) & 1u))
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
	uint64_t h = load_acquire(&ch->hdr->head);
	if (t - h > ch->cap_eff)
		t = h; /* nonsense hint: start from the truth */
	for (uint32_t i = 0; i < ch->nslots; i++, t++) {
		uint64_t e = load_acquire(fab__spsc_word(ch, t));
		if (FAB_SE_MARK(e) != FAB_SE_MARK(FAB_SE_FULL(t, 0)))
			break;
	}
	return t;
}

/* Move the tail hint forward to t (never back: a live sender may have
 * hinted further meanwhile). */
void fab__spsc_hint_tail(fab_chan *ch, uint64_t t)
{
	uint64_t cur = load_relaxed(&ch->hdr->tail);
	while ((int64_t)(t - cur) > 0 && !cas(&ch->hdr->tail, &cur, t))
		;
}

/* The receiver's cursor for a new holder of the receive end. */
uint64_t fab__spsc_find_head(fab_chan *ch)
{
	return load_acquire(&ch->hdr->head);
}

/* A new ring: every slot holds the lap before `start`, as if consumed. */
void fab__spsc_init(uint8_t *ents, uint32_t stride, uint32_t nslots, uint64_t start)
{
	for (uint32_t k = 0; k < nslots; k++) {
		uint64_t p = start + k - nslots;
		_Atomic uint64_t *w = (_Atomic uint64_t *)(ents + (size_t)(p & (nslots - 1)) * stride);
		store_relaxed(w, FAB_SE_FULL(p, 0));
	}
}

int fab__spsc_validate(fab_chan *ch)
{
	uint64_t h = fab__spsc_find_head(ch);
	uint64_t queued = 0;
	for (uint64_t p = h; queued <= ch->nslots; p++, queued++) {
		uint64_t e = load_acquire(fab__spsc_word(ch, p));
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
