/*
 * ring_spsc.h - the fast paths of the single-producer single-consumer ring,
 * inline so fab_send/fab_recv compile to one straight line.  ring_spsc.c
 * has the invariants, the slow paths and the validator.
 */
#ifndef FAB_RING_SPSC_H
#define FAB_RING_SPSC_H

#include "internal.h"

#include <string.h>

#define FAB__FAST_MAX 64u /* messages copied inline (fab__copy_small) */

/* Copy n <= FAB__FAST_MAX bytes, no call.  In 8-byte words, not wider:
 * a sender usually has just written its message, and a load that spans two
 * of its stores (a 16-byte load over 8-byte stores) cannot take the data
 * from the store queue; it waits until those stores reach the cache, behind
 * our own stores to ring lines that may still be on their way back from the
 * receiver.  perf showed fab-bench's sender waiting at exactly that load
 * with 16-byte moves (docs/performance.md "Fast paths").  The general
 * push and pop (the batch calls, larger messages) keep memcpy: its wider
 * moves did better there in A/B runs, the batch's sources having been
 * written long before. */
static inline __attribute__((always_inline)) void fab__copy_w8(uint8_t *d, const uint8_t *s,
								size_t off)
{
	uint64_t w;
	memcpy(&w, s + off, 8);
	memcpy(d + off, &w, 8);
}

static inline __attribute__((always_inline)) void fab__copy_small(void *d, const void *s, size_t n)
{
	uint8_t *dd = d;
	const uint8_t *ss = s;
	/* A multiple of 8 (the common case): one word at each constant
	 * offset, entered by a predicted branch.  The offsets must not depend
	 * on n: on the receive side n comes from the slot word that has just
	 * arrived, and a load whose address waits for it waits for the miss
	 * (a copy with n-relative offsets cost the spinning round trip ~20 ns
	 * in A/B runs).  Other lengths: overlapping runs of words from the
	 * start and up to the end, at most three branches and no loop (bytes in
	 * the overlap are written twice with the same value). */
	if (n == 8) {
		/* The commonest size (a word, a pointer, a sequence number) with
		 * no table jump: the switch below cost 8-byte messages ~10 % in
		 * two full runs. */
		fab__copy_w8(dd, ss, 0);
	} else if (n >= 8 && !(n & 7)) {
		switch (n >> 3) {
		case 8:
			fab__copy_w8(dd, ss, 56);
			/* fallthrough */
		case 7:
			fab__copy_w8(dd, ss, 48);
			/* fallthrough */
		case 6:
			fab__copy_w8(dd, ss, 40);
			/* fallthrough */
		case 5:
			fab__copy_w8(dd, ss, 32);
			/* fallthrough */
		case 4:
			fab__copy_w8(dd, ss, 24);
			/* fallthrough */
		case 3:
			fab__copy_w8(dd, ss, 16);
			/* fallthrough */
		case 2:
			fab__copy_w8(dd, ss, 8);
			/* fallthrough */
		default:
			fab__copy_w8(dd, ss, 0);
		}
	} else if (n > 16) {
		fab__copy_w8(dd, ss, 0);
		fab__copy_w8(dd, ss, 8);
		if (n > 32) {
			fab__copy_w8(dd, ss, 16);
			fab__copy_w8(dd, ss, 24);
			fab__copy_w8(dd, ss, n - 32);
			fab__copy_w8(dd, ss, n - 24);
		}
		fab__copy_w8(dd, ss, n - 16);
		fab__copy_w8(dd, ss, n - 8);
	} else if (n >= 8) {
		fab__copy_w8(dd, ss, 0);
		if (n > 8)
			fab__copy_w8(dd, ss, n - 8);
	} else if (n >= 4) {
		uint32_t a, b;
		memcpy(&a, ss, 4);
		memcpy(&b, ss + n - 4, 4);
		memcpy(dd, &a, 4);
		memcpy(dd + n - 4, &b, 4);
	} else if (n) {
		dd[0] = ss[0];
		dd[n / 2] = ss[n / 2];
		dd[n - 1] = ss[n - 1];
	}
}

static inline uint8_t *fab__spsc_slot(fab_chan *ch, uint64_t pos)
{
	return ch->slots + (size_t)(pos & ch->mask) * ch->slot_size + ch->payload_off;
}

static inline _Atomic uint64_t *fab__spsc_word(fab_chan *ch, uint64_t pos)
{
	return (_Atomic uint64_t *)(ch->ents + (size_t)(pos & ch->mask) * ch->ent_stride);
}

/* Room for position p?  0, FAB_EAGAIN (full) or FAB_ECORRUPT. */
static inline int fab__spsc_room(fab_chan *ch, uint64_t p)
{
	if (likely(p < ch->send_limit))
		return 0;
	return fab__spsc_room_slow(ch, p);
}

static inline void fab__spsc_publish(fab_chan *ch, uint64_t p, size_t len)
{
	/* Pairs with fab__spsc_front's load_acquire of the word: length and
	 * payload are visible before the word that commits them.  The
	 * receiver only reads these lines; it never writes them. */
	store_release(fab__spsc_word(ch, p), FAB_SE_FULL(p, len));
	/* A hint for attachers, stats and fabctl; nobody reads it on a hot
	 * path, so the line stays in our cache. */
	store_relaxed(&ch->hdr->tail, p + 1);
	ch->tail_local = p + 1;
}

static inline int fab__spsc_push(fab_chan *ch, const void *msg, size_t len)
{
	uint64_t p = ch->tail_local;
	int rc = fab__spsc_room(ch, p);
	if (unlikely(rc))
		return rc;
	if (len)
		memcpy(fab__spsc_slot(ch, p), msg, len);
	fab__spsc_publish(ch, p, len);
	return 0;
}

static inline int fab__spsc_reserve(fab_chan *ch, void **slot)
{
	uint64_t p = ch->tail_local;
	int rc = fab__spsc_room(ch, p);
	if (unlikely(rc))
		return rc;
	*slot = fab__spsc_slot(ch, p);
	return 0;
}

static inline void fab__spsc_commit(fab_chan *ch, size_t len)
{
	fab__spsc_publish(ch, ch->tail_local, len);
}

static inline void fab__spsc_advance(fab_chan *ch, uint64_t h)
{
	/* Pairs with fab__spsc_room_slow's load_acquire of head: our reads of
	 * the payload finish before the sender reuses the slot.  head is the
	 * truth of consumption (stored only after the copy); the sender reads
	 * it once per `capacity` messages, so its line rarely travels. */
	store_release(&ch->hdr->head, h + 1);
	ch->head_local = h + 1;
}

/* The committed word at our head, or a negative code. */
static inline int fab__spsc_front(fab_chan *ch, uint64_t h, uint64_t *word)
{
	/* Pairs with fab__spsc_publish's store_release. */
	uint64_t e = load_acquire(fab__spsc_word(ch, h));
	if (unlikely(FAB_SE_MARK(e) != FAB_SE_MARK(FAB_SE_FULL(h, 0))))
		return fab__spsc_empty(ch, h, e);
	*word = e;
	return 0;
}

static inline ssize_t fab__spsc_pop(fab_chan *ch, void *buf, size_t cap)
{
	uint64_t h = ch->head_local, e = 0;
	int rc = fab__spsc_front(ch, h, &e);
	if (unlikely(rc))
		return rc;
	uint32_t len = FAB_SE_LEN(e);
	if (unlikely(len > ch->msg_size))
		return fab__spsc_bad_len(ch, h, len);
	if (buf || cap) {
		if (unlikely(len > cap))
			return fab__err(FAB_EMSGSIZE, "message of %u bytes, buffer of %zu", len, cap);
		if (len)
			memcpy(buf, fab__spsc_slot(ch, h), len);
	}
	fab__spsc_advance(ch, h);
	return (ssize_t)len;
}

static inline int fab__spsc_peek(fab_chan *ch, const void **msg, size_t *len)
{
	uint64_t h = ch->head_local, e = 0;
	int rc = fab__spsc_front(ch, h, &e);
	if (unlikely(rc))
		return rc;
	uint32_t l = FAB_SE_LEN(e);
	if (unlikely(l > ch->msg_size))
		return (int)fab__spsc_bad_len(ch, h, l);
	*msg = fab__spsc_slot(ch, h);
	*len = l;
	return 0;
}

static inline void fab__spsc_consume(fab_chan *ch)
{
	fab__spsc_advance(ch, ch->head_local);
}

#endif /* FAB_RING_SPSC_H */
