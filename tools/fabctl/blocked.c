/*
 * blocked.c - `fabctl blocked`: who sleeps on what, and the wait-for graph.
 *
 * Each process has one wait record (layout.h fab_proc_ent.wait: the last
 * sleeping thread's).  A process blocked sending on channel C waits for the
 * live processes attached to C with the receive role; blocked receiving,
 * for C's senders (attach table words, owner tag -> process entry).  A
 * deadlock is a set of blocked processes every one of whose targets is in
 * the set: found by removing, until nothing changes, every blocked process
 * with a target outside the set (or none at all: "waits for nobody").
 * What is left is deadlocked; its cycles are named.
 *
 * Conservative by construction: only plain channel sends and receives are
 * graph nodes.  A process in select, on a topic, a context or a limiter
 * counts as able to make progress, so it never takes part in a claim, and
 * a deadlock is claimed only when every process involved is asleep in a
 * single channel operation whose every possible partner is asleep too.
 */
#include "cli.h"
#include "fabctl.h"

#include "layout.h"

#include <fab/fab.h>

#include <stdlib.h>
#include <string.h>

typedef struct node {
	const fi_proc *p;
	const fi_chan *c; /* the channel waited on (NULL: not a graph node) */
	bool send;
	bool in; /* still in the candidate set */
	bool reported;
	uint32_t *tg; /* indices into the node array of its targets */
	uint32_t ntg;
} node;

/* Live process of entry idx whose tag generation matches; index into the
 * node array, or -1. */
static int node_of(node *v, uint32_t n, uint32_t idx, uint32_t gen)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i].p->idx == idx && (v[i].p->gen & 31u) == gen)
			return (int)i;
	return -1;
}

static void label(const fi_proc *p, char *out, size_t n)
{
	char st[80];
	fabctl_stage_label(p, st, sizeof st);
	if (st[0])
		snprintf(out, n, "%s (pid %u)", st, p->pid);
	else
		snprintf(out, n, "pid %u", p->pid);
}

/* Why it waits, as the ring says (fi_chan can_send/can_recv): "" when it
 * could proceed (a stale record). */
static const char *cond(const node *x)
{
	const fi_chan *c = x->c;
	if (x->send)
		return c->capacity == 0            ? "unbuffered"
		       : c->can_send               ? ""
		       : c->len >= c->capacity     ? "full"
						   : "slot held";
	return c->can_recv ? "" : c->len == 0 ? "empty" : "nothing to take";
}

static void hop_text(const node *x, char *out, size_t n)
{
	char l[120];
	label(x->p, l, sizeof l);
	const char *cd = cond(x);
	snprintf(out, n, "%s %s %s%s%s%s", l, x->send ? "sends on" : "receives on", x->c->name,
		 cd[0] ? " (" : "", cd, cd[0] ? ")" : "");
}

static void json_hop(FILE *o, const node *x)
{
	char st[80];
	fabctl_stage_label(x->p, st, sizeof st);
	fprintf(o, "{\"pid\":%u,\"stage\":", x->p->pid);
	if (st[0])
		js_str(o, st);
	else
		fputs("null", o);
	fprintf(o, ",\"op\":\"%s\",\"channel\":", x->send ? "send" : "recv");
	js_str(o, x->c->name);
	fprintf(o, ",\"condition\":\"%s\"}", cond(x));
}

int fabctl_blocked(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			puts("usage: fabctl [-f FABRIC] [-o json] blocked\n"
			     "Each sleeping process: pid, stage.replica, op, channel, for how "
			     "long.\n"
			     "Then the wait-for graph: a sender on C waits for C's receivers, a\n"
			     "receiver for C's senders.  Blocked processes that all wait only on "
			     "each\n"
			     "other are a deadlock; each cycle is named.  select, topic, context "
			     "and\n"
			     "limiter waits never take part in a deadlock claim.\n"
			     "Exit 8 when a deadlock is found, else 0.");
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r <= 0)
			return r < 0 ? FABCTL_EXIT_USAGE
				     : fabctl_fail(FABCTL_EXIT_USAGE, "blocked: unexpected '%s'",
						   argv[i]);
	}
	char name[FI_NAME];
	int rc = fabctl_resolve(NULL, name);
	if (rc)
		return rc;
	fi_fabric *f;
	if ((rc = fabctl_snapshot(name, &f)))
		return rc;
	node *v = calloc(f->nprocs ? f->nprocs : 1, sizeof *v);
	uint32_t *tgs =
	    calloc((size_t)(f->nprocs ? f->nprocs : 1) * (f->nprocs ? f->nprocs : 1), sizeof *tgs);
	if (!v || !tgs) {
		free(v);
		free(tgs);
		fi_close(f);
		return fabctl_fail(FABCTL_EXIT_ERROR, "out of memory");
	}
	/* Nodes: every live process; graph nodes are those asleep in a plain
	 * channel send or receive on a channel we could read. */
	uint32_t n = 0;
	for (uint32_t i = 0; i < f->nprocs; i++) {
		if (!f->procs[i].live)
			continue;
		node *x = &v[n];
		x->p = &f->procs[i];
		x->tg = tgs + (size_t)n * f->nprocs;
		uint64_t w = x->p->wait;
		if (w && FAB_WAIT_KIND(w) == FAB_WAIT_CHAN) {
			const fi_chan *c = fi_chan_by_reg(f, FAB_WAIT_IDX(w));
			if (c && !c->err && c->type == FAB_OBJ_CHAN) {
				x->c = c;
				x->send = FAB_WAIT_OP(w) == FAB_WAIT_SEND;
				/* A candidate only while what it waits for still
				 * holds: a receiver on a channel it could take a
				 * message from now (or a sender that could place
				 * one) waits for nobody; its record is stale (a
				 * stopped or descheduled process not yet woken;
				 * found by an operator trial: a SIGSTOPped sink
				 * made fabctl claim a deadlock).  Judged by the ring
				 * itself (fi_chan can_send/can_recv), not by len:
				 * on an mpmc ring an acquired, leased or reserved
				 * slot stops the other side whatever len says
				 * (found by review).  Unbuffered: always. */
				x->in = c->capacity == 0 || (x->send ? !c->can_send : !c->can_recv);
			}
		}
		n++;
	}
	/* Edges: attached with the opposite role, alive, deduplicated.  A
	 * process with several fabric handles has an entry (a node) for each,
	 * and the sleep is recorded in one of them: an attachment through any
	 * of its entries is an edge to the process, i.e. to its node that
	 * sleeps in a channel call if it has one (a user trial's process with
	 * two handles was named twice, "pid P,P", and its idle second entry
	 * would hide a deadlock through it). */
	for (uint32_t i = 0; i < n; i++) {
		node *x = &v[i];
		if (!x->c)
			continue;
		uint32_t want = x->send ? FAB_RECV : FAB_SEND;
		for (uint32_t a = 0; a < x->c->natt; a++) {
			if (!(x->c->att[a].role & want))
				continue;
			int t = node_of(v, n, x->c->att[a].proc, x->c->att[a].gen);
			if (t < 0)
				continue; /* a dead holder: recovery will clear it */
			for (uint32_t j = 0; j < n; j++)
				if (v[j].c && v[j].p->pid == v[t].p->pid &&
				    v[j].p->start_time == v[t].p->start_time) {
					t = (int)j;
					break;
				}
			bool dup = false;
			for (uint32_t k = 0; k < x->ntg; k++)
				dup |= x->tg[k] == (uint32_t)t;
			if (!dup)
				x->tg[x->ntg++] = (uint32_t)t;
		}
	}
	/* Iterative removal. */
	for (bool changed = true; changed;) {
		changed = false;
		for (uint32_t i = 0; i < n; i++) {
			node *x = &v[i];
			if (!x->in)
				continue;
			bool out = x->ntg == 0;
			for (uint32_t k = 0; k < x->ntg && !out; k++)
				out = !v[x->tg[k]].in;
			if (out) {
				x->in = false;
				changed = true;
			}
		}
	}
	/* Report. */
	FILE *o = stdout;
	/* A process with several fabric handles has several entries, hence
	 * several nodes: name each process it waits for once (a user trial
	 * saw "pid 6299,6299"). */
#define REPEATED(x, k)                                                                 \
	({                                                                             \
		bool r_ = false;                                                       \
		for (uint32_t j_ = 0; j_ < (k) && !r_; j_++)                           \
			r_ = v[(x)->tg[j_]].p->pid == v[(x)->tg[k]].p->pid &&          \
			     v[(x)->tg[j_]].p->start_time == v[(x)->tg[k]].p->start_time; \
		r_;                                                                    \
	})
	if (fabctl_o.json) {
		fputs("{\"fabric\":", o);
		js_str(o, f->name);
		fputs(",\"blocked\":[", o);
	} else {
		printf("%-8s %-20s %-8s %-24s %10s %s\n", "PID", "STAGE", "OP", "ON", "FOR",
		       "WAITS FOR");
	}
	int first = 1, orphans = 0;
	for (uint32_t i = 0; i < n; i++) {
		const node *x = &v[i];
		if (!x->p->wait)
			continue;
		char st[80];
		fabctl_stage_label(x->p, st, sizeof st);
		double secs = ((double)f->mono_ns - (double)x->p->wait_ns) / 1e9; /* no int64 overflow */
		if (secs < 0)
			secs = 0;
		if (x->c && x->ntg == 0)
			orphans++;
		if (fabctl_o.json) {
			fprintf(o, "%s{\"pid\":%u,\"stage\":", first ? "" : ",", x->p->pid);
			if (st[0])
				js_str(o, st);
			else
				fputs("null", o);
			fprintf(o, ",\"op\":\"%s\",\"object\":", fabctl_wait_op(x->p->wait));
			js_str(o, fabctl_wait_obj(f, x->p->wait));
			fprintf(o, ",\"cases\":%u,\"seconds\":%.3f,\"waits_for\":",
				FAB_WAIT_CASES(x->p->wait), secs);
			if (x->c) {
				fputc('[', o);
				for (uint32_t k = 0, m = 0; k < x->ntg; k++)
					if (!REPEATED(x, k))
						fprintf(o, "%s%u", m++ ? "," : "", v[x->tg[k]].p->pid);
				fputc(']', o);
			} else {
				fputs("null", o);
			}
			fprintf(o, ",\"deadlocked\":%s}", x->in ? "true" : "false");
		} else {
			char wt[160], wf[256] = "";
			fabctl_wait_text(f, x->p->wait, wt, sizeof wt);
			char *sp = strchr(wt, ' ');
			const char *obj = sp ? sp + 1 : "";
			if (sp)
				*sp = 0;
			if (!x->c) {
				snprintf(wf, sizeof wf, "-");
			} else if (x->ntg == 0) {
				snprintf(wf, sizeof wf, "nobody (orphan)");
			} else {
				size_t l = 0;
				for (uint32_t k = 0; k < x->ntg && l + 16 < sizeof wf; k++)
					if (!REPEATED(x, k))
						l += (size_t)snprintf(wf + l, sizeof wf - l, "%s%u",
								      l ? "," : "pid ",
								      v[x->tg[k]].p->pid);
			}
			printf("%-8u %-20s %-8s %-24s %9.1fs %s\n", x->p->pid, st[0] ? st : "-", wt,
			       obj, secs, wf);
		}
		first = 0;
	}
	if (fabctl_o.json)
		fputs("],\"deadlocks\":[", o);
	else if (first)
		puts("(no process is sleeping)");
	int cycles = 0;
	int *seen = calloc(n ? n : 1, sizeof *seen);
	uint32_t *nxt = calloc(n ? n : 1, sizeof *nxt);
	for (uint32_t s = 0; seen && nxt && s < n; s++) {
		if (!v[s].in || v[s].reported)
			continue;
		/* Walk targets inside the set from s until a node repeats: the
		 * repeated stretch is a cycle (every node left has a target in
		 * the set, so the walk never stops). */
		for (uint32_t k = 0; k < n; k++)
			seen[k] = 0;
		uint32_t cur = s;
		int step = 1;
		while (!seen[cur]) {
			seen[cur] = step++;
			uint32_t nx = cur;
			for (uint32_t k = 0; k < v[cur].ntg; k++)
				if (v[v[cur].tg[k]].in) {
					/* Prefer a node not yet in a named cycle. */
					nx = v[cur].tg[k];
					if (!v[nx].reported)
						break;
				}
			nxt[cur] = nx;
			cur = nx;
		}
		if (v[cur].reported)
			continue; /* leads into a cycle already named */
		uint32_t start = cur;
		if (fabctl_o.json) {
			fprintf(o, "%s{\"cycle\":[", cycles ? "," : "");
		} else {
			fputs("deadlock: ", o);
			if (v[start].p->stage && v[start].p->stage_name[0])
				fputs("stage ", o);
		}
		uint32_t x = start;
		int hop = 0;
		do {
			v[x].reported = true;
			if (fabctl_o.json) {
				if (hop)
					fputc(',', o);
				json_hop(o, &v[x]);
			} else {
				char h[300];
				hop_text(&v[x], h, sizeof h);
				fprintf(o, "%s -> ", h);
			}
			hop++;
			x = nxt[x]; /* the walk's own step: it comes back to start */
		} while (x != start && hop <= (int)n);
		if (fabctl_o.json) {
			fputs("]}", o);
		} else {
			char st[80];
			fabctl_stage_label(v[start].p, st, sizeof st);
			if (st[0])
				fprintf(o, "%s\n", st);
			else
				fprintf(o, "pid %u\n", v[start].p->pid);
		}
		cycles++;
	}
	free(seen);
	free(nxt);
	/* Processes in the deadlocked set but on no named cycle wait behind it. */
	if (fabctl_o.json) {
		fputs("],\"behind_deadlock\":[", o);
		int k = 0;
		for (uint32_t i = 0; i < n; i++)
			if (v[i].in && !v[i].reported)
				fprintf(o, "%s%u", k++ ? "," : "", v[i].p->pid);
		fprintf(o, "],\"orphans\":%d}\n", orphans);
	} else {
		for (uint32_t i = 0; i < n; i++)
			if (v[i].in && !v[i].reported) {
				char h[300];
				hop_text(&v[i], h, sizeof h);
				printf("behind the deadlock: %s\n", h);
			}
		if (!cycles && !first)
			puts("no deadlock");
	}
	free(v);
	free(tgs);
	fabctl_note_unreadable(f, "the wait-for graph leaves");
	fi_close(f);
	return cycles ? FABCTL_EXIT_DEADLOCK : 0;
}
