/* fabd.c - the fab broker: command line.
 *
 *   fabd check FILE   validate a topology file, run nothing
 *   fabd run [--keep] [--error-ratio PCT] FILE
 *                     run the fabric in the foreground (run.c)
 *
 * Exit codes: 0 valid / ran and stopped cleanly, 1 the topology has errors,
 * 2 usage error, 4 a stage failed, 5 the fabric could not be set up,
 * 6 replicas had to be killed at shutdown, 7 messages were left queued and
 * the segments kept (docs/fabd.md).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"
#include "topology.h"

static void usage(FILE *f)
{
	fputs("usage: fabd check FILE    validate a topology file (runs nothing)\n"
	      "       fabd run [--keep] [--error-ratio PCT] FILE\n"
	      "                          run the fabric described by FILE in the foreground\n"
	      "                          (--keep: leave its segments in /dev/shm at exit;\n"
	      "                          --error-ratio: warn when a stage's errors pass PCT\n"
	      "                          percent of its messages, default 1)\n"
	      "       fabd --help | --version\n"
	      "\n"
	      "Errors are printed as FILE:LINE:COLUMN: message, every one of them.\n"
	      "Exit status: 0 valid / ran and stopped cleanly, 1 invalid topology, 2 usage\n"
	      "error, 4 a stage failed, 5 the fabric could not be set up, 6 replicas had to\n"
	      "be killed at shutdown, 7 messages were left queued (the segments were kept).\n"
	      "The topology syntax is described in docs/topology.md, fabd run in docs/fabd.md.\n",
	      f);
}

static const char *plural(size_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

static int load_or_report(const char *path, fabd_topology **t)
{
	fabd_diags d = { 0 };
	if (fabd_topology_load(path, t, &d) == 0) {
		fabd_diags_free(&d);
		return 0;
	}
	fabd_diags_print(&d, path, stderr);
	fprintf(stderr, "%s: %zu %s\n", path, d.n + d.dropped, plural(d.n + d.dropped, "error",
									     "errors"));
	fabd_diags_free(&d);
	return -1;
}

static int cmd_check(const char *path)
{
	fabd_topology *t;
	if (load_or_report(path, &t) < 0)
		return FABD_EXIT_INVALID;
	printf("fabric %s: %zu %s, %zu %s (%u %s), %zu %s, %zu %s; errors -> %s; metrics ",
	       t->fabric, t->nchannels, plural(t->nchannels, "channel", "channels"), t->nstages,
	       plural(t->nstages, "stage", "stages"), t->processes,
	       plural(t->processes, "process", "processes"), t->nlimiters,
	       plural(t->nlimiters, "limiter", "limiters"), t->ntopics,
	       plural(t->ntopics, "topic", "topics"), t->errors.name);
	if (!t->metrics.enabled)
		printf("off\n");
	else if (strchr(t->metrics.host, ':'))
		printf("[%s]:%u\n", t->metrics.host, t->metrics.port);
	else
		printf("%s:%u\n", t->metrics.host, t->metrics.port);
	fabd_topology_free(t);
	return FABD_EXIT_OK;
}

static int cmd_run(const char *path, int keep, double ratio)
{
	/* Validate first, so that `run` reports a bad file as `check` does. */
	fabd_topology *t;
	if (load_or_report(path, &t) < 0)
		return FABD_EXIT_INVALID;
	fabd_run_opts o = { .keep = keep, .error_ratio = ratio };
	int code = fabd_run(t, &o);
	fabd_topology_free(t);
	return code;
}

int main(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return FABD_EXIT_OK;
	}
	if (argc == 2 && !strcmp(argv[1], "--version")) {
		printf("fabd (fab) %s\n", fab_version());
		return FABD_EXIT_OK;
	}
	if (argc == 3 && !strcmp(argv[1], "check"))
		return cmd_check(argv[2]);
	if (argc >= 3 && !strcmp(argv[1], "run")) {
		int keep = 0, i = 2;
		double ratio = FABD_ERROR_RATIO_DEFAULT;
		for (; i < argc - 1; i++) {
			if (!strcmp(argv[i], "--keep")) {
				keep = 1;
			} else if (!strcmp(argv[i], "--error-ratio") && i + 1 < argc - 1) {
				char *end;
				errno = 0;
				double pct = strtod(argv[++i], &end);
				if (errno || *end || !isfinite(pct) || pct < 0 || pct > 100) {
					fprintf(stderr, "fabd run: --error-ratio: expected a "
							"percentage between 0 and 100, got '%s'\n",
						argv[i]);
					return FABD_EXIT_USAGE;
				}
				ratio = pct / 100.0;
			} else {
				break;
			}
		}
		if (i == argc - 1 && argv[i][0] != '-')
			return cmd_run(argv[i], keep, ratio);
		fprintf(stderr, "fabd run: bad arguments\n");
		usage(stderr);
		return FABD_EXIT_USAGE;
	}
	if (argc >= 2 && strcmp(argv[1], "check") && strcmp(argv[1], "run"))
		fprintf(stderr, "fabd: unknown command '%s'\n", argv[1]);
	else if (argc >= 2)
		fprintf(stderr, "fabd %s: expected exactly one FILE\n", argv[1]);
	usage(stderr);
	return FABD_EXIT_USAGE;
}
