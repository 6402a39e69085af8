/*
 * metrics.c - fabd's Prometheus endpoint: the text exposition (format 0.0.4)
 * of one fabric, rendered from its shared segments, and a libmicrohttpd
 * server for it.  docs/metrics.md lists the metrics.
 *
 * Why the segments are read with fab_inspect (fabric/inspect) and not
 * through libfab: a scrape must not change what it measures.
 * fab_fabric_open claims a process-table entry, and fab_chan_open attaches
 * a handle (counted as a sender or receiver) and may take an spsc end.
 * fab_inspect maps every segment O_RDONLY/PROT_READ and validates it as
 * libfab's own mappers do before any value read from it is used as a size,
 * offset or loop bound; a segment that does not validate (or shrinks under
 * the reader: SIGBUS is caught) is skipped here and reported in a comment.
 * Nothing here writes shared memory and nothing waits.
 */
#include "metrics.h"

#include "inspect.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

/* ---- errors ---------------------------------------------------------------- */

static __thread char mx_errbuf[256];

static int mx_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int mx_err(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(mx_errbuf, sizeof mx_errbuf, fmt, ap);
	va_end(ap);
	return code;
}

const char *fab_metrics_errmsg(void)
{
	return mx_errbuf;
}

/* ---- output buffer ----------------------------------------------------------- */

typedef struct mx_buf {
	char *p;
	size_t len, cap;
	bool oom; /* sticky: once set, appends do nothing */
} mx_buf;

static bool mx_reserve(mx_buf *b, size_t more)
{
	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void mx_printf(mx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mx_printf(mx_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !mx_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static void mx_putc(mx_buf *b, char c)
{
	if (!mx_reserve(b, 1))
		return;
	b->p[b->len++] = c;
	b->p[b->len] = 0;
}

/* A label value, escaped as format 0.0.4 wants: backslash, double quote and
 * line feed become \\, \" and \n. */
static void mx_label(mx_buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"') {
			mx_putc(b, '\\');
			mx_putc(b, *s);
		} else if (*s == '\n') {
			mx_putc(b, '\\');
			mx_putc(b, 'n');
		} else {
			mx_putc(b, *s);
		}
	}
}

static void mx_family(mx_buf *b, const char *name, const char *type, const char *help)
{
	/* HELP text is ours and has no backslash or line feed to escape. */
	mx_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{fabric="f",<key>="v"} value */
static void mx_sample(mx_buf *b, const char *name, const char *fabric, const char *key,
		      const char *val, uint64_t v)
{
	mx_printf(b, "%s{fabric=\"", name);
	mx_label(b, fabric);
	mx_printf(b, "\",%s=\"", key);
	mx_label(b, val);
	mx_printf(b, "\"} %llu\n", (unsigned long long)v);
}

/* ---- render ---------------------------------------------------------------------- */

static bool mx_name_ok(const char *s)
{
	return s && fi_name_ok(s);
}

typedef struct mx_scan {
	uint32_t nchans, ntopics, nstages, skipped;
} mx_scan;

/* A comment line: the reason reaches whoever reads the page. */
static void mx_skip(mx_buf *b, mx_scan *sc, const char *msg, int rc)
{
	sc->skipped++;
	mx_printf(b, "# fab: skipped: %s (%s)\n", msg, fab_errname(rc));
}

/* The samples of one histogram series: cumulative buckets with le in
 * seconds (1 us << i), +Inf, _sum and _count. */
static void mx_hist_samples(mx_buf *b, const char *name, const char *fabric, const char *labels,
			    const fi_hist *h)
{
	uint64_t cum = 0;
	for (int i = 0; i <= FI_HIST_BUCKETS; i++) {
		cum += h->b[i];
		mx_printf(b, "%s_bucket{fabric=\"", name);
		mx_label(b, fabric);
		if (i < FI_HIST_BUCKETS)
			mx_printf(b, "\",%s,le=\"%.9g\"} %llu\n", labels, 1e-6 * (double)(1u << i),
				  (unsigned long long)cum);
		else
			mx_printf(b, "\",%s,le=\"+Inf\"} %llu\n", labels, (unsigned long long)cum);
	}
	mx_printf(b, "%s_sum{fabric=\"", name);
	mx_label(b, fabric);
	mx_printf(b, "\",%s} %.9f\n", labels, (double)h->sum_ns / 1e9);
	mx_printf(b, "%s_count{fabric=\"", name);
	mx_label(b, fabric);
	mx_printf(b, "\",%s} %llu\n", labels, (unsigned long long)cum);
}

/* key="value": names are validated ([A-Za-z0-9_-]), nothing to escape. */
static void mx_kv(char *out, size_t n, const char *key, const char *val, const char *extra)
{
	snprintf(out, n, "%s=\"%s\"%s", key, val, extra ? extra : "");
}

static bool mx_is_chan(const fi_chan *c)
{
	return !c->err && c->type == FI_OBJ_CHAN;
}

int fab_metrics_render(const char *fabric, const fab_metrics_stage *stages, size_t nstages,
		       char **out, size_t *len, fab_metrics_report *rep)
{
	if (!out || !len)
		return mx_err(FAB_EINVAL, "NULL out pointer");
	*out = NULL;
	*len = 0;
	if (!mx_name_ok(fabric))
		return mx_err(FAB_EINVAL, "bad fabric name (want [A-Za-z0-9_-]{1,48})");
	if (nstages && !stages)
		return mx_err(FAB_EINVAL, "NULL stages with nstages %zu", nstages);
	for (size_t i = 0; i < nstages; i++)
		if (!stages[i].name)
			return mx_err(FAB_EINVAL, "stages[%zu].name is NULL", i);

	mx_buf b = {0};
	mx_scan sc = {0};
	/* The figures are gathered first: the format wants each family's
	 * samples together, under one HELP/TYPE pair. */
	fi_fabric *f = NULL;
	int crc = fi_open(fabric, &f);
	if (crc == 0)
		crc = fi_snapshot(f);
	if (crc) {
		mx_skip(&b, &sc, fi_errmsg(), crc);
		fi_close(f);
		f = NULL;
	}
	uint32_t nch = f ? f->nchans : 0, nst = f ? f->nstages : 0;
	for (uint32_t i = 0; i < nch; i++) {
		const fi_chan *c = &f->chans[i];
		if (c->err)
			mx_skip(&b, &sc, c->errmsg, c->err);
		else if (c->type == FI_OBJ_CHAN)
			sc.nchans++;
		else
			sc.ntopics++;
	}
	for (uint32_t i = 0; i < nst; i++) {
		if (f->stages[i].name[0] == '?') {
			mx_printf(&b, "# fab: skipped: fabric %s: stage entry %u: bad name (%s)\n",
				  fabric, f->stages[i].idx, fab_errname(FAB_ECORRUPT));
			sc.skipped++;
		} else {
			sc.nstages++;
		}
	}
	for (uint32_t i = 0; f && i < 256; i++)
		if (f->lim_names[i][0] == '?') {
			mx_printf(&b, "# fab: skipped: fabric %s: limiter entry %u: bad name (%s)\n",
				  fabric, i, fab_errname(FAB_ECORRUPT));
			sc.skipped++;
		}

#define CHAN_FAMILY(metric, type, help, expr)                                               \
	do {                                                                                \
		mx_family(&b, metric, type, help);                                          \
		for (uint32_t i = 0; i < nch; i++) {                                        \
			const fi_chan *c = &f->chans[i];                                    \
			if (mx_is_chan(c))                                                  \
				mx_sample(&b, metric, fabric, "channel", c->name, (expr));  \
		}                                                                           \
	} while (0)
	CHAN_FAMILY("fab_channel_depth", "gauge", "Messages queued in the channel now.", c->len);
	CHAN_FAMILY("fab_channel_capacity", "gauge", "Capacity of the channel, as created.",
		    c->capacity);
	CHAN_FAMILY("fab_channel_sent_total", "counter",
		    "Messages committed to the channel since it was created.", c->sent);
	CHAN_FAMILY("fab_channel_received_total", "counter",
		    "Messages taken from the channel since it was created.", c->received);
	CHAN_FAMILY("fab_channel_held", "gauge",
		    "Messages held by receivers past their receive now (acquired, or leased).",
		    c->held);
	/* The blocked gauges also have a sample per topic (label topic):
	 * publishers held back by a blocking subscriber, subscribers asleep
	 * (docs/metrics.md; until 28 Nov, tenth session, topics had none:
	 * found by a user trial). */
#define CHAN_TOPIC_FAMILY(metric, help, expr)                                               \
	do {                                                                                \
		mx_family(&b, metric, "gauge", help);                                       \
		for (uint32_t i = 0; i < nch; i++) {                                        \
			const fi_chan *c = &f->chans[i];                                    \
			if (!c->err)                                                        \
				mx_sample(&b, metric, fabric,                               \
					  c->type == FI_OBJ_CHAN ? "channel" : "topic",    \
					  c->name, (expr));                                 \
		}                                                                           \
	} while (0)
	CHAN_TOPIC_FAMILY("fab_channel_blocked_senders",
			  "Senders (topic: publishers) sleeping (or about to sleep) on it now.",
			  c->send_waiters);
	CHAN_TOPIC_FAMILY("fab_channel_blocked_receivers",
			  "Receivers (topic: subscribers) sleeping (or about to sleep) on it now.",
			  c->recv_waiters);
#undef CHAN_TOPIC_FAMILY
	CHAN_FAMILY("fab_channel_redelivered_total", "counter",
		    "Deliveries of messages given back before (at-least-once).", c->redelivered);
	CHAN_FAMILY("fab_channel_dead_lettered_total", "counter",
		    "Poison messages moved to the dead-letter channel (at-least-once).",
		    c->dead_lettered);
	CHAN_FAMILY("fab_channel_dead_dropped_total", "counter",
		    "Poison messages dropped for want of a dead-letter channel (at-least-once).",
		    c->dead_dropped);
#undef CHAN_FAMILY

	char lbl[FI_NAME + 64];
	mx_family(&b, "fab_channel_wait_seconds", "histogram",
		  "Time a blocking send or receive slept on the channel (calls that slept).");
	for (uint32_t i = 0; i < nch; i++) {
		const fi_chan *c = &f->chans[i];
		if (!mx_is_chan(c))
			continue;
		mx_kv(lbl, sizeof lbl, "channel", c->name, ",op=\"send\"");
		mx_hist_samples(&b, "fab_channel_wait_seconds", fabric, lbl, &c->send_wait);
		mx_kv(lbl, sizeof lbl, "channel", c->name, ",op=\"recv\"");
		mx_hist_samples(&b, "fab_channel_wait_seconds", fabric, lbl, &c->recv_wait);
	}
	mx_family(&b, "fab_pipeline_latency_seconds", "histogram",
		  "Time from a message chain's origin to its acknowledgement on the channel.");
	for (uint32_t i = 0; i < nch; i++) {
		const fi_chan *c = &f->chans[i];
		if (!mx_is_chan(c))
			continue;
		mx_kv(lbl, sizeof lbl, "channel", c->name, NULL);
		mx_hist_samples(&b, "fab_pipeline_latency_seconds", fabric, lbl, &c->latency);
	}
	mx_family(&b, "fab_limiter_wait_seconds", "histogram",
		  "Time fab_limiter_wait delayed a caller (calls granted at once not counted).");
	for (uint32_t i = 0; f && i < 256; i++) {
		if (!f->lim_names[i][0] || f->lim_names[i][0] == '?')
			continue;
		mx_kv(lbl, sizeof lbl, "limiter", f->lim_names[i], NULL);
		mx_hist_samples(&b, "fab_limiter_wait_seconds", fabric, lbl, &f->lim_wait[i]);
	}

	mx_family(&b, "fab_topic_dropped_total", "counter",
		  "Messages lost by lapped subscribers of the topic.");
	for (uint32_t i = 0; i < nch; i++) {
		const fi_chan *c = &f->chans[i];
		if (!c->err && c->type != FI_OBJ_CHAN)
			mx_sample(&b, "fab_topic_dropped_total", fabric, "topic", c->name, c->dropped);
	}

	mx_family(&b, "fab_stage_errors_total", "counter",
		  "Errors the stage's replicas reported with fab_stage_error.");
	for (uint32_t i = 0; i < nst; i++)
		if (f->stages[i].name[0] != '?')
			mx_sample(&b, "fab_stage_errors_total", fabric, "stage", f->stages[i].name,
				  f->stages[i].errors);

	if (nstages) {
		mx_family(&b, "fab_stage_replicas", "gauge", "Replicas of the stage running now.");
		for (size_t i = 0; i < nstages; i++)
			mx_sample(&b, "fab_stage_replicas", fabric, "stage", stages[i].name,
				  stages[i].replicas);
		mx_family(&b, "fab_stage_restarts_total", "counter",
			  "Restarts of the stage's replicas since fabd started.");
		for (size_t i = 0; i < nstages; i++)
			mx_sample(&b, "fab_stage_restarts_total", fabric, "stage", stages[i].name,
				  stages[i].restarts);
		mx_family(&b, "fab_stage_up", "gauge", "1 if the stage is up, else 0.");
		for (size_t i = 0; i < nstages; i++)
			mx_sample(&b, "fab_stage_up", fabric, "stage", stages[i].name,
				  stages[i].up ? 1 : 0);
	}

	mx_family(&b, "fab_scrape_skipped_segments", "gauge",
		  "Segments this scrape could not read (see the '# fab: skipped' comments).");
	mx_printf(&b, "fab_scrape_skipped_segments{fabric=\"");
	mx_label(&b, fabric);
	mx_printf(&b, "\"} %u\n", sc.skipped);
	fi_close(f);

	int rc = 0;
	if (b.oom || !b.p)
		rc = mx_err(FAB_ENOMEM, "out of memory");
	if (rep) {
		rep->channels = sc.nchans;
		rep->topics = sc.ntopics;
		rep->stages = sc.nstages;
		rep->skipped = sc.skipped;
	}
	if (rc) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

struct fab_metrics {
	struct MHD_Daemon *d;
	char fabric[FAB_NAME_MAX + 1];
	uint16_t port;
	pthread_mutex_t lock; /* guards stages/nstages against the MHD thread */
	fab_metrics_stage *stages;
	size_t nstages;
};

static void mx_stages_free(fab_metrics_stage *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((char *)s[i].name);
	free(s);
}

static int mx_stages_dup(const fab_metrics_stage *src, size_t n, fab_metrics_stage **out)
{
	*out = NULL;
	if (n == 0)
		return 0;
	fab_metrics_stage *s = calloc(n, sizeof *s);
	if (!s)
		return mx_err(FAB_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		s[i] = src[i];
		s[i].name = strdup(src[i].name);
		if (!s[i].name) {
			mx_stages_free(s, i);
			return mx_err(FAB_ENOMEM, "out of memory");
		}
	}
	*out = s;
	return 0;
}

static enum MHD_Result mx_reply(struct MHD_Connection *conn, unsigned status, const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
								 MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Runs on MHD's internal thread. */
static enum MHD_Result mx_handle(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload,
				 size_t *upload_size, void **req_cls)
{
	(void)version;
	(void)upload;
	fab_metrics *m = cls;
	/* The first call for a request only announces it (headers read); a
	 * body, if any, would follow in later calls.  We answer on the first
	 * call for bodiless methods, and refuse any with a body. */
	if (*req_cls == NULL) {
		static int seen;
		*req_cls = &seen;
		if (strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		    strcmp(method, MHD_HTTP_METHOD_HEAD) == 0)
			goto answer;
		return MHD_YES; /* read (and discard) the body, answer below */
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
answer:
	if (strcmp(url, "/metrics") != 0)
		return mx_reply(conn, MHD_HTTP_NOT_FOUND, "not found; try /metrics\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return mx_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");

	char *body = NULL;
	size_t len = 0;
	int rc;
	pthread_mutex_lock(&m->lock);
	/* Rendering under the lock keeps the stage copy alive; set_stages
	 * (fabd's loop) waits at most one render (milliseconds). */
	rc = fab_metrics_render(m->fabric, m->stages, m->nstages, &body, &len, NULL);
	pthread_mutex_unlock(&m->lock);
	if (rc)
		return mx_reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics: out of memory\n");
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, FAB_METRICS_CONTENT_TYPE);
	enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* Split "host:port" / "[v6]:port" and resolve it to one address. */
static int mx_resolve(const char *where, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[256];
	const char *port;
	if (where[0] == '[') {
		const char *rb = strchr(where, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - where - 1) >= sizeof host)
			return mx_err(FAB_EINVAL, "listen %s: want host:port or [v6]:port", where);
		memcpy(host, where + 1, (size_t)(rb - where - 1));
		host[rb - where - 1] = 0;
		port = rb + 2;
	} else {
		const char *c = strrchr(where, ':');
		if (!c || c == where || (size_t)(c - where) >= sizeof host ||
		    memchr(where, ':', (size_t)(c - where)))
			return mx_err(FAB_EINVAL, "listen %s: want host:port or [v6]:port", where);
		memcpy(host, where, (size_t)(c - where));
		host[c - where] = 0;
		port = c + 1;
	}
	if (!host[0]) /* getaddrinfo could take "" for a wildcard: never guess one */
		return mx_err(FAB_EINVAL, "listen %s: empty host", where);
	char *end;
	errno = 0;
	unsigned long p = strtoul(port, &end, 10);
	if (!*port || *end || errno || p > 65535)
		return mx_err(FAB_EINVAL, "listen %s: bad port", where);
	/* No AI_PASSIVE and a host always given: the address bound is the one
	 * configured, never a wildcard we chose. */
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	int g = getaddrinfo(host, port, &hints, &ai);
	if (g != 0 || !ai)
		return mx_err(FAB_EINVAL, "listen %s: %s", where, gai_strerror(g));
	if (ai->ai_addrlen > sizeof *ss) {
		freeaddrinfo(ai);
		return mx_err(FAB_EINVAL, "listen %s: address too long", where);
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sl = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

int fab_metrics_start(const char *where, const char *fabric, fab_metrics **out)
{
	if (!out)
		return mx_err(FAB_EINVAL, "NULL out pointer");
	*out = NULL;
	if (!fabric || !mx_name_ok(fabric))
		return mx_err(FAB_EINVAL, "bad fabric name (want [A-Za-z0-9_-]{1,48})");
	if (!where)
		where = FAB_METRICS_LISTEN_DEFAULT;
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	int rc = mx_resolve(where, &ss, &sl);
	if (rc)
		return rc;

	/* We make and bind the socket ourselves so a bind error reaches the
	 * caller with its errno (MHD would only log it), then hand it to MHD. */
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return mx_err(FAB_ESYS, "metrics: socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 64) < 0) {
		int e = errno;
		close(fd);
		return mx_err(FAB_ESYS, "metrics: bind/listen %s: %s", where, strerror(e));
	}
	struct sockaddr_storage bound;
	socklen_t bl = sizeof bound;
	uint16_t port = 0;
	if (getsockname(fd, (struct sockaddr *)&bound, &bl) == 0)
		port = ntohs(bound.ss_family == AF_INET6
				     ? ((struct sockaddr_in6 *)&bound)->sin6_port
				     : ((struct sockaddr_in *)&bound)->sin_port);

	fab_metrics *m = calloc(1, sizeof *m);
	if (!m) {
		close(fd);
		return mx_err(FAB_ENOMEM, "out of memory");
	}
	snprintf(m->fabric, sizeof m->fabric, "%s", fabric);
	m->port = port;
	pthread_mutex_init(&m->lock, NULL);

	/* MHD's thread inherits our signal mask: block everything while it is
	 * created, so fabd's signalfd (and only it) sees SIGTERM, SIGCHLD...
	 * but not the synchronous fault signals: a scrape reads segments under
	 * fi_guarded, whose handler turns the SIGBUS of a segment that shrank
	 * into a skipped segment; blocked, the kernel would kill fabd with it. */
	sigset_t all, old;
	sigfillset(&all);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
					(ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
				0, NULL, NULL, mx_handle, m, MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_CONNECTION_LIMIT, 32u, MHD_OPTION_CONNECTION_TIMEOUT,
				10u, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!m->d) {
		close(fd);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return mx_err(FAB_ESYS, "metrics: libmicrohttpd failed to start on %s", where);
	}
	*out = m;
	return 0;
}

uint16_t fab_metrics_port(const fab_metrics *m)
{
	return m ? m->port : 0;
}

int fab_metrics_set_stages(fab_metrics *m, const fab_metrics_stage *stages, size_t n)
{
	if (!m || (n && !stages))
		return mx_err(FAB_EINVAL, "NULL handle or stages");
	for (size_t i = 0; i < n; i++)
		if (!stages[i].name)
			return mx_err(FAB_EINVAL, "stages[%zu].name is NULL", i);
	fab_metrics_stage *copy;
	int rc = mx_stages_dup(stages, n, &copy);
	if (rc)
		return rc;
	pthread_mutex_lock(&m->lock);
	fab_metrics_stage *old = m->stages;
	size_t oldn = m->nstages;
	m->stages = copy;
	m->nstages = n;
	pthread_mutex_unlock(&m->lock);
	mx_stages_free(old, oldn);
	return 0;
}

void fab_metrics_stop(fab_metrics *m)
{
	if (!m)
		return;
	/* Joins the internal thread (requests in progress finish) and closes
	 * the listen socket, which MHD owns once it started. */
	MHD_stop_daemon(m->d);
	pthread_mutex_destroy(&m->lock);
	mx_stages_free(m->stages, m->nstages);
	free(m);
}
