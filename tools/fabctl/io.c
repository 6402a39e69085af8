/*
 * io.c - the verbs that touch messages or segments: peek (read-only copies
 * of queued messages, through inspect.c), send and recv (through the public
 * libfab API, one line a message, for shell pipelines) and rm (unlink a
 * fabric's segments, refused while live processes are attached).
 */
#include "cli.h"
#include "fabctl.h"

#include <fab/fab.h>

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- peek ------------------------------------------------------------- */

static bool printable(const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i] < 0x20 ? p[i] != '\t' : p[i] == 0x7f)
			return false; /* UTF-8 bytes >= 0x80 pass as text */
	return true;
}

static void hex(const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		printf("%s%02x", i ? " " : "", p[i]);
}

int fabctl_peek(int argc, char **argv)
{
	const char *ch = NULL;
	long n = 10;
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			puts(
			    "usage: fabctl [-f FABRIC] [-o json] peek CH [-n N]\n"
			    "The next N (default 10) messages queued on channel CH, oldest first,\n"
			    "copied from the segment without consuming them.  Printable text is\n"
			    "shown as text, anything else as hex.  At-least-once messages given\n"
			    "back for redelivery come first.  On a topic: the newest N messages\n"
			    "still in its ring, oldest first.");
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r < 0)
			return FABCTL_EXIT_USAGE;
		if (r)
			continue;
		if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			if ((n = fabctl_parse_count(argv[++i], 0)) < 0 || n > 1000000)
				return fabctl_fail(FABCTL_EXIT_USAGE, "peek: bad -n '%s'", argv[i]);
		} else if (argv[i][0] != '-' && !ch) {
			ch = argv[i];
		} else {
			return fabctl_fail(FABCTL_EXIT_USAGE, "peek: unexpected '%s'", argv[i]);
		}
	}
	if (!ch)
		return fabctl_fail(FABCTL_EXIT_USAGE, "peek: which channel? (fabctl peek CH)");
	char name[FI_NAME];
	int rc = fabctl_resolve(NULL, name);
	if (rc)
		return rc;
	fi_msg *m;
	unsigned cnt;
	if ((rc = fi_peek(name, ch, (unsigned)n, &m, &cnt)))
		return fabctl_fail(fabctl_exit_for(rc), "%s", fi_errmsg());
	if (fabctl_o.json) {
		fputs("{\"fabric\":", stdout);
		js_str(stdout, name);
		fputs(",\"channel\":", stdout);
		js_str(stdout, ch);
		fputs(",\"messages\":[", stdout);
	}
	for (unsigned i = 0; i < cnt; i++) {
		bool text = printable(m[i].data, m[i].len);
		if (fabctl_o.json) {
			printf("%s{\"pos\":%llu,\"len\":%u,\"returns\":%u,\"text\":%s,\"data\":",
			       i ? "," : "", (unsigned long long)m[i].pos, m[i].len, m[i].returns,
			       text ? "true" : "false");
			if (text) {
				js_bytes(stdout, m[i].data, m[i].len);
			} else {
				fputc('"', stdout);
				hex(m[i].data, m[i].len);
				fputc('"', stdout);
			}
			fputc('}', stdout);
		} else {
			printf("%llu\t%u\t", (unsigned long long)m[i].pos, m[i].len);
			if (text)
				fwrite(m[i].data, 1, m[i].len, stdout);
			else {
				fputs("hex: ", stdout);
				hex(m[i].data, m[i].len);
			}
			fputc('\n', stdout);
		}
	}
	if (fabctl_o.json)
		fputs("]}\n", stdout);
	fi_msgs_free(m, cnt);
	return 0;
}

/* ---- send / recv ------------------------------------------------------ */

/* "KIND NAME: detail", unless the library's detail names the object
 * already (a user trial saw "channel mp: channel mp: header does not match
 * the segment"). */
static int fail_obj(int code, const char *kind, const char *name, const char *extra)
{
	const char *m = fab_errmsg();
	size_t kl = strlen(kind), nl = strlen(name);
	bool named = !strncmp(m, kind, kl) && m[kl] == ' ' && !strncmp(m + kl + 1, name, nl) &&
		     m[kl + 1 + nl] == ':';
	if (named)
		return fabctl_fail(code, "%s%s", m, extra);
	return fabctl_fail(code, "%s %s: %s%s", kind, name, m, extra);
}

/* fab_fabric_open + fab_chan_open with role; prints why on failure.  When
 * `ch` names a topic, *c stays NULL, the fabric stays open and the caller
 * opens the topic (topic_ok; otherwise the refusal is printed). */
static int open_chan(const char *fabric, const char *ch, unsigned role, fab_fabric **fab,
		     fab_chan **c, bool topic_ok)
{
	int rc = fab_fabric_open(fabric, 0, fab);
	if (rc)
		return fail_obj(fabctl_exit_for(rc), "fabric", fabric, "");
	*c = NULL;
	rc = fab_chan_open(*fab, ch, role, c);
	if (rc == FAB_EINVAL && topic_ok) {
		/* A topic (fab_chan_open refuses one with FAB_EINVAL): the
		 * caller's topic open says whether it is one. */
		fab_topic *t = NULL;
		if (fab_topic_open(*fab, ch, &t) == 0) {
			fab_topic_release(t);
			return 0;
		}
		rc = FAB_EINVAL;
	}
	if (rc == FAB_EBUSY)
		return fab_fabric_close(*fab),
		       fail_obj(FABCTL_EXIT_REFUSED, "channel", ch,
				" (an spsc end is held by another process, likely a stage)");
	if (rc)
		return fab_fabric_close(*fab), fail_obj(fabctl_exit_for(rc), "channel", ch, "");
	return 0;
}

int fabctl_send(int argc, char **argv)
{
	const char *ch = NULL;
	bool close_after = false;
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			puts(
			    "usage: fabctl [-f FABRIC] send CH [--close]\n"
			    "Send each line of stdin (its newline stripped) as one message on CH,\n"
			    "through libfab, blocking while CH is full.  A line longer than the\n"
			    "channel's msg_size is reported and skipped (exit 1 at the end); the\n"
			    "others are sent.  --close closes CH as one producer at EOF.\n"
			    "CH may be a topic: each line is published (blocking while a BLOCK\n"
			    "subscriber is `capacity` behind); a topic has no close.");
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r < 0)
			return FABCTL_EXIT_USAGE;
		if (r)
			continue;
		if (!strcmp(argv[i], "--close"))
			close_after = true;
		else if (argv[i][0] != '-' && !ch)
			ch = argv[i];
		else
			return fabctl_fail(FABCTL_EXIT_USAGE, "send: unexpected '%s'", argv[i]);
	}
	if (!ch)
		return fabctl_fail(FABCTL_EXIT_USAGE, "send: which channel? (fabctl send CH)");
	char name[FI_NAME];
	int rc = fabctl_resolve(NULL, name);
	if (rc)
		return rc;
	fab_fabric *fab;
	fab_chan *c;
	fab_topic *t = NULL;
	if ((rc = open_chan(name, ch, FAB_SEND, &fab, &c, true)))
		return rc;
	if (!c) {
		if (close_after) {
			fab_fabric_close(fab);
			return fabctl_fail(FABCTL_EXIT_USAGE, "send: %s is a topic; a topic has no "
					   "close (--close)", ch);
		}
		if ((rc = fab_topic_open(fab, ch, &t))) {
			fab_fabric_close(fab);
			return fail_obj(fabctl_exit_for(rc), "topic", ch, "");
		}
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned long lineno = 0, sent = 0;
	int status = 0;
	while ((len = getline(&line, &cap, stdin)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		rc = t ? fab_topic_publish(t, line, (size_t)len, NULL)
		       : fab_send(c, line, (size_t)len, NULL);
		if (rc == FAB_EMSGSIZE) {
			fabctl_fail(0, "send %s: line %lu: %s (skipped)", ch, lineno, fab_errmsg());
			status = FABCTL_EXIT_ERROR;
			continue;
		}
		if (rc) {
			status =
			    fabctl_fail(rc == FAB_ECLOSED ? FABCTL_EXIT_REFUSED : FABCTL_EXIT_ERROR,
					"send %s: line %lu: %s", ch, lineno, fab_errmsg());
			break;
		}
		sent++;
	}
	free(line);
	if (close_after && (rc = fab_chan_close(c)) && rc != FAB_ECLOSED)
		status = fabctl_fail(FABCTL_EXIT_ERROR, "close %s: %s", ch, fab_errmsg());
	fab_chan_release(c);
	fab_topic_release(t);
	fab_fabric_close(fab);
	return status;
}

int fabctl_recv(int argc, char **argv)
{
	const char *ch = NULL;
	long n = -1;
	int64_t timeout = -1;
	bool block = false;
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			puts(
			    "usage: fabctl [-f FABRIC] recv CH [-n N] [--timeout D] [--block]\n"
			    "Receive messages from CH through libfab and print each as one line\n"
			    "(a newline added).  Stops after N messages, when CH is closed and\n"
			    "empty (exit 0), or when D passes with fewer than N (exit 10).  On an\n"
			    "at-least-once channel each message is acked once printed.\n"
			    "CH may be a topic: fabctl subscribes (messages published from now\n"
			    "on) as a DROP subscriber, so it never holds publishers back, and says\n"
			    "on stderr how many messages it was lapped by; --block subscribes as\n"
			    "BLOCK instead (publishers wait for it).");
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r < 0)
			return FABCTL_EXIT_USAGE;
		if (r)
			continue;
		if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			if ((n = fabctl_parse_count(argv[++i], 0)) < 0)
				return fabctl_fail(FABCTL_EXIT_USAGE, "recv: bad -n '%s'", argv[i]);
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			if ((timeout = fabctl_parse_duration(argv[++i])) < 0)
				return fabctl_fail(FABCTL_EXIT_USAGE, "recv: bad --timeout '%s'",
						   argv[i]);
		} else if (!strcmp(argv[i], "--block")) {
			block = true;
		} else if (argv[i][0] != '-' && !ch) {
			ch = argv[i];
		} else {
			return fabctl_fail(FABCTL_EXIT_USAGE, "recv: unexpected '%s'", argv[i]);
		}
	}
	if (!ch)
		return fabctl_fail(FABCTL_EXIT_USAGE, "recv: which channel? (fabctl recv CH)");
	char name[FI_NAME];
	int rc = fabctl_resolve(NULL, name);
	if (rc)
		return rc;
	fab_fabric *fab;
	fab_chan *c;
	if ((rc = open_chan(name, ch, FAB_RECV, &fab, &c, true)))
		return rc;
	fab_stats st = {.size = sizeof st};
	fab_ctx *ctx = NULL;
	fab_sub *sub = NULL;
	int status = 0;
	char *buf = NULL;
	if (!c) {
		/* A topic: its msg_size from the segment (no call of the API
		 * tells a subscriber), then the subscription. */
		fi_chan tc;
		memset(&tc, 0, sizeof tc);
		if ((rc = fi_chan_read(name, ch, FI_OBJ_TOPIC, &tc))) {
			status = fabctl_fail(fabctl_exit_for(rc), "recv %s: %s", ch, tc.errmsg);
			fi_chan_free(&tc);
			goto out;
		}
		st.msg_size = tc.msg_size;
		fi_chan_free(&tc);
		if ((rc = fab_topic_subscribe(fab, ch, block ? FAB_SUB_BLOCK : FAB_SUB_DROP, &sub))) {
			status = fabctl_fail(fabctl_exit_for(rc), "recv %s: %s", ch, fab_errmsg());
			goto out;
		}
	} else if (block) {
		status = fabctl_fail(FABCTL_EXIT_USAGE, "recv: --block is for topics; %s is a "
				     "channel", ch);
		goto out;
	}
	if ((c && (rc = fab_chan_stats(c, &st))) ||
	    (timeout >= 0 && (rc = fab_ctx_with_timeout(NULL, timeout, &ctx)))) {
		status = fabctl_fail(FABCTL_EXIT_ERROR, "recv %s: %s", ch, fab_errmsg());
		goto out;
	}
	buf = malloc(st.msg_size + 1);
	if (!buf) {
		status = fabctl_fail(FABCTL_EXIT_ERROR, "out of memory");
		goto out;
	}
	for (long got = 0; n < 0 || got < n; got++) {
		ssize_t len = sub ? fab_sub_recv(sub, buf, st.msg_size, ctx)
				  : fab_recv(c, buf, st.msg_size, ctx);
		if (len == FAB_ECLOSED)
			break;
		if (len == FAB_ETIMEDOUT) {
			status = fabctl_fail(FABCTL_EXIT_TIMEOUT,
					     "recv %s: timed out after %ld messages", ch, got);
			break;
		}
		if (len < 0) {
			status = fabctl_fail(FABCTL_EXIT_ERROR, "recv %s: %s", ch, fab_errmsg());
			break;
		}
		buf[len] = '\n';
		if (fwrite(buf, 1, (size_t)len + 1, stdout) != (size_t)len + 1 || fflush(stdout)) {
			/* Not printed: leave it unacked (redelivered on an
			 * at-least-once channel when we exit). */
			status = fabctl_fail(FABCTL_EXIT_ERROR, "recv %s: write: %s", ch,
					     strerror(errno));
			break;
		}
		if (c && st.delivery == FAB_AT_LEAST_ONCE && (rc = fab_ack(c))) {
			status = fabctl_fail(FABCTL_EXIT_ERROR, "ack %s: %s", ch, fab_errmsg());
			break;
		}
	}
out:
	if (sub) {
		uint64_t lost = fab_sub_dropped(sub);
		if (lost)
			fprintf(stderr, "fabctl: recv %s: lapped by publishers: %llu message%s "
				"dropped (DROP subscriber; --block to hold publishers)\n",
				ch, (unsigned long long)lost, lost == 1 ? "" : "s");
	}
	free(buf);
	fab_sub_release(sub);
	fab_ctx_release(ctx);
	fab_chan_release(c);
	fab_fabric_close(fab);
	return status;
}

/* ---- rm --------------------------------------------------------------- */

int fabctl_rm(int argc, char **argv)
{
	const char *fab = NULL;
	bool force = false;
	for (int i = 1; i < argc; i++) {
		if (fabctl_is_help(argv[i])) {
			puts(
			    "usage: fabctl rm FABRIC [--force]\n"
			    "Remove the fabric's control segment and every /dev/shm/fab.FABRIC.*.\n"
			    "Refused (exit 4, naming the pids) while live processes are attached,\n"
			    "or when the control segment cannot be read, unless --force.");
			return 0;
		}
		int r = fabctl_common_opt(argc, argv, &i);
		if (r < 0)
			return FABCTL_EXIT_USAGE;
		if (r)
			continue;
		if (!strcmp(argv[i], "--force"))
			force = true;
		else if (argv[i][0] != '-' && !fab)
			fab = argv[i];
		else
			return fabctl_fail(FABCTL_EXIT_USAGE, "rm: unexpected '%s'", argv[i]);
	}
	if (!fab)
		fab = fabctl_o.fabric;
	if (!fab)
		return fabctl_fail(FABCTL_EXIT_USAGE, "rm: which fabric? (fabctl rm FABRIC)");
	if (!fi_name_ok(fab))
		return fabctl_fail(FABCTL_EXIT_USAGE, "rm: bad fabric name '%s'", fab);
	fi_fabric *f;
	int rc = fi_open(fab, &f);
	if (rc == 0 && (rc = fi_snapshot(f))) {
		fi_close(f);
		f = NULL;
	}
	if (rc && rc != FAB_ENOENT && !force)
		return fabctl_fail(
		    FABCTL_EXIT_REFUSED,
		    "rm %s: %s; cannot tell who is attached (--force removes anyway)", fab,
		    fi_errmsg());
	if (rc == 0) {
		char pids[256] = "";
		size_t l = 0;
		uint32_t live = 0;
		/* One per process, as ls and ps count: a process with many
		 * fabric handles has an entry for each (a resource trial saw
		 * "1024 live processes (pid 18704 18704 ...)" for one).  A
		 * process is its pid and start time: two containers' pid 1 are
		 * two processes (review). */
		for (uint32_t i = 0; i < f->nprocs; i++) {
			if (!f->procs[i].live)
				continue;
			bool seen = false;
			for (uint32_t j = 0; j < i && !seen; j++)
				seen = f->procs[j].live && f->procs[j].pid == f->procs[i].pid &&
				       f->procs[j].start_time == f->procs[i].start_time;
			if (seen)
				continue;
			live++;
			if (l + 16 < sizeof pids)
				l += (size_t)snprintf(pids + l, sizeof pids - l, "%s%u", l ? " " : "",
						      f->procs[i].pid);
		}
		fi_close(f);
		if (live && !force)
			return fabctl_fail(FABCTL_EXIT_REFUSED,
					   "rm %s: %u live process%s attached (pid %s); stop them "
					   "or use --force",
					   fab, live, live == 1 ? "" : "es", pids);
	}
	/* Unlink every fab.<fabric>.* then the control segment, but first make
	 * sure we may unlink them all: /dev/shm is sticky, so in a fabric
	 * shared with a group each segment can be removed only by its owner
	 * (or root), and a removal that stopped half-way left a fabric whose
	 * registry named segments that no longer existed (found by review). */
	DIR *d = opendir("/dev/shm");
	if (!d)
		return fabctl_fail(FABCTL_EXIT_ERROR, "/dev/shm: %s", strerror(errno));
	char prefix[80];
	snprintf(prefix, sizeof prefix, "fab.%s.", fab);
	size_t pl = strlen(prefix);
	unsigned removed = 0;
	int status = 0;
	struct dirent *de;
	struct stat dsb;
	uid_t me = geteuid();
	if (me != 0 && stat("/dev/shm", &dsb) == 0 && (dsb.st_mode & S_ISVTX) && dsb.st_uid != me) {
		char full[300];
		struct stat sb;
		snprintf(full, sizeof full, "/dev/shm/fab.%s", fab);
		int other = lstat(full, &sb) == 0 && sb.st_uid != me;
		while (!other && (de = readdir(d))) {
			if (strncmp(de->d_name, prefix, pl) || !fi_name_ok(de->d_name + pl))
				continue;
			snprintf(full, sizeof full, "/dev/shm/%s", de->d_name);
			other = lstat(full, &sb) == 0 && sb.st_uid != me;
		}
		if (other) {
			closedir(d);
			return fabctl_fail(FABCTL_EXIT_REFUSED,
					   "rm %s: %s belongs to uid %u; only its owner or root can "
					   "remove it (nothing was removed)",
					   fab, full, (unsigned)sb.st_uid);
		}
		rewinddir(d);
	}
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, pl) || !fi_name_ok(de->d_name + pl))
			continue;
		char path[300];
		snprintf(path, sizeof path, "/%s", de->d_name);
		if (shm_unlink(path) == 0)
			removed++;
		else if (errno != ENOENT)
			status = fabctl_fail(FABCTL_EXIT_ERROR, "rm /dev/shm%s: %s", path,
					     strerror(errno));
	}
	closedir(d);
	char path[80];
	snprintf(path, sizeof path, "/fab.%s", fab);
	if (shm_unlink(path) == 0)
		removed++;
	else if (errno != ENOENT)
		status = fabctl_fail(FABCTL_EXIT_ERROR, "rm /dev/shm%s: %s", path, strerror(errno));
	if (removed == 0 && status == 0)
		return fabctl_fail(FABCTL_EXIT_NOTFOUND, "rm: no fabric %s", fab);
	if (status == 0 && !fabctl_o.json)
		printf("removed fabric %s (%u segment%s)\n", fab, removed, removed == 1 ? "" : "s");
	else if (status == 0)
		printf("{\"removed\":%u}\n", removed);
	return status;
}
