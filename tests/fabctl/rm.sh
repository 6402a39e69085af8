#!/bin/bash
# rm.sh - `fabctl rm`: refused (exit 4, naming the live pids) while
# processes are attached; --force removes anyway; after the processes are
# gone it succeeds without --force; a missing fabric is exit 3.
. "$LIB"
F=fctl-rm-$$
start_fixture deadlock "$F"
A=$(fixture_val "$F" a)
P=$(fixture_val "$F" parent)
run rm1 "$FABCTL" rm "$F"; expect_rc rm1 4
expect_err rm1 "3 live processes attached \(pid .*$A"
expect_err rm1 "$P"
[ -e /dev/shm/fab.$F ] && [ -e /dev/shm/fab.$F.d1 ] || fail "refused rm removed something"

# One process with six fabric handles is one live process (until 28 Nov it
# was counted once per handle: "6 live processes (pid P P P ...)").
K=fctl-rm4-$$
start_fixture handles "$K" 5
KP=$(fixture_val "$K" parent)
run rm4 "$FABCTL" rm "$K"; expect_rc rm4 4
expect_err rm4 "1 live process attached \(pid $KP\)"

# Children gone: the fabric stays (the fixture destroys it only on exit, so
# kill it hard), and rm succeeds without --force.
G=fctl-rm2-$$
start_fixture deadlock "$G"
GP=$(fixture_val "$G" parent)
kill -KILL "$GP" "$(fixture_val "$G" a)" "$(fixture_val "$G" b)"
for _ in $(seq 1 400); do
	kill -0 "$(fixture_val "$G" a)" 2>/dev/null || kill -0 "$(fixture_val "$G" b)" 2>/dev/null || break
	sleep 0.05
done
[ -e /dev/shm/fab.$G ] || fail "fabric $G vanished with its processes"
run rm2 "$FABCTL" rm "$G"; expect_rc rm2 0; expect_out rm2 "removed fabric $G \(3 segments\)"
[ ! -e /dev/shm/fab.$G ] && [ ! -e /dev/shm/fab.$G.d1 ] || fail "rm left segments"
run rm3 "$FABCTL" rm "$G"; expect_rc rm3 3

# Segments left of a fabric whose control segment is gone (removed by
# hand): ls lists them (no other verb did; operator trial), rm removes them.
O=fctl-rm5-$$
start_fixture leave "$O"
rm -f "/dev/shm/fab.$O"
run ls5 "$FABCTL" ls; ls_rc_ok ls5
expect_out ls5 "^$O +no control segment: 1 segment left, [0-9]+ KiB in use \\(fabctl rm $O\\)\$"
run ls5j "$FABCTL" -o json ls; ls_rc_ok ls5j
pycheck ls5j "[x for x in d['fabrics'] if x['name']=='$O' and x['leftover_segments']==1 and x['leftover_bytes']>0 and x['code']=='FAB_ENOENT']"
run rm5 "$FABCTL" rm "$O"; expect_rc rm5 0; expect_out rm5 "removed fabric $O \\(1 segment\\)"
[ ! -e "/dev/shm/fab.$O.c1" ] || fail "rm left the leftover segment"
run ls6 "$FABCTL" -o json ls; ls_rc_ok ls6
pycheck ls6 "not [x for x in d['fabrics'] if x['name']=='$O']"

# A fabric shared with a group (0660): a member who is not root may not
# remove segments it does not own (/dev/shm is sticky), so rm refuses
# before removing anything, even with --force (until 28 Nov it removed what
# it could and left the rest).  Needs root to be another user.
H=fctl-rm3-$$
start_fixture deadlock "$H"
kill -KILL "$(fixture_val "$H" parent)" "$(fixture_val "$H" a)" "$(fixture_val "$H" b)"
for _ in $(seq 1 400); do
	kill -0 "$(fixture_val "$H" a)" 2>/dev/null || kill -0 "$(fixture_val "$H" b)" 2>/dev/null || break
	sleep 0.05
done
chmod 0660 /dev/shm/fab.$H /dev/shm/fab.$H.* || fail "chmod"
run rm6 setpriv --reuid=65534 --regid=0 --clear-groups "$FABCTL" rm "$H" --force
expect_rc rm6 4
expect_err rm6 "belongs to uid 0; only its owner or root can remove it \(nothing was removed\)"
[ -e /dev/shm/fab.$H ] && [ -e /dev/shm/fab.$H.d1 ] || fail "a refused rm by a member removed something"
run rm7 "$FABCTL" rm "$H"; expect_rc rm7 0

# --force while live
run rm4 "$FABCTL" rm "$F" --force; expect_rc rm4 0
ls /dev/shm | grep -q "^fab\.$F\(\.\|\$\)" && fail "rm --force left segments"
run rm5 "$FABCTL" rm; expect_rc rm5 2
echo "rm: ok"
