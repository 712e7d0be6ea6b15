#!/usr/bin/env bash
# Every check of the project, in one command: formatting, lints, the core built for the
# Cortex-M with no allocator, every host test, and the firmware under QEMU.
# The README shows this command and .ci/run calls it. Before building anything,
# scripts/setup.sh (shared with demo.sh and firmware/ci.sh) installs what a fresh machine
# lacks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { printf '\n### %s\n' "$*"; }

step "setup: toolchain (rust-toolchain.toml: 1.95.0, thumbv7em-none-eabihf, clippy, rustfmt, llvm-tools), qemu-system-arm, defmt-print"
source scripts/setup.sh
ldl_setup --qemu --defmt-print --components clippy rustfmt llvm-tools
rustup show active-toolchain
qemu-system-arm --version | head -1
defmt-print --version

step "format"
cargo fmt --all --check
(cd firmware && cargo fmt --check)

step "lints (host, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p ldl-core --features parallel --all-targets -- -D warnings

step "core for thumbv7em-none-eabihf: no_std, no alloc (and with defmt)"
cargo clippy -p ldl-core --target thumbv7em-none-eabihf -- -D warnings
cargo build -p ldl-core --target thumbv7em-none-eabihf --release
cargo build -p ldl-core --target thumbv7em-none-eabihf --release --features defmt

step "docs (missing docs are errors in the core)"
RUSTDOCFLAGS="-D warnings" cargo doc -p ldl-core --no-deps --features std

step "firmware build (QEMU board; the cross-crate tests in tests/ boot it)"
(cd firmware && cargo build --release)

step "host tests"
cargo test --workspace
# The core once more with its parallel paths (what the trainer runs).
cargo test -p ldl-core --features parallel

step "fuzz (every target 30 s from its seed corpus; core/fuzz/README.md)"
scripts/fuzz.sh 30

step "firmware (QEMU)"
firmware/ci.sh
