//! Byte counts as people write them (`256K`, `4G`) and read them (`163.8 KiB`).

/// A human-readable byte count (binary units).
pub fn human_bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let x = n as f64;
    if x < K {
        format!("{n} B")
    } else if x < K * K {
        format!("{:.1} KiB", x / K)
    } else {
        format!("{:.2} MiB", x / K / K)
    }
}

/// Parses a size: bytes, or with a binary suffix `K`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`
/// (1K = 1024); `0x` hex is accepted.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).map_err(|_| format!("{s:?} is not a size (e.g. 262144, 256K, 1M, 0x40000)"));
    }
    let (num, mult) = [
        ("kib", 1u64 << 10),
        ("kb", 1 << 10),
        ("k", 1 << 10),
        ("mib", 1 << 20),
        ("mb", 1 << 20),
        ("m", 1 << 20),
        ("gib", 1 << 30),
        ("gb", 1 << 30),
        ("g", 1 << 30),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.trim().to_string(), *m)))
    .unwrap_or((lower.clone(), 1));
    let v = if num.contains('.') {
        num.parse::<f64>()
            .ok()
            .map(|f| f * mult as f64)
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f.round() as u64)
    } else {
        num.parse::<u64>().ok().and_then(|v| v.checked_mul(mult))
    };
    match v {
        Some(v) => Ok(v),
        None => Err(format!("{s:?} is not a size (e.g. 262144, 256K, 1M, 0x40000)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256K"), Ok(256 * 1024));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("640KiB"), Ok(640 * 1024));
        assert_eq!(parse_size("0x40000"), Ok(0x40000));
        assert_eq!(parse_size("0xAB"), Ok(0xab));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
    }
}
