// API keys (admin): the list (never a secret), a form that makes a key and shows it
// once, and revocation after a confirmation.
import { api, badge, clear, confirmAction, el, errorNotice, fmt, notice } from "./common.js";

const main = document.getElementById("main");
const status = el("div", { role: "status", "aria-live": "polite", tabindex: "-1" });
const list = el("div", { class: "table-wrap" });

const name = el("input", { id: "key-name", required: true, maxlength: 128, autocomplete: "off" });
const scopes = ["read", "infer", "deploy", "admin"].map((scope) =>
  el("label", {}, el("input", { type: "checkbox", name: "scope", value: scope, checked: scope === "infer" }), scope),
);
const models = el("input", { id: "key-models", placeholder: "all models", autocomplete: "off" });
const rate = el("input", { id: "key-rate", placeholder: "e.g. 50/s", autocomplete: "off" });
const expires = el("input", { id: "key-expires", placeholder: "e.g. 30d", autocomplete: "off" });
const form = el(
  "form",
  { "aria-labelledby": "new-key" },
  el("h2", { id: "new-key" }, "New key"),
  el("div", { class: "fields" },
    el("div", {}, el("label", { for: "key-name" }, "Name"), name),
    el("div", {}, el("label", { for: "key-models" }, "Models (empty: all)"), models),
    el("div", {}, el("label", { for: "key-rate" }, "Rate limit (empty: none)"), rate),
    el("div", {}, el("label", { for: "key-expires" }, "Expires after (empty: never)"), expires),
  ),
  el("fieldset", {}, el("legend", {}, "Scopes"), el("div", { class: "checks" }, scopes)),
  el("button", { type: "submit" }, "Create key"),
);

clear(
  main,
  el("h1", {}, "API keys"),
  el("p", { class: "lead" }, "Keys for clients and people. A key is shown once, when it is made; Ferry keeps only its hash."),
  status,
  el("section", { class: "card" }, form),
  el("section", { class: "card", "aria-labelledby": "keys-title" }, el("h2", { id: "keys-title" }, "Keys"), list),
);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const chosen = scopes.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
  const body = {
    name: name.value.trim(),
    scopes: chosen,
    models: models.value.trim() ? models.value.split(",").map((m) => m.trim()).filter(Boolean) : null,
    rate: rate.value.trim() || null,
    expires: expires.value.trim() || null,
  };
  try {
    const { data } = await api("api/v1/keys", { method: "POST", json: body });
    const secret = el("code", { id: "new-secret" }, data.key);
    const copy = el("button", { type: "button", class: "secondary", onclick: async () => {
      try {
        await navigator.clipboard.writeText(data.key);
        copy.textContent = "Copied";
      } catch (err) {
        copy.textContent = "Select the key to copy it";
      }
    } }, "Copy");
    clear(
      status,
      el("div", { class: "notice secret", role: "alert" },
        el("div", { class: "row" }, el("p", {}, `Key “${data.name}” (${data.id}) was made. Copy it now: it is not shown again.`), el("span", { class: "spacer" }), copy),
        el("pre", { tabindex: "0" }, secret)),
    );
    form.reset();
    await load();
  } catch (err) {
    clear(status, errorNotice(err));
  }
});

async function revoke(key) {
  if (!(await confirmAction(`Revoke “${key.name}”?`, `Requests with key ${key.id} will be refused from now on. This cannot be undone.`, "Revoke", true))) return;
  try {
    await api(`api/v1/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
    clear(status, notice("ok", `Key ${key.id} is revoked.`));
    await load();
    status.focus(); // its Revoke button is gone

  } catch (err) {
    clear(status, errorNotice(err));
  }
}

async function load() {
  const { data: keys } = await api("api/v1/keys");
  const heads = ["Name", "Id", "Scopes", "Models", "Rate", "Created", "Expires", "State", ""];
  clear(
    list,
    el("table", {},
      el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, keys.map((key) => el("tr", { "data-key": key.id },
        el("td", {}, key.name),
        el("td", { class: "mono" }, key.id),
        el("td", {}, key.scopes.join(", ")),
        el("td", {}, key.models ? key.models.join(", ") : "all"),
        el("td", {}, key.rate_per_s ? `${fmt.num(key.rate_per_s, 2)}/s` : "–"),
        el("td", {}, fmt.time(key.created_at), el("p", { class: "hint" }, key.created_by)),
        el("td", {}, key.expires_at ? fmt.time(key.expires_at) : "never"),
        el("td", {}, badge(key.state, key.state === "active" ? "ready" : key.state)),
        el("td", {}, key.state === "active" ? el("button", { type: "button", class: "secondary", onclick: () => revoke(key) }, "Revoke") : null),
      ))),
    ),
  );
}

load().catch((err) => clear(status, errorNotice(err)));
