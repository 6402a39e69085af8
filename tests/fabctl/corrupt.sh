#!/bin/bash
# corrupt.sh - fabctl on corrupted segments: each corruption (bad magic,
# version 0, absurd capacity, offsets out of range, a registry name without
# NUL, a truncated channel file, a truncated control segment) is reported
# with a clear message and exit 5 (or an "error" field per object in JSON),
# never crashed on (a signal fails the test).  Also run under ASan.
. "$LIB"

# scribble FILE OFFSET STRUCTFMT VALUE: write VALUE (python struct format).
scribble() {
	python3 - "$@" <<'PY'
import struct, sys
path, off, fmt, val = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
v = val.encode() if fmt.endswith('s') else int(val, 0)
with open(path, 'r+b') as f:
    f.seek(off)
    f.write(struct.pack('<' + fmt, v))
PY
}

n=0
fresh() { # a fabric with channel c1 holding "m1", no process attached
	n=$((n + 1))
	F=fctl-bad$n-$$
	start_fixture leave "$F"
	export FAB_FABRIC=$F
	CH=/dev/shm/fab.$F.c1
	CTL=/dev/shm/fab.$F
}

# every listing verb on a fabric whose channel c1 is bad: reported, exit 5
chan_bad() { # CASE REGEX
	run "$1" "$FABCTL" chan --interval 0; expect_rc "$1" 5
	expect_out "$1" "^c1 +error: $2"
	run "$1j" "$FABCTL" -o json chan --interval 0; expect_rc "$1j" 5
	pycheck "$1j" "[c for c in d['channels'] if c['name']=='c1' and 'error' in c and c['code'] in ('FAB_ECORRUPT', 'FAB_EVERSION')]"
	run "$1p" "$FABCTL" peek c1; expect_rc "$1p" 5; expect_err "$1p" "$2"
	# recv through the library: the object named once (a user trial saw
	# "channel c1: channel c1: ...")
	run "$1r" "$FABCTL" recv c1 --timeout 1ms
	grep -q 'channel c1: channel c1' "$TMP/$1r.err" && fail "$1r: object named twice: $(cat "$TMP/$1r.err")"
	# ps and blocked go on, and say what they leave out (upgrade trial:
	# a channel they cannot read looked like one with nothing on it)
	run "$1ps" "$FABCTL" ps; expect_rc "$1ps" 0
	expect_err "$1ps" '^fabctl: 1 channel or topic could not be read \(c1; fabctl chan says why\): HOLDS and BLOCKED ON leave it out$'
	run "$1b" "$FABCTL" blocked; expect_rc "$1b" 0
	expect_err "$1b" '^fabctl: 1 channel or topic could not be read \(c1; fabctl chan says why\): the wait-for graph leaves it out$'
	run "$1t" "$FABCTL" top -n 1 --interval 1ms; expect_rc "$1t" 5
}

fresh
run ok "$FABCTL" peek c1; expect_rc ok 0; expect_out ok $'^0\t2\tm1$'
scribble "$CH" 0 Q 0x1122334455667788
chan_bad magic 'channel c1: bad magic'

# A topic scribbled over is named a topic, by the registry (peek said
# "channel news: bad magic"; operator trial).
n=$((n + 1))
F=fctl-bad$n-$$
start_fixture basic "$F"
export FAB_FABRIC=$F
scribble "/dev/shm/fab.$F.news" 0 Q 0x1122334455667788
run tmagic "$FABCTL" peek news; expect_rc tmagic 5; expect_err tmagic '^fabctl: topic news: bad magic'
run tmagicc "$FABCTL" chan --interval 0; expect_rc tmagicc 5; expect_out tmagicc '^news +error: topic news: bad magic'
# ... and when the registry cannot say either (control segment scribbled):
# not called a channel (review).
scribble "/dev/shm/fab.$F" 0 Q 1
run tmagicu "$FABCTL" peek news; expect_rc tmagicu 5; expect_err tmagicu '^fabctl: news: bad magic \(neither a channel nor a topic\)'
# peek says what chan says, version before magic: a zeroed topic is "not
# initialised", a truncated one names its size (review: "bad magic" and
# "channel news: bad magic").
n=$((n + 1))
F=fctl-bad$n-$$
start_fixture basic "$F"
export FAB_FABRIC=$F
scribble "/dev/shm/fab.$F.news" 0 16s ''
run tzero "$FABCTL" peek news; expect_rc tzero 5; expect_err tzero '^fabctl: topic news: not initialised \(version 0\)'
n=$((n + 1))
F=fctl-bad$n-$$
start_fixture basic "$F"
export FAB_FABRIC=$F
truncate -s 8192 "/dev/shm/fab.$F.news"
run ttrunc "$FABCTL" peek news; expect_rc ttrunc 5; expect_err ttrunc '^fabctl: topic news: segment is 8192 bytes'

fresh; scribble "$CH" 8 I 0
chan_bad version0 'channel c1: not initialised \(version 0\)'

fresh; scribble "$CH" 36 I 0xffffffff
chan_bad capacity 'channel c1: absurd capacity 4294967295'

fresh; scribble "$CH" 80 Q 0x7fffffff000
chan_bad offsets 'channel c1: header offsets or sizes do not match'

fresh; truncate -s 8192 "$CH"
chan_bad truncated 'channel c1: segment is 8192 bytes'

fresh; truncate -s 0 "$CH"
chan_bad empty "/dev/shm/fab.$F.c1 is 0 bytes, smaller than its header"

fresh; scribble "$CTL" $((69632 + 16)) 64s "$(printf 'A%.0s' $(seq 64))"
run noname "$FABCTL" chan --interval 0; expect_rc noname 5
expect_out noname 'error: fabric .*: registry entry 0: bad name or type'
run nonamej "$FABCTL" -o json chan --interval 0; expect_rc nonamej 5
pycheck nonamej "len(d['channels'])==1 and 'bad name' in d['channels'][0]['error']"

fresh; scribble "$CTL" 8 I 0
run ctl0 "$FABCTL" chan; expect_rc ctl0 5; expect_err ctl0 "fabric $F: not initialised \(version 0\)"
run ctl0ls "$FABCTL" -o json ls; expect_rc ctl0ls 5
pycheck ctl0ls "[x for x in d['fabrics'] if x['name']=='$F' and 'version 0' in x['error']]"
run ctl0rm "$FABCTL" rm "$F"; expect_rc ctl0rm 4; expect_err ctl0rm 'cannot tell who is attached'

fresh; scribble "$CTL" 0 Q 1
run ctlmagic "$FABCTL" ps; expect_rc ctlmagic 5; expect_err ctlmagic "fabric $F: bad magic"

fresh; scribble "$CTL" 40 Q 0x100000000
run ctloff "$FABCTL" blocked; expect_rc ctloff 5; expect_err ctloff 'header sizes do not match'

fresh; truncate -s 10 "$CTL"
run ctltrunc "$FABCTL" chan; expect_rc ctltrunc 5; expect_err ctltrunc 'smaller than its header'
run ctltruncrm "$FABCTL" rm "$F" --force; expect_rc ctltruncrm 0
# A process-table entry scribbled with attached_ns and wait_ns = INT64_MIN
# (fab_proc_ent: 64 bytes from FAB_CTL_PROCS_OFF 4096; state in the low 32
# bits of sg@0, LIVE = 2; attached_ns@24, wait@40, wait_ns@48): ps, top and
# blocked compute "now - t" and must not overflow (UBSan aborts in the
# sanitizer build) nor crash; they exit 0 (blocked: 8, the deadlock) or 5
# (a corruption reported).
n=$((n + 1))
F=fctl-bad$n-$$
start_fixture deadlock "$F"
export FAB_FABRIC=$F
run timeok "$FABCTL" blocked; expect_rc timeok 8
python3 - /dev/shm/fab.$F <<'PY' || fail "could not scribble the process table"
import struct, sys
hit = 0
with open(sys.argv[1], "r+b") as f:
    for i in range(1024):
        off = 4096 + 64 * i
        f.seek(off); sg, = struct.unpack("<Q", f.read(8))
        if sg & 0xffffffff != 2:
            continue
        f.seek(off + 40); w, = struct.unpack("<Q", f.read(8))
        f.seek(off + 24); f.write(struct.pack("<q", -2**63))
        if w:
            f.seek(off + 48); f.write(struct.pack("<q", -2**63))
            hit += 1
sys.exit(0 if hit else "no live entry with a wait record")
PY
for v in ps blocked top ps_json blocked_json; do
	case $v in
	top) run "t$v" "$FABCTL" top -n 1 --interval 1ms ;;
	*_json) run "t$v" "$FABCTL" -o json "${v%_json}" ;;
	*) run "t$v" "$FABCTL" "$v" ;;
	esac
	case $RC in 0 | 5 | 8) ;; *) cat "$TMP/t$v.err" >&2; fail "t$v: exit $RC" ;; esac
	grep -q 'runtime error\|Sanitizer' "$TMP/t$v.err" && { cat "$TMP/t$v.err" >&2; fail "t$v: sanitizer report"; }
done
# top keeps the gravest status over all its frames: a channel corrupt in the
# first frame and repaired before the later ones still exits 5, and so does a
# run whose fabric disappears between frames after a corrupt one (the
# snapshot's own failure is milder).  No timing: the repair waits for the
# first frame on top's output, and top -n is large enough to see it.
# last_frame FILE: top's text output from its last complete frame header on.
last_frame() { awk '/^fabric /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$1"; }
# top_frames CASE ACTION: ACTION runs once the first frame is out.
top_frames() {
	local name=$1 action=$2
	fresh
	local good
	good=$(python3 -c "import struct,sys; print(struct.unpack('<Q', open(sys.argv[1],'rb').read(8))[0])" "$CH")
	scribble "$CH" 0 Q 0x1122334455667788
	"$FABCTL" top -n 400 --interval 20ms >"$TMP/$name.out" 2>"$TMP/$name.err" &
	local tp=$! i
	for i in $(seq 1 500); do
		grep -q '^c1 .*error:' "$TMP/$name.out" && break
		kill -0 "$tp" 2>/dev/null || break
		sleep 0.02
	done
	grep -q '^c1 .*error:' "$TMP/$name.out" || { kill "$tp"; fail "$name: no first frame with the corrupt c1"; }
	case $action in
	repair) scribble "$CH" 0 Q "$good" ;;
	destroy) "$FABCTL" rm "$F" --force >/dev/null 2>&1 || rm -f "$CTL" "$CH" ;;
	esac
	if [ "$action" = repair ]; then
		# wait for a frame that shows c1 sound, then stop top (SIGTERM ends it cleanly)
		for i in $(seq 1 500); do
			last_frame "$TMP/$name.out" | grep '^c1 ' | grep -vq 'error:' && break
			sleep 0.02
		done
		kill -TERM "$tp"
	fi
	wait "$tp"
	RC=$?
	expect_rc "$name" 5
}
top_frames topfix repair
last_frame "$TMP/topfix.out" | grep '^c1 ' | grep -vq 'error:' || fail "topfix: no frame after the repair shows c1 sound"
top_frames topgone destroy
expect_err topgone "$F"
# The same in JSON (frames as one array): the repaired channel's later frames
# are sound, the status is still 5.
fresh
good=$(python3 -c "import struct,sys; print(struct.unpack('<Q', open(sys.argv[1],'rb').read(8))[0])" "$CH")
scribble "$CH" 0 Q 0x1122334455667788
"$FABCTL" -o json top -n 400 --interval 20ms >"$TMP/topjson.out" 2>"$TMP/topjson.err" &
tp=$!
frames() { grep -o '{"chan":' "$TMP/topjson.out" | wc -l; }
for i in $(seq 1 500); do grep -q '"error"' "$TMP/topjson.out" && break; sleep 0.02; done
grep -q '"error"' "$TMP/topjson.out" || { kill "$tp"; fail "topjson: no first frame with the corrupt c1"; }
scribble "$CH" 0 Q "$good"
n0=$(frames)
for i in $(seq 1 500); do [ "$(frames)" -ge $((n0 + 2)) ] && break; sleep 0.02; done
kill -TERM "$tp"
wait "$tp"
RC=$?
expect_rc topjson 5
pycheck topjson "'error' not in [c for c in d[-1]['chan']['channels'] if c['name']=='c1'][0]"
echo "corrupt: ok"
