/*
 * shop.h - the message format and the shared helpers of the "shop" example
 * pipeline (examples/pipeline.yaml), the seed's microservice as one
 * executable per stage:
 *
 *   shop-source -> raw -> shop-validate -> validated -> shop-enrich xN -> enriched
 *     -> shop-persist xP -> results -> shop-ack            (limiter "api" for enrich)
 *   enriched --dead letter--> poison -> shop-quarantine
 *
 * Every channel of the pipeline carries one fixed-size record, struct
 * shop_order (64 bytes, host byte order: every stage runs on one machine).
 * Each stage fills in its part and sets its bit in `flags`:
 *
 *   offset size field           written by
 *   0      4    magic           source: SHOP_MAGIC ("SHOP")
 *   4      2    version         source: SHOP_VERSION
 *   6      2    flags           every stage: SHOP_F_* (what was done to it)
 *   8      8    id              source: 1, 2, 3, ... (unique, increasing)
 *   16     8    created_ns      source: CLOCK_MONOTONIC when it was made
 *   24     4    customer        source: 1.. (0 is malformed)
 *   28     4    sku             source: 0..SHOP_SKUS-1
 *   32     4    qty             source: 1..SHOP_QTY_MAX (0 is malformed)
 *   36     4    enrich_replica  enrich: FAB_REPLICA of the enricher
 *   40     8    price_cents     enrich: unit price looked up for sku
 *   48     8    total_cents     enrich: qty * price_cents
 *   56     2    persist_replica persist: FAB_REPLICA of the writer
 *   58     2    attempts        persist: store attempts in the delivery that succeeded
 *   60     4    deliveries      persist: fab_recv_info().deliveries of that delivery
 *
 * The simulated world is deterministic, so a test can predict every count:
 *  - shop_malformed(id, bad_every): the source makes every bad_every-th
 *    order malformed (in one of three ways); validate rejects it.
 *  - shop_store_fails(seed, id, delivery, attempt, permille): the flaky store
 *    fails a given attempt iff a hash of its inputs falls under permille/1000,
 *    whichever persist replica makes it.  An order whose `retries` attempts
 *    all fail is given back (fab_nack) and redelivered; after max_deliveries
 *    deliveries the channel moves it to its dead letter.
 *
 * Duplicates.  On an at-least-once channel a stage killed after it sent an
 * order downstream but before it acked it upstream has that order
 * redelivered to its replacement, which sends it downstream again: the
 * second copy is NEW on the downstream channel (its fab_recv_info there
 * says deliveries 1), so the sink alone could not tell it from the first.
 * Therefore every stage that receives an order with fab_recv_info's
 * `redelivered` set marks it SHOP_F_REDELIVERED, and the mark travels with
 * the order to the sink.  The copies of one order then form a tree whose
 * root is the chain of first deliveries; every other copy passed through a
 * redelivery somewhere and carries the mark (or arrives redelivered at the
 * sink).  So the sink may see many copies of an order, but at most ONE
 * unmarked one: a second unmarked copy is an unflagged duplicate, a bug.
 * (The first copy to arrive need not be the unmarked one: copies race
 * through pools of replicas.)
 */
#ifndef FAB_EXAMPLES_SHOP_H
#define FAB_EXAMPLES_SHOP_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fab/fab.h>

#define SHOP_MAGIC 0x504f4853u /* "SHOP" little-endian */
#define SHOP_VERSION 1
#define SHOP_SKUS 1000u
#define SHOP_QTY_MAX 100u

#define SHOP_F_VALIDATED 0x1u
#define SHOP_F_ENRICHED 0x2u
#define SHOP_F_PERSISTED 0x4u
#define SHOP_F_REDELIVERED 0x8u /* some hop received it redelivered (see above) */

/* Application error codes given to fab_stage_error (positive: not FAB_E*). */
#define SHOP_ERR_MALFORMED 1001 /* validate: rejected order */
#define SHOP_ERR_ORDER 1002     /* validate: ids not increasing */
#define SHOP_ERR_STORE 1003     /* persist: every attempt of a delivery failed */
#define SHOP_ERR_BAD 1004       /* a record failed a sanity check downstream */

struct shop_order {
	uint32_t magic;
	uint16_t version;
	uint16_t flags;
	uint64_t id;
	int64_t created_ns;
	uint32_t customer;
	uint32_t sku;
	uint32_t qty;
	uint32_t enrich_replica;
	int64_t price_cents;
	int64_t total_cents;
	uint16_t persist_replica;
	uint16_t attempts;
	uint32_t deliveries;
};

_Static_assert(sizeof(struct shop_order) == 64, "shop_order is 64 bytes");

static inline int64_t shop_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* splitmix64: a good 64-bit mix, the same on every machine. */
static inline uint64_t shop_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* 0: well-formed; 1..3: the way order `id` is malformed. */
static inline int shop_malformed(uint64_t id, uint64_t bad_every)
{
	if (bad_every == 0 || id % bad_every != 0)
		return 0;
	return 1 + (int)((id / bad_every) % 3);
}

/* Does store attempt `attempt` (1..) of delivery `delivery` (1..) of order
 * `id` fail? */
static inline int shop_store_fails(uint64_t seed, uint64_t id, uint32_t delivery,
				   uint32_t attempt, uint32_t permille)
{
	uint64_t h = shop_mix(seed ^ shop_mix(id ^ shop_mix(((uint64_t)delivery << 32) | attempt)));

	return h % 1000 < permille;
}

static inline int64_t shop_price_cents(uint32_t sku)
{
	return 100 + (int64_t)(shop_mix(sku) % 99900);
}

/* Why a record of `len` bytes is not a well-formed order, or NULL if it is.
 * `need` is the SHOP_F_* bits the record must carry (validate: 0). */
static inline const char *shop_check(const struct shop_order *o, size_t len, unsigned need)
{
	if (len != sizeof(*o))
		return "wrong size";
	if (o->magic != SHOP_MAGIC || o->version != SHOP_VERSION)
		return "bad magic or version";
	if (o->id == 0)
		return "no id";
	if (o->customer == 0)
		return "no customer";
	if (o->sku >= SHOP_SKUS)
		return "unknown sku";
	if (o->qty == 0 || o->qty > SHOP_QTY_MAX)
		return "quantity out of range";
	if ((o->flags & need) != need)
		return "missing a stage's mark";
	if ((need & SHOP_F_ENRICHED) &&
	    (o->price_cents != shop_price_cents(o->sku) ||
	     o->total_cents != o->price_cents * (int64_t)o->qty))
		return "wrong price or total";
	return NULL;
}

/* Writes `line` to the file named by FAB_SHOP_RESULT, if set (a test reads
 * it); the file appears complete or not at all.  Returns 0 or -1. */
static inline int shop_write_result(const char *prog, const char *line)
{
	const char *path = getenv("FAB_SHOP_RESULT");
	char tmp[4096];
	FILE *f;

	if (!path || !*path)
		return 0;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -1;
	f = fopen(tmp, "w");
	if (f && fputs(line, f) < 0) {
		fclose(f);
		f = NULL;
	}
	if (!f || fclose(f) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "%s: FAB_SHOP_RESULT=%s: %s\n", prog, path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Marks `o` SHOP_F_REDELIVERED if the last message received on `in` was
 * redelivered.  On an at-most-once channel fab_recv_info has nothing to say
 * (FAB_EINVAL) and nothing is marked. */
static inline void shop_mark_redelivered(fab_chan *in, struct shop_order *o)
{
	fab_msg_info info = { .size = sizeof(info) };

	if (fab_recv_info(in, &info) == 0 && info.redelivered)
		o->flags |= SHOP_F_REDELIVERED;
}

/* Parses a non-negative decimal integer option value; exits 2 when bad. */
static inline uint64_t shop_arg_u64(const char *prog, const char *opt, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s ? s : "", &end, 10);
	if (!s || !*s || *end || errno || s[0] == '-') {
		fprintf(stderr, "%s: %s: expected a non-negative integer, got '%s'\n", prog, opt,
			s ? s : "");
		exit(2);
	}
	return v;
}

static inline double shop_arg_double(const char *prog, const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s ? s : "", &end);
	if (!s || !*s || *end || errno || !(v > 0)) {
		fprintf(stderr, "%s: %s: expected a positive number, got '%s'\n", prog, opt,
			s ? s : "");
		exit(2);
	}
	return v;
}

#endif /* FAB_EXAMPLES_SHOP_H */
