//! Screen captures of an X display as RGB pixels, decoded from `xwd` output,
//! and helpers to compare colours.

use anyhow::{Context, Result, bail, ensure};

/// An RGB image of a whole X screen, 3 bytes per pixel, rows top to bottom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Screenshot {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Screenshot {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Pixel data, 3 bytes (red, green, blue) per pixel, row by row.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// Returns the colour at (`x`, `y`), or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let offset = (y as usize * self.width as usize + x as usize) * 3;
        let bytes = self.rgb.get(offset..offset + 3)?;
        Some([bytes[0], bytes[1], bytes[2]])
    }

    /// Counts the pixels within `tolerance` of `color` on every channel.
    pub fn count_near(&self, color: [u8; 3], tolerance: u8) -> usize {
        self.rgb
            .chunks_exact(3)
            .filter(|pixel| colors_near([pixel[0], pixel[1], pixel[2]], color, tolerance))
            .count()
    }

    /// Returns true if any pixel differs from `color`.
    pub fn has_pixel_other_than(&self, color: [u8; 3]) -> bool {
        self.rgb.chunks_exact(3).any(|pixel| pixel != color)
    }

    /// Decodes an XWD file as written by `xwd -root` for a TrueColor visual
    /// with 24 or 32 bits per pixel, the format Xvfb and Xorg use at depth 24.
    pub fn from_xwd(data: &[u8]) -> Result<Self> {
        XwdHeader::parse(data)?.decode(data)
    }
}

/// Returns true if an XWD image (see [`Screenshot::from_xwd`]) has any pixel
/// that is not black. Stops at the first such pixel and compares 8 bytes at a
/// time, because it runs in a polling loop, often in unoptimised test builds.
pub(crate) fn xwd_has_non_black_pixel(data: &[u8]) -> Result<bool> {
    let header = XwdHeader::parse(data)?;
    let (pixels, bytes_per_pixel) = header.pixel_rows(data)?;
    let row_bytes = header.width as usize * bytes_per_pixel;

    // A mask over one row's bytes that keeps the colour bits of each pixel
    // and drops the unused byte of 32-bit pixels.
    let color_bits = header.masks.iter().fold(0u32, |bits, mask| bits | mask);
    let pixel_mask: Vec<u8> = (0..bytes_per_pixel)
        .map(|index| {
            let shift = if header.least_significant_byte_first {
                8 * index
            } else {
                8 * (bytes_per_pixel - 1 - index)
            };
            (color_bits >> shift) as u8
        })
        .collect();
    let row_mask: Vec<u8> = pixel_mask.iter().copied().cycle().take(row_bytes).collect();

    Ok(pixels
        .chunks_exact(header.bytes_per_line)
        .any(|row| any_masked_bit_set(&row[..row_bytes], &row_mask)))
}

/// Returns true if `bytes & mask` has any bit set; both have the same length.
fn any_masked_bit_set(bytes: &[u8], mask: &[u8]) -> bool {
    let words = bytes.chunks_exact(8).zip(mask.chunks_exact(8));
    for (word, mask_word) in words {
        let word = u64::from_ne_bytes(word.try_into().unwrap_or_default());
        let mask_word = u64::from_ne_bytes(mask_word.try_into().unwrap_or_default());
        if word & mask_word != 0 {
            return true;
        }
    }
    let tail_start = bytes.len() - bytes.len() % 8;
    bytes[tail_start..]
        .iter()
        .zip(&mask[tail_start..])
        .any(|(byte, mask_byte)| byte & mask_byte != 0)
}

/// Returns true if each channel of `a` is within `tolerance` of `b`.
///
/// Codecs shift colours slightly: through the H.264 graphics pipeline of
/// FreeRDP 2.11, `#2266cc` arrives as `#2065c7`, so compare with about ±16.
pub fn colors_near(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= tolerance)
}

/// Parses `#rrggbb` (the `#` is optional) into RGB bytes.
pub fn parse_hex_color(text: &str) -> Result<[u8; 3]> {
    let hex = text.strip_prefix('#').unwrap_or(text);
    ensure!(
        hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "invalid colour {text:?}; expected #rrggbb"
    );
    let channel = |index: usize| u8::from_str_radix(&hex[index..index + 2], 16);
    Ok([channel(0)?, channel(2)?, channel(4)?])
}

/// The fields of an XWD header (X11's `XWDFileHeader`) that decoding needs.
/// The header is 25 big-endian 32-bit words followed by the window name.
struct XwdHeader {
    header_size: usize,
    pixmap_format: u32,
    width: u32,
    height: u32,
    least_significant_byte_first: bool,
    bits_per_pixel: u32,
    bytes_per_line: usize,
    masks: [u32; 3],
    color_count: usize,
}

/// `ZPixmap` in X11's image formats: pixels stored whole, not as bit planes.
const ZPIXMAP: u32 = 2;

/// Size of one `XWDColor` colormap entry, which sits between header and pixels.
const XWD_COLOR_SIZE: usize = 12;

impl XwdHeader {
    fn parse(data: &[u8]) -> Result<Self> {
        let word = |index: usize| -> Result<u32> {
            let bytes = data
                .get(index * 4..index * 4 + 4)
                .context("XWD data is shorter than its header")?;
            Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        };
        Ok(Self {
            header_size: word(0)? as usize,
            pixmap_format: word(2)?,
            width: word(4)?,
            height: word(5)?,
            least_significant_byte_first: word(7)? == 0,
            bits_per_pixel: word(11)?,
            bytes_per_line: word(12)? as usize,
            masks: [word(14)?, word(15)?, word(16)?],
            color_count: word(19)? as usize,
        })
    }

    /// Returns the pixel rows of `data` (each `bytes_per_line` long) and the
    /// number of bytes per pixel, after checking the format is supported.
    fn pixel_rows<'a>(&self, data: &'a [u8]) -> Result<(&'a [u8], usize)> {
        ensure!(
            self.pixmap_format == ZPIXMAP,
            "unsupported XWD pixmap format {}; expected ZPixmap",
            self.pixmap_format
        );
        let bytes_per_pixel = match self.bits_per_pixel {
            24 => 3,
            32 => 4,
            other => bail!("unsupported XWD bits per pixel {other}; expected 24 or 32"),
        };
        ensure!(
            self.masks.iter().all(|&mask| mask != 0),
            "XWD image has no colour masks; only TrueColor visuals are supported"
        );
        let width = self.width as usize;
        let height = self.height as usize;
        ensure!(
            width > 0 && height > 0,
            "invalid XWD header: empty {width}x{height} image"
        );
        ensure!(
            self.bytes_per_line >= width * bytes_per_pixel,
            "invalid XWD header: {} bytes per line for {width} pixels",
            self.bytes_per_line
        );
        let start = self.header_size + self.color_count * XWD_COLOR_SIZE;
        let end = start + self.bytes_per_line * height;
        let pixels = data.get(start..end).with_context(|| {
            format!(
                "XWD data has {} bytes; a {width}x{height} image needs {end}",
                data.len()
            )
        })?;
        Ok((pixels, bytes_per_pixel))
    }

    fn decode(&self, data: &[u8]) -> Result<Screenshot> {
        let (pixels, bytes_per_pixel) = self.pixel_rows(data)?;
        let width = self.width as usize;
        let height = self.height as usize;
        let mut rgb = Vec::with_capacity(width * height * 3);
        // Xvfb and Xorg at depth 24 on x86 store pixels as B, G, R, unused;
        // copying bytes is much faster than masking in unoptimised builds.
        let bgrx =
            bytes_per_pixel == 4 && self.least_significant_byte_first && self.masks == [0xff0000, 0x00ff00, 0x0000ff];
        for row in pixels.chunks_exact(self.bytes_per_line) {
            let row = &row[..width * bytes_per_pixel];
            if bgrx {
                for pixel in row.chunks_exact(4) {
                    rgb.extend_from_slice(&[pixel[2], pixel[1], pixel[0]]);
                }
                continue;
            }
            for pixel in row.chunks_exact(bytes_per_pixel) {
                let value = self.pixel_value(pixel);
                rgb.extend(self.masks.map(|mask| channel(value, mask)));
            }
        }
        Ok(Screenshot {
            width: self.width,
            height: self.height,
            rgb,
        })
    }

    fn pixel_value(&self, bytes: &[u8]) -> u32 {
        let fold = |value: u32, &byte: &u8| (value << 8) | u32::from(byte);
        if self.least_significant_byte_first {
            bytes.iter().rev().fold(0, fold)
        } else {
            bytes.iter().fold(0, fold)
        }
    }
}

/// Extracts the channel selected by `mask` from `value`, scaled to 8 bits.
fn channel(value: u32, mask: u32) -> u8 {
    let bits = mask.count_ones();
    let raw = (value & mask) >> mask.trailing_zeros();
    let scaled = if bits >= 8 {
        raw >> (bits - 8)
    } else {
        raw * 255 / ((1 << bits) - 1)
    };
    u8::try_from(scaled).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a 2x1 XWD image, 32 bits per pixel, least significant byte first.
    fn xwd_2x1(pixels: [u32; 2]) -> Vec<u8> {
        let name = b"root\0\0\0\0";
        let header_size = 100 + name.len() as u32;
        let mut words = [0u32; 25];
        words[0] = header_size;
        words[1] = 7;
        words[2] = ZPIXMAP;
        words[3] = 24;
        words[4] = 2;
        words[5] = 1;
        words[7] = 0;
        words[11] = 32;
        words[12] = 8;
        words[14] = 0xff0000;
        words[15] = 0x00ff00;
        words[16] = 0x0000ff;
        let mut data: Vec<u8> = words.iter().flat_map(|word| word.to_be_bytes()).collect();
        data.extend_from_slice(name);
        for pixel in pixels {
            data.extend_from_slice(&pixel.to_le_bytes());
        }
        data
    }

    #[test]
    fn xwd_decodes_true_color_pixels() -> Result<()> {
        let shot = Screenshot::from_xwd(&xwd_2x1([0x2266cc, 0xcc6622]))?;
        assert_eq!(shot.width(), 2);
        assert_eq!(shot.height(), 1);
        assert_eq!(shot.pixel(0, 0), Some([0x22, 0x66, 0xcc]));
        assert_eq!(shot.pixel(1, 0), Some([0xcc, 0x66, 0x22]));
        assert_eq!(shot.pixel(2, 0), None);
        Ok(())
    }

    #[test]
    fn xwd_decodes_most_significant_byte_first() -> Result<()> {
        let mut data = xwd_2x1([0, 0]);
        data[28..32].copy_from_slice(&1u32.to_be_bytes());
        let pixels = data.len() - 8;
        data[pixels..pixels + 4].copy_from_slice(&0x2266ccu32.to_be_bytes());
        let shot = Screenshot::from_xwd(&data)?;
        assert_eq!(shot.pixel(0, 0), Some([0x22, 0x66, 0xcc]));
        assert!(xwd_has_non_black_pixel(&data)?);
        Ok(())
    }

    #[test]
    fn xwd_black_check_finds_colored_pixel() -> Result<()> {
        assert!(!xwd_has_non_black_pixel(&xwd_2x1([0, 0]))?);
        assert!(!xwd_has_non_black_pixel(&xwd_2x1([0xff00_0000, 0]))?);
        assert!(xwd_has_non_black_pixel(&xwd_2x1([0, 0x000001]))?);
        Ok(())
    }

    #[test]
    fn xwd_rejects_truncated_data() {
        let data = xwd_2x1([0, 0]);
        assert!(Screenshot::from_xwd(&data[..data.len() - 1]).is_err());
    }

    #[test]
    fn hex_color_parses_with_and_without_hash() -> Result<()> {
        assert_eq!(parse_hex_color("#2266cc")?, [0x22, 0x66, 0xcc]);
        assert_eq!(parse_hex_color("CC6622")?, [0xcc, 0x66, 0x22]);
        assert!(parse_hex_color("#12345").is_err());
        Ok(())
    }

    #[test]
    fn colors_near_applies_tolerance() {
        assert!(colors_near([0x20, 0x65, 0xc7], [0x22, 0x66, 0xcc], 16));
        assert!(!colors_near([0x00, 0x66, 0xcc], [0x22, 0x66, 0xcc], 16));
    }
}
