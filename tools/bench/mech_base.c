/*
 * mech_base.c - everything fab is compared against, measured by the same
 * drivers in the same run:
 *
 *   cacheline  the floor of a spinning round trip: two processes bounce one
 *              64-bit word in MAP_SHARED memory (nothing is cheaper);
 *   two-line   the same with one line per direction, each holding a sequence
 *              word and the 32-byte record, as a ring slot does;
 *   futex      the floor of a sleeping round trip: one shared futex word,
 *              FUTEX_WAIT/FUTEX_WAKE (not private), no spinning at all;
 *   pipe       pipe(2), one write/read per fixed-size record (<= PIPE_BUF,
 *              so records stay whole even with 4 writers and 4 readers);
 *   socket     an AF_UNIX SOCK_SEQPACKET socketpair, one record per packet;
 *   mq         a POSIX message queue (depth as close to fab's as allowed);
 *   mutex-cv   the textbook queue: a ring in shared memory under a
 *              process-shared pthread mutex with two condition variables.
 *
 * Kernel objects are created in the parent and inherited through fork; the
 * message queue is unlinked at once, so a killed run leaves nothing behind.
 */
#include "bench.h"
#include "spinpp.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* ---- the cache-line floor ---------------------------------------------- */

static int cl_setup(struct run *r, char *why, size_t whylen)
{
	if (r->shape != SHAPE_PP || r->mode != MODE_SPIN) {
		snprintf(why, whylen, "the cache-line floor is a spinning ping-pong only");
		return -1;
	}
	return 0;
}

static int cl_ping(void *ctx, uint64_t i)
{
	pp_cl_ping(ctx, i);
	return 0;
}

static int cl_pong(void *ctx, uint64_t i)
{
	return pp_cl_pong(ctx, i);
}

static int cl_end(void *ctx)
{
	atomic_store_explicit((_Atomic uint64_t *)ctx, UINT64_MAX, memory_order_release);
	return 0;
}

static int cl_child(struct run *r, enum bench_role role, unsigned slot)
{
	return spin_pp(r, role, slot, &r->sh->cl_word, cl_ping, cl_pong, cl_end);
}

static void nothing(struct run *r)
{
	(void)r;
}

const struct mech mech_cacheline = { "cacheline", cl_setup, cl_child, nothing };

/* ---- the two-line floor ------------------------------------------------ */

/*
 * What any channel with one writer per line pays: each direction has its
 * own 64-byte line holding a sequence word and the record, the way a ring
 * slot does, so a round trip moves two lines where the cache-line floor
 * bounces one.  The gap between the two floors is what separating the
 * directions costs on this machine, before any channel code runs.
 */
struct l2_ctx {
	_Atomic uint64_t *out, *in;
	char rec[BENCH_PP_MSG];
};
_Static_assert(BENCH_PP_MSG <= 56, "record and word share a line");

/* Round trip i: the words carry i + 1 (both start at 0). */
static int l2_ping(void *ctx, uint64_t i)
{
	struct l2_ctx *c = ctx;

	memcpy((char *)(c->out + 1), c->rec, sizeof c->rec);
	/* Publishes the record; pairs with the peer's acquire. */
	atomic_store_explicit(c->out, i + 1, memory_order_release);
	/* Pairs with the peer's release store of i + 1. */
	while (atomic_load_explicit(c->in, memory_order_acquire) != i + 1)
		cpu_relax();
	memcpy(c->rec, (const char *)(c->in + 1), sizeof c->rec);
	return 0;
}

static int l2_pong(void *ctx, uint64_t i)
{
	struct l2_ctx *c = ctx;
	uint64_t v;

	while ((v = atomic_load_explicit(c->in, memory_order_acquire)) != i + 1) {
		if (v == UINT64_MAX)
			return 1;
		cpu_relax();
	}
	memcpy(c->rec, (const char *)(c->in + 1), sizeof c->rec);
	memcpy((char *)(c->out + 1), c->rec, sizeof c->rec);
	atomic_store_explicit(c->out, i + 1, memory_order_release);
	return 0;
}

static int l2_end(void *ctx)
{
	atomic_store_explicit(((struct l2_ctx *)ctx)->out, UINT64_MAX, memory_order_release);
	return 0;
}

static int l2_child(struct run *r, enum bench_role role, unsigned slot)
{
	struct l2_ctx c = { r->sh->l2_word[role == ROLE_PING ? 0 : 1],
			    r->sh->l2_word[role == ROLE_PING ? 1 : 0], { 0 } };

	return spin_pp(r, role, slot, &c, l2_ping, l2_pong, l2_end);
}

/* run.c zeroes r->sh before every run, so both words start at 0. */
const struct mech mech_lines2 = { "two-line", cl_setup, l2_child, nothing };

/* ---- the futex floor --------------------------------------------------- */

#define FX_STOP UINT32_MAX

static int fx_setup(struct run *r, char *why, size_t whylen)
{
	if (r->shape != SHAPE_PP) {
		snprintf(why, whylen, "the futex floor is a ping-pong only");
		return -1;
	}
	return 0;
}

/* Waits until *w == want (or FX_STOP); counts the FUTEX_WAIT calls.  Returns
 * 0, or 1 on FX_STOP. */
static int fx_await(_Atomic uint32_t *w, uint32_t want, uint64_t *waits)
{
	uint32_t v;

	/* Pairs with the other side's release store before its FUTEX_WAKE. */
	while ((v = atomic_load_explicit(w, memory_order_acquire)) != want) {
		if (v == FX_STOP)
			return 1;
		futex_wait(w, v);
		(*waits)++;
	}
	return 0;
}

static int fx_child(struct run *r, enum bench_role role, unsigned slot)
{
	_Atomic uint32_t *w = &r->sh->fx_word;
	struct child_out *o = &r->sh->out[slot];
	int sleeping = r->mode == MODE_SLEEP;
	uint64_t waits = 0, wakes = 0;
	int64_t t0, t1, lat, deadline;
	uint32_t i;

	if (role == ROLE_PING) {
		struct hist *h = calloc(1, sizeof *h);

		if (!h)
			return child_fail(r, slot, "out of memory");
		barrier_wait(r);
		deadline = r->sh->deadline;
		for (i = 0;; i++) {
			if (sleeping)
				busy_delay(r->delay_ns);
			t0 = now_ns();
			r->sh->fx_t = t0;
			/* Publishes fx_t; pairs with fx_await's acquire. */
			atomic_store_explicit(w, 2 * i + 1, memory_order_release);
			futex_wake(w, 1);
			wakes++;
			fx_await(w, 2 * i + 2, &waits);
			t1 = now_ns();
			lat = sleeping ? r->sh->fx_lat + (t1 - r->sh->fx_t) : t1 - t0;
			if ((int64_t)i >= r->warmup_rt)
				hist_add(h, lat > 0 ? (uint64_t)lat : 0);
			if (t1 >= deadline && (int64_t)i >= r->warmup_rt)
				break;
		}
		atomic_store_explicit(w, FX_STOP, memory_order_release);
		futex_wake(w, 1);
		o->count = (uint64_t)i + 1;
		o->p50_ns = hist_pct(h, 0.50);
		o->p99_ns = hist_pct(h, 0.99);
		o->samples = h->n;
		o->futex_waits = waits;
		o->futex_wakes = wakes;
		o->have_futex = 1;
		free(h);
		return 0;
	}
	barrier_wait(r);
	for (i = 0;; i++) {
		if (fx_await(w, 2 * i + 1, &waits))
			break;
		t1 = now_ns();
		lat = t1 - r->sh->fx_t;
		if (sleeping)
			busy_delay(r->delay_ns);
		r->sh->fx_lat = lat;
		r->sh->fx_t = now_ns();
		/* Publishes fx_t and fx_lat; pairs with fx_await's acquire. */
		atomic_store_explicit(w, 2 * i + 2, memory_order_release);
		futex_wake(w, 1);
		wakes++;
	}
	o->futex_waits = waits;
	o->futex_wakes = wakes;
	o->have_futex = 1;
	return 0;
}

const struct mech mech_futex = { "futex", fx_setup, fx_child, nothing };

/* ---- pipe ---------------------------------------------------------------- */

static unsigned ndirs(const struct run *r)
{
	return r->shape == SHAPE_PP ? 2 : 1;
}

static void fds_close(struct run *r)
{
	unsigned d, k;

	for (d = 0; d < 2; d++) {
		for (k = 0; k < 2; k++) {
			if (r->fd[d][k] >= 0)
				close(r->fd[d][k]);
			r->fd[d][k] = -1;
		}
	}
}

static int pipe_setup(struct run *r, char *why, size_t whylen)
{
	unsigned d;

	r->fd[0][0] = r->fd[0][1] = r->fd[1][0] = r->fd[1][1] = -1;
	if (r->msg > PIPE_BUF) {
		snprintf(why, whylen, "records of %zu B exceed PIPE_BUF", r->msg);
		return 1;
	}
	for (d = 0; d < ndirs(r); d++) {
		if (pipe(r->fd[d]) != 0) {
			snprintf(why, whylen, "pipe: %s", strerror(errno));
			fds_close(r);
			return -1;
		}
	}
	return 0;
}

static int fd_send(struct run *r, unsigned slot, int fd, const void *m, size_t n,
		   int sock)
{
	ssize_t w;

	for (;;) {
		w = sock ? send(fd, m, n, MSG_NOSIGNAL) : write(fd, m, n);
		if (w == (ssize_t)n)
			return 0;
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			child_fail(r, slot, "%s: %s", sock ? "send" : "write",
				   strerror(errno));
		else
			child_fail(r, slot, "short %s: %zd of %zu bytes",
				   sock ? "send" : "write", w, n);
		return -1;
	}
}

static int pipe_send(struct run *r, unsigned slot, int dir, const void *m, size_t n)
{
	return fd_send(r, slot, r->fd[dir][1], m, n, 0);
}

static ssize_t pipe_recv(struct run *r, unsigned slot, int dir, void *b, size_t n)
{
	size_t got = 0;
	ssize_t k;

	/* With several readers only whole records may be taken at once; a
	 * write of <= PIPE_BUF bytes is atomic, so a read of the record size
	 * returns exactly one record. */
	while (got < n) {
		k = read(r->fd[dir][0], (char *)b + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			child_fail(r, slot, "read: %s", strerror(errno));
			return -1;
		}
		if (k == 0)
			break;
		got += (size_t)k;
		if (r->ncons > 1)
			break;
	}
	return (ssize_t)got;
}

static const struct xport xp_pipe = { pipe_send, pipe_recv };

static int pipe_child(struct run *r, enum bench_role role, unsigned slot)
{
	if (r->shape == SHAPE_PP)
		return drive_pp(r, &xp_pipe, role, slot);
	return drive_stream(r, &xp_pipe, role, slot);
}

const struct mech mech_pipe = { "pipe", pipe_setup, pipe_child, fds_close };

/* ---- socketpair -------------------------------------------------------- */

static int sock_setup(struct run *r, char *why, size_t whylen)
{
	r->fd[0][0] = r->fd[0][1] = r->fd[1][0] = r->fd[1][1] = -1;
	/* One pair carries both directions of a ping-pong. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, r->fd[0]) != 0) {
		snprintf(why, whylen, "socketpair(AF_UNIX, SOCK_SEQPACKET): %s",
			 strerror(errno));
		return -1;
	}
	return 0;
}

static int sock_send(struct run *r, unsigned slot, int dir, const void *m, size_t n)
{
	return fd_send(r, slot, r->fd[0][dir], m, n, 1);
}

static ssize_t sock_recv(struct run *r, unsigned slot, int dir, void *b, size_t n)
{
	ssize_t k;

	do
		k = recv(r->fd[0][!dir], b, n, 0);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		child_fail(r, slot, "recv: %s", strerror(errno));
	return k < 0 ? -1 : k;
}

static const struct xport xp_sock = { sock_send, sock_recv };

static int sock_child(struct run *r, enum bench_role role, unsigned slot)
{
	if (r->shape == SHAPE_PP)
		return drive_pp(r, &xp_sock, role, slot);
	return drive_stream(r, &xp_sock, role, slot);
}

const struct mech mech_socket = { "socket", sock_setup, sock_child, fds_close };

/* ---- POSIX message queue ----------------------------------------------- */

static long read_long(const char *path, long dflt)
{
	FILE *f = fopen(path, "r");
	long v;

	if (!f)
		return dflt;
	if (fscanf(f, "%ld", &v) != 1)
		v = dflt;
	fclose(f);
	return v;
}

static mqd_t mq_make(const char *name, long depth, size_t msg)
{
	struct mq_attr a;
	mqd_t q;

	memset(&a, 0, sizeof a);
	a.mq_maxmsg = depth;
	a.mq_msgsize = (long)msg;
	q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
	if (q == (mqd_t)-1 && errno == EEXIST) {
		mq_unlink(name); /* ours from a killed run: the name has our pid */
		q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
	}
	return q;
}

static void mq_teardown(struct run *r)
{
	unsigned d;

	for (d = 0; d < 2; d++) {
		if (r->mq[d] != (mqd_t)-1)
			mq_close(r->mq[d]);
		r->mq[d] = (mqd_t)-1;
	}
}

static int mq_setup(struct run *r, char *why, size_t whylen)
{
	size_t msg = r->shape == SHAPE_PP ? BENCH_PP_MSG : r->msg;
	long want = r->shape == SHAPE_PP ? BENCH_PP_CAP : (long)r->capacity;
	long depth = want, sysmax;
	struct rlimit rl;
	char name[64];
	unsigned d;
	int e = 0;

	r->mq[0] = r->mq[1] = (mqd_t)-1;
	for (d = 0; d < ndirs(r); d++) {
		snprintf(name, sizeof name, "/fabbench-%ld-%u", (long)getpid(), d);
		r->mq[d] = mq_make(name, depth, msg);
		e = errno;
		if (r->mq[d] == (mqd_t)-1 && (e == EMFILE || e == ENOMEM)) {
			/* RLIMIT_MSGQUEUE (800 KiB by default) caps the bytes of
			 * all our queues; root may raise it. */
			rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
			if (setrlimit(RLIMIT_MSGQUEUE, &rl) == 0) {
				r->mq[d] = mq_make(name, depth, msg);
				e = errno;
			}
		}
		if (r->mq[d] == (mqd_t)-1 && (e == EINVAL || e == EMFILE || e == ENOMEM ||
					      e == EPERM)) {
			/* Unprivileged: depth is capped by fs.mqueue.msg_max. */
			sysmax = read_long("/proc/sys/fs/mqueue/msg_max", 10);
			if (sysmax < depth) {
				depth = sysmax;
				r->mq[d] = mq_make(name, depth, msg);
				e = errno;
			}
		}
		if (r->mq[d] == (mqd_t)-1) {
			snprintf(why, whylen, "mq_open(depth %ld, %zu B): %s", depth, msg,
				 strerror(e));
			mq_teardown(r);
			return 1;
		}
		/* The descriptor lives on in the children: nothing to leak. */
		mq_unlink(name);
	}
	r->mq_depth = (unsigned)depth;
	if (depth < want)
		snprintf(r->note, sizeof r->note,
			 "mq depth %ld, not %ld: fs.mqueue.msg_max is %ld and a deeper queue needs CAP_SYS_RESOURCE",
			 depth, want, depth);
	return 0;
}

static int mqx_send(struct run *r, unsigned slot, int dir, const void *m, size_t n)
{
	int rc;

	do
		rc = mq_send(r->mq[dir], m, n, 0);
	while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		child_fail(r, slot, "mq_send: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static ssize_t mqx_recv(struct run *r, unsigned slot, int dir, void *b, size_t n)
{
	ssize_t k;

	do
		k = mq_receive(r->mq[dir], b, n, NULL);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		child_fail(r, slot, "mq_receive: %s", strerror(errno));
	return k < 0 ? -1 : k;
}

static const struct xport xp_mq = { mqx_send, mqx_recv };

static int mq_child(struct run *r, enum bench_role role, unsigned slot)
{
	if (r->shape == SHAPE_PP)
		return drive_pp(r, &xp_mq, role, slot);
	return drive_stream(r, &xp_mq, role, slot);
}

const struct mech mech_mq = { "mq", mq_setup, mq_child, mq_teardown };

/* ---- process-shared mutex + condvar queue ------------------------------ */

struct cvq {
	pthread_mutex_t mu;
	pthread_cond_t not_empty, not_full;
	uint32_t head, count, cap, rec;
	_Alignas(64) unsigned char data[];
};

static void cvq_teardown(struct run *r)
{
	unsigned d;

	/* No pthread_cond_destroy: glibc's waits for the waiters it counted,
	 * and a run killed on an error path leaves dead ones behind forever.
	 * Every process that used the queue is gone; unmapping is enough. */
	for (d = 0; d < 2; d++) {
		if (r->cvq[d])
			munmap(r->cvq[d], r->cvq_len[d]);
		r->cvq[d] = NULL;
	}
}

static int cvq_setup(struct run *r, char *why, size_t whylen)
{
	size_t rec = r->shape == SHAPE_PP ? BENCH_PP_MSG : r->msg;
	uint32_t cap = r->shape == SHAPE_PP ? BENCH_PP_CAP : r->capacity;
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	struct cvq *q;
	unsigned d;
	size_t len;
	void *p;

	r->cvq[0] = r->cvq[1] = NULL;
	for (d = 0; d < ndirs(r); d++) {
		len = sizeof(struct cvq) + (size_t)cap * rec;
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			snprintf(why, whylen, "mmap(%zu): %s", len, strerror(errno));
			cvq_teardown(r);
			return -1;
		}
		memset(p, 0, len); /* pre-fault */
		q = p;
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
		pthread_mutex_init(&q->mu, &ma);
		pthread_mutexattr_destroy(&ma);
		pthread_condattr_init(&ca);
		pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
		pthread_cond_init(&q->not_empty, &ca);
		pthread_cond_init(&q->not_full, &ca);
		pthread_condattr_destroy(&ca);
		q->cap = cap;
		q->rec = (uint32_t)rec;
		r->cvq[d] = q;
		r->cvq_len[d] = len;
	}
	return 0;
}

static int cvq_send(struct run *r, unsigned slot, int dir, const void *m, size_t n)
{
	struct cvq *q = r->cvq[dir];

	(void)slot;
	pthread_mutex_lock(&q->mu);
	while (q->count == q->cap)
		pthread_cond_wait(&q->not_full, &q->mu);
	memcpy(q->data + (size_t)((q->head + q->count) % q->cap) * q->rec, m, n);
	q->count++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

static ssize_t cvq_recv(struct run *r, unsigned slot, int dir, void *b, size_t n)
{
	struct cvq *q = r->cvq[dir];

	(void)slot;
	pthread_mutex_lock(&q->mu);
	while (q->count == 0)
		pthread_cond_wait(&q->not_empty, &q->mu);
	memcpy(b, q->data + (size_t)q->head * q->rec, n);
	q->head = (q->head + 1) % q->cap;
	q->count--;
	pthread_cond_signal(&q->not_full);
	pthread_mutex_unlock(&q->mu);
	return (ssize_t)n;
}

static const struct xport xp_cvq = { cvq_send, cvq_recv };

static int cvq_child(struct run *r, enum bench_role role, unsigned slot)
{
	unsigned d;

	for (d = 0; d < ndirs(r); d++)
		prefault(r->cvq[d], r->cvq_len[d]);
	if (r->shape == SHAPE_PP)
		return drive_pp(r, &xp_cvq, role, slot);
	return drive_stream(r, &xp_cvq, role, slot);
}

const struct mech mech_mutexcv = { "mutex-cv", cvq_setup, cvq_child, cvq_teardown };
