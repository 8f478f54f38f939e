//! A bounded log of changed screen rectangles, so viewers can ask what changed since the
//! sequence number they last saw.

use std::collections::VecDeque;

use rdp_proxy_core::Rect;

/// Number of rectangles the log keeps. A viewer that falls further behind gets a full update.
pub(crate) const LOG_CAPACITY: usize = 256;
/// A batch with more rectangles than this is stored as their bounding box.
const MAX_RECTS_PER_BATCH: usize = 16;
/// A [`Damage`] with more rectangles than this is returned as their bounding box.
const MAX_RECTS_PER_DAMAGE: usize = 64;

/// Changes to the screen after a given sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The screen's sequence number when this was computed, to pass to the next call.
    pub seq: u64,
    /// Whether the caller must redraw everything, because the requested sequence number is
    /// older than the log or the screen size changed since. `rects` then contains one rectangle
    /// covering the whole screen.
    pub full: bool,
    /// Changed rectangles, clipped to the screen, in no particular order. They may overlap.
    pub rects: Vec<Rect>,
}

#[derive(Debug)]
pub(crate) struct DamageLog {
    seq: u64,
    entries: VecDeque<(u64, Rect)>,
    /// `since(s)` is exact only for `s >= complete_since`, because older batches were
    /// evicted or belong to a previous screen size.
    complete_since: u64,
}

impl DamageLog {
    pub(crate) fn new() -> Self {
        Self {
            seq: 0,
            entries: VecDeque::with_capacity(LOG_CAPACITY),
            complete_since: 0,
        }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Records one batch of changed rectangles and returns the new sequence number, or `None`
    /// when the batch changed nothing on a `width`×`height` screen.
    pub(crate) fn record(&mut self, rects: impl IntoIterator<Item = Rect>, width: u16, height: u16) -> Option<u64> {
        let mut batch: Vec<Rect> = rects
            .into_iter()
            .filter_map(|rect| rect.clip_to(width, height))
            .collect();
        if batch.is_empty() {
            return None;
        }
        if batch.len() > MAX_RECTS_PER_BATCH {
            batch = vec![bounding_box(&batch)];
        }

        self.seq += 1;
        for rect in batch {
            self.entries.push_back((self.seq, rect));
        }
        while self.entries.len() > LOG_CAPACITY {
            if let Some((evicted_seq, _)) = self.entries.pop_front() {
                self.complete_since = self.complete_since.max(evicted_seq);
            }
        }
        Some(self.seq)
    }

    /// Forgets all history because the screen changed size, and returns the new sequence number.
    pub(crate) fn reset(&mut self) -> u64 {
        self.seq += 1;
        self.entries.clear();
        self.complete_since = self.seq;
        self.seq
    }

    pub(crate) fn since(&self, since: u64, width: u16, height: u16) -> Damage {
        if since > self.seq || since < self.complete_since {
            return Damage {
                seq: self.seq,
                full: true,
                rects: vec![Rect::new(0, 0, width, height)],
            };
        }

        let mut rects: Vec<Rect> = Vec::new();
        for (_, rect) in self.entries.iter().filter(|(seq, _)| *seq > since) {
            if rects.iter().any(|kept| contains(kept, rect)) {
                continue;
            }
            rects.retain(|kept| !contains(rect, kept));
            rects.push(*rect);
        }
        if rects.len() > MAX_RECTS_PER_DAMAGE {
            rects = vec![bounding_box(&rects)];
        }
        Damage {
            seq: self.seq,
            full: false,
            rects,
        }
    }
}

fn contains(outer: &Rect, inner: &Rect) -> bool {
    outer.x <= inner.x && outer.y <= inner.y && outer.right() >= inner.right() && outer.bottom() >= inner.bottom()
}

fn bounding_box(rects: &[Rect]) -> Rect {
    rects.iter().fold(Rect::new(0, 0, 0, 0), |acc, rect| acc.union(rect))
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u16 = 1920;
    const H: u16 = 1080;

    #[test]
    fn empty_batch_keeps_sequence() {
        let mut log = DamageLog::new();
        assert_eq!(log.record([Rect::new(2000, 0, 10, 10)], W, H), None);
        assert_eq!(log.seq(), 0);
    }

    #[test]
    fn since_returns_newer_batches_only() {
        let mut log = DamageLog::new();
        log.record([Rect::new(0, 0, 10, 10)], W, H);
        let seq = log.seq();
        log.record([Rect::new(100, 100, 5, 5)], W, H);

        let damage = log.since(seq, W, H);
        assert!(!damage.full);
        assert_eq!(damage.seq, 2);
        assert_eq!(damage.rects, vec![Rect::new(100, 100, 5, 5)]);
    }

    #[test]
    fn since_current_is_empty() {
        let mut log = DamageLog::new();
        log.record([Rect::new(0, 0, 10, 10)], W, H);
        let damage = log.since(log.seq(), W, H);
        assert!(!damage.full);
        assert!(damage.rects.is_empty());
    }

    #[test]
    fn rects_are_clipped_to_screen() {
        let mut log = DamageLog::new();
        log.record([Rect::new(1910, 1070, 50, 50)], W, H);
        assert_eq!(log.since(0, W, H).rects, vec![Rect::new(1910, 1070, 10, 10)]);
    }

    #[test]
    fn contained_rects_are_dropped() {
        let mut log = DamageLog::new();
        log.record([Rect::new(10, 10, 5, 5)], W, H);
        log.record([Rect::new(0, 0, 100, 100)], W, H);
        log.record([Rect::new(20, 20, 5, 5)], W, H);
        assert_eq!(log.since(0, W, H).rects, vec![Rect::new(0, 0, 100, 100)]);
    }

    #[test]
    fn large_batch_becomes_bounding_box() {
        let mut log = DamageLog::new();
        let tiles = (0..64u16).map(|i| Rect::new(i * 10, 0, 10, 10));
        log.record(tiles, W, H);
        assert_eq!(log.since(0, W, H).rects, vec![Rect::new(0, 0, 640, 10)]);
    }

    #[test]
    fn evicted_history_gives_full() {
        let mut log = DamageLog::new();
        for i in 0..(LOG_CAPACITY as u16 + 10) {
            log.record([Rect::new(i, 0, 1, 1)], W, H);
        }
        let old = log.since(5, W, H);
        assert!(old.full);
        assert_eq!(old.rects, vec![Rect::new(0, 0, W, H)]);

        let recent = log.since(log.seq() - 3, W, H);
        assert!(!recent.full);
        assert_eq!(recent.rects.len(), 3);
    }

    #[test]
    fn reset_gives_full_for_older_sequences() {
        let mut log = DamageLog::new();
        log.record([Rect::new(0, 0, 1, 1)], W, H);
        let before = log.seq();
        let after = log.reset();
        assert!(log.since(before, 1280, 720).full);
        assert_eq!(log.since(before, 1280, 720).rects, vec![Rect::new(0, 0, 1280, 720)]);
        assert!(!log.since(after, 1280, 720).full);
    }

    #[test]
    fn future_sequence_gives_full() {
        let log = DamageLog::new();
        assert!(log.since(7, W, H).full);
    }
}
