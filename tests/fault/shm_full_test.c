/*
 * shm_full_test.c - a full /dev/shm is an error, never SIGBUS.
 *
 * tmpfs gives a file its pages when they are first touched; ftruncate alone
 * makes a sparse file, and MAP_POPULATE skips a page it cannot get.  Until
 * 28 Nov 2026 (eleventh session) a channel larger than the room left in
 * /dev/shm (a container's is often 64 MiB) was created "successfully" and
 * its creator died of SIGBUS writing the header; a ring that fitted only in
 * part would have killed whichever process first touched a missing page.
 * libfab now allocates every page at creation (posix_fallocate) and answers
 * FAB_ENOMEM, "no room in /dev/shm ...".  t_inodes: the same when tmpfs
 * runs out of inodes (nr_inodes) rather than bytes.
 *
 * How: each test forks a child that enters a mount namespace of its own
 * (unshare(CLONE_NEWNS)) and mounts a 4 MiB tmpfs over /dev/shm there, so
 * the machine's /dev/shm is never filled and everything the child made
 * vanishes with it.  The child never asserts (PLATFORM.md §5): it exits
 * with a code naming the step that failed, and the parent asserts on the
 * wait status (a signal is the bug this test is for).  Needs CAP_SYS_ADMIN
 * (root, as CI runs): without it main() exits 77 and ctest reports the
 * test as skipped, not passed.
 */
#include "fabtest.h"

#include <check.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/mount.h>

#define SHM_SIZE "size=4m"

/* Enter a private mount namespace with a small tmpfs on /dev/shm (opts:
 * its mount options): 0, or the errno of the step that failed. */
static int small_shm_opts(const char *opts)
{
	if (unshare(CLONE_NEWNS) < 0)
		return errno;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return errno;
	if (mount("tmpfs", "/dev/shm", "tmpfs", 0, opts) < 0)
		return errno;
	return 0;
}

static int small_shm(void)
{
	return small_shm_opts(SHM_SIZE ",mode=1777");
}

/* Exit codes of the child, each a step; 0 all passed. */
enum {
	E_NS = 10,         /* could not make the namespace (after main's probe said it can) */
	E_FABRIC,          /* the fabric (452 KiB) was not created */
	E_BIG_RC,          /* a channel larger than /dev/shm: not FAB_ENOMEM */
	E_BIG_MSG,         /* ... or without a message naming /dev/shm */
	E_BIG_LEFT,        /* ... or its segment or registry entry stayed */
	E_TOPIC_RC,        /* the same for a topic */
	E_FILL_RC,         /* filling /dev/shm: a create failed with another code */
	E_FILL_NEVER,      /* ... or 64 creates of 256 KiB all fitted in 4 MiB */
	E_FILL_IO,         /* a created channel could not carry capacity messages */
	E_AFTER,           /* after a destroy made room, a create failed */
	E_SMALL,           /* a small channel did not work */
};

static bool shm_has(const char *fabric, const char *obj)
{
	return ft_shm_mode(fabric, obj) >= 0;
}

/* Send `cap` messages of msg bytes through ch (touching every slot, so
 * every page of its ring) and receive them back unchanged. */
static int fill_and_drain(fab_chan *ch, uint32_t cap, uint32_t msg)
{
	static unsigned char out[4096], in[4096];
	for (uint32_t i = 0; i < cap; i++) {
		memset(out, (int)(i & 0xff), msg);
		memcpy(out, &i, sizeof i);
		if (fab_try_send(ch, out, msg) != 0)
			return -1;
	}
	for (uint32_t i = 0; i < cap; i++) {
		memset(out, (int)(i & 0xff), msg);
		memcpy(out, &i, sizeof i);
		if (fab_try_recv(ch, in, sizeof in) != (ssize_t)msg || memcmp(in, out, msg) != 0)
			return -1;
	}
	return 0;
}

static int child_body(uint32_t kind)
{
	if (small_shm())
		return E_NS;
	const char *name = "shmfull";
	fab_fabric *f = NULL;
	if (fab_fabric_open(name, FAB_CREATE, &f) != 0)
		return E_FABRIC;

	/* 1. Larger than the whole tmpfs: 8 MiB of ring. */
	fab_chan_opts big = {.size = sizeof big, .kind = kind, .capacity = 8192, .msg_size = 1024};
	fab_chan *c = NULL;
	int rc = fab_chan_create(f, "big", &big, &c);
	if (rc != FAB_ENOMEM || c != NULL) {
		fprintf(stderr, "big channel: %s (%s)\n", fab_errname(rc), fab_errmsg());
		return E_BIG_RC;
	}
	if (!strstr(fab_errmsg(), "no room in /dev/shm")) {
		fprintf(stderr, "big channel: message \"%s\"\n", fab_errmsg());
		return E_BIG_MSG;
	}
	if (shm_has(name, "big") || fab_chan_open(f, "big", FAB_RECV, &c) != FAB_ENOENT)
		return E_BIG_LEFT;
	fab_topic *t = NULL;
	fab_chan_opts bt = {.size = sizeof bt, .capacity = 8192, .msg_size = 1024};
	rc = fab_topic_create(f, "bigt", &bt, &t);
	if (rc != FAB_ENOMEM || t != NULL || shm_has(name, "bigt")) {
		fprintf(stderr, "big topic: %s (%s)\n", fab_errname(rc), fab_errmsg());
		return E_TOPIC_RC;
	}

	/* 2. Fill it: channels of 64 x 4 KiB (256 KiB of ring) until one
	 * does not fit.  Every one created must carry `capacity` messages
	 * (the first touch of each ring page happens there). */
	fab_chan_opts o = {.size = sizeof o, .kind = kind, .capacity = 64, .msg_size = 4096};
	char cn[16];
	int made = 0;
	for (;; made++) {
		if (made == 64)
			return E_FILL_NEVER;
		snprintf(cn, sizeof cn, "f%d", made);
		c = NULL;
		rc = fab_chan_create(f, cn, &o, &c);
		if (rc == FAB_ENOMEM && strstr(fab_errmsg(), "no room in /dev/shm") &&
		    !shm_has(name, cn))
			break;
		if (rc != 0) {
			fprintf(stderr, "fill %d: %s (%s)\n", made, fab_errname(rc), fab_errmsg());
			return E_FILL_RC;
		}
		if (fill_and_drain(c, o.capacity, o.msg_size) != 0)
			return E_FILL_IO;
		fab_chan_release(c);
	}
	if (made == 0)
		return E_FILL_NEVER;

	/* 3. Room again after a destroy. */
	if (fab_chan_destroy(f, "f0") != 0)
		return E_AFTER;
	c = NULL;
	if (fab_chan_create(f, "again", &o, &c) != 0 || fill_and_drain(c, o.capacity, 4096) != 0)
		return E_AFTER;
	fab_chan_release(c);

	/* 4. Every channel made before the failure still works. */
	for (int i = 1; i < made; i++) {
		snprintf(cn, sizeof cn, "f%d", i);
		c = NULL;
		if (fab_chan_open(f, cn, FAB_SEND | FAB_RECV, &c) != 0 ||
		    fill_and_drain(c, o.capacity, 4096) != 0)
			return E_SMALL;
		fab_chan_release(c);
	}
	fab_fabric_close(f);
	fab_fabric_destroy(name);
	return 0;
}

/* _i: 0 mpmc, 1 spsc. */
START_TEST(t_full)
{
	uint32_t kind = _i ? FAB_SPSC : FAB_MPMC;
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(child_body(kind));
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(!WIFSIGNALED(st),
		      "%s: the child died of signal %d (%s): a segment page was not allocated "
		      "at creation",
		      _i ? "spsc" : "mpmc", WIFSIGNALED(st) ? WTERMSIG(st) : 0,
		      WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "");
	ck_assert_msg(WEXITSTATUS(st) == 0, "%s: the child failed at step %d (shm_full_test.c)",
		      _i ? "spsc" : "mpmc", WEXITSTATUS(st));
}
END_TEST

/*
 * Out of inodes rather than bytes (tmpfs nr_inodes): shm_open's ENOSPC is
 * the same FAB_ENOMEM "no room in /dev/shm", naming the segment (it was
 * FAB_ESYS "shm_open: No space left on device": a resource-exhaustion
 * trial, 28 Nov).  Room for the fabric and two channels.
 */
static int inode_body(void)
{
	if (small_shm_opts("size=8m,nr_inodes=4,mode=1777"))
		return E_NS;
	fab_fabric *f = NULL;
	if (fab_fabric_open("shminodes", FAB_CREATE, &f) != 0)
		return E_FABRIC;
	fab_chan_opts o = {.size = sizeof o, .capacity = 4, .msg_size = 64};
	char cn[8];
	int rc = 0, made = 0;
	for (; made < 8; made++) {
		fab_chan *c = NULL;
		snprintf(cn, sizeof cn, "c%d", made);
		if ((rc = fab_chan_create(f, cn, &o, &c)))
			break;
		fab_chan_release(c);
	}
	if (made == 8)
		return E_FILL_NEVER;
	if (rc != FAB_ENOMEM || !strstr(fab_errmsg(), "no room in /dev/shm") ||
	    !strstr(fab_errmsg(), "inode")) {
		fprintf(stderr, "out of inodes: %s (%s)\n", fab_errname(rc), fab_errmsg());
		return E_FILL_RC;
	}
	fab_fabric_close(f);
	fab_fabric_destroy("shminodes");
	return 0;
}

START_TEST(t_inodes)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(inode_body());
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child failed at step %d",
		      WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
}
END_TEST

int main(void)
{
	/* Can this process make the namespace at all?  Probe in a child. */
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0)
		_exit(small_shm());
	int st = 0;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return 1;
	if (WEXITSTATUS(st) != 0) {
		fprintf(stderr, "SKIP: cannot mount a private tmpfs on /dev/shm (%s); needs "
				"CAP_SYS_ADMIN\n",
			strerror(WEXITSTATUS(st)));
		return 77;
	}
	Suite *s = suite_create("shm_full");
	TCase *tc = tcase_create("full");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, t_full, 0, 2);
	tcase_add_test(tc, t_inodes);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
