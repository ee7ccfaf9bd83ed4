"""One night run as shards into one history store, sampled once from the store."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from speechqa.cli import main
from speechqa.config import load_settings
from speechqa.errors import LockedError
from speechqa.pipeline import run_batch, sample_from_store
from tests.conftest import FIXTURE_CALLS
from tests.fakes import ScriptedTranscriber

NIGHT = "2026-11-30"
SHARDS = {"1of2": ["fx_stereo", "fx_mono"], "2of2": ["fx_bargein"]}


def _settings(tmp_path, db, shard=""):
    return load_settings(environ={}, overrides={
        "asr": {"model": "unused"}, "batch": {"cache_dir": str(tmp_path / "cache"), "shard": shard},
        "store": {"db": str(db)}, "sampling": {"night": NIGHT}})


def _folder(tmp_path, name, calls):
    """A shard: its calls' audio and scripts, and their rows of the night's manifest."""
    folder = tmp_path / name
    folder.mkdir()
    for call in calls:
        for suffix in (".wav", ".truth.json"):
            shutil.copy(FIXTURE_CALLS / f"{call}{suffix}", folder / f"{call}{suffix}")
    manifest = pd.read_csv(FIXTURE_CALLS / "calls.csv", dtype=str)
    manifest[manifest.call_id.isin(calls)].to_csv(folder / "calls.csv", index=False)
    return folder


def test_shards_of_a_night_are_sampled_once_from_the_store_as_the_whole_night_is(tmp_path):
    whole = run_batch(FIXTURE_CALLS, tmp_path / "whole", _settings(tmp_path, tmp_path / "whole.db"),
                      transcriber=ScriptedTranscriber(FIXTURE_CALLS))
    db = tmp_path / "shared.db"
    for shard, calls in SHARDS.items():
        folder = _folder(tmp_path, shard, calls)
        summary = run_batch(folder, tmp_path / "out" / shard, _settings(tmp_path, db, shard),
                            transcriber=ScriptedTranscriber(folder))
        assert summary.run_info["sampling"]["skipped"].startswith("a shard's run does not sample")
        assert not (tmp_path / "out" / shard / "qa_candidates.csv").exists()
    info = sample_from_store(tmp_path / "night", NIGHT, _settings(tmp_path, db))
    assert info["calls"] == 3 and info["source"] == "store"
    ours = pd.read_csv(tmp_path / "night" / "qa_candidates.csv")
    theirs = pd.read_csv(tmp_path / "whole" / "qa_candidates.csv")
    must = {layer: set(df[df.layer == "must_review"].call_id) for layer, df in (("s", ours), ("w", theirs))}
    assert must["s"] == must["w"]  # the rules that force a review see the same calls
    assert set(ours.call_id) <= {c for calls in SHARDS.values() for c in calls}
    by_reason = dict(zip(ours.call_id, ours.reasons_en, strict=True))
    for call_id, reasons in zip(theirs.call_id, theirs.reasons_en, strict=True):
        if call_id in must["w"]:
            assert by_reason[call_id] == reasons
    for table in ("agents", "teams"):
        a, b = (pd.read_csv(out / f"{table}.csv").drop(columns="failed_items_top")
                for out in (tmp_path / "night", whole.out))
        pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_sampling_from_the_store_is_refused_while_a_shard_runs_and_needs_a_night(tmp_path):
    from speechqa import store as history

    db = tmp_path / "shared.db"
    store = history.open_store(str(db))
    held = history.lock_night(store, NIGHT, "/out/1of2", shard="1of2")
    with pytest.raises(LockedError, match=r"shard 1of2"):
        sample_from_store(tmp_path / "night", NIGHT, _settings(tmp_path, db))
    history.unlock_night(store, held)
    result = CliRunner().invoke(main, ["sample", str(tmp_path / "night"), "--from-store", "--db", str(db)])
    assert result.exit_code == 2 and "--from-store needs --night" in result.output
    result = CliRunner().invoke(main, ["sample", str(tmp_path / "night"), "--from-store", "--night", NIGHT,
                                       "--db", str(db)])
    assert result.exit_code == 1 and f"no calls recorded for night {NIGHT}" in result.output
