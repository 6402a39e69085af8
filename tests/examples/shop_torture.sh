#!/usr/bin/env bash
# Crash torture of the shop pipeline under fabd (issue 5, point 10): while
# an endless source feeds it, SIGKILL random replicas of validate, enrich,
# persist and the ack sink KILLS times at random moments, then drain fabd
# (SIGTERM) and prove from the sink's record that
#   - every order the source sent (ids 1..S, S from the source's result
#     line) reached the sink at least once, and nothing else did;
#   - every duplicate is flagged: each order arrives at most once unflagged.
#     A copy is flagged when it arrived redelivered on the sink's channel or
#     carries SHOP_F_REDELIVERED, set by any stage that received it
#     redelivered (examples/shop.h, "Duplicates": a stage killed after its
#     send but before its ack upstream makes a copy that is NEW on the
#     downstream channel, so only the mark it carries tells it apart);
#   - fabd drained cleanly (exit 0) and saw every kill as a crash, and no
#     process, segment or control socket of the fabric is left.
# Every hop is at-least-once, so no kill may lose a message (an
# at-most-once hop loses what a killed holder had received, docs/fabd.md).
# The source is never killed: it has no input to be redelivered from, and a
# restarted shop-source starts again at id 1 (a real source resumes from a
# committed offset); fabd itself is never killed here.
#
# Usage: shop_torture.sh FABD EXAMPLES_BIN_DIR
# Environment: SHOP_TORTURE_KEEP=DIR (on failure, copy the files there),
# SHOP_TORTURE_SEED (default: random; printed, to replay a
# failure), SHOP_TORTURE_KILLS (default 40).  Kills are counted, not timed:
# after each kill the test waits for the sink to make progress again.
set -u
FABD=$1 BIN=$2
KILLS=${SHOP_TORTURE_KILLS:-40}
SEED=${SHOP_TORTURE_SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) ))}
RANDOM=$SEED
echo "shop_torture: seed $SEED, $KILLS kills (replay: SHOP_TORTURE_SEED=$SEED)"

TMP=$(mktemp -d) || exit 1
FABRIC="shoptor-$$"
fabd_pid=

# Pids of live processes that are replicas of our fabric (fabd sets
# FAB_FABRIC in every replica's environment).
. "$(dirname "${BASH_SOURCE[0]}")/../common/fabd_test.sh"

fail() {
	echo "FAIL: $* (seed $SEED)"
	# SHOP_TORTURE_KEEP=DIR keeps the topology, fabd's output and the logs.
	[ -n "${SHOP_TORTURE_KEEP:-}" ] && mkdir -p "$SHOP_TORTURE_KEEP" &&
		cp "$TMP"/*.yaml "$TMP"/*.txt "$TMP"/*.log "$TMP/out" "$SHOP_TORTURE_KEEP"/ 2>/dev/null
	if [ -f "$TMP/out" ]; then
		echo "--- fabd output (last 40 lines) ---"
		tail -40 "$TMP/out"
	fi
	# What the fabric looked like at the failure, for a run that cannot
	# be replayed (the kills' timing is not in the seed).
	local fabctl
	fabctl="$(dirname "$FABD")/../tools/fabctl/fabctl"
	if [ -x "$fabctl" ]; then
		for verb in chan ps blocked; do
			echo "--- fabctl $verb ---"
			timeout 10 "$fabctl" -f "$FABRIC" "$verb" 2>&1 | head -60
		done
		echo "--- fabctl status ---"
		XDG_RUNTIME_DIR=$TMP timeout 10 "$fabctl" -f "$FABRIC" status 2>&1 | head -60
	fi
	exit 1
}

# Small rings so that kills catch messages in every state; max_deliveries
# at its maximum so that no order is dead-lettered by bad luck (a message
# killed with five holders in a row); a store failing 2% of single-attempt
# writes adds ordinary nacks to the redeliveries; persist waits 300 us
# between forwarding an order and acking it, so that many kills fall in
# that window and make duplicates downstream.  Backoff short and the
# intensity high: the crashes are the test, not a failure of the stage.
ALO="delivery: at-least-once, max_deliveries: 1000"
SUP="restart: on-failure
    backoff: 1ms..20ms
    intensity: 1000/1s"
cat >"$TMP/torture.yaml" <<EOF
fabric: $FABRIC
channels:
  raw: { capacity: 32, msg_size: 64, $ALO }
  validated: { capacity: 32, msg_size: 64, $ALO }
  enriched: { capacity: 32, msg_size: 64, $ALO }
  results: { capacity: 32, msg_size: 64, $ALO }
limiters:
  api: { rate: 20000/s, burst: 100 }
stages:
  source:
    run: [$BIN/shop-source, --count, "0", --bad-every, "0"]
    out: { events: raw }
    restart: on-failure
    env: { FAB_SHOP_RESULT: $TMP/source.txt }
  validate:
    run: [$BIN/shop-validate]
    in: { events: raw }
    out: { valid: validated }
    $SUP
  enrich:
    run: [$BIN/shop-enrich, --limiter, api, --latency-us, "100"]
    replicas: 3
    in: { events: validated }
    out: { enriched: enriched }
    limiters: [api]
    $SUP
  persist:
    run: [$BIN/shop-persist, --fail-permille, "20", --retries, "1", --store-us, "20",
          --commit-us, "300"]
    replicas: 2
    in: { rows: enriched }
    out: { done: results }
    $SUP
  ack:
    run: [$BIN/shop-ack]
    in: { done: results }
    env: { FAB_SHOP_LOG: $TMP/sink.log, FAB_SHOP_RESULT: $TMP/ack.txt }
    $SUP
metrics: { listen: off }
shutdown: { drain: 60s, grace: 5s }
EOF
"$FABD" check "$TMP/torture.yaml" >/dev/null 2>"$TMP/check" || {
	cat "$TMP/check"; fail "the generated topology does not check"; }

# The control socket goes under $TMP (XDG_RUNTIME_DIR/fab/), removed with it.
XDG_RUNTIME_DIR=$TMP "$FABD" run "$TMP/torture.yaml" >"$TMP/out" 2>&1 &
fabd_pid=$!

log_size() { stat -c %s "$TMP/sink.log" 2>/dev/null || echo 0; }

# Waits until the sink log grows past $1 bytes; fails after 60 s (a hang
# guard, not a timing assertion) or if fabd exits.
wait_progress() {
	local i
	for ((i = 0; i < 6000; i++)); do
		[ "$(log_size)" -gt "$1" ] && return 0
		kill -0 "$fabd_pid" 2>/dev/null || fail "fabd exited during the run"
		sleep 0.01
	done
	fail "no order reached the sink for 60 s (after $killed kills)"
}

wait_progress 0
killed=0 tries=0
declare -A per_stage=()
while [ "$killed" -lt "$KILLS" ]; do
	# A random pause of 0..49 ms, then a random replica among those running
	# now (not the source, not a child that has not exec'd its stage yet).
	sleep "0.0$(printf '%02d' $((RANDOM % 50)))"
	cands=()
	for p in $(pgrep -P "$fabd_pid"); do
		exe=
		{ read -r -d '' exe <"/proc/$p/cmdline"; } 2>/dev/null
		case "${exe##*/}" in
		shop-validate | shop-enrich | shop-persist | shop-ack) cands+=("$p:${exe##*/}") ;;
		esac
	done
	kill -0 "$fabd_pid" 2>/dev/null || fail "fabd exited during the run"
	if [ "${#cands[@]}" -eq 0 ]; then
		tries=$((tries + 1))
		[ "$tries" -lt 6000 ] || fail "no stage replica to kill for a long time"
		continue
	fi
	pick=${cands[$((RANDOM % ${#cands[@]}))]}
	if kill -KILL "${pick%%:*}" 2>/dev/null; then
		killed=$((killed + 1))
		per_stage[${pick#*:}]=$((${per_stage[${pick#*:}]:-0} + 1))
		# Count kills, not time: the next one waits until the pipeline
		# delivered something again (measured after the kill: a line the
		# victim wrote before it does not count).
		wait_progress "$(log_size)"
	fi
done
# Before the drain, every replica must be running again: fabd drops a
# replica still waiting out its backoff when a drain starts (docs/fabd.md),
# and a pipeline whose only sink was dropped cannot drain.
for ((i = 0; ; i++)); do
	n=0
	for p in $(pgrep -P "$fabd_pid"); do
		exe=
		{ read -r -d '' exe <"/proc/$p/cmdline"; } 2>/dev/null
		case "${exe##*/}" in shop-*) n=$((n + 1)) ;; esac
	done
	[ "$n" -ge 8 ] && break
	[ "$i" -lt 6000 ] || fail "only $n of 8 replicas running after the kills"
	sleep 0.01
done
wait_progress "$(log_size)"
summary=""
for s in "${!per_stage[@]}"; do summary="$summary $s=${per_stage[$s]}"; done
echo "shop_torture: $killed kills:$summary"

# Drain: the source's context is cancelled, it closes "raw", the closes
# propagate, everything queued is delivered.  Bounded wait (hang guard).
kill -TERM "$fabd_pid"
for ((i = 0; i < 12000; i++)); do
	kill -0 "$fabd_pid" 2>/dev/null || break
	sleep 0.01
done
kill -0 "$fabd_pid" 2>/dev/null && fail "fabd did not finish draining within 120 s"
wait "$fabd_pid"
rc=$?
fabd_pid=
[ "$rc" = 0 ] || fail "fabd run exited $rc after the drain"

deaths=$(grep -c 'fabd: [a-z]*\.[0-9]*: killed by signal 9' "$TMP/out")
[ "$deaths" -ge "$killed" ] || fail "fabd reported $deaths deaths by SIGKILL, expected $killed"

[ -f "$TMP/source.txt" ] || fail "the source wrote no result"
sent=$(sed -n 's/^sent=\([0-9]*\) .*/\1/p' "$TMP/source.txt")
[ -n "$sent" ] && [ "$sent" -gt 0 ] || fail "the source sent nothing ($(cat "$TMP/source.txt"))"
[ -f "$TMP/ack.txt" ] || fail "the last sink did not finish cleanly (no result)"

# The proof, from the sink's record: "<id> <flagged> <deliveries>" per copy.
verdict=$(awk -v sent="$sent" '
	NF != 3 || $1 !~ /^[0-9]+$/ || ($2 != 0 && $2 != 1) { bad++; next }
	$1 < 1 || $1 > sent { stray++; next }
	{ copies[$1]++; lines++; if ($2 == 0) unflagged[$1]++; else flagged++ }
	END {
		for (id = 1; id <= sent; id++) {
			if (!(id in copies)) { missing++; if (!first) first = id }
			if (unflagged[id] > 1) unf += unflagged[id] - 1
		}
		printf "copies=%d duplicates=%d flagged=%d missing=%d unflagged_duplicates=%d stray=%d malformed=%d first_missing=%d\n",
			lines, lines - (sent - missing), flagged, missing, unf, stray, bad, first
	}' "$TMP/sink.log")
echo "shop_torture: source sent $sent orders; sink: $verdict"
case "$verdict" in
*" missing=0 unflagged_duplicates=0 stray=0 malformed=0 "*) ;;
*) fail "the sink's record is wrong: $verdict" ;;
esac

left=$(fabric_pids)
[ -z "$left" ] || fail "processes of the fabric left running: $left"
if ls /dev/shm/fab."$FABRIC" /dev/shm/fab."$FABRIC".* >/dev/null 2>&1; then
	fail "segments left in /dev/shm"
fi
[ -e "$TMP/fab/$FABRIC.sock" ] && fail "control socket left behind"
echo "shop_torture: ok"
