/* run.h - `fabd run`: the fabric built from the model, the supervised stage
 * replicas and the io_uring loop that watches them.  Private to fabd.
 *
 *   run.c        creates / re-attaches the fabric's objects, the loop,
 *                signals, drain and the final cleanup
 *   supervise.c  one replica's life: spawn (fork+exec with the stage
 *                environment), death, restart policy, backoff, intensity
 */
#ifndef FABD_RUN_H
#define FABD_RUN_H

#include <stdint.h>
#include <sys/types.h>

#include <liburing.h>
#include <sys/resource.h>

#include "inspect.h"
#include "topology.h"

/* Exit codes of `fabd run` (docs/fabd.md). */
#define FABD_EXIT_OK 0
#define FABD_EXIT_INVALID 1
#define FABD_EXIT_USAGE 2
#define FABD_EXIT_STAGE_FAILED 4 /* a stage exceeded its intensity (or failed with restart: never) */
#define FABD_EXIT_SETUP 5        /* the fabric could not be created or re-attached */
#define FABD_EXIT_UNCLEAN 6      /* shutdown had to SIGKILL replicas past grace */
#define FABD_EXIT_LEFTOVER 7     /* messages were still queued at the end: segments kept */

typedef struct fabd_run_opts {
	int keep;           /* 1: leave the fabric's segments in /dev/shm at exit */
	double error_ratio; /* warn above this errors/messages ratio (0.01 = 1%) */
} fabd_run_opts;

#define FABD_ERROR_RATIO_DEFAULT 0.01
#define FABD_ERROR_WINDOW_NS (10ull * 1000000000ull) /* at most one warning per stage per window */
#define FABD_SCALE_MAX 64 /* `scale` goes up to this (or the file's count if larger): FAB_PRODUCERS_MAX */

/* Run the fabric of `t` in the foreground until it completes, is drained by
 * SIGTERM/SIGINT, or a stage fails; returns one of the exit codes above. */
int fabd_run(const fabd_topology *t, const fabd_run_opts *o);

/* ---- shared between run.c and supervise.c ---- */

/* What a completion's user_data points at. */
enum fabd_op_kind {
	FABD_OP_SIGNAL = 1, /* poll on the signalfd */
	FABD_OP_PIDFD,      /* poll on a replica's pidfd */
	FABD_OP_PIPE,       /* read from a replica's stdout/stderr pipe */
	FABD_OP_BACKOFF,    /* a replica's restart delay ended */
	FABD_OP_DEADLINE,   /* a shutdown phase's deadline */
	FABD_OP_ERRPIPE,    /* the error reader thread wrote records (run.c) */
	FABD_OP_CTL_LISTEN, /* the control socket has a connection to accept (control.c) */
	FABD_OP_CTL_CONN,   /* a control connection is readable (control.c) */
	FABD_OP_WATCHDOG,   /* the watchdog's periodic look (watchdog.c) */
};

typedef struct fabd_op {
	int kind;
	void *obj;    /* fabd_replica * or fabd_pipe * (NULL for signal/deadline) */
	uint64_t gen; /* the replica's generation when armed: stale completions are ignored */
	struct __kernel_timespec ts;
	struct fabd_op *prev, *next; /* timers: the list of those in flight */
} fabd_op;

/* A replica's state machine (STYLE.md "Programs"): state x event -> handler.
 *   IDLE --spawn--> RUNNING --death--> BACKOFF --timer--> RUNNING
 *                                  \-> DONE   (exit 0 with on-failure, never,
 *                                              drain, or stage failed) */
typedef enum fabd_rstate {
	FABD_R_IDLE = 0,
	FABD_R_RUNNING,
	FABD_R_BACKOFF,
	FABD_R_DONE,
} fabd_rstate;

struct fabd_stage_rt;

typedef struct fabd_replica {
	struct fabd_stage_rt *st;
	uint32_t idx;
	fabd_rstate state;
	pid_t pid;
	int pidfd;
	uint64_t gen;          /* bumped on every spawn and every state change that voids timers */
	uint32_t attempt;      /* consecutive restarts, for the exponential backoff */
	uint64_t started_ns;   /* CLOCK_MONOTONIC of the last spawn */
	int restart_on_exit;   /* 1: killed by a one_for_all / rest_for_one restart; 2: by a control restart */
	int last_failed;       /* the last exit was a failure */
	fabd_op pid_op;
	/* watchdog.c: the pulse last seen and when it last moved */
	uint64_t wd_seen_gen, wd_seen_ns, wd_calls, wd_sum;
	int wd_waiting, wd_attached, wd_fired;
	uint64_t watchdog_kills;
	uint64_t restarts;     /* spawns of this replica after its first (run.c refresh_figures) */
} fabd_replica;

typedef struct fabd_stage_rt {
	const fabd_stage *cfg;
	size_t index;
	fab_ctx *ctx;
	char ctx_name[FAB_NAME_MAX + 1];
	char ports[8192];      /* FAB_PORTS */
	int source;            /* no in port: cancelled first on drain */
	fabd_replica *reps;
	uint64_t *restarts;    /* ring of restart times (intensity window) */
	size_t nrestarts;
	size_t restarts_cap;
	int failed;
	/* run.c: `cfg` points at `mcfg`, fabd's mutable copy of the stage, so
	 * that `scale` can change cfg->replicas; reps has reps_cap
	 * entries.  Replicas at idx >= replicas that still run are retiring
	 * (scaled down): run.c reaps them, they are never restarted. */
	fabd_stage mcfg;
	uint32_t reps_cap;       /* entries in reps: max(replicas in the file, FABD_SCALE_MAX) */
	uint32_t declared;       /* replicas in the file: the stage's share of its output
				  * channels' close quorum */
	int writer;              /* has an out port on a channel (not the error channel) */
	uint64_t proxy_closed;   /* bit j: fabd closed the outputs as producer <stage>.<j> */
	uint64_t restarting;     /* bit j: fabd marked replica j as restarting in the stage
				  * table (fab_stage_restarting) and has not unmarked it */
	uint64_t restarts_total; /* spawns after the first of each replica */
	uint64_t *last_start;    /* per replica: started_ns last seen */
	uint64_t errors;         /* error records read from the error channel */
	uint64_t err_base;       /* messages counted at fabd's start (ratio baseline) */
	uint64_t err_warned_ns;  /* last ratio warning (0: none yet) */
	uint64_t err_eval_ns;    /* last ratio evaluation */
} fabd_stage_rt;

struct fab_metrics;
struct fabd_control;
struct fabd_errreader;

typedef struct fabd_sup {
	const fabd_topology *t;
	fabd_run_opts opts;
	struct io_uring ring;
	fab_fabric *fab;
	fab_ctx *root;
	char root_name[FAB_NAME_MAX + 1];
	fabd_stage_rt *stages;
	size_t nstages;
	pid_t self;
	/* The descriptor limit fabd found, restored in every stage before its
	 * exec when fabd raised its own soft limit (nofile_raised). */
	struct rlimit nofile_orig;
	int nofile_raised;
	int sigfd;
	fabd_op sig_op;
	int phase;             /* 0 running, 1 draining, 2 root cancelled, 3 killing */
	uint64_t phase_gen;    /* voids stale deadline timers */
	int stage_failed;      /* exit non-zero */
	int killed;            /* SIGKILL was needed */
	int live_pipes;        /* pipe readers not yet at EOF */
	fabd_op timers;        /* head of the list of timer ops in flight */
	struct fab_metrics *metrics;       /* NULL when `metrics: off` */
	struct fabd_control *control;      /* the control socket (control.c) */
	struct fabd_errreader *errs;       /* NULL when a stage reads the error channel */
	struct fab_metrics_stage *fig;     /* the stage figures last given to metrics */
	unsigned char *dl_closed;          /* per channel: fabd closed this dead-letter channel */
	const uint8_t *wd_ctl;             /* watchdog.c: control segment, read-only; NULL = off */
	uint64_t wd_tick_ns;
} fabd_sup;

/* supervise.c */
uint64_t fabd_now_ns(void);
struct io_uring_sqe *fabd_sqe(fabd_sup *r);
int fabd_replica_spawn(fabd_sup *r, fabd_replica *rep);
/* Withdraw a previous process's close of the replica's out channels before
 * it runs again (fab_chan_rejoin_as); -1 when one is closed for good (its
 * name in closed[0..n)). */
int fabd_rejoin(fabd_sup *r, fabd_replica *rep, char *closed, size_t n);
void fabd_replica_died(fabd_sup *r, fabd_replica *rep);
void fabd_replica_backoff_done(fabd_sup *r, fabd_replica *rep, uint64_t gen);
void fabd_pipe_read_done(fabd_sup *r, fabd_op *op, int res);
void fabd_kill(fabd_replica *rep, int sig);
/* Draining: does the stage need a replica (re)started, and start one now
 * (supervise.c). */
int fabd_drain_needs(const fabd_sup *r, const fabd_stage_rt *st, const fabd_replica *except);
void fabd_drain_restart(fabd_sup *r, fabd_replica *rep);
/* fabd's producer id in a dead-letter channel's close quorum (topology.c
 * counts it in `producers`). */
#define FABD_DL_PRODUCER "fabd.dead-letter"
int fabd_close_as(fabd_sup *r, const char *name, const char *id);
/* Close every dead-letter channel none of whose writers (the receivers of
 * its source channels) can run again. */
void fabd_close_dead_letters(fabd_sup *r);
/* The replica will not run again: mark it done and close its share of its
 * out channels' close quorum (supervise.c). */
void fabd_finish(fabd_sup *r, fabd_replica *rep);
/* The restart mark (fab_stage_restarting, docs/fabd.md "Producer shares"):
 * set before fabd SIGTERMs a replica only to run it again, so that its
 * fab_stage_close does not close its outputs; cleared before the replica's
 * next process starts and whenever the replica is retired.  Replicas >= 64
 * cannot be marked.  fabd_unmark_all clears every bit of every stage (a
 * previous fabd may have died with one set). */
void fabd_mark_restarting(fabd_sup *r, fabd_replica *rep, int on);
void fabd_unmark_all(fabd_sup *r);
int fabd_running(const fabd_sup *r);      /* replicas with a live process */
int fabd_pending(const fabd_sup *r);      /* replicas running or in backoff */
/* Arm a one-shot timer; `op` is malloc'd by the caller, owned by the list
 * until its completion (fabd_timer_done) or the end of the run. */
void fabd_arm_timer(fabd_sup *r, fabd_op *op, uint64_t ns);
void fabd_timer_done(fabd_op *op);

/* watchdog.c: map the control segment and arm the periodic look when a
 * stage has a watchdog (0, or -1 on failure); the timer's completion;
 * unmap. */
int fabd_watchdog_start(fabd_sup *r);
void fabd_watchdog_tick(fabd_sup *r, fabd_op *op);
void fabd_watchdog_stop(fabd_sup *r);

/* run.c */
void fabd_begin_drain(fabd_sup *r, const char *why);
/* The control verbs (control.c parses, run.c acts).  Each returns 0, or -1
 * with a message in err[0..n). */
int fabd_scale(fabd_sup *r, fabd_stage_rt *st, uint32_t n, char *err, size_t en);
int fabd_restart_stage(fabd_sup *r, fabd_stage_rt *st, char *err, size_t en);
void fabd_cancel_all(fabd_sup *r);
fabd_stage_rt *fabd_stage_by_name(fabd_sup *r, const char *name);
uint32_t fabd_stage_up_count(const fabd_stage_rt *st); /* replicas running now */
/* One channel's figures (depth `len`, `capacity`, `sent`, `received`...)
 * read from its segment with fab_inspect: read-only, no handle opened (so
 * no spsc end is taken and nothing is counted as attached).  0, or -1 when
 * the segment cannot be read. */
int fabd_chan_figures(const fabd_sup *r, const char *name, fi_chan *c);

#endif
