// The audit trail (admin): every control-plane change and refused attempt, newest
// first, filtered by action, key, target or result.
import { api, badge, clear, el, errorNotice, fmt } from "./common.js";

const main = document.getElementById("main");
const status = el("div", { role: "status" });
const list = el("div", { class: "table-wrap" });
const filters = {
  action: el("input", { id: "f-action", placeholder: "e.g. set_traffic", autocomplete: "off" }),
  key_id: el("input", { id: "f-key", placeholder: "key id", autocomplete: "off" }),
  target: el("input", { id: "f-target", placeholder: "e.g. digits", autocomplete: "off" }),
  result: el("select", { id: "f-result" }, ["", "ok", "denied", "failed", "dropped"].map((r) => el("option", { value: r }, r || "any"))),
};
const labels = { action: "Action", key_id: "Key", target: "Target", result: "Result" };
const form = el(
  "form",
  { class: "row", "aria-label": "Filter the audit trail" },
  Object.entries(filters).map(([field, input]) => el("div", {}, el("label", { for: input.id }, labels[field]), input)),
  el("div", { class: "filter-submit" }, el("button", { type: "submit", id: "f-apply" }, "Filter")),
);
clear(
  main,
  el("h1", {}, "Audit trail"),
  el("p", { class: "lead" }, "Who changed what, newest first: uploads, stages, traffic, rollbacks, keys, and attempts that were refused (repeats by one key are counted in one row)."),
  el("section", { class: "card" }, form),
  status,
  el("section", { class: "card" }, list),
);

form.addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});

async function load() {
  const query = new URLSearchParams({ limit: "200" });
  for (const [field, input] of Object.entries(filters)) if (input.value.trim()) query.set(field, input.value.trim());
  try {
    const { data: events } = await api("api/v1/audit?" + query);
    clear(status);
    if (!events.length) {
      clear(list, el("p", { class: "empty" }, "No events match."));
      return;
    }
    const heads = ["When", "Key", "Action", "Target", "Request", "Result", "Count", "Client"];
    clear(
      list,
      el("table", {},
        el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, events.map((e) => el("tr", {},
          el("td", {}, fmt.time(e.at)),
          el("td", {}, e.key_name || "–", e.key_id ? el("p", { class: "hint mono" }, e.key_id) : null),
          el("td", { class: "mono" }, e.action),
          el("td", { class: "mono" }, e.target),
          el("td", { class: "mono" }, `${e.method} ${e.path}`),
          el("td", {}, badge(e.result, e.result === "ok" ? "ready" : e.result), el("span", { class: "hint" }, ` ${e.status}`)),
          el("td", { class: "num" }, String(e.count)),
          el("td", { class: "mono" }, e.client),
        ))),
      ),
    );
  } catch (err) {
    clear(status, errorNotice(err));
  }
}

load();
