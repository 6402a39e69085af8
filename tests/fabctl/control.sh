#!/bin/bash
# control.sh - fabctl's control verbs against a real `fabd run` (a one-stage
# pipeline: tests/broker/stages/supstage as a source that holds at once,
# and tests/broker/stages/sink): status (text and JSON), ps with
# restarts from fabd, scale, restart, limit, an unknown stage and limiter
# (exit 3), a bad number (exit 4), drain and cancel; and exit 6 with no fabd
# before it starts and after it exits.  Every wait is for an event, bounded
# only by the test timeout; the EXIT trap kills fabd and removes the fabric.
. "$LIB"
: "${FABD:?}" "${STAGE_DIR:?}"
[ -x "$STAGE_DIR/sink" ] && [ -x "$STAGE_DIR/supstage" ] ||
	{ echo "no $STAGE_DIR/sink or supstage (build tests/broker)"; exit 77; }
F=fctl-ctl-$$
FABRICS="$FABRICS $F"
export XDG_RUNTIME_DIR=$TMP/xdg FAB_FABRIC=$F
mkdir -m 700 "$XDG_RUNTIME_DIR"

# No fabric at all: not found (3), as for the inspection verbs.  A fabric
# that exists with no fabd serving it: 6.
run nob "$FABCTL" status; expect_rc nob 3; expect_err nob "no fabric $F"
run nob2 "$FABCTL" scale sink 2; expect_rc nob2 3
G=fctl-nofabd-$$
start_fixture leave "$G"
run nofabd "$FABCTL" -f "$G" status; expect_rc nofabd 6; expect_err nofabd "no fabd serves fabric $G"

cat >"$TMP/top.yaml" <<YAML
fabric: $F
channels:
  jobs: { capacity: 8, msg_size: 8, kind: mpmc }
limiters:
  api: { rate: 100/s, burst: 10 }
stages:
  source:
    run: $STAGE_DIR/supstage
    out: { out: jobs }
    env: { ROLE: source, N: "1000", HOLD_AT: "0", START_FILE: $TMP/starts, SENT: $TMP/sent, HELD: $TMP/held, RELEASE: $TMP/release }
  sink:
    run: $STAGE_DIR/sink
    in: { in: jobs }
    env: { OUT: $TMP/count }
  hang:
    run: $STAGE_DIR/supstage
    replicas: 2
    env: { ROLE: hanger, STAY_AT: "2", IGNORE_TERM: "1", START_FILE: $TMP/hstarts }
YAML
"$FABD" run "$TMP/top.yaml" >"$TMP/fabd.log" 2>&1 &
FABD_PID=$!
FIXPIDS="$FIXPIDS $FABD_PID"
until grep -q 'sink ready' "$TMP/fabd.log"; do
	kill -0 $FABD_PID 2>/dev/null || { cat "$TMP/fabd.log" >&2; fail "fabd exited"; }
	sleep 0.05
done
until "$FABCTL" status >/dev/null 2>&1; do
	kill -0 $FABD_PID 2>/dev/null || { cat "$TMP/fabd.log" >&2; fail "fabd exited"; }
	sleep 0.05
done

run st "$FABCTL" status; expect_rc st 0
expect_out st "^fabric $F: running\$"; expect_out st '^sink +1 +1 +0 +0 +0$'; expect_out st '^source +1 +1 +0 +0 +0$'; expect_out st '^jobs +0/8$'
expect_out st '^hang +2 +2 +0 +0 +0$'
run stj "$FABCTL" -o json status; expect_rc stj 0
pycheck stj "d['ok'] and d['fabric']=='$F' and {s['name']:s for s in d['stages']}['sink']['up']==1"

run ps "$FABCTL" -o json ps; expect_rc ps 0
# ls counts live processes as ps lists them: one per pid (fabd holds two
# fabric handles, so two process entries; ls counted it twice).
NPS=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["processes"]))' "$TMP/ps.out")
run lsn "$FABCTL" -o json ls
pycheck lsn "[x for x in d['fabrics'] if x['name']=='$F' and x['processes']==$NPS]"
pycheck ps "[p for p in d['processes'] if p['stage']=='sink' and p['replica']==0 and p['restarts']==0 and p['blocked']['object']=='jobs']"

# A replica scaled away that does not stop (hang.1 ignores SIGTERM in its
# first incarnation): status text shows it STOPPING, not hidden behind UP 1
# (operator trial).  Then killed; hang.0, killed too, comes back as a
# second incarnation that stops with the fabric.
hang_until() { # STOPPING: until stage hang has 1 up and STOPPING replicas stopping (30 s)
	for _ in $(seq 1 600); do
		"$FABCTL" -o json status | python3 -c 'import json,sys; d=json.load(sys.stdin); h={s["name"]:s for s in d["stages"]}["hang"]; sys.exit(0 if h["up"]==1 and len([p for p in h["procs"] if p["state"]=="stopping"])==int(sys.argv[1]) else 1)' "$1" && return
		sleep 0.05
	done
}
run sch "$FABCTL" scale hang 1; expect_rc sch 0
hang_until 1
run sth "$FABCTL" status; expect_rc sth 0
expect_out sth '^hang +1 +1 +1 +0 +0$'
for p in $("$FABCTL" -o json status | python3 -c 'import json,sys; print(*[p["pid"] for s in json.load(sys.stdin)["stages"] if s["name"]=="hang" for p in s["procs"] if p["pid"]])'); do
	kill -9 "$p"
done
hang_until 0
run sth2 "$FABCTL" status; expect_rc sth2 0
expect_out sth2 '^hang +1 +1 +0 +1 +0$'

run sc "$FABCTL" scale sink 2; expect_rc sc 0; expect_out sc '^stage sink: 2 replicas$'
until "$FABCTL" -o json ps | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if len([p for p in d["processes"] if p["stage"]=="sink"])==2 else 1)'; do
	sleep 0.05
done
# RESTARTS is the replica's own count: kill -9 sink.1, fabd restarts it;
# sink.0 still shows 0 (it showed the stage's total on every replica).
S1=$("$FABCTL" -o json ps | python3 -c 'import json,sys; print([p["pid"] for p in json.load(sys.stdin)["processes"] if p["stage"]=="sink" and p["replica"]==1][0])')
kill -9 "$S1"
for _ in $(seq 1 600); do
	"$FABCTL" -o json ps | S1="$S1" python3 -c 'import json,sys,os; d=json.load(sys.stdin); sys.exit(0 if [p for p in d["processes"] if p["stage"]=="sink" and p["replica"]==1 and p["pid"]!=int(os.environ["S1"]) and p["restarts"]==1] else 1)' && break
	sleep 0.05
done
run psr "$FABCTL" -o json ps; expect_rc psr 0
pycheck psr "sorted((p['replica'], p['restarts']) for p in d['processes'] if p['stage']=='sink')==[(0, 0), (1, 1)]"
run scbad "$FABCTL" scale nosuch 2; expect_rc scbad 3; expect_err scbad 'fabd: no such stage'
run scnum "$FABCTL" scale sink abc; expect_rc scnum 2; expect_err scnum "'abc' is not a whole number"
run scbig "$FABCTL" scale sink 1000000; expect_rc scbig 4; expect_err scbig 'fabd: '
run limneg "$FABCTL" limit api -1; expect_rc limneg 2; expect_err limneg "'-1' is not a non-negative number"
run scuse "$FABCTL" scale sink; expect_rc scuse 2

run rs "$FABCTL" restart sink; expect_rc rs 0; expect_out rs '^stage sink: restarting$'
run lim "$FABCTL" limit api 50 5; expect_rc lim 0; expect_out lim '^limiter api: rate 50/s burst 5$'
run limj "$FABCTL" -o json limit api 40; expect_rc limj 0
pycheck limj "d['ok'] and d['limiter']=='api' and d['rate']==40"
run limbad "$FABCTL" limit nosuch 5; expect_rc limbad 3; expect_err limbad 'no such limiter'

run dr "$FABCTL" -o json drain; expect_rc dr 0
pycheck dr "d=={'ok':True,'state':'draining'}"
"$FABCTL" cancel >/dev/null 2>&1 # may race fabd's exit: only the exit below is checked
for _ in $(seq 1 1200); do kill -0 $FABD_PID 2>/dev/null || break; sleep 0.05; done
wait $FABD_PID
run gone "$FABCTL" status; expect_rc gone 3; expect_err gone "no fabric $F" # a clean drain removed it
echo "control: ok"
