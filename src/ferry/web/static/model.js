// A model's page: description and signature, the playground, copy-as snippets, live
// charts, and (on `ferry server`) its versions.
import { lineChart } from "./chart.js";
import { api, badge, can, clear, el, errorNotice, every, figure, fmt, notice, page, tabList, url, versionBadges } from "./common.js";
import { buildRequest, inputError, makeWidget, showResult } from "./playground.js";
import { curl, requests, tritonclient } from "./snippets.js";
import { versionsSection } from "./versions.js";

const main = document.getElementById("main");
const name = page.model;
const path = encodeURIComponent(name);

const heading = el("div");
const playground = el("section", { class: "card", "aria-labelledby": "playground-title" });
const liveSection = el("section", { class: "card", "aria-labelledby": "live-title" });
const signature = el("section", { class: "card", "aria-labelledby": "signature-title" });
const versionsSlot = el("div");
clear(main, heading, playground, liveSection, versionsSlot, signature);

let entry = null;
// The inputs the playground was drawn for: it is drawn again only when they change, so a
// version change on the page keeps what the user drew or typed.
let drawnFor = null;

async function load() {
  const { data } = await api(`api/v1/catalog/${path}`);
  entry = data;
  document.title = `${entry.name} · Ferry`;
  drawHeading();
  return data;
}

function drawHeading() {
  clear(
    heading,
    el("div", { class: "row" }, el("h1", {}, entry.name), badge(entry.state.toLowerCase()), entry.task ? badge(entry.task, "plain") : null),
    el("p", { class: "lead" }, entry.description || entry.reason || "No description."),
    el(
      "p",
      { class: "row" },
      entry.versions.map((v) => el("span", {}, el("span", { class: "mono" }, "v" + v.version), " ", versionBadges(v))),
      entry.default_version ? el("span", { class: "hint" }, `Unversioned requests: ${Object.keys(entry.split || {}).length > 1 ? "split " + Object.entries(entry.split).map(([v, w]) => `v${v} ${w}%`).join(" / ") : "v" + entry.default_version}`) : null,
    ),
  );
}

// -- playground ---------------------------------------------------------------------

function drawPlayground() {
  if (!entry.inputs.length) {
    clear(playground, el("h2", { id: "playground-title" }, "Try it"), notice("error", entry.reason || "The model is not ready, so it cannot be tried yet."));
    return;
  }
  const mayInfer = can("infer");
  const result = el("div", { class: "result", "aria-live": "polite", id: "result" }, el("p", { class: "empty" }, "The answer appears here."));
  const snippetBox = el("div", { class: "snippets" });
  const auto = entry.inputs.length === 1 && ["image", "canvas"].includes(entry.inputs[0].kind);
  const widgets = entry.inputs.map((input) => makeWidget(input, () => auto && mayInfer && run()));
  const versionChoice = el("select", { id: "version-choice" });
  fillVersionChoice(versionChoice);
  drawnFor = JSON.stringify(entry.inputs);
  const runButton = el("button", { type: "submit", id: "run", disabled: !mayInfer }, "Run");
  const form = el(
    "form",
    { "aria-labelledby": "playground-title" },
    widgets.map((w) => w.node),
    el("div", { class: "row" }, el("div", {}, el("label", { for: "version-choice" }, "Version"), versionChoice), el("span", { class: "spacer" }), runButton),
    mayInfer ? null : el("p", { class: "hint" }, "Your key has no infer scope: it cannot run the model."),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  let running = false;
  let again = false; // a stroke finished while a request ran: run once more after it
  async function run() {
    if (running) {
      again = true;
      return;
    }
    let request;
    try {
      request = buildRequest(widgets.map((w) => w.value()));
    } catch (err) {
      inputError(result, err);
      return;
    }
    const version = versionChoice.value;
    drawSnippets(snippetBox, version, request);
    const target = version ? `v2/models/${path}/versions/${version}/infer` : `v2/models/${path}/infer`;
    running = true;
    runButton.setAttribute("aria-busy", "true"); // not disabled: the focus stays on it
    const started = performance.now();
    try {
      const { data } = await api(target, request.form ? { method: "POST", body: request.form } : { method: "POST", json: request.json });
      const ms = performance.now() - started;
      showResult(result, data, `v${data.model_version} answered in ${fmt.ms(ms)}`);
    } catch (err) {
      clear(result, errorNotice(err));
    } finally {
      running = false;
      runButton.removeAttribute("aria-busy");
    }
    if (again) {
      again = false;
      run();
    }
  }
  clear(
    playground,
    el("h2", { id: "playground-title" }, "Try it"),
    el("div", { class: "two" }, form, el("div", {}, el("h3", {}, "Answer"), result)),
    el("h3", {}, "Call it from code"),
    snippetBox,
  );
  clear(snippetBox, el("p", { class: "empty" }, "Run the model once: its request appears here as curl, Python requests and tritonclient code."));
}

// The versions a request can name: every loaded one that answers (not a shadow alone).
function fillVersionChoice(select) {
  const chosen = select.value;
  clear(
    select,
    el("option", { value: "" }, "Let Ferry route it (production or canary split)"),
    entry.versions.filter((v) => v.state === "READY" && !(v.shadow && v.weight === null && !v.stages.length)).map((v) => el("option", { value: v.version }, "v" + v.version)),
  );
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
}

// The snippet tab last chosen, kept across runs.
let snippetKind = "curl";

function drawSnippets(box, version, request) {
  const outputs = entry.outputs.map((o) => o.name);
  const code = { curl: curl(name, version, request), requests: requests(name, version, request), tritonclient: tritonclient(name, version, request, outputs) };
  const pre = el("pre", { tabindex: "0", "aria-label": "Code" }, el("code", { id: "snippet" }, code[snippetKind]));
  const copy = el("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await navigator.clipboard.writeText(code[snippetKind]);
      copy.textContent = "Copied";
    } catch (err) {
      copy.textContent = "Select the code to copy it";
    }
    window.setTimeout(() => (copy.textContent = "Copy"), 2000);
  } }, "Copy");
  const choices = [["curl", "curl"], ["requests", "Python requests"], ["tritonclient", "tritonclient"]];
  const tabs = tabList(choices, (which) => {
    snippetKind = which;
    pre.firstChild.textContent = code[which];
  }, [], snippetKind);
  const keyHint = page.auth ? el("p", { class: "hint" }, "FERRY_API_KEY must hold a key with the infer scope: export FERRY_API_KEY=fy_… (the line Ferry printed at its first start).") : null;
  const files = request.values.filter((v) => v.kind === "file").map((v) => v.file.name);
  const fileHint = files.length ? el("p", { class: "hint" }, `Run it in the folder that holds ${files.join(", ")}, or write its path instead.`) : null;
  clear(box, el("div", { class: "row" }, tabs, el("span", { class: "spacer" }), copy), pre, keyHint, fileHint);
}

// -- live charts --------------------------------------------------------------------

const charts = {
  rps: lineChart("Requests", "per s", []),
  latency: lineChart("Latency", "ms", ["p50", "p99"]),
  errors: lineChart("Errors", "per s", []),
  batch: lineChart("Batch size", "rows per call", []),
  queue: lineChart("Queue", "requests waiting", []),
};
const liveFigures = el("div", { class: "figures" });
const liveStatus = el("div", { role: "status" });
clear(
  liveSection,
  el("h2", { id: "live-title" }, "Live"),
  liveStatus,
  liveFigures,
  el("div", { class: "charts" }, Object.values(charts).map((c) => c.node)),
);

let rpsLabels = "";

async function refreshLive() {
  if (entry.state !== "READY") {
    // Still loading when the page opened (or failed): draw the playground once it is ready.
    await load();
    if (entry.state === "READY") {
      drawPlayground();
      drawSignature();
    }
  }
  const { data } = await api(`api/v1/live?model=${path}`);
  const model = data.models[name];
  if (!model) return;
  const now = model.now;
  clear(liveFigures, figure("req/s", fmt.num(now.rps)), figure("p50", fmt.ms(now.p50_ms)), figure("p99", fmt.ms(now.p99_ms)), figure("requests", fmt.num(model.requests, 0)));
  // One line per version while several answer (a canary), else one for the model.
  const versions = Object.entries(model.versions).slice(-3);
  const several = versions.length > 1;
  const labels = several ? versions.map(([v]) => "v" + v) : [];
  if (labels.join() !== rpsLabels) {
    const chart = lineChart("Requests", "per s", labels);
    charts.rps.node.replaceWith(chart.node);
    charts.rps = chart;
    rpsLabels = labels.join();
  }
  charts.rps.update(data.time, several ? versions.map(([, v]) => v.series.rps) : [model.series.rps]);
  charts.latency.update(data.time, [model.series.p50_ms, model.series.p99_ms]);
  charts.errors.update(data.time, [model.series.errors]);
  charts.batch.update(data.time, [model.series.batch]);
  charts.queue.update(data.time, [model.series.queue]);
}

// -- signature ------------------------------------------------------------------------

function drawSignature() {
  const rows = (kind, list) => list.map((t) => el("tr", {}, el("td", {}, kind), el("td", { class: "mono" }, t.name), el("td", { class: "mono" }, t.datatype), el("td", { class: "mono" }, JSON.stringify(t.shape))));
  clear(
    signature,
    el("h2", { id: "signature-title" }, "Signature"),
    el("p", { class: "hint" }, "What clients send and get (after any pre- and post-processing). -1 is any size. ", el("a", { href: url("docs") }, "API docs")),
    el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ["", "Name", "Datatype", "Shape"].map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows("input", entry.inputs), rows("output", entry.outputs)))),
  );
}

// -- versions -------------------------------------------------------------------------

let registry = false;

async function drawVersions() {
  if (!registry) return;
  const section = versionsSection(entry, async () => {
    await load();
    const choice = document.getElementById("version-choice");
    if (choice && drawnFor === JSON.stringify(entry.inputs)) fillVersionChoice(choice);
    else {
      drawPlayground();
      drawSignature();
    }
    await drawVersions();
  });
  versionsSlot.replaceChildren(section);
  await section.load();
}

async function start() {
  try {
    registry = (await load()).registry;
  } catch (err) {
    clear(main, el("h1", {}, name), errorNotice(err), el("p", {}, el("a", { href: url("") }, "Back to the models")));
    return;
  }
  drawPlayground();
  drawSignature();
  try {
    await drawVersions();
  } catch (err) {
    versionsSlot.replaceChildren(errorNotice(err));
  }
  every(2000, refreshLive, liveStatus);
}

start();
