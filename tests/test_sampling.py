"""QA sampling: layers, reproducibility, floors and quotas (as properties), no repeats."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechqa.sampling import History, SamplingSettings, period_bounds, sample_night, tenure_stage

WEEK = [(date(2026, 11, 23) + timedelta(days=i)).isoformat() for i in range(7)]  # Monday to Sunday
HIRED = {0: "2026-10-01", 1: "2026-06-01", 2: "2025-11-01", 3: "2020-01-01"}  # by tenure stage on WEEK


ONLY_FLAGS = SamplingSettings(risk_per_night=0, floor_per_period=0, tenure_floor=(0, 0, 0, 0))


def calls_for(night: str, counts: dict[str, int], stage: dict[str, int] | None = None,
              **overrides) -> pd.DataFrame:
    rows = []
    for agent, n in counts.items():
        for i in range(n):
            rows.append({
                "call_id": f"{night}-{agent}-{i:02d}", "status": "ok", "agent_id": agent, "agent_name": agent,
                "team": "T1", "agent_hire_date": HIRED[(stage or {}).get(agent, 3)], "customer_tier": "normal",
                "compliance_score": 100.0, "auto_fail": False, "failed_items": "", "escalations": "",
                "customer_sentiment_start": 0.5, "customer_sentiment_end": 0.5, "sentiment_trajectory": "flat",
                "n_interruptions_agent": 0, "hold_s": 0.0, "path": f"/calls/{night}/{agent}-{i}.wav",
            } | overrides.get(f"{agent}-{i}", {}))
    return pd.DataFrame(rows)


def run_week(nights: list[pd.DataFrame], cfg: SamplingSettings) -> pd.DataFrame:
    history = History()
    out = []
    for night, calls in zip(WEEK, nights, strict=False):
        first, _ = period_bounds(night, cfg.period_days)
        done = pd.concat(out) if out else pd.DataFrame(columns=["agent_id", "night", "call_id"])
        in_period = done[done.night >= first]
        history = History(frozenset(done.call_id), in_period.agent_id.value_counts().to_dict())
        out.append(sample_night(calls, night, cfg, history))
    return pd.concat(out, ignore_index=True)


def test_tenure_stages_and_periods():
    assert [tenure_stage(HIRED[s], WEEK[0]) for s in range(4)] == [0, 1, 2, 3]
    assert tenure_stage(None, WEEK[0]) == 3
    assert period_bounds("2026-11-26", 7) == ("2026-11-23", "2026-11-29")


def test_must_review_layer_catches_every_red_flag_with_reasons():
    calls = calls_for(WEEK[0], {"A1": 6}, **{
        "A1-0": {"auto_fail": True, "failed_items": "no_forbidden", "compliance_score": 0.0},
        "A1-1": {"escalations": "regulator"},
        "A1-2": {"customer_sentiment_end": 0.05},
        "A1-3": {"failed_items": "hold_notice", "hold_s": 35.0},
        "A1-4": {"escalations": "cancellation"},  # not a must-review threat on its own
    })
    out = sample_night(calls, WEEK[0], ONLY_FLAGS)
    must = out[out.layer == "must_review"].set_index("call_id")
    assert set(must.index) == {f"{WEEK[0]}-A1-{i:02d}" for i in range(4)}
    assert "auto-fail" in must.loc[f"{WEEK[0]}-A1-00", "reasons_en"]
    assert "监管" in must.loc[f"{WEEK[0]}-A1-01", "reasons_zh"]
    assert "long unannounced hold" in must.loc[f"{WEEK[0]}-A1-03", "reasons_en"]


def test_same_inputs_and_seed_give_the_same_sample_and_the_seed_is_recorded():
    calls = calls_for(WEEK[0], {"A1": 10, "A2": 10, "A3": 3})
    cfg = SamplingSettings(seed=7, reviewers=("r1", "r2"))
    a, b = sample_night(calls, WEEK[0], cfg), sample_night(calls.sample(frac=1, random_state=1), WEEK[0], cfg)
    pd.testing.assert_frame_equal(a, b)
    assert set(a.seed) == {7}
    other = sample_night(calls, WEEK[0], SamplingSettings(seed=8, reviewers=("r1", "r2")))
    assert set(other.call_id) != set(a.call_id)


def test_recognition_picks_exemplary_calls():
    calls = calls_for(WEEK[0], {"A1": 4}, **{
        "A1-2": {"sentiment_trajectory": "improved", "customer_sentiment_start": 0.2,
                 "customer_sentiment_end": 0.9},
    })
    out = sample_night(calls, WEEK[0], ONLY_FLAGS)
    assert out.set_index("layer").loc["recognition", "call_id"] == f"{WEEK[0]}-A1-02"


def test_reviewers_round_robin_within_capacity():
    calls = calls_for(WEEK[0], {"A1": 10})
    cfg = SamplingSettings(risk_per_night=7, reviewers=("r1", "r2"), reviewer_capacity=3)
    out = sample_night(calls, WEEK[0], cfg)
    assert list(out.reviewer[:6]) == ["r1", "r2"] * 3
    assert (out.reviewer[6:] == "").all()


agents = st.dictionaries(st.sampled_from(["A1", "A2", "A3", "A4", "A5"]), st.integers(0, 4), min_size=1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(week=st.lists(agents, min_size=7, max_size=7), stages=st.dictionaries(
    st.sampled_from(["A1", "A2", "A3", "A4", "A5"]), st.integers(0, 3)), seed=st.integers(1, 10_000))
def test_floor_and_tenure_quotas_hold_over_a_week_and_no_call_is_sampled_twice(week, stages, seed):
    cfg = SamplingSettings(seed=seed, risk_per_night=1, floor_per_period=2, tenure_floor=(4, 3, 2, 2))
    nights = [calls_for(night, counts, stages) for night, counts in zip(WEEK, week, strict=True)]
    out = run_week(nights, cfg)
    assert not out.call_id.duplicated().any()
    available = pd.concat(nights).groupby("agent_id").size() if any(len(n) for n in nights) else pd.Series()
    got = out.groupby("agent_id").size()
    for agent, n_calls in available.items():
        target = max(cfg.floor_per_period, cfg.tenure_floor[stages.get(agent, 3)])
        # the floor is met whenever the agent had enough calls on the nights left to meet it
        last_night_calls = week[-1].get(agent, 0)
        if last_night_calls >= target:
            assert got.get(agent, 0) >= target, (agent, target, got.to_dict())
        assert got.get(agent, 0) <= n_calls


@settings(max_examples=25, deadline=None)
@given(counts=agents, day=st.integers(0, 6))
def test_the_floor_is_spread_across_the_period(counts, day):
    cfg = SamplingSettings(seed=1, risk_per_night=0, floor_per_period=4, tenure_floor=(4, 4, 4, 4),
                           recognition_per_night=0)
    out = sample_night(calls_for(WEEK[day], counts), WEEK[day], cfg)
    nights_left = 7 - day
    per_agent = out.groupby("agent_id").size()
    for n in per_agent:
        assert n <= -(-4 // nights_left)  # ceil(4 / nights left)


@pytest.mark.parametrize("status", ["failed", "skipped"])
def test_calls_that_failed_processing_are_not_sampled(status):
    calls = calls_for(WEEK[0], {"A1": 3})
    calls.loc[0, "status"] = status
    out = sample_night(calls, WEEK[0], SamplingSettings(risk_per_night=5))
    assert calls.call_id[0] not in set(out.call_id)


def test_a_site_scorecard_with_its_own_hold_item_still_gets_long_holds_reviewed():
    night = WEEK[0]
    calls = calls_for(night, {"A1": 2}, **{"A1-0": {"failed_items": "silence_told", "hold_s": 40.0}})
    rules = pd.DataFrame([{"call_id": f"{night}-A1-00", "item_id": "silence_told", "outcome": "fail",
                           "evidence_text": "hold 40.0s", "evidence_start": 30.0, "evidence_end": 70.0,
                           "evidence_turn_id": "", "reason": "nothing within 25s before hold 40.0s at 30.0s"}])
    out = sample_night(calls, night, ONLY_FLAGS, rule_results=rules)
    must = out[out.layer == "must_review"].set_index("call_id")
    assert "long unannounced hold" in must.loc[f"{night}-A1-00", "reasons_en"]
