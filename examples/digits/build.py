"""Train a digit classifier on scikit-learn's bundled 8x8 digits (offline) and save it
as a Ferry model repository entry: <out>/digits/1/model.skops plus config.yaml."""

from __future__ import annotations

import argparse
from pathlib import Path

import skops.io as sio
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CONFIG = """\
description: Handwritten digit classifier (scikit-learn, 8x8 grayscale, pixel values 0-16)
max_batch_size: 64
# The web app's playground: a drawing canvas, its ink scaled to the data set's 0-16.
playground:
  inputs:
    input: {widget: canvas, size: [8, 8], range: [0, 16]}
"""


def build(out: Path) -> float:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    target = out / "digits" / "1"
    target.mkdir(parents=True, exist_ok=True)
    sio.dump(model, target / "model.skops")
    (out / "digits" / "config.yaml").write_text(CONFIG)
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    args = parser.parse_args()
    accuracy = build(args.out)
    print(f"digits: held-out accuracy {accuracy:.3f}, saved under {args.out / 'digits'}")


if __name__ == "__main__":
    main()
