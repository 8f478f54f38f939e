// Portal section "API keys" (permission manage_api_keys): the organisation's keys, a form that
// creates one, and revocation. A new key is shown once, in a read-only field, and removed from
// the page when the user dismisses it, leaves the section or signs out.

import { createApiKey, listApiKeys, revokeApiKey, ROLES } from "./api.js";
import { createButton, createCell, createElement, fillSelect, formatDateTime, PagedList } from "./dom.js";

/** Creates the section. `context` is the portal context described in portal.js. */
export function createKeysSection(context) {
  const elements = {
    table: document.getElementById("keys-table"),
    body: document.getElementById("keys-body"),
    empty: document.getElementById("keys-empty"),
    more: document.getElementById("keys-more"),
    form: document.getElementById("key-form"),
    name: document.getElementById("key-name"),
    role: document.getElementById("key-role"),
    expiry: document.getElementById("key-expiry"),
    submit: document.getElementById("key-submit"),
    created: document.getElementById("key-created"),
    createdLabel: document.getElementById("key-value-label"),
    value: document.getElementById("key-value"),
    copy: document.getElementById("key-copy"),
    copyResult: document.getElementById("key-copy-result"),
    dismiss: document.getElementById("key-dismiss"),
  };

  const keys = new PagedList({
    fetchPage: (cursor) => listApiKeys({ cursor }),
    render,
    onError: (error) => context.reportError(error),
    moreButton: elements.more,
  });

  function render(items, loaded) {
    elements.table.hidden = items.length === 0;
    elements.empty.hidden = !loaded || items.length > 0;
    elements.body.replaceChildren(...items.map(createRow));
  }

  function keyStatus(key) {
    if (key.revoked_at) {
      return "revoked";
    }
    if (key.expires_at && Date.parse(key.expires_at) <= Date.now()) {
      return "expired";
    }
    return "active";
  }

  function createRow(key) {
    const status = keyStatus(key);
    const statusCell = createElement("td");
    statusCell.append(createElement("span", { className: `badge status-${status}`, text: status }));
    const actions = createElement("div", { className: "actions" });
    if (status !== "revoked") {
      actions.append(
        createButton("Revoke", (button) => confirmAndRevoke(key, button), {
          className: "danger",
          ariaLabel: `Revoke ${key.name}`,
        }),
      );
    }
    const row = createElement(
      "tr",
      {},
      createCell(key.name),
      createCell(key.role),
      createCell(formatDateTime(key.created_at)),
      createCell(formatDateTime(key.expires_at, "never")),
      createCell(formatDateTime(key.last_used_at, "never")),
      statusCell,
      createElement("td", {}, actions),
    );
    row.dataset.keyId = key.id;
    return row;
  }

  /** Removes the one-time key display, and the key with it, from the page. */
  function hideCreatedKey() {
    elements.value.value = "";
    elements.copyResult.textContent = "";
    elements.created.hidden = true;
  }

  function showCreatedKey(created) {
    elements.createdLabel.textContent = `API key ${created.name}`;
    elements.value.value = created.key;
    elements.copyResult.textContent = "";
    elements.created.hidden = false;
    elements.value.focus();
    elements.value.select();
  }

  async function onCopy() {
    try {
      await navigator.clipboard.writeText(elements.value.value);
      elements.copyResult.textContent = "Copied.";
    } catch {
      // The clipboard API needs a secure context and permission, so leave the key selected.
      elements.value.focus();
      elements.value.select();
      elements.copyResult.textContent = "Copying failed: press Ctrl+C to copy the selected key.";
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    context.clearError();
    hideCreatedKey();
    const expiryText = elements.expiry.value.trim();
    let expiresInDays = null;
    if (expiryText) {
      expiresInDays = Number(expiryText);
      if (!Number.isInteger(expiresInDays) || expiresInDays < 1) {
        context.showError(`Expiry must be a whole number of days, at least 1, not "${expiryText}".`);
        elements.expiry.focus();
        return;
      }
    }
    elements.submit.disabled = true;
    try {
      const created = await createApiKey(elements.name.value.trim(), elements.role.value, expiresInDays);
      elements.form.reset();
      elements.role.value = "member";
      showCreatedKey(created);
      await keys.reload();
    } catch (error) {
      context.reportError(error);
    } finally {
      elements.submit.disabled = false;
    }
  }

  async function confirmAndRevoke(key, button) {
    if (!window.confirm(`Revoke API key ${key.name}? Programs using it stop working at once.`)) {
      return;
    }
    context.clearError();
    button.disabled = true;
    try {
      await revokeApiKey(key.id);
      context.showStatus(`Revoked API key ${key.name}.`);
      await keys.reload();
    } catch (error) {
      button.disabled = false;
      context.reportError(error, { onNotFound: () => keys.reload() });
    }
  }

  fillSelect(
    elements.role,
    // The server never gives an API key the owner role.
    ROLES.filter((role) => role !== "owner").map((role) => [role, role]),
    "member",
  );
  elements.form.addEventListener("submit", onSubmit);
  elements.copy.addEventListener("click", onCopy);
  elements.dismiss.addEventListener("click", hideCreatedKey);
  hideCreatedKey();

  return {
    show() {
      keys.reload();
    },
    /** Removes a key still on display when the user leaves the section. */
    leave() {
      hideCreatedKey();
    },
    reset() {
      hideCreatedKey();
      keys.reset();
      elements.form.reset();
    },
  };
}
