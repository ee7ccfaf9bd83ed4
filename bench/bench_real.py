"""ASR on real human speech, side by side with the naive loop: error rate, coverage, prompt
echoes and speed.

    .venv/bin/python bench/bench_real.py [--sets real_tune,real_report,dev] [--set KEY=VALUE]

Sets:

* ``real_tune`` / ``real_report``: ``bench/real`` (public recordings with their own reference
  text, see bench/real/README.md), by its ``split``. Settings are chosen on ``real_tune``
  only; ``real_report`` is what we report. Each set is also scored per ``kind``
  (spontaneous, meeting, telephone, read, and the first three pooled as ``conversational``)
  and per language.
* ``dev``: ``../shared/data/asr-zh-cs-dev`` (read customer-service sentences).

Per set and side (``speechqa``: the real batch, ``run_batch``, with each file's language
forced as a user would with ``--language``; ``naive``: faster-whisper's defaults, beam 5, no
VAD, the language forced too):

* ``cer`` (Chinese) / ``wer`` (other languages), corpus-level, bench/… evaluation.py's
  normalisation;
* ``coverage``: the share of detected speech that has words (speechqa/coverage.py), for the
  naive loop from its segments' spans;
* ``prompt_echo_rate``: turns flagged ``prompt_echo`` per turn (the naive loop has no prompt);
* ``cjk_in_other_language``: files in a non-CJK language whose output has Han characters;
* ``x_realtime``: audio seconds per wall second, both timed in this process.

A last pass runs speechqa with ``language = auto`` (``languages = zh, en``) over the whole
set and prints how often it detected each file's language.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_asr import DEV, naive_model  # noqa: E402

from speechqa import coverage  # noqa: E402
from speechqa.audio import decode, frame_levels  # noqa: E402
from speechqa.calls import Turn, Word  # noqa: E402
from speechqa.config import load_settings  # noqa: E402
from speechqa.evaluation import cer, wer  # noqa: E402
from speechqa.pipeline import run_batch  # noqa: E402

REAL = ROOT / "bench" / "real"
SETS = ("real_tune", "real_report", "dev")
CONVERSATIONAL = ("spontaneous", "meeting", "telephone")  # pooled as ``_conversational``: not read
_HAN = re.compile(r"[\u4e00-\u9fff]")


def load_set(name: str, limit: int | None) -> list[dict]:
    """Rows of ``file`` (absolute), ``lang``, ``kind``, ``text``."""
    if name == "dev":
        refs = dict(line.split("\t", 1) for line in
                    (DEV / "transcripts.tsv").read_text(encoding="utf-8").splitlines() if "\t" in line)
        rows = [{"file": str(DEV / "audio" / f"{k}.flac"), "lang": "zh", "kind": "read", "text": v}
                for k, v in sorted(refs.items())]
    else:
        split = name.removeprefix("real_")
        rows = [r | {"file": str(REAL / r["file"])}
                for line in (REAL / "refs.jsonl").read_text(encoding="utf-8").splitlines()
                if (r := json.loads(line))["split"] == split]
    return rows[:limit]


def error_rate(lang: str, refs: list[str], hyps: list[str]) -> tuple[str, float]:
    return ("cer", cer(refs, hyps)) if lang in ("zh", "yue", "ja") else ("wer", wer(refs, hyps))


def naive_side(rows: list[dict], model_dir: str) -> tuple[dict[str, str], dict[str, float | None], float]:
    """The naive loop: texts, coverage from its segments, and the wall time."""
    model = naive_model(model_dir)
    texts, covered = {}, {}
    t0 = time.perf_counter()
    for r in rows:
        samples = decode(Path(r["file"])).mono()
        segments, _ = model.transcribe(samples, language=r["lang"], beam_size=5)
        segments = list(segments)
        texts[r["file"]] = "".join(s.text for s in segments) if r["lang"] in ("zh", "yue", "ja") else \
            " ".join(s.text.strip() for s in segments)
        # coverage from the segments' spans (the naive loop asks for no word timestamps)
        turns = [Turn("n", f"n-{i}", "unknown", 0, s.start, s.end, s.text, 0.0, 0.0, 0.0,
                      words=(Word(s.start, s.end, s.text, 1.0),)) for i, s in enumerate(segments)]
        speech = coverage.channel_speech([frame_levels(samples, 16000)], turns)
        covered[r["file"]] = coverage.coverage(turns, speech)["coverage"]
    return texts, covered, time.perf_counter() - t0


def speechqa_side(rows: list[dict], overrides: dict, tmp: Path, auto: bool = False):
    """The real batch per language (forced), or once with language auto: texts, coverage,
    echo counts, detected languages and the wall time."""
    texts, covered, echoes, turns_n, detected = {}, {}, 0, 0, {}
    elapsed = 0.0
    groups = {"auto": rows} if auto else {lang: [r for r in rows if r["lang"] == lang]
                                          for lang in sorted({r["lang"] for r in rows})}
    for lang, members in groups.items():
        folder = tmp / f"in-{lang}"
        folder.mkdir(parents=True, exist_ok=True)
        names = {}
        for k, r in enumerate(members):
            link = folder / f"f{k:04d}{Path(r['file']).suffix}"
            link.symlink_to(r["file"])
            names[link.stem] = r["file"]
        sections: dict[str, dict] = {"text": {"redact_pii": False}, "sampling": {"enabled": False}}
        for key, value in overrides.items():  # KEY is an [asr] setting, or SECTION.KEY
            section, _, name = key.rpartition(".")
            sections.setdefault(section or "asr", {})[name] = value
        sections["asr"] |= {"language": "auto", "languages": "zh|en"} if auto else {"language": lang}
        settings = load_settings(environ={}, overrides=sections)
        out = tmp / f"out-{lang}"
        t0 = time.perf_counter()
        summary = run_batch(folder, out, settings, force=True)
        elapsed += time.perf_counter() - t0
        if summary.failures:
            raise SystemExit(f"benchmark batch failed: {summary.failures[:3]}")
        turns = pd.read_parquet(out / "turns.parquet").sort_values(["call_id", "start"])
        calls = pd.read_parquet(out / "calls.parquet").set_index("call_id")
        joiner = "" if lang in ("zh", "yue", "ja") else " "
        for call_id, group in turns.groupby("call_id"):
            texts[names[call_id]] = joiner.join(group["text"])
        for call_id, row in calls.iterrows():
            covered[names[call_id]] = None if pd.isna(row["coverage"]) else float(row["coverage"])
            detected[names[call_id]] = row["language"]
        echoes += int(turns["flags"].fillna("").str.contains("prompt_echo").sum())
        turns_n += len(turns)
    return texts, covered, echoes, turns_n, detected, elapsed


def _mean(values) -> str:
    vs = [v for v in values if v is not None]
    return f"{sum(vs) / len(vs):.3f}" if vs else "n/a"


def report(name: str, rows: list[dict], side: str, texts: dict, covered: dict) -> None:
    spoken = [r for r in rows if r["kind"] in CONVERSATIONAL]
    kinds = sorted({r["kind"] for r in rows})
    groups = [("", rows), *[(f"_{k}", [r for r in rows if r["kind"] == k]) for k in kinds]]
    if spoken and len(spoken) < len(rows):
        groups.append(("_conversational", spoken))
    for label, members in groups:
        for lang in sorted({r["lang"] for r in members}):
            mine = [r for r in members if r["lang"] == lang]
            hyps = [texts.get(r["file"], "") for r in mine]
            metric, value = error_rate(lang, [r["text"] for r in mine], hyps)
            print(f"{name}{label}_{lang}_{metric}_{side}={value:.4f} (files={len(mine)})")
        if not label:
            print(f"{name}_coverage_{side}={_mean(covered.get(r['file']) for r in rows)}")
            other = [r for r in rows if r["lang"] not in ("zh", "yue", "ja", "ko")]
            if other:
                cjk = sum(bool(_HAN.search(texts.get(r["file"], ""))) for r in other)
                print(f"{name}_cjk_in_other_language_{side}={cjk}/{len(other)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="real_tune,real_report", help=f"comma-separated: {', '.join(SETS)}")
    parser.add_argument("--limit", type=int, help="first N files of each set")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of the speechqa side: an [asr] KEY, or SECTION.KEY")
    parser.add_argument("--no-auto", action="store_true", help="skip the language = auto pass")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop (settings sweeps)")
    args = parser.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides.setdefault("model", str(ROOT / "models" / "whisper-base"))
    print("settings=" + ",".join(f"{k}={v}" for k, v in overrides.items() if k != "model"))
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        if name not in SETS:
            parser.error(f"unknown set {name!r}; choose from {', '.join(SETS)}")
        rows = load_set(name, args.limit)
        audio_s = sum(decode(Path(r["file"])).duration_s for r in rows)
        with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
            texts, covered, echoes, n_turns, _, t_ours = speechqa_side(rows, overrides, Path(tmp) / "lang")
            print(f"{name}_files={len(rows)} {name}_audio_s={audio_s:.1f}")
            report(name, rows, "speechqa", texts, covered)
            print(f"{name}_prompt_echo_rate_speechqa={echoes / max(n_turns, 1):.4f} ({echoes}/{n_turns} turns)")
            print(f"{name}_x_realtime_speechqa={audio_s / t_ours:.1f}")
            if not args.no_naive:
                naive_texts, naive_covered, t_naive = naive_side(rows, overrides["model"])
                report(name, rows, "naive", naive_texts, naive_covered)
                print(f"{name}_x_realtime_naive={audio_s / t_naive:.1f} "
                      f"{name}_speed_ratio_vs_naive={t_naive / t_ours:.2f}")
            if not args.no_auto and name != "dev":
                _, _, _, _, detected, _ = speechqa_side(rows, overrides, Path(tmp) / "auto", auto=True)
                right = sum(detected.get(r["file"]) == r["lang"] for r in rows)
                wrong = [f"{Path(r['file']).name}:{detected.get(r['file'])}" for r in rows
                         if detected.get(r["file"]) != r["lang"]]
                print(f"{name}_language_auto_right={right}/{len(rows)}"
                      + (f" wrong={','.join(wrong)}" if wrong else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
