// "Copy as curl / Python requests / tritonclient": the playground's last request as code
// that runs as pasted, with the key read from $FERRY_API_KEY, as the ferry commands do
// (never the page's own key, which no script on the page can read).
import { page } from "./common.js";

const NUMPY = {
  BOOL: "bool", UINT8: "uint8", UINT16: "uint16", UINT32: "uint32", UINT64: "uint64",
  INT8: "int8", INT16: "int16", INT32: "int32", INT64: "int64",
  FP16: "float16", FP32: "float32", FP64: "float64", BYTES: "object",
};

function endpoint(model, version) {
  const base = `${window.location.origin}${page.root}/v2/models/${encodeURIComponent(model)}`;
  return version ? `${base}/versions/${version}/infer` : `${base}/infer`;
}

function shellQuote(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

// A Python literal for a JSON value (a JSON string is a valid Python string literal).
function py(value) {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return "[" + value.map(py).join(", ") + "]";
  if (typeof value === "object") return "{" + Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${py(v)}`).join(", ") + "}";
  return JSON.stringify(value);
}

// curl -F reads a file for "@name" and "<name" and parses ";type=": a file name is quoted,
// and text goes with --form-string, which takes it as it is.
function formFile(name, filename) {
  return `-F ${shellQuote(`${name}=@"${filename.replace(/["\\]/g, "\\$&")}"`)}`;
}

export function curl(model, version, request) {
  // --fail-with-body: a refusal exits non-zero, with Ferry's {"error": ...} still shown.
  const lines = [`curl -sS --fail-with-body ${shellQuote(endpoint(model, version))}`];
  if (page.auth) lines.push(`  -H "Authorization: Bearer $FERRY_API_KEY"`);
  if (request.form) {
    for (const v of request.values) {
      lines.push(v.kind === "file" ? `  ${formFile(v.name, v.file.name)}` : `  --form-string ${shellQuote(`${v.name}=${v.data[0]}`)}`);
    }
  } else {
    lines.push(`  -H 'Content-Type: application/json'`);
    lines.push(`  -d ${shellQuote(JSON.stringify(request.json))}`);
  }
  return lines.join(" \\\n");
}

export function requests(model, version, request) {
  const lines = ["# pip install requests", "import os", "", "import requests", ""];
  const args = [`    ${py(endpoint(model, version))},`];
  if (request.form) {
    const files = request.values.filter((v) => v.kind === "file").map((v) => `${py(v.name)}: open(${py(v.file.name)}, "rb")`);
    const data = request.values.filter((v) => v.kind !== "file").map((v) => `${py(v.name)}: ${py(String(v.data[0]))}`);
    args.push(`    files={${files.join(", ")}},`);
    if (data.length) args.push(`    data={${data.join(", ")}},`);
  } else {
    args.push(`    json=${py(request.json)},`);
  }
  if (page.auth) args.push(`    headers={"Authorization": "Bearer " + os.environ["FERRY_API_KEY"]},`);
  args.push("    timeout=30,");
  lines.push("response = requests.post(", ...args, ")", "response.raise_for_status()", "for output in response.json()[\"outputs\"]:", "    print(output[\"name\"], output[\"data\"])");
  return lines.join("\n");
}

export function tritonclient(model, version, request, outputs) {
  const secure = window.location.protocol === "https:";
  const lines = ['# pip install "tritonclient[http]" numpy', "import os", "", "import numpy as np", "import tritonclient.http as httpclient", ""];
  lines.push(`client = httpclient.InferenceServerClient(${py(window.location.host + page.root)}${secure ? ", ssl=True" : ""})`);
  const inputs = [];
  request.values.forEach((v, i) => {
    const name = `input${i}`;
    if (v.kind === "file") {
      lines.push(`${name} = httpclient.InferInput(${py(v.name)}, [1], "BYTES")`);
      lines.push(`${name}.set_data_from_numpy(np.array([open(${py(v.file.name)}, "rb").read()], dtype=np.object_))`);
    } else {
      const dtype = NUMPY[v.datatype] || "float32";
      const data = v.datatype === "BYTES" ? v.data.map(String) : v.data;
      lines.push(`${name} = httpclient.InferInput(${py(v.name)}, ${py(v.shape)}, ${py(v.datatype)})`);
      lines.push(`${name}.set_data_from_numpy(np.array(${py(data)}, dtype=np.${dtype === "object" ? "object_" : dtype}).reshape(${v.shape.join(", ")}))`);
    }
    inputs.push(name);
  });
  const options = [];
  if (version) options.push(`model_version=${py(String(version))}`);
  if (page.auth) options.push(`headers={"Authorization": "Bearer " + os.environ["FERRY_API_KEY"]}`);
  lines.push(`result = client.infer(${py(model)}, [${inputs.join(", ")}]${options.map((o) => ", " + o).join("")})`);
  for (const name of outputs) lines.push(`print(${py(name)}, result.as_numpy(${py(name)}))`);
  return lines.join("\n");
}
