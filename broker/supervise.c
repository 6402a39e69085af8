/* supervise.c - one stage replica's life under fabd: spawn it with the
 * stage environment (docs/stage.md), multiplex its output with a
 * "stage.replica | " prefix, and on its death reap it, recover what it held
 * in the fabric and apply the stage's restart policy (restart, backoff with
 * jitter, intensity, strategy).
 *
 * Everything here runs on fabd's one thread, from the io_uring loop in
 * run.c; nothing blocks except fork() and the writes to fabd's stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run.h"

extern char **environ;

/* Output of one pipe (a replica's stdout or stderr), line-buffered.  It
 * lives until the pipe reaches EOF, independently of the replica: a
 * restarted replica gets new pipes while the old ones may still hold the
 * last lines of its predecessor. */
typedef struct fabd_pipe {
	fabd_op op;
	int fd;
	char prefix[2 * FAB_NAME_MAX + 16];
	size_t len;
	char buf[4096];
} fabd_pipe;

uint64_t fabd_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A submission entry; submits the queue first when it is full. */
struct io_uring_sqe *fabd_sqe(fabd_sup *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	while (!sqe) {
		io_uring_submit(&r->ring);
		sqe = io_uring_get_sqe(&r->ring);
	}
	return sqe;
}

void fabd_arm_timer(fabd_sup *r, fabd_op *op, uint64_t ns)
{
	op->ts.tv_sec = (long long)(ns / 1000000000ull);
	op->ts.tv_nsec = (long long)(ns % 1000000000ull);
	if (!r->timers.next)
		r->timers.next = r->timers.prev = &r->timers;
	op->next = r->timers.next;
	op->prev = &r->timers;
	r->timers.next->prev = op;
	r->timers.next = op;
	struct io_uring_sqe *sqe = fabd_sqe(r);
	io_uring_prep_timeout(sqe, &op->ts, 0, 0);
	io_uring_sqe_set_data(sqe, op);
}

void fabd_timer_done(fabd_op *op)
{
	op->prev->next = op->next;
	op->next->prev = op->prev;
	free(op);
}

static void arm_pipe(fabd_sup *r, fabd_pipe *p)
{
	struct io_uring_sqe *sqe = fabd_sqe(r);
	io_uring_prep_read(sqe, p->fd, p->buf + p->len, (unsigned)(sizeof p->buf - p->len), 0);
	io_uring_sqe_set_data(sqe, &p->op);
}

static void emit(const fabd_pipe *p, const char *s, size_t n)
{
	fputs(p->prefix, stdout);
	fwrite(s, 1, n, stdout);
	fputc('\n', stdout);
}

/* A read on a pipe completed: print every complete line with the prefix;
 * at EOF (or an error) print the unterminated rest and free the reader. */
void fabd_pipe_read_done(fabd_sup *r, fabd_op *op, int res)
{
	fabd_pipe *p = op->obj;
	if (res > 0) {
		p->len += (size_t)res;
		size_t start = 0;
		for (size_t i = 0; i < p->len; i++) {
			if (p->buf[i] == '\n') {
				emit(p, p->buf + start, i - start);
				start = i + 1;
			}
		}
		if (start == 0 && p->len == sizeof p->buf) {
			/* A line longer than the buffer: print it in pieces rather
			 * than stall the child. */
			emit(p, p->buf, p->len);
			start = p->len;
		}
		memmove(p->buf, p->buf + start, p->len - start);
		p->len -= start;
		fflush(stdout);
		arm_pipe(r, p);
		return;
	}
	if (res == -EINTR || res == -EAGAIN) {
		arm_pipe(r, p);
		return;
	}
	if (p->len)
		emit(p, p->buf, p->len);
	fflush(stdout);
	close(p->fd);
	free(p);
	r->live_pipes--;
}

static int new_pipe(fabd_sup *r, fabd_replica *rep, int *child_end)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	fabd_pipe *p = calloc(1, sizeof *p);
	if (!p) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	p->op.kind = FABD_OP_PIPE;
	p->op.obj = p;
	p->fd = fds[0];
	snprintf(p->prefix, sizeof p->prefix, "%s.%u | ", rep->st->cfg->name, rep->idx);
	*child_end = fds[1];
	r->live_pipes++;
	arm_pipe(r, p);
	return 0;
}

static int fab_key(const char *kv)
{
	static const char *const keys[] = { "FAB_FABRIC=", "FAB_STAGE=",  "FAB_REPLICA=",
					    "FAB_PRODUCER_ID=", "FAB_PORTS=", "FAB_CTX=",
					    "FAB_ERRORS=", NULL };
	for (int i = 0; keys[i]; i++)
		if (!strncmp(kv, keys[i], strlen(keys[i])))
			return 1;
	return 0;
}

static int same_key(const char *a, const char *b)
{
	size_t n = strcspn(a, "=");
	return !strncmp(a, b, n) && b[n] == '=';
}

/* The replica's environment: fabd's own (without the stage variables and
 * without keys the stage's env sets), then the stage's env, then the stage
 * API variables, which always win.  Returns a malloc'd array of malloc'd
 * strings, NULL-terminated, or NULL when out of memory. */
static char **build_env(fabd_sup *r, fabd_replica *rep)
{
	const fabd_stage *s = rep->st->cfg;
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + s->nenv + 8, sizeof *env);
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (fab_key(environ[i]))
			continue;
		int shadowed = 0;
		for (size_t j = 0; j < s->nenv && !shadowed; j++)
			shadowed = same_key(environ[i], s->env[j]);
		if (!shadowed)
			env[k++] = strdup(environ[i]);
	}
	for (size_t j = 0; j < s->nenv; j++)
		if (!fab_key(s->env[j]))
			env[k++] = strdup(s->env[j]);
	char tmp[8300];
	snprintf(tmp, sizeof tmp, "FAB_FABRIC=%s", r->t->fabric);
	env[k++] = strdup(tmp);
	snprintf(tmp, sizeof tmp, "FAB_STAGE=%s", s->name);
	env[k++] = strdup(tmp);
	snprintf(tmp, sizeof tmp, "FAB_REPLICA=%u", rep->idx);
	env[k++] = strdup(tmp);
	snprintf(tmp, sizeof tmp, "FAB_PRODUCER_ID=%s.%u", s->name, rep->idx);
	env[k++] = strdup(tmp);
	snprintf(tmp, sizeof tmp, "FAB_PORTS=%s", rep->st->ports);
	env[k++] = strdup(tmp);
	snprintf(tmp, sizeof tmp, "FAB_CTX=%s", rep->st->ctx_name);
	env[k++] = strdup(tmp);
	snprintf(tmp, sizeof tmp, "FAB_ERRORS=%s", r->t->errors.name);
	env[k++] = strdup(tmp);
	for (size_t i = 0; i < k; i++) {
		if (!env[i]) {
			for (size_t j = 0; j < k; j++)
				free(env[j]);
			free(env);
			return NULL;
		}
	}
	return env;
}

static void free_env(char **env)
{
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
}

static void arm_pidfd(fabd_sup *r, fabd_replica *rep)
{
	rep->pid_op.kind = FABD_OP_PIDFD;
	rep->pid_op.obj = rep;
	rep->pid_op.gen = rep->gen;
	struct io_uring_sqe *sqe = fabd_sqe(r);
	io_uring_prep_poll_add(sqe, rep->pidfd, POLLIN);
	io_uring_sqe_set_data(sqe, &rep->pid_op);
}

/* fabd will run replica `rep` (again): a restart, a scale up, a first
 * start on a re-attached fabric.  A previous process under its producer id
 * ("<stage>.<replica>") may have closed its out channels -- a stage that
 * closes on SIGTERM when scaled down or restarted, or one that closed and
 * then failed -- and the close quorum would still count that close: the
 * channel would close when the other producers close, while the new process
 * still sends (its sends failing with FAB_ECLOSED).  So fabd withdraws that
 * close (fab_chan_rejoin_as), as Go's wg.Add(1) before a goroutine that will
 * send; the new process's own close then counts.  A channel already closed
 * stays closed.  No process of the replica runs at this point (it was
 * reaped).  Returns 0, or -1 when an out channel is closed (its name in
 * closed[0..n) when closed is not NULL). */
int fabd_rejoin(fabd_sup *r, fabd_replica *rep, char *closed, size_t n)
{
	const fabd_stage *s = rep->st->cfg;
	char id[2 * FAB_NAME_MAX + 16];
	int ret = 0;
	snprintf(id, sizeof id, "%s.%u", s->name, rep->idx);
	for (size_t i = 0; i < s->nports; i++) {
		const fabd_port *p = &s->ports[i];
		if (!p->out || p->target_kind != FABD_TARGET_CHANNEL)
			continue; /* the error channel is never closed by stages */
		const char *name = r->t->channels[p->target].name;
		fab_chan *ch;
		int rc = fab_chan_open(r->fab, name, FAB_SEND, &ch);
		if (rc == 0) {
			rc = fab_chan_rejoin_as(ch, id);
			if (rc < 0 && rc != FAB_ECLOSED)
				fprintf(stderr, "fabd: %s: rejoining channel %s: %s\n", id, name,
					fab_errmsg());
			fab_chan_release(ch);
		} else {
			fprintf(stderr, "fabd: %s: rejoining channel %s: %s\n", id, name,
				fab_errmsg());
		}
		if (rc == FAB_ECLOSED) {
			if (!ret && closed)
				snprintf(closed, n, "%s", name);
			ret = -1;
		}
	}
	/* Its share is open again: fabd closes it anew if the replica ends
	 * up beyond the replicas (run.c proxy_close). */
	if (rep->idx < 64)
		rep->st->proxy_closed &= ~(1ull << rep->idx);
	return ret;
}

void fabd_mark_restarting(fabd_sup *r, fabd_replica *rep, int on)
{
	fabd_stage_rt *st = rep->st;
	if (rep->idx >= 64) {
		if (on)
			fprintf(stderr, "fabd: %s.%u: replicas above 63 have no restart mark: "
					"a close on SIGTERM counts\n",
				st->cfg->name, rep->idx);
		return;
	}
	uint64_t bit = 1ull << rep->idx;
	if (!on && !(st->restarting & bit))
		return; /* not marked by us (fabd_unmark_all cleared the rest) */
	if (fab_stage_restarting(r->fab, st->cfg->name, rep->idx, on) < 0) {
		fprintf(stderr, "fabd: %s.%u: %s the restart mark: %s\n", st->cfg->name, rep->idx,
			on ? "setting" : "clearing", fab_errmsg());
		if (on)
			return; /* unmarked: a close on SIGTERM counts, as before the mark */
	}
	if (on)
		st->restarting |= bit;
	else
		st->restarting &= ~bit;
}

void fabd_unmark_all(fabd_sup *r)
{
	for (size_t i = 0; i < r->nstages; i++) {
		fabd_stage_rt *st = &r->stages[i];
		for (uint32_t j = 0; j < 64; j++)
			if (fab_stage_restarting(r->fab, st->cfg->name, j, 0) < 0) {
				fprintf(stderr, "fabd: stage %s: clearing the restart marks: %s\n",
					st->cfg->name, fab_errmsg());
				break;
			}
		st->restarting = 0;
	}
}

/* Start the replica: fork + exec with the stage environment, stdout and
 * stderr on pipes, PR_SET_PDEATHSIG(SIGKILL) so it cannot outlive fabd.
 * Returns 0 (state RUNNING) or -1 with a message printed (the caller treats
 * it as a failed start: the child could not even be created). */
int fabd_replica_spawn(fabd_sup *r, fabd_replica *rep)
{
	const fabd_stage *s = rep->st->cfg;
	int out_w = -1, err_w = -1;
	/* The previous process (stopped by `restart`) has exited: the new
	 * one closes its outputs when it finishes. */
	fabd_mark_restarting(r, rep, 0);
	fabd_rejoin(r, rep, NULL, 0); /* a closed channel: the replica will see it */
	char **env = build_env(r, rep);
	if (!env) {
		fprintf(stderr, "fabd: %s.%u: out of memory\n", s->name, rep->idx);
		return -1;
	}
	if (new_pipe(r, rep, &out_w) < 0 || new_pipe(r, rep, &err_w) < 0) {
		fprintf(stderr, "fabd: %s.%u: pipe: %s\n", s->name, rep->idx, strerror(errno));
		if (out_w >= 0)
			close(out_w);
		free_env(env);
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		/* The child: only async-signal-safe work from here to exec. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != r->self)
			_exit(127); /* fabd already died before the prctl took effect */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0) {
			dup2(devnull, 0);
			close(devnull);
		}
		dup2(out_w, 1);
		dup2(err_w, 2);
		if (r->nofile_raised)
			setrlimit(RLIMIT_NOFILE, &r->nofile_orig); /* a system call */
		execvpe(s->argv[0], s->argv, env);
		/* Name what could not run (found by an operator trial: the
		 * message named nothing).  After fork in a threaded process:
		 * write(2) and strerrordesc_np (a table lookup; strerror may
		 * take locale locks) only, errno saved first. */
		int e = errno;
		static const char msg[] = "fabd: exec ";
		ssize_t wr = write(2, msg, sizeof msg - 1);
		wr = write(2, s->argv[0], strlen(s->argv[0]));
		const char *es = strerrordesc_np(e);
		wr = write(2, ": ", 2);
		if (es)
			wr = write(2, es, strlen(es));
		wr = write(2, "\n", 1);
		(void)wr;
		_exit(127);
	}
	int saved = errno;
	close(out_w);
	close(err_w);
	free_env(env);
	if (pid < 0) {
		fprintf(stderr, "fabd: %s.%u: fork: %s\n", s->name, rep->idx, strerror(saved));
		return -1;
	}
	rep->pid = pid;
	rep->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (rep->pidfd < 0) {
		/* Cannot happen for our own unreaped child short of EMFILE; without
		 * a pidfd we could not watch it, so do not leave it running. */
		fprintf(stderr, "fabd: %s.%u: pidfd_open: %s\n", s->name, rep->idx,
			strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		rep->pid = 0;
		return -1;
	}
	rep->gen++;
	rep->state = FABD_R_RUNNING;
	rep->started_ns = fabd_now_ns();
	rep->restart_on_exit = 0;
	rep->wd_fired = 0;
	arm_pidfd(r, rep);
	return 0;
}

void fabd_kill(fabd_replica *rep, int sig)
{
	if (rep->state == FABD_R_RUNNING && rep->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, rep->pidfd, sig, NULL, 0);
}

int fabd_running(const fabd_sup *r)
{
	int n = 0;
	for (size_t i = 0; i < r->nstages; i++)
		for (uint32_t j = 0; j < r->stages[i].cfg->replicas; j++)
			n += r->stages[i].reps[j].state == FABD_R_RUNNING;
	return n;
}

int fabd_pending(const fabd_sup *r)
{
	int n = 0;
	for (size_t i = 0; i < r->nstages; i++)
		for (uint32_t j = 0; j < r->stages[i].cfg->replicas; j++)
			n += r->stages[i].reps[j].state == FABD_R_RUNNING ||
			     r->stages[i].reps[j].state == FABD_R_BACKOFF;
	return n;
}

/* The delay before restart number `attempt` (0-based): min * 2^attempt
 * capped at max, then "equal jitter": a uniform draw in [d/2, d], never
 * below min.  Jitter keeps the replicas of a pool that died together (a
 * shared dependency went away) from coming back in lockstep. */
static uint64_t backoff_ns(const fabd_stage *s, uint32_t attempt)
{
	uint64_t d = s->backoff_min_ns;
	for (uint32_t i = 0; i < attempt && d < s->backoff_max_ns; i++)
		d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
	if (d > s->backoff_max_ns)
		d = s->backoff_max_ns;
	uint64_t half = d / 2;
	uint64_t j = half ? (((uint64_t)random() << 31) ^ (uint64_t)random()) % (half + 1) : 0;
	d = half + j;
	return d < s->backoff_min_ns ? s->backoff_min_ns : d;
}

/* Count a restart of stage `st` now; returns 1 when that exceeds the
 * stage's intensity (more than intensity_max restarts within the window). */
static int count_restart(fabd_stage_rt *st)
{
	uint64_t now = fabd_now_ns(), win = st->cfg->intensity_window_ns;
	size_t k = 0;
	for (size_t i = 0; i < st->nrestarts; i++)
		if (now - st->restarts[i] < win)
			st->restarts[k++] = st->restarts[i];
	st->nrestarts = k;
	if (st->nrestarts == st->restarts_cap) {
		size_t cap = st->restarts_cap ? st->restarts_cap * 2 : 8;
		uint64_t *v = realloc(st->restarts, cap * sizeof *v);
		if (!v)
			return 1; /* cannot track: treat as exceeded, fail safe */
		st->restarts = v;
		st->restarts_cap = cap;
	}
	st->restarts[st->nrestarts++] = now;
	return st->nrestarts > st->cfg->intensity_max;
}

/* A replica that will not run again (failed under `restart: never`, its
 * stage failed, or it died during a drain) can no longer close its out
 * channels, and each of them waits for a close quorum of all its writers:
 * without its share every stage downstream would wait for ever.  So fabd
 * closes them in its name: a handle opened with FAB_PRODUCER_ID set to the
 * replica's id counts as that producer, and a second close by one producer
 * is FAB_ECLOSED, never counted twice (docs/channels.md "Close"), which makes
 * this harmless for a replica that did close before it exited. */
static void close_for(fabd_sup *r, fabd_replica *rep)
{
	const fabd_stage *s = rep->st->cfg;
	char id[2 * FAB_NAME_MAX + 16];
	/* Not restarting any more (a replica `restart` stopped and that a
	 * drain or a failure ends): fabd closes for it below. */
	fabd_mark_restarting(r, rep, 0);
	snprintf(id, sizeof id, "%s.%u", s->name, rep->idx);
	for (size_t i = 0; i < s->nports; i++) {
		const fabd_port *p = &s->ports[i];
		if (!p->out || p->target_kind != FABD_TARGET_CHANNEL)
			continue; /* the error channel is never closed by stages */
		fabd_close_as(r, r->t->channels[p->target].name, id);
	}
	fabd_close_dead_letters(r);
}

/* Close channel `name` as producer `id` (fab_chan_close_as): 1 if this
 * completed our share, 0 if it was closed already, -1 on an error (logged). */
int fabd_close_as(fabd_sup *r, const char *name, const char *id)
{
	fab_chan *ch;
	if (fab_chan_open(r->fab, name, FAB_SEND, &ch) < 0)
		return 0; /* e.g. already closed by the whole quorum */
	int rc = fab_chan_close_as(ch, id);
	if (rc == 0)
		fprintf(stderr, "fabd: %s: closed channel %s for it\n", id, name);
	else if (rc != FAB_ECLOSED)
		fprintf(stderr, "fabd: %s: closing channel %s for it: %s\n", id, name, fab_errmsg());
	fab_chan_release(ch);
	return rc == 0 ? 1 : rc == FAB_ECLOSED ? 0 : -1;
}

/* A dead-letter channel is written by the library on behalf of the
 * receivers of its source channels; fabd holds one share of its close
 * quorum ("fabd.dead-letter", counted in by run.c) and closes it once no
 * replica of any stage reading a source channel can run again, so its
 * readers (a quarantine stage) see the end like any other stage. */
void fabd_close_dead_letters(fabd_sup *r)
{
	const fabd_topology *t = r->t;
	for (size_t d = 0; d < t->nchannels; d++) {
		if (!t->channels[d].dl_sources || (r->dl_closed && r->dl_closed[d]))
			continue;
		int live = 0;
		for (size_t c = 0; c < t->nchannels && !live; c++) {
			if (t->channels[c].dead_letter != (int)d)
				continue;
			for (size_t i = 0; i < r->nstages && !live; i++) {
				fabd_stage_rt *st = &r->stages[i];
				int reads = 0;
				for (size_t p = 0; p < st->cfg->nports; p++)
					if (!st->cfg->ports[p].out &&
					    st->cfg->ports[p].target_kind == FABD_TARGET_CHANNEL &&
					    st->cfg->ports[p].target == (int)c)
						reads = 1;
				for (uint32_t j = 0; reads && j < st->reps_cap && !live; j++)
					live = st->reps[j].state == FABD_R_RUNNING ||
					       st->reps[j].state == FABD_R_BACKOFF;
			}
		}
		if (live)
			continue;
		if (r->dl_closed)
			r->dl_closed[d] = 1;
		fabd_close_as(r, t->channels[d].name, FABD_DL_PRODUCER);
	}
}

/* The replica will not run again: it is done, and fabd closes its share of
 * its out channels' close quorum (close_for). */
void fabd_finish(fabd_sup *r, fabd_replica *rep)
{
	rep->state = FABD_R_DONE;
	close_for(r, rep);
}

/* During a drain (phase 1), does stage `st` still need a replica started?
 * A drain needs the consumers: a stage that reads channels (not a source,
 * not failed) with no replica running would leave its input queued, and
 * the stages upstream blocked, until the drain time cancels everything.
 * One replica is enough: its peers' shares of the quorum are closed. */
int fabd_drain_needs(const fabd_sup *r, const fabd_stage_rt *st, const fabd_replica *except)
{
	if (r->phase != 1 || st->source || st->failed)
		return 0;
	for (uint32_t j = 0; j < st->reps_cap; j++)
		if (st->reps[j].state == FABD_R_RUNNING && &st->reps[j] != except)
			return 0;
	/* ... and only while an input may still deliver: not closed, or
	 * closed with messages left (fab_chan_stats through a receiving
	 * handle, which takes no spsc end until it receives). */
	for (size_t i = 0; i < st->cfg->nports; i++) {
		const fabd_port *p = &st->cfg->ports[i];
		if (p->out || p->target_kind != FABD_TARGET_CHANNEL)
			continue;
		fab_chan *ch;
		if (fab_chan_open(r->fab, r->t->channels[p->target].name, FAB_RECV, &ch) < 0)
			return 1; /* cannot tell: start it */
		fab_stats s;
		memset(&s, 0, sizeof s);
		s.size = sizeof s;
		int rc = fab_chan_stats(ch, &s);
		fab_chan_release(ch);
		if (rc < 0 || !s.closed || s.len > 0 || s.leased > 0)
			return 1;
	}
	return 0;
}

/* Start `rep` now, during a drain, instead of after its backoff; a failed
 * start fails the stage (the drain goes on without it). */
void fabd_drain_restart(fabd_sup *r, fabd_replica *rep)
{
	const fabd_stage *s = rep->st->cfg;
	fprintf(stderr, "fabd: %s.%u: restarting at once: the drain needs a consumer\n", s->name,
		rep->idx);
	rep->gen++; /* voids a pending backoff timer */
	if (fabd_replica_spawn(r, rep) < 0) {
		rep->last_failed = 1;
		rep->st->failed = 1;
		r->stage_failed = 1;
		fabd_finish(r, rep);
	}
}

static void schedule_restart(fabd_sup *r, fabd_replica *rep)
{
	const fabd_stage *s = rep->st->cfg;
	/* It will send again: its share is open from now on, not only from
	 * its spawn, or the other producers could close the channel during
	 * the backoff. */
	fabd_rejoin(r, rep, NULL, 0);
	/* A replica that stayed up longer than the longest delay was healthy:
	 * its next failure starts the backoff from the beginning again. */
	if (rep->started_ns && fabd_now_ns() - rep->started_ns >= s->backoff_max_ns)
		rep->attempt = 0;
	uint64_t d = backoff_ns(s, rep->attempt);
	if (rep->attempt < 63)
		rep->attempt++;
	rep->gen++;
	rep->state = FABD_R_BACKOFF;
	fabd_op *op = calloc(1, sizeof *op);
	if (!op) {
		fprintf(stderr, "fabd: %s.%u: out of memory, not restarted\n", s->name, rep->idx);
		fabd_finish(r, rep);
		return;
	}
	op->kind = FABD_OP_BACKOFF;
	op->obj = rep;
	op->gen = rep->gen;
	fabd_arm_timer(r, op, d);
	fprintf(stderr, "fabd: %s.%u: restarting in %llu ms\n", s->name, rep->idx,
		(unsigned long long)(d / 1000000));
}

void fabd_replica_backoff_done(fabd_sup *r, fabd_replica *rep, uint64_t gen)
{
	if (rep->state != FABD_R_BACKOFF || rep->gen != gen)
		return; /* voided: drain started, or the state moved on */
	if (r->phase) {
		if (fabd_drain_needs(r, rep->st, rep))
			fabd_drain_restart(r, rep);
		else
			fabd_finish(r, rep);
		return;
	}
	if (fabd_replica_spawn(r, rep) < 0) {
		/* fork/pipe failure: a failed start, counted like a crash. */
		rep->last_failed = 1;
		rep->state = FABD_R_DONE;
		if (count_restart(rep->st)) {
			rep->st->failed = 1;
			r->stage_failed = 1;
			close_for(r, rep);
			fabd_begin_drain(r, "a stage could not be restarted");
			return;
		}
		schedule_restart(r, rep);
	}
}

/* Which replicas a restart of `rep` takes down with it (strategy). */
static void restart_siblings(fabd_sup *r, fabd_replica *rep)
{
	fabd_strategy how = rep->st->cfg->strategy;
	if (how == FABD_ONE_FOR_ONE)
		return;
	size_t from = how == FABD_ONE_FOR_ALL ? 0 : rep->st->index;
	for (size_t i = from; i < r->nstages; i++) {
		fabd_stage_rt *st = &r->stages[i];
		for (uint32_t j = 0; j < st->cfg->replicas; j++) {
			fabd_replica *o = &st->reps[j];
			if (o == rep)
				continue;
			if (o->state == FABD_R_RUNNING) {
				/* SIGKILL, not a cancel: a stage context cannot be reset
				 * once cancelled, and the restarted replicas need a live
				 * one.  fab_fabric_recover repairs what it held. */
				o->restart_on_exit = 1;
				fabd_kill(o, SIGKILL);
			}
			/* Replicas that already finished (exited 0) stay done: their
			 * input is closed, a restart would find nothing to do. */
		}
	}
}

static void describe(const fabd_replica *rep, const siginfo_t *si, char *buf, size_t n)
{
	if (si->si_code == CLD_EXITED)
		snprintf(buf, n, "exited with status %d", si->si_status);
	else
		snprintf(buf, n, "killed by signal %d (%s)%s%s", si->si_status,
			 strsignal(si->si_status), si->si_code == CLD_DUMPED ? ", core dumped" : "",
			 rep->wd_fired ? " by the watchdog" : "");
}

/* The replica's pidfd became readable: reap it, recover, decide. */
void fabd_replica_died(fabd_sup *r, fabd_replica *rep)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, (id_t)rep->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) {
		/* Spurious readiness is not expected; look again. */
		arm_pidfd(r, rep);
		return;
	}
	close(rep->pidfd);
	rep->pidfd = -1;
	rep->pid = 0;
	rep->gen++;
	/* Free what the dead process held: ring slots, leases, spsc ends,
	 * subscriptions.  At most 64 dead entries per call, so loop. */
	for (int i = 0; i < 16; i++) {
		int n = fab_fabric_recover(r->fab);
		if (n <= 0) {
			if (n < 0)
				fprintf(stderr, "fabd: fab_fabric_recover: %s\n", fab_errmsg());
			break;
		}
	}
	const fabd_stage *s = rep->st->cfg;
	int ok = si.si_code == CLD_EXITED && si.si_status == 0;
	char what[96];
	describe(rep, &si, what, sizeof what);
	rep->last_failed = !ok;
	if (r->phase) {
		/* Shutting down: exit codes are informational, and nothing is
		 * restarted -- except, while draining, the last consumer of a
		 * stage that died of a failure (its input must still drain):
		 * at once, counted against the intensity. */
		fprintf(stderr, "fabd: %s.%u: %s\n", s->name, rep->idx, what);
		int again = !ok && s->restart != FABD_RESTART_NEVER && fabd_drain_needs(r, rep->st, rep);
		if (again && count_restart(rep->st)) {
			fprintf(stderr, "fabd: stage %s failed while draining: more than %u restarts "
				"within %llu ms\n", s->name, s->intensity_max,
				(unsigned long long)(s->intensity_window_ns / 1000000));
			rep->st->failed = 1;
			r->stage_failed = 1;
			fab_ctx_cancel(rep->st->ctx, 1);
			again = 0;
		}
		if (again)
			fabd_drain_restart(r, rep);
		else
			fabd_finish(r, rep);
		return;
	}
	if (rep->restart_on_exit) {
		fprintf(stderr, "fabd: %s.%u: %s (%s)\n", s->name, rep->idx, what,
			rep->restart_on_exit == 2 ? "restarted on request" : "restarted with its group");
		schedule_restart(r, rep);
		return;
	}
	int restart = s->restart == FABD_RESTART_ALWAYS ||
		      (s->restart == FABD_RESTART_ON_FAILURE && !ok);
	if (!restart) {
		fprintf(stderr, "fabd: %s.%u: %s%s\n", s->name, rep->idx, what,
			ok ? "" : " (restart: never)");
		fabd_finish(r, rep);
		return;
	}
	fprintf(stderr, "fabd: %s.%u: %s\n", s->name, rep->idx, what);
	if (count_restart(rep->st)) {
		fprintf(stderr, "fabd: stage %s failed: more than %u restarts within %llu ms\n",
			s->name, s->intensity_max,
			(unsigned long long)(s->intensity_window_ns / 1000000));
		rep->st->failed = 1;
		r->stage_failed = 1;
		fabd_finish(r, rep);
		fabd_begin_drain(r, "a stage failed");
		return;
	}
	restart_siblings(r, rep);
	schedule_restart(r, rep);
}
