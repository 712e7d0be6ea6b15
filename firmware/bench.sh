#!/usr/bin/env bash
# Instruction counts and stack depth of the firmware on the QEMU board (mps2-an386,
# Cortex-M4F), exact and repeatable, with ../shared/tools/qemu-insn-count (a QEMU plugin;
# README there):
#   * per multiply-accumulate of ldl_core::linalg::dot (100 calls x 784 MACs in bench_dot,
#     call and loop overhead included; bench mode `dot`)
#   * per classification (Device::handle(Classify): bytes -> f32, Preprocess, classify)
#   * per enrollment of 5 samples (EnrollStart + 5 EnrollSample: shifts, closed-form fit, save)
#   * peak stack (painted stack, src/bin/bench.rs) at boot, and in the serial loop classifying
#     one sample, enrolling 5 samples, forgetting that class, answering Info and List
# for three MNIST-size models (d = 784, 10 classes) written by `ldl train`: the device mode
# (identity target, shift 2, max rank 24), the same with shift 1 (`device::1`: 9 copies of
# each enrolled image instead of 25) and with a k = 64 linear target (whose enrollment the
# firmware refuses: its enrolled classes hold targets of K <= 16 outputs).
# Also the firmware's size without the model (llvm-size) and its RAM besides the model and
# the enrolled classes: the statics other than ENROLLED and WORKSPACE, plus the peak stack.
# Exits 1 when that RAM is 16 KB or more (issue 4's budget) or the stack was not measured.
#   firmware/bench.sh            (from anywhere; about a minute)
#   LDL=path/to/ldl              use this host CLI instead of building it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT="$(cd .. && pwd)"
COUNT="${COUNT:-$ROOT/../shared/tools/qemu-insn-count/count.sh}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
SYSROOT="$(rustc --print sysroot)"
LLVM_SIZE="$(ls "$SYSROOT"/lib/rustlib/*/bin/llvm-size | head -1)"
LLVM_NM="$(ls "$SYSROOT"/lib/rustlib/*/bin/llvm-nm | head -1)"

cargo build --release -q
BENCH=target/thumbv7em-none-eabihf/release/bench
FW=target/thumbv7em-none-eabihf/release/ldl-firmware
origin="$(python3 -c 'import tomllib;print(hex(tomllib.load(open("boards.toml","rb"))["boards"]["qemu"]["model"]["origin"]))')"

if [ -z "${LDL:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p ldl-host --bin ldl)
    LDL="$ROOT/target/release/ldl"
fi
"$LDL" train --classes 0-9 --shots 5 --method device --max-rank 24 --capacity 20 --out "$TMP/device.ldlm" >/dev/null 2>&1
"$LDL" train --classes 0-9 --shots 5 --method device::1 --max-rank 24 --capacity 20 --out "$TMP/device1.ldlm" >/dev/null 2>&1
"$LDL" train --classes 0-9 --shots 5 --method device:64 --max-rank 24 --capacity 20 --out "$TMP/device64.ldlm" >/dev/null 2>&1

# region LOG -> "n last sum" of the bench_start..bench_end regions
region() { sed -n 's/.*region.* n=\([0-9]*\) last=\([0-9]*\) sum=\([0-9]*\).*/\1 \2 \3/p' <<<"$1"; }

echo "firmware without the model (llvm-size; flash = text + data, RAM = data + bss + stack):"
"$LLVM_SIZE" "$FW"
read -r data bss < <("$LLVM_SIZE" "$FW" | awk 'NR==2 {print $2, $3}')
big=0
for hex in $("$LLVM_NM" -S "$FW" | awk '$4 ~ /ldl_firmware(8ENROLLED|9WORKSPACE)/ {print $2}'); do
    big=$((big + 16#$hex))
done
small=$((data + bss - big))
echo "static RAM besides the enrolled classes and the enrollment workspace (ENROLLED, WORKSPACE: $big B): $small B"
echo

# The inner loop (no model needed).
log="$(QEMU_EXTRA="-semihosting-config enable=on,target=native,arg=bench,arg=dot" timeout 600 "$COUNT" "$BENCH" 2>&1 >/dev/null | grep -a insn_count || true)"
read -r n last _ < <(region "$log") || true
[ "${n:-}" = 1 ] || { echo "bench dot: unexpected regions: $log" >&2; exit 1; }
awk -v i="$last" 'BEGIN { printf "dot: %d instructions for 78400 multiply-accumulates = %.2f per MAC (calls and loop included)\n", i, i / 78400 }'

# The bench binary's `main` is not the firmware's: its figures count from the top of the
# stack through its own `main` frame. The firmware's figures are the parts measured below
# `main` (boot) and below the caller of `Device::serve` (the serial loop, which the
# firmware's `main` calls directly) plus the depth of the firmware's `main`: the bench's,
# less the bench's `main` frame, plus the firmware's (both read from their ELF).
fw_main=$(( $(tools/frames.py "$FW" --frame __cortex_m_rt_main) + $(tools/frames.py "$FW" --frame main) ))
bench_main=$(( $(tools/frames.py "$BENCH" --frame __cortex_m_rt_main) + $(tools/frames.py "$BENCH" --frame main) ))
for f in serve answer handle; do
    a="$(tools/frames.py "$FW" --frame "$f" 2>/dev/null || echo '?')"
    b="$(tools/frames.py "$BENCH" --frame "$f" 2>/dev/null || echo '?')"
    [ "$a" = "$b" ] || echo "note: Device::$f frame differs between the firmware ($a B) and the bench ($b B)"
done

peak=0
worst=""
for m in device device1 device64; do
    QEMU_EXTRA="-device loader,file=$TMP/$m.ldlm,addr=$origin" timeout 600 "$COUNT" "$BENCH" 2>"$TMP/log" \
        | defmt-print -e "$BENCH" >"$TMP/defmt" 2>&1 || true
    log="$(grep -a insn_count "$TMP/log" || true)"
    echo "== $m ($(stat -c %s "$TMP/$m.ldlm") B model)"
    read -r n last sum < <(region "$log") || true
    if [ "${n:-}" = 2 ]; then
        echo "instructions per classification: $((sum - last))"
        echo "instructions per enrollment of 5 samples: $last"
    else
        echo "regions: $log"
    fi
    if line="$(grep -a -o 'stack: boot .*' "$TMP/defmt")" && below="$(grep -a -o 'below main: .*' "$TMP/defmt")"; then
        loop="$(grep -a -o 'serial loop: .*' "$TMP/defmt" | sed 's/serial loop: //')"
        echo "bench binary: peak $line (from the top of the stack; its main frame: $bench_main B)"
        echo "  of which below the caller of Device::serve: $loop"
        read -r boot_below main_depth <<<"$(grep -o -- '-\?[0-9]* B' <<<"$below" | tr -d ' B' | tr '\n' ' ')"
        read -r c e f i <<<"$(grep -o -- '-\?[0-9]* B' <<<"$loop" | tr -d ' B' | tr '\n' ' ')"
        top=$((main_depth - bench_main + fw_main))
        fig() { if [ "$2" -lt 0 ]; then echo "$1 not measured"; else echo "$1 $(($2 + top)) B"; fi; }
        echo "firmware (its main frame: $fw_main B, main at $top B from the top): peak stack $(fig boot "$boot_below"), $(fig classification "$c"), $(fig enrollment "$e"), $(fig forget "$f"), $(fig info+list "$i")"
        for v in "$boot_below" "$c" "$e" "$f" "$i"; do
            [ "$v" -ge 0 ] && [ $((v + top)) -gt "$peak" ] && peak=$((v + top))
        done
    else
        echo "stack: not measured:"; cat "$TMP/defmt"
        worst="not measured"
    fi
done
echo
total=$((small + peak))
echo "firmware RAM besides the model and the enrolled classes (boot, classification, enrollment, forget, info, list): $small B static + $peak B peak stack = $total B (target: < 16384 B)"
if [ -n "$worst" ]; then
    echo "FAIL: the stack was not measured" >&2
    exit 1
fi
if [ "$total" -ge 16384 ]; then
    echo "FAIL: $total B >= 16384 B" >&2
    exit 1
fi
