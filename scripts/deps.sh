#!/usr/bin/env bash
# Install the Debian packages fab's build and tests need, only those missing.
# Safe to run repeatedly; needs root (or sudo) only when something is missing.
set -euo pipefail

# clang, bpftool and libbpf-dev build `fabctl trace` (eBPF); prometheus gives the
# tests promtool.
PKGS=(build-essential cmake pkg-config check libsubunit-dev libyaml-dev libmicrohttpd-dev liburing-dev python3
      clang llvm bpftool libbpf-dev prometheus)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
