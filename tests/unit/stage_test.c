/*
 * stage_test.c - unit suite for the stage API: fab_stage_open/in/out/ctx/
 * error/close and the environment contract of docs/stage.md.
 *
 * What a stage relies on: a well-formed environment gives it its ports'
 * channels with the right roles, its context and the error channel; every
 * malformed variable is FAB_EINVAL naming the variable (and opens nothing);
 * a missing object is the open's own code, again naming the variable;
 * fab_stage_error's record arrives intact and is counted in the control
 * segment's stage table, and a full error channel drops and counts instead
 * of blocking; fab_stage_close closes the outputs once per replica (a
 * restarted replica is not counted twice) and not at all while the
 * supervisor marks the replica as restarting; a handle inherited across
 * fork() is FAB_EINVAL and closes nothing.
 *
 * Stages are "started by hand": the test (or a forked child) sets the FAB_*
 * variables and calls fab_stage_open, exactly as a fabd child would.
 */
#include "unit.h"

#include "layout.h"

#define SEC 1000000000LL

static int64_t rt_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static const char *const env_vars[] = {"FAB_FABRIC", "FAB_STAGE",  "FAB_REPLICA",
				       "FAB_PRODUCER_ID", "FAB_PORTS", "FAB_CTX",
				       "FAB_ERRORS"};

static void env_clear(void)
{
	for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
		unsetenv(env_vars[i]);
}

/* The environment of stage `stage`, replica `replica`, in this test's
 * fabric; NULL leaves a variable unset. */
static void env_stage(const char *stage, const char *replica, const char *ports,
		      const char *ctx, const char *errors)
{
	env_clear();
	setenv("FAB_FABRIC", fname, 1);
	setenv("FAB_STAGE", stage, 1);
	if (replica)
		setenv("FAB_REPLICA", replica, 1);
	if (ports)
		setenv("FAB_PORTS", ports, 1);
	if (ctx)
		setenv("FAB_CTX", ctx, 1);
	if (errors)
		setenv("FAB_ERRORS", errors, 1);
}

static void setup(void)
{
	env_clear();
	ut_fabric_setup();
}

static void teardown(void)
{
	env_clear();
	ut_fabric_teardown();
}

static fab_chan *mk_chan(const char *name, uint32_t kind, uint32_t cap, uint32_t msg_size,
			 uint32_t producers)
{
	fab_chan_opts o = ut_opts(kind, cap, msg_size);
	o.producers = producers;
	fab_chan *ch = NULL;
	UT_RC(fab_chan_create(fab, name, &o, &ch), 0);
	return ch;
}

/* ---- the stage table, read from the control segment ------------------- */

static uint8_t *ctl;

static fab_stage_ent *stage_table(void)
{
	if (!ctl) {
		char p[80];
		snprintf(p, sizeof p, "/fab.%s", fname);
		int fd = shm_open(p, O_RDWR, 0);
		ck_assert_msg(fd >= 0, "shm_open %s: %s", p, strerror(errno));
		void *m = mmap(NULL, FAB_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		ck_assert_msg(m != MAP_FAILED, "mmap: %s", strerror(errno));
		ctl = m;
	}
	return (fab_stage_ent *)(ctl + FAB_CTL_STAGES_OFF);
}

/* How many LIVE entries are named `name` (the entry in *out if one). */
static int stage_entries(const char *name, fab_stage_ent **out)
{
	fab_stage_ent *t = stage_table();
	int n = 0;
	for (uint32_t i = 0; i < FAB_MAX_STAGES; i++) {
		if (atomic_load(&t[i].state) != FAB_ENT_LIVE)
			continue;
		if (name && strncmp(t[i].name, name, sizeof t[i].name) != 0)
			continue;
		n++;
		if (out)
			*out = &t[i];
	}
	return n;
}

static fab_stage_ent *stage_ent(const char *name)
{
	fab_stage_ent *e = NULL;
	int n = stage_entries(name, &e);
	ck_assert_msg(n == 1, "%d live stage entries named %s, want 1", n, name);
	return e;
}

/* ---- environment ---------------------------------------------------------- */

START_TEST(t_env_good)
{
	fab_chan *a = mk_chan("a", FAB_MPMC, 4, 64, 1);
	fab_chan *b = mk_chan("b", FAB_MPMC, 4, 64, 1);
	fab_chan *errs = mk_chan("errs", FAB_MPMC, 4, 512, 1);
	fab_ctx *root = NULL;
	UT_RC(fab_ctx_create(fab, "root", NULL, &root), 0);

	env_stage("enrich", "3", "in:jobs=a,out:results=b,in:results=b", "root", "errs");
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), 0);
	ck_assert_ptr_nonnull(s);

	fab_chan *in = fab_stage_in(s, "jobs"), *out = fab_stage_out(s, "results");
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(fab_stage_in(s, "results")); /* one name, two directions */
	ck_assert_ptr_ne(fab_stage_in(s, "results"), out);
	/* Roles: in ports receive only, out ports send only. */
	UT_RC(fab_try_send(in, "x", 1), FAB_EPERM);
	char buf[64];
	UT_RC(fab_try_recv(out, buf, sizeof buf), FAB_EPERM);
	UT_RC(fab_send(a, "job", 3, NULL), 0);
	UT_RC(fab_recv(in, buf, sizeof buf, NULL), 3);
	UT_RC(fab_send(out, "res", 3, NULL), 0);
	UT_RC(fab_recv(b, buf, sizeof buf, NULL), 3);

	/* The stage's context is the shared one named by FAB_CTX. */
	fab_ctx *c = fab_stage_ctx(s);
	ck_assert_ptr_nonnull(c);
	UT_RC(fab_ctx_err(c), 0);
	UT_RC(fab_ctx_cancel(root, 7), 0);
	UT_RC(fab_ctx_err(c), FAB_ECANCELED);
	UT_RC(fab_ctx_reason(c), 7);

	fab_stage_ent *e = stage_ent("enrich");
	ck_assert_uint_eq(atomic_load(&e->opens), 1);
	ck_assert_uint_eq(atomic_load(&e->replicas_seen), 4);
	ck_assert_uint_eq(atomic_load(&e->errors), 0);
	fab_stage_close(s);

	fab_ctx_release(root);
	fab_chan_release(a);
	fab_chan_release(b);
	fab_chan_release(errs);
}
END_TEST

START_TEST(t_env_minimal)
{
	/* Only FAB_FABRIC and FAB_STAGE: replica 0, no ports, a private
	 * context that never ends by itself, no error channel. */
	env_stage("solo", NULL, NULL, NULL, NULL);
	setenv("FAB_PORTS", "", 1); /* empty = unset */
	setenv("FAB_ERRORS", "", 1);
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), 0);
	fab_ctx *c = fab_stage_ctx(s);
	ck_assert_ptr_nonnull(c);
	UT_RC(fab_ctx_err(c), 0);
	UT_RC(fab_ctx_cancel(c, 3), 0); /* the stage may end its own context */
	UT_RC(fab_ctx_err(c), FAB_ECANCELED);
	ck_assert_ptr_null(fab_stage_in(s, "x"));
	UT_RC(fab_stage_error(s, 5, "no channel"), 0); /* counted only */
	fab_stage_ent *e = stage_ent("solo");
	ck_assert_uint_eq(atomic_load(&e->errors), 1);
	ck_assert_uint_eq(atomic_load(&e->errors_dropped), 0);
	ck_assert_int_eq(atomic_load(&e->last_code), 5);
	ck_assert_uint_eq(atomic_load(&e->replicas_seen), 1);
	fab_stage_close(s);
}
END_TEST

/* One malformed variable: value NULL = unset. */
typedef struct bad_env {
	const char *var;
	const char *value;
} bad_env;

static char long_ports[9000];
static char many_ports[65 * 16];

static const bad_env bad_envs[] = {
	{"FAB_FABRIC", NULL},
	{"FAB_FABRIC", ""},
	{"FAB_FABRIC", "has.dot"},
	{"FAB_FABRIC", "a-name-that-is-much-longer-than-forty-eight-chars-x"},
	{"FAB_STAGE", NULL},
	{"FAB_STAGE", "a b"},
	{"FAB_STAGE", "s/1"},
	{"FAB_REPLICA", "abc"},
	{"FAB_REPLICA", "-1"},
	{"FAB_REPLICA", "+1"},
	{"FAB_REPLICA", "01"},
	{"FAB_REPLICA", "65536"},
	{"FAB_REPLICA", "999999"},
	{"FAB_REPLICA", "1 "},
	{"FAB_REPLICA", "0x1"},
	{"FAB_PRODUCER_ID", "a b"},
	{"FAB_PRODUCER_ID", "tab\there"},
	{"FAB_PRODUCER_ID", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},
	{"FAB_PORTS", "in:a"},
	{"FAB_PORTS", "in:a="},
	{"FAB_PORTS", "in:=b"},
	{"FAB_PORTS", "side:a=b"},
	{"FAB_PORTS", "IN:a=b"},
	{"FAB_PORTS", ":a=b"},
	{"FAB_PORTS", "in a=b"},
	{"FAB_PORTS", "in:a=b,"},
	{"FAB_PORTS", ",in:a=b"},
	{"FAB_PORTS", "in:a=b,,out:c=d"},
	{"FAB_PORTS", "in:a=b,in:a=c"},
	{"FAB_PORTS", "in:a b=c"},
	{"FAB_PORTS", "in:a=b.c"},
	{"FAB_PORTS", "in:a=b=c"},
	{"FAB_PORTS", "in:a=b, out:c=d"},
	{"FAB_PORTS", "in:a=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},
	{"FAB_PORTS", long_ports},
	{"FAB_PORTS", many_ports},
	{"FAB_CTX", "a.b"},
	{"FAB_CTX", "x y"},
	{"FAB_ERRORS", "x y"},
	{"FAB_ERRORS", "e:1"},
};

START_TEST(t_env_malformed)
{
	memset(long_ports, 'a', sizeof long_ports - 1);
	memcpy(long_ports, "in:a=", 5);
	long_ports[sizeof long_ports - 1] = 0;
	char *p = many_ports;
	for (int i = 0; i < 65; i++)
		p += sprintf(p, "%sin:p%d=c", i ? "," : "", i);

	for (size_t i = 0; i < sizeof bad_envs / sizeof bad_envs[0]; i++) {
		const bad_env *b = &bad_envs[i];
		env_stage("st", "1", "in:a=c,out:b=c", NULL, NULL);
		if (b->value)
			setenv(b->var, b->value, 1);
		else
			unsetenv(b->var);
		fab_stage *s = (fab_stage *)&i; /* must be reset to NULL */
		int rc = fab_stage_open(&s);
		ck_assert_msg(rc == FAB_EINVAL, "%s=\"%.40s\": got %d (%s), want FAB_EINVAL; %s",
			      b->var, b->value ? b->value : "(unset)", rc, ut_name(rc), ut_msg());
		ck_assert_ptr_null(s);
		ck_assert_msg(strstr(fab_errmsg(), b->var) != NULL,
			      "%s=\"%.40s\": errmsg does not name the variable: %s", b->var,
			      b->value ? b->value : "(unset)", fab_errmsg());
	}
	/* Nothing was opened: no stage entry was made (the channel "c" does
	 * not even exist). */
	ck_assert_int_eq(stage_entries(NULL, NULL), 0);
	UT_RC(fab_stage_open(NULL), FAB_EINVAL);
}
END_TEST

/* A well-formed environment naming objects that are not there: the open's
 * own code, with the variable named, and nothing left open. */
START_TEST(t_env_missing_objects)
{
	fab_chan *c = mk_chan("c", FAB_MPMC, 4, 64, 1);
	fab_chan *small = mk_chan("small", FAB_MPMC, 4, 64, 1);
	fab_stage *s = NULL;
	struct {
		const char *var, *value;
		int want;
	} cases[] = {
		{"FAB_FABRIC", "no-such-fabric-xyz", FAB_ENOENT},
		{"FAB_PORTS", "in:a=c,out:b=nochan", FAB_ENOENT},
		{"FAB_CTX", "noctx", FAB_ENOENT},
		{"FAB_ERRORS", "noerrs", FAB_ENOENT},
		{"FAB_ERRORS", "small", FAB_EINVAL}, /* msg_size below a record */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		env_stage("st", NULL, "in:a=c", NULL, NULL);
		setenv(cases[i].var, cases[i].value, 1);
		int rc = fab_stage_open(&s);
		ck_assert_msg(rc == cases[i].want, "%s=%s: got %s, want %s; %s", cases[i].var,
			      cases[i].value, ut_name(rc), ut_name(cases[i].want), ut_msg());
		ck_assert_ptr_null(s);
		ck_assert_msg(strstr(fab_errmsg(), cases[i].var) != NULL, "%s: errmsg %s",
			      cases[i].var, fab_errmsg());
	}
	/* The in port's handles of the failed opens were released: only the
	 * creator's handle (both roles) is attached. */
	fab_stats st = ut_stats(c);
	ck_assert_uint_eq(st.receivers, 1);
	fab_chan_release(c);
	fab_chan_release(small);
}
END_TEST

START_TEST(t_unknown_port)
{
	fab_chan *c = mk_chan("c", FAB_MPMC, 4, 64, 1);
	env_stage("st", NULL, "in:jobs=c,out:res=c", NULL, NULL);
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), 0);
	ck_assert_ptr_null(fab_stage_in(s, "nope"));
	ck_assert_msg(strstr(fab_errmsg(), "nope") && strstr(fab_errmsg(), "in port"), "%s",
		      fab_errmsg());
	ck_assert_ptr_null(fab_stage_out(s, "jobs")); /* wrong direction */
	ck_assert_msg(strstr(fab_errmsg(), "out port \"jobs\""), "%s", fab_errmsg());
	ck_assert_ptr_null(fab_stage_in(s, NULL));
	ck_assert_msg(strstr(fab_errmsg(), "NULL port"), "%s", fab_errmsg());
	/* NULL handles */
	ck_assert_ptr_null(fab_stage_in(NULL, "jobs"));
	ck_assert_msg(strstr(fab_errmsg(), "NULL stage"), "%s", fab_errmsg());
	ck_assert_ptr_null(fab_stage_out(NULL, "res"));
	ck_assert_ptr_null(fab_stage_ctx(NULL));
	UT_RC(fab_stage_error(NULL, 1, "x"), FAB_EINVAL);
	UT_RC(fab_stage_error(s, 1, NULL), FAB_EINVAL);
	fab_stage_close(NULL);
	fab_stage_close(s);
	fab_chan_release(c);
}
END_TEST

/* ---- ports end to end ----------------------------------------------------- */

#define E2E_N 200

static int e2e_source(void *arg)
{
	(void)arg;
	env_stage("source", "0", "out:o=work", NULL, NULL);
	fab_stage *s = NULL;
	CHILD_RC(fab_stage_open(&s), 0, 10);
	fab_chan *o = fab_stage_out(s, "o");
	CHILD_CHECK(o != NULL, 11);
	fab_ctx *dl = NULL;
	CHILD_RC(fab_ctx_with_timeout(fab_stage_ctx(s), 20 * SEC, &dl), 0, 12);
	for (int i = 0; i < E2E_N; i++) {
		char m[32];
		int n = snprintf(m, sizeof m, "m%d", i);
		CHILD_RC(fab_send(o, m, (size_t)n, dl), 0, 13);
	}
	fab_ctx_release(dl);
	fab_stage_close(s); /* closes "work": the sink then drains and sees ECLOSED */
	return 0;
}

static int e2e_sink(void *arg)
{
	(void)arg;
	env_stage("sink", "0", "in:i=work", NULL, NULL);
	fab_stage *s = NULL;
	CHILD_RC(fab_stage_open(&s), 0, 20);
	fab_chan *in = fab_stage_in(s, "i");
	CHILD_CHECK(in != NULL, 21);
	fab_ctx *dl = NULL;
	CHILD_RC(fab_ctx_with_timeout(fab_stage_ctx(s), 20 * SEC, &dl), 0, 22);
	int got = 0;
	for (;;) {
		char m[64], want[32];
		ssize_t n = fab_recv(in, m, sizeof m, dl);
		if (n == FAB_ECLOSED)
			break;
		CHILD_CHECK(n > 0, 23);
		int wn = snprintf(want, sizeof want, "m%d", got);
		CHILD_CHECK(n == wn && memcmp(m, want, (size_t)n) == 0, 24);
		got++;
	}
	CHILD_CHECK(got == E2E_N, 25);
	fab_ctx_release(dl);
	fab_stage_close(s);
	return 0;
}

START_TEST(t_ports_end_to_end)
{
	fab_chan *work = mk_chan("work", UT_KIND, 8, 32, 1);
	fab_chan_release(work); /* the stages are the only users */
	pid_t sink = ft_spawn(e2e_sink, NULL);
	pid_t src = ft_spawn(e2e_source, NULL);
	ck_assert_int_gt(sink, 0);
	ck_assert_int_gt(src, 0);
	UT_CHILD_OK(src);
	UT_CHILD_OK(sink);
	ck_assert_uint_eq(atomic_load(&stage_ent("source")->opens), 1);
	ck_assert_uint_eq(atomic_load(&stage_ent("sink")->opens), 1);
}
END_TEST

/* ---- errors ------------------------------------------------------------------ */

START_TEST(t_error_record)
{
	fab_chan *errs = mk_chan("errs", FAB_MPMC, 4, 512, 1);
	env_stage("worker", "2", NULL, NULL, "errs");
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), 0);

	int64_t t0 = rt_now();
	UT_RC(fab_stage_error(s, -42, "bad %s %d", "thing", 7), 0);
	int64_t t1 = rt_now();
	fab_stage_err r;
	memset(&r, 0xee, sizeof r);
	UT_RC(fab_try_recv(errs, &r, sizeof r), (ssize_t)sizeof r);
	ck_assert_uint_eq(r.size, sizeof r);
	ck_assert_uint_eq(r.size, 384);
	ck_assert_uint_eq(r.flags, 0);
	ck_assert_int_eq(r.code, -42);
	ck_assert_uint_eq(r.replica, 2);
	ck_assert_uint_eq(r.pid, (uint32_t)getpid());
	ck_assert_str_eq(r.stage, "worker");
	ck_assert_str_eq(r.text, "bad thing 7");
	ck_assert_uint_eq(r.text_len, strlen("bad thing 7"));
	ck_assert_msg(r.time_ns >= t0 && r.time_ns <= t1, "time %lld not in [%lld, %lld]",
		      (long long)r.time_ns, (long long)t0, (long long)t1);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(r.resv[i], 0);
	for (size_t i = strlen(r.stage); i < sizeof r.stage; i++)
		ck_assert_int_eq(r.stage[i], 0); /* no stale bytes leak */

	fab_stage_ent *e = stage_ent("worker");
	ck_assert_uint_eq(atomic_load(&e->errors), 1);
	ck_assert_uint_eq(atomic_load(&e->errors_dropped), 0);
	ck_assert_int_eq(atomic_load(&e->last_code), -42);

	/* A text longer than the record holds is cut and flagged. */
	char big[400];
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = 0;
	UT_RC(fab_stage_error(s, 1, "%s", big), 0);
	UT_RC(fab_try_recv(errs, &r, sizeof r), (ssize_t)sizeof r);
	ck_assert_uint_eq(r.flags, FAB_STAGE_ERR_TRUNCATED);
	ck_assert_uint_eq(r.text_len, FAB_STAGE_ERR_TEXT_MAX - 1);
	ck_assert_uint_eq(strlen(r.text), FAB_STAGE_ERR_TEXT_MAX - 1);
	ck_assert_uint_eq(atomic_load(&e->errors), 2);

	fab_stage_close(s);
	/* The error channel is shared: closing a stage does not close it. */
	ck_assert_uint_eq(ut_stats(errs).closed, 0);
	fab_chan_release(errs);
}
END_TEST

START_TEST(t_error_channel_full)
{
	fab_chan *errs = mk_chan("errs", FAB_MPMC, 1, 384, 1);
	env_stage("noisy", NULL, NULL, NULL, "errs");
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), 0);
	UT_RC(fab_stage_error(s, 1, "first"), 0);
	/* Full: the call does not block, the record is dropped and counted. */
	int64_t t0 = ft_now_ns();
	UT_RC(fab_stage_error(s, 2, "second"), FAB_EAGAIN);
	ck_assert_msg(ft_now_ns() - t0 < 2 * SEC, "fab_stage_error blocked");
	ck_assert_msg(strstr(fab_errmsg(), "full") && strstr(fab_errmsg(), "dropped"), "%s",
		      fab_errmsg());
	fab_stage_ent *e = stage_ent("noisy");
	ck_assert_uint_eq(atomic_load(&e->errors), 2);
	ck_assert_uint_eq(atomic_load(&e->errors_dropped), 1);
	ck_assert_int_eq(atomic_load(&e->last_code), 2);

	/* A closed error channel drops too. */
	UT_RC(fab_chan_close(errs), 0);
	UT_RC(fab_stage_error(s, 3, "third"), FAB_ECLOSED);
	ck_assert_uint_eq(atomic_load(&e->errors), 3);
	ck_assert_uint_eq(atomic_load(&e->errors_dropped), 2);

	fab_stage_err r;
	UT_RC(fab_try_recv(errs, &r, sizeof r), (ssize_t)sizeof r);
	ck_assert_str_eq(r.text, "first");
	UT_RC(fab_try_recv(errs, &r, sizeof r), FAB_ECLOSED);
	fab_stage_close(s);
	fab_chan_release(errs);
}
END_TEST

/* ---- close ----------------------------------------------------------------- */

START_TEST(t_close_closes_outputs)
{
	fab_chan *out1 = mk_chan("out1", UT_KIND, 8, 32, 1);
	fab_chan *in1 = mk_chan("in1", FAB_MPMC, 8, 32, 1);
	/* The creator's handles hold the spsc ends; the stage takes them. */
	fab_chan *rx = NULL;
	fab_chan_release(out1);
	env_stage("st", NULL, "out:o=out1,in:i=in1", NULL, NULL);
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), 0);
	UT_RC(fab_chan_open(fab, "out1", FAB_RECV, &rx), 0);
	for (int i = 0; i < 3; i++)
		UT_RC(fab_send(fab_stage_out(s, "o"), "abc", 3, NULL), 0);
	fab_stage_close(s);
	char buf[32];
	for (int i = 0; i < 3; i++)
		UT_RC(fab_try_recv(rx, buf, sizeof buf), 3);
	UT_RC(fab_try_recv(rx, buf, sizeof buf), FAB_ECLOSED);
	UT_RC(fab_recv(rx, buf, sizeof buf, NULL), FAB_ECLOSED);
	/* Inputs are not closed by the stage. */
	fab_stats st = ut_stats(in1);
	ck_assert_uint_eq(st.closed, 0);
	ck_assert_uint_eq(st.receivers, 1); /* the creator's; the stage's was released */
	fab_chan_release(rx);
	fab_chan_release(in1);
}
END_TEST

/* One replica's life: open the stage, close it (closing its output). */
static int replica_run(void *arg)
{
	const char *replica = arg;
	env_stage("fan", replica, "out:o=merged", NULL, NULL);
	fab_stage *s = NULL;
	CHILD_RC(fab_stage_open(&s), 0, 10);
	CHILD_RC(fab_send(fab_stage_out(s, "o"), replica, strlen(replica), NULL), 0, 11);
	fab_stage_close(s);
	return 0;
}

START_TEST(t_replica_restart_counted_once)
{
	/* Two replicas write "merged": it closes when both have closed.
	 * Replica 0 runs, "crashes" and is restarted (a new process with the
	 * same environment) and closes again: still one producer. */
	fab_chan *rx = mk_chan("merged", FAB_MPMC, 8, 16, 2);
	UT_CHILD_OK(ft_spawn(replica_run, "0"));
	fab_stats st = ut_stats(rx);
	ck_assert_uint_eq(st.closes, 1);
	ck_assert_uint_eq(st.closed, 0);
	UT_CHILD_OK(ft_spawn(replica_run, "0")); /* the restart */
	st = ut_stats(rx);
	ck_assert_uint_eq(st.closes, 1);
	ck_assert_uint_eq(st.closed, 0);
	/* A handle a stage opens itself under fabd's FAB_PRODUCER_ID is the
	 * same producer as the replica's output (same identity string). */
	setenv("FAB_PRODUCER_ID", "fan.0", 1);
	fab_chan *same = NULL;
	UT_RC(fab_chan_open(fab, "merged", FAB_SEND, &same), 0);
	unsetenv("FAB_PRODUCER_ID");
	UT_RC(fab_chan_close(same), FAB_ECLOSED);
	fab_chan_release(same);
	ck_assert_uint_eq(ut_stats(rx).closed, 0);

	UT_CHILD_OK(ft_spawn(replica_run, "1"));
	st = ut_stats(rx);
	ck_assert_uint_eq(st.closes, 2);
	ck_assert_uint_eq(st.closed, 1);
	char buf[16];
	int n = 0;
	while (fab_try_recv(rx, buf, sizeof buf) > 0)
		n++;
	ck_assert_int_eq(n, 3);
	UT_RC(fab_try_recv(rx, buf, sizeof buf), FAB_ECLOSED);
	fab_stage_ent *e = stage_ent("fan");
	ck_assert_uint_eq(atomic_load(&e->opens), 3);
	ck_assert_uint_eq(atomic_load(&e->replicas_seen), 2);
	fab_chan_release(rx);
}
END_TEST

/* A FAB_PRODUCER_ID set by the supervisor wins over "<stage>.<replica>". */
START_TEST(t_producer_id_env)
{
	fab_chan *rx = mk_chan("merged", FAB_MPMC, 8, 16, 2);
	env_stage("fan", "0", "out:o=merged", NULL, NULL);
	setenv("FAB_PRODUCER_ID", "custom-id", 1);
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), 0);
	fab_stage_close(s);
	env_stage("fan", "0", "out:o=merged", NULL, NULL); /* default id fan.0 */
	UT_RC(fab_stage_open(&s), 0);
	fab_stage_close(s);
	fab_stats st = ut_stats(rx);
	ck_assert_uint_eq(st.closes, 2);
	ck_assert_uint_eq(st.closed, 1);
	fab_chan_release(rx);
}
END_TEST

/* A replica its supervisor is restarting (fab_stage_restarting) is not
 * done producing: its fab_stage_close releases without closing, and the
 * next process of the replica, started after the unmark, closes once.
 * Without the mark, fan.0's close on its way out and fan.1's close would
 * complete the quorum while fan.0 is about to run again. */
START_TEST(t_restarting)
{
	fab_chan *rx = mk_chan("merged", FAB_MPMC, 8, 16, 2);
	/* arguments */
	UT_RC(fab_stage_restarting(NULL, "fan", 0, 1), FAB_EINVAL);
	UT_RC(fab_stage_restarting(fab, NULL, 0, 1), FAB_EINVAL);
	UT_RC(fab_stage_restarting(fab, "no way", 0, 1), FAB_EINVAL);
	UT_RC(fab_stage_restarting(fab, "fan", 64, 1), FAB_EINVAL);
	ck_assert_msg(strstr(fab_errmsg(), "0..63") != NULL, "%s", fab_errmsg());
	/* unmarking creates no entry; marking creates it */
	UT_RC(fab_stage_restarting(fab, "fan", 0, 0), 0);
	ck_assert_int_eq(stage_entries("fan", NULL), 0);
	UT_RC(fab_stage_restarting(fab, "fan", 0, 1), 0);
	fab_stage_ent *e = stage_ent("fan");
	ck_assert_uint_eq(atomic_load(&e->restarting), 1);
	ck_assert_uint_eq(atomic_load(&e->opens), 0);

	/* fan.0, marked, stops: its close is not counted */
	UT_CHILD_OK(ft_spawn(replica_run, "0"));
	fab_stats st = ut_stats(rx);
	ck_assert_uint_eq(st.closes, 0);
	ck_assert_uint_eq(st.closed, 0);
	/* fan.1 finishes meanwhile: one close of two */
	UT_CHILD_OK(ft_spawn(replica_run, "1"));
	st = ut_stats(rx);
	ck_assert_uint_eq(st.closes, 1);
	ck_assert_uint_eq(st.closed, 0);
	/* unmarked, the next fan.0 runs and closes: the quorum */
	UT_RC(fab_stage_restarting(fab, "fan", 0, 0), 0);
	ck_assert_uint_eq(atomic_load(&e->restarting), 0);
	UT_RC(fab_stage_restarting(fab, "fan", 0, 0), 0); /* twice: no change */
	UT_CHILD_OK(ft_spawn(replica_run, "0"));
	st = ut_stats(rx);
	ck_assert_uint_eq(st.closes, 2);
	ck_assert_uint_eq(st.closed, 1);
	char buf[16];
	int n = 0;
	while (fab_try_recv(rx, buf, sizeof buf) > 0)
		n++;
	ck_assert_int_eq(n, 3);
	/* bits are per replica */
	UT_RC(fab_stage_restarting(fab, "fan", 63, 1), 0);
	UT_RC(fab_stage_restarting(fab, "fan", 5, 1), 0);
	UT_RC(fab_stage_restarting(fab, "fan", 63, 0), 0);
	ck_assert_uint_eq(atomic_load(&e->restarting), 1ull << 5);
	ck_assert_int_eq(stage_entries("fan", NULL), 1);
	fab_chan_release(rx);

	/* a replica beyond the mask's 64 bits always closes */
	rx = mk_chan("wide", FAB_MPMC, 8, 16, 1);
	env_stage("w", "64", "out:o=wide", NULL, NULL);
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), 0);
	atomic_store(&stage_ent("w")->restarting, ~0ull);
	fab_stage_close(s);
	ck_assert_uint_eq(ut_stats(rx).closed, 1);
	fab_chan_release(rx);
}
END_TEST

/* ---- fork ------------------------------------------------------------------ */

static fab_stage *forked;

static int fork_child(void *arg)
{
	(void)arg;
	CHILD_CHECK(fab_stage_in(forked, "i") == NULL, 10);
	CHILD_CHECK(strstr(fab_errmsg(), "fork") != NULL, 11);
	CHILD_CHECK(fab_stage_out(forked, "o") == NULL, 12);
	CHILD_CHECK(fab_stage_ctx(forked) == NULL, 13);
	CHILD_RC(fab_stage_error(forked, 1, "from child"), FAB_EINVAL, 14);
	fab_stage_close(forked); /* frees the child's copy; closes nothing */
	return 0;
}

START_TEST(t_fork_inherited)
{
	fab_chan *o = mk_chan("o1", FAB_MPMC, 8, 16, 1);
	fab_chan *i = mk_chan("i1", FAB_MPMC, 8, 16, 1);
	fab_chan *errs = mk_chan("errs", FAB_MPMC, 8, 512, 1);
	env_stage("parent", NULL, "out:o=o1,in:i=i1", NULL, "errs");
	UT_RC(fab_stage_open(&forked), 0);
	UT_CHILD_OK(ft_spawn(fork_child, NULL));
	fab_stats st = ut_stats(o);
	ck_assert_uint_eq(st.closed, 0);
	ck_assert_uint_eq(st.senders, 2); /* the parent's stage handle is still attached */
	ck_assert_uint_eq(atomic_load(&stage_ent("parent")->errors), 0);
	ck_assert_uint_eq(ut_stats(errs).len, 0);
	/* The parent's handle still works and closes. */
	ck_assert_ptr_nonnull(fab_stage_in(forked, "i"));
	fab_stage_close(forked);
	ck_assert_uint_eq(ut_stats(o).closed, 1);
	fab_chan_release(o);
	fab_chan_release(i);
	fab_chan_release(errs);
}
END_TEST

/* ---- the stage table ------------------------------------------------------- */

static int race_open(void *arg)
{
	char rep[8];
	snprintf(rep, sizeof rep, "%d", (int)(intptr_t)arg);
	env_stage("same", rep, NULL, NULL, NULL);
	fab_stage *s = NULL;
	CHILD_RC(fab_stage_open(&s), 0, 10);
	fab_stage_close(s);
	return 0;
}

START_TEST(t_table_one_entry_per_name)
{
	/* Replicas starting at once meet at one entry. */
	pid_t kids[8];
	for (int k = 0; k < 8; k++)
		kids[k] = ft_spawn(race_open, (void *)(intptr_t)k);
	for (int k = 0; k < 8; k++)
		UT_CHILD_OK(kids[k]);
	fab_stage_ent *e = stage_ent("same");
	ck_assert_uint_eq(atomic_load(&e->opens), 8);
	ck_assert_uint_eq(atomic_load(&e->replicas_seen), 8);
	ck_assert_int_eq(stage_entries(NULL, NULL), 1);
}
END_TEST

START_TEST(t_table_dead_creator_and_scribbles)
{
	fab_stage_ent *t = stage_table();
	/* Entry 0: claimed by a process that died before LIVE (an owner tag
	 * naming an unused process-table entry).  Entry 1: LIVE with a name
	 * that fills all 64 bytes (no NUL).  Entry 2: a garbage state. */
	atomic_store(&t[0].owner, FAB_TAG_MAKE(1000, 7));
	memcpy(t[0].name, "half", 4);
	atomic_store(&t[1].owner, FAB_TAG_MAKE(1001, 7));
	memset(t[1].name, 'A', sizeof t[1].name);
	atomic_store(&t[1].state, FAB_ENT_LIVE);
	atomic_store(&t[2].owner, FAB_TAG_MAKE(1002, 7));
	atomic_store(&t[2].state, 77);

	env_stage("s1", NULL, NULL, NULL, NULL);
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), 0);
	ck_assert_ptr_eq(stage_ent("s1"), &t[0]); /* taken over */
	fab_stage_close(s);
	env_stage("s2", NULL, NULL, NULL, NULL);
	UT_RC(fab_stage_open(&s), 0);
	ck_assert_ptr_eq(stage_ent("s2"), &t[2]); /* garbage state, dead owner: taken over */
	fab_stage_close(s);
	/* A stage whose name is 48 'A's is not the unterminated entry. */
	char a48[49];
	memset(a48, 'A', 48);
	a48[48] = 0;
	env_stage(a48, NULL, NULL, NULL, NULL);
	UT_RC(fab_stage_open(&s), 0);
	ck_assert_ptr_eq(stage_ent(a48), &t[3]);
	fab_stage_close(s);
}
END_TEST

START_TEST(t_table_full)
{
	fab_stage_ent *t = stage_table();
	for (uint32_t i = 0; i < FAB_MAX_STAGES; i++) {
		snprintf(t[i].name, sizeof t[i].name, "x%u", i);
		atomic_store(&t[i].owner, FAB_TAG_MAKE(1000, 1));
		atomic_store(&t[i].state, FAB_ENT_LIVE);
	}
	env_stage("late", NULL, NULL, NULL, NULL);
	fab_stage *s = NULL;
	UT_RC(fab_stage_open(&s), FAB_ENOMEM);
	ck_assert_msg(strstr(fab_errmsg(), "FAB_STAGE") && strstr(fab_errmsg(), "full"), "%s",
		      fab_errmsg());
	env_stage("x17", NULL, NULL, NULL, NULL); /* an existing name still opens */
	UT_RC(fab_stage_open(&s), 0);
	ck_assert_ptr_eq(stage_ent("x17"), &t[17]);
	fab_stage_close(s);
}
END_TEST

static Suite *stage_suite(void)
{
	Suite *s = suite_create("stage");
	TCase *tc = tcase_create("stage");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, t_env_good);
	tcase_add_test(tc, t_env_minimal);
	tcase_add_test(tc, t_env_malformed);
	tcase_add_test(tc, t_env_missing_objects);
	tcase_add_test(tc, t_unknown_port);
	tcase_add_loop_test(tc, t_ports_end_to_end, 0, 2);
	tcase_add_test(tc, t_error_record);
	tcase_add_test(tc, t_error_channel_full);
	tcase_add_loop_test(tc, t_close_closes_outputs, 0, 2);
	tcase_add_test(tc, t_replica_restart_counted_once);
	tcase_add_test(tc, t_producer_id_env);
	tcase_add_test(tc, t_restarting);
	tcase_add_test(tc, t_fork_inherited);
	tcase_add_test(tc, t_table_one_entry_per_name);
	tcase_add_test(tc, t_table_dead_creator_and_scribbles);
	tcase_add_test(tc, t_table_full);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ut_main(stage_suite(), "stage");
}
