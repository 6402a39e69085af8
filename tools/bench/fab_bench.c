/*
 * fab_bench.c - fab-bench: measures, in one run, fab's channels against the
 * mechanisms a C programmer would otherwise use (pipe, Unix socket, POSIX mq,
 * a process-shared mutex+condvar queue) and against the physical floors (a
 * bare cache-line ping-pong and a bare futex ping-pong, and for one-way
 * throughput a bare ring, mech_ring.c), and prints every
 * figure as a ratio to those baselines, since absolute figures on a VM move
 * 3-4x with the vCPUs' placement.
 *
 * The table is a list of cells (group x mechanism).  Each round runs every
 * selected cell once, in the same order (A B C A B C ...), so drift hits all
 * mechanisms alike; a cell's figure is the median over the rounds, with the
 * rounds' min..max as its spread.  A cell that fails its checks (a lost,
 * duplicated, reordered or torn message, a crash, a hang) is reported as
 * FAILED, never as a figure, and makes the exit status 1.
 *
 * Besides channels against their alternatives, three groups price fab's
 * other objects against fab itself or against the hardware: "topic" (a
 * broadcast to 1, 4 and 16 subscriber processes against a 1:1 channel),
 * "limiter" (one fab_limiter_try, alone and with two processes, against an
 * atomic fetch_add) and "alo" (at-least-once delivery against at-most-once,
 * in throughput and round trip).  A group may mix figures (alo: messages/s
 * and round trips); its table then has one section per figure, and each of
 * these cells names the cell of its group it is compared with (cell.ref).
 *
 * The groups, the shape of each and the method are described in --help and
 * in the report's header lines; see also drivers.c for how latency is timed,
 * mech_topic.c for how a broadcast ends and is checked, and mech_limiter.c
 * for how the cost of a call is taken.
 */
#include "bench.h"
#include "spinpp.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define MAXROUNDS 64
#define MAXONLY 16

char bench_fabric[FAB_NAME_MAX + 1];

enum group_id {
	G_RTT, G_SLEEP, G_T8, G_T64, G_T1K, G_MPMC, G_IDLE, G_SEL, G_TOPIC, G_LIM, G_ALO, G_N
};

/* What a figure is: a ping-pong's latency (ns, p50 and p99), a stream's
 * throughput (messages/s), the CPU share of a blocked receiver, a
 * broadcast's throughput (messages published/s), or the cost of one call
 * (ns per call per process).  K_GROUP: a cell's figure is its group's. */
enum group_kind { K_GROUP, K_TPUT, K_LAT, K_IDLE, K_BCAST, K_NS };

struct group {
	const char *name;
	const char *title;
	enum group_kind kind;
	size_t msg;
	unsigned nprod, ncons;
	const char *refs[5];   /* ratio columns, by mechanism name */
	char note[4][BENCH_ERRLEN];
	unsigned nnote;
	/* Groups without refs: the heading of the one ratio column (after
	 * its "x"), in which each cell is compared with the cell it names
	 * (cell.ref); and a line on the method. */
	const char *refcol;
	const char *how;
};

static struct group groups[G_N] = {
	{ "rtt", "Round trip, the peer answers at once", K_LAT, BENCH_PP_MSG, 1, 1,
	  { "pipe", "socket", "mq", "cacheline", "futex" } },
	{ "rtt-sleep", "Round trip, both sides asleep when the message arrives", K_LAT,
	  BENCH_PP_MSG, 1, 1, { "pipe", "socket", "mq", "futex", NULL } },
	{ "tput8", "One-way throughput, 8-byte messages, 1 producer -> 1 consumer", K_TPUT, 8,
	  1, 1, { "pipe", "socket", "mq", "mutex-cv", "bare-ring" } },
	{ "tput64", "One-way throughput, 64-byte messages, 1 producer -> 1 consumer", K_TPUT,
	  64, 1, 1, { "pipe", "socket", "mq", "mutex-cv", "bare-ring" } },
	{ "tput1k", "One-way throughput, 1024-byte messages, 1 producer -> 1 consumer", K_TPUT,
	  1024, 1, 1, { "pipe", "socket", "mq", "mutex-cv", "bare-ring" } },
	{ "mpmc4x4", "MPMC throughput, 64-byte messages, 4 producers x 4 consumers", K_TPUT,
	  64, 4, 4, { "pipe", "socket", "mq", "mutex-cv", "bare-mpmc" } },
	{ "idle", "CPU used by a receiver blocked on an empty channel", K_IDLE, 8, 1, 1,
	  { NULL } },
	{ "select", "Receiving through fab_select, 64-byte messages, 1 producer -> 1 consumer",
	  K_TPUT, 64, 1, 1, { "fab-recv", NULL } },
	{ .name = "topic", .kind = K_BCAST, .msg = 64, .nprod = 1, .ncons = 1,
	  .title = "Broadcast throughput, 64-byte messages, 1 publisher -> N subscribers",
	  .refcol = "chan-1",
	  .how = "topic: FAB_SUB_BLOCK subscribers (nothing dropped), each checks every "
		 "message; chan-1: an SPSC channel 1 -> 1" },
	{ .name = "limiter", .kind = K_NS, .nprod = 1,
	  .title = "Cost of one uncontended / contended fab_limiter_try, against an atomic fetch_add",
	  .refcol = "atomic",
	  .how = "one limiter (rate 1e9/s, burst 2^24-1: never refuses) or one shared word; "
		 "-1: one process, -2: two processes on one object" },
	{ .name = "alo", .kind = K_TPUT, .msg = 64, .nprod = 1, .ncons = 1,
	  .title = "The price of at-least-once: fab MPMC channel, at-most-once (amo) vs "
		   "at-least-once (alo)",
	  .refcol = "amo",
	  .how = "alo: max_inflight 1, each fab_recv acks the message the previous one leased; "
		 "every message acked once, none redelivered" },
};

enum cell_state { CELL_OK, CELL_UNAVAIL, CELL_FAILED };

struct cell {
	int g;
	const char *mname;
	const struct mech *m;
	enum bench_mode mode;
	unsigned kind;
	char name[48];
	int selected;
	enum cell_state state;
	char why[2 * BENCH_ERRLEN];
	unsigned n;                   /* rounds measured */
	double v[MAXROUNDS];          /* p50 ns, or msgs/s */
	double v99[MAXROUNDS];        /* p99 ns (latency) */
	/* Spinning round trips (run.pair_cl): the cache-line floor's p50 and
	 * p99 in the blocks of the same run, 0 when not paired */
	double vr[MAXROUNDS], vr99[MAXROUNDS];
	double fx[MAXROUNDS];         /* futex calls per message / round trip, or -1 */
	double cnt[MAXROUNDS];        /* round trips or messages of each round */
	unsigned rnd[MAXROUNDS];      /* the round each figure was measured in */
	double med, lo, hi, med99, lo99, hi99, fxmed;
	/* The cells of the topic, limiter and alo groups set these. */
	enum group_kind fk;           /* the cell's figure if not its group's */
	unsigned nproc;               /* subscribers (topic), callers (limiter) */
	uint32_t delivery;            /* fab channels: FAB_AT_LEAST_ONCE or 0 */
	const char *ref;              /* the cell of its group it is compared with */
};

#define C(g, n, m, mode, kind) { g, n, &m, mode, kind }
#define CX(g_, n_, m_, mode_, kind_, fk_, nproc_, dlv_, ref_)                             \
	{ .g = g_, .mname = n_, .m = &m_, .mode = mode_, .kind = kind_, .fk = fk_,     \
	  .nproc = nproc_, .delivery = dlv_, .ref = ref_ }
static struct cell cells[] = {
	C(G_RTT, "fab-spin", mech_fab, MODE_SPIN, FAB_SPSC),
	C(G_RTT, "fab", mech_fab, MODE_DEFAULT, FAB_SPSC),
	C(G_RTT, "cacheline", mech_cacheline, MODE_SPIN, 0),
	C(G_RTT, "two-line", mech_lines2, MODE_SPIN, 0),
	C(G_RTT, "ring-pp", mech_ringpp, MODE_SPIN, 0),
	C(G_RTT, "futex", mech_futex, MODE_DEFAULT, 0),
	C(G_RTT, "pipe", mech_pipe, MODE_DEFAULT, 0),
	C(G_RTT, "socket", mech_socket, MODE_DEFAULT, 0),
	C(G_RTT, "mq", mech_mq, MODE_DEFAULT, 0),
	C(G_RTT, "mutex-cv", mech_mutexcv, MODE_DEFAULT, 0),
	C(G_SLEEP, "fab", mech_fab, MODE_SLEEP, FAB_SPSC),
	C(G_SLEEP, "futex", mech_futex, MODE_SLEEP, 0),
	C(G_SLEEP, "pipe", mech_pipe, MODE_SLEEP, 0),
	C(G_SLEEP, "socket", mech_socket, MODE_SLEEP, 0),
	C(G_SLEEP, "mq", mech_mq, MODE_SLEEP, 0),
	C(G_SLEEP, "mutex-cv", mech_mutexcv, MODE_SLEEP, 0),
#define TPUT(g)                                                   \
	C(g, "fab-spsc", mech_fab, MODE_DEFAULT, FAB_SPSC),       \
	C(g, "spsc-batch", mech_fab, MODE_BATCH, FAB_SPSC),       \
	C(g, "fab-mpmc", mech_fab, MODE_DEFAULT, FAB_MPMC),       \
	C(g, "pipe", mech_pipe, MODE_DEFAULT, 0),                 \
	C(g, "socket", mech_socket, MODE_DEFAULT, 0),             \
	C(g, "mq", mech_mq, MODE_DEFAULT, 0),                     \
	C(g, "mutex-cv", mech_mutexcv, MODE_DEFAULT, 0),          \
	C(g, "bare-ring", mech_ring, MODE_DEFAULT, 0),            \
	C(g, "bare-go", mech_ring_go, MODE_DEFAULT, 0)
	TPUT(G_T8),
	TPUT(G_T64),
	TPUT(G_T1K),
	C(G_MPMC, "fab-mpmc", mech_fab, MODE_DEFAULT, FAB_MPMC),
	C(G_MPMC, "mutex-cv", mech_mutexcv, MODE_DEFAULT, 0),
	C(G_MPMC, "pipe", mech_pipe, MODE_DEFAULT, 0),
	C(G_MPMC, "socket", mech_socket, MODE_DEFAULT, 0),
	C(G_MPMC, "mq", mech_mq, MODE_DEFAULT, 0),
	C(G_MPMC, "bare-mpmc", mech_mring, MODE_DEFAULT, 0),
	C(G_IDLE, "fab-spsc", mech_fab, MODE_IDLE, FAB_SPSC),
	C(G_IDLE, "fab-mpmc", mech_fab, MODE_IDLE, FAB_MPMC),
	C(G_SEL, "fab-recv", mech_fab, MODE_DEFAULT, FAB_SPSC),
	C(G_SEL, "select-1", mech_fab, MODE_SEL1, FAB_SPSC),
	C(G_SEL, "select-4", mech_fab, MODE_SEL4, FAB_SPSC),
	CX(G_TOPIC, "chan-1", mech_fab, MODE_DEFAULT, FAB_SPSC, K_GROUP, 1, 0, "chan-1"),
	CX(G_TOPIC, "topic-1", mech_topic, MODE_DEFAULT, 0, K_GROUP, 1, 0, "chan-1"),
	CX(G_TOPIC, "topic-4", mech_topic, MODE_DEFAULT, 0, K_GROUP, 4, 0, "chan-1"),
	CX(G_TOPIC, "topic-16", mech_topic, MODE_DEFAULT, 0, K_GROUP, 16, 0, "chan-1"),
	CX(G_LIM, "fab-try-1", mech_limiter, MODE_DEFAULT, 0, K_GROUP, 1, 0, "atomic-1"),
	CX(G_LIM, "atomic-1", mech_atomic, MODE_DEFAULT, 0, K_GROUP, 1, 0, "atomic-1"),
	CX(G_LIM, "fab-try-2", mech_limiter, MODE_DEFAULT, 0, K_GROUP, 2, 0, "atomic-2"),
	CX(G_LIM, "atomic-2", mech_atomic, MODE_DEFAULT, 0, K_GROUP, 2, 0, "atomic-2"),
	CX(G_ALO, "tput-amo", mech_fab, MODE_DEFAULT, FAB_MPMC, K_GROUP, 0, 0, "tput-amo"),
	CX(G_ALO, "tput-alo", mech_fab, MODE_DEFAULT, FAB_MPMC, K_GROUP, 0, FAB_AT_LEAST_ONCE,
	   "tput-amo"),
	CX(G_ALO, "rtt-amo", mech_fab, MODE_DEFAULT, FAB_MPMC, K_LAT, 0, 0, "rtt-amo"),
	CX(G_ALO, "rtt-alo", mech_fab, MODE_DEFAULT, FAB_MPMC, K_LAT, 0, FAB_AT_LEAST_ONCE,
	   "rtt-amo"),
};
#define NCELLS (sizeof cells / sizeof cells[0])

static struct {
	int quick, json, pin, list;
	unsigned rounds;
	int64_t duration_ns;
	int64_t delay_ns;      /* 0: calibrate */
	uint32_t capacity;
	const char *only[MAXONLY];
	unsigned nonly;
} opt = { .pin = 1, .capacity = 1024 };

static int g_cpu[2] = { -1, -1 };
static unsigned g_ncpu;
static int64_t g_delay_ns;
static char g_delay_note[2 * BENCH_ERRLEN];
static int g_failed;
static pid_t g_main_pid;
static int g_cleaned;

/* ---- machine load -------------------------------------------------------- */

struct load {
	int64_t wall_ns;
	double busy_s, steal_s; /* whole machine, from /proc/stat */
	double own_s;           /* this process and its reaped children */
	int ok;
};

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void load_snap(struct load *l)
{
	unsigned long long u, n, s, idle, iow, irq, sirq, st;
	struct rusage self, kids;
	double hz = (double)sysconf(_SC_CLK_TCK);
	FILE *f;

	memset(l, 0, sizeof *l);
	l->wall_ns = now_ns();
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	l->own_s = tv_s(self.ru_utime) + tv_s(self.ru_stime) + tv_s(kids.ru_utime) +
		   tv_s(kids.ru_stime);
	f = fopen("/proc/stat", "r");
	if (!f)
		return;
	u = n = s = idle = iow = irq = sirq = st = 0;
	/* guest time is already part of user time: not added again. */
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &u, &n, &s, &idle,
		   &iow, &irq, &sirq, &st) >= 7 && hz > 0) {
		l->busy_s = (double)(u + n + s + irq + sirq) / hz;
		l->steal_s = (double)st / hz;
		l->ok = 1;
	}
	fclose(f);
}

struct load_diff {
	double wall_s, busy_s, own_s, other_s, steal_s;
	int ok, warn, steal_warn;
};

static struct load_diff load_diff(const struct load *a, const struct load *b)
{
	struct load_diff d;

	memset(&d, 0, sizeof d);
	d.ok = a->ok && b->ok;
	d.wall_s = (double)(b->wall_ns - a->wall_ns) / 1e9;
	d.busy_s = b->busy_s - a->busy_s;
	d.own_s = b->own_s - a->own_s;
	d.other_s = d.busy_s - d.own_s;
	d.steal_s = b->steal_s - a->steal_s;
	/* More than ~10% of one core used by someone else. */
	d.warn = d.ok && d.other_s > 0.10 * d.wall_s;
	d.steal_warn = d.ok && d.steal_s > 0.10 * d.wall_s;
	return d;
}

/* ---- cleanup ------------------------------------------------------------- */

static void cleanup(void)
{
	int rc;

	if (g_cleaned || getpid() != g_main_pid)
		return;
	g_cleaned = 1;
	run_kill_all();
	if (bench_fab)
		fab_fabric_close(bench_fab);
	bench_fab = NULL;
	if (bench_fabric[0]) {
		rc = fab_fabric_destroy(bench_fabric);
		if (rc != 0 && rc != FAB_ENOENT)
			fprintf(stderr, "fab-bench: fab_fabric_destroy(%s): %s: %s\n",
				bench_fabric, fab_errname(rc), fab_errmsg());
	}
}

/* Removes the fabrics of earlier fab-bench runs that were killed before they
 * could clean up (their name holds their pid, and that pid is gone). */
static void remove_stale(void)
{
	struct dirent *e;
	char name[FAB_NAME_MAX + 1];
	DIR *d = opendir("/dev/shm");
	long pid;
	char *end;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "fab.fabbench-", 13) != 0)
			continue;
		pid = strtol(e->d_name + 13, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue; /* a channel segment, or not ours */
		if (pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		snprintf(name, sizeof name, "fabbench-%ld", pid);
		if (fab_fabric_destroy(name) == 0 && pid != (long)getpid())
			fprintf(stderr, "fab-bench: removed %s, left by a killed run\n", name);
	}
	closedir(d);
}

/* ---- statistics ---------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n, double *lo, double *hi)
{
	double s[MAXROUNDS];

	if (n == 0) {
		if (lo)
			*lo = NAN;
		if (hi)
			*hi = NAN;
		return NAN;
	}
	memcpy(s, v, n * sizeof *v);
	qsort(s, n, sizeof *s, cmp_double);
	if (lo)
		*lo = s[0];
	if (hi)
		*hi = s[n - 1];
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void aggregate(struct cell *c)
{
	double f[MAXROUNDS];
	unsigned i, k = 0;

	c->med = median(c->v, c->n, &c->lo, &c->hi);
	c->med99 = median(c->v99, c->n, &c->lo99, &c->hi99);
	for (i = 0; i < c->n; i++)
		if (c->fx[i] >= 0)
			f[k++] = c->fx[i];
	c->fxmed = k ? median(f, k, NULL, NULL) : -1;
}

static enum group_kind cell_kind(const struct cell *c)
{
	return c->fk != K_GROUP ? c->fk : groups[c->g].kind;
}

/* The processes a cell's figure is about: subscribers of a broadcast,
 * callers of a calls cell, consumers of a stream. */
static unsigned cell_procs(const struct cell *c)
{
	return c->nproc ? c->nproc : groups[c->g].ncons;
}

static enum bench_shape cell_shape(const struct cell *c)
{
	switch (cell_kind(c)) {
	case K_LAT:
		return SHAPE_PP;
	case K_NS:
		return SHAPE_CALLS;
	case K_BCAST:
		/* chan-1, the 1:1 channel of the topic group, is a stream. */
		return c->m == &mech_topic ? SHAPE_BCAST : SHAPE_STREAM;
	default:
		return SHAPE_STREAM;
	}
}

static struct cell *find_cell(int g, const char *mname)
{
	size_t i;

	for (i = 0; i < NCELLS; i++)
		if (cells[i].g == g && strcmp(cells[i].mname, mname) == 0)
			return &cells[i];
	return NULL;
}

/* cell / ref (latency: < 1 is faster; throughput: > 1 is faster), or NAN. */
/* The median of the per-round ratios c / ref, over the rounds in which both
 * were measured (within about a second of each other: same placement of the
 * vCPUs, unless it flipped in between), or NAN.  The table's ratios are
 * ratios of medians, as the issue asks; this one is printed next to the
 * targets because the placement often flips between rounds, and then the
 * two medians may come from different placements. */
static double paired_ratio(const struct cell *c, const struct cell *ref, int p99)
{
	double r[MAXROUNDS];
	unsigned i, j, k = 0;

	if (!ref || !c || c->state != CELL_OK || ref->state != CELL_OK)
		return NAN;
	for (i = 0; i < c->n; i++)
		for (j = 0; j < ref->n; j++) {
			double a = p99 ? c->v99[i] : c->v[i], b = p99 ? ref->v99[j] : ref->v[j];

			if (ref->rnd[j] == c->rnd[i] && b > 0 && !isnan(a))
				r[k++] = a / b;
		}
	return k ? median(r, k, NULL, NULL) : NAN;
}

static double ratio(const struct cell *c, const struct cell *ref, int p99)
{
	double a, b;

	if (!ref || !c || c->state != CELL_OK || ref->state != CELL_OK || !c->n ||
	    !ref->n)
		return NAN;
	a = p99 ? c->med99 : c->med;
	b = p99 ? ref->med99 : ref->med;
	return b > 0 ? a / b : NAN;
}

/* A spinning round trip against the cache-line floor measured in blocks of
 * the same run (run.pair_cl, spinpp.h): the median over rounds of each
 * round's p50 (p99) ratio, or NAN if the cell was not paired. */
static double block_ratio(const struct cell *c, int p99)
{
	double r[MAXROUNDS];
	unsigned i, k = 0;

	if (!c || c->state != CELL_OK)
		return NAN;
	for (i = 0; i < c->n; i++) {
		double a = p99 ? c->v99[i] : c->v[i], b = p99 ? c->vr99[i] : c->vr[i];

		if (b > 0 && !isnan(a))
			r[k++] = a / b;
	}
	return k ? median(r, k, NULL, NULL) : NAN;
}

/* ---- one round of one cell ------------------------------------------------ */

static void cell_fail(struct cell *c, unsigned round, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void cell_fail(struct cell *c, unsigned round, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, sizeof c->why, fmt, ap);
	va_end(ap);
	c->state = CELL_FAILED;
	g_failed = 1;
	fprintf(stderr, "fab-bench: ERROR: %s (round %u): %s\n", c->name, round + 1, c->why);
}

static void run_init(struct run *r, struct shared *sh, const struct cell *c)
{
	const struct group *g = &groups[c->g];

	memset(r, 0, sizeof *r);
	r->sh = sh;
	r->shape = cell_shape(c);
	r->mode = c->mode;
	r->fab_kind = c->kind;
	r->delivery = c->delivery;
	r->msg = g->msg;
	r->nprod = g->nprod;
	r->ncons = g->ncons;
	if (r->shape == SHAPE_BCAST) {
		r->nprod = 1;
		r->ncons = cell_procs(c);
	} else if (r->shape == SHAPE_CALLS) {
		r->nprod = cell_procs(c);
		r->ncons = 0;
	}
	r->capacity = opt.capacity;
	r->duration_ns = opt.duration_ns;
	r->delay_ns = g_delay_ns;
	r->warmup_rt = c->mode == MODE_SLEEP ? 10 : 100;
	r->cpu[0] = g_cpu[0];
	r->cpu[1] = g_cpu[1];
	r->pair_cl = c->g == G_RTT && c->mode == MODE_SPIN && c->m != &mech_cacheline;
	r->fd[0][0] = r->fd[0][1] = r->fd[1][0] = r->fd[1][1] = -1;
	r->mq[0] = r->mq[1] = (mqd_t)-1;
}

static uint64_t tri(uint64_t n) /* 0 + 1 + ... + (n-1), modulo 2^64 */
{
	return n % 2 ? n * ((n - 1) / 2) : (n / 2) * (n - 1);
}

/* Checks a finished stream run and returns its rate; -1 with why if a
 * message was lost, duplicated or counted wrongly. */
static double stream_result(const struct run *r, double *fx, char *why, size_t whylen)
{
	const struct shared *sh = r->sh;
	uint64_t sent = 0, got = 0, cnt, sum;
	int64_t t0 = INT64_MAX, t1 = INT64_MIN;
	int have_stats = 0;
	unsigned p, k;

	*fx = -1;
	for (p = 0; p < r->nprod; p++) {
		cnt = sum = 0;
		for (k = r->nprod; k < r->nprod + r->ncons; k++) {
			cnt += sh->out[k].per_cnt[p];
			sum += sh->out[k].per_sum[p];
		}
		if (cnt != sh->out[p].count || sum != tri(sh->out[p].count)) {
			snprintf(why, whylen,
				 "producer %u sent %llu messages, consumers received %llu (sequence sum %llu, expected %llu)",
				 p, (unsigned long long)sh->out[p].count, (unsigned long long)cnt,
				 (unsigned long long)sum,
				 (unsigned long long)tri(sh->out[p].count));
			return -1;
		}
		sent += cnt;
		if (sh->out[p].t_start < t0)
			t0 = sh->out[p].t_start;
	}
	for (k = r->nprod; k < r->nprod + r->ncons; k++) {
		got += sh->out[k].count;
		if (sh->out[k].t_end > t1)
			t1 = sh->out[k].t_end;
		if (sh->out[k].have_futex) {
			have_stats = 1;
			if (sh->out[k].fab_sent != sent) {
				snprintf(why, whylen,
					 "fab_chan_stats says sent = %llu, the producers sent %llu",
					 (unsigned long long)sh->out[k].fab_sent,
					 (unsigned long long)sent);
				return -1;
			}
			if (sent)
				*fx = (double)(sh->out[k].futex_waits + sh->out[k].futex_wakes) /
				      (double)sent;
			/* At-least-once: the final fab_recv acked the last
			 * lease, and nothing may have been given back. */
			if (r->delivery == FAB_AT_LEAST_ONCE &&
			    (sh->out[k].fab_acked != sent || sh->out[k].fab_leased ||
			     sh->out[k].fab_redelivered || sh->out[k].fab_nacked)) {
				snprintf(why, whylen,
					 "at-least-once counters after the drain: acked %llu of %llu sent, leased %llu, redelivered %llu, nacked %llu",
					 (unsigned long long)sh->out[k].fab_acked,
					 (unsigned long long)sent,
					 (unsigned long long)sh->out[k].fab_leased,
					 (unsigned long long)sh->out[k].fab_redelivered,
					 (unsigned long long)sh->out[k].fab_nacked);
				return -1;
			}
		}
	}
	if (r->delivery == FAB_AT_LEAST_ONCE && !have_stats) {
		snprintf(why, whylen, "no consumer read the channel's counters");
		return -1;
	}
	if (got != sent || sent == 0 || t1 <= t0) {
		snprintf(why, whylen, "sent %llu, received %llu", (unsigned long long)sent,
			 (unsigned long long)got);
		return -1;
	}
	return (double)sent / ((double)(t1 - t0) / 1e9);
}

/* Checks a finished broadcast and returns messages published per second;
 * -1 with why unless every subscriber received exactly what the publisher
 * published (the subscribers checked order, tearing and the end record's
 * count themselves; see mech_topic.c). */
static double bcast_result(const struct run *r, char *why, size_t whylen)
{
	const struct shared *sh = r->sh;
	const struct child_out *pub = &sh->out[0];
	uint64_t n = pub->count;
	int64_t t1 = INT64_MIN;
	unsigned k;

	for (k = 1; k <= r->ncons; k++) {
		const struct child_out *o = &sh->out[k];

		if (o->count != n || o->per_cnt[0] != n || o->per_sum[0] != tri(n)) {
			snprintf(why, whylen,
				 "the publisher published %llu messages, subscriber %u received %llu (sequence sum %llu, expected %llu)",
				 (unsigned long long)n, k, (unsigned long long)o->per_cnt[0],
				 (unsigned long long)o->per_sum[0], (unsigned long long)tri(n));
			return -1;
		}
		if (o->t_end > t1)
			t1 = o->t_end;
	}
	if (n == 0 || r->ncons == 0 || t1 <= pub->t_start) {
		snprintf(why, whylen, "published %llu messages to %u subscribers",
			 (unsigned long long)n, r->ncons);
		return -1;
	}
	return (double)n / ((double)(t1 - pub->t_start) / 1e9);
}

/* Checks a finished calls run; returns the mean over the callers of each
 * one's nanoseconds per call, with all callers' calls per second in *rate
 * and their calls in *calls; -1 with why if a caller made none.  (The
 * callers checked every call's result themselves: mech_limiter.c.) */
static double calls_result(const struct run *r, double *rate, double *calls, char *why,
			   size_t whylen)
{
	const struct shared *sh = r->sh;
	int64_t t0 = INT64_MAX, t1 = INT64_MIN;
	double ns = 0, total = 0;
	unsigned k;

	for (k = 0; k < r->nprod; k++) {
		const struct child_out *o = &sh->out[k];

		if (o->count == 0 || o->t_end <= o->t_start) {
			snprintf(why, whylen, "caller %u made %llu calls", k,
				 (unsigned long long)o->count);
			return -1;
		}
		ns += (double)(o->t_end - o->t_start) / (double)o->count;
		total += (double)o->count;
		if (o->t_start < t0)
			t0 = o->t_start;
		if (o->t_end > t1)
			t1 = o->t_end;
	}
	*rate = total / ((double)(t1 - t0) / 1e9);
	*calls = total;
	return ns / r->nprod;
}

/* Runs cell c once; returns -2 if interrupted, else 0. */
static int run_cell(struct cell *c, struct shared *sh, unsigned round)
{
	char err[2 * BENCH_ERRLEN];
	struct run r;
	double v, fx;
	uint64_t calls;
	int rc;

	run_init(&r, sh, c);
	rc = run_exec(&r, c->m, err, sizeof err);
	if (rc == -2)
		return -2;
	if (rc == 1) {
		c->state = CELL_UNAVAIL;
		snprintf(c->why, sizeof c->why, "%s", err);
		return 0;
	}
	if (rc < 0) {
		cell_fail(c, round, "%s", err);
		return 0;
	}
	if (r.note[0] && groups[c->g].nnote < 4) {
		struct group *g = &groups[c->g];
		unsigned i;

		for (i = 0; i < g->nnote; i++)
			if (strcmp(g->note[i], r.note) == 0)
				break;
		if (i == g->nnote)
			snprintf(g->note[g->nnote++], sizeof g->note[0], "%s", r.note);
	}
	if (r.shape == SHAPE_PP) {
		if (sh->out[0].samples == 0) {
			cell_fail(c, round, "no round trip was timed");
			return 0;
		}
		c->v[c->n] = (double)sh->out[0].p50_ns;
		c->v99[c->n] = (double)sh->out[0].p99_ns;
		c->vr[c->n] = c->vr99[c->n] = 0;
		if (r.pair_cl) {
			if (sh->out[0].ref_samples == 0) {
				cell_fail(c, round, "no round trip of the cache-line blocks was timed");
				return 0;
			}
			c->vr[c->n] = (double)sh->out[0].ref_p50_ns;
			c->vr99[c->n] = (double)sh->out[0].ref_p99_ns;
		}
		c->cnt[c->n] = (double)sh->out[0].count;
		calls = 0;
		fx = -1;
		if (sh->out[0].have_futex || sh->out[1].have_futex) {
			calls = sh->out[0].futex_waits + sh->out[0].futex_wakes +
				sh->out[1].futex_waits + sh->out[1].futex_wakes;
			fx = (double)calls / (double)sh->out[0].count;
		}
		c->fx[c->n] = fx;
		c->rnd[c->n] = round;
		c->n++;
		return 0;
	}
	if (c->mode == MODE_IDLE) {
		const struct child_out *o = &sh->out[1];

		if (o->wall_ns < r.duration_ns / 2) {
			cell_fail(c, round, "the receiver returned after %.3f ms, before the close",
				  (double)o->wall_ns / 1e6);
			return 0;
		}
		c->v[c->n] = 100.0 * (double)o->cpu_ns / (double)o->wall_ns;
		c->v99[c->n] = (double)o->cpu_ns; /* the absolute figure, as p99's slot */
		c->fx[c->n] = o->have_futex ? (double)o->futex_waits : -1;
		c->cnt[c->n] = (double)o->wall_ns / 1e9;
		c->rnd[c->n] = round;
		c->n++;
		return 0;
	}
	if (r.shape == SHAPE_CALLS) {
		double rate, ncalls;

		v = calls_result(&r, &rate, &ncalls, err, sizeof err);
		if (v < 0) {
			cell_fail(c, round, "%s", err);
			return 0;
		}
		c->v[c->n] = v;
		c->v99[c->n] = rate; /* all callers' calls/s, as p99's slot */
		c->fx[c->n] = -1;
		c->cnt[c->n] = ncalls;
		c->rnd[c->n] = round;
		c->n++;
		return 0;
	}
	fx = -1;
	if (r.shape == SHAPE_BCAST)
		v = bcast_result(&r, err, sizeof err);
	else
		v = stream_result(&r, &fx, err, sizeof err);
	if (v < 0) {
		cell_fail(c, round, "%s", err);
		return 0;
	}
	c->v[c->n] = v;
	c->v99[c->n] = NAN;
	c->fx[c->n] = fx;
	c->cnt[c->n] = r.shape == SHAPE_BCAST ? (double)sh->out[0].count :
						 v * (double)opt.duration_ns / 1e9;
	c->rnd[c->n] = round;
	c->n++;
	return 0;
}

/* Finds a delay long enough that fab's receiver is asleep (not spinning)
 * when the message arrives: doubles it from 20 us until the channels'
 * counters show a futex sleep in at least 90% of the receives, then doubles
 * it once more as a margin.  The delay is kept as short as that allows (at
 * most 1.28 ms): a vCPU left idle for milliseconds falls into a deeper sleep
 * on the host, and its wake-up would then be what all mechanisms measure.
 * Under load a receiver preempted while spinning may miss its sleep whatever
 * the delay, so if 90% is never reached the delay that came closest wins. */
#define DELAY_MIN 20000
#define DELAY_MAX 1280000

static int calibrate_delay(struct shared *sh)
{
	struct cell *c = find_cell(G_SLEEP, "fab");
	char err[2 * BENCH_ERRLEN];
	double per, best_per = -1;
	int64_t d, best = DELAY_MIN;
	struct run r;
	int rc;

	if (opt.delay_ns > 0) {
		g_delay_ns = opt.delay_ns;
		snprintf(g_delay_note, sizeof g_delay_note,
			 "each side busy-waits %.0f us before sending (--sleep-delay)",
			 (double)g_delay_ns / 1e3);
		return 0;
	}
	g_delay_ns = 4 * DELAY_MIN;
	for (d = DELAY_MIN; d <= DELAY_MAX; d *= 2) {
		run_init(&r, sh, c);
		r.delay_ns = d;
		/* At least ~100 round trips at every delay. */
		r.duration_ns = d * 200 > 40000000 ? d * 200 : 40000000;
		r.warmup_rt = 0;
		rc = run_exec(&r, &mech_fab, err, sizeof err);
		if (rc == -2)
			return -2;
		if (rc != 0 || !sh->out[0].have_futex || sh->out[0].count == 0) {
			snprintf(g_delay_note, sizeof g_delay_note,
				 "each side busy-waits %.0f us before sending (not calibrated: %.100s)",
				 (double)g_delay_ns / 1e3, rc ? err : "no futex counters");
			return 0;
		}
		per = (double)sh->out[0].futex_waits / (double)sh->out[0].count;
		if (per > best_per + 0.05) {
			best_per = per;
			best = d;
		}
		if (per >= 1.8)
			break;
	}
	g_delay_ns = 2 * best;
	snprintf(g_delay_note, sizeof g_delay_note,
		 "each side busy-waits %.0f us before sending (calibrated: at half that, fab's receivers slept %.2f times per round trip%s)",
		 (double)g_delay_ns / 1e3, best_per,
		 best_per >= 1.8 ? "" : ", short of 2: other load preempts them");
	return 0;
}

/* ---- output -------------------------------------------------------------- */

static void fmt_num(char *b, size_t n, double v)
{
	if (isnan(v))
		snprintf(b, n, "-");
	else if (v >= 1000)
		snprintf(b, n, "%.0f", v);
	else if (v >= 100)
		snprintf(b, n, "%.1f", v);
	else if (v >= 10)
		snprintf(b, n, "%.2f", v);
	else if (v >= 0.1)
		snprintf(b, n, "%.3f", v);
	else
		snprintf(b, n, "%.4f", v);
}

static const char *num(double v)
{
	static char ring[16][32];
	static unsigned k;
	char *b = ring[k++ % 16];

	fmt_num(b, 32, v);
	return b;
}

static const char *state_text(const struct cell *c)
{
	return c->state == CELL_FAILED ? "FAILED" : "n/a";
}

/* A group's ratio columns: one per name in its refs, or (groups without
 * refs) one, refcol, in which each cell is compared with the cell it names. */
static unsigned ratio_cols(const struct group *g)
{
	unsigned n = 0;

	if (!g->refs[0])
		return g->refcol ? 1 : 0;
	while (n < 5 && g->refs[n])
		n++;
	return n;
}

/* The mechanism cell c is compared with in column i, or NULL. */
static const char *col_ref(const struct group *g, const struct cell *c, unsigned i)
{
	return g->refs[0] ? g->refs[i] : c->ref;
}

/* Column i's heading (after its "x"). */
static const char *col_name(const struct group *g, unsigned i)
{
	return g->refs[0] ? g->refs[i] : g->refcol;
}

static double col_ratio(int gi, const struct cell *c, unsigned i, int p99)
{
	const char *ref = col_ref(&groups[gi], c, i);

	return ref ? ratio(c, find_cell(gi, ref), p99) : NAN;
}

/* A latency ratio column shows p50/p99 against the floors and against the
 * cell's own reference (alo), p50 only against the kernel mechanisms. */
static int lat_col_wide(const struct group *g, unsigned i)
{
	if (!g->refs[0])
		return 1;
	return !strcmp(g->refs[i], "cacheline") || !strcmp(g->refs[i], "futex");
}

/* Prints the header lines and the rows of the cells of group gi whose
 * figure is k. */
static void print_section(int gi, enum group_kind k)
{
	const struct group *g = &groups[gi];
	unsigned i, nr = ratio_cols(g);
	char spread[64], buf[64];
	size_t j;

	if (k == K_LAT) {
		printf("   %u-byte record each way; microseconds per round trip\n", BENCH_PP_MSG);
		if (gi == G_SLEEP)
			printf("   %s; figure = sum of the two one-way latencies (stamp before send -> receive returned)\n",
			       g_delay_note);
		printf("   %-10s %9s %17s %9s", "mechanism", "p50 us", "(p50 min..max)", "p99 us");
		for (i = 0; i < nr; i++) {
			snprintf(buf, sizeof buf, "x%s%s", col_name(g, i),
				 lat_col_wide(g, i) ? " p50/p99" : "");
			printf(" %*s", lat_col_wide(g, i) ? 17 : 8, buf);
		}
		printf(" %9s\n", "futex/rt");
	} else if (k == K_IDLE) {
		printf("   nothing is sent; the producer closes the channel after %.0f ms; CPU time of the\n"
		       "   receiver's one fab_recv call (its spin before sleeping included) / wall time\n",
		       (double)opt.duration_ns / 1e6);
		printf("   %-10s %9s %17s %9s %9s\n", "mechanism", "CPU %", "(min..max)", "CPU us",
		       "sleeps");
	} else if (k == K_BCAST) {
		printf("   capacity %u messages; millions of messages published/s, and delivered/s (x subscribers);\n"
		       "   %s\n", opt.capacity,
		       g_cpu[0] >= 0 ? "1 -> 1 pinned to two CPUs, 1 -> 4 and 1 -> 16 left to the scheduler" :
				       "not pinned");
		snprintf(buf, sizeof buf, "x%s", col_name(g, 0));
		printf("   %-10s %4s %9s %17s %9s %10s %9s\n", "mechanism", "subs", "M msg/s",
		       "(min..max)", buf, "M deliv/s", "futex/msg");
	} else if (k == K_NS) {
		printf("   nanoseconds per call, per process (mean of the processes); %s\n",
		       g_cpu[0] >= 0 ? "pinned, two processes to two CPUs" : "not pinned");
		snprintf(buf, sizeof buf, "x%s", col_name(g, 0));
		printf("   %-10s %5s %9s %17s %9s %11s\n", "mechanism", "procs", "ns/call",
		       "(min..max)", buf, "M calls/s");
	} else {
		printf("   capacity %u messages%s; millions of messages/s\n", opt.capacity,
		       g->refs[0] ? " (fab, mq if permitted, mutex-cv)" : "");
		printf("   %-10s %9s %17s", "mechanism", "M msg/s", "(min..max)");
		for (i = 0; i < nr; i++) {
			snprintf(buf, sizeof buf, "x%s", col_name(g, i));
			printf(" %9s", buf);
		}
		printf(" %9s\n", "futex/msg");
	}
	for (j = 0; j < NCELLS; j++) {
		const struct cell *c = &cells[j];

		if (c->g != gi || !c->selected || cell_kind(c) != k)
			continue;
		if (c->state != CELL_OK || c->n == 0) {
			printf("   %-10s %9s   %s\n", c->mname, state_text(c),
			       c->why[0] ? c->why : "not measured");
			continue;
		}
		if (k == K_LAT) {
			snprintf(spread, sizeof spread, "(%s..%s)", num(c->lo / 1e3),
				 num(c->hi / 1e3));
			printf("   %-10s %9s %17s %9s", c->mname, num(c->med / 1e3), spread,
			       num(c->med99 / 1e3));
			for (i = 0; i < nr; i++) {
				if (!lat_col_wide(g, i)) {
					printf(" %8s", num(col_ratio(gi, c, i, 0)));
				} else {
					snprintf(buf, sizeof buf, "%s/%s", num(col_ratio(gi, c, i, 0)),
						 num(col_ratio(gi, c, i, 1)));
					printf(" %17s", buf);
				}
			}
			printf(" %9s\n", c->fxmed >= 0 ? num(c->fxmed) : "");
		} else if (k == K_IDLE) {
			snprintf(spread, sizeof spread, "(%s..%s)", num(c->lo), num(c->hi));
			printf("   %-10s %9s %17s %9s %9s\n", c->mname, num(c->med), spread,
			       num(c->med99 / 1e3), c->fxmed >= 0 ? num(c->fxmed) : "");
		} else if (k == K_BCAST) {
			snprintf(spread, sizeof spread, "(%s..%s)", num(c->lo / 1e6),
				 num(c->hi / 1e6));
			printf("   %-10s %4u %9s %17s %9s %10s %9s\n", c->mname, cell_procs(c),
			       num(c->med / 1e6), spread, num(col_ratio(gi, c, 0, 0)),
			       num(c->med * cell_procs(c) / 1e6),
			       c->fxmed >= 0 ? num(c->fxmed) : "");
		} else if (k == K_NS) {
			snprintf(spread, sizeof spread, "(%s..%s)", num(c->lo), num(c->hi));
			printf("   %-10s %5u %9s %17s %9s %11s\n", c->mname, cell_procs(c),
			       num(c->med), spread, num(col_ratio(gi, c, 0, 0)),
			       num(c->med99 / 1e6));
		} else {
			snprintf(spread, sizeof spread, "(%s..%s)", num(c->lo / 1e6),
				 num(c->hi / 1e6));
			printf("   %-10s %9s %17s", c->mname, num(c->med / 1e6), spread);
			for (i = 0; i < nr; i++)
				printf(" %9s", num(col_ratio(gi, c, i, 0)));
			printf(" %9s\n", c->fxmed >= 0 ? num(c->fxmed) : "");
		}
	}
}

static void print_group(int gi)
{
	const struct group *g = &groups[gi];
	enum group_kind seen[8];
	unsigned i, ns = 0;
	size_t k;

	for (k = 0; k < NCELLS; k++) {
		enum group_kind ck;

		if (cells[k].g != gi || !cells[k].selected)
			continue;
		ck = cell_kind(&cells[k]);
		for (i = 0; i < ns && seen[i] != ck; i++)
			;
		if (i == ns && ns < 8)
			seen[ns++] = ck;
	}
	if (!ns)
		return;
	printf("\n== %s: %s\n", g->name, g->title);
	if (g->how)
		printf("   %s\n", g->how);
	/* One section per figure, in the order of the group's cells. */
	for (i = 0; i < ns; i++) {
		if (i)
			printf("\n");
		print_section(gi, seen[i]);
	}
	for (i = 0, ns = 0; i < NCELLS; i++) {
		const struct cell *c = &cells[i];

		if (c->g != gi || !c->selected || isnan(block_ratio(c, 0)))
			continue;
		if (!ns++)
			printf("   in blocks: each of these runs alternated blocks of %u round trips with\n"
			       "   the cache-line floor in the same two processes; p50/p99 x the floor's\n"
			       "   blocks, median of the rounds (immune to placement flips between cells):\n",
			       PP_BLOCK);
		printf("     %-10s %s", c->mname, num(block_ratio(c, 0)));
		printf("/%s\n", num(block_ratio(c, 1)));
	}
	for (i = 0; i < g->nnote; i++)
		printf("   note: %s\n", g->note[i]);
}

/* The targets of issue 2 (channels) and issue 3 (at-least-once within 2x of
 * at-most-once), each a ratio measured in this run.  The topic and limiter
 * groups have no numeric target: issue 4 asks for their table only. */
struct target {
	const char *what;
	int g;
	const char *cell, *ref;
	int p99, at_most, futex;
	double bound;
};

static const struct target targets[] = {
	{ "SPSC 64 B >= 150x pipe", G_T64, "fab-spsc", "pipe", 0, 0, 0, 150 },
	{ "SPSC 8 B >= 400x pipe", G_T8, "fab-spsc", "pipe", 0, 0, 0, 400 },
	{ "SPSC 1 KiB >= 15x pipe", G_T1K, "fab-spsc", "pipe", 0, 0, 0, 15 },
	{ "MPMC 4x4 >= 3x mutex+condvar", G_MPMC, "fab-mpmc", "mutex-cv", 0, 0, 0, 3 },
	{ "MPMC 4x4 >= 20x shared pipe", G_MPMC, "fab-mpmc", "pipe", 0, 0, 0, 20 },
	{ "spinning round trip p50 <= 1.2x cache line", G_RTT, "fab-spin", "cacheline", 0, 1, 0, 1.2 },
	{ "spinning round trip p99 <= 1.2x cache line", G_RTT, "fab-spin", "cacheline", 1, 1, 0, 1.2 },
	{ "default round trip p50 <= 0.05x pipe", G_RTT, "fab", "pipe", 0, 1, 0, 0.05 },
	{ "sleeping round trip p50 <= 1.2x futex", G_SLEEP, "fab", "futex", 0, 1, 0, 1.2 },
	{ "futex calls/msg <= 0.01, SPSC 64 B", G_T64, "fab-spsc", NULL, 0, 1, 1, 0.01 },
	{ "futex calls/msg <= 0.01, MPMC 4x4", G_MPMC, "fab-mpmc", NULL, 0, 1, 1, 0.01 },
	{ "idle blocked receiver ~0% CPU (<= 1%)", G_IDLE, "fab-spsc", NULL, 0, 1, 0, 1 },
	{ "at-least-once throughput >= 0.5x at-most-once", G_ALO, "tput-alo", "tput-amo", 0, 0, 0,
	  0.5 },
};
#define NTARGETS (sizeof targets / sizeof targets[0])

static double target_value(const struct target *t)
{
	const struct cell *c = find_cell(t->g, t->cell);

	if (!c || !c->selected || c->state != CELL_OK || !c->n)
		return NAN;
	if (t->futex)
		return c->fxmed >= 0 ? c->fxmed : NAN;
	if (!t->ref)
		return c->med;
	return ratio(c, find_cell(t->g, t->ref), t->p99);
}

/* The target's ratio as the median of per-round ratios (paired_ratio). */
static double paired_value(const struct target *t)
{
	const struct cell *c = find_cell(t->g, t->cell);

	double b;

	if (!c || !c->selected || t->futex || !t->ref)
		return NAN;
	/* Against the cache-line floor: the blocks of the cell's own runs,
	 * the one comparison no placement flip can split. */
	if (strcmp(t->ref, "cacheline") == 0 && !isnan(b = block_ratio(c, t->p99)))
		return b;
	return paired_ratio(c, find_cell(t->g, t->ref), t->p99);
}

static int target_met(const struct target *t, double v)
{
	return t->at_most ? v <= t->bound : v >= t->bound;
}

/* The same ratio for the bare queue of the target's group (bare-ring, a
 * two-process ring, the ceiling of the SPSC targets; bare-mpmc, a bare
 * lock-free MPMC queue, the reference of the 4 x 4 ones; ring-pp, two bare
 * rings with fab's slot layout, the floor of the spinning round trip;
 * mech_ring.c), or NAN if the target has none or it was not measured: an
 * SPSC target the ceiling itself misses is out of reach in this run,
 * whatever the channel does, and so is a round trip the bare rings miss. */
static double ceiling_of(const struct target *t, const char *spsc_ceiling)
{
	const struct cell *c = NULL;
	double v;

	if (!t->ref || t->futex)
		return NAN;
	if (strcmp(t->cell, "fab-spsc") == 0)
		c = find_cell(t->g, spsc_ceiling);
	else if (t->g == G_MPMC && strcmp(t->cell, "fab-mpmc") == 0)
		c = find_cell(t->g, "bare-mpmc");
	else if (t->g == G_RTT && strcmp(t->cell, "fab-spin") == 0)
		c = find_cell(t->g, "ring-pp");
	if (!c || !c->selected || c->state != CELL_OK || !c->n)
		return NAN;
	/* As the verdict: in blocks, else per round, when there is such a
	 * figure. */
	v = strcmp(t->ref, "cacheline") == 0 ? block_ratio(c, t->p99) : NAN;
	if (isnan(v))
		v = paired_ratio(c, find_cell(t->g, t->ref), t->p99);
	return isnan(v) ? ratio(c, find_cell(t->g, t->ref), t->p99) : v;
}

static double ceiling_value(const struct target *t)
{
	return ceiling_of(t, "bare-ring");
}

/* An SPSC target's ratio for bare-go, the bare ring under Go's visibility
 * rules (both positions published after every message, as a channel must):
 * the ceiling of a channel with Go's semantics.  NAN for other targets. */
static double ceiling_go_value(const struct target *t)
{
	return strcmp(t->cell, "fab-spsc") == 0 ? ceiling_of(t, "bare-go") : NAN;
}

static void print_targets(void)
{
	unsigned i, shown = 0;
	double v, ceil, pr;

	for (i = 0; i < NTARGETS; i++) {
		v = target_value(&targets[i]);
		if (isnan(v))
			continue;
		if (!shown++)
			printf("\n== targets (issues 2 and 3), ratios from this run\n"
			       "   (ratio: of the two cells' medians, as in the tables; per round: the\n"
			       "   median of the ratios within each round, where both cells ran within\n"
			       "   ~1 s of each other, so in the same vCPU placement unless it flipped\n"
			       "   in between; the verdict is taken on the per-round figure when there\n"
			       "   is one; against the cache line, the per-round figure is taken in\n"
			       "   blocks of the same run, see the rtt table)\n"
			       "   %-46s %10s %10s\n", "target", "ratio", "per round");
		pr = paired_value(&targets[i]);
		printf("   %-46s %10s %10s  %s", targets[i].what, num(v), isnan(pr) ? "-" : num(pr),
		       target_met(&targets[i], isnan(pr) ? v : pr) ? "met" : "MISSED");
		ceil = ceiling_value(&targets[i]);
		if (!isnan(ceil))
			/* The bare ring is tuned for this machine (PLATFORM §9):
			 * a target it misses is out of reach.  The bare MPMC
			 * queue is the textbook one with the cheapest wait; with
			 * eight processes on two CPUs how a queue waits decides
			 * as much as the queue, and fab's wait sometimes beats
			 * it, so it is a reference, not a bound.  The bare rings
			 * of the round trip (ring-pp) are fab's slot layout with
			 * no code around it: the floor of any channel whose
			 * messages move through the slots of a ring. */
			printf("%s (%s: %s, %s)",
			       target_met(&targets[i], isnan(pr) ? v : pr) ? "   " : "",
			       targets[i].g == G_MPMC ? "bare MPMC" :
			       targets[i].g == G_RTT  ? "bare rings" : "bare ring", num(ceil),
			       targets[i].g == G_MPMC ?
				       (target_met(&targets[i], ceil) ? "reaches it" : "misses it too") :
				       (target_met(&targets[i], ceil) ? "within reach" :
									"out of reach here"));
		ceil = ceiling_go_value(&targets[i]);
		if (!isnan(ceil))
			printf("\n      (bare ring publishing after every message as Go's semantics "
			       "require, bare-go: %s, %s)",
			       num(ceil),
			       target_met(&targets[i], ceil) ? "within reach" : "out of reach here");
		printf("\n");
	}
}

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void json_num(double v)
{
	if (isnan(v) || isinf(v))
		printf("null");
	else
		printf("%.6g", v);
}

/* The names a figure of kind k goes by in the JSON document. */
static const char *kind_unit(enum group_kind k)
{
	switch (k) {
	case K_LAT:
		return "ns per round trip";
	case K_IDLE:
		return "percent of a CPU";
	case K_BCAST:
		return "messages published/s";
	case K_NS:
		return "ns per call per process";
	default:
		return "messages/s";
	}
}

static const char *kind_key(enum group_kind k)
{
	return k == K_LAT ? "p50_ns" : k == K_IDLE ? "cpu_percent" :
	       k == K_NS ? "ns_per_call" : "msgs_per_s";
}

/*
 * What one system call costs on this machine now (getppid through
 * syscall(2), median of 5 runs of 100000): the kernel baselines pay at least
 * one per message and side, so their speed, and every ratio to them, moves
 * with it.  The targets were set where a call cost ~1.1 us
 * (docs/performance.md "Our pipe is 3x faster").
 */
static double g_syscall_ns;

static void measure_syscall(void)
{
	double v[5], t;
	int i, j, k;

	for (i = 0; i < 5; i++) {
		int64_t t0 = now_ns();

		for (j = 0; j < 100000; j++)
			syscall(SYS_getppid);
		v[i] = (double)(now_ns() - t0) / 100000.0;
	}
	for (i = 1; i < 5; i++)
		for (k = i; k > 0 && v[k - 1] > v[k]; k--)
			t = v[k], v[k] = v[k - 1], v[k - 1] = t;
	g_syscall_ns = v[2];
}

static void print_json(const struct load_diff *ld)
{
	enum group_kind ck;
	const char *sep;
	unsigned i, j;
	size_t k;
	int first = 1;

	printf("{\"tool\":\"fab-bench\",\"libfab\":");
	json_str(fab_version());
	printf(",\"cpus\":%u,\"pinned\":[%d,%d],\"rounds\":%u,\"duration_ms\":%.0f,"
	       "\"quick\":%s,\"capacity\":%u,\"sleep_delay_us\":",
	       g_ncpu, g_cpu[0], g_cpu[1], opt.rounds, (double)opt.duration_ns / 1e6,
	       opt.quick ? "true" : "false", opt.capacity);
	json_num((double)g_delay_ns / 1e3);
	printf(",\"syscall_ns\":");
	json_num(g_syscall_ns);
	printf(",\n \"load\":{\"ok\":%s,\"wall_s\":", ld->ok ? "true" : "false");
	json_num(ld->wall_s);
	printf(",\"machine_busy_s\":");
	json_num(ld->busy_s);
	printf(",\"bench_s\":");
	json_num(ld->own_s);
	printf(",\"other_s\":");
	json_num(ld->other_s);
	printf(",\"steal_s\":");
	json_num(ld->steal_s);
	printf(",\"warning\":%s},\n \"groups\":[", ld->warn || ld->steal_warn ? "true" : "false");
	for (i = 0; i < G_N; i++) {
		const struct group *g = &groups[i];

		printf("%s\n  {\"name\":", i ? "," : "");
		json_str(g->name);
		printf(",\"title\":");
		json_str(g->title);
		printf(",\"unit\":\"%s\",\"msg_bytes\":%zu,\"producers\":%u,\"consumers\":%u,\"notes\":[",
		       kind_unit(g->kind), g->msg, g->nprod, g->ncons);
		if (g->how) {
			json_str(g->how);
			printf("%s", g->nnote || i == G_SLEEP ? "," : "");
		}
		for (j = 0; j < g->nnote; j++) {
			printf("%s", j ? "," : "");
			json_str(g->note[j]);
		}
		if (i == G_SLEEP) {
			printf("%s", g->nnote ? "," : "");
			json_str(g_delay_note);
		}
		printf("],\"cells\":[");
		first = 1;
		for (k = 0; k < NCELLS; k++) {
			const struct cell *c = &cells[k];

			if (c->g != (int)i || !c->selected)
				continue;
			printf("%s\n   {\"name\":", first ? "" : ",");
			first = 0;
			json_str(c->name);
			printf(",\"mechanism\":");
			json_str(c->mname);
			printf(",\"status\":\"%s\"",
			       c->state == CELL_OK ? "ok" :
			       c->state == CELL_UNAVAIL ? "unavailable" : "failed");
			if (c->why[0]) {
				printf(",\"reason\":");
				json_str(c->why);
			}
			ck = cell_kind(c);
			printf(",\"unit\":");
			json_str(kind_unit(ck));
			if (ck == K_BCAST)
				printf(",\"subscribers\":%u", cell_procs(c));
			if (ck == K_NS)
				printf(",\"processes\":%u", cell_procs(c));
			if (c->delivery)
				printf(",\"delivery\":\"at-least-once\"");
			if (c->state == CELL_OK && c->n) {
				printf(",\"%s\":", kind_key(ck));
				json_num(c->med);
				printf(",\"min\":");
				json_num(c->lo);
				printf(",\"max\":");
				json_num(c->hi);
				if (ck == K_IDLE) {
					printf(",\"cpu_us\":");
					json_num(c->med99 / 1e3);
				}
				if (ck == K_BCAST) {
					printf(",\"deliveries_per_s\":");
					json_num(c->med * cell_procs(c));
				}
				if (ck == K_NS) {
					printf(",\"calls_per_s\":");
					json_num(c->med99);
				}
				if (ck == K_LAT && !isnan(block_ratio(c, 0))) {
					printf(",\"blocks_x_cacheline\":{\"p50\":");
					json_num(block_ratio(c, 0));
					printf(",\"p99\":");
					json_num(block_ratio(c, 1));
					printf("}");
				}
				if (ck == K_LAT) {
					printf(",\"p99_ns\":");
					json_num(c->med99);
					printf(",\"p99_min\":");
					json_num(c->lo99);
					printf(",\"p99_max\":");
					json_num(c->hi99);
				}
				if (ck != K_NS) {
					printf(",\"%s\":", ck == K_LAT ? "futex_calls_per_round_trip" :
							   ck == K_IDLE ? "futex_sleeps" :
									  "futex_calls_per_msg");
					json_num(c->fxmed >= 0 ? c->fxmed : NAN);
				}
				printf(",\"ratios\":{");
				for (j = 0, sep = ""; j < ratio_cols(g); j++) {
					const char *rn = col_ref(g, c, j);

					if (!rn)
						continue;
					printf("%s", sep);
					sep = ",";
					json_str(rn);
					printf(":");
					if (ck == K_LAT) {
						printf("{\"p50\":");
						json_num(col_ratio((int)i, c, j, 0));
						printf(",\"p99\":");
						json_num(col_ratio((int)i, c, j, 1));
						printf("}");
					} else {
						json_num(col_ratio((int)i, c, j, 0));
					}
				}
				printf("},\"rounds\":[");
				for (j = 0; j < c->n; j++) {
					printf("%s{\"value\":", j ? "," : "");
					json_num(c->v[j]);
					if (ck == K_LAT) {
						printf(",\"p99\":");
						json_num(c->v99[j]);
						if (c->vr[j] > 0) {
							printf(",\"cacheline_blocks\":{\"p50\":");
							json_num(c->vr[j]);
							printf(",\"p99\":");
							json_num(c->vr99[j]);
							printf("}");
						}
						printf(",\"round_trips\":");
					} else if (ck == K_IDLE) {
						printf(",\"seconds\":");
					} else if (ck == K_NS) {
						printf(",\"calls_per_s\":");
						json_num(c->v99[j]);
						printf(",\"calls\":");
					} else {
						printf(",\"messages\":");
					}
					json_num(c->cnt[j]);
					if (ck != K_NS) {
						printf(",\"futex\":");
						json_num(c->fx[j] >= 0 ? c->fx[j] : NAN);
					}
					printf("}");
				}
				printf("]");
			}
			printf("}");
		}
		printf("]}");
	}
	printf("],\n \"targets\":[");
	first = 1;
	for (i = 0; i < NTARGETS; i++) {
		double v = target_value(&targets[i]);

		if (isnan(v))
			continue;
		printf("%s\n  {\"what\":", first ? "" : ",");
		first = 0;
		json_str(targets[i].what);
		printf(",\"value\":");
		json_num(v);
		double pr = paired_value(&targets[i]);

		printf(",\"met\":%s",
		       target_met(&targets[i], isnan(pr) ? v : pr) ? "true" : "false");
		if (!isnan(pr)) {
			printf(",\"per_round\":");
			json_num(pr);
		}
		v = ceiling_value(&targets[i]);
		if (!isnan(v)) {
			printf(",\"ceiling\":");
			json_str(targets[i].g == G_MPMC ? "bare-mpmc" :
				 targets[i].g == G_RTT  ? "ring-pp" : "bare-ring");
			printf(",\"bare_ring\":");
			json_num(v);
			printf(",\"bare_ring_met\":%s", target_met(&targets[i], v) ? "true" : "false");
		}
		v = ceiling_go_value(&targets[i]);
		if (!isnan(v)) {
			printf(",\"bare_go\":");
			json_num(v);
			printf(",\"bare_go_met\":%s", target_met(&targets[i], v) ? "true" : "false");
		}
		printf("}");
	}
	printf("],\n \"failed\":%s}\n", g_failed ? "true" : "false");
}

/* ---- options ------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fab-bench [--quick] [--json] [--only NAME]... [options]\n"
		"\n"
		"Measures fab's channels against pipe(2), an AF_UNIX SOCK_SEQPACKET\n"
		"socketpair, a POSIX message queue and a process-shared mutex+condvar\n"
		"queue, and against two floors (a bare cache-line ping-pong and a bare\n"
		"futex ping-pong) and throughput ceilings (a bare two-process ring and a\n"
		"bare MPMC queue, no library: bare-ring, bare-mpmc), all in one run, and\n"
		"prints medians, spread and ratios.\n"
		"\n"
		"  rtt        ping-pong round trip, peer answers at once: fab spinning on\n"
		"             fab_try_send/recv (fab-spin) and in its default mode (fab:\n"
		"             fab_send/recv spin briefly, then sleep); p50 and p99;\n"
		"             ring-pp is two bare rings of fab's slot layout, the floor\n"
		"             of any ring; the spinning cells alternate blocks with the\n"
		"             cache-line floor in the same processes (\"in blocks\")\n"
		"  rtt-sleep  ping-pong where each side busy-waits before answering, so the\n"
		"             other is asleep when the message arrives (delay calibrated\n"
		"             from fab's own futex counters); the sum of both one-way latencies\n"
		"  tput8, tput64, tput1k\n"
		"             one producer process -> one consumer process, messages/s;\n"
		"             bare-ring is the ceiling any 1 -> 1 ring reaches here;\n"
		"             bare-go the same ring publishing after every message, as\n"
		"             Go's semantics require: the ceiling of a channel\n"
		"  mpmc4x4    4 producers x 4 consumers (8 processes), 64-byte messages;\n"
		"             bare-mpmc is the ceiling of a bare lock-free MPMC queue here\n"
		"  idle       CPU share of a receiver blocked on an empty channel (fab only)\n"
		"  select     receiving through fab_select over 1 and 4 channels vs fab_recv\n"
		"  topic      broadcast, 64-byte messages, one publisher -> 1, 4, 16 subscriber\n"
		"             processes (FAB_SUB_BLOCK); messages published/s and deliveries/s,\n"
		"             against a 1:1 SPSC channel (chan-1)\n"
		"  limiter    ns per fab_limiter_try (a limiter that never refuses), by one\n"
		"             process and by two on one limiter, against an atomic fetch_add\n"
		"  alo        at-least-once vs at-most-once on an MPMC channel: 1 -> 1\n"
		"             throughput (64 B) and default-mode round trip\n"
		"\n"
		"Every message carries its producer and sequence number; consumers check\n"
		"order and counts, and a run that loses, duplicates or tears a message is\n"
		"reported as FAILED (exit status 1), never as a figure; so is a limiter\n"
		"call that does not return 0.\n"
		"\n"
		"options:\n"
		"  --quick            3 rounds of 150 ms per cell (well under a minute)\n"
		"  --rounds N         rounds (default 7; --quick 3)\n"
		"  --duration MS      length of each cell's run (default 300; --quick 150)\n"
		"  --only NAME        run only the cells whose name contains NAME, e.g.\n"
		"                     rtt/, tput64, fab, mpmc4x4/mq (repeatable)\n"
		"  --list             list the cells and exit\n"
		"  --json             print one JSON document with every cell\n"
		"  --capacity N       queue depth in the throughput groups (default 1024)\n"
		"  --sleep-delay US   rtt-sleep's delay instead of calibrating it\n"
		"  --no-pin           do not pin shapes of one or two processes (1:1: two CPUs)\n"
		"  -h, --help         this text\n"
		"\n"
		"exit status: 0 all measured, 1 a cell failed, 2 usage, 130 interrupted\n");
}

static int parse_u(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "only", required_argument, NULL, 'o' },
		{ "list", no_argument, NULL, 'l' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "duration", required_argument, NULL, 'd' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "sleep-delay", required_argument, NULL, 's' },
		{ "no-pin", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v, rounds = 0, dur = 0;
	int ch;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'q':
			opt.quick = 1;
			break;
		case 'j':
			opt.json = 1;
			break;
		case 'o':
			if (opt.nonly == MAXONLY) {
				fprintf(stderr, "fab-bench: too many --only\n");
				return -1;
			}
			opt.only[opt.nonly++] = optarg;
			break;
		case 'l':
			opt.list = 1;
			break;
		case 'r':
			if (parse_u(optarg, 1, MAXROUNDS, &rounds)) {
				fprintf(stderr, "fab-bench: --rounds: 1..%d\n", MAXROUNDS);
				return -1;
			}
			break;
		case 'd':
			if (parse_u(optarg, 10, 60000, &dur)) {
				fprintf(stderr, "fab-bench: --duration: 10..60000 ms\n");
				return -1;
			}
			break;
		case 'c':
			if (parse_u(optarg, 1, 1u << 20, &v)) {
				fprintf(stderr, "fab-bench: --capacity: 1..1048576\n");
				return -1;
			}
			opt.capacity = (uint32_t)v;
			break;
		case 's':
			if (parse_u(optarg, 1, 1000000, &v)) {
				fprintf(stderr, "fab-bench: --sleep-delay: 1..1000000 us\n");
				return -1;
			}
			opt.delay_ns = (int64_t)v * 1000;
			break;
		case 'P':
			opt.pin = 0;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fab-bench: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -1;
	}
	opt.rounds = rounds ? (unsigned)rounds : opt.quick ? 3 : 7;
	opt.duration_ns = (int64_t)(dur ? dur : opt.quick ? 150 : 300) * 1000000;
	return 0;
}

static void select_cells(void)
{
	size_t k;
	unsigned i;

	for (k = 0; k < NCELLS; k++) {
		struct cell *c = &cells[k];

		snprintf(c->name, sizeof c->name, "%s/%s", groups[c->g].name, c->mname);
		c->selected = opt.nonly == 0;
		for (i = 0; i < opt.nonly; i++)
			if (strstr(c->name, opt.only[i]))
				c->selected = 1;
	}
}

/* The first two CPUs we may run on: the two processes of a 1:1 shape get
 * one each, as PLATFORM.md section 9 measured them. */
static void pick_cpus(void)
{
	cpu_set_t cs;
	int i, k = 0;

	g_ncpu = 0;
	if (sched_getaffinity(0, sizeof cs, &cs) != 0)
		return;
	g_ncpu = (unsigned)CPU_COUNT(&cs);
	for (i = 0; i < CPU_SETSIZE && k < 2; i++)
		if (CPU_ISSET(i, &cs))
			g_cpu[k++] = i;
	if (k < 2 || !opt.pin)
		g_cpu[0] = g_cpu[1] = -1;
}

int main(int argc, char **argv)
{
	struct load l0, l1, lr0, lr1;
	struct load_diff ld;
	struct shared *sh;
	unsigned round, noisy = 0;
	size_t k;
	int rc, any = 0;

	if (parse_args(argc, argv) != 0)
		return 2;
	select_cells();
	if (opt.list) {
		for (k = 0; k < NCELLS; k++)
			printf("%s\n", cells[k].name);
		return 0;
	}
	for (k = 0; k < NCELLS; k++)
		any |= cells[k].selected;
	if (!any) {
		fprintf(stderr, "fab-bench: --only matches no cell (see --list)\n");
		return 2;
	}
	pick_cpus();
	if (g_ncpu < 2) {
		/* Two spinning processes on one CPU measure the scheduler, and
		 * two callers on one CPU take turns rather than contend. */
		for (k = 0; k < NCELLS; k++) {
			if (!cells[k].selected)
				continue;
			if (cells[k].mode == MODE_SPIN) {
				cells[k].state = CELL_UNAVAIL;
				snprintf(cells[k].why, sizeof cells[k].why,
					 "needs 2 CPUs (spinning peers)");
			} else if (cell_kind(&cells[k]) == K_NS && cell_procs(&cells[k]) > 1) {
				cells[k].state = CELL_UNAVAIL;
				snprintf(cells[k].why, sizeof cells[k].why,
					 "needs 2 CPUs (contending callers)");
			}
		}
	}

	g_main_pid = getpid();
	sig_setup();
	atexit(cleanup);
	sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		fprintf(stderr, "fab-bench: mmap: %s\n", strerror(errno));
		return 1;
	}
	snprintf(bench_fabric, sizeof bench_fabric, "fabbench-%ld", (long)getpid());
	remove_stale();
	rc = fab_fabric_open(bench_fabric, FAB_CREATE, &bench_fab);
	if (rc != 0) {
		bench_fab = NULL;
		fprintf(stderr, "fab-bench: ERROR: fab_fabric_open(%s, FAB_CREATE): %s: %s\n",
			bench_fabric, fab_errname(rc), fab_errmsg());
		g_failed = 1;
		for (k = 0; k < NCELLS; k++) {
			if (cells[k].m == &mech_fab && cells[k].selected) {
				cells[k].state = CELL_FAILED;
				snprintf(cells[k].why, sizeof cells[k].why,
					 "fab_fabric_open: %s", fab_errname(rc));
			}
		}
	}

	measure_syscall();
	load_snap(&l0);
	any = 0;
	for (k = 0; k < NCELLS; k++)
		any |= cells[k].g == G_SLEEP && cells[k].selected;
	if (any && calibrate_delay(sh) == -2)
		goto interrupted;
	for (round = 0; round < opt.rounds; round++) {
		load_snap(&lr0);
		for (k = 0; k < NCELLS; k++) {
			struct cell *c = &cells[k];

			if (!c->selected || c->state != CELL_OK)
				continue;
			if (run_cell(c, sh, round) == -2 || sig_interrupted())
				goto interrupted;
		}
		load_snap(&lr1);
		ld = load_diff(&lr0, &lr1);
		noisy += ld.warn;
		fprintf(stderr, "fab-bench: round %u/%u done (%.1f s)%s\n", round + 1,
			opt.rounds, ld.wall_s, ld.warn ? ", other processes were busy" : "");
	}
	load_snap(&l1);
	ld = load_diff(&l0, &l1);
	for (k = 0; k < NCELLS; k++)
		aggregate(&cells[k]);
	cleanup();

	if (opt.json) {
		print_json(&ld);
	} else {
		printf("fab-bench: libfab %s, %u CPUs, %s, %u rounds x %.0f ms per cell, interleaved; medians over rounds\n",
		       fab_version(), g_ncpu,
		       g_cpu[0] >= 0 ? "shapes of 1 or 2 processes pinned (1:1 to two CPUs)" :
				       "not pinned",
		       opt.rounds, (double)opt.duration_ns / 1e6);
		printf("a system call costs %.0f ns here now (getppid, median of 5 x 100000): the kernel baselines pay it per message\n",
		       g_syscall_ns);
		printf("ratios: latency x = this / that (lower is faster); throughput x = this / that (higher is faster);\n"
		       "        cost per call x = this / that (lower is cheaper)\n");
		for (k = 0; k < G_N; k++)
			print_group((int)k);
		print_targets();
		printf("\n");
	}
	if (ld.warn)
		fprintf(opt.json ? stderr : stdout,
			"WARNING: other processes used %.0f%% of a CPU during the run (machine busy %.1f s, fab-bench %.1f s, in %.1f s; %u of %u rounds disturbed): figures may be off\n",
			100 * ld.other_s / ld.wall_s, ld.busy_s, ld.own_s, ld.wall_s, noisy,
			opt.rounds);
	if (ld.steal_warn)
		fprintf(opt.json ? stderr : stdout,
			"WARNING: the hypervisor took %.0f%% of a CPU (steal time) during the run: figures may be off\n",
			100 * ld.steal_s / ld.wall_s);
	return g_failed ? 1 : 0;

interrupted:
	cleanup();
	fprintf(stderr, "fab-bench: interrupted; children killed, fabric %s removed\n",
		bench_fabric);
	return 130;
}
