/*
 * pidns_test.c - processes of one fabric in different PID namespaces
 * (containers sharing /dev/shm) are not taken for dead by each other's
 * recovery, and a dead one is still recovered.
 *
 * A pid means nothing across PID namespaces: until 28 Nov 2026 (eleventh
 * session) a process in a new PID namespace that ran fab_fabric_recover
 * freed the process-table entry and attachments of a live process outside
 * it, and a process outside took the one inside (pid 1 there, the host's
 * init here) for dead and redelivered its at-least-once lease while it
 * worked.  libfab now backs every "dead" verdict with a liveness lock that
 * the kernel drops when the process dies (fabric/src/proc.c).
 *
 * How: the test process P leases message 0 of an at-least-once channel; a
 * child N enters a new PID namespace (unshare(CLONE_NEWPID)) and forks G,
 * pid 1 there, which runs fab_fabric_recover (must not touch P), then
 * leases message 1 and waits.  P runs fab_fabric_recover (must not touch
 * G), receives message 2 (the implicit ack of its own lease must still
 * work), then kills G: recovery now gives message 1 back.  Children never
 * assert (PLATFORM.md §5); they report through shared memory and exit
 * codes.  Needs CAP_SYS_ADMIN for the namespace: without it main() exits
 * 77 and ctest reports the test as skipped.
 */
#include "../mp/mp_util.h"
#include "inspect.h"

#include <sched.h>

static struct pidns_shared {
	volatile int g_recover;  /* G's fab_fabric_recover result */
	volatile int g_leased;   /* 1 once G holds its lease */
	volatile long g_value;   /* the message G leased */
	volatile pid_t g_pid;    /* G as the parent namespace sees it */
	volatile int g_fail;     /* G's failing step, 0 none */
} *S;
static const char *F;

static int grandchild(void)
{
	fab_fabric *f = NULL;
	fab_chan *c = NULL;
	if (fab_fabric_open(F, 0, &f))
		return S->g_fail = 20;
	S->g_recover = fab_fabric_recover(f);
	if (fab_chan_open(f, "q", FAB_RECV, &c))
		return S->g_fail = 21;
	long v = -1;
	if (fab_recv(c, &v, sizeof v, NULL) != (ssize_t)sizeof v)
		return S->g_fail = 22;
	S->g_value = v;
	__atomic_store_n(&S->g_leased, 1, __ATOMIC_RELEASE);
	for (;;)
		pause();
}

/* N: a new PID namespace for its children, then G, waited for. */
static int ns_child(void *arg)
{
	(void)arg;
	if (unshare(CLONE_NEWPID) < 0)
		return 77;
	pid_t g = fork();
	if (g < 0)
		return 23;
	if (g == 0)
		_exit(grandchild());
	S->g_pid = g;
	int st = 0;
	waitpid(g, &st, 0);
	return WIFSIGNALED(st) ? 0 : 24;
}

START_TEST(t_other_namespace)
{
	F = mt_fabric_name("pidns");
	S = mt_shared(sizeof *S);
	ck_assert_ptr_nonnull(S);
	fab_fabric *fab = NULL;
	fab_chan *c = NULL, *rx = NULL;
	ck_assert_int_eq(fab_fabric_open(F, FAB_CREATE, &fab), 0);
	fab_chan_opts o = {.size = sizeof o, .kind = FAB_MPMC, .capacity = 8, .msg_size = 8,
			   .delivery = FAB_AT_LEAST_ONCE};
	ck_assert_int_eq(fab_chan_create(fab, "q", &o, &c), 0);
	for (long i = 0; i < 3; i++)
		ck_assert_int_eq(fab_send(c, &i, sizeof i, NULL), 0);
	ck_assert_int_eq(fab_chan_open(fab, "q", FAB_RECV, &rx), 0);
	long v = -1;
	ck_assert_int_eq(fab_recv(rx, &v, sizeof v, NULL), (ssize_t)sizeof v);
	ck_assert_int_eq(v, 0); /* P's lease */

	pid_t n = mt_spawn(ns_child, NULL);
	int code = MT_RUNNING;
	/* Also g_pid: N stores it after its fork, maybe after G's report
	 * (review: a kill of pid 0 would hit the test's own group). */
	ck_assert_msg(MT_WAIT_UNTIL((__atomic_load_n(&S->g_leased, __ATOMIC_ACQUIRE) &&
				     S->g_pid > 0) ||
					    mt_exited(n, &code),
				    10 * MT_SEC),
		      "G never leased its message");
	ck_assert_msg(code == MT_RUNNING, "N exited %d (G's step %d)", code, S->g_fail);
	ck_assert_int_eq(S->g_value, 1);
	fab_stats st = {.size = sizeof st};
	ck_assert_int_eq(fab_chan_stats(c, &st), 0);
	uint64_t leased_after_g = st.leased;
	/* fabctl's view (the inspector): G, pid 1 in its namespace, is live. */
	int live_seen = -1, foreign_seen = -1;
	fi_fabric *fi = NULL;
	if (fi_open(F, &fi) == 0 && fi_snapshot(fi) == 0) {
		live_seen = foreign_seen = 0;
		for (uint32_t i = 0; i < fi->nprocs; i++) {
			live_seen += fi->procs[i].live;
			foreign_seen += fi->procs[i].foreign; /* fabctl ps: [?] other-ns */
		}
	}
	fi_close(fi);

	/* P's recovery must leave G's lease alone. */
	int prc = fab_fabric_recover(fab);
	ck_assert_int_eq(fab_chan_stats(c, &st), 0);
	uint64_t leased_after_p = st.leased;
	/* And G's recovery left P alone: P's next receive acks its lease
	 * (implicitly) and gets message 2; message 1 is still G's. */
	v = -1;
	ssize_t r2 = fab_try_recv(rx, &v, sizeof v);
	long v2 = v;
	ssize_t r3 = fab_try_recv(rx, &v, sizeof v);

	/* G dies: now its lease comes back. */
	kill(S->g_pid, SIGKILL);
	code = mt_wait(n, 10 * MT_SEC);
	int prc2 = fab_fabric_recover(fab);
	v = -1;
	ssize_t r4 = fab_try_recv(rx, &v, sizeof v);
	long v4 = v;

	ck_assert_msg(live_seen == 2 && foreign_seen == 1,
		      "fabctl's inspector counted %d live processes, %d of another PID namespace; "
		      "want 2 (the test process and G in its own PID namespace) and 1 (G)",
		      live_seen, foreign_seen);
	ck_assert_msg(S->g_recover == 0,
		      "G (another PID namespace) recovered %d objects of live processes",
		      S->g_recover);
	ck_assert_msg(leased_after_g == 2 && leased_after_p == 2,
		      "leases: %llu after G's recovery, %llu after P's; want 2 and 2 (P's and G's, "
		      "both alive)",
		      (unsigned long long)leased_after_g, (unsigned long long)leased_after_p);
	ck_assert_msg(prc == 0, "P recovered %d objects while everyone lived", prc);
	ck_assert_msg(r2 == (ssize_t)sizeof v && v2 == 2,
		      "P's receive after both recoveries: %zd (%s), value %ld; want message 2", r2,
		      r2 < 0 ? fab_errname((int)r2) : "ok", v2);
	ck_assert_msg(r3 == FAB_EAGAIN, "a second receive: %zd, want FAB_EAGAIN (1 is G's)", r3);
	ck_assert_msg(code == 0, "N exited %d", code);
	ck_assert_msg(prc2 > 0, "recovery after G died: %d", prc2);
	ck_assert_msg(r4 == (ssize_t)sizeof v && v4 == 1,
		      "after G died: %zd, value %ld; want message 1 back", r4, v4);
	fab_chan_release(rx);
	fab_chan_release(c);
	mt_destroy(F, &fab);
}
END_TEST

int main(void)
{
	/* Can this process make a PID namespace?  Probe in a child. */
	pid_t p = fork();
	if (p < 0)
		return 1;
	if (p == 0)
		_exit(unshare(CLONE_NEWPID) < 0 ? 77 : 0);
	int st = 0;
	if (waitpid(p, &st, 0) != p || !WIFEXITED(st))
		return 1;
	if (WEXITSTATUS(st) == 77) {
		fprintf(stderr, "SKIP: cannot create a PID namespace (needs CAP_SYS_ADMIN)\n");
		return 77;
	}
	mt_init();
	Suite *s = suite_create("crash_pidns");
	TCase *tc = mt_tcase("pidns", 60);
	tcase_add_test(tc, t_other_namespace);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
