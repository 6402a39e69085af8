/*
 * fabric_test.c - unit suite for fabrics: fab_fabric_open/close/destroy,
 * names, the segments in /dev/shm, the registry's size and the process table.
 *
 * What a user relies on: a fabric is found by name from any process, a
 * missing one is FAB_ENOENT unless FAB_CREATE, a bad name is refused before
 * anything is created, segments are private (0600), destroy removes every
 * segment, and a fabric holds 1024 channels and 1024 attached processes.
 */
#include "unit.h"

#include <grp.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* ---- open / close / destroy ------------------------------------------- */

START_TEST(t_open_missing)
{
	const char *n = ut_fabric_name();
	fab_fabric *f = (fab_fabric *)0x1;
	UT_RC(fab_fabric_open(n, 0, &f), FAB_ENOENT);
	ck_assert_msg(!ut_shm_exists(n, NULL), "open without FAB_CREATE created a segment");
	ck_assert_ptr_nonnull(fab_errmsg());
	ck_assert_msg(fab_errmsg()[0] != '\0', "no detail message for FAB_ENOENT");
	UT_RC(fab_fabric_destroy(n), FAB_ENOENT);
}
END_TEST

START_TEST(t_create_segment)
{
	/* The fixture created fname with FAB_CREATE. */
	ck_assert_msg(ut_shm_exists(fname, NULL), "/dev/shm/fab.%s missing after create", fname);
	char p[128];
	struct stat st;
	snprintf(p, sizeof p, "/dev/shm/fab.%s", fname);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_msg((st.st_mode & 07777) == 0600, "mode %o, want 0600", st.st_mode & 07777);
	ck_assert_int_eq(st.st_uid, getuid());
	ck_assert_msg(S_ISREG(st.st_mode) && st.st_size > 0, "segment size %lld",
		      (long long)st.st_size);
	ck_assert_int_eq(ut_segments_of(fname), 1);
}
END_TEST

START_TEST(t_create_mode_ignores_umask)
{
	/* A permissive umask must not widen the mode; a strict one must not
	 * lock the owner out. */
	mode_t old = umask(0);
	const char *n = ut_fabric_name();
	fab_fabric *f = NULL;
	UT_RC(fab_fabric_open(n, FAB_CREATE, &f), 0);
	int m = ut_shm_mode(n, NULL);
	fab_chan *c = NULL;
	UT_RC(fab_chan_create(f, "c", NULL, &c), 0);
	int cm = ut_shm_mode(n, "c");
	fab_chan_release(c);
	fab_fabric_close(f);
	UT_RC(fab_fabric_destroy(n), 0);
	umask(old);
	ck_assert_msg(m == 0600, "fabric segment mode %o under umask 0, want 0600", m);
	ck_assert_msg(cm == 0600, "channel segment mode %o under umask 0, want 0600", cm);
}
END_TEST

/* FAB_MODE: a fabric shared with the creator's group, and what inherits
 * its mode (channels and topics created without one); an explicit mode
 * wins; an existing fabric keeps its mode; nonsense modes are refused. */
START_TEST(t_create_mode_shared)
{
	mode_t old = umask(077); /* a strict umask must not narrow it either */
	const char *n = ut_fabric_name();
	fab_fabric *f = NULL, *f2 = NULL;
	UT_RC(fab_fabric_open(n, FAB_CREATE | FAB_MODE(0660), &f), 0);
	int m = ut_shm_mode(n, NULL);
	fab_chan *c = NULL, *p = NULL;
	fab_topic *t = NULL;
	UT_RC(fab_chan_create(f, "c", NULL, &c), 0);
	fab_chan_opts po = {.size = sizeof po, .mode = 0600};
	UT_RC(fab_chan_create(f, "p", &po, &p), 0);
	UT_RC(fab_topic_create(f, "t", NULL, &t), 0);
	int cm = ut_shm_mode(n, "c"), pm = ut_shm_mode(n, "p"), tm = ut_shm_mode(n, "t");
	/* Opening the existing fabric with another mode changes nothing. */
	UT_RC(fab_fabric_open(n, FAB_CREATE | FAB_MODE(0666), &f2), 0);
	int m2 = ut_shm_mode(n, NULL);
	fab_topic_release(t);
	fab_chan_release(p);
	fab_chan_release(c);
	fab_fabric_close(f2);
	fab_fabric_close(f);
	UT_RC(fab_fabric_destroy(n), 0);
	umask(old);
	ck_assert_msg(m == 0660, "fabric segment mode %o, want 0660", m);
	ck_assert_msg(cm == 0660, "channel created without a mode: %o, want the fabric's 0660", cm);
	ck_assert_msg(pm == 0600, "channel created with 0600: %o", pm);
	ck_assert_msg(tm == 0660, "topic created without a mode: %o, want 0660", tm);
	ck_assert_msg(m2 == 0660, "existing fabric's mode changed to %o by a later open", m2);

	/* Modes a fabric cannot have: the owner must read and write its
	 * control segment, and execute bits mean nothing; and bits that are
	 * no flag at all. */
	static const unsigned bad[] = {0400, 0200, 0060, 0700, 0770, 0661};
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		f = (fab_fabric *)1;
		UT_RC(fab_fabric_open(n, FAB_CREATE | FAB_MODE(bad[i]), &f), FAB_EINVAL);
		ck_assert_ptr_null(f);
		ck_assert_msg(strstr(fab_errmsg(), "mode"), "mode %o: '%s'", bad[i],
			      fab_errmsg());
		ck_assert_msg(!ut_shm_exists(n, NULL), "mode %o created the fabric", bad[i]);
	}
	UT_RC(fab_fabric_open(n, FAB_CREATE | 0x100u, &f), FAB_EINVAL);
	UT_RC(fab_fabric_open(n, FAB_CREATE | (1u << 28), &f), FAB_EINVAL);
	ck_assert(!ut_shm_exists(n, NULL));
}
END_TEST

/* Another user in the creator's group (uid 65534 with group 0, the group
 * root's segments get) opens a 0660 fabric and a channel in it and sends;
 * against a 0600 fabric it gets FAB_EPERM.  Needs root to change users:
 * the README's commands and CI run as root. */
static int child_other_user(void *arg)
{
	const char *name = arg;
	fab_fabric *f = NULL;
	fab_chan *c = NULL;
	CHILD_CHECK(setgroups(0, NULL) == 0 && setgid(0) == 0 && setuid(65534) == 0, 10);
	CHILD_CHECK(geteuid() == 65534, 11);
	char priv[80];
	snprintf(priv, sizeof priv, "%s-p", name);
	CHILD_RC(fab_fabric_open(priv, 0, &f), FAB_EPERM, 12);
	CHILD_RC(fab_fabric_open(name, 0, &f), 0, 13);
	CHILD_RC(fab_chan_open(f, "g", FAB_SEND, &c), 0, 14);
	CHILD_RC(fab_send(c, "other-user", 10, NULL), 0, 15);
	fab_chan_release(c);
	/* A member may not remove what it does not own, and a refusal
	 * changes nothing (/dev/shm is sticky; until review, the channel's
	 * registry entry was freed first and the fabric half-removed). */
	CHILD_RC(fab_chan_destroy(f, "g"), FAB_EPERM, 16);
	CHILD_CHECK(strstr(fab_errmsg(), "uid 0"), 17);
	CHILD_RC(fab_fabric_destroy(name), FAB_EPERM, 18);
	fab_fabric_close(f);
	return 0;
}

/* A member whose primary group is not the fabric's (uid 65534, group
 * 65534, in group 0 too) creates a channel meant for the group: it gets
 * the fabric's group, not the member's. */
static int child_member_creates(void *arg)
{
	const char *name = arg;
	gid_t g0 = 0;
	fab_fabric *f = NULL;
	fab_chan *c = NULL;
	CHILD_CHECK(setgroups(1, &g0) == 0 && setgid(65534) == 0 && setuid(65534) == 0, 10);
	CHILD_RC(fab_fabric_open(name, 0, &f), 0, 11);
	fab_chan_opts o = {.size = sizeof o, .capacity = 4, .msg_size = 16, .mode = 0660};
	CHILD_RC(fab_chan_create(f, "m", &o, &c), 0, 12);
	CHILD_RC(fab_send(c, "member", 6, NULL), 0, 13);
	fab_chan_release(c);
	fab_fabric_close(f);
	return 0;
}

/* Another user plants a world-writable fabric under the name root is about
 * to use. */
static int child_squatter(void *arg)
{
	const char *name = arg;
	fab_fabric *f = NULL;
	CHILD_CHECK(setgroups(0, NULL) == 0 && setgid(65533) == 0 && setuid(65533) == 0, 10);
	CHILD_RC(fab_fabric_open(name, FAB_CREATE | FAB_MODE(0666), &f), 0, 11);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_group_shared_fabric)
{
	ck_assert_msg(geteuid() == 0, "this test changes users and needs root (CI runs as root)");
	const char *n = ut_fabric_name();
	char priv[80];
	snprintf(priv, sizeof priv, "%s-p", n);
	fab_fabric *f = NULL, *fp = NULL;
	fab_chan *g = NULL;
	UT_RC(fab_fabric_open(n, FAB_CREATE | FAB_MODE(0660), &f), 0);
	UT_RC(fab_fabric_open(priv, FAB_CREATE, &fp), 0);
	fab_chan_opts o = ut_opts(FAB_MPMC, 4, 16);
	UT_RC(fab_chan_create(f, "g", &o, &g), 0);
	pid_t pid = ft_spawn(child_other_user, (void *)n);
	ck_assert_int_gt(pid, 0);
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	char buf[16];
	ssize_t got = fab_try_recv(g, buf, sizeof buf);
	int nseg = ut_segments_of(n);
	fab_chan *g2 = NULL;
	int reopen = fab_chan_open(f, "g", FAB_RECV, &g2);
	fab_chan_release(g2);

	/* A member in the fabric's group by a supplementary group only. */
	pid_t pm = ft_spawn(child_member_creates, (void *)n);
	ck_assert_int_gt(pm, 0);
	int stm = 0;
	ck_assert_int_eq(waitpid(pm, &stm, 0), pm);
	char mp[160];
	struct stat msb = {0};
	snprintf(mp, sizeof mp, "/dev/shm/fab.%s.m", n);
	int mstat = stat(mp, &msb);

	/* A squatter's fabric: root may open it (it grants access), but what
	 * root creates in it does not inherit the squatter's 0666. */
	char sq[80];
	snprintf(sq, sizeof sq, "%s-s", n);
	pid_t ps = ft_spawn(child_squatter, sq);
	ck_assert_int_gt(ps, 0);
	int sts = 0;
	ck_assert_int_eq(waitpid(ps, &sts, 0), ps);
	fab_fabric *fs = NULL;
	fab_chan *cs = NULL;
	int sqo = fab_fabric_open(sq, FAB_CREATE, &fs);
	int sqc = sqo ? sqo : fab_chan_create(fs, "c", NULL, &cs);
	int sqm = ut_shm_mode(sq, "c");
	fab_chan_release(cs);
	fab_fabric_close(fs);
	fab_fabric_destroy(sq);

	fab_chan_release(g);
	fab_fabric_close(fp);
	fab_fabric_close(f);
	fab_fabric_destroy(priv);
	fab_fabric_destroy(n);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child as uid 65534: status %#x", st);
	ck_assert_int_eq(got, 10);
	ck_assert_int_eq(memcmp(buf, "other-user", 10), 0);
	ck_assert_msg(nseg == 2 && reopen == 0,
		      "after the member's refused destroys: %d segments (want 2), reopen %d", nseg,
		      reopen);
	ck_assert_msg(WIFEXITED(stm) && WEXITSTATUS(stm) == 0, "member creating: status %#x", stm);
	ck_assert_int_eq(mstat, 0);
	ck_assert_msg(msb.st_gid == 0 && msb.st_uid == 65534 && (msb.st_mode & 0777) == 0660,
		      "member's channel: uid %u gid %u mode %o (want 65534, the fabric's group 0, "
		      "0660)",
		      (unsigned)msb.st_uid, (unsigned)msb.st_gid, (unsigned)(msb.st_mode & 0777));
	ck_assert_msg(WIFEXITED(sts) && WEXITSTATUS(sts) == 0, "squatter: status %#x", sts);
	ck_assert_int_eq(sqo, 0);
	ck_assert_int_eq(sqc, 0);
	ck_assert_msg(sqm == 0600, "root's channel in a squatter's 0666 fabric: mode %o (want 0600)",
		      sqm);
}
END_TEST

START_TEST(t_reopen_same_process)
{
	fab_fabric *f2 = NULL, *f3 = NULL;
	UT_RC(fab_fabric_open(fname, 0, &f2), 0);
	ck_assert_ptr_nonnull(f2);
	/* FAB_CREATE on an existing fabric opens it. */
	UT_RC(fab_fabric_open(fname, FAB_CREATE, &f3), 0);
	ck_assert_ptr_nonnull(f3);

	/* A channel made through one handle is visible through the others. */
	fab_chan *c = NULL, *o = NULL;
	fab_chan_opts op = ut_opts(FAB_MPMC, 2, 8);
	UT_RC(fab_chan_create(fab, "shared", &op, &c), 0);
	UT_RC(fab_try_send(c, "abc", 3), 0);
	UT_RC(fab_chan_open(f2, "shared", FAB_RECV, &o), 0);
	char buf[8];
	UT_RC(fab_try_recv(o, buf, sizeof buf), 3);
	ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
	fab_chan_release(o);
	fab_chan_release(c);

	/* Closing one handle leaves the others working. */
	fab_fabric_close(f3);
	UT_RC(fab_chan_open(f2, "shared", FAB_SEND, &o), 0);
	fab_chan_release(o);
	fab_fabric_close(f2);

	/* Closing every handle keeps the fabric; it is reopened by name. */
	fab_fabric_close(fab);
	fab = NULL;
	ck_assert(ut_shm_exists(fname, NULL));
	UT_RC(fab_fabric_open(fname, 0, &fab), 0);
	UT_RC(fab_chan_open(fab, "shared", FAB_RECV, &o), 0);
	UT_RC(fab_try_recv(o, buf, sizeof buf), FAB_EAGAIN);
	fab_chan_release(o);
}
END_TEST

static int child_reopen(void *arg)
{
	const char *name = arg;
	fab_fabric *f = NULL;
	fab_chan *c = NULL;
	CHILD_RC(fab_fabric_open(name, 0, &f), 0, 10);
	CHILD_RC(fab_chan_open(f, "x", FAB_SEND, &c), 0, 11);
	CHILD_RC(fab_send(c, "from-child", 10, NULL), 0, 12);
	/* The child also sees what the parent queued before. */
	fab_chan *r = NULL;
	char buf[16];
	CHILD_RC(fab_chan_open(f, "y", FAB_RECV, &r), 0, 13);
	CHILD_RC(fab_try_recv(r, buf, sizeof buf), 11, 14);
	CHILD_CHECK(memcmp(buf, "from-parent", 11) == 0, 15);
	fab_chan_release(r);
	fab_chan_release(c);
	fab_fabric_close(f);
	return 0;
}

START_TEST(t_reopen_other_process)
{
	fab_chan *x = NULL, *y = NULL;
	fab_chan_opts op = ut_opts(FAB_MPMC, 4, 16);
	UT_RC(fab_chan_create(fab, "x", &op, &x), 0);
	UT_RC(fab_chan_create(fab, "y", &op, &y), 0);
	UT_RC(fab_try_send(y, "from-parent", 11), 0);
	pid_t pid = ft_spawn(child_reopen, fname);
	ck_assert_int_gt(pid, 0);
	UT_CHILD_OK(pid);
	char buf[16];
	UT_RC(fab_try_recv(x, buf, sizeof buf), 10);
	ck_assert_int_eq(memcmp(buf, "from-child", 10), 0);
	fab_chan_release(x);
	fab_chan_release(y);
}
END_TEST

START_TEST(t_destroy_removes_all)
{
	const char *chans[] = {"a", "b", "c-1", "D_2"};
	fab_chan *h[4];
	for (int i = 0; i < 4; i++) {
		fab_chan_opts op = ut_opts(i % 2 ? FAB_SPSC : FAB_MPMC, (uint32_t)i, 8);
		UT_RC(fab_chan_create(fab, chans[i], &op, &h[i]), 0);
		ck_assert_msg(ut_shm_exists(fname, chans[i]), "/dev/shm/fab.%s.%s missing", fname,
			      chans[i]);
	}
	fab_ctx *ctx = NULL;
	UT_RC(fab_ctx_create(fab, "ctx", NULL, &ctx), 0);
	ck_assert_int_eq(ut_segments_of(fname), 5);
	/* Handles released first, as a user would. */
	for (int i = 0; i < 4; i++)
		fab_chan_release(h[i]);
	fab_ctx_release(ctx);
	fab_fabric_close(fab);
	fab = NULL;
	UT_RC(fab_fabric_destroy(fname), 0);
	ck_assert_msg(ut_segments_of(fname) == 0, "%d segment(s) of %s left after destroy",
		      ut_segments_of(fname), fname);
	UT_RC(fab_fabric_destroy(fname), FAB_ENOENT);
	fab_fabric *f = NULL;
	UT_RC(fab_fabric_open(fname, 0, &f), FAB_ENOENT);
	/* The name can be used again, and the new fabric is empty. */
	UT_RC(fab_fabric_open(fname, FAB_CREATE, &fab), 0);
	fab_chan *c = NULL;
	UT_RC(fab_chan_open(fab, "a", FAB_SEND, &c), FAB_ENOENT);
}
END_TEST

START_TEST(t_destroy_while_open)
{
	/* Destroy unlinks even while this process still holds handles
	 * (as rm on an open file); the handles stay usable memory. */
	fab_chan *c = NULL;
	fab_chan_opts op = ut_opts(FAB_MPMC, 2, 8);
	UT_RC(fab_chan_create(fab, "c", &op, &c), 0);
	UT_RC(fab_fabric_destroy(fname), 0);
	ck_assert_int_eq(ut_segments_of(fname), 0);
	UT_RC(fab_try_send(c, "x", 1), 0);
	/* But nothing new is made in it: a create through the old handle
	 * would leave a segment that no fabric lists and only a later destroy
	 * of the same name removes (found by a user trial).  The channel or
	 * topic create refuses, with no segment left. */
	fab_chan *late = NULL;
	UT_RC(fab_chan_create(fab, "late", &op, &late), FAB_ENOENT);
	ck_assert_ptr_null(late);
	ck_assert_msg(strstr(fab_errmsg(), "destroyed") != NULL, "errmsg: %s", fab_errmsg());
	fab_topic *tl = NULL;
	fab_chan_opts to = {.size = sizeof to, .capacity = 4, .msg_size = 8};
	UT_RC(fab_topic_create(fab, "latet", &to, &tl), FAB_ENOENT);
	ck_assert_ptr_null(tl);
	ck_assert_msg(ut_segments_of(fname) == 0, "%d segment(s) of the destroyed %s left",
		      ut_segments_of(fname), fname);
	/* Contexts and limiters live in the control segment: none is made or
	 * opened through the old handle either. */
	fab_ctx *lc = NULL;
	UT_RC(fab_ctx_create(fab, "latec", NULL, &lc), FAB_ENOENT);
	ck_assert_ptr_null(lc);
	UT_RC(fab_ctx_open(fab, "latec", &lc), FAB_ENOENT);
	fab_limiter *ll = NULL;
	UT_RC(fab_limiter_create(fab, "latel", 10.0, 1, &ll), FAB_ENOENT);
	ck_assert_ptr_null(ll);
	UT_RC(fab_limiter_open(fab, "latel", &ll), FAB_ENOENT);
	/* A fabric created again under the name is a new one: creates work
	 * through its handles, and the old handle opens none of its objects
	 * (its owner tag indexes the old process table, where recovery would
	 * take it for dead: found by review). */
	fab_fabric *again = NULL;
	UT_RC(fab_fabric_open(fname, FAB_CREATE, &again), 0);
	UT_RC(fab_chan_create(again, "late", &op, &late), 0);
	UT_RC(fab_topic_create(again, "latet", &to, &tl), 0);
	fab_chan *old = NULL;
	UT_RC(fab_chan_open(fab, "late", FAB_RECV, &old), FAB_ENOENT);
	ck_assert_ptr_null(old);
	fab_topic *ot = NULL;
	UT_RC(fab_topic_open(fab, "latet", &ot), FAB_ENOENT);
	fab_sub *os = NULL;
	UT_RC(fab_topic_subscribe(fab, "latet", FAB_SUB_BLOCK, &os), FAB_ENOENT);
	ck_assert_ptr_null(os);
	/* Nor does it recover or destroy them: recovery would take the new
	 * fabric's live owners for the old table's dead ones (found by
	 * review: a live worker lost its lease). */
	UT_RC(fab_fabric_recover(fab), FAB_ENOENT);
	UT_RC(fab_chan_destroy(fab, "late"), FAB_ENOENT);
	ck_assert(ut_shm_exists(fname, "late"));
	/* ... and the new fabric's objects are intact after those refusals. */
	UT_RC(fab_try_send(late, "y", 1), 0);
	fab_chan *rx = NULL;
	char b[8];
	UT_RC(fab_chan_open(again, "late", FAB_RECV, &rx), 0);
	UT_RC(fab_try_recv(rx, b, sizeof b), 1);
	fab_chan_release(rx);
	fab_topic_release(tl);
	fab_chan_release(late);
	fab_chan_release(c);
	fab_fabric_close(fab);
	fab = again;
}
END_TEST

/* ---- names ------------------------------------------------------------ */

static const char *bad_names[] = {
	"", ".", "..", "a/b", "a.b", "/abc", "abc/", "a b", "a\tb", "a\nb", "ab*", "a:b",
	"\xc3\xa9t\xc3\xa9", "fab.x", "../etc",
	"0123456789012345678901234567890123456789012345678", /* 49 */
};

START_TEST(t_names_invalid)
{
	ck_assert_int_eq(strlen(bad_names[sizeof bad_names / sizeof bad_names[0] - 1]), 49);
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
		fab_fabric *f = NULL;
		const char *n = bad_names[i];
		int rc = fab_fabric_open(n, FAB_CREATE, &f);
		ck_assert_msg(rc == FAB_EINVAL, "open(\"%s\", CREATE) = %d (%s), want FAB_EINVAL",
			      n, rc, ut_name(rc));
		ck_assert_msg(fab_errmsg()[0] != '\0', "no detail for a bad name");
		rc = fab_fabric_open(n, 0, &f);
		ck_assert_msg(rc == FAB_EINVAL, "open(\"%s\") = %d (%s), want FAB_EINVAL", n, rc,
			      ut_name(rc));
		rc = fab_fabric_destroy(n);
		ck_assert_msg(rc == FAB_EINVAL, "destroy(\"%s\") = %d (%s), want FAB_EINVAL", n,
			      rc, ut_name(rc));
	}
	fab_fabric *f = NULL;
	UT_RC(fab_fabric_open(NULL, FAB_CREATE, &f), FAB_EINVAL);
	UT_RC(fab_fabric_open(NULL, 0, &f), FAB_EINVAL);
	UT_RC(fab_fabric_destroy(NULL), FAB_EINVAL);
	/* Nothing was created for any of them. */
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
		if (strchr(bad_names[i], '/'))
			continue;
		char p[128];
		snprintf(p, sizeof p, "/dev/shm/fab.%s", bad_names[i]);
		struct stat sb;
		if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
			unlink(p);
			ck_abort_msg("a segment %s was created for a bad name", p);
		}
	}
}
END_TEST

START_TEST(t_names_valid)
{
	/* 48 characters, the maximum, with every allowed character class. */
	char n48[FAB_NAME_MAX + 1];
	char pre[24];
	snprintf(pre, sizeof pre, "u%d-", (int)getpid());
	memset(n48, 'A', FAB_NAME_MAX);
	n48[FAB_NAME_MAX] = '\0';
	memcpy(n48, pre, strlen(pre));
	memcpy(n48 + 20, "az_09-ZZ", 8);
	ck_assert_int_eq(strlen(n48), 48);
	fab_fabric *f = NULL;
	UT_RC(fab_fabric_open(n48, FAB_CREATE, &f), 0);
	ck_assert(ut_shm_exists(n48, NULL));
	fab_chan *c = NULL;
	/* A 48-character channel name in a 48-character fabric. */
	char c48[FAB_NAME_MAX + 1];
	memset(c48, 'c', FAB_NAME_MAX);
	c48[FAB_NAME_MAX] = '\0';
	UT_RC(fab_chan_create(f, c48, NULL, &c), 0);
	ck_assert(ut_shm_exists(n48, c48));
	fab_chan_release(c);
	fab_fabric_close(f);
	UT_RC(fab_fabric_destroy(n48), 0);
	ck_assert_int_eq(ut_segments_of(n48), 0);

	/* Single characters, dashes and underscores at either end. */
	const char *ok[] = {"_", "-", "-x-", "_y_", "Z", "9"};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char n[FAB_NAME_MAX + 1];
		/* Prefix with this run's name so a sweep finds leftovers. */
		snprintf(n, sizeof n, "%s%s", ut_fabric_name(), ok[i]);
		UT_RC(fab_fabric_open(n, FAB_CREATE, &f), 0);
		fab_fabric_close(f);
		UT_RC(fab_fabric_destroy(n), 0);
	}
}
END_TEST

/* ---- size of the registry and the process table ----------------------- */

#define NCHAN 1024

START_TEST(t_1024_channels)
{
	static fab_chan *h[NCHAN];
	char n[16];
	fab_chan_opts op = ut_opts(FAB_MPMC, 1, 8);
	for (int i = 0; i < NCHAN; i++) {
		snprintf(n, sizeof n, "c%04d", i);
		h[i] = NULL;
		UT_RC(fab_chan_create(fab, n, &op, &h[i]), 0);
		uint64_t v = (uint64_t)i;
		UT_RC(fab_try_send(h[i], &v, sizeof v), 0);
	}
	ck_assert_int_eq(ut_segments_of(fname), NCHAN + 1);
	/* Each channel is found by name and holds its own message. */
	for (int i = 0; i < NCHAN; i++) {
		fab_chan *r = NULL;
		snprintf(n, sizeof n, "c%04d", i);
		UT_RC(fab_chan_open(fab, n, FAB_RECV, &r), 0);
		uint64_t v = 0;
		UT_RC(fab_try_recv(r, &v, sizeof v), 8);
		ck_assert_int_eq(v, (uint64_t)i);
		fab_chan_release(r);
	}
	for (int i = 0; i < NCHAN; i++)
		fab_chan_release(h[i]);
	/* Destroying a few frees their names for reuse. */
	for (int i = 0; i < 8; i++) {
		snprintf(n, sizeof n, "c%04d", i);
		UT_RC(fab_chan_destroy(fab, n), 0);
	}
	for (int i = 0; i < 8; i++) {
		snprintf(n, sizeof n, "n%04d", i);
		fab_chan *c = NULL;
		UT_RC(fab_chan_create(fab, n, &op, &c), 0);
		fab_chan_release(c);
	}
	fab_fabric_close(fab);
	fab = NULL;
	UT_RC(fab_fabric_destroy(fname), 0);
	ck_assert_msg(ut_segments_of(fname) == 0, "%d segments left after destroy",
		      ut_segments_of(fname));
}
END_TEST

/* 1023 children + this process = 1024 attached processes. */
#define NPROC 1023
static pid_t procs[NPROC];
static int nprocs;

static void procs_teardown(void)
{
	for (int i = 0; i < nprocs; i++)
		if (procs[i] > 0)
			kill(procs[i], SIGKILL);
	for (int i = 0; i < nprocs; i++)
		if (procs[i] > 0)
			waitpid(procs[i], NULL, 0);
	nprocs = 0;
	ut_fabric_teardown();
}

START_TEST(t_1024_processes)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < NPROC + 200 && getuid() != 0) {
		fprintf(stderr, "t_1024_processes: RLIMIT_NPROC %llu too low, skipped\n",
			(unsigned long long)rl.rlim_cur);
		return;
	}
	fab_chan *c = NULL;
	fab_chan_opts op = ut_opts(FAB_MPMC, 4, 8);
	UT_RC(fab_chan_create(fab, "c", &op, &c), 0);
	int ready[2], go[2];
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(go), 0);
	for (int i = 0; i < NPROC; i++) {
		pid_t pid = fork();
		ck_assert_msg(pid >= 0, "fork %d: %s", i, strerror(errno));
		if (pid == 0) {
			close(ready[0]);
			close(go[1]);
			fab_fabric *f = NULL;
			fab_chan *s = NULL;
			char code = 'y';
			if (fab_fabric_open(fname, 0, &f) != 0)
				code = 'f';
			else if (fab_chan_open(f, "c", FAB_SEND, &s) != 0)
				code = 'c';
			if (write(ready[1], &code, 1) != 1)
				_exit(3);
			char b;
			while (read(go[0], &b, 1) < 0 && errno == EINTR) {
			}
			if (code != 'y')
				_exit(code == 'f' ? 4 : 5);
			fab_chan_release(s);
			fab_fabric_close(f);
			_exit(0);
		}
		procs[nprocs++] = pid;
	}
	close(ready[1]);
	close(go[0]);
	int ok = 0, failf = 0, failc = 0;
	for (int i = 0; i < NPROC; i++) {
		char b;
		ssize_t r;
		while ((r = read(ready[0], &b, 1)) < 0 && errno == EINTR) {
		}
		if (r != 1)
			break;
		if (b == 'y')
			ok++;
		else if (b == 'f')
			failf++;
		else
			failc++;
	}
	fab_stats st = ut_stats(c);
	close(go[1]); /* release them all */
	int bad = 0;
	for (int i = 0; i < nprocs; i++) {
		int s = ft_wait(procs[i]);
		procs[i] = 0;
		if (s != 0)
			bad++;
	}
	nprocs = 0;
	close(ready[0]);
	ck_assert_msg(ok == NPROC, "%d of %d children attached (%d fabric-open failures, %d "
		      "chan-open failures)", ok, NPROC, failf, failc);
	/* The creator's handle has FAB_SEND too. */
	ck_assert_msg(st.senders == NPROC + 1, "senders = %u with %d children attached",
		      st.senders, NPROC);
	ck_assert_int_eq(bad, 0);
	st = ut_stats(c);
	ck_assert_msg(st.senders == 1, "senders = %u after the children released", st.senders);
	/* The table has room again: another process attaches. */
	fab_chan_release(c);
}
END_TEST

/* ---- untrusted segments ----------------------------------------------- */

static int write_segment(const char *name, size_t len, int byte, int random)
{
	char p[128];
	snprintf(p, sizeof p, "/dev/shm/fab.%s", name);
	int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (fd < 0)
		return -1;
	unsigned char buf[4096];
	unsigned seed = 12345;
	for (size_t off = 0; off < len;) {
		size_t n = len - off < sizeof buf ? len - off : sizeof buf;
		for (size_t i = 0; i < n; i++)
			buf[i] = random ? (unsigned char)(rand_r(&seed) >> 7) : (unsigned char)byte;
		if (write(fd, buf, n) != (ssize_t)n) {
			close(fd);
			return -1;
		}
		off += n;
	}
	close(fd);
	return 0;
}

static int child_open_corrupt(void *arg)
{
	const char *name = arg;
	alarm(10); /* a hang is a failure, reported as 128+SIGALRM */
	fab_fabric *f = NULL;
	int rc = fab_fabric_open(name, 0, &f);
	CHILD_CHECK(rc == FAB_ECORRUPT || rc == FAB_EVERSION, 10);
	rc = fab_fabric_open(name, FAB_CREATE, &f);
	CHILD_CHECK(rc == FAB_ECORRUPT || rc == FAB_EVERSION, 11);
	return 0;
}

START_TEST(t_corrupt_control_segment)
{
	struct {
		size_t len;
		int byte, random;
	} cases[] = {{16, 0xa5, 0}, {65536, 0xa5, 0}, {65536, 0xff, 0}, {1 << 20, 0, 1}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *n = ut_fabric_name();
		ck_assert_int_eq(write_segment(n, cases[i].len, cases[i].byte, cases[i].random), 0);
		pid_t pid = ft_spawn(child_open_corrupt, (void *)n);
		int st = ft_wait(pid);
		char p[128];
		snprintf(p, sizeof p, "/dev/shm/fab.%s", n);
		/* The segment was left alone (not truncated, not replaced). */
		struct stat sb;
		int sr = stat(p, &sb);
		fab_fabric_destroy(n);
		unlink(p);
		ck_assert_msg(st == 0, "case %zu (%zu bytes): child exited %d", i, cases[i].len, st);
		ck_assert_msg(sr == 0 && (size_t)sb.st_size == cases[i].len,
			      "case %zu: the corrupt segment was modified", i);
	}
}
END_TEST

/* ---- NULL and bad arguments ------------------------------------------- */

START_TEST(t_null_args)
{
	UT_RC(fab_fabric_open(fname, 0, NULL), FAB_EINVAL);
	const char *n = ut_fabric_name();
	UT_RC(fab_fabric_open(n, FAB_CREATE, NULL), FAB_EINVAL);
	ck_assert_msg(!ut_shm_exists(n, NULL), "open(CREATE, out=NULL) created a segment");
	fab_fabric_close(NULL); /* no crash */
	UT_RC(fab_fabric_recover(NULL), FAB_EINVAL);
	/* Recovery on a healthy fabric with nothing to do succeeds. */
	ck_assert_int_ge(fab_fabric_recover(fab), 0);
	ck_assert_int_ge(fab_fabric_recover(fab), 0);
}
END_TEST

static Suite *fabric_suite(void)
{
	Suite *s = suite_create("fabric");
	TCase *tc = tcase_create("fabric");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, ut_fabric_setup, ut_fabric_teardown);
	tcase_add_test(tc, t_open_missing);
	tcase_add_test(tc, t_create_segment);
	tcase_add_test(tc, t_create_mode_ignores_umask);
	tcase_add_test(tc, t_create_mode_shared);
	tcase_add_test(tc, t_group_shared_fabric);
	tcase_add_test(tc, t_reopen_same_process);
	tcase_add_test(tc, t_reopen_other_process);
	tcase_add_test(tc, t_destroy_removes_all);
	tcase_add_test(tc, t_destroy_while_open);
	tcase_add_test(tc, t_names_invalid);
	tcase_add_test(tc, t_names_valid);
	tcase_add_test(tc, t_1024_channels);
	tcase_add_test(tc, t_corrupt_control_segment);
	tcase_add_test(tc, t_null_args);
	suite_add_tcase(s, tc);

	TCase *tp = tcase_create("processes");
	tcase_set_timeout(tp, 60);
	tcase_add_checked_fixture(tp, ut_fabric_setup, procs_teardown);
	tcase_add_test(tp, t_1024_processes);
	suite_add_tcase(s, tp);
	return s;
}

int main(void)
{
	return ut_main(fabric_suite(), "fab");
}
