/* run.c - `fabd run FILE`: build (or re-attach) the fabric of a topology,
 * start every stage replica, and supervise them on one io_uring loop until
 * the pipeline completes, is drained by SIGTERM/SIGINT, or a stage fails.
 *
 * The loop waits on: the signalfd (SIGTERM, SIGINT, SIGCHLD blocked), one
 * POLL_ADD per child pidfd, one READ per output pipe, and TIMEOUTs for
 * backoff delays and shutdown deadlines.  With nothing happening fabd sleeps
 * in io_uring_submit_and_wait and uses no CPU.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "run.h"

/* ---- the fabric's objects ---- */

static int chan_opts_of(const fabd_topology *t, const fabd_channel *c, fab_chan_opts *o)
{
	memset(o, 0, sizeof *o);
	o->size = sizeof *o;
	o->capacity = c->capacity;
	o->msg_size = c->msg_size;
	o->kind = c->kind;
	o->delivery = c->delivery;
	o->producers = c->producers;
	if (c->delivery == FAB_AT_LEAST_ONCE) {
		o->max_inflight = c->max_inflight;
		o->max_deliveries = c->max_deliveries;
		o->dead_letter = c->dead_letter >= 0 ? t->channels[c->dead_letter].name : NULL;
	}
	return 0;
}

/* Create channel `name` with `o`, or check that the existing one has the same
 * parameters.  Returns 0, or -1 with a message printed. */
static int ensure_chan(fab_fabric *fab, const char *fabric, const char *name,
		       const fab_chan_opts *o)
{
	fab_chan *ch;
	int rc = fab_chan_create(fab, name, o, &ch);
	if (rc == 0) {
		fab_chan_release(ch);
		return 0;
	}
	if (rc != FAB_EEXIST) {
		fprintf(stderr, "fabd: channel %s: %s\n", name, fab_errmsg());
		return -1;
	}
	if ((rc = fab_chan_open(fab, name, FAB_SEND, &ch)) < 0) {
		fprintf(stderr, "fabd: channel %s exists in fabric %s but cannot be opened: %s\n",
			name, fabric, fab_errmsg());
		return -1;
	}
	fab_stats st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	rc = fab_chan_stats(ch, &st);
	fab_chan_release(ch);
	if (rc < 0) {
		fprintf(stderr, "fabd: channel %s: %s\n", name, fab_errmsg());
		return -1;
	}
	char diff[512] = "";
	size_t n = 0;
#define FABD_CMP(field, label)                                                             \
	if (st.field != o->field)                                                         \
		n += (size_t)snprintf(diff + n, n < sizeof diff ? sizeof diff - n : 0,     \
				      " %s %u (file: %u)", label, st.field, o->field);
	FABD_CMP(capacity, "capacity")
	FABD_CMP(msg_size, "msg_size")
	FABD_CMP(kind, "kind")
	FABD_CMP(delivery, "delivery")
	FABD_CMP(producers, "producers")
#undef FABD_CMP
	if (n) {
		fprintf(stderr,
			"fabd: channel %s of fabric %s exists with other parameters:%s; "
			"remove the fabric (fab_fabric_destroy, fabctl rm) or fix the file\n",
			name, fabric, diff);
		return -1;
	}
	if (st.closed)
		fprintf(stderr, "fabd: note: channel %s is already closed (a previous run "
				"finished it); its stages will see it closed\n",
			name);
	return 0;
}

static int create_objects(fabd_sup *r)
{
	const fabd_topology *t = r->t;
	fab_chan_opts o;
	/* Channels in an order where a dead letter exists before the channels
	 * that name it (the parser rejects cycles... and if it did not, the
	 * loop below stops making progress and reports it). */
	char *done = calloc(t->nchannels + 1, 1);
	if (!done)
		return -1;
	size_t left = t->nchannels;
	while (left) {
		size_t before = left;
		for (size_t i = 0; i < t->nchannels; i++) {
			const fabd_channel *c = &t->channels[i];
			if (done[i] || (c->dead_letter >= 0 && !done[c->dead_letter]))
				continue;
			chan_opts_of(t, c, &o);
			if (ensure_chan(r->fab, t->fabric, c->name, &o) < 0) {
				free(done);
				return -1;
			}
			done[i] = 1;
			left--;
		}
		if (left == before) {
			fprintf(stderr, "fabd: dead_letter channels form a cycle\n");
			free(done);
			return -1;
		}
	}
	free(done);

	/* The error channel: mpmc, at-most-once; stages never close it. */
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.capacity = t->errors.capacity;
	o.msg_size = t->errors.msg_size;
	o.kind = FAB_MPMC;
	o.delivery = FAB_AT_MOST_ONCE;
	o.producers = 1;
	if (ensure_chan(r->fab, t->fabric, t->errors.name, &o) < 0)
		return -1;

	for (size_t i = 0; i < t->nlimiters; i++) {
		const fabd_limiter *l = &t->limiters[i];
		fab_limiter *lim;
		int rc = fab_limiter_create(r->fab, l->name, l->rate, l->burst, &lim);
		if (rc == FAB_EEXIST) {
			/* ABI 1.1 cannot read a limiter's parameters back, so the
			 * file wins: set them (a restarted fabd re-applies its file). */
			if ((rc = fab_limiter_open(r->fab, l->name, &lim)) == 0 &&
			    (rc = fab_limiter_set(lim, l->rate, l->burst)) < 0)
				fab_limiter_release(lim);
		}
		if (rc < 0) {
			fprintf(stderr, "fabd: limiter %s: %s\n", l->name, fab_errmsg());
			return -1;
		}
		fab_limiter_release(lim);
	}

	for (size_t i = 0; i < t->ntopics; i++) {
		const fabd_topic *tp = &t->topics[i];
		fab_topic *top;
		memset(&o, 0, sizeof o);
		o.size = sizeof o;
		o.capacity = tp->capacity;
		o.msg_size = tp->msg_size;
		int rc = fab_topic_create(r->fab, tp->name, &o, &top);
		if (rc == FAB_EEXIST) /* parameters cannot be read back in ABI 1.1 */
			rc = fab_topic_open(r->fab, tp->name, &top);
		if (rc < 0) {
			fprintf(stderr, "fabd: topic %s: %s\n", tp->name, fab_errmsg());
			return -1;
		}
		fab_topic_release(top);
	}
	return 0;
}

/* Open or create the shared context `name` under `parent`; *fresh tells
 * whether it was created.  Returns a fab code. */
static int ctx_get(fab_fabric *fab, const char *name, fab_ctx *parent, fab_ctx **out)
{
	int rc = fab_ctx_create(fab, name, parent, out);
	if (rc == FAB_EEXIST)
		rc = fab_ctx_open(fab, name, out);
	return rc;
}

/* The root context and one context per stage.  A shared context can never
 * be reset once cancelled (fab_ctx_create(3)), so contexts carry a
 * generation: fabd-<N> is the root, <stage>-<N> (or fabd-<N>-s<index> when
 * that would be too long) a stage's.  A restarted fabd re-attaches the first
 * generation whose root is still live (fabd was killed: its stages' contexts
 * were never cancelled) and otherwise moves on to the next. */
static int create_contexts(fabd_sup *r)
{
	for (unsigned gen = 1; gen < 100000; gen++) {
		snprintf(r->root_name, sizeof r->root_name, "fabd-%u", gen);
		int rc = ctx_get(r->fab, r->root_name, NULL, &r->root);
		if (rc < 0) {
			fprintf(stderr, "fabd: context %s: %s\n", r->root_name, fab_errmsg());
			return -1;
		}
		if (fab_ctx_err(r->root) != 0) {
			fab_ctx_release(r->root);
			r->root = NULL;
			continue;
		}
		for (size_t i = 0; i < r->nstages; i++) {
			fabd_stage_rt *st = &r->stages[i];
			int n = snprintf(st->ctx_name, sizeof st->ctx_name, "%s-%u", st->cfg->name,
					 gen);
			if (n < 0 || (size_t)n >= sizeof st->ctx_name)
				snprintf(st->ctx_name, sizeof st->ctx_name, "fabd-%u-s%zu", gen, i);
			if ((rc = ctx_get(r->fab, st->ctx_name, r->root, &st->ctx)) < 0) {
				fprintf(stderr, "fabd: context %s: %s\n", st->ctx_name,
					fab_errmsg());
				return -1;
			}
			if (fab_ctx_err(st->ctx) != 0) {
				/* Only this stage's context ended (cancelled by hand): the
				 * generation is spoilt for it; take the next one. */
				break;
			}
		}
		int all = 1;
		for (size_t i = 0; i < r->nstages; i++)
			all &= r->stages[i].ctx && fab_ctx_err(r->stages[i].ctx) == 0;
		if (all)
			return 0;
		for (size_t i = 0; i < r->nstages; i++) {
			fab_ctx_release(r->stages[i].ctx);
			r->stages[i].ctx = NULL;
		}
		fab_ctx_release(r->root);
		r->root = NULL;
	}
	fprintf(stderr, "fabd: no free context generation\n");
	return -1;
}

static void build_ports(const fabd_topology *t, fabd_stage_rt *st)
{
	size_t n = 0;
	st->ports[0] = 0;
	for (size_t i = 0; i < st->cfg->nports; i++) {
		const fabd_port *p = &st->cfg->ports[i];
		const char *target;
		if (p->target_kind == FABD_TARGET_CHANNEL)
			target = t->channels[p->target].name;
		else if (p->target_kind == FABD_TARGET_ERRORS)
			target = t->errors.name;
		else
			continue; /* topics are not ports in ABI 1.1 (docs/stage.md) */
		n += (size_t)snprintf(st->ports + n, sizeof st->ports - n, "%s%s:%s=%s",
				      n ? "," : "", p->out ? "out" : "in", p->name, target);
	}
}

/* ---- shutdown ---- */

static void arm_deadline(fabd_sup *r, uint64_t ns)
{
	fabd_op *op = calloc(1, sizeof *op);
	if (!op)
		return; /* without the timer, a further signal still moves on */
	op->kind = FABD_OP_DEADLINE;
	op->gen = ++r->phase_gen;
	fabd_arm_timer(r, op, ns);
}

/* Move the shutdown one step on: 1 drain (cancel the sources), 2 cancel the
 * root context, 3 SIGKILL what is left. */
static void shutdown_step(fabd_sup *r, const char *why)
{
	switch (r->phase) {
	case 0:
		r->phase = 1;
		fprintf(stderr, "fabd: draining (%s): cancelling the sources\n", why);
		for (size_t i = 0; i < r->nstages; i++) {
			fabd_stage_rt *st = &r->stages[i];
			for (uint32_t j = 0; j < st->cfg->replicas; j++) {
				fabd_replica *rep = &st->reps[j];
				if (rep->state == FABD_R_BACKOFF || rep->state == FABD_R_IDLE) {
					rep->state = FABD_R_DONE; /* voids its timer */
					rep->gen++;
				}
			}
			if (st->source || st->failed)
				fab_ctx_cancel(st->ctx, 1);
		}
		arm_deadline(r, r->t->drain_ns);
		break;
	case 1:
		r->phase = 2;
		fprintf(stderr, "fabd: %s: cancelling the root context\n", why);
		fab_ctx_cancel(r->root, 2);
		arm_deadline(r, r->t->grace_ns);
		break;
	case 2:
		r->phase = 3;
		r->phase_gen++;
		if (fabd_running(r)) {
			fprintf(stderr, "fabd: %s: killing %d replicas\n", why, fabd_running(r));
			r->killed = 1;
		}
		for (size_t i = 0; i < r->nstages; i++)
			for (uint32_t j = 0; j < r->stages[i].cfg->replicas; j++)
				fabd_kill(&r->stages[i].reps[j], SIGKILL);
		break;
	default:
		break;
	}
}

void fabd_begin_drain(fabd_sup *r, const char *why)
{
	if (r->phase == 0)
		shutdown_step(r, why);
}

static void arm_signal(fabd_sup *r)
{
	r->sig_op.kind = FABD_OP_SIGNAL;
	struct io_uring_sqe *sqe = fabd_sqe(r);
	io_uring_prep_poll_add(sqe, r->sigfd, POLLIN);
	io_uring_sqe_set_data(sqe, &r->sig_op);
}

static void on_signal(fabd_sup *r)
{
	struct signalfd_siginfo si;
	while (read(r->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD)
			continue; /* deaths come through the pidfds */
		/* The first signal starts the drain; each further one skips
		 * ahead one step (cancel the root, then SIGKILL). */
		shutdown_step(r, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
	}
	arm_signal(r);
}

/* ---- the loop ---- */

static void dispatch(fabd_sup *r, struct io_uring_cqe *cqe)
{
	fabd_op *op = io_uring_cqe_get_data(cqe);
	if (!op)
		return;
	switch (op->kind) {
	case FABD_OP_SIGNAL:
		on_signal(r);
		break;
	case FABD_OP_PIDFD: {
		fabd_replica *rep = op->obj;
		if (rep->state == FABD_R_RUNNING && op->gen == rep->gen)
			fabd_replica_died(r, rep);
		break;
	}
	case FABD_OP_PIPE:
		fabd_pipe_read_done(r, op, cqe->res);
		break;
	case FABD_OP_BACKOFF:
		fabd_replica_backoff_done(r, op->obj, op->gen);
		fabd_timer_done(op);
		break;
	case FABD_OP_DEADLINE:
		if (op->gen == r->phase_gen && r->phase > 0 && r->phase < 3)
			shutdown_step(r, r->phase == 1 ? "drain time is over" : "grace time is over");
		fabd_timer_done(op);
		break;
	default:
		break;
	}
}

static void teardown(fabd_sup *r)
{
	for (size_t i = 0; i < r->nstages; i++) {
		fabd_stage_rt *st = &r->stages[i];
		if (st->reps)
			for (uint32_t j = 0; j < st->cfg->replicas; j++)
				if (st->reps[j].pidfd >= 0)
					close(st->reps[j].pidfd);
		free(st->reps);
		free(st->restarts);
		fab_ctx_release(st->ctx);
	}
	free(r->stages);
	fab_ctx_release(r->root);
	if (r->fab)
		fab_fabric_close(r->fab);
	if (r->sigfd >= 0)
		close(r->sigfd);
}

int fabd_run(const fabd_topology *t, const fabd_run_opts *o)
{
	fabd_sup run, *r = &run;
	memset(r, 0, sizeof *r);
	r->t = t;
	r->opts = *o;
	r->sigfd = -1;
	r->self = getpid();
	srandom((unsigned)(fabd_now_ns() ^ (uint64_t)r->self));

	/* Signals first, so that a SIGTERM during setup is not lost. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	r->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (r->sigfd < 0) {
		perror("fabd: signalfd");
		return FABD_EXIT_SETUP;
	}
	int rc = io_uring_queue_init(256, &r->ring, 0);
	if (rc < 0) {
		fprintf(stderr, "fabd: io_uring_queue_init: %s\n", strerror(-rc));
		close(r->sigfd);
		return FABD_EXIT_SETUP;
	}

	char seg[FAB_NAME_MAX + 16];
	struct stat sb;
	snprintf(seg, sizeof seg, "/dev/shm/fab.%s", t->fabric);
	int existed = stat(seg, &sb) == 0;
	int code = FABD_EXIT_SETUP;
	if (fab_fabric_open(t->fabric, FAB_CREATE, &r->fab) < 0) {
		fprintf(stderr, "fabd: fabric %s: %s\n", t->fabric, fab_errmsg());
		goto out;
	}
	if (existed) {
		/* A previous fabd (and its stages, by PDEATHSIG) died: free what
		 * they held before checking and re-attaching the objects. */
		int n;
		while ((n = fab_fabric_recover(r->fab)) > 0)
			;
		fprintf(stderr, "fabd: re-attaching existing fabric %s\n", t->fabric);
	}
	r->nstages = t->nstages;
	r->stages = calloc(t->nstages, sizeof *r->stages);
	if (!r->stages)
		goto out;
	for (size_t i = 0; i < t->nstages; i++) {
		fabd_stage_rt *st = &r->stages[i];
		st->cfg = &t->stages[i];
		st->index = i;
		st->reps = calloc(st->cfg->replicas, sizeof *st->reps);
		if (!st->reps)
			goto out;
		st->source = 1;
		for (size_t p = 0; p < st->cfg->nports; p++)
			if (!st->cfg->ports[p].out)
				st->source = 0;
		for (uint32_t j = 0; j < st->cfg->replicas; j++) {
			st->reps[j].st = st;
			st->reps[j].idx = j;
			st->reps[j].pidfd = -1;
		}
		build_ports(t, st);
	}
	if (create_objects(r) < 0 || create_contexts(r) < 0)
		goto out;

	arm_signal(r);
	code = FABD_EXIT_OK;
	for (size_t i = 0; i < r->nstages && !r->phase; i++) {
		for (uint32_t j = 0; j < r->stages[i].cfg->replicas; j++) {
			fabd_replica *rep = &r->stages[i].reps[j];
			if (fabd_replica_spawn(r, rep) < 0) {
				rep->state = FABD_R_DONE;
				rep->last_failed = 1;
				r->stage_failed = 1;
				fabd_begin_drain(r, "a replica could not be started");
				break;
			}
		}
	}

	/* Run until no replica is running or waiting to restart, and every
	 * output pipe has been read to its end. */
	while (fabd_pending(r) || r->live_pipes) {
		struct io_uring_cqe *cqe;
		rc = io_uring_submit_and_wait(&r->ring, 1);
		if (rc < 0 && rc != -EINTR) {
			fprintf(stderr, "fabd: io_uring_submit_and_wait: %s\n", strerror(-rc));
			break;
		}
		unsigned head, n = 0;
		io_uring_for_each_cqe(&r->ring, head, cqe) {
			dispatch(r, cqe);
			n++;
		}
		io_uring_cq_advance(&r->ring, n);
	}
	for (size_t i = 0; i < r->nstages; i++)
		for (uint32_t j = 0; j < r->stages[i].cfg->replicas; j++)
			if (r->stages[i].reps[j].last_failed &&
			    r->stages[i].cfg->restart == FABD_RESTART_NEVER && !r->phase)
				r->stage_failed = 1;
	if (r->stage_failed)
		code = FABD_EXIT_STAGE_FAILED;
	else if (r->killed)
		code = FABD_EXIT_UNCLEAN;
	fprintf(stderr, "fabd: %s\n",
		code == FABD_EXIT_OK ? "all stages finished" :
		code == FABD_EXIT_STAGE_FAILED ? "stopped: a stage failed" :
						 "stopped: replicas had to be killed");

out:
	/* Timers still pending (a drain deadline) die with the ring. */
	io_uring_queue_exit(&r->ring);
	while (r->timers.next && r->timers.next != &r->timers)
		fabd_timer_done(r->timers.next);
	teardown(r);
	if (!r->opts.keep && code != FABD_EXIT_SETUP) {
		if (fab_fabric_destroy(t->fabric) < 0 && fab_errmsg()[0])
			fprintf(stderr, "fabd: removing fabric %s: %s\n", t->fabric, fab_errmsg());
	} else if (code == FABD_EXIT_SETUP && !existed) {
		fab_fabric_destroy(t->fabric); /* nothing of ours to keep */
	}
	return code;
}
