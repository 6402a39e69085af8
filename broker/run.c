/* run.c - `fabd run FILE`: build (or re-attach) the fabric of a topology,
 * start every stage replica, and supervise them on one io_uring loop until
 * the pipeline completes, is drained by SIGTERM/SIGINT, or a stage fails.
 *
 * The loop waits on: the signalfd (SIGTERM, SIGINT, SIGCHLD blocked), one
 * POLL_ADD per child pidfd, one READ per output pipe, and TIMEOUTs for
 * backoff delays and shutdown deadlines; the control socket (control.c); and
 * the pipe of the error reader thread.  With nothing happening fabd sleeps
 * in io_uring_submit_and_wait and uses no CPU.
 *
 * The error channel is read by a helper thread blocked in fab_recv (a
 * futex wait; a library call cannot be put on the ring): it copies each
 * record into a pipe, which the loop reads.  The metrics endpoint runs on
 * libmicrohttpd's own thread (metrics.c) and is fed the stage figures
 * whenever they change.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "metrics.h"
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
		if (rc == FAB_EVERSION)
			/* Left by a fabd of another libfab version (its exit
			 * status 7): destroying it would lose what it holds
			 * (an upgrade trial followed the library's "destroy
			 * and recreate" advice too literally). */
			fprintf(stderr,
				"fabd: another libfab version made it; if it still holds messages, "
				"drain them with that version first (docs/fabd.md, \"Upgrading "
				"libfab under fabd\"), then remove the fabric (fabctl rm %s)\n",
				fabric);
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
#define FABD_CMPS(field, label, a, b)                                                      \
	if (st.field != o->field)                                                         \
		n += (size_t)snprintf(diff + n, n < sizeof diff ? sizeof diff - n : 0,     \
				      " %s %s (file: %s)", label, st.field == 1 ? a : b,   \
				      o->field == 1 ? a : b); /* 1: FAB_MPMC, FAB_AT_MOST_ONCE */
	FABD_CMP(capacity, "capacity")
	FABD_CMP(msg_size, "msg_size")
	FABD_CMPS(kind, "kind", "mpmc", "spsc")
	FABD_CMPS(delivery, "delivery", "at-most-once", "at-least-once")
	FABD_CMP(producers, "producers")
#undef FABD_CMP
#undef FABD_CMPS
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

/* ---- replicas beyond a stage's count (scaled down, still stopping) ---- */

static int retiring(const fabd_sup *r)
{
	int n = 0;
	for (size_t i = 0; i < r->nstages; i++)
		for (uint32_t j = r->stages[i].cfg->replicas; j < r->stages[i].reps_cap; j++)
			n += r->stages[i].reps[j].state == FABD_R_RUNNING;
	return n;
}

/* A scaled-down replica exited: reap it; it is not restarted. */
static void retired_died(fabd_sup *r, fabd_replica *rep)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	/* POLLIN on a pidfd means the process has exited: this does not block. */
	while (waitid(P_PIDFD, (id_t)rep->pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
	close(rep->pidfd);
	rep->pidfd = -1;
	rep->pid = 0;
	rep->gen++;
	rep->state = FABD_R_DONE;
	fabd_mark_restarting(r, rep, 0); /* (scale down unmarked it already) */
	for (int i = 0; i < 16 && fab_fabric_recover(r->fab) > 0; i++)
		;
	if (si.si_code == CLD_EXITED)
		fprintf(stderr, "fabd: %s.%u: stopped (scaled down), exit status %d\n",
			rep->st->cfg->name, rep->idx, si.si_status);
	else
		fprintf(stderr, "fabd: %s.%u: stopped (scaled down) by signal %d\n",
			rep->st->cfg->name, rep->idx, si.si_status);
}

/* Replicas scaled away never close their output channels, replicas a scale
 * could have started up to max_replicas never ran, and the close quorum of
 * a channel counts all of them (topology.c): once no replica of a writer
 * stage is left running or waiting to restart, fabd closes its output
 * channels on behalf of each replica index from the current count up to
 * max_replicas (producer id "<stage>.<j>", fab_chan_close_as), so that the
 * closes still propagate down the pipeline.  Channels written by more than one replica
 * are mpmc (scale refuses spsc), so no spsc end is taken. */
static void proxy_close(fabd_sup *r, fabd_stage_rt *st)
{
	if (!st->writer || st->cfg->replicas >= st->declared)
		return;
	for (uint32_t j = 0; j < st->reps_cap; j++) {
		fabd_rstate s = st->reps[j].state;
		if (s == FABD_R_RUNNING || (j < st->cfg->replicas && s == FABD_R_BACKOFF))
			return;
	}
	for (uint32_t j = st->cfg->replicas; j < st->declared && j < 64; j++) {
		if (st->proxy_closed & (1ull << j))
			continue;
		st->proxy_closed |= 1ull << j;
		char id[FAB_NAME_MAX + 16];
		snprintf(id, sizeof id, "%s.%u", st->cfg->name, j);
		for (size_t i = 0; i < st->cfg->nports; i++) {
			const fabd_port *p = &st->cfg->ports[i];
			if (!p->out || p->target_kind != FABD_TARGET_CHANNEL)
				continue;
			int dup = 0;
			for (size_t k = 0; k < i; k++)
				dup |= st->cfg->ports[k].out &&
				       st->cfg->ports[k].target_kind == FABD_TARGET_CHANNEL &&
				       st->cfg->ports[k].target == p->target;
			if (!dup)
				fabd_close_as(r, r->t->channels[p->target].name, id);
		}
	}
}

/* ---- the control verbs (control.c) ---- */

fabd_stage_rt *fabd_stage_by_name(fabd_sup *r, const char *name)
{
	for (size_t i = 0; i < r->nstages; i++)
		if (!strcmp(r->stages[i].cfg->name, name))
			return &r->stages[i];
	return NULL;
}

uint32_t fabd_stage_up_count(const fabd_stage_rt *st)
{
	uint32_t n = 0;
	for (uint32_t j = 0; j < st->cfg->replicas; j++)
		n += st->reps[j].state == FABD_R_RUNNING;
	return n;
}

int fabd_scale(fabd_sup *r, fabd_stage_rt *st, uint32_t n, char *err, size_t en)
{
	fabd_stage *cfg = &st->mcfg;
	if (r->phase) {
		snprintf(err, en, "fabd is shutting down");
		return -1;
	}
	if (n == 0 || n > st->reps_cap) {
		snprintf(err, en, "N must be between 1 and %u", st->reps_cap);
		return -1;
	}
	if (n > 1) {
		/* A channel's kind is fixed when it is created: an spsc ring has
		 * one sender end and one receiver end. */
		for (size_t i = 0; i < cfg->nports; i++) {
			const fabd_port *p = &cfg->ports[i];
			if (p->target_kind != FABD_TARGET_CHANNEL ||
			    r->t->channels[p->target].kind != FAB_SPSC)
				continue;
			snprintf(err, en,
				 "cannot scale stage %s to %u replicas: its port %s is on spsc "
				 "channel %s; declare `kind: mpmc` on channel %s in the topology "
				 "(and restart fabd) to scale it",
				 cfg->name, n, p->name, r->t->channels[p->target].name,
				 r->t->channels[p->target].name);
			return -1;
		}
	}
	if (st->writer && n > st->declared) {
		/* libfab fixes a channel's close quorum when it is created: more
		 * producers than the file declared would close it early. */
		snprintf(err, en,
			 "cannot scale stage %s beyond its max_replicas (%u): the close quorum "
			 "of its output channels counts them; declare `max_replicas: %u` on the "
			 "stage (and restart fabd) to allow it",
			 cfg->name, st->declared, n);
		return -1;
	}
	int live = 0;
	for (uint32_t j = 0; j < cfg->replicas; j++)
		live |= st->reps[j].state == FABD_R_RUNNING || st->reps[j].state == FABD_R_BACKOFF;
	if (!live) {
		/* Its outputs may be closed already: nothing to scale. */
		snprintf(err, en, "stage %s has no running replica (it finished or failed)",
			 cfg->name);
		return -1;
	}
	uint32_t old = cfg->replicas;
	for (uint32_t j = old; j < n; j++)
		if (st->reps[j].state == FABD_R_RUNNING) {
			snprintf(err, en, "replica %s.%u is still stopping; try again", cfg->name, j);
			return -1;
		}
	if (n < old) {
		cfg->replicas = n; /* from now on, run.c reaps the rest (retired_died) */
		for (uint32_t j = n; j < old; j++) {
			fabd_replica *rep = &st->reps[j];
			/* Retired, not restarted: a replica that `restart`
			 * stopped and that has not exited yet closes after all. */
			fabd_mark_restarting(r, rep, 0);
			if (rep->state == FABD_R_RUNNING) {
				fabd_kill(rep, SIGTERM);
			} else {
				rep->state = FABD_R_DONE; /* voids a backoff timer */
				rep->gen++;
			}
		}
	} else {
		/* A replica scaled down earlier may have closed its outputs as
		 * producer S.j on SIGTERM: the new S.j withdraws that close
		 * first (fabd_rejoin), or the channels would close when the
		 * other replicas close, while it still sends.  A closed output
		 * cannot take a new producer (Go: no wg.Add after the close). */
		char closed[FAB_NAME_MAX + 1];
		for (uint32_t j = old; j < n; j++)
			if (fabd_rejoin(r, &st->reps[j], closed, sizeof closed) < 0) {
				snprintf(err, en,
					 "cannot scale stage %s up: its output channel %s is "
					 "closed",
					 cfg->name, closed);
				return -1;
			}
		cfg->replicas = n;
		for (uint32_t j = old; j < n; j++) {
			fabd_replica *rep = &st->reps[j];
			rep->state = FABD_R_IDLE;
			rep->gen++;
			rep->attempt = 0;
			rep->last_failed = 0;
			rep->restart_on_exit = 0;
			rep->started_ns = 0;
			st->last_start[j] = 0; /* a new replica, not a restart */
			rep->restarts = 0;
			if (fabd_replica_spawn(r, rep) < 0) {
				fprintf(stderr, "fabd: %s.%u: could not be started\n", cfg->name, j);
				/* It will not run: done, and its share of the
				 * outputs' quorum closed (fabd_finish), as for a
				 * restart that gives up.  fabd_rejoin above may
				 * have withdrawn an earlier close of S.j; left
				 * open, the channel would never close. */
				fabd_finish(r, rep);
			}
		}
	}
	fprintf(stderr, "fabd: control: stage %s scaled from %u to %u replicas\n", cfg->name, old,
		n);
	return 0;
}

int fabd_restart_stage(fabd_sup *r, fabd_stage_rt *st, char *err, size_t en)
{
	if (r->phase) {
		snprintf(err, en, "fabd is shutting down");
		return -1;
	}
	uint32_t n = 0;
	for (uint32_t j = 0; j < st->cfg->replicas; j++) {
		fabd_replica *rep = &st->reps[j];
		if (rep->state == FABD_R_RUNNING) {
			/* Restarted on exit like a strategy restart: not counted
			 * against the intensity, after the stage's backoff.  A
			 * restart is not the end of its sends: marked first, its
			 * fab_stage_close on SIGTERM closes nothing (else the
			 * close of the last open producers of a channel would
			 * close it before the new process could rejoin). */
			rep->restart_on_exit = 2; /* 2: on request (the log says so) */
			fabd_mark_restarting(r, rep, 1);
			fabd_kill(rep, SIGTERM);
			n++;
		}
	}
	if (!n) {
		snprintf(err, en, "stage %s has no running replica", st->cfg->name);
		return -1;
	}
	fprintf(stderr, "fabd: control: restarting stage %s (%u replica%s)\n", st->cfg->name, n,
		n == 1 ? "" : "s");
	return 0;
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
			/* A consumer stage whose replicas all wait for a restart:
			 * one is started now, the drain needs it (it would
			 * otherwise leave its input queued); the others, and
			 * those of stages with a replica running, are dropped. */
			fabd_replica *keep = NULL;
			if (fabd_drain_needs(r, st, NULL))
				for (uint32_t j = 0; j < st->cfg->replicas && !keep; j++)
					if (st->reps[j].state == FABD_R_BACKOFF)
						keep = &st->reps[j];
			if (keep)
				fabd_drain_restart(r, keep);
			for (uint32_t j = 0; j < st->reps_cap; j++) {
				fabd_replica *rep = &st->reps[j];
				if (rep == keep)
					continue;
				if (rep->state == FABD_R_BACKOFF ||
				    (rep->state == FABD_R_IDLE && j < st->cfg->replicas)) {
					/* A replica of the pool that will not be
					 * (re)started: done, and its share of the close
					 * quorum closed, or the stages downstream would
					 * wait for the drain time. */
					rep->gen++; /* voids its timer */
					fabd_finish(r, rep);
				} else if (rep->state == FABD_R_IDLE) {
					/* A slot beyond the replicas (room to scale):
					 * never a producer, so nothing to close. */
					rep->state = FABD_R_DONE;
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
		/* No restarts from here on (a drain may have kept some). */
		for (size_t i = 0; i < r->nstages; i++)
			for (uint32_t j = 0; j < r->stages[i].reps_cap; j++)
				if (r->stages[i].reps[j].state == FABD_R_BACKOFF) {
					r->stages[i].reps[j].gen++;
					fabd_finish(r, &r->stages[i].reps[j]);
				}
		fab_ctx_cancel(r->root, 2);
		arm_deadline(r, r->t->grace_ns);
		break;
	case 2:
		r->phase = 3;
		r->phase_gen++;
		if (fabd_running(r) + retiring(r)) {
			fprintf(stderr, "fabd: %s: killing %d replicas\n", why,
				fabd_running(r) + retiring(r));
			r->killed = 1;
		}
		for (size_t i = 0; i < r->nstages; i++)
			for (uint32_t j = 0; j < r->stages[i].reps_cap; j++)
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

void fabd_cancel_all(fabd_sup *r)
{
	if (r->phase == 0)
		shutdown_step(r, "control: cancel");
	if (r->phase == 1)
		shutdown_step(r, "control: cancel");
}

/* ---- counters: a read-only snapshot (metrics exposition) ---- */

int fabd_chan_figures(const fabd_sup *r, const char *name, fi_chan *c)
{
	memset(c, 0, sizeof *c);
	int rc = fi_chan_read(r->t->fabric, name, FI_OBJ_CHAN, c);
	fi_chan_free(c); /* the attach table is not wanted here */
	return rc ? -1 : 0;
}

/* Messages still queued in the file's channels (not the error channel,
 * whose records fabd has logged), each channel named on stderr; 0 when the
 * segments cannot be read (nothing to protect then). */
static uint64_t leftover(const fabd_sup *r)
{
	uint64_t total = 0;
	for (size_t i = 0; i < r->t->nchannels; i++) {
		fi_chan c;
		const char *name = r->t->channels[i].name;
		if (fabd_chan_figures(r, name, &c) == 0 && c.len) {
			fprintf(stderr, "fabd: channel %s still holds %llu message(s)\n", name,
				(unsigned long long)c.len);
			total += c.len;
		}
	}
	return total;
}

/* ---- stage figures: metrics ---- */

/* Count restarts (a replica's start time moved on) and push the figures to
 * the metrics endpoint when they changed. */
static void refresh_figures(fabd_sup *r, fab_metrics_stage *fig)
{
	int changed = 0;
	for (size_t i = 0; i < r->nstages; i++) {
		fabd_stage_rt *st = &r->stages[i];
		for (uint32_t j = 0; j < st->reps_cap; j++)
			if (st->reps[j].started_ns != st->last_start[j]) {
				if (st->last_start[j] && st->reps[j].started_ns) {
					st->restarts_total++;
					st->reps[j].restarts++;
				}
				st->last_start[j] = st->reps[j].started_ns;
			}
		proxy_close(r, st);
		uint32_t up = fabd_stage_up_count(st);
		fab_metrics_stage m = { .name = st->cfg->name,
					.replicas = up,
					.up = up > 0 && !st->failed,
					.restarts = st->restarts_total };
		if (fig && (fig[i].replicas != m.replicas || fig[i].up != m.up ||
			    fig[i].restarts != m.restarts || !fig[i].name)) {
			fig[i] = m;
			changed = 1;
		}
	}
	if (changed && r->metrics && fab_metrics_set_stages(r->metrics, fig, r->nstages) < 0)
		fprintf(stderr, "fabd: metrics: %s\n", fab_metrics_errmsg());
}

static int start_metrics(fabd_sup *r)
{
	const fabd_topology *t = r->t;
	if (!t->metrics.enabled)
		return 0;
	char listen[300];
	if (strchr(t->metrics.host, ':'))
		snprintf(listen, sizeof listen, "[%s]:%u", t->metrics.host, t->metrics.port);
	else
		snprintf(listen, sizeof listen, "%s:%u", t->metrics.host, t->metrics.port);
	if (fab_metrics_start(listen, t->fabric, &r->metrics) < 0) {
		fprintf(stderr, "fabd: metrics at %s: %s\n", listen, fab_metrics_errmsg());
		r->metrics = NULL;
		return -1;
	}
	fprintf(stderr, "fabd: metrics at http://%s/metrics (port %u)\n", listen,
		fab_metrics_port(r->metrics));
	return 0;
}

/* ---- the error channel ---- */

struct fabd_errreader {
	pthread_t th;
	fab_fabric *fab; /* its own handle: the thread's */
	fab_chan *ch;
	fab_ctx *ctx;    /* local; cancelled to stop the thread */
	size_t msg_size;
	int rfd, wfd;
	int started;
	fabd_op op;
	unsigned char part[sizeof(fab_stage_err)];
	size_t plen;
};

static int forward(struct fabd_errreader *e, const void *msg, ssize_t n)
{
	fab_stage_err rec;
	memset(&rec, 0, sizeof rec);
	memcpy(&rec, msg, (size_t)n < sizeof rec ? (size_t)n : sizeof rec);
	if ((size_t)n != sizeof rec)
		rec.size = (uint32_t)n; /* not a record: the loop says so */
	/* sizeof rec <= PIPE_BUF: each write is atomic, whole records only. */
	ssize_t w;
	while ((w = write(e->wfd, &rec, sizeof rec)) < 0 && errno == EINTR)
		;
	return w == (ssize_t)sizeof rec ? 0 : -1;
}

static void *err_thread(void *arg)
{
	struct fabd_errreader *e = arg;
	void *buf = malloc(e->msg_size);
	ssize_t n;
	if (buf) {
		while ((n = fab_recv(e->ch, buf, e->msg_size, e->ctx)) >= 0)
			if (forward(e, buf, n) < 0)
				break;
		if (n != FAB_ECANCELED && n != FAB_ECLOSED && n < 0)
			fprintf(stderr, "fabd: reading the error channel: %s\n", fab_errmsg());
		/* Stopping: pass on what is queued still (stages that reported an
		 * error just before exiting), at most one channel's worth. */
		for (size_t i = 0; i < 65536; i++)
			if ((n = fab_try_recv(e->ch, buf, e->msg_size)) < 0 || forward(e, buf, n) < 0)
				break;
	}
	free(buf);
	close(e->wfd);
	e->wfd = -1;
	return NULL;
}

static void arm_errpipe(fabd_sup *r)
{
	struct io_uring_sqe *sqe = fabd_sqe(r);
	io_uring_prep_poll_add(sqe, r->errs->rfd, POLLIN);
	io_uring_sqe_set_data(sqe, &r->errs->op);
}

/* Messages the stage has handled since fabd started: received on its input
 * channels, or for a source (no input) sent on its output channels.  The
 * error channel is not counted. */
static uint64_t stage_msgs(const fabd_sup *r, const fabd_stage_rt *st)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < st->cfg->nports; i++) {
		const fabd_port *p = &st->cfg->ports[i];
		fi_chan c;
		if (p->target_kind != FABD_TARGET_CHANNEL || p->out != st->source)
			continue;
		if (fabd_chan_figures(r, r->t->channels[p->target].name, &c) == 0)
			sum += st->source ? c.sent : c.received;
	}
	return sum;
}

/* Warn (once per FABD_ERROR_WINDOW_NS) when errors / messages since fabd
 * started passes the threshold.  Evaluated on the stage's first error and
 * then at most every 100 ms while it keeps reporting. */
static void ratio_check(fabd_sup *r, fabd_stage_rt *st)
{
	uint64_t now = fabd_now_ns();
	if (st->err_warned_ns && now - st->err_warned_ns < FABD_ERROR_WINDOW_NS)
		return;
	if (st->err_eval_ns && now - st->err_eval_ns < 100000000ull)
		return;
	st->err_eval_ns = now;
	uint64_t m = stage_msgs(r, st);
	m = m > st->err_base ? m - st->err_base : 0;
	if ((double)st->errors > r->opts.error_ratio * (double)m) {
		st->err_warned_ns = now;
		fprintf(stderr,
			"fabd: warning: stage %s: error ratio %.2f%% (%llu errors / %llu messages) "
			"is above %.2f%%\n",
			st->cfg->name, m ? 100.0 * (double)st->errors / (double)m : 100.0,
			(unsigned long long)st->errors, (unsigned long long)m,
			100.0 * r->opts.error_ratio);
	}
}

static void on_record(fabd_sup *r, const fab_stage_err *rec)
{
	if (rec->size != sizeof *rec) {
		fprintf(stderr, "fabd: error channel: a message of %u bytes is not a "
				"fab_stage_err record; ignored\n",
			rec->size);
		return;
	}
	char stage[sizeof rec->stage + 1], text[FAB_STAGE_ERR_TEXT_MAX];
	size_t n = strnlen(rec->stage, sizeof rec->stage);
	memcpy(stage, rec->stage, n);
	stage[n] = 0;
	size_t tl = rec->text_len < sizeof text - 1 ? rec->text_len : sizeof text - 1;
	tl = strnlen(rec->text, tl);
	for (size_t i = 0; i < tl; i++) /* one line, printable */
		text[i] = (unsigned char)rec->text[i] < 0x20 || rec->text[i] == 0x7f ? ' ' :
										  rec->text[i];
	text[tl] = 0;
	printf("%s.%u | error %d: %s%s\n", n ? stage : "?", rec->replica, rec->code, text,
	       rec->flags & FAB_STAGE_ERR_TRUNCATED ? " [truncated]" : "");
	fabd_stage_rt *st = fabd_stage_by_name(r, stage);
	if (st) {
		st->errors++;
		ratio_check(r, st);
	}
}

/* Read whatever whole records the pipe has; returns 0 at EOF. */
static int errpipe_read(fabd_sup *r)
{
	struct fabd_errreader *e = r->errs;
	for (;;) {
		ssize_t k = read(e->rfd, e->part + e->plen, sizeof e->part - e->plen);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return 1; /* EAGAIN: wait for more */
		if (k == 0)
			return 0;
		e->plen += (size_t)k;
		if (e->plen == sizeof e->part) {
			fab_stage_err rec;
			memcpy(&rec, e->part, sizeof rec);
			e->plen = 0;
			on_record(r, &rec);
		}
	}
}

static int start_errreader(fabd_sup *r)
{
	if (r->t->errors.readers)
		return 0; /* a stage consumes the error channel */
	struct fabd_errreader *e = calloc(1, sizeof *e);
	if (!e)
		return -1;
	r->errs = e;
	e->rfd = e->wfd = -1;
	e->msg_size = r->t->errors.msg_size;
	int p[2];
	if (fab_fabric_open(r->t->fabric, 0, &e->fab) < 0 ||
	    fab_chan_open(e->fab, r->t->errors.name, FAB_RECV, &e->ch) < 0 ||
	    fab_ctx_with_timeout(NULL, INT64_MAX, &e->ctx) < 0) {
		fprintf(stderr, "fabd: error channel %s: %s\n", r->t->errors.name, fab_errmsg());
		return -1;
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		perror("fabd: pipe");
		return -1;
	}
	e->rfd = p[0];
	e->wfd = p[1];
	fcntl(e->rfd, F_SETFL, O_NONBLOCK);
	/* The ratio's baseline: what the stages had handled before us. */
	for (size_t i = 0; i < r->nstages; i++)
		r->stages[i].err_base = stage_msgs(r, &r->stages[i]);
	if (pthread_create(&e->th, NULL, err_thread, e) != 0) {
		fprintf(stderr, "fabd: cannot start the error reader thread\n");
		return -1;
	}
	e->started = 1;
	e->op.kind = FABD_OP_ERRPIPE;
	arm_errpipe(r);
	return 0;
}

/* Stop the reader: it passes on what is still queued, then closes its end;
 * every record up to there is logged. */
static void stop_errreader(fabd_sup *r)
{
	struct fabd_errreader *e = r->errs;
	if (!e)
		return;
	if (e->started) {
		fab_ctx_cancel(e->ctx, 1);
		fcntl(e->rfd, F_SETFL, 0);
		while (errpipe_read(r))
			;
		pthread_join(e->th, NULL);
	}
	if (e->rfd >= 0)
		close(e->rfd);
	if (e->wfd >= 0)
		close(e->wfd);
	fab_chan_release(e->ch);
	fab_ctx_release(e->ctx);
	if (e->fab)
		fab_fabric_close(e->fab);
	free(e);
	r->errs = NULL;
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
		if (rep->state == FABD_R_RUNNING && op->gen == rep->gen) {
			if (rep->idx >= rep->st->cfg->replicas)
				retired_died(r, rep);
			else
				fabd_replica_died(r, rep);
		}
		break;
	}
	case FABD_OP_ERRPIPE:
		if (r->errs && errpipe_read(r))
			arm_errpipe(r);
		break;
	case FABD_OP_CTL_LISTEN:
	case FABD_OP_CTL_CONN:
		fabd_control_event(r, op, cqe->res);
		break;
	case FABD_OP_PIPE:
		fabd_pipe_read_done(r, op, cqe->res);
		break;
	case FABD_OP_BACKOFF:
		fabd_replica_backoff_done(r, op->obj, op->gen);
		fabd_timer_done(op);
		break;
	case FABD_OP_WATCHDOG:
		fabd_watchdog_tick(r, op);
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
			for (uint32_t j = 0; j < st->reps_cap; j++)
				if (st->reps[j].pidfd >= 0)
					close(st->reps[j].pidfd);
		free(st->reps);
		free(st->last_start);
		free(st->restarts);
		fab_ctx_release(st->ctx);
	}
	free(r->stages);
	free(r->fig);
	free(r->dl_closed);
	fab_ctx_release(r->root);
	if (r->fab)
		fab_fabric_close(r->fab);
	if (r->sigfd >= 0)
		close(r->sigfd);
}

/* Can stage programs be executed as fabd will run them (execvpe: a name
 * with a '/' as is, else searched in fabd's PATH)?  0, or -1 with the
 * reason in why.  fabd run reports this before it touches the fabric
 * (topology.md: what check cannot know, run reports when it starts); an
 * exec failure was retried as a crash loop until the restart intensity
 * gave up (found by an operator trial). */
static int fabd_program_ok(const char *prog, char *why, size_t wn)
{
	struct stat sb;
	if (strchr(prog, '/')) {
		if (access(prog, X_OK) != 0) {
			snprintf(why, wn, "%s", strerror(errno));
			return -1;
		}
		if (stat(prog, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			snprintf(why, wn, "not a regular file");
			return -1;
		}
		return 0;
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/bin:/usr/bin";
	for (const char *d = path; *d;) {
		const char *e = strchr(d, ':');
		size_t dl = e ? (size_t)(e - d) : strlen(d);
		char full[4096];
		if (dl + 1 + strlen(prog) < sizeof full) {
			snprintf(full, sizeof full, "%.*s/%s", (int)dl, dl ? d : ".", prog);
			if (access(full, X_OK) == 0 && stat(full, &sb) == 0 && S_ISREG(sb.st_mode))
				return 0;
		}
		if (!e)
			break;
		d = e + 1;
	}
	snprintf(why, wn, "not found in PATH (%s)", path);
	return -1;
}

int fabd_run(const fabd_topology *t, const fabd_run_opts *o)
{
	for (size_t i = 0; i < t->nstages; i++) {
		char why[256];
		if (fabd_program_ok(t->stages[i].argv[0], why, sizeof why) < 0) {
			fprintf(stderr, "fabd: stage %s: cannot run '%s': %s\n", t->stages[i].name,
				t->stages[i].argv[0], why);
			return FABD_EXIT_SETUP;
		}
	}
	fabd_sup run, *r = &run;
	memset(r, 0, sizeof *r);
	r->t = t;
	r->opts = *o;
	r->sigfd = -1;
	r->self = getpid();
	srandom((unsigned)(fabd_now_ns() ^ (uint64_t)r->self));
	/* fabd keeps about three descriptors per replica (its pidfd and the
	 * read ends of its output pipes): with the usual soft limit of 1024 a
	 * topology of a few hundred replicas ran out ("pipe: Too many open
	 * files", a resource-exhaustion trial, 28 Nov).  Raise the soft limit
	 * to the hard one, as Go's runtime does, and give every stage the
	 * limit fabd was started with (supervise.c, before exec). */
	if (getrlimit(RLIMIT_NOFILE, &r->nofile_orig) == 0 &&
	    r->nofile_orig.rlim_cur < r->nofile_orig.rlim_max) {
		struct rlimit up = {r->nofile_orig.rlim_max, r->nofile_orig.rlim_max};
		r->nofile_raised = setrlimit(RLIMIT_NOFILE, &up) == 0;
	}

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
	/* The control socket first: a second fabd of this fabric finds the
	 * first one answering there and stops before touching the fabric. */
	if (fabd_control_start(r) < 0)
		goto out;
	/* A fabric of another user is not ours to run: one that lets us in may
	 * have been planted (0666) to read or feed our pipeline (found by
	 * review).  Root is no exception. */
	if (existed && sb.st_uid != geteuid()) {
		fprintf(stderr,
			"fabd: fabric %s exists and belongs to uid %u, not to fabd's uid %u; "
			"refusing to run it (remove it with `fabctl rm --force %s` as its owner or "
			"root)\n",
			t->fabric, (unsigned)sb.st_uid, (unsigned)geteuid(), t->fabric);
		goto out;
	}
	/* The topology's mode (default 0600) goes to the control segment and,
	 * by inheritance, to every channel and topic fabd creates in it. */
	if (fab_fabric_open(t->fabric, FAB_CREATE | FAB_MODE(t->mode), &r->fab) < 0) {
		fprintf(stderr, "fabd: fabric %s: %s\n", t->fabric, fab_errmsg());
		goto out;
	}
	if (existed && (sb.st_mode & 0777) != t->mode)
		fprintf(stderr,
			"fabd: fabric %s exists with mode %04o, the topology asks %04o; it keeps "
			"%04o (fabctl rm %s, then run again, to change it)\n",
			t->fabric, (unsigned)(sb.st_mode & 0777), (unsigned)t->mode,
			(unsigned)(sb.st_mode & 0777), t->fabric);
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
		st->mcfg = t->stages[i]; /* shallow: ports and env stay t's */
		st->cfg = &st->mcfg;
		st->declared = st->cfg->max_replicas;
		st->index = i;
		st->reps_cap = st->cfg->max_replicas > FABD_SCALE_MAX ? st->cfg->max_replicas :
									    FABD_SCALE_MAX;
		st->reps = calloc(st->reps_cap, sizeof *st->reps);
		st->last_start = calloc(st->reps_cap, sizeof *st->last_start);
		if (!st->reps || !st->last_start)
			goto out;
		st->source = 1;
		for (size_t p = 0; p < st->cfg->nports; p++) {
			if (!st->cfg->ports[p].out)
				st->source = 0;
			else if (st->cfg->ports[p].target_kind == FABD_TARGET_CHANNEL)
				st->writer = 1;
		}
		for (uint32_t j = 0; j < st->reps_cap; j++) {
			st->reps[j].st = st;
			st->reps[j].idx = j;
			st->reps[j].pidfd = -1;
		}
		build_ports(t, st);
	}
	if (!(r->fig = calloc(t->nstages + 1, sizeof *r->fig)) ||
	    !(r->dl_closed = calloc(t->nchannels + 1, 1)))
		goto out;
	if (create_objects(r) < 0 || create_contexts(r) < 0 || start_metrics(r) < 0 ||
	    start_errreader(r) < 0 || fabd_watchdog_start(r) < 0)
		goto out;
	/* A previous fabd may have died between marking a replica restarting
	 * and starting its next process: that replica would never close.
	 * (On a new fabric there is nothing to clear; cheap anyway.) */
	fabd_unmark_all(r);

	arm_signal(r);
	code = FABD_EXIT_OK;
	for (size_t i = 0; i < r->nstages && !r->phase; i++) {
		for (uint32_t j = 0; j < r->stages[i].cfg->replicas; j++) {
			fabd_replica *rep = &r->stages[i].reps[j];
			if (fabd_replica_spawn(r, rep) < 0) {
				/* It will not run: done, and its share of the
				 * outputs' quorum closed, as every other give-up
				 * does (fabd_finish); left open, the channels it
				 * writes would close only when the drain time
				 * cancels the pipeline. */
				rep->last_failed = 1;
				r->stage_failed = 1;
				fabd_finish(r, rep);
				fabd_begin_drain(r, "a replica could not be started");
				break;
			}
		}
	}

	/* Run until no replica is running or waiting to restart, and every
	 * output pipe has been read to its end. */
	refresh_figures(r, r->fig);
	while (fabd_pending(r) || retiring(r) || r->live_pipes) {
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
		refresh_figures(r, r->fig);
	}
	stop_errreader(r); /* logs the records still queued */
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
	stop_errreader(r); /* (a setup failure) */
	/* Timers still pending (a drain deadline) die with the ring; then no op
	 * is in flight on the control sockets. */
	io_uring_queue_exit(&r->ring);
	fabd_control_stop(r);
	fab_metrics_stop(r->metrics);
	r->metrics = NULL;
	while (r->timers.next && r->timers.next != &r->timers)
		fabd_timer_done(r->timers.next);
	fabd_watchdog_stop(r);
	teardown(r);
	if (!r->opts.keep && code != FABD_EXIT_SETUP) {
		/* Never destroy queued messages: a fabric that still holds any
		 * (a stage that failed for good, a cancel, a consumer that
		 * exited early) is kept for inspection, and the exit says so. */
		uint64_t left = leftover(r);
		if (left) {
			fprintf(stderr,
				"fabd: %llu message(s) still queued: the fabric's segments are kept; "
				"see `fabctl -f %s chan` and `fabctl -f %s peek CHANNEL`, remove them "
				"with `fabctl rm %s`\n",
				(unsigned long long)left, t->fabric, t->fabric, t->fabric);
			if (code == FABD_EXIT_OK)
				code = FABD_EXIT_LEFTOVER;
		} else if (fab_fabric_destroy(t->fabric) < 0 && fab_errmsg()[0]) {
			fprintf(stderr, "fabd: removing fabric %s: %s\n", t->fabric, fab_errmsg());
		}
	} else if (code == FABD_EXIT_SETUP && !existed) {
		fab_fabric_destroy(t->fabric); /* nothing of ours to keep */
	}
	return code;
}
