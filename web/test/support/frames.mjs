// Builds worker → browser binary messages for the mock worker: rectangles in each encoding and
// batch ends, as docs/viewer-protocol.md lays them out.

import { deflateSync } from "node:zlib";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) {
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

/** Returns a width × height RGBA buffer filled with one colour `[r, g, b, a]`. */
export function solidRgba(width, height, [r, g, b, a]) {
  const pixels = Buffer.alloc(width * height * 4);
  for (let i = 0; i < pixels.length; i += 4) {
    pixels[i] = r;
    pixels[i + 1] = g;
    pixels[i + 2] = b;
    pixels[i + 3] = a;
  }
  return pixels;
}

/** Encodes RGBA pixels as an 8-bit RGBA PNG with no row filtering. */
export function encodePng(width, height, rgba) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 6; // colour type: RGBA
  const rows = Buffer.alloc((width * 4 + 1) * height);
  for (let y = 0; y < height; y += 1) {
    const rowStart = y * (width * 4 + 1);
    rows[rowStart] = 0; // filter type: none
    rgba.copy(rows, rowStart + 1, y * width * 4, (y + 1) * width * 4);
  }
  return Buffer.concat([
    PNG_SIGNATURE,
    pngChunk("IHDR", header),
    pngChunk("IDAT", deflateSync(rows)),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Returns a rectangle message (kind 1) with the given encoding and payload. */
export function rectMessage(encoding, x, y, width, height, payload) {
  const header = Buffer.alloc(10);
  header[0] = 1;
  header[1] = encoding;
  header.writeUInt16BE(x, 2);
  header.writeUInt16BE(y, 4);
  header.writeUInt16BE(width, 6);
  header.writeUInt16BE(height, 8);
  return Buffer.concat([header, payload]);
}

/** Returns an encoding-0 rectangle: zlib-compressed (RFC 1950) RGBA of one colour. */
export function zlibRect(x, y, width, height, colour) {
  return rectMessage(0, x, y, width, height, deflateSync(solidRgba(width, height, colour)));
}

/** Returns an encoding-1 rectangle: a PNG of one colour. */
export function pngRect(x, y, width, height, colour) {
  return rectMessage(1, x, y, width, height, encodePng(width, height, solidRgba(width, height, colour)));
}

export const BATCH_END = Buffer.from([2]);
