// Portal page: login, the organisation picker, and the sections the user's permissions in the
// current organisation allow (GET /api/v1/me). Each section lives in its own portal-*.js module
// and receives `context`:
//   me()                           the GET /api/v1/me response, or null before it arrives
//   user()                         the stored user {id, name}
//   reportError(error, {onNotFound}) shows a failed request; 401 returns to the login form, and
//                                  404 also calls onNotFound so the section reloads its list
//   showError(message), clearError(message?), showStatus(message)

import {
  acceptInvitation,
  ApiError,
  changePassword,
  clearLogin,
  declineInvitation,
  getMe,
  hasLogin,
  login,
  logout,
  onStoredLoginChange,
  storedOrg,
  storedOrgs,
  storedUser,
  switchOrg,
  takeSignedOutMessage,
} from "./api.js";
import { fillSelect } from "./dom.js";
import { createAuditSection } from "./portal-audit.js";
import { createDesktopsSection } from "./portal-desktops.js";
import { createKeysSection } from "./portal-keys.js";
import { createMembersSection } from "./portal-members.js";
import { createNodesSection } from "./portal-nodes.js";
import { createPolicySection } from "./portal-policy.js";
import { createResourcesSection } from "./portal-resources.js";

// Sections in tab order, with the permission from GET /api/v1/me that shows each.
const SECTIONS = [
  { name: "desktops", permission: null },
  { name: "members", permission: "manage_members" },
  { name: "resources", permission: "manage_targets" },
  { name: "policy", permission: "manage_policies" },
  { name: "audit", permission: "read_audit" },
  { name: "keys", permission: "manage_api_keys" },
  { name: "nodes", permission: "manage_nodes" },
];

const elements = {
  error: document.getElementById("error"),
  status: document.getElementById("status"),
  orgBar: document.getElementById("org-bar"),
  orgName: document.getElementById("org-name"),
  orgSelect: document.getElementById("org-select"),
  account: document.getElementById("account"),
  accountName: document.getElementById("account-name"),
  logout: document.getElementById("logout"),
  loginView: document.getElementById("login-view"),
  loginForm: document.getElementById("login-form"),
  loginSubmit: document.getElementById("login-submit"),
  username: document.getElementById("username"),
  password: document.getElementById("password"),
  portalView: document.getElementById("portal-view"),
  tabs: document.getElementById("tabs"),
};

// GET /api/v1/me for the current organisation, or null while signed out or loading.
let me = null;
let activeSection = "desktops";
// Incremented on every login, logout and organisation switch, so older responses are dropped.
let generation = 0;

const context = {
  me: () => me,
  user: () => storedUser(),
  reportError,
  showError,
  clearError,
  showStatus,
};

const sections = {
  desktops: createDesktopsSection(context),
  members: createMembersSection(context),
  resources: createResourcesSection(context),
  policy: createPolicySection(context),
  audit: createAuditSection(context),
  keys: createKeysSection(context),
  nodes: createNodesSection(context),
};

function showError(message) {
  elements.error.textContent = message;
  elements.error.hidden = false;
}

/**
 * Hides the error line and the status line. With `onlyMessage`, hides the error line only if it
 * still shows that message, so a refresh that recovers does not hide a newer error.
 */
function clearError(onlyMessage = undefined) {
  if (onlyMessage !== undefined) {
    if (elements.error.textContent === onlyMessage) {
      elements.error.textContent = "";
      elements.error.hidden = true;
    }
    return;
  }
  elements.error.textContent = "";
  elements.error.hidden = true;
  elements.status.textContent = "";
}

/** Shows the outcome of a successful action in the status line, which screen readers announce. */
function showStatus(message) {
  elements.status.textContent = message;
}

/**
 * Shows a failed request in the error line. A 401 means the login is gone (api.js has already
 * tried to renew it), so it also returns to the login form.
 */
function reportError(error, { onNotFound } = {}) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    showError(`Unexpected error: ${error.message}`);
    return;
  }
  console.warn(`API request failed (${error.status} ${error.code}): ${error.message}`);
  if (error.isUnauthorized) {
    showLogin(error.message);
    return;
  }
  showError(error.message);
  if (error.status === 404 && onNotFound) {
    onNotFound();
  }
}

function resetSections() {
  sections.desktops.stop();
  for (const { name } of SECTIONS.slice(1)) {
    sections[name].reset();
  }
}

/** Shows the login form with `message`, or with the reason a login in this tab ended. */
function showLogin(message = undefined) {
  renderInvitations([]);
  document.getElementById("password-form").reset();
  document.getElementById("password-card").hidden = true;
  generation += 1;
  me = null;
  resetSections();
  clearLogin();
  const signedOutMessage = takeSignedOutMessage();
  const text = message ?? signedOutMessage;
  elements.orgBar.hidden = true;
  elements.account.hidden = true;
  elements.portalView.hidden = true;
  elements.loginView.hidden = false;
  elements.password.value = "";
  clearError();
  if (text) {
    showError(text);
  }
  elements.username.focus();
}

/** Shows the organisation name, the organisation choice and the user in the header. */
function renderHeader(org, orgs, user) {
  elements.orgName.textContent = org?.name ?? "";
  const choices = orgs.map((choice) => [choice.id, `${choice.name} (${choice.role})`]);
  if (org && !orgs.some((choice) => choice.id === org.id)) {
    choices.unshift([org.id, `${org.name} (${org.role})`]);
  }
  fillSelect(elements.orgSelect, choices, org?.id ?? "");
  elements.orgSelect.disabled = choices.length < 2;
  elements.orgBar.hidden = !org;
  elements.accountName.textContent = user ? `${user.name}${org?.role ? ` (${org.role})` : ""}` : "";
  elements.account.hidden = false;
}

function sectionAllowed(name) {
  const section = SECTIONS.find((candidate) => candidate.name === name);
  return Boolean(section) && (section.permission === null || Boolean(me?.permissions?.[section.permission]));
}

function sectionFromHash() {
  const name = window.location.hash.slice(1);
  return SECTIONS.some((section) => section.name === name) ? name : "desktops";
}

/** Shows the tabs the permissions allow. The tab bar is hidden when only Desktops is allowed. */
function renderTabs() {
  let allowedCount = 0;
  for (const { name } of SECTIONS) {
    const allowed = sectionAllowed(name);
    document.getElementById(`tab-${name}`).hidden = !allowed;
    allowedCount += allowed ? 1 : 0;
  }
  elements.tabs.hidden = allowedCount < 2;
}

/** Opens section `name` (Desktops when it is not allowed) and records it in the address. */
function selectSection(name) {
  const target = sectionAllowed(name) ? name : "desktops";
  if (activeSection !== target) {
    sections[activeSection].leave?.();
  }
  activeSection = target;
  for (const { name: candidate } of SECTIONS) {
    const selected = candidate === target;
    const tab = document.getElementById(`tab-${candidate}`);
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    document.getElementById(`panel-${candidate}`).hidden = !selected;
  }
  sections[target].show?.();
  const address = target === "desktops" ? window.location.pathname + window.location.search : `#${target}`;
  window.history.replaceState(null, "", address);
}

/** Moves between tabs with the arrow keys, Home and End, as the ARIA tabs pattern describes. */
function onTabKeyDown(event) {
  const visible = SECTIONS.map(({ name }) => name).filter(sectionAllowed);
  const index = visible.indexOf(activeSection);
  const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: visible.length - 1 };
  if (!(event.key in moves)) {
    return;
  }
  event.preventDefault();
  const next = visible[(moves[event.key] + visible.length) % visible.length];
  selectSection(next);
  document.getElementById(`tab-${next}`).focus();
}

/** Permissions while GET /api/v1/me is unavailable: the Desktops section and nothing else. */
function fallbackMe() {
  return {
    user: storedUser(),
    org: storedOrg(),
    orgs: storedOrgs(),
    permissions: { list_targets: true },
  };
}

/** Shows the portal for the stored login: loads GET /api/v1/me, then the sections it allows. */
async function showPortal() {
  generation += 1;
  const started = generation;
  me = null;
  elements.loginView.hidden = true;
  elements.portalView.hidden = false;
  renderHeader(storedOrg(), storedOrgs(), storedUser());
  renderTabs();

  let loaded;
  try {
    loaded = await getMe();
  } catch (error) {
    if (started !== generation) {
      return;
    }
    reportError(error);
    if (error instanceof ApiError && error.isUnauthorized) {
      return;
    }
    loaded = fallbackMe();
  }
  if (started !== generation) {
    return;
  }
  me = loaded;
  renderInvitations(me.invitations ?? []);
  renderHeader(me.org ?? storedOrg(), me.orgs ?? storedOrgs(), me.user ?? storedUser());
  renderTabs();
  sections.desktops.start();
  selectSection(sectionFromHash());
}

/**
 * Lists organisations that invited the user, each with Accept and Decline. Accepting adds the
 * organisation to the picker; nothing changes until the user chooses one of the buttons.
 */
function renderInvitations(invitations) {
  const section = document.getElementById("invitations");
  const list = document.getElementById("invitation-list");
  list.replaceChildren();
  section.hidden = invitations.length === 0;
  for (const invitation of invitations) {
    const item = document.createElement("li");
    item.dataset.orgId = invitation.id;
    const text = document.createElement("span");
    text.textContent = `${invitation.name} invites you as ${invitation.role}. `;
    const accept = document.createElement("button");
    accept.type = "button";
    accept.textContent = "Accept";
    accept.setAttribute("aria-label", `Accept the invitation of ${invitation.name}`);
    const decline = document.createElement("button");
    decline.type = "button";
    decline.textContent = "Decline";
    decline.className = "secondary";
    decline.setAttribute("aria-label", `Decline the invitation of ${invitation.name}`);
    const answer = async (action, done) => {
      accept.disabled = true;
      decline.disabled = true;
      try {
        await action(invitation.id);
        showStatus(done);
        await showPortal();
      } catch (error) {
        accept.disabled = false;
        decline.disabled = false;
        reportError(error, { onNotFound: showPortal });
      }
    };
    accept.addEventListener("click", () =>
      answer(acceptInvitation, `You are now a member of ${invitation.name}; choose it under Organisation.`),
    );
    decline.addEventListener("click", () => answer(declineInvitation, `Declined the invitation of ${invitation.name}.`));
    item.append(text, accept, " ", decline);
    list.append(item);
  }
}

/** The "Change password" card: opened from the account bar, closed on success or Cancel. */
function setUpPasswordForm() {
  const card = document.getElementById("password-card");
  const form = document.getElementById("password-form");
  const current = document.getElementById("current-password");
  const next = document.getElementById("new-password");
  const submit = document.getElementById("password-submit");
  const close = () => {
    form.reset();
    card.hidden = true;
  };
  document.getElementById("password-link").addEventListener("click", (event) => {
    event.preventDefault();
    card.hidden = false;
    current.focus();
  });
  document.getElementById("password-cancel").addEventListener("click", close);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    submit.disabled = true;
    try {
      await changePassword(current.value, next.value);
      close();
      showStatus("Password changed. Your other sign-ins have ended.");
    } catch (error) {
      reportError(error);
    } finally {
      submit.disabled = false;
    }
  });
}

async function onLoginSubmit(event) {
  event.preventDefault();
  clearError();
  elements.loginSubmit.disabled = true;
  try {
    await login(elements.username.value.trim(), elements.password.value);
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

async function onLogout(event) {
  event.preventDefault();
  generation += 1;
  resetSections();
  await logout();
  showLogin();
}

async function onOrgChange() {
  const current = me?.org?.id ?? storedOrg()?.id;
  const chosen = elements.orgSelect.value;
  if (chosen === current) {
    return;
  }
  if (
    sections.policy.hasUnsavedChanges() &&
    !window.confirm("Discard your unsaved changes to the policy and switch organisation?")
  ) {
    elements.orgSelect.value = current;
    return;
  }
  clearError();
  elements.orgSelect.disabled = true;
  try {
    const response = await switchOrg(chosen);
    resetSections();
    await showPortal();
    showStatus(`Switched to ${response.org?.name ?? "the organisation"}.`);
  } catch (error) {
    elements.orgSelect.value = current;
    elements.orgSelect.disabled = false;
    // 404: the user is no longer a member, so reload the list of organisations.
    reportError(error, { onNotFound: showPortal });
  }
}

/** Follows a sign-in, sign-out or organisation switch made in another tab. */
function onOtherTabLoginChange(login) {
  if (!login) {
    if (!elements.portalView.hidden) {
      showLogin("Your sign-in ended in another tab. Sign in again.");
    }
    return;
  }
  if (elements.portalView.hidden) {
    clearError();
    showPortal();
    return;
  }
  if (me && login.org?.id !== me.org?.id) {
    resetSections();
    showPortal().then(() => showStatus(`Switched to ${login.org?.name} in another tab.`));
  }
}

elements.loginForm.addEventListener("submit", onLoginSubmit);
elements.logout.addEventListener("click", onLogout);
setUpPasswordForm();
elements.orgSelect.addEventListener("change", onOrgChange);
elements.tabs.addEventListener("keydown", onTabKeyDown);
for (const { name } of SECTIONS) {
  document.getElementById(`tab-${name}`).addEventListener("click", () => {
    clearError();
    selectSection(name);
  });
}
onStoredLoginChange(onOtherTabLoginChange);

if (hasLogin()) {
  showPortal();
} else {
  showLogin();
}
