/*
 * fab.h - the one public C ABI of libfab, a shared-memory message fabric with
 * Go's channel semantics across processes.
 *
 * Everything here is an opaque handle, a flag, an error code or a small struct
 * that carries its own size in its first field (so the ABI can grow).  No
 * inline functions: a binding (ctypes, cgo, Rust FFI) needs nothing but the
 * exported symbols and the structs below.
 *
 * Conventions:
 *   - Calls that can fail return int (or ssize_t): 0 or a length on success,
 *     a negative FAB_E* code on failure.  fab_strerror() names a code and
 *     fab_errmsg() gives this thread's detail for the last failure.
 *   - Blocking calls take a fab_ctx * (NULL = wait forever, not cancellable).
 *   - A handle belongs to the process that opened it; after fork() the
 *     child's inherited handles return FAB_EINVAL (release functions only free
 *     the child's local memory).  NULL handles return FAB_EINVAL.
 *   - A handle may be used by one thread at a time; open one per thread to
 *     send or receive from several threads.
 *
 * See docs/ and the man pages for the full contract of each call.
 */
#ifndef FAB_FAB_H
#define FAB_FAB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FAB_VERSION_MAJOR 1
#define FAB_VERSION_MINOR 6
#define FAB_VERSION_PATCH 1

/*
 * Error codes.  One table generates the values, fab_strerror() and the names
 * returned by fab_errname(), so they never drift apart.
 */
#define FAB_ERRNO_MAP(X)                                                         \
	X(EAGAIN, -1, "operation would block")                                   \
	X(ETIMEDOUT, -2, "deadline exceeded")                                    \
	X(ECANCELED, -3, "context canceled")                                     \
	X(ECLOSED, -4, "channel closed")                                         \
	X(EMSGSIZE, -5, "message too large for channel or buffer")               \
	X(EINVAL, -6, "invalid argument or handle")                              \
	X(ENOENT, -7, "no such fabric, channel or context")                      \
	X(EEXIST, -8, "already exists")                                          \
	X(EPERM, -9, "operation not permitted")                                  \
	X(ECORRUPT, -10, "shared segment failed validation")                     \
	X(EVERSION, -11, "shared segment has an incompatible layout version")    \
	X(EBUSY, -12, "spsc end already attached")                               \
	X(ENOMEM, -13, "out of memory or table full")                            \
	X(ESYS, -14, "system call failed (see errno)")

enum fab_errno {
#define FAB__ERR_ENUM(name, val, text) FAB_##name = (val),
	FAB_ERRNO_MAP(FAB__ERR_ENUM)
#undef FAB__ERR_ENUM
};

/* fab_fabric_open flags */
#define FAB_CREATE 0x1u /* create the fabric if it does not exist */
/* Since 1.5: the permission bits of a fabric this call creates, e.g.
 * FAB_CREATE | FAB_MODE(0660) to share it with the creator's group (default
 * 0600); also the mode of channels and topics its owner later creates in it
 * without one.  Applied only when the call creates the fabric. */
#define FAB_MODE(m) (((unsigned)(m) & 0777u) << 16)

/* channel roles (a bit mask) */
#define FAB_SEND 0x1u
#define FAB_RECV 0x2u

/* channel kinds; 0 means the default, FAB_MPMC */
#define FAB_MPMC 1u
#define FAB_SPSC 2u

/* delivery; 0 means the default, FAB_AT_MOST_ONCE */
#define FAB_AT_MOST_ONCE 1u
#define FAB_AT_LEAST_ONCE 2u

/* topic subscription policies */
#define FAB_SUB_BLOCK 1u
#define FAB_SUB_DROP 2u

/* select */
#define FAB_OP_SEND 1u
#define FAB_OP_RECV 2u
#define FAB_NONBLOCK 0x1u
#define FAB_SELECT_MAX 64

/* limits */
#define FAB_NAME_MAX 48           /* [A-Za-z0-9_-]{1,48} */
#define FAB_MSG_SIZE_MAX (1u << 24) /* 16 MiB per message */
#define FAB_CAPACITY_MAX (1u << 24) /* 16 M messages per channel */
#define FAB_PRODUCERS_MAX 64      /* close quorum upper bound */

typedef struct fab_fabric fab_fabric;
typedef struct fab_chan fab_chan;
typedef struct fab_ctx fab_ctx;
typedef struct fab_limiter fab_limiter;
typedef struct fab_topic fab_topic;
typedef struct fab_sub fab_sub;
typedef struct fab_stage fab_stage;

typedef struct fab_chan_opts {
	uint32_t size;           /* sizeof(fab_chan_opts) */
	uint32_t capacity;       /* exact; 0 = unbuffered (rendezvous) */
	uint32_t msg_size;       /* max bytes of one message; 0 allowed */
	uint32_t kind;           /* FAB_SPSC | FAB_MPMC (0: FAB_MPMC) */
	uint32_t delivery;       /* FAB_AT_MOST_ONCE (default) | FAB_AT_LEAST_ONCE */
	uint32_t producers;      /* close quorum (default 1) */
	uint32_t max_inflight;   /* leases per consumer handle (default 1) */
	uint32_t max_deliveries; /* then dead-lettered (default 5) */
	const char *dead_letter; /* channel name, or NULL */
	uint32_t mode;           /* permission bits (default: the fabric's, 0600
				    unless created with FAB_MODE) */
} fab_chan_opts;

typedef struct fab_msg_info {
	uint32_t size;
	uint32_t redelivered;
	uint32_t deliveries;
	int64_t enqueue_ns; /* CLOCK_MONOTONIC when it was sent */
	int64_t origin_ns;  /* when its chain started (pipeline latency) */
} fab_msg_info;

/* A snapshot of a channel's counters, read from its segment. */
typedef struct fab_stats {
	uint32_t size;            /* sizeof(fab_stats), set by the caller */
	uint32_t kind;            /* FAB_SPSC | FAB_MPMC */
	uint32_t delivery;        /* FAB_AT_MOST_ONCE | FAB_AT_LEAST_ONCE */
	uint32_t capacity;        /* as created */
	uint32_t msg_size;        /* as created */
	uint32_t producers;       /* close quorum */
	uint32_t closes;          /* distinct producers that closed so far */
	uint32_t closed;          /* 1 once the quorum closed */
	uint32_t senders;         /* handles attached with FAB_SEND now */
	uint32_t receivers;       /* handles attached with FAB_RECV now */
	uint32_t blocked_senders; /* sleeping or about to sleep now */
	uint32_t blocked_receivers;
	uint64_t len;             /* messages queued now */
	uint64_t sent;            /* messages committed since creation */
	uint64_t received;        /* messages taken since creation */
	uint64_t futex_waits;     /* times a caller slept on this channel */
	uint64_t futex_wakes;     /* FUTEX_WAKE calls issued for this channel */
	uint64_t recovered;       /* slots reclaimed from dead processes */
	/* at-least-once (0 on other channels), since 1.1 */
	uint64_t leased;          /* messages leased to receivers now */
	uint64_t acked;           /* leases finished by ack (explicit or implicit) */
	uint64_t nacked;          /* leases given back by fab_nack */
	uint64_t redelivered;     /* deliveries of a message given back before */
	uint64_t dead_lettered;   /* poison messages moved to the dead-letter channel */
	uint64_t dead_dropped;    /* poison messages with nowhere to go: dropped */
	uint64_t resv[2];
} fab_stats;

/* One message of a batch: for sends base/len is the message; for receives
 * base/len is the buffer on input and len the message length on output. */
typedef struct fab_iov {
	void *base;
	size_t len;
} fab_iov;

/* One case of fab_select (fixed for ABI major 1). */
typedef struct fab_case {
	fab_chan *ch;
	unsigned op; /* FAB_OP_SEND | FAB_OP_RECV */
	const void *send_msg;
	size_t send_len;
	void *recv_buf;
	size_t recv_cap;
	ssize_t result;
	uint64_t resv[2];
} fab_case;

/* errors */
const char *fab_strerror(int code);
const char *fab_errname(int code);  /* "FAB_ECLOSED" */
const char *fab_errmsg(void);       /* this thread's detail of the last error */
const char *fab_version(void);

/* fabrics */
int fab_fabric_open(const char *name, unsigned flags, fab_fabric **out);
void fab_fabric_close(fab_fabric *fab);
int fab_fabric_destroy(const char *name);
int fab_fabric_recover(fab_fabric *fab);

/* channels */
int fab_chan_create(fab_fabric *fab, const char *name, const fab_chan_opts *opts,
		    fab_chan **out);
int fab_chan_open(fab_fabric *fab, const char *name, unsigned role, fab_chan **out);
void fab_chan_release(fab_chan *ch);
int fab_chan_close(fab_chan *ch);
/* (since 1.2) Close as the producer named `producer` (the id a stage gets
 * from FAB_PRODUCER_ID, e.g. "worker.3"): a supervisor closing for a
 * replica that died.  The handle's own identity is unchanged; a producer
 * that already closed gets FAB_ECLOSED and is not counted twice. */
int fab_chan_close_as(fab_chan *ch, const char *producer);
/* (since 1.3) Withdraw the close of the producer named `producer`, unless
 * the channel is closed: a supervisor about to run that producer again (a
 * replica restarted or scaled up under the same id, whose predecessor had
 * closed).  0: its share of the quorum is open (now, or it never closed);
 * FAB_ECLOSED: the quorum was reached, the close is final.  No process of
 * that producer may run meanwhile. */
int fab_chan_rejoin_as(fab_chan *ch, const char *producer);
int fab_chan_destroy(fab_fabric *fab, const char *name);
size_t fab_chan_len(fab_chan *ch);
size_t fab_chan_cap(fab_chan *ch);
int fab_chan_stats(fab_chan *ch, fab_stats *st);

int fab_send(fab_chan *ch, const void *msg, size_t len, fab_ctx *ctx);
int fab_try_send(fab_chan *ch, const void *msg, size_t len);
ssize_t fab_recv(fab_chan *ch, void *buf, size_t cap, fab_ctx *ctx);
ssize_t fab_try_recv(fab_chan *ch, void *buf, size_t cap);

int fab_send_reserve(fab_chan *ch, size_t len, void **slot, fab_ctx *ctx);
int fab_send_commit(fab_chan *ch, size_t len);
int fab_recv_acquire(fab_chan *ch, const void **msg, size_t *len, fab_ctx *ctx);
int fab_recv_release(fab_chan *ch);

/* Sends msgs[0..n) in order; blocks only until the first can be sent, then
 * sends as many as fit without blocking.  Returns how many were sent (>= 1),
 * or a negative code if none was. */
int fab_send_batch(fab_chan *ch, const fab_iov *msgs, unsigned n, fab_ctx *ctx);
/* Receives up to n messages; blocks only until the first is available.
 * Returns how many were received (>= 1) with each msgs[i].len set, or a
 * negative code if none was. */
int fab_recv_batch(fab_chan *ch, fab_iov *msgs, unsigned n, fab_ctx *ctx);

/* contexts */
int fab_ctx_create(fab_fabric *fab, const char *name, fab_ctx *parent, fab_ctx **out);
int fab_ctx_open(fab_fabric *fab, const char *name, fab_ctx **out);
int fab_ctx_with_timeout(fab_ctx *parent, int64_t ns, fab_ctx **out);
int fab_ctx_cancel(fab_ctx *ctx, int reason);
int fab_ctx_err(fab_ctx *ctx);
int fab_ctx_reason(fab_ctx *ctx);
int fab_ctx_wait(fab_ctx *ctx);
void fab_ctx_release(fab_ctx *ctx);

/* at-least-once channels (since 1.1): the messages a receive call returns
 * (one, or a batch of at most max_inflight) are leased to the receiving
 * handle until fab_ack, fab_nack (give them back now) or the handle's next
 * receive call (implicit ack); both settle every lease the handle holds.
 * fab_recv_info describes the last message received through the handle. */
int fab_ack(fab_chan *ch);
int fab_nack(fab_chan *ch);
int fab_recv_info(fab_chan *ch, fab_msg_info *info);

/* select (since 1.1): Go's select over send and receive cases.  Returns the
 * index of the case that proceeded (its `result` holds the received length,
 * 0 for a send, or FAB_ECLOSED), FAB_EAGAIN under FAB_NONBLOCK when no case
 * is ready, the context's error, or another negative code. */
int fab_select(fab_case *cases, int n, fab_ctx *ctx, unsigned flags);

/* limiters (since 1.1): a token bucket (GCRA) shared by every process that
 * opens it; a new limiter starts full (burst tokens). */
int fab_limiter_create(fab_fabric *fab, const char *name, double rate_per_s, uint32_t burst,
		       fab_limiter **out);
int fab_limiter_open(fab_fabric *fab, const char *name, fab_limiter **out);
int fab_limiter_wait(fab_limiter *lim, uint32_t tokens, fab_ctx *ctx);
int fab_limiter_try(fab_limiter *lim, uint32_t tokens);
int fab_limiter_set(fab_limiter *lim, double rate_per_s, uint32_t burst);
void fab_limiter_release(fab_limiter *lim);

/* topics (since 1.1): broadcast; one ring, a cursor per subscriber. */
int fab_topic_create(fab_fabric *fab, const char *name, const fab_chan_opts *opts,
		     fab_topic **out);
int fab_topic_open(fab_fabric *fab, const char *name, fab_topic **out);
void fab_topic_release(fab_topic *topic);
int fab_topic_publish(fab_topic *topic, const void *msg, size_t len, fab_ctx *ctx);
int fab_topic_subscribe(fab_fabric *fab, const char *name, unsigned policy, fab_sub **out);
ssize_t fab_sub_recv(fab_sub *sub, void *buf, size_t cap, fab_ctx *ctx);
uint64_t fab_sub_dropped(fab_sub *sub);
void fab_sub_release(fab_sub *sub); /* a subscription starts at the next message published */

/* stages (since 1.1, docs/stage.md): a stage process reads the environment
 * a supervisor (fabd) sets -- FAB_FABRIC, FAB_STAGE, FAB_REPLICA, FAB_PORTS,
 * FAB_CTX, FAB_ERRORS, FAB_PRODUCER_ID -- and gets its ports' channels, its
 * context and an error channel.  A process started by hand with the same
 * environment is a stage too. */

/* The record fab_stage_error sends to the fabric's error channel: fixed
 * layout, little-endian, 384 bytes; `size` first so it can grow (a reader
 * accepts size >= the fields it knows). */
#define FAB_STAGE_ERR_TEXT_MAX 256 /* bytes of text incl. the NUL */
#define FAB_STAGE_ERR_TRUNCATED 0x1u /* flags: the text was cut to fit */
typedef struct fab_stage_err {
	uint32_t size;     /* sizeof(fab_stage_err) = 384 */
	uint32_t flags;    /* FAB_STAGE_ERR_TRUNCATED */
	int64_t time_ns;   /* CLOCK_REALTIME when reported */
	uint32_t pid;      /* the reporting process */
	uint32_t replica;  /* its replica index (FAB_REPLICA) */
	int32_t code;      /* the caller's code */
	uint32_t text_len; /* bytes of text before its NUL (< FAB_STAGE_ERR_TEXT_MAX) */
	char stage[64];    /* the stage's name, NUL-terminated */
	uint64_t resv[4];  /* zero */
	char text[FAB_STAGE_ERR_TEXT_MAX]; /* the formatted message, NUL-terminated */
} fab_stage_err;

int fab_stage_open(fab_stage **out);
fab_chan *fab_stage_in(fab_stage *st, const char *port);
fab_chan *fab_stage_out(fab_stage *st, const char *port);
fab_ctx *fab_stage_ctx(fab_stage *st);
int fab_stage_error(fab_stage *st, int code, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 3, 4)))
#endif
	;
void fab_stage_close(fab_stage *st);
/* (since 1.3) A supervisor marks replica `replica` (0..63) of stage `stage`
 * as being stopped in order to be run again (restarting != 0), or unmarks
 * it: while marked, that replica's fab_stage_close releases its handles
 * without closing its outputs (a restart is not the end of its sends).
 * Mark before signalling the replica; unmark before starting its next
 * process, or before a stop after which it must close (docs/stage.md). */
int fab_stage_restarting(fab_fabric *fab, const char *stage, uint32_t replica, int restarting);

#ifdef __cplusplus
}
#endif

#endif /* FAB_FAB_H */
