"""End-to-end speed on stereo calls, beside the naive loop and the ASR floor, with CER beside
every speed figure (issue 12).

    .venv/bin/python bench/bench_speed.py [--calls DIR ...] [--set KEY=VALUE] [--only PART,...]

Every side runs in this one process, one after another, so machine noise affects them alike;
each ratio compares two timings of this run. The calls are stereo recordings with their truth
(``*.truth.json``: the spoken turns), by default the committed ``recordings/`` and the
held-out ``bench/eval6/calls``. CER is corpus-level over whole calls (every turn of both
roles, in time order, evaluation.py's normalisation), numbers not masked; against the floor,
CER is per channel (each role's turns), as the floor has no times finer than a window.

Sides (``--only`` picks some: naive, floor, speechqa, workers, rss, cached):

* ``naive``: decode, mix to mono, faster-whisper's defaults (beam 5, no VAD, the library's own
  thread count), language forced, and ``SnowNLP(text).sentiments`` per segment;
* ``floor``: the least Whisper work that gives text: each channel's speech only (the same VAD
  settings), greedy, no prompt, no word timestamps, faster-whisper's batched pipeline (each
  channel on its own), on the same workers and threads as speechqa; decoding the files
  included, and the text converted to simplified characters;
* ``speechqa``: the real batch (``run_batch``, fresh cache, every stage and table);
* ``workers``: the real batch with 1 worker and with 2 (one thread each), for the speedup;
* ``rss``: ``speechqa run --executor process`` with 2 workers, in a process of its own: the
  largest worker's peak RSS and the driver's;
* ``cached``: the real batch again with every transcript cached, the calls copied until there
  are 1,000 (a fifth of a 5,000-call night): analytics calls per second on the local and the
  process executor (2 workers, target 100); then the same OUT with a changed scorecard, each
  call re-scored from its part (a QA team's rules change).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_asr import batch_turns, call_texts, naive_model  # noqa: E402

from speechqa import asr  # noqa: E402
from speechqa.audio import decode  # noqa: E402
from speechqa.config import load_settings  # noqa: E402
from speechqa.evaluation import cer  # noqa: E402
from speechqa.pipeline import run_batch  # noqa: E402

CALLS = (ROOT / "recordings", ROOT / "bench" / "eval6" / "calls")
PARTS = ("naive", "floor", "speechqa", "workers", "rss", "cached")
CACHED_CALLS = 1000


def references(folders) -> dict[str, tuple[Path, str]]:
    """call id -> (audio file, what was said: every turn's text in time order)."""
    refs = {}
    for folder in map(Path.resolve, folders):  # absolute: the calls are linked from elsewhere
        for truth_path in sorted(folder.glob("*.truth.json")):
            truth = json.loads(truth_path.read_text(encoding="utf-8"))
            turns = sorted(truth["turns"], key=lambda t: t["start"])
            refs[truth["call_id"]] = (folder / truth["file"], "".join(t["text"] for t in turns))
    return refs


def channel_references(folders) -> dict[tuple[str, int], str]:
    """(call id, channel) -> what was said on that channel (stereo calls)."""
    refs = {}
    for folder in map(Path.resolve, folders):  # absolute: the calls are linked from elsewhere
        for truth_path in sorted(folder.glob("*.truth.json")):
            truth = json.loads(truth_path.read_text(encoding="utf-8"))
            for role, channel in (truth.get("channels") or {}).items():
                turns = sorted((t for t in truth["turns"] if t["role"] == role), key=lambda t: t["start"])
                refs[(truth["call_id"], channel)] = "".join(t["text"] for t in turns)
    return refs


def score(refs, texts: dict) -> float:
    """Corpus CER; ``refs`` maps a key to (file, text) or to text."""
    ids = sorted(refs)
    return cer([refs[i][1] if isinstance(refs[i], tuple) else refs[i] for i in ids],
               [texts.get(i, "") for i in ids])


def run_naive(refs, model_dir: str) -> tuple[dict[str, str], float]:
    from snownlp import SnowNLP

    model = naive_model(model_dir)
    first = next(iter(refs.values()))[0]
    model.transcribe(decode(first).mono()[: 16000 * 5], language="zh", beam_size=5)  # warm-up
    texts = {}
    t0 = time.perf_counter()
    for call_id, (path, _) in refs.items():
        segments, _ = model.transcribe(decode(path).mono(), language="zh", beam_size=5)
        heard = []
        for s in segments:
            if s.text.strip():
                SnowNLP(s.text).sentiments  # noqa: B018 - the naive loop's sentiment, per segment
            heard.append(s.text)
        texts[call_id] = "".join(heard)
    return texts, time.perf_counter() - t0


def run_floor(refs, settings) -> tuple[dict[tuple[str, int], str], float]:
    """Greedy decoding of each channel's speech, nothing else, on speechqa's worker layout:
    (call id, channel) -> text (a window's text is one segment, so only a channel's text can
    be scored: the whole call's order is lost)."""
    from faster_whisper import BatchedInferencePipeline

    s = settings.asr
    workers, threads = asr.resolve_workers("cpu", s.workers, s.cpu_threads)
    model = asr.load_model(s.model, "cpu", "int8", threads, workers)

    def one(path: Path) -> list[str]:
        audio = decode(path)
        heard = []
        for ch in range(audio.n_channels):
            segments, _ = BatchedInferencePipeline(model).transcribe(
                audio.samples[ch], language="zh", beam_size=1, batch_size=max(s.batch_size, 1),
                vad_filter=True, vad_parameters=asr._vad_parameters(s), word_timestamps=False,
                no_speech_threshold=None)
            # no prompt, so Whisper often writes traditional characters: converted, as speechqa does
            heard.append(asr.convert_script("".join(seg.text for seg in segments), "simplified"))
        return heard

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = dict(zip(refs, pool.map(one, [p for p, _ in refs.values()]), strict=True))
    elapsed = time.perf_counter() - t0
    return {(call_id, ch): text for call_id, texts in found.items() for ch, text in enumerate(texts)}, elapsed


def link_calls(refs, folder: Path, copies: int = 1) -> Path:
    folder.mkdir(parents=True)
    for k in range(copies):
        for call_id, (path, _) in refs.items():
            name = f"{call_id}{path.suffix}" if copies == 1 else f"{call_id}-{k:03d}{path.suffix}"
            (folder / name).symlink_to(path)
    return folder


def run_speechqa(refs, settings, work: Path, name: str) -> tuple[dict[str, str], dict, float, dict]:
    """The real batch on the calls (fresh cache): the call texts, the (call id, channel)
    texts, the wall time and run.json."""
    folder, out = link_calls(refs, work / f"calls-{name}"), work / f"out-{name}"
    turns, seconds, summary = batch_turns(folder, settings, out)
    texts = call_texts(turns)
    by_channel = turns.sort_values(["call_id", "channel", "start"]).groupby(["call_id", "channel"])["text"]
    shutil.rmtree(out)
    return texts, by_channel.agg("".join).to_dict(), seconds, summary.run_info


WORKER_RSS = """
import resource, sys, time
from speechqa.cli import main
t0 = time.perf_counter()
try:
    main(sys.argv[1:])
except SystemExit as exit:
    if exit.code:
        raise
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def process_run(refs, settings, work: Path) -> tuple[float, float, float, dict[str, str]]:
    """``speechqa run --executor process`` with 2 single-threaded workers, driven from a
    fresh small process: (seconds, the driver's peak RSS MB, the largest worker's peak RSS
    MB, the call texts). A worker forked from this benchmark's process would count its
    models too, so the run has a process of its own."""
    import subprocess

    import pandas as pd

    folder, out = link_calls(refs, work / "calls-process"), work / "out-process"
    config = work / "process.toml"
    config.write_text(
        f'[asr]\nmodel = "{settings.asr.model}"\nworkers = 2\ncpu_threads = 1\n'
        f'beam_size = {settings.asr.beam_size}\n'
        f'[batch]\nexecutor = "process"\ncache_dir = "{work / "cache-process"}"\n'
        '[text]\nredact_pii = false\n[sampling]\nenabled = false\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", WORKER_RSS, "run", str(folder), "--out", str(out),
                           "--config", str(config), "--quiet"], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    seconds, driver_kb, worker_kb = done.stdout.split()[-3:]
    texts = call_texts(pd.read_parquet(out / "turns.parquet").sort_values(["call_id", "start"]))
    shutil.rmtree(out)
    return float(seconds), int(driver_kb) / 1024, int(worker_kb) / 1024, texts


def with_overrides(settings, **sections):
    import dataclasses

    return dataclasses.replace(settings, **{k: dataclasses.replace(getattr(settings, k), **v)
                                            for k, v in sections.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=Path, action="append", help="a folder of stereo calls with truth")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an [asr] setting")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated: {','.join(PARTS)}")
    args = parser.parse_args()
    only = set(args.only.split(","))
    refs = references(args.calls or CALLS)
    channel_refs = channel_references(args.calls or CALLS)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides.setdefault("model", str(ROOT / "models" / "whisper-base"))
    audio_s = sum(decode(p).duration_s for p, _ in refs.values())
    print(f"speed_calls={len(refs)} audio_seconds={audio_s:.1f} cores={os.cpu_count()} "
          f"isa={os.environ.get('CT2_FORCE_CPU_ISA', 'native')}")
    with tempfile.TemporaryDirectory(prefix="speechqa-bench-speed-") as tmp:
        work = Path(tmp)
        base = load_settings(environ={}, overrides={
            "asr": overrides, "text": {"redact_pii": False}, "sampling": {"enabled": False},
            "batch": {"cache_dir": str(work / "cache")}})
        print("settings=" + ",".join(f"{k}={getattr(base.asr, k)}" for k in (
            "beam_size", "batch_size", "chunk_s", "vad_speech_pad_ms", "fill_gaps", "workers", "cpu_threads")))
        seconds, cers = {}, {}
        if "naive" in only:
            texts, seconds["naive"] = run_naive(refs, base.asr.model)
            cers["naive"] = score(refs, texts)
        if "floor" in only:
            texts, seconds["floor"] = run_floor(refs, base)
            cers["floor"] = score(channel_refs, texts)
        if "speechqa" in only:
            texts, channel_texts, seconds["speechqa"], run = run_speechqa(refs, base, work, "speechqa")
            cers["speechqa"] = score(refs, texts)
            cers["speechqa_channels"] = score(channel_refs, channel_texts)
            stages = run.get("timings_s", {})
            print("speechqa_stage_seconds=" + ",".join(f"{k}={v}" for k, v in stages.items()))
        for side in seconds:
            print(f"{side}_seconds={seconds[side]:.1f} {side}_{'channel_' if side == 'floor' else ''}cer="
                  f"{cers[side]:.4f} "
                  f"{side}_x_realtime={audio_s / seconds[side]:.1f} "
                  f"{side}_calls_per_hour={3600 * len(refs) / seconds[side]:.0f}")
        if "naive" in seconds and "speechqa" in seconds:
            print(f"ratio_vs_naive={seconds['naive'] / seconds['speechqa']:.2f} (target 3) "
                  f"cer_speechqa={cers['speechqa']:.4f} cer_naive={cers['naive']:.4f}")
        if "floor" in seconds and "speechqa" in seconds:
            print(f"ratio_to_floor={seconds['speechqa'] / seconds['floor']:.2f} (target <= 1.2) "
                  f"channel_cer_speechqa={cers['speechqa_channels']:.4f} channel_cer_floor={cers['floor']:.4f}")
        if "workers" in only:
            timed = {}
            for n in (1, 2):
                s = with_overrides(base, asr={"workers": n, "cpu_threads": 1},
                                   batch={"cache_dir": str(work / f"cache-w{n}")})
                texts, _, timed[n], _ = run_speechqa(refs, s, work, f"w{n}")
                print(f"workers_{n}_seconds={timed[n]:.1f} workers_{n}_cer={score(refs, texts):.4f}")
            print(f"speedup_1_to_2_workers={timed[1] / timed[2]:.2f}")
        if "rss" in only:
            t_proc, driver_mb, worker_mb, texts = process_run(refs, base, work)
            print(f"process_executor_seconds={t_proc:.1f} process_executor_cer={score(refs, texts):.4f}")
            print(f"peak_rss_per_worker_mb={worker_mb:.0f} (target <= 1536) peak_rss_driver_mb={driver_mb:.0f}")
        if "cached" in only:  # the speechqa side's cache, filled here when it did not run
            run_batch(link_calls(refs, work / "calls-fill"), work / "out-fill", base)
            folder = link_calls(refs, work / "calls-many", -(-CACHED_CALLS // len(refs)))
            for executor in ("local", "process"):  # no parts yet: every call analysed from its transcript
                s = with_overrides(base, asr={"workers": 2, "cpu_threads": 1}, batch={"executor": executor})
                shutil.rmtree(work / "out-many", ignore_errors=True)
                t0 = time.perf_counter()
                summary = run_batch(folder, work / "out-many", s)
                elapsed = time.perf_counter() - t0
                counts = summary.run_info["counts"]
                rate = counts["ok"] / elapsed
                print(f"cached_{executor}_calls={counts['cached']}/{counts['ok']} cached_{executor}_seconds="
                      f"{elapsed:.1f} analytics_{executor}_calls_per_s={rate:.1f} (target 100)")
            # a rules change: the same OUT again with another scorecard, each call re-scored from its part
            rules = work / "rules.toml"
            shipped = (ROOT / "speechqa" / "data" / "scorecard_zh.toml").read_text(encoding="utf-8")
            rules.write_text(shipped.replace('version = "', 'version = "bench-', 1), encoding="utf-8")
            s = with_overrides(s, compliance={"rules": str(rules)})
            t0 = time.perf_counter()
            summary = run_batch(folder, work / "out-many", s)
            elapsed = time.perf_counter() - t0
            print(f"rescored_calls={summary.run_info['counts']['ok']} rescored_seconds={elapsed:.1f} "
                  f"rescore_calls_per_s={summary.run_info['counts']['ok'] / elapsed:.1f}")


if __name__ == "__main__":
    main()
