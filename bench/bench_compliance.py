"""Scorecard accuracy against the synthetic calls' ground truth, and scorecard speed.

    .venv/bin/python bench/bench_compliance.py [--rules FILE]

Accuracy: the real batch (real model, real audio, transcript cache in ``out/.bench-cache``)
on ``recordings/`` and the test fixtures, scored with the shipped scorecard (or ``--rules``),
each item's outcome compared with the call's ``script_items`` truth (true = pass, false =
fail, null = N/A). A failure is the positive class: it is what a reviewer acts on. Prints
precision, recall and F1 per item and overall, agreement over all three outcomes, and false
auto-fails (calls auto-failed whose truth passes every auto-fail item).

Speed: those calls' results, cycled to 1,000 calls, against a 40-item scorecard (the shipped
items repeated five times under new ids), timed in this process; the target is under 5 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechqa.compliance import load_scorecard, score_call  # noqa: E402
from speechqa.config import load_settings  # noqa: E402
from speechqa.pipeline import run_batch  # noqa: E402

FOLDERS = (ROOT / "recordings", ROOT / "tests" / "fixtures" / "calls")
OUTCOME = {True: "pass", False: "fail", None: "na"}


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", help="scorecard TOML (default: the shipped one)")
    args = parser.parse_args()
    scorecard = load_scorecard(args.rules)
    settings = load_settings(overrides={
        "asr": {"model": str(ROOT / "models" / "whisper-base")},
        "batch": {"cache_dir": str(ROOT / "out" / ".bench-cache")},
        "compliance": {"rules": args.rules or ""},
        "sampling": {"enabled": False},  # a benchmark is not a night: nothing goes into the history store
    })
    results = []
    for folder in FOLDERS:
        results.extend(run_batch(folder, ROOT / "out" / "bench-compliance" / folder.name, settings).results)

    counts: dict[str, list[int]] = {i.id: [0, 0, 0, 0] for i in scorecard.items}  # tp fp fn agree
    labelled = 0
    false_auto_fail = 0
    auto_items = {i.id for i in scorecard.items if i.auto_fail}
    for r in results:
        truth_path = r.recording.path.with_suffix(".truth.json")
        truth = json.loads(truth_path.read_text(encoding="utf-8"))["script_items"]
        comp = score_call(r, scorecard)
        for rr in comp.results:
            if rr.item_id not in truth:
                continue
            want = OUTCOME[truth[rr.item_id]]
            c = counts[rr.item_id]
            c[0] += want == "fail" and rr.outcome == "fail"
            c[1] += want != "fail" and rr.outcome == "fail"
            c[2] += want == "fail" and rr.outcome != "fail"
            c[3] += want == rr.outcome
            labelled += 1
        if comp.auto_fail and all(truth.get(i) is not False for i in auto_items):
            false_auto_fail += 1
    for item_id, (tp, fp, fn, agree) in counts.items():
        p, r_, f = _f1(tp, fp, fn)
        print(f"rules_{item_id}_precision={p:.3f} rules_{item_id}_recall={r_:.3f} rules_{item_id}_f1={f:.3f} "
              f"rules_{item_id}_agreement={agree}/{len(results)}")
    tp, fp, fn, agree = (sum(c[k] for c in counts.values()) for k in range(4))
    p, r_, f = _f1(tp, fp, fn)
    print(f"rules_overall_precision={p:.3f}")
    print(f"rules_overall_recall={r_:.3f}")
    print(f"rules_overall_f1={f:.3f}")
    print(f"rules_overall_agreement={agree / max(labelled, 1):.3f} ({agree}/{labelled})")
    print(f"rules_false_auto_fail={false_auto_fail}/{len(results)}")

    # speed: 1,000 calls x 40 items
    items = tuple(dataclasses.replace(i, id=f"{i.id}_{k}", points=i.points / 5)
                  for k in range(5) for i in scorecard.items)
    big = dataclasses.replace(scorecard, items=items)
    calls = [dataclasses.replace(results[n % len(results)],
                                 recording=dataclasses.replace(results[n % len(results)].recording,
                                                               call_id=f"bench{n:04d}"))
             for n in range(1000)]
    score_call(calls[0], big)  # compile the scorecard and load pypinyin outside the timing
    t0 = time.perf_counter()
    for call in calls:
        score_call(call, big)
    elapsed = time.perf_counter() - t0
    print(f"rules_speed_calls={len(calls)} rules_speed_items={len(big.items)}")
    print(f"rules_speed_seconds={elapsed:.2f} (target < 5)")
    print(f"rules_speed_ratio_vs_target={5.0 / elapsed:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
