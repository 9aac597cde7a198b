"""Train an iris species classifier on scikit-learn's bundled iris data (offline) and
save it as a Ferry model repository entry: <out>/iris/1/model.skops plus config.yaml.

The model takes rows of four measurements in cm, in this order: sepal length, sepal
width, petal length, petal width. config.yaml's postprocess step names the classes, so
every answer carries ``classes`` (best first) and ``scores`` beside ``label`` and
``probabilities``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ("sepal length", "sepal width", "petal length", "petal width")  # cm, in this order
SPECIES = ("setosa", "versicolor", "virginica")  # class index order: iris.target_names
MIN_ACCURACY = 0.9

CONFIG = """\
description: >-
  Iris species from four measurements in cm, in this order: sepal length, sepal width,
  petal length, petal width (scikit-learn: standard scaling + logistic regression)
max_batch_size: 64
# The runtime reads [-1, 4] from the estimator; declared here too, so the input's
# layout is written down next to the description that names its columns.
inputs:
  - {name: input, datatype: FP32, shape: [-1, 4]}
# Class names for the probabilities: adds outputs classes and scores, best first.
postprocess:
  - output: probabilities
    labels: [setosa, versicolor, virginica]
    top_k: 3
# The web app's playground: one field per measurement.
playground:
  inputs:
    input:
      widget: form
      features: [sepal length (cm), sepal width (cm), petal length (cm), petal width (cm)]
"""


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, x_test, y_train, y_test: a stratified quarter held out, the same every time."""
    iris = load_iris()
    if tuple(iris.target_names) != SPECIES:
        raise RuntimeError(f"unexpected iris classes {list(iris.target_names)}")
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=0.25, random_state=0, stratify=iris.target
    )
    return x_train, x_test, y_train, y_test


def build(out: Path) -> float:
    x_train, x_test, y_train, y_test = split()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    if accuracy < MIN_ACCURACY:
        raise RuntimeError(f"iris: held-out accuracy {accuracy:.3f} is below {MIN_ACCURACY}")
    target = out / "iris" / "1"
    target.mkdir(parents=True, exist_ok=True)
    sio.dump(model, target / "model.skops")
    (out / "iris" / "config.yaml").write_text(CONFIG)
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    args = parser.parse_args()
    accuracy = build(args.out)
    print(f"iris: held-out accuracy {accuracy:.3f}, saved under {args.out / 'iris'}")


if __name__ == "__main__":
    main()
