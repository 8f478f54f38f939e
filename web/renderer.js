// Draws the worker's screen updates on a canvas, in arrival order.
//
// Decoding is asynchronous (DecompressionStream, createImageBitmap) and a small PNG can finish
// before a large one that arrived first. Every rectangle therefore starts decoding at once, but
// drawing goes through one promise chain, so rectangles land in the order the worker sent them.

import {
  ENCODING_JPEG,
  ENCODING_PNG,
  ENCODING_ZLIB_RGBA,
  FrameFormatError,
  KIND_BATCH_END,
  parseFrame,
  rgbaByteLength,
} from "./frames.js";

const MIME_TYPES = {
  [ENCODING_PNG]: "image/png",
  [ENCODING_JPEG]: "image/jpeg",
};

export class FrameRenderer {
  /**
   * `onBatchEnd` runs after every rectangle of a batch (message kind 2) has been drawn.
   * `onDecodeError(error)` runs for each rectangle that failed to parse or decode, and the
   * renderer skips that rectangle and goes on.
   */
  constructor(canvas, { onBatchEnd = () => {}, onDecodeError = () => {} } = {}) {
    this.canvas = canvas;
    // The desktop has no transparency, so the canvas needs no alpha channel.
    this.context = canvas.getContext("2d", { alpha: false });
    this.onBatchEnd = onBatchEnd;
    this.onDecodeError = onDecodeError;
    this.queue = Promise.resolve();
    // Incremented by reset(). Queued work from an older generation is dropped.
    this.generation = 0;
  }

  /** Drops every queued update, for example when the connection that sent them is gone. */
  reset() {
    this.generation += 1;
    this.queue = Promise.resolve();
  }

  /** Resizes the canvas to the desktop size once every update queued before has been drawn. */
  resize(width, height) {
    this.enqueue((isCurrent) => {
      if (!isCurrent()) {
        return;
      }
      if (this.canvas.width !== width || this.canvas.height !== height) {
        this.canvas.width = width;
        this.canvas.height = height;
      }
    });
  }

  /** Parses one binary WebSocket message and queues it for drawing. */
  handleMessage(buffer) {
    let frame;
    try {
      frame = parseFrame(buffer);
    } catch (error) {
      this.onDecodeError(error);
      return;
    }

    if (frame.kind === KIND_BATCH_END) {
      this.enqueue((isCurrent) => {
        if (isCurrent()) {
          this.onBatchEnd();
        }
      });
      return;
    }
    if (frame.width === 0 || frame.height === 0) {
      return;
    }

    // Start decoding now, so decodes overlap, and draw in order below.
    const decoded = decodeRectangle(frame);
    // The queued step handles a rejection. This handler only keeps the browser from reporting
    // an unhandled rejection while the promise waits for its turn.
    decoded.catch(() => {});
    this.enqueue(async (isCurrent) => {
      const image = await decoded;
      if (isCurrent()) {
        this.draw(frame, image);
      } else if (!(image instanceof ImageData)) {
        image.close();
      }
    });
  }

  draw(frame, image) {
    if (image instanceof ImageData) {
      this.context.putImageData(image, frame.x, frame.y);
      return;
    }
    this.context.drawImage(image, frame.x, frame.y, frame.width, frame.height);
    image.close();
  }

  /**
   * Appends `step(isCurrent)` to the draw chain. `isCurrent()` turns false once reset() runs, so
   * a step that awaited across a reset must not draw. A step that throws is reported to
   * onDecodeError and the chain goes on.
   */
  enqueue(step) {
    const generation = this.generation;
    const isCurrent = () => generation === this.generation;
    this.queue = this.queue.then(() => step(isCurrent)).catch((error) => this.onDecodeError(error));
  }
}

/** Decodes a rectangle's payload to ImageData (encoding 0) or an ImageBitmap (PNG, JPEG). */
async function decodeRectangle(frame) {
  if (frame.encoding === ENCODING_ZLIB_RGBA) {
    return inflateRgba(frame.payload, frame.width, frame.height);
  }
  const blob = new Blob([frame.payload], { type: MIME_TYPES[frame.encoding] });
  return createImageBitmap(blob);
}

async function inflateRgba(payload, width, height) {
  // DecompressionStream("deflate") reads the zlib format (RFC 1950) the protocol specifies.
  const stream = new Blob([payload]).stream().pipeThrough(new DecompressionStream("deflate"));
  const buffer = await new Response(stream).arrayBuffer();
  const expected = rgbaByteLength(width, height);
  if (buffer.byteLength !== expected) {
    throw new FrameFormatError(
      `RGBA rectangle ${width}×${height} inflated to ${buffer.byteLength} bytes, expected ${expected}`,
    );
  }
  const pixels = new Uint8ClampedArray(buffer);
  // The protocol does not say that alpha is 255, and Chromium 156 (software rendering) shows
  // alpha-0 pixels as transparent even on an alpha:false canvas. Desktop pixels are opaque, so
  // force every alpha to 255.
  for (let i = 3; i < pixels.length; i += 4) {
    pixels[i] = 255;
  }
  return new ImageData(pixels, width, height);
}
