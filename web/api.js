// Client for the control plane's HTTP API (/api/v1), shared by the portal and the viewer.
//
// The login (access token, refresh token, user and organisations) is stored as one JSON value in
// localStorage["rdp-proxy.login"], so a viewer tab uses the portal's login. `request` renews the
// access token with the refresh token shortly before it expires, and once more when the server
// rejects it with 401 `token_expired`. A refresh token is single-use and presenting a spent one
// revokes the whole login, so tabs renew one at a time under a Web Lock and a tab that waited
// takes the token the other tab stored.

const LOGIN_KEY = "rdp-proxy.login";
// Keys of the login format before refresh tokens. They are removed on every save and sign-out.
const LEGACY_LOGIN_KEYS = ["rdp-proxy.token", "rdp-proxy.user", "rdp-proxy.expires_at"];
// Last organisation used per user name, sent as `org_id` on the next login. Kept after sign-out.
const LAST_ORG_KEY = "rdp-proxy.last-org";
// sessionStorage key for the reason of the last forced sign-out, shown on the login form.
const SIGNED_OUT_KEY = "rdp-proxy.signed-out";
const REFRESH_LOCK_NAME = "rdp-proxy.refresh";

/** How long before its expiry the access token is renewed, in milliseconds. */
export const REFRESH_MARGIN_MS = 60_000;

const EXPIRED_MESSAGE = "Your sign-in has expired. Sign in again.";

/** Roles a member of an organisation or an API key can have, from most to least privileged. */
export const ROLES = ["owner", "admin", "operator", "member", "auditor"];

/** An error response from the API, or a request that never got one (`status` 0). */
export class ApiError extends Error {
  constructor(status, code, message, problems = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    // Policy problems `{line, column, message}` of a 422 `invalid_policy` response.
    this.problems = problems;
  }

  get isUnauthorized() {
    return this.status === 401;
  }

  /** True when no HTTP response arrived (network down, server unreachable). */
  get isNetworkError() {
    return this.status === 0;
  }
}

function readLogin() {
  let login;
  try {
    login = JSON.parse(localStorage.getItem(LOGIN_KEY) ?? "null");
  } catch {
    return null;
  }
  if (!login || typeof login.access_token !== "string") {
    return null;
  }
  return login;
}

/** Milliseconds since the epoch of an RFC 3339 time. A missing or invalid time never expires. */
function expiryTime(value) {
  const time = Date.parse(value ?? "");
  return Number.isFinite(time) ? time : Infinity;
}

/** True while the access token is valid, or the refresh token can still get a new one. */
function isUsable(login) {
  const now = Date.now();
  if (expiryTime(login.expires_at) > now) {
    return true;
  }
  return typeof login.refresh_token === "string" && expiryTime(login.refresh_expires_at) > now;
}

/**
 * Stores a token response (login, refresh or organisation switch) and remembers its
 * organisation as the user's last one.
 */
export function saveLogin(response) {
  const login = {
    access_token: response.access_token,
    expires_at: response.expires_at ?? null,
    refresh_token: response.refresh_token ?? null,
    refresh_expires_at: response.refresh_expires_at ?? null,
    user: response.user ?? null,
    org: response.org ?? null,
    orgs: Array.isArray(response.orgs) ? response.orgs : [],
  };
  localStorage.setItem(LOGIN_KEY, JSON.stringify(login));
  for (const key of LEGACY_LOGIN_KEYS) {
    localStorage.removeItem(key);
  }
  if (login.user?.name && login.org?.id) {
    rememberOrg(login.user.name, login.org.id);
  }
}

/**
 * Removes the stored login. `message`, when given, is kept for this tab and shown by the portal
 * on its login form (see `takeSignedOutMessage`).
 */
export function clearLogin(message = undefined) {
  localStorage.removeItem(LOGIN_KEY);
  for (const key of LEGACY_LOGIN_KEYS) {
    localStorage.removeItem(key);
  }
  if (message) {
    sessionStorage.setItem(SIGNED_OUT_KEY, message);
  }
}

/** Returns the reason of the last forced sign-out in this tab, or null, and removes it. */
export function takeSignedOutMessage() {
  const message = sessionStorage.getItem(SIGNED_OUT_KEY);
  sessionStorage.removeItem(SIGNED_OUT_KEY);
  return message;
}

/**
 * Returns whether a usable login is stored: an access token that has not expired, or a refresh
 * token that can renew it. Clears a login that is neither.
 */
export function hasLogin() {
  const login = readLogin();
  if (login && !isUsable(login)) {
    clearLogin(EXPIRED_MESSAGE);
    return false;
  }
  return login !== null;
}

/** Returns the stored user `{id, name}`, or null. */
export function storedUser() {
  return readLogin()?.user ?? null;
}

/** Returns the organisation of the stored login `{id, name, role}`, or null. */
export function storedOrg() {
  return readLogin()?.org ?? null;
}

/** Returns the organisations of the stored login `[{id, name, role}]`. */
export function storedOrgs() {
  return readLogin()?.orgs ?? [];
}

/**
 * Calls `listener(login)` when another tab changes the stored login: a sign-in, a sign-out
 * (`login` is null), a token renewal or an organisation switch. `login` has `user`, `org` and
 * `orgs`.
 */
export function onStoredLoginChange(listener) {
  window.addEventListener("storage", (event) => {
    if (event.storageArea === localStorage && (event.key === LOGIN_KEY || event.key === null)) {
      listener(readLogin());
    }
  });
}

function readLastOrgs() {
  try {
    const value = JSON.parse(localStorage.getItem(LAST_ORG_KEY) ?? "{}");
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

function rememberOrg(username, orgId) {
  const lastOrgs = readLastOrgs();
  lastOrgs[username] = orgId;
  localStorage.setItem(LAST_ORG_KEY, JSON.stringify(lastOrgs));
}

function forgetOrg(username) {
  const lastOrgs = readLastOrgs();
  delete lastOrgs[username];
  localStorage.setItem(LAST_ORG_KEY, JSON.stringify(lastOrgs));
}

/** Returns the id of the organisation `username` used last in this browser, or null. */
export function lastOrgId(username) {
  const orgId = readLastOrgs()[username];
  return typeof orgId === "string" ? orgId : null;
}

/**
 * Sends one HTTP request with `token` as bearer (when not null) and returns the parsed JSON body.
 * Throws ApiError with the server's `{"error":{"code","message"}}` for non-2xx responses, and
 * with status 0 when the request fails before a response arrives.
 */
async function send(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (token) {
    headers.Authorization = `Bearer ${token}`;
  }
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }

  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "network_error", `Could not reach the server (${error.message}).`);
  }

  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }

  if (!response.ok) {
    const detail = data?.error;
    const code = typeof detail?.code === "string" ? detail.code : `http_${response.status}`;
    const message =
      typeof detail?.message === "string" && detail.message
        ? detail.message
        : `${method} ${path} failed with HTTP ${response.status} ${response.statusText}`.trim();
    const problems = Array.isArray(detail?.problems) ? detail.problems : [];
    throw new ApiError(response.status, code, message, problems);
  }
  return data;
}

/**
 * Sends one API request with the stored login and returns the parsed JSON body.
 *
 * `body`, when given, is sent as JSON. The access token is renewed first when it expires within
 * REFRESH_MARGIN_MS. A 401 `token_expired` renews it and sends the request once more. Any other
 * 401 clears the login, because the server no longer accepts it. Throws ApiError like `send`.
 */
export async function request(method, path, body = undefined) {
  const token = await currentAccessToken();
  try {
    return await send(method, path, body, token);
  } catch (error) {
    if (!token || !(error instanceof ApiError) || !error.isUnauthorized) {
      throw error;
    }
    if (error.code !== "token_expired") {
      signOutIfCurrent(token, error.message);
      throw error;
    }
  }

  // The server rejected the token as expired before acting, so sending again is safe.
  const renewed = await renewAccessToken(token, true);
  try {
    return await send(method, path, body, renewed);
  } catch (error) {
    if (error instanceof ApiError && error.isUnauthorized) {
      signOutIfCurrent(renewed, error.message);
    }
    throw error;
  }
}

/** Clears the stored login if it still contains `token`, so a newer login from another tab stays. */
function signOutIfCurrent(token, message) {
  if (readLogin()?.access_token === token) {
    clearLogin(message);
  }
}

/** Returns the access token to send, renewing it first when it is about to expire. */
async function currentAccessToken() {
  const login = readLogin();
  if (!login) {
    return null;
  }
  if (!isUsable(login)) {
    clearLogin(EXPIRED_MESSAGE);
    throw new ApiError(401, "token_expired", EXPIRED_MESSAGE);
  }
  if (!login.refresh_token || expiryTime(login.expires_at) - Date.now() > REFRESH_MARGIN_MS) {
    return login.access_token;
  }
  return renewAccessToken(login.access_token, false);
}

// The renewal in progress in this tab, so concurrent requests share one refresh call.
let renewal = null;

/**
 * Returns a fresh access token in place of `staleToken`. `rejected` is true when the server has
 * already rejected `staleToken` as expired, so it cannot be used any more.
 */
function renewAccessToken(staleToken, rejected) {
  if (!renewal) {
    renewal = withRefreshLock(() => renewUnderLock(staleToken, rejected)).finally(() => {
      renewal = null;
    });
  }
  return renewal;
}

/** Runs `task` while holding the refresh lock shared by all tabs of this origin. */
function withRefreshLock(task) {
  // NOTE: navigator.locks exists only in secure contexts (HTTPS or loopback). Elsewhere two tabs
  // can present the same refresh token at once, and the server then revokes the login.
  if (navigator.locks?.request) {
    return navigator.locks.request(REFRESH_LOCK_NAME, task);
  }
  return task();
}

async function renewUnderLock(staleToken, rejected) {
  const login = readLogin();
  if (!login) {
    throw new ApiError(401, "unauthenticated", "You have been signed out. Sign in again.");
  }
  const expiresAt = expiryTime(login.expires_at);
  // Another tab may have renewed the token while this one waited for the lock.
  if (login.access_token !== staleToken && expiresAt - Date.now() > REFRESH_MARGIN_MS) {
    return login.access_token;
  }
  const stillValid = !rejected && expiresAt > Date.now();
  if (!login.refresh_token) {
    if (stillValid) {
      return login.access_token;
    }
    clearLogin(EXPIRED_MESSAGE);
    throw new ApiError(401, "token_expired", EXPIRED_MESSAGE);
  }

  let response;
  try {
    response = await send("POST", "/api/v1/auth/refresh", { refresh_token: login.refresh_token }, null);
  } catch (error) {
    if (!(error instanceof ApiError)) {
      throw error;
    }
    const retryLater = error.isNetworkError || error.status === 429 || error.status >= 500;
    if (retryLater) {
      // The refresh token may still work, so keep the login and use the current token while it lasts.
      if (stillValid) {
        return login.access_token;
      }
      throw error;
    }
    const reason = error.message.replace(/\.$/, "");
    const message = `Your sign-in could not be renewed (${reason}). Sign in again.`;
    clearLogin(message);
    throw new ApiError(401, error.code, message);
  }
  saveLogin(response);
  return response.access_token;
}

/** Builds `path?query` from the entries of `params` that are neither null, undefined nor "". */
function withQuery(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") {
      query.set(name, String(value));
    }
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

function idPath(prefix, id) {
  return `${prefix}/${encodeURIComponent(id)}`;
}

/**
 * Logs in and stores the login. Sends the organisation `username` used last as `org_id`. When the
 * server rejects that organisation (the user left it), removes it and logs in without one.
 */
export async function login(username, password) {
  const orgId = lastOrgId(username);
  let response;
  try {
    const body = orgId ? { username, password, org_id: orgId } : { username, password };
    response = await send("POST", "/api/v1/login", body, null);
  } catch (error) {
    const orgRejected = orgId && error instanceof ApiError && [400, 403, 404, 422].includes(error.status);
    if (!orgRejected) {
      throw error;
    }
    forgetOrg(username);
    response = await send("POST", "/api/v1/login", { username, password }, null);
  }
  saveLogin(response);
  return response;
}

/** Revokes this login on the server and clears it here. A failed revocation still signs out locally. */
export async function logout() {
  try {
    if (readLogin()) {
      await request("POST", "/api/v1/logout");
    }
  } catch (error) {
    console.warn(`Logout request failed (${error.status} ${error.code}): ${error.message}`);
  } finally {
    clearLogin();
    sessionStorage.removeItem(SIGNED_OUT_KEY);
  }
}

/**
 * Switches the login to another organisation of the user and stores the new tokens.
 * NOTE: every tab shares the stored login, so an open viewer tab's next attach goes to the new
 * organisation, where its session does not exist (404).
 */
export async function switchOrg(orgId) {
  const response = await request("POST", "/api/v1/auth/switch", { org_id: orgId });
  saveLogin(response);
  return response;
}

/** Replaces the user's password; every other login of the user ends. */
export function changePassword(currentPassword, newPassword) {
  return request("POST", "/api/v1/me/password", {
    current_password: currentPassword,
    new_password: newPassword,
  });
}

/** Accepts the invitation of organisation `orgId`; answers with GET /api/v1/me's shape. */
export function acceptInvitation(orgId) {
  return request("POST", `/api/v1/invitations/${encodeURIComponent(orgId)}/accept`);
}

/** Declines the invitation of organisation `orgId`. */
export function declineInvitation(orgId) {
  return request("DELETE", `/api/v1/invitations/${encodeURIComponent(orgId)}`);
}

export function getMe() {
  return request("GET", "/api/v1/me");
}

/** Lists targets. `label` is one `key=value` filter; `cursor` comes from the previous page. */
export function listTargets({ label, cursor, limit } = {}) {
  return request("GET", withQuery("/api/v1/targets", { label, cursor, limit }));
}

export function createTarget(fields) {
  return request("POST", "/api/v1/targets", fields);
}

export function updateTarget(id, fields) {
  return request("PATCH", idPath("/api/v1/targets", id), fields);
}

export function deleteTarget(id) {
  return request("DELETE", idPath("/api/v1/targets", id));
}

export function listCredentials({ cursor, limit } = {}) {
  return request("GET", withQuery("/api/v1/credentials", { cursor, limit }));
}

export function createCredential(fields) {
  return request("POST", "/api/v1/credentials", fields);
}

export function updateCredential(id, fields) {
  return request("PATCH", idPath("/api/v1/credentials", id), fields);
}

export function deleteCredential(id) {
  return request("DELETE", idPath("/api/v1/credentials", id));
}

export function listMembers({ role, status, cursor, limit } = {}) {
  return request("GET", withQuery("/api/v1/members", { role, status, cursor, limit }));
}

/** Adds a member. `password` is required only when `username` is a new account. */
export function addMember(username, role, password) {
  const body = password ? { username, role, password } : { username, role };
  return request("POST", "/api/v1/members", body);
}

/** Changes a member: `changes` has `role` and/or `disabled`. */
export function updateMember(userId, changes) {
  return request("PATCH", idPath("/api/v1/members", userId), changes);
}

export function removeMember(userId) {
  return request("DELETE", idPath("/api/v1/members", userId));
}

export function getPolicy() {
  return request("GET", "/api/v1/policy");
}

/** Saves the policy text over `version`, the version it was edited from. */
export function savePolicy(text, version) {
  return request("PUT", "/api/v1/policy", { text, version });
}

export function validatePolicy(text) {
  return request("POST", "/api/v1/policy/validate", { text });
}

export function getDefaultPolicy() {
  return request("GET", "/api/v1/policy/default");
}

export function listApiKeys({ cursor, limit } = {}) {
  return request("GET", withQuery("/api/v1/api-keys", { cursor, limit }));
}

/** Creates an API key. The response carries the key itself, and only this once. */
export function createApiKey(name, role, expiresInDays) {
  const body = { name, role };
  if (expiresInDays !== undefined && expiresInDays !== null) {
    body.expires_in_days = expiresInDays;
  }
  return request("POST", "/api/v1/api-keys", body);
}

export function revokeApiKey(id) {
  return request("DELETE", idPath("/api/v1/api-keys", id));
}

/** Lists audit records, newest first. Filters: `action`, `actor_id`, `result`. */
export function listAudit({ action, actorId, result, cursor, limit } = {}) {
  return request("GET", withQuery("/api/v1/audit", { action, actor_id: actorId, result, cursor, limit }));
}

export function verifyAudit() {
  return request("GET", "/api/v1/audit/verify");
}

/** Lists sessions. `mine` limits the list to the caller's own sessions. */
export function listSessions({ state, mine, cursor, limit } = {}) {
  return request("GET", withQuery("/api/v1/sessions", { state, mine: mine ? "true" : undefined, cursor, limit }));
}

export function createSession(targetId, width, height) {
  return request("POST", "/api/v1/sessions", { target_id: targetId, width, height });
}

/** Requests a single-use viewer token. `mode` is "control", "takeover" or "observe". */
export function attachSession(sessionId, mode) {
  return request("POST", `${idPath("/api/v1/sessions", sessionId)}/attach`, { mode });
}

export function detachSession(sessionId) {
  return request("POST", `${idPath("/api/v1/sessions", sessionId)}/detach`);
}

export function terminateSession(sessionId, reason) {
  return request("POST", `${idPath("/api/v1/sessions", sessionId)}/terminate`, { reason });
}

/** Returns the viewer page URL for a session, relative to the portal. */
export function viewerUrl(sessionId, mode) {
  const params = new URLSearchParams({ session: sessionId, mode });
  return `viewer.html?${params}`;
}
