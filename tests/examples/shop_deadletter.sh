#!/bin/sh
# The shop pipeline of examples/pipeline.yaml with a store that always
# fails: every well-formed order (200 sent, every 50th malformed: 196) is
# given back max_deliveries (5) times, then moved by the library to the
# dead-letter channel "poison", which the quarantine stage drains.  Nothing
# writes "poison" through a port, so fabd holds its close quorum's only
# share and closes it once no persist replica can run again: the quarantine
# stage sees the end and exits, and fabd finishes ON ITS OWN (no signal),
# exit 0, nothing left in /dev/shm.  Before fabd closed dead-letter
# channels, this run never ended.
# Usage: shop_deadletter.sh FABD EXAMPLES_BIN_DIR EXAMPLES_SRC_DIR
set -u
FABD=$1 BIN=$2 SRC=$3
TMP=$(mktemp -d) || exit 1
FABRIC="shopdl-$$"
cleanup() {
	[ -n "${pid:-}" ] && kill -KILL "$pid" 2>/dev/null
	rm -f /dev/shm/fab."$FABRIC" /dev/shm/fab."$FABRIC".* 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
sed -e "s/^fabric: shop$/fabric: $FABRIC/" \
    -e 's/--count 0 .*/--count 200/' \
    -e 's/replicas: 20/replicas: 2/' -e 's/replicas: 10/replicas: 2/' \
    -e 's/--fail-permille 50 --retries 3 .*/--fail-permille 1000 --retries 1/' \
    -e 's/rate: 200\/s/rate: 100000\/s/' \
    -e 's/^  listen: .*/  listen: off/' \
    "$SRC/pipeline.yaml" >"$TMP/shop.yaml"
for want in "^fabric: $FABRIC$" "count 200$" "fail-permille 1000" "listen: off"; do
	grep -q -- "$want" "$TMP/shop.yaml" || { echo "FAIL: could not edit pipeline.yaml ($want)"; exit 1; }
done
PATH="$BIN:$PATH" timeout 120 "$FABD" run "$TMP/shop.yaml" >"$TMP/out" 2>&1 &
pid=$!
wait "$pid"
rc=$?
pid=
fail=0
[ "$rc" = 0 ] || { echo "FAIL: fabd run exited $rc (124: it did not finish on its own)"; fail=1; }
grep -q "shop-quarantine: 196 dead-lettered orders" "$TMP/out" ||
	{ echo "FAIL: the quarantine stage did not get the 196 orders"; fail=1; }
grep -q "shop-ack: 0 orders acknowledged" "$TMP/out" ||
	{ echo "FAIL: the sink acknowledged orders the store never stored"; fail=1; }
grep -q "fabd: fabd.dead-letter: closed channel poison for it" "$TMP/out" ||
	{ echo "FAIL: fabd did not close the dead-letter channel"; fail=1; }
if ls /dev/shm/fab."$FABRIC" /dev/shm/fab."$FABRIC".* >/dev/null 2>&1; then
	echo "FAIL: segments left in /dev/shm"; fail=1
fi
if [ "$fail" != 0 ]; then
	echo "--- fabd output (last 40 lines) ---"; tail -40 "$TMP/out"
	exit 1
fi
echo "dead letters drained and closed under fabd: ok"
