/* sink.c - test stage: receives uint64 numbers from "in" until it is closed
 * (or the context is cancelled) and writes "count=C dups=D bad=B" to the
 * file OUT; with N set, D counts numbers seen twice and B numbers >= N. */
#include "stage_common.h"

int main(void)
{
	fab_stage *st = open_stage();
	fab_chan *in = fab_stage_in(st, "in");
	uint64_t n = env_u64("N", 0), count = 0, dups = 0, bad = 0, v;
	unsigned char *seen = n ? calloc(n, 1) : NULL;
	fprintf(stderr, "sink ready\n");
	for (;;) {
		ssize_t len = fab_recv(in, &v, sizeof v, fab_stage_ctx(st));
		if (len == FAB_ECLOSED || len == FAB_ECANCELED)
			break;
		if (len < 0) {
			fprintf(stderr, "recv: %s\n", fab_errmsg());
			return 1;
		}
		count++;
		if (n && v >= n)
			bad++;
		else if (n && seen[v]++)
			dups++;
	}
	char buf[128];
	snprintf(buf, sizeof buf, "count=%llu dups=%llu bad=%llu\n", (unsigned long long)count,
		 (unsigned long long)dups, (unsigned long long)bad);
	const char *path = getenv("OUT");
	if (path && *path)
		write_file(path, buf);
	printf("sink got %llu\n", (unsigned long long)count);
	free(seen);
	fab_stage_close(st);
	return 0;
}
