/*
 * block_test.c - blocking and wakeup across processes (DESIGN §4
 * "Back-pressure").
 *
 * A receiver blocked on an empty channel is woken by a send from another
 * process; a sender blocked on a full channel is woken by a receive.  To
 * make "this side must have slept" deterministic the acting process waits
 * until the channel counts the peer in blocked_receivers/blocked_senders
 * (and, briefly, for futex_waits to move) before it acts; afterwards
 * futex_waits and futex_wakes must both be > 0.  While a sender is blocked
 * the channel holds exactly `capacity` messages.  An idle blocked receiver
 * must not burn CPU: its utime+stime (in clock ticks, /proc/<pid>/stat)
 * grows by at most a few ticks over ~0.5 s - a count, kept lenient.
 *
 * Child exit codes: 0 ok; 10 open; 11 send/recv failed; 13 wrong message.
 */
#include "mp_util.h"

struct cfg {
	const char *fabric;
	uint32_t kind, cap;
	unsigned nmsgs; /* producer: how many to send */
	int id;
	uint32_t msz; /* msg_size: 64, or 1024 for the spsc ring's larger-message line */
};

#define MSZ_MAX 1024u

static int consumer_one(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char buf[MSZ_MAX];
	uint32_t p, s;
	int rc = mt_open(c->fabric, "c", FAB_RECV, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open: %s", fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 40 * MT_SEC, &dl);
	for (unsigned i = 0; i < (c->nmsgs ? c->nmsgs : 1); i++) {
		ssize_t n = fab_recv(ch, buf, c->msz, dl);
		if (n < 0)
			MT_CHILD_FAIL(11, "recv: %s", fab_strerror((int)n));
		if (mt_verify(buf, (size_t)n, c->msz, &p, &s) != 0)
			MT_CHILD_FAIL(13, "corrupt message");
	}
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

static int producer_n(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char buf[MSZ_MAX];
	int rc = mt_open(c->fabric, "c", FAB_SEND, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "open: %s", fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 40 * MT_SEC, &dl);
	for (uint32_t s = 0; s < c->nmsgs; s++) {
		size_t len = mt_msg_len(1, s, c->msz);
		mt_fill(buf, 1, s, len);
		rc = fab_send(ch, buf, len, dl);
		if (rc != 0)
			MT_CHILD_FAIL(11, "send %u: %s", s, fab_strerror(rc));
	}
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

/* Give a peer that is counted as blocked the chance to reach its futex
 * sleep (the count includes "about to sleep").  Not an assertion: if the
 * counter never moves here the final check reports it. */
static void settle_until_slept(fab_chan *ch, uint64_t waits_before)
{
	(void)MT_WAIT_UNTIL(mt_stats(ch).futex_waits > waits_before, 2 * MT_SEC);
}

/* The receiver sleeps twice, and a send wakes it each time: the first send
 * of a handle takes the general path (it learns the room), the second the
 * fast line (or, for messages above 64 bytes on spsc, the larger-message
 * line), which must wake a sleeper as well. */
static void recv_wakeup(const char *tag, uint32_t kind, uint32_t cap, uint32_t msz)
{
	struct cfg c = {mt_fabric_name(tag), kind, cap, 2, 0, msz};
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	unsigned char buf[MSZ_MAX];
	int rc = mt_make_chan(c.fabric, "c", kind, cap, msz, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	rc = fab_chan_open(fab, "c", FAB_SEND, &ch);
	ck_assert_msg(rc == 0, "open: %s", fab_strerror(rc));

	pid_t cons = mt_spawn(consumer_one, &c);
	int code = MT_RUNNING;
	for (uint32_t r = 0; r < 2; r++) {
		uint64_t waits = mt_stats(ch).futex_waits;
		ck_assert_msg(MT_WAIT_UNTIL((mt_stats(ch).received == r &&
					     mt_stats(ch).blocked_receivers >= 1) ||
					    mt_exited(cons, &code),
					    30 * MT_SEC),
			      "receiver never counted as blocked (round %u)", r);
		settle_until_slept(ch, waits);
		ck_assert_msg(!mt_exited(cons, &code),
			      "receiver returned (exit %d) from an empty channel", code);
		size_t len = mt_msg_len(7, r, msz);
		/* A 1024-byte channel's message must take the larger-message
		 * line (the lengths are fixed by the generator). */
		ck_assert(msz <= 64 || len > 64);
		mt_fill(buf, 7, r, len);
		rc = fab_send(ch, buf, len, NULL);
		ck_assert_msg(rc == 0, "send %u: %s", r, fab_strerror(rc));
	}
	rc = mt_wait(cons, 30 * MT_SEC);
	ck_assert_msg(rc == 0, "woken receiver exited %d (-2 = never woke)", rc);
	fab_stats st = mt_stats(ch);
	ck_assert_msg(st.futex_waits >= 1, "receiver slept but futex_waits = %llu",
		      (unsigned long long)st.futex_waits);
	ck_assert_msg(st.futex_wakes >= 1, "sleeper woken but futex_wakes = %llu",
		      (unsigned long long)st.futex_wakes);
	ck_assert_uint_eq(st.blocked_receivers, 0);
	ck_assert_uint_eq(st.received, 2);
	fab_chan_release(ch);
	mt_kill_all();
	mt_destroy(c.fabric, &fab);
}

START_TEST(recv_wakeup_spsc)
{
	recv_wakeup("rws", FAB_SPSC, 4, 64);
	recv_wakeup("rwsb", FAB_SPSC, 4, 1024);
}
END_TEST

START_TEST(recv_wakeup_mpmc)
{
	recv_wakeup("rwm", FAB_MPMC, 4, 64);
}
END_TEST

START_TEST(recv_wakeup_unbuffered)
{
	recv_wakeup("rw0s", FAB_SPSC, 0, 64);
	recv_wakeup("rw0m", FAB_MPMC, 0, 64);
}
END_TEST

static void send_wakeup(const char *tag, uint32_t kind, uint32_t cap, uint32_t msz)
{
	struct cfg c = {mt_fabric_name(tag), kind, cap, cap + 1, 0, msz};
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	unsigned char buf[MSZ_MAX];
	uint32_t p, s;
	int rc = mt_make_chan(c.fabric, "c", kind, cap, msz, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	rc = fab_chan_open(fab, "c", FAB_RECV, &ch);
	/* As above: the receive that frees the sender takes the larger line. */
	ck_assert(msz <= 64 || mt_msg_len(1, 0, msz) > 64);
	ck_assert_msg(rc == 0, "open: %s", fab_strerror(rc));

	pid_t prod = mt_spawn(producer_n, &c);
	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL(mt_stats(ch).blocked_senders >= 1 || mt_exited(prod, &code),
				    30 * MT_SEC),
		      "sender never counted as blocked");
	ck_assert_msg(code == MT_RUNNING, "sender exited %d before blocking", code);
	settle_until_slept(ch, 0);
	/* Blocked exactly when `capacity` messages are queued. */
	ck_assert_uint_eq(fab_chan_len(ch), cap);
	ck_assert_uint_eq(mt_stats(ch).len, cap);
	ck_assert_msg(!mt_exited(prod, &code), "sender finished (exit %d) on a full channel", code);
	/* One receive must wake the sender: it then sends its last message
	 * and exits before we receive again (a later receive, which may take
	 * the general path, does not rescue a wake the first one missed). */
	for (uint32_t i = 0; i <= cap; i++) {
		ssize_t n = fab_recv(ch, buf, msz, NULL);
		ck_assert_msg(n >= 0, "recv %u: %s", i, fab_strerror((int)n));
		ck_assert_int_eq(mt_verify(buf, (size_t)n, msz, &p, &s), 0);
		ck_assert_uint_eq(s, i);
		if (i == 0) {
			rc = mt_wait(prod, 30 * MT_SEC);
			ck_assert_msg(rc == 0, "woken sender exited %d (-2 = never woke)", rc);
		}
	}
	fab_stats st = mt_stats(ch);
	ck_assert_msg(st.futex_waits >= 1, "sender slept but futex_waits = %llu",
		      (unsigned long long)st.futex_waits);
	ck_assert_msg(st.futex_wakes >= 1, "sleeper woken but futex_wakes = %llu",
		      (unsigned long long)st.futex_wakes);
	ck_assert_uint_eq(st.blocked_senders, 0);
	ck_assert_uint_eq(st.len, 0);
	ck_assert_int_eq(fab_try_recv(ch, buf, sizeof buf), FAB_EAGAIN);
	fab_chan_release(ch);
	mt_kill_all();
	mt_destroy(c.fabric, &fab);
}

START_TEST(send_wakeup_spsc)
{
	send_wakeup("sws", FAB_SPSC, 2, 64);
	send_wakeup("swsb", FAB_SPSC, 2, 1024);
}
END_TEST

START_TEST(send_wakeup_mpmc)
{
	send_wakeup("swm", FAB_MPMC, 2, 64);
	send_wakeup("swm1", FAB_MPMC, 1, 64);
}
END_TEST

START_TEST(send_wakeup_unbuffered)
{
	send_wakeup("sw0s", FAB_SPSC, 0, 64);
	send_wakeup("sw0m", FAB_MPMC, 0, 64);
}
END_TEST

/* Several receivers asleep on one mpmc channel; each send wakes one; no
 * wakeup is lost. */
START_TEST(wake_many_receivers)
{
	struct cfg c = {mt_fabric_name("wmany"), FAB_MPMC, 8, 0, 0, 64};
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	unsigned char buf[MSZ_MAX];
	pid_t kids[4];
	int rc = mt_make_chan(c.fabric, "c", FAB_MPMC, 8, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	rc = fab_chan_open(fab, "c", FAB_SEND, &ch);
	ck_assert_int_eq(rc, 0);
	for (int i = 0; i < 4; i++)
		kids[i] = mt_spawn(consumer_one, &c);
	ck_assert_msg(MT_WAIT_UNTIL(mt_stats(ch).blocked_receivers >= 4, 30 * MT_SEC),
		      "only %u receivers blocked", mt_stats(ch).blocked_receivers);
	settle_until_slept(ch, 3);
	for (uint32_t i = 0; i < 4; i++) {
		size_t len = mt_msg_len(2, i, 64);
		mt_fill(buf, 2, i, len);
		ck_assert_int_eq(fab_send(ch, buf, len, NULL), 0);
	}
	for (int i = 0; i < 4; i++) {
		rc = mt_wait(kids[i], 30 * MT_SEC);
		ck_assert_msg(rc == 0, "receiver %d exited %d (-2 = never woke)", i, rc);
	}
	fab_stats st = mt_stats(ch);
	ck_assert_uint_eq(st.received, 4);
	ck_assert_uint_eq(st.blocked_receivers, 0);
	ck_assert(st.futex_waits >= 1 && st.futex_wakes >= 1);
	fab_chan_release(ch);
	mt_kill_all();
	mt_destroy(c.fabric, &fab);
}
END_TEST

/* utime + stime of a process, in clock ticks; -1 if unreadable. */
static long long cpu_ticks(pid_t pid)
{
	char path[64], line[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(line, 1, sizeof line - 1, f);
	fclose(f);
	line[n] = '\0';
	char *p = strrchr(line, ')');
	unsigned long long ut, st;
	/* after "pid (comm)": state(3) ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime(14) stime(15) */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

static void idle_receiver(const char *tag, uint32_t kind)
{
	struct cfg c = {mt_fabric_name(tag), kind, 16, 0, 0, 64};
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	unsigned char buf[MSZ_MAX];
	int rc = mt_make_chan(c.fabric, "c", kind, 16, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	rc = fab_chan_open(fab, "c", FAB_SEND, &ch);
	ck_assert_int_eq(rc, 0);
	pid_t cons = mt_spawn(consumer_one, &c);
	ck_assert(MT_WAIT_UNTIL(mt_stats(ch).blocked_receivers >= 1, 30 * MT_SEC));
	settle_until_slept(ch, 0);
	usleep(100 * 1000); /* past any adaptive spin */
	long long t0 = cpu_ticks(cons);
	usleep(500 * 1000);
	long long t1 = cpu_ticks(cons);
	ck_assert(t0 >= 0 && t1 >= 0);
	printf("idle blocked receiver (%s): %lld CPU ticks in 0.5 s (CLK_TCK %ld)\n",
	       kind == FAB_SPSC ? "spsc" : "mpmc", t1 - t0, sysconf(_SC_CLK_TCK));
	ck_assert_msg(t1 - t0 <= 5, "blocked receiver used %lld CPU ticks in 0.5 s", t1 - t0);
	size_t len = mt_msg_len(3, 3, 64);
	mt_fill(buf, 3, 3, len);
	ck_assert_int_eq(fab_send(ch, buf, len, NULL), 0);
	rc = mt_wait(cons, 30 * MT_SEC);
	ck_assert_msg(rc == 0, "receiver exited %d", rc);
	ck_assert(mt_stats(ch).futex_waits >= 1);
	fab_chan_release(ch);
	mt_kill_all();
	mt_destroy(c.fabric, &fab);
}

START_TEST(idle_receiver_no_cpu)
{
	idle_receiver("idls", FAB_SPSC);
	idle_receiver("idlm", FAB_MPMC);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mp_block");
	TCase *tc = mt_tcase("block", 60);
	mt_init();
	tcase_add_test(tc, recv_wakeup_spsc);
	tcase_add_test(tc, recv_wakeup_mpmc);
	tcase_add_test(tc, recv_wakeup_unbuffered);
	tcase_add_test(tc, send_wakeup_spsc);
	tcase_add_test(tc, send_wakeup_mpmc);
	tcase_add_test(tc, send_wakeup_unbuffered);
	tcase_add_test(tc, wake_many_receivers);
	tcase_add_test(tc, idle_receiver_no_cpu);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
