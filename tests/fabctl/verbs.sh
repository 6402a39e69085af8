#!/bin/bash
# verbs.sh - every inspection verb and send/recv against a live fixture
# (fixture.c "basic"): values checked in text and in JSON (parsed by
# python3), peeked messages in order and still there afterwards, a shell
# pipeline round trip, error paths with their exit codes and messages.
. "$LIB"
F=fctl-verbs-$$
start_fixture basic "$F"
SENDER=$(fixture_val "$F" sender)
RECEIVER=$(fixture_val "$F" receiver)
STAGE=$(fixture_val "$F" stage)
PARENT=$(fixture_val "$F" parent)
export FAB_FABRIC=$F

# --help on fabctl and every verb; bad usage.
run help "$FABCTL" --help; expect_rc help 0; expect_out help 'usage: fabctl'
for v in ls chan ps top peek send recv blocked rm status scale restart drain cancel limit; do
	run help_$v "$FABCTL" $v --help; expect_rc help_$v 0; expect_out help_$v "usage: fabctl.* $v"
done
run help_trace "$FABCTL" trace --help; expect_rc help_trace 0 # its text is trace's own
run noverb "$FABCTL"; expect_rc noverb 2
run badverb "$FABCTL" frobnicate; expect_rc badverb 2; expect_err badverb "unknown verb 'frobnicate'"
run bado "$FABCTL" -o yaml ls; expect_rc bado 2

# ls
# ls lists every fabric on the machine, and exits 5 (or 7) for one it finds
# corrupt (or may not read): another test's (crash_corrupt runs alongside
# under ctest -j), or a leftover.  Exit 0 is required unless such a fabric,
# not ours, is listed.
run ls "$FABCTL" ls; ls_rc_ok ls; expect_out ls "^$F +[0-9T:Z-]+ +7 +8 +$(id -u)\$"
run lsj "$FABCTL" -o json ls; ls_rc_ok lsj
pycheck lsj "[x for x in d['fabrics'] if x['name']=='$F' and x['processes']==7 and x['channels']==8]"

# chan
run chan "$FABCTL" chan --interval 20ms; expect_rc chan 0
expect_out chan '^full +mpmc +at-most-once +2/2 +\[##########\]'
expect_out chan '^text +spsc +at-most-once +3/8 '
expect_out chan '^news +topic '
run chanj "$FABCTL" -o json chan "$F" --interval 20ms; expect_rc chanj 0
pycheck chanj "{c['name']:c for c in d['channels']}['full']=={**{c['name']:c for c in d['channels']}['full'], 'len':2,'capacity':2,'senders':1,'receivers':0,'blocked_senders':1,'kind':'mpmc','closed':False}"
pycheck chanj "(lambda c: c['empty']['blocked_receivers']==1 and c['empty']['receivers']==1 and c['empty']['len']==0 and c['text']['len']==3 and c['text']['kind']=='spsc' and c['alo']['delivery']=='at-least-once' and c['alo']['len']==1 and c['news']['type']=='topic' and c['news']['receivers']==1 and c['held']['receivers']==1)({c['name']:c for c in d['channels']})"

# ps
run ps "$FABCTL" ps; expect_rc ps 0
expect_out ps "^worker\.1 +$STAGE +[a-z]+ +[0-9.a-z]+ +1 +- +- +recv stagein "
# HOLDS: the leaser keeps "a1" of alo leased (and sleeps on nothing)
expect_out ps "^\\[[^]]+\\] +$(fixture_val "$F" leaser) +[a-z]+ .* alo:1 +-\$"
expect_out ps "^\\[[^]]+\\] +$SENDER +[a-z]+ .* send full [0-9]"  # a non-stage process: [its comm]
run psj "$FABCTL" -o json ps; expect_rc psj 0
pycheck psj "(lambda p: p[$SENDER]['blocked']['op']=='send' and p[$SENDER]['blocked']['object']=='full' and p[$RECEIVER]['blocked']['object']=='empty' and p[$STAGE]['stage']=='worker' and p[$STAGE]['replica']==1 and p[$STAGE]['errors']==1 and p[$STAGE]['restarts'] is None and p[$PARENT]['blocked'] is None and len(p)==7 and p[$(fixture_val "$F" leaser)]['holds']==[{'channel':'alo','messages':1}] and p[$SENDER]['holds']==[])({x['pid']:x for x in d['processes']})"

# blocked: orphans (nobody attached on the other side), no deadlock
run blocked "$FABCTL" blocked; expect_rc blocked 0
expect_out blocked "^$SENDER +- +send +full .*nobody \(orphan\)"
expect_out blocked "^$RECEIVER +- +recv +empty "
expect_out blocked '^no deadlock$'
run blockedj "$FABCTL" -o json blocked; expect_rc blockedj 0
pycheck blockedj "d['deadlocks']==[] and {b['pid']:b for b in d['blocked']}[$SENDER]['waits_for']==[] and {b['pid']:b for b in d['blocked']}[$SENDER]['op']=='send'"

# peek: in order, text and hex, not consumed
for i in 1 2; do
	run peek$i "$FABCTL" peek text -n 10; expect_rc peek$i 0
	printf '0\t5\thello\n1\t5\tworld\n2\t3\thex: 01 02 ff\n' >"$TMP/peek.want"
	cmp -s "$TMP/peek$i.out" "$TMP/peek.want" || { cat "$TMP/peek$i.out" >&2; fail "peek text $i"; }
done
run peekn "$FABCTL" peek full -n 1; expect_rc peekn 0; expect_out peekn $'^0\t2\tm0$'
run peekj "$FABCTL" -o json peek full; expect_rc peekj 0
pycheck peekj "[m['data'] for m in d['messages']]==['m0','m1'] and d['channel']=='full'"
run peeka "$FABCTL" -o json peek alo; expect_rc peeka 0
pycheck peeka "[m['data'] for m in d['messages']]==['a2']"   # a1 is leased
run peekmiss "$FABCTL" peek nosuch; expect_rc peekmiss 3; expect_err peekmiss 'no channel nosuch'

# send / recv through shell pipes
seq 10 | "$FABCTL" send rt || fail "send rt"
"$FABCTL" recv rt -n 10 >"$TMP/rt.out" || fail "recv rt"
seq 10 | cmp -s - "$TMP/rt.out" || fail "recv rt: $(cat "$TMP/rt.out")"
[ "$(seq 5 | "$FABCTL" send rt && "$FABCTL" recv rt -n 5 | wc -l)" -eq 5 ] || fail "wc -l"
long=$(printf 'x%.0s' $(seq 100))
printf 'a\n%s\nb\n' "$long" >"$TMP/in"
run sendlong "$FABCTL" send rt <"$TMP/in"; expect_rc sendlong 1; expect_err sendlong 'line 2: .*skipped'
run recv2 "$FABCTL" recv rt -n 2; expect_rc recv2 0
[ "$(cat "$TMP/recv2.out")" = "$(printf 'a\nb')" ] || fail "recv after long line: $(cat "$TMP/recv2.out")"
run recvto "$FABCTL" recv rt -n 1 --timeout 50ms; expect_rc recvto 10; expect_err recvto 'timed out after 0'
run recvalo "$FABCTL" recv alo -n 1; expect_rc recvalo 0; expect_out recvalo '^a2$'
run chanalo "$FABCTL" -o json chan --interval 0; pycheck chanalo "{c['name']:c for c in d['channels']}['alo']['len']==0"
run busy "$FABCTL" recv held -n 1; expect_rc busy 4; expect_err busy 'spsc end'
run nochan "$FABCTL" send nosuch </dev/null; expect_rc nochan 3

# top: frames as one JSON array; text once
run top "$FABCTL" -o json top -n 2 --interval 20ms; expect_rc top 0
pycheck top "len(d)==2 and all('channels' in f['chan'] and 'processes' in f['ps'] for f in d)"
run toptext "$FABCTL" top -n 1 --interval 10ms; expect_rc toptext 0
expect_out toptext "^fabric $F "; expect_out toptext '^STAGE '

# topics (last: publishing ends the fixture's subscriber, which takes one
# message and exits).  Until 28 Nov (eleventh session) peek, send and recv
# refused a topic (exit 2).  peek: the newest N still in the ring.
run peektopic0 "$FABCTL" peek news; expect_rc peektopic0 0
[ ! -s "$TMP/peektopic0.out" ] || fail "peek of a topic nothing was published to: $(cat "$TMP/peektopic0.out")"
run pubtopic "$FABCTL" send news < <(printf 't1\nt2\nt3\n'); expect_rc pubtopic 0
run peektopic "$FABCTL" peek news; expect_rc peektopic 0
printf '0\t2\tt1\n1\t2\tt2\n2\t2\tt3\n' >"$TMP/peekt.want"
cmp -s "$TMP/peektopic.out" "$TMP/peekt.want" || { cat "$TMP/peektopic.out" >&2; fail "peek topic"; }
run peektopicn "$FABCTL" -o json peek news -n 2; expect_rc peektopicn 0
pycheck peektopicn "[m['data'] for m in d['messages']]==['t2','t3'] and [m['pos'] for m in d['messages']]==[1,2]"
# a lap later (capacity 8): the oldest are gone, the newest 8 stay in order
run pubtopic2 "$FABCTL" send news < <(seq 4 12); expect_rc pubtopic2 0
run peektopicl "$FABCTL" -o json peek news -n 100; expect_rc peektopicl 0
pycheck peektopicl "[m['data'] for m in d['messages']]==[str(i) for i in range(5,13)]"
# recv subscribes: it gets what is published after it subscribed, in order
"$FABCTL" recv news -n 3 --timeout 20s >"$TMP/subrecv.out" 2>"$TMP/subrecv.err" &
SUBPID=$!
# subscribed once ps shows it asleep receiving on news (its own wait record)
SUBBED=0
for _ in $(seq 1 500); do
	"$FABCTL" -o json ps >"$TMP/subwait.json" 2>/dev/null &&
		python3 -c "import json,sys; p={x['pid']:x for x in json.load(open('$TMP/subwait.json'))['processes']}; b=(p.get($SUBPID) or {}).get('blocked') or {}; sys.exit(0 if b.get('object')=='news' else 1)" && { SUBBED=1; break; }
	sleep 0.02
done
[ "$SUBBED" -eq 1 ] || fail "fabctl recv news never showed asleep on news in fabctl ps"
run pubtopic3 "$FABCTL" send news < <(printf 'n1\nn2\nn3\n'); expect_rc pubtopic3 0
wait $SUBPID; SUBRC=$?
[ "$SUBRC" -eq 0 ] || fail "recv news: exit $SUBRC: $(cat "$TMP/subrecv.err")"
[ "$(cat "$TMP/subrecv.out")" = "$(printf 'n1\nn2\nn3')" ] || fail "recv news: $(cat "$TMP/subrecv.out")"
run recvtopicto "$FABCTL" recv news -n 1 --timeout 50ms; expect_rc recvtopicto 10
run closetopic "$FABCTL" send news --close </dev/null; expect_rc closetopic 2; expect_err closetopic 'a topic has no close'
run blockchan "$FABCTL" recv rt --block -n 1 --timeout 50ms; expect_rc blockchan 2; expect_err blockchan '--block is for topics'

# missing fabric; trace without eBPF support
run nofab "$FABCTL" -f "nofab-$$" chan; expect_rc nofab 3; expect_err nofab "no fabric nofab-$$"
run trace "$FABCTL" trace --seconds 1
[ "$RC" -ne 9 ] || expect_err trace 'without eBPF support'
echo "verbs: ok"
