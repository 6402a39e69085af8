/*
 * shop-run - runs the shop pipeline (examples/pipeline.yaml) by hand,
 * without fabd: creates the fabric, its channels, limiter and contexts with
 * library calls, starts every replica of every stage with the environment
 * fabd gives a stage (docs/stage.md), logs the error channel, waits for
 * them all, prints a summary and destroys the fabric.
 *
 *   shop-run [options]
 *
 *   --fabric NAME        fabric to create (default "shop"; must not exist)
 *   --count N            orders the source emits (default 1000; 0 = endless,
 *                        until SIGINT/SIGTERM)
 *   --bad-every B        every B-th order is malformed (default 50; 0 = none)
 *   --enrich R           enrich replicas (default 20)
 *   --persist P          persist replicas (default 10)
 *   --rate R --burst B   the "api" limiter (default 200/s, burst 50)
 *   --latency-us U       enrich's simulated API call (default 300)
 *   --seed S --fail-permille F --retries K
 *                        persist's flaky store (default 0, 50, 3)
 *   --max-deliveries M   of "enriched", then dead-lettered (default 5)
 *   --result-dir DIR     stages write result lines there (FAB_SHOP_RESULT):
 *                        source.txt, ack.txt, quarantine.txt; and shop-run
 *                        writes run.txt (errors per stage, channel counters)
 *   --timeout SECONDS    cancel everything and fail after this long (default 0:
 *                        none)
 *   --quiet              count error records without printing them
 *   --keep               do not destroy the fabric at the end
 *
 * SIGINT/SIGTERM drains, as fabd does: the source's context is cancelled, it
 * closes its output and the close propagates down the pipeline; a second
 * signal cancels the root context (every stage stops at once).  The stages
 * run in a process group of their own (a terminal's ^C reaches only
 * shop-run) and die with it (PR_SET_PDEATHSIG).
 *
 * The poison channel is the dead letter of "enriched": the library writes it
 * from persist's receive calls, so no stage closes it; shop-run closes it
 * once every persist replica has exited, which ends shop-quarantine.
 *
 * Exit status: 0 every stage exited 0; 1 a stage failed, a setup call
 * failed or the timeout struck; 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <fab/fab.h>

#include "shop.h"

#define PROG "shop-run"
#define MAX_ARGS 24

struct stage {
	const char *name; /* FAB_STAGE, and the context "stage-<name>" */
	const char *prog; /* the executable, beside shop-run */
	const char *ports; /* FAB_PORTS */
	const char *result; /* FAB_SHOP_RESULT file name in --result-dir, or NULL */
	unsigned replicas;
	char *argv[MAX_ARGS];
	unsigned argc;
	fab_ctx *ctx;
	unsigned live;    /* replicas running */
	uint64_t errors;  /* records read from the error channel */
};

enum { S_SOURCE, S_VALIDATE, S_ENRICH, S_PERSIST, S_ACK, S_QUARANTINE, S_N };

static struct stage stages[S_N] = {
	[S_SOURCE] = { "source", "shop-source", "out:events=raw", "source.txt", 1 },
	[S_VALIDATE] = { "validate", "shop-validate", "in:events=raw,out:valid=validated", NULL, 1 },
	[S_ENRICH] = { "enrich", "shop-enrich", "in:events=validated,out:enriched=enriched", NULL, 20 },
	[S_PERSIST] = { "persist", "shop-persist", "in:rows=enriched,out:done=results", NULL, 10 },
	[S_ACK] = { "ack", "shop-ack", "in:done=results", "ack.txt", 1 },
	[S_QUARANTINE] = { "quarantine", "shop-quarantine", "in:poison=poison", "quarantine.txt", 1 },
};

struct child {
	pid_t pid;
	unsigned stage, replica;
};

static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
	(void)sig;
	g_signals++;
}

static void add_arg(struct stage *s, const char *a)
{
	if (s->argc + 1 < MAX_ARGS)
		s->argv[s->argc++] = (char *)a;
}

static int64_t now_ns(void)
{
	return shop_now_ns();
}

/* In the child: the stage environment exactly as fabd sets it, then exec. */
static void exec_replica(const char *bindir, const char *fabric, const struct stage *s,
			 unsigned replica, const char *result_dir, pid_t parent)
{
	char path[PATH_MAX], num[16], id[128], ctx[64], res[PATH_MAX];

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(127);
	if (snprintf(path, sizeof(path), "%s/%s", bindir, s->prog) >= (int)sizeof(path))
		_exit(127);
	snprintf(num, sizeof(num), "%u", replica);
	snprintf(id, sizeof(id), "%s.%u", s->name, replica);
	snprintf(ctx, sizeof(ctx), "stage-%s", s->name);
	setenv("FAB_FABRIC", fabric, 1);
	setenv("FAB_STAGE", s->name, 1);
	setenv("FAB_REPLICA", num, 1);
	setenv("FAB_PRODUCER_ID", id, 1);
	setenv("FAB_PORTS", s->ports, 1);
	setenv("FAB_CTX", ctx, 1);
	setenv("FAB_ERRORS", "errors", 1);
	/* The topology's per-stage `env:` (examples/pipeline.yaml). */
	unsetenv("FAB_SHOP_RESULT");
	if (result_dir && s->result) {
		if (snprintf(res, sizeof(res), "%s/%s", result_dir, s->result) >= (int)sizeof(res))
			_exit(127);
		setenv("FAB_SHOP_RESULT", res, 1);
	}
	execv(path, s->argv);
	fprintf(stderr, "%s: exec %s: %s\n", PROG, path, strerror(errno));
	_exit(127);
}

static int chan(fab_fabric *fab, const char *name, uint32_t cap, uint32_t msg_size, uint32_t kind,
		uint32_t delivery, uint32_t producers, uint32_t max_deliveries,
		const char *dead_letter, fab_chan **keep)
{
	fab_chan_opts o = {
		.size = sizeof(o),
		.capacity = cap,
		.msg_size = msg_size,
		.kind = kind,
		.delivery = delivery,
		.producers = producers,
		.max_deliveries = max_deliveries,
		.dead_letter = dead_letter,
	};
	fab_chan *ch;
	int rc = fab_chan_create(fab, name, &o, &ch);

	if (rc < 0) {
		fprintf(stderr, "%s: create channel %s: %s\n", PROG, name, fab_errmsg());
		return rc;
	}
	if (keep)
		*keep = ch;
	else
		fab_chan_release(ch); /* an spsc end must be free for the stage */
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [--fabric NAME] [--count N] [--bad-every B] [--enrich R] [--persist P]\n"
		"          [--rate R] [--burst B] [--latency-us U] [--seed S] [--fail-permille F]\n"
		"          [--retries K] [--max-deliveries M] [--result-dir DIR] [--timeout SECONDS]\n"
		"          [--quiet] [--keep]\n",
		PROG);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *fabric = "shop", *result_dir = NULL;
	const char *count = "1000", *bad_every = "50", *latency = "300", *seed = "0";
	const char *fail = "50", *retries = "3";
	uint64_t max_deliveries = 5, burst = 50, timeout_s = 0;
	double rate = 200;
	int quiet = 0, keep = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
		if (!strcmp(a, "--keep")) { keep = 1; continue; }
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--fabric")) fabric = v;
		else if (!strcmp(a, "--count")) count = v;
		else if (!strcmp(a, "--bad-every")) bad_every = v;
		else if (!strcmp(a, "--enrich")) stages[S_ENRICH].replicas = (unsigned)shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--persist")) stages[S_PERSIST].replicas = (unsigned)shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--rate")) rate = shop_arg_double(PROG, a, v);
		else if (!strcmp(a, "--burst")) burst = shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--latency-us")) latency = v;
		else if (!strcmp(a, "--seed")) seed = v;
		else if (!strcmp(a, "--fail-permille")) fail = v;
		else if (!strcmp(a, "--retries")) retries = v;
		else if (!strcmp(a, "--max-deliveries")) max_deliveries = shop_arg_u64(PROG, a, v);
		else if (!strcmp(a, "--result-dir")) result_dir = v;
		else if (!strcmp(a, "--timeout")) timeout_s = shop_arg_u64(PROG, a, v);
		else usage();
	}
	for (unsigned s = 0; s < S_N; s++)
		if (stages[s].replicas < 1 || stages[s].replicas > FAB_PRODUCERS_MAX) {
			fprintf(stderr, "%s: %s: 1..%d replicas\n", PROG, stages[s].name,
				FAB_PRODUCERS_MAX);
			return 2;
		}
	/* The command lines, as pipeline.yaml's `run:` keys give them. */
	for (unsigned s = 0; s < S_N; s++)
		add_arg(&stages[s], stages[s].prog);
	add_arg(&stages[S_SOURCE], "--count");
	add_arg(&stages[S_SOURCE], count);
	add_arg(&stages[S_SOURCE], "--bad-every");
	add_arg(&stages[S_SOURCE], bad_every);
	add_arg(&stages[S_ENRICH], "--limiter");
	add_arg(&stages[S_ENRICH], "api");
	add_arg(&stages[S_ENRICH], "--latency-us");
	add_arg(&stages[S_ENRICH], latency);
	add_arg(&stages[S_PERSIST], "--seed");
	add_arg(&stages[S_PERSIST], seed);
	add_arg(&stages[S_PERSIST], "--fail-permille");
	add_arg(&stages[S_PERSIST], fail);
	add_arg(&stages[S_PERSIST], "--retries");
	add_arg(&stages[S_PERSIST], retries);

	/* The programs live beside this one. */
	char self[PATH_MAX], bindir[PATH_MAX];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0) {
		fprintf(stderr, "%s: /proc/self/exe: %s\n", PROG, strerror(errno));
		return 1;
	}
	self[sl] = 0;
	snprintf(bindir, sizeof(bindir), "%s", dirname(self));

	/* --- the fabric, as fabd would create it from the topology --- */
	fab_fabric *fab = NULL;
	fab_chan *errs = NULL, *poison = NULL;
	fab_limiter *lim = NULL;
	fab_ctx *root = NULL;
	int status = 0, rc;

	if (fab_fabric_open(fabric, 0, &fab) == 0) {
		fprintf(stderr, "%s: fabric %s exists; remove it first (rm /dev/shm/fab.%s*)\n",
			PROG, fabric, fabric);
		fab_fabric_close(fab);
		return 1;
	}
	if ((rc = fab_fabric_open(fabric, FAB_CREATE, &fab)) < 0) {
		fprintf(stderr, "%s: create fabric %s: %s\n", PROG, fabric, fab_errmsg());
		return 1;
	}
	/* Close quorums: the writer replica count of each channel.  "poison" is
	 * written by the library on persist's behalf; shop-run is its closer. */
	unsigned P = stages[S_PERSIST].replicas, R = stages[S_ENRICH].replicas;
	if (chan(fab, "raw", 500, 4096, FAB_SPSC, 0, 1, 0, NULL, NULL) < 0 ||
	    chan(fab, "validated", 200, 4096, FAB_MPMC, 0, 1, 0, NULL, NULL) < 0 ||
	    chan(fab, "enriched", 200, 8192, FAB_MPMC, FAB_AT_LEAST_ONCE, R,
		 (uint32_t)max_deliveries, "poison", NULL) < 0 ||
	    chan(fab, "poison", 1000, 8192, FAB_MPMC, FAB_AT_LEAST_ONCE, 1, 0, NULL, &poison) < 0 ||
	    chan(fab, "results", 500, 256, FAB_MPMC, FAB_AT_LEAST_ONCE, P, 0, NULL, NULL) < 0 ||
	    chan(fab, "errors", 256, 1024, FAB_MPMC, 0, 1, 0, NULL, &errs) < 0) {
		status = 1;
		goto out;
	}
	if (fab_limiter_create(fab, "api", rate, (uint32_t)burst, &lim) < 0) {
		fprintf(stderr, "%s: limiter api: %s\n", PROG, fab_errmsg());
		status = 1;
		goto out;
	}
	if (fab_ctx_create(fab, "root", NULL, &root) < 0) {
		fprintf(stderr, "%s: context root: %s\n", PROG, fab_errmsg());
		status = 1;
		goto out;
	}
	for (unsigned s = 0; s < S_N; s++) {
		char name[64];
		snprintf(name, sizeof(name), "stage-%s", stages[s].name);
		if (fab_ctx_create(fab, name, root, &stages[s].ctx) < 0) {
			fprintf(stderr, "%s: context %s: %s\n", PROG, name, fab_errmsg());
			status = 1;
			goto out;
		}
	}

	/* --- start every replica --- */
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct child children[S_N * FAB_PRODUCERS_MAX];
	unsigned nchild = 0, live = 0;
	pid_t pgid = 0, me = getpid();
	int64_t t0 = now_ns();

	fflush(NULL);
	for (unsigned s = 0; s < S_N; s++)
		for (unsigned r = 0; r < stages[s].replicas; r++) {
			pid_t pid = fork();
			if (pid < 0) {
				fprintf(stderr, "%s: fork: %s\n", PROG, strerror(errno));
				status = 1;
				fab_ctx_cancel(root, 1);
				goto wait;
			}
			if (pid == 0) {
				setpgid(0, pgid);
				exec_replica(bindir, fabric, &stages[s], r, result_dir, me);
			}
			setpgid(pid, pgid); /* both sides, so neither races the exec */
			if (!pgid)
				pgid = pid;
			children[nchild++] = (struct child){ pid, s, r };
			stages[s].live++;
			live++;
		}
	fprintf(stderr, "%s: fabric %s: %u processes started (pgid %d)\n", PROG, fabric, nchild,
		(int)pgid);

wait:;
	/* --- log the error channel and reap until every replica is gone --- */
	int drained = 0, cancelled = 0;
	uint64_t other_errors = 0;
	while (live > 0) {
		if (g_signals >= 1 && !drained) {
			fprintf(stderr, "%s: draining (cancel the source)\n", PROG);
			fab_ctx_cancel(stages[S_SOURCE].ctx, 1);
			drained = 1;
		}
		if ((g_signals >= 2 || (timeout_s && now_ns() - t0 > (int64_t)timeout_s * 1000000000))
		    && !cancelled) {
			fprintf(stderr, "%s: %s: cancelling every stage\n", PROG,
				g_signals >= 2 ? "second signal" : "timeout");
			if (g_signals < 2)
				status = 1;
			fab_ctx_cancel(root, 2);
			cancelled = 1;
		}

		fab_stage_err rec;
		fab_ctx *tick = NULL;
		ssize_t n = FAB_EAGAIN;
		if (fab_ctx_with_timeout(NULL, 50 * 1000000LL, &tick) == 0) {
			n = fab_recv(errs, &rec, sizeof(rec), tick);
			fab_ctx_release(tick);
		}
		if (n >= (ssize_t)offsetof(fab_stage_err, text) + 1) {
			unsigned s;
			rec.stage[sizeof(rec.stage) - 1] = 0;
			rec.text[sizeof(rec.text) - 1] = 0;
			for (s = 0; s < S_N && strcmp(rec.stage, stages[s].name); s++)
				;
			if (s < S_N)
				stages[s].errors++;
			else
				other_errors++;
			if (!quiet)
				printf("%s.%u | error %d: %s\n", rec.stage, rec.replica, rec.code, rec.text);
		}

		int ws;
		pid_t pid;
		while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
			unsigned c;
			for (c = 0; c < nchild && children[c].pid != pid; c++)
				;
			if (c == nchild)
				continue;
			struct stage *st = &stages[children[c].stage];
			live--;
			st->live--;
			if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
				if (WIFEXITED(ws))
					fprintf(stderr, "%s: %s.%u exited with status %d\n", PROG,
						st->name, children[c].replica, WEXITSTATUS(ws));
				else
					fprintf(stderr, "%s: %s.%u killed by signal %d\n", PROG,
						st->name, children[c].replica, WTERMSIG(ws));
				status = 1;
				if (!cancelled) {
					fab_ctx_cancel(root, 3); /* no supervisor to restart it */
					cancelled = 1;
				}
			}
			if (children[c].stage == S_PERSIST && st->live == 0 && poison) {
				/* Nothing can be dead-lettered any more: end quarantine. */
				fab_chan_close(poison);
				fab_chan_release(poison);
				poison = NULL;
			}
		}
	}
	/* Records sent just before the last exits. */
	fab_stage_err rec;
	while (errs && fab_try_recv(errs, &rec, sizeof(rec)) > 0) {
		unsigned s;
		rec.stage[sizeof(rec.stage) - 1] = 0;
		rec.text[sizeof(rec.text) - 1] = 0;
		for (s = 0; s < S_N && strcmp(rec.stage, stages[s].name); s++)
			;
		if (s < S_N)
			stages[s].errors++;
		else
			other_errors++;
		if (!quiet)
			printf("%s.%u | error %d: %s\n", rec.stage, rec.replica, rec.code, rec.text);
	}

	/* --- the summary --- */
	if (nchild) {
		fab_stats es = { .size = sizeof(es) }, rs = { .size = sizeof(rs) };
		fab_chan *ch;
		if (fab_chan_open(fab, "enriched", FAB_RECV, &ch) == 0) {
			fab_chan_stats(ch, &es);
			fab_chan_release(ch);
		}
		if (fab_chan_open(fab, "results", FAB_RECV, &ch) == 0) {
			fab_chan_stats(ch, &rs);
			fab_chan_release(ch);
		}
		fflush(stdout);
		fprintf(stderr,
			"%s: %u processes exited in %.2f s%s\n"
			"%s: errors: validate %" PRIu64 ", enrich %" PRIu64 ", persist %" PRIu64
			", ack %" PRIu64 ", other %" PRIu64 "\n"
			"%s: enriched: sent %" PRIu64 ", nacked %" PRIu64 ", redelivered %" PRIu64
			", dead-lettered %" PRIu64 ", dropped %" PRIu64 "; results: sent %" PRIu64 "\n",
			PROG, nchild, (double)(now_ns() - t0) / 1e9,
			status ? " (FAILED)" : "", PROG, stages[S_VALIDATE].errors,
			stages[S_ENRICH].errors, stages[S_PERSIST].errors, stages[S_ACK].errors,
			other_errors + stages[S_SOURCE].errors + stages[S_QUARANTINE].errors, PROG,
			es.sent, es.nacked, es.redelivered, es.dead_lettered, es.dead_dropped, rs.sent);
		if (result_dir) {
			char path[PATH_MAX];
			FILE *f;
			if (snprintf(path, sizeof(path), "%s/run.txt", result_dir) >=
			    (int)sizeof(path))
				f = NULL, errno = ENAMETOOLONG;
			else
				f = fopen(path, "w");
			if (f) {
				fprintf(f,
					"status=%d errors_validate=%" PRIu64 " errors_enrich=%" PRIu64
					" errors_persist=%" PRIu64 " errors_ack=%" PRIu64
					" errors_other=%" PRIu64 " enriched_sent=%" PRIu64
					" nacked=%" PRIu64 " redelivered=%" PRIu64
					" dead_lettered=%" PRIu64 " dead_dropped=%" PRIu64
					" results_sent=%" PRIu64 "\n",
					status, stages[S_VALIDATE].errors, stages[S_ENRICH].errors,
					stages[S_PERSIST].errors, stages[S_ACK].errors,
					other_errors + stages[S_SOURCE].errors +
						stages[S_QUARANTINE].errors,
					es.sent, es.nacked, es.redelivered, es.dead_lettered,
					es.dead_dropped, rs.sent);
				if (fclose(f) != 0)
					status = 1;
			} else {
				fprintf(stderr, "%s: %s: %s\n", PROG, path, strerror(errno));
				status = 1;
			}
		}
	}

out:
	for (unsigned s = 0; s < S_N; s++)
		fab_ctx_release(stages[s].ctx);
	fab_ctx_release(root);
	fab_limiter_release(lim);
	fab_chan_release(poison);
	fab_chan_release(errs);
	fab_fabric_close(fab);
	if (!keep && fab_fabric_destroy(fabric) < 0) {
		fprintf(stderr, "%s: destroy fabric %s: %s\n", PROG, fabric, fab_errmsg());
		status = 1;
	}
	return status;
}
