#!/usr/bin/env bash
# Instruction counts, memory and stack of the firmware on both QEMU boards (mps2-an386 `qemu`,
# and netduinoplus2 `stm32f405` with the STM32F405's 1 MiB flash and 128 KiB RAM), exact and
# repeatable, with ../shared/tools/qemu-insn-count (a QEMU plugin; README there):
#   * per multiply-accumulate of ldl_core::linalg::dot (100 calls x 784 MACs in bench_dot,
#     call and loop overhead included; bench mode `dot`)
#   * per classification (Device::handle(Classify): bytes -> f32, Preprocess, classify over
#     the model's 10 classes)
#   * per enrollment of the board's images (EnrollStart + the EnrollSample frames: the
#     compact fit from the images and their shifts, streamed into the store)
#   * peak stack (painted stack, src/bin/bench.rs) at boot, and in the serial loop classifying
#     one sample, enrolling, forgetting that class, answering Info and List
# for MNIST-size models (d = 784, 10 classes, 5 training images each) written by `ldl train`:
# the mcu mode (8-bit classes, rank <= 40), mcu:24 (rank <= 24) and mcu-align (the query
# alignment: three views of each query) on both boards, and on the
# qemu board (the one with room for f32 classes) the f32 device mode at rank 24 and a k = 64
# linear target (whose enrollment the firmware refuses: it sizes enrollments for targets of at
# most 16 outputs).
# Also the firmware's size (llvm-size), bytes per class f32 against compact, and the RAM:
# statics plus the peak stack must fit the board's RAM (exit 1 otherwise).
#   firmware/bench.sh            (from anywhere; a few minutes)
#   LDL=path/to/ldl              use this host CLI instead of building it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT="$(cd .. && pwd)"
COUNT="${COUNT:-$ROOT/../shared/tools/qemu-insn-count/count.sh}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
SYSROOT="$(rustc --print sysroot)"
LLVM_SIZE="$(ls "$SYSROOT"/lib/rustlib/*/bin/llvm-size | head -1)"

if [ -z "${LDL:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p ldl-host --bin ldl)
    LDL="$ROOT/target/release/ldl"
fi
"$LDL" train --classes 0-9 --shots 5 --method mcu --capacity 20 --out "$TMP/mcu.ldlm" >/dev/null 2>&1
"$LDL" train --classes 0-9 --shots 5 --method mcu:24 --capacity 20 --out "$TMP/mcu24.ldlm" >/dev/null 2>&1
# mcu-warp: the same classes (5 images: no warped copies), enrolling one image that fills
# the free slots with its 4 rotated and sheared copies (`mcu-warp1`; `mcu1` the same one
# image without copies).
"$LDL" train --classes 0-9 --shots 5 --method mcu-warp --capacity 20 --out "$TMP/mcu-warp.ldlm" >/dev/null 2>&1
# mcu-align: mcu-warp's classes, each query also seen sheared both ways (three passes).
"$LDL" train --classes 0-9 --shots 5 --method mcu-align --capacity 20 --out "$TMP/mcu-align.ldlm" >/dev/null 2>&1
"$LDL" train --classes 0-9 --shots 5 --method device --max-rank 24 --capacity 20 --out "$TMP/device.ldlm" >/dev/null 2>&1
"$LDL" train --classes 0-9 --shots 5 --method device:64 --max-rank 24 --capacity 20 --out "$TMP/device64.ldlm" >/dev/null 2>&1

# Bytes per class, f32 against compact (the same ten classes of five images).
per_class() { "$LDL" inspect "$1" --board qemu --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
b = [e["bytes"] for e in r["entries"]]
ranks = [e["rank"] for e in r["entries"]]
print("%d B per class on average (largest %d B, ranks %d-%d), file %d B" % (sum(b) // len(b), max(b), min(ranks), max(ranks), r["bytes"]))'; }
echo "model classes (10 MNIST digits, 5 images each):"
echo "  f32 device mode, rank <= 24: $(per_class "$TMP/device.ldlm")"
echo "  mcu (8-bit, live inputs), rank <= 40: $(per_class "$TMP/mcu.ldlm")"
echo "  mcu:24 (8-bit, live inputs), rank <= 24: $(per_class "$TMP/mcu24.ldlm")"
echo

# region LOG -> "n last sum" of the bench_start..bench_end regions
region() { sed -n 's/.*region.* n=\([0-9]*\) last=\([0-9]*\) sum=\([0-9]*\).*/\1 \2 \3/p' <<<"$1"; }
board_value() { python3 -c "import tomllib;b=tomllib.load(open('boards.toml','rb'))['boards']['$1'];print($2)"; }

fail=0
for board in qemu stm32f405; do
    if [ "$board" = qemu ]; then
        cargo build --release -q
        dir=target/thumbv7em-none-eabihf/release
        models="mcu mcu24 mcu-align device device64 mcu1 mcu-warp1"
    else
        cargo build-stm32 -q
        dir=target/stm32f405/thumbv7em-none-eabihf/release
        models="mcu mcu24 mcu-align mcu1 mcu-warp1"
    fi
    BENCH=$dir/bench
    FW=$dir/ldl-firmware
    machine="$(board_value "$board" 'b["target"].split(":")[1]')"
    origin="$(board_value "$board" 'hex(b["model"]["origin"])')"
    ram="$(board_value "$board" 'b["ram"]["size"]')"
    read -r images rank classes < <(board_value "$board" '" ".join(str(b["sizes"][k]) for k in ("images", "rank", "classes"))')
    echo "=== $board ($machine): enrollments of $images images, $classes enrolled classes of rank <= $rank"
    "$LLVM_SIZE" "$FW"
    read -r text data bss < <("$LLVM_SIZE" "$FW" | awk 'NR==2 {print $1, $2, $3}')
    echo "program $((text + data)) B of $(board_value "$board" 'b["program"]["size"]') B; statics (data + bss) $((data + bss)) B of $ram B RAM"

    log="$(QEMU_MACHINE=$machine QEMU_EXTRA="-semihosting-config enable=on,target=native,arg=bench,arg=dot" timeout 600 "$COUNT" "$BENCH" 2>&1 >/dev/null | grep -a insn_count || true)"
    read -r n last _ < <(region "$log") || true
    [ "${n:-}" = 1 ] || { echo "bench dot: unexpected regions: $log" >&2; exit 1; }
    awk -v i="$last" 'BEGIN { printf "dot: %d instructions for 78400 multiply-accumulates = %.2f per MAC (calls and loop included)\n", i, i / 78400 }'

    # The bench binary's `main` is not the firmware's: its figures count from the top of the
    # stack through its own `main` frame. The firmware's figures are the parts measured below
    # `main` (boot) and below the caller of `Device::serve` plus the depth of the firmware's
    # `main`: the bench's, less the bench's `main` frame, plus the firmware's (from the ELFs).
    fw_main=$(( $(tools/frames.py "$FW" --frame __cortex_m_rt_main) + $(tools/frames.py "$FW" --frame main) ))
    bench_main=$(( $(tools/frames.py "$BENCH" --frame __cortex_m_rt_main) + $(tools/frames.py "$BENCH" --frame main) ))
    peak=0
    for m in $models; do
        rm -f "$TMP/store.bin"
        # NAME1: the model NAME, enrolling one image.
        file="$m" one=""
        case "$m" in *1) file="${m%1}" one=",arg=one" ;; esac
        QEMU_MACHINE=$machine QEMU_EXTRA="-device loader,file=$TMP/$file.ldlm,addr=$origin -semihosting-config enable=on,target=native,arg=bench,arg=store=$TMP/store.bin$one" \
            timeout 600 "$COUNT" "$BENCH" 2>"$TMP/log" | defmt-print -e "$BENCH" >"$TMP/defmt" 2>&1 || true
        log="$(grep -a insn_count "$TMP/log" || true)"
        echo "--- $m model ($(stat -c %s "$TMP/$file.ldlm") B)"
        read -r n last sum < <(region "$log") || true
        if [ "${n:-}" = 2 ]; then
            echo "instructions per classification (10 classes): $((sum - last))"
            echo "instructions per enrollment of $([ -n "$one" ] && echo 1 || echo "$images") images: $last"
        else
            echo "regions: $log"
        fi
        grep -a -o 'bench: .*' "$TMP/defmt" || true
        if line="$(grep -a -o 'stack: boot .*' "$TMP/defmt")" && below="$(grep -a -o 'below main: .*' "$TMP/defmt")"; then
            loop="$(grep -a -o 'serial loop: .*' "$TMP/defmt" | sed 's/serial loop: //')"
            read -r boot_below main_depth <<<"$(grep -o -- '-\?[0-9]* B' <<<"$below" | tr -d ' B' | tr '\n' ' ')"
            read -r c e f i <<<"$(grep -o -- '-\?[0-9]* B' <<<"$loop" | tr -d ' B' | tr '\n' ' ')"
            top=$((main_depth - bench_main + fw_main))
            fig() { if [ "$2" -lt 0 ]; then echo "$1 not measured"; else echo "$1 $(($2 + top)) B"; fi; }
            echo "firmware peak stack: $(fig boot "$boot_below"), $(fig classification "$c"), $(fig enrollment "$e"), $(fig forget "$f"), $(fig info+list "$i")"
            for v in "$boot_below" "$c" "$e" "$f" "$i"; do
                [ "$v" -ge 0 ] && [ $((v + top)) -gt "$peak" ] && peak=$((v + top))
            done
        else
            echo "stack: not measured:"; cat "$TMP/defmt"
            fail=1
        fi
    done
    total=$((data + bss + peak))
    echo "RAM: statics $((data + bss)) B + peak stack $peak B = $total B of $ram B"
    if [ "$total" -gt "$ram" ]; then
        echo "FAIL: $board: statics and stack exceed the RAM" >&2
        fail=1
    fi
    echo
done
exit $fail
