#!/usr/bin/env bash
# fabd's /metrics passes `promtool check metrics` (issue 5, point 10).
# Runs, under fabd, a topology that makes every metric family carry data:
# the shop pipeline (examples/shop-*.c) with malformed orders (validate
# reports errors), a flaky store over an at-least-once channel with a dead
# letter (redeliveries, dead letters), a shared limiter (waits), a topic
# with a publisher and a slow drop subscriber (drops), and one replica
# SIGKILLed (a restart).  It scrapes /metrics until each of those shows up,
# then checks the page with promtool (Debian's prometheus package; lint
# included: promtool's exit status is the verdict) and that every family of
# DESIGN §5 is there.  Cleans up fabd, its children, the segments and the
# control socket, also on failure.
#
# Usage: fabd_promtool.sh FABD STAGE_DIR EXAMPLES_BIN_DIR
# Exit status: 0 pass, 1 fail, 77 skip (promtool not installed).
set -u
FABD=$1 STAGES=$2 BIN=$3
PROMTOOL=${PROMTOOL:-promtool}
command -v "$PROMTOOL" >/dev/null || { echo "SKIP: promtool not installed"; exit 77; }

TMP=$(mktemp -d) || exit 1
FABRIC="prom-$$"
fabd_pid=

. "$(dirname "${BASH_SOURCE[0]}")/../common/fabd_test.sh"

fail() {
	echo "FAIL: $*"
	if [ -f "$TMP/out" ]; then
		echo "--- fabd output (last 30 lines) ---"
		tail -30 "$TMP/out"
	fi
	exit 1
}

# A free port on the loopback (the topology wants 1-65535, not 0); a lost
# race with another program is retried below.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

scrape() {
	python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
except Exception as e:
    sys.stderr.write("scrape %s: %s\n" % (sys.argv[1], e))
    sys.exit(1)
EOF
}

# The sum of the samples of metric $1 whose labels match the regex $2.
value() {
	awk -v name="$1" -v lab="$2" '
		$1 ~ "^" name "[{]" && $1 ~ lab { s += $2 }
		END { print s + 0 }' "$TMP/page"
}

write_topology() {
	cat >"$TMP/prom.yaml" <<EOF
fabric: $FABRIC
channels:
  raw: { capacity: 64, msg_size: 64 }
  validated: { capacity: 64, msg_size: 64 }
  enriched: { capacity: 16, msg_size: 64, delivery: at-least-once, max_deliveries: 2, dead_letter: poison }
  poison: { capacity: 4096, msg_size: 64, delivery: at-least-once }
  results: { capacity: 64, msg_size: 64, delivery: at-least-once }
limiters:
  api: { rate: 2000/s, burst: 10 }
topics:
  ticks: { capacity: 8, msg_size: 8 }
stages:
  source:
    run: [$BIN/shop-source, --count, "0", --bad-every, "20"]
    out: { events: raw }
  validate:
    run: [$BIN/shop-validate]
    in: { events: raw }
    out: { valid: validated }
  enrich:
    run: [$BIN/shop-enrich, --limiter, api, --latency-us, "100"]
    replicas: 2
    in: { events: validated }
    out: { enriched: enriched }
    limiters: [api]
    backoff: 10ms
  persist:
    run: [$BIN/shop-persist, --fail-permille, "300", --retries, "1", --store-us, "20"]
    replicas: 2
    in: { rows: enriched }
    out: { done: results }
  ack:
    run: [$BIN/shop-ack]
    in: { done: results }
  quarantine:
    run: [$BIN/shop-quarantine]
    in: { poison: poison }
  ticker:
    run: [$STAGES/topicstage]
    out: { t: ticks }
    env: { TOPIC: ticks, MODE: pub }
  listener:
    run: [$STAGES/topicstage]
    in: { t: { topic: ticks, policy: drop } }
    env: { TOPIC: ticks, MODE: sub }
metrics: { listen: "127.0.0.1:$PORT" }
shutdown: { drain: 2s, grace: 2s }
EOF
}

for attempt in 1 2 3 4 5; do
	PORT=$(free_port) || fail "no free port"
	write_topology
	XDG_RUNTIME_DIR=$TMP "$FABD" run "$TMP/prom.yaml" >"$TMP/out" 2>&1 &
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

# One restart: SIGKILL an enrich replica once it runs.
for ((i = 0; ; i++)); do
	victim=$(for p in $(pgrep -P "$fabd_pid"); do
		exe=
		{ read -r -d '' exe <"/proc/$p/cmdline"; } 2>/dev/null
		[ "${exe##*/}" = shop-enrich ] && echo "$p" && break
	done)
	[ -n "$victim" ] && break
	[ "$i" -lt 3000 ] || fail "no enrich replica to kill"
	sleep 0.01
done
kill -KILL "$victim"

# Scrape until every kind of event has shown up (a hang guard of 60 s, not a
# timing assertion).
want=(
	'fab_channel_redelivered_total channel="enriched"'
	'fab_channel_dead_lettered_total channel="enriched"'
	'fab_channel_received_total channel="poison"'
	'fab_stage_errors_total stage="validate"'
	'fab_stage_errors_total stage="persist"'
	'fab_stage_restarts_total stage="enrich"'
	'fab_topic_dropped_total topic="ticks"'
	'fab_limiter_wait_seconds_count limiter="api"'
	'fab_channel_wait_seconds_count channel="raw"'
	'fab_pipeline_latency_seconds_count .'
)
for ((i = 0; ; i++)); do
	kill -0 "$fabd_pid" 2>/dev/null || fail "fabd exited while running"
	scrape "$URL" >"$TMP/page" || fail "could not scrape $URL"
	missing=()
	for w in "${want[@]}"; do
		[ "$(value "${w%% *}" "${w#* }")" != 0 ] || missing+=("${w%% *}{${w#* }}")
	done
	[ "${#missing[@]}" -eq 0 ] && break
	[ "$i" -lt 600 ] || fail "after 60 s these are still 0 or absent: ${missing[*]}"
	sleep 0.1
done

# The verdict: promtool's exit status (problems and lint warnings alike).
if ! "$PROMTOOL" check metrics <"$TMP/page" >"$TMP/promtool" 2>&1; then
	echo "--- promtool check metrics ---"
	cat "$TMP/promtool"
	echo "--- the page ---"
	cat "$TMP/page"
	fail "promtool check metrics rejects fabd's /metrics"
fi

# Every family of DESIGN §5 (and fab's additions) is declared with its type.
for f in fab_channel_depth:gauge fab_channel_capacity:gauge \
	fab_channel_sent_total:counter fab_channel_received_total:counter \
	fab_channel_blocked_senders:gauge fab_channel_blocked_receivers:gauge \
	fab_channel_wait_seconds:histogram fab_channel_redelivered_total:counter \
	fab_channel_dead_lettered_total:counter fab_channel_dead_dropped_total:counter \
	fab_topic_dropped_total:counter fab_stage_replicas:gauge \
	fab_stage_restarts_total:counter fab_stage_errors_total:counter fab_stage_up:gauge \
	fab_limiter_wait_seconds:histogram fab_pipeline_latency_seconds:histogram \
	fab_scrape_skipped_segments:gauge; do
	grep -q "^# TYPE ${f%%:*} ${f#*:}$" "$TMP/page" ||
		fail "no family ${f%%:*} of type ${f#*:} in /metrics"
done
# Spot checks of values the topology fixes.
[ "$(value fab_channel_capacity 'channel="enriched"')" = 16 ] ||
	fail "fab_channel_capacity{channel=\"enriched\"} is not 16"
[ "$(value fab_stage_replicas 'stage="enrich"')" = 2 ] ||
	fail "fab_stage_replicas{stage=\"enrich\"} is not 2"
[ "$(value fab_stage_up 'stage="ack"')" = 1 ] || fail "fab_stage_up{stage=\"ack\"} is not 1"
[ "$(value fab_scrape_skipped_segments .)" = 0 ] || fail "the scrape skipped segments"
grep -q "^fab_stage_up{fabric=\"$FABRIC\",stage=\"ack\"} 1$" "$TMP/page" ||
	fail "no fabric label on fab_stage_up"

# Drain; fabd must go away and leave nothing (its exit status is not the
# point here: the subscriber only stops when the root context is cancelled).
kill -TERM "$fabd_pid"
for ((i = 0; i < 3000; i++)); do
	kill -0 "$fabd_pid" 2>/dev/null || break
	sleep 0.01
done
kill -0 "$fabd_pid" 2>/dev/null && fail "fabd did not exit within 30 s of SIGTERM"
wait "$fabd_pid"
fabd_pid=
left=$(fabric_pids)
[ -z "$left" ] || fail "processes of the fabric left running: $left"
if ls /dev/shm/fab."$FABRIC" /dev/shm/fab."$FABRIC".* >/dev/null 2>&1; then
	fail "segments left in /dev/shm"
fi
[ -e "$TMP/fab/$FABRIC.sock" ] && fail "control socket left behind"
echo "fabd /metrics passes promtool check metrics: ok ($(grep -c '^# TYPE' "$TMP/page") families, $(grep -vc '^#' "$TMP/page") samples)"
