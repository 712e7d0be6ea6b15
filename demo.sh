#!/usr/bin/env bash
# The main job on a fresh machine: the whole product in one run (`ldl demo`).
#
# Trains a model on MNIST digits 0-7 on the host, loads it into the MODEL region of an
# emulated STM32F405 (QEMU netduinoplus2: the part's 1 MiB of flash, 128 KiB of RAM),
# classifies test images on the device, enrolls 8 and 9 on the device from five images
# each, classifies again, resets the device and shows the new classes are kept.
# Installs qemu-system-arm when it is missing (Debian/Ubuntu); rustup installs the
# toolchain and the Cortex-M target from rust-toolchain.toml. Arguments go to `ldl demo`
# (e.g. --board qemu for the 4 MiB mps2-an386, --chip nRF52840_xxAA --port /dev/ttyACM0
# for a real board; --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "demo.sh: installing qemu-system-arm (the emulated Cortex-M4F boards)" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq qemu-system-arm >/dev/null
fi
exec cargo run --release -q -p ldl-host --bin ldl -- demo "$@"
