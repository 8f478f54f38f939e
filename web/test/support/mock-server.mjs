// A stand-in for the control plane and one worker, for browser tests of web/ before the Rust
// backend runs. Serves web/ as static files, implements the /api/v1 endpoints the pages call
// (sessions here, the organisation API in mock-api.mjs), and speaks the worker side of
// docs/viewer-protocol.md on /v1/sessions/{id}/viewer, including an `observe` mode that never
// takes control. Listens on 127.0.0.1 only. State lives in memory, and tests read and change it
// directly.

import { randomBytes, randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";

import { BATCH_END, pngRect, zlibRect } from "./frames.mjs";
import { ApiFailure, MockApi, paginate, Reply } from "./mock-api.mjs";
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

// Roles that may act on every session of their organisation.
const SESSION_ADMIN_ROLES = new Set(["owner", "admin", "operator"]);
const ATTACH_PERMISSION_BY_MODE = { control: "attach", takeover: "takeover", observe: "observe" };

export class MockServer extends EventEmitter {
  constructor(webRoot) {
    super();
    this.webRoot = path.resolve(webRoot);
    this.api = new MockApi();
    this.viewerTokens = new Map();
    this.sessions = new Map();
    this.viewers = [];
    // Every API request as {method, path, query, body, token, status}, oldest first. `token` is
    // the bearer token and `status` the response status.
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

  /** Logs `username` in without HTTP and returns the token response body. */
  loginAs(username, orgId = undefined) {
    return this.api.loginAs(username, orgId);
  }

  /** Creates a session owned by `username` on target `targetId`, already connected (detached). */
  createSession(username, targetId = "t-build", width = 800, height = 600) {
    const user = this.api.userByName(username);
    const target = this.api.targets.find((candidate) => candidate.id === targetId);
    const now = new Date().toISOString();
    const session = {
      id: randomUUID(),
      org_id: target.org_id,
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
    let entry = null;
    try {
      if (url.pathname.startsWith("/api/")) {
        const body = await readJsonBody(request);
        const token = (request.headers.authorization ?? "").replace(/^Bearer /, "") || null;
        entry = { method: request.method, path: url.pathname, query: url.search, body, token, status: null };
        this.requests.push(entry);
        const result = this.route(request, url.pathname, url.searchParams, body);
        entry.status = result instanceof Reply ? result.status : 200;
        sendJson(response, entry.status, result instanceof Reply ? result.body : result);
        return;
      }
      await this.serveStatic(url.pathname, response);
    } catch (error) {
      if (error instanceof ApiFailure) {
        const detail = { code: error.code, message: error.message };
        if (error.problems) {
          detail.problems = error.problems;
        }
        if (entry) {
          entry.status = error.status;
        }
        sendJson(response, error.status, { error: detail });
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

  route(request, pathname, query, body) {
    const method = request.method;
    if (method === "POST" && pathname === "/api/v1/login") {
      return this.api.login(body);
    }
    if (method === "POST" && pathname === "/api/v1/auth/refresh") {
      return this.api.refresh(body);
    }

    const actor = this.api.authenticate(request.headers.authorization);
    if (pathname === "/api/v1/sessions" || pathname.startsWith("/api/v1/sessions/")) {
      return this.routeSessions(actor, method, pathname, query, body);
    }
    const result = this.api.route(actor, method, pathname, query, body);
    if (result === undefined) {
      throw new ApiFailure(405, "method_not_allowed", `${method} ${pathname} is not supported.`);
    }
    return result;
  }

  /** Returns what `actor` may do with `session`: all on their own, by role on others'. */
  sessionPermissions(session, actor) {
    if (session.owner.id === actor.user.id) {
      return { attach: true, observe: false, takeover: true, terminate: true };
    }
    if (SESSION_ADMIN_ROLES.has(actor.role)) {
      return { attach: true, observe: true, takeover: true, terminate: true };
    }
    const observe = Boolean(actor.permissions.view_all_sessions);
    return { attach: false, observe, takeover: false, terminate: false };
  }

  sessionVisible(session, actor) {
    return (
      session.org_id === actor.org_id && (session.owner.id === actor.user.id || actor.permissions.view_all_sessions)
    );
  }

  sessionView(session, actor) {
    return { ...session, permissions: this.sessionPermissions(session, actor) };
  }

  routeSessions(actor, method, pathname, query, body) {
    if (method === "GET" && pathname === "/api/v1/sessions") {
      const mine = query.get("mine") === "true";
      const state = query.get("state");
      const items = [...this.sessions.values()]
        .filter((session) => this.sessionVisible(session, actor))
        .filter((session) => !mine || session.owner.id === actor.user.id)
        .filter((session) => !state || session.state === state)
        .map((session) => this.sessionView(session, actor));
      return paginate(items, query, this.api.pageSize);
    }
    if (method === "POST" && pathname === "/api/v1/sessions") {
      const target = this.api.targets.find((candidate) => candidate.id === body?.target_id && candidate.org_id === actor.org_id);
      if (!target || !this.api.canConnect(target, actor)) {
        throw new ApiFailure(404, "not_found", `Target ${body?.target_id} not found.`);
      }
      const session = this.createSession(actor.user.name, target.id, body.width ?? 1024, body.height ?? 768);
      return new Reply(201, this.sessionView(session, actor));
    }

    const match = pathname.match(/^\/api\/v1\/sessions\/([^/]+)(?:\/(attach|detach|terminate))?$/);
    const session = match && this.sessions.get(match[1]);
    if (!session || !this.sessionVisible(session, actor)) {
      throw new ApiFailure(404, "not_found", "Session not found.");
    }
    const action = match[2];
    if (method === "GET" && !action) {
      return this.sessionView(session, actor);
    }
    if (method === "POST" && action === "attach") {
      return this.attach(session, body?.mode, actor);
    }
    const permissions = this.sessionPermissions(session, actor);
    if (method === "POST" && action === "detach") {
      this.updateSession(session, { state: "detached", control: null });
      return this.sessionView(session, actor);
    }
    if (method === "POST" && action === "terminate") {
      if (!permissions.terminate) {
        throw new ApiFailure(403, "forbidden", "You may not terminate this session (missing permission: terminate).");
      }
      this.terminate(session, body?.reason ?? "terminated");
      return this.sessionView(session, actor);
    }
    throw new ApiFailure(405, "method_not_allowed", `${method} ${pathname} is not supported.`);
  }

  attach(session, mode, actor) {
    const user = actor.user;
    const hooked = this.attachHook?.(session, mode, user);
    if (hooked) {
      throw new ApiFailure(hooked.status, hooked.code, hooked.message);
    }
    const permission = ATTACH_PERMISSION_BY_MODE[mode];
    if (!permission) {
      throw new ApiFailure(400, "invalid_mode", `mode "${mode}" is invalid; use control, takeover or observe.`);
    }
    if (!this.sessionPermissions(session, actor)[permission]) {
      const verb = { attach: "attach to", takeover: "take over", observe: "observe" }[permission];
      throw new ApiFailure(403, "forbidden", `You may not ${verb} this session (missing permission: ${permission}).`);
    }
    if (FINAL_STATES.has(session.state)) {
      throw new ApiFailure(409, "session_final", `Session is ${session.state}.`);
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
    if (grant.mode === "observe") {
      this.startObserving(viewer, session, grant);
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

  /** Lets a viewer watch: `ready` and a full frame, with control left where it is. */
  startObserving(viewer, session, grant) {
    viewer.user = grant.user;
    viewer.observing = true;
    viewer.connection.sendJson({
      type: "ready",
      session_id: session.id,
      viewer_id: viewer.id,
      width: session.width,
      height: session.height,
      fence: session.version,
      user: grant.user.name,
    });
    this.sendFirstFrame(viewer, session);
    viewer.connection.sendJson({ type: "state", state: session.state, control: session.control });
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
  if (value === null) {
    response.writeHead(status, { "Cache-Control": "no-store" }).end();
    return;
  }
  response.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
  response.end(JSON.stringify(value));
}
