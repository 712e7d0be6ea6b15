//! The boards the firmware supports and their memory regions, from `firmware/boards.toml`
//! (read at compile time: the one place the layout is written down).

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `firmware/boards.toml`, as compiled in.
pub const BOARDS_TOML: &str = include_str!("../../../firmware/boards.toml");

/// One memory region.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct Region {
    /// Start address.
    pub origin: u64,
    /// Size in bytes.
    pub size: u64,
}

/// One board's layout (see the comments in `boards.toml`).
#[derive(Debug, Clone, Deserialize)]
pub struct Board {
    /// Human-readable name.
    pub name: String,
    /// How it is run.
    pub target: String,
    /// The whole code flash.
    pub flash: Region,
    /// The firmware image.
    pub program: Region,
    /// Where a model file is flashed.
    pub model: Region,
    /// The enrolled-class store.
    pub store: Region,
    /// RAM.
    pub ram: Region,
    /// Erase sector size.
    pub erase_size: u64,
    /// Smallest write.
    pub write_size: u64,
}

#[derive(Deserialize)]
struct File {
    boards: BTreeMap<String, Board>,
}

/// Every board, by key (`qemu`, `nrf52840dk`).
pub fn boards() -> Result<BTreeMap<String, Board>> {
    let f: File = toml::from_str(BOARDS_TOML).context("firmware/boards.toml (compiled in) does not parse")?;
    Ok(f.boards)
}

/// The board `key`, or an error listing the known ones.
pub fn board(key: &str) -> Result<Board> {
    let all = boards()?;
    let names: Vec<&str> = all.keys().map(String::as_str).collect();
    all.get(key)
        .cloned()
        .ok_or_else(|| anyhow!("unknown board {key:?} (firmware/boards.toml has: {})", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boards_toml_has_both_boards() {
        let nrf = board("nrf52840dk").unwrap();
        assert_eq!(nrf.model.size, 0xA0000);
        assert_eq!(nrf.ram.size, 256 * 1024);
        let q = board("qemu").unwrap();
        assert_eq!(q.model.size, 2 << 20);
        let e = board("esp32").unwrap_err().to_string();
        assert!(e.contains("nrf52840dk") && e.contains("qemu"), "{e}");
    }
}
