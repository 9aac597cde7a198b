// The catalog (/): every model this key may see, with its versions, stages, traffic
// split and live figures, refreshed every few seconds.
import { api, badge, can, clear, el, errorNotice, every, figure, fmt, redrawKeepingFocus, url, versionBadges } from "./common.js";
import { send } from "./versions.js";

const main = document.getElementById("main");
const list = el("div", { class: "grid", "aria-live": "off" });
const status = el("div", { role: "status" });
clear(
  main,
  el("h1", {}, "Models"),
  el("p", { class: "lead" }, "Every model this server runs. Open one to try it in the playground, see its live numbers and manage its versions."),
  status,
  list,
);

function card(model, live) {
  const now = live ? live.now : {};
  const versions = model.versions.map((v) =>
    el("li", {}, el("span", { class: "mono" }, "v" + v.version), " ", badge(v.state.toLowerCase() === "ready" ? "ready" : v.state.toLowerCase()), versionBadges(v)),
  );
  return el(
    "article",
    { class: "card", "data-model": model.name },
    el("div", { class: "row" }, el("h2", {}, el("a", { href: url("models/" + encodeURIComponent(model.name)) }, model.name)), el("span", { class: "spacer" }), badge(model.state.toLowerCase())),
    el("p", { class: "desc" }, model.description || (model.reason ? model.reason : "")),
    el(
      "div",
      { class: "figures" },
      figure("req/s", fmt.num(now.rps)),
      figure("p50", fmt.ms(now.p50_ms)),
      figure("p99", fmt.ms(now.p99_ms)),
      figure("errors", fmt.pct(now.error_ratio)),
    ),
    versions.length ? el("ul", { class: "plain-list", "aria-label": "Versions" }, versions) : el("p", { class: "empty" }, "No version loaded"),
  );
}

// On `ferry server`, deploy keys add a model here: its first version goes to production.
function addModelForm() {
  const name = el("input", { id: "new-model-name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.-]*", autocomplete: "off" });
  const file = el("input", { id: "new-model-file", type: "file", required: true });
  const config = el("input", { id: "new-model-config", type: "file", accept: ".yaml,.yml,.json" });
  const progress = el("p", { class: "hint", role: "status", "aria-live": "polite" });
  const result = el("div", { role: "status" });
  const form = el(
    "form",
    { "aria-labelledby": "add-model" },
    el("h2", { id: "add-model" }, "Add a model"),
    el("div", { class: "fields" },
      el("div", {}, el("label", { for: "new-model-name" }, "Name"), name),
      el("div", {}, el("label", { for: "new-model-file" }, "Model file (.onnx, .skops, .pt, .pt2)"), file),
      el("div", {}, el("label", { for: "new-model-config" }, "config.yaml (optional)"), config)),
    el("button", { type: "submit" }, "Upload to production"),
    progress,
    result,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const model = name.value.trim();
    const say = (node) => clear(result, node);
    // A ready first version is production and live: open its page. A failed one stays here, said why.
    const open = async (version) => {
      if (version.state === "ready") window.location.assign(url("models/" + encodeURIComponent(model)));
    };
    send(model, file.files[0], "production", progress, say, open, config.files[0], form.querySelector("button"));
  });
  return el("section", { class: "card" }, form);
}

let added = false;
every(3000, async () => {
  try {
    const [{ data: catalog }, { data: live }] = await Promise.all([api("api/v1/catalog"), api("api/v1/live")]);
    clear(status);
    if (catalog.registry && can("deploy") && !added) {
      main.append(addModelForm());
      added = true;
    }
    if (!catalog.models.length) {
      clear(list, el("p", { class: "empty" }, catalog.registry ? "No models yet: push one with `ferry push model.onnx --name NAME`." : "No models."));
      return;
    }
    redrawKeepingFocus(list, () => clear(list, catalog.models.map((m) => card(m, live.models[m.name]))));
  } catch (err) {
    clear(status, errorNotice(err));
    throw err;
  }
});
