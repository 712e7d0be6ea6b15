//! PNG decoding for the loaders and `ldl predict`, with the image's size checked from its
//! header before any pixel buffer is allocated.

use std::io::Cursor;

/// Most pixels of one image: 16,777,216 (4096 x 4096). Omniglot's drawings have 11,025
/// (105 x 105) and the models take 784 (28 x 28); a 20000 x 20000 PNG of a few hundred
/// bytes would otherwise make the decoder allocate 400 MB to 1.6 GB.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 24;

/// Most bytes of one image file (on disk or inside a zip archive): 128 MiB, more than an
/// uncompressed PNG of [`MAX_IMAGE_PIXELS`] 8-bit RGBA pixels takes (64 MiB).
pub const MAX_IMAGE_FILE_BYTES: u64 = 128 << 20;

/// A decoded PNG, 8 bits per sample: `height` rows of `line_size` bytes, each starting with
/// `width` pixels of `channels` samples (grey, grey + alpha, RGB or RGBA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Png {
    /// Width in pixels (at least 1).
    pub width: usize,
    /// Height in pixels (at least 1).
    pub height: usize,
    /// Samples per pixel: 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA).
    pub channels: usize,
    line_size: usize,
    buf: Vec<u8>,
}

impl Png {
    /// The pixels, row by row, each as its `channels` samples.
    pub fn pixels(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let used = self.width * self.channels;
        self.buf
            .chunks_exact(self.line_size)
            .take(self.height)
            .flat_map(move |row| row[..used].chunks_exact(self.channels))
    }
}

/// Decodes a PNG of any colour type and bit depth to 8-bit samples (palettes expanded).
/// Refuses, from the header alone, an image of more than [`MAX_IMAGE_PIXELS`] pixels or
/// with no pixel; the error says why, for a message that also names the file.
pub fn decode_png(bytes: &[u8]) -> Result<Png, String> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let (w, h) = {
        let info = decoder.read_header_info().map_err(|e| format!("invalid PNG: {e}"))?;
        (info.width, info.height)
    };
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(format!(
            "the PNG header declares {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS} (4096x4096) an image may have"
        ));
    }
    if pixels == 0 {
        return Err("empty image".into());
    }
    let mut reader = decoder.read_info().map_err(|e| format!("invalid PNG: {e}"))?;
    let len = reader.output_buffer_size().ok_or("PNG too large")?;
    let mut buf = vec![0u8; len];
    let info = reader.next_frame(&mut buf).map_err(|e| format!("invalid PNG data: {e}"))?;
    if info.bit_depth != png::BitDepth::Eight {
        return Err(format!("unsupported bit depth {:?} after expansion", info.bit_depth));
    }
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("palette not expanded".into()),
    };
    Ok(Png {
        width: info.width as usize,
        height: info.height as usize,
        channels,
        line_size: info.line_size,
        buf,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PNG chunk: length, type, data, CRC-32 of type and data.
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }

    /// A grey 8-bit PNG whose header says `w x h` but whose data holds only its first
    /// `rows` rows (of zeros): a few hundred bytes that claim any size.
    pub(crate) fn png_claiming(w: u32, h: u32, rows: usize) -> Vec<u8> {
        use std::io::Write;
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8 bits, grey, deflate, adaptive, no interlace
        chunk(&mut out, b"IHDR", &ihdr);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![0u8; rows * (w as usize + 1)]).unwrap();
        chunk(&mut out, b"IDAT", &z.finish().unwrap());
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn a_huge_png_is_refused_from_its_header() {
        let bytes = png_claiming(20000, 20000, 4);
        assert!(bytes.len() < 1000, "{}", bytes.len());
        let e = decode_png(&bytes).unwrap_err();
        assert!(e.contains("20000x20000") && e.contains("16777216"), "{e}");
        // Just within the limit, the same trick only fails on the missing rows.
        let e = decode_png(&png_claiming(4096, 4096, 4)).unwrap_err();
        assert!(!e.contains("16777216"), "{e}");
        let e = decode_png(&png_claiming(4097, 4096, 4)).unwrap_err();
        assert!(e.contains("4097x4096"), "{e}");
    }

    #[test]
    fn small_pngs_decode_with_their_channels() {
        let ok = png_claiming(3, 2, 2);
        let p = decode_png(&ok).unwrap();
        assert_eq!((p.width, p.height, p.channels), (3, 2, 1));
        assert_eq!(p.pixels().count(), 6);
        assert!(p.pixels().all(|px| px == [0]));
        assert!(decode_png(b"\x89PNG not really").is_err());
    }
}
