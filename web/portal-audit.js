// Portal section "Audit" (permission read_audit): the organisation's audit records, newest
// first, with filters and a check of the records' hash chain.

import { listAudit, verifyAudit } from "./api.js";
import { createCell, createElement, formatDateTime, PagedList } from "./dom.js";

/** Creates the section. `context` is the portal context described in portal.js. */
export function createAuditSection(context) {
  const elements = {
    filterForm: document.getElementById("audit-filter"),
    filterAction: document.getElementById("audit-action"),
    filterResult: document.getElementById("audit-result"),
    table: document.getElementById("audit-table"),
    body: document.getElementById("audit-body"),
    empty: document.getElementById("audit-empty"),
    more: document.getElementById("audit-more"),
    verify: document.getElementById("audit-verify"),
    verifyResult: document.getElementById("audit-verify-result"),
  };

  const records = new PagedList({
    fetchPage: (cursor) =>
      listAudit({ action: elements.filterAction.value.trim(), result: elements.filterResult.value, cursor }),
    render,
    onError: (error) => context.reportError(error),
    moreButton: elements.more,
  });

  function render(items, loaded) {
    elements.table.hidden = items.length === 0;
    elements.empty.hidden = !loaded || items.length > 0;
    elements.body.replaceChildren(...items.map(createRow));
  }

  function createRow(record) {
    const object = [record.object_kind, record.object_id].filter(Boolean).join(" ");
    const result = createElement("td");
    result.append(createElement("span", { className: `badge result-${record.result}`, text: record.result }));
    const row = createElement(
      "tr",
      {},
      createCell(formatDateTime(record.at)),
      createCell(record.actor_name ?? record.actor_id ?? "system"),
      createCell(record.action),
      createCell(object),
      result,
      createCell(record.reason ?? ""),
    );
    row.dataset.seq = String(record.seq);
    row.title = `Record ${record.seq}`;
    return row;
  }

  async function onVerify() {
    context.clearError();
    elements.verify.disabled = true;
    elements.verifyResult.textContent = "Verifying…";
    elements.verifyResult.className = "verify-result";
    try {
      const outcome = await verifyAudit();
      const checked = `${outcome.checked} ${outcome.checked === 1 ? "record" : "records"} checked`;
      if (outcome.ok) {
        elements.verifyResult.textContent = `The hash chain is intact (${checked}).`;
        elements.verifyResult.classList.add("verify-ok");
      } else {
        elements.verifyResult.textContent = `The hash chain is broken at record ${outcome.first_bad_seq} (${checked}).`;
        elements.verifyResult.classList.add("verify-failed");
      }
    } catch (error) {
      elements.verifyResult.textContent = "";
      context.reportError(error);
    } finally {
      elements.verify.disabled = false;
    }
  }

  elements.filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    context.clearError();
    records.reload();
  });
  elements.filterResult.addEventListener("change", () => records.reload());
  elements.verify.addEventListener("click", onVerify);

  return {
    show() {
      records.reload();
    },
    reset() {
      records.reset();
      elements.filterForm.reset();
      elements.verifyResult.textContent = "";
      elements.verifyResult.className = "verify-result";
    },
  };
}
