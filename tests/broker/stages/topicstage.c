/* topicstage.c - test stage: a topic's publisher or a slow subscriber, so
 * that a fabd test sees a topic with traffic and drops (the stage API has
 * no topic ports in ABI 1.1: the topic is opened by name, docs/topology.md).
 *
 *   TOPIC=NAME MODE=pub [PAUSE_US=U]  publish 0, 1, 2, ... (8 bytes each),
 *                                     pausing U us (default 100) between
 *                                     messages, until the stage's context
 *                                     is cancelled
 *   TOPIC=NAME MODE=sub [PAUSE_US=U]  subscribe with FAB_SUB_DROP and read,
 *                                     pausing U us (default 2000) after each
 *                                     message, so a faster publisher laps it
 *                                     (fab_topic_dropped_total grows)
 *
 * Exit status: 0 when the context is cancelled, 1 a library error, 2 usage. */
#include "stage_common.h"

#include <string.h>
#include <time.h>

static void pause_us(uint64_t us)
{
	struct timespec d = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
	nanosleep(&d, NULL);
}

int main(void)
{
	const char *topic = getenv("TOPIC"), *mode = getenv("MODE");
	if (!topic || !mode || (strcmp(mode, "pub") && strcmp(mode, "sub"))) {
		fprintf(stderr, "topicstage: set TOPIC=NAME and MODE=pub|sub\n");
		return 2;
	}
	int pub = !strcmp(mode, "pub");
	uint64_t pause = env_u64("PAUSE_US", pub ? 100 : 2000), n = 0;
	fab_stage *st = open_stage();
	fab_ctx *ctx = fab_stage_ctx(st);
	fab_fabric *fab = NULL;
	fab_topic *t = NULL;
	fab_sub *sub = NULL;
	int rc = fab_fabric_open(getenv("FAB_FABRIC"), 0, &fab);
	if (rc == 0)
		rc = pub ? fab_topic_open(fab, topic, &t)
			 : fab_topic_subscribe(fab, topic, FAB_SUB_DROP, &sub);
	if (rc < 0) {
		fprintf(stderr, "topic %s: %s\n", topic, fab_errmsg());
		fab_fabric_close(fab);
		fab_stage_close(st);
		return 1;
	}
	for (;;) {
		uint64_t v = n;
		if (pub) {
			if (fab_ctx_err(ctx))
				break;
			rc = fab_topic_publish(t, &v, sizeof v, ctx);
		} else {
			ssize_t len = fab_sub_recv(sub, &v, sizeof v, ctx);
			rc = len < 0 ? (int)len : 0;
		}
		if (rc == FAB_ECANCELED || rc == FAB_ECLOSED)
			break;
		if (rc < 0) {
			fprintf(stderr, "topic %s: %s\n", topic, fab_errmsg());
			break;
		}
		n++;
		pause_us(pause);
	}
	printf("topicstage %s: %llu messages, %llu dropped\n", mode, (unsigned long long)n,
	       (unsigned long long)(sub ? fab_sub_dropped(sub) : 0));
	if (sub)
		fab_sub_release(sub);
	if (t)
		fab_topic_release(t);
	fab_fabric_close(fab);
	fab_stage_close(st);
	return rc < 0 && rc != FAB_ECANCELED && rc != FAB_ECLOSED ? 1 : 0;
}
