"""ASR benchmark: CER on the shared dev set and speed against a naive baseline.

Prints ``name=value`` lines. Ratios are measured in this one process, so machine noise
affects both sides alike.

    python bench/bench_asr.py                 # everything
    python bench/bench_asr.py --only cer      # CER only
    python bench/bench_asr.py --set beam_size=1 --only speed
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import time
from pathlib import Path

import av
import numpy as np

from speechqa import asr
from speechqa.audio import decode
from speechqa.config import load_settings
from speechqa.evaluation import cer, has_traditional
from speechqa.models import read_model

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "data" / "asr-zh-cs-dev"


def telephone(samples: np.ndarray) -> np.ndarray:
    """16 kHz audio through an 8 kHz G.711 µ-law WAV and back, as a call recorder stores it."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as out:
        stream = out.add_stream("pcm_mulaw", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt",
                                           layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    path = Path("/tmp/_speechqa_bench_tel.wav")
    path.write_bytes(buf.getvalue())
    return decode(path).samples[0]


def text_of(ct) -> str:
    return "".join(s.text for s in ct.segments)


def bench_cer(model, settings, limit: int | None) -> None:
    refs = dict(
        line.rstrip("\n").split("\t", 1)
        for line in (DEV / "transcripts.tsv").read_text(encoding="utf-8").splitlines()
    )
    ids = sorted(refs)[:limit]
    audio = {i: decode(DEV / "audio" / f"{i}.flac").samples[0] for i in ids}
    naive = []
    t0 = time.perf_counter()
    for i in ids:
        segments, _ = model.transcribe(audio[i], language="zh", beam_size=5)
        naive.append("".join(s.text for s in segments))
    t_naive = time.perf_counter() - t0
    print(f"cer_dev_naive={cer([refs[i] for i in ids], naive):.4f}")
    print(f"traditional_outputs_naive={sum(has_traditional(h) for h in naive)}/{len(ids)}")

    for name, prepare in (("cer_dev", lambda x: x), ("cer_dev_8k_mulaw", telephone)):
        hyps = []
        t0 = time.perf_counter()
        for i in ids:
            ct = asr.transcribe_channel(model, prepare(audio[i]), 0, settings.asr)
            hyps.append(asr.convert_script(text_of(ct), settings.turns.script))
        elapsed = time.perf_counter() - t0
        print(f"{name}={cer([refs[i] for i in ids], hyps):.4f}")
        if name == "cer_dev":
            print(f"traditional_outputs={sum(has_traditional(h) for h in hyps)}/{len(ids)}")
            print(f"cer_dev_time_ratio_vs_naive={t_naive / elapsed:.2f}")
    print(f"cer_dev_utterances={len(ids)}")


def bench_speed(model, settings, recordings: Path) -> None:
    files = sorted(recordings.glob("*.wav"))
    decoded = {f: decode(f) for f in files}
    audio_s = sum(a.duration_s for a in decoded.values())

    t0 = time.perf_counter()
    for a in decoded.values():  # the naive baseline: mono mix, defaults, no VAD
        segments, _ = model.transcribe(a.mono(), language="zh", beam_size=5)
        for _ in segments:
            pass
    t_base = time.perf_counter() - t0

    t0 = time.perf_counter()
    for f, a in decoded.items():  # ours: per channel, VAD, word timestamps
        asr.transcribe(model, a, "bench", settings.asr)
    t_ours = time.perf_counter() - t0
    print(f"speed_audio_seconds={audio_s:.1f}")
    print(f"speed_baseline_rtf={t_base / audio_s:.4f}")
    print(f"speed_speechqa_rtf={t_ours / audio_s:.4f}")
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
    settings = load_settings(environ={}, overrides={"asr": overrides})
    info = read_model(Path(settings.asr.model))
    device = asr.resolve_device(settings.asr.device)
    compute = asr.resolve_compute_type(device, settings.asr.compute_type)
    model = asr.load_model(str(info.path), device, compute, settings.asr.cpu_threads, 1)
    print(f"model={info.name} device={device} compute_type={compute}")
    print("settings=" + ",".join(f"{k}={v}" for k, v in dataclasses.asdict(settings.asr).items()
                                 if k != "initial_prompt"))
    if args.only in (None, "cer"):
        if not DEV.is_dir():
            raise SystemExit(f"{DEV}: dev set not found (expected ../shared beside the checkout)")
        bench_cer(model, settings, args.limit)
    if args.only in (None, "speed"):
        bench_speed(model, settings, args.recordings)


if __name__ == "__main__":
    main()
