// Portal section "Nodes" (permission manage_nodes): the organisation's own nodes with their state
// and live figures, reloaded every 5 s while the section is open, with Drain, Resume, Revoke and
// Remove. A join token is shown once, with the agent command that uses it, and removed from the
// page when the user dismisses it, leaves the section or signs out.

import { ApiError, request } from "./api.js";
import { createButton, createElement, createLabelTags, fillSelect, formatDateTime } from "./dom.js";
import { parseLabels } from "./portal-resources.js";

const NODES_REFRESH_MS = 5000;

/** Join token lifetimes offered by the form, as `[seconds, label]`. The server accepts 60 to 604800 seconds. */
export const JOIN_TOKEN_LIFETIMES = [
  [600, "10 minutes"],
  [3600, "1 hour"],
  [86400, "1 day"],
  [604800, "7 days"],
];
const DEFAULT_JOIN_TOKEN_LIFETIME = 3600;
const MIN_JOIN_TOKEN_TTL_SECS = 60;
const MAX_JOIN_TOKEN_TTL_SECS = 604800;

/** Placeholder for the node API's address in the agent command, because the portal cannot look it up. */
export const NODE_API_PLACEHOLDER = "<node-api-address>";
const AGENT_DATA_DIR = "/var/lib/rdp-proxy-agent";

const ACTION_LABELS = { drain: "Drain", resume: "Resume", revoke: "Revoke", remove: "Remove" };

function nodePath(id, action = undefined) {
  const path = `/api/v1/nodes/${encodeURIComponent(id)}`;
  return action ? `${path}/${action}` : path;
}

/**
 * Returns the actions a node offers, in button order: Drain, or Resume once a drain was
 * requested, and Revoke. A revoked node offers only Remove, because the server removes only
 * revoked nodes and rejects draining or resuming them with 409 `node_revoked`.
 */
export function nodeActions(node) {
  if (node.state === "revoked") {
    return ["remove"];
  }
  const drained = Boolean(node.drain_requested) || node.state === "draining";
  return [drained ? "resume" : "drain", "revoke"];
}

/** Formats a byte count in GiB (2^30 bytes) with at most one decimal, e.g. "15.5 GiB". */
export function formatGibibytes(bytes) {
  if (!Number.isFinite(bytes)) {
    return "";
  }
  return `${Number((bytes / 2 ** 30).toFixed(1))} GiB`;
}

/** Formats a node's cores and memory, e.g. "8 cores, 15.5 GiB", or "" without capabilities. */
export function formatCapacity(capabilities) {
  if (!capabilities) {
    return "";
  }
  const cores = capabilities.cores === 1 ? "1 core" : `${capabilities.cores} cores`;
  return `${cores}, ${formatGibibytes(capabilities.memory_bytes)}`;
}

/** Formats a fraction from 0 to 1 as a whole percentage, e.g. "42%", or "" when it is missing. */
export function formatPercent(fraction) {
  if (!Number.isFinite(fraction)) {
    return "";
  }
  return `${Math.round(fraction * 100)}%`;
}

/**
 * Combines the heartbeats of the workers on a node into `{sessions, maxSessions, nodeCpu,
 * health}`. Sessions and maximum sessions are summed. `maxSessions`, `nodeCpu` and `health` are
 * null when no worker sent load figures, and `maxSessions` also when any worker sent none.
 * `nodeCpu` is the busiest report (0 to 1, all processes) and `health` the lowest (0 to 100).
 * Returns null when no worker runs on the node.
 */
export function summarizeWorkers(workers) {
  if (!Array.isArray(workers) || workers.length === 0) {
    return null;
  }
  const summary = { sessions: 0, maxSessions: 0, nodeCpu: null, health: null };
  for (const worker of workers) {
    summary.sessions += worker.sessions ?? 0;
    const load = worker.load;
    if (!load) {
      summary.maxSessions = null;
      continue;
    }
    if (summary.maxSessions !== null) {
      summary.maxSessions += load.max_sessions;
    }
    summary.nodeCpu = Math.max(summary.nodeCpu ?? 0, load.node_cpu);
    summary.health = Math.min(summary.health ?? 100, load.health);
  }
  if (summary.nodeCpu === null) {
    summary.maxSessions = null;
  }
  return summary;
}

/** Formats the sessions of a worker summary as "3 / 20", "3" without a maximum, or "—" without workers. */
export function formatSessions(summary) {
  if (!summary) {
    return "—";
  }
  return summary.maxSessions === null ? String(summary.sessions) : `${summary.sessions} / ${summary.maxSessions}`;
}

/** Formats whether the node's agent sends reports: "reporting", "silent since <time>" or "never reported". */
export function formatReport(node) {
  if (node.report_live) {
    return "reporting";
  }
  if (node.last_report_at) {
    return `silent since ${formatDateTime(node.last_report_at)}`;
  }
  return "never reported";
}

/**
 * Formats the agent's version and the version of the node configuration it applied, e.g.
 * "agent 0.4.0, config 7", with "config none" before it applied one.
 */
export function formatVersions(node) {
  const config = node.config_version === null || node.config_version === undefined ? "none" : node.config_version;
  return `agent ${node.agent_version || "unknown"}, config ${config}`;
}

/**
 * Formats the agent's report on one service it supervises, e.g. "worker running" or "worker
 * backoff, 4 restarts, last exit: exit status 2".
 */
export function formatService(service) {
  const parts = [`${service.kind} ${service.run}`];
  if (service.restarts > 0) {
    parts.push(service.restarts === 1 ? "1 restart" : `${service.restarts} restarts`);
  }
  if (service.last_exit) {
    parts.push(`last exit: ${service.last_exit}`);
  }
  return parts.join(", ");
}

/** Quotes `value` for a POSIX shell when it contains anything but letters, digits and `_.:/=@-`. */
export function shellQuote(value) {
  if (/^[A-Za-z0-9_.:/=@-]+$/.test(value)) {
    return value;
  }
  return `'${value.replaceAll("'", `'"'"'`)}'`;
}

/** Returns the command that joins a machine with `token`, with NODE_API_PLACEHOLDER for the address. */
export function agentCommand(token) {
  // The token goes in the environment, not an argument, so other users' `ps` does not show it.
  return [
    `RDP_PROXY_JOIN_TOKEN=${shellQuote(token)}`,
    "rdp-proxy-agent",
    `--control-url https://${NODE_API_PLACEHOLDER}`,
    `--data-dir ${AGENT_DATA_DIR}`,
  ].join(" ");
}

/**
 * Builds the body of POST /api/v1/nodes/join-tokens from the form's lifetime (seconds, as text)
 * and labels (`key=value` pairs separated by commas). Throws an Error with a message for the
 * user when either is invalid. The server checks the label keys and values.
 */
export function joinTokenRequest(lifetimeText, labelsText) {
  const ttlSecs = Number(lifetimeText);
  if (!Number.isInteger(ttlSecs) || ttlSecs < MIN_JOIN_TOKEN_TTL_SECS || ttlSecs > MAX_JOIN_TOKEN_TTL_SECS) {
    throw new Error(
      `Token lifetime must be a whole number of seconds from ${MIN_JOIN_TOKEN_TTL_SECS} to ${MAX_JOIN_TOKEN_TTL_SECS}, not "${lifetimeText}".`,
    );
  }
  const body = { ttl_secs: ttlSecs };
  const labels = parseLabels(labelsText);
  if (Object.keys(labels).length > 0) {
    body.labels = labels;
  }
  return body;
}

/** Formats "n session" or "n sessions". */
function sessionCount(count) {
  return count === 1 ? "1 session" : `${count} sessions`;
}

/** Creates the section. `context` is the portal context described in portal.js. */
export function createNodesSection(context) {
  const elements = {
    table: document.getElementById("nodes-table"),
    body: document.getElementById("nodes-body"),
    empty: document.getElementById("nodes-empty"),
    form: document.getElementById("join-token-form"),
    lifetime: document.getElementById("join-token-lifetime"),
    labels: document.getElementById("join-token-labels"),
    submit: document.getElementById("join-token-submit"),
    created: document.getElementById("join-token-created"),
    expiry: document.getElementById("join-token-expiry"),
    value: document.getElementById("join-token-value"),
    command: document.getElementById("join-token-command"),
    copyToken: document.getElementById("join-token-copy"),
    copyCommand: document.getElementById("join-token-command-copy"),
    copyResult: document.getElementById("join-token-copy-result"),
    dismiss: document.getElementById("join-token-dismiss"),
  };

  const refresh = {
    timer: null,
    // Incremented whenever a refresh starts or stops, so only the newest one renders and schedules.
    sequence: 0,
    // Message of the last failed refresh, cleared from the error line once a refresh succeeds.
    errorMessage: null,
    running: false,
  };
  // Rows by node id. Each row keeps its cells and its actions, and a refresh rewrites only the
  // cells whose node changed, so keyboard focus on a button survives the 5 s reload.
  const nodeRows = new Map();

  function stopTimer() {
    refresh.sequence += 1;
    if (refresh.timer !== null) {
      clearTimeout(refresh.timer);
      refresh.timer = null;
    }
  }

  /** Loads the node list now and schedules the next load 5 s after this one finishes. */
  async function refreshNodes() {
    stopTimer();
    if (!refresh.running) {
      return;
    }
    const sequence = refresh.sequence;
    try {
      const nodes = await request("GET", "/api/v1/nodes");
      if (sequence !== refresh.sequence) {
        return;
      }
      renderNodes(Array.isArray(nodes) ? nodes : []);
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
    refresh.timer = setTimeout(refreshNodes, NODES_REFRESH_MS);
  }

  function renderNodes(nodes) {
    elements.table.hidden = nodes.length === 0;
    elements.empty.hidden = nodes.length > 0;
    const seen = new Set();
    const rows = nodes.map((node) => {
      seen.add(node.id);
      let entry = nodeRows.get(node.id);
      if (!entry) {
        entry = createRowEntry(node.id);
        nodeRows.set(node.id, entry);
      }
      updateRow(entry, node);
      return entry.row;
    });

    for (const [id, entry] of [...nodeRows]) {
      if (!seen.has(id)) {
        entry.row.remove();
        nodeRows.delete(id);
      }
    }

    // Reinsert only when the order changed, because moving a row drops focus from its buttons.
    const current = [...elements.body.children];
    const sameOrder = current.length === rows.length && rows.every((row, index) => current[index] === row);
    if (!sameOrder) {
      elements.body.replaceChildren(...rows);
    }
  }

  function createRowEntry(id) {
    const cells = {
      name: createElement("td"),
      state: createElement("td"),
      agent: createElement("td"),
      capacity: createElement("td"),
      sessions: createElement("td", { className: "numeric" }),
      cpu: createElement("td", { className: "numeric" }),
      health: createElement("td", { className: "numeric" }),
    };
    const actions = createElement("div", { className: "actions" });
    const row = createElement("tr", {}, ...Object.values(cells), createElement("td", {}, actions));
    row.dataset.nodeId = id;
    return { row, cells, actions, dataKey: null, actionsKey: null };
  }

  function updateRow(entry, node) {
    entry.row.dataset.state = node.state;
    const actionsKey = JSON.stringify([node.name, nodeActions(node)]);
    if (entry.actionsKey !== actionsKey) {
      const hadFocus = entry.actions.contains(document.activeElement);
      const buttons = nodeActions(node).map((action) => createActionButton(node, action));
      entry.actions.replaceChildren(...buttons);
      entry.actionsKey = actionsKey;
      if (hadFocus) {
        buttons[0]?.focus();
      }
    }

    const dataKey = JSON.stringify(node);
    if (entry.dataKey === dataKey) {
      return;
    }
    entry.dataKey = dataKey;
    fillCells(entry.cells, node);
  }

  function fillCells(cells, node) {
    cells.name.replaceChildren(createElement("strong", { className: "nowrap", text: node.name }));
    if (node.labels && Object.keys(node.labels).length > 0) {
      cells.name.append(createLabelTags(node.labels));
    }

    const badge = createElement("span", { className: `badge node-state-${node.state}`, text: node.state });
    if (node.state_changed_at) {
      badge.title = `since ${formatDateTime(node.state_changed_at)}`;
    }
    cells.state.replaceChildren(badge);
    if (node.drain_requested && node.state !== "draining" && node.state !== "revoked") {
      cells.state.append(createElement("div", { className: "muted small", text: "drain requested" }));
    }
    if (node.state_reason) {
      cells.state.append(createElement("div", { className: "muted small", text: node.state_reason }));
    }

    cells.agent.replaceChildren(
      createElement("div", { className: node.report_live ? "" : "muted", text: formatReport(node) }),
      createElement("div", { className: "muted small", text: formatVersions(node) }),
    );
    for (const service of node.services ?? []) {
      // A service in backoff exited or failed to start, and the agent is waiting to start it again.
      const className = service.run === "backoff" ? "small warning" : "muted small";
      cells.agent.append(createElement("div", { className, text: formatService(service) }));
    }

    cells.capacity.replaceChildren(createElement("div", { className: "nowrap", text: formatCapacity(node.capabilities) }));
    if (node.capabilities && !node.capabilities.rdp) {
      cells.capacity.append(createElement("div", { className: "muted small", text: "cannot run RDP sessions" }));
    }

    const summary = summarizeWorkers(node.workers);
    cells.sessions.textContent = formatSessions(summary);
    cells.cpu.textContent = summary && summary.nodeCpu !== null ? formatPercent(summary.nodeCpu) : "—";
    cells.health.textContent = summary && summary.health !== null ? `${summary.health} / 100` : "—";
  }

  function createActionButton(node, action) {
    const label = ACTION_LABELS[action];
    const className = action === "revoke" || action === "remove" ? "danger" : "secondary";
    return createButton(label, (button) => runAction(node, action, button), {
      className,
      ariaLabel: `${label} node ${node.name}`,
    });
  }

  /** Sends `action` for `node`, reports the outcome, and reloads the list either way. */
  async function runAction(node, action, button) {
    if (
      action === "revoke" &&
      !window.confirm(
        `Revoke node ${node.name}? The sessions it holds end at once, and the machine can join again only with a new join token.`,
      )
    ) {
      return;
    }
    context.clearError();
    button.disabled = true;
    try {
      const message = await sendAction(node, action);
      context.showStatus(message);
    } catch (error) {
      context.reportError(error);
    }
    await refreshNodes();
    // The reload replaces the button when the node's actions changed, and otherwise keeps it.
    button.disabled = false;
  }

  /** Sends the request for `action` and returns the status message for its success. */
  async function sendAction(node, action) {
    switch (action) {
      case "drain":
        await request("POST", nodePath(node.id, "drain"));
        return `Draining node ${node.name}: it takes no new sessions, and the sessions it holds continue.`;
      case "resume":
        await request("POST", nodePath(node.id, "resume"));
        return `Resumed node ${node.name}: it takes new sessions again when it is ready.`;
      case "revoke": {
        const result = await request("POST", nodePath(node.id, "revoke"));
        const ended = result?.sessions_ended ?? 0;
        return `Revoked node ${node.name} and ended ${sessionCount(ended)}.`;
      }
      case "remove":
        await request("DELETE", nodePath(node.id));
        return `Removed node ${node.name}.`;
      default:
        throw new Error(`Invalid node action "${action}".`);
    }
  }

  /** Removes the one-time join token display, and the token with it, from the page. */
  function hideJoinToken() {
    elements.value.value = "";
    elements.command.value = "";
    elements.expiry.textContent = "";
    elements.copyResult.textContent = "";
    elements.created.hidden = true;
  }

  function showJoinToken(created) {
    elements.value.value = created.token;
    elements.command.value = agentCommand(created.token);
    elements.expiry.textContent = created.expires_at ? `It expires at ${formatDateTime(created.expires_at)}.` : "";
    elements.copyResult.textContent = "";
    elements.created.hidden = false;
    elements.value.focus();
    elements.value.select();
  }

  async function copyField(field, what) {
    try {
      await navigator.clipboard.writeText(field.value);
      elements.copyResult.textContent = `Copied the ${what}.`;
    } catch {
      // The clipboard API needs a secure context and permission, so leave the text selected.
      field.focus();
      field.select();
      elements.copyResult.textContent = `Copying failed: press Ctrl+C to copy the selected ${what}.`;
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    context.clearError();
    hideJoinToken();
    let body;
    try {
      body = joinTokenRequest(elements.lifetime.value, elements.labels.value);
    } catch (error) {
      context.showError(error.message);
      elements.labels.focus();
      return;
    }
    elements.submit.disabled = true;
    try {
      const created = await request("POST", "/api/v1/nodes/join-tokens", body);
      resetForm();
      showJoinToken(created);
    } catch (error) {
      context.reportError(error);
    } finally {
      elements.submit.disabled = false;
    }
  }

  function resetForm() {
    elements.form.reset();
    elements.lifetime.value = String(DEFAULT_JOIN_TOKEN_LIFETIME);
  }

  function stop() {
    refresh.running = false;
    refresh.errorMessage = null;
    stopTimer();
    hideJoinToken();
  }

  fillSelect(
    elements.lifetime,
    JOIN_TOKEN_LIFETIMES.map(([seconds, label]) => [String(seconds), label]),
    String(DEFAULT_JOIN_TOKEN_LIFETIME),
  );
  elements.form.addEventListener("submit", onSubmit);
  elements.copyToken.addEventListener("click", () => copyField(elements.value, "join token"));
  elements.copyCommand.addEventListener("click", () => copyField(elements.command, "command"));
  elements.dismiss.addEventListener("click", hideJoinToken);
  hideJoinToken();

  return {
    /** Loads the nodes and reloads them every 5 s until the user leaves the section. */
    show() {
      refresh.running = true;
      refreshNodes();
    },
    /** Stops the reload and removes a join token still on display. */
    leave() {
      stop();
    },
    /** Stops the reload and empties the list, for a sign-out or an organisation switch. */
    reset() {
      stop();
      nodeRows.clear();
      elements.body.replaceChildren();
      elements.table.hidden = true;
      elements.empty.hidden = true;
      resetForm();
    },
  };
}
