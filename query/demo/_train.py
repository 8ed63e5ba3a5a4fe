"""The demo's machine learning: breast-cancer data, standardisation, logistic regression.

Plain scikit-learn and the standard library, no provault import: ``provault
demo`` copies this file into a small git repository (``<data-dir>/demo/code/
train.py``) so that the runs it records can name the commit of the code that
trained them, and the commands the demo prints run it as a script::

    python code/train.py raw data/breast_cancer.csv
    python code/train.py standardize data/breast_cancer.csv data/breast_cancer_clean.csv
    python code/train.py fit data/breast_cancer_clean.csv models/logreg-C0.1.json --C 0.1

Everything is deterministic: the same inputs give byte-identical CSV and model
files, so they get the same content ids (``sha256:<hex>``) on every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

TARGET = "target"
DIGITS = 6
"""Decimals kept by the standardised dataset."""
TEST_SIZE = 0.25
SEED = 0
MAX_ITER = 5000


def write_raw(path: str | Path) -> int:
    """scikit-learn's Wisconsin breast-cancer data as CSV (30 features and the target); returns the rows."""
    bunch = load_breast_cancer()
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow([*bunch.feature_names, TARGET])
        out.writerows(
            [*map(repr, map(float, row)), str(int(label))] for row, label in zip(bunch.data, bunch.target, strict=True)
        )
    return len(bunch.target)


def load(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, labels and feature names of a CSV written by this module."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    data = np.array([[float(v) for v in row[:-1]] for row in body])
    labels = np.array([int(row[-1]) for row in body])
    return data, labels, header[:-1]


def standardize(src: str | Path, dst: str | Path) -> int:
    """Scale every feature to mean 0 and standard deviation 1 (rounded to DIGITS decimals); returns the rows."""
    data, labels, names = load(src)
    scaled = np.round((data - data.mean(axis=0)) / data.std(axis=0), DIGITS)
    with open(dst, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow([*names, TARGET])
        out.writerows(
            [*(f"{v:.{DIGITS}f}" for v in row), str(int(label))] for row, label in zip(scaled, labels, strict=True)
        )
    return len(labels)


def split(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fixed, stratified train / held-out split: X_train, X_test, y_train, y_test."""
    data, labels, _ = load(path)
    return train_test_split(data, labels, test_size=TEST_SIZE, random_state=SEED, stratify=labels)


def fit(path: str | Path, c: float) -> tuple[LogisticRegression, float]:
    """Train on the split's training part; return the model and its accuracy on the held-out part."""
    x_train, x_test, y_train, y_test = split(path)
    model = LogisticRegression(C=c, max_iter=MAX_ITER).fit(x_train, y_train)
    return model, float(model.score(x_test, y_test))


def save_model(model: LogisticRegression, path: str | Path, features: list[str]) -> None:
    """The fitted model as JSON: parameters, features, classes, coefficients (floats written exactly)."""
    doc = {
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"C": model.C, "max_iter": model.max_iter},
        "features": list(features),
        "classes": [int(c) for c in model.classes_],
        "coef": model.coef_.tolist(),
        "intercept": model.intercept_.tolist(),
    }
    Path(path).write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")


def load_model(path: str | Path) -> LogisticRegression:
    """A model saved by :func:`save_model`, ready to predict."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    model = LogisticRegression(**doc["params"])
    model.classes_ = np.array(doc["classes"])
    model.coef_ = np.array(doc["coef"])
    model.intercept_ = np.array(doc["intercept"])
    model.n_features_in_ = len(doc["features"])
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the provault demo's training code")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("raw", help="write the raw dataset").add_argument("out")
    s = sub.add_parser("standardize", help="scale every feature")
    s.add_argument("src")
    s.add_argument("dst")
    f = sub.add_parser("fit", help="train a logistic regression, save it, print the held-out accuracy")
    f.add_argument("data")
    f.add_argument("model")
    f.add_argument("--C", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.action == "raw":
        print(f"wrote {write_raw(args.out)} rows to {args.out}")
    elif args.action == "standardize":
        print(f"wrote {standardize(args.src, args.dst)} rows to {args.dst}")
    else:
        model, accuracy = fit(args.data, args.C)
        save_model(model, args.model, load(args.data)[2])
        print(f"accuracy {accuracy:.4f} on the held-out rows; model written to {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
