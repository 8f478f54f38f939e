// Geometry and input-unit helpers shared by the portal and the viewer. No DOM access, so Node
// tests can import this module directly.

/** Largest desktop the portal requests, in pixels. */
export const MAX_DESKTOP_WIDTH = 1920;
export const MAX_DESKTOP_HEIGHT = 1080;

/** Smallest desktop the portal requests. A smaller window scales the desktop down instead. */
export const MIN_DESKTOP_WIDTH = 640;
export const MIN_DESKTOP_HEIGHT = 480;

/** Height in CSS pixels of the viewer's toolbar (`--toolbar-height` in style.css). */
export const VIEWER_TOOLBAR_HEIGHT = 48;

/** RDP wheel units for one notch of a mouse wheel. */
export const WHEEL_UNITS_PER_NOTCH = 120;

// Browser wheel deltas per physical notch, used to convert to RDP's 120 units per notch.
// NOTE: 100 pixels per notch is an estimate. Chromium's pixel delta depends on the platform, the
// system scroll setting and the page zoom, so a notch may map to more or fewer than 120 units.
const PIXELS_PER_NOTCH = 100;
const LINES_PER_NOTCH = 3;

const DOM_DELTA_PIXEL = 0;
const DOM_DELTA_LINE = 1;

/**
 * Largest wheel delta in one message: 32 notches. The worker rejects larger values as a bad
 * message, and eight bad messages close the socket.
 */
export const MAX_WHEEL_UNITS = 32 * WHEEL_UNITS_PER_NOTCH;

/**
 * Returns the desktop size to request for a browser window of `windowWidth`×`windowHeight` CSS
 * pixels: the window size clamped to 640×480 … 1920×1080, with the width rounded down to an
 * even number because the RDP display control channel (MS-RDPEDISP 2.2.2.2.1) rejects odd widths.
 */
export function requestedDesktopSize(windowWidth, windowHeight) {
  const width = clamp(Math.floor(windowWidth), MIN_DESKTOP_WIDTH, MAX_DESKTOP_WIDTH);
  const height = clamp(Math.floor(windowHeight), MIN_DESKTOP_HEIGHT, MAX_DESKTOP_HEIGHT);
  return { width: width - (width % 2), height };
}

/**
 * Returns the CSS size at which to show a `width`×`height` desktop inside an
 * `availableWidth`×`availableHeight` box: as large as fits, keeping the aspect ratio, and never
 * larger than the desktop itself, so remote text stays sharp.
 */
export function fitSize(width, height, availableWidth, availableHeight) {
  if (width <= 0 || height <= 0) {
    return { width: 0, height: 0 };
  }
  const scale = Math.min(1, Math.max(0, availableWidth) / width, Math.max(0, availableHeight) / height);
  return { width: Math.floor(width * scale), height: Math.floor(height * scale) };
}

/**
 * Maps a pointer position in client (viewport) coordinates to desktop pixels.
 *
 * `box` is the canvas's bounding client rectangle `{left, top, width, height}`, and
 * `desktopWidth` and `desktopHeight` are the desktop size in pixels. The result is clamped to the desktop, so a
 * drag that leaves the canvas pins to its edge.
 */
export function toDesktopPoint(clientX, clientY, box, desktopWidth, desktopHeight) {
  if (box.width <= 0 || box.height <= 0 || desktopWidth <= 0 || desktopHeight <= 0) {
    return { x: 0, y: 0 };
  }
  const x = Math.floor(((clientX - box.left) * desktopWidth) / box.width);
  const y = Math.floor(((clientY - box.top) * desktopHeight) / box.height);
  return { x: clamp(x, 0, desktopWidth - 1), y: clamp(y, 0, desktopHeight - 1) };
}

/**
 * Converts browser wheel deltas to RDP wheel units.
 *
 * Browser `deltaY` is positive when scrolling down, while RDP's `dy` is positive when rotating
 * up, so the vertical sign flips. Horizontal keeps its sign (positive = right in both). Touchpads
 * report fractions of a notch, so the accumulator keeps the remainder for the next event. A
 * delta beyond MAX_WHEEL_UNITS is capped and the excess dropped.
 */
export class WheelAccumulator {
  constructor() {
    this.pendingX = 0;
    this.pendingY = 0;
  }

  /** Adds one WheelEvent's deltas and returns `{dx, dy}` in whole RDP units, or null if both are 0. */
  add(deltaX, deltaY, deltaMode) {
    const unitsPerDelta = wheelUnitsPerDelta(deltaMode);
    this.pendingX += deltaX * unitsPerDelta;
    this.pendingY -= deltaY * unitsPerDelta;

    const dx = clamp(Math.trunc(this.pendingX), -MAX_WHEEL_UNITS, MAX_WHEEL_UNITS);
    const dy = clamp(Math.trunc(this.pendingY), -MAX_WHEEL_UNITS, MAX_WHEEL_UNITS);
    // Keep only the fraction below one unit. Anything over the cap is dropped, not replayed later.
    this.pendingX = Math.abs(dx) === MAX_WHEEL_UNITS ? 0 : this.pendingX - dx;
    this.pendingY = Math.abs(dy) === MAX_WHEEL_UNITS ? 0 : this.pendingY - dy;
    if (dx === 0 && dy === 0) {
      return null;
    }
    return { dx, dy };
  }

  reset() {
    this.pendingX = 0;
    this.pendingY = 0;
  }
}

/** Returns the RDP wheel units for one unit of a WheelEvent delta in `deltaMode`. */
export function wheelUnitsPerDelta(deltaMode) {
  if (deltaMode === DOM_DELTA_PIXEL) {
    return WHEEL_UNITS_PER_NOTCH / PIXELS_PER_NOTCH;
  }
  if (deltaMode === DOM_DELTA_LINE) {
    return WHEEL_UNITS_PER_NOTCH / LINES_PER_NOTCH;
  }
  // DOM_DELTA_PAGE: count a page as one notch.
  return WHEEL_UNITS_PER_NOTCH;
}

/** Returns the retry delay in ms after `failures` consecutive failures: 1 s, 2 s, 4 s … 15 s. */
export function reconnectDelayMs(failures) {
  const exponent = Math.max(0, failures - 1);
  return Math.min(15000, 1000 * 2 ** Math.min(exponent, 4));
}

function clamp(value, min, max) {
  return Math.min(max, Math.max(min, value));
}
