"""What the hand-written peers share: where the models are and how many threads they get.

The runner passes both through the environment so every server, Ferry included, uses the
same model files and the same onnxruntime intra-op thread count."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnxruntime as ort

MODEL_NAMES = ("mlp", "cnn")


def model_path(name: str) -> Path:
    """The model repository is laid out as Ferry reads it: <repo>/<name>/1/model.onnx."""
    return Path(os.environ["BENCH_MODEL_REPO"]) / name / "1" / "model.onnx"


def threads(name: str) -> int:
    return int(json.loads(os.environ.get("BENCH_ORT_THREADS", "{}")).get(name, 0))


def session(name: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads(name)
    return ort.InferenceSession(str(model_path(name)), options, providers=["CPUExecutionProvider"])
