/*
 * ctx.c - contexts: cancellation scopes.
 *
 * A shared context is an entry of the fabric's context table: a futex word
 * (0 = live, else how it ended), the cancel reason and the parent's index.
 * Cancelling one writes its word and every descendant's word, then wakes all
 * sleepers on them, so every process blocked under any of them returns at
 * once.  A cancelled context never un-cancels (the word only goes 0 -> end).
 *
 * A local context (fab_ctx_with_timeout) lives in the caller's memory: a
 * deadline plus an optional parent.  Blocking calls sleep on the channel word
 * and on the chain's words together, with the earliest deadline as timeout.
 */
#include "internal.h"

#include <sched.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define FAB__CTX_LIVE 0u
#define FAB__CTX_CANCELED 1u
#define FAB__CTX_EXPIRED 2u
#define FAB__CTX_ENDING 3u /* cancel claimed, reason being written */

static int fab__ctx_code(uint32_t w)
{
	return w == FAB__CTX_EXPIRED ? FAB_ETIMEDOUT : w ? FAB_ECANCELED : 0;
}

/*
 * End a context once: the first ender claims the word (0 -> ENDING), writes
 * the reason, then store-releases the final code, so the first reason is the
 * one that stays and a reader that sees the code sees its reason.  Returns 1
 * if this call ended it.
 */
static int fab__ctx_end(_Atomic uint32_t *word, _Atomic int32_t *rsn, uint32_t code, int reason,
			int64_t *end_ns, int64_t when)
{
	uint32_t z = 0;
	if (!atomic_compare_exchange_strong_explicit(word, &z, FAB__CTX_ENDING,
						     memory_order_acquire, memory_order_relaxed))
		return 0;
	store_relaxed(rsn, reason);
	/* Relaxed: like the reason, published by the release store below. */
	__atomic_store_n(end_ns, when, __ATOMIC_RELAXED);
	/* Pairs with the load_acquire of the word in fab__ctx_state: reason
	 * and end time are visible once the code is. */
	store_release(word, code);
	return 1;
}

int fab__ctx_fail(int code)
{
	return fab__err(code, "%s",
			code == FAB_ETIMEDOUT ? "deadline exceeded" : "context canceled");
}

int fab__ctx_valid(fab_ctx *ctx)
{
	if (!ctx)
		return fab__err(FAB_EINVAL, "NULL context");
	if (ctx->fork_gen != load_relaxed(&fab__fork_gen))
		return fab__err(FAB_EINVAL, "context inherited across fork(); open a new one");
	return 0;
}

static fab_ctx_ent *fab__ctx_ent(fab_ctx *ctx)
{
	return &ctx->fab->ctxs[ctx->idx];
}

/* The shared word, or NULL if the entry was reused (then the context is
 * treated as cancelled: its scope no longer exists). */
static _Atomic uint32_t *fab__ctx_word(fab_ctx *ctx)
{
	if (ctx->type == FAB__CTX_LOCAL)
		return &ctx->cancel;
	fab_ctx_ent *e = fab__ctx_ent(ctx);
	if (load_acquire(&e->gen) != ctx->gen)
		return NULL;
	return &e->cancel;
}

/* How ctx ended: code (0 live), when, reason.  A local context latches its
 * first end: its parent's if that came before its deadline. */
static int fab__ctx_state(fab_ctx *ctx, int64_t *when, int *reason, int depth)
{
	if (!ctx || depth > 64)
		return 0;
	if (ctx->type == FAB__CTX_SHARED) {
		_Atomic uint32_t *w = fab__ctx_word(ctx);
		if (!w) {
			*when = INT64_MIN;
			*reason = 0;
			return FAB_ECANCELED;
		}
		uint32_t v = load_acquire(w);
		for (int spin = 0; v == FAB__CTX_ENDING && spin < 100000; spin++) {
			cpu_relax();
			v = load_acquire(w);
		}
		if (!v)
			return 0;
		fab_ctx_ent *e = fab__ctx_ent(ctx);
		*when = __atomic_load_n(&e->end_ns, __ATOMIC_RELAXED);
		*reason = load_relaxed(&e->reason);
		return fab__ctx_code(v);
	}
	uint32_t v = load_acquire(&ctx->cancel);
	for (int spin = 0; v == FAB__CTX_ENDING && spin < 100000; spin++) {
		cpu_relax();
		v = load_acquire(&ctx->cancel);
	}
	if (!v) {
		int64_t pw = 0;
		int pr = 0;
		int pc = fab__ctx_state(ctx->parent, &pw, &pr, depth + 1);
		if (pc && pw < ctx->deadline_ns)
			fab__ctx_end(&ctx->cancel, &ctx->reason,
				     pc == FAB_ETIMEDOUT ? FAB__CTX_EXPIRED : FAB__CTX_CANCELED, pr,
				     &ctx->end_ns, pw);
		else if (ctx->deadline_ns != INT64_MAX && fab__now_ns() >= ctx->deadline_ns)
			fab__ctx_end(&ctx->cancel, &ctx->reason, FAB__CTX_EXPIRED, 0, &ctx->end_ns,
				     ctx->deadline_ns);
		v = load_acquire(&ctx->cancel);
		for (int spin = 0; v == FAB__CTX_ENDING && spin < 100000; spin++) {
			cpu_relax();
			v = load_acquire(&ctx->cancel);
		}
		if (!v)
			return 0;
	}
	*when = ctx->end_ns;
	*reason = load_relaxed(&ctx->reason);
	return fab__ctx_code(v);
}

int fab__ctx_done(fab_ctx *ctx)
{
	int64_t w;
	int r;
	return fab__ctx_state(ctx, &w, &r, 0);
}

void fab__ctx_arm(fab_ctx *ctx, fab__waitset *ws)
{
	for (int depth = 0; ctx && depth < 64; depth++, ctx = ctx->parent) {
		_Atomic uint32_t *w = fab__ctx_word(ctx);
		if (w && ws->n < FAB__WAIT_MAX) {
			ws->word[ws->n] = w;
			ws->val[ws->n] = 0; /* sleep only while still live */
			ws->n++;
		}
		if (ctx->type == FAB__CTX_LOCAL && ctx->deadline_ns < ws->deadline_ns)
			ws->deadline_ns = ctx->deadline_ns;
		if (ctx->type == FAB__CTX_SHARED)
			break;
	}
}

static int fab__ctx_find(fab_fabric *fab, const char *name, uint32_t skip)
{
	for (uint32_t i = 0; i < FAB_MAX_CTXS; i++) {
		if (i == skip)
			continue;
		fab_ctx_ent *e = &fab->ctxs[i];
		if (load_acquire(&e->state) != FAB_ENT_LIVE)
			continue;
		if (strncmp(e->name, name, sizeof e->name) == 0)
			return (int)i;
	}
	return -1;
}

static fab_ctx *fab__ctx_new(int type)
{
	fab_ctx *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->type = type;
	c->fork_gen = load_relaxed(&fab__fork_gen);
	c->deadline_ns = INT64_MAX;
	atomic_init(&c->refs, 1);
	return c;
}

/* Drop one reference; the last frees the context and drops its own
 * reference on its parent, and so on up a chain of local contexts. */
static void fab__ctx_unref(fab_ctx *c)
{
	while (c) {
		/* acq_rel: the last holder sees every other holder's writes
		 * before it frees (as fab__fabric_unref). */
		if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
			return;
		fab_ctx *up = c->type == FAB__CTX_LOCAL ? c->parent : NULL;
		if (c->type == FAB__CTX_SHARED && c->fab)
			fab__fabric_unref(c->fab);
		free(c);
		c = up;
	}
}

/* Cancel entry i and its whole subtree with end code `code`.  The work list
 * lives on the stack (4 KiB): a cancel must never fail for lack of memory,
 * and it must reach every descendant, because waiters watch only their own
 * context's word.  Regression: fault_inject t_ctx_cancel_no_memory. */
static void fab__ctx_cancel_tree(fab_fabric *fab, uint32_t root, uint32_t code, int reason)
{
	uint32_t stack[FAB_MAX_CTXS];
	uint64_t seen[FAB_MAX_CTXS / 64] = {0};
	uint32_t top = 0;
	if (root >= FAB_MAX_CTXS)
		return;
	stack[top++] = root;
	seen[root / 64] |= 1ULL << (root % 64);
	while (top) {
		uint32_t i = stack[--top];
		fab_ctx_ent *e = &fab->ctxs[i];
		/* End it unless someone did, then wake and walk it either way:
		 * an ender killed between its end and its wake, or in the middle
		 * of the walk, left sleepers and live descendants behind.  Ending
		 * and waking twice is harmless; `seen` bounds the walk.  The root
		 * ends with our code and reason, a descendant with what its
		 * parent ended with (so a no-op cancel of an ended context never
		 * lends its reason to the subtree). */
		fab__ctx_end(&e->cancel, &e->reason, code, reason, &e->end_ns, fab__now_ns());
		fab__futex_wake(&e->cancel, INT_MAX);
		uint32_t v = load_acquire(&e->cancel);
		for (int spin = 0; v == FAB__CTX_ENDING && spin < 100000; spin++) {
			cpu_relax();
			v = load_acquire(&e->cancel);
		}
		uint32_t ccode = v == FAB__CTX_EXPIRED ? FAB__CTX_EXPIRED : FAB__CTX_CANCELED;
		int creason = load_relaxed(&e->reason);
		/* Dekker with fab_ctx_create (a store of LIVE, then a load of the
		 * parent's word): our end of the word comes before our loads of
		 * the children's states, so either we see a new child or it sees
		 * its parent ended.  Pairs with the fence there. */
		atomic_thread_fence(memory_order_seq_cst);
		uint32_t first = top;
		for (uint32_t j = 0; j < FAB_MAX_CTXS && top < FAB_MAX_CTXS; j++) {
			fab_ctx_ent *c = &fab->ctxs[j];
			if (j != i && !(seen[j / 64] >> (j % 64) & 1) &&
			    load_acquire(&c->state) == FAB_ENT_LIVE && load_relaxed(&c->parent) == i + 1) {
				seen[j / 64] |= 1ULL << (j % 64);
				stack[top++] = j;
			}
		}
		/* The children end with this node's end (done here, before any
		 * of them is popped, so `code`/`reason` stay the root's only). */
		for (uint32_t k = first; k < top; k++) {
			fab_ctx_ent *c = &fab->ctxs[stack[k]];
			fab__ctx_end(&c->cancel, &c->reason, ccode, creason, &c->end_ns, fab__now_ns());
		}
	}
}

/* fab_fabric_recover: finish every cancel a dead canceller may have left
 * half done (the word ended, no wake, descendants live). */
void fab__ctx_recover(fab_fabric *fab)
{
	for (uint32_t i = 0; i < FAB_MAX_CTXS; i++) {
		fab_ctx_ent *e = &fab->ctxs[i];
		if (load_acquire(&e->state) != FAB_ENT_LIVE)
			continue;
		uint32_t w = load_acquire(&e->cancel);
		if (w == FAB__CTX_LIVE)
			continue;
		fab__ctx_cancel_tree(fab, i, w == FAB__CTX_EXPIRED ? FAB__CTX_EXPIRED : FAB__CTX_CANCELED,
				     load_relaxed(&e->reason));
	}
}

/*
 * Two processes may create one name at once.  Each writes its entry
 * (CREATING, name, owner), fences, then looks for the other: a LIVE entry of
 * the name means it exists; a CREATING one of a live creator at a lower
 * index wins; one at a higher index is waited for (it sees us and yields,
 * or goes LIVE and we yield).  A creator that died never goes LIVE.  So
 * exactly one succeeds (the protocol of limiter.c's fab__lim_resolve).
 */
static int fab__ctx_resolve(fab_fabric *fab, uint32_t i, const char *name)
{
	int64_t give_up = 0;
	for (uint32_t j = 0; j < FAB_MAX_CTXS; j++) {
		if (j == i)
			continue;
		fab_ctx_ent *e = &fab->ctxs[j];
		for (;;) {
			/* Acquire: pairs with the other creator's CAS and release
			 * of the state, so its name is visible. */
			uint32_t st = load_acquire(&e->state);
			if (st != FAB_ENT_CREATING && st != FAB_ENT_LIVE)
				break;
			if (strncmp(e->name, name, sizeof e->name) != 0)
				break;
			if (st == FAB_ENT_LIVE)
				return fab__err(FAB_EEXIST, "context %s exists", name);
			uint32_t owner = load_relaxed(&e->owner);
			if (owner == 0 || !fab__tag_alive(fab, owner))
				break; /* its creator died (or is not yet owner): never LIVE */
			if (j < i)
				return fab__err(FAB_EEXIST, "context %s is being created", name);
			int64_t now = fab__now_ns();
			if (!give_up)
				give_up = now + 5000000000LL;
			if (now >= give_up)
				return fab__err(FAB_EBUSY, "context %s: a concurrent creator does not finish",
						name);
			sched_yield();
		}
	}
	return 0;
}

int fab_ctx_create(fab_fabric *fab, const char *name, fab_ctx *parent, fab_ctx **out)
{
	int rc;
	if (out)
		*out = NULL; /* on every failure, *out is NULL */
	if ((rc = fab__named_args(fab, name, out, "context")))
		return rc;
	if (parent) {
		if ((rc = fab__ctx_valid(parent)))
			return rc;
		/* The same fabric is the same control segment, not the same
		 * name: a context of a fabric destroyed and made again under
		 * its name would link the child to whatever context sits at
		 * its index in the new table (found by a user trial). */
		if (parent->type != FAB__CTX_SHARED || parent->fab->ctl.base == NULL ||
		    !fab__seg_same(&parent->fab->ctl, &fab->ctl))
			return fab__err(FAB_EINVAL,
					"parent of a shared context must be a shared context of the "
					"same fabric (not of another fabric, nor of one destroyed "
					"since, even under the same name)");
	}
	if (fab__ctx_find(fab, name, UINT32_MAX) >= 0)
		return fab__err(FAB_EEXIST, "context %s exists", name);
	fab_ctx *c = fab__ctx_new(FAB__CTX_SHARED);
	if (!c)
		return fab__err(FAB_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < FAB_MAX_CTXS; i++) {
		fab_ctx_ent *e = &fab->ctxs[i];
		/* Tag first (fab__ent_claim): a creator killed anywhere leaves
		 * nothing CREATING without its tag, which recovery could never
		 * free (until 1.6.1 a kill between the claim and the tag, or
		 * between clearing the tag and FREE, leaked the entry). */
		if (!fab__ent_claim(fab, &e->state, &e->owner))
			continue;
		memset(e->name, 0, sizeof e->name);
		memcpy(e->name, name, strlen(name));
		store_relaxed(&e->cancel, 0);
		store_relaxed(&e->reason, 0);
		store_relaxed(&e->parent, parent ? parent->idx + 1 : 0);
		/* Our CREATING entry and its name before our scan for another
		 * creator of the name; pairs with the same fence in theirs
		 * (Dekker: at least one of us sees the other). */
		atomic_thread_fence(memory_order_seq_cst);
		if ((rc = fab__ctx_resolve(fab, i, name))) {
			store_release(&e->state, FAB_ENT_FREE);
			fab__ent_unown(&e->owner, fab->tag);
			free(c);
			return rc;
		}
		uint64_t gen = atomic_fetch_add_explicit(&e->gen, 1, memory_order_relaxed) + 1;
		/* Release: name, words and parent are visible before LIVE. */
		store_release(&e->state, FAB_ENT_LIVE);
		/* LIVE before our later look at the parent's word (the born-
		 * cancelled check below); pairs with the fence in
		 * fab__ctx_cancel_tree. */
		atomic_thread_fence(memory_order_seq_cst);
		c->fab = fab;
		c->idx = i;
		c->gen = gen;
		fab__fabric_ref(fab);
		/* Born under a cancelled parent: cancelled too (Go's WithCancel
		 * of a done context). */
		if (parent) {
			int perr = fab__ctx_done(parent);
			if (perr)
				fab__ctx_cancel_tree(fab, i,
						     perr == FAB_ETIMEDOUT ? FAB__CTX_EXPIRED
									   : FAB__CTX_CANCELED,
						     fab_ctx_reason(parent));
		}
		*out = c;
		return 0;
	}
	free(c);
	return fab__err(FAB_ENOMEM, "context table of fabric %s is full", fab->name);
}

int fab_ctx_open(fab_fabric *fab, const char *name, fab_ctx **out)
{
	int rc;
	if (out)
		*out = NULL; /* on every failure, *out is NULL */
	if ((rc = fab__named_args(fab, name, out, "context")))
		return rc;
	int i = fab__ctx_find(fab, name, UINT32_MAX);
	if (i < 0)
		return fab__err(FAB_ENOENT, "no context named %s", name);
	fab_ctx *c = fab__ctx_new(FAB__CTX_SHARED);
	if (!c)
		return fab__err(FAB_ENOMEM, "out of memory");
	c->fab = fab;
	c->idx = (uint32_t)i;
	c->gen = load_acquire(&fab->ctxs[i].gen);
	fab__fabric_ref(fab);
	*out = c;
	return 0;
}

int fab_ctx_with_timeout(fab_ctx *parent, int64_t ns, fab_ctx **out)
{
	int rc;
	if (!out)
		return fab__err(FAB_EINVAL, "NULL out pointer");
	*out = NULL;
	if (parent && (rc = fab__ctx_valid(parent)))
		return rc;
	fab_ctx *c = fab__ctx_new(FAB__CTX_LOCAL);
	if (!c)
		return fab__err(FAB_ENOMEM, "out of memory");
	int64_t now = fab__now_ns();
	c->deadline_ns = ns <= 0 ? now : (ns > INT64_MAX - now ? INT64_MAX : now + ns);
	/* Relaxed: the caller holds a reference to parent, so it cannot go
	 * to zero meanwhile (as any reference count's increment). */
	if (parent)
		atomic_fetch_add_explicit(&parent->refs, 1, memory_order_relaxed);
	c->parent = parent;
	*out = c;
	return 0;
}

int fab_ctx_cancel(fab_ctx *ctx, int reason)
{
	int rc;
	if ((rc = fab__ctx_valid(ctx)))
		return rc;
	if (ctx->type == FAB__CTX_LOCAL) {
		if (fab__ctx_done(ctx))
			return 0; /* already ended: only the first end counts */
		if (fab__ctx_end(&ctx->cancel, &ctx->reason, FAB__CTX_CANCELED, reason,
				 &ctx->end_ns, fab__now_ns()))
			fab__futex_wake(&ctx->cancel, INT_MAX);
		return 0;
	}
	if (!fab__ctx_word(ctx))
		return fab__err(FAB_ENOENT, "context no longer exists");
	fab__ctx_cancel_tree(ctx->fab, ctx->idx, FAB__CTX_CANCELED, reason);
	return 0;
}

int fab_ctx_err(fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__ctx_valid(ctx)))
		return rc;
	/* A long computation that checks its context is alive (watchdog). */
	for (fab_ctx *c = ctx; c; c = c->type == FAB__CTX_LOCAL ? c->parent : NULL)
		if (c->type == FAB__CTX_SHARED) {
			fab__pulse(fab__calls(c->fab));
			break;
		}
	rc = fab__ctx_done(ctx);
	return rc ? fab__ctx_fail(rc) : 0;
}

int fab_ctx_reason(fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__ctx_valid(ctx)))
		return rc;
	int64_t w;
	int r = 0;
	return fab__ctx_state(ctx, &w, &r, 0) ? r : 0;
}

int fab_ctx_wait(fab_ctx *ctx)
{
	int rc;
	if ((rc = fab__ctx_valid(ctx)))
		return rc;
	/* The wait record names the nearest shared context (a local one's
	 * deadline has no table entry); none: no fabric to record in. */
	fab_fabric *fab = NULL;
	uint64_t what = 0;
	for (fab_ctx *c = ctx; c; c = c->type == FAB__CTX_LOCAL ? c->parent : NULL)
		if (c->type == FAB__CTX_SHARED) {
			fab = c->fab;
			what = FAB_WAIT_MAKE(FAB_WAIT_CTX, 0, 1, c->idx);
			fab__pulse(fab__calls(fab));
			fab__wait_mark(fab, what);
			break;
		}
	for (;;) {
		if ((rc = fab__ctx_done(ctx))) {
			rc = fab__ctx_fail(rc);
			break;
		}
		fab__waitset ws = {.n = 0, .deadline_ns = INT64_MAX};
		fab__ctx_arm(ctx, &ws);
		rc = fab__futex_waitv(&ws);
		if (rc == FAB_ESYS)
			break;
	}
	if (fab)
		fab__wait_unmark(fab, what);
	return rc;
}

void fab_ctx_release(fab_ctx *ctx)
{
	if (!ctx || ctx->released)
		return;
	/* The handle is the user's no more; children made under it keep it
	 * allocated (and working for them) until they are released. */
	ctx->released = true;
	fab__ctx_unref(ctx);
}
