// Client for the control plane's HTTP API (/api/v1), shared by the portal and the viewer.
// Stores the access token in localStorage so the viewer tab can use the portal's login.

const TOKEN_KEY = "rdp-proxy.token";
const USER_KEY = "rdp-proxy.user";
const EXPIRES_KEY = "rdp-proxy.expires_at";

/** An error response from the API, or a request that never got one (`status` 0). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }

  get isUnauthorized() {
    return this.status === 401;
  }

  /** True when no HTTP response arrived (network down, server unreachable). */
  get isNetworkError() {
    return this.status === 0;
  }
}

/** Stores the login response: access token, its expiry and the user. */
export function saveLogin(login) {
  localStorage.setItem(TOKEN_KEY, login.access_token);
  localStorage.setItem(EXPIRES_KEY, login.expires_at ?? "");
  localStorage.setItem(USER_KEY, JSON.stringify(login.user ?? null));
}

export function clearLogin() {
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(EXPIRES_KEY);
  localStorage.removeItem(USER_KEY);
}

/** Returns the stored access token, or null when there is none or it has expired. */
export function storedToken() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) {
    return null;
  }
  const expiresAt = Date.parse(localStorage.getItem(EXPIRES_KEY) ?? "");
  if (Number.isFinite(expiresAt) && expiresAt <= Date.now()) {
    clearLogin();
    return null;
  }
  return token;
}

/** Returns the stored user `{id, name, role, org_id}`, or null. */
export function storedUser() {
  try {
    return JSON.parse(localStorage.getItem(USER_KEY) ?? "null");
  } catch {
    return null;
  }
}

/**
 * Sends one API request and returns the parsed JSON body.
 *
 * `body`, when given, is sent as JSON. Every request except login carries the stored token.
 * Throws ApiError with the server's `{"error":{"code","message"}}` for non-2xx responses, and
 * with status 0 when the request fails before a response arrives.
 */
export async function request(method, path, body = undefined) {
  const headers = { Accept: "application/json" };
  const token = storedToken();
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
    throw new ApiError(response.status, code, message);
  }
  return data;
}

export function login(username, password) {
  return request("POST", "/api/v1/login", { username, password });
}

export function listTargets() {
  return request("GET", "/api/v1/targets");
}

export function listSessions() {
  return request("GET", "/api/v1/sessions");
}

export function createSession(targetId, width, height) {
  return request("POST", "/api/v1/sessions", { target_id: targetId, width, height });
}

/** Requests a single-use viewer token. `mode` is "control" or "takeover". */
export function attachSession(sessionId, mode) {
  return request("POST", `/api/v1/sessions/${encodeURIComponent(sessionId)}/attach`, { mode });
}

export function detachSession(sessionId) {
  return request("POST", `/api/v1/sessions/${encodeURIComponent(sessionId)}/detach`);
}

export function terminateSession(sessionId, reason) {
  return request("POST", `/api/v1/sessions/${encodeURIComponent(sessionId)}/terminate`, { reason });
}

/** Returns the viewer page URL for a session, relative to the portal. */
export function viewerUrl(sessionId, mode) {
  const params = new URLSearchParams({ session: sessionId, mode });
  return `viewer.html?${params}`;
}
