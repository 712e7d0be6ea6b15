//! LDL edge-classifier firmware.
//!
//! * [`board`]: the platform (UART, button, store flash, exit, memory regions) for the board
//!   chosen by a `board-*` cargo feature; memory layout from `boards.toml`. Bare metal only.
//! * [`app`]: the application logic, generic over `embedded-io` / `embedded-hal` /
//!   `embedded-storage` traits and free of board code and logging, so it is unit-tested on the
//!   host: `cargo test --lib --target x86_64-unknown-linux-gnu`.
//!
//! Nothing here may panic: no `unwrap`, no indexing that can go out of bounds (the lints
//! below enforce it); every failure is a `Result`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod app;
pub mod device;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(target_os = "none")]
pub mod board;
