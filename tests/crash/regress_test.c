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
 *
 * alo_gauge_reset_races_take_and_give_back: at-least-once receivers look
 *   behind head for given-back messages only while the `returned` gauge is
 *   not 0, and a scan that finds nothing in flight resets the gauge from the
 *   value it read first.  A take (count -1) and a give-back (+1) between
 *   that read and the reset made the reset succeed (ABA) and left the
 *   given-back message behind head, counted by nobody: never delivered
 *   again, and producers reaching its slot slept for good (seen once as a
 *   60 s stall of examples_shop_torture).  The scan is paused at that exact
 *   point by making the next slot's page unreadable in the scanner's own
 *   mapping; meanwhile a second receiver takes a redelivery and a killed
 *   lessee's message is given back by fab_fabric_recover.
 *
 * alo_redelivery_uncounted: the state that race left (a given-back message
 *   FULL behind head, gauge 0), built by writing the gauge: the head and a
 *   producer that reach its slot count it again, and it is delivered.
 */
#include "../mp/mp_util.h"

#include "layout.h"

#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>

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

/* ---- at-least-once: the `returned` gauge ------------------------------- */

#define RG_MSG 8192 /* a slot per page or more: slots 0 and 1 on different pages */

static fab_chan *rg_create(const char *fabric, fab_fabric **fab, uint32_t cap)
{
	fab_chan_opts o = {.size = sizeof o, .capacity = cap, .msg_size = RG_MSG,
			   .kind = FAB_MPMC, .delivery = FAB_AT_LEAST_ONCE,
			   .max_deliveries = 1000, .producers = 1};
	fab_chan *ch = NULL;
	int rc = fab_fabric_open(fabric, FAB_CREATE, fab);
	ck_assert_msg(rc == 0, "fabric: %s", fab_strerror(rc));
	rc = fab_chan_create(*fab, "c", &o, &ch);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	return ch;
}

static void rg_send(fab_chan *tx, char id)
{
	char m[16] = {id};
	int rc = fab_try_send(tx, m, sizeof m);
	ck_assert_msg(rc == 0, "try_send m%c: %s [%s]", id, fab_strerror(rc), fab_errmsg());
}

/* Receive one message (waiting at most 2 s); its id, or 0 if none came. */
static char rg_recv(fab_chan *rx, uint32_t *deliveries)
{
	char buf[RG_MSG];
	fab_ctx *t = NULL;
	ck_assert_int_eq(fab_ctx_with_timeout(NULL, 2 * MT_SEC, &t), 0);
	ssize_t n = fab_recv(rx, buf, sizeof buf, t);
	fab_ctx_release(t);
	if (n < 0) {
		ck_assert_msg(n == FAB_ETIMEDOUT, "recv: %s [%s]", fab_strerror((int)n), fab_errmsg());
		return 0;
	}
	fab_msg_info mi = {.size = sizeof mi};
	ck_assert_int_eq(fab_recv_info(rx, &mi), 0);
	if (deliveries)
		*deliveries = mi.deliveries;
	return buf[0];
}

static struct {
	sem_t paused, go;
	uint8_t *page;    /* slot 1's page in the scanner's mapping */
	fab_chan *taker;  /* T */
	fab_fabric *recoverer;
	pid_t lessee;     /* C */
	char taken;       /* what T took */
	uint32_t taken_deliveries;
} rg;

static void rg_on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	uint8_t *a = si->si_addr;
	if (a < rg.page || a >= rg.page + 4096) {
		signal(SIGSEGV, SIG_DFL); /* a real fault: let it kill us */
		return;
	}
	sem_post(&rg.paused);
	while (sem_wait(&rg.go) < 0 && errno == EINTR)
		;
	mprotect(rg.page, 4096, PROT_READ | PROT_WRITE);
}

/* While the scanner is paused: T takes the given-back m1 (the gauge goes
 * 1 -> 0), then C dies holding m0 and recovery gives it back (0 -> 1). */
static void *rg_interleave(void *arg)
{
	char buf[RG_MSG];
	(void)arg;
	while (sem_wait(&rg.paused) < 0 && errno == EINTR)
		;
	ssize_t n = fab_try_recv(rg.taker, buf, sizeof buf);
	if (n >= 0) {
		fab_msg_info mi = {.size = sizeof mi};
		fab_recv_info(rg.taker, &mi);
		rg.taken = buf[0];
		rg.taken_deliveries = mi.deliveries;
	}
	kill(rg.lessee, SIGKILL);
	mt_wait(rg.lessee, 10 * MT_SEC);
	fab_fabric_recover(rg.recoverer);
	sem_post(&rg.go);
	return NULL;
}

static int rg_lessee(void *arg)
{
	const char *fabric = arg;
	fab_fabric *f = NULL;
	fab_chan *c = NULL;
	char b[RG_MSG];
	if (fab_fabric_open(fabric, 0, &f) || fab_chan_open(f, "c", FAB_RECV, &c))
		return 1;
	if (fab_recv(c, b, sizeof b, NULL) < 0 || b[0] != '0')
		return 2;
	for (;;) /* holds the lease on m0 until killed */
		pause();
}

START_TEST(alo_gauge_reset_races_take_and_give_back)
{
	const char *fabric = mt_fabric_name("rgaba");
	char path[128];
	fab_fabric *fP = NULL, *fT = NULL, *fS = NULL;
	fab_chan *tx = rg_create(fabric, &fP, 4), *sch = NULL;
	snprintf(path, sizeof path, "/dev/shm/fab.%s.c", fabric);
	memset(&rg, 0, sizeof rg);
	rg_send(tx, '0');
	rg_send(tx, '1');
	rg_send(tx, '2');

	/* C leases m0 (position 0) and keeps it. */
	rg.lessee = mt_spawn(rg_lessee, (void *)fabric);
	ck_assert_int_gt(rg.lessee, 0);
	fab_stats st;
	MT_WAIT_UNTIL((st = mt_stats(tx), st.leased == 1), 10 * MT_SEC);
	ck_assert_uint_eq(mt_stats(tx).leased, 1);

	/* T takes m1 and gives it back: FULL behind head, gauge 1. */
	ck_assert_int_eq(fab_fabric_open(fabric, 0, &fT), 0);
	ck_assert_int_eq(fab_chan_open(fT, "c", FAB_RECV, &rg.taker), 0);
	ck_assert_int_eq(rg_recv(rg.taker, NULL), '1');
	ck_assert_int_eq(fab_nack(rg.taker), 0);

	/* S: its own fabric handle, hence its own mapping of the segment. */
	uint8_t *known[16];
	int nk = 0;
	for (uint8_t *x; nk < 16 && (x = mt_new_map(path, known, nk));)
		known[nk++] = x;
	ck_assert_int_eq(fab_fabric_open(fabric, 0, &fS), 0);
	ck_assert_int_eq(fab_chan_open(fS, "c", FAB_RECV, &sch), 0);
	uint8_t *sbase = mt_new_map(path, known, nk);
	ck_assert_ptr_nonnull(sbase);
	fab_chan_hdr *h = (fab_chan_hdr *)sbase;
	uint8_t *slot1 = sbase + h->slots_off + h->slot_size;
	rg.page = (uint8_t *)((uintptr_t)slot1 & ~(uintptr_t)4095);
	ck_assert_msg((uintptr_t)(sbase + h->slots_off) < (uintptr_t)rg.page,
		      "slots 0 and 1 share a page");
	rg.recoverer = fP;

	/* S scans for the given-back m1: it reads slot 0 (leased to C), then
	 * faults on slot 1 and waits there while rg_interleave runs. */
	ck_assert_int_eq(sem_init(&rg.paused, 0, 0), 0);
	ck_assert_int_eq(sem_init(&rg.go, 0, 0), 0);
	struct sigaction sa = {.sa_sigaction = rg_on_segv, .sa_flags = SA_SIGINFO};
	struct sigaction old;
	ck_assert_int_eq(sigaction(SIGSEGV, &sa, &old), 0);
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, rg_interleave, NULL), 0);
	ck_assert_int_eq(mprotect(rg.page, 4096, PROT_NONE), 0);
	uint32_t d = 0;
	char first = rg_recv(sch, &d);
	pthread_join(th, NULL);
	sigaction(SIGSEGV, &old, NULL);
	ck_assert_int_eq(rg.taken, '1'); /* T took the redelivery */
	ck_assert_uint_eq(rg.taken_deliveries, 2);

	/* As staged: S's scan found nothing it could take (slot 0 still
	 * leased when read, slot 1 taken by T when read) and it got the next
	 * new message. */
	ck_assert_msg(first == '2', "S got %s%c", first ? "m" : "nothing", first ? first : ' ');
	ck_assert_int_eq(fab_ack(rg.taker), 0);
	/* m0, given back by recovery during S's scan, is delivered next.
	 * Before the fix S's reset of the gauge succeeded (T's take and the
	 * give-back had brought it back to the value S read) and m0 stayed
	 * behind head with nobody looking for it. */
	char c = rg_recv(sch, &d);
	ck_assert_msg(c == '0', "then got %s%c", c ? "m" : "nothing (m0 is stranded)", c ? c : ' ');
	ck_assert_uint_eq(d, 2);
	ck_assert_int_eq(fab_ack(sch), 0);
	/* The ring flows through m0's old slot: capacity 4 for new messages. */
	for (char id = '3'; id <= '6'; id++)
		rg_send(tx, id);
	for (char id = '3'; id <= '6'; id++)
		ck_assert_int_eq(rg_recv(sch, NULL), id);
	ck_assert_int_eq(fab_ack(sch), 0);
	ck_assert_uint_eq(fab_chan_len(tx), 0);
	ck_assert_uint_eq(mt_stats(tx).leased, 0);

	fab_chan_release(sch);
	fab_chan_release(rg.taker);
	fab_chan_release(tx);
	fab_fabric_close(fS);
	fab_fabric_close(fT);
	mt_destroy(fabric, &fP);
}
END_TEST

START_TEST(alo_redelivery_uncounted)
{
	const char *fabric = mt_fabric_name("rgunc");
	char path[128];
	fab_fabric *fab = NULL;
	fab_chan *tx = rg_create(fabric, &fab, 4), *rx = NULL;
	ck_assert_int_eq(fab_chan_open(fab, "c", FAB_RECV, &rx), 0);
	snprintf(path, sizeof path, "/fab.%s.c", fabric);
	int fd = shm_open(path, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	fab_chan_hdr *h = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert_ptr_ne(h, MAP_FAILED);

	for (int lap = 0; lap < 2; lap++) {
		/* m0 given back (FULL behind head), its count lost. */
		for (char id = '0'; id <= '3'; id++)
			rg_send(tx, id);
		ck_assert_int_eq(rg_recv(rx, NULL), '0');
		ck_assert_int_eq(fab_nack(rx), 0);
		atomic_store(&h->returned, 0);
		uint32_t d = 0;
		if (lap == 0) {
			/* The head reaches m0's slot: m1..m3, then m0 again. */
			for (char id = '1'; id <= '3'; id++)
				ck_assert_int_eq(rg_recv(rx, NULL), id);
			ck_assert_int_eq(rg_recv(rx, &d), '0');
		} else {
			/* A producer reaches m0's slot first: the ring is full
			 * (m0..m3), the send must wait, and m0 comes next. */
			char m[16] = {'4'};
			ck_assert_int_eq(fab_try_send(tx, m, sizeof m), FAB_EAGAIN);
			ck_assert_int_eq(rg_recv(rx, &d), '0');
			for (char id = '1'; id <= '3'; id++)
				ck_assert_int_eq(rg_recv(rx, NULL), id);
		}
		ck_assert_uint_eq(d, 2); /* redelivered */
		ck_assert_int_eq(fab_ack(rx), 0);
		ck_assert_uint_eq(fab_chan_len(tx), 0);
	}
	munmap(h, 4096);
	fab_chan_release(rx);
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
	tcase_add_test(tc, alo_gauge_reset_races_take_and_give_back);
	tcase_add_test(tc, alo_redelivery_uncounted);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
