// The plans: their list and the form that submits one, and one plan's page with its graph.

import { api, badge, debounce, el, errorBox, fill, link, listen, navigate, pretty, section, short, time } from "./api.js";
import { drawDag } from "./dag.js";

const EXAMPLE_PLAN = `plan: demo
mode: mock
transitions:
  - id: count
    ref: text/stats@1
    inputs: {schema: v1, text: "a b b c"}
  - id: recount
    ref: text/stats@1
    inputs: {schema: v1, text: "c c d"}
    after: [count]
`;

function micro(value) {
  return typeof value === "number" ? `$${(value / 1e6).toFixed(2)}` : "—";
}

/** `/plans`: every plan of the ledger, and a plan to submit. */
export function plansPage(main) {
  const body = el("tbody");
  const status = el("div");
  async function refresh() {
    try {
      const data = await api("/v1/plans");
      fill(
        body,
        data.plans.map((plan) =>
          el(
            "tr",
            { testid: "plan-row", "data-plan": plan.plan, "data-state": plan.state },
            el("td", {}, link(`/plans/${encodeURIComponent(plan.plan)}`, plan.plan)),
            el("td", {}, badge(plan.state)),
            el("td", { class: "num", text: plan.executions ?? "—" }),
            el("td", { class: "num", text: plan.head_seq ?? "—" }),
            el("td", { class: "num", text: `${micro(plan.spent_micro_usd)} / ${micro(plan.budget_micro_usd)}` }),
            el("td", { class: "num", text: micro(plan.reserved_micro_usd) }),
            el("td", {}, time(plan.created_at)),
            el("td", {}, link(`/ledger/${encodeURIComponent(plan.plan)}`, "chain")),
          ),
        ),
      );
      if (data.plans.length === 0) {
        body.append(el("tr", {}, el("td", { colspan: 8, class: "muted empty", text: "No plans yet." })));
      }
      status.replaceChildren();
    } catch (error) {
      fill(status, errorBox(error));
    }
  }
  const refreshSoon = debounce(refresh, 300);

  main.append(
    el("h1", { text: "Plans" }),
    planForm(),
    section(
      "Plans in the ledger",
      status,
      el(
        "table",
        { class: "grid", testid: "plans-table" },
        el(
          "thead",
          {},
          el("tr", {}, ["Plan", "State", "Executions", "Head", "Spent / budget", "Reserved", "Created", "Ledger"].map((h) => el("th", { text: h }))),
        ),
        body,
      ),
    ),
  );
  refresh();
  const stop = listen({}, refreshSoon, refreshSoon);
  return () => {
    refreshSoon.cancel();
    stop();
  };
}

function planForm() {
  const documentInput = el("textarea", {
    rows: 12,
    class: "mono",
    spellcheck: "false",
    testid: "plan-document",
    placeholder: EXAMPLE_PLAN,
  });
  const parallel = el("input", { type: "number", min: 1, max: 64, placeholder: "plan's", testid: "plan-max-parallel" });
  const build = el("input", { type: "checkbox", testid: "plan-build" });
  const submit = el("button", { type: "submit", testid: "plan-submit", text: "Apply plan" });
  const message = el("div", { class: "form-message" });
  const form = el(
    "form",
    { class: "plan-form" },
    el("label", { class: "wide" }, "Plan (YAML or JSON)", documentInput),
    el("label", {}, "At most ", parallel, " transitions at once"),
    el("label", { class: "check" }, build, " build processors from source"),
    submit,
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.replaceChildren();
    const text = documentInput.value.trim();
    if (!text) {
      fill(message, errorBox("Write a plan first (see the placeholder for its shape)."));
      return;
    }
    const request = { plan: text, build: build.checked };
    if (parallel.value) request.max_parallel = Number.parseInt(parallel.value, 10);
    submit.disabled = true;
    try {
      const answer = await api("/v1/plans", { method: "POST", body: request });
      navigate(`/plans/${encodeURIComponent(answer.plan)}`);
    } catch (error) {
      fill(message, errorBox(error, { testid: "plan-error" }));
      submit.disabled = false;
    }
  });
  return section("Apply a plan", form);
}

const APPLYING = new Set(["applying", "queued", "running"]);

/** `/plans/{key}`: the plan's state, its graph and transitions, live while it applies. */
export function planPage(main, key) {
  const content = el("div");
  main.append(el("p", { class: "crumbs" }, link("/plans", "Plans"), " / ", el("span", { text: key })), content);
  let generation = 0;

  async function refresh() {
    const current = ++generation;
    try {
      const plan = await api(`/v1/plans/${encodeURIComponent(key)}`);
      if (current === generation) render(plan);
    } catch (error) {
      if (current === generation) fill(content, errorBox(error, { testid: "plan-load-error" }));
    }
  }
  const refreshSoon = debounce(refresh, 200);

  function render(plan) {
    const header = el(
      "div",
      { class: "title-row" },
      el("h1", { text: plan.plan }),
      badge(plan.state, { testid: "plan-state" }),
    );
    if (APPLYING.has(plan.state)) {
      const cancel = el("button", { type: "button", class: "danger", testid: "cancel-plan", text: "Cancel" });
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try {
          await api(`/v1/plans/${encodeURIComponent(key)}/cancel`, { method: "POST", body: {} });
          refresh();
        } catch (error) {
          header.append(errorBox(error));
          cancel.disabled = false;
        }
      });
      header.append(cancel);
    }
    const transitions = plan.transitions || [];
    fill(
      content,
      header,
      el(
        "dl",
        { class: "card facts" },
        el("dt", { text: "Plan CID" }),
        el("dd", {}, short(plan.plan_cid, 24)),
        el("dt", { text: "Ledger" }),
        el("dd", {}, link(`/ledger/${encodeURIComponent(plan.plan)}`, "the chain and its verification")),
      ),
      plan.error ? errorBox(`${plan.error.code || ""} ${plan.error.message || JSON.stringify(plan.error)}`) : "",
      section(
        "Graph",
        transitions.length
          ? el(
              "div",
              { class: "dag-scroll" },
              drawDag(transitions, (t) => navigate(`/executions/${encodeURIComponent(t.execution_id)}`)),
            )
          : el("p", { class: "muted", text: "No plan file was applied under this key; its executions are in the ledger chain." }),
      ),
      section("Transitions", transitionTable(transitions)),
      plan.report ? section("Last apply by this server", pretty(plan.report, { testid: "plan-report" })) : "",
    );
  }

  refresh();
  const stop = listen(
    { plan: key },
    (kind, data) => {
      if (kind === "ledger" ? data.plan === key : data.plan === key || data.execution_id) refreshSoon();
    },
    refreshSoon,
  );
  return () => {
    refreshSoon.cancel();
    stop();
  };
}

function transitionTable(transitions) {
  if (transitions.length === 0) return el("p", { class: "muted", text: "No transitions." });
  return el(
    "table",
    { class: "grid" },
    el("thead", {}, el("tr", {}, ["Transition", "Processor", "After", "State", "Execution", "Error"].map((h) => el("th", { text: h })))),
    el(
      "tbody",
      {},
      transitions.map((t) =>
        el(
          "tr",
          { testid: "transition-row", "data-transition": t.id, "data-state": t.state },
          el("td", {}, el("strong", { text: t.id })),
          el("td", { text: t.ref }),
          el("td", { text: (t.after || []).join(", ") || "—" }),
          el("td", {}, badge(t.state)),
          el(
            "td",
            {},
            t.execution_id ? link(`/executions/${encodeURIComponent(t.execution_id)}`, t.execution_id, { class: "mono" }) : "—",
          ),
          el("td", {}, t.error ? el("code", { class: "error-code", title: t.error.message || "", text: t.error.code || JSON.stringify(t.error) }) : ""),
        ),
      ),
    ),
  );
}
