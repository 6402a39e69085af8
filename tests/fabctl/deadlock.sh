#!/bin/bash
# deadlock.sh - `fabctl blocked` on a deliberately deadlocked pair (stages
# a.0 and b.0, each blocked sending to the other's full channel): one cycle
# naming both pids and both channels, exit 8, in text and JSON.  Then the
# same pair with a third process attached to d1 to receive (it could still
# drain): no deadlock, exit 0.
. "$LIB"
F=fctl-dl-$$
start_fixture deadlock "$F"
A=$(fixture_val "$F" a)
B=$(fixture_val "$F" b)

run bl "$FABCTL" -f "$F" blocked; expect_rc bl 8
expect_out bl "^$A +a\.0 +send +d1 .* pid $B\$"
expect_out bl "^$B +b\.0 +send +d2 .* pid $A\$"
[ "$(grep -c '^deadlock: ' "$TMP/bl.out")" -eq 1 ] || fail "one cycle expected"
expect_out bl "^deadlock: stage (a\.0 \(pid $A\) sends on d1 \(full\) -> b\.0 \(pid $B\) sends on d2 \(full\) -> a\.0|b\.0 \(pid $B\) sends on d2 \(full\) -> a\.0 \(pid $A\) sends on d1 \(full\) -> b\.0)\$"
run blj "$FABCTL" -f "$F" -o json blocked; expect_rc blj 8
pycheck blj "len(d['deadlocks'])==1 and sorted(h['pid'] for h in d['deadlocks'][0]['cycle'])==sorted([$A,$B]) and sorted(h['channel'] for h in d['deadlocks'][0]['cycle'])==['d1','d2'] and all(h['op']=='send' and h['condition']=='full' for h in d['deadlocks'][0]['cycle'])"
pycheck blj "all(b['deadlocked'] for b in d['blocked'])"
run ps "$FABCTL" -f "$F" ps; expect_rc ps 0
expect_out ps "^a\.0 +$A .* send d1 "

# B with two fabric handles (two process entries) attached to d1: A waits
# for B, named once (a user trial saw "pid B,B").
F2=fctl-dl2-$$
start_fixture deadlock2 "$F2"
A2=$(fixture_val "$F2" a)
B2=$(fixture_val "$F2" b)
run bl2 "$FABCTL" -f "$F2" blocked; expect_rc bl2 8
expect_out bl2 "^$A2 +a\.0 +send +d1 .* pid $B2\$"
run bl2j "$FABCTL" -f "$F2" -o json blocked; expect_rc bl2j 8
pycheck bl2j "[b['waits_for'] for b in d['blocked'] if b['pid']==$A2]==[[$B2]]"

G=fctl-nodl-$$
start_fixture nodead "$G"
C=$(fixture_val "$G" c)
run nd "$FABCTL" -f "$G" blocked; expect_rc nd 0
expect_out nd '^no deadlock$'
expect_out nd "send +d1 .*pid .*$C"
run ndj "$FABCTL" -f "$G" -o json blocked; expect_rc ndj 0
pycheck ndj "d['deadlocks']==[] and not any(b['deadlocked'] for b in d['blocked'])"

# A receiver stopped (SIGSTOP) while asleep on s1, then s1 filled by a sender
# that sleeps: the receiver's record still says it receives on s1, but s1 is
# full, so it waits for nobody, and there is no deadlock (found by an
# operator trial: fabctl claimed one, exit 8).
S=fctl-stop-$$
start_fixture stopped "$S"
R=$(fixture_val "$S" r); W=$(fixture_val "$S" s)
run st "$FABCTL" -f "$S" blocked; expect_rc st 0
expect_out st '^no deadlock$'
run stj "$FABCTL" -f "$S" -o json blocked; expect_rc stj 0
pycheck stj "d['deadlocks']==[] and not any(b['deadlocked'] for b in d['blocked'])"

# A process whose main thread left (pthread_exit) while another sleeps
# receiving: ps shows it sleeping, not "other" (its leader is a zombie in
# /proc; found by a user trial).
L=fctl-lead-$$
start_fixture leader "$L"
LP=$(fixture_val "$L" l)
run lps "$FABCTL" -f "$L" ps; expect_rc lps 0
expect_out lps "^\\[[^]]+\\] +$LP +sleeping .* recv e1 "

# Not a deadlock either: the stopped receiver's channel has a message behind
# a dead claimer's skipped position at head (found by review: a check of
# the head slot alone claimed one).
SK=fctl-skip-$$
start_fixture skiphead "$SK"
run sk "$FABCTL" -f "$SK" blocked; expect_rc sk 0
expect_out sk '^no deadlock$'

# Real deadlocks whose channel len does not show them (mpmc): c's only slot
# held by an acquire or an at-least-once lease (len 0, yet the sender waits
# for the holder), and a reservation (len 1, yet nothing to receive).  The
# staleness check above must not hide them (found by review).
for how in acq alo; do
	K=fctl-held$how-$$
	start_fixture held "$K" "$how"
	run "h$how" "$FABCTL" -f "$K" blocked; expect_rc "h$how" 8
	expect_out "h$how" '^deadlock: .*sends on c \(slot held\)'
	# and fabctl chan says why the queue is short: one message held
	run "hc$how" "$FABCTL" -f "$K" -o json chan --interval 0; expect_rc "hc$how" 0
	pycheck "hc$how" "[c['held'] for c in d['channels'] if c['name']=='c']==[1] and [c['len'] for c in d['channels'] if c['name']=='c']==[0]"
	run "ht$how" "$FABCTL" -f "$K" chan --interval 0; expect_rc "ht$how" 0
	expect_out "ht$how" '^c +mpmc .* 1 +0 +0 +0 +no$'
	# and fabctl ps says who holds it: H, not the sender S
	HP=$(fixture_val "$K" h); SP=$(fixture_val "$K" s)
	run "hp$how" "$FABCTL" -f "$K" ps; expect_rc "hp$how" 0
	expect_out "hp$how" "^\\[[^]]+\\] +$HP +sleeping .* c:1 +recv d "
	expect_out "hp$how" "^\\[[^]]+\\] +$SP +sleeping .* - +send c "
	run "hj$how" "$FABCTL" -f "$K" -o json ps; expect_rc "hj$how" 0
	pycheck "hj$how" "{p['pid']: p['holds'] for p in d['processes']}[$HP]==[{'channel':'c','messages':1}] and {p['pid']: p['holds'] for p in d['processes']}[$SP]==[]"
done
# Many holders: 70 processes holding one message of c each, and one
# process holding three through three fabric handles of its own (review:
# holders past the 64th were shown holding nothing; multi showed c:1).
M=fctl-holders-$$
start_fixture holders "$M" 70
MP=$(fixture_val "$M" multi)
run hm "$FABCTL" -f "$M" -o json ps; expect_rc hm 0
pycheck hm "(lambda h: h[$MP]==[{'channel':'c','messages':3}] and sorted(str(v) for p, v in h.items() if p != $MP).count(str([{'channel':'c','messages':1}]))==70 and sum(1 for v in h.values() if v)==71)({p['pid']: p['holds'] for p in d['processes']})"
run hmc "$FABCTL" -f "$M" -o json chan --interval 0; expect_rc hmc 0
pycheck hmc "[c['held'] for c in d['channels'] if c['name']=='c']==[73]"
run hmt "$FABCTL" -f "$M" ps; expect_rc hmt 0
expect_out hmt "^\\[[^]]+\\] +$MP +sleeping .* c:3 +recv d "

Q=fctl-rsv-$$
start_fixture reserved "$Q"
run rsv "$FABCTL" -f "$Q" blocked; expect_rc rsv 8
expect_out rsv '^deadlock: .*receives on c \(nothing to take\)'

# A cycle of three stages, and a fourth process blocked behind it.
H=fctl-ring-$$
start_fixture ring3 "$H"
A=$(fixture_val "$H" a); B=$(fixture_val "$H" b); C=$(fixture_val "$H" c); W=$(fixture_val "$H" w)
run r3 "$FABCTL" -f "$H" blocked; expect_rc r3 8
[ "$(grep -c '^deadlock: ' "$TMP/r3.out")" -eq 1 ] || fail "ring3: one cycle expected"
expect_out r3 "a\.0 \(pid $A\) sends on d1 \(full\) -> b\.0 \(pid $B\) sends on d2 \(full\) -> c\.0 \(pid $C\) sends on d3 \(full\) -> a\.0|b\.0 \(pid $B\) sends on d2 \(full\) -> c\.0 \(pid $C\) sends on d3 \(full\) -> a\.0 \(pid $A\) sends on d1 \(full\) -> b\.0|c\.0 \(pid $C\) sends on d3 \(full\) -> a\.0 \(pid $A\) sends on d1 \(full\) -> b\.0 \(pid $B\) sends on d2 \(full\) -> c\.0"
expect_out r3 "^behind the deadlock: pid $W sends on d1 \(full\)\$"
run r3j "$FABCTL" -f "$H" -o json blocked; expect_rc r3j 8
pycheck r3j "len(d['deadlocks'])==1 and sorted(h['pid'] for h in d['deadlocks'][0]['cycle'])==sorted([$A,$B,$C]) and d['behind_deadlock']==[$W]"
echo "deadlock: ok"
