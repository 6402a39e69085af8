/*
 * shop-source - the pipeline's source (the seed's Kafka consumer): emits
 * orders stamped with increasing ids on its "events" port.
 *
 *   shop-source [--count N] [--bad-every B]
 *
 * --count N      orders to emit (default 1000); 0 = endless, until cancelled
 * --bad-every B  every B-th order is malformed, for validate to reject
 *                (default 50; 0 = none)
 *
 * It stops when its context (FAB_CTX) is cancelled -- that is how a drain
 * starts -- or when it has sent N orders, then closes "events" with
 * fab_stage_close so the close propagates down the pipeline.  Exit status:
 * 0 finished or cancelled, 1 a library error, 2 usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fab/fab.h>

#include "shop.h"

#define PROG "shop-source"

int main(int argc, char **argv)
{
	uint64_t count = 1000, bad_every = 50, sent = 0, malformed = 0;
	fab_stage *st;
	int rc, status = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = shop_arg_u64(PROG, "--count", argv[++i]);
		else if (!strcmp(argv[i], "--bad-every") && i + 1 < argc)
			bad_every = shop_arg_u64(PROG, "--bad-every", argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--count N] [--bad-every B]\n", PROG);
			return 2;
		}
	}

	rc = fab_stage_open(&st);
	if (rc < 0) {
		fprintf(stderr, "%s: fab_stage_open: %s\n", PROG, fab_errmsg());
		return 1;
	}
	fab_chan *out = fab_stage_out(st, "events");
	fab_ctx *ctx = fab_stage_ctx(st);
	if (!out) {
		fprintf(stderr, "%s: %s\n", PROG, fab_errmsg());
		fab_stage_close(st);
		return 1;
	}

	for (uint64_t id = 1; count == 0 || id <= count; id++) {
		/* Go's select { case <-ctx.Done(): return; case out <- o: }: a send
		 * that has room succeeds even under an ended context, so look at
		 * the context first. */
		if (fab_ctx_err(ctx))
			break;
		struct shop_order o = {
			.magic = SHOP_MAGIC,
			.version = SHOP_VERSION,
			.id = id,
			.created_ns = shop_now_ns(),
			.customer = 1 + (uint32_t)(shop_mix(id) % 50000),
			.sku = (uint32_t)(shop_mix(id + 1) % SHOP_SKUS),
			.qty = 1 + (uint32_t)(shop_mix(id + 2) % SHOP_QTY_MAX),
		};
		switch (shop_malformed(id, bad_every)) {
		case 1: o.qty = 0; break;
		case 2: o.sku = SHOP_SKUS + 7; break;
		case 3: o.customer = 0; break;
		}
		rc = fab_send(out, &o, sizeof(o), ctx);
		if (rc == FAB_ECANCELED || rc == FAB_ETIMEDOUT)
			break; /* cancelled while waiting for room: stop */
		if (rc < 0) {
			fab_stage_error(st, rc, "send order %" PRIu64 ": %s", id, fab_errmsg());
			fprintf(stderr, "%s: send: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		sent++;
		malformed += shop_malformed(id, bad_every) != 0;
	}

	fprintf(stderr, "%s: sent %" PRIu64 " orders (%" PRIu64 " malformed)%s\n", PROG, sent,
		malformed, fab_ctx_err(ctx) ? ", cancelled" : "");
	char line[128];
	snprintf(line, sizeof(line), "sent=%" PRIu64 " malformed=%" PRIu64 "\n", sent, malformed);
	if (shop_write_result(PROG, line) < 0)
		status = 1;
	fab_stage_close(st); /* closes "events": validate drains it and sees FAB_ECLOSED */
	return status;
}
