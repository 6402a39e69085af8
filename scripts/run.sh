#!/usr/bin/env bash
# README's first command: install what is missing, build, and run the main
# job: the shop pipeline (examples/shop-demo.yaml) under fabd, every stage
# its own process, until the source's 2000 orders are acknowledged and the
# closes have drained the pipeline.  Extra arguments go to `fabd run`
# (e.g. --keep).  (fabctl, which will show it live, is the next issue.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target fabd shop-source shop-validate shop-enrich \
	shop-persist shop-ack
# The stage programs are found on PATH, as fabd runs `run:` like a shell would.
export PATH="$PWD/build/examples:$PATH"
exec ./build/broker/fabd run "$@" examples/shop-demo.yaml
