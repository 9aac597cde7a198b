// A model's versions on `ferry server`: the table, and for deploy keys the upload (with
// its validation), promote, canary split and rollback, each confirmed first. Every
// change goes through the management API, which writes it to the audit trail.
import { api, badge, can, clear, confirmAction, el, errorNotice, fmt, notice, signIn, url, versionBadges } from "./common.js";

// The outcome of the last change, kept across the redraw that follows it.
let lastNotice = null;

export function versionsSection(entry, refresh) {
  const section = el("section", { class: "card", "aria-labelledby": "versions-title" });
  const status = el("div", { role: "status", "aria-live": "polite", tabindex: "-1", id: "versions-status" }, lastNotice);
  const say = (node) => {
    lastNotice = node;
    clear(status, node);
  };
  const table = el("div", { class: "table-wrap" });
  const tools = el("div");
  const deploy = can("deploy");
  clear(section, el("h2", { id: "versions-title" }, "Versions"), status, table, tools);

  async function load() {
    const { data: versions } = await api(`api/v1/models/${encodeURIComponent(entry.name)}/versions`);
    if (deploy) tools.replaceChildren(controls(entry, versions, say, refresh));
    const live = Object.fromEntries(entry.versions.map((v) => [v.version, v]));
    const production = entry.versions.find((v) => v.stages.includes("production"));
    clear(
      table,
      el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ["Version", "State", "Serving", "Runtime", "Uploaded", deploy ? "Actions" : null].filter(Boolean).map((h) => el("th", { scope: "col" }, h)))),
        el(
          "tbody",
          {},
          versions
            .slice()
            .reverse()
            .map((v) => {
              const serving = live[String(v.number)];
              const isProduction = production && production.version === String(v.number);
              return el(
                "tr",
                { "data-version": v.number },
                el("td", { class: "mono" }, "v" + v.number),
                el("td", {}, badge(v.state), v.failure_reason ? el("p", { class: "hint" }, v.failure_reason) : null, v.warmup_ms !== null && v.warmup_ms !== undefined ? el("p", { class: "hint" }, `warm-up ${fmt.ms(v.warmup_ms)}`) : null),
                el("td", {}, serving ? versionBadges(serving) : el("span", { class: "hint" }, "not serving")),
                el("td", {}, `${v.runtime} · ${v.filename}`),
                el("td", {}, fmt.time(v.created_at), el("p", { class: "hint" }, v.uploaded_by)),
                deploy
                  ? el("td", {}, el("div", { class: "actions" }, v.state === "ready" && !isProduction ? el("button", { type: "button", class: "secondary", onclick: () => promote(v.number) }, "Promote to production") : null))
                  : null,
              );
            }),
        ),
      ),
    );
    return versions;
  }

  function promote(number) {
    return confirmThen(
      say,
      refresh,
      `Promote v${number}?`,
      `Production of ${entry.name} will point at version ${number}. Unversioned requests go to it as soon as it is live, unless a canary split is set.`,
      "Promote",
      () => api(`api/v1/models/${encodeURIComponent(entry.name)}/stages/production`, { method: "PUT", json: { version: number } }),
      `v${number} is now production.`,
    );
  }

  section.load = load;
  return section;
}

// Asks first; then makes the change, says how it went and redraws the page. The outcome
// takes the focus (the button that was pressed is redrawn away).
async function confirmThen(say, refresh, title, message, label, call, done) {
  if (!(await confirmAction(title, message, label, label === "Roll back"))) return;
  say(notice("ok", "Working…"));
  try {
    await call();
    say(notice("ok", done));
    try {
      await refresh();
    } catch (err) {
      say(notice("ok", `${done} (The page could not be redrawn: reload it.)`));
    }
  } catch (err) {
    say(errorNotice(err));
  }
  // The redraw made a new status element (holding the outcome): focus the one on the page.
  document.getElementById("versions-status")?.focus();
}

// Upload, canary and rollback; ``versions`` is the registry's list (loaded or not).
function controls(entry, versions, say, refresh) {
  const name = entry.name;
  const production = entry.versions.find((v) => v.stages.includes("production"));
  const candidates = versions
    .filter((v) => v.state === "ready" && (!production || String(v.number) !== production.version))
    .map((v) => ({ version: String(v.number) }));
  // Upload
  const file = el("input", { type: "file", id: "upload-file", required: true });
  const config = el("input", { type: "file", id: "upload-config", accept: ".yaml,.yml,.json" });
  const stage = el("select", { id: "upload-stage" }, el("option", { value: "" }, "No stage"), el("option", { value: "staging" }, "staging"), el("option", { value: "production" }, "production"));
  const progress = el("p", { class: "hint", role: "status", "aria-live": "polite" });
  const upload = el(
    "form",
    { class: "upload", "aria-labelledby": "upload-title" },
    el("h3", { id: "upload-title" }, "Upload a new version"),
    el(
      "div",
      { class: "fields" },
      el("div", {}, el("label", { for: "upload-file" }, "Model file (.onnx, .skops, .pt, .pt2)"), file),
      el("div", {}, el("label", { for: "upload-config" }, "config.yaml (optional)"), config),
      el("div", {}, el("label", { for: "upload-stage" }, "Then put it on"), stage),
    ),
    el("p", { class: "hint" }, "Without a config.yaml, the version takes the latest ready version's config (pre- and post-processing, labels, batching)."),
    el("button", { type: "submit" }, "Upload and validate"),
    progress,
  );
  upload.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!file.files[0]) return;
    send(name, file.files[0], stage.value, progress, say, refresh, config.files[0], upload.querySelector("button"));
  });

  // Canary
  const version = el("select", { id: "canary-version" }, candidates.map((v) => el("option", { value: v.version }, "v" + v.version)));
  // The canary's current share when one is set, else 10%.
  const current = Object.entries(entry.split || {}).find(([v]) => !production || v !== production.version);
  const percent = el("input", { id: "canary-percent", type: "number", min: 1, max: 99, value: current ? current[1] : 10 });
  if (current) version.value = current[0];
  // Weights set (a canary, or every request pinned to one version): rollback ends them.
  const split = Object.keys(entry.split || {}).length > 0;
  const splitText = Object.entries(entry.split || {}).map(([v, w]) => `v${v} ${w}%`).join(" / ");
  const after = production ? `production v${production.version}` : "the highest version served";
  const canary = el(
    "form",
    { "aria-labelledby": "canary-title" },
    el("h3", { id: "canary-title" }, "Canary"),
    production
      ? el(
          "div",
          {},
          el("p", { class: "hint" }, `Send a share of unversioned requests to another ready version; production (v${production.version}) keeps the rest.`),
          candidates.length
            ? el("div", { class: "fields" }, el("div", {}, el("label", { for: "canary-version" }, "Version"), version), el("div", {}, el("label", { for: "canary-percent" }, "Percent of traffic"), percent))
            : el("p", { class: "empty" }, "No other ready version to send traffic to: upload one first."),
          el("div", { class: "actions" }, candidates.length ? el("button", { type: "submit" }, "Set canary") : null),
        )
      : el("p", { class: "empty" }, "Promote a version to production first."),
  );
  const act = (...args) => confirmThen(say, refresh, ...args);
  canary.addEventListener("submit", (event) => {
    event.preventDefault();
    const p = Number(percent.value);
    if (!(p >= 1 && p <= 99)) {
      say(notice("error", "The canary percent must be between 1 and 99."));
      return;
    }
    const v = version.value;
    act(
      `Send ${p}% to v${v}?`,
      `${p}% of unversioned requests to ${name} will go to v${v}, ${100 - p}% to production v${production.version}. This replaces any split or shadow set before.`,
      "Set canary",
      () => api(`api/v1/models/${encodeURIComponent(name)}/traffic`, { method: "PUT", json: { weights: { [production.version]: 100 - p, [v]: p } } }),
      `Canary set: v${v} takes ${p}% of traffic.`,
    );
  });


  // Rollback: during a canary, back to production alone; else production to the version before.
  const rollback = el(
    "div",
    {},
    el("h3", {}, "Roll back"),
    el("p", { class: "hint" }, split
      ? `Traffic is split (${splitText}): rolling back sends every request to ${after} again.`
      : "Production goes back to the version it pointed at before its last change; any shadow is cleared."),
    el("button", {
      type: "button",
      class: "danger",
      id: "rollback",
      onclick: () => split
        ? act("Roll back the canary?", `Every unversioned request to ${name} will go to ${after}; the split ends, and any shadow is removed.`, "Roll back", () => api(`api/v1/models/${encodeURIComponent(name)}/traffic`, { method: "DELETE" }), `Rolled back: ${after} takes all traffic.`)
        : act("Roll back production?", `Production of ${name} will go back to its previous version, and any shadow will be cleared.`, "Roll back", () => api(`api/v1/models/${encodeURIComponent(name)}/rollback`, { method: "POST" }), "Rolled back."),
    }, split ? "Roll back the canary" : "Roll back production"),
  );
  return el("div", { class: "two deploy" }, el("div", {}, upload), el("div", {}, canary, rollback));
}

// The upload with progress; the answer comes once the server has validated the version.
export function send(name, file, stage, progress, say, refresh, config, button) {
  // One upload at a time from this form: a second click would make a second version.
  if (button) button.disabled = true;
  const done = () => {
    if (!button) return;
    button.disabled = false;
    if (document.activeElement === document.body) button.focus(); // it lost the focus when disabled
  };
  const form = new FormData();
  form.append("file", file, file.name);
  if (config) form.append("config", config, config.name);
  if (stage) form.append("stage", stage);
  const request = new XMLHttpRequest();
  request.open("POST", url(`api/v1/models/${encodeURIComponent(name)}/versions`));
  request.setRequestHeader("X-Ferry-CSRF", "1");
  request.setRequestHeader("Accept", "application/json");
  request.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) progress.textContent = `Uploading ${file.name}: ${Math.round((100 * event.loaded) / event.total)}%`;
  });
  request.upload.addEventListener("load", () => {
    progress.textContent = "Validating: loading the model, reading its signature, running a warm-up inference…";
  });
  request.addEventListener("load", async () => {
    done();
    if (request.status === 401) {
      signIn();
      return;
    }
    let body = null;
    try {
      body = JSON.parse(request.responseText);
    } catch (err) {
      body = null;
    }
    if (request.status >= 200 && request.status < 300 && body) {
      progress.textContent = "";
      say(
        body.state === "ready"
          ? notice("ok", `v${body.number} is ready${stage ? ` and on ${stage}` : ""} (warm-up ${fmt.ms(body.warmup_ms)}).`)
          : notice("error", `v${body.number} failed validation: ${body.failure_reason || body.state}. It will never take traffic.`),
      );
      await refresh(body);
    } else {
      progress.textContent = "";
      const message = body && typeof body.error === "string" ? body.error : `the upload failed (HTTP ${request.status})`;
      say(notice("error", message));
    }
  });
  request.addEventListener("error", () => {
    done();
    progress.textContent = "";
    say(notice("error", "The upload did not reach the server."));
  });
  progress.textContent = `Uploading ${file.name}…`;
  request.send(form);
}
