"""The run's page at night sizes: its size, the time to write it and the time to open it in
Chromium (issue 13: large runs stay fast).

    .venv/bin/python bench/bench_report.py [--calls 10000] [--flagged 400]

The baseline is the page of the committed recordings/ (10 calls, the real batch, transcripts
cached in out/.bench-report-cache). The large night tiles that run's tables to ``--calls``
calls, each copy its own call ids, agents (97) and teams (7), with ``--flagged`` QA candidates
(20 reviewers' capacity): the page reads only the tables, so this is the page such a night
gets. Opening is timed from navigation to every chart drawn, in headless Chromium.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from speechqa.config import load_settings  # noqa: E402
from speechqa.pipeline import run_batch  # noqa: E402
from speechqa.report import load_run, write_report  # noqa: E402

TABLES = ("calls", "rule_results", "turns", "events", "training_clips", "qa_candidates", "failures")


def tile(src: Path, dest: Path, n_calls: int, n_flagged: int) -> None:
    """``src``'s tables copied until they hold ``n_calls`` calls (``n_flagged`` candidates)."""
    dest.mkdir(parents=True)
    calls = pd.read_parquet(src / "calls.parquet")
    copies = -(-n_calls // len(calls))
    for name in TABLES:
        df = pd.read_parquet(src / f"{name}.parquet")
        if "call_id" not in df or not len(df):
            df.to_parquet(dest / f"{name}.parquet", index=False)
            continue
        parts = []
        for k in range(copies):
            part = df.copy()
            old = part.call_id
            part["call_id"] = old + f"-{k:04d}"
            for column in ("turn_id", "evidence_turn_id", "clip_id"):
                if column in part:
                    part[column] = part[column].astype(str).str.replace(r"^([^-]+)", rf"\1-{k:04d}", regex=True)
            if "agent_id" in part:
                agent = (k * len(calls) + old.factorize()[0]) % 97
                part["agent_id"] = [f"a{a:03d}" for a in agent]
                part["agent_name"] = [f"坐席{a}" for a in agent]
                part["team"] = [f"客服{a % 7 + 1}组" for a in agent]
            parts.append(part)
        whole = pd.concat(parts, ignore_index=True)
        keep = set(whole.drop_duplicates("call_id").call_id.head(n_calls))
        whole = whole[whole.call_id.isin(keep)]
        if name == "qa_candidates":
            whole = whole.head(n_flagged)
        whole.to_parquet(dest / f"{name}.parquet", index=False)
    shutil.copy(src / "run.json", dest / "run.json")


def open_seconds(page_path: Path) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        page.goto(page_path.as_uri())
        page.wait_for_function("document.querySelectorAll('[data-chart].js-plotly-plot').length >= 4"
                               " && document.querySelectorAll('details.call').length > 0")
        seconds = time.perf_counter() - t0
        browser.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--flagged", type=int, default=400)
    args = parser.parse_args()
    cache = ROOT / "out" / ".bench-report-cache"
    base = load_settings(environ={}, overrides={"asr": {"model": str(ROOT / "models" / "whisper-base")},
                                                "batch": {"cache_dir": str(cache)}})
    with tempfile.TemporaryDirectory(prefix="speechqa-bench-report-") as tmp:
        work = Path(tmp)
        settings = dataclasses.replace(base, store=dataclasses.replace(base.store, db=str(work / "qa.db")))
        small = work / "small"
        run_batch(ROOT / "recordings", small, settings)
        sizes = {}
        for name, out in (("baseline", small), ("night", work / "night")):
            if name == "night":
                tile(small, out, args.calls, args.flagged)
            t0 = time.perf_counter()
            page = write_report(load_run(out), settings)
            write_s = time.perf_counter() - t0
            sizes[name] = (len(pd.read_parquet(out / "calls.parquet")), page.stat().st_size, write_s,
                           open_seconds(page))
        for name, (calls, size, write_s, open_s) in sizes.items():
            print(f"report_{name}_calls={calls} report_{name}_mb={size / 1e6:.2f} "
                  f"report_{name}_write_s={write_s:.2f} report_{name}_open_s={open_s:.2f}")
        b, n = sizes["baseline"], sizes["night"]
        print(f"report_size_ratio={n[1] / b[1]:.2f} report_write_ratio={n[2] / b[2]:.2f} "
              f"report_open_ratio={n[3] / b[3]:.2f} (calls ratio {n[0] / b[0]:.0f})")


if __name__ == "__main__":
    main()
