// Captures keyboard, mouse and wheel input on the desktop canvas and turns it into viewer
// protocol messages (docs/viewer-protocol.md, "Browser → worker").

import { toDesktopPoint, WheelAccumulator } from "./layout.js";
import { keyMessage } from "./scancodes.js";

const BUTTON_NAMES = { 0: "left", 1: "middle", 2: "right" };

export class InputCapture {
  /**
   * `send(message)` delivers one message object to the worker. `isEnabled()` returns whether
   * this tab may send input now (connected and in control). `desktopSize()` returns
   * `{width, height}` of the remote desktop in pixels.
   */
  constructor(canvas, { send, isEnabled, desktopSize }) {
    this.canvas = canvas;
    this.send = send;
    this.isEnabled = isEnabled;
    this.desktopSize = desktopSize;

    this.pressedButtons = new Set();
    this.wheel = new WheelAccumulator();
    this.pendingMove = null;
    this.moveFrame = null;
    this.lastSentPoint = null;

    this.onKeyDown = (event) => this.handleKey(event, true);
    this.onKeyUp = (event) => this.handleKey(event, false);
    this.onMouseMove = (event) => this.handleMouseMove(event);
    this.onMouseDown = (event) => this.handleMouseDown(event);
    this.onMouseUp = (event) => this.handleMouseUp(event);
    this.onWheel = (event) => this.handleWheel(event);
    this.onContextMenu = (event) => event.preventDefault();
    this.onBlur = () => this.releaseAll();

    canvas.addEventListener("keydown", this.onKeyDown);
    canvas.addEventListener("keyup", this.onKeyUp);
    canvas.addEventListener("mousedown", this.onMouseDown);
    canvas.addEventListener("wheel", this.onWheel, { passive: false });
    canvas.addEventListener("contextmenu", this.onContextMenu);
    canvas.addEventListener("blur", this.onBlur);
    // Moves and releases are watched on the window so a drag that leaves the canvas still
    // reaches the desktop, pinned to its edge.
    window.addEventListener("mousemove", this.onMouseMove);
    window.addEventListener("mouseup", this.onMouseUp);
  }

  dispose() {
    this.canvas.removeEventListener("keydown", this.onKeyDown);
    this.canvas.removeEventListener("keyup", this.onKeyUp);
    this.canvas.removeEventListener("mousedown", this.onMouseDown);
    this.canvas.removeEventListener("wheel", this.onWheel);
    this.canvas.removeEventListener("contextmenu", this.onContextMenu);
    this.canvas.removeEventListener("blur", this.onBlur);
    window.removeEventListener("mousemove", this.onMouseMove);
    window.removeEventListener("mouseup", this.onMouseUp);
    this.cancelPendingMove();
  }

  /** Sends `release_all` and clears the pressed buttons. Runs when the canvas loses focus. */
  releaseAll() {
    this.pressedButtons.clear();
    this.wheel.reset();
    this.cancelPendingMove();
    if (this.isEnabled()) {
      this.send({ type: "release_all" });
    }
  }

  handleKey(event, down) {
    if (!this.isEnabled()) {
      return;
    }
    // Events during an input method editor composition describe the composition, not a key.
    // NOTE: text composed in an IME (Chinese, Japanese, Korean) is therefore not sent.
    if (event.isComposing || event.keyCode === 229) {
      return;
    }
    event.preventDefault();
    const message = keyMessage(event.code, event.key, down);
    if (message) {
      this.send(message);
    }
  }

  desktopPoint(event) {
    const { width, height } = this.desktopSize();
    return toDesktopPoint(event.clientX, event.clientY, this.canvas.getBoundingClientRect(), width, height);
  }

  handleMouseMove(event) {
    if (event.target !== this.canvas && this.pressedButtons.size === 0) {
      return;
    }
    if (!this.isEnabled()) {
      return;
    }
    this.pendingMove = this.desktopPoint(event);
    if (this.moveFrame === null) {
      this.moveFrame = requestAnimationFrame(() => {
        this.moveFrame = null;
        this.flushMove();
      });
    }
  }

  /** Sends the newest pointer position now, so a button or wheel event never overtakes it. */
  flushMove() {
    const point = this.pendingMove;
    this.pendingMove = null;
    if (point === null || !this.isEnabled()) {
      return;
    }
    if (this.lastSentPoint && this.lastSentPoint.x === point.x && this.lastSentPoint.y === point.y) {
      return;
    }
    this.lastSentPoint = point;
    this.send({ type: "mouse", x: point.x, y: point.y });
  }

  cancelPendingMove() {
    if (this.moveFrame !== null) {
      cancelAnimationFrame(this.moveFrame);
      this.moveFrame = null;
    }
    this.pendingMove = null;
  }

  handleMouseDown(event) {
    // Focus explicitly, because preventDefault below would otherwise stop the canvas taking focus.
    this.canvas.focus({ preventScroll: true });
    const button = BUTTON_NAMES[event.button];
    if (!button || !this.isEnabled()) {
      return;
    }
    // Stops text selection, middle-button autoscroll and middle-click paste.
    event.preventDefault();
    this.flushMove();
    const point = this.desktopPoint(event);
    this.lastSentPoint = point;
    this.pressedButtons.add(button);
    this.send({ type: "button", button, down: true, x: point.x, y: point.y });
  }

  handleMouseUp(event) {
    const button = BUTTON_NAMES[event.button];
    if (!button || !this.pressedButtons.has(button)) {
      return;
    }
    this.pressedButtons.delete(button);
    if (!this.isEnabled()) {
      return;
    }
    this.flushMove();
    const point = this.desktopPoint(event);
    this.lastSentPoint = point;
    this.send({ type: "button", button, down: false, x: point.x, y: point.y });
  }

  handleWheel(event) {
    if (!this.isEnabled()) {
      return;
    }
    event.preventDefault();
    this.flushMove();
    const delta = this.wheel.add(event.deltaX, event.deltaY, event.deltaMode);
    if (delta) {
      this.send({ type: "wheel", dx: delta.dx, dy: delta.dy });
    }
  }
}
