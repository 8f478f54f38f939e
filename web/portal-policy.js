// Portal section "Policy" (permission manage_policies): the organisation's one policy document.
// Saving sends the version the text was loaded from, so a save over someone else's newer
// version is rejected with 409 instead of overwriting it.

import { ApiError, getDefaultPolicy, getPolicy, savePolicy, validatePolicy } from "./api.js";
import { createElement, formatDateTime } from "./dom.js";

/**
 * Returns the offset in `text` of a 1-based `line` and `column`, clamped to the text.
 * NOTE: columns are counted in UTF-16 code units. If the server counts bytes or code points, a
 * position after a non-ASCII character on the same line lands a little off.
 */
export function offsetOfPosition(text, line, column) {
  const lines = text.split("\n");
  const lineIndex = Math.min(Math.max(line, 1), lines.length) - 1;
  let offset = 0;
  for (let index = 0; index < lineIndex; index += 1) {
    offset += lines[index].length + 1;
  }
  return offset + Math.min(Math.max(column, 1) - 1, lines[lineIndex].length);
}

/** Formats one policy problem as "line L, column C: message". */
export function formatProblem(problem) {
  return `line ${problem.line}, column ${problem.column}: ${problem.message}`;
}

/** Creates the section. `context` is the portal context described in portal.js. */
export function createPolicySection(context) {
  const elements = {
    meta: document.getElementById("policy-meta"),
    text: document.getElementById("policy-text"),
    unsaved: document.getElementById("policy-unsaved"),
    validate: document.getElementById("policy-validate"),
    save: document.getElementById("policy-save"),
    loadDefault: document.getElementById("policy-default"),
    reload: document.getElementById("policy-reload"),
    conflict: document.getElementById("policy-conflict"),
    loadNewer: document.getElementById("policy-load-newer"),
    result: document.getElementById("policy-result"),
    problems: document.getElementById("policy-problems"),
  };

  const state = {
    // The saved policy the text was loaded from: {text, version, updated_at, updated_by}, or null.
    saved: null,
    // Incremented by every load and reset, so an older response is dropped.
    generation: 0,
  };

  function hasUnsavedChanges() {
    return state.saved !== null && elements.text.value !== state.saved.text;
  }

  function updateUnsaved() {
    elements.unsaved.hidden = !hasUnsavedChanges();
  }

  function setBusy(busy) {
    for (const button of [elements.validate, elements.save, elements.loadDefault, elements.reload]) {
      button.disabled = busy;
    }
  }

  function showResult(message, problems = []) {
    elements.result.textContent = message;
    elements.problems.replaceChildren(...problems.map(createProblemItem));
    elements.problems.hidden = problems.length === 0;
  }

  /** Lists one problem as a button that moves the cursor to its position in the text. */
  function createProblemItem(problem) {
    const button = createElement("button", {
      className: "link-button",
      text: formatProblem(problem),
      attributes: { type: "button" },
    });
    button.addEventListener("click", () => {
      const offset = offsetOfPosition(elements.text.value, problem.line, problem.column);
      elements.text.focus();
      elements.text.setSelectionRange(offset, offset);
    });
    return createElement("li", {}, button);
  }

  function showSaved(policy) {
    state.saved = policy;
    elements.text.value = policy.text ?? "";
    const by = policy.updated_by ? ` by ${policy.updated_by}` : "";
    const at = policy.updated_at ? `, saved ${formatDateTime(policy.updated_at)}${by}` : "";
    elements.meta.textContent = `Version ${policy.version}${at}.`;
    elements.conflict.hidden = true;
    updateUnsaved();
  }

  /** Loads the saved policy into the editor. Resolves to whether it did. */
  async function load() {
    state.generation += 1;
    const generation = state.generation;
    setBusy(true);
    try {
      const policy = await getPolicy();
      if (generation !== state.generation) {
        return false;
      }
      showSaved(policy);
      showResult("");
      return true;
    } catch (error) {
      if (generation === state.generation) {
        context.reportError(error);
      }
      return false;
    } finally {
      if (generation === state.generation) {
        setBusy(false);
      }
    }
  }

  function confirmDiscard(action) {
    return !hasUnsavedChanges() || window.confirm(`Discard your unsaved changes to the policy and ${action}?`);
  }

  async function onValidate() {
    context.clearError();
    setBusy(true);
    try {
      const outcome = await validatePolicy(elements.text.value);
      const problems = outcome?.problems ?? [];
      if (outcome?.valid) {
        showResult("The policy is valid.");
      } else {
        showResult(`The policy has ${problems.length === 1 ? "1 problem" : `${problems.length} problems`}.`, problems);
      }
    } catch (error) {
      context.reportError(error);
    } finally {
      setBusy(false);
    }
  }

  async function onSave() {
    if (!state.saved) {
      return;
    }
    context.clearError();
    setBusy(true);
    const generation = state.generation;
    try {
      const policy = await savePolicy(elements.text.value, state.saved.version);
      if (generation === state.generation) {
        showSaved(policy);
        showResult(`Saved version ${policy.version}.`);
      }
    } catch (error) {
      if (generation !== state.generation) {
        return;
      }
      context.reportError(error);
      if (error instanceof ApiError && error.status === 422) {
        const problems = error.problems ?? [];
        showResult("The policy was not saved, and the previous version stays in force.", problems);
      } else if (error instanceof ApiError && error.status === 409) {
        showResult("");
        elements.conflict.hidden = false;
      }
    } finally {
      setBusy(false);
    }
  }

  async function onLoadDefault() {
    if (!confirmDiscard("load the default policy")) {
      return;
    }
    context.clearError();
    setBusy(true);
    try {
      const policy = await getDefaultPolicy();
      elements.text.value = policy?.text ?? "";
      updateUnsaved();
      showResult("Loaded the default policy. Save to apply it.");
    } catch (error) {
      context.reportError(error);
    } finally {
      setBusy(false);
    }
  }

  async function onReload() {
    if (!confirmDiscard("reload the saved policy")) {
      return;
    }
    context.clearError();
    await load();
  }

  async function onLoadNewer() {
    context.clearError();
    if (!(await load())) {
      return;
    }
    context.showStatus(`Loaded version ${state.saved?.version} of the policy. Your edits were discarded.`);
  }

  elements.text.addEventListener("input", updateUnsaved);
  elements.validate.addEventListener("click", onValidate);
  elements.save.addEventListener("click", onSave);
  elements.loadDefault.addEventListener("click", onLoadDefault);
  elements.reload.addEventListener("click", onReload);
  elements.loadNewer.addEventListener("click", onLoadNewer);

  return {
    /** Loads the policy the first time the section opens. Later visits keep unsaved edits. */
    show() {
      if (state.saved === null) {
        load();
      }
    },
    reset() {
      state.generation += 1;
      state.saved = null;
      elements.text.value = "";
      elements.meta.textContent = "";
      elements.conflict.hidden = true;
      updateUnsaved();
      showResult("");
      setBusy(false);
    },
    hasUnsavedChanges,
  };
}
