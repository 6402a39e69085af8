/*
 * procfs.h - who is alive, from /proc: a process's start time and state,
 * its thread count, whether it is a kernel thread, and the liveness rule
 * built on them (pid + start time, docs/layout.md "Process table").  One
 * definition for the two readers that must agree on it, as geom.h is for
 * the channel geometry: libfab's recovery (proc.c, util.c) decides with it
 * whose slots to repair, and the read-only inspector (fabric/inspect) with
 * it which processes fabctl and /metrics show as dead.  Before this header
 * each kept its own copy, and review twice found them disagreeing.
 *
 * Everything here is static inline: no symbol is added to libfab or to the
 * inspector, and each translation unit that includes it gets its own copy.
 */
#ifndef FAB_PROCFS_H
#define FAB_PROCFS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* /proc/<pid>/<file> into buf (NUL-terminated); false if unreadable. */
static inline bool fab__proc_read(int pid, const char *file, char *buf, size_t size)
{
	char path[64];
	/* Ourselves through /proc/self: in a PID namespace whose /proc is the
	 * parent namespace's (a container without its own /proc mount),
	 * /proc/<getpid()> is another process (pid 1 there is the host's
	 * init), /proc/self is always us. */
	if ((pid_t)pid == getpid())
		snprintf(path, sizeof path, "/proc/self/%s", file);
	else
		snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return true;
}

/* The field `n` places after p in a line of blank-separated fields; NULL
 * when the line ends first. */
static inline const char *fab__proc_skip(const char *p, int n)
{
	for (; p && n > 0; n--) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p;
}

/* Field 3 (the state letter) of /proc/<pid>/stat, read into buf: the
 * fields after it follow (fab__proc_skip).  Parsed after the LAST ')',
 * since the command name (field 2) may hold blanks and parentheses.  NULL
 * when unreadable. */
static inline const char *fab__proc_stat(int pid, char *buf, size_t size)
{
	if (!fab__proc_read(pid, "stat", buf, size))
		return NULL;
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return NULL;
	return p + 2;
}

/* Start time of a process in clock ticks since boot (field 22) and its
 * state letter (field 3); 0 when the process does not exist or the file
 * cannot be parsed.  A real start time of 0 is returned as 1, so that 0
 * always means "unknown" in a process-table entry. */
static inline uint64_t fab__proc_start_time(int pid, char *state_out)
{
	char buf[1024];
	const char *f3 = fab__proc_stat(pid, buf, sizeof buf);
	const char *p = fab__proc_skip(f3, 22 - 3);
	if (!p)
		return 0;
	if (state_out)
		*state_out = *f3;
	unsigned long long st = strtoull(p, NULL, 10);
	return st ? st : 1;
}

/* Threads of process pid (the Threads: line of /proc/<pid>/status): 1 for
 * a zombie whose whole group exited, more while threads other than an
 * exited leader run.  0 if unreadable. */
static inline uint32_t fab__proc_threads(int pid)
{
	char buf[4096];
	if (!fab__proc_read(pid, "status", buf, sizeof buf))
		return 0;
	char *p = strstr(buf, "\nThreads:");
	if (!p)
		return 0;
	return (uint32_t)strtoul(p + 9, NULL, 10);
}

/* Is pid a kernel thread (PF_KTHREAD in the flags, field 9)?  false when
 * unreadable. */
static inline bool fab__proc_is_kthread(int pid)
{
	char buf[1024];
	const char *p = fab__proc_skip(fab__proc_stat(pid, buf, sizeof buf), 9 - 3);
	return p && (strtoul(p, NULL, 10) & 0x00200000ul) != 0; /* PF_KTHREAD */
}

/*
 * Liveness of the process a table entry names by pid and start time
 * (start 0: unknown, the pid alone decides).  Dead: no such pid; a zombie
 * whose whole group exited (killed, not yet reaped: it will never touch
 * shared memory again); a pid now held by a process with another start
 * time (reuse).  Alive: anything else, including a zombie leader whose
 * other threads still run (its main thread called pthread_exit) and a pid
 * that exists but that /proc does not show us (hidepid, another user's
 * namespace): a reuse cannot be told from the original then, and
 * repairing a live process's slots would corrupt its work, so a dead one
 * waits until someone who can see it (fabd) recovers.
 */
static inline bool fab__pid_alive(uint32_t pid, uint64_t start)
{
	if (pid == 0)
		return false;
	if ((pid_t)pid == getpid()) {
		/* Our pid, but maybe not us: a dead process whose pid we got
		 * is dead, whatever its pid says. */
		uint64_t mine = fab__proc_start_time((int)pid, NULL);
		return !start || !mine || mine == start;
	}
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return false;
	char st = 0;
	uint64_t now_start = fab__proc_start_time((int)pid, &st);
	if (now_start == 0)
		return true; /* it exists, /proc hides it: cannot tell */
	if ((st == 'Z' || st == 'X') && fab__proc_threads((int)pid) <= 1)
		return false;
	return !start || now_start == start;
}

#endif /* FAB_PROCFS_H */
