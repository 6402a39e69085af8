/*
 * recover.c - reclaiming what dead processes held.
 *
 * fab_fabric_recover() finds process-table entries whose process is gone
 * (pid + start time; for an entry claimed but never made LIVE, the pid its
 * claim CAS wrote), repairs every channel slot and spsc end they held,
 * clears their attachments, finishes or rolls back registry entries they
 * were creating, and only then frees their entries (so an index is never
 * reused while a slot still names it).  Every repair is a CAS from the exact
 * word observed, so running it twice, or in two processes at once, is safe;
 * owner tags carry the claim generation so a repair can never touch the
 * slots of a process that re-claimed the same entry.
 *
 * Waiters call fab__chan_recover() on the one channel they are stuck on when
 * the owner of the slot in their way is dead: fabrics without a broker heal.
 */
#include "internal.h"
#include "geom.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Repair channel `ch`: slots, spsc ends and attachments of dead_tag, or of
 * every dead owner when dead_tag is 0.  Returns how many objects changed. */
uint64_t fab__chan_recover(fab_chan *ch, fab_fabric *fab, uint32_t dead_tag)
{
	uint64_t fixed = 0;
	int detached = 0;
	if (ch->ring == FAB_RING_MPMC)
		fixed += fab__mpmc_recover(ch, fab, (int)dead_tag);
	_Atomic uint64_t *ends[2] = {&ch->hdr->spsc_sender, &ch->hdr->spsc_receiver};
	for (int i = 0; i < 2; i++) {
		uint64_t w = load_acquire(ends[i]);
		uint32_t t = (uint32_t)(w >> 32);
		if (!w || (dead_tag ? t != dead_tag : fab__tag_alive(fab, t)))
			continue;
		if (cas(ends[i], &w, 0)) {
			fixed++;
			/* A sender killed between its commit word and its
			 * hint: the hint is what len and stats read. */
			if (i == 0 && ch->ring == FAB_RING_SPSC)
				fab__spsc_hint_tail(ch, fab__spsc_find_tail(ch));
		}
	}
	/* The whole table, not [0, attach_hi): a process killed between the
	 * CAS that claimed its word and its raise of attach_hi left a word
	 * above the mark (chan.c, fab__attach), and only this loop frees it. */
	for (uint32_t i = 0; i < ch->attach_max; i++) {
		uint64_t w = load_relaxed(&ch->attach[i]);
		if (!w)
			continue;
		uint32_t t = FAB_ATT_TAG(w);
		if (dead_tag ? t != dead_tag : fab__tag_alive(fab, t))
			continue;
		if (!cas(&ch->attach[i], &w, 0))
			continue; /* another recoverer cleared it (and counted) */
		detached = 1;
		/* Receivers of the dead handle killed while waiting on an
		 * unbuffered channel (recv_ready) or asleep (the blocked
		 * gauges): only the CAS that cleared the word may take them
		 * out, so they are subtracted exactly once. */
		fab__att_cleared(ch->hdr, w);
	}
	if (fixed || detached) {
		/* Wake everyone: sleepers re-check and find the repaired slots.
		 * Also when only a dead handle was detached: it may have been
		 * killed between publishing (a message, a freed slot) and its
		 * wake, and the other side would sleep on for good. */
		fab__wake_all(ch->hdr);
	}
	/* A closer killed mid-close: its recorded id may complete the quorum,
	 * or `closed` may be set without the wake. */
	fab__chan_close_settle(ch->hdr);
	return fixed;
}

/*
 * A channel another layout minor made (another libfab version; it answers
 * FAB_EVERSION here) may carry a dead process's state -- a held slot, a
 * reservation, an attach word -- that only its own version can repair, and
 * that version finds the process only through its entry.  So an entry must
 * not be freed while such a channel still names it: freed, the owner's
 * recovery no longer knew it as dead, the lease stayed held and messages
 * stayed stuck behind the reservation (found by an upgrade trial; and after
 * 32 claims of the index a live process carried the dead one's tag).
 *
 * Which dead processes are attached to channel `name`, by its attach table,
 * read-only: layout 1.3's and 1.4's channel headers are the same bytes (1.4
 * added a slot state only), so the table is where ours is.  A holder, a
 * reserver or a sleeper is attached.  keep[k] is set for dead_tags[k]
 * (kmap: dead index by process-table index, -1 none).  0, also when the
 * segment is gone or of a layout we do not know (skipped like another
 * user's channel: keeping every dead entry for it filled the table for
 * good, found by review); a negative code when we could not look (no fd,
 * no memory: the caller keeps every entry this time).
 */
static int fab__other_minor_attached(fab_fabric *fab, const char *name, const uint32_t *dead_tags,
				     const int16_t *kmap, bool *keep)
{
	char path[128];
	fab__chan_path(path, sizeof path, fab->name, name);
	size_t need = FAB_CHAN_HDR_BYTES + (size_t)FAB_ATTACH_MAX * sizeof(uint64_t);
	int fd = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return errno == ENOENT || errno == EACCES ? 0 : fab__errno("shm_open");
	struct stat sb;
	if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_size < need) {
		close(fd);
		return 0;
	}
	void *m = mmap(NULL, need, PROT_READ, MAP_SHARED, fd, 0);
	int err = errno;
	close(fd);
	if (m == MAP_FAILED) {
		errno = err;
		return fab__errno("mmap");
	}
	const fab_chan_hdr *h = m;
	/* Acquire: the creator's header, written before its version word, is
	 * complete. */
	uint32_t v = load_acquire(&((fab_chan_hdr *)h)->version);
	if (h->magic == FAB_CHAN_MAGIC && (v >> 16) == FAB_LAYOUT_MAJOR &&
	    ((v & 0xffff) == 3 || (v & 0xffff) == FAB_LAYOUT_MINOR) &&
	    h->attach_off == FAB_CHAN_HDR_BYTES) {
		_Atomic uint64_t *att = (_Atomic uint64_t *)((uint8_t *)m + FAB_CHAN_HDR_BYTES);
		for (uint32_t i = 0; i < FAB_ATTACH_MAX; i++) {
			/* Relaxed: a dead process's word does not change; a
			 * live one's is not ours. */
			uint64_t w = load_relaxed(&att[i]);
			uint32_t t = FAB_ATT_TAG(w);
			if (!w || !(t & FAB_TAG_VALID))
				continue;
			int k = kmap[FAB_TAG_IDX(t)];
			if (k >= 0 && dead_tags[k] == t)
				keep[k] = true;
		}
	}
	munmap(m, need);
	return 0;
}

/* Is the dead creator's entry c's name another entry's?  0 no; 1 yes, and
 * that entry is LIVE, or CREATING under a dead creator at a lower index
 * (which settles the name): free c; 2 a live creator is making the name
 * (it goes LIVE, or fails): leave c for a later recovery.  Freeing c on
 * any other entry's name orphaned a racing creator's segment (review). */
static int fab__reg_dup(fab_fabric *fab, uint32_t c, const char *name)
{
	int verdict = 0;
	for (uint32_t j = 0; j < FAB_MAX_CHANS; j++) {
		fab_chan_ent *o = &fab->chans[j];
		/* Acquire: a LIVE entry's name, written before it, is whole. */
		uint32_t st = j == c ? FAB_ENT_FREE : load_acquire(&o->state);
		if (st == FAB_ENT_FREE || strncmp(o->name, name, FAB_NAME_MAX) != 0)
			continue;
		if (st == FAB_ENT_LIVE)
			return 1;
		uint32_t ow = load_relaxed(&o->owner);
		if (ow == 0 || fab__tag_alive(fab, ow))
			verdict = 2;
		else if (j < c && verdict == 0)
			verdict = 1;
	}
	return verdict;
}

/*
 * Hold CREATING registry entry e of dead creator `dead` through its owner
 * word (since 1.6.1): CAS it from the dead tag to ours, then check the
 * entry is still CREATING.  A claimer needs owner 0 (fab__ent_claim), so
 * the entry cannot be freed and claimed again under us while we settle it:
 * before, a recovery paused between its look and its CAS on the state
 * freed a new creator's claim and removed its segment (review).  false
 * (nothing held) when the entry changed.  Without a tag (a handle that has
 * no process entry) we hold nothing and settle by the state alone.
 */
static bool fab__reg_hold(fab_fabric *fab, fab_chan_ent *e, uint32_t dead)
{
	if (!fab->tag)
		return load_acquire(&e->state) == FAB_ENT_CREATING;
	if (!cas(&e->owner, &dead, fab->tag))
		return false;
	if (load_acquire(&e->state) == FAB_ENT_CREATING)
		return true;
	uint32_t me = fab->tag;
	cas(&e->owner, &me, dead);
	return false;
}

/* Let go of an entry held by fab__reg_hold: its owner word to `to` (0 once
 * it is LIVE or FREE; the dead tag to leave it CREATING for a later
 * recovery). */
static void fab__reg_unhold(fab_fabric *fab, fab_chan_ent *e, uint32_t to)
{
	uint32_t me = fab->tag;
	if (me)
		cas(&e->owner, &me, to);
}

/* Free CREATING entry e of dead creator `dead` (nothing to remove: its
 * name is not whole, so no segment of its is named by it).  true if we
 * freed it. */
static bool fab__reg_free_creating(fab_fabric *fab, fab_chan_ent *e, uint32_t dead)
{
	if (!fab__reg_hold(fab, e, dead))
		return false;
	uint32_t st = FAB_ENT_CREATING;
	bool freed = cas(&e->state, &st, FAB_ENT_FREE);
	fab__reg_unhold(fab, e, freed ? 0 : dead);
	if (!fab->tag && freed)
		cas(&e->owner, &dead, 0);
	return freed;
}

/* The dead processes one recovery handles: every dead entry of the table.
 * Until 1.6.1 a call took the first 64; entries kept for another version's
 * recovery (fab__other_minor_attached) stay dead, and 64 of them at low
 * indices starved every later death of recovery (found by review). */
typedef struct fab__dead_set {
	uint32_t tags[FAB_MAX_PROCS];
	uint64_t sg[FAB_MAX_PROCS];
	uint32_t idx[FAB_MAX_PROCS];
	uint64_t wait[FAB_MAX_PROCS];
	int64_t wait_ns[FAB_MAX_PROCS];
	bool keep[FAB_MAX_PROCS];
	int16_t kmap[FAB_MAX_PROCS]; /* process-table index -> dead index, -1 none */
} fab__dead_set;

static int fab__recover(fab_fabric *fab, fab__dead_set *D);

int fab_fabric_recover(fab_fabric *fab)
{
	int rc;
	if ((rc = fab__fabric_valid(fab)))
		return rc;
	/* A handle of a destroyed fabric reaches by name what may be a new
	 * fabric's objects, whose owners' tags index another process table:
	 * it would "recover" live processes (found by review: a live worker
	 * lost its lease).  Checked again as the walk goes (a destroy may
	 * begin meanwhile), after each map, which is then ours. */
	if ((rc = fab__fabric_gone(fab)))
		return rc;
	fab__dead_set *D = calloc(1, sizeof *D);
	if (!D)
		return fab__err(FAB_ENOMEM, "out of memory");
	rc = fab__recover(fab, D);
	free(D);
	return rc;
}

static int fab__recover(fab_fabric *fab, fab__dead_set *D)
{
	int rc;
	uint32_t *dead_tags = D->tags;
	uint64_t *dead_sg = D->sg;
	uint32_t *dead_idx = D->idx;
	uint64_t *dead_wait = D->wait;
	int64_t *dead_wait_ns = D->wait_ns;
	int nd = 0;
	int repaired = 0;
	/* The first passing failure (a channel or topic that could not be
	 * mapped for want of fds or memory) and whose: the dead processes'
	 * entries are then kept, so that a later call still knows them as
	 * dead and repairs what this one could not reach.  Freed, nothing
	 * would name them again: until 28 Nov (eleventh session; found by a
	 * resource-exhaustion trial) a recovery at the fd limit freed them
	 * and returned success, and a leased message stayed leased to a dead
	 * process for good. */
	int fail = 0;
	char fail_name[FAB_NAME_MAX + 1] = "", fail_msg[200] = "";
	/* Dead processes attached to a channel of another layout minor: their
	 * entries are kept for that version's recovery (above). */
	bool *keep = D->keep;
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++)
		D->kmap[i] = -1;
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
		fab_proc_ent *e = &fab->procs[i];
		uint64_t sg = load_acquire(&e->sg);
		if ((fab->tag && i == fab->proc_idx) || FAB_SG_STATE(sg) == FAB_PROC_FREE)
			continue;
		if (FAB_SG_STATE(sg) == FAB_PROC_CLAIMED) {
			/* A claimer killed before LIVE never had its tag (the
			 * handle learns it after LIVE), so nothing names the
			 * entry: free it now.  Only when the word names the
			 * claimer (FAB_SG_PID) and that process is gone.  The CAS
			 * from the exact word leaves an entry another recoverer
			 * freed, or a new claimer took, alone; its release pairs
			 * with the next claimer's CAS as a release of the entry
			 * by its owner does (nothing of the dead claimer's is
			 * read after it). */
			if (FAB_SG_PID(sg) && !fab__entry_alive(fab, e, sg) &&
			    cas(&e->sg, &sg, FAB_SG_MAKE(FAB_SG_GEN(sg), FAB_PROC_FREE)))
				repaired++;
			continue;
		}
		if (FAB_SG_STATE(sg) != FAB_PROC_LIVE || fab__entry_alive(fab, e, sg))
			continue;
		dead_tags[nd] = FAB_TAG_MAKE(i, FAB_SG_GEN(sg));
		D->kmap[i] = (int16_t)nd;
		dead_sg[nd] = sg;
		dead_idx[nd] = i;
		/* What it slept on when it died (nothing changes it now: a
		 * dead process does not write, and the entry is not free). */
		dead_wait[nd] = load_relaxed(&e->wait);
		dead_wait_ns[nd] = load_relaxed(&e->wait_ns);
		nd++;
	}

	for (uint32_t c = 0; c < FAB_MAX_CHANS; c++) {
		fab_chan_ent *e = &fab->chans[c];
		uint32_t st = load_acquire(&e->state);
		if (st == FAB_ENT_FREE) {
			/* A dead claimer's or creator's tag left on a free entry
			 * (fab__ent_claim): clear it, so that a claimer of an
			 * older library, which takes the state first and its
			 * tag after, is never seen CREATING under a dead tag in
			 * between (review). */
			uint32_t o = load_relaxed(&e->owner);
			if (o != 0 && !fab__tag_alive(fab, o))
				cas(&e->owner, &o, 0);
			continue;
		}
		if ((rc = fab__fabric_gone(fab)))
			return rc;
		char name[FAB_NAME_MAX + 1];
		memcpy(name, e->name, FAB_NAME_MAX);
		name[FAB_NAME_MAX] = 0;
		if (!fab__name_ok(name)) {
			/* A creator killed while it copied the name in (after
			 * its claim, before its segment, which the name names):
			 * nothing to remove; free the entry, or it was lost for
			 * good (review).  A scribbled name of a live entry:
			 * nothing safe to do with it. */
			uint32_t owner = load_relaxed(&e->owner);
			if (st == FAB_ENT_CREATING && owner != 0 && !fab__tag_alive(fab, owner) &&
			    fab__reg_free_creating(fab, e, owner))
				repaired++;
			continue;
		}
		if (st == FAB_ENT_CREATING) {
			/* A dead creator's name that is another entry's name:
			 * copied in part, or a race of two creators of the name.
			 * Before the type (it was written after the name, so it
			 * may be the entry's previous one's; review). */
			uint32_t owner = load_relaxed(&e->owner);
			if (owner != 0 && !fab__tag_alive(fab, owner)) {
				int dup = fab__reg_dup(fab, c, name);
				if (dup == 2)
					continue; /* a live creator of the name: settle after it */
				if (dup == 1) {
					/* That entry's segment is not ours: free
					 * ours, remove nothing (settled LIVE, it made
					 * two entries of one name; review). */
					if (fab__reg_free_creating(fab, e, owner))
						repaired++;
					continue;
				}
			}
		}
		if (e->type == FAB_OBJ_TOPIC) {
			/* Topics check every owner's liveness themselves. */
			int f0 = fail;
			int tr = fab__topic_recover(fab, e, st, name, &fail);
			if (fail && !f0) {
				memcpy(fail_name, name, sizeof fail_name);
				snprintf(fail_msg, sizeof fail_msg, "%s", fab_errmsg());
			}
			if (tr >= 0) {
				repaired += tr;
				continue;
			}
		}
		if (st == FAB_ENT_CREATING) {
			uint32_t owner = load_relaxed(&e->owner);
			if (owner == 0 || fab__tag_alive(fab, owner))
				continue; /* 0: claimed, tag not yet written (fab__reg_claim) */
			/* Its creator died: keep a finished segment, drop the rest.
			 * Held through `owner` (fab__reg_hold) from here, so that
			 * the entry we settle is the one we looked at. */
			if (!fab__reg_hold(fab, e, owner))
				continue;
			fab_chan tmp;
			memset(&tmp, 0, sizeof tmp);
			int mrc = fab__chan_map(fab, name, &tmp);
			if (mrc == 0 || mrc == FAB_EVERSION) {
				/* Finished (its version word is written last): keep
				 * it, also when another layout minor made it (a
				 * library of that version may be using it; we only
				 * cannot). */
				if (mrc == 0)
					fab__chan_unmap(&tmp);
				cas(&e->state, &st, FAB_ENT_LIVE);
				fab__reg_unhold(fab, e, 0);
			} else if (mrc != FAB_ECORRUPT && mrc != FAB_ENOENT) {
				/* A passing failure (memory, fds): not evidence.
				 * The dead tag back, for a later recovery. */
				fab__reg_unhold(fab, e, owner);
				continue;
			} else {
				char path[128];
				uint32_t seg_owner = 0;
				fab__chan_path(path, sizeof path, fab->name, name);
				/* Another user's unfinished segment that we may not
				 * unlink (a member of a shared fabric): leave the
				 * entry CREATING for its owner's recovery; freed, the
				 * name would stay taken by a segment nobody finds. */
				if (!fab__seg_unlinkable(path, &seg_owner)) {
					fab__reg_unhold(fab, e, owner);
					continue;
				}
				if ((rc = fab__fabric_gone(fab))) {
					fab__reg_unhold(fab, e, owner);
					return rc; /* the name may be a new fabric's now */
				}
				/* Held: nobody claimed the entry since we looked, so
				 * the segment we remove is the dead creator's. */
				if (cas(&e->state, &st, FAB_ENT_FREE))
					shm_unlink(path);
				fab__reg_unhold(fab, e, 0);
			}
			repaired++;
			continue;
		}
		if (nd == 0)
			continue;
		fab_chan tmp;
		memset(&tmp, 0, sizeof tmp);
		int mrc = fab__chan_map(fab, name, &tmp);
		int merr = errno;
		if (mrc == FAB_EVERSION) {
			int orc = fab__other_minor_attached(fab, name, dead_tags, D->kmap, keep);
			if (orc < 0 && !fail) {
				/* Could not look (no fd, no memory): as a channel we
				 * could not map, keep every dead entry this time. */
				fail = orc;
				memcpy(fail_name, name, sizeof fail_name);
				snprintf(fail_msg, sizeof fail_msg, "%s", fab_errmsg());
			}
			continue;
		}
		if (mrc && !fab__passing_failure(mrc, merr))
			continue; /* removed meanwhile, or not ours to repair: skip it
				   * (another user's 0600 channel is FAB_EPERM for good:
				   * counted as incomplete, no recovery would ever end;
				   * found by review) */
		if (mrc) {
			if (!fail) {
				fail = mrc;
				memcpy(fail_name, name, sizeof fail_name);
				snprintf(fail_msg, sizeof fail_msg, "%s", fab_errmsg());
			}
			continue;
		}
		if ((rc = fab__fabric_gone(fab))) {
			fab__chan_unmap(&tmp);
			return rc;
		}
		/* A process kept for another version's recovery is of that
		 * version: it could not open our channels. */
		for (int k = 0; k < nd; k++)
			if (!keep[k])
				repaired += (int)fab__chan_recover(&tmp, fab, dead_tags[k]);
		/* A process killed inside fab__wake_word, after the CAS that
		 * cleared the sleepers bit, left sleepers that no later wake
		 * reaches (topic.c, fab__topic_repair: the same).  Gauges:
		 * relaxed, a sleeper counts itself before its announce. */
		if (load_relaxed(&tmp.hdr->recv_waiters) || load_relaxed(&tmp.hdr->send_waiters))
			fab__wake_all(tmp.hdr);
		fab__chan_unmap(&tmp);
	}
	fab__ctx_recover(fab);
	/* Context and limiter entries whose creator died before LIVE.  An
	 * entry's owner is 0 whenever it is FREE and while a new creator has
	 * claimed it but not yet written its tag; 0 counts as alive, so a
	 * stale owner from an earlier life is never taken for this one's. */
	for (uint32_t i = 0; i < FAB_MAX_CTXS; i++) {
		fab_ctx_ent *e = &fab->ctxs[i];
		uint32_t st = FAB_ENT_CREATING;
		uint32_t owner;
		if (load_acquire(&e->state) == FAB_ENT_CREATING &&
		    (owner = load_relaxed(&e->owner)) != 0 && !fab__tag_alive(fab, owner) &&
		    cas(&e->state, &st, FAB_ENT_FREE))
			cas(&e->owner, &owner, 0);
	}
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++) {
		fab_lim_ent *e = &fab->lims[i];
		uint32_t st = FAB_ENT_CREATING;
		uint32_t owner;
		if (load_acquire(&e->state) == FAB_ENT_CREATING &&
		    (owner = load_relaxed(&e->owner)) != 0 && !fab__tag_alive(fab, owner) &&
		    cas(&e->state, &st, FAB_ENT_FREE))
			cas(&e->owner, &owner, 0);
	}
	/* Before the dead entries are freed: a set() lock a dead process holds
	 * would otherwise name an index that may be re-claimed. */
	fab__lim_recover(fab);
	if (fail && nd)
		return fab__err(fail,
				"recovery incomplete: %s could not be mapped (%s); the %d dead "
				"process%s entr%s kept for a later call",
				fail_name, fail_msg, nd, nd == 1 ? "'s" : "es'",
				nd == 1 ? "y is" : "ies are");
	/* Last: free the dead entries.  The CAS includes the generation, so an
	 * entry freed and re-claimed by someone else meanwhile is left alone. */
	for (int k = 0; k < nd; k++) {
		fab_proc_ent *e = &fab->procs[dead_idx[k]];
		uint64_t sg = dead_sg[k];
		if (keep[k])
			continue; /* its own version frees it, after its repair */
		if (!cas(&e->sg, &sg, FAB_SG_MAKE(FAB_SG_GEN(sg), FAB_PROC_FREE)))
			continue;
		repaired++;
		/* A publisher killed asleep: nothing else names it, so its
		 * topic's space_waiters would stay one high for good.  Its
		 * record is cleared before its own uncount (topic.c,
		 * fab__twait), so a record still there means it was counted;
		 * this CAS's winner takes it out, once. */
		uint64_t w = dead_wait[k];
		if (FAB_WAIT_KIND(w) == FAB_WAIT_TOPIC && FAB_WAIT_OP(w) == FAB_WAIT_SEND)
			fab__topic_uncount_publisher(fab, FAB_WAIT_IDX(w), dead_wait_ns[k]);
	}
	return repaired;
}
