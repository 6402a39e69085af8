/*
 * bench.h - what the parts of fab-bench share: the description of one measured
 * run, the memory its processes share, the mechanisms' entry points, and the
 * small helpers (clock, spin hint, futex, histogram, record stamps) that every
 * mechanism uses so that all of them are measured the same way.
 *
 * A "run" is one mechanism measured once in one shape: a ping-pong, a
 * stream of messages from producers to consumers, a broadcast from one
 * publisher to subscribers that each get every message, or processes that
 * each call one operation in a loop (the cost of a call).  The parent
 * (run.c) sets it up, forks the processes, releases them together, waits
 * for them with a watchdog and collects what they wrote into struct shared.
 * fab_bench.c repeats runs in interleaved rounds and reports medians and
 * ratios.
 */
#ifndef FAB_BENCH_H
#define FAB_BENCH_H

#include <limits.h>
#include <mqueue.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/types.h>

#include <fab/fab.h>

#define BENCH_MAXSUB 16       /* subscribers of one broadcast */
#define BENCH_MAXCHILD (1 + BENCH_MAXSUB) /* processes of one run */
#define BENCH_MAXPROD 4       /* producers of one stream */
#define BENCH_PP_MSG 32       /* bytes of a ping-pong record */
#define BENCH_PP_CAP 64       /* depth of each ping-pong queue */
#define BENCH_ERRLEN 200

/* The top byte of a record's tag names its producer; BENCH_END ends a stream
 * for the baselines that have no close (one such record per consumer). */
#define BENCH_TAG_SHIFT 56
#define BENCH_SEQ_MASK ((UINT64_C(1) << BENCH_TAG_SHIFT) - 1)
#define BENCH_END UINT64_MAX

/* SHAPE_BCAST: slot 0 publishes, slots 1..ncons each receive every
 * message.  SHAPE_CALLS: nprod processes (ncons = 0) each call one
 * operation until the deadline; the figure is the time per call. */
enum bench_shape { SHAPE_PP, SHAPE_STREAM, SHAPE_BCAST, SHAPE_CALLS };

/* How a ping-pong waits: spinning on try_ calls, the library's default (spin
 * briefly, then sleep), or with a peer that delays each answer long enough
 * that the waiting side is always asleep when the message arrives.
 * MODE_IDLE is a stream in which nothing is sent: the consumer blocks on
 * the empty channel until the producer closes it at the deadline, and
 * reports the CPU time it used meanwhile. */
enum bench_mode { MODE_SPIN, MODE_DEFAULT, MODE_SLEEP, MODE_IDLE, MODE_SEL1, MODE_SEL4, MODE_BATCH };

enum bench_role { ROLE_PING, ROLE_PONG, ROLE_PROD, ROLE_CONS };

/* A ping-pong record.  t_send is the sender's clock just before it sent;
 * peer_lat is, in sleeping mode, the one-way latency the answering side
 * measured for the message it answers. */
struct pp_rec {
	uint64_t seq;
	int64_t t_send;
	int64_t peer_lat;
	uint64_t pad;
};
_Static_assert(sizeof(struct pp_rec) == BENCH_PP_MSG, "ping-pong record size");

/* What one child reports.  Slots: ping-pong 0 = initiator, 1 = responder;
 * streams 0..nprod-1 = producers, nprod.. = consumers (a broadcast has one
 * producer, the publisher, and its subscribers as consumers); calls
 * 0..nprod-1 = the callers (count = calls, t_start..t_end their loop). */
struct child_out {
	int32_t done;                  /* set once the fields below are final */
	char err[BENCH_ERRLEN];        /* why the child failed, if it did */
	int64_t t_start, t_end;        /* producer: first send; consumer: end seen */
	uint64_t count;                /* sent (producer), received (consumer),
					  round trips (ping-pong initiator) */
	uint64_t per_cnt[BENCH_MAXPROD]; /* consumer: messages from each producer */
	uint64_t per_sum[BENCH_MAXPROD]; /* consumer: sum of their sequence numbers */
	uint64_t p50_ns, p99_ns, samples; /* ping-pong initiator */
	/* run.pair_cl: the cache-line floor's blocks of the same run */
	uint64_t ref_p50_ns, ref_p99_ns, ref_samples;
	int64_t cpu_ns, wall_ns;       /* MODE_IDLE consumer: CPU used while blocked */
	uint64_t futex_waits, futex_wakes, fab_sent; /* fab's counters, or counted */
	int32_t have_futex;            /* futex_* above are meaningful */
	/* fab's at-least-once counters (fab_chan_stats), with have_futex */
	uint64_t fab_acked, fab_leased, fab_redelivered, fab_nacked;
};

/* The memory a run's processes share (MAP_SHARED, zeroed before each run). */
struct shared {
	_Atomic uint32_t ready;        /* children attached and waiting */
	_Atomic uint32_t go;           /* futex word: 1 = start */
	_Atomic uint32_t done;         /* producers that finished (baselines) */
	_Atomic uint32_t cons_left;    /* consumers still running (fab) */
	_Atomic uint32_t calls_left;   /* SHAPE_CALLS: callers still calling */
	int64_t deadline;              /* CLOCK_MONOTONIC ns: stop sending */
	struct child_out out[BENCH_MAXCHILD];

	/* The floors: one word each, alone on its 128-byte pair of lines. */
	_Alignas(128) _Atomic uint64_t cl_word;
	char cl_pad[120];
	/* The two-line floor: one line per direction, [seq, record]. */
	_Alignas(128) _Atomic uint64_t l2_word[2][16];
	_Alignas(128) _Atomic uint32_t fx_word;
	uint32_t fx_pad;
	int64_t fx_t;                  /* sender's stamp, published by fx_word */
	int64_t fx_lat;                /* answering side's one-way latency */
	/* The atomic baseline of the limiter cells: one word, alone. */
	_Alignas(128) _Atomic uint64_t faa_word;
	char faa_pad[120];
};

struct cvq;

/* One run: written by the parent before fork, read (as a copy) by children. */
struct run {
	enum bench_shape shape;
	enum bench_mode mode;
	unsigned fab_kind;             /* FAB_SPSC or FAB_MPMC (fab channels) */
	uint32_t delivery;             /* fab channels: 0 (at-most-once) or
					  FAB_AT_LEAST_ONCE */
	size_t msg;                    /* bytes per message */
	unsigned nprod, ncons;
	uint32_t capacity;             /* queue depth: fab, mq (if allowed), mutex+cv */
	int64_t duration_ns;           /* how long producers (or the pinger) go on */
	int64_t delay_ns;              /* MODE_SLEEP: each side's delay before sending */
	int64_t warmup_rt;             /* ping-pong: round trips not recorded */
	int cpu[2];                    /* pin the two processes of a 1:1 shape; -1 no */
	int pair_cl;                   /* spinning ping-pong: alternate blocks with the
					  cache-line floor (spinpp.h) */
	struct shared *sh;

	/* Set up by each mechanism in the parent. */
	char chan[2][FAB_NAME_MAX + 1];
	int fd[2][2];
	mqd_t mq[2];
	unsigned mq_depth;
	struct cvq *cvq[2];
	size_t cvq_len[2];
	char note[BENCH_ERRLEN];       /* a remark the report prints once */
};

/* A mechanism: setup in the parent (0 ok, 1 unavailable here, -1 error, with
 * the reason in why), the body of each child (returns its exit status, with
 * the reason in r->sh->out[slot].err on failure), teardown in the parent
 * (always called after a setup that returned 0, also on error paths). */
struct mech {
	const char *name;
	int (*setup)(struct run *r, char *why, size_t whylen);
	int (*child)(struct run *r, enum bench_role role, unsigned slot);
	void (*teardown)(struct run *r);
};

extern const struct mech mech_fab, mech_cacheline, mech_lines2, mech_futex, mech_pipe,
	mech_socket, mech_mq, mech_mutexcv, mech_topic, mech_limiter, mech_atomic, mech_ring,
	mech_ring_go, mech_mring, mech_ringpp;

/* The fabric every fab run uses: its name (set once by main) and the
 * parent's handle (NULL if it could not be opened). */
extern char bench_fabric[FAB_NAME_MAX + 1];
extern fab_fabric *bench_fab;

/* run.c */
void sig_setup(void);
int sig_interrupted(void);
int run_exec(struct run *r, const struct mech *m, char *err, size_t errlen);
void run_kill_all(void);
int child_fail(struct run *r, unsigned slot, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int barrier_wait(struct run *r);
void prefault(const void *p, size_t len);
long futex_wait(_Atomic uint32_t *w, uint32_t val);
long futex_wake(_Atomic uint32_t *w, int n);

/* drivers.c: the ping-pong and stream loops shared by the kernel baselines */
struct xport {
	/* 0 or -1 (the reason already recorded with child_fail) */
	int (*send)(struct run *r, unsigned slot, int dir, const void *m, size_t n);
	/* the length received, or -1 (reason recorded) */
	ssize_t (*recv)(struct run *r, unsigned slot, int dir, void *b, size_t n);
};
int drive_pp(struct run *r, const struct xport *x, enum bench_role role, unsigned slot);
int drive_stream(struct run *r, const struct xport *x, enum bench_role role,
		 unsigned slot);
/* A 64-byte aligned, zeroed (pre-faulted) buffer of at least len bytes. */
void *bench_buf_alloc(size_t len);

/* Latency histogram: exact below 128 ns, then 64 sub-buckets per power of
 * two (1.6% resolution), up to ~2^40 ns. */
#define HIST_BUCKETS (128 + 34 * 64)
struct hist {
	uint64_t n;
	uint64_t b[HIST_BUCKETS];
};
void hist_add(struct hist *h, uint64_t v);
uint64_t hist_pct(const struct hist *h, double p);

static inline int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The spin hint used by every spinning loop, fab's and the floor's alike. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Busy-waits ns: the sleeping ping-pong's delay.  Busy rather than usleep so
 * the delay is exact and the delaying side's CPU is not put to sleep too. */
static inline void busy_delay(int64_t ns)
{
	int64_t end = now_ns() + ns;

	while (now_ns() < end)
		cpu_relax();
}

static inline uint64_t rec_tag(unsigned prod, uint64_t seq)
{
	return ((uint64_t)prod << BENCH_TAG_SHIFT) | (seq & BENCH_SEQ_MASK);
}

/* Writes the tag at both ends of a record (one word if it is 8 bytes), so a
 * consumer detects a torn or misplaced copy as well as a lost message. */
static inline void rec_stamp(unsigned char *buf, size_t len, uint64_t tag)
{
	memcpy(buf, &tag, sizeof tag);
	if (len >= 16)
		memcpy(buf + len - sizeof tag, &tag, sizeof tag);
}

/* A consumer's running check of what it received. */
struct cons_check {
	unsigned nprod;
	int strict;                    /* 1:1: every sequence number in order */
	uint64_t next[BENCH_MAXPROD];
	uint64_t cnt[BENCH_MAXPROD];
	uint64_t sum[BENCH_MAXPROD];
	uint64_t total;
};

/* Checks one record; returns 0, or -1 with a reason in why.  Each producer's
 * messages must arrive in increasing order (strictly consecutive on a 1:1
 * stream); the parent checks afterwards that counts and sums add up. */
static inline int cons_check_rec(struct cons_check *c, const unsigned char *buf,
				 size_t len, char *why, size_t whylen)
{
	uint64_t tag, tail, seq;
	unsigned p;

	memcpy(&tag, buf, sizeof tag);
	if (len >= 16) {
		memcpy(&tail, buf + len - sizeof tail, sizeof tail);
		if (tail != tag) {
			snprintf(why, whylen, "record torn: head tag %#llx, tail tag %#llx",
				 (unsigned long long)tag, (unsigned long long)tail);
			return -1;
		}
	}
	p = (unsigned)(tag >> BENCH_TAG_SHIFT);
	seq = tag & BENCH_SEQ_MASK;
	if (p >= c->nprod) {
		snprintf(why, whylen, "record with bad producer id %u (tag %#llx)", p,
			 (unsigned long long)tag);
		return -1;
	}
	if (seq < c->next[p] || (c->strict && seq != c->next[p])) {
		snprintf(why, whylen,
			 "producer %u: got sequence %llu, expected %s%llu (lost, duplicated or reordered)",
			 p, (unsigned long long)seq, c->strict ? "" : ">= ",
			 (unsigned long long)c->next[p]);
		return -1;
	}
	c->next[p] = seq + 1;
	c->cnt[p]++;
	c->sum[p] += seq;
	c->total++;
	return 0;
}

/* A consumer's totals into its report (the parent adds them up). */
static inline void cons_check_out(const struct cons_check *c, struct child_out *o)
{
	o->count = c->total;
	memcpy(o->per_cnt, c->cnt, sizeof o->per_cnt);
	memcpy(o->per_sum, c->sum, sizeof o->per_sum);
}

#endif /* FAB_BENCH_H */
