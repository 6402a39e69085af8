/*
 * mech_ring.c - the throughput ceiling: a bare two-process ring with no
 * library, laid out the way ../shared/PLATFORM.md §9 found fastest on this
 * machine, measured in the same run as fab so that "N x pipe" targets can be
 * checked against what any ring reaches here.
 *
 *   - fixed-size slots of the message's size (rounded up to 8 bytes), no
 *     header: the length is known, a consumed mark is not needed;
 *   - the producer publishes its tail every RING_PUB (64) messages, and whenever
 *     it finds the ring full and at the end; the consumer publishes its head
 *     every RING_PUB messages and whenever it finds the ring empty;
 *   - the consumer writes one word into every line it has consumed whole
 *     (handing the line's ownership back, so the producer's next store into
 *     it does not wait for the line to be shared back).
 *
 * bare-go is the same ring under Go's visibility rules, which fab's channels
 * must keep: a message is visible to the receiver when its send returns and
 * a freed slot to the sender when its receive returns (exact capacity), so
 * both positions are published after every message.  It does not hand the
 * lines back: with per-message publication that cost a third in the near
 * placement (17.8-22.8 -> 11-17 M msg/s at 1 KiB, A/B of 28 Nov), where
 * alone a 1 KiB target can be reached here.  It is the ceiling of a
 * channel with Go's semantics; bare-ring, which batches both, of any ring.
 *
 * What neither does, and a channel must: lengths per message, a blocked
 * sender seeing a freed slot at once (Go semantics forbid a batched head),
 * sleeping and waking, close, crash recovery, more than one producer or
 * consumer.  So it is an upper bound for fab's SPSC cells, not a peer: the
 * records are stamped by the producer and checked by the consumer exactly as
 * fab's are (rec_stamp / cons_check_rec), copied in from and out to a
 * buffer as fab_send / fab_recv do.
 */
#include "bench.h"
#include "spinpp.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>

#ifndef RING_PUB
/* Messages between two index publications (a power of 2).  64 rather than
 * 16: three interleaved A/B runs, bare ring 8 B 72-104 vs 47-90 M msg/s,
 * 64 B 108-110 vs 48-74 (PLATFORM §9 found the same: 89 vs 64 M). */
#define RING_PUB 64u
#endif
#ifndef RING_HANDBACK
/* The consumer writes into the lines it consumed: A/B without it, 64 B
 * 26-29 vs 90-108 M msg/s, 1 KiB ~5 vs 8-27 M. */
#define RING_HANDBACK 1
#endif

struct ring_hdr {
	/* Producer's position, published every RING_PUB messages. */
	_Alignas(128) _Atomic uint64_t tail;
	char pad0[120];
	/* Consumer's position, published every RING_PUB messages. */
	_Alignas(128) _Atomic uint64_t head;
	char pad1[120];
	/* The slots follow, from byte 256. */
};

static struct ring_hdr *g_ring;
static size_t g_ring_len;
/* Publication mask (RING_PUB - 1, or 0 for bare-go: every message) and
 * whether the consumer hands lines back; set by the cell's setup. */
static uint64_t g_pubmask = RING_PUB - 1;
static int g_handback = RING_HANDBACK;

/* len bytes of zeroed memory shared with the children forked later, or NULL
 * with the reason in why. */
static struct ring_hdr *ring_map(size_t len, char *why, size_t whylen)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		snprintf(why, whylen, "mmap(%zu): %s", len, strerror(errno));
		return NULL;
	}
	return p;
}

static size_t slot_size(const struct run *r)
{
	return (r->msg + 7) / 8 * 8;
}

static uint64_t ring_slots(const struct run *r)
{
	uint64_t n = 1;

	while (n < r->capacity)
		n <<= 1;
	return n;
}

static int ring_setup(struct run *r, char *why, size_t whylen)
{
	if (r->shape != SHAPE_STREAM || r->nprod != 1 || r->ncons != 1 || r->msg == 0) {
		snprintf(why, whylen, "the bare ring is a 1 -> 1 stream of non-empty messages only");
		return -1;
	}
	g_ring_len = sizeof(struct ring_hdr) + ring_slots(r) * slot_size(r);
	g_ring = ring_map(g_ring_len, why, whylen);
	return g_ring ? 0 : -1;
}

static void ring_teardown(struct run *r)
{
	(void)r;
	if (g_ring)
		munmap(g_ring, g_ring_len);
	g_ring = NULL;
}

static int ring_produce(struct run *r, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	unsigned char *buf = bench_buf_alloc(r->msg);
	unsigned char *base = (unsigned char *)(g_ring + 1);
	const size_t msg = r->msg, ssz = slot_size(r);
	const uint64_t n = ring_slots(r), mask = n - 1;
	uint64_t tail = 0, head = 0, seq;
	int64_t deadline;

	if (!buf)
		return child_fail(r, slot, "out of memory");
	barrier_wait(r);
	deadline = r->sh->deadline;
	o->t_start = now_ns();
	for (seq = 0;; seq++) {
		if ((seq & 63) == 0 && now_ns() >= deadline)
			break;
		if (tail - head == n) {
			/* Full as far as we know: publish what we wrote, so the
			 * consumer can drain it, then wait for space.  Release
			 * publishes the records; the acquire of head pairs with
			 * the consumer's release store, after which it no longer
			 * reads the slots it gave back. */
			atomic_store_explicit(&g_ring->tail, tail, memory_order_release);
			while (tail - (head = atomic_load_explicit(&g_ring->head,
								   memory_order_acquire)) == n)
				cpu_relax();
		}
		rec_stamp(buf, msg, rec_tag(slot, seq));
		memcpy(base + (tail & mask) * ssz, buf, msg);
		tail++;
		if ((tail & g_pubmask) == 0)
			/* Publishes the last RING_PUB records, or this one
			 * (release). */
			atomic_store_explicit(&g_ring->tail, tail, memory_order_release);
	}
	/* Publishes the rest; the count of finished producers, stored after
	 * it, tells the consumer that no more will come. */
	atomic_store_explicit(&g_ring->tail, tail, memory_order_release);
	atomic_fetch_add_explicit(&r->sh->done, 1, memory_order_release);
	o->count = seq;
	free(buf);
	return 0;
}

static int ring_consume(struct run *r, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	unsigned char *buf = bench_buf_alloc(r->msg);
	unsigned char *base = (unsigned char *)(g_ring + 1);
	const size_t msg = r->msg, ssz = slot_size(r);
	const uint64_t mask = ring_slots(r) - 1;
	uint64_t head = 0, tail = 0;
	char why[BENCH_ERRLEN];
	struct cons_check c;
	size_t start, l;

	if (!buf)
		return child_fail(r, slot, "out of memory");
	memset(&c, 0, sizeof c);
	c.nprod = 1;
	c.strict = 1;
	barrier_wait(r);
	for (;;) {
		if (head == tail) {
			/* Empty as far as we know: give back what we read (the
			 * release pairs with the producer's acquire of head),
			 * then look for more (the acquire pairs with its release
			 * of tail).  The finished count is read before the last
			 * look at tail, so a tail stored before it is seen. */
			atomic_store_explicit(&g_ring->head, head, memory_order_release);
			while ((tail = atomic_load_explicit(&g_ring->tail, memory_order_acquire)) ==
			       head) {
				if (atomic_load_explicit(&r->sh->done, memory_order_acquire) &&
				    atomic_load_explicit(&g_ring->tail, memory_order_acquire) == head)
					goto end;
				cpu_relax();
			}
		}
		start = (head & mask) * ssz;
		memcpy(buf, base + start, msg);
		/* Hand back every line this slot completes (one store into
		 * each): the lines ending inside it, all of whose slots are now
		 * consumed.  A line still holding an unread slot is left alone. */
		for (l = (start / 64 + 1) * 64; g_handback && l <= start + ssz; l += 64)
			memset(base + l - 64, 0, 8);
		head++;
		if ((head & g_pubmask) == 0)
			atomic_store_explicit(&g_ring->head, head, memory_order_release);
		if (cons_check_rec(&c, buf, msg, why, sizeof why) < 0) {
			free(buf);
			return child_fail(r, slot, "%s", why);
		}
	}
end:
	o->t_end = now_ns();
	cons_check_out(&c, o);
	free(buf);
	return 0;
}

static int ring_child(struct run *r, enum bench_role role, unsigned slot)
{
	/* Pre-fault the ring in this process (the first touch of a page costs
	 * 5-16 us here, PLATFORM §9), as fab does when it maps a channel. */
	prefault(g_ring, g_ring_len);
	return role == ROLE_PROD ? ring_produce(r, slot) : ring_consume(r, slot);
}

static int ring_go_setup(struct run *r, char *why, size_t whylen)
{
	int rc = ring_setup(r, why, whylen);

	/* Set in the parent before the children fork (and reset by the next
	 * bare-ring setup). */
	g_pubmask = 0;
	g_handback = 0;
	return rc;
}

static int ring_std_setup(struct run *r, char *why, size_t whylen)
{
	g_pubmask = RING_PUB - 1;
	g_handback = RING_HANDBACK;
	return ring_setup(r, why, whylen);
}

const struct mech mech_ring = { "bare-ring", ring_std_setup, ring_child, ring_teardown };
const struct mech mech_ring_go = { "bare-go", ring_go_setup, ring_child, ring_teardown };

/*
 * The MPMC ceiling: a bare bounded MPMC queue shared by the 4 x 4 cell's
 * eight processes, with no library.  Dmitry Vyukov's bounded queue (the
 * design most lock-free MPMC rings follow, fab's included): a sequence word
 * per slot, producers and consumers each claim a position with one CAS on
 * their shared cursor, the slot's word hands it from one side to the other.
 * Slots are a multiple of 64 bytes (the word, then the message), as fab's.
 *
 * It waits the cheapest way a process can on two CPUs shared by eight:
 * MRING_SPIN pauses, then sched_yield() on every further look (a sleeping
 * wait costs a system call on both sides; a pure spin burns the time slice
 * of the process it waits for).  What it does not do, and fab must: sleep
 * when idle, lengths, close, contexts, crash recovery (a process killed
 * between its claim and its word stalls this queue for good), the counters.
 * So it is an upper bound for fab-mpmc, not a peer.  It runs through the
 * stream driver the kernel baselines use (drive_stream: the same records,
 * checks and end markers).
 */
#ifndef MRING_SPIN
#define MRING_SPIN 64u
#endif
/* -DMRING_FAA: claim by fetch-and-add (a ticket that cannot fail, then wait
 * for the slot) instead of the CAS loop; kept to repeat the A/B runs of
 * tools/bench/README.md. */

/* The same header as the bare ring's: tail is the next position to claim
 * for a send, head for a receive.  The slots follow: [_Atomic uint64_t seq;
 * message], 64-byte multiples. */
static struct ring_hdr *g_mring;
static size_t g_mring_len;

static size_t mring_slot(const struct run *r)
{
	return (8 + r->msg + 63) / 64 * 64;
}

static _Atomic uint64_t *mring_word(const struct run *r, uint64_t pos)
{
	uint64_t mask = ring_slots(r) - 1;

	return (_Atomic uint64_t *)((unsigned char *)(g_mring + 1) + (pos & mask) * mring_slot(r));
}

static void mring_wait(unsigned *spins)
{
	if (++*spins < MRING_SPIN)
		cpu_relax();
	else
		sched_yield();
}

static int mring_send(struct run *r, unsigned slot, int dir, const void *m, size_t n)
{
	uint64_t pos = atomic_load_explicit(&g_mring->tail, memory_order_relaxed), seq;
	_Atomic uint64_t *w;
	unsigned spins = 0;

	(void)slot, (void)dir;
#ifdef MRING_FAA
	/* Relaxed ticket; the acquire pairs with the consumer's release of
	 * the slot's previous lap, as below. */
	pos = atomic_fetch_add_explicit(&g_mring->tail, 1, memory_order_relaxed);
	w = mring_word(r, pos);
	while (atomic_load_explicit(w, memory_order_acquire) != pos)
		mring_wait(&spins);
	if (0)
#endif
	for (;;) {
		w = mring_word(r, pos);
		/* Acquire: pairs with the release of the consumer that freed
		 * the slot; its copy out is complete before we write. */
		seq = atomic_load_explicit(w, memory_order_acquire);
		if (seq == pos) {
			/* Relaxed CAS: the claim orders nothing; the slot word
			 * publishes the message. */
			if (atomic_compare_exchange_weak_explicit(&g_mring->tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed))
				break;
			continue; /* pos reloaded by the failed CAS */
		}
		if ((int64_t)(seq - pos) < 0)
			mring_wait(&spins); /* full: the slot's last lap is unread */
		pos = atomic_load_explicit(&g_mring->tail, memory_order_relaxed);
	}
	memcpy((unsigned char *)w + 8, m, n);
	/* Release: publishes the message to the consumer of pos. */
	atomic_store_explicit(w, pos + 1, memory_order_release);
	return 0;
}

static ssize_t mring_recv(struct run *r, unsigned slot, int dir, void *b, size_t n)
{
	uint64_t pos = atomic_load_explicit(&g_mring->head, memory_order_relaxed), seq;
	_Atomic uint64_t *w;
	unsigned spins = 0;

	(void)slot, (void)dir;
#ifdef MRING_FAA
	/* As the send: the acquire pairs with the producer's release. */
	pos = atomic_fetch_add_explicit(&g_mring->head, 1, memory_order_relaxed);
	w = mring_word(r, pos);
	while (atomic_load_explicit(w, memory_order_acquire) != pos + 1)
		mring_wait(&spins);
	if (0)
#endif
	for (;;) {
		w = mring_word(r, pos);
		/* Acquire: pairs with the producer's release of pos + 1. */
		seq = atomic_load_explicit(w, memory_order_acquire);
		if (seq == pos + 1) {
			if (atomic_compare_exchange_weak_explicit(&g_mring->head, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed))
				break;
			continue;
		}
		if ((int64_t)(seq - (pos + 1)) < 0)
			mring_wait(&spins); /* empty */
		pos = atomic_load_explicit(&g_mring->head, memory_order_relaxed);
	}
	memcpy(b, (unsigned char *)w + 8, n);
	/* Release: our copy is done before a producer of the next lap
	 * (position pos + nslots) may write the slot. */
	atomic_store_explicit(w, pos + ring_slots(r), memory_order_release);
	return (ssize_t)n;
}

static const struct xport xp_mring = { mring_send, mring_recv };

static int mring_setup(struct run *r, char *why, size_t whylen)
{
	uint64_t i;

	if (r->shape != SHAPE_STREAM || r->msg == 0) {
		snprintf(why, whylen, "the bare MPMC queue is a stream of non-empty messages only");
		return -1;
	}
	g_mring_len = sizeof(struct ring_hdr) + ring_slots(r) * mring_slot(r);
	if (!(g_mring = ring_map(g_mring_len, why, whylen)))
		return -1;
	/* Slot i is free for position i (before fork: no ordering needed). */
	for (i = 0; i < ring_slots(r); i++)
		atomic_store_explicit(mring_word(r, i), i, memory_order_relaxed);
	return 0;
}

static void mring_teardown(struct run *r)
{
	(void)r;
	if (g_mring)
		munmap(g_mring, g_mring_len);
	g_mring = NULL;
}

static int mring_child(struct run *r, enum bench_role role, unsigned slot)
{
	prefault(g_mring, g_mring_len);
	return drive_stream(r, &xp_mring, role, slot);
}

const struct mech mech_mring = { "bare-mpmc", mring_setup, mring_child, mring_teardown };

/* ---- the round trip of a bare ring ------------------------------------- */

/*
 * ring-pp: the spinning round trip of two bare rings, one per direction,
 * with the layout of fab's small-message SPSC channel and no library code:
 * BENCH_PP_CAP slots of 64 bytes, each holding its commit word and the
 * record, a new slot (line) for every message; the receiver publishes its
 * head after every message (a sender must see a freed slot at once), the
 * sender reads it only when its cached limit runs out.  Unlike the two-line
 * floor, whose two lines never move, every message here lands in a line the
 * writer has not written for a lap: what any ring pays on a round trip.
 * The loop is the floors' (same clock reads, record copy, cpu_relax between
 * looks), so the gap to fab-spin is the library's code.
 */
struct rpp_slot {
	_Atomic uint64_t word; /* position + 1 once the record is in */
	struct pp_rec rec;
	char pad[64 - 8 - sizeof(struct pp_rec)];
};
_Static_assert(sizeof(struct rpp_slot) == 64, "one slot per line");

struct rpp_dir {
	/* The receiver's position, stored after every message. */
	_Alignas(128) _Atomic uint64_t head;
	char pad[120];
	struct rpp_slot slot[BENCH_PP_CAP];
};
_Static_assert((BENCH_PP_CAP & (BENCH_PP_CAP - 1)) == 0, "a power of two");

static struct rpp_dir *g_rpp;

static int rpp_setup(struct run *r, char *why, size_t whylen)
{
	if (r->shape != SHAPE_PP || r->mode != MODE_SPIN) {
		snprintf(why, whylen, "the bare ring round trip is a spinning ping-pong only");
		return -1;
	}
	g_rpp = (struct rpp_dir *)ring_map(2 * sizeof *g_rpp, why, whylen);
	return g_rpp ? 0 : -1;
}

static void rpp_teardown(struct run *r)
{
	(void)r;
	if (g_rpp)
		munmap(g_rpp, 2 * sizeof *g_rpp);
	g_rpp = NULL;
}

struct rpp_end {
	struct rpp_dir *d;
	uint64_t pos, limit; /* sender: tail and cached head + capacity */
};

static void rpp_send(struct rpp_end *e, const struct pp_rec *m)
{
	uint64_t p = e->pos;
	struct rpp_slot *s = &e->d->slot[p & (BENCH_PP_CAP - 1)];

	while (p >= e->limit) {
		/* Pairs with the receiver's release of head: it no longer
		 * reads the slot we are about to reuse. */
		e->limit = atomic_load_explicit(&e->d->head, memory_order_acquire) + BENCH_PP_CAP;
		if (p >= e->limit)
			cpu_relax();
	}
	s->rec = *m;
	/* Publishes the record; pairs with the receiver's acquire. */
	atomic_store_explicit(&s->word, p + 1, memory_order_release);
	e->pos = p + 1;
}

static void rpp_recv(struct rpp_end *e, struct pp_rec *m)
{
	uint64_t h = e->pos;
	struct rpp_slot *s = &e->d->slot[h & (BENCH_PP_CAP - 1)];

	/* Pairs with the sender's release of the word. */
	while (atomic_load_explicit(&s->word, memory_order_acquire) != h + 1)
		cpu_relax();
	*m = s->rec;
	/* Our read of the record is done before the sender reuses the slot. */
	atomic_store_explicit(&e->d->head, h + 1, memory_order_release);
	e->pos = h + 1;
}

struct rpp_ctx {
	struct run *r;
	unsigned slot;
	struct rpp_end out, in;
	struct pp_rec m, got;
};

static int rpp_ping(void *ctx, uint64_t i)
{
	struct rpp_ctx *c = ctx;

	c->m.seq = i;
	rpp_send(&c->out, &c->m);
	rpp_recv(&c->in, &c->got);
	if (c->got.seq != i)
		return child_fail(c->r, c->slot, "round trip %llu: got record %llu",
				  (unsigned long long)i, (unsigned long long)c->got.seq);
	return 0;
}

static int rpp_pong(void *ctx, uint64_t i)
{
	struct rpp_ctx *c = ctx;

	rpp_recv(&c->in, &c->got);
	if (c->got.seq == BENCH_END)
		return 1;
	if (c->got.seq != i)
		return -child_fail(c->r, c->slot, "expected record %llu, got %llu",
				   (unsigned long long)i, (unsigned long long)c->got.seq);
	c->m.seq = i;
	rpp_send(&c->out, &c->m);
	return 0;
}

static int rpp_end(void *ctx)
{
	struct rpp_ctx *c = ctx;

	c->m.seq = BENCH_END;
	rpp_send(&c->out, &c->m);
	return 0;
}

static int rpp_child(struct run *r, enum bench_role role, unsigned slot)
{
	struct rpp_ctx c;

	memset(&c, 0, sizeof c);
	c.r = r;
	c.slot = slot;
	c.out.d = &g_rpp[role == ROLE_PING ? 0 : 1];
	c.out.limit = BENCH_PP_CAP;
	c.in.d = &g_rpp[role == ROLE_PING ? 1 : 0];
	return spin_pp(r, role, slot, &c, rpp_ping, rpp_pong, rpp_end);
}

const struct mech mech_ringpp = { "ring-pp", rpp_setup, rpp_child, rpp_teardown };
