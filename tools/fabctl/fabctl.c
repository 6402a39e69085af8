/*
 * fabctl.c - fabctl's entry: global options, verb dispatch, and the helpers
 * every verb shares (fabric resolution, exit codes, JSON strings, the text
 * of a wait record).  docs/fabctl.md and docs/man/fabctl.1 describe the
 * command line; fabctl.h lists the exit codes.
 */
#include "cli.h"
#include "fabctl.h"

#include "layout.h"

#include <fab/fab.h>

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

fabctl_opts fabctl_o;

int fabctl_fail(int code, const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("fabctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

int fabctl_exit_for(int fabrc)
{
	switch (fabrc) {
	case 0:
		return FABCTL_EXIT_OK;
	case FAB_ENOENT:
		return FABCTL_EXIT_NOTFOUND;
	case FAB_ECORRUPT:
	case FAB_EVERSION:
		return FABCTL_EXIT_CORRUPT;
	case FAB_EINVAL:
		return FABCTL_EXIT_USAGE;
	case FAB_EPERM:
		/* A segment whose mode does not let us read (or write) it: not
		 * corrupt, and not a failure of fabctl either. */
		return FABCTL_EXIT_NOPRIV;
	default:
		return FABCTL_EXIT_ERROR;
	}
}

int fabctl_exit_worse(int a, int b)
{
	/* A corrupt segment before a forbidden one before any other error. */
	if (a == FABCTL_EXIT_CORRUPT || b == FABCTL_EXIT_CORRUPT)
		return FABCTL_EXIT_CORRUPT;
	if (a == FABCTL_EXIT_NOPRIV || b == FABCTL_EXIT_NOPRIV)
		return FABCTL_EXIT_NOPRIV;
	return a ? a : b;
}

int fabctl_exit_merge(int rc, int fabrc)
{
	/* One object of a listing failed with fabrc: the listing's status is
	 * the gravest so far. */
	int e = fabctl_exit_for(fabrc);
	return fabctl_exit_worse(rc, e ? e : FABCTL_EXIT_ERROR);
}

bool fabctl_is_help(const char *a)
{
	return !strcmp(a, "--help") || !strcmp(a, "-h");
}

int fabctl_common_opt(int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	if (!strcmp(a, "-f") || !strcmp(a, "--fabric")) {
		if (*i + 1 >= argc) {
			fabctl_fail(FABCTL_EXIT_USAGE, "%s needs a fabric name", a);
			return -1;
		}
		fabctl_o.fabric = argv[++*i];
		return 1;
	}
	if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
		if (*i + 1 >= argc) {
			fabctl_fail(FABCTL_EXIT_USAGE, "%s needs json or text", a);
			return -1;
		}
		const char *v = argv[++*i];
		if (!strcmp(v, "json"))
			fabctl_o.json = true;
		else if (!strcmp(v, "text"))
			fabctl_o.json = false;
		else {
			fabctl_fail(FABCTL_EXIT_USAGE, "-o %s: want json or text", v);
			return -1;
		}
		return 1;
	}
	return 0;
}

int fabctl_resolve(const char *explicit_name, char out[FI_NAME])
{
	const char *n = explicit_name ? explicit_name : fabctl_o.fabric;
	if (!n) {
		const char *e = getenv("FAB_FABRIC");
		if (e && *e)
			n = e;
	}
	if (n) {
		if (!fi_name_ok(n))
			return fabctl_fail(FABCTL_EXIT_USAGE,
					   "bad fabric name '%s' (want [A-Za-z0-9_-]{1,48})", n);
		snprintf(out, FI_NAME, "%s", n);
		return 0;
	}
	char(*names)[FI_NAME];
	int c = fi_list_fabrics(&names);
	if (c < 0)
		return fabctl_fail(FABCTL_EXIT_ERROR, "%s", fi_errmsg());
	int rc = 0;
	if (c == 0)
		rc = fabctl_fail(FABCTL_EXIT_NOTFOUND, "no fabric in /dev/shm");
	else if (c > 1)
		rc =
		    fabctl_fail(FABCTL_EXIT_USAGE,
				"%d fabrics in /dev/shm (%s, %s%s): name one with -f or FAB_FABRIC",
				c, names[0], names[1], c > 2 ? ", ..." : "");
	else
		snprintf(out, FI_NAME, "%s", names[0]);
	free(names);
	return rc;
}

int fabctl_snapshot(const char *name, fi_fabric **f)
{
	int rc = fi_open(name, f);
	if (rc == 0 && (rc = fi_snapshot(*f))) {
		fi_close(*f);
		*f = NULL;
	}
	if (rc)
		return fabctl_fail(fabctl_exit_for(rc), "%s", fi_errmsg());
	return 0;
}

void fabctl_note_unreadable(const fi_fabric *f, const char *what)
{
	uint32_t n = 0;
	const char *first = NULL;
	for (uint32_t i = 0; i < f->nchans; i++)
		if (f->chans[i].err) {
			if (!n++)
				first = f->chans[i].name;
		}
	if (n)
		fprintf(stderr,
			"fabctl: %u channel%s or topic%s could not be read (%s%s; fabctl chan says "
			"why): %s %s out\n",
			n, n == 1 ? "" : "s", n == 1 ? "" : "s", first, n > 1 ? ", ..." : "", what,
			n == 1 ? "it" : "them");
}

int64_t fabctl_parse_duration(const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || !(v >= 0 && v <= 1e7)) /* NaN too */
		return -1;
	double mul = 1e9;
	if (!strcmp(end, "ms"))
		mul = 1e6;
	else if (!strcmp(end, "us"))
		mul = 1e3;
	else if (!strcmp(end, "ns"))
		mul = 1;
	else if (!strcmp(end, "m"))
		mul = 60e9;
	else if (*end && strcmp(end, "s"))
		return -1;
	return (int64_t)(v * mul);
}

long fabctl_parse_count(const char *s, long min)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < min)
		return -1;
	return v;
}

void js_str(FILE *o, const char *s)
{
	js_bytes(o, (const uint8_t *)s, strlen(s));
}

void js_bytes(FILE *o, const uint8_t *p, size_t n)
{
	fputc('"', o);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c == '"' || c == '\\')
			fprintf(o, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", o);
		else if (c == '\t')
			fputs("\\t", o);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(o, "\\u%04x", c); /* bytes as code points: lossless, valid JSON */
		else
			fputc(c, o);
	}
	fputc('"', o);
}

void fabctl_stage_label(const fi_proc *p, char *out, size_t n)
{
	if (p->stage && p->stage_name[0])
		snprintf(out, n, "%s.%u", p->stage_name, p->replica);
	else
		snprintf(out, n, "%s", "");
}

const char *fabctl_wait_op(uint64_t w)
{
	switch (FAB_WAIT_KIND(w)) {
	case FAB_WAIT_CHAN:
		return FAB_WAIT_OP(w) == FAB_WAIT_SEND ? "send" : "recv";
	case FAB_WAIT_SELECT:
		return "select";
	case FAB_WAIT_TOPIC:
		return FAB_WAIT_OP(w) == FAB_WAIT_SEND ? "publish" : "recv";
	case FAB_WAIT_CTX:
		return "ctx";
	case FAB_WAIT_LIMITER:
		return "limiter";
	default:
		return "?";
	}
}

const char *fabctl_wait_obj(const fi_fabric *f, uint64_t w)
{
	uint32_t idx = FAB_WAIT_IDX(w);
	switch (FAB_WAIT_KIND(w)) {
	case FAB_WAIT_CHAN:
	case FAB_WAIT_SELECT:
	case FAB_WAIT_TOPIC: {
		const fi_chan *c = fi_chan_by_reg(f, idx);
		return c ? c->name : "?";
	}
	case FAB_WAIT_CTX:
		if (idx == UINT32_MAX)
			return "(local)";
		return idx < FAB_MAX_CTXS && f->ctx_names[idx][0] ? f->ctx_names[idx] : "?";
	case FAB_WAIT_LIMITER:
		return idx < FAB_MAX_LIMS && f->lim_names[idx][0] ? f->lim_names[idx] : "?";
	default:
		return "?";
	}
}

void fabctl_wait_text(const fi_fabric *f, uint64_t w, char *out, size_t n)
{
	if (FAB_WAIT_KIND(w) == FAB_WAIT_SELECT)
		snprintf(out, n, "select %u cases (%s %s)", FAB_WAIT_CASES(w),
			 FAB_WAIT_OP(w) == FAB_WAIT_SEND ? "send" : "recv", fabctl_wait_obj(f, w));
	else
		snprintf(out, n, "%s %s", fabctl_wait_op(w), fabctl_wait_obj(f, w));
}

static void usage(FILE *o)
{
	fputs(
	    "usage: fabctl [-f FABRIC] [-o json|text] VERB [ARGS]\n"
	    "\n"
	    "Inspect a fabric from its shared memory (no broker needed), and steer fabd.\n"
	    "FABRIC: -f, else $FAB_FABRIC, else the only fabric in /dev/shm.\n"
	    "\n"
	    "  ls                      fabrics on this machine\n"
	    "  chan [FABRIC]           channels and topics: depth, fill, rates, attached, blocked\n"
	    "  ps                      live processes: stage.replica, pid, uptime, blocked on\n"
	    "  top [-n N]              chan and ps, refreshed every second (q quits)\n"
	    "  peek CH [-n N]          the next N messages queued on CH, not consumed\n"
	    "                          (a topic: the newest N still in its ring)\n"
	    "  send CH                 send (a topic: publish) each line of stdin\n"
	    "  recv CH [-n N] [--timeout D] [--block]\n"
	    "                          print each message received (a topic: subscribe)\n"
	    "  blocked                 sleeping processes and wait-for cycles (deadlocks)\n"
	    "  rm FABRIC [--force]     remove a fabric's segments\n"
	    "  status | scale STAGE N | restart STAGE | drain | cancel | limit LIMITER RATE "
	    "[BURST]\n"
	    "                          ask fabd over its control socket\n"
	    "  trace [--seconds N]     futex sleeps per channel and process (eBPF)\n"
	    "\n"
	    "`fabctl VERB --help` describes a verb.  Exit codes: 0 ok, 1 error, 2 usage,\n"
	    "3 not found, 4 refused, 5 corrupt segment, 6 no fabd, 7 not permitted,\n"
	    "8 deadlock found, 9 trace unsupported, 10 recv timed out.\n",
	    o);
}

#ifndef FABCTL_HAVE_TRACE
int fabctl_trace_main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (fabctl_is_help(argv[i])) {
			puts("usage: fabctl trace [--seconds N]\n"
			     "This fabctl was built without eBPF support (needs clang, bpftool, "
			     "libbpf-dev).");
			return 0;
		}
	return fabctl_fail(
	    FABCTL_EXIT_UNSUPPORTED,
	    "fabctl was built without eBPF support (needs clang, bpftool, libbpf-dev)");
}
#endif

typedef struct verb {
	const char *name;
	int (*fn)(int, char **);
} verb;

static const verb verbs[] = {
    {"ls", fabctl_ls},         {"chan", fabctl_chan},
    {"ps", fabctl_ps},         {"top", fabctl_top},
    {"peek", fabctl_peek},     {"send", fabctl_send},
    {"recv", fabctl_recv},     {"blocked", fabctl_blocked},
    {"rm", fabctl_rm},         {"status", fabctl_control},
    {"scale", fabctl_control}, {"restart", fabctl_control},
    {"drain", fabctl_control}, {"cancel", fabctl_control},
    {"limit", fabctl_control}, {"trace", fabctl_trace_main},
};

int main(int argc, char **argv)
{
	int i = 1;
	while (i < argc && argv[i][0] == '-') {
		if (fabctl_is_help(argv[i])) {
			usage(stdout);
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r < 0)
			return FABCTL_EXIT_USAGE;
		if (r == 0) {
			fabctl_fail(FABCTL_EXIT_USAGE, "unknown option %s", argv[i]);
			usage(stderr);
			return FABCTL_EXIT_USAGE;
		}
		i++;
	}
	if (i >= argc) {
		usage(stderr);
		return FABCTL_EXIT_USAGE;
	}
	for (size_t v = 0; v < sizeof verbs / sizeof verbs[0]; v++)
		if (!strcmp(argv[i], verbs[v].name))
			return verbs[v].fn(argc - i, argv + i);
	fabctl_fail(FABCTL_EXIT_USAGE, "unknown verb '%s'", argv[i]);
	usage(stderr);
	return FABCTL_EXIT_USAGE;
}
