/*
 * mech_topic.c - fab's topics (broadcast), measured through the public API:
 * one publisher process, r->ncons subscriber processes, each subscribed with
 * FAB_SUB_BLOCK so that nothing may be dropped.
 *
 * The parent creates the topic (capacity r->capacity, msg_size r->msg) under
 * a fresh name and releases its publisher handle; each child opens the
 * fabric itself.  Subscribers subscribe BEFORE the start barrier: a
 * subscription starts at the next message published, and the publisher
 * starts only once every child has passed the barrier, so every subscriber
 * is owed every message of the run.
 *
 * End of stream.  Topics have no close, so the stream ends with a sentinel:
 * the publisher publishes records 0, 1, 2 ... (rec_stamp: the tag at both
 * ends of the 64-byte record) until the deadline, then one end record whose
 * head and tail are BENCH_END and whose second word is the number of records
 * it published before it.  A subscriber stops at the end record and fails
 * unless it received exactly that many records, each the next sequence
 * number, none torn, and fab_sub_dropped is 0.  The parent then checks that
 * every subscriber's count and sequence sum equal the publisher's
 * (bcast_result in fab_bench.c).  The end record travels in the same ring
 * and in order behind the data, so no subscriber can stop early; the
 * alternative (the publisher announces its count in struct shared and
 * subscribers stop when they reach it) needs a second wake-up path for a
 * subscriber asleep in fab_sub_recv, which the sentinel does not.
 *
 * The figure is messages published per second: the count over the interval
 * from the publisher's first publish to the last subscriber's end record,
 * as for a stream; deliveries per second are that times the subscribers.
 * Topics have no counters in ABI 1.1 (no stats call), so no futex figure.
 */
#include "bench.h"

#include <stdlib.h>

static unsigned g_serial;

static void topic_teardown(struct run *r)
{
	int rc;

	if (!r->chan[0][0])
		return;
	/* One namespace: fab_chan_destroy removes a topic too (topics.md). */
	rc = fab_chan_destroy(bench_fab, r->chan[0]);
	if (rc != 0)
		fprintf(stderr, "fab-bench: fab_chan_destroy(%s) (topic): %s: %s\n", r->chan[0],
			fab_errname(rc), fab_errmsg());
	r->chan[0][0] = '\0';
}

static int topic_setup(struct run *r, char *why, size_t whylen)
{
	fab_chan_opts o;
	fab_topic *t = NULL;
	int rc;

	r->chan[0][0] = r->chan[1][0] = '\0';
	if (!bench_fab) {
		snprintf(why, whylen, "the fabric could not be opened");
		return -1;
	}
	if (r->shape != SHAPE_BCAST || r->nprod != 1 || r->ncons < 1 || r->ncons > BENCH_MAXSUB ||
	    r->msg < 16) {
		snprintf(why, whylen,
			 "a topic run is one publisher and 1..%d subscribers, records >= 16 B",
			 BENCH_MAXSUB);
		return -1;
	}
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.capacity = r->capacity;
	o.msg_size = (uint32_t)r->msg;
	snprintf(r->chan[0], sizeof r->chan[0], "tp%u", ++g_serial);
	rc = fab_topic_create(bench_fab, r->chan[0], &o, &t);
	if (rc != 0) {
		snprintf(why, whylen, "fab_topic_create(%s): %s: %s", r->chan[0], fab_errname(rc),
			 fab_errmsg());
		r->chan[0][0] = '\0';
		return -1;
	}
	fab_topic_release(t);
	return 0;
}

static int fail_rc(struct run *r, unsigned slot, const char *call, long rc)
{
	return child_fail(r, slot, "%s: %s: %s", call, fab_errname((int)rc), fab_errmsg());
}

static int publish(struct run *r, fab_fabric *f, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	const size_t msg = r->msg;
	unsigned char *buf;
	fab_topic *t = NULL;
	int64_t deadline;
	uint64_t seq;
	int rc;

	rc = fab_topic_open(f, r->chan[0], &t);
	if (rc != 0)
		return fail_rc(r, slot, "fab_topic_open", rc);
	buf = bench_buf_alloc(msg);
	if (!buf) {
		fab_topic_release(t);
		return child_fail(r, slot, "out of memory");
	}
	barrier_wait(r);
	deadline = r->sh->deadline;
	o->t_start = now_ns();
	for (seq = 0;; seq++) {
		if ((seq & 63) == 0 && now_ns() >= deadline)
			break;
		rec_stamp(buf, msg, rec_tag(0, seq));
		rc = fab_topic_publish(t, buf, msg, NULL);
		if (rc != 0)
			goto fail;
	}
	o->count = seq;
	/* The end record: BENCH_END at both ends, the count in between. */
	memset(buf, 0, msg);
	rec_stamp(buf, msg, BENCH_END);
	memcpy(buf + sizeof(uint64_t), &seq, sizeof seq);
	rc = fab_topic_publish(t, buf, msg, NULL);
	if (rc != 0)
		goto fail;
	free(buf);
	fab_topic_release(t);
	return 0;
fail:
	fail_rc(r, slot, "fab_topic_publish", rc);
	free(buf);
	fab_topic_release(t);
	return 1;
}

static int subscribe(struct run *r, fab_fabric *f, unsigned slot)
{
	struct child_out *o = &r->sh->out[slot];
	const size_t msg = r->msg;
	char why[BENCH_ERRLEN];
	struct cons_check c;
	unsigned char *buf;
	fab_sub *u = NULL;
	uint64_t tag, tail, announced;
	ssize_t n;
	int rc;

	rc = fab_topic_subscribe(f, r->chan[0], FAB_SUB_BLOCK, &u);
	if (rc != 0)
		return fail_rc(r, slot, "fab_topic_subscribe", rc);
	rc = 1;
	buf = bench_buf_alloc(msg);
	if (!buf) {
		fab_sub_release(u);
		return child_fail(r, slot, "out of memory");
	}
	memset(&c, 0, sizeof c);
	c.nprod = 1;
	c.strict = 1; /* one publisher: every sequence number, in order */
	barrier_wait(r);
	for (;;) {
		n = fab_sub_recv(u, buf, msg, NULL);
		if (n < 0) {
			fail_rc(r, slot, "fab_sub_recv", n);
			goto out;
		}
		if ((size_t)n != msg) {
			child_fail(r, slot, "fab_sub_recv returned %zd bytes, published %zu", n,
				   msg);
			goto out;
		}
		memcpy(&tag, buf, sizeof tag);
		if (tag == BENCH_END)
			break;
		if (cons_check_rec(&c, buf, msg, why, sizeof why) < 0) {
			child_fail(r, slot, "%s", why);
			goto out;
		}
	}
	o->t_end = now_ns();
	memcpy(&tail, buf + msg - sizeof tail, sizeof tail);
	memcpy(&announced, buf + sizeof tag, sizeof announced);
	if (tail != BENCH_END) {
		child_fail(r, slot, "end record torn: tail tag %#llx", (unsigned long long)tail);
		goto out;
	}
	if (announced != c.total) {
		child_fail(r, slot,
			   "the publisher published %llu messages, this subscriber received %llu",
			   (unsigned long long)announced, (unsigned long long)c.total);
		goto out;
	}
	if (fab_sub_dropped(u) != 0) {
		child_fail(r, slot, "a FAB_SUB_BLOCK subscriber dropped %llu messages",
			   (unsigned long long)fab_sub_dropped(u));
		goto out;
	}
	o->count = c.total;
	o->per_cnt[0] = c.cnt[0];
	o->per_sum[0] = c.sum[0];
	rc = 0;
out:
	free(buf);
	fab_sub_release(u);
	return rc;
}

static int topic_child(struct run *r, enum bench_role role, unsigned slot)
{
	fab_fabric *f = NULL;
	int rc;

	/* The parent's handles are invalid here: open our own. */
	rc = fab_fabric_open(bench_fabric, 0, &f);
	if (rc != 0)
		return child_fail(r, slot, "fab_fabric_open(%s): %s: %s", bench_fabric,
				  fab_errname(rc), fab_errmsg());
	rc = role == ROLE_PROD ? publish(r, f, slot) : subscribe(r, f, slot);
	fab_fabric_close(f);
	return rc;
}

const struct mech mech_topic = { "topic", topic_setup, topic_child, topic_teardown };
