"""PII leaks under ASR variants: does masking hold when the transcript changes?

    .venv/bin/python bench/bench_pii.py [--variants default,beam1,...] [--sets dev,eval,...,eval6]

Runs ``speechqa run`` as a subprocess (each with its own transcript cache under
``out/.bench-pii/<variant>/`` and a throwaway history store; QA sampling off) on the
committed ``recordings/`` (``dev``) and the evaluation sets ``bench/eval/calls`` (``eval``),
``bench/eval2/calls`` (``eval2``) to ``bench/eval6/calls`` (``eval6``), then
checks every CSV table the run wrote for the true numbers of the calls' ``truth.json`` with
``bench/leaks.py`` (a leak = six or more consecutive digits of a true number in one cell,
Chinese digit characters read as digits, whitespace and punctuation ignored).

Variants (the ASR output changes, so the masker sees different text):

* ``default``     the shipped settings (beam 5, the CPU's native instruction set)
* ``beam1``       ``SPEECHQA_ASR_BEAM_SIZE=1`` (greedy decoding)
* ``mulaw8k``     each file decoded and re-encoded as 8 kHz G.711 µ-law (a copy of the folder
                  with the same calls.csv and truth files). The committed calls already are
                  8 kHz µ-law, and the round trip is lossless: byte-identical files, so this
                  checks only that a re-run agrees; it matters for other inputs
* ``mulaw8k_quiet`` the same, 9 dB quieter (a low line level: different µ-law quantisation)
* ``isa_avx2``    ``CT2_FORCE_CPU_ISA=AVX2`` (CTranslate2 reads it when it loads, so each ISA
                  variant is its own process)
* ``isa_generic`` ``CT2_FORCE_CPU_ISA=GENERIC``

Prints per variant and set ``pii_leaks_variant_<v>_<set>=N`` and in total
``pii_leaks_variant_<v>=N``, the masked spans (``redaction`` events), how many true numbers
had their turn masked (agent read-backs separately), cells with other unmasked 6+ digit
runs, leaks visible only when a turn's words are joined, and ASR seconds. Each
``speechqa run`` takes roughly 10-20 s per call on 2 cores: the full bench (all variants,
both sets, 22 calls each) takes 20-40 minutes; re-runs use the caches.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import leaks  # noqa: E402

SETS = {"dev": ROOT / "recordings", "eval": ROOT / "bench" / "eval" / "calls",
        "eval2": ROOT / "bench" / "eval2" / "calls", "eval3": ROOT / "bench" / "eval3" / "calls",
        "eval4": ROOT / "bench" / "eval4" / "calls", "eval5": ROOT / "bench" / "eval5" / "calls",
        "eval6": ROOT / "bench" / "eval6" / "calls"}
VARIANTS: dict[str, dict] = {
    "default": {"env": {}},
    "beam1": {"env": {"SPEECHQA_ASR_BEAM_SIZE": "1"}},
    "mulaw8k": {"env": {}, "reencode_db": 0.0},
    "mulaw8k_quiet": {"env": {}, "reencode_db": -9.0},
    "isa_avx2": {"env": {"CT2_FORCE_CPU_ISA": "AVX2"}},
    "isa_generic": {"env": {"CT2_FORCE_CPU_ISA": "GENERIC"}},
}
BENCH_DIR = ROOT / "out" / ".bench-pii"
SPEECHQA = ROOT / ".venv" / "bin" / "speechqa"
AUDIO_EXT = {".wav", ".mp3", ".m4a", ".ogg", ".opus", ".flac", ".amr"}


def native_isa() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return "unknown"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "generic"


def reencode_folder(src: Path, dest: Path, gain_db: float) -> Path:
    """A copy of src with every recording re-encoded as 8 kHz µ-law (same names, manifest, truth)."""
    from speechqa.synth.render import read_wav, write_mulaw_wav  # dev-only module; numpy + PyAV

    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.iterdir()):
        if path.suffix.lower() in AUDIO_EXT:
            target = dest / path.name
            if target.exists():
                continue
            audio, rate, _ = read_wav(path)
            if rate != 8000:
                n = round(audio.shape[1] * 8000 / rate)
                x = np.arange(n) * rate / 8000
                audio = np.stack([np.interp(x, np.arange(ch.size), ch) for ch in audio])
            write_mulaw_wav(target, audio * 10 ** (gain_db / 20))
        elif path.name.endswith(".truth.json") or path.name == "calls.csv":
            shutil.copy2(path, dest / path.name)
    return dest


def run_speechqa(src: Path, out: Path, cache: Path, env_extra: dict[str, str],
                 store: Path) -> tuple[int, float, str]:
    env = dict(os.environ)
    env.update(env_extra)
    env["SPEECHQA_SAMPLING_ENABLED"] = "false"  # a benchmark is not a night
    env["SPEECHQA_STORE_DB"] = str(store)
    cmd = [str(SPEECHQA), "run", str(src), "--out", str(out), "--cache-dir", str(cache),
           "--model", str(ROOT / "models" / "whisper-base"), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - t0, (proc.stderr or "")[-2000:]


def _read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def masked_numbers(out: Path, numbers: list[leaks.TrueNumber]) -> tuple[int, int, int, int]:
    """(customer numbers masked, customer total, agent read-backs masked, agent total).

    A number counts as masked when a turn overlapping its truth turn (±0.5 s) on the same
    role (any role on mono calls) has a redaction.
    """
    turns = _read(out / "turns.csv")
    got = {"customer": [0, 0], "agent": [0, 0]}
    for n in numbers:
        hit = False
        for t in turns:
            if t["call_id"] != n.call_id or t["role"] not in (n.role, "unknown"):
                continue
            if float(t["start"]) < n.end + 0.5 and float(t["end"]) > n.start - 0.5 and t.get("redactions"):
                hit = True
                break
        c = got.setdefault(n.role, [0, 0])
        c[0] += hit
        c[1] += 1
    return got["customer"][0], got["customer"][1], got["agent"][0], got["agent"][1]


def bench_one(variant: str, set_name: str, store: Path) -> dict:
    spec = VARIANTS[variant]
    src = SETS[set_name]
    base = BENCH_DIR / variant
    if "reencode_db" in spec:
        src = reencode_folder(src, base / "input" / set_name, spec["reencode_db"])
    out = base / "runs" / set_name
    rc, wall, err = run_speechqa(src, out, base / "cache", spec["env"], store)
    numbers = leaks.true_numbers([src])
    rep = leaks.check_run(out, numbers)
    events = _read(out / "events.csv")
    calls = _read(out / "calls.csv")
    run_json = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    cm, ct, am, at = masked_numbers(out, numbers)
    return {
        "rc": rc, "wall": wall, "err": err if rc else "", "report": rep,
        "masked_spans": sum(1 for e in events if e.get("type") == "redaction"),
        "customer_masked": (cm, ct), "agent_masked": (am, at),
        "words_joined": leaks.words_joined_leaks(out, numbers),
        "asr_s": sum(float(c.get("asr_seconds") or 0) for c in calls),
        "failed": sum(1 for c in calls if c.get("status") != "ok"),
        "failures": [f"{f['call_id']} {f['stage']}: {f['reason'][-160:]}" for f in _read(out / "failures.csv")],
        "transcribed": run_json.get("counts", {}).get("transcribed"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of: {', '.join(VARIANTS)} (default all)")
    parser.add_argument("--sets", default=",".join(SETS),
                        help="comma-separated: dev (recordings/), eval, eval2 ... eval6 "
                             "(bench/<set>/calls); default all")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    bad = (set(variants) - set(VARIANTS)) | (set(sets) - set(SETS))
    if bad:
        parser.error(f"unknown variants/sets: {sorted(bad)}")
    if not SPEECHQA.exists():
        parser.error(f"{SPEECHQA} not found: run make install")

    print(f"pii_cpu_isa_native={native_isa()}")
    status = 0
    with tempfile.TemporaryDirectory(prefix="speechqa-bench-pii-") as tmp:
        store = Path(tmp) / "history.db"
        for v in variants:
            total_leaks = total_spans = 0
            for s in sets:
                r = bench_one(v, s, store)
                rep = r["report"]
                key = f"pii_variant_{v}_{s}"
                total_leaks += len(rep.leaks)
                total_spans += r["masked_spans"]
                print(f"pii_leaks_variant_{v}_{s}={len(rep.leaks)}")
                print(f"{key}_numbers_leaked={len(rep.leaked_numbers)}/{len(rep.numbers)}")
                print(f"{key}_masked_spans={r['masked_spans']}")
                print(f"{key}_customer_numbers_masked={r['customer_masked'][0]}/{r['customer_masked'][1]}")
                print(f"{key}_agent_readbacks_masked={r['agent_masked'][0]}/{r['agent_masked'][1]}")
                print(f"{key}_other_digit_run_cells={rep.other_digit_runs}")
                print(f"{key}_words_joined_leak_turns={r['words_joined']}")
                print(f"{key}_failed_calls={r['failed']} {key}_rc={r['rc']} "
                      f"{key}_transcribed={r['transcribed']} {key}_asr_seconds={r['asr_s']:.1f} "
                      f"{key}_wall_seconds={r['wall']:.1f}")
                for line in leaks.leak_details(rep):
                    print(line)
                for line in r["failures"][:3]:
                    print(f"#   failed {line}")
                if r["rc"] not in (0, 1):
                    status = 1
                    print(f"# speechqa run failed (rc {r['rc']}): {r['err']}")
                sys.stdout.flush()
            print(f"pii_leaks_variant_{v}={total_leaks}")
            print(f"pii_masked_spans_variant_{v}={total_spans}")
            sys.stdout.flush()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
