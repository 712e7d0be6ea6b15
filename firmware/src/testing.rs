//! Host test doubles of the serial link and the button (feature `testing`), for the device's
//! unit tests and its fuzz target (`fuzz/`).

extern crate alloc;
use alloc::vec::Vec;
use core::convert::Infallible;
use embedded_hal::digital::{ErrorType, InputPin};
use embedded_io::{Read, ReadReady, Write};

/// A serial link over memory: reads come from `input`, at most `chunk` bytes at a time (as
/// from a UART's FIFO; 0 means 7), then report the end of the stream (0 bytes, which ends
/// `Device::serve`); writes go to `output`.
#[derive(Debug, Default)]
pub struct Duplex {
    /// What the host sends.
    pub input: Vec<u8>,
    /// How much of it was read.
    pub pos: usize,
    /// What the device wrote.
    pub output: Vec<u8>,
    /// Most bytes per read.
    pub chunk: usize,
}

impl Duplex {
    /// A link that delivers `input`.
    pub fn new(input: Vec<u8>) -> Self {
        Duplex {
            input,
            ..Default::default()
        }
    }
}

impl embedded_io::ErrorType for Duplex {
    type Error = Infallible;
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let chunk = if self.chunk == 0 { 7 } else { self.chunk };
        let rest = self.input.get(self.pos..).unwrap_or(&[]);
        let n = rest.len().min(buf.len()).min(chunk);
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

impl ReadReady for Duplex {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// An active-low button held down (`true`) or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pin(pub bool);

impl ErrorType for Pin {
    type Error = Infallible;
}

impl InputPin for Pin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0)
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(self.0)
    }
}
