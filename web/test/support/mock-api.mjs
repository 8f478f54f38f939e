// In-memory stand-in for the control plane's organisation API, used by mock-server.mjs: logins
// with single-use refresh tokens, organisations and roles, targets, credentials, members, the
// policy document, API keys and a hash-chained audit log. Paths, bodies and error codes follow
// the API the portal is written against. The permissions of each role are this mock's choice,
// because on the server the organisation's policy decides them.

import { createHash, randomBytes, randomUUID } from "node:crypto";

export const ROLES = ["owner", "admin", "operator", "member", "auditor"];

const ALL_PERMISSIONS = {
  list_targets: true,
  manage_targets: true,
  manage_members: true,
  manage_policies: true,
  manage_api_keys: true,
  read_audit: true,
  view_all_sessions: true,
};
const NO_PERMISSIONS = Object.fromEntries(Object.keys(ALL_PERMISSIONS).map((name) => [name, false]));

/** Permissions of each role in the mock. */
export const ROLE_PERMISSIONS = {
  owner: ALL_PERMISSIONS,
  admin: ALL_PERMISSIONS,
  operator: { ...NO_PERMISSIONS, list_targets: true, manage_targets: true, view_all_sessions: true },
  member: { ...NO_PERMISSIONS, list_targets: true },
  auditor: { ...NO_PERMISSIONS, list_targets: true, read_audit: true, view_all_sessions: true },
};

export const DEFAULT_POLICY = [
  "# Default policy: admins and owners may do everything, members may open desktops.",
  "allow role:owner *",
  "allow role:admin *",
  "allow role:member list_targets",
  "",
].join("\n");

const ACCESS_TOKEN_TTL_MS = 10 * 60_000;
const REFRESH_TOKEN_TTL_MS = 24 * 3600_000;
const MIN_PASSWORD_LENGTH = 12;
const DEFAULT_PAGE_SIZE = 50;

/** An API error: HTTP status, error code and message, and policy problems for a 422. */
export class ApiFailure extends Error {
  constructor(status, code, message, problems = undefined) {
    super(message);
    this.status = status;
    this.code = code;
    this.problems = problems;
  }
}

/** A response with a status other than 200. `body` null sends no body (204). */
export class Reply {
  constructor(status, body) {
    this.status = status;
    this.body = body;
  }
}

function notFound(kind) {
  return new ApiFailure(404, "not_found", `${kind} not found.`);
}

function now() {
  return new Date().toISOString();
}

function hasText(value) {
  return typeof value === "string" && value.trim() !== "";
}

/**
 * Validates a policy in the mock's line format: blank lines, `#` comments, and statements that
 * start with `allow` or `deny` followed by a subject and an action. Returns the problems.
 */
export function policyProblems(text) {
  const problems = [];
  text.split("\n").forEach((line, index) => {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith("#")) {
      return;
    }
    const column = line.length - line.trimStart().length + 1;
    const [keyword, ...rest] = trimmed.split(/\s+/);
    if (keyword !== "allow" && keyword !== "deny") {
      problems.push({ line: index + 1, column, message: `unknown statement "${keyword}"; expected allow or deny` });
    } else if (rest.length < 2) {
      problems.push({
        line: index + 1,
        column: column + keyword.length,
        message: `${keyword} needs a subject and an action`,
      });
    }
  });
  return problems;
}

/** Slices `items` into the page that `cursor` (an offset) starts, `limit` items long. */
export function paginate(items, query, defaultLimit) {
  const limit = query.has("limit") ? Number(query.get("limit")) : defaultLimit;
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
    throw new ApiFailure(400, "invalid_limit", "limit must be between 1 and 200.");
  }
  let offset = 0;
  if (query.get("cursor")) {
    offset = Number(Buffer.from(query.get("cursor"), "base64url").toString("utf8"));
    if (!Number.isInteger(offset) || offset < 0) {
      throw new ApiFailure(400, "invalid_cursor", "The cursor is invalid.");
    }
  }
  const end = offset + limit;
  return {
    items: items.slice(offset, end),
    next_cursor: end < items.length ? Buffer.from(String(end)).toString("base64url") : null,
  };
}

export class MockApi {
  constructor() {
    this.orgs = [
      { id: "org-1", name: "Acme" },
      { id: "org-2", name: "Lab" },
    ];
    this.users = [
      { id: "u-alice", name: "alice", password: "alice-password" },
      { id: "u-bob", name: "bob", password: "bob-password" },
      { id: "u-carol", name: "carol", password: "carol-password" },
    ];

    const created = "2025-01-01T00:00:00Z";
    // Memberships as {org_id, user_id, role, disabled, created_at}.
    this.memberships = [
      { org_id: "org-1", user_id: "u-alice", role: "admin", disabled: false, created_at: created },
      { org_id: "org-1", user_id: "u-bob", role: "member", disabled: false, created_at: created },
      { org_id: "org-1", user_id: "u-carol", role: "auditor", disabled: false, created_at: created },
      { org_id: "org-2", user_id: "u-alice", role: "member", disabled: false, created_at: created },
    ];

    this.credentials = [
      { id: "c-build", org_id: "org-1", name: "build-admin", username: "builder", password: "pw-build", domain: "ACME", created_at: created, updated_at: created },
      { id: "c-lab", org_id: "org-2", name: "lab-user", username: "lab", password: "pw-lab", domain: null, created_at: created, updated_at: created },
    ];

    // `owner_only` targets can be opened only by owners, so admins see them with can_connect false.
    this.targets = [
      { id: "t-build", org_id: "org-1", name: "Build server", host: "10.0.0.5", port: 3389, security: "nla", labels: { env: "prod", team: "build" }, max_width: null, max_height: null, credential_id: "c-build", owner_only: false, created_at: created },
      { id: "t-test", org_id: "org-1", name: "Test desktop", host: "10.0.0.6", port: 3389, security: "tls", labels: { env: "test" }, max_width: 1920, max_height: 1080, credential_id: "c-build", owner_only: false, created_at: created },
      { id: "t-dc", org_id: "org-1", name: "Domain controller", host: "10.0.0.2", port: 3389, security: "nla", labels: { env: "prod", tier: "0" }, max_width: null, max_height: null, credential_id: "c-build", owner_only: true, created_at: created },
      { id: "t-lab", org_id: "org-2", name: "Lab desktop", host: "10.1.0.5", port: 3389, security: "auto", labels: { env: "lab" }, max_width: null, max_height: null, credential_id: "c-lab", owner_only: false, created_at: created },
    ];

    this.policies = new Map(
      this.orgs.map((org) => [org.id, { text: DEFAULT_POLICY, version: 1, updated_at: created, updated_by: "alice" }]),
    );
    this.apiKeys = [];
    this.audit = new Map(this.orgs.map((org) => [org.id, []]));

    // Logins by id: {id, user_id, revoked}. A login survives token renewal and organisation switches.
    this.logins = new Map();
    // Access tokens: token -> {login_id, user_id, org_id, expires_at (ms)}.
    this.accessTokens = new Map();
    // Refresh tokens: token -> {login_id, user_id, org_id, expires_at (ms), spent}.
    this.refreshTokens = new Map();
    this.accessTokenTtlMs = ACCESS_TOKEN_TTL_MS;
    this.pageSize = DEFAULT_PAGE_SIZE;
  }

  user(id) {
    return this.users.find((user) => user.id === id);
  }

  userByName(name) {
    return this.users.find((user) => user.name === name);
  }

  org(id) {
    return this.orgs.find((org) => org.id === id);
  }

  membership(orgId, userId) {
    return this.memberships.find((entry) => entry.org_id === orgId && entry.user_id === userId);
  }

  orgsOf(userId) {
    return this.memberships
      .filter((entry) => entry.user_id === userId && !entry.disabled)
      .map((entry) => ({ id: entry.org_id, name: this.org(entry.org_id).name, role: entry.role }));
  }

  /** Issues an access and a refresh token for `login` in `orgId` and returns the TokenResponse. */
  issueTokens(login, orgId) {
    const user = this.user(login.user_id);
    const membership = this.membership(orgId, user.id);
    const accessToken = randomBytes(16).toString("hex");
    const refreshToken = randomBytes(16).toString("hex");
    const accessExpiry = Date.now() + this.accessTokenTtlMs;
    const refreshExpiry = Date.now() + REFRESH_TOKEN_TTL_MS;
    this.accessTokens.set(accessToken, { login_id: login.id, user_id: user.id, org_id: orgId, expires_at: accessExpiry });
    this.refreshTokens.set(refreshToken, {
      login_id: login.id,
      user_id: user.id,
      org_id: orgId,
      expires_at: refreshExpiry,
      spent: false,
    });
    return {
      access_token: accessToken,
      expires_at: new Date(accessExpiry).toISOString(),
      refresh_token: refreshToken,
      refresh_expires_at: new Date(refreshExpiry).toISOString(),
      user: { id: user.id, name: user.name },
      org: { id: orgId, name: this.org(orgId).name, role: membership.role },
      orgs: this.orgsOf(user.id),
    };
  }

  /** Logs `username` in without HTTP, in `orgId` or the first organisation, and returns the TokenResponse. */
  loginAs(username, orgId = undefined) {
    const user = this.userByName(username);
    const login = { id: randomUUID(), user_id: user.id, revoked: false };
    this.logins.set(login.id, login);
    const loginOrgId = orgId ?? this.orgsOf(user.id)[0].id;
    this.record({ user, org_id: loginOrgId }, "auth.login", "ok");
    return this.issueTokens(login, loginOrgId);
  }

  /** Makes every access token issued so far expired, as if ten minutes had passed. */
  expireAccessTokens() {
    for (const token of this.accessTokens.values()) {
      token.expires_at = 0;
    }
  }

  /** Revokes every login, as a reused refresh token or an admin would. */
  revokeLogins() {
    for (const login of this.logins.values()) {
      login.revoked = true;
    }
  }

  /** Changes the stored reason of audit record `seq` without fixing the hash chain. */
  tamperAudit(orgId, seq) {
    const record = this.audit.get(orgId).find((entry) => entry.seq === seq);
    record.reason = "changed after the fact";
  }

  /**
   * Returns the actor for an Authorization header: {user, login_id, org_id, role, permissions}.
   * Throws 401 `unauthenticated`, `token_invalid`, `token_revoked` or `token_expired`.
   */
  authenticate(header) {
    const token = (header ?? "").replace(/^Bearer /, "");
    if (!token) {
      throw new ApiFailure(401, "unauthenticated", "Sign in to continue.");
    }
    if (token.startsWith("rpk.")) {
      const key = this.apiKeys.find((candidate) => candidate.key === token);
      if (!key || key.revoked_at) {
        throw new ApiFailure(401, "token_revoked", "The API key is revoked or unknown.");
      }
      key.last_used_at = now();
      return { user: { id: `key-${key.id}`, name: `key ${key.name}` }, org_id: key.org_id, role: key.role, permissions: ROLE_PERMISSIONS[key.role] };
    }
    const grant = this.accessTokens.get(token);
    if (!grant) {
      throw new ApiFailure(401, "token_invalid", "The access token is invalid. Sign in again.");
    }
    if (this.logins.get(grant.login_id)?.revoked) {
      throw new ApiFailure(401, "token_revoked", "This login was revoked. Sign in again.");
    }
    if (grant.expires_at <= Date.now()) {
      throw new ApiFailure(401, "token_expired", "The access token has expired.");
    }
    const membership = this.membership(grant.org_id, grant.user_id);
    if (!membership || membership.disabled) {
      throw new ApiFailure(401, "token_revoked", "You are no longer a member of this organisation.");
    }
    const user = this.user(grant.user_id);
    return {
      user,
      login_id: grant.login_id,
      org_id: grant.org_id,
      role: membership.role,
      permissions: ROLE_PERMISSIONS[membership.role],
    };
  }

  require(actor, permission) {
    if (!actor.permissions[permission]) {
      this.record(actor, `permission.${permission}`, "denied", { reason: `missing ${permission}` });
      throw new ApiFailure(403, "forbidden", `You do not have the ${permission} permission in this organisation.`);
    }
  }

  /** Appends an audit record to the actor's organisation, chained to the previous record's hash. */
  record(actor, action, result, { kind = null, id = null, reason = null, orgId = actor.org_id } = {}) {
    const log = this.audit.get(orgId);
    const entry = {
      seq: log.length + 1,
      at: now(),
      actor_id: actor.user?.id ?? null,
      actor_name: actor.user?.name ?? null,
      action,
      object_kind: kind,
      object_id: id,
      result,
      reason,
    };
    entry.hash = auditHash(log.at(-1)?.hash ?? "", entry);
    log.push(entry);
  }

  verifyAudit(orgId) {
    const log = this.audit.get(orgId);
    let previous = "";
    for (const entry of log) {
      if (auditHash(previous, entry) !== entry.hash) {
        return { ok: false, checked: entry.seq, first_bad_seq: entry.seq };
      }
      previous = entry.hash;
    }
    return { ok: true, checked: log.length, first_bad_seq: null };
  }

  login(body) {
    const user = this.userByName(body?.username);
    if (!user || user.password !== body?.password) {
      throw new ApiFailure(401, "invalid_credentials", "Invalid username or password.");
    }
    const orgs = this.orgsOf(user.id);
    let orgId = orgs[0]?.id;
    if (body.org_id !== undefined) {
      if (!orgs.some((org) => org.id === body.org_id)) {
        throw notFound("Organisation");
      }
      orgId = body.org_id;
    }
    if (!orgId) {
      throw new ApiFailure(403, "forbidden", "You are not a member of any organisation.");
    }
    const login = { id: randomUUID(), user_id: user.id, revoked: false };
    this.logins.set(login.id, login);
    this.record({ user, org_id: orgId }, "auth.login", "ok");
    return this.issueTokens(login, orgId);
  }

  refresh(body) {
    const grant = this.refreshTokens.get(body?.refresh_token ?? "");
    if (!grant) {
      throw new ApiFailure(401, "token_invalid", "The refresh token is invalid.");
    }
    const login = this.logins.get(grant.login_id);
    if (grant.spent) {
      login.revoked = true;
      throw new ApiFailure(401, "token_revoked", "The refresh token was already used, so the login is revoked.");
    }
    if (login.revoked) {
      throw new ApiFailure(401, "token_revoked", "This login was revoked.");
    }
    if (grant.expires_at <= Date.now()) {
      throw new ApiFailure(401, "token_expired", "The refresh token has expired.");
    }
    grant.spent = true;
    return this.issueTokens(login, grant.org_id);
  }

  /** Routes an authenticated request under /api/v1. Returns the body, a Reply, or undefined if no route matched. */
  route(actor, method, pathname, query, body) {
    const parts = pathname.replace(/^\/api\/v1\//, "").split("/");
    const [resource, id, sub] = parts;
    const handlers = {
      auth: () => this.routeAuth(actor, method, id, body),
      logout: () => this.logout(actor, method),
      me: () => method === "GET" && this.me(actor),
      targets: () => this.routeTargets(actor, method, id, query, body),
      credentials: () => this.routeCredentials(actor, method, id, query, body),
      members: () => this.routeMembers(actor, method, id, query, body),
      policy: () => this.routePolicy(actor, method, id, body),
      "api-keys": () => this.routeApiKeys(actor, method, id, query, body),
      audit: () => this.routeAudit(actor, method, id, query),
    };
    if (sub !== undefined && resource !== "auth") {
      return undefined;
    }
    return handlers[resource]?.() || undefined;
  }

  routeAuth(actor, method, action, body) {
    if (method !== "POST" || action !== "switch") {
      return undefined;
    }
    const orgId = body?.org_id;
    if (!this.orgsOf(actor.user.id).some((org) => org.id === orgId)) {
      throw notFound("Organisation");
    }
    this.record({ ...actor, org_id: orgId }, "auth.switch", "ok");
    return this.issueTokens(this.logins.get(actor.login_id), orgId);
  }

  logout(actor, method) {
    if (method !== "POST") {
      return undefined;
    }
    const login = this.logins.get(actor.login_id);
    if (login) {
      login.revoked = true;
    }
    return new Reply(204, null);
  }

  me(actor) {
    const org = this.org(actor.org_id);
    return {
      user: { id: actor.user.id, name: actor.user.name },
      org: { id: org.id, name: org.name, role: actor.role },
      orgs: this.orgsOf(actor.user.id),
      permissions: actor.permissions,
    };
  }

  targetView(target, actor) {
    const credential = this.credentials.find((entry) => entry.id === target.credential_id);
    return {
      id: target.id,
      name: target.name,
      host: target.host,
      port: target.port,
      security: target.security,
      labels: target.labels,
      max_width: target.max_width,
      max_height: target.max_height,
      credential_id: target.credential_id,
      credential_name: credential?.name ?? null,
      can_connect: this.canConnect(target, actor),
      created_at: target.created_at,
    };
  }

  canConnect(target, actor) {
    return !target.owner_only || actor.role === "owner";
  }

  /** Returns a target of the actor's organisation that the actor may see, or throws 404. */
  visibleTarget(actor, id) {
    const target = this.targets.find((entry) => entry.id === id && entry.org_id === actor.org_id);
    if (!target || (!actor.permissions.manage_targets && !this.canConnect(target, actor))) {
      throw notFound("Target");
    }
    return target;
  }

  routeTargets(actor, method, id, query, body) {
    if (method === "GET" && !id) {
      this.require(actor, "list_targets");
      let items = this.targets.filter((target) => target.org_id === actor.org_id);
      if (!actor.permissions.manage_targets) {
        items = items.filter((target) => this.canConnect(target, actor));
      }
      const label = query.get("label");
      if (label) {
        const [key, value] = label.split("=");
        items = items.filter((target) => target.labels[key] === value);
      }
      return paginate(
        items.map((target) => this.targetView(target, actor)),
        query,
        this.pageSize,
      );
    }
    if (method === "GET") {
      this.require(actor, "list_targets");
      return this.targetView(this.visibleTarget(actor, id), actor);
    }
    this.require(actor, "manage_targets");
    if (method === "POST" && !id) {
      const target = { id: `t-${randomUUID()}`, org_id: actor.org_id, owner_only: false, created_at: now(), labels: {} };
      this.applyTargetFields(actor, target, body, true);
      this.targets.push(target);
      this.record(actor, "target.create", "ok", { kind: "target", id: target.id });
      return new Reply(201, this.targetView(target, actor));
    }
    const target = this.visibleTarget(actor, id);
    if (method === "PATCH") {
      this.applyTargetFields(actor, target, body, false);
      this.record(actor, "target.update", "ok", { kind: "target", id: target.id });
      return this.targetView(target, actor);
    }
    if (method === "DELETE") {
      this.targets = this.targets.filter((entry) => entry !== target);
      this.record(actor, "target.delete", "ok", { kind: "target", id: target.id });
      return new Reply(204, null);
    }
    return undefined;
  }

  applyTargetFields(actor, target, body, creating) {
    const fields = body ?? {};
    const required = ["name", "host", "port", "security", "credential_id"];
    for (const field of required) {
      if (creating && fields[field] === undefined) {
        throw new ApiFailure(400, "invalid_request", `${field} is required.`);
      }
    }
    if (fields.port !== undefined && !(Number.isInteger(fields.port) && fields.port >= 1 && fields.port <= 65535)) {
      throw new ApiFailure(400, "invalid_request", `port ${fields.port} is out of range; use 1 to 65535.`);
    }
    if (fields.security !== undefined && !["auto", "tls", "nla"].includes(fields.security)) {
      throw new ApiFailure(400, "invalid_request", `security "${fields.security}" is invalid; use auto, tls or nla.`);
    }
    if (
      fields.credential_id !== undefined &&
      !this.credentials.some((entry) => entry.id === fields.credential_id && entry.org_id === actor.org_id)
    ) {
      throw notFound("Credential");
    }
    const known = ["name", "host", "port", "security", "labels", "max_width", "max_height", "credential_id", "cert_sha256"];
    for (const field of known) {
      if (fields[field] !== undefined) {
        target[field] = fields[field];
      }
    }
  }

  credentialView(credential) {
    const { id, name, username, domain, created_at: createdAt, updated_at: updatedAt } = credential;
    return { id, name, username, domain, created_at: createdAt, updated_at: updatedAt };
  }

  routeCredentials(actor, method, id, query, body) {
    this.require(actor, "manage_targets");
    const own = this.credentials.filter((entry) => entry.org_id === actor.org_id);
    if (method === "GET" && !id) {
      return paginate(own.map((entry) => this.credentialView(entry)), query, this.pageSize);
    }
    if (method === "POST" && !id) {
      for (const field of ["name", "username", "password"]) {
        if (!hasText(body?.[field])) {
          throw new ApiFailure(400, "invalid_request", `${field} is required.`);
        }
      }
      const credential = {
        id: `c-${randomUUID()}`,
        org_id: actor.org_id,
        name: body.name,
        username: body.username,
        password: body.password,
        domain: body.domain ?? null,
        created_at: now(),
        updated_at: now(),
      };
      this.credentials.push(credential);
      this.record(actor, "credential.create", "ok", { kind: "credential", id: credential.id });
      return new Reply(201, this.credentialView(credential));
    }
    const credential = own.find((entry) => entry.id === id);
    if (!credential) {
      throw notFound("Credential");
    }
    if (method === "PATCH") {
      for (const field of ["name", "username", "password", "domain"]) {
        if (body?.[field] !== undefined) {
          credential[field] = body[field];
        }
      }
      credential.updated_at = now();
      this.record(actor, "credential.update", "ok", { kind: "credential", id: credential.id });
      return this.credentialView(credential);
    }
    if (method === "DELETE") {
      const user = this.targets.find((target) => target.credential_id === credential.id);
      if (user) {
        throw new ApiFailure(409, "conflict", `Credential ${credential.name} is used by target ${user.name}.`);
      }
      this.credentials = this.credentials.filter((entry) => entry !== credential);
      this.record(actor, "credential.delete", "ok", { kind: "credential", id: credential.id });
      return new Reply(204, null);
    }
    return undefined;
  }

  memberView(membership) {
    return {
      user_id: membership.user_id,
      name: this.user(membership.user_id).name,
      role: membership.role,
      status: membership.disabled ? "disabled" : "active",
      created_at: membership.created_at,
    };
  }

  routeMembers(actor, method, id, query, body) {
    this.require(actor, "manage_members");
    const own = this.memberships.filter((entry) => entry.org_id === actor.org_id);
    if (method === "GET" && !id) {
      const items = own
        .map((entry) => this.memberView(entry))
        .filter((member) => !query.get("role") || member.role === query.get("role"))
        .filter((member) => !query.get("status") || member.status === query.get("status"));
      return paginate(items, query, this.pageSize);
    }
    if (method === "POST" && !id) {
      return this.addMember(actor, body ?? {});
    }
    const membership = own.find((entry) => entry.user_id === id);
    if (!membership) {
      throw notFound("Member");
    }
    const touchesOwner = membership.role === "owner" || body?.role === "owner";
    if (touchesOwner && actor.role !== "owner") {
      throw new ApiFailure(403, "forbidden", "Only an owner may grant or remove the owner role.");
    }
    if (method === "PATCH") {
      if (body?.role !== undefined) {
        if (!ROLES.includes(body.role)) {
          throw new ApiFailure(400, "invalid_request", `role "${body.role}" is invalid.`);
        }
        membership.role = body.role;
      }
      if (body?.disabled !== undefined) {
        membership.disabled = Boolean(body.disabled);
      }
      this.record(actor, "member.update", "ok", { kind: "user", id });
      return this.memberView(membership);
    }
    if (method === "DELETE") {
      this.memberships = this.memberships.filter((entry) => entry !== membership);
      this.record(actor, "member.remove", "ok", { kind: "user", id });
      return new Reply(204, null);
    }
    return undefined;
  }

  addMember(actor, body) {
    if (!hasText(body.username)) {
      throw new ApiFailure(400, "invalid_request", "username is required.");
    }
    if (!ROLES.includes(body.role)) {
      throw new ApiFailure(400, "invalid_request", `role "${body.role}" is invalid.`);
    }
    if (body.role === "owner" && actor.role !== "owner") {
      throw new ApiFailure(403, "forbidden", "Only an owner may grant or remove the owner role.");
    }
    let user = this.userByName(body.username);
    if (!user) {
      if (typeof body.password !== "string" || body.password.length < MIN_PASSWORD_LENGTH) {
        throw new ApiFailure(
          400,
          "invalid_request",
          `A new account needs a password of at least ${MIN_PASSWORD_LENGTH} characters.`,
        );
      }
      user = { id: `u-${randomUUID()}`, name: body.username, password: body.password };
      this.users.push(user);
    } else if (this.membership(actor.org_id, user.id)) {
      throw new ApiFailure(409, "conflict", `${user.name} is already a member.`);
    }
    const membership = { org_id: actor.org_id, user_id: user.id, role: body.role, disabled: false, created_at: now() };
    this.memberships.push(membership);
    this.record(actor, "member.add", "ok", { kind: "user", id: user.id });
    return new Reply(201, this.memberView(membership));
  }

  routePolicy(actor, method, action, body) {
    this.require(actor, "manage_policies");
    const policy = this.policies.get(actor.org_id);
    if (method === "GET" && !action) {
      return policy;
    }
    if (method === "GET" && action === "default") {
      return { text: DEFAULT_POLICY };
    }
    if (method === "POST" && action === "validate") {
      const problems = policyProblems(String(body?.text ?? ""));
      return { valid: problems.length === 0, problems };
    }
    if (method === "PUT" && !action) {
      if (body?.version !== policy.version) {
        this.record(actor, "policy.update", "failed", { kind: "policy", reason: "stale version" });
        throw new ApiFailure(
          409,
          "conflict",
          `The policy changed since you loaded it (you edited version ${body?.version}, the current version is ${policy.version}).`,
        );
      }
      const problems = policyProblems(String(body?.text ?? ""));
      if (problems.length > 0) {
        this.record(actor, "policy.update", "failed", { kind: "policy", reason: "invalid policy" });
        throw new ApiFailure(422, "invalid_policy", "The policy has errors; the previous policy stays in force.", problems);
      }
      Object.assign(policy, { text: body.text, version: policy.version + 1, updated_at: now(), updated_by: actor.user.name });
      this.record(actor, "policy.update", "ok", { kind: "policy" });
      return policy;
    }
    return undefined;
  }

  apiKeyView(key) {
    const { id, name, role, created_at: createdAt, expires_at: expiresAt, revoked_at: revokedAt, last_used_at: lastUsedAt } = key;
    return { id, name, role, created_at: createdAt, expires_at: expiresAt, revoked_at: revokedAt, last_used_at: lastUsedAt };
  }

  routeApiKeys(actor, method, id, query, body) {
    this.require(actor, "manage_api_keys");
    const own = this.apiKeys.filter((key) => key.org_id === actor.org_id);
    if (method === "GET" && !id) {
      return paginate(own.map((key) => this.apiKeyView(key)), query, this.pageSize);
    }
    if (method === "POST" && !id) {
      if (!hasText(body?.name)) {
        throw new ApiFailure(400, "invalid_request", "name is required.");
      }
      if (!ROLES.includes(body.role)) {
        throw new ApiFailure(400, "invalid_request", `role "${body.role}" is invalid.`);
      }
      const days = body.expires_in_days;
      const key = {
        id: `k-${randomUUID()}`,
        org_id: actor.org_id,
        name: body.name,
        role: body.role,
        key: `rpk.${randomBytes(24).toString("base64url")}`,
        created_at: now(),
        expires_at: days ? new Date(Date.now() + days * 86_400_000).toISOString() : null,
        revoked_at: null,
        last_used_at: null,
      };
      this.apiKeys.push(key);
      this.record(actor, "api_key.create", "ok", { kind: "api_key", id: key.id });
      return new Reply(201, { ...this.apiKeyView(key), key: key.key });
    }
    const key = own.find((entry) => entry.id === id);
    if (!key) {
      throw notFound("API key");
    }
    if (method === "DELETE") {
      key.revoked_at ??= now();
      this.record(actor, "api_key.revoke", "ok", { kind: "api_key", id: key.id });
      return new Reply(204, null);
    }
    return undefined;
  }

  routeAudit(actor, method, action, query) {
    if (method !== "GET") {
      return undefined;
    }
    this.require(actor, "read_audit");
    if (action === "verify") {
      return this.verifyAudit(actor.org_id);
    }
    if (action) {
      return undefined;
    }
    const items = [...this.audit.get(actor.org_id)]
      .reverse()
      .filter((entry) => !query.get("action") || entry.action === query.get("action"))
      .filter((entry) => !query.get("actor_id") || entry.actor_id === query.get("actor_id"))
      .filter((entry) => !query.get("result") || entry.result === query.get("result"));
    return paginate(items, query, this.pageSize);
  }
}

function auditHash(previous, entry) {
  const { hash: _hash, ...fields } = entry;
  return createHash("sha256").update(previous).update(JSON.stringify(fields)).digest("hex");
}
