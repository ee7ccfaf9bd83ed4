"""ASR benchmark: CER on the shared dev set and speed against a naive baseline.

Prints ``name=value`` lines. Both sides of each comparison run in this one process, so
machine noise affects them alike. "speechqa" is the real batch (``run_batch``: hashing,
decoding, VAD, per-channel Whisper, turns, tables), with a fresh cache.

    python bench/bench_asr.py                 # everything
    python bench/bench_asr.py --only cer      # CER only
    python bench/bench_asr.py --set beam_size=1 --only speed
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import av
import numpy as np
import pandas as pd

from speechqa.audio import decode
from speechqa.config import load_settings
from speechqa.evaluation import cer, has_traditional
from speechqa.pipeline import run_batch

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "data" / "asr-zh-cs-dev"


def naive_model(model_dir: str):
    """Plain faster-whisper: default threads, one worker, int8 on CPU."""
    from faster_whisper import WhisperModel

    return WhisperModel(model_dir, device="cpu", compute_type="int8")


def naive_text(model, samples: np.ndarray) -> str:
    """The baseline loop: beam 5, no VAD, the library's other defaults, language forced."""
    segments, _ = model.transcribe(samples, language="zh", beam_size=5)
    return "".join(s.text for s in segments)


def write_mulaw(samples: np.ndarray, path: Path) -> None:
    """16 kHz mono through an 8 kHz G.711 µ-law WAV, as a call recorder stores it."""
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_mulaw", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32),
                                           format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def digits(text: str) -> str:
    """Chinese numerals as digits, to see how much CER is only the number form: the dev
    references spell numbers out (两千四百九十九), Whisper writes 2499. Diagnostic only."""
    import cn2an

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cn2an.transform(text, "cn2an")
        except (ValueError, KeyError):
            return text


def batch_turns(folder: Path, settings, work: Path):
    """A real batch run into ``work`` (transcribed again): its turns in call order, its wall
    time and its summary. Any failed call stops the benchmark."""
    t0 = time.perf_counter()
    summary = run_batch(folder, work, settings, force=True)
    elapsed = time.perf_counter() - t0
    if summary.failures:
        raise SystemExit(f"benchmark batch failed: {summary.failures[:3]}")
    return pd.read_parquet(work / "turns.parquet").sort_values(["call_id", "start"]), elapsed, summary


def call_texts(turns) -> dict[str, str]:
    """call_id -> every turn's text in time order (``turns`` sorted by call and start)."""
    return turns.groupby("call_id")["text"].agg("".join).to_dict()


def pipeline_texts(folder: Path, settings, work: Path) -> tuple[dict[str, str], float]:
    """call_id -> transcript text from a real batch run, and its wall time."""
    turns, elapsed, _ = batch_turns(folder, settings, work)
    return call_texts(turns), elapsed


def bench_cer(settings, limit: int | None, tmp: Path) -> None:
    refs = dict(
        line.rstrip("\n").split("\t", 1)
        for line in (DEV / "transcripts.tsv").read_text(encoding="utf-8").splitlines()
    )
    ids = sorted(refs)[:limit]
    folder_16k, folder_8k = tmp / "dev16k", tmp / "dev8k"
    folder_16k.mkdir()
    folder_8k.mkdir()
    audio = {}
    for i in ids:
        src = DEV / "audio" / f"{i}.flac"
        (folder_16k / src.name).symlink_to(src)
        audio[i] = decode(src).samples[0]
        write_mulaw(audio[i], folder_8k / f"{i}.wav")
    ref_list = [refs[i] for i in ids]

    model = naive_model(settings.asr.model)
    t0 = time.perf_counter()
    naive = [naive_text(model, audio[i]) for i in ids]
    t_naive = time.perf_counter() - t0
    print(f"cer_dev_naive={cer(ref_list, naive):.4f}")
    print(f"traditional_outputs_naive={sum(has_traditional(h) for h in naive)}/{len(ids)}")

    for name, folder in (("cer_dev", folder_16k), ("cer_dev_8k_mulaw", folder_8k)):
        texts, elapsed = pipeline_texts(folder, settings, tmp / f"out-{name}")
        hyps = [texts.get(i, "") for i in ids]
        print(f"{name}={cer(ref_list, hyps):.4f}")
        print(f"{name}_numbers_as_digits={cer([digits(r) for r in ref_list], [digits(h) for h in hyps]):.4f}")
        if name == "cer_dev":
            print(f"traditional_outputs={sum(has_traditional(h) for h in hyps)}/{len(ids)}")
            print(f"cer_dev_speed_ratio_vs_naive={t_naive / elapsed:.2f}")
    print(f"cer_dev_utterances={len(ids)}")


def bench_speed(settings, recordings: Path, tmp: Path) -> None:
    files = sorted(recordings.glob("*.wav"))
    model = naive_model(settings.asr.model)
    naive_text(model, decode(files[0]).mono()[: 16000 * 5])  # warm-up, as the batch loads once

    t0 = time.perf_counter()
    audio_s = 0.0
    for f in files:  # baseline: decode, mono mix, plain loop
        a = decode(f)
        audio_s += a.duration_s
        naive_text(model, a.mono())
    t_base = time.perf_counter() - t0
    del model

    _, t_ours = pipeline_texts(recordings, settings, tmp / "out-speed")
    print(f"speed_calls={len(files)}")
    print(f"speed_audio_seconds={audio_s:.1f}")
    print(f"speed_baseline_x_realtime={audio_s / t_base:.1f}")
    print(f"speed_speechqa_x_realtime={audio_s / t_ours:.1f}")
    print(f"speed_ratio_vs_baseline={t_base / t_ours:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["cer", "speed"])
    parser.add_argument("--limit", type=int, help="first N dev utterances only")
    parser.add_argument("--recordings", type=Path, default=ROOT / "recordings")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an [asr] setting")
    args = parser.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides.setdefault("model", str(ROOT / "models" / "whisper-base"))
    # CER measures what Whisper heard, so numbers are not masked here (the temp outputs go).
    settings = load_settings(environ={}, overrides={"asr": overrides, "text": {"redact_pii": False},
                                                      "sampling": {"enabled": False}})
    print("settings=" + ",".join(f"{k}={v}" for k, v in dataclasses.asdict(settings.asr).items()
                                 if k not in ("initial_prompt", "model")))
    with tempfile.TemporaryDirectory(prefix="speechqa-bench-") as tmp:
        if args.only in (None, "cer"):
            if not DEV.is_dir():
                raise SystemExit(f"{DEV}: dev set not found (expected ../shared beside the checkout)")
            bench_cer(settings, args.limit, Path(tmp))
        if args.only in (None, "speed"):
            bench_speed(settings, args.recordings, Path(tmp))


if __name__ == "__main__":
    main()
