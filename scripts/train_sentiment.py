"""Retrain the shipped sentiment model from the labelled dev data, reproducibly.

    .venv/bin/python scripts/train_sentiment.py                 # writes speechqa/data/sentiment/model.json.gz
    .venv/bin/python scripts/train_sentiment.py --cv            # 5-fold CV on the training split only
    SPEECHQA_SENTIMENT_DATA=/path/to/sentiment-zh-dev .venv/bin/python scripts/train_sentiment.py

Each dev file (``label<TAB>text``) is split 80/20 by a hash of the text: rows whose SHA-1 is 0
mod 5 are the eval split, never trained on (``bench/bench_sentiment.py`` reports on them). The
features are :func:`speechqa.sentiment.text_features`; the Naive Bayes part is snownlp's own
``Bayes`` class retrained on them; the logistic regression is fitted with a small deterministic
L-BFGS in numpy. The hyperparameters below were chosen with ``--cv`` (folds by another hash).
Running the script twice writes the same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechqa.evaluation import SENTIMENT_FILES as FILES  # noqa: E402
from speechqa.evaluation import SentimentRow as Row  # noqa: E402
from speechqa.evaluation import sentiment_data_dir as data_dir  # noqa: E402
from speechqa.evaluation import sentiment_dev_split as dev_split  # noqa: E402
from speechqa.sentiment import MODEL_PATH, Model, normalize, save_model, text_features  # noqa: E402

LR_L2 = 1e-6  # chosen by --cv (grid below)
NB_WEIGHT = 0.2  # chosen by --cv
MIN_DF = 1  # features seen in fewer training rows are dropped
TEMPERATURE = 3.0  # chosen by --cv: the out-of-fold log loss is lowest with logits divided by this
LBFGS_ITERS = 300

def lbfgs(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, iters: int, memory: int = 10
) -> np.ndarray:
    """Minimise ``fun`` (value, gradient) by L-BFGS with Armijo backtracking; deterministic."""
    x = x0.copy()
    f, g = fun(x)
    steps: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(iters):
        q = g.copy()
        alphas = []
        for s, y in reversed(steps):
            rho = 1.0 / float(y @ s)
            a = rho * float(s @ q)
            q -= a * y
            alphas.append((rho, a, s, y))
        if steps:
            s, y = steps[-1]
            q *= float(s @ y) / float(y @ y)
        for rho, a, s, y in reversed(alphas):
            q += s * (a - rho * float(y @ q))
        d = -q if float(g @ q) > 0 else -g
        t = 1.0
        while True:
            xn = x + t * d
            fn, gn = fun(xn)
            if fn <= f + 1e-4 * t * float(g @ d) or t < 1e-10:
                break
            t *= 0.5
        s, y = xn - x, gn - g
        if float(y @ s) > 1e-12:
            steps = [*steps[-(memory - 1) :], (s, y)]
        x, f, g = xn, fn, gn
        if float(np.abs(g).max()) < 1e-7:
            break
    return x


class Design:
    """A sparse binary design matrix, rows scaled to unit length (as Model.logits does)."""

    def __init__(self, feature_sets: Sequence[frozenset[str]], index: dict[str, int]):
        rows, cols = [], []
        for i, feats in enumerate(feature_sets):
            known = sorted(index[f] for f in feats if f in index)
            rows += [i] * len(known)
            cols += known
        self.n, self.width = len(feature_sets), len(index)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.cols = np.asarray(cols, dtype=np.int64)
        nnz = np.bincount(self.rows, minlength=self.n).astype(np.float64)
        self.vals = (1.0 / np.sqrt(np.maximum(nnz, 1.0)))[self.rows]

    def dot(self, w: np.ndarray) -> np.ndarray:
        return np.bincount(self.rows, weights=w[self.cols] * self.vals, minlength=self.n)

    def tdot(self, r: np.ndarray) -> np.ndarray:
        return np.bincount(self.cols, weights=r[self.rows] * self.vals, minlength=self.width)


def train_lr(x: Design, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = p[:-1], p[-1]
        z = x.dot(w) + b
        r = (1.0 / (1.0 + np.exp(-z)) - y) / len(y)
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(w @ w)
        return loss, np.append(x.tdot(r) + l2 * w, r.sum())

    p = lbfgs(fun, np.zeros(x.width + 1), LBFGS_ITERS)
    return p[:-1], float(p[-1])


def train_nb(
    feature_sets: Sequence[frozenset[str]], labels: Sequence[int], index: dict[str, int]
) -> tuple[np.ndarray, float]:
    """snownlp's Bayes retrained on our features, as per-feature log-odds and a prior."""
    from snownlp.classification.bayes import Bayes  # type: ignore[import-untyped]

    bayes = Bayes()
    bayes.train([[sorted(f), "pos" if label else "neg"] for f, label in zip(feature_sets, labels, strict=True)])
    pos, neg = bayes.d["pos"], bayes.d["neg"]
    ratio = np.zeros(len(index))
    for feature, i in index.items():
        ratio[i] = np.log(pos.freq(feature)) - np.log(neg.freq(feature))
    return ratio, float(np.log(pos.getsum()) - np.log(neg.getsum()))


@cache
def features(text: str) -> frozenset[str]:
    return frozenset(text_features(normalize(text)))


def fit(rows: Sequence[Row], l2: float, nb_weight: float, min_df: int) -> Model:
    feature_sets = [features(text) for _, text in rows]
    labels = [label for label, _ in rows]
    df = Counter(f for feats in feature_sets for f in feats)
    index = {f: i for i, f in enumerate(sorted(f for f, n in df.items() if n >= min_df))}
    nb, prior = train_nb(feature_sets, labels, index)
    lr, bias = train_lr(Design(feature_sets, index), np.asarray(labels, dtype=np.float64), l2)
    return Model(
        index=index,
        nb=nb,
        lr=lr,
        nb_prior=prior,
        lr_bias=bias,
        nb_weight=nb_weight,
        temperature=1.0,
        meta={"l2": l2, "min_df": min_df, "train_rows": len(rows), "features": len(index)},
    )


def accuracy(model: Model, rows: Sequence[Row]) -> float:
    z = model.logits([list(features(text)) for _, text in rows])
    return float(np.mean((z >= 0) == np.asarray([label == 1 for label, _ in rows])))


def cross_validate(split: dict[str, tuple[list[Row], list[Row]]]) -> None:
    """5-fold CV over the training split (folds by MD5 of the text), a small grid."""
    tagged = [(name, row) for name in FILES for row in split[name][0]]
    fold = [int(hashlib.md5(row[1].encode("utf-8")).hexdigest()[:6], 16) % 5 for _, row in tagged]
    grid = [(l2, nbw, df) for l2 in (3e-7, 1e-6, 3e-6) for nbw in (0.0, 0.2, 0.4) for df in (1, 2)]
    labels = np.asarray([row[0] for _, row in tagged], dtype=np.float64)
    for l2, nbw, min_df in grid:
        acc: dict[str, list[float]] = {name: [] for name in FILES}
        logits = np.zeros(len(tagged))
        for k in range(5):
            train = [row for (_, row), f in zip(tagged, fold, strict=True) if f != k]
            model = fit(train, l2, nbw, min_df)
            for name in FILES:
                held = [row for (n, row), f in zip(tagged, fold, strict=True) if f == k and n == name]
                acc[name].append(accuracy(model, held))
            held_at = [i for i, f in enumerate(fold) if f == k]
            logits[held_at] = model.logits([list(features(tagged[i][1][1])) for i in held_at])
        # The temperature that makes the out-of-fold probabilities honest (lowest log loss).
        temps = np.arange(1.0, 8.01, 0.25)
        losses = [float(np.mean(np.logaddexp(0.0, logits / t) - labels * logits / t)) for t in temps]
        means = " ".join(f"{name}={np.mean(acc[name]):.4f}" for name in FILES)
        best_t = temps[int(np.argmin(losses))]
        print(f"cv l2={l2:g} nb_weight={nbw} min_df={min_df} {means} temperature={best_t:g}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cv", action="store_true", help="cross-validate the grid instead of training")
    parser.add_argument("--out", default=str(MODEL_PATH), help="model file to write")
    args = parser.parse_args(argv)
    directory = data_dir()
    if not (directory / "conversation.tsv").is_file():
        print(f"no dev data at {directory} (set SPEECHQA_SENTIMENT_DATA)", file=sys.stderr)
        return 2
    split = dev_split(directory)
    if args.cv:
        cross_validate(split)
        return 0
    t0 = time.perf_counter()
    train = [row for name in FILES for row in split[name][0]]
    model = dataclasses.replace(fit(train, LR_L2, NB_WEIGHT, MIN_DF), temperature=TEMPERATURE)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, out)
    print(f"trained on {len(train)} rows, {len(model.index)} features in {time.perf_counter() - t0:.1f} s")
    for name in FILES:
        rows = split[name][1]
        print(f"eval {name}: bare-model accuracy {accuracy(model, rows):.4f} ({len(rows)} rows)")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
