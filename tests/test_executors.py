"""Executors ([batch] executor): the night's tables are the same whichever runs it."""

from __future__ import annotations

import pytest

from speechqa.config import load_settings
from speechqa.errors import ConfigError
from speechqa.pipeline import run_batch
from tests.conftest import FIXTURE_CALLS, MODEL_DIR
from tests.fakes import ScriptedTranscriber

TABLES = ("calls", "turns", "words", "events", "rule_results", "training_clips", "agents", "teams", "failures")


def _settings(tmp_path, executor, **asr):
    return load_settings(environ={}, overrides={
        "asr": {"workers": 2, **asr}, "batch": {"cache_dir": str(tmp_path / "cache"), "executor": executor},
        "store": {"db": str(tmp_path / "qa.db")}, "sampling": {"night": "2026-11-30"}})


def _same_tables(a, b, resumed=False):
    import pandas as pd

    for name in TABLES:
        ours, theirs = (pd.read_csv(out / f"{name}.csv", dtype=str) for out in (a, b))
        if name == "calls":  # asr_seconds: wall time of each run's own transcription
            volatile = ["asr_seconds", "cached"] if resumed else ["asr_seconds"]  # cached: by this run
            ours, theirs = (t.drop(columns=volatile) for t in (ours, theirs))
        pd.testing.assert_frame_equal(ours, theirs, obj=name)


def test_process_workers_give_the_tables_of_worker_threads(tmp_path):
    local = run_batch(FIXTURE_CALLS, tmp_path / "local", _settings(tmp_path / "l", "local", model="unused"),
                      transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    settings = _settings(tmp_path / "p", "process", model="unused")
    process = run_batch(FIXTURE_CALLS, tmp_path / "process", settings,
                        transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    assert local.run_info["workers"] == process.run_info["workers"] == 2
    assert not process.failures and len(process.results) == 3
    _same_tables(tmp_path / "local", tmp_path / "process")


@pytest.mark.e2e
def test_process_workers_with_whisper_give_the_tables_of_worker_threads(tmp_path, model_dir):
    run_batch(FIXTURE_CALLS, tmp_path / "local", _settings(tmp_path / "l", "local", model=str(MODEL_DIR)))
    run_batch(FIXTURE_CALLS, tmp_path / "process", _settings(tmp_path / "p", "process", model=str(MODEL_DIR)))
    _same_tables(tmp_path / "local", tmp_path / "process")


def test_an_unknown_executor_stops_the_run(tmp_path):
    with pytest.raises(ConfigError, match=r"\[batch\] executor must be local or process or ray"):
        _settings(tmp_path, "spark")


def test_ray_tasks_give_the_tables_of_worker_threads_with_failures_and_resume(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import shutil

    from tests.conftest import ROOT

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the local Ray's workers import tests.fakes
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    night = tmp_path / "night"
    shutil.copytree(FIXTURE_CALLS, night)
    (night / "broken.wav").write_bytes(b"RIFF\x00\x00")  # a truncated header: a failure row
    local = run_batch(night, tmp_path / "local", _settings(tmp_path / "l", "local", model="unused"),
                      transcriber=ScriptedTranscriber(night))
    settings = _settings(tmp_path / "r", "ray", model="unused")
    on_ray = run_batch(night, tmp_path / "ray", settings, transcriber=ScriptedTranscriber(night))
    assert [f.call_id for f in on_ray.failures] == [f.call_id for f in local.failures] == ["broken"]
    assert len(on_ray.results) == len(local.results) == 3
    _same_tables(tmp_path / "local", tmp_path / "ray")
    again = run_batch(night, tmp_path / "ray", settings, transcriber=ScriptedTranscriber(night))
    assert again.run_info["counts"]["cached"] == 3 and "text" not in again.run_info["timings_s"]
    _same_tables(tmp_path / "local", tmp_path / "ray", resumed=True)
