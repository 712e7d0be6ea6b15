# What demo.sh, test-all.sh and firmware/ci.sh need, checked and installed when missing,
# before anything is built: one copy of that logic for the three of them. Sourced, not run:
#
#   source scripts/setup.sh
#   ldl_setup [--qemu] [--defmt-print] [--components C...]
#
#   (always)        the toolchain of rust-toolchain.toml and its Cortex-M target. rustup
#                   installs a missing target by itself only while its automatic installation
#                   is on; with RUSTUP_AUTO_INSTALL=0 the first build would fail after minutes
#                   with "can't find crate for `core`", so the target is added here.
#   --qemu          qemu-system-arm (apt-get; through sudo when not root).
#   --defmt-print   defmt-print (cargo install; decodes the firmware's log under QEMU).
#   --components    rustup components of the toolchain (e.g. clippy rustfmt llvm-tools).
#
# Each step says what it installs on stderr; a step that cannot install fails with what to run.

# The repository root (this file is scripts/setup.sh), whose rust-toolchain.toml pins the
# toolchain.
LDL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The firmware's target (rust-toolchain.toml's `targets`).
LDL_TARGET="thumbv7em-none-eabihf"

ldl_say() { printf 'setup: %s\n' "$*" >&2; }
ldl_fail() {
    printf 'setup: %s\n' "$*" >&2
    return 1
}

# The toolchain rust-toolchain.toml pins and the firmware's target in it.
ldl_setup_rust() {
    command -v rustup >/dev/null 2>&1 || ldl_fail "rustup not found: install Rust with rustup (https://rustup.rs)" || return 1
    local toolchain
    # `rustup show active-toolchain` fails when the pinned toolchain is not installed and
    # rustup may not install it by itself.
    if ! toolchain="$(cd "$LDL_ROOT" && rustup show active-toolchain 2>/dev/null)"; then
        ldl_say "installing the toolchain of rust-toolchain.toml"
        (cd "$LDL_ROOT" && rustup toolchain install) || ldl_fail "rustup toolchain install (in $LDL_ROOT) failed" || return 1
        toolchain="$(cd "$LDL_ROOT" && rustup show active-toolchain)" || return 1
    fi
    toolchain="${toolchain%% *}"
    if ! (cd "$LDL_ROOT" && rustup target list --installed --toolchain "$toolchain") | grep -qx "$LDL_TARGET"; then
        ldl_say "adding the target $LDL_TARGET to the toolchain $toolchain"
        rustup target add --toolchain "$toolchain" "$LDL_TARGET" \
            || ldl_fail "rustup target add --toolchain $toolchain $LDL_TARGET failed" || return 1
    fi
    local c installed
    if [ $# -gt 0 ]; then
        installed="$(cd "$LDL_ROOT" && rustup component list --installed --toolchain "$toolchain")" || return 1
        for c in "$@"; do
            # Installed components carry the host's triple (clippy-x86_64-unknown-linux-gnu);
            # llvm-tools is listed as llvm-tools-preview on some toolchains.
            if ! grep -q "^$c\(-preview\)\?-" <<<"$installed"; then
                ldl_say "adding the component $c to the toolchain $toolchain"
                rustup component add --toolchain "$toolchain" "$c" \
                    || ldl_fail "rustup component add --toolchain $toolchain $c failed" || return 1
            fi
        done
    fi
}

# qemu-system-arm, from apt-get (through sudo when not root).
ldl_setup_qemu() {
    command -v qemu-system-arm >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 \
        || ldl_fail "qemu-system-arm not found and no apt-get: install QEMU's Arm system emulator (qemu-system-arm)" || return 1
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 \
            || ldl_fail "qemu-system-arm not found: as root, run apt-get install -y qemu-system-arm" || return 1
        sudo="sudo"
    fi
    ldl_say "installing qemu-system-arm (apt-get; the emulated Cortex-M4F boards)"
    $sudo apt-get update -qq || ldl_fail "apt-get update failed" || return 1
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm >/dev/null \
        || ldl_fail "apt-get install qemu-system-arm failed" || return 1
    command -v qemu-system-arm >/dev/null 2>&1 || ldl_fail "qemu-system-arm still not found after installing it" || return 1
}

# defmt-print, with cargo install (about 75 s). From the repository root: the pinned
# toolchain, and not firmware/, whose config builds for the MCU.
ldl_setup_defmt_print() {
    command -v defmt-print >/dev/null 2>&1 && return 0
    ldl_say "installing defmt-print (cargo install --locked defmt-print, about 75 s)"
    (cd "$LDL_ROOT" && cargo install --locked defmt-print) || ldl_fail "cargo install --locked defmt-print failed" || return 1
    command -v defmt-print >/dev/null 2>&1 \
        || ldl_fail "defmt-print installed but not on PATH: add ${CARGO_HOME:-$HOME/.cargo}/bin to PATH" || return 1
}

# Everything a script asks for (see the top of this file).
ldl_setup() {
    local qemu="" defmt="" components=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --qemu) qemu=1 ;;
            --defmt-print) defmt=1 ;;
            --components)
                shift
                while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do
                    components+=("$1")
                    shift
                done
                continue
                ;;
            *) ldl_fail "ldl_setup: unknown option $1" || return 1 ;;
        esac
        shift
    done
    # (The ${a[@]+...} form: bash before 4.4 calls an empty array unbound under set -u.)
    ldl_setup_rust ${components[@]+"${components[@]}"} || return 1
    if [ -n "$qemu" ]; then ldl_setup_qemu || return 1; fi
    if [ -n "$defmt" ]; then ldl_setup_defmt_print || return 1; fi
}
