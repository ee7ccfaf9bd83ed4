"""The last stage of `speechqa run`: QA candidates from the real batch, recorded in the history
store, reproducible, never repeated across nights, and reviews brought back in."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from speechqa.cli import main
from speechqa.pipeline import run_batch
from tests.conftest import RECORDINGS, settings_for

pytestmark = pytest.mark.e2e


def _settings(asr_cache, db, **sampling):
    s = settings_for(asr_cache)
    from dataclasses import replace

    return replace(s, store=replace(s.store, db=str(db)), sampling=replace(s.sampling, **sampling))


def test_run_samples_the_night_and_a_rerun_gives_the_same_sample(recordings_run, asr_cache, tmp_path):
    db = tmp_path / "history.db"
    settings = _settings(asr_cache, db, reviewers=("李审", "周审"))
    first = run_batch(RECORDINGS, tmp_path / "n1", settings)
    info = first.run_info["sampling"]
    assert info["night"] == "2026-11-22" and info["candidates"] > 0
    qa = pd.read_parquet(tmp_path / "n1" / "qa_candidates.parquet")
    assert all((tmp_path / "n1" / f"qa_candidates.{ext}").is_file() for ext in ("csv", "xlsx"))
    must = set(qa[qa.layer == "must_review"].call_id)
    calls = pd.read_parquet(tmp_path / "n1" / "calls.parquet").set_index("call_id")
    assert set(calls[calls.auto_fail.fillna(False)].index) <= must  # every auto-fail is reviewed
    assert qa.reasons_zh.str.len().gt(0).all() and qa.reasons_en.str.len().gt(0).all()
    assert set(qa.reviewer) <= {"李审", "周审"} and qa.audio_path.str.endswith(".wav").all()
    again = run_batch(RECORDINGS, tmp_path / "n1b", settings)
    assert again.run_info["sampling"]["candidates"] == info["candidates"]
    pd.testing.assert_frame_equal(qa, pd.read_parquet(tmp_path / "n1b" / "qa_candidates.parquet"))


def test_a_later_night_never_samples_a_call_again(asr_cache, tmp_path):
    db = tmp_path / "history.db"
    run_batch(RECORDINGS, tmp_path / "n1", _settings(asr_cache, db, night="2026-11-22"))
    first = set(pd.read_parquet(tmp_path / "n1" / "qa_candidates.parquet").call_id)
    run_batch(RECORDINGS, tmp_path / "n2", _settings(asr_cache, db, night="2026-11-23"))
    second = set(pd.read_parquet(tmp_path / "n2" / "qa_candidates.parquet").call_id)
    assert first and not first & second


def test_reviews_come_back_and_rule_precision_is_reported(asr_cache, tmp_path):
    db = tmp_path / "history.db"
    run_batch(RECORDINGS, tmp_path / "n1", _settings(asr_cache, db))
    rules = pd.read_parquet(tmp_path / "n1" / "rule_results.parquet")
    failed = rules[rules.outcome == "fail"].head(4)
    verdicts = pd.DataFrame(
        [{"call_id": "c0002", "reviewer": "李审", "score": "10", "verdict": "agree"}]
        + [{"call_id": r.call_id, "item_id": r.item_id, "reviewer": "李审",
            "verdict": "correct" if i else "incorrect"} for i, r in enumerate(failed.itertuples())])
    path = tmp_path / "reviews.csv"
    verdicts.to_csv(path, index=False, encoding="utf-8-sig")
    result = CliRunner().invoke(main, ["review", "import", str(path), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "1 call verdicts and 4 rule verdicts" in result.output
    report = CliRunner().invoke(main, ["review", "report", "--db", str(db)])
    assert report.exit_code == 0 and failed.item_id.iloc[0] in report.output
    bad = tmp_path / "bad.csv"
    pd.DataFrame([{"call_id": "c9999", "reviewer": "x", "verdict": "agree"}]).to_csv(bad, index=False)
    refused = CliRunner().invoke(main, ["review", "import", str(bad), "--db", str(db)])
    assert refused.exit_code == 1 and "c9999" in refused.output
    assert json.loads((tmp_path / "n1" / "run.json").read_text())["sampling"]["seed"] == 20261122


def test_training_clips_from_the_real_batch_export_through_the_cli(recordings_run, tmp_path):
    index = pd.read_parquet(recordings_run.out / "training_clips.parquet")
    assert {"good", "bad"} <= set(index.label)
    assert {"greeting", "forbidden_phrase"} <= {t for tags in index.tags for t in tags.split(";")}
    assert ((index.start >= 0) & (index.end > index.start)).all()
    dest = tmp_path / "clips"
    result = CliRunner().invoke(main, ["clips", "export", str(recordings_run.out), "--dest", str(dest),
                                       "--label", "bad", "--tag", "forbidden_phrase"])
    assert result.exit_code == 0, result.output
    exported = pd.read_csv(dest / "clips.csv", encoding="utf-8-sig")
    assert len(exported) == (index.tags.str.contains("forbidden_phrase") & (index.label == "bad")).sum()
    assert all((dest / f).stat().st_size > 1000 for f in exported.file)
