/*
 * inspect.c - a read-only snapshot of a fabric from its segments (see
 * inspect.h).  The validation follows libfab's own mappers (fabric.c
 * fab__ctl_validate, chan.c fab__chan_map, topic.c fab__topic_map) and
 * fabd's metrics.c: the immutable header line is copied once, the geometry
 * is recomputed from its parameters and compared field by field, and only
 * then are offsets used.  Counters are never trusted: distances are
 * clamped to the capacity and every scan is bounded by one lap of slots.
 *
 * Why not libfab: fab_fabric_open claims a process-table entry and
 * fab_chan_open attaches a handle (and may take an spsc end); an inspector
 * must not change what it shows.  Nothing here waits either: a header
 * whose version word is still 0 is reported as not initialised.
 *
 * A segment file truncated after it was mapped would raise SIGBUS on the
 * next read of a vanished page; every read of mapped memory runs under
 * fi_guarded, whose handler siglongjmps back and reports the segment.
 */
#include "inspect.h"

#include "atomic.h"
#include "layout.h"
#include "geom.h"
#include "procfs.h"

#include <fab/fab.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FI_HDR_BYTES FAB_CHAN_HDR_BYTES
#define FI_INFLIGHT_MAX 1024u
#define FI_DELIVERIES_MAX 1000u

/* ---- errors ---------------------------------------------------------- */

static __thread char fi_errbuf[FI_ERR];

static int fi_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fi_err(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(fi_errbuf, sizeof fi_errbuf, fmt, ap);
	va_end(ap);
	return code;
}

const char *fi_errmsg(void)
{
	return fi_errbuf;
}

/* ---- SIGBUS guard ---------------------------------------------------- */

/* Per thread: SIGBUS is delivered to the thread that touched the page, so
 * several threads (fabd's main loop and its metrics thread) may read
 * segments at once. */
static __thread sigjmp_buf fi_jb;
static __thread volatile sig_atomic_t fi_armed;
static int fi_guard_ready;

static void fi_sigbus(int sig)
{
	if (fi_armed) {
		fi_armed = 0;
		siglongjmp(fi_jb, 1);
	}
	/* Not ours: die of it as we would have without the handler. */
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Run fn(arg) with SIGBUS turned into FAB_ECORRUPT.  fn keeps its state in
 * *arg (not in locals of this frame), so the caller can clean up after a
 * jump. */
static int fi_guarded(int (*fn)(void *), void *arg, const char *what)
{
	if (!fi_guard_ready) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = fi_sigbus;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGBUS, &sa, NULL);
		fi_guard_ready = 1;
	}
	/* A thread that blocks SIGBUS would be killed by it (the kernel
	 * forces a blocked fault signal with its default action): let it in
	 * here.  sigsetjmp(.., 1) restores the caller's mask after a jump. */
	sigset_t bus, saved;
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, &saved);
	if (sigsetjmp(fi_jb, 1)) {
		pthread_sigmask(SIG_SETMASK, &saved, NULL);
		return fi_err(FAB_ECORRUPT, "%s: segment shrank while being read (SIGBUS)", what);
	}
	fi_armed = 1;
	int rc = fn(arg);
	fi_armed = 0;
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	return rc;
}

_Static_assert(FI_HIST_BUCKETS == FAB_HIST_BUCKETS, "histogram buckets");
_Static_assert(FI_OBJ_CHAN == FAB_OBJ_CHAN && FI_OBJ_TOPIC == FAB_OBJ_TOPIC, "object types");

static void fi_hist_copy(fi_hist *o, fab_hist *h)
{
	/* Relaxed counters (libfab wait.c); the count is derived from the
	 * buckets so that +Inf and _count agree in an exposition. */
	o->count = 0;
	for (int i = 0; i <= FI_HIST_BUCKETS; i++) {
		o->b[i] = load_relaxed(&h->b[i]);
		o->count += o->b[i];
	}
	o->sum_ns = load_relaxed(&h->sum_ns);
}

/* ---- names and segments ---------------------------------------------- */

bool fi_name_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (n >= FAB_NAME_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
					   (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return n > 0;
}

/* Copy a name field of shared memory (n bytes) into out[FI_NAME]; false
 * unless it is NUL-terminated inside the field and a valid name. */
static bool fi_copy_name(char *out, const char *field, size_t n)
{
	char tmp[64];
	if (n > sizeof tmp)
		n = sizeof tmp;
	memcpy(tmp, field, n);
	if (!memchr(tmp, 0, n) || !fi_name_ok(tmp))
		return false;
	memcpy(out, tmp, strlen(tmp) + 1);
	return true;
}

int fi_map(const char *path, size_t min_size, fi_seg *s)
{
	s->base = NULL;
	s->size = 0;
	int fd = shm_open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			return fi_err(FAB_ENOENT, "/dev/shm%s does not exist", path);
		struct stat sb;
		char full[320];
		snprintf(full, sizeof full, "/dev/shm%s", path);
		int st = e == EACCES ? stat(full, &sb) : 0;
		if (e == EACCES && st < 0 && errno == ENOENT)
			/* Removed since (a fabric destroyed while listed): gone,
			 * as above, not an error (found by review). */
			return fi_err(FAB_ENOENT, "/dev/shm%s does not exist", path);
		if (e == EACCES && st == 0)
			/* Whose it is and what its mode grants: whom to ask. */
			return fi_err(FAB_EPERM,
				      "%s: permission denied (owner uid %u, group %u, mode %04o)",
				      full, (unsigned)sb.st_uid, (unsigned)sb.st_gid,
				      (unsigned)(sb.st_mode & 07777));
		if (e == EACCES || e == ELOOP)
			return fi_err(FAB_EPERM, "%s: permission denied", full);
		return fi_err(FAB_ESYS, "shm_open %s: %s", path, strerror(e));
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		int e = errno;
		close(fd);
		return fi_err(FAB_ESYS, "fstat %s: %s", path, strerror(e));
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		return fi_err(FAB_EPERM, "/dev/shm%s is not a regular file", path);
	}
	if (sb.st_size < 0 || (uint64_t)sb.st_size < min_size) {
		close(fd);
		return fi_err(FAB_ECORRUPT, "/dev/shm%s is %lld bytes, smaller than its header",
			      path, (long long)sb.st_size);
	}
	void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd); /* the mapping keeps the object */
	if (p == MAP_FAILED)
		return fi_err(e == ENOMEM ? FAB_ENOMEM : FAB_ESYS, "mmap %s: %s", path,
			      strerror(e));
	s->base = p;
	s->size = (size_t)sb.st_size;
	s->dev = (uint64_t)sb.st_dev;
	s->ino = (uint64_t)sb.st_ino;
	return 0;
}

void fi_unmap(fi_seg *s)
{
	if (s->base)
		munmap(s->base, s->size);
	s->base = NULL;
	s->size = 0;
}

/* The version word, without waiting: 0 is "not initialised yet". */
static int fi_version(_Atomic uint32_t *word, const char *what, const char *name, uint32_t *v)
{
	/* Pairs with the creator's store_release of version: once seen, the
	 * header written before it is visible. */
	*v = load_acquire(word);
	if (*v == 0)
		return fi_err(FAB_ECORRUPT, "%s %s: not initialised (version 0)", what, name);
	if ((*v >> 16) != FAB_LAYOUT_MAJOR)
		return fi_err(FAB_EVERSION, "%s %s: layout %u.%u, fabctl reads %u.x", what, name,
			      *v >> 16, *v & 0xffff, FAB_LAYOUT_MAJOR);
	return 0;
}

/* ---- liveness -------------------------------------------------------- */

bool fi_pid_alive(uint32_t pid, uint64_t start)
{
	/* libfab's own rule (procfs.h), so that fabctl and recovery agree on
	 * who is dead. */
	return fab__pid_alive(pid, start);
}

/* ---- control segment ------------------------------------------------- */

static int fi_ctl_validate(const fi_seg *s, const char *fabric)
{
	fab_ctl_hdr *h = (fab_ctl_hdr *)s->base;
	uint32_t v;
	int rc = fi_version(&h->version, "fabric", fabric, &v);
	if (rc)
		return rc;
	if (h->magic != FAB_CTL_MAGIC)
		return fi_err(FAB_ECORRUPT, "fabric %s: bad magic", fabric);
	if ((v & 0xffff) < FAB_CTL_MINOR_MIN)
		return fi_err(FAB_EVERSION,
			      "fabric %s: layout %u.%u is older than %u.%u, the oldest fabctl reads",
			      fabric, v >> 16, v & 0xffff, FAB_LAYOUT_MAJOR, FAB_CTL_MINOR_MIN);
	if (h->hdr_size != sizeof(fab_ctl_hdr) || h->total_size != FAB_CTL_SIZE ||
	    h->total_size > s->size || h->max_procs != FAB_MAX_PROCS ||
	    h->max_chans != FAB_MAX_CHANS || h->max_ctxs != FAB_MAX_CTXS ||
	    h->procs_off != FAB_CTL_PROCS_OFF || h->chans_off != FAB_CTL_CHANS_OFF ||
	    h->ctxs_off != FAB_CTL_CTXS_OFF || h->lims_off != FAB_CTL_LIMS_OFF ||
	    h->max_lims != FAB_MAX_LIMS || h->stages_off != FAB_CTL_STAGES_OFF ||
	    h->lhists_off != FAB_CTL_LHISTS_OFF || h->max_stages != FAB_MAX_STAGES)
		return fi_err(FAB_ECORRUPT, "fabric %s: header sizes do not match the segment",
			      fabric);
	return 0;
}

typedef struct fi_open_arg {
	fi_fabric *f;
} fi_open_arg;

static int fi_open_read(void *p)
{
	fi_fabric *f = ((fi_open_arg *)p)->f;
	int rc = fi_ctl_validate(&f->ctl, f->name);
	if (rc)
		return rc;
	fab_ctl_hdr *h = (fab_ctl_hdr *)f->ctl.base;
	f->created_ns = h->created_ns;
	f->creator_uid = h->creator_uid;
	return 0;
}

int fi_open(const char *name, fi_fabric **out)
{
	*out = NULL;
	if (!name || !fi_name_ok(name))
		return fi_err(FAB_EINVAL, "bad fabric name '%s' (want [A-Za-z0-9_-]{1,48})",
			      name ? name : "");
	fi_fabric *f = calloc(1, sizeof *f);
	if (!f)
		return fi_err(FAB_ENOMEM, "out of memory");
	snprintf(f->name, sizeof f->name, "%s", name);
	char path[80];
	snprintf(path, sizeof path, "/fab.%s", name);
	int rc = fi_map(path, sizeof(fab_ctl_hdr), &f->ctl);
	if (rc == FAB_ENOENT)
		fi_err(rc, "no fabric %s (/dev/shm/fab.%s does not exist)", name, name);
	if (rc == 0) {
		fi_open_arg a = {f};
		rc = fi_guarded(fi_open_read, &a, path + 1);
	}
	if (rc) {
		fi_unmap(&f->ctl);
		free(f);
		return rc;
	}
	*out = f;
	return 0;
}

static void fi_snapshot_free(fi_fabric *f)
{
	for (uint32_t i = 0; i < f->nchans; i++)
		fi_chan_free(&f->chans[i]);
	free(f->chans);
	free(f->procs);
	free(f->stages);
	f->chans = NULL;
	f->procs = NULL;
	f->stages = NULL;
	f->nchans = f->nprocs = f->nstages = 0;
}

void fi_close(fi_fabric *f)
{
	if (!f)
		return;
	fi_snapshot_free(f);
	fi_unmap(&f->ctl);
	free(f);
}

/* Registry entries to read after the control segment (name and type). */
typedef struct fi_reg {
	uint32_t idx, type;
	char name[FI_NAME];
	bool bad;
} fi_reg;

typedef struct fi_ctl_arg {
	fi_fabric *f;
	fi_reg *reg;
	uint32_t nreg;
} fi_ctl_arg;

/* Read the tables of the control segment (under the guard). */
static int fi_ctl_read(void *p)
{
	fi_ctl_arg *a = p;
	fi_fabric *f = a->f;
	uint8_t *base = f->ctl.base;
	fab_proc_ent *pe = (fab_proc_ent *)(base + FAB_CTL_PROCS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_PROCS; i++) {
		/* Pairs with fab__proc_claim's store_release of LIVE: pid and
		 * start time written before it are visible. */
		uint64_t sg = load_acquire(&pe[i].sg);
		if (FAB_SG_STATE(sg) == FAB_PROC_FREE)
			continue;
		fi_proc *q = &f->procs[f->nprocs++];
		memset(q, 0, sizeof *q);
		q->idx = i;
		q->gen = FAB_SG_GEN(sg);
		q->state = FAB_SG_STATE(sg);
		q->pid = load_relaxed(&pe[i].pid);
		/* Mid-claim, the claim word names the claimer; `pid` may
		 * still be the previous owner's. */
		if (q->state == FAB_PROC_CLAIMED && FAB_SG_PID(sg))
			q->pid = FAB_SG_PID(sg);
		q->uid = pe[i].uid;
		q->start_time = load_relaxed(&pe[i].start_time);
		q->attached_ns = load_relaxed(&pe[i].attached_ns);
		q->calls = load_relaxed(&pe[i].calls);
		/* Pairs with the sleeper's store_release of wait: wait_ns,
		 * stored before it, belongs to this record. */
		q->wait = load_acquire(&pe[i].wait);
		q->wait_ns = load_relaxed(&pe[i].wait_ns);
		q->stage = load_relaxed(&pe[i].stage);
		q->replica = load_relaxed(&pe[i].replica);
	}
	fab_stage_ent *st = (fab_stage_ent *)(base + FAB_CTL_STAGES_OFF);
	for (uint32_t i = 0; i < FAB_MAX_STAGES; i++) {
		/* Pairs with fab_stage_open's store_release of state LIVE. */
		if (load_acquire(&st[i].state) != FAB_ENT_LIVE)
			continue;
		fi_stage *s = &f->stages[f->nstages];
		memset(s, 0, sizeof *s);
		s->idx = i;
		if (!fi_copy_name(s->name, st[i].name, sizeof st[i].name))
			snprintf(s->name, sizeof s->name, "?%u", i); /* reported as such */
		s->errors = load_relaxed(&st[i].errors);
		s->opens = load_relaxed(&st[i].opens);
		s->replicas_seen = load_relaxed(&st[i].replicas_seen);
		/* Relaxed: a figure to show; nothing is read through it. */
		s->restarting = load_relaxed(&st[i].restarting);
		f->nstages++;
	}
	fab_lim_ent *le = (fab_lim_ent *)(base + FAB_CTL_LIMS_OFF);
	fab_hist *lh = (fab_hist *)(base + FAB_CTL_LHISTS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_LIMS; i++) {
		f->lim_names[i][0] = 0;
		memset(&f->lim_wait[i], 0, sizeof f->lim_wait[i]);
		/* Pairs with the creator's store_release of LIVE (name first). */
		if (load_acquire(&le[i].state) != FAB_ENT_LIVE)
			continue;
		if (fi_copy_name(f->lim_names[i], le[i].name, sizeof le[i].name))
			fi_hist_copy(&f->lim_wait[i], &lh[i]);
		else
			snprintf(f->lim_names[i], sizeof f->lim_names[i], "?%u", i); /* reported as such */
	}
	fab_ctx_ent *ce = (fab_ctx_ent *)(base + FAB_CTL_CTXS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_CTXS; i++) {
		f->ctx_names[i][0] = 0;
		if (load_acquire(&ce[i].state) == FAB_ENT_LIVE)
			fi_copy_name(f->ctx_names[i], ce[i].name, sizeof ce[i].name);
	}
	fab_chan_ent *ents = (fab_chan_ent *)(base + FAB_CTL_CHANS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_CHANS; i++) {
		fab_chan_ent *e = &ents[i];
		/* Pairs with the creator's store_release of LIVE. */
		if (load_acquire(&e->state) != FAB_ENT_LIVE)
			continue;
		uint64_t gen = load_acquire(&e->gen);
		fi_reg *r = &a->reg[a->nreg];
		r->idx = i;
		r->bad = !fi_copy_name(r->name, e->name, sizeof e->name);
		r->type = e->type;
		/* Look again: an entry destroyed while we copied is gone, not
		 * corrupt. */
		fence_acquire();
		if (load_relaxed(&e->state) != FAB_ENT_LIVE || load_relaxed(&e->gen) != gen)
			continue;
		if (r->type != FAB_OBJ_CHAN && r->type != FAB_OBJ_TOPIC)
			r->bad = true;
		a->nreg++;
	}
	return 0;
}

/* A topic's blocked publishers: its space_waiters count, less the dead
 * processes whose wait record says they slept publishing on it.  Such a
 * process left the count one high (publishers have no entry to mark, as
 * subscribers do), and recovery takes it out when it frees the process's
 * entry (recover.c); until then we leave it out here.  Counting live
 * records instead would miss threads: a process has one record, and the
 * last thread to sleep overwrites it (found by review). */
static uint32_t fi_topic_publishers_asleep(const fi_fabric *f, const fi_chan *c)
{
	uint32_t dead = 0;
	for (uint32_t i = 0; i < f->nprocs; i++) {
		uint64_t w = f->procs[i].wait;
		/* A sleep that began before this topic was created was on an
		 * earlier object under the same registry index (as recovery). */
		if (f->procs[i].state == FAB_PROC_LIVE && !f->procs[i].live &&
		    FAB_WAIT_KIND(w) == FAB_WAIT_TOPIC && FAB_WAIT_OP(w) == FAB_WAIT_SEND &&
		    FAB_WAIT_IDX(w) == c->reg_idx &&
		    (!c->created_mono_ns || c->created_mono_ns <= f->procs[i].wait_ns))
			dead++;
	}
	return c->send_waiters > dead ? c->send_waiters - dead : 0;
}

/* A channel's attached handles and sleepers, without those of dead
 * processes: their attach words stay until recovery clears them (fabd
 * runs it on every death; with fabd itself killed, nobody may for a
 * while), and fabctl chan and /metrics showed them as receivers and
 * blocked receivers (found by an operator trial).  blocked already skips
 * them.  The dead ones stay in c->att, as before. */
static void fi_chan_drop_dead(const uint8_t *live_gen, fi_chan *c)
{
	/* A topic's len is the largest lag of its subscribers: of the live
	 * ones only (a killed subscriber's entry stays until a publisher or
	 * recovery prunes it, and made the topic look full; found by a user
	 * trial). */
	uint64_t lag = c->lag_untagged;
	for (uint32_t k = 0; k < c->natt; k++) {
		const fi_att *at = &c->att[k];
		if (at->proc < FAB_MAX_PROCS && live_gen[at->proc] == at->gen + 1) {
			if (at->lag > lag)
				lag = at->lag;
			continue;
		}
		if ((at->role & FAB_SEND) && c->senders)
			c->senders--;
		if ((at->role & FAB_RECV) && c->receivers)
			c->receivers--;
		if ((at->sleep & 1u) && c->send_waiters)
			c->send_waiters--;
		if ((at->sleep & 2u) && c->recv_waiters)
			c->recv_waiters--;
	}
	if (c->type == FAB_OBJ_TOPIC)
		c->len = lag > c->capacity ? c->capacity : lag;
}

int fi_snapshot(fi_fabric *f)
{
	fi_snapshot_free(f);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	f->mono_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	clock_gettime(CLOCK_REALTIME, &ts);
	f->real_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	f->procs = calloc(FAB_MAX_PROCS, sizeof *f->procs);
	f->stages = calloc(FAB_MAX_STAGES, sizeof *f->stages);
	fi_ctl_arg a = {f, calloc(FAB_MAX_CHANS, sizeof(fi_reg)), 0};
	if (!f->procs || !f->stages || !a.reg) {
		free(a.reg);
		return fi_err(FAB_ENOMEM, "out of memory");
	}
	int rc = fi_guarded(fi_ctl_read, &a, f->name);
	if (rc) {
		free(a.reg);
		return rc;
	}
	/* live_gen[idx]: 1 + the low 5 bits of the claim generation of the
	 * live process at table index idx, 0 when none (for attach words'
	 * owner tags, fi_chan_drop_dead). */
	uint8_t live_gen[FAB_MAX_PROCS];
	memset(live_gen, 0, sizeof live_gen);
	int lfd = -1; /* the control segment, for liveness locks (opened on need) */
	for (uint32_t i = 0; i < f->nprocs; i++) {
		fi_proc *q = &f->procs[i];
		q->live = q->state == FAB_PROC_LIVE && fi_pid_alive(q->pid, q->start_time);
		if (q->state == FAB_PROC_LIVE && !q->live && q->idx < FAB_MAX_PROCS) {
			/* Dead by its pid, unless its owner's write lock is on
			 * its byte: a live process of another PID namespace
			 * (libfab's rule, proc.c).  The file opened once, and
			 * only if it is still the one mapped (a fabric made
			 * again under the name has other locks; review); -2
			 * when it cannot be, then the pid alone decides. */
			if (lfd == -1) {
				char path[FI_NAME + 8];
				struct stat sb;
				snprintf(path, sizeof path, "/fab.%s", f->name);
				lfd = shm_open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
				if (lfd >= 0 && (fstat(lfd, &sb) < 0 ||
						 (uint64_t)sb.st_dev != f->ctl.dev ||
						 (uint64_t)sb.st_ino != f->ctl.ino)) {
					close(lfd);
					lfd = -2;
				}
				if (lfd < 0)
					lfd = -2;
			}
			/* As a read lock: only the owner's write lock answers,
			 * not a read lock a reader may hold. */
			struct flock fl = {.l_type = F_RDLCK,
					   .l_whence = SEEK_SET,
					   .l_start = (off_t)(FAB_LIVE_LOCK_OFF + q->idx),
					   .l_len = 1};
			q->live = lfd >= 0 && fcntl(lfd, F_OFD_GETLK, &fl) == 0 &&
				  fl.l_type == F_WRLCK;
			q->foreign = q->live;
		}
		if (q->live && q->idx < FAB_MAX_PROCS)
			live_gen[q->idx] = (uint8_t)((q->gen & 31u) + 1);
		if (q->stage > 0 && q->stage <= FAB_MAX_STAGES)
			for (uint32_t s = 0; s < f->nstages; s++)
				if (f->stages[s].idx == q->stage - 1)
					snprintf(q->stage_name, sizeof q->stage_name, "%s",
						 f->stages[s].name);
	}
	if (lfd >= 0)
		close(lfd);
	f->chans = calloc(a.nreg ? a.nreg : 1, sizeof *f->chans);
	if (!f->chans) {
		free(a.reg);
		return fi_err(FAB_ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < a.nreg; i++) {
		fi_chan *c = &f->chans[f->nchans++];
		memset(c, 0, sizeof *c);
		c->reg_idx = a.reg[i].idx;
		c->type = a.reg[i].type;
		if (a.reg[i].bad) {
			snprintf(c->name, sizeof c->name, "?%u", a.reg[i].idx);
			c->err = FAB_ECORRUPT;
			snprintf(c->errmsg, sizeof c->errmsg,
				 "fabric %s: registry entry %u: bad name or type", f->name,
				 a.reg[i].idx);
			continue;
		}
		fi_chan_read(f->name, a.reg[i].name, a.reg[i].type, c);
		c->reg_idx = a.reg[i].idx;
		if (c->type == FAB_OBJ_TOPIC && !c->err)
			c->send_waiters = fi_topic_publishers_asleep(f, c);
		if (!c->err)
			fi_chan_drop_dead(live_gen, c);
	}
	free(a.reg);
	return 0;
}

const fi_chan *fi_chan_by_reg(const fi_fabric *f, uint32_t reg_idx)
{
	for (uint32_t i = 0; i < f->nchans; i++)
		if (f->chans[i].reg_idx == reg_idx)
			return &f->chans[i];
	return NULL;
}

const fi_proc *fi_proc_by_idx(const fi_fabric *f, uint32_t idx)
{
	for (uint32_t i = 0; i < f->nprocs; i++)
		if (f->procs[i].idx == idx)
			return &f->procs[i];
	return NULL;
}

/* ---- channel segments ------------------------------------------------ */

typedef struct fi_geom {
	fab_geom l;                            /* the layout (geom.h) */
	uint32_t payload_off;                  /* where a message starts in its slot */
	uint32_t msg_size, capacity, delivery; /* the validated copies */
} fi_geom;

/* Channel geometry: libfab's own (geom.h), plus the payload offset of an
 * mpmc slot (its header size depends on the delivery). */
static bool fi_chan_geometry(uint32_t kind, uint32_t delivery, uint32_t capacity, uint32_t msg_size,
			     fi_geom *g)
{
	if (fab_chan_geometry(kind, delivery, capacity, msg_size, &g->l) < 0)
		return false;
	g->payload_off = g->l.payload_off;
	if (g->l.ring == FAB_RING_MPMC)
		g->payload_off = delivery == FAB_AT_LEAST_ONCE ? (uint32_t)sizeof(fab_mslot_alo)
							       : (uint32_t)sizeof(fab_mslot);
	return true;
}

/* Validate a channel header against the mapped size; fills g. */
static int fi_chan_validate(const fi_seg *s, const char *name, fi_geom *g)
{
	fab_chan_hdr *h = (fab_chan_hdr *)s->base;
	uint32_t v;
	int rc = fi_version(&h->version, "channel", name, &v);
	if (rc)
		return rc;
	if (h->magic != FAB_CHAN_MAGIC)
		return fi_err(FAB_ECORRUPT, "channel %s: bad magic", name);
	/* As libfab: a channel header of another minor has another size
	 * (layout 1.3 added attach_hi), so say so rather than "do not match". */
	if ((v & 0xffff) != FAB_LAYOUT_MINOR)
		return fi_err(FAB_EVERSION, "channel %s: layout %u.%u, fabctl reads %u.%u", name,
			      v >> 16, v & 0xffff, FAB_LAYOUT_MAJOR, FAB_LAYOUT_MINOR);
	/* Copy the immutable line once: a scribbler cannot move our bounds
	 * between the check and the use. */
	uint32_t kind = h->kind, cap = h->capacity, msz = h->msg_size, dlv = h->delivery;
	uint32_t mif = h->max_inflight, mdl = h->max_deliveries;
	if (kind != FAB_SPSC && kind != FAB_MPMC)
		return fi_err(FAB_ECORRUPT, "channel %s: bad kind %u", name, kind);
	if (cap > FAB_CAPACITY_MAX)
		return fi_err(FAB_ECORRUPT, "channel %s: absurd capacity %u", name, cap);
	if (msz > FAB_MSG_SIZE_MAX)
		return fi_err(FAB_ECORRUPT, "channel %s: absurd msg_size %u", name, msz);
	if ((dlv != FAB_AT_MOST_ONCE && dlv != FAB_AT_LEAST_ONCE) ||
	    (dlv == FAB_AT_LEAST_ONCE &&
	     (mif == 0 || mif > FI_INFLIGHT_MAX || mdl == 0 || mdl > FI_DELIVERIES_MAX)))
		return fi_err(FAB_ECORRUPT, "channel %s: bad delivery parameters", name);
	if (!fi_chan_geometry(kind, dlv, cap, msz, g) || h->hdr_size != sizeof(fab_chan_hdr) ||
	    h->ring != g->l.ring || h->nslots != g->l.nslots || h->slot_size != g->l.slot_size ||
	    h->attach_off != g->l.attach_off || h->ents_off != g->l.ents_off ||
	    h->slots_off != g->l.slots_off || h->total_size != g->l.total ||
	    h->attach_max != FAB_ATTACH_MAX || h->producers == 0 ||
	    h->producers > FAB_PRODUCERS_MAX)
		return fi_err(FAB_ECORRUPT, "channel %s: header offsets or sizes do not match",
			      name);
	if (g->l.total > s->size)
		return fi_err(FAB_ECORRUPT, "channel %s: segment is %zu bytes, header says %llu",
			      name, s->size, (unsigned long long)g->l.total);
	g->msg_size = msz;
	g->capacity = cap;
	g->delivery = dlv;
	return 0;
}

/* Positions in [hd, t) where senders passed a held slot (layout 1.4): held,
 * being given back, or ended since (a word of the next lap); given_back:
 * also a passed lease given back there (FULL with returns), a message
 * again.  As fab__mpmc_passed_ahead; at most one lap of slot words. */
static uint64_t fi_passed_ahead(fab_chan_hdr *h, const fi_geom *g, uint64_t hd, uint64_t t,
				bool given_back)
{
	uint8_t *slots = (uint8_t *)h + g->l.slots_off;
	uint64_t ahead = 0;
	int64_t span = (int64_t)(t - hd);
	if (span > (int64_t)g->l.nslots)
		span = g->l.nslots;
	for (uint64_t q = hd; (int64_t)(q - hd) < span; q++) {
		fab_mslot *sl = (fab_mslot *)(slots + (size_t)(q & (g->l.nslots - 1)) * g->l.slot_size);
		ahead += (uint64_t)fab_sw_is_pass(load_relaxed(&sl->state), q, g->l.nslots,
						  sl->returns, g->delivery == FAB_AT_LEAST_ONCE,
						  given_back);
	}
	return ahead;
}

/* Messages given back and waiting behind head (at-least-once): a scan of
 * at most one lap of slot words. */
static uint64_t fi_returned_now(fab_chan_hdr *h, const fi_geom *g)
{
	uint8_t *slots = (uint8_t *)h + g->l.slots_off;
	uint64_t hd = load_acquire(&h->head), n = 0;
	uint64_t lo = load_acquire(&h->redo_low);
	if ((int64_t)(hd - lo) > (int64_t)g->l.nslots || (int64_t)(hd - lo) < 0)
		lo = hd - g->l.nslots;
	for (uint64_t q = lo; q != hd; q++) {
		fab_mslot *s = (fab_mslot *)(slots + (size_t)(q & (g->l.nslots - 1)) * g->l.slot_size);
		uint64_t w = load_acquire(&s->state);
		if (FAB_SW_SAMEPOS(w, q) &&
		    (FAB_SW_STATE(w) == FAB_SLOT_FULL || FAB_SW_STATE(w) == FAB_SLOT_RETURNING))
			n++;
	}
	return n;
}

typedef struct fi_chan_arg {
	const fi_seg *s;
	const char *name;
	fi_chan *c;
	uint32_t *hold_at; /* owner tag (idx << 5 | gen) -> index in c->holds + 1;
			    * freed by the caller of the guarded read */
} fi_chan_arg;

static int fi_chan_read_guarded(void *p)
{
	fi_chan_arg *a = p;
	fi_chan *c = a->c;
	fi_geom g;
	int rc = fi_chan_validate(a->s, a->name, &g);
	if (rc)
		return rc;
	fab_chan_hdr *h = (fab_chan_hdr *)a->s->base;
	c->kind = h->kind;
	c->ring = g.l.ring;
	c->delivery = g.delivery;
	c->capacity = g.capacity;
	c->msg_size = g.msg_size;
	c->producers = h->producers;
	c->closes = load_relaxed(&h->closes);
	c->closed = load_relaxed(&h->closed) != 0;
	/* send_waiters / recv_waiters: counted from the sleep marks in the
	 * attach table below, as fab_chan_stats does (the header's counts
	 * can be one high after a kill). */
	c->send_waiters = c->recv_waiters = 0;
	/* Depth as fab__chan_len_raw: clamped, never trusted. */
	uint64_t t = load_acquire(&h->tail), hd = load_acquire(&h->head);
	int64_t d = (int64_t)(t - hd);
	if (d < 0)
		d = 0;
	if (g.l.ring == FAB_RING_MPMC && d > 0) {
		/* Not messages: the positions senders passed held slots at
		 * (fab_chan_len; a user trial saw 16/16 with 4 queued). */
		uint64_t pa = fi_passed_ahead(h, &g, hd, t, false);
		d = pa < (uint64_t)d ? d - (int64_t)pa : 0;
	}
	uint64_t back = c->delivery == FAB_AT_LEAST_ONCE ? fi_returned_now(h, &g) : 0;
	d += (int64_t)back;
	if (d > (int64_t)c->capacity)
		d = c->capacity;
	c->len = (uint64_t)d;
	if (c->capacity == 0) {
		c->can_send = c->can_recv = false; /* a rendezvous: never by the ring alone */
	} else if (g.l.ring == FAB_RING_SPSC) {
		c->can_send = c->len < c->capacity;
		c->can_recv = c->len > 0;
	} else {
		/* As fab__mpmc_take and fab__mpmc_claim walk: past positions
		 * already taken or skipped (a lagging head hint, a dead
		 * producer's SKIP) and already claimed (a lagging tail hint),
		 * each walk bounded by one lap (found by review: a SKIP at head
		 * with a message behind it read as "nothing to take"). */
		uint8_t *slots = (uint8_t *)h + g.l.slots_off;
		uint64_t mask = g.l.nslots - 1, n = g.l.nslots;
#define FI_SW(pos) load_acquire(&((fab_mslot *)(slots + (size_t)((pos) & mask) * g.l.slot_size))->state)
		bool full_at = false;
		uint64_t q = hd;
		for (uint64_t k = 0; k < n; k++, q++) {
			uint64_t w = FI_SW(q);
			uint32_t st = FAB_SW_STATE(w);
			/* A lease given back where a producer had passed it
			 * is left behind head (fab__mpmc_take): counted in
			 * `back`, not here. */
			if (FAB_SW_SAMEPOS(w, q) && st == FAB_SLOT_FULL &&
			    (c->delivery != FAB_AT_LEAST_ONCE ||
			     ((fab_mslot *)(slots + (size_t)(q & mask) * g.l.slot_size))->returns == 0)) {
				full_at = true;
				break;
			}
			bool passed = (FAB_SW_SAMEPOS(w, q) &&
				       (st == FAB_SLOT_READING || st == FAB_SLOT_SKIP ||
					st == FAB_SLOT_HELD || st == FAB_SLOT_RETURNING ||
					st == FAB_SLOT_FULL)) ||
				      FAB_SW_SAMEPOS(w, q + n);
			if (!passed)
				break;
		}
		uint64_t eh = q; /* the first position not yet taken */
		/* A given-back message waiting (at-least-once) can be taken too. */
		c->can_recv = full_at || back > 0;
		uint64_t et = t;
		for (uint64_t k = 0; k < n; k++, et++) {
			uint64_t w = FI_SW(et);
			if (w == FAB_SW_MAKE(et, FAB_SLOT_FREE, 0))
				break; /* claimable */
			/* Claimed, passed already, or a held slot a producer
			 * passes (fab__mpmc_claim); anything else of the lap
			 * before (a copy in progress, a lease being given
			 * back or waiting for redelivery) makes it wait. */
			if (!(FAB_SW_SAMEPOS(w, et) || FAB_SW_SAMEPOS(w, et + n) ||
			      (FAB_SW_SAMEPOS(w, et - n) && FAB_SW_STATE(w) == FAB_SLOT_HELD)))
				break;
		}
		c->can_send = (int64_t)(et - eh) < (int64_t)c->capacity &&
			      FI_SW(et) == FAB_SW_MAKE(et, FAB_SLOT_FREE, 0);
		/* Held messages (acquired or leased): an operator's "why is
		 * the queue short while a sender waits" (operator trial). */
		c->held = 0;
		for (uint64_t k = 0; k < n; k++)
			c->held += FAB_SW_STATE(FI_SW(k)) == FAB_SLOT_HELD;
		/* Whose (fabctl ps): counts by owner tag, one entry per
		 * distinct tag however many there are (review: a list of 64
		 * left holders out).  Kept in c, not in a local, so that a
		 * SIGBUS jump out of here leaks nothing (fi_chan_free). */
		uint32_t room = (uint32_t)(c->held < n ? c->held : n);
		if (room && (c->holds = calloc(room, sizeof *c->holds)) != NULL &&
		    (a->hold_at = calloc(1024u * 32u, sizeof *a->hold_at)) != NULL) {
			for (uint64_t k = 0; k < n; k++) {
				uint64_t w = FI_SW(k);
				if (FAB_SW_STATE(w) != FAB_SLOT_HELD)
					continue;
				uint32_t tg = FAB_SW_TAG(w);
				uint32_t key = FAB_TAG_IDX(tg) << 5 | FAB_TAG_GEN(tg);
				if (!a->hold_at[key]) {
					if (c->nholds == room)
						continue; /* more held than counted a moment ago */
					c->holds[c->nholds++] =
					    (fi_hold){FAB_TAG_IDX(tg), FAB_TAG_GEN(tg), 0};
					a->hold_at[key] = c->nholds;
				}
				c->holds[a->hold_at[key] - 1].n++;
			}
		}
#undef FI_SW
	}
	uint64_t skipped = load_relaxed(&h->skipped);
	uint64_t tl = t - h->start_pos, hdd = hd - h->start_pos;
	c->sent = tl - (skipped <= tl ? skipped : tl);
	if (g.l.ring == FAB_RING_MPMC) {
		/* As fab_chan_stats: a held slot's pass that head has not
		 * reached is in `skipped` but not behind head (layout 1.4). */
		uint64_t ahead = fi_passed_ahead(h, &g, hd, t, true);
		skipped = ahead <= skipped ? skipped - ahead : 0;
	}
	c->received = hdd - (skipped <= hdd ? skipped : hdd);
	if (c->capacity == 0)
		c->sent = c->received;
	if (c->delivery == FAB_AT_LEAST_ONCE) {
		c->redelivered = load_relaxed(&h->redelivered);
		c->dead_lettered = load_relaxed(&h->dead_lettered);
		c->dead_dropped = load_relaxed(&h->dead_dropped);
	}
	fi_hist_copy(&c->send_wait, &h->send_wait);
	fi_hist_copy(&c->recv_wait, &h->recv_wait);
	fi_hist_copy(&c->latency, &h->latency);
	_Atomic uint64_t *att = (_Atomic uint64_t *)(a->s->base + g.l.attach_off);
	for (uint32_t i = 0; i < FAB_ATTACH_MAX; i++) {
		uint64_t w = load_relaxed(&att[i]);
		uint32_t tag = FAB_ATT_TAG(w);
		if (w == 0 || !(tag & FAB_TAG_VALID))
			continue;
		uint32_t role = FAB_ATT_ROLE(w);
		if (role & FAB_SEND)
			c->senders++;
		if (role & FAB_RECV)
			c->receivers++;
		if (w & FAB_ATT_SLEEP_SEND)
			c->send_waiters++;
		if (w & FAB_ATT_SLEEP_RECV)
			c->recv_waiters++;
		c->att[c->natt].proc = FAB_TAG_IDX(tag);
		c->att[c->natt].gen = FAB_TAG_GEN(tag);
		c->att[c->natt].role = role;
		c->att[c->natt].sleep = ((w & FAB_ATT_SLEEP_SEND) ? 1u : 0u) |
					((w & FAB_ATT_SLEEP_RECV) ? 2u : 0u);
		c->natt++;
	}
	return 0;
}

typedef struct fi_topic_arg {
	const fi_seg *s;
	const char *name;
	fi_chan *c;
} fi_topic_arg;

/* Check a topic segment's header against its parameters and the file (as
 * fab__topic_map does); its capacity, msg_size, slot count and slot size.
 * Called under fi_guarded. */
static int fi_topic_validate(const fi_seg *s, const char *name, uint32_t *capp, uint32_t *mszp,
			     uint32_t *nslots, uint32_t *slotp)
{
	fab_topic_hdr *h = (fab_topic_hdr *)s->base;
	uint32_t v;
	int rc = fi_version(&h->version, "topic", name, &v);
	if (rc)
		return rc;
	if (h->magic != FAB_TOPIC_MAGIC)
		return fi_err(FAB_ECORRUPT, "topic %s: bad magic", name);
	uint32_t cap = h->capacity, msz = h->msg_size;
	if (cap == 0 || cap > FAB_CAPACITY_MAX)
		return fi_err(FAB_ECORRUPT, "topic %s: absurd capacity %u", name, cap);
	if (msz > FAB_MSG_SIZE_MAX)
		return fi_err(FAB_ECORRUPT, "topic %s: absurd msg_size %u", name, msz);
	uint32_t n = fab_pow2(cap);
	uint32_t slot = (uint32_t)((sizeof(fab_mslot) + (uint64_t)msz + 63u) & ~63ULL);
	uint64_t total = ((FAB_TOPIC_SLOTS_OFF + (uint64_t)n * slot) + 4095u) & ~4095ULL;
	if (total > (1ULL << 32) || h->hdr_size != sizeof(fab_topic_hdr) || h->nslots != n ||
	    h->slot_size != slot || h->subs_off != FAB_TOPIC_SUBS_OFF ||
	    h->slots_off != FAB_TOPIC_SLOTS_OFF || h->total_size != total ||
	    h->sub_max != FAB_TOPIC_SUBS_MAX)
		return fi_err(FAB_ECORRUPT, "topic %s: header offsets or sizes do not match",
			      name);
	if (total > s->size)
		return fi_err(FAB_ECORRUPT, "topic %s: segment is %zu bytes, header says %llu",
			      name, s->size, (unsigned long long)total);
	*capp = cap;
	*mszp = msz;
	*nslots = n;
	*slotp = slot;
	return 0;
}

static int fi_topic_read_guarded(void *p)
{
	fi_topic_arg *a = p;
	fi_chan *c = a->c;
	fab_topic_hdr *h = (fab_topic_hdr *)a->s->base;
	uint32_t cap, msz, n, slot;
	int rc = fi_topic_validate(a->s, a->name, &cap, &msz, &n, &slot);
	if (rc)
		return rc;
	c->kind = FAB_MPMC;
	c->capacity = cap;
	c->msg_size = msz;
	c->delivery = FAB_AT_MOST_ONCE;
	c->producers = 0;
	c->sent = load_relaxed(&h->published);
	c->dropped = load_relaxed(&h->dropped_total);
	c->created_mono_ns = h->created_mono_ns;
	/* Blocked subscribers: the sleep marks of the ACTIVE entries (below),
	 * not data_waiters, which a subscriber killed between counting and
	 * marking leaves one high.  Publishers have no entry to mark: this is
	 * their count, from which fi_snapshot takes the dead publishers that
	 * recovery has not yet taken out (fi_topic_publishers_asleep). */
	c->recv_waiters = 0;
	c->send_waiters = load_relaxed(&h->space_waiters);
	uint64_t tail = load_acquire(&h->tail), lag = 0, got = 0;
	fab_topic_sub *subs = (fab_topic_sub *)(a->s->base + FAB_TOPIC_SUBS_OFF);
	for (uint32_t i = 0; i < FAB_TOPIC_SUBS_MAX; i++) {
		uint64_t sw = load_acquire(&subs[i].sw);
		if (FAB_TSUB_STATE(sw) != FAB_TSUB_ACTIVE)
			continue;
		c->receivers++;
		bool asleep = load_relaxed(&subs[i].sleeping) == sw;
		if (asleep)
			c->recv_waiters++;
		got += load_relaxed(&subs[i].delivered);
		uint64_t cur = load_acquire(&subs[i].cursor);
		uint64_t l = (int64_t)(tail - cur) > 0 ? tail - cur : 0;
		if (l > lag)
			lag = l;
		uint32_t tag = FAB_TSUB_TAG(sw);
		if (tag & FAB_TAG_VALID) {
			/* fi_snapshot takes a dead subscriber's entry out of
			 * the counts and of len (fi_chan_drop_dead). */
			c->att[c->natt].proc = FAB_TAG_IDX(tag);
			c->att[c->natt].gen = FAB_TAG_GEN(tag);
			c->att[c->natt].role = FAB_RECV;
			c->att[c->natt].sleep = asleep ? 2u : 0u;
			c->att[c->natt].lag = l;
			c->natt++;
		} else if (l > c->lag_untagged) {
			c->lag_untagged = l;
		}
	}
	c->received = got;
	c->len = lag > cap ? cap : lag;
	return 0;
}

void fi_chan_free(fi_chan *c)
{
	free(c->att);
	c->att = NULL;
	c->natt = 0;
	free(c->holds);
	c->holds = NULL;
	c->nholds = 0;
}

int fi_chan_read_seg(const fi_seg *s, const char *name, uint32_t type, fi_chan *c)
{
	uint32_t reg = c->reg_idx;
	fi_chan_free(c);
	memset(c, 0, sizeof *c);
	c->reg_idx = reg;
	c->type = type;
	snprintf(c->name, sizeof c->name, "%s", name);
	c->att = calloc(FAB_ATTACH_MAX, sizeof *c->att);
	if (!c->att) {
		c->err = fi_err(FAB_ENOMEM, "out of memory");
		snprintf(c->errmsg, sizeof c->errmsg, "%s", fi_errbuf);
		return c->err;
	}
	int rc;
	if (type == FAB_OBJ_TOPIC) {
		fi_topic_arg a = {s, name, c};
		rc = s->size < FAB_TOPIC_SUBS_OFF
			 ? fi_err(FAB_ECORRUPT, "topic %s: segment smaller than its header", name)
			 : fi_guarded(fi_topic_read_guarded, &a, name);
	} else {
		fi_chan_arg a = {s, name, c, NULL};
		rc = s->size < FI_HDR_BYTES
			 ? fi_err(FAB_ECORRUPT, "channel %s: segment smaller than its header", name)
			 : fi_guarded(fi_chan_read_guarded, &a, name);
		free(a.hold_at);
	}
	if (rc) {
		c->err = rc;
		c->natt = 0;
		snprintf(c->errmsg, sizeof c->errmsg, "%s", fi_errbuf);
	}
	return rc;
}

int fi_chan_read(const char *fabric, const char *name, uint32_t type, fi_chan *c)
{
	char path[128];
	snprintf(path, sizeof path, "/fab.%s.%s", fabric, name);
	fi_seg s;
	int rc = fi_map(path, FI_HDR_BYTES, &s);
	if (rc) {
		uint32_t reg = c->reg_idx;
		fi_chan_free(c);
		memset(c, 0, sizeof *c);
		c->reg_idx = reg;
		c->type = type;
		snprintf(c->name, sizeof c->name, "%s", name);
		c->err = rc;
		snprintf(c->errmsg, sizeof c->errmsg, "%s", fi_errbuf);
		return rc;
	}
	rc = fi_chan_read_seg(&s, name, type, c);
	fi_unmap(&s);
	return rc;
}

/* ---- peek ------------------------------------------------------------ */

typedef struct fi_peek_arg {
	const fi_seg *s;
	const char *name;
	unsigned n;
	fi_msg *msgs; /* n entries, zeroed; data pointers kept for cleanup */
	unsigned count;
	uint32_t type; /* FAB_OBJ_CHAN, FAB_OBJ_TOPIC, FI_OBJ_UNKNOWN (fi_peek_any) */
} fi_peek_arg;

/* Copy len bytes of a slot; the copy is kept only if the slot still holds
 * the same message afterwards (checked by the caller). */
static int fi_peek_take(fi_peek_arg *a, uint64_t pos, const uint8_t *src, uint32_t len,
			uint32_t returns)
{
	fi_msg *m = &a->msgs[a->count];
	free(m->data);
	m->data = malloc(len ? len : 1);
	if (!m->data)
		return fi_err(FAB_ENOMEM, "out of memory");
	memcpy(m->data, src, len);
	m->pos = pos;
	m->len = len;
	m->returns = returns;
	return 0;
}

static int fi_peek_spsc(fi_peek_arg *a, fab_chan_hdr *h, const fi_geom *g)
{
	uint8_t *base = a->s->base;
	uint64_t hd = load_acquire(&h->head);
	/* The commit words are the truth (tail may be published in batches):
	 * walk from head while each word commits its own position, at most
	 * one lap. */
	for (uint64_t pos = hd; pos - hd < g->l.nslots && a->count < a->n; pos++) {
		size_t idx = (size_t)(pos & (g->l.nslots - 1));
		_Atomic uint64_t *wp =
		    (_Atomic uint64_t *)(base + g->l.ents_off + idx * (size_t)g->l.ent_stride);
		/* Pairs with fab__spsc_publish's store_release of the word:
		 * the payload written before it is visible. */
		uint64_t e = load_acquire(wp);
		if (FAB_SE_MARK(e) != FAB_SE_MARK(FAB_SE_FULL(pos, 0)))
			break;
		uint32_t len = FAB_SE_LEN(e);
		if (len > g->msg_size)
			return fi_err(FAB_ECORRUPT,
				      "channel %s: message at %llu is %u bytes > msg_size", a->name,
				      (unsigned long long)pos, len);
		int rc = fi_peek_take(
		    a, pos, base + g->l.slots_off + idx * (size_t)g->l.slot_size + g->payload_off, len,
		    0);
		if (rc)
			return rc;
		fence_acquire();
		/* Consumed (and maybe overwritten) while we copied: stop. */
		if (load_relaxed(wp) != e || load_acquire(&h->head) > pos)
			break;
		a->count++;
	}
	return 0;
}

static int fi_peek_mpmc(fi_peek_arg *a, fab_chan_hdr *h, const fi_geom *g)
{
	uint8_t *slots = a->s->base + g->l.slots_off;
	uint64_t hd = load_acquire(&h->head), tl = load_acquire(&h->tail);
	uint64_t lo = hd;
	if (g->delivery == FAB_AT_LEAST_ONCE) {
		/* Given-back messages wait behind head for redelivery. */
		lo = load_acquire(&h->redo_low);
		if ((int64_t)(hd - lo) > (int64_t)g->l.nslots || (int64_t)(hd - lo) < 0)
			lo = hd;
	}
	if ((int64_t)(tl - lo) < 0)
		tl = lo;
	if (tl - lo > g->l.nslots)
		tl = lo + g->l.nslots;
	for (uint64_t pos = lo; pos != tl && a->count < a->n; pos++) {
		fab_mslot *s =
		    (fab_mslot *)(slots + (size_t)(pos & (g->l.nslots - 1)) * g->l.slot_size);
		/* Pairs with the producer's store_release of FULL. */
		uint64_t w = load_acquire(&s->state);
		if (!FAB_SW_SAMEPOS(w, pos) || FAB_SW_STATE(w) != FAB_SLOT_FULL)
			continue; /* being written, being read, leased or skipped */
		uint32_t len = s->len, ret = s->returns;
		if (len > g->msg_size)
			return fi_err(FAB_ECORRUPT,
				      "channel %s: message at %llu is %u bytes > msg_size", a->name,
				      (unsigned long long)pos, len);
		int rc = fi_peek_take(a, pos, (uint8_t *)s + g->payload_off, len, ret);
		if (rc)
			return rc;
		fence_acquire();
		if (load_relaxed(&s->state) != w)
			continue; /* taken while we copied */
		a->count++;
	}
	return 0;
}

/*
 * A topic keeps every message in its slot until a publisher claims the
 * position a lap later, and has no single head (each subscriber has its
 * cursor): a peek shows the newest messages still in the ring, oldest
 * first, from the tail hint back at most one lap.  Positions being written,
 * skipped or already overwritten are left out; a slot claimed for the next
 * lap while we copied (the seqlock check subscribers use) is dropped.
 */
static int fi_peek_topic(void *p)
{
	fi_peek_arg *a = p;
	uint32_t cap, msz, n, slot;
	int rc = fi_topic_validate(a->s, a->name, &cap, &msz, &n, &slot);
	if (rc)
		return rc;
	(void)cap;
	fab_topic_hdr *h = (fab_topic_hdr *)a->s->base;
	uint8_t *slots = a->s->base + FAB_TOPIC_SLOTS_OFF;
	/* Acquire the hint: the slots it led us to are read after it. */
	uint64_t tl = load_acquire(&h->tail);
	for (uint64_t k = 1; k <= n && a->count < a->n && k <= tl; k++) {
		uint64_t pos = tl - k;
		fab_mslot *sl = (fab_mslot *)(slots + (size_t)(pos & (n - 1)) * slot);
		/* Pairs with the publisher's store_release of FULL. */
		uint64_t w = load_acquire(&sl->state);
		if (!FAB_SW_SAMEPOS(w, pos)) {
			if (FAB_SW_SEQ(w) > (pos & FAB_SEQ_MASK))
				break; /* lapped by a newer position: nothing older is left */
			continue;   /* never used, or not yet written this lap */
		}
		if (FAB_SW_STATE(w) != FAB_SLOT_FULL)
			continue;
		uint32_t len = sl->len;
		if (len > msz)
			return fi_err(FAB_ECORRUPT, "topic %s: message at %llu is %u bytes > msg_size",
				      a->name, (unsigned long long)pos, len);
		if ((rc = fi_peek_take(a, pos, (uint8_t *)sl + sizeof(fab_mslot), len, 0)))
			return rc;
		fence_acquire();
		if (load_relaxed(&sl->state) != w)
			break; /* claimed for the next lap while we copied */
		a->count++;
	}
	/* Newest first so far: oldest first, as for a channel. */
	for (unsigned i = 0, j = a->count ? a->count - 1 : 0; i < j; i++, j--) {
		fi_msg t = a->msgs[i];
		a->msgs[i] = a->msgs[j];
		a->msgs[j] = t;
	}
	return 0;
}

static int fi_peek_guarded(void *p)
{
	fi_peek_arg *a = p;
	fi_geom g;
	int rc = fi_chan_validate(a->s, a->name, &g);
	if (rc)
		return rc;
	fab_chan_hdr *h = (fab_chan_hdr *)a->s->base;
	if (g.l.ring == FAB_RING_MPMC)
		return fi_peek_mpmc(a, h, &g);
	return fi_peek_spsc(a, h, &g);
}

/* Peek through the reader of the segment's kind: `type` from the registry
 * (FAB_OBJ_CHAN, FAB_OBJ_TOPIC), or FI_OBJ_UNKNOWN, then the magic says.
 * Under the guard (the magic is read from the mapping).  The validators
 * check the version before the magic, so a zeroed segment is "not
 * initialised" however it is reached (review). */
static int fi_peek_any(void *p)
{
	fi_peek_arg *a = p;
	uint32_t type = a->type;
	if (type == FI_OBJ_UNKNOWN) {
		uint64_t magic = *(const uint64_t *)a->s->base;
		if (magic == FAB_TOPIC_MAGIC)
			type = FAB_OBJ_TOPIC;
		else if (magic == FAB_CHAN_MAGIC)
			type = FAB_OBJ_CHAN;
		else if (load_acquire(&((fab_chan_hdr *)a->s->base)->version) == 0)
			type = FAB_OBJ_CHAN; /* as before: "not initialised" */
		else
			return fi_err(FAB_ECORRUPT, "%s: bad magic (neither a channel nor a topic)",
				      a->name);
	}
	if (type == FAB_OBJ_TOPIC) {
		if (a->s->size < FAB_TOPIC_SUBS_OFF)
			return fi_err(FAB_ECORRUPT, "topic %s: segment smaller than its header",
				      a->name);
		return fi_peek_topic(a);
	}
	return fi_peek_guarded(a);
}

void fi_msgs_free(fi_msg *msgs, unsigned count)
{
	if (!msgs)
		return;
	for (unsigned i = 0; i < count; i++)
		free(msgs[i].data);
	free(msgs);
}

static int fi_peek_typed(const fi_seg *s, const char *name, uint32_t type, unsigned n,
			 fi_msg **msgs, unsigned *count)
{
	*msgs = NULL;
	*count = 0;
	if (s->size < FI_HDR_BYTES)
		return fi_err(FAB_ECORRUPT, "%s %s: segment smaller than its header",
			      type == FAB_OBJ_TOPIC ? "topic" : "channel", name);
	fi_peek_arg a = {s, name, n, calloc(n ? n : 1, sizeof(fi_msg)), 0, type};
	if (!a.msgs)
		return fi_err(FAB_ENOMEM, "out of memory");
	int rc = fi_guarded(fi_peek_any, &a, name);
	/* A copy left over from a rejected attempt sits past count. */
	if (rc || a.count < n) {
		for (unsigned i = a.count; i < n; i++) {
			free(a.msgs[i].data);
			a.msgs[i].data = NULL;
		}
	}
	if (rc) {
		fi_msgs_free(a.msgs, a.count);
		return rc;
	}
	*msgs = a.msgs;
	*count = a.count;
	return 0;
}

int fi_peek_seg(const fi_seg *s, const char *name, unsigned n, fi_msg **msgs, unsigned *count)
{
	return fi_peek_typed(s, name, FI_OBJ_UNKNOWN, n, msgs, count);
}

/* The registry's type of object `name` in fabric `fabric`: FAB_OBJ_CHAN,
 * FAB_OBJ_TOPIC, or FI_OBJ_UNKNOWN when the control segment or the entry
 * cannot be read.  Reads the registry only (not the other segments). */
typedef struct fi_type_arg {
	const fi_seg *ctl;
	const char *name;
	uint32_t type;
} fi_type_arg;

static int fi_type_read(void *p)
{
	fi_type_arg *a = p;
	fab_chan_ent *ents = (fab_chan_ent *)(a->ctl->base + FAB_CTL_CHANS_OFF);
	for (uint32_t i = 0; i < FAB_MAX_CHANS; i++) {
		fab_chan_ent *e = &ents[i];
		char nm[FI_NAME];
		/* Pairs with the creator's store_release of LIVE. */
		if (load_acquire(&e->state) != FAB_ENT_LIVE ||
		    !fi_copy_name(nm, e->name, sizeof e->name) || strcmp(nm, a->name))
			continue;
		uint32_t t = e->type;
		if (t == FAB_OBJ_CHAN || t == FAB_OBJ_TOPIC)
			a->type = t;
		break;
	}
	return 0;
}

uint32_t fi_obj_type(const char *fabric, const char *name)
{
	fi_fabric *f;
	if (fi_open(fabric, &f))
		return FI_OBJ_UNKNOWN;
	fi_type_arg a = {&f->ctl, name, FI_OBJ_UNKNOWN};
	fi_guarded(fi_type_read, &a, fabric);
	fi_close(f);
	return a.type;
}

int fi_peek(const char *fabric, const char *name, unsigned n, fi_msg **msgs, unsigned *count)
{
	*msgs = NULL;
	*count = 0;
	if (!fi_name_ok(name))
		return fi_err(FAB_EINVAL, "bad channel name '%s'", name);
	/* What the registry says it is: a segment scribbled over cannot say
	 * (a topic was reported as "channel X: bad magic"; operator trial). */
	uint32_t type = fi_obj_type(fabric, name);
	char path[128];
	snprintf(path, sizeof path, "/fab.%s.%s", fabric, name);
	fi_seg s;
	int rc = fi_map(path, FI_HDR_BYTES, &s);
	if (rc == FAB_ENOENT) {
		/* Name what is missing: the fabric itself, or only the
		 * channel (found by an operator trial). */
		char ctl[128];
		struct stat sb;
		snprintf(ctl, sizeof ctl, "/dev/shm/fab.%s", fabric);
		if (stat(ctl, &sb) < 0 && errno == ENOENT)
			return fi_err(rc, "no fabric %s", fabric);
		return fi_err(rc, "fabric %s has no channel %s", fabric, name);
	}
	if (rc)
		return rc;
	rc = fi_peek_typed(&s, name, type, n, msgs, count);
	fi_unmap(&s);
	return rc;
}

/* ---- fabrics on this machine ------------------------------------------ */

static int fi_cmp_name(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

int fi_list_fabrics(char (**names)[FI_NAME])
{
	*names = NULL;
	DIR *d = opendir("/dev/shm");
	if (!d)
		return fi_err(-1, "/dev/shm: %s", strerror(errno)), -1;
	size_t n = 0, cap = 0;
	char(*v)[FI_NAME] = NULL;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *s = de->d_name;
		if (strncmp(s, "fab.", 4) || strchr(s + 4, '.') || !fi_name_ok(s + 4))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			void *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				free(v);
				closedir(d);
				return -1;
			}
			v = nv;
		}
		snprintf(v[n++], FI_NAME, "%s", s + 4);
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof *v, fi_cmp_name);
	*names = v;
	return (int)n;
}
