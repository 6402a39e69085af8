#!/bin/sh
# The shop pipeline under fabd, as README's first command runs it
# (examples/shop-demo.yaml), in a fabric of its own: fabd must exit 0 once
# the closes have drained the pipeline, the sink must have acknowledged
# every well-formed order (2000 sent, every 50th malformed: 1960) with no
# duplicate, and nothing may be left in /dev/shm.
# Usage: shop_fabd.sh FABD EXAMPLES_BIN_DIR EXAMPLES_SRC_DIR
set -u
FABD=$1 BIN=$2 SRC=$3
TMP=$(mktemp -d) || exit 1
FABRIC="shopt-$$"
cleanup() {
	[ -n "${pid:-}" ] && kill -KILL "$pid" 2>/dev/null
	rm -f /dev/shm/fab."$FABRIC" /dev/shm/fab."$FABRIC".* 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
sed "s/^fabric: shopdemo$/fabric: $FABRIC/" "$SRC/shop-demo.yaml" >"$TMP/shop.yaml"
grep -q "^fabric: $FABRIC$" "$TMP/shop.yaml" || { echo "FAIL: could not rename the fabric"; exit 1; }
PATH="$BIN:$PATH" timeout 240 "$FABD" run "$TMP/shop.yaml" >"$TMP/out" 2>&1 &
pid=$!
wait "$pid"
rc=$?
pid=
fail=0
if [ "$rc" != 0 ]; then
	echo "FAIL: fabd run exited $rc"; fail=1
fi
if ! grep -q "shop-ack: 1960 orders acknowledged (1960 received, 0 duplicates" "$TMP/out"; then
	echo "FAIL: the sink did not acknowledge 1960 orders exactly once"; fail=1
fi
if ls /dev/shm/fab."$FABRIC" /dev/shm/fab."$FABRIC".* >/dev/null 2>&1; then
	echo "FAIL: segments left in /dev/shm"; fail=1
fi
if [ "$fail" != 0 ]; then
	echo "--- fabd output (last 40 lines) ---"; tail -40 "$TMP/out"
	exit 1
fi
grep "shop-ack: 1960" "$TMP/out"
echo "shop pipeline under fabd: ok"
