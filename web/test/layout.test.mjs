import assert from "node:assert/strict";
import { test } from "node:test";

import {
  fitSize,
  MAX_WHEEL_UNITS,
  reconnectDelayMs,
  requestedDesktopSize,
  toDesktopPoint,
  WheelAccumulator,
  wheelUnitsPerDelta,
} from "../layout.js";

test("requestedDesktopSize keeps a mid-size window", () => {
  assert.deepEqual(requestedDesktopSize(1280, 752), { width: 1280, height: 752 });
});

test("requestedDesktopSize caps at 1920x1080", () => {
  assert.deepEqual(requestedDesktopSize(2560, 1400), { width: 1920, height: 1080 });
});

test("requestedDesktopSize raises to 640x480", () => {
  assert.deepEqual(requestedDesktopSize(300, 200), { width: 640, height: 480 });
});

test("requestedDesktopSize makes the width even", () => {
  const size = requestedDesktopSize(1281.7, 751.5);
  assert.equal(size.width, 1280);
  assert.equal(size.height, 751);
});

test("fitSize scales down keeping aspect", () => {
  assert.deepEqual(fitSize(1920, 1080, 1280, 752), { width: 1280, height: 720 });
  assert.deepEqual(fitSize(1920, 1080, 2000, 540), { width: 960, height: 540 });
});

test("fitSize never scales up", () => {
  assert.deepEqual(fitSize(1024, 768, 1920, 1080), { width: 1024, height: 768 });
});

test("fitSize handles empty sizes", () => {
  assert.deepEqual(fitSize(0, 0, 800, 600), { width: 0, height: 0 });
  assert.deepEqual(fitSize(800, 600, -5, 600), { width: 0, height: 0 });
});

test("toDesktopPoint at scale 1", () => {
  const box = { left: 10, top: 50, width: 800, height: 600 };
  assert.deepEqual(toDesktopPoint(10, 50, box, 800, 600), { x: 0, y: 0 });
  assert.deepEqual(toDesktopPoint(410.6, 350.2, box, 800, 600), { x: 400, y: 300 });
});

test("toDesktopPoint scales up from a smaller canvas", () => {
  // A 1920x1080 desktop drawn at 960x540 CSS pixels: every CSS pixel is two desktop pixels.
  const box = { left: 0, top: 48, width: 960, height: 540 };
  assert.deepEqual(toDesktopPoint(480, 48 + 270, box, 1920, 1080), { x: 960, y: 540 });
  assert.deepEqual(toDesktopPoint(959.9, 48 + 539.9, box, 1920, 1080), { x: 1919, y: 1079 });
});

test("toDesktopPoint clamps outside the canvas", () => {
  const box = { left: 100, top: 100, width: 400, height: 300 };
  assert.deepEqual(toDesktopPoint(0, 0, box, 800, 600), { x: 0, y: 0 });
  assert.deepEqual(toDesktopPoint(5000, 5000, box, 800, 600), { x: 799, y: 599 });
  assert.deepEqual(toDesktopPoint(500, 400, box, 800, 600), { x: 799, y: 599 }, "right and bottom edges");
});

test("toDesktopPoint with an empty canvas", () => {
  assert.deepEqual(toDesktopPoint(5, 5, { left: 0, top: 0, width: 0, height: 0 }, 800, 600), { x: 0, y: 0 });
});

test("wheel notch down is -120", () => {
  const wheel = new WheelAccumulator();
  assert.deepEqual(wheel.add(0, 100, 0), { dx: 0, dy: -120 });
  assert.deepEqual(wheel.add(0, 3, 1), { dx: 0, dy: -120 }, "three lines");
  assert.deepEqual(wheel.add(0, 1, 2), { dx: 0, dy: -120 }, "one page");
});

test("wheel up and right are positive", () => {
  const wheel = new WheelAccumulator();
  assert.deepEqual(wheel.add(0, -100, 0), { dx: 0, dy: 120 });
  assert.deepEqual(wheel.add(100, 0, 0), { dx: 120, dy: 0 });
});

test("wheel keeps fractional remainders", () => {
  const wheel = new WheelAccumulator();
  assert.equal(wheel.add(0, 0.5, 0), null, "0.6 units is below one");
  assert.deepEqual(wheel.add(0, 0.5, 0), { dx: 0, dy: -1 });
  assert.ok(Math.abs(wheel.pendingY + 0.2) < 1e-9, `remainder ${wheel.pendingY} is -0.2`);
  wheel.reset();
  assert.equal(wheel.pendingY, 0);
});

test("wheel caps at 32 notches", () => {
  const wheel = new WheelAccumulator();
  assert.equal(MAX_WHEEL_UNITS, 3840);
  assert.deepEqual(wheel.add(0, -1e9, 0), { dx: 0, dy: 3840 });
  assert.deepEqual(wheel.add(1e9, 1e9, 0), { dx: 3840, dy: -3840 });
  assert.equal(wheel.add(0, 0, 0), null, "the excess is dropped, not replayed");
});

test("wheelUnitsPerDelta per mode", () => {
  assert.equal(wheelUnitsPerDelta(0), 1.2);
  assert.equal(wheelUnitsPerDelta(1), 40);
  assert.equal(wheelUnitsPerDelta(2), 120);
});

test("reconnect delay doubles to 15 s", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 20].map(reconnectDelayMs),
    [1000, 2000, 4000, 8000, 15000, 15000, 15000],
  );
  assert.equal(reconnectDelayMs(0), 1000, "treats 0 like the first failure");
});
