/*
 * shop-quarantine - drains the dead letters: orders the store refused on
 * every delivery, moved by the "enriched" channel to "poison" after its
 * max_deliveries.  Logs each one and acknowledges it.
 *
 *   shop-quarantine
 *
 * If FAB_SHOP_RESULT names a file, it writes "dead_lettered=N id_sum=S"
 * there.  Exit status: 0 when "poison" is closed and drained (whoever runs
 * the pipeline closes it once every persist replica has exited) or the
 * context is cancelled, 1 a library or I/O error.
 */
#include <inttypes.h>
#include <stdio.h>

#include <fab/fab.h>

#include "shop.h"

#define PROG "shop-quarantine"

int main(void)
{
	uint64_t count = 0, id_sum = 0;
	fab_stage *st;
	int status = 0;

	if (fab_stage_open(&st) < 0) {
		fprintf(stderr, "%s: fab_stage_open: %s\n", PROG, fab_errmsg());
		return 1;
	}
	fab_chan *in = fab_stage_in(st, "poison");
	fab_ctx *ctx = fab_stage_ctx(st);
	if (!in) {
		fprintf(stderr, "%s: %s\n", PROG, fab_errmsg());
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
		if (n == (ssize_t)sizeof(o) && o.magic == SHOP_MAGIC) {
			id_sum += o.id;
			fprintf(stderr, "%s: order %" PRIu64 " dead-lettered\n", PROG, o.id);
		} else {
			fprintf(stderr, "%s: a %zd-byte record dead-lettered\n", PROG, n);
		}
		count++;
		fab_ack(in);
	}

	fprintf(stderr, "%s: %" PRIu64 " dead-lettered orders\n", PROG, count);
	char line[128];
	snprintf(line, sizeof(line), "dead_lettered=%" PRIu64 " id_sum=%" PRIu64 "\n", count,
		 id_sum);
	if (shop_write_result(PROG, line) < 0)
		status = 1;
	fab_stage_close(st);
	return status;
}
