//! A minimal X11 client over the display's Unix socket. It reads screen regions with the core
//! `GetImage` request, so a region can be polled every millisecond or two, where spawning `xwd`
//! or ImageMagick for each capture takes tens of milliseconds at 1920x1080. It presses keys
//! with the XTEST extension's `FakeInput`, the request `xdotool` sends, without starting a
//! process.
//!
//! Only what the benchmark needs is implemented: a connection without authorisation (Xvfb
//! started without `-auth` accepts local clients), the root window of the first screen,
//! `GetImage` in `ZPixmap` format, `GetKeyboardMapping`, `QueryExtension` and `FakeInput` key
//! events. Requests and replies are little-endian, and every request that has a reply waits
//! for it, so replies arrive in request order.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result, bail, ensure};

/// Major opcode of `GetImage` (X11 protocol, chapter 9).
const GET_IMAGE: u8 = 73;
/// `format` value of `GetImage` for one pixel value per pixel.
const Z_PIXMAP: u8 = 2;
/// Major opcode of `QueryExtension`.
const QUERY_EXTENSION: u8 = 98;
/// Major opcode of `GetKeyboardMapping`.
const GET_KEYBOARD_MAPPING: u8 = 101;
/// Minor opcode of XTEST's `FakeInput`.
const XTEST_FAKE_INPUT: u8 = 2;
/// Event types of `FakeInput`.
const KEY_PRESS: u8 = 2;
const KEY_RELEASE: u8 = 3;

/// X keysyms (X11 `keysymdef.h`).
pub const KEYSYM_X: u32 = 0x78;
pub const KEYSYM_BACKSPACE: u32 = 0xff08;

/// A rectangle on a display, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

/// One connection to an X display.
pub struct XConnection {
    stream: UnixStream,
    root: u32,
    min_keycode: u8,
    max_keycode: u8,
}

impl XConnection {
    /// Connects to display `:number` through `/tmp/.X11-unix/X<number>`.
    pub fn connect(number: u32) -> Result<Self> {
        let path = format!("/tmp/.X11-unix/X{number}");
        let mut stream = UnixStream::connect(&path).with_context(|| format!("failed to connect to {path}"))?;
        // Byte order 'l' (little-endian), protocol 11.0, no authorisation name or data.
        stream.write_all(&[b'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0])?;
        let mut head = [0u8; 8];
        stream.read_exact(&mut head)?;
        let extra_len = usize::from(u16::from_le_bytes([head[6], head[7]])) * 4;
        let mut extra = vec![0u8; extra_len];
        stream.read_exact(&mut extra)?;
        match head[0] {
            1 => {}
            0 => {
                let reason_len = usize::from(head[1]).min(extra.len());
                bail!(
                    "X display :{number} rejected the connection: {}",
                    String::from_utf8_lossy(&extra[..reason_len])
                );
            }
            other => bail!("X display :{number} requires authorisation (setup status {other})"),
        }
        let root = parse_root_window(&extra).with_context(|| format!("invalid connection setup from :{number}"))?;
        Ok(Self {
            stream,
            root,
            min_keycode: extra[26],
            max_keycode: extra[27],
        })
    }

    /// Returns the raw pixel values of `region` of the root window (4 bytes per pixel at depth 24).
    pub fn get_image(&mut self, region: Region) -> Result<Vec<u8>> {
        let mut request = [0u8; 20];
        request[0] = GET_IMAGE;
        request[1] = Z_PIXMAP;
        request[2..4].copy_from_slice(&5u16.to_le_bytes());
        request[4..8].copy_from_slice(&self.root.to_le_bytes());
        request[8..10].copy_from_slice(&region.x.to_le_bytes());
        request[10..12].copy_from_slice(&region.y.to_le_bytes());
        request[12..14].copy_from_slice(&region.width.to_le_bytes());
        request[14..16].copy_from_slice(&region.height.to_le_bytes());
        request[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        self.stream.write_all(&request)?;
        let (_, data) = self
            .read_reply()
            .with_context(|| format!("GetImage of {region:?} failed"))?;
        Ok(data)
    }

    /// Returns the keycode whose first keysym is `keysym`.
    pub fn keycode(&mut self, keysym: u32) -> Result<u8> {
        let count = self.max_keycode - self.min_keycode + 1;
        self.stream
            .write_all(&[GET_KEYBOARD_MAPPING, 0, 2, 0, self.min_keycode, count, 0, 0])?;
        let (head, data) = self.read_reply().context("GetKeyboardMapping failed")?;
        let per_keycode = usize::from(head[1]);
        ensure!(per_keycode > 0, "GetKeyboardMapping returned no keysyms per keycode");
        data.chunks_exact(per_keycode * 4)
            .position(|keysyms| u32::from_le_bytes([keysyms[0], keysyms[1], keysyms[2], keysyms[3]]) == keysym)
            .and_then(|index| u8::try_from(index).ok())
            .map(|index| self.min_keycode + index)
            .with_context(|| format!("no keycode produces keysym {keysym:#x}"))
    }

    /// Returns the major opcode of the XTEST extension.
    pub fn xtest_opcode(&mut self) -> Result<u8> {
        const NAME: &[u8] = b"XTEST";
        let mut request = vec![QUERY_EXTENSION, 0, 4, 0];
        request.extend_from_slice(&(NAME.len() as u16).to_le_bytes());
        request.extend_from_slice(&[0, 0]);
        request.extend_from_slice(NAME);
        request.extend_from_slice(&[0, 0, 0]);
        self.stream.write_all(&request)?;
        let (head, _) = self.read_reply().context("QueryExtension XTEST failed")?;
        ensure!(head[8] == 1, "the X server has no XTEST extension");
        Ok(head[9])
    }

    /// Presses (`press`) or releases `keycode` through XTEST's `FakeInput`, as `xdotool` does.
    /// The request has no reply; the server handles it before any later request.
    pub fn fake_key(&mut self, xtest: u8, keycode: u8, press: bool) -> Result<()> {
        let mut request = [0u8; 36];
        request[0] = xtest;
        request[1] = XTEST_FAKE_INPUT;
        request[2..4].copy_from_slice(&9u16.to_le_bytes());
        request[4] = if press { KEY_PRESS } else { KEY_RELEASE };
        request[5] = keycode;
        // Time 0 is CurrentTime; root, position and device are unused for key events.
        self.stream.write_all(&request)?;
        Ok(())
    }

    /// Reads the next reply, skipping events; returns its 32-byte header and its extra data.
    fn read_reply(&mut self) -> Result<([u8; 32], Vec<u8>)> {
        loop {
            let mut head = [0u8; 32];
            self.stream.read_exact(&mut head)?;
            match head[0] {
                1 => {
                    let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize * 4;
                    let mut data = vec![0u8; length];
                    self.stream.read_exact(&mut data)?;
                    return Ok((head, data));
                }
                0 => bail!("X error code {} for major opcode {}", head[1], head[10]),
                // No events were selected, but the server may still send some; skip them.
                _ => continue,
            }
        }
    }
}

/// Returns the root window of the first screen from the connection setup data that follows
/// the 8-byte reply header.
fn parse_root_window(setup: &[u8]) -> Result<u32> {
    ensure!(setup.len() >= 32, "setup data has {} bytes", setup.len());
    let vendor_len = usize::from(u16::from_le_bytes([setup[16], setup[17]]));
    let formats = usize::from(setup[21]);
    let screens = setup[20];
    ensure!(screens > 0, "the display has no screens");
    let first_screen = 32 + vendor_len.div_ceil(4) * 4 + formats * 8;
    let bytes = setup
        .get(first_screen..first_screen + 4)
        .context("setup data ends before the first screen")?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_window_after_vendor_and_formats() -> Result<()> {
        let mut setup = vec![0u8; 32];
        setup[16] = 5; // vendor length, padded to 8
        setup[20] = 1; // screens
        setup[21] = 2; // pixmap formats, 8 bytes each
        setup.extend_from_slice(b"Xvfb\0\0\0\0");
        setup.extend_from_slice(&[0; 16]);
        setup.extend_from_slice(&0x0000_0123u32.to_le_bytes());
        assert_eq!(parse_root_window(&setup)?, 0x123);
        Ok(())
    }

    #[test]
    fn setup_without_screens_is_rejected() {
        let setup = vec![0u8; 40];
        assert!(parse_root_window(&setup).is_err());
    }
}
