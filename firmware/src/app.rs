//! Application logic: board-independent, logging-free, host-testable.
//!
//! Everything here is generic over the traits the board layer implements
//! (`embedded_io::{Read, Write}` for the serial link, later `embedded_storage` NorFlash for the
//! class store), so it runs unchanged on the QEMU board, the nRF52840 DK and in host unit tests
//! (`cargo test --lib --target x86_64-unknown-linux-gnu`). The binary (`main.rs`) does the
//! logging. The LDL protocol loop (classify, enroll) will live here, on top of `ldl_core`.

use embedded_io::{Read, Write};

/// Byte that ends an echo session: ASCII EOT (Ctrl-D).
pub const EOT: u8 = 0x04;

/// How many leading bytes of the MODEL region [`model_state`] looks at.
pub const MODEL_PROBE_LEN: usize = 16;

/// What the MODEL region holds, judged from its first [`MODEL_PROBE_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// The region is erased (all 0xFF, as flash after an erase) or blank (all 0x00, as RAM
    /// that QEMU has not loaded anything into), or empty: no model.
    Erased,
    /// Something is there; whether it is a valid model is for `ldl_core` to decide.
    Present,
}

/// Classifies the MODEL region by its first bytes: [`ModelState::Erased`] when they are all
/// 0xFF or all 0x00.
pub fn model_state(region: &[u8]) -> ModelState {
    let head = region.get(..MODEL_PROBE_LEN).unwrap_or(region);
    if head.iter().all(|&b| b == 0xFF) || head.iter().all(|&b| b == 0x00) {
        ModelState::Erased
    } else {
        ModelState::Present
    }
}

/// Result of an [`echo_until_eot`] session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EchoStats {
    /// Bytes echoed back, the final EOT included.
    pub bytes: usize,
    /// Whether the session ended on EOT (`false`: the stream ended, `read` returned 0).
    pub got_eot: bool,
}

/// Echoes every byte read from `serial` back to it until an [`EOT`] byte (echoed too) or the
/// end of the stream. Bytes after the EOT in the same read are discarded. Proves the UART
/// works in both directions; blocks as long as the serial port's `read` blocks.
pub fn echo_until_eot<S: Read + Write>(serial: &mut S) -> Result<EchoStats, S::Error> {
    let mut buf = [0u8; 64];
    let mut stats = EchoStats::default();
    loop {
        let n = serial.read(&mut buf)?;
        let Some(chunk) = buf.get(..n) else {
            // A reader that claims more than the buffer: treat as end of stream.
            break;
        };
        if chunk.is_empty() {
            break;
        }
        let (out, eot) = match chunk.iter().position(|&b| b == EOT) {
            Some(i) => (chunk.get(..=i).unwrap_or(chunk), true),
            None => (chunk, false),
        };
        serial.write_all(out)?;
        stats.bytes = stats.bytes.saturating_add(out.len());
        if eot {
            stats.got_eot = true;
            break;
        }
    }
    serial.flush()?;
    Ok(stats)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use core::convert::Infallible;

    /// A serial port: reads come from `input` in chunks of at most `chunk` bytes, writes
    /// go to `output`.
    struct Duplex<'a> {
        input: &'a [u8],
        chunk: usize,
        output: Vec<u8>,
        flushed: bool,
    }

    impl embedded_io::ErrorType for Duplex<'_> {
        type Error = Infallible;
    }
    impl Read for Duplex<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            let n = self.input.len().min(buf.len()).min(self.chunk);
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input = &self.input[n..];
            Ok(n)
        }
    }
    impl Write for Duplex<'_> {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Infallible> {
            self.flushed = true;
            Ok(())
        }
    }

    fn duplex(input: &[u8], chunk: usize) -> Duplex<'_> {
        Duplex {
            input,
            chunk,
            output: Vec::new(),
            flushed: false,
        }
    }

    #[test]
    fn echoes_up_to_and_including_eot() {
        for chunk in [1, 3, 64, 1000] {
            let mut d = duplex(b"hello\x04ignored", chunk);
            let stats = echo_until_eot(&mut d).unwrap();
            assert_eq!(d.output, b"hello\x04", "chunk {chunk}");
            assert_eq!(stats, EchoStats { bytes: 6, got_eot: true });
            assert!(d.flushed);
        }
    }

    #[test]
    fn stops_at_end_of_stream() {
        let data: Vec<u8> = (0u8..=255).filter(|&b| b != EOT).cycle().take(1000).collect();
        let mut d = duplex(&data, 7);
        let stats = echo_until_eot(&mut d).unwrap();
        assert_eq!(d.output, data);
        assert_eq!(
            stats,
            EchoStats {
                bytes: 1000,
                got_eot: false
            }
        );
    }

    #[test]
    fn eot_alone() {
        let mut d = duplex(&[EOT, 1, 2], 64);
        assert_eq!(echo_until_eot(&mut d).unwrap(), EchoStats { bytes: 1, got_eot: true });
        assert_eq!(d.output, [EOT]);
    }

    #[test]
    fn model_state_of_regions() {
        assert_eq!(model_state(&[0xFF; 4096]), ModelState::Erased);
        assert_eq!(model_state(&[0x00; 4096]), ModelState::Erased);
        assert_eq!(model_state(&[]), ModelState::Erased);
        assert_eq!(model_state(&[0xFF; 3]), ModelState::Erased);
        let mut m = [0xFFu8; 4096];
        m[15] = 0x4C;
        assert_eq!(model_state(&m), ModelState::Present);
        // Only the head counts: a model starts at the region start.
        let mut m = [0xFFu8; 4096];
        m[100] = 1;
        assert_eq!(model_state(&m), ModelState::Erased);
        assert_eq!(model_state(b"LDL1 model bytes..."), ModelState::Present);
    }

    /// Cross-platform determinism of `ldl_core::Rng`: the same constants are checked on the
    /// target under QEMU (tests/determinism.rs).
    #[test]
    fn ldl_core_rng_matches_target() {
        let mut r = ldl_core::Rng::new(1);
        assert_eq!(r.next_u32(), 0x7FF7_8DE4);
        assert_eq!(r.next_u32(), 0x9A17_0265);
        assert_eq!(ldl_core::Rng::new(2019).next_u32(), 0xF61C_044E);
        // Box-Muller through libm (f64 log, sqrt, cos): bit-identical on both.
        assert_eq!(ldl_core::Rng::new(7).normal().to_bits(), 0xBEA1_016B);
    }
}
