/*
 * shop-enrich - the seed's enrichStage: a fan-out pool (run it with N
 * replicas, all reading "events") that calls a rate-limited external API.
 * Every replica takes a token from one limiter shared by the whole pool
 * before each call, so the API sees at most rate/s + burst whatever N is.
 *
 *   shop-enrich [--limiter NAME] [--latency-us U]
 *
 * --limiter NAME   the fabric's limiter to open (default: $SHOP_LIMITER, else
 *                  "api"); fabd's topology lists it under the stage's limiters
 * --latency-us U   the simulated API call's duration (default 300 us)
 *
 * The API call is simulated: a lookup of the sku's price and a sleep.  Exit
 * status: 0 when "events" is closed and drained or the context is cancelled
 * (it closes "enriched": the channel closes when every replica did), 1 a
 * library error, 2 usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fab/fab.h>

#include "shop.h"

#define PROG "shop-enrich"

int main(int argc, char **argv)
{
	const char *lim_name = getenv("SHOP_LIMITER");
	uint64_t latency_us = 300, done = 0;
	fab_fabric *fab = NULL;
	fab_limiter *lim = NULL;
	fab_stage *st;
	int rc, status = 0;

	if (!lim_name || !*lim_name)
		lim_name = "api";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--limiter") && i + 1 < argc)
			lim_name = argv[++i];
		else if (!strcmp(argv[i], "--latency-us") && i + 1 < argc)
			latency_us = shop_arg_u64(PROG, "--latency-us", argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--limiter NAME] [--latency-us U]\n", PROG);
			return 2;
		}
	}
	const char *replica_env = getenv("FAB_REPLICA");
	uint32_t replica = replica_env ? (uint32_t)strtoul(replica_env, NULL, 10) : 0;

	if (fab_stage_open(&st) < 0) {
		fprintf(stderr, "%s: fab_stage_open: %s\n", PROG, fab_errmsg());
		return 1;
	}
	fab_chan *in = fab_stage_in(st, "events");
	fab_chan *out = fab_stage_out(st, "enriched");
	fab_ctx *ctx = fab_stage_ctx(st);
	if (!in || !out) {
		fprintf(stderr, "%s: %s\n", PROG, fab_errmsg());
		fab_stage_close(st);
		return 1;
	}
	/* The stage API has no limiter ports (docs/stage.md): open it by name. */
	if ((rc = fab_fabric_open(getenv("FAB_FABRIC"), 0, &fab)) < 0 ||
	    (rc = fab_limiter_open(fab, lim_name, &lim)) < 0) {
		fprintf(stderr, "%s: limiter %s: %s\n", PROG, lim_name, fab_errmsg());
		fab_stage_error(st, rc, "limiter %s: %s", lim_name, fab_errmsg());
		fab_fabric_close(fab);
		fab_stage_close(st);
		return 1;
	}

	for (;;) {
		struct shop_order o = {0};
		ssize_t n = fab_recv(in, &o, sizeof(o), ctx);

		if (n == FAB_ECLOSED || n == FAB_ECANCELED || n == FAB_ETIMEDOUT)
			break;
		if (n < 0) {
			fprintf(stderr, "%s: recv: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		const char *why = shop_check(&o, (size_t)n, SHOP_F_VALIDATED);
		if (why) {
			fab_stage_error(st, SHOP_ERR_BAD, "order %" PRIu64 ": %s", o.id, why);
			continue;
		}
		/* The seed's rateLimiter: wait for a token, or for the context. */
		rc = fab_limiter_wait(lim, 1, ctx);
		if (rc == FAB_ECANCELED || rc == FAB_ETIMEDOUT)
			break; /* the order is dropped: "validated" is at-most-once */
		if (rc < 0) {
			fprintf(stderr, "%s: limiter: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		/* The external call. */
		struct timespec d = { (time_t)(latency_us / 1000000),
				      (long)(latency_us % 1000000) * 1000 };
		nanosleep(&d, NULL);
		o.price_cents = shop_price_cents(o.sku);
		o.total_cents = o.price_cents * (int64_t)o.qty;
		o.enrich_replica = replica;
		shop_mark_redelivered(in, &o); /* when "events" is at-least-once (shop.h) */
		o.flags |= SHOP_F_ENRICHED;

		rc = fab_send(out, &o, sizeof(o), ctx);
		if (rc == FAB_ECANCELED || rc == FAB_ETIMEDOUT)
			break;
		if (rc < 0) {
			fprintf(stderr, "%s: send: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		done++;
	}

	fprintf(stderr, "%s.%u: enriched %" PRIu64 "\n", PROG, replica, done);
	fab_limiter_release(lim);
	fab_fabric_close(fab);
	fab_stage_close(st);
	return status;
}
