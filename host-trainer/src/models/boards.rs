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
    /// The flash's erase sectors from its origin, `[count, size]` in order (default: the
    /// erase size throughout).
    #[serde(default)]
    pub sectors: Vec<[u64; 2]>,
    /// What the firmware is built for.
    pub sizes: BoardSizes,
}

/// `[boards.<key>.sizes]`: what the board's firmware is built for
/// (`ldl_core::budget::Sizes`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct BoardSizes {
    /// Input dimension of its models.
    pub inputs: usize,
    /// Image width (for shift augmentation).
    pub width: usize,
    /// Largest enrollment shift augmentation.
    pub shift: usize,
    /// Widest linear target an enrolled class may use.
    pub outputs: usize,
    /// Directions kept per enrolled class.
    pub rank: usize,
    /// Enrolled classes the store keeps.
    pub classes: usize,
    /// Images one enrollment takes.
    pub images: usize,
}

impl BoardSizes {
    /// The core's form, for its budget formulas.
    pub fn core(&self) -> ldl_core::budget::Sizes {
        ldl_core::budget::Sizes {
            inputs: self.inputs,
            width: self.width,
            shift: self.shift,
            outputs: self.outputs,
            rank: self.rank,
            classes: self.classes,
            images: self.images,
        }
    }
}

impl Board {
    /// The QEMU machine that emulates the board, if it is one (`qemu:<machine>`).
    pub fn qemu_machine(&self) -> Option<&str> {
        self.target.strip_prefix("qemu:")
    }
    /// The probe-rs chip name of a real board (`probe-rs:<chip>`).
    pub fn chip(&self) -> Option<&str> {
        self.target.strip_prefix("probe-rs:")
    }
}

#[derive(Deserialize)]
struct File {
    boards: BTreeMap<String, Board>,
}

/// Every board, by key (`qemu`, `stm32f405`, `nrf52840dk`).
pub fn boards() -> Result<BTreeMap<String, Board>> {
    let f: File = toml::from_str(BOARDS_TOML).context(crate::errors::Internal("firmware/boards.toml (compiled in) does not parse"))?;
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
    fn boards_toml_has_every_board() {
        let nrf = board("nrf52840dk").unwrap();
        assert_eq!(nrf.model.size, 384 << 10);
        assert_eq!(nrf.ram.size, 256 * 1024);
        assert_eq!(nrf.chip(), Some("nRF52840_xxAA"));
        let q = board("qemu").unwrap();
        assert_eq!(q.model.size, 2 << 20);
        assert_eq!(q.qemu_machine(), Some("mps2-an386"));
        let st = board("stm32f405").unwrap();
        assert_eq!(st.qemu_machine(), Some("netduinoplus2"));
        assert_eq!((st.flash.origin, st.flash.size, st.ram.size), (0x0800_0000, 1 << 20, 128 << 10));
        assert_eq!(st.sectors, [[4, 0x4000], [1, 0x1_0000], [7, 0x2_0000]]);
        // Every board keeps ten enrolled classes of five images at least, and two store
        // slots of them fit its STORE region (the firmware asserts it at build time too).
        for b in [&nrf, &q, &st] {
            let s = b.sizes.core();
            assert!(s.classes >= 10 && s.images >= 5, "{}", b.name);
            assert!(2 * s.slot_bytes(b.erase_size as usize) as u64 <= b.store.size, "{}", b.name);
            assert!(b.program.size + b.model.size + b.store.size <= b.flash.size, "{}", b.name);
        }
        let e = board("esp32").unwrap_err().to_string();
        assert!(e.contains("nrf52840dk") && e.contains("qemu") && e.contains("stm32f405"), "{e}");
    }
}
