#!/usr/bin/env bash
# Runs the shop pipeline (examples/pipeline.yaml: shop-source -> shop-validate
# -> shop-enrich x20 -> shop-persist x10 -> shop-ack, + shop-quarantine)
# without fabd: builds it if needed, then shop-run creates the fabric, starts
# every replica with the stage environment fabd sets (docs/stage.md), waits,
# prints the summary and destroys the fabric.  Arguments go to shop-run, e.g.
#   scripts/run-shop-by-hand.sh --count 2000 --rate 5000 --burst 100
#   scripts/run-shop-by-hand.sh --count 0      # endless; ^C drains, ^C^C cancels
# BUILD_DIR (default build-shop) picks the build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-shop}
if [ ! -x "$build/examples/shop-run" ]; then
	cmake -S . -B "$build" >/dev/null
	cmake --build "$build" -j"$(nproc)" --target shop-run shop-source shop-validate \
		shop-enrich shop-persist shop-ack shop-quarantine >/dev/null
fi
exec "$build/examples/shop-run" "$@"
