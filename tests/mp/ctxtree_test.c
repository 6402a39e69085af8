/*
 * ctxtree_test.c - trees of shared contexts across processes (DESIGN §4
 * "Cancellation"; fab_ctx_create(3), fab_ctx_cancel(3), fab_ctx_err(3),
 * fab_ctx_with_timeout(3)).
 *
 * The test process creates the shared context "root".  Other processes open
 * it and create contexts under it ("mid"), and processes they fork create
 * contexts under those ("leaf"); a forked process always opens its own
 * fabric and contexts (handles do not survive fork).  Processes at every
 * level block under their own context: in fab_recv on an empty channel, in
 * fab_send on a full one, in fab_ctx_wait, and under local deadline children
 * (fab_ctx_with_timeout) of their shared context.  Then one fab_ctx_cancel
 * must wake exactly the waiters of the cancelled subtree, all of them, with
 * FAB_ECANCELED and the canceller's reason readable everywhere.
 *
 * Cases (the issue's numbering):
 *   t_tree_three_levels             cancelling root wakes every level (1)
 *   t_cancel_mid_spares_root        cancelling mid ends mid+leaf only (2)
 *   t_never_uncancels               later cancels change nothing (3)
 *   t_concurrent_cancels_agree      root and mid cancelled at once: mid's
 *                                   children carry mid's reason (3) [*]
 *   t_born_cancelled                created under a cancelled parent (5)
 *   t_born_cancelled_race           creates racing the parent's cancel (5)
 *   t_recancel_during_birth         a no-op re-cancel racing a birth (3, 5) [*]
 *   t_many_waiters                  one cancel, 9 processes, 5 depths (6)
 *   t_many_waiters_racing           ... cancelled while they arrive (6)
 *   t_deadline_under_live_tree      a leaf deadline times out alone (4)
 *   t_shared_cancel_wakes_local_deadline  a cancel from another process
 *                                   wakes a waiter under a local deadline
 *                                   child, two shared levels down (4)
 *   t_local_child_keeps_first_end   re-cancelling a local child of a
 *                                   cancelled context (3) [*]
 *   t_expired_local_not_recancelled cancelling an expired deadline (3) [*]
 *   t_local_deadline_stays_cancelled a deadline passing after the parent's
 *                                   cancel changes nothing (4) [*]
 * [*] fail against ctx.c as of this writing: library bugs, written up with
 * reproductions in /tmp/fab-notes/ctx.md.  Deliberately not marked
 * expected-to-fail: each states the documented contract.
 *
 * Assertions are on outcomes only, never on elapsed time (the machine is a
 * noisy 2-core VM): every wait below has a generous limit (GUARD) that only
 * turns a hang into a failure.  Children never ck_assert: each waiter writes
 * what its call returned into a shared (MAP_SHARED) board, node processes
 * exit non-zero only when their setup failed, and the test process asserts.
 *
 * Node exit codes: 0 ok; 10 fabric/context open or create failed (the code
 * is in board.ready[node]); 11 fork of the sub-node failed; 12 thread
 * creation failed; 20 the sub-node exited non-zero (its code is in
 * board.code[sub]).  Other children: 10 open failed, 20 an unexpected
 * result, 30 gave up waiting for a sibling (see the message on stderr).
 *
 * Cleanup: a checked teardown kills and reaps every process of the test
 * (grandchildren too: the test process is their subreaper) and removes the
 * fabric; if an assertion _exit()s the test process, Check kills its
 * process group and main() sweeps /dev/shm (mp_util.h).
 */
#include "mp_util.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#define MSZ 16u
#define GUARD (30 * MT_SEC) /* hang detector only */
#define FAR (3600 * MT_SEC) /* a deadline that never passes during a test */
#define LATE (3 * MT_SEC)   /* a deadline that passes, but after the cancel */
#define NONE INT_MIN        /* "not reported" in the result array */

/* ---- the shared board --------------------------------------------------- */

/* What a waiter does, one letter each in add_node()'s kinds string. */
enum wk { WK_RECV, WK_SEND, WK_WAIT, WK_LOCAL_RECV, WK_LOCAL_WAIT };
static const char WK_LETTERS[] = "RSWLl";
static const char *const WK_NAME[] = {"fab_recv", "fab_send", "fab_ctx_wait",
				      "fab_recv under a local deadline child",
				      "fab_ctx_wait on a local deadline child"};

enum { ST_IDLE, ST_ARMED, ST_DONE, ST_SETUP };

struct slot {
	_Atomic int state; /* ST_*: ARMED = about to block */
	int node, kind;
	int rc;         /* what the blocking call returned */
	int err;        /* fab_ctx_err of the context it blocked under */
	int err_shared; /* fab_ctx_err of the node's shared context */
	int reason;     /* fab_ctx_reason of each */
	int reason_shared;
};

#define MAX_NODES 48
#define MAX_SLOTS 128
#define MAX_WPN 6
#define NRES 128

typedef int (*node_fn)(fab_fabric *fab, fab_ctx *ctx, int node);

/* A node is one process: it opens `parent` and creates `ctx` under it (or
 * opens `ctx`), forks the process of node `sub` (if >= 0), then either runs
 * its waiters, one thread each, or fn. */
struct node {
	char ctx[32];
	char parent[32];
	int create;
	int sub;
	node_fn fn;
	int nw;
	int slot[MAX_WPN];
};

struct board {
	char fabric[FAB_NAME_MAX + 1];
	int nnodes, nslots;
	struct node node[MAX_NODES];
	struct slot slot[MAX_SLOTS];
	_Atomic int ready[MAX_NODES]; /* 1 context ready; < 0 the failing FAB_E* */
	_Atomic int code[MAX_NODES];  /* the node's exit code, NONE while it runs */
	_Atomic pid_t pid[MAX_NODES]; /* the process of each node (for teardown) */
	_Atomic int mode;             /* per-test switch read by node functions */
	_Atomic int res[NRES];        /* per-test results, NONE until reported */
	_Atomic int arrive[256];      /* t_concurrent_cancels_agree's barriers */
};

static struct board *B;
static char FABRIC[FAB_NAME_MAX + 1];
static fab_fabric *FAB; /* the test process's handle */
static fab_ctx *ROOT;   /* "root"; teardown cancels it to free our threads */
static fab_chan *CH_E[MAX_NODES], *CH_F[MAX_NODES];
static pthread_t THR[MAX_WPN];
static int NTHR;

static const char *ename(int code)
{
	static char buf[4][32];
	static int n;
	if (code == NONE)
		return "(not reported)";
	if (code >= 0) {
		char *b = buf[n++ % 4];
		snprintf(b, sizeof buf[0], "%d", code);
		return b;
	}
	return fab_errname(code);
}

/* ---- waiters and node processes ---------------------------------------- */

struct warg {
	int slot, node;
	fab_fabric *fab;
	fab_ctx *ctx;
};

static void chan_name(char *buf, size_t n, char which, int node)
{
	snprintf(buf, n, "%c%d", which, node);
}

static void *waiter(void *p)
{
	struct warg *a = p;
	struct slot *s = &B->slot[a->slot];
	fab_chan *ch = NULL;
	fab_ctx *local = NULL, *use = a->ctx;
	unsigned char buf[MSZ] = "waiter";
	char name[16];
	int rc = 0;

	if (s->kind != WK_WAIT && s->kind != WK_LOCAL_WAIT) {
		chan_name(name, sizeof name, s->kind == WK_SEND ? 'f' : 'e', a->node);
		rc = fab_chan_open(a->fab, name, s->kind == WK_SEND ? FAB_SEND : FAB_RECV, &ch);
	}
	if (rc == 0 && (s->kind == WK_LOCAL_RECV || s->kind == WK_LOCAL_WAIT)) {
		rc = fab_ctx_with_timeout(a->ctx, FAR, &local);
		use = local;
	}
	if (rc != 0) {
		fprintf(stderr, "[waiter %d] setup: %s (%s)\n", (int)getpid(), fab_strerror(rc),
			fab_errmsg());
		s->rc = rc;
		atomic_store(&s->state, ST_SETUP);
		goto out;
	}
	atomic_store(&s->state, ST_ARMED);
	switch (s->kind) {
	case WK_RECV:
	case WK_LOCAL_RECV:
		rc = (int)fab_recv(ch, buf, sizeof buf, use);
		break;
	case WK_SEND:
		rc = fab_send(ch, buf, sizeof buf, use);
		break;
	default:
		rc = fab_ctx_wait(use);
		break;
	}
	s->rc = rc;
	s->err = fab_ctx_err(use);
	s->err_shared = fab_ctx_err(a->ctx);
	s->reason = fab_ctx_reason(use);
	s->reason_shared = fab_ctx_reason(a->ctx);
	atomic_store(&s->state, ST_DONE);
out:
	if (local)
		fab_ctx_release(local);
	if (ch)
		fab_chan_release(ch);
	return NULL;
}

/* Start node i's waiters as threads of this process; returns how many
 * started (a failure is recorded in the slot). */
static int start_waiters(int i, fab_fabric *fab, fab_ctx *ctx, pthread_t *thr, struct warg *wa)
{
	struct node *n = &B->node[i];
	int nt = 0;
	for (int k = 0; k < n->nw; k++) {
		wa[nt] = (struct warg){n->slot[k], i, fab, ctx};
		if (pthread_create(&thr[nt], NULL, waiter, &wa[nt]) != 0) {
			B->slot[n->slot[k]].rc = FAB_ESYS;
			atomic_store(&B->slot[n->slot[k]].state, ST_SETUP);
			continue;
		}
		nt++;
	}
	return nt;
}

static int node_run(int i)
{
	struct node *n = &B->node[i];
	fab_fabric *fab = NULL;
	fab_ctx *parent = NULL, *ctx = NULL;
	pthread_t thr[MAX_WPN];
	struct warg wa[MAX_WPN];
	pid_t sub = -1;
	int rc, code = 0;

	alarm(120); /* backstop should the whole test vanish; GUARD comes first */
	rc = fab_fabric_open(B->fabric, 0, &fab);
	if (rc == 0 && n->create && n->parent[0])
		rc = fab_ctx_open(fab, n->parent, &parent);
	if (rc == 0)
		rc = n->create ? fab_ctx_create(fab, n->ctx, parent, &ctx)
			       : fab_ctx_open(fab, n->ctx, &ctx);
	if (rc != 0) {
		fprintf(stderr, "[node %d %s pid %d] setup: %s (%s)\n", i, n->ctx, (int)getpid(),
			fab_strerror(rc), fab_errmsg());
		B->ready[i] = rc;
		code = 10;
		goto out;
	}
	B->ready[i] = 1;
	if (n->sub >= 0) {
		fflush(stdout);
		fflush(stderr);
		sub = fork();
		if (sub == 0)
			_exit(node_run(n->sub)); /* opens its own fabric and contexts */
		if (sub < 0) {
			code = 11;
			goto out;
		}
		B->pid[n->sub] = sub;
	}
	if (n->fn) {
		code = n->fn(fab, ctx, i);
	} else {
		int nt = start_waiters(i, fab, ctx, thr, wa);
		if (nt != n->nw)
			code = 12;
		for (int k = 0; k < nt; k++)
			pthread_join(thr[k], NULL);
	}
	if (sub > 0) {
		int st;
		while (waitpid(sub, &st, 0) < 0 && errno == EINTR)
			;
		if (mt_status(st) != 0 && code == 0)
			code = 20;
	}
out:
	B->code[i] = code;
	if (ctx)
		fab_ctx_release(ctx);
	if (parent)
		fab_ctx_release(parent);
	if (fab)
		fab_fabric_close(fab);
	return code;
}

static int node_entry(void *arg)
{
	return node_run((int)(intptr_t)arg);
}

/* ---- test-process helpers ----------------------------------------------- */

static void setup(void)
{
	/* Orphaned grandchildren (a node process killed before its sub-node)
	 * are re-parented here, so teardown can reap them. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	B = mt_shared(sizeof *B);
	ck_assert_ptr_nonnull(B);
	for (int i = 0; i < NRES; i++)
		B->res[i] = NONE;
	for (int i = 0; i < MAX_NODES; i++)
		B->code[i] = NONE;
	FABRIC[0] = '\0';
	FAB = NULL;
	ROOT = NULL;
	NTHR = 0;
	memset(CH_E, 0, sizeof CH_E);
	memset(CH_F, 0, sizeof CH_F);
}

static void release_chans(void)
{
	for (int i = 0; i < MAX_NODES; i++) {
		if (CH_E[i])
			fab_chan_release(CH_E[i]);
		if (CH_F[i])
			fab_chan_release(CH_F[i]);
		CH_E[i] = CH_F[i] = NULL;
	}
}

/* Runs after a passing test, and after a failing one when Check does not
 * fork (CK_FORK=no); with fork, Check kills the group and main() sweeps. */
static void teardown(void)
{
	for (int i = 0; i < MAX_NODES; i++)
		if (B->pid[i] > 0)
			kill(B->pid[i], SIGKILL);
	mt_kill_all();
	if (ROOT && NTHR)
		fab_ctx_cancel(ROOT, 1); /* every context of a test is under root */
	for (int k = 0; k < NTHR; k++)
		pthread_join(THR[k], NULL);
	NTHR = 0;
	for (int tries = 0; tries < 500; tries++) {
		pid_t r;
		while ((r = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (r < 0) /* ECHILD: nobody left */
			break;
		usleep(2000);
	}
	release_chans();
	if (ROOT)
		fab_ctx_release(ROOT);
	ROOT = NULL;
	if (FAB)
		fab_fabric_close(FAB);
	FAB = NULL;
	if (FABRIC[0]) {
		fab_fabric_destroy(FABRIC);
		mt_shm_scan(FABRIC, 1);
	}
	munmap(B, sizeof *B);
	B = NULL;
}

/* A fabric of its own for this test, and the shared context "root". */
static void begin(const char *tag)
{
	snprintf(FABRIC, sizeof FABRIC, "%s", mt_fabric_name(tag));
	snprintf(B->fabric, sizeof B->fabric, "%s", FABRIC);
	int rc = fab_fabric_open(FABRIC, FAB_CREATE, &FAB);
	ck_assert_msg(rc == 0, "fabric %s: %s", FABRIC, fab_strerror(rc));
	rc = fab_ctx_create(FAB, "root", NULL, &ROOT);
	ck_assert_msg(rc == 0, "create root: %s", fab_strerror(rc));
}

/* Success path: everything released, the fabric gone, nothing left. */
static void finish(void)
{
	release_chans();
	fab_ctx_release(ROOT);
	ROOT = NULL;
	mt_destroy(FABRIC, &FAB);
	FABRIC[0] = '\0';
}

static int add_node(const char *ctx, const char *parent, int create, const char *kinds)
{
	int i = B->nnodes++;
	ck_assert_int_lt(i, MAX_NODES);
	struct node *n = &B->node[i];
	snprintf(n->ctx, sizeof n->ctx, "%s", ctx);
	snprintf(n->parent, sizeof n->parent, "%s", parent ? parent : "");
	n->create = create;
	n->sub = -1;
	n->fn = NULL;
	n->nw = 0;
	for (const char *k = kinds; *k; k++) {
		int s = B->nslots++;
		ck_assert_int_lt(s, MAX_SLOTS);
		ck_assert_int_lt(n->nw, MAX_WPN);
		ck_assert_ptr_nonnull(strchr(WK_LETTERS, *k));
		B->slot[s].node = i;
		B->slot[s].kind = (int)(strchr(WK_LETTERS, *k) - WK_LETTERS);
		n->slot[n->nw++] = s;
	}
	return i;
}

static fab_chan *mkchan(const char *name, uint32_t cap)
{
	fab_chan_opts o;
	fab_chan *ch = NULL;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.capacity = cap;
	o.msg_size = MSZ;
	o.kind = FAB_MPMC;
	int rc = fab_chan_create(FAB, name, &o, &ch);
	ck_assert_msg(rc == 0, "create %s: %s", name, fab_strerror(rc));
	return ch;
}

/* Node i's channels: "e<i>" empty (its receivers block), "f<i>" holding its
 * one message (capacity 1: its senders block). */
static void make_chans(int from, int to)
{
	char name[16];
	for (int i = from; i < to; i++) {
		chan_name(name, sizeof name, 'e', i);
		CH_E[i] = mkchan(name, 4);
		chan_name(name, sizeof name, 'f', i);
		CH_F[i] = mkchan(name, 1);
		ck_assert_int_eq(fab_try_send(CH_F[i], "full", 4), 0);
	}
}

static pid_t spawn_node(int i)
{
	pid_t p = mt_spawn(node_entry, (void *)(intptr_t)i);
	ck_assert_msg(p > 0, "fork: %s", strerror(errno));
	B->pid[i] = p;
	return p;
}

/* Node i's waiters run as threads of the test process (under ROOT's
 * fabric handle and context handle `ctx`). */
static void start_inproc(int i, fab_ctx *ctx)
{
	static struct warg wa[MAX_WPN];
	B->ready[i] = 1;
	NTHR = start_waiters(i, FAB, ctx, THR, wa);
	ck_assert_int_eq(NTHR, B->node[i].nw);
}

static void join_inproc(void)
{
	for (int k = 0; k < NTHR; k++)
		pthread_join(THR[k], NULL);
	NTHR = 0;
}

/* 1: every waiter of node i sleeps (or is about to); 0: not yet; -1: the
 * node failed or a waiter returned before the cancel. */
static int node_state(int i)
{
	struct node *n = &B->node[i];
	unsigned nr = 0, ns = 0;
	if (B->ready[i] < 0)
		return -1;
	if (B->ready[i] == 0)
		return B->code[i] != NONE ? -1 : 0;
	int armed = 1;
	for (int k = 0; k < n->nw; k++) {
		struct slot *s = &B->slot[n->slot[k]];
		int st = atomic_load(&s->state);
		if (st == ST_DONE || st == ST_SETUP)
			return -1;
		if (st != ST_ARMED)
			armed = 0;
		nr += s->kind == WK_RECV || s->kind == WK_LOCAL_RECV;
		ns += s->kind == WK_SEND;
	}
	if (!armed)
		return 0;
	return (!nr || mt_stats(CH_E[i]).blocked_receivers >= nr) &&
	       (!ns || mt_stats(CH_F[i]).blocked_senders >= ns);
}

static const char *describe(int i)
{
	static char bufs[4][512];
	static int nb;
	char *buf = bufs[nb++ % 4];
	const size_t bufsz = sizeof bufs[0];
	struct node *n = &B->node[i];
	int len = snprintf(buf, bufsz, "node %d (ctx %s, ready %s, code %s): ", i, n->ctx,
			   ename(B->ready[i]), ename(B->code[i]));
	for (int k = 0; k < n->nw && len < (int)bufsz - 80; k++) {
		struct slot *s = &B->slot[n->slot[k]];
		len += snprintf(buf + len, bufsz - (size_t)len, "[%s: state %d rc %s] ",
				WK_NAME[s->kind], atomic_load(&s->state), ename(s->rc));
	}
	if (CH_E[i] && len < (int)bufsz - 60)
		snprintf(buf + len, bufsz - (size_t)len, "blocked recv %u send %u",
			 mt_stats(CH_E[i]).blocked_receivers, mt_stats(CH_F[i]).blocked_senders);
	return buf;
}

static int all_blocked(int from, int to, int *bad, int *pending)
{
	*pending = -1;
	for (int i = from; i < to; i++) {
		int s = node_state(i);
		if (s < 0) {
			*bad = i;
			return 1;
		}
		if (s == 0 && *pending < 0)
			*pending = i;
	}
	return *pending < 0;
}

/* Wait until every waiter of nodes [from, to) sleeps.  Not a timing
 * assertion: GUARD only turns a hang into a failure. */
static void wait_blocked(int from, int to)
{
	int bad = -1, pending = -1;
	int ok = MT_WAIT_UNTIL(all_blocked(from, to, &bad, &pending), GUARD);
	ck_assert_msg(bad < 0, "before the cancel: %s", describe(bad));
	ck_assert_msg(ok, "waiters not all blocked: %s", describe(pending));
	usleep(50 * 1000); /* let "about to sleep" become asleep; not asserted */
	for (int i = from; i < to; i++)
		ck_assert_msg(node_state(i) == 1, "returned before the cancel: %s", describe(i));
}

static void expect_slot(int s, int want_rc, int reason)
{
	struct slot *x = &B->slot[s];
	const char *ctx = B->node[x->node].ctx;
	ck_assert_msg(atomic_load(&x->state) == ST_DONE, "%s under %s (node %d) did not return: %s",
		      WK_NAME[x->kind], ctx, x->node, describe(x->node));
	ck_assert_msg(x->rc == want_rc, "%s under %s (node %d) returned %s, want %s",
		      WK_NAME[x->kind], ctx, x->node, ename(x->rc), ename(want_rc));
	ck_assert_msg(x->err == want_rc && x->err_shared == want_rc,
		      "%s under %s: fab_ctx_err %s (shared %s), want %s", WK_NAME[x->kind], ctx,
		      ename(x->err), ename(x->err_shared), ename(want_rc));
	ck_assert_msg(x->reason == reason && x->reason_shared == reason,
		      "%s under %s: fab_ctx_reason %d (shared %d), want %d", WK_NAME[x->kind], ctx,
		      x->reason, x->reason_shared, reason);
}

static void expect_node(int i, int want_rc, int reason)
{
	for (int k = 0; k < B->node[i].nw; k++)
		expect_slot(B->node[i].slot[k], want_rc, reason);
}

/* A top-level node process exited 0 (within GUARD), and so did its
 * sub-nodes (their codes are on the board). */
static void expect_exit(int i)
{
	int rc = mt_wait(B->pid[i], GUARD);
	int sub = B->node[i].sub;
	B->pid[i] = 0;
	ck_assert_msg(rc == 0, "node process exited %d (-2: still blocked, killed): %s%s%s", rc,
		      describe(i), sub >= 0 ? "; its sub-node: " : "",
		      sub >= 0 ? describe(sub) : "");
	for (int j = B->node[i].sub; j >= 0; j = B->node[j].sub) {
		ck_assert_msg(B->code[j] == 0, "sub-node exited %s: %s", ename(B->code[j]),
			      describe(j));
		B->pid[j] = 0;
	}
}

/* Context `name` seen through a fresh handle of the test process. */
static void expect_ctx(const char *name, int err, int reason)
{
	fab_ctx *c = NULL;
	int rc = fab_ctx_open(FAB, name, &c);
	ck_assert_msg(rc == 0, "open context %s: %s", name, fab_strerror(rc));
	int e = fab_ctx_err(c), r = fab_ctx_reason(c);
	int w = e ? fab_ctx_wait(c) : 0; /* returns at once once it ended */
	fab_ctx_release(c);
	ck_assert_msg(e == err, "context %s: fab_ctx_err %s, want %s", name, ename(e), ename(err));
	ck_assert_msg(r == (err ? reason : 0), "context %s: fab_ctx_reason %d, want %d", name, r,
		      err ? reason : 0);
	ck_assert_msg(w == (err ? err : 0), "context %s: fab_ctx_wait %s", name, ename(w));
}

/* The cancelled calls neither took nor added a message, and nobody sleeps. */
static void expect_chans_untouched(int from, int to)
{
	for (int i = from; i < to; i++) {
		fab_stats e = mt_stats(CH_E[i]), f = mt_stats(CH_F[i]);
		ck_assert_msg(e.len == 0 && e.sent == 0 && e.received == 0,
			      "e%d: len %llu sent %llu received %llu", i, (unsigned long long)e.len,
			      (unsigned long long)e.sent, (unsigned long long)e.received);
		ck_assert_msg(f.len == 1 && f.sent == 1 && f.received == 0,
			      "f%d: len %llu sent %llu received %llu", i, (unsigned long long)f.len,
			      (unsigned long long)f.sent, (unsigned long long)f.received);
		ck_assert_msg(e.blocked_receivers == 0 && f.blocked_senders == 0,
			      "node %d: %u receivers / %u senders still blocked", i,
			      e.blocked_receivers, f.blocked_senders);
	}
}

static fab_ctx *open_ctx(const char *name)
{
	fab_ctx *c = NULL;
	int rc = fab_ctx_open(FAB, name, &c);
	ck_assert_msg(rc == 0, "open context %s: %s", name, fab_strerror(rc));
	return c;
}

/* ---- 1. a three-level tree, cancelled at the root ----------------------- */

START_TEST(t_tree_three_levels)
{
	enum { REASON = 4242 };
	begin("ctree3");
	int rw = add_node("root", NULL, 0, "RSW");      /* another process, under root */
	int mid = add_node("mid", "root", 1, "RSWLl");  /* creates mid */
	int leaf = add_node("leaf", "mid", 1, "RSWLl"); /* forked by mid, creates leaf */
	int self = add_node("root", NULL, 0, "RSW");    /* threads of this process */
	B->node[mid].sub = leaf;
	make_chans(0, B->nnodes);

	spawn_node(rw);
	spawn_node(mid);
	start_inproc(self, ROOT);
	wait_blocked(0, B->nnodes);

	ck_assert_int_eq(fab_ctx_cancel(ROOT, REASON), 0);
	join_inproc();
	expect_exit(rw);
	expect_exit(mid);
	for (int i = 0; i < B->nnodes; i++)
		expect_node(i, FAB_ECANCELED, REASON);
	(void)leaf;
	expect_ctx("root", FAB_ECANCELED, REASON);
	expect_ctx("mid", FAB_ECANCELED, REASON);
	expect_ctx("leaf", FAB_ECANCELED, REASON);
	expect_chans_untouched(0, B->nnodes);
	finish();
}
END_TEST

/* ---- 2. cancelling mid ends its subtree only ---------------------------- */

START_TEST(t_cancel_mid_spares_root)
{
	enum { R_MID = 7, R_ROOT = 9 };
	begin("ctreemid");
	int rw = add_node("root", NULL, 0, "RSW");
	int mid = add_node("mid", "root", 1, "RSWl");
	int leaf = add_node("leaf", "mid", 1, "RSWL");
	int sib = add_node("sib", "root", 1, "RSWl");
	int sibleaf = add_node("sibleaf", "sib", 1, "RSWL");
	B->node[mid].sub = leaf;
	B->node[sib].sub = sibleaf;
	make_chans(0, B->nnodes);
	spawn_node(rw);
	spawn_node(mid);
	spawn_node(sib);
	wait_blocked(0, B->nnodes);

	/* Cancelled from this process, which neither created nor blocks
	 * under mid. */
	fab_ctx *hmid = open_ctx("mid");
	ck_assert_int_eq(fab_ctx_cancel(hmid, R_MID), 0);
	expect_exit(mid); /* its waiters and leaf's all returned */
	expect_node(mid, FAB_ECANCELED, R_MID);
	expect_node(leaf, FAB_ECANCELED, R_MID);

	/* Root, the root-level waiters and the sibling subtree: untouched.
	 * The pause gives a wrong wake-up time to show; it asserts nothing. */
	usleep(100 * 1000);
	expect_ctx("root", 0, 0);
	expect_ctx("sib", 0, 0);
	expect_ctx("sibleaf", 0, 0);
	ck_assert_int_eq(fab_ctx_err(ROOT), 0);
	for (int i = 0; i < B->nnodes; i++)
		if (i != mid && i != leaf)
			ck_assert_msg(node_state(i) == 1, "woken by mid's cancel: %s", describe(i));
	ck_assert_msg(waitpid(B->pid[rw], NULL, WNOHANG) == 0, "root-level process exited");
	ck_assert_msg(waitpid(B->pid[sib], NULL, WNOHANG) == 0, "sibling process exited");

	/* Now root: the rest wake with root's reason; mid keeps its own. */
	ck_assert_int_eq(fab_ctx_cancel(ROOT, R_ROOT), 0);
	expect_exit(rw);
	expect_exit(sib);
	expect_node(rw, FAB_ECANCELED, R_ROOT);
	expect_node(sib, FAB_ECANCELED, R_ROOT);
	expect_node(sibleaf, FAB_ECANCELED, R_ROOT);
	expect_ctx("root", FAB_ECANCELED, R_ROOT);
	expect_ctx("sib", FAB_ECANCELED, R_ROOT);
	expect_ctx("sibleaf", FAB_ECANCELED, R_ROOT);
	expect_ctx("mid", FAB_ECANCELED, R_MID);
	expect_ctx("leaf", FAB_ECANCELED, R_MID);
	ck_assert_int_eq(fab_ctx_err(hmid), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(hmid), R_MID);
	fab_ctx_release(hmid);
	expect_chans_untouched(0, B->nnodes);
	finish();
}
END_TEST

/* ---- 3. a cancelled context never un-cancels ----------------------------- */

struct cancel_arg {
	const char *ctx;
	int reason;
	int res; /* index in B->res for fab_ctx_cancel's return */
};

#define R_CANCEL 100 /* child_cancel's result in the tests below */

/* Another process: open ctx and cancel it. */
static int child_cancel(void *arg)
{
	struct cancel_arg *a = arg;
	fab_fabric *fab = NULL;
	fab_ctx *c = NULL;
	int rc = fab_fabric_open(B->fabric, 0, &fab);
	if (rc == 0)
		rc = fab_ctx_open(fab, a->ctx, &c);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open %s: %s", a->ctx, fab_strerror(rc));
	B->res[a->res] = fab_ctx_cancel(c, a->reason);
	fab_ctx_release(c);
	fab_fabric_close(fab);
	return 0;
}

/* clang-format off */
enum {
	R3_CMID, R3_CLEAF, R3_CROOT, R3_CROOT2,   /* fab_ctx_cancel returns */
	R3_EMID, R3_RMID, R3_ELEAF, R3_RLEAF,     /* err/reason after them */
	R3_EROOT, R3_RROOT,
	R3_WAITLEAF, R3_RECVLEAF, R3_RECREATE, R3_LEAFNODE,
};
/* clang-format on */

/* A third process: cancel mid, leaf and root again with other reasons. */
static int child_recancel(void *arg)
{
	(void)arg;
	fab_fabric *fab = NULL;
	fab_ctx *root = NULL, *mid = NULL, *leaf = NULL, *x = NULL;
	fab_chan *e = NULL;
	char name[16];
	unsigned char buf[MSZ];
	int rc = fab_fabric_open(B->fabric, 0, &fab);
	if (rc == 0)
		rc = fab_ctx_open(fab, "root", &root);
	if (rc == 0)
		rc = fab_ctx_open(fab, "mid", &mid);
	if (rc == 0)
		rc = fab_ctx_open(fab, "leaf", &leaf);
	chan_name(name, sizeof name, 'e', B->res[R3_LEAFNODE]);
	if (rc == 0)
		rc = fab_chan_open(fab, name, FAB_RECV, &e);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open: %s", fab_strerror(rc));
	B->res[R3_CMID] = fab_ctx_cancel(mid, 22);
	B->res[R3_CLEAF] = fab_ctx_cancel(leaf, 33);
	B->res[R3_CROOT] = fab_ctx_cancel(root, 44);
	B->res[R3_CROOT2] = fab_ctx_cancel(root, 45);
	B->res[R3_EMID] = fab_ctx_err(mid);
	B->res[R3_RMID] = fab_ctx_reason(mid);
	B->res[R3_ELEAF] = fab_ctx_err(leaf);
	B->res[R3_RLEAF] = fab_ctx_reason(leaf);
	B->res[R3_EROOT] = fab_ctx_err(root);
	B->res[R3_RROOT] = fab_ctx_reason(root);
	/* Ended contexts end new calls at once. */
	B->res[R3_WAITLEAF] = fab_ctx_wait(leaf);
	B->res[R3_RECVLEAF] = (int)fab_recv(e, buf, sizeof buf, leaf);
	/* And cannot be reset by creating the name again. */
	B->res[R3_RECREATE] = fab_ctx_create(fab, "mid", root, &x);
	if (x)
		fab_ctx_release(x);
	fab_chan_release(e);
	fab_ctx_release(leaf);
	fab_ctx_release(mid);
	fab_ctx_release(root);
	fab_fabric_close(fab);
	return 0;
}

#define R3_READ 64 /* base of child_read's results */

/* A last process: how root, mid and leaf look to a newcomer. */
static int child_read(void *arg)
{
	static const char *const names[] = {"root", "mid", "leaf"};
	(void)arg;
	fab_fabric *fab = NULL;
	int rc = fab_fabric_open(B->fabric, 0, &fab);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open: %s", fab_strerror(rc));
	for (int k = 0; k < 3; k++) {
		fab_ctx *c = NULL;
		rc = fab_ctx_open(fab, names[k], &c);
		if (rc != 0)
			MT_CHILD_FAIL(10, "open %s: %s", names[k], fab_strerror(rc));
		B->res[R3_READ + 3 * k] = fab_ctx_err(c);
		B->res[R3_READ + 3 * k + 1] = fab_ctx_reason(c);
		B->res[R3_READ + 3 * k + 2] = B->res[R3_READ + 3 * k] ? fab_ctx_wait(c) : 0;
		fab_ctx_release(c);
	}
	fab_fabric_close(fab);
	return 0;
}

static void expect_res(int idx, int want, const char *what)
{
	ck_assert_msg(B->res[idx] == want, "%s: %s, want %s", what, ename(B->res[idx]),
		      ename(want));
}

START_TEST(t_never_uncancels)
{
	begin("ctreeonce");
	int mid = add_node("mid", "root", 1, "W");
	int leaf = add_node("leaf", "mid", 1, "WL");
	B->node[mid].sub = leaf;
	B->res[R3_LEAFNODE] = leaf;
	make_chans(0, B->nnodes);
	spawn_node(mid);
	wait_blocked(0, B->nnodes);

	/* First end: another process cancels mid with 11. */
	struct cancel_arg ca = {"mid", 11, R_CANCEL};
	ck_assert_int_eq(mt_wait(mt_spawn(child_cancel, &ca), GUARD), 0);
	expect_res(R_CANCEL, 0, "fab_ctx_cancel(mid, 11)");
	expect_exit(mid);
	expect_node(mid, FAB_ECANCELED, 11);
	expect_node(leaf, FAB_ECANCELED, 11);
	expect_ctx("root", 0, 0);

	/* Later cancels, from a third process, with other reasons: each
	 * returns 0 (fab_ctx_cancel(3): "including when the context had
	 * already ended") and changes nothing that had ended. */
	ck_assert_int_eq(mt_wait(mt_spawn(child_recancel, NULL), GUARD), 0);
	expect_res(R3_CMID, 0, "second fab_ctx_cancel(mid)");
	expect_res(R3_CLEAF, 0, "fab_ctx_cancel(leaf) after mid's");
	expect_res(R3_CROOT, 0, "fab_ctx_cancel(root)");
	expect_res(R3_CROOT2, 0, "second fab_ctx_cancel(root)");
	expect_res(R3_EMID, FAB_ECANCELED, "mid's err");
	expect_res(R3_RMID, 11, "mid's reason after more cancels");
	expect_res(R3_ELEAF, FAB_ECANCELED, "leaf's err");
	expect_res(R3_RLEAF, 11, "leaf's reason (ended with mid; keeps it)");
	expect_res(R3_EROOT, FAB_ECANCELED, "root's err");
	expect_res(R3_RROOT, 44, "root's reason (first of 44, 45)");
	expect_res(R3_WAITLEAF, FAB_ECANCELED, "fab_ctx_wait(leaf) after the end");
	expect_res(R3_RECVLEAF, FAB_ECANCELED, "fab_recv under leaf after the end");
	expect_res(R3_RECREATE, FAB_EEXIST, "fab_ctx_create(mid) again");

	/* And from here, through the handle that created root. */
	ck_assert_int_eq(fab_ctx_cancel(ROOT, 55), 0);
	fab_ctx *hmid = open_ctx("mid");
	ck_assert_int_eq(fab_ctx_cancel(hmid, 66), 0);
	fab_ctx_release(hmid);
	ck_assert_int_eq(fab_ctx_err(ROOT), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(ROOT), 44);
	expect_ctx("mid", FAB_ECANCELED, 11);
	expect_ctx("leaf", FAB_ECANCELED, 11);

	/* A newcomer sees the same. */
	ck_assert_int_eq(mt_wait(mt_spawn(child_read, NULL), GUARD), 0);
	static const int want_reason[] = {44, 11, 11};
	static const char *const what[] = {"root", "mid", "leaf"};
	for (int k = 0; k < 3; k++) {
		ck_assert_msg(B->res[R3_READ + 3 * k] == FAB_ECANCELED &&
				  B->res[R3_READ + 3 * k + 1] == want_reason[k] &&
				  B->res[R3_READ + 3 * k + 2] == FAB_ECANCELED,
			      "newcomer sees %s: err %s reason %d wait %s, want FAB_ECANCELED %d",
			      what[k], ename(B->res[R3_READ + 3 * k]), B->res[R3_READ + 3 * k + 1],
			      ename(B->res[R3_READ + 3 * k + 2]), want_reason[k]);
	}
	expect_chans_untouched(0, B->nnodes);
	finish();
}
END_TEST

/*
 * A local context whose shared parent was cancelled (by another process)
 * has ended: fab_ctx_with_timeout(3) "ends, with the parent's code, when
 * parent ends", and fab_ctx_cancel(3) "Only the first end counts:
 * cancelling a context that has already ended ... changes nothing ... and
 * its reason stays the first one".
 *
 * Known failure (see /tmp/fab-notes/ctx.md): ctx.c never records a local
 * context's end that came from its parent, so fab_ctx_cancel(local, 77)
 * then claims the local word and fab_ctx_reason(local) turns from 11 to
 * 77.  Not marked expected-to-fail: the test states the contract.
 */
START_TEST(t_local_child_keeps_first_end)
{
	begin("ctreelocal");
	fab_ctx *hmid = NULL, *d = NULL;
	ck_assert_int_eq(fab_ctx_create(FAB, "mid", ROOT, &hmid), 0);
	ck_assert_int_eq(fab_ctx_with_timeout(hmid, FAR, &d), 0);
	ck_assert_int_eq(fab_ctx_err(d), 0);

	struct cancel_arg ca = {"mid", 11, R_CANCEL};
	ck_assert_int_eq(mt_wait(mt_spawn(child_cancel, &ca), GUARD), 0);
	expect_res(R_CANCEL, 0, "fab_ctx_cancel(mid, 11) from another process");
	ck_assert_int_eq(fab_ctx_err(d), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(d), 11);

	ck_assert_int_eq(fab_ctx_cancel(d, 77), 0);
	ck_assert_int_eq(fab_ctx_err(d), FAB_ECANCELED);
	ck_assert_msg(fab_ctx_reason(d) == 11,
		      "a local child ended by its parent's cancel (reason 11) took the reason "
		      "of a later fab_ctx_cancel: %d",
		      fab_ctx_reason(d));
	ck_assert_int_eq(fab_ctx_err(hmid), FAB_ECANCELED);
	ck_assert_int_eq(fab_ctx_reason(hmid), 11);
	fab_ctx_release(d);
	fab_ctx_release(hmid);
	finish();
}
END_TEST

/*
 * The same rule for a deadline: a local context past its deadline has
 * ended with FAB_ETIMEDOUT; a later fab_ctx_cancel "changes nothing"
 * (Go: cancel() after DeadlineExceeded keeps Err() == DeadlineExceeded).
 *
 * Known failure (see /tmp/fab-notes/ctx.md): unless someone happened to
 * look at the context after its deadline (fab_ctx_err latches EXPIRED), the
 * cancel claims the word and the context reports FAB_ECANCELED.
 */
START_TEST(t_expired_local_not_recancelled)
{
	begin("ctreeexp");
	fab_ctx *hmid = NULL, *d = NULL;
	ck_assert_int_eq(fab_ctx_create(FAB, "mid", ROOT, &hmid), 0);
	/* Already expired (ns <= 0), under a live shared parent. */
	ck_assert_int_eq(fab_ctx_with_timeout(hmid, 0, &d), 0);
	ck_assert_int_eq(fab_ctx_cancel(d, 5), 0);
	ck_assert_msg(fab_ctx_err(d) == FAB_ETIMEDOUT,
		      "an expired deadline cancelled afterwards reports %s, want FAB_ETIMEDOUT",
		      ename(fab_ctx_err(d)));
	ck_assert_int_eq(fab_ctx_reason(d), 0);
	ck_assert_int_eq(fab_ctx_err(hmid), 0);
	fab_ctx_release(d);
	fab_ctx_release(hmid);
	finish();
}
END_TEST

/*
 * Two processes cancel root and mid at the same moment (a spin barrier per
 * iteration), root with reason 1 and mid with reason 2; mid has CC_LEAVES
 * children.  Whichever cancel ends mid first, mid keeps that reason, and
 * its children ended with mid (they are reached only through mid), so each
 * carries mid's reason: fab_ctx_cancel(3), "A descendant that had already
 * ended keeps its own code and reason" (the other cancel stops at mid), and
 * fab_ctx_err(3), "A shared context cancelled through an ancestor ...
 * carries the ancestor's reason"; Go: a child's cause is its parent's.
 *
 * Known failure (see /tmp/fab-notes/ctx.md): fab__ctx_cancel_tree descends
 * into a context's children even when its claim of that context failed
 * (someone else ended it first), so the loser's reason can land on mid's
 * children: mid says 2, a leaf says 1 (or the reverse).  A race: about 1%
 * of iterations here; CC_ROUNDS rounds make a miss unlikely.
 */
#define CC_LEAVES 5
#define CC_PER 140 /* iterations per fabric: 7 contexts each, 1024 per table */
#define CC_ROUNDS MT_SCALE(20, 16)

static int child_cc(void *arg)
{
	int who = (int)(intptr_t)arg; /* 0 cancels r<i>, 1 cancels m<i> */
	fab_fabric *fab = NULL;
	int rc = fab_fabric_open(B->fabric, 0, &fab);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open: %s", fab_strerror(rc));
	for (int i = 0; i < CC_PER; i++) {
		char name[16];
		fab_ctx *c = NULL;
		snprintf(name, sizeof name, "%c%d", who ? 'm' : 'r', i);
		if ((rc = fab_ctx_open(fab, name, &c)) != 0)
			MT_CHILD_FAIL(10, "open %s: %s", name, fab_strerror(rc));
		atomic_fetch_add(&B->arrive[i], 1);
		int64_t dl = ft_now_ns() + GUARD;
		for (unsigned spin = 0; atomic_load(&B->arrive[i]) < 2; spin++) {
			if (spin > 1000)
				sched_yield();
			if ((spin & 1023) == 0 && ft_now_ns() > dl)
				MT_CHILD_FAIL(30, "barrier %d: the other canceller never came", i);
		}
		if ((rc = fab_ctx_cancel(c, who + 1)) != 0)
			MT_CHILD_FAIL(20, "cancel %s: %s", name, fab_strerror(rc));
		fab_ctx_release(c);
	}
	fab_fabric_close(fab);
	return 0;
}

START_TEST(t_concurrent_cancels_agree)
{
	int total = 0, bad = 0, mid_root = 0;
	char first[160] = "";
	for (int round = 0; round < CC_ROUNDS && !bad; round++) {
		char tag[16];
		snprintf(tag, sizeof tag, "ctreecc%d", round);
		snprintf(FABRIC, sizeof FABRIC, "%s", mt_fabric_name(tag));
		snprintf(B->fabric, sizeof B->fabric, "%s", FABRIC);
		ck_assert_int_eq(fab_fabric_open(FABRIC, FAB_CREATE, &FAB), 0);
		for (int i = 0; i < CC_PER; i++) {
			char name[16];
			fab_ctx *r = NULL, *m = NULL, *l = NULL;
			B->arrive[i] = 0;
			snprintf(name, sizeof name, "r%d", i);
			ck_assert_int_eq(fab_ctx_create(FAB, name, NULL, &r), 0);
			snprintf(name, sizeof name, "m%d", i);
			ck_assert_int_eq(fab_ctx_create(FAB, name, r, &m), 0);
			for (int k = 0; k < CC_LEAVES; k++) {
				snprintf(name, sizeof name, "l%d-%d", i, k);
				ck_assert_int_eq(fab_ctx_create(FAB, name, m, &l), 0);
				fab_ctx_release(l);
			}
			fab_ctx_release(m);
			fab_ctx_release(r);
		}
		pid_t a = mt_spawn(child_cc, (void *)(intptr_t)0);
		pid_t b = mt_spawn(child_cc, (void *)(intptr_t)1);
		ck_assert_int_eq(mt_wait(a, GUARD), 0);
		ck_assert_int_eq(mt_wait(b, GUARD), 0);
		for (int i = 0; i < CC_PER; i++) {
			char name[16];
			snprintf(name, sizeof name, "r%d", i);
			expect_ctx(name, FAB_ECANCELED, 1);
			snprintf(name, sizeof name, "m%d", i);
			fab_ctx *m = open_ctx(name);
			int me = fab_ctx_err(m), mr = fab_ctx_reason(m);
			fab_ctx_release(m);
			ck_assert_msg(me == FAB_ECANCELED && (mr == 1 || mr == 2),
				      "%s: err %s reason %d after both cancels", name, ename(me),
				      mr);
			mid_root += mr == 1;
			total++;
			for (int k = 0; k < CC_LEAVES; k++) {
				snprintf(name, sizeof name, "l%d-%d", i, k);
				fab_ctx *l = open_ctx(name);
				int le = fab_ctx_err(l), lr = fab_ctx_reason(l);
				fab_ctx_release(l);
				ck_assert_msg(le == FAB_ECANCELED, "%s: err %s", name, ename(le));
				if (lr != mr) {
					if (!bad)
						snprintf(
						    first, sizeof first,
						    "round %d: m%d ended with reason %d, its child "
						    "%s with %d",
						    round, i, mr, name, lr);
					bad++;
					break;
				}
			}
		}
		mt_destroy(FABRIC, &FAB);
		FABRIC[0] = '\0';
	}
	ck_assert_msg(bad == 0,
		      "%d of %d iterations: a child of mid carries another reason than mid "
		      "(mid got root's reason in %d); first: %s",
		      bad, total, mid_root, first);
}
END_TEST

/* ---- 4. deadlines and cancellation --------------------------------------- */

/* clang-format off */
enum {
	/* mode 1: deadlines while leaf is live */
	R4_TRECV, R4_TERR, R4_TREASON, R4_TLEAF, R4_TWAIT, R4_TLEAF2, R4_TNESTED, R4_TOUTER,
	R4_TDONE,
	/* modes 2 and 3: a shared cancel from another process */
	R4_ARMED, R4_BRECV, R4_BERR, R4_BREASON, R4_BERRFAR, R4_LOOK1, R4_LOOK1R, R4_BORN1,
	R4_BORN1R, R4_ORDER,
	/* mode 3 only: after the LATE deadlines passed */
	R4_UNLOOKED, R4_UNLOOKEDR, R4_LOOK2, R4_LOOK2R, R4_LOOKRECV, R4_BORN2, R4_BORNWAIT,
	R4_END,
};
/* clang-format on */

static int leaf_deadlines(fab_fabric *fab, fab_ctx *leaf, int node)
{
	char name[16];
	unsigned char buf[MSZ];
	fab_chan *e = NULL;
	fab_ctx *d = NULL, *d2 = NULL;
	chan_name(name, sizeof name, 'e', node);
	int rc = fab_chan_open(fab, name, FAB_RECV, &e);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open %s: %s", name, fab_strerror(rc));

	if (B->mode == 1) {
		/* A deadline under the live leaf ends the call alone. */
		if (fab_ctx_with_timeout(leaf, 100 * MT_MS, &d))
			MT_CHILD_FAIL(10, "with_timeout");
		B->res[R4_TRECV] = (int)fab_recv(e, buf, sizeof buf, d);
		B->res[R4_TERR] = fab_ctx_err(d);
		B->res[R4_TREASON] = fab_ctx_reason(d);
		B->res[R4_TLEAF] = fab_ctx_err(leaf);
		fab_ctx_release(d);
		if (fab_ctx_with_timeout(leaf, 50 * MT_MS, &d))
			MT_CHILD_FAIL(10, "with_timeout");
		B->res[R4_TWAIT] = fab_ctx_wait(d);
		B->res[R4_TLEAF2] = fab_ctx_err(leaf);
		fab_ctx_release(d);
		/* A short deadline under a far one under leaf. */
		if (fab_ctx_with_timeout(leaf, FAR, &d) || fab_ctx_with_timeout(d, 50 * MT_MS, &d2))
			MT_CHILD_FAIL(10, "with_timeout");
		B->res[R4_TNESTED] = (int)fab_recv(e, buf, sizeof buf, d2);
		B->res[R4_TOUTER] = fab_ctx_err(d);
		fab_ctx_release(d2);
		fab_ctx_release(d);
		B->res[R4_TDONE] = 1;
		fab_chan_release(e);
		return 0;
	}

	/* Modes 2 and 3: block under a local child of a local child of leaf;
	 * the test process cancels root, two shared levels up. */
	fab_ctx *looked = NULL, *unlooked = NULL, *born = NULL;
	int64_t t0 = ft_now_ns();
	if (fab_ctx_with_timeout(leaf, FAR, &d) || fab_ctx_with_timeout(d, FAR, &d2) ||
	    fab_ctx_with_timeout(leaf, LATE, &looked) ||
	    fab_ctx_with_timeout(leaf, LATE, &unlooked))
		MT_CHILD_FAIL(10, "with_timeout");
	int64_t t1 = ft_now_ns(); /* LATE deadlines lie in [t0, t1] + LATE */
	B->res[R4_ARMED] = 1;
	B->res[R4_BRECV] = (int)fab_recv(e, buf, sizeof buf, d2);
	/* Did the cancel come before the LATE deadlines?  Only then are the
	 * checks below meaningful; the test process reports it if not. */
	B->res[R4_ORDER] = ft_now_ns() < t0 + LATE;
	B->res[R4_BERR] = fab_ctx_err(d2);
	B->res[R4_BREASON] = fab_ctx_reason(d2);
	B->res[R4_BERRFAR] = fab_ctx_err(d);
	B->res[R4_LOOK1] = fab_ctx_err(looked);
	B->res[R4_LOOK1R] = fab_ctx_reason(looked);
	/* Created after the cancel, with a deadline soon. */
	if (fab_ctx_with_timeout(leaf, 20 * MT_MS, &born))
		MT_CHILD_FAIL(10, "with_timeout");
	B->res[R4_BORN1] = fab_ctx_err(born);
	B->res[R4_BORN1R] = fab_ctx_reason(born);
	if (B->mode == 3) {
		/* Let every deadline pass; `unlooked` was not looked at since. */
		while (ft_now_ns() <= t1 + LATE + 20 * MT_MS)
			usleep(20 * 1000);
		B->res[R4_UNLOOKED] = fab_ctx_err(unlooked);
		B->res[R4_UNLOOKEDR] = fab_ctx_reason(unlooked);
		B->res[R4_LOOK2] = fab_ctx_err(looked);
		B->res[R4_LOOK2R] = fab_ctx_reason(looked);
		B->res[R4_LOOKRECV] = (int)fab_recv(e, buf, sizeof buf, looked);
		B->res[R4_BORN2] = fab_ctx_err(born);
		B->res[R4_BORNWAIT] = fab_ctx_wait(born);
	}
	fab_ctx_release(born);
	fab_ctx_release(unlooked);
	fab_ctx_release(looked);
	fab_ctx_release(d2);
	fab_ctx_release(d);
	fab_chan_release(e);
	return 0;
}

/* root (here) -> mid (a child process) -> leaf (its child), which runs
 * leaf_deadlines in the given mode. */
static int deadline_tree(int mode)
{
	B->mode = mode;
	int mid = add_node("mid", "root", 1, "");
	int leaf = add_node("leaf", "mid", 1, "");
	B->node[mid].sub = leaf;
	B->node[leaf].fn = leaf_deadlines;
	make_chans(0, B->nnodes);
	spawn_node(mid);
	return leaf;
}

START_TEST(t_deadline_under_live_tree)
{
	begin("ctreedl");
	deadline_tree(1);
	ck_assert_msg(MT_WAIT_UNTIL(B->res[R4_TDONE] == 1 || B->code[1] != NONE, GUARD),
		      "leaf process did not finish: %s", describe(1));
	expect_exit(0);
	expect_res(R4_TRECV, FAB_ETIMEDOUT, "fab_recv under with_timeout(leaf, 100ms)");
	expect_res(R4_TERR, FAB_ETIMEDOUT, "its fab_ctx_err");
	expect_res(R4_TREASON, 0, "its fab_ctx_reason (an expired context has none)");
	expect_res(R4_TLEAF, 0, "leaf's err after a child deadline passed");
	expect_res(R4_TWAIT, FAB_ETIMEDOUT, "fab_ctx_wait(with_timeout(leaf, 50ms))");
	expect_res(R4_TLEAF2, 0, "leaf's err after that");
	expect_res(R4_TNESTED, FAB_ETIMEDOUT, "fab_recv under a 50 ms deadline under a far one");
	expect_res(R4_TOUTER, 0, "the far one's err");
	/* Nothing shared ended. */
	ck_assert_int_eq(fab_ctx_err(ROOT), 0);
	expect_ctx("mid", 0, 0);
	expect_ctx("leaf", 0, 0);
	expect_chans_untouched(0, B->nnodes);
	finish();
}
END_TEST

static void cancel_when_leaf_blocks(int leaf, int reason)
{
	ck_assert_msg(
	    MT_WAIT_UNTIL((B->res[R4_ARMED] == 1 && mt_stats(CH_E[leaf]).blocked_receivers >= 1) ||
			      B->code[leaf] != NONE,
			  GUARD),
	    "leaf never blocked: %s", describe(leaf));
	ck_assert_msg(B->code[leaf] == NONE, "leaf ended early: %s", describe(leaf));
	usleep(20 * 1000); /* not asserted */
	ck_assert_int_eq(fab_ctx_cancel(ROOT, reason), 0);
}

START_TEST(t_shared_cancel_wakes_local_deadline)
{
	enum { REASON = 404 };
	begin("ctreedlc");
	int leaf = deadline_tree(2);
	cancel_when_leaf_blocks(leaf, REASON);
	expect_exit(0);
	expect_res(R4_BRECV, FAB_ECANCELED,
		   "fab_recv under with_timeout(with_timeout(leaf, 1h), 1h), root cancelled");
	expect_res(R4_BERR, FAB_ECANCELED, "its fab_ctx_err");
	expect_res(R4_BREASON, REASON, "its fab_ctx_reason");
	expect_res(R4_BERRFAR, FAB_ECANCELED, "its parent's fab_ctx_err");
	expect_res(R4_ORDER, 1, "cancel before the 3 s deadlines (else: inconclusive, stall)");
	expect_res(R4_LOOK1, FAB_ECANCELED, "with_timeout(leaf, 3s) after the cancel");
	expect_res(R4_LOOK1R, REASON, "its reason");
	expect_res(R4_BORN1, FAB_ECANCELED, "with_timeout(leaf, 20ms) made after the cancel");
	expect_res(R4_BORN1R, REASON, "its reason");
	expect_ctx("mid", FAB_ECANCELED, REASON);
	expect_ctx("leaf", FAB_ECANCELED, REASON);
	expect_chans_untouched(0, B->nnodes);
	finish();
}
END_TEST

/*
 * Once the shared parent was cancelled, a local child has ended with
 * FAB_ECANCELED; its own deadline passing later must not turn it into
 * FAB_ETIMEDOUT (Go: Err() never changes once non-nil; fab_ctx_cancel(3):
 * only the first end counts).  Covers a child looked at before its
 * deadline, one not looked at until after it, and one created under the
 * already-cancelled parent with a short deadline.
 *
 * Known failure (see /tmp/fab-notes/ctx.md): fab__ctx_done checks the local
 * deadline before walking to the parent and never latches the parent's
 * end, so all three report FAB_ETIMEDOUT (reason 0) after the deadline.
 */
START_TEST(t_local_deadline_stays_cancelled)
{
	enum { REASON = 405 };
	begin("ctreedls");
	int leaf = deadline_tree(3);
	cancel_when_leaf_blocks(leaf, REASON);
	expect_exit(0);
	expect_res(R4_BRECV, FAB_ECANCELED, "fab_recv under a local child of leaf, root cancelled");
	expect_res(R4_ORDER, 1, "cancel before the 3 s deadlines (else: inconclusive, stall)");
	expect_res(R4_LOOK1, FAB_ECANCELED, "3 s child of leaf, looked at after the cancel");
	expect_res(R4_BORN1, FAB_ECANCELED, "20 ms child made under the cancelled leaf");
	expect_res(R4_LOOK2, FAB_ECANCELED, "the 3 s child looked at again after its deadline");
	expect_res(R4_LOOK2R, REASON, "its reason after its deadline");
	expect_res(R4_LOOKRECV, FAB_ECANCELED, "fab_recv under it after its deadline");
	expect_res(
	    R4_UNLOOKED, FAB_ECANCELED,
	    "3 s child of leaf, first looked at after its deadline (parent cancelled before)");
	expect_res(R4_UNLOOKEDR, REASON, "its reason");
	expect_res(R4_BORN2, FAB_ECANCELED, "20 ms child of the cancelled leaf, after 20 ms");
	expect_res(R4_BORNWAIT, FAB_ECANCELED, "fab_ctx_wait on it");
	finish();
}
END_TEST

/* ---- 5. born cancelled ----------------------------------------------------- */

/* clang-format off */
enum { R5_ERR, R5_REASON, R5_WAIT, R5_RECV, R5_LOCAL, R5_CANCEL, R5_REASON2, R5_SUB, R5_SUBR,
       R5_N };
/* clang-format on */

/* Node function of "late" (created under the cancelled mid) and of
 * "late2" (created under late): results at B->res[node * R5_N + ...]. */
static int born_check(fab_fabric *fab, fab_ctx *ctx, int node)
{
	char name[16];
	unsigned char buf[MSZ];
	fab_chan *e = NULL;
	fab_ctx *d = NULL, *sub = NULL;
	_Atomic int *r = &B->res[node * R5_N];
	chan_name(name, sizeof name, 'e', node);
	int rc = fab_chan_open(fab, name, FAB_RECV, &e);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open %s: %s", name, fab_strerror(rc));
	r[R5_ERR] = fab_ctx_err(ctx);
	r[R5_REASON] = fab_ctx_reason(ctx);
	r[R5_WAIT] = fab_ctx_wait(ctx);
	r[R5_RECV] = (int)fab_recv(e, buf, sizeof buf, ctx);
	if (fab_ctx_with_timeout(ctx, FAR, &d) == 0) {
		r[R5_LOCAL] = fab_ctx_err(d);
		fab_ctx_release(d);
	}
	/* A shared context created here under ctx: born cancelled too. */
	snprintf(name, sizeof name, "x%d", node);
	rc = fab_ctx_create(fab, name, ctx, &sub);
	if (rc != 0)
		MT_CHILD_FAIL(20, "create %s under a cancelled context: %s", name,
			      fab_strerror(rc));
	r[R5_SUB] = fab_ctx_err(sub);
	r[R5_SUBR] = fab_ctx_reason(sub);
	fab_ctx_release(sub);
	/* Cancelling it again changes nothing.  Not before the sub-node has
	 * made its context under ctx: a cancel racing a birth is
	 * t_recancel_during_birth's subject, not this test's. */
	int sub_node = B->node[node].sub;
	if (sub_node >= 0 &&
	    !MT_WAIT_UNTIL(
		B->res[sub_node * R5_N + R5_REASON2] != NONE || B->code[sub_node] != NONE, GUARD))
		MT_CHILD_FAIL(30, "sub-node %d never finished", sub_node);
	r[R5_CANCEL] = fab_ctx_cancel(ctx, 99);
	r[R5_REASON2] = fab_ctx_reason(ctx);
	fab_chan_release(e);
	return 0;
}

START_TEST(t_born_cancelled)
{
	enum { REASON = 5 };
	begin("ctreeborn");
	/* root -> mid, created by a process that then exits. */
	int mid = add_node("mid", "root", 1, "");
	spawn_node(mid);
	expect_exit(mid);
	ck_assert_int_eq(fab_ctx_cancel(ROOT, REASON), 0);
	expect_ctx("mid", FAB_ECANCELED, REASON);

	/* Another process creates late under the cancelled mid, and its
	 * child late2 under late. */
	int late = add_node("late", "mid", 1, "");
	int late2 = add_node("late2", "late", 1, "");
	B->node[late].sub = late2;
	B->node[late].fn = born_check;
	B->node[late2].fn = born_check;
	make_chans(0, B->nnodes);
	spawn_node(late);
	expect_exit(late);
	for (int n = late; n <= late2; n++) {
		const char *c = B->node[n].ctx;
		_Atomic int *r = &B->res[n * R5_N];
		ck_assert_msg(
		    r[R5_ERR] == FAB_ECANCELED && r[R5_REASON] == REASON,
		    "%s born under a cancelled parent: err %s reason %d, want FAB_ECANCELED %d", c,
		    ename(r[R5_ERR]), r[R5_REASON], REASON);
		ck_assert_msg(r[R5_WAIT] == FAB_ECANCELED && r[R5_RECV] == FAB_ECANCELED,
			      "%s: fab_ctx_wait %s, fab_recv %s", c, ename(r[R5_WAIT]),
			      ename(r[R5_RECV]));
		ck_assert_msg(r[R5_LOCAL] == FAB_ECANCELED, "%s: local child err %s", c,
			      ename(r[R5_LOCAL]));
		ck_assert_msg(r[R5_SUB] == FAB_ECANCELED && r[R5_SUBR] == REASON,
			      "context created under %s: err %s reason %d", c, ename(r[R5_SUB]),
			      r[R5_SUBR]);
		ck_assert_msg(r[R5_CANCEL] == 0 && r[R5_REASON2] == REASON,
			      "%s cancelled again: rc %s, reason then %d, want 0 and %d", c,
			      ename(r[R5_CANCEL]), r[R5_REASON2], REASON);
	}
	/* Seen from here. */
	expect_ctx("late", FAB_ECANCELED, REASON);
	expect_ctx("late2", FAB_ECANCELED, REASON);
	char x[16];
	snprintf(x, sizeof x, "x%d", late);
	expect_ctx(x, FAB_ECANCELED, REASON);
	snprintf(x, sizeof x, "x%d", late2);
	expect_ctx(x, FAB_ECANCELED, REASON);
	expect_chans_untouched(late, late2 + 1);
	finish();
}
END_TEST

/*
 * Re-cancelling an ended context "changes nothing" (fab_ctx_cancel(3)),
 * not even for a context being born under it at that moment: one process
 * creates contexts under the cancelled p (each born cancelled with p's
 * reason) while another keeps calling fab_ctx_cancel(p, 99).
 *
 * Known failure (see /tmp/fab-notes/ctx.md): fab__ctx_cancel_tree scans
 * p's children even though p had ended, and claims a newborn child (LIVE,
 * word still 0, before fab_ctx_create's own born-cancelled step) with the
 * no-op cancel's reason 99.
 */
#define BIRTH_N 900 /* of the 1024 entries of a context table */

static int child_birth(void *arg)
{
	fab_fabric *fab = NULL;
	fab_ctx *p = NULL;
	(void)arg;
	int rc = fab_fabric_open(B->fabric, 0, &fab);
	if (rc == 0)
		rc = fab_ctx_open(fab, "p", &p);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open: %s", fab_strerror(rc));
	for (int k = 0; k < BIRTH_N; k++) {
		char name[24];
		fab_ctx *c = NULL;
		snprintf(name, sizeof name, "b%d", k);
		if ((rc = fab_ctx_create(fab, name, p, &c)) != 0)
			MT_CHILD_FAIL(20, "create %s: %s", name, fab_strerror(rc));
		fab_ctx_release(c);
	}
	B->res[0] = 1;
	fab_ctx_release(p);
	fab_fabric_close(fab);
	return 0;
}

static int child_recanceller(void *arg)
{
	fab_fabric *fab = NULL;
	fab_ctx *p = NULL;
	(void)arg;
	int rc = fab_fabric_open(B->fabric, 0, &fab);
	if (rc == 0)
		rc = fab_ctx_open(fab, "p", &p);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open: %s", fab_strerror(rc));
	int64_t dl = ft_now_ns() + GUARD;
	int n = 0;
	while (B->res[0] != 1 && ft_now_ns() < dl) {
		if ((rc = fab_ctx_cancel(p, 99)) != 0)
			MT_CHILD_FAIL(20, "cancel p again: %s", fab_strerror(rc));
		n++;
	}
	B->res[1] = n;
	fab_ctx_release(p);
	fab_fabric_close(fab);
	return 0;
}

START_TEST(t_recancel_during_birth)
{
	enum { REASON = 5 };
	begin("ctreebirth");
	fab_ctx *p = NULL;
	ck_assert_int_eq(fab_ctx_create(FAB, "p", ROOT, &p), 0);
	ck_assert_int_eq(fab_ctx_cancel(p, REASON), 0);
	B->res[0] = 0;
	pid_t a = mt_spawn(child_recanceller, NULL);
	pid_t b = mt_spawn(child_birth, NULL);
	ck_assert_int_eq(mt_wait(b, GUARD), 0);
	ck_assert_int_eq(mt_wait(a, GUARD), 0);
	ck_assert_int_eq(fab_ctx_reason(p), REASON);
	int wrong = 0;
	char first[64] = "";
	for (int k = 0; k < BIRTH_N; k++) {
		char name[24];
		snprintf(name, sizeof name, "b%d", k);
		fab_ctx *c = open_ctx(name);
		int e = fab_ctx_err(c), r = fab_ctx_reason(c);
		fab_ctx_release(c);
		ck_assert_msg(e == FAB_ECANCELED, "%s born under cancelled p: err %s", name,
			      ename(e));
		if (r != REASON && wrong++ == 0)
			snprintf(first, sizeof first, "%s has reason %d", name, r);
	}
	ck_assert_msg(wrong == 0,
		      "%d of %d contexts born under p (cancelled with %d) carry the reason of a "
		      "later no-op fab_ctx_cancel(p, 99) (%d such calls); first: %s",
		      wrong, BIRTH_N, REASON, B->res[1], first);
	fab_ctx_release(p);
	finish();
}
END_TEST

#define RACE_PER MT_SCALE(200, 120)

/* Create c<id>-0 .. c<id>-<RACE_PER-1> under "p" as fast as possible;
 * B->res[id] counts them. */
static int child_creator(void *arg)
{
	int id = (int)(intptr_t)arg;
	fab_fabric *fab = NULL;
	fab_ctx *p = NULL;
	int rc = fab_fabric_open(B->fabric, 0, &fab);
	if (rc == 0)
		rc = fab_ctx_open(fab, "p", &p);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open: %s", fab_strerror(rc));
	for (int k = 0; k < RACE_PER; k++) {
		char name[24];
		fab_ctx *c = NULL;
		snprintf(name, sizeof name, "c%d-%d", id, k);
		rc = fab_ctx_create(fab, name, p, &c);
		if (rc != 0)
			MT_CHILD_FAIL(20, "create %s: %s", name, fab_strerror(rc));
		fab_ctx_release(c);
		B->res[id] = k + 1;
	}
	fab_ctx_release(p);
	fab_fabric_close(fab);
	return 0;
}

/* Two processes create contexts under p while this one cancels p: every
 * one of them, created before, during or after the cancel, ends up
 * cancelled with p's reason. */
START_TEST(t_born_cancelled_race)
{
	enum { REASON = 321 };
	begin("ctreerace");
	fab_ctx *p = NULL;
	ck_assert_int_eq(fab_ctx_create(FAB, "p", ROOT, &p), 0);
	B->res[0] = B->res[1] = 0;
	pid_t a = mt_spawn(child_creator, (void *)(intptr_t)0);
	pid_t b = mt_spawn(child_creator, (void *)(intptr_t)1);
	/* Cancel somewhere in the middle (where exactly is not asserted). */
	MT_WAIT_UNTIL(B->res[0] + B->res[1] >= RACE_PER / 2, GUARD);
	ck_assert_int_eq(fab_ctx_cancel(p, REASON), 0);
	ck_assert_int_eq(mt_wait(a, GUARD), 0);
	ck_assert_int_eq(mt_wait(b, GUARD), 0);
	ck_assert_int_eq(B->res[0], RACE_PER);
	ck_assert_int_eq(B->res[1], RACE_PER);
	int live = 0, wrong = 0;
	char first[64] = "";
	for (int id = 0; id < 2; id++) {
		for (int k = 0; k < RACE_PER; k++) {
			char name[24];
			fab_ctx *c = NULL;
			snprintf(name, sizeof name, "c%d-%d", id, k);
			ck_assert_int_eq(fab_ctx_open(FAB, name, &c), 0);
			int e = fab_ctx_err(c), r = fab_ctx_reason(c);
			fab_ctx_release(c);
			if (e != FAB_ECANCELED || r != REASON) {
				live += e == 0;
				wrong++;
				if (!first[0])
					snprintf(first, sizeof first, "%s: err %s reason %d", name,
						 ename(e), r);
			}
		}
	}
	ck_assert_msg(wrong == 0,
		      "%d of %d contexts under cancelled p not cancelled with its reason "
		      "(%d live); first: %s",
		      wrong, 2 * RACE_PER, live, first);
	fab_ctx_release(p);
	finish();
}
END_TEST

/* ---- 6. many waiters, many depths, one cancel ----------------------------- */

/* Round k: the test process builds r<k> -> a -> b -> c -> d and
 * r<k> -> s -> t; nine processes open one context each and block in one or
 * two ways.  One cancel of r<k> must end all of them.  With settle == 0 the
 * cancel comes while they are still arriving (some have not opened their
 * context yet, some are going to sleep): the outcome must be the same. */
static void many_waiters_round(int k, int settle, mt_rng *rng)
{
	static const char *const chain[] = {"a", "b", "c", "d", "s", "t"};
	static const char *const parent[] = {"", "a", "b", "c", "", "s"};
	char root[16], name[24];
	fab_ctx *r = NULL, *made[6];
	int reason = 600 + k;

	snprintf(root, sizeof root, "r%d", k);
	ck_assert_int_eq(fab_ctx_create(FAB, root, NULL, &r), 0);
	for (int j = 0; j < 6; j++) {
		snprintf(name, sizeof name, "r%d-%s", k, chain[j]);
		fab_ctx *par = r;
		if (parent[j][0]) {
			for (int q = 0; q < j; q++)
				if (strcmp(chain[q], parent[j]) == 0)
					par = made[q];
		}
		ck_assert_int_eq(fab_ctx_create(FAB, name, par, &made[j]), 0);
	}
	struct {
		const char *ctx;
		const char *kinds;
	} procs[] = {
	    {"", "R"},   {"a", "S"}, {"b", "W"},  {"c", "L"}, {"d", "RW"},
	    {"d", "lS"}, {"t", "S"}, {"s", "WR"}, {"t", "L"},
	};
	enum { NP = sizeof procs / sizeof procs[0] };
	int from = B->nnodes;
	for (int j = 0; j < NP; j++) {
		if (procs[j].ctx[0])
			snprintf(name, sizeof name, "r%d-%s", k, procs[j].ctx);
		else
			snprintf(name, sizeof name, "%s", root);
		add_node(name, NULL, 0, procs[j].kinds);
	}
	make_chans(from, B->nnodes);
	for (int i = from; i < B->nnodes; i++)
		spawn_node(i);
	if (settle)
		wait_blocked(from, B->nnodes);
	else
		usleep((useconds_t)mt_below(rng, 3000));
	ck_assert_int_eq(fab_ctx_cancel(r, reason), 0);
	for (int i = from; i < B->nnodes; i++)
		expect_exit(i);
	for (int i = from; i < B->nnodes; i++)
		expect_node(i, FAB_ECANCELED, reason);
	for (int j = 0; j < 6; j++) {
		ck_assert_int_eq(fab_ctx_err(made[j]), FAB_ECANCELED);
		ck_assert_int_eq(fab_ctx_reason(made[j]), reason);
		fab_ctx_release(made[j]);
	}
	fab_ctx_release(r);
	expect_chans_untouched(from, B->nnodes);
	/* Other rounds' trees and root are not touched. */
	ck_assert_int_eq(fab_ctx_err(ROOT), 0);
}

START_TEST(t_many_waiters)
{
	begin("ctreemany");
	for (int k = 0; k < MT_SCALE(3, 2); k++)
		many_waiters_round(k, 1, NULL);
	finish();
}
END_TEST

START_TEST(t_many_waiters_racing)
{
	mt_rng rng = {mt_seed("t_many_waiters_racing")};
	begin("ctreemanyr");
	for (int k = 0; k < 4; k++)
		many_waiters_round(k, 0, &rng);
	finish();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mp_ctxtree");
	mt_init();

	TCase *tc = mt_tcase("tree", 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, t_tree_three_levels);
	tcase_add_test(tc, t_cancel_mid_spares_root);
	tcase_add_test(tc, t_never_uncancels);
	tcase_add_test(tc, t_concurrent_cancels_agree);
	tcase_add_test(tc, t_born_cancelled);
	tcase_add_test(tc, t_born_cancelled_race);
	tcase_add_test(tc, t_recancel_during_birth);
	tcase_add_test(tc, t_many_waiters);
	tcase_add_test(tc, t_many_waiters_racing);
	suite_add_tcase(s, tc);

	TCase *td = mt_tcase("deadline", 60);
	tcase_add_checked_fixture(td, setup, teardown);
	tcase_add_test(td, t_deadline_under_live_tree);
	tcase_add_test(td, t_shared_cancel_wakes_local_deadline);
	suite_add_tcase(s, td);

	/* First end counts, for local contexts (see the known failures noted
	 * at each test and in /tmp/fab-notes/ctx.md). */
	TCase *tf = mt_tcase("first_end", 60);
	tcase_add_checked_fixture(tf, setup, teardown);
	tcase_add_test(tf, t_local_child_keeps_first_end);
	tcase_add_test(tf, t_expired_local_not_recancelled);
	tcase_add_test(tf, t_local_deadline_stays_cancelled);
	suite_add_tcase(s, tf);
	return mt_run_suite(s);
}
