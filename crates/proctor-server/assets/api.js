// What every page shares: requests to /v1, the live event stream, and DOM building.
// Data only ever reaches the page as text nodes and attribute values, never as markup.

/** The states after which an execution no longer changes. */
export const FINAL_STATES = new Set(["succeeded", "failed", "cancelled"]);

/** An answer of the API that is not a success: its canonical code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/**
 * A request to the API with the session cookie; JSON in, JSON out. A state-changing
 * request sends its body as JSON (the server checks its Origin). Without a valid session,
 * the browser goes to the login page.
 */
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.status === 401) {
    window.location.assign("/login");
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || `HTTP ${response.status}`,
      error.message || text.slice(0, 300) || response.statusText,
    );
  }
  return data;
}

/** A query string of the non-empty values of `params`, with its `?`, or "". */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** The URL of a World file, each segment of its world path percent-encoded. */
export function worldUrl(path, { download = false } = {}) {
  const segments = String(path).replace(/^\/+/, "").split("/").map(encodeURIComponent);
  return `/v1/world/${segments.join("/")}${download ? "?download=1" : ""}`;
}

// The one indicator of the live stream in the header.
function setLive(state) {
  const live = document.getElementById("live");
  if (!live) return;
  live.textContent = state;
  live.className = `live live-${state}`;
}

/**
 * Listens to /v1/events (`ledger` and `job` events, their data parsed) until the returned
 * function is called. `onOpen` runs each time the stream (re)connects, so a page can read
 * again whatever it may have missed meanwhile.
 */
export function listen(params, onEvent, onOpen = () => {}) {
  const source = new EventSource(`/v1/events${query(params)}`);
  source.addEventListener("open", () => {
    setLive("live");
    onOpen();
  });
  source.addEventListener("error", () => setLive("reconnecting"));
  for (const kind of ["ledger", "job"]) {
    source.addEventListener(kind, (message) => {
      let data = null;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      onEvent(kind, data);
    });
  }
  return () => {
    source.close();
    setLive("paused");
  };
}

/** `fn` called once, `ms` after the last of a burst of calls. */
export function debounce(fn, ms) {
  let timer = null;
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.setAttribute("class", value);
    else if (name === "text") node.textContent = String(value);
    else if (name === "testid") node.setAttribute("data-testid", value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * An HTML element: `attrs` are attributes (`class`, `testid` for `data-testid`, `text`
 * for its text, `onclick`-style names for listeners), `children` nodes or text.
 */
export function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, as `el`. */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A coloured badge naming a state. */
export function badge(state, attrs = {}) {
  const name = state || "unknown";
  return el("span", { ...attrs, class: `badge state-${name}`, "data-state": name, text: name });
}

/** A value as indented JSON in a `<pre>`. */
export function pretty(value, attrs = {}) {
  return el("pre", { ...attrs, class: "json", text: JSON.stringify(value, null, 2) });
}

/** A timestamp in UTC to the second, as the ledger and the CLI name it; the original in its title. */
export function time(iso) {
  if (!iso) return el("span", { class: "muted", text: "—" });
  const date = new Date(iso);
  const text = Number.isNaN(date.getTime()) ? iso : `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
  return el("time", { datetime: iso, title: iso, text });
}

/** A long identifier (digest, hash, CID) shortened, whole in its title. */
export function short(value, keep = 16) {
  if (!value) return el("span", { class: "muted", text: "—" });
  const text = String(value);
  return el("code", { class: "id", title: text, text: text.length > keep ? `${text.slice(0, keep)}…` : text });
}

/** A byte count for people. */
export function bytes(count) {
  if (typeof count !== "number") return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A failure shown where it happened. */
export function errorBox(error, attrs = {}) {
  return el("p", { ...attrs, class: "error", role: "alert", text: error instanceof Error ? error.message : String(error) });
}

/** A page section with a heading. */
export function section(title, ...children) {
  return el("section", { class: "card" }, el("h2", { text: title }), ...children);
}

/** Replaces the children of `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  build(node, {}, children);
  return node;
}

/** A link inside the dashboard (followed without reloading the page). */
export function link(href, text, attrs = {}) {
  return el("a", { ...attrs, href, text });
}

/** Shows `path` as if its link were followed: a history entry, then that page. */
export function navigate(path) {
  window.history.pushState(null, "", path);
  window.dispatchEvent(new PopStateEvent("popstate"));
}
