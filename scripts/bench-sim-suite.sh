#!/usr/bin/env bash
# Runs every shipped HA conformance scenario through `ferrox sim run` (release build) and
# reports the wall time of the whole suite, best of N runs. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
runs="${1:-5}"
scenarios=../shared/conformance/pve-ha/scenarios
cargo build --release --quiet -p ferrox-cli
best=""
for _ in $(seq "$runs"); do
    start=$(date +%s.%N)
    for dir in "$scenarios"/*/; do
        ./target/release/ferrox sim run "$dir" > /dev/null
    done
    end=$(date +%s.%N)
    t=$(echo "$end - $start" | bc)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
    echo "run: ${t}s"
done
echo "scenarios: $(ls -d "$scenarios"/*/ | wc -l), best of $runs: ${best}s"
