#!/usr/bin/env bash
# fab-bench as a correctness run (no timing is asserted): every cell of the
# table, one short round each, must finish with every message checked
# (fab-bench reports a run that loses, duplicates or tears a message, or a
# limiter call that fails, as FAILED and exits 1), and the JSON document
# must carry a figure for every cell.  Usage: bench_smoke.sh FAB_BENCH
set -u
BENCH=$1
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$BENCH" --rounds 1 --duration 30 --json >"$out" 2>"$err"
rc=$?
if [ $rc -ne 0 ]; then
	echo "FAIL: fab-bench exited $rc"
	tail -20 "$err"
	exit 1
fi
python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
bad = []
if d.get("failed"):
    bad.append("document says failed")
if not (d.get("syscall_ns", 0) > 0):
    bad.append("no system call cost")
cells = [c for g in d["groups"] for c in g["cells"]]
if len(cells) < 40:
    bad.append("only %d cells" % len(cells))
for c in cells:
    if c["status"] != "ok":
        bad.append("%s: %s (%s)" % (c["name"], c["status"], c.get("why")))
        continue
    r = c["rounds"][0]
    n = r.get("messages", r.get("round_trips", r.get("calls", None)))
    if n is not None and n <= 0:
        bad.append("%s: nothing moved (%s)" % (c["name"], r))
# Every SPSC and MPMC throughput target carries its ceiling from the same
# run (bare-ring, bare-mpmc), the figure that says whether it is in reach.
tg = {t["what"]: t for t in d.get("targets", [])}
for what, ceil in (("SPSC 64 B >= 150x pipe", "bare-ring"),
                   ("SPSC 1 KiB >= 15x pipe", "bare-ring"),
                   ("MPMC 4x4 >= 20x shared pipe", "bare-mpmc")):
    t = tg.get(what)
    if t is None or t.get("ceiling") != ceil or not (t.get("bare_ring") or 0) > 0:
        bad.append("target %r without its %s ceiling: %s" % (what, ceil, t))
for b in bad:
    print("FAIL:", b)
print("%d cells checked" % len(cells))
sys.exit(1 if bad else 0)
PY
