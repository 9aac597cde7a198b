// The playground: one widget per model input, chosen by the server from the signature
// and config (image, canvas, text, form, json); builds an Open Inference Protocol request
// (JSON, or a multipart form when images are sent) and shows the answer.
import { clear, el, notice, tabList } from "./common.js";

const BROWSER_IMAGES = "image/png,image/jpeg,image/webp,image/gif,image/bmp,image/tiff";

// Each widget: { node, value() } where value() returns one of
//   { kind: "tensor", datatype, shape, data } or { kind: "file", file } (images),
// or throws an Error whose message is shown to the user.
export function makeWidget(input, onReady) {
  const make = { image: imageWidget, canvas: canvasWidget, text: textWidget, form: formWidget }[input.kind] || jsonWidget;
  return make(input, onReady);
}

function title(input, what) {
  return el("h3", {}, input.name + " ", el("span", { class: "hint mono" }, `${input.datatype} ${JSON.stringify(input.shape)} · ${what}`));
}

function imageWidget(input, onReady) {
  const id = "file-" + input.name;
  const preview = el("img", { alt: "" });
  preview.hidden = true;
  const chosen = el("p", { class: "hint", "aria-live": "polite" }, "No image chosen yet.");
  const fileInput = el("input", { type: "file", id, accept: BROWSER_IMAGES, "data-input": input.name });
  let file = null;
  function use(next) {
    if (!next) return;
    file = next;
    chosen.textContent = `${file.name} (${Math.max(1, Math.round(file.size / 1024))} KB)`;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.alt = "Preview of " + file.name;
    preview.hidden = false;
    onReady();
  }
  fileInput.addEventListener("change", () => use(fileInput.files[0]));
  const zone = el("div", { class: "drop" }, el("label", { for: id }, "Drop an image here, or choose a file"), fileInput, chosen, preview);
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    use(event.dataTransfer.files[0]);
  });
  return {
    node: el("div", { class: "field" }, title(input, "image"), zone),
    value() {
      if (!file) throw new Error(`Choose an image for ${input.name} first.`);
      return { kind: "file", file, name: input.name };
    },
  };
}

function canvasWidget(input, onReady) {
  const size = 256;
  const board = el("canvas", { class: "draw", width: size, height: size, "aria-label": `Drawing area for ${input.name}: draw with the mouse, a pen or a finger`, role: "img", "data-input": input.name });
  const small = el("canvas", { class: "preview", width: input.width, height: input.height, "aria-label": `What the model sees: ${input.width} by ${input.height} pixels`, role: "img" });
  const pen = board.getContext("2d", { willReadFrequently: true });
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.lineWidth = Math.round(size / 8);
  pen.strokeStyle = "#000";
  let drawing = false;
  let inked = false;
  const at = (event) => {
    const box = board.getBoundingClientRect();
    return [((event.clientX - box.left) * size) / box.width, ((event.clientY - box.top) * size) / box.height];
  };
  board.addEventListener("pointerdown", (event) => {
    window.clearTimeout(pause);
    drawing = true;
    board.setPointerCapture(event.pointerId);
    const [x, y] = at(event);
    pen.beginPath();
    pen.moveTo(x, y);
    pen.lineTo(x + 0.1, y);
    pen.stroke();
    inked = true;
  });
  board.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = at(event);
    pen.lineTo(x, y);
    pen.stroke();
  });
  // The model runs once the drawing pauses, not after each stroke of a 4 or a 7.
  let pause = null;
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    showPreview();
    pause = window.setTimeout(onReady, 700);
  };
  board.addEventListener("pointerup", finish);
  board.addEventListener("pointercancel", finish);
  const clearButton = el("button", { type: "button", class: "secondary", onclick: () => {
    pen.clearRect(0, 0, size, size);
    small.getContext("2d").clearRect(0, 0, input.width, input.height);
    inked = false;
  } }, "Clear");

  // The drawing's ink, cropped to its bounding square and centred (as the 8x8 digits were
  // made from normalised 32x32 bitmaps), then averaged into input.height x input.width
  // cells: 0 = no ink, 1 = full.
  function cells() {
    const pixels = pen.getImageData(0, 0, size, size).data;
    let top = size, left = size, bottom = -1, right = -1;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        if (pixels[(y * size + x) * 4 + 3] > 64) {
          if (y < top) top = y;
          if (y > bottom) bottom = y;
          if (x < left) left = x;
          if (x > right) right = x;
        }
      }
    }
    const out = new Float64Array(input.height * input.width);
    if (bottom < 0) return out;
    const side = Math.max(bottom - top, right - left) + 1;
    const cy = (top + bottom) / 2, cx = (left + right) / 2;
    const fine = 4; // samples per cell side
    const rows = input.height * fine, cols = input.width * fine;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const y = Math.floor(cy - side / 2 + ((r + 0.5) * side) / rows);
        const x = Math.floor(cx - side / 2 + ((c + 0.5) * side) / cols);
        if (y >= 0 && y < size && x >= 0 && x < size && pixels[(y * size + x) * 4 + 3] > 64) {
          out[Math.floor(r / fine) * input.width + Math.floor(c / fine)] += 1 / (fine * fine);
        }
      }
    }
    return out;
  }

  function showPreview() {
    const values = cells();
    const context = small.getContext("2d");
    const image = context.createImageData(input.width, input.height);
    values.forEach((v, i) => {
      const shade = 255 - Math.round(v * 255);
      image.data.set([shade, shade, shade, 255], i * 4);
    });
    context.putImageData(image, 0, 0);
  }

  // Without a pointer (keyboard, screen reader): the same pixels typed as numbers.
  const typedId = "typed-" + input.name;
  const typed = el("textarea", { id: typedId, class: "code", rows: 6, spellcheck: "false" });
  typed.value = JSON.stringify(Array.from({ length: input.height }, () => Array(input.width).fill(input.range[0])));
  const drawPane = el("div", { class: "canvas-wrap" }, board, el("div", {}, small, el("p", { class: "hint" }, "What the model sees"), clearButton));
  const typePane = el(
    "div",
    {},
    el("label", { for: typedId }, `${input.height} rows of ${input.width} values, from ${input.range[0]} (background) to ${input.range[1]} (ink)`),
    typed,
  );
  let mode = "draw";
  const tabs = tabList([["draw", "Draw"], ["type", "Type the values"]], (chosen) => (mode = chosen), [drawPane, typePane]);

  return {
    node: el("div", { class: "field" }, title(input, `draw (${input.height}x${input.width})`), tabs, drawPane, typePane),
    value() {
      let data;
      if (mode === "type") {
        try {
          data = [JSON.parse(typed.value)].flat(Infinity).map(Number);
        } catch (err) {
          throw new Error(`The values for ${input.name} are not valid JSON: ${err.message}`);
        }
        if (data.length !== input.height * input.width || data.some((v) => isNaN(v))) {
          throw new Error(`Type ${input.height * input.width} numbers for ${input.name}.`);
        }
      } else {
        if (!inked) throw new Error(`Draw something for ${input.name} first.`);
        const [low, high] = input.range;
        // Integer inputs take whole numbers: a half-inked pixel is rounded.
        const whole = /^U?INT/.test(input.datatype);
        data = Array.from(cells(), (v) => (whole ? Math.round : round)(low + v * (high - low)));
      }
      return { kind: "tensor", name: input.name, datatype: input.datatype, shape: input.batch_shape, data };
    },
  };
}

function round(value) {
  return Math.round(value * 1e4) / 1e4;
}

function textWidget(input) {
  const id = "text-" + input.name;
  const area = el("textarea", { id, rows: 4, "data-input": input.name, placeholder: "Type some text" });
  return {
    node: el("div", { class: "field" }, title(input, "text"), el("label", { for: id, class: "visually-hidden" }, input.name), area),
    value() {
      if (!area.value.trim()) throw new Error(`Type some text for ${input.name} first.`);
      return { kind: "tensor", name: input.name, datatype: "BYTES", shape: input.batch_shape, data: [area.value] };
    },
  };
}

function formWidget(input) {
  const features = input.features;
  const fields = features.map((feature, i) => {
    const id = `f-${input.name}-${i}`;
    return el("div", {}, el("label", { for: id }, feature), el("input", { id, type: "number", step: "any", inputmode: "decimal", "data-feature": i }));
  });
  const csvId = "csv-" + input.name;
  const csv = el("textarea", { id: csvId, class: "code", rows: 5, placeholder: features.join(",") + "\n" + features.map(() => "0").join(",") });
  const single = el("div", { class: "fields" }, fields);
  const batch = el("div", {}, el("label", { for: csvId }, "CSV rows, one per line"), csv, el("p", { class: "hint" }, `${features.length} numbers per line, separated by commas or tabs, in the order ${features.join(", ")}. A header line is skipped.`));
  let mode = "row";
  const tabs = tabList([["row", "One row"], ["csv", "Paste CSV (a batch)"]], (chosen) => (mode = chosen), [single, batch]);
  return {
    node: el("div", { class: "field" }, title(input, "form"), tabs, single, batch),
    value() {
      let rows;
      if (mode === "row") {
        rows = [fields.map((field, i) => number(field.querySelector("input").value, features[i]))];
      } else {
        // Commas, or tabs as rows copied from a spreadsheet come.
        const cellsOf = (line) => line.split(/\t|,/);
        const lines = csv.value.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
        // A header: a first line with no number in it (a mistyped row is reported instead).
        if (lines.length && cellsOf(lines[0]).every((cell) => cell.trim() && isNaN(Number(cell)))) lines.shift();
        if (!lines.length) throw new Error("Paste at least one CSV row.");
        rows = lines.map((line, r) => {
          const cells = cellsOf(line);
          if (cells.length !== features.length) throw new Error(`Line ${r + 1} has ${cells.length} values; ${features.length} are needed.`);
          return cells.map((cell, i) => number(cell, `${features[i]} on line ${r + 1}`));
        });
      }
      return { kind: "tensor", name: input.name, datatype: input.datatype, shape: [rows.length, features.length], data: rows.flat() };
    },
  };
}

function number(text, what) {
  if (String(text).trim() === "" || isNaN(Number(text))) throw new Error(`Enter a number for ${what}.`);
  return Number(text);
}

function jsonWidget(input) {
  const id = "json-" + input.name;
  const area = el("textarea", { id, class: "code", spellcheck: "false", "data-input": input.name });
  area.value = input.example === undefined || input.example === null ? "" : JSON.stringify(input.example);
  return {
    node: el("div", { class: "field" }, title(input, "JSON"), el("label", { for: id }, "Tensor data as nested JSON arrays"), area),
    value() {
      let data;
      try {
        data = JSON.parse(area.value);
      } catch (err) {
        throw new Error(`The JSON for ${input.name} is not valid: ${err.message}`);
      }
      const shape = shapeOf(data);
      return { kind: "tensor", name: input.name, datatype: input.datatype, shape, data: [data].flat(Infinity) };
    },
  };
}

function shapeOf(data) {
  const shape = [];
  let level = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  return shape.length ? shape : [1];
}

// The request for the widgets' values: JSON, or a multipart form when an image is sent
// (Ferry takes one form field per BYTES input).
export function buildRequest(values) {
  if (values.some((v) => v.kind === "file")) {
    const form = new FormData();
    for (const v of values) {
      if (v.kind === "file") form.append(v.name, v.file, v.file.name);
      else if (v.datatype === "BYTES") form.append(v.name, String(v.data[0]));
      else throw new Error(`${v.name} cannot be sent with an image in one form; use the API for this model.`);
    }
    return { form, values };
  }
  return { json: { inputs: values.map((v) => ({ name: v.name, datatype: v.datatype, shape: v.shape, data: v.data })) }, values };
}

// The answer: labelled bars for class scores, a table for a batch, else JSON.
export function showResult(target, answer, meta) {
  const outputs = Object.fromEntries((answer.outputs || []).map((o) => [o.name, o]));
  const rows = Math.max(1, ...Object.values(outputs).map((o) => (o.shape && o.shape.length ? o.shape[0] : 1)));
  const parts = [];
  if (rows === 1 && outputs.classes && outputs.scores) {
    parts.push(bars(outputs.classes.data.map(String), outputs.scores.data));
  } else if (rows === 1 && outputs.probabilities) {
    const probabilities = outputs.probabilities.data;
    parts.push(bars(probabilities.map((_, i) => String(i)), probabilities));
  }
  if (rows > 1) parts.push(batchTable(outputs, rows));
  const others = Object.values(outputs).filter((o) => !(parts.length && rows === 1 && ["classes", "scores", "probabilities"].includes(o.name)));
  if (rows === 1 && others.length) parts.push(outputList(others));
  clear(target, el("p", { class: "meta", "data-version": answer.model_version || "" }, meta), parts);
}

function bars(labels, scores) {
  const order = scores.map((score, i) => [Number(score), labels[i]]).sort((a, b) => b[0] - a[0]).slice(0, 10);
  return el(
    "ul",
    { class: "bars", "aria-label": "Scores, best first" },
    order.map(([score, label]) => {
      const fill = el("div", { class: "fill" });
      fill.style.width = Math.max(0, Math.min(100, score * 100)).toFixed(1) + "%";
      return el("li", {}, el("span", { class: "name" }, label), el("div", { class: "track", "aria-hidden": "true" }, fill), el("span", { class: "pct" }, (score * 100).toFixed(1) + "%"));
    }),
  );
}

function short(values) {
  const text = values.map((v) => (typeof v === "number" && !Number.isInteger(v) ? +v.toPrecision(4) : v)).join(", ");
  return values.length > 8 ? `[${values.slice(0, 8).map((v) => (typeof v === "number" ? +v.toPrecision(4) : v)).join(", ")}, … ${values.length} values]` : values.length > 1 ? `[${text}]` : text;
}

function rowOf(output, r) {
  const per = output.shape && output.shape.length > 1 ? output.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
  return output.data.slice(r * per, (r + 1) * per);
}

function batchTable(outputs, rows) {
  const list = Object.values(outputs);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Row"), list.map((o) => el("th", { scope: "col" }, o.name)))),
      el("tbody", {}, Array.from({ length: rows }, (_, r) => el("tr", {}, el("td", {}, String(r + 1)), list.map((o) => el("td", { class: "mono" }, short(rowOf(o, r))))))),
    ),
  );
}

function outputList(list) {
  return el(
    "dl",
    { class: "outputs" },
    list.map((o) => [el("dt", {}, `${o.name} `, el("span", { class: "hint mono" }, `${o.datatype} ${JSON.stringify(o.shape)}`)), el("dd", { class: "mono" }, short(o.data))]),
  );
}

export function inputError(target, err) {
  clear(target, notice("error", err.message));
}
