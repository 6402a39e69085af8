/*
 * trace_fixture.c - a live fabric for the `fabctl trace` test, in which
 * every process sleeps often and on a different kind of word:
 *
 *   sender (this process)  paces itself with the limiter "pace" (one token
 *                          every INTERVAL_MS, burst 1), so it sleeps in
 *                          fab_limiter_wait; each tick it sends one message
 *                          on the channel "ticks" (capacity 4) and publishes
 *                          one on the topic "news"
 *   receiver (child)       fab_recv on "ticks": sleeps between messages
 *   subscriber (child)     fab_sub_recv on "news" with the shared context
 *                          "stop": sleeps between messages; the sender
 *                          cancels "stop" at the end
 *
 * The trace must show: chan ticks recv (receiver), topic news recv
 * (subscriber), limiter pace wait (sender).
 *
 * usage: trace_fixture FABRIC SECONDS PIDFILE [INTERVAL_MS]
 *
 * Writes "SENDER_PID RECEIVER_PID SUBSCRIBER_PID\n" to PIDFILE (atomically,
 * by rename) once everyone is attached, ticks for SECONDS, then closes the
 * channel, cancels "stop", reaps both children and destroys the fabric.
 * SIGTERM ends the ticking early, with the same clean shutdown.  Exit 0 on
 * success; 1 on a library error; 2 on bad usage; 3 when a child failed.
 * The children die with their parent (PR_SET_PDEATHSIG), so a killed
 * fixture leaves no process behind (the test's trap removes the segments).
 */
#include <fab/fab.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The receiver: until the channel is closed.  Exit 0, or 10 + the step
 * that failed. */
static int receiver(fab_fabric *fab, int ready_fd)
{
	fab_chan *ch;
	char buf[64];
	if (fab_chan_open(fab, "ticks", FAB_RECV, &ch))
		return 11;
	if (write(ready_fd, "r", 1) != 1)
		return 12;
	close(ready_fd);
	for (;;) {
		ssize_t n = fab_recv(ch, buf, sizeof buf, NULL);
		if (n == FAB_ECLOSED)
			break;
		if (n < 0) {
			fprintf(stderr, "receiver: fab_recv: %s\n", fab_strerror((int)n));
			return 13;
		}
	}
	fab_chan_release(ch);
	return 0;
}

/* The subscriber: until "stop" is cancelled.  Exit 0, or 20 + the step
 * that failed. */
static int subscriber(fab_fabric *fab, int ready_fd)
{
	fab_ctx *ctx;
	fab_sub *sub;
	char buf[64];
	if (fab_ctx_open(fab, "stop", &ctx))
		return 21;
	if (fab_topic_subscribe(fab, "news", FAB_SUB_DROP, &sub))
		return 22;
	if (write(ready_fd, "s", 1) != 1)
		return 23;
	close(ready_fd);
	for (;;) {
		ssize_t n = fab_sub_recv(sub, buf, sizeof buf, ctx);
		if (n == FAB_ECANCELED)
			break;
		if (n < 0) {
			fprintf(stderr, "subscriber: fab_sub_recv: %s\n", fab_strerror((int)n));
			return 24;
		}
	}
	fab_sub_release(sub);
	fab_ctx_release(ctx);
	return 0;
}

static pid_t spawn(const char *fabric, int (*body)(fab_fabric *, int), int ready_fd, int other_fd)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(30);
	signal(SIGTERM, SIG_DFL);
	close(other_fd);
	/* The parent's handle is not used here: each child attaches with its
	 * own. */
	fab_fabric *fab;
	if (fab_fabric_open(fabric, 0, &fab))
		_exit(31);
	int rc = body(fab, ready_fd);
	fab_fabric_close(fab);
	_exit(rc);
}

static int reap(pid_t pid, const char *what)
{
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	fprintf(stderr, "%s failed: status 0x%x\n", what, st);
	return 3;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: %s FABRIC SECONDS PIDFILE [INTERVAL_MS]\n", argv[0]);
		return 2;
	}
	const char *fabric = argv[1];
	double seconds = atof(argv[2]);
	const char *pidfile = argv[3];
	long interval_ms = argc == 5 ? atol(argv[4]) : 20;
	if (seconds <= 0 || interval_ms <= 0)
		return 2;

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);

	fab_fabric *fab;
	fab_chan *ch = NULL;
	fab_topic *topic = NULL;
	fab_limiter *lim = NULL;
	fab_ctx *ctx = NULL;
	int rc;
	if ((rc = fab_fabric_open(fabric, FAB_CREATE, &fab))) {
		fprintf(stderr, "fab_fabric_open(%s): %s\n", fabric, fab_strerror(rc));
		return 1;
	}
	fab_chan_opts o = {.size = sizeof o, .capacity = 4, .msg_size = 64, .kind = FAB_SPSC};
	fab_chan_opts to = {.size = sizeof to, .capacity = 16, .msg_size = 64};
	if ((rc = fab_chan_create(fab, "ticks", &o, &ch)) ||
	    (rc = fab_topic_create(fab, "news", &to, &topic)) ||
	    (rc = fab_limiter_create(fab, "pace", 1000.0 / (double)interval_ms, 1, &lim)) ||
	    (rc = fab_ctx_create(fab, "stop", NULL, &ctx))) {
		fprintf(stderr, "creating the objects: %s\n", fab_strerror(rc));
		fab_fabric_close(fab);
		fab_fabric_destroy(fabric);
		return 1;
	}
	fab_chan_release(ch);
	ch = NULL;

	int pfd[2];
	if (pipe(pfd))
		return 1;
	pid_t rpid = spawn(fabric, receiver, pfd[1], pfd[0]);
	pid_t spid = rpid > 0 ? spawn(fabric, subscriber, pfd[1], pfd[0]) : -1;
	close(pfd[1]);
	char c[2];
	int ok = rpid > 0 && spid > 0 && read(pfd[0], &c[0], 1) == 1 && read(pfd[0], &c[1], 1) == 1;
	close(pfd[0]);

	int result = 0;
	if (!ok || (rc = fab_chan_open(fab, "ticks", FAB_SEND, &ch))) {
		fprintf(stderr, "sender: children not ready, or the channel did not open\n");
		result = 1;
		ch = NULL;
	}
	if (ch) {
		char tmp[4096];
		snprintf(tmp, sizeof tmp, "%s.tmp", pidfile);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%d %d %d\n", (int)getpid(), (int)rpid, (int)spid) < 0 ||
		    fclose(f) || rename(tmp, pidfile)) {
			perror(pidfile);
			result = 1;
		}
		int64_t end = now_ns() + (int64_t)(seconds * 1e9);
		unsigned long seq = 0;
		while (result == 0 && !stop && now_ns() < end) {
			char msg[64];
			int len = snprintf(msg, sizeof msg, "tick %lu", seq++);
			/* The pace: one token every interval_ms (the sender sleeps
			 * on the limiter's word). */
			if ((rc = fab_limiter_wait(lim, 1, NULL)) ||
			    (rc = fab_send(ch, msg, (size_t)len, NULL)) ||
			    (rc = fab_topic_publish(topic, msg, (size_t)len, NULL))) {
				fprintf(stderr, "sender: %s\n", fab_strerror(rc));
				result = 1;
			}
		}
		fab_chan_close(ch);
		fab_chan_release(ch);
	}
	fab_ctx_cancel(ctx, 0);
	if (rpid > 0) {
		if (!ok)
			kill(rpid, SIGKILL);
		int r = reap(rpid, "receiver");
		result = result ? result : r;
	}
	if (spid > 0) {
		if (!ok)
			kill(spid, SIGKILL);
		int r = reap(spid, "subscriber");
		result = result ? result : r;
	}
	fab_ctx_release(ctx);
	fab_limiter_release(lim);
	fab_topic_release(topic);
	fab_fabric_close(fab);
	fab_fabric_destroy(fabric);
	return result;
}
