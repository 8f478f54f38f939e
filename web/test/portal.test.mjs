// Browser tests of the organisation portal: organisations, permissions, the admin sections and
// token renewal, in headless Chromium against a fresh mock control plane per test. Skipped when
// Chromium is not installed. Set SCREENSHOT_DIR to save screenshots of the admin and member views.

import assert from "node:assert/strict";
import path from "node:path";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { Browser, chromiumAvailable } from "./support/browser.mjs";
import { MockServer } from "./support/mock-server.mjs";
import { storeLoginIn, waitUntil } from "./support/pages.mjs";

const WEB_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR;
const ADMIN_TABS = ["tab-members", "tab-resources", "tab-policy", "tab-audit", "tab-keys"];

/** Returns a page expression for the element with `id`. */
function byId(id) {
  return `document.getElementById(${JSON.stringify(id)})`;
}

describe("organisation portal in Chromium", { skip: !chromiumAvailable() && "Chromium is not installed" }, () => {
  let server;
  let browser;

  before(async () => {
    browser = await Browser.launch();
  });

  after(async () => {
    await browser?.close();
  });

  beforeEach(async () => {
    // A new server per test: a fresh mock state, and a new origin so localStorage starts empty.
    server = await new MockServer(WEB_ROOT).listen();
    browser.confirmAnswer = true;
    browser.consoleMessages = [];
    await browser.setViewport(1280, 720);
  });

  afterEach(async () => {
    await server?.close();
  });

  async function isVisible(id) {
    return browser.evaluate(`${byId(id)}.checkVisibility()`);
  }

  async function errorText() {
    return browser.evaluate(`${byId("error")}.checkVisibility() ? ${byId("error")}.textContent : null`);
  }

  /**
   * Stores a login for `username` and opens the portal at `options.hash`, waiting until the
   * desktops are listed. The portal may rewrite the hash, so this waits for the path only.
   */
  async function openPortal(username, options = {}) {
    const login = await storeLoginIn(browser, server, username, options);
    await browser.send("Page.navigate", { url: `${server.origin}/${options.hash ?? ""}` });
    await browser.waitFor(`location.pathname === "/" && document.querySelectorAll("#targets li").length > 0`);
    return login;
  }

  /** Sets the value of the input, select or textarea with `id` as a user would, firing input and change. */
  async function fill(id, value) {
    await browser.evaluate(`(() => {
      const element = ${byId(id)};
      element.value = ${JSON.stringify(value)};
      element.dispatchEvent(new Event("input", { bubbles: true }));
      element.dispatchEvent(new Event("change", { bubbles: true }));
    })()`);
  }

  async function click(id) {
    await browser.evaluate(`${byId(id)}.click()`);
  }

  /** Clicks the button whose aria-label or text is `label` inside the element matching `scope`. */
  async function clickButton(scope, label) {
    const clicked = await browser.evaluate(`(() => {
      const button = [...document.querySelectorAll(${JSON.stringify(`${scope} button`)})]
        .find((candidate) => (candidate.getAttribute("aria-label") ?? candidate.textContent) === ${JSON.stringify(label)});
      button?.click();
      return Boolean(button);
    })()`);
    assert.ok(clicked, `button ${label} in ${scope}`);
  }

  function desktopNames() {
    return browser.evaluate(`[...document.querySelectorAll("#targets button")].map((button) => button.getAttribute("aria-label"))`);
  }

  function tableColumn(bodyId, column) {
    return browser.evaluate(`[...document.querySelectorAll("#${bodyId} tr")].map((row) => row.cells[${column}].textContent)`);
  }

  function apiRequests(method, pathname) {
    return server.requests.filter((entry) => entry.method === method && entry.path === pathname);
  }

  async function screenshot(name) {
    if (SCREENSHOT_DIR) {
      await browser.screenshot(path.join(SCREENSHOT_DIR, name));
    }
  }

  test("login with two orgs switches desktops", async () => {
    await browser.navigate(`${server.origin}/`);
    await browser.waitFor(`!${byId("login-view")}.hidden`);
    await fill("username", "alice");
    await fill("password", "alice-password");
    await click("login-submit");
    await browser.waitFor(`document.querySelectorAll("#targets button").length === 2`);

    assert.deepEqual(apiRequests("POST", "/api/v1/login")[0].body, { username: "alice", password: "alice-password" });
    assert.equal(await browser.evaluate(`${byId("org-name")}.textContent`), "Acme");
    assert.deepEqual(
      await browser.evaluate(`[...${byId("org-select")}.options].map((option) => [option.value, option.textContent])`),
      [
        ["org-1", "Acme (admin)"],
        ["org-2", "Lab (member)"],
      ],
    );
    assert.equal(await browser.evaluate(`${byId("org-select")}.value`), "org-1");
    assert.deepEqual(await desktopNames(), ["Open desktop Build server", "Open desktop Test desktop"]);
    assert.deepEqual(
      await browser.evaluate(`[...document.querySelectorAll("#targets li.target")].map((item) =>
        [...item.querySelectorAll(".tag")].map((tag) => tag.textContent))`),
      [["env=prod", "team=build"], ["env=test"]],
      "labels shown as tags",
    );

    await fill("org-select", "org-2");
    await browser.waitFor(`${byId("org-name")}.textContent === "Lab"`);
    await browser.waitFor(`document.querySelectorAll("#targets button").length === 1`);
    assert.deepEqual(await desktopNames(), ["Open desktop Lab desktop"]);
    assert.deepEqual(apiRequests("POST", "/api/v1/auth/switch").at(-1).body, { org_id: "org-2" });
    const stored = await browser.evaluate(`JSON.parse(localStorage.getItem("rdp-proxy.login"))`);
    assert.equal(stored.org.id, "org-2");
    assert.equal(await browser.evaluate(`${byId("account-name")}.textContent`), "alice (member)");
    for (const id of ADMIN_TABS) {
      assert.equal(await isVisible(id), false, `${id} hidden for a member of Lab`);
    }

    // The next login requests the organisation chosen last.
    await click("logout");
    await browser.waitFor(`!${byId("login-view")}.hidden`);
    assert.equal(apiRequests("POST", "/api/v1/logout").length, 1, "logout revokes the login");
    const loginsBefore = apiRequests("POST", "/api/v1/login").length;
    await fill("username", "alice");
    await fill("password", "alice-password");
    await click("login-submit");
    // The header may still show "Lab" from before the logout, so wait for the request itself.
    await waitUntil(() => apiRequests("POST", "/api/v1/login").length > loginsBefore, "the second login request");
    await browser.waitFor(`${byId("org-name")}.textContent === "Lab"`);
    assert.deepEqual(apiRequests("POST", "/api/v1/login").at(-1).body, {
      username: "alice",
      password: "alice-password",
      org_id: "org-2",
    });
  });

  test("login without remembered org membership", async () => {
    await browser.navigate(`${server.origin}/style.css`);
    await browser.evaluate(`localStorage.setItem("rdp-proxy.last-org", JSON.stringify({ bob: "org-2" }))`);
    await browser.navigate(`${server.origin}/`);
    await fill("username", "bob");
    await fill("password", "bob-password");
    await click("login-submit");
    await browser.waitFor(`${byId("org-name")}.textContent === "Acme"`);
    const logins = apiRequests("POST", "/api/v1/login");
    assert.equal(logins.length, 2, "retried without org_id");
    assert.equal(logins[0].body.org_id, "org-2");
    assert.equal(logins[0].status, 404);
    assert.equal(logins[1].body.org_id, undefined);
    assert.equal(await errorText(), null);
  });

  test("member sees no admin tabs", async () => {
    await openPortal("bob");
    for (const id of ADMIN_TABS) {
      assert.equal(await isVisible(id), false, `${id} hidden`);
    }
    assert.equal(await isVisible("tabs"), false, "tab bar hidden with a single section");
    assert.equal(await isVisible("panel-desktops"), true);
    assert.equal(await browser.evaluate(`${byId("org-name")}.textContent`), "Acme");
    assert.equal(await browser.evaluate(`${byId("org-select")}.disabled`), true, "one organisation, nothing to switch to");
    assert.equal(await isVisible("sessions-mine-field"), false, "no filter without view_all_sessions");
    assert.deepEqual(await desktopNames(), ["Open desktop Build server", "Open desktop Test desktop"]);

    server.createSession("bob");
    server.createSession("alice");
    await browser.waitFor(`document.querySelectorAll("#sessions-body tr").length === 1`, 4000);
    assert.equal(
      await browser.evaluate(`document.querySelector("#sessions th.owner-column").checkVisibility()`),
      false,
      "owner column hidden for own sessions only",
    );
    await screenshot("portal-member.png");

    // A member who types an admin section's address still gets the desktops.
    await openPortal("bob", { hash: "#members" });
    assert.equal(await isVisible("panel-members"), false);
    assert.equal(await isVisible("panel-desktops"), true);
    assert.equal(apiRequests("GET", "/api/v1/members").length, 0, "members never requested");
  });

  test("admin sees admin tabs", async () => {
    const bobSession = server.createSession("bob");
    server.updateSession(bobSession, { state: "active", control: { user: "bob", since: new Date().toISOString() } });
    await openPortal("alice");
    await browser.waitFor(`document.querySelector('tr[data-session-id="${bobSession.id}"]')`);
    for (const id of ["tab-desktops", ...ADMIN_TABS]) {
      assert.equal(await isVisible(id), true, `${id} visible`);
    }
    assert.deepEqual(await desktopNames(), ["Open desktop Build server", "Open desktop Test desktop"], "targets with can_connect false are left out");
    assert.equal(await isVisible("sessions-mine-field"), true);
    assert.equal(await browser.evaluate(`document.querySelector("#sessions th.owner-column").checkVisibility()`), true);
    await screenshot("portal-admin.png");

    await click("tab-members");
    await browser.waitFor(`document.querySelectorAll("#members-body tr").length === 3`);
    assert.equal(await isVisible("panel-desktops"), false);
    assert.equal(await browser.evaluate(`location.hash`), "#members");
    assert.deepEqual(await tableColumn("members-body", 0), ["alice (you)", "bob", "carol"]);
    await screenshot("admin-members.png");

    await click("tab-resources");
    await browser.waitFor(`document.querySelectorAll("#resource-targets-body tr").length === 3`);
    assert.deepEqual(await tableColumn("resource-targets-body", 0), ["Build server", "Test desktop", "Domain controller"]);
    await browser.waitFor(`document.querySelectorAll("#credentials-body tr").length === 1`);
    await screenshot("admin-resources.png");

    await click("tab-policy");
    await browser.waitFor(`${byId("policy-text")}.value.length > 0`);
    assert.equal(await browser.evaluate(`${byId("policy-meta")}.textContent.startsWith("Version 1")`), true);
    await screenshot("admin-policy.png");

    await click("tab-audit");
    await browser.waitFor(`document.querySelectorAll("#audit-body tr").length > 0`);
    await screenshot("admin-audit.png");

    await click("tab-keys");
    await browser.waitFor(`${byId("keys-empty")}.checkVisibility()`);
    await screenshot("admin-keys.png");

    // Arrow keys move between tabs.
    await browser.evaluate(`${byId("tab-keys")}.focus()`);
    await browser.key("rawKeyDown", { code: "Home", key: "Home", keyCode: 36 });
    await browser.waitFor(`${byId("panel-desktops")}.checkVisibility()`);
    assert.equal(await browser.evaluate(`document.activeElement.id`), "tab-desktops");
  });

  test("narrow window keeps content reachable", async () => {
    await browser.setViewport(420, 800);
    await openPortal("alice");
    server.createSession("bob");
    await browser.waitFor(`document.querySelectorAll("#sessions-body tr").length === 1`, 4000);
    const overflow = await browser.evaluate(`document.documentElement.scrollWidth - document.documentElement.clientWidth`);
    assert.equal(overflow, 0, "the page itself does not scroll sideways");
    await screenshot("portal-admin-narrow.png");
    await click("tab-resources");
    await browser.waitFor(`document.querySelectorAll("#resource-targets-body tr").length === 3`);
    await screenshot("admin-resources-narrow.png");
    await openPortal("bob");
    await screenshot("portal-member-narrow.png");
  });

  test("policy save shows problem positions", async () => {
    await openPortal("alice", { hash: "#policy" });
    await browser.waitFor(`${byId("policy-text")}.value.length > 0`);
    await fill("policy-text", "allow role:admin *\n  permit everyone\ndeny\n");
    assert.equal(await isVisible("policy-unsaved"), true, "unsaved changes marked");

    await click("policy-validate");
    await browser.waitFor(`document.querySelectorAll("#policy-problems li").length === 2`);
    assert.equal(await browser.evaluate(`${byId("policy-result")}.textContent`), "The policy has 2 problems.");
    assert.equal(await errorText(), null, "a failed validation is not an error");

    await click("policy-save");
    await browser.waitFor(`${byId("error")}.checkVisibility()`);
    assert.equal(await errorText(), "The policy has errors; the previous policy stays in force.");
    assert.deepEqual(await browser.evaluate(`[...document.querySelectorAll("#policy-problems li")].map((item) => item.textContent)`), [
      'line 2, column 3: unknown statement "permit"; expected allow or deny',
      "line 3, column 5: deny needs a subject and an action",
    ]);
    assert.equal(server.api.policies.get("org-1").version, 1, "old policy kept");
    assert.deepEqual(apiRequests("PUT", "/api/v1/policy")[0].body.version, 1);

    // A problem moves the cursor to its position.
    await browser.evaluate(`document.querySelector("#policy-problems li button").click()`);
    assert.equal(await browser.evaluate(`${byId("policy-text")}.selectionStart`), "allow role:admin *\n  ".length);
    await screenshot("admin-policy-problems.png");

    await fill("policy-text", "allow role:admin *\n");
    await click("policy-validate");
    await browser.waitFor(`${byId("policy-result")}.textContent === "The policy is valid."`);
    await click("policy-save");
    await browser.waitFor(`${byId("policy-result")}.textContent === "Saved version 2."`);
    assert.equal(server.api.policies.get("org-1").text, "allow role:admin *\n");
    assert.equal(await isVisible("policy-unsaved"), false);
    assert.equal(await isVisible("policy-problems"), false);
  });

  test("policy conflict loads newer version", async () => {
    await openPortal("alice", { hash: "#policy" });
    await browser.waitFor(`${byId("policy-text")}.value.length > 0`);
    // Someone else saves while this page has version 1 open.
    Object.assign(server.api.policies.get("org-1"), { text: "allow role:owner *\n", version: 2, updated_by: "carol" });

    await fill("policy-text", "allow role:admin *\n");
    await click("policy-save");
    await browser.waitFor(`${byId("policy-conflict")}.checkVisibility()`);
    assert.equal(
      await errorText(),
      "The policy changed since you loaded it (you edited version 1, the current version is 2).",
    );
    assert.match(await browser.evaluate(`${byId("policy-conflict")}.textContent`), /Someone else saved a newer version/);
    assert.equal(server.api.policies.get("org-1").text, "allow role:owner *\n", "newer version kept");

    await click("policy-load-newer");
    await browser.waitFor(`${byId("policy-text")}.value === "allow role:owner *\\n"`);
    assert.equal(await isVisible("policy-conflict"), false);
    assert.match(await browser.evaluate(`${byId("policy-meta")}.textContent`), /^Version 2, saved .* by carol\.$/);

    await click("policy-default");
    await browser.waitFor(`${byId("policy-text")}.value.startsWith("# Default policy")`);
    assert.equal(await isVisible("policy-unsaved"), true);
    await click("policy-save");
    await browser.waitFor(`${byId("policy-result")}.textContent === "Saved version 3."`);
    assert.deepEqual(apiRequests("PUT", "/api/v1/policy").at(-1).body.version, 2);
  });

  test("api key shown once", async () => {
    await openPortal("alice", { hash: "#keys" });
    await browser.waitFor(`${byId("keys-empty")}.checkVisibility()`);
    await fill("key-name", "ci pipeline");
    await fill("key-role", "operator");
    await fill("key-expiry", "30");
    await browser.evaluate(`${byId("key-form")}.requestSubmit()`);
    await browser.waitFor(`${byId("key-created")}.checkVisibility()`);

    const key = server.api.apiKeys[0].key;
    assert.deepEqual(apiRequests("POST", "/api/v1/api-keys")[0].body, { name: "ci pipeline", role: "operator", expires_in_days: 30 });
    assert.equal(await browser.evaluate(`${byId("key-value")}.value`), key);
    assert.equal(await browser.evaluate(`${byId("key-value")}.readOnly`), true);
    assert.equal(await browser.evaluate(`document.documentElement.outerHTML.includes(${JSON.stringify(key)})`), false, "key only in the field's value");
    await browser.waitFor(`document.querySelectorAll("#keys-body tr").length === 1`);
    assert.deepEqual(await tableColumn("keys-body", 0), ["ci pipeline"]);
    assert.deepEqual(await tableColumn("keys-body", 5), ["active"]);
    await screenshot("admin-key-created.png");

    await click("key-dismiss");
    assert.equal(await isVisible("key-created"), false);
    assert.equal(await browser.evaluate(`${byId("key-value")}.value`), "");

    // Leaving the section also removes a key still on display.
    await browser.evaluate(`${byId("key-name")}.value = "second"`);
    await browser.evaluate(`${byId("key-form")}.requestSubmit()`);
    await browser.waitFor(`${byId("key-created")}.checkVisibility()`);
    await click("tab-audit");
    await click("tab-keys");
    assert.equal(await isVisible("key-created"), false);
    assert.equal(await browser.evaluate(`${byId("key-value")}.value`), "");
    assert.equal(server.api.apiKeys[1].expires_at, null, "no expiry sent when the field is empty");

    await browser.waitFor(`document.querySelectorAll("#keys-body tr").length === 2`);
    await clickButton("#keys-body", "Revoke ci pipeline");
    await browser.waitFor(`[...document.querySelectorAll("#keys-body tr")].some((row) => row.cells[5].textContent === "revoked")`);
    assert.ok(server.api.apiKeys[0].revoked_at, "key revoked on the server");
  });

  test("expired token renewed and retried", async () => {
    const login = await openPortal("alice");
    server.api.expireAccessTokens();
    // The session list reloads every 3 s; its next request finds the token expired.
    await browser.waitFor(`JSON.parse(localStorage.getItem("rdp-proxy.login")).access_token !== ${JSON.stringify(login.access_token)}`, 5000);
    const renewedToken = await browser.evaluate(`JSON.parse(localStorage.getItem("rdp-proxy.login")).access_token`);
    await waitUntil(
      () => apiRequests("GET", "/api/v1/sessions").some((entry) => entry.token === renewedToken && entry.status === 200),
      "session list retried with the new token",
    );

    const rejected = apiRequests("GET", "/api/v1/sessions").filter((entry) => entry.status === 401);
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0].token, login.access_token);
    const refreshes = apiRequests("POST", "/api/v1/auth/refresh");
    assert.equal(refreshes.length, 1);
    assert.deepEqual(refreshes[0].body, { refresh_token: login.refresh_token });
    assert.equal(refreshes[0].token, null, "refresh sends no bearer token");
    assert.equal(await errorText(), null);
    assert.equal(await isVisible("portal-view"), true);
    assert.equal(
      browser.consoleMessages.some((message) => message.includes(login.access_token) || message.includes(renewedToken)),
      false,
      "no token in the console",
    );
  });

  test("failed renewal returns to login", async () => {
    await openPortal("alice");
    server.api.expireAccessTokens();
    server.api.refreshTokens.clear();
    await browser.waitFor(`${byId("login-view")}.checkVisibility()`, 5000);
    assert.equal(await errorText(), "Your sign-in could not be renewed (The refresh token is invalid). Sign in again.");
    assert.equal(await browser.evaluate(`localStorage.getItem("rdp-proxy.login")`), null);
    assert.equal(await isVisible("portal-view"), false);
  });

  test("token renewed before expiry", async () => {
    const soon = new Date(Date.now() + 20_000).toISOString();
    const login = await openPortal("alice", { changes: { expires_at: soon } });
    const first = server.requests[0];
    assert.equal(first.path, "/api/v1/auth/refresh", "renewed before the first request");
    assert.equal(apiRequests("POST", "/api/v1/auth/refresh").length, 1, "one renewal");
    assert.ok(server.requests.slice(1).every((entry) => entry.token !== login.access_token), "old token not used");
    assert.equal(server.requests.filter((entry) => entry.status === 401).length, 0);
  });

  test("viewer renews token for attach", async () => {
    const login = await storeLoginIn(browser, server, "alice");
    const session = server.createSession("alice");
    server.api.expireAccessTokens();
    await browser.navigate(`${server.origin}/viewer.html?session=${session.id}&mode=control`);
    await browser.waitFor(`document.body.dataset.state === "active"`);
    const attaches = server.attachRequests(session.id);
    assert.deepEqual(
      attaches.map((entry) => entry.status),
      [401, 200],
    );
    assert.equal(attaches[0].token, login.access_token);
    assert.notEqual(attaches[1].token, login.access_token);
    // The session name request also failed with the old token; both share one renewal.
    assert.equal(apiRequests("POST", "/api/v1/auth/refresh").length, 1);
  });

  test("observe opens read-only viewer", async () => {
    const session = server.createSession("bob");
    server.updateSession(session, { state: "active", control: { user: "bob", since: new Date().toISOString() } });
    await openPortal("alice");
    await browser.waitFor(`document.querySelector('tr[data-session-id="${session.id}"]')`);
    await clickButton(`tr[data-session-id="${session.id}"]`, "Observe");
    await browser.waitFor(`location.pathname === "/viewer.html"`);
    assert.deepEqual(await browser.evaluate(`Object.fromEntries(new URLSearchParams(location.search))`), {
      session: session.id,
      mode: "observe",
    });
    await browser.waitFor(`document.body.dataset.state === "active"`);
    assert.equal(await browser.evaluate(`document.body.dataset.stateText`), "Observing — bob has control");
    assert.deepEqual(server.attachRequests(session.id).at(-1).body, { mode: "observe" });
    assert.equal(session.control.user, "bob", "control stays with bob");

    const viewer = server.viewersOf(session.id).at(-1);
    await browser.key("keyDown", { code: "KeyA", key: "a", keyCode: 65, text: "a" });
    await browser.key("keyUp", { code: "KeyA", key: "a", keyCode: 65 });
    await sleep(300);
    assert.equal(viewer.received.filter((message) => message.type === "key").length, 0, "an observer sends no input");

    assert.equal(await browser.evaluate(`${byId("detach")}.textContent`), "Stop observing");
    await click("detach");
    await browser.waitFor(`document.body.dataset.stateText === "Stopped observing"`);
    assert.equal(apiRequests("POST", `/api/v1/sessions/${session.id}/detach`).length, 0, "bob stays attached");
  });

  test("members add change and remove", async () => {
    await openPortal("alice", { hash: "#members" });
    await browser.waitFor(`document.querySelectorAll("#members-body tr").length === 3`);
    assert.equal(
      await browser.evaluate(`${byId("member-role")}.querySelector('option[value="owner"]').disabled`),
      true,
      "only an owner may grant owner",
    );

    await fill("member-username", "dave");
    await fill("member-role", "operator");
    await fill("member-password", "short");
    await browser.evaluate(`${byId("member-form")}.requestSubmit()`);
    assert.equal(await errorText(), "The initial password must have at least 12 characters.");
    assert.equal(apiRequests("POST", "/api/v1/members").length, 0);

    await fill("member-password", "a-long-enough-password");
    await browser.evaluate(`${byId("member-form")}.requestSubmit()`);
    await browser.waitFor(`document.querySelectorAll("#members-body tr").length === 4`);
    assert.deepEqual(apiRequests("POST", "/api/v1/members")[0].body, {
      username: "dave",
      role: "operator",
      password: "a-long-enough-password",
    });
    assert.equal(await browser.evaluate(`${byId("member-password")}.value`), "", "password field cleared");
    assert.equal(await browser.evaluate(`${byId("status")}.textContent`), "Added dave as operator.");

    const dave = server.api.userByName("dave");
    const row = `tr[data-user-id="${dave.id}"]`;
    await browser.evaluate(`(() => {
      const select = document.querySelector('${row} select');
      select.value = "auditor";
      select.dispatchEvent(new Event("change"));
    })()`);
    await waitUntil(() => server.api.membership("org-1", dave.id).role === "auditor", "role changed");
    assert.deepEqual(apiRequests("PATCH", `/api/v1/members/${dave.id}`)[0].body, { role: "auditor" });

    await clickButton(row, "Disable dave");
    await browser.waitFor(`document.querySelector('${row}').cells[2].textContent === "disabled"`);
    assert.deepEqual(apiRequests("PATCH", `/api/v1/members/${dave.id}`)[1].body, { disabled: true });
    await clickButton(row, "Enable dave");
    await browser.waitFor(`document.querySelector('${row}').cells[2].textContent === "active"`);

    await clickButton(row, "Remove dave");
    await browser.waitFor(`!document.querySelector('${row}')`);
    assert.equal(server.api.membership("org-1", dave.id), undefined);

    // An owner's role may not be changed by an admin, and the server rejects it too.
    server.api.membership("org-1", "u-bob").role = "owner";
    await click("tab-desktops");
    await click("tab-members");
    await browser.waitFor(`document.querySelector('tr[data-user-id="u-bob"] select')?.value === "owner"`);
    assert.equal(await browser.evaluate(`document.querySelector('tr[data-user-id="u-bob"] select').disabled`), true);
  });

  test("resources create and edit target", async () => {
    await openPortal("alice", { hash: "#resources" });
    await browser.waitFor(`document.querySelectorAll("#credentials-body tr").length === 1`);

    await fill("credential-name", "qa-login");
    await fill("credential-username", "qa");
    await fill("credential-password", "credential-secret-1");
    await fill("credential-domain", "QA");
    await browser.evaluate(`${byId("credential-form")}.requestSubmit()`);
    await browser.waitFor(`document.querySelectorAll("#credentials-body tr").length === 2`);
    const credential = server.api.credentials.find((entry) => entry.name === "qa-login");
    assert.equal(credential.password, "credential-secret-1");
    assert.equal(await browser.evaluate(`${byId("credential-password")}.value`), "", "password field cleared");
    assert.equal(
      await browser.evaluate(`document.documentElement.outerHTML.includes("credential-secret-1")`),
      false,
      "password not in the page",
    );
    await browser.waitFor(`[...${byId("target-credential")}.options].some((option) => option.value === ${JSON.stringify(credential.id)})`);

    await fill("target-name", "QA desktop");
    await fill("target-host", "10.0.9.9");
    await fill("target-port", "3390");
    await fill("target-security", "tls");
    await fill("target-labels", "env=qa, team = test ");
    await fill("target-max-width", "1600");
    await fill("target-credential", credential.id);
    await browser.evaluate(`${byId("target-form")}.requestSubmit()`);
    await browser.waitFor(`document.querySelectorAll("#resource-targets-body tr").length === 4`);
    assert.deepEqual(apiRequests("POST", "/api/v1/targets")[0].body, {
      name: "QA desktop",
      host: "10.0.9.9",
      port: 3390,
      security: "tls",
      labels: { env: "qa", team: "test" },
      credential_id: credential.id,
      max_width: 1600,
    });
    const target = server.api.targets.find((entry) => entry.name === "QA desktop");

    await clickButton(`tr[data-target-id="${target.id}"]`, "Edit target QA desktop");
    assert.equal(await browser.evaluate(`${byId("target-form-title")}.textContent`), "Edit target QA desktop");
    assert.equal(await browser.evaluate(`${byId("target-labels")}.value`), "env=qa, team=test");
    await fill("target-name", "QA desktop 2");
    await fill("target-max-width", "");
    await browser.evaluate(`${byId("target-form")}.requestSubmit()`);
    await browser.waitFor(`document.querySelector('tr[data-target-id="${target.id}"]').cells[0].textContent === "QA desktop 2"`);
    const patch = apiRequests("PATCH", `/api/v1/targets/${target.id}`)[0].body;
    assert.equal(patch.name, "QA desktop 2");
    assert.equal(patch.max_width, null, "an emptied limit is cleared");
    assert.equal(await browser.evaluate(`${byId("target-form-title")}.textContent`), "New target");

    await fill("target-name", "Bad labels");
    await fill("target-host", "10.0.9.10");
    await fill("target-credential", credential.id);
    await fill("target-labels", "novalue");
    await browser.evaluate(`${byId("target-form")}.requestSubmit()`);
    assert.equal(await errorText(), 'Invalid label "novalue": write labels as key=value, separated by commas.');

    // A credential that a target uses cannot be deleted.
    await clickButton(`tr[data-credential-id="${credential.id}"]`, "Delete credential qa-login");
    await browser.waitFor(`${byId("error")}.checkVisibility()`);
    assert.equal(await errorText(), "Credential qa-login is used by target QA desktop 2.");

    await clickButton(`tr[data-target-id="${target.id}"]`, "Delete target QA desktop 2");
    await browser.waitFor(`!document.querySelector('tr[data-target-id="${target.id}"]')`);
    assert.equal(server.api.targets.includes(target), false);
  });

  test("audit filters and verifies chain", async () => {
    await openPortal("alice");
    server.api.record({ user: { id: "u-bob", name: "bob" }, org_id: "org-1" }, "session.create", "denied", { reason: "no access" });
    await click("tab-audit");
    await browser.waitFor(`document.querySelectorAll("#audit-body tr").length === 2`);
    const seqs = await browser.evaluate(`[...document.querySelectorAll("#audit-body tr")].map((row) => Number(row.dataset.seq))`);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), "newest first");

    await fill("audit-result", "denied");
    await browser.waitFor(`document.querySelectorAll("#audit-body tr").length === 1`);
    assert.deepEqual(await tableColumn("audit-body", 2), ["session.create"]);
    assert.equal(apiRequests("GET", "/api/v1/audit").at(-1).query, "?result=denied");
    await fill("audit-action", "auth.login");
    await browser.evaluate(`${byId("audit-filter")}.requestSubmit()`);
    await browser.waitFor(`${byId("audit-empty")}.checkVisibility()`);

    await click("audit-verify");
    await browser.waitFor(`${byId("audit-verify-result")}.textContent.startsWith("The hash chain is intact")`);
    server.api.tamperAudit("org-1", 1);
    await click("audit-verify");
    await browser.waitFor(`${byId("audit-verify-result")}.textContent.startsWith("The hash chain is broken")`);
    assert.match(await browser.evaluate(`${byId("audit-verify-result")}.textContent`), /^The hash chain is broken at record 1 \(1 record checked\)\.$/);
  });

  test("load more appends next page", async () => {
    server.api.pageSize = 2;
    await openPortal("alice", { hash: "#members" });
    await browser.waitFor(`document.querySelectorAll("#members-body tr").length === 2`);
    assert.equal(await isVisible("members-more"), true);
    await click("members-more");
    await browser.waitFor(`document.querySelectorAll("#members-body tr").length === 3`);
    assert.equal(await isVisible("members-more"), false);
    assert.ok(apiRequests("GET", "/api/v1/members").at(-1).query.includes("cursor="), "second page by cursor");

    for (let index = 0; index < 3; index += 1) {
      server.createSession("alice");
    }
    await click("tab-desktops");
    await browser.waitFor(`document.querySelectorAll("#sessions-body tr").length === 2`, 4000);
    await browser.waitFor(`${byId("sessions-more")}.checkVisibility()`);
    await click("sessions-more");
    await browser.waitFor(`document.querySelectorAll("#sessions-body tr").length === 3`);
    // Later refreshes keep every loaded page.
    await sleep(3500);
    assert.equal(await browser.evaluate(`document.querySelectorAll("#sessions-body tr").length`), 3);
    assert.equal(await isVisible("sessions-more"), false);
  });

  test("404 reloads the list", async () => {
    await openPortal("alice", { hash: "#members" });
    await browser.waitFor(`document.querySelectorAll("#members-body tr").length === 3`);
    server.api.memberships = server.api.memberships.filter((entry) => entry.user_id !== "u-carol");
    await clickButton(`tr[data-user-id="u-carol"]`, "Disable carol");
    await browser.waitFor(`document.querySelectorAll("#members-body tr").length === 2`);
    assert.equal(await errorText(), "Member not found.");
  });

  test("403 shows the message", async () => {
    await openPortal("alice", { hash: "#members" });
    await browser.waitFor(`document.querySelectorAll("#members-body tr").length === 3`);
    server.api.membership("org-1", "u-alice").role = "operator";
    await clickButton(`tr[data-user-id="u-bob"]`, "Disable bob");
    await browser.waitFor(`${byId("error")}.checkVisibility()`);
    assert.equal(await errorText(), "You do not have the manage_members permission in this organisation.");
    assert.equal(await isVisible("portal-view"), true, "still signed in");
  });
});
