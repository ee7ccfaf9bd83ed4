"""Conversation analytics against the ground truth of the committed calls (recordings/ and
the test fixtures), with the real model on the real audio: silences and holds, barge-ins,
talk times, roles, sentiment arcs, escalations and shouting."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import FIXTURE_CALLS, RECORDINGS

pytestmark = pytest.mark.e2e

TOL_S = 0.5


def _truths():
    found = {}
    for folder in (RECORDINGS, FIXTURE_CALLS):
        for path in sorted(folder.glob("*.truth.json")):
            found[path.name.removesuffix(".truth.json")] = json.loads(path.read_text(encoding="utf-8"))
    return found


@pytest.fixture(scope="module")
def analysed(recordings_run, fixture_run):
    tables = {}
    for name in ("calls", "events", "turns"):
        tables[name] = pd.concat([pd.read_parquet(run.out / f"{name}.parquet")
                                  for run in (recordings_run, fixture_run)], ignore_index=True)
    return tables


def test_silences_and_holds_match_the_truth(analysed):
    events = analysed["events"]
    checked = 0
    for call_id, truth in _truths().items():
        want = sorted((e["type"], e["start"], e["end"]) for e in truth["events"]
                      if e["type"] in ("silence", "hold"))
        got = events[(events.call_id == call_id) & events.type.isin(["silence", "hold"])]
        got = sorted(zip(got.type, got.start, got.end, strict=True))
        assert len(got) == len(want), f"{call_id}: expected {want}, found {got}"
        for (wt, ws, we), (gt, gs, ge) in zip(want, got, strict=True):
            assert gt == wt and abs(gs - ws) <= TOL_S and abs(ge - we) <= TOL_S, (call_id, want, got)
            checked += 1
    assert checked >= 6


def test_barge_ins_found_on_stereo_calls_and_only_there(analysed):
    events = analysed["events"]
    checked = 0
    for call_id, truth in _truths().items():
        if truth["layout"] != "stereo":
            continue  # one channel cannot say who spoke over whom until speakers are separated
        want = [e for e in truth["events"] if e["type"] == "barge_in"]
        got = events[(events.call_id == call_id) & (events.type == "interruption")]
        assert len(got) == len(want), f"{call_id}: expected {want}, found {got.to_dict('records')}"
        for w in want:
            match = got[(got.role == w["role"]) & (got.detail == w["interrupted_role"])
                        & ((got.start - w["start"]).abs() <= TOL_S)]
            assert len(match) == 1, (call_id, w, got.to_dict("records"))
            checked += 1
    assert checked >= 3


def test_talk_times_within_five_percent_on_stereo_calls(analysed):
    calls = analysed["calls"].set_index("call_id")
    for call_id, truth in _truths().items():
        if truth["layout"] != "stereo":
            continue
        for role, want in truth["talk_time_s"].items():
            got = calls.loc[call_id, f"talk_s_{role}"]
            assert abs(got - want) <= 0.05 * want, f"{call_id} {role}: {got} vs truth {want}"


def test_stereo_roles_follow_the_truth_even_when_the_channels_are_swapped(analysed):
    turns = analysed["turns"]
    for call_id, truth in _truths().items():
        if truth["layout"] != "stereo":
            continue
        mine = turns[turns.call_id == call_id]
        agent_channel = truth["channels"]["agent"]
        assert set(mine[mine.role == "agent"].channel) == {agent_channel}, call_id


def test_angry_customers_start_lower_than_they_end(analysed):
    calls = analysed["calls"].set_index("call_id")
    angry = [c for c, t in _truths().items()
             if t["layout"] == "stereo" and t["mood_arc"].startswith("angry->")
             and not t["mood_arc"].endswith("angry")]
    assert len(angry) >= 2
    for call_id in angry:
        row = calls.loc[call_id]
        assert row.customer_sentiment_start < row.customer_sentiment_end, call_id


ESCALATION_KIND = {
    "complaint_threat": "complaint", "regulator_threat": "regulator", "media_threat": "media",
    "lawyer_threat": "lawyer", "supervisor_request": "supervisor", "cancel_threat": "cancellation",
}


def test_escalations_found_with_their_turn_and_none_on_calm_calls(analysed):
    events = analysed["events"]
    escalations = events[events.type == "escalation"]
    wanted = missed = 0
    for call_id, truth in _truths().items():
        threats = [e for e in truth["events"] if e["type"] in ESCALATION_KIND]
        mine = escalations[escalations.call_id == call_id]
        if not threats:
            assert mine.empty, f"{call_id}: no threat in the call, found {mine.to_dict('records')}"
            continue
        for threat in threats:
            wanted += 1
            hit = mine[(mine.detail == ESCALATION_KIND[threat["type"]])
                       & (mine.start < threat["end"]) & (mine.end > threat["start"])]
            missed += hit.empty
    assert wanted >= 10
    # Measured with the suite's AVX2 pin: 12 of 14. The two misses are words whisper-base never
    # wrote (c0001's threat came out as a loop of 既是我本人, c0006's lawyer threat was cut off
    # mid-sentence); no text stage can find them, so the margin allows two.
    assert missed <= 2, f"{missed} of {wanted} threats missed"


def test_shouting_is_only_flagged_on_angry_turns(analysed):
    turns = analysed["turns"]
    shouting = turns[turns.shouting.fillna(False)]
    assert len(shouting) >= 2
    truths = _truths()
    for row in shouting.itertuples():
        lines = [t for t in truths[row.call_id]["turns"] if t["start"] < row.end and t["end"] > row.start]
        assert any(t["mood"] in ("angry", "rude", "impatient") for t in lines), (row.turn_id, row.text)


def test_scorecard_items_agree_with_the_truth_and_never_auto_fail_a_good_call(recordings_run, fixture_run):
    results = pd.concat([pd.read_parquet(run.out / "rule_results.parquet")
                         for run in (recordings_run, fixture_run)], ignore_index=True)
    outcome = {True: "pass", False: "fail", None: "na"}
    agree = total = 0
    for call_id, truth in _truths().items():
        mine = results[results.call_id == call_id].set_index("item_id")
        for item_id, want in truth["script_items"].items():
            total += 1
            agree += mine.loc[item_id, "outcome"] == outcome[want]
        if truth["script_items"]["no_forbidden"]:
            assert mine.loc["no_forbidden", "outcome"] != "fail", call_id
    # measured 100 of 104; the misses are agent turns whisper-base dropped
    assert agree / total >= 0.93, f"{agree}/{total}"


def test_rule_results_carry_evidence_and_the_scorecard_version(recordings_run):
    rules = pd.read_parquet(recordings_run.out / "rule_results.parquet")
    calls = pd.read_parquet(recordings_run.out / "calls.parquet").set_index("call_id")
    run = json.loads((recordings_run.out / "run.json").read_text())
    assert rules.scorecard_sha256.nunique() == 1
    assert rules.scorecard_sha256.iloc[0] == run["scorecard"]["sha256"] == calls.scorecard_sha256.iloc[0]
    passed = rules[(rules.outcome == "pass") & (rules.item_id != "no_forbidden")]  # absence has no evidence
    assert passed.evidence_turn_id.str.len().gt(0).all() and passed.evidence_start.notna().all()
    failed = rules[rules.outcome == "fail"]
    assert failed.reason.str.len().gt(0).all()
    c0002 = rules[(rules.call_id == "c0002") & (rules.item_id == "no_forbidden")].iloc[0]
    assert c0002.outcome == "fail" and c0002.evidence_text in ("不知道", "不归我管")
    assert calls.loc["c0002", "auto_fail"] and calls.loc["c0002", "compliance_score"] == 0
    assert calls.loc["c0001", "compliance_score"] == 100 and calls.loc["c0001", "failed_items"] == ""


def test_agent_and_team_scorecards_summarise_the_calls(recordings_run):
    calls = pd.read_parquet(recordings_run.out / "calls.parquet")
    agents = pd.read_parquet(recordings_run.out / "agents.parquet").set_index("agent_id")
    teams = pd.read_parquet(recordings_run.out / "teams.parquet").set_index("team")
    assert agents.calls.sum() == teams.calls.sum() == (calls.status == "ok").sum()
    liu = calls[calls.agent_id == "A2011"]  # 刘洋: three calls, all poor
    assert agents.loc["A2011", "calls"] == len(liu)
    assert agents.loc["A2011", "auto_fails"] == liu.auto_fail.sum()
    assert abs(agents.loc["A2011", "compliance_score_mean"] - liu.compliance_score.mean()) < 0.1
    assert teams.loc["客服一组", "compliance_score_mean"] > teams.loc["客服二组", "compliance_score_mean"]
