#!/bin/sh
# fabd's command line: exit codes and output of check, run, --help and usage
# errors.  Usage: fabd_cli.sh FABD DATA_DIR EXAMPLES_DIR
set -u
FABD=$1 DATA=$2 EXAMPLES=$3
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT
fail=0

# expect CODE CMD...: run CMD, check its exit status; stdout/stderr in $TMP.
expect() {
	want=$1; shift
	"$@" >"$TMP/out" 2>"$TMP/err"
	got=$?
	if [ "$got" != "$want" ]; then
		echo "FAIL: '$*' exited $got, want $want"; cat "$TMP/out" "$TMP/err"; fail=1
	fi
}
# same FILE TEXT: FILE's content must equal TEXT.
same() {
	if [ -z "$2" ]; then
		[ -s "$1" ] && { echo "FAIL: expected no output, got:"; cat "$1"; fail=1; }
		return 0
	fi
	printf '%s\n' "$2" >"$TMP/want"
	if ! cmp -s "$1" "$TMP/want"; then
		echo "FAIL: unexpected output:"; diff "$TMP/want" "$1"; fail=1
	fi
}

expect 0 "$FABD" check "$DATA/full.yaml"
same "$TMP/out" "fabric full-1: 4 channels, 3 stages (6 processes), 2 limiters, 1 topic; errors -> errs; metrics [::1]:9999"
same "$TMP/err" ""

expect 0 "$FABD" check "$EXAMPLES/pipeline.yaml"
same "$TMP/out" "fabric shop: 5 channels, 6 stages (34 processes), 1 limiter, 0 topics; errors -> errors; metrics 127.0.0.1:9464"

expect 1 "$FABD" check "$DATA/many.yaml"
same "$TMP/out" ""
F="$DATA/many.yaml"
same "$TMP/err" "$F:3:21: channels.jobs.capacity: expected an integer from 0 to 16777216, got 'lots'
$F:4:20: channels.results.kind: spsc, but 2 processes write it; declare kind: mpmc
$F:9:15: stages.src.watchdog: expected a duration like 250ms, 10s or 2m, got 'soon'
$F:14:27: stages.work.out.x: no channel or topic named 'nowhere'
$F:15:14: stages.work.restart: expected one of on-failure, always or never, got 'sometimes'
$F:19:16: stages.sink.limiters[0]: no limiter named 'ghost'
$F:20:1: a topology file holds one YAML document; found a second one
$F: 7 errors"

expect 1 "$FABD" check "$DATA/syntax.yaml"
same "$TMP/err" "$DATA/syntax.yaml:5:4: did not find expected ',' or ']' (while parsing a flow sequence at line 4)
$DATA/syntax.yaml: 1 error"

expect 1 "$FABD" check "$TMP/missing.yaml"
same "$TMP/err" "$TMP/missing.yaml: cannot open: No such file or directory
$TMP/missing.yaml: 1 error"

expect 2 "$FABD"
expect 2 "$FABD" check
expect 2 "$FABD" check a b
expect 2 "$FABD" frobnicate x
grep -q "unknown command 'frobnicate'" "$TMP/err" || { echo "FAIL: no unknown command message"; fail=1; }
expect 0 "$FABD" --help
grep -q "fabd check FILE" "$TMP/out" || { echo "FAIL: --help"; fail=1; }
expect 0 "$FABD" --version

# run validates first (running is tested by tests/broker/test_run.c).
expect 1 "$FABD" run "$DATA/many.yaml"
expect 1 "$FABD" run --keep "$DATA/many.yaml"
expect 2 "$FABD" run --frob "$DATA/many.yaml"

# A program that cannot run is reported before the fabric is touched (exit
# 5, the stage and program named), not retried as a crash loop.
expect 0 "$FABD" check "$DATA/norun.yaml"
expect 5 "$FABD" run "$DATA/norun.yaml"
grep -q "stage src: cannot run '/nonexistent/fab-no-such-program': No such file or directory" "$TMP/err" ||
	{ echo "FAIL: no message naming the program"; cat "$TMP/err"; fail=1; }
[ -e /dev/shm/fab.fabd-norun ] && { echo "FAIL: the fabric was created"; rm -f /dev/shm/fab.fabd-norun*; fail=1; }

[ $fail = 0 ] && echo "fabd_cli: all passed"
exit $fail
