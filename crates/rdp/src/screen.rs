//! The session framebuffer that the RDP client decodes into and viewers read from.
//!
//! There is one copy of the pixels: IronRDP's `DecodedImage` in RGBA byte order. The active
//! stage writes it under a write lock, viewers copy rectangles out under a read lock, and a
//! watch channel notifies them when a batch of updates has been applied.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::geometry::InclusiveRectangle;
use ironrdp_session::image::DecodedImage;
use rdp_proxy_core::Rect;
use tokio::sync::watch;

use crate::damage::{Damage, DamageLog};

/// Bytes per pixel of [`FRAMEBUFFER_FORMAT`].
const BYTES_PER_PIXEL: usize = 4;
/// IronRDP writes this format as the bytes R, G, B, A in memory.
pub(crate) const FRAMEBUFFER_FORMAT: PixelFormat = PixelFormat::RgbA32;

/// The framebuffer of one session, shared between the RDP client and any number of viewers.
pub struct SharedScreen {
    state: RwLock<ScreenState>,
    updates: watch::Sender<u64>,
}

struct ScreenState {
    image: DecodedImage,
    damage: DamageLog,
}

impl SharedScreen {
    pub(crate) fn new(width: u16, height: u16) -> Self {
        let (updates, _) = watch::channel(0);
        Self {
            state: RwLock::new(ScreenState {
                image: DecodedImage::new(FRAMEBUFFER_FORMAT, width, height),
                damage: DamageLog::new(),
            }),
            updates,
        }
    }

    /// Current desktop size in pixels. It changes when the server resizes the desktop.
    pub fn size(&self) -> (u16, u16) {
        let state = self.read();
        (state.image.width(), state.image.height())
    }

    /// Current sequence number, bumped after each applied update batch.
    pub fn seq(&self) -> u64 {
        self.read().damage.seq()
    }

    /// Returns a receiver whose value is the sequence number, bumped after each applied
    /// update batch. The pixels of that batch are in place before the value changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }

    /// Returns what changed after sequence number `seq`.
    pub fn damage_since(&self, seq: u64) -> Damage {
        let state = self.read();
        state.damage.since(seq, state.image.width(), state.image.height())
    }

    /// Copies `rect` into `out` as row-major RGBA, `width * height * 4` bytes, with alpha
    /// set to 255. Pixels of `rect` outside the screen are opaque black. `out` is cleared
    /// first, and its capacity is reused.
    pub fn read_rgba(&self, rect: Rect, out: &mut Vec<u8>) {
        out.clear();
        let row_len = usize::from(rect.width) * BYTES_PER_PIXEL;
        out.reserve(row_len * usize::from(rect.height));

        let state = self.read();
        let image = &state.image;
        let data = image.data();
        let stride = image.stride();
        let visible = rect.clip_to(image.width(), image.height());

        for row in 0..rect.height {
            let row_start = out.len();
            let y = u32::from(rect.y) + u32::from(row);
            match visible {
                Some(visible) if y < visible.bottom() => {
                    let offset =
                        usize::try_from(y).unwrap_or(usize::MAX) * stride + usize::from(visible.x) * BYTES_PER_PIXEL;
                    let len = usize::from(visible.width) * BYTES_PER_PIXEL;
                    out.extend_from_slice(&data[offset..offset + len]);
                }
                _ => {}
            }
            // Anything right of or below the screen.
            out.resize(row_start + row_len, 0);
        }
        drop(state);

        for pixel in out.chunks_exact_mut(BYTES_PER_PIXEL) {
            pixel[3] = 255;
        }
    }

    /// Runs `decode` with the framebuffer locked for writing.
    pub(crate) fn with_image<R>(&self, decode: impl FnOnce(&mut DecodedImage) -> R) -> R {
        decode(&mut self.write().image)
    }

    /// Records the regions the last decode call changed and notifies subscribers.
    pub(crate) fn commit(&self, regions: &[InclusiveRectangle]) {
        let seq = {
            let mut state = self.write();
            let (width, height) = (state.image.width(), state.image.height());
            state
                .damage
                .record(regions.iter().map(inclusive_to_rect), width, height)
        };
        if let Some(seq) = seq {
            self.updates.send_replace(seq);
        }
    }

    /// Replaces the framebuffer with a black one of the new size, which makes every
    /// viewer's next [`Self::damage_since`] a full update.
    pub(crate) fn resize(&self, width: u16, height: u16) {
        let seq = {
            let mut state = self.write();
            state.image = DecodedImage::new(FRAMEBUFFER_FORMAT, width, height);
            state.damage.reset()
        };
        self.updates.send_replace(seq);
    }

    fn read(&self) -> RwLockReadGuard<'_, ScreenState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, ScreenState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for SharedScreen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (width, height) = self.size();
        f.debug_struct("SharedScreen")
            .field("width", &width)
            .field("height", &height)
            .field("seq", &self.seq())
            .finish()
    }
}

fn inclusive_to_rect(region: &InclusiveRectangle) -> Rect {
    let width = u32::from(region.right).saturating_sub(u32::from(region.left)) + 1;
    let height = u32::from(region.bottom).saturating_sub(u32::from(region.top)) + 1;
    Rect::new(
        region.left,
        region.top,
        u16::try_from(width).unwrap_or(u16::MAX),
        u16::try_from(height).unwrap_or(u16::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_rgba_pads_outside_with_opaque_black() {
        let screen = SharedScreen::new(4, 2);
        let mut out = vec![9; 3];
        screen.read_rgba(Rect::new(3, 1, 2, 2), &mut out);
        assert_eq!(out.len(), 2 * 2 * 4);
        assert!(out.chunks_exact(4).all(|pixel| pixel == [0, 0, 0, 255]), "{out:?}");
    }

    #[test]
    fn commit_bumps_watch_value() {
        let screen = SharedScreen::new(100, 100);
        let receiver = screen.subscribe();
        screen.commit(&[InclusiveRectangle {
            left: 10,
            top: 20,
            right: 19,
            bottom: 29,
        }]);
        assert_eq!(*receiver.borrow(), 1);
        let damage = screen.damage_since(0);
        assert_eq!(damage.rects, vec![Rect::new(10, 20, 10, 10)]);
    }

    #[test]
    fn resize_forces_full_damage() {
        let screen = SharedScreen::new(100, 100);
        screen.commit(&[InclusiveRectangle {
            left: 0,
            top: 0,
            right: 0,
            bottom: 0,
        }]);
        screen.resize(200, 50);
        assert_eq!(screen.size(), (200, 50));
        let damage = screen.damage_since(1);
        assert!(damage.full);
        assert_eq!(damage.rects, vec![Rect::new(0, 0, 200, 50)]);
    }
}
