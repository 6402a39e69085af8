/* test_supervise.c - fabd's supervision end to end (docs/fabd.md "A child
 * death", DESIGN §5): the strategies one_for_all and rest_for_one, the
 * restart policies always and never, and a SIGKILLed fabd whose stages die
 * with it (PR_SET_PDEATHSIG) and whose successor re-attaches the segments.
 *
 * The stage program is stages/supstage.c: every process appends a start
 * record "<stage> <replica> <pid>" to a file, sources record confirmed sends,
 * sinks record what they got, and "hold" points (a stage waits for a file
 * the test creates) make every interleaving that matters deterministic.
 * Nothing measures time; every wait is for an event, bounded only by the
 * test's timeout.  The test process is a child subreaper, so the stages of a
 * killed fabd are reparented to it and reaped here; Check kills the test's
 * process group after every test, and the unchecked teardown (in the runner,
 * also after a failure) removes the fabrics and directories.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fab/fab.h>

#include "broker_test.h"

static const char *const tags[] = { "all",  "rest",   "always", "never",   "pool",
				     "kill", "drainb", "wdog",   "drainc", "reclose", NULL };

static void names(const char *tag, pid_t rp, char *fabric, size_t fl, char *dir, size_t dl)
{
	snprintf(fabric, fl, "tsup-%s-%d", tag, (int)rp);
	snprintf(dir, dl, "/tmp/fabd-sup-%s-%d", tag, (int)rp);
}

static void teardown_all(void)
{
	char fabric[64], dir[256];
	for (int i = 0; tags[i]; i++) {
		names(tags[i], getpid(), fabric, sizeof fabric, dir, sizeof dir);
		fab_fabric_destroy(fabric);
		rm_tree(dir);
	}
}

typedef struct tenv {
	char fabric[64];
	char dir[256];
	char yaml[300], log[300];
	char starts[300], sent[300], got[300];
	char held[300], sink_held[300], release[300], go[300];
} tenv;

static void setup_env(tenv *e, const char *tag)
{
	/* Stages orphaned by a killed fabd come to us (and are reaped here). */
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	names(tag, runner(), e->fabric, sizeof e->fabric, e->dir, sizeof e->dir);
	fab_fabric_destroy(e->fabric);
	rm_tree(e->dir);
	ck_assert_int_eq(mkdir(e->dir, 0700), 0);
#define P(f, name) snprintf(e->f, sizeof e->f, "%s/" name, e->dir)
	P(yaml, "topology.yaml");
	P(log, "fabd.log");
	P(starts, "starts");
	P(sent, "sent");
	P(got, "got");
	P(held, "held");
	P(sink_held, "sink_held");
	P(release, "release");
	P(go, "go");
#undef P
}

/* `fabd run YAML`, stdout and stderr appended to the log file. */
static pid_t start_fabd(const tenv *e)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd < 0)
			_exit(120);
		dup2(fd, 1);
		dup2(fd, 2);
		/* fabd's control socket and lock go in the test's directory, so
		 * a SIGKILLed fabd leaves nothing behind after the teardown. */
		setenv("XDG_RUNTIME_DIR", e->dir, 1);
		execl(FABD_PATH, "fabd", "run", e->yaml, (char *)NULL);
		_exit(121);
	}
	return pid;
}

static int exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* The start records: how many processes of stage `stage` (any replica)
 * started, and their pids. */
typedef struct starts {
	int n;
	pid_t pid[64];
} starts;

static starts starts_of(const tenv *e, const char *stage)
{
	starts s = { 0, { 0 } };
	FILE *f = fopen(e->starts, "r");
	char name[128];
	unsigned rep;
	int pid;
	if (!f)
		return s;
	while (fscanf(f, "%127s %u %d", name, &rep, &pid) == 3)
		if (!strcmp(name, stage) && s.n < 64)
			s.pid[s.n++] = pid;
	fclose(f);
	return s;
}

/* Wait (bounded by the test timeout) until stage has started `n` times. */
static void wait_starts(const tenv *e, const char *stage, int n)
{
	while (starts_of(e, stage).n < n)
		nap();
}

/* Per-value counts of the numbers listed one per line in `path`, values
 * below `n`; *bad counts the others. */
static unsigned *tally(const char *path, unsigned n, unsigned *bad)
{
	unsigned *c = calloc(n ? n : 1, sizeof *c);
	ck_assert_ptr_nonnull(c);
	*bad = 0;
	FILE *f = fopen(path, "r");
	unsigned long long v;
	while (f && fscanf(f, "%llu", &v) == 1) {
		if (v < n)
			c[v]++;
		else
			(*bad)++;
	}
	if (f)
		fclose(f);
	return c;
}

/* Every value 0..n-1 received exactly once. */
static void assert_exactly_once(const char *path, unsigned n)
{
	unsigned bad;
	unsigned *c = tally(path, n, &bad);
	ck_assert_uint_eq(bad, 0);
	for (unsigned i = 0; i < n; i++)
		ck_assert_msg(c[i] == 1, "value %u received %u times", i, c[i]);
	free(c);
}

/* source -> jobs -> [middle stages] -> sink.  `middle` is the
 * YAML of the stages between source and sink; `source_extra`/`sink_extra`
 * go into their mappings. */
static void topology(const tenv *e, const char *channels, const char *source_extra,
		     const char *middle, const char *sink_in, const char *sink_extra,
		     const char *tail)
{
	char y[8192];
	snprintf(y, sizeof y,
		 "fabric: %s\n"
		 "channels:\n%s"
		 "stages:\n"
		 "  source:\n"
		 "    run: %s/supstage\n"
		 "    out: { out: jobs }\n"
		 "    backoff: 1ms\n"
		 "    env: { ROLE: source, START_FILE: %s, SENT: %s, HELD: %s, RELEASE: %s%s }\n"
		 "%s"
		 "  sink:\n"
		 "    run: %s/supstage\n"
		 "    in: { in: %s }\n"
		 "    backoff: 1ms\n"
		 "    env: { ROLE: sink, START_FILE: %s, GOT: %s, SINK_HELD: %s, RELEASE: %s%s }\n"
		 "metrics: { listen: off }\n"
		 "%s",
		 e->fabric, channels, STAGE_DIR, e->starts, e->sent, e->held, e->release,
		 source_extra, middle, STAGE_DIR, sink_in, e->starts, e->got, e->sink_held,
		 e->release, sink_extra, tail);
	write_text(e->yaml, y);
}

static void worker_yaml(char *buf, size_t n, const tenv *e, const char *name, const char *in,
			const char *out, const char *extra, const char *env_extra)
{
	snprintf(buf, n,
		 "  %s:\n"
		 "    run: %s/supstage\n"
		 "    in: { in: %s }\n"
		 "    out: { out: %s }\n"
		 "    backoff: 1ms\n"
		 "%s"
		 "    env: { ROLE: worker, START_FILE: %s, HELD: %s, GO: %s%s }\n",
		 name, STAGE_DIR, in, out, extra, e->starts, e->held, e->go, env_extra);
}

#define N_MSG 64

/* (a) one_for_all: the worker crashes (exit 1) holding one unacked message
 * while the source is parked mid-run (all sent, not closed) and the sink is
 * blocked in a receive.  fabd kills and restarts every running replica: two
 * start records per stage, the first processes all gone.  The restarted
 * source resumes after its last confirmed send, the redelivered message
 * reaches the new worker, and the sink gets every message exactly once. */
START_TEST(t_one_for_all)
{
	tenv e;
	setup_env(&e, "all");
	char mid[2048];
	worker_yaml(mid, sizeof mid, &e, "worker", "jobs", "results",
		    "    strategy: one_for_all\n", ", CRASH: \"1\"");
	topology(&e,
		 "  jobs: { capacity: 64, msg_size: 8, delivery: at-least-once, max_deliveries: 10 }\n"
		 "  results: { capacity: 64, msg_size: 8 }\n",
		 ", N: \"64\", HOLD_AT: \"64\"", mid, "results", "", "");
	pid_t fabd = start_fabd(&e);
	/* The crash only once every first process has recorded its start (a
	 * process killed before that would leave no record). */
	wait_starts(&e, "source", 1);
	wait_starts(&e, "worker", 1);
	wait_starts(&e, "sink", 1);
	write_text(e.go, "1\n");
	/* Released only once everything restarted: nothing can finish first. */
	wait_starts(&e, "source", 2);
	wait_starts(&e, "worker", 2);
	wait_starts(&e, "sink", 2);
	write_text(e.release, "1\n");
	int code = wait_code(fabd);
	char *log = slurp(e.log);
	ck_assert_msg(code == 0, "fabd exited %d; log:\n%s", code, log);
	const char *st[] = { "source", "worker", "sink" };
	for (int i = 0; i < 3; i++) {
		starts s = starts_of(&e, st[i]);
		ck_assert_msg(s.n == 2, "%s started %d times; log:\n%s", st[i], s.n, log);
		ck_assert_int_ne(s.pid[0], s.pid[1]);
		ck_assert_msg(kill(s.pid[0], 0) < 0 && errno == ESRCH, "%s pid %d alive", st[i],
			      (int)s.pid[0]);
	}
	ck_assert_msg(strstr(log, "worker.0 | crashing on purpose") != NULL, "log:\n%s", log);
	ck_assert_msg(strstr(log, "fabd: source.0: killed by signal 9") != NULL, "log:\n%s", log);
	ck_assert_msg(strstr(log, "fabd: sink.0: killed by signal 9") != NULL, "log:\n%s", log);
	free(log);
	assert_exactly_once(e.sent, N_MSG);
	assert_exactly_once(e.got, N_MSG);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* (b) rest_for_one: source, w1, w2, sink in file order; w1 crashes while
 * the source is parked.  w1, w2 and sink restart (two start records each),
 * the source keeps its one process (released only after the others came
 * back, so it was running all along).  Exactly once at the sink. */
START_TEST(t_rest_for_one)
{
	tenv e;
	setup_env(&e, "rest");
	char w1[2048], w2[2048], mid[4200];
	worker_yaml(w1, sizeof w1, &e, "w1", "jobs", "mid", "    strategy: rest_for_one\n",
		    ", CRASH: \"1\"");
	worker_yaml(w2, sizeof w2, &e, "w2", "mid", "results", "", "");
	snprintf(mid, sizeof mid, "%s%s", w1, w2);
	topology(&e,
		 "  jobs: { capacity: 64, msg_size: 8, delivery: at-least-once, max_deliveries: 10 }\n"
		 "  mid: { capacity: 64, msg_size: 8 }\n"
		 "  results: { capacity: 64, msg_size: 8 }\n",
		 ", N: \"64\", HOLD_AT: \"64\"", mid, "results", "", "");
	pid_t fabd = start_fabd(&e);
	const char *st[] = { "w1", "w2", "sink" };
	wait_starts(&e, "source", 1);
	for (int i = 0; i < 3; i++)
		wait_starts(&e, st[i], 1);
	write_text(e.go, "1\n");
	wait_starts(&e, "w1", 2);
	wait_starts(&e, "w2", 2);
	wait_starts(&e, "sink", 2);
	starts src = starts_of(&e, "source");
	ck_assert_int_eq(src.n, 1);
	ck_assert_int_eq(kill(src.pid[0], 0), 0); /* the parked source still runs */
	write_text(e.release, "1\n");
	int code = wait_code(fabd);
	char *log = slurp(e.log);
	ck_assert_msg(code == 0, "fabd exited %d; log:\n%s", code, log);
	ck_assert_msg(starts_of(&e, "source").n == 1, "log:\n%s", log);
	for (int i = 0; i < 3; i++)
		ck_assert_msg(starts_of(&e, st[i]).n == 2, "%s started %d times; log:\n%s", st[i],
			      starts_of(&e, st[i]).n, log);
	ck_assert_msg(strstr(log, "fabd: w2.0: killed by signal 9") != NULL, "log:\n%s", log);
	ck_assert_msg(strstr(log, "fabd: source.0: killed") == NULL, "log:\n%s", log);
	free(log);
	assert_exactly_once(e.sent, N_MSG);
	assert_exactly_once(e.got, N_MSG);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* A topology of one port-less stage running supstage as `exiter`. */
static void lone(const tenv *e, const char *stage_extra, const char *env_extra)
{
	char y[2048];
	snprintf(y, sizeof y,
		 "fabric: %s\n"
		 "stages:\n"
		 "  lone:\n"
		 "    run: %s/supstage\n"
		 "    backoff: 1ms\n"
		 "%s"
		 "    env: { ROLE: exiter, START_FILE: %s%s }\n"
		 "metrics: { listen: off }\n"
		 "shutdown: { drain: 5s, grace: 5s }\n",
		 e->fabric, STAGE_DIR, stage_extra, e->starts, env_extra);
	write_text(e->yaml, y);
}

/* (c1) restart: always restarts a replica that exited 0.  The stage exits 0
 * twice, then stays until SIGTERM drains it: three start records, fabd
 * exits 0 (drained cleanly). */
START_TEST(t_always)
{
	tenv e;
	setup_env(&e, "always");
	lone(&e, "    restart: always\n    intensity: 10/1h\n", ", STAY_AT: \"3\"");
	pid_t fabd = start_fabd(&e);
	wait_starts(&e, "lone", 3);
	ck_assert_int_eq(kill(fabd, SIGTERM), 0);
	ck_assert_int_eq(wait_code(fabd), 0);
	char *log = slurp(e.log);
	ck_assert_msg(starts_of(&e, "lone").n == 3, "log:\n%s", log);
	ck_assert_msg(strstr(log, "fabd: lone.0: exited with status 0\nfabd: lone.0: restarting in") !=
			      NULL,
		      "log:\n%s", log);
	free(log);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* (c3) watchdog: a replica that stops calling the library (pause()) is
 * SIGKILLed after `watchdog` and restarted (twice here); the third
 * incarnation sleeps INSIDE the library (fab_ctx_wait) for several watchdog
 * periods, which is waiting, not hanging: it is left alone, writes DONE, and
 * fabd drains cleanly.  Counts kills and starts, not time. */
START_TEST(t_watchdog)
{
	tenv e;
	setup_env(&e, "wdog");
	char done[300], y[2048];
	snprintf(done, sizeof done, "%s/done", e.dir);
	snprintf(y, sizeof y,
		 "fabric: %s\n"
		 "stages:\n"
		 "  lone:\n"
		 "    run: %s/supstage\n"
		 "    backoff: 1ms\n"
		 "    restart: on-failure\n"
		 "    watchdog: 200ms\n"
		 "    intensity: 10/1h\n"
		 "    env: { ROLE: hanger, START_FILE: %s, STAY_AT: \"3\", WAIT_MS: \"1000\", "
		 "DONE_FILE: %s }\n"
		 "metrics: { listen: off }\n"
		 "shutdown: { drain: 5s, grace: 5s }\n",
		 e.fabric, STAGE_DIR, e.starts, done);
	write_text(e.yaml, y);
	pid_t fabd = start_fabd(&e);
	while (!exists(done))
		nap();
	ck_assert_int_eq(kill(fabd, SIGTERM), 0);
	ck_assert_int_eq(wait_code(fabd), 0);
	char *log = slurp(e.log);
	ck_assert_msg(starts_of(&e, "lone").n == 3, "log:\n%s", log);
	int kills = 0;
	for (const char *p = log; (p = strstr(p, "lone.0: watchdog: no call into the library"));
	     p++)
		kills++;
	ck_assert_msg(kills == 2, "%d watchdog kills; log:\n%s", kills, log);
	ck_assert_msg(strstr(log, "killed by signal 9 (Killed) by the watchdog") != NULL, "log:\n%s",
		      log);
	free(log);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* (c2) restart: never: a replica that fails is not restarted, the others go
 * on (the pipeline completes exactly once), and fabd exits 4. */
START_TEST(t_never)
{
	tenv e;
	setup_env(&e, "never");
	char extra[1024];
	snprintf(extra, sizeof extra,
		 "  lone:\n"
		 "    run: %s/supstage\n"
		 "    restart: never\n"
		 "    env: { ROLE: exiter, START_FILE: %s, STAY_AT: \"2\", EXIT_CODE: \"3\" }\n",
		 STAGE_DIR, e.starts);
	topology(&e, "  jobs: { capacity: 64, msg_size: 8 }\n", ", N: \"64\"", extra, "jobs", "",
		 "");
	ck_assert_int_eq(wait_code(start_fabd(&e)), 4);
	char *log = slurp(e.log);
	ck_assert_msg(starts_of(&e, "lone").n == 1, "log:\n%s", log);
	ck_assert_msg(strstr(log, "fabd: lone.0: exited with status 3 (restart: never)") != NULL,
		      "log:\n%s", log);
	ck_assert_msg(strstr(log, "fabd: stopped: a stage failed") != NULL, "log:\n%s", log);
	free(log);
	assert_exactly_once(e.got, N_MSG);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* (c3) restart: never in a pool: worker.0 of two exits 1 at once without
 * closing "results", and is not restarted.  fabd closes that channel in its
 * name (its share of the close quorum), so worker.1 and the sink finish:
 * exactly once, and fabd exits 4 for the failure. */
START_TEST(t_never_pool)
{
	tenv e;
	setup_env(&e, "pool");
	char mid[2048];
	worker_yaml(mid, sizeof mid, &e, "worker", "jobs", "results",
		    "    replicas: 2\n    restart: never\n", ", CRASH_REPLICA: \"0\"");
	topology(&e,
		 "  jobs: { capacity: 64, msg_size: 8, delivery: at-least-once, max_deliveries: 10 }\n"
		 "  results: { capacity: 64, msg_size: 8 }\n",
		 ", N: \"64\"", mid, "results", "", "");
	ck_assert_int_eq(wait_code(start_fabd(&e)), 4);
	char *log = slurp(e.log);
	ck_assert_msg(starts_of(&e, "worker").n == 2, "log:\n%s", log);
	ck_assert_msg(strstr(log, "fabd: worker.0: exited with status 1 (restart: never)") != NULL,
		      "log:\n%s", log);
	ck_assert_msg(strstr(log, "fabd: worker.0: closed channel results for it") != NULL,
		      "log:\n%s", log);
	free(log);
	assert_exactly_once(e.got, N_MSG);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* A drain that begins while a replica waits for its restart (a long
 * backoff): that replica will not run again, so fabd closes its share of
 * the out channel's quorum at once; the sink sees the close and the drain
 * ends without waiting for the drain time (30 s here). */
START_TEST(t_drain_during_backoff)
{
	tenv e;
	setup_env(&e, "drainb");
	char mid[2048];
	snprintf(mid, sizeof mid,
		 "  worker:\n"
		 "    run: %s/supstage\n"
		 "    in: { in: jobs }\n"
		 "    out: { out: results }\n"
		 "    replicas: 2\n"
		 "    backoff: 60s\n"
		 "    env: { ROLE: worker, START_FILE: %s, HELD: %s, GO: %s, CRASH_REPLICA: \"0\" }\n",
		 STAGE_DIR, e.starts, e.held, e.go);
	topology(&e,
		 "  jobs: { capacity: 64, msg_size: 8, delivery: at-least-once, max_deliveries: 10 }\n"
		 "  results: { capacity: 64, msg_size: 8 }\n",
		 ", N: \"64\"", mid, "results", "", "shutdown: { drain: 30s, grace: 5s }\n");
	pid_t fabd = start_fabd(&e);
	/* until worker.0 has crashed and waits for its restart */
	wait_text(e.log, "fabd: worker.0: exited with status 1");
	ck_assert_int_eq(kill(fabd, SIGTERM), 0);
	int code = wait_code(fabd);
	char *log = slurp(e.log);
	ck_assert_msg(code == 0, "fabd exited %d; log:\n%s", code, log);
	ck_assert_msg(strstr(log, "fabd: worker.0: closed channel results for it") != NULL,
		      "log:\n%s", log);
	ck_assert_msg(strstr(log, "drain time is over") == NULL, "log:\n%s", log);
	free(log);
	assert_exactly_once(e.got, N_MSG);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* A drain that begins while the ONLY replica of a consumer waits for its
 * restart (a long backoff): the drain needs it, so fabd starts it at once
 * instead of dropping it; it takes the queued messages and the one it held
 * when it was killed (redelivered), the close ends it, fabd exits 0 within
 * the drain time.  Before this rule the sink was dropped, its input stayed
 * queued until the drain time cancelled everything, and the segments with
 * the messages were destroyed. */
START_TEST(t_drain_needs_consumer)
{
	tenv e;
	setup_env(&e, "drainc");
	char y[4096];
	snprintf(y, sizeof y,
		 "fabric: %s\n"
		 "channels:\n"
		 "  jobs: { capacity: 64, msg_size: 8, delivery: at-least-once }\n"
		 "stages:\n"
		 "  source:\n"
		 "    run: %s/supstage\n"
		 "    out: { out: jobs }\n"
		 "    env: { ROLE: source, START_FILE: %s, SENT: %s, N: \"64\" }\n"
		 "  sink:\n"
		 "    run: %s/supstage\n"
		 "    in: { in: jobs }\n"
		 "    backoff: 60s\n"
		 "    env: { ROLE: sink, START_FILE: %s, GOT: %s, SINK_HELD: %s, RELEASE: %s, "
		 "HOLD_AT: \"10\" }\n"
		 "metrics: { listen: off }\n"
		 "shutdown: { drain: 30s, grace: 5s }\n",
		 e.fabric, STAGE_DIR, e.starts, e.sent, STAGE_DIR, e.starts, e.got, e.sink_held,
		 e.release);
	write_text(e.yaml, y);
	pid_t fabd = start_fabd(&e);
	while (!exists(e.sink_held))
		nap();
	starts sk = starts_of(&e, "sink");
	ck_assert_int_eq(sk.n, 1);
	ck_assert_int_eq(kill(sk.pid[0], SIGKILL), 0);
	wait_text(e.log, "fabd: sink.0: restarting in 60000 ms"); /* waits for its restart */
	ck_assert_int_eq(kill(fabd, SIGTERM), 0);
	int code = wait_code(fabd);
	char *log = slurp(e.log);
	ck_assert_msg(code == 0, "fabd exited %d; log:\n%s", code, log);
	ck_assert_msg(strstr(log, "fabd: sink.0: restarting at once: the drain needs a consumer"),
		      "log:\n%s", log);
	ck_assert_msg(strstr(log, "drain time is over") == NULL, "log:\n%s", log);
	free(log);
	ck_assert_int_eq(starts_of(&e, "sink").n, 2);
	/* every value at least once; only the held one twice */
	unsigned bad, dup = 0;
	unsigned *c = tally(e.got, N_MSG, &bad);
	ck_assert_uint_eq(bad, 0);
	for (unsigned i = 0; i < N_MSG; i++) {
		ck_assert_msg(c[i] >= 1 && c[i] <= 2, "value %u received %u times", i, c[i]);
		dup += c[i] - 1;
	}
	free(c);
	ck_assert_uint_le(dup, 1);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* A replica that closed its output and then failed (exit 1 after
 * fab_stage_close: say its own cleanup failed) is restarted under the same
 * producer id.  The new process is a producer that will send: the channel
 * must stay open until it closes too, and everything it sends must arrive.
 * (Its predecessor's recorded close used to still count: the channel closed
 * as soon as src.0 closed, and the new src.1's sends failed with
 * FAB_ECLOSED.)  src.1 runs first (its first incarnation sends 1100..1109,
 * closes, exits 1), then src.0 (100..109), then the new src.1
 * (1200..1209). */
START_TEST(t_restart_after_close)
{
	tenv e;
	setup_env(&e, "reclose");
	char y[4096], go[320], f[400];
	snprintf(go, sizeof go, "%s/go", e.dir);
	snprintf(y, sizeof y,
		 "fabric: %s\n"
		 "channels:\n"
		 "  jobs: { capacity: 64, msg_size: 8, kind: mpmc }\n"
		 "stages:\n"
		 "  src:\n"
		 "    run: %s/supstage\n"
		 "    out: { out: jobs }\n"
		 "    replicas: 2\n"
		 "    backoff: 1ms\n"
		 "    env: { ROLE: termsource, START_FILE: %s, SENT: %s, GO: %s, COUNT: \"10\", "
		 "FAIL_REPLICA: \"1\" }\n"
		 "  sink:\n"
		 "    run: %s/supstage\n"
		 "    in: { in: jobs }\n"
		 "    env: { ROLE: sink, START_FILE: %s, GOT: %s }\n"
		 "metrics: { listen: off }\n",
		 e.fabric, STAGE_DIR, e.starts, e.sent, go, STAGE_DIR, e.starts, e.got);
	write_text(e.yaml, y);
	pid_t fabd = start_fabd(&e);
	snprintf(f, sizeof f, "%s.1.1", go);
	write_text(f, "1\n");
	wait_text(e.log, "fabd: src.1: exited with status 1");
	snprintf(f, sizeof f, "%s.1.2.ready", go); /* restarted, waiting */
	while (!exists(f))
		nap();
	snprintf(f, sizeof f, "%s.0.1", go);
	write_text(f, "1\n");
	wait_text(e.log, "fabd: src.0: exited with status 0");
	uint32_t closes = 0;
	int closed = chan_closed(e.fabric, "jobs", &closes);
	ck_assert_msg(closed == 0,
		      "jobs is closed (%d, %u closes) while the restarted src.1 runs and has not "
		      "closed",
		      closed, closes);
	snprintf(f, sizeof f, "%s.1.2", go);
	write_text(f, "1\n");
	int code = wait_code(fabd);
	char *log = slurp(e.log);
	ck_assert_msg(code == 0, "fabd exited %d; log:\n%s", code, log);
	ck_assert_msg(strstr(log, "| send ") == NULL, "log:\n%s", log);
	ck_assert_msg(strstr(log, "src.1 | failing after the close on purpose") != NULL, "log:\n%s",
		      log);
	free(log);
	ck_assert_int_eq(starts_of(&e, "src").n, 3);
	unsigned bad, want[] = { 100, 1100, 1200 };
	unsigned *sent = tally(e.sent, 2000, &bad), *got;
	ck_assert_uint_eq(bad, 0);
	got = tally(e.got, 2000, &bad);
	ck_assert_uint_eq(bad, 0);
	unsigned total = 0;
	for (unsigned v = 0; v < 2000; v++)
		total += got[v];
	ck_assert_uint_eq(total, 30);
	for (int k = 0; k < 3; k++)
		for (unsigned i = 0; i < 10; i++)
			ck_assert_msg(sent[want[k] + i] == 1 && got[want[k] + i] == 1,
				      "%u: sent %u, got %u", want[k] + i, sent[want[k] + i],
				      got[want[k] + i]);
	free(sent);
	free(got);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* (d) fabd SIGKILLed mid-pipeline: the source has confirmed 40 sends and is
 * parked, the sink recorded 15 and holds the 15th unacked.  Every stage
 * process dies by PDEATHSIG (reaped here, killed by SIGKILL), the segments
 * stay, and a second `fabd run` of the same file re-attaches them: the
 * source resumes, the unacked message is redelivered, and every confirmed
 * send reaches the sink at least once. */
START_TEST(t_fabd_killed)
{
	tenv e;
	setup_env(&e, "kill");
	topology(&e,
		 "  jobs: { capacity: 64, msg_size: 8, delivery: at-least-once, max_deliveries: 10 }\n",
		 ", N: \"100\", HOLD_AT: \"40\"", "", "jobs", ", HOLD_AT: \"15\"", "");
	pid_t fabd = start_fabd(&e);
	while (!exists(e.held) || !exists(e.sink_held))
		nap();
	ck_assert_int_eq(kill(fabd, SIGKILL), 0);
	ck_assert_int_eq(wait_code(fabd), 128 + SIGKILL);
	/* PDEATHSIG: each stage process is killed and, orphaned, reaped here. */
	const char *st[] = { "source", "sink" };
	for (int i = 0; i < 2; i++) {
		starts s = starts_of(&e, st[i]);
		ck_assert_int_eq(s.n, 1);
		ck_assert_int_eq(wait_code(s.pid[0]), 128 + SIGKILL);
	}
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1); /* no other child left */
	ck_assert_int_eq(errno, ECHILD);
	ck_assert_int_gt(segments_left(e.fabric), 0);

	fabd = start_fabd(&e);
	int code = wait_code(fabd);
	char *log = slurp(e.log);
	ck_assert_msg(code == 0, "second fabd exited %d; log:\n%s", code, log);
	ck_assert_msg(strstr(log, "fabd: re-attaching existing fabric") != NULL, "log:\n%s", log);
	ck_assert_msg(starts_of(&e, "source").n == 2 && starts_of(&e, "sink").n == 2, "log:\n%s",
		      log);
	free(log);
	assert_exactly_once(e.sent, 100);
	unsigned bad;
	unsigned *c = tally(e.got, 100, &bad);
	ck_assert_uint_eq(bad, 0);
	unsigned twice = 0;
	for (unsigned i = 0; i < 100; i++) {
		ck_assert_msg(c[i] >= 1, "confirmed send %u never received", i);
		twice += c[i] > 1;
	}
	ck_assert_uint_le(twice, 1); /* only the one held unacked */
	ck_assert_uint_eq(c[14], 2);
	free(c);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fabd_supervise");
	TCase *tc = tcase_create("supervise");
	tcase_add_unchecked_fixture(tc, NULL, teardown_all);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, t_one_for_all);
	tcase_add_test(tc, t_rest_for_one);
	tcase_add_test(tc, t_always);
	tcase_add_test(tc, t_watchdog);
	tcase_add_test(tc, t_never);
	tcase_add_test(tc, t_never_pool);
	tcase_add_test(tc, t_fabd_killed);
	tcase_add_test(tc, t_drain_during_backoff);
	tcase_add_test(tc, t_drain_needs_consumer);
	tcase_add_test(tc, t_restart_after_close);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
