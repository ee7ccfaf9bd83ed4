"""Peak memory on one long recording (issue 11): a night's worth of calls on one stereo 8 kHz
file, a 3-minute call every 30 minutes and line noise between.

    .venv/bin/python bench/bench_long.py [--hours 3] [--real]

Runs the real batch on it in a child process, so that its peak RSS is its own, and prints
``long_peak_rss_mb`` beside the size of the decoded audio. Without ``--real`` the words come
from an empty stand-in transcriber (tests/fakes.py style), which measures decoding and every
stage after ASR; with ``--real``, Whisper too. Issue 11's target is 1.5 GB per worker whatever
the length.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 8000

CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from speechqa.config import load_settings
from speechqa.pipeline import run_batch
from speechqa.calls import ChannelTranscript, Transcript

def silent(audio, sha, settings):
    return Transcript(sha, audio.duration_s, audio.n_channels, audio.source_rate,
                      tuple(ChannelTranscript(ch, (), "zh") for ch in range(audio.n_channels)), 0.0, "zh")

overrides = {{"asr": {{"model": {model!r}}}, "sampling": {{"enabled": False}}, "store": {{"db": {db!r}}}}}
settings = load_settings(environ={{}}, overrides=overrides)
t0 = time.perf_counter()
summary = run_batch(Path({folder!r}), Path({out!r}), settings, transcriber=None if {real} else silent)
print("failures", len(summary.failures), "seconds", round(time.perf_counter() - t0, 1))
print("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def write_long(path: Path, hours: float) -> None:
    rng = np.random.default_rng(0)
    n, block = int(hours * 3600 * RATE), RATE * 60
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        for k in range(0, n, block):
            m = min(block, n - k)
            x = rng.normal(0, 30, (m, 2))
            if (k // block) % 30 < 3:  # a 3-minute call every 30 minutes: bursts on both sides
                t = np.arange(m) / RATE
                x[:, 0] += 2000 * np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)
                x[:, 1] += 1500 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.3 * t) < 0)
            w.writeframes(x.astype("<i2").tobytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--real", action="store_true", help="transcribe with Whisper as well")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        write_long(folder / "night.wav", args.hours)
        code = CHILD.format(root=str(ROOT), model=str(ROOT / "models" / "whisper-base"),
                            db=str(Path(tmp) / "qa.db"), folder=str(folder), out=str(Path(tmp) / "out"),
                            real=args.real)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-3000:])
            return done.returncode
        lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    decoded_mb = args.hours * 3600 * 16000 * 2 * 4 / 2**20
    print(f"long_hours={args.hours:g} long_asr={'whisper' if args.real else 'none'}")
    print(f"long_peak_rss_mb={lines['peak_rss_mb']} (decoded audio {decoded_mb:.0f} MB; target 1536)")
    print(f"long_run={lines['failures']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
