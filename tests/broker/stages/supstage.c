/* supstage.c - test stage for the supervision tests (test_supervise.c).
 * ROLE selects what it does; every role first appends one start record
 * "<stage> <replica> <pid>\n" to START_FILE (one O_APPEND write, so lines of
 * concurrent processes do not mix) and counts its incarnation: the number of
 * records of its own stage.replica in the file, this one included.
 *
 *   source  sends uint64 i = k..N-1 on "out", where k is the number of lines
 *           already in SENT (a restarted source resumes); after each send that
 *           returned 0 it appends "i\n" to SENT.  In its first incarnation,
 *           when HOLD_AT is set and i reaches it, it creates the file HELD and
 *           waits until the file RELEASE exists (or its context ends).  Then it
 *           closes and exits 0.
 *   worker  forwards "in" to "out" (acking after the send).  With CRASH=1,
 *           its first incarnation waits for the files HELD and GO, receives
 *           one message and exits 1 without acknowledging or forwarding it.
 *           With CRASH_REPLICA=r, replica r's first incarnation exits 1 at
 *           once, without closing its out channel.
 *   sink    receives from "in" until closed; appends "v\n" to GOT for every
 *           message before acking it.  In its first incarnation with
 *           HOLD_AT=k, after recording the k-th message it creates SINK_HELD
 *           and waits (unacked) for RELEASE.
 *   exiter  no ports needed: while its incarnation is below STAY_AT it exits
 *           with EXIT_CODE (default 0) at once; from STAY_AT on it waits for
 *           its context to end and exits 0.
 *   termsource  a source replica that stops on SIGTERM the way a stage
 *           should (docs/fabd.md "scale"): it closes its outputs
 *           (fab_stage_close) and exits 0.  With its handler installed it
 *           creates "<GO>.<replica>.<incarnation>.ready", then waits for the
 *           file "<GO>.<replica>.<incarnation>" (or its context to end), then
 *           sends COUNT values replica*1000 + incarnation*100 + i
 *           (i < COUNT <= 100), appending each to SENT once its send returned
 *           0, closes ("sent COUNT, closed"), waits until the file LINGER
 *           exists when LINGER is set, and exits 0 -- or 1 in the first
 *           incarnation of replica FAIL_REPLICA (it closed, then failed).
 *           A send that fails
 *           is printed ("send <value>: <error>") and the replica exits 3
 *           after closing.
 *   hanger  no ports needed: while its incarnation is below STAY_AT it stops
 *           calling the library (pause(), a hang for the watchdog); from
 *           STAY_AT on it sleeps inside the library (fab_ctx_wait) for
 *           WAIT_MS, then appends "done\n" to DONE_FILE and waits for its
 *           context to end (fab_ctx_wait again) and exits 0.  With
 *           IGNORE_TERM=1 it ignores SIGTERM (a replica a scale down cannot
 *           stop).
 *
 * Every wait here is for a file or the context; the test bounds them. */
#include "stage_common.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *env_str(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static void append_line(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line)) {
		perror(path);
		exit(2);
	}
	close(fd);
}

static int exists(const char *path)
{
	return path && access(path, F_OK) == 0;
}

static void touch(const char *path)
{
	if (path)
		write_file(path, "1\n");
}

static void nap(void)
{
	struct timespec ts = { 0, 1000000 };
	nanosleep(&ts, NULL);
}

/* Wait until `path` exists or the context ends. */
static void wait_file(const char *path, fab_ctx *ctx)
{
	while (path && !exists(path) && fab_ctx_err(ctx) == 0)
		nap();
}

static unsigned long count_lines(const char *path, const char *prefix)
{
	FILE *f = path ? fopen(path, "r") : NULL;
	unsigned long n = 0;
	char line[256];
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (!prefix || !strncmp(line, prefix, strlen(prefix)))
			n++;
	fclose(f);
	return n;
}

static unsigned long record_start(void)
{
	const char *path = env_str("START_FILE");
	const char *stage = env_str("FAB_STAGE"), *rep = env_str("FAB_REPLICA");
	char me[160], line[200];
	snprintf(me, sizeof me, "%s %s ", stage ? stage : "?", rep ? rep : "?");
	snprintf(line, sizeof line, "%s%d\n", me, (int)getpid());
	if (!path)
		return 1;
	append_line(path, line);
	return count_lines(path, me);
}

static int source(fab_stage *st, unsigned long inc)
{
	fab_chan *out = fab_stage_out(st, "out");
	fab_ctx *ctx = fab_stage_ctx(st);
	const char *sent = env_str("SENT");
	uint64_t n = env_u64("N", 0), i = count_lines(sent, NULL);
	uint64_t hold = env_u64("HOLD_AT", UINT64_MAX);
	char line[32];
	for (;; i++) {
		if (inc == 1 && i == hold) {
			touch(env_str("HELD"));
			wait_file(env_str("RELEASE"), ctx);
		}
		if (i >= n)
			break;
		int rc = fab_send(out, &i, sizeof i, ctx);
		if (rc == FAB_ECANCELED || rc == FAB_ECLOSED)
			break;
		if (rc < 0) {
			fprintf(stderr, "send: %s\n", fab_errmsg());
			return 1;
		}
		snprintf(line, sizeof line, "%llu\n", (unsigned long long)i);
		if (sent)
			append_line(sent, line);
	}
	printf("source sent up to %llu\n", (unsigned long long)i);
	fab_stage_close(st);
	return 0;
}

static int worker(fab_stage *st, unsigned long inc)
{
	fab_chan *in = fab_stage_in(st, "in"), *out = fab_stage_out(st, "out");
	fab_ctx *ctx = fab_stage_ctx(st);
	int crash = inc == 1 && env_u64("CRASH", 0) == 1;
	uint64_t v, n = 0;
	const char *cr = env_str("CRASH_REPLICA"), *me = env_str("FAB_REPLICA");
	if (inc == 1 && cr && me && !strcmp(cr, me)) {
		fprintf(stderr, "exiting without a close on purpose\n");
		_exit(1);
	}
	if (crash) {
		wait_file(env_str("HELD"), ctx);
		wait_file(env_str("GO"), ctx);
	}
	for (;;) {
		ssize_t len = fab_recv(in, &v, sizeof v, ctx);
		if (len == FAB_ECLOSED || len == FAB_ECANCELED)
			break;
		if (len < 0) {
			fprintf(stderr, "recv: %s\n", fab_errmsg());
			return 1;
		}
		if (crash) {
			fprintf(stderr, "crashing on purpose\n");
			_exit(1);
		}
		int rc = fab_send(out, &v, (size_t)len, ctx);
		if (rc == FAB_ECANCELED)
			break;
		if (rc < 0) {
			fprintf(stderr, "send: %s\n", fab_errmsg());
			return 1;
		}
		fab_ack(in);
		n++;
	}
	printf("worker forwarded %llu\n", (unsigned long long)n);
	fab_stage_close(st);
	return 0;
}

static int sink(fab_stage *st, unsigned long inc)
{
	fab_chan *in = fab_stage_in(st, "in");
	fab_ctx *ctx = fab_stage_ctx(st);
	const char *got = env_str("GOT");
	uint64_t hold = inc == 1 ? env_u64("HOLD_AT", 0) : 0, count = 0, v;
	char line[32];
	for (;;) {
		ssize_t len = fab_recv(in, &v, sizeof v, ctx);
		if (len == FAB_ECLOSED || len == FAB_ECANCELED)
			break;
		if (len < 0) {
			fprintf(stderr, "recv: %s\n", fab_errmsg());
			return 1;
		}
		snprintf(line, sizeof line, "%llu\n", (unsigned long long)v);
		if (got)
			append_line(got, line);
		if (++count == hold) {
			touch(env_str("SINK_HELD"));
			wait_file(env_str("RELEASE"), ctx);
		}
		fab_ack(in);
	}
	printf("sink got %llu\n", (unsigned long long)count);
	fab_stage_close(st);
	return 0;
}

static int exiter(fab_stage *st, unsigned long inc)
{
	if (inc < env_u64("STAY_AT", 1)) {
		fab_stage_close(st);
		return (int)env_u64("EXIT_CODE", 0);
	}
	fab_ctx_wait(fab_stage_ctx(st));
	fab_stage_close(st);
	return 0;
}

static volatile sig_atomic_t got_term;

static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

static int termsource(fab_stage *st, unsigned long inc)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	fab_chan *out = fab_stage_out(st, "out");
	fab_ctx *ctx = fab_stage_ctx(st);
	const char *rep = env_str("FAB_REPLICA"), *sent = env_str("SENT");
	uint64_t r = env_u64("FAB_REPLICA", 0), count = env_u64("COUNT", 0);
	char go[4200], ready[4300], line[32];
	snprintf(go, sizeof go, "%s.%s.%lu", env_str("GO") ? env_str("GO") : "go", rep ? rep : "0",
		 inc);
	snprintf(ready, sizeof ready, "%s.ready", go);
	touch(ready);
	while (!exists(go) && !got_term && fab_ctx_err(ctx) == 0)
		nap();
	if (got_term) {
		fab_stage_close(st);
		printf("closed on SIGTERM\n");
		return 0;
	}
	for (uint64_t i = 0; i < count && i < 100; i++) {
		uint64_t v = r * 1000 + inc * 100 + i;
		int rc = fab_send(out, &v, sizeof v, ctx);
		if (rc < 0) {
			printf("send %llu: %s\n", (unsigned long long)v, fab_strerror(rc));
			fab_stage_close(st);
			return 3;
		}
		snprintf(line, sizeof line, "%llu\n", (unsigned long long)v);
		if (sent)
			append_line(sent, line);
	}
	fab_stage_close(st);
	printf("sent %llu, closed\n", (unsigned long long)count);
	const char *linger = env_str("LINGER");
	if (linger) {
		/* closed, still running: until the file LINGER exists (the
		 * stage's context was released with the stage) */
		fflush(stdout);
		while (!exists(linger))
			nap();
	}
	const char *fail = env_str("FAIL_REPLICA");
	if (inc == 1 && fail && rep && !strcmp(fail, rep)) {
		printf("failing after the close on purpose\n");
		return 1;
	}
	return 0;
}

static int hanger(fab_stage *st, unsigned long inc)
{
	if (env_u64("IGNORE_TERM", 0))
		signal(SIGTERM, SIG_IGN); /* a replica that will not stop (SIGKILL ends it) */
	if (inc < env_u64("STAY_AT", 1))
		for (;;)
			pause();
	fab_ctx *c = NULL;
	if (fab_ctx_with_timeout(fab_stage_ctx(st), (int64_t)env_u64("WAIT_MS", 1000) * 1000000,
				 &c) < 0) {
		fprintf(stderr, "hanger: fab_ctx_with_timeout: %s\n", fab_errmsg());
		return 2;
	}
	int rc = fab_ctx_wait(c);
	fab_ctx_release(c);
	if (rc != FAB_ETIMEDOUT) {
		fprintf(stderr, "hanger: fab_ctx_wait: %s\n", fab_strerror(rc));
		return 2;
	}
	if (env_str("DONE_FILE"))
		append_line(env_str("DONE_FILE"), "done\n");
	fab_ctx_wait(fab_stage_ctx(st));
	fab_stage_close(st);
	return 0;
}

int main(void)
{
	unsigned long inc = record_start();
	fab_stage *st = open_stage();
	const char *role = env_str("ROLE");
	if (!role)
		role = "";
	if (!strcmp(role, "source"))
		return source(st, inc);
	if (!strcmp(role, "worker"))
		return worker(st, inc);
	if (!strcmp(role, "sink"))
		return sink(st, inc);
	if (!strcmp(role, "exiter"))
		return exiter(st, inc);
	if (!strcmp(role, "termsource"))
		return termsource(st, inc);
	if (!strcmp(role, "hanger"))
		return hanger(st, inc);
	fprintf(stderr, "supstage: unknown ROLE '%s'\n", role);
	return 2;
}
