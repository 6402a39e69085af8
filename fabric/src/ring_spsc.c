/*
 * ring_spsc.c - the single-producer single-consumer ring.
 *
 * Invariants (checked by fab__spsc_validate):
 *   - tail is written only by the attached sender, head only by the attached
 *     receiver; both are free-running 64-bit positions.
 *   - 0 <= tail - head <= capacity (exact capacity, not the power of two).
 *   - positions [head, tail) hold committed messages: lens[i] <= msg_size and
 *     the payload at slots + i * slot_size, i = pos & mask.
 *
 * The fast path has no read-modify-write: each side keeps a private cursor
 * and a cached copy of the other side's index, and reads the shared index
 * only when the cache says full (sender) or empty (receiver).  tail and head
 * sit on separate 128-byte lines.  Lengths live in their own array so a
 * 64-byte message fills exactly one cache line of payload.
 *
 * Crash safety: a sender publishes tail only after the message is complete,
 * so a sender killed mid-send leaves nothing half-visible; a receiver
 * publishes head only after copying, so one killed mid-receive leaves the
 * message queued for the next receiver.  No slot ever has a partial owner:
 * there is nothing for recovery to repair in this ring beyond handing the
 * dead end over (chan.c).
 */
#include "internal.h"

#include <string.h>

static inline uint8_t *fab__spsc_slot(fab_chan *ch, uint64_t pos)
{
	return ch->slots + (size_t)(pos & ch->mask) * ch->slot_size;
}

/* Room for one more message?  Refreshes the cached head only when needed. */
static inline int fab__spsc_room(fab_chan *ch, uint64_t t)
{
	if (likely(t - ch->head_cache < ch->cap_eff))
		return 0;
	/* Pairs with fab__spsc_pop's store_release of head: the receiver's
	 * reads of the slot we are about to overwrite are complete. */
	ch->head_cache = load_acquire(&ch->hdr->head);
	uint64_t used = t - ch->head_cache;
	if (unlikely(used > ch->cap_eff))
		return fab__err(FAB_ECORRUPT, "channel %s: head %llu beyond tail %llu", ch->name,
				(unsigned long long)ch->head_cache, (unsigned long long)t);
	return used < ch->cap_eff ? 0 : FAB_EAGAIN;
}

int fab__spsc_push(fab_chan *ch, const void *msg, size_t len)
{
	uint64_t t = ch->tail_local;
	int rc = fab__spsc_room(ch, t);
	if (rc)
		return rc;
	ch->lens[t & ch->mask] = (uint32_t)len;
	if (len)
		memcpy(fab__spsc_slot(ch, t), msg, len);
	/* Pairs with fab__spsc_pop's load_acquire of tail: length and payload
	 * are visible before the position that publishes them. */
	store_release(&ch->hdr->tail, t + 1);
	ch->tail_local = t + 1;
	return 0;
}

int fab__spsc_reserve(fab_chan *ch, void **slot)
{
	uint64_t t = ch->tail_local;
	int rc = fab__spsc_room(ch, t);
	if (rc)
		return rc;
	*slot = fab__spsc_slot(ch, t);
	return 0;
}

void fab__spsc_commit(fab_chan *ch, size_t len)
{
	uint64_t t = ch->tail_local;
	ch->lens[t & ch->mask] = (uint32_t)len;
	/* Pairs with fab__spsc_pop's load_acquire of tail (as in push). */
	store_release(&ch->hdr->tail, t + 1);
	ch->tail_local = t + 1;
}

/* Is a message available at our head?  0 yes, FAB_EAGAIN, FAB_ECORRUPT. */
static inline int fab__spsc_avail(fab_chan *ch, uint64_t h)
{
	if (likely(h != ch->tail_cache))
		return 0;
	/* Pairs with push/commit's store_release of tail. */
	ch->tail_cache = load_acquire(&ch->hdr->tail);
	if (unlikely(ch->tail_cache - h > ch->cap_eff))
		return fab__err(FAB_ECORRUPT, "channel %s: tail %llu inconsistent with head %llu",
				ch->name, (unsigned long long)ch->tail_cache, (unsigned long long)h);
	return h != ch->tail_cache ? 0 : FAB_EAGAIN;
}

static inline void fab__spsc_advance(fab_chan *ch, uint64_t h)
{
	/* Pairs with fab__spsc_room's load_acquire of head: our reads of the
	 * slot are done before the sender may reuse it. */
	store_release(&ch->hdr->head, h + 1);
	ch->head_local = h + 1;
}

ssize_t fab__spsc_pop(fab_chan *ch, void *buf, size_t cap)
{
	uint64_t h = ch->head_local;
	int rc = fab__spsc_avail(ch, h);
	if (rc)
		return rc;
	uint32_t len = ch->lens[h & ch->mask];
	if (unlikely(len > ch->msg_size)) {
		/* A corrupted length: drop this one record so the rest flow. */
		fab__spsc_advance(ch, h);
		return fab__err(FAB_ECORRUPT, "channel %s: message length %u > msg_size %u",
				ch->name, len, ch->msg_size);
	}
	if (buf || cap) {
		if (len > cap)
			return fab__err(FAB_EMSGSIZE, "message of %u bytes, buffer of %zu", len, cap);
		if (len)
			memcpy(buf, fab__spsc_slot(ch, h), len);
	}
	fab__spsc_advance(ch, h);
	return (ssize_t)len;
}

int fab__spsc_peek(fab_chan *ch, const void **msg, size_t *len)
{
	uint64_t h = ch->head_local;
	int rc = fab__spsc_avail(ch, h);
	if (rc)
		return rc;
	uint32_t l = ch->lens[h & ch->mask];
	if (unlikely(l > ch->msg_size)) {
		fab__spsc_advance(ch, h);
		return fab__err(FAB_ECORRUPT, "channel %s: message length %u > msg_size %u",
				ch->name, l, ch->msg_size);
	}
	*msg = fab__spsc_slot(ch, h);
	*len = l;
	return 0;
}

void fab__spsc_consume(fab_chan *ch)
{
	fab__spsc_advance(ch, ch->head_local);
}

int fab__spsc_validate(fab_chan *ch)
{
	uint64_t t = load_acquire(&ch->hdr->tail);
	uint64_t h = load_acquire(&ch->hdr->head);
	if (t - h > ch->cap_eff)
		return fab__err(FAB_ECORRUPT, "channel %s: %llu queued > capacity %u", ch->name,
				(unsigned long long)(t - h), ch->cap_eff);
	for (uint64_t p = h; p != t; p++)
		if (ch->lens[p & ch->mask] > ch->msg_size)
			return fab__err(FAB_ECORRUPT, "channel %s: bad length at %llu", ch->name,
					(unsigned long long)p);
	return 0;
}
