// A small SVG line chart for the live numbers: up to three series over the last few
// minutes, y from 0 to a round maximum, gaps where a series has no value.
import { el } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 300;
const H = 120;
const LEFT = 34;
const BOTTOM = 16;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function roundUp(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function label(value) {
  return value >= 1000 ? (value / 1000).toFixed(value >= 10000 ? 0 : 1) + "k" : String(+value.toFixed(2));
}

export function lineChart(title, unit, names) {
  const image = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", preserveAspectRatio: "none" });
  const legend = names.length > 1 ? el("div", { class: "legend" }, names.map((n, i) => el("span", { class: "key" + i }, n))) : null;
  const node = el("figure", { class: "chart" }, el("h3", {}, title + (unit ? ` (${unit})` : "")), image, legend);

  function update(times, series) {
    image.replaceChildren();
    const values = series.flat().filter((v) => v !== null && v !== undefined);
    const top = roundUp(Math.max(0, ...values));
    const n = Math.max(times.length, 2);
    const x = (i) => LEFT + ((W - LEFT - 4) * i) / (n - 1);
    const y = (v) => H - BOTTOM - ((H - BOTTOM - 6) * v) / top;
    image.append(
      svg("line", { class: "axis", x1: LEFT, x2: W, y1: H - BOTTOM, y2: H - BOTTOM }),
      svg("line", { class: "axis", x1: LEFT, x2: W, y1: y(top), y2: y(top) }),
    );
    const yTop = svg("text", { class: "tick", x: LEFT - 4, y: y(top) + 4, "text-anchor": "end" });
    yTop.textContent = label(top);
    const yZero = svg("text", { class: "tick", x: LEFT - 4, y: H - BOTTOM + 3, "text-anchor": "end" });
    yZero.textContent = "0";
    const span = times.length > 1 ? Math.round(times[times.length - 1] - times[0]) : 0;
    const start = svg("text", { class: "tick", x: LEFT, y: H - 3 });
    start.textContent = span >= 120 ? `-${Math.round(span / 60)} min` : `-${span} s`;
    const end = svg("text", { class: "tick", x: W - 2, y: H - 3, "text-anchor": "end" });
    end.textContent = "now";
    image.append(yTop, yZero, start, end);
    series.forEach((points, s) => {
      let d = "";
      let pen = false;
      points.forEach((v, i) => {
        if (v === null || v === undefined) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      if (d) image.append(svg("path", { class: "s" + s, d }));
    });
    const latest = series.map((points, s) => `${names[s] || title}: ${points.length ? points[points.length - 1] ?? "no data" : "no data"}`);
    image.setAttribute("aria-label", `${title}, latest ${latest.join(", ")}`);
  }
  return { node, update };
}
