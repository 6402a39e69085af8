/*
 * metrics.c - fabd's Prometheus endpoint: the text exposition (format 0.0.4)
 * of one fabric, rendered from its shared segments, and a libmicrohttpd
 * server for it.  docs/metrics.md lists the metrics and what is not
 * produced yet.
 *
 * Why the segments are mapped here and not opened through libfab: a scrape
 * must not change what it measures.  fab_fabric_open claims a process-table
 * entry, and fab_chan_open needs a role: it attaches a handle (counted as a
 * sender or receiver), takes an spsc end (a scrape would hold the end a
 * stage needs, or get FAB_EBUSY), and libfab has no public reader for topic
 * counters or the stage table at all.  So, as fabctl does (STYLE
 * "Programs"), every segment is opened O_RDONLY, mapped PROT_READ, and
 * validated against docs/layout.md exactly as libfab's own mappers
 * (fabric.c fab__ctl_validate, chan.c fab__chan_map, topic.c fab__topic_map)
 * do; the figures are computed as fab_chan_stats computes them.  Nothing
 * here writes shared memory (the mapping could not be written anyway), and
 * nothing waits: a header whose version word is still 0 is reported as not
 * initialised and skipped, where libfab would wait for it.
 *
 * A segment that does not validate is skipped and reported; no value read
 * from shared memory is used as a size, offset or loop bound before it has
 * been checked against the file.  The one hazard left is a segment file
 * shrunk under us after validation (SIGBUS): no fab process ever shrinks a
 * segment, only a hostile one could.
 */
#include "metrics.h"

#include "atomic.h"
#include "layout.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

/* Limits libfab's chan.c checks a channel header against (layout.md
 * "Channel header": max_inflight and max_deliveries ranges; header page). */
#define MX_HDR_BYTES 4096u
#define MX_INFLIGHT_MAX 1024u
#define MX_DELIVERIES_MAX 1000u

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

/* ---- read-only segments -------------------------------------------------------- */

typedef struct mx_seg {
	uint8_t *base;
	size_t size;
} mx_seg;

static bool mx_name_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (n >= FAB_NAME_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return n > 0;
}

/* Copy a name field of shared memory (n bytes) into out[FAB_NAME_MAX + 1];
 * false unless it is a valid, NUL-terminated name. */
static bool mx_copy_name(char *out, const char *field, size_t n)
{
	char tmp[64];
	if (n > sizeof tmp)
		n = sizeof tmp;
	memcpy(tmp, field, n);
	if (!memchr(tmp, 0, n))
		return false;
	if (!mx_name_ok(tmp))
		return false;
	memcpy(out, tmp, strlen(tmp) + 1); /* <= FAB_NAME_MAX + 1 bytes: checked */
	return true;
}

/*
 * Map /dev/shm<path> read-only, whole file.  Same owner rule as libfab's
 * fab__seg_open: a segment of another user is read only when its creator
 * granted group or other access.  A file smaller than min_size is corrupt
 * (libfab gives an empty one a moment to be sized; a scrape does not wait:
 * it reports it).  0 or an FAB_E* code with mx_errbuf set.
 */
static int mx_map(const char *path, size_t min_size, mx_seg *s)
{
	s->base = NULL;
	s->size = 0;
	int fd = shm_open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0) {
		if (errno == ENOENT)
			return mx_err(FAB_ENOENT, "%s does not exist", path);
		if (errno == EACCES || errno == ELOOP)
			return mx_err(FAB_EPERM, "%s: permission denied", path);
		return mx_err(FAB_ESYS, "shm_open %s: %s", path, strerror(errno));
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		int e = errno;
		close(fd);
		return mx_err(FAB_ESYS, "fstat %s: %s", path, strerror(e));
	}
	if (!S_ISREG(sb.st_mode) || (sb.st_uid != geteuid() && (sb.st_mode & 0066) == 0)) {
		close(fd);
		return mx_err(FAB_EPERM, "%s is owned by uid %u, not us", path, (unsigned)sb.st_uid);
	}
	if (sb.st_size < 0 || (uint64_t)sb.st_size < min_size) {
		close(fd);
		return mx_err(FAB_ECORRUPT, "%s is %lld bytes, smaller than its header", path,
			      (long long)sb.st_size);
	}
	void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd); /* the mapping keeps the object */
	if (p == MAP_FAILED)
		return mx_err(e == ENOMEM ? FAB_ENOMEM : FAB_ESYS, "mmap %s: %s", path, strerror(e));
	s->base = p;
	s->size = (size_t)sb.st_size;
	return 0;
}

static void mx_unmap(mx_seg *s)
{
	if (s->base)
		munmap(s->base, s->size);
	s->base = NULL;
}

/* The version word, without waiting: 0 is "not initialised yet". */
static int mx_version(_Atomic uint32_t *word, const char *what, const char *name, uint32_t *v)
{
	/* Pairs with the creator's store_release of version: once seen, the
	 * whole header written before it is visible. */
	*v = load_acquire(word);
	if (*v == 0)
		return mx_err(FAB_ECORRUPT, "%s %s: not initialised (version 0)", what, name);
	if ((*v >> 16) != FAB_LAYOUT_MAJOR)
		return mx_err(FAB_EVERSION, "%s %s: layout %u.%u, fabd speaks %u.x", what, name,
			      *v >> 16, *v & 0xffff, FAB_LAYOUT_MAJOR);
	return 0;
}

/* Control segment: as fabric.c fab__ctl_validate. */
static int mx_ctl_validate(const mx_seg *s, const char *fabric)
{
	fab_ctl_hdr *h = (fab_ctl_hdr *)s->base;
	uint32_t v;
	int rc = mx_version(&h->version, "fabric", fabric, &v);
	if (rc)
		return rc;
	if (h->magic != FAB_CTL_MAGIC)
		return mx_err(FAB_ECORRUPT, "fabric %s: bad magic", fabric);
	if ((v & 0xffff) < FAB_LAYOUT_MINOR)
		return mx_err(FAB_EVERSION, "fabric %s: layout %u.%u predates %u.%u", fabric, v >> 16,
			      v & 0xffff, FAB_LAYOUT_MAJOR, FAB_LAYOUT_MINOR);
	if (h->hdr_size != sizeof(fab_ctl_hdr) || h->total_size != FAB_CTL_SIZE ||
	    h->total_size > s->size || h->max_procs != FAB_MAX_PROCS ||
	    h->max_chans != FAB_MAX_CHANS || h->max_ctxs != FAB_MAX_CTXS ||
	    h->procs_off != FAB_CTL_PROCS_OFF || h->chans_off != FAB_CTL_CHANS_OFF ||
	    h->ctxs_off != FAB_CTL_CTXS_OFF || h->lims_off != FAB_CTL_LIMS_OFF ||
	    h->max_lims != FAB_MAX_LIMS || h->stages_off != FAB_CTL_STAGES_OFF ||
	    h->lhists_off != FAB_CTL_LHISTS_OFF ||
	    h->max_stages != FAB_MAX_STAGES)
		return mx_err(FAB_ECORRUPT, "fabric %s: header sizes do not match the segment",
			      fabric);
	return 0;
}

static uint32_t mx_pow2(uint32_t v)
{
	uint32_t p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

/* Channel geometry (layout.md "Channel segment"), as chan.c fab__geometry:
 * recomputed from the header's parameters, then compared with it. */
typedef struct mx_geom {
	uint32_t ring, nslots, slot_size;
	uint64_t attach_off, ents_off, slots_off, total;
} mx_geom;

static bool mx_chan_geometry(uint32_t kind, uint32_t delivery, uint32_t capacity,
			     uint32_t msg_size, mx_geom *g)
{
	uint32_t mhdr = delivery == FAB_AT_LEAST_ONCE ? (uint32_t)sizeof(fab_mslot_alo)
						      : (uint32_t)sizeof(fab_mslot);
	if (delivery == FAB_AT_LEAST_ONCE)
		kind = FAB_MPMC;
	g->nslots = mx_pow2(capacity ? capacity : 1);
	g->attach_off = MX_HDR_BYTES;
	uint64_t after_attach = g->attach_off + FAB_ATTACH_MAX * sizeof(uint64_t);
	uint32_t tail = msg_size % 64u;
	if (kind == FAB_SPSC && capacity > 0 && (msg_size <= 56 || (tail && tail <= 56))) {
		g->ring = FAB_RING_SPSC_INLINE;
		g->slot_size = msg_size <= 56 ? mx_pow2(8 + msg_size)
					      : (uint32_t)((8u + msg_size + 63u) & ~63u);
		g->slots_off = (after_attach + 4095u) & ~4095ULL;
		g->ents_off = g->slots_off;
	} else if (kind == FAB_SPSC && capacity > 0) {
		g->ring = FAB_RING_SPSC;
		g->slot_size = (msg_size + 7u) & ~7u;
		g->ents_off = after_attach;
		g->slots_off = (g->ents_off + (uint64_t)g->nslots * 8u + 4095u) & ~4095ULL;
	} else {
		g->ring = FAB_RING_MPMC;
		g->slot_size = (uint32_t)((mhdr + msg_size + 63u) & ~63u);
		g->ents_off = after_attach;
		g->slots_off = (after_attach + 4095u) & ~4095ULL;
	}
	uint64_t total = g->slots_off + (uint64_t)g->nslots * g->slot_size;
	g->total = (total + 4095u) & ~4095ULL;
	return g->total <= (1ULL << 32);
}

/* One channel's figures, as fab_chan_stats computes them. */
/* A copy of a fab_hist (layout.h): buckets as stored (not cumulative). */
typedef struct mx_hist {
	uint64_t b[FAB_HIST_BUCKETS + 1];
	uint64_t sum_ns;
} mx_hist;

static void mx_hist_copy(mx_hist *o, fab_hist *h)
{
	/* Relaxed counters (wait.c fab__hist_add): the exporter derives the
	 * count from the buckets, so +Inf and _count always agree. */
	for (int i = 0; i <= FAB_HIST_BUCKETS; i++)
		o->b[i] = load_relaxed(&h->b[i]);
	o->sum_ns = load_relaxed(&h->sum_ns);
}

typedef struct mx_chan {
	char name[FAB_NAME_MAX + 1];
	uint64_t depth, capacity, sent, received, blocked_s, blocked_r;
	uint64_t redelivered, dead_lettered, dead_dropped;
	mx_hist send_wait, recv_wait, latency;
} mx_chan;

/* Given-back messages waiting behind head (ring_mpmc.c
 * fab__mpmc_returned_now): a scan of at most one lap of slot words. */
static uint64_t mx_returned_now(fab_chan_hdr *h, const mx_geom *g)
{
	uint8_t *slots = (uint8_t *)h + g->slots_off;
	uint64_t hd = load_acquire(&h->head), n = 0;
	uint64_t lo = load_acquire(&h->redo_low);
	/* A scribbled hint must not send us scanning: clamp to one lap. */
	if ((int64_t)(hd - lo) > (int64_t)g->nslots || (int64_t)(hd - lo) < 0)
		lo = hd - g->nslots;
	for (uint64_t q = lo; q != hd; q++) {
		fab_mslot *s = (fab_mslot *)(slots + (size_t)(q & (g->nslots - 1)) * g->slot_size);
		uint64_t w = load_acquire(&s->state);
		if (FAB_SW_SAMEPOS(w, q) &&
		    (FAB_SW_STATE(w) == FAB_SLOT_FULL || FAB_SW_STATE(w) == FAB_SLOT_RETURNING))
			n++;
	}
	return n;
}

/* Map, validate (chan.c fab__chan_map) and read channel `name`. */
static int mx_chan_read(const char *fabric, const char *name, mx_chan *c)
{
	char path[160];
	snprintf(path, sizeof path, "/fab.%s.%s", fabric, name);
	mx_seg s;
	int rc = mx_map(path, MX_HDR_BYTES, &s);
	if (rc)
		return rc;
	fab_chan_hdr *h = (fab_chan_hdr *)s.base;
	uint32_t v;
	if ((rc = mx_version(&h->version, "channel", name, &v)))
		goto out;
	rc = FAB_ECORRUPT;
	if (h->magic != FAB_CHAN_MAGIC) {
		mx_err(rc, "channel %s: bad magic", name);
		goto out;
	}
	/* Copy the immutable line once: a scribbler cannot move our bounds
	 * between the check and the use. */
	uint32_t kind = h->kind, cap = h->capacity, msz = h->msg_size, dlv = h->delivery;
	uint32_t mif = h->max_inflight, mdl = h->max_deliveries;
	mx_geom g;
	if ((kind != FAB_SPSC && kind != FAB_MPMC) || cap > FAB_CAPACITY_MAX ||
	    (dlv != FAB_AT_MOST_ONCE && dlv != FAB_AT_LEAST_ONCE) ||
	    (dlv == FAB_AT_LEAST_ONCE &&
	     (mif == 0 || mif > MX_INFLIGHT_MAX || mdl == 0 || mdl > MX_DELIVERIES_MAX)) ||
	    msz > FAB_MSG_SIZE_MAX || !mx_chan_geometry(kind, dlv, cap, msz, &g) ||
	    h->hdr_size != sizeof(fab_chan_hdr) || h->ring != g.ring || h->nslots != g.nslots ||
	    h->slot_size != g.slot_size || h->attach_off != g.attach_off ||
	    h->ents_off != g.ents_off || h->slots_off != g.slots_off || h->total_size != g.total ||
	    g.total > s.size || h->attach_max != FAB_ATTACH_MAX || h->producers == 0 ||
	    h->producers > FAB_PRODUCERS_MAX) {
		mx_err(rc, "channel %s: header does not match the segment", name);
		goto out;
	}
	snprintf(c->name, sizeof c->name, "%s", name);
	c->capacity = cap;
	c->blocked_s = load_relaxed(&h->send_waiters);
	c->blocked_r = load_relaxed(&h->recv_waiters);

	/* depth: fab__chan_len_raw */
	uint64_t t = load_acquire(&h->tail), hd = load_acquire(&h->head);
	int64_t d = (int64_t)(t - hd);
	if (d < 0)
		d = 0;
	if (dlv == FAB_AT_LEAST_ONCE)
		d += (int64_t)mx_returned_now(h, &g);
	if (d > (int64_t)cap)
		d = cap;
	c->depth = (uint64_t)d;

	/* sent/received: positions passed, less those that carried nothing */
	uint64_t skipped = load_relaxed(&h->skipped);
	uint64_t tail = load_relaxed(&h->tail) - h->start_pos;
	uint64_t head = load_relaxed(&h->head) - h->start_pos;
	c->sent = tail - (skipped <= tail ? skipped : tail);
	c->received = head - (skipped <= head ? skipped : head);
	if (cap == 0)
		c->sent = c->received; /* unbuffered: a message in the slot is not sent yet */
	c->redelivered = c->dead_lettered = c->dead_dropped = 0;
	if (dlv == FAB_AT_LEAST_ONCE) {
		c->redelivered = load_relaxed(&h->redelivered);
		c->dead_lettered = load_relaxed(&h->dead_lettered);
		c->dead_dropped = load_relaxed(&h->dead_dropped);
	}
	mx_hist_copy(&c->send_wait, &h->send_wait);
	mx_hist_copy(&c->recv_wait, &h->recv_wait);
	mx_hist_copy(&c->latency, &h->latency);
	rc = 0;
out:
	mx_unmap(&s);
	return rc;
}

typedef struct mx_topic {
	char name[FAB_NAME_MAX + 1];
	uint64_t dropped;
} mx_topic;

/* Map, validate (topic.c fab__topic_map) and read topic `name`. */
static int mx_topic_read(const char *fabric, const char *name, mx_topic *tp)
{
	char path[160];
	snprintf(path, sizeof path, "/fab.%s.%s", fabric, name);
	mx_seg s;
	int rc = mx_map(path, FAB_TOPIC_SUBS_OFF, &s);
	if (rc)
		return rc;
	fab_topic_hdr *h = (fab_topic_hdr *)s.base;
	uint32_t v;
	if ((rc = mx_version(&h->version, "topic", name, &v)))
		goto out;
	rc = FAB_ECORRUPT;
	if (h->magic != FAB_TOPIC_MAGIC) {
		mx_err(rc, "topic %s: bad magic", name);
		goto out;
	}
	uint32_t cap = h->capacity, msz = h->msg_size;
	uint32_t n = mx_pow2(cap);
	uint32_t slot = (uint32_t)((sizeof(fab_mslot) + (uint64_t)msz + 63u) & ~63ULL);
	uint64_t total = ((FAB_TOPIC_SLOTS_OFF + (uint64_t)n * slot) + 4095u) & ~4095ULL;
	if (cap == 0 || cap > FAB_CAPACITY_MAX || msz > FAB_MSG_SIZE_MAX || total > (1ULL << 32) ||
	    h->hdr_size != sizeof(fab_topic_hdr) || h->nslots != n || h->slot_size != slot ||
	    h->subs_off != FAB_TOPIC_SUBS_OFF || h->slots_off != FAB_TOPIC_SLOTS_OFF ||
	    h->total_size != total || total > s.size || h->sub_max != FAB_TOPIC_SUBS_MAX) {
		mx_err(rc, "topic %s: header does not match the segment", name);
		goto out;
	}
	snprintf(tp->name, sizeof tp->name, "%s", name);
	tp->dropped = load_relaxed(&h->dropped_total);
	rc = 0;
out:
	mx_unmap(&s);
	return rc;
}

typedef struct mx_stage {
	char name[FAB_NAME_MAX + 1];
	uint64_t errors;
} mx_stage;

/* ---- render ---------------------------------------------------------------------- */

typedef struct mx_lim {
	char name[FAB_NAME_MAX + 1];
	mx_hist wait;
} mx_lim;

typedef struct mx_scan {
	mx_chan *chans;
	mx_topic *topics;
	mx_stage *stages;
	mx_lim *lims;
	uint32_t nchans, ntopics, nstages, nlims, skipped;
} mx_scan;

static void mx_skip(mx_buf *b, mx_scan *sc, int rc)
{
	sc->skipped++;
	/* A comment line: the reason reaches whoever reads the page. */
	mx_printf(b, "# fab: skipped: %s (%s)\n", mx_errbuf, fab_errname(rc));
}

/* Walk the registry and the stage table of a validated control segment. */
static void mx_scan_ctl(mx_buf *b, mx_scan *sc, const mx_seg *ctl, const char *fabric)
{
	fab_chan_ent *ents = (fab_chan_ent *)(ctl->base + FAB_CTL_CHANS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_CHANS; i++) {
		fab_chan_ent *e = &ents[i];
		/* Pairs with the creator's store_release of state LIVE: name and
		 * type, written before it, are visible. */
		if (load_acquire(&e->state) != FAB_ENT_LIVE)
			continue;
		uint64_t gen = load_acquire(&e->gen);
		char name[FAB_NAME_MAX + 1];
		bool ok = mx_copy_name(name, e->name, sizeof e->name);
		uint32_t type = e->type;
		/* Acquire fence, then look again: a destroy (or destroy and
		 * create) while we copied changes gen; such an entry is gone,
		 * not corrupt, and is left out silently. */
		fence_acquire();
		if (load_relaxed(&e->state) != FAB_ENT_LIVE || load_relaxed(&e->gen) != gen)
			continue;
		if (!ok || (type != FAB_OBJ_CHAN && type != FAB_OBJ_TOPIC)) {
			mx_skip(b, sc,
				mx_err(FAB_ECORRUPT, "fabric %s: registry entry %u: bad name or type",
				       fabric, i));
			continue;
		}
		int rc;
		if (type == FAB_OBJ_CHAN) {
			rc = mx_chan_read(fabric, name, &sc->chans[sc->nchans]);
			if (rc == 0)
				sc->nchans++;
		} else {
			rc = mx_topic_read(fabric, name, &sc->topics[sc->ntopics]);
			if (rc == 0)
				sc->ntopics++;
		}
		if (rc)
			mx_skip(b, sc, rc);
	}
	fab_stage_ent *st = (fab_stage_ent *)(ctl->base + FAB_CTL_STAGES_OFF);
	for (uint32_t i = 0; i < FAB_MAX_STAGES; i++) {
		/* Pairs with fab_stage_open's store_release of state LIVE. */
		if (load_acquire(&st[i].state) != FAB_ENT_LIVE)
			continue;
		mx_stage *m = &sc->stages[sc->nstages];
		if (!mx_copy_name(m->name, st[i].name, sizeof st[i].name)) {
			mx_skip(b, sc,
				mx_err(FAB_ECORRUPT, "fabric %s: stage entry %u: bad name", fabric, i));
			continue;
		}
		m->errors = load_relaxed(&st[i].errors);
		sc->nstages++;
	}
	fab_lim_ent *lim = (fab_lim_ent *)(ctl->base + FAB_CTL_LIMS_OFF);
	fab_hist *lh = (fab_hist *)(ctl->base + FAB_CTL_LHISTS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++) {
		/* Pairs with the creator's store_release of LIVE (name first). */
		if (load_acquire(&lim[i].state) != FAB_ENT_LIVE)
			continue;
		mx_lim *m = &sc->lims[sc->nlims];
		if (!mx_copy_name(m->name, lim[i].name, sizeof lim[i].name)) {
			mx_skip(b, sc,
				mx_err(FAB_ECORRUPT, "fabric %s: limiter entry %u: bad name", fabric, i));
			continue;
		}
		mx_hist_copy(&m->wait, &lh[i]);
		sc->nlims++;
	}
}

/* The samples of one histogram series: cumulative buckets with le in
 * seconds (1 us << i), +Inf, _sum and _count. */
static void mx_hist_samples(mx_buf *b, const char *name, const char *fabric, const char *labels,
			    const mx_hist *h)
{
	uint64_t cum = 0;
	for (int i = 0; i <= FAB_HIST_BUCKETS; i++) {
		cum += h->b[i];
		mx_printf(b, "%s_bucket{fabric=\"", name);
		mx_label(b, fabric);
		if (i < FAB_HIST_BUCKETS)
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

/* key="value" with the value escaped, into a small buffer for labels. */
static void mx_kv(char *out, size_t n, const char *key, const char *val, const char *extra)
{
	/* Names are validated ([A-Za-z0-9_.-]): nothing to escape. */
	snprintf(out, n, "%s=\"%s\"%s", key, val, extra ? extra : "");
}

int fab_metrics_render(const char *fabric, const fab_metrics_stage *stages, size_t nstages,
		       char **out, size_t *len, fab_metrics_report *rep)
{
	if (!out || !len)
		return mx_err(FAB_EINVAL, "NULL out pointer");
	*out = NULL;
	*len = 0;
	if (!fabric || !mx_name_ok(fabric))
		return mx_err(FAB_EINVAL, "bad fabric name (want [A-Za-z0-9_-]{1,48})");
	if (nstages && !stages)
		return mx_err(FAB_EINVAL, "NULL stages with nstages %zu", nstages);
	for (size_t i = 0; i < nstages; i++)
		if (!stages[i].name)
			return mx_err(FAB_EINVAL, "stages[%zu].name is NULL", i);

	mx_buf b = {0};
	/* The figures are gathered first: the format wants each family's
	 * samples together, under one HELP/TYPE pair. */
	mx_scan sc = {0};
	sc.chans = calloc(FAB_MAX_CHANS, sizeof *sc.chans);
	sc.topics = calloc(FAB_MAX_CHANS, sizeof *sc.topics);
	sc.stages = calloc(FAB_MAX_STAGES, sizeof *sc.stages);
	sc.lims = calloc(FAB_MAX_LIMS, sizeof *sc.lims);
	int rc = 0;
	if (!sc.chans || !sc.topics || !sc.stages || !sc.lims) {
		rc = mx_err(FAB_ENOMEM, "out of memory");
		goto done;
	}

	char path[80];
	snprintf(path, sizeof path, "/fab.%s", fabric);
	mx_seg ctl;
	int crc = mx_map(path, sizeof(fab_ctl_hdr), &ctl);
	if (crc == 0 && (crc = mx_ctl_validate(&ctl, fabric)) != 0)
		mx_unmap(&ctl);
	if (crc) {
		mx_skip(&b, &sc, crc);
	} else {
		mx_scan_ctl(&b, &sc, &ctl, fabric);
		mx_unmap(&ctl);
	}

#define CHAN_FAMILY(metric, type, help, field)                                              \
	do {                                                                                \
		mx_family(&b, metric, type, help);                                          \
		for (uint32_t i = 0; i < sc.nchans; i++)                                    \
			mx_sample(&b, metric, fabric, "channel", sc.chans[i].name,          \
				  sc.chans[i].field);                                       \
	} while (0)
	CHAN_FAMILY("fab_channel_depth", "gauge", "Messages queued in the channel now.", depth);
	CHAN_FAMILY("fab_channel_capacity", "gauge", "Capacity of the channel, as created.",
		    capacity);
	CHAN_FAMILY("fab_channel_sent_total", "counter",
		    "Messages committed to the channel since it was created.", sent);
	CHAN_FAMILY("fab_channel_received_total", "counter",
		    "Messages taken from the channel since it was created.", received);
	CHAN_FAMILY("fab_channel_blocked_senders", "gauge",
		    "Senders sleeping (or about to sleep) on the channel now.", blocked_s);
	CHAN_FAMILY("fab_channel_blocked_receivers", "gauge",
		    "Receivers sleeping (or about to sleep) on the channel now.", blocked_r);
	CHAN_FAMILY("fab_channel_redelivered_total", "counter",
		    "Deliveries of messages given back before (at-least-once).", redelivered);
	CHAN_FAMILY("fab_channel_dead_lettered_total", "counter",
		    "Poison messages moved to the dead-letter channel (at-least-once).",
		    dead_lettered);
	CHAN_FAMILY("fab_channel_dead_dropped_total", "counter",
		    "Poison messages dropped for want of a dead-letter channel (at-least-once).",
		    dead_dropped);
#undef CHAN_FAMILY

	char lbl[FAB_NAME_MAX + 64];
	mx_family(&b, "fab_channel_wait_seconds", "histogram",
		  "Time a blocking send or receive slept on the channel (calls that slept).");
	for (uint32_t i = 0; i < sc.nchans; i++) {
		mx_kv(lbl, sizeof lbl, "channel", sc.chans[i].name, ",op=\"send\"");
		mx_hist_samples(&b, "fab_channel_wait_seconds", fabric, lbl, &sc.chans[i].send_wait);
		mx_kv(lbl, sizeof lbl, "channel", sc.chans[i].name, ",op=\"recv\"");
		mx_hist_samples(&b, "fab_channel_wait_seconds", fabric, lbl, &sc.chans[i].recv_wait);
	}
	mx_family(&b, "fab_pipeline_latency_seconds", "histogram",
		  "Time from a message chain's origin to its acknowledgement on the channel.");
	for (uint32_t i = 0; i < sc.nchans; i++) {
		mx_kv(lbl, sizeof lbl, "channel", sc.chans[i].name, NULL);
		mx_hist_samples(&b, "fab_pipeline_latency_seconds", fabric, lbl,
				&sc.chans[i].latency);
	}
	mx_family(&b, "fab_limiter_wait_seconds", "histogram",
		  "Time fab_limiter_wait delayed a caller (calls granted at once not counted).");
	for (uint32_t i = 0; i < sc.nlims; i++) {
		mx_kv(lbl, sizeof lbl, "limiter", sc.lims[i].name, NULL);
		mx_hist_samples(&b, "fab_limiter_wait_seconds", fabric, lbl, &sc.lims[i].wait);
	}

	mx_family(&b, "fab_topic_dropped_total", "counter",
		  "Messages lost by lapped subscribers of the topic.");
	for (uint32_t i = 0; i < sc.ntopics; i++)
		mx_sample(&b, "fab_topic_dropped_total", fabric, "topic", sc.topics[i].name,
			  sc.topics[i].dropped);

	mx_family(&b, "fab_stage_errors_total", "counter",
		  "Errors the stage's replicas reported with fab_stage_error.");
	for (uint32_t i = 0; i < sc.nstages; i++)
		mx_sample(&b, "fab_stage_errors_total", fabric, "stage", sc.stages[i].name,
			  sc.stages[i].errors);

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

	if (b.oom || !b.p)
		rc = mx_err(FAB_ENOMEM, "out of memory");
done:
	if (rep) {
		rep->channels = sc.nchans;
		rep->topics = sc.ntopics;
		rep->stages = sc.nstages;
		rep->skipped = sc.skipped;
	}
	free(sc.chans);
	free(sc.topics);
	free(sc.stages);
	free(sc.lims);
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
	 * created, so fabd's signalfd (and only it) sees SIGTERM, SIGCHLD... */
	sigset_t all, old;
	sigfillset(&all);
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
