/*
 * shop-ack - the pipeline's sink (the seed's ack/NACK step): receives
 * persisted orders on "done" (an at-least-once channel), checks them,
 * counts each order id once, acknowledges it (fab_ack), and at the end
 * prints a summary with the pipeline latency:
 *
 *   end-to-end  now - the order's created_ns (stamped by shop-source)
 *   last hop    now - fab_recv_info().enqueue_ns (persist's send)
 *   origin      now - fab_recv_info().origin_ns (DESIGN §5: the start of the
 *               message's chain; equals the last hop while libfab does not
 *               propagate origins across stages)
 *
 *   shop-ack
 *
 * If FAB_SHOP_RESULT names a file, it writes one line there:
 *   received=R unique=U duplicates=D unflagged_duplicates=X bad=B id_sum=S
 * (duplicates are allowed on an at-least-once channel when the message is
 * flagged redelivered; unflagged ones are a bug).  Exit status: 0 when
 * "done" is closed and drained or the context is cancelled, 1 a library or
 * I/O error.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fab/fab.h>

#include "shop.h"

#define PROG "shop-ack"

/* A log-linear latency histogram: 4 buckets per power of two of ns. */
#define HIST_N (64 * 4)
struct hist {
	uint64_t n, max;
	double sum;
	uint64_t b[HIST_N];
};

static void hist_add(struct hist *h, int64_t ns)
{
	uint64_t v = ns > 0 ? (uint64_t)ns : 0;
	unsigned k = 0;

	if (v >= 4) {
		unsigned lg = 63 - (unsigned)__builtin_clzll(v);
		k = lg * 4 + (unsigned)((v >> (lg - 2)) & 3);
	}
	h->b[k < HIST_N ? k : HIST_N - 1]++;
	h->n++;
	h->sum += (double)v;
	if (v > h->max)
		h->max = v;
}

/* The upper bound of the bucket holding quantile q, in microseconds. */
static double hist_q_us(const struct hist *h, double q)
{
	uint64_t want = (uint64_t)ceil(q * (double)h->n), seen = 0;

	for (unsigned k = 0; k < HIST_N; k++) {
		seen += h->b[k];
		if (seen >= want && h->b[k]) {
			if (k < 8)
				return (k + 1) / 1000.0;
			unsigned lg = k / 4, sub = k % 4;
			double up = ldexp(1.0 + (sub + 1) / 4.0, (int)lg);
			return (up < (double)h->max ? up : (double)h->max) / 1000.0;
		}
	}
	return (double)h->max / 1000.0;
}

static void hist_print(const char *what, const struct hist *h)
{
	if (!h->n)
		return;
	fprintf(stderr, "%s: %-11s mean %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us\n", PROG,
		what, h->sum / (double)h->n / 1000.0, hist_q_us(h, 0.50), hist_q_us(h, 0.99),
		(double)h->max / 1000.0);
}

/* Which ids were seen: a bitmap that grows with the largest id. */
static uint8_t *seen_map;
static size_t seen_bytes;

static int seen_test_and_set(uint64_t id)
{
	size_t byte = (size_t)(id / 8);

	if (byte >= seen_bytes) {
		size_t nb = seen_bytes ? seen_bytes : 4096;
		while (nb <= byte)
			nb *= 2;
		uint8_t *m = realloc(seen_map, nb);
		if (!m) {
			fprintf(stderr, "%s: out of memory\n", PROG);
			exit(1);
		}
		memset(m + seen_bytes, 0, nb - seen_bytes);
		seen_map = m;
		seen_bytes = nb;
	}
	int was = (seen_map[byte] >> (id % 8)) & 1;
	seen_map[byte] |= (uint8_t)(1u << (id % 8));
	return was;
}

int main(void)
{
	static struct hist e2e, hop, origin;
	uint64_t received = 0, unique = 0, dups = 0, unflagged = 0, bad = 0, redelivered = 0;
	uint64_t id_sum = 0;
	int64_t first_ns = 0, last_ns = 0;
	fab_stage *st;
	int status = 0;

	if (fab_stage_open(&st) < 0) {
		fprintf(stderr, "%s: fab_stage_open: %s\n", PROG, fab_errmsg());
		return 1;
	}
	fab_chan *in = fab_stage_in(st, "done");
	fab_ctx *ctx = fab_stage_ctx(st);
	if (!in) {
		fprintf(stderr, "%s: %s\n", PROG, fab_errmsg());
		fab_stage_close(st);
		return 1;
	}

	for (;;) {
		struct shop_order o = {0};
		fab_msg_info info = { .size = sizeof(info) };
		ssize_t n = fab_recv(in, &o, sizeof(o), ctx);

		if (n == FAB_ECLOSED || n == FAB_ECANCELED || n == FAB_ETIMEDOUT)
			break;
		if (n < 0 || fab_recv_info(in, &info) < 0) {
			fprintf(stderr, "%s: recv: %s\n", PROG, fab_errmsg());
			status = 1;
			break;
		}
		int64_t now = shop_now_ns();
		if (!first_ns)
			first_ns = now;
		last_ns = now;
		received++;
		redelivered += info.redelivered != 0;

		const char *why = shop_check(&o, (size_t)n,
					     SHOP_F_VALIDATED | SHOP_F_ENRICHED | SHOP_F_PERSISTED);
		if (why) {
			fab_stage_error(st, SHOP_ERR_BAD, "order %" PRIu64 ": %s", o.id, why);
			bad++;
		} else if (seen_test_and_set(o.id)) {
			dups++;
			if (!info.redelivered && o.deliveries <= 1)
				unflagged++;
		} else {
			unique++;
			id_sum += o.id;
			hist_add(&e2e, now - o.created_ns);
			hist_add(&hop, now - info.enqueue_ns);
			hist_add(&origin, now - info.origin_ns);
		}
		fab_ack(in); /* the seed's ack: the order is done */
	}

	double secs = (double)(last_ns - first_ns) / 1e9;
	char rate[64] = "";
	if (secs > 0)
		snprintf(rate, sizeof(rate), ", %.0f orders/s", (double)received / secs);
	fprintf(stderr,
		"%s: %" PRIu64 " orders acknowledged (%" PRIu64 " received, %" PRIu64
		" duplicates, %" PRIu64 " redelivered, %" PRIu64 " bad)%s\n",
		PROG, unique, received, dups, redelivered, bad, rate);
	hist_print("end-to-end", &e2e);
	hist_print("last hop", &hop);
	hist_print("origin", &origin);

	char line[256];
	snprintf(line, sizeof(line),
		 "received=%" PRIu64 " unique=%" PRIu64 " duplicates=%" PRIu64
		 " unflagged_duplicates=%" PRIu64 " bad=%" PRIu64 " id_sum=%" PRIu64 "\n",
		 received, unique, dups, unflagged, bad, id_sum);
	if (shop_write_result(PROG, line) < 0)
		status = 1;
	free(seen_map);
	fab_stage_close(st);
	return status;
}
