/* topology.h - the topology file of fabd, parsed into the model fabd runs from.
 *
 * A topology file (YAML, docs/topology.md) declares one fabric: its
 * channels, limiters, topics, stages, error channel, metrics endpoint and
 * shutdown times.  fabd_topology_load() parses and validates it completely
 * and either returns the model or the list of every error found, each with
 * its 1-based line and column.  The model holds only resolved, checked
 * values: names are valid fab names, references are indices, defaults are
 * filled in and channel kinds are decided, so fabd never looks at YAML
 * again.  Everything here is private to fabd (not part of libfab's ABI).
 */
#ifndef FABD_TOPOLOGY_H
#define FABD_TOPOLOGY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <fab/fab.h>

/* Defaults (docs/topology.md is the user-facing copy of this list). */
#define FABD_DEF_CAPACITY 64u
#define FABD_DEF_MSG_SIZE 256u
#define FABD_DEF_MAX_INFLIGHT 1u
#define FABD_DEF_MAX_DELIVERIES 5u
#define FABD_DEF_BURST 1u
#define FABD_DEF_REPLICAS 1u
#define FABD_DEF_BACKOFF_MIN_NS 100000000ull      /* 100ms */
#define FABD_DEF_BACKOFF_MAX_NS 10000000000ull    /* 10s */
#define FABD_DEF_INTENSITY_MAX 5u
#define FABD_DEF_INTENSITY_WINDOW_NS 10000000000ull /* 10s */
#define FABD_DEF_ERRORS_NAME "errors"
#define FABD_DEF_ERRORS_CAPACITY 256u
#define FABD_DEF_ERRORS_MSG_SIZE 1024u
#define FABD_DEF_METRICS_LISTEN "127.0.0.1:9464"
#define FABD_DEF_DRAIN_NS 10000000000ull          /* 10s */
#define FABD_DEF_GRACE_NS 5000000000ull           /* 5s */

/* Limits checked by the parser. */
#define FABD_REPLICAS_MAX 1024u
#define FABD_MAX_INFLIGHT_MAX 1024u
#define FABD_MAX_DELIVERIES_MAX 1000u
#define FABD_BURST_MAX ((1u << 24) - 1u)
#define FABD_RATE_MAX 1e9              /* tokens per second (limiter T >= 1 ns) */
#define FABD_RATE_MIN 9.1e-4           /* one token every ~1099 s */
#define FABD_ERRORS_MAX 200            /* diagnostics kept; the rest are counted */
#define FABD_PORTS_MAX 64u             /* per stage, FAB_PORTS' limit (docs/stage.md) */
#define FABD_ERRORS_MSG_MIN 384u       /* sizeof(fab_stage_err) (docs/stage.md) */
#define FABD_MAP_MAX 1024u             /* entries of one mapping or limiter list */
#define FABD_WALK_MAX (1u << 18)       /* entries walked in a file, aliases expanded */
#define FABD_DEPTH_MAX 32              /* nesting of mappings and lists */
#define FABD_FILE_MAX (64u << 20)      /* bytes of a topology file */

typedef struct fabd_pos {
	uint32_t line; /* 1-based; 0 = no position (file-level error) */
	uint32_t col;  /* 1-based */
} fabd_pos;

typedef enum fabd_restart {
	FABD_RESTART_ON_FAILURE = 0, /* default: restart unless it exited 0 */
	FABD_RESTART_ALWAYS,
	FABD_RESTART_NEVER,
} fabd_restart;

typedef enum fabd_strategy {
	FABD_ONE_FOR_ONE = 0, /* default: only the dead replica */
	FABD_ONE_FOR_ALL,     /* every process of the fabric */
	FABD_REST_FOR_ONE,    /* the dead stage and every stage declared after it */
} fabd_strategy;

typedef enum fabd_target_kind {
	FABD_TARGET_CHANNEL = 0, /* index into channels[] */
	FABD_TARGET_TOPIC,       /* index into topics[] */
	FABD_TARGET_ERRORS,      /* the fabric's error channel (index unused) */
} fabd_target_kind;

typedef struct fabd_channel {
	char name[FAB_NAME_MAX + 1];
	fabd_pos pos;           /* of the name */
	uint32_t capacity;      /* exact, 0 = unbuffered */
	uint32_t msg_size;
	uint32_t kind;          /* FAB_SPSC | FAB_MPMC, decided (never 0) */
	int kind_explicit;      /* 1 when the file said `kind:` */
	uint32_t delivery;      /* FAB_AT_MOST_ONCE | FAB_AT_LEAST_ONCE */
	uint32_t max_inflight;
	uint32_t max_deliveries;
	int dead_letter;        /* index into channels[], -1 none */
	char dead_letter_name[FAB_NAME_MAX + 1]; /* "" when none */
	/* Derived from the stages' ports. */
	uint32_t writers;       /* sender processes: sum of replicas over out ports */
	uint32_t readers;       /* receiver processes: sum of replicas over in ports */
	uint32_t dl_sources;    /* channels that name this one as dead_letter */
	uint32_t producers;     /* close quorum for fab_chan_opts (max(writers, 1)) */
} fabd_channel;

typedef struct fabd_limiter {
	char name[FAB_NAME_MAX + 1];
	fabd_pos pos;
	double rate;            /* tokens per second */
	uint32_t burst;
} fabd_limiter;

typedef struct fabd_topic {
	char name[FAB_NAME_MAX + 1];
	fabd_pos pos;
	uint32_t capacity;
	uint32_t msg_size;
	uint32_t publishers;    /* processes with an out port on it */
	uint32_t subscribers;   /* processes with an in port on it */
} fabd_topic;

/* A port.  Channel ports (and the error channel) become FAB_PORTS entries
 * "<in|out>:<name>=<channel>" (docs/stage.md).  Topic ports are declarations
 * only in ABI 1.1, which has no topic ports: they let the checker see who
 * publishes and subscribes, and the stage opens the topic by its name. */
typedef struct fabd_port {
	char name[FAB_NAME_MAX + 1]; /* unique per direction within the stage */
	fabd_pos pos;
	int out;                     /* 0: in (receive/subscribe), 1: out (send/publish) */
	fabd_target_kind target_kind;
	int target;                  /* index, see fabd_target_kind */
	uint32_t policy;             /* FAB_SUB_BLOCK | FAB_SUB_DROP (topic in ports), else 0 */
} fabd_port;

typedef struct fabd_stage {
	char name[FAB_NAME_MAX + 1];
	fabd_pos pos;
	char **argv;            /* NULL-terminated, argc >= 1 */
	size_t argc;
	uint32_t replicas;
	uint32_t max_replicas;  /* the most `scale` may start (>= replicas; default replicas) */
	fabd_port *ports;
	size_t nports;
	int *limiters;          /* indices into limiters[] */
	size_t nlimiters;
	fabd_restart restart;
	uint64_t backoff_min_ns;
	uint64_t backoff_max_ns;
	uint32_t intensity_max;      /* restarts allowed ... */
	uint64_t intensity_window_ns; /* ... within this window */
	fabd_strategy strategy;
	uint64_t watchdog_ns;   /* 0 = no watchdog */
	char **env;             /* "KEY=VALUE" strings, NULL-terminated */
	size_t nenv;
} fabd_stage;

typedef struct fabd_topology {
	char fabric[FAB_NAME_MAX + 1];
	uint32_t mode;           /* the fabric's permission bits (FAB_MODE), 0600 default */
	fabd_channel *channels;
	size_t nchannels;
	fabd_limiter *limiters;
	size_t nlimiters;
	fabd_topic *topics;
	size_t ntopics;
	fabd_stage *stages;     /* in file order (rest_for_one depends on it) */
	size_t nstages;
	struct {
		char name[FAB_NAME_MAX + 1];
		uint32_t capacity;
		uint32_t msg_size;
		uint32_t writers;    /* every replica of every stage */
		uint32_t readers;    /* stage replicas reading it; 0 = fabd reads it */
	} errors;                    /* always MPMC, at-most-once */
	struct {
		int enabled;
		char host[256];      /* "127.0.0.1", "::1" (no brackets), "0.0.0.0" */
		uint16_t port;
	} metrics;
	uint64_t drain_ns;
	uint64_t grace_ns;
	uint32_t processes;      /* sum of replicas */
} fabd_topology;

typedef struct fabd_diag {
	fabd_pos pos;
	char *msg;
} fabd_diag;

/* The diagnostics of one load, sorted by position once the load returns. */
typedef struct fabd_diags {
	fabd_diag *v;
	size_t n;
	size_t cap;
	size_t dropped; /* errors beyond FABD_ERRORS_MAX, counted only */
} fabd_diags;

/* Parse and validate the topology file at `path`.  Returns 0 and sets *out
 * to a model the caller frees with fabd_topology_free() when the file is
 * valid; returns -1 and sets *out to NULL when it is not, with every error in
 * *d (which the caller zero-initialises and frees with fabd_diags_free()).
 * Never aborts on any input; out of memory is reported as an error. */
int fabd_topology_load(const char *path, fabd_topology **out, fabd_diags *d);

/* The same on a buffer (tests). */
int fabd_topology_parse(const char *text, size_t len, fabd_topology **out, fabd_diags *d);

void fabd_topology_free(fabd_topology *t);
void fabd_diags_free(fabd_diags *d);

/* Print each diagnostic as "file:line:col: message\n" (or "file: message"
 * when it has no position). */
void fabd_diags_print(const fabd_diags *d, const char *file, FILE *f);

/* Lookups by name; -1 when absent. */
int fabd_topology_channel(const fabd_topology *t, const char *name);
int fabd_topology_stage(const fabd_topology *t, const char *name);

/* Parsers of the value syntaxes, exposed for tests.  Each returns 0 on
 * success, -1 when the text is not of that syntax or out of range. */
int fabd_parse_duration(const char *s, uint64_t *ns);
int fabd_parse_size(const char *s, uint64_t *bytes);
int fabd_parse_rate(const char *s, double *per_s);
int fabd_split_command(const char *s, char ***argv, size_t *argc, const char **why);

#endif
