/*
 * trace.bpf.c - the kernel half of `fabctl trace`: time every futex sleep
 * whose word lives in one fabric's shared memory and report it, already
 * resolved to (segment file name, offset in the file), to user space
 * through a ring buffer.
 *
 * Hooks: tp_btf/sys_enter and tp_btf/sys_exit (BTF-typed raw tracepoints).
 * kprobes and fentry do not work on the target kernels (PLATFORM.md §3) and
 * classic syscall tracepoints need tracefs mounted; tp_btf needs neither.
 *
 * Which calls: futex_waitv(2) (every fab sleep is one, its FIRST entry is
 * the word the caller is waiting on: the channel's, the topic's, the
 * limiter's or a context's) and futex(2) FUTEX_WAIT / FUTEX_WAIT_BITSET
 * (which fab itself does not use to sleep, but a foreign client might).
 *
 * Resolution: bpf_find_vma() on the calling task finds the mapping of the
 * word; its vm_file's dentry name is the shm segment ("fab.<fabric>" or
 * "fab.<fabric>.<object>") and (vm_pgoff << 12) + uaddr - vm_start is the
 * offset of the word in that file, identical in every process whatever
 * address it mapped the segment at.  Words outside a segment of the traced
 * fabric (glibc's private futexes, other fabrics, other programs) are
 * dropped at sys_enter, so nothing else costs more than the lookup.
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "trace_event.h"

char LICENSE[] SEC("license") = "GPL";

#define NR_FUTEX 202       /* x86_64 */
#define NR_FUTEX_WAITV 449 /* every architecture */
#define FUTEX_WAIT_ 0
#define FUTEX_WAIT_BITSET_ 9
#define FUTEX_CMD_MASK_ 0x7f /* without PRIVATE (128) and CLOCK_REALTIME (256) */
#define EBUSY 16

/* Set by user space before load: "fab.<fabric>" and its length. */
const volatile char fab_prefix[FT_NAME_LEN] = {};
const volatile __u32 fab_prefix_len = 0;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct ft_start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Counters of what could not be recorded (index FT_STAT_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FT_STAT_N);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Scratch for building a start record (too big for the 512-byte stack
 * together with the callback context). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ft_start);
} scratch SEC(".maps");

static __always_inline void stat_inc(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &i);
	if (v)
		*v += 1;
}

struct ft_vma_ctx {
	__u64 uaddr;
	struct ft_start *st;
	int found; /* 1: a file mapping */
};

static long vma_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct ft_vma_ctx *c = data;
	struct file *f = BPF_CORE_READ(vma, vm_file);
	if (!f)
		return 0;
	const unsigned char *name = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	if (bpf_probe_read_kernel_str(c->st->file, sizeof c->st->file, name) < 0)
		return 0;
	c->st->ino = BPF_CORE_READ(f, f_inode, i_ino);
	c->st->offset =
	    (BPF_CORE_READ(vma, vm_pgoff) << 12) + c->uaddr - BPF_CORE_READ(vma, vm_start);
	c->found = 1;
	return 0;
}

/* The file is "fab.<fabric>" or "fab.<fabric>.<object>": the prefix, then
 * the end of the name or a dot (so fabric "a" does not take "ab"'s words). */
static __always_inline int name_matches(const char *file)
{
	__u32 n = fab_prefix_len;
	if (n == 0 || n >= FT_NAME_LEN)
		return 0;
	for (__u32 i = 0; i < FT_NAME_LEN; i++) {
		if (i == n)
			return file[i] == '\0' || file[i] == '.';
		if (file[i] != fab_prefix[i])
			return 0;
	}
	return 0;
}

/* Resolve st->uaddr in the current task to st->file and st->offset.
 * Returns 1 when the word is in a segment of the traced fabric, 0 when it
 * is not, -EBUSY when the mmap lock could not be taken. */
static __always_inline long resolve(struct ft_start *st)
{
	struct ft_vma_ctx c = {.uaddr = st->uaddr, .st = st, .found = 0};
	long r = bpf_find_vma(bpf_get_current_task_btf(), st->uaddr, vma_cb, &c, 0);
	if (r == -EBUSY)
		return r;
	if (r != 0 || !c.found)
		return 0; /* no mapping, or anonymous memory */
	return name_matches(st->file);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(ft_sys_enter, struct pt_regs *regs, long id)
{
	__u64 uaddr = 0;
	__u32 nwait = 1;
	if (id == NR_FUTEX_WAITV) {
		struct futex_waitv w0;
		nwait = (__u32)regs->si;
		if (nwait == 0 || bpf_probe_read_user(&w0, sizeof w0, (const void *)regs->di) < 0) {
			stat_inc(FT_STAT_READFAIL);
			return 0;
		}
		uaddr = w0.uaddr;
	} else if (id == NR_FUTEX) {
		__u32 cmd = (__u32)regs->si & FUTEX_CMD_MASK_;
		if (cmd == FUTEX_WAIT_ || cmd == FUTEX_WAIT_BITSET_)
			uaddr = regs->di;
	}
	if (uaddr == 0)
		return 0;

	__u32 zero = 0;
	struct ft_start *st = bpf_map_lookup_elem(&scratch, &zero);
	if (!st)
		return 0;
	st->file[0] = '\0';
	st->uaddr = uaddr;
	long r = resolve(st);
	if (r == -EBUSY) {
		/* The mmap lock is taken (another thread maps or unmaps):
		 * keep the sleep unresolved and try again at sys_exit. */
		st->file[0] = '\0';
	} else if (r != 1) {
		return 0; /* not a word of this fabric */
	}

	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	st->tgid = pid_tgid >> 32;
	st->nr = (__u32)id;
	st->nwait = nwait;
	st->start_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&starts, &tid, st, BPF_ANY) != 0)
		stat_inc(FT_STAT_MAPFULL);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(ft_sys_exit, struct pt_regs *regs, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct ft_start *st = bpf_map_lookup_elem(&starts, &tid);
	if (!st)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (st->file[0] == '\0') {
		long r = resolve(st);
		if (r != 1) {
			if (r == -EBUSY)
				stat_inc(FT_STAT_VMABUSY); /* still unknown */
			bpf_map_delete_elem(&starts, &tid);
			return 0;
		}
	}
	struct ft_event *e = bpf_ringbuf_reserve(&events, sizeof *e, 0);
	if (!e) {
		stat_inc(FT_STAT_LOST);
		bpf_map_delete_elem(&starts, &tid);
		return 0;
	}
	e->dur_ns = now - st->start_ns;
	e->offset = st->offset;
	e->ino = st->ino;
	e->ret = ret;
	e->tgid = st->tgid;
	e->tid = tid;
	e->nr = st->nr;
	e->nwait = st->nwait;
	bpf_get_current_comm(e->comm, sizeof e->comm);
	__builtin_memcpy(e->file, st->file, sizeof e->file);
	bpf_ringbuf_submit(e, 0);
	bpf_map_delete_elem(&starts, &tid);
	return 0;
}
