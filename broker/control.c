/* control.c - fabd's control socket: a line protocol, one JSON object back
 * per request line (docs/fabd.md "Control protocol").
 *
 *   status | scale STAGE N | restart STAGE | drain | cancel
 *   limit LIMITER RATE [BURST]
 *
 * The listening socket and each connection are watched with a one-shot
 * POLL_ADD on fabd's io_uring loop; when one fires the socket is accepted
 * from / read without blocking and the poll is armed again.  No op is in
 * flight on a socket when it is closed, except at the end of the run, when
 * the ring is torn down first.  A reply is sent without blocking; a client
 * that does not read its replies (the socket buffer is full) is
 * disconnected.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"

#define CTL_LINE_MAX 1024
#define CTL_CONNS_MAX 16
#define CTL_IDLE_NS 5000000000ull  /* idle this long: evicted when the table is full */
#define CTL_STALL_MS 1000          /* a reply that makes no progress this long: dropped */

typedef struct ctl_conn {
	fabd_op op;
	int fd;
	int evicted;      /* shut down to make room; its poll completes with EOF */
	uint64_t last_ns; /* accepted, or last read */
	size_t len;
	char buf[CTL_LINE_MAX];
	struct ctl_conn *next;
} ctl_conn;

struct fabd_control {
	int fd;
	int lock_fd; /* <path without .sock>.lock, flock()ed while fabd runs */
	char lock[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	fabd_op op;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ctl_conn *conns;
	int nconns;
	uint32_t *burst; /* per limiter of the file: the burst last set */
};

int fabd_control_path(const char *fabric, char *out, size_t n)
{
	const char *x = getenv("XDG_RUNTIME_DIR");
	int k;
	if (x && x[0] == '/')
		k = snprintf(out, n, "%s/fab/%s.sock", x, fabric);
	else
		k = snprintf(out, n, "/tmp/fab-%u/%s.sock", (unsigned)geteuid(), fabric);
	return k < 0 || (size_t)k >= n || (size_t)k >= sizeof(((struct sockaddr_un *)0)->sun_path)
		       ? -1 : 0;
}

/* mkdir 0700, or accept an existing directory only if it is ours, not a
 * symlink, and closed to group and others. */
static int private_dir(const char *dir)
{
	struct stat sb;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "fabd: control directory %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (lstat(dir, &sb) < 0) {
		fprintf(stderr, "fabd: control directory %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() || (sb.st_mode & 077)) {
		fprintf(stderr,
			"fabd: control directory %s must be a directory owned by uid %u with mode "
			"0700 (it is %s, uid %u, mode %04o); refusing\n",
			dir, (unsigned)geteuid(), S_ISDIR(sb.st_mode) ? "a directory" : "not a directory",
			(unsigned)sb.st_uid, (unsigned)(sb.st_mode & 07777));
		return -1;
	}
	return 0;
}

static void arm(fabd_sup *r, fabd_op *op, int fd)
{
	struct io_uring_sqe *sqe = fabd_sqe(r);
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data(sqe, op);
}

int fabd_control_start(fabd_sup *r)
{
	fabd_control *c = calloc(1, sizeof *c);
	if (!c || !(c->burst = calloc(r->t->nlimiters + 1, sizeof *c->burst))) {
		free(c);
		fprintf(stderr, "fabd: control socket: out of memory\n");
		return -1;
	}
	c->fd = -1;
	c->lock_fd = -1;
	for (size_t i = 0; i < r->t->nlimiters; i++)
		c->burst[i] = r->t->limiters[i].burst;
	r->control = c;
	if (fabd_control_path(r->t->fabric, c->path, sizeof c->path) < 0) {
		fprintf(stderr, "fabd: control socket path of fabric %s is too long\n",
			r->t->fabric);
		c->path[0] = 0;
		return -1;
	}
	char dir[sizeof c->path];
	memcpy(dir, c->path, sizeof dir);
	*strrchr(dir, '/') = 0;
	if (private_dir(dir) < 0) {
		c->path[0] = 0;
		return -1;
	}
	/* One fabd per fabric: an flock on <fabric>.lock next to the socket,
	 * released by the kernel the moment its holder dies (a connect to the
	 * socket is no proof: a killed fabd's listening socket can outlive it
	 * for a while, held by its io_uring ring being torn down). */
	snprintf(c->lock, sizeof c->lock, "%.*s.lock", (int)(strlen(c->path) - 5), c->path);
	for (;;) {
		struct stat a, b;
		c->lock_fd = open(c->lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (c->lock_fd < 0) {
			fprintf(stderr, "fabd: %s: %s\n", c->lock, strerror(errno));
			c->lock[0] = c->path[0] = 0;
			return -1;
		}
		if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
			fprintf(stderr, "fabd: %s: another fabd runs fabric %s (%s); refusing to run "
					"it twice\n",
				c->path, r->t->fabric, errno == EWOULDBLOCK ? "its lock is held" :
									     strerror(errno));
			c->lock[0] = c->path[0] = 0; /* not ours: never unlinked */
			return -1;
		}
		/* The file we locked must still be the one at the path (a
		 * previous holder unlinks it as it exits). */
		if (fstat(c->lock_fd, &a) == 0 && stat(c->lock, &b) == 0 && a.st_ino == b.st_ino &&
		    a.st_dev == b.st_dev)
			break;
		close(c->lock_fd);
		c->lock_fd = -1;
	}
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	struct stat sb;
	if (lstat(c->path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			fprintf(stderr, "fabd: %s exists and is not a socket; refusing\n", c->path);
			c->path[0] = 0; /* not ours: never unlinked */
			return -1;
		}
		unlink(c->path); /* stale: its fabd died (we hold the lock) */
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		fprintf(stderr, "fabd: control socket %s: %s\n", c->path, strerror(errno));
		c->path[0] = 0;
		return -1;
	}
	chmod(c->path, 0600);
	if (listen(c->fd, 16) < 0) {
		fprintf(stderr, "fabd: control socket %s: listen: %s\n", c->path, strerror(errno));
		return -1;
	}
	c->op.kind = FABD_OP_CTL_LISTEN;
	arm(r, &c->op, c->fd);
	fprintf(stderr, "fabd: control socket %s\n", c->path);
	return 0;
}

static void conn_close(fabd_control *c, ctl_conn *k)
{
	for (ctl_conn **p = &c->conns; *p; p = &(*p)->next)
		if (*p == k) {
			*p = k->next;
			break;
		}
	close(k->fd);
	free(k);
	c->nconns--;
}

/* ---- replies ---- */

typedef struct jbuf {
	char *s;
	size_t n, cap;
	int oom;
} jbuf;

static void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_printf(jbuf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int k = b->oom ? 0 : vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
		va_end(ap);
		if (b->oom || k < 0)
			return;
		if ((size_t)k < b->cap - b->n) {
			b->n += (size_t)k;
			return;
		}
		size_t cap = (b->cap + (size_t)k + 1) * 2;
		char *s = realloc(b->s, cap);
		if (!s) {
			b->oom = 1;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
}

/* A JSON string (names are validated by the parser; escape anyway). */
static void jb_str(jbuf *b, const char *s)
{
	jb_printf(b, "\"");
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			jb_printf(b, "\\%c", ch);
		else if (ch < 0x20)
			jb_printf(b, "\\u%04x", ch);
		else
			jb_printf(b, "%c", ch);
	}
	jb_printf(b, "\"");
}

static void jb_init(jbuf *b)
{
	b->cap = 256;
	b->n = 0;
	b->oom = 0;
	b->s = malloc(b->cap);
	if (!b->s)
		b->oom = 1;
	else
		b->s[0] = 0;
}

/* Send `b` plus a newline; 0, or -1 (the caller closes the connection). */
static int reply(ctl_conn *k, jbuf *b)
{
	if (b->oom) {
		free(b->s);
		jb_init(b);
		jb_printf(b, "{\"ok\":false,\"error\":\"out of memory\"}");
		if (b->oom)
			return -1;
	}
	jb_printf(b, "\n");
	size_t off = 0;
	int stalled = 0;
	while (off < b->n) {
		ssize_t w = send(k->fd, b->s + off, b->n - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && stalled < CTL_STALL_MS) {
			/* A reply longer than the socket buffer (status of a big
			 * fabric): wait for the client to read, briefly; one that
			 * does not read is still disconnected. */
			struct pollfd pf = { k->fd, POLLOUT, 0 };
			if (poll(&pf, 1, 10) == 0)
				stalled += 10;
			continue;
		}
		if (w <= 0)
			break;
		off += (size_t)w;
		stalled = 0;
	}
	int ok = off == b->n;
	free(b->s);
	b->s = NULL;
	return ok ? 0 : -1;
}

static void error_reply(jbuf *b, const char *msg)
{
	jb_printf(b, "{\"ok\":false,\"error\":");
	jb_str(b, msg);
	jb_printf(b, "}");
}

/* ---- requests ---- */

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	if (!s || *s < '0' || *s > '9')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static const char *phase_name(int phase)
{
	return phase == 0 ? "running" : phase == 1 ? "draining" : phase == 2 ? "cancelled" :
									      "killing";
}

static void do_status(fabd_sup *r, jbuf *b)
{
	jb_printf(b, "{\"ok\":true,\"fabric\":");
	jb_str(b, r->t->fabric);
	jb_printf(b, ",\"state\":\"%s\",\"stages\":[", phase_name(r->phase));
	for (size_t i = 0; i < r->nstages; i++) {
		fabd_stage_rt *st = &r->stages[i];
		jb_printf(b, "%s{\"name\":", i ? "," : "");
		jb_str(b, st->cfg->name);
		jb_printf(b, ",\"replicas\":%u,\"up\":%u,\"restarts\":%llu,\"errors\":%llu",
			  st->cfg->replicas, fabd_stage_up_count(st),
			  (unsigned long long)st->restarts_total, (unsigned long long)st->errors);
		/* Every replica slot in use: the target ones, and retiring ones
		 * (scaled down, still stopping). */
		jb_printf(b, ",\"procs\":[");
		int first = 1;
		for (uint32_t j = 0; j < st->reps_cap; j++) {
			const fabd_replica *rep = &st->reps[j];
			if (j >= st->cfg->replicas && rep->state != FABD_R_RUNNING)
				continue;
			static const char *const names[] = {"idle", "running", "backoff", "done"};
			const char *sn = j >= st->cfg->replicas ? "stopping" : names[rep->state];
			jb_printf(b, "%s{\"replica\":%u,\"pid\":%d,\"state\":\"%s\",\"restarts\":%llu,"
				  "\"watchdog_kills\":%llu}",
				  first ? "" : ",", j, rep->state == FABD_R_RUNNING ? (int)rep->pid : 0, sn,
				  (unsigned long long)rep->restarts,
				  (unsigned long long)rep->watchdog_kills);
			first = 0;
		}
		jb_printf(b, "]}");
	}
	jb_printf(b, "],\"channels\":[");
	for (size_t i = 0; i <= r->t->nchannels; i++) {
		const char *name = i < r->t->nchannels ? r->t->channels[i].name : r->t->errors.name;
		fi_chan c;
		int known = fabd_chan_figures(r, name, &c) == 0;
		jb_printf(b, "%s{\"name\":", i ? "," : "");
		jb_str(b, name);
		if (known)
			jb_printf(b, ",\"depth\":%llu,\"capacity\":%u}", (unsigned long long)c.len,
				  c.capacity);
		else
			jb_printf(b, ",\"depth\":null,\"capacity\":null}");
	}
	jb_printf(b, "]}");
}

static void do_limit(fabd_sup *r, char **argv, int argc, jbuf *b)
{
	const fabd_topology *t = r->t;
	size_t i;
	for (i = 0; i < t->nlimiters; i++)
		if (!strcmp(t->limiters[i].name, argv[1]))
			break;
	if (i == t->nlimiters) {
		error_reply(b, "no such limiter");
		return;
	}
	char *end;
	errno = 0;
	double rate = strtod(argv[2], &end);
	uint32_t burst = r->control->burst[i];
	if (errno || *end || !isfinite(rate) || rate <= 0) {
		error_reply(b, "RATE must be a positive number (messages per second)");
		return;
	}
	if (argc == 4 && (parse_u32(argv[3], &burst) < 0 || burst == 0)) {
		error_reply(b, "BURST must be a positive integer");
		return;
	}
	fab_limiter *lim;
	int rc = fab_limiter_open(r->fab, t->limiters[i].name, &lim);
	if (rc == 0) {
		rc = fab_limiter_set(lim, rate, burst);
		fab_limiter_release(lim);
	}
	if (rc < 0) {
		error_reply(b, fab_errmsg());
		return;
	}
	r->control->burst[i] = burst;
	fprintf(stderr, "fabd: control: limiter %s set to %g/s, burst %u\n", t->limiters[i].name,
		rate, burst);
	jb_printf(b, "{\"ok\":true,\"limiter\":");
	jb_str(b, t->limiters[i].name);
	jb_printf(b, ",\"rate\":%g,\"burst\":%u}", rate, burst);
}

/* One request line -> one reply object in b. */
static void request(fabd_sup *r, char *line, jbuf *b)
{
	char *argv[8];
	int argc = 0;
	for (char *save = NULL, *tok = strtok_r(line, " \t\r", &save); tok;
	     tok = strtok_r(NULL, " \t\r", &save)) {
		if (argc == 8) {
			error_reply(b, "too many words");
			return;
		}
		argv[argc++] = tok;
	}
	char err[512];
	if (argc == 0) {
		error_reply(b, "empty request; expected status, scale, restart, drain, cancel or limit");
	} else if (!strcmp(argv[0], "status") && argc == 1) {
		do_status(r, b);
	} else if (!strcmp(argv[0], "scale") && argc == 3) {
		fabd_stage_rt *st = fabd_stage_by_name(r, argv[1]);
		uint32_t n;
		if (!st)
			error_reply(b, "no such stage");
		else if (parse_u32(argv[2], &n) < 0)
			error_reply(b, "N must be a non-negative integer");
		else if (fabd_scale(r, st, n, err, sizeof err) < 0)
			error_reply(b, err);
		else {
			jb_printf(b, "{\"ok\":true,\"stage\":");
			jb_str(b, st->cfg->name);
			jb_printf(b, ",\"replicas\":%u}", st->cfg->replicas);
		}
	} else if (!strcmp(argv[0], "restart") && argc == 2) {
		fabd_stage_rt *st = fabd_stage_by_name(r, argv[1]);
		if (!st)
			error_reply(b, "no such stage");
		else if (fabd_restart_stage(r, st, err, sizeof err) < 0)
			error_reply(b, err);
		else {
			jb_printf(b, "{\"ok\":true,\"stage\":");
			jb_str(b, st->cfg->name);
			jb_printf(b, "}");
		}
	} else if (!strcmp(argv[0], "drain") && argc == 1) {
		fabd_begin_drain(r, "control: drain");
		jb_printf(b, "{\"ok\":true,\"state\":\"%s\"}", phase_name(r->phase));
	} else if (!strcmp(argv[0], "cancel") && argc == 1) {
		fabd_cancel_all(r);
		jb_printf(b, "{\"ok\":true,\"state\":\"%s\"}", phase_name(r->phase));
	} else if (!strcmp(argv[0], "limit") && (argc == 3 || argc == 4)) {
		do_limit(r, argv, argc, b);
	} else {
		snprintf(err, sizeof err,
			 "bad request '%.64s'; expected status | scale STAGE N | restart STAGE | "
			 "drain | cancel | limit LIMITER RATE [BURST]",
			 argv[0]);
		error_reply(b, err);
	}
}

/* The table is full: shut down the connection idle the longest, if it has
 * been idle for CTL_IDLE_NS (a client that connected and never sent).  Its
 * armed poll then completes and on_readable closes it as at EOF; until then
 * it still counts, so at most CTL_CONNS_MAX more can be let in meanwhile.
 * Returns 1 when one was evicted. */
static int evict_idle(fabd_control *c)
{
	uint64_t now = fabd_now_ns();
	ctl_conn *old = NULL;
	for (ctl_conn *k = c->conns; k; k = k->next)
		if (!k->evicted && now - k->last_ns >= CTL_IDLE_NS &&
		    (!old || k->last_ns < old->last_ns))
			old = k;
	if (!old)
		return 0;
	old->evicted = 1;
	shutdown(old->fd, SHUT_RDWR);
	return 1;
}

static void on_accept(fabd_sup *r)
{
	fabd_control *c = r->control;
	for (;;) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break; /* EAGAIN, or a connection that went away */
		struct ucred cr;
		socklen_t cl = sizeof cr;
		jbuf b;
		const char *why = NULL;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
		    (cr.uid != geteuid() && cr.uid != 0))
			why = "permission denied: only fabd's user or root may control it";
		else if (c->nconns >= CTL_CONNS_MAX && (c->nconns >= 2 * CTL_CONNS_MAX ||
							  !evict_idle(c)))
			why = "too many control connections";
		ctl_conn *k = why ? NULL : calloc(1, sizeof *k);
		if (!k) {
			ctl_conn tmp = { .fd = fd };
			jb_init(&b);
			error_reply(&b, why ? why : "out of memory");
			reply(&tmp, &b);
			close(fd);
			continue;
		}
		k->fd = fd;
		k->last_ns = fabd_now_ns();
		k->op.kind = FABD_OP_CTL_CONN;
		k->op.obj = k;
		k->next = c->conns;
		c->conns = k;
		c->nconns++;
		arm(r, &k->op, fd);
	}
	arm(r, &c->op, c->fd);
}

static void on_readable(fabd_sup *r, ctl_conn *k)
{
	fabd_control *c = r->control;
	for (;;) {
		ssize_t n = recv(k->fd, k->buf + k->len, sizeof k->buf - k->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			conn_close(c, k); /* EOF or error; a partial last line is ignored */
			return;
		}
		k->len += (size_t)n;
		k->last_ns = fabd_now_ns();
		char *nl;
		while ((nl = memchr(k->buf, '\n', k->len))) {
			*nl = 0;
			jbuf b;
			jb_init(&b);
			request(r, k->buf, &b);
			if (reply(k, &b) < 0) {
				conn_close(c, k);
				return;
			}
			size_t used = (size_t)(nl + 1 - k->buf);
			memmove(k->buf, nl + 1, k->len - used);
			k->len -= used;
		}
		if (k->len == sizeof k->buf) {
			jbuf b;
			jb_init(&b);
			error_reply(&b, "request line too long");
			reply(k, &b);
			conn_close(c, k);
			return;
		}
	}
	arm(r, &k->op, k->fd);
}

void fabd_control_event(fabd_sup *r, fabd_op *op, int res)
{
	(void)res; /* readiness or an error: accept/recv tell which */
	if (!r->control)
		return;
	if (op->kind == FABD_OP_CTL_LISTEN)
		on_accept(r);
	else
		on_readable(r, op->obj);
}

void fabd_control_stop(fabd_sup *r)
{
	fabd_control *c = r->control;
	if (!c)
		return;
	while (c->conns)
		conn_close(c, c->conns);
	if (c->fd >= 0)
		close(c->fd);
	if (c->path[0])
		unlink(c->path);
	if (c->lock_fd >= 0) {
		if (c->lock[0])
			unlink(c->lock); /* while still locked: see the inode check */
		close(c->lock_fd);
	}
	free(c->burst);
	free(c);
	r->control = NULL;
}
