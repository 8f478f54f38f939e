// Parses the worker's binary screen-update messages (docs/viewer-protocol.md, "Binary messages").

export const KIND_RECT = 1;
export const KIND_BATCH_END = 2;

export const ENCODING_ZLIB_RGBA = 0;
export const ENCODING_PNG = 1;
export const ENCODING_JPEG = 2;

/** Size in bytes of a rectangle header: kind, encoding, then x, y, width, height as u16. */
export const RECT_HEADER_SIZE = 10;

export class FrameFormatError extends Error {
  constructor(message) {
    super(message);
    this.name = "FrameFormatError";
  }
}

/**
 * Parses one binary message from an ArrayBuffer.
 *
 * Returns `{kind: KIND_BATCH_END}` or `{kind: KIND_RECT, encoding, x, y, width, height,
 * payload}`, where `payload` is a Uint8Array view into `buffer`. Throws FrameFormatError for an
 * empty message, an unknown kind or encoding, or a rectangle shorter than its header.
 */
export function parseFrame(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length === 0) {
    throw new FrameFormatError("empty binary message");
  }

  const kind = bytes[0];
  if (kind === KIND_BATCH_END) {
    return { kind };
  }
  if (kind !== KIND_RECT) {
    throw new FrameFormatError(`unknown binary message kind ${kind}`);
  }
  if (bytes.length < RECT_HEADER_SIZE) {
    throw new FrameFormatError(
      `rectangle message is ${bytes.length} bytes, shorter than its ${RECT_HEADER_SIZE}-byte header`,
    );
  }

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const encoding = bytes[1];
  if (encoding !== ENCODING_ZLIB_RGBA && encoding !== ENCODING_PNG && encoding !== ENCODING_JPEG) {
    throw new FrameFormatError(`unknown rectangle encoding ${encoding}`);
  }

  return {
    kind,
    encoding,
    x: view.getUint16(2),
    y: view.getUint16(4),
    width: view.getUint16(6),
    height: view.getUint16(8),
    payload: bytes.subarray(RECT_HEADER_SIZE),
  };
}

/** Number of bytes an encoding-0 payload must inflate to: width × height × 4 (RGBA). */
export function rgbaByteLength(width, height) {
  return width * height * 4;
}
