/*
 * stage.c - the stage API: a process started by a supervisor (fabd), or by
 * hand with the same environment, reads FAB_* variables and gets its ports'
 * channels, its context and the fabric's error channel (docs/stage.md is
 * the contract; this file implements it).
 *
 * fab_stage_open validates the whole environment before it touches shared
 * memory, so a malformed variable is FAB_EINVAL naming the variable and
 * nothing was opened.  Then it opens, eagerly (a stage that cannot reach a
 * channel fails at start, where a supervisor's restart policy sees it):
 * the fabric, the stage's entry in the control segment's stage table, the
 * context, each port's channel (in: FAB_RECV, out: FAB_SEND) and the error
 * channel (FAB_SEND).  Output handles carry the replica's producer identity
 * ("<stage>.<replica>", or FAB_PRODUCER_ID), so fab_stage_close's close of
 * an output counts once per replica however often the replica restarts;
 * and it closes nothing while the supervisor marks the replica in the
 * stage entry's `restarting` mask (fab_stage_restarting: the replica is
 * stopped only to be run again, docs/stage.md "Restarts").
 *
 * fab_stage_error counts every report in the stage's table entry and sends
 * a fixed-layout record (fab_stage_err) to the error channel without
 * blocking: a full or closed error channel drops the record and counts the
 * drop.  A stage's work must never stall because nobody reads its errors.
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(sizeof(fab_stage_err) == 384, "stage error record size");
_Static_assert(offsetof(fab_stage_err, time_ns) == 8, "record time offset");
_Static_assert(offsetof(fab_stage_err, pid) == 16, "record pid offset");
_Static_assert(offsetof(fab_stage_err, replica) == 20, "record replica offset");
_Static_assert(offsetof(fab_stage_err, code) == 24, "record code offset");
_Static_assert(offsetof(fab_stage_err, text_len) == 28, "record text_len offset");
_Static_assert(offsetof(fab_stage_err, stage) == 32, "record stage offset");
_Static_assert(offsetof(fab_stage_err, text) == 128, "record text offset");

#define FAB__STAGE_PORTS_MAX 64   /* ports per stage, in and out together */
#define FAB__PORTS_LEN_MAX 8192   /* bytes of FAB_PORTS */
#define FAB__REPLICA_MAX 65535u
#define FAB__SHOW 64              /* bytes of a bad value quoted in a message */
#define FAB__RESTARTING_BITS 64u  /* replicas fab_stage_ent.restarting covers */

typedef struct fab__port {
	char name[FAB_NAME_MAX + 1];
	char obj[FAB_NAME_MAX + 1];
	unsigned dir; /* FAB_RECV (in) | FAB_SEND (out) */
	fab_chan *ch;
} fab__port;

struct fab_stage {
	unsigned fork_gen;
	fab_fabric *fab;
	fab_ctx *ctx;
	fab_chan *errors; /* NULL: no error channel (FAB_ERRORS unset) */
	pthread_mutex_t err_lock; /* one sender at a time on `errors` */
	fab_stage_ent *ent;
	uint32_t replica;
	uint64_t producer_id;
	int nports;
	fab__port ports[FAB__STAGE_PORTS_MAX];
	char fabric[FAB_NAME_MAX + 1];
	char stage[FAB_NAME_MAX + 1];
	char ctx_name[FAB_NAME_MAX + 1];   /* "" = a private context */
	char err_name[FAB_NAME_MAX + 1];   /* "" = none */
	char producer[FAB__PRODUCER_ID_MAX + 1];
};

/* ---- environment ----------------------------------------------------------- */

/* An optional variable: NULL when unset or empty (the empty string is the
 * same as unset, so `FAB_ERRORS= prog` disables it). */
static const char *fab__env_opt(const char *var)
{
	const char *v = getenv(var);
	return v && *v ? v : NULL;
}

/* A name-valued variable into buf ([A-Za-z0-9_-]{1,48}). */
static int fab__env_name(const char *var, const char *v, char *buf)
{
	if (!fab__name_ok(v))
		return fab__err(FAB_EINVAL, "%s=\"%.*s\": not a fab name ([A-Za-z0-9_-]{1,48})", var,
				FAB__SHOW, v);
	memcpy(buf, v, strlen(v) + 1);
	return 0;
}

/* FAB_REPLICA: canonical decimal 0..65535 (no sign, blanks or leading
 * zeros, so "<stage>.<replica>" names one replica one way). */
static int fab__env_replica(const char *v, uint32_t *out)
{
	uint32_t r = 0;
	size_t n = strlen(v);
	if (n > 5 || (n > 1 && v[0] == '0'))
		goto bad;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			goto bad;
		r = r * 10 + (uint32_t)(v[i] - '0');
	}
	if (r > FAB__REPLICA_MAX)
		goto bad;
	*out = r;
	return 0;
bad:
	return fab__err(FAB_EINVAL, "FAB_REPLICA=\"%.*s\": want a decimal 0..65535 without sign or "
				    "leading zeros",
			FAB__SHOW, v);
}

/* FAB_PRODUCER_ID: 1..128 printable, non-blank ASCII bytes. */
static int fab__env_producer(const char *v, char *buf)
{
	size_t n = strlen(v);
	int ok = n <= FAB__PRODUCER_ID_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = v[i] > ' ' && v[i] < 0x7f;
	if (!ok)
		return fab__err(FAB_EINVAL, "FAB_PRODUCER_ID: want 1..128 printable ASCII bytes "
					    "without blanks");
	memcpy(buf, v, n + 1);
	return 0;
}

/*
 * FAB_PORTS: "<dir>:<port>=<object>" entries separated by ','; dir is "in"
 * or "out"; port and object are fab names.  No name can contain ',', ':'
 * or '=', so the syntax needs no escaping; anything else (blanks, empty
 * entries, a trailing comma, a duplicate port of one direction) is refused.
 */
static int fab__env_ports(fab_stage *st, const char *v)
{
	size_t len = strlen(v);
	if (len > FAB__PORTS_LEN_MAX)
		return fab__err(FAB_EINVAL, "FAB_PORTS: longer than %d bytes", FAB__PORTS_LEN_MAX);
	const char *p = v;
	for (int idx = 1;; idx++) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		int show = n > FAB__SHOW ? FAB__SHOW : (int)n;
		const char *colon = memchr(p, ':', n);
		const char *eq = colon ? memchr(colon, '=', n - (size_t)(colon - p)) : NULL;
		if (n == 0)
			return fab__err(FAB_EINVAL, "FAB_PORTS: entry %d is empty (want "
						    "<in|out>:<port>=<channel>[,...])",
					idx);
		if (!colon || !eq)
			return fab__err(FAB_EINVAL, "FAB_PORTS: entry %d \"%.*s\": want "
						    "<in|out>:<port>=<channel>",
					idx, show, p);
		unsigned dir;
		size_t dl = (size_t)(colon - p);
		if (dl == 2 && memcmp(p, "in", 2) == 0)
			dir = FAB_RECV;
		else if (dl == 3 && memcmp(p, "out", 3) == 0)
			dir = FAB_SEND;
		else
			return fab__err(FAB_EINVAL, "FAB_PORTS: entry %d \"%.*s\": direction must be in "
						    "or out",
					idx, show, p);
		char port[FAB_NAME_MAX + 2] = {0}, obj[FAB_NAME_MAX + 2] = {0};
		size_t pl = (size_t)(eq - colon - 1), ol = n - (size_t)(eq - p) - 1;
		memcpy(port, colon + 1, pl > FAB_NAME_MAX + 1 ? FAB_NAME_MAX + 1 : pl);
		memcpy(obj, eq + 1, ol > FAB_NAME_MAX + 1 ? FAB_NAME_MAX + 1 : ol);
		if (pl > FAB_NAME_MAX || !fab__name_ok(port))
			return fab__err(FAB_EINVAL, "FAB_PORTS: entry %d \"%.*s\": bad port name (want "
						    "[A-Za-z0-9_-]{1,48})",
					idx, show, p);
		if (ol > FAB_NAME_MAX || !fab__name_ok(obj))
			return fab__err(FAB_EINVAL, "FAB_PORTS: entry %d \"%.*s\": bad channel name "
						    "(want [A-Za-z0-9_-]{1,48})",
					idx, show, p);
		for (int i = 0; i < st->nports; i++)
			if (st->ports[i].dir == dir && strcmp(st->ports[i].name, port) == 0)
				return fab__err(FAB_EINVAL, "FAB_PORTS: entry %d: %s port %s given twice",
						idx, dir == FAB_RECV ? "in" : "out", port);
		if (st->nports == FAB__STAGE_PORTS_MAX)
			return fab__err(FAB_EINVAL, "FAB_PORTS: more than %d ports",
					FAB__STAGE_PORTS_MAX);
		fab__port *pt = &st->ports[st->nports++];
		memcpy(pt->name, port, pl + 1);
		memcpy(pt->obj, obj, ol + 1);
		pt->dir = dir;
		if (!end)
			return 0;
		p = end + 1;
	}
}

/* Read and validate every variable; touches no shared memory.  On error
 * the message names the variable. */
static int fab__stage_parse(fab_stage *st)
{
	int rc;
	const char *v = getenv("FAB_FABRIC");
	if (!v || !*v)
		return fab__err(FAB_EINVAL, "FAB_FABRIC is not set (the stage's fabric)");
	if ((rc = fab__env_name("FAB_FABRIC", v, st->fabric)))
		return rc;
	v = getenv("FAB_STAGE");
	if (!v || !*v)
		return fab__err(FAB_EINVAL, "FAB_STAGE is not set (the stage's name)");
	if ((rc = fab__env_name("FAB_STAGE", v, st->stage)))
		return rc;
	st->replica = 0;
	if ((v = fab__env_opt("FAB_REPLICA")) && (rc = fab__env_replica(v, &st->replica)))
		return rc;
	if ((v = fab__env_opt("FAB_PRODUCER_ID"))) {
		if ((rc = fab__env_producer(v, st->producer)))
			return rc;
	} else {
		/* The identity fabd gives a replica; a stage started by hand
		 * gets the same, so its closes count as that replica's. */
		snprintf(st->producer, sizeof st->producer, "%s.%u", st->stage, st->replica);
	}
	if ((v = fab__env_opt("FAB_PORTS")) && (rc = fab__env_ports(st, v)))
		return rc;
	if ((v = fab__env_opt("FAB_CTX")) && (rc = fab__env_name("FAB_CTX", v, st->ctx_name)))
		return rc;
	if ((v = fab__env_opt("FAB_ERRORS")) && (rc = fab__env_name("FAB_ERRORS", v, st->err_name)))
		return rc;
	/* FNV-1a, exactly as chan.c hashes FAB_PRODUCER_ID, so a handle the
	 * stage opens itself with fab_chan_open under fabd's environment is
	 * the same producer as the stage's own output handles. */
	st->producer_id = fab__producer_hash(st->producer);
	return 0;
}

/* Re-issue the current failure with a prefix naming where it arose. */
static int fab__stage_fail(int rc, const char *fmt, const char *a, const char *b)
{
	char detail[256], where[160];
	snprintf(detail, sizeof detail, "%s", fab_errmsg());
	snprintf(where, sizeof where, fmt, a, b);
	return fab__err(rc, "%s: %s", where, detail);
}

/* ---- the stage table ------------------------------------------------------- */

/*
 * Find the LIVE entry named `name`, or create it (layout.h fab_stage_ent:
 * entries are claimed in index order and never freed, so two openers of one
 * name meet at the same entry).  Returns 0 and the entry, FAB_ENOMEM when
 * the table is full, FAB_EBUSY when a live creator does not finish within
 * 5 s (stopped by a signal).
 */
static int fab__stage_ent_get(fab_fabric *fab, const char *name, fab_stage_ent **out)
{
	fab_stage_ent *t = (fab_stage_ent *)((uint8_t *)fab->ctl.base + FAB_CTL_STAGES_OFF);
	int64_t give_up = 0;
	uint32_t i = 0;
	while (i < FAB_MAX_STAGES) {
		fab_stage_ent *e = &t[i];
		/* Acquire: pairs with the creator's store_release of LIVE
		 * below, so its name is visible. */
		if (load_acquire(&e->state) == FAB_ENT_LIVE) {
			char n[sizeof e->name];
			memcpy(n, e->name, sizeof n);
			n[sizeof n - 1] = 0; /* shared memory: bound it */
			if (strcmp(n, name) == 0) {
				*out = e;
				return 0;
			}
			i++;
			continue;
		}
		/* Acquire: a dead creator's partial name writes are ordered
		 * before our takeover's rewrite of them. */
		uint32_t own = load_acquire(&e->owner);
		if (own == 0 || (own != fab->tag && !fab__tag_alive(fab, own))) {
			/* Free, or its creator died before LIVE: claim it.
			 * The CAS (acq_rel) makes exactly one claimer the
			 * writer of the name; a loser looks at the entry
			 * again. */
			if (!cas(&e->owner, &own, fab->tag))
				continue;
			memset(e->name, 0, sizeof e->name);
			memcpy(e->name, name, strlen(name));
			/* Relaxed: published by the release of LIVE below. */
			fetch_add_relaxed(&e->gen, 1);
			/* Release: pairs with the load_acquire of state above
			 * in every other opener; the name is visible first. */
			store_release(&e->state, FAB_ENT_LIVE);
			*out = e;
			return 0;
		}
		/* A live process is writing this entry's name: it turns LIVE
		 * within a few instructions unless that process is stopped. */
		int64_t now = fab__now_ns();
		if (!give_up)
			give_up = now + 5000000000LL;
		if (now >= give_up)
			return fab__err(FAB_EBUSY, "stage table entry %u: its creator does not finish", i);
		sched_yield();
	}
	return fab__err(FAB_ENOMEM, "stage table of fabric %s is full (%u stages)", fab->name,
			FAB_MAX_STAGES);
}

/* The LIVE entry named `name`, or NULL: a lookup that creates nothing. */
static fab_stage_ent *fab__stage_ent_find(fab_fabric *fab, const char *name)
{
	fab_stage_ent *t = (fab_stage_ent *)((uint8_t *)fab->ctl.base + FAB_CTL_STAGES_OFF);
	for (uint32_t i = 0; i < FAB_MAX_STAGES; i++) {
		/* Acquire: pairs with the creator's store_release of LIVE in
		 * fab__stage_ent_get, so its name is visible. */
		if (load_acquire(&t[i].state) != FAB_ENT_LIVE)
			continue;
		char n[sizeof t[i].name];
		memcpy(n, t[i].name, sizeof n);
		n[sizeof n - 1] = 0; /* shared memory: bound it */
		if (strcmp(n, name) == 0)
			return &t[i];
	}
	return NULL;
}

/*
 * A supervisor marks replica `replica` of stage `stage` as being stopped in
 * order to be run again (on), or no longer (off): docs/stage.md "Restarts".
 * Marking finds or creates the stage's entry (a replica that has not opened
 * the stage yet finds the mark when it does); unmarking creates nothing.
 */
int fab_stage_restarting(fab_fabric *fab, const char *stage, uint32_t replica, int on)
{
	int rc;
	if ((rc = fab__fabric_valid(fab)))
		return rc;
	if (!fab__name_ok(stage))
		return fab__err(FAB_EINVAL, "bad stage name (want [A-Za-z0-9_-]{1,48})");
	if (replica >= FAB__RESTARTING_BITS)
		return fab__err(FAB_EINVAL, "replica %u: only replicas 0..%u can be marked", replica,
				FAB__RESTARTING_BITS - 1);
	fab_stage_ent *e;
	if (on) {
		if ((rc = fab__stage_ent_get(fab, stage, &e)))
			return rc;
		/* seq_cst: the supervisor marks before it signals the replica
		 * (pidfd_send_signal, after this returns); the replica's
		 * fab_stage_close loads the word with acquire after the signal
		 * arrived, and the kernel orders the signal after this store.
		 * Only the bit is published: nothing else is read through it. */
		atomic_fetch_or_explicit(&e->restarting, 1ull << replica, memory_order_seq_cst);
	} else if ((e = fab__stage_ent_find(fab, stage))) {
		/* seq_cst, as above: the supervisor unmarks before it starts
		 * the next process of the replica (fork after this returns), or
		 * before a stop that must close (scale down, drain), so that
		 * process's fab_stage_close sees the bit clear. */
		atomic_fetch_and_explicit(&e->restarting, ~(1ull << replica), memory_order_seq_cst);
	}
	return 0;
}

/* ---- handle ------------------------------------------------------------------ */

static int fab__stage_valid(fab_stage *st)
{
	if (!st)
		return fab__err(FAB_EINVAL, "NULL stage handle");
	if (st->fork_gen != load_relaxed(&fab__fork_gen))
		return fab__err(FAB_EINVAL, "stage handle inherited across fork(); open a new one");
	return 0;
}

/* Release every handle (in a child after fork the release functions free
 * only local memory) and free the stage.  Closes nothing. */
static void fab__stage_free(fab_stage *st)
{
	for (int i = 0; i < st->nports; i++)
		fab_chan_release(st->ports[i].ch);
	fab_chan_release(st->errors);
	fab_ctx_release(st->ctx);
	fab_fabric_close(st->fab);
	pthread_mutex_destroy(&st->err_lock);
	free(st);
}

int fab_stage_open(fab_stage **out)
{
	int rc;
	if (!out)
		return fab__err(FAB_EINVAL, "NULL out pointer");
	*out = NULL;
	fab_stage *st = calloc(1, sizeof *st);
	if (!st)
		return fab__err(FAB_ENOMEM, "out of memory");
	st->fork_gen = load_relaxed(&fab__fork_gen);
	pthread_mutex_init(&st->err_lock, NULL);
	if ((rc = fab__stage_parse(st)))
		goto fail;
	if ((rc = fab_fabric_open(st->fabric, 0, &st->fab))) {
		rc = fab__stage_fail(rc, "FAB_FABRIC=%s%s", st->fabric, "");
		goto fail;
	}
	if ((rc = fab__stage_ent_get(st->fab, st->stage, &st->ent))) {
		rc = fab__stage_fail(rc, "FAB_STAGE=%s%s", st->stage, "");
		goto fail;
	}
	if (st->ctx_name[0])
		rc = fab_ctx_open(st->fab, st->ctx_name, &st->ctx);
	else /* a private context that never ends unless the stage cancels it */
		rc = fab_ctx_with_timeout(NULL, INT64_MAX, &st->ctx);
	if (rc) {
		rc = fab__stage_fail(rc, "FAB_CTX=%s%s", st->ctx_name, "");
		goto fail;
	}
	for (int i = 0; i < st->nports; i++) {
		fab__port *p = &st->ports[i];
		if ((rc = fab_chan_open(st->fab, p->obj, p->dir, &p->ch))) {
			rc = fab__stage_fail(rc, "FAB_PORTS: port %s=%s", p->name, p->obj);
			goto fail;
		}
		if (p->dir == FAB_SEND)
			p->ch->producer_id = st->producer_id; /* the replica closes, not the handle */
	}
	if (st->err_name[0]) {
		if ((rc = fab_chan_open(st->fab, st->err_name, FAB_SEND, &st->errors))) {
			rc = fab__stage_fail(rc, "FAB_ERRORS=%s%s", st->err_name, "");
			goto fail;
		}
		if (st->errors->msg_size < sizeof(fab_stage_err)) {
			rc = fab__err(FAB_EINVAL,
				      "FAB_ERRORS=%s: the channel's msg_size %u is below the %zu bytes "
				      "of a fab_stage_err record",
				      st->err_name, st->errors->msg_size, sizeof(fab_stage_err));
			goto fail;
		}
	}
	/* Counters for inspectors: relaxed, nothing is ordered by them. */
	fetch_add_relaxed(&st->ent->opens, 1);
	/* Which stage and replica this process is (fabctl ps, fabd's watchdog).
	 * Replica before stage, release: a reader that sees the stage with
	 * acquire sees the replica. */
	fab_proc_ent *me = &st->fab->procs[st->fab->proc_idx];
	store_relaxed(&me->replica, st->replica);
	store_release(&me->stage, (uint32_t)(st->ent - (fab_stage_ent *)((uint8_t *)st->fab->hdr +
									  FAB_CTL_STAGES_OFF)) + 1);
	uint32_t seen = load_relaxed(&st->ent->replicas_seen);
	while (seen < st->replica + 1 &&
	       !atomic_compare_exchange_weak_explicit(&st->ent->replicas_seen, &seen,
						      st->replica + 1, memory_order_relaxed,
						      memory_order_relaxed)) {
	}
	*out = st;
	return 0;
fail:
	fab__stage_free(st);
	return rc;
}

static fab_chan *fab__stage_port(fab_stage *st, const char *port, unsigned dir)
{
	if (fab__stage_valid(st))
		return NULL;
	if (!port) {
		fab__err(FAB_EINVAL, "NULL port name");
		return NULL;
	}
	for (int i = 0; i < st->nports; i++)
		if (st->ports[i].dir == dir && strcmp(st->ports[i].name, port) == 0)
			return st->ports[i].ch;
	fab__err(FAB_EINVAL, "stage %s has no %s port \"%.*s\" (FAB_PORTS)", st->stage,
		 dir == FAB_RECV ? "in" : "out", FAB__SHOW, port);
	return NULL;
}

fab_chan *fab_stage_in(fab_stage *st, const char *port)
{
	return fab__stage_port(st, port, FAB_RECV);
}

fab_chan *fab_stage_out(fab_stage *st, const char *port)
{
	return fab__stage_port(st, port, FAB_SEND);
}

fab_ctx *fab_stage_ctx(fab_stage *st)
{
	return fab__stage_valid(st) ? NULL : st->ctx;
}

int fab_stage_error(fab_stage *st, int code, const char *fmt, ...)
{
	int rc;
	if ((rc = fab__stage_valid(st)))
		return rc;
	if (!fmt)
		return fab__err(FAB_EINVAL, "NULL format");
	fab_stage_err rec;
	memset(&rec, 0, sizeof rec);
	rec.size = sizeof rec;
	rec.time_ns = fab__realtime_ns();
	rec.pid = (uint32_t)getpid();
	rec.replica = st->replica;
	rec.code = code;
	memcpy(rec.stage, st->stage, strlen(st->stage));
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(rec.text, sizeof rec.text, fmt, ap);
	va_end(ap);
	if (n < 0) {
		n = 0;
		rec.text[0] = 0;
	}
	if ((size_t)n >= sizeof rec.text) {
		rec.flags |= FAB_STAGE_ERR_TRUNCATED;
		n = (int)sizeof rec.text - 1;
	}
	rec.text_len = (uint32_t)n;

	/* Counted before the send: the counter's relaxed increment is
	 * sequenced before the send's release publication, so a receiver of
	 * the record that then reads the counter sees it counted. */
	fab_stage_ent *e = st->ent;
	fetch_add_relaxed(&e->errors, 1);
	store_relaxed(&e->last_code, code);
	store_relaxed(&e->last_error_ns, rec.time_ns);
	if (!st->errors)
		return 0; /* no error channel: counted only */

	pthread_mutex_lock(&st->err_lock);
	rc = fab_try_send(st->errors, &rec, sizeof rec);
	pthread_mutex_unlock(&st->err_lock);
	if (rc == 0)
		return 0;
	fetch_add_relaxed(&e->errors_dropped, 1);
	if (rc == FAB_EAGAIN)
		return fab__err(FAB_EAGAIN, "error channel %s is full: record dropped (counted)",
				st->err_name);
	return fab__stage_fail(rc, "error channel %s%s: record dropped (counted)", st->err_name, "");
}

/* Is this replica being stopped by its supervisor to be run again
 * (fab_stage_restarting)?  Replicas beyond the mask's 64 bits never are. */
static int fab__stage_restarting(fab_stage *st)
{
	if (st->replica >= FAB__RESTARTING_BITS)
		return 0;
	/* Acquire: pairs with the supervisor's seq_cst fetch_or, made before
	 * it signalled this process to stop; a mark set after we read it
	 * (a stop that raced with our own finish) is too late, and our close
	 * counts, as a producer that finished first.  Only the bit is read. */
	return (int)((load_acquire(&st->ent->restarting) >> st->replica) & 1u);
}

void fab_stage_close(fab_stage *st)
{
	if (!st)
		return;
	if (st->fork_gen == load_relaxed(&fab__fork_gen) && !fab__stage_restarting(st)) {
		/* This replica is done producing: close each output (Go's
		 * close).  FAB_ECLOSED means this replica, or the quorum,
		 * already closed it (a restart): nothing to do.  Other errors
		 * cannot be acted on here; the handles are released anyway.
		 * A replica its supervisor is restarting is not done: it only
		 * releases its handles, and the next process of the replica
		 * closes (docs/stage.md "Restarts"). */
		for (int i = 0; i < st->nports; i++)
			if (st->ports[i].dir == FAB_SEND && st->ports[i].ch)
				(void)fab_chan_close(st->ports[i].ch);
	}
	fab__stage_free(st);
}
