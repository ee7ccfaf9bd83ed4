"""The history store: every processed call, every night's QA sample, reviewers' verdicts.

SQLite by default (one file, ``[store] db``), PostgreSQL when the URL says so, through
SQLAlchemy Core: one set of table definitions, no hand-written SQL dialect. The schema is
versioned: ``schema_version`` records the migrations applied, and opening a store applies the
missing ones in a transaction (a store written by a newer speechqa is refused). Every write
is an upsert on a natural key, so re-running a night never duplicates rows; a night's sample
is replaced as a whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from speechqa.calls import CallResult
from speechqa.errors import SpeechQAError


class StoreError(SpeechQAError):
    """The history database cannot be opened, migrated or written."""


META = sa.MetaData()

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
    sa.Column("failed_items", sa.Text),
    sa.Column("customer_sentiment_start", sa.Float),
    sa.Column("customer_sentiment_end", sa.Float),
    sa.Column("sentiment_trajectory", sa.String(16)),
    sa.Column("escalations", sa.Text),
    sa.Column("metrics", sa.Text),  # JSON of the call's metrics
    sa.Column("scorecard_sha256", sa.String(64)),
    sa.Column("updated_at", sa.String(40)),
)
rule_results = sa.Table(
    "rule_results", META,
    sa.Column("call_id", sa.String(200), primary_key=True),
    sa.Column("item_id", sa.String(100), primary_key=True),
    sa.Column("outcome", sa.String(8)),
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
)
rule_reviews = sa.Table(
    "rule_reviews", META,
    sa.Column("call_id", sa.String(200), primary_key=True),
    sa.Column("item_id", sa.String(100), primary_key=True),
    sa.Column("reviewer", sa.String(100), primary_key=True),
    sa.Column("verdict", sa.String(16)),  # correct | incorrect
    sa.Column("imported_at", sa.String(40)),
)
schema_version = sa.Table(
    "schema_version", META,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(40)),
    sa.Column("description", sa.Text),
)


def _v1(conn: sa.Connection) -> None:
    META.create_all(conn, tables=[calls, rule_results, samples, call_reviews, rule_reviews])


# Ordered migrations: (version, description, step). Add new ones at the end; never edit old ones.
MIGRATIONS: tuple[tuple[int, str, Callable[[sa.Connection], None]], ...] = (
    (1, "calls, rule results, samples, reviews", _v1),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclass(frozen=True)
class Store:
    engine: sa.Engine
    url: str

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


def _url(db: str) -> str:
    if db.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    if "://" in db:
        return db
    path = Path(db).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def describe(store: Store) -> str:
    """The store's URL without its password, for logs and run.json."""
    return describe_url(store.url)


def open_store(db: str) -> Store:
    """Open (creating and migrating) the store at ``db``: a file path, ``sqlite:///...`` or
    ``postgresql://...``."""
    url = _url(db)
    try:
        engine = sa.create_engine(url, future=True)
        if engine.dialect.name == "sqlite":
            @sa.event.listens_for(engine, "connect")
            def _pragmas(conn, _record):  # noqa: ANN001
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=30000")
        store = Store(engine, url)
        _migrate(store)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"{describe_url(url)}: cannot open the history store ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0]})") from None
    return store


def describe_url(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def _migrate(store: Store) -> None:
    with store.engine.begin() as conn:
        META.create_all(conn, tables=[schema_version])
        applied = {row.version for row in conn.execute(sa.select(schema_version.c.version))}
        newest = max(applied, default=0)
        if newest > SCHEMA_VERSION:
            raise StoreError(f"{describe(store)}: the store is at schema version {newest}, newer than this "
                             f"speechqa understands ({SCHEMA_VERSION}); upgrade speechqa")
        for version, description, step in MIGRATIONS:
            if version not in applied:
                step(conn)
                conn.execute(schema_version.insert().values(
                    version=version, applied_at=_now(), description=description))


def current_version(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _upsert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update on the primary key, in the dialect's own syntax (SQLAlchemy writes it)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise StoreError(f"unsupported database {conn.dialect.name!r}: use SQLite or PostgreSQL")
    keys = [c.name for c in table.primary_key.columns]
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})
    conn.execute(stmt, list(rows))


def _clean(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def save_calls(store: Store, night: str, results: Sequence[CallResult]) -> int:
    """Record processed calls and their rule results (upserts: a re-run updates, never duplicates)."""
    call_rows, rule_rows = [], []
    for r in results:
        meta = r.recording.meta_dict
        metrics = {k: _clean(v) for k, v in r.metrics}
        comp = r.compliance
        kinds = sorted({e.detail for e in r.events if e.type == "escalation"})
        call_rows.append({
            "call_id": r.recording.call_id, "night": night, "agent_id": meta.get("agent_id"),
            "agent_name": meta.get("agent_name"), "team": meta.get("team"),
            "agent_hire_date": meta.get("agent_hire_date"), "customer_tier": meta.get("customer_tier"),
            "started_at": meta.get("started_at"), "queue": meta.get("queue"),
            "direction": meta.get("direction"),
            "path": str(r.recording.path), "duration_s": r.duration_s,
            "compliance_score": comp.score if comp else None, "auto_fail": comp.auto_fail if comp else None,
            "failed_items": ";".join(comp.failed_items) if comp else None,
            "customer_sentiment_start": r.sentiment.customer.start,
            "customer_sentiment_end": r.sentiment.customer.end,
            "sentiment_trajectory": r.sentiment.trajectory, "escalations": ";".join(kinds),
            "metrics": json.dumps(metrics, ensure_ascii=False, sort_keys=True),
            "scorecard_sha256": comp.scorecard_sha256 if comp else None, "updated_at": _now(),
        })
        for rr in comp.results if comp else ():
            rule_rows.append({
                "call_id": rr.call_id, "item_id": rr.item_id, "outcome": rr.outcome, "points": rr.points,
                "max_points": rr.max_points, "evidence_turn_id": rr.evidence_turn_id,
                "evidence_start": rr.evidence_start, "evidence_end": rr.evidence_end,
                "evidence_text": rr.evidence_text, "match_score": rr.match_score, "reason": rr.reason,
            })
    try:
        with store.engine.begin() as conn:
            _upsert(conn, calls, call_rows)
            _upsert(conn, rule_results, rule_rows)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"{describe(store)}: cannot record calls ({str(exc).splitlines()[0]})") from None
    return len(call_rows)


def _frame(store: Store, table: sa.Table, since: str | None, until: str | None) -> pd.DataFrame:
    query = sa.select(table)
    if since:
        query = query.where(table.c.night >= since)
    if until:
        query = query.where(table.c.night <= until)
    with store.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in table.columns])


def calls_frame(store: Store, since: str | None = None, until: str | None = None) -> pd.DataFrame:
    return _frame(store, calls, since, until)


def samples_frame(store: Store, since: str | None = None, until: str | None = None) -> pd.DataFrame:
    return _frame(store, samples, since, until)


def sampled_call_ids(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return {row[0] for row in conn.execute(sa.select(samples.c.call_id))}


def review_counts(store: Store, since: str, until: str) -> dict[str, int]:
    """Samples per agent with night in [since, until]."""
    query = (sa.select(samples.c.agent_id, sa.func.count()).where(samples.c.night >= since)
             .where(samples.c.night <= until).group_by(samples.c.agent_id))
    with store.engine.connect() as conn:
        return {row[0]: int(row[1]) for row in conn.execute(query)}


SAMPLE_FIELDS = ("call_id", "agent_id", "team", "layer", "priority", "reasons_zh", "reasons_en", "evidence",
                 "audio_path", "reviewer")


def save_samples(store: Store, night: str, seed: int, rows: Sequence[Mapping[str, Any]],
                 batch: Sequence[str] | None = None) -> int:
    """Record a night's sample, replacing what that night had for the calls of ``batch`` (all
    of the night when None), in one transaction: another batch of the same night is kept."""
    records = [{"night": night, "seed": int(seed), **{f: _clean(row.get(f)) for f in SAMPLE_FIELDS}}
               for row in rows]
    try:
        with store.engine.begin() as conn:
            wipe = samples.delete().where(samples.c.night == night)
            if batch is not None:
                wipe = wipe.where(samples.c.call_id.in_(list(batch)))
            conn.execute(wipe)
            if records:
                conn.execute(samples.insert(), records)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"{describe(store)}: cannot record the sample ({str(exc).splitlines()[0]})") from None
    return len(records)


def import_reviews(store: Store, rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """Reviewers' verdicts: per call (score, agree / disagree) and per rule result (correct /
    incorrect). Every row is checked before anything is written; a bad row raises StoreError
    naming its number (1 = the first data row) and the field."""
    with store.engine.connect() as conn:
        known_calls = {r[0] for r in conn.execute(sa.select(calls.c.call_id))}
        pairs = conn.execute(sa.select(rule_results.c.call_id, rule_results.c.item_id))
        known_rules = {(r[0], r[1]) for r in pairs}
    call_rows, rule_rows = [], []
    stamp = _now()
    for n, row in enumerate(rows, 1):
        call_id = str(row.get("call_id") or "").strip()
        reviewer = str(row.get("reviewer") or "").strip()
        verdict = str(row.get("verdict") or "").strip().lower()
        item_id = str(row.get("item_id") or "").strip()
        if not call_id or call_id not in known_calls:
            raise StoreError(f"review row {n}: call_id {call_id!r} is not a call in the store")
        if not reviewer:
            raise StoreError(f"review row {n}: reviewer is empty")
        if item_id:
            if (call_id, item_id) not in known_rules:
                raise StoreError(f"review row {n}: item_id {item_id!r} has no result on call {call_id!r}")
            if verdict not in ("correct", "incorrect"):
                raise StoreError(f"review row {n}: verdict must be correct or incorrect, got {verdict!r}")
            rule_rows.append({"call_id": call_id, "item_id": item_id, "reviewer": reviewer, "verdict": verdict,
                              "imported_at": stamp})
            continue
        if verdict not in ("agree", "disagree"):
            raise StoreError(f"review row {n}: verdict must be agree or disagree, got {verdict!r}")
        score = row.get("score")
        if score not in (None, ""):
            try:
                score = float(score)
            except (TypeError, ValueError):
                raise StoreError(f"review row {n}: score must be a number from 0 to 100, got {score!r}") \
                    from None
            if not 0 <= score <= 100:
                raise StoreError(f"review row {n}: score must be from 0 to 100, got {score:g}")
        else:
            score = None
        call_rows.append({"call_id": call_id, "reviewer": reviewer, "score": score, "verdict": verdict,
                          "imported_at": stamp})
    with store.engine.begin() as conn:
        _upsert(conn, call_reviews, call_rows)
        _upsert(conn, rule_reviews, rule_rows)
    return len(call_rows), len(rule_rows)


def rule_precision(store: Store) -> pd.DataFrame:
    """Per item: failures reviewers judged, how many were right, and the precision."""
    query = (
        sa.select(rule_reviews.c.item_id, sa.func.count().label("reviewed"),
                  sa.func.sum(sa.case((rule_reviews.c.verdict == "correct", 1), else_=0)).label("correct"))
        .select_from(rule_reviews.join(rule_results, sa.and_(
            rule_reviews.c.call_id == rule_results.c.call_id,
            rule_reviews.c.item_id == rule_results.c.item_id)))
        .where(rule_results.c.outcome == "fail")
        .group_by(rule_reviews.c.item_id).order_by(rule_reviews.c.item_id)
    )
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    df = pd.DataFrame(rows, columns=["item_id", "reviewed", "correct"])
    df["correct"] = df["correct"].astype("int64")
    df["precision"] = (df["correct"] / df["reviewed"]).round(3)
    return df
