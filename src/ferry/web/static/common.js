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

// Runs fn now and every ms while the tab is visible; a failing call is retried next time.
export function every(ms, fn) {
  let timer = null;
  const tick = async () => {
    timer = null;
    if (!document.hidden) {
      try {
        await fn();
      } catch (err) {
        if (!(err instanceof ApiError)) console.warn(err);
      }
    }
    timer = window.setTimeout(tick, ms);
  };
  tick();
  return () => timer && window.clearTimeout(timer);
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
