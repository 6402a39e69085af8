/* stage_common.h - helpers of the tiny stage programs fabd's tests run. */
#ifndef STAGE_COMMON_H
#define STAGE_COMMON_H

#include <fab/fab.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 10) : def;
}

static inline fab_stage *open_stage(void)
{
	fab_stage *st;
	if (fab_stage_open(&st) < 0) {
		fprintf(stderr, "fab_stage_open: %s\n", fab_errmsg());
		exit(2);
	}
	return st;
}

/* Write `text` to `path` atomically (tmp + rename): a reader never sees
 * half a file. */
static inline void write_file(const char *path, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		perror(path);
		exit(2);
	}
}

#endif
