//! Screen rectangles in pixels, shared by the RDP client and the viewer encoder.

use serde::{Deserialize, Serialize};

/// An axis-aligned rectangle; `x`/`y` is the top-left pixel, `width`/`height` are in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl Rect {
    pub const fn new(x: u16, y: u16, width: u16, height: u16) -> Self {
        Self { x, y, width, height }
    }

    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    pub fn right(&self) -> u32 {
        u32::from(self.x) + u32::from(self.width)
    }

    pub fn bottom(&self) -> u32 {
        u32::from(self.y) + u32::from(self.height)
    }

    pub fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Smallest rectangle containing both.
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let right = self.right().max(other.right());
        let bottom = self.bottom().max(other.bottom());
        Rect::new(x, y, clamp_u16(right - u32::from(x)), clamp_u16(bottom - u32::from(y)))
    }

    pub fn intersects(&self, other: &Rect) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && u32::from(self.x) < other.right()
            && u32::from(other.x) < self.right()
            && u32::from(self.y) < other.bottom()
            && u32::from(other.y) < self.bottom()
    }

    /// Part of this rectangle inside a `width`×`height` screen, or `None` when nothing is.
    pub fn clip_to(&self, width: u16, height: u16) -> Option<Rect> {
        let right = self.right().min(u32::from(width));
        let bottom = self.bottom().min(u32::from(height));
        if u32::from(self.x) >= right || u32::from(self.y) >= bottom {
            return None;
        }
        Some(Rect::new(
            self.x,
            self.y,
            clamp_u16(right - u32::from(self.x)),
            clamp_u16(bottom - u32::from(self.y)),
        ))
    }
}

fn clamp_u16(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_covers_both() {
        let a = Rect::new(10, 10, 5, 5);
        let b = Rect::new(0, 20, 2, 2);
        assert_eq!(a.union(&b), Rect::new(0, 10, 15, 12));
    }

    #[test]
    fn union_with_empty_is_identity() {
        let a = Rect::new(3, 4, 5, 6);
        assert_eq!(a.union(&Rect::new(0, 0, 0, 0)), a);
        assert_eq!(Rect::new(9, 9, 0, 0).union(&a), a);
    }

    #[test]
    fn clip_to_screen() {
        assert_eq!(
            Rect::new(90, 90, 20, 20).clip_to(100, 100),
            Some(Rect::new(90, 90, 10, 10))
        );
        assert_eq!(Rect::new(100, 0, 5, 5).clip_to(100, 100), None);
    }

    #[test]
    fn intersects_touching_edges_is_false() {
        assert!(!Rect::new(0, 0, 10, 10).intersects(&Rect::new(10, 0, 5, 5)));
        assert!(Rect::new(0, 0, 10, 10).intersects(&Rect::new(9, 9, 5, 5)));
    }
}
