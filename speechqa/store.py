"""The history store: every processed call, every night's QA sample, reviewers' verdicts.

SQLite by default (one file, ``[store] db``), PostgreSQL when the URL says so, through
SQLAlchemy Core: one set of table definitions, no hand-written SQL dialect. The schema is
versioned: ``schema_version`` records the migrations applied, and opening a store applies the
missing ones in one transaction (a store written by a newer speechqa is refused). Every write
is an upsert on a natural key, so re-running a night never duplicates rows; a night's sample
is replaced as a whole.

Writes are transactions. A SQLite file takes one writer at a time (WAL, busy timeout, and
``BEGIN IMMEDIATE`` for writes, so two processes queue instead of failing on a lock upgrade).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from speechqa.calls import CallResult
from speechqa.errors import SpeechQAError


class StoreError(SpeechQAError):
    """The history database cannot be opened, migrated, read or written."""


META = sa.MetaData()

# The tables as the newest migration leaves them. A migration that adds columns names them in
# LATER_COLUMNS, so that version 1 still creates the tables as they first shipped.
calls = sa.Table(
    "calls", META,
    sa.Column("call_id", sa.String(200), primary_key=True),
    sa.Column("night", sa.String(10), index=True),
    sa.Column("agent_id", sa.String(100), index=True),
    sa.Column("agent_name", sa.String(100)),
    sa.Column("team", sa.String(100)),
    sa.Column("agent_hire_date", sa.String(32)),
    sa.Column("customer_tier", sa.String(32)),
    sa.Column("started_at", sa.String(40)),
    sa.Column("queue", sa.String(100)),
    sa.Column("direction", sa.String(32)),
    sa.Column("path", sa.Text),
    sa.Column("duration_s", sa.Float),
    sa.Column("compliance_score", sa.Float),
    sa.Column("auto_fail", sa.Boolean),
    sa.Column("failed_items", sa.Text),  # ';'-joined item ids
    sa.Column("customer_sentiment_start", sa.Float),
    sa.Column("customer_sentiment_end", sa.Float),
    sa.Column("sentiment_trajectory", sa.String(16)),
    sa.Column("escalations", sa.Text),  # ';'-joined escalation kinds
    sa.Column("metrics", sa.Text),  # JSON of the call's metrics
    sa.Column("scorecard_sha256", sa.String(64)),
    sa.Column("updated_at", sa.String(40)),
    # version 2: the metrics supervisors filter on, as columns
    sa.Column("n_interruptions_agent", sa.Integer),
    sa.Column("longest_silence_s", sa.Float),
    sa.Column("hold_s", sa.Float),
    # version 4: what sampling a whole night from the store needs
    sa.Column("language", sa.String(16)),
    sa.Column("flags", sa.Text),  # ';'-joined call flags (calls.CALL_FLAGS)
    sa.Column("escalation_times", sa.Text),  # JSON [[kind, start_s], ...]: the evidence of each
)
rule_results = sa.Table(
    "rule_results", META,
    sa.Column("call_id", sa.String(200), primary_key=True),
    sa.Column("item_id", sa.String(100), primary_key=True),
    sa.Column("outcome", sa.String(8)),  # pass | fail | na
    sa.Column("points", sa.Float),
    sa.Column("max_points", sa.Float),
    sa.Column("evidence_turn_id", sa.String(240)),
    sa.Column("evidence_start", sa.Float),
    sa.Column("evidence_end", sa.Float),
    sa.Column("evidence_text", sa.Text),
    sa.Column("match_score", sa.Float),
    sa.Column("reason", sa.Text),
)
samples = sa.Table(
    "samples", META,
    sa.Column("night", sa.String(10), primary_key=True),
    sa.Column("call_id", sa.String(200), primary_key=True),
    sa.Column("agent_id", sa.String(100), index=True),
    sa.Column("team", sa.String(100)),
    sa.Column("layer", sa.String(32)),
    sa.Column("priority", sa.Float),
    sa.Column("reasons_zh", sa.Text),
    sa.Column("reasons_en", sa.Text),
    sa.Column("evidence", sa.Text),
    sa.Column("audio_path", sa.Text),
    sa.Column("reviewer", sa.String(100)),  # the assignment
    sa.Column("seed", sa.BigInteger),
)
call_reviews = sa.Table(
    "call_reviews", META,
    sa.Column("call_id", sa.String(200), primary_key=True),
    sa.Column("reviewer", sa.String(100), primary_key=True),
    sa.Column("score", sa.Float),
    sa.Column("verdict", sa.String(16)),  # agree | disagree
    sa.Column("imported_at", sa.String(40)),
    sa.Column("comment", sa.Text),  # v5: the reviewer's note on the call
)
rule_reviews = sa.Table(
    "rule_reviews", META,
    sa.Column("call_id", sa.String(200), primary_key=True),
    sa.Column("item_id", sa.String(100), primary_key=True),
    sa.Column("reviewer", sa.String(100), primary_key=True),
    sa.Column("verdict", sa.String(16)),  # correct | incorrect
    sa.Column("imported_at", sa.String(40)),
)
night_locks = sa.Table(  # the runs recording a night now: one per night, or one per shard (lock_night)
    "night_locks", META,
    sa.Column("night", sa.String(10), primary_key=True),
    sa.Column("shard", sa.String(100), primary_key=True),  # "": the whole night
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("started_at", sa.String(40)),
    sa.Column("heartbeat_at", sa.String(40)),
    sa.Column("out", sa.Text),
)
voice_enrolments = sa.Table(  # v6: a named agent's voice, one sure mono call at a time (speechqa/roles.py)
    "voice_enrolments", META,
    sa.Column("call_id", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(64), primary_key=True),  # the speaker models' sha256
    sa.Column("agent_id", sa.String(100), index=True),
    sa.Column("night", sa.String(10), index=True),
    sa.Column("confidence", sa.Float),
    sa.Column("vector", sa.Text),  # JSON list of floats: the agent voice's unit centroid
    sa.Column("recorded_at", sa.String(40)),
)
schema_version = sa.Table(
    "schema_version", META,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(40)),
    sa.Column("description", sa.Text),
)
DATA_TABLES = (calls, rule_results, samples, call_reviews, rule_reviews)  # as first shipped (v1)
V2_CALL_COLUMNS = ("n_interruptions_agent", "longest_silence_s", "hold_s")
V4_CALL_COLUMNS = ("language", "flags", "escalation_times")
V5_REVIEW_COLUMNS = ("comment",)
LATER_COLUMNS = {"calls": V2_CALL_COLUMNS + V4_CALL_COLUMNS, "call_reviews": V5_REVIEW_COLUMNS}


def _as_first_shipped(table: sa.Table) -> sa.Table:
    later = LATER_COLUMNS.get(table.name, ())
    cols = [sa.Column(c.name, c.type, primary_key=c.primary_key, index=c.index)
            for c in table.columns if c.name not in later]
    return sa.Table(table.name, sa.MetaData(), *cols)


def _add_columns(conn: sa.Connection, table: sa.Table, names: Sequence[str]) -> None:
    # ALTER TABLE ... ADD COLUMN reads the same in SQLite and PostgreSQL; the column's type is
    # compiled by SQLAlchemy for the dialect at hand.
    name = conn.dialect.identifier_preparer.format_table(table)
    for column in names:
        ddl = sa.schema.CreateColumn(table.c[column]).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {ddl}")


def _v1(conn: sa.Connection) -> None:
    for table in DATA_TABLES:
        _as_first_shipped(table).create(conn)


def _v2(conn: sa.Connection) -> None:
    _add_columns(conn, calls, V2_CALL_COLUMNS)
    metrics = sa.select(calls.c.call_id, calls.c.metrics).where(calls.c.metrics.is_not(None))
    updates = []
    for call_id, text in conn.execute(metrics).all():
        values = json.loads(text or "{}")
        updates.append({"key": call_id, **{c: _clean(values.get(c)) for c in V2_CALL_COLUMNS}})
    if updates:
        conn.execute(calls.update().where(calls.c.call_id == sa.bindparam("key")), updates)


def _v3(conn: sa.Connection) -> None:
    night_locks.create(conn)


def _v4(conn: sa.Connection) -> None:
    _add_columns(conn, calls, V4_CALL_COLUMNS)  # calls recorded before stay NULL: rerun a night to fill


def _v5(conn: sa.Connection) -> None:
    _add_columns(conn, call_reviews, V5_REVIEW_COLUMNS)


def _v6(conn: sa.Connection) -> None:
    voice_enrolments.create(conn)


# Ordered migrations: (version, description, step). Add new ones at the end; never edit old ones.
MIGRATIONS: tuple[tuple[int, str, Callable[[sa.Connection], None]], ...] = (
    (1, "calls, rule results, samples, reviews", _v1),
    (2, "calls: n_interruptions_agent, longest_silence_s, hold_s as columns", _v2),
    (3, "night_locks: the run recording a night", _v3),
    (4, "calls: language, flags, escalation_times (sampling a whole night from the store)", _v4),
    (5, "call_reviews: comment (the report's in-page review)", _v5),
    (6, "voice_enrolments: named agents' voices from sure mono calls", _v6),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
_PG_MIGRATION_LOCK = 0x5EEC4A  # advisory lock key: one process migrates a PostgreSQL store at a time
_PG_NIGHT_LOCK = 0x5EEC4B  # ... and one run takes a night's lock at a time


@dataclass(frozen=True)
class Store:
    engine: sa.Engine
    url: str

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


def _url(db: str) -> str:
    """The SQLAlchemy URL for ``db``; creates a SQLite file's folder."""
    db = db.strip()
    if not db:
        raise StoreError("the history store location is empty: set [store] db or pass --db")
    if db.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    if "://" not in db:
        url = sa.URL.create("sqlite", database=str(Path(db).expanduser()))
    else:
        try:
            url = sa.make_url(db)
        except sa.exc.ArgumentError:
            raise StoreError(f"{db!r} is not a database URL (sqlite:///FILE or postgresql://...)") from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:"):
        try:
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{url.database}: cannot create the history store's folder ({exc})") from None
    return url.render_as_string(hide_password=False)


def describe_url(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def describe(store: Store) -> str:
    """The store's URL without its password, for logs and run.json."""
    return describe_url(store.url)


def _engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name not in ("sqlite", "postgresql"):
        engine.dispose()
        raise StoreError(f"{describe_url(url)}: unsupported database {engine.dialect.name!r}: use SQLite or "
                         "PostgreSQL")
    if engine.dialect.name == "sqlite":
        # pysqlite neither begins a transaction before DDL nor lets SQLAlchemy choose BEGIN
        # IMMEDIATE; take transactions over from the driver, as SQLAlchemy's SQLite docs show.
        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")
    return engine


@contextmanager
def _errors(where: str, doing: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        first = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).strip().splitlines()
        raise StoreError(f"{where}: cannot {doing} ({exc.__class__.__name__}: "
                         f"{first[0] if first else ''})") from None


@contextmanager
def _write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One write transaction (BEGIN IMMEDIATE on SQLite)."""
    with engine.connect() as conn:
        conn = conn.execution_options(write=True)
        with conn.begin():
            yield conn


def open_store(db: str) -> Store:
    """Open the store at ``db`` (a file path, ``sqlite:///FILE`` or ``postgresql://...``),
    creating it or upgrading its schema to this speechqa's version."""
    url = _url(db)
    with _errors(describe_url(url), "open the history store"):
        engine = _engine(url)
        try:
            _migrate(engine)
        except BaseException:
            engine.dispose()
            raise
    return Store(engine, url)


def close_store(store: Store) -> None:
    """Close the store's connections (a later call reopens them)."""
    store.engine.dispose()


def _migrate(engine: sa.Engine, upto: int | None = None) -> None:
    """Apply the missing migrations, up to ``upto`` (tests build old stores with it), in one
    transaction: a failed step leaves the store as it was."""
    with _write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        schema_version.create(conn, checkfirst=True)
        applied = {row.version for row in conn.execute(sa.select(schema_version.c.version))}
        newest = max(applied, default=0)
        if newest > SCHEMA_VERSION:
            raise StoreError(f"{describe_url(str(engine.url))}: the store is at schema version {newest}, newer "
                             f"than this speechqa understands ({SCHEMA_VERSION}); upgrade speechqa")
        for version, description, step in MIGRATIONS:
            if upto is not None and version > upto:
                break
            if version not in applied:
                step(conn)
                conn.execute(schema_version.insert().values(
                    version=version, applied_at=_now(), description=description))


def current_version(store: Store) -> int:
    with _errors(describe(store), "read the schema version"), store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _night(value: str, what: str = "night") -> str:
    text = str(value).strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise StoreError(f"{what} {value!r} is not a date YYYY-MM-DD")


def _upsert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update on the primary key, in the dialect's own syntax (SQLAlchemy writes it)."""
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    keys = [c.name for c in table.primary_key.columns]
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})
    conn.execute(stmt, list(rows))


def _clean(value: Any) -> Any:
    """A plain Python value for the database: NaN, infinities and pandas' NA become NULL."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _call_row(night: str, r: CallResult, stamp: str) -> dict[str, Any]:
    meta = r.recording.meta_dict
    metrics = {k: _clean(v) for k, v in r.metrics}
    if r.roles is not None and r.roles.confidence is not None:  # a diarised mono call's (speechqa/roles.py)
        metrics["role_confidence"] = _clean(r.roles.confidence)
    comp = r.compliance
    kinds = sorted({e.detail for e in r.events if e.type == "escalation" and e.detail})
    return {
        "call_id": r.recording.call_id, "night": night,
        **{k: meta.get(k) for k in ("agent_id", "agent_name", "team", "agent_hire_date", "customer_tier",
                                    "started_at", "queue", "direction")},
        "path": str(r.recording.path), "duration_s": _clean(r.duration_s),
        "compliance_score": _clean(comp.score) if comp else None, "auto_fail": comp.auto_fail if comp else None,
        "failed_items": ";".join(comp.failed_items) if comp else None,
        "customer_sentiment_start": _clean(r.sentiment.customer.start),
        "customer_sentiment_end": _clean(r.sentiment.customer.end),
        "sentiment_trajectory": r.sentiment.trajectory, "escalations": ";".join(kinds),
        "metrics": json.dumps(metrics, ensure_ascii=False, sort_keys=True),
        "scorecard_sha256": comp.scorecard_sha256 if comp else None, "updated_at": stamp,
        **{c: metrics.get(c) for c in V2_CALL_COLUMNS},
        "language": r.language, "flags": ";".join(r.flags),
        "escalation_times": json.dumps([[e.detail, e.start] for e in r.events if e.type == "escalation"],
                                       ensure_ascii=False),
    }


def save_calls(store: Store, night: str, results: Sequence[CallResult]) -> int:
    """Record processed calls and their rule results. A call seen again is updated, never
    duplicated, and its rule results are replaced (an item dropped from the scorecard goes)."""
    night = _night(night)
    stamp = _now()
    by_call = {r.recording.call_id: r for r in results}  # a call listed twice: the last one wins
    call_rows = [_call_row(night, r, stamp) for r in by_call.values()]
    rule_rows = list({
        (call_id, rr.item_id): {
            "call_id": call_id, "item_id": rr.item_id, "outcome": rr.outcome, "points": _clean(rr.points),
            "max_points": _clean(rr.max_points), "evidence_turn_id": rr.evidence_turn_id,
            "evidence_start": _clean(rr.evidence_start), "evidence_end": _clean(rr.evidence_end),
            "evidence_text": rr.evidence_text, "match_score": _clean(rr.match_score), "reason": rr.reason,
        }
        for call_id, r in by_call.items() for rr in (r.compliance.results if r.compliance else ())
    }.values())
    with _errors(describe(store), "record calls"), _write(store.engine) as conn:
        _upsert(conn, calls, call_rows)
        for ids in _chunks(list(by_call)):
            conn.execute(rule_results.delete().where(rule_results.c.call_id.in_(ids)))
        _upsert(conn, rule_results, rule_rows)
    return len(call_rows)


VOICE_CALLS = 20  # an agent's voiceprint is the mean of their latest this-many enrolled calls


def enrol_voices(store: Store, night: str, model: str,
                 rows: Sequence[tuple[str, str, float, Sequence[float]]]) -> int:
    """Record agents' voices: (call_id, agent_id, confidence, unit vector) of sure mono calls.
    A call seen again replaces its row, so a rerun of a night never counts a call twice."""
    night = _night(night)
    stamp = _now()
    values = [{"call_id": call_id, "model": model, "agent_id": agent, "night": night, "confidence": conf,
               "vector": json.dumps([round(float(v), 6) for v in vector]), "recorded_at": stamp}
              for call_id, agent, conf, vector in rows]
    if values:
        with _errors(describe(store), "record agent voices"), _write(store.engine) as conn:
            _upsert(conn, voice_enrolments, values)
    return len(values)


def agent_voices(store: Store, model: str, before: str) -> dict[str, tuple[float, ...]]:
    """Each enrolled agent's voiceprint for the speaker models ``model``: the unit mean of their
    latest VOICE_CALLS calls from nights before ``before`` (tonight's calls never teach
    tonight's, so a rerun of a night decides as the first run did)."""
    query = (sa.select(voice_enrolments.c.agent_id, voice_enrolments.c.vector)
             .where(voice_enrolments.c.model == model, voice_enrolments.c.night < _night(before))
             .order_by(voice_enrolments.c.agent_id, voice_enrolments.c.night.desc(),
                       voice_enrolments.c.call_id))
    with _errors(describe(store), "read agent voices"), store.engine.connect() as conn:
        found: dict[str, list[list[float]]] = {}
        for agent, vector in conn.execute(query):
            kept = found.setdefault(agent, [])
            if len(kept) < VOICE_CALLS:
                kept.append(json.loads(vector))
    prints = {}
    for agent, vectors in found.items():
        mean = [sum(col) / len(col) for col in zip(*vectors, strict=True)]
        norm = sum(v * v for v in mean) ** 0.5 or 1.0
        prints[agent] = tuple(v / norm for v in mean)
    return prints


LOCK_STALE_S = 2 * 3600  # a lock held from another host with no heartbeat this long is taken over


def lock_night(store: Store, night: str, out: str, shard: str = "") -> dict[str, Any]:
    """Take the night (or one ``shard`` of it) for this process. A run of the whole night
    conflicts with any other run of that night in the store; a shard's run with a run of the
    whole night or of the same shard. A conflict is refused with LockedError naming the holder
    (pid, host, start, its OUT). A lock whose process is gone (this host), or whose heartbeat
    stopped LOCK_STALE_S ago (another host), is taken over. Returns the lock row; release it
    with :func:`unlock_night`."""
    from speechqa.errors import LockedError
    from speechqa.files import process_alive

    night = _night(night)
    host = socket.gethostname()
    me: dict[str, Any] = {"night": night, "shard": shard, "pid": os.getpid(), "host": host,
                          "started_at": _now(), "heartbeat_at": _now(), "out": out}
    c = night_locks.c
    where = (c.night == night) if not shard else (c.night == night) & c.shard.in_(["", shard])
    what = f"night {night}" + (f" shard {shard}" if shard else "")
    with _errors(describe(store), "lock the night"):
        for _ in range(3):
            try:
                with _write(store.engine) as conn:
                    if conn.dialect.name == "postgresql":  # two shards' runs check and insert in turn
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_NIGHT_LOCK)))
                    for held in conn.execute(sa.select(night_locks).where(where)).mappings().all():
                        if not _stale(dict(held), host, process_alive):
                            theirs = f" (shard {held['shard']})" if held["shard"] else " (the whole night)"
                            raise LockedError(
                                f"{what} in {describe(store)}: another run is recording it{theirs}: pid "
                                f"{held['pid']} on {held['host']}, started {held['started_at']}, writing "
                                f"{held['out']}; wait for it to finish")
                        stale = (c.night == night) & (c.shard == held["shard"])
                        conn.execute(night_locks.delete().where(stale))
                    conn.execute(night_locks.insert().values(**me))
                return me
            except sa.exc.IntegrityError:  # another run took it between our read and our insert
                continue
    raise LockedError(f"{what} in {describe(store)}: cannot take the night's lock")


def _stale(held: dict[str, Any], host: str, alive: Callable[[int], bool]) -> bool:
    if held["host"] == host:
        return not alive(int(held["pid"]))
    try:
        beat = datetime.fromisoformat(str(held["heartbeat_at"]))
    except ValueError:
        return True
    return (datetime.now(UTC) - beat).total_seconds() > LOCK_STALE_S


def touch_night(store: Store, lock: dict[str, Any]) -> None:
    """The holder's heartbeat: the lock is alive while it runs."""
    with _errors(describe(store), "lock the night"), _write(store.engine) as conn:
        conn.execute(night_locks.update().where(_mine(lock)).values(heartbeat_at=_now()))


def unlock_night(store: Store, lock: dict[str, Any]) -> None:
    with _errors(describe(store), "unlock the night"), _write(store.engine) as conn:
        conn.execute(night_locks.delete().where(_mine(lock)))


def _mine(lock: dict[str, Any]) -> Any:
    c = night_locks.c
    return (c.night == lock["night"]) & (c.shard == lock["shard"]) & (c.pid == lock["pid"]) & (
        c.host == lock["host"]) & (c.started_at == lock["started_at"])


def _frame(store: Store, table: sa.Table, since: str | None, until: str | None) -> pd.DataFrame:
    query = sa.select(table).order_by(table.c.night, table.c.call_id)
    if since:
        query = query.where(table.c.night >= _night(since, "since"))
    if until:
        query = query.where(table.c.night <= _night(until, "until"))
    with _errors(describe(store), f"read {table.name}"), store.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in table.columns])


def night_tables(store: Store, night: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A night as the store holds it, from every run (shard) that recorded it: its calls (with
    their metrics as columns, as in the calls table), their rule results and their escalation
    events, in the shapes the QA sampler and the scorecards read. Calls in call_id order."""
    night = _night(night)
    with _errors(describe(store), "read the night"), store.engine.connect() as conn:
        query = sa.select(calls).where(calls.c.night == night).order_by(calls.c.call_id)
        rows = conn.execute(query).mappings().all()
        ids = [r["call_id"] for r in rows]
        rules: list[dict[str, Any]] = []
        for chunk in _chunks(ids):
            of_chunk = sa.select(rule_results).where(rule_results.c.call_id.in_(chunk))
            rules.extend(dict(r) for r in conn.execute(of_chunk).mappings())
    records: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for r in rows:
        record = dict(r)
        for key, value in json.loads(record.pop("metrics") or "{}").items():
            record.setdefault(key, value)
        record["status"] = "ok"
        record["escalated"] = bool(record.get("escalations"))
        records.append(record)
        for kind, start in json.loads(r["escalation_times"] or "[]"):
            events.append({"call_id": r["call_id"], "type": "escalation", "detail": kind, "start": start,
                           "end": start})
    frame = pd.DataFrame(records)
    rule_columns = [c.name for c in rule_results.columns]
    rules_frame = pd.DataFrame(rules, columns=rule_columns).sort_values(["call_id", "item_id"], kind="stable")
    events_frame = pd.DataFrame(events, columns=["call_id", "type", "detail", "start", "end"])
    return frame, rules_frame.reset_index(drop=True), events_frame


def calls_frame(store: Store, since: str | None = None, until: str | None = None) -> pd.DataFrame:
    """The calls recorded for nights from ``since`` to ``until`` (both included, both optional)."""
    return _frame(store, calls, since, until)


def samples_frame(store: Store, since: str | None = None, until: str | None = None) -> pd.DataFrame:
    """The samples of nights from ``since`` to ``until`` (both included, both optional)."""
    return _frame(store, samples, since, until)


def sampled_call_ids(store: Store) -> set[str]:
    """Every call ever sampled, any night."""
    with _errors(describe(store), "read samples"), store.engine.connect() as conn:
        return {row[0] for row in conn.execute(sa.select(samples.c.call_id).distinct())}


def review_counts(store: Store, since: str, until: str) -> dict[str, int]:
    """Samples per agent with night in [since, until]."""
    query = (sa.select(samples.c.agent_id, sa.func.count()).where(samples.c.night >= _night(since, "since"))
             .where(samples.c.night <= _night(until, "until")).group_by(samples.c.agent_id))
    with _errors(describe(store), "read samples"), store.engine.connect() as conn:
        return {row[0]: int(row[1]) for row in conn.execute(query)}


SAMPLE_FIELDS = ("call_id", "agent_id", "team", "layer", "priority", "reasons_zh", "reasons_en", "evidence",
                 "audio_path", "reviewer")


def save_samples(store: Store, night: str, seed: int, rows: Sequence[Mapping[str, Any]],
                 batch: Sequence[str] | None = None) -> int:
    """Record a night's sample, replacing what that night had (only for the calls of ``batch``
    when given, so another batch of the same night keeps its samples), in one transaction."""
    night = _night(night)
    records = list({
        str(row.get("call_id")): {"night": night, "seed": int(seed),
                                  **{f: _clean(row.get(f)) for f in SAMPLE_FIELDS}}
        for row in rows
    }.values())
    for n, record in enumerate(records, 1):
        if not record["call_id"]:
            raise StoreError(f"sample row {n}: call_id is empty")
    with _errors(describe(store), "record the sample"), _write(store.engine) as conn:
        if batch is None:
            conn.execute(samples.delete().where(samples.c.night == night))
        else:
            ids = sorted(set(batch) | {r["call_id"] for r in records})
            for part in _chunks(ids):
                conn.execute(samples.delete().where(samples.c.night == night, samples.c.call_id.in_(part)))
        if records:
            conn.execute(samples.insert(), records)
    return len(records)


def _text(value: Any) -> str:
    value = _clean(value)
    return "" if value is None else str(value).strip()


def import_reviews(store: Store, rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """Reviewers' verdicts: per call (score 0-100, agree / disagree) and per rule result
    (item_id, correct / incorrect). Every row is checked before anything is written; a bad row
    raises StoreError naming its number (1 = the first data row) and the field. A verdict given
    again by the same reviewer replaces the earlier one."""
    with _errors(describe(store), "read calls"), store.engine.connect() as conn:
        known_calls = {r[0] for r in conn.execute(sa.select(calls.c.call_id))}
        pairs = conn.execute(sa.select(rule_results.c.call_id, rule_results.c.item_id))
        known_rules = {(r[0], r[1]) for r in pairs}
    call_rows: dict[tuple[str, str], dict[str, Any]] = {}
    rule_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    stamp = _now()
    for n, row in enumerate(rows, 1):
        call_id, item_id, reviewer = (_text(row.get(k)) for k in ("call_id", "item_id", "reviewer"))
        verdict = _text(row.get("verdict")).lower()
        if not call_id:
            raise StoreError(f"review row {n}: call_id is empty")
        if call_id not in known_calls:
            raise StoreError(f"review row {n}: call_id {call_id!r} is not a call in the store")
        if not reviewer:
            raise StoreError(f"review row {n}: reviewer is empty")
        if item_id:
            if (call_id, item_id) not in known_rules:
                raise StoreError(f"review row {n}: item_id {item_id!r} has no result on call {call_id!r}")
            if verdict not in ("correct", "incorrect"):
                raise StoreError(f"review row {n}: verdict must be correct or incorrect, got {verdict!r}")
            rule_rows[call_id, item_id, reviewer] = {
                "call_id": call_id, "item_id": item_id, "reviewer": reviewer, "verdict": verdict,
                "imported_at": stamp}
            continue
        if verdict not in ("agree", "disagree"):
            raise StoreError(f"review row {n}: verdict must be agree or disagree, got {verdict!r}")
        raw = _text(row.get("score"))
        score = None
        if raw:
            try:
                score = float(raw)
            except ValueError:
                raise StoreError(f"review row {n}: score must be a number from 0 to 100, got {raw!r}") from None
            if not 0 <= score <= 100:
                raise StoreError(f"review row {n}: score must be from 0 to 100, got {raw}")
        call_rows[call_id, reviewer] = {"call_id": call_id, "reviewer": reviewer, "score": score,
                                        "verdict": verdict, "imported_at": stamp,
                                        "comment": _text(row.get("comment"))}
    with _errors(describe(store), "record reviews"), _write(store.engine) as conn:
        _upsert(conn, call_reviews, list(call_rows.values()))
        _upsert(conn, rule_reviews, list(rule_rows.values()))
    return len(call_rows), len(rule_rows)


def review_agreement(store: Store) -> tuple[int, int]:
    """Call-level reviews: how many there are and how many agree with the automatic score."""
    query = sa.select(sa.func.count(), sa.func.sum(sa.case((call_reviews.c.verdict == "agree", 1), else_=0)))
    with _errors(describe(store), "read reviews"), store.engine.connect() as conn:
        total, agree = conn.execute(query).one()
    return int(total or 0), int(agree or 0)


def rule_precision(store: Store) -> pd.DataFrame:
    """Per item: failures reviewers judged (``reviewed``), how many they found right
    (``correct``), and ``precision``. ``attrs`` carries the call-level agreement:
    ``call_reviews``, ``call_agree`` and ``call_agreement`` (None without reviews)."""
    query = (
        sa.select(rule_reviews.c.item_id, sa.func.count().label("reviewed"),
                  sa.func.sum(sa.case((rule_reviews.c.verdict == "correct", 1), else_=0)).label("correct"))
        .select_from(rule_reviews.join(rule_results, sa.and_(
            rule_reviews.c.call_id == rule_results.c.call_id,
            rule_reviews.c.item_id == rule_results.c.item_id)))
        .where(rule_results.c.outcome == "fail")
        .group_by(rule_reviews.c.item_id).order_by(rule_reviews.c.item_id)
    )
    with _errors(describe(store), "read reviews"), store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    df = pd.DataFrame(rows, columns=["item_id", "reviewed", "correct"])
    df["reviewed"] = df["reviewed"].astype("int64")
    df["correct"] = df["correct"].astype("int64")
    df["precision"] = (df["correct"] / df["reviewed"]).round(3)
    total, agree = review_agreement(store)
    df.attrs.update(call_reviews=total, call_agree=agree,
                    call_agreement=round(agree / total, 3) if total else None)
    return df
