#!/usr/bin/env bash
# Cargo runner for the QEMU boards (mps2-an386, and netduinoplus2 for the STM32F405 board):
# boots an ELF with semihosting and prints its DECODED defmt log (QEMU's stdout piped into
# `defmt-print -e ELF`). The exit status is QEMU's, i.e. the firmware's semihosting exit code.
#
#   usage: qemu-run.sh ELF [ARG...]       (ARGs go on the semihosting command line)
#
# The board: LDL_BOARD (a key of boards.toml whose target is qemu:<machine>), else the
# `target/<key>/` the ELF was built in (`cargo build-stm32` builds in target/stm32f405), else
# `qemu` (mps2-an386).
#
# Environment:
#   LDL_MODEL=FILE    load FILE at the start of the board's MODEL region (boards.toml) with
#                     -device loader, as if it had been flashed on its own
#   LDL_SERIAL=SPEC   QEMU -serial backend for UART0, e.g. tcp:127.0.0.1:4555,server,nowait
#                     or pty (default: none). When set, the firmware runs its serial loop.
#   LDL_STORE=FILE    host file backing the enrolled-class store (created erased if missing;
#                     every flash write/erase is mirrored into it). Default: volatile store.
#   LDL_TIMEOUT=SECS  kill QEMU after SECS seconds (exit status 124). Default: no limit.
#   LDL_QEMU_EXTRA    extra QEMU arguments (word-split), e.g. "-d guest_errors".
#   LDL_RAW_LOG=FILE  also save QEMU's raw stdout (defmt frames, plus any plain text such
#                     as a panic-semihosting message, which defmt-print does not show).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ $# -lt 1 ]; then
    echo "usage: $0 ELF [ARG...]" >&2
    exit 2
fi
elf="$1"
shift

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "qemu-run.sh: qemu-system-arm not found; install it: apt-get install -y qemu-system-arm" >&2
    exit 127
fi
if ! command -v defmt-print >/dev/null 2>&1; then
    echo "qemu-run.sh: defmt-print not found; install it: cargo install --locked defmt-print" >&2
    exit 127
fi

# The board, its QEMU machine and MODEL region, from the one description of the layout.
read -r board machine model_origin model_size < <(python3 - "$here/boards.toml" "${LDL_BOARD:-}" "$elf" <<'EOF'
import sys, tomllib, re
with open(sys.argv[1], "rb") as f:
    boards = tomllib.load(f)["boards"]
want, elf = sys.argv[2], sys.argv[3]
qemu = {k: b for k, b in boards.items() if b["target"].startswith("qemu:")}
key = want
if not key:
    m = re.search(r"(?:^|/)target/([^/]+)/thumbv7em", elf)
    key = m.group(1) if m and m.group(1) in qemu else "qemu"
if key not in qemu:
    sys.exit(f"qemu-run.sh: no QEMU board {key!r} in boards.toml (have: {', '.join(qemu)})")
b = qemu[key]
print(key, b["target"].split(":", 1)[1], b["model"]["origin"], b["model"]["size"])
EOF
) || { echo "qemu-run.sh: cannot read the board from $here/boards.toml" >&2; exit 2; }

# QEMU splits option values at ',' ( ',,' is a literal comma).
qemu_escape() { printf '%s' "${1//,/,,}"; }

semi="enable=on,target=native,arg=ldl-firmware"
qemu_args=(-machine "$machine" -nographic -monitor none)
# mps2-an386 takes its CPU as an option; the SoC boards have theirs built in.
[ "$machine" = mps2-an386 ] && qemu_args+=(-cpu cortex-m4)

if [ -n "${LDL_SERIAL:-}" ]; then
    qemu_args+=(-serial "$LDL_SERIAL")
    semi+=",arg=serial"
else
    qemu_args+=(-serial none)
fi

if [ -n "${LDL_MODEL:-}" ]; then
    if [ ! -f "$LDL_MODEL" ]; then
        echo "qemu-run.sh: LDL_MODEL=$LDL_MODEL: no such file" >&2
        exit 2
    fi
    model_len=$(stat -c %s "$LDL_MODEL")
    if [ "$model_len" -gt "$model_size" ]; then
        echo "qemu-run.sh: LDL_MODEL is $model_len bytes, the MODEL region of $board only $model_size" >&2
        exit 2
    fi
    qemu_args+=(-device "loader,file=$(qemu_escape "$(realpath "$LDL_MODEL")"),addr=$(printf '0x%08x' "$model_origin")")
fi

if [ -n "${LDL_STORE:-}" ]; then
    store="$(realpath -m "$LDL_STORE")"
    case "$store" in
        *[[:space:]\"\']*)
            echo "qemu-run.sh: LDL_STORE path must not contain blanks or quotes: $store" >&2
            exit 2 ;;
    esac
    semi+=",arg=store=$(qemu_escape "$store")"
fi

for a in "$@"; do
    semi+=",arg=$(qemu_escape "$a")"
done

qemu_args+=(-semihosting-config "$semi" -kernel "$elf")
# shellcheck disable=SC2206
[ -n "${LDL_QEMU_EXTRA:-}" ] && qemu_args+=($LDL_QEMU_EXTRA)

timeout_cmd=()
if [ -n "${LDL_TIMEOUT:-}" ]; then
    timeout_cmd=(timeout -k 5 "$LDL_TIMEOUT")
fi

# stdin closed: QEMU must not grab the terminal; stdout = the defmt byte stream.
run_qemu() { "${timeout_cmd[@]}" qemu-system-arm "${qemu_args[@]}" </dev/null; }
raw_log="${LDL_RAW_LOG:-/dev/null}"
if [[ "${LDL_SERIAL:-}" == pty* ]]; then
    # QEMU announces the pty ("char device redirected to /dev/pts/N") on stdout, where it
    # would vanish into the decoder: copy that line to stderr.
    run_qemu | tee "$raw_log" >(grep -a --line-buffered -o 'char device redirected to /dev/[^ ]*' >&2) \
        | defmt-print -e "$elf"
else
    run_qemu | tee "$raw_log" | defmt-print -e "$elf"
fi
status=("${PIPESTATUS[@]}")
if [ "${status[2]}" -ne 0 ]; then
    echo "qemu-run.sh: defmt-print failed (status ${status[2]})" >&2
fi
exit "${status[0]}"
