/*
 * topic_test.c - broadcast topics across processes (DESIGN §2 "Topic",
 * docs/topics.md).
 *
 * Publisher processes publish self-checking, sequence-numbered messages
 * (mp_util.h: mt_fill/mt_verify; the producer id is the publisher's index);
 * subscriber processes verify every message and keep, per publisher, the
 * last sequence number seen.  When the publishers are done, the parent
 * publishes an END marker (producer id END_PROD); a subscriber stops there.
 *
 *   topic_fanout       3 publishers x 3 BLOCK subscribers + 1 slow DROP
 *                      subscriber: every BLOCK subscriber receives every
 *                      message of each publisher exactly once and in that
 *                      publisher's order; the DROP subscriber loses some,
 *                      never sees a duplicate or a reordering, and
 *                      received + dropped accounts for every message.
 *   topic_sub_killed   a BLOCK subscriber SIGKILLed mid-stream while the
 *                      publishers are held back by it: they finish (it is
 *                      pruned), the other subscribers still get everything.
 *   topic_pub_killed   a publisher of large messages SIGKILLed mid-stream,
 *                      between claim and commit (stopped with SIGSTOP while
 *                      it holds a slot WRITING, then killed): the subscribers
 *                      do not stall; they get every message of the other
 *                      publishers, and of the killed one a gapless prefix
 *                      covering every publish that returned.
 *
 *   topic_join_midstream  BLOCK subscribers join (and leave) again and again
 *                      while 3 publishers lap a 1-slot ring flat out: each
 *                      receives, from each publisher, every message whose
 *                      publish started after its subscribe returned, none
 *                      that returned before it started, gapless and in order.
 *
 * The killed publisher would publish 100 x as many as the others, so it is
 * still running when the parent kills it.
 *
 * Child exit codes: 0 ok; 10 open/subscribe; 11 publish or receive failed;
 * 12 order (duplicate, gap or reordering); 13 corrupt message; 14 unknown
 * publisher or sequence; 15 BLOCK subscriber reports drops; 16 timed out
 * waiting for the start.
 */
#include "mp_util.h"

#include "layout.h"

#define MAXP 4
#define MAXS 8
#define END_PROD 15u

enum { SUB_NORMAL, SUB_SLOW_DROP, SUB_VICTIM };

struct res {
	uint64_t received; /* messages, END excluded */
	uint64_t dropped;  /* fab_sub_dropped at the end */
	uint64_t per_pub[MAXP];
	int64_t last[MAXP];
	int done;
};

struct shared {
	_Atomic int ready;                /* subscribers subscribed */
	_Atomic int go;                   /* publishers may start */
	_Atomic uint64_t published[MAXP]; /* publishes that returned, per publisher */
	_Atomic uint64_t victim_recv;     /* what the victim subscriber received */
	_Atomic int stop;                 /* publishers that run until told: stop */
	_Atomic uint64_t joins;           /* topic_join_midstream: subscriptions checked */
	struct res res[MAXS];
};

struct cfg {
	const char *fabric;
	uint32_t cap, msg_size;
	unsigned np;         /* publishers 0..np-1 */
	uint32_t per_pub;    /* messages per publisher */
	int victim_pub;      /* this publisher runs until killed (at most 100 x per_pub), -1 none */
	int until_stop;      /* publishers run until sh->stop (at most 100 x per_pub) */
	int id;              /* this child's index */
	unsigned policy;     /* subscribers */
	int role;            /* subscribers: SUB_* */
	uint64_t stop_after; /* SUB_VICTIM: stops reading after this many */
	struct shared *sh;
};

static uint64_t sum_published(struct shared *sh, unsigned np)
{
	uint64_t s = 0;
	for (unsigned i = 0; i < np; i++)
		s += atomic_load(&sh->published[i]);
	return s;
}

/* ---- children ------------------------------------------------------------ */

static int publisher(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_topic *t = NULL;
	fab_ctx *dl = NULL;
	int rc = fab_fabric_open(c->fabric, 0, &fab);
	if (rc == 0)
		rc = fab_topic_open(fab, "t", &t);
	if (rc != 0)
		MT_CHILD_FAIL(10, "publisher %d open: %s", c->id, fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 100 * MT_SEC, &dl);
	unsigned char *buf = malloc(c->msg_size);
	if (!buf)
		MT_CHILD_FAIL(10, "malloc");
	if (!MT_WAIT_UNTIL(atomic_load(&c->sh->go), 30 * MT_SEC))
		MT_CHILD_FAIL(16, "publisher %d: no go", c->id);
	uint32_t count = c->id == c->victim_pub || c->until_stop ? 100 * c->per_pub : c->per_pub;
	for (uint32_t s = 0; s < count && !(c->until_stop && atomic_load(&c->sh->stop)); s++) {
		size_t len = mt_msg_len((uint32_t)c->id, s, c->msg_size);
		mt_fill(buf, (uint32_t)c->id, s, len);
		rc = fab_topic_publish(t, buf, len, dl);
		if (rc != 0)
			MT_CHILD_FAIL(11, "publisher %d seq %u: %s", c->id, s, fab_strerror(rc));
		atomic_store(&c->sh->published[c->id], s + 1);
	}
	free(buf);
	fab_ctx_release(dl);
	fab_topic_release(t);
	fab_fabric_close(fab);
	return 0;
}

static int subscriber(void *arg)
{
	struct cfg *c = arg;
	struct res *r = &c->sh->res[c->id];
	fab_fabric *fab = NULL;
	fab_sub *u = NULL;
	fab_ctx *dl = NULL;
	int rc = fab_fabric_open(c->fabric, 0, &fab);
	if (rc == 0)
		rc = fab_topic_subscribe(fab, "t", c->policy, &u);
	if (rc != 0)
		MT_CHILD_FAIL(10, "subscriber %d open: %s", c->id, fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 100 * MT_SEC, &dl);
	unsigned char *buf = malloc(c->msg_size);
	if (!buf)
		MT_CHILD_FAIL(10, "malloc");
	for (int p = 0; p < MAXP; p++)
		r->last[p] = -1;
	atomic_fetch_add(&c->sh->ready, 1);
	if (c->role == SUB_SLOW_DROP) {
		/* Fall several rings behind before the first read: drops are
		 * certain, not a matter of scheduling. */
		if (!MT_WAIT_UNTIL(sum_published(c->sh, c->np) >= 4u * c->cap, 60 * MT_SEC))
			MT_CHILD_FAIL(16, "subscriber %d: publishers did not start", c->id);
	}
	for (uint64_t k = 0;; k++) {
		if (c->role == SUB_VICTIM && r->received >= c->stop_after) {
			/* Stop reading mid-stream and hold the publishers back
			 * until the parent SIGKILLs us. */
			atomic_store(&c->sh->victim_recv, r->received);
			for (;;)
				pause();
		}
		if (c->role == SUB_SLOW_DROP && k % 8 == 0)
			usleep(300);
		ssize_t n = fab_sub_recv(u, buf, c->msg_size, dl);
		if (n < 0)
			MT_CHILD_FAIL(11, "subscriber %d recv after %llu: %s", c->id,
				      (unsigned long long)r->received, fab_strerror((int)n));
		uint32_t p, s;
		int why = mt_verify(buf, (size_t)n, c->msg_size, &p, &s);
		if (why != 0)
			MT_CHILD_FAIL(13, "subscriber %d corrupt message (reason %d, len %zd)",
				      c->id, why, n);
		if (p == END_PROD)
			break;
		if (p >= c->np || s >= ((int)p == c->victim_pub ? 100 * c->per_pub : c->per_pub))
			MT_CHILD_FAIL(14, "subscriber %d got publisher %u seq %u", c->id, p, s);
		/* BLOCK: exactly the next one; DROP: later than the last. */
		if (c->policy == FAB_SUB_BLOCK ? (int64_t)s != r->last[p] + 1
					       : (int64_t)s <= r->last[p])
			MT_CHILD_FAIL(12, "subscriber %d: publisher %u seq %u after %lld", c->id, p,
				      s, (long long)r->last[p]);
		r->last[p] = s;
		r->per_pub[p]++;
		r->received++;
	}
	r->dropped = fab_sub_dropped(u);
	if (c->policy == FAB_SUB_BLOCK && r->dropped != 0)
		MT_CHILD_FAIL(15, "BLOCK subscriber %d dropped %llu", c->id,
			      (unsigned long long)r->dropped);
	r->done = 1;
	free(buf);
	fab_ctx_release(dl);
	fab_sub_release(u);
	fab_fabric_close(fab);
	return 0;
}

/*
 * Subscribe BLOCK mid-stream, again and again, while publishers run flat
 * out: per publisher p, k0 = publishes returned before the subscribe
 * started, k1 = returned when it returned.  Seq k1 + 1 started after the
 * subscribe returned, so it must arrive; seqs below k0 returned before it
 * started, so they must not; and from the first one received, a BLOCK
 * subscriber sees every seq in order.
 */
static int joiner(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_ctx *dl = NULL;
	int rc = fab_fabric_open(c->fabric, 0, &fab);
	if (rc != 0)
		MT_CHILD_FAIL(10, "joiner %d open: %s", c->id, fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 100 * MT_SEC, &dl);
	unsigned char *buf = malloc(c->msg_size);
	if (!buf)
		MT_CHILD_FAIL(10, "malloc");
	if (!MT_WAIT_UNTIL(sum_published(c->sh, c->np) > 1000, 30 * MT_SEC))
		MT_CHILD_FAIL(16, "joiner %d: publishers did not start", c->id);
	for (int round = 0; round < 40; round++) {
		uint64_t k0[MAXP], k1[MAXP];
		int64_t last[MAXP];
		fab_sub *u = NULL;
		for (unsigned p = 0; p < c->np; p++)
			k0[p] = atomic_load(&c->sh->published[p]);
		rc = fab_topic_subscribe(fab, "t", FAB_SUB_BLOCK, &u);
		for (unsigned p = 0; p < c->np; p++) {
			k1[p] = atomic_load(&c->sh->published[p]);
			last[p] = -1;
		}
		if (rc != 0)
			MT_CHILD_FAIL(10, "joiner %d subscribe: %s", c->id, fab_strerror(rc));
		for (;;) {
			unsigned p;
			for (p = 0; p < c->np; p++)
				if (last[p] < (int64_t)(k1[p] + 20))
					break;
			if (p == c->np)
				break; /* got well past k1 + 1 from every publisher */
			ssize_t n = fab_sub_recv(u, buf, c->msg_size, dl);
			if (n < 0)
				MT_CHILD_FAIL(11, "joiner %d recv: %s", c->id,
					      fab_strerror((int)n));
			uint32_t q, s;
			if (mt_verify(buf, (size_t)n, c->msg_size, &q, &s) != 0)
				MT_CHILD_FAIL(13, "joiner %d corrupt message", c->id);
			if (q >= c->np)
				MT_CHILD_FAIL(14, "joiner %d got publisher %u", c->id, q);
			if (last[q] < 0) {
				if (s < k0[q])
					MT_CHILD_FAIL(
					    12,
					    "joiner %d round %d: publisher %u seq %u had "
					    "returned (%llu) before the subscribe started",
					    c->id, round, q, s, (unsigned long long)k0[q]);
				if (s > k1[q] + 1)
					MT_CHILD_FAIL(
					    12,
					    "joiner %d round %d: publisher %u first seq %u, "
					    "but %llu started after the subscribe returned",
					    c->id, round, q, s, (unsigned long long)(k1[q] + 1));
			} else if ((int64_t)s != last[q] + 1) {
				MT_CHILD_FAIL(12,
					      "joiner %d round %d: publisher %u seq %u after %lld",
					      c->id, round, q, s, (long long)last[q]);
			}
			last[q] = s;
		}
		if (fab_sub_dropped(u) != 0)
			MT_CHILD_FAIL(15, "joiner %d dropped", c->id);
		fab_sub_release(u);
		atomic_fetch_add(&c->sh->joins, 1);
	}
	free(buf);
	fab_ctx_release(dl);
	fab_fabric_close(fab);
	return 0;
}

/* ---- parent helpers ------------------------------------------------------- */

struct run {
	struct cfg c;
	fab_fabric *fab;
	fab_topic *t;
	fab_topic_hdr *h; /* the segment, mapped for counters */
	size_t hsize;
	pid_t pubs[MAXP], subs[MAXS];
	int nsubs;
};

static void start(struct run *R, const char *tag, uint32_t cap, uint32_t msg_size, unsigned np,
		  uint32_t per_pub)
{
	memset(R, 0, sizeof *R);
	R->c.fabric = mt_fabric_name(tag);
	R->c.cap = cap;
	R->c.msg_size = msg_size;
	R->c.np = np;
	R->c.per_pub = per_pub;
	R->c.victim_pub = -1;
	R->c.sh = mt_shared(sizeof(struct shared));
	ck_assert_ptr_nonnull(R->c.sh);
	int rc = fab_fabric_open(R->c.fabric, FAB_CREATE, &R->fab);
	ck_assert_msg(rc == 0, "fabric: %s", fab_strerror(rc));
	fab_chan_opts o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.capacity = cap;
	o.msg_size = msg_size;
	rc = fab_topic_create(R->fab, "t", &o, &R->t);
	ck_assert_msg(rc == 0, "topic: %s", fab_strerror(rc));
	char p[128];
	snprintf(p, sizeof p, "/fab.%s.t", R->c.fabric);
	int fd = shm_open(p, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	struct stat sb;
	ck_assert_int_eq(fstat(fd, &sb), 0);
	R->hsize = (size_t)sb.st_size;
	R->h = mmap(NULL, R->hsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert(R->h != MAP_FAILED);
}

static void spawn_sub(struct run *R, unsigned policy, int role, uint64_t stop_after)
{
	R->c.id = R->nsubs;
	R->c.policy = policy;
	R->c.role = role;
	R->c.stop_after = stop_after;
	R->subs[R->nsubs++] = mt_spawn(subscriber, &R->c);
}

static void spawn_pubs(struct run *R)
{
	ck_assert_msg(MT_WAIT_UNTIL(atomic_load(&R->c.sh->ready) == R->nsubs, 30 * MT_SEC),
		      "subscribers did not subscribe");
	for (unsigned i = 0; i < R->c.np; i++) {
		R->c.id = (int)i;
		R->pubs[i] = mt_spawn(publisher, &R->c);
	}
	atomic_store(&R->c.sh->go, 1);
}

/* Publish END (after every publisher finished or died). */
static void publish_end(struct run *R)
{
	size_t len = mt_msg_len(END_PROD, 0, R->c.msg_size);
	unsigned char *buf = malloc(len);
	fab_ctx *dl = NULL;
	ck_assert_ptr_nonnull(buf);
	mt_fill(buf, END_PROD, 0, len);
	fab_ctx_with_timeout(NULL, 60 * MT_SEC, &dl);
	int rc = fab_topic_publish(R->t, buf, len, dl);
	fab_ctx_release(dl);
	free(buf);
	ck_assert_msg(rc == 0, "END: %s", fab_strerror(rc));
}

static void wait_pubs(struct run *R, int skip)
{
	for (unsigned i = 0; i < R->c.np; i++) {
		if ((int)i == skip)
			continue;
		int code = mt_wait(R->pubs[i], 90 * MT_SEC);
		ck_assert_msg(code == 0, "publisher %u exited %d (-2 = stalled)", i, code);
	}
}

static void wait_subs(struct run *R, int skip)
{
	for (int i = 0; i < R->nsubs; i++) {
		if (i == skip)
			continue;
		int code = mt_wait(R->subs[i], 90 * MT_SEC);
		ck_assert_msg(code == 0, "subscriber %d exited %d (-2 = stalled)", i, code);
	}
}

static int active_subs(struct run *R)
{
	fab_topic_sub *e = (fab_topic_sub *)((uint8_t *)R->h + FAB_TOPIC_SUBS_OFF);
	int n = 0;
	for (uint32_t i = 0; i < FAB_TOPIC_SUBS_MAX; i++)
		if (FAB_TSUB_STATE(atomic_load(&e[i].sw)) != FAB_TSUB_FREE)
			n++;
	return n;
}

static void finish(struct run *R)
{
	mt_kill_all();
	ck_assert_int_eq(active_subs(R), 0);
	munmap(R->h, R->hsize);
	fab_topic_release(R->t);
	munmap(R->c.sh, sizeof(struct shared));
	mt_destroy(R->c.fabric, &R->fab);
}

/* ---- tests ------------------------------------------------------------------ */

START_TEST(topic_fanout)
{
	struct run R;
	uint32_t n = MT_SCALE(40000, 20000);
	start(&R, "tfan", 64, 96, 3, n);
	for (int i = 0; i < 3; i++)
		spawn_sub(&R, FAB_SUB_BLOCK, SUB_NORMAL, 0);
	spawn_sub(&R, FAB_SUB_DROP, SUB_SLOW_DROP, 0);
	int64_t t0 = ft_now_ns();
	spawn_pubs(&R);
	wait_pubs(&R, -1);
	publish_end(&R);
	wait_subs(&R, -1);
	uint64_t total = 3ull * n;
	struct shared *sh = R.c.sh;
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(sh->res[i].received, total);
		for (int p = 0; p < 3; p++)
			ck_assert_uint_eq(sh->res[i].per_pub[p], n);
	}
	struct res *d = &sh->res[3];
	ck_assert_msg(d->dropped > 0, "the slow DROP subscriber lost nothing");
	ck_assert_msg(d->received + d->dropped == total,
		      "DROP: received %llu + dropped %llu != %llu published",
		      (unsigned long long)d->received, (unsigned long long)d->dropped,
		      (unsigned long long)total);
	ck_assert_uint_eq(atomic_load(&R.h->published), total + 1);
	ck_assert_uint_eq(atomic_load(&R.h->dropped_total), d->dropped);
	ck_assert_uint_eq(atomic_load(&R.h->pruned), 0);
	ck_assert_uint_eq(atomic_load(&R.h->recovered), 0);
	printf("topic 3 pub x (3 BLOCK + 1 slow DROP) sub, cap 64: %llu msgs in %.2f s; DROP got "
	       "%llu, dropped %llu; futex waits %llu wakes %llu\n",
	       (unsigned long long)total, (ft_now_ns() - t0) / 1e9, (unsigned long long)d->received,
	       (unsigned long long)d->dropped, (unsigned long long)atomic_load(&R.h->futex_waits),
	       (unsigned long long)atomic_load(&R.h->futex_wakes));
	finish(&R);
}
END_TEST

START_TEST(topic_sub_killed)
{
	struct run R;
	uint32_t n = MT_SCALE(20000, 4000);
	start(&R, "tsk", 32, 64, 2, n);
	spawn_sub(&R, FAB_SUB_BLOCK, SUB_NORMAL, 0);
	spawn_sub(&R, FAB_SUB_BLOCK, SUB_VICTIM, 1000);
	spawn_sub(&R, FAB_SUB_DROP, SUB_NORMAL, 0);
	spawn_pubs(&R);
	/* The victim stops reading after 1000: within 32 more messages the
	 * publishers are held back by it.  Kill it there. */
	ck_assert(MT_WAIT_UNTIL(atomic_load(&R.c.sh->victim_recv) >= 1000, 60 * MT_SEC));
	(void)MT_WAIT_UNTIL(atomic_load(&R.h->space_waiters) >= 1, 5 * MT_SEC);
	uint64_t at_kill = sum_published(R.c.sh, 2);
	kill(R.subs[1], SIGKILL);
	ck_assert_int_eq(mt_wait(R.subs[1], 10 * MT_SEC), 128 + SIGKILL);
	wait_pubs(&R, -1);
	publish_end(&R);
	wait_subs(&R, 1);
	struct shared *sh = R.c.sh;
	ck_assert_uint_eq(sh->res[0].received, 2ull * n);
	ck_assert_uint_eq(sh->res[2].received + sh->res[2].dropped, 2ull * n);
	ck_assert_uint_eq(atomic_load(&R.h->pruned), 1);
	printf("topic: BLOCK subscriber killed after 1000 (publishers at %llu of %llu, %u "
	       "waiting): pruned, publishers finished\n",
	       (unsigned long long)at_kill, 2ull * n, atomic_load(&R.h->space_waiters));
	finish(&R);
}
END_TEST

/* The owner tag of process pid's fabric handle (process table), 0 if none. */
static uint32_t tag_of(const char *fabric, pid_t pid)
{
	char p[128];
	snprintf(p, sizeof p, "/fab.%s", fabric);
	int fd = shm_open(p, O_RDONLY, 0);
	if (fd < 0)
		return 0;
	uint8_t *ctl = mmap(NULL, FAB_CTL_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (ctl == MAP_FAILED)
		return 0;
	fab_proc_ent *procs = (fab_proc_ent *)(ctl + FAB_CTL_PROCS_OFF);
	uint32_t tag = 0;
	for (uint32_t i = 0; i < FAB_MAX_PROCS && !tag; i++) {
		uint64_t sg = atomic_load(&procs[i].sg);
		if (FAB_SG_STATE(sg) == FAB_PROC_LIVE &&
		    atomic_load(&procs[i].pid) == (uint32_t)pid)
			tag = FAB_TAG_MAKE(i, FAB_SG_GEN(sg));
	}
	munmap(ctl, FAB_CTL_SIZE);
	return tag;
}

/* Is a slot held WRITING by `tag` right now? */
static int writing_by(struct run *R, uint32_t tag)
{
	uint8_t *slots = (uint8_t *)R->h + FAB_TOPIC_SLOTS_OFF;
	for (uint32_t i = 0; i < R->h->nslots; i++) {
		fab_mslot *s = (fab_mslot *)(slots + (size_t)i * R->h->slot_size);
		uint64_t w = atomic_load(&s->state);
		if (FAB_SW_STATE(w) == FAB_SLOT_WRITING && FAB_SW_TAG(w) == tag)
			return 1;
	}
	return 0;
}

START_TEST(topic_pub_killed)
{
	struct run R;
	uint32_t n = MT_SCALE(2000, 400);
	/* Large messages: a publisher spends much of its time copying one in
	 * (between claim and commit).  The parent watches the slots and kills
	 * the victim when it holds one WRITING, so the SIGKILL lands between
	 * claim and commit (unless the commit wins the last microseconds). */
	start(&R, "tpk", 16, 64 * 1024, 3, n);
	int victim = 2;
	R.c.victim_pub = victim;
	spawn_sub(&R, FAB_SUB_BLOCK, SUB_NORMAL, 0);
	spawn_sub(&R, FAB_SUB_BLOCK, SUB_NORMAL, 0);
	spawn_sub(&R, FAB_SUB_DROP, SUB_NORMAL, 0);
	spawn_pubs(&R);
	ck_assert(MT_WAIT_UNTIL(atomic_load(&R.c.sh->published[victim]) >= n / 4, 60 * MT_SEC));
	uint32_t vtag = tag_of(R.c.fabric, R.pubs[victim]);
	ck_assert_msg(vtag != 0, "no process-table entry for the victim");
	/* Stop it when it holds a slot WRITING; if it still does once stopped,
	 * the SIGKILL lands between its claim and its commit for sure. */
	int64_t until = ft_now_ns() + 20 * MT_SEC;
	int mid = 0;
	while (!mid && ft_now_ns() < until) {
		if (!writing_by(&R, vtag)) {
			sched_yield();
			continue;
		}
		int st;
		kill(R.pubs[victim], SIGSTOP);
		ck_assert_int_eq(waitpid(R.pubs[victim], &st, WUNTRACED), R.pubs[victim]);
		ck_assert(WIFSTOPPED(st));
		if (!(mid = writing_by(&R, vtag)))
			kill(R.pubs[victim], SIGCONT);
	}
	ck_assert_msg(mid, "never caught the publisher between claim and commit");
	kill(R.pubs[victim], SIGKILL);
	ck_assert_int_eq(mt_wait(R.pubs[victim], 10 * MT_SEC), 128 + SIGKILL);
	uint64_t returned = atomic_load(&R.c.sh->published[victim]);
	wait_pubs(&R, victim);
	publish_end(&R);
	wait_subs(&R, -1);
	struct shared *sh = R.c.sh;
	for (int i = 0; i < 2; i++) {
		/* Everything of the others; of the victim, a gapless prefix
		 * (order was checked message by message) with every publish
		 * that returned, plus at most the one it was killed in. */
		ck_assert_uint_eq(sh->res[i].per_pub[0], n);
		ck_assert_uint_eq(sh->res[i].per_pub[1], n);
		uint64_t got = sh->res[i].per_pub[victim];
		ck_assert_msg(got == returned || got == returned + 1,
			      "subscriber %d got %llu of the killed publisher, %llu returned", i,
			      (unsigned long long)got, (unsigned long long)returned);
	}
	ck_assert_uint_le(sh->res[2].received + sh->res[2].dropped, 2ull * n + returned + 1);
	/* Its claim was turned into SKIP by a subscriber (or a publisher a
	 * lap later) that found it dead. */
	ck_assert_uint_eq(atomic_load(&R.h->recovered), 1);
	printf("topic: publisher killed between claim and commit after %llu publishes returned; "
	       "slot recovered\n",
	       (unsigned long long)returned);
	finish(&R);
}
END_TEST

START_TEST(topic_join_midstream)
{
	struct run R;
	/* A one-slot ring that three publishers lap constantly whenever no
	 * joiner is subscribed: more claims in flight than slots, so a claim
	 * that missed the join would overwrite a message the joiner must get.
	 * (Loading sub_gen before tail in fab_topic_publish fails this test.) */
	start(&R, "tjm", 1, 64, 3, MT_SCALE(1000000, 400000));
	R.c.until_stop = 1;
	spawn_pubs(&R);
	pid_t j[3];
	for (int i = 0; i < 3; i++) {
		R.c.id = i;
		j[i] = mt_spawn(joiner, &R.c);
	}
	int codes[3];
	int bad = mt_wait_all(j, 3, 90 * MT_SEC, codes);
	atomic_store(&R.c.sh->stop, 1);
	ck_assert_msg(bad < 0, "joiner %d exited %d (-2 = stalled)", bad, bad < 0 ? 0 : codes[bad]);
	wait_pubs(&R, -1);
	ck_assert_uint_eq(atomic_load(&R.c.sh->joins), 120);
	printf("topic: 120 BLOCK subscriptions joined mid-stream, none lost a message; %llu "
	       "published\n",
	       (unsigned long long)sum_published(R.c.sh, 3));
	finish(&R);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mp_topic");
	TCase *tc = mt_tcase("topic", 150);
	mt_init();
	tcase_add_test(tc, topic_fanout);
	tcase_add_test(tc, topic_sub_killed);
	tcase_add_test(tc, topic_pub_killed);
	tcase_add_test(tc, topic_join_midstream);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
