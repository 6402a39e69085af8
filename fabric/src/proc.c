/*
 * proc.c - the process table in the control segment.  Each fabric handle
 * claims one entry; the entry's index and claim generation form the owner
 * tag written into every slot, lease and attachment the handle takes, so
 * recovery can tell, for any held object, whether its holder is alive.
 *
 * Identity is pid + start time: a dead pid, a zombie, or a pid reused by a
 * new process are all recognised as dead.
 *
 * A liveness lock backs every "dead" verdict.  A pid means nothing in
 * another PID namespace (containers that share /dev/shm): there, the pid
 * of a live process is absent or another process's, and recovery would
 * take it for dead and repair its slots under it (found by the eleventh
 * session: a process in a new PID namespace ran fab_fabric_recover and
 * freed a live receiver's entry and attachments).  So each handle holds an
 * open-file-description lock (F_OFD_SETLK) on one byte of the control
 * segment, at FAB_LIVE_LOCK_OFF + its entry index, past the end of the
 * file, from before its claim until after its release.  The kernel drops
 * it when the process dies, whatever its namespace, and any process can
 * test it (F_OFD_GETLK).  An entry is dead only if its pid says dead AND
 * its byte is not locked: a library without the lock (older) is judged by
 * pid as before, and a live process in another namespace is never taken
 * for dead.  A child after fork() gives up its inherited reference to the
 * lock (fab__live_forget_all), so a parent that dies is not kept "alive"
 * by its children.
 */
#include "internal.h"
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Descriptors whose open file description holds a liveness lock in this
 * process (each fabric handle's lock descriptor), for the child after fork.
 * A slot holds fd + 1, 0 when free, so the zeroed array needs no set-up (a
 * first version marked the slots -1 on first use, and a fork during that
 * marking left the child spinning for good; review).  Changed with CAS;
 * the fork handler reads it in a child that may have been forked while
 * another thread changed it. */
static _Atomic int fab__live_fds[FAB_MAX_PROCS];

/* Held from a lock descriptor's open until it is registered, and by the
 * fork handlers around fork(): a fork in between would give the child an
 * unregistered copy, through which the parent's lock would outlive the
 * parent (review: one in 56 000 forks with threads opening handles). */
static pthread_mutex_t fab__live_mu = PTHREAD_MUTEX_INITIALIZER;

void fab__live_fork_prepare(void)
{
	pthread_mutex_lock(&fab__live_mu);
}

void fab__live_fork_parent(void)
{
	pthread_mutex_unlock(&fab__live_mu);
}

/* false when the registry is full (more than FAB_MAX_PROCS handles in one
 * process, over several fabrics): the caller then claims without a lock. */
static bool fab__live_fd_add(int fd)
{
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
		int free_ = 0;
		if (load_relaxed(&fab__live_fds[i]) == 0 && cas(&fab__live_fds[i], &free_, fd + 1))
			return true;
	}
	return false;
}

static void fab__live_fd_del(int fd)
{
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
		int f = fd + 1;
		if (load_relaxed(&fab__live_fds[i]) == fd + 1 && cas(&fab__live_fds[i], &f, 0))
			return;
	}
}

void fab__live_forget_all(void)
{
	/* In the child after fork: close each inherited lock descriptor,
	 * which drops the child's reference to the lock's open file
	 * description (never mapped, so nothing else holds one).  The
	 * inherited handle never closes its copy (fabric.c), so the number,
	 * which the child may reuse, is not closed twice.  Only
	 * async-signal-safe calls.  (A first version pointed the descriptors
	 * at /dev/null, which a child at its descriptor limit could not open:
	 * review.)  Then the mutex the prepare handler took, as new. */
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
		int v = load_relaxed(&fab__live_fds[i]);
		if (v == 0)
			continue;
		close(v - 1);
		store_relaxed(&fab__live_fds[i], 0);
	}
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
	memcpy(&fab__live_mu, &fresh, sizeof fresh);
}

/* Lock (1) or unlock (0) our byte of entry idx; 0, or -1 with errno. */
static int fab__live_set(int fd, uint32_t idx, int lock)
{
	struct flock fl = {.l_type = lock ? F_WRLCK : F_UNLCK,
			   .l_whence = SEEK_SET,
			   .l_start = (off_t)(FAB_LIVE_LOCK_OFF + idx),
			   .l_len = 1};
	return fcntl(fd, F_OFD_SETLK, &fl);
}

static void fab__live_close(int fd);

/* Is byte idx write-locked by another open file description?  Asked as a
 * read lock, which only a write lock conflicts with. */
static bool fab__live_written(int fd, uint32_t idx)
{
	struct flock fl = {.l_type = F_RDLCK,
			   .l_whence = SEEK_SET,
			   .l_start = (off_t)(FAB_LIVE_LOCK_OFF + idx),
			   .l_len = 1};
	return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_WRLCK;
}

int fab__live_held(fab_fabric *fab, uint32_t idx)
{
	if (fab->ctl.fd < 0 || idx >= FAB_MAX_PROCS)
		return 0;
	/* Only a write lock answers: the owner's.  A read lock, which anyone
	 * who may read the segment can take, must not keep a dead entry
	 * alive (review: a read-only member read-locked the bytes and stalled
	 * recovery).  Another description's lock (our own, if any, does not
	 * count: we never ask about our own entry). */
	return fab__live_written(fab->ctl.fd, idx);
}

/*
 * The descriptor that carries this handle's liveness lock: a second open
 * of the control segment's file, never mapped.  Not ctl.fd: a mapping holds
 * a reference to the open file description it was made from, and a child
 * after fork inherits the mapping, so closing the child's descriptor would
 * not drop the lock of a parent that dies (found by the test
 * fork_child_keeps_no_lock).  Registered for the fork handler before any
 * lock is taken on it (a fork in between would escape it; review).
 * Returns the descriptor; -1 with the registry full (more than
 * FAB_MAX_PROCS fabric handles in this process: the entry is then judged by
 * pid alone); or -2 with the error recorded (no descriptor left: the open
 * fails, as it would for the segment itself; the file under the name is
 * no longer the one mapped: the fabric was destroyed meanwhile).
 */
int fab__live_open(fab_fabric *fab, int *rc)
{
	char path[FAB_NAME_MAX + 8];
	snprintf(path, sizeof path, "/fab.%s", fab->name);
	pthread_mutex_lock(&fab__live_mu); /* no fork until it is registered */
	int fd = shm_open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
	int r = fd < 0 ? -2 : fab__live_fd_add(fd) ? fd : -1;
	int err = errno;
	pthread_mutex_unlock(&fab__live_mu);
	if (fd < 0) {
		errno = err;
		*rc = err == ENOENT ? fab__err(FAB_ENOENT, "fabric %s was destroyed", fab->name)
				    : fab__errno("shm_open");
		return -2;
	}
	if (r == -1) {
		close(fd);
		return -1;
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_dev != fab->ctl.dev ||
	    (uint64_t)sb.st_ino != fab->ctl.ino) {
		*rc = fab__err(FAB_ENOENT, "fabric %s was destroyed", fab->name);
		fab__live_close(fd);
		return -2;
	}
	return fd;
}

static void fab__live_close(int fd)
{
	fab__live_fd_del(fd);
	close(fd);
}

void fab__live_drop(fab_fabric *fab)
{
	if (fab->live_fd >= 0)
		fab__live_close(fab->live_fd);
	fab->live_fd = -1;
}

int fab__proc_claim(fab_fabric *fab)
{
	uint32_t me = (uint32_t)getpid();
	uint64_t start = fab__proc_start_time((int)me, NULL);
	/* fab_fabric_open opened it (fab__live_open), before the segment was
	 * published when it created the fabric. */
	int lfd = fab->live_fd;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
			fab_proc_ent *e = &fab->procs[i];
			uint64_t sg = load_acquire(&e->sg);
			if (FAB_SG_STATE(sg) != FAB_PROC_FREE)
				continue;
			uint32_t gen = FAB_SG_GEN(sg) + 1;
			/* The liveness lock first, so that nobody sees the entry
			 * ours without it.  Held by another description: a
			 * claimer of this entry between its lock and its CAS, or
			 * an owner between its release and its unlock: skip.
			 * Another failure (a file system without OFD locks):
			 * claim without it, judged by pid alone. */
			bool locked = false;
			if (lfd >= 0) {
				if (fab__live_set(lfd, i, 1) == 0)
					locked = true;
				else if ((errno == EAGAIN || errno == EACCES) &&
					 fab__live_written(lfd, i))
					continue;
				/* else only read locks (anyone who may read
				 * the segment can take them): claim it without
				 * a lock, judged by pid (review). */
			}
			/* The CAS makes us the only writer of this entry until we
			 * free it; the new generation invalidates every tag of the
			 * previous owner.  Our pid goes into the same word: killed
			 * before LIVE, we leave an entry whose owner recovery can
			 * check (it used to leave pid 0, "mid-claim", alive for
			 * good: one of FAB_MAX_PROCS entries lost). */
			if (!cas(&e->sg, &sg, FAB_SG_CLAIMED(gen, me))) {
				if (locked)
					fab__live_set(lfd, i, 0);
				continue;
			}
			if (!locked)
				fab__live_drop(fab); /* no lock for this entry */
			store_relaxed(&e->pid, me);
			e->uid = (uint32_t)geteuid();
			store_relaxed(&e->start_time, start);
			store_relaxed(&e->attached_ns, fab__realtime_ns());
			/* The previous owner's pulse, wait record and stage. */
			store_relaxed(&e->calls, 0);
			store_relaxed(&e->wait, 0);
			store_relaxed(&e->wait_ns, 0);
			store_relaxed(&e->stage, 0);
			store_relaxed(&e->replica, 0);
			/* Pairs with fab__tag_alive's load_acquire of sg: a reader
			 * that sees LIVE sees pid and start time. */
			store_release(&e->sg, FAB_SG_MAKE(gen, FAB_PROC_LIVE));
			fab->proc_idx = i;
			fab->tag = FAB_TAG_MAKE(i, gen);
			return 0;
		}
		/* Table full: entries of dead processes may be reclaimable. */
		if (pass == 0 && fab_fabric_recover(fab) < 0) {
			/* Say why nothing was freed (review: the bare "full"
			 * hid a recovery that could not finish). */
			char why[200];
			snprintf(why, sizeof why, "%s", fab_errmsg());
			return fab__err(FAB_ENOMEM, "process table of fabric %s is full (%u entries): %s",
					fab->name, FAB_MAX_PROCS, why);
		}
	}
	return fab__err(FAB_ENOMEM, "process table of fabric %s is full (%u entries)", fab->name,
			FAB_MAX_PROCS);
}

void fab__proc_release(fab_fabric *fab)
{
	fab_proc_ent *e = &fab->procs[fab->proc_idx];
	uint64_t sg = load_acquire(&e->sg);
	if (FAB_SG_GEN(sg) % 32 == FAB_TAG_GEN(fab->tag) && FAB_SG_STATE(sg) != FAB_PROC_FREE) {
		store_relaxed(&e->pid, 0);
		/* Release: our last writes to shared objects happen before the
		 * entry can be claimed again. */
		cas(&e->sg, &sg, FAB_SG_MAKE(FAB_SG_GEN(sg), FAB_PROC_FREE));
	}
	/* Else already reclaimed by someone (we were thought dead: a
	 * recoverer without the lock).  Either way, then the lock (a claimer
	 * that finds it still held skips the entry) and the registry, whose
	 * entry would otherwise outlive the descriptor the caller closes next
	 * and make every fork close a reused number (review). */
	if (fab->live_fd >= 0)
		fab__live_set(fab->live_fd, fab->proc_idx, 0);
	fab__live_drop(fab);
}

static int fab__entry_alive_pid(fab_fabric *fab, fab_proc_ent *e, uint64_t sg);

int fab__entry_alive(fab_fabric *fab, fab_proc_ent *e, uint64_t sg)
{
	if (FAB_SG_STATE(sg) == FAB_PROC_FREE)
		return 0;
	if (fab__entry_alive_pid(fab, e, sg))
		return 1;
	/* Dead by its pid, unless its liveness lock is held (a live process
	 * in another PID namespace; see the top of this file). */
	return fab__live_held(fab, (uint32_t)(e - fab->procs));
}

static int fab__entry_alive_pid(fab_fabric *fab, fab_proc_ent *e, uint64_t sg)
{
	if (FAB_SG_STATE(sg) == FAB_PROC_CLAIMED) {
		/* Mid-claim: only the word names the owner.  `pid` and
		 * `start_time` may still hold the previous owner's values
		 * (recovery frees an entry as it is), and a stale start time
		 * would make the live claimer look like a pid reuse.  So the
		 * pid, and whether that process maps this fabric's control
		 * segment: a claimer maps it before its claim and keeps it
		 * mapped, so a process with the claimer's pid that does not is
		 * another one that got the pid of a claimer killed here (until
		 * 28 Nov that entry stayed taken while the new process lived).
		 * When its maps cannot be read (another user's), the pid alone
		 * decides, as before. */
		uint32_t cpid = FAB_SG_PID(sg);
		if (cpid) {
			if (!fab__pid_alive(cpid, 0))
				return 0;
			if ((pid_t)cpid == getpid())
				return 1;
			return fab__proc_maps_object((int)cpid, fab->ctl.dev, fab->ctl.ino) != 0;
		}
		/* No pid in the word (a library older than the field):
		 * alive while its own stores are incomplete, as before. */
		uint32_t pid = load_relaxed(&e->pid);
		uint64_t start = load_relaxed(&e->start_time);
		if (pid == 0 || start == 0)
			return pid == 0 ? 1 : fab__pid_alive(pid, 0);
		return fab__pid_alive(pid, start);
	}
	return fab__pid_alive(load_relaxed(&e->pid), load_relaxed(&e->start_time));
}

int fab__tag_alive(fab_fabric *fab, uint32_t tag)
{
	if (!(tag & FAB_TAG_VALID))
		return 0;
	uint32_t idx = FAB_TAG_IDX(tag);
	if (idx >= FAB_MAX_PROCS)
		return 0;
	fab_proc_ent *e = &fab->procs[idx];
	/* Pairs with fab__proc_claim's store_release of LIVE. */
	uint64_t sg = load_acquire(&e->sg);
	if (FAB_SG_STATE(sg) == FAB_PROC_FREE || (FAB_SG_GEN(sg) & 31u) != FAB_TAG_GEN(tag))
		return 0; /* freed or re-claimed: the tagged owner is gone */
	return fab__entry_alive(fab, e, sg);
}
