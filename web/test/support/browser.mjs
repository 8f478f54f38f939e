// Drives headless Chromium over the Chrome DevTools Protocol for the browser tests.
//
// Chromium starts with a throw-away profile, background networking off, and a host resolver
// that fails every name except 127.0.0.1, so pages can only reach the local mock server.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { connectWebSocket } from "./websocket.mjs";

export const CHROMIUM_PATH = process.env.CHROMIUM ?? "/usr/bin/chromium";

export function chromiumAvailable() {
  return existsSync(CHROMIUM_PATH);
}

export class Browser {
  static async launch() {
    const profile = await mkdtemp(path.join(os.tmpdir(), "rdp-proxy-web-test-"));
    const child = spawn(
      CHROMIUM_PATH,
      [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-pings",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        `--user-data-dir=${profile}`,
        "about:blank",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (chunk) => {
      stderr = (stderr + chunk).slice(-4000);
    });

    const portFile = path.join(profile, "DevToolsActivePort");
    const deadline = Date.now() + 20_000;
    while (!existsSync(portFile)) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill();
        throw new Error(`Chromium did not open its DevTools port. Last stderr:\n${stderr}`);
      }
      await sleep(50);
    }
    const [port] = (await readFile(portFile, "utf8")).split("\n");

    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const page = targets.find((target) => target.type === "page");
    const socket = await connectWebSocket(page.webSocketDebuggerUrl);
    const browser = new Browser(child, profile, socket);
    await browser.send("Page.enable");
    await browser.send("Runtime.enable");
    await browser.setViewport(1280, 800);
    return browser;
  }

  /** Sets the size of the page's viewport in CSS pixels. */
  async setViewport(width, height) {
    await this.send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false });
  }

  constructor(child, profile, socket) {
    this.child = child;
    this.profile = profile;
    this.socket = socket;
    this.nextId = 1;
    this.pending = new Map();
    this.consoleMessages = [];
    // Whether dialogs such as window.confirm() are accepted (true) or cancelled (false).
    this.confirmAnswer = true;

    socket.on("message", (data) => this.handleMessage(JSON.parse(data)));
  }

  handleMessage(message) {
    if (message.id !== undefined) {
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) {
        waiter?.reject(new Error(`${waiter.method}: ${message.error.message}`));
      } else {
        waiter?.resolve(message.result);
      }
      return;
    }
    if (message.method === "Page.javascriptDialogOpening") {
      this.send("Page.handleJavaScriptDialog", { accept: this.confirmAnswer }).catch(() => {});
    }
    if (message.method === "Runtime.consoleAPICalled") {
      const text = message.params.args.map((arg) => arg.value ?? arg.description ?? "").join(" ");
      this.consoleMessages.push(`${message.params.type}: ${text}`);
    }
    if (message.method === "Runtime.exceptionThrown") {
      this.consoleMessages.push(`exception: ${message.params.exceptionDetails.exception?.description}`);
    }
  }

  send(method, params = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.socket.sendJson({ id, method, params });
    });
  }

  /** Evaluates an expression in the page, awaiting a promise, and returns its JSON value. */
  async evaluate(expression) {
    const result = await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    });
    if (result.exceptionDetails) {
      const description = result.exceptionDetails.exception?.description ?? result.exceptionDetails.text;
      throw new Error(`Evaluating ${expression} failed: ${description}`);
    }
    return result.result.value;
  }

  /** Polls `expression` until it is truthy and returns its value. Throws after `timeoutMs`. */
  async waitFor(expression, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
      try {
        last = await this.evaluate(expression);
      } catch (error) {
        // The page may be between documents during a navigation.
        last = error.message;
      }
      if (last && !(typeof last === "string" && last.startsWith("Evaluating "))) {
        return last;
      }
      if (Date.now() > deadline) {
        const state = await this.evaluate("document.body?.dataset.stateText ?? document.title").catch(() => "?");
        throw new Error(
          `Timed out after ${timeoutMs} ms waiting for ${expression} (last value ${JSON.stringify(last)}, ` +
            `page state ${JSON.stringify(state)}). Console:\n${this.consoleMessages.join("\n")}`,
        );
      }
      await sleep(50);
    }
  }

  /** Runs `source` in every new document before its own scripts. Returns a handle for removeInitScript. */
  async addInitScript(source) {
    const { identifier } = await this.send("Page.addScriptToEvaluateOnNewDocument", { source });
    return identifier;
  }

  async removeInitScript(identifier) {
    await this.send("Page.removeScriptToEvaluateOnNewDocument", { identifier });
  }

  async navigate(url) {
    await this.send("Page.navigate", { url });
    await this.waitFor(`location.href === ${JSON.stringify(url)} && document.readyState === "complete"`);
  }

  async screenshot(file) {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    const { writeFile } = await import("node:fs/promises");
    await writeFile(file, Buffer.from(data, "base64"));
  }

  async key(type, { code, key, keyCode, text }) {
    await this.send("Input.dispatchKeyEvent", {
      type,
      code,
      key,
      windowsVirtualKeyCode: keyCode,
      text,
    });
  }

  async mouse(type, x, y, extra = {}) {
    await this.send("Input.dispatchMouseEvent", { type, x, y, ...extra });
  }

  async setOffline(offline) {
    await this.send("Network.enable");
    await this.send("Network.emulateNetworkConditions", {
      offline,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: -1,
    });
  }

  async close() {
    this.socket.destroy();
    this.child.kill();
    await new Promise((resolve) => {
      if (this.child.exitCode !== null) {
        resolve();
      } else {
        this.child.once("exit", resolve);
      }
    });
    // Chromium's helper processes may still write to the profile for a moment after the main
    // process exits, so removal retries on ENOTEMPTY and EBUSY.
    await rm(this.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
}
