"""The whole pipeline on real audio with scripted words (tests/fakes.py): the batch, its tables,
the cache and bad input, in seconds and without the model."""

from __future__ import annotations

import pandas as pd
import pytest

from speechqa.pipeline import run_batch
from tests.conftest import FIXTURE_CALLS, settings_for
from tests.fakes import ScriptedTranscriber
from tests.test_hostile import _corpus


def test_a_night_with_scripted_words_scores_the_script(tmp_path):
    summary = run_batch(FIXTURE_CALLS, tmp_path / "out", settings_for(tmp_path / "cache"),
                        transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    assert not summary.failures and summary.run_info["model"]["name"] == "transcriber:ScriptedTranscriber"
    calls = pd.read_csv(tmp_path / "out" / "calls.csv").set_index("call_id")
    assert set(calls.index) == {"fx_stereo", "fx_mono", "fx_bargein"} and set(calls.status) == {"ok"}
    rules = pd.read_csv(tmp_path / "out" / "rule_results.csv")
    stereo = rules[rules.call_id == "fx_stereo"].set_index("item_id").outcome.to_dict()
    import json

    truth = json.loads((FIXTURE_CALLS / "fx_stereo.truth.json").read_text(encoding="utf-8"))["script_items"]
    want = {k: ("pass" if v else "na" if v is None else "fail") for k, v in truth.items()}
    assert {k: stereo[k] for k in want} == want
    assert calls.loc["fx_stereo", "coverage_agent"] > 0.9  # scripted words lie where the speech is
    again = run_batch(FIXTURE_CALLS, tmp_path / "again", settings_for(tmp_path / "cache"),
                      transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    assert again.run_info["counts"]["cached"] == 3
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again" / "turns.parquet"),
                                  pd.read_parquet(tmp_path / "out" / "turns.parquet"))


def test_hostile_files_fail_alone_in_seconds(tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    expect = _corpus(folder)
    run_batch(folder, tmp_path / "out", settings_for(tmp_path / "cache"),
              transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    calls = pd.read_csv(tmp_path / "out" / "calls.csv").set_index("call_id")
    failed = {name.rsplit(".", 1)[0] for name, want in expect.items() if want != "ok"}
    assert set(calls[calls.status == "failed"].index) == failed
    assert calls.loc["good", "status"] == "ok" and calls.loc["good", "n_turns"] > 3


def test_a_full_disk_while_writing_the_tables_leaves_the_last_nights_set_whole(tmp_path, monkeypatch):
    import errno
    import shutil

    import pytest

    from speechqa.errors import OutputError

    out = tmp_path / "out"
    run_batch(FIXTURE_CALLS, out, settings_for(tmp_path / "cache"),
              transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    tonight = tmp_path / "tonight"
    tonight.mkdir()
    for name in ("fx_stereo.wav", "fx_stereo.truth.json"):
        shutil.copy(FIXTURE_CALLS / name, tonight / name)
    import pyarrow.parquet as pq

    real = pq.ParquetWriter.write_table

    def full(self, *args, **kwargs):  # the disk fills while the night's rule results are written
        if ".rule_results.parquet." in str(self.where):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    full_disk = r"rule_results.parquet: cannot be written \(No space left on device\)"
    with pytest.raises(OutputError, match=full_disk):
        run_batch(tonight, out, settings_for(tmp_path / "cache"), transcriber=ScriptedTranscriber(tonight))
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # turns.csv and calls.csv were written tonight too, and held back
    assert not list(out.glob(".*.tmp"))


def _night(out, cache, db):
    from speechqa.config import load_settings

    return load_settings(environ={}, overrides={"asr": {"model": "unused"}, "batch": {"cache_dir": str(cache)},
                                                "store": {"db": str(db)}})


@pytest.mark.parametrize("stage", ["decode", "asr", "analysis", "part", "tables", "store"])
def test_kill_9_at_any_stage_then_a_rerun_gives_the_uninterrupted_tables(tmp_path, stage):
    import os
    import subprocess
    import sys

    from speechqa.files import KILL_AT
    from tests.conftest import ROOT

    reference = tmp_path / "reference"
    run_batch(FIXTURE_CALLS, reference, _night(reference, tmp_path / "ref-cache", tmp_path / "ref.db"),
              transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    out, cache, db = tmp_path / "out", tmp_path / "cache", tmp_path / "qa.db"
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from pathlib import Path\n"
              "from speechqa.pipeline import run_batch\n"
              "from tests.fakes import ScriptedTranscriber\n"
              "from tests.test_pipeline_fast import _night\n"
              f"run_batch(Path({str(FIXTURE_CALLS)!r}), Path({str(out)!r}), "
              f"_night(None, Path({str(cache)!r}), Path({str(db)!r})), "
              f"transcriber=ScriptedTranscriber(Path({str(FIXTURE_CALLS)!r})))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHQA_")} | {KILL_AT: stage}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]  # it really died at that stage
    assert not (out / "run.json").exists()
    run_batch(FIXTURE_CALLS, out, _night(out, cache, db), transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    tables = sorted(p.name for p in reference.iterdir() if p.suffix == ".csv")
    assert tables == sorted(p.name for p in out.iterdir() if p.suffix == ".csv")
    for name in tables:
        if name == "calls.csv":  # byte for byte, but for whether this run found the call's transcript cached
            ours, theirs = (pd.read_csv(folder / name, dtype=str).drop(columns="cached")
                            for folder in (out, reference))
            pd.testing.assert_frame_equal(ours, theirs)
            continue
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".parts/*/.*.tmp"))  # swept
    from speechqa import store as history

    def stored(path):  # the history store's calls and samples, less when each row was written
        db = history.open_store(str(path))
        return [frame(db).drop(columns=["updated_at", "created_at"], errors="ignore")
                for frame in (history.calls_frame, history.samples_frame)]

    for ours, theirs in zip(stored(db), stored(tmp_path / "ref.db"), strict=True):
        pd.testing.assert_frame_equal(ours, theirs)  # each call once, as in the uninterrupted run


def test_a_second_run_on_the_same_night_in_the_store_is_refused(tmp_path):
    import socket

    from speechqa import store as history
    from speechqa.errors import LockedError

    db = history.open_store(str(tmp_path / "qa.db"))
    held = history.lock_night(db, "2026-11-30", str(tmp_path / "first"))  # a live run: this process
    settings = _night(None, tmp_path / "cache", tmp_path / "qa.db")
    import dataclasses

    night = dataclasses.replace(settings.sampling, night="2026-11-30")
    settings = dataclasses.replace(settings, sampling=night)
    with pytest.raises(LockedError, match=rf"night 2026-11-30 .*pid \d+ on {socket.gethostname()}"):
        run_batch(FIXTURE_CALLS, tmp_path / "second", settings, transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    assert not (tmp_path / "second" / "calls.csv").exists()
    history.unlock_night(db, held)
    run_batch(FIXTURE_CALLS, tmp_path / "second", settings, transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    assert (tmp_path / "second" / "calls.csv").exists()
