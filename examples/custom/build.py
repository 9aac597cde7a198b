"""Train the custom example, a language detector, and save it as a Ferry model
repository entry: <out>/language/1/ with model.py (a ferry.Model), its helper module
charngrams.py and weights.npz, plus <out>/language/config.yaml.

The model is multinomial naive Bayes over character 1- to 3-grams, trained here with
numpy on corpus.tsv (sentences written for this example; nothing is downloaded). Every
fourth sentence of each language is held out, and the accuracy on those is measured
with the saved model itself: model.py's preprocess, predict and postprocess."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
NAME = "language"
CORPUS = HERE / "corpus.tsv"
SHIPPED = ("model.py", "charngrams.py")  # copied beside the weights
LANGUAGES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "nl": "Dutch"}
HOLD_OUT_EVERY = 4
# Additive smoothing: an n-gram a language never showed in training is rare there, not
# impossible.
ALPHA = 0.1

CONFIG = """\
description: >-
  Language of a text: English, French, German, Spanish, Italian or Dutch, with a
  confidence ("unknown" for text without a known character n-gram). A ferry.Model:
  naive Bayes over character 1- to 3-grams.
max_batch_size: 32
max_tensor_elements: 64     # texts in one request (each up to 10000 characters)
max_body_bytes: 1048576
"""


def read_corpus(path: Path = CORPUS) -> list[tuple[str, str]]:
    """(code, sentence) pairs; lines starting with # are comments."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        code, _, sentence = line.partition("\t")
        if code not in LANGUAGES or not sentence.strip():
            raise ValueError(
                f"{path.name} line {number}: expected '<code>\\t<sentence>', code one of {list(LANGUAGES)}"
            )
        pairs.append((code, sentence.strip()))
    return pairs


def split(pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Training and held-out pairs: every HOLD_OUT_EVERY-th sentence of each language
    held out (the corpus is parallel, so the held-out sentences say the same things in
    every language, and none of them is seen in training in any language)."""
    seen: Counter[str] = Counter()
    train, held_out = [], []
    for code, sentence in pairs:
        seen[code] += 1
        (held_out if seen[code] % HOLD_OUT_EVERY == 0 else train).append((code, sentence))
    return train, held_out


def train(pairs: list[tuple[str, str]], charngrams: ModuleType) -> dict[str, np.ndarray]:
    """Multinomial naive Bayes: log P(n-gram | language) with additive smoothing, and
    log P(language) from the sentence counts."""
    codes = list(LANGUAGES)
    counts = {code: Counter[str]() for code in codes}
    sentences = Counter(code for code, _ in pairs)
    for code, sentence in pairs:
        counts[code].update(charngrams.ngrams(sentence))
    vocabulary = sorted(set().union(*counts.values()))
    index = {gram: column for column, gram in enumerate(vocabulary)}
    table = np.zeros((len(vocabulary), len(codes)))
    for column, code in enumerate(codes):
        for gram, count in counts[code].items():
            table[index[gram], column] = count
    smoothed = table + ALPHA
    log_prob = np.log(smoothed / smoothed.sum(axis=0, keepdims=True))
    prior = np.array([sentences[code] for code in codes], dtype=np.float64)
    return {
        "ngrams": np.array(vocabulary, dtype=str),
        "log_prob": log_prob.astype(np.float32),
        "log_prior": np.log(prior / prior.sum()).astype(np.float32),
        "codes": np.array(codes, dtype=str),
        "names": np.array([LANGUAGES[code] for code in codes], dtype=str),
    }


def load_model(version: Path) -> Any:
    """The saved model as Ferry loads it: model.py imported with its folder on sys.path
    (for ``import charngrams``), the ferry.Model subclass made and load()ed."""
    folder = str(version)
    sys.path.insert(0, folder)
    try:
        module = _import(version / "model.py", f"ferry_example_language_{abs(hash(folder))}")
    finally:
        sys.path.remove(folder)
        helper = sys.modules.get("charngrams")
        if helper is not None and str(getattr(helper, "__file__", "")).startswith(folder):
            del sys.modules["charngrams"]  # the model keeps its reference; the next load finds its own
    model = module.LanguageDetector(version, {})
    model.load()
    return model


def detect(model: Any, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Languages and confidences for texts, in this process: the steps Ferry runs."""
    inputs = model.preprocess({"text": np.array([t.encode() for t in texts], dtype=object)})
    outputs = model.postprocess(model.predict(inputs))
    return [str(name) for name in outputs["language"]], outputs["confidence"]


def build(out: Path) -> float:
    """Write <out>/language/ and return the accuracy on the held-out sentences."""
    target = out / NAME / "1"
    target.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        shutil.copyfile(HERE / name, target / name)
    charngrams = _import(target / "charngrams.py", "ferry_example_charngrams")
    training, held_out = split(read_corpus())
    np.savez(target / "weights.npz", **train(training, charngrams))
    (out / NAME / "config.yaml").write_text(CONFIG)
    languages, _ = detect(load_model(target), [sentence for _, sentence in held_out])
    right = sum(found == LANGUAGES[code] for found, (code, _) in zip(languages, held_out, strict=True))
    return right / len(held_out)


def _import(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parent / "models")
    args = parser.parse_args()
    accuracy = build(args.out)
    print(f"{NAME}: held-out accuracy {accuracy:.3f}, saved under {args.out / NAME}")


if __name__ == "__main__":
    main()
