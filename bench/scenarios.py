"""The requests the benchmark sends, and a one-off check that a server answers them right.

Every server gets byte-for-byte the same body for a scenario; the reference answer comes
from onnxruntime in this process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class Scenario:
    key: str
    title: str
    model: str
    binary: bool
    body: bytes
    headers: dict[str, str]
    output_name: str
    expected: np.ndarray = field(repr=False)

    @property
    def path(self) -> str:
        return f"/v2/models/{self.model}/infer"


def sample_inputs() -> dict[str, np.ndarray]:
    """One digit (raw 0-16 pixels) for the MLP; one fixed random image for the CNN.

    The JSON bodies carry the float32 values as a numpy client writes them (``tolist()``,
    which tritonclient's JSON path also does): full-precision numbers, so the CNN's body is
    about 230 KB."""
    from sklearn.datasets import load_digits

    digit = load_digits().data[:1].astype(np.float32)
    image = np.random.default_rng(0).random((1, 3, 64, 64)).astype(np.float32)
    return {"mlp": digit, "cnn": image}


def _json_body(array: np.ndarray) -> bytes:
    tensor = {"name": "input", "shape": list(array.shape), "datatype": "FP32", "data": array.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()


def _binary_body(array: np.ndarray) -> tuple[bytes, int]:
    raw = array.astype("<f4").tobytes()
    tensor = {
        "name": "input",
        "shape": list(array.shape),
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()
    return header + raw, len(header)


def build_scenarios(model_repo: Path, threads: dict[str, int]) -> list[Scenario]:
    import onnxruntime as ort

    inputs = sample_inputs()
    expected: dict[str, tuple[str, np.ndarray]] = {}
    for model, array in inputs.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads[model]
        session = ort.InferenceSession(
            str(model_repo / model / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        output = session.get_outputs()[0].name
        expected[model] = (output, session.run([output], {"input": array})[0])
    json_headers = {"Content-Type": "application/json"}
    binary_body, header_length = _binary_body(inputs["cnn"])
    return [
        Scenario(
            "mlp-json", "MLP, one row, V2 JSON", "mlp", False, _json_body(inputs["mlp"]), json_headers, *expected["mlp"]
        ),
        Scenario(
            "cnn-json",
            "CNN, one image, V2 JSON",
            "cnn",
            False,
            _json_body(inputs["cnn"]),
            json_headers,
            *expected["cnn"],
        ),
        Scenario(
            "cnn-binary",
            "CNN, one image, V2 binary tensor",
            "cnn",
            True,
            binary_body,
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_length)},
            *expected["cnn"],
        ),
    ]


def _decode_response(body: bytes, header_length: str | None) -> dict[str, object]:
    if header_length is not None:
        body = body[: int(header_length)]
    decoded: dict[str, object] = json.loads(body)
    return decoded


def verify(base_url: str, scenario: Scenario, timeout_s: float = 30.0) -> float:
    """Send the scenario's request once; raise unless the answer has the reference argmax.

    Returns the largest absolute difference from the reference output."""
    request = urllib.request.Request(
        base_url + scenario.path, data=scenario.body, headers=scenario.headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = _decode_response(response.read(), response.headers.get("Inference-Header-Content-Length"))
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"HTTP {exc.code}: {exc.read()[:300]!r}") from None
    outputs = answer.get("outputs")
    if not isinstance(outputs, list):
        raise AssertionError(f"no outputs in the answer: {str(answer)[:300]}")
    match = [o for o in outputs if isinstance(o, dict) and o.get("name") == scenario.output_name]
    if not match or "data" not in match[0]:
        raise AssertionError(f"output {scenario.output_name!r} missing (or not JSON) in {str(answer)[:300]}")
    got = np.asarray(match[0]["data"], dtype=np.float64).reshape(scenario.expected.shape)
    if int(got.argmax()) != int(scenario.expected.argmax()):
        raise AssertionError(f"argmax {int(got.argmax())}, expected {int(scenario.expected.argmax())}")
    return float(np.abs(got - scenario.expected).max())
