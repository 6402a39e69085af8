#!/usr/bin/env bash
# fabd's /metrics survives a channel segment that shrinks while it is read.
# The HTTP thread reads each segment under fi_guarded, which turns the SIGBUS
# of a page past the end of a shrunk file into "segment shrank"; with SIGBUS
# blocked in that thread the kernel killed the whole broker instead.  Here a
# helper truncates channel c1's segment to 0 and back in a loop while /metrics
# is scraped 200 times; fabd must still be running and answer afterwards.
# No timing assertions (ctest's TIMEOUT is the hang guard).  Cleans up fabd,
# its children, the segments and the control socket, also on failure.
#
# Usage: fabd_metrics_sigbus.sh FABD
set -u
FABD=$1
N=${N:-200}

TMP=$(mktemp -d) || exit 1
FABRIC="sigbus-$$"
fabd_pid=
flip_pid=

. "$(dirname "${BASH_SOURCE[0]}")/../common/fabd_test.sh"
trap 'rm -f "$TMP/flip"; [ -n "$flip_pid" ] && kill "$flip_pid" 2>/dev/null && wait "$flip_pid" 2>/dev/null; cleanup' EXIT

fail() {
	echo "FAIL: $*"
	if [ -f "$TMP/out" ]; then
		echo "--- fabd output (last 30 lines) ---"
		tail -30 "$TMP/out"
	fi
	exit 1
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# scrape URL COUNT: COUNT GETs of URL, each must answer 200 with a page.
scrape() {
	python3 - "$1" "$2" <<'EOF'
import sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    try:
        r = urllib.request.urlopen(url, timeout=10)
        body = r.read()
        if r.status != 200 or b"fab_channel_capacity" not in body:
            sys.exit("scrape %d: status %d, %d bytes" % (i, r.status, len(body)))
    except Exception as e:
        sys.exit("scrape %d of %s: %s" % (i, url, e))
EOF
}

for attempt in 1 2 3 4 5; do
	PORT=$(free_port) || fail "no free port"
	cat >"$TMP/sigbus.yaml" <<EOF
fabric: $FABRIC
channels:
  c1: { capacity: 64, msg_size: 64 }
stages:
  src: { run: [sleep, "600"], out: { o: c1 } }
  dst: { run: [sleep, "600"], in: { i: c1 } }
metrics: { listen: "127.0.0.1:$PORT" }
shutdown: { drain: 1s, grace: 1s }
EOF
	XDG_RUNTIME_DIR=$TMP "$FABD" run "$TMP/sigbus.yaml" >"$TMP/out" 2>&1 &
	fabd_pid=$!
	for ((i = 0; i < 3000; i++)); do
		grep -q "metrics at http://127.0.0.1:$PORT/metrics" "$TMP/out" && break 2
		kill -0 "$fabd_pid" 2>/dev/null || break
		sleep 0.01
	done
	wait "$fabd_pid"
	rc=$?
	fabd_pid=
	grep -q "fabd: metrics at 127.0.0.1:$PORT: .*in use" "$TMP/out" && continue
	fail "fabd did not serve metrics (exit $rc)"
done
[ -n "$fabd_pid" ] || fail "no free port for the metrics after 5 attempts"
URL="http://127.0.0.1:$PORT/metrics"
SEG=/dev/shm/fab.$FABRIC.c1
[ -f "$SEG" ] || fail "no segment $SEG"
scrape "$URL" 1 || fail "the first scrape failed"

# Shrink and regrow c1's segment until $TMP/flip is removed.
touch "$TMP/flip"
python3 - "$SEG" "$TMP/flip" <<'EOF' &
import os, sys
seg, flag = sys.argv[1], sys.argv[2]
size = os.stat(seg).st_size
try:
    while os.path.exists(flag):
        os.truncate(seg, 0)
        os.truncate(seg, size)
finally:
    if os.path.exists(seg):
        os.truncate(seg, size)
EOF
flip_pid=$!

scrape "$URL" "$N"
src=$?
rm -f "$TMP/flip"
wait "$flip_pid"
flip_pid=
kill -0 "$fabd_pid" 2>/dev/null || {
	wait "$fabd_pid"
	rc=$?
	fabd_pid=
	fail "fabd died during the scrapes (exit $rc; 135 is SIGBUS)"
}
[ "$src" -eq 0 ] || fail "a scrape failed while the segment was flipped"
grep -q "Bus error\|SIGBUS" "$TMP/out" && fail "fabd reported a SIGBUS"

# Still alive and answering with the segment back to its size.
scrape "$URL" 1 || fail "fabd does not answer /metrics after the flips"

kill -TERM "$fabd_pid"
for ((i = 0; i < 1000; i++)); do
	kill -0 "$fabd_pid" 2>/dev/null || break
	sleep 0.01
done
echo "fabd_metrics_sigbus: ok ($N scrapes)"
exit 0
