/*
 * regress_test.c - deterministic regression tests for crash-path bugs that
 * crash_kill and mp_mpmc first found at random (STYLE: every fixed bug gets
 * a regression test named after it).  The state a SIGKILL leaves at one
 * exact instruction is built directly in the segment (layout.h), then the
 * API must carry on.
 *
 * spsc_receiver_killed_between_done_and_hint: the spsc receiver once stored
 *   a DONE word, then the head hint; a receiver killed between the two left
 *   the hint one behind, the sender reused the slot for the next lap, and
 *   the next receiver failed with FAB_ECORRUPT (notes: mp.md item 3).  The
 *   ring no longer has DONE words: head, stored after the copy, is the
 *   truth.  The test now builds the state a receiver killed after copying
 *   position 0 but before storing head leaves (head still 0) and checks the
 *   message is redelivered, in order, and the capacity is exact against it.
 *
 * mpmc_reader_one_lap_behind: a receiver still copying position p while the
 *   head hint has moved a whole lap on (slot holds READING(p), head p +
 *   nslots) is a healthy state; receivers got FAB_ECORRUPT (mp.md item 2).
 */
#include "../mp/mp_util.h"

#include "layout.h"

static fab_chan *open_or_fail(fab_fabric *fab, unsigned role)
{
	fab_chan *ch = NULL;
	int rc = fab_chan_open(fab, "c", role, &ch);
	ck_assert_msg(rc == 0, "open role %u: %s", role, fab_strerror(rc));
	return ch;
}

static void send_seq(fab_chan *tx, uint32_t seq)
{
	unsigned char buf[64];
	size_t len = mt_msg_len(0, seq, 64);
	mt_fill(buf, 0, seq, len);
	int rc = fab_try_send(tx, buf, len);
	ck_assert_msg(rc == 0, "try_send seq %u: %s", seq, fab_strerror(rc));
}

static void recv_seq(fab_chan *rx, uint32_t want)
{
	unsigned char buf[64];
	uint32_t p, s;
	ssize_t n = fab_try_recv(rx, buf, sizeof buf);
	ck_assert_msg(n >= 0, "try_recv (want seq %u): %s [%s]", want, fab_strerror((int)n),
		      fab_errmsg());
	ck_assert_int_eq(mt_verify(buf, (size_t)n, 64, &p, &s), 0);
	ck_assert_uint_eq(s, want);
}

START_TEST(spsc_receiver_killed_between_done_and_hint)
{
	const char *fabric = mt_fabric_name("rgspsc");
	char shm[96];
	fab_fabric *fab = NULL;
	struct stat sb;
	const uint32_t cap = 4;
	int rc = mt_make_chan(fabric, "c", FAB_SPSC, cap, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	fab_chan *tx = open_or_fail(fab, FAB_SEND), *rx = open_or_fail(fab, FAB_RECV);

	/* Position 0 is sent and copied out: head 1. */
	send_seq(tx, 0);
	recv_seq(rx, 0);
	fab_chan_release(rx); /* this receiver "dies" */

	/* ... as if killed after the copy, before storing head: head back to
	 * 0 (it never returned the message to its caller). */
	snprintf(shm, sizeof shm, "/fab.%s.c", fabric);
	int fd = shm_open(shm, O_RDWR, 0);
	ck_assert(fd >= 0 && fstat(fd, &sb) == 0);
	fab_chan_hdr *h = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert(h != MAP_FAILED);
	ck_assert_uint_eq(atomic_load(&h->head), 1);
	atomic_store(&h->head, 0);

	/* Position 0 is queued again, so the sender has room for exactly
	 * cap - 1 more. */
	for (uint32_t s = 1; s < cap; s++)
		send_seq(tx, s);
	uint64_t extra = 99;
	ck_assert_int_eq(fab_try_send(tx, &extra, sizeof extra), FAB_EAGAIN);

	/* A new receiver gets 0 again, then 1..cap-1, in order. */
	rx = open_or_fail(fab, FAB_RECV);
	for (uint32_t s = 0; s < cap; s++)
		recv_seq(rx, s);
	ck_assert_int_eq(fab_try_recv(rx, NULL, 0), FAB_EAGAIN);
	munmap(h, (size_t)sb.st_size);
	fab_chan_release(rx);
	fab_chan_release(tx);
	mt_destroy(fabric, &fab);
}
END_TEST

START_TEST(mpmc_reader_one_lap_behind)
{
	const char *fabric = mt_fabric_name("rgmpmc");
	fab_fabric *fab = NULL;
	unsigned char buf[64];
	const void *m = NULL;
	size_t len = 0;
	/* Capacity 1 = one slot: a lap is one position. */
	int rc = mt_make_chan(fabric, "c", FAB_MPMC, 1, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	fab_chan *tx = open_or_fail(fab, FAB_SEND);
	fab_chan *slow = open_or_fail(fab, FAB_RECV), *other = open_or_fail(fab, FAB_RECV);

	send_seq(tx, 0);
	/* `slow` takes position 0 and keeps reading it: slot READING(0), head 1. */
	rc = fab_recv_acquire(slow, &m, &len, NULL);
	ck_assert_msg(rc == 0, "acquire: %s", fab_strerror(rc));

	/* Nothing to receive and no room: EAGAIN both ways, never ECORRUPT. */
	for (int i = 0; i < 3; i++) {
		ssize_t n = fab_try_recv(other, buf, sizeof buf);
		ck_assert_msg(n == FAB_EAGAIN, "try_recv behind a slow reader: %zd (%s) [%s]", n,
			      fab_strerror((int)n), fab_errmsg());
		rc = fab_try_send(tx, buf, 8);
		ck_assert_msg(rc == FAB_EAGAIN, "try_send behind a slow reader: %d (%s) [%s]", rc,
			      fab_strerror(rc), fab_errmsg());
	}
	fab_ctx *t = NULL;
	ck_assert_int_eq(fab_ctx_with_timeout(NULL, 5 * MT_MS, &t), 0);
	ssize_t n = fab_recv(other, buf, sizeof buf, t);
	fab_ctx_release(t);
	ck_assert_msg(n == FAB_ETIMEDOUT, "recv behind a slow reader: %zd (%s)", n,
		      fab_strerror((int)n));

	/* The slow reader finishes; the ring flows again. */
	uint32_t p, s;
	ck_assert_int_eq(mt_verify(m, len, 64, &p, &s), 0);
	ck_assert_uint_eq(s, 0);
	ck_assert_int_eq(fab_recv_release(slow), 0);
	send_seq(tx, 1);
	recv_seq(other, 1);

	fab_chan_release(other);
	fab_chan_release(slow);
	fab_chan_release(tx);
	mt_destroy(fabric, &fab);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crash_regress");
	TCase *tc = mt_tcase("regress", 60);
	mt_init();
	tcase_add_test(tc, spsc_receiver_killed_between_done_and_hint);
	tcase_add_test(tc, mpmc_reader_one_lap_behind);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
