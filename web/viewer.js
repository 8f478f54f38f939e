// Viewer page: attaches to one session, shows its desktop and sends input.
//
// Opened as viewer.html?session=<id>&mode=control|takeover|observe. The page requests a
// single-use token from the control plane (POST /api/v1/sessions/{id}/attach), opens the
// WebSocket to the worker in the response, and speaks the protocol in docs/viewer-protocol.md.
// When the socket drops without a reason from the worker, it attaches again with backoff.

import {
  ApiError,
  attachSession,
  clearLogin,
  detachSession,
  hasLogin,
  request,
  terminateSession,
} from "./api.js";
import { InputCapture } from "./input.js";
import { fitSize, reconnectDelayMs } from "./layout.js";
import { FrameRenderer } from "./renderer.js";

const PING_INTERVAL_MS = 5000;
// A worker that answers nothing, not even a ping, for this long is taken as gone (killed, paused
// or cut off): the page drops the socket and asks the control plane again, which reports the
// session `lost` once the worker's grace period has passed.
const SILENCE_LIMIT_MS = 15000;
// Attach conflicts retried while reconnecting before the page shows the error.
const CONFLICT_RETRIES = 12;
const CLOSE_TERMINATED = 4000;
// Someone detached the session through the API; the desktop keeps running.
const CLOSE_DETACHED = 4001;
const FINAL_SESSION_STATES = new Set(["terminated", "failed", "lost"]);
// Attach responses worth retrying: the control plane or a proxy in front of it is restarting.
const RETRYABLE_HTTP_STATUSES = new Set([502, 503, 504]);

const CLOSE_CODE_MESSAGES = {
  4400: "The worker closed the connection after too many invalid messages.",
  4401: "The worker rejected the viewer token.",
  4403: "Your organisation's policy no longer allows this.",
  4404: "The session no longer exists on its worker.",
  4409: "Another viewer holds control of this session.",
};

const elements = {
  body: document.body,
  state: document.getElementById("state"),
  notice: document.getElementById("notice"),
  sessionName: document.getElementById("session-name"),
  detach: document.getElementById("detach"),
  terminate: document.getElementById("terminate"),
  stage: document.getElementById("stage"),
  canvas: document.getElementById("screen"),
};

/**
 * Counters for tests and debugging. `ws` is the newest WebSocket, or null before the first. It
 * stays set after closing, so a test can read its readyState.
 */
const stats = { framesDrawn: 0, lastFrameAt: null, decodeErrors: 0, ws: null };
window.rdpViewer = stats;

const params = new URLSearchParams(window.location.search);
const sessionId = params.get("session");
const initialMode = params.get("mode") ?? "control";
// An observer sends no input and never requests control, also when it reconnects.
const observing = initialMode === "observe";
const reconnectMode = observing ? "observe" : "control";

const connection = {
  // Incremented for every attach attempt, so events from an older socket are ignored.
  attempt: 0,
  socket: null,
  // True between the worker's `ready` and the socket closing.
  ready: false,
  // True while this tab holds control: set by `ready`, cleared by `control_lost`.
  inControl: false,
  // Name of the logged-in user, from `ready.user`.
  user: null,
  desktop: { width: 0, height: 0 },
  // Message of the last worker `error` before `ready`, shown when the worker then closes.
  handshakeError: null,
  pingTimer: null,
  // Date.now() of the last message from the worker.
  lastHeard: 0,
  retryTimer: null,
  failures: 0,
  // Set once the page must not reconnect: a final state, control lost, a 4xxx close, the user
  // detached or terminated, or attach returned an error.
  stopped: false,
  // Set when the page was hidden with a live connection, to reattach if it is shown again.
  hiddenWhileLive: false,
};

const renderer = new FrameRenderer(elements.canvas, {
  onBatchEnd() {
    stats.framesDrawn += 1;
    stats.lastFrameAt = Date.now();
  },
  onDecodeError(error) {
    stats.decodeErrors += 1;
    console.warn("Skipped a screen update that failed to decode:", error);
  },
});

const input = new InputCapture(elements.canvas, {
  send: sendMessage,
  isEnabled: () => connection.ready && connection.inControl && !connection.stopped,
  desktopSize: () => connection.desktop,
});

/**
 * Sets the page state: `state` is one of connecting, active, detached, control_lost,
 * terminated, failed, lost or error, and `text` is what the state line shows.
 */
function setState(state, text) {
  elements.body.dataset.state = state;
  elements.body.dataset.stateText = text;
  elements.state.textContent = text;
  elements.state.className = `state state-${state}`;
  // Detach stays available while reconnecting, so the user can stop the retries.
  const finished = ["terminated", "failed", "lost", "error", "control_lost"].includes(state);
  elements.detach.disabled = finished || (state === "detached" && connection.stopped);
  elements.terminate.disabled = FINAL_SESSION_STATES.has(state);
}

/** Shows a problem that does not end the connection, such as a rejected button or an error message. */
function showNotice(message) {
  elements.notice.textContent = message;
  elements.notice.hidden = false;
}

function clearNotice() {
  elements.notice.textContent = "";
  elements.notice.hidden = true;
}

function sendMessage(message) {
  const socket = connection.socket;
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(message));
  }
}

function leaveForLogin() {
  clearLogin();
  window.location.assign("./");
}

/**
 * Requests a viewer token and opens the WebSocket. `reconnecting` keeps the state line on
 * "Detached — reconnecting…" instead of "Connecting…".
 */
async function connect(mode, reconnecting) {
  clearRetryTimer();
  closeSocket();
  const attempt = ++connection.attempt;
  if (reconnecting) {
    setState("detached", "Detached — reconnecting…");
  } else {
    setState("connecting", "Connecting…");
  }

  let attach;
  try {
    attach = await attachSession(sessionId, mode);
  } catch (error) {
    if (attempt !== connection.attempt || connection.stopped) {
      return;
    }
    if (error instanceof ApiError && error.isUnauthorized) {
      leaveForLogin();
      return;
    }
    const transient =
      error instanceof ApiError && (error.isNetworkError || RETRYABLE_HTTP_STATUSES.has(error.status));
    if (reconnecting && transient) {
      console.warn(`Attach for session ${sessionId} failed, retrying:`, error.message);
      scheduleReconnect();
      return;
    }
    console.warn(`Attach for session ${sessionId} failed (${error.code}):`, error.message);
    if (await showFinalState(attempt)) {
      connection.stopped = true;
      return;
    }
    if (attempt !== connection.attempt || connection.stopped) {
      return;
    }
    if (reconnecting && heldByThisUser(error) && connection.failures < CONFLICT_RETRIES) {
      // After the worker died, the control plane still records this tab's control until it
      // declares the session lost, and refuses the attach meanwhile: keep asking.
      scheduleReconnect();
      return;
    }
    connection.stopped = true;
    setState("error", `Error: ${error.message}`);
    return;
  }
  if (attempt !== connection.attempt || connection.stopped) {
    return;
  }
  openSocket(attach, attempt);
}

function openSocket(attach, attempt) {
  renderer.reset();
  connection.ready = false;
  connection.handshakeError = null;

  let socket;
  try {
    socket = new WebSocket(webSocketUrl(attach.ws_url));
  } catch (error) {
    connection.stopped = true;
    setState("error", `Error: invalid worker address ${attach.ws_url}: ${error.message}`);
    return;
  }
  socket.binaryType = "arraybuffer";
  connection.socket = socket;
  stats.ws = socket;

  socket.addEventListener("open", () => {
    if (attempt === connection.attempt) {
      socket.send(JSON.stringify({ type: "hello", token: attach.token }));
    }
  });
  socket.addEventListener("message", (event) => {
    if (attempt !== connection.attempt) {
      return;
    }
    connection.lastHeard = Date.now();
    if (typeof event.data === "string") {
      handleTextMessage(event.data);
    } else {
      renderer.handleMessage(event.data);
    }
  });
  socket.addEventListener("close", (event) => {
    if (attempt === connection.attempt) {
      handleClose(event);
    }
  });
}

/** Resolves `ws_url` against the page, mapping http(s) to ws(s), so a relative URL also works. */
function webSocketUrl(value) {
  const url = new URL(value, window.location.href);
  if (url.protocol === "http:") {
    url.protocol = "ws:";
  } else if (url.protocol === "https:") {
    url.protocol = "wss:";
  }
  return url.href;
}

function handleTextMessage(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    console.warn("Ignored a text message that is not JSON:", text.slice(0, 200));
    return;
  }

  switch (message.type) {
    case "ready":
      handleReady(message);
      break;
    case "state":
      handleSessionState(message);
      break;
    case "control_lost":
      handleControlLost(message);
      break;
    case "resize":
      setDesktopSize(message.width, message.height);
      break;
    case "error":
      handleWorkerError(message);
      break;
    case "pong":
      break;
    default:
      console.warn("Ignored a message of unknown type:", message.type);
  }
}

function handleReady(message) {
  connection.ready = true;
  connection.inControl = !observing;
  connection.user = message.user ?? null;
  connection.failures = 0;
  clearNotice();
  setDesktopSize(message.width, message.height);
  startPing();
  // The worker follows `ready` with a `state` message, and the state line waits for it.
  setState("connecting", "Connecting…");
  elements.canvas.focus({ preventScroll: true });
}

function handleSessionState(message) {
  const reason = message.reason || "no reason given";
  switch (message.state) {
    case "active": {
      const holder = message.control?.user;
      if (observing) {
        setState("active", `Observing — ${holder ?? "nobody"} has control`);
      } else if (connection.inControl && (!holder || holder === connection.user)) {
        setState("active", "Active — you have control");
      } else {
        setState("active", `Active — ${holder ?? "another viewer"} has control`);
      }
      break;
    }
    case "detached":
      setState("detached", "Detached");
      break;
    case "terminated":
      finish("terminated", `Terminated: ${reason}`);
      break;
    case "failed":
      finish("failed", `Failed: ${reason}`);
      break;
    case "lost":
      finish("lost", `Lost: ${reason}`);
      break;
    case "requested":
    case "connecting":
      setState("connecting", "Connecting…");
      break;
    default:
      console.warn("Ignored an unknown session state:", message.state);
  }
}

function handleControlLost(message) {
  connection.inControl = false;
  connection.stopped = true;
  clearRetryTimer();
  setState("control_lost", `Control taken by ${message.by ?? "another user"} at ${formatTime(message.at)}`);
}

function handleWorkerError(message) {
  const text = message.message || message.code || "unknown error";
  if (!connection.ready) {
    // A handshake failure. The worker closes with a 4xxx code next.
    console.warn(`Worker rejected the viewer for session ${sessionId} (${message.code}): ${text}`);
    connection.handshakeError = text;
    setState("error", `Error: ${text}`);
    return;
  }
  if (message.code === "not_in_control") {
    connection.inControl = false;
  }
  console.warn(`Worker error for session ${sessionId} (${message.code}): ${text}`);
  showNotice(text);
}

/** Marks a final session state: no input, no reconnect. */
function finish(state, text) {
  connection.stopped = true;
  connection.inControl = false;
  clearRetryTimer();
  setState(state, text);
}

function handleClose(event) {
  connection.socket = null;
  connection.ready = false;
  stopPing();
  // A notice describes the connection that just closed.
  clearNotice();

  const state = elements.body.dataset.state;
  if (FINAL_SESSION_STATES.has(state)) {
    return;
  }
  if (event.code === CLOSE_TERMINATED) {
    finish("terminated", "Terminated: the session was ended");
    return;
  }
  if (connection.stopped) {
    return;
  }
  if (event.code === CLOSE_DETACHED) {
    connection.stopped = true;
    setState("detached", `Detached: ${event.reason || "the session was detached"}`);
    return;
  }
  if (event.code >= 4000 && event.code <= 4999) {
    connection.stopped = true;
    const text =
      connection.handshakeError ||
      event.reason ||
      CLOSE_CODE_MESSAGES[event.code] ||
      `The worker closed the connection (code ${event.code}).`;
    console.warn(`Viewer socket for session ${sessionId} closed with code ${event.code}: ${text}`);
    setState("error", `Error: ${text}`);
    return;
  }
  console.warn(`Viewer socket for session ${sessionId} closed with code ${event.code}, reconnecting.`);
  scheduleReconnect();
}

function scheduleReconnect() {
  clearRetryTimer();
  connection.failures += 1;
  const delay = reconnectDelayMs(connection.failures);
  setState("detached", "Detached — reconnecting…");
  connection.retryTimer = setTimeout(() => {
    connection.retryTimer = null;
    connect(reconnectMode, true);
  }, delay);
}

function clearRetryTimer() {
  if (connection.retryTimer !== null) {
    clearTimeout(connection.retryTimer);
    connection.retryTimer = null;
  }
}

function startPing() {
  stopPing();
  connection.lastHeard = Date.now();
  connection.pingTimer = setInterval(() => {
    if (Date.now() - connection.lastHeard > SILENCE_LIMIT_MS) {
      console.warn(`The worker of session ${sessionId} has been silent for ${SILENCE_LIMIT_MS} ms; reconnecting.`);
      // Closing waits for a frozen peer's answer, so the old socket is abandoned instead.
      closeSocket();
      scheduleReconnect();
      return;
    }
    sendMessage({ type: "ping" });
  }, PING_INTERVAL_MS);
}

function stopPing() {
  if (connection.pingTimer !== null) {
    clearInterval(connection.pingTimer);
    connection.pingTimer = null;
  }
}

/** Closes the current socket without triggering a reconnect. */
function closeSocket() {
  connection.attempt += 1;
  connection.ready = false;
  stopPing();
  const socket = connection.socket;
  connection.socket = null;
  if (socket && socket.readyState <= WebSocket.OPEN) {
    socket.close(1000, "viewer closed");
  }
}

function setDesktopSize(width, height) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    console.warn("Ignored an invalid desktop size:", width, height);
    return;
  }
  connection.desktop = { width, height };
  renderer.resize(width, height);
  layoutCanvas();
}

/** Scales the canvas with CSS to fit the stage, keeping the desktop's aspect ratio. */
function layoutCanvas() {
  const { width, height } = connection.desktop;
  const size = fitSize(width, height, elements.stage.clientWidth, elements.stage.clientHeight);
  elements.canvas.style.width = `${size.width}px`;
  elements.canvas.style.height = `${size.height}px`;
}

async function onDetachClick() {
  connection.stopped = true;
  clearRetryTimer();
  clearNotice();
  elements.detach.disabled = true;
  if (observing) {
    // Detaching through the API would detach the session from the viewer in control.
    closeSocket();
    setState("detached", "Stopped observing");
    return;
  }
  sendMessage({ type: "release_all" });
  try {
    await detachSession(sessionId);
    closeSocket();
    setState("detached", "Detached");
  } catch (error) {
    closeSocket();
    if (error instanceof ApiError && error.isUnauthorized) {
      leaveForLogin();
      return;
    }
    setState("error", `Error: ${error.message}`);
  }
}

async function onTerminateClick() {
  if (!window.confirm("Terminate this session? Unsaved work on the desktop is lost.")) {
    return;
  }
  clearNotice();
  elements.terminate.disabled = true;
  const wasStopped = connection.stopped;
  connection.stopped = true;
  clearRetryTimer();
  try {
    const session = await terminateSession(sessionId, "ended by user");
    closeSocket();
    finish("terminated", `Terminated: ${session?.reason || "ended by user"}`);
  } catch (error) {
    if (error instanceof ApiError && error.isUnauthorized) {
      closeSocket();
      leaveForLogin();
      return;
    }
    // Terminate failed, so keep the connection as it is and let the user try again.
    connection.stopped = wasStopped;
    elements.terminate.disabled = false;
    showNotice(`Could not terminate the session: ${error.message}`);
    if (!wasStopped && connection.socket === null && connection.retryTimer === null) {
      scheduleReconnect();
    }
  }
}

function onOnline() {
  if (connection.retryTimer !== null && !connection.stopped) {
    connect(reconnectMode, true);
  }
}

/**
 * Tells whether an attach was refused because this very user holds control, which after a
 * worker's death is this tab's own stale hold. The control plane names the holder in the
 * message ("control is held by NAME since …").
 */
function heldByThisUser(error) {
  return (
    error instanceof ApiError &&
    error.code === "control_held" &&
    connection.user !== null &&
    error.message.startsWith(`control is held by ${connection.user} since `)
  );
}

/**
 * When the session has ended (for example `lost` because its worker died), shows that state and
 * its reason instead of the attach error. Returns whether it did.
 */
async function showFinalState(attempt) {
  try {
    const session = await request("GET", `/api/v1/sessions/${encodeURIComponent(sessionId)}`);
    if (attempt !== connection.attempt || !FINAL_SESSION_STATES.has(session?.state)) {
      return false;
    }
    handleSessionState({ state: session.state, reason: session.reason });
    return true;
  } catch (error) {
    console.warn(`Could not load session ${sessionId}:`, error.message);
    return false;
  }
}

/** Shows the target's name in the toolbar. The page works without it. */
async function loadSessionName() {
  try {
    const session = await request("GET", `/api/v1/sessions/${encodeURIComponent(sessionId)}`);
    const name = session?.target?.name;
    if (name) {
      elements.sessionName.textContent = name;
      document.title = `${name} · rdp-proxy`;
    }
  } catch (error) {
    console.warn(`Could not load session ${sessionId}:`, error.message);
  }
}

function formatTime(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    return value ?? "an unknown time";
  }
  return date.toLocaleTimeString();
}

/**
 * Leaving the page (a link, Back, closing the tab) closes the socket, so the worker records the
 * session as detached at once. Without this a browser that keeps the page in its back/forward
 * cache would keep the socket, and control, open while nobody sees the desktop.
 */
function onPageHide() {
  clearRetryTimer();
  closeSocket();
  connection.hiddenWhileLive = !connection.stopped;
}

/** Coming back to a page restored from the back/forward cache reattaches it. */
function onPageShow(event) {
  if (event.persisted && connection.hiddenWhileLive && !connection.stopped) {
    connection.hiddenWhileLive = false;
    connect(reconnectMode, true);
  }
}

function start() {
  elements.detach.addEventListener("click", onDetachClick);
  elements.terminate.addEventListener("click", onTerminateClick);
  window.addEventListener("online", onOnline);
  window.addEventListener("pagehide", onPageHide);
  window.addEventListener("pageshow", onPageShow);
  new ResizeObserver(layoutCanvas).observe(elements.stage);

  if (!sessionId) {
    connection.stopped = true;
    setState("error", "Error: the page address has no session id (expected ?session=<id>).");
    return;
  }
  if (!["control", "takeover", "observe"].includes(initialMode)) {
    connection.stopped = true;
    setState("error", `Error: invalid mode "${initialMode}" (expected control, takeover or observe).`);
    return;
  }
  if (observing) {
    elements.detach.textContent = "Stop observing";
  }
  if (!hasLogin()) {
    leaveForLogin();
    return;
  }
  loadSessionName();
  connect(initialMode, false);
}

start();
