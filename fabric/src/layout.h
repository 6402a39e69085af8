/*
 * layout.h - the bytes fab keeps in shared memory.  docs/layout.md is the
 * normative description; this header must match it.
 *
 * Rules: fixed-width fields only (uint32_t/uint64_t/int64_t and _Atomic
 * forms), no pointers (offsets instead), explicit padding, reserved words for
 * growth, a static assertion on every size and every offset a reader relies
 * on.  A segment header is written completely and its version word is
 * store-released LAST; a reader that sees version 0 waits for it, a different
 * major version is FAB_EVERSION.  So is a control segment of an older minor,
 * and a channel segment of any other minor (its header differs: 1.3 added
 * attach_hi, which every library attaching to the channel must raise; 1.4
 * added the mpmc slot state HELD, which an older library would misread).
 *
 * Two kinds of segment:
 *   /dev/shm/fab.<fabric>            control: process table, channel registry
 *                                    (channels and topics), context table,
 *                                    limiter table, stage table
 *   /dev/shm/fab.<fabric>.<channel>  one channel: header, attach table, ring
 */
#ifndef FAB_LAYOUT_H
#define FAB_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define FAB_LAYOUT_MAJOR 1u
#define FAB_LAYOUT_MINOR 4u
#define FAB_LAYOUT_VERSION ((FAB_LAYOUT_MAJOR << 16) | FAB_LAYOUT_MINOR)
/* The oldest control segment this library opens: 1.4 changed only channel
 * segments (the HELD slot state), so a fabric made by a 1.3 library stays
 * usable; its channels of 1.3 are refused (FAB_EVERSION) and recreated. */
#define FAB_CTL_MINOR_MIN 3u

#define FAB_CTL_MAGIC 0x314C5443424146ULL  /* "FABCTL1\0" little-endian */
#define FAB_CHAN_MAGIC 0x314E4843424146ULL /* "FABCHN1\0" */

#define FAB_MAX_PROCS 1024u
/* Byte FAB_LIVE_LOCK_OFF + i of the control segment's file (past its end)
 * is locked (F_OFD_SETLK, write lock) by the live owner of process-table
 * entry i (since 28 Nov 2026, libfab 1.5.3; proc.c).  No layout change:
 * a lock is not in the file. */
#define FAB_LIVE_LOCK_OFF (1ULL << 40)
#define FAB_MAX_CHANS 1024u
#define FAB_MAX_CTXS 1024u
#define FAB_MAX_LIMS 256u
#define FAB_MAX_STAGES 256u
#define FAB_ATTACH_MAX 1024u   /* handles attached to one channel */
#define FAB_LINE 128u          /* false-sharing unit (adjacent-line prefetch) */

/* ---- control segment ------------------------------------------------- */

/* Process-table entry states. */
#define FAB_PROC_FREE 0u
#define FAB_PROC_CLAIMED 1u /* the claimer's pid in sg; pid, start time being written */
#define FAB_PROC_LIVE 2u

/*
 * One attached process (one fabric handle).  Identity is pid + start time
 * (/proc/<pid>/stat field 22), so a dead or reused pid is recognised.  `gen`
 * counts claims of this entry; owner tags (below) carry its low bits so a
 * recovery that raced with a re-claim cannot touch the new owner's slots.
 */
typedef struct fab_proc_ent {
	_Atomic uint64_t sg; /* claim generation << 32 | claimer pid << 8 | state, by CAS */
	_Atomic uint32_t pid;
	uint32_t uid;
	_Atomic uint64_t start_time;
	_Atomic int64_t attached_ns; /* CLOCK_REALTIME of the claim */
	/* since layout 1.2, written only by the owning process (one line of
	 * its own: readers are fabd's watchdog and fabctl, now and then) */
	_Atomic uint64_t calls;  /* library calls made (the watchdog's pulse) */
	_Atomic uint64_t wait;   /* what it sleeps on now, FAB_WAIT_MAKE; 0 = not sleeping */
	_Atomic int64_t wait_ns; /* CLOCK_MONOTONIC when that sleep began */
	_Atomic uint32_t stage;   /* stage table index + 1 once fab_stage_open ran; 0 = none */
	_Atomic uint32_t replica; /* its replica index (valid when stage != 0) */
} fab_proc_ent;
/*
 * The wait record: kind (8 bits) | op (8) | cases (16: a select's case
 * count, else 1) | index (32: registry index of the channel or topic,
 * context or limiter table index).  One record per process: the most
 * recent sleep of any of its threads.  The sleeper stores wait_ns, then
 * store-releases wait; it clears wait (CAS from its own value) on waking.
 */
#define FAB_WAIT_CHAN 1u    /* op: FAB_WAIT_SEND | FAB_WAIT_RECV */
#define FAB_WAIT_SELECT 2u  /* index: the first case's channel, op its direction */
#define FAB_WAIT_TOPIC 3u   /* op: FAB_WAIT_SEND (publish) | FAB_WAIT_RECV */
#define FAB_WAIT_CTX 4u     /* fab_ctx_wait on a shared context (index), or local (~0) */
#define FAB_WAIT_LIMITER 5u
#define FAB_WAIT_SEND 1u
#define FAB_WAIT_RECV 2u
#define FAB_WAIT_MAKE(kind, op, cases, idx)                                     \
	(((uint64_t)(kind) << 56) | ((uint64_t)((op) & 0xffu) << 48) |        \
	 ((uint64_t)((cases) & 0xffffu) << 32) | (uint64_t)(uint32_t)(idx))
#define FAB_WAIT_KIND(w) ((uint32_t)((w) >> 56))
#define FAB_WAIT_OP(w) ((uint32_t)((w) >> 48) & 0xffu)
#define FAB_WAIT_CASES(w) ((uint32_t)((w) >> 32) & 0xffffu)
#define FAB_WAIT_IDX(w) ((uint32_t)(w))
_Static_assert(offsetof(fab_proc_ent, calls) == 32, "proc calls offset");
_Static_assert(offsetof(fab_proc_ent, wait) == 40, "proc wait offset");
_Static_assert(offsetof(fab_proc_ent, stage) == 56, "proc stage offset");

/*
 * A latency histogram (since layout 1.2): buckets of powers of two from
 * 1 us, b[i] counts observations <= 1 us << i (and above the previous
 * bound), b[FAB_HIST_BUCKETS] those above the last bound.  Not cumulative:
 * the exporter adds up.  Every field is a relaxed counter; a reader may
 * see count and the buckets of one observation a moment apart.
 */
#define FAB_HIST_BUCKETS 24 /* 1 us .. 8.39 s */
typedef struct fab_hist {
	_Atomic uint64_t count;
	_Atomic uint64_t sum_ns;
	_Atomic uint64_t b[FAB_HIST_BUCKETS + 1];
} fab_hist;
_Static_assert(sizeof(fab_hist) == 216, "histogram size");
/*
 * The claim word sg: generation (bits 32..63), the claimer's pid (bits
 * 8..31, only in a CLAIMED word: FAB_SG_CLAIMED) and the state (bits 0..7).
 * The CAS FREE -> CLAIMED names its owner in the same instruction, so a
 * claimer killed before it stored `pid` and LIVE is recognised as dead and
 * its entry freed; LIVE and FREE words carry no pid (0).  A pid does not
 * fit in 24 bits only beyond Linux's PID_MAX_LIMIT (2^22); such a claimer,
 * like a library older than the field (28 Nov 2026, same layout version),
 * writes 0, "owner unknown", and its CLAIMED entry is taken for alive.
 */
#define FAB_SG_MAKE(gen, st) (((uint64_t)(gen) << 32) | (st))
#define FAB_SG_CLAIMED(gen, pid)                                                \
	(((uint64_t)(gen) << 32) |                                              \
	 ((uint64_t)((pid) <= FAB_SG_PID_MAX ? (pid) : 0u) << 8) | FAB_PROC_CLAIMED)
#define FAB_SG_GEN(sg) ((uint32_t)((sg) >> 32))
#define FAB_SG_STATE(sg) ((uint32_t)(sg) & 0xffu)
#define FAB_SG_PID(sg) (((uint32_t)(sg) >> 8) & FAB_SG_PID_MAX)
#define FAB_SG_PID_MAX 0xffffffu
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
	int64_t end_ns; /* CLOCK_MONOTONIC when it ended; written before the code */
	uint64_t resv[3];
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

/*
 * A stage (since layout 1.1, docs/stage.md): one entry per stage name,
 * found or created by fab_stage_open and never freed (as limiters), so
 * fabd and fabctl can read a stage's error counters with no broker state.
 *
 * Claim protocol: `owner` is the claim word.  A creator CASes it 0 -> its
 * tag (or a dead creator's tag -> its own: takeover), writes `name`, then
 * store-releases `state` LIVE.  Entries are claimed in index order and
 * never freed, so every opener of one name scans the same sequence and
 * waits on a CREATING entry until it turns LIVE (or its creator is dead):
 * exactly one entry per name.  The counters are plain relaxed counters.
 */
typedef struct fab_stage_ent {
	_Atomic uint32_t state;  /* FAB_ENT_FREE | FAB_ENT_LIVE (no CREATING value: owner != 0) */
	_Atomic uint32_t owner;  /* tag of the creator; 0 = free */
	_Atomic uint64_t gen;    /* bumped when the entry goes LIVE */
	char name[64];           /* NUL-terminated stage name */
	_Atomic uint64_t errors;         /* fab_stage_error calls, all replicas */
	_Atomic uint64_t errors_dropped; /* of those, records the error channel refused */
	_Atomic uint64_t opens;          /* fab_stage_open calls (replica starts) */
	_Atomic uint32_t replicas_seen;  /* 1 + the highest replica index opened */
	_Atomic int32_t last_code;       /* code of the last fab_stage_error */
	_Atomic int64_t last_error_ns;   /* CLOCK_REALTIME of the last fab_stage_error */
	/* since 28 Nov 2026 (same layout version; zero before, and an older
	 * library ignores it): bit j = replica j is being stopped by its
	 * supervisor to be run again (fab_stage_restarting), so its
	 * fab_stage_close does not close its outputs; replicas >= 64 have no
	 * bit.  Set and cleared by the supervisor (fetch_or / fetch_and),
	 * read by the replica's fab_stage_close. */
	_Atomic uint64_t restarting;
} fab_stage_ent;
_Static_assert(sizeof(fab_stage_ent) == 128, "stage entry size");
_Static_assert(offsetof(fab_stage_ent, name) == 16, "stage name offset");
_Static_assert(offsetof(fab_stage_ent, errors) == 80, "stage errors offset");
_Static_assert(offsetof(fab_stage_ent, errors_dropped) == 88, "stage dropped offset");
_Static_assert(offsetof(fab_stage_ent, opens) == 96, "stage opens offset");
_Static_assert(offsetof(fab_stage_ent, replicas_seen) == 104, "stage replicas offset");
_Static_assert(offsetof(fab_stage_ent, last_error_ns) == 112, "stage last error offset");
_Static_assert(offsetof(fab_stage_ent, restarting) == 120, "stage restarting offset");

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
	uint64_t stages_off; /* since layout 1.1 */
	uint32_t max_stages;
	uint32_t resv32b;
	uint64_t lhists_off; /* since layout 1.2: fab_hist[max_lims], limiter waits */
	/* CLOCK_REALTIME when fab_fabric_destroy began, 0 while the fabric
	 * lives (libfab 1.5.1, from the spare words: same layout version;
	 * older libraries leave it 0).  A create through a handle of a
	 * destroyed fabric refuses on it instead of leaving a segment no
	 * fabric lists (fabric.c, fab__fabric_gone). */
	_Atomic int64_t destroyed_ns;
	uint64_t resv[9];
} fab_ctl_hdr;
_Static_assert(sizeof(fab_ctl_hdr) == 256, "ctl header size");
_Static_assert(offsetof(fab_ctl_hdr, version) == 8, "ctl version offset");
_Static_assert(offsetof(fab_ctl_hdr, procs_off) == 40, "ctl procs_off offset");
_Static_assert(offsetof(fab_ctl_hdr, lims_off) == 136, "ctl lims_off offset");
_Static_assert(offsetof(fab_ctl_hdr, stages_off) == 152, "ctl stages_off offset");
_Static_assert(offsetof(fab_ctl_hdr, max_stages) == 160, "ctl max_stages offset");
_Static_assert(offsetof(fab_ctl_hdr, lhists_off) == 168, "ctl lhists_off offset");
_Static_assert(offsetof(fab_ctl_hdr, destroyed_ns) == 176, "ctl destroyed_ns offset");

#define FAB_CTL_PROCS_OFF 4096u
#define FAB_CTL_CHANS_OFF (FAB_CTL_PROCS_OFF + FAB_MAX_PROCS * sizeof(fab_proc_ent))
#define FAB_CTL_CTXS_OFF (FAB_CTL_CHANS_OFF + FAB_MAX_CHANS * sizeof(fab_chan_ent))
#define FAB_CTL_LIMS_OFF (FAB_CTL_CTXS_OFF + FAB_MAX_CTXS * sizeof(fab_ctx_ent))
#define FAB_CTL_STAGES_OFF (FAB_CTL_LIMS_OFF + FAB_MAX_LIMS * sizeof(fab_lim_ent))
#define FAB_CTL_LHISTS_OFF (FAB_CTL_STAGES_OFF + FAB_MAX_STAGES * sizeof(fab_stage_ent))
#define FAB_CTL_SIZE (FAB_CTL_LHISTS_OFF + FAB_MAX_LIMS * sizeof(fab_hist))
_Static_assert(FAB_CTL_STAGES_OFF == 364544, "stage table offset");
_Static_assert(FAB_CTL_LHISTS_OFF == 397312, "limiter histogram offset");
_Static_assert(FAB_CTL_SIZE == 452608, "control segment size");

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
#define FAB_CLOSE_DECIDED 1ull  /* close_epoch: the quorum closed the channel */

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
	/* at-least-once (delivery == FAB_AT_LEAST_ONCE; 0 otherwise) */
	uint32_t max_inflight;   /* leases per receiving handle */
	uint32_t max_deliveries; /* returned that often -> dead letter */
	char dead_letter[56];    /* channel name, "" = none (dropped, counted) */
	uint8_t pad0[40];        /* to offset 256 */
	/* producer line */
	_Atomic uint64_t tail;
	uint8_t pad1[FAB_LINE - 8];
	/* consumer line */
	_Atomic uint64_t head;
	uint8_t pad2[FAB_LINE - 8];
	/* senders sleep on send_futex (bit 0: someone sleeps; fab__wake_word).
	 * send_waiters counts the senders in a blocking call's sleep phase; it
	 * can stay one high after a kill (chan.c "The sleep marks"), so the
	 * blocked gauges count the attach words' sleep marks instead, and
	 * only recovery reads it (to wake the channel's sleepers) */
	_Atomic uint32_t send_futex;
	_Atomic uint32_t send_waiters;
	uint8_t pad3[FAB_LINE - 8];
	/* receivers sleep on recv_futex; recv_waiters as send_waiters */
	_Atomic uint32_t recv_futex;
	_Atomic uint32_t recv_waiters;
	/* receivers inside a blocking receive (rendezvous): a hint, never below
	 * the sum of the attach words' counts (FAB_ATT_READY) */
	_Atomic uint32_t recv_ready;
	uint8_t pad4[FAB_LINE - 12];
	/* close state */
	_Atomic uint32_t closed;
	_Atomic uint32_t closes;
	_Atomic uint64_t closer_ids[64];
	/* since 28 Nov 2026 (same layout version; zero before): bit i of
	 * `rejoined` withdraws the close recorded in closer_ids[i] (a
	 * supervisor restarted that producer: fab_chan_rejoin_as); the close
	 * decision and every rejoin go through `close_epoch`, whose bit 0
	 * (FAB_CLOSE_DECIDED) the settle that closes the channel sets, and
	 * whose other bits count rejoins (docs/channels.md "Close") */
	_Atomic uint64_t close_epoch;
	_Atomic uint64_t rejoined;
	uint8_t pad5[FAB_LINE - 24];
	/* attach ends and slow-path counters */
	_Atomic uint64_t spsc_sender;   /* owner tag << 32 | handle serial, 0 = free */
	_Atomic uint64_t spsc_receiver;
	_Atomic uint64_t futex_waits;
	_Atomic uint64_t futex_wakes;
	_Atomic uint64_t recovered;
	_Atomic uint64_t skipped; /* mpmc positions that carried no message */
	uint64_t start_pos;       /* first position (0 unless a test chose one) */
	/* at-least-once: messages given back (nack, dead lessee) and waiting
	 * behind head for redelivery (a gauge, >= the true count), the
	 * low-water mark below which every position is finished, counters */
	_Atomic uint64_t returned;
	_Atomic uint64_t redo_low;
	_Atomic uint64_t nacked;
	_Atomic uint64_t redelivered;
	_Atomic uint64_t dead_lettered; /* moved to the dead-letter channel */
	_Atomic uint64_t dead_dropped;  /* poison with nowhere to go: dropped, counted */
	uint64_t resv[3];
	/* since layout 1.2: time senders and receivers slept in a blocking
	 * call (observed once per call that slept), and the pipeline latency
	 * a sink recorded (fab_ack, or a receive by a stage with no output:
	 * now - the message's origin time) */
	fab_hist send_wait;
	fab_hist recv_wait;
	fab_hist latency;
	uint8_t pad6[120]; /* to the next line */
	/* since layout 1.3: one more than the highest attach-table index any
	 * handle has claimed in this segment, raised (CAS-max) by every attach
	 * before the handle is returned and never lowered.  Waiting receivers
	 * (FAB_ATT_READY) sit below it, so a sender confirming recv_ready
	 * scans [0, attach_hi) instead of the whole table (chan.c, "Waiting
	 * unbuffered receivers").  Its own line: written on attach only, read
	 * by non-blocking unbuffered senders. */
	_Atomic uint32_t attach_hi;
	uint32_t resv32;
	uint64_t resv2[15];
} fab_chan_hdr;

_Static_assert(offsetof(fab_chan_hdr, version) == 8, "chan version offset");
_Static_assert(offsetof(fab_chan_hdr, tail) % FAB_LINE == 0, "tail on its own line");
_Static_assert(offsetof(fab_chan_hdr, head) % FAB_LINE == 0, "head on its own line");
_Static_assert(offsetof(fab_chan_hdr, send_futex) % FAB_LINE == 0, "send futex line");
_Static_assert(offsetof(fab_chan_hdr, recv_futex) % FAB_LINE == 0, "recv futex line");
_Static_assert(offsetof(fab_chan_hdr, closed) % FAB_LINE == 0, "close line");
_Static_assert(offsetof(fab_chan_hdr, close_epoch) == 1288, "close epoch offset");
_Static_assert(offsetof(fab_chan_hdr, rejoined) == 1296, "rejoined offset");
_Static_assert(offsetof(fab_chan_hdr, spsc_sender) % FAB_LINE == 0, "attach line");
_Static_assert(offsetof(fab_chan_hdr, head) == 384, "head offset");
_Static_assert(offsetof(fab_chan_hdr, tail) == 256, "tail offset");
_Static_assert(sizeof(fab_chan_hdr) <= 4096, "channel header fits one page");
_Static_assert(offsetof(fab_chan_hdr, send_wait) % 8 == 0, "histograms aligned");
_Static_assert(offsetof(fab_chan_hdr, send_wait) == 1536, "send wait histogram offset");
_Static_assert(offsetof(fab_chan_hdr, latency) == 1968, "latency histogram offset");
_Static_assert(offsetof(fab_chan_hdr, attach_hi) == 2304, "attach_hi offset");
_Static_assert(offsetof(fab_chan_hdr, attach_hi) % FAB_LINE == 0, "attach_hi line");
/* Layout 1.2's header was 2184 bytes: libraries of 1.2 compare hdr_size
 * with their own size and so refuse channel segments of 1.3. */
_Static_assert(sizeof(fab_chan_hdr) == 2432, "channel header size");

/*
 * Attach-table word: owner tag << 32 | role << 24 | handle serial (24 bits).
 * 0 = free.  Recovery clears words whose owner is dead.  The role takes the
 * low 5 bits of its byte (FAB_SEND | FAB_RECV); the top three are the offer
 * mark and the sleep marks below.
 */
#define FAB_ATT_MAKE(tag, role, serial)                                         \
	(((uint64_t)(tag) << 32) | ((uint64_t)((role) & 0x1fu) << 24) |       \
	 ((uint64_t)(serial) & 0xffffffu))
#define FAB_ATT_TAG(w) ((uint32_t)((w) >> 32) & 0xffffu)
#define FAB_ATT_ROLE(w) ((uint32_t)((w) >> 24) & 0x1fu)
/*
 * Bits 48..63 (since 28 Nov 2026, same layout version): how many receivers
 * of this handle wait in a blocking receive on an unbuffered channel, each
 * also counted in the header's recv_ready (chan.c, "Waiting unbuffered
 * receivers").  FAB_ATT_ID is the word without them: whose handle it is.
 */
#define FAB_ATT_READY_ONE (1ULL << 48)
#define FAB_ATT_READY_MAX 0xffffu
#define FAB_ATT_READY(w) ((uint32_t)((w) >> 48))
/*
 * Bits 30 and 31, the top of the role byte (since layout 1.3): the handle's
 * thread sleeps in a blocking send (30) or receive (31) on this channel and
 * is counted in the header's send_waiters or recv_waiters.  Set after the
 * count goes up, cleared before it goes down, so the CAS that clears a dead
 * handle's word takes its sleepers out of the counts exactly once
 * (recover.c) and a count is never low (chan.c, fab__wait).  The blocked
 * gauges (fab_chan_stats, the inspector) are the number of marks.
 */
#define FAB_ATT_SLEEP_SEND (1ULL << 30)
#define FAB_ATT_SLEEP_RECV (1ULL << 31)
#define FAB_ATT_SLEEP (FAB_ATT_SLEEP_SEND | FAB_ATT_SLEEP_RECV)
/*
 * Bit 29 (since 28 Nov 2026, tenth session, same layout version; the role
 * has bits 24..28): set with bit 30 while the handle's select sleeps with a
 * send case on this unbuffered channel, which has published nothing (a
 * blocking fab_send sleeps with its message in the slot).  A non-blocking
 * receive that finds the slot empty and such a mark announces itself so
 * that the select offers (chan.c, fab__send_sleeper).  Older libraries see
 * it as a role bit they do not use.
 */
#define FAB_ATT_OFFER (1ULL << 29)
/* The word without its counts and marks: whose handle it is. */
#define FAB_ATT_ID(w) ((w) & (FAB_ATT_READY_ONE - 1) & ~(FAB_ATT_SLEEP | FAB_ATT_OFFER))

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
	uint32_t returns; /* at-least-once: times given back (nack, dead lessee) */
	/* payload follows (at-most-once) */
} fab_mslot;
_Static_assert(sizeof(fab_mslot) == 16, "mpmc slot header");

/* At-least-once slots carry the enqueue time too; payload after 32 bytes. */
typedef struct fab_mslot_alo {
	fab_mslot m;
	int64_t enqueue_ns; /* CLOCK_MONOTONIC at commit */
	int64_t origin_ns;  /* start of the message's chain (= enqueue_ns for now) */
} fab_mslot_alo;
_Static_assert(sizeof(fab_mslot_alo) == 32, "at-least-once slot header");

/* RETURNING(p, returner): a lease being given back (nack, recovery); the
 * returner decides between FULL(p) (redelivery) and the dead letter. */
#define FAB_SLOT_RETURNING 5u

/* HELD(x, holder) (layout 1.4): a message a receiver keeps in its slot past
 * the receive -- acquired with fab_recv_acquire, or leased on an
 * at-least-once channel.  Unlike READING (a copy in progress, which a
 * producer waits out), a producer that comes round to a HELD slot passes
 * it: it moves the word's position to its own (HELD(p - nslots) -> HELD(p),
 * the holder's tag kept) and claims the next position, so position p
 * carries no message and receivers pass it as they pass a taken one.  The
 * message itself stays where it is; x is only "the latest position this
 * slot was passed at" (always within a lap behind tail).  The release, the
 * ack or recovery of a dead holder frees the slot as FREE(x + nslots); a
 * give-back makes it RETURNING(x) and FULL(x), a message at position x
 * (behind head: redelivered first; at or after head: taken in turn). */
#define FAB_SLOT_HELD 6u

/* Is position q, at or after head, one where a sender passed a held slot
 * (not a message)?  Its word w is HELD(q) or RETURNING(q) (still held, or
 * being given back), or of the next lap (the hold ended since: nothing else
 * leaves such a word ahead of head but a taker between its take and its
 * head bump, which only counts its take a moment early).  given_back: also
 * FULL(q) with returns > 0 on an at-least-once ring, a passed lease given
 * back where it stood (a message again: the depth counts it, `received`
 * does not).  Shared by libfab's stats and len and the inspector. */
static inline int fab_sw_is_pass(uint64_t w, uint64_t q, uint32_t nslots, uint32_t returns,
				 int alo, int given_back)
{
	uint32_t st = FAB_SW_STATE(w);
	if (FAB_SW_SAMEPOS(w, q + nslots))
		return 1;
	return FAB_SW_SAMEPOS(w, q) &&
	       (st == FAB_SLOT_HELD || st == FAB_SLOT_RETURNING ||
		(given_back && alo && st == FAB_SLOT_FULL && returns != 0));
}

/* ==== topic segment (layout 1.1) ========================================
 *
 * /dev/shm/fab.<fabric>.<topic>: a broadcast ring (docs/layout.md "Topic
 * segment", docs/topics.md).  A topic shares the channel registry and its
 * namespace (registry entry type FAB_OBJ_TOPIC) but has its own magic, so a
 * channel opener refuses it and a topic opener refuses a channel.
 *
 *   0                    fab_topic_hdr (hdr_size bytes, < 4096)
 *   4096                 subscriber table: sub_max x fab_topic_sub (128 B)
 *   20480                slots: nslots x slot_size, each a fab_mslot header
 *                        (state word, len) then the payload
 *
 * Geometry is a pure function of (capacity, msg_size): nslots = the power of
 * two >= capacity, slot_size = round64(16 + msg_size), total =
 * round4096(20480 + nslots * slot_size) <= 4 GiB.
 *
 * Slot state words use the mpmc encoding (FAB_SW_*) with four states:
 *   FREE(p)        never used, ready for position p (a new ring only)
 *   WRITING(p, o)  publisher o is copying the message of position p in
 *   FULL(p, o)     the message of position p, committed by o
 *   SKIP(p)        position p carries no message (its publisher died)
 * A publisher claims position p by CAS from FREE(p), FULL(p - nslots) or
 * SKIP(p - nslots) to WRITING(p, me); the slot of p keeps FULL(p) until a
 * publisher claims p + nslots.  Readers never write slots: a subscriber
 * copies a FULL slot and looks at the state word again (seqlock).
 */
#define FAB_TOPIC_MAGIC 0x31435054424146ULL /* "FABTPC1\0" */
#define FAB_TOPIC_SUBS_MAX 128u
#define FAB_TOPIC_SUBS_OFF 4096u
#define FAB_TOPIC_SLOTS_OFF 20480u
#define FAB_TOPIC_CAP_DEFAULT 64u /* capacity 0 in fab_chan_opts */

typedef struct fab_topic_hdr {
	/* line 0: description (immutable after creation) */
	uint64_t magic;
	_Atomic uint32_t version; /* store-released last by the creator */
	uint32_t hdr_size;        /* sizeof(fab_topic_hdr) */
	uint64_t total_size;
	uint32_t capacity;        /* BLOCK flow-control limit, 1..2^24 */
	uint32_t msg_size;
	uint32_t slot_size;       /* round64(16 + msg_size) */
	uint32_t nslots;          /* power of two >= capacity */
	uint32_t mode;
	uint32_t sub_max;         /* FAB_TOPIC_SUBS_MAX */
	uint64_t subs_off;        /* FAB_TOPIC_SUBS_OFF */
	uint64_t slots_off;       /* FAB_TOPIC_SLOTS_OFF */
	uint64_t start_pos;       /* first position (0 unless a test chose one) */
	char name[64];
	uint8_t pad0[120]; /* to offset 256 */
	/* publishers' line: the next position to claim (a hint; the slot
	 * states are the truth) and the count of committed messages */
	_Atomic uint64_t tail;
	_Atomic uint64_t published;
	uint8_t pad1[FAB_LINE - 16];
	/* subscription line: read by every publish, written by subscribe */
	_Atomic uint32_t sub_gen;   /* bumped (seq_cst) by every subscribe */
	_Atomic uint32_t sub_hiwat; /* 1 + highest subscriber index ever used */
	uint8_t pad2[FAB_LINE - 8];
	/* subscribers sleep on data_futex; publishers wake it on commit */
	_Atomic uint32_t data_futex;
	_Atomic uint32_t data_waiters; /* gauge: subscribers in the sleep loop */
	uint8_t pad3[FAB_LINE - 8];
	/* publishers sleep on space_futex; BLOCK subscribers wake it */
	_Atomic uint32_t space_futex;
	_Atomic uint32_t space_waiters; /* gauge: publishers in the sleep loop */
	uint8_t pad4[FAB_LINE - 8];
	/* slow-path counters */
	_Atomic uint64_t dropped_total; /* positions lost by lapped subscribers */
	_Atomic uint64_t pruned;        /* dead subscribers removed */
	_Atomic uint64_t recovered;     /* slots of dead publishers turned SKIP */
	_Atomic uint64_t futex_waits;
	_Atomic uint64_t futex_wakes;
	_Atomic uint64_t subscribes;    /* subscriptions made since creation */
	/* since 28 Nov 2026 (same layout version; 0 before: unknown):
	 * CLOCK_MONOTONIC when the topic was created.  A dead publisher's wait
	 * record names the topic by registry index only, and an index is
	 * reused; a sleep that began before this time was on another topic
	 * (recover.c, fab__topic_uncount_publisher; the inspector). */
	int64_t created_mono_ns;
	uint64_t resv[9];
} fab_topic_hdr;
_Static_assert(offsetof(fab_topic_hdr, version) == 8, "topic version offset");
_Static_assert(offsetof(fab_topic_hdr, total_size) == 16, "topic total_size offset");
_Static_assert(offsetof(fab_topic_hdr, capacity) == 24, "topic capacity offset");
_Static_assert(offsetof(fab_topic_hdr, nslots) == 36, "topic nslots offset");
_Static_assert(offsetof(fab_topic_hdr, subs_off) == 48, "topic subs_off offset");
_Static_assert(offsetof(fab_topic_hdr, slots_off) == 56, "topic slots_off offset");
_Static_assert(offsetof(fab_topic_hdr, start_pos) == 64, "topic start_pos offset");
_Static_assert(offsetof(fab_topic_hdr, name) == 72, "topic name offset");
_Static_assert(offsetof(fab_topic_hdr, tail) == 256, "topic tail offset");
_Static_assert(offsetof(fab_topic_hdr, sub_gen) == 384, "topic sub_gen offset");
_Static_assert(offsetof(fab_topic_hdr, data_futex) == 512, "topic data futex offset");
_Static_assert(offsetof(fab_topic_hdr, space_futex) == 640, "topic space futex offset");
_Static_assert(offsetof(fab_topic_hdr, dropped_total) == 768, "topic counters offset");
_Static_assert(offsetof(fab_topic_hdr, created_mono_ns) == 816, "topic creation time offset");
_Static_assert(sizeof(fab_topic_hdr) == 896, "topic header size");
_Static_assert(sizeof(fab_topic_hdr) <= FAB_TOPIC_SUBS_OFF, "topic header fits one page");

/*
 * Subscriber entry, one 128-byte line each, written by its subscriber (and
 * by whoever prunes it); publishers read sw and cursor of BLOCK entries.
 *   sw: bits 32..63 claim generation, 16..31 owner tag, 8..15 policy
 *       (FAB_SUB_BLOCK | FAB_SUB_DROP), 0..7 state; changed only by CAS.
 *   cursor: the next position this subscriber reads (store-released after
 *       each copy, so a publisher that sees it may reuse older slots).
 */
#define FAB_TSUB_FREE 0u
#define FAB_TSUB_JOINING 1u /* claimed, cursor being set */
#define FAB_TSUB_ACTIVE 2u
#define FAB_TSUB_MAKE(gen, tag, policy, st)                                     \
	(((uint64_t)(gen) << 32) | ((uint64_t)((tag) & 0xffffu) << 16) |      \
	 ((uint64_t)((policy) & 0xffu) << 8) | ((uint64_t)(st) & 0xffu))
#define FAB_TSUB_GEN(w) ((uint32_t)((w) >> 32))
#define FAB_TSUB_TAG(w) ((uint32_t)((w) >> 16) & 0xffffu)
#define FAB_TSUB_POLICY(w) ((uint32_t)((w) >> 8) & 0xffu)
#define FAB_TSUB_STATE(w) ((uint32_t)(w) & 0xffu)

typedef struct fab_topic_sub {
	_Atomic uint64_t sw;
	_Atomic uint64_t cursor;
	_Atomic uint64_t delivered; /* messages received */
	_Atomic uint64_t dropped;   /* positions lost when lapped (DROP) */
	_Atomic int64_t joined_ns;  /* CLOCK_REALTIME of the subscribe */
	/* since 28 Nov 2026 (libfab 1.5.0, same layout version; zero before):
	 * the sleep mark, the entry's state word `sw` while its subscriber
	 * sleeps in fab_sub_recv, 0 otherwise.  Set after data_waiters counts
	 * the sleeper, cleared (CAS from sw) before it uncounts; the prune of a
	 * dead subscriber clears it by the same CAS and takes the count out,
	 * so exactly one of them does.  The blocked-subscribers gauge is the
	 * number of ACTIVE entries whose mark equals their sw. */
	_Atomic uint64_t sleeping;
	uint64_t resv[10];
} fab_topic_sub;
_Static_assert(sizeof(fab_topic_sub) == FAB_LINE, "topic subscriber entry size");
_Static_assert(offsetof(fab_topic_sub, cursor) == 8, "topic subscriber cursor offset");
_Static_assert(offsetof(fab_topic_sub, sleeping) == 40, "topic subscriber sleep mark offset");
_Static_assert(FAB_TOPIC_SUBS_OFF + FAB_TOPIC_SUBS_MAX * sizeof(fab_topic_sub) ==
		       FAB_TOPIC_SLOTS_OFF,
	       "topic slots follow the subscriber table");
_Static_assert(FAB_TOPIC_SLOTS_OFF % 4096 == 0, "topic slots page-aligned");

/* ==== end of topic segment ============================================== */

#endif /* FAB_LAYOUT_H */
