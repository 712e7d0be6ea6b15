#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the pinned stable
# toolchain (no nightly, no cargo-fuzz; overflow checks and debug assertions on) and runs each
# from its seed corpus for a bounded time. A crash fails the script and leaves its input in
# target/fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                 every target, 30 s each (what ./test-all.sh runs)
#   scripts/fuzz.sh 600 store_load  one target, 10 minutes
#   LDL_FUZZ_RUNS=10000000 scripts/fuzz.sh 3600   a long run: 10 M inputs each (or an hour)
#
# Targets: core/fuzz (decode_model, protocol_stream, store_load, classify_enroll) and
# firmware/fuzz (device_serve). New inputs go to target/fuzz/corpus/<target>, never into the
# committed seed corpora (core/tests/format_props.rs `write_fuzz_corpus` writes those).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
secs="${1:-30}"
shift || true
host="$(rustc -vV | sed -n 's/^host: //p')"
# What cargo-fuzz passes for `-s none`, plus the checks of a debug build.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"

declare -A dir=(
    [decode_model]=core/fuzz [protocol_stream]=core/fuzz [store_load]=core/fuzz
    [classify_enroll]=core/fuzz [device_serve]=firmware/fuzz
)
order=(decode_model protocol_stream store_load classify_enroll device_serve)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${order[@]}")
for t in "${targets[@]}"; do
    [ -n "${dir[$t]:-}" ] || { echo "fuzz.sh: no target $t (targets: ${order[*]})" >&2; exit 2; }
done

for d in core/fuzz firmware/fuzz; do
    echo "fuzz.sh: building $d"
    cargo build -q --release --manifest-path "$d/Cargo.toml" --target "$host" --bins
done

printf '%-16s %12s %8s %10s\n' target runs seconds "runs/s"
for t in "${targets[@]}"; do
    d="${dir[$t]}"
    bin="$root/$d/target/$host/release/$t"
    out="$root/target/fuzz/corpus/$t"
    art="$root/target/fuzz/artifacts/$t"
    mkdir -p "$out" "$art"
    log="$root/target/fuzz/$t.log"
    args=(-max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$art/")
    [ -n "${LDL_FUZZ_RUNS:-}" ] && args+=(-runs="$LDL_FUZZ_RUNS")
    start=$(date +%s)
    if ! "$bin" "${args[@]}" "$out" "$root/$d/corpus/$t" >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz.sh: $t FAILED: input in $art/, log $log" >&2
        exit 1
    fi
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log")
    took=$(( $(date +%s) - start ))
    printf '%-16s %12s %8s %10s\n' "$t" "${runs:-?}" "$took" "$(( ${runs:-0} / (took > 0 ? took : 1) ))"
done
