/*
 * alo_test.c - at-least-once channels under fire (issue 3).
 *
 * torture: 4 producer and 4 consumer processes move sequence-numbered
 * messages through an at-least-once MPMC channel while the test process, in
 * the broker's role, SIGKILLs a random producer or consumer every 1-4 ms,
 * runs fab_fabric_recover after each death (as fabd does on every child
 * death) and starts a replacement.  Producers stop once TARGET sends have
 * returned 0; the killing goes on until at least MIN_KILLS kills; then the
 * channel is closed and the consumers drain it.  Checked:
 *   - every message whose fab_send returned 0 was processed at least once;
 *   - every second (or later) processing of a message was flagged as
 *     redelivered by fab_recv_info (so a consumer can tell);
 *   - duplicates <= consumer kills x max_inflight;
 *   - nothing is left leased or waiting (fab_stats), and the channel is
 *     empty.
 * A message's identity is an id from a shared counter (producers take
 * blocks of ids), so a replacement producer never reuses one.
 *
 * poison: one message makes every consumer that receives it crash; the
 * test restarts crashed consumers and recovers.  After max_deliveries it is
 * in the dead-letter channel, counted, and every other message got
 * through.
 *
 * Child exit codes: 10 open; 11 send; 12 recv; 13 corrupt message; 14 a
 * duplicate not flagged redelivered; 15 recv_info; 16 ack.
 */
#include "mp_util.h"

#include <signal.h>
#include <stdatomic.h>

#define NP 4
#define NC 4
#define MSZ 16u
#define ID_MAX (4u << 20)
#define BLOCK 256u

struct shared {
	_Atomic uint64_t next_id;        /* id blocks for producers */
	_Atomic uint64_t confirmed_total;
	_Atomic uint64_t target;
	_Atomic uint64_t dups;           /* processings after the first */
	_Atomic uint64_t poison_seen;
	_Atomic uint32_t poison_id;      /* id that crashes consumers (poison test) */
	_Atomic uint8_t confirmed[ID_MAX];
	_Atomic uint32_t seen[ID_MAX];
};

struct cfg {
	const char *fabric;
	struct shared *sh;
	int poison;      /* consumers crash on poison_id */
	uint64_t seed;
	int work;        /* hash rounds per message in consumers */
	unsigned inflight; /* consumers receive batches of this many */
	int slow;        /* consumers hold 1 message in 16 up to 2 ms (passed) */
};

static void fill(unsigned char *m, uint64_t id)
{
	uint64_t chk = mt_mix64(id ^ 0xa10a10ULL);
	memcpy(m, &id, 8);
	memcpy(m + 8, &chk, 8);
}

static int parse(const unsigned char *m, ssize_t n, uint64_t *id)
{
	uint64_t chk;
	if (n != (ssize_t)MSZ)
		return -1;
	memcpy(id, m, 8);
	memcpy(&chk, m + 8, 8);
	return chk == mt_mix64(*id ^ 0xa10a10ULL) && *id < ID_MAX ? 0 : -1;
}

static int producer(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	int rc = mt_open(c->fabric, "w", FAB_SEND, &fab, &ch);
	if (rc)
		MT_CHILD_FAIL(10, "producer open: %s", fab_strerror(rc));
	unsigned char m[MSZ];
	uint64_t id = 0, end = 0;
	while (atomic_load(&c->sh->confirmed_total) < atomic_load(&c->sh->target)) {
		if (id == end) {
			id = atomic_fetch_add(&c->sh->next_id, BLOCK);
			end = id + BLOCK;
			if (end > ID_MAX)
				MT_CHILD_FAIL(11, "out of ids");
		}
		fill(m, id);
		rc = fab_send(ch, m, MSZ, NULL);
		if (rc != 0)
			MT_CHILD_FAIL(11, "send: %s: %s", fab_errname(rc), fab_errmsg());
		/* Only now is it "sent": a kill before this store leaves it
		 * unconfirmed (it may still arrive; nothing is asserted). */
		atomic_store(&c->sh->confirmed[id], 1);
		atomic_fetch_add(&c->sh->confirmed_total, 1);
		id++;
	}
	mt_close(fab, ch);
	return 0;
}

/* Process one received message: check it, count it, flag duplicates. */
static int process(struct cfg *c, const unsigned char *m, ssize_t n, int redelivered)
{
	uint64_t id;
	if (parse(m, n, &id))
		MT_CHILD_FAIL(13, "corrupt message of %zd bytes", n);
	if (c->poison && id == atomic_load(&c->sh->poison_id)) {
		atomic_fetch_add(&c->sh->poison_seen, 1);
		raise(SIGKILL); /* the poison crashes whoever touches it */
	}
	/* A little work per message (a few microseconds), so the flow
	 * lasts long enough for hundreds of kills to land mid-stream. */
	volatile uint64_t sink = id;
	for (int k = 0; k < c->work; k++)
		sink = mt_mix64(sink);
	uint32_t before = atomic_fetch_add(&c->sh->seen[id], 1);
	if (before > 0) {
		atomic_fetch_add(&c->sh->dups, 1);
		if (!redelivered)
			MT_CHILD_FAIL(14, "message %llu processed again, not flagged redelivered",
				      (unsigned long long)id);
	}
	return 0;
}

/* Receives one message (max_inflight 1) or a batch of up to max_inflight,
 * processes it, then acks explicitly half the time (else the next receive
 * acks implicitly). */
static int consumer(void *arg)
{
	struct cfg *c = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	int rc = mt_open(c->fabric, "w", FAB_RECV, &fab, &ch);
	if (rc)
		MT_CHILD_FAIL(10, "consumer open: %s", fab_strerror(rc));
	mt_rng rng = {c->seed ^ (uint64_t)getpid()};
	unsigned char m[4][MSZ];
	fab_iov v[4];
	fab_msg_info mi;
	for (;;) {
		int got;
		if (c->inflight > 1) {
			for (unsigned i = 0; i < c->inflight; i++)
				v[i].base = m[i], v[i].len = MSZ;
			got = fab_recv_batch(ch, v, c->inflight, NULL);
		} else {
			ssize_t n = fab_recv(ch, m[0], MSZ, NULL);
			v[0].len = n >= 0 ? (size_t)n : 0;
			got = n >= 0 ? 1 : (int)n;
		}
		if (got == FAB_ECLOSED) {
			fab_stats cs;
			memset(&cs, 0, sizeof cs);
			cs.size = sizeof cs;
			fab_chan_stats(ch, &cs);
			if (!cs.closed)
				MT_CHILD_FAIL(12, "FAB_ECLOSED from an open channel");
			break;
		}
		if (got < 0)
			MT_CHILD_FAIL(12, "recv: %s: %s", fab_errname(got), fab_errmsg());
		memset(&mi, 0, sizeof mi);
		mi.size = sizeof mi;
		if ((rc = fab_recv_info(ch, &mi)) != 0 || mi.deliveries < 1)
			MT_CHILD_FAIL(15, "recv_info: %d", rc);
		for (int i = 0; i < got; i++) {
			/* recv_info describes the last message; an earlier one of
			 * a batch counts as redelivered if its own delivery says
			 * so, which only the last one reports: be conservative
			 * and accept either for the others. */
			int red = i == got - 1 ? (int)mi.redelivered : 1;
			if ((rc = process(c, m[i], (ssize_t)v[i].len, red)))
				return rc;
		}
		/* A slow message now and then: its lease is held while the
		 * others go on, so producers pass its slot lap after lap
		 * (layout 1.4), and kills land on passed leases too. */
		if (c->slow && mt_below(&rng, 16) == 0)
			usleep((useconds_t)mt_below(&rng, 2000));
		if (mt_below(&rng, 2) && (rc = fab_ack(ch)) != 0)
			MT_CHILD_FAIL(16, "ack: %s", fab_errname(rc));
	}
	mt_close(fab, ch);
	return 0;
}

static fab_stats chan_stats(fab_fabric *fab, const char *name)
{
	fab_chan *ch = NULL;
	fab_stats st;
	memset(&st, 0xff, sizeof st);
	if (fab_chan_open(fab, name, FAB_SEND, &ch) == 0) {
		memset(&st, 0, sizeof st);
		st.size = sizeof st;
		fab_chan_stats(ch, &st);
		fab_chan_release(ch);
	}
	return st;
}

static int make_alo(fab_fabric **fab, const char *fabric, uint32_t cap, uint32_t inflight,
		    uint32_t maxdel, const char *dl)
{
	fab_chan_opts o;
	fab_chan *ch = NULL;
	int rc;
	if (!*fab && (rc = fab_fabric_open(fabric, FAB_CREATE, fab)))
		return rc;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.kind = FAB_MPMC;
	o.capacity = cap;
	o.msg_size = MSZ;
	o.delivery = FAB_AT_LEAST_ONCE;
	o.max_inflight = inflight;
	o.max_deliveries = maxdel;
	o.dead_letter = dl;
	if ((rc = fab_chan_create(*fab, "w", &o, &ch)))
		return rc;
	fab_chan_release(ch);
	return 0;
}

/* The parent closes the channel: producers are done (quorum 1). */
static void close_chan(fab_fabric *fab)
{
	fab_chan *ch = NULL;
	ck_assert_int_eq(fab_chan_open(fab, "w", FAB_SEND, &ch), 0);
	ck_assert_int_eq(fab_chan_close(ch), 0);
	fab_chan_release(ch);
}

static void torture(uint32_t inflight, int slow)
{
	struct cfg c = {mt_fabric_name(slow ? "alos" : inflight == 1 ? "alo1" : "alo2"),
			NULL,
			0,
			0,
			400,
			inflight,
			slow};
	fab_fabric *fab = NULL;
	c.sh = mt_shared(sizeof *c.sh);
	ck_assert_ptr_nonnull(c.sh);
	c.seed = mt_seed("alo torture");
	const uint64_t target = slow ? MT_SCALE(200000, 40000) : MT_SCALE(1000000, 100000);
	const unsigned min_kills = MT_SCALE(300, 120);
	const unsigned max_kills = MT_SCALE(500, 200);
	atomic_store(&c.sh->target, target);
	int rc = make_alo(&fab, c.fabric, slow ? 8 : 64, inflight, 1000, NULL);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));

	pid_t prod[NP], cons[NC];
	for (int i = 0; i < NP; i++)
		prod[i] = mt_spawn(producer, &c);
	for (int i = 0; i < NC; i++)
		cons[i] = mt_spawn(consumer, &c);
	mt_rng rng = {c.seed};
	unsigned kills = 0, ckills = 0, pkills = 0, flow_kills = 0;
	int64_t deadline = ft_now_ns() + 240 * MT_SEC;
	for (;;) {
		uint64_t done = atomic_load(&c.sh->confirmed_total);
		if (done >= target && kills >= min_kills)
			break;
		if (kills >= max_kills) {
			/* Enough: let the rest of the flow finish unharmed. */
			if (done >= target)
				break;
			usleep(2000);
			continue;
		}
		ck_assert_msg(ft_now_ns() < deadline, "no progress: %llu/%llu sent, %u kills",
			      (unsigned long long)done, (unsigned long long)target, kills);
		usleep(1000 + (useconds_t)mt_below(&rng, 3000));
		int producing = done < target;
		int victim = (int)mt_below(&rng, producing ? NP + NC : NC);
		pid_t *slot = victim < NC ? &cons[victim] : &prod[victim - NC];
		if (*slot == 0)
			continue; /* a producer that finished */
		int code = MT_RUNNING;
		if (mt_exited(*slot, &code)) {
			/* Exited by itself: a producer that reached the target. */
			ck_assert_msg(code == 0, "%s exited %d", victim < NC ? "consumer" : "producer",
				      code);
			if (victim < NC)
				ck_abort_msg("consumer %d exited %d before the close", (int)*slot, code);
			*slot = 0;
			continue;
		}
		kill(*slot, SIGKILL);
		int st = mt_wait(*slot, 10 * MT_SEC);
		ck_assert_msg(st == 128 + SIGKILL || st == 0, "victim exit %d", st);
		kills++;
		flow_kills += producing;
		if (victim < NC)
			ckills++;
		else
			pkills++;
		/* The broker's part: recover, then replace. */
		ck_assert_int_ge(fab_fabric_recover(fab), 0);
		*slot = victim < NC ? mt_spawn(consumer, &c) : mt_spawn(producer, &c);
	}
	for (int i = 0; i < NP; i++) {
		if (prod[i] == 0)
			continue;
		rc = mt_wait(prod[i], 60 * MT_SEC);
		ck_assert_msg(rc == 0, "producer %d exited %d", i, rc);
	}
	close_chan(fab);
	int codes[NC];
	rc = mt_wait_all(cons, NC, 120 * MT_SEC, codes);
	mt_kill_all();
	for (int i = 0; i < NC; i++)
		ck_assert_msg(codes[i] == 0, "consumer %d exited %d", i, codes[i]);

	uint64_t confirmed = 0, lost = 0, ids = atomic_load(&c.sh->next_id);
	for (uint64_t id = 0; id < ids && id < ID_MAX; id++) {
		if (!atomic_load(&c.sh->confirmed[id]))
			continue;
		confirmed++;
		if (atomic_load(&c.sh->seen[id]) == 0)
			lost++;
	}
	uint64_t dups = atomic_load(&c.sh->dups);
	fab_stats st = chan_stats(fab, "w");
	printf("alo torture (max_inflight %u): %llu confirmed sends, %u kills (%u consumers, %u "
	       "producers; %u while messages flowed), %llu duplicates (flagged), %llu "
	       "redelivered, %llu recovered slots\n",
	       inflight, (unsigned long long)confirmed, kills, ckills, pkills, flow_kills,
	       (unsigned long long)dups, (unsigned long long)st.redelivered,
	       (unsigned long long)st.recovered);
	fflush(stdout);
	ck_assert_msg(lost == 0, "%llu of %llu confirmed messages never processed",
		      (unsigned long long)lost, (unsigned long long)confirmed);
	ck_assert_uint_ge(confirmed, target);
	ck_assert_msg(dups <= (uint64_t)ckills * inflight, "%llu duplicates > %u consumer kills x %u",
		      (unsigned long long)dups, ckills, inflight);
	ck_assert_uint_eq(st.leased, 0);
	ck_assert_uint_eq(st.len, 0);
	ck_assert_uint_eq(st.dead_lettered + st.dead_dropped, 0);
	mt_destroy(c.fabric, &fab);
}

START_TEST(alo_torture_inflight1)
{
	torture(1, 0);
}
END_TEST

START_TEST(alo_torture_slow_holds)
{
	/* Capacity 8, slow messages held up to 2 ms: leases passed and
	 * killed while passed, given back where they stand. */
	torture(1, 1);
}
END_TEST

START_TEST(alo_torture_inflight2)
{
	torture(2, 0);
}
END_TEST

START_TEST(alo_poison)
{
	struct cfg c = {mt_fabric_name("alop"), NULL, 1, 7, 0, 1};
	fab_fabric *fab = NULL;
	c.sh = mt_shared(sizeof *c.sh);
	ck_assert_ptr_nonnull(c.sh);
	const uint32_t nmsg = 2000, maxdel = 3;
	atomic_store(&c.sh->poison_id, 777);
	fab_chan_opts o;
	fab_chan *dl = NULL, *w = NULL;
	ck_assert_int_eq(fab_fabric_open(c.fabric, FAB_CREATE, &fab), 0);
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.capacity = 4;
	o.msg_size = MSZ;
	ck_assert_int_eq(fab_chan_create(fab, "dead", &o, &dl), 0);
	ck_assert_int_eq(make_alo(&fab, c.fabric, 2 * nmsg, 1, maxdel, "dead"), 0);
	ck_assert_int_eq(fab_chan_open(fab, "w", FAB_SEND, &w), 0);
	unsigned char m[MSZ];
	for (uint64_t id = 0; id < nmsg; id++) {
		fill(m, id);
		atomic_store(&c.sh->confirmed[id], 1);
		ck_assert_int_eq(fab_send(w, m, MSZ, NULL), 0);
	}
	ck_assert_int_eq(fab_chan_close(w), 0);
	fab_chan_release(w);

	pid_t cons[3];
	for (int i = 0; i < 3; i++)
		cons[i] = mt_spawn(consumer, &c);
	int crashes = 0, finished = 0;
	int64_t deadline = ft_now_ns() + 60 * MT_SEC;
	while (finished < 3) {
		ck_assert_msg(ft_now_ns() < deadline, "consumers did not finish (%d crashes)", crashes);
		for (int i = 0; i < 3; i++) {
			int code = MT_RUNNING;
			if (cons[i] <= 0 || !mt_exited(cons[i], &code))
				continue;
			if (code == 128 + SIGKILL) {
				/* Crashed on the poison: recover and restart, as
				 * fabd would. */
				crashes++;
				ck_assert_int_ge(fab_fabric_recover(fab), 0);
				cons[i] = mt_spawn(consumer, &c);
			} else {
				ck_assert_msg(code == 0, "consumer exited %d", code);
				cons[i] = 0;
				finished++;
			}
		}
		usleep(1000);
	}
	ck_assert_int_eq(crashes, (int)maxdel);
	ck_assert_uint_eq(atomic_load(&c.sh->poison_seen), maxdel);
	for (uint64_t id = 0; id < nmsg; id++) {
		if (id == 777)
			ck_assert_uint_eq(atomic_load(&c.sh->seen[id]), 0);
		else
			ck_assert_msg(atomic_load(&c.sh->seen[id]) >= 1, "message %llu lost",
				      (unsigned long long)id);
	}
	char buf[MSZ];
	uint64_t id;
	ssize_t n = fab_try_recv(dl, buf, sizeof buf);
	ck_assert_int_eq(n, (ssize_t)MSZ);
	ck_assert_int_eq(parse((unsigned char *)buf, n, &id), 0);
	ck_assert_uint_eq(id, 777);
	ck_assert_int_eq(fab_try_recv(dl, buf, sizeof buf), FAB_EAGAIN);
	fab_stats st = chan_stats(fab, "w");
	ck_assert_uint_eq(st.dead_lettered, 1);
	ck_assert_uint_eq(st.leased, 0);
	fab_chan_release(dl);
	mt_destroy(c.fabric, &fab);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mp_alo");
	mt_init();
	TCase *t1 = mt_tcase("torture1", 400), *t2 = mt_tcase("torture2", 400);
	TCase *tp = mt_tcase("poison", 120);
	tcase_add_test(t1, alo_torture_inflight1);
	tcase_add_test(t1, alo_torture_slow_holds);
	tcase_add_test(t2, alo_torture_inflight2);
	tcase_add_test(tp, alo_poison);
	suite_add_tcase(s, t1);
	suite_add_tcase(s, t2);
	suite_add_tcase(s, tp);
	return mt_run_suite(s);
}
