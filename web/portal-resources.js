// Portal section "Resources" (permission manage_targets): the organisation's targets and the
// credentials they log in with. Credential passwords are write-only: the API never returns them
// and the form clears the field after every request.

import {
  createCredential,
  createTarget,
  deleteCredential,
  deleteTarget,
  listCredentials,
  listTargets,
  updateCredential,
  updateTarget,
} from "./api.js";
import {
  createButton,
  createCell,
  createElement,
  createLabelTags,
  fetchAllPages,
  fillSelect,
  formatDateTime,
  PagedList,
} from "./dom.js";

/**
 * Parses labels written as `key=value` pairs separated by commas into `{key: value}`. Spaces
 * around keys and values are dropped. Throws an Error naming the entry that has no key or `=`,
 * or a key given twice.
 */
export function parseLabels(text) {
  const labels = {};
  for (const part of text.split(",")) {
    const entry = part.trim();
    if (!entry) {
      continue;
    }
    const separator = entry.indexOf("=");
    const key = separator < 0 ? "" : entry.slice(0, separator).trim();
    if (!key) {
      throw new Error(`Invalid label "${entry}": write labels as key=value, separated by commas.`);
    }
    if (Object.hasOwn(labels, key)) {
      throw new Error(`Label "${key}" is given twice.`);
    }
    labels[key] = entry.slice(separator + 1).trim();
  }
  return labels;
}

/** Formats `{key: value}` labels as the text `parseLabels` reads. */
export function formatLabels(labels) {
  return Object.entries(labels ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .join(", ");
}

/** A form value that cannot be sent, with the input to focus. */
class FormError extends Error {
  constructor(message, input) {
    super(message);
    this.input = input;
  }
}

/** Creates the section. `context` is the portal context described in portal.js. */
export function createResourcesSection(context) {
  const elements = {
    targetsTable: document.getElementById("resource-targets-table"),
    targetsBody: document.getElementById("resource-targets-body"),
    targetsEmpty: document.getElementById("resource-targets-empty"),
    targetsMore: document.getElementById("resource-targets-more"),
    targetForm: document.getElementById("target-form"),
    targetFormTitle: document.getElementById("target-form-title"),
    targetName: document.getElementById("target-name"),
    targetHost: document.getElementById("target-host"),
    targetPort: document.getElementById("target-port"),
    targetSecurity: document.getElementById("target-security"),
    targetLabels: document.getElementById("target-labels"),
    targetMaxWidth: document.getElementById("target-max-width"),
    targetMaxHeight: document.getElementById("target-max-height"),
    targetCredential: document.getElementById("target-credential"),
    targetCertificate: document.getElementById("target-cert"),
    targetSubmit: document.getElementById("target-submit"),
    targetCancel: document.getElementById("target-cancel"),
    credentialsTable: document.getElementById("credentials-table"),
    credentialsBody: document.getElementById("credentials-body"),
    credentialsEmpty: document.getElementById("credentials-empty"),
    credentialsMore: document.getElementById("credentials-more"),
    credentialForm: document.getElementById("credential-form"),
    credentialFormTitle: document.getElementById("credential-form-title"),
    credentialName: document.getElementById("credential-name"),
    credentialUsername: document.getElementById("credential-username"),
    credentialPassword: document.getElementById("credential-password"),
    credentialPasswordHelp: document.getElementById("credential-password-help"),
    credentialDomain: document.getElementById("credential-domain"),
    credentialSubmit: document.getElementById("credential-submit"),
    credentialCancel: document.getElementById("credential-cancel"),
  };

  // The target or credential the form edits, or null while it creates a new one.
  let editingTarget = null;
  let editingCredential = null;

  const targets = new PagedList({
    fetchPage: (cursor) => listTargets({ cursor }),
    render: renderTargets,
    onError: (error) => context.reportError(error),
    moreButton: elements.targetsMore,
  });
  const credentials = new PagedList({
    fetchPage: (cursor) => listCredentials({ cursor }),
    render: renderCredentials,
    onError: (error) => context.reportError(error),
    moreButton: elements.credentialsMore,
  });

  function renderTargets(items, loaded) {
    elements.targetsTable.hidden = items.length === 0;
    elements.targetsEmpty.hidden = !loaded || items.length > 0;
    elements.targetsBody.replaceChildren(...items.map(createTargetRow));
  }

  function createTargetRow(target) {
    const size = target.max_width && target.max_height ? `${target.max_width}×${target.max_height}` : "—";
    const row = createElement(
      "tr",
      {},
      createCell(target.name),
      createCell(`${target.host}:${target.port}`),
      createCell(target.security),
      createElement("td", {}, createLabelTags(target.labels)),
      createCell(target.credential_name ?? target.credential_id ?? ""),
      createCell(size),
      createElement(
        "td",
        {},
        createElement(
          "div",
          { className: "actions" },
          createButton("Edit", () => editTarget(target), { ariaLabel: `Edit target ${target.name}` }),
          createButton("Delete", (button) => confirmAndDeleteTarget(target, button), {
            className: "danger",
            ariaLabel: `Delete target ${target.name}`,
          }),
        ),
      ),
    );
    row.dataset.targetId = target.id;
    return row;
  }

  function renderCredentials(items, loaded) {
    elements.credentialsTable.hidden = items.length === 0;
    elements.credentialsEmpty.hidden = !loaded || items.length > 0;
    elements.credentialsBody.replaceChildren(...items.map(createCredentialRow));
  }

  function createCredentialRow(credential) {
    const row = createElement(
      "tr",
      {},
      createCell(credential.name),
      createCell(credential.username),
      createCell(credential.domain ?? ""),
      createCell(formatDateTime(credential.updated_at ?? credential.created_at)),
      createElement(
        "td",
        {},
        createElement(
          "div",
          { className: "actions" },
          createButton("Edit", () => editCredential(credential), {
            ariaLabel: `Edit credential ${credential.name}`,
          }),
          createButton("Delete", (button) => confirmAndDeleteCredential(credential, button), {
            className: "danger",
            ariaLabel: `Delete credential ${credential.name}`,
          }),
        ),
      ),
    );
    row.dataset.credentialId = credential.id;
    return row;
  }

  /** Loads every credential into the target form's choice, keeping the current selection. */
  async function loadCredentialChoices() {
    const selected = elements.targetCredential.value || editingTarget?.credential_id || "";
    try {
      const items = await fetchAllPages((cursor) => listCredentials({ cursor, limit: 200 }));
      const choices = items.map((credential) => [credential.id, `${credential.name} (${credential.username})`]);
      fillSelect(elements.targetCredential, [["", items.length ? "Choose a credential" : "No credentials yet"], ...choices], selected);
    } catch (error) {
      context.reportError(error);
    }
  }

  function resetTargetForm() {
    editingTarget = null;
    elements.targetForm.reset();
    elements.targetPort.value = "3389";
    elements.targetSecurity.value = "auto";
    elements.targetFormTitle.textContent = "New target";
    elements.targetSubmit.textContent = "Create target";
    elements.targetCancel.hidden = true;
  }

  function editTarget(target) {
    context.clearError();
    editingTarget = target;
    elements.targetName.value = target.name;
    elements.targetHost.value = target.host;
    elements.targetPort.value = String(target.port);
    elements.targetSecurity.value = target.security;
    elements.targetLabels.value = formatLabels(target.labels);
    elements.targetMaxWidth.value = target.max_width ?? "";
    elements.targetMaxHeight.value = target.max_height ?? "";
    elements.targetCredential.value = target.credential_id ?? "";
    // The API does not return the pinned certificate, so an empty field keeps the current pin.
    elements.targetCertificate.value = "";
    elements.targetFormTitle.textContent = `Edit target ${target.name}`;
    elements.targetSubmit.textContent = "Save target";
    elements.targetCancel.hidden = false;
    elements.targetName.focus();
  }

  /** Reads an optional whole number of pixels. Returns null for an empty field. */
  function readPixels(input, label) {
    const text = input.value.trim();
    if (!text) {
      return null;
    }
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1) {
      throw new FormError(`${label} must be a whole number of pixels, not "${text}".`, input);
    }
    return value;
  }

  /** Reads the target form into a request body. Throws FormError for a value that cannot be sent. */
  function readTargetForm() {
    const port = Number(elements.targetPort.value);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new FormError(`Port must be between 1 and 65535, not "${elements.targetPort.value}".`, elements.targetPort);
    }

    let labels;
    try {
      labels = parseLabels(elements.targetLabels.value);
    } catch (error) {
      throw new FormError(error.message, elements.targetLabels);
    }
    if (!elements.targetCredential.value) {
      throw new FormError("Choose the credential the target logs in with.", elements.targetCredential);
    }

    const fields = {
      name: elements.targetName.value.trim(),
      host: elements.targetHost.value.trim(),
      port,
      security: elements.targetSecurity.value,
      labels,
      credential_id: elements.targetCredential.value,
    };

    const maxWidth = readPixels(elements.targetMaxWidth, "Max width");
    const maxHeight = readPixels(elements.targetMaxHeight, "Max height");
    // On an edit, null clears a limit. On a create, an empty field leaves it out.
    if (maxWidth !== null || editingTarget) {
      fields.max_width = maxWidth;
    }
    if (maxHeight !== null || editingTarget) {
      fields.max_height = maxHeight;
    }
    const certificate = elements.targetCertificate.value.trim();
    if (certificate) {
      fields.cert_sha256 = certificate;
    }
    return fields;
  }

  async function onTargetSubmit(event) {
    event.preventDefault();
    context.clearError();
    let fields;
    try {
      fields = readTargetForm();
    } catch (error) {
      context.showError(error.message);
      error.input?.focus();
      return;
    }
    elements.targetSubmit.disabled = true;
    try {
      const target = editingTarget ? await updateTarget(editingTarget.id, fields) : await createTarget(fields);
      context.showStatus(editingTarget ? `Saved target ${target.name}.` : `Created target ${target.name}.`);
      resetTargetForm();
      await targets.reload();
    } catch (error) {
      context.reportError(error, {
        onNotFound: () => {
          resetTargetForm();
          targets.reload();
        },
      });
    } finally {
      elements.targetSubmit.disabled = false;
    }
  }

  async function confirmAndDeleteTarget(target, button) {
    if (!window.confirm(`Delete target ${target.name}? Users can no longer open it.`)) {
      return;
    }
    context.clearError();
    button.disabled = true;
    try {
      await deleteTarget(target.id);
      if (editingTarget?.id === target.id) {
        resetTargetForm();
      }
      context.showStatus(`Deleted target ${target.name}.`);
      await targets.reload();
    } catch (error) {
      button.disabled = false;
      context.reportError(error, { onNotFound: () => targets.reload() });
    }
  }

  function resetCredentialForm() {
    editingCredential = null;
    elements.credentialForm.reset();
    elements.credentialPassword.required = true;
    elements.credentialPasswordHelp.textContent = "Write-only: it is never shown again.";
    elements.credentialFormTitle.textContent = "New credential";
    elements.credentialSubmit.textContent = "Create credential";
    elements.credentialCancel.hidden = true;
  }

  function editCredential(credential) {
    context.clearError();
    editingCredential = credential;
    elements.credentialName.value = credential.name;
    elements.credentialUsername.value = credential.username;
    elements.credentialDomain.value = credential.domain ?? "";
    elements.credentialPassword.value = "";
    elements.credentialPassword.required = false;
    elements.credentialPasswordHelp.textContent = "Leave empty to keep the current password.";
    elements.credentialFormTitle.textContent = `Edit credential ${credential.name}`;
    elements.credentialSubmit.textContent = "Save credential";
    elements.credentialCancel.hidden = false;
    elements.credentialName.focus();
  }

  async function onCredentialSubmit(event) {
    event.preventDefault();
    context.clearError();
    const fields = {
      name: elements.credentialName.value.trim(),
      username: elements.credentialUsername.value.trim(),
      domain: elements.credentialDomain.value.trim() || null,
    };
    const password = elements.credentialPassword.value;
    // The password is sent only when typed, so an edit without one keeps the stored password.
    if (password) {
      fields.password = password;
    }
    elements.credentialSubmit.disabled = true;
    try {
      const credential = editingCredential
        ? await updateCredential(editingCredential.id, fields)
        : await createCredential(fields);
      context.showStatus(
        editingCredential ? `Saved credential ${credential.name}.` : `Created credential ${credential.name}.`,
      );
      resetCredentialForm();
      await Promise.all([credentials.reload(), loadCredentialChoices()]);
    } catch (error) {
      context.reportError(error, {
        onNotFound: () => {
          resetCredentialForm();
          credentials.reload();
        },
      });
    } finally {
      elements.credentialPassword.value = "";
      elements.credentialSubmit.disabled = false;
    }
  }

  async function confirmAndDeleteCredential(credential, button) {
    if (!window.confirm(`Delete credential ${credential.name}?`)) {
      return;
    }
    context.clearError();
    button.disabled = true;
    try {
      await deleteCredential(credential.id);
      if (editingCredential?.id === credential.id) {
        resetCredentialForm();
      }
      context.showStatus(`Deleted credential ${credential.name}.`);
      await Promise.all([credentials.reload(), loadCredentialChoices()]);
    } catch (error) {
      // 409 while a target uses the credential: the message names the problem.
      button.disabled = false;
      context.reportError(error, { onNotFound: () => credentials.reload() });
    }
  }

  elements.targetForm.addEventListener("submit", onTargetSubmit);
  elements.targetCancel.addEventListener("click", resetTargetForm);
  elements.credentialForm.addEventListener("submit", onCredentialSubmit);
  elements.credentialCancel.addEventListener("click", resetCredentialForm);
  resetTargetForm();
  resetCredentialForm();

  return {
    show() {
      targets.reload();
      credentials.reload();
      loadCredentialChoices();
    },
    reset() {
      targets.reset();
      credentials.reset();
      resetTargetForm();
      resetCredentialForm();
      fillSelect(elements.targetCredential, [["", "Choose a credential"]], "");
    },
  };
}
