#!/usr/bin/env bash
# README's first command: install what is missing, build, and run the main
# job.  Until the broker (fabd) lands, the main job is the demo pipeline:
# a source process, a pool of worker processes and a sink, connected by fab
# channels, with every message accounted for.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target fab-demo-pipeline
exec ./build/examples/fab-demo-pipeline "$@"
