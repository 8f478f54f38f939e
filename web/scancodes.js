// Maps KeyboardEvent.code values to PC/AT scan code set 1 make codes.
//
// Each entry is {scancode, extended}, where `extended` means the key sends the 0xE0 prefix.
// Keys are UI Events KeyboardEvent code values (W3C). The scancodes agree with the Windows
// column of Gecko's widget/NativeKeyToDOMCodeName.h, except NumLock: Gecko lists 0xE045 for
// Windows, but RDP clients such as FreeRDP send it as plain 0x45.
// NOTE: Pause/Break sends an E1-prefixed sequence in set 1, which the viewer protocol cannot
// express, so it has no entry and is dropped (it has no printable `key` either).

const BASIC = {
  Escape: 0x01,
  Digit1: 0x02,
  Digit2: 0x03,
  Digit3: 0x04,
  Digit4: 0x05,
  Digit5: 0x06,
  Digit6: 0x07,
  Digit7: 0x08,
  Digit8: 0x09,
  Digit9: 0x0a,
  Digit0: 0x0b,
  Minus: 0x0c,
  Equal: 0x0d,
  Backspace: 0x0e,
  Tab: 0x0f,
  KeyQ: 0x10,
  KeyW: 0x11,
  KeyE: 0x12,
  KeyR: 0x13,
  KeyT: 0x14,
  KeyY: 0x15,
  KeyU: 0x16,
  KeyI: 0x17,
  KeyO: 0x18,
  KeyP: 0x19,
  BracketLeft: 0x1a,
  BracketRight: 0x1b,
  Enter: 0x1c,
  ControlLeft: 0x1d,
  KeyA: 0x1e,
  KeyS: 0x1f,
  KeyD: 0x20,
  KeyF: 0x21,
  KeyG: 0x22,
  KeyH: 0x23,
  KeyJ: 0x24,
  KeyK: 0x25,
  KeyL: 0x26,
  Semicolon: 0x27,
  Quote: 0x28,
  Backquote: 0x29,
  ShiftLeft: 0x2a,
  Backslash: 0x2b,
  KeyZ: 0x2c,
  KeyX: 0x2d,
  KeyC: 0x2e,
  KeyV: 0x2f,
  KeyB: 0x30,
  KeyN: 0x31,
  KeyM: 0x32,
  Comma: 0x33,
  Period: 0x34,
  Slash: 0x35,
  ShiftRight: 0x36,
  NumpadMultiply: 0x37,
  AltLeft: 0x38,
  Space: 0x39,
  CapsLock: 0x3a,
  F1: 0x3b,
  F2: 0x3c,
  F3: 0x3d,
  F4: 0x3e,
  F5: 0x3f,
  F6: 0x40,
  F7: 0x41,
  F8: 0x42,
  F9: 0x43,
  F10: 0x44,
  NumLock: 0x45,
  ScrollLock: 0x46,
  Numpad7: 0x47,
  Numpad8: 0x48,
  Numpad9: 0x49,
  NumpadSubtract: 0x4a,
  Numpad4: 0x4b,
  Numpad5: 0x4c,
  Numpad6: 0x4d,
  NumpadAdd: 0x4e,
  Numpad1: 0x4f,
  Numpad2: 0x50,
  Numpad3: 0x51,
  Numpad0: 0x52,
  NumpadDecimal: 0x53,
  IntlBackslash: 0x56,
  F11: 0x57,
  F12: 0x58,
  NumpadEqual: 0x59,
  F13: 0x64,
  F14: 0x65,
  F15: 0x66,
  F16: 0x67,
  F17: 0x68,
  F18: 0x69,
  F19: 0x6a,
  F20: 0x6b,
  F21: 0x6c,
  F22: 0x6d,
  F23: 0x6e,
  KanaMode: 0x70,
  IntlRo: 0x73,
  F24: 0x76,
  Convert: 0x79,
  NonConvert: 0x7b,
  IntlYen: 0x7d,
  NumpadComma: 0x7e,
};

const EXTENDED = {
  MediaTrackPrevious: 0x10,
  MediaTrackNext: 0x19,
  NumpadEnter: 0x1c,
  ControlRight: 0x1d,
  AudioVolumeMute: 0x20,
  LaunchApp2: 0x21,
  MediaPlayPause: 0x22,
  MediaStop: 0x24,
  AudioVolumeDown: 0x2e,
  AudioVolumeUp: 0x30,
  BrowserHome: 0x32,
  NumpadDivide: 0x35,
  PrintScreen: 0x37,
  AltRight: 0x38,
  Home: 0x47,
  ArrowUp: 0x48,
  PageUp: 0x49,
  ArrowLeft: 0x4b,
  ArrowRight: 0x4d,
  End: 0x4f,
  ArrowDown: 0x50,
  PageDown: 0x51,
  Insert: 0x52,
  Delete: 0x53,
  MetaLeft: 0x5b,
  MetaRight: 0x5c,
  ContextMenu: 0x5d,
  Power: 0x5e,
  BrowserSearch: 0x65,
  BrowserFavorites: 0x66,
  BrowserRefresh: 0x67,
  BrowserStop: 0x68,
  BrowserForward: 0x69,
  BrowserBack: 0x6a,
  LaunchApp1: 0x6b,
  LaunchMail: 0x6c,
  MediaSelect: 0x6d,
};

// Older browsers reported the Windows keys as OSLeft/OSRight, the names in Gecko's table above.
const ALIASES = {
  OSLeft: "MetaLeft",
  OSRight: "MetaRight",
};

const TABLE = new Map();
for (const [code, scancode] of Object.entries(BASIC)) {
  TABLE.set(code, Object.freeze({ scancode, extended: false }));
}
for (const [code, scancode] of Object.entries(EXTENDED)) {
  TABLE.set(code, Object.freeze({ scancode, extended: true }));
}
for (const [alias, code] of Object.entries(ALIASES)) {
  TABLE.set(alias, TABLE.get(code));
}

/**
 * Returns `{scancode, extended}` for a KeyboardEvent.code, or null when the key has no
 * single set-1 scancode.
 */
export function scancodeForCode(code) {
  return TABLE.get(code) ?? null;
}

/** Returns every KeyboardEvent.code value the table maps, aliases included. */
export function mappedCodes() {
  return [...TABLE.keys()];
}

/**
 * Returns the character to send as a `unicode` message for a key the table does not map, or
 * null when `key` is not a single printable character (named keys such as "Dead" or
 * "Unidentified", and control characters).
 */
export function unicodeForKey(key) {
  if (typeof key !== "string") {
    return null;
  }
  const chars = [...key];
  if (chars.length !== 1) {
    return null;
  }
  const codePoint = chars[0].codePointAt(0);
  if (codePoint < 0x20 || (codePoint >= 0x7f && codePoint < 0xa0)) {
    return null;
  }
  return chars[0];
}

/**
 * Builds the browser → worker message for a key event: a `key` message when `code` maps to a
 * scancode, else a `unicode` message when `key` is printable, else null.
 */
export function keyMessage(code, key, down) {
  const mapped = scancodeForCode(code);
  if (mapped) {
    return { type: "key", scancode: mapped.scancode, extended: mapped.extended, down };
  }
  const ch = unicodeForKey(key);
  if (ch !== null) {
    return { type: "unicode", ch, down };
  }
  return null;
}
