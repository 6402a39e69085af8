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
 * Duplicates are allowed when a hop is at-least-once; a copy is "flagged"
 * when it arrives redelivered on "done" or carries SHOP_F_REDELIVERED (some
 * earlier hop redelivered it).  At most one copy of an order may be
 * unflagged (shop.h explains why); each further unflagged copy is counted in
 * unflagged_duplicates, which is a bug.
 *
 * If FAB_SHOP_LOG names a file, it appends one line per copy received,
 * before acking it, with one write(2) to a file opened O_APPEND:
 *   <order id> <flagged 0|1> <deliveries on "done">
 * so a crash test that SIGKILLs this sink too keeps a complete record across
 * its restarts: a copy killed between that write and the ack comes back
 * redelivered, and is logged again, flagged.  Exit status: 0 when "done" is
 * closed and drained or the context is cancelled, 1 a library or I/O error.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

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

/* A set of order ids: a bitmap that grows with the largest id. */
struct idset {
	uint8_t *map;
	size_t bytes;
};

/* Adds `id`; returns whether it was already there. */
static int idset_test_and_set(struct idset *s, uint64_t id)
{
	size_t byte = (size_t)(id / 8);

	if (byte >= s->bytes) {
		size_t nb = s->bytes ? s->bytes : 4096;
		while (nb <= byte)
			nb *= 2;
		uint8_t *m = realloc(s->map, nb);
		if (!m) {
			fprintf(stderr, "%s: out of memory\n", PROG);
			exit(1);
		}
		memset(m + s->bytes, 0, nb - s->bytes);
		s->map = m;
		s->bytes = nb;
	}
	int was = (s->map[byte] >> (id % 8)) & 1;
	s->map[byte] |= (uint8_t)(1u << (id % 8));
	return was;
}

/* Appends one line for a received copy to the FAB_SHOP_LOG file (fd >= 0):
 * one write(2), so a SIGKILL leaves whole lines.  0 or -1. */
static int log_copy(int fd, uint64_t id, int flagged, uint32_t deliveries)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%" PRIu64 " %d %u\n", id, flagged, deliveries);

	return write(fd, line, (size_t)n) == n ? 0 : -1;
}

int main(void)
{
	static struct hist e2e, hop, origin;
	uint64_t received = 0, unique = 0, dups = 0, unflagged = 0, bad = 0, redelivered = 0;
	uint64_t id_sum = 0;
	int64_t first_ns = 0, last_ns = 0;
	struct idset seen = {0}, seen_unflagged = {0};
	const char *log_path = getenv("FAB_SHOP_LOG");
	int log_fd = -1;
	fab_stage *st;
	int status = 0;

	if (log_path && *log_path &&
	    (log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		fprintf(stderr, "%s: FAB_SHOP_LOG=%s: %s\n", PROG, log_path, strerror(errno));
		return 1;
	}
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

		int flagged = info.redelivered || (o.flags & SHOP_F_REDELIVERED);
		if (log_fd >= 0 && log_copy(log_fd, o.id, flagged, info.deliveries) < 0) {
			fprintf(stderr, "%s: FAB_SHOP_LOG=%s: %s\n", PROG, log_path, strerror(errno));
			status = 1; /* not acked: it is redelivered to the next sink */
			break;
		}
		const char *why = shop_check(&o, (size_t)n,
					     SHOP_F_VALIDATED | SHOP_F_ENRICHED | SHOP_F_PERSISTED);
		if (why) {
			fab_stage_error(st, SHOP_ERR_BAD, "order %" PRIu64 ": %s", o.id, why);
			bad++;
		} else if (idset_test_and_set(&seen, o.id)) {
			dups++;
			if (!flagged && idset_test_and_set(&seen_unflagged, o.id))
				unflagged++;
		} else {
			if (!flagged)
				idset_test_and_set(&seen_unflagged, o.id);
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
	free(seen.map);
	free(seen_unflagged.map);
	if (log_fd >= 0 && close(log_fd) < 0)
		status = 1;
	fab_stage_close(st);
	return status;
}
