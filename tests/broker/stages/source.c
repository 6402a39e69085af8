/* source.c - test stage: sends N numbered messages (uint64 0..N-1) on its
 * "out" port, or numbers forever when N is 0, until its context is
 * cancelled; then fab_stage_close (closing "out") and exit 0. */
#include "stage_common.h"

int main(void)
{
	fab_stage *st = open_stage();
	fab_chan *out = fab_stage_out(st, "out");
	uint64_t n = env_u64("N", 0), i;
	for (i = 0; n == 0 || i < n; i++) {
		int rc = fab_send(out, &i, sizeof i, fab_stage_ctx(st));
		if (rc == FAB_ECANCELED || rc == FAB_ECLOSED)
			break;
		if (rc < 0) {
			fprintf(stderr, "send: %s\n", fab_errmsg());
			return 1;
		}
	}
	printf("source sent %llu\n", (unsigned long long)i);
	fab_stage_close(st);
	return 0;
}
