//! Generates the linker script `memory.x` and the Rust constants of the board layer
//! (`board_config.rs`) in OUT_DIR, both from `boards.toml`, for the board chosen by the
//! `board-*` cargo feature. Nothing else describes the memory layout.

use std::{env, fmt::Write as _, fs, path::PathBuf};

#[derive(Clone, Copy)]
struct Region {
    origin: u64,
    size: u64,
}

impl Region {
    fn end(&self) -> u64 {
        self.origin + self.size
    }
    fn overlaps(&self, other: &Region) -> bool {
        self.origin < other.end() && other.origin < self.end()
    }
    fn contains(&self, other: &Region) -> bool {
        other.origin >= self.origin && other.end() <= self.end()
    }
}

fn int(t: &toml::Table, board: &str, key: &str) -> u64 {
    match t.get(key).and_then(|v| v.as_integer()) {
        Some(v) if v >= 0 && v <= u32::MAX as i64 => v as u64,
        _ => fail(&format!(
            "boards.toml [boards.{board}]: `{key}` must be an integer in 0..=0xFFFF_FFFF"
        )),
    }
}

fn string(t: &toml::Table, board: &str, key: &str) -> String {
    match t.get(key).and_then(|v| v.as_str()) {
        Some(s) => s.to_string(),
        None => fail(&format!("boards.toml [boards.{board}]: `{key}` must be a string")),
    }
}

fn region(t: &toml::Table, board: &str, key: &str) -> Region {
    let Some(r) = t.get(key).and_then(|v| v.as_table()) else {
        fail(&format!("boards.toml [boards.{board}]: `{key}` must be a table {{ origin, size }}"))
    };
    let origin = match r.get("origin").and_then(|v| v.as_integer()) {
        Some(v) if v >= 0 => v as u64,
        _ => fail(&format!(
            "boards.toml [boards.{board}]: `{key}.origin` must be a non-negative integer"
        )),
    };
    let size = match r.get("size").and_then(|v| v.as_integer()) {
        Some(v) if v > 0 => v as u64,
        _ => fail(&format!("boards.toml [boards.{board}]: `{key}.size` must be a positive integer")),
    };
    if origin + size > 1 << 32 {
        fail(&format!("boards.toml [boards.{board}]: `{key}` ends past 4 GiB"));
    }
    Region { origin, size }
}

/// `sectors = [[count, size], ...]`, or `erase` throughout the flash.
fn sectors(t: &toml::Table, board: &str, flash: Region, erase: u64) -> Vec<(u64, u64)> {
    let Some(v) = t.get("sectors") else {
        if erase == 0 || !flash.size.is_multiple_of(erase) {
            fail(&format!("boards.toml [boards.{board}]: erase_size must divide the flash size"));
        }
        return vec![(flash.size / erase, erase)];
    };
    let Some(list) = v.as_array() else {
        fail(&format!("boards.toml [boards.{board}]: `sectors` must be a list of [count, size]"))
    };
    list.iter()
        .map(|e| {
            let pair: Option<Vec<u64>> = e.as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_integer())
                    .filter(|&x| x > 0)
                    .map(|x| x as u64)
                    .collect()
            });
            match pair.as_deref() {
                Some([c, z]) => (*c, *z),
                _ => fail(&format!(
                    "boards.toml [boards.{board}]: each sector entry is [count, size], both positive"
                )),
            }
        })
        .collect()
}

/// `sizes = { inputs, width, shift, outputs, rank, classes, images }`.
fn sizes(t: &toml::Table, board: &str) -> [u64; 7] {
    let Some(s) = t.get("sizes").and_then(|v| v.as_table()) else {
        fail(&format!("boards.toml [boards.{board}]: `sizes` must be a table"))
    };
    let keys = ["inputs", "width", "shift", "outputs", "rank", "classes", "images"];
    let mut out = [0u64; 7];
    for (o, k) in out.iter_mut().zip(keys) {
        *o = int(s, board, k);
    }
    let [inputs, width, shift, _, rank, classes, images] = out;
    if inputs == 0 || width == 0 || !inputs.is_multiple_of(width) || rank == 0 || classes == 0 || images == 0 {
        fail(&format!(
            "boards.toml [boards.{board}].sizes: inputs a multiple of width, rank, classes and images >= 1"
        ));
    }
    if shift >= width || shift >= inputs / width || shift > 3 {
        fail(&format!(
            "boards.toml [boards.{board}].sizes: shift must be below the image's width and height, and at most 3"
        ));
    }
    out
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn main() {
    println!("cargo:rerun-if-changed=boards.toml");
    println!("cargo:rerun-if-changed=build.rs");

    // Which board: exactly one `board-*` feature.
    let boards: Vec<String> = env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_BOARD_").map(|b| b.to_lowercase().replace('_', "-")))
        .collect();
    let key = match boards.as_slice() {
        [one] => one.clone(),
        [] => fail("no board selected: enable exactly one `board-*` feature (default: board-qemu)"),
        many => fail(&format!(
            "several boards selected ({many:?}): use --no-default-features --features board-<name>"
        )),
    };

    let text = fs::read_to_string("boards.toml").unwrap_or_else(|e| fail(&format!("boards.toml: {e}")));
    let doc: toml::Table = text.parse().unwrap_or_else(|e| fail(&format!("boards.toml: {e}")));
    let Some(b) = doc
        .get("boards")
        .and_then(|v| v.as_table())
        .and_then(|t| t.get(&key))
        .and_then(|v| v.as_table())
    else {
        fail(&format!("boards.toml has no [boards.{key}] table for feature board-{key}"))
    };

    let name = string(b, &key, "name");
    let target = string(b, &key, "target");
    let flash = region(b, &key, "flash");
    let program = region(b, &key, "program");
    let model = region(b, &key, "model");
    let store = region(b, &key, "store");
    let ram = region(b, &key, "ram");
    let erase = int(b, &key, "erase_size");
    let write = int(b, &key, "write_size");
    let sectors = sectors(b, &key, flash, erase);
    let sizes = sizes(b, &key);

    // Sanity checks, so that a wrong table fails the build rather than the device.
    let named = [("program", program), ("model", model), ("store", store)];
    for (n, r) in named {
        if !flash.contains(&r) {
            fail(&format!("boards.toml [boards.{key}]: `{n}` is not inside `flash`"));
        }
    }
    for (i, (n1, r1)) in named.iter().enumerate() {
        for (n2, r2) in named.iter().skip(i + 1) {
            if r1.overlaps(r2) {
                fail(&format!("boards.toml [boards.{key}]: `{n1}` and `{n2}` overlap"));
            }
        }
    }
    if erase == 0 || write == 0 || !erase.is_multiple_of(write) {
        fail(&format!("boards.toml [boards.{key}]: write_size must divide erase_size"));
    }
    // Sector boundaries of the flash, from its origin.
    let mut bounds = vec![flash.origin];
    for &(count, size) in &sectors {
        for _ in 0..count {
            let last = *bounds.last().unwrap_or(&flash.origin);
            bounds.push(last + size);
        }
    }
    if bounds.last() != Some(&flash.end()) {
        fail(&format!("boards.toml [boards.{key}]: `sectors` must cover `flash` exactly"));
    }
    for (n, r) in [("model", model), ("store", store)] {
        if !bounds.contains(&r.origin) || !bounds.contains(&r.end()) {
            fail(&format!(
                "boards.toml [boards.{key}]: `{n}` must start and end on a sector boundary"
            ));
        }
    }
    let store_sectors: Vec<u64> = bounds
        .windows(2)
        .filter(|w| w[0] >= store.origin && w[1] <= store.end())
        .map(|w| w[1] - w[0])
        .collect();
    if store_sectors.iter().any(|&s| s != erase) {
        fail(&format!(
            "boards.toml [boards.{key}]: the store's sectors must all be erase_size ({erase:#x})"
        ));
    }
    if store_sectors.len() < 2 {
        fail(&format!("boards.toml [boards.{key}]: `store` needs at least 2 erase sectors"));
    }

    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|e| fail(&format!("OUT_DIR: {e}"))));

    // memory.x, included by cortex-m-rt's link.x.
    let mut mem = String::new();
    let _ = writeln!(
        mem,
        "/* Generated by build.rs from boards.toml [boards.{key}]: {name}. Do not edit. */"
    );
    let _ = writeln!(mem, "MEMORY\n{{");
    for (n, r) in [("FLASH", program), ("MODEL", model), ("STORE", store), ("RAM", ram)] {
        let _ = writeln!(mem, "  {n:<5} : ORIGIN = {:#010X}, LENGTH = {:#010X}", r.origin, r.size);
    }
    let _ = writeln!(mem, "}}\n");
    let _ = writeln!(mem, "_model_start = ORIGIN(MODEL);");
    let _ = writeln!(mem, "_model_end = ORIGIN(MODEL) + LENGTH(MODEL);");
    let _ = writeln!(mem, "_store_start = ORIGIN(STORE);");
    let _ = writeln!(mem, "_store_end = ORIGIN(STORE) + LENGTH(STORE);");
    fs::write(out.join("memory.x"), mem).unwrap_or_else(|e| fail(&format!("memory.x: {e}")));

    // Constants for the board layer (board::config).
    let mut rs = String::new();
    let _ = writeln!(rs, "// Generated by build.rs from boards.toml [boards.{key}]. Do not edit.");
    let _ = writeln!(rs, "/// Key of the board in boards.toml (the cargo feature without `board-`).");
    let _ = writeln!(rs, "pub const KEY: &str = {key:?};");
    let _ = writeln!(rs, "/// Human-readable board name.");
    let _ = writeln!(rs, "pub const NAME: &str = {name:?};");
    let _ = writeln!(rs, "/// How the board is run (`qemu:<machine>` or `probe-rs:<chip>`).");
    let _ = writeln!(rs, "pub const TARGET: &str = {target:?};");
    for (n, r, doc) in [
        ("FLASH", flash, "The device's whole code flash."),
        ("PROGRAM", program, "The part of flash the firmware image may use (memory.x FLASH)."),
        ("MODEL", model, "The model region (memory.x MODEL)."),
        ("STORE", store, "The enrolled-class store region (memory.x STORE)."),
        ("RAM", ram, "RAM."),
    ] {
        let _ = writeln!(rs, "/// {doc}");
        let _ = writeln!(
            rs,
            "pub const {n}: super::Region = super::Region {{ origin: {:#010X}, size: {:#010X} }};",
            r.origin, r.size
        );
    }
    let _ = writeln!(rs, "/// Bytes of one erase sector/page of the store.");
    let _ = writeln!(rs, "pub const ERASE_SIZE: usize = {erase};");
    let _ = writeln!(rs, "/// Bytes of the smallest store write.");
    let _ = writeln!(rs, "pub const WRITE_SIZE: usize = {write};");
    let _ = writeln!(rs, "/// The flash's erase sectors from its origin: (count, bytes) in order.");
    let list: Vec<String> = sectors.iter().map(|(c, z)| format!("({c}, {z:#x})")).collect();
    let _ = writeln!(rs, "pub const SECTORS: &[(u32, u32)] = &[{}];", list.join(", "));
    let _ = writeln!(rs, "/// What the firmware is built for (`[boards.{key}.sizes]`).");
    let _ = writeln!(
        rs,
        "pub const SIZES: ldl_core::budget::Sizes = ldl_core::budget::Sizes {{ inputs: {}, width: {}, shift: {}, outputs: {}, rank: {}, classes: {}, images: {} }};",
        sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]
    );
    fs::write(out.join("board_config.rs"), rs).unwrap_or_else(|e| fail(&format!("board_config.rs: {e}")));

    // Link arguments only for the bare-metal target (a host `cargo test --lib` links normally).
    let target_triple = env::var("TARGET").unwrap_or_default();
    if target_triple.starts_with("thumb") {
        println!("cargo:rustc-link-search={}", out.display());
        // Every binary and test of this package links defmt, so both get defmt.x.
        for kind in ["bins", "tests"] {
            println!("cargo:rustc-link-arg-{kind}=-Tlink.x");
            println!("cargo:rustc-link-arg-{kind}=-Tdefmt.x");
        }
    }
}
