import assert from "node:assert/strict";
import { test } from "node:test";

import { keyMessage, mappedCodes, scancodeForCode, unicodeForKey } from "../scancodes.js";

function expectKey(code, scancode, extended) {
  assert.deepEqual(scancodeForCode(code), { scancode, extended }, `mapping for ${code}`);
}

test("letters map to set-1 rows", () => {
  const rows = [
    ["QWERTYUIOP", 0x10],
    ["ASDFGHJKL", 0x1e],
    ["ZXCVBNM", 0x2c],
  ];
  for (const [letters, first] of rows) {
    [...letters].forEach((letter, index) => expectKey(`Key${letter}`, first + index, false));
  }
});

test("digits map 1-9 then 0", () => {
  for (let digit = 1; digit <= 9; digit += 1) {
    expectKey(`Digit${digit}`, 0x01 + digit, false);
  }
  expectKey("Digit0", 0x0b, false);
});

test("function keys F1 to F12", () => {
  for (let n = 1; n <= 10; n += 1) {
    expectKey(`F${n}`, 0x3a + n, false);
  }
  expectKey("F11", 0x57, false);
  expectKey("F12", 0x58, false);
});

test("navigation keys are extended", () => {
  const cases = {
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
  };
  for (const [code, scancode] of Object.entries(cases)) {
    expectKey(code, scancode, true);
  }
});

test("numpad keys share codes with navigation", () => {
  const cases = {
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
    NumpadMultiply: 0x37,
    NumLock: 0x45,
  };
  for (const [code, scancode] of Object.entries(cases)) {
    expectKey(code, scancode, false);
  }
  expectKey("NumpadDivide", 0x35, true);
  expectKey("NumpadEnter", 0x1c, true);
});

test("editing and whitespace keys", () => {
  expectKey("Enter", 0x1c, false);
  expectKey("Backspace", 0x0e, false);
  expectKey("Tab", 0x0f, false);
  expectKey("Escape", 0x01, false);
  expectKey("Space", 0x39, false);
  expectKey("CapsLock", 0x3a, false);
});

test("modifiers: right side extended", () => {
  expectKey("ShiftLeft", 0x2a, false);
  expectKey("ShiftRight", 0x36, false);
  expectKey("ControlLeft", 0x1d, false);
  expectKey("ControlRight", 0x1d, true);
  expectKey("AltLeft", 0x38, false);
  expectKey("AltRight", 0x38, true);
  expectKey("MetaLeft", 0x5b, true);
  expectKey("MetaRight", 0x5c, true);
  expectKey("OSLeft", 0x5b, true);
  expectKey("OSRight", 0x5c, true);
  expectKey("ContextMenu", 0x5d, true);
});

test("punctuation keys", () => {
  const cases = {
    Minus: 0x0c,
    Equal: 0x0d,
    BracketLeft: 0x1a,
    BracketRight: 0x1b,
    Semicolon: 0x27,
    Quote: 0x28,
    Backquote: 0x29,
    Backslash: 0x2b,
    Comma: 0x33,
    Period: 0x34,
    Slash: 0x35,
    IntlBackslash: 0x56,
  };
  for (const [code, scancode] of Object.entries(cases)) {
    expectKey(code, scancode, false);
  }
});

test("scancodes fit one byte", () => {
  for (const code of mappedCodes()) {
    const { scancode } = scancodeForCode(code);
    assert.ok(Number.isInteger(scancode), `${code} scancode is an integer`);
    assert.ok(scancode > 0, `${code} scancode ${scancode} is above 0`);
    assert.ok(scancode < 0x80, `${code} scancode ${scancode} is a make code, below 0x80`);
  }
});

test("no two codes share a scancode", () => {
  const seen = new Map();
  const aliases = new Set(["OSLeft", "OSRight"]);
  for (const code of mappedCodes()) {
    if (aliases.has(code)) {
      continue;
    }
    const { scancode, extended } = scancodeForCode(code);
    const key = `${extended ? "E0 " : ""}${scancode.toString(16)}`;
    assert.equal(seen.get(key), undefined, `${code} and ${seen.get(key)} both map to ${key}`);
    seen.set(key, code);
  }
});

test("unmapped codes return null", () => {
  assert.equal(scancodeForCode("Pause"), null);
  assert.equal(scancodeForCode("Fn"), null);
  assert.equal(scancodeForCode(""), null);
  assert.equal(scancodeForCode("Unidentified"), null);
});

test("unicodeForKey accepts one character", () => {
  assert.equal(unicodeForKey("é"), "é");
  assert.equal(unicodeForKey("€"), "€");
  assert.equal(unicodeForKey("😀"), "😀", "astral characters count as one");
});

test("unicodeForKey rejects named keys", () => {
  assert.equal(unicodeForKey("Dead"), null);
  assert.equal(unicodeForKey("Unidentified"), null);
  assert.equal(unicodeForKey(""), null);
  assert.equal(unicodeForKey("\u0007"), null);
  assert.equal(unicodeForKey(undefined), null);
});

test("keyMessage prefers the scancode", () => {
  assert.deepEqual(keyMessage("KeyA", "a", true), { type: "key", scancode: 0x1e, extended: false, down: true });
  assert.deepEqual(keyMessage("ArrowUp", "ArrowUp", false), {
    type: "key",
    scancode: 0x48,
    extended: true,
    down: false,
  });
});

test("keyMessage falls back to unicode", () => {
  assert.deepEqual(keyMessage("", "ß", true), { type: "unicode", ch: "ß", down: true });
  assert.deepEqual(keyMessage("Unidentified", "ñ", false), { type: "unicode", ch: "ñ", down: false });
});

test("keyMessage drops unmappable keys", () => {
  assert.equal(keyMessage("Pause", "Pause", true), null);
  assert.equal(keyMessage("", "Dead", true), null);
});
