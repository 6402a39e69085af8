/* cli.h - what fabctl's verbs share: the global options, the fabric
 * resolution, JSON and text output helpers, and the verb entry points.
 * Private to fabctl. */
#ifndef FABCTL_CLI_H
#define FABCTL_CLI_H

#include "inspect.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct fabctl_opts {
	const char *fabric; /* -f, else NULL */
	bool json;          /* -o json */
} fabctl_opts;

extern fabctl_opts fabctl_o;

/* Error message on stderr, prefixed "fabctl: "; returns code. */
int fabctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The exit code for a FAB_E* code of inspect.c or libfab. */
int fabctl_exit_for(int fabrc);

/* A listing's exit status rc after one of its objects failed with fabrc:
 * 5 (corrupt) before 7 (not permitted) before 1 or whatever rc held. */
int fabctl_exit_merge(int rc, int fabrc);
/* The graver of two exit statuses, in that order (0 is the least). */
int fabctl_exit_worse(int a, int b);

/* Consume a global option (-f F, -o FMT) at argv[*i]; 1 if consumed, 0 if
 * not an option of ours, -1 on a bad one (message printed). */
int fabctl_common_opt(int argc, char **argv, int *i);

/* Is argv[i] --help / -h? */
bool fabctl_is_help(const char *a);

/* The fabric to work on: explicit, else -f, else $FAB_FABRIC, else the
 * only fabric in /dev/shm.  Copies it into out; returns an exit code. */
int fabctl_resolve(const char *explicit_name, char out[FI_NAME]);

/* Open and snapshot fabric `name`; on failure prints why and returns the
 * exit code (*f NULL). */
int fabctl_snapshot(const char *name, fi_fabric **f);
/* On stderr, when channels or topics of snapshot f could not be read (a
 * corrupt segment, another libfab version's layout, no permission): `what`
 * says what leaves them out, with its verb ("the wait-for graph leaves").  ps and blocked
 * show such channels as nothing otherwise (an upgrade trial). */
void fabctl_note_unreadable(const fi_fabric *f, const char *what);

/* Durations: "200ms", "1.5s", "2" (seconds), "500us"; -1 when malformed. */
int64_t fabctl_parse_duration(const char *s);
/* A count >= min; -1 when malformed. */
long fabctl_parse_count(const char *s, long min);

/* JSON helpers. */
void js_str(FILE *o, const char *s);
void js_bytes(FILE *o, const uint8_t *p, size_t n); /* a string, \u00XX for non-printables */

/* "a.0" for a stage process, "" otherwise. */
void fabctl_stage_label(const fi_proc *p, char *out, size_t n);
/* "send orders", "select 3 cases", "ctx root", "limiter api" ... */
void fabctl_wait_text(const fi_fabric *f, uint64_t w, char *out, size_t n);
const char *fabctl_wait_op(uint64_t w); /* "send" "recv" "select" "publish" "ctx" "limiter" */
const char *fabctl_wait_obj(const fi_fabric *f, uint64_t w); /* channel/ctx/limiter name or "" */

/* Restarts of a stage replica from fabd's status (when fabd answers): -1 when
 * unknown.  fabctl_restarts_load fetches once. */
void fabctl_restarts_load(const char *fabric);
long fabctl_restarts(const char *stage, uint32_t replica);

/* Socket path of fabd for `fabric`. */
void fabctl_sock_path(const char *fabric, char *out, size_t n);

/* Verbs: argv[0] is the verb.  Each returns an exit code. */
int fabctl_ls(int argc, char **argv);
int fabctl_chan(int argc, char **argv);
int fabctl_ps(int argc, char **argv);
int fabctl_top(int argc, char **argv);
int fabctl_blocked(int argc, char **argv);
int fabctl_peek(int argc, char **argv);
int fabctl_send(int argc, char **argv);
int fabctl_recv(int argc, char **argv);
int fabctl_rm(int argc, char **argv);
int fabctl_control(int argc, char **argv); /* scale restart drain cancel limit status */

/* Render parts used by top too. */
int fabctl_chan_render(fi_fabric *f, fi_fabric *prev, double dt, FILE *o);
int fabctl_ps_render(fi_fabric *f, FILE *o);

#endif /* FABCTL_CLI_H */
