// The ledger: its plans, and one plan's hash chain with the chain's verification.

import { api, badge, debounce, el, errorBox, fill, link, listen, pretty, query, section, short } from "./api.js";
import { events } from "./executions.js";

const CHAIN_PAGE = 500;

/** `/ledger`: each plan's chain, with its length. */
export function ledgerPage(main) {
  const body = el("tbody");
  const status = el("div");
  main.append(
    el("h1", { text: "Ledger" }),
    section(
      "Chains",
      el("p", { class: "muted", text: "Each plan keeps its own hash chain; open one to see its events and verify it." }),
      status,
      el(
        "table",
        { class: "grid", testid: "ledger-plans" },
        el("thead", {}, el("tr", {}, ["Plan", "Events", "State"].map((h) => el("th", { text: h })))),
        body,
      ),
    ),
  );
  api("/v1/plans")
    .then((data) => {
      fill(
        body,
        data.plans.map((plan) =>
          el(
            "tr",
            { testid: "ledger-plan", "data-plan": plan.plan },
            el("td", {}, link(`/ledger/${encodeURIComponent(plan.plan)}`, plan.plan)),
            el("td", { class: "num", text: plan.head_seq ?? "—" }),
            el("td", {}, badge(plan.state)),
          ),
        ),
      );
      if (data.plans.length === 0) {
        body.append(el("tr", {}, el("td", { colspan: 3, class: "muted empty", text: "The ledger is empty." })));
      }
    })
    .catch((error) => fill(status, errorBox(error)));
  return () => {};
}

function chainVerdict(verification) {
  const ok = Boolean(verification && verification.ok);
  const box = el(
    "div",
    { class: ok ? "verdict ok" : "verdict bad", testid: "chain-verification", "data-ok": String(ok) },
    el("strong", { text: ok ? "✓ The chain verifies." : "✗ The chain does not verify." }),
    verification && typeof verification.length === "number" ? ` ${verification.length} events` : "",
    verification && verification.head_hash ? [" · head ", short(verification.head_hash, 20)] : "",
  );
  const breaks = (verification && verification.breaks) || [];
  if (breaks.length) box.append(pretty(breaks));
  return box;
}

/** `/ledger/{plan}`: the plan's events in order and the chain's verification, live. */
export function chainPage(main, plan) {
  const content = el("div");
  main.append(
    el("p", { class: "crumbs" }, link("/ledger", "Ledger"), " / ", link(`/plans/${encodeURIComponent(plan)}`, plan)),
    el("h1", {}, "Chain of ", el("span", { text: plan })),
    content,
  );
  let after = 0;
  let generation = 0;

  async function refresh() {
    const current = ++generation;
    try {
      const data = await api(`/v1/plans/${encodeURIComponent(plan)}/chain${query({ after, limit: CHAIN_PAGE })}`);
      if (current !== generation) return;
      const list = data.events || [];
      const pager = el("div", { class: "pager" });
      if (after > 0) {
        const first = el("button", { type: "button", class: "quiet", text: "← From the start" });
        first.addEventListener("click", () => {
          after = 0;
          refresh();
        });
        pager.append(first);
      }
      if (list.length === CHAIN_PAGE) {
        const more = el("button", { type: "button", class: "quiet", text: "Later events →" });
        more.addEventListener("click", () => {
          after = list[list.length - 1].seq;
          refresh();
        });
        pager.append(more);
      }
      fill(
        content,
        chainVerdict(data.verification),
        section(`Events after seq ${after}`, events(list, "chain-event"), pager),
      );
    } catch (error) {
      if (current === generation) fill(content, errorBox(error, { testid: "chain-error" }));
    }
  }
  const refreshSoon = debounce(refresh, 300);
  refresh();
  const stop = listen({ plan }, (kind, data) => {
    if (kind === "ledger" && data.plan === plan) refreshSoon();
  }, refreshSoon);
  return () => {
    refreshSoon.cancel();
    stop();
  };
}
