"""Which language is a text in? A custom Ferry model: ``ferry.Model`` with its own
preprocess, a batched predict and postprocess, a weights file and a helper module
shipped beside it.

examples/custom/build.py copies this file and ``charngrams.py`` into
``<repo>/language/<version>/`` and writes ``weights.npz`` there: a multinomial naive
Bayes model over character 1- to 3-grams, trained on corpus.tsv. Serving needs numpy.

Per request, ``preprocess`` decodes and checks each text (not UTF-8, empty, no letters
or too long: 400 with the reason) and counts its n-grams. Ferry stacks the counts of
concurrent requests, and ``predict`` scores the whole batch with one matrix product.
``postprocess`` turns each request's scores into a language name and a confidence (the
naive Bayes posterior, which runs close to 1 for all but short texts); text with no
n-gram the model knows (another script, say) is "unknown" with confidence 0.
"""

from __future__ import annotations

from typing import ClassVar

import charngrams  # beside this file
import numpy as np

from ferry import Model
from ferry.signature import TensorSpec

MAX_CHARS = 10_000
UNKNOWN = "unknown"


class LanguageDetector(Model):
    inputs: ClassVar[list[TensorSpec] | None] = [TensorSpec("text", "BYTES", (-1,))]
    outputs: ClassVar[list[TensorSpec] | None] = [
        TensorSpec("language", "BYTES", (-1,)),
        TensorSpec("confidence", "FP32", (-1,)),
    ]
    batchable = True

    def load(self) -> None:
        # allow_pickle=False: the file holds plain arrays, and loading it runs no code.
        with np.load(self.path / "weights.npz", allow_pickle=False) as weights:
            vocabulary = weights["ngrams"].tolist()
            self.log_prob = weights["log_prob"]  # float32 [n-grams, languages]: log P(n-gram | language)
            self.log_prior = weights["log_prior"]  # float32 [languages]
            self.names = weights["names"].astype(object)  # "English", ...
        self.index = {gram: column for column, gram in enumerate(vocabulary)}

    def preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request: BYTES [n] of UTF-8 text -> n-gram counts, float32 [n, vocabulary]."""
        texts = [_text(value, row) for row, value in enumerate(inputs["text"].reshape(-1))]
        return {"counts": charngrams.count_matrix(texts, self.index)}

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every request of the batch at once: [batch, vocabulary] @ [vocabulary, languages]."""
        counts = inputs["counts"]
        return {
            "log_likelihood": counts @ self.log_prob + self.log_prior,  # [batch, languages]
            "known": counts.sum(axis=1),  # [batch]: how many n-grams the model knew
        }

    def postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request's rows: scores -> the likeliest language's name and its posterior."""
        scores = outputs["log_likelihood"].astype(np.float64)
        posterior = np.exp(scores - scores.max(axis=1, keepdims=True))
        posterior /= posterior.sum(axis=1, keepdims=True)
        best = posterior.argmax(axis=1)
        language = self.names[best]
        confidence = posterior[np.arange(len(best)), best].astype(np.float32)
        unknown = outputs["known"] == 0
        language[unknown] = UNKNOWN
        confidence[unknown] = 0.0
        return {"language": language, "confidence": confidence}


def _text(value: object, row: int) -> str:
    """A request's text, or ValueError with a reason (Ferry answers 400 with it)."""
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"text row {row} is not UTF-8 (bad byte at offset {exc.start})") from None
    elif isinstance(value, str):  # from an in-process caller
        text = value
    else:
        raise TypeError(f"text row {row} must be UTF-8 bytes, not {type(value).__name__}")
    if not text.strip():
        raise ValueError(f"text row {row} is empty")
    if len(text) > MAX_CHARS:
        raise ValueError(f"text row {row} has {len(text)} characters; the limit is {MAX_CHARS}")
    if not any(ch.isalpha() for ch in text):
        raise ValueError(f"text row {row} has no letters to judge")
    return text
