/*
 * fixture.c - live fabrics for fabctl's tests, built with libfab.
 *
 *   fixture MODE FABRIC
 *
 * creates FABRIC, its channels and child processes, waits (reading the
 * segments with fab_inspect, never by time) until every child that should
 * sleep has its wait record set, prints one "key=value" line per process
 * of interest and then "ready", and stays until SIGTERM/SIGINT (or 600 s):
 * then it kills and reaps its children and destroys the fabric.  Children
 * die with it (PR_SET_PDEATHSIG).
 *
 * Modes:
 *   basic     channels full (mpmc 2, filled, a child blocked sending),
 *             empty (a child blocked receiving), text (spsc: "hello",
 *             "world", 3 binary bytes), alo (at-least-once: "a1" leased by
 *             a child, "a2" queued), rt (empty, for send/recv), stagein
 *             (a stage worker.1 blocked receiving, one error reported),
 *             topic news (one subscriber), held (spsc, its receive end
 *             held by an idle child)
 *   deadlock  d1, d2 (mpmc, capacity 1): stage a.0 sends on d1 and has
 *             d2 as input, stage b.0 the reverse; both block sending
 *   nodead    as deadlock plus child c attached to d1 to receive, not
 *             blocked: no deadlock
 *   ring3     d1, d2, d3: stages a.0 -> b.0 -> c.0 -> a.0 each blocked
 *             sending to the next, and child w blocked sending on d1 too
 *             (behind the deadlock, not on its cycle)
 *   leave     channel c1 (mpmc 4, "m1" queued), then exit leaving the
 *             segments for a corruption test (no children, no wait)
 *   leave2    as leave, plus channel c2 (spsc 4, "m2" queued)
 *   many N M  N channels, M child processes attached (each opens one
 *             channel), for the cost script
 *   holders N c (mpmc 256) with N + 3 messages; N children hold one each
 *             (fab_recv_acquire), child multi holds three through three
 *             fabric handles of its own; all sleep receiving on d
 */
#include "inspect.h"
#include "layout.h"

#include <fab/fab.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *fabric;
static pid_t kids[1100];
static int nkids;
static volatile sig_atomic_t stop;

static void on_sig(int s)
{
	(void)s;
	stop = 1;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "fixture: %s: %s (%s)\n", what, fab_strerror(rc), fab_errmsg());
	exit(1);
}

static void teardown(void)
{
	for (int i = 0; i < nkids; i++)
		kill(kids[i], SIGKILL);
	for (int i = 0; i < nkids; i++)
		waitpid(kids[i], NULL, 0);
	fab_fabric_destroy(fabric);
}

static void nap(void)
{
	struct timespec ts = {0, 5 * 1000000};
	nanosleep(&ts, NULL);
}

/* Fork a child that runs fn(arg) and never returns. */
static pid_t spawn(void (*fn)(const char *), const char *arg)
{
	fflush(stdout);
	pid_t p = fork();
	if (p < 0) {
		perror("fork");
		teardown();
		exit(1);
	}
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(0);
		fn(arg);
		_exit(0);
	}
	kids[nkids++] = p;
	return p;
}

static fab_fabric *child_open(void)
{
	fab_fabric *f;
	if (fab_fabric_open(fabric, 0, &f))
		_exit(10);
	return f;
}

static fab_chan *child_chan(fab_fabric *f, const char *name, unsigned role)
{
	fab_chan *c;
	if (fab_chan_open(f, name, role, &c))
		_exit(11);
	return c;
}

/* ---- children --------------------------------------------------------- */

static void blocked_sender(const char *ch)
{
	fab_chan *c = child_chan(child_open(), ch, FAB_SEND);
	for (;;) /* until full: then sleeps */
		if (fab_send(c, "m2", 2, NULL))
			_exit(20);
}

static void blocked_receiver(const char *ch)
{
	fab_chan *c = child_chan(child_open(), ch, FAB_RECV);
	char b[64];
	fab_recv(c, b, sizeof b, NULL); /* empty: sleeps */
	_exit(21);
}

static void lease_holder(const char *ch)
{
	fab_chan *c = child_chan(child_open(), ch, FAB_RECV);
	char b[64];
	if (fab_recv(c, b, sizeof b, NULL) < 0)
		_exit(22);
	for (;;)
		pause(); /* holds the lease of "a1" */
}

static void stage_worker(const char *ch)
{
	char ports[80];
	snprintf(ports, sizeof ports, "in:in=%s", ch);
	setenv("FAB_FABRIC", fabric, 1);
	setenv("FAB_STAGE", "worker", 1);
	setenv("FAB_REPLICA", "1", 1);
	setenv("FAB_PORTS", ports, 1);
	unsetenv("FAB_CTX");
	unsetenv("FAB_ERRORS");
	fab_stage *st;
	if (fab_stage_open(&st))
		_exit(23);
	fab_stage_error(st, 7, "fixture error");
	char b[64];
	fab_recv(fab_stage_in(st, "in"), b, sizeof b, fab_stage_ctx(st));
	_exit(24);
}

static void subscriber(const char *topic)
{
	fab_sub *s;
	if (fab_topic_subscribe(child_open(), topic, FAB_SUB_DROP, &s))
		_exit(25);
	char b[64];
	fab_sub_recv(s, b, sizeof b, NULL);
	_exit(26);
}

/* Deadlock pair, "STAGE:OUT,IN": a stage (FAB_STAGE=STAGE, replica 0)
 * with port out on OUT and port in on IN; sends on OUT until it blocks and
 * never receives. */
static void dl_child(const char *spec)
{
	char stage[32], out[32], in[32], ports[100];
	if (sscanf(spec, "%31[^:]:%31[^,],%31s", stage, out, in) != 3)
		_exit(27);
	/* "STAGE:OUT,IN+": also a second fabric handle (a second process
	 * entry, same pid) attached to IN to receive. */
	bool second = in[strlen(in) - 1] == '+';
	if (second)
		in[strlen(in) - 1] = 0;
	snprintf(ports, sizeof ports, "out:out=%s,in:in=%s", out, in);
	setenv("FAB_FABRIC", fabric, 1);
	setenv("FAB_STAGE", stage, 1);
	setenv("FAB_REPLICA", "0", 1);
	setenv("FAB_PORTS", ports, 1);
	unsetenv("FAB_CTX");
	unsetenv("FAB_ERRORS");
	fab_stage *st;
	if (fab_stage_open(&st))
		_exit(28);
	if (second)
		child_chan(child_open(), in, FAB_RECV);
	for (;;)
		if (fab_send(fab_stage_out(st, "out"), "x", 1, NULL))
			_exit(29);
}

/* "held" mode: holds c's message (acquired, or leased on an at-least-once
 * channel: arg "acq" or "alo"), then sleeps receiving on d. */
static void held_holder(const char *how)
{
	fab_fabric *f = child_open();
	fab_chan *c = child_chan(f, "c", FAB_RECV), *d = child_chan(f, "d", FAB_RECV);
	char b[64];
	if (!strcmp(how, "acq")) {
		const void *m;
		size_t n;
		if (fab_recv_acquire(c, &m, &n, NULL))
			_exit(23);
	} else if (fab_recv(c, b, sizeof b, NULL) < 0) {
		_exit(23);
	}
	fab_recv(d, b, sizeof b, NULL);
	_exit(24);
}

/* "holders" mode: hold one message of c (acquired), then sleep on d. */
static void one_holder(const char *unused)
{
	(void)unused;
	fab_fabric *f = child_open();
	fab_chan *c = child_chan(f, "c", FAB_RECV), *d = child_chan(f, "d", FAB_RECV);
	const void *m;
	size_t n;
	char b[16];
	if (fab_recv_acquire(c, &m, &n, NULL))
		_exit(23);
	fab_recv(d, b, sizeof b, NULL);
	_exit(24);
}

/* "holders" mode: three fabric handles, each holding one message of c. */
static void multi_holder(const char *unused)
{
	(void)unused;
	fab_chan *d = NULL;
	for (int i = 0; i < 3; i++) {
		fab_fabric *f = child_open();
		fab_chan *c = child_chan(f, "c", FAB_RECV);
		const void *m;
		size_t n;
		if (fab_recv_acquire(c, &m, &n, NULL))
			_exit(23);
		if (!d)
			d = child_chan(f, "d", FAB_RECV);
	}
	char b[16];
	fab_recv(d, b, sizeof b, NULL);
	_exit(24);
}

/* "held" mode: would send on d, and sends on c, coming round to the held
 * slot (capacity 1): asleep there with c's len 0. */
static void held_sender(const char *unused)
{
	(void)unused;
	fab_fabric *f = child_open();
	fab_chan *c = child_chan(f, "c", FAB_SEND);
	child_chan(f, "d", FAB_SEND);
	fab_send(c, "m2", 2, NULL);
	_exit(25);
}

/* "reserved" mode: reserves on c (a slot claimed, tail moved, nothing
 * readable), then sleeps receiving on d. */
static void reserving(const char *unused)
{
	(void)unused;
	fab_fabric *f = child_open();
	fab_chan *c = child_chan(f, "c", FAB_SEND), *d = child_chan(f, "d", FAB_RECV);
	void *slot;
	char b[64];
	if (fab_send_reserve(c, 2, &slot, NULL))
		_exit(26);
	fab_recv(d, b, sizeof b, NULL);
	_exit(27);
}

/* "reserved" mode: would send on d, receives on c (len 1, nothing to take). */
static void reserved_receiver(const char *unused)
{
	(void)unused;
	fab_fabric *f = child_open();
	fab_chan *c = child_chan(f, "c", FAB_RECV);
	child_chan(f, "d", FAB_SEND);
	char b[64];
	fab_recv(c, b, sizeof b, NULL);
	_exit(28);
}

/* "skiphead" mode: receives on c (and on d), asleep on c. */
static void skip_receiver(const char *unused)
{
	(void)unused;
	fab_fabric *f = child_open();
	fab_chan *c = child_chan(f, "c", FAB_RECV);
	child_chan(f, "d", FAB_RECV);
	char b[64];
	fab_recv(c, b, sizeof b, NULL);
	_exit(29);
}

/* "skiphead" mode: claims position 0 of c (a reservation), then stops
 * itself to be killed there. */
static void skip_claimer(const char *unused)
{
	(void)unused;
	fab_chan *c = child_chan(child_open(), "c", FAB_SEND);
	void *slot;
	if (fab_send_reserve(c, 2, &slot, NULL))
		_exit(30);
	raise(SIGSTOP);
	_exit(31);
}

/* "skiphead" mode: sends one message on c (behind the skipped position),
 * then fills d and sleeps there. */
static void skip_sender(const char *unused)
{
	(void)unused;
	fab_fabric *f = child_open();
	fab_chan *c = child_chan(f, "c", FAB_SEND), *d = child_chan(f, "d", FAB_SEND);
	if (fab_send(c, "hi", 2, NULL))
		_exit(32);
	for (;;)
		if (fab_send(d, "x", 1, NULL))
			_exit(33);
}

static void idle_receiver(const char *ch)
{
	child_chan(child_open(), ch, FAB_RECV);
	for (;;)
		pause();
}

/* "leader" mode: a thread sleeps receiving on CH while the main thread
 * has left (pthread_exit): /proc shows the thread-group leader as a
 * zombie, the process lives on in its other thread. */
static void *leader_thread(void *arg)
{
	blocked_receiver(arg);
	return NULL;
}

static void leader_exits(const char *ch)
{
	pthread_t t;
	if (pthread_create(&t, NULL, leader_thread, (void *)ch))
		_exit(30);
	pthread_exit(NULL);
}

static void idle_attached(const char *ch)
{
	child_chan(child_open(), ch, FAB_SEND | FAB_RECV);
	for (;;)
		pause();
}

/* ---- parent ----------------------------------------------------------- */

static void mk(fab_fabric *f, const char *name, uint32_t kind, uint32_t cap, uint32_t msz,
	       uint32_t delivery, const char *const *msgs)
{
	fab_chan_opts o = {
	    .size = sizeof o, .capacity = cap, .msg_size = msz, .kind = kind, .delivery = delivery};
	fab_chan *c;
	int rc = fab_chan_create(f, name, &o, &c);
	if (rc)
		die(name, rc);
	for (; msgs && *msgs; msgs++)
		if ((rc = fab_send(c, *msgs, strlen(*msgs), NULL)))
			die("send", rc);
	fab_chan_release(c);
}

/* Until `want` live processes of the fabric have a wait record set. */
static void wait_sleepers(uint32_t want)
{
	for (;;) {
		fi_fabric *f;
		if (fi_open(fabric, &f) == 0) {
			uint32_t n = 0;
			if (fi_snapshot(f) == 0)
				for (uint32_t i = 0; i < f->nprocs; i++)
					n += f->procs[i].live && f->procs[i].wait != 0;
			fi_close(f);
			if (n >= want)
				return;
		}
		for (int i = 0; i < nkids; i++) {
			int st;
			if (waitpid(kids[i], &st, WNOHANG) == kids[i]) {
				fprintf(stderr, "fixture: child %d exited early (status %d)\n",
					(int)kids[i], st);
				kids[i] = kids[--nkids];
				teardown();
				exit(1);
			}
		}
		nap();
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr,
			"usage: fixture basic|deadlock|deadlock2|nodead|leader|stopped|skiphead|held acq|alo|reserved|ring3|leave|leave2|many|handles|holders FABRIC [N [M]]\n");
		return 2;
	}
	const char *mode = argv[1];
	fabric = argv[2];
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sig;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	alarm(600);
	fab_fabric_destroy(fabric);
	fab_fabric *f;
	int rc = fab_fabric_open(fabric, FAB_CREATE, &f);
	if (rc)
		die("fabric", rc);
	if (!strcmp(mode, "basic")) {
		const char *two[] = {"m0", "m1", NULL};
		mk(f, "full", FAB_MPMC, 2, 64, 0, two);
		mk(f, "empty", FAB_MPMC, 4, 64, 0, NULL);
		const char *txt[] = {"hello", "world", "\x01\x02\xff", NULL};
		mk(f, "text", FAB_SPSC, 8, 32, 0, txt);
		const char *alo[] = {"a1", "a2", NULL};
		mk(f, "alo", FAB_MPMC, 4, 64, FAB_AT_LEAST_ONCE, alo);
		mk(f, "rt", FAB_MPMC, 64, 64, 0, NULL);
		mk(f, "stagein", FAB_MPMC, 4, 64, 0, NULL);
		mk(f, "held", FAB_SPSC, 4, 64, 0, NULL);
		fab_chan_opts to = {.size = sizeof to, .capacity = 8, .msg_size = 64};
		fab_topic *t;
		if ((rc = fab_topic_create(f, "news", &to, &t)))
			die("topic", rc);
		fab_topic_release(t);
		printf("sender=%d\n", (int)spawn(blocked_sender, "full"));
		printf("receiver=%d\n", (int)spawn(blocked_receiver, "empty"));
		printf("stage=%d\n", (int)spawn(stage_worker, "stagein"));
		printf("subscriber=%d\n", (int)spawn(subscriber, "news"));
		printf("holder=%d\n", (int)spawn(idle_receiver, "held"));
		wait_sleepers(4);
		/* After the sleepers: the lease holder never sleeps. */
		printf("leaser=%d\n", (int)spawn(lease_holder, "alo"));
		for (;;) {
			fi_chan c = {0};
			fi_chan_read(fabric, "alo", FAB_OBJ_CHAN, &c);
			uint64_t got = c.received;
			fi_chan_free(&c);
			if (got >= 1)
				break;
			nap();
		}
	} else if (!strcmp(mode, "deadlock") || !strcmp(mode, "nodead") ||
		   !strcmp(mode, "deadlock2")) {
		/* deadlock2: b also has a second fabric handle receiving on d1 */
		mk(f, "d1", FAB_MPMC, 1, 16, 0, NULL);
		mk(f, "d2", FAB_MPMC, 1, 16, 0, NULL);
		if (!strcmp(mode, "nodead"))
			printf("c=%d\n", (int)spawn(idle_receiver, "d1"));
		printf("a=%d\n", (int)spawn(dl_child, "a:d1,d2"));
		printf("b=%d\n", (int)spawn(dl_child, strcmp(mode, "deadlock2") ? "b:d2,d1" : "b:d2,d1+"));
		wait_sleepers(2);
	} else if (!strcmp(mode, "leader")) {
		mk(f, "e1", FAB_MPMC, 2, 16, 0, NULL);
		printf("l=%d\n", (int)spawn(leader_exits, "e1"));
		wait_sleepers(1);
	} else if (!strcmp(mode, "stopped")) {
		/* A receiver asleep on s1, then stopped (SIGSTOP) before a
		 * sender fills s1 and sleeps: the receiver's wait record still
		 * says "receives on s1", but s1 is full, so it waits for
		 * nobody (it would take a message at once if continued). */
		mk(f, "s1", FAB_MPMC, 2, 16, 0, NULL);
		pid_t r = spawn(blocked_receiver, "s1");
		printf("r=%d\n", (int)r);
		wait_sleepers(1);
		kill(r, SIGSTOP);
		printf("s=%d\n", (int)spawn(blocked_sender, "s1"));
		wait_sleepers(2);
	} else if ((!strcmp(mode, "held") && argc == 4) || !strcmp(mode, "reserved")) {
		/* Real deadlocks that the channel's len does not show (mpmc):
		 * held: c's only slot is held (acquired, or leased) by H,
		 * which sleeps receiving on d; S sleeps sending on c, and is
		 * d's sender.  reserved: P holds a reservation on c and sleeps
		 * receiving on d; Q sleeps receiving on c (len 1), and is d's
		 * sender. */
		if (!strcmp(mode, "held")) {
			const char *one[] = {"m1", NULL};
			mk(f, "c", FAB_MPMC, 1, 16, !strcmp(argv[3], "alo") ? FAB_AT_LEAST_ONCE : 0,
			   one);
			mk(f, "d", FAB_MPMC, 1, 16, 0, NULL);
			printf("h=%d\n", (int)spawn(held_holder, argv[3]));
			wait_sleepers(1);
			printf("s=%d\n", (int)spawn(held_sender, NULL));
		} else {
			mk(f, "c", FAB_MPMC, 4, 16, 0, NULL);
			mk(f, "d", FAB_MPMC, 1, 16, 0, NULL);
			printf("p=%d\n", (int)spawn(reserving, NULL));
			wait_sleepers(1);
			printf("q=%d\n", (int)spawn(reserved_receiver, NULL));
		}
		wait_sleepers(2);
	} else if (!strcmp(mode, "skiphead")) {
		/* Not a deadlock: B, stopped while asleep receiving on c, would
		 * take the message A sent, behind the position a killed
		 * claimer left (SKIP after recovery) at c's head; A sleeps
		 * sending on d, whose receiver is B.  A check that looks only
		 * at the slot at head claimed one (found by review). */
		mk(f, "c", FAB_MPMC, 4, 16, 0, NULL);
		mk(f, "d", FAB_MPMC, 1, 16, 0, NULL);
		pid_t b = spawn(skip_receiver, NULL);
		printf("b=%d\n", (int)b);
		wait_sleepers(1);
		kill(b, SIGSTOP);
		pid_t k = spawn(skip_claimer, NULL);
		int st;
		if (waitpid(k, &st, WUNTRACED) != k || !WIFSTOPPED(st))
			die("claimer", FAB_ESYS);
		kill(k, SIGKILL);
		waitpid(k, &st, 0);
		for (int i = 0; i < nkids; i++)
			if (kids[i] == k)
				kids[i] = kids[--nkids];
		if (fab_fabric_recover(f) < 1)
			die("recover", FAB_ESYS);
		printf("a=%d\n", (int)spawn(skip_sender, NULL));
		wait_sleepers(2);
	} else if (!strcmp(mode, "ring3")) {
		mk(f, "d1", FAB_MPMC, 1, 16, 0, NULL);
		mk(f, "d2", FAB_MPMC, 1, 16, 0, NULL);
		mk(f, "d3", FAB_MPMC, 1, 16, 0, NULL);
		printf("a=%d\n", (int)spawn(dl_child, "a:d1,d3"));
		printf("b=%d\n", (int)spawn(dl_child, "b:d2,d1"));
		printf("c=%d\n", (int)spawn(dl_child, "c:d3,d2"));
		printf("w=%d\n", (int)spawn(blocked_sender, "d1"));
		wait_sleepers(4);
	} else if (!strcmp(mode, "leave") || !strcmp(mode, "leave2")) {
		const char *one[] = {"m1", NULL};
		mk(f, "c1", FAB_MPMC, 4, 64, 0, one);
		if (!strcmp(mode, "leave2")) {
			const char *two[] = {"m2", NULL};
			mk(f, "c2", FAB_SPSC, 4, 64, 0, two);
		}
		fab_fabric_close(f);
		puts("ready");
		return 0;
	} else if (!strcmp(mode, "holders") && argc == 4) {
		int n = atoi(argv[3]);
		if (n < 1 || n > 200) {
			fprintf(stderr, "fixture: holders N: 1 <= N <= 200\n");
			return 2;
		}
		mk(f, "c", FAB_MPMC, 256, 16, 0, NULL);
		mk(f, "d", FAB_MPMC, 1, 16, 0, NULL);
		fab_chan *c;
		if ((rc = fab_chan_open(f, "c", FAB_SEND, &c)))
			die("open c", rc);
		for (int i = 0; i < n + 3; i++)
			if ((rc = fab_send(c, "h", 1, NULL)))
				die("send", rc);
		fab_chan_release(c);
		for (int i = 0; i < n; i++)
			spawn(one_holder, NULL);
		printf("multi=%d\n", (int)spawn(multi_holder, NULL));
		wait_sleepers((uint32_t)n + 1);
	} else if (!strcmp(mode, "handles") && argc == 4) {
		/* N more fabric handles in this one process (kept open). */
		int n = atoi(argv[3]);
		if (n < 1 || n > 100) {
			fprintf(stderr, "fixture: handles N: 1 <= N <= 100\n");
			return 2;
		}
		for (int i = 0; i < n; i++) {
			fab_fabric *g;
			if ((rc = fab_fabric_open(fabric, 0, &g)))
				die("open", rc);
		}
	} else if (!strcmp(mode, "many") && argc == 5) {
		int nch = atoi(argv[3]), np = atoi(argv[4]);
		if (nch < 1 || nch > 1000 || np < 0 || np > 1000) {
			fprintf(stderr, "fixture: many N M: 1 <= N, M <= 1000\n");
			return 2;
		}
		char name[32];
		for (int i = 0; i < nch; i++) {
			snprintf(name, sizeof name, "ch%d", i);
			mk(f, name, FAB_MPMC, 64, 64, 0, NULL);
		}
		static char names[1000][32];
		for (int i = 0; i < np; i++) {
			snprintf(names[i], sizeof names[i], "ch%d", i % nch);
			spawn(idle_attached, names[i]);
		}
		/* Until every child is attached. */
		for (;;) {
			fi_fabric *fi;
			uint32_t live = 0;
			if (fi_open(fabric, &fi) == 0) {
				if (fi_snapshot(fi) == 0)
					for (uint32_t i = 0; i < fi->nprocs; i++)
						live += fi->procs[i].live;
				fi_close(fi);
			}
			if (live >= (uint32_t)np + 1)
				break;
			nap();
		}
	} else {
		fprintf(stderr, "fixture: unknown mode %s\n", mode);
		fab_fabric_close(f);
		fab_fabric_destroy(fabric);
		return 2;
	}
	printf("parent=%d\nready\n", (int)getpid());
	fflush(stdout);
	while (!stop)
		pause();
	teardown();
	fab_fabric_close(f);
	return 0;
}
