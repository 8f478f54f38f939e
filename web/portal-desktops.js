// Portal section "Desktops": the targets the user may open and the session table, which reloads
// every 3 s.

import { ApiError, createSession, listSessions, listTargets, terminateSession, viewerUrl } from "./api.js";
import { createButton, createCell, createElement, createLabelTags, formatDateTime, PagedList } from "./dom.js";
import { requestedDesktopSize, VIEWER_TOOLBAR_HEIGHT } from "./layout.js";

const SESSIONS_REFRESH_MS = 3000;
const FINAL_STATES = new Set(["terminated", "failed", "lost"]);
// Buttons for a session from a server that sends no `permissions`: the server still checks each
// request. Observe mode did not exist before per-session permissions, so it stays hidden.
const DEFAULT_SESSION_PERMISSIONS = { attach: true, takeover: true, terminate: true, observe: false };

/** Creates the section. `context` is the portal context described in portal.js. */
export function createDesktopsSection(context) {
  const elements = {
    targets: document.getElementById("targets"),
    targetsEmpty: document.getElementById("targets-empty"),
    targetsMore: document.getElementById("targets-more"),
    filterForm: document.getElementById("targets-filter"),
    filterLabel: document.getElementById("targets-label"),
    filterClear: document.getElementById("targets-filter-clear"),
    sessions: document.getElementById("sessions"),
    sessionsBody: document.getElementById("sessions-body"),
    sessionsEmpty: document.getElementById("sessions-empty"),
    sessionsMore: document.getElementById("sessions-more"),
    sessionsMineField: document.getElementById("sessions-mine-field"),
    sessionsMine: document.getElementById("sessions-mine"),
  };

  const targets = new PagedList({
    fetchPage: (cursor) => listTargets({ label: elements.filterLabel.value.trim(), cursor }),
    render: renderTargets,
    onError: (error) => context.reportError(error),
    moreButton: elements.targetsMore,
  });

  const refresh = {
    timer: null,
    // Incremented whenever a refresh starts or stops, so only the newest one renders and schedules.
    sequence: 0,
    // Message of the last failed refresh, cleared from the error line once a refresh succeeds.
    errorMessage: null,
    // Pages of sessions the user has loaded with "Load more". Every refresh reloads them all.
    pages: 1,
    running: false,
  };
  // Session rows by session id, with the data they were rendered from, so a refresh only
  // rebuilds changed rows and keyboard focus on a button survives.
  const sessionRows = new Map();

  function renderTargets(items, loaded) {
    // With manage_targets the list includes targets the user may not open; the Resources
    // section shows those.
    const openable = items.filter((target) => target.can_connect !== false);
    elements.targetsEmpty.hidden = !loaded || openable.length > 0;
    elements.targets.replaceChildren(...openable.map(createTargetItem));
  }

  function createTargetItem(target) {
    const text = createElement(
      "div",
      { className: "target-text" },
      createElement("strong", { text: target.name }),
      createElement("span", { className: "muted small", text: `${target.host}:${target.port} · ${target.security}` }),
    );
    if (target.labels && Object.keys(target.labels).length > 0) {
      text.append(createLabelTags(target.labels));
    }
    const button = createButton("Open desktop", () => openDesktop(target, button), {
      ariaLabel: `Open desktop ${target.name}`,
    });
    return createElement("li", { className: "target" }, text, button);
  }

  async function openDesktop(target, button) {
    context.clearError();
    button.disabled = true;
    const wanted = requestedDesktopSize(window.innerWidth, window.innerHeight - VIEWER_TOOLBAR_HEIGHT);
    // A desktop with a size limit opens at most that large.
    const size = {
      width: target.max_width ? Math.min(wanted.width, target.max_width) : wanted.width,
      height: target.max_height ? Math.min(wanted.height, target.max_height) : wanted.height,
    };
    try {
      const session = await createSession(target.id, size.width, size.height);
      window.location.assign(viewerUrl(session.id, "control"));
    } catch (error) {
      context.reportError(error, { onNotFound: () => targets.reload() });
      button.disabled = false;
    }
  }

  function loadTargets() {
    if (context.me()?.permissions?.list_targets === false) {
      targets.reset();
      elements.targetsEmpty.hidden = false;
      elements.targetsEmpty.textContent = "You may not list desktops in this organisation.";
      return;
    }
    elements.targetsEmpty.textContent = "No desktops are available to you.";
    targets.reload();
  }

  function stopRefresh() {
    refresh.sequence += 1;
    if (refresh.timer !== null) {
      clearTimeout(refresh.timer);
      refresh.timer = null;
    }
  }

  /** True when the list shows every session of the organisation, not only the user's own. */
  function showsAllSessions() {
    return Boolean(context.me()?.permissions?.view_all_sessions) && !elements.sessionsMine.checked;
  }

  /** Fetches as many pages as the user has loaded. Returns the sessions and the next cursor. */
  async function fetchSessionPages() {
    const mine = !showsAllSessions();
    const items = [];
    let cursor = null;
    for (let page = 0; page < refresh.pages; page += 1) {
      const response = await listSessions({ mine, cursor });
      items.push(...(response?.items ?? []));
      cursor = response?.next_cursor ?? null;
      if (!cursor) {
        break;
      }
    }
    // A session can move to a later page between two requests, so keep one copy of each.
    const unique = new Map(items.map((session) => [session.id, session]));
    return { items: [...unique.values()], nextCursor: cursor };
  }

  /** Loads the session list now and schedules the next load 3 s after this one finishes. */
  async function refreshSessions() {
    stopRefresh();
    if (!refresh.running) {
      return;
    }
    const sequence = refresh.sequence;
    try {
      const { items, nextCursor } = await fetchSessionPages();
      if (sequence !== refresh.sequence) {
        return;
      }
      renderSessions(items);
      elements.sessionsMore.hidden = !nextCursor;
      if (refresh.errorMessage !== null) {
        context.clearError(refresh.errorMessage);
      }
      refresh.errorMessage = null;
    } catch (error) {
      if (sequence !== refresh.sequence) {
        return;
      }
      context.reportError(error);
      if (error instanceof ApiError && error.isUnauthorized) {
        return;
      }
      refresh.errorMessage = error.message;
    }
    refresh.timer = setTimeout(refreshSessions, SESSIONS_REFRESH_MS);
  }

  function renderSessions(sessions) {
    const all = showsAllSessions();
    elements.sessions.hidden = sessions.length === 0;
    elements.sessions.classList.toggle("hide-owner", !context.me()?.permissions?.view_all_sessions);
    elements.sessionsEmpty.hidden = sessions.length > 0;
    elements.sessionsEmpty.textContent = all ? "There are no sessions in this organisation." : "You have no sessions.";

    const user = context.user();
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

  function fillSessionRow(row, session, user) {
    row.dataset.sessionId = session.id;
    row.dataset.state = session.state;

    const target = createCell(session.target?.name ?? session.target?.id ?? "");
    const owner = createCell(session.owner?.name ?? session.owner?.id ?? "");
    owner.className = "owner-column";

    const state = createElement("td");
    state.append(createElement("span", { className: `badge state-${session.state}`, text: session.state }));
    if (session.reason) {
      state.append(createElement("div", { className: "muted small", text: session.reason }));
    }

    const controller = createCell(session.control?.user ?? "—");
    if (session.control?.since) {
      controller.title = `since ${formatDateTime(session.control.since)}`;
    }

    const started = createCell(formatDateTime(session.created_at));
    const actions = createElement("div", { className: "actions" }, ...sessionButtons(session, user));
    row.replaceChildren(target, owner, state, controller, started, createElement("td", {}, actions));
  }

  function sessionButtons(session, user) {
    const permissions = session.permissions ?? DEFAULT_SESSION_PERMISSIONS;
    const buttons = [];
    if (session.state === "detached" && permissions.attach) {
      buttons.push(navigateButton("Reattach", viewerUrl(session.id, "control")));
    }
    // Offered also when the user's own other tab or device holds control, so a desktop left open
    // elsewhere can be brought to this browser.
    if (session.state === "active" && permissions.takeover) {
      const label = heldBySomeoneElse(session.control, user) ? "Take over" : "Move here";
      buttons.push(navigateButton(label, viewerUrl(session.id, "takeover")));
    }
    if ((session.state === "active" || session.state === "detached") && permissions.observe) {
      buttons.push(navigateButton("Observe", viewerUrl(session.id, "observe")));
    }
    if (!FINAL_STATES.has(session.state) && permissions.terminate) {
      buttons.push(
        createButton("Terminate", (button) => confirmAndTerminate(session, button), { className: "danger" }),
      );
    }
    return buttons;
  }

  async function confirmAndTerminate(session, button) {
    const name = session.target?.name ?? session.id;
    if (!window.confirm(`Terminate the session on ${name}? Unsaved work on the desktop is lost.`)) {
      return;
    }
    context.clearError();
    button.disabled = true;
    try {
      await terminateSession(session.id, "ended by user");
      await refreshSessions();
    } catch (error) {
      context.reportError(error, { onNotFound: refreshSessions });
      button.disabled = false;
    }
  }

  elements.filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    context.clearError();
    loadTargets();
  });
  elements.filterClear.addEventListener("click", () => {
    elements.filterLabel.value = "";
    loadTargets();
  });
  elements.sessionsMore.addEventListener("click", () => {
    refresh.pages += 1;
    refreshSessions();
  });
  elements.sessionsMine.addEventListener("change", () => {
    refresh.pages = 1;
    refreshSessions();
  });

  return {
    /** Loads the desktops and starts the session refresh for the current organisation. */
    start() {
      const viewAll = Boolean(context.me()?.permissions?.view_all_sessions);
      elements.sessionsMineField.hidden = !viewAll;
      refresh.running = true;
      loadTargets();
      refreshSessions();
    },

    /** Stops the refresh and empties both lists, for a sign-out or an organisation switch. */
    stop() {
      refresh.running = false;
      refresh.pages = 1;
      refresh.errorMessage = null;
      stopRefresh();
      targets.reset();
      sessionRows.clear();
      elements.sessionsBody.replaceChildren();
      elements.sessions.hidden = true;
      elements.sessionsEmpty.hidden = true;
      elements.sessionsMore.hidden = true;
      elements.sessionsMine.checked = false;
      elements.filterLabel.value = "";
    },
  };
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

function navigateButton(label, url) {
  return createButton(label, () => window.location.assign(url));
}
