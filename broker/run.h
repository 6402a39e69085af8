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

#include "topology.h"

/* Exit codes of `fabd run` (docs/fabd.md). */
#define FABD_EXIT_OK 0
#define FABD_EXIT_INVALID 1
#define FABD_EXIT_USAGE 2
#define FABD_EXIT_STAGE_FAILED 4 /* a stage exceeded its intensity (or failed with restart: never) */
#define FABD_EXIT_SETUP 5        /* the fabric could not be created or re-attached */
#define FABD_EXIT_UNCLEAN 6      /* shutdown had to SIGKILL replicas past grace */

typedef struct fabd_run_opts {
	int keep; /* 1: leave the fabric's segments in /dev/shm at exit */
} fabd_run_opts;

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
	int restart_on_exit;   /* killed by a one_for_all / rest_for_one restart */
	int last_failed;       /* the last exit was a failure */
	fabd_op pid_op;
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
} fabd_stage_rt;

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
	int sigfd;
	fabd_op sig_op;
	int phase;             /* 0 running, 1 draining, 2 root cancelled, 3 killing */
	uint64_t phase_gen;    /* voids stale deadline timers */
	int stage_failed;      /* exit non-zero */
	int killed;            /* SIGKILL was needed */
	int live_pipes;        /* pipe readers not yet at EOF */
	fabd_op timers;        /* head of the list of timer ops in flight */
} fabd_sup;

/* supervise.c */
uint64_t fabd_now_ns(void);
struct io_uring_sqe *fabd_sqe(fabd_sup *r);
int fabd_replica_spawn(fabd_sup *r, fabd_replica *rep);
void fabd_replica_died(fabd_sup *r, fabd_replica *rep);
void fabd_replica_backoff_done(fabd_sup *r, fabd_replica *rep, uint64_t gen);
void fabd_pipe_read_done(fabd_sup *r, fabd_op *op, int res);
void fabd_kill(fabd_replica *rep, int sig);
int fabd_running(const fabd_sup *r);      /* replicas with a live process */
int fabd_pending(const fabd_sup *r);      /* replicas running or in backoff */
/* Arm a one-shot timer; `op` is malloc'd by the caller, owned by the list
 * until its completion (fabd_timer_done) or the end of the run. */
void fabd_arm_timer(fabd_sup *r, fabd_op *op, uint64_t ns);
void fabd_timer_done(fabd_op *op);

/* run.c */
void fabd_begin_drain(fabd_sup *r, const char *why);

#endif
