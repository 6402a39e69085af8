#!/bin/bash
# trace_test.sh - `fabctl trace` against a live fabric.
#
# usage: trace_test.sh live FABCTL FIXTURE
#        trace_test.sh nopriv FABCTL
#
# live: starts two fixtures (trace_fixture.c: a sender paced by a limiter
# at one tick every 20 ms, sending on channel "ticks" and publishing on
# topic "news"; a receiver sleeping in fab_recv and a subscriber sleeping in
# fab_sub_recv between ticks), one on the traced fabric and a decoy on a
# fabric whose name has the traced name as a prefix ("<name>x": its
# segments are fab.<name>x*, which must not be taken for fab.<name>'s).
# Runs `fabctl trace -f <name> --seconds 2 -o json` and checks with python3
# that the channel "ticks" shows up with op recv, some sleeps and the
# receiver's pid (p50 <= p99 <= max, about 20 ms), that "news" recv and
# limiter "pace" show up with the subscriber's and the sender's pids, and
# that no row belongs to a process outside the fabric (the decoy's pids in
# particular).  Then a short text run must show the ticks row.  Skips (77)
# only when fabctl trace exits 7 (no privilege), after checking its
# message.
#
# nopriv: runs the trace as nobody with no capabilities (setpriv) and
# expects exit 7 and the message naming CAP_BPF and CAP_PERFMON.
#
# Children and /dev/shm/fab.<name>* are removed on every exit path (trap).
set -u

mode=${1:?mode}
fabctl=${2:?fabctl}
msg_needed="needs CAP_BPF and CAP_PERFMON (or root)"

tmp=$(mktemp -d /tmp/fabctl-trace-test.XXXXXX) || exit 1
name="trc-$$"
decoy="${name}x"
kids=()

cleanup() {
	# SIGTERM: the fixture closes its channel, cancels its context, reaps
	# its children and destroys its fabric.  If it has not within 5 s,
	# SIGKILL (the children have PR_SET_PDEATHSIG and follow).
	for p in "${kids[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${kids[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -f "/dev/shm/fab.$name" "/dev/shm/fab.$name".* \
		"/dev/shm/fab.$decoy" "/dev/shm/fab.$decoy".*
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
	echo "FAIL: $*" >&2
	for f in "$tmp"/out* "$tmp"/err*; do
		[ -s "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
	done
	exit 1
}

# Exit 7 is the one skip: check the message first.
check_nopriv() { # rc errfile
	[ "$1" -eq 7 ] || return 1
	grep -qF "$msg_needed" "$2" || fail "exit 7 without the message '$msg_needed'"
	return 0
}

if [ "$mode" = nopriv ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "SKIP: setpriv --reuid needs root"
		exit 77
	fi
	command -v setpriv >/dev/null || { echo "SKIP: no setpriv"; exit 77; }
	setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all \
		"$fabctl" trace -f "$name" --seconds 1 >"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ "$rc" -eq 7 ] || fail "unprivileged trace exited $rc, expected 7"
	grep -qF "$msg_needed" "$tmp/err" || fail "no '$msg_needed' in the message"
	[ -s "$tmp/out" ] && fail "unprivileged trace wrote a report"
	# The message is one line of ours, not libbpf's noise.
	[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "more than the one-line message on stderr"
	echo "ok: exit 7: $(cat "$tmp/err")"
	exit 0
fi

[ "$mode" = live ] || { echo "bad mode $mode" >&2; exit 2; }
fixture=${3:?fixture}

"$fixture" "$name" 30 "$tmp/pids" 20 &
kids+=($!)
"$fixture" "$decoy" 30 "$tmp/dpids" 20 &
kids+=($!)
for _ in $(seq 100); do
	[ -s "$tmp/pids" ] && [ -s "$tmp/dpids" ] && break
	sleep 0.1
done
[ -s "$tmp/pids" ] && [ -s "$tmp/dpids" ] || fail "fixtures did not start"
read -r sender receiver subscriber <"$tmp/pids"
read -r dsender dreceiver dsubscriber <"$tmp/dpids"

"$fabctl" trace -f "$name" --seconds 2 -o json >"$tmp/out.json" 2>"$tmp/err.json"
rc=$?
if check_nopriv "$rc" "$tmp/err.json"; then
	echo "SKIP: $(cat "$tmp/err.json")"
	exit 77
fi
[ "$rc" -eq 0 ] || fail "fabctl trace exited $rc"

python3 - "$tmp/out.json" "$name" "$sender" "$receiver" "$subscriber" \
	"$dsender" "$dreceiver" "$dsubscriber" <<'EOF' || fail "JSON check"
import json, sys
path, name = sys.argv[1:3]
sender, receiver, subscriber, dsender, dreceiver, dsubscriber = map(int, sys.argv[3:])
ours = (sender, receiver, subscriber)
decoys = (dsender, dreceiver, dsubscriber)
with open(path) as f:
    doc = json.load(f)
assert doc["fabric"] == name, doc["fabric"]
assert doc["seconds"] >= 1.9, doc["seconds"]
rows = doc["rows"]
hit = [r for r in rows if r["kind"] == "chan" and r["object"] == "ticks" and r["op"] == "recv"]
assert hit, "no chan ticks recv row: %r" % rows
r = [x for x in hit if x["pid"] == receiver]
assert r, "ticks recv not from the receiver %d: %r" % (receiver, hit)
r = r[0]
assert r["sleeps"] > 0, r
assert r["p50_ns"] <= r["p99_ns"] <= r["max_ns"], r
assert r["total_ns"] >= r["sleeps"] * r["p50_ns"] // 2, r
# One message every 20 ms: the receiver sleeps up to ~20 ms each time.
assert 1000000 < r["p50_ns"] < 200000000, r
assert r["file"] == "fab.%s.ticks" % name and r["offset"] == 640, r
def row(kind, obj, op, pid):
    m = [x for x in rows if (x["kind"], x["object"], x["op"], x["pid"]) == (kind, obj, op, pid)]
    assert m and m[0]["sleeps"] > 0, "no %s %s %s row of pid %d: %r" % (kind, obj, op, pid, rows)
    return m[0]
t = row("topic", "news", "recv", subscriber)
assert t["offset"] == 512 and t["file"] == "fab.%s.news" % name, t
l = row("limiter", "pace", "wait", sender)
assert l["file"] == "fab." + name, l
for x in rows:
    assert x["pid"] in ours, "row from outside the fabric: %r" % x
    assert x["pid"] not in decoys, "decoy row: %r" % x
    f = x["file"]
    assert f == "fab." + name or f.startswith("fab." + name + "."), x
print("ok: %d sleeps of pid %d on ticks recv, p50 %.2f ms, p99 %.2f ms"
      % (r["sleeps"], receiver, r["p50_ns"] / 1e6, r["p99_ns"] / 1e6))
EOF

# The text table: a header and the same row.
"$fabctl" trace -f "$name" --seconds 1 >"$tmp/out.txt" 2>"$tmp/err.txt"
rc=$?
[ "$rc" -eq 0 ] || fail "text trace exited $rc"
grep -q '^KIND *OBJECT *OP *PID' "$tmp/out.txt" || fail "no table header"
grep -Eq "^chan +ticks +recv +$receiver " "$tmp/out.txt" || fail "no ticks recv row for $receiver"
grep -q "$decoy" "$tmp/out.txt" && fail "the decoy fabric shows up"

# Bad arguments are usage errors (2), an unknown fabric is 3.
"$fabctl" trace --seconds nope >/dev/null 2>&1
[ $? -eq 2 ] || fail "bad --seconds not exit 2"
"$fabctl" trace -f "${name}-nosuch" --seconds 1 >/dev/null 2>"$tmp/err.nf"
rc=$?
[ "$rc" -eq 3 ] || fail "unknown fabric exited $rc, expected 3"
exit 0
