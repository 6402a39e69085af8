/* topology.c - parse and validate a fabd topology file (docs/topology.md).
 *
 * libyaml's document API builds the node graph; every node keeps its start
 * mark, so each error points at the exact key or value it is about.  The
 * walk never stops at the first error: a bad value is reported and the walk
 * goes on with the default in its place, and an entity whose settings are
 * wrong is still declared, so its name resolves and one mistake does not
 * cascade into "dangling reference" errors elsewhere.  Checks that depend on
 * the whole file (references, writers and readers of each channel, the
 * spsc/mpmc decision) run after the walk.  Only a YAML syntax error stops
 * early: libyaml cannot resume after one, so it is reported alone.
 *
 * Nothing here asserts on input.  Out of memory is reported as an error.
 */
#include "topology.h"

#include "layout.h" /* the fabric's table sizes (FAB_MAX_*) */

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

/* ---- diagnostics ---------------------------------------------------------- */

typedef struct ref {
	char name[FAB_NAME_MAX + 1];
	fabd_pos pos;
	int set;   /* the key was present */
	int valid; /* name is a valid fab name */
} ref;

typedef struct chan_aux {
	ref dead_letter;
	fabd_pos kind_pos;
	fabd_pos inflight_pos, maxdel_pos;
	int inflight_set, maxdel_set;
} chan_aux;

typedef struct port_aux {
	ref target;
	int mapping_form; /* {topic: x, policy: y} */
	int policy_set;
	fabd_pos policy_pos;
} port_aux;

typedef struct stage_aux {
	port_aux *ports;  /* parallel to fabd_stage.ports */
	ref *limiters;    /* parallel to fabd_stage.limiters */
} stage_aux;

typedef struct P {
	yaml_document_t *doc;
	fabd_diags *d;
	fabd_topology *t;
	int oom;
	int incomplete;   /* ports unknown somewhere: skip the writer/reader checks */
	chan_aux *caux;   /* parallel to t->channels */
	stage_aux *saux;  /* parallel to t->stages */
	size_t ncaux, nsaux; /* equal to t->nchannels, t->nstages */
	size_t cap_chan, cap_caux, cap_lim, cap_topic, cap_stage, cap_saux;
	ref errors_name;
	size_t walked;    /* mapping and list entries visited, through aliases */
	int overbudget;   /* FABD_WALK_MAX passed (reported once) */
} P;

static fabd_pos pos_of(const yaml_node_t *n)
{
	fabd_pos p = { (uint32_t)n->start_mark.line + 1, (uint32_t)n->start_mark.column + 1 };
	return p;
}

static void diag_add(fabd_diags *d, int *oom, fabd_pos pos, const char *fmt, va_list ap)
{
	if (d->n >= FABD_ERRORS_MAX) {
		d->dropped++;
		return;
	}
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 16;
		fabd_diag *nv = realloc(d->v, nc * sizeof *nv);
		if (!nv) {
			*oom = 1;
			return;
		}
		d->v = nv;
		d->cap = nc;
	}
	va_list ap2;
	va_copy(ap2, ap);
	int len = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	char *msg = len >= 0 ? malloc((size_t)len + 1) : NULL;
	if (!msg) {
		*oom = 1;
		return;
	}
	vsnprintf(msg, (size_t)len + 1, fmt, ap);
	d->v[d->n].pos = pos;
	d->v[d->n].msg = msg;
	d->n++;
}

__attribute__((format(printf, 3, 4))) static void err(P *p, fabd_pos pos, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_add(p->d, &p->oom, pos, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 3, 4))) static void errn(P *p, const yaml_node_t *n, const char *fmt,
						       ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_add(p->d, &p->oom, pos_of(n), fmt, ap);
	va_end(ap);
}

static int diag_cmp(const void *a, const void *b)
{
	const fabd_diag *x = a, *y = b;
	if (x->pos.line != y->pos.line)
		return x->pos.line < y->pos.line ? -1 : 1;
	if (x->pos.col != y->pos.col)
		return x->pos.col < y->pos.col ? -1 : 1;
	return 0; /* equal positions keep discovery order: diags_sort is stable */
}

/* A stable sort by position: insertion sort (the list is short and mostly in
 * order already, since the walk follows the file). */
static void diags_sort(fabd_diags *d)
{
	for (size_t i = 1; i < d->n; i++) {
		fabd_diag x = d->v[i];
		size_t j = i;
		while (j > 0 && diag_cmp(&d->v[j - 1], &x) > 0) {
			d->v[j] = d->v[j - 1];
			j--;
		}
		d->v[j] = x;
	}
}

void fabd_diags_free(fabd_diags *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].msg);
	free(d->v);
	memset(d, 0, sizeof *d);
}

void fabd_diags_print(const fabd_diags *d, const char *file, FILE *f)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->v[i].pos.line)
			fprintf(f, "%s:%u:%u: %s\n", file, d->v[i].pos.line, d->v[i].pos.col,
				d->v[i].msg);
		else
			fprintf(f, "%s: %s\n", file, d->v[i].msg);
	}
	if (d->dropped)
		fprintf(f, "%s: %zu more errors not shown\n", file, d->dropped);
}

/* ---- value syntaxes -------------------------------------------------------- */

static int is_fab_name(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		if (!(isalnum(c) || c == '_' || c == '-') || c > 127)
			return 0;
	}
	return n >= 1 && n <= FAB_NAME_MAX;
}

static int is_env_name(const char *s)
{
	if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (const char *c = s; *c; c++)
		if (!(isalnum((unsigned char)*c) || *c == '_') || (unsigned char)*c > 127)
			return 0;
	return 1;
}

/* Decimal digits only ("0", "42"), no sign, no fraction. */
static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		unsigned dgt = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - dgt) / 10)
			return -1;
		v = v * 10 + dgt;
	}
	*out = v;
	return 0;
}

/* Decimal digits with an optional fraction: "12", "1.5", ".5" is refused.
 * Returns the integer part and the fraction scaled to `unit` exactly, with
 * overflow reported as -1.  *end is left after the number. */
static int parse_scaled(const char **sp, uint64_t unit, uint64_t *out)
{
	const char *s = *sp;
	if (!isdigit((unsigned char)*s))
		return -1;
	uint64_t ip = 0;
	while (isdigit((unsigned char)*s)) {
		unsigned dgt = (unsigned)(*s - '0');
		if (ip > (UINT64_MAX - dgt) / 10)
			return -1;
		ip = ip * 10 + dgt;
		s++;
	}
	uint64_t frac = 0, scale = 1;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		while (isdigit((unsigned char)*s)) {
			if (scale < 1000000000000000000ull) { /* 18 digits are plenty */
				frac = frac * 10 + (uint64_t)(*s - '0');
				scale *= 10;
			}
			s++;
		}
	}
	if (unit && ip > UINT64_MAX / unit)
		return -1;
	uint64_t v = ip * unit;
	/* frac/scale < 1, so frac*unit/scale < unit; compute without overflow
	 * in 128 bits. */
	unsigned __int128 f = (unsigned __int128)frac * unit / scale;
	if (v > UINT64_MAX - (uint64_t)f)
		return -1;
	*out = v + (uint64_t)f;
	*sp = s;
	return 0;
}

static const struct {
	const char *name;
	uint64_t ns;
} dur_units[] = {
	{ "ns", 1ull },          { "us", 1000ull },          { "ms", 1000000ull },
	{ "s", 1000000000ull },  { "m", 60000000000ull },   { "h", 3600000000000ull },
};

/* Match the longest unit at s; returns its length, 0 when none. */
static size_t dur_unit(const char *s, uint64_t *ns)
{
	size_t best = 0;
	for (size_t i = 0; i < sizeof dur_units / sizeof dur_units[0]; i++) {
		size_t l = strlen(dur_units[i].name);
		if (l > best && strncmp(s, dur_units[i].name, l) == 0) {
			best = l;
			*ns = dur_units[i].ns;
		}
	}
	return best;
}

int fabd_parse_duration(const char *s, uint64_t *ns)
{
	/* Go's time.ParseDuration without the sign: "0", or one or more
	 * <decimal><unit> terms ("1m30s", "1.5s", "250ms").  A bare number other
	 * than 0 is refused: "10" could mean seconds or milliseconds. */
	if (strcmp(s, "0") == 0) {
		*ns = 0;
		return 0;
	}
	if (!*s)
		return -1;
	uint64_t total = 0;
	while (*s) {
		/* Find the unit after the number to know how to scale it. */
		const char *u = s;
		while (isdigit((unsigned char)*u) || *u == '.')
			u++;
		uint64_t unit;
		size_t ul = dur_unit(u, &unit);
		if (!ul)
			return -1;
		uint64_t v;
		const char *q = s;
		if (parse_scaled(&q, unit, &v) < 0 || q != u)
			return -1;
		/* Go's limit: an int64 of nanoseconds (about 2562047h); above
		 * it Go refuses, and so do we (found by an operator trial). */
		if (v > (uint64_t)INT64_MAX || total > (uint64_t)INT64_MAX - v)
			return -1;
		total += v;
		s = u + ul;
	}
	*ns = total;
	return 0;
}

int fabd_parse_size(const char *s, uint64_t *bytes)
{
	/* "64", "64B", "4KiB", "1MiB", "1GiB": binary units only, so that
	 * "4KB" (1000 or 1024?) is refused rather than guessed. */
	static const struct {
		const char *name;
		uint64_t mul;
	} units[] = { { "", 1 }, { "B", 1 }, { "KiB", 1ull << 10 }, { "MiB", 1ull << 20 },
		      { "GiB", 1ull << 30 } };
	const char *u = s;
	while (isdigit((unsigned char)*u))
		u++;
	if (u == s)
		return -1;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(u, units[i].name) == 0) {
			uint64_t v;
			const char *q = s;
			if (parse_scaled(&q, units[i].mul, &v) < 0 || q != u)
				return -1;
			*bytes = v;
			return 0;
		}
	}
	return -1;
}

int fabd_parse_rate(const char *s, double *per_s)
{
	/* "200" (per second), "200/s", "12/m", "0.5/s", "5/10s", "1/250ms". */
	const char *q = s;
	if (!isdigit((unsigned char)*q))
		return -1;
	while (isdigit((unsigned char)*q))
		q++;
	if (*q == '.') {
		q++;
		if (!isdigit((unsigned char)*q))
			return -1;
		while (isdigit((unsigned char)*q))
			q++;
	}
	char num[64];
	size_t nl = (size_t)(q - s);
	if (nl >= sizeof num)
		return -1;
	memcpy(num, s, nl);
	num[nl] = 0;
	double n = strtod(num, NULL);
	uint64_t per_ns = 1000000000ull;
	if (*q == '/') {
		q++;
		/* A bare unit means one of it: "/s" = "/1s". */
		uint64_t unit;
		size_t ul = dur_unit(q, &unit);
		if (ul && q[ul] == 0)
			per_ns = unit;
		else if (fabd_parse_duration(q, &per_ns) < 0 || per_ns == 0)
			return -1;
	} else if (*q) {
		return -1;
	}
	double r = n * 1e9 / (double)per_ns;
	if (!isfinite(r) || r < FABD_RATE_MIN || r > FABD_RATE_MAX)
		return -1;
	*per_s = r;
	return 0;
}

static void free_argv(char **argv)
{
	if (!argv)
		return;
	for (char **a = argv; *a; a++)
		free(*a);
	free(argv);
}

int fabd_split_command(const char *s, char ***argvp, size_t *argcp, const char **why)
{
	static const char shell_op[] = "shell operators and expansions ('|&;<>()$`') are not "
				       "supported; quote them, or run [sh, -c, \"...\"]";
	/* POSIX shell word splitting without expansion: blanks separate words,
	 * '...' is literal, "..." is literal except \" \\ \$ \` (an unescaped
	 * $ or ` in it is refused: the shell would expand it), and a
	 * backslash outside quotes escapes the next character.  The shell's
	 * operators are refused rather than passed on as words: a user who
	 * writes "a | b" means a pipeline, and fabd runs no shell; they write
	 * [sh, -c, "a | b"] for one. */
	size_t len = strlen(s);
	char *buf = malloc(len + 1);
	char **argv = calloc(len / 2 + 2, sizeof *argv); /* at most (len+1)/2 words */
	size_t argc = 0;
	*why = NULL;
	if (!buf || !argv) {
		free(buf);
		free(argv);
		*why = "out of memory";
		return -1;
	}
	const char *c = s;
	for (;;) {
		while (*c == ' ' || *c == '\t' || *c == '\n')
			c++;
		if (!*c)
			break;
		size_t bl = 0; /* '' alone is an empty word */
		while (*c && *c != ' ' && *c != '\t' && *c != '\n') {
			if (*c == '\'') {
				c++;
				while (*c && *c != '\'')
					buf[bl++] = *c++;
				if (!*c) {
					*why = "unterminated ' quote";
					goto fail;
				}
				c++;
			} else if (*c == '"') {
				c++;
				while (*c && *c != '"') {
					if (*c == '\\' && c[1] && strchr("\"\\$`", c[1]))
						c++;
					else if (*c == '$' || *c == '`') {
						*why = shell_op; /* the shell expands these in "" */
						goto fail;
					}
					buf[bl++] = *c++;
				}
				if (!*c) {
					*why = "unterminated \" quote";
					goto fail;
				}
				c++;
			} else if (*c == '\\') {
				c++;
				if (!*c) {
					*why = "trailing backslash";
					goto fail;
				}
				buf[bl++] = *c++;
			} else if (strchr("|&;<>()$`", *c)) {
				*why = shell_op;
				goto fail;
			} else {
				buf[bl++] = *c++;
			}
		}
		char *w = malloc(bl + 1);
		if (!w) {
			*why = "out of memory";
			goto fail;
		}
		memcpy(w, buf, bl);
		w[bl] = 0;
		argv[argc++] = w;
	}
	free(buf);
	if (argc == 0) {
		free(argv);
		*why = "empty command";
		return -1;
	}
	argv[argc] = NULL;
	*argvp = argv;
	*argcp = argc;
	return 0;
fail:
	free(buf);
	argv[argc] = NULL;
	free_argv(argv);
	return -1;
}

/* ---- node helpers ---------------------------------------------------------- */

static yaml_node_t *node(P *p, int id)
{
	return yaml_document_get_node(p->doc, id);
}

static int is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	const char *s = (const char *)n->data.scalar.value;
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* A scalar with a NUL byte inside ("a\0b" in double quotes): every string
 * here is used up to its first NUL, so "shop\0x" would silently be "shop". */
static int has_nul(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && strlen(scalar(n)) != n->data.scalar.length;
}

/* "a mapping", "a sequence", "'x'" or "nothing": what was found, for messages. */
static const char *what(const yaml_node_t *n, char *buf, size_t cap)
{
	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (n->type == YAML_SEQUENCE_NODE)
		return "a sequence";
	if (is_null(n))
		return "nothing";
	const char *s = scalar(n);
	if (strlen(s) > 60)
		snprintf(buf, cap, "'%.57s...'", s);
	else
		snprintf(buf, cap, "'%s'", s);
	return buf;
}

/* A scalar with a value, or an error "path: expected <expect>, got ...". */
static const char *want_scalar(P *p, const yaml_node_t *n, const char *path, const char *expect)
{
	char b[80];
	if (has_nul(n)) {
		errn(p, n, "%s: expected %s, got %s with a NUL byte in it", path, expect,
		     what(n, b, sizeof b));
		return NULL;
	}
	if (n->type == YAML_SCALAR_NODE && !is_null(n))
		return scalar(n);
	errn(p, n, "%s: expected %s, got %s", path, expect, what(n, b, sizeof b));
	return NULL;
}

static unsigned edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 32 || lb > 32)
		return 99;
	unsigned row[33];
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned diag = row[0];
		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned up = row[j];
			unsigned best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* Account for the entries of mapping or sequence n before walking them.
 * One mapping may hold at most `max` (duplicate checks compare each key with
 * the earlier ones), and the file at most FABD_WALK_MAX counted each time a
 * node is walked: an anchor aliased by every stage is walked once per stage,
 * and without a budget a small file (a "billion laughs") costs hours of CPU
 * and gigabytes of copies.  Returns 0, or -1 with an error reported: skip n.
 */
static int budget(P *p, const yaml_node_t *n, const char *path, size_t max)
{
	size_t k = 0;
	if (n->type == YAML_MAPPING_NODE)
		k = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	else if (n->type == YAML_SEQUENCE_NODE)
		k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (k > max) {
		errn(p, n, "%s: %zu entries, more than the %zu allowed", path, k, max);
		p->incomplete = 1;
		return -1;
	}
	if (p->walked + k > FABD_WALK_MAX) {
		if (!p->overbudget)
			errn(p, n, "%s: the file holds more than %u entries once its aliases are "
			     "expanded; the rest is not read", path, FABD_WALK_MAX);
		p->overbudget = 1;
		p->incomplete = 1;
		return -1;
	}
	p->walked += k;
	return 0;
}

/* Report duplicate keys of a mapping: the second one is an error. Returns 1
 * when the pair at `pair` repeats an earlier key. */
static int dup_key(P *p, yaml_node_t *map, yaml_node_pair_t *pair, const char *path,
		   const char *noun)
{
	yaml_node_t *k = node(p, pair->key);
	for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pair; q++) {
		yaml_node_t *k0 = node(p, q->key);
		if (k0->type == YAML_SCALAR_NODE && !strcmp(scalar(k0), scalar(k))) {
			errn(p, k, "%s: duplicate %s '%s' (first at %u:%u)", path, noun, scalar(k),
			     pos_of(k0).line, pos_of(k0).col);
			return 1;
		}
	}
	return 0;
}

/* Check that n is a mapping with only the given keys (NULL-terminated list)
 * and fill vals[i] with the value of keys[i] (NULL when absent).  Reports
 * wrong type, non-scalar keys, unknown keys (with a suggestion) and
 * duplicates.  A null node counts as an empty mapping.  Returns 0 when n is
 * a mapping (even if some keys were bad), -1 when it is not. */
static int fields(P *p, yaml_node_t *n, const char *path, const char *const keys[],
		  yaml_node_t *vals[], yaml_node_t *knodes[])
{
	size_t nk = 0;
	while (keys[nk])
		nk++;
	for (size_t i = 0; i < nk; i++) {
		vals[i] = NULL;
		if (knodes)
			knodes[i] = NULL;
	}
	if (is_null(n))
		return 0;
	if (n->type != YAML_MAPPING_NODE) {
		char b[80];
		errn(p, n, "%s: expected a mapping, got %s", path, what(n, b, sizeof b));
		return -1;
	}
	if (budget(p, n, path, FABD_MAP_MAX) < 0)
		return -1;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = node(p, pr->key), *v = node(p, pr->value);
		if (k->type != YAML_SCALAR_NODE) {
			errn(p, k, "%s: keys must be plain names, got %s", path,
			     k->type == YAML_MAPPING_NODE ? "a mapping" : "a sequence");
			continue;
		}
		if (dup_key(p, n, pr, path, "key"))
			continue;
		size_t i;
		for (i = 0; i < nk; i++)
			if (!strcmp(keys[i], scalar(k)))
				break;
		if (i < nk) {
			vals[i] = v;
			if (knodes)
				knodes[i] = k;
			continue;
		}
		const char *best = NULL;
		unsigned bd = 3;
		for (size_t j = 0; j < nk; j++) {
			unsigned dd = edit_distance(scalar(k), keys[j]);
			if (dd < bd) {
				bd = dd;
				best = keys[j];
			}
		}
		if (best)
			errn(p, k, "%s: unknown key '%s' (did you mean '%s'?)", path, scalar(k), best);
		else
			errn(p, k, "%s: unknown key '%s'", path, scalar(k));
	}
	return 0;
}

static int get_uint(P *p, yaml_node_t *n, const char *path, uint64_t lo, uint64_t hi,
		    uint32_t *out)
{
	char expect[96];
	snprintf(expect, sizeof expect, "an integer from %llu to %llu", (unsigned long long)lo,
		 (unsigned long long)hi);
	const char *s = want_scalar(p, n, path, expect);
	if (!s)
		return -1;
	uint64_t v = 0;
	if (parse_u64(s, &v) < 0 || v < lo || v > hi) {
		char b[80];
		errn(p, n, "%s: expected %s, got %s", path, expect, what(n, b, sizeof b));
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

static int get_size(P *p, yaml_node_t *n, const char *path, uint64_t hi, uint32_t *out)
{
	const char *s = want_scalar(p, n, path, "a size like 64, 4KiB or 1MiB");
	if (!s)
		return -1;
	uint64_t v;
	char b[80];
	if (fabd_parse_size(s, &v) < 0) {
		errn(p, n, "%s: expected a size like 64, 4KiB or 1MiB, got %s", path,
		     what(n, b, sizeof b));
		return -1;
	}
	if (v > hi) {
		errn(p, n, "%s: %s is more than the limit of %llu", path, what(n, b, sizeof b),
		     (unsigned long long)hi);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

static int get_duration(P *p, yaml_node_t *n, const char *path, uint64_t *out)
{
	const char *s = want_scalar(p, n, path, "a duration like 250ms, 10s or 2m");
	if (!s)
		return -1;
	if (fabd_parse_duration(s, out) < 0) {
		char b[80];
		errn(p, n, "%s: expected a duration like 250ms, 10s or 2m, got %s", path,
		     what(n, b, sizeof b));
		return -1;
	}
	return 0;
}

/* names: NULL-terminated; returns the index or -1. */
static int get_enum(P *p, yaml_node_t *n, const char *path, const char *const names[])
{
	char expect[128] = "one of ";
	for (size_t i = 0; names[i]; i++) {
		if (i)
			strncat(expect, names[i + 1] ? ", " : " or ", sizeof expect - strlen(expect) - 1);
		strncat(expect, names[i], sizeof expect - strlen(expect) - 1);
	}
	const char *s = want_scalar(p, n, path, expect);
	if (!s)
		return -1;
	for (int i = 0; names[i]; i++)
		if (!strcmp(names[i], s))
			return i;
	char b[80];
	errn(p, n, "%s: expected %s, got %s", path, expect, what(n, b, sizeof b));
	return -1;
}

/* The fabric's permission bits: three or four octal digits (0600, 0660,
 * 660), owner read-write and no execute bits, as fab_fabric_open's
 * FAB_MODE takes them. */
static int get_mode(P *p, yaml_node_t *n, const char *path, uint32_t *out)
{
	static const char expect[] =
		"a mode like 0600 or 0660 (octal; the owner reads and writes, group and others "
		"read and write, read or nothing)";
	const char *s = want_scalar(p, n, path, expect);
	if (!s)
		return -1;
	size_t len = strlen(s);
	uint32_t m = 0;
	int ok = (len == 3 || (len == 4 && s[0] == '0'));
	for (size_t i = 0; ok && i < len; i++) {
		if (s[i] < '0' || s[i] > '7')
			ok = 0;
		else
			m = m * 8 + (uint32_t)(s[i] - '0');
	}
	unsigned g = (m >> 3) & 7u, o = m & 7u; /* as libfab's fab__mode_ok */
	if (!ok || (m & 0700) != 0600 || (g != 0 && g != 4 && g != 6) ||
	    (o != 0 && o != 4 && o != 6)) {
		char b[80];
		errn(p, n, "%s: expected %s, got %s", path, expect, what(n, b, sizeof b));
		return -1;
	}
	*out = m;
	return 0;
}

static int get_name(P *p, yaml_node_t *n, const char *path, char out[FAB_NAME_MAX + 1])
{
	const char *s = want_scalar(p, n, path, "a name");
	if (!s)
		return -1;
	if (!is_fab_name(s)) {
		char b[80];
		errn(p, n, "%s: %s is not a valid name ([A-Za-z0-9_-], 1 to %d characters)", path,
		     what(n, b, sizeof b), FAB_NAME_MAX);
		return -1;
	}
	strcpy(out, s);
	return 0;
}

static void get_ref(P *p, yaml_node_t *n, const char *path, ref *r)
{
	r->set = 1;
	r->pos = pos_of(n);
	r->valid = get_name(p, n, path, r->name) == 0;
}

/* Iterate a mapping of name -> settings ("channels", "stages"...): checks the
 * type, the names and duplicates, then calls fn for each good entry. */
typedef void (*entry_fn)(P *p, const char *name, yaml_node_t *k, yaml_node_t *v);

static void named_entries(P *p, yaml_node_t *n, const char *section, const char *noun, entry_fn fn)
{
	if (is_null(n))
		return;
	if (n->type != YAML_MAPPING_NODE) {
		char b[80];
		errn(p, n, "%s: expected a mapping of %s names to their settings, got %s", section,
		     noun, what(n, b, sizeof b));
		if (!strcmp(section, "stages"))
			p->incomplete = 1;
		return;
	}
	if (budget(p, n, section, FABD_MAP_MAX) < 0)
		return;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = node(p, pr->key), *v = node(p, pr->value);
		if (k->type != YAML_SCALAR_NODE) {
			errn(p, k, "%s: keys must be %s names, got %s", section, noun,
			     k->type == YAML_MAPPING_NODE ? "a mapping" : "a sequence");
			continue;
		}
		if (dup_key(p, n, pr, section, noun))
			continue;
		char name[FAB_NAME_MAX + 1];
		if (has_nul(k) || !is_fab_name(scalar(k))) {
			char b[80];
			errn(p, k, "%s: %s name %s is not valid ([A-Za-z0-9_-], 1 to %d characters)",
			     section, noun, what(k, b, sizeof b), FAB_NAME_MAX);
			continue;
		}
		strcpy(name, scalar(k));
		fn(p, name, k, v);
	}
}

/* Grow an array to hold one more element; returns the new element (zeroed)
 * or NULL on out of memory. */
static void *push(P *p, void **arr, size_t *n, size_t *cap, size_t elem)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		void *na = realloc(*arr, nc * elem);
		if (!na) {
			p->oom = 1;
			return NULL;
		}
		*arr = na;
		*cap = nc;
	}
	void *e = (char *)*arr + *n * elem;
	memset(e, 0, elem);
	(*n)++;
	return e;
}

/* ---- sections ----------------------------------------------------------- */

static const char *const kind_names[] = { "spsc", "mpmc", NULL };
static const char *const delivery_names[] = { "at-most-once", "at-least-once", NULL };

static void channel_entry(P *p, const char *name, yaml_node_t *k, yaml_node_t *v)
{
	static const char *const keys[] = { "capacity",     "msg_size",       "kind",
					    "delivery",     "max_inflight",   "max_deliveries",
					    "dead_letter",  NULL };
	fabd_topology *t = p->t;
	fabd_channel *c = push(p, (void **)&t->channels, &t->nchannels, &p->cap_chan, sizeof *c);
	if (!c)
		return;
	chan_aux *a = push(p, (void **)&p->caux, &p->ncaux, &p->cap_caux, sizeof *a);
	if (!a) {
		t->nchannels--;
		return;
	}
	strcpy(c->name, name);
	c->pos = pos_of(k);
	c->capacity = FABD_DEF_CAPACITY;
	c->msg_size = FABD_DEF_MSG_SIZE;
	c->delivery = FAB_AT_MOST_ONCE;
	c->max_inflight = FABD_DEF_MAX_INFLIGHT;
	c->max_deliveries = FABD_DEF_MAX_DELIVERIES;
	c->dead_letter = -1;

	char path[96];
	snprintf(path, sizeof path, "channels.%s", name);
	yaml_node_t *f[7];
	if (fields(p, v, path, keys, f, NULL) < 0)
		return;
	char fp[128];
#define FP(key) (snprintf(fp, sizeof fp, "%s.%s", path, key), fp)
	if (f[0])
		get_uint(p, f[0], FP("capacity"), 0, FAB_CAPACITY_MAX, &c->capacity);
	if (f[1])
		get_size(p, f[1], FP("msg_size"), FAB_MSG_SIZE_MAX, &c->msg_size);
	if (f[2]) {
		int e = get_enum(p, f[2], FP("kind"), kind_names);
		if (e >= 0) {
			c->kind = e == 0 ? FAB_SPSC : FAB_MPMC;
			c->kind_explicit = 1;
			a->kind_pos = pos_of(f[2]);
		}
	}
	if (f[3]) {
		int e = get_enum(p, f[3], FP("delivery"), delivery_names);
		if (e >= 0)
			c->delivery = e == 0 ? FAB_AT_MOST_ONCE : FAB_AT_LEAST_ONCE;
	}
	if (f[4]) {
		a->inflight_set = 1;
		a->inflight_pos = pos_of(f[4]);
		get_uint(p, f[4], FP("max_inflight"), 1, FABD_MAX_INFLIGHT_MAX, &c->max_inflight);
	}
	if (f[5]) {
		a->maxdel_set = 1;
		a->maxdel_pos = pos_of(f[5]);
		get_uint(p, f[5], FP("max_deliveries"), 1, FABD_MAX_DELIVERIES_MAX,
			 &c->max_deliveries);
	}
	if (f[6])
		get_ref(p, f[6], FP("dead_letter"), &a->dead_letter);
#undef FP
}

static void limiter_entry(P *p, const char *name, yaml_node_t *k, yaml_node_t *v)
{
	static const char *const keys[] = { "rate", "burst", NULL };
	fabd_topology *t = p->t;
	fabd_limiter *l = push(p, (void **)&t->limiters, &t->nlimiters, &p->cap_lim, sizeof *l);
	if (!l)
		return;
	strcpy(l->name, name);
	l->pos = pos_of(k);
	l->rate = 1;
	l->burst = FABD_DEF_BURST;
	char path[96], fp[128];
	snprintf(path, sizeof path, "limiters.%s", name);
	yaml_node_t *f[2];
	if (fields(p, v, path, keys, f, NULL) < 0)
		return;
	if (!f[0]) {
		errn(p, is_null(v) ? k : v, "%s: missing required key 'rate'", path);
	} else {
		snprintf(fp, sizeof fp, "%s.rate", path);
		const char *s = want_scalar(p, f[0], fp, "a rate like 200/s, 12/m or 5/10s");
		if (s && fabd_parse_rate(s, &l->rate) < 0) {
			char b[80];
			errn(p, f[0],
			     "%s: expected a rate like 200/s, 12/m or 5/10s between %g/s and %g/s, "
			     "got %s",
			     fp, FABD_RATE_MIN, FABD_RATE_MAX, what(f[0], b, sizeof b));
		}
	}
	if (f[1]) {
		snprintf(fp, sizeof fp, "%s.burst", path);
		get_uint(p, f[1], fp, 1, FABD_BURST_MAX, &l->burst);
	}
}

static void topic_entry(P *p, const char *name, yaml_node_t *k, yaml_node_t *v)
{
	static const char *const keys[] = { "capacity", "msg_size", NULL };
	fabd_topology *t = p->t;
	fabd_topic *tp = push(p, (void **)&t->topics, &t->ntopics, &p->cap_topic, sizeof *tp);
	if (!tp)
		return;
	strcpy(tp->name, name);
	tp->pos = pos_of(k);
	tp->capacity = FABD_DEF_CAPACITY;
	tp->msg_size = FABD_DEF_MSG_SIZE;
	char path[96], fp[128];
	snprintf(path, sizeof path, "topics.%s", name);
	yaml_node_t *f[2];
	if (fields(p, v, path, keys, f, NULL) < 0)
		return;
	if (f[0]) {
		snprintf(fp, sizeof fp, "%s.capacity", path);
		get_uint(p, f[0], fp, 1, FAB_CAPACITY_MAX, &tp->capacity);
	}
	if (f[1]) {
		snprintf(fp, sizeof fp, "%s.msg_size", path);
		get_size(p, f[1], fp, FAB_MSG_SIZE_MAX, &tp->msg_size);
	}
}

static void port_entries(P *p, fabd_stage *s, stage_aux *a, yaml_node_t *n, const char *spath,
			 int out)
{
	static const char *const in_keys[] = { "topic", "policy", NULL };
	static const char *const out_keys[] = { "topic", NULL };
	static const char *const policy_names[] = { "block", "drop", NULL };
	const char *dir = out ? "out" : "in";
	if (is_null(n))
		return;
	if (n->type != YAML_MAPPING_NODE) {
		char b[80];
		errn(p, n, "%s.%s: expected a mapping of port names to channels or topics, got %s",
		     spath, dir, what(n, b, sizeof b));
		p->incomplete = 1;
		return;
	}
	char path[160];
	snprintf(path, sizeof path, "%s.%s", spath, dir);
	if (budget(p, n, path, FABD_MAP_MAX) < 0)
		return;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = node(p, pr->key), *v = node(p, pr->value);
		if (k->type != YAML_SCALAR_NODE) {
			errn(p, k, "%s: keys must be port names, got %s", path,
			     k->type == YAML_MAPPING_NODE ? "a mapping" : "a sequence");
			continue;
		}
		if (dup_key(p, n, pr, path, "port"))
			continue;
		if (has_nul(k) || !is_fab_name(scalar(k))) {
			char b[80];
			errn(p, k, "%s: port name %s is not valid ([A-Za-z0-9_-], 1 to %d characters)",
			     path, what(k, b, sizeof b), FAB_NAME_MAX);
			continue;
		}
		/* In and out ports have separate namespaces (docs/stage.md:
		 * fab_stage_in and fab_stage_out), so "x" may be both. */
		if (s->nports == FABD_PORTS_MAX) {
			errn(p, k, "%s: more than %u ports in one stage", path, FABD_PORTS_MAX);
			p->incomplete = 1; /* the wiring checks would miss this port */
			continue;
		}
		fabd_port *port = &s->ports[s->nports];
		port_aux *pa = &a->ports[s->nports];
		s->nports++;
		strcpy(port->name, scalar(k));
		port->pos = pos_of(k);
		port->out = out;
		port->target = -1;
		char pp[240];
		snprintf(pp, sizeof pp, "%s.%s", path, port->name);
		if (v->type == YAML_MAPPING_NODE) {
			yaml_node_t *f[2];
			fields(p, v, pp, out ? out_keys : in_keys, f, NULL);
			pa->mapping_form = 1;
			char fp[280];
			if (!f[0]) {
				errn(p, v, "%s: missing required key 'topic'", pp);
			} else {
				snprintf(fp, sizeof fp, "%s.topic", pp);
				get_ref(p, f[0], fp, &pa->target);
			}
			if (!out && f[1]) {
				snprintf(fp, sizeof fp, "%s.policy", pp);
				int e = get_enum(p, f[1], fp, policy_names);
				pa->policy_set = 1;
				pa->policy_pos = pos_of(f[1]);
				if (e >= 0)
					port->policy = e == 0 ? FAB_SUB_BLOCK : FAB_SUB_DROP;
			}
		} else if (v->type == YAML_SCALAR_NODE && !is_null(v)) {
			get_ref(p, v, pp, &pa->target);
		} else {
			char b[80];
			errn(p, v, "%s: expected the name of a channel or topic, got %s", pp,
			     what(v, b, sizeof b));
		}
	}
}

static void stage_entry(P *p, const char *name, yaml_node_t *k, yaml_node_t *v)
{
	enum { RUN, IN, OUT, REPLICAS, LIMITERS, RESTART, BACKOFF, INTENSITY, STRATEGY, WATCHDOG,
	       ENV, MAX_REPLICAS, NKEYS };
	static const char *const keys[] = { "run",       "in",       "out",      "replicas",
					    "limiters",  "restart",  "backoff",  "intensity",
					    "strategy",  "watchdog", "env",      "max_replicas",
					    NULL };
	static const char *const restart_names[] = { "on-failure", "always", "never", NULL };
	static const char *const strategy_names[] = { "one_for_one", "one_for_all",
						       "rest_for_one", NULL };
	fabd_topology *t = p->t;
	fabd_stage *s = push(p, (void **)&t->stages, &t->nstages, &p->cap_stage, sizeof *s);
	if (!s)
		return;
	stage_aux *a = push(p, (void **)&p->saux, &p->nsaux, &p->cap_saux, sizeof *a);
	if (!a) {
		t->nstages--;
		return;
	}
	strcpy(s->name, name);
	s->pos = pos_of(k);
	s->replicas = FABD_DEF_REPLICAS;
	s->restart = FABD_RESTART_ON_FAILURE;
	s->backoff_min_ns = FABD_DEF_BACKOFF_MIN_NS;
	s->backoff_max_ns = FABD_DEF_BACKOFF_MAX_NS;
	s->intensity_max = FABD_DEF_INTENSITY_MAX;
	s->intensity_window_ns = FABD_DEF_INTENSITY_WINDOW_NS;
	s->strategy = FABD_ONE_FOR_ONE;

	char path[96], fp[160];
	snprintf(path, sizeof path, "stages.%s", name);
#define FP(key) (snprintf(fp, sizeof fp, "%s.%s", path, key), fp)
	yaml_node_t *f[NKEYS];
	if (fields(p, v, path, keys, f, NULL) < 0) {
		p->incomplete = 1;
		return;
	}

	/* run: a string split like a shell would (without expansion) or a list. */
	if (!f[RUN]) {
		errn(p, is_null(v) ? k : v, "%s: missing required key 'run'", path);
	} else if (f[RUN]->type == YAML_SEQUENCE_NODE) {
		yaml_node_item_t *it = f[RUN]->data.sequence.items.start;
		size_t n = (size_t)(f[RUN]->data.sequence.items.top - it);
		if (budget(p, f[RUN], FP("run"), FABD_WALK_MAX) < 0) {
			/* reported */
		} else if (n == 0) {
			errn(p, f[RUN], "%s: empty command", FP("run"));
		} else if (!(s->argv = calloc(n + 1, sizeof *s->argv))) {
			p->oom = 1;
		} else {
			for (size_t i = 0; i < n; i++) {
				yaml_node_t *e = node(p, it[i]);
				char ip[200];
				snprintf(ip, sizeof ip, "%s.run[%zu]", path, i);
				const char *str = "";
				if (e->type != YAML_SCALAR_NODE || is_null(e) || has_nul(e)) {
					char b[80];
					errn(p, e, "%s: expected a string, got %s (quote an empty "
					     "argument: \"\")", ip, what(e, b, sizeof b));
				} else {
					str = scalar(e);
				}
				if (!(s->argv[s->argc++] = strdup(str)))
					p->oom = 1;
			}
		}
	} else {
		const char *str = want_scalar(p, f[RUN], FP("run"), "a command (a string or a list)");
		const char *why;
		if (str && fabd_split_command(str, &s->argv, &s->argc, &why) < 0)
			errn(p, f[RUN], "%s: %s", FP("run"), why);
	}
	if (s->argv && s->argc && !s->argv[0][0])
		errn(p, f[RUN], "%s: the program name is empty", FP("run"));

	if (f[REPLICAS] &&
	    get_uint(p, f[REPLICAS], FP("replicas"), 1, FABD_REPLICAS_MAX, &s->replicas) < 0)
		s->replicas = 1;
	s->max_replicas = s->replicas;
	if (f[MAX_REPLICAS]) {
		uint32_t m = 0;
		if (get_uint(p, f[MAX_REPLICAS], FP("max_replicas"), 1, FABD_REPLICAS_MAX, &m) == 0) {
			if (m < s->replicas)
				errn(p, f[MAX_REPLICAS],
				     "%s: %u is below replicas (%u); it is the most `fabctl scale` may "
				     "start", FP("max_replicas"), m, s->replicas);
			else
				s->max_replicas = m;
		}
	}

	/* Ports: allocate for every entry of in and out, fill what is valid. */
	size_t np = 0;
	for (int d = IN; d <= OUT; d++)
		if (f[d] && f[d]->type == YAML_MAPPING_NODE)
			np += (size_t)(f[d]->data.mapping.pairs.top - f[d]->data.mapping.pairs.start);
	if (np > FABD_PORTS_MAX)
		np = FABD_PORTS_MAX; /* port_entries keeps no more */
	if (np) {
		s->ports = calloc(np, sizeof *s->ports);
		a->ports = calloc(np, sizeof *a->ports);
	}
	if (np && (!s->ports || !a->ports)) {
		p->oom = 1;
		p->incomplete = 1;
	} else {
		if (f[IN])
			port_entries(p, s, a, f[IN], path, 0);
		if (f[OUT])
			port_entries(p, s, a, f[OUT], path, 1);
	}

	if (f[LIMITERS]) {
		yaml_node_t *l = f[LIMITERS];
		if (l->type != YAML_SEQUENCE_NODE) {
			char b[80];
			errn(p, l, "%s: expected a list of limiter names, got %s", FP("limiters"),
			     what(l, b, sizeof b));
		} else {
			yaml_node_item_t *it = l->data.sequence.items.start;
			size_t n = (size_t)(l->data.sequence.items.top - it);
			if (budget(p, l, FP("limiters"), FABD_MAP_MAX) < 0)
				n = 0;
			s->limiters = calloc(n ? n : 1, sizeof *s->limiters);
			a->limiters = calloc(n ? n : 1, sizeof *a->limiters);
			if (!s->limiters || !a->limiters) {
				p->oom = 1;
			} else {
				for (size_t i = 0; i < n; i++) {
					char ip[200];
					snprintf(ip, sizeof ip, "%s.limiters[%zu]", path, i);
					s->limiters[s->nlimiters] = -1;
					get_ref(p, node(p, it[i]), ip, &a->limiters[s->nlimiters]);
					s->nlimiters++;
				}
			}
		}
	}

	if (f[RESTART]) {
		int e = get_enum(p, f[RESTART], FP("restart"), restart_names);
		if (e >= 0)
			s->restart = (fabd_restart)e;
	}
	if (f[STRATEGY]) {
		int e = get_enum(p, f[STRATEGY], FP("strategy"), strategy_names);
		if (e >= 0)
			s->strategy = (fabd_strategy)e;
	}
	if (f[BACKOFF]) {
		/* "min..max", or one duration for a constant delay. */
		const char *str = want_scalar(p, f[BACKOFF], FP("backoff"),
					      "a backoff like 100ms..10s");
		if (str) {
			const char *dots = strstr(str, "..");
			char lo[64];
			uint64_t mn, mx;
			int ok;
			if (dots) {
				size_t l = (size_t)(dots - str);
				ok = l < sizeof lo;
				if (ok) {
					memcpy(lo, str, l);
					lo[l] = 0;
				}
				ok = ok && fabd_parse_duration(lo, &mn) == 0 &&
				     fabd_parse_duration(dots + 2, &mx) == 0;
			} else {
				ok = fabd_parse_duration(str, &mn) == 0;
				mx = mn;
			}
			char b[80];
			if (!ok)
				errn(p, f[BACKOFF], "%s: expected a backoff like 100ms..10s, got %s",
				     fp, what(f[BACKOFF], b, sizeof b));
			else if (mn > mx)
				errn(p, f[BACKOFF], "%s: the first delay of %s is longer than the last",
				     fp, what(f[BACKOFF], b, sizeof b));
			else {
				s->backoff_min_ns = mn;
				s->backoff_max_ns = mx;
			}
		}
	}
	if (f[INTENSITY]) {
		/* "N/window": more than N restarts within the window fail the stage. */
		const char *str = want_scalar(p, f[INTENSITY], FP("intensity"),
					      "an intensity like 5/10s");
		if (str) {
			const char *sl = strchr(str, '/');
			uint64_t n = 0, w = 0;
			char num[24];
			size_t nl = sl ? (size_t)(sl - str) : 0;
			int ok = sl && nl < sizeof num;
			if (ok) {
				memcpy(num, str, nl);
				num[nl] = 0;
			}
			ok = ok && parse_u64(num, &n) == 0 && n <= UINT32_MAX &&
			     fabd_parse_duration(sl + 1, &w) == 0 && w > 0;
			if (!ok) {
				char b[80];
				errn(p, f[INTENSITY],
				     "%s: expected an intensity like 5/10s (restarts/window), got %s", fp,
				     what(f[INTENSITY], b, sizeof b));
			} else {
				s->intensity_max = (uint32_t)n;
				s->intensity_window_ns = w;
			}
		}
	}
	if (f[WATCHDOG])
		get_duration(p, f[WATCHDOG], FP("watchdog"), &s->watchdog_ns);

	if (f[ENV]) {
		yaml_node_t *e = f[ENV];
		if (is_null(e)) {
			/* env: (empty) is no variables */
		} else if (e->type != YAML_MAPPING_NODE) {
			char b[80];
			errn(p, e, "%s: expected a mapping of variable names to values, got %s",
			     FP("env"), what(e, b, sizeof b));
		} else if (budget(p, e, FP("env"), FABD_MAP_MAX) == 0) {
			size_t n = (size_t)(e->data.mapping.pairs.top - e->data.mapping.pairs.start);
			if (!(s->env = calloc(n + 1, sizeof *s->env))) {
				p->oom = 1;
			} else {
				FP("env");
				for (yaml_node_pair_t *pr = e->data.mapping.pairs.start;
				     pr < e->data.mapping.pairs.top; pr++) {
					yaml_node_t *ek = node(p, pr->key), *ev = node(p, pr->value);
					char b[80];
					if (ek->type != YAML_SCALAR_NODE || has_nul(ek) || !is_env_name(scalar(ek))) {
						errn(p, ek, "%s: %s is not a valid variable name "
						     "([A-Za-z_][A-Za-z0-9_]*)", fp, what(ek, b, sizeof b));
						continue;
					}
					if (dup_key(p, e, pr, fp, "variable"))
						continue;
					if (ev->type != YAML_SCALAR_NODE || has_nul(ev)) {
						errn(p, ev, "%s.%s: expected a string, got %s%s", fp,
						     scalar(ek), what(ev, b, sizeof b),
						     ev->type == YAML_SCALAR_NODE ? " with a NUL byte in it" : "");
						continue;
					}
					/* A null value (FOO:, FOO: ~) sets FOO to "". */
					const char *val = is_null(ev) ? "" : scalar(ev);
					size_t l = strlen(scalar(ek)) + 1 + strlen(val) + 1;
					char *kv = malloc(l);
					if (!kv) {
						p->oom = 1;
						continue;
					}
					snprintf(kv, l, "%s=%s", scalar(ek), val);
					s->env[s->nenv++] = kv;
				}
			}
		}
	}
#undef FP
}

static void errors_section(P *p, yaml_node_t *n)
{
	static const char *const keys[] = { "name", "capacity", "msg_size", NULL };
	yaml_node_t *f[3];
	if (fields(p, n, "errors", keys, f, NULL) < 0)
		return;
	if (f[0])
		get_ref(p, f[0], "errors.name", &p->errors_name);
	if (p->errors_name.valid)
		strcpy(p->t->errors.name, p->errors_name.name);
	if (f[1])
		get_uint(p, f[1], "errors.capacity", 1, FAB_CAPACITY_MAX, &p->t->errors.capacity);
	if (f[2] && get_size(p, f[2], "errors.msg_size", FAB_MSG_SIZE_MAX,
			     &p->t->errors.msg_size) == 0 &&
	    p->t->errors.msg_size < FABD_ERRORS_MSG_MIN)
		errn(p, f[2], "errors.msg_size: %u is less than %u, the size of one error record "
		     "(fab_stage_err)", p->t->errors.msg_size, FABD_ERRORS_MSG_MIN);
}

static void metrics_section(P *p, yaml_node_t *n)
{
	static const char *const keys[] = { "listen", NULL };
	yaml_node_t *f[1];
	if (fields(p, n, "metrics", keys, f, NULL) < 0 || !f[0])
		return;
	const char *s = want_scalar(p, f[0], "metrics.listen", "an address like 127.0.0.1:9464");
	if (!s)
		return;
	fabd_topology *t = p->t;
	if (!strcmp(s, "off")) {
		t->metrics.enabled = 0;
		return;
	}
	/* host:port, [v6]:port.  The host is not resolved here: check validates
	 * the file, it does not depend on the machine it runs on. */
	const char *colon, *host = s;
	size_t hl;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		colon = rb && rb[1] == ':' ? rb + 1 : NULL;
		host = s + 1;
		hl = rb ? (size_t)(rb - host) : 0;
	} else {
		colon = strrchr(s, ':');
		hl = colon ? (size_t)(colon - s) : 0;
		if (colon && memchr(s, ':', hl))
			colon = NULL; /* an unbracketed IPv6 address */
	}
	uint64_t port = 0;
	int ok = colon && hl > 0 && hl < sizeof t->metrics.host &&
		 parse_u64(colon + 1, &port) == 0 && port >= 1 && port <= 65535;
	if (!ok) {
		char b[80];
		errn(p, f[0], "metrics.listen: expected host:port (port 1-65535), [v6]:port or off, "
		     "got %s", what(f[0], b, sizeof b));
		return;
	}
	memcpy(t->metrics.host, host, hl);
	t->metrics.host[hl] = 0;
	t->metrics.port = (uint16_t)port;
}

static void shutdown_section(P *p, yaml_node_t *n)
{
	static const char *const keys[] = { "drain", "grace", NULL };
	yaml_node_t *f[2];
	if (fields(p, n, "shutdown", keys, f, NULL) < 0)
		return;
	if (f[0])
		get_duration(p, f[0], "shutdown.drain", &p->t->drain_ns);
	if (f[1])
		get_duration(p, f[1], "shutdown.grace", &p->t->grace_ns);
}

/* ---- whole-file checks ----------------------------------------------------- */

int fabd_topology_channel(const fabd_topology *t, const char *name)
{
	for (size_t i = 0; i < t->nchannels; i++)
		if (!strcmp(t->channels[i].name, name))
			return (int)i;
	return -1;
}

int fabd_topology_stage(const fabd_topology *t, const char *name)
{
	for (size_t i = 0; i < t->nstages; i++)
		if (!strcmp(t->stages[i].name, name))
			return (int)i;
	return -1;
}

static int find_topic(const fabd_topology *t, const char *name)
{
	for (size_t i = 0; i < t->ntopics; i++)
		if (!strcmp(t->topics[i].name, name))
			return (int)i;
	return -1;
}

static int find_limiter(const fabd_topology *t, const char *name)
{
	for (size_t i = 0; i < t->nlimiters; i++)
		if (!strcmp(t->limiters[i].name, name))
			return (int)i;
	return -1;
}

static void uadd(uint32_t *x, uint32_t v)
{
	*x = *x > UINT32_MAX - v ? UINT32_MAX : *x + v;
}

/*
 * What the fabric's tables hold (docs/layout.md, fab(7) "Limits"): a
 * topology that needs more was accepted by `fabd check` and failed only at
 * run time, some of it half-way (a resource-exhaustion trial, 28 Nov: 300
 * stages started, 44 of them failed fab_stage_open on the full stage table,
 * and the restarts ran into the restart intensity).  Each count is reported
 * at the first declaration past the limit.
 */
/* Fabric handles fabd holds itself: the supervisor's and the error
 * reader's (/metrics reads the segments without one). */
#define FABD_OWN_HANDLES 2u

static void tables(P *p)
{
	fabd_topology *t = p->t;
	if (p->incomplete)
		return; /* counts of a file not read to its end */
	/* One registry for channels and topics, plus the error channel. */
	size_t objs = t->nchannels + t->ntopics + 1;
	if (objs > FAB_MAX_CHANS) {
		/* The object that takes the registry past its size, counting
		 * channels, then topics, then the error channel (the last
		 * entry): the FAB_MAX_CHANS-th channel or topic. */
		size_t k = FAB_MAX_CHANS - 1;
		fabd_pos at = k < t->nchannels ? t->channels[k].pos : t->topics[k - t->nchannels].pos;
		err(p, at, "%zu channels, %zu topics and the error channel: %zu objects; a "
		    "fabric's registry holds %u", t->nchannels, t->ntopics, objs, FAB_MAX_CHANS);
	}
	if (t->nstages > FAB_MAX_STAGES)
		err(p, t->stages[FAB_MAX_STAGES].pos, "%zu stages: a fabric's stage table holds %u",
		    t->nstages, FAB_MAX_STAGES);
	/* fabd's root context and one per stage (the stage limit is lower
	 * today; kept so that the two cannot drift apart). */
	if (t->nstages + 1 > FAB_MAX_CTXS)
		err(p, t->stages[FAB_MAX_CTXS - 1].pos, "%zu stages need %zu contexts (one each "
		    "and fabd's root): a fabric's context table holds %u", t->nstages,
		    t->nstages + 1, FAB_MAX_CTXS);
	if (t->nlimiters > FAB_MAX_LIMS)
		err(p, t->limiters[FAB_MAX_LIMS].pos, "%zu limiters: a fabric's limiter table "
		    "holds %u", t->nlimiters, FAB_MAX_LIMS);
	/* Every replica `fabctl scale` may start holds a process-table entry,
	 * and fabd holds FABD_OWN_HANDLES. */
	uint64_t procs = FABD_OWN_HANDLES;
	for (size_t i = 0; i < t->nstages; i++) {
		procs += t->stages[i].max_replicas;
		if (procs > FAB_MAX_PROCS) {
			uint64_t all = FABD_OWN_HANDLES;
			for (size_t k = 0; k < t->nstages; k++)
				all += t->stages[k].max_replicas;
			err(p, t->stages[i].pos, "stages.%s: up to %llu processes (every stage's "
			    "max_replicas, and %u for fabd): a fabric's process table holds %u",
			    t->stages[i].name, (unsigned long long)all, FABD_OWN_HANDLES,
			    FAB_MAX_PROCS);
			break;
		}
	}
}

static void resolve(P *p)
{
	fabd_topology *t = p->t;

	/* Channels, topics and the error channel share one namespace: each is a
	 * segment /dev/shm/fab.<fabric>.<name>. */
	for (size_t i = 0; i < t->ntopics; i++) {
		int c = fabd_topology_channel(t, t->topics[i].name);
		if (c >= 0)
			err(p, t->topics[i].pos,
			    "topics.%s: the name is already used by a channel (line %u); channels and "
			    "topics share one namespace", t->topics[i].name, t->channels[c].pos.line);
	}
	int errors_clash = 0;
	{
		const char *en = t->errors.name;
		fabd_pos ep = p->errors_name.set ? p->errors_name.pos : (fabd_pos){ 0, 0 };
		int c = fabd_topology_channel(t, en), tp = find_topic(t, en);
		if (c >= 0 || tp >= 0) {
			errors_clash = 1;
			if (p->errors_name.set)
				err(p, ep, "errors.name: '%s' is already declared as a %s (line %u); the "
				    "error channel is declared only under errors", en,
				    c >= 0 ? "channel" : "topic",
				    c >= 0 ? t->channels[c].pos.line : t->topics[tp].pos.line);
			else
				err(p, c >= 0 ? t->channels[c].pos : t->topics[tp].pos,
				    "%s.%s: '%s' is the name of the error channel; declare its settings "
				    "under errors, or give errors another name", c >= 0 ? "channels" :
				    "topics", en, en);
		}
	}

	/* Dead letters. */
	for (size_t i = 0; i < t->nchannels; i++) {
		fabd_channel *c = &t->channels[i];
		chan_aux *a = &p->caux[i];
		int alo = c->delivery == FAB_AT_LEAST_ONCE;
		if (a->inflight_set && !alo)
			err(p, a->inflight_pos, "channels.%s.max_inflight: applies only to delivery: "
			    "at-least-once", c->name);
		if (a->maxdel_set && !alo)
			err(p, a->maxdel_pos, "channels.%s.max_deliveries: applies only to delivery: "
			    "at-least-once", c->name);
		if (!a->dead_letter.set)
			continue;
		if (!alo)
			err(p, a->dead_letter.pos, "channels.%s.dead_letter: applies only to "
			    "delivery: at-least-once", c->name);
		if (!a->dead_letter.valid)
			continue;
		const char *dn = a->dead_letter.name;
		int d = fabd_topology_channel(t, dn);
		if (d == (int)i) {
			err(p, a->dead_letter.pos, "channels.%s.dead_letter: a channel cannot be its "
			    "own dead letter", c->name);
		} else if (d >= 0) {
			c->dead_letter = d;
			strcpy(c->dead_letter_name, dn);
			t->channels[d].dl_sources++;
			if (t->channels[d].msg_size < c->msg_size)
				err(p, a->dead_letter.pos, "channels.%s.dead_letter: '%s' has msg_size "
				    "%u, smaller than this channel's %u; its poison messages would be "
				    "dropped", c->name, dn, t->channels[d].msg_size, c->msg_size);
		} else if (!strcmp(dn, t->errors.name)) {
			err(p, a->dead_letter.pos, "channels.%s.dead_letter: '%s' is the error "
			    "channel; declare a channel for dead letters", c->name, dn);
		} else if (find_topic(t, dn) >= 0) {
			err(p, a->dead_letter.pos, "channels.%s.dead_letter: '%s' is a topic; a dead "
			    "letter must be a channel", c->name, dn);
		} else {
			err(p, a->dead_letter.pos, "channels.%s.dead_letter: no channel named '%s'",
			    c->name, dn);
		}
	}

	/* fabd creates a dead letter before the channels that name it: a chain
	 * that comes back to itself (a -> b -> a) could never be created. */
	for (size_t i = 0; i < t->nchannels; i++) {
		size_t hops = 0;
		int d = t->channels[i].dead_letter;
		while (d >= 0 && d != (int)i && hops++ < t->nchannels)
			d = t->channels[d].dead_letter;
		if (d == (int)i)
			err(p, p->caux[i].dead_letter.pos, "channels.%s.dead_letter: dead letters form a "
			    "cycle back to '%s'", t->channels[i].name, t->channels[i].name);
	}

	/* Ports and limiters of stages; counting writers and readers. */
	for (size_t si = 0; si < t->nstages; si++) {
		fabd_stage *s = &t->stages[si];
		stage_aux *a = &p->saux[si];
		uadd(&t->processes, s->replicas);
		uadd(&t->errors.writers, s->replicas);
		for (size_t k = 0; k < s->nports; k++) {
			fabd_port *pt = &s->ports[k];
			port_aux *pa = &a->ports[k];
			const char *dir = pt->out ? "out" : "in";
			if (!pa->target.valid)
				continue;
			const char *tn = pa->target.name;
			int c = fabd_topology_channel(t, tn), tp = find_topic(t, tn);
			int is_err = !errors_clash && !strcmp(tn, t->errors.name);
			if (pa->mapping_form) {
				if (tp < 0) {
					err(p, pa->target.pos, "stages.%s.%s.%s.topic: no topic named '%s'%s",
					    s->name, dir, pt->name, tn,
					    c >= 0 || is_err ? " (it is a channel: name it directly)" : "");
					continue;
				}
				c = -1;
				is_err = 0;
			}
			if (c >= 0) {
				pt->target_kind = FABD_TARGET_CHANNEL;
				pt->target = c;
				/* max_replicas: every replica a scale may start
				 * writes or reads it (the close quorum counts them) */
				uadd(pt->out ? &t->channels[c].writers : &t->channels[c].readers,
				     s->max_replicas);
			} else if (tp >= 0) {
				pt->target_kind = FABD_TARGET_TOPIC;
				pt->target = tp;
				if (!pt->out && !pt->policy)
					pt->policy = FAB_SUB_BLOCK;
				uadd(pt->out ? &t->topics[tp].publishers : &t->topics[tp].subscribers,
				     s->replicas);
			} else if (is_err) {
				pt->target_kind = FABD_TARGET_ERRORS;
				pt->target = 0;
				if (!pt->out)
					uadd(&t->errors.readers, s->replicas);
			} else {
				err(p, pa->target.pos, "stages.%s.%s.%s: no channel or topic named '%s'",
				    s->name, dir, pt->name, tn);
			}
		}
		for (size_t k = 0; k < s->nlimiters; k++) {
			ref *r = &a->limiters[k];
			if (!r->valid)
				continue;
			int l = find_limiter(t, r->name);
			if (l < 0) {
				err(p, r->pos, "stages.%s.limiters[%zu]: no limiter named '%s'", s->name, k,
				    r->name);
				continue;
			}
			for (size_t j = 0; j < k; j++)
				if (s->limiters[j] == l)
					err(p, r->pos, "stages.%s.limiters[%zu]: limiter '%s' is listed twice",
					    s->name, k, r->name);
			s->limiters[k] = l;
		}
	}

	/* Each channel needs a writer and a reader; decide spsc or mpmc. */
	for (size_t i = 0; i < t->nchannels; i++) {
		fabd_channel *c = &t->channels[i];
		chan_aux *a = &p->caux[i];
		/* The writers' replicas, plus fabd's own share for a dead-letter
		 * channel (fabd closes it when its sources' readers are done). */
		c->producers = c->writers + (c->dl_sources ? 1 : 0);
		if (!c->producers)
			c->producers = 1;
		/* A name declared as both a channel and a topic was reported
		 * above; its ports resolved to the channel, so do not also report
		 * the topic as unused. */
		int clash = find_topic(t, c->name) >= 0;
		if (!p->incomplete && !clash) {
			if (!c->writers && !c->dl_sources)
				err(p, c->pos, "channels.%s: nothing writes this channel (no stage has an "
				    "out port on it and it is no channel's dead_letter)", c->name);
			if (!c->readers)
				err(p, c->pos, "channels.%s: nothing reads this channel (no stage has an "
				    "in port on it)", c->name);
		}
		if (c->producers > FAB_PRODUCERS_MAX)
			err(p, c->pos, "channels.%s: %u processes write this channel, more than the "
			    "%d a channel's close quorum can count", c->name, c->producers,
			    FAB_PRODUCERS_MAX);
		/* A dead-letter channel is written by whichever receiver of its source
		 * gives up on a message, so it always has several potential writers. */
		int one_writer = c->writers == 1 && !c->dl_sources;
		int one_reader = c->readers == 1;
		if (!c->kind_explicit) {
			c->kind = one_writer && one_reader ? FAB_SPSC : FAB_MPMC;
		} else if (c->kind == FAB_SPSC && !p->incomplete) {
			if (c->dl_sources)
				err(p, a->kind_pos, "channels.%s.kind: spsc, but it is the dead_letter of "
				    "another channel, written by that channel's receivers; declare kind: "
				    "mpmc", c->name);
			else if (c->writers > 1)
				err(p, a->kind_pos, "channels.%s.kind: spsc, but %u processes write it; "
				    "declare kind: mpmc", c->name, c->writers);
			if (c->readers > 1)
				err(p, a->kind_pos, "channels.%s.kind: spsc, but %u processes read it; "
				    "declare kind: mpmc", c->name, c->readers);
		}
	}
	if (!p->incomplete)
		for (size_t i = 0; i < t->ntopics; i++)
			if (!t->topics[i].publishers && fabd_topology_channel(t, t->topics[i].name) < 0)
				err(p, t->topics[i].pos, "topics.%s: nothing publishes to this topic (no "
				    "stage has an out port on it)", t->topics[i].name);
	tables(p);
}

/* ---- entry points -------------------------------------------------------- */

void fabd_topology_free(fabd_topology *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nstages; i++) {
		fabd_stage *s = &t->stages[i];
		if (s->argv) {
			for (size_t j = 0; j < s->argc; j++)
				free(s->argv[j]);
			free(s->argv);
		}
		if (s->env) {
			for (size_t j = 0; j < s->nenv; j++)
				free(s->env[j]);
			free(s->env);
		}
		free(s->ports);
		free(s->limiters);
	}
	free(t->stages);
	free(t->channels);
	free(t->limiters);
	free(t->topics);
	free(t);
}

static void walk(P *p)
{
	enum { FABRIC, CHANNELS, LIMITERS, TOPICS, STAGES, ERRORS, METRICS, SHUTDOWN, MODE, NKEYS };
	static const char *const keys[] = { "fabric", "channels", "limiters", "topics", "stages",
					    "errors", "metrics",  "shutdown", "mode",   NULL };
	yaml_node_t *root = yaml_document_get_root_node(p->doc);
	if (!root) {
		err(p, (fabd_pos){ 1, 1 }, "empty topology: 'fabric' and 'stages' are required"); /* line 1: an empty file has one */
		p->incomplete = 1;
		return;
	}
	if (root->type != YAML_MAPPING_NODE || is_null(root)) {
		char b[80];
		errn(p, root, "the topology must be a mapping with the keys fabric, stages, ...; got %s",
		     what(root, b, sizeof b));
		p->incomplete = 1;
		return;
	}
	yaml_node_t *f[NKEYS];
	fields(p, root, "topology", keys, f, NULL);
	if (!f[FABRIC])
		errn(p, root, "missing required key 'fabric'");
	else
		get_name(p, f[FABRIC], "fabric", p->t->fabric);
	if (f[MODE])
		get_mode(p, f[MODE], "mode", &p->t->mode);
	/* errors first: port resolution needs its name, and it is cheap. */
	if (f[ERRORS])
		errors_section(p, f[ERRORS]);
	if (f[CHANNELS])
		named_entries(p, f[CHANNELS], "channels", "channel", channel_entry);
	if (f[LIMITERS])
		named_entries(p, f[LIMITERS], "limiters", "limiter", limiter_entry);
	if (f[TOPICS])
		named_entries(p, f[TOPICS], "topics", "topic", topic_entry);
	if (!f[STAGES]) {
		errn(p, root, "missing required key 'stages'");
		p->incomplete = 1;
	} else {
		named_entries(p, f[STAGES], "stages", "stage", stage_entry);
		if (!p->t->nstages && !p->incomplete) {
			errn(p, f[STAGES], "stages: a fabric needs at least one stage");
			p->incomplete = 1;
		}
	}
	if (f[METRICS])
		metrics_section(p, f[METRICS]);
	if (f[SHUTDOWN])
		shutdown_section(p, f[SHUTDOWN]);
}

/*
 * Before the document is built: refuse nesting deeper than FABD_DEPTH_MAX
 * (no topology needs more than a few levels).  libyaml's scanner keeps a
 * possible simple key for every open flow level and looks at all of them
 * for every token, so `[[[[...` or `{a: {a: ...` of n levels costs O(n^2)
 * before yaml_parser_load returns (100 000 levels, a 200 KB file: 56 s;
 * found by an adversarial trial).  The events come out a few hundred
 * tokens behind the input, so counting them stops such a file after a
 * bounded amount of work.  1 when too deep (reported), else 0 (a syntax
 * error is left for the load to report).
 */
static int too_deep(yaml_parser_t *parser, fabd_diags *d)
{
	int depth = 0;
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(parser, &ev))
			return 0;
		yaml_event_type_t ty = ev.type;
		fabd_pos pos = { (uint32_t)ev.start_mark.line + 1, (uint32_t)ev.start_mark.column + 1 };
		yaml_event_delete(&ev);
		if (ty == YAML_STREAM_END_EVENT)
			return 0;
		if (ty == YAML_SEQUENCE_START_EVENT || ty == YAML_MAPPING_START_EVENT) {
			if (++depth > FABD_DEPTH_MAX) {
				P p = { .d = d };
				err(&p, pos, "nested more than %d levels deep", FABD_DEPTH_MAX);
				return 1;
			}
		} else if (ty == YAML_SEQUENCE_END_EVENT || ty == YAML_MAPPING_END_EVENT) {
			depth--;
		}
	}
}

static int load(yaml_parser_t *parser, fabd_topology **out, fabd_diags *d)
{
	*out = NULL;
	P p = { .d = d };
	yaml_document_t doc;
	int have_doc = 0, rc = -1;
	fabd_topology *t = calloc(1, sizeof *t);
	if (!t) {
		p.oom = 1;
		goto done;
	}
	t->mode = 0600;
	strcpy(t->errors.name, FABD_DEF_ERRORS_NAME);
	t->errors.capacity = FABD_DEF_ERRORS_CAPACITY;
	t->errors.msg_size = FABD_DEF_ERRORS_MSG_SIZE;
	t->metrics.enabled = 1;
	strcpy(t->metrics.host, "127.0.0.1");
	t->metrics.port = 9464;
	t->drain_ns = FABD_DEF_DRAIN_NS;
	t->grace_ns = FABD_DEF_GRACE_NS;
	p.t = t;

	if (!yaml_parser_load(parser, &doc)) {
		/* libyaml marks are 0-based. */
		fabd_pos pos = { (uint32_t)parser->problem_mark.line + 1,
				 (uint32_t)parser->problem_mark.column + 1 };
		if (parser->error == YAML_MEMORY_ERROR)
			p.oom = 1;
		else if (parser->context)
			err(&p, pos, "%s (%s at line %zu)", parser->problem ? parser->problem :
			    "syntax error", parser->context, parser->context_mark.line + 1);
		else
			err(&p, pos, "%s", parser->problem ? parser->problem : "syntax error");
		goto done;
	}
	have_doc = 1;
	p.doc = &doc;
	walk(&p);
	resolve(&p);

	/* One document per file: a second one is most likely a stray '---'. */
	yaml_document_t extra;
	if (!yaml_parser_load(parser, &extra)) {
		fabd_pos pos = { (uint32_t)parser->problem_mark.line + 1,
				 (uint32_t)parser->problem_mark.column + 1 };
		err(&p, pos, "%s", parser->problem ? parser->problem : "syntax error");
	} else {
		yaml_node_t *r = yaml_document_get_root_node(&extra);
		if (r)
			err(&p, (fabd_pos){ (uint32_t)extra.start_mark.line + 1,
					    (uint32_t)extra.start_mark.column + 1 },
			    "a topology file holds one YAML document; found a second one");
		yaml_document_delete(&extra);
	}

done:
	if (p.oom)
		err(&p, (fabd_pos){ 0, 0 }, "out of memory");
	if (have_doc)
		yaml_document_delete(&doc);
	for (size_t i = 0; i < p.nsaux; i++) {
		free(p.saux[i].ports);
		free(p.saux[i].limiters);
	}
	free(p.saux);
	free(p.caux);
	diags_sort(d);
	if (d->n == 0 && !d->dropped && !p.oom) {
		*out = t;
		rc = 0;
	} else {
		fabd_topology_free(t);
	}
	return rc;
}

int fabd_topology_parse(const char *text, size_t len, fabd_topology **out, fabd_diags *d)
{
	yaml_parser_t parser;
	*out = NULL;
	if (!yaml_parser_initialize(&parser)) {
		fabd_pos none = { 0, 0 };
		P p = { .d = d };
		err(&p, none, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	int deep = too_deep(&parser, d);
	yaml_parser_delete(&parser);
	if (deep)
		return -1;
	if (!yaml_parser_initialize(&parser)) {
		P p = { .d = d };
		err(&p, (fabd_pos){ 0, 0 }, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	int rc = load(&parser, out, d);
	yaml_parser_delete(&parser);
	return rc;
}

int fabd_topology_load(const char *path, fabd_topology **out, fabd_diags *d)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	struct stat sb;
	if (f && fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
		fclose(f); /* fopen takes a directory; reading it fails as "input error" */
		f = NULL;
		errno = EISDIR;
	}
	if (!f) {
		P p = { .d = d };
		err(&p, (fabd_pos){ 0, 0 }, "cannot open: %s", strerror(errno));
		return -1;
	}
	/* Read whole (bounded), then parse twice from memory (too_deep, then
	 * load): a pipe cannot be rewound. */
	size_t cap = 0, len = 0;
	char *text = NULL;
	int rc = -1, bad = 0;
	for (;;) {
		if (len == cap) {
			/* Room for one byte past the limit, so a file of exactly
			 * FABD_FILE_MAX is read whole (found by review). */
			if (len > FABD_FILE_MAX) {
				P p = { .d = d };
				err(&p, (fabd_pos){ 0, 0 }, "larger than %u MiB: not a topology",
				    FABD_FILE_MAX >> 20);
				bad = 1;
				break;
			}
			size_t ncap = cap ? cap * 2 : 65536;
			if (ncap > (size_t)FABD_FILE_MAX + 1)
				ncap = (size_t)FABD_FILE_MAX + 1;
			char *nt = realloc(text, ncap);
			if (!nt) {
				P p = { .d = d };
				err(&p, (fabd_pos){ 0, 0 }, "out of memory");
				bad = 1;
				break;
			}
			text = nt;
			cap = ncap;
		}
		size_t k = fread(text + len, 1, cap - len, f);
		len += k;
		if (k == 0) {
			if (ferror(f)) {
				P p = { .d = d };
				err(&p, (fabd_pos){ 0, 0 }, "cannot read: %s", strerror(errno));
				bad = 1;
			}
			break;
		}
	}
	if (!bad)
		rc = fabd_topology_parse(text ? text : "", len, out, d);
	free(text);
	fclose(f);
	return rc;
}
