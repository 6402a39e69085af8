/*
 * failfork.c - an LD_PRELOAD object for fabd's tests: fork() fails with
 * EAGAIN on the call whose number (from 1) FAILFORK_AT names, and works on
 * every other call.  fabd forks once per replica start, in the order of the
 * topology file, so a test can make exactly one start fail the way a full
 * process table would, without touching fabd.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

pid_t fork(void)
{
	static pid_t (*real_fork)(void);
	static unsigned long calls;
	const char *at = getenv("FAILFORK_AT");

	if (!real_fork)
		real_fork = (pid_t (*)(void))dlsym(RTLD_NEXT, "fork");
	calls++;
	if (at && strtoul(at, NULL, 10) == calls) {
		errno = EAGAIN;
		return -1;
	}
	if (!real_fork) {
		errno = ENOSYS;
		return -1;
	}
	return real_fork();
}
