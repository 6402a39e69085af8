/* inspect.h - a read-only snapshot of a fabric, taken from its shared
 * segments (docs/layout.md) without libfab: nothing is claimed, attached or
 * written.  Every segment is mapped PROT_READ and validated before a value
 * read from it is used as a size, offset or loop bound; a segment that does
 * not validate (or shrinks under us: SIGBUS is caught) is reported with a
 * message, never trusted.  Used by fabctl; written so fabd could use it.
 *
 * Thread-safe for distinct snapshots (the SIGBUS guard is per thread); a
 * snapshot itself is not shared between threads. */
#ifndef FAB_INSPECT_H
#define FAB_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FI_NAME 49 /* FAB_NAME_MAX + 1 */
#define FI_ERR 200

/* A read-only mapping of one whole segment file. */
typedef struct fi_seg {
	uint8_t *base;
	size_t size;
	uint64_t dev, ino; /* the file mapped (its identity, for the liveness locks) */
} fi_seg;

typedef struct fi_proc {
	uint32_t idx;   /* process-table index */
	uint32_t gen;   /* claim generation */
	uint32_t state; /* FAB_PROC_* */
	bool live;      /* LIVE and /proc/<pid>/stat start time matches, or its liveness lock held */
	bool foreign;   /* live by its liveness lock only: its pid is not it here (another PID
			 * namespace); /proc/<pid> shows another process or none */
	uint32_t pid, uid;
	uint64_t start_time;
	int64_t attached_ns; /* CLOCK_REALTIME */
	uint64_t calls;
	uint64_t wait;   /* FAB_WAIT_MAKE record, 0 = not sleeping */
	int64_t wait_ns; /* CLOCK_MONOTONIC start of the sleep */
	uint32_t stage;  /* stage table index + 1, 0 = none */
	uint32_t replica;
	char stage_name[FI_NAME]; /* "" when none or unreadable */
} fi_proc;

/* One attach-table word of a channel: who is attached with which role. */
typedef struct fi_att {
	uint32_t proc; /* process-table index, from the owner tag */
	uint32_t gen;  /* low 5 bits of the claim generation, from the tag */
	uint32_t role; /* FAB_SEND | FAB_RECV bits */
	uint32_t sleep; /* 1: asleep sending, 2: asleep receiving (the attach word's marks) */
	uint64_t lag;   /* topics: the subscriber's messages not yet read; channels 0 */
} fi_att;

/* Messages one owner holds past their receive on an mpmc channel now
 * (acquired, or leased): HELD slots carrying its tag. */
typedef struct fi_hold {
	uint32_t proc; /* process-table index, from the owner tag */
	uint32_t gen;  /* low 5 bits of the claim generation, from the tag */
	uint32_t n;
} fi_hold;

/* A copy of a latency histogram (layout.h fab_hist): bucket i counts the
 * observations <= 1 us << i (not cumulative), b[FI_HIST_BUCKETS] those above
 * the last bound; count is the sum of the buckets (self-consistent). */
#define FI_HIST_BUCKETS 24
typedef struct fi_hist {
	uint64_t b[FI_HIST_BUCKETS + 1];
	uint64_t count, sum_ns;
} fi_hist;

#define FI_OBJ_CHAN 0u  /* fi_chan.type (layout.h FAB_OBJ_CHAN) */
#define FI_OBJ_TOPIC 1u /* (layout.h FAB_OBJ_TOPIC) */
#define FI_OBJ_UNKNOWN 0xffffffffu /* fi_obj_type: the registry cannot say */

typedef struct fi_chan {
	char name[FI_NAME];
	uint32_t reg_idx; /* registry index (a wait record names it) */
	uint32_t type;    /* FAB_OBJ_CHAN | FAB_OBJ_TOPIC */
	int err;          /* 0, or the FAB_E* code the segment failed with */
	char errmsg[FI_ERR];
	uint32_t kind, ring, delivery, capacity, msg_size, producers;
	uint32_t closes, closed;
	uint32_t senders, receivers; /* attached handles by role (topic: subscribers) */
	uint32_t send_waiters, recv_waiters;
	uint64_t len, sent, received;
	/* Could a send (receive) proceed now, by the ring itself: spsc by its
	 * counts (held messages count there); mpmc by the slot word at tail
	 * (head), since an acquired, leased or reserved slot stops a sender
	 * (receiver) whatever len says.  For fabctl blocked: a record that
	 * says "sends on C" while can_send is stale. */
	bool can_send, can_recv;
	uint64_t redelivered, dead_lettered, dead_dropped, dropped;
	/* mpmc: messages held past their receive now (acquired, or leased on
	 * an at-least-once channel): slots in state HELD (since layout 1.4) */
	uint64_t held;
	fi_hold *holds; /* held, by owner tag (whoever the tag names, live or not) */
	uint32_t nholds;
	fi_att *att; /* attach table entries with a live-looking tag */
	uint32_t natt;
	fi_hist send_wait, recv_wait, latency; /* channels only */
	int64_t created_mono_ns; /* topics: CLOCK_MONOTONIC of creation, 0 unknown */
	uint64_t lag_untagged;   /* topics: the largest lag of subscribers not in att */
} fi_chan;

typedef struct fi_stage {
	uint32_t idx;
	char name[FI_NAME];
	uint64_t errors, opens;
	uint32_t replicas_seen;
	uint64_t restarting; /* bit j: replica j is being restarted by its supervisor
			      * (its fab_stage_close does not close; layout.h) */
} fi_stage;

typedef struct fi_fabric {
	char name[FI_NAME];
	fi_seg ctl;
	int64_t created_ns;
	uint32_t creator_uid;
	fi_proc *procs; /* non-free entries, table order */
	uint32_t nprocs;
	fi_chan *chans; /* LIVE registry entries, registry order */
	uint32_t nchans;
	fi_stage *stages;
	uint32_t nstages;
	char lim_names[256][FI_NAME]; /* by limiter table index, "" = none */
	fi_hist lim_wait[256];        /* fab_limiter_wait delays, by limiter index */
	char ctx_names[1024][FI_NAME];
	int64_t mono_ns; /* CLOCK_MONOTONIC when the snapshot was taken */
	int64_t real_ns;
} fi_fabric;

/* One message copied out of a channel by fi_peek. */
typedef struct fi_msg {
	uint64_t pos;
	uint32_t len;
	uint32_t returns; /* at-least-once: times given back before */
	uint8_t *data;    /* len bytes, malloc'd */
} fi_msg;

/* The message of the last failure (thread-local). */
const char *fi_errmsg(void);

/* A valid name: [A-Za-z0-9_-]{1,48}. */
bool fi_name_ok(const char *s);

/* Map /dev/shm<path> (path starts with '/') read-only.  0 or FAB_E*. */
int fi_map(const char *path, size_t min_size, fi_seg *s);
void fi_unmap(fi_seg *s);

/* Open fabric `name`: map and validate its control segment.  0, or
 * FAB_ENOENT / FAB_EPERM / FAB_ECORRUPT / FAB_EVERSION / FAB_ESYS with
 * fi_errmsg() set.  *out is allocated only on success. */
int fi_open(const char *name, fi_fabric **out);

/* Read processes, stages, the registry and every channel and topic segment
 * of an opened fabric (again, replacing a previous snapshot).  Segments
 * that fail validation keep err/errmsg set in their fi_chan; the call
 * itself fails only when the control segment does (FAB_ECORRUPT). */
int fi_snapshot(fi_fabric *f);
void fi_close(fi_fabric *f);

/* Read one channel segment of a fabric into c (mapped, read, unmapped);
 * the attach table is kept in c->att (free with fi_chan_free).  0 or
 * FAB_E* with c->errmsg set. */
int fi_chan_read(const char *fabric, const char *name, uint32_t type, fi_chan *c);
void fi_chan_free(fi_chan *c);

/* As fi_chan_read on an already mapped segment (tests truncate it between
 * the map and the read). */
int fi_chan_read_seg(const fi_seg *s, const char *name, uint32_t type, fi_chan *c);

/* The next up to n messages queued on channel `name`, not consumed: copies
 * of the committed slots from head on, each re-validated after the copy.
 * *msgs is malloc'd (free with fi_msgs_free).  0 or FAB_E*. */
int fi_peek(const char *fabric, const char *name, unsigned n, fi_msg **msgs, unsigned *count);
int fi_peek_seg(const fi_seg *s, const char *name, unsigned n, fi_msg **msgs, unsigned *count);
/* The registry's type of object NAME (FI_OBJ_CHAN, FI_OBJ_TOPIC), or
 * FI_OBJ_UNKNOWN when the fabric's registry cannot be read or has no such
 * entry. */
uint32_t fi_obj_type(const char *fabric, const char *name);
void fi_msgs_free(fi_msg *msgs, unsigned count);

/* Names of the fabrics with a control segment in /dev/shm, sorted;
 * *names is malloc'd (free with free()).  Returns the count, or -1. */
int fi_list_fabrics(char (**names)[FI_NAME]);

/* Is pid alive with /proc/<pid>/stat field 22 equal to start? */
bool fi_pid_alive(uint32_t pid, uint64_t start);

/* Find a channel of a snapshot by registry index; NULL when none. */
const fi_chan *fi_chan_by_reg(const fi_fabric *f, uint32_t reg_idx);
const fi_proc *fi_proc_by_idx(const fi_fabric *f, uint32_t idx);

#endif /* FAB_INSPECT_H */
