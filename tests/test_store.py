"""The history store on real SQLite and a real PostgreSQL server (.ci/run starts one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from speechqa import store as history
from speechqa.calls import CallResult, CallSentiment, Compliance, Event, Recording, RoleSentiment, RuleResult
from speechqa.store import StoreError
from tests.conftest import turn

POSTGRES = os.environ.get("SPEECHQA_TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "history" / "qa.db")
    if not POSTGRES:
        if os.environ.get("SPEECHQA_REQUIRE_POSTGRES") or os.environ.get("CI"):
            pytest.fail("SPEECHQA_TEST_POSTGRES_URL is not set but PostgreSQL tests are required (.ci/run)")
        pytest.skip("no PostgreSQL server: set SPEECHQA_TEST_POSTGRES_URL (.ci/postgres.sh starts one)")
    engine = sa.create_engine(history._url(POSTGRES))
    with engine.begin() as conn:  # each test starts from an empty database
        history.META.drop_all(conn)
    engine.dispose()
    return POSTGRES


def result(call_id: str, agent="A1", score=80.0, failed=("greeting",), **meta) -> CallResult:
    items = [RuleResult(call_id, "greeting", "fail" if "greeting" in failed else "pass", 0.0, 15.0,
                        f"{call_id}-agent-0001", 0.5, 2.0, "喂", None, "no 欢迎致电"),
             RuleResult(call_id, "thanks", "fail" if "thanks" in failed else "pass", 10.0, 10.0)]
    rec = Recording(call_id, Path(f"/calls/{call_id}.wav"),
                    meta=tuple({"agent_id": agent, "team": "T1", "customer_tier": "VIP", **meta}.items()))
    return CallResult(rec, 60.0, 2, (turn(0.5, 2.0, "喂", call_id=call_id),), 1.0, True, "0" * 64,
                      events=(Event(call_id, "escalation", "customer", 5, 8, "regulator"),),
                      sentiment=CallSentiment(customer=RoleSentiment(0.2, 0.6)),
                      metrics=(("n_interruptions_agent", 1), ("hold_s", 0.0)),
                      compliance=Compliance(score, False, tuple(items), "card 1", "f" * 64))


def count(store, table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())


def test_schema_is_versioned_and_reopening_is_a_no_op(db):
    store = history.open_store(db)
    assert history.current_version(store) == history.SCHEMA_VERSION
    again = history.open_store(db)
    assert count(again, history.schema_version) == len(history.MIGRATIONS)


def test_a_store_from_a_newer_speechqa_is_refused(db):
    store = history.open_store(db)
    with store.engine.begin() as conn:
        conn.execute(history.schema_version.insert().values(version=999, applied_at="x", description="future"))
    with pytest.raises(StoreError, match="schema version 999, newer than this speechqa"):
        history.open_store(db)


def test_saving_a_night_twice_updates_and_never_duplicates(db):
    store = history.open_store(db)
    assert history.save_calls(store, "2026-11-22", [result("c1"), result("c2", agent="A2")]) == 2
    history.save_calls(store, "2026-11-22", [result("c1", score=95.0, failed=())])
    assert count(store, history.calls) == 2 and count(store, history.rule_results) == 4
    calls = history.calls_frame(store).set_index("call_id")
    assert calls.loc["c1", "compliance_score"] == 95.0 and calls.loc["c1", "failed_items"] == ""
    assert calls.loc["c2", "escalations"] == "regulator" and calls.loc["c2", "customer_tier"] == "VIP"
    assert '"n_interruptions_agent": 1' in calls.loc["c2", "metrics"]
    assert history.calls_frame(store, since="2026-11-23").empty


def test_samples_replace_their_night_and_count_per_agent(db):
    store = history.open_store(db)
    rows = [{"call_id": "c1", "agent_id": "A1", "layer": "risk", "priority": 51.5, "reviewer": "r1"},
            {"call_id": "c2", "agent_id": "A1", "layer": "floor", "priority": 20.0, "reviewer": "r2"}]
    history.save_samples(store, "2026-11-22", 7, rows)
    history.save_samples(store, "2026-11-22", 7, rows)
    history.save_samples(store, "2026-11-23", 8, [{"call_id": "c3", "agent_id": "A2", "layer": "floor"}])
    assert count(store, history.samples) == 3
    assert history.sampled_call_ids(store) == {"c1", "c2", "c3"}
    assert history.review_counts(store, "2026-11-22", "2026-11-22") == {"A1": 2}
    assert set(history.samples_frame(store, until="2026-11-22").reviewer) == {"r1", "r2"}
    history.save_samples(store, "2026-11-22", 7, rows[:1])
    assert history.sampled_call_ids(store) == {"c1", "c3"}
    # another batch of the same night keeps this one's samples
    history.save_samples(store, "2026-11-22", 7, [{"call_id": "c9", "agent_id": "A9"}], batch=["c9", "c8"])
    assert history.sampled_call_ids(store) == {"c1", "c3", "c9"}


def test_reviews_import_and_rule_precision(db):
    store = history.open_store(db)
    history.save_calls(store, "2026-11-22", [result("c1"), result("c2", failed=("greeting", "thanks"))])
    calls_n, rules_n = history.import_reviews(store, [
        {"call_id": "c1", "reviewer": "r1", "score": "70", "verdict": "agree"},
        {"call_id": "c1", "item_id": "greeting", "reviewer": "r1", "verdict": "correct"},
        {"call_id": "c2", "item_id": "greeting", "reviewer": "r1", "verdict": "incorrect"},
        {"call_id": "c2", "item_id": "thanks", "reviewer": "r1", "verdict": "correct"},
    ])
    assert (calls_n, rules_n) == (1, 3)
    history.import_reviews(store, [{"call_id": "c1", "reviewer": "r1", "score": "75", "verdict": "disagree"}])
    assert count(store, history.call_reviews) == 1
    table = history.rule_precision(store).set_index("item_id")
    assert table.loc["greeting", "reviewed"] == 2 and table.loc["greeting", "precision"] == 0.5
    assert table.loc["thanks", "precision"] == 1.0


@pytest.mark.parametrize(("row", "message"), [
    ({"call_id": "nope", "reviewer": "r", "verdict": "agree"}, "review row 2: call_id 'nope' is not a call"),
    ({"call_id": "c1", "reviewer": "r", "verdict": "maybe"}, "review row 2: verdict must be agree or disagree"),
    ({"call_id": "c1", "reviewer": "r", "verdict": "agree", "score": "120"}, "score must be from 0 to 100"),
    ({"call_id": "c1", "reviewer": "", "verdict": "agree"}, "review row 2: reviewer is empty"),
    ({"call_id": "c1", "item_id": "zzz", "reviewer": "r", "verdict": "correct"}, "item_id 'zzz' has no result"),
])
def test_a_bad_review_row_is_refused_and_nothing_is_written(tmp_path, row, message):
    store = history.open_store(str(tmp_path / "qa.db"))
    history.save_calls(store, "2026-11-22", [result("c1")])
    with pytest.raises(StoreError, match=message):
        history.import_reviews(store, [{"call_id": "c1", "reviewer": "ok", "verdict": "agree"}, row])
    assert count(store, history.call_reviews) == 0
