/*
 * shop_test.c - runs the shop pipeline (examples/shop-*.c) by hand with
 * shop-run, a small N and a generous limiter, and checks the fate of every
 * order against the deterministic model of examples/shop.h:
 *
 *  - malformed orders (every bad_every-th) are rejected by validate, one
 *    error record each;
 *  - a well-formed order reaches the sink exactly once, unless the flaky
 *    store (a hash of seed, id, delivery, attempt) failed all `retries`
 *    attempts in each of max_deliveries deliveries: then it is dead-lettered
 *    (and reaches the quarantine stage) instead;
 *  - persist reports one error per failed delivery, and the channel counts
 *    one nack each and one redelivery for each that was not the last;
 *  - the ids that arrived sum to the ids predicted (ack and quarantine);
 *  - shop-run exits 0 and removes the fabric from /dev/shm.
 *
 * The drain case runs an endless source, sends shop-run SIGTERM and checks
 * that every order the source sent is accounted for as above.
 *
 * Cleanup: shop-run runs with a timeout and is SIGKILLed past a larger one;
 * its stages die with it (PR_SET_PDEATHSIG); every fabric of this run is
 * swept from /dev/shm at the end of each case and of the runner.
 */
#include <check.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fabtest.h"
#include "shop.h"

struct params {
	uint64_t count, bad_every, seed;
	uint32_t enrich, persist, permille, retries, max_deliveries;
	int drain_after_ms; /* >0: endless source, SIGTERM after this long */
};

struct expect {
	uint64_t malformed, persisted, persisted_sum, dead, dead_sum, store_errors;
};

/* The fate of orders 1..n under the model of shop.h. */
static void model(const struct params *p, uint64_t n, struct expect *e)
{
	memset(e, 0, sizeof(*e));
	for (uint64_t id = 1; id <= n; id++) {
		if (shop_malformed(id, p->bad_every)) {
			e->malformed++;
			continue;
		}
		for (uint32_t d = 1; d <= p->max_deliveries; d++) {
			int stored = 0;
			for (uint32_t a = 1; a <= p->retries && !stored; a++)
				stored = !shop_store_fails(p->seed, id, d, a, p->permille);
			if (stored) {
				e->persisted++;
				e->persisted_sum += id;
				break;
			}
			e->store_errors++;
			if (d == p->max_deliveries) {
				e->dead++;
				e->dead_sum += id;
			}
		}
	}
}

/* The value of `key=` in a one-line result file; aborts the test if absent. */
static uint64_t result(const char *dir, const char *file, const char *key)
{
	char path[512], line[1024], pat[64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_msg(fgets(line, sizeof(line), f) != NULL, "%s: empty", path);
	fclose(f);
	snprintf(pat, sizeof(pat), "%s=", key);
	for (char *s = line; (s = strstr(s, pat)); s++)
		if (s == line || s[-1] == ' ')
			return strtoull(s + strlen(pat), NULL, 10);
	ck_abort_msg("%s: no %s in '%s'", path, key, line);
	return 0;
}

static void dump_log(const char *dir)
{
	char path[512], buf[4096];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/log", dir);
	if (!(f = fopen(path, "r")))
		return;
	fprintf(stderr, "---- %s ----\n", path);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fclose(f);
}

static int shm_exists(const char *fabric)
{
	char path[128];

	snprintf(path, sizeof(path), "/dev/shm/fab.%s", fabric);
	return access(path, F_OK) == 0;
}

/* Runs shop-run; returns its exit code (128+signal if killed). */
static int run_shop(const struct params *p, const char *fabric, const char *dir)
{
	char a[16][32];
	snprintf(a[0], 32, "%" PRIu64, p->drain_after_ms ? 0 : p->count);
	snprintf(a[1], 32, "%" PRIu64, p->bad_every);
	snprintf(a[2], 32, "%u", p->enrich);
	snprintf(a[3], 32, "%u", p->persist);
	snprintf(a[4], 32, "%" PRIu64, p->seed);
	snprintf(a[5], 32, "%u", p->permille);
	snprintf(a[6], 32, "%u", p->retries);
	snprintf(a[7], 32, "%u", p->max_deliveries);
	char *argv[] = { SHOP_RUN, "--fabric", (char *)fabric, "--count", a[0], "--bad-every",
			 a[1], "--enrich", a[2], "--persist", a[3], "--rate", "1000000",
			 "--burst", "1000", "--latency-us", "200", "--seed", a[4],
			 "--fail-permille", a[5], "--retries", a[6], "--max-deliveries", a[7],
			 "--result-dir", (char *)dir, "--timeout", "90", "--quiet", NULL };
	char log[512];
	snprintf(log, sizeof(log), "%s/log", dir);

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execv(SHOP_RUN, argv);
		_exit(127);
	}
	ft_children[ft_nchildren++] = pid;

	int64_t t0 = ft_now_ns();
	int signalled = 0, st;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		int64_t ms = (ft_now_ns() - t0) / 1000000;
		if (p->drain_after_ms && !signalled && ms >= p->drain_after_ms) {
			kill(pid, SIGTERM);
			signalled = 1;
		}
		if (ms > 120000) { /* shop-run's own --timeout failed: kill it */
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		usleep(10000);
	}
	ft_nchildren--;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static pid_t runner_pid; /* Check forks each case: name fabrics after the runner */

/* "t<tag>-<runner pid>-x": no other fabric's name starts with it. */
static const char *fabric_name(const char *tag)
{
	static char buf[FAB_NAME_MAX + 1];
	snprintf(buf, sizeof(buf), "t%s-%d-x", tag, (int)runner_pid);
	return buf;
}

static void check_pipeline(const struct params *p, const char *tag)
{
	char dir[] = "/tmp/fab-shop-test-XXXXXX";
	const char *fabric = fabric_name(tag);
	struct expect e;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	int rc = run_shop(p, fabric, dir);
	int leftover = shm_exists(fabric);
	if (rc != 0 || leftover)
		dump_log(dir);
	if (leftover) {
		char prefix[96];
		snprintf(prefix, sizeof(prefix), "fab.%s", fabric);
		ft_sweep_prefix(prefix);
	}
	ck_assert_msg(rc == 0, "shop-run exited %d (log above)", rc);
	ck_assert_msg(!leftover, "shop-run left /dev/shm/fab.%s behind", fabric);

	uint64_t sent = result(dir, "source.txt", "sent");
	if (p->drain_after_ms)
		ck_assert_uint_gt(sent, 0);
	else
		ck_assert_uint_eq(sent, p->count);
	model(p, sent, &e);
	ck_assert_uint_eq(result(dir, "source.txt", "malformed"), e.malformed);

	/* Every persisted order reached the sink exactly once. */
	ck_assert_uint_eq(result(dir, "ack.txt", "unique"), e.persisted);
	ck_assert_uint_eq(result(dir, "ack.txt", "received"), e.persisted);
	ck_assert_uint_eq(result(dir, "ack.txt", "duplicates"), 0);
	ck_assert_uint_eq(result(dir, "ack.txt", "bad"), 0);
	ck_assert_uint_eq(result(dir, "ack.txt", "id_sum"), e.persisted_sum);
	/* Every poison order was dead-lettered, and reached quarantine. */
	ck_assert_uint_eq(result(dir, "quarantine.txt", "dead_lettered"), e.dead);
	ck_assert_uint_eq(result(dir, "quarantine.txt", "id_sum"), e.dead_sum);
	/* Errors, counted from the error channel by shop-run. */
	ck_assert_uint_eq(result(dir, "run.txt", "status"), 0);
	ck_assert_uint_eq(result(dir, "run.txt", "errors_validate"), e.malformed);
	ck_assert_uint_eq(result(dir, "run.txt", "errors_persist"), e.store_errors);
	ck_assert_uint_eq(result(dir, "run.txt", "errors_enrich"), 0);
	ck_assert_uint_eq(result(dir, "run.txt", "errors_ack"), 0);
	ck_assert_uint_eq(result(dir, "run.txt", "errors_other"), 0);
	/* The channel's own counters agree. */
	ck_assert_uint_eq(result(dir, "run.txt", "enriched_sent"), sent - e.malformed);
	ck_assert_uint_eq(result(dir, "run.txt", "nacked"), e.store_errors);
	ck_assert_uint_eq(result(dir, "run.txt", "redelivered"), e.store_errors - e.dead);
	ck_assert_uint_eq(result(dir, "run.txt", "dead_lettered"), e.dead);
	ck_assert_uint_eq(result(dir, "run.txt", "dead_dropped"), 0);
	ck_assert_uint_eq(result(dir, "run.txt", "results_sent"), e.persisted);

	fprintf(stderr,
		"%s: %" PRIu64 " orders: %" PRIu64 " malformed, %" PRIu64 " persisted, %" PRIu64
		" dead-lettered, %" PRIu64 " failed deliveries\n",
		tag, sent, e.malformed, e.persisted, e.dead, e.store_errors);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* A store failing 40% of attempts, 2 attempts, 2 deliveries: about 2.5%
 * of the orders are dead-lettered and ~20% are redelivered once. */
START_TEST(t_flaky_store)
{
	struct params p = { .count = 2000, .bad_every = 50, .seed = 42, .enrich = 4,
			    .persist = 3, .permille = 400, .retries = 2, .max_deliveries = 2 };
	check_pipeline(&p, "shopflaky");
}
END_TEST

/* The programs' defaults: a 5% flaky store, 3 attempts, 5 deliveries. */
START_TEST(t_default_store)
{
	struct params p = { .count = 2000, .bad_every = 50, .seed = 7, .enrich = 4,
			    .persist = 3, .permille = 50, .retries = 3, .max_deliveries = 5 };
	check_pipeline(&p, "shopdef");
}
END_TEST

/* An endless source drained by SIGTERM: nothing it sent is lost. */
START_TEST(t_drain)
{
	struct params p = { .bad_every = 50, .seed = 9, .enrich = 4, .persist = 3,
			    .permille = 400, .retries = 2, .max_deliveries = 2,
			    .drain_after_ms = 400 };
	check_pipeline(&p, "shopdrain");
}
END_TEST

static const char *const tags[] = { "shopflaky", "shopdef", "shopdrain" };

int main(void)
{
	runner_pid = getpid();
	Suite *s = suite_create("examples_shop");
	TCase *tc = tcase_create("shop");
	tcase_set_timeout(tc, 150);
	tcase_add_test(tc, t_flaky_store);
	tcase_add_test(tc, t_default_store);
	tcase_add_test(tc, t_drain);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	/* A case killed by Check's timeout cannot clean up: sweep its fabric. */
	for (unsigned i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		char prefix[96];
		snprintf(prefix, sizeof(prefix), "fab.%s", fabric_name(tags[i]));
		if (ft_sweep_prefix(prefix) > 0)
			failed++;
	}
	return failed ? 1 : 0;
}
