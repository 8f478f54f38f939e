// Tests of the portal's Nodes section: its pure helpers in Node, and the section in headless
// Chromium against the mock control plane with node routes added here. The browser tests are
// skipped when Chromium is not installed. Set SCREENSHOT_DIR to save a screenshot of the section.

import assert from "node:assert/strict";
import path from "node:path";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { formatDateTime } from "../dom.js";
import {
  agentCommand,
  formatCapacity,
  formatGibibytes,
  formatPercent,
  formatReport,
  formatService,
  formatSessions,
  formatVersions,
  joinTokenRequest,
  JOIN_TOKEN_LIFETIMES,
  nodeActions,
  NODE_API_PLACEHOLDER,
  shellQuote,
  summarizeWorkers,
} from "../portal-nodes.js";
import { Browser, chromiumAvailable } from "./support/browser.mjs";
import { ApiFailure, Reply } from "./support/mock-api.mjs";
import { MockServer } from "./support/mock-server.mjs";
import { storeLoginIn, waitUntil } from "./support/pages.mjs";

const WEB_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR;
const GIB = 2 ** 30;

describe("node helpers", () => {
  test("nodeActions by state", () => {
    const cases = [
      [{ state: "joining", drain_requested: false }, ["drain", "revoke"]],
      [{ state: "ready", drain_requested: false }, ["drain", "revoke"]],
      [{ state: "draining", drain_requested: true }, ["resume", "revoke"]],
      [{ state: "down", drain_requested: false }, ["drain", "revoke"]],
      [{ state: "down", drain_requested: true }, ["resume", "revoke"]],
      [{ state: "revoked", drain_requested: true }, ["remove"]],
      [{ state: "revoked", drain_requested: false }, ["remove"]],
    ];
    for (const [node, expected] of cases) {
      assert.deepEqual(nodeActions(node), expected, JSON.stringify(node));
    }
  });

  test("nodeActions draining without flag", () => {
    assert.deepEqual(nodeActions({ state: "draining" }), ["resume", "revoke"]);
  });

  test("formatGibibytes rounds to one decimal", () => {
    assert.equal(formatGibibytes(16 * GIB), "16 GiB");
    assert.equal(formatGibibytes(15.54 * GIB), "15.5 GiB");
    assert.equal(formatGibibytes(64 * 2 ** 20), "0.1 GiB");
    assert.equal(formatGibibytes(undefined), "");
    assert.equal(formatGibibytes(null), "");
  });

  test("formatCapacity names cores and memory", () => {
    assert.equal(formatCapacity({ cores: 8, memory_bytes: 16 * GIB }), "8 cores, 16 GiB");
    assert.equal(formatCapacity({ cores: 1, memory_bytes: 2 * GIB }), "1 core, 2 GiB");
    assert.equal(formatCapacity(undefined), "");
  });

  test("formatPercent rounds to whole percent", () => {
    assert.equal(formatPercent(0.424), "42%");
    assert.equal(formatPercent(0), "0%");
    assert.equal(formatPercent(1), "100%");
    assert.equal(formatPercent(null), "");
  });

  test("summarizeWorkers without workers", () => {
    assert.equal(summarizeWorkers([]), null);
    assert.equal(summarizeWorkers(undefined), null);
    assert.equal(formatSessions(null), "—");
  });

  test("summarizeWorkers of one worker", () => {
    const summary = summarizeWorkers([
      { sessions: 3, load: { node_cpu: 0.42, max_sessions: 20, health: 97 } },
    ]);
    assert.deepEqual(summary, { sessions: 3, maxSessions: 20, nodeCpu: 0.42, health: 97 });
    assert.equal(formatSessions(summary), "3 / 20");
  });

  test("summarizeWorkers sums and takes extremes", () => {
    const summary = summarizeWorkers([
      { sessions: 3, load: { node_cpu: 0.3, max_sessions: 20, health: 97 } },
      { sessions: 2, load: { node_cpu: 0.5, max_sessions: 10, health: 40 } },
    ]);
    assert.equal(summary.sessions, 5);
    assert.equal(summary.maxSessions, 30);
    assert.equal(summary.nodeCpu, 0.5, "busiest report");
    assert.equal(summary.health, 40, "lowest health");
  });

  test("summarizeWorkers without load figures", () => {
    const none = summarizeWorkers([{ sessions: 2, load: null }]);
    assert.deepEqual(none, { sessions: 2, maxSessions: null, nodeCpu: null, health: null });
    assert.equal(formatSessions(none), "2");

    const partial = summarizeWorkers([
      { sessions: 1, load: { node_cpu: 0.2, max_sessions: 20, health: 90 } },
      { sessions: 2, load: null },
    ]);
    assert.equal(partial.maxSessions, null, "unknown when one worker sent no maximum");
    assert.equal(partial.nodeCpu, 0.2);
    assert.equal(formatSessions(partial), "3");
  });

  test("formatReport by report state", () => {
    const lastReport = "2025-03-01T10:00:00Z";
    assert.equal(formatReport({ report_live: true, last_report_at: lastReport }), "reporting");
    assert.equal(formatReport({ report_live: false, last_report_at: lastReport }), `silent since ${formatDateTime(lastReport)}`);
    assert.equal(formatReport({ report_live: false, last_report_at: null }), "never reported");
  });

  test("formatVersions names agent and config", () => {
    assert.equal(formatVersions({ agent_version: "0.4.0", config_version: 7 }), "agent 0.4.0, config 7");
    assert.equal(formatVersions({ agent_version: "0.4.0", config_version: 0 }), "agent 0.4.0, config 0");
    assert.equal(formatVersions({ agent_version: "0.4.0", config_version: null }), "agent 0.4.0, config none");
    assert.equal(formatVersions({ agent_version: "", config_version: null }), "agent unknown, config none");
  });

  test("formatService adds restarts and exit", () => {
    const running = { kind: "worker", run: "running", version: "0.4.0", pid: 42, restarts: 0, last_exit: null };
    assert.equal(formatService(running), "worker running");
    assert.equal(formatService({ ...running, restarts: 1, last_exit: "signal 9" }), "worker running, 1 restart, last exit: signal 9");
    assert.equal(
      formatService({ ...running, run: "backoff", pid: null, restarts: 4, last_exit: "exit status 2" }),
      "worker backoff, 4 restarts, last exit: exit status 2",
    );
  });

  test("shellQuote quotes only when needed", () => {
    assert.equal(shellQuote("rpj1_ab12_cd34"), "rpj1_ab12_cd34");
    assert.equal(shellQuote("a b"), "'a b'");
    assert.equal(shellQuote("it's"), `'it'"'"'s'`);
    assert.equal(shellQuote("$(rm -rf /)"), "'$(rm -rf /)'");
  });

  test("agentCommand uses the placeholder", () => {
    assert.equal(NODE_API_PLACEHOLDER, "<node-api-address>");
    assert.equal(
      agentCommand("rpj1_abc_def"),
      "RDP_PROXY_JOIN_TOKEN=rpj1_abc_def rdp-proxy-agent --control-url https://<node-api-address> --data-dir /var/lib/rdp-proxy-agent",
    );
  });

  test("joinTokenRequest builds the body", () => {
    assert.deepEqual(joinTokenRequest("3600", ""), { ttl_secs: 3600 });
    assert.deepEqual(joinTokenRequest("86400", "site=berlin, rack=2"), {
      ttl_secs: 86400,
      labels: { site: "berlin", rack: "2" },
    });
  });

  test("joinTokenRequest rejects bad lifetimes", () => {
    for (const text of ["59", "604801", "1.5", "", "soon"]) {
      assert.throws(() => joinTokenRequest(text, ""), { message: /^Token lifetime must be a whole number of seconds from 60 to 604800/ }, text);
    }
  });

  test("joinTokenRequest rejects bad labels", () => {
    assert.throws(() => joinTokenRequest("3600", "novalue"), { message: /^Invalid label "novalue"/ });
  });

  test("join token lifetimes within server range", () => {
    for (const [seconds] of JOIN_TOKEN_LIFETIMES) {
      assert.ok(seconds >= 60, `${seconds} s is below the minimum`);
      assert.ok(seconds <= 604800, `${seconds} s is above the maximum`);
    }
  });
});

/** Returns a node view as GET /api/v1/nodes sends it, with `changes` applied. */
function nodeView(orgId, changes) {
  const time = "2025-03-01T10:00:00Z";
  return {
    id: `n-${changes.name}`,
    name: "node",
    owner: { kind: "org", org_id: orgId },
    state: "ready",
    drain_requested: false,
    state_reason: null,
    state_changed_at: time,
    labels: {},
    capabilities: { cores: 8, memory_bytes: 16 * GIB, network_bits_per_sec: 1e9, rdp: true, relay: false, connector: false },
    enabled_services: ["worker"],
    agent_version: "0.4.0",
    services: [{ kind: "worker", run: "running", version: "0.4.0", pid: 4242, restarts: 0, last_exit: null }],
    config_version: 7,
    joined_at: time,
    last_report_at: time,
    report_live: true,
    workers: [],
    ...changes,
  };
}

function workerView(sessions, load) {
  return {
    id: `w-${sessions}`,
    internal_url: "http://127.0.0.1:1/",
    sessions,
    version: "0.4.0",
    config_version: 7,
    load: load && {
      cpu_cores: 0.5,
      memory_available_bytes: 8 * GIB,
      memory_bytes: 200 * 2 ** 20,
      network_bytes_per_sec: 1000,
      sessions,
      connector_load: 0,
      relay_load: 0,
      ...load,
    },
  };
}

/**
 * The mock control plane with the organisation's node routes. Owners and admins get the
 * manage_nodes permission, other roles do not.
 */
class NodesMockServer extends MockServer {
  constructor(webRoot) {
    super(webRoot);
    this.nodes = [
      nodeView("org-1", {
        name: "edge-1",
        labels: { site: "berlin" },
        workers: [workerView(3, { node_cpu: 0.42, max_sessions: 20, health: 97 })],
      }),
      nodeView("org-1", {
        name: "edge-2",
        state: "draining",
        drain_requested: true,
        state_reason: "drained by an operator",
        capabilities: { cores: 1, memory_bytes: 2.5 * GIB, network_bits_per_sec: null, rdp: false, relay: false, connector: false },
        config_version: null,
      }),
      nodeView("org-1", {
        name: "old-box",
        state: "down",
        state_reason: "missed heartbeats",
        report_live: false,
        services: [{ kind: "worker", run: "backoff", version: "0.4.0", pid: null, restarts: 4, last_exit: "exit status 2" }],
      }),
      nodeView("org-1", {
        name: "<img src=x onerror=alert(1)>",
        state: "revoked",
        state_reason: "revoked by alice",
        report_live: false,
        last_report_at: null,
        services: [],
      }),
      nodeView("org-2", { name: "lab-node" }),
    ];
    const authenticate = this.api.authenticate.bind(this.api);
    this.api.authenticate = (header) => {
      const actor = authenticate(header);
      const manageNodes = actor.role === "owner" || actor.role === "admin";
      return { ...actor, permissions: { ...actor.permissions, manage_nodes: manageNodes } };
    };
  }

  node(name) {
    return this.nodes.find((node) => node.name === name);
  }

  route(request, pathname, query, body) {
    if (pathname !== "/api/v1/nodes" && !pathname.startsWith("/api/v1/nodes/")) {
      return super.route(request, pathname, query, body);
    }
    const actor = this.api.authenticate(request.headers.authorization);
    this.api.require(actor, "manage_nodes");
    const method = request.method;
    const own = this.nodes.filter((node) => node.owner.org_id === actor.org_id);

    if (method === "GET" && pathname === "/api/v1/nodes") {
      return own;
    }
    if (method === "POST" && pathname === "/api/v1/nodes/join-tokens") {
      return this.createJoinToken(actor, body ?? {});
    }

    const [, id, action] = pathname.match(/^\/api\/v1\/nodes\/([^/]+)(?:\/([a-z]+))?$/) ?? [];
    const node = own.find((candidate) => candidate.id === decodeURIComponent(id ?? ""));
    if (!node) {
      throw new ApiFailure(404, "not_found", "node not found");
    }

    if (method === "POST" && (action === "drain" || action === "resume")) {
      if (node.state === "revoked") {
        throw new ApiFailure(409, "node_revoked", `node ${node.id} is revoked`);
      }
      const drain = action === "drain";
      node.drain_requested = drain;
      if (node.state === "ready" || node.state === "draining") {
        node.state = drain ? "draining" : "ready";
      }
      node.state_reason = drain ? "drained by an operator" : null;
      return node;
    }
    if (method === "POST" && action === "revoke") {
      const sessionsEnded = node.workers.reduce((total, worker) => total + worker.sessions, 0);
      Object.assign(node, { state: "revoked", state_reason: `revoked by ${actor.user.name}`, workers: [], report_live: false });
      return { node, certificates_revoked: 1, sessions_ended: sessionsEnded };
    }
    if (method === "DELETE" && !action) {
      if (node.state !== "revoked") {
        throw new ApiFailure(409, "node_not_revoked", "only a revoked node can be removed; revoke it first");
      }
      this.nodes = this.nodes.filter((candidate) => candidate !== node);
      return new Reply(204, null);
    }
    throw new ApiFailure(405, "method_not_allowed", `${method} ${pathname} is not supported.`);
  }

  createJoinToken(actor, body) {
    const ttl = body.ttl_secs ?? 3600;
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > 604800) {
      throw new ApiFailure(400, "invalid_ttl", "ttl_secs must be between 60 and 604800 (7 days)");
    }
    for (const key of Object.keys(body.labels ?? {})) {
      if (!/^[a-z0-9_./-]{1,63}$/.test(key)) {
        throw new ApiFailure(400, "invalid_labels", `label key "${key}" must be 1-63 of a-z 0-9 - _ . /`);
      }
    }
    return new Reply(201, {
      token: `rpj1_${"ab".repeat(32)}_${"cd".repeat(24)}`,
      expires_at: new Date(Date.now() + ttl * 1000).toISOString(),
      owner: { kind: "org", org_id: actor.org_id },
    });
  }
}

/** Returns a page expression for the element with `id`. */
function byId(id) {
  return `document.getElementById(${JSON.stringify(id)})`;
}

describe("nodes section in Chromium", { skip: !chromiumAvailable() && "Chromium is not installed" }, () => {
  let server;
  let browser;

  before(async () => {
    browser = await Browser.launch();
  });

  after(async () => {
    await browser?.close();
  });

  beforeEach(async () => {
    server = await new NodesMockServer(WEB_ROOT).listen();
    browser.confirmAnswer = true;
    browser.consoleMessages = [];
    await browser.setViewport(1280, 800);
  });

  afterEach(async () => {
    await server?.close();
  });

  async function openPortal(username, hash = "") {
    await storeLoginIn(browser, server, username);
    await browser.send("Page.navigate", { url: `${server.origin}/${hash}` });
    await browser.waitFor(`location.pathname === "/" && document.querySelectorAll("#targets li").length > 0`);
  }

  /** Opens the Nodes section as alice (admin of Acme) and waits for its four nodes. */
  async function openNodes() {
    await openPortal("alice", "#nodes");
    await browser.waitFor(`document.querySelectorAll("#nodes-body tr").length === 4`);
  }

  function isVisible(id) {
    return browser.evaluate(`${byId(id)}.checkVisibility()`);
  }

  function errorText() {
    return browser.evaluate(`${byId("error")}.checkVisibility() ? ${byId("error")}.textContent : null`);
  }

  function nodeRequests(method, pathname) {
    return server.requests.filter((entry) => entry.method === method && entry.path === pathname);
  }

  /** Returns the text of column `column` in each node row. */
  function column(column) {
    return browser.evaluate(`[...document.querySelectorAll("#nodes-body tr")].map((row) => row.cells[${column}].textContent)`);
  }

  /** Returns the aria-labels of the buttons in each node row. */
  function rowButtons() {
    return browser.evaluate(`[...document.querySelectorAll("#nodes-body tr")].map((row) =>
      [...row.querySelectorAll("button")].map((button) => button.getAttribute("aria-label")))`);
  }

  async function clickButton(label) {
    const clicked = await browser.evaluate(`(() => {
      const button = [...document.querySelectorAll("#nodes-body button")]
        .find((candidate) => candidate.getAttribute("aria-label") === ${JSON.stringify(label)});
      button?.click();
      return Boolean(button);
    })()`);
    assert.ok(clicked, `button ${label}`);
  }

  async function fill(id, value) {
    await browser.evaluate(`(() => {
      const element = ${byId(id)};
      element.value = ${JSON.stringify(value)};
      element.dispatchEvent(new Event("input", { bubbles: true }));
      element.dispatchEvent(new Event("change", { bubbles: true }));
    })()`);
  }

  test("tab needs manage_nodes", async () => {
    await openPortal("bob");
    assert.equal(await isVisible("tab-nodes"), false, "hidden for a member");
    await openPortal("bob", "#nodes");
    assert.equal(await isVisible("panel-nodes"), false, "address of the section shows the desktops");
    assert.equal(nodeRequests("GET", "/api/v1/nodes").length, 0, "nodes never requested");

    await openPortal("alice");
    assert.equal(await isVisible("tab-nodes"), true, "visible for an admin");
    const order = await browser.evaluate(`[...document.querySelectorAll("#tabs [role=tab]")].map((tab) => tab.id)`);
    assert.equal(order.indexOf("tab-nodes"), order.indexOf("tab-keys") + 1, "after API keys");
  });

  test("list shows state and figures", async () => {
    await openNodes();
    assert.deepEqual(
      await browser.evaluate(`[...document.querySelectorAll("#nodes-body tr strong")].map((name) => name.textContent)`),
      ["edge-1", "edge-2", "old-box", "<img src=x onerror=alert(1)>"],
    );
    assert.equal(await browser.evaluate(`document.querySelector("#nodes-body img")`), null, "names are text, not markup");

    assert.deepEqual(
      await browser.evaluate(`[...document.querySelectorAll("#nodes-body tr")][0].querySelector(".tag").textContent`),
      "site=berlin",
    );

    assert.deepEqual(await column(1), [
      "ready",
      "drainingdrained by an operator",
      "downmissed heartbeats",
      "revokedrevoked by alice",
    ]);
    assert.deepEqual(await column(2), [
      "reportingagent 0.4.0, config 7worker running",
      "reportingagent 0.4.0, config noneworker running",
      `silent since ${formatDateTime("2025-03-01T10:00:00Z")}agent 0.4.0, config 7worker backoff, 4 restarts, last exit: exit status 2`,
      "never reportedagent 0.4.0, config 7",
    ]);
    assert.deepEqual(await column(3), [
      "8 cores, 16 GiB",
      "1 core, 2.5 GiBcannot run RDP sessions",
      "8 cores, 16 GiB",
      "8 cores, 16 GiB",
    ]);
    assert.deepEqual(await column(4), ["3 / 20", "—", "—", "—"]);
    assert.deepEqual(await column(5), ["42%", "—", "—", "—"]);
    assert.deepEqual(await column(6), ["97 / 100", "—", "—", "—"]);

    assert.deepEqual(await rowButtons(), [
      ["Drain node edge-1", "Revoke node edge-1"],
      ["Resume node edge-2", "Revoke node edge-2"],
      ["Drain node old-box", "Revoke node old-box"],
      ["Remove node <img src=x onerror=alert(1)>"],
    ]);
    assert.equal(await isVisible("nodes-empty"), false);
    if (SCREENSHOT_DIR) {
      await browser.screenshot(path.join(SCREENSHOT_DIR, "admin-nodes.png"));
    }
  });

  test("empty list shows a hint", async () => {
    server.nodes = [];
    await openPortal("alice", "#nodes");
    await browser.waitFor(`${byId("nodes-empty")}.checkVisibility()`);
    assert.equal(await isVisible("nodes-table"), false);
  });

  test("drain and resume change buttons", async () => {
    await openNodes();
    await clickButton("Drain node edge-1");
    await browser.waitFor(`document.querySelector('#nodes-body button[aria-label="Resume node edge-1"]')`);
    assert.equal(nodeRequests("POST", "/api/v1/nodes/n-edge-1/drain").length, 1);
    assert.equal((await column(1))[0], "drainingdrained by an operator");
    assert.match(await browser.evaluate(`${byId("status")}.textContent`), /^Draining node edge-1/);

    await clickButton("Resume node edge-1");
    await browser.waitFor(`document.querySelector('#nodes-body button[aria-label="Drain node edge-1"]')`);
    assert.equal(nodeRequests("POST", "/api/v1/nodes/n-edge-1/resume").length, 1);
    assert.equal((await column(1))[0], "ready");
  });

  test("revoke asks first then remove", async () => {
    await openNodes();
    browser.confirmAnswer = false;
    await clickButton("Revoke node edge-1");
    await sleep(300);
    assert.equal(nodeRequests("POST", "/api/v1/nodes/n-edge-1/revoke").length, 0, "cancelled revocation sends nothing");

    browser.confirmAnswer = true;
    await clickButton("Revoke node edge-1");
    await browser.waitFor(`document.querySelector('#nodes-body button[aria-label="Remove node edge-1"]')`);
    assert.equal(nodeRequests("POST", "/api/v1/nodes/n-edge-1/revoke").length, 1);
    assert.equal(await browser.evaluate(`${byId("status")}.textContent`), "Revoked node edge-1 and ended 3 sessions.");

    await clickButton("Remove node edge-1");
    await browser.waitFor(`document.querySelectorAll("#nodes-body tr").length === 3`);
    assert.equal(nodeRequests("DELETE", "/api/v1/nodes/n-edge-1").length, 1);
    assert.equal(await browser.evaluate(`${byId("status")}.textContent`), "Removed node edge-1.");
  });

  test("conflict shows error and reloads", async () => {
    await openNodes();
    // Another admin revokes the node after the page loaded the list.
    Object.assign(server.node("old-box"), { state: "revoked", state_reason: "revoked by carol" });
    await clickButton("Drain node old-box");
    await browser.waitFor(`document.querySelector('#nodes-body button[aria-label="Remove node old-box"]')`);
    assert.equal(await errorText(), "node n-old-box is revoked");
    assert.equal(nodeRequests("POST", "/api/v1/nodes/n-old-box/drain")[0].status, 409);
  });

  test("join token shown once", async () => {
    await openNodes();
    assert.equal(await isVisible("join-token-created"), false);
    assert.equal(await browser.evaluate(`${byId("join-token-lifetime")}.value`), "3600", "one hour by default");

    await fill("join-token-labels", "novalue");
    await browser.evaluate(`${byId("join-token-submit")}.click()`);
    await browser.waitFor(`${byId("error")}.checkVisibility()`);
    assert.match(await errorText(), /^Invalid label "novalue"/);
    assert.equal(nodeRequests("POST", "/api/v1/nodes/join-tokens").length, 0, "invalid labels send nothing");

    await fill("join-token-lifetime", "86400");
    await fill("join-token-labels", "site=berlin, rack=2");
    await browser.evaluate(`${byId("join-token-submit")}.click()`);
    await browser.waitFor(`${byId("join-token-created")}.checkVisibility()`);
    assert.deepEqual(nodeRequests("POST", "/api/v1/nodes/join-tokens")[0].body, {
      ttl_secs: 86400,
      labels: { site: "berlin", rack: "2" },
    });
    const token = `rpj1_${"ab".repeat(32)}_${"cd".repeat(24)}`;
    assert.equal(await browser.evaluate(`${byId("join-token-value")}.value`), token);
    assert.equal(
      await browser.evaluate(`${byId("join-token-command")}.value`),
      `RDP_PROXY_JOIN_TOKEN=${token} rdp-proxy-agent --control-url https://<node-api-address> --data-dir /var/lib/rdp-proxy-agent`,
    );
    assert.match(await browser.evaluate(`${byId("join-token-expiry")}.textContent`), /^It expires at .+\.$/);
    assert.equal(await browser.evaluate(`${byId("join-token-labels")}.value`), "", "form cleared");
    assert.equal(await browser.evaluate(`document.activeElement.id`), "join-token-value");
    if (SCREENSHOT_DIR) {
      await browser.screenshot(path.join(SCREENSHOT_DIR, "admin-nodes-join-token.png"));
    }

    await browser.evaluate(`${byId("join-token-command-copy")}.click()`);
    await browser.waitFor(`${byId("join-token-copy-result")}.textContent !== ""`);
    assert.match(
      await browser.evaluate(`${byId("join-token-copy-result")}.textContent`),
      /^(Copied the command\.|Copying failed: press Ctrl\+C to copy the selected command\.)$/,
    );

    // Leaving the section removes the token from the page.
    await browser.evaluate(`${byId("tab-keys")}.click()`);
    await browser.evaluate(`${byId("tab-nodes")}.click()`);
    assert.equal(await isVisible("join-token-created"), false);
    assert.equal(await browser.evaluate(`${byId("join-token-value")}.value`), "");
    assert.equal(await browser.evaluate(`${byId("join-token-command")}.value`), "");
  });

  test("join token rejection shown", async () => {
    await openNodes();
    await fill("join-token-labels", "Site=berlin");
    await browser.evaluate(`${byId("join-token-submit")}.click()`);
    await browser.waitFor(`${byId("error")}.checkVisibility()`);
    assert.equal(await errorText(), 'label key "Site" must be 1-63 of a-z 0-9 - _ . /');
    assert.equal(await isVisible("join-token-created"), false);
  });

  test("list reloads every 5 s while shown", async () => {
    await openNodes();
    await browser.evaluate(`document.querySelector('#nodes-body button[aria-label="Drain node edge-1"]').focus()`);
    server.node("edge-1").workers = [workerView(5, { node_cpu: 0.1, max_sessions: 20, health: 88 })];
    await browser.waitFor(`document.querySelector("#nodes-body tr").cells[4].textContent === "5 / 20"`, 7000);
    assert.equal((await column(5))[0], "10%");
    assert.equal((await column(6))[0], "88 / 100");
    assert.equal(
      await browser.evaluate(`document.activeElement.getAttribute("aria-label")`),
      "Drain node edge-1",
      "focus stays on the button",
    );

    await browser.evaluate(`${byId("tab-keys")}.click()`);
    const count = nodeRequests("GET", "/api/v1/nodes").length;
    await sleep(5600);
    assert.equal(nodeRequests("GET", "/api/v1/nodes").length, count, "no reload while another section is open");

    await browser.evaluate(`${byId("tab-nodes")}.click()`);
    await waitUntil(() => nodeRequests("GET", "/api/v1/nodes").length > count, "a reload on return");
  });

  test("sign-out stops the reload", async () => {
    await openNodes();
    await browser.evaluate(`${byId("logout")}.click()`);
    await browser.waitFor(`!${byId("login-view")}.hidden`);
    const count = nodeRequests("GET", "/api/v1/nodes").length;
    assert.equal(await browser.evaluate(`${byId("nodes-body")}.children.length`), 0, "rows removed");
    await sleep(5600);
    assert.equal(nodeRequests("GET", "/api/v1/nodes").length, count);
  });
});
