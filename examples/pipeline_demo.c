/*
 * pipeline_demo.c - fab-demo-pipeline: the seed's fan-out/fan-in pipeline,
 * with every stage its own process.
 *
 *   source --jobs (mpmc)--> K workers --results (mpmc, producers = K)--> sink
 *
 * The source sends N sequence-numbered jobs and closes "jobs"; each worker
 * receives jobs until FAB_ECLOSED, squares the number, sends a result and
 * finally closes its handle on "results".  "results" is declared with
 * producers = K, so it closes when the last worker closed: the close quorum
 * does the job of Go's WaitGroup-then-close.  The sink (this process) drains
 * "results" until FAB_ECLOSED and checks that every job came back exactly
 * once with the right answer.
 *
 * Every blocking call runs under one shared context, "stop".  A thread of
 * the parent cancels it on SIGINT/SIGTERM, on the -t timeout, or when a child
 * dies abnormally, which wakes every process blocked in the pipeline at once
 * (Go's ctx.Done()).  The fabric is destroyed on every way out.
 *
 * Exit status: 0 every record arrived exactly once and correct; 1 a record
 * was lost, duplicated or wrong, or a stage failed; 2 usage; 130 interrupted.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <fab/fab.h>

#define MAX_WORKERS FAB_PRODUCERS_MAX

enum { STOP_SIGNAL = 1, STOP_TIMEOUT = 2, STOP_CHILD = 3 };

struct job {
	uint64_t seq;
	int64_t value;
};

struct result {
	uint64_t seq;
	int64_t value;
	int64_t square;
	uint32_t worker;
	uint32_t pad;
};

static char g_fabric[FAB_NAME_MAX + 1];
static pid_t g_pids[MAX_WORKERS + 1];
static int g_status[MAX_WORKERS + 1];
static unsigned g_nchild;
static double g_timeout_s = 60;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t job_value(uint64_t seq)
{
	/* Something less regular than seq itself, negative half the time. */
	return (int64_t)(seq * 2654435761u % 2000003u) - 1000001;
}

static void die_child(const char *who, const char *call, int rc)
{
	/* Cancellation is the expected way to stop early: not an error. */
	if (rc == FAB_ECANCELED)
		_exit(3);
	fprintf(stderr, "fab-demo-pipeline: %s: %s: %s (%s)\n", who, call, fab_errname(rc),
		fab_errmsg());
	_exit(1);
}

/* A child opens its own fabric, channel and context handles: the parent's
 * are invalid after fork. */
static void child_open(const char *who, unsigned role_jobs, unsigned role_results,
		       fab_fabric **fab, fab_chan **jobs, fab_chan **results, fab_ctx **ctx)
{
	int rc;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if ((rc = fab_fabric_open(g_fabric, 0, fab)) != 0)
		die_child(who, "fab_fabric_open", rc);
	if (role_jobs && (rc = fab_chan_open(*fab, "jobs", role_jobs, jobs)) != 0)
		die_child(who, "fab_chan_open(jobs)", rc);
	if (role_results && (rc = fab_chan_open(*fab, "results", role_results, results)) != 0)
		die_child(who, "fab_chan_open(results)", rc);
	if ((rc = fab_ctx_open(*fab, "stop", ctx)) != 0)
		die_child(who, "fab_ctx_open(stop)", rc);
}

static void source_main(uint64_t n)
{
	fab_fabric *fab;
	fab_chan *jobs;
	fab_ctx *ctx;
	struct job j;
	uint64_t i;
	int rc;

	child_open("source", FAB_SEND, 0, &fab, &jobs, NULL, &ctx);
	for (i = 0; i < n; i++) {
		j.seq = i;
		j.value = job_value(i);
		if ((rc = fab_send(jobs, &j, sizeof j, ctx)) != 0)
			die_child("source", "fab_send(jobs)", rc);
	}
	/* Go's close(jobs): workers drain what is queued, then see ECLOSED. */
	if ((rc = fab_chan_close(jobs)) != 0)
		die_child("source", "fab_chan_close(jobs)", rc);
	fab_ctx_release(ctx);
	fab_chan_release(jobs);
	fab_fabric_close(fab);
	_exit(0);
}

static void worker_main(unsigned k)
{
	fab_chan *jobs, *results;
	char who[32];
	fab_fabric *fab;
	struct result r;
	fab_ctx *ctx;
	struct job j;
	ssize_t n;
	int rc;

	snprintf(who, sizeof who, "worker %u", k);
	child_open(who, FAB_RECV, FAB_SEND, &fab, &jobs, &results, &ctx);
	for (;;) {
		n = fab_recv(jobs, &j, sizeof j, ctx);
		if (n == FAB_ECLOSED)
			break;
		if (n < 0)
			die_child(who, "fab_recv(jobs)", (int)n);
		if (n != (ssize_t)sizeof j) {
			fprintf(stderr, "fab-demo-pipeline: %s: job of %zd bytes\n", who, n);
			_exit(1);
		}
		memset(&r, 0, sizeof r);
		r.seq = j.seq;
		r.value = j.value;
		r.square = j.value * j.value;
		r.worker = k;
		if ((rc = fab_send(results, &r, sizeof r, ctx)) != 0)
			die_child(who, "fab_send(results)", rc);
	}
	/* One of K closes: "results" closes when all K workers did. */
	if ((rc = fab_chan_close(results)) != 0)
		die_child(who, "fab_chan_close(results)", rc);
	fab_ctx_release(ctx);
	fab_chan_release(results);
	fab_chan_release(jobs);
	fab_fabric_close(fab);
	_exit(0);
}

/* The supervisor thread: reaps the children and cancels "stop" on a signal,
 * the timeout or an abnormal child exit.  Returns when all are reaped. */
struct super {
	fab_fabric *fab;
	sigset_t set;
	int reason; /* why it cancelled, or 0 */
};

static void *super_main(void *arg)
{
	struct super *s = arg;
	double deadline = now_s() + g_timeout_s, kill_at = 0;
	unsigned left = g_nchild, i;
	struct timespec ts;
	fab_ctx *ctx = NULL;
	double wait;
	int sig, st;
	pid_t p;

	/* A handle of our own: the sink thread uses the other one. */
	if (fab_ctx_open(s->fab, "stop", &ctx) != 0)
		ctx = NULL;
	while (left > 0) {
		wait = (kill_at ? kill_at : deadline) - now_s();
		if (wait < 0)
			wait = 0;
		ts.tv_sec = (time_t)wait;
		ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
		sig = sigtimedwait(&s->set, NULL, &ts);
		if (sig == SIGINT || sig == SIGTERM) {
			if (!s->reason)
				s->reason = STOP_SIGNAL;
		} else if (sig < 0 && errno == EAGAIN) {
			if (kill_at) {
				/* Cancelled but still running: force it. */
				for (i = 0; i < g_nchild; i++)
					if (g_pids[i] > 0)
						kill(g_pids[i], SIGKILL);
			} else if (!s->reason) {
				s->reason = STOP_TIMEOUT;
			}
		}
		while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
			for (i = 0; i < g_nchild; i++) {
				if (g_pids[i] == p) {
					g_pids[i] = 0;
					g_status[i] = st;
					left--;
					if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !s->reason)
						s->reason = STOP_CHILD;
				}
			}
		}
		if (s->reason && !kill_at) {
			if (ctx)
				fab_ctx_cancel(ctx, s->reason);
			kill_at = now_s() + 2; /* grace for the cancelled calls */
		}
	}
	if (!ctx && s->reason) {
		/* Nothing could cancel the sink's fab_recv: leave cleanly anyway. */
		fprintf(stderr, "fab-demo-pipeline: cannot open context \"stop\" to cancel the sink\n");
		fab_fabric_destroy(g_fabric);
		_exit(1);
	}
	if (ctx)
		fab_ctx_release(ctx);
	return NULL;
}

static void print_stats(const char *name, fab_chan *ch)
{
	fab_stats st;
	int rc;

	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	rc = fab_chan_stats(ch, &st);
	if (rc != 0) {
		printf("  %-8s stats: %s\n", name, fab_errname(rc));
		return;
	}
	printf("  %-8s %s cap %" PRIu32 ": sent %" PRIu64 ", received %" PRIu64
	       ", queued %" PRIu64 ", %s (%" PRIu32 "/%" PRIu32
	       " producers closed), futex sleeps %" PRIu64 ", wakes %" PRIu64 "\n",
	       name, st.kind == FAB_SPSC ? "spsc" : "mpmc", st.capacity, st.sent,
	       st.received, st.len, st.closed ? "closed" : "open", st.closes, st.producers,
	       st.futex_waits, st.futex_wakes);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fab-demo-pipeline [-n N] [-w K] [-c CAPACITY] [-t SECONDS]\n"
		"  source -> jobs -> K worker processes -> results -> sink, checked\n"
		"  -n N         jobs to send (default 100000)\n"
		"  -w K         worker processes, 1..%d (default 4)\n"
		"  -c CAPACITY  capacity of both channels (default 64)\n"
		"  -t SECONDS   give up (cancel the pipeline) after this long (default 60)\n",
		MAX_WORKERS);
}

static int parse_num(const char *s, unsigned long long lo, unsigned long long hi,
		     unsigned long long *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int create_chan(fab_fabric *fab, const char *name, uint32_t cap, uint32_t size,
		       uint32_t producers, fab_chan **out)
{
	fab_chan_opts o;
	int rc;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.capacity = cap;
	o.msg_size = size;
	o.kind = FAB_MPMC;
	o.producers = producers;
	rc = fab_chan_create(fab, name, &o, out);
	if (rc != 0)
		fprintf(stderr, "fab-demo-pipeline: fab_chan_create(%s): %s (%s)\n", name,
			fab_errname(rc), fab_errmsg());
	return rc;
}

int main(int argc, char **argv)
{
	unsigned long long n = 100000, workers = 4, cap = 64, v;
	uint64_t got = 0, dups = 0, wrong = 0, missing = 0, per[MAX_WORKERS], i;
	fab_chan *jobs = NULL, *results = NULL;
	fab_fabric *fab = NULL;
	fab_ctx *ctx = NULL;
	struct super sup;
	pthread_t th;
	unsigned char *seen = NULL;
	double t0, t1;
	struct result r;
	ssize_t len;
	int opt, rc, status = 1, stop = 0;
	unsigned k;
	pid_t pid;

	while ((opt = getopt(argc, argv, "n:w:c:t:h")) != -1) {
		switch (opt) {
		case 'n':
			if (parse_num(optarg, 1, 1ull << 36, &n))
				goto bad;
			break;
		case 'w':
			if (parse_num(optarg, 1, MAX_WORKERS, &workers))
				goto bad;
			break;
		case 'c':
			if (parse_num(optarg, 0, FAB_CAPACITY_MAX, &cap))
				goto bad;
			break;
		case 't':
			if (parse_num(optarg, 1, 86400, &v))
				goto bad;
			g_timeout_s = (double)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		goto bad;

	seen = calloc((size_t)(n + 7) / 8, 1);
	if (!seen) {
		fprintf(stderr, "fab-demo-pipeline: out of memory for %llu records\n", n);
		return 1;
	}
	memset(per, 0, sizeof per);
	snprintf(g_fabric, sizeof g_fabric, "demo-pipeline-%ld", (long)getpid());
	rc = fab_fabric_open(g_fabric, FAB_CREATE, &fab);
	if (rc != 0) {
		fprintf(stderr, "fab-demo-pipeline: fab_fabric_open(%s): %s (%s)\n", g_fabric,
			fab_errname(rc), fab_errmsg());
		free(seen);
		return 1;
	}
	if (create_chan(fab, "jobs", (uint32_t)cap, sizeof(struct job), 1, &jobs) ||
	    create_chan(fab, "results", (uint32_t)cap, sizeof(struct result),
			(uint32_t)workers, &results))
		goto out;
	if ((rc = fab_ctx_create(fab, "stop", NULL, &ctx)) != 0) {
		fprintf(stderr, "fab-demo-pipeline: fab_ctx_create(stop): %s (%s)\n",
			fab_errname(rc), fab_errmsg());
		goto out;
	}

	/* Signals are taken by the supervisor thread (sigtimedwait); children
	 * inherit the mask, so a terminal's ^C reaches them as a cancellation
	 * of "stop", not as a kill. */
	memset(&sup, 0, sizeof sup);
	sup.fab = fab;
	sigemptyset(&sup.set);
	sigaddset(&sup.set, SIGINT);
	sigaddset(&sup.set, SIGTERM);
	sigaddset(&sup.set, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &sup.set, NULL);

	printf("fab-demo-pipeline: source -> jobs -> %llu workers -> results -> sink, %llu jobs, capacity %llu\n",
	       workers, n, cap);
	fflush(stdout);
	t0 = now_s();
	for (k = 0; k <= workers; k++) {
		pid = fork();
		if (pid < 0) {
			perror("fab-demo-pipeline: fork");
			for (i = 0; i < g_nchild; i++)
				kill(g_pids[i], SIGKILL);
			while (wait(NULL) > 0)
				;
			goto out;
		}
		if (pid == 0) {
			if (k == 0)
				source_main(n);
			worker_main(k - 1);
		}
		g_pids[g_nchild++] = pid;
	}
	if (pthread_create(&th, NULL, super_main, &sup) != 0) {
		fprintf(stderr, "fab-demo-pipeline: pthread_create failed\n");
		for (i = 0; i < g_nchild; i++)
			kill(g_pids[i], SIGKILL);
		while (wait(NULL) > 0)
			;
		goto out;
	}

	/* The sink: Go's `for r := range results`. */
	for (;;) {
		len = fab_recv(results, &r, sizeof r, ctx);
		if (len == FAB_ECLOSED)
			break;
		if (len < 0) {
			if (len != FAB_ECANCELED)
				fprintf(stderr, "fab-demo-pipeline: sink: fab_recv(results): %s (%s)\n",
					fab_errname((int)len), fab_errmsg());
			stop = 1;
			break;
		}
		if (len != (ssize_t)sizeof r || r.seq >= n) {
			wrong++;
			continue;
		}
		if (seen[r.seq / 8] & (1u << (r.seq % 8))) {
			dups++;
			continue;
		}
		seen[r.seq / 8] |= (unsigned char)(1u << (r.seq % 8));
		got++;
		if (r.value != job_value(r.seq) || r.square != r.value * r.value ||
		    r.worker >= workers)
			wrong++;
		else
			per[r.worker]++;
	}
	t1 = now_s();
	pthread_join(th, NULL); /* returns once every child is reaped */

	for (i = 0; i < n; i++)
		if (!(seen[i / 8] & (1u << (i % 8))))
			missing++;
	for (k = 0; k < g_nchild; k++) {
		int st = g_status[k];

		if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
			const char *who = k == 0 ? "source" : "worker";

			if (WIFSIGNALED(st))
				printf("  %s %u killed by signal %d\n", who, k ? k - 1 : 0,
				       WTERMSIG(st));
			else
				printf("  %s %u exited with status %d%s\n", who, k ? k - 1 : 0,
				       WEXITSTATUS(st),
				       WEXITSTATUS(st) == 3 ? " (cancelled)" : "");
		}
	}
	if (sup.reason == STOP_SIGNAL)
		printf("interrupted: cancelled the pipeline\n");
	else if (sup.reason == STOP_TIMEOUT)
		printf("timed out after %.0f s: cancelled the pipeline\n", g_timeout_s);
	else if (sup.reason == STOP_CHILD)
		printf("a stage failed: cancelled the pipeline\n");

	printf("received %" PRIu64 " of %llu results: %" PRIu64 " missing, %" PRIu64
	       " duplicated, %" PRIu64 " wrong\n",
	       got, n, missing, dups, wrong);
	printf("per worker:");
	for (k = 0; k < workers; k++)
		printf(" %" PRIu64, per[k]);
	printf("\nelapsed %.3f s, %.0f results/s end to end\n", t1 - t0,
	       t1 > t0 ? (double)got / (t1 - t0) : 0.0);
	printf("channels:\n");
	print_stats("jobs", jobs);
	print_stats("results", results);
	if (sup.reason == STOP_SIGNAL)
		status = 130;
	else if (!stop && !sup.reason && missing == 0 && dups == 0 && wrong == 0)
		status = 0;
	printf("%s\n", status == 0   ? "OK: every job came back exactly once, squared" :
		       status == 130 ? "INTERRUPTED" :
				       "FAILED");

out:
	if (ctx)
		fab_ctx_release(ctx);
	if (results)
		fab_chan_release(results);
	if (jobs)
		fab_chan_release(jobs);
	if (fab)
		fab_fabric_close(fab);
	rc = fab_fabric_destroy(g_fabric);
	if (rc != 0)
		fprintf(stderr, "fab-demo-pipeline: fab_fabric_destroy(%s): %s\n", g_fabric,
			fab_errname(rc));
	free(seen);
	return status;

bad:
	usage(stderr);
	return 2;
}
