#!/usr/bin/env bash
# fabd under a low soft descriptor limit: it keeps about three descriptors
# per replica, so 40 replicas under `ulimit -S -n 64` ran out ("pipe: Too
# many open files", exit 4; a resource-exhaustion trial, 28 Nov).  fabd now
# raises its soft limit to the hard one and gives every stage the limit it
# was started with: the run completes (exit 0) and each stage sees 64.
# Cleans up fabd, its children and the segments, also on failure.
#
# Usage: fabd_nofile.sh FABD
set -u
FABD=$1
TMP=$(mktemp -d) || exit 1
FABRIC="nofile-$$"
fabd_pid=

. "$(dirname "${BASH_SOURCE[0]}")/../common/fabd_test.sh"

hard=$(ulimit -H -n)
if [ "$hard" != unlimited ] && [ "$hard" -le 256 ]; then
	echo "SKIP: the hard descriptor limit ($hard) leaves nothing to raise"
	exit 77
fi

cat >"$TMP/t.yaml" <<YAML
fabric: $FABRIC
channels:
  c: { capacity: 4, msg_size: 8 }
stages:
  w:
    run: [sh, -c, 'ulimit -S -n > $TMP/w.\$FAB_REPLICA']
    out: { out: c }
    replicas: 20
    restart: never
  r:
    run: [sh, -c, 'ulimit -S -n > $TMP/r.\$FAB_REPLICA']
    in: { in: c }
    replicas: 20
    restart: never
metrics: { listen: "off" }
YAML

# timeout: a hang detector only.
(ulimit -S -n 64 && XDG_RUNTIME_DIR=$TMP exec timeout 60 "$FABD" run "$TMP/t.yaml") >"$TMP/out" 2>&1 &
fabd_pid=$!
wait "$fabd_pid"
rc=$?
fabd_pid=
fail=0
[ "$rc" = 0 ] || { echo "FAIL: fabd run under ulimit -S -n 64 exited $rc, want 0"; fail=1; }
n=$(ls "$TMP" | grep -c '^[wr]\.[0-9]*$')
[ "$n" = 40 ] || { echo "FAIL: $n of 40 stages ran"; fail=1; }
bad=$(cat "$TMP"/[wr].* 2>/dev/null | grep -vcx 64)
[ "$bad" = 0 ] || { echo "FAIL: $bad stage(s) did not get fabd's original limit 64:"; cat "$TMP"/[wr].*; fail=1; }
if [ "$fail" != 0 ]; then
	echo "--- fabd output ---"; cat "$TMP/out"
	exit 1
fi
echo "fabd ran 40 replicas under a soft limit of 64 descriptors; stages got 64: ok"
