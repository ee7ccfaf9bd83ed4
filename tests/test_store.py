"""The history store on real SQLite and a real PostgreSQL server (.ci/run starts one).

PostgreSQL tests need SPEECHQA_TEST_POSTGRES_URL; without it they are skipped, unless CI or
SPEECHQA_REQUIRE_POSTGRES is set, when they fail. Each PostgreSQL test works in a schema of its
own, dropped afterwards, so runs sharing a server do not meet.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from speechqa import store as history
from speechqa.calls import CallResult, CallSentiment, Compliance, Event, Recording, RoleSentiment, RuleResult
from speechqa.store import StoreError
from tests.conftest import turn

NIGHT = "2026-11-22"


def _postgres_server() -> str:
    url = os.environ.get("SPEECHQA_TEST_POSTGRES_URL", "")
    if not url:
        if os.environ.get("SPEECHQA_REQUIRE_POSTGRES") or os.environ.get("CI"):
            pytest.fail("SPEECHQA_TEST_POSTGRES_URL is not set but the PostgreSQL tests are required "
                        "(CI or SPEECHQA_REQUIRE_POSTGRES): start a server with .ci/postgres.sh")
        pytest.skip("no PostgreSQL server: set SPEECHQA_TEST_POSTGRES_URL (.ci/postgres.sh starts one)")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A URL for an empty store: a SQLite file in a folder that does not exist yet, or a fresh
    PostgreSQL schema (through search_path)."""
    if request.param == "sqlite":
        yield str(tmp_path / "history" / "qa.db")
        return
    server = history._url(_postgres_server())
    schema = f"speechqa_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    try:
        yield sa.make_url(server).update_query_dict({"options": f"-csearch_path={schema}"}) \
            .render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


@pytest.fixture
def reopen(db):
    """Open the store (again); every store opened is closed after the test."""
    opened: list[history.Store] = []

    def open_(url: str = db) -> history.Store:
        opened.append(history.open_store(url))
        return opened[-1]

    yield open_
    for s in opened:
        history.close_store(s)


@pytest.fixture
def store(reopen) -> history.Store:
    return reopen()


def result(call_id: str, agent="A1", score=80.0, failed=("greeting",), items=("greeting", "thanks"),
           hold_s=0.0, **meta) -> CallResult:
    rules = {
        "greeting": RuleResult(call_id, "greeting", "fail" if "greeting" in failed else "pass", 0.0, 15.0,
                               f"{call_id}-agent-0001", 0.5, 2.0, "喂", None, "no 欢迎致电"),
        "thanks": RuleResult(call_id, "thanks", "fail" if "thanks" in failed else "pass", 10.0, 10.0),
    }
    rec = Recording(call_id, Path(f"/calls/{call_id}.wav"),
                    meta=tuple({"agent_id": agent, "team": "T1", "customer_tier": "VIP", **meta}.items()))
    return CallResult(rec, 60.0, 2, (turn(0.5, 2.0, "喂", call_id=call_id),), 1.0, True, "0" * 64,
                      events=(Event(call_id, "escalation", "customer", 5, 8, "regulator"),
                              Event(call_id, "escalation", "customer", 9, 10, "complaint"),
                              Event(call_id, "hold", "both", 20, 30)),
                      sentiment=CallSentiment(customer=RoleSentiment(0.2, 0.6), trajectory="improved"),
                      metrics=(("n_interruptions_agent", 1), ("hold_s", hold_s), ("longest_silence_s", 4.5),
                               ("rate_cpm_agent", float("nan"))),
                      compliance=Compliance(score, False, tuple(rules[i] for i in items), "card 1", "f" * 64))


def count(store, table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())


def versions(store) -> list[tuple[int, str]]:
    with store.engine.connect() as conn:
        query = sa.select(history.schema_version.c.version, history.schema_version.c.applied_at)
        return [tuple(r) for r in conn.execute(query.order_by(history.schema_version.c.version))]


def columns(engine: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


# --- opening, schema and migrations ---------------------------------------------------------


def test_a_new_store_has_every_migration_and_the_tables_the_code_expects(store):
    assert history.current_version(store) == history.SCHEMA_VERSION == 6
    assert [v for v, _ in versions(store)] == [v for v, _, _ in history.MIGRATIONS]
    # the migrations, replayed from version 1, build exactly the tables the queries use
    for table in history.META.sorted_tables:
        assert columns(store.engine, table.name) == {c.name for c in table.columns}, table.name


def test_reopening_is_a_no_op_and_keeps_the_data(store, reopen, db):
    history.save_calls(store, NIGHT, [result("c1")])
    before = versions(store)
    again = reopen()
    assert versions(again) == before
    assert list(history.calls_frame(again).call_id) == ["c1"]


def test_a_version_1_store_is_upgraded_and_keeps_its_calls(db, reopen):
    old = history._engine(history._url(db))
    history._migrate(old, upto=1)
    assert "hold_s" not in columns(old, "calls")
    with old.begin() as conn:
        conn.execute(history.calls.insert().values(  # only version 1's columns
            call_id="old1", night=NIGHT, metrics='{"hold_s": 12.5, "n_interruptions_agent": 3}'))
    old.dispose()

    store = reopen()
    assert history.current_version(store) == 6
    row = history.calls_frame(store).iloc[0]
    assert (row.call_id, row.hold_s, row.n_interruptions_agent) == ("old1", 12.5, 3)
    assert row.longest_silence_s is None or row.longest_silence_s != row.longest_silence_s  # NULL


def test_a_failed_migration_leaves_the_store_as_it_was(db, reopen, monkeypatch):
    old = history._engine(history._url(db))
    history._migrate(old, upto=1)
    old.dispose()

    def broken(conn):
        sa.Table("scratch", sa.MetaData(), sa.Column("x", sa.Integer)).create(conn)
        history._add_columns(conn, history.calls, ["hold_s"])  # added by version 2 already: fails

    monkeypatch.setattr(history, "MIGRATIONS", (*history.MIGRATIONS, (6, "broken", broken)))
    monkeypatch.setattr(history, "SCHEMA_VERSION", 6)
    with pytest.raises(StoreError, match=r"cannot open the history store \(.*hold_s"):
        reopen()

    monkeypatch.undo()
    engine = history._engine(history._url(db))
    try:
        assert not sa.inspect(engine).has_table("scratch")
        assert "hold_s" not in columns(engine, "calls")  # version 2's ALTER TABLE was rolled back too
        with engine.connect() as conn:
            assert conn.execute(sa.select(history.schema_version.c.version)).scalars().all() == [1]
    finally:
        engine.dispose()


def test_a_store_from_a_newer_speechqa_is_refused(store, reopen, db):
    with store.engine.begin() as conn:
        conn.execute(history.schema_version.insert().values(version=999, applied_at="x", description="future"))
    with pytest.raises(StoreError) as err:
        reopen()
    where = history.describe_url(history._url(db))
    assert str(err.value) == (f"{where}: the store is at schema version 999, newer than this speechqa "
                              f"understands ({history.SCHEMA_VERSION}); upgrade speechqa")


def test_store_locations(tmp_path):
    assert history._url("postgresql://u:pw@db.example:5432/qa") == "postgresql+psycopg://u:pw@db.example:5432/qa"
    assert history._url("postgres://h/qa") == "postgresql+psycopg://h/qa"
    assert history._url(str(tmp_path / "a" / "qa.db")) == f"sqlite:///{tmp_path}/a/qa.db"
    assert history._url(f"sqlite:///{tmp_path}/b/c/qa.db") == f"sqlite:///{tmp_path}/b/c/qa.db"
    assert (tmp_path / "a").is_dir() and (tmp_path / "b" / "c").is_dir()
    assert history.describe_url("postgresql+psycopg://u:pw@h/qa") == "postgresql+psycopg://u:***@h/qa"
    with pytest.raises(StoreError, match=r"^the history store location is empty"):
        history._url(" ")


def test_an_unreachable_server_is_a_store_error():
    where = r"^postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/qa\?connect_timeout=2"
    with pytest.raises(StoreError, match=where + r": cannot open the history store \(OperationalError: "):
        history.open_store("postgresql://u:secret@127.0.0.1:1/qa?connect_timeout=2")


def test_a_sqlite_store_uses_wal(store):
    if store.dialect != "sqlite":
        pytest.skip("SQLite only")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


# --- calls ---------------------------------------------------------------------------------


def test_saving_a_night_twice_updates_and_never_duplicates(store):
    assert history.save_calls(store, NIGHT, [result("c1"), result("c2", agent="A2")]) == 2
    assert history.save_calls(store, NIGHT, [result("c1", score=95.0, failed=(), hold_s=31.0)]) == 1
    assert count(store, history.calls) == 2 and count(store, history.rule_results) == 4
    calls = history.calls_frame(store).set_index("call_id")
    c1, c2 = calls.loc["c1"], calls.loc["c2"]
    assert (c1.compliance_score, c1.failed_items, c1.hold_s) == (95.0, "", 31.0)
    assert (c2.agent_id, c2.team, c2.customer_tier, c2.agent_name, c2.queue) == ("A2", "T1", "VIP", None, None)
    assert c2.escalations == "complaint;regulator" and c2.failed_items == "greeting"
    assert c2.sentiment_trajectory == "improved"
    assert (c2.customer_sentiment_start, c2.customer_sentiment_end) == (0.2, 0.6)
    assert (c2.n_interruptions_agent, c2.longest_silence_s, c2.hold_s) == (1, 4.5, 0.0)
    assert (c2.duration_s, c2.path) == (60.0, "/calls/c2.wav")
    assert bool(c2.auto_fail) is False and c2.scorecard_sha256 == "f" * 64 and c2.night == NIGHT
    assert c2.metrics == ('{"hold_s": 0.0, "longest_silence_s": 4.5, "n_interruptions_agent": 1, '
                          '"rate_cpm_agent": null}')


def test_rule_results_are_replaced_per_call(store):
    history.save_calls(store, NIGHT, [result("c1"), result("c2")])
    history.save_calls(store, NIGHT, [result("c1", items=("thanks",), failed=("thanks",))])
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(history.rule_results).order_by("call_id", "item_id")).mappings().all()
    assert [(r["call_id"], r["item_id"], r["outcome"]) for r in rows] == [
        ("c1", "thanks", "fail"), ("c2", "greeting", "fail"), ("c2", "thanks", "pass")]
    greeting = rows[1]
    assert (greeting["evidence_turn_id"], greeting["evidence_start"], greeting["evidence_text"],
            greeting["match_score"], greeting["reason"]) == ("c2-agent-0001", 0.5, "喂", None, "no 欢迎致电")


def test_a_call_listed_twice_in_one_batch_is_stored_once(store):
    assert history.save_calls(store, NIGHT, [result("c1", score=10.0), result("c1", score=20.0)]) == 1
    assert list(history.calls_frame(store).compliance_score) == [20.0]


def test_calls_frame_filters_nights_inclusively(store):
    for night, call_id in (("2026-11-21", "a"), ("2026-11-22", "b"), ("2026-11-23", "c")):
        history.save_calls(store, night, [result(call_id)])
    assert list(history.calls_frame(store).call_id) == ["a", "b", "c"]
    assert list(history.calls_frame(store, since="2026-11-22").call_id) == ["b", "c"]
    assert list(history.calls_frame(store, until="2026-11-22").call_id) == ["a", "b"]
    assert list(history.calls_frame(store, "2026-11-22", "2026-11-22").call_id) == ["b"]
    assert history.calls_frame(store, since="2026-11-24").empty
    assert list(history.calls_frame(store).columns) == [c.name for c in history.calls.columns]


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: history.save_calls(s, "22/11/2026", []), "night '22/11/2026' is not a date YYYY-MM-DD"),
    (lambda s: history.calls_frame(s, since="2026-13-01"), "since '2026-13-01' is not a date YYYY-MM-DD"),
    (lambda s: history.review_counts(s, "2026-11-01", "soon"), "until 'soon' is not a date YYYY-MM-DD"),
])
def test_dates_are_checked(store, call, message):
    with pytest.raises(StoreError) as err:
        call(store)
    assert str(err.value) == message


# --- samples -------------------------------------------------------------------------------

ROWS = [{"call_id": "c1", "agent_id": "A1", "team": "T1", "layer": "risk", "priority": 51.5,
         "reasons_zh": "客户情绪差", "reasons_en": "negative customer", "evidence": "喂",
         "audio_path": "/a/c1.wav", "reviewer": "r1"},
        {"call_id": "c2", "agent_id": "A1", "layer": "floor", "priority": 20.0, "reviewer": "r2"}]


def test_resaving_a_night_with_the_same_seed_is_idempotent(store):
    assert history.save_samples(store, NIGHT, 7, ROWS) == 2
    first = history.samples_frame(store)
    assert history.save_samples(store, NIGHT, 7, ROWS) == 2
    again = history.samples_frame(store)
    assert count(store, history.samples) == 2
    assert again.equals(first)
    c1 = again.set_index("call_id").loc["c1"]
    assert (c1.night, c1.seed, c1.layer, c1.priority, c1.reasons_zh, c1.reviewer) == (
        NIGHT, 7, "risk", 51.5, "客户情绪差", "r1")


def test_samples_replace_their_night_and_count_per_agent(store):
    history.save_samples(store, NIGHT, 7, ROWS)
    history.save_samples(store, "2026-11-23", 8, [{"call_id": "c3", "agent_id": "A2", "layer": "floor"}])
    assert count(store, history.samples) == 3
    assert history.sampled_call_ids(store) == {"c1", "c2", "c3"}
    assert history.review_counts(store, NIGHT, NIGHT) == {"A1": 2}
    assert history.review_counts(store, NIGHT, "2026-11-30") == {"A1": 2, "A2": 1}
    assert set(history.samples_frame(store, until=NIGHT).reviewer) == {"r1", "r2"}
    assert list(history.samples_frame(store, since="2026-11-23").call_id) == ["c3"]
    history.save_samples(store, NIGHT, 7, ROWS[:1])  # a re-run that samples less
    assert history.sampled_call_ids(store) == {"c1", "c3"}
    # another batch of the same night keeps this one's samples
    history.save_samples(store, NIGHT, 7, [{"call_id": "c9", "agent_id": "A9"}], batch=["c9", "c8"])
    assert history.sampled_call_ids(store) == {"c1", "c3", "c9"}
    history.save_samples(store, NIGHT, 7, [], batch=["c9"])
    assert history.sampled_call_ids(store) == {"c1", "c3"}


def test_a_call_sampled_on_two_nights_is_one_id(store):
    history.save_samples(store, "2026-11-21", 1, ROWS[:1])
    history.save_samples(store, NIGHT, 2, ROWS)
    assert count(store, history.samples) == 3
    assert history.sampled_call_ids(store) == {"c1", "c2"}


# --- reviews -------------------------------------------------------------------------------


def test_reviews_import_and_rule_precision(store):
    history.save_calls(store, NIGHT, [result("c1"), result("c2", failed=("greeting", "thanks")),
                                      result("c3", failed=())])
    assert history.rule_precision(store).empty
    calls_n, rules_n = history.import_reviews(store, [
        {"call_id": "c1", "reviewer": "r1", "score": "70", "verdict": "agree"},
        {"call_id": "c2", "reviewer": "r1", "score": None, "verdict": "Disagree"},
        {"call_id": "c3", "reviewer": "r2", "score": 100, "verdict": "agree"},
        {"call_id": "c1", "item_id": "greeting", "reviewer": "r1", "verdict": "correct"},
        {"call_id": "c2", "item_id": "greeting", "reviewer": "r1", "verdict": "incorrect"},
        {"call_id": "c2", "item_id": "greeting", "reviewer": "r2", "verdict": "correct"},
        {"call_id": "c2", "item_id": "thanks", "reviewer": "r1", "verdict": "correct"},
        {"call_id": "c3", "item_id": "thanks", "reviewer": "r1", "verdict": "incorrect"},  # a pass: not counted
    ])
    assert (calls_n, rules_n) == (3, 5)
    table = history.rule_precision(store)
    assert list(table.columns) == ["item_id", "reviewed", "correct", "precision"]
    assert table.to_dict("records") == [
        {"item_id": "greeting", "reviewed": 3, "correct": 2, "precision": 0.667},
        {"item_id": "thanks", "reviewed": 1, "correct": 1, "precision": 1.0}]
    assert table.attrs == {"call_reviews": 3, "call_agree": 2, "call_agreement": 0.667}
    assert history.review_agreement(store) == (3, 2)

    # the same reviewer again: replaced, not added
    assert history.import_reviews(store, [
        {"call_id": "c2", "reviewer": "r1", "score": "75", "verdict": "agree"},
        {"call_id": "c2", "item_id": "greeting", "reviewer": "r1", "verdict": "correct"}]) == (1, 1)
    assert count(store, history.call_reviews) == 3 and count(store, history.rule_reviews) == 5
    assert history.rule_precision(store).set_index("item_id").loc["greeting", "precision"] == 1.0
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(history.call_reviews).where(history.call_reviews.c.call_id == "c2")).one()
    assert (row.score, row.verdict) == (75.0, "agree")


@pytest.mark.parametrize(("row", "message"), [
    ({"call_id": "nope", "reviewer": "r", "verdict": "agree"},
     "review row 2: call_id 'nope' is not a call in the store"),
    ({"reviewer": "r", "verdict": "agree"}, "review row 2: call_id is empty"),
    ({"call_id": "c1", "reviewer": "r", "verdict": "maybe"},
     "review row 2: verdict must be agree or disagree, got 'maybe'"),
    ({"call_id": "c1", "reviewer": "r"}, "review row 2: verdict must be agree or disagree, got ''"),
    ({"call_id": "c1", "reviewer": "r", "verdict": "agree", "score": "120"},
     "review row 2: score must be from 0 to 100, got 120"),
    ({"call_id": "c1", "reviewer": "r", "verdict": "agree", "score": "-1"},
     "review row 2: score must be from 0 to 100, got -1"),
    ({"call_id": "c1", "reviewer": "r", "verdict": "agree", "score": "good"},
     "review row 2: score must be a number from 0 to 100, got 'good'"),
    ({"call_id": "c1", "reviewer": " ", "verdict": "agree"}, "review row 2: reviewer is empty"),
    ({"call_id": "c1", "item_id": "zzz", "reviewer": "r", "verdict": "correct"},
     "review row 2: item_id 'zzz' has no result on call 'c1'"),
    ({"call_id": "c1", "item_id": "greeting", "reviewer": "r", "verdict": "agree"},
     "review row 2: verdict must be correct or incorrect, got 'agree'"),
])
def test_a_bad_review_row_is_refused_and_nothing_is_written(store, row, message):
    history.save_calls(store, NIGHT, [result("c1")])
    with pytest.raises(StoreError) as err:
        history.import_reviews(store, [{"call_id": "c1", "reviewer": "ok", "verdict": "agree"}, row])
    assert str(err.value) == message
    assert count(store, history.call_reviews) == 0 and count(store, history.rule_reviews) == 0


# --- night locks ----------------------------------------------------------------------------


def _held_by(store, **row):
    import socket

    values = {"night": NIGHT, "shard": "", "pid": os.getpid(), "host": socket.gethostname(),
              "started_at": "2026-11-22T23:00:00+00:00", "heartbeat_at": history._now(),
              "out": "/elsewhere"} | row
    with store.engine.begin() as conn:
        conn.execute(history.night_locks.insert().values(**values))


def test_a_night_held_by_a_live_run_is_refused_naming_the_holder(store):
    import socket

    from speechqa.errors import LockedError

    _held_by(store)  # this very process: alive
    with pytest.raises(LockedError) as err:
        history.lock_night(store, NIGHT, "/out")
    message = str(err.value)
    for part in (NIGHT, f"pid {os.getpid()}", socket.gethostname(), "2026-11-22T23:00:00+00:00", "/elsewhere"):
        assert part in message
    _held_by(store, night="2026-11-23", host="other-host")  # another host, heartbeat just now
    with pytest.raises(LockedError, match="other-host"):
        history.lock_night(store, "2026-11-23", "/out")


def test_a_stale_night_lock_is_taken_over_and_released_by_its_holder(store):
    import subprocess
    import sys
    from datetime import UTC, datetime, timedelta

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    _held_by(store, pid=int(gone.stdout))  # a run on this host that died (kill -9)
    lock = history.lock_night(store, NIGHT, "/out")
    assert lock["pid"] == os.getpid()
    old = (datetime.now(UTC) - timedelta(seconds=history.LOCK_STALE_S + 60)).isoformat(timespec="seconds")
    _held_by(store, night="2026-11-23", host="other-host", heartbeat_at=old)  # no heartbeat for hours
    other = history.lock_night(store, "2026-11-23", "/out")
    history.touch_night(store, other)
    history.unlock_night(store, lock)
    history.unlock_night(store, other)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(history.night_locks)).all() == []


def test_shards_of_a_night_run_together_but_never_beside_the_whole_night(store):
    from speechqa.errors import LockedError

    one = history.lock_night(store, NIGHT, "/out/1", shard="1of2")
    two = history.lock_night(store, NIGHT, "/out/2", shard="2of2")  # another shard: at the same time
    with pytest.raises(LockedError, match=r"shard 2of2 .*\(shard 2of2\): pid"):
        history.lock_night(store, NIGHT, "/out/again", shard="2of2")
    with pytest.raises(LockedError, match=rf"night {NIGHT} in .*\(shard 1of2\)"):
        history.lock_night(store, NIGHT, "/out/all")  # the whole night while its shards run
    history.unlock_night(store, one)
    history.unlock_night(store, two)
    whole = history.lock_night(store, NIGHT, "/out/all")
    with pytest.raises(LockedError, match=r"\(the whole night\)"):
        history.lock_night(store, NIGHT, "/out/1", shard="1of2")
    history.unlock_night(store, whole)


def test_agent_voices_come_from_earlier_nights_and_a_rerun_counts_a_call_once(store):
    history.enrol_voices(store, "2026-11-20", "m1", [("c1", "A1", 0.99, [1.0, 0.0]),
                                                     ("c2", "A1", 0.97, [0.0, 1.0])])
    history.enrol_voices(store, "2026-11-20", "m1", [("c1", "A1", 0.99, [1.0, 0.0])])  # the night run again
    history.enrol_voices(store, "2026-11-21", "m1", [("c3", "A1", 0.99, [-1.0, 0.0])])  # tonight's own call
    history.enrol_voices(store, "2026-11-20", "other-model", [("c4", "A2", 0.99, [1.0, 0.0])])
    prints = history.agent_voices(store, "m1", before="2026-11-21")
    assert set(prints) == {"A1"}  # another speaker model's vectors are not comparable
    assert prints["A1"] == pytest.approx((2 ** -0.5, 2 ** -0.5))  # c1 and c2 once each, not c3
    with sa.create_engine(store.url).connect() as conn:
        assert conn.execute(sa.text("select count(*) from voice_enrolments")).scalar() == 4
