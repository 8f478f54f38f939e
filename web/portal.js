// Portal page: login, the desktops the user may open, and the user's sessions.

import {
  ApiError,
  clearLogin,
  createSession,
  listSessions,
  listTargets,
  login,
  saveLogin,
  storedToken,
  storedUser,
  terminateSession,
  viewerUrl,
} from "./api.js";
import { requestedDesktopSize, VIEWER_TOOLBAR_HEIGHT } from "./layout.js";

const SESSIONS_REFRESH_MS = 3000;
const FINAL_STATES = new Set(["terminated", "failed", "lost"]);

const elements = {
  error: document.getElementById("error"),
  account: document.getElementById("account"),
  accountName: document.getElementById("account-name"),
  logout: document.getElementById("logout"),
  loginView: document.getElementById("login-view"),
  loginForm: document.getElementById("login-form"),
  loginSubmit: document.getElementById("login-submit"),
  username: document.getElementById("username"),
  password: document.getElementById("password"),
  portalView: document.getElementById("portal-view"),
  targets: document.getElementById("targets"),
  targetsEmpty: document.getElementById("targets-empty"),
  sessions: document.getElementById("sessions"),
  sessionsBody: document.getElementById("sessions-body"),
  sessionsEmpty: document.getElementById("sessions-empty"),
};

let refreshTimer = null;
// Increments whenever a refresh starts or stops, so only the newest refresh renders and schedules.
let refreshSequence = 0;
// Message of the last failed refresh, cleared from the error line once a refresh succeeds.
let refreshErrorMessage = null;
// Increments on every login and logout so a target list requested before either is discarded.
let generation = 0;
// Session rows by session id, with the data they were rendered from, so a refresh only
// rebuilds changed rows and keyboard focus on a button survives.
const sessionRows = new Map();

function showError(message) {
  elements.error.textContent = message;
  elements.error.hidden = false;
}

function clearError() {
  elements.error.textContent = "";
  elements.error.hidden = true;
}

/**
 * Shows a failed request in the error line. A 401 means the token is missing or expired, so it
 * also returns to the login form.
 */
function handleError(error) {
  if (error instanceof ApiError && error.isUnauthorized) {
    showLogin();
  }
  showError(error.message);
  if (error instanceof ApiError) {
    console.warn(`API request failed (${error.status} ${error.code}): ${error.message}`);
  } else {
    console.error(error);
  }
}

function showLogin() {
  generation += 1;
  stopRefresh();
  clearLogin();
  sessionRows.clear();
  elements.sessionsBody.replaceChildren();
  elements.targets.replaceChildren();
  elements.account.hidden = true;
  elements.portalView.hidden = true;
  elements.loginView.hidden = false;
  elements.password.value = "";
  elements.username.focus();
}

function showPortal() {
  generation += 1;
  const user = storedUser();
  elements.accountName.textContent = user ? `${user.name} (${user.role})` : "";
  elements.account.hidden = false;
  elements.loginView.hidden = true;
  elements.portalView.hidden = false;
  loadTargets();
  refreshSessions();
}

async function onLoginSubmit(event) {
  event.preventDefault();
  clearError();
  elements.loginSubmit.disabled = true;
  try {
    const response = await login(elements.username.value.trim(), elements.password.value);
    saveLogin(response);
    elements.password.value = "";
    showPortal();
  } catch (error) {
    // A 401 here is a wrong username or password, not an expired token, so stay on the form.
    showError(error.message);
    elements.password.select();
  } finally {
    elements.loginSubmit.disabled = false;
  }
}

function onLogout(event) {
  event.preventDefault();
  clearError();
  showLogin();
}

async function loadTargets() {
  const started = generation;
  try {
    const response = await listTargets();
    if (started === generation) {
      renderTargets(response?.items ?? []);
    }
  } catch (error) {
    if (started === generation) {
      handleError(error);
    }
  }
}

function renderTargets(targets) {
  elements.targetsEmpty.hidden = targets.length > 0;
  const items = targets.map((target) => {
    const item = document.createElement("li");
    item.className = "target";

    const text = document.createElement("div");
    const name = document.createElement("strong");
    name.textContent = target.name;
    const detail = document.createElement("span");
    detail.className = "muted";
    detail.textContent = `${target.host}:${target.port} · ${target.security}`;
    text.append(name, document.createElement("br"), detail);

    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Open desktop";
    button.setAttribute("aria-label", `Open desktop ${target.name}`);
    button.addEventListener("click", () => openDesktop(target, button));

    item.append(text, button);
    return item;
  });
  elements.targets.replaceChildren(...items);
}

async function openDesktop(target, button) {
  clearError();
  button.disabled = true;
  const size = requestedDesktopSize(window.innerWidth, window.innerHeight - VIEWER_TOOLBAR_HEIGHT);
  try {
    const session = await createSession(target.id, size.width, size.height);
    window.location.assign(viewerUrl(session.id, "control"));
  } catch (error) {
    handleError(error);
    button.disabled = false;
  }
}

function stopRefresh() {
  refreshSequence += 1;
  if (refreshTimer !== null) {
    clearTimeout(refreshTimer);
    refreshTimer = null;
  }
}

/** Loads the session list now and schedules the next load 3 s after this one finishes. */
async function refreshSessions() {
  stopRefresh();
  const sequence = refreshSequence;
  try {
    const response = await listSessions();
    if (sequence !== refreshSequence) {
      return;
    }
    renderSessions(response?.items ?? []);
    if (refreshErrorMessage !== null && elements.error.textContent === refreshErrorMessage) {
      clearError();
    }
    refreshErrorMessage = null;
  } catch (error) {
    if (sequence !== refreshSequence) {
      return;
    }
    handleError(error);
    if (error instanceof ApiError && error.isUnauthorized) {
      return;
    }
    refreshErrorMessage = error.message;
  }
  refreshTimer = setTimeout(refreshSessions, SESSIONS_REFRESH_MS);
}

function renderSessions(sessions) {
  elements.sessions.hidden = sessions.length === 0;
  elements.sessionsEmpty.hidden = sessions.length > 0;

  const user = storedUser();
  const seen = new Set();
  const rows = sessions.map((session) => {
    seen.add(session.id);
    const key = JSON.stringify(session);
    const cached = sessionRows.get(session.id);
    if (cached && cached.key === key) {
      return cached.row;
    }
    const row = cached?.row ?? document.createElement("tr");
    fillSessionRow(row, session, user);
    sessionRows.set(session.id, { key, row });
    return row;
  });

  for (const id of [...sessionRows.keys()]) {
    if (!seen.has(id)) {
      sessionRows.get(id).row.remove();
      sessionRows.delete(id);
    }
  }

  // Reinsert only when the order changed, because moving a row drops focus from its buttons.
  const current = [...elements.sessionsBody.children];
  const sameOrder = current.length === rows.length && rows.every((row, index) => current[index] === row);
  if (!sameOrder) {
    elements.sessionsBody.replaceChildren(...rows);
  }
}

/** True when `control.user` names someone other than the logged-in user (by name or id). */
function heldBySomeoneElse(control, user) {
  if (!control || !control.user) {
    return false;
  }
  if (!user) {
    return true;
  }
  return control.user !== user.name && control.user !== user.id;
}

function fillSessionRow(row, session, user) {
  row.dataset.sessionId = session.id;
  row.dataset.state = session.state;

  const target = cell(session.target?.name ?? session.target?.id ?? "");
  const owner = cell(session.owner?.name ?? session.owner?.id ?? "");

  const state = document.createElement("td");
  const badge = document.createElement("span");
  badge.className = `badge state-${session.state}`;
  badge.textContent = session.state;
  state.append(badge);
  if (session.reason) {
    const reason = document.createElement("div");
    reason.className = "muted small";
    reason.textContent = session.reason;
    state.append(reason);
  }

  const controller = cell(session.control?.user ?? "—");
  if (session.control?.since) {
    controller.title = `since ${formatDateTime(session.control.since)}`;
  }

  const started = cell(formatDateTime(session.created_at));

  const actionsCell = document.createElement("td");
  const actions = document.createElement("div");
  actions.className = "actions";
  actionsCell.append(actions);
  if (session.state === "detached") {
    actions.append(navigateButton("Reattach", viewerUrl(session.id, "control")));
  }
  // Offered also when the user's own other tab or device holds control, so a desktop left open
  // elsewhere can be brought to this browser.
  if (session.state === "active") {
    const label = heldBySomeoneElse(session.control, user) ? "Take over" : "Move here";
    actions.append(navigateButton(label, viewerUrl(session.id, "takeover")));
  }
  if (!FINAL_STATES.has(session.state)) {
    const terminate = document.createElement("button");
    terminate.type = "button";
    terminate.className = "danger";
    terminate.textContent = "Terminate";
    terminate.addEventListener("click", () => confirmAndTerminate(session, terminate));
    actions.append(terminate);
  }

  row.replaceChildren(target, owner, state, controller, started, actionsCell);
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function navigateButton(label, url) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", () => window.location.assign(url));
  return button;
}

async function confirmAndTerminate(session, button) {
  const name = session.target?.name ?? session.id;
  if (!window.confirm(`Terminate the session on ${name}? Unsaved work on the desktop is lost.`)) {
    return;
  }
  clearError();
  button.disabled = true;
  try {
    await terminateSession(session.id, "ended by user");
    await refreshSessions();
  } catch (error) {
    handleError(error);
    button.disabled = false;
  }
}

function formatDateTime(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    return value ?? "";
  }
  return date.toLocaleString();
}

elements.loginForm.addEventListener("submit", onLoginSubmit);
elements.logout.addEventListener("click", onLogout);

if (storedToken()) {
  showPortal();
} else {
  showLogin();
}
