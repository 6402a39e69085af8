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
# Every SPSC and MPMC throughput target and the spinning round trip carry
# their ceiling from the same run (bare-ring, bare-mpmc, ring-pp), the
# figure that says whether they are in reach.
tg = {t["what"]: t for t in d.get("targets", [])}
for what, ceil in (("SPSC 64 B >= 150x pipe", "bare-ring"),
                   ("SPSC 1 KiB >= 15x pipe", "bare-ring"),
                   ("MPMC 4x4 >= 20x shared pipe", "bare-mpmc"),
                   ("spinning round trip p50 <= 1.2x cache line", "ring-pp"),
                   ("spinning round trip p99 <= 1.2x cache line", "ring-pp")):
    t = tg.get(what)
    if t is None or t.get("ceiling") != ceil or not (t.get("bare_ring") or 0) > 0:
        bad.append("target %r without its %s ceiling: %s" % (what, ceil, t))
# The SPSC targets also carry the ceiling under Go's visibility rules
# (bare-go, its own cell: not the bare ring's figure again); the others not.
for what in ("SPSC 8 B >= 400x pipe", "SPSC 64 B >= 150x pipe", "SPSC 1 KiB >= 15x pipe"):
    t = tg.get(what) or {}
    if not (t.get("bare_go") or 0) > 0 or t.get("bare_go") == t.get("bare_ring"):
        bad.append("target %r without its bare-go ceiling: %s" % (what, t))
for t in d.get("targets", []):
    if "bare_go" in t and not t["what"].startswith("SPSC "):
        bad.append("target %r carries bare_go" % t["what"])
# The spinning round trips are compared with the cache-line floor in blocks
# of their own runs (spinpp.h): each such cell reports both ratios, and the
# spinning targets' per-round figure is that comparison.
rtt = {c["mechanism"]: c for g in d["groups"] if g["name"] == "rtt" for c in g["cells"]}
for name in ("fab-spin", "two-line", "ring-pp"):
    b = rtt.get(name, {}).get("blocks_x_cacheline")
    if not b or not (b.get("p50") or 0) > 0 or not (b.get("p99") or 0) > 0:
        bad.append("rtt/%s without its block ratios: %s" % (name, rtt.get(name)))
if "blocks_x_cacheline" in rtt.get("cacheline", {}):
    bad.append("the cache-line floor compared with itself")
for what in ("spinning round trip p50 <= 1.2x cache line",
             "spinning round trip p99 <= 1.2x cache line"):
    t = tg.get(what) or {}
    b = rtt.get("fab-spin", {}).get("blocks_x_cacheline") or {}
    want = b.get("p99" if "p99" in what else "p50")
    if want is None or abs((t.get("per_round") or 0) - want) > 1e-9 * max(want, 1):
        bad.append("target %r: per round %s, blocks %s" % (what, t.get("per_round"), want))
for b in bad:
    print("FAIL:", b)
print("%d cells checked" % len(cells))
sys.exit(1 if bad else 0)
PY
