#!/usr/bin/env bash
# fabd must not destroy a queued message (exit 7, segments kept) when the
# message's sender was SIGKILLed between the commit word and the tail hint of
# an spsc send (stages/hintstage.c builds that state, then is restarted and
# closes its output).  Before the fix nobody repaired the hint: fab_chan_len,
# stats and fabd's end-of-run check (tail - head) read 0, and fabd exited 0
# destroying the fabric with the message in it.  The sink exits at once
# without reading (a consumer that exited early).  Cleans up fabd, its
# children, the segments and the control socket, also on failure.
#
# Usage: fabd_leftover.sh FABD STAGE_DIR
set -u
FABD=$1 STAGES=$2
TMP=$(mktemp -d) || exit 1
FABRIC="hint-$$"
fabd_pid=

. "$(dirname "${BASH_SOURCE[0]}")/../common/fabd_test.sh"

cat >"$TMP/t.yaml" <<YAML
fabric: $FABRIC
channels:
  c: { kind: spsc, capacity: 4, msg_size: 64 }
stages:
  src:
    run: [$STAGES/hintstage]
    out: { out: c }
    restart: on-failure
    backoff: 1ms..2ms
    env: { HINT_MARK: $TMP/mark, HINT_CHAN: c }
  sink:
    run: ["true"]
    in: { in: c }
    restart: never
metrics: { listen: "off" }
YAML

# The control socket goes under $TMP (XDG_RUNTIME_DIR/fab/), removed with it.
# timeout: a hang detector only.
XDG_RUNTIME_DIR=$TMP timeout 30 "$FABD" run "$TMP/t.yaml" >"$TMP/out" 2>&1 &
fabd_pid=$!
wait "$fabd_pid"
rc=$?
fabd_pid=
left=$(ls /dev/shm | grep -c "^fab\.$FABRIC\(\.\|$\)")
fail=0
grep -q "fab_send returned 0" "$TMP/out" && grep -q "restarted: closing my output" "$TMP/out" ||
	{ echo "FAIL: the source did not send, die and restart as staged"; fail=1; }
[ "$rc" = 7 ] || { echo "FAIL: fabd run exited $rc, not 7 (a sent message still queued)"; fail=1; }
[ "$left" -gt 0 ] || { echo "FAIL: fabd destroyed the fabric with a sent message queued"; fail=1; }
grep -q "channel c still holds 1 message" "$TMP/out" ||
	{ echo "FAIL: fabd did not name channel c holding 1 message"; fail=1; }
if [ "$fail" != 0 ]; then
	echo "--- fabd output ---"; cat "$TMP/out"
	exit 1
fi
echo "fabd kept the fabric with the message of a sender killed before its tail hint: ok"
