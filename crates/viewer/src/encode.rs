//! Binary screen-update messages: a 10-byte header and an encoded RGBA rectangle.

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use rdp_proxy_core::Rect;

const KIND_RECT: u8 = 1;
const KIND_BATCH_END: u8 = 2;

/// Wire encoding of a rectangle's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// RGBA bytes compressed with zlib at the fastest level; lossless.
    ZlibRgba,
    /// PNG with fast compression; lossless.
    Png,
    /// JPEG at the given quality (1–100); lossy, alpha dropped.
    Jpeg(u8),
}

impl Encoding {
    fn wire_id(self) -> u8 {
        match self {
            Self::ZlibRgba => 0,
            Self::Png => 1,
            Self::Jpeg(_) => 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("pixel buffer has {actual} bytes, expected {expected}")]
    Size { expected: usize, actual: usize },
    #[error("image encoder failed: {0}")]
    Encoder(String),
}

/// Encodes one rectangle of RGBA pixels (`rect.width * rect.height * 4` bytes, row-major) into
/// `out`, replacing its contents.
pub fn encode_rect(rect: Rect, rgba: &[u8], encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let expected = usize::from(rect.width) * usize::from(rect.height) * 4;
    if rgba.len() != expected {
        return Err(EncodeError::Size {
            expected,
            actual: rgba.len(),
        });
    }
    out.clear();
    out.push(KIND_RECT);
    out.push(encoding.wire_id());
    for value in [rect.x, rect.y, rect.width, rect.height] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    match encoding {
        Encoding::ZlibRgba => encode_zlib(rgba, out),
        Encoding::Png => encode_png(rect, rgba, out),
        Encoding::Jpeg(quality) => encode_jpeg(rect, rgba, quality, out),
    }
}

/// The one-byte message that ends a batch of rectangles.
pub fn encode_batch_end() -> Vec<u8> {
    vec![KIND_BATCH_END]
}

fn encode_zlib(rgba: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut encoder = ZlibEncoder::new(out, Compression::fast());
    encoder
        .write_all(rgba)
        .map_err(|error| EncodeError::Encoder(error.to_string()))?;
    encoder
        .finish()
        .map_err(|error| EncodeError::Encoder(error.to_string()))?;
    Ok(())
}

fn encode_png(rect: Rect, rgba: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut encoder = png::Encoder::new(out, u32::from(rect.width), u32::from(rect.height));
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder
        .write_header()
        .map_err(|error| EncodeError::Encoder(error.to_string()))?;
    writer
        .write_image_data(rgba)
        .map_err(|error| EncodeError::Encoder(error.to_string()))?;
    writer.finish().map_err(|error| EncodeError::Encoder(error.to_string()))
}

fn encode_jpeg(rect: Rect, rgba: &[u8], quality: u8, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let encoder = jpeg_encoder::Encoder::new(out, quality.clamp(1, 100));
    encoder
        .encode(rgba, rect.width, rect.height, jpeg_encoder::ColorType::Rgba)
        .map_err(|error| EncodeError::Encoder(error.to_string()))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gradient(rect: Rect) -> Vec<u8> {
        let mut pixels = Vec::new();
        for y in 0..rect.height {
            for x in 0..rect.width {
                pixels.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, 0x80, 0xff]);
            }
        }
        pixels
    }

    #[test]
    fn zlib_round_trips() {
        let rect = Rect::new(5, 6, 31, 17);
        let pixels = gradient(rect);
        let mut out = Vec::new();
        encode_rect(rect, &pixels, Encoding::ZlibRgba, &mut out).unwrap();
        assert_eq!(&out[..10], &[1, 0, 0, 5, 0, 6, 0, 31, 0, 17]);
        let mut decoded = Vec::new();
        flate2::read::ZlibDecoder::new(&out[10..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, pixels);
    }

    #[test]
    fn png_and_jpeg_have_magic() {
        let rect = Rect::new(0, 0, 16, 16);
        let pixels = gradient(rect);
        let mut out = Vec::new();
        encode_rect(rect, &pixels, Encoding::Png, &mut out).unwrap();
        assert_eq!(&out[10..14], b"\x89PNG");
        encode_rect(rect, &pixels, Encoding::Jpeg(80), &mut out).unwrap();
        assert_eq!(out[1], 2);
        assert_eq!(&out[10..12], &[0xff, 0xd8]);
    }

    #[test]
    fn wrong_buffer_size_is_an_error() {
        let mut out = Vec::new();
        let error = encode_rect(Rect::new(0, 0, 2, 2), &[0; 15], Encoding::ZlibRgba, &mut out).unwrap_err();
        assert!(matches!(
            error,
            EncodeError::Size {
                expected: 16,
                actual: 15
            }
        ));
    }
}
