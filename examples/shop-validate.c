/*
 * shop-validate - the seed's validateStage: one replica, so the order of
 * the orders is kept.  Receives on "events", forwards well-formed orders
 * (marked SHOP_F_VALIDATED) on "valid", and reports each malformed one with
 * fab_stage_error (the seed's errCh) instead of forwarding it.
 *
 *   shop-validate
 *
 * Exit status: 0 when "events" is closed and drained or the context is
 * cancelled (it closes "valid" either way), 1 a library error.
 */
#include <inttypes.h>
#include <stdio.h>

#include <fab/fab.h>

#include "shop.h"

#define PROG "shop-validate"

int main(void)
{
	uint64_t passed = 0, rejected = 0, last_id = 0;
	fab_stage *st;
	int status = 0;

	if (fab_stage_open(&st) < 0) {
		fprintf(stderr, "%s: fab_stage_open: %s\n", PROG, fab_errmsg());
		return 1;
	}
	fab_chan *in = fab_stage_in(st, "events");
	fab_chan *out = fab_stage_out(st, "valid");
	fab_ctx *ctx = fab_stage_ctx(st);
	if (!in || !out) {
		fprintf(stderr, "%s: %s\n", PROG, fab_errmsg());
		fab_stage_close(st);
		return 1;
	}

	for (;;) {
		struct shop_order o = {0};
		ssize_t n = fab_recv(in, &o, sizeof(o), ctx);

		if (n == FAB_ECLOSED || n == FAB_ECANCELED || n == FAB_ETIMEDOUT)
			break; /* drained, or told to stop */
		if (n == FAB_EMSGSIZE) {
			/* Larger than any order: take it off the channel and say so. */
			fab_recv(in, NULL, 0, ctx);
			fab_stage_error(st, SHOP_ERR_MALFORMED, "a record larger than an order");
			rejected++;
			continue;
		}
		if (n < 0) {
			fprintf(stderr, "%s: recv: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		const char *why = shop_check(&o, (size_t)n, 0);
		if (why) {
			fab_stage_error(st, SHOP_ERR_MALFORMED, "order %" PRIu64 ": %s",
					n >= 16 ? o.id : 0, why);
			rejected++;
			continue;
		}
		if (o.id <= last_id)
			fab_stage_error(st, SHOP_ERR_ORDER, "order %" PRIu64 " after %" PRIu64, o.id,
					last_id);
		last_id = o.id;
		shop_mark_redelivered(in, &o); /* when "events" is at-least-once (shop.h) */
		o.flags |= SHOP_F_VALIDATED;
		int rc = fab_send(out, &o, sizeof(o), ctx);
		if (rc == FAB_ECANCELED || rc == FAB_ETIMEDOUT)
			break;
		if (rc < 0) {
			fprintf(stderr, "%s: send: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		passed++;
	}

	fprintf(stderr, "%s: passed %" PRIu64 ", rejected %" PRIu64 "\n", PROG, passed, rejected);
	fab_stage_close(st);
	return status;
}
