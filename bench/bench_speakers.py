"""Mono calls: who spoke when (DER) and who is the agent (role accuracy), on mono mixes.

    .venv/bin/python bench/bench_speakers.py [--sets tune,eval]

Each stereo test call is mixed down to one channel (the mean of its two channels, as a mono
recorder does), so its ground truth still says who spoke when, overlaps and backchannels
included. The real batch (real Whisper, the real speaker models, a real SQLite history
store) runs on the mixes as two nights: each agent's first call on the first night, the rest
on the second, so the second night can use the voiceprints the first night enrolled.

Sets:

- ``tune``: ``recordings/`` and ``tests/fixtures/calls``, the calls the thresholds and cue
  phrases were looked at on;
- ``dev``: mono mixes of ``bench/eval`` .. ``bench/eval4`` (held out for the scorecard, not
  for the speaker stages): what the speaker stages were developed on after ``tune``;
- ``eval``: ``bench/mono`` (new voices, wording and companies, written with mid-turn
  backchannels and barge-ins for this bench), ``bench/eval5`` and ``bench/eval6``; nobody
  tuned the speaker stages on them.

Prints ``key=value`` lines per set:

- ``der``: diarisation error rate of the speaker model's turns against the truth turns
  (pyannote.metrics, a 0.25 s collar each side, overlaps scored), with its ``miss``,
  ``false_alarm`` and ``confusion`` parts;
- ``role_accuracy``: the share of the turns' speech time whose role is the truth's (the
  truth turn each turn overlaps most); ``role_accuracy_sure``: the same on the calls not
  flagged ``roles_uncertain``;
- ``low_confidence_share``: calls flagged ``roles_uncertain`` (must review, role items N/A);
- ``voice_evidence_calls``: second-night calls whose agent had an enrolled voiceprint;
- ``diarise_s`` / ``asr_s`` and ``diarise_to_asr``: what diarisation added, as a ratio to
  the ASR time of the same calls (both measured when the call was first heard).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechqa import audio, diarize  # noqa: E402
from speechqa.config import load_settings  # noqa: E402
from speechqa.models import read_speaker_models  # noqa: E402
from speechqa.pipeline import run_batch  # noqa: E402

SETS = {
    "tune": (ROOT / "recordings", ROOT / "tests" / "fixtures" / "calls"),
    "dev": tuple(ROOT / "bench" / name / "calls" for name in ("eval", "eval2", "eval3", "eval4")),
    "eval": tuple(ROOT / "bench" / name / "calls" for name in ("mono", "eval5", "eval6")),
}
WORK = ROOT / "out" / "bench-speakers"
COLLAR_S = 0.5  # pyannote.metrics' collar is the total: 0.25 s either side of a boundary


def mix_down(folder: Path, into: Path) -> dict[str, dict]:
    """Mono mixes of ``folder``'s calls in ``into`` (16 kHz PCM), its manifest rows beside them."""
    into.mkdir(parents=True, exist_ok=True)
    truths = {}
    with (folder / "calls.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        truth = json.loads((folder / f"{row['call_id']}.truth.json").read_text(encoding="utf-8"))
        truths[row["call_id"]] = truth | {"manifest": row}
        target = into / f"{row['call_id']}.wav"
        if target.exists():
            continue
        sound = audio.decode(folder / row["file"])
        samples = np.clip(sound.mono() * 32767, -32768, 32767).astype("<i2")
        with wave.open(str(target), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(sound.sample_rate)
            out.writeframes(samples.tobytes())
    return truths


def nights(truths: dict[str, dict], work: Path) -> list[Path]:
    """Two night folders: each agent's first call, then the rest (by started_at)."""
    first: dict[str, str] = {}
    for call_id, t in sorted(truths.items(), key=lambda kv: kv[1]["manifest"].get("started_at", "")):
        first.setdefault(t["manifest"].get("agent_id", call_id), call_id)
    folders = [work / "night1", work / "night2"]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    columns = list(next(iter(truths.values()))["manifest"])
    handles = [(folder / "calls.csv").open("w", encoding="utf-8", newline="") for folder in folders]
    writers = [csv.DictWriter(h, columns) for h in handles]
    for w in writers:
        w.writeheader()
    for call_id, t in sorted(truths.items()):
        n = 0 if first.get(t["manifest"].get("agent_id", call_id)) == call_id else 1
        row = dict(t["manifest"], file=f"{call_id}.wav")
        writers[n].writerow(row)
        (folders[n] / f"{call_id}.wav").symlink_to(WORK_MIX[call_id])
    for h in handles:
        h.close()
    return folders


def der(truths: dict[str, dict], cache: Path, models_sha: str, settings) -> dict[str, float]:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=COLLAR_S, skip_overlap=False)
    sp = settings.speakers
    parts = {"miss": 0.0, "false_alarm": 0.0, "confusion": 0.0, "total": 0.0}
    seconds = 0.0
    per_call = {}
    for call_id, truth in truths.items():
        sha = audio.content_sha256(WORK_MIX[call_id])
        found = diarize.load_cached(cache, diarize.cache_key(sha, models_sha, sp.step_s, sp.min_embed_s,
                                                             sp.chunk_s))
        if found is None:
            raise SystemExit(f"{call_id}: no diarisation in the cache (did the run diarise it?)")
        seconds += found.seconds
        ref, hyp = Annotation(), Annotation()
        for i, t in enumerate(truth["turns"]):
            ref[Segment(t["start"], t["end"]), i] = t["role"]
        for i, t in enumerate(found.turns):
            hyp[Segment(t.start, t.end), i] = f"voice{t.speaker}"
        detail = metric(ref, hyp, detailed=True)
        per_call[call_id] = {"der": detail["diarization error rate"],
                             "confusion": detail["confusion"] / max(detail["total"], 1e-9),
                             "similarity": found.similarity}
        for key, name in (("miss", "missed detection"), ("false_alarm", "false alarm"),
                          ("confusion", "confusion"), ("total", "total")):
            parts[key] += detail[name]
    total = max(parts["total"], 1e-9)
    return {"der": (parts["miss"] + parts["false_alarm"] + parts["confusion"]) / total,
            "miss": parts["miss"] / total, "false_alarm": parts["false_alarm"] / total,
            "confusion": parts["confusion"] / total, "diarise_s": seconds, "per_call": per_call}


WORK_MIX: dict[str, Path] = {}


def main() -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="tune,dev,eval")
    args = parser.parse_args()
    cache = ROOT / "out" / ".bench-cache"
    models = read_speaker_models(ROOT / "models" / "speaker")
    for name in args.sets.split(","):
        work = WORK / name
        truths: dict[str, dict] = {}
        for folder in SETS[name]:
            mixes = WORK / "mixes" / "-".join(folder.relative_to(ROOT).parts)
            found = mix_down(folder, mixes)
            for call_id in found:
                WORK_MIX[call_id] = mixes / f"{call_id}.wav"
            truths |= found
        (work / "history.db").unlink(missing_ok=True)
        calls, turns = [], []
        for i, night in enumerate(nights(truths, work)):
            settings = load_settings(overrides={
                "asr": {"model": str(ROOT / "models" / "whisper-base")},
                "speakers": {"model": str(models.path)},
                "batch": {"cache_dir": str(cache), "allow_outside": True},  # the nights link to the mixes
                "store": {"db": str(work / "history.db")},
                "sampling": {"night": f"2027-01-0{i + 1}"},
                "report": {"enabled": False},
            })
            out = work / f"out{i + 1}"
            summary = run_batch(night, out, settings)
            if summary.failures:
                raise SystemExit(f"{night}: {[f.reason for f in summary.failures]}")
            calls.append(pd.read_parquet(out / "calls.parquet").assign(night=i + 1))
            turns.append(pd.read_parquet(out / "turns.parquet"))
        c, t = pd.concat(calls), pd.concat(turns)
        right = total = right_sure = total_sure = 0.0
        by_call: dict[str, list[float]] = {}
        uncertain = set(c[c["flags"].fillna("").str.contains("roles_uncertain")].call_id)
        for row in t.itertuples():
            ref = truths[row.call_id]["turns"]
            best = max(ref, key=lambda x: min(x["end"], row.end) - max(x["start"], row.start))
            d = row.end - row.start
            by_call.setdefault(row.call_id, [0.0, 0.0])
            by_call[row.call_id][0] += d * (best["role"] == row.role)
            by_call[row.call_id][1] += d
            total += d
            right += d * (best["role"] == row.role)
            if row.call_id not in uncertain:
                total_sure += d
                right_sure += d * (best["role"] == row.role)
        scores = der(truths, cache, models.sha256, settings)
        columns = ["night", "role_confidence", "role_evidence", "speaker_similarity"]
        table = c.set_index("call_id")[columns].copy()
        table["role_accuracy"] = [by_call[i][0] / max(by_call[i][1], 1e-9) if i in by_call else None
                                  for i in table.index]
        table["der"] = [scores["per_call"][i]["der"] for i in table.index]
        table["confusion"] = [scores["per_call"][i]["confusion"] for i in table.index]
        table.round(3).to_csv(work / "per_call.csv")  # what each call got, for looking into a set
        asr_s = float(c.asr_seconds.sum())
        second = c[c.night == 2]
        voiced = int(second.role_evidence.fillna("").str.contains("voice").sum())
        print(f"speakers_{name}_calls={len(c)} speakers_{name}_der={scores['der']:.3f} "
              f"speakers_{name}_miss={scores['miss']:.3f} "
              f"speakers_{name}_false_alarm={scores['false_alarm']:.3f} "
              f"speakers_{name}_confusion={scores['confusion']:.3f} (target der <= 0.15)")
        print(f"speakers_{name}_role_accuracy={right / max(total, 1e-9):.4f} "
              f"speakers_{name}_role_accuracy_sure={right_sure / max(total_sure, 1e-9):.4f} (target >= 0.95) "
              f"speakers_{name}_low_confidence_share={len(uncertain) / len(c):.3f} "
              f"speakers_{name}_voice_evidence_calls={voiced}/{len(second)}")
        print(f"speakers_{name}_diarise_s={scores['diarise_s']:.1f} speakers_{name}_asr_s={asr_s:.1f} "
              f"speakers_{name}_diarise_to_asr={scores['diarise_s'] / max(asr_s, 1e-9):.3f} (target <= 0.30)")
        wrong = c[c.call_id.isin(uncertain)][["call_id", "role_confidence", "role_evidence"]]
        for row in wrong.itertuples():
            print(f"  uncertain {row.call_id} confidence={row.role_confidence} {row.role_evidence}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
