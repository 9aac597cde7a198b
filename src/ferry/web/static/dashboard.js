// The overview dashboard: every model's traffic, latency and errors together, from the
// server's own numbers, refreshed every two seconds.
import { lineChart } from "./chart.js";
import { api, clear, el, every, figure, fmt, redrawKeepingFocus, url } from "./common.js";

const main = document.getElementById("main");
const totals = el("div", { class: "figures big", id: "totals" });
const charts = {
  rps: lineChart("Requests", "per s", []),
  latency: lineChart("Latency, all models", "ms", ["p50", "p99"]),
  errors: lineChart("Errors", "per s", []),
  batch: lineChart("Batch size", "rows per call", []),
  queue: lineChart("Queue", "requests waiting", []),
};
const table = el("div", { class: "table-wrap" });
const status = el("div", { role: "status" });
clear(
  main,
  el("h1", {}, "Dashboard"),
  el("p", { class: "lead" }, "This server's traffic over the last few minutes, refreshed every two seconds."),
  status,
  totals,
  el("div", { class: "charts" }, Object.values(charts).map((c) => c.node)),
  el("section", { class: "card", "aria-labelledby": "per-model" }, el("h2", { id: "per-model" }, "Per model"), table),
);

every(2000, async () => {
  const { data } = await api("api/v1/live");
  const total = data.total;
  clear(
    totals,
    el("div", { class: "figure" }, el("span", { class: "label" }, "Requests"), el("span", { class: "value", id: "total-requests" }, fmt.num(total.requests, 0))),
    figure("req/s", fmt.num(total.now.rps)),
    figure("p99", fmt.ms(total.now.p99_ms)),
    figure("errors", fmt.pct(total.now.error_ratio)),
  );
  charts.rps.update(data.time, [total.series.rps]);
  charts.latency.update(data.time, [total.series.p50_ms, total.series.p99_ms]);
  charts.errors.update(data.time, [total.series.errors]);
  charts.batch.update(data.time, [total.series.batch]);
  charts.queue.update(data.time, [total.series.queue]);
  const heads = ["Model", "req/s", "p50", "p99", "Errors", "Batch", "Queue", "Requests"];
  redrawKeepingFocus(table, () => clear(
    table,
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, heads.map((h, i) => el("th", { scope: "col", class: i ? "num" : "" }, h)))),
      el(
        "tbody",
        {},
        Object.entries(data.models).map(([name, m]) =>
          el(
            "tr",
            {},
            el("td", {}, el("a", { href: url("models/" + encodeURIComponent(name)) }, name)),
            el("td", { class: "num" }, fmt.num(m.now.rps)),
            el("td", { class: "num" }, fmt.ms(m.now.p50_ms)),
            el("td", { class: "num" }, fmt.ms(m.now.p99_ms)),
            el("td", { class: "num" }, fmt.pct(m.now.error_ratio)),
            el("td", { class: "num" }, fmt.num(m.now.batch)),
            el("td", { class: "num" }, fmt.num(m.now.queue, 0)),
            el("td", { class: "num" }, fmt.num(m.requests, 0)),
          ),
        ),
      ),
    ),
  ));
}, status);
