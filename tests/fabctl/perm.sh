#!/bin/bash
# perm.sh - fabctl on segments the user may not read: a channel whose mode
# keeps another user out is listed with "permission denied" and exit 7 (not
# permitted), not reported as corrupt (exit 5, until 28 Nov); peek says so
# with exit 7; send/recv, which open the fabric for writing, say whose the
# segment is and what its mode grants; a listing with a corrupt segment too
# exits 5, the graver; ls lists another user's private fabric without
# failing.  Needs root to be another user (uid 65534).
. "$LIB"
F=fctl-perm-$$
start_fixture leave2 "$F"
export FAB_FABRIC=$F
AS_OTHER=(setpriv --reuid=65534 --regid=65534 --clear-groups)

# Control segment and c2 readable by others, c1 the owner's only.
chmod 0644 /dev/shm/fab.$F /dev/shm/fab.$F.c2 || fail "chmod"
chmod 0600 /dev/shm/fab.$F.c1 || fail "chmod"

run ch1 "${AS_OTHER[@]}" "$FABCTL" chan --interval 0; expect_rc ch1 7
expect_out ch1 "^c1 +error: /dev/shm/fab\.$F\.c1: permission denied \(owner uid 0, group 0, mode 0600\)"
expect_out ch1 "^c2 +spsc +at-most-once +1/4 "
run ch1j "${AS_OTHER[@]}" "$FABCTL" -o json chan --interval 0; expect_rc ch1j 7
pycheck ch1j "[c for c in d['channels'] if c['name']=='c1' and 'permission denied' in c['error'] and c['code']=='FAB_EPERM'] and [c for c in d['channels'] if c['name']=='c2' and c['len']==1]"
run top1 "${AS_OTHER[@]}" "$FABCTL" top -n 1 --interval 1ms; expect_rc top1 7

run pk1 "${AS_OTHER[@]}" "$FABCTL" peek c1; expect_rc pk1 7
expect_err pk1 "fab\.$F\.c1: permission denied"
run pk2 "${AS_OTHER[@]}" "$FABCTL" peek c2; expect_rc pk2 0; expect_out pk2 "m2"

# Read access is not enough to take a message: libfab maps read-write.
run rv1 "${AS_OTHER[@]}" "$FABCTL" recv c2 -n 1 --timeout 1s; expect_rc rv1 7
expect_err rv1 "permission denied \(owner uid 0, group 0, mode 0644; libfab opens segments for reading and writing\)"
run sd1 "${AS_OTHER[@]}" "$FABCTL" send c2 </dev/null; expect_rc sd1 7
# Nothing was taken or changed by the refused calls.
run pk3 "$FABCTL" peek c2; expect_rc pk3 0; expect_out pk3 "m2"
run pk4 "$FABCTL" peek c1; expect_rc pk4 0; expect_out pk4 "m1"

# The owner sees both: exit 0.
run ch2 "$FABCTL" chan --interval 0; expect_rc ch2 0

# A corrupt c2 next to a forbidden c1: the listing exits 5.
python3 - "/dev/shm/fab.$F.c2" <<'PY' || fail "scribble"
import sys
with open(sys.argv[1], 'r+b') as f:
    f.write(b'XXXXXXXX')
PY
run ch3 "${AS_OTHER[@]}" "$FABCTL" chan --interval 0; expect_rc ch3 5
expect_out ch3 "^c1 +error: .*permission denied"
expect_out ch3 "^c2 +error: "
run ch3j "${AS_OTHER[@]}" "$FABCTL" -o json chan --interval 0; expect_rc ch3j 5
pycheck ch3j "[c['code'] for c in d['channels']] == ['FAB_EPERM', 'FAB_ECORRUPT']"

# The control segment itself forbidden: exit 7 with the reason.
chmod 0600 /dev/shm/fab.$F
run ch4 "${AS_OTHER[@]}" "$FABCTL" chan --interval 0; expect_rc ch4 7
expect_err ch4 "permission denied \(owner uid 0, group 0, mode 0600\)"
# ls lists it with its owner and does not fail for it: another user's
# private fabric is not an error of the listing (other tests' fabrics may
# be listed too, so only: not 7, and our row).
run ls1 "${AS_OTHER[@]}" "$FABCTL" -o json ls
[ "$RC" -ne 7 ] || { cat "$TMP/ls1.out"; fail "ls: exit 7 for another user's fabric"; }
pycheck ls1 "[x for x in d['fabrics'] if x['name']=='$F' and x['code']=='FAB_EPERM' and 'owner uid 0' in x['error']]"
echo "perm: ok"
