# fabd_test.sh - helpers for shell tests that run a fabric under fabd, sourced
# after the test sets FABRIC, TMP and fabd_pid (empty until fabd runs).
# cleanup (installed as the EXIT trap) kills fabd and every process of the
# fabric, even when the test fails, and removes the fabric's segments and TMP.

# The processes whose environment names this fabric (fabd's children).
fabric_pids() {
	local p
	for p in /proc/[0-9]*; do
		{ tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qx "FAB_FABRIC=$FABRIC" &&
			echo "${p#/proc/}"
	done
}

cleanup() {
	local p
	[ -n "$fabd_pid" ] && kill -KILL "$fabd_pid" 2>/dev/null && wait "$fabd_pid" 2>/dev/null
	for p in $(fabric_pids); do kill -KILL "$p" 2>/dev/null; done
	rm -f /dev/shm/fab."$FABRIC" /dev/shm/fab."$FABRIC".* 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
