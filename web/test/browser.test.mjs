// Browser tests: the portal and viewer pages in headless Chromium against the mock control
// plane and worker in support/mock-server.mjs. Skipped when Chromium is not installed.
// Set SCREENSHOT_DIR to save a screenshot of the portal and of the viewer.

import assert from "node:assert/strict";
import path from "node:path";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { Browser, chromiumAvailable } from "./support/browser.mjs";
import { BATCH_END, rectMessage, zlibRect } from "./support/frames.mjs";
import { COLOURS, MockServer } from "./support/mock-server.mjs";
import { storeLoginIn, waitUntil } from "./support/pages.mjs";

const WEB_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR;

describe("web pages in Chromium", { skip: !chromiumAvailable() && "Chromium is not installed" }, () => {
  let server;
  let browser;

  before(async () => {
    server = await new MockServer(WEB_ROOT).listen();
    browser = await Browser.launch();
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  beforeEach(async () => {
    server.attachHook = null;
    server.helloHook = null;
    browser.confirmAnswer = true;
    browser.consoleMessages = [];
    await browser.setOffline(false);
  });

  afterEach(() => {
    const rejected = server.viewers.flatMap((viewer) => viewer.rejected);
    server.viewers = [];
    assert.deepEqual(rejected, [], "every message the page sent follows the protocol");
  });

  /** Stores a login for `username` in the page's localStorage, as the portal would. */
  async function storeLogin(username) {
    await storeLoginIn(browser, server, username);
  }

  /** Opens the viewer for a new session and waits until it is active. */
  async function openActiveViewer({ username = "alice", mode = "control", width = 800, height = 600 } = {}) {
    await storeLogin(username);
    const session = server.createSession(username, undefined, width, height);
    await browser.navigate(`${server.origin}/viewer.html?session=${session.id}&mode=${mode}`);
    await browser.waitFor(`document.body.dataset.state === "active"`);
    await browser.waitFor(`window.rdpViewer.framesDrawn >= 1`);
    const viewer = server.viewersOf(session.id).at(-1);
    return { session, viewer };
  }

  function pageState() {
    return browser.evaluate(`({ state: document.body.dataset.state, text: document.body.dataset.stateText,
      line: document.getElementById("state").textContent })`);
  }

  function received(viewer, type) {
    return viewer.received.filter((message) => message.type === type);
  }

  test("portal rejects a wrong password", async () => {
    await browser.navigate(`${server.origin}/style.css`);
    await browser.evaluate("localStorage.clear()");
    await browser.navigate(`${server.origin}/`);
    await browser.waitFor(`!document.getElementById("login-view").hidden`);
    await browser.evaluate(`(() => {
      document.getElementById("username").value = "alice";
      document.getElementById("password").value = "wrong";
      document.getElementById("login-submit").click();
    })()`);
    const message = await browser.waitFor(`document.getElementById("error").checkVisibility() && document.getElementById("error").textContent`);
    assert.equal(message, "Invalid username or password.");
    assert.equal(await browser.evaluate(`document.getElementById("logout").checkVisibility()`), false, "no log out link");
    assert.equal(await browser.evaluate(`document.getElementById("portal-view").checkVisibility()`), false);
    assert.equal(await browser.evaluate(`localStorage.getItem("rdp-proxy.login")`), null);
  });

  test("portal login lists desktops and sessions", async () => {
    for (const session of server.sessions.values()) {
      session.state = "terminated";
    }
    await browser.navigate(`${server.origin}/style.css`);
    await browser.evaluate("localStorage.clear()");
    await browser.navigate(`${server.origin}/`);
    await browser.waitFor(`!document.getElementById("login-view").hidden`);
    await browser.evaluate(`(() => {
      document.getElementById("username").value = "alice";
      document.getElementById("password").value = "alice-password";
      document.getElementById("login-submit").click();
    })()`);
    await browser.waitFor(`document.querySelectorAll("#targets button").length === 2`);
    const stored = await browser.evaluate(`JSON.parse(localStorage.getItem("rdp-proxy.login"))`);
    assert.ok(stored.access_token.length > 0, "access token stored");
    assert.ok(stored.refresh_token.length > 0, "refresh token stored");
    assert.equal(stored.user.name, "alice");
    assert.deepEqual(stored.orgs.map((org) => org.name), ["Acme", "Lab"]);
    assert.equal(await browser.evaluate(`document.getElementById("account-name").textContent`), "alice (admin)");
    assert.equal(await browser.evaluate(`document.getElementById("logout").checkVisibility()`), true);
    assert.equal(await browser.evaluate(`document.getElementById("login-view").checkVisibility()`), false);
    assert.equal(await browser.evaluate(`document.getElementById("error").checkVisibility()`), false, "error line cleared");
    assert.deepEqual(
      await browser.evaluate(`[...document.querySelectorAll("#targets button")].map((b) => b.textContent)`),
      ["Open desktop", "Open desktop"],
    );

    const detached = server.createSession("alice", "t-test");
    const heldByBob = server.createSession("bob");
    server.updateSession(heldByBob, { state: "active", control: { user: "bob", since: new Date().toISOString() } });
    const heldByAlice = server.createSession("alice");
    server.updateSession(heldByAlice, { state: "active", control: { user: "alice", since: new Date().toISOString() } });
    const ended = server.createSession("alice");
    server.updateSession(ended, { state: "terminated", reason: "ended by user" });

    // The table refreshes every 3 s.
    await browser.waitFor(`document.querySelector('tr[data-session-id="${heldByAlice.id}"]')`, 4000);
    const rows = await browser.evaluate(`Object.fromEntries([...document.querySelectorAll("#sessions-body tr")].map((row) => [
      row.dataset.sessionId,
      { cells: [...row.cells].slice(0, 4).map((cell) => cell.textContent),
        buttons: [...row.querySelectorAll("button")].map((button) => button.textContent) },
    ]))`);
    assert.deepEqual(rows[detached.id].cells, ["Test desktop", "alice", "detached", "—"]);
    assert.deepEqual(rows[detached.id].buttons, ["Reattach", "Terminate"]);
    assert.deepEqual(rows[heldByBob.id].cells, ["Build server", "bob", "active", "bob"]);
    assert.deepEqual(rows[heldByBob.id].buttons, ["Take over", "Observe", "Terminate"]);
    assert.deepEqual(rows[heldByAlice.id].buttons, ["Move here", "Terminate"], "own control can move to this browser");
    assert.deepEqual(rows[ended.id].cells.slice(2, 3), ["terminatedended by user"], "state cell shows the reason");
    assert.deepEqual(rows[ended.id].buttons, [], "final sessions have no buttons");

    if (SCREENSHOT_DIR) {
      await browser.screenshot(path.join(SCREENSHOT_DIR, "portal.png"));
    }
  });

  test("portal terminate button calls the API", async () => {
    await storeLogin("alice");
    const session = server.createSession("alice");
    await browser.navigate(`${server.origin}/`);
    await browser.waitFor(`document.querySelector('tr[data-session-id="${session.id}"] button.danger')`);
    await browser.evaluate(`document.querySelector('tr[data-session-id="${session.id}"] button.danger').click()`);
    await browser.waitFor(`document.querySelector('tr[data-session-id="${session.id}"]').dataset.state === "terminated"`);
    const request = server.requests.find((entry) => entry.path === `/api/v1/sessions/${session.id}/terminate`);
    assert.deepEqual(request.body, { reason: "ended by user" });
  });

  test("portal returns to login on 401", async () => {
    await browser.navigate(`${server.origin}/style.css`);
    await browser.evaluate(`localStorage.setItem("rdp-proxy.login", JSON.stringify({ access_token: "unknown-token" }))`);
    await browser.navigate(`${server.origin}/`);
    await browser.waitFor(`!document.getElementById("login-view").hidden`);
    const message = await browser.waitFor(`document.getElementById("error").textContent`);
    assert.equal(message, "The access token is invalid. Sign in again.");
    assert.equal(await browser.evaluate(`document.getElementById("portal-view").hidden`), true);
    assert.equal(await browser.evaluate(`localStorage.getItem("rdp-proxy.login")`), null);
  });

  test("open desktop requests the window size", async () => {
    await storeLogin("alice");
    await browser.navigate(`${server.origin}/`);
    await browser.waitFor(`document.querySelectorAll("#targets button").length === 2`);
    await browser.evaluate(`document.querySelector("#targets button").click()`);
    await browser.waitFor(`location.pathname === "/viewer.html"`);
    await browser.waitFor(`document.body.dataset.state === "active"`);

    const create = server.requests.filter((entry) => entry.method === "POST" && entry.path === "/api/v1/sessions").at(-1);
    // 1280×800 window minus the 48 px viewer toolbar.
    assert.deepEqual(create.body, { target_id: "t-build", width: 1280, height: 752 });
    const query = await browser.evaluate(`Object.fromEntries(new URLSearchParams(location.search))`);
    assert.equal(query.mode, "control");
    assert.ok(server.sessions.has(query.session), "viewer opened the created session");
  });

  test("viewer draws rectangles in arrival order", async () => {
    const { session } = await openActiveViewer({ width: 800, height: 600 });
    assert.deepEqual(await pageState(), {
      state: "active",
      text: "Active — you have control",
      line: "Active — you have control",
    });
    const attach = server.attachRequests(session.id).at(-1);
    assert.deepEqual(attach.body, { mode: "control" });

    const pixels = await browser.evaluate(`(() => {
      const context = document.getElementById("screen").getContext("2d");
      const at = (x, y) => [...context.getImageData(x, y, 1, 1).data];
      return { background: at(400, 300), png: at(110, 110), corner: at(101, 101) };
    })()`);
    assert.deepEqual(pixels.background, COLOURS.background);
    assert.deepEqual(pixels.png, COLOURS.pngSquare);
    assert.deepEqual(pixels.corner, COLOURS.rgbaCorner, "RGBA square drawn after the PNG");

    const canvas = await browser.evaluate(`(() => { const c = document.getElementById("screen");
      return { width: c.width, height: c.height, cssWidth: c.getBoundingClientRect().width }; })()`);
    assert.equal(canvas.width, 800);
    assert.equal(canvas.height, 600);
    assert.equal(canvas.cssWidth, 800, "a desktop smaller than the window is not scaled up");

    const stats = await browser.evaluate(`({ frames: rdpViewer.framesDrawn, at: rdpViewer.lastFrameAt,
      open: rdpViewer.ws.readyState === WebSocket.OPEN })`);
    assert.equal(stats.frames, 1);
    assert.ok(stats.at > Date.now() - 60_000, "lastFrameAt is a recent timestamp");
    assert.equal(stats.open, true);

    if (SCREENSHOT_DIR) {
      await browser.screenshot(path.join(SCREENSHOT_DIR, "viewer.png"));
    }
  });

  test("viewer skips invalid binary messages", async () => {
    const { viewer } = await openActiveViewer();
    viewer.connection.send(Buffer.from([7, 0, 0]));
    viewer.connection.send(rectMessage(0, 0, 0, 4, 4, Buffer.from([1, 2, 3])));
    viewer.connection.send(zlibRect(0, 0, 10, 10, [255, 255, 255, 255]));
    viewer.connection.send(BATCH_END);
    await browser.waitFor(`rdpViewer.framesDrawn === 2`);
    assert.equal(await browser.evaluate(`rdpViewer.decodeErrors`), 2);
    const pixel = await browser.evaluate(`[...document.getElementById("screen").getContext("2d").getImageData(5, 5, 1, 1).data]`);
    assert.deepEqual(pixel, [255, 255, 255, 255], "a valid rectangle after invalid ones is drawn");
  });

  test("viewer draws alpha 0 opaque", async () => {
    const { viewer } = await openActiveViewer();
    viewer.connection.send(zlibRect(20, 20, 4, 4, [10, 20, 30, 0]));
    viewer.connection.send(BATCH_END);
    await browser.waitFor(`rdpViewer.framesDrawn === 2`);
    const pixel = await browser.evaluate(`[...document.getElementById("screen").getContext("2d").getImageData(21, 21, 1, 1).data]`);
    assert.deepEqual(pixel, [10, 20, 30, 255]);
  });

  test("viewer applies a resize", async () => {
    const { viewer } = await openActiveViewer();
    viewer.connection.sendJson({ type: "resize", width: 1024, height: 700 });
    viewer.connection.send(zlibRect(0, 0, 1024, 700, COLOURS.background));
    viewer.connection.send(BATCH_END);
    await browser.waitFor(`document.getElementById("screen").width === 1024`);
    assert.equal(await browser.evaluate(`document.getElementById("screen").height`), 700);
  });

  test("keyboard input sends scancodes", async () => {
    const { viewer } = await openActiveViewer();
    assert.equal(await browser.evaluate(`document.activeElement.id`), "screen", "canvas focused on ready");

    await browser.key("keyDown", { code: "KeyA", key: "a", keyCode: 65, text: "a" });
    await browser.key("keyUp", { code: "KeyA", key: "a", keyCode: 65 });
    await browser.key("rawKeyDown", { code: "ArrowUp", key: "ArrowUp", keyCode: 38 });
    await browser.key("keyUp", { code: "ArrowUp", key: "ArrowUp", keyCode: 38 });
    await browser.key("rawKeyDown", { code: "ControlRight", key: "Control", keyCode: 17 });
    await browser.key("keyUp", { code: "ControlRight", key: "Control", keyCode: 17 });
    await browser.key("keyDown", { code: "", key: "é", keyCode: 0, text: "é" });
    await browser.key("keyUp", { code: "", key: "é", keyCode: 0 });

    await waitUntil(() => received(viewer, "unicode").length === 2, "unicode messages");
    assert.deepEqual(received(viewer, "key"), [
      { type: "key", scancode: 0x1e, extended: false, down: true },
      { type: "key", scancode: 0x1e, extended: false, down: false },
      { type: "key", scancode: 0x48, extended: true, down: true },
      { type: "key", scancode: 0x48, extended: true, down: false },
      { type: "key", scancode: 0x1d, extended: true, down: true },
      { type: "key", scancode: 0x1d, extended: true, down: false },
    ]);
    assert.deepEqual(received(viewer, "unicode"), [
      { type: "unicode", ch: "é", down: true },
      { type: "unicode", ch: "é", down: false },
    ]);

    await browser.evaluate(`document.getElementById("screen").blur()`);
    await waitUntil(() => received(viewer, "release_all").length === 1, "release_all on blur");
  });

  test("mouse input maps to desktop pixels", async () => {
    // 1920×1080 in a 1280×752 stage is drawn at 1280×720: two CSS pixels are three desktop pixels.
    const { viewer } = await openActiveViewer({ width: 1920, height: 1080 });
    const box = await browser.evaluate(`(() => { const r = document.getElementById("screen").getBoundingClientRect();
      return { left: r.left, top: r.top, width: r.width, height: r.height }; })()`);
    assert.equal(box.width, 1280);
    assert.equal(box.height, 720);

    await browser.mouse("mouseMoved", box.left + 100, box.top + 50);
    await waitUntil(() => received(viewer, "mouse").length >= 1, "mouse move");
    assert.deepEqual(received(viewer, "mouse").at(-1), { type: "mouse", x: 150, y: 75 });

    await browser.mouse("mousePressed", box.left + 200, box.top + 100, { button: "right", clickCount: 1 });
    await browser.mouse("mouseReleased", box.left + 200, box.top + 100, { button: "right", clickCount: 1 });
    await waitUntil(() => received(viewer, "button").length === 2, "button messages");
    assert.deepEqual(received(viewer, "button"), [
      { type: "button", button: "right", down: true, x: 300, y: 150 },
      { type: "button", button: "right", down: false, x: 300, y: 150 },
    ]);

    // Drag out of the canvas: the position pins to the desktop edge.
    await browser.mouse("mousePressed", box.left + 10, box.top + 10, { button: "left", clickCount: 1 });
    await browser.mouse("mouseMoved", box.left + box.width + 40, box.top + box.height + 20, { button: "left", buttons: 1 });
    await browser.mouse("mouseReleased", box.left + box.width + 40, box.top + box.height + 20, { button: "left", clickCount: 1 });
    await waitUntil(() => received(viewer, "button").length === 4, "drag button messages");
    assert.deepEqual(received(viewer, "button").at(-1), { type: "button", button: "left", down: false, x: 1919, y: 1079 });

    await browser.mouse("mouseWheel", box.left + 10, box.top + 10, { deltaX: 0, deltaY: 100 });
    await browser.mouse("mouseWheel", box.left + 10, box.top + 10, { deltaX: 0, deltaY: -200 });
    await waitUntil(() => received(viewer, "wheel").length === 2, "wheel messages");
    assert.deepEqual(received(viewer, "wheel"), [
      { type: "wheel", dx: 0, dy: -120 },
      { type: "wheel", dx: 0, dy: 240 },
    ]);
  });

  test("viewer pings every 5 s", async () => {
    // Record each setInterval delay and run the timer 100 times faster, so pings come every 200 ms.
    const script = await browser.addInitScript(`(() => {
      const original = window.setInterval;
      window.intervalDelays = [];
      window.setInterval = (callback, delay, ...args) => {
        window.intervalDelays.push(delay);
        return original(callback, delay / 100, ...args);
      };
    })()`);
    try {
      const { viewer } = await openActiveViewer();
      await waitUntil(() => received(viewer, "ping").length >= 2, "two pings");
      assert.deepEqual(received(viewer, "ping")[0], { type: "ping" });
      assert.deepEqual(await browser.evaluate("window.intervalDelays"), [5000]);
    } finally {
      await browser.removeInitScript(script);
    }
  });

  test("control lost blocks input and reconnect", async () => {
    const { session, viewer } = await openActiveViewer();
    const at = "2025-01-02T03:04:05Z";
    viewer.connection.sendJson({ type: "control_lost", by: "bob", at });
    await browser.waitFor(`document.body.dataset.state === "control_lost"`);
    const expectedTime = await browser.evaluate(`new Date(${JSON.stringify(at)}).toLocaleTimeString()`);
    assert.equal((await pageState()).text, `Control taken by bob at ${expectedTime}`);

    await browser.key("keyDown", { code: "KeyB", key: "b", keyCode: 66, text: "b" });
    viewer.connection.close(1000, "");
    await sleep(1500);
    assert.equal(received(viewer, "key").length, 0, "no input after control_lost");
    assert.equal(server.attachRequests(session.id).length, 1, "no reconnect after control_lost");
    assert.equal((await pageState()).state, "control_lost");
  });

  test("dropped socket reconnects in control mode", async () => {
    const { session, viewer } = await openActiveViewer({ mode: "takeover" });
    viewer.connection.destroy();
    await browser.waitFor(`document.body.dataset.stateText === "Detached — reconnecting…"`);
    assert.equal((await pageState()).state, "detached");
    await browser.waitFor(`document.body.dataset.state === "active"`, 4000);
    const attaches = server.attachRequests(session.id);
    assert.deepEqual(attaches.map((entry) => entry.body.mode), ["takeover", "control"]);
    assert.equal(server.viewersOf(session.id).length, 2);
    await browser.waitFor(`rdpViewer.framesDrawn >= 2`);
  });

  test("attach error during reconnect stops retries", async () => {
    const { session, viewer } = await openActiveViewer();
    viewer.connection.sendJson({ type: "error", code: "not_in_control", message: "This viewer no longer has control." });
    await browser.waitFor(`document.getElementById("notice").checkVisibility()`);
    server.attachHook = () => ({ status: 409, code: "control_held", message: "bob has control of this session." });
    viewer.connection.destroy();
    await browser.waitFor(`document.body.dataset.state === "error"`, 4000);
    assert.equal((await pageState()).text, "Error: bob has control of this session.");
    assert.equal(await browser.evaluate(`document.getElementById("notice").checkVisibility()`), false, "old notice cleared");
    await sleep(2500);
    assert.equal(server.attachRequests(session.id).length, 2, "one failed retry, then none");
  });

  test("worker 4409 close shows the error", async () => {
    await storeLogin("alice");
    const session = server.createSession("alice");
    server.helloHook = (viewer) => {
      viewer.connection.sendJson({ type: "error", code: "control_held", message: "bob has control." });
      viewer.connection.close(4409, "control held");
      return true;
    };
    await browser.navigate(`${server.origin}/viewer.html?session=${session.id}&mode=control`);
    await browser.waitFor(`document.body.dataset.state === "error"`);
    assert.equal((await pageState()).text, "Error: bob has control.");
    await sleep(1500);
    assert.equal(server.attachRequests(session.id).length, 1, "no retry after a 4xxx close");
  });

  test("worker close code shows a message", async () => {
    await storeLogin("alice");
    const session = server.createSession("alice");
    server.helloHook = (viewer) => {
      viewer.connection.close(4404);
      return true;
    };
    await browser.navigate(`${server.origin}/viewer.html?session=${session.id}&mode=control`);
    await browser.waitFor(`document.body.dataset.state === "error"`);
    assert.equal((await pageState()).text, "Error: The session no longer exists on its worker.");
  });

  test("worker terminate shows the reason", async () => {
    const { session } = await openActiveViewer();
    server.terminate(session, "maintenance window");
    await browser.waitFor(`document.body.dataset.state === "terminated"`);
    assert.equal((await pageState()).text, "Terminated: maintenance window");
    await sleep(1500);
    assert.equal(server.attachRequests(session.id).length, 1, "no reconnect after terminated");
  });

  test("failed and lost states are final", async () => {
    for (const [state, label] of [
      ["failed", "Failed"],
      ["lost", "Lost"],
    ]) {
      const { session, viewer } = await openActiveViewer();
      viewer.connection.sendJson({ type: "state", state, reason: `${state} for a test` });
      await browser.waitFor(`document.body.dataset.state === ${JSON.stringify(state)}`);
      assert.equal((await pageState()).text, `${label}: ${state} for a test`);
      viewer.connection.destroy();
      await sleep(1500);
      assert.equal(server.attachRequests(session.id).length, 1, `no reconnect after ${state}`);
    }
  });

  test("detach button detaches without reconnect", async () => {
    const { session, viewer } = await openActiveViewer();
    await browser.evaluate(`document.getElementById("detach").click()`);
    await browser.waitFor(`document.body.dataset.stateText === "Detached"`);
    assert.equal((await pageState()).state, "detached");
    assert.ok(
      server.requests.some((entry) => entry.method === "POST" && entry.path === `/api/v1/sessions/${session.id}/detach`),
      "detach API called",
    );
    await waitUntil(() => viewer.closeCode !== null, "socket closed");
    assert.equal(viewer.closeCode, 1000);
    assert.equal(received(viewer, "release_all").length, 1, "release_all before detaching");
    await sleep(1500);
    assert.equal(server.attachRequests(session.id).length, 1, "no reconnect after detach");
    assert.equal(await browser.evaluate(`document.getElementById("detach").disabled`), true);
  });

  test("terminate button ends the session", async () => {
    const { session } = await openActiveViewer();
    await browser.evaluate(`document.getElementById("terminate").click()`);
    await browser.waitFor(`document.body.dataset.state === "terminated"`);
    assert.equal((await pageState()).text, "Terminated: ended by user");
    const request = server.requests.find((entry) => entry.path === `/api/v1/sessions/${session.id}/terminate`);
    assert.deepEqual(request.body, { reason: "ended by user" });
  });

  test("terminate button honours cancel", async () => {
    const { session } = await openActiveViewer();
    browser.confirmAnswer = false;
    await browser.evaluate(`document.getElementById("terminate").click()`);
    await sleep(300);
    assert.equal((await pageState()).state, "active");
    assert.ok(!server.requests.some((entry) => entry.path === `/api/v1/sessions/${session.id}/terminate`));
  });

  test("going online retries at once", async () => {
    const { session, viewer } = await openActiveViewer();
    await browser.setOffline(true);
    viewer.connection.destroy();
    // Attempts at about 1 s and 3 s fail offline, and the next one waits 4 s more.
    await browser.waitFor(`document.body.dataset.stateText === "Detached — reconnecting…"`);
    await sleep(3500);
    assert.equal(server.attachRequests(session.id).length, 1, "offline attempts never reach the server");
    const onlineAt = Date.now();
    await browser.setOffline(false);
    await browser.waitFor(`document.body.dataset.state === "active"`, 3000);
    assert.ok(Date.now() - onlineAt < 2000, `reconnected ${Date.now() - onlineAt} ms after going online`);
  });

  test("viewer without session id fails", async () => {
    await storeLogin("alice");
    await browser.navigate(`${server.origin}/viewer.html`);
    await browser.waitFor(`document.body.dataset.state === "error"`);
    assert.match((await pageState()).text, /^Error: the page address has no session id/);
  });

  test("viewer without login opens portal", async () => {
    await browser.navigate(`${server.origin}/style.css`);
    await browser.evaluate("localStorage.clear()");
    // The viewer redirects at once, so wait for the portal instead of the viewer URL.
    await browser.send("Page.navigate", { url: `${server.origin}/viewer.html?session=x&mode=control` });
    await browser.waitFor(`location.pathname === "/" && !document.getElementById("login-view").hidden`);
  });

  test("takeover denied for an auditor", async () => {
    await storeLogin("carol");
    const session = server.createSession("alice");
    await browser.navigate(`${server.origin}/viewer.html?session=${session.id}&mode=takeover`);
    await browser.waitFor(`document.body.dataset.state === "error"`);
    assert.equal((await pageState()).text, "Error: You may not take over this session (missing permission: takeover).");
  });
});
