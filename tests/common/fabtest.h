/*
 * fabtest.h - helpers shared by fab's tests: unique fabric names, children
 * that are always killed and reaped, segment cleanup.
 *
 * Rules (PLATFORM.md §5): a ck_assert inside a forked child is lost, so
 * children never call ck_assert and never return: they _exit(code) and the
 * parent asserts on the wait status.
 */
#ifndef FABTEST_H
#define FABTEST_H

#include <fab/fab.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FT_MAX_CHILDREN 256

static pid_t ft_children[FT_MAX_CHILDREN];
static int ft_nchildren;

/* Mode bits of the fabric's control segment (obj NULL) or of its object
 * obj, or -1 if there is none. */
static inline int ft_shm_mode(const char *fabric, const char *obj)
{
	char p[256];
	struct stat st;
	if (obj)
		snprintf(p, sizeof p, "/dev/shm/fab.%s.%s", fabric, obj);
	else
		snprintf(p, sizeof p, "/dev/shm/fab.%s", fabric);
	if (stat(p, &st) != 0)
		return -1;
	return (int)(st.st_mode & 07777);
}

/* A fabric name unique to this test run: "t<tag>-<pid>-<n>". */
static inline const char *ft_fabric_name(const char *tag)
{
	static char buf[8][FAB_NAME_MAX + 1];
	static int n;
	char *b = buf[n % 8];
	snprintf(b, FAB_NAME_MAX + 1, "t%.16s-%d-%d", tag, (int)getpid(), n);
	n++;
	return b;
}

/* fork() a child that runs fn(arg) and _exit()s with its return value. */
static inline pid_t ft_spawn(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();
	if (pid == 0) {
		int rc = fn(arg);
		_exit(rc);
	}
	if (pid > 0 && ft_nchildren < FT_MAX_CHILDREN)
		ft_children[ft_nchildren++] = pid;
	return pid;
}

/* Wait for one child; returns its exit code, 128+signal if killed, -1 on error. */
static inline int ft_wait(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	for (int i = 0; i < ft_nchildren; i++)
		if (ft_children[i] == pid)
			ft_children[i] = 0;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* Kill and reap every child still recorded (teardown; also on failure). */
static inline void ft_reap_all(void)
{
	for (int i = 0; i < ft_nchildren; i++) {
		if (ft_children[i] > 0) {
			kill(ft_children[i], SIGKILL);
			waitpid(ft_children[i], NULL, 0);
			ft_children[i] = 0;
		}
	}
	ft_nchildren = 0;
}

static inline int64_t ft_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Remove everything in /dev/shm whose name starts with `prefix` (e.g.
 * "fab.tfault123-"): first destroy each fabric through the API, then unlink
 * whatever segment is still there.  Returns how many entries were found, so
 * a runner can fail a passing run that left segments behind.
 */
static inline int ft_sweep_prefix(const char *prefix)
{
	size_t pl = strlen(prefix);
	int found = 0;
	for (int round = 0; round < 16; round++) {
		DIR *d = opendir("/dev/shm");
		if (!d)
			break;
		int seen = 0;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strncmp(e->d_name, prefix, pl) != 0)
				continue;
			seen++;
			char name[300];
			snprintf(name, sizeof name, "%s", e->d_name);
			if (round == 0) {
				if (found < 20)
					fprintf(stderr, "sweep: leftover /dev/shm/%s\n", name);
				found++;
				if (strchr(name + 4, '.') == NULL)
					fab_fabric_destroy(name + 4);
			} else {
				char p[320];
				snprintf(p, sizeof p, "/dev/shm/%s", name);
				unlink(p);
			}
		}
		closedir(d);
		if (seen == 0)
			break;
	}
	return found;
}

#endif /* FABTEST_H */
