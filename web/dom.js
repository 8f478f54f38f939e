// DOM helpers and the paged list shared by the portal's sections.

/**
 * Creates an element. `options` may set `className`, `text` (textContent) and `attributes`; the
 * remaining arguments are appended as children.
 */
export function createElement(tag, options = {}, ...children) {
  const node = document.createElement(tag);
  if (options.className) {
    node.className = options.className;
  }
  if (options.text !== undefined && options.text !== null) {
    node.textContent = String(options.text);
  }
  for (const [name, value] of Object.entries(options.attributes ?? {})) {
    node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

/**
 * Creates a `<button type="button">` showing `label`. `ariaLabel`, when given, must start with
 * the visible label so speech input can still name the button.
 */
export function createButton(label, onClick, { className, ariaLabel } = {}) {
  const button = createElement("button", { className, text: label, attributes: { type: "button" } });
  if (ariaLabel) {
    button.setAttribute("aria-label", ariaLabel);
  }
  button.addEventListener("click", () => onClick(button));
  return button;
}

export function createCell(text) {
  return createElement("td", { text: text ?? "" });
}

/** Creates a `<select>` with one option per `[value, label]` pair, `selected` chosen. */
export function createSelect(choices, selected, { ariaLabel } = {}) {
  const select = createElement("select");
  if (ariaLabel) {
    select.setAttribute("aria-label", ariaLabel);
  }
  for (const [value, label] of choices) {
    select.append(new Option(label, value, false, value === selected));
  }
  return select;
}

/** Replaces the options of `select` with `choices` (`[value, label]` pairs), keeping `selected`. */
export function fillSelect(select, choices, selected) {
  select.replaceChildren(...choices.map(([value, label]) => new Option(label, value, false, value === selected)));
}

/** Formats an RFC 3339 time in the browser's locale, or returns `fallback` when there is none. */
export function formatDateTime(value, fallback = "") {
  if (value === null || value === undefined || value === "") {
    return fallback;
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    return String(value);
  }
  return date.toLocaleString();
}

/** Creates a list of small tags showing `labels` (`{key: value}`) as `key=value`. */
export function createLabelTags(labels) {
  const list = createElement("ul", { className: "tags", attributes: { "aria-label": "Labels" } });
  for (const [key, value] of Object.entries(labels ?? {})) {
    list.append(createElement("li", { className: "tag", text: `${key}=${value}` }));
  }
  return list;
}

/**
 * A list the API returns page by page (`{items, next_cursor}`). `reload` fetches the first page
 * and `loadMore` appends the next one, with the "Load more" button shown only while the server
 * reports a `next_cursor`. Responses that arrive after a newer reload or a reset are dropped.
 */
export class PagedList {
  /**
   * `fetchPage(cursor)` returns a promise of one page. `render(items, loaded)` draws all items
   * loaded so far. `loaded` is false after a reset, so the section can keep its "no items"
   * message hidden until the first page arrives. `onError(error)` reports a failed request, and
   * `moreButton` is the "Load more" button.
   */
  constructor({ fetchPage, render, onError, moreButton }) {
    this.fetchPage = fetchPage;
    this.render = render;
    this.onError = onError;
    this.moreButton = moreButton;
    this.items = [];
    this.nextCursor = null;
    this.loaded = false;
    // Incremented by every reload and reset, so a response for an older request is dropped.
    this.generation = 0;
    moreButton.addEventListener("click", () => this.loadMore());
    moreButton.hidden = true;
  }

  /** Removes the items without fetching, for example after the organisation changed. */
  reset() {
    this.generation += 1;
    this.items = [];
    this.nextCursor = null;
    this.loaded = false;
    this.moreButton.hidden = true;
    this.render([], false);
  }

  /** Fetches the first page and replaces the items. Resolves to false when the request failed. */
  async reload() {
    this.generation += 1;
    const generation = this.generation;
    try {
      const page = await this.fetchPage(null);
      if (generation !== this.generation) {
        return false;
      }
      this.items = page?.items ?? [];
      this.nextCursor = page?.next_cursor ?? null;
      this.loaded = true;
      this.update();
      return true;
    } catch (error) {
      if (generation === this.generation) {
        this.onError(error);
      }
      return false;
    }
  }

  /** Fetches the page after the last one loaded and appends it. */
  async loadMore() {
    if (!this.nextCursor) {
      return;
    }
    const generation = this.generation;
    this.moreButton.disabled = true;
    try {
      const page = await this.fetchPage(this.nextCursor);
      if (generation !== this.generation) {
        return;
      }
      this.items = this.items.concat(page?.items ?? []);
      this.nextCursor = page?.next_cursor ?? null;
      this.update();
    } catch (error) {
      if (generation === this.generation) {
        this.onError(error);
      }
    } finally {
      this.moreButton.disabled = false;
    }
  }

  update() {
    this.moreButton.hidden = !this.nextCursor;
    this.render(this.items, true);
  }
}

/**
 * Fetches every page of a list, for choices such as the credential of a target. Stops after
 * `maxPages` pages so a server that always returns a cursor cannot loop forever.
 */
export async function fetchAllPages(fetchPage, maxPages = 50) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page += 1) {
    const response = await fetchPage(cursor);
    items.push(...(response?.items ?? []));
    cursor = response?.next_cursor ?? null;
    if (!cursor) {
      break;
    }
  }
  return items;
}
