/*
 * proc.c - the process table in the control segment.  Each fabric handle
 * claims one entry; the entry's index and claim generation form the owner
 * tag written into every slot, lease and attachment the handle takes, so
 * recovery can tell, for any held object, whether its holder is alive.
 *
 * Identity is pid + start time: a dead pid, a zombie, or a pid reused by a
 * new process are all recognised as dead.
 */
#include "internal.h"
#include "procfs.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

int fab__proc_claim(fab_fabric *fab)
{
	uint32_t me = (uint32_t)getpid();
	uint64_t start = fab__proc_start_time((int)me, NULL);
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
			fab_proc_ent *e = &fab->procs[i];
			uint64_t sg = load_acquire(&e->sg);
			if (FAB_SG_STATE(sg) != FAB_PROC_FREE)
				continue;
			uint32_t gen = FAB_SG_GEN(sg) + 1;
			/* The CAS makes us the only writer of this entry until we
			 * free it; the new generation invalidates every tag of the
			 * previous owner.  Our pid goes into the same word: killed
			 * before LIVE, we leave an entry whose owner recovery can
			 * check (it used to leave pid 0, "mid-claim", alive for
			 * good: one of FAB_MAX_PROCS entries lost). */
			if (!cas(&e->sg, &sg, FAB_SG_CLAIMED(gen, me)))
				continue;
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
		if (pass == 0)
			fab_fabric_recover(fab);
	}
	return fab__err(FAB_ENOMEM, "process table of fabric %s is full (%u entries)", fab->name,
			FAB_MAX_PROCS);
}

void fab__proc_release(fab_fabric *fab)
{
	fab_proc_ent *e = &fab->procs[fab->proc_idx];
	uint64_t sg = load_acquire(&e->sg);
	if (FAB_SG_GEN(sg) % 32 != FAB_TAG_GEN(fab->tag) || FAB_SG_STATE(sg) == FAB_PROC_FREE)
		return; /* already reclaimed by someone (we were thought dead?) */
	store_relaxed(&e->pid, 0);
	/* Release: our last writes to shared objects happen before the entry
	 * can be claimed again. */
	cas(&e->sg, &sg, FAB_SG_MAKE(FAB_SG_GEN(sg), FAB_PROC_FREE));
}

int fab__entry_alive(fab_fabric *fab, fab_proc_ent *e, uint64_t sg)
{
	if (FAB_SG_STATE(sg) == FAB_PROC_FREE)
		return 0;
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
