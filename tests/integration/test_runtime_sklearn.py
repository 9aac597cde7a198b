"""scikit-learn models through the server: .skops loads safely and answers label and
probabilities; pickle/joblib files are refused unless config.yaml says trusted."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.builders import digits_sample, iris_joblib
from tests.integration.serving import binary_request, index_of, json_input, outputs_of, serve


def test_skops_metadata(client: TestClient) -> None:
    metadata = client.get("/v2/models/digits").json()
    assert metadata["platform"] == "sklearn_skops"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 10]},
    ]


def test_skops_outputs_label_and_probabilities(client: TestClient) -> None:
    pixels, labels = digits_sample(6)
    request = {"inputs": [json_input("input", "FP32", pixels)]}
    doc, outputs = outputs_of(client.post("/v2/models/digits/infer", json=request))
    assert [o["name"] for o in doc["outputs"]] == ["label", "probabilities"]
    np.testing.assert_array_equal(outputs["label"], labels)
    probabilities = outputs["probabilities"]
    assert probabilities.shape == (6, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), labels)


def test_skops_with_binary_input_and_only_the_label(client: TestClient) -> None:
    pixels, labels = digits_sample(3)
    body, headers = binary_request(
        [("input", "FP32", pixels)], outputs=[{"name": "label", "parameters": {"binary_data": True}}]
    )
    doc, outputs = outputs_of(client.post("/v2/models/digits/infer", content=body, headers=headers))
    assert [o["name"] for o in doc["outputs"]] == ["label"]
    np.testing.assert_array_equal(outputs["label"], labels)


@pytest.fixture(scope="module")
def pickles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("pickles")
    iris_joblib(root / "iris" / "1" / "model.joblib")
    iris_joblib(root / "iris_trusted" / "1" / "model.joblib")
    (root / "iris_trusted" / "config.yaml").write_text("trusted: true\n")
    pickled = root / "iris_pkl" / "1" / "model.pkl"
    iris_joblib(pickled)
    with serve([root]) as running:
        yield running


@pytest.mark.parametrize("name", ["iris", "iris_pkl"])
def test_joblib_and_pickle_are_refused_by_default(pickles: TestClient, name: str) -> None:
    entry = index_of(pickles)[f"{name}/1"]
    assert entry["state"] == "UNAVAILABLE"
    assert "arbitrary code" in entry["reason"]
    assert "trusted: true" in entry["reason"]
    response = pickles.post(f"/v2/models/{name}/infer", json={"inputs": [{"name": "input"}]})
    assert response.status_code == 503
    assert "arbitrary code" in response.json()["error"]


def test_joblib_loads_when_trusted(pickles: TestClient) -> None:
    assert index_of(pickles)["iris_trusted/1"]["state"] == "READY"
    metadata = pickles.get("/v2/models/iris_trusted").json()
    assert metadata["platform"] == "sklearn_joblib"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [
        ("label", "BYTES"),
        ("probabilities", "FP64"),
    ]
    flowers = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    _, outputs = outputs_of(
        pickles.post("/v2/models/iris_trusted/infer", json={"inputs": [json_input("input", "FP32", flowers)]})
    )
    assert outputs["label"].tolist() == [b"setosa", b"virginica"]
    assert outputs["probabilities"].shape == (2, 3)


def test_v1_on_a_trusted_joblib_model(pickles: TestClient) -> None:
    response = pickles.post("/v1/models/iris_trusted:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["label"] == "setosa"
    assert prediction["probabilities"] == pytest.approx([1.0, 0.0, 0.0])
