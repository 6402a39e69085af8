/*
 * control.c - fabctl's control verbs (status, scale, restart, drain,
 * cancel, limit): one request line to fabd's Unix socket (docs/fabd.md
 * "Control protocol"), one JSON reply line back.  `-o json` passes the
 * reply through; text output is rendered from it with a small JSON reader
 * (fabd's replies are flat objects and arrays of them).  Also the restart
 * counts `fabctl ps` shows when fabd answers.
 */
#include "cli.h"
#include "fabctl.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- a small JSON reader ---------------------------------------------- */

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jv {
	int t;
	double num;
	char *str; /* J_STR; key of an object member in key */
	char *key;
	struct jv *kids; /* J_ARR / J_OBJ */
	size_t n;
} jv;

typedef struct jp {
	const char *p;
	int depth;
} jp;

static void jv_free(jv *v)
{
	for (size_t i = 0; i < v->n; i++)
		jv_free(&v->kids[i]);
	free(v->kids);
	free(v->str);
	free(v->key);
	memset(v, 0, sizeof *v);
}

static void jp_ws(jp *s)
{
	while (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n')
		s->p++;
}

static int jp_hex(char h)
{
	if (h >= '0' && h <= '9')
		return h - '0';
	if (h >= 'a' && h <= 'f')
		return h - 'a' + 10;
	if (h >= 'A' && h <= 'F')
		return h - 'A' + 10;
	return -1;
}

static int jp_str(jp *s, char **out)
{
	if (*s->p != '"')
		return -1;
	s->p++;
	size_t cap = 16, n = 0;
	char *b = malloc(cap);
	if (!b)
		return -1;
	while (*s->p && *s->p != '"') {
		char c = *s->p++;
		if (c == '\\') {
			c = *s->p++;
			switch (c) {
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case 'u': {
				/* Four hex digits; fabd sends \u only for control bytes. */
				unsigned u = 0;
				for (int k = 0; k < 4; k++) {
					int d = jp_hex(*s->p);
					if (d < 0) {
						free(b);
						return -1;
					}
					s->p++;
					u = u * 16 + (unsigned)d;
				}
				c = u < 0x80 ? (char)u : '?';
				break;
			}
			case 0:
				free(b);
				return -1;
			default:
				break;
			}
		}
		if (n + 2 > cap) {
			cap *= 2;
			char *nb = realloc(b, cap);
			if (!nb) {
				free(b);
				return -1;
			}
			b = nb;
		}
		b[n++] = c;
	}
	if (*s->p != '"') {
		free(b);
		return -1;
	}
	s->p++;
	b[n] = 0;
	*out = b;
	return 0;
}

static int jp_val(jp *s, jv *v);

static int jp_list(jp *s, jv *v, char close, bool obj)
{
	s->p++;
	jp_ws(s);
	if (*s->p == close) {
		s->p++;
		return 0;
	}
	for (;;) {
		jv *nk = realloc(v->kids, (v->n + 1) * sizeof *nk);
		if (!nk)
			return -1;
		v->kids = nk;
		jv *k = &v->kids[v->n++];
		memset(k, 0, sizeof *k);
		jp_ws(s);
		if (obj) {
			if (jp_str(s, &k->key))
				return -1;
			jp_ws(s);
			if (*s->p++ != ':')
				return -1;
		}
		if (jp_val(s, k))
			return -1;
		jp_ws(s);
		if (*s->p == ',') {
			s->p++;
			continue;
		}
		if (*s->p == close) {
			s->p++;
			return 0;
		}
		return -1;
	}
}

static int jp_val(jp *s, jv *v)
{
	if (++s->depth > 32)
		return -1;
	jp_ws(s);
	int rc = 0;
	if (*s->p == '{') {
		v->t = J_OBJ;
		rc = jp_list(s, v, '}', true);
	} else if (*s->p == '[') {
		v->t = J_ARR;
		rc = jp_list(s, v, ']', false);
	} else if (*s->p == '"') {
		v->t = J_STR;
		rc = jp_str(s, &v->str);
	} else if (!strncmp(s->p, "true", 4) || !strncmp(s->p, "false", 5)) {
		v->t = J_BOOL;
		v->num = *s->p == 't';
		s->p += *s->p == 't' ? 4 : 5;
	} else if (!strncmp(s->p, "null", 4)) {
		v->t = J_NULL;
		s->p += 4;
	} else {
		char *end;
		v->t = J_NUM;
		v->num = strtod(s->p, &end);
		if (end == s->p)
			rc = -1;
		s->p = end;
	}
	s->depth--;
	return rc;
}

static const jv *jget(const jv *o, const char *key)
{
	if (!o || o->t != J_OBJ)
		return NULL;
	for (size_t i = 0; i < o->n; i++)
		if (o->kids[i].key && !strcmp(o->kids[i].key, key))
			return &o->kids[i];
	return NULL;
}

static const char *jstr(const jv *o, const char *key)
{
	const jv *v = jget(o, key);
	return v && v->t == J_STR ? v->str : NULL;
}

static double jnum(const jv *o, const char *key, double dflt)
{
	const jv *v = jget(o, key);
	return v && v->t == J_NUM ? v->num : dflt;
}

/* ---- the socket ------------------------------------------------------- */

void fabctl_sock_path(const char *fabric, char *out, size_t n)
{
	const char *x = getenv("XDG_RUNTIME_DIR");
	if (x && x[0] == '/')
		snprintf(out, n, "%s/fab/%s.sock", x, fabric);
	else
		snprintf(out, n, "/tmp/fab-%u/%s.sock", (unsigned)geteuid(), fabric);
}

/* Send `req` and read one reply line into *reply (malloc'd).  0, or an
 * exit code with the message printed when loud. */
static int ask(const char *fabric, const char *req, char **reply, bool loud)
{
	*reply = NULL;
	char path[512];
	fabctl_sock_path(fabric, path, sizeof path);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof a.sun_path)
		return loud ? fabctl_fail(FABCTL_EXIT_ERROR, "socket path too long: %s", path)
			    : FABCTL_EXIT_ERROR;
	memcpy(a.sun_path, path, strlen(path) + 1);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return loud ? fabctl_fail(FABCTL_EXIT_ERROR, "socket: %s", strerror(errno))
			    : FABCTL_EXIT_ERROR;
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		int e = errno;
		close(s);
		/* No fabric at all is "not found" (exit 3), as for the
		 * inspection verbs; a fabric nobody serves is exit 6 (found by
		 * an operator trial: both were 6). */
		char ctl[128];
		struct stat sb;
		snprintf(ctl, sizeof ctl, "/dev/shm/fab.%s", fabric);
		bool none = stat(ctl, &sb) < 0 && errno == ENOENT;
		if (!loud)
			return none ? FABCTL_EXIT_NOTFOUND : FABCTL_EXIT_NOBROKER;
		if (none)
			return fabctl_fail(FABCTL_EXIT_NOTFOUND, "no fabric %s (and no fabd serves it)",
					   fabric);
		return fabctl_fail(FABCTL_EXIT_NOBROKER, "no fabd serves fabric %s (%s: %s)",
				   fabric, path, strerror(e));
	}
	size_t rl = strlen(req);
	char *line = malloc(rl + 2);
	if (!line) {
		close(s);
		return FABCTL_EXIT_ERROR;
	}
	memcpy(line, req, rl);
	line[rl] = '\n';
	ssize_t w = send(s, line, rl + 1, MSG_NOSIGNAL);
	free(line);
	if (w != (ssize_t)rl + 1) {
		close(s);
		return loud ? fabctl_fail(FABCTL_EXIT_NOBROKER, "fabd at %s: send: %s", path,
					  strerror(errno))
			    : FABCTL_EXIT_NOBROKER;
	}
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	while (b) {
		/* fabd answers at once; 10 s covers a loaded machine. */
		struct pollfd pf = {s, POLLIN, 0};
		if (poll(&pf, 1, 10000) <= 0)
			break;
		if (n + 1 >= cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb)
				break;
			b = nb;
			cap *= 2;
		}
		ssize_t r = recv(s, b + n, cap - n - 1, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		b[n] = 0;
		char *nl = memchr(b, '\n', n);
		if (nl) {
			*nl = 0;
			close(s);
			*reply = b;
			return 0;
		}
	}
	free(b);
	close(s);
	return loud ? fabctl_fail(FABCTL_EXIT_NOBROKER, "fabd at %s gave no reply", path)
		    : FABCTL_EXIT_NOBROKER;
}

/* ---- restarts for ps -------------------------------------------------- */

static jv restarts_status;
static bool restarts_loaded;

void fabctl_restarts_load(const char *fabric)
{
	if (restarts_loaded)
		jv_free(&restarts_status);
	restarts_loaded = false;
	char *r;
	if (ask(fabric, "status", &r, false))
		return;
	jp s = {r, 0};
	if (jp_val(&s, &restarts_status) == 0)
		restarts_loaded = true;
	else
		jv_free(&restarts_status);
	free(r);
}

long fabctl_restarts(const char *stage, uint32_t replica)
{
	const jv *st = restarts_loaded ? jget(&restarts_status, "stages") : NULL;
	if (!st || st->t != J_ARR)
		return -1;
	for (size_t i = 0; i < st->n; i++) {
		const char *n = jstr(&st->kids[i], "name");
		if (!n || strcmp(n, stage))
			continue;
		/* The replica's own count (found by an operator trial: every
		 * replica showed its stage's total); the stage's when fabd
		 * does not list the replica. */
		const jv *ps = jget(&st->kids[i], "procs");
		if (!ps || ps->t != J_ARR) /* a fabd without per-replica counts */
			return (long)jnum(&st->kids[i], "restarts", -1);
		for (size_t k = 0; k < ps->n; k++)
			if (jnum(&ps->kids[k], "replica", -1) == (double)replica)
				return (long)jnum(&ps->kids[k], "restarts", -1);
		return -1; /* a replica fabd does not list (just reaped, or not its) */
	}
	return -1;
}

/* ---- the verbs -------------------------------------------------------- */

static void help(const char *verb)
{
	if (!strcmp(verb, "status"))
		puts("usage: fabctl [-f FABRIC] [-o json] status\n"
		     "fabd's view: state, stages (target replicas, up, restarts, errors) and\n"
		     "channels.  Exit 6 when no fabd serves the fabric, 3 when there is none.");
	else if (!strcmp(verb, "scale"))
		puts("usage: fabctl [-f FABRIC] scale STAGE N\n"
		     "Ask fabd to run N replicas of STAGE (1..64).  Exit 3 for an unknown\n"
		     "stage, 4 when fabd refuses, 6 when no fabd runs.");
	else if (!strcmp(verb, "restart"))
		puts("usage: fabctl [-f FABRIC] restart STAGE\n"
		     "Ask fabd to restart every running replica of STAGE (SIGTERM, respawn).");
	else if (!strcmp(verb, "drain"))
		puts("usage: fabctl [-f FABRIC] drain\n"
		     "Ask fabd to drain the pipeline (as SIGTERM): sources cancelled, the rest\n"
		     "finishes what is queued, fabd exits.");
	else if (!strcmp(verb, "cancel"))
		puts("usage: fabctl [-f FABRIC] cancel\n"
		     "Ask fabd to drain and cancel the root context at once.");
	else
		puts("usage: fabctl [-f FABRIC] limit LIMITER RATE [BURST]\n"
		     "Ask fabd to set LIMITER to RATE tokens per second (burst BURST).");
}

static void status_text(const jv *r)
{
	const char *fab = jstr(r, "fabric"), *state = jstr(r, "state");
	printf("fabric %s: %s\n", fab ? fab : "?", state ? state : "?");
	const jv *st = jget(r, "stages");
	if (st && st->t == J_ARR) {
		printf("\n%-24s %8s %4s %8s %8s %8s\n", "STAGE", "REPLICAS", "UP", "STOPPING",
		       "RESTARTS", "ERRORS");
		for (size_t i = 0; i < st->n; i++) {
			const char *n = jstr(&st->kids[i], "name");
			/* Replicas scaled away that still run (finishing a job,
			 * or ignoring SIGTERM until the watchdog): they hold
			 * messages and CPU, and UP leaves them out (found by an
			 * operator trial). */
			const jv *pr = jget(&st->kids[i], "procs");
			unsigned stopping = 0;
			for (size_t k = 0; pr && pr->t == J_ARR && k < pr->n; k++) {
				const char *ps = jstr(&pr->kids[k], "state");
				stopping += ps && !strcmp(ps, "stopping");
			}
			printf("%-24s %8.0f %4.0f %8u %8.0f %8.0f\n", n ? n : "?",
			       jnum(&st->kids[i], "replicas", 0), jnum(&st->kids[i], "up", 0), stopping,
			       jnum(&st->kids[i], "restarts", 0), jnum(&st->kids[i], "errors", 0));
		}
	}
	const jv *ch = jget(r, "channels");
	if (ch && ch->t == J_ARR) {
		printf("\n%-24s %10s\n", "CHANNEL", "LEN/CAP");
		for (size_t i = 0; i < ch->n; i++) {
			const jv *c = &ch->kids[i];
			if (c->t != J_OBJ) {
				printf("%-24s %10s\n", "?", "unreadable");
				continue;
			}
			const char *n = jstr(c, "name");
			char lc[40];
			snprintf(lc, sizeof lc, "%.0f/%.0f", jnum(c, "depth", 0),
				 jnum(c, "capacity", 0));
			printf("%-24s %10s\n", n ? n : "?", lc);
		}
	}
}

int fabctl_control(int argc, char **argv)
{
	const char *verb = argv[0];
	const char *args[3] = {NULL, NULL, NULL};
	int na = 0;
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			help(verb);
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r < 0)
			return FABCTL_EXIT_USAGE;
		if (r)
			continue;
		if (na == 3)
			return fabctl_fail(FABCTL_EXIT_USAGE, "%s: too many arguments", verb);
		args[na++] = argv[i];
	}
	int want_min = 0, want_max = 0;
	if (!strcmp(verb, "scale"))
		want_min = want_max = 2;
	else if (!strcmp(verb, "restart"))
		want_min = want_max = 1;
	else if (!strcmp(verb, "limit"))
		want_min = 2, want_max = 3;
	if (na < want_min || na > want_max) {
		fabctl_fail(FABCTL_EXIT_USAGE, "%s: wrong number of arguments", verb);
		help(verb);
		return FABCTL_EXIT_USAGE;
	}
	/* Numbers are checked here, so a typo is a usage error (exit 2), not
	 * a refusal by fabd (found by an operator trial): scale's N a whole
	 * number, limit's RATE and BURST non-negative numbers.  The ranges
	 * are fabd's to judge. */
	for (int i = 1; i < na; i++) {
		const char *a = args[i];
		char *end = NULL;
		bool good = *a != '\0' && *a != '-' && *a != '+';
		/* scale's N and limit's BURST are whole numbers; RATE any
		 * finite non-negative number (fabd judges the ranges). */
		bool whole = !strcmp(verb, "scale") || i == 2;
		if (good && whole) {
			good = strspn(a, "0123456789") == strlen(a);
		} else if (good) {
			double d = strtod(a, &end);
			good = end && *end == '\0' && isfinite(d) && d >= 0;
		}
		if (!good)
			return fabctl_fail(FABCTL_EXIT_USAGE, "%s: '%s' is not a %s", verb, a,
					   whole ? "whole number" : "non-negative number");
	}
	/* Words must not carry blanks or newlines into the line protocol. */
	char req[1024];
	/* (not snprintf "%s": GCC 12 with -O2 and the sanitizers thinks verb
	 * may be NULL there and -Werror stops the build; found by a trial) */
	size_t l = strlen(verb);
	if (l >= sizeof req)
		return fabctl_fail(FABCTL_EXIT_USAGE, "bad verb");
	memcpy(req, verb, l + 1);
	for (int i = 0; i < na; i++) {
		if (!*args[i] || strpbrk(args[i], " \t\r\n") || strlen(args[i]) > 200)
			return fabctl_fail(FABCTL_EXIT_USAGE, "%s: bad argument '%s'", verb,
					   args[i]);
		l += (size_t)snprintf(req + l, sizeof req - l, " %s", args[i]);
	}
	char name[FI_NAME];
	int rc = fabctl_resolve(NULL, name);
	if (rc)
		return rc;
	char *reply;
	if ((rc = ask(name, req, &reply, true)))
		return rc;
	jv r;
	memset(&r, 0, sizeof r);
	jp s = {reply, 0};
	if (jp_val(&s, &r) || r.t != J_OBJ) {
		jv_free(&r);
		rc = fabctl_fail(FABCTL_EXIT_ERROR, "fabd sent a reply fabctl cannot read: %.200s",
				 reply);
		free(reply);
		return rc;
	}
	const jv *ok = jget(&r, "ok");
	bool good = ok && ok->t == J_BOOL && ok->num != 0;
	const char *err = jstr(&r, "error");
	if (!good) {
		rc = err && strstr(err, "no such") ? FABCTL_EXIT_NOTFOUND : FABCTL_EXIT_REFUSED;
		if (fabctl_o.json)
			printf("%s\n", reply);
		fabctl_fail(rc, "fabd: %s", err ? err : reply);
	} else if (fabctl_o.json) {
		printf("%s\n", reply);
	} else if (!strcmp(verb, "status")) {
		status_text(&r);
	} else if (!strcmp(verb, "scale")) {
		printf("stage %s: %.0f replicas\n", jstr(&r, "stage") ? jstr(&r, "stage") : args[0],
		       jnum(&r, "replicas", 0));
	} else if (!strcmp(verb, "restart")) {
		printf("stage %s: restarting\n", args[0]);
	} else if (!strcmp(verb, "limit")) {
		printf("limiter %s: rate %g/s burst %.0f\n", args[0], jnum(&r, "rate", 0),
		       jnum(&r, "burst", 0));
	} else {
		const char *st = jstr(&r, "state");
		printf("fabric %s: %s\n", name, st ? st : "ok");
	}
	jv_free(&r);
	free(reply);
	return rc;
}
