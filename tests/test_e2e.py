"""End to end: the real whisper-base model on the committed fixture calls (8 kHz µ-law)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from speechqa.cli import main
from speechqa.evaluation import cer, has_traditional
from tests.conftest import FIXTURE_CALLS, ROOT, settings_for

pytestmark = pytest.mark.e2e

# Measured 0.345 on the fixture calls with whisper-base int8 (synthetic voices with a
# Japanese accent, 8 kHz µ-law, overlaps); the bound leaves room for CPU-dependent decoding
# differences, not for a regression.
MAX_CER = 0.40


def _truth(call_id):
    return json.loads((FIXTURE_CALLS / f"{call_id}.truth.json").read_text(encoding="utf-8"))


def _read(out, name):
    return pd.read_parquet(out / f"{name}.parquet")


def test_every_fixture_call_is_transcribed(fixture_run):
    calls = _read(fixture_run.out, "calls")
    assert sorted(calls.call_id) == ["fx_bargein", "fx_mono", "fx_stereo"]
    assert set(calls.status) == {"ok"}
    assert fixture_run.exit_code == 0
    # manifest columns are carried through
    assert {"agent_id", "team", "customer_tier", "queue"} <= set(calls.columns)
    stereo = calls.set_index("call_id").loc["fx_stereo"]
    assert stereo.channels == 2 and stereo.model == "whisper-base"
    assert abs(stereo.duration_s - _truth("fx_stereo")["duration_s"]) < 0.1


def test_cer_against_ground_truth_is_bounded(fixture_run):
    turns = _read(fixture_run.out, "turns")
    refs, hyps = [], []
    for call_id in ["fx_bargein", "fx_mono", "fx_stereo"]:
        truth = _truth(call_id)
        mine = turns[turns.call_id == call_id].sort_values("start")
        roles = ["agent", "customer"] if truth["layout"] == "stereo" else [None]
        for role in roles:
            refs.append("".join(t["text"] for t in truth["turns"] if role in (None, t["role"])))
            hyps.append("".join(mine[mine.role == role].text) if role else "".join(mine.text))
    score = cer(refs, hyps)
    print(f"fixture CER={score:.4f}")
    assert score <= MAX_CER


def test_no_traditional_characters(fixture_run):
    turns = _read(fixture_run.out, "turns")
    words = _read(fixture_run.out, "words")
    assert len(turns) > 5
    assert not [t for t in turns.text if has_traditional(t)]
    assert not [w for w in words.word if has_traditional(w)]


def test_stereo_roles_follow_the_channels(fixture_run):
    turns = _read(fixture_run.out, "turns")
    for call_id in ["fx_stereo", "fx_bargein"]:
        truth = _truth(call_id)
        mine = turns[turns.call_id == call_id]
        assert set(mine.role) == {"agent", "customer"}
        for t in mine.itertuples():
            assert t.channel == truth["channels"][t.role]
            # the ground-truth turn this one overlaps most was spoken by the same role
            best = max(truth["turns"], key=lambda g: min(g["end"], t.end) - max(g["start"], t.start))
            assert best["role"] == t.role, (t.turn_id, t.text, best["text"])


def test_mono_roles_come_from_the_speaker_model(fixture_run):
    """fx_mono is one channel: its voices are separated by the speaker model and the agent's
    is told by evidence (speechqa/diarize.py, speechqa/roles.py)."""
    turns = _read(fixture_run.out, "turns")
    calls = _read(fixture_run.out, "calls").set_index("call_id")
    mono = turns[turns.call_id == "fx_mono"]
    assert set(mono.role) == {"agent", "customer"} and set(mono.channel) == {0}
    truth = _truth("fx_mono")
    right = total = 0.0
    for t in mono.itertuples():
        best = max(truth["turns"], key=lambda g: min(g["end"], t.end) - max(g["start"], t.start))
        total += t.end - t.start
        right += (t.end - t.start) * (best["role"] == t.role)
    assert right / total >= 0.95, (right / total, mono[["role", "text"]].values.tolist())
    row = calls.loc["fx_mono"]
    assert row.role_source == "diarised" and row.role_confidence >= 0.8
    assert "roles_uncertain" not in str(row.flags)
    assert calls.loc["fx_stereo", "role_source"] == "channels"
    assert pd.isna(calls.loc["fx_stereo", "role_confidence"])


def test_turns_have_times_words_and_ids(fixture_run):
    turns = _read(fixture_run.out, "turns")
    words = _read(fixture_run.out, "words")
    assert turns.turn_id.is_unique
    assert (turns.end > turns.start).all()
    assert set(words.turn_id) <= set(turns.turn_id)
    for t in turns.itertuples():
        w = words[words.turn_id == t.turn_id]
        assert len(w) > 0
        assert w.start.min() >= t.start - 1e-6 and w.end.max() <= t.end + 1e-6
    # turns split at real pauses: the ≥5 s silence in fx_stereo is between two turns
    truth = _truth("fx_stereo")
    for gap in [e for e in truth["events"] if e["type"] in ("silence", "hold")]:
        inside = turns[(turns.call_id == "fx_stereo") & (turns.start < gap["start"] + 1.0)
                       & (turns.end > gap["end"] - 1.0)]
        assert inside.empty, inside.text.tolist()


def test_csv_opens_in_excel_and_matches_parquet(fixture_run):
    raw = (fixture_run.out / "turns.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    csv = pd.read_csv(fixture_run.out / "turns.csv", encoding="utf-8-sig", keep_default_na=False)
    assert list(csv.text) == list(_read(fixture_run.out, "turns").text)


def test_run_json_records_model_settings_counts_and_timings(fixture_run):
    info = json.loads((fixture_run.out / "run.json").read_text(encoding="utf-8"))
    assert info["model"]["sha256"] == "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    assert info["compute_type"] == "int8" and info["device"] == "cpu"
    assert info["settings"]["asr"]["language"] == "zh"
    assert info["counts"]["ok"] == 3 and info["counts"]["failed"] == 0
    assert info["versions"]["faster-whisper"]
    assert info["timings_s"]["total"] > 0


def test_a_second_run_does_no_asr(fixture_run, asr_cache, tmp_path):
    from speechqa.pipeline import run_batch

    again = run_batch(FIXTURE_CALLS, tmp_path, settings_for(asr_cache))
    assert again.run_info["counts"]["transcribed"] == 0
    assert again.run_info["counts"]["cached"] == 3
    assert "asr" not in again.run_info["timings_s"]
    pd.testing.assert_frame_equal(_read(tmp_path, "turns"), _read(fixture_run.out, "turns"))


def test_a_gbk_manifest_in_nested_folders_gives_the_same_night(fixture_run, asr_cache, fixture_copy, tmp_path):
    """What Excel saves on a Chinese Windows machine (GBK), with the calls filed per queue."""
    from speechqa.pipeline import run_batch

    manifest = fixture_copy / "calls.csv"
    rows = manifest.read_text(encoding="utf-8").splitlines()
    for wav in fixture_copy.glob("*.wav"):
        (fixture_copy / "queue" / wav.stem).mkdir(parents=True)
        wav.rename(fixture_copy / "queue" / wav.stem / wav.name)
    rows = [rows[0]] + [r.replace(f",{r.split(',')[1]},", f",queue/{r.split(',')[0]}/{r.split(',')[1]},", 1)
                        for r in rows[1:]]
    manifest.write_bytes(("\r\n".join(rows) + "\r\n").encode("gbk"))
    summary = run_batch(fixture_copy, tmp_path, settings_for(asr_cache))
    assert not summary.failures and summary.run_info["manifest"]["encoding"] == "gbk"
    assert summary.run_info["counts"]["transcribed"] == 0  # the same audio: the cache still holds
    ours, theirs = _read(tmp_path, "calls"), _read(fixture_run.out, "calls")
    assert list(ours.call_id) == list(theirs.call_id) and list(ours.team) == list(theirs.team)
    pd.testing.assert_frame_equal(_read(tmp_path, "turns"), _read(fixture_run.out, "turns"))


def test_corrupt_and_missing_files_fail_alone(fixture_run, asr_cache, fixture_copy, tmp_path):
    (fixture_copy / "zz_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 50)
    (fixture_copy / "zz_empty.wav").write_bytes(b"")
    with (fixture_copy / "calls.csv").open("a", encoding="utf-8") as fh:
        fh.write("gone,gone.wav,A9,某某,客服一组,2026-10-01,normal,2026-11-22T10:00:00,inbound,退款\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(fixture_copy), "--out", str(out), "--quiet",
                                       "--model", str(ROOT / "models" / "whisper-base"),
                                       "--cache-dir", str(asr_cache)])
    assert result.exit_code == 1
    failures = pd.read_csv(out / "failures.csv", encoding="utf-8-sig")
    reasons = dict(zip(failures.call_id, failures.reason, strict=True))
    assert set(reasons) == {"zz_corrupt", "zz_empty", "gone"}
    assert "zz_corrupt.wav: corrupt or unsupported audio" in reasons["zz_corrupt"]
    assert "zz_empty.wav: empty file (0 bytes)" in reasons["zz_empty"]
    assert "gone.wav: file not found" in reasons["gone"]
    assert "zz_corrupt.wav" in result.output  # the CLI names the file too
    calls = pd.read_csv(out / "calls.csv", encoding="utf-8-sig").set_index("call_id")
    assert calls.loc[["fx_bargein", "fx_mono", "fx_stereo"], "status"].eq("ok").all()
    assert calls.loc[["zz_corrupt", "zz_empty", "gone"], "status"].eq("failed").all()
    good = _read(out, "turns")
    pd.testing.assert_frame_equal(good, _read(fixture_run.out, "turns"))


def test_resume_after_kill_9(fixture_run, fixture_copy, tmp_path):
    """Kill the batch once the first call is cached; the re-run does only the rest."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, "-m", "speechqa.cli", "run", str(fixture_copy), "--out", str(out),
           "--quiet", "--model", str(ROOT / "models" / "whisper-base"), "--cache-dir", str(cache)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHQA_")}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(cache.rglob("*.json")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(cache.rglob("*.json")))
    assert 1 <= done_before < 3
    assert not (out / "turns.parquet").exists()  # tables appear only when a run completes

    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["counts"]["cached"] == done_before
    assert info["counts"]["transcribed"] == 3 - done_before
    turns = _read(out, "turns")
    assert turns.turn_id.is_unique
    pd.testing.assert_frame_equal(turns, _read(fixture_run.out, "turns"))
    shutil.rmtree(cache)


def test_a_rule_that_errors_on_one_call_fails_only_that_call(fixture_copy, asr_cache, tmp_path, monkeypatch):
    from speechqa import pipeline

    real = pipeline.score_call

    def flaky(result, scorecard):
        if result.recording.call_id == "fx_mono":
            raise ZeroDivisionError("rule arithmetic")
        return real(result, scorecard)

    monkeypatch.setattr(pipeline, "score_call", flaky)
    summary = pipeline.run_batch(fixture_copy, tmp_path / "out", settings_for(asr_cache))
    assert [(f.call_id, f.stage) for f in summary.failures] == [("fx_mono", "compliance")]
    assert "ZeroDivisionError" in summary.failures[0].reason
    assert sorted(r.recording.call_id for r in summary.results) == ["fx_bargein", "fx_stereo"]
    rules = pd.read_parquet(tmp_path / "out" / "rule_results.parquet")
    assert set(rules.call_id) == {"fx_bargein", "fx_stereo"}
