/* worker.c - test stage: forwards every message of "in" to "out" until
 * "in" is closed and drained (or the context is cancelled), then closes.
 *
 * With CRASH_FILE and CRASH_TIMES=K set, it is a crasher: the first K
 * times it starts (the count is kept in CRASH_FILE) it receives one message
 * and dies with exit 1 before acknowledging it, so on an at-least-once
 * channel that message must be redelivered to its successor. */
#include "stage_common.h"

#include <unistd.h>

static int crash_now(void)
{
	const char *path = getenv("CRASH_FILE");
	uint64_t k = env_u64("CRASH_TIMES", 0);
	if (!path || !*path || k == 0)
		return 0;
	unsigned long long done = 0;
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%llu", &done) != 1)
			done = 0;
		fclose(f);
	}
	if (done >= k)
		return 0;
	char buf[32];
	snprintf(buf, sizeof buf, "%llu\n", done + 1);
	write_file(path, buf);
	return 1;
}

int main(void)
{
	fab_stage *st = open_stage();
	fab_chan *in = fab_stage_in(st, "in"), *out = fab_stage_out(st, "out");
	int crash = crash_now();
	uint64_t n = 0, v;
	for (;;) {
		ssize_t len = fab_recv(in, &v, sizeof v, fab_stage_ctx(st));
		if (len == FAB_ECLOSED || len == FAB_ECANCELED)
			break;
		if (len < 0) {
			fprintf(stderr, "recv: %s\n", fab_errmsg());
			return 1;
		}
		if (crash) {
			fprintf(stderr, "crashing on purpose\n");
			_exit(1); /* no ack, no close */
		}
		int rc = fab_send(out, &v, (size_t)len, fab_stage_ctx(st));
		if (rc == FAB_ECANCELED)
			break;
		if (rc < 0) {
			fprintf(stderr, "send: %s\n", fab_errmsg());
			return 1;
		}
		fab_ack(in); /* FAB_EINVAL-free no-op on an at-most-once channel */
		n++;
	}
	printf("worker forwarded %llu\n", (unsigned long long)n);
	fab_stage_close(st);
	return 0;
}
