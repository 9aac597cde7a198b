"""Python models (a ``model.py`` with a ``ferry.Model`` subclass) through the server:
files and modules beside model.py, declared signatures, and failures that stay with
the model that caused them."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.builders import python_model
from tests.integration.serving import error_of, index_of, json_input, outputs_of, serve

HEADER = """
import numpy as np

import ferry
from ferry.signature import TensorSpec
"""

GREETER = (
    HEADER
    + """
from greeter_words import greeting  # a module beside model.py


class Greeter(ferry.Model):
    inputs = [TensorSpec("name", "BYTES", (-1,))]
    outputs = [TensorSpec("greeting", "BYTES", (-1,))]

    def load(self):
        self.punctuation = (self.path / "data" / "punctuation.txt").read_text().strip()

    def predict(self, inputs):
        names = [n.decode() for n in inputs["name"]]
        return {"greeting": np.array([greeting(n) + self.punctuation for n in names], dtype=object)}
"""
)

PICKY = (
    HEADER
    + """
class Picky(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1, 2))]
    outputs = [TensorSpec("y", "FP32", (-1, 2))]

    def predict(self, inputs):
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("negative values are not allowed")
        if (x > 100).any():
            raise RuntimeError("the model crashed")
        return {"y": x + 1}
"""
)

DECLARED = (
    HEADER
    + """
class Doubler(ferry.Model):
    batchable = True

    def predict(self, inputs):
        return {"twice": inputs["value"] * 2}
"""
)

NO_CLASS = HEADER + "\n\ndef predict(inputs):\n    return inputs\n"

LOAD_FAILS = (
    HEADER
    + """
class Heavy(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1,))]
    outputs = [TensorSpec("y", "FP32", (-1,))]

    def load(self):
        (self.path / "weights.bin").read_bytes()
"""
)

# Its error names its own folder and the temporary directory, as errors of models that
# read files do: clients read neither path.
LEAKY = (
    HEADER
    + """
import tempfile


class Leaky(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1,))]
    outputs = [TensorSpec("y", "FP32", (-1,))]

    def predict(self, inputs):
        if inputs["x"].any():  # warm-up sends zeros
            raise ValueError(f"no cache at {self.path / 'cache.bin'} nor in {tempfile.gettempdir()}/ferry-cache")
        return {"y": inputs["x"]}
"""
)

INIT_FAILS = (
    HEADER
    + """
class Stubborn(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1,))]
    outputs = [TensorSpec("y", "FP32", (-1,))]

    def __init__(self, path, config):
        raise RuntimeError("boom in __init__")
"""
)

WIDENING = (
    HEADER
    + """
class Widening(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1,))]
    outputs = [TensorSpec("y", "FP32", (-1,))]

    def predict(self, inputs):
        return {"y": inputs["x"].astype(np.float64) / 3}
"""
)

UNDECLARED = HEADER + "\n\nclass Vague(ferry.Model):\n    def predict(self, inputs):\n        return inputs\n"


@pytest.fixture(scope="module")
def python_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("python")
    # tests.builders' Upper model, with the file it reads from beside model.py.
    python_model(root / "upper" / "1")
    (root / "upper" / "1" / "suffix.txt").write_text("!\n")
    python_model(root / "greeter" / "1", GREETER)
    (root / "greeter" / "1" / "greeter_words.py").write_text("def greeting(name):\n    return f'hello {name}'\n")
    (root / "greeter" / "1" / "data").mkdir()
    (root / "greeter" / "1" / "data" / "punctuation.txt").write_text("?")
    # Version 2 has a helper module of the same name with other contents.
    python_model(root / "greeter" / "2", GREETER)
    (root / "greeter" / "2" / "greeter_words.py").write_text("def greeting(name):\n    return f'hi {name}'\n")
    (root / "greeter" / "2" / "data").mkdir()
    (root / "greeter" / "2" / "data" / "punctuation.txt").write_text("!")
    python_model(root / "widening" / "1", WIDENING)
    python_model(root / "picky" / "1", PICKY)
    python_model(root / "declared" / "1", DECLARED)
    (root / "declared" / "config.yaml").write_text(
        "inputs:\n  - {name: value, datatype: INT32, shape: [-1, 3]}\n"
        "outputs:\n  - {name: twice, datatype: INT32, shape: [-1, 3]}\n"
    )
    python_model(root / "no_class" / "1", NO_CLASS)
    python_model(root / "load_fails" / "1", LOAD_FAILS)
    python_model(root / "leaky" / "1", LEAKY)
    python_model(root / "init_fails" / "1", INIT_FAILS)
    python_model(root / "undeclared" / "1", UNDECLARED)
    with serve([root]) as running:
        yield running


def test_files_beside_model_py_are_used(python_client: TestClient) -> None:
    text = np.array([b"abc", b"Ferry"], dtype=object)
    doc, outputs = outputs_of(
        python_client.post("/v2/models/upper/infer", json={"inputs": [json_input("text", "BYTES", text)]})
    )
    assert outputs["upper"].tolist() == [b"ABC!", b"FERRY!"]
    assert outputs["length"].tolist() == [3, 5]
    assert [o["datatype"] for o in doc["outputs"]] == ["BYTES", "INT64"]


def test_modules_and_data_beside_model_py(python_client: TestClient) -> None:
    names = np.array([b"ada"], dtype=object)
    _, outputs = outputs_of(
        python_client.post("/v2/models/greeter/versions/1/infer", json={"inputs": [json_input("name", "BYTES", names)]})
    )
    assert outputs["greeting"].tolist() == [b"hello ada?"]


def test_each_version_imports_its_own_helper_modules(python_client: TestClient) -> None:
    names = np.array([b"ada"], dtype=object)
    body = {"inputs": [json_input("name", "BYTES", names)]}
    _, first = outputs_of(python_client.post("/v2/models/greeter/versions/1/infer", json=body))
    _, second = outputs_of(python_client.post("/v2/models/greeter/versions/2/infer", json=body))
    assert first["greeting"].tolist() == [b"hello ada?"]
    assert second["greeting"].tolist() == [b"hi ada!"]


def test_outputs_answer_in_the_declared_datatype(python_client: TestClient) -> None:
    x = np.array([1.0, 2.0], dtype=np.float32)
    doc, outputs = outputs_of(
        python_client.post("/v2/models/widening/infer", json={"inputs": [json_input("x", "FP32", x)]})
    )
    assert doc["outputs"][0]["datatype"] == "FP32"
    np.testing.assert_allclose(outputs["y"], x / 3, rtol=1e-6)


def test_load_failures_do_not_show_server_paths(
    python_client: TestClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    reason = index_of(python_client)["load_fails/1"]["reason"]
    assert "weights.bin" in reason
    assert str(tmp_path_factory.getbasetemp()) not in reason
    assert "/tmp" not in reason


def test_errors_while_serving_a_request_show_no_server_paths(
    python_client: TestClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    body = {"inputs": [json_input("x", "FP32", np.ones(2, dtype=np.float32))]}
    message = error_of(python_client.post("/v2/models/leaky/infer", json=body), 400)
    assert "the model refused the input: no cache at" in message
    assert str(tmp_path_factory.getbasetemp()) not in message
    assert tempfile.gettempdir() + "/" not in message
    assert "leaky/1/cache.bin" in message and "<tmp>/ferry-cache" in message


def test_metadata_and_config(python_client: TestClient) -> None:
    metadata = python_client.get("/v2/models/upper").json()
    assert metadata["platform"] == "python"
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert python_client.get("/v2/models/upper/config").json()["max_batch_size"] == 32
    # Not batchable unless the class says so.
    assert python_client.get("/v2/models/picky/config").json()["max_batch_size"] == 0


def test_signature_declared_in_config_yaml(python_client: TestClient) -> None:
    metadata = python_client.get("/v2/models/declared").json()
    assert metadata["inputs"] == [{"name": "value", "datatype": "INT32", "shape": [-1, 3]}]
    assert metadata["outputs"] == [{"name": "twice", "datatype": "INT32", "shape": [-1, 3]}]
    value = np.array([[1, 2, 3], [-4, 5, 6]], dtype=np.int32)
    _, outputs = outputs_of(
        python_client.post("/v2/models/declared/infer", json={"inputs": [json_input("value", "INT32", value)]})
    )
    np.testing.assert_array_equal(outputs["twice"], value * 2)


def test_model_errors_map_to_400_and_500(python_client: TestClient) -> None:
    def infer(values: list[float]) -> httpx.Response:
        x = np.array([values], dtype=np.float32)
        return python_client.post("/v2/models/picky/infer", json={"inputs": [json_input("x", "FP32", x)]})

    assert "negative values are not allowed" in error_of(infer([-1.0, 1.0]), 400)
    message = error_of(infer([1000.0, 1.0]), 500)
    # The client learns the kind of failure; the details, paths included, stay in the log.
    assert "RuntimeError" in message
    assert "the model crashed" not in message
    assert "Traceback" not in message
    _, outputs = outputs_of(infer([1.0, 2.0]))
    np.testing.assert_array_equal(outputs["y"], [[2.0, 3.0]])


@pytest.mark.parametrize(
    ("name", "mentions"),
    [
        ("no_class", "subclass of ferry.Model"),
        ("load_fails", "Heavy.load() failed"),
        ("init_fails", "boom in __init__"),
        ("undeclared", "inputs/outputs"),
    ],
)
def test_broken_models_are_unavailable_with_a_reason(python_client: TestClient, name: str, mentions: str) -> None:
    entry = index_of(python_client)[f"{name}/1"]
    assert entry["state"] == "UNAVAILABLE"
    assert mentions in entry["reason"], entry
    assert f"{name} version 1" in error_of(python_client.get("/v2/health/ready"), 503)


def test_each_version_imports_its_own_model_py(tmp_path: Path) -> None:
    for version, factor in (("1", 10), ("2", 20)):
        python_model(
            tmp_path / "versioned" / version,
            HEADER
            + f"""
class Scale(ferry.Model):
    inputs = [TensorSpec("x", "INT64", (-1,))]
    outputs = [TensorSpec("y", "INT64", (-1,))]

    def predict(self, inputs):
        return {{"y": inputs["x"] * {factor}}}
""",
        )
    with serve([tmp_path]) as client:
        x = np.array([1, 2], dtype=np.int64)
        for version, factor in (("1", 10), ("2", 20)):
            path = f"/v2/models/versioned/versions/{version}/infer"
            _, outputs = outputs_of(client.post(path, json={"inputs": [json_input("x", "INT64", x)]}))
            np.testing.assert_array_equal(outputs["y"], x * factor)
