#!/usr/bin/env bash
# Instruction counts of the firmware on the QEMU board (mps2-an386, Cortex-M4F), exact and
# repeatable, with ../shared/tools/qemu-insn-count (a QEMU plugin; README there):
#   * per classification (Device::handle(Classify): bytes -> f32, Preprocess, classify)
#   * per enrollment of 5 samples (EnrollStart + 5 EnrollSample: shifts, closed-form fit, save)
#   * per multiply-accumulate of ldl_core::linalg::dot (100 calls x 784 MACs in bench_dot)
# for two MNIST-size models (d = 784, 10 classes) written by `ldl train`: the device mode
# (identity target, shift 2, max rank 24) and the same with a k = 64 linear target (whose
# enrollment the firmware refuses: its enrolled classes hold targets of K <= 16 outputs).
# Also the firmware's size without the model (llvm-size).
#   firmware/bench.sh            (from anywhere; about a minute)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT="$(cd .. && pwd)"
COUNT="${COUNT:-$ROOT/../shared/tools/qemu-insn-count/count.sh}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
SYSROOT="$(rustc --print sysroot)"
LLVM_SIZE="$(ls "$SYSROOT"/lib/rustlib/*/bin/llvm-size | head -1)"

cargo build --release -q
BENCH=target/thumbv7em-none-eabihf/release/bench
origin="$(python3 -c 'import tomllib;print(hex(tomllib.load(open("boards.toml","rb"))["boards"]["qemu"]["model"]["origin"]))')"

(cd "$ROOT" && cargo build --release -q -p ldl-host --bin ldl)
LDL="$ROOT/target/release/ldl"
"$LDL" train --classes 0-9 --shots 5 --method device --max-rank 24 --capacity 20 --out "$TMP/device.ldlm" >/dev/null 2>&1
"$LDL" train --classes 0-9 --shots 5 --method device:64 --max-rank 24 --capacity 20 --out "$TMP/device64.ldlm" >/dev/null 2>&1

echo "firmware without the model (llvm-size; flash = text + data, RAM = data + bss + stack):"
"$LLVM_SIZE" target/thumbv7em-none-eabihf/release/ldl-firmware
echo
for m in device device64; do
    log="$(QEMU_EXTRA="-device loader,file=$TMP/$m.ldlm,addr=$origin" timeout 600 "$COUNT" "$BENCH" bench_dot 2>&1 >/dev/null | grep -a insn_count || true)"
    region="$(grep -a 'region' <<<"$log")"
    n="$(sed -n 's/.* n=\([0-9]*\).*/\1/p' <<<"$region")"
    last="$(sed -n 's/.* last=\([0-9]*\).*/\1/p' <<<"$region")"
    sum="$(sed -n 's/.* sum=\([0-9]*\).*/\1/p' <<<"$region")"
    inner="$(grep -a ' in \[' <<<"$log" | sed 's/.*= //')"
    echo "== $m ($(stat -c %s "$TMP/$m.ldlm") B model)"
    if [ "$n" = 2 ]; then
        echo "instructions per classification: $((sum - last))"
        echo "instructions per enrollment of 5 samples: $last"
    else
        echo "regions: $region"
    fi
    awk -v i="$inner" 'BEGIN { printf "dot: %d instructions for 78400 multiply-accumulates = %.2f per MAC\n", i, i / 78400 }'
done
