/*
 * layout.h - the bytes fab keeps in shared memory.  docs/layout.md is the
 * normative description; this header must match it.
 *
 * Rules: fixed-width fields only (uint32_t/uint64_t/int64_t and _Atomic
 * forms), no pointers (offsets instead), explicit padding, reserved words for
 * growth, a static assertion on every size and every offset a reader relies
 * on.  A segment header is written completely and its version word is
 * store-released LAST; a reader that sees version 0 waits for it, a different
 * major version is FAB_EVERSION.
 *
 * Two kinds of segment:
 *   /dev/shm/fab.<fabric>            control: process table, channel registry
 *                                    (channels and topics), context table,
 *                                    limiter table
 *   /dev/shm/fab.<fabric>.<channel>  one channel: header, attach table, ring
 */
#ifndef FAB_LAYOUT_H
#define FAB_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define FAB_LAYOUT_MAJOR 1u
#define FAB_LAYOUT_MINOR 1u
#define FAB_LAYOUT_VERSION ((FAB_LAYOUT_MAJOR << 16) | FAB_LAYOUT_MINOR)

#define FAB_CTL_MAGIC 0x314C5443424146ULL  /* "FABCTL1\0" little-endian */
#define FAB_CHAN_MAGIC 0x314E4843424146ULL /* "FABCHN1\0" */

#define FAB_MAX_PROCS 1024u
#define FAB_MAX_CHANS 1024u
#define FAB_MAX_CTXS 1024u
#define FAB_MAX_LIMS 256u
#define FAB_ATTACH_MAX 1024u   /* handles attached to one channel */
#define FAB_LINE 128u          /* false-sharing unit (adjacent-line prefetch) */

/* ---- control segment ------------------------------------------------- */

/* Process-table entry states. */
#define FAB_PROC_FREE 0u
#define FAB_PROC_CLAIMED 1u /* pid written, start time maybe not yet */
#define FAB_PROC_LIVE 2u

/*
 * One attached process (one fabric handle).  Identity is pid + start time
 * (/proc/<pid>/stat field 22), so a dead or reused pid is recognised.  `gen`
 * counts claims of this entry; owner tags (below) carry its low bits so a
 * recovery that raced with a re-claim cannot touch the new owner's slots.
 */
typedef struct fab_proc_ent {
	_Atomic uint64_t sg; /* claim generation << 32 | state, changed by CAS */
	_Atomic uint32_t pid;
	uint32_t uid;
	_Atomic uint64_t start_time;
	_Atomic int64_t attached_ns; /* CLOCK_REALTIME of the claim */
	uint64_t resv[4];
} fab_proc_ent;
#define FAB_SG_MAKE(gen, st) (((uint64_t)(gen) << 32) | (st))
#define FAB_SG_GEN(sg) ((uint32_t)((sg) >> 32))
#define FAB_SG_STATE(sg) ((uint32_t)(sg))
_Static_assert(sizeof(fab_proc_ent) == 64, "proc entry size");

/* Registry entry states (channels and contexts). */
#define FAB_ENT_FREE 0u
#define FAB_ENT_CREATING 1u
#define FAB_ENT_LIVE 2u

/* What a registry entry names: both share one namespace (and the segment
 * path /dev/shm/fab.<fabric>.<name>). */
#define FAB_OBJ_CHAN 0u
#define FAB_OBJ_TOPIC 1u

typedef struct fab_chan_ent {
	_Atomic uint32_t state;
	_Atomic uint32_t owner; /* owner tag of the creator while CREATING */
	_Atomic uint64_t gen;   /* bumped on every create and destroy */
	char name[64];          /* NUL-terminated; validated on every read */
	uint32_t type;          /* FAB_OBJ_*, written before state turns LIVE */
	uint32_t resv32;
	uint64_t resv[5];
} fab_chan_ent;
_Static_assert(sizeof(fab_chan_ent) == 128, "chan entry size");

typedef struct fab_ctx_ent {
	_Atomic uint32_t state;
	_Atomic uint32_t owner;
	_Atomic uint32_t cancel; /* futex word: 0 live, else the FAB_E* it ended with (negated) */
	_Atomic int32_t reason;
	_Atomic uint32_t parent; /* index + 1 of the parent context, 0 = root */
	_Atomic uint32_t waiters;
	_Atomic uint64_t gen;
	char name[64];
	uint64_t resv[4];
} fab_ctx_ent;
_Static_assert(sizeof(fab_ctx_ent) == 128, "ctx entry size");
_Static_assert(offsetof(fab_ctx_ent, cancel) == 8, "ctx cancel offset");

/*
 * A limiter: GCRA.  `tat` (theoretical arrival time, CLOCK_MONOTONIC ns) is
 * the one word every grant changes by CAS; `params` packs the emission
 * interval and the burst so a reader sees a consistent pair in one load:
 * interval_ns << 24 | burst (interval < 2^40 ns, burst < 2^24).  `seq` is a
 * futex word (sleepers bit 0, as channels' wait words) bumped by set, so
 * sleepers re-plan at once under the new rate.
 */
typedef struct fab_lim_ent {
	_Atomic uint32_t state;
	_Atomic uint32_t owner;
	_Atomic uint64_t gen;
	char name[64];
	_Atomic int64_t tat;
	_Atomic uint64_t params;
	_Atomic uint32_t seq;
	_Atomic uint32_t waiters;
	_Atomic uint64_t granted; /* tokens granted since creation */
	_Atomic uint64_t waited_ns; /* total time callers slept in wait */
	uint64_t resv[1];
} fab_lim_ent;
#define FAB_LIM_PARAMS(interval_ns, burst) (((uint64_t)(interval_ns) << 24) | (burst))
#define FAB_LIM_INTERVAL(p) ((p) >> 24)
#define FAB_LIM_BURST(p) ((uint32_t)((p) & 0xffffffu))
#define FAB_LIM_INTERVAL_MAX ((1ULL << 40) - 1)
#define FAB_LIM_BURST_MAX ((1u << 24) - 1)
_Static_assert(sizeof(fab_lim_ent) == 128, "limiter entry size");
_Static_assert(offsetof(fab_lim_ent, seq) % 4 == 0, "limiter futex word aligned");

typedef struct fab_ctl_hdr {
	uint64_t magic;
	_Atomic uint32_t version; /* store-released last by the creator */
	uint32_t hdr_size;
	uint64_t total_size;
	uint32_t max_procs;
	uint32_t max_chans;
	uint32_t max_ctxs;
	uint32_t creator_uid;
	uint64_t procs_off;
	uint64_t chans_off;
	uint64_t ctxs_off;
	int64_t created_ns; /* CLOCK_REALTIME */
	char name[64];
	uint64_t lims_off; /* since layout 1.1 */
	uint32_t max_lims;
	uint32_t resv32;
	uint64_t resv[13];
} fab_ctl_hdr;
_Static_assert(sizeof(fab_ctl_hdr) == 256, "ctl header size");
_Static_assert(offsetof(fab_ctl_hdr, version) == 8, "ctl version offset");
_Static_assert(offsetof(fab_ctl_hdr, procs_off) == 40, "ctl procs_off offset");

#define FAB_CTL_PROCS_OFF 4096u
#define FAB_CTL_CHANS_OFF (FAB_CTL_PROCS_OFF + FAB_MAX_PROCS * sizeof(fab_proc_ent))
#define FAB_CTL_CTXS_OFF (FAB_CTL_CHANS_OFF + FAB_MAX_CHANS * sizeof(fab_chan_ent))
#define FAB_CTL_LIMS_OFF (FAB_CTL_CTXS_OFF + FAB_MAX_CTXS * sizeof(fab_ctx_ent))
#define FAB_CTL_SIZE (FAB_CTL_LIMS_OFF + FAB_MAX_LIMS * sizeof(fab_lim_ent))

/* ---- owner tags ------------------------------------------------------- */

/*
 * A 16-bit owner tag names a process-table entry and the low 5 bits of its
 * claim generation: bit 15 set (so 0 means "nobody"), bits 10..14 gen,
 * bits 0..9 index.
 */
#define FAB_TAG_VALID 0x8000u
#define FAB_TAG_MAKE(idx, gen) (FAB_TAG_VALID | (((gen) & 31u) << 10) | ((idx) & 1023u))
#define FAB_TAG_IDX(tag) ((tag) & 1023u)
#define FAB_TAG_GEN(tag) (((tag) >> 10) & 31u)
_Static_assert(FAB_MAX_PROCS <= 1024, "owner tag holds 10 bits of index");

/* ---- channel segment -------------------------------------------------- */

#define FAB_RING_SPSC 1u        /* spsc, commit words in their own array */
#define FAB_RING_MPMC 2u
#define FAB_RING_SPSC_INLINE 3u /* spsc, commit word at the start of each slot */

/*
 * Channel header.  The first line is immutable after creation (readers copy
 * and validate it once at open).  Then one line per writer group: producer
 * position, consumer position, sender wait word, receiver wait word, close
 * state, counters.  Positions are free-running 64-bit counters; the index of
 * position p is p & (nslots - 1).
 */
typedef struct fab_chan_hdr {
	/* line 0: description (immutable) */
	uint64_t magic;
	_Atomic uint32_t version;
	uint32_t hdr_size;
	uint64_t total_size;
	uint32_t kind;     /* FAB_SPSC | FAB_MPMC as requested */
	uint32_t ring;     /* FAB_RING_SPSC | FAB_RING_MPMC as implemented */
	uint32_t delivery;
	uint32_t capacity; /* exact, as requested (0 = unbuffered) */
	uint32_t msg_size;
	uint32_t slot_size; /* bytes per slot, multiple of 8 */
	uint32_t nslots;    /* power of two >= max(capacity, 1) */
	uint32_t producers; /* close quorum */
	uint32_t mode;
	uint32_t attach_max;
	uint64_t attach_off; /* uint64_t[attach_max] */
	uint64_t ents_off;   /* spsc: first commit word (array, or inline in slot 0) */
	uint64_t slots_off;  /* slot area */
	char name[64];
	uint8_t pad0[104]; /* to offset 256 */
	/* producer line */
	_Atomic uint64_t tail;
	uint8_t pad1[FAB_LINE - 8];
	/* consumer line */
	_Atomic uint64_t head;
	uint8_t pad2[FAB_LINE - 8];
	/* senders sleep on send_futex; receivers bump it when send_waiters > 0 */
	_Atomic uint32_t send_futex;
	_Atomic uint32_t send_waiters;
	uint8_t pad3[FAB_LINE - 8];
	/* receivers sleep on recv_futex; senders bump it when recv_waiters > 0 */
	_Atomic uint32_t recv_futex;
	_Atomic uint32_t recv_waiters;
	_Atomic uint32_t recv_ready; /* receivers inside a blocking receive (rendezvous) */
	uint8_t pad4[FAB_LINE - 12];
	/* close state */
	_Atomic uint32_t closed;
	_Atomic uint32_t closes;
	_Atomic uint64_t closer_ids[64];
	uint8_t pad5[FAB_LINE - 8];
	/* attach ends and slow-path counters */
	_Atomic uint64_t spsc_sender;   /* owner tag << 32 | handle serial, 0 = free */
	_Atomic uint64_t spsc_receiver;
	_Atomic uint64_t futex_waits;
	_Atomic uint64_t futex_wakes;
	_Atomic uint64_t recovered;
	_Atomic uint64_t skipped; /* mpmc positions that carried no message */
	uint64_t start_pos;       /* first position (0 unless a test chose one) */
	uint64_t resv[9];
} fab_chan_hdr;

_Static_assert(offsetof(fab_chan_hdr, version) == 8, "chan version offset");
_Static_assert(offsetof(fab_chan_hdr, tail) % FAB_LINE == 0, "tail on its own line");
_Static_assert(offsetof(fab_chan_hdr, head) % FAB_LINE == 0, "head on its own line");
_Static_assert(offsetof(fab_chan_hdr, send_futex) % FAB_LINE == 0, "send futex line");
_Static_assert(offsetof(fab_chan_hdr, recv_futex) % FAB_LINE == 0, "recv futex line");
_Static_assert(offsetof(fab_chan_hdr, closed) % FAB_LINE == 0, "close line");
_Static_assert(offsetof(fab_chan_hdr, spsc_sender) % FAB_LINE == 0, "attach line");
_Static_assert(offsetof(fab_chan_hdr, head) == 384, "head offset");
_Static_assert(offsetof(fab_chan_hdr, tail) == 256, "tail offset");
_Static_assert(sizeof(fab_chan_hdr) <= 4096, "channel header fits one page");

/*
 * Attach-table word: owner tag << 32 | role << 24 | handle serial (24 bits).
 * 0 = free.  Recovery clears words whose owner is dead.
 */
#define FAB_ATT_MAKE(tag, role, serial)                                         \
	(((uint64_t)(tag) << 32) | ((uint64_t)((role) & 0xffu) << 24) |       \
	 ((uint64_t)(serial) & 0xffffffu))
#define FAB_ATT_TAG(w) ((uint32_t)((w) >> 32) & 0xffffu)
#define FAB_ATT_ROLE(w) ((uint32_t)((w) >> 24) & 0xffu)

/*
 * MPMC slot: a 16-byte header then the payload, the whole slot a multiple of
 * 64 bytes so neighbouring slots do not share a line.
 *
 * The state word is the crash-safe truth of the slot:
 *   bits 0..15  owner tag (0 = nobody)
 *   bits 16..18 state
 *   bits 19..63 position (low 45 bits) the state refers to
 * A position "ready for" p is FREE(p); a producer claims it WRITING(p, me),
 * commits FULL(p, me); a consumer claims READING(p, me) and frees it as
 * FREE(p + nslots).  A position that will carry no message (its producer died
 * mid-write, or saw the channel closed, or withdrew an unbuffered send) is
 * SKIP(p).  Each transition has one owner, so recovery can read who holds a
 * slot unambiguously.
 */
#define FAB_SLOT_FREE 0u
#define FAB_SLOT_WRITING 1u
#define FAB_SLOT_FULL 2u
#define FAB_SLOT_READING 3u
#define FAB_SLOT_SKIP 4u

#define FAB_SEQ_BITS 45u
#define FAB_SEQ_MASK ((1ULL << FAB_SEQ_BITS) - 1)
#define FAB_SW_MAKE(pos, st, tag)                                               \
	((((uint64_t)(pos) & FAB_SEQ_MASK) << 19) | ((uint64_t)(st) << 16) |  \
	 ((uint64_t)(tag) & 0xffffu))
#define FAB_SW_SEQ(w) ((w) >> 19)
#define FAB_SW_STATE(w) ((uint32_t)((w) >> 16) & 7u)
#define FAB_SW_TAG(w) ((uint32_t)(w) & 0xffffu)
#define FAB_SW_SAMEPOS(w, pos) (FAB_SW_SEQ(w) == ((uint64_t)(pos) & FAB_SEQ_MASK))

/*
 * spsc commit word, one per slot: in its own array (8 per cache line,
 * FAB_RING_SPSC) or as the first 8 bytes of the slot when that costs no
 * extra cache line (FAB_RING_SPSC_INLINE), so a small message and its word
 * travel in one line:
 *   bits 32..63  length of the message
 *   bits 0..31   position << 1, low 32 bits (bit 0 reserved, 0)
 * FULL(p, len) is stored by the sender after the payload; the receiver
 * only reads it.  31 bits of position suffice: a slot's word is at most one
 * lap old.  head (consumed) is the truth on the other side.
 */
#define FAB_SE_FULL(pos, len) (((uint64_t)(len) << 32) | (uint32_t)((uint64_t)(pos) << 1))
#define FAB_SE_MARK(e) ((uint32_t)(e))
#define FAB_SE_LEN(e) ((uint32_t)((e) >> 32))

typedef struct fab_mslot {
	_Atomic uint64_t state;
	uint32_t len;
	uint32_t resv;
	/* payload follows */
} fab_mslot;
_Static_assert(sizeof(fab_mslot) == 16, "mpmc slot header");

#endif /* FAB_LAYOUT_H */
