/*
 * fabric.c - a fabric: the control segment /dev/shm/fab.<name> with the
 * process table, the channel registry, the context, limiter and stage
 * tables.  Opening a
 * fabric validates the segment (magic, layout version, sizes against the
 * file) and claims a process-table entry; closing releases it.
 *
 * A fabric handle is reference-counted: channel and context handles keep it
 * alive, so fab_fabric_close may come before their release.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void fab__chan_path(char *buf, size_t n, const char *fabric, const char *chan)
{
	if (chan)
		snprintf(buf, n, "/fab.%s.%s", fabric, chan);
	else
		snprintf(buf, n, "/fab.%s", fabric);
}

int fab__fabric_valid(fab_fabric *fab)
{
	if (!fab)
		return fab__err(FAB_EINVAL, "NULL fabric handle");
	if (fab->fork_gen != load_relaxed(&fab__fork_gen))
		return fab__err(FAB_EINVAL, "fabric handle inherited across fork(); open a new one");
	return 0;
}

int fab__fabric_gone(fab_fabric *fab)
{
	/* seq_cst: one half of the handshake with fab_fabric_destroy's
	 * store.  A creator calls this after its shm_open(O_CREAT) made the
	 * segment's name; the destroyer stores destroyed_ns before it lists
	 * /dev/shm.  In the single order of the two seq_cst operations either
	 * our load comes first, and then our name existed before the
	 * destroyer's listing began, which finds and removes it, or we see
	 * the mark and remove the segment ourselves. */
	if (load_seq_cst(&fab->hdr->destroyed_ns))
		return fab__err(FAB_ENOENT,
				"fabric %s was destroyed (fab_fabric_destroy) while this handle was open; "
				"open it again",
				fab->name);
	return 0;
}

int fab__seg_created_in(fab_fabric *fab, const char *path, fab__seg *seg)
{
	int rc = fab__fabric_gone(fab);
	if (!rc)
		return 0;
	/* Destroyed meanwhile: the new segment would outlive the fabric.
	 * Unlinked by name only if the destroyer has not done it: by now the
	 * name may be a new fabric's object (found by review). */
	struct stat sb;
	bool linked = fstat(seg->fd, &sb) == 0 && sb.st_nlink > 0;
	fab__seg_unmap(seg);
	if (linked)
		shm_unlink(path);
	return rc;
}

/* Mark the control segment at path destroyed (mine 0), returning the mark
 * stored (0: none), or clear our own mark `mine`.  Best effort: one we cannot
 * open read-write or that is not a fabric's stays as it is (its creates
 * then race the removal as before).  Opened directly rather than through
 * fab__seg_open: a destroyer allowed to unlink the segment (its owner, or
 * root for anyone's fabric) may mark it too, and only its header page is
 * touched. */
static int64_t fab__fabric_mark_destroyed(const char *path, int64_t mine)
{
	int64_t stored = 0;
	int fd = shm_open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct stat sb;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (size_t)sb.st_size >= sizeof(fab_ctl_hdr)) {
		void *p = mmap(NULL, sizeof(fab_ctl_hdr), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			fab_ctl_hdr *h = p;
			if (h->magic == FAB_CTL_MAGIC && !mine) {
				int64_t now = fab__realtime_ns();
				stored = now ? now : 1;
				/* seq_cst: before the listing of /dev/shm (see
				 * fab__fabric_gone). */
				store_seq_cst(&h->destroyed_ns, stored);
			} else if (h->magic == FAB_CTL_MAGIC) {
				/* Cleared by a destroy that then fails, so a fabric
				 * that stays is not left refusing every create
				 * (found by review); only our own mark, from the
				 * exact value: a concurrent destroy's is its own. */
				int64_t m = mine;
				atomic_compare_exchange_strong_explicit(&h->destroyed_ns, &m, 0,
									memory_order_seq_cst,
									memory_order_relaxed);
			}
			munmap(p, sizeof(fab_ctl_hdr));
		}
	}
	close(fd);
	return stored;
}

int fab__named_args(fab_fabric *fab, const char *name, const void *out, const char *what)
{
	int rc;
	if (!out)
		return fab__err(FAB_EINVAL, "NULL out pointer");
	if ((rc = fab__fabric_valid(fab)))
		return rc;
	if (!fab__name_ok(name))
		return fab__err(FAB_EINVAL, "bad %s name (want [A-Za-z0-9_-]{1,48})", what);
	/* Nothing is made in, or found by name through, a destroyed fabric's
	 * handle (contexts and limiters live in its control segment: a
	 * context created there was seen by no one; found by an adversarial
	 * trial).  Channels and topics check again after they map. */
	return fab__fabric_gone(fab);
}

void fab__fabric_ref(fab_fabric *fab)
{
	fetch_add_relaxed(&fab->refs, 1);
}

void fab__fabric_unref(fab_fabric *fab)
{
	/* acq_rel: the last holder sees every other holder's local writes. */
	if (atomic_fetch_sub_explicit(&fab->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (fab->fork_gen == load_relaxed(&fab__fork_gen))
		fab__proc_release(fab); /* also closes live_fd */
	/* Inherited: the fork handler closed live_fd (proc.c); its number may
	 * be another file of the child's now. */
	fab__seg_unmap(&fab->ctl);
	free(fab);
}

static void fab__ctl_init(fab_ctl_hdr *h, const char *name)
{
	h->magic = FAB_CTL_MAGIC;
	h->hdr_size = sizeof(fab_ctl_hdr);
	h->total_size = FAB_CTL_SIZE;
	h->max_procs = FAB_MAX_PROCS;
	h->max_chans = FAB_MAX_CHANS;
	h->max_ctxs = FAB_MAX_CTXS;
	h->creator_uid = (uint32_t)geteuid();
	h->procs_off = FAB_CTL_PROCS_OFF;
	h->chans_off = FAB_CTL_CHANS_OFF;
	h->ctxs_off = FAB_CTL_CTXS_OFF;
	h->lims_off = FAB_CTL_LIMS_OFF;
	h->max_lims = FAB_MAX_LIMS;
	h->stages_off = FAB_CTL_STAGES_OFF;
	h->max_stages = FAB_MAX_STAGES;
	h->lhists_off = FAB_CTL_LHISTS_OFF;
	h->created_ns = fab__realtime_ns();
	snprintf(h->name, sizeof h->name, "%s", name);
	/* Pairs with fab__seg_wait_version's load_acquire: the header (and the
	 * zeroed tables, from ftruncate) are visible before the version. */
	store_release(&h->version, FAB_LAYOUT_VERSION);
}

static int fab__ctl_validate(fab_fabric *fab)
{
	fab_ctl_hdr *h = fab->ctl.base;
	uint32_t v;
	int rc = fab__seg_wait_version(&h->version, &v);
	if (rc)
		return rc;
	if (h->magic != FAB_CTL_MAGIC)
		return fab__err(FAB_ECORRUPT, "fabric %s: bad magic", fab->name);
	if ((v >> 16) != FAB_LAYOUT_MAJOR)
		return fab__err(FAB_EVERSION, "fabric %s: layout %u.%u, this library speaks %u.x",
				fab->name, v >> 16, v & 0xffff, FAB_LAYOUT_MAJOR);
	if ((v & 0xffff) < FAB_CTL_MINOR_MIN)
		return fab__err(FAB_EVERSION,
				"fabric %s: layout %u.%u is older than %u.%u, the oldest this library "
				"reads; destroy and recreate it",
				fab->name, v >> 16, v & 0xffff, FAB_LAYOUT_MAJOR, FAB_CTL_MINOR_MIN);
	if (h->hdr_size != sizeof(fab_ctl_hdr) || h->total_size != FAB_CTL_SIZE ||
	    h->total_size > fab->ctl.size || h->max_procs != FAB_MAX_PROCS ||
	    h->max_chans != FAB_MAX_CHANS || h->max_ctxs != FAB_MAX_CTXS ||
	    h->procs_off != FAB_CTL_PROCS_OFF || h->chans_off != FAB_CTL_CHANS_OFF ||
	    h->ctxs_off != FAB_CTL_CTXS_OFF || h->lims_off != FAB_CTL_LIMS_OFF ||
	    h->max_lims != FAB_MAX_LIMS || h->stages_off != FAB_CTL_STAGES_OFF ||
	    h->max_stages != FAB_MAX_STAGES || h->lhists_off != FAB_CTL_LHISTS_OFF)
		return fab__err(FAB_ECORRUPT, "fabric %s: header sizes do not match the segment",
				fab->name);
	uint8_t *b = fab->ctl.base;
	fab->hdr = h;
	fab->procs = (fab_proc_ent *)(b + FAB_CTL_PROCS_OFF);
	fab->chans = (fab_chan_ent *)(b + FAB_CTL_CHANS_OFF);
	fab->ctxs = (fab_ctx_ent *)(b + FAB_CTL_CTXS_OFF);
	fab->lims = (fab_lim_ent *)(b + FAB_CTL_LIMS_OFF);
	fab->lhists = (fab_hist *)(b + FAB_CTL_LHISTS_OFF);
	return 0;
}

int fab_fabric_open(const char *name, unsigned flags, fab_fabric **out)
{
	if (!out)
		return fab__err(FAB_EINVAL, "NULL out pointer");
	*out = NULL;
	if (!fab__name_ok(name))
		return fab__err(FAB_EINVAL, "bad fabric name (want [A-Za-z0-9_-]{1,48})");
	if (flags & ~(FAB_CREATE | FAB_MODE(0777)))
		return fab__err(FAB_EINVAL, "unknown flags 0x%x", flags & ~(FAB_CREATE | FAB_MODE(0777)));
	/* FAB_MODE: the permission bits of a fabric this call creates (and the
	 * default of the channels and topics its owner creates in it, below);
	 * applied only when the fabric is created, as open(2)'s mode only with
	 * O_CREAT, but checked always.  Every process of a fabric maps its
	 * control segment read-write, so the owner must have both; execute
	 * bits mean nothing on a segment (fab__mode_ok). */
	unsigned mode = (flags >> 16) & 0777u;
	if (mode == 0)
		mode = 0600;
	if (!fab__mode_ok(mode))
		return fab__err(FAB_EINVAL,
				"fabric mode %04o: want owner read-write, group and others each "
				"read-write, read-only or nothing, no execute bits (0600, 0660, 0640, "
				"0666, ...)",
				mode);

	fab_fabric *fab = calloc(1, sizeof *fab);
	if (!fab)
		return fab__err(FAB_ENOMEM, "out of memory");
	fab->fork_gen = load_relaxed(&fab__fork_gen);
	atomic_init(&fab->refs, 1);
	fab->ctl.fd = -1;
	fab->live_fd = -1;
	snprintf(fab->name, sizeof fab->name, "%s", name);

	char path[80];
	fab__chan_path(path, sizeof path, name, NULL);
	int rc;
	for (int tries = 0;; tries++) {
		rc = fab__seg_open(path, sizeof(fab_ctl_hdr), false, &fab->ctl);
		if (rc != FAB_ENOENT || !(flags & FAB_CREATE) || tries > 3)
			break;
		rc = fab__seg_create(path, FAB_CTL_SIZE, mode, -1, &fab->ctl);
		if (rc == 0) {
			/* The lock's descriptor before the segment is published
			 * (its version word), so that failing here leaves no
			 * fabric behind. */
			int lr = 0;
			if ((fab->live_fd = fab__live_open(fab, &lr)) == -2) {
				fab->live_fd = -1;
				/* Ours to remove, unless the name is another
				 * file already (destroyed and made again by
				 * someone else meanwhile: FAB_ENOENT; review). */
				if (lr != FAB_ENOENT)
					shm_unlink(path);
				fab__seg_unmap(&fab->ctl);
				free(fab);
				return lr;
			}
			fab__ctl_init(fab->ctl.base, name);
			break;
		}
		if (rc != FAB_EEXIST)
			break;
		/* Lost a creation race: open what the winner made. */
	}
	if (rc == 0)
		rc = fab__ctl_validate(fab);
	if (rc == 0 && fab->live_fd < 0 && (fab->live_fd = fab__live_open(fab, &rc)) == -2)
		fab->live_fd = -1; /* an existing fabric: rc says why */
	if (rc == 0)
		rc = fab__proc_claim(fab);
	if (rc) {
		fab__live_drop(fab);
		fab__seg_unmap(&fab->ctl);
		free(fab);
		return rc;
	}
	/* The default mode of what we create in the fabric: its own, only if
	 * it is ours.  A fabric of another user that lets us in may have been
	 * planted by anyone (0666); inheriting its mode would publish our
	 * channels to everyone (found by review).  Members of a shared fabric
	 * pass a mode to share what they create. */
	fab->mode = fab->ctl.uid == (uint32_t)geteuid() ? fab->ctl.mode : 0600;
	*out = fab;
	return 0;
}

void fab_fabric_close(fab_fabric *fab)
{
	if (!fab || fab->user_closed)
		return;
	fab->user_closed = true;
	fab__fabric_unref(fab);
}

int fab_fabric_destroy(const char *name)
{
	if (!fab__name_ok(name))
		return fab__err(FAB_EINVAL, "bad fabric name (want [A-Za-z0-9_-]{1,48})");
	char prefix[80];
	int plen = snprintf(prefix, sizeof prefix, "fab.%s.", name);
	int found = 0;
	char path[300];
	uint32_t owner = 0;
	/* Nothing is removed unless everything can be: /dev/shm is sticky, so
	 * in a fabric shared with a group only each segment's owner (or root)
	 * may unlink it, and a destroy that stopped half-way left registry
	 * entries naming nothing (found by review). */
	fab__chan_path(path, sizeof path, name, NULL);
	if (!fab__seg_unlinkable(path, &owner))
		return fab__err(FAB_EPERM, "fabric %s belongs to uid %u: only its owner or root can destroy it",
				name, owner);
	DIR *d = opendir("/dev/shm");
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (strncmp(de->d_name, prefix, (size_t)plen) != 0 ||
			    !fab__name_ok(de->d_name + plen))
				continue;
			snprintf(path, sizeof path, "/%s", de->d_name);
			if (!fab__seg_unlinkable(path, &owner)) {
				closedir(d);
				return fab__err(FAB_EPERM,
						"%s belongs to uid %u: only its owner or root can remove it; "
						"nothing was removed",
						path, owner);
			}
		}
		closedir(d);
	}
	/* From here on the fabric goes: mark it first, so a create through a
	 * handle still open either sees the mark or made its segment before
	 * the scan below lists /dev/shm. */
	fab__chan_path(path, sizeof path, name, NULL);
	int64_t mark = fab__fabric_mark_destroyed(path, 0);
	/* Channel segments by directory scan, so segments whose registry entry
	 * was lost (a creator that died half-way) go too. */
	d = opendir("/dev/shm");
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (strncmp(de->d_name, prefix, (size_t)plen) != 0)
				continue;
			if (!fab__name_ok(de->d_name + plen))
				continue;
			snprintf(path, sizeof path, "/%s", de->d_name);
			if (shm_unlink(path) == 0) {
				found = 1;
			} else if (errno == EACCES || errno == EPERM) {
				/* A segment made after the check above by a member
				 * of a shared fabric: the fabric stays (in part). */
				int rc = fab__err(FAB_EPERM, "%s: permission denied", path);
				closedir(d);
				fab__chan_path(path, sizeof path, name, NULL);
				if (mark)
					fab__fabric_mark_destroyed(path, mark);
				return rc;
			}
		}
		closedir(d);
	}
	fab__chan_path(path, sizeof path, name, NULL);
	if (shm_unlink(path) == 0) {
		found = 1;
	} else if (errno == EACCES || errno == EPERM) {
		int rc = fab__err(FAB_EPERM, "%s: permission denied", path);
		if (mark)
			fab__fabric_mark_destroyed(path, mark);
		return rc;
	}
	return found ? 0 : fab__err(FAB_ENOENT, "no fabric named %s", name);
}
