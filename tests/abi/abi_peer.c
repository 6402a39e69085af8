/*
 * abi_peer.c - the C side of the ctypes ABI test (ctypes_test.py).
 *
 *   abi_peer FABRIC echo IN OUT      receive from IN until FAB_ECLOSED and
 *                                    send every message back on OUT
 *                                    unchanged, then close OUT
 *   abi_peer FABRIC produce CHAN N   send "msg-<i>" for i in [0, N), close
 *
 * Exit 0 on success; 2 usage; 3 open; 4 send/recv failed.  Every blocking
 * call runs under a 30 s deadline so a broken peer never hangs the test.
 */
#include <fab/fab.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(int code, const char *what, int rc)
{
	fprintf(stderr, "abi_peer: %s: %s (%s)\n", what, fab_errname(rc), fab_strerror(rc));
	return code;
}

int main(int argc, char **argv)
{
	fab_fabric *fab = NULL;
	fab_chan *in = NULL, *out = NULL;
	fab_ctx *dl = NULL;
	int rc;

	if (argc != 5 || (strcmp(argv[2], "echo") != 0 && strcmp(argv[2], "produce") != 0)) {
		fprintf(stderr, "usage: abi_peer FABRIC echo IN OUT | FABRIC produce CHAN N\n");
		return 2;
	}
	rc = fab_fabric_open(argv[1], 0, &fab);
	if (rc != 0)
		return fail(3, "fab_fabric_open", rc);
	rc = fab_ctx_with_timeout(NULL, 30LL * 1000000000LL, &dl);
	if (rc != 0)
		return fail(3, "fab_ctx_with_timeout", rc);

	if (strcmp(argv[2], "echo") == 0) {
		unsigned char buf[4096];
		rc = fab_chan_open(fab, argv[3], FAB_RECV, &in);
		if (rc != 0)
			return fail(3, "fab_chan_open IN", rc);
		rc = fab_chan_open(fab, argv[4], FAB_SEND, &out);
		if (rc != 0)
			return fail(3, "fab_chan_open OUT", rc);
		for (;;) {
			ssize_t n = fab_recv(in, buf, sizeof buf, dl);
			if (n == FAB_ECLOSED)
				break;
			if (n < 0)
				return fail(4, "fab_recv", (int)n);
			rc = fab_send(out, buf, (size_t)n, dl);
			if (rc != 0)
				return fail(4, "fab_send", rc);
		}
		rc = fab_chan_close(out);
		if (rc != 0)
			return fail(4, "fab_chan_close", rc);
		fab_chan_release(in);
		fab_chan_release(out);
	} else {
		long n = strtol(argv[4], NULL, 10);
		char msg[64];
		rc = fab_chan_open(fab, argv[3], FAB_SEND, &out);
		if (rc != 0)
			return fail(3, "fab_chan_open", rc);
		for (long i = 0; i < n; i++) {
			int len = snprintf(msg, sizeof msg, "msg-%ld", i);
			rc = fab_send(out, msg, (size_t)len, dl);
			if (rc != 0)
				return fail(4, "fab_send", rc);
		}
		rc = fab_chan_close(out);
		if (rc != 0)
			return fail(4, "fab_chan_close", rc);
		fab_chan_release(out);
	}
	fab_ctx_release(dl);
	fab_fabric_close(fab);
	return 0;
}
