import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ENCODING_JPEG,
  ENCODING_PNG,
  ENCODING_ZLIB_RGBA,
  FrameFormatError,
  KIND_BATCH_END,
  KIND_RECT,
  parseFrame,
  rgbaByteLength,
} from "../frames.js";

function rectMessage(encoding, x, y, width, height, payload) {
  const bytes = new Uint8Array(10 + payload.length);
  const view = new DataView(bytes.buffer);
  bytes[0] = KIND_RECT;
  bytes[1] = encoding;
  view.setUint16(2, x);
  view.setUint16(4, y);
  view.setUint16(6, width);
  view.setUint16(8, height);
  bytes.set(payload, 10);
  return bytes.buffer;
}

test("batch end is one byte", () => {
  assert.deepEqual(parseFrame(new Uint8Array([2]).buffer), { kind: KIND_BATCH_END });
});

test("rectangle header is big-endian", () => {
  const frame = parseFrame(rectMessage(ENCODING_PNG, 0x0102, 0x0304, 0x0506, 0x0708, [9, 8, 7]));
  assert.equal(frame.kind, KIND_RECT);
  assert.equal(frame.encoding, ENCODING_PNG);
  assert.equal(frame.x, 0x0102);
  assert.equal(frame.y, 0x0304);
  assert.equal(frame.width, 0x0506);
  assert.equal(frame.height, 0x0708);
  assert.deepEqual([...frame.payload], [9, 8, 7]);
});

test("rectangle fields reach 65535", () => {
  const frame = parseFrame(rectMessage(ENCODING_JPEG, 65535, 65535, 65535, 65535, []));
  assert.equal(frame.x, 65535);
  assert.equal(frame.height, 65535);
  assert.equal(frame.payload.length, 0);
});

test("all three encodings parse", () => {
  for (const encoding of [ENCODING_ZLIB_RGBA, ENCODING_PNG, ENCODING_JPEG]) {
    assert.equal(parseFrame(rectMessage(encoding, 0, 0, 1, 1, [0])).encoding, encoding);
  }
});

test("payload is a view, not a copy", () => {
  const buffer = rectMessage(ENCODING_ZLIB_RGBA, 0, 0, 1, 1, [1, 2, 3, 4]);
  const frame = parseFrame(buffer);
  assert.equal(frame.payload.buffer, buffer);
  assert.equal(frame.payload.byteOffset, 10);
});

test("empty message is rejected", () => {
  assert.throws(() => parseFrame(new ArrayBuffer(0)), FrameFormatError);
});

test("unknown kind is rejected", () => {
  assert.throws(() => parseFrame(new Uint8Array([3]).buffer), /unknown binary message kind 3/);
  assert.throws(() => parseFrame(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).buffer), FrameFormatError);
});

test("unknown encoding is rejected", () => {
  assert.throws(() => parseFrame(rectMessage(3, 0, 0, 1, 1, [])), /unknown rectangle encoding 3/);
});

test("short rectangle header is rejected", () => {
  assert.throws(() => parseFrame(new Uint8Array([1, 1, 0, 0, 0, 0, 0, 0, 0]).buffer), /shorter than its 10-byte header/);
});

test("rgbaByteLength is four bytes per pixel", () => {
  assert.equal(rgbaByteLength(1920, 1080), 1920 * 1080 * 4);
  assert.equal(rgbaByteLength(0, 10), 0);
});
