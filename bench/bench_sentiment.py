"""Sentiment accuracy on the held-out dev eval split, against snownlp's bundled model, and speed.

    .venv/bin/python bench/bench_sentiment.py
    SPEECHQA_SENTIMENT_DATA=/path/to/sentiment-zh-dev .venv/bin/python bench/bench_sentiment.py

The eval split is the 20% of each dev file that ``scripts/train_sentiment.py`` keeps out of
training. Prints ``key=value`` lines: ``sentiment_acc_<file>`` (the shipped scorer, call cues
on), ``sentiment_model_acc_<file>`` (the bare model), ``sentiment_baseline_acc_<file>``
(``SnowNLP(text).sentiments``), then single-thread throughput of ``score_texts`` and its ratio
to snownlp measured in the same process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the targets say

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechqa.evaluation import SENTIMENT_FILES, sentiment_data_dir, sentiment_dev_split  # noqa: E402

N_SPEED = 2000  # conversation texts scored for throughput
N_SNOWNLP_SPEED = 300  # snownlp is slow; its rate is measured on fewer texts


def main() -> int:
    data = sentiment_data_dir()
    if not (data / "conversation.tsv").is_file():
        print(f"sentiment bench skipped: no dev data at {data} (set SPEECHQA_SENTIMENT_DATA)")
        return 0

    from snownlp import SnowNLP

    from speechqa.sentiment import MODEL_PATH, load_model, score_texts

    split = sentiment_dev_split(data)
    model = load_model()
    for name in SENTIMENT_FILES:
        rows = split[name][1]
        texts = [text for _, text in rows]
        truth = [label == 1 for label, _ in rows]
        ours = [s >= 0.5 for s in score_texts(texts, model=model)]
        bare = [s >= 0.5 for s in score_texts(texts, model=model, use_cues=False)]
        base = [SnowNLP(t).sentiments >= 0.5 for t in texts]
        for key, pred in (("acc", ours), ("model_acc", bare), ("baseline_acc", base)):
            acc = sum(p == t for p, t in zip(pred, truth, strict=True)) / len(truth)
            print(f"sentiment_{key}_{name}={acc:.4f}")
        print(f"sentiment_eval_rows_{name}={len(rows)}")

    conversation = [text for name in ("conversation",) for part in split[name] for _, text in part]
    texts = (conversation * (N_SPEED // len(conversation) + 1))[:N_SPEED]
    score_texts(texts[:50], model=model)  # warm: jieba dictionary, regexes
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        score_texts(texts, model=model)
        best = min(best, time.perf_counter() - t0)
    ours_rate = len(texts) / best
    t0 = time.perf_counter()
    for text in texts[:N_SNOWNLP_SPEED]:
        _ = SnowNLP(text).sentiments
    snow_rate = N_SNOWNLP_SPEED / (time.perf_counter() - t0)
    reviews = [text for _, text in split["waimai"][0]][:N_SPEED]
    t0 = time.perf_counter()
    score_texts(reviews, model=model)
    review_rate = len(reviews) / (time.perf_counter() - t0)
    print(f"sentiment_turns_per_s={ours_rate:.0f}")
    print(f"sentiment_reviews_per_s={review_rate:.0f}  # longer texts (waimai), for reference")
    print(f"sentiment_snownlp_turns_per_s={snow_rate:.0f}")
    print(f"sentiment_speed_ratio_vs_snownlp={ours_rate / snow_rate:.1f}")
    print(f"sentiment_model_bytes={os.path.getsize(MODEL_PATH)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
