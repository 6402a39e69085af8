/*
 * kill_test.c - SIGKILL producers and consumers at random moments, hundreds
 * of times, while the channel keeps flowing (issue 2 item 6, DESIGN §4: "a
 * message counts as sent when fab_send returned 0; nothing sent is lost").
 *
 * Bookkeeping, all in MAP_SHARED memory, one byte per message id:
 *   bit 0  ATTEMPT  set by the producer before fab_send
 *   bit 1  SENT     set after fab_send returned 0
 *   bits 2..7       receive count, bumped by a consumer right after fab_recv
 *                   returned, before anything else
 * Ids come from one shared counter, so they are unique across incarnations.
 * Each consumer slot has an `in_recv` marker, raised before fab_recv and
 * lowered after recording; a consumer killed with it raised may have taken
 * messages it never recorded, so it may account for that many missing
 * messages (1, or the batch size of a fab_recv_batch).
 *
 * The "mixed" tests send and receive each message through a random path:
 * fab_send, fab_send_reserve + fab_send_commit, fab_send_batch (up to
 * KBATCH) or a fab_select send case; fab_recv, fab_recv_acquire +
 * fab_recv_release, fab_recv_batch or a fab_select receive case.  Every
 * path is a send or a receive that a kill may interrupt at any instruction.
 * A producer killed mid-send may or may not have sent its message: ATTEMPT
 * without SENT is allowed either way.
 *
 * At the end: producers stop, consumers are killed, the parent closes the
 * channel and a fresh consumer drains it under a deadline (a stall is a
 * failure, not a hang).  Then: no id was received twice (at-most-once);
 * every received id was attempted and intact; SENT-but-never-received ids
 * are at most the number of consumers killed inside fab_recv; each
 * consumer saw each producer incarnation's messages in order.
 *
 * The waiter_recovery tests never call fab_fabric_recover from the parent:
 * a consumer stuck behind a dead producer's half-written slot (or a producer
 * behind a dead consumer's slot) must heal the channel itself.
 *
 * Child exit codes: 0 ok; 10 open; 11 send/recv failed; 12 order; 13
 * corrupt message; 18 stall (deadline).
 */
#include "../mp/mp_util.h"

#include <sys/resource.h>

#define KMAXP 4
#define KMAXC 4
#define MAXINC 16384
#define MAXID (64u << 20) /* one byte each, touched lazily */
#define MSZ 64u
#define KBATCH 4u /* largest batch of the mixed paths */
#define KHDR 24u

#define ST_ATTEMPT 1u
#define ST_SENT 2u
#define ST_RCV 4u

struct kshared {
	uint64_t next_id;
	uint32_t next_inc;
	int stop;
	int in_recv[KMAXC + 1]; /* slot KMAXC: the final drain consumer */
	uint64_t received;
};

struct kcfg {
	const char *fabric;
	uint32_t kind, cap;
	unsigned np, nc;
	struct kshared *sh;
	uint8_t *ids;
	int slot;
	int64_t life_ns; /* deadline for each child's blocking calls */
	int mixed;       /* each message through a random path (k_producer, k_consumer) */
	int hold;        /* mixed: an acquired message is held up to 300 us */
	uint64_t seed;
};

/* Message: id u64, incarnation u32, seq u32, check u64, then filler. */
static size_t k_len(uint64_t id)
{
	return KHDR + (size_t)(mt_mix64(id ^ 0xabcdULL) % (MSZ - KHDR + 1));
}

static void k_fill(unsigned char *b, uint64_t id, uint32_t inc, uint32_t seq)
{
	size_t len = k_len(id);
	uint64_t chk = mt_mix64(id ^ ((uint64_t)inc << 40) ^ seq);
	memcpy(b, &id, 8);
	memcpy(b + 8, &inc, 4);
	memcpy(b + 12, &seq, 4);
	memcpy(b + 16, &chk, 8);
	for (size_t i = KHDR; i < len; i++)
		b[i] = (unsigned char)mt_mix64(chk + i);
}

static int k_check(const unsigned char *b, size_t len, uint64_t *id, uint32_t *inc, uint32_t *seq)
{
	uint64_t chk;
	if (len < KHDR)
		return 1;
	memcpy(id, b, 8);
	memcpy(inc, b + 8, 4);
	memcpy(seq, b + 12, 4);
	memcpy(&chk, b + 16, 8);
	if (chk != mt_mix64(*id ^ ((uint64_t)*inc << 40) ^ *seq) || *id >= MAXID || *inc >= MAXINC)
		return 2;
	if (len != k_len(*id))
		return 3;
	for (size_t i = KHDR; i < len; i++)
		if (b[i] != (unsigned char)mt_mix64(chk + i))
			return 4;
	return 0;
}

/* Open with the child's own fabric handle.  An spsc end whose holder was
 * just killed is reclaimed by recovery (DESIGN §3a), so on FAB_EBUSY run
 * it and retry for a while. */
static int k_open(const struct kcfg *c, unsigned role, fab_fabric **fab, fab_chan **ch)
{
	int64_t end = ft_now_ns() + 20 * MT_SEC;
	int rc;
	/* Workers run niced so the killer (the parent) gets the CPU when its
	 * random moment comes, instead of queueing behind spinning workers on
	 * two cores.  Best effort. */
	if (setpriority(PRIO_PROCESS, 0, 10) != 0) {
		/* not fatal */
	}
	rc = fab_fabric_open(c->fabric, 0, fab);
	if (rc != 0)
		return rc;
	for (;;) {
		rc = fab_chan_open(*fab, "c", role, ch);
		if (rc != FAB_EBUSY || ft_now_ns() > end)
			break;
		fab_fabric_recover(*fab);
		usleep(1000);
	}
	if (rc != 0) {
		fab_fabric_close(*fab);
		*fab = NULL;
	}
	return rc;
}

static int k_producer(void *arg)
{
	struct kcfg *c = arg;
	struct kshared *sh = c->sh;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char buf[MSZ];
	uint32_t inc = __atomic_fetch_add(&sh->next_inc, 1, __ATOMIC_SEQ_CST);
	mt_rng rng = {c->seed ^ mt_mix64(inc + 1)};
	int rc = k_open(c, FAB_SEND, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "producer open: %s (%s)", fab_strerror(rc), fab_errmsg());
	if (inc >= MAXINC)
		MT_CHILD_FAIL(10, "too many incarnations");
	fab_ctx_with_timeout(NULL, c->life_ns, &dl);
	for (uint32_t seq = 0; !__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE); seq++) {
		uint64_t id = __atomic_fetch_add(&sh->next_id, 1, __ATOMIC_SEQ_CST);
		if (id >= MAXID) {
			/* Out of ids: idle until stopped (or killed). */
			while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE))
				usleep(1000);
			break;
		}
		unsigned path = c->mixed ? (unsigned)mt_below(&rng, 4) : 0;
		if (path == 2) {
			/* A batch: these ids and the next ones, in order. */
			unsigned nb = 1 + (unsigned)mt_below(&rng, KBATCH);
			unsigned char bb[KBATCH][MSZ];
			fab_iov v[KBATCH];
			uint64_t ids[KBATCH];
			ids[0] = id;
			for (unsigned k = 1; k < nb; k++)
				ids[k] = __atomic_fetch_add(&sh->next_id, 1, __ATOMIC_SEQ_CST);
			for (unsigned k = 0; k < nb; k++) {
				if (ids[k] >= MAXID) {
					nb = k; /* out of ids */
					break;
				}
				__atomic_fetch_or(&c->ids[ids[k]], ST_ATTEMPT, __ATOMIC_SEQ_CST);
				k_fill(bb[k], ids[k], inc, seq + k);
				v[k] = (fab_iov){bb[k], k_len(ids[k])};
			}
			if (nb == 0)
				continue;
			int n = fab_send_batch(ch, v, nb, dl);
			if (n == FAB_ECLOSED)
				break;
			if (n < 0)
				MT_CHILD_FAIL(n == FAB_ETIMEDOUT ? 18 : 11, "producer batch id %llu: %s",
					      (unsigned long long)id, fab_strerror(n));
			for (int k = 0; k < n; k++)
				__atomic_fetch_or(&c->ids[ids[k]], ST_SENT, __ATOMIC_SEQ_CST);
			seq += nb - 1; /* unsent ones are only attempted, never seen */
			continue;
		}
		__atomic_fetch_or(&c->ids[id], ST_ATTEMPT, __ATOMIC_SEQ_CST);
		k_fill(buf, id, inc, seq);
		if (path == 0) {
			rc = fab_send(ch, buf, k_len(id), dl);
		} else if (path == 1) {
			void *slot = NULL;
			rc = fab_send_reserve(ch, k_len(id), &slot, dl);
			if (rc == 0) {
				memcpy(slot, buf, k_len(id));
				rc = fab_send_commit(ch, k_len(id));
			}
		} else {
			fab_case cs[2] = {{.ch = NULL},
					  {.ch = ch, .op = FAB_OP_SEND, .send_msg = buf,
					   .send_len = k_len(id)}};
			rc = fab_select(cs, 2, dl, 0);
			if (rc == 1)
				rc = (int)cs[1].result;
			else if (rc >= 0)
				MT_CHILD_FAIL(11, "producer select chose case %d", rc);
		}
		if (rc == FAB_ECLOSED)
			break;
		if (rc != 0)
			MT_CHILD_FAIL(rc == FAB_ETIMEDOUT ? 18 : 11, "producer send id %llu (path %u): %s",
				      (unsigned long long)id, path, fab_strerror(rc));
		__atomic_fetch_or(&c->ids[id], ST_SENT, __ATOMIC_SEQ_CST);
	}
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

static int k_consumer(void *arg)
{
	struct kcfg *c = arg;
	struct kshared *sh = c->sh;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char buf[MSZ];
	static int64_t last[MAXINC];
	mt_rng rng = {c->seed ^ mt_mix64((uint64_t)getpid() << 8 | (uint64_t)c->slot)};
	int rc = k_open(c, FAB_RECV, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "consumer open: %s (%s)", fab_strerror(rc), fab_errmsg());
	for (int i = 0; i < MAXINC; i++)
		last[i] = -1;
	fab_ctx_with_timeout(NULL, c->life_ns, &dl);
	for (;;) {
		unsigned path = c->mixed ? (unsigned)mt_below(&rng, 4) : 0;
		unsigned char bb[KBATCH][MSZ];
		fab_iov v[KBATCH];
		unsigned nb = path == 2 ? 1 + (unsigned)mt_below(&rng, KBATCH) : 1;
		/* How many messages a kill from here to the recording may take
		 * with it (see the header). */
		__atomic_store_n(&sh->in_recv[c->slot], (int)nb, __ATOMIC_SEQ_CST);
		ssize_t n;
		if (path == 0) {
			n = fab_recv(ch, buf, sizeof buf, dl);
		} else if (path == 1) {
			const void *m = NULL;
			size_t len = 0;
			n = fab_recv_acquire(ch, &m, &len, dl);
			if (n == 0) {
				if (len > sizeof buf)
					MT_CHILD_FAIL(13, "consumer slot %d: acquired %zu bytes", c->slot, len);
				/* Held a while, the other consumers go on and the
				 * producers pass its slot (layout 1.4): a kill
				 * lands on a held, passed slot too. */
				if (c->hold)
					usleep((useconds_t)mt_below(&rng, 300));
				memcpy(buf, m, len);
				int rr = fab_recv_release(ch);
				if (rr != 0)
					MT_CHILD_FAIL(11, "consumer slot %d release: %s", c->slot,
						      fab_strerror(rr));
				n = (ssize_t)len;
			}
		} else if (path == 2) {
			for (unsigned k = 0; k < nb; k++)
				v[k] = (fab_iov){bb[k], MSZ};
			n = fab_recv_batch(ch, v, nb, dl);
		} else {
			fab_case cs[2] = {{.ch = ch, .op = FAB_OP_RECV, .recv_buf = buf,
					   .recv_cap = sizeof buf},
					  {.ch = NULL}};
			n = fab_select(cs, 2, dl, 0);
			if (n == 0)
				n = cs[0].result;
			else if (n > 0)
				MT_CHILD_FAIL(11, "consumer select chose case %zd", n);
		}
		if (n >= 0) {
			unsigned got = path == 2 ? (unsigned)n : 1;
			for (unsigned k = 0; k < got; k++) {
				const unsigned char *mb = path == 2 ? bb[k] : buf;
				ssize_t ml = path == 2 ? (ssize_t)v[k].len : n;
				uint64_t id;
				uint32_t inc, seq;
				/* Record first (the id is bounds-checked, the rest
				 * of the message verified right after), then
				 * everything else. */
				if (ml >= 8)
					memcpy(&id, mb, 8);
				if (ml < 8 || id >= MAXID)
					MT_CHILD_FAIL(13, "consumer slot %d: corrupt message (len %zd)",
						      c->slot, ml);
				__atomic_fetch_add(&c->ids[id], ST_RCV, __ATOMIC_SEQ_CST);
				__atomic_fetch_add(&sh->received, 1, __ATOMIC_RELAXED);
				int why = k_check(mb, (size_t)ml, &id, &inc, &seq);
				if (why != 0)
					MT_CHILD_FAIL(13,
						      "consumer slot %d: corrupt message (reason %d, len %zd, "
						      "path %u)",
						      c->slot, why, ml, path);
				if ((int64_t)seq <= last[inc])
					MT_CHILD_FAIL(12, "consumer slot %d: incarnation %u seq %u after %lld",
						      c->slot, inc, seq, (long long)last[inc]);
				last[inc] = seq;
			}
			__atomic_store_n(&sh->in_recv[c->slot], 0, __ATOMIC_SEQ_CST);
			continue;
		}
		__atomic_store_n(&sh->in_recv[c->slot], 0, __ATOMIC_SEQ_CST);
		if (n == FAB_ECLOSED)
			break;
		MT_CHILD_FAIL(n == FAB_ETIMEDOUT ? 18 : 11, "consumer slot %d recv: %s", c->slot,
			      fab_strerror((int)n));
	}
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

enum { V_PROD = 1, V_CONS = 2 };

struct kopts {
	const char *tag;
	uint32_t kind, cap;
	unsigned np, nc, kills;
	int victims;        /* V_PROD | V_CONS */
	int parent_recover; /* call fab_fabric_recover every 25 kills and at the end */
	uint64_t start;     /* FAB_TEST_START_POS, 0 = default */
	int mixed;          /* random send/receive paths (header) */
	int hold;           /* mixed: hold acquired messages a while (kcfg.hold) */
};

static pid_t k_spawn(int (*fn)(void *), struct kcfg *c, int slot)
{
	c->slot = slot;
	pid_t p = mt_spawn(fn, c);
	ck_assert(p > 0);
	return p;
}

/* The child in this slot must still be running (children only exit on
 * their own at the end); fail with its status otherwise. */
static void k_alive(pid_t pid, const char *what, int slot)
{
	int st;
	pid_t r = waitpid(pid, &st, WNOHANG);
	if (r == pid) {
		mt_forget(pid);
		ck_abort_msg("%s slot %d exited on its own with %d", what, slot, mt_status(st));
	}
}

static void run_kill(const struct kopts *o)
{
	struct kcfg c;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	pid_t prod[KMAXP], cons[KMAXC];
	uint64_t maybe_held = 0, recover_calls = 0;
	mt_rng r = {mt_seed(o->tag)};
	int64_t t0 = ft_now_ns();
	int rc;

	memset(&c, 0, sizeof c);
	c.fabric = mt_fabric_name(o->tag);
	c.kind = o->kind;
	c.cap = o->cap;
	c.np = o->np;
	c.nc = o->nc;
	c.mixed = o->mixed;
	c.hold = o->hold;
	c.seed = mt_next(&r);
	c.life_ns = 60 * MT_SEC;
	c.sh = mt_shared(sizeof *c.sh);
	c.ids = mt_shared(MAXID);
	ck_assert(c.sh && c.ids);
	mt_start_pos(o->start);
	rc = mt_make_chan(c.fabric, "c", o->kind, o->cap, MSZ, 1, &fab);
	mt_start_pos(0);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));

	for (unsigned i = 0; i < o->nc; i++)
		cons[i] = k_spawn(k_consumer, &c, (int)i);
	for (unsigned i = 0; i < o->np; i++)
		prod[i] = k_spawn(k_producer, &c, (int)i);

	uint64_t checkpoint = 0;
	for (unsigned k = 0; k < o->kills; k++) {
		usleep((useconds_t)mt_below(&r, 8000));
		for (unsigned i = 0; i < o->np; i++)
			k_alive(prod[i], "producer", (int)i);
		for (unsigned i = 0; i < o->nc; i++)
			k_alive(cons[i], "consumer", (int)i);

		int kill_prod = o->victims == V_PROD   ? 1
				: o->victims == V_CONS ? 0
						       : (int)mt_below(&r, 2);
		if (kill_prod) {
			unsigned i = (unsigned)mt_below(&r, o->np);
			kill(prod[i], SIGKILL);
			waitpid(prod[i], NULL, 0);
			mt_forget(prod[i]);
			prod[i] = k_spawn(k_producer, &c, (int)i);
		} else {
			unsigned i = (unsigned)mt_below(&r, o->nc);
			kill(cons[i], SIGKILL);
			waitpid(cons[i], NULL, 0);
			mt_forget(cons[i]);
			maybe_held += (uint64_t)__atomic_exchange_n(&c.sh->in_recv[i], 0, __ATOMIC_SEQ_CST);
			cons[i] = k_spawn(k_consumer, &c, (int)i);
		}
		if (o->parent_recover && k % 25 == 24) {
			rc = fab_fabric_recover(fab);
			ck_assert_msg(rc >= 0, "fab_fabric_recover: %s", fab_strerror(rc));
			recover_calls++;
		}
		if (k % 50 == 49) {
			/* Still flowing: more messages received since the last
			 * checkpoint (a hang detector, not a rate). */
			ck_assert_msg(MT_WAIT_UNTIL(__atomic_load_n(&c.sh->received, __ATOMIC_RELAXED) >
							    checkpoint ||
							    __atomic_load_n(&c.sh->next_id, __ATOMIC_RELAXED) >= MAXID,
						    30 * MT_SEC),
				      "channel stalled after %u kills (%llu received)", k + 1,
				      (unsigned long long)checkpoint);
			checkpoint = __atomic_load_n(&c.sh->received, __ATOMIC_RELAXED);
		}
	}

	/* Stop the producers; they finish their current send and exit. */
	__atomic_store_n(&c.sh->stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < o->np; i++) {
		rc = mt_wait(prod[i], 30 * MT_SEC);
		ck_assert_msg(rc == 0, "producer %u at stop exited %d (-2 = stalled)", i, rc);
	}
	for (unsigned i = 0; i < o->nc; i++) {
		kill(cons[i], SIGKILL);
		waitpid(cons[i], NULL, 0);
		mt_forget(cons[i]);
		maybe_held += (uint64_t)__atomic_exchange_n(&c.sh->in_recv[i], 0, __ATOMIC_SEQ_CST);
	}
	if (o->parent_recover) {
		rc = fab_fabric_recover(fab);
		ck_assert_msg(rc >= 0, "fab_fabric_recover: %s", fab_strerror(rc));
		recover_calls++;
	}
	/* Close (the quorum is 1: the parent's handle), then drain with a fresh
	 * consumer under a deadline. */
	rc = fab_chan_open(fab, "c", FAB_SEND, &ch);
	ck_assert_msg(rc == 0, "parent open to close: %s", fab_strerror(rc));
	ck_assert_int_eq(fab_chan_close(ch), 0);
	c.life_ns = 30 * MT_SEC;
	pid_t drain = k_spawn(k_consumer, &c, KMAXC);
	rc = mt_wait(drain, 40 * MT_SEC);
	ck_assert_msg(rc == 0, "drain consumer exited %d (18 = stalled behind a slot)", rc);
	mt_kill_all();

	/* Account for every id. */
	uint64_t n_ids = __atomic_load_n(&c.sh->next_id, __ATOMIC_SEQ_CST);
	uint64_t sent = 0, attempted_only = 0, received = 0, missing = 0, first_missing = UINT64_MAX;
	if (n_ids > MAXID)
		n_ids = MAXID;
	for (uint64_t id = 0; id < n_ids; id++) {
		uint8_t b = c.ids[id];
		unsigned rcv = b >> 2;
		MT_CHECK(rcv <= 1, "message %llu received %u times (at-most-once broken)",
			 (unsigned long long)id, rcv);
		MT_CHECK(rcv == 0 || (b & ST_ATTEMPT), "message %llu received but never attempted",
			 (unsigned long long)id);
		received += rcv;
		if (b & ST_SENT) {
			sent++;
			if (rcv == 0) {
				missing++;
				if (first_missing == UINT64_MAX)
					first_missing = id;
			}
		} else if (b & ST_ATTEMPT)
			attempted_only++;
	}
	fab_stats st = mt_stats(ch);
	printf("%s: %u kills in %.1f s; ids %llu, sent %llu, attempted-only %llu, received %llu; "
	       "missing %llu (allowed %llu: what consumers killed inside a receive may have held); recover calls %llu, "
	       "recovered slots %llu, futex waits %llu\n",
	       o->tag, o->kills, (ft_now_ns() - t0) / 1e9, (unsigned long long)n_ids,
	       (unsigned long long)sent, (unsigned long long)attempted_only,
	       (unsigned long long)received, (unsigned long long)missing,
	       (unsigned long long)maybe_held, (unsigned long long)recover_calls,
	       (unsigned long long)st.recovered, (unsigned long long)st.futex_waits);
	ck_assert_msg(missing <= maybe_held,
		      "%llu messages whose send returned 0 were never received (first id %llu), "
		      "but consumers killed inside a receive may have held only %llu",
		      (unsigned long long)missing, (unsigned long long)first_missing,
		      (unsigned long long)maybe_held);
	ck_assert_msg(received > o->kills, "hardly any flow: %llu received",
		      (unsigned long long)received);
	ck_assert_uint_eq(st.closed, 1);
	ck_assert_uint_eq(st.len, 0);
	ck_assert_uint_eq(fab_chan_len(ch), 0);
	fab_chan_release(ch);
	munmap(c.ids, MAXID);
	munmap(c.sh, sizeof *c.sh);
	mt_destroy(c.fabric, &fab);
}

/* Hundreds of kills each (fewer under ASan, where every process is slower). */
#define KILLS MT_SCALE(1000, 500)

START_TEST(kill_mpmc)
{
	struct kopts o = {"kmpmc", FAB_MPMC, 64, 3, 3, KILLS, V_PROD | V_CONS, 1};
	run_kill(&o);
}
END_TEST

START_TEST(kill_spsc)
{
	struct kopts o = {"kspsc", FAB_SPSC, 64, 1, 1, KILLS, V_PROD | V_CONS, 1};
	run_kill(&o);
}
END_TEST

START_TEST(kill_mpmc_tiny)
{
	/* Capacity 1: almost every kill lands next to a contended slot. */
	struct kopts o = {"kmpmc1", FAB_MPMC, 1, 2, 2, KILLS, V_PROD | V_CONS, 1};
	run_kill(&o);
}
END_TEST

START_TEST(kill_mpmc_unbuffered)
{
	struct kopts o = {"kmpmc0", FAB_MPMC, 0, 2, 2, MT_SCALE(500, 300), V_PROD | V_CONS, 1};
	run_kill(&o);
}
END_TEST

START_TEST(kill_wrap)
{
	/* Recovery rebuilds a slot's position from the 45 bits in its word
	 * and the head hint: kill across 2^45 and 2^64.  The positions start
	 * a little before the wrap so it falls inside the kill phase. */
	struct kopts o = {"kwrap45", FAB_MPMC, 8, 2, 2, MT_SCALE(300, 200), V_PROD | V_CONS, 1,
			  (1ULL << 45) - 300000};
	run_kill(&o);
	struct kopts o2 = {"kwrap64", FAB_SPSC, 8, 1, 1, MT_SCALE(300, 200), V_PROD | V_CONS, 1,
			   UINT64_MAX - 300000};
	run_kill(&o2);
}
END_TEST

START_TEST(kill_mixed_paths)
{
	/* Every send and receive path of the API under random kills: mpmc,
	 * spsc and unbuffered. */
	struct kopts o = {"kmix", FAB_MPMC, 16, 2, 2, MT_SCALE(400, 200), V_PROD | V_CONS, 1, 0, 1};
	run_kill(&o);
	struct kopts o2 = {"kmixs", FAB_SPSC, 16, 1, 1, MT_SCALE(400, 200), V_PROD | V_CONS, 1, 0, 1};
	run_kill(&o2);
	struct kopts o3 = {"kmix0", FAB_MPMC, 0, 2, 2, MT_SCALE(200, 100), V_PROD | V_CONS, 1, 0, 1};
	run_kill(&o3);
}
END_TEST

START_TEST(kill_mixed_holds)
{
	/* The mixed paths with acquired messages held up to 300 us on small
	 * mpmc rings: producers pass the held slots lap after lap while
	 * holders, passers and the others are killed at random. */
	struct kopts o = {"kmixh", FAB_MPMC, 4, 2, 3, MT_SCALE(400, 200), V_PROD | V_CONS, 1, 0, 1, 1};
	run_kill(&o);
	struct kopts o2 = {"kmixh1", FAB_MPMC, 1, 2, 3, MT_SCALE(300, 150), V_PROD | V_CONS, 0, 0, 1,
			   1};
	run_kill(&o2);
}
END_TEST

START_TEST(waiter_recovery_dead_producers)
{
	/* Nobody calls fab_fabric_recover: consumers blocked behind a dead
	 * producer's half-written slot must run recovery themselves. */
	struct kopts o = {"kwrp", FAB_MPMC, 16, 2, 2, MT_SCALE(500, 300), V_PROD, 0};
	run_kill(&o);
}
END_TEST

START_TEST(waiter_recovery_dead_consumers)
{
	/* Nobody calls fab_fabric_recover: producers blocked behind a dead
	 * consumer's slot must run recovery themselves. */
	struct kopts o = {"kwrc", FAB_MPMC, 4, 2, 2, MT_SCALE(500, 300), V_CONS, 0};
	run_kill(&o);
}
END_TEST

/* ---- deterministic: one slot held by a process that dies --------------
 * A producer reserves a slot (fab_send_reserve: the slot is WRITING, owned
 * by it) and is SIGKILLed before committing; or a consumer acquires one
 * (fab_recv_acquire: READING) and is SIGKILLed before releasing.  Nobody
 * calls fab_fabric_recover: the process waiting behind the slot must find
 * the dead owner and heal the ring itself, and the messages around the hole
 * still arrive, intact and in order. */

#define HOLD_N 10

struct hold {
	const char *fabric;
	volatile int ready; /* in MAP_SHARED memory */
	uint32_t kind;
};

static int hold_writer(void *arg)
{
	struct hold *h = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	void *slot = NULL;
	int rc = mt_open(h->fabric, "c", FAB_SEND, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "writer open: %s", fab_strerror(rc));
	rc = fab_send_reserve(ch, 32, &slot, NULL);
	if (rc != 0)
		MT_CHILD_FAIL(11, "reserve: %s", fab_strerror(rc));
	memset(slot, 0xee, 16); /* half-written */
	__atomic_store_n(&h->ready, 1, __ATOMIC_SEQ_CST);
	for (;;)
		pause(); /* until SIGKILL */
}

static int hold_reader(void *arg)
{
	struct hold *h = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	const void *m = NULL;
	size_t len = 0;
	int rc = mt_open(h->fabric, "c", FAB_RECV, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "reader open: %s", fab_strerror(rc));
	rc = fab_recv_acquire(ch, &m, &len, NULL);
	if (rc != 0)
		MT_CHILD_FAIL(11, "acquire: %s", fab_strerror(rc));
	__atomic_store_n(&h->ready, 1, __ATOMIC_SEQ_CST);
	for (;;)
		pause();
}

/* Send HOLD_N self-checking messages (producer id 1) under a deadline;
 * an spsc send end left by a dead holder is reclaimed via k_open. */
static int hold_sender(void *arg)
{
	struct hold *h = arg;
	struct kcfg kc = {.fabric = h->fabric};
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char buf[64];
	int rc = k_open(&kc, FAB_SEND, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "sender open: %s", fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 20 * MT_SEC, &dl);
	for (uint32_t s = 0; s < HOLD_N; s++) {
		size_t len = mt_msg_len(1, s, 64);
		mt_fill(buf, 1, s, len);
		rc = fab_send(ch, buf, len, dl);
		if (rc != 0)
			MT_CHILD_FAIL(rc == FAB_ETIMEDOUT ? 18 : 11, "send %u: %s", s, fab_strerror(rc));
	}
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

/* Receive HOLD_N messages of producer 1 in order (skipping the one message
 * of producer 0 a test may have queued first), under a deadline. */
static int hold_receiver(void *arg)
{
	struct hold *h = arg;
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	fab_ctx *dl = NULL;
	unsigned char buf[64];
	uint32_t want = 0, p, s;
	int rc = mt_open(h->fabric, "c", FAB_RECV, &fab, &ch);
	if (rc != 0)
		MT_CHILD_FAIL(10, "receiver open: %s", fab_strerror(rc));
	fab_ctx_with_timeout(NULL, 20 * MT_SEC, &dl);
	while (want < HOLD_N) {
		ssize_t n = fab_recv(ch, buf, sizeof buf, dl);
		if (n < 0)
			MT_CHILD_FAIL(n == FAB_ETIMEDOUT ? 18 : 11, "recv (have %u): %s", want,
				      fab_strerror((int)n));
		if (mt_verify(buf, (size_t)n, 64, &p, &s) != 0)
			MT_CHILD_FAIL(13, "corrupt message: the dead writer's slot leaked out?");
		if (p == 0)
			continue;
		if (s != want)
			MT_CHILD_FAIL(12, "seq %u, want %u", s, want);
		want++;
	}
	fab_ctx_release(dl);
	mt_close(fab, ch);
	return 0;
}

static void hold_wait_ready(struct hold *h, pid_t holder)
{
	int code = MT_RUNNING;
	ck_assert_msg(MT_WAIT_UNTIL(h->ready || mt_exited(holder, &code), 30 * MT_SEC) &&
			      code == MT_RUNNING,
		      "holder never got its slot (exit %d)", code);
}

static void dead_writer(const char *tag, uint32_t kind)
{
	const char *fabric = mt_fabric_name(tag);
	fab_fabric *fab = NULL;
	struct hold *h = mt_shared(sizeof *h);
	int rc, codes[2];
	ck_assert(h);
	h->fabric = fabric;
	h->kind = kind;
	rc = mt_make_chan(fabric, "c", kind, 8, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	pid_t writer = mt_spawn(hold_writer, h);
	hold_wait_ready(h, writer);
	/* A receiver waits behind the reserved slot ... */
	pid_t kids[2];
	kids[0] = mt_spawn(hold_receiver, h);
	if (kind == FAB_MPMC) {
		/* ... and, on mpmc, more messages queue up after the hole. */
		kids[1] = mt_spawn(hold_sender, h);
		usleep(50 * 1000); /* let them queue (not an assertion) */
		kill(writer, SIGKILL);
		waitpid(writer, NULL, 0);
		mt_forget(writer);
	} else {
		/* spsc: one sender at a time; the next one takes over the end
		 * of the dead holder (recovery reclaims it). */
		kill(writer, SIGKILL);
		waitpid(writer, NULL, 0);
		mt_forget(writer);
		kids[1] = mt_spawn(hold_sender, h);
	}
	int bad = mt_wait_all(kids, 2, 40 * MT_SEC, codes);
	mt_kill_all();
	ck_assert_msg(bad < 0, "receiver exited %d, sender exited %d (18 = stalled behind the dead "
			       "writer's slot)",
		      codes[0], codes[1]);
	munmap(h, sizeof *h);
	mt_destroy(fabric, &fab);
}

START_TEST(dead_writer_slot_mpmc)
{
	dead_writer("dwm", FAB_MPMC);
}
END_TEST

START_TEST(dead_writer_end_spsc)
{
	dead_writer("dws", FAB_SPSC);
}
END_TEST

START_TEST(dead_reader_slot_mpmc)
{
	/* Capacity 2: the holder takes position 0; the sender then needs that
	 * slot again at position 2 and waits behind the dead reader. */
	const char *fabric = mt_fabric_name("drm");
	fab_fabric *fab = NULL;
	fab_chan *ch = NULL;
	struct hold *h = mt_shared(sizeof *h);
	unsigned char buf[64];
	int rc, codes[2];
	ck_assert(h);
	h->fabric = fabric;
	rc = mt_make_chan(fabric, "c", FAB_MPMC, 2, 64, 1, &fab);
	ck_assert_msg(rc == 0, "create: %s", fab_strerror(rc));
	rc = fab_chan_open(fab, "c", FAB_SEND, &ch);
	ck_assert_int_eq(rc, 0);
	size_t len = mt_msg_len(0, 0, 64);
	mt_fill(buf, 0, 0, len);
	ck_assert_int_eq(fab_send(ch, buf, len, NULL), 0);
	fab_chan_release(ch);
	pid_t reader = mt_spawn(hold_reader, h);
	hold_wait_ready(h, reader);
	kill(reader, SIGKILL);
	waitpid(reader, NULL, 0);
	mt_forget(reader);
	pid_t kids[2] = {mt_spawn(hold_sender, h), mt_spawn(hold_receiver, h)};
	int bad = mt_wait_all(kids, 2, 40 * MT_SEC, codes);
	mt_kill_all();
	ck_assert_msg(bad < 0, "sender exited %d, receiver exited %d (18 = stalled behind the dead "
			       "reader's slot)",
		      codes[0], codes[1]);
	munmap(h, sizeof *h);
	mt_destroy(fabric, &fab);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crash_kill");
	TCase *tc = mt_tcase("kill", 90);
	mt_init();
	tcase_add_test(tc, kill_mpmc);
	tcase_add_test(tc, kill_spsc);
	tcase_add_test(tc, kill_mpmc_tiny);
	tcase_add_test(tc, kill_mpmc_unbuffered);
	tcase_add_test(tc, kill_wrap);
	tcase_add_test(tc, kill_mixed_paths);
	tcase_add_test(tc, kill_mixed_holds);
	tcase_add_test(tc, waiter_recovery_dead_producers);
	tcase_add_test(tc, waiter_recovery_dead_consumers);
	tcase_add_test(tc, dead_writer_slot_mpmc);
	tcase_add_test(tc, dead_writer_end_spsc);
	tcase_add_test(tc, dead_reader_slot_mpmc);
	suite_add_tcase(s, tc);
	return mt_run_suite(s);
}
