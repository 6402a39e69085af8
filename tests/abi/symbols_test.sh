#!/usr/bin/env bash
# symbols_test.sh - the exported ABI is exactly the version script.
#
# usage: symbols_test.sh LIBFAB_SO LIBFAB_MAP FAB_H
#
# Checks that the dynamic symbols libfab defines are the same set as the
# globals of fabric/libfab.map, that each one starts with fab_ and carries a
# version node of the map, that every function fab.h declares is exported
# (and nothing else is), and that the SONAME is libfab.so.1.
set -euo pipefail

lib=$1 map=$2 hdr=$3
fail=0
err() { echo "FAIL: $*"; fail=1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Globals of the version script: names between "global:" and "local:" of
# every node, comments stripped.
sed -e 's#/\*.*\*/##g' -e 's/#.*//' "$map" | awk '
  /global:/ { g = 1; sub(/.*global:/, "") }
  /local:/  { g = 0 }
  g && /}/ { sub(/}.*/, ""); gsub(/[;{]/, " "); for (i = 1; i <= NF; i++) print $i; g = 0; next }
  g { gsub(/[;{}]/, " "); for (i = 1; i <= NF; i++) print $i }
' | sort -u > "$tmp/map"
# Version nodes ("FAB_1.0 {").
grep -oE '^[[:space:]]*[A-Za-z_][A-Za-z0-9_.]*[[:space:]]*\{' "$map" | tr -d ' \t{' | sort -u > "$tmp/nodes"

# Defined dynamic symbols, with their versions.  A version definition shows
# up as an absolute symbol named after the node: not part of the ABI.
nm -D --defined-only "$lib" | awk '{ print $NF }' > "$tmp/raw"
sed -E 's/@.*//' "$tmp/raw" | grep -vxF -f "$tmp/nodes" | sort -u > "$tmp/lib" || true

if ! diff -u "$tmp/map" "$tmp/lib" > "$tmp/diff"; then
  err "exported symbols differ from $map (- map only, + library only):"
  cat "$tmp/diff"
fi
if grep -v '^fab_' "$tmp/lib" > "$tmp/bad"; then
  err "exported symbols without the fab_ prefix:"; cat "$tmp/bad"
fi
# Each export is versioned with a node of the map.
while read -r s; do
  case "$s" in
    *@*) v=${s##*@}; grep -qxF "$v" "$tmp/nodes" || err "$s: version $v is not a node of the map" ;;
    *) grep -qxF "$s" "$tmp/nodes" || err "$s is exported without a version" ;;
  esac
done < "$tmp/raw"

# Functions declared in the public header ("fab_x(" outside comments).
perl -0777 -pe 's{/\*.*?\*/}{}gs' "$hdr" |
  grep -oE '\bfab_[a-z_0-9]+[[:space:]]*\(' | tr -d ' (' | sort -u > "$tmp/hdr"
if ! diff -u "$tmp/hdr" "$tmp/map" > "$tmp/diff2"; then
  err "functions declared in fab.h differ from the version script (- header, + map):"
  cat "$tmp/diff2"
fi

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "libfab.so.1" ] || err "SONAME is '$soname', want libfab.so.1"

n=$(wc -l < "$tmp/lib")
if [ "$fail" -eq 0 ]; then
  echo "symbols: $n exported, all fab_*, identical to the version script and fab.h; SONAME $soname"
fi
exit "$fail"
