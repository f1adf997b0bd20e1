// The processors of the registry with their pins, and the drift of their deployments.

import { api, badge, el, errorBox, fill, link, pretty, query, section, short } from "./api.js";

function tick(ok) {
  return el("span", { class: ok ? "mark ok" : "mark bad", "aria-label": ok ? "yes" : "no", text: ok ? "✓" : "✗" });
}

/** `/processors`: the registry and the drift report. */
export function processorsPage(main) {
  const body = el("tbody");
  const status = el("div");
  const drift = el("div", { testid: "drift-report", class: "drift", "data-loading": "true" }, el("p", { class: "muted", text: "Asking the deployments…" }));
  main.append(
    el("h1", { text: "Processors" }),
    section(
      "Registry",
      status,
      el(
        "table",
        { class: "grid", testid: "processors-table" },
        el(
          "thead",
          {},
          el("tr", {}, ["Processor", "Description", "amd64 pin", "arm64 pin", "Pinned", "Secrets", "Examples", ""].map((h) => el("th", { text: h }))),
        ),
        body,
      ),
    ),
    section("Drift (Modal)", drift),
  );
  api("/v1/processors")
    .then((data) => {
      fill(
        body,
        data.processors.map((p) =>
          el(
            "tr",
            { testid: "processor-row", "data-ref": p.ref, "data-pinned": String(Boolean(p.pinned)) },
            el("td", {}, el("strong", { text: p.ref }), p.planner ? el("span", { class: "tag", text: "planner" }) : ""),
            el("td", { text: p.description || "" }),
            el("td", { "data-platform": "amd64" }, short(p.pins && p.pins.amd64, 26)),
            el("td", { "data-platform": "arm64" }, short(p.pins && p.pins.arm64, 26)),
            el("td", { testid: "processor-pinned" }, tick(p.pinned)),
            el("td", {}, (p.secrets || []).length ? p.secrets.map((name) => el("code", { class: "secret-name", text: name })) : "—"),
            el("td", { text: (p.examples || []).join(", ") || "—" }),
            el("td", { class: "nowrap" }, link(`/${query({ run: p.ref })}`, "Run…")),
          ),
        ),
      );
    })
    .catch((error) => fill(status, errorBox(error)));
  api("/v1/drift")
    .then((report) => {
      drift.removeAttribute("data-loading");
      const rows = report.rows || [];
      const ok = !report.error;
      drift.setAttribute("data-ok", String(ok));
      fill(
        drift,
        report.error
          ? el("p", { class: "verdict bad" }, el("code", { class: "error-code", text: report.error.code }), " ", report.error.message)
          : el("p", { class: "verdict ok", text: "✓ Every deployment runs its pinned image." }),
        rows.length
          ? el(
              "table",
              { class: "grid" },
              el("thead", {}, el("tr", {}, ["Processor", "Status", "Pinned", "Deployed", "Endpoint", "Detail"].map((h) => el("th", { text: h })))),
              el(
                "tbody",
                {},
                rows.map((row) =>
                  el(
                    "tr",
                    { testid: "drift-row", "data-ref": row.ref },
                    el("td", { text: row.ref }),
                    el("td", {}, badge(row.status)),
                    el("td", {}, short(row.pinned, 22)),
                    el("td", {}, short(row.deployed, 22)),
                    el("td", {}, el("code", { text: row.endpoint || "" })),
                    el("td", { text: row.detail || "" }),
                  ),
                ),
              ),
            )
          : "",
        el("details", {}, el("summary", { text: "The report as JSON" }), pretty(report)),
      );
    })
    .catch((error) => {
      drift.removeAttribute("data-loading");
      fill(drift, errorBox(error));
    });
  return () => {};
}
