/* hintstage.c - test stage of fabd_leftover.sh.  First run (no file
 * $HINT_MARK yet): sends one message on its "out" port (an spsc channel,
 * named $HINT_CHAN in the fabric) and is SIGKILLed between
 * fab__spsc_publish's two stores, the commit word stored and the tail hint
 * not: built here as the send, then the hint put back by one through
 * layout.h (the memory a kill at that instruction leaves).  Restarted (the
 * file exists): closes its output and exits 0. */
#include "stage_common.h"

#include "layout.h"

#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	const char *mark = getenv("HINT_MARK"), *fabric = getenv("FAB_FABRIC"),
		   *chan = getenv("HINT_CHAN");
	if (!mark || !fabric || !chan) {
		fprintf(stderr, "hintstage: HINT_MARK, FAB_FABRIC and HINT_CHAN must be set\n");
		return 2;
	}
	fab_stage *st = open_stage();
	fab_chan *out = fab_stage_out(st, "out");
	if (access(mark, F_OK) == 0) {
		printf("restarted: closing my output\n");
		fflush(stdout);
		fab_stage_close(st);
		return 0;
	}
	write_file(mark, "sent\n");
	if (fab_send(out, "precious", 9, NULL) != 0) {
		fprintf(stderr, "send: %s\n", fab_errmsg());
		return 3;
	}
	printf("fab_send returned 0\n");
	fflush(stdout);
	char path[160];
	snprintf(path, sizeof path, "/fab.%s.%s", fabric, chan);
	int fd = shm_open(path, O_RDWR, 0);
	fab_chan_hdr *h = fd < 0 ? MAP_FAILED
				 : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		perror(path);
		return 4;
	}
	atomic_fetch_sub(&h->tail, 1);
	raise(SIGKILL);
	return 5;
}
