/*
 * trace.c - `fabctl trace [-f FABRIC] [--seconds N] [-o json]`: how long a
 * fabric's processes sleep in the kernel, and on what.
 *
 * The BPF half (trace.bpf.c) times every futex sleep whose word lies in one
 * of the fabric's shm segments and hands over (file, offset, duration,
 * return value, process).  This half keeps every duration, maps (file,
 * offset) to what it means in the fabric (channel send or receive word,
 * topic data or space word, a context's cancel word, a limiter's seq word)
 * using layout.h, and prints one row per (object, op, process): sleeps,
 * total, p50, p99 and max sleep time, computed exactly from the stored
 * durations.  Nothing runs inside the stages: no library hook, no write
 * to shared memory.  Segments are only read, with pread (a channel's or
 * topic's magic; context and limiter names in the control segment).
 *
 * Needs CAP_BPF and CAP_PERFMON (or root); without them it says so and
 * returns FABCTL_EXIT_NOPRIV.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/types.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "fabctl.h"
#include "layout.h"
#include "trace.skel.h"
#include "trace_event.h"

#define SHM_DIR "/dev/shm"
#define FT_FABRIC_MAX 48 /* FAB_NAME_MAX */

/* ---- libbpf's messages ------------------------------------------------ */

/* libbpf prints on its own (rlimit bumps, failed probes, verifier logs).
 * Keep the last warning so an unexpected failure can show it; print all of
 * them only with --verbose.  The expected failure (no privilege) is
 * reported by us in one line. */
static int ft_verbose;
static char ft_lastmsg[512];

static int ft_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (ft_verbose) {
		vfprintf(stderr, fmt, ap);
		return 0;
	}
	if (level <= LIBBPF_WARN)
		vsnprintf(ft_lastmsg, sizeof ft_lastmsg, fmt, ap);
	return 0;
}

/* ---- aggregation ------------------------------------------------------ */

/* One row: one word of one segment, slept on by one process. */
struct ft_row {
	char file[FT_NAME_LEN];
	uint64_t offset;
	uint32_t tgid;
	char comm[FT_COMM_LEN];
	/* what the word is, decided when the row is first seen (the segment
	 * may be gone by the end) */
	char kind[16]; /* chan, topic, ctx, limiter, control, segment */
	char name[FT_FABRIC_MAX + 16];
	char op[24];
	uint64_t sleeps;   /* calls that slept (returned other than EAGAIN) */
	uint64_t eagain;   /* calls that found the word changed: no sleep */
	uint64_t timeouts; /* of the sleeps, ended by their deadline */
	uint64_t total_ns;
	uint64_t max_ns;
	uint64_t *durs; /* durations of the sleeps */
	size_t ndurs, capdurs;
	uint64_t sleeping;    /* still asleep when the trace ended */
	uint64_t sleeping_ns; /* the longest of those, so far */
	struct ft_row *next;  /* hash chain */
};

#define FT_HASH 1024u

struct ft_ctl {
	int fd;         /* the control segment, read-only, or -1 */
	int open_errno; /* why fd is -1 */
	uint64_t ctxs_off, lims_off;
	uint32_t max_ctxs, max_lims;
	int valid; /* the header checked out */
};

struct ft_state {
	char fabric[FT_FABRIC_MAX + 1];
	char prefix[FT_NAME_LEN]; /* "fab.<fabric>" */
	struct ft_ctl ctl;
	struct ft_row *hash[FT_HASH];
	size_t nrows;
	uint64_t events;
	int oom;
	int noaccess; /* segments we could not read (EACCES): shown by offset */
};

static uint32_t ft_hash(const char *file, uint64_t off, uint32_t tgid)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const char *p = file; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ off) * 1099511628211ULL;
	h = (h ^ tgid) * 1099511628211ULL;
	return (uint32_t)(h ^ (h >> 32)) % FT_HASH;
}

/* Open the control segment (read-only; entries are read with pread, so a
 * segment truncated or replaced under us cannot fault) and take the table
 * geometry from its header, checked against the file's size; on any doubt
 * keep the layout.h defaults and no names (names are decoration, never
 * trusted). */
static void ft_ctl_open(struct ft_state *s)
{
	struct ft_ctl *c = &s->ctl;
	if (c->fd >= 0)
		close(c->fd);
	memset(c, 0, sizeof *c);
	c->fd = -1;
	c->ctxs_off = FAB_CTL_CTXS_OFF;
	c->lims_off = FAB_CTL_LIMS_OFF;
	c->max_ctxs = FAB_MAX_CTXS;
	c->max_lims = FAB_MAX_LIMS;
	char path[sizeof SHM_DIR + FT_NAME_LEN + 1];
	snprintf(path, sizeof path, SHM_DIR "/%s", s->prefix);
	c->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c->fd < 0) {
		c->open_errno = errno;
		return;
	}
	struct stat sb;
	fab_ctl_hdr h;
	if (fstat(c->fd, &sb) != 0 || pread(c->fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
		return;
	uint64_t size = (uint64_t)sb.st_size;
	if (h.magic != FAB_CTL_MAGIC ||
	    (atomic_load_explicit(&h.version, memory_order_relaxed) >> 16) != FAB_LAYOUT_MAJOR)
		return;
	if (h.ctxs_off < size && h.max_ctxs <= (size - h.ctxs_off) / sizeof(fab_ctx_ent)) {
		c->ctxs_off = h.ctxs_off;
		c->max_ctxs = h.max_ctxs;
	}
	if (h.lims_off && h.lims_off < size &&
	    h.max_lims <= (size - h.lims_off) / sizeof(fab_lim_ent)) {
		c->lims_off = h.lims_off;
		c->max_lims = h.max_lims;
	}
	c->valid = 1;
}

/* Copy a NUL-terminated name out of shared memory, or "" if it is not a
 * valid fab name (a half-written or corrupted entry). */
static void ft_copy_name(char *dst, size_t cap, const char *src, size_t srclen)
{
	size_t n = 0;
	while (n < srclen && src[n])
		n++;
	dst[0] = '\0';
	if (n == 0 || n == srclen || n >= cap)
		return;
	for (size_t i = 0; i < n; i++) {
		char ch = src[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* The name of the control-segment entry of `entsize` bytes at `eoff` whose
 * name field is at `name_off`, into dst ("" when unreadable or invalid). */
static void ft_ctl_name(const struct ft_ctl *c, uint64_t eoff, size_t name_off, char *dst,
			size_t cap)
{
	char raw[64];
	dst[0] = '\0';
	if (c->fd < 0 ||
	    pread(c->fd, raw, sizeof raw, (off_t)(eoff + name_off)) != (ssize_t)sizeof raw)
		return;
	ft_copy_name(dst, cap, raw, sizeof raw);
}

/* A word of the control segment: a context's cancel word, a limiter's seq
 * word, or just an offset. */
static void ft_classify_ctl(struct ft_state *s, struct ft_row *r)
{
	/* Mapped at the start; again if the fabric was (re)created since. */
	if (!s->ctl.valid)
		ft_ctl_open(s);
	const struct ft_ctl *c = &s->ctl;
	if (c->fd < 0 && c->open_errno == EACCES)
		s->noaccess++;
	uint64_t off = r->offset;
	if (off >= c->ctxs_off && off < c->ctxs_off + (uint64_t)c->max_ctxs * sizeof(fab_ctx_ent)) {
		uint64_t idx = (off - c->ctxs_off) / sizeof(fab_ctx_ent);
		uint64_t in = (off - c->ctxs_off) % sizeof(fab_ctx_ent);
		if (in == offsetof(fab_ctx_ent, cancel)) {
			char nm[FT_FABRIC_MAX + 1] = "";
			ft_ctl_name(c, c->ctxs_off + idx * sizeof(fab_ctx_ent),
				    offsetof(fab_ctx_ent, name), nm, sizeof nm);
			snprintf(r->kind, sizeof r->kind, "ctx");
			if (nm[0])
				snprintf(r->name, sizeof r->name, "%s", nm);
			else
				snprintf(r->name, sizeof r->name, "#%u", (unsigned)idx);
			snprintf(r->op, sizeof r->op, "wait");
			return;
		}
	}
	if (off >= c->lims_off && off < c->lims_off + (uint64_t)c->max_lims * sizeof(fab_lim_ent)) {
		uint64_t idx = (off - c->lims_off) / sizeof(fab_lim_ent);
		uint64_t in = (off - c->lims_off) % sizeof(fab_lim_ent);
		if (in == offsetof(fab_lim_ent, seq)) {
			char nm[FT_FABRIC_MAX + 1] = "";
			ft_ctl_name(c, c->lims_off + idx * sizeof(fab_lim_ent),
				    offsetof(fab_lim_ent, name), nm, sizeof nm);
			snprintf(r->kind, sizeof r->kind, "limiter");
			if (nm[0])
				snprintf(r->name, sizeof r->name, "%s", nm);
			else
				snprintf(r->name, sizeof r->name, "#%u", (unsigned)idx);
			snprintf(r->op, sizeof r->op, "wait");
			return;
		}
	}
	snprintf(r->kind, sizeof r->kind, "control");
	r->name[0] = '\0';
	snprintf(r->op, sizeof r->op, "+%llu", (unsigned long long)off);
}

/* Decide what the row's word is.  Channel and topic segments are told
 * apart by their magic (both put a wait word at 512 and 640, with opposite
 * meanings), read once here. */
static void ft_classify(struct ft_state *s, struct ft_row *r)
{
	size_t plen = strlen(s->prefix);
	if (strcmp(r->file, s->prefix) == 0) {
		ft_classify_ctl(s, r);
		return;
	}
	if (strncmp(r->file, s->prefix, plen) != 0 || r->file[plen] != '.') {
		/* The BPF side only passes the fabric's names; never trust it. */
		snprintf(r->kind, sizeof r->kind, "segment");
		snprintf(r->name, sizeof r->name, "%.*s", (int)(sizeof r->name - 1), r->file);
		snprintf(r->op, sizeof r->op, "+%llu", (unsigned long long)r->offset);
		return;
	}
	snprintf(r->name, sizeof r->name, "%s", r->file + plen + 1);
	uint64_t magic = 0;
	char path[sizeof SHM_DIR + FT_NAME_LEN + 1];
	snprintf(path, sizeof path, SHM_DIR "/%s", r->file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (pread(fd, &magic, sizeof magic, 0) != (ssize_t)sizeof magic)
			magic = 0;
		close(fd);
	} else if (errno == EACCES) {
		s->noaccess++;
	}
	if (magic == FAB_CHAN_MAGIC) {
		snprintf(r->kind, sizeof r->kind, "chan");
		if (r->offset == offsetof(fab_chan_hdr, send_futex))
			snprintf(r->op, sizeof r->op, "send");
		else if (r->offset == offsetof(fab_chan_hdr, recv_futex))
			snprintf(r->op, sizeof r->op, "recv");
		else
			snprintf(r->op, sizeof r->op, "+%llu", (unsigned long long)r->offset);
	} else if (magic == FAB_TOPIC_MAGIC) {
		snprintf(r->kind, sizeof r->kind, "topic");
		if (r->offset == offsetof(fab_topic_hdr, data_futex))
			snprintf(r->op, sizeof r->op, "recv"); /* subscribers */
		else if (r->offset == offsetof(fab_topic_hdr, space_futex))
			snprintf(r->op, sizeof r->op, "send"); /* publishers (BLOCK) */
		else
			snprintf(r->op, sizeof r->op, "+%llu", (unsigned long long)r->offset);
	} else {
		/* Gone (destroyed during the trace) or not a fab segment. */
		snprintf(r->kind, sizeof r->kind, "segment");
		snprintf(r->op, sizeof r->op, "+%llu", (unsigned long long)r->offset);
	}
}

static struct ft_row *ft_row_get(struct ft_state *s, const char *file, uint64_t off, uint32_t tgid,
				 const char *comm)
{
	uint32_t h = ft_hash(file, off, tgid);
	for (struct ft_row *r = s->hash[h]; r; r = r->next)
		if (r->tgid == tgid && r->offset == off && strcmp(r->file, file) == 0)
			return r;
	struct ft_row *r = calloc(1, sizeof *r);
	if (!r) {
		s->oom = 1;
		return NULL;
	}
	snprintf(r->file, sizeof r->file, "%s", file);
	r->offset = off;
	r->tgid = tgid;
	memcpy(r->comm, comm, FT_COMM_LEN - 1);
	r->comm[FT_COMM_LEN - 1] = '\0';
	ft_classify(s, r);
	r->next = s->hash[h];
	s->hash[h] = r;
	s->nrows++;
	return r;
}

/* Durations kept per row: 8 bytes each, so at most 32 MiB a row; past
 * that the percentiles come from a uniform sample. */
#ifndef FT_DURS_MAX
#define FT_DURS_MAX (4u << 20)
#endif

static uint64_t ft_rand(void)
{
	static uint64_t x = 0x9e3779b97f4a7c15ULL; /* xorshift64: no quality needed */
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

static int ft_on_event(void *ctx, void *data, size_t size)
{
	struct ft_state *s = ctx;
	if (size < sizeof(struct ft_event))
		return 0;
	struct ft_event e;
	memcpy(&e, data, sizeof e);
	e.file[FT_NAME_LEN - 1] = '\0';
	s->events++;
	struct ft_row *r = ft_row_get(s, e.file, e.offset, e.tgid, e.comm);
	if (!r)
		return 0;
	if (e.ret == -EAGAIN) {
		r->eagain++;
		return 0;
	}
	r->sleeps++;
	r->total_ns += e.dur_ns;
	if (e.dur_ns > r->max_ns)
		r->max_ns = e.dur_ns;
	if (e.ret == -ETIMEDOUT)
		r->timeouts++;
	if (r->ndurs == FT_DURS_MAX) {
		/* Bounded memory on long, busy traces: from here on a uniform
		 * sample (reservoir) of the sleeps, and p50/p99 estimates
		 * (the row says "sampled"). */
		uint64_t j = ft_rand() % r->sleeps;
		if (j < FT_DURS_MAX)
			r->durs[j] = e.dur_ns;
		return 0;
	}
	if (r->ndurs == r->capdurs) {
		size_t ncap = r->capdurs ? r->capdurs * 2 : 64;
		uint64_t *nd = realloc(r->durs, ncap * sizeof *nd);
		if (!nd) {
			s->oom = 1;
			return 0;
		}
		r->durs = nd;
		r->capdurs = ncap;
	}
	r->durs[r->ndurs++] = e.dur_ns;
	return 0;
}

/* Sleeps begun during the trace and not over at its end: from the BPF
 * start table.  Their process's name comes from /proc (the row may be
 * new). */
static void ft_collect_sleeping(struct ft_state *s, struct trace_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.starts);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock of bpf_ktime_get_ns */
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	struct ft_start v;
	__u32 key, next;
	__u32 *prev = NULL;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &v) != 0)
			continue;
		v.file[FT_NAME_LEN - 1] = '\0';
		if (!v.file[0])
			continue; /* unresolved (mmap lock was busy): unknown word */
		char comm[FT_COMM_LEN] = "?";
		char path[64];
		snprintf(path, sizeof path, "/proc/%u/comm", v.tgid);
		FILE *f = fopen(path, "re");
		if (f) {
			if (fgets(comm, sizeof comm, f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		} else {
			continue; /* the process is gone: a stale entry */
		}
		struct ft_row *r = ft_row_get(s, v.file, v.offset, v.tgid, comm);
		if (!r)
			continue;
		r->sleeping++;
		uint64_t d = now > v.start_ns ? now - v.start_ns : 0;
		if (d > r->sleeping_ns)
			r->sleeping_ns = d;
	}
}

static int ft_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest duration with at least p% of the sleeps at or
 * below it.  durs is sorted. */
static uint64_t ft_pct(const uint64_t *durs, size_t n, unsigned p)
{
	if (n == 0)
		return 0;
	size_t rank = (n * p + 99) / 100; /* ceil(n * p / 100), >= 1 */
	if (rank < 1)
		rank = 1;
	return durs[rank - 1];
}

static int ft_cmp_row(const void *a, const void *b)
{
	const struct ft_row *x = *(const struct ft_row *const *)a;
	const struct ft_row *y = *(const struct ft_row *const *)b;
	if (x->total_ns != y->total_ns)
		return x->total_ns > y->total_ns ? -1 : 1;
	if (x->sleeping != y->sleeping)
		return x->sleeping > y->sleeping ? -1 : 1;
	int c = strcmp(x->file, y->file);
	if (c)
		return c;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->tgid < y->tgid ? -1 : x->tgid > y->tgid;
}

static void ft_fmt_dur(char *buf, size_t cap, uint64_t ns)
{
	if (ns < 1000)
		snprintf(buf, cap, "%lluns", (unsigned long long)ns);
	else if (ns < 1000000)
		snprintf(buf, cap, "%.1fus", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, cap, "%.2fms", (double)ns / 1e6);
	else
		snprintf(buf, cap, "%.3fs", (double)ns / 1e9);
}

/* JSON strings here are fab names, comms and offsets: escape the few
 * characters a comm could hold. */
static void ft_json_str(FILE *out, const char *sv)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)sv; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

struct ft_report {
	double seconds;
	uint64_t lost, readfail, mapfull, vmabusy;
};

static void ft_print(struct ft_state *s, const struct ft_report *rep, int json, FILE *out)
{
	struct ft_row **rows = calloc(s->nrows ? s->nrows : 1, sizeof *rows);
	size_t n = 0;
	if (!rows) {
		s->oom = 1;
	} else {
		for (unsigned h = 0; h < FT_HASH; h++)
			for (struct ft_row *r = s->hash[h]; r; r = r->next)
				rows[n++] = r;
		qsort(rows, n, sizeof *rows, ft_cmp_row);
	}
	for (size_t i = 0; i < n; i++)
		if (rows[i]->ndurs)
			qsort(rows[i]->durs, rows[i]->ndurs, sizeof(uint64_t), ft_cmp_u64);

	if (json) {
		fprintf(out, "{\"fabric\":");
		ft_json_str(out, s->fabric);
		fprintf(out,
			",\"seconds\":%.3f,\"events\":%llu,\"lost\":%llu,\"unreadable\":%llu,"
			"\"untracked\":%llu,\"unresolved\":%llu,\"rows\":[",
			rep->seconds, (unsigned long long)s->events, (unsigned long long)rep->lost,
			(unsigned long long)rep->readfail, (unsigned long long)rep->mapfull,
			(unsigned long long)rep->vmabusy);
		for (size_t i = 0; i < n; i++) {
			const struct ft_row *r = rows[i];
			fprintf(out, "%s\n{\"kind\":", i ? "," : "");
			ft_json_str(out, r->kind);
			fprintf(out, ",\"object\":");
			ft_json_str(out, r->name);
			fprintf(out, ",\"op\":");
			ft_json_str(out, r->op);
			fprintf(out, ",\"pid\":%u,\"comm\":", r->tgid);
			ft_json_str(out, r->comm);
			fprintf(
			    out,
			    ",\"sleeps\":%llu,\"total_ns\":%llu,\"p50_ns\":%llu,\"p99_ns\":%llu,"
			    "\"max_ns\":%llu,\"timeouts\":%llu,\"eagain\":%llu,\"sleeping\":%llu,"
			    "\"sleeping_ns\":%llu,\"file\":",
			    (unsigned long long)r->sleeps, (unsigned long long)r->total_ns,
			    (unsigned long long)ft_pct(r->durs, r->ndurs, 50),
			    (unsigned long long)ft_pct(r->durs, r->ndurs, 99),
			    (unsigned long long)r->max_ns, (unsigned long long)r->timeouts,
			    (unsigned long long)r->eagain, (unsigned long long)r->sleeping,
			    (unsigned long long)r->sleeping_ns);
			ft_json_str(out, r->file);
			fprintf(out, ",\"offset\":%llu,\"sampled\":%s}",
				(unsigned long long)r->offset,
				r->sleeps > r->ndurs ? "true" : "false");
		}
		fprintf(out, "%s]}\n", n ? "\n" : "");
	} else {
		fprintf(out, "fabric %s: futex sleeps over %.1f s\n", s->fabric, rep->seconds);
		if (n == 0) {
			fprintf(out, "(no sleeps)\n");
		} else {
			fprintf(out, "%-7s %-24s %-6s %7s %-15s %7s %10s %10s %10s %10s %6s\n",
				"KIND", "OBJECT", "OP", "PID", "COMM", "SLEEPS", "TOTAL", "P50",
				"P99", "MAX", "NOW");
		}
		for (size_t i = 0; i < n; i++) {
			const struct ft_row *r = rows[i];
			char tot[24], p50[32], p99[32], mx[24], t[24];
			/* "~": percentiles of a sample (more than FT_DURS_MAX sleeps) */
			const char *approx = r->sleeps > r->ndurs ? "~" : "";
			ft_fmt_dur(tot, sizeof tot, r->total_ns);
			ft_fmt_dur(t, sizeof t, ft_pct(r->durs, r->ndurs, 50));
			snprintf(p50, sizeof p50, "%s%s", approx, t);
			ft_fmt_dur(t, sizeof t, ft_pct(r->durs, r->ndurs, 99));
			snprintf(p99, sizeof p99, "%s%s", approx, t);
			ft_fmt_dur(mx, sizeof mx, r->max_ns);
			fprintf(out, "%-7s %-24s %-6s %7u %-15s %7llu %10s %10s %10s %10s %6llu\n",
				r->kind, r->name[0] ? r->name : "-", r->op, r->tgid, r->comm,
				(unsigned long long)r->sleeps, tot, p50, p99, mx,
				(unsigned long long)r->sleeping);
		}
		if (rep->lost || rep->readfail || rep->mapfull || rep->vmabusy)
			fprintf(out,
				"(not counted: %llu lost events, %llu unreadable waits, %llu "
				"untracked, "
				"%llu unresolved)\n",
				(unsigned long long)rep->lost, (unsigned long long)rep->readfail,
				(unsigned long long)rep->mapfull, (unsigned long long)rep->vmabusy);
	}
	free(rows);
}

static void ft_free(struct ft_state *s)
{
	for (unsigned h = 0; h < FT_HASH; h++) {
		struct ft_row *r = s->hash[h];
		while (r) {
			struct ft_row *nx = r->next;
			free(r->durs);
			free(r);
			r = nx;
		}
		s->hash[h] = NULL;
	}
	if (s->ctl.fd >= 0)
		close(s->ctl.fd);
	s->ctl.fd = -1;
}

/* ---- command line, fabric, privilege ---------------------------------- */

static void ft_usage(FILE *out)
{
	fprintf(out, "usage: fabctl trace [-f FABRIC] [--seconds N] [-o text|json] [-v]\n"
		     "\n"
		     "Measure the futex sleeps of a fabric's processes with eBPF, for N seconds\n"
		     "(default 5; 0 = until interrupted) or until SIGINT, and print per object\n"
		     "(channel send/recv word, topic, context, limiter) and process: sleeps,\n"
		     "total, p50, p99 and max sleep time, and how many were asleep at the end.\n"
		     "Nothing is added to the stages.\n"
		     "\n"
		     "  -f, --fabric FABRIC  the fabric (default: $FAB_FABRIC, else the only one)\n"
		     "  --seconds N          how long to trace\n"
		     "  -o text|json         output format\n"
		     "  -v, --verbose        show libbpf's messages\n"
		     "\n"
		     "Needs CAP_BPF and CAP_PERFMON (or root); exit status 7 without them.\n");
}

static int ft_name_ok(const char *n)
{
	size_t len = strlen(n);
	if (len < 1 || len > FT_FABRIC_MAX)
		return 0;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return 0;
	return 1;
}

/* The only fabric in /dev/shm: its control segment is "fab.<name>" (names
 * have no dot, so a second dot means a channel or topic segment).  Returns
 * 0, or an exit code after saying why. */
static int ft_only_fabric(char *out, size_t cap)
{
	DIR *d = opendir(SHM_DIR);
	if (!d) {
		fprintf(stderr, "fabctl trace: %s: %s\n", SHM_DIR, strerror(errno));
		return FABCTL_EXIT_ERROR;
	}
	int found = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "fab.", 4) != 0 || strchr(de->d_name + 4, '.') ||
		    !ft_name_ok(de->d_name + 4))
			continue;
		if (found++ == 0)
			snprintf(out, cap, "%s", de->d_name + 4);
	}
	closedir(d);
	if (found == 1)
		return 0;
	if (found == 0)
		fprintf(stderr, "fabctl trace: no fabric in %s\n", SHM_DIR);
	else
		fprintf(stderr, "fabctl trace: %d fabrics in %s: name one with -f or FAB_FABRIC\n",
			found, SHM_DIR);
	return found == 0 ? FABCTL_EXIT_NOTFOUND : FABCTL_EXIT_USAGE;
}

static void ft_nopriv(void)
{
	fprintf(stderr, "fabctl trace: not allowed to load eBPF programs: needs CAP_BPF and "
			"CAP_PERFMON (or root)\n");
}

/* Can this process load BPF at all?  A one-entry array map is the
 * cheapest probe; libbpf_probe_bpf_prog_type() would report EPERM as "not
 * supported" (PLATFORM.md §3).  Returns 0 or an exit code. */
static int ft_probe_priv(void)
{
	int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, NULL, 4, 4, 1, NULL);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	int err = fd < -1 ? -fd : errno;
	if (err == EPERM || err == EACCES) {
		ft_nopriv();
		return FABCTL_EXIT_NOPRIV;
	}
	if (err == ENOSYS) {
		fprintf(stderr, "fabctl trace: this kernel has no bpf(2)\n");
		return FABCTL_EXIT_UNSUPPORTED;
	}
	/* Anything else: let the real load say what is wrong. */
	return 0;
}

static volatile sig_atomic_t ft_stop;

static void ft_on_signal(int sig)
{
	(void)sig;
	ft_stop = 1;
}

static uint64_t ft_stat_sum(struct trace_bpf *skel, __u32 idx)
{
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return 0;
	__u64 *vals = calloc((size_t)ncpu, sizeof *vals);
	if (!vals)
		return 0;
	uint64_t sum = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.stats), &idx, vals) == 0)
		for (int i = 0; i < ncpu; i++)
			sum += vals[i];
	free(vals);
	return sum;
}

int fabctl_trace_main(int argc, char **argv)
{
	const char *fabric = NULL;
	double seconds = 5;
	int json = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			ft_usage(stdout);
			return FABCTL_EXIT_OK;
		} else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
			ft_verbose = 1;
			continue;
		}
		/* Options with a value: "-f X", "--fabric X", "--fabric=X". */
		const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
		char optname[32];
		if (eq) {
			snprintf(optname, sizeof optname, "%.*s", (int)(eq - a), a);
			val = eq + 1;
		} else {
			snprintf(optname, sizeof optname, "%s", a);
			if (i + 1 < argc)
				val = argv[i + 1];
		}
		int known = strcmp(optname, "-f") == 0 || strcmp(optname, "--fabric") == 0 ||
			    strcmp(optname, "--seconds") == 0 || strcmp(optname, "-o") == 0 ||
			    strcmp(optname, "--output") == 0;
		if (!known) {
			fprintf(stderr, "fabctl trace: unknown argument '%s'\n", a);
			ft_usage(stderr);
			return FABCTL_EXIT_USAGE;
		}
		if (!val) {
			fprintf(stderr, "fabctl trace: %s needs a value\n", optname);
			return FABCTL_EXIT_USAGE;
		}
		if (!eq)
			i++;
		if (optname[1] == 'f' || strcmp(optname, "--fabric") == 0) {
			fabric = val;
		} else if (strcmp(optname, "--seconds") == 0) {
			char *end;
			errno = 0;
			seconds = strtod(val, &end);
			if (errno || end == val || *end || !(seconds >= 0) ||
			    seconds > 86400 * 365) {
				fprintf(stderr, "fabctl trace: bad --seconds '%s'\n", val);
				return FABCTL_EXIT_USAGE;
			}
		} else {
			if (strcmp(val, "json") == 0) {
				json = 1;
			} else if (strcmp(val, "text") == 0) {
				json = 0;
			} else {
				fprintf(stderr,
					"fabctl trace: bad output format '%s' (text, json)\n", val);
				return FABCTL_EXIT_USAGE;
			}
		}
	}

	libbpf_set_print(ft_libbpf_print);
	int rc = ft_probe_priv();
	if (rc)
		return rc;

	static struct ft_state s; /* large (hash heads); one trace per process */
	memset(&s, 0, sizeof s);
	s.ctl.fd = -1;
	if (!fabric)
		fabric = getenv("FAB_FABRIC");
	if (fabric && *fabric) {
		if (!ft_name_ok(fabric)) {
			fprintf(stderr, "fabctl trace: bad fabric name '%s'\n", fabric);
			return FABCTL_EXIT_USAGE;
		}
		snprintf(s.fabric, sizeof s.fabric, "%s", fabric);
	} else if ((rc = ft_only_fabric(s.fabric, sizeof s.fabric))) {
		return rc;
	}
	snprintf(s.prefix, sizeof s.prefix, "fab.%s", s.fabric);
	{
		char path[sizeof SHM_DIR + FT_NAME_LEN + 1];
		struct stat sb;
		snprintf(path, sizeof path, SHM_DIR "/%s", s.prefix);
		if (stat(path, &sb) != 0) {
			fprintf(stderr, "fabctl trace: no fabric '%s' (%s: %s)\n", s.fabric, path,
				strerror(errno));
			return FABCTL_EXIT_NOTFOUND;
		}
	}
	ft_ctl_open(&s);

	struct trace_bpf *skel = trace_bpf__open();
	if (!skel) {
		fprintf(stderr, "fabctl trace: cannot open the BPF object: %s\n", strerror(errno));
		ft_free(&s);
		return FABCTL_EXIT_ERROR;
	}
	memcpy((char *)skel->rodata->fab_prefix, s.prefix, strlen(s.prefix) + 1);
	skel->rodata->fab_prefix_len = (__u32)strlen(s.prefix);

	struct ring_buffer *rb = NULL;
	int err = trace_bpf__load(skel);
	if (err) {
		/* EPERM is the missing capability; EACCES here is the verifier
		 * refusing the program (a bug, or a kernel it does not fit). */
		if (err == -EPERM) {
			ft_nopriv();
			rc = FABCTL_EXIT_NOPRIV;
		} else {
			fprintf(stderr, "fabctl trace: cannot load the BPF program: %s%s%s",
				strerror(-err), ft_lastmsg[0] ? "\n  libbpf: " : "\n", ft_lastmsg);
			rc = FABCTL_EXIT_ERROR;
		}
		goto out;
	}
	err = trace_bpf__attach(skel);
	if (err) {
		if (err == -EPERM || err == -EACCES) {
			ft_nopriv();
			rc = FABCTL_EXIT_NOPRIV;
		} else {
			fprintf(stderr, "fabctl trace: cannot attach to sys_enter/sys_exit: %s%s%s",
				strerror(-err), ft_lastmsg[0] ? "\n  libbpf: " : "\n", ft_lastmsg);
			rc = FABCTL_EXIT_ERROR;
		}
		goto out;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), ft_on_event, &s, NULL);
	if (!rb) {
		fprintf(stderr, "fabctl trace: ring buffer: %s\n", strerror(errno));
		rc = FABCTL_EXIT_ERROR;
		goto out;
	}

	struct sigaction sa, old_int, old_term;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = ft_on_signal; /* no SA_RESTART: the poll returns EINTR */
	sigemptyset(&sa.sa_mask);
	ft_stop = 0;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int64_t limit_ns = seconds > 0 ? (int64_t)(seconds * 1e9) : INT64_MAX;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		int64_t el =
		    (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
		if (ft_stop || el >= limit_ns)
			break;
		int64_t left_ms = limit_ns == INT64_MAX ? 200 : (limit_ns - el + 999999) / 1000000;
		int r = ring_buffer__poll(rb, (int)(left_ms < 200 ? left_ms : 200));
		if (r < 0 && r != -EINTR) {
			fprintf(stderr, "fabctl trace: ring buffer poll: %s\n", strerror(-r));
			rc = FABCTL_EXIT_ERROR;
			break;
		}
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	/* Stop recording, then drain what is already in the ring. */
	trace_bpf__detach(skel);
	ring_buffer__consume(rb);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc == 0) {
		ft_collect_sleeping(&s, skel);
		struct ft_report rep = {
		    .seconds =
			(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
		    .lost = ft_stat_sum(skel, FT_STAT_LOST),
		    .readfail = ft_stat_sum(skel, FT_STAT_READFAIL),
		    .mapfull = ft_stat_sum(skel, FT_STAT_MAPFULL),
		    .vmabusy = ft_stat_sum(skel, FT_STAT_VMABUSY),
		};
		ft_print(&s, &rep, json, stdout);
		if (s.noaccess)
			fprintf(stderr,
				"fabctl trace: %d segment(s) of '%s' not readable by this user: "
				"those words are shown as offsets (run as the fabric's owner or "
				"root for names)\n",
				s.noaccess, s.fabric);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			fprintf(stderr, "fabctl trace: writing the report: %s\n", strerror(errno));
			rc = FABCTL_EXIT_ERROR;
		} else if (s.oom) {
			fprintf(stderr, "fabctl trace: out of memory: the report is incomplete\n");
			rc = FABCTL_EXIT_ERROR;
		}
	}
out:
	ring_buffer__free(rb);
	trace_bpf__destroy(skel);
	ft_free(&s);
	return rc;
}
