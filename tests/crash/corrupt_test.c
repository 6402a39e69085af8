/*
 * corrupt_test.c - shared memory is untrusted input (DESIGN §4, issue 2
 * item 8): scribble over a channel's segment and the fabric's control
 * segment, then show that every API call returns an error code or a valid
 * result and never crashes or hangs.
 *
 * Each round builds a fresh fabric with a channel holding a few messages and
 * a named context, detaches, scribbles seeded random bytes (random runs,
 * bit flips, nasty words at aligned offsets; biased towards the headers,
 * registries and slot headers described in layout.h), then runs the whole
 * API in a forked child.  The child checks every return value: 0 or a
 * FAB_E* code for int calls; a length within the buffer it passed for
 * receives; an acquired message's bytes readable and its length within the
 * channel's msg_size.  A crash is a signal (or, under ASan, a report and a
 * non-zero exit) in the parent's wait status; a hang ends with SIGALRM.
 * Buffers handed to the library are malloc'd at exactly the capacity passed,
 * so under ASan a write past it is caught.
 *
 * Deterministic cases: truncated segments, wrong magic -> FAB_ECORRUPT on
 * open; another layout major version -> FAB_EVERSION; another minor of a
 * channel segment, an older minor of the control segment -> FAB_EVERSION.
 *
 * Child exit codes: 0 ok; 30+k call k returned an invalid value (see the
 * CALL_* list); 40 wrong code on open of a damaged segment; 41 setup.
 */
#include "../mp/mp_util.h"

#include "layout.h"

/* What the API answered, tallied across rounds (shared with the children)
 * to show the scribbles reach the library's checks. */
struct tally {
	uint64_t code[16]; /* by -FAB_E* */
	uint64_t chan_opened;
};
static struct tally *g_tally;

/* Is rc a FAB_E* code?  Tallies it. */
static int nok(long rc)
{
	if (rc <= -1 && rc >= -14) {
		if (g_tally)
			__atomic_fetch_add(&g_tally->code[-rc], 1, __ATOMIC_RELAXED);
		return 1;
	}
	return 0;
}
#define NOK(rc) nok((long)(rc))

/* Map a whole shm segment read-write; *size gets its length. */
static unsigned char *map_seg(const char *shm_name, size_t *size)
{
	int fd = shm_open(shm_name, O_RDWR, 0);
	struct stat sb;
	void *p;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &sb) != 0 || sb.st_size <= 0) {
		close(fd);
		return NULL;
	}
	*size = (size_t)sb.st_size;
	p = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

static void seg_names(const char *fabric, char *ctl, char *chn, size_t n)
{
	snprintf(ctl, n, "/fab.%s", fabric);
	snprintf(chn, n, "/fab.%s.c", fabric);
}

struct setup {
	uint32_t kind, cap, ms, nmsg;
};

/* Parent: a fresh fabric with channel "c" holding nmsg messages and a
 * context "x"; every handle released before returning. */
static void build(const char *fabric, const struct setup *s)
{
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *ctx = NULL;
	fab_chan_opts o;
	unsigned char buf[256];
	int rc = fab_fabric_open(fabric, FAB_CREATE, &fab);
	ck_assert_msg(rc == 0, "fabric: %s", fab_strerror(rc));
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.kind = s->kind;
	o.capacity = s->cap;
	o.msg_size = s->ms;
	rc = fab_chan_create(fab, "c", &o, &ch);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	for (uint32_t i = 0; i < s->nmsg; i++) {
		size_t len = s->ms ? (i * 7u + 1u) % (s->ms + 1u) : 0;
		memset(buf, (int)(0x40 + i), sizeof buf);
		ck_assert_int_eq(fab_try_send(ch, buf, len), 0);
	}
	rc = fab_ctx_create(fab, "x", NULL, &ctx);
	ck_assert_msg(rc == 0, "ctx: %s", fab_strerror(rc));
	fab_ctx_release(ctx);
	fab_chan_release(ch);
	fab_fabric_close(fab);
}

/* Remove the fabric: fab_fabric_destroy in a child (it reads a damaged
 * segment: must not crash), then whatever is left, by hand. */
static int teardown(const char *fabric)
{
	pid_t p;
	int rc;
	fflush(stdout);
	p = fork();
	if (p == 0) {
		alarm(30);
		fab_fabric_destroy(fabric);
		_exit(0);
	}
	rc = mt_wait(p, 40 * MT_SEC);
	mt_shm_scan(fabric, 1);
	return rc;
}

/* ---- scribbling ---------------------------------------------------------- */

struct region {
	size_t off, len;
};

static void scribble(mt_rng *r, unsigned char *base, size_t size, const struct region *hot,
		     unsigned nhot)
{
	unsigned ops = 1 + (unsigned)mt_below(r, 4);
	for (unsigned k = 0; k < ops; k++) {
		size_t lo = 0, len = size;
		if (nhot && mt_below(r, 4) != 0) {
			const struct region *h = &hot[mt_below(r, nhot)];
			if (h->off < size) {
				lo = h->off;
				len = h->len;
				if (lo + len > size)
					len = size - lo;
			}
		}
		if (len == 0)
			continue;
		size_t off = lo + (size_t)mt_below(r, len);
		switch (mt_below(r, 4)) {
		case 0: { /* a run of random bytes */
			size_t n = 1 + (size_t)mt_below(r, 16);
			for (size_t i = 0; i < n && off + i < size; i++)
				base[off + i] = (unsigned char)mt_next(r);
			break;
		}
		case 1: /* one bit */
			base[off] ^= (unsigned char)(1u << mt_below(r, 8));
			break;
		default: { /* a nasty aligned word */
			static const uint64_t nasty[] = {0,
							 1,
							 0xffffffffULL,
							 0xffffffffffffffffULL,
							 0x80000000ULL,
							 0x7fffffffULL,
							 0x8000000000000000ULL,
							 4096,
							 65536,
							 0x100000000ULL,
							 0xfffffffffff00000ULL};
			uint64_t v = nasty[mt_below(r, sizeof nasty / sizeof nasty[0])];
			int wide = (int)mt_below(r, 2);
			off &= ~(size_t)(wide ? 7 : 3);
			if (off + (wide ? 8u : 4u) <= size) {
				if (wide)
					memcpy(base + off, &v, 8);
				else {
					uint32_t v32 = (uint32_t)v;
					memcpy(base + off, &v32, 4);
				}
			}
			break;
		}
		}
	}
}

/* Interesting parts of each segment (layout.h). */
static unsigned ctl_regions(struct region *h)
{
	unsigned n = 0;
	h[n++] = (struct region){0, sizeof(fab_ctl_hdr)};
	h[n++] = (struct region){FAB_CTL_PROCS_OFF, 8 * sizeof(fab_proc_ent)};
	h[n++] = (struct region){FAB_CTL_CHANS_OFF, 2 * sizeof(fab_chan_ent)};
	h[n++] = (struct region){FAB_CTL_CTXS_OFF, 2 * sizeof(fab_ctx_ent)};
	return n;
}

static unsigned chan_regions(const unsigned char *base, size_t size, struct region *h)
{
	unsigned n = 0;
	const fab_chan_hdr *ch = (const void *)base;
	h[n++] = (struct region){0, 128}; /* line 0: the description */
	h[n++] = (struct region){0, sizeof(fab_chan_hdr)};
	if (size >= sizeof(fab_chan_hdr)) {
		if (ch->attach_off < size)
			h[n++] = (struct region){(size_t)ch->attach_off, 64};
		if (ch->ents_off && ch->ents_off < size)
			h[n++] = (struct region){(size_t)ch->ents_off, 64};
		if (ch->slots_off < size)
			h[n++] = (struct region){(size_t)ch->slots_off, 1024};
	}
	return n;
}

/* ---- the API under test ----------------------------------------------------- */

enum {
	CALL_CTX_OPEN = 1,
	CALL_CTX_ERR,
	CALL_CHAN_OPEN,
	CALL_STATS,
	CALL_TRY_RECV,
	CALL_TRY_SEND,
	CALL_RECV,
	CALL_SEND,
	CALL_ACQUIRE,
	CALL_RESERVE,
	CALL_BATCH,
	CALL_DISCARD,
	CALL_CLOSE,
	CALL_RECOVER,
	CALL_CTX_CREATE,
	CALL_OPEN_MISSING,
	CALL_CREATE,
	CALL_DESTROY,
	CALL_OPEN_ROLES,
	CALL_TIMEOUT_CTX,
};

#define BAD(call, ...)                                                           \
	do {                                                                     \
		fprintf(stderr, "[corrupt child] call %d: ", (call));           \
		fprintf(stderr, __VA_ARGS__);                                    \
		fprintf(stderr, "\n");                                           \
		return 30 + (call);                                              \
	} while (0)

struct probe {
	const char *fabric;
	uint32_t ms; /* msg_size the channel was created with */
	int destroy;
	int late;      /* scribble after the channel is open (in the child) */
	unsigned target;
	uint64_t seed; /* for the late scribble */
};

static void scribble_segments(const char *fabric, mt_rng *r, unsigned target);

static fab_ctx *deadline(int64_t ns)
{
	fab_ctx *t = NULL;
	if (fab_ctx_with_timeout(NULL, ns, &t) != 0)
		return NULL;
	return t;
}

static int probe_chan(fab_chan *ch, uint32_t ms0)
{
	const uint32_t bufcap = ms0;
	unsigned char *buf = malloc(bufcap + 1); /* +1: malloc(0) may be NULL */
	unsigned char *msg = malloc(bufcap + 1);
	fab_stats st;
	ssize_t n;
	int rc;
	uint32_t ms_view = ms0;
	fab_ctx *t;

	memset(msg, 0x5a, bufcap + 1);
	(void)fab_chan_len(ch);
	(void)fab_chan_cap(ch);
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	rc = fab_chan_stats(ch, &st);
	if (rc != 0 && !NOK(rc))
		BAD(CALL_STATS, "stats %d", rc);
	if (rc == 0 && st.msg_size > ms_view)
		ms_view = st.msg_size;

	n = fab_try_recv(ch, buf, bufcap);
	if (!(NOK(n) || (n >= 0 && n <= (ssize_t)bufcap)))
		BAD(CALL_TRY_RECV, "try_recv %zd into %u", n, bufcap);

	rc = fab_try_send(ch, msg, ms0 / 2);
	if (rc != 0 && !NOK(rc))
		BAD(CALL_TRY_SEND, "try_send %d", rc);

	t = deadline(5 * MT_MS);
	if (!t)
		BAD(CALL_TIMEOUT_CTX, "with_timeout failed");
	n = fab_recv(ch, buf, bufcap, t);
	fab_ctx_release(t);
	if (!(NOK(n) || (n >= 0 && n <= (ssize_t)bufcap)))
		BAD(CALL_RECV, "recv %zd into %u", n, bufcap);

	t = deadline(5 * MT_MS);
	rc = fab_send(ch, msg, ms0, t);
	fab_ctx_release(t);
	if (rc != 0 && !NOK(rc))
		BAD(CALL_SEND, "send %d", rc);

	{
		const void *p = NULL;
		size_t l = 0;
		t = deadline(5 * MT_MS);
		rc = fab_recv_acquire(ch, &p, &l, t);
		fab_ctx_release(t);
		if (rc != 0 && !NOK(rc))
			BAD(CALL_ACQUIRE, "acquire %d", rc);
		if (rc == 0) {
			volatile unsigned sum = 0;
			if (l > ms_view || (l > 0 && p == NULL))
				BAD(CALL_ACQUIRE, "acquired %zu bytes (msg_size %u)", l, ms_view);
			for (size_t i = 0; i < l; i++)
				sum += ((const unsigned char *)p)[i]; /* must be mapped */
			(void)sum;
			rc = fab_recv_release(ch);
			if (rc != 0 && !NOK(rc))
				BAD(CALL_ACQUIRE, "release %d", rc);
		}
	}
	{
		void *slot = NULL;
		size_t len = ms0;
		/* The context stays alive until the commit: on an unbuffered
		 * channel the commit waits for the rendezvous under it. */
		t = deadline(5 * MT_MS);
		rc = fab_send_reserve(ch, len, &slot, t);
		if (rc != 0 && !NOK(rc))
			BAD(CALL_RESERVE, "reserve %d", rc);
		if (rc == 0) {
			if (len > 0 && slot == NULL)
				BAD(CALL_RESERVE, "reserve gave NULL");
			memset(slot, 0x33, len); /* must be mapped and ours */
			rc = fab_send_commit(ch, len);
			if (rc != 0 && !NOK(rc))
				BAD(CALL_RESERVE, "commit %d", rc);
		}
		fab_ctx_release(t);
	}
	{
		fab_iov v[3];
		unsigned char *bb = malloc(3u * bufcap + 1);
		for (int i = 0; i < 3; i++) {
			v[i].base = bb + (size_t)i * bufcap;
			v[i].len = bufcap;
		}
		t = deadline(5 * MT_MS);
		rc = fab_recv_batch(ch, v, 3, t);
		fab_ctx_release(t);
		if (!(NOK(rc) || (rc >= 1 && rc <= 3)))
			BAD(CALL_BATCH, "recv_batch %d", rc);
		for (int i = 0; rc > 0 && i < rc; i++)
			if (v[i].len > bufcap)
				BAD(CALL_BATCH, "recv_batch length %zu > %u", v[i].len, bufcap);
		for (int i = 0; i < 3; i++) {
			v[i].base = msg;
			v[i].len = ms0 / 3;
		}
		t = deadline(5 * MT_MS);
		rc = fab_send_batch(ch, v, 3, t);
		fab_ctx_release(t);
		if (!(NOK(rc) || (rc >= 1 && rc <= 3)))
			BAD(CALL_BATCH, "send_batch %d", rc);
		free(bb);
	}
	t = deadline(5 * MT_MS);
	n = fab_recv(ch, NULL, 0, t);
	fab_ctx_release(t);
	if (!(NOK(n) || (n >= 0 && n <= (ssize_t)ms_view)))
		BAD(CALL_DISCARD, "discard %zd", n);

	rc = fab_chan_stats(ch, &st);
	if (rc != 0 && !NOK(rc))
		BAD(CALL_STATS, "stats %d", rc);
	rc = fab_chan_close(ch);
	if (rc != 0 && !NOK(rc))
		BAD(CALL_CLOSE, "close %d", rc);
	n = fab_try_recv(ch, buf, bufcap);
	if (!(NOK(n) || (n >= 0 && n <= (ssize_t)bufcap)))
		BAD(CALL_TRY_RECV, "try_recv after close %zd", n);
	free(buf);
	free(msg);
	return 0;
}

static int probe(void *arg)
{
	const struct probe *p = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *ctx = NULL;
	int rc;

	alarm(30); /* a hang becomes SIGALRM in the wait status */
	rc = fab_fabric_open(p->fabric, 0, &fab);
	if (rc != 0) {
		if (!NOK(rc))
			BAD(CALL_CHAN_OPEN, "fabric_open %d", rc);
		return 0;
	}
	rc = fab_ctx_open(fab, "x", &ctx);
	if (rc != 0 && !NOK(rc))
		BAD(CALL_CTX_OPEN, "ctx_open %d", rc);
	if (rc == 0) {
		rc = fab_ctx_err(ctx);
		if (rc != 0 && rc != FAB_ECANCELED && rc != FAB_ETIMEDOUT && !NOK(rc))
			BAD(CALL_CTX_ERR, "ctx_err %d", rc);
		(void)fab_ctx_reason(ctx);
		rc = fab_ctx_cancel(ctx, 7);
		if (rc != 0 && !NOK(rc))
			BAD(CALL_CTX_ERR, "ctx_cancel %d", rc);
		fab_ctx_release(ctx);
	}
	static const unsigned roles[] = {FAB_SEND | FAB_RECV, FAB_RECV, FAB_SEND};
	for (int i = 0; i < 3; i++) {
		rc = fab_chan_open(fab, "c", roles[i], &ch);
		if (rc != 0 && !NOK(rc))
			BAD(CALL_OPEN_ROLES, "chan_open role %u: %d", roles[i], rc);
		if (rc == 0)
			fab_chan_release(ch);
	}
	rc = fab_chan_open(fab, "c", FAB_SEND | FAB_RECV, &ch);
	if (rc != 0 && !NOK(rc))
		BAD(CALL_CHAN_OPEN, "chan_open %d", rc);
	if (p->late) {
		/* Damage under an open handle: what open validated is now stale,
		 * so every index and length must be checked where it is used. */
		mt_rng r = {p->seed};
		scribble_segments(p->fabric, &r, p->target);
	}
	if (rc == 0) {
		__atomic_fetch_add(&g_tally->chan_opened, 1, __ATOMIC_RELAXED);
		int r2 = probe_chan(ch, p->ms);
		if (r2 != 0)
			return r2;
		fab_chan_release(ch);
	}
	rc = fab_fabric_recover(fab);
	if (rc < 0 && !NOK(rc))
		BAD(CALL_RECOVER, "recover %d", rc);
	rc = fab_ctx_create(fab, "y", NULL, &ctx);
	if (rc != 0 && !NOK(rc))
		BAD(CALL_CTX_CREATE, "ctx_create %d", rc);
	if (rc == 0) {
		fab_ctx_cancel(ctx, 1);
		fab_ctx_release(ctx);
	}
	rc = fab_chan_open(fab, "missing", FAB_RECV, &ch);
	if (rc == 0 || !NOK(rc))
		BAD(CALL_OPEN_MISSING, "open of a channel never created: %d", rc);
	{
		fab_chan_opts o;
		memset(&o, 0, sizeof o);
		o.size = sizeof o;
		o.capacity = 3;
		o.msg_size = 16;
		rc = fab_chan_create(fab, "c2", &o, &ch);
		if (rc != 0 && !NOK(rc))
			BAD(CALL_CREATE, "chan_create %d", rc);
		if (rc == 0) {
			rc = fab_try_send(ch, "0123456789abcdef", 16);
			if (rc != 0 && !NOK(rc))
				BAD(CALL_CREATE, "try_send on new channel %d", rc);
			fab_chan_release(ch);
		}
	}
	if (p->destroy) {
		rc = fab_chan_destroy(fab, "c");
		if (rc != 0 && !NOK(rc))
			BAD(CALL_DESTROY, "chan_destroy %d", rc);
	}
	rc = fab_fabric_recover(fab);
	if (rc < 0 && !NOK(rc))
		BAD(CALL_RECOVER, "recover %d", rc);
	fab_fabric_close(fab);
	return 0;
}

/* target 0..11: the channel segment; 12..14: both; 15..19: the control
 * segment.  Segments that cannot be mapped (destroyed) are skipped. */
static void scribble_segments(const char *fabric, mt_rng *r, unsigned target)
{
	char ctl[96], chn[96];
	struct region hot[8];
	size_t sz;
	unsigned char *m;
	seg_names(fabric, ctl, chn, sizeof ctl);
	if (target < 15 && (m = map_seg(chn, &sz)) != NULL) {
		scribble(r, m, sz, hot, chan_regions(m, sz, hot));
		munmap(m, sz);
	}
	if (target >= 12 && (m = map_seg(ctl, &sz)) != NULL) {
		scribble(r, m, sz, hot, ctl_regions(hot));
		munmap(m, sz);
	}
}

START_TEST(scribble_rounds)
{
	uint64_t seed = mt_seed("scribble_rounds");
	int rounds = MT_SCALE(600, 400);
	static const uint32_t caps[] = {0, 1, 7, 64};
	static const uint32_t sizes[] = {0, 8, 64, 200};
	int crashes = 0;
	g_tally = mt_shared(sizeof *g_tally);
	ck_assert(g_tally);

	for (int round = 0; round < rounds; round++) {
		uint64_t rs = mt_mix64(seed + (uint64_t)round);
		mt_rng r = {rs};
		char tag[24];
		struct setup s;
		s.kind = mt_below(&r, 2) ? FAB_SPSC : FAB_MPMC;
		s.cap = caps[mt_below(&r, 4)];
		s.ms = sizes[mt_below(&r, 4)];
		s.nmsg = s.cap ? (uint32_t)mt_below(&r, s.cap + 1) : 0;
		snprintf(tag, sizeof tag, "scr%d", round);
		const char *fabric = mt_fabric_name(tag);
		build(fabric, &s);

		struct probe p = {fabric, s.ms, (int)mt_below(&r, 4) == 0, (int)mt_below(&r, 2),
				  (unsigned)mt_below(&r, 20), mt_next(&r)};
		if (!p.late)
			scribble_segments(fabric, &r, p.target);
		pid_t kid = mt_spawn(probe, &p);
		int rc = mt_wait(kid, 40 * MT_SEC);
		if (rc != 0) {
			crashes++;
			fprintf(stderr,
				"scribble round %d (round seed %llu, kind %u cap %u ms %u nmsg %u, "
				"target %u%s): API child exited %d%s\n",
				round, (unsigned long long)rs, s.kind, s.cap, s.ms, s.nmsg, p.target,
				p.late ? ", after open" : "", rc,
				rc > 128 ? " (signal: crash or hang)" : rc >= 30 ? " (invalid result)" : "");
		}
		int trc = teardown(fabric);
		ck_assert_msg(trc == 0, "round %d: fab_fabric_destroy on the damaged fabric exited %d",
			      round, trc);
		ck_assert_msg(crashes == 0, "round %d (round seed %llu): API child exited %d", round,
			      (unsigned long long)rs, rc);
	}
	printf("scribble: %d rounds, all calls returned codes or valid results; channel opened "
	       "in %llu; codes seen:",
	       rounds, (unsigned long long)g_tally->chan_opened);
	for (int i = 1; i <= 14; i++)
		if (g_tally->code[i])
			printf(" %s %llu", fab_errname(-i), (unsigned long long)g_tally->code[i]);
	printf("\n");
	munmap(g_tally, sizeof *g_tally);
	g_tally = NULL;
}
END_TEST

/* Run an open in a child and return what it returned (or 200+code if the
 * child died). */
struct openarg {
	const char *fabric;
	int chan; /* 1: fab_chan_open, 0: fab_fabric_open */
};

static int open_child(void *arg)
{
	const struct openarg *a = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	int rc;
	alarm(30);
	rc = fab_fabric_open(a->fabric, 0, &fab);
	if (a->chan && rc == 0) {
		rc = fab_chan_open(fab, "c", FAB_RECV, &ch);
		if (rc == 0)
			fab_chan_release(ch);
		fab_fabric_close(fab);
	} else if (rc == 0)
		fab_fabric_close(fab);
	return -rc; /* 0 .. 14 */
}

static int open_code(const char *fabric, int chan)
{
	struct openarg a = {fabric, chan};
	pid_t p = mt_spawn(open_child, &a);
	int rc = mt_wait(p, 40 * MT_SEC);
	if (rc < 0 || rc > 14)
		return 200 + rc;
	return -rc;
}

static const struct setup plain = {FAB_MPMC, 8, 64, 3};

/* Damage one segment with fn, then expect `want` from the open. */
static void damaged_open(const char *tag, int chan, void (*fn)(int fd, size_t size, long arg),
			 long arg, int want, const char *what)
{
	const char *fabric = mt_fabric_name(tag);
	char ctl[96], chn[96];
	struct stat sb;
	seg_names(fabric, ctl, chn, sizeof ctl);
	build(fabric, &plain);
	int fd = shm_open(chan ? chn : ctl, O_RDWR, 0);
	ck_assert(fd >= 0);
	ck_assert(fstat(fd, &sb) == 0);
	fn(fd, (size_t)sb.st_size, arg);
	close(fd);
	int got = open_code(fabric, chan);
	ck_assert_msg(got == want, "%s (%s, arg %ld): open returned %d (%s), want %s", what,
		      chan ? "channel" : "control", arg, got,
		      got <= 0 ? fab_errname(got) : "child died", fab_errname(want));
	ck_assert_int_eq(teardown(fabric), 0);
}

static void do_truncate(int fd, size_t size, long arg)
{
	/* arg >= 0: that many bytes; arg < 0: size + arg */
	off_t to = arg >= 0 ? (off_t)arg : (off_t)size + arg;
	ck_assert(ftruncate(fd, to) == 0);
}

static void do_magic(int fd, size_t size, long arg)
{
	unsigned char b;
	(void)size;
	ck_assert(pread(fd, &b, 1, arg) == 1);
	b ^= 0x20;
	ck_assert(pwrite(fd, &b, 1, arg) == 1);
}

static void do_version(int fd, size_t size, long arg)
{
	uint32_t v = (uint32_t)arg;
	(void)size;
	_Static_assert(offsetof(fab_ctl_hdr, version) == offsetof(fab_chan_hdr, version),
		       "both segments keep their version at one offset");
	ck_assert(pwrite(fd, &v, 4, offsetof(fab_chan_hdr, version)) == 4);
}

START_TEST(truncated_segments)
{
	static const long cuts[] = {0, 1, 8, 12, 100, 255, 256, 4095, 4096, -1, -64, -4096};
	char tag[24];
	for (unsigned i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
		snprintf(tag, sizeof tag, "trc%u", i);
		damaged_open(tag, 1, do_truncate, cuts[i], FAB_ECORRUPT, "truncated");
		snprintf(tag, sizeof tag, "trf%u", i);
		damaged_open(tag, 0, do_truncate, cuts[i], FAB_ECORRUPT, "truncated");
	}
	/* Half of the channel segment. */
	const char *fabric = mt_fabric_name("trhalf");
	char ctl[96], chn[96];
	struct stat sb;
	seg_names(fabric, ctl, chn, sizeof ctl);
	build(fabric, &plain);
	int fd = shm_open(chn, O_RDWR, 0);
	ck_assert(fd >= 0 && fstat(fd, &sb) == 0);
	ck_assert(ftruncate(fd, sb.st_size / 2) == 0);
	close(fd);
	ck_assert_int_eq(open_code(fabric, 1), FAB_ECORRUPT);
	ck_assert_int_eq(teardown(fabric), 0);
}
END_TEST

START_TEST(wrong_magic)
{
	char tag[24];
	for (long b = 0; b < 8; b++) {
		snprintf(tag, sizeof tag, "mgc%ld", b);
		damaged_open(tag, 1, do_magic, b, FAB_ECORRUPT, "magic byte flipped");
		snprintf(tag, sizeof tag, "mgf%ld", b);
		damaged_open(tag, 0, do_magic, b, FAB_ECORRUPT, "magic byte flipped");
	}
}
END_TEST

START_TEST(wrong_version)
{
	static const uint32_t majors[] = {FAB_LAYOUT_MAJOR + 1, FAB_LAYOUT_MAJOR + 100, 0xffff};
	char tag[24];
	for (unsigned i = 0; i < 3; i++) {
		long v = (long)((majors[i] << 16) | FAB_LAYOUT_MINOR);
		snprintf(tag, sizeof tag, "verc%u", i);
		damaged_open(tag, 1, do_version, v, FAB_EVERSION, "other layout major");
		snprintf(tag, sizeof tag, "verf%u", i);
		damaged_open(tag, 0, do_version, v, FAB_EVERSION, "other layout major");
	}
}
END_TEST

/* Layout 1.3 added attach_hi to the channel header, which every library
 * attaching to a channel must raise: a channel segment of any other minor
 * is FAB_EVERSION (before its sizes are compared, which would say
 * FAB_ECORRUPT), and so is a control segment of an older minor (a fabric
 * made by libfab 1.3.0); a newer control segment is read.  The version
 * words of a fresh fabric are written back the way such segments carry
 * them; code and message are checked. */
START_TEST(wrong_minor)
{
	const char *fabric = mt_fabric_name("vmin");
	char ctl[96], chn[96], want[128];
	size_t nc = 0, nk = 0;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	seg_names(fabric, ctl, chn, sizeof ctl);
	build(fabric, &plain);
	unsigned char *c = map_seg(ctl, &nc), *k = map_seg(chn, &nk);
	ck_assert(c && k);
	_Atomic uint32_t *cv = &((fab_ctl_hdr *)c)->version;
	_Atomic uint32_t *kv = &((fab_chan_hdr *)k)->version;
	/* 1.2: the last layout without attach_hi; 1.3 the last without HELD */
	const uint32_t minors[] = {2u, 3u, FAB_LAYOUT_MINOR + 1, 0u, 0xffffu};
	ck_assert_uint_eq(FAB_LAYOUT_MINOR, 4);

	ck_assert_int_eq(fab_fabric_open(fabric, 0, &fab), 0);
	for (unsigned i = 0; i < sizeof minors / sizeof minors[0]; i++) {
		atomic_store(kv, (FAB_LAYOUT_MAJOR << 16) | minors[i]);
		int rc = fab_chan_open(fab, "c", FAB_RECV, &ch);
		snprintf(want, sizeof want, "channel c: layout %u.%u, ", FAB_LAYOUT_MAJOR,
			 minors[i]);
		ck_assert_msg(rc == FAB_EVERSION && ch == NULL && strstr(fab_errmsg(), want),
			      "channel of layout %u.%u: open returned %s (%s), want FAB_EVERSION "
			      "saying \"%s\"",
			      FAB_LAYOUT_MAJOR, minors[i], fab_errname(rc), fab_errmsg(), want);
	}
	atomic_store(kv, FAB_LAYOUT_VERSION);
	ck_assert_int_eq(fab_chan_open(fab, "c", FAB_RECV, &ch), 0);
	fab_chan_release(ch);
	fab_fabric_close(fab);
	fab = NULL;

	/* The control segment: a minor older than 1.3 is refused (1.4 changed
	 * only channel segments, so a fabric of 1.3 is read), a newer one read. */
	atomic_store(cv, (FAB_LAYOUT_MAJOR << 16) | 3u);
	ck_assert_int_eq(fab_fabric_open(fabric, 0, &fab), 0);
	fab_fabric_close(fab);
	fab = NULL;
	atomic_store(cv, (FAB_LAYOUT_MAJOR << 16) | 2u);
	int rc = fab_fabric_open(fabric, 0, &fab);
	/* (it said "predates this library's 1.3", a 1.4 library: an upgrade
	 * trial) */
	snprintf(want, sizeof want, "layout %u.2 is older than %u.%u, the oldest this library reads",
		 FAB_LAYOUT_MAJOR, FAB_LAYOUT_MAJOR, FAB_CTL_MINOR_MIN);
	ck_assert_msg(rc == FAB_EVERSION && fab == NULL && strstr(fab_errmsg(), want),
		      "fabric of layout %u.2: open returned %s (%s), want FAB_EVERSION saying "
		      "\"%s\"",
		      FAB_LAYOUT_MAJOR, fab_errname(rc), fab_errmsg(), want);
	atomic_store(cv, (FAB_LAYOUT_MAJOR << 16) | (FAB_LAYOUT_MINOR + 1));
	rc = fab_fabric_open(fabric, 0, &fab);
	ck_assert_msg(rc == 0, "fabric of a newer minor: %s (%s)", fab_errname(rc), fab_errmsg());
	ck_assert_int_eq(fab_chan_open(fab, "c", FAB_RECV, &ch), 0);
	fab_chan_release(ch);
	fab_fabric_close(fab);
	atomic_store(cv, FAB_LAYOUT_VERSION);

	munmap(c, nc);
	munmap(k, nk);
	ck_assert_int_eq(teardown(fabric), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crash_corrupt");
	TCase *tc = mt_tcase("corrupt", 120);
	mt_init();
	tcase_add_test(tc, scribble_rounds);
	tcase_add_test(tc, truncated_segments);
	tcase_add_test(tc, wrong_magic);
	tcase_add_test(tc, wrong_version);
	tcase_add_test(tc, wrong_minor);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
