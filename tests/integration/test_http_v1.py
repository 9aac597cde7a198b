"""KServe V1 through the whole app: model status and ``:predict`` with instances
(row-oriented) and inputs (column-oriented)."""

from __future__ import annotations

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.builders import digits_sample
from tests.integration.serving import error_of


def test_list_models(client: TestClient) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    assert {"digits", "scale", "upper"} <= set(response.json()["models"])


def test_model_status(client: TestClient) -> None:
    response = client.get("/v1/models/digits")
    assert response.status_code == 200
    assert response.json() == {"name": "digits", "ready": True}


def test_unknown_model_status_is_404(client: TestClient) -> None:
    error_of(client.get("/v1/models/nope"), 404)


def _check_digits(predictions: list[dict[str, object]], labels: np.ndarray) -> None:
    assert [p["label"] for p in predictions] == labels.tolist()
    for prediction in predictions:
        probabilities = prediction["probabilities"]
        assert isinstance(probabilities, list) and len(probabilities) == 10
        assert sum(probabilities) == pytest.approx(1.0)
        assert int(np.argmax(probabilities)) == prediction["label"]


def test_predict_with_instances(client: TestClient) -> None:
    pixels, labels = digits_sample(8)
    response = client.post("/v1/models/digits:predict", json={"instances": pixels.tolist()})
    assert response.status_code == 200, response.text
    _check_digits(response.json()["predictions"], labels)


def test_predict_with_named_instances(client: TestClient) -> None:
    pixels, labels = digits_sample(3)
    instances = [{"input": row} for row in pixels.tolist()]
    response = client.post("/v1/models/digits:predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    _check_digits(response.json()["predictions"], labels)


def test_predict_with_inputs(client: TestClient) -> None:
    pixels, labels = digits_sample(5)
    response = client.post("/v1/models/digits:predict", json={"inputs": pixels.tolist()})
    assert response.status_code == 200, response.text
    _check_digits(response.json()["predictions"], labels)


def test_predict_with_named_inputs(client: TestClient) -> None:
    pixels, labels = digits_sample(2)
    response = client.post("/v1/models/digits:predict", json={"inputs": {"input": pixels.tolist()}})
    assert response.status_code == 200, response.text
    _check_digits(response.json()["predictions"], labels)


def test_integers_are_cast_to_the_model_datatype(client: TestClient) -> None:
    """digits' pixels are whole numbers; curl users send them as such."""
    pixels, labels = digits_sample(2)
    response = client.post("/v1/models/digits:predict", json={"instances": pixels.astype(int).tolist()})
    assert response.status_code == 200, response.text
    _check_digits(response.json()["predictions"], labels)


def test_single_output_model_predictions_are_rows(client: TestClient) -> None:
    response = client.post("/v1/models/scale:predict", json={"instances": [[1, 2, 3, 4], [0, 0, 0, 1]]})
    assert response.status_code == 200, response.text
    # The unversioned V1 route goes to the latest version (x * 2).
    assert response.json() == {"predictions": [[2.0, 4.0, 6.0, 8.0], [0.0, 0.0, 0.0, 2.0]]}


def test_text_model_with_b64(client: TestClient) -> None:
    response = client.post("/v1/models/upper:predict", json={"instances": ["abc", {"b64": "aGk="}]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [{"upper": "ABC", "length": 3}, {"upper": "HI", "length": 2}]}


@pytest.mark.parametrize(
    "body",
    [
        {"instances": []},
        {"rows": [[1, 2, 3, 4]]},
        {"instances": [[1, 2, 3]]},
        {"instances": [["a", "b", "c", "d"]]},
        {"inputs": {"nope": [[1, 2, 3, 4]]}},
        [1, 2, 3],
    ],
    ids=["empty", "no-instances", "wrong-width", "strings", "unknown-input", "not-an-object"],
)
def test_bad_predict_bodies_are_400(client: TestClient, body: object) -> None:
    error_of(client.post("/v1/models/scale:predict", json=body), 400)
    ok = client.post("/v1/models/scale:predict", json={"instances": [[1, 1, 1, 1]]})
    assert ok.status_code == 200


def test_malformed_json_is_400(client: TestClient) -> None:
    error_of(client.post("/v1/models/scale:predict", content=b"{not json"), 400)


def test_predict_on_unknown_model_is_404(client: TestClient) -> None:
    error_of(client.post("/v1/models/nope:predict", json={"instances": [[1]]}), 404)
