/*
 * view.c - the listing verbs of fabctl: ls (fabrics), chan (channels and
 * topics, with rates from two samples), ps (live processes and what each
 * sleeps on) and top (both, refreshed).  Everything comes from inspect.c's
 * read-only snapshots; only ps asks fabd (for restarts) when it answers.
 */
#include "cli.h"
#include "fabctl.h"

#include "layout.h"

#include <dirent.h>
#include <fab/fab.h>
#include <sys/stat.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* ---- small formatting helpers ----------------------------------------- */

static void fmt_time(int64_t real_ns, char *out, size_t n)
{
	time_t t = (time_t)(real_ns / 1000000000);
	struct tm tm;
	if (real_ns <= 0 || !gmtime_r(&t, &tm)) {
		snprintf(out, n, "-");
		return;
	}
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fmt_dur(double s, char *out, size_t n)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(out, n, "%.1fs", s);
	else if (s < 3600)
		snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
	else if (s < 86400)
		snprintf(out, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
	else
		snprintf(out, n, "%dd%02dh", (int)(s / 86400), (int)(s / 3600) % 24);
}

static void fill_bar(uint64_t len, uint64_t cap, char *out, size_t n)
{
	if (cap == 0) {
		snprintf(out, n, "%s", "-");
		return;
	}
	int w = 10, k = (int)((len * (uint64_t)w + cap - 1) / cap);
	if (k > w)
		k = w;
	if (n < (size_t)w + 3) {
		out[0] = 0;
		return;
	}
	out[0] = '[';
	for (int i = 0; i < w; i++)
		out[1 + i] = i < k ? '#' : '.';
	out[w + 1] = ']';
	out[w + 2] = 0;
}

static const char *kind_name(const fi_chan *c)
{
	if (c->type == FAB_OBJ_TOPIC)
		return "topic";
	return c->kind == FAB_SPSC ? "spsc" : "mpmc";
}

static const char *delivery_name(const fi_chan *c)
{
	return c->delivery == FAB_AT_LEAST_ONCE ? "at-least-once" : "at-most-once";
}

static int64_t now_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- ls --------------------------------------------------------------- */

/* Channel and topic segments (/dev/shm/fab.F.X) of fabrics F whose control
 * segment is gone: removed by hand, or a fabric half-way through being
 * made or destroyed by a process killed there.  They hold memory and are
 * listed by no other verb (operator trial); `fabctl rm F` removes them.
 * Listed after the fabrics, one row per F, sorted; `shown` rows came before
 * (JSON commas); names listed as fabrics (listed_names) are left out.
 * Returns the rows printed in all. */
struct left {
	char name[FI_NAME];
	unsigned n;
	unsigned long long bytes;
};

static int left_cmp(const void *a, const void *b)
{
	return strcmp(((const struct left *)a)->name, ((const struct left *)b)->name);
}

static int ls_leftovers(int shown, char (*listed_names)[FI_NAME], int nlisted)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return 0;
	struct left *v = NULL;
	size_t nv = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *s = de->d_name, *dot;
		if (strncmp(s, "fab.", 4) || !(dot = strchr(s + 4, '.')) ||
		    (size_t)(dot - (s + 4)) >= FI_NAME || !fi_name_ok(dot + 1))
			continue;
		char fab[FI_NAME], ctl[FI_NAME + 16], seg[300];
		snprintf(fab, sizeof fab, "%.*s", (int)(dot - (s + 4)), s + 4);
		if (!fi_name_ok(fab))
			continue;
		bool listed = false; /* shown as a fabric above: not left over */
		for (int i = 0; i < nlisted && !listed; i++)
			listed = !strcmp(listed_names[i], fab);
		if (listed)
			continue;
		/* The segment, then no control segment, then the same segment
		 * (same inode): a fabric destroyed and made again between two
		 * looks is not taken for leftovers (review).  Made, a fabric
		 * has its control segment first; destroyed, it loses it last. */
		snprintf(ctl, sizeof ctl, "/dev/shm/fab.%s", fab);
		snprintf(seg, sizeof seg, "/dev/shm/%s", s);
		struct stat sb, sb2;
		if (stat(seg, &sb) < 0)
			continue;
		if (stat(ctl, &sb2) == 0 || errno != ENOENT)
			continue;
		if (stat(seg, &sb2) < 0 || sb2.st_ino != sb.st_ino || sb2.st_dev != sb.st_dev)
			continue;
		size_t k = 0;
		while (k < nv && strcmp(v[k].name, fab))
			k++;
		if (k == nv) {
			if (nv == cap) {
				cap = cap ? cap * 2 : 8;
				struct left *nvv = realloc(v, cap * sizeof *v);
				if (!nvv)
					break;
				v = nvv;
			}
			memset(&v[nv], 0, sizeof v[nv]);
			snprintf(v[nv].name, sizeof v[nv].name, "%s", fab);
			nv++;
		}
		v[k].n++;
		v[k].bytes += (unsigned long long)sb2.st_blocks * 512u;
	}
	closedir(d);
	if (nv > 1)
		qsort(v, nv, sizeof *v, left_cmp);
	for (size_t k = 0; k < nv; k++) {
		if (!v[k].n)
			continue;
		if (fabctl_o.json) {
			fputs(shown ? ",{\"name\":" : "{\"name\":", stdout);
			js_str(stdout, v[k].name);
			printf(",\"error\":\"no control segment: %u segment%s left (fabctl rm %s)\","
			       "\"code\":\"FAB_ENOENT\",\"leftover_segments\":%u,"
			       "\"leftover_bytes\":%llu}",
			       v[k].n, v[k].n == 1 ? "" : "s", v[k].name, v[k].n, v[k].bytes);
		} else {
			printf("%-24s no control segment: %u segment%s left, %llu KiB in use (fabctl "
			       "rm %s)\n",
			       v[k].name, v[k].n, v[k].n == 1 ? "" : "s", v[k].bytes / 1024,
			       v[k].name);
		}
		shown++;
	}
	free(v);
	return shown;
}

int fabctl_ls(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			puts("usage: fabctl [-o json] ls\n"
			     "The fabrics with a control segment in /dev/shm: name, created, live\n"
			     "processes, channels and topics, creator uid.  A segment that fails\n"
			     "validation is listed with its error (exit 5); another user's fabric\n"
			     "you may not read, with \"permission denied\" and its owner (exit 0).\n"
			     "Channel and topic segments left of a fabric whose control segment is\n"
			     "gone are listed after them, with how many and their size (exit 0;\n"
			     "fabctl rm FABRIC removes them).");
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r <= 0)
			return r < 0
				   ? FABCTL_EXIT_USAGE
				   : fabctl_fail(FABCTL_EXIT_USAGE, "ls: unexpected '%s'", argv[i]);
	}
	char(*names)[FI_NAME];
	int n = fi_list_fabrics(&names);
	if (n < 0)
		return fabctl_fail(FABCTL_EXIT_ERROR, "%s", fi_errmsg());
	int rc = 0;
	if (fabctl_o.json)
		fputs("{\"fabrics\":[", stdout);
	else
		printf("%-24s %-20s %5s %8s %6s\n", "FABRIC", "CREATED", "LIVE", "CHANNELS", "UID");
	int shown = 0;
	for (int i = 0; i < n; i++) {
		fi_fabric *f;
		int e = fi_open(names[i], &f);
		if (e == 0 && (e = fi_snapshot(f))) {
			fi_close(f);
			f = NULL;
		}
		/* Destroyed since the directory was read: gone, not an error
		 * (fabrics come and go while we list them). */
		if (e == FAB_ENOENT)
			continue;
		if (fabctl_o.json) {
			fputs(shown ? ",{\"name\":" : "{\"name\":", stdout);
			js_str(stdout, names[i]);
		}
		shown++;
		if (e) {
			/* Another user's fabric not shared with us is listed (its
			 * name is taken, and the message says whose it is) but is
			 * not a failure of the listing (found by review). */
			if (e != FAB_EPERM)
				rc = fabctl_exit_merge(rc, e);
			if (fabctl_o.json) {
				fputs(",\"error\":", stdout);
				js_str(stdout, fi_errmsg());
				fputs(",\"code\":", stdout);
				js_str(stdout, fab_errname(e));
				fputc('}', stdout);
			} else {
				printf("%-24s error: %s\n", names[i], fi_errmsg());
			}
			continue;
		}
		/* Live processes, as ps counts them: one per pid, however many
		 * fabric handles (process entries) it holds (found by an
		 * operator trial: fabd, which holds two, counted twice). */
		uint32_t live = 0;
		for (uint32_t p = 0; p < f->nprocs; p++) {
			if (!f->procs[p].live)
				continue;
			bool dup = false;
			for (uint32_t k = 0; k < p && !dup; k++)
				dup = f->procs[k].live && f->procs[k].pid == f->procs[p].pid;
			live += !dup;
		}
		char created[32];
		fmt_time(f->created_ns, created, sizeof created);
		if (fabctl_o.json)
			printf(",\"created\":\"%s\",\"created_ns\":%lld,\"processes\":%u,"
			       "\"channels\":%u,\"creator_uid\":%u}",
			       created, (long long)f->created_ns, live, f->nchans, f->creator_uid);
		else
			printf("%-24s %-20s %5u %8u %6u\n", names[i], created, live, f->nchans,
			       f->creator_uid);
		fi_close(f);
	}
	ls_leftovers(shown, names, n);
	if (fabctl_o.json)
		fputs("]}\n", stdout);
	free(names);
	return rc;
}

/* ---- chan ------------------------------------------------------------- */

static const fi_chan *find_prev(const fi_fabric *prev, const fi_chan *c)
{
	if (!prev)
		return NULL;
	for (uint32_t i = 0; i < prev->nchans; i++)
		if (prev->chans[i].reg_idx == c->reg_idx && !strcmp(prev->chans[i].name, c->name) &&
		    !prev->chans[i].err)
			return &prev->chans[i];
	return NULL;
}

static double rate(uint64_t now, uint64_t before, double dt)
{
	if (dt <= 0 || now < before)
		return 0;
	return (double)(now - before) / dt;
}

/* Print the channel table of snapshot f (rates against prev, dt seconds
 * apart); returns 0, or when a segment could not be read the exit status
 * for the gravest reason (fabctl_exit_merge). */
int fabctl_chan_render(fi_fabric *f, fi_fabric *prev, double dt, FILE *o)
{
	int rc = 0;
	if (fabctl_o.json) {
		fputs("{\"fabric\":", o);
		js_str(o, f->name);
		fprintf(o, ",\"interval_ms\":%.0f,\"channels\":[", dt * 1000);
	} else {
		fprintf(
		    o, "%-20s %-5s %-13s %13s %-12s %9s %9s %4s %4s %4s %5s %5s %5s %7s %7s %7s %s\n",
		    "NAME", "KIND", "DELIVERY", "LEN/CAP", "FILL", "IN/s", "OUT/s", "PROD", "SEND",
		    "RECV", "BLK_S", "BLK_R", "HELD", "REDELIV", "DEADLET", "DROPPED", "CLOSED");
	}
	for (uint32_t i = 0; i < f->nchans; i++) {
		fi_chan *c = &f->chans[i];
		if (fabctl_o.json) {
			fputs(i ? ",{\"name\":" : "{\"name\":", o);
			js_str(o, c->name);
		}
		if (c->err) {
			rc = fabctl_exit_merge(rc, c->err);
			if (fabctl_o.json) {
				fputs(",\"error\":", o);
				js_str(o, c->errmsg);
				fputs(",\"code\":", o);
				js_str(o, fab_errname(c->err));
				fputc('}', o);
			} else {
				fprintf(o, "%-20s error: %s\n", c->name, c->errmsg);
			}
			continue;
		}
		const fi_chan *p = find_prev(prev, c);
		double rin = p ? rate(c->sent, p->sent, dt) : 0;
		double rout = p ? rate(c->received, p->received, dt) : 0;
		uint64_t dropped = c->dropped + c->dead_dropped;
		if (fabctl_o.json) {
			fprintf(o,
				",\"type\":\"%s\",\"kind\":\"%s\",\"delivery\":\"%s\",\"len\":%llu,"
				"\"capacity\":%u,\"fill\":%.4f,\"rate_in\":%.1f,\"rate_out\":%.1f,"
				"\"sent\":%llu,\"received\":%llu,\"producers\":%u,\"senders\":%u,"
				"\"receivers\":%u,\"blocked_senders\":%u,\"blocked_receivers\":%u,"
				"\"redelivered\":%llu,\"dead_lettered\":%llu,\"dropped\":%llu,"
				"\"held\":%llu,\"closes\":%u,\"closed\":%s}",
				c->type == FAB_OBJ_TOPIC ? "topic" : "channel", kind_name(c),
				delivery_name(c), (unsigned long long)c->len, c->capacity,
				c->capacity ? (double)c->len / c->capacity : 0.0, rin, rout,
				(unsigned long long)c->sent, (unsigned long long)c->received,
				c->producers, c->senders, c->receivers, c->send_waiters,
				c->recv_waiters, (unsigned long long)c->redelivered,
				(unsigned long long)c->dead_lettered, (unsigned long long)dropped,
				(unsigned long long)c->held, c->closes, c->closed ? "true" : "false");
		} else {
			char lc[32], bar[16], prod[16];
			snprintf(lc, sizeof lc, "%llu/%u", (unsigned long long)c->len, c->capacity);
			fill_bar(c->len, c->capacity, bar, sizeof bar);
			if (c->type == FAB_OBJ_TOPIC)
				snprintf(prod, sizeof prod, "-");
			else
				snprintf(prod, sizeof prod, "%u", c->producers);
			fprintf(o,
				"%-20s %-5s %-13s %13s %-12s %9.1f %9.1f %4s %4u %4u %5u %5u %5llu "
				"%7llu %7llu %7llu %s\n",
				c->name, kind_name(c), delivery_name(c), lc, bar, rin, rout, prod,
				c->senders, c->receivers, c->send_waiters, c->recv_waiters,
				(unsigned long long)c->held, (unsigned long long)c->redelivered,
				(unsigned long long)c->dead_lettered, (unsigned long long)dropped,
				c->closed ? "yes" : "no");
		}
	}
	if (fabctl_o.json)
		fputs("]}", o);
	return rc;
}

int fabctl_chan(int argc, char **argv)
{
	const char *fab = NULL;
	int64_t interval = 200 * 1000000LL;
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			puts("usage: fabctl [-f FABRIC] [-o json] chan [FABRIC] [--interval D]\n"
			     "One row per channel and topic: kind, delivery, len/cap, fill, rates "
			     "in\n"
			     "and out (msgs/s, two samples D apart, default 200ms), close quorum,\n"
			     "senders and receivers attached, blocked senders and receivers,\n"
			     "messages held past their receive (HELD: acquired or leased; fabctl ps\n"
			     "says by whom), redelivered, dead-lettered, dropped, closed.  A\n"
			     "segment that fails validation is listed with its error (exit 5),\n"
			     "one you may not read with \"permission denied\" (exit 7).");
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r < 0)
			return FABCTL_EXIT_USAGE;
		if (r)
			continue;
		if (!strcmp(argv[i], "--interval") && i + 1 < argc) {
			interval = fabctl_parse_duration(argv[++i]);
			if (interval < 0)
				return fabctl_fail(FABCTL_EXIT_USAGE, "chan: bad --interval '%s'",
						   argv[i]);
		} else if (argv[i][0] != '-' && !fab) {
			fab = argv[i];
		} else {
			return fabctl_fail(FABCTL_EXIT_USAGE, "chan: unexpected '%s'", argv[i]);
		}
	}
	char name[FI_NAME];
	int rc = fabctl_resolve(fab, name);
	if (rc)
		return rc;
	fi_fabric *f, *prev = NULL;
	if ((rc = fabctl_snapshot(name, &prev)))
		return rc;
	if (interval > 0) {
		struct timespec ts = {interval / 1000000000, interval % 1000000000};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	if ((rc = fabctl_snapshot(name, &f))) {
		fi_close(prev);
		return rc;
	}
	double dt = (double)(f->mono_ns - prev->mono_ns) / 1e9;
	rc = fabctl_chan_render(f, interval > 0 ? prev : NULL, dt, stdout);
	if (fabctl_o.json)
		fputc('\n', stdout);
	fi_close(prev);
	fi_close(f);
	return rc;
}

/* ---- ps --------------------------------------------------------------- */

/* The state letter of /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat,
 * or 0. */
static char stat_letter(const char *path)
{
	char buf[512];
	FILE *fp = fopen(path, "re");
	if (!fp)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, fp);
	fclose(fp);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] && p[2] ? p[2] : 0;
}

static const char *proc_state(uint32_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%u/stat", pid);
	char st = stat_letter(path);
	if (!st)
		return "?";
	if (st == 'Z') {
		/* The thread-group leader exited (pthread_exit in main) while
		 * other threads run on: the process is its other threads (a
		 * user trial saw a live, sleeping process shown as "other").
		 * Most telling first: running, disk, sleeping, stopped. */
		snprintf(path, sizeof path, "/proc/%u/task", pid);
		DIR *d = opendir(path);
		static const char rank[] = "RDStT";
		const char *best = NULL;
		struct dirent *e;
		while (d && (e = readdir(d)) != NULL) {
			if (e->d_name[0] < '1' || e->d_name[0] > '9')
				continue;
			char tp[96];
			snprintf(tp, sizeof tp, "/proc/%u/task/%.20s/stat", pid, e->d_name);
			char t = stat_letter(tp);
			const char *r = t ? strchr(rank, t) : NULL;
			if (r && (!best || r < best))
				best = r;
		}
		if (d)
			closedir(d);
		if (best)
			st = *best;
	}
	switch (st) {
	case 'R':
		return "running";
	case 'S':
		return "sleeping";
	case 'D':
		return "disk";
	case 'T':
	case 't':
		return "stopped";
	default:
		return "other";
	}
}

static const fi_stage *stage_of(const fi_fabric *f, const fi_proc *p)
{
	for (uint32_t s = 0; p->stage && s < f->nstages; s++)
		if (f->stages[s].idx == p->stage - 1)
			return &f->stages[s];
	return NULL;
}

/* What process m holds now: messages acquired or leased (HELD slots, by
 * owner tag), "jobs:2,orders:1" in out (n bytes; "...", when it does not
 * fit), or a JSON array to o.  An operator's "which worker has the messages
 * the queue is short of" (operator trial).  by_idx: the live entries by
 * process-table index; a tag counts for m when its entry is live, of m's
 * pid and start time (m's other fabric handles too), and of the tag's
 * generation (a reused entry's new owner does not inherit the count). */
static void proc_holds(const fi_fabric *f, const fi_proc *const *by_idx, const fi_proc *m,
		       char *out, size_t n, FILE *o)
{
	size_t used = 0;
	int first = 1;
	if (o)
		fputc('[', o);
	if (n)
		out[0] = 0;
	for (uint32_t i = 0; i < f->nchans; i++) {
		const fi_chan *c = &f->chans[i];
		if (c->err || !c->nholds)
			continue;
		uint64_t held = 0;
		for (uint32_t k = 0; k < c->nholds; k++) {
			const fi_hold *h = &c->holds[k];
			const fi_proc *q = h->proc < FAB_MAX_PROCS ? by_idx[h->proc] : NULL;
			if (q && (q->gen & 31u) == h->gen && q->pid == m->pid &&
			    q->start_time == m->start_time)
				held += h->n;
		}
		if (!held)
			continue;
		if (o) {
			fputs(first ? "{\"channel\":" : ",{\"channel\":", o);
			js_str(o, c->name);
			fprintf(o, ",\"messages\":%llu}", (unsigned long long)held);
		} else if (used < n) {
			int w = snprintf(out + used, n - used, "%s%s:%llu", first ? "" : ",",
					 c->name, (unsigned long long)held);
			used = w < 0 ? n : used + (size_t)w;
			if (used >= n && n > 4)
				memcpy(out + n - 4, "...", 4); /* cut: say so */
		}
		first = 0;
	}
	if (o)
		fputc(']', o);
	else if (n > 1 && !out[0])
		snprintf(out, n, "-");
}

int fabctl_ps_render(fi_fabric *f, FILE *o)
{
	if (fabctl_o.json) {
		fputs("{\"fabric\":", o);
		js_str(o, f->name);
		fputs(",\"processes\":[", o);
	} else {
		fprintf(o, "%-20s %8s %-9s %10s %6s %8s %-12s %s\n", "STAGE", "PID", "STATE",
			"UPTIME", "ERRORS", "RESTARTS", "HOLDS", "BLOCKED ON");
	}
	int first = 1;
	const fi_proc *by_idx[FAB_MAX_PROCS] = {0};
	for (uint32_t i = 0; i < f->nprocs; i++)
		if (f->procs[i].live && f->procs[i].idx < FAB_MAX_PROCS)
			by_idx[f->procs[i].idx] = &f->procs[i];
	for (uint32_t i = 0; i < f->nprocs; i++) {
		if (!f->procs[i].live)
			continue;
		/* One row per process: a program may open the fabric more than
		 * once (one process entry per fab_fabric handle).  Merge them:
		 * the stage from whichever entry has one, the pulses added, the
		 * earliest attach, the longest current sleep. */
		/* A process is its pid and start time: two containers' pid 1
		 * are two processes. */
		int dup = 0;
		for (uint32_t k = 0; k < i && !dup; k++)
			dup = f->procs[k].live && f->procs[k].pid == f->procs[i].pid &&
			      f->procs[k].start_time == f->procs[i].start_time;
		if (dup)
			continue;
		fi_proc m = f->procs[i];
		for (uint32_t k = i + 1; k < f->nprocs; k++) {
			const fi_proc *q = &f->procs[k];
			if (!q->live || q->pid != m.pid || q->start_time != m.start_time)
				continue;
			m.calls += q->calls;
			if (q->attached_ns < m.attached_ns)
				m.attached_ns = q->attached_ns;
			if (!m.stage && q->stage) {
				m.stage = q->stage;
				m.replica = q->replica;
				memcpy(m.stage_name, q->stage_name, sizeof m.stage_name);
			}
			if (q->wait && (!m.wait || q->wait_ns < m.wait_ns)) {
				m.wait = q->wait;
				m.wait_ns = q->wait_ns;
			}
		}
		const fi_proc *p = &m;
		char label[80], up[32], wt[160] = "", since[32] = "";
		fabctl_stage_label(p, label, sizeof label);
		if (!label[0] && p->foreign) {
			/* Alive by its liveness lock, in another PID namespace:
			 * /proc/<pid> here is another process or none. */
			snprintf(label, sizeof label, "[?]");
		} else if (!label[0]) {
			/* Not a stage: its program's name, as ps(1) shows it. */
			char path[64], comm[32] = "";
			snprintf(path, sizeof path, "/proc/%u/comm", p->pid);
			FILE *cf = fopen(path, "re");
			if (cf) {
				if (fgets(comm, sizeof comm, cf))
					comm[strcspn(comm, "\n")] = 0;
				fclose(cf);
			}
			if (comm[0])
				snprintf(label, sizeof label, "[%s]", comm);
		}
		/* in double: the entry's times are unchecked (int64 could overflow) */
		double upt = ((double)f->real_ns - (double)p->attached_ns) / 1e9;
		fmt_dur(upt, up, sizeof up);
		const fi_stage *st = stage_of(f, p);
		long restarts = st ? fabctl_restarts(st->name, p->replica) : -1;
		double waited = ((double)f->mono_ns - (double)p->wait_ns) / 1e9;
		if (p->wait) {
			fabctl_wait_text(f, p->wait, wt, sizeof wt);
			fmt_dur(waited, since, sizeof since);
		}
		const char *state = p->foreign ? "other-ns" : proc_state(p->pid);
		if (fabctl_o.json) {
			fputs(first ? "{\"stage\":" : ",{\"stage\":", o);
			first = 0;
			if (st)
				js_str(o, st->name);
			else
				fputs("null", o);
			fprintf(o, ",\"replica\":");
			if (st)
				fprintf(o, "%u", p->replica);
			else
				fputs("null", o);
			fprintf(o,
				",\"pid\":%u,\"uid\":%u,\"state\":\"%s\",\"uptime_s\":%.3f,"
				"\"calls\":%llu,\"errors\":",
				p->pid, p->uid, state, upt, (unsigned long long)p->calls);
			if (st)
				fprintf(o, "%llu", (unsigned long long)st->errors);
			else
				fputs("null", o);
			fputs(",\"restarts\":", o);
			if (restarts >= 0)
				fprintf(o, "%ld", restarts);
			else
				fputs("null", o);
			fputs(",\"blocked\":", o);
			if (p->wait) {
				fprintf(o, "{\"op\":\"%s\",\"object\":", fabctl_wait_op(p->wait));
				js_str(o, fabctl_wait_obj(f, p->wait));
				fprintf(o, ",\"cases\":%u,\"seconds\":%.3f}",
					FAB_WAIT_CASES(p->wait), waited);
			} else {
				fputs("null", o);
			}
			fputs(",\"holds\":", o);
			proc_holds(f, by_idx, p, NULL, 0, o);
			fputc('}', o);
		} else {
			char errs[24], rs[24], blk[200];
			if (st)
				snprintf(errs, sizeof errs, "%llu", (unsigned long long)st->errors);
			else
				snprintf(errs, sizeof errs, "-");
			if (restarts >= 0)
				snprintf(rs, sizeof rs, "%ld", restarts);
			else
				snprintf(rs, sizeof rs, "-");
			if (p->wait)
				snprintf(blk, sizeof blk, "%s %s", wt, since);
			else
				snprintf(blk, sizeof blk, "-");
			char holds[256];
			proc_holds(f, by_idx, p, holds, sizeof holds, NULL);
			fprintf(o, "%-20s %8u %-9s %10s %6s %8s %-12s %s\n", label[0] ? label : "-",
				p->pid, state, up, errs, rs, holds, blk);
		}
	}
	if (fabctl_o.json)
		fputs("]}", o);
	return 0;
}

int fabctl_ps(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			puts(
			    "usage: fabctl [-f FABRIC] [-o json] ps\n"
			    "One row per live process attached to the fabric: stage.replica, pid,\n"
			    "state, uptime, the stage's errors, restarts (from fabd's status when\n"
			    "fabd runs, else -), the messages it holds now (acquired, or leased on\n"
			    "an at-least-once channel: HOLDS CH:N) and what it sleeps on now (send\n"
			    "CH, recv CH, select N cases, ctx NAME, limiter NAME) for how long.");
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r <= 0)
			return r < 0
				   ? FABCTL_EXIT_USAGE
				   : fabctl_fail(FABCTL_EXIT_USAGE, "ps: unexpected '%s'", argv[i]);
	}
	char name[FI_NAME];
	int rc = fabctl_resolve(NULL, name);
	if (rc)
		return rc;
	fi_fabric *f;
	if ((rc = fabctl_snapshot(name, &f)))
		return rc;
	fabctl_restarts_load(name);
	rc = fabctl_ps_render(f, stdout);
	if (fabctl_o.json)
		fputc('\n', stdout);
	fabctl_note_unreadable(f, "HOLDS and BLOCKED ON leave");
	fi_close(f);
	return rc;
}

/* ---- top -------------------------------------------------------------- */

static volatile sig_atomic_t top_stop;

static void top_sig(int sig)
{
	(void)sig;
	top_stop = 1;
}

int fabctl_top(int argc, char **argv)
{
	long iters = -1;
	int64_t interval = 1000000000LL;
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			puts("usage: fabctl [-f FABRIC] [-o json] top [-n ITERATIONS] [--interval "
			     "D]\n"
			     "chan and ps, refreshed every D (default 1s) until q, Ctrl-C or N\n"
			     "iterations.  With -o json: one JSON array of frames.");
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r < 0)
			return FABCTL_EXIT_USAGE;
		if (r)
			continue;
		if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			if ((iters = fabctl_parse_count(argv[++i], 1)) < 0)
				return fabctl_fail(FABCTL_EXIT_USAGE, "top: bad -n '%s'", argv[i]);
		} else if (!strcmp(argv[i], "--interval") && i + 1 < argc) {
			if ((interval = fabctl_parse_duration(argv[++i])) <= 0)
				return fabctl_fail(FABCTL_EXIT_USAGE, "top: bad --interval '%s'",
						   argv[i]);
		} else {
			return fabctl_fail(FABCTL_EXIT_USAGE, "top: unexpected '%s'", argv[i]);
		}
	}
	char name[FI_NAME];
	int rc = fabctl_resolve(NULL, name);
	if (rc)
		return rc;
	fi_fabric *prev = NULL, *f = NULL;
	if ((rc = fabctl_snapshot(name, &prev)))
		return rc;
	bool tty_out = isatty(1), tty_in = isatty(0);
	struct termios saved;
	if (tty_in && tcgetattr(0, &saved) == 0) {
		struct termios raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		tcsetattr(0, TCSANOW, &raw);
	} else {
		tty_in = false;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = top_sig;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (fabctl_o.json)
		fputc('[', stdout);
	for (long it = 0; !top_stop && (iters < 0 || it < iters); it++) {
		/* Wait one interval (the rate window), watching for q. */
		int64_t end = now_ns(CLOCK_MONOTONIC) + interval;
		for (;;) {
			int64_t left = end - now_ns(CLOCK_MONOTONIC);
			if (left <= 0 || top_stop)
				break;
			struct pollfd pf = {0, POLLIN, 0};
			int pr = poll(&pf, tty_in ? 1 : 0, (int)(left / 1000000) + 1);
			if (pr > 0 && (pf.revents & POLLIN)) {
				char ch;
				if (read(0, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
					top_stop = 1;
			}
		}
		if (top_stop && it > 0)
			break;
		int sr = fabctl_snapshot(name, &f);
		if (sr) {
			/* The fabric went away (or broke) between frames: its
			 * status, unless an earlier frame's was graver (found by
			 * review). */
			rc = fabctl_exit_worse(rc, sr);
			break;
		}
		fabctl_restarts_load(name);
		double dt = (double)(f->mono_ns - prev->mono_ns) / 1e9;
		if (fabctl_o.json) {
			if (it)
				fputc(',', stdout);
			fputs("{\"chan\":", stdout);
			int r = fabctl_chan_render(f, prev, dt, stdout);
			fputs(",\"ps\":", stdout);
			fabctl_ps_render(f, stdout);
			fputc('}', stdout);
			rc = fabctl_exit_worse(rc, r); /* over every frame */
		} else {
			if (tty_out)
				fputs("\033[H\033[2J", stdout);
			char when[32];
			fmt_time(f->real_ns, when, sizeof when);
			printf("fabric %s  %s  (q quits)\n\n", f->name, when);
			int r = fabctl_chan_render(f, prev, dt, stdout);
			rc = fabctl_exit_worse(rc, r); /* over every frame */
			fputc('\n', stdout);
			fabctl_ps_render(f, stdout);
			if (!tty_out)
				fputc('\n', stdout);
		}
		fflush(stdout);
		fi_close(prev);
		prev = f;
		f = NULL;
	}
	if (fabctl_o.json)
		fputs("]\n", stdout);
	if (tty_in)
		tcsetattr(0, TCSANOW, &saved);
	fi_close(prev);
	fi_close(f);
	return rc;
}
