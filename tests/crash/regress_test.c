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
 *
 * pid_reused_by_self: liveness is pid + start time, but a recorded pid equal
 *   to our own was taken for us without comparing start times.  A process
 *   that got the pid of a dead holder of an spsc end (pid reuse) could
 *   never take that end (FAB_EBUSY "held by a live process" naming its own
 *   pid), and its fab_fabric_recover never freed the dead entry.  The dead
 *   holder's process-table entry (our pid, an earlier start time, LIVE, its
 *   tag on the send end and in the attach table) is written directly;
 *   recovery must free it and release the end, and an open must take the
 *   end over.
 *
 * zombie_leader_alive: a process whose /proc state is Z was taken for dead.
 *   A multi-threaded process whose main thread called pthread_exit() shows
 *   exactly that while its other threads run on: another process's open
 *   took over the spsc send end it still held, both sent at the same
 *   position, and a message whose fab_send returned 0 was overwritten.  The
 *   open must get FAB_EBUSY, recovery must leave the end alone, and every
 *   message sent must be received.
 *
 * spsc_tail_hint_behind_after_kill: the spsc sender stores a message's
 *   commit word, then the tail hint.  A sender killed between the two left
 *   the hint one short and nobody repaired it: fab_chan_len, fab_chan_stats
 *   and fabd's leftover check (tail - head) saw 0 queued, and fabd exited 0
 *   destroying a message whose fab_send had returned 0.  A child sends, puts
 *   the hint back by one (the memory a kill at that instruction leaves) and
 *   is SIGKILLed; the message must be counted after fab_fabric_recover (one
 *   channel) and after a new sender takes the end over (another), and be
 *   received.
 *
 * recv_ready_stale_scan_bounded: a receiver killed between its raise of
 *   recv_ready and its attach word's count (or a recoverer killed between
 *   clearing a dead word and subtracting) leaves the hint one high for
 *   good, and every unbuffered fab_try_send and select send pass then
 *   scanned all 1024 attach words (docs/channels.md, a known limit until
 *   layout 1.3).  The hint is staged in the header; a receiver count
 *   planted in the last attach word shows what the scan reads (a whole-
 *   table scan offers to it and moves the tail); a receiver attached after
 *   the kill must still be met.
 *
 * attach_hi_covers_attached_handles: the mark that bounds that scan grows
 *   with every attach (concurrent ones too), covers every attached handle
 *   and is never lowered, also when a handle reuses a lower word.
 */
#include "../mp/mp_util.h"

#include "layout.h"

#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
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

/* ---- process liveness and the spsc tail hint ------------------------------ */

/* Children never ck_assert: codes 20..29 are their setup failures. */

static void teardown(void)
{
	mt_kill_all();
}

/* Map a fabric's segment (chan NULL: the control segment). */
static void *rg_map(const char *fabric, const char *chan, size_t *size)
{
	char path[160];
	struct stat sb;
	if (chan)
		snprintf(path, sizeof path, "/fab.%s.%s", fabric, chan);
	else
		snprintf(path, sizeof path, "/fab.%s", fabric);
	int fd = shm_open(path, O_RDWR, 0);
	ck_assert_msg(fd >= 0, "shm_open %s: %s", path, strerror(errno));
	ck_assert_int_eq(fstat(fd, &sb), 0);
	void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert_msg(p != MAP_FAILED, "mmap %s: %s", path, strerror(errno));
	*size = (size_t)sb.st_size;
	return p;
}

/* Write into a free process-table entry the entry of a dead process that
 * had our pid (an earlier start time): LIVE, holding channel h's send end
 * and an attachment.  Returns its index; *tag gets its owner tag. */
static uint32_t pr_craft_dead_twin(fab_proc_ent *procs, fab_chan_hdr *h, uint32_t *tag)
{
	uint32_t me = (uint32_t)getpid(), mine = FAB_MAX_PROCS, j = FAB_MAX_PROCS;
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
		uint64_t sg = atomic_load(&procs[i].sg);
		if (FAB_SG_STATE(sg) == FAB_PROC_LIVE && atomic_load(&procs[i].pid) == me &&
		    mine == FAB_MAX_PROCS)
			mine = i;
		else if (FAB_SG_STATE(sg) == FAB_PROC_FREE && j == FAB_MAX_PROCS)
			j = i;
	}
	ck_assert_msg(mine < FAB_MAX_PROCS && j < FAB_MAX_PROCS, "own entry %u, free entry %u",
		      mine, j);
	uint64_t start = atomic_load(&procs[mine].start_time);
	ck_assert_uint_gt(start, 1);
	fab_proc_ent *e = &procs[j];
	uint64_t sg = atomic_load(&e->sg);
	uint32_t gen = FAB_SG_GEN(sg) + 1;
	ck_assert(atomic_compare_exchange_strong(&e->sg, &sg, FAB_SG_MAKE(gen, FAB_PROC_CLAIMED)));
	atomic_store(&e->pid, me);
	e->uid = (uint32_t)geteuid();
	atomic_store(&e->start_time, start - 1); /* started before us: not us */
	atomic_store(&e->attached_ns, 1);
	atomic_store(&e->sg, FAB_SG_MAKE(gen, FAB_PROC_LIVE));
	*tag = FAB_TAG_MAKE(j, gen);
	/* Its handle: an attachment and the send end. */
	_Atomic uint64_t *att = (_Atomic uint64_t *)((uint8_t *)h + h->attach_off);
	uint32_t k = 0;
	while (k < h->attach_max && atomic_load(&att[k]) != 0)
		k++;
	ck_assert_uint_lt(k, h->attach_max);
	atomic_store(&att[k], FAB_ATT_MAKE(*tag, FAB_SEND, 0x777));
	uint64_t z = 0;
	ck_assert(atomic_compare_exchange_strong(&h->spsc_sender, &z, ((uint64_t)*tag << 32) | 0x777));
	return j;
}

START_TEST(pid_reused_by_self)
{
	const char *fabric = mt_fabric_name("rgpid");
	fab_fabric *fab = NULL;
	size_t nctl = 0, nh = 0;
	int rc = mt_make_chan(fabric, "c", FAB_SPSC, 4, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	fab_ctl_hdr *ctl = rg_map(fabric, NULL, &nctl);
	fab_proc_ent *procs = (fab_proc_ent *)((uint8_t *)ctl + ctl->procs_off);
	fab_chan_hdr *h = rg_map(fabric, "c", &nh);
	fab_chan *tx = NULL, *rx = open_or_fail(fab, FAB_RECV);

	/* Recovery first (what a careful restarter runs): the twin is dead,
	 * its entry is freed and the end released. */
	uint32_t tag = 0;
	uint32_t j = pr_craft_dead_twin(procs, h, &tag);
	int n = fab_fabric_recover(fab);
	ck_assert_msg(FAB_SG_STATE(atomic_load(&procs[j].sg)) == FAB_PROC_FREE &&
			      atomic_load(&h->spsc_sender) == 0,
		      "fab_fabric_recover (-> %d) kept the entry of a dead process that had our pid "
		      "(start time %llu, ours %llu) as %s, its send end %#llx",
		      n, (unsigned long long)atomic_load(&procs[j].start_time),
		      (unsigned long long)atomic_load(&procs[j].start_time) + 1,
		      FAB_SG_STATE(atomic_load(&procs[j].sg)) == FAB_PROC_LIVE ? "LIVE" : "?",
		      (unsigned long long)atomic_load(&h->spsc_sender));
	rc = fab_chan_open(fab, "c", FAB_SEND, &tx);
	ck_assert_msg(rc == 0, "open FAB_SEND after recovery: %s [%s]", fab_strerror(rc),
		      fab_errmsg());
	send_seq(tx, 0);
	recv_seq(rx, 0);
	fab_chan_release(tx);

	/* No recovery: the open itself must see the twin dead and take the
	 * end over. */
	j = pr_craft_dead_twin(procs, h, &tag);
	rc = fab_chan_open(fab, "c", FAB_SEND, &tx);
	ck_assert_msg(rc == 0,
		      "fab_chan_open(FAB_SEND) of an end held by a dead process that had our pid "
		      "(another start time): %s [%s]",
		      fab_strerror(rc), fab_errmsg());
	ck_assert_uint_ne(atomic_load(&h->spsc_sender) >> 32, tag); /* ours now */
	send_seq(tx, 1);
	recv_seq(rx, 1);
	n = fab_fabric_recover(fab);
	ck_assert_msg(FAB_SG_STATE(atomic_load(&procs[j].sg)) == FAB_PROC_FREE,
		      "fab_fabric_recover (-> %d) kept the entry of a dead process that had our pid",
		      n);
	ck_assert_int_eq(fab_try_recv(rx, NULL, 0), FAB_EAGAIN);

	munmap(h, nh);
	munmap(ctl, nctl);
	fab_chan_release(rx);
	fab_chan_release(tx);
	mt_destroy(fabric, &fab);
}
END_TEST

static struct {
	int go[2], done[2]; /* parent -> worker thread, worker -> parent */
} zl;

static void *zl_worker(void *arg)
{
	fab_chan *tx = arg;
	char c;
	if (read(zl.go[0], &c, 1) != 1)
		_exit(24);
	int rc = fab_send(tx, "from-M", 7, NULL);
	c = rc == 0 ? 'y' : 'n';
	if (write(zl.done[1], &c, 1) != 1)
		_exit(25);
	for (;;) /* alive, holding the end, until killed */
		pause();
	return NULL;
}

/* M: takes the send end; its main thread exits, a worker thread goes on. */
static int zl_holder(void *arg)
{
	const char *fabric = arg;
	fab_fabric *f = NULL;
	fab_chan *tx = NULL;
	pthread_t t;
	int rc = mt_open(fabric, "c", FAB_SEND, &f, &tx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	if (pthread_create(&t, NULL, zl_worker, tx) != 0)
		MT_CHILD_FAIL(21, "pthread_create");
	pthread_exit(NULL);
}

START_TEST(zombie_leader_alive)
{
	const char *fabric = mt_fabric_name("rgzl");
	fab_fabric *fab = NULL;
	size_t nh = 0;
	int rc = mt_make_chan(fabric, "c", FAB_SPSC, 8, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	fab_chan_hdr *h = rg_map(fabric, "c", &nh);
	ck_assert_int_eq(pipe(zl.go), 0);
	ck_assert_int_eq(pipe(zl.done), 0);

	pid_t m = mt_spawn(zl_holder, (void *)fabric);
	ck_assert_int_gt(m, 0);
	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL(mt_proc_state(m) == 'Z' || mt_exited(m, &code), 10 * MT_SEC),
		      "M's leader never showed Z (exit %d)", code);
	ck_assert_msg(code == MT_RUNNING, "M exited %d", code);
	uint64_t end = atomic_load(&h->spsc_sender);
	ck_assert_uint_ne(end, 0);

	/* Another process (a handle of ours) wants the end M holds; then
	 * fabd-style recovery runs. */
	fab_chan *tx = NULL, *rx = open_or_fail(fab, FAB_RECV);
	int orc = fab_chan_open(fab, "c", FAB_SEND, &tx);
	int nrec = fab_fabric_recover(fab);
	uint64_t end_after = atomic_load(&h->spsc_sender);

	/* M's thread sends; so does the other handle if it got the end. */
	char c = 'g', sent_m = 0;
	struct pollfd pfd = {.fd = zl.done[0], .events = POLLIN};
	ck_assert_int_eq(write(zl.go[1], &c, 1), 1);
	ck_assert_msg(poll(&pfd, 1, 10000) == 1 && read(zl.done[0], &sent_m, 1) == 1,
		      "M's thread never reported its send");
	int sent = sent_m == 'y', src = 1;
	if (orc == 0 && (src = fab_try_send(tx, "from-N", 7)) == 0)
		sent++;
	char buf[64], got[256] = "";
	int ngot = 0;
	ssize_t n;
	while ((n = fab_try_recv(rx, buf, sizeof buf)) > 0) {
		ngot++;
		snprintf(got + strlen(got), sizeof got - strlen(got), " %.16s", buf);
	}

	ck_assert_msg(orc == FAB_EBUSY,
		      "fab_chan_open(FAB_SEND) of the end held by live process %d (its leader is "
		      "a zombie, a thread runs): %s, not FAB_EBUSY; then %d sent (M's: %s, ours: "
		      "%s), %d received:%s",
		      (int)m, fab_errname(orc), sent, sent_m == 'y' ? "ok" : "failed",
		      orc == 0 ? fab_errname(src) : "-", ngot, got);
	ck_assert_msg(end_after == end, "fab_fabric_recover (-> %d) took live M's end: %#llx -> %#llx",
		      nrec, (unsigned long long)end, (unsigned long long)end_after);
	ck_assert_msg(sent_m == 'y' && ngot == 1 && strcmp(got, " from-M") == 0,
		      "M's send %s; received %d:%s", sent_m == 'y' ? "returned 0" : "failed", ngot,
		      got);
	ck_assert_int_eq(n, FAB_EAGAIN);

	kill(m, SIGKILL);
	ck_assert_int_eq(mt_wait(m, 10 * MT_SEC), 128 + SIGKILL);
	close(zl.go[0]), close(zl.go[1]), close(zl.done[0]), close(zl.done[1]);
	munmap(h, nh);
	fab_chan_release(rx);
	fab_chan_release(tx);
	mt_destroy(fabric, &fab);
}
END_TEST

static struct {
	const char *fabric, *chan;
	fab_chan_hdr *h;
	uint32_t seq;
} th;

/* fab_send, then the hint put back by one: the memory a SIGKILL between
 * fab__spsc_publish's commit word and its tail store leaves. */
static int th_sender(void *arg)
{
	fab_fabric *f = NULL;
	fab_chan *tx = NULL;
	unsigned char buf[64];
	(void)arg;
	int rc = mt_open(th.fabric, th.chan, FAB_SEND, &f, &tx);
	if (rc)
		MT_CHILD_FAIL(20, "open: %s", fab_strerror(rc));
	size_t len = mt_msg_len(0, th.seq, 64);
	mt_fill(buf, 0, th.seq, len);
	if ((rc = fab_send(tx, buf, len, NULL)) != 0)
		MT_CHILD_FAIL(21, "send: %s", fab_strerror(rc));
	atomic_fetch_sub(&th.h->tail, 1);
	raise(SIGKILL);
	return 22;
}

/* A sender killed with its hint one short on channel `chan` (seq 0 sent). */
static fab_chan_hdr *th_stage(const char *fabric, const char *chan, fab_fabric **fab, size_t *nh)
{
	int rc = mt_make_chan(fabric, chan, FAB_SPSC, 4, 64, 1, fab);
	ck_assert_msg(rc == 0, "create %s: %s", chan, fab_strerror(rc));
	th.fabric = fabric;
	th.chan = chan;
	th.h = rg_map(fabric, chan, nh);
	th.seq = 0;
	pid_t c = mt_spawn(th_sender, NULL);
	rc = mt_wait(c, 10 * MT_SEC);
	ck_assert_msg(rc == 128 + SIGKILL, "sender ended with %d", rc);
	ck_assert_uint_eq(atomic_load(&th.h->tail), atomic_load(&th.h->head)); /* as staged */
	ck_assert_uint_ne(atomic_load(&th.h->spsc_sender), 0);
	return th.h;
}

START_TEST(spsc_tail_hint_behind_after_kill)
{
	const char *fabric = mt_fabric_name("rgth");
	fab_fabric *fab = NULL;
	size_t nr = 0, nt = 0;
	fab_chan *rr = NULL, *rt = NULL, *tt = NULL;

	/* Channel r: fabd recovers the dead sender. */
	fab_chan_hdr *hr = th_stage(fabric, "r", &fab, &nr);
	ck_assert_int_eq(fab_chan_open(fab, "r", FAB_RECV, &rr), 0);
	int nrec = fab_fabric_recover(fab);
	size_t len_r = fab_chan_len(rr);
	uint64_t stats_r = mt_stats(rr).len;

	/* Channel t: a new sender takes the dead one's end over. */
	fab_chan_hdr *ht = th_stage(fabric, "t", &fab, &nt);
	ck_assert_int_eq(fab_chan_open(fab, "t", FAB_RECV, &rt), 0);
	int orc = fab_chan_open(fab, "t", FAB_SEND, &tt);
	ck_assert_msg(orc == 0, "open FAB_SEND over the dead sender: %s", fab_strerror(orc));
	size_t len_t = fab_chan_len(rt);
	uint64_t stats_t = mt_stats(tt).len;

	ck_assert_msg(len_r == 1 && stats_r == 1 && len_t == 1 && stats_t == 1,
		      "one message queued by a sender killed between its commit word and its tail "
		      "hint: fab_chan_len/stats.len %zu/%llu after fab_fabric_recover (-> %d), "
		      "%zu/%llu after a new sender took the end (want 1 each)",
		      len_r, (unsigned long long)stats_r, nrec, len_t, (unsigned long long)stats_t);

	/* It is received; the new sender appends after it. */
	recv_seq(rr, 0);
	ck_assert_uint_eq(fab_chan_len(rr), 0);
	send_seq(tt, 1);
	ck_assert_uint_eq(fab_chan_len(rt), 2);
	recv_seq(rt, 0);
	recv_seq(rt, 1);
	ck_assert_int_eq(fab_try_recv(rt, NULL, 0), FAB_EAGAIN);
	ck_assert_uint_eq(fab_chan_len(tt), 0);

	munmap(hr, nr);
	munmap(ht, nt);
	fab_chan_release(tt);
	fab_chan_release(rt);
	fab_chan_release(rr);
	mt_destroy(fabric, &fab);
}
END_TEST

/* A fab_chan_rejoin_as killed after its withdrawal (the CAS that sets the
 * producer's `rejoined` bit) and before it takes that close off the
 * `closes` figure leaves the figure one high for good.  fab_chan_close used
 * to trust the figure for its "raced past the quorum" refusal, so the
 * producer's next close -- recorded and counted by the ids -- was answered
 * FAB_ECLOSED "already closed", even while the channel was open (found by
 * review: every kill point between the two failed).  The state such a
 * rejoin leaves is staged in the segment: the bit set, nothing else. */
static void rj_killed_rejoin(fab_chan_hdr *h, int slot)
{
	atomic_fetch_or(&h->rejoined, 1ull << slot);
}

START_TEST(rejoin_killed_before_figure)
{
	const char *fabric = mt_fabric_name("rgrj");
	fab_fabric *fab = NULL;
	size_t nh = 0;
	fab_chan *c = NULL;

	/* Quorum 2: p0 closed; a supervisor's rejoin of p0 killed after the
	 * withdrawal.  p1 closes (open: p0 withdrawn), then the new p0 closes,
	 * which completes the quorum and must say so. */
	ck_assert_int_eq(mt_make_chan(fabric, "q2", FAB_MPMC, 4, 8, 2, &fab), 0);
	ck_assert_int_eq(fab_chan_open(fab, "q2", FAB_SEND, &c), 0);
	fab_chan_hdr *h = rg_map(fabric, "q2", &nh);
	ck_assert_int_eq(fab_chan_close_as(c, "p0"), 0);
	rj_killed_rejoin(h, 0);
	ck_assert_int_eq(fab_chan_close_as(c, "p1"), 0);
	ck_assert_msg(!atomic_load(&h->closed), "q2 closed with p0's close withdrawn");
	int rc = fab_chan_close_as(c, "p0");
	ck_assert_msg(rc == 0, "p0's close, the one that completes the quorum, returned %s (%s)",
		      fab_errname(rc), fab_errmsg());
	ck_assert_msg(atomic_load(&h->closed), "q2 open after every producer closed");
	munmap(h, nh);
	fab_chan_release(c);

	/* Quorum 3: p0 and p1 closed, both rejoins killed after withdrawing;
	 * p2 closes, then the new p0 (2 of 3: open), then the new p1 (closes
	 * it).  A second close of p1 is still refused, once. */
	ck_assert_int_eq(mt_make_chan(fabric, "q3", FAB_MPMC, 4, 8, 3, &fab), 0);
	ck_assert_int_eq(fab_chan_open(fab, "q3", FAB_SEND, &c), 0);
	h = rg_map(fabric, "q3", &nh);
	ck_assert_int_eq(fab_chan_close_as(c, "p0"), 0);
	ck_assert_int_eq(fab_chan_close_as(c, "p1"), 0);
	rj_killed_rejoin(h, 0);
	rj_killed_rejoin(h, 1);
	ck_assert_int_eq(fab_chan_close_as(c, "p2"), 0);
	rc = fab_chan_close_as(c, "p0");
	ck_assert_msg(rc == 0, "p0's close (2 of 3, channel open) returned %s (%s)",
		      fab_errname(rc), fab_errmsg());
	ck_assert(!atomic_load(&h->closed));
	ck_assert_int_eq(fab_chan_close_as(c, "p1"), 0);
	ck_assert(atomic_load(&h->closed));
	ck_assert_int_eq(fab_chan_close_as(c, "p1"), FAB_ECLOSED);
	munmap(h, nh);
	fab_chan_release(c);

	/* The race the figure exists for still refuses: quorum 1 reached, a
	 * late producer. */
	ck_assert_int_eq(mt_make_chan(fabric, "q1", FAB_MPMC, 4, 8, 1, &fab), 0);
	ck_assert_int_eq(fab_chan_open(fab, "q1", FAB_SEND, &c), 0);
	ck_assert_int_eq(fab_chan_close_as(c, "a"), 0);
	ck_assert_int_eq(fab_chan_close_as(c, "b"), FAB_ECLOSED);
	fab_chan_release(c);
	mt_destroy(fabric, &fab);
}
END_TEST

/* ---- waiting receivers: the attach high-water mark ---------------------- */

static const char *rr_fabric;

/* A receiver blocked in fab_recv on channel "c" (mt_child_recv_one). */
static int rr_receiver(void *arg)
{
	(void)arg;
	return mt_child_recv_one(rr_fabric, "c", "hello");
}

static _Atomic uint64_t *rg_attach(fab_chan_hdr *h)
{
	return (_Atomic uint64_t *)((uint8_t *)h + h->attach_off);
}

static uint32_t attach_hi(fab_chan_hdr *h)
{
	return atomic_load(&h->attach_hi);
}

/*
 * A receiver killed between its raise of recv_ready and the CAS that counts
 * it in its attach word (or a recoverer killed between clearing a dead
 * word and subtracting its count) leaves recv_ready one above the words'
 * sum for good.  Every unbuffered fab_try_send and select send pass then
 * confirmed the hint against all 1024 attach words (17 ns -> 1.1-1.7 us a
 * call, docs/channels.md, a known limit until layout 1.3).  The scan now
 * stops at attach_hi, one more than the highest word any handle claimed.
 *
 * The stale hint is written into the header as such a kill leaves it.  No
 * time is measured: what the scan reads is shown with a probe, a receiver
 * count in the last attach word, far above every word a handle claimed
 * (no library puts one there).  A scan of the whole table sees it and
 * offers the message, which moves the channel's tail; a scan bounded by
 * attach_hi does not, and answers FAB_EAGAIN without an offer.  Then a real
 * receiver, attached after the kill, must still be met.
 */
START_TEST(recv_ready_stale_scan_bounded)
{
	const char *fabric = mt_fabric_name("rgrr");
	fab_fabric *fab = NULL;
	size_t nh = 0;
	int rc = mt_make_chan(fabric, "c", FAB_MPMC, 0, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	rr_fabric = fabric;
	fab_chan *tx = open_or_fail(fab, FAB_SEND);
	fab_chan *rx1 = open_or_fail(fab, FAB_RECV), *rx2 = open_or_fail(fab, FAB_RECV);
	fab_chan_hdr *h = rg_map(fabric, "c", &nh);
	_Atomic uint64_t *att = rg_attach(h);
	const uint32_t far = FAB_ATTACH_MAX - 1;
	uint32_t tag = FAB_ATT_TAG(atomic_load(&att[0])); /* ours: recovery leaves it */
	ck_assert_uint_ne(tag, 0);
	ck_assert_uint_eq(atomic_load(&att[far]), 0);

	/* The stale hint: one waiting receiver counted in no word. */
	ck_assert_uint_eq(atomic_load(&h->recv_ready), 0);
	atomic_fetch_add(&h->recv_ready, 1);
	/* The probe. */
	uint64_t probe = FAB_ATT_MAKE(tag, FAB_RECV, 0xabcdefu) | FAB_ATT_READY_ONE;
	atomic_store(&att[far], probe);

	uint64_t tail0 = atomic_load(&h->tail);
	fab_case sc = {.ch = tx, .op = FAB_OP_SEND, .send_msg = "hello", .send_len = 6};
	for (int k = 0; k < 3; k++) {
		rc = fab_try_send(tx, "hello", 6);
		ck_assert_msg(rc == FAB_EAGAIN, "try_send %d with no receiver: %s", k,
			      fab_errname(rc));
		rc = fab_select(&sc, 1, NULL, FAB_NONBLOCK);
		ck_assert_msg(rc == FAB_EAGAIN, "non-blocking select %d with no receiver: %d (%s)",
			      k, rc, rc < 0 ? fab_errname(rc) : "a case");
	}
	uint64_t tail1 = atomic_load(&h->tail);
	ck_assert_msg(tail1 == tail0,
		      "with recv_ready stale, non-blocking sends offered a message (tail %llu -> "
		      "%llu) to the count in attach word %u, above every word a handle claimed "
		      "(attach_hi %u): the confirmation scanned the whole attach table",
		      (unsigned long long)tail0, (unsigned long long)tail1, far,
		      attach_hi(h));
	ck_assert_uint_eq(atomic_load(&att[far]), probe);
	/* Nothing repairs the hint (it cannot be told from a receiver between
	 * its two steps); it only costs a look at attach_hi words. */
	ck_assert_uint_eq(atomic_load(&h->recv_ready), 1);
	ck_assert_uint_eq(attach_hi(h), 3); /* tx, rx1, rx2: words 0..2 */
	atomic_store(&att[far], 0);

	/* A receiver of another process, attached after the kill: its word
	 * is above the old mark, and the scan must reach it. */
	uint32_t waiters = atomic_load(&h->recv_waiters) + 1;
	pid_t r = mt_spawn(rr_receiver, NULL);
	int code = MT_RUNNING;
	ck_assert_int_gt(r, 0);
	ck_assert_msg(MT_WAIT_UNTIL((atomic_load(&h->recv_ready) == 2 &&
				     atomic_load(&h->recv_waiters) == waiters && mt_in_futex(r)) ||
					    mt_exited(r, &code),
				    10 * MT_SEC),
		      "receiver never slept (recv_ready %u, recv_waiters %u)",
		      atomic_load(&h->recv_ready), atomic_load(&h->recv_waiters));
	ck_assert_msg(code == MT_RUNNING, "receiver returned (exit %d) on an empty channel", code);
	ck_assert_uint_eq(attach_hi(h), 4);
	ck_assert_uint_eq(FAB_ATT_READY(atomic_load(&att[3])), 1);
	/* Retried: the receiver may not run in the 2 ms of one offer. */
	ck_assert_msg(MT_WAIT_UNTIL(fab_try_send(tx, "hello", 6) == 0, 10 * MT_SEC),
		      "try_send never met the receiver blocked in attach word 3 (attach_hi %u, "
		      "recv_ready %u)",
		      attach_hi(h), atomic_load(&h->recv_ready));
	rc = mt_wait(r, 10 * MT_SEC);
	ck_assert_msg(rc == 0, "receiver exited %d%s", rc, mt_code_why(rc));
	ck_assert_uint_eq(atomic_load(&h->recv_ready), 1); /* the stale one */

	munmap(h, nh);
	fab_chan_release(rx2);
	fab_chan_release(rx1);
	fab_chan_release(tx);
	mt_destroy(fabric, &fab);
}
END_TEST

/*
 * Go's select never matches its own send case with its own receive case on
 * the same unbuffered channel.  fab's select subtracts its own waiting
 * receivers when a send case confirms that a receiver waits; until 28 Nov
 * it recognised them by the handle's mapping address, so a select that
 * received through one handle and sent through another (two fab_chan_open
 * of the same channel, as a stage with an in and an out port on one
 * channel has) counted its own receiver as a peer: every blocking pass
 * offered the message to itself, waited 2 ms for a take that could not
 * come, and withdrew it.  Seen here as the tail moving (each offer claims a
 * position); now compared by the segment's identity, and nothing is
 * offered.
 */
START_TEST(select_self_through_two_handles)
{
	const char *fabric = mt_fabric_name("rgst");
	fab_fabric *fab = NULL;
	size_t nh = 0;
	int rc = mt_make_chan(fabric, "c", FAB_MPMC, 0, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	fab_chan *tx = open_or_fail(fab, FAB_SEND), *rx = open_or_fail(fab, FAB_RECV);
	fab_chan_hdr *h = rg_map(fabric, "c", &nh);
	uint64_t tail0 = atomic_load(&h->tail);
	char buf[64];
	fab_case c[2] = {
		{.ch = tx, .op = FAB_OP_SEND, .send_msg = "hello", .send_len = 6},
		{.ch = rx, .op = FAB_OP_RECV, .recv_buf = buf, .recv_cap = sizeof buf},
	};
	fab_ctx *t = NULL;
	ck_assert_int_eq(fab_ctx_with_timeout(NULL, 30 * 1000000LL, &t), 0);
	rc = fab_select(c, 2, t, 0);
	fab_ctx_release(t);
	ck_assert_msg(rc == FAB_ETIMEDOUT, "select alone on an unbuffered channel: %d (%s)", rc,
		      rc < 0 ? fab_errname(rc) : "a case");
	uint64_t tail1 = atomic_load(&h->tail);
	ck_assert_msg(tail1 == tail0,
		      "the select offered its message to its own receive case (another handle "
		      "of the same channel): tail %llu -> %llu",
		      (unsigned long long)tail0, (unsigned long long)tail1);
	ck_assert_uint_eq(atomic_load(&h->recv_ready), 0);
	munmap(h, nh);
	fab_chan_release(rx);
	fab_chan_release(tx);
	mt_destroy(fabric, &fab);
}
END_TEST

/* 1 + the highest attach word in use, 0 if none. */
static uint32_t ah_top(_Atomic uint64_t *att)
{
	uint32_t top = 0;
	for (uint32_t i = 0; i < FAB_ATTACH_MAX; i++)
		if (atomic_load(&att[i]))
			top = i + 1;
	return top;
}

/* The index of the one attach word in use now that was free in `before`
 * (the word the handle just opened claimed). */
static uint32_t ah_word_of_new(_Atomic uint64_t *att, const uint64_t *before)
{
	uint32_t found = FAB_ATTACH_MAX;
	for (uint32_t i = 0; i < FAB_ATTACH_MAX; i++)
		if (atomic_load(&att[i]) && !before[i]) {
			ck_assert_msg(found == FAB_ATTACH_MAX, "two new attach words: %u and %u",
				      found, i);
			found = i;
		}
	ck_assert_msg(found < FAB_ATTACH_MAX, "the open claimed no attach word");
	return found;
}

static struct {
	fab_fabric *fab;
	fab_chan *ch[4][16];
	int rc[4];
} ah;

static void *ah_opener(void *arg)
{
	int t = (int)(intptr_t)arg;
	for (int k = 0; k < 16 && ah.rc[t] == 0; k++)
		ah.rc[t] = fab_chan_open(ah.fab, "c", FAB_RECV, &ah.ch[t][k]);
	return NULL;
}

/*
 * attach_hi is one more than the highest attach word any handle claimed:
 * it grows with attaches (also concurrent ones: a CAS-max, never a store),
 * covers every attached handle, and is never lowered -- not when handles
 * detach, and not when a new handle reuses a lower word.
 */
START_TEST(attach_hi_covers_attached_handles)
{
	const char *fabric = mt_fabric_name("rgah");
	fab_fabric *fab = NULL;
	size_t nh = 0;
	uint64_t before[FAB_ATTACH_MAX];
	int rc = mt_make_chan(fabric, "c", FAB_MPMC, 0, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	fab_chan_hdr *h = rg_map(fabric, "c", &nh);
	_Atomic uint64_t *att = rg_attach(h);
	/* The creator's handle took word 0 and was released. */
	ck_assert_uint_eq(ah_top(att), 0);
	ck_assert_uint_eq(attach_hi(h), 1);

	/* Four handles: words 0..3, one open at a time. */
	fab_chan *c[6];
	for (uint32_t k = 0; k < 4; k++) {
		for (uint32_t i = 0; i < FAB_ATTACH_MAX; i++)
			before[i] = atomic_load(&att[i]);
		c[k] = open_or_fail(fab, k % 2 ? FAB_RECV : FAB_SEND);
		uint32_t w = ah_word_of_new(att, before);
		ck_assert_uint_eq(w, k);
		ck_assert_msg(attach_hi(h) == k + 1,
			      "attach_hi %u after the handle of word %u attached (want %u)",
			      attach_hi(h), w, k + 1);
	}

	/* Released handles leave the mark alone; new ones reuse the lower
	 * words (still covered), then one more grows it. */
	fab_chan_release(c[1]);
	fab_chan_release(c[2]);
	ck_assert_uint_eq(ah_top(att), 4);
	ck_assert_uint_eq(attach_hi(h), 4);
	fab_chan_release(c[3]);
	ck_assert_uint_eq(ah_top(att), 1);
	ck_assert_msg(attach_hi(h) == 4, "attach_hi %u after the top handle left: "
		      "lowered (want 4, never lowered)", attach_hi(h));
	for (uint32_t k = 1; k <= 4; k++) {
		for (uint32_t i = 0; i < FAB_ATTACH_MAX; i++)
			before[i] = atomic_load(&att[i]);
		fab_chan *n = open_or_fail(fab, FAB_RECV);
		uint32_t w = ah_word_of_new(att, before);
		ck_assert_uint_eq(w, k);
		uint32_t hi = attach_hi(h);
		ck_assert_msg(hi == (k < 4 ? 4u : 5u) && w < hi,
			      "attach_hi %u with the new handle in word %u", hi, w);
		if (k < 4)
			c[k] = n;
		else
			c[4] = n;
	}

	/* 64 handles opened by four threads at once: words 5..68. */
	ah.fab = fab;
	pthread_t th4[4];
	for (int t = 0; t < 4; t++)
		ck_assert_int_eq(pthread_create(&th4[t], NULL, ah_opener, (void *)(intptr_t)t), 0);
	for (int t = 0; t < 4; t++)
		ck_assert_int_eq(pthread_join(th4[t], NULL), 0);
	for (int t = 0; t < 4; t++)
		ck_assert_msg(ah.rc[t] == 0, "thread %d: open: %s", t, fab_strerror(ah.rc[t]));
	ck_assert_uint_eq(ah_top(att), 69);
	ck_assert_msg(attach_hi(h) == 69,
		      "attach_hi %u after 64 concurrent attaches filled words 5..68 (want 69)",
		      attach_hi(h));

	/* All gone: the mark stays; a new handle takes word 0. */
	for (int t = 0; t < 4; t++)
		for (int k = 0; k < 16; k++)
			fab_chan_release(ah.ch[t][k]);
	for (int k = 0; k <= 4; k++)
		fab_chan_release(c[k]);
	ck_assert_uint_eq(ah_top(att), 0);
	ck_assert_uint_eq(attach_hi(h), 69);
	c[5] = open_or_fail(fab, FAB_SEND);
	ck_assert_uint_eq(ah_top(att), 1);
	ck_assert_uint_eq(attach_hi(h), 69);
	fab_chan_release(c[5]);

	munmap(h, nh);
	mt_destroy(fabric, &fab);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crash_regress");
	TCase *tc = mt_tcase("regress", 60);
	mt_init();
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, spsc_receiver_killed_between_done_and_hint);
	tcase_add_test(tc, mpmc_reader_one_lap_behind);
	tcase_add_test(tc, alo_gauge_reset_races_take_and_give_back);
	tcase_add_test(tc, alo_redelivery_uncounted);
	tcase_add_test(tc, pid_reused_by_self);
	tcase_add_test(tc, zombie_leader_alive);
	tcase_add_test(tc, spsc_tail_hint_behind_after_kill);
	tcase_add_test(tc, rejoin_killed_before_figure);
	tcase_add_test(tc, recv_ready_stale_scan_bounded);
	tcase_add_test(tc, attach_hi_covers_attached_handles);
	tcase_add_test(tc, select_self_through_two_handles);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
