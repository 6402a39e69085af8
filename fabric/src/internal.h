/*
 * internal.h - private handle structures and fab__* functions shared between
 * the library's files.  Nothing here is visible to users (-fvisibility=hidden
 * and the version script).
 */
#ifndef FAB_INTERNAL_H
#define FAB_INTERNAL_H

/* The public declarations are default-visible; everything else in the
 * library is hidden (-fvisibility=hidden) and the version script lists the
 * exports. */
#pragma GCC visibility push(default)
#include "fab/fab.h"
#pragma GCC visibility pop
#include "atomic.h"
#include "layout.h"

#include <errno.h>

#include <stdbool.h>
#include <stdint.h>
#include <sched.h>
#include <stddef.h>

#define FAB__HIDDEN __attribute__((visibility("hidden")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- errors (error.c) ---- */
/* Record this thread's detail for the error `code` and return `code`. */
int fab__err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An expected outcome with no detail (would block): the message reads ""
 * until the next error.  Inline, and a flag instead of clearing the
 * message buffer: an empty poll (fab_try_recv on an empty ring) answers
 * through here, and the buffer is local-dynamic TLS (a __tls_get_addr call
 * per access), too big for the static TLS a dlopen'd libfab may use. */
extern _Thread_local uint8_t fab__msg_none __attribute__((tls_model("initial-exec")));
static inline int fab__err_none(int code)
{
	fab__msg_none = 1;
	return code;
}
/* As fab__err for FAB_ESYS, appending strerror(errno). */
int fab__errno(const char *what);

/* ---- util.c ---- */
extern _Atomic unsigned fab__fork_gen; /* bumped in every child after fork() */
extern int fab__mb_ok, fab__mb_registered;
void fab__membarrier(void); /* sleeper half of the asymmetric Dekker handshake */
int fab__name_ok(const char *name);
int fab__opts_tail(const void *opts, uint32_t size, size_t known, const char *what);
int fab__chan_opts_in(const fab_chan_opts *o, fab_chan_opts *out);
void fab__out_struct(void *out, const void *ours, size_t ours_size);
int64_t fab__now_ns(void);              /* CLOCK_MONOTONIC */
int64_t fab__realtime_ns(void);
uint64_t fab__random64(void);
/* 1 if process pid maps the shm object (dev, ino), 0 if not, -1 if its
 * /proc/<pid>/maps cannot be read or lists nothing. */
int fab__proc_maps_object(int pid, uint64_t dev, uint64_t ino);

/* ---- shm.c ---- */
typedef struct fab__seg {
	void *base;
	size_t size;
	int fd;
	/* The shm object's identity: two handles map the same segment at
	 * different addresses, and only this tells them apart from two
	 * segments (a mapped object keeps its inode; it is not reused). */
	uint64_t dev, ino;
	unsigned mode; /* its permission bits (st_mode & 0777) */
	uint32_t uid, gid; /* its owner and group */
} fab__seg;
/* Create path exclusively with exactly `mode`; gid >= 0: give it that group
 * (a shared fabric's, so its members get the group bits; a failure to, when
 * the caller is not in that group, leaves the caller's). */
int fab__seg_create(const char *path, size_t size, unsigned mode, long gid, fab__seg *seg);
/* May this process unlink the segment `path` ("/fab...")?  /dev/shm is
 * sticky: only the segment's owner, root or the directory's owner may.
 * True also when it is gone; false with its owner in *owner. */
bool fab__seg_unlinkable(const char *path, uint32_t *owner);
/* A fabric mode (FAB_MODE): owner rw; group and others each rw, r or none. */
static inline bool fab__mode_ok(unsigned m)
{
	unsigned g = (m >> 3) & 7u, o = m & 7u;
	return (m & 0700) == 0600 && (g == 0 || g == 4 || g == 6) && (o == 0 || o == 4 || o == 6);
}
int fab__seg_open(const char *path, size_t min_size, bool populate, fab__seg *seg);
void fab__seg_unmap(fab__seg *seg);
static inline bool fab__seg_same(const fab__seg *a, const fab__seg *b)
{
	return a->base == b->base || (a->ino == b->ino && a->dev == b->dev);
}
int fab__seg_wait_version(_Atomic uint32_t *version, uint32_t *out);

/* ---- fabric.c / proc.c ---- */
struct fab_fabric {
	unsigned fork_gen;
	_Atomic int refs; /* the user's handle + one per channel/context handle */
	bool user_closed;
	char name[FAB_NAME_MAX + 1];
	fab__seg ctl;
	fab_ctl_hdr *hdr;
	fab_proc_ent *procs;
	fab_chan_ent *chans;
	fab_ctx_ent *ctxs;
	fab_lim_ent *lims;
	fab_hist *lhists; /* limiter wait histograms */
	uint32_t proc_idx;
	uint32_t tag; /* our owner tag */
	/* The descriptor holding our entry's liveness lock (proc.c), in the
	 * fork handler's registry; -1 none */
	int live_fd;
	/* The control segment's permission bits: the mode of the channels and
	 * topics created in this fabric without one (fab_fabric_open FAB_MODE) */
	unsigned mode;
};

int fab__fabric_valid(fab_fabric *fab);
/* The common checks of a call that names an object in a fabric: out not
 * NULL, the fabric handle valid, the name well-formed ("channel", ...). */
int fab__named_args(fab_fabric *fab, const char *name, const void *out, const char *what);
/* A create through fab's handle would leave a segment no fabric lists:
 * fab_fabric_destroy has begun.  FAB_ENOENT (with the detail), or 0. */
int fab__fabric_gone(fab_fabric *fab);
/* After a create's fab__seg_create of path: 0, or (the fabric destroyed
 * meanwhile) the segment unmapped, unlinked unless the destroyer did, and
 * fab__fabric_gone's FAB_ENOENT. */
int fab__seg_created_in(fab_fabric *fab, const char *path, fab__seg *seg);
void fab__fabric_ref(fab_fabric *fab);
void fab__fabric_unref(fab_fabric *fab);
int fab__proc_claim(fab_fabric *fab);
void fab__proc_release(fab_fabric *fab);
/* 1 if the owner tag names a live process, 0 if dead (or entry re-claimed). */
int fab__tag_alive(fab_fabric *fab, uint32_t tag);
/* The descriptor for this handle's liveness lock (proc.c): fab->live_fd
 * gets it (-1: none to be had, the registry of this process is full); 0,
 * or an error code (the open fails). */
int fab__live_open(fab_fabric *fab, int *rc);
/* Close it (fab->live_fd -1 after). */
void fab__live_drop(fab_fabric *fab);
/* Is process-table entry idx's liveness lock held (proc.c)? */
int fab__live_held(fab_fabric *fab, uint32_t idx);
/* In the child after fork: give up the inherited liveness locks. */
void fab__live_forget_all(void);
/* pthread_atfork prepare and parent handlers (no fork while a lock
 * descriptor is opened and not yet registered). */
void fab__live_fork_prepare(void);
void fab__live_fork_parent(void);
int fab__entry_alive(fab_fabric *fab, fab_proc_ent *e, uint64_t sg);
void fab__chan_path(char *buf, size_t n, const char *fabric, const char *chan);

/* ---- wait.c ---- */
/* A set of futex words to sleep on, plus an absolute deadline
 * (FUTEX_WAITV_MAX words: a full select plus its context chain). */
#define FAB__WAIT_MAX 128
typedef struct fab__waitset {
	_Atomic uint32_t *word[FAB__WAIT_MAX];
	uint32_t val[FAB__WAIT_MAX];
	int n;
	int64_t deadline_ns; /* CLOCK_MONOTONIC absolute; INT64_MAX = none */
} fab__waitset;
/* Sleep until a word changes, a wake arrives, or the deadline passes.
 * Returns 0 (woken or spurious), FAB_ETIMEDOUT, or FAB_ESYS. */
int fab__futex_waitv(fab__waitset *ws);
void fab__futex_wake(_Atomic uint32_t *word, int n);

/*
 * The sleep/wake protocol of every wait word (channels, topics, limiters):
 * bits 1..31 a sequence, bit 0 "sleepers present".  A sleeper calls
 * fab__sleep_announce, takes its last look at the condition, then sleeps
 * on the returned value; a waker publishes its change, then calls
 * fab__wake_word, whose fast path is a compiler barrier and one plain load.
 */
uint32_t fab__sleep_announce(_Atomic uint32_t *word);
static inline int fab__wake_word(_Atomic uint32_t *word)
{
	/* The waker's publication is ordered before the read of the word.
	 * Pairs with fab__sleep_announce's seq_cst fetch_or and membarrier:
	 * either the sleeper's last look sees our publication or we see its
	 * bit.  Registered for membarrier, a compiler barrier suffices here
	 * (util.c); otherwise a full fence. */
	if (__builtin_expect(fab__mb_registered, 1))
		atomic_signal_fence(memory_order_seq_cst);
	else
		atomic_thread_fence(memory_order_seq_cst);
	uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
	while (__builtin_expect(w & 1u, 0)) {
		/* w + 1 clears the bit and advances the sequence.  Release: a
		 * sleeper that sees the new value sees our publication. */
		if (atomic_compare_exchange_weak_explicit(word, &w, w + 1, memory_order_release,
							  memory_order_relaxed)) {
			fab__futex_wake(word, 0x7fffffff);
			return 1;
		}
	}
	return 0;
}

/* ---- activity and wait records, histograms (wait.c) ---- */
/* The watchdog's pulse: one more library call.  The counter's line is
 * written only by this process (fabd reads it now and then), so this is a
 * plain load and store of an L1-resident word. */
static inline void fab__pulse(_Atomic uint64_t *calls)
{
	store_relaxed(calls, load_relaxed(calls) + 1);
}
static inline _Atomic uint64_t *fab__calls(fab_fabric *fab)
{
	return &fab->procs[fab->proc_idx].calls;
}
/* Record what this process sleeps on (FAB_WAIT_MAKE) from now; clear it
 * when the sleep ends.  Called on slow paths only, before a futex sleep. */
void fab__wait_mark(fab_fabric *fab, uint64_t what);
void fab__wait_unmark(fab_fabric *fab, uint64_t what);
/* One observation of ns nanoseconds (negative counts as 0). */
void fab__hist_add(fab_hist *h, int64_t ns);
/* A handle's private tally of observations for one shared histogram,
 * added to it in one go (fab__hist_flush) every FAB__HIST_BATCH
 * observations, before the handle sleeps, and at release: the shared line
 * is written once per batch instead of three RMWs per message. */
#define FAB__HIST_BATCH 64
typedef struct fab__hist_local {
	uint64_t b[FAB_HIST_BUCKETS + 1];
	uint64_t sum_ns;
	uint32_t n;
} fab__hist_local;
void fab__hist_note(fab__hist_local *l, fab_hist *h, int64_t ns);
void fab__hist_flush(fab__hist_local *l, fab_hist *h);
/* The origin time of the message this thread last received on an
 * at-least-once channel (0 = none: a send stamps now). */
extern _Thread_local int64_t fab__origin_ns __attribute__((tls_model("initial-exec")));

/* ---- ctx.c ---- */
#define FAB__CTX_SHARED 1
#define FAB__CTX_LOCAL 2
struct fab_ctx {
	int type;
	unsigned fork_gen;
	/* The user's handle + one per local context made under this one: a
	 * parent released before its children stays allocated until the
	 * last of them is released (a binding's garbage collector frees in
	 * any order; found by a binding trial). */
	_Atomic int refs;
	bool released; /* the user's reference is gone: a second release while
			  children keep it allocated is ignored (after the
			  free, it is a use of a freed handle, as anywhere) */
	fab_ctx *parent;      /* local contexts: the parent (may be NULL), referenced */
	fab_fabric *fab;      /* shared contexts */
	uint32_t idx;         /* shared: table index */
	uint64_t gen;         /* shared: entry generation at open */
	int64_t deadline_ns;  /* local: INT64_MAX = none */
	_Atomic uint32_t cancel; /* local: futex word, same encoding as shared */
	_Atomic int32_t reason;
	int64_t end_ns;
};
int fab__ctx_valid(fab_ctx *ctx);
int fab__ctx_fail(int code); /* set this thread's message for a context end */
/* 0 while the context (and its ancestors) are live, else FAB_ECANCELED /
 * FAB_ETIMEDOUT.  NULL is never done. */
int fab__ctx_done(fab_ctx *ctx);
/* Add the context chain's futex words and earliest deadline to a wait set. */
void fab__ctx_arm(fab_ctx *ctx, fab__waitset *ws);

/* ---- channels (chan.c, ring_*.c) ---- */
typedef struct fab_chan_hdr fab_chan_hdr;

struct fab_chan {
	unsigned fork_gen;
	unsigned role;
	fab_fabric *fab;
	fab__seg seg;
	fab_chan_hdr *hdr;
	/* copies of the immutable header, validated once at open */
	uint32_t ring, kind, capacity, msg_size, slot_size, nslots, mask;
	uint32_t cap_eff; /* max(capacity, 1): how many positions may be in flight */
	uint32_t attach_max;
	_Atomic uint64_t *attach;
	uint8_t *ents;       /* spsc: commit word of slot 0 */
	uint32_t ent_stride; /* spsc: bytes between commit words (8 or slot_size) */
	uint32_t payload_off; /* spsc: payload offset within a slot (0 or 8) */
	uint8_t *slots;      /* slot area */
	int attach_idx;      /* our attach-table entry, -1 none */
	uint64_t end_word;   /* spsc end we hold (sender or receiver), 0 none */
	uint64_t producer_id;
	bool closed_local;   /* this producer already closed */
	uint32_t serial;
	uint32_t reg_idx;         /* registry index (wait records), ~0 if not found */
	fab__hist_local lat;      /* pipeline latencies of our acks, not yet in the header */
	_Atomic uint64_t *calls;  /* our process entry's pulse */
	/* spsc private cursors (valid while we hold the end) */
	uint64_t tail_local, send_limit; /* positions < send_limit have room */
	uint64_t head_local;
	uint64_t head_cache; /* mpmc senders: last head seen */
	int64_t pass_check_ns; /* mpmc senders: next liveness look at a held slot's holder */
	/* zero-copy state */
	bool reserved;
	uint64_t reserved_pos;
	size_t reserved_len;
	fab_ctx *reserve_ctx;
	bool acquired;
	uint64_t acquired_pos;
	/* adaptive spin budget (iterations) */
	uint32_t spin_send, spin_recv;
	/* at-least-once */
	uint32_t delivery;       /* FAB_AT_MOST_ONCE | FAB_AT_LEAST_ONCE */
	uint32_t mhdr;           /* mpmc slot header bytes: 16, or 32 at-least-once */
	uint32_t max_inflight, max_deliveries;
	char dead_letter[FAB_NAME_MAX + 1];
	uint64_t *leases;        /* positions we hold, oldest first (a ring) */
	uint32_t lease_first, nleases;
	bool have_info;          /* info describes the last message received */
	fab_msg_info info;
	char name[FAB_NAME_MAX + 1];
};

/* Result of one non-blocking ring attempt when it cannot proceed. */
typedef struct fab__block {
	uint32_t behind_tag; /* nonzero: blocked behind a slot held by this owner */
} fab__block;

/* spsc ring (ring_spsc.c; the fast paths are inline in ring_spsc.h) */
int fab__spsc_room_slow(fab_chan *ch, uint64_t p);
int fab__spsc_empty(fab_chan *ch, uint64_t h, uint64_t e);
ssize_t fab__spsc_bad_len(fab_chan *ch, uint64_t h, uint32_t len);
uint64_t fab__spsc_find_tail(fab_chan *ch);
void fab__spsc_hint_tail(fab_chan *ch, uint64_t t);
uint64_t fab__spsc_find_head(fab_chan *ch);
void fab__spsc_init(uint8_t *ents, uint32_t stride, uint32_t nslots, uint64_t start);
int fab__spsc_validate(fab_chan *ch);

/* mpmc ring (ring_mpmc.c) */
int fab__mpmc_claim(fab_chan *ch, uint64_t *pos, fab__block *blk);
void fab__mpmc_fill(fab_chan *ch, uint64_t pos, const void *msg, size_t len);
int fab__mpmc_commit(fab_chan *ch, uint64_t pos, size_t len);
void fab__mpmc_skip(fab_chan *ch, uint64_t pos, uint32_t state_from);
/* as: FAB_SLOT_READING (a copy, freed at once) or FAB_SLOT_HELD (kept past
 * the call: acquire, lease; producers pass it) */
int fab__mpmc_take(fab_chan *ch, uint64_t *pos, size_t cap, fab__block *blk, uint32_t as);
int fab__mpmc_unhold(fab_chan *ch, uint64_t pos);    /* release / ack a HELD slot */
int fab__mpmc_give_back(fab_chan *ch, uint64_t pos); /* nack a HELD lease: 1 done */
void *fab__mpmc_slot_payload(fab_chan *ch, uint64_t pos);
const void *fab__mpmc_payload(fab_chan *ch, uint64_t pos, size_t *len);
void fab__mpmc_free(fab_chan *ch, uint64_t pos);
int fab__mpmc_taken(fab_chan *ch, uint64_t pos); /* rendezvous: 1 once a receiver took pos */
int fab__mpmc_withdraw(fab_chan *ch, uint64_t pos);
uint64_t fab__mpmc_recover(fab_chan *ch, fab_fabric *fab, int only_tag);
/* at-least-once: take a given-back message waiting behind head; give a
 * lease back (word = the exact READING/RETURNING word seen; 1 if we did);
 * finish a lease (ack) */
int fab__mpmc_take_returned(fab_chan *ch, uint64_t *pos, size_t cap, fab__block *blk);
int fab__mpmc_return(fab_chan *ch, uint64_t pos, uint64_t word);
int fab__mpmc_ack(fab_chan *ch, uint64_t pos);
/* leases outstanding in [redo_low, head) that are not in ch's own list,
 * the first such owner in *tag; for "closed and drained" */
uint64_t fab__mpmc_foreign_leases(fab_chan *ch, uint32_t *tag);
uint64_t fab__mpmc_lessees(fab_chan *ch, bool check, uint32_t *dead);
uint64_t fab__mpmc_leased(fab_chan *ch); /* HELD slots now (stats) */
/* positions in [head, tail) where senders passed a held slot (counted in
 * `skipped` already, not yet passed by head): stats add them back, len
 * leaves them out; given_back: also those where a passed lease was given
 * back (a message again: len counts it, received does not) */
uint64_t fab__mpmc_passed_ahead(fab_chan *ch, bool given_back);
uint64_t fab__mpmc_returned_now(fab_chan *ch); /* given back, waiting (len, stats) */
/* The `returned` word: the low 32 bits count given-back messages not yet
 * taken again (a gauge: receivers scan behind head while it is not 0); the
 * high 32 bits count give-backs (an epoch), so that a scanner's reset from
 * a stale reading fails after any give-back, however many takes brought
 * the count back to the value it read (docs/delivery.md "The gauge"). */
#define FAB__RET_GIVE (((uint64_t)1 << 32) | 1u)
#define FAB__RET_COUNT(v) ((uint32_t)(v))
void fab__mpmc_returned_taken(fab_chan *ch); /* a given-back message was taken */
int fab__mpmc_validate(fab_chan *ch);

/* wake the other side if someone announced a sleep (Dekker, waker half) */
void fab__wake_receivers(fab_chan *ch);
void fab__wake_senders(fab_chan *ch);
void fab__wake_all(fab_chan_hdr *h);

/* select's view of one case (chan.c): validate and take spsc ends; one
 * non-blocking attempt (FAB_EAGAIN, or 0 with c->result set, which may be a
 * negative code such as FAB_ECLOSED); the word a sleeper watches and its
 * waiter gauge; announce/withdraw a waiting unbuffered receiver; repair a
 * channel a dead owner blocks. */
int fab__case_prepare(fab_case *c);
int fab__alo_begin_recv(fab_chan *ch); /* the implicit ack of a receive call */
int fab__case_try(fab_case *c, uint32_t self_ready, fab__block *blk);
_Atomic uint32_t *fab__case_word(fab_case *c, _Atomic uint32_t **waiters);
bool fab__case_ready(fab_case *c, bool on); /* on: true if counted; undo only those */
bool fab__send_sleeper(fab_chan *ch); /* unbuffered: a sender asleep with nothing published */
/* An unbuffered offer's wait (a non-blocking send for its taker, a
 * non-blocking receive for a select's offer): FAB__OFFER_NS at most. */
#define FAB__OFFER_NS 2000000
/* Between the looks i and i + 1 of such a wait: a pause, every 64th look
 * a yield instead; false once `until` has passed (checked at the yields). */
static inline bool fab__offer_wait(uint32_t i, int64_t until)
{
	if ((i & 63) != 63) {
		cpu_relax();
		return true;
	}
	if (fab__now_ns() > until)
		return false;
	sched_yield();
	return true;
}
void fab__send_sleeper_reap(fab_chan *ch); /* recover dead handles carrying the offer mark */
void fab__case_recover(fab_case *c, uint32_t dead_tag);

/* A producer id's 64-bit identity in the close quorum (FNV-1a of the
 * string; never 0): FAB_PRODUCER_ID, fab_stage_open, fab_chan_close_as,
 * fab_chan_rejoin_as. */
uint64_t fab__producer_hash(const char *id);
#define FAB__PRODUCER_ID_MAX 128 /* bytes of a producer id (FAB_PRODUCER_ID) */

/* the registry of channels and topics (one namespace) */
int fab__reg_find(fab_fabric *fab, const char *name); /* index or -1 */
int fab__reg_name_free(fab_fabric *fab, const char *name); /* 0, or FAB_EEXIST */
fab_chan_ent *fab__reg_claim(fab_fabric *fab, const char *name, uint32_t type);
/* Claim a FREE registry, context or limiter entry for this handle (since
 * 1.6.1): our tag first, by CAS of `owner` from 0, then `state` FREE ->
 * CREATING, so a CREATING entry always names its creator and recovery can
 * settle it when that creator is dead.  A dead tag left on a free entry is
 * cleared; a live one (a claim in progress) makes us pass the entry.  true
 * when the entry is ours (fab__reg_claim in chan.c explains the history). */
bool fab__ent_claim(fab_fabric *fab, _Atomic uint32_t *state, _Atomic uint32_t *owner);
/* A segment `path` of our name found by a create (FAB_EEXIST) that no other
 * registry entry names: left by a destroy or a recovery killed between
 * freeing the entry and removing the segment, and it made the name
 * "already exist" for good (found by review, 1.6.1).  Removed (if we may),
 * so the create can retry: true.  `ours` is the create's own entry. */
bool fab__seg_orphan(fab_fabric *fab, const fab_chan_ent *ours, const char *name,
		     const char *path);
/* Clear our tag from an entry we claimed, after storing its FREE: a CAS
 * from our tag, so a later claimer's is never cleared. */
static inline void fab__ent_unown(_Atomic uint32_t *owner, uint32_t tag)
{
	cas(owner, &tag, 0);
}

/* channel mapping shared by chan.c and recover.c */
int fab__chan_map(fab_fabric *fab, const char *name, fab_chan *ch);
void fab__chan_unmap(fab_chan *ch);
uint64_t fab__chan_recover(fab_chan *ch, fab_fabric *fab, uint32_t dead_tag);
/* Take one count out of a blocked gauge for a cleared attach word's sleep
 * mark; never below 0 (a scribbled word must not wrap the gauge).  Relaxed,
 * as every change of a gauge. */
static inline void fab__gauge_dec(_Atomic uint32_t *g)
{
	uint32_t v = atomic_load_explicit(g, memory_order_relaxed);
	while (v > 0 && !atomic_compare_exchange_weak_explicit(g, &v, v - 1, memory_order_relaxed,
							       memory_order_relaxed))
		;
}
/* An attach word w has just been cleared (by the one CAS that may: its
 * handle's release, or recovery of its dead owner): take the waiting
 * receivers (FAB_ATT_READY, chan.c "Waiting unbuffered receivers") and the
 * sleepers (FAB_ATT_SLEEP_*, chan.c "The sleep marks") it counted out of
 * the header, exactly once.  seq_cst for recv_ready, as the receivers' own
 * decrements. */
static inline void fab__att_cleared(fab_chan_hdr *h, uint64_t w)
{
	if (FAB_ATT_READY(w))
		atomic_fetch_sub_explicit(&h->recv_ready, FAB_ATT_READY(w), memory_order_seq_cst);
	if (w & FAB_ATT_SLEEP_SEND)
		fab__gauge_dec(&h->send_waiters);
	if (w & FAB_ATT_SLEEP_RECV)
		fab__gauge_dec(&h->recv_waiters);
}
/* a sleeper's mark in its attach word (chan.c, layout.h FAB_ATT_SLEEP_*) */
bool fab__sleep_mark(fab_chan *ch, uint64_t mark);
bool fab__sleep_unmark(fab_chan *ch, uint64_t mark);
int fab__chan_close_settle(fab_chan_hdr *h); /* finish a close the quorum reached */
void fab__ctx_recover(fab_fabric *fab);    /* finish cancels a dead canceller began */
void fab__lim_recover(fab_fabric *fab);    /* break dead set() locks, redo lost wakes */

/* ---- topics (topic.c) ---- */
/* fab_fabric_recover's hook for registry entry e (state st, validated
 * name) of type FAB_OBJ_TOPIC: settle a creation whose creator died, turn
 * slots held by dead publishers into SKIP and prune dead subscribers.
 * Returns how many objects changed, or -1 if the segment is a channel's (a
 * stale type word): then the caller treats the entry as a channel. */
/* A dead process's wait record said it slept publishing on the topic at
 * registry index reg_idx since slept_ns (CLOCK_MONOTONIC): take it out of
 * that topic's space_waiters, unless the topic there now was created
 * after (once: called by the recoverer whose CAS freed the entry). */
void fab__topic_uncount_publisher(fab_fabric *fab, uint32_t reg_idx, int64_t slept_ns);
/* A failure to map a segment that a later try may not meet (no free
 * descriptor, no memory): code rc, errno err as the map left it.  Anything
 * else (removed, corrupt, another version, another user's 0600 segment) is
 * permanent for this process, and recovery skips it as before. */
static inline bool fab__passing_failure(int rc, int err)
{
	return rc == FAB_ENOMEM ||
	       (rc == FAB_ESYS && (err == EMFILE || err == ENFILE || err == ENOMEM ||
				   err == EAGAIN || err == EINTR));
}
/* *fail: set (if 0) to the code of a passing failure (a map that failed for
 * want of fds or memory), so the caller keeps the dead processes' entries. */
int fab__topic_recover(fab_fabric *fab, fab_chan_ent *e, uint32_t st, const char *name, int *fail);
/* Check a topic's invariants (topic.c file comment); 0 or FAB_ECORRUPT. */
int fab__topic_validate(fab_topic *t);

#endif /* FAB_INTERNAL_H */
