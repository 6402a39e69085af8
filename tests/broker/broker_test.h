/*
 * broker_test.h - what fabd's process-level tests (test_run.c,
 * test_control.c, test_supervise.c) share: the runner's pid, a recursive
 * rm, the segments a fabric left in /dev/shm, small file helpers, waiting
 * for a child, and a channel's close state.  Each test file keeps its own names (prefixes), fabd
 * launcher and topologies.
 */
#ifndef FAB_BROKER_TEST_H
#define FAB_BROKER_TEST_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fab/fab.h>

/* The runner's pid: getppid() in a forked test, getpid() in the runner. */
static inline pid_t runner(void)
{
	static pid_t p;
	if (!p)
		p = getenv("CK_FORK") && !strcmp(getenv("CK_FORK"), "no") ? getpid() : getppid();
	return p;
}

/* rm -r: a test's directory, with fabd's control socket and lock in
 * dir/fab/ when XDG_RUNTIME_DIR pointed there. */
static inline void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
				continue;
			if (unlink(p) < 0 && (errno == EISDIR || errno == EPERM))
				rm_tree(p);
		}
	closedir(d);
	rmdir(dir);
}

/* Segments /dev/shm/fab.<fabric> and fab.<fabric>.* still present. */
static inline int segments_left(const char *fabric)
{
	char pre[128];
	int n = snprintf(pre, sizeof pre, "fab.%s", fabric);
	DIR *d = opendir("/dev/shm");
	int left = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, pre, (size_t)n) &&
		    (e->d_name[n] == 0 || e->d_name[n] == '.'))
			left++;
	if (d)
		closedir(d);
	return left;
}

static inline void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

/* Whole file as a malloc'd string ("" when absent). */
static inline char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap + 1);
	ck_assert_ptr_nonnull(b);
	if (f) {
		size_t k;
		while ((k = fread(b + n, 1, cap - n, f)) > 0) {
			n += k;
			if (n == cap) {
				cap *= 2;
				b = realloc(b, cap + 1);
				ck_assert_ptr_nonnull(b);
			}
		}
		fclose(f);
	}
	b[n] = 0;
	return b;
}

/* Exit status, or 128 + signal; -1 if pid is not our child. */
static inline int wait_code(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* 2 ms: the poll interval of bounded waits (hang guards, never timings). */
static inline void nap(void)
{
	struct timespec ts = { 0, 2000000 };
	nanosleep(&ts, NULL);
}

/* Wait (bounded by the test's timeout) until the file at `path` contains
 * `needle` (a log line fabd wrote). */
static inline void wait_text(const char *path, const char *needle)
{
	for (;;) {
		char *c = slurp(path);
		int found = c && strstr(c, needle) != NULL;
		free(c);
		if (found)
			return;
		nap();
	}
}

/* An mpmc channel's close state (*closes: producers that closed so far),
 * read through a receiving handle of our own, which takes no message (on
 * spsc it would take the receive end); -1 when it cannot be opened. */
static inline int chan_closed(const char *fabric, const char *name, uint32_t *closes)
{
	fab_fabric *f;
	fab_chan *ch;
	if (fab_fabric_open(fabric, 0, &f) < 0)
		return -1;
	if (fab_chan_open(f, name, FAB_RECV, &ch) < 0) {
		fab_fabric_close(f);
		return -1;
	}
	fab_stats st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	int rc = fab_chan_stats(ch, &st);
	fab_chan_release(ch);
	fab_fabric_close(f);
	*closes = st.closes;
	return rc < 0 ? -1 : (int)st.closed;
}

#endif /* FAB_BROKER_TEST_H */
