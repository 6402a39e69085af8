/* test_topology.c - fabd's topology parser: the model of a valid file, the
 * exact position and message of every class of error, the spsc/mpmc rule,
 * the value syntaxes, and hostile input that must neither crash nor leak. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "topology.h"

#define DATA FABD_TEST_DATA "/"

static fabd_topology *load_ok(const char *file)
{
	fabd_topology *t = NULL;
	fabd_diags d = { 0 };
	int rc = fabd_topology_load(file, &t, &d);
	if (rc != 0)
		fabd_diags_print(&d, file, stderr);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(d.n, 0);
	ck_assert_ptr_nonnull(t);
	fabd_diags_free(&d);
	return t;
}

/* Load a file that must fail and compare its diagnostics, "L:C: message",
 * one by one and in order, with the NULL-terminated list `want`. */
static void expect_errors(const char *file, const char *const want[])
{
	fabd_topology *t = (fabd_topology *)1;
	fabd_diags d = { 0 };
	ck_assert_int_eq(fabd_topology_load(file, &t, &d), -1);
	ck_assert_ptr_null(t);
	size_t n = 0;
	while (want[n])
		n++;
	char got[512];
	for (size_t i = 0; i < d.n || i < n; i++) {
		if (i < d.n)
			snprintf(got, sizeof got, "%u:%u: %s", d.v[i].pos.line, d.v[i].pos.col,
				 d.v[i].msg);
		ck_assert_msg(i < d.n, "%s: missing error #%zu: %s", file, i, want[i]);
		ck_assert_msg(i < n, "%s: unexpected error #%zu: %s", file, i, got);
		ck_assert_str_eq(got, want[i]);
	}
	fabd_diags_free(&d);
}

static const fabd_port *port(const fabd_stage *s, const char *name)
{
	for (size_t i = 0; i < s->nports; i++)
		if (!strcmp(s->ports[i].name, name))
			return &s->ports[i];
	ck_abort_msg("no port %s in stage %s", name, s->name);
	return NULL;
}

START_TEST(t_full_model)
{
	fabd_topology *t = load_ok(DATA "full.yaml");
	ck_assert_str_eq(t->fabric, "full-1");
	ck_assert_uint_eq(t->mode, 0660);
	ck_assert_uint_eq(t->nchannels, 4);
	ck_assert_uint_eq(t->nstages, 3);
	ck_assert_uint_eq(t->processes, 6);

	int jobs = fabd_topology_channel(t, "jobs"), dead = fabd_topology_channel(t, "dead");
	int results = fabd_topology_channel(t, "results"), direct = fabd_topology_channel(t, "direct");
	ck_assert_int_ge(jobs, 0);
	ck_assert_int_ge(dead, 0);
	const fabd_channel *c = &t->channels[jobs];
	ck_assert_uint_eq(c->pos.line, 4);
	ck_assert_uint_eq(c->pos.col, 3);
	ck_assert_uint_eq(c->capacity, 128);
	ck_assert_uint_eq(c->msg_size, 4096);
	ck_assert_uint_eq(c->delivery, FAB_AT_LEAST_ONCE);
	ck_assert_uint_eq(c->max_inflight, 4);
	ck_assert_uint_eq(c->max_deliveries, 3);
	ck_assert_int_eq(c->dead_letter, dead);
	ck_assert_str_eq(c->dead_letter_name, "dead");
	ck_assert_uint_eq(c->writers, 1);
	ck_assert_uint_eq(c->readers, 4);
	ck_assert_uint_eq(c->producers, 1);
	ck_assert_uint_eq(c->kind, FAB_MPMC);
	ck_assert_int_eq(c->kind_explicit, 0);

	c = &t->channels[dead];
	ck_assert_uint_eq(c->msg_size, 1u << 20);
	ck_assert_uint_eq(c->dl_sources, 1);
	ck_assert_uint_eq(c->writers, 0);
	ck_assert_uint_eq(c->readers, 1);
	ck_assert_uint_eq(c->kind, FAB_MPMC); /* a dead letter is never spsc by default */
	ck_assert_uint_eq(c->delivery, FAB_AT_MOST_ONCE);
	ck_assert_int_eq(c->dead_letter, -1);

	c = &t->channels[results];
	ck_assert_uint_eq(c->capacity, 0);
	ck_assert_uint_eq(c->msg_size, 0);
	ck_assert_uint_eq(c->kind, FAB_MPMC);
	ck_assert_int_eq(c->kind_explicit, 1);
	ck_assert_uint_eq(c->writers, 4);
	ck_assert_uint_eq(c->producers, 4);

	c = &t->channels[direct]; /* {}: every default, 1 -> 1 */
	ck_assert_uint_eq(c->capacity, FABD_DEF_CAPACITY);
	ck_assert_uint_eq(c->msg_size, FABD_DEF_MSG_SIZE);
	ck_assert_uint_eq(c->max_inflight, FABD_DEF_MAX_INFLIGHT);
	ck_assert_uint_eq(c->max_deliveries, FABD_DEF_MAX_DELIVERIES);
	ck_assert_uint_eq(c->kind, FAB_SPSC);

	ck_assert_uint_eq(t->nlimiters, 2);
	ck_assert_str_eq(t->limiters[0].name, "api");
	ck_assert(fabs(t->limiters[0].rate - 200.0) < 1e-9);
	ck_assert_uint_eq(t->limiters[0].burst, 50);
	ck_assert_str_eq(t->limiters[1].name, "slow");
	ck_assert(fabs(t->limiters[1].rate - 0.2) < 1e-9);
	ck_assert_uint_eq(t->limiters[1].burst, FABD_DEF_BURST);

	ck_assert_uint_eq(t->ntopics, 1);
	ck_assert_str_eq(t->topics[0].name, "news");
	ck_assert_uint_eq(t->topics[0].capacity, 32);
	ck_assert_uint_eq(t->topics[0].msg_size, 512);
	ck_assert_uint_eq(t->topics[0].publishers, 1);
	ck_assert_uint_eq(t->topics[0].subscribers, 4);

	/* Stages keep file order. */
	const fabd_stage *s = &t->stages[0];
	ck_assert_str_eq(s->name, "src");
	ck_assert_uint_eq(s->argc, 5);
	ck_assert_str_eq(s->argv[0], "gen");
	ck_assert_str_eq(s->argv[1], "--count");
	ck_assert_str_eq(s->argv[2], "10");
	ck_assert_str_eq(s->argv[3], "two words");
	ck_assert_str_eq(s->argv[4], "q\"x");
	ck_assert_ptr_null(s->argv[5]);
	ck_assert_uint_eq(s->replicas, 1);
	ck_assert_int_eq(s->restart, FABD_RESTART_ALWAYS);
	ck_assert_uint_eq(s->backoff_min_ns, 250000000ull);
	ck_assert_uint_eq(s->backoff_max_ns, 120000000000ull);
	ck_assert_uint_eq(s->intensity_max, 3);
	ck_assert_uint_eq(s->intensity_window_ns, 90000000000ull);
	ck_assert_int_eq(s->strategy, FABD_REST_FOR_ONE);
	ck_assert_uint_eq(s->watchdog_ns, 0);
	ck_assert_uint_eq(s->nports, 3);
	const fabd_port *pt = port(s, "news");
	ck_assert_int_eq(pt->out, 1);
	ck_assert_int_eq(pt->target_kind, FABD_TARGET_TOPIC);
	ck_assert_int_eq(pt->target, 0);
	pt = port(s, "jobs");
	ck_assert_int_eq(pt->target_kind, FABD_TARGET_CHANNEL);
	ck_assert_int_eq(pt->target, jobs);

	s = &t->stages[1];
	ck_assert_str_eq(s->name, "work");
	ck_assert_uint_eq(s->argc, 3);
	ck_assert_str_eq(s->argv[2], "a b");
	ck_assert_uint_eq(s->replicas, 4);
	ck_assert_int_eq(s->restart, FABD_RESTART_ON_FAILURE);
	ck_assert_uint_eq(s->backoff_min_ns, FABD_DEF_BACKOFF_MIN_NS);
	ck_assert_uint_eq(s->backoff_max_ns, FABD_DEF_BACKOFF_MAX_NS);
	ck_assert_uint_eq(s->intensity_max, FABD_DEF_INTENSITY_MAX);
	ck_assert_uint_eq(s->intensity_window_ns, FABD_DEF_INTENSITY_WINDOW_NS);
	ck_assert_int_eq(s->strategy, FABD_ONE_FOR_ONE);
	ck_assert_uint_eq(s->watchdog_ns, 1500000000ull);
	pt = port(s, "feed");
	ck_assert_int_eq(pt->out, 0);
	ck_assert_int_eq(pt->target_kind, FABD_TARGET_TOPIC);
	ck_assert_uint_eq(pt->policy, FAB_SUB_DROP);
	pt = port(s, "jobs");
	ck_assert_int_eq(pt->out, 0);
	ck_assert_uint_eq(pt->policy, 0);
	ck_assert_uint_eq(s->nlimiters, 2);
	ck_assert_int_eq(s->limiters[0], 0);
	ck_assert_int_eq(s->limiters[1], 1);
	ck_assert_uint_eq(s->nenv, 2);
	ck_assert_str_eq(s->env[0], "MODE=fast");
	ck_assert_str_eq(s->env[1], "EMPTY=");
	ck_assert_ptr_null(s->env[2]);

	s = &t->stages[2];
	ck_assert_int_eq(s->restart, FABD_RESTART_NEVER);
	ck_assert_int_eq(s->strategy, FABD_ONE_FOR_ALL);
	ck_assert_int_eq(port(s, "errs")->target_kind, FABD_TARGET_ERRORS);
	ck_assert_ptr_null(s->env);

	ck_assert_str_eq(t->errors.name, "errs");
	ck_assert_uint_eq(t->errors.capacity, 16);
	ck_assert_uint_eq(t->errors.msg_size, 2048);
	ck_assert_uint_eq(t->errors.writers, 6);
	ck_assert_uint_eq(t->errors.readers, 1);
	ck_assert_int_eq(t->metrics.enabled, 1);
	ck_assert_str_eq(t->metrics.host, "::1");
	ck_assert_uint_eq(t->metrics.port, 9999);
	ck_assert_uint_eq(t->drain_ns, 60000000000ull);
	ck_assert_uint_eq(t->grace_ns, 500000000ull);
	fabd_topology_free(t);
}
END_TEST

START_TEST(t_defaults)
{
	static const char y[] = "fabric: f\n"
				"channels: { c: }\n"
				"stages:\n"
				"  a: { run: a, out: { o: c } }\n"
				"  b: { run: b, in: { i: c } }\n";
	fabd_topology *t;
	fabd_diags d = { 0 };
	ck_assert_int_eq(fabd_topology_parse(y, strlen(y), &t, &d), 0);
	ck_assert_uint_eq(t->mode, 0600);
	ck_assert_str_eq(t->errors.name, FABD_DEF_ERRORS_NAME);
	ck_assert_uint_eq(t->errors.capacity, FABD_DEF_ERRORS_CAPACITY);
	ck_assert_uint_eq(t->errors.msg_size, FABD_DEF_ERRORS_MSG_SIZE);
	ck_assert_uint_eq(t->errors.writers, 2);
	ck_assert_uint_eq(t->errors.readers, 0); /* fabd reads it */
	ck_assert_int_eq(t->metrics.enabled, 1);
	ck_assert_str_eq(t->metrics.host, "127.0.0.1");
	ck_assert_uint_eq(t->metrics.port, 9464);
	ck_assert_uint_eq(t->drain_ns, FABD_DEF_DRAIN_NS);
	ck_assert_uint_eq(t->grace_ns, FABD_DEF_GRACE_NS);
	ck_assert_uint_eq(t->channels[0].kind, FAB_SPSC);
	ck_assert_uint_eq(t->channels[0].delivery, FAB_AT_MOST_ONCE);
	ck_assert_int_eq(t->stages[0].restart, FABD_RESTART_ON_FAILURE);
	fabd_topology_free(t);
	fabd_diags_free(&d);

	static const char off[] = "fabric: f\nstages: { a: { run: a } }\nmetrics: { listen: off }\n";
	ck_assert_int_eq(fabd_topology_parse(off, strlen(off), &t, &d), 0);
	ck_assert_int_eq(t->metrics.enabled, 0);
	fabd_topology_free(t);
	fabd_diags_free(&d);
}
END_TEST

START_TEST(t_kind_rule)
{
	fabd_topology *t = load_ok(DATA "kinds.yaml");
	static const struct {
		const char *name;
		uint32_t kind;
	} want[] = {
		{ "one_one", FAB_SPSC },     { "one_pool", FAB_MPMC }, { "pool_one", FAB_MPMC },
		{ "two_writers", FAB_MPMC }, { "two_ports", FAB_MPMC }, { "forced", FAB_MPMC },
		{ "alo", FAB_SPSC },         { "dl", FAB_MPMC },
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		int c = fabd_topology_channel(t, want[i].name);
		ck_assert_int_ge(c, 0);
		ck_assert_msg(t->channels[c].kind == want[i].kind, "%s: kind %u, want %u",
			      want[i].name, t->channels[c].kind, want[i].kind);
	}
	ck_assert_uint_eq(t->channels[fabd_topology_channel(t, "two_ports")].writers, 2);
	ck_assert_uint_eq(t->channels[fabd_topology_channel(t, "pool_one")].producers, 3);
	fabd_topology_free(t);
}
END_TEST

START_TEST(t_err_syntax)
{
	static const char *const w[] = {
		"5:4: did not find expected ',' or ']' (while parsing a flow sequence at line 4)", NULL
	};
	expect_errors(DATA "syntax.yaml", w);
}
END_TEST

START_TEST(t_err_unknown_key)
{
	static const char *const w[] = {
		"2:1: topology: unknown key 'chanels' (did you mean 'channels'?)",
		"4:21: channels.c: unknown key 'kindd' (did you mean 'kind'?)",
		"9:5: stages.a: unknown key 'replica' (did you mean 'replicas'?)",
		"13:5: stages.b: unknown key 'retsart' (did you mean 'restart'?)",
		NULL
	};
	expect_errors(DATA "unknown_key.yaml", w);
}
END_TEST

START_TEST(t_err_wrong_type)
{
	static const char *const w[] = {
		"1:9: fabric: expected a name, got a mapping",
		"4:15: channels.c.capacity: expected an integer from 0 to 16777216, got a sequence",
		"5:6: channels.d: expected a mapping, got '5'",
		"6:11: limiters: expected a mapping of limiter names to their settings, got a sequence",
		"9:10: stages.a.run: expected a command (a string or a list), got a mapping",
		"11:15: stages.a.replicas: expected an integer from 1 to 1024, got a mapping",
		"15:15: stages.b.limiters: expected a list of limiter names, got 'api'",
		"16:10: stages.b.env: expected a mapping of variable names to values, got a sequence",
		NULL
	};
	expect_errors(DATA "wrong_type.yaml", w);
}
END_TEST

START_TEST(t_err_bad_values)
{
	static const char *const w[] = {
		"1:9: fabric: 'bad name' is not a valid name ([A-Za-z0-9_-], 1 to 48 characters)",
		"4:15: channels.c.capacity: expected an integer from 0 to 16777216, got '-1'",
		"5:15: channels.c.msg_size: expected a size like 64, 4KiB or 1MiB, got '4KB'",
		"6:11: channels.c.kind: expected one of spsc or mpmc, got 'fifo'",
		"7:15: channels.c.delivery: expected one of at-most-once or at-least-once, got "
		"'exactly-once'",
		"9:15: channels.d.msg_size: '32MiB' is more than the limit of 16777216",
		"11:16: limiters.api.rate: expected a rate like 200/s, 12/m or 5/10s between "
		"0.00091/s and 1e+09/s, got 'fast'",
		"11:29: limiters.api.burst: expected an integer from 1 to 16777215, got '0'",
		"14:10: stages.a.run: shell operators and expansions ('|&;<>()$`') are not supported; "
		"quote them, or run [sh, -c, \"...\"]",
		"16:14: stages.a.restart: expected one of on-failure, always or never, got 'sometimes'",
		"17:14: stages.a.backoff: the first delay of '10s..1s' is longer than the last",
		"18:16: stages.a.intensity: expected an intensity like 5/10s (restarts/window), got "
		"'five/10s'",
		"19:15: stages.a.strategy: expected one of one_for_one, one_for_all or rest_for_one, "
		"got 'all_for_one'",
		"20:15: stages.a.watchdog: expected a duration like 250ms, 10s or 2m, got '10'",
		"22:10: stages.b.run: unterminated ' quote",
		"24:15: stages.b.replicas: expected an integer from 1 to 1024, got '0'",
		"25:20: metrics.listen: expected host:port (port 1-65535), [v6]:port or off, got "
		"'localhost'",
		"26:20: shutdown.drain: expected a duration like 250ms, 10s or 2m, got '1x'",
		"26:31: shutdown.grace: expected a duration like 250ms, 10s or 2m, got '5'",
		"27:7: mode: expected a mode like 0600 or 0660 (octal; the owner reads and writes, "
		"group and others read and write, read or nothing), got '0700'",
		NULL
	};
	expect_errors(DATA "bad_values.yaml", w);
}
END_TEST

START_TEST(t_err_dangling)
{
	static const char *const w[] = {
		"3:46: channels.c.dead_letter: no channel named 'nowhere'",
		"4:46: channels.d.dead_letter: a channel cannot be its own dead letter",
		"5:21: channels.e.dead_letter: applies only to delivery: at-least-once",
		"9:33: stages.a.out.r: no channel or topic named 'missing'",
		"10:16: stages.a.limiters[0]: no limiter named 'api'",
		"10:21: stages.a.limiters[1]: no limiter named 'api2'",
		"13:41: stages.b.in.t.topic: no topic named 'c' (it is a channel: name it directly)",
		NULL
	};
	expect_errors(DATA "dangling.yaml", w);
}
END_TEST

START_TEST(t_err_duplicates)
{
	static const char *const w[] = {
		"4:3: channels: duplicate channel 'c' (first at 3:3)",
		"7:3: topics.n: the name is already used by a channel (line 5); channels and topics "
		"share one namespace",
		"13:18: stages.a.out: duplicate port 'o' (first at 13:12)",
		"14:19: stages.a.limiters[1]: limiter 'l' is listed twice",
		"15:3: stages: duplicate stage 'a' (first at 11:3)",
		"21:17: errors.name: 'c' is already declared as a channel (line 3); the error channel "
		"is declared only under errors",
		NULL
	};
	expect_errors(DATA "duplicates.yaml", w);
}
END_TEST

START_TEST(t_err_wiring)
{
	static const char *const w[] = {
		"3:3: channels.nowriter: nothing writes this channel (no stage has an out port on it "
		"and it is no channel's dead_letter)",
		"4:3: channels.noreader: nothing reads this channel (no stage has an in port on it)",
		"7:3: topics.silent: nothing publishes to this topic (no stage has an out port on it)",
		NULL
	};
	expect_errors(DATA "wiring.yaml", w);
}
END_TEST

START_TEST(t_err_spsc)
{
	static const char *const w[] = {
		"3:19: channels.fanout.kind: spsc, but 3 processes read it; declare kind: mpmc",
		"4:18: channels.fanin.kind: spsc, but 3 processes write it; declare kind: mpmc",
		"7:19: channels.poison.kind: spsc, but it is the dead_letter of another channel, "
		"written by that channel's receivers; declare kind: mpmc",
		"7:19: channels.poison.kind: spsc, but 3 processes read it; declare kind: mpmc",
		NULL
	};
	expect_errors(DATA "spsc.yaml", w);
}
END_TEST

START_TEST(t_err_missing)
{
	static const char *const w[] = {
		"1:1: missing required key 'fabric'",
		"1:1: missing required key 'stages'",
		NULL
	};
	expect_errors(DATA "missing.yaml", w);
	static const char *const w2[] = {
		"3:6: limiters.l: missing required key 'rate'",
		"6:5: stages.a: missing required key 'run'",
		"7:3: stages.b: missing required key 'run'",
		NULL
	};
	expect_errors(DATA "missing_run.yaml", w2);
	static const char *const w3[] = {
		"4:1: a topology file holds one YAML document; found a second one", NULL
	};
	expect_errors(DATA "two_docs.yaml", w3);
}
END_TEST

START_TEST(t_err_many)
{
	/* Several classes at once, all reported, in file order. */
	static const char *const w[] = {
		"3:21: channels.jobs.capacity: expected an integer from 0 to 16777216, got 'lots'",
		"4:20: channels.results.kind: spsc, but 2 processes write it; declare kind: mpmc",
		"9:15: stages.src.watchdog: expected a duration like 250ms, 10s or 2m, got 'soon'",
		"14:27: stages.work.out.x: no channel or topic named 'nowhere'",
		"15:14: stages.work.restart: expected one of on-failure, always or never, got "
		"'sometimes'",
		"19:16: stages.sink.limiters[0]: no limiter named 'ghost'",
		"20:1: a topology file holds one YAML document; found a second one",
		NULL
	};
	expect_errors(DATA "many.yaml", w);
}
END_TEST

START_TEST(t_err_file)
{
	fabd_topology *t;
	fabd_diags d = { 0 };
	ck_assert_int_eq(fabd_topology_load(DATA "does-not-exist.yaml", &t, &d), -1);
	ck_assert_uint_eq(d.n, 1);
	ck_assert_uint_eq(d.v[0].pos.line, 0);
	ck_assert_str_eq(d.v[0].msg, "cannot open: No such file or directory");
	fabd_diags_free(&d);
	static const char empty[] = "";
	ck_assert_int_eq(fabd_topology_parse(empty, 0, &t, &d), -1);
	ck_assert_str_eq(d.v[0].msg, "empty topology: 'fabric' and 'stages' are required");
	/* Every error but "cannot open" has a position (topology.md): an
	 * empty file's is 1:1 (it had none; found by an operator trial). */
	ck_assert_uint_eq(d.v[0].pos.line, 1);
	ck_assert_uint_eq(d.v[0].pos.col, 1);
	fabd_diags_free(&d);
}
END_TEST

START_TEST(t_example_pipeline)
{
	fabd_topology *t = load_ok(FABD_EXAMPLES "/pipeline.yaml");
	ck_assert_str_eq(t->fabric, "shop");
	int e = fabd_topology_stage(t, "enrich");
	ck_assert_int_ge(e, 0);
	ck_assert_uint_eq(t->stages[e].replicas, 20);
	ck_assert_uint_eq(t->stages[e].nlimiters, 1);
	ck_assert_uint_eq(t->channels[fabd_topology_channel(t, "raw")].kind, FAB_SPSC);
	ck_assert_uint_eq(t->channels[fabd_topology_channel(t, "enriched")].producers, 20);
	fabd_topology_free(t);
}
END_TEST

/* The fabric's mode (FAB_MODE): octal, owner read-write, no execute bits. */
START_TEST(t_mode)
{
	static const struct {
		const char *v;
		uint32_t want; /* 0: refused */
	} cases[] = { { "0600", 0600 }, { "660", 0660 },   { "\"0666\"", 0666 }, { "0644", 0644 },
		      { "0700", 0 },    { "0400", 0 },     { "06600", 0 },       { "66", 0 },
		      { "0o660", 0 },   { "rw-rw----", 0 }, { "0661", 0 },        { "0060", 0 },
		      { "1660", 0 },    { "{}", 0 },         { "0620", 0 },        { "0602", 0 } };
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char y[128];
		snprintf(y, sizeof y, "fabric: f\nmode: %s\nstages: { a: { run: a } }\n", cases[i].v);
		fabd_topology *t = NULL;
		fabd_diags d = { 0 };
		int rc = fabd_topology_parse(y, strlen(y), &t, &d);
		if (cases[i].want) {
			ck_assert_msg(rc == 0, "mode %s refused", cases[i].v);
			ck_assert_msg(t->mode == cases[i].want, "mode %s read as %o", cases[i].v,
				      t->mode);
			fabd_topology_free(t);
		} else {
			ck_assert_msg(rc == -1 && d.n == 1 && strstr(d.v[0].msg, "mode: expected"),
				      "mode %s: rc %d, %zu errors%s%s", cases[i].v, rc, d.n,
				      d.n ? ": " : "", d.n ? d.v[0].msg : "");
		}
		fabd_diags_free(&d);
	}
}
END_TEST

START_TEST(t_value_syntax)
{
	uint64_t v;
	ck_assert_int_eq(fabd_parse_duration("250ms", &v), 0);
	ck_assert_uint_eq(v, 250000000ull);
	ck_assert_int_eq(fabd_parse_duration("2m", &v), 0);
	ck_assert_uint_eq(v, 120000000000ull);
	ck_assert_int_eq(fabd_parse_duration("1h1m1s1ms1us1ns", &v), 0);
	ck_assert_uint_eq(v, 3661001001001ull);
	ck_assert_int_eq(fabd_parse_duration("0.5s", &v), 0);
	ck_assert_uint_eq(v, 500000000ull);
	ck_assert_int_eq(fabd_parse_duration("0", &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(fabd_parse_duration("2562047h47m16s854775807ns", &v), 0); /* Go's max */
	ck_assert_uint_eq(v, (uint64_t)INT64_MAX);
	const char *bad_d[] = { "", "10", "s", "1.s", ".5s", "-1s", "1 s", "1sec", "1d",
				"99999999999h", "18446744073709551616ns",
				/* past Go's int64 of nanoseconds (as Go refuses) */
				"2562048h", "9223372037s", "9223372036854775808ns",
				"2562047h47m16s854775808ns", NULL };
	for (size_t i = 0; bad_d[i]; i++)
		ck_assert_msg(fabd_parse_duration(bad_d[i], &v) < 0, "duration '%s'", bad_d[i]);

	ck_assert_int_eq(fabd_parse_size("64", &v), 0);
	ck_assert_uint_eq(v, 64);
	ck_assert_int_eq(fabd_parse_size("4KiB", &v), 0);
	ck_assert_uint_eq(v, 4096);
	ck_assert_int_eq(fabd_parse_size("1MiB", &v), 0);
	ck_assert_uint_eq(v, 1u << 20);
	ck_assert_int_eq(fabd_parse_size("0B", &v), 0);
	ck_assert_uint_eq(v, 0);
	const char *bad_s[] = { "", "KiB", "4KB", "4k", "4 KiB", "-1", "1.5KiB", "4kib",
				"99999999999999999999", NULL };
	for (size_t i = 0; bad_s[i]; i++)
		ck_assert_msg(fabd_parse_size(bad_s[i], &v) < 0, "size '%s'", bad_s[i]);

	double r;
	ck_assert_int_eq(fabd_parse_rate("200/s", &r), 0);
	ck_assert(fabs(r - 200) < 1e-9);
	ck_assert_int_eq(fabd_parse_rate("200", &r), 0);
	ck_assert(fabs(r - 200) < 1e-9);
	ck_assert_int_eq(fabd_parse_rate("5/10s", &r), 0);
	ck_assert(fabs(r - 0.5) < 1e-12);
	ck_assert_int_eq(fabd_parse_rate("1/250ms", &r), 0);
	ck_assert(fabs(r - 4) < 1e-9);
	ck_assert_int_eq(fabd_parse_rate("60/m", &r), 0);
	ck_assert(fabs(r - 1) < 1e-12);
	const char *bad_r[] = { "", "fast", "0/s", "200/", "200/x", "1/0s", "2e9/s", "1/2h",
				"nan", "inf", "-1/s", "1e3", NULL };
	for (size_t i = 0; bad_r[i]; i++)
		ck_assert_msg(fabd_parse_rate(bad_r[i], &r) < 0, "rate '%s'", bad_r[i]);
}
END_TEST

START_TEST(t_split_command)
{
	char **argv;
	size_t argc;
	const char *why;
	ck_assert_int_eq(fabd_split_command("  a  'b c' \"d\\\"e\" f\\ g '' h'i'j ", &argv, &argc,
					    &why), 0);
	ck_assert_uint_eq(argc, 6);
	ck_assert_str_eq(argv[0], "a");
	ck_assert_str_eq(argv[1], "b c");
	ck_assert_str_eq(argv[2], "d\"e");
	ck_assert_str_eq(argv[3], "f g");
	ck_assert_str_eq(argv[4], "");
	ck_assert_str_eq(argv[5], "hij");
	ck_assert_ptr_null(argv[6]);
	for (size_t i = 0; i < argc; i++)
		free(argv[i]);
	free(argv);
	ck_assert_int_eq(fabd_split_command("a '|' \"$x\"", &argv, &argc, &why), -1);
	ck_assert_str_eq(why, "shell operators and expansions ('|&;<>()$`') are not supported; "
			      "quote them, or run [sh, -c, \"...\"]");
	ck_assert_int_eq(fabd_split_command("a '|' \\$x", &argv, &argc, &why), 0);
	ck_assert_str_eq(argv[1], "|");
	ck_assert_str_eq(argv[2], "$x");
	for (size_t i = 0; i < argc; i++)
		free(argv[i]);
	free(argv);
	ck_assert_int_eq(fabd_split_command("   ", &argv, &argc, &why), -1);
	ck_assert_str_eq(why, "empty command");
	ck_assert_int_eq(fabd_split_command("a \"b", &argv, &argc, &why), -1);
	ck_assert_str_eq(why, "unterminated \" quote");
	ck_assert_int_eq(fabd_split_command("a\\", &argv, &argc, &why), -1);
	ck_assert_str_eq(why, "trailing backslash");
}
END_TEST

/* Hostile and odd input: every call returns 0 or -1, nothing crashes or
 * leaks (ASan/LSan in the sanitizer build). */
START_TEST(t_hostile)
{
	static const char *const inputs[] = {
		"&a [*a]",
		"a: &x {b: *x}\nfabric: f\nstages: *x",
		"fabric: f\nstages:\n  a: &s {run: a, in: {i: *s}}",
		"fabric: f\nstages: {a: {run: a}}\nchannels: {c: {dead_letter: [1]}}",
		"- - - - - - - - - - - -\n",
		"? [complex, key]\n: value\n",
		"fabric: f\nstages: {? [a] : {run: a}}",
		"fabric: f\nstages: {a: {run: a, env: {? [k] : v}}}",
		"fabric: f\nstages: {a: {run: a, in: {? {k: 1} : c}}}",
		"\t\tfabric: x",
		"fabric: \"\\xff\\u0000\"\nstages: {}",
		"fabric: f\nstages: {a: {run: [a, [b]], limiters: [[x]], replicas: 99999999999999999999}}",
		"!!binary fabric: x",
		"%YAML 1.1\n---\nfabric: f\nstages: {a: {run: a}}\n...\n",
		"fabric: f\nstages: {a: {run: \"\"}}",
		"fabric: f\nstages: {a: {run: [\"\"]}}",
		"fabric: f\nstages: {a: {run: a, backoff: \"..\", intensity: /, watchdog: 1.5.5s}}",
		"fabric: f\nmetrics: {listen: \"[::1\"}\nstages: {a: {run: a}}",
		"fabric: f\nmetrics: {listen: \":80\"}\nstages: {a: {run: a}}",
		"fabric: f\nmetrics: {listen: \"h:0\"}\nstages: {a: {run: a}}",
		"fabric: f\nmetrics: {listen: \"h:65536\"}\nstages: {a: {run: a}}",
		"fabric: f\nmetrics: {listen: \"::1:80\"}\nstages: {a: {run: a}}",
	};
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		fabd_topology *t;
		fabd_diags d = { 0 };
		int rc = fabd_topology_parse(inputs[i], strlen(inputs[i]), &t, &d);
		ck_assert_msg(rc == 0 || rc == -1, "input %zu", i);
		ck_assert_msg((rc == 0) == (t != NULL), "input %zu", i);
		ck_assert_msg(rc == 0 || d.n > 0, "input %zu: invalid without a message", i);
		for (size_t j = 0; j < d.n; j++)
			ck_assert_msg(d.v[j].msg && d.v[j].msg[0], "input %zu", i);
		fabd_topology_free(t);
		fabd_diags_free(&d);
	}
	/* Binary garbage of every length up to 64 bytes. */
	static const char alphabet[] = "fabric:stages{}[]-,&*!|>'\"\n #\t~run:in:out:a\xff";
	unsigned seed = 12345;
	for (size_t n = 0; n < 2000; n++) {
		char buf[64];
		size_t len = n % sizeof buf;
		for (size_t j = 0; j < len; j++) {
			seed = seed * 1103515245u + 12345u;
			buf[j] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
		}
		fabd_topology *t;
		fabd_diags d = { 0 };
		int rc = fabd_topology_parse(buf, len, &t, &d);
		ck_assert(rc == 0 || rc == -1);
		fabd_topology_free(t);
		fabd_diags_free(&d);
	}
}
END_TEST

/* Every prefix of the full example, and the example with each byte in turn
 * replaced: the parser survives them all (ASan/UBSan in the sanitizer
 * build). */
START_TEST(t_mutations)
{
	FILE *f = fopen(DATA "full.yaml", "rb");
	ck_assert_ptr_nonnull(f);
	static char text[8192];
	size_t len = fread(text, 1, sizeof text, f);
	fclose(f);
	ck_assert_uint_gt(len, 100);
	static const char subst[] = "{:-\"'\n";
	for (size_t n = 0; n <= len; n++) {
		for (size_t k = 0; k <= sizeof subst - 1; k++) {
			char buf[8192];
			memcpy(buf, text, len);
			size_t l = len;
			if (k == sizeof subst - 1)
				l = n; /* a prefix */
			else if (n < len)
				buf[n] = subst[k];
			fabd_topology *t;
			fabd_diags d = { 0 };
			int rc = fabd_topology_parse(buf, l, &t, &d);
			ck_assert(rc == 0 || rc == -1);
			ck_assert(rc == 0 || d.n > 0);
			fabd_topology_free(t);
			fabd_diags_free(&d);
		}
	}
}
END_TEST

/* Ports: in and out are separate namespaces (docs/stage.md), at most 64 per
 * stage; the error channel needs room for one fab_stage_err record. */
START_TEST(t_ports)
{
	static const char ok[] = "fabric: f\n"
				 "channels: { a: {}, b: {} }\n"
				 "stages:\n"
				 "  s: { run: s, in: { x: a }, out: { x: b } }\n"
				 "  t: { run: t, in: { x: b }, out: { x: a } }\n";
	fabd_topology *t;
	fabd_diags d = { 0 };
	ck_assert_int_eq(fabd_topology_parse(ok, strlen(ok), &t, &d), 0);
	ck_assert_uint_eq(t->stages[0].nports, 2);
	ck_assert_int_eq(t->stages[0].ports[0].out, 0);
	ck_assert_int_eq(t->stages[0].ports[1].out, 1);
	ck_assert_str_eq(t->stages[0].ports[1].name, "x");
	fabd_topology_free(t);

	char y[8192];
	size_t len = (size_t)snprintf(y, sizeof y, "fabric: f\nchannels: { c: {} }\n"
				      "errors: { msg_size: 383 }\n"
				      "stages:\n  s:\n    run: s\n    out: { o: c }\n    in:\n");
	for (int i = 0; i < 64; i++)
		len += (size_t)snprintf(y + len, sizeof y - len, "      p%d: c\n", i);
	ck_assert_int_eq(fabd_topology_parse(y, len, &t, &d), -1);
	ck_assert_uint_eq(d.n, 2);
	ck_assert_uint_eq(d.v[0].pos.line, 3);
	ck_assert_uint_eq(d.v[0].pos.col, 21);
	ck_assert_str_eq(d.v[0].msg, "errors.msg_size: 383 is less than 384, the size of one "
				     "error record (fab_stage_err)");
	ck_assert_uint_eq(d.v[1].pos.line, 7);
	ck_assert_uint_eq(d.v[1].pos.col, 12);
	ck_assert_str_eq(d.v[1].msg, "stages.s.out: more than 64 ports in one stage");
	fabd_diags_free(&d);
}
END_TEST

/* Many errors: the list is capped and the rest counted. */
START_TEST(t_error_cap)
{
	size_t cap = 64 * 1024;
	char *y = malloc(cap);
	ck_assert_ptr_nonnull(y);
	size_t len = (size_t)snprintf(y, cap, "fabric: f\nstages: {a: {run: a}}\nchannels:\n");
	for (int i = 0; i < 300; i++)
		len += (size_t)snprintf(y + len, cap - len, "  c%d: {capacity: x}\n", i);
	fabd_topology *t;
	fabd_diags d = { 0 };
	ck_assert_int_eq(fabd_topology_parse(y, len, &t, &d), -1);
	ck_assert_uint_eq(d.n, FABD_ERRORS_MAX);
	ck_assert_uint_gt(d.dropped, 0);
	fabd_diags_free(&d);
	free(y);
}
END_TEST

/* max_replicas: the close quorum and the kind count every replica a scale
 * may start; below replicas or not a count is an error. */
static void write_tmp(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

START_TEST(t_max_replicas)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/fab-topo-maxrep-%d.yaml", (int)getpid());
	write_tmp(path, "fabric: f\n"
			"channels:\n"
			"  c: { capacity: 4, msg_size: 8 }\n"
			"stages:\n"
			"  a: { run: a, out: { o: c }, max_replicas: 3 }\n"
			"  b: { run: b, in: { i: c } }\n");
	fabd_topology *t = load_ok(path);
	ck_assert_uint_eq(t->stages[0].replicas, 1);
	ck_assert_uint_eq(t->stages[0].max_replicas, 3);
	ck_assert_uint_eq(t->stages[1].max_replicas, 1);
	ck_assert_uint_eq(t->channels[0].producers, 3);
	ck_assert_int_eq(t->channels[0].kind, FAB_MPMC); /* up to 3 writers */
	fabd_topology_free(t);
	write_tmp(path, "fabric: f\n"
			"channels:\n"
			"  c: { capacity: 4, msg_size: 8 }\n"
			"stages:\n"
			"  a: { run: a, out: { o: c }, replicas: 2, max_replicas: 1 }\n"
			"  b: { run: b, in: { i: c }, max_replicas: zero }\n");
	static const char *const w[] = {
		"5:58: stages.a.max_replicas: 1 is below replicas (2); it is the most `fabctl scale` "
		"may start",
		"6:44: stages.b.max_replicas: expected an integer from 1 to 1024, got 'zero'",
		NULL
	};
	expect_errors(path, w);
	unlink(path);
}
END_TEST

/* Dead letters that come back to their channel (a -> b -> a): fabd run
 * could never create them, so check refuses them too. */
START_TEST(t_err_dead_letter_cycle)
{
	static const char *const w[] = {
		"3:45: channels.a.dead_letter: dead letters form a cycle back to 'a'",
		"4:45: channels.b.dead_letter: dead letters form a cycle back to 'b'",
		NULL
	};
	expect_errors(DATA "dead_letter_cycle.yaml", w);
}
END_TEST

/* A NUL byte inside a double-quoted name or value ("shop\0evil") is an
 * error, not silently cut at the NUL. */
START_TEST(t_err_nul)
{
	static const char *const w[] = {
		"1:9: fabric: expected a name, got 'shop' with a NUL byte in it",
		"3:12: stages.s.run: expected a command (a string or a list), got 'prog' with a "
		"NUL byte in it",
		"3:35: stages.s.env.K: expected a string, got 'a' with a NUL byte in it",
		NULL
	};
	expect_errors(DATA "nul.yaml", w);
}
END_TEST

/* Generate a topology (gen_alias_bomb.py's shapes): stage s0 with an
 * anchored env mapping (or run list) of n entries and m-1 stages aliasing it;
 * m == 1 and alias 0: one stage with n env keys, no alias. */
static char *bomb(unsigned n, unsigned m, int run, int alias, size_t *len)
{
	size_t cap = 64 + (size_t)n * 16 + (size_t)m * 32;
	char *y = malloc(cap);
	ck_assert_ptr_nonnull(y);
	size_t l = (size_t)snprintf(y, cap, "fabric: bomb\nmetrics: {listen: 'off'}\nstages:\n");
	if (run) {
		l += (size_t)snprintf(y + l, cap - l, "  s0: {run: &r [");
		for (unsigned i = 0; i < n; i++)
			l += (size_t)snprintf(y + l, cap - l, "%sw", i ? ", " : "");
		l += (size_t)snprintf(y + l, cap - l, "]}\n");
	} else {
		l += (size_t)snprintf(y + l, cap - l, "  s0: {run: a, env: %s{",
				      alias ? "&e " : "");
		for (unsigned i = 0; i < n; i++)
			l += (size_t)snprintf(y + l, cap - l, "%sV%u: x", i ? ", " : "", i);
		l += (size_t)snprintf(y + l, cap - l, "}}\n");
	}
	for (unsigned i = 1; i < m; i++)
		l += (size_t)snprintf(y + l, cap - l, run ? "  s%u: {run: *r}\n" :
				      "  s%u: {run: a, env: *e}\n", i);
	ck_assert_uint_lt(l, cap);
	*len = l;
	return y;
}

static void expect_one_error(const char *y, size_t len, const char *want)
{
	fabd_topology *t = (fabd_topology *)1;
	fabd_diags d = { 0 };
	ck_assert_int_eq(fabd_topology_parse(y, len, &t, &d), -1);
	ck_assert_ptr_null(t);
	ck_assert_uint_ge(d.n, 1);
	char got[512];
	snprintf(got, sizeof got, "%u:%u: %s", d.v[0].pos.line, d.v[0].pos.col, d.v[0].msg);
	ck_assert_str_eq(got, want);
	ck_assert_uint_eq(d.n, 1);
	fabd_diags_free(&d);
}

/* "Billion laughs": a small file whose aliases expand to more than
 * FABD_WALK_MAX entries is refused with one clear error, not walked for
 * minutes (the hang detector is the tcase timeout, no timing asserted). */
START_TEST(t_alias_bomb)
{
	size_t len;
	/* env: 1000 keys aliased by 300 stages, 300000 entries (< 20 KB) */
	char *y = bomb(1000, 300, 0, 1, &len);
	ck_assert_uint_lt(len, 20000);
	expect_one_error(y, len, "4:21: stages.s261.env: the file holds more than 262144 entries once its "
			 "aliases are expanded; the rest is not read");
	free(y);
	/* run: a list of 20000 words aliased by 500 stages */
	y = bomb(20000, 500, 1, 1, &len);
	expect_one_error(y, len, "4:13: stages.s13.run: the file holds more than 262144 entries once its "
			 "aliases are expanded; the rest is not read");
	free(y);
	/* below the budget: aliases as such are fine (1000 keys by 50 stages) */
	y = bomb(1000, 50, 0, 1, &len);
	fabd_topology *t;
	fabd_diags d = { 0 };
	int rc = fabd_topology_parse(y, len, &t, &d);
	if (rc != 0)
		fabd_diags_print(&d, "bomb", stderr);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(t->nstages, 50);
	fabd_topology_free(t);
	fabd_diags_free(&d);
	free(y);
}
END_TEST

/* Parse y: ok (want NULL) or failing with a diagnostic containing want. */
static void expect_diag(const char *y, size_t len, const char *want)
{
	fabd_topology *t = NULL;
	fabd_diags d = { 0 };
	int rc = fabd_topology_parse(y, len, &t, &d);
	if (!want) {
		if (rc != 0)
			fabd_diags_print(&d, "(generated)", stderr);
		ck_assert_int_eq(rc, 0);
		fabd_topology_free(t);
		fabd_diags_free(&d);
		return;
	}
	ck_assert_int_eq(rc, -1);
	int found = 0;
	for (unsigned i = 0; i < d.n; i++) {
		char got[512];
		snprintf(got, sizeof got, "%u:%u: %s", d.v[i].pos.line, d.v[i].pos.col, d.v[i].msg);
		found |= strstr(got, want) != NULL;
	}
	if (!found)
		fabd_diags_print(&d, "(generated)", stderr);
	ck_assert_msg(found, "no diagnostic with \"%s\"", want);
	fabd_diags_free(&d);
}

/*
 * The fabric's tables (a resource-exhaustion trial, 28 Nov: fabd check
 * accepted topologies that then failed at run time, 300 stages half-way).
 * Each limit at its edge: the largest that fits passes, one more is
 * reported at the first declaration past it.
 */
START_TEST(t_tables)
{
	size_t cap = 1 << 20, len;
	char *y = malloc(cap);
	ck_assert_ptr_nonnull(y);
	/* stages: 256 fit, the 257th (line 3 + 256) does not */
	for (int n = 256; n <= 257; n++) {
		len = (size_t)snprintf(y, cap, "fabric: f\nstages:\n");
		for (int i = 0; i < n; i++)
			len += (size_t)snprintf(y + len, cap - len, "  s%d: { run: [x] }\n", i);
		expect_diag(y, len, n == 256 ? NULL : "259:3: 257 stages: a fabric's stage table holds 256");
	}
	/* processes: every max_replicas, plus fabd's 2: 1022 fit, 1023 do not */
	for (int n = 1022; n <= 1023; n++) {
		len = (size_t)snprintf(y, cap, "fabric: f\nstages:\n  a: { run: [x] }\n"
				       "  b: { run: [x], replicas: 1, max_replicas: %d }\n", n - 1);
		expect_diag(y, len, n == 1022 ? NULL : "4:3: stages.b: up to 1025 processes");
	}
	/* limiters: 256 fit, the 257th does not (each used by the one stage) */
	for (int n = 256; n <= 257; n++) {
		len = (size_t)snprintf(y, cap, "fabric: f\nlimiters:\n");
		for (int i = 0; i < n; i++)
			len += (size_t)snprintf(y + len, cap - len, "  l%d: { rate: 10 }\n", i);
		len += (size_t)snprintf(y + len, cap - len, "stages:\n  a:\n    run: [x]\n    limiters: [");
		for (int i = 0; i < n; i++)
			len += (size_t)snprintf(y + len, cap - len, "%sl%d", i ? ", " : "", i);
		len += (size_t)snprintf(y + len, cap - len, "]\n");
		expect_diag(y, len, n == 256 ? NULL : "259:3: 257 limiters: a fabric's limiter table holds 256");
	}
	/* registry: channels and topics and the error channel, 1024 in all */
	for (int n = 1023; n <= 1024; n++) {
		len = (size_t)snprintf(y, cap, "fabric: f\nchannels:\n");
		for (int i = 0; i < n; i++)
			len += (size_t)snprintf(y + len, cap - len, "  c%d: {}\n", i);
		/* a writer and a reader stage per 64 channels (a stage's port limit) */
		len += (size_t)snprintf(y + len, cap - len, "stages:\n");
		for (int g = 0; g * 64 < n; g++)
			for (int dir = 0; dir < 2; dir++) {
				len += (size_t)snprintf(y + len, cap - len,
							"  %c%d:\n    run: [x]\n    %s: {",
							dir ? 'r' : 'w', g, dir ? "in" : "out");
				for (int i = g * 64; i < n && i < g * 64 + 64; i++)
					len += (size_t)snprintf(y + len, cap - len, "%sp%d: c%d",
								i > g * 64 ? ", " : "", i, i);
				len += (size_t)snprintf(y + len, cap - len, "}\n");
			}
		expect_diag(y, len, n == 1023 ? NULL : "1026:3: 1024 channels, 0 topics and the error channel: 1025 objects");
	}
	free(y);
}
END_TEST

/* Nesting deeper than FABD_DEPTH_MAX is refused before the document is
 * built: libyaml's scanner is quadratic in flow nesting (100 000 levels of
 * `[` took 56 s before yaml_parser_load returned; found by an adversarial
 * trial).  No timing asserted: the message is new, and the tcase timeout
 * is the hang detector.  Also through fabd_topology_load (read whole, so a
 * pipe works too). */
START_TEST(t_depth)
{
	const unsigned n = 100000;
	size_t cap = 2 * n + 64, len = 0;
	char *y = malloc(cap);
	ck_assert_ptr_nonnull(y);
	len += (size_t)snprintf(y, cap, "fabric: f\nstages:\n  a:\n    run: [x]\n    env: ");
	for (unsigned i = 0; i < n; i++)
		y[len++] = '[';
	for (unsigned i = 0; i < n; i++)
		y[len++] = ']';
	y[len++] = '\n';
	/* the 33rd open: the root, stages, a, then the 30th list, on column 39 */
	expect_one_error(y, len, "5:39: nested more than 32 levels deep");
	char path[] = "/tmp/fabd-depth-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, y, len), (ssize_t)len);
	close(fd);
	const char *const want[] = { "5:39: nested more than 32 levels deep", NULL };
	expect_errors(path, want);
	unlink(path);
	/* Flow mappings as well (the root, the first {, then the 31st "a: {"). */
	len = (size_t)snprintf(y, cap, "fabric: {");
	for (unsigned i = 0; i < 50000 && len + 8 < cap; i++)
		len += (size_t)snprintf(y + len, cap - len, "a: {");
	y[len++] = '\n';
	expect_one_error(y, len, "1:133: nested more than 32 levels deep");
	/* 32 levels are read as usual (here: env takes a mapping, not a list). */
	len = (size_t)snprintf(y, cap, "fabric: f\nstages:\n  a:\n    run: [x]\n    env: ");
	for (unsigned i = 0; i < 29; i++)
		y[len++] = '[';
	for (unsigned i = 0; i < 29; i++)
		y[len++] = ']';
	y[len++] = '\n';
	fabd_topology *t = (fabd_topology *)1;
	fabd_diags d = { 0 };
	ck_assert_int_eq(fabd_topology_parse(y, len, &t, &d), -1);
	ck_assert_uint_ge(d.n, 1);
	ck_assert_msg(strstr(d.v[0].msg, "nested") == NULL, "32 levels refused: %s", d.v[0].msg);
	fabd_diags_free(&d);
	free(y);
}
END_TEST

/* One mapping holds at most FABD_MAP_MAX entries (duplicate checks are
 * quadratic in it): 1024 env keys are fine, 1025 are an error. */
START_TEST(t_map_max)
{
	size_t len;
	char *y = bomb(FABD_MAP_MAX, 1, 0, 0, &len);
	fabd_topology *t;
	fabd_diags d = { 0 };
	ck_assert_int_eq(fabd_topology_parse(y, len, &t, &d), 0);
	fabd_topology_free(t);
	free(y);
	y = bomb(FABD_MAP_MAX + 1, 1, 0, 0, &len);
	expect_one_error(y, len, "4:21: stages.s0.env: 1025 entries, more than the 1024 allowed");
	free(y);
	/* and 60000 keys (the review's 40-second file) stop at the same check */
	y = bomb(60000, 1, 0, 0, &len);
	expect_one_error(y, len, "4:21: stages.s0.env: 60000 entries, more than the 1024 allowed");
	free(y);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("topology");
	TCase *tc = tcase_create("model");
	tcase_add_test(tc, t_full_model);
	tcase_add_test(tc, t_defaults);
	tcase_add_test(tc, t_kind_rule);
	tcase_add_test(tc, t_example_pipeline);
	tcase_add_test(tc, t_ports);
	suite_add_tcase(s, tc);
	tc = tcase_create("errors");
	tcase_add_test(tc, t_err_syntax);
	tcase_add_test(tc, t_err_unknown_key);
	tcase_add_test(tc, t_err_wrong_type);
	tcase_add_test(tc, t_err_bad_values);
	tcase_add_test(tc, t_err_dangling);
	tcase_add_test(tc, t_err_duplicates);
	tcase_add_test(tc, t_err_wiring);
	tcase_add_test(tc, t_err_spsc);
	tcase_add_test(tc, t_err_missing);
	tcase_add_test(tc, t_err_many);
	tcase_add_test(tc, t_err_file);
	tcase_add_test(tc, t_error_cap);
	suite_add_tcase(s, tc);
	tc = tcase_create("syntax");
	tcase_add_test(tc, t_mode);
	tcase_add_test(tc, t_value_syntax);
	tcase_add_test(tc, t_split_command);
	tcase_add_test(tc, t_hostile);
	tcase_add_test(tc, t_mutations);
	tcase_add_test(tc, t_max_replicas);
	suite_add_tcase(s, tc);
	tc = tcase_create("limits");
	tcase_set_timeout(tc, 60); /* the hang detector for alias bombs */
	tcase_add_test(tc, t_err_dead_letter_cycle);
	tcase_add_test(tc, t_err_nul);
	tcase_add_test(tc, t_alias_bomb);
	tcase_add_test(tc, t_map_max);
	tcase_add_test(tc, t_depth);
	tcase_add_test(tc, t_tables);
	suite_add_tcase(s, tc);
	return s;
}


int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
