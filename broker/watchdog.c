/*
 * watchdog.c - restart a replica that has made no call into the library
 * for its stage's `watchdog` time (DESIGN §5, docs/fabd.md "Watchdog").
 *
 * The library keeps, in each process's entry of the control segment, a
 * pulse (`calls`: bumped by every channel, topic, limiter and context call)
 * and a wait record (`wait`: non-zero while the process sleeps inside the
 * library, in a blocking receive for instance).  fabd maps the control
 * segment read-only and, every quarter of the shortest watchdog, looks at
 * the entries of its watched replicas: a replica is alive when its pulse
 * moved or it sleeps in the library (waiting for input is not a hang).  One
 * that has done neither for the watchdog time -- a CPU loop, a sleep(3)
 * outside the library, a deadlock on its own mutex, or never opening the
 * fabric -- gets SIGKILL, and its restart policy takes over (it counts as a
 * failure, and against the intensity).
 *
 * Reads only: the entries are written by their processes; a torn or
 * scribbled entry can at worst delay or hasten one restart.
 */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "layout.h"

#define WD_TICK_MIN_NS 10000000ull    /* 10 ms */
#define WD_TICK_MAX_NS 1000000000ull  /* 1 s */

int fabd_watchdog_start(fabd_sup *r)
{
	uint64_t shortest = 0;
	for (size_t i = 0; i < r->nstages; i++) {
		uint64_t w = r->stages[i].cfg->watchdog_ns;
		if (w && (!shortest || w < shortest))
			shortest = w;
	}
	if (!shortest)
		return 0; /* no stage has a watchdog: nothing to map or arm */
	char path[FAB_NAME_MAX + 16];
	snprintf(path, sizeof path, "/dev/shm/fab.%s", r->t->fabric);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0 || (uint64_t)sb.st_size < FAB_CTL_SIZE) {
		fprintf(stderr, "fabd: watchdog: %s: %s\n", path,
			fd < 0 ? strerror(errno) : "shorter than a control segment");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	void *p = mmap(NULL, FAB_CTL_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		fprintf(stderr, "fabd: watchdog: mmap %s: %s\n", path, strerror(errno));
		return -1;
	}
	r->wd_ctl = p;
	r->wd_tick_ns = shortest / 4;
	if (r->wd_tick_ns < WD_TICK_MIN_NS)
		r->wd_tick_ns = WD_TICK_MIN_NS;
	if (r->wd_tick_ns > WD_TICK_MAX_NS)
		r->wd_tick_ns = WD_TICK_MAX_NS;
	fabd_op *op = calloc(1, sizeof *op);
	if (!op)
		return -1;
	op->kind = FABD_OP_WATCHDOG;
	fabd_arm_timer(r, op, r->wd_tick_ns);
	return 0;
}

void fabd_watchdog_stop(fabd_sup *r)
{
	if (r->wd_ctl)
		munmap((void *)r->wd_ctl, FAB_CTL_SIZE);
	r->wd_ctl = NULL;
}

/* The watched replica whose process is `pid`, or NULL. */
static fabd_replica *wd_find(fabd_sup *r, uint32_t pid)
{
	for (size_t i = 0; i < r->nstages; i++) {
		fabd_stage_rt *st = &r->stages[i];
		if (!st->cfg->watchdog_ns)
			continue;
		for (uint32_t j = 0; j < st->reps_cap; j++)
			if (st->reps[j].state == FABD_R_RUNNING && (uint32_t)st->reps[j].pid == pid)
				return &st->reps[j];
	}
	return NULL;
}

static void wd_check(fabd_sup *r)
{
	const fab_proc_ent *procs = (const fab_proc_ent *)(r->wd_ctl + FAB_CTL_PROCS_OFF);
	uint64_t now = fabd_now_ns();
	/* Sum the pulses of every entry of each watched process (a program
	 * may open the fabric more than once); a wait record anywhere in it
	 * counts as alive. */
	for (size_t i = 0; i < r->nstages; i++)
		for (uint32_t j = 0; j < r->stages[i].reps_cap; j++) {
			r->stages[i].reps[j].wd_sum = 0;
			r->stages[i].reps[j].wd_waiting = 0;
		}
	for (uint32_t k = 0; k < FAB_MAX_PROCS; k++) {
		/* Acquire: pairs with the claimer's store_release of LIVE (its
		 * pid and the reset of its pulse and wait record come first). */
		uint64_t sg = load_acquire(&((fab_proc_ent *)&procs[k])->sg);
		if (FAB_SG_STATE(sg) != FAB_PROC_LIVE)
			continue;
		fab_proc_ent *e = (fab_proc_ent *)&procs[k];
		fabd_replica *rep = wd_find(r, load_relaxed(&e->pid));
		if (!rep)
			continue;
		rep->wd_attached = 1;
		/* Relaxed: counters and a flag word; nothing is published with
		 * them that fabd then reads. */
		rep->wd_sum += load_relaxed(&e->calls);
		if (load_relaxed(&e->wait))
			rep->wd_waiting = 1;
	}
	for (size_t i = 0; i < r->nstages; i++) {
		fabd_stage_rt *st = &r->stages[i];
		uint64_t limit = st->cfg->watchdog_ns;
		if (!limit)
			continue;
		for (uint32_t j = 0; j < st->reps_cap; j++) {
			fabd_replica *rep = &st->reps[j];
			if (rep->state != FABD_R_RUNNING || !rep->pid || rep->wd_fired)
				continue;
			if (rep->wd_seen_gen != rep->gen) {
				/* A new process: its clock starts at its spawn. */
				rep->wd_seen_gen = rep->gen;
				rep->wd_seen_ns = rep->started_ns;
				rep->wd_calls = 0;
				rep->wd_attached = 0;
			}
			if (rep->wd_waiting || rep->wd_sum != rep->wd_calls) {
				rep->wd_calls = rep->wd_sum;
				rep->wd_seen_ns = now;
				continue;
			}
			if (now - rep->wd_seen_ns < limit)
				continue;
			fprintf(stderr,
				"fabd: %s.%u: watchdog: %s for %.1f s (watchdog %.1f s); killing pid "
				"%d\n",
				st->cfg->name, rep->idx,
				rep->wd_attached ? "no call into the library"
						 : "never opened the fabric",
				(double)(now - rep->wd_seen_ns) / 1e9, (double)limit / 1e9,
				(int)rep->pid);
			rep->wd_fired = 1;
			rep->watchdog_kills++;
			fabd_kill(rep, SIGKILL);
		}
	}
}

void fabd_watchdog_tick(fabd_sup *r, fabd_op *op)
{
	fabd_timer_done(op);
	if (!r->wd_ctl)
		return;
	/* While running only: a drain has its own deadlines. */
	if (r->phase == 0)
		wd_check(r);
	if (!fabd_pending(r))
		return; /* nothing left to watch: let the loop end */
	fabd_op *next = calloc(1, sizeof *next);
	if (!next) {
		fprintf(stderr, "fabd: watchdog: out of memory; watchdog stopped\n");
		return;
	}
	next->kind = FABD_OP_WATCHDOG;
	fabd_arm_timer(r, next, r->wd_tick_ns);
}
