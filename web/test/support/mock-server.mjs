// A stand-in for the control plane and one worker, for browser tests of web/ before the Rust
// backend runs. Serves web/ as static files, implements the /api/v1 endpoints the pages call,
// and speaks the worker side of docs/viewer-protocol.md on /v1/sessions/{id}/viewer.
// Listens on 127.0.0.1 only. State lives in memory, and tests read and change it directly.

import { randomBytes, randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";

import { BATCH_END, pngRect, zlibRect } from "./frames.mjs";
import { acceptWebSocket } from "./websocket.mjs";

const CONTENT_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

const FINAL_STATES = new Set(["terminated", "failed", "lost"]);

/** Colours of the first frame, so tests can check pixels and draw order. */
export const COLOURS = {
  background: [30, 60, 90, 255],
  pngSquare: [220, 20, 20, 255],
  rgbaCorner: [20, 200, 60, 255],
};

const USERS = [
  { id: "u-alice", name: "alice", role: "admin", org_id: "org-1", password: "alice-password" },
  { id: "u-bob", name: "bob", role: "member", org_id: "org-1", password: "bob-password" },
];

const TARGETS = [
  { id: "t-build", name: "Build server", host: "10.0.0.5", port: 3389, security: "nla" },
  { id: "t-test", name: "Test desktop", host: "10.0.0.6", port: 3389, security: "tls" },
];

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class MockServer extends EventEmitter {
  constructor(webRoot) {
    super();
    this.webRoot = path.resolve(webRoot);
    this.accessTokens = new Map();
    this.viewerTokens = new Map();
    this.sessions = new Map();
    this.viewers = [];
    // Every API request as {method, path, body}, oldest first.
    this.requests = [];
    // Test hook: (session, mode, user) returns {status, code, message} to reject an attach
    // request with, or null to proceed.
    this.attachHook = null;
    // Test hook: (viewer, message) runs on a viewer's first message, and returning true skips
    // the normal handshake.
    this.helloHook = null;
    this.server = http.createServer((request, response) => this.handleHttp(request, response));
    this.server.on("upgrade", (request, socket, head) => this.handleUpgrade(request, socket, head));
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = this.server.address().port;
    this.origin = `http://127.0.0.1:${this.port}`;
    return this;
  }

  async close() {
    for (const viewer of this.viewers) {
      viewer.connection.destroy();
    }
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  /** Logs `username` in without HTTP and returns the login response body. */
  loginAs(username) {
    const user = USERS.find((candidate) => candidate.name === username);
    const token = randomBytes(16).toString("hex");
    this.accessTokens.set(token, user);
    return {
      access_token: token,
      expires_at: new Date(Date.now() + 3600_000).toISOString(),
      user: publicUser(user),
    };
  }

  /** Creates a session owned by `username` on target `targetId`, already connected (detached). */
  createSession(username, targetId = TARGETS[0].id, width = 800, height = 600) {
    const user = USERS.find((candidate) => candidate.name === username);
    const target = TARGETS.find((candidate) => candidate.id === targetId);
    const now = new Date().toISOString();
    const session = {
      id: randomUUID(),
      org_id: user.org_id,
      owner: { id: user.id, name: user.name },
      target: { id: target.id, name: target.name },
      state: "detached",
      version: 1,
      reason: null,
      width,
      height,
      created_at: now,
      updated_at: now,
      control: null,
    };
    this.sessions.set(session.id, session);
    return session;
  }

  /** Returns the viewer connections of a session, oldest first. */
  viewersOf(sessionId) {
    return this.viewers.filter((viewer) => viewer.sessionId === sessionId);
  }

  attachRequests(sessionId) {
    return this.requests.filter(
      (entry) => entry.method === "POST" && entry.path === `/api/v1/sessions/${sessionId}/attach`,
    );
  }

  updateSession(session, changes) {
    Object.assign(session, changes, { version: session.version + 1, updated_at: new Date().toISOString() });
  }

  /** Ends a session as a worker would: a `state` message, then close code 4000. */
  terminate(session, reason) {
    this.updateSession(session, { state: "terminated", reason, control: null });
    for (const viewer of this.viewersOf(session.id)) {
      if (viewer.connection.isOpen) {
        viewer.connection.sendJson({ type: "state", state: "terminated", reason });
        viewer.connection.close(4000, "session terminated");
      }
    }
  }

  async handleHttp(request, response) {
    const url = new URL(request.url, "http://127.0.0.1");
    try {
      if (url.pathname.startsWith("/api/")) {
        const body = await readJsonBody(request);
        this.requests.push({ method: request.method, path: url.pathname, body });
        const result = this.route(request, url.pathname, body);
        sendJson(response, 200, result);
        return;
      }
      await this.serveStatic(url.pathname, response);
    } catch (error) {
      if (error instanceof ApiFailure) {
        sendJson(response, error.status, { error: { code: error.code, message: error.message } });
        return;
      }
      sendJson(response, 500, { error: { code: "internal", message: String(error) } });
    }
  }

  async serveStatic(pathname, response) {
    const relative = pathname === "/" ? "index.html" : decodeURIComponent(pathname.slice(1));
    const file = path.resolve(this.webRoot, relative);
    if (!file.startsWith(this.webRoot + path.sep)) {
      response.writeHead(404).end();
      return;
    }
    try {
      const content = await readFile(file);
      const type = CONTENT_TYPES[path.extname(file)] ?? "application/octet-stream";
      response.writeHead(200, { "Content-Type": type, "Cache-Control": "no-store" }).end(content);
    } catch {
      response.writeHead(404).end();
    }
  }

  authenticate(request) {
    const header = request.headers.authorization ?? "";
    const user = this.accessTokens.get(header.replace(/^Bearer /, ""));
    if (!user) {
      throw new ApiFailure(401, "unauthorized", "Your sign-in has expired. Sign in again.");
    }
    return user;
  }

  route(request, pathname, body) {
    const method = request.method;
    if (method === "POST" && pathname === "/api/v1/login") {
      const user = USERS.find((candidate) => candidate.name === body?.username);
      if (!user || user.password !== body?.password) {
        throw new ApiFailure(401, "invalid_credentials", "Invalid username or password.");
      }
      return this.loginAs(user.name);
    }

    const user = this.authenticate(request);
    if (method === "GET" && pathname === "/api/v1/targets") {
      return { items: TARGETS };
    }
    if (method === "GET" && pathname === "/api/v1/sessions") {
      return { items: [...this.sessions.values()] };
    }
    if (method === "POST" && pathname === "/api/v1/sessions") {
      if (!TARGETS.some((target) => target.id === body?.target_id)) {
        throw new ApiFailure(404, "target_not_found", `Target ${body?.target_id} not found.`);
      }
      return this.createSession(user.name, body.target_id, body.width ?? 1024, body.height ?? 768);
    }

    const match = pathname.match(/^\/api\/v1\/sessions\/([^/]+)(?:\/(attach|detach|terminate))?$/);
    const session = match && this.sessions.get(match[1]);
    if (!session) {
      throw new ApiFailure(404, "session_not_found", "Session not found.");
    }
    const action = match[2];
    if (method === "GET" && !action) {
      return session;
    }
    if (method === "POST" && action === "attach") {
      return this.attach(session, body?.mode, user);
    }
    if (method === "POST" && action === "detach") {
      this.updateSession(session, { state: "detached", control: null });
      return session;
    }
    if (method === "POST" && action === "terminate") {
      this.terminate(session, body?.reason ?? "terminated");
      return session;
    }
    throw new ApiFailure(405, "method_not_allowed", `${method} ${pathname} is not supported.`);
  }

  attach(session, mode, user) {
    const hooked = this.attachHook?.(session, mode, user);
    if (hooked) {
      throw new ApiFailure(hooked.status, hooked.code, hooked.message);
    }
    if (FINAL_STATES.has(session.state)) {
      throw new ApiFailure(409, "session_final", `Session is ${session.state}.`);
    }
    if (mode === "takeover" && user.role !== "admin") {
      throw new ApiFailure(403, "forbidden", "Only admins can take over a session.");
    }
    if (mode === "control" && session.control && session.control.user !== user.name) {
      throw new ApiFailure(409, "control_held", `${session.control.user} has control of this session.`);
    }
    const token = randomBytes(32).toString("hex");
    this.viewerTokens.set(token, { sessionId: session.id, mode, user, expiresAt: Date.now() + 60_000 });
    return {
      token,
      ws_url: `ws://127.0.0.1:${this.port}/v1/sessions/${session.id}/viewer`,
      expires_at: new Date(Date.now() + 60_000).toISOString(),
      viewer_url: `/viewer.html?session=${session.id}&mode=${mode}`,
    };
  }

  handleUpgrade(request, socket, head) {
    const match = new URL(request.url, "http://127.0.0.1").pathname.match(/^\/v1\/sessions\/([^/]+)\/viewer$/);
    if (!match) {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
      return;
    }
    const connection = acceptWebSocket(request, socket, head);
    if (!connection) {
      return;
    }
    const viewer = {
      id: randomUUID(),
      sessionId: match[1],
      connection,
      received: [],
      // Messages that broke the protocol, as {message, error}. Tests expect none.
      rejected: [],
      user: null,
      holdsControl: false,
      closeCode: null,
    };
    this.viewers.push(viewer);
    connection.on("message", (data) => this.handleViewerMessage(viewer, data));
    connection.on("close", (code) => this.handleViewerClose(viewer, code));
    this.emit("viewer", viewer);
  }

  handleViewerMessage(viewer, data) {
    if (typeof data !== "string") {
      viewer.received.push({ type: "(binary)" });
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      viewer.received.push({ type: "(invalid)", data });
      return;
    }
    viewer.received.push(message);
    const problem = validateClientMessage(message, data);
    if (problem) {
      viewer.rejected.push({ message, error: problem });
      viewer.connection.sendJson({ type: "error", code: "bad_message", message: problem });
      return;
    }
    this.emit("viewer-message", viewer, message);

    if (viewer.user === null) {
      if (!this.helloHook?.(viewer, message)) {
        this.handleHello(viewer, message);
      }
      return;
    }
    if (message.type === "ping") {
      viewer.connection.sendJson({ type: "pong" });
    }
  }

  handleHello(viewer, message) {
    const { connection } = viewer;
    const grant = message.type === "hello" ? this.viewerTokens.get(message.token) : undefined;
    this.viewerTokens.delete(message.token);
    if (!grant || grant.sessionId !== viewer.sessionId || grant.expiresAt < Date.now()) {
      connection.sendJson({ type: "error", code: "invalid_token", message: "The viewer token is invalid or expired." });
      connection.close(4401, "invalid token");
      return;
    }
    const session = this.sessions.get(viewer.sessionId);
    if (!session || FINAL_STATES.has(session.state)) {
      connection.sendJson({ type: "error", code: "session_gone", message: "The session is gone." });
      connection.close(4404, "session gone");
      return;
    }
    const holder = this.viewersOf(session.id).find((other) => other.holdsControl && other.connection.isOpen);
    if (holder && grant.mode === "control") {
      connection.sendJson({ type: "error", code: "control_held", message: `${holder.user.name} has control.` });
      connection.close(4409, "control held");
      return;
    }

    const now = new Date().toISOString();
    if (holder) {
      holder.holdsControl = false;
      holder.connection.sendJson({ type: "control_lost", by: grant.user.name, at: now });
    }
    viewer.user = grant.user;
    viewer.holdsControl = true;
    const control = { user: grant.user.name, since: now };
    this.updateSession(session, { state: "active", control });

    connection.sendJson({
      type: "ready",
      session_id: session.id,
      viewer_id: viewer.id,
      width: session.width,
      height: session.height,
      fence: session.version,
      user: grant.user.name,
    });
    this.sendFirstFrame(viewer, session);
    connection.sendJson({ type: "state", state: "active", control });
  }

  /**
   * Sends the full frame: an RGBA background, a 16×16 PNG square at (100, 100), then an 8×8
   * RGBA square on its top-left corner. In Chromium 156 the PNG finishes decoding after the
   * RGBA square, so the corner is only green if the page draws in arrival order.
   */
  sendFirstFrame(viewer, session) {
    const { connection } = viewer;
    connection.send(zlibRect(0, 0, session.width, session.height, COLOURS.background));
    connection.send(pngRect(100, 100, 16, 16, COLOURS.pngSquare));
    connection.send(zlibRect(100, 100, 8, 8, COLOURS.rgbaCorner));
    connection.send(BATCH_END);
  }

  handleViewerClose(viewer, code) {
    viewer.closeCode = code;
    const session = this.sessions.get(viewer.sessionId);
    if (viewer.holdsControl && session && !FINAL_STATES.has(session.state)) {
      viewer.holdsControl = false;
      this.updateSession(session, { state: "detached", control: null });
    }
    this.emit("viewer-close", viewer, code);
  }
}

const MESSAGE_FIELDS = {
  hello: ["token"],
  key: ["scancode", "extended", "down"],
  unicode: ["ch", "down"],
  mouse: ["x", "y"],
  button: ["button", "down", "x", "y"],
  wheel: ["dy", "dx"],
  release_all: [],
  resize: ["width", "height"],
  ping: [],
};

const isBoolean = (value) => typeof value === "boolean";
const isIntegerIn = (value, min, max) => Number.isInteger(value) && value >= min && value <= max;

/**
 * Checks a browser → worker message against docs/viewer-protocol.md and the limits the Rust
 * parser adds (no unknown fields, wheel deltas within ±3840). Returns a problem or null.
 */
function validateClientMessage(message, text) {
  if (Buffer.byteLength(text) > 4096) {
    return "message is larger than 4096 bytes";
  }
  const allowed = MESSAGE_FIELDS[message?.type];
  if (!allowed) {
    return `unknown message type ${JSON.stringify(message?.type)}`;
  }
  const unknown = Object.keys(message).filter((field) => field !== "type" && !allowed.includes(field));
  if (unknown.length) {
    return `unknown fields ${unknown.join(", ")} in ${message.type}`;
  }
  const checks = {
    hello: () => typeof message.token === "string",
    key: () => isIntegerIn(message.scancode, 0, 255) && isBoolean(message.extended) && isBoolean(message.down),
    unicode: () => typeof message.ch === "string" && [...message.ch].length === 1 && isBoolean(message.down),
    mouse: () => isIntegerIn(message.x, 0, 65535) && isIntegerIn(message.y, 0, 65535),
    button: () =>
      ["left", "middle", "right"].includes(message.button) &&
      isBoolean(message.down) &&
      isIntegerIn(message.x, 0, 65535) &&
      isIntegerIn(message.y, 0, 65535),
    wheel: () =>
      isIntegerIn(message.dy, -3840, 3840) && (message.dx === undefined || isIntegerIn(message.dx, -3840, 3840)),
    release_all: () => true,
    resize: () => isIntegerIn(message.width, 200, 8192) && isIntegerIn(message.height, 200, 8192),
    ping: () => true,
  };
  return checks[message.type]() ? null : `invalid field values in ${JSON.stringify(message)}`;
}

function publicUser(user) {
  return { id: user.id, name: user.name, role: user.role, org_id: user.org_id };
}

async function readJsonBody(request) {
  const chunks = [];
  for await (const chunk of request) {
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (!text) {
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiFailure(400, "invalid_json", "The request body is not valid JSON.");
  }
}

function sendJson(response, status, value) {
  response.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
  response.end(JSON.stringify(value));
}
