/*
 * topic_test.c - unit suite for broadcast topics (fab_topic_* and fab_sub_*,
 * docs/topics.md).
 *
 * Each test runs in its own fabric (fixture in unit.h).  Schedules are
 * single-process and deterministic unless a test needs a peer process to
 * block or die; children never ck_assert, they _exit with a code naming the
 * step that failed.  The tests read the topic segment through layout.h to
 * see gauges and counters that have no API yet (waiters, pruned,
 * recovered, dropped_total) and to build the states a crash or a scribble
 * leaves behind.  Sleeps only give a peer the chance to block first; no
 * assertion depends on timing.
 */
#include "unit.h"

#include "layout.h"

#define MS 1000000LL
#define SEC 1000000000LL

/* ---- helpers ---------------------------------------------------------- */

static fab_chan_opts topts(uint32_t cap, uint32_t msz)
{
	fab_chan_opts o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.capacity = cap;
	o.msg_size = msz;
	return o;
}

static fab_topic *mk(const char *name, uint32_t cap, uint32_t msz)
{
	fab_chan_opts o = topts(cap, msz);
	fab_topic *t = NULL;
	UT_RC(fab_topic_create(fab, name, &o, &t), 0);
	ck_assert_ptr_nonnull(t);
	return t;
}

static fab_sub *sub(const char *name, unsigned policy)
{
	fab_sub *u = NULL;
	UT_RC(fab_topic_subscribe(fab, name, policy, &u), 0);
	ck_assert_ptr_nonnull(u);
	return u;
}

static fab_ctx *deadline(int64_t ns)
{
	fab_ctx *c = NULL;
	UT_RC(fab_ctx_with_timeout(NULL, ns, &c), 0);
	ck_assert_ptr_nonnull(c);
	return c;
}

/* Calls that must not block: a wrong library fails in 10 s with
 * FAB_ETIMEDOUT instead of hanging the suite. */
static int pub_nb(fab_topic *t, const void *m, size_t n)
{
	fab_ctx *x = deadline(10 * SEC);
	int rc = fab_topic_publish(t, m, n, x);
	fab_ctx_release(x);
	return rc;
}

static ssize_t recv_nb(fab_sub *u, void *b, size_t n)
{
	fab_ctx *x = deadline(10 * SEC);
	ssize_t rc = fab_sub_recv(u, b, n, x);
	fab_ctx_release(x);
	return rc;
}

/* Publish / receive one uint64. */
static int pub_u64(fab_topic *t, uint64_t v)
{
	return pub_nb(t, &v, sizeof v);
}

/* Publish one uint64 without waiting (an expired deadline tries once). */
static int pub_try(fab_topic *t, uint64_t v)
{
	fab_ctx *x = deadline(0);
	int rc = fab_topic_publish(t, &v, sizeof v, x);
	fab_ctx_release(x);
	return rc;
}

/* Receive one uint64 without waiting (an expired deadline): the value, or
 * a negative code (FAB_ETIMEDOUT when there is none). */
static int64_t try_u64(fab_sub *u)
{
	fab_ctx *x = deadline(0);
	uint64_t v = 0;
	ssize_t r = fab_sub_recv(u, &v, sizeof v, x);
	fab_ctx_release(x);
	if (r < 0)
		return r;
	if (r != sizeof v)
		return -1000 - r;
	return (int64_t)v;
}

/* Map a segment of this test's fabric (chan NULL: the control segment)
 * read-write; *size gets its length. */
static void *seg_map(const char *fabric, const char *chan, size_t *size)
{
	char p[256];
	if (chan)
		snprintf(p, sizeof p, "/fab.%s.%s", fabric, chan);
	else
		snprintf(p, sizeof p, "/fab.%s", fabric);
	int fd = shm_open(p, O_RDWR, 0);
	if (fd < 0)
		return NULL;
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		close(fd);
		return NULL;
	}
	*size = (size_t)sb.st_size;
	void *b = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return b == MAP_FAILED ? NULL : b;
}

/* The topic segment of this test's fabric, mapped (parent side). */
typedef struct tview {
	fab_topic_hdr *h;
	size_t size;
} tview;

static tview view(const char *name)
{
	tview v;
	v.h = seg_map(fname, name, &v.size);
	ck_assert_msg(v.h != NULL, "cannot map topic %s", name);
	return v;
}

static void unview(tview *v)
{
	munmap(v->h, v->size);
	v->h = NULL;
}

static fab_topic_sub *tsubs(tview *v)
{
	return (fab_topic_sub *)((uint8_t *)v->h + FAB_TOPIC_SUBS_OFF);
}

static fab_mslot *tslot(tview *v, uint64_t pos)
{
	uint8_t *slots = (uint8_t *)v->h + FAB_TOPIC_SLOTS_OFF;
	return (fab_mslot *)(slots + (size_t)(pos & (v->h->nslots - 1)) * v->h->slot_size);
}

static int active_subs(tview *v)
{
	int n = 0;
	for (uint32_t i = 0; i < FAB_TOPIC_SUBS_MAX; i++)
		if (FAB_TSUB_STATE(atomic_load(&tsubs(v)[i].sw)) == FAB_TSUB_ACTIVE)
			n++;
	return n;
}

/* Wait (bounded, best effort) until a gauge reaches n, then a little more
 * so the peer reaches its futex sleep.  Callers never assert on it. */
static bool wait_gauge(_Atomic uint32_t *g, uint32_t n)
{
	int64_t end = ft_now_ns() + 5 * SEC;
	while (ft_now_ns() < end) {
		if (atomic_load(g) >= n) {
			ut_sleep_ms(20);
			return true;
		}
		ut_sleep_ms(2);
	}
	return false;
}

/* In a child: its own fabric handle (alarm: a hang is 128+SIGALRM). */
static fab_fabric *child_fabric(int code)
{
	fab_fabric *f = NULL;
	alarm(20);
	CHILD_RC(fab_fabric_open(fname, 0, &f), 0, code);
	return f;
}

/* In a child: the owner tag of its fabric handle, from the process table. */
static uint32_t child_tag(int code)
{
	size_t sz;
	uint8_t *ctl = seg_map(fname, NULL, &sz);
	CHILD_CHECK(ctl != NULL, code);
	fab_proc_ent *procs = (fab_proc_ent *)(ctl + FAB_CTL_PROCS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
		uint64_t sg = atomic_load(&procs[i].sg);
		if (FAB_SG_STATE(sg) == FAB_PROC_LIVE &&
		    atomic_load(&procs[i].pid) == (uint32_t)getpid()) {
			munmap(ctl, sz);
			return FAB_TAG_MAKE(i, FAB_SG_GEN(sg));
		}
	}
	CHILD_CHECK(0, code + 1);
	return 0;
}

/* ---- arguments ---------------------------------------------------------- */

START_TEST(t_args)
{
	fab_topic *t = NULL;
	fab_sub *u = NULL;
	fab_chan_opts o = topts(4, 8);
	char b[16];

	UT_RC(fab_topic_create(NULL, "t", &o, &t), FAB_EINVAL);
	UT_RC(fab_topic_create(fab, "t", &o, NULL), FAB_EINVAL);
	UT_RC(fab_topic_create(fab, NULL, &o, &t), FAB_EINVAL);
	UT_RC(fab_topic_create(fab, "", &o, &t), FAB_EINVAL);
	UT_RC(fab_topic_create(fab, "a.b", &o, &t), FAB_EINVAL);
	UT_RC(fab_topic_create(fab, "0123456789012345678901234567890123456789012345678", &o, &t),
	      FAB_EINVAL);
	ck_assert_ptr_null(t);
	UT_RC(fab_topic_open(NULL, "t", &t), FAB_EINVAL);
	UT_RC(fab_topic_open(fab, "t", NULL), FAB_EINVAL);
	UT_RC(fab_topic_open(fab, "t", &t), FAB_ENOENT);
	ck_assert_ptr_nonnull(strstr(ut_msg(), "no topic t"));
	UT_RC(fab_topic_subscribe(NULL, "t", FAB_SUB_BLOCK, &u), FAB_EINVAL);
	UT_RC(fab_topic_subscribe(fab, "t", FAB_SUB_BLOCK, NULL), FAB_EINVAL);
	UT_RC(fab_topic_subscribe(fab, "t", FAB_SUB_BLOCK, &u), FAB_ENOENT);
	UT_RC(fab_topic_subscribe(fab, "t!", FAB_SUB_BLOCK, &u), FAB_EINVAL);

	/* Options a topic does not take, and limits. */
	struct {
		const char *what;
		fab_chan_opts o;
	} bad[12];
	int n = 0;
	bad[n].what = "size 8", bad[n].o = topts(4, 8), bad[n].o.size = 8, n++;
	bad[n].what = "size 5000", bad[n].o = topts(4, 8), bad[n].o.size = 5000, n++;
	bad[n].what = "kind", bad[n].o = topts(4, 8), bad[n].o.kind = FAB_MPMC, n++;
	bad[n].what = "delivery", bad[n].o = topts(4, 8), bad[n].o.delivery = FAB_AT_MOST_ONCE, n++;
	bad[n].what = "producers", bad[n].o = topts(4, 8), bad[n].o.producers = 1, n++;
	bad[n].what = "max_inflight", bad[n].o = topts(4, 8), bad[n].o.max_inflight = 1, n++;
	bad[n].what = "max_deliveries", bad[n].o = topts(4, 8), bad[n].o.max_deliveries = 1, n++;
	bad[n].what = "dead_letter", bad[n].o = topts(4, 8), bad[n].o.dead_letter = "dl", n++;
	bad[n].what = "capacity", bad[n].o = topts(FAB_CAPACITY_MAX + 1, 8), n++;
	bad[n].what = "msg_size", bad[n].o = topts(4, FAB_MSG_SIZE_MAX + 1), n++;
	bad[n].what = "mode", bad[n].o = topts(4, 8), bad[n].o.mode = 01600, n++;
	for (int i = 0; i < n; i++) {
		t = (fab_topic *)1;
		int rc = fab_topic_create(fab, "t", &bad[i].o, &t);
		ck_assert_msg(rc == FAB_EINVAL, "%s: got %d (%s)", bad[i].what, rc, ut_name(rc));
		ck_assert_msg(t == NULL, "%s: *out not NULL", bad[i].what);
		ck_assert_msg(!ut_shm_exists(fname, "t"), "%s: segment left", bad[i].what);
	}
	/* The error says which fields. */
	UT_RC(fab_topic_create(fab, "t", &bad[2].o, &t), FAB_EINVAL);
	ck_assert_ptr_nonnull(strstr(ut_msg(), "kind"));

	/* NULL opts: defaults (capacity 64, msg_size 0, mode 0600). */
	UT_RC(fab_topic_create(fab, "d", NULL, &t), 0);
	ck_assert_int_eq(ut_shm_mode(fname, "d"), 0600);
	tview v = view("d");
	ck_assert_uint_eq(v.h->capacity, FAB_TOPIC_CAP_DEFAULT);
	ck_assert_uint_eq(v.h->msg_size, 0);
	unview(&v);
	u = sub("d", FAB_SUB_BLOCK);
	UT_RC(pub_nb(t, NULL, 0), 0);
	UT_RC(pub_nb(t, b, 1), FAB_EMSGSIZE);
	UT_RC(recv_nb(u, b, sizeof b), 0);
	fab_sub_release(u);
	fab_topic_release(t);
	UT_RC(fab_topic_create(fab, "d", NULL, &t), FAB_EEXIST);
	ck_assert_ptr_null(t);

	/* mode is applied exactly. */
	o = topts(4, 8);
	o.mode = 0640;
	UT_RC(fab_topic_create(fab, "m", &o, &t), 0);
	ck_assert_int_eq(ut_shm_mode(fname, "m"), 0640);

	/* Bad calls on good handles. */
	u = sub("m", FAB_SUB_DROP);
	UT_RC(fab_topic_publish(t, NULL, 3, NULL), FAB_EINVAL);
	UT_RC(fab_topic_publish(t, b, 9, NULL), FAB_EMSGSIZE);
	ck_assert_ptr_nonnull(strstr(ut_msg(), "msg_size 8"));
	UT_RC(fab_sub_recv(u, NULL, 4, NULL), FAB_EINVAL);
	fab_sub *bad_u = (fab_sub *)1;
	UT_RC(fab_topic_subscribe(fab, "m", 0, &bad_u), FAB_EINVAL);
	ck_assert_ptr_null(bad_u);
	UT_RC(fab_topic_subscribe(fab, "m", 3, &bad_u), FAB_EINVAL);
	ck_assert_ptr_null(bad_u);

	/* NULL handles. */
	UT_RC(fab_topic_publish(NULL, b, 1, NULL), FAB_EINVAL);
	UT_RC(fab_sub_recv(NULL, b, sizeof b, NULL), FAB_EINVAL);
	ck_assert_uint_eq(fab_sub_dropped(NULL), 0);
	fab_topic_release(NULL);
	fab_sub_release(NULL);

	/* A second publisher handle. */
	fab_topic *t2 = NULL;
	UT_RC(fab_topic_open(fab, "m", &t2), 0);
	UT_RC(pub_u64(t2, 5), 0);
	ck_assert_int_eq(try_u64(u), 5);
	fab_topic_release(t2);
	fab_sub_release(u);
	fab_topic_release(t);
}
END_TEST

/* ---- one namespace with channels ------------------------------------------ */

START_TEST(t_namespace)
{
	fab_chan *c = NULL;
	fab_topic *t = NULL;
	fab_sub *u = NULL;
	fab_chan_opts co = topts(4, 8);
	UT_RC(fab_chan_create(fab, "c", &co, &c), 0);
	fab_chan_opts o = topts(4, 8);
	UT_RC(fab_topic_create(fab, "c", &o, &t), FAB_EEXIST);
	UT_RC(fab_topic_open(fab, "c", &t), FAB_EINVAL);
	ck_assert_ptr_nonnull(strstr(ut_msg(), "is a channel, not a topic"));
	UT_RC(fab_topic_subscribe(fab, "c", FAB_SUB_BLOCK, &u), FAB_EINVAL);
	ck_assert_ptr_null(t);
	ck_assert_ptr_null(u);
	/* The channel is untouched. */
	uint64_t x = 3;
	UT_RC(fab_try_send(c, &x, 8), 0);
	UT_RC(fab_try_recv(c, &x, 8), 8);
	fab_chan_release(c);

	t = mk("t", 4, 8);
	fab_chan *c2 = NULL;
	UT_RC(fab_chan_create(fab, "t", &co, &c2), FAB_EEXIST);
	/* fab_chan_open refuses a topic's segment (its magic). */
	int rc = fab_chan_open(fab, "t", FAB_RECV, &c2);
	ck_assert_msg(rc == FAB_ECORRUPT || rc == FAB_EINVAL, "fab_chan_open(topic) = %d (%s)", rc,
		      ut_name(rc));
	ck_assert_ptr_null(c2);
	/* The topic is untouched. */
	u = sub("t", FAB_SUB_BLOCK);
	UT_RC(pub_u64(t, 7), 0);
	ck_assert_int_eq(try_u64(u), 7);
	fab_sub_release(u);
	fab_topic_release(t);

	/* fab_chan_destroy removes a topic (one namespace). */
	UT_RC(fab_chan_destroy(fab, "t"), 0);
	ck_assert(!ut_shm_exists(fname, "t"));
	UT_RC(fab_topic_subscribe(fab, "t", FAB_SUB_BLOCK, &u), FAB_ENOENT);
	t = mk("t", 2, 8);
	fab_topic_release(t);
	UT_RC(fab_chan_destroy(fab, "c"), 0);
	UT_RC(fab_chan_open(fab, "c", FAB_RECV, &c), FAB_ENOENT);
}
END_TEST

/* ---- delivery ----------------------------------------------------------------- */

START_TEST(t_starts_at_next)
{
	fab_topic *t = mk("t", 4, 8);
	UT_RC(pub_u64(t, 1), 0);
	UT_RC(pub_u64(t, 2), 0);
	fab_sub *b = sub("t", FAB_SUB_BLOCK), *d = sub("t", FAB_SUB_DROP);
	/* Nothing published since: nothing to receive. */
	UT_RC(try_u64(b), FAB_ETIMEDOUT);
	UT_RC(try_u64(d), FAB_ETIMEDOUT);
	UT_RC(pub_u64(t, 3), 0);
	ck_assert_int_eq(try_u64(b), 3);
	ck_assert_int_eq(try_u64(d), 3);
	UT_RC(try_u64(b), FAB_ETIMEDOUT);
	/* A subscription made on a full ring of old messages starts empty too;
	 * the BLOCK subscriber above does not hold it back: it read them. */
	UT_RC(pub_u64(t, 4), 0);
	UT_RC(pub_u64(t, 5), 0);
	UT_RC(pub_u64(t, 6), 0);
	UT_RC(pub_u64(t, 7), 0);
	fab_sub *late = sub("t", FAB_SUB_DROP);
	UT_RC(try_u64(late), FAB_ETIMEDOUT);
	UT_RC(pub_try(t, 8), FAB_ETIMEDOUT); /* b has 4 unread: the ring is full for it */
	for (uint64_t i = 4; i <= 7; i++)
		ck_assert_int_eq(try_u64(b), (int64_t)i);
	UT_RC(pub_u64(t, 8), 0);
	ck_assert_int_eq(try_u64(late), 8);
	ck_assert_int_eq(try_u64(b), 8);
	ck_assert_uint_eq(fab_sub_dropped(b), 0);
	ck_assert_uint_eq(fab_sub_dropped(late), 0);
	/* d read 3 and then fell a whole ring (4 slots) behind: 8 overwrote
	 * 4, so it lost exactly that one and says so. */
	ck_assert_int_eq(try_u64(d), 5);
	ck_assert_uint_eq(fab_sub_dropped(d), 1);
	fab_sub_release(late);
	fab_sub_release(d);
	fab_sub_release(b);
	fab_topic_release(t);
}
END_TEST

/* Two subscribers (every policy pairing) each get every message, in order,
 * with their own bytes and length, over many laps and two publishers. */
START_TEST(t_two_subscribers_in_order)
{
	static const unsigned pol[3][2] = {{FAB_SUB_BLOCK, FAB_SUB_BLOCK},
					   {FAB_SUB_BLOCK, FAB_SUB_DROP},
					   {FAB_SUB_DROP, FAB_SUB_DROP}};
	fab_topic *t = mk("t", 5, 40);
	fab_topic *t2 = NULL;
	UT_RC(fab_topic_open(fab, "t", &t2), 0);
	fab_sub *a = sub("t", pol[_i][0]), *b = sub("t", pol[_i][1]);
	unsigned char m[40], r[64];
	uint32_t next_a = 0, next_b = 0, seq = 0;
	for (int round = 0; round < 200; round++) {
		/* Publish 1..5 messages (capacity 5: never more than a BLOCK
		 * subscriber allows), alternating publishers. */
		int k = 1 + round % 5;
		for (int j = 0; j < k; j++, seq++) {
			size_t len = 4 + seq % 37;
			memset(m, 0, sizeof m);
			memcpy(m, &seq, 4);
			for (size_t q = 4; q < len; q++)
				m[q] = (unsigned char)(seq * 7 + q);
			UT_RC(pub_nb(seq & 1 ? t2 : t, m, len), 0);
		}
		fab_sub *s2[2] = {a, b};
		uint32_t *next[2] = {&next_a, &next_b};
		for (int w = 0; w < 2; w++) {
			while (*next[w] < seq) {
				ssize_t n = recv_nb(s2[w], r, sizeof r);
				uint32_t got;
				ck_assert_int_eq(n, 4 + *next[w] % 37);
				memcpy(&got, r, 4);
				ck_assert_uint_eq(got, *next[w]);
				for (ssize_t q = 4; q < n; q++)
					ck_assert_uint_eq(r[q], (unsigned char)(got * 7 + q));
				(*next[w])++;
			}
		}
	}
	ck_assert_uint_eq(fab_sub_dropped(a), 0);
	ck_assert_uint_eq(fab_sub_dropped(b), 0);
	tview v = view("t");
	ck_assert_uint_eq(atomic_load(&v.h->published), seq);
	ck_assert_uint_eq(atomic_load(&v.h->dropped_total), 0);
	unview(&v);
	fab_sub_release(a);
	fab_sub_release(b);
	fab_topic_release(t2);
	fab_topic_release(t);
}
END_TEST

START_TEST(t_emsgsize_keeps)
{
	unsigned policy = _i ? FAB_SUB_DROP : FAB_SUB_BLOCK;
	fab_topic *t = mk("t", 4, 32);
	fab_sub *u = sub("t", policy);
	char b[32];
	UT_RC(pub_nb(t, "0123456789", 10), 0);
	UT_RC(pub_nb(t, "ab", 2), 0);
	memset(b, 'x', sizeof b);
	UT_RC(recv_nb(u, b, 4), FAB_EMSGSIZE);
	ck_assert_ptr_nonnull(strstr(ut_msg(), "10 bytes"));
	ck_assert_int_eq(b[0], 'x'); /* the buffer is untouched */
	UT_RC(recv_nb(u, b, 9), FAB_EMSGSIZE);
	UT_RC(recv_nb(u, b, 10), 10);
	ck_assert_int_eq(memcmp(b, "0123456789", 10), 0);
	UT_RC(recv_nb(u, b, 2), 2);
	ck_assert_int_eq(memcmp(b, "ab", 2), 0);
	ck_assert_uint_eq(fab_sub_dropped(u), 0);
	fab_sub_release(u);
	fab_topic_release(t);
}
END_TEST

START_TEST(t_recv_discard)
{
	unsigned policy = _i ? FAB_SUB_DROP : FAB_SUB_BLOCK;
	fab_topic *t = mk("t", 4, 32);
	fab_sub *u = sub("t", policy);
	UT_RC(pub_nb(t, "hello", 5), 0);
	UT_RC(pub_u64(t, 42), 0);
	UT_RC(recv_nb(u, NULL, 0), 5); /* Go's <-ch: received, discarded */
	ck_assert_int_eq(try_u64(u), 42);
	UT_RC(try_u64(u), FAB_ETIMEDOUT);
	fab_sub_release(u);
	fab_topic_release(t);
}
END_TEST

/*
 * DROP: a subscriber that falls a whole ring behind loses exactly the
 * positions that were overwritten, and fab_sub_dropped, its entry and the
 * topic's dropped_total all say how many.  nslots = 8 (capacity 8, and
 * capacity 5 rounds up to 8 slots for DROP retention).
 */
START_TEST(t_drop_counts_exactly)
{
	uint32_t cap = _i ? 5 : 8;
	fab_topic *t = mk("t", cap, 8);
	fab_sub *u = sub("t", FAB_SUB_DROP);
	tview v = view("t");
	ck_assert_uint_eq(v.h->nslots, 8);
	uint64_t seq = 0;
	/* Within the ring: nothing lost. */
	for (; seq < 8; seq++)
		UT_RC(pub_u64(t, seq), 0);
	for (uint64_t i = 0; i < 8; i++)
		ck_assert_int_eq(try_u64(u), (int64_t)i);
	ck_assert_uint_eq(fab_sub_dropped(u), 0);
	/* 8 + 5 unread: the oldest 5 are gone. */
	for (uint64_t i = 0; i < 13; i++, seq++)
		UT_RC(pub_u64(t, seq), 0);
	ck_assert_int_eq(try_u64(u), 8 + 5);
	ck_assert_uint_eq(fab_sub_dropped(u), 5);
	for (uint64_t i = 14; i < seq; i++)
		ck_assert_int_eq(try_u64(u), (int64_t)i);
	UT_RC(try_u64(u), FAB_ETIMEDOUT);
	/* Several laps: 3 * 8 + 3 unread, 2 * 8 + 3 lost. */
	uint64_t first = seq;
	for (uint64_t i = 0; i < 27; i++, seq++)
		UT_RC(pub_u64(t, seq), 0);
	ck_assert_int_eq(try_u64(u), (int64_t)(first + 19));
	ck_assert_uint_eq(fab_sub_dropped(u), 5 + 19);
	for (uint64_t i = first + 20; i < seq; i++)
		ck_assert_int_eq(try_u64(u), (int64_t)i);
	/* Lapped after reading a few of a lap. */
	for (uint64_t i = 0; i < 4; i++, seq++)
		UT_RC(pub_u64(t, seq), 0);
	ck_assert_int_eq(try_u64(u), (int64_t)(seq - 4));
	first = seq - 3; /* the next unread */
	for (uint64_t i = 0; i < 10; i++, seq++)
		UT_RC(pub_u64(t, seq), 0);
	/* 13 unread, 8 kept: 5 lost. */
	ck_assert_int_eq(try_u64(u), (int64_t)(first + 5));
	ck_assert_uint_eq(fab_sub_dropped(u), 24 + 5);
	fab_topic_sub *e = NULL;
	for (uint32_t i = 0; i < FAB_TOPIC_SUBS_MAX; i++)
		if (FAB_TSUB_STATE(atomic_load(&tsubs(&v)[i].sw)) == FAB_TSUB_ACTIVE)
			e = &tsubs(&v)[i];
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(atomic_load(&e->dropped), 29);
	ck_assert_uint_eq(atomic_load(&v.h->dropped_total), 29);
	ck_assert_uint_eq(FAB_TSUB_POLICY(atomic_load(&e->sw)), FAB_SUB_DROP);
	/* A second DROP subscriber that kept up lost nothing, and a DROP
	 * subscriber never held a publisher back (every publish above used a
	 * 10 s deadline and never waited). */
	unview(&v);
	fab_sub_release(u);
	fab_topic_release(t);
}
END_TEST

/* ---- BLOCK flow control ----------------------------------------------------- */

static int child_publish(void *arg)
{
	uint64_t val = (uint64_t)(uintptr_t)arg;
	fab_fabric *f = child_fabric(10);
	fab_topic *t = NULL;
	CHILD_RC(fab_topic_open(f, "t", &t), 0, 11);
	CHILD_RC(fab_topic_publish(t, &val, sizeof val, NULL), 0, 12);
	fab_topic_release(t);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_block_full)
{
	uint32_t cap = _i ? 3 : 4; /* exact, also when not a power of two */
	fab_topic *t = mk("t", cap, 8);
	fab_sub *u = sub("t", FAB_SUB_BLOCK);
	fab_sub *d = sub("t", FAB_SUB_DROP);
	for (uint64_t i = 0; i < cap; i++)
		UT_RC(pub_u64(t, i), 0);
	/* A full ring behind: publish waits, and the deadline ends it. */
	fab_ctx *x = deadline(30 * MS);
	uint64_t v = 99;
	int64_t t0 = ft_now_ns();
	UT_RC(fab_topic_publish(t, &v, 8, x), FAB_ETIMEDOUT);
	ck_assert_int_ge(ft_now_ns() - t0, 25 * MS);
	fab_ctx_release(x);
	/* An expired deadline tries once. */
	UT_RC(pub_try(t, 99), FAB_ETIMEDOUT);
	/* One read makes room for exactly one. */
	ck_assert_int_eq(try_u64(u), 0);
	UT_RC(pub_try(t, cap), 0);
	UT_RC(pub_try(t, 99), FAB_ETIMEDOUT);

	/* A publisher process blocks (no context) until the subscriber reads. */
	tview tv = view("t");
	pid_t pid = ft_spawn(child_publish, (void *)(uintptr_t)1000);
	wait_gauge(&tv.h->space_waiters, 1);
	ck_assert_int_eq(try_u64(u), 1);
	UT_CHILD_OK(pid);
	for (uint64_t i = 2; i <= cap; i++)
		ck_assert_int_eq(try_u64(u), (int64_t)i);
	ck_assert_int_eq(try_u64(u), 1000);
	UT_RC(try_u64(u), FAB_ETIMEDOUT);

	/* Releasing the BLOCK subscriber lets a blocked publisher go on. */
	for (uint64_t i = 0; i < cap; i++)
		UT_RC(pub_try(t, i), 0);
	pid = ft_spawn(child_publish, (void *)(uintptr_t)2000);
	wait_gauge(&tv.h->space_waiters, 1);
	fab_sub_release(u);
	UT_CHILD_OK(pid);
	/* Only DROP left: publishers never wait. */
	for (uint64_t i = 0; i < 10 * cap; i++)
		UT_RC(pub_try(t, i), 0);
	ck_assert_int_eq(try_u64(d), (int64_t)(10 * cap - tv.h->nslots));
	ck_assert_uint_gt(fab_sub_dropped(d), 0);
	ck_assert_uint_ge(atomic_load(&tv.h->futex_waits), 2);
	ck_assert_uint_ge(atomic_load(&tv.h->futex_wakes), 2);
	ck_assert_uint_eq(atomic_load(&tv.h->space_waiters), 0);
	unview(&tv);
	fab_sub_release(d);
	fab_topic_release(t);
}
END_TEST

/* ---- cancellation -------------------------------------------------------------- */

static int child_recv_canceled(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(10);
	fab_sub *u = NULL;
	fab_ctx *x = NULL;
	uint64_t v;
	CHILD_RC(fab_topic_subscribe(f, "t", FAB_SUB_BLOCK, &u), 0, 11);
	CHILD_RC(fab_ctx_open(f, "cx", &x), 0, 12);
	CHILD_RC(fab_sub_recv(u, &v, sizeof v, x), FAB_ECANCELED, 13);
	fab_ctx_release(x);
	fab_sub_release(u);
	fab_fabric_close(f);
	return 0;
}

static int child_publish_canceled(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(20);
	fab_topic *t = NULL;
	fab_ctx *x = NULL;
	uint64_t v = 77;
	CHILD_RC(fab_topic_open(f, "t", &t), 0, 21);
	CHILD_RC(fab_ctx_open(f, "cx", &x), 0, 22);
	CHILD_RC(fab_topic_publish(t, &v, sizeof v, x), FAB_ECANCELED, 23);
	fab_ctx_release(x);
	fab_topic_release(t);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_cancel_wakes)
{
	fab_topic *t = mk("t", 2, 8);
	fab_ctx *cx = NULL;
	UT_RC(fab_ctx_create(fab, "cx", NULL, &cx), 0);
	tview tv = view("t");
	if (_i == 0) {
		/* A subscriber asleep in fab_sub_recv. */
		pid_t pid = ft_spawn(child_recv_canceled, NULL);
		ck_assert(wait_gauge(&tv.h->data_waiters, 1));
		UT_RC(fab_ctx_cancel(cx, 5), 0);
		UT_CHILD_OK(pid);
		ck_assert_uint_eq(atomic_load(&tv.h->data_waiters), 0);
	} else {
		/* A publisher asleep behind a BLOCK subscriber. */
		fab_sub *u = sub("t", FAB_SUB_BLOCK);
		UT_RC(pub_u64(t, 1), 0);
		UT_RC(pub_u64(t, 2), 0);
		pid_t pid = ft_spawn(child_publish_canceled, NULL);
		ck_assert(wait_gauge(&tv.h->space_waiters, 1));
		UT_RC(fab_ctx_cancel(cx, 5), 0);
		UT_CHILD_OK(pid);
		/* The canceled message was not published. */
		ck_assert_int_eq(try_u64(u), 1);
		ck_assert_int_eq(try_u64(u), 2);
		UT_RC(try_u64(u), FAB_ETIMEDOUT);
		ck_assert_uint_eq(atomic_load(&tv.h->published), 2);
		fab_sub_release(u);
	}
	unview(&tv);
	fab_ctx_release(cx);
	fab_topic_release(t);
}
END_TEST

/* ---- fork ----------------------------------------------------------------------- */

static fab_topic *fk_t;
static fab_sub *fk_u;

static int child_inherited(void *arg)
{
	(void)arg;
	alarm(20);
	uint64_t v = 5;
	fab_topic *t = NULL;
	fab_sub *u = NULL;
	fab_chan_opts o = topts(4, 8);
	CHILD_RC(fab_topic_publish(fk_t, &v, 8, NULL), FAB_EINVAL, 10);
	CHILD_RC(fab_sub_recv(fk_u, &v, 8, NULL), FAB_EINVAL, 11);
	CHILD_CHECK(fab_sub_dropped(fk_u) == 0, 12);
	CHILD_RC(fab_topic_open(fab, "t", &t), FAB_EINVAL, 13);
	CHILD_RC(fab_topic_create(fab, "t2", &o, &t), FAB_EINVAL, 14);
	CHILD_RC(fab_topic_subscribe(fab, "t", FAB_SUB_DROP, &u), FAB_EINVAL, 15);
	/* Releasing them only frees the child's memory. */
	fab_topic_release(fk_t);
	fab_sub_release(fk_u);
	fab_fabric_close(fab);
	/* The child uses handles of its own. */
	fab_fabric *f = child_fabric(20);
	CHILD_RC(fab_topic_open(f, "t", &t), 0, 21);
	CHILD_RC(fab_topic_subscribe(f, "t", FAB_SUB_DROP, &u), 0, 22);
	v = 6;
	CHILD_RC(fab_topic_publish(t, &v, 8, NULL), 0, 23);
	CHILD_RC(fab_sub_recv(u, &v, 8, NULL), 8, 24);
	CHILD_CHECK(v == 6, 25);
	fab_sub_release(u);
	fab_topic_release(t);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_fork_inherited)
{
	fk_t = mk("t", 4, 8);
	fk_u = sub("t", FAB_SUB_BLOCK);
	UT_RC(pub_u64(fk_t, 1), 0);
	tview tv = view("t");
	ck_assert_int_eq(active_subs(&tv), 1);
	UT_CHILD_OK(ft_spawn(child_inherited, NULL));
	/* The parent's subscription is as it was (the child's own came and
	 * went); it sees the child's message too. */
	ck_assert_int_eq(active_subs(&tv), 1);
	ck_assert(!ut_shm_exists(fname, "t2"));
	ck_assert_int_eq(try_u64(fk_u), 1);
	ck_assert_int_eq(try_u64(fk_u), 6);
	UT_RC(pub_u64(fk_t, 2), 0);
	ck_assert_int_eq(try_u64(fk_u), 2);
	unview(&tv);
	fab_sub_release(fk_u);
	fab_topic_release(fk_t);
}
END_TEST

/* ---- corrupted segments --------------------------------------------------------- */

/* Scribble one field of a fresh topic's header; opening and subscribing
 * must both report `want`. */
static void corrupt_case(int k, int want)
{
	char name[16];
	snprintf(name, sizeof name, "c%d", k);
	fab_topic *t = mk(name, 8, 16);
	fab_topic_release(t);
	tview v = view(name);
	switch (k) {
	case 0:
		v.h->magic ^= 1;
		break;
	case 1:
		atomic_store(&v.h->version, (2u << 16) | 0u);
		break;
	case 2:
		v.h->nslots = 16;
		break;
	case 3:
		v.h->hdr_size = 128;
		break;
	case 4:
		v.h->capacity = 0;
		break;
	case 5:
		v.h->total_size += 4096;
		break;
	case 6:
		v.h->slot_size = 8;
		break;
	case 7:
		v.h->msg_size = FAB_MSG_SIZE_MAX + 1;
		break;
	case 8:
		v.h->sub_max = 1000;
		break;
	case 9:
		v.h->slots_off = 4096;
		break;
	case 10: { /* the file shrinks under the header's sizes */
		char p[256];
		snprintf(p, sizeof p, "/dev/shm/fab.%s.%s", fname, name);
		ck_assert_int_eq(truncate(p, FAB_TOPIC_SLOTS_OFF), 0);
		break;
	}
	case 11: { /* smaller than a header */
		char p[256];
		snprintf(p, sizeof p, "/dev/shm/fab.%s.%s", fname, name);
		ck_assert_int_eq(truncate(p, 100), 0);
		break;
	}
	}
	unview(&v);
	fab_sub *u = NULL;
	t = NULL;
	int rc = fab_topic_open(fab, name, &t);
	ck_assert_msg(rc == want, "case %d: open %d (%s), want %s", k, rc, ut_name(rc),
		      ut_name(want));
	rc = fab_topic_subscribe(fab, name, FAB_SUB_BLOCK, &u);
	ck_assert_msg(rc == want, "case %d: subscribe %d (%s), want %s", k, rc, ut_name(rc),
		      ut_name(want));
	ck_assert_ptr_null(t);
	ck_assert_ptr_null(u);
	UT_RC(fab_chan_destroy(fab, name), 0);
}

START_TEST(t_corrupt_header)
{
	for (int k = 0; k <= 11; k++)
		corrupt_case(k, k == 1 ? FAB_EVERSION : FAB_ECORRUPT);
}
END_TEST

/* Scribbled slots and entries: error codes and progress, never a crash. */
START_TEST(t_corrupt_slots)
{
	fab_topic *t = mk("t", 4, 16);
	fab_sub *u = sub("t", _i ? FAB_SUB_DROP : FAB_SUB_BLOCK);
	tview v = view("t");
	char b[16];
	for (uint64_t i = 0; i < 3; i++)
		UT_RC(pub_u64(t, i), 0);
	/* A length beyond msg_size: that message is reported and skipped. */
	tslot(&v, 0)->len = 1u << 30;
	UT_RC(recv_nb(u, b, sizeof b), FAB_ECORRUPT);
	ck_assert_ptr_nonnull(strstr(ut_msg(), "length"));
	ck_assert_int_eq(try_u64(u), 1);
	/* A state word with an unknown state. */
	uint64_t w = atomic_load(&tslot(&v, 2)->state);
	atomic_store(&tslot(&v, 2)->state, (w & ~(7ULL << 16)) | (7ULL << 16));
	UT_RC(recv_nb(u, b, sizeof b), FAB_ECORRUPT);
	/* A position of another slot. */
	UT_RC(pub_u64(t, 3), 0);
	w = atomic_load(&tslot(&v, 3)->state);
	atomic_store(&tslot(&v, 3)->state, FAB_SW_MAKE(FAB_SW_SEQ(w) + 1, FAB_SLOT_FULL, 0));
	UT_RC(recv_nb(u, b, sizeof b), FAB_ECORRUPT);
	/* The ring goes on after the damage. */
	for (uint64_t i = 0; i < 8; i++) {
		int rc = pub_try(t, 100 + i);
		ck_assert_msg(rc == 0 || rc == FAB_ECORRUPT || rc == FAB_ETIMEDOUT, "publish: %d",
			      rc);
		int64_t r = try_u64(u);
		ck_assert_msg(r >= 0 || r == FAB_ECORRUPT || r == FAB_ETIMEDOUT, "recv: %lld",
			      (long long)r);
	}
	/* A scribbled high-water mark and cursor are bounded. */
	atomic_store(&v.h->sub_hiwat, 0xffffffffu);
	atomic_fetch_add(&v.h->sub_gen, 1);
	for (uint32_t i = 0; i < FAB_TOPIC_SUBS_MAX; i++)
		atomic_store(&tsubs(&v)[i].cursor, 0x123456789abcdefULL);
	int rc = pub_try(t, 5);
	ck_assert_msg(rc == 0 || rc == FAB_ETIMEDOUT || rc == FAB_ECORRUPT, "publish: %d", rc);
	unview(&v);
	fab_sub_release(u);
	fab_topic_release(t);
}
END_TEST

/* ---- dead processes ---------------------------------------------------------- */

/* A publisher killed between claim and commit: the child claims the next
 * position the way fab_topic_publish does (CAS to WRITING(p, its tag), move
 * the tail hint) and exits without committing. */
static int child_claim_and_die(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(10);
	fab_topic *t = NULL;
	CHILD_RC(fab_topic_open(f, "t", &t), 0, 11);
	uint32_t tag = child_tag(12);
	size_t sz;
	fab_topic_hdr *h = seg_map(fname, "t", &sz);
	CHILD_CHECK(h != NULL, 14);
	tview v = {h, sz};
	uint64_t p = atomic_load(&h->tail);
	fab_mslot *s = tslot(&v, p);
	uint64_t w = atomic_load(&s->state);
	CHILD_CHECK(FAB_SW_STATE(w) == FAB_SLOT_FREE || FAB_SW_STATE(w) == FAB_SLOT_FULL, 15);
	CHILD_CHECK(
	    atomic_compare_exchange_strong(&s->state, &w, FAB_SW_MAKE(p, FAB_SLOT_WRITING, tag)),
	    16);
	atomic_compare_exchange_strong(&h->tail, &p, p + 1);
	memset(s + 1, 0xee, 8); /* half a message */
	_exit(0);               /* SIGKILL here: no release, nothing else */
}

START_TEST(t_dead_publisher)
{
	fab_topic *t = mk("t", 4, 8);
	fab_sub *u = sub("t", FAB_SUB_BLOCK);
	tview v = view("t");
	UT_RC(pub_u64(t, 1), 0);
	UT_CHILD_OK(ft_spawn(child_claim_and_die, NULL));
	uint64_t dead_pos = atomic_load(&v.h->tail) - 1;
	ck_assert_uint_eq(FAB_SW_STATE(atomic_load(&tslot(&v, dead_pos)->state)), FAB_SLOT_WRITING);
	UT_RC(pub_u64(t, 2), 0);
	ck_assert_int_eq(try_u64(u), 1);
	if (_i == 0) {
		/* The subscriber stuck at the dead claim polls its owner's
		 * liveness and turns the slot into SKIP by itself. */
		ck_assert_int_eq(recv_nb(u, &(uint64_t){0}, 8), 8);
	} else {
		/* fab_fabric_recover does it for every topic. */
		ck_assert_int_ge(fab_fabric_recover(fab), 1);
		ck_assert_uint_eq(FAB_SW_STATE(atomic_load(&tslot(&v, dead_pos)->state)),
				  FAB_SLOT_SKIP);
		ck_assert_int_eq(try_u64(u), 2);
	}
	ck_assert_uint_eq(atomic_load(&v.h->recovered), 1);
	ck_assert_uint_eq(fab_sub_dropped(u), 0);
	UT_RC(try_u64(u), FAB_ETIMEDOUT);
	/* A lap later the publisher reuses the repaired slot. */
	for (uint64_t i = 0; i < 8; i++) {
		UT_RC(pub_u64(t, 10 + i), 0);
		ck_assert_int_eq(try_u64(u), (int64_t)(10 + i));
	}
	unview(&v);
	fab_sub_release(u);
	fab_topic_release(t);
}
END_TEST

/* A thread that publishes every 200 us until told to stop (or 5 s). */
struct busy {
	fab_topic *t;
	_Atomic int stop;
	uint64_t n;
};

static void *busy_publisher(void *arg)
{
	struct busy *b = arg;
	int64_t end = ft_now_ns() + 5 * SEC;
	while (!atomic_load(&b->stop) && ft_now_ns() < end) {
		if (pub_try(b->t, 1000 + b->n) == 0)
			b->n++;
		usleep(200);
	}
	return NULL;
}

/* Regression: a subscriber stuck at a dead claim while later positions keep
 * being committed is woken by every commit; its liveness poll must still
 * come due (the poll deadline is not pushed back by each wake-up). */
START_TEST(t_dead_publisher_busy)
{
	/* A lap (65536 positions) takes longer than the test: no publisher
	 * meets the dead claim, only the subscriber can repair it. */
	fab_topic *t = mk("t", 1u << 16, 8);
	fab_sub *u = sub("t", FAB_SUB_DROP);
	UT_CHILD_OK(ft_spawn(child_claim_and_die, NULL));
	struct busy b = {.n = 0};
	UT_RC(fab_topic_open(fab, "t", &b.t), 0);
	atomic_init(&b.stop, 0);
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, busy_publisher, &b), 0);
	fab_ctx *x = deadline(4 * SEC);
	uint64_t v = 0;
	ssize_t r = fab_sub_recv(u, &v, sizeof v, x);
	atomic_store(&b.stop, 1);
	pthread_join(th, NULL);
	fab_ctx_release(x);
	UT_RC(r, 8);
	ck_assert_uint_eq(v, 1000);
	ck_assert_uint_eq(fab_sub_dropped(u), 0);
	fab_topic_release(b.t);
	fab_sub_release(u);
	fab_topic_release(t);
}
END_TEST

/* No subscriber: the dead claim is met a lap later by a publisher, which
 * repairs it after polling the owner. */
START_TEST(t_dead_publisher_lap)
{
	fab_topic *t = mk("t", 4, 8);
	tview v = view("t");
	UT_CHILD_OK(ft_spawn(child_claim_and_die, NULL));
	for (uint64_t i = 0; i < 12; i++)
		UT_RC(pub_u64(t, i), 0);
	ck_assert_uint_eq(atomic_load(&v.h->recovered), 1);
	unview(&v);
	fab_topic_release(t);
}
END_TEST

static int child_subscribe_and_die(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(10);
	fab_sub *u = NULL;
	CHILD_RC(fab_topic_subscribe(f, "t", FAB_SUB_BLOCK, &u), 0, 11);
	_exit(0); /* as if SIGKILLed: the entry stays ACTIVE */
}

START_TEST(t_dead_subscriber)
{
	fab_topic *t = mk("t", 4, 8);
	tview v = view("t");
	UT_CHILD_OK(ft_spawn(child_subscribe_and_die, NULL));
	ck_assert_int_eq(active_subs(&v), 1);
	if (_i == 0) {
		/* A publisher held back by it polls its liveness and prunes it. */
		for (uint64_t i = 0; i < 12; i++)
			UT_RC(pub_u64(t, i), 0);
	} else {
		ck_assert_int_ge(fab_fabric_recover(fab), 1);
		ck_assert_int_eq(active_subs(&v), 0);
		for (uint64_t i = 0; i < 12; i++)
			UT_RC(pub_try(t, i), 0);
	}
	ck_assert_int_eq(active_subs(&v), 0);
	ck_assert_uint_eq(atomic_load(&v.h->pruned), 1);
	/* Recovery is idempotent. */
	fab_fabric_recover(fab);
	ck_assert_uint_eq(atomic_load(&v.h->pruned), 1);
	unview(&v);
	fab_topic_release(t);
}
END_TEST

/* A topic whose creator died after its segment was complete but before
 * the registry entry went LIVE is kept by recovery; one whose segment never
 * got a version is removed. */
START_TEST(t_recover_creating)
{
	fab_topic *t = mk("t", 4, 8);
	fab_topic_release(t);
	size_t sz;
	uint8_t *ctl = seg_map(fname, NULL, &sz);
	ck_assert_ptr_nonnull(ctl);
	fab_chan_ent *ents = (fab_chan_ent *)(ctl + FAB_CTL_CHANS_OFF);
	fab_chan_ent *e = NULL;
	for (uint32_t i = 0; i < FAB_MAX_CHANS; i++)
		if (atomic_load(&ents[i].state) == FAB_ENT_LIVE && strcmp(ents[i].name, "t") == 0)
			e = &ents[i];
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->type, FAB_OBJ_TOPIC);
	/* Owner: a tag that names nobody. */
	atomic_store(&e->owner, FAB_TAG_MAKE(1023, 7));
	atomic_store(&e->state, FAB_ENT_CREATING);
	ck_assert_int_ge(fab_fabric_recover(fab), 1);
	ck_assert_uint_eq(atomic_load(&e->state), FAB_ENT_LIVE);
	ck_assert(ut_shm_exists(fname, "t"));
	/* Again, with the version word never published. */
	tview v = view("t");
	atomic_store(&v.h->version, 0);
	unview(&v);
	atomic_store(&e->state, FAB_ENT_CREATING);
	ck_assert_int_ge(fab_fabric_recover(fab), 1);
	ck_assert_uint_eq(atomic_load(&e->state), FAB_ENT_FREE);
	ck_assert(!ut_shm_exists(fname, "t"));
	munmap(ctl, sz);
}
END_TEST

/* ---- anomalies -------------------------------------------------------------------- */

/* Positions across 2^45 (the slot word's field) and 2^64. */
START_TEST(t_positions_wrap)
{
	static const uint64_t starts[3] = {(1ULL << 45) - 5, UINT64_MAX - 5, (1ULL << 32) - 3};
	char v[32];
	snprintf(v, sizeof v, "%llu", (unsigned long long)starts[_i]);
	setenv("FAB_TEST_START_POS", v, 1);
	fab_topic *t = mk("t", 4, 8);
	unsetenv("FAB_TEST_START_POS");
	tview tv = view("t");
	ck_assert_uint_eq(atomic_load(&tv.h->tail), starts[_i]);
	unview(&tv);
	fab_sub *b = sub("t", FAB_SUB_BLOCK), *d = sub("t", FAB_SUB_DROP);
	uint64_t seq = 0;
	for (int round = 0; round < 8; round++) {
		for (int j = 0; j < 3; j++, seq++)
			UT_RC(pub_u64(t, seq), 0);
		for (uint64_t i = seq - 3; i < seq; i++) {
			ck_assert_int_eq(try_u64(b), (int64_t)i);
			ck_assert_int_eq(try_u64(d), (int64_t)i);
		}
	}
	/* Lap the DROP subscriber across the boundary too. */
	fab_sub_release(b);
	for (int j = 0; j < 7; j++, seq++)
		UT_RC(pub_u64(t, seq), 0);
	ck_assert_int_eq(try_u64(d), (int64_t)(seq - 4));
	ck_assert_uint_eq(fab_sub_dropped(d), 3);
	fab_sub_release(d);
	fab_topic_release(t);
}
END_TEST

START_TEST(t_sub_table_full)
{
	fab_topic *t = mk("t", 4, 8);
	fab_sub *u[FAB_TOPIC_SUBS_MAX];
	for (uint32_t i = 0; i < FAB_TOPIC_SUBS_MAX; i++)
		u[i] = sub("t", i & 1 ? FAB_SUB_BLOCK : FAB_SUB_DROP);
	fab_sub *x = NULL;
	UT_RC(fab_topic_subscribe(fab, "t", FAB_SUB_DROP, &x), FAB_ENOMEM);
	ck_assert_ptr_nonnull(strstr(ut_msg(), "subscriber table full"));
	fab_sub_release(u[5]);
	u[5] = sub("t", FAB_SUB_BLOCK);
	UT_RC(pub_u64(t, 9), 0);
	for (uint32_t i = 0; i < FAB_TOPIC_SUBS_MAX; i++) {
		ck_assert_int_eq(try_u64(u[i]), 9);
		fab_sub_release(u[i]);
	}
	fab_topic_release(t);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------ */

static TCase *tcase(Suite *s, const char *name, int timeout)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, timeout);
	tcase_add_checked_fixture(tc, ut_fabric_setup, ut_fabric_teardown);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *topic_suite(void)
{
	Suite *s = suite_create("topic");
	TCase *tc = tcase(s, "basic", 30);
	tcase_add_test(tc, t_args);
	tcase_add_test(tc, t_namespace);
	tcase_add_test(tc, t_starts_at_next);
	tcase_add_loop_test(tc, t_two_subscribers_in_order, 0, 3);
	tcase_add_loop_test(tc, t_emsgsize_keeps, 0, 2);
	tcase_add_loop_test(tc, t_recv_discard, 0, 2);
	tcase_add_loop_test(tc, t_drop_counts_exactly, 0, 2);

	tc = tcase(s, "block", 30);
	tcase_add_loop_test(tc, t_block_full, 0, 2);
	tcase_add_loop_test(tc, t_cancel_wakes, 0, 2);
	tcase_add_test(tc, t_fork_inherited);

	tc = tcase(s, "damage", 30);
	tcase_add_test(tc, t_corrupt_header);
	tcase_add_loop_test(tc, t_corrupt_slots, 0, 2);
	tcase_add_loop_test(tc, t_dead_publisher, 0, 2);
	tcase_add_test(tc, t_dead_publisher_lap);
	tcase_add_test(tc, t_dead_publisher_busy);
	tcase_add_loop_test(tc, t_dead_subscriber, 0, 2);
	tcase_add_test(tc, t_recover_creating);
	tcase_add_loop_test(tc, t_positions_wrap, 0, 3);
	tcase_add_test(tc, t_sub_table_full);
	return s;
}

int main(void)
{
	return ut_main(topic_suite(), "topic");
}
