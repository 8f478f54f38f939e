// Helpers shared by the browser tests.

import { setTimeout as sleep } from "node:timers/promises";

/**
 * Stores a login for `username` (in `orgId`, or the user's first organisation) in the page's
 * localStorage as the portal would, with `changes` applied to the token response. Returns the
 * stored token response.
 */
export async function storeLoginIn(browser, server, username, { orgId, changes = {} } = {}) {
  const login = { ...server.loginAs(username, orgId), ...changes };
  await browser.navigate(`${server.origin}/style.css`);
  await browser.evaluate(`(() => {
    localStorage.clear();
    sessionStorage.clear();
    localStorage.setItem("rdp-proxy.login", ${JSON.stringify(JSON.stringify(login))});
  })()`);
  return login;
}

/** Polls `check` in Node until it returns a truthy value, and returns it. */
export async function waitUntil(check, description, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${description}`);
    }
    await sleep(25);
  }
}
