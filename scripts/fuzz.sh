#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz and libFuzzer) for SECONDS each, or the TARGETs
# named. The test command runs each for a bounded slice; run it longer by hand, for example
#   scripts/fuzz.sh 3600               # an hour per target
#   scripts/fuzz.sh 600 dns_query      # ten minutes of one
# Each target starts from its corpus in target/fuzz-corpus/TARGET (kept between runs), seeded
# from fuzz/seeds/TARGET and, for the configuration folder, from every compile fixture and
# example. A crash stops the run and leaves its input in fuzz/artifacts/TARGET: copy it into
# fuzz/regressions/TARGET, where the unit tests replay every input on each run of the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
needs_build_tools
needs_fuzz_tools

seconds="${1:-60}"
shift || true
# The targets are built with the same dependency versions Gantry ships with.
cp Cargo.lock fuzz/Cargo.lock
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

echo "==> building the fuzz targets (coverage-instrumented, fuzz/Cargo.toml's dev profile)"
cargo fuzz build --fuzz-dir fuzz --dev --sanitizer none --target-dir target/fuzz

for target in "${targets[@]}"; do
    corpus="target/fuzz-corpus/$target"
    mkdir -p "$corpus"
    if [ -d "fuzz/seeds/$target" ]; then
        cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    fi
    if [ -d "fuzz/regressions/$target" ]; then
        cp -n fuzz/regressions/"$target"/* "$corpus"/ 2>/dev/null || true
    fi
    if [ "$target" = folder_file ]; then
        find proxy/tests/fixtures/compile examples -name '*.yaml' -print0 |
            while IFS= read -r -d '' file; do
                cp -n "$file" "$corpus/$(echo "$file" | tr / _)" 2>/dev/null || true
            done
    fi
    echo "==> fuzzing $target for ${seconds}s"
    # -timeout: an input taking longer is a hang, and a finding; -rss_limit_mb: so is one that
    # grows the process past it.
    status=0
    cargo fuzz run --fuzz-dir fuzz --dev --sanitizer none --target-dir target/fuzz \
        "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"target/fuzz-$target.log" 2>&1 || status=$?
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^INFO: seed corpus|^Done' \
        "target/fuzz-$target.log" | sed "s/^/    $target: /" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "target/fuzz-$target.log" >&2
        echo "==> $target found a failure: see target/fuzz-$target.log and fuzz/artifacts/$target" >&2
        exit 1
    fi
done
