/*
 * shop-persist - the seed's persistStage: a bounded pool (its replicas are
 * the pool, one store connection each) writing orders to a flaky store.
 * Reads "rows", an at-least-once channel: a message stays leased to this
 * replica until it is stored and forwarded (fab_ack), so a replica killed
 * mid-write loses nothing.
 *
 *   shop-persist [--seed S] [--fail-permille P] [--retries K]
 *                [--backoff-us B] [--backoff-max-us M] [--store-us U]
 *                [--commit-us C]
 *
 * --fail-permille P  the store fails P/1000 of the attempts (default 50)
 * --seed S           which attempts fail is a hash of (S, order id, delivery,
 *                    attempt): deterministic, whichever replica tries
 * --retries K        attempts per delivery (default 3), with exponential
 *                    backoff from B (default 100 us) doubling up to M
 *                    (default 10 ms), with jitter (half fixed, half random)
 * --store-us U       the simulated write's duration (default 50 us)
 * --commit-us C      time between forwarding a stored order on "done" and
 *                    acking it on "rows" (default 0): a crash test
 *                    (tests/examples/shop_torture.sh) widens this window,
 *                    where a kill makes a duplicate downstream
 *
 * When all K attempts fail it reports the failure (fab_stage_error) and
 * gives the message back (fab_nack): it is redelivered, and after the
 * channel's max_deliveries it goes to the channel's dead letter.  A stored
 * order is marked SHOP_F_PERSISTED and sent on "done", then acked.  Exit
 * status: 0 when "rows" is closed and drained or the context is cancelled
 * (it closes "done"), 1 a library error, 2 usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fab/fab.h>

#include "shop.h"

#define PROG "shop-persist"

static uint64_t seed, fail_permille = 50, store_us = 50, commit_us;

/* The store: one write; 0 or -1. */
static int store_write(const struct shop_order *o, uint32_t delivery, uint32_t attempt)
{
	struct timespec d = { (time_t)(store_us / 1000000), (long)(store_us % 1000000) * 1000 };

	nanosleep(&d, NULL);
	return shop_store_fails(seed, o->id, delivery, attempt, (uint32_t)fail_permille) ? -1 : 0;
}

/* Sleeps `ns` unless the context ends first (Go's select on time.After and
 * ctx.Done()): 0 slept, or the context's code. */
static int sleep_ctx(fab_ctx *ctx, int64_t ns)
{
	fab_ctx *t;
	int rc = fab_ctx_with_timeout(ctx, ns, &t);

	if (rc < 0)
		return rc;
	rc = fab_ctx_wait(t);
	fab_ctx_release(t);
	if (rc == FAB_ETIMEDOUT && fab_ctx_err(ctx) == 0)
		return 0; /* our own deadline: slept */
	return rc < 0 ? rc : 0;
}

int main(int argc, char **argv)
{
	uint64_t retries = 3, backoff_us = 100, backoff_max_us = 10000;
	uint64_t stored = 0, given_back = 0, retried = 0;
	fab_stage *st;
	int status = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--seed") && v)
			seed = shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--fail-permille") && v)
			fail_permille = shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--retries") && v)
			retries = shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--backoff-us") && v)
			backoff_us = shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--backoff-max-us") && v)
			backoff_max_us = shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--store-us") && v)
			store_us = shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--commit-us") && v)
			commit_us = shop_arg_u64(PROG, a, v);
		else {
			fprintf(stderr,
				"usage: %s [--seed S] [--fail-permille P] [--retries K] "
				"[--backoff-us B] [--backoff-max-us M] [--store-us U] "
				"[--commit-us C]\n",
				PROG);
			return 2;
		}
		i++;
	}
	if (retries < 1 || retries > 64 || fail_permille > 1000) {
		fprintf(stderr, "%s: --retries is 1..64, --fail-permille 0..1000\n", PROG);
		return 2;
	}
	const char *replica_env = getenv("FAB_REPLICA");
	uint32_t replica = replica_env ? (uint32_t)strtoul(replica_env, NULL, 10) : 0;
	unsigned rnd = (unsigned)getpid() ^ (unsigned)shop_now_ns(); /* jitter only */

	if (fab_stage_open(&st) < 0) {
		fprintf(stderr, "%s: fab_stage_open: %s\n", PROG, fab_errmsg());
		return 1;
	}
	fab_chan *in = fab_stage_in(st, "rows");
	fab_chan *out = fab_stage_out(st, "done");
	fab_ctx *ctx = fab_stage_ctx(st);
	if (!in || !out) {
		fprintf(stderr, "%s: %s\n", PROG, fab_errmsg());
		fab_stage_close(st);
		return 1;
	}

	for (;;) {
		struct shop_order o = {0};
		fab_msg_info info = { .size = sizeof(info) };
		ssize_t n = fab_recv(in, &o, sizeof(o), ctx); /* leased to us */

		if (n == FAB_ECLOSED || n == FAB_ECANCELED || n == FAB_ETIMEDOUT)
			break;
		if (n < 0) {
			fprintf(stderr, "%s: recv: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		if (fab_recv_info(in, &info) < 0) {
			fprintf(stderr, "%s: fab_recv_info: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		const char *why = shop_check(&o, (size_t)n, SHOP_F_VALIDATED | SHOP_F_ENRICHED);
		if (why) {
			/* Retrying cannot fix it: straight to the dead letter, eventually. */
			fab_stage_error(st, SHOP_ERR_BAD, "order %" PRIu64 ": %s", o.id, why);
			fab_nack(in);
			continue;
		}

		/* Write, retrying with exponential backoff and jitter. */
		uint32_t attempt;
		int rc = -1;
		for (attempt = 1; attempt <= retries; attempt++) {
			if ((rc = store_write(&o, info.deliveries, attempt)) == 0)
				break;
			if (attempt == retries)
				break;
			retried++;
			uint64_t d = backoff_us << (attempt - 1 < 20 ? attempt - 1 : 20);
			if (d > backoff_max_us)
				d = backoff_max_us;
			d = d / 2 + (d > 1 ? (uint64_t)rand_r(&rnd) % (d / 2 + 1) : 0);
			if ((rc = sleep_ctx(ctx, (int64_t)d * 1000)) < 0)
				break; /* cancelled while backing off */
		}
		if (rc < 0 && fab_ctx_err(ctx)) {
			fab_nack(in); /* stopping: give it back for whoever comes next */
			break;
		}
		if (rc < 0) {
			fab_stage_error(st, SHOP_ERR_STORE,
					"order %" PRIu64 ": store failed %" PRIu64
					" times (delivery %u); giving it back",
					o.id, retries, info.deliveries);
			fab_nack(in); /* redelivered, or dead-lettered after max_deliveries */
			given_back++;
			continue;
		}

		o.flags |= SHOP_F_PERSISTED;
		if (info.redelivered)
			o.flags |= SHOP_F_REDELIVERED; /* a copy may have gone ahead (shop.h) */
		o.persist_replica = (uint16_t)replica;
		o.attempts = (uint16_t)attempt;
		o.deliveries = info.deliveries;
		rc = fab_send(out, &o, sizeof(o), ctx);
		if (rc < 0) {
			/* Stored but not forwarded: give it back; the store must be
			 * idempotent (at-least-once means it may be written twice). */
			fab_nack(in);
			if (rc == FAB_ECANCELED || rc == FAB_ETIMEDOUT)
				break;
			fprintf(stderr, "%s: send: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		if (commit_us) {
			struct timespec d = { (time_t)(commit_us / 1000000),
					      (long)(commit_us % 1000000) * 1000 };
			nanosleep(&d, NULL);
		}
		fab_ack(in); /* done: the lease ends, the slot is free */
		stored++;
	}

	fprintf(stderr, "%s.%u: stored %" PRIu64 ", retried %" PRIu64 ", gave back %" PRIu64 "\n",
		PROG, replica, stored, retried, given_back);
	fab_stage_close(st);
	return status;
}
