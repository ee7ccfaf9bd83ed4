"""The prompt follows the language, on the real model and real audio (issue 10).

An English recording (the JFK inaugural excerpt, public domain, from faster-whisper's own test
data) and a committed Mandarin call go through one real batch with ``language = auto``. The
English call must come out in English, with no Mandarin prompt echoed into it, be flagged
rather than failed by the Mandarin scorecard, and be sent to a reviewer.
"""

from __future__ import annotations

import math
import re
import shutil

import pandas as pd
import pytest

from speechqa.evaluation import wer
from speechqa.pipeline import run_batch
from tests.conftest import RECORDINGS, ROOT, settings_for

pytestmark = pytest.mark.e2e

JFK = ROOT / "tests" / "fixtures" / "lang" / "en_jfk.wav"
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def mixed_night(model_dir, asr_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copy(JFK, folder / "en0001.wav")
    shutil.copy(RECORDINGS / "c0001.wav", folder / "c0001.wav")
    out = tmp_path_factory.mktemp("mixed-out")
    summary = run_batch(folder, out, settings_for(asr_cache, language="auto", languages=("zh", "en")))
    assert not summary.failures
    return out


def test_auto_detects_each_calls_language_and_primes_english_with_no_mandarin(mixed_night):
    calls = pd.read_csv(mixed_night / "calls.csv", dtype={"flags": str}).set_index("call_id")
    assert calls.loc["en0001", "language"] == "en" and calls.loc["c0001", "language"] == "zh"
    turns = pd.read_csv(mixed_night / "turns.csv")
    english = turns[turns.call_id == "en0001"]
    said = " ".join(english.sort_values("start").text)
    assert not HAN.search(said), said  # no Mandarin prompt echoed into an English call
    assert wer([JFK_TEXT], [said]) <= 0.2, said
    mandarin = "".join(turns[turns.call_id == "c0001"].text)
    assert len(HAN.findall(mandarin)) > 50


def test_a_call_the_scorecard_cannot_score_is_flagged_and_reviewed_not_failed(mixed_night):
    calls = pd.read_csv(mixed_night / "calls.csv", dtype={"flags": str}).set_index("call_id")
    en = calls.loc["en0001"]
    assert "language_not_scored" in str(en["flags"]).split(";")
    assert math.isnan(en["compliance_score"]) and not en["auto_fail"]
    rules = pd.read_csv(mixed_night / "rule_results.csv")
    assert set(rules[rules.call_id == "en0001"].outcome) == {"na"}
    assert not math.isnan(calls.loc["c0001", "compliance_score"])
    # the Mandarin sentiment model and escalation lexicon say nothing of an English call
    assert pd.isna(en["customer_sentiment_mean"]) and pd.isna(en["agent_sentiment_mean"])
    assert not en["escalated"]
    assert not pd.isna(calls.loc["c0001", "agent_sentiment_mean"])
    sample = pd.read_csv(mixed_night / "qa_candidates.csv").set_index("call_id")
    assert sample.loc["en0001", "layer"] == "must_review"
    assert "scorecard does not apply" in sample.loc["en0001", "reasons_en"]


def test_a_forced_english_run_gets_no_mandarin_prompt(model_dir, asr_cache, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(JFK, folder / "en0002.wav")
    run_batch(folder, tmp_path / "out", settings_for(asr_cache, language="en"))
    said = " ".join(pd.read_csv(tmp_path / "out" / "turns.csv").sort_values("start").text)
    assert not HAN.search(said) and wer([JFK_TEXT], [said]) <= 0.2, said
