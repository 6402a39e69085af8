/* test_run.c - `fabd run` end to end: fabd is started on a topology of tiny
 * stage programs (tests/broker/stages/) and the test checks what the sink
 * counted, fabd's exit status, its prefixed output and /dev/shm afterwards.
 *
 * Nothing here measures time: each wait is for an event (a file, a line, a
 * counter), bounded only by the test's timeout.  Names are derived from the
 * runner's pid so the unchecked teardown (run in the runner, also after a
 * failed test) can remove the fabric and the directory; Check kills the
 * test's process group (fabd and its stages) after every test.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fab/fab.h>

#include "broker_test.h"
#include "fabtest.h"

static const char *const tags[] = { "a", "b", "c", "d", "e", "f", "g", NULL };

static void names(const char *tag, pid_t rp, char *fabric, size_t fl, char *dir, size_t dl)
{
	snprintf(fabric, fl, "trun-%s-%d", tag, (int)rp);
	snprintf(dir, dl, "/tmp/fabd-run-%s-%d", tag, (int)rp);
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

typedef struct tcase_env {
	char fabric[64];
	char dir[256];
	char yaml[300];
	char log[300];
	char count[300];
	char crash[300];
} tenv;

static void setup_env(tenv *e, const char *tag)
{
	names(tag, runner(), e->fabric, sizeof e->fabric, e->dir, sizeof e->dir);
	fab_fabric_destroy(e->fabric);
	rm_tree(e->dir);
	ck_assert_int_eq(mkdir(e->dir, 0700), 0);
	snprintf(e->yaml, sizeof e->yaml, "%s/topology.yaml", e->dir);
	snprintf(e->log, sizeof e->log, "%s/fabd.log", e->dir);
	snprintf(e->count, sizeof e->count, "%s/count", e->dir);
	snprintf(e->crash, sizeof e->crash, "%s/crashes", e->dir);
}

/* Start `fabd run YAML` with stdout and stderr in the log file. */
static pid_t start_fabd(const tenv *e)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(e->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
		if (fd < 0)
			_exit(120);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(FABD_PATH, "fabd", "run", e->yaml, (char *)NULL);
		_exit(121);
	}
	return pid;
}

/* source -> jobs -> worker (R replicas, or the crasher) -> results -> sink */
static void pipeline(const tenv *e, unsigned n, unsigned replicas, const char *jobs_extra,
		     const char *worker_extra, const char *tail)
{
	char y[4096];
	snprintf(y, sizeof y,
		 "fabric: %s\n"
		 "channels:\n"
		 "  jobs: { capacity: 8, msg_size: 8 %s}\n"
		 "  results: { capacity: 8, msg_size: 8 }\n"
		 "stages:\n"
		 "  source:\n"
		 "    run: %s/source\n"
		 "    out: { out: jobs }\n"
		 "    env: { N: \"%u\" }\n"
		 "  worker:\n"
		 "    run: %s/worker\n"
		 "    replicas: %u\n"
		 "    in: { in: jobs }\n"
		 "    out: { out: results }\n"
		 "%s"
		 "  sink:\n"
		 "    run: %s/sink\n"
		 "    in: { in: results }\n"
		 "    env: { N: \"%u\", OUT: %s }\n"
		 "metrics: { listen: off }\n"
		 "%s",
		 e->fabric, jobs_extra, STAGE_DIR, n, STAGE_DIR, replicas, worker_extra, STAGE_DIR,
		 n, e->count, tail);
	write_text(e->yaml, y);
}

/* (a) A 3-stage pipeline runs to completion: all N, exactly once. */
START_TEST(t_completes)
{
	tenv e;
	setup_env(&e, "a");
	pipeline(&e, 1000, 2, "", "", "");
	ck_assert_int_eq(wait_code(start_fabd(&e)), 0);
	char *c = slurp(e.count);
	ck_assert_str_eq(c, "count=1000 dups=0 bad=0\n");
	free(c);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* (b) A crashing stage is restarted (on-failure) and nothing is lost. */
START_TEST(t_crash_restarted)
{
	tenv e;
	setup_env(&e, "b");
	char w[512];
	snprintf(w, sizeof w,
		 "    restart: on-failure\n"
		 "    backoff: 1ms..4ms\n"
		 "    intensity: 10/1h\n"
		 "    env: { CRASH_FILE: %s, CRASH_TIMES: \"3\" }\n",
		 e.crash);
	pipeline(&e, 500, 1, ", delivery: at-least-once, max_deliveries: 10 ", w, "");
	ck_assert_int_eq(wait_code(start_fabd(&e)), 0);
	char *c = slurp(e.count);
	ck_assert_str_eq(c, "count=500 dups=0 bad=0\n");
	free(c);
	c = slurp(e.crash);
	ck_assert_str_eq(c, "3\n");
	free(c);
	c = slurp(e.log);
	ck_assert_msg(strstr(c, "worker.0 | crashing on purpose") != NULL, "log: %s", c);
	ck_assert_msg(strstr(c, "fabd: worker.0: restarting in") != NULL, "log: %s", c);
	free(c);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* (c) More restarts than the intensity allows: fabd exits non-zero (4). */
START_TEST(t_intensity)
{
	tenv e;
	setup_env(&e, "c");
	char w[512];
	snprintf(w, sizeof w,
		 "    backoff: 1ms\n"
		 "    intensity: 2/1h\n"
		 "    env: { CRASH_FILE: %s, CRASH_TIMES: \"1000000\" }\n",
		 e.crash);
	pipeline(&e, 100, 1, ", delivery: at-least-once, max_deliveries: 1000 ", w,
		 "shutdown: { drain: 50ms, grace: 2s }\n");
	ck_assert_int_eq(wait_code(start_fabd(&e)), 4);
	char *c = slurp(e.crash);
	ck_assert_str_eq(c, "3\n"); /* the first start and 2 restarts */
	free(c);
	c = slurp(e.log);
	ck_assert_msg(strstr(c, "fabd: stage worker failed: more than 2 restarts") != NULL,
		      "log: %s", c);
	/* The failed worker left messages queued: fabd keeps the segments
	 * (never destroys a message) and says where they are. */
	ck_assert_msg(strstr(c, "message(s) still queued: the fabric's segments are kept") != NULL,
		      "log: %s", c);
	free(c);
	ck_assert_int_gt(segments_left(e.fabric), 0);
}
END_TEST

/* (d) SIGTERM on a pipeline with an endless source: it drains, fabd exits
 * 0, the sink got everything without duplicates, no segment is left. */
/* (d) also: the topology's `mode` reaches the control segment and every
 * channel fabd creates (the error channel included). */
START_TEST(t_sigterm_drains)
{
	tenv e;
	setup_env(&e, "d");
	pipeline(&e, 0, 2, "", "", "mode: \"0660\"\n");
	pid_t fabd = start_fabd(&e);
	/* Wait until messages have gone through: the results channel counts. */
	fab_fabric *fab = NULL;
	while (fab_fabric_open(e.fabric, 0, &fab) < 0)
		nap();
	fab_chan *ch = NULL;
	while (fab_chan_open(fab, "results", FAB_RECV, &ch) < 0)
		nap();
	fab_stats st = { .size = sizeof st };
	do {
		nap();
		ck_assert_int_eq(fab_chan_stats(ch, &st), 0);
	} while (st.sent < 100);
	fab_chan_release(ch);
	fab_fabric_close(fab);
	ck_assert_int_eq(ft_shm_mode(e.fabric, NULL), 0660);
	ck_assert_int_eq(ft_shm_mode(e.fabric, "jobs"), 0660);
	ck_assert_int_eq(ft_shm_mode(e.fabric, "results"), 0660);
	ck_assert_int_eq(ft_shm_mode(e.fabric, "errors"), 0660); /* the default error channel */
	ck_assert_int_eq(kill(fabd, SIGTERM), 0);
	ck_assert_int_eq(wait_code(fabd), 0);
	char *c = slurp(e.count);
	unsigned long long count = 0, dups = 1, bad = 1;
	ck_assert_int_eq(sscanf(c, "count=%llu dups=%llu bad=%llu", &count, &dups, &bad), 3);
	ck_assert_uint_ge(count, 100);
	free(c);
	c = slurp(e.log);
	ck_assert_msg(strstr(c, "fabd: draining (SIGTERM)") != NULL, "log: %s", c);
	ck_assert_msg(strstr(c, "root context") == NULL, "drain needed the root cancel: %s", c);
	free(c);
	ck_assert_int_eq(segments_left(e.fabric), 0);
}
END_TEST

/* (e) Every line of a stage's stdout and stderr carries "stage.replica | ". */
START_TEST(t_prefix)
{
	tenv e;
	setup_env(&e, "e");
	pipeline(&e, 10, 2, "", "", "");
	ck_assert_int_eq(wait_code(start_fabd(&e)), 0);
	char *c = slurp(e.log);
	ck_assert_msg(strstr(c, "source.0 | source sent 10\n") != NULL, "log: %s", c);
	ck_assert_msg(strstr(c, "worker.0 | worker forwarded ") != NULL, "log: %s", c);
	ck_assert_msg(strstr(c, "worker.1 | worker forwarded ") != NULL, "log: %s", c);
	ck_assert_msg(strstr(c, "sink.0 | sink ready\n") != NULL, "log: %s", c);
	ck_assert_msg(strstr(c, "sink.0 | sink got 10\n") != NULL, "log: %s", c);
	/* Every line is either fabd's own or prefixed. */
	for (char *line = strtok(c, "\n"); line; line = strtok(NULL, "\n"))
		ck_assert_msg(!strncmp(line, "fabd: ", 6) || strstr(line, ".0 | ") ||
				      strstr(line, ".1 | "),
			      "unprefixed line: %s", line);
	free(c);
}
END_TEST

/* (f) A fabric of another user under the topology's name (planted 0666,
 * so it would let fabd in): fabd refuses to run it, exit 5, and touches
 * nothing.  Needs root to be another user (CI runs as root). */
START_TEST(t_foreign_fabric)
{
	ck_assert_msg(geteuid() == 0, "this test changes users and needs root (CI runs as root)");
	tenv e;
	setup_env(&e, "f");
	pipeline(&e, 10, 1, "", "", "");
	pid_t sq = fork();
	ck_assert_int_ge(sq, 0);
	if (sq == 0) {
		fab_fabric *f = NULL;
		if (setgroups(0, NULL) || setgid(65533) || setuid(65533))
			_exit(10);
		_exit(fab_fabric_open(e.fabric, FAB_CREATE | FAB_MODE(0666), &f) ? 11 : 0);
	}
	ck_assert_int_eq(wait_code(sq), 0);
	int code = wait_code(start_fabd(&e));
	int segs = segments_left(e.fabric);
	fab_fabric_destroy(e.fabric);
	char *c = slurp(e.log);
	ck_assert_msg(code == 5, "fabd exited %d on another user's fabric: %s", code, c);
	ck_assert_msg(strstr(c, "belongs to uid 65533") != NULL, "log: %s", c);
	free(c);
	ck_assert_int_eq(segs, 1); /* the planted control segment alone */
}
END_TEST

/* (g) The topology's channel left by a fabd of another libfab version (its
 * exit 7 keeps the segments; here a channel whose layout minor is one
 * lower, docs/layout.md: the version word @8): fabd exits 5, says another
 * version made it and how to upgrade, and destroys nothing (an upgrade
 * trial followed the library's "destroy and recreate" too literally). */
START_TEST(t_other_version)
{
	tenv e;
	setup_env(&e, "g");
	pipeline(&e, 10, 1, "", "", "");
	fab_fabric *f = NULL;
	fab_chan *c = NULL;
	ck_assert_int_eq(fab_fabric_open(e.fabric, FAB_CREATE, &f), 0);
	fab_chan_opts o = {.size = sizeof o, .capacity = 8, .msg_size = 8};
	ck_assert_int_eq(fab_chan_create(f, "jobs", &o, &c), 0);
	uint64_t one = 1;
	ck_assert_int_eq(fab_send(c, &one, sizeof one, NULL), 0);
	fab_chan_release(c);
	fab_fabric_close(f);
	char path[200];
	snprintf(path, sizeof path, "/dev/shm/fab.%s.jobs", e.fabric);
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	uint32_t v = 0;
	ck_assert_int_eq(pread(fd, &v, sizeof v, 8), (ssize_t)sizeof v);
	ck_assert_uint_gt(v & 0xffff, 0);
	v -= 1;
	ck_assert_int_eq(pwrite(fd, &v, sizeof v, 8), (ssize_t)sizeof v);
	close(fd);
	int code = wait_code(start_fabd(&e));
	int segs = segments_left(e.fabric);
	fab_fabric_destroy(e.fabric);
	char *log = slurp(e.log);
	ck_assert_msg(code == 5, "fabd exited %d on a channel of another layout: %s", code, log);
	ck_assert_msg(strstr(log, "another libfab version made it") &&
			      strstr(log, "Upgrading libfab under fabd"),
		      "log: %s", log);
	free(log);
	ck_assert_int_ge(segs, 2); /* the control segment and jobs, kept */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fabd_run");
	TCase *tc = tcase_create("run");
	tcase_add_unchecked_fixture(tc, NULL, teardown_all);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_completes);
	tcase_add_test(tc, t_crash_restarted);
	tcase_add_test(tc, t_intensity);
	tcase_add_test(tc, t_sigterm_drains);
	tcase_add_test(tc, t_prefix);
	tcase_add_test(tc, t_foreign_fabric);
	tcase_add_test(tc, t_other_version);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
