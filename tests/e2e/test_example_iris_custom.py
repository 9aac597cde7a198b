"""examples/iris (a scikit-learn pipeline with class names from config.yaml's
postprocess) and examples/custom (a ferry.Model language detector with its own
preprocess, batched predict and postprocess), built into one temporary repository and
served once by a real ``ferry serve``. Answers are compared with the same models run in
this process. Run with -s for accuracies, build times and latency medians."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import requests
import skops.io as sio
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.conftest import example_build
from tests.e2e.server import Server, running

ROOT = Path(__file__).resolve().parents[2]
IRIS, LANGUAGE = "iris", "language"
SPECIES = ["setosa", "versicolor", "virginica"]
BURST = 32
LATENCY_REQUESTS = 30
TOLERANCE = 1e-5

# Sentences in none of examples/custom/corpus.tsv, long enough to be unambiguous.
SENTENCES = {
    "Where can I buy a ticket for the concert tonight?": "English",
    "Nous avons passé nos vacances au bord de la mer.": "French",
    "Kannst du mir bitte das Salz und den Pfeffer geben?": "German",
    "Mis amigos y yo vamos a la playa cada verano.": "Spanish",
    "Questa sera mangiamo la pizza con tutta la famiglia.": "Italian",
    "Wij gaan morgen met de fiets naar het strand.": "Dutch",
    "日本語のテキストです。": "unknown",  # letters, but no n-gram the model has seen
}


@dataclass
class Built:
    repo: Path
    iris: ModuleType  # examples/iris/build.py
    custom: ModuleType  # examples/custom/build.py
    iris_model: Any  # the saved scikit-learn pipeline, loaded here
    language_model: Any  # the saved ferry.Model, loaded here
    held_out: list[tuple[str, str]]  # (code, sentence) the language model never saw


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    repo = tmp_path_factory.mktemp("example-models")
    iris = example_build("iris")
    custom = example_build("custom")
    started = time.perf_counter()
    iris_accuracy = iris.build(repo)
    iris_s = time.perf_counter() - started
    started = time.perf_counter()
    language_accuracy = custom.build(repo)
    language_s = time.perf_counter() - started
    print(
        f"\nexamples/iris: held-out accuracy {iris_accuracy:.3f}, built in {iris_s:.2f} s"
        f"\nexamples/custom: held-out accuracy {language_accuracy:.3f}, built in {language_s:.2f} s"
    )
    assert iris_accuracy >= 0.9
    assert language_accuracy >= 0.9
    _, held_out = custom.split(custom.read_corpus())
    return Built(
        repo,
        iris,
        custom,
        sio.load(repo / IRIS / "1" / "model.skops", trusted=[]),
        custom.load_model(repo / LANGUAGE / "1"),
        held_out,
    )


@pytest.fixture(scope="module")
def served(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("logs") / "examples-server.log"
    with running([built.repo], log) as srv:
        print(f"\nferry serve (iris, language): ready after {srv.ready_after_s:.2f} s")
        yield srv


def outputs_of(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def infer_iris(server: Server, rows: np.ndarray, session: Any = requests) -> dict[str, Any]:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}]}
    return outputs_of(session.post(f"{server.url}/v2/models/{IRIS}/infer", json=body, timeout=30))


def infer_language(server: Server, texts: list[str], session: Any = requests) -> tuple[list[str], np.ndarray]:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    outputs = outputs_of(session.post(f"{server.url}/v2/models/{LANGUAGE}/infer", json=body, timeout=30))
    assert outputs["language"]["shape"] == [len(texts)] and outputs["confidence"]["datatype"] == "FP32"
    return outputs["language"]["data"], np.asarray(outputs["confidence"]["data"], dtype=np.float32)


def error_of(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]
    return message


def stats(server: Server, model: str) -> dict[str, Any]:
    response = requests.get(f"{server.url}/v2/models/{model}/stats", timeout=10)
    assert response.status_code == 200, response.text
    (entry,) = response.json()["model_stats"]
    return dict(entry)


def median_ms(call: Any) -> float:
    """The median of LATENCY_REQUESTS calls of ``call(i)``, in milliseconds."""
    latencies = []
    for i in range(LATENCY_REQUESTS):
        started = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1000


# examples/iris


def test_iris_metadata(served: Server) -> None:
    response = requests.get(f"{served.url}/v2/models/{IRIS}", timeout=10)
    assert response.status_code == 200, response.text
    metadata = response.json()
    assert metadata["platform"] == "sklearn_skops"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        {"name": "classes", "datatype": "BYTES", "shape": [-1, 3]},
        {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
    ]


def test_iris_held_out_rows_get_class_names(served: Server, built: Built) -> None:
    _, x_test, _, y_test = built.iris.split()
    rows = x_test.astype(np.float32)  # what the server computes with
    outputs = infer_iris(served, rows)
    expected = built.iris_model.predict_proba(rows)
    assert outputs["classes"]["shape"] == [len(rows), 3]
    classes = np.asarray(outputs["classes"]["data"]).reshape(len(rows), 3)
    scores = np.asarray(outputs["scores"]["data"], dtype=np.float32).reshape(len(rows), 3)
    # Best first: the names and scores of the in-process probabilities, sorted.
    order = np.argsort(-expected, axis=1, kind="stable")
    assert classes.tolist() == np.asarray(SPECIES)[order].tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(expected, order, axis=1), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(
        np.asarray(outputs["probabilities"]["data"]).reshape(expected.shape), expected, atol=TOLERANCE, rtol=0
    )
    assert outputs["label"]["data"] == built.iris_model.predict(rows).tolist()
    assert np.mean(classes[:, 0] == np.asarray(SPECIES)[y_test]) >= 0.9


def test_iris_v1_predict(served: Server, built: Built) -> None:
    response = requests.post(
        f"{served.url}/v1/models/{IRIS}:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=30
    )
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["label"] == 0
    assert prediction["classes"] == SPECIES  # setosa by far, then the others by score
    expected = built.iris_model.predict_proba(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))[0]
    np.testing.assert_allclose(prediction["probabilities"], expected, atol=TOLERANCE, rtol=0)
    assert prediction["scores"][0] > 0.9 and sum(prediction["scores"]) == pytest.approx(1.0, abs=1e-5)


def test_iris_tritonclient_class_count(served: Server, built: Built) -> None:
    """Triton's classification extension: "score:index:label" strings, best first."""
    _, x_test, _, y_test = built.iris.split()
    picks = [int(np.flatnonzero(y_test == species)[0]) for species in range(3)]  # one of each
    rows = x_test[picks].astype(np.float32)
    client = httpclient.InferenceServerClient(served.address, network_timeout=30)
    try:
        features = httpclient.InferInput("input", list(rows.shape), "FP32")
        features.set_data_from_numpy(rows, binary_data=True)
        result = client.infer(
            IRIS, [features], outputs=[httpclient.InferRequestedOutput("probabilities", class_count=2)]
        )
        answer = result.as_numpy("probabilities")
    finally:
        client.close()
    assert answer is not None and answer.shape == (3, 2)
    expected = built.iris_model.predict_proba(rows)
    for row, entries in enumerate(answer):
        parsed = [entry.decode().split(":") for entry in entries]
        indices = [int(index) for _, index, _ in parsed]
        assert indices == np.argsort(-expected[row], kind="stable")[:2].tolist()
        assert [label for _, _, label in parsed] == [SPECIES[i] for i in indices]
        assert [float(score) for score, _, _ in parsed] == pytest.approx(expected[row][indices], abs=1e-5)
    assert [entries[0].decode().split(":")[2] for entries in answer] == SPECIES


def test_iris_latency(served: Server) -> None:
    row = np.array([[6.3, 2.9, 5.6, 1.8]], dtype=np.float32)
    with requests.Session() as session:
        infer_iris(served, row, session)  # a connection, kept alive
        median = median_ms(lambda _: infer_iris(served, row, session))
    print(f"\nexamples/iris: one-row V2 JSON request, median {median:.2f} ms of {LATENCY_REQUESTS}")
    assert median < 1000


# examples/custom: the language detector


def test_language_metadata(served: Server) -> None:
    response = requests.get(f"{served.url}/v2/models/{LANGUAGE}", timeout=10)
    assert response.status_code == 200, response.text
    metadata = response.json()
    assert metadata["platform"] == "python"
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [
        {"name": "language", "datatype": "BYTES", "shape": [-1]},
        {"name": "confidence", "datatype": "FP32", "shape": [-1]},
    ]


def test_language_answers(served: Server, built: Built) -> None:
    texts = list(SENTENCES)
    languages, confidences = infer_language(served, texts)
    assert languages == list(SENTENCES.values())
    expected_languages, expected_confidences = built.custom.detect(built.language_model, texts)
    assert languages == expected_languages
    np.testing.assert_allclose(confidences, expected_confidences, atol=TOLERANCE, rtol=0)
    assert confidences[-1] == 0.0 and all(0.5 < c <= 1.0 for c in confidences[:-1])
    # Over V1 as well: one object per text.
    response = requests.post(f"{served.url}/v1/models/{LANGUAGE}:predict", json={"instances": texts[:2]}, timeout=30)
    assert response.status_code == 200, response.text
    assert [p["language"] for p in response.json()["predictions"]] == languages[:2]


def test_language_held_out_sentences(served: Server, built: Built) -> None:
    texts = [sentence for _, sentence in built.held_out]
    languages, confidences = infer_language(served, texts)
    expected_languages, expected_confidences = built.custom.detect(built.language_model, texts)
    assert languages == expected_languages
    np.testing.assert_allclose(confidences, expected_confidences, atol=TOLERANCE, rtol=0)
    right = sum(
        found == built.custom.LANGUAGES[code] for found, (code, _) in zip(languages, built.held_out, strict=True)
    )
    assert right / len(texts) >= 0.9


def test_language_concurrent_requests_are_batched(served: Server, built: Built) -> None:
    # Held-out sentences of every language, interleaved: neighbours in a batch differ.
    texts = [sentence for _, sentence in sorted(built.held_out, key=lambda p: p[1])][:BURST]
    assert len(texts) == BURST
    expected_languages, expected_confidences = built.custom.detect(built.language_model, texts)
    before = stats(served, LANGUAGE)
    start = threading.Barrier(BURST)

    def one(text: str) -> tuple[str, float]:
        start.wait(30)
        (language,), (confidence,) = infer_language(served, [text])
        return language, float(confidence)

    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(one, texts))
    after = stats(served, LANGUAGE)
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    print(f"\nexamples/custom: {BURST} concurrent requests ran in {executions} model calls")
    assert inferences == BURST
    assert executions < inferences, f"{BURST} concurrent requests ran in {executions} model calls"
    # Each request gets its own text's answer back, not a neighbour's.
    assert [language for language, _ in answers] == expected_languages
    np.testing.assert_allclose([c for _, c in answers], expected_confidences, atol=TOLERANCE, rtol=0)


def test_language_bad_input_is_400_with_the_reason(served: Server) -> None:
    url = f"{served.url}/v2/models/{LANGUAGE}/infer"

    def ask(texts: list[str]) -> requests.Response:
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
        return requests.post(url, json=body, timeout=30)

    assert "text row 0 is empty" in error_of(ask([""]), 400)
    assert "text row 1 is empty" in error_of(ask(["Hello there", "   "]), 400)
    assert "text row 0 has no letters" in error_of(ask(["1234 !?"]), 400)
    assert "10001 characters; the limit is 10000" in error_of(ask(["a" * 10_001]), 400)
    # More texts than config.yaml's max_tensor_elements: 413, before any work.
    assert "takes at most 64" in error_of(ask(["Hello"] * 65), 413)
    # Bytes that are not UTF-8, as binary tensors (JSON strings are always Unicode).
    client = httpclient.InferenceServerClient(served.address, network_timeout=30)
    try:
        bad = httpclient.InferInput("text", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b"caf\xe9 au lait"], dtype=object), binary_data=True)
        with pytest.raises(InferenceServerException) as refused:
            client.infer(LANGUAGE, [bad])
        assert refused.value.status() == "400", refused.value
        assert "text row 0 is not UTF-8" in str(refused.value.message())
    finally:
        client.close()
    # And the model keeps serving.
    languages, _ = infer_language(served, ["Good morning, how are you today?"])
    assert languages == ["English"]


def test_language_latency(served: Server) -> None:
    with requests.Session() as session:
        infer_language(served, ["Warm-up"], session)
        median = median_ms(lambda i: infer_language(served, [f"Request {i}: where is the station?"], session))
    print(f"\nexamples/custom: one-text V2 JSON request, median {median:.2f} ms of {LATENCY_REQUESTS}")
    assert median < 1000
