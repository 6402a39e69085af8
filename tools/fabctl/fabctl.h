/* fabctl.h - what fabctl's parts share: exit codes and the entry of
 * `fabctl trace` (trace.c, built only when clang, bpftool and libbpf are
 * found).  Private to fabctl. */
#ifndef FABCTL_H
#define FABCTL_H

/* Exit codes (docs/man/fabctl.1 "EXIT STATUS"); scripts rely on them. */
#define FABCTL_EXIT_OK 0
#define FABCTL_EXIT_ERROR 1     /* the verb failed (a library or system error) */
#define FABCTL_EXIT_USAGE 2     /* bad command line */
#define FABCTL_EXIT_NOTFOUND 3  /* no such fabric, channel, stage or limiter */
#define FABCTL_EXIT_REFUSED 4   /* refused: rm with live processes, fabd said no */
#define FABCTL_EXIT_CORRUPT 5   /* a segment failed validation (reported, not trusted) */
#define FABCTL_EXIT_NOBROKER 6  /* a control verb, and no fabd serves the fabric */
#define FABCTL_EXIT_NOPRIV 7    /* not permitted: a segment's mode; trace: loading eBPF */
#define FABCTL_EXIT_DEADLOCK 8  /* blocked: at least one wait-for cycle found */
#define FABCTL_EXIT_UNSUPPORTED 9 /* trace: this fabctl was built without eBPF support */
#define FABCTL_EXIT_TIMEOUT 10  /* recv: --timeout passed before -n messages arrived */

/* `fabctl trace [options]`: argv[0] is "trace".  Returns an exit code. */
int fabctl_trace_main(int argc, char **argv);

#endif /* FABCTL_H */
