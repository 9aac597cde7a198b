"""Text -> character n-gram counts: the features of the language model, shared by
build.py (training) and model.py (serving), so both see text the same way.

build.py ships this file beside model.py; Ferry lets a model.py import the modules that
sit next to it."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

# Letters alone, pairs and triples: short texts still give enough of them, and they
# catch the spelling habits that tell languages apart ("sch", "ij", "ñ", "qu'").
ORDERS = (1, 2, 3)


def normalise(text: str) -> str:
    """Unicode NFC, lower case, every run of non-letters one space, a space at each end
    (so n-grams see where words begin and end)."""
    text = unicodedata.normalize("NFC", text).lower()
    words = "".join(ch if ch.isalpha() else " " for ch in text).split()
    return f" {' '.join(words)} " if words else ""


def ngrams(text: str) -> Counter[str]:
    """How often each character n-gram occurs in the normalised text (a lone space is
    not one)."""
    padded = normalise(text)
    counts: Counter[str] = Counter()
    for n in ORDERS:
        counts.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    counts.pop(" ", None)
    return counts


def count_matrix(texts: Iterable[str], index: Mapping[str, int]) -> np.ndarray:
    """Counts of the known n-grams, one row per text: float32 [len(texts), len(index)].
    N-grams outside the vocabulary are left out."""
    rows = list(texts)
    matrix = np.zeros((len(rows), len(index)), dtype=np.float32)
    for row, text in enumerate(rows):
        for gram, count in ngrams(text).items():
            column = index.get(gram)
            if column is not None:
                matrix[row, column] = count
    return matrix
