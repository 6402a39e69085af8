/*
 * geom.h - where everything lies in a channel segment, computed from the
 * channel's parameters (docs/layout.md "Channel segment").  One definition
 * for the three readers that must agree on it: libfab builds a new segment
 * with it and validates an existing one against it (chan.c), and the
 * read-only inspector validates with it (fabric/inspect).
 */
#ifndef FAB_GEOM_H
#define FAB_GEOM_H

#include "fab/fab.h"
#include "layout.h"

#define FAB_CHAN_HDR_BYTES 4096u /* the header page; the attach table follows */

typedef struct fab_geom {
	uint32_t ring, nslots, slot_size, ent_stride, payload_off;
	uint64_t attach_off, ents_off, slots_off, total;
} fab_geom;

/* The smallest power of two >= v (at most 2^31). */
static inline uint32_t fab_pow2(uint32_t v)
{
	uint32_t p = 1;
	while (p < v && p < (1u << 31))
		p <<= 1;
	return p;
}

/* Fill g for a channel of these parameters (already range-checked by the
 * caller); -1 when the segment would exceed 4 GiB.  payload_off is where a
 * message starts in an spsc slot (0 for mpmc, whose slot header size
 * depends on the delivery: fab_mslot or fab_mslot_alo). */
static inline int fab_chan_geometry(uint32_t kind, uint32_t delivery, uint32_t capacity,
				    uint32_t msg_size, fab_geom *g)
{
	/* At-least-once needs a slot state word to lease: the mpmc ring, with
	 * the larger slot header, for either kind. */
	uint32_t mhdr = delivery == FAB_AT_LEAST_ONCE ? (uint32_t)sizeof(fab_mslot_alo)
						      : (uint32_t)sizeof(fab_mslot);
	if (delivery == FAB_AT_LEAST_ONCE)
		kind = FAB_MPMC;
	g->nslots = fab_pow2(capacity ? capacity : 1);
	g->attach_off = FAB_CHAN_HDR_BYTES;
	uint64_t after_attach = g->attach_off + FAB_ATTACH_MAX * sizeof(uint64_t);
	uint32_t tail = msg_size % 64u;
	if (kind == FAB_SPSC && capacity > 0 && (msg_size <= 56 || (tail && tail <= 56))) {
		/* The 8-byte commit word fits in the payload's last line: keep
		 * it inline, so a message and its word travel together.  Slots
		 * of at most 64 bytes are a power of two, so none straddles a
		 * line. */
		g->ring = FAB_RING_SPSC_INLINE;
		g->slot_size = msg_size <= 56 ? fab_pow2(8 + msg_size)
					      : (uint32_t)((8u + msg_size + 63u) & ~63u);
		g->ent_stride = g->slot_size;
		g->payload_off = 8;
		g->slots_off = (after_attach + 4095u) & ~4095ULL;
		g->ents_off = g->slots_off;
	} else if (kind == FAB_SPSC && capacity > 0) {
		g->ring = FAB_RING_SPSC;
		g->slot_size = (msg_size + 7u) & ~7u;
		g->ent_stride = 8;
		g->payload_off = 0;
		g->ents_off = after_attach;
		g->slots_off = (g->ents_off + (uint64_t)g->nslots * 8u + 4095u) & ~4095ULL;
	} else {
		g->ring = FAB_RING_MPMC;
		g->slot_size = (uint32_t)((mhdr + msg_size + 63u) & ~63u);
		g->ent_stride = 0;
		g->payload_off = 0;
		g->ents_off = after_attach;
		g->slots_off = (after_attach + 4095u) & ~4095ULL;
	}
	uint64_t total = g->slots_off + (uint64_t)g->nslots * g->slot_size;
	g->total = (total + 4095u) & ~4095ULL;
	return g->total > (1ULL << 32) ? -1 : 0;
}

#endif /* FAB_GEOM_H */
