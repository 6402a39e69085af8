#!/usr/bin/env bash
# README's second command: install what is missing, build, and pass every test,
# first in the normal build, then built with -fsanitize=address,undefined.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

jobs=$(nproc)

echo "== build (RelWithDebInfo) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
echo "== test (RelWithDebInfo) =="
(cd build && ctest --output-on-failure -j1)

echo "== build (ASan+UBSan) =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFAB_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== test (ASan+UBSan) =="
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j1 -LE nosan)
