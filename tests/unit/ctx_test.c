/*
 * ctx_test.c - unit suite for contexts: fab_ctx_create/open/cancel/err/
 * reason/wait/release and fab_ctx_with_timeout, and how blocking channel
 * calls end under them.
 *
 * What a user relies on: a context is shared by name through the fabric;
 * cancelling it from any process wakes every process blocked under it (or
 * under a local deadline derived from it) with FAB_ECANCELED; a deadline
 * ends a blocked call with FAB_ETIMEDOUT; a cancelled context never comes
 * back.  Assertions check codes, never elapsed times.
 */
#include "unit.h"

#define MS 1000000LL
#define SEC 1000000000LL

static fab_ctx *ctx_mk(const char *name)
{
	fab_ctx *c = NULL;
	UT_RC(fab_ctx_create(fab, name, NULL, &c), 0);
	ck_assert_ptr_nonnull(c);
	return c;
}

static fab_chan *chan_mk(const char *name, uint32_t kind, uint32_t cap)
{
	fab_chan_opts o = ut_opts(kind, cap, 8);
	fab_chan *c = NULL;
	UT_RC(fab_chan_create(fab, name, &o, &c), 0);
	return c;
}

/* In a child: its own fabric handle. */
static fab_fabric *child_fabric(int code)
{
	fab_fabric *f = NULL;
	alarm(20); /* a hang is reported as 128+SIGALRM */
	CHILD_RC(fab_fabric_open(fname, 0, &f), 0, code);
	return f;
}

/* ---- create / open ---------------------------------------------------- */

START_TEST(t_create_open)
{
	fab_ctx *c = ctx_mk("c");
	ck_assert_int_eq(fab_ctx_err(c), 0);
	fab_ctx *d = NULL;
	UT_RC(fab_ctx_create(fab, "c", NULL, &d), FAB_EEXIST);
	ck_assert_msg(fab_errmsg()[0] != '\0', "no detail for FAB_EEXIST");
	UT_RC(fab_ctx_open(fab, "missing", &d), FAB_ENOENT);
	ck_assert_msg(fab_errmsg()[0] != '\0', "no detail for FAB_ENOENT");
	UT_RC(fab_ctx_open(fab, "c", &d), 0);
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(fab_ctx_err(d), 0);
	fab_ctx_release(d);
	fab_ctx_release(c);
	/* Still there after every handle is released. */
	UT_RC(fab_ctx_open(fab, "c", &d), 0);
	fab_ctx_release(d);
	UT_RC(fab_ctx_create(fab, "c", NULL, &d), FAB_EEXIST);
	/* Bad arguments. */
	UT_RC(fab_ctx_create(NULL, "x", NULL, &d), FAB_EINVAL);
	UT_RC(fab_ctx_create(fab, NULL, NULL, &d), FAB_EINVAL);
	UT_RC(fab_ctx_create(fab, "", NULL, &d), FAB_EINVAL);
	UT_RC(fab_ctx_create(fab, "x", NULL, NULL), FAB_EINVAL);
	UT_RC(fab_ctx_open(NULL, "c", &d), FAB_EINVAL);
	UT_RC(fab_ctx_open(fab, NULL, &d), FAB_EINVAL);
	UT_RC(fab_ctx_open(fab, "c", NULL), FAB_EINVAL);
	UT_RC(fab_ctx_open(fab, "x", &d), FAB_ENOENT);
}
END_TEST

/* A parent must be a context of the same fabric: of another handle of it,
 * yes; of a fabric destroyed and made again under the same name, no (it
 * was taken by name and linked the child to whatever context of the new
 * fabric sat at the parent's index, found by a user trial). */
START_TEST(t_parent_same_fabric)
{
	const char *name = ut_fabric_name();
	fab_fabric *f1 = NULL, *f1b = NULL, *f2 = NULL;
	UT_RC(fab_fabric_open(name, FAB_CREATE, &f1), 0);
	UT_RC(fab_fabric_open(name, 0, &f1b), 0);
	fab_ctx *p = NULL, *c = NULL, *u = NULL;
	UT_RC(fab_ctx_create(f1, "p", NULL, &p), 0);
	UT_RC(fab_ctx_create(f1b, "c", p, &c), 0); /* another handle, same fabric */
	fab_ctx_release(c);
	UT_RC(fab_ctx_create(fab, "c2", p, &c), FAB_EINVAL); /* another fabric */
	ck_assert_ptr_null(c);
	fab_fabric_close(f1b);
	UT_RC(fab_fabric_destroy(name), 0);
	UT_RC(fab_fabric_open(name, FAB_CREATE, &f2), 0);
	UT_RC(fab_ctx_create(f2, "unrelated", NULL, &u), 0);
	UT_RC(fab_ctx_create(f2, "c", p, &c), FAB_EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(fab_errmsg(), "destroyed"), "detail: %s", fab_errmsg());
	fab_ctx_release(u);
	fab_ctx_release(p);
	fab_fabric_close(f1);
	fab_fabric_close(f2);
	UT_RC(fab_fabric_destroy(name), 0);
}
END_TEST

START_TEST(t_null_handles)
{
	fab_ctx *d = NULL;
	UT_RC(fab_ctx_cancel(NULL, 1), FAB_EINVAL);
	UT_RC(fab_ctx_err(NULL), FAB_EINVAL);
	UT_RC(fab_ctx_reason(NULL), FAB_EINVAL);
	UT_RC(fab_ctx_with_timeout(NULL, SEC, NULL), FAB_EINVAL);
	fab_ctx_release(NULL);
	/* fab_ctx_wait(NULL) must return, not wait forever. */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		alarm(10);
		CHILD_RC(fab_ctx_wait(NULL), FAB_EINVAL, 10);
		_exit(0);
	}
	UT_CHILD_OK(pid);
	(void)d;
}
END_TEST

/* ---- cancel ----------------------------------------------------------- */

START_TEST(t_cancel)
{
	fab_ctx *c = ctx_mk("c");
	fab_ctx *o = NULL;
	UT_RC(fab_ctx_open(fab, "c", &o), 0);
	UT_RC(fab_ctx_cancel(c, 42), 0);
	ck_assert_int_eq(fab_ctx_err(c), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(c), 42);
	/* Seen through every handle, opened before or after. */
	ck_assert_int_eq(fab_ctx_err(o), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(o), 42);
	fab_ctx *p = NULL;
	UT_RC(fab_ctx_open(fab, "c", &p), 0);
	ck_assert_int_eq(fab_ctx_err(p), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(p), 42);
	/* Never un-cancels; the first reason stays (Go's WithCancelCause). */
	int rc = fab_ctx_cancel(o, 7);
	ck_assert_msg(rc == 0 || rc == FAB_ECANCELED, "second cancel = %d (%s)", rc, ut_name(rc));
	ck_assert_int_eq(fab_ctx_err(c), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(c), 42);
	ck_assert_int_eq(fab_ctx_reason(p), 42);
	/* fab_ctx_wait on a cancelled context returns at once. */
	UT_RC(fab_ctx_wait(c), FAB_ECANCELED);
	fab_ctx_release(o);
	fab_ctx_release(p);
	fab_ctx_release(c);
	/* Released and reopened: still cancelled. */
	UT_RC(fab_ctx_open(fab, "c", &c), 0);
	ck_assert_int_eq(fab_ctx_err(c), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(c), 42);
	fab_ctx_release(c);
}
END_TEST

START_TEST(t_cancel_reasons)
{
	/* Any int is a reason, including 0 and negatives; contexts are
	 * independent of each other. */
	int reasons[] = {0, 1, -1, 12345, INT32_MIN, INT32_MAX};
	for (int i = 0; i < 6; i++) {
		char n[16];
		snprintf(n, sizeof n, "r%d", i);
		fab_ctx *c = ctx_mk(n);
		UT_RC(fab_ctx_cancel(c, reasons[i]), 0);
		ck_assert_int_eq(fab_ctx_err(c), FAB_ECANCELED);
		ck_assert_int_eq(fab_ctx_reason(c), reasons[i]);
		fab_ctx_release(c);
	}
	fab_ctx *c = ctx_mk("untouched");
	ck_assert_int_eq(fab_ctx_err(c), 0);
	fab_ctx_release(c);
}
END_TEST

static int child_cancel(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(10);
	fab_ctx *c = NULL;
	CHILD_RC(fab_ctx_open(f, "c", &c), 0, 11);
	CHILD_RC(fab_ctx_err(c), 0, 12);
	ut_sleep_ms(20); /* give the parent a chance to wait first */
	CHILD_RC(fab_ctx_cancel(c, 99), 0, 13);
	fab_ctx_release(c);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_cancel_from_other_process)
{
	fab_ctx *c = ctx_mk("c");
	pid_t pid = ft_spawn(child_cancel, NULL);
	UT_RC(fab_ctx_wait(c), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_err(c), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(c), 99);
	UT_CHILD_OK(pid);
	fab_ctx_release(c);
}
END_TEST

static int child_wait(void *arg)
{
	(void)arg;
	fab_fabric *f = child_fabric(10);
	fab_ctx *c = NULL;
	CHILD_RC(fab_ctx_open(f, "c", &c), 0, 11);
	CHILD_RC(fab_ctx_wait(c), FAB_ECANCELED, 12);
	CHILD_RC(fab_ctx_err(c), FAB_ECANCELED, 13);
	CHILD_RC(fab_ctx_reason(c), 5, 14);
	fab_ctx_release(c);
	return 0;
}

START_TEST(t_wait_in_other_processes)
{
	fab_ctx *c = ctx_mk("c");
	pid_t pids[3];
	for (int i = 0; i < 3; i++)
		pids[i] = ft_spawn(child_wait, NULL);
	ut_sleep_ms(50); /* a chance for them to wait; not asserted */
	UT_RC(fab_ctx_cancel(c, 5), 0);
	for (int i = 0; i < 3; i++)
		UT_CHILD_OK(pids[i]);
	fab_ctx_release(c);
}
END_TEST

/* ---- deadlines -------------------------------------------------------- */

START_TEST(t_timeout_bare)
{
	fab_chan *c = chan_mk("e", UT_KIND, 2);
	uint64_t v = 0;
	fab_ctx *d = NULL;
	UT_RC(fab_ctx_with_timeout(NULL, 20 * MS, &d), 0);
	ck_assert_ptr_nonnull(d);
	UT_RC(fab_recv(c, &v, sizeof v, d), FAB_ETIMEDOUT);
	ck_assert_msg(fab_errmsg()[0] != '\0', "no detail for FAB_ETIMEDOUT");
	/* Once the deadline passed the context says so, and stays so. */
	UT_RC(fab_ctx_err(d), FAB_ETIMEDOUT);
	UT_RC(fab_ctx_wait(d), FAB_ETIMEDOUT);
	UT_RC(fab_recv(c, &v, sizeof v, d), FAB_ETIMEDOUT);
	fab_ctx_release(d);

	/* A full channel: send times out; the message was not sent. */
	UT_RC(fab_try_send(c, &v, 8), 0);
	UT_RC(fab_try_send(c, &v, 8), 0);
	UT_RC(fab_ctx_with_timeout(NULL, 20 * MS, &d), 0);
	UT_RC(fab_send(c, &v, sizeof v, d), FAB_ETIMEDOUT);
	fab_ctx_release(d);
	ck_assert_int_eq(fab_chan_len(c), 2);
	ck_assert_int_eq(ut_stats(c).sent, 2);

	/* fab_ctx_wait on a deadline returns when it passes. */
	UT_RC(fab_ctx_with_timeout(NULL, 10 * MS, &d), 0);
	UT_RC(fab_ctx_wait(d), FAB_ETIMEDOUT);
	UT_RC(fab_ctx_err(d), FAB_ETIMEDOUT);
	fab_ctx_release(d);

	/* A far deadline has not passed. */
	UT_RC(fab_ctx_with_timeout(NULL, 3600 * SEC, &d), 0);
	ck_assert_int_eq(fab_ctx_err(d), 0);
	/* A local deadline can be cancelled like any context. */
	UT_RC(fab_ctx_cancel(d, 8), 0);
	ck_assert_int_eq(fab_ctx_err(d), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(d), 8);
	fab_ctx_release(d);
	UT_RC(fab_recv(c, &v, sizeof v, NULL), 8); /* messages still there */
	fab_chan_release(c);
}
END_TEST

START_TEST(t_timeout_nonpositive)
{
	/* Go's WithTimeout(ctx, 0) or a negative one: already expired. */
	fab_chan *c = chan_mk("e", FAB_MPMC, 1);
	int64_t ns[] = {0, -1, -SEC, INT64_MIN};
	for (int i = 0; i < 4; i++) {
		fab_ctx *d = NULL;
		UT_RC(fab_ctx_with_timeout(NULL, ns[i], &d), 0);
		UT_RC(fab_ctx_err(d), FAB_ETIMEDOUT);
		uint64_t v;
		UT_RC(fab_recv(c, &v, sizeof v, d), FAB_ETIMEDOUT);
		fab_ctx_release(d);
	}
	/* A huge timeout does not overflow into the past. */
	fab_ctx *d = NULL;
	UT_RC(fab_ctx_with_timeout(NULL, INT64_MAX, &d), 0);
	UT_RC(fab_ctx_err(d), 0);
	fab_ctx_release(d);
	fab_chan_release(c);
}
END_TEST

START_TEST(t_timeout_of_cancelled_parent)
{
	fab_ctx *p = ctx_mk("p");
	UT_RC(fab_ctx_cancel(p, 3), 0);
	fab_ctx *d = NULL;
	UT_RC(fab_ctx_with_timeout(p, 3600 * SEC, &d), 0);
	UT_RC(fab_ctx_err(d), FAB_ECANCELED);
	fab_chan *c = chan_mk("e", FAB_MPMC, 1);
	uint64_t v;
	UT_RC(fab_recv(c, &v, sizeof v, d), FAB_ECANCELED);
	UT_RC(fab_ctx_wait(d), FAB_ECANCELED);
	fab_ctx_release(d);
	fab_chan_release(c);
	fab_ctx_release(p);
}
END_TEST

/* Released memory scribbled over: allocations of every small size, filled
 * with 0xA5, so a context freed too early is reused and garbage (glibc
 * hands a freed block of the same size back first). */
static void scribble_freed(void **keep, int n)
{
	for (int i = 0; i < n; i++) {
		keep[i] = malloc((size_t)(16 + 8 * i));
		if (keep[i])
			memset(keep[i], 0xA5, (size_t)(16 + 8 * i));
	}
}

START_TEST(t_parent_released_first)
{
	/* A binding's garbage collector releases in any order: a parent
	 * released before its children must keep working for them (until
	 * libfab 1.5.1 the child kept a dangling pointer to it: found by a
	 * binding trial, which crashed). */
	void *keep[32];
	fab_ctx *p = ctx_mk("p"); /* shared */
	fab_ctx *mid = NULL, *d = NULL;
	UT_RC(fab_ctx_with_timeout(p, 3600 * SEC, &mid), 0);
	UT_RC(fab_ctx_with_timeout(mid, 3600 * SEC, &d), 0);
	fab_ctx_release(mid);
	fab_ctx_release(p);
	scribble_freed(keep, 32);
	UT_RC(fab_ctx_err(d), 0);
	fab_ctx *q = NULL;
	UT_RC(fab_ctx_open(fab, "p", &q), 0);
	UT_RC(fab_ctx_cancel(q, 7), 0);
	UT_RC(fab_ctx_err(d), FAB_ECANCELED);
	UT_RC(fab_ctx_reason(d), 7);
	fab_chan *c = chan_mk("e", FAB_MPMC, 1);
	uint64_t v;
	UT_RC(fab_recv(c, &v, sizeof v, d), FAB_ECANCELED);
	fab_ctx_release(q);
	fab_ctx_release(d); /* frees d, then mid, then p */
	for (int i = 0; i < 32; i++)
		free(keep[i]);

	/* A local chain: the released parent's deadline still bounds the
	 * child. */
	fab_ctx *lp = NULL, *lc = NULL;
	UT_RC(fab_ctx_with_timeout(NULL, 20 * MS, &lp), 0);
	UT_RC(fab_ctx_with_timeout(lp, 3600 * SEC, &lc), 0);
	fab_ctx_release(lp);
	scribble_freed(keep, 32);
	UT_RC(fab_ctx_wait(lc), FAB_ETIMEDOUT);
	UT_RC(fab_recv(c, &v, sizeof v, lc), FAB_ETIMEDOUT);
	fab_ctx_release(lc);
	for (int i = 0; i < 32; i++)
		free(keep[i]);
	fab_chan_release(c);
}
END_TEST

START_TEST(t_timeout_child_does_not_cancel_parent)
{
	fab_ctx *p = ctx_mk("p");
	fab_ctx *d = NULL;
	UT_RC(fab_ctx_with_timeout(p, 3600 * SEC, &d), 0);
	UT_RC(fab_ctx_err(d), 0);
	UT_RC(fab_ctx_cancel(d, 1), 0);
	UT_RC(fab_ctx_err(d), FAB_ECANCELED);
	UT_RC(fab_ctx_err(p), 0);
	fab_ctx_release(d);
	/* An expired child deadline leaves the parent alone too. */
	UT_RC(fab_ctx_with_timeout(p, 1 * MS, &d), 0);
	UT_RC(fab_ctx_wait(d), FAB_ETIMEDOUT);
	UT_RC(fab_ctx_err(p), 0);
	fab_ctx_release(d);
	/* Cancelling the parent reaches a live child deadline. */
	UT_RC(fab_ctx_with_timeout(p, 3600 * SEC, &d), 0);
	UT_RC(fab_ctx_cancel(p, 2), 0);
	UT_RC(fab_ctx_err(d), FAB_ECANCELED);
	fab_ctx_release(d);
	fab_ctx_release(p);
}
END_TEST

/* ---- cancelling wakes blocked calls ----------------------------------- */

enum op { OP_RECV, OP_SEND, OP_SEND_UNBUF, OP_WAIT, OP_ACQUIRE, OP_RESERVE, OP_RECV_BATCH };

struct blk {
	enum op op;
	uint32_t kind;
	int local_deadline; /* block under a local with_timeout child of "c" */
	const char *chan;
};

static int child_block(void *arg)
{
	struct blk *b = arg;
	fab_fabric *f = child_fabric(10);
	fab_ctx *c = NULL, *use;
	CHILD_RC(fab_ctx_open(f, "c", &c), 0, 11);
	use = c;
	if (b->local_deadline)
		CHILD_RC(fab_ctx_with_timeout(c, 3600 * SEC, &use), 0, 12);
	fab_chan *ch = NULL;
	unsigned role = (b->op == OP_SEND || b->op == OP_SEND_UNBUF || b->op == OP_RESERVE)
				? FAB_SEND
				: FAB_RECV;
	if (b->op != OP_WAIT)
		CHILD_RC(fab_chan_open(f, b->chan, role, &ch), 0, 13);
	uint64_t v = 1;
	const void *m;
	size_t len;
	void *slot;
	fab_iov iov = {&v, 8};
	long long rc = 0;
	switch (b->op) {
	case OP_RECV: rc = fab_recv(ch, &v, 8, use); break;
	case OP_SEND:
	case OP_SEND_UNBUF: rc = fab_send(ch, &v, 8, use); break;
	case OP_WAIT: rc = fab_ctx_wait(use); break;
	case OP_ACQUIRE: rc = fab_recv_acquire(ch, &m, &len, use); break;
	case OP_RESERVE: rc = fab_send_reserve(ch, 8, &slot, use); break;
	case OP_RECV_BATCH: rc = fab_recv_batch(ch, &iov, 1, use); break;
	}
	CHILD_RC(rc, FAB_ECANCELED, 20 + (int)b->op);
	CHILD_RC(fab_ctx_err(use), FAB_ECANCELED, 30);
	CHILD_RC(fab_ctx_reason(c), 77, 31);
	if (ch)
		fab_chan_release(ch);
	if (use != c)
		fab_ctx_release(use);
	fab_ctx_release(c);
	return 0;
}

/* Channels: "e" empty (cap 2), "f" full (cap 2), "u" unbuffered with no
 * receiver.  spsc ends are taken by one child each, so spsc gets its own
 * channel per child. */
static void block_and_cancel(struct blk *bs, int n)
{
	fab_ctx *c = ctx_mk("c");
	pid_t pids[16];
	for (int i = 0; i < n; i++) {
		fab_chan *ch = NULL;
		static char names[16][16];
		char *name = names[i];
		snprintf(name, sizeof names[i], "ch%d", i);
		bs[i].chan = name;
		uint32_t cap = bs[i].op == OP_SEND_UNBUF ? 0 : 2;
		ch = chan_mk(name, bs[i].kind, cap);
		if (bs[i].op == OP_SEND || bs[i].op == OP_RESERVE) {
			uint64_t v = 0;
			UT_RC(fab_try_send(ch, &v, 8), 0);
			UT_RC(fab_try_send(ch, &v, 8), 0);
		}
		fab_chan_release(ch);
		pids[i] = ft_spawn(child_block, &bs[i]);
	}
	/* Give them a chance to block (best effort, not asserted). */
	for (int i = 0; i < n; i++) {
		if (bs[i].op == OP_WAIT)
			continue;
		/* Open the end the child does not use (free for spsc too). */
		bool recv = !(bs[i].op == OP_SEND || bs[i].op == OP_SEND_UNBUF ||
			      bs[i].op == OP_RESERVE);
		fab_chan *ch = NULL;
		UT_RC(fab_chan_open(fab, bs[i].chan, recv ? FAB_SEND : FAB_RECV, &ch), 0);
		ut_wait_blocked(ch, recv, 1);
		fab_chan_release(ch);
	}
	ut_sleep_ms(20);
	UT_RC(fab_ctx_cancel(c, 77), 0);
	for (int i = 0; i < n; i++) {
		int st = ft_wait(pids[i]);
		ck_assert_msg(st == 0, "child %d (op %d, %s%s) exited %d", i, (int)bs[i].op,
			      ut_kind_name(bs[i].kind), bs[i].local_deadline ? ", local deadline" : "",
			      st);
	}
	/* Nothing was sent or taken by the cancelled calls. */
	for (int i = 0; i < n; i++) {
		if (bs[i].op == OP_WAIT)
			continue;
		fab_chan *ch = NULL;
		UT_RC(fab_chan_open(fab, bs[i].chan, FAB_SEND | FAB_RECV, &ch), 0);
		fab_stats st = ut_stats(ch);
		bool full = bs[i].op == OP_SEND || bs[i].op == OP_RESERVE;
		ck_assert_int_eq(st.len, full ? 2 : 0);
		ck_assert_int_eq(st.sent, full ? 2 : 0);
		ck_assert_int_eq(st.received, 0);
		ck_assert_int_eq(st.blocked_senders, 0);
		ck_assert_int_eq(st.blocked_receivers, 0);
		fab_chan_release(ch);
	}
	fab_ctx_release(c);
}

START_TEST(t_cancel_wakes_recv)
{
	struct blk b = {OP_RECV, UT_KIND, 0, NULL};
	block_and_cancel(&b, 1);
}
END_TEST

START_TEST(t_cancel_wakes_send)
{
	struct blk b = {OP_SEND, UT_KIND, 0, NULL};
	block_and_cancel(&b, 1);
}
END_TEST

START_TEST(t_cancel_wakes_send_unbuffered)
{
	struct blk b = {OP_SEND_UNBUF, UT_KIND, 0, NULL};
	block_and_cancel(&b, 1);
}
END_TEST

START_TEST(t_cancel_wakes_under_local_deadline)
{
	struct blk b[2] = {{OP_RECV, UT_KIND, 1, NULL}, {OP_SEND, UT_KIND, 1, NULL}};
	block_and_cancel(b, 2);
}
END_TEST

START_TEST(t_cancel_wakes_everyone)
{
	/* One cancel wakes every kind of sleeper in several processes. */
	struct blk b[] = {
		{OP_RECV, FAB_MPMC, 0, NULL},      {OP_RECV, FAB_SPSC, 0, NULL},
		{OP_SEND, FAB_MPMC, 0, NULL},      {OP_SEND, FAB_SPSC, 0, NULL},
		{OP_SEND_UNBUF, FAB_MPMC, 0, NULL}, {OP_WAIT, FAB_MPMC, 0, NULL},
		{OP_WAIT, FAB_MPMC, 1, NULL},      {OP_ACQUIRE, FAB_MPMC, 0, NULL},
		{OP_RESERVE, FAB_SPSC, 0, NULL},   {OP_RECV_BATCH, FAB_MPMC, 0, NULL},
		{OP_RECV, FAB_MPMC, 1, NULL},      {OP_SEND, FAB_SPSC, 1, NULL},
	};
	block_and_cancel(b, (int)(sizeof b / sizeof b[0]));
}
END_TEST

START_TEST(t_cancelled_before_call)
{
	uint32_t kind = UT_KIND;
	fab_ctx *c = ctx_mk("c");
	UT_RC(fab_ctx_cancel(c, 1), 0);
	fab_chan *e = chan_mk("e", kind, 2);
	uint64_t v = 0;
	const void *m;
	size_t len;
	void *slot;
	UT_RC(fab_recv(e, &v, 8, c), FAB_ECANCELED);
	UT_RC(fab_recv_acquire(e, &m, &len, c), FAB_ECANCELED);
	UT_RC(fab_try_send(e, &v, 8), 0);
	UT_RC(fab_try_send(e, &v, 8), 0);
	UT_RC(fab_send(e, &v, 8, c), FAB_ECANCELED);
	UT_RC(fab_send_reserve(e, 8, &slot, c), FAB_ECANCELED);
	ck_assert_int_eq(fab_chan_len(e), 2);
	fab_chan_release(e);
	fab_ctx_release(c);
}
END_TEST

/* ---- fork ------------------------------------------------------------- */

static fab_ctx *inherited;

static int child_inherited_ctx(void *arg)
{
	(void)arg;
	alarm(20);
	CHILD_RC(fab_ctx_cancel(inherited, 1), FAB_EINVAL, 10);
	CHILD_RC(fab_ctx_err(inherited), FAB_EINVAL, 11);
	CHILD_RC(fab_ctx_wait(inherited), FAB_EINVAL, 12);
	fab_ctx *d = NULL;
	CHILD_RC(fab_ctx_with_timeout(inherited, SEC, &d), FAB_EINVAL, 13);
	CHILD_RC(fab_ctx_open(fab, "c", &d), FAB_EINVAL, 14);
	CHILD_RC(fab_ctx_create(fab, "c2", NULL, &d), FAB_EINVAL, 15);
	/* A channel call with an inherited context is refused too. */
	fab_fabric *f = child_fabric(16);
	fab_chan *ch = NULL;
	CHILD_RC(fab_chan_open(f, "e", FAB_RECV, &ch), 0, 17);
	uint64_t v;
	CHILD_RC(fab_recv(ch, &v, 8, inherited), FAB_EINVAL, 18);
	fab_chan_release(ch);
	fab_ctx_release(inherited);
	/* Its own handle works. */
	CHILD_RC(fab_ctx_open(f, "c", &d), 0, 19);
	CHILD_RC(fab_ctx_err(d), 0, 20);
	fab_ctx_release(d);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_fork_inherited_ctx)
{
	inherited = ctx_mk("c");
	fab_chan_release(chan_mk("e", FAB_MPMC, 2));
	UT_CHILD_OK(ft_spawn(child_inherited_ctx, NULL));
	ck_assert_int_eq(fab_ctx_err(inherited), 0);
	UT_RC(fab_ctx_cancel(inherited, 4), 0);
	ck_assert_int_eq(fab_ctx_reason(inherited), 4);
	fab_ctx_release(inherited);
}
END_TEST

static Suite *ctx_suite(void)
{
	Suite *s = suite_create("ctx");
	TCase *tc = tcase_create("ctx");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, ut_fabric_setup, ut_fabric_teardown);
	tcase_add_test(tc, t_create_open);
	tcase_add_test(tc, t_parent_same_fabric);
	tcase_add_test(tc, t_null_handles);
	tcase_add_test(tc, t_cancel);
	tcase_add_test(tc, t_cancel_reasons);
	tcase_add_test(tc, t_cancel_from_other_process);
	tcase_add_test(tc, t_wait_in_other_processes);
	tcase_add_loop_test(tc, t_timeout_bare, 0, 2);
	tcase_add_test(tc, t_timeout_nonpositive);
	tcase_add_test(tc, t_timeout_of_cancelled_parent);
	tcase_add_test(tc, t_timeout_child_does_not_cancel_parent);
	tcase_add_test(tc, t_parent_released_first);
	tcase_add_test(tc, t_fork_inherited_ctx);
	suite_add_tcase(s, tc);

	TCase *tw = tcase_create("wake");
	tcase_set_timeout(tw, 30);
	tcase_add_checked_fixture(tw, ut_fabric_setup, ut_fabric_teardown);
	tcase_add_loop_test(tw, t_cancel_wakes_recv, 0, 2);
	tcase_add_loop_test(tw, t_cancel_wakes_send, 0, 2);
	tcase_add_loop_test(tw, t_cancel_wakes_send_unbuffered, 0, 2);
	tcase_add_loop_test(tw, t_cancel_wakes_under_local_deadline, 0, 2);
	tcase_add_test(tw, t_cancel_wakes_everyone);
	tcase_add_loop_test(tw, t_cancelled_before_call, 0, 2);
	suite_add_tcase(s, tw);
	return s;
}

int main(void)
{
	return ut_main(ctx_suite(), "ctx");
}
