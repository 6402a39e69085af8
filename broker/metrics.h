/*
 * metrics.h - fabd's Prometheus endpoint (DESIGN §5 "Metrics", docs/metrics.md).
 *
 * Two layers:
 *   fab_metrics_render   builds the text exposition (format 0.0.4) of one
 *                        fabric from its shared segments, mapped read-only
 *                        (no fabric handle, no attach, nothing written), plus
 *                        the per-stage figures only fabd knows, passed in.
 *   fab_metrics_start    serves it over HTTP (libmicrohttpd, its own internal
 *                        thread) at GET /metrics; stop tears it down.
 *
 * Errors are negative FAB_E* codes (fab/fab.h); fab_metrics_errmsg() gives
 * this thread's detail of the last failure.
 */
#ifndef FABD_METRICS_H
#define FABD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <fab/fab.h>

#define FAB_METRICS_LISTEN_DEFAULT "127.0.0.1:9464"
#define FAB_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* What fabd knows about one stage of its topology (not in shared memory). */
typedef struct fab_metrics_stage {
	const char *name;  /* the stage's name (label value; escaped as needed) */
	uint32_t replicas; /* replicas running now -> fab_stage_replicas */
	uint32_t up;       /* 1 = the stage is up (fabd's judgement) -> fab_stage_up */
	uint64_t restarts; /* restarts since fabd started -> fab_stage_restarts_total */
} fab_metrics_stage;

/* What a render saw, for the caller's logs and for tests. */
typedef struct fab_metrics_report {
	uint32_t channels; /* channels rendered */
	uint32_t topics;   /* topics rendered */
	uint32_t stages;   /* stage-table entries rendered */
	uint32_t skipped;  /* segments (control, channel, topic) not rendered */
} fab_metrics_report;

/*
 * Render the exposition of fabric `fabric` into a new NUL-terminated buffer,
 * *out (free() it), of *len bytes.  `stages[0..nstages)` adds fabd's own
 * per-stage gauges and counters; NULL/0 leaves them out.  `rep` may be NULL.
 *
 * Reads only: the control segment and every channel and topic segment named
 * in its registry are mapped PROT_READ and validated as libfab validates
 * them (magic, layout version, every size against the file).  A segment that
 * does not validate, or whose creator has not published it yet, is skipped:
 * a `# fab: skipped ...` comment says why, fab_scrape_skipped_segments
 * counts it, and the rest is rendered.  An unreadable control segment leaves
 * only fabd's own figures.
 *
 * Returns 0, FAB_EINVAL (bad arguments; nothing allocated) or FAB_ENOMEM.
 * Safe to call from any thread, concurrently with itself.
 */
int fab_metrics_render(const char *fabric, const fab_metrics_stage *stages, size_t nstages,
		       char **out, size_t *len, fab_metrics_report *rep);

typedef struct fab_metrics fab_metrics;

/*
 * Start serving fabric `fabric`'s metrics at `listen`: "host:port" or
 * "[v6]:port", numeric host or a name resolved once here; NULL means
 * FAB_METRICS_LISTEN_DEFAULT.  Port 0 binds an ephemeral port
 * (fab_metrics_port reads it back).  Never binds a wildcard address unless
 * it is the one configured.
 *
 * Requests are served by libmicrohttpd's internal thread, created with every
 * signal blocked (fabd's signalfd keeps seeing them all).  GET or HEAD of
 * /metrics is 200 with FAB_METRICS_CONTENT_TYPE; another method there is 405;
 * any other path is 404.
 *
 * Returns 0 with *out set, FAB_EINVAL (bad address), FAB_ESYS (socket or
 * bind failed; errno kept in the message) or FAB_ENOMEM.  Call from fabd's
 * main thread.
 */
int fab_metrics_start(const char *listen, const char *fabric, fab_metrics **out);

/* The bound TCP port, or 0 if unknown. */
uint16_t fab_metrics_port(const fab_metrics *m);

/*
 * Replace the per-stage figures served from now on (copied, names too).
 * fabd calls it whenever a stage's state changes; a scrape in progress keeps
 * the old copy.  Returns 0, FAB_EINVAL or FAB_ENOMEM (old figures kept).
 */
int fab_metrics_set_stages(fab_metrics *m, const fab_metrics_stage *stages, size_t n);

/* Stop serving: waits for requests in progress, closes the socket, frees m.
 * NULL is a no-op. */
void fab_metrics_stop(fab_metrics *m);

/* This thread's detail of the last failure of a fab_metrics_* call. */
const char *fab_metrics_errmsg(void);

#endif /* FABD_METRICS_H */
