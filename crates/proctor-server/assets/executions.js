// The executions table (filters, live updates, the run form) and one execution's page.

import { FINAL_STATES, api, badge, bytes, debounce, el, errorBox, fill, link, listen, navigate, pretty, query, section, short, time, worldUrl } from "./api.js";

const PAGE_SIZE = 50;
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

/** `/`: the run form, the filters and the executions, refreshed as the ledger grows. */
export function executionsPage(main) {
  const params = new URLSearchParams(window.location.search);
  const filters = {
    ref: el("input", { type: "search", placeholder: "text/stats@1", testid: "filter-ref", value: params.get("ref") || "" }),
    state: el(
      "select",
      { testid: "filter-state" },
      el("option", { value: "", text: "any state" }),
      STATES.map((state) => el("option", { value: state, text: state })),
    ),
    plan: el("input", { type: "search", placeholder: "default", testid: "filter-plan", value: params.get("plan") || "" }),
  };
  filters.state.value = params.get("state") || "";
  let offset = Number.parseInt(params.get("offset") || "0", 10) || 0;

  const body = el("tbody");
  const status = el("p", { class: "muted", testid: "executions-status" });
  const previous = el("button", { type: "button", class: "quiet", text: "← Newer" });
  const next = el("button", { type: "button", class: "quiet", text: "Older →" });
  const table = el(
    "table",
    { class: "grid", testid: "executions-table" },
    el(
      "thead",
      {},
      el("tr", {}, ["State", "Execution", "Processor", "Plan", "Mode", "Started", "Settled", "Error"].map((h) => el("th", { text: h }))),
    ),
    body,
  );

  let generation = 0;
  async function refresh() {
    const current = ++generation;
    const values = {
      ref: filters.ref.value.trim(),
      state: filters.state.value,
      plan: filters.plan.value.trim(),
    };
    const shown = { ...values, offset: offset || "" };
    window.history.replaceState(null, "", `/${query(shown)}`);
    try {
      const data = await api(`/v1/executions${query({ ...values, limit: PAGE_SIZE, offset })}`);
      if (current !== generation) return;
      fill(body, data.executions.map(row));
      if (data.executions.length === 0) {
        body.append(el("tr", {}, el("td", { colspan: 8, class: "muted empty", text: "No executions match." })));
      }
      const last = offset + data.executions.length;
      status.textContent = data.total
        ? `${offset + 1}–${last} of ${data.total}`
        : "";
      previous.disabled = offset === 0;
      next.disabled = last >= data.total;
    } catch (error) {
      if (current === generation) fill(status, errorBox(error));
    }
  }
  const refreshSoon = debounce(refresh, 250);
  for (const input of Object.values(filters)) {
    input.addEventListener("input", () => {
      offset = 0;
      refreshSoon();
    });
  }
  previous.addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    refresh();
  });
  next.addEventListener("click", () => {
    offset += PAGE_SIZE;
    refresh();
  });

  main.append(
    el("h1", { text: "Executions" }),
    runForm(params.get("run")),
    section(
      "Recent executions",
      el(
        "div",
        { class: "filters" },
        el("label", {}, "Processor ", filters.ref),
        el("label", {}, "State ", filters.state),
        el("label", {}, "Plan ", filters.plan),
      ),
      table,
      el("div", { class: "pager" }, previous, status, next),
    ),
  );
  refresh();
  const stop = listen({}, refreshSoon, refreshSoon);
  return () => {
    refreshSoon.cancel();
    stop();
  };
}

function row(execution) {
  const id = execution.execution_id;
  return el(
    "tr",
    { testid: "execution-row", "data-execution-id": id, "data-state": execution.state },
    el("td", { testid: "execution-state" }, badge(execution.state)),
    el("td", {}, link(`/executions/${encodeURIComponent(id)}`, id, { class: "mono" })),
    el("td", { text: execution.ref || "—" }),
    el("td", {}, execution.plan ? link(`/plans/${encodeURIComponent(execution.plan)}`, execution.plan) : "—"),
    el("td", { text: execution.mode || "—" }),
    el("td", {}, time(execution.started_at)),
    el("td", {}, time(execution.settled_at)),
    el("td", {}, execution.error_code ? el("code", { class: "error-code", text: execution.error_code }) : ""),
  );
}

/** The run form: a processor, one of its examples, the mode; submits and opens the run. */
function runForm(preselected) {
  const processor = el("select", { testid: "run-processor", required: true });
  const example = el("select", { testid: "run-example" });
  const mode = el(
    "select",
    { testid: "run-mode" },
    el("option", { value: "mock", text: "mock" }),
    el("option", { value: "real", text: "real" }),
  );
  const build = el("input", { type: "checkbox", testid: "run-build" });
  const inputs = el("textarea", {
    rows: 4,
    class: "mono",
    placeholder: '{"text": "..."} — when given, used instead of the example',
    testid: "run-inputs",
  });
  const submit = el("button", { type: "submit", testid: "run-submit", text: "Run", disabled: true });
  const message = el("div", { class: "form-message" });
  let processors = [];

  function showExamples() {
    const chosen = processors.find((p) => p.ref === processor.value);
    const names = chosen ? chosen.examples : [];
    fill(example, names.map((name) => el("option", { value: name, text: name })));
    if (names.length === 0) example.append(el("option", { value: "", text: "(no examples)" }));
    if (names.includes("smoke")) example.value = "smoke";
  }
  processor.addEventListener("change", showExamples);

  api("/v1/processors")
    .then((data) => {
      processors = data.processors;
      fill(processor, processors.map((p) => el("option", { value: p.ref, text: p.ref })));
      if (preselected && processors.some((p) => p.ref === preselected)) processor.value = preselected;
      showExamples();
      submit.disabled = processors.length === 0;
    })
    .catch((error) => fill(message, errorBox(error)));

  const form = el(
    "form",
    { class: "run-form", testid: "run-form" },
    el("label", {}, "Processor ", processor),
    el("label", {}, "Example ", example),
    el("label", {}, "Mode ", mode),
    el("label", { class: "check" }, build, " build from source"),
    el("details", { class: "wide" }, el("summary", { text: "Inputs as JSON" }), inputs),
    submit,
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.replaceChildren();
    const request = { ref: processor.value, mode: mode.value, build: build.checked };
    const text = inputs.value.trim();
    if (text) {
      try {
        request.inputs = JSON.parse(text);
      } catch (error) {
        fill(message, errorBox(`The inputs are not JSON: ${error.message}`));
        return;
      }
    } else if (example.value) {
      request.example = example.value;
    }
    submit.disabled = true;
    try {
      const answer = await api("/v1/runs", { method: "POST", body: request });
      navigate(`/executions/${encodeURIComponent(answer.execution_id)}`);
    } catch (error) {
      fill(message, errorBox(error, { testid: "run-error" }));
      submit.disabled = false;
    }
  });
  return section("Run a processor", form);
}

/** `/executions/{id}`: the execution, its evidence and verification, live until it ends. */
export function executionPage(main, id) {
  const content = el("div");
  main.append(
    el("p", { class: "crumbs" }, link("/", "Executions"), " / ", el("span", { class: "mono", text: id })),
    content,
  );
  let receiptOpen = false;
  let final = false;
  let stop = () => {};
  let generation = 0;

  async function refresh() {
    const current = ++generation;
    try {
      const detail = await api(`/v1/executions/${encodeURIComponent(id)}`);
      if (current !== generation) return;
      final = FINAL_STATES.has(detail.execution.state);
      render(detail);
      if (final) stop();
    } catch (error) {
      if (current === generation) fill(content, errorBox(error, { testid: "execution-error" }));
    }
  }
  const refreshSoon = debounce(refresh, 200);

  function render(detail) {
    const execution = detail.execution;
    const header = el(
      "div",
      { class: "title-row" },
      el("h1", { class: "mono", text: id }),
      badge(execution.state, { testid: "execution-state" }),
    );
    if (!FINAL_STATES.has(execution.state)) {
      const cancel = el("button", { type: "button", class: "danger", testid: "cancel-execution", text: "Cancel" });
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try {
          await api(`/v1/executions/${encodeURIComponent(id)}/cancel`, { method: "POST", body: {} });
          refresh();
        } catch (error) {
          header.append(errorBox(error));
          cancel.disabled = false;
        }
      });
      header.append(cancel);
    }
    const receipt = detail.receipt
      ? pretty(detail.receipt, { testid: "execution-receipt", hidden: !receiptOpen })
      : el("p", { class: "muted", testid: "execution-receipt", hidden: !receiptOpen, text: "No receipt (yet)." });
    const toggle = el("button", {
      type: "button",
      class: "quiet",
      testid: "receipt-toggle",
      "aria-expanded": String(receiptOpen),
      text: receiptOpen ? "Hide receipt" : "Show receipt",
    });
    toggle.addEventListener("click", () => {
      receiptOpen = !receiptOpen;
      receipt.hidden = !receiptOpen;
      toggle.textContent = receiptOpen ? "Hide receipt" : "Show receipt";
      toggle.setAttribute("aria-expanded", String(receiptOpen));
    });
    fill(
      content,
      header,
      summary(execution, detail.index_path),
      section("Verification", verification(detail.verification)),
      section(`Outputs (${detail.outputs.length})`, outputs(detail.outputs)),
      section(
        "Envelope",
        detail.envelope
          ? pretty(detail.envelope, { testid: "execution-envelope" })
          : el("p", { class: "muted", testid: "execution-envelope", text: "No envelope yet." }),
      ),
      section("Receipt", toggle, receipt),
      section(`Ledger events (${detail.events.length})`, events(detail.events)),
    );
  }

  refresh();
  stop = listen(
    {},
    (kind, data) => {
      if (data.execution_id === id) refreshSoon();
    },
    refreshSoon,
  );
  // A safety net beside the stream while the execution can still change.
  const poll = setInterval(() => {
    if (!final) refresh();
  }, 5000);
  return () => {
    clearInterval(poll);
    refreshSoon.cancel();
    stop();
  };
}

function summary(execution, indexPath) {
  const rows = [
    ["Processor", execution.ref || "—"],
    ["Plan", execution.plan ? link(`/plans/${encodeURIComponent(execution.plan)}`, execution.plan) : "—"],
    ["Mode", execution.mode || "—"],
    ["Image", short(execution.image_digest, 24)],
    ["Started", time(execution.started_at)],
    ["Settled", time(execution.settled_at)],
    ["Error", execution.error_code ? el("code", { class: "error-code", text: execution.error_code }) : "—"],
    ["Write prefix", execution.write_prefix ? el("code", { text: execution.write_prefix }) : "—"],
    ["Outputs index", indexPath ? link(worldUrl(indexPath), indexPath, { class: "mono", target: "_blank", rel: "noopener" }) : "—"],
  ];
  return el(
    "dl",
    { class: "card facts" },
    rows.map(([name, value]) => [el("dt", { text: name }), el("dd", {}, value)]),
  );
}

function verification(result) {
  if (!result) return el("p", { class: "muted", text: "Verified once the execution has ended." });
  const list = el(
    "ul",
    { class: "checks" },
    (result.checks || []).map((check) =>
      el(
        "li",
        { testid: "verify-check", "data-ok": String(Boolean(check.ok)), class: check.ok ? "ok" : "bad" },
        el("span", { class: "mark", "aria-label": check.ok ? "passed" : "failed", text: check.ok ? "✓" : "✗" }),
        el("strong", { text: check.name }),
        check.detail ? el("span", { class: "muted", text: ` ${check.detail}` }) : "",
      ),
    ),
  );
  const overall = el("p", {
    class: result.ok ? "verdict ok" : "verdict bad",
    testid: "verification-verdict",
    "data-ok": String(Boolean(result.ok)),
    text: result.ok ? "✓ The evidence verifies." : "✗ The evidence does not verify.",
  });
  const error = result.error ? pretty(result.error) : "";
  return el("div", {}, overall, list, error);
}

const PREVIEW_LIMIT = 512 * 1024;

function outputs(items) {
  if (items.length === 0) return el("p", { class: "muted", text: "No outputs." });
  return el(
    "ul",
    { class: "outputs" },
    items.map((item) => {
      const preview = el("div", { class: "preview", testid: "output-preview" });
      showPreview(preview, item);
      return el(
        "li",
        { testid: "output-item", "data-path": item.path },
        el(
          "div",
          { class: "output-head" },
          link(worldUrl(item.path, { download: true }), item.path, { class: "mono", download: "" }),
          el("span", { class: "muted", text: ` ${item.mime || "?"} · ${bytes(item.size_bytes)} · ` }),
          short(item.cid, 20),
        ),
        preview,
      );
    }),
  );
}

function kindOf(item) {
  const mime = (item.mime || "").toLowerCase();
  const path = String(item.path).toLowerCase();
  if (mime.startsWith("image/")) return "image";
  if (mime.includes("json") || path.endsWith(".json")) return "json";
  if (mime.startsWith("text/") || /\.(txt|md|csv|tsv|log|yaml|yml)$/.test(path)) return "text";
  return "other";
}

async function showPreview(preview, item) {
  const kind = kindOf(item);
  const url = worldUrl(item.path);
  if (kind === "image") {
    preview.append(el("img", { src: url, alt: item.path, loading: "lazy" }));
    return;
  }
  if (kind === "other" || (item.size_bytes || 0) > PREVIEW_LIMIT) {
    preview.append(link(worldUrl(item.path, { download: true }), "Download", { download: "" }));
    return;
  }
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const text = await response.text();
    if (kind === "json") {
      try {
        preview.append(pretty(JSON.parse(text)));
        return;
      } catch {
        // Not JSON after all: shown as text.
      }
    }
    preview.append(el("pre", { class: "text", text }));
  } catch (error) {
    preview.append(errorBox(`No preview: ${error.message}`));
  }
}

/** Ledger events as a table; each payload behind a disclosure. */
export function events(list, testid = "ledger-event") {
  if (list.length === 0) return el("p", { class: "muted", text: "No events." });
  return el(
    "table",
    { class: "grid events" },
    el("thead", {}, el("tr", {}, ["Seq", "Kind", "Execution", "At", "Hash", "Payload"].map((h) => el("th", { text: h })))),
    el(
      "tbody",
      {},
      list.map((event) =>
        el(
          "tr",
          { testid, "data-seq": event.seq, "data-kind": event.kind },
          el("td", { class: "num", text: event.seq }),
          el("td", {}, el("code", { text: event.kind })),
          el(
            "td",
            {},
            event.execution_id
              ? link(`/executions/${encodeURIComponent(event.execution_id)}`, event.execution_id, { class: "mono" })
              : "—",
          ),
          el("td", {}, time(event.at || event.created_at)),
          el("td", {}, short(event.this_hash, 12)),
          el("td", {}, el("details", {}, el("summary", { text: "payload" }), pretty(event.payload))),
        ),
      ),
    ),
  );
}
