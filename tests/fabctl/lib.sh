# lib.sh - shared by fabctl's shell tests: a fixture started in the
# background, waited for by its "ready" line (no timing), and torn down
# (SIGTERM: the fixture kills and reaps its children and destroys the
# fabric; then fabctl rm --force and a sweep of /dev/shm) by an EXIT trap,
# also when a check fails.  Checks print what they expected and exit 1.
#
# Environment (set by ctest): FABCTL FIXTURE [FABD STAGE_DIR].

set -u
: "${FABCTL:?FABCTL not set}" "${FIXTURE:?FIXTURE not set}"
TMP=$(mktemp -d /tmp/fabctl-test.XXXXXX)
FIXPIDS=""
FABRICS=""

cleanup() {
	for p in $FIXPIDS; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $FIXPIDS; do
		# bounded: the fixture kills its children at once
		for _ in $(seq 1 200); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for f in $FABRICS; do
		"$FABCTL" rm "$f" --force >/dev/null 2>&1
		rm -f /dev/shm/fab."$f" /dev/shm/fab."$f".* 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# start_fixture MODE FABRIC [ARGS]: runs it, waits for "ready", keeps its
# output in $TMP/FABRIC.out.
start_fixture() {
	local mode=$1 fab=$2
	shift 2
	FABRICS="$FABRICS $fab"
	"$FIXTURE" "$mode" "$fab" "$@" >"$TMP/$fab.out" 2>"$TMP/$fab.err" &
	local pid=$!
	FIXPIDS="$FIXPIDS $pid"
	while ! grep -q '^ready$' "$TMP/$fab.out" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			grep -q '^ready$' "$TMP/$fab.out" && break
			cat "$TMP/$fab.err" >&2
			fail "fixture $mode $fab exited before ready"
		fi
		sleep 0.02
	done
}

# fixture_val FABRIC KEY: a key=value the fixture printed.
fixture_val() {
	sed -n "s/^$2=//p" "$TMP/$1.out"
}

# run NAME CMD...: run, keep stdout/stderr in $TMP/NAME.{out,err}, status in $RC.
run() {
	local name=$1
	shift
	"$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
	RC=$?
	if [ "$RC" -ge 128 ]; then
		cat "$TMP/$name.err" >&2
		fail "$name: killed by signal $((RC - 128)): $*"
	fi
}

expect_rc() { # NAME WANT
	[ "$RC" -eq "$2" ] || { cat "$TMP/$1.out" "$TMP/$1.err" >&2; fail "$1: exit $RC, want $2"; }
}

expect_out() { # NAME REGEX (grep -E on stdout)
	grep -Eq -- "$2" "$TMP/$1.out" || { cat "$TMP/$1.out" >&2; fail "$1: stdout lacks /$2/"; }
}

expect_err() { # NAME REGEX (grep -E on stderr)
	grep -Eq -- "$2" "$TMP/$1.err" || { cat "$TMP/$1.err" >&2; fail "$1: stderr lacks /$2/"; }
}

# pycheck NAME 'python expression over d (the parsed JSON of stdout)'
pycheck() {
	python3 - "$TMP/$1.out" "$2" <<'PY' || fail "$1: JSON check failed: $2"
import json, sys
d = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2])
if not ok:
    print(json.dumps(d, indent=1), file=sys.stderr)
    sys.exit(1)
PY
}

# ls_rc_ok NAME: the last `run` of ls exited 0, or reported an error only on
# other fabrics (tests running beside this one scribble on theirs).
ls_rc_ok() { # NAME: RC 0, or an error reported only on other fabrics
	[ "$RC" -eq 0 ] && return 0
	run "$1x" "$FABCTL" -o json ls
	pycheck "$1x" "any('error' in x for x in d['fabrics']) and all(x['name']!='$F' for x in d['fabrics'] if 'error' in x)"
}
