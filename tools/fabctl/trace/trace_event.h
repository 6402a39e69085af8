/*
 * trace_event.h - what trace.bpf.c hands to trace.c: one record per futex
 * sleep of the traced fabric, and the indices of the loss counters.
 * Included by both sides: by the BPF program after vmlinux.h, by user space
 * after <linux/types.h>.
 */
#ifndef FABCTL_TRACE_EVENT_H
#define FABCTL_TRACE_EVENT_H

/* "fab.<fabric>.<object>" is at most 4 + 48 + 1 + 48 bytes + NUL. */
#define FT_NAME_LEN 112
#define FT_COMM_LEN 16

struct ft_event {
	__u64 dur_ns; /* sys_enter to sys_exit */
	__u64 offset; /* of the (first) word in its segment file */
	__u64 ino;    /* the segment file's inode */
	__s64 ret;    /* the syscall's return value (-errno) */
	__u32 tgid;   /* process */
	__u32 tid;    /* thread */
	__u32 nr;     /* syscall number: 449 futex_waitv, 202 futex */
	__u32 nwait;  /* futex_waitv: words watched; futex: 1 */
	char comm[FT_COMM_LEN];
	char file[FT_NAME_LEN]; /* dentry name of the segment */
};

/* A sleep in progress, per thread (the BPF map `starts`, keyed by tid;
 * user space reads the sleeps still in progress at the end).  file is ""
 * while unresolved: bpf_find_vma could not take the mmap lock at sys_enter
 * (another thread of the process was mapping), so sys_exit tries again. */
struct ft_start {
	__u64 start_ns;
	__u64 uaddr;
	__u64 offset;
	__u64 ino;
	__u32 tgid;
	__u32 nr;    /* syscall number */
	__u32 nwait; /* futex_waitv: entries; futex: 1 */
	__u32 pad;
	char file[FT_NAME_LEN];
};

#define FT_STAT_LOST 0     /* ring buffer full: event dropped */
#define FT_STAT_READFAIL 1 /* futex_waitv's first entry unreadable */
#define FT_STAT_MAPFULL 2  /* start table full */
#define FT_STAT_VMABUSY 3  /* mmap lock busy at sys_enter and sys_exit: word unknown */
#define FT_STAT_N 4

#endif /* FABCTL_TRACE_EVENT_H */
