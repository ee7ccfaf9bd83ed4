"""Hostile inputs in one real night (issue 11): every file is processed correctly or becomes a
named failure a QA operator understands, the batch completes, and the good calls in the same
run are unaffected. The corpus is generated here, never committed."""

from __future__ import annotations

import shutil
import wave

import numpy as np
import pandas as pd
import pytest

from speechqa.pipeline import run_batch
from tests.conftest import FIXTURE_CALLS, settings_for

pytestmark = pytest.mark.e2e

RATE = 16000


def _wav(path, samples: np.ndarray, rate: int = RATE) -> None:
    """16-bit PCM; ``samples`` is (channels, frames) in [-1, 1]."""
    data = np.clip(np.atleast_2d(samples), -1, 1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((data.T * 32767).astype("<i2").tobytes())


def _corpus(folder) -> dict[str, str]:
    """file name -> what must come of it: ``ok`` or the words its failure must use."""
    rng = np.random.default_rng(7)
    t = np.arange(RATE * 8) / RATE
    good = FIXTURE_CALLS / "fx_stereo.wav"
    expect = {}
    shutil.copy(good, folder / "good.wav")
    expect["good.wav"] = "ok"
    (folder / "truncated.wav").write_bytes(good.read_bytes()[:30])
    expect["truncated.wav"] = "corrupt or unsupported"
    (folder / "empty.wav").write_bytes(b"")
    expect["empty.wav"] = "empty file (0 bytes)"
    (folder / "random.wav").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect["random.wav"] = "corrupt or unsupported"
    (folder / "notes.mp3").write_text("这不是录音，是一份会议纪要。\n" * 40, encoding="utf-8")
    expect["notes.mp3"] = "corrupt or unsupported"
    _wav(folder / "zero_seconds.wav", np.zeros((1, 0)))
    expect["zero_seconds.wav"] = "no audio samples"
    _wav(folder / "silence.wav", np.zeros((2, RATE * 8)))
    expect["silence.wav"] = "ok"
    _wav(folder / "noise.wav", rng.normal(0, 0.05, (1, RATE * 8)))
    expect["noise.wav"] = "ok"
    _wav(folder / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * t)[None, :])  # hold music, at its plainest
    expect["tone.wav"] = "ok"
    _wav(folder / "clipped.wav", np.clip(3 * rng.normal(0, 0.5, (2, RATE * 8)), -1, 1))
    expect["clipped.wav"] = "ok"
    _wav(folder / "rate48k.wav", 0.1 * np.sin(2 * np.pi * 300 * np.arange(48000 * 4) / 48000)[None, :], 48000)
    expect["rate48k.wav"] = "ok"
    _wav(folder / "six_channels.wav", 0.01 * rng.normal(0, 1, (6, RATE * 4)))
    expect["six_channels.wav"] = "ok"
    return expect


def test_a_night_of_hostile_files_completes_and_names_every_bad_one(fixture_run, asr_cache, tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    expect = _corpus(folder)
    summary = run_batch(folder, tmp_path / "out", settings_for(asr_cache))
    calls = pd.read_csv(tmp_path / "out" / "calls.csv").set_index("call_id")
    failures = pd.read_csv(tmp_path / "out" / "failures.csv").set_index("call_id")
    assert set(calls.index) == {name.rsplit(".", 1)[0] for name in expect}  # nothing lost
    for name, want in expect.items():
        call_id = name.rsplit(".", 1)[0]
        if want == "ok":
            assert calls.loc[call_id, "status"] == "ok", (name, failures.to_dict("index").get(call_id))
        else:
            assert calls.loc[call_id, "status"] == "failed", name
            reason = failures.loc[call_id, "reason"]
            assert name in reason and want in reason, (name, reason)
    assert summary.exit_code == 1  # failures were found, and said
    # the good call is what it is in the fixture night
    turns = pd.read_parquet(tmp_path / "out" / "turns.parquet")
    theirs = pd.read_parquet(fixture_run.out / "turns.parquet")
    assert list(turns[turns.call_id == "good"].text) == list(theirs[theirs.call_id == "fx_stereo"].text)
    assert calls.loc["six_channels", "channels"] == 6 and calls.loc["rate48k", "channels"] == 1
    # a line with no words (silence, noise, a tone) is not scored and not called low coverage
    rules = pd.read_csv(tmp_path / "out" / "rule_results.csv")
    for quiet in ("silence", "noise", "tone"):
        assert set(rules[rules.call_id == quiet].outcome) == {"na"}, quiet
        assert calls.loc[quiet, "flags"] == "no_words" and pd.isna(calls.loc[quiet, "coverage"])
    assert calls.loc["good", "compliance_score"] > 0
