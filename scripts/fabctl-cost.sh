#!/bin/bash
# fabctl-cost.sh - the CPU time fabctl takes to read a fabric of 100
# channels and 200 attached processes (issue 6: under 50 ms), measured as
# the user + system time of each fabctl child (getrusage RUSAGE_CHILDREN).
# Not a test and not timed by ctest: run it on an idle machine.
#
#   scripts/fabctl-cost.sh [BUILD_DIR] [CHANNELS] [PROCESSES] [REPEAT]
#
# BUILD_DIR defaults to ./build; it needs tools/fabctl/fabctl and
# tests/fabctl/fabctl_fixture.  Each command runs REPEAT times (default 5);
# the minimum and the median are printed.  The fixture's processes are
# killed and the fabric removed on exit, also on failure or Ctrl-C.
set -u
B=${1:-build}
NCH=${2:-100}
NPROC=${3:-200}
REPEAT=${4:-5}
FABCTL=$B/tools/fabctl/fabctl
FIXTURE=$B/tests/fabctl/fabctl_fixture
for x in "$FABCTL" "$FIXTURE"; do
	[ -x "$x" ] || { echo "fabctl-cost: no $x (build first)" >&2; exit 1; }
done
F=fctl-cost-$$
OUT=$(mktemp /tmp/fabctl-cost.XXXXXX)
FIX=""
cleanup() {
	[ -n "$FIX" ] && kill -TERM "$FIX" 2>/dev/null && wait "$FIX" 2>/dev/null
	"$FABCTL" rm "$F" --force >/dev/null 2>&1
	rm -f "$OUT"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$FIXTURE" many "$F" "$NCH" "$NPROC" >"$OUT" &
FIX=$!
until grep -q '^ready$' "$OUT"; do
	kill -0 "$FIX" 2>/dev/null || { echo "fabctl-cost: fixture failed" >&2; exit 1; }
	sleep 0.1
done
echo "fabric $F: $NCH channels, $NPROC attached processes (+1 creator)"
python3 - "$FABCTL" "$F" "$REPEAT" <<'PY'
import resource, statistics, subprocess, sys
fabctl, fabric, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
cmds = [
    ("chan --interval 0", ["chan", "--interval", "0"]),
    ("chan (two samples, 200ms apart)", ["chan"]),
    ("ps", ["ps"]),
    ("blocked", ["blocked"]),
    ("-o json chan --interval 0", ["-o", "json", "chan", "--interval", "0"]),
    ("-o json ps", ["-o", "json", "ps"]),
    ("-o json blocked", ["-o", "json", "blocked"]),
]
print("%-34s %10s %10s   (CPU ms, user+sys)" % ("command", "min", "median"))
for name, args in cmds:
    t = []
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.run([fabctl, "-f", fabric] + args, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode not in (0, 8):
            sys.exit("fabctl %s: exit %d: %s" % (name, p.returncode, p.stderr.decode()))
        t.append(((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) * 1000)
    print("%-34s %10.1f %10.1f" % (name, min(t), statistics.median(t)))
PY
