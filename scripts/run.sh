#!/usr/bin/env bash
# README's first command: install what is missing, build, and run the main
# job: the shop pipeline (examples/shop-demo.yaml) under fabd, every stage
# its own process, until the source's 2000 orders are acknowledged and the
# closes have drained the pipeline; while it runs, fabctl shows its
# channels and processes twice.  Extra arguments go to `fabd run`
# (e.g. --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target fabd fabctl shop-source shop-validate shop-enrich \
	shop-persist shop-ack
# The stage programs are found on PATH, as fabd runs `run:` like a shell would.
export PATH="$PWD/build/examples:$PATH"
./build/broker/fabd run "$@" examples/shop-demo.yaml &
fabd=$!
trap 'kill -TERM "$fabd" 2>/dev/null' INT TERM
for i in 1 2; do
	sleep 0.7
	kill -0 "$fabd" 2>/dev/null || break
	echo "---- fabctl -f shopdemo chan ----"
	./build/tools/fabctl/fabctl -f shopdemo chan --interval 100ms || true
	echo "---- fabctl -f shopdemo ps ----"
	./build/tools/fabctl/fabctl -f shopdemo ps || true
done
rc=0
wait "$fabd" || rc=$?
echo "fabd exited with status $rc"
exit "$rc"
