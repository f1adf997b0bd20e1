// The dashboard's entry: routes on location.pathname to a page, follows links inside the
// dashboard without reloading, and stops a page's live updates when another is shown.

import { errorBox, navigate } from "./api.js";
import { executionsPage, executionPage } from "./executions.js";
import { plansPage, planPage } from "./plans.js";
import { ledgerPage, chainPage } from "./ledger.js";
import { processorsPage } from "./processors.js";

// Each route: a path pattern, the nav entry it belongs to, and the page it shows. A page
// is called with the main element and the path's parts, and returns a function that stops
// its live updates.
const ROUTES = [
  [/^\/(?:executions\/?)?$/, "executions", (main) => executionsPage(main)],
  [/^\/executions\/([^/]+)$/, "executions", (main, id) => executionPage(main, id)],
  [/^\/plans\/?$/, "plans", (main) => plansPage(main)],
  [/^\/plans\/([^/]+)$/, "plans", (main, key) => planPage(main, key)],
  [/^\/ledger\/?$/, "ledger", (main) => ledgerPage(main)],
  [/^\/ledger\/([^/]+)$/, "ledger", (main, plan) => chainPage(main, plan)],
  [/^\/processors\/?$/, "processors", (main) => processorsPage(main)],
];

let stopPage = () => {};

function show() {
  stopPage();
  stopPage = () => {};
  const main = document.getElementById("main");
  main.replaceChildren();
  const path = window.location.pathname;
  for (const [pattern, nav, page] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    for (const entry of document.querySelectorAll("[data-nav]")) {
      entry.classList.toggle("active", entry.dataset.nav === nav);
    }
    const parts = match.slice(1);
    let decoded;
    try {
      decoded = parts.map(decodeURIComponent);
    } catch {
      main.append(errorBox(`A malformed address: ${path}`));
      return;
    }
    const heading = nav.charAt(0).toUpperCase() + nav.slice(1);
    document.title = [...decoded, heading, "proctor"].join(" · ");
    stopPage = page(main, ...decoded) || (() => {});
    return;
  }
  main.append(errorBox(`No page at ${path}`));
}


document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = event.target.closest("a[href]");
  if (!anchor || anchor.target || anchor.hasAttribute("download")) return;
  const url = new URL(anchor.href, window.location.href);
  if (url.origin !== window.location.origin) return;
  if (url.pathname.startsWith("/v1/") || url.pathname.startsWith("/assets/")) return;
  event.preventDefault();
  if (url.pathname + url.search !== window.location.pathname + window.location.search) {
    navigate(url.pathname + url.search);
  }
});

// `navigate` (api.js) announces a new path as the browser's history does.
window.addEventListener("popstate", show);
show();
