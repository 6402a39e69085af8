/* fabd.c - the fab broker: command line.
 *
 *   fabd check FILE   validate a topology file, run nothing
 *   fabd run FILE     run the fabric (not implemented yet: issue 5)
 *
 * Exit codes: 0 valid / ran and stopped cleanly, 1 the topology has errors,
 * 2 usage error, 3 not implemented yet.
 */
#include <stdio.h>
#include <string.h>

#include "topology.h"

#define FABD_EXIT_OK 0
#define FABD_EXIT_INVALID 1
#define FABD_EXIT_USAGE 2
#define FABD_EXIT_UNIMPLEMENTED 3

static void usage(FILE *f)
{
	fputs("usage: fabd check FILE    validate a topology file (runs nothing)\n"
	      "       fabd run FILE      run the fabric described by FILE (not implemented yet)\n"
	      "       fabd --help | --version\n"
	      "\n"
	      "Errors are printed as FILE:LINE:COLUMN: message, every one of them.\n"
	      "Exit status: 0 valid, 1 invalid topology, 2 usage error, 3 not implemented.\n"
	      "The topology syntax is described in docs/topology.md.\n",
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

static int cmd_run(const char *path)
{
	/* Validate first so that `run` already reports a bad file the same way
	 * `check` does; running is the rest of issue 5. */
	fabd_topology *t;
	if (load_or_report(path, &t) < 0)
		return FABD_EXIT_INVALID;
	fabd_topology_free(t);
	fprintf(stderr, "fabd run: not implemented yet (issue 5)\n");
	return FABD_EXIT_UNIMPLEMENTED;
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
	if (argc == 3 && !strcmp(argv[1], "run"))
		return cmd_run(argv[2]);
	if (argc >= 2 && strcmp(argv[1], "check") && strcmp(argv[1], "run"))
		fprintf(stderr, "fabd: unknown command '%s'\n", argv[1]);
	else if (argc >= 2)
		fprintf(stderr, "fabd %s: expected exactly one FILE\n", argv[1]);
	usage(stderr);
	return FABD_EXIT_USAGE;
}
