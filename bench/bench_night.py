"""A synthetic night of N calls through everything after ASR: time and peak RSS per size.

    .venv/bin/python bench/bench_night.py [--calls 500,2000,10000] [--workers 1]

Each night is a manifest of N rows (its own call_id, agent, team and start time per row) over
the committed fixture calls and recordings/, so every call is hashed, decoded, measured and
analysed for real; the words come from the scripted transcriber (tests/fakes.py), so no model
runs and each audio file is "transcribed" once. Sampling and the SQLite history store are on.
Each size runs in its own process, and its peak RSS comes from the kernel (wait4). The
baseline, measured in the same run, is a night of one call: the process with every stage
loaded. Memory must not grow with the night (issue 11: flat, at most 500 MB).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "tests" / "fixtures" / "calls", ROOT / "recordings"]


def write_night(folder: Path, n_calls: int) -> Path:
    """``calls.csv`` with ``n_calls`` rows cycling over the source recordings (absolute paths,
    allowed by [batch] allow_outside)."""
    audio = sorted(p for source in SOURCES for p in source.glob("*.wav")
                   if p.with_suffix(".truth.json").exists())
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "calls.csv"
    with open(manifest, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["call_id", "file", "agent_id", "agent_name", "team", "started_at"])
        for i in range(n_calls):
            agent = i % 97
            w.writerow([f"n{i:06d}", str(audio[i % len(audio)]), f"a{agent:03d}", f"坐席{agent}",
                        f"team{agent % 7}", f"2026-11-30 {8 + i % 12:02d}:{i % 60:02d}:00"])
    return manifest


CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from speechqa.config import load_settings
from speechqa.pipeline import run_batch
from tests.fakes import ScriptedTranscriber
work = Path({work!r})
settings = load_settings(environ={{}}, overrides={{
    "asr": {{"model": "unused", "workers": {workers}}},
    "batch": {{"cache_dir": str(work / "cache"), "allow_outside": True}},
    "store": {{"db": str(work / "qa.db")}}, "sampling": {{"night": "2026-11-30"}}}})
t0 = time.perf_counter()
s = run_batch(work / "night", work / "out", settings,
              transcriber=ScriptedTranscriber(*[Path(p) for p in {sources!r}]))
print(time.perf_counter() - t0, s.run_info["counts"]["ok"], s.run_info["counts"]["failed"])
"""


def run_night(n_calls: int, workers: int) -> tuple[float, int, int, float]:
    with tempfile.TemporaryDirectory(prefix="speechqa-night-") as tmp:
        work = Path(tmp)
        write_night(work / "night", n_calls)
        code = CHILD.format(root=str(ROOT), work=str(work), workers=workers, sources=[str(s) for s in SOURCES])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHQA_")}
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        out, err = child.stdout.read(), child.stderr.read()  # type: ignore[union-attr]
        if status != 0:
            raise SystemExit(f"night of {n_calls} calls failed:\n{err[-3000:]}")
        seconds, ok, failed = out.split()
        return float(seconds), int(ok), int(failed), usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="500,2000,10000", help="night sizes, comma separated")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(n) for n in args.calls.split(",")]
    t0 = time.perf_counter()
    _, _, _, base_rss = run_night(1, args.workers)
    print(f"night_baseline_calls=1 peak_rss_mb={base_rss:.0f}")
    peaks = {}
    for n in sizes:
        seconds, ok, failed, rss = run_night(n, args.workers)
        peaks[n] = rss
        print(f"night_calls={n} ok={ok} failed={failed} seconds={seconds:.1f} calls_per_s={n / seconds:.1f} "
              f"peak_rss_mb={rss:.0f} rss_vs_one_call={rss / base_rss:.2f}", flush=True)
    small, large = min(peaks), max(peaks)
    print(f"night_rss_growth_{small}_to_{large}={peaks[large] / peaks[small]:.2f} "
          f"night_peak_rss_mb_max={max(peaks.values()):.0f} (target <= 500, flat)")
    print(f"bench_seconds={time.perf_counter() - t0:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
