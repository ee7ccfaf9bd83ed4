"""Mono calls with the real models on real audio, and a real SQLite history store: stereo files
whose channels are mixed, an agent's voice enrolled on one night and used on the next, and a
run without the speaker models."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import pandas as pd
import pytest
import sqlalchemy as sa

from speechqa.errors import ModelError
from speechqa.pipeline import make_context, run_batch
from tests.conftest import FIXTURE_CALLS, settings_for

pytestmark = pytest.mark.e2e


def _only(tmp_path, call_id, name="calls"):
    """A folder holding one fixture call and its manifest row."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(FIXTURE_CALLS / f"{call_id}.wav", folder)
    with (FIXTURE_CALLS / "calls.csv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["call_id"] == call_id]
    with (folder / "calls.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _role_accuracy(turns: pd.DataFrame, call_id: str) -> float:
    truth = json.loads((FIXTURE_CALLS / f"{call_id}.truth.json").read_text(encoding="utf-8"))
    right = total = 0.0
    for t in turns[turns.call_id == call_id].itertuples():
        best = max(truth["turns"], key=lambda g: min(g["end"], t.end) - max(g["start"], t.start))
        total += t.end - t.start
        right += (t.end - t.start) * (best["role"] == t.role)
    return right / total


def test_stereo_known_to_be_mixed_is_heard_as_one_channel_and_diarised(model_dir, asr_cache, tmp_path):
    settings = settings_for(asr_cache)
    settings = dataclasses.replace(settings, speakers=dataclasses.replace(settings.speakers, mixed_stereo=True))
    summary = run_batch(_only(tmp_path, "fx_stereo"), tmp_path / "out", settings)
    assert not summary.failures
    calls = pd.read_parquet(tmp_path / "out" / "calls.parquet")
    turns = pd.read_parquet(tmp_path / "out" / "turns.parquet")
    row = calls.iloc[0]
    assert (row.channels, row.role_source) == (1, "diarised")
    assert set(turns.channel) == {0} and set(turns.role) == {"agent", "customer"}
    assert _role_accuracy(turns, "fx_stereo") >= 0.9


def test_an_agents_voice_enrolled_one_night_is_evidence_the_next(model_dir, asr_cache, tmp_path):
    settings = settings_for(asr_cache)
    # fx_mono's curt agent leaves its roles at about 0.92: enrol from calls that sure
    settings = dataclasses.replace(settings, speakers=dataclasses.replace(settings.speakers,
                                                                          enrol_min_confidence=0.9))
    db = tmp_path / "qa.db"
    folder = _only(tmp_path, "fx_mono")

    def night(date: str, out: str) -> pd.Series:
        s = dataclasses.replace(settings, store=dataclasses.replace(settings.store, db=str(db)),
                                sampling=dataclasses.replace(settings.sampling, night=date))
        assert not run_batch(folder, tmp_path / out, s).failures
        return pd.read_parquet(tmp_path / out / "calls.parquet").iloc[0]

    first = night("2026-11-22", "out1")
    assert first.role_source == "diarised" and first.role_confidence >= 0.9
    assert "voice" not in first.role_evidence and pd.isna(first.agent_voice_match)
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        rows = conn.execute(sa.text("select call_id, agent_id, night from voice_enrolments")).all()
    assert rows == [("fx_mono", "A2011", "2026-11-22")]

    again = night("2026-11-22", "out1b")  # the same night again: no voiceprint from itself
    assert "voice" not in again.role_evidence

    second = night("2026-11-23", "out2")
    evidence = {k: float(v) for k, v in (p.split(":") for p in second.role_evidence.split(";"))}
    turns = pd.read_parquet(tmp_path / "out2" / "turns.parquet")
    agent_voice = int(turns[turns.role == "agent"].speaker.iloc[0])
    # the enrolled voice speaks for the voice the call found to be the agent's
    assert abs(evidence["voice"]) >= 2 and (evidence["voice"] > 0) == (agent_voice == 0)
    assert second.agent_voice_match > 0.99  # the same recording: the same voice
    assert second.role_confidence >= first.role_confidence


def test_a_run_without_the_speaker_models_stops_before_any_call_and_says_how_to_install(tmp_path):
    settings = settings_for()
    missing = dataclasses.replace(settings, speakers=dataclasses.replace(settings.speakers,
                                                                          model=str(tmp_path / "none")))
    with pytest.raises(ModelError, match="speechqa models install"):
        make_context(missing, tmp_path / "out")
    off = dataclasses.replace(missing, speakers=dataclasses.replace(missing.speakers, diarise_mono=False))
    assert make_context(off, tmp_path / "out").speakers is None
