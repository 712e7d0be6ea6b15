#!/usr/bin/env bash
# The main job on a fresh machine: the whole product in one run (`ldl demo`).
#
# Trains a model on MNIST digits 0-7 on the host, loads it into the MODEL region of an
# emulated STM32F405 (QEMU netduinoplus2: the part's 1 MiB of flash, 128 KiB of RAM),
# classifies test images on the device, enrolls 8 and 9 on the device from five images
# each, classifies again, resets the device and shows the new classes are kept.
# Before building anything, scripts/setup.sh (shared with test-all.sh) adds what the machine
# lacks: the Cortex-M target to the toolchain of rust-toolchain.toml, and qemu-system-arm
# (apt-get) unless a real board is given. Arguments go to `ldl demo` (e.g. --board qemu for
# the 4 MiB mps2-an386, --chip nRF52840_xxAA --port /dev/ttyACM0 for a real board; --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# A real board (--chip) needs no QEMU.
qemu="--qemu"
for a in "$@"; do
    case "$a" in --chip | --chip=*) qemu="" ;; esac
done
source scripts/setup.sh
ldl_setup $qemu
exec cargo run --release -q -p ldl-host --bin ldl -- demo "$@"
