// Portal section "Members" (permission manage_members): the organisation's members with their
// role and status, and a form that adds a member. Only an owner may grant or remove `owner`. The
// server enforces that, and the page only disables the controls it would reject.

import { addMember, listMembers, removeMember, ROLES, updateMember } from "./api.js";
import { createButton, createCell, createElement, createSelect, fillSelect, formatDateTime, PagedList } from "./dom.js";

const MIN_PASSWORD_LENGTH = 12;

/** Creates the section. `context` is the portal context described in portal.js. */
export function createMembersSection(context) {
  const elements = {
    table: document.getElementById("members-table"),
    body: document.getElementById("members-body"),
    empty: document.getElementById("members-empty"),
    more: document.getElementById("members-more"),
    filterRole: document.getElementById("members-filter-role"),
    filterStatus: document.getElementById("members-filter-status"),
    form: document.getElementById("member-form"),
    username: document.getElementById("member-username"),
    role: document.getElementById("member-role"),
    password: document.getElementById("member-password"),
    submit: document.getElementById("member-submit"),
  };

  const members = new PagedList({
    fetchPage: (cursor) =>
      listMembers({ role: elements.filterRole.value, status: elements.filterStatus.value, cursor }),
    render,
    onError: (error) => context.reportError(error),
    moreButton: elements.more,
  });

  fillSelect(elements.filterRole, [["", "Any role"], ...ROLES.map((role) => [role, role])], "");
  fillSelect(
    elements.filterStatus,
    [
      ["", "Any status"],
      ["active", "active"],
      ["disabled", "disabled"],
    ],
    "",
  );

  function actorIsOwner() {
    return context.me()?.org?.role === "owner";
  }

  function render(items, loaded) {
    elements.table.hidden = items.length === 0;
    elements.empty.hidden = !loaded || items.length > 0;
    elements.body.replaceChildren(...items.map(createRow));
  }

  function createRow(member) {
    const self = member.user_id === context.user()?.id;
    const name = createCell(self ? `${member.name} (you)` : member.name);

    const roleSelect = createSelect(
      ROLES.map((role) => [role, role]),
      member.role,
      { ariaLabel: `Role of ${member.name}` },
    );
    const ownerOnly = !actorIsOwner();
    // Only an owner may make someone an owner or change an owner's role.
    roleSelect.querySelector('option[value="owner"]').disabled = ownerOnly;
    roleSelect.disabled = ownerOnly && member.role === "owner";
    roleSelect.addEventListener("change", () => changeRole(member, roleSelect));

    const status = createElement("td");
    status.append(createElement("span", { className: `badge status-${member.status}`, text: member.status }));

    const disabled = member.status === "disabled";
    const toggle = createButton(
      disabled ? "Enable" : "Disable",
      (button) => setDisabled(member, !disabled, button),
      { ariaLabel: `${disabled ? "Enable" : "Disable"} ${member.name}` },
    );
    const remove = createButton("Remove", (button) => confirmAndRemove(member, button), {
      className: "danger",
      ariaLabel: `Remove ${member.name}`,
    });
    if (ownerOnly && member.role === "owner") {
      toggle.disabled = true;
      remove.disabled = true;
    }

    const row = createElement(
      "tr",
      {},
      name,
      createElement("td", {}, roleSelect),
      status,
      createCell(formatDateTime(member.created_at)),
      createElement("td", {}, createElement("div", { className: "actions" }, toggle, remove)),
    );
    row.dataset.userId = member.user_id;
    return row;
  }

  /** Replaces `member` in the loaded list with the server's `updated` copy and redraws. */
  function replaceMember(member, updated) {
    members.items = members.items.map((item) => (item.user_id === member.user_id ? updated : item));
    render(members.items, true);
  }

  async function changeRole(member, select) {
    context.clearError();
    select.disabled = true;
    try {
      const updated = await updateMember(member.user_id, { role: select.value });
      replaceMember(member, updated);
      context.showStatus(`${member.name} is now ${updated.role}.`);
    } catch (error) {
      select.value = member.role;
      select.disabled = false;
      context.reportError(error, { onNotFound: () => members.reload() });
    }
  }

  async function setDisabled(member, disabled, button) {
    context.clearError();
    button.disabled = true;
    try {
      const updated = await updateMember(member.user_id, { disabled });
      replaceMember(member, updated);
      context.showStatus(`${member.name} is ${updated.status}.`);
    } catch (error) {
      button.disabled = false;
      context.reportError(error, { onNotFound: () => members.reload() });
    }
  }

  async function confirmAndRemove(member, button) {
    if (!window.confirm(`Remove ${member.name} from this organisation? Their account stays.`)) {
      return;
    }
    context.clearError();
    button.disabled = true;
    try {
      await removeMember(member.user_id);
      context.showStatus(`Removed ${member.name}.`);
      await members.reload();
    } catch (error) {
      button.disabled = false;
      context.reportError(error, { onNotFound: () => members.reload() });
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    context.clearError();
    const username = elements.username.value.trim();
    const password = elements.password.value;
    if (password && password.length < MIN_PASSWORD_LENGTH) {
      context.showError(`The initial password must have at least ${MIN_PASSWORD_LENGTH} characters.`);
      elements.password.focus();
      return;
    }
    elements.submit.disabled = true;
    try {
      const member = await addMember(username, elements.role.value, password);
      elements.form.reset();
      elements.role.value = "member";
      context.showStatus(`Added ${member.name} as ${member.role}.`);
      await members.reload();
    } catch (error) {
      context.reportError(error);
    } finally {
      elements.password.value = "";
      elements.submit.disabled = false;
    }
  }

  function fillRoleChoices() {
    fillSelect(
      elements.role,
      ROLES.map((role) => [role, role]),
      "member",
    );
    elements.role.querySelector('option[value="owner"]').disabled = !actorIsOwner();
  }

  elements.form.addEventListener("submit", onSubmit);
  elements.filterRole.addEventListener("change", () => members.reload());
  elements.filterStatus.addEventListener("change", () => members.reload());

  return {
    show() {
      fillRoleChoices();
      members.reload();
    },
    reset() {
      members.reset();
      elements.form.reset();
      elements.filterRole.value = "";
      elements.filterStatus.value = "";
    },
  };
}
