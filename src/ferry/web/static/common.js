// What every page of the web app shares: the page's context (read from the header the
// server drew), calls to Ferry's API as the signed-in session, building elements without
// innerHTML (nothing from the server is ever parsed as HTML), confirmations, formatting.

const header = document.querySelector("header.top");

export const page = {
  root: header.dataset.root || "",
  name: header.dataset.page,
  model: header.dataset.model || "",
  scopes: new Set((header.dataset.scopes || "").split(" ").filter(Boolean)),
  auth: header.dataset.auth === "on",
};

export function url(path) {
  return page.root + "/" + path;
}

export function can(scope) {
  return page.scopes.has(scope) || page.scopes.has("admin");
}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// Calls the API with the session cookie. Changes carry X-Ferry-CSRF: a cross-site form
// cannot set a header, so the server knows the page itself sent them.
export async function api(path, options = {}) {
  const method = options.method || "GET";
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  let body = options.body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  if (method !== "GET") headers["X-Ferry-CSRF"] = "1";
  let response;
  try {
    response = await fetch(url(path), { method, headers, body, credentials: "same-origin" });
  } catch (err) {
    throw new ApiError("The server cannot be reached. Check that Ferry is running, then try again.", 0);
  }
  if (response.status === 401 && page.auth) {
    signIn();
    throw new ApiError("Your session has ended: sign in again.", 401);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (err) {
      data = text;
    }
  }
  if (!response.ok) throw new ApiError(errorMessage(data, response), response.status);
  return { data, response };
}

function errorMessage(data, response) {
  let message = "";
  if (data && typeof data === "object") {
    if (typeof data.error === "string") message = data.error;
    else if (Array.isArray(data.detail)) message = data.detail.map((d) => d.msg || String(d)).join("; ");
    else if (typeof data.detail === "string") message = data.detail;
  }
  if (!message) message = response.statusText || "the request failed";
  // Only the first line: a message is for people, never a trace.
  return message.split("\n")[0].slice(0, 500) + " (HTTP " + response.status + ")";
}

export function signIn() {
  const here = window.location.pathname.slice(page.root.length + 1);
  window.location.assign(url("login?next=" + encodeURIComponent(here)));
}

// el("a", {href: "/", class: "x", onclick: fn}, "text", child)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export function notice(kind, message) {
  return el("p", { class: "notice " + kind, role: kind === "error" ? "alert" : "status" }, message);
}

export function errorNotice(err) {
  return notice("error", err instanceof ApiError ? err.message : "Something went wrong: " + err);
}

export function badge(text, kind) {
  return el("span", { class: "badge " + (kind || String(text).toLowerCase()) }, text);
}

// A version's stages, its share of the traffic split and whether it is the shadow.
export function versionBadges(version) {
  return [
    ...version.stages.map((stage) => badge(stage, "stage")),
    version.weight !== null && version.weight !== undefined ? badge(version.weight + "% traffic", "canary") : null,
    version.shadow ? badge("shadow", "plain") : null,
  ];
}

// A modal confirmation (the native <dialog>: focus is trapped and Escape cancels).
export function confirmAction(title, message, confirmLabel, danger = false) {
  return new Promise((resolve) => {
    const dialog = el(
      "dialog",
      { "aria-labelledby": "confirm-title" },
      el("h2", { id: "confirm-title" }, title),
      el("p", {}, message),
      el(
        "div",
        { class: "actions" },
        el("button", { type: "button", class: "secondary", value: "cancel", onclick: () => dialog.close("cancel") }, "Cancel"),
        el("button", { type: "button", class: danger ? "danger" : "", onclick: () => dialog.close("ok") }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Runs fn now and every ms while the tab is visible. A failing call is retried next time;
// meanwhile ``status`` (if given) says why the numbers stopped moving.
export function every(ms, fn, status = null) {
  let timer = null;
  const tick = async () => {
    timer = null;
    if (!document.hidden) {
      try {
        await fn();
        if (status) clear(status);
      } catch (err) {
        if (status) clear(status, errorNotice(err));
        else if (!(err instanceof ApiError)) console.warn(err);
      }
    }
    timer = window.setTimeout(tick, ms);
  };
  tick();
  return () => timer && window.clearTimeout(timer);
}

// Redraws ``container`` with ``draw`` keeping keyboard focus: the element focused inside
// it (found again by its href, id or data-key) is focused again after the redraw.
export function redrawKeepingFocus(container, draw) {
  const focused = document.activeElement;
  let selector = null;
  if (focused && container.contains(focused)) {
    if (focused.id) selector = "#" + CSS.escape(focused.id);
    else if (focused.getAttribute("href")) selector = `[href="${CSS.escape(focused.getAttribute("href"))}"]`;
    else if (focused.dataset.key) selector = `[data-key="${CSS.escape(focused.dataset.key)}"]`;
  }
  draw();
  if (selector) {
    const again = container.querySelector(selector);
    if (again) again.focus();
  }
}

// Tabs (the WAI-ARIA pattern): arrow keys, Home and End move between them; only the
// chosen one is in the tab order; each controls its panel.
let tabCount = 0;
export function tabList(choices, onChoose, panels = [], chosen = null) {
  const base = "tab" + ++tabCount;
  const first = chosen && choices.some(([v]) => v === chosen) ? chosen : choices[0][0];
  const buttons = choices.map(([value, label], i) =>
    el("button", { type: "button", role: "tab", id: `${base}-${i}`, "aria-controls": panels[i] ? `${base}-panel-${i}` : null, onclick: () => choose(value, true) }, label),
  );
  panels.forEach((panel, i) => {
    panel.id = `${base}-panel-${i}`;
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", `${base}-${i}`);
  });
  function choose(value, focus) {
    choices.forEach(([v], i) => {
      const on = v === value;
      buttons[i].setAttribute("aria-selected", on ? "true" : "false");
      buttons[i].tabIndex = on ? 0 : -1;
      if (on && focus) buttons[i].focus();
      if (panels[i]) panels[i].hidden = !on;
    });
    onChoose(value);
  }
  const list = el("div", { class: "tabs", role: "tablist" }, buttons);
  list.addEventListener("keydown", (event) => {
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: buttons.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    choose(choices[(next + buttons.length) % buttons.length][0], true);
  });
  choose(first, false);
  return list;
}

export const fmt = {
  num(value, digits = 1) {
    if (value === null || value === undefined) return "–";
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
  },
  ms(value) {
    if (value === null || value === undefined) return "–";
    return value < 10 ? value.toFixed(2) + " ms" : value < 1000 ? value.toFixed(1) + " ms" : (value / 1000).toFixed(2) + " s";
  },
  pct(ratio) {
    return ratio === null || ratio === undefined ? "–" : (ratio * 100).toFixed(ratio && ratio < 0.01 ? 2 : 1) + "%";
  },
  time(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    return isNaN(date) ? String(iso) : date.toLocaleString();
  },
};

export function figure(label, value) {
  return el("div", { class: "figure" }, el("span", { class: "label" }, label), el("span", { class: "value" }, value));
}

function wireSignOut() {
  const button = document.getElementById("sign-out");
  if (!button) return;
  button.addEventListener("click", async () => {
    try {
      await api("api/v1/session", { method: "DELETE" });
    } finally {
      window.location.assign(url("login"));
    }
  });
}

wireSignOut();
