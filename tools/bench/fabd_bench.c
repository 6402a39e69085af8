/*
 * fabd_bench.c - fabd-bench: the broker's figures of issue 5 (point 11),
 * measured on demand (a program, not a test):
 *
 *   a. restart: the time from a child's death to its replacement running.
 *      A topology "feeder -> jobs -> victim" whose victim has `restart:
 *      always`, `backoff: 0` (the minimum: a constant delay of 0, so the
 *      replacement is forked as soon as fabd has reaped the dead one and
 *      run the library's recovery) and an intensity that never trips.  The
 *      victim is SIGKILLed N times (default 100), each time once its
 *      replacement has reported.  Per kill, from the moment before kill(2):
 *        death seen  fabd's line "victim.0: killed by signal 9" arrives on
 *                    its output pipe (fabd reaped it and ran recovery; an
 *                    upper bound: it includes the pipe and our wake-up)
 *        exec'd      the replacement's main() starts (fork + exec + ld.so)
 *        running     the replacement's fab_stage_open returned
 *   b. bring-up: the time from fork+exec of `fabd run` to every one of S
 *      stages (default 32, a chain s00 -> c00 -> s01 -> ... -> sNN) having
 *      returned from fab_stage_open; R runs (default 5).
 *   c. idle CPU: fabd with the S-stage chain up and every stage blocked (the
 *      first waits on its context, the others in fab_recv); after a second
 *      to settle, fabd's CPU time over T seconds (default 10), all threads,
 *      from /proc/PID/task/TID/schedstat (ns) and /proc/PID/stat
 *      (utime+stime, ticks), as a percentage of one CPU.
 *
 * Each figure is printed as median, min and max, with its method.  The
 * stages are this program run as `fabd-bench stage`: it takes
 * CLOCK_MONOTONIC at main() and after fab_stage_open and writes one line
 * "R <stage> <replica> <pid> <main_ns> <open_ns>" (< PIPE_BUF: one atomic
 * write) to the FIFO named by FABD_BENCH_FIFO, then blocks until its input
 * closes or its context is cancelled.  fabd runs with metrics off, no
 * watchdog, the control socket in a private temporary directory, and is
 * drained with SIGTERM after each part.
 *
 *   fabd-bench [--fabd PATH] [--only a|b|c] [--kills N] [--stages S]
 *              [--runs R] [--idle-secs T]
 *
 * Exit status: 0 done, 1 a part failed (the message says which), 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fab/fab.h>

#ifndef FABD_DEFAULT
#define FABD_DEFAULT "fabd"
#endif

#define PROG "fabd-bench"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the stage ---------------------------------------------------------- */

static int stage_main(void)
{
	int64_t t_main = now_ns();
	fab_stage *st;
	if (fab_stage_open(&st) < 0) {
		fprintf(stderr, "%s stage: fab_stage_open: %s\n", PROG, fab_errmsg());
		return 1;
	}
	int64_t t_open = now_ns();
	const char *fifo = getenv("FABD_BENCH_FIFO");
	const char *name = getenv("FAB_STAGE"), *rep = getenv("FAB_REPLICA");
	if (fifo) {
		char line[256];
		int n = snprintf(line, sizeof line, "R %s %s %d %" PRId64 " %" PRId64 "\n",
				 name ? name : "?", rep ? rep : "0", (int)getpid(), t_main, t_open);
		int fd = open(fifo, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, line, (size_t)n) != n) {
			fprintf(stderr, "%s stage: %s: %s\n", PROG, fifo, strerror(errno));
			return 1;
		}
		close(fd);
	}
	/* Block: in fab_recv on the input port if there is one, else on the
	 * context (a source: a drain cancels it). */
	fab_chan *in = fab_stage_in(st, "in");
	fab_ctx *ctx = fab_stage_ctx(st);
	if (in) {
		for (;;) {
			ssize_t n = fab_recv(in, NULL, 0, ctx);
			if (n == FAB_ECLOSED || n == FAB_ECANCELED || n < 0)
				break;
		}
	} else {
		fab_ctx_wait(ctx);
	}
	fab_stage_close(st);
	return 0;
}

/* ---- fabd and the events it produces ------------------------------------ */

struct report {
	char stage[64];
	unsigned replica;
	pid_t pid;
	int64_t main_ns, open_ns;
};

static struct {
	char dir[64], fifo[128], yaml[128];
	int fifo_fd; /* read end, opened O_RDWR so it never sees EOF */
	pid_t fabd;
	int out_fd; /* fabd's stdout+stderr */
	char obuf[8192], fbuf[4096];
	size_t olen, flen;
	struct report *rep;
	size_t nrep, caprep;
	int64_t last_death_ns; /* arrival of the last "killed by signal" line */
	unsigned deaths;
	FILE *log; /* fabd's output is kept here, for a failure */
} B = {.fifo_fd = -1, .out_fd = -1};

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", PROG);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (B.log) {
		char line[512];
		fprintf(stderr, "--- fabd's output (last lines) ---\n");
		rewind(B.log);
		static char tail[20][512];
		int n = 0;
		while (fgets(line, sizeof line, B.log))
			snprintf(tail[n++ % 20], sizeof tail[0], "%s", line);
		for (int i = n > 20 ? n - 20 : 0; i < n; i++)
			fputs(tail[i % 20], stderr);
	}
	if (B.fabd > 0) {
		kill(B.fabd, SIGKILL);
		waitpid(B.fabd, NULL, 0);
	}
	exit(1);
}

static void on_fabd_line(const char *line, int64_t t)
{
	if (B.log)
		fprintf(B.log, "%s\n", line);
	if (strstr(line, "fabd: victim.0: killed by signal 9")) {
		B.last_death_ns = t;
		B.deaths++;
	}
}

static void on_report(const char *line)
{
	struct report r;
	long long mn, op;
	int pid;
	if (sscanf(line, "R %63s %u %d %lld %lld", r.stage, &r.replica, &pid, &mn, &op) != 5)
		die("a stage wrote a bad report: '%s'", line);
	r.pid = pid;
	r.main_ns = mn;
	r.open_ns = op;
	if (B.nrep == B.caprep) {
		B.caprep = B.caprep ? 2 * B.caprep : 64;
		B.rep = realloc(B.rep, B.caprep * sizeof *B.rep);
		if (!B.rep)
			die("out of memory");
	}
	B.rep[B.nrep++] = r;
}

/* Splits buf (of `cap` bytes) into lines, passing each complete one to fn. */
static void split(char *buf, size_t cap, size_t *len, void (*fn)(const char *, int64_t), int64_t t)
{
	char *p = buf, *nl;
	while ((nl = memchr(p, '\n', *len - (size_t)(p - buf)))) {
		*nl = 0;
		fn(p, t);
		p = nl + 1;
	}
	*len -= (size_t)(p - buf);
	memmove(buf, p, *len);
	if (*len == cap - 1) /* a line longer than the buffer: dropped */
		*len = 0;
}

static void on_report_t(const char *line, int64_t t)
{
	(void)t;
	on_report(line);
}

/* Reads what fabd and the stages wrote, waiting at most ms (-1: forever)
 * for the first of it.  Returns 0, or -1 when fabd's output reached EOF. */
static int pump(int ms)
{
	struct pollfd p[2] = {{B.out_fd, POLLIN, 0}, {B.fifo_fd, POLLIN, 0}};
	int n = poll(p, 2, ms);
	if (n < 0 && errno != EINTR)
		die("poll: %s", strerror(errno));
	int64_t t = now_ns();
	if (n > 0 && p[1].revents & POLLIN) {
		ssize_t r = read(B.fifo_fd, B.fbuf + B.flen, sizeof B.fbuf - 1 - B.flen);
		if (r > 0) {
			B.flen += (size_t)r;
			split(B.fbuf, sizeof B.fbuf, &B.flen, on_report_t, t);
		}
	}
	if (n > 0 && p[0].revents & (POLLIN | POLLHUP)) {
		ssize_t r = read(B.out_fd, B.obuf + B.olen, sizeof B.obuf - 1 - B.olen);
		if (r == 0)
			return -1;
		if (r > 0) {
			B.olen += (size_t)r;
			split(B.obuf, sizeof B.obuf, &B.olen, on_fabd_line, t);
		}
	}
	return 0;
}

static void fabd_start(const char *fabd)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	B.olen = B.flen = 0;
	B.deaths = 0;
	B.last_death_ns = 0;
	B.nrep = 0;
	if (B.log)
		fclose(B.log);
	B.log = tmpfile();
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		setenv("XDG_RUNTIME_DIR", B.dir, 1);
		setenv("FABD_BENCH_FIFO", B.fifo, 1);
		execl(fabd, fabd, "run", B.yaml, (char *)NULL);
		fprintf(stderr, "%s: exec %s: %s\n", PROG, fabd, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	B.fabd = pid;
	B.out_fd = pfd[0];
}

/* SIGTERM (drain), then wait for fabd; SIGKILL after 30 s. */
static void fabd_stop(void)
{
	kill(B.fabd, SIGTERM);
	int64_t end = now_ns() + 30 * 1000000000LL;
	while (pump(100) == 0)
		if (now_ns() > end) {
			kill(B.fabd, SIGKILL);
			break;
		}
	int st;
	waitpid(B.fabd, &st, 0);
	B.fabd = 0;
	close(B.out_fd);
	B.out_fd = -1;
	/* Discard whatever is left in the FIFO: the next run starts clean. */
	for (;;) {
		struct pollfd p = {B.fifo_fd, POLLIN, 0};
		char junk[4096];
		if (poll(&p, 1, 0) <= 0 || read(B.fifo_fd, junk, sizeof junk) <= 0)
			break;
	}
	B.flen = 0;
	if (!WIFEXITED(st) || (WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 6))
		die("fabd did not drain cleanly (status 0x%x)", st);
}

/* Waits until pred() holds, pumping events; dies after `secs`. */
static void wait_for(int (*pred)(void *), void *arg, int secs, const char *what)
{
	int64_t end = now_ns() + (int64_t)secs * 1000000000;
	while (!pred(arg)) {
		if (pump(100) < 0)
			die("fabd exited while waiting for %s", what);
		if (now_ns() > end)
			die("timed out after %d s waiting for %s", secs, what);
	}
}

static void write_yaml(const char *text)
{
	FILE *f = fopen(B.yaml, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		die("%s: %s", B.yaml, strerror(errno));
}

/* ---- statistics --------------------------------------------------------- */

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void print_stat(const char *what, double *v, size_t n, const char *unit)
{
	if (!n) {
		printf("  %-34s (no samples)\n", what);
		return;
	}
	qsort(v, n, sizeof *v, cmp_d);
	double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	printf("  %-34s median %9.3f %s   min %9.3f   max %9.3f   (n=%zu)\n", what, med, unit, v[0],
	       v[n - 1], n);
}

/* ---- a: restart latency ------------------------------------------------- */

struct newrep {
	const char *stage;
	pid_t not_pid;
	size_t from;
};

static int have_new_report(void *arg)
{
	struct newrep *w = arg;
	for (size_t i = w->from; i < B.nrep; i++)
		if (!strcmp(B.rep[i].stage, w->stage) && B.rep[i].pid != w->not_pid)
			return 1;
	return 0;
}

static const struct report *last_of(const char *stage)
{
	for (size_t i = B.nrep; i-- > 0;)
		if (!strcmp(B.rep[i].stage, stage))
			return &B.rep[i];
	return NULL;
}

static void part_a(const char *fabd, const char *self, unsigned kills)
{
	char y[2 * PATH_MAX + 512];
	snprintf(y, sizeof y,
		 "fabric: fabdbench-a-%d\n"
		 "channels:\n  jobs: { capacity: 16, msg_size: 64 }\n"
		 "stages:\n"
		 "  feeder:\n    run: [%s, stage]\n    out: { out: jobs }\n"
		 "  victim:\n    run: [%s, stage]\n    in: { in: jobs }\n"
		 "    restart: always\n    backoff: 0\n    intensity: 1000000/1s\n"
		 "metrics: { listen: off }\n"
		 "shutdown: { drain: 5s, grace: 2s }\n",
		 (int)getpid(), self, self);
	write_yaml(y);
	fabd_start(fabd);
	struct newrep w = {"victim", 0, 0};
	wait_for(have_new_report, &w, 30, "the victim's first start");
	struct newrep f = {"feeder", 0, 0};
	wait_for(have_new_report, &f, 30, "the feeder's start");

	double *seen = calloc(kills, sizeof *seen), *exe = calloc(kills, sizeof *exe),
	       *run = calloc(kills, sizeof *run);
	size_t nseen = 0;
	if (!seen || !exe || !run)
		die("out of memory");
	for (unsigned k = 0; k < kills; k++) {
		const struct report *r = last_of("victim");
		pid_t old = r->pid;
		unsigned deaths = B.deaths;
		struct newrep nw = {"victim", old, B.nrep};
		int64_t t0 = now_ns();
		if (kill(old, SIGKILL) < 0)
			die("kill %d: %s", (int)old, strerror(errno));
		wait_for(have_new_report, &nw, 30, "the victim's replacement");
		r = last_of("victim");
		exe[k] = (double)(r->main_ns - t0) / 1e6;
		run[k] = (double)(r->open_ns - t0) / 1e6;
		/* fabd prints the death before it forks; give its line a moment
		 * if the replacement's report overtook it on the other pipe. */
		for (int i = 0; i < 50 && B.deaths == deaths; i++)
			pump(10);
		if (B.deaths > deaths)
			seen[nseen++] = (double)(B.last_death_ns - t0) / 1e6;
	}
	fabd_stop();
	printf("a. restart: SIGKILL of a replica -> its replacement running (%u kills)\n", kills);
	printf("   topology: feeder -> jobs (spsc) -> victim; victim restart: always, backoff: 0\n"
	       "   (the minimum: constant 0 delay), intensity 1000000/1s; each kill once the\n"
	       "   previous replacement had reported; times from just before kill(2)\n");
	print_stat("death seen (fabd's log line read)", seen, nseen, "ms");
	print_stat("replacement exec'd (its main())", exe, kills, "ms");
	print_stat("replacement running (stage_open)", run, kills, "ms");
	free(seen);
	free(exe);
	free(run);
}

/* ---- b and c: a chain of S stages --------------------------------------- */

static void chain_yaml(const char *self, unsigned stages, const char *tag)
{
	size_t cap = 256 + (size_t)stages * 256;
	char *y = malloc(cap);
	if (!y)
		die("out of memory");
	size_t n =
	    (size_t)snprintf(y, cap, "fabric: fabdbench-%s-%d\nchannels:\n", tag, (int)getpid());
	for (unsigned i = 0; i + 1 < stages; i++)
		n += (size_t)snprintf(y + n, cap - n, "  c%02u: { capacity: 16, msg_size: 64 }\n",
				      i);
	n += (size_t)snprintf(y + n, cap - n, "stages:\n");
	for (unsigned i = 0; i < stages; i++) {
		n += (size_t)snprintf(y + n, cap - n, "  s%02u:\n    run: [%s, stage]\n", i, self);
		if (i > 0)
			n += (size_t)snprintf(y + n, cap - n, "    in: { in: c%02u }\n", i - 1);
		if (i + 1 < stages)
			n += (size_t)snprintf(y + n, cap - n, "    out: { out: c%02u }\n", i);
	}
	snprintf(y + n, cap - n, "metrics: { listen: off }\nshutdown: { drain: 10s, grace: 2s }\n");
	write_yaml(y);
	free(y);
}

static int all_up(void *arg)
{
	return B.nrep >= *(unsigned *)arg;
}

static void part_b(const char *fabd, const char *self, unsigned stages, unsigned runs)
{
	double *up = calloc(runs, sizeof *up), *first = calloc(runs, sizeof *first);
	if (!up || !first)
		die("out of memory");
	chain_yaml(self, stages, "b");
	for (unsigned r = 0; r < runs; r++) {
		int64_t t0 = now_ns();
		fabd_start(fabd);
		wait_for(all_up, &stages, 60, "every stage's fab_stage_open");
		int64_t last = 0, early = INT64_MAX;
		for (size_t i = 0; i < B.nrep; i++) {
			if (B.rep[i].open_ns > last)
				last = B.rep[i].open_ns;
			if (B.rep[i].open_ns < early)
				early = B.rep[i].open_ns;
		}
		up[r] = (double)(last - t0) / 1e6;
		first[r] = (double)(early - t0) / 1e6;
		fabd_stop();
	}
	printf(
	    "b. bring-up: fork+exec of `fabd run` -> all %u stages past fab_stage_open (%u runs)\n",
	    stages, runs);
	printf("   topology: a chain s00 -> c00 -> s01 -> ... of %u stages, %u spsc channels\n",
	       stages, stages - 1);
	print_stat("first stage running", first, runs, "ms");
	print_stat("all stages running", up, runs, "ms");
	free(up);
	free(first);
}

/* fabd's CPU time so far, all its threads (the loop, the error reader and,
 * with metrics on, libmicrohttpd's): ns summed over /proc/PID/task/<tid>/
 * schedstat (0 if absent; /proc/PID/schedstat is the main thread only), and
 * ticks from /proc/PID/stat (the whole process). */
static void fabd_cpu(pid_t pid, uint64_t *ns, uint64_t *ticks)
{
	char path[300], buf[1024];
	FILE *f;
	*ns = *ticks = 0;
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		if ((f = fopen(path, "r"))) {
			unsigned long long v;
			if (fscanf(f, "%llu", &v) == 1)
				*ns += v;
			fclose(f);
		}
	}
	if (d)
		closedir(d);
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")) || !fgets(buf, sizeof buf, f))
		die("%s: %s", path, strerror(errno));
	fclose(f);
	/* Fields after the command's closing parenthesis: state is field 3,
	 * utime 14 and stime 15. */
	char *p = strrchr(buf, ')');
	unsigned long long ut, stt;
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
		die("%s: cannot parse", path);
	*ticks = ut + stt;
}

static void part_c(const char *fabd, const char *self, unsigned stages, unsigned secs)
{
	chain_yaml(self, stages, "c");
	fabd_start(fabd);
	wait_for(all_up, &stages, 60, "every stage's fab_stage_open");
	int64_t settle = now_ns() + 1000000000;
	while (now_ns() < settle)
		pump(100);
	uint64_t ns0, t0, ns1, t1;
	int64_t w0 = now_ns();
	fabd_cpu(B.fabd, &ns0, &t0);
	int64_t end = w0 + (int64_t)secs * 1000000000;
	while (now_ns() < end)
		if (pump(200) < 0)
			die("fabd exited while idle");
	fabd_cpu(B.fabd, &ns1, &t1);
	double wall = (double)(now_ns() - w0) / 1e9;
	fabd_stop();
	long hz = sysconf(_SC_CLK_TCK);
	printf("c. idle CPU of fabd: %u stages up, all blocked, metrics off, no watchdog\n",
	       stages);
	printf("   over %.1f s after 1 s to settle; percent of one CPU\n", wall);
	printf("  %-34s %9.4f %%  (%llu ns)\n", "from /proc/PID/task/*/schedstat",
	       (double)(ns1 - ns0) / 1e9 / wall * 100, (unsigned long long)(ns1 - ns0));
	printf("  %-34s %9.4f %%  (%llu ticks of 1/%ld s)\n", "from /proc/PID/stat utime+stime",
	       (double)(t1 - t0) / (double)hz / wall * 100, (unsigned long long)(t1 - t0), hz);
}

/* ---- main --------------------------------------------------------------- */

static void cleanup(void)
{
	if (B.fabd > 0) {
		kill(B.fabd, SIGKILL);
		waitpid(B.fabd, NULL, 0);
	}
	if (B.yaml[0])
		unlink(B.yaml);
	if (B.fifo[0])
		unlink(B.fifo);
	if (B.dir[0]) {
		char p[128];
		snprintf(p, sizeof p, "%s/fab", B.dir);
		rmdir(p); /* fabd removes its socket and lock when it exits */
		rmdir(B.dir);
	}
}

static unsigned arg_u(const char *opt, const char *v, unsigned lo, unsigned hi)
{
	char *end;
	unsigned long x = strtoul(v ? v : "", &end, 10);
	if (!v || !*v || *end || x < lo || x > hi) {
		fprintf(stderr, "%s: %s: expected an integer %u..%u\n", PROG, opt, lo, hi);
		exit(2);
	}
	return (unsigned)x;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "stage"))
		return stage_main();

	const char *fabd = getenv("FABD") ? getenv("FABD") : FABD_DEFAULT;
	const char *only = NULL;
	unsigned kills = 100, stages = 32, runs = 5, secs = 10;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--fabd") && v)
			fabd = v;
		else if (!strcmp(a, "--only") && v && strlen(v) == 1 && strchr("abc", v[0]))
			only = v;
		else if (!strcmp(a, "--kills") && v)
			kills = arg_u(a, v, 1, 100000);
		else if (!strcmp(a, "--stages") && v)
			stages = arg_u(a, v, 2, 1000);
		else if (!strcmp(a, "--runs") && v)
			runs = arg_u(a, v, 1, 1000);
		else if (!strcmp(a, "--idle-secs") && v)
			secs = arg_u(a, v, 1, 3600);
		else {
			fprintf(
			    stderr,
			    "usage: %s [--fabd PATH] [--only a|b|c] [--kills N] [--stages S]\n"
			    "       [--runs R] [--idle-secs T]\n"
			    "  a: death -> replacement running, N kills (default 100)\n"
			    "  b: fabd start -> S stages running (default 32), R runs (default 5)\n"
			    "  c: fabd's CPU over T idle seconds (default 10) with S stages\n",
			    PROG);
			return 2;
		}
		i++;
	}
	char self[PATH_MAX];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
	if (sl < 0) {
		fprintf(stderr, "%s: /proc/self/exe: %s\n", PROG, strerror(errno));
		return 1;
	}
	self[sl] = 0;
	if (access(fabd, X_OK) < 0) {
		fprintf(stderr, "%s: %s: %s (give --fabd PATH)\n", PROG, fabd, strerror(errno));
		return 2;
	}
	snprintf(B.dir, sizeof B.dir, "/tmp/fabd-bench-XXXXXX");
	if (!mkdtemp(B.dir)) {
		fprintf(stderr, "%s: mkdtemp: %s\n", PROG, strerror(errno));
		return 1;
	}
	atexit(cleanup);
	snprintf(B.fifo, sizeof B.fifo, "%s/reports", B.dir);
	snprintf(B.yaml, sizeof B.yaml, "%s/topology.yaml", B.dir);
	if (mkfifo(B.fifo, 0600) < 0 || (B.fifo_fd = open(B.fifo, O_RDWR | O_CLOEXEC)) < 0)
		die("%s: %s", B.fifo, strerror(errno));
	signal(SIGPIPE, SIG_IGN);

	printf("fabd-bench: fabd %s; %ld CPUs online; medians over the samples\n", fabd,
	       sysconf(_SC_NPROCESSORS_ONLN));
	fflush(stdout);
	if (!only || *only == 'a')
		part_a(fabd, self, kills);
	fflush(stdout);
	if (!only || *only == 'b')
		part_b(fabd, self, stages, runs);
	fflush(stdout);
	if (!only || *only == 'c')
		part_c(fabd, self, stages, secs);
	return 0;
}
