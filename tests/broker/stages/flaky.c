/* flaky.c - test stage: forwards every message of "in" to "out" like
 * worker.c, and reports an error (fab_stage_error, code 42, "bad item V")
 * for every message V with V % EVERY == 0 (EVERY defaults to 1: all). */
#include "stage_common.h"

int main(void)
{
	fab_stage *st = open_stage();
	fab_chan *in = fab_stage_in(st, "in"), *out = fab_stage_out(st, "out");
	uint64_t every = env_u64("EVERY", 1), n = 0, v;
	for (;;) {
		ssize_t len = fab_recv(in, &v, sizeof v, fab_stage_ctx(st));
		if (len == FAB_ECLOSED || len == FAB_ECANCELED)
			break;
		if (len < 0) {
			fprintf(stderr, "recv: %s\n", fab_errmsg());
			return 1;
		}
		if (every && v % every == 0)
			fab_stage_error(st, 42, "bad item %llu", (unsigned long long)v);
		int rc = fab_send(out, &v, (size_t)len, fab_stage_ctx(st));
		if (rc == FAB_ECANCELED)
			break;
		if (rc < 0) {
			fprintf(stderr, "send: %s\n", fab_errmsg());
			return 1;
		}
		n++;
	}
	printf("flaky forwarded %llu\n", (unsigned long long)n);
	fab_stage_close(st);
	return 0;
}
