#!/bin/bash
# ctl_idle.sh - clients that connect to fabd's control socket and never send
# cannot lock control out: with all 16 connection slots held by idle clients,
# once they have been idle more than 5 s (CTL_IDLE_NS) a new connection
# evicts the longest-idle one, so `fabctl status` succeeds.  The idle
# clients stay connected throughout.  The only wait is that precondition
# (> 5 s of idleness); nothing asserts how fast anything is.  The EXIT trap
# kills fabd and removes the fabric.
. "$LIB"
: "${FABD:?}"
F=fctl-idle-$$
FABRICS="$FABRICS $F"
export XDG_RUNTIME_DIR=$TMP/xdg FAB_FABRIC=$F
mkdir -m 700 "$XDG_RUNTIME_DIR"

cat >"$TMP/top.yaml" <<YAML
fabric: $F
channels:
  c1: {}
stages:
  src: { run: [sleep, "600"], out: { o: c1 } }
  dst: { run: [sleep, "600"], in: { i: c1 } }
metrics: { listen: 'off' }
shutdown: { drain: 1s, grace: 1s }
YAML
"$FABD" run "$TMP/top.yaml" >"$TMP/fabd.log" 2>&1 &
FABD_PID=$!
FIXPIDS="$FIXPIDS $FABD_PID"
SOCK=$XDG_RUNTIME_DIR/fab/$F.sock
until [ -S "$SOCK" ]; do
	kill -0 "$FABD_PID" 2>/dev/null || { cat "$TMP/fabd.log" >&2; fail "fabd exited"; }
	sleep 0.02
done
# the socket exists before fabd serves it: wait for a first answer
until "$FABCTL" status >/dev/null 2>&1; do
	kill -0 "$FABD_PID" 2>/dev/null || { cat "$TMP/fabd.log" >&2; fail "fabd exited"; }
	sleep 0.05
done

python3 - "$SOCK" "$FABCTL" "$TMP" <<'PY' || fail "see above"
import socket, subprocess, sys, time
path, fabctl, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
idle = []
for _ in range(16):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    idle.append(s)
# informational only (timing-dependent): the table is full right now
r = subprocess.run([fabctl, "status"], capture_output=True, text=True)
print("with 16 fresh idle clients: exit %d %s" % (r.returncode, r.stderr.strip()))
time.sleep(6)  # the precondition: idle longer than 5 s
for i in range(3):  # each new client may evict one idle one
    r = subprocess.run([fabctl, "status"], capture_output=True, text=True)
    open("%s/status%d.out" % (tmp, i), "w").write(r.stdout + r.stderr)
    if r.returncode != 0:
        sys.exit("FAIL: status #%d with 16 clients idle > 5 s: exit %d: %s"
                 % (i, r.returncode, r.stderr.strip()))
    if r.returncode < 0 or "runtime error" in r.stderr:
        sys.exit("FAIL: status #%d: %s" % (i, r.stderr))
print("status ok with 16 idle clients connected")
for s in idle:
    s.close()
PY
run after "$FABCTL" status; expect_rc after 0
kill -0 "$FABD_PID" 2>/dev/null || fail "fabd exited"
echo "ctl_idle: ok"
