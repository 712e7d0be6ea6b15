#!/usr/bin/env bash
# Firmware CI: installs what is missing (../scripts/setup.sh, shared with test-all.sh and
# demo.sh), builds every board, runs the host unit tests, the on-target tests under QEMU on
# both QEMU boards (mps2-an386; netduinoplus2 for the STM32F405), boots the firmware (no
# model / with a model / with a store file), checks the UART end to end over TCP (loopback),
# lints, and prints the sizes.
# Exits non-zero on the first failure.
#
#   firmware/ci.sh            (from anywhere; works in firmware/)
#   LDL_CI_SKIP_CLIPPY=1      skip the clippy step
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
FW_DIR="$(pwd)"
HOST_TARGET="x86_64-unknown-linux-gnu"
QEMU_ELF="target/thumbv7em-none-eabihf/release/ldl-firmware"
STM32_ELF="target/stm32f405/thumbv7em-none-eabihf/release/ldl-firmware"
NRF_ELF="target/nrf52840dk/thumbv7em-none-eabihf/release/ldl-firmware"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0
step() { printf '\n=== %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf 'ok: %s\n' "$*"; }
die() { failed=$((failed + 1)); printf 'FAIL: %s\n' "$*" >&2; printf '%d passed, %d failed\n' "$passed" "$failed"; exit 1; }
timed() { local t0=$SECONDS; "$@"; local rc=$?; printf '(%ss)\n' $((SECONDS - t0)); return $rc; }

# ---- tools ------------------------------------------------------------------------------
step "tools"
# rust-toolchain.toml (repo root): the thumbv7em target and llvm-tools.
source ../scripts/setup.sh
ldl_setup --qemu --defmt-print --components llvm-tools || die "setup (../scripts/setup.sh)"
command -v python3 >/dev/null 2>&1 || die "python3 missing"
SYSROOT="$(rustc --print sysroot)"
LLVM_SIZE="$SYSROOT/lib/rustlib/$HOST_TARGET/bin/llvm-size"
[ -x "$LLVM_SIZE" ] || die "llvm-size missing: rustup component add llvm-tools"
qemu-system-arm --version | head -1
defmt-print --version
ok "tools"

# ---- builds -----------------------------------------------------------------------------
step "build: QEMU board (release)"
timed cargo build --release || die "cargo build --release (board-qemu)"
ok "build board-qemu"

step "build: STM32F405 under QEMU (release)"
timed cargo build-stm32 || die "cargo build-stm32 (board-stm32f405)"
ok "build board-stm32f405"

step "build: nRF52840 DK (release)"
timed cargo build-nrf || die "cargo build-nrf (board-nrf52840dk)"
ok "build board-nrf52840dk"

# ---- tests ------------------------------------------------------------------------------
step "host unit tests (app)"
timed cargo test --lib --target "$HOST_TARGET" || die "host unit tests"
ok "host unit tests"

step "on-target tests under QEMU (defmt-test): mps2-an386"
LDL_TIMEOUT=120 timed cargo test || die "on-target tests (mps2-an386)"
ok "on-target tests (mps2-an386)"

# Release: a debug build of the bench binary does not fit the STM32F405's 128 KiB of program.
step "on-target tests under QEMU (defmt-test): netduinoplus2 (STM32F405)"
LDL_TIMEOUT=120 timed cargo test --release --no-default-features --features board-stm32f405 --target-dir target/stm32f405 \
    || die "on-target tests (stm32f405)"
ok "on-target tests (stm32f405)"

step "boot: STM32F405 without a model"
out="$(LDL_TIMEOUT=30 cargo run-stm32 -q 2>&1)" || { echo "$out"; die "cargo run-stm32 exited non-zero"; }
grep -q "netduinoplus2" <<<"$out" || { echo "$out"; die "the STM32F405 boot log lacks its board name"; }
grep -q "no model (MODEL region erased)" <<<"$out" || { echo "$out"; die "STM32F405 boot log lacks the 'no model' line"; }
ok "boot: stm32f405"

step "boot: no model"
out="$(LDL_TIMEOUT=30 cargo run --release -q 2>&1)" || { echo "$out"; die "cargo run --release exited non-zero"; }
echo "$out" | grep -v '^warning\|^ *|\|^ *=\|^ *-->\|^$' || true
grep -q "no model (MODEL region erased)" <<<"$out" || die "boot log lacks the 'no model' line"
ok "boot: no model"

step "boot: with a model (LDL_MODEL) and a store file (LDL_STORE)"
printf 'LDL\x01model-bytes-here' >"$TMP/model.bin"
out="$(LDL_TIMEOUT=30 LDL_MODEL="$TMP/model.bin" LDL_STORE="$TMP/store.bin" cargo run --release -q 2>&1)" \
    || { echo "$out"; die "cargo run with LDL_MODEL/LDL_STORE exited non-zero"; }
grep -q "model refused (error code" <<<"$out" || { echo "$out"; die "a bad model was not refused"; }
grep -q "persistent: true" <<<"$out" || { echo "$out"; die "store not persistent with LDL_STORE"; }
store_size="$(stat -c %s "$TMP/store.bin")"
expected_store="$(python3 -c 'import tomllib;print(tomllib.load(open("boards.toml","rb"))["boards"]["qemu"]["store"]["size"])')"
[ "$store_size" = "$expected_store" ] || die "store file is $store_size bytes, expected $expected_store"
[ -z "$(tr -d '\377' <"$TMP/store.bin" | head -c 1)" ] || die "new store file is not erased (0xFF)"
ok "boot: model + store file"

step "serial protocol end to end (TCP loopback, no model)"
timed python3 tools/protocol_check.py "$QEMU_ELF" --timeout 30 || die "protocol over TCP"
ok "serial protocol"

if [ -z "${LDL_CI_SKIP_CLIPPY:-}" ]; then
    step "clippy (both boards, firmware crate only)"
    cargo clippy -q --no-deps --all-targets -- -D warnings || die "clippy board-qemu"
    cargo clippy -q --no-deps --no-default-features --features board-nrf52840dk \
        --target-dir target/nrf52840dk -- -D warnings || die "clippy board-nrf52840dk"
    cargo clippy -q --no-deps --all-targets --no-default-features --features board-stm32f405 \
        --target-dir target/stm32f405 -- -D warnings || die "clippy board-stm32f405"
    cargo clippy -q --no-deps --lib --target "$HOST_TARGET" -- -D warnings || die "clippy host"
    ok "clippy"
fi

# ---- sizes ------------------------------------------------------------------------------
step "sizes (llvm-size; flash = text + data, RAM = data + bss, plus the stack)"
for pair in "qemu:$QEMU_ELF" "stm32f405:$STM32_ELF" "nrf52840dk:$NRF_ELF"; do
    board="${pair%%:*}"
    elf="${pair#*:}"
    echo "--- $board: $elf"
    "$LLVM_SIZE" "$elf"
    read -r text data bss < <("$LLVM_SIZE" "$elf" | awk 'NR==2 {print $1, $2, $3}')
    read -r prog ram < <(python3 -c "import tomllib,sys;b=tomllib.load(open('boards.toml','rb'))['boards']['$board'];print(b['program']['size'], b['ram']['size'])")
    awk -v f=$((text + data)) -v p="$prog" -v r=$((data + bss)) -v m="$ram" 'BEGIN {
        printf "flash %d / %d bytes (%.1f%%), static RAM %d / %d bytes (%.1f%%) + stack\n", f, p, 100 * f / p, r, m, 100 * r / m }'
    [ $((text + data)) -le "$prog" ] || die "$board: program larger than its FLASH region"
    # The stack the firmware keeps free (ldl_core::budget::STACK_BYTES) must remain.
    [ $((data + bss + 8192)) -le "$ram" ] || die "$board: statics leave less than 8 KiB of stack"
done
ok "sizes"

# The stack: bench.sh (which needs the host CLI and the MNIST data) measures the peak, about
# 4 KiB. Cheap regression guard here: no function of any board's firmware may reserve a
# frame over 2 KB (a whole class or a decoded model header moved through the stack is tens
# of KB; a protocol `Response` is about 1.3 KB).
step "stack frames (tools/frames.py: no frame over 2048 bytes)"
for pair in "qemu:$QEMU_ELF" "stm32f405:$STM32_ELF" "nrf52840dk:$NRF_ELF"; do
    board="${pair%%:*}"
    elf="${pair#*:}"
    echo "--- $board: largest frames"
    python3 tools/frames.py "$elf" --top 5
    python3 tools/frames.py "$elf" --max 2048 >"$TMP/over" || { cat "$TMP/over"; die "$board: stack frames over 2048 bytes"; }
done
ok "stack frames"

printf '\n%d passed, %d failed\n' "$passed" "$failed"
