"""Per-call parts (speechqa/parts.py): a rerun takes finished calls from their parts with no
decode and no analysis, a changed setting reruns only the stages it affects, and the night's
tables are assembled from the parts. Real audio, scripted words (tests/fakes.py)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from speechqa import audio, parts, pipeline, text
from speechqa.config import load_settings
from speechqa.pipeline import run_batch, run_transcripts
from tests.conftest import FIXTURE_CALLS, ROOT
from tests.fakes import ScriptedTranscriber

TABLES = ("turns", "words", "events", "rule_results", "training_clips", "agents", "teams", "failures")


def _settings(tmp_path, **sections):
    overrides = {"asr": {"model": "unused"}, "batch": {"cache_dir": str(tmp_path / "cache")},
                 "store": {"db": str(tmp_path / "qa.db")}, "sampling": {"night": "2026-11-30"}} | sections
    return load_settings(environ={}, overrides=overrides)


def _run(out, settings):
    return run_batch(FIXTURE_CALLS, out, settings, transcriber=ScriptedTranscriber(FIXTURE_CALLS))


def _tables(out) -> dict[str, bytes]:
    return {name: (out / f"{name}.csv").read_bytes() for name in TABLES}


def _refuse(*_args, **_kwargs):
    raise AssertionError("this stage ran again")


def test_a_rerun_takes_every_call_from_its_part_without_decoding_or_analysing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = _run(out, _settings(tmp_path))
    assert isinstance(first.results, parts.Results) and len(first.results) == 3
    before = _tables(out)
    calls_before = pd.read_csv(out / "calls.csv").drop(columns="cached")
    monkeypatch.setattr(audio, "decode", _refuse)
    monkeypatch.setattr(text, "process_turns", _refuse)
    again = _run(out, _settings(tmp_path))
    assert _tables(out) == before
    pd.testing.assert_frame_equal(pd.read_csv(out / "calls.csv").drop(columns="cached"), calls_before)
    assert again.run_info["counts"]["cached"] == 3
    assert pd.read_csv(out / "calls.csv").cached.all()  # none was transcribed by this run
    assert "text" not in again.run_info["timings_s"]  # no call was analysed
    assert [r.recording.call_id for r in again.results] == [r.recording.call_id for r in first.results]


def test_a_new_scorecard_reruns_only_compliance(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _run(out, _settings(tmp_path))
    rules = tmp_path / "rules.toml"
    shipped = (ROOT / "speechqa" / "data" / "scorecard_zh.toml").read_text(encoding="utf-8")
    rules.write_text(shipped.replace('version = "', 'version = "site-', 1), encoding="utf-8")
    fresh = _run(tmp_path / "fresh", _settings(tmp_path / "f", compliance={"rules": str(rules)}))
    monkeypatch.setattr(audio, "decode", _refuse)
    monkeypatch.setattr(text, "process_turns", _refuse)
    rescored = _run(out, _settings(tmp_path, compliance={"rules": str(rules)}))
    assert "compliance" in rescored.run_info["timings_s"]
    ours, theirs = (pd.read_csv(o / "rule_results.csv") for o in (out, tmp_path / "fresh"))
    assert set(ours.scorecard_sha256) == {fresh.run_info["scorecard"]["sha256"]}
    pd.testing.assert_frame_equal(ours, theirs)


def test_a_changed_analysis_setting_analyses_again_from_the_transcript_cache(tmp_path):
    out = tmp_path / "out"
    _run(out, _settings(tmp_path))
    strict = _settings(tmp_path, metrics={"silence_min_s": 1.0})
    again = _run(out, strict)
    assert "metrics" in again.run_info["timings_s"] and "asr" not in again.run_info["timings_s"]
    fresh = _run(tmp_path / "fresh", _settings(tmp_path / "f", metrics={"silence_min_s": 1.0}))
    assert (out / "events.csv").read_bytes() == (fresh.out / "events.csv").read_bytes()


def test_a_changed_recording_or_a_damaged_part_is_done_again(tmp_path):
    night = tmp_path / "night"
    shutil.copytree(FIXTURE_CALLS, night)
    out = tmp_path / "out"
    run_batch(night, out, _settings(tmp_path), transcriber=ScriptedTranscriber(night))
    store = parts.PartStore(out / parts.PARTS_DIR)
    store.path("fx_mono").write_bytes(b"not a pickle")
    shutil.copy(night / "fx_bargein.wav", night / "fx_stereo.wav")  # new audio under an old name
    analysed = {}

    def seen(rec, outcome):
        analysed[rec.call_id] = "text" in dict(outcome.timings)

    again = run_batch(night, out, _settings(tmp_path), transcriber=ScriptedTranscriber(night), on_progress=seen)
    assert analysed == {"fx_stereo": True, "fx_mono": True, "fx_bargein": False}
    calls = pd.read_csv(out / "calls.csv").set_index("call_id")
    assert calls.loc["fx_stereo", "audio_sha256"] == audio.content_sha256(night / "fx_bargein.wav")
    assert set(calls.status) == {"ok"} and not again.failures
    assert store.load("fx_mono") is not None  # written again, readable


def test_parts_are_private_and_a_reused_out_keeps_only_this_nights(tmp_path):
    out = tmp_path / "out"
    _run(out, _settings(tmp_path))
    folder = out / parts.PARTS_DIR
    assert folder.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in folder.glob("*/*.pkl")} == {0o600}
    one = tmp_path / "one"
    one.mkdir()
    for name in ("fx_mono.wav", "fx_mono.truth.json"):
        shutil.copy(FIXTURE_CALLS / name, one / name)
    run_batch(one, out, _settings(tmp_path), transcriber=ScriptedTranscriber(one))
    assert len(list(folder.glob("*/*.pkl"))) == 1


def test_an_imported_night_resumes_from_its_parts(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_import import write_calls

    file = tmp_path / "chats.csv"
    write_calls(file, 40, 12, 3)
    out = tmp_path / "out"
    first = run_transcripts(file, out, _settings(tmp_path))
    before = _tables(out)
    monkeypatch.setattr(text, "process_turns", _refuse)
    again = run_transcripts(file, out, _settings(tmp_path))
    assert _tables(out) == before and again.run_info["counts"]["ok"] == first.run_info["counts"]["ok"] == 40


def test_the_store_holds_each_call_once_after_reruns(tmp_path):
    from speechqa import store as history

    out = tmp_path / "out"
    for _ in range(2):
        _run(out, _settings(tmp_path))
    db = history.open_store(str(tmp_path / "qa.db"))
    calls = history.calls_frame(db)
    assert sorted(calls.call_id) == ["fx_bargein", "fx_mono", "fx_stereo"]
    assert json.loads((out / "run.json").read_text())["sampling"]["night"] == "2026-11-30"


@pytest.mark.parametrize("size", [1, 2, 64])
def test_the_tables_do_not_depend_on_how_many_calls_are_assembled_at_once(tmp_path, monkeypatch, size):
    reference = _run(tmp_path / "reference", _settings(tmp_path / "r"))
    monkeypatch.setattr(pipeline, "CHUNK_CALLS", size)
    monkeypatch.setattr(pipeline._Frames, "JOIN", 2)  # the calls table's chunks joined as they come
    out = _run(tmp_path / "out", _settings(tmp_path)).out
    for name in TABLES:
        assert (out / f"{name}.csv").read_bytes() == (reference.out / f"{name}.csv").read_bytes(), name
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"),
                                      pd.read_parquet(reference.out / f"{name}.parquet"))


def test_a_changed_file_that_a_setting_names_analyses_again(tmp_path):
    terms = tmp_path / "terms.txt"
    terms.write_text("宽带故障\n", encoding="utf-8")
    settings = _settings(tmp_path, lexicon={"terms_file": str(terms)})
    out = tmp_path / "out"
    _run(out, settings)
    assert "text" not in _run(out, settings).run_info["timings_s"]  # nothing changed: from the parts
    terms.write_text("宽带故障\n话费账单\n", encoding="utf-8")  # same setting, new content
    assert "text" in _run(out, settings).run_info["timings_s"]


def test_a_call_analysed_again_from_the_cache_reads_its_levels_there_not_the_audio(tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = _run(out, _settings(tmp_path))
    shutil.rmtree(out / parts.PARTS_DIR)  # no parts: every call is analysed again
    monkeypatch.setattr(audio, "pieces", _refuse)  # ... with no audio decoded for its levels
    again = _run(out, _settings(tmp_path))
    assert again.run_info["counts"]["cached"] == first.run_info["counts"]["ok"] == len(again.results)
    monkeypatch.undo()
    fresh = _run(tmp_path / "fresh", _settings(tmp_path / "f"))
    for name in TABLES:  # the same metrics and events as from the audio
        assert (out / f"{name}.csv").read_bytes() == (fresh.out / f"{name}.csv").read_bytes(), name


def test_without_cached_levels_they_are_measured_from_the_audio_again(tmp_path):
    out = tmp_path / "out"
    _run(out, _settings(tmp_path))
    shutil.rmtree(out / parts.PARTS_DIR)
    shutil.rmtree(tmp_path / "cache" / "levels")  # a cache from before the levels were kept
    _run(out, _settings(tmp_path))
    fresh = _run(tmp_path / "fresh", _settings(tmp_path / "f"))
    assert (out / "events.csv").read_bytes() == (fresh.out / "events.csv").read_bytes()
    assert any((tmp_path / "cache" / "levels").rglob("*.npz"))  # kept again for the next run
