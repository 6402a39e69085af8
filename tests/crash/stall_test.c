/*
 * stall_test.c - deterministic regression tests for liveness bugs (a caller
 * blocked for good although progress was possible) found by review.  Each
 * test builds, through layout.h, fork/SIGKILL and SIGSTOP, the exact state
 * the bug needed, then requires the blocked caller to come back.  Hang
 * detectors are bounded waits of a few seconds for something that must
 * happen; a child is "asleep" when /proc/<pid>/syscall shows it in futex.
 *
 * unbuffered_sender_taker_killed_before_wake: a blocked unbuffered fab_send
 *   sleeps until the receiver that takes its message wakes it.  A receiver
 *   SIGKILLed between its take and that wake left the sender asleep forever
 *   although its send had completed.
 *
 * select_send_case_missed_slow_receiver: a select's unbuffered send case
 *   offers only while a receiver is announced, waits 2 ms for the take,
 *   withdraws and sleeps until a receiver announces itself anew.  An already
 *   announced receiver that did not run in those 2 ms (SIGSTOP here) went
 *   back to sleep without a word: both sides blocked forever.
 *
 * select_polls_every_stuck_case: the select's liveness poll checked only the
 *   first case (in its shuffled order) stuck behind another process's slot.
 *   A case behind a live writer hid one behind a dead writer: no recovery,
 *   and the select blocked although that case had a message queued.
 *
 * close_quorum_closer_killed_after_id: fab_chan_close records the producer id
 *   and then counts it.  A closer killed in between left its id uncounted;
 *   its restarted replica was refused ("already closed") and the quorum was
 *   never reached: the channel never closed, receivers never drained.
 *
 * close_killed_before_wake: the closer completing the quorum stores `closed`
 *   and then wakes every sleeper.  Killed in between, it left receivers asleep
 *   for good: neither fab_fabric_recover nor a second close woke them.
 *
 * close_race_skip_wakes_draining_receiver: a producer that claims a slot after
 *   the close turns it into a SKIP, with no wake.  A receiver whose last look
 *   before sleeping saw that claim (WRITING, "not empty") slept with the
 *   closer's wake already past: never FAB_ECLOSED.  Staged in the receiver:
 *   clock_gettime (fab__wait_mark's read) is interposed to close just before
 *   its announce, and page protections stop it between its two looks.
 *
 * alo_drain_behind_dead_returner: an at-least-once lessee killed in fab_nack
 *   between RETURNING and FULL left the slot at head RETURNING; the draining
 *   receiver of the closed channel called the ring "not empty", named no owner
 *   to watch and slept: the message was never redelivered, the drain never
 *   ended.
 *
 * ctx_canceller_killed_mid_cancel: fab_ctx_cancel ends the root's word, wakes
 *   its sleepers, then walks the subtree.  A canceller killed after the end
 *   left the root's sleepers asleep and the descendants live; a second cancel
 *   and fab_fabric_recover did nothing.
 *
 * lost_wake_after_recovery_{a,b,c}: a peer SIGKILLed after publishing (a
 *   message, or a free slot) but before its wake left the other side asleep
 *   for good although it could progress, and fab_fabric_recover (what fabd
 *   runs on every death) did not wake it: recovery woke sleepers only when
 *   it repaired a slot or an spsc end, not when it merely detached the dead
 *   handle, and an spsc end taken over from a dead holder woke nobody.
 *   a: mpmc, capacity 1, a sender asleep on the full channel; the receiver
 *      takes the message and frees the slot (READING, head, FREE) and is
 *      killed before its wake; fab_fabric_recover runs.
 *   b: mpmc, a receiver asleep on the empty channel; a producer commits
 *      (WRITING, tail, payload, FULL) and is killed before its wake;
 *      fab_fabric_recover runs.
 *   c: spsc, capacity 1, a sender asleep on the full channel; the receiver
 *      stores head and is killed before its wake; no recovery (no broker):
 *      the next receiver takes the dead one's end over.  (A recovery would
 *      release the end and wake: that path always woke.)
 *
 * Children never ck_assert: codes 20..29 are their setup failures, 10 a wrong
 * result, 30 a timeout the test asked for; the parent asserts.  getrandom and
 * clock_gettime are interposed for the whole binary but are pass-through
 * except in the one child of one test that arms each.
 */
#include "../mp/mp_util.h"

#include "layout.h"

#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/syscall.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

/* ctx.c's values of a context's cancel word. */
#define ST_CTX_CANCELED 1u
#define ST_CTX_ENDING 3u

/* ---- interpositions (pass-through unless armed) ------------------------- */

/* select_polls_every_stuck_case: the select child fixes its shuffle seed. */
static volatile int st_fixed_random;

ssize_t getrandom(void *buf, size_t n, unsigned int flags)
{
	if (st_fixed_random) {
		memset(buf, 0x5a, n);
		return (ssize_t)n;
	}
	return (ssize_t)syscall(SYS_getrandom, buf, n, flags);
}

/* close_race_skip_wakes_draining_receiver: the receiver's staging. */
static struct {
	volatile int armed; /* the next clock read is fab__wait_mark's */
	int to_parent[2], to_child[2];
	uint8_t *hdr_page, *slot_page; /* in the library's mapping */
	long pg;
	fab_chan_hdr *h; /* our own mapping, for the producer's writes */
	uint64_t q;
	struct st_r7_shared {
		volatile int phase, bad;
	} *sh;
} r7;

int clock_gettime(clockid_t id, struct timespec *ts)
{
	if (r7.armed) {
		r7.armed = 0;
		char b = 'c';
		/* The parent closes the channel (its wake_all finds nobody)
		 * just before our announce; then stop at the next look at q. */
		if (write(r7.to_parent[1], &b, 1) != 1 || read(r7.to_child[0], &b, 1) != 1)
			r7.sh->bad = 1;
		mprotect(r7.slot_page, (size_t)r7.pg, PROT_NONE);
		r7.sh->phase = 1;
	}
	return (int)syscall(SYS_clock_gettime, id, ts);
}

/* ---- helpers -------------------------------------------------------------- */

/* Map a fabric's segment (chan NULL: the control segment); NULL on error. */
static void *st_map(const char *fabric, const char *chan, size_t *size)
{
	char path[160];
	struct stat sb;
	if (chan)
		snprintf(path, sizeof path, "/fab.%s.%s", fabric, chan);
	else
		snprintf(path, sizeof path, "/fab.%s", fabric);
	int fd = shm_open(path, O_RDWR, 0);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &sb) != 0) {
		close(fd);
		return NULL;
	}
	void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return NULL;
	if (size)
		*size = (size_t)sb.st_size;
	return p;
}

static fab_chan_hdr *st_map_chan(const char *fabric, const char *chan, size_t *size)
{
	fab_chan_hdr *h = st_map(fabric, chan, size);
	ck_assert_msg(h != NULL, "map /fab.%s.%s: %s", fabric, chan, strerror(errno));
	return h;
}

static fab_mslot *st_slot(fab_chan_hdr *h, uint64_t pos)
{
	return (fab_mslot *)((uint8_t *)h + h->slots_off +
			     (size_t)(pos & (h->nslots - 1)) * h->slot_size);
}

/* This process's owner tag in the fabric (after opening it), 0 if none. */
static uint32_t st_my_tag(const char *fabric)
{
	fab_ctl_hdr *ctl = st_map(fabric, NULL, NULL);
	if (!ctl)
		return 0;
	fab_proc_ent *e = (fab_proc_ent *)((uint8_t *)ctl + ctl->procs_off);
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
		uint64_t sg = atomic_load(&e[i].sg);
		if (FAB_SG_STATE(sg) == FAB_PROC_LIVE && atomic_load(&e[i].pid) == (uint32_t)getpid())
			return FAB_TAG_MAKE(i, FAB_SG_GEN(sg));
	}
	return 0;
}

/* Checked fixture: children are killed and reaped whatever happened. */
static void teardown(void)
{
	mt_kill_all();
}

/* Per-test state, inherited by the children. */
static struct {
	const char *fabric;
	fab_chan_hdr *h;
	size_t hsize;
	fab_mslot *slot;
	uint64_t pos;
	int a_idx; /* select_polls_every_stuck_case: where case A goes */
} S;

/* ---- unbuffered_sender_taker_killed_before_wake -------------------------- */

static int r1_sender(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *tx = NULL;
	(void)arg;
	int rc = mt_open(S.fabric, "u", FAB_SEND, &f, &tx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	rc = fab_send(tx, "hello", 6, NULL);
	if (rc)
		MT_CHILD_FAIL(10, "send: %s", fab_strerror(rc));
	mt_close(f, tx);
	return 0;
}

/* fab__mpmc_take's CAS and head bump, then SIGKILL before any wake. */
static int r1_taker(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *rx = NULL;
	(void)arg;
	int rc = mt_open(S.fabric, "u", FAB_RECV, &f, &rx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	uint32_t tag = st_my_tag(S.fabric);
	uint64_t w = atomic_load(&S.slot->state);
	if (!tag || FAB_SW_STATE(w) != FAB_SLOT_FULL)
		MT_CHILD_FAIL(21, "tag %#x, slot %#llx not FULL", tag, (unsigned long long)w);
	if (!atomic_compare_exchange_strong(&S.slot->state, &w,
					    FAB_SW_MAKE(S.pos, FAB_SLOT_READING, tag)))
		MT_CHILD_FAIL(22, "take CAS lost");
	uint64_t hp = S.pos;
	atomic_compare_exchange_strong(&S.h->head, &hp, S.pos + 1);
	raise(SIGKILL);
	return 23;
}

START_TEST(unbuffered_sender_taker_killed_before_wake)
{
	fab_fabric *fab = NULL;
	S.fabric = mt_fabric_name("stu");
	int rc = mt_make_chan(S.fabric, "u", FAB_MPMC, 0, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	S.h = st_map_chan(S.fabric, "u", &S.hsize);
	S.pos = S.h->start_pos;
	S.slot = st_slot(S.h, S.pos);

	/* The sender publishes its message and sleeps waiting for the take. */
	pid_t s = mt_spawn(r1_sender, NULL);
	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL((FAB_SW_STATE(atomic_load(&S.slot->state)) == FAB_SLOT_FULL &&
				     atomic_load(&S.h->send_waiters) == 1 && mt_in_futex(s)) ||
					    mt_exited(s, &code),
				    10 * MT_SEC),
		      "sender never slept with its message published (slot %#llx)",
		      (unsigned long long)atomic_load(&S.slot->state));
	ck_assert_msg(code == MT_RUNNING, "sender returned (exit %d) with no receiver", code);

	pid_t c = mt_spawn(r1_taker, NULL);
	rc = mt_wait(c, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "taker ended with %d", rc);
	ck_assert_uint_eq(FAB_SW_STATE(atomic_load(&S.slot->state)), FAB_SLOT_READING);

	/* Its message was taken: the send has completed and must return. */
	rc = mt_wait(s, 5 * MT_SEC);
	ck_assert_msg(rc == 0,
		      "fab_send exited %d%s: its message was taken by a receiver killed before "
		      "the wake (slot %#llx)",
		      rc, mt_code_why(rc), (unsigned long long)atomic_load(&S.slot->state));
	munmap(S.h, S.hsize);
	mt_destroy(S.fabric, &fab);
}
END_TEST

/* ---- select_send_case_missed_slow_receiver ------------------------------- */

static int r2_receiver(void *arg)
{
	(void)arg;
	return mt_child_recv_one(S.fabric, "u", "hello");
}

static int r2_select(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *tx = NULL;
	(void)arg;
	int rc = mt_open(S.fabric, "u", FAB_SEND, &f, &tx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	fab_case c = {.ch = tx, .op = FAB_OP_SEND, .send_msg = "hello", .send_len = 6};
	int k = fab_select(&c, 1, NULL, 0);
	if (k != 0 || c.result != 0)
		MT_CHILD_FAIL(10, "select: %d, result %zd", k, (ssize_t)c.result);
	mt_close(f, tx);
	return 0;
}

START_TEST(select_send_case_missed_slow_receiver)
{
	fab_fabric *fab = NULL;
	S.fabric = mt_fabric_name("sts");
	int rc = mt_make_chan(S.fabric, "u", FAB_MPMC, 0, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	S.h = st_map_chan(S.fabric, "u", &S.hsize);

	/* A receiver announced (recv_ready) and asleep ... */
	pid_t r = mt_spawn(r2_receiver, NULL);
	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL((atomic_load(&S.h->recv_ready) == 1 &&
				     atomic_load(&S.h->recv_waiters) == 1 && mt_in_futex(r)) ||
					    mt_exited(r, &code),
				    10 * MT_SEC),
		      "receiver never slept");
	ck_assert_msg(code == MT_RUNNING, "receiver returned (exit %d) on an empty channel", code);
	/* ... that does not run for a while (longer than the offer's 2 ms). */
	ck_assert_int_eq(kill(r, SIGSTOP), 0);
	ck_assert_msg(MT_WAIT_UNTIL(mt_proc_state(r) == 'T', 10 * MT_SEC), "receiver not stopped");

	/* The select offers, gets no take, withdraws and sleeps: in futex
	 * means past its offer (the 2 ms wait for the take spins). */
	pid_t s = mt_spawn(r2_select, NULL);
	int scode = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL((atomic_load(&S.h->send_waiters) == 1 && mt_in_futex(s)) ||
					    mt_exited(s, &scode),
				    10 * MT_SEC),
		      "select never slept");
	ck_assert_msg(scode == MT_RUNNING, "select returned (exit %d) with the receiver stopped",
		      scode);
	ck_assert_int_eq(kill(r, SIGCONT), 0);

	/* Both sides wait for each other on the same channel: they must meet. */
	pid_t both[2] = {r, s};
	int codes[2];
	(void)mt_wait_all(both, 2, 5 * MT_SEC, codes);
	ck_assert_msg(codes[0] == 0 && codes[1] == 0,
		      "receiver exited %d%s, select (send case) exited %d%s, on the same "
		      "unbuffered channel (recv_ready %u, send_waiters %u)",
		      codes[0], mt_code_why(codes[0]), codes[1], mt_code_why(codes[1]),
		      atomic_load(&S.h->recv_ready), atomic_load(&S.h->send_waiters));
	munmap(S.h, S.hsize);
	mt_destroy(S.fabric, &fab);
}
END_TEST

/* ---- select_polls_every_stuck_case --------------------------------------- */

/* A producer holding a reservation: killed between claim and commit, or
 * alive in the middle of a long reserve/commit. */
static int r3_reserver(void *arg)
{
	const char *name = arg;
	fab_fabric *f = NULL;
	fab_chan *tx = NULL;
	void *slot = NULL;
	int rc = mt_open(S.fabric, name, FAB_SEND, &f, &tx);
	if (rc)
		MT_CHILD_FAIL(20, "open %s: %s", name, fab_strerror(rc));
	rc = fab_send_reserve(tx, 8, &slot, NULL);
	if (rc)
		MT_CHILD_FAIL(21, "reserve %s: %s", name, fab_strerror(rc));
	if (strcmp(name, "b") == 0)
		raise(SIGKILL);
	for (;;)
		pause();
}

static int r3_select(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *ra = NULL, *rb = NULL;
	fab_ctx *t = NULL;
	char ba[64], bb[64] = {0};
	(void)arg;
	int rc = mt_open(S.fabric, "a", FAB_RECV, &f, &ra);
	if (rc)
		MT_CHILD_FAIL(20, "open a: %s", fab_strerror(rc));
	if ((rc = fab_chan_open(f, "b", FAB_RECV, &rb)) != 0)
		MT_CHILD_FAIL(21, "open b: %s", fab_strerror(rc));
	if ((rc = fab_ctx_with_timeout(NULL, 3 * MT_SEC, &t)) != 0) /* the hang detector */
		MT_CHILD_FAIL(22, "ctx: %s", fab_strerror(rc));
	int ia = S.a_idx, ib = 1 - S.a_idx;
	fab_case c[2];
	memset(c, 0, sizeof c);
	c[ia] = (fab_case){.ch = ra, .op = FAB_OP_RECV, .recv_buf = ba, .recv_cap = sizeof ba};
	c[ib] = (fab_case){.ch = rb, .op = FAB_OP_RECV, .recv_buf = bb, .recv_cap = sizeof bb};
	st_fixed_random = 1; /* the same shuffle in both runs */
	int k = fab_select(c, 2, t, 0);
	st_fixed_random = 0;
	if (k == FAB_ETIMEDOUT)
		return 30;
	if (k != ib || c[ib].result != 3 || strcmp(bb, "m1") != 0)
		MT_CHILD_FAIL(10, "select: %d (%s), result %zd", k, k < 0 ? fab_strerror(k) : "",
			      c[k >= 0 ? k : 0].result);
	fab_ctx_release(t);
	return 0;
}

/* Case A (recv a) is stuck behind a live writer, case B (recv b) behind a
 * dead one with m1 queued after it; A is case a_idx of the select. */
static void r3_run(const char *tag, int a_idx)
{
	fab_fabric *fab = NULL;
	S.fabric = mt_fabric_name(tag);
	S.a_idx = a_idx;
	int rc = mt_make_chan(S.fabric, "a", FAB_MPMC, 4, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create a: %s", fab_strerror(rc));
	rc = mt_make_chan(S.fabric, "b", FAB_MPMC, 4, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create b: %s", fab_strerror(rc));
	size_t na = 0, nb = 0;
	fab_chan_hdr *ha = st_map_chan(S.fabric, "a", &na), *hb = st_map_chan(S.fabric, "b", &nb);
	fab_mslot *sa = st_slot(ha, ha->start_pos), *sb = st_slot(hb, hb->start_pos);

	pid_t live = mt_spawn(r3_reserver, "a");
	pid_t dead = mt_spawn(r3_reserver, "b");
	rc = mt_wait(dead, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "dying producer ended with %d", rc);
	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL(FAB_SW_STATE(atomic_load(&sa->state)) == FAB_SLOT_WRITING ||
					    mt_exited(live, &code),
				    10 * MT_SEC),
		      "live producer never reserved (exit %d)", code);
	ck_assert_msg(code == MT_RUNNING, "live producer exited %d", code);
	ck_assert_uint_eq(FAB_SW_STATE(atomic_load(&sb->state)), FAB_SLOT_WRITING);
	fab_chan *b = NULL;
	ck_assert_int_eq(fab_chan_open(fab, "b", FAB_SEND, &b), 0);
	ck_assert_int_eq(fab_send(b, "m1", 3, NULL), 0); /* position 1 of b */

	pid_t sel = mt_spawn(r3_select, NULL);
	rc = mt_wait(sel, 10 * MT_SEC);
	ck_assert_msg(rc == 0,
		      "run %s (recv a behind a live writer is case %d): fab_select over {recv a, "
		      "recv b behind a dead writer with m1 queued} exited %d%s%s",
		      tag, a_idx, rc, rc == 30 ? " (timed out after 3 s)" : "", mt_code_why(rc));
	/* The select recovered b's position 0 (skipped) and took m1. */
	ck_assert_uint_eq(fab_chan_len(b), 0);

	kill(live, SIGKILL);
	rc = mt_wait(live, 10 * MT_SEC);
	ck_assert_int_eq(rc, 128 + SIGKILL);
	fab_chan_release(b);
	munmap(ha, na);
	munmap(hb, nb);
	mt_destroy(S.fabric, &fab);
}

START_TEST(select_polls_every_stuck_case)
{
	/* The shuffle is fixed (getrandom interposed in the select child), so
	 * case A comes first in its pass order in exactly one of the runs. */
	r3_run("stp0", 0);
	r3_run("stp1", 1);
}
END_TEST

/* ---- close_quorum_closer_killed_after_id --------------------------------- */

/* fab__producer_hash (FNV-1a; chan.c). */
static uint64_t st_producer_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return h ? h : 1;
}

/* Replica stage.0 closes and is killed right after recording its id. */
static int r4a_closer(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *tx = NULL;
	(void)arg;
	int rc = mt_open(S.fabric, "c", FAB_SEND, &f, &tx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	uint64_t z = 0;
	if (!atomic_compare_exchange_strong(&S.h->closer_ids[0], &z, st_producer_hash("stage.0")))
		MT_CHILD_FAIL(21, "closer_ids[0] taken");
	raise(SIGKILL);
	return 22;
}

START_TEST(close_quorum_closer_killed_after_id)
{
	fab_fabric *fab = NULL;
	S.fabric = mt_fabric_name("stq");
	int rc = mt_make_chan(S.fabric, "c", FAB_MPMC, 4, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	S.h = st_map_chan(S.fabric, "c", &S.hsize);

	pid_t c = mt_spawn(r4a_closer, NULL);
	rc = mt_wait(c, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "closer ended with %d", rc);
	fab_fabric_recover(fab); /* fabd, on the death */

	/* fabd restarts the replica; it closes again, as itself, and is
	 * recognised as the producer that closed (not counted twice). */
	fab_chan *tx = NULL, *rx = NULL;
	ck_assert_int_eq(fab_chan_open(fab, "c", FAB_SEND, &tx), 0);
	rc = fab_chan_close_as(tx, "stage.0");
	ck_assert_msg(rc == FAB_ECLOSED, "re-close by the restarted replica: %s", fab_errname(rc));

	/* The only producer closed: a receiver of the empty channel drains. */
	ck_assert_int_eq(fab_chan_open(fab, "c", FAB_RECV, &rx), 0);
	fab_ctx *t = NULL;
	char buf[64];
	ck_assert_int_eq(fab_ctx_with_timeout(NULL, 2 * MT_SEC, &t), 0);
	ssize_t n = fab_recv(rx, buf, sizeof buf, t);
	fab_ctx_release(t);
	ck_assert_msg(n == FAB_ECLOSED,
		      "the only producer closed (first attempt killed after recording its id), "
		      "yet fab_recv returned %s, not FAB_ECLOSED (closed %u, closes %u of 1)",
		      fab_errname((int)n), atomic_load(&S.h->closed), atomic_load(&S.h->closes));
	ck_assert_uint_eq(mt_stats(rx).closed, 1);
	fab_chan_release(rx);
	fab_chan_release(tx);
	munmap(S.h, S.hsize);
	mt_destroy(S.fabric, &fab);
}
END_TEST

/* ---- close_killed_before_wake -------------------------------------------- */

static int r4b_receiver(void *arg)
{
	(void)arg;
	return mt_child_recv_one(S.fabric, "c", NULL);
}

/* fab_chan_close up to and including the store of `closed`, then SIGKILL
 * before fab__wake_all. */
static int r4b_closer(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *tx = NULL;
	(void)arg;
	int rc = mt_open(S.fabric, "c", FAB_SEND, &f, &tx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	uint64_t z = 0;
	if (!atomic_compare_exchange_strong(&S.h->closer_ids[0], &z, 0x1234567ULL))
		MT_CHILD_FAIL(21, "closer_ids[0] taken");
	atomic_fetch_add(&S.h->closes, 1);
	atomic_store(&S.h->closed, 1);
	raise(SIGKILL);
	return 22;
}

START_TEST(close_killed_before_wake)
{
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	S.fabric = mt_fabric_name("stw");
	int rc = mt_make_chan(S.fabric, "c", FAB_MPMC, 4, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	S.h = st_map_chan(S.fabric, "c", &S.hsize);

	pid_t r = mt_spawn(r4b_receiver, NULL);
	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL((atomic_load(&S.h->recv_waiters) == 1 && mt_in_futex(r)) ||
					    mt_exited(r, &code),
				    10 * MT_SEC),
		      "receiver never slept");
	ck_assert_msg(code == MT_RUNNING, "receiver returned (exit %d) on an empty channel", code);

	pid_t c = mt_spawn(r4b_closer, NULL);
	rc = mt_wait(c, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "closer ended with %d", rc);
	fab_fabric_recover(fab); /* fabd, on the closer's death */
	ck_assert_int_eq(fab_chan_open(fab, "c", FAB_SEND, &ch), 0);
	int rc2 = fab_chan_close(ch); /* and any other close */
	ck_assert_msg(rc2 == FAB_ECLOSED, "second close: %s", fab_errname(rc2));

	rc = mt_wait(r, 5 * MT_SEC);
	ck_assert_msg(rc == 0,
		      "receiver exited %d%s after the channel closed (closed %u; its closer was "
		      "killed before the wake; fab_fabric_recover and a second close ran)",
		      rc, mt_code_why(rc), atomic_load(&S.h->closed));
	fab_chan_release(ch);
	munmap(S.h, S.hsize);
	mt_destroy(S.fabric, &fab);
}
END_TEST

/* ---- close_race_skip_wakes_draining_receiver ---------------------------- */

static void r7_on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	uint8_t *pg = (uint8_t *)((uintptr_t)si->si_addr & ~(uintptr_t)(r7.pg - 1));
	size_t n = (size_t)r7.pg;
	if (r7.sh->phase == 1 && pg == r7.slot_page) {
		/* fab__mpmc_take's load of slot q: let it read FREE(q); stop
		 * at its re-read of head (header page). */
		mprotect(r7.slot_page, n, PROT_READ | PROT_WRITE);
		mprotect(r7.hdr_page, n, PROT_NONE);
		r7.sh->phase = 2;
	} else if (r7.sh->phase == 2 && pg == r7.hdr_page) {
		/* The take is done (EAGAIN); stop at closed_empty's look at q. */
		mprotect(r7.hdr_page, n, PROT_READ | PROT_WRITE);
		mprotect(r7.slot_page, n, PROT_NONE);
		r7.sh->phase = 3;
	} else if (r7.sh->phase == 3 && pg == r7.slot_page) {
		/* A producer that checked `closed` before the close claims q
		 * (FREE -> WRITING, tail q+1), sees `closed` at its commit and
		 * skips q (WRITING -> SKIP): fab__send_closed, minus any wake. */
		fab_mslot *s = st_slot(r7.h, r7.q);
		atomic_store(&s->state, FAB_SW_MAKE(r7.q, FAB_SLOT_WRITING, 0x8001));
		uint64_t t = r7.q;
		atomic_compare_exchange_strong(&r7.h->tail, &t, r7.q + 1);
		atomic_store(&s->state, FAB_SW_MAKE(r7.q, FAB_SLOT_SKIP, 0));
		mprotect(r7.slot_page, n, PROT_READ | PROT_WRITE);
		r7.sh->phase = 4;
	} else {
		r7.sh->bad = 2;
		mprotect(r7.slot_page, n, PROT_READ | PROT_WRITE);
		mprotect(r7.hdr_page, n, PROT_READ | PROT_WRITE);
	}
}

static int r7_receiver(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *rx = NULL;
	char buf[64], path[160];
	uint8_t *known[16];
	int nk = 0, rc;
	(void)arg;
	close(r7.to_parent[0]);
	close(r7.to_child[1]);
	r7.pg = sysconf(_SC_PAGESIZE);
	r7.h = st_map(S.fabric, "c", NULL);
	if (!r7.h)
		MT_CHILD_FAIL(20, "map");
	r7.q = r7.h->start_pos;
	snprintf(path, sizeof path, "/dev/shm/fab.%s.c", S.fabric);
	for (uint8_t *x; nk < 16 && (x = mt_new_map(path, known, nk));)
		known[nk++] = x;
	if ((rc = mt_open(S.fabric, "c", FAB_RECV, &f, &rx)) != 0)
		MT_CHILD_FAIL(21, "open: %s", fab_strerror(rc));
	uint8_t *lib = mt_new_map(path, known, nk);
	if (!lib)
		MT_CHILD_FAIL(22, "the library's mapping of %s not found", path);
	r7.hdr_page = lib;
	r7.slot_page = (uint8_t *)((uintptr_t)(lib + r7.h->slots_off +
					       (r7.q & (r7.h->nslots - 1)) * r7.h->slot_size) &
				   ~(uintptr_t)(r7.pg - 1));
	if (r7.slot_page == r7.hdr_page)
		MT_CHILD_FAIL(23, "slot %llu shares the header's page", (unsigned long long)r7.q);
	struct sigaction sa = {.sa_sigaction = r7_on_segv, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) != 0)
		MT_CHILD_FAIL(24, "sigaction");
	r7.armed = 1;
	ssize_t n = fab_recv(rx, buf, sizeof buf, NULL);
	r7.armed = 0;
	if (n != FAB_ECLOSED)
		MT_CHILD_FAIL(10, "recv: %zd (%s)", n, n < 0 ? fab_errname((int)n) : "a message");
	mt_close(f, rx);
	return 0;
}

START_TEST(close_race_skip_wakes_draining_receiver)
{
	fab_fabric *fab = NULL;
	fab_chan *tx = NULL;
	S.fabric = mt_fabric_name("stc");
	int rc = mt_make_chan(S.fabric, "c", FAB_MPMC, 4, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	ck_assert_int_eq(fab_chan_open(fab, "c", FAB_SEND, &tx), 0);
	r7.sh = mt_shared(sizeof *r7.sh);
	ck_assert_ptr_nonnull(r7.sh);
	ck_assert_int_eq(pipe(r7.to_parent), 0);
	ck_assert_int_eq(pipe(r7.to_child), 0);

	pid_t r = mt_spawn(r7_receiver, NULL);
	close(r7.to_parent[1]);
	close(r7.to_child[0]);
	/* The receiver is between its last try and its announce: close. */
	struct pollfd pfd = {.fd = r7.to_parent[0], .events = POLLIN};
	char b = 0;
	ck_assert_msg(poll(&pfd, 1, 10000) == 1 && read(r7.to_parent[0], &b, 1) == 1,
		      "receiver never reached its sleep");
	ck_assert_int_eq(fab_chan_close(tx), 0);
	ck_assert_int_eq(write(r7.to_child[1], &b, 1), 1);

	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL(r7.sh->phase == 4 || r7.sh->bad || mt_exited(r, &code),
				    10 * MT_SEC),
		      "staging stuck at phase %d", r7.sh->phase);
	ck_assert_msg(r7.sh->phase == 4 && !r7.sh->bad, "staging failed (phase %d, bad %d, exit %d)",
		      r7.sh->phase, r7.sh->bad, code);
	rc = code != MT_RUNNING ? code : mt_wait(r, 5 * MT_SEC);
	if (rc != 0) {
		fab_chan *rx = NULL;
		ssize_t n = fab_chan_open(fab, "c", FAB_RECV, &rx);
		if (n == 0)
			n = fab_try_recv(rx, NULL, 0);
		ck_abort_msg("receiver exited %d%s on a closed, empty channel (a fresh fab_try_recv "
			     "returns %s)",
			     rc, mt_code_why(rc), fab_errname((int)n));
	}
	close(r7.to_parent[0]);
	close(r7.to_child[1]);
	fab_chan_release(tx);
	mt_destroy(S.fabric, &fab);
}
END_TEST

/* ---- alo_drain_behind_dead_returner -------------------------------------- */

/* Takes m0 and gives it back: fab__mpmc_return's first step (HELD ->
 * RETURNING; a lease is HELD since layout 1.4), then SIGKILL before FULL. */
static int r5_lessee(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *rx = NULL;
	char buf[64];
	(void)arg;
	int rc = mt_open(S.fabric, "c", FAB_RECV, &f, &rx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	ssize_t n = fab_recv(rx, buf, sizeof buf, NULL);
	if (n != 3)
		MT_CHILD_FAIL(21, "recv: %zd", n);
	uint32_t tag = st_my_tag(S.fabric);
	uint64_t w = FAB_SW_MAKE(S.pos, FAB_SLOT_HELD, tag);
	if (!tag || !atomic_compare_exchange_strong(&S.slot->state, &w,
						    FAB_SW_MAKE(S.pos, FAB_SLOT_RETURNING, tag)))
		MT_CHILD_FAIL(22, "slot %#llx not HELD by us (%#x)", (unsigned long long)w, tag);
	raise(SIGKILL);
	return 23;
}

START_TEST(alo_drain_behind_dead_returner)
{
	fab_fabric *fab = NULL;
	fab_chan *tx = NULL, *rx = NULL;
	fab_chan_opts o = {.size = sizeof o, .capacity = 1, .msg_size = 64, .kind = FAB_MPMC,
			   .producers = 1, .delivery = FAB_AT_LEAST_ONCE};
	S.fabric = mt_fabric_name("sta");
	ck_assert_int_eq(fab_fabric_open(S.fabric, FAB_CREATE, &fab), 0);
	int rc = fab_chan_create(fab, "c", &o, &tx);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	S.h = st_map_chan(S.fabric, "c", &S.hsize);
	ck_assert_int_eq(fab_send(tx, "m0", 3, NULL), 0);
	S.pos = S.h->start_pos;
	S.slot = st_slot(S.h, S.pos);

	pid_t c = mt_spawn(r5_lessee, NULL);
	rc = mt_wait(c, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "lessee ended with %d", rc);
	ck_assert_uint_eq(FAB_SW_STATE(atomic_load(&S.slot->state)), FAB_SLOT_RETURNING);
	ck_assert_int_eq(fab_chan_close(tx), 0);

	/* The drain: m0 (given back by a dead process) again, then ECLOSED. */
	char buf[64] = {0};
	fab_ctx *t = NULL;
	ck_assert_int_eq(fab_chan_open(fab, "c", FAB_RECV, &rx), 0);
	ck_assert_int_eq(fab_ctx_with_timeout(NULL, 3 * MT_SEC, &t), 0);
	ssize_t n = fab_recv(rx, buf, sizeof buf, t);
	fab_ctx_release(t);
	ck_assert_msg(n == 3 && strcmp(buf, "m0") == 0,
		      "draining receiver got %s instead of the given-back m0 (slot %#llx: "
		      "RETURNING by a dead process)",
		      n >= 0 ? buf : fab_errname((int)n),
		      (unsigned long long)atomic_load(&S.slot->state));
	ck_assert_int_eq(fab_ack(rx), 0);
	ck_assert_int_eq(fab_ctx_with_timeout(NULL, 3 * MT_SEC, &t), 0);
	n = fab_recv(rx, buf, sizeof buf, t);
	fab_ctx_release(t);
	ck_assert_msg(n == FAB_ECLOSED, "then %s, not FAB_ECLOSED", fab_errname((int)n));
	fab_chan_release(rx);
	fab_chan_release(tx);
	munmap(S.h, S.hsize);
	mt_destroy(S.fabric, &fab);
}
END_TEST

/* ---- ctx_canceller_killed_mid_cancel -------------------------------------- */

static fab_ctx_ent *r6_root;

static int r6_waiter(void *arg)
{
	const char *name = arg;
	fab_fabric *f = NULL;
	fab_ctx *c = NULL;
	int rc = fab_fabric_open(S.fabric, 0, &f);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	if ((rc = fab_ctx_open(f, name, &c)) != 0)
		MT_CHILD_FAIL(21, "ctx open %s: %s", name, fab_strerror(rc));
	rc = fab_ctx_wait(c);
	if (rc != FAB_ECANCELED)
		MT_CHILD_FAIL(10, "fab_ctx_wait(%s): %s", name, fab_errname(rc));
	fab_ctx_release(c);
	fab_fabric_close(f);
	return 0;
}

/* fab__ctx_end on the root (0 -> ENDING -> CANCELED, with reason and end
 * time), then SIGKILL before the wake and the walk of the subtree. */
static int r6_canceller(void *arg)
{
	fab_fabric *f = NULL;
	fab_ctx *x = NULL;
	(void)arg;
	int rc = fab_fabric_open(S.fabric, 0, &f);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	if ((rc = fab_ctx_open(f, "root", &x)) != 0)
		MT_CHILD_FAIL(21, "ctx open: %s", fab_strerror(rc));
	uint32_t z = 0;
	if (!atomic_compare_exchange_strong(&r6_root->cancel, &z, ST_CTX_ENDING))
		MT_CHILD_FAIL(22, "root already ended (%u)", z);
	atomic_store(&r6_root->reason, 7);
	r6_root->end_ns = 1;
	atomic_store(&r6_root->cancel, ST_CTX_CANCELED);
	raise(SIGKILL);
	return 23;
}

START_TEST(ctx_canceller_killed_mid_cancel)
{
	fab_fabric *fab = NULL;
	fab_ctx *root = NULL, *kid = NULL;
	S.fabric = mt_fabric_name("str");
	ck_assert_int_eq(fab_fabric_open(S.fabric, FAB_CREATE, &fab), 0);
	ck_assert_int_eq(fab_ctx_create(fab, "root", NULL, &root), 0);
	ck_assert_int_eq(fab_ctx_create(fab, "kid", root, &kid), 0);
	size_t nctl = 0;
	fab_ctl_hdr *ctl = st_map(S.fabric, NULL, &nctl);
	ck_assert_ptr_nonnull(ctl);
	fab_ctx_ent *ents = (fab_ctx_ent *)((uint8_t *)ctl + ctl->ctxs_off);
	r6_root = NULL;
	for (uint32_t i = 0; i < FAB_MAX_CTXS; i++)
		if (atomic_load(&ents[i].state) == FAB_ENT_LIVE && strcmp(ents[i].name, "root") == 0)
			r6_root = &ents[i];
	ck_assert_ptr_nonnull(r6_root);

	pid_t wk = mt_spawn(r6_waiter, "kid"), wr = mt_spawn(r6_waiter, "root");
	int ck = MT_RUNNING, cr = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL((mt_in_futex(wk) && mt_in_futex(wr)) || mt_exited(wk, &ck) ||
					    mt_exited(wr, &cr),
				    10 * MT_SEC),
		      "waiters never slept");
	ck_assert_msg(ck == MT_RUNNING && cr == MT_RUNNING,
		      "a waiter returned (kid %d, root %d) from a live context", ck, cr);

	pid_t c = mt_spawn(r6_canceller, NULL);
	int rc = mt_wait(c, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "canceller ended with %d", rc);
	fab_fabric_recover(fab);          /* fabd, on the death */
	int rc2 = fab_ctx_cancel(root, 7); /* and someone cancels again */

	pid_t both[2] = {wk, wr};
	int codes[2];
	(void)mt_wait_all(both, 2, 5 * MT_SEC, codes);
	ck_assert_msg(codes[0] == 0 && codes[1] == 0,
		      "after root was cancelled by a canceller killed mid-cancel (then "
		      "fab_fabric_recover, and a second cancel: %s): fab_ctx_wait(kid) exited "
		      "%d%s (fab_ctx_err(kid) = %s), fab_ctx_wait(root) exited %d%s",
		      fab_errname(rc2), codes[0], mt_code_why(codes[0]), fab_errname(fab_ctx_err(kid)),
		      codes[1], mt_code_why(codes[1]));
	ck_assert_int_eq(fab_ctx_err(kid), FAB_ECANCELED);
	munmap(ctl, nctl);
	fab_ctx_release(kid);
	fab_ctx_release(root);
	mt_destroy(S.fabric, &fab);
}
END_TEST

/* ---- lost_wake_after_recovery_{a,b,c} ------------------------------------- */

/* A sends "one", then "two" (blocks on the full capacity-1 channel); B
 * receives "m" from an empty channel.  Name of the channel in arg. */
static int lw_sender(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *tx = NULL;
	int rc = mt_open(S.fabric, arg, FAB_SEND, &f, &tx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	if ((rc = fab_send(tx, "one", 4, NULL)) != 0)
		MT_CHILD_FAIL(21, "send one: %s", fab_strerror(rc));
	if ((rc = fab_send(tx, "two", 4, NULL)) != 0)
		MT_CHILD_FAIL(10, "send two: %s", fab_strerror(rc));
	mt_close(f, tx);
	return 0;
}

static int lw_receiver(void *arg)
{
	(void)arg;
	return mt_child_recv_one(S.fabric, "b", "m");
}

/* a: fab__mpmc_take's CAS and head bump, the copy, fab__mpmc_free, then
 * SIGKILL before fab_recv's wake of the sender. */
static int lw_taker_mpmc(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *rx = NULL;
	(void)arg;
	int rc = mt_open(S.fabric, "a", FAB_RECV, &f, &rx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	uint32_t tag = st_my_tag(S.fabric);
	uint64_t w = atomic_load(&S.slot->state);
	if (!tag || w != FAB_SW_MAKE(S.pos, FAB_SLOT_FULL, FAB_SW_TAG(w)))
		MT_CHILD_FAIL(21, "tag %#x, slot %#llx not FULL", tag, (unsigned long long)w);
	if (!atomic_compare_exchange_strong(&S.slot->state, &w,
					    FAB_SW_MAKE(S.pos, FAB_SLOT_READING, tag)))
		MT_CHILD_FAIL(22, "take CAS lost");
	uint64_t hp = S.pos;
	atomic_compare_exchange_strong(&S.h->head, &hp, S.pos + 1);
	atomic_store(&S.slot->state, FAB_SW_MAKE(S.pos + S.h->nslots, FAB_SLOT_FREE, 0));
	raise(SIGKILL);
	return 23;
}

/* b: fab__mpmc_claim (FREE -> WRITING, tail), the fill and the commit
 * (FULL), then SIGKILL before fab_send's wake of the receiver. */
static int lw_producer(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *tx = NULL;
	(void)arg;
	int rc = mt_open(S.fabric, "b", FAB_SEND, &f, &tx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	uint32_t tag = st_my_tag(S.fabric);
	uint64_t w = FAB_SW_MAKE(S.pos, FAB_SLOT_FREE, 0);
	if (!tag || !atomic_compare_exchange_strong(&S.slot->state, &w,
						    FAB_SW_MAKE(S.pos, FAB_SLOT_WRITING, tag)))
		MT_CHILD_FAIL(21, "tag %#x, slot %#llx not FREE", tag, (unsigned long long)w);
	uint64_t tp = S.pos;
	atomic_compare_exchange_strong(&S.h->tail, &tp, S.pos + 1);
	S.slot->len = 2;
	memcpy((uint8_t *)S.slot + sizeof(fab_mslot), "m", 2);
	atomic_store(&S.slot->state, FAB_SW_MAKE(S.pos, FAB_SLOT_FULL, tag));
	raise(SIGKILL);
	return 23;
}

/* c: fab__spsc_pop's copy and head store, then SIGKILL before fab_recv's
 * wake of the sender. */
static int lw_taker_spsc(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *rx = NULL;
	(void)arg;
	int rc = mt_open(S.fabric, "c", FAB_RECV, &f, &rx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	uint64_t hp = atomic_load(&S.h->head);
	if (hp != S.pos || atomic_load(&S.h->tail) != S.pos + 1)
		MT_CHILD_FAIL(21, "head %llu, tail %llu: not one queued at %llu",
			      (unsigned long long)hp, (unsigned long long)atomic_load(&S.h->tail),
			      (unsigned long long)S.pos);
	atomic_store(&S.h->head, hp + 1);
	raise(SIGKILL);
	return 23;
}

/* The sender of channel `chan` (capacity 1) sent "one" and sleeps sending
 * "two". */
static pid_t lw_sender_asleep(const char *chan)
{
	pid_t s = mt_spawn(lw_sender, (void *)chan);
	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL((atomic_load(&S.h->send_waiters) == 1 && mt_in_futex(s)) ||
					    mt_exited(s, &code),
				    10 * MT_SEC),
		      "sender never slept on the full channel");
	ck_assert_msg(code == MT_RUNNING, "sender exited %d on a full channel", code);
	return s;
}

/* After its peer's death, the sender's "two" must go through and be
 * received by rx. */
static void lw_expect_sender_done(pid_t s, fab_chan *rx, const char *what)
{
	char buf[64] = {0};
	int rc = mt_wait(s, 5 * MT_SEC);
	ck_assert_msg(rc == 0,
		      "%s: the sender blocked on the full channel exited %d%s although a slot is "
		      "free (head %llu, tail %llu)",
		      what, rc, mt_code_why(rc), (unsigned long long)atomic_load(&S.h->head),
		      (unsigned long long)atomic_load(&S.h->tail));
	ssize_t n = fab_try_recv(rx, buf, sizeof buf);
	ck_assert_msg(n == 4 && strcmp(buf, "two") == 0, "%s: then received %s", what,
		      n >= 0 ? buf : fab_errname((int)n));
}

START_TEST(lost_wake_after_recovery_a)
{
	fab_fabric *fab = NULL;
	fab_chan *rx = NULL;
	S.fabric = mt_fabric_name("stla");
	int rc = mt_make_chan(S.fabric, "a", FAB_MPMC, 1, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	S.h = st_map_chan(S.fabric, "a", &S.hsize);
	S.pos = S.h->start_pos;
	S.slot = st_slot(S.h, S.pos);

	pid_t s = lw_sender_asleep("a");
	pid_t c = mt_spawn(lw_taker_mpmc, NULL);
	rc = mt_wait(c, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "taker ended with %d", rc);
	ck_assert_uint_eq(atomic_load(&S.slot->state),
			  FAB_SW_MAKE(S.pos + S.h->nslots, FAB_SLOT_FREE, 0));
	fab_fabric_recover(fab); /* fabd, on the taker's death */

	ck_assert_int_eq(fab_chan_open(fab, "a", FAB_RECV, &rx), 0);
	lw_expect_sender_done(s, rx, "mpmc, receiver killed between its free and its wake, "
				     "then fab_fabric_recover");
	fab_chan_release(rx);
	munmap(S.h, S.hsize);
	mt_destroy(S.fabric, &fab);
}
END_TEST

START_TEST(lost_wake_after_recovery_b)
{
	fab_fabric *fab = NULL;
	S.fabric = mt_fabric_name("stlb");
	int rc = mt_make_chan(S.fabric, "b", FAB_MPMC, 4, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	S.h = st_map_chan(S.fabric, "b", &S.hsize);
	S.pos = S.h->start_pos;
	S.slot = st_slot(S.h, S.pos);

	pid_t r = mt_spawn(lw_receiver, NULL);
	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL((atomic_load(&S.h->recv_waiters) == 1 && mt_in_futex(r)) ||
					    mt_exited(r, &code),
				    10 * MT_SEC),
		      "receiver never slept");
	ck_assert_msg(code == MT_RUNNING, "receiver returned (exit %d) on an empty channel", code);

	pid_t p = mt_spawn(lw_producer, NULL);
	rc = mt_wait(p, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "producer ended with %d", rc);
	ck_assert_uint_eq(FAB_SW_STATE(atomic_load(&S.slot->state)), FAB_SLOT_FULL);
	fab_fabric_recover(fab); /* fabd, on the producer's death */

	rc = mt_wait(r, 5 * MT_SEC);
	ck_assert_msg(rc == 0,
		      "mpmc, producer killed between its commit and its wake, then "
		      "fab_fabric_recover: the blocked receiver exited %d%s with a message queued "
		      "(slot %#llx)",
		      rc, mt_code_why(rc), (unsigned long long)atomic_load(&S.slot->state));
	munmap(S.h, S.hsize);
	mt_destroy(S.fabric, &fab);
}
END_TEST

START_TEST(lost_wake_after_recovery_c)
{
	fab_fabric *fab = NULL;
	fab_chan *rx = NULL;
	S.fabric = mt_fabric_name("stlc");
	int rc = mt_make_chan(S.fabric, "c", FAB_SPSC, 1, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	S.h = st_map_chan(S.fabric, "c", &S.hsize);
	S.pos = atomic_load(&S.h->head);

	pid_t s = lw_sender_asleep("c");
	pid_t c = mt_spawn(lw_taker_spsc, NULL);
	rc = mt_wait(c, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "taker ended with %d", rc);
	uint64_t dead_end = atomic_load(&S.h->spsc_receiver);
	ck_assert_uint_ne(dead_end, 0);

	/* No broker: the next receiver takes the dead one's end over. */
	ck_assert_int_eq(fab_chan_open(fab, "c", FAB_RECV, &rx), 0);
	ck_assert_uint_ne(atomic_load(&S.h->spsc_receiver), dead_end);
	lw_expect_sender_done(s, rx, "spsc, receiver killed between head and its wake, its end "
				     "taken over");
	fab_chan_release(rx);
	munmap(S.h, S.hsize);
	mt_destroy(S.fabric, &fab);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crash_stall");
	TCase *tc = mt_tcase("stall", 60);
	mt_init();
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, unbuffered_sender_taker_killed_before_wake);
	tcase_add_test(tc, select_send_case_missed_slow_receiver);
	tcase_add_test(tc, select_polls_every_stuck_case);
	tcase_add_test(tc, close_quorum_closer_killed_after_id);
	tcase_add_test(tc, close_killed_before_wake);
	tcase_add_test(tc, close_race_skip_wakes_draining_receiver);
	tcase_add_test(tc, alo_drain_behind_dead_returner);
	tcase_add_test(tc, ctx_canceller_killed_mid_cancel);
	tcase_add_test(tc, lost_wake_after_recovery_a);
	tcase_add_test(tc, lost_wake_after_recovery_b);
	tcase_add_test(tc, lost_wake_after_recovery_c);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
