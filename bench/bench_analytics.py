"""Conversation analytics against the ground truth of the committed calls, and their cost.

    .venv/bin/python bench/bench_analytics.py

Runs the real batch (real model, real audio) on ``recordings/`` and the test fixtures, with
the transcript cache in ``out/.bench-cache`` so a second run does no ASR, and prints
``key=value`` lines:

- ``silence_*``: silences and holds found with start and end within 0.5 s of the truth
  (recall, precision);
- ``bargein_*``: interruptions on stereo calls with the right interrupter and a start within
  0.5 s (recall, precision); mono calls cannot say who spoke over whom yet;
- ``talk_time_err_*``: mean and worst relative error of talk time per role on stereo calls;
- ``escalation_*``: threats found on their turn with the right kind (recall), and escalation
  events on calls with no threat at all (false calls);
- ``pii_values_leaked``: truth PII values of which 7 or more digits can be read in any
  written value;
- ``analytics_turns_per_s``: turns through the text, sentiment and metrics stages per second
  of their own time (audio decoding for the levels included), and their share of a cached run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechqa.config import load_settings  # noqa: E402
from speechqa.pipeline import run_batch  # noqa: E402

TOL_S = 0.5
THREAT_KIND = {
    "complaint_threat": "complaint", "regulator_threat": "regulator", "media_threat": "media",
    "lawyer_threat": "lawyer", "supervisor_request": "supervisor", "cancel_threat": "cancellation",
}
FOLDERS = (ROOT / "recordings", ROOT / "tests" / "fixtures" / "calls")


def _digits(text: str) -> str:
    from speechqa.text import CN_DIGIT_VALUES as cn

    return "".join(cn.get(c, c) for c in text if c.isdigit() or c in cn or c in "Xx").upper()


def main() -> int:
    import pandas as pd

    settings = load_settings(overrides={
        "asr": {"model": str(ROOT / "models" / "whisper-base")},
        "batch": {"cache_dir": str(ROOT / "out" / ".bench-cache")},
        "sampling": {"enabled": False},  # a benchmark is not a night: nothing goes into the history store
    })
    truths, runs = {}, []
    for folder in FOLDERS:
        for path in sorted(folder.glob("*.truth.json")):
            truths[path.name.removesuffix(".truth.json")] = json.loads(path.read_text(encoding="utf-8"))
        runs.append(run_batch(folder, ROOT / "out" / "bench-analytics" / folder.name, settings))
    events = pd.concat([pd.read_parquet(r.out / "events.parquet") for r in runs], ignore_index=True)
    calls = pd.concat([pd.read_parquet(r.out / "calls.parquet") for r in runs]).set_index("call_id")

    found = want = got = 0
    for call_id, truth in truths.items():
        expected = [e for e in truth["events"] if e["type"] in ("silence", "hold")]
        mine = events[(events.call_id == call_id) & events.type.isin(["silence", "hold"])]
        want += len(expected)
        got += len(mine)
        found += sum(any(m.type == e["type"] and abs(m.start - e["start"]) <= TOL_S
                         and abs(m.end - e["end"]) <= TOL_S for m in mine.itertuples()) for e in expected)
    print(f"silence_recall={found / max(want, 1):.3f} ({found}/{want})")
    print(f"silence_precision={found / max(got, 1):.3f} ({found}/{got})")

    found = want = got = 0
    errors = []
    for call_id, truth in truths.items():
        if truth["layout"] != "stereo":
            continue
        expected = [e for e in truth["events"] if e["type"] == "barge_in"]
        mine = events[(events.call_id == call_id) & (events.type == "interruption")]
        want += len(expected)
        got += len(mine)
        found += sum(any(m.role == e["role"] and abs(m.start - e["start"]) <= TOL_S for m in mine.itertuples())
                     for e in expected)
        for role, seconds in truth["talk_time_s"].items():
            errors.append(abs(calls.loc[call_id, f"talk_s_{role}"] - seconds) / seconds)
    print(f"bargein_recall_stereo={found / max(want, 1):.3f} ({found}/{want})")
    print(f"bargein_precision_stereo={found / max(got, 1):.3f} ({found}/{got})")
    print(f"talk_time_err_mean_stereo={sum(errors) / len(errors):.4f}")
    print(f"talk_time_err_max_stereo={max(errors):.4f}")

    found = want = false_calls = calm = 0
    escalations = events[events.type == "escalation"]
    for call_id, truth in truths.items():
        threats = [e for e in truth["events"] if e["type"] in THREAT_KIND]
        mine = escalations[escalations.call_id == call_id]
        if not threats:
            calm += 1
            false_calls += not mine.empty
        for t in threats:
            want += 1
            found += any(m.detail == THREAT_KIND[t["type"]] and m.start < t["end"] and m.end > t["start"]
                         for m in mine.itertuples())
    print(f"escalation_recall={found / max(want, 1):.3f} ({found}/{want})")
    print(f"escalation_false_calls={false_calls}/{calm}")

    written = []
    for r in runs:
        for path in r.out.glob("*.parquet"):
            df = pd.read_parquet(path)
            if "word" in df.columns:
                written.extend(df.groupby("turn_id").word.agg(lambda w: "".join(w.astype(str))))
            for column in df.columns:
                if df[column].dtype == object or str(df[column].dtype) == "string":
                    written.extend(str(v) for v in df[column].dropna())
    leaked = 0
    for truth in truths.values():
        for item in truth["pii"]:
            value = item["value"].upper()
            leaked += any(value[i:i + 7] in _digits(v) for v in written for i in range(len(value) - 6))
    print(f"pii_values_leaked={leaked}/{sum(len(t['pii']) for t in truths.values())}")

    stage_s = sum(r.run_info["timings_s"].get(k, 0.0) for r in runs for k in ("text", "sentiment", "metrics"))
    total_s = sum(r.run_info["timings_s"]["total"] for r in runs)
    n_turns = sum(r.run_info["counts"]["turns"] for r in runs)
    print(f"analytics_turns_per_s={n_turns / stage_s:.0f} ({n_turns} turns, {stage_s:.2f} s)")
    print(f"analytics_share_of_run={stage_s / total_s:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
