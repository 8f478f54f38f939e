//! Translation of viewer input events into RDP input PDUs.
//!
//! `ironrdp_input::Database` tracks which keys and buttons are down, so a release is sent
//! only for something that was pressed and `ReleaseAll` releases exactly those. Events go
//! out as fast-path input when the server's Input Capability Set allows it, and as a
//! slow-path Input Event PDU otherwise.

use ironrdp_input::{Database, MousePosition, Operation, Scancode, WheelRotations};
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags as FastPathKeyboardFlags};
use ironrdp_pdu::input::scan_code::KeyboardFlags as ScanCodeFlags;
use ironrdp_pdu::input::sync::SyncToggleFlags;
use ironrdp_pdu::input::unicode::KeyboardFlags as UnicodeFlags;
use ironrdp_pdu::input::{InputEvent as SlowPathEvent, ScanCodePdu, SyncPdu, UnicodePdu};
use ironrdp_pdu::rdp::capability_sets::InputFlags;
use rdp_proxy_core::{InputEvent, MouseButton};
use tracing::debug;

/// Wheel units per notch, as Windows reports them (`WHEEL_DELTA`).
const WHEEL_NOTCH: i16 = 120;
/// Maximum number of events in one input PDU.
pub(crate) const MAX_EVENTS_PER_PDU: usize = FastPathInput::MAX_EVENTS;

/// Tracks pressed keys and buttons and turns viewer events into RDP input events.
pub(crate) struct InputTranslator {
    database: Database,
    flags: InputFlags,
}

impl InputTranslator {
    /// `flags` are the input flags from the server's Input Capability Set.
    pub(crate) fn new(flags: InputFlags) -> Self {
        Self {
            database: Database::new(),
            flags,
        }
    }

    /// Updates the server input flags after a Deactivation-Reactivation Sequence.
    pub(crate) fn set_flags(&mut self, flags: InputFlags) {
        self.flags = flags;
    }

    /// Returns whether the server accepts fast-path input, which [MS-RDPBCGR] 2.2.8.1.2 allows
    /// only with `INPUT_FLAG_FASTPATH_INPUT` or `INPUT_FLAG_FASTPATH_INPUT2`.
    pub(crate) fn uses_fast_path(&self) -> bool {
        self.flags
            .intersects(InputFlags::FASTPATH_INPUT | InputFlags::FASTPATH_INPUT_2)
    }

    /// Appends the RDP events for `event` to `out`. Events the server cannot receive, such
    /// as Unicode input without `INPUT_FLAG_UNICODE`, are dropped with a debug log.
    pub(crate) fn translate(&mut self, event: &InputEvent, out: &mut Vec<FastPathInputEvent>) {
        match *event {
            InputEvent::Key {
                scancode,
                extended,
                down,
            } => {
                let scancode = Scancode::from_u8(extended, scancode);
                let operation = if down {
                    Operation::KeyPressed(scancode)
                } else {
                    Operation::KeyReleased(scancode)
                };
                out.extend(self.database.apply([operation]));
            }
            InputEvent::Unicode { ch, down } => {
                if !self.flags.contains(InputFlags::UNICODE) {
                    debug!(character = %ch.escape_unicode(), "Dropped Unicode input: the server does not accept it");
                    return;
                }
                let operation = if down {
                    Operation::UnicodeKeyPressed(ch)
                } else {
                    Operation::UnicodeKeyReleased(ch)
                };
                out.extend(self.database.apply([operation]));
            }
            InputEvent::MouseMove { x, y } => {
                out.extend(self.database.apply([Operation::MouseMove(MousePosition { x, y })]));
            }
            InputEvent::MouseButton { button, down, x, y } => {
                let button = match button {
                    MouseButton::Left => ironrdp_input::MouseButton::Left,
                    MouseButton::Middle => ironrdp_input::MouseButton::Middle,
                    MouseButton::Right => ironrdp_input::MouseButton::Right,
                };
                let press = if down {
                    Operation::MouseButtonPressed(button)
                } else {
                    Operation::MouseButtonReleased(button)
                };
                out.extend(
                    self.database
                        .apply([Operation::MouseMove(MousePosition { x, y }), press]),
                );
            }
            InputEvent::Wheel { vertical, horizontal } => {
                self.push_wheel(true, vertical, out);
                if horizontal != 0 && !self.flags.contains(InputFlags::TS_MOUSE_HWHEEL) {
                    debug!(
                        horizontal,
                        "Dropped horizontal wheel input: the server does not accept it"
                    );
                } else {
                    self.push_wheel(false, horizontal, out);
                }
            }
            InputEvent::ReleaseAll => out.extend(self.database.release_all()),
        }
    }

    /// Splits a wheel rotation into events of at most one notch each. FreeRDP's X11 shadow
    /// server (`x11_shadow_input_mouse_event` in FreeRDP 3) turns each wheel event into one
    /// button click whatever its magnitude, so one event per notch keeps the scroll distance.
    fn push_wheel(&mut self, is_vertical: bool, units: i16, out: &mut Vec<FastPathInputEvent>) {
        let mut remaining = units;
        while remaining != 0 {
            let step = remaining.clamp(-WHEEL_NOTCH, WHEEL_NOTCH);
            remaining -= step;
            out.extend(self.database.apply([Operation::WheelRotations(WheelRotations {
                is_vertical,
                rotation_units: step,
            })]));
        }
    }
}

/// Converts fast-path events into the equivalent slow-path events, for servers that do not
/// accept fast-path input.
pub(crate) fn to_slow_path(events: &[FastPathInputEvent]) -> Vec<SlowPathEvent> {
    events.iter().filter_map(slow_path_event).collect()
}

/// Returns the slow-path form of `event`, or `None` for a quality-of-experience timestamp,
/// which only exists as fast-path input.
fn slow_path_event(event: &FastPathInputEvent) -> Option<SlowPathEvent> {
    let converted = match event {
        FastPathInputEvent::KeyboardEvent(flags, code) => {
            let mut slow_flags = ScanCodeFlags::empty();
            if flags.contains(FastPathKeyboardFlags::RELEASE) {
                slow_flags |= ScanCodeFlags::RELEASE;
            }
            if flags.contains(FastPathKeyboardFlags::EXTENDED) {
                slow_flags |= ScanCodeFlags::EXTENDED;
            }
            if flags.contains(FastPathKeyboardFlags::EXTENDED1) {
                slow_flags |= ScanCodeFlags::EXTENDED_1;
            }
            SlowPathEvent::ScanCode(ScanCodePdu {
                flags: slow_flags,
                key_code: u16::from(*code),
            })
        }
        FastPathInputEvent::UnicodeKeyboardEvent(flags, code) => {
            let slow_flags = if flags.contains(FastPathKeyboardFlags::RELEASE) {
                UnicodeFlags::RELEASE
            } else {
                UnicodeFlags::empty()
            };
            SlowPathEvent::Unicode(UnicodePdu {
                flags: slow_flags,
                unicode_code: *code,
            })
        }
        FastPathInputEvent::MouseEvent(pdu) => SlowPathEvent::Mouse(*pdu),
        FastPathInputEvent::MouseEventEx(pdu) => SlowPathEvent::MouseX(*pdu),
        FastPathInputEvent::MouseEventRel(pdu) => SlowPathEvent::MouseRel(*pdu),
        FastPathInputEvent::SyncEvent(flags) => SlowPathEvent::Sync(SyncPdu {
            flags: SyncToggleFlags::from_bits_truncate(u32::from(flags.bits())),
        }),
        FastPathInputEvent::QoeEvent(_) => return None,
    };
    Some(converted)
}

#[cfg(test)]
mod tests {
    use ironrdp_pdu::input::mouse::PointerFlags;

    use super::*;

    fn fast_path_flags() -> InputFlags {
        InputFlags::SCANCODES
            | InputFlags::FASTPATH_INPUT
            | InputFlags::UNICODE
            | InputFlags::TS_MOUSE_HWHEEL
            | InputFlags::MOUSEX
    }

    fn translate(translator: &mut InputTranslator, event: InputEvent) -> Vec<FastPathInputEvent> {
        let mut out = Vec::new();
        translator.translate(&event, &mut out);
        out
    }

    #[test]
    fn fast_path_depends_on_server_flags() {
        assert!(InputTranslator::new(fast_path_flags()).uses_fast_path());
        assert!(InputTranslator::new(InputFlags::FASTPATH_INPUT_2).uses_fast_path());
        assert!(!InputTranslator::new(InputFlags::SCANCODES | InputFlags::UNICODE).uses_fast_path());
    }

    #[test]
    fn extended_key_sets_extended_flag() {
        let mut translator = InputTranslator::new(fast_path_flags());
        let events = translate(
            &mut translator,
            InputEvent::Key {
                scancode: 0x4B,
                extended: true,
                down: true,
            },
        );
        assert_eq!(
            events,
            vec![FastPathInputEvent::KeyboardEvent(FastPathKeyboardFlags::EXTENDED, 0x4B)]
        );
    }

    #[test]
    fn release_of_unpressed_key_is_dropped() {
        let mut translator = InputTranslator::new(fast_path_flags());
        let events = translate(
            &mut translator,
            InputEvent::Key {
                scancode: 0x1E,
                extended: false,
                down: false,
            },
        );
        assert!(events.is_empty());
    }

    #[test]
    fn release_all_releases_pressed_only() {
        let mut translator = InputTranslator::new(fast_path_flags());
        translate(
            &mut translator,
            InputEvent::Key {
                scancode: 0x1D,
                extended: false,
                down: true,
            },
        );
        translate(
            &mut translator,
            InputEvent::MouseButton {
                button: MouseButton::Left,
                down: true,
                x: 5,
                y: 6,
            },
        );
        let released = translate(&mut translator, InputEvent::ReleaseAll);
        assert_eq!(released.len(), 2, "{released:?}");
        assert!(released.contains(&FastPathInputEvent::KeyboardEvent(FastPathKeyboardFlags::RELEASE, 0x1D)));
        assert!(released.iter().any(|event| matches!(
            event,
            FastPathInputEvent::MouseEvent(pdu)
                if pdu.flags == PointerFlags::LEFT_BUTTON && pdu.x_position == 5 && pdu.y_position == 6
        )));
        assert!(translate(&mut translator, InputEvent::ReleaseAll).is_empty());
    }

    #[test]
    fn button_press_moves_first() {
        let mut translator = InputTranslator::new(fast_path_flags());
        let events = translate(
            &mut translator,
            InputEvent::MouseButton {
                button: MouseButton::Right,
                down: true,
                x: 100,
                y: 200,
            },
        );
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(&events[0], FastPathInputEvent::MouseEvent(pdu) if pdu.flags == PointerFlags::MOVE));
        assert!(matches!(
            &events[1],
            FastPathInputEvent::MouseEvent(pdu)
                if pdu.flags == PointerFlags::DOWN | PointerFlags::RIGHT_BUTTON && pdu.x_position == 100
        ));
    }

    #[test]
    fn wheel_splits_into_notches() {
        let mut translator = InputTranslator::new(fast_path_flags());
        let events = translate(
            &mut translator,
            InputEvent::Wheel {
                vertical: -300,
                horizontal: 120,
            },
        );
        let units: Vec<(bool, i16)> = events
            .iter()
            .map(|event| match event {
                FastPathInputEvent::MouseEvent(pdu) => (
                    pdu.flags.contains(PointerFlags::VERTICAL_WHEEL),
                    pdu.number_of_wheel_rotation_units,
                ),
                other => panic!("unexpected event {other:?}"),
            })
            .collect();
        assert_eq!(units, vec![(true, -120), (true, -120), (true, -60), (false, 120)]);
    }

    #[test]
    fn horizontal_wheel_needs_server_support() {
        let mut translator = InputTranslator::new(InputFlags::SCANCODES | InputFlags::FASTPATH_INPUT);
        let events = translate(
            &mut translator,
            InputEvent::Wheel {
                vertical: 0,
                horizontal: 120,
            },
        );
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn unicode_needs_server_support() {
        let mut translator = InputTranslator::new(InputFlags::SCANCODES | InputFlags::FASTPATH_INPUT);
        let events = translate(&mut translator, InputEvent::Unicode { ch: 'é', down: true });
        assert!(events.is_empty());

        let mut translator = InputTranslator::new(fast_path_flags());
        let events = translate(&mut translator, InputEvent::Unicode { ch: 'é', down: true });
        assert_eq!(
            events,
            vec![FastPathInputEvent::UnicodeKeyboardEvent(
                FastPathKeyboardFlags::empty(),
                0xE9
            )]
        );
    }

    #[test]
    fn slow_path_keeps_key_flags() {
        let slow = to_slow_path(&[FastPathInputEvent::KeyboardEvent(
            FastPathKeyboardFlags::RELEASE | FastPathKeyboardFlags::EXTENDED,
            0x48,
        )]);
        assert_eq!(
            slow,
            vec![SlowPathEvent::ScanCode(ScanCodePdu {
                flags: ScanCodeFlags::RELEASE | ScanCodeFlags::EXTENDED,
                key_code: 0x48,
            })]
        );
    }
}
