"""Write the batch's tables (CSV with BOM for Excel, and Parquet) and ``run.json``.

Every file is written to a temp file in the output folder and renamed into place, so a
reader (or a run killed half way) never sees a half-written table.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from speechqa.calls import SENTIMENT_COLUMNS, CallResult, Failure, Recording
from speechqa.compliance.schema import Scorecard
from speechqa.errors import OutputError
from speechqa.files import staged, write_atomic
from speechqa.metrics import METRIC_NAMES
from speechqa.sentiment import ESCALATION_KINDS

TURN_COLUMNS = [
    "call_id", "turn_id", "role", "channel", "speaker", "start", "end", "text", "match_text", "tokens",
    "sentiment", "loudness_dbfs", "shouting", "redactions", "flags", "corrections",
    "avg_logprob", "no_speech_prob", "compression_ratio",
]
WORD_COLUMNS = ["call_id", "turn_id", "start", "end", "word", "probability"]
METRIC_COLUMNS = list(METRIC_NAMES)
CALL_COLUMNS = [
    "call_id", "path", "duration_s", "channels", "status", "model", "asr_seconds", "cached",
    "language", "flags", "role_source", "role_confidence", "role_evidence", "speaker_similarity",
    "agent_voice_match", "n_turns", "n_flagged_turns", *METRIC_COLUMNS, *SENTIMENT_COLUMNS,
    "sentiment_trajectory", "escalated", "escalations",
    *(f"escalation_{kind}" for kind in ESCALATION_KINDS), "n_redactions", "compliance_score", "auto_fail",
    "failed_items", "scorecard", "scorecard_sha256", "audio_sha256",
]
EVENT_COLUMNS = ["call_id", "type", "role", "start", "end", "duration", "detail", "turn_id"]
RULE_COLUMNS = [
    "call_id", "item_id", "item_name", "section", "severity", "auto_fail_item", "outcome", "points",
    "max_points", "evidence_turn_id", "evidence_start", "evidence_end", "evidence_text", "match_score",
    "reason", "scorecard", "scorecard_sha256",
]
FAILURE_COLUMNS = ["call_id", "path", "stage", "reason"]


def write_table(df: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """``name.csv`` (UTF-8 with BOM, so Excel shows Chinese) and ``name.parquet``."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, parquet_path = out / f"{name}.csv", out / f"{name}.parquet"
    write_atomic(csv_path, lambda p: df.to_csv(p, index=False, encoding="utf-8-sig"))
    write_atomic(parquet_path, lambda p: df.to_parquet(p, index=False))
    return [csv_path, parquet_path]


class TableSink:
    """One table written a chunk at a time (the night's turns and words, part by part):
    ``name.csv`` and ``name.parquet``, each a temp file until :meth:`close`, which stages them
    like :func:`write_table` (inside :func:`speechqa.files.all_or_nothing` they are renamed with
    the rest of the night's set). The Parquet schema is the first non-empty chunk's; a table
    that got no rows is written from the empty frame it was given. Use as a context manager."""

    def __init__(self, out: Path, name: str):
        out.mkdir(parents=True, exist_ok=True)
        self._out, self._name, self._csv_path = out, name, out / f"{name}.csv"
        self._stack = contextlib.ExitStack()
        csv_tmp = self._stack.enter_context(staged(out / f"{name}.csv"))
        parquet_tmp = self._stack.enter_context(staged(out / f"{name}.parquet"))
        self._csv = self._stack.enter_context(open(csv_tmp, "w", encoding="utf-8-sig", newline=""))  # noqa: SIM115
        self._parquet_path = parquet_tmp
        self._parquet: pq.ParquetWriter | None = None
        self._header = True
        self._empty: pd.DataFrame | None = None
        self.rows = 0

    def append(self, df: pd.DataFrame) -> None:
        if df.empty:
            if self._empty is None:
                self._empty = df
            return
        at = self._csv_path
        try:
            df.to_csv(self._csv, index=False, header=self._header)
            self._header = False
            at = self._out / f"{self._name}.parquet"
            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._parquet_path, table.schema)
            elif table.schema != self._parquet.schema:
                table = table.cast(self._parquet.schema)
            self._parquet.write_table(table)
        except OSError as exc:  # named here: the other tables' writers pass it on as it is
            raise OutputError(f"{at}: cannot be written ({exc.strerror or exc}); the files there "
                              "are left as they were") from exc
        self.rows += len(df)

    def __enter__(self) -> TableSink:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc is None:
                if self._parquet is None:  # no rows at all: the header and an empty Parquet file
                    empty = self._empty if self._empty is not None else pd.DataFrame()
                    empty.to_csv(self._csv, index=False, header=self._header)
                    empty.to_parquet(self._parquet_path, index=False)
                else:
                    self._parquet.close()
            elif self._parquet is not None:
                self._parquet.close()
        finally:
            self._stack.__exit__(kind, exc, tb)


def write_excel(df: pd.DataFrame, path: Path, sheet: str) -> None:
    """One sheet, written atomically (reviewers open the QA list in Excel or WPS)."""
    write_atomic(path, lambda p: df.to_excel(p, index=False, sheet_name=sheet, engine="openpyxl"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda p: p.write_text(
        json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"))


def turns_frame(results: Iterable[CallResult]) -> pd.DataFrame:
    rows = [
        {
            "call_id": t.call_id, "turn_id": t.turn_id, "role": t.role, "channel": t.channel,
            "speaker": t.speaker if t.speaker >= 0 else None, "start": t.start, "end": t.end, "text": t.text,
            "match_text": t.match_text,
            "tokens": " ".join(t.tokens), "sentiment": t.sentiment, "loudness_dbfs": t.loudness_dbfs,
            "shouting": t.shouting, "redactions": ";".join(t.redactions), "flags": ";".join(t.flags),
            "corrections": ";".join(t.corrections),
            "avg_logprob": t.avg_logprob, "no_speech_prob": t.no_speech_prob,
            "compression_ratio": t.compression_ratio,
        }
        for r in results
        for t in r.turns
    ]
    return _frame(rows, TURN_COLUMNS, {"channel": "int64", "speaker": "Int64", "start": "float64",
                                       "end": "float64",
                                       "sentiment": "Float64", "loudness_dbfs": "Float64",
                                       "shouting": "boolean", "avg_logprob": "float64",
                                       "no_speech_prob": "float64", "compression_ratio": "float64"})


def words_frame(results: Iterable[CallResult]) -> pd.DataFrame:
    rows = [
        {"call_id": t.call_id, "turn_id": t.turn_id, "start": w.start, "end": w.end,
         "word": w.word, "probability": w.probability}
        for r in results
        for t in r.turns
        for w in t.words
    ]
    return _frame(rows, WORD_COLUMNS, {"start": "float64", "end": "float64", "probability": "float64"})


def call_row(result: CallResult) -> dict[str, Any]:
    """A processed call's own columns of the calls table (see :func:`calls_frame`)."""
    row: dict[str, Any] = dict(
        duration_s=result.duration_s, channels=result.n_channels, status="ok",
        asr_seconds=result.asr_seconds, cached=result.cached, n_turns=len(result.turns),
        language=result.language, flags=";".join(result.flags),
        n_flagged_turns=sum(1 for t in result.turns if t.flags),
        audio_sha256=result.audio_sha256,
        n_redactions=sum(len(t.redactions) for t in result.turns),
    )
    decision = result.roles
    if decision is not None:
        row.update(role_source=decision.source, role_confidence=decision.confidence,
                   role_evidence=";".join(f"{k}:{v:+g}" for k, v in decision.evidence),
                   speaker_similarity=decision.similarity, agent_voice_match=decision.voice_match)
    row.update(dict(result.metrics))
    sent = result.sentiment
    row.update({k: None if v is None else round(v, 4) for k, v in sent.columns().items()})
    row["sentiment_trajectory"] = sent.trajectory
    kinds = sorted({e.detail for e in result.events if e.type == "escalation"})
    row.update(escalated=bool(kinds), escalations=";".join(kinds))
    row.update({f"escalation_{kind}": kind in kinds for kind in ESCALATION_KINDS})
    if result.compliance is not None:
        c = result.compliance
        row.update(compliance_score=c.score, auto_fail=c.auto_fail,
                   failed_items=";".join(c.failed_items), scorecard=c.scorecard,
                   scorecard_sha256=c.scorecard_sha256)
    return row


def calls_frame(
    results: Iterable[CallResult] | Mapping[str, dict[str, Any]], failures: Iterable[Failure],
    recordings: Iterable[Recording], model_name: str,
) -> pd.DataFrame:
    """One row per recording of the batch, ok or failed, with its manifest columns.
    ``results`` are the processed calls, or their :func:`call_row` by call_id (a night too
    big to hold its calls' turns keeps just these)."""
    by_id = results if isinstance(results, Mapping) else {r.recording.call_id: call_row(r) for r in results}
    failed = {f.call_id: f for f in failures}
    rows = []
    meta_columns: list[str] = []
    for rec in recordings:
        for key, _ in rec.meta:
            if key not in meta_columns and key not in CALL_COLUMNS:
                meta_columns.append(key)
        row: dict[str, Any] = {"call_id": rec.call_id, "path": str(rec.path), "model": model_name}
        own = by_id.get(rec.call_id)
        if own is not None:
            row.update(own)
        else:
            row.update(status="failed" if rec.call_id in failed else "skipped")
        row.update({k: v for k, v in rec.meta if k not in CALL_COLUMNS})
        rows.append(row)
    dtypes = {"duration_s": "float64", "channels": "Int64", "asr_seconds": "float64",
              "cached": "boolean", "n_turns": "Int64", "n_flagged_turns": "Int64",
              "n_redactions": "Int64", "escalated": "boolean"}
    dtypes |= {c: "Int64" if c.startswith("n_") else "Float64" for c in METRIC_COLUMNS}
    dtypes |= dict.fromkeys(SENTIMENT_COLUMNS, "Float64")
    dtypes |= {f"escalation_{kind}": "boolean" for kind in ESCALATION_KINDS}
    dtypes |= {"compliance_score": "Float64", "auto_fail": "boolean", "role_confidence": "Float64",
               "speaker_similarity": "Float64", "agent_voice_match": "Float64"}
    return _frame(rows, CALL_COLUMNS + meta_columns, dtypes)


def assemble_calls(parts: Iterable[pd.DataFrame], failures: Iterable[Failure], recordings: Sequence[Recording],
                   model_name: str) -> pd.DataFrame:
    """The calls table from the processed calls' :func:`calls_frame` parts (a night is read a
    few calls at a time) and a row for every other recording: the same table, in the same row
    and column order, as one :func:`calls_frame` over them all."""
    frames = [f for f in parts if len(f)]
    done = {c for f in frames for c in f.call_id}
    rest = calls_frame({}, failures, [r for r in recordings if r.call_id not in done], model_name)
    meta: list[str] = []
    for rec in recordings:
        meta.extend(k for k, _ in rec.meta if k not in CALL_COLUMNS and k not in meta)
    df = pd.concat([*frames, rest], ignore_index=True) if frames else rest
    for column in meta:
        df[column] = df[column].astype("string")
    order = {r.call_id: i for i, r in enumerate(recordings)}
    df = df.iloc[df.call_id.map(order).argsort(kind="stable")].reset_index(drop=True)
    return df[CALL_COLUMNS + meta]


def events_frame(results: Iterable[CallResult]) -> pd.DataFrame:
    """One row per silence, hold, overlap, interruption, escalation and redaction."""
    rows = [
        {"call_id": e.call_id, "type": e.type, "role": e.role, "start": e.start, "end": e.end,
         "duration": round(e.end - e.start, 3), "detail": e.detail, "turn_id": e.turn_id}
        for r in results
        for e in r.events
    ]
    return _frame(rows, EVENT_COLUMNS, {"start": "float64", "end": "float64", "duration": "float64"})


def rule_results_frame(results: Iterable[CallResult], scorecard: Scorecard | None) -> pd.DataFrame:
    """One row per (call, scorecard item): pass, fail or na, with the evidence."""
    items = {i.id: i for i in scorecard.items} if scorecard is not None else {}
    rows = []
    for r in results:
        if r.compliance is None:
            continue
        for rr in r.compliance.results:
            item = items.get(rr.item_id)
            rows.append({
                "call_id": rr.call_id, "item_id": rr.item_id, "item_name": item.name if item else "",
                "section": item.section if item else "", "severity": item.severity if item else "",
                "auto_fail_item": bool(item and item.auto_fail), "outcome": rr.outcome, "points": rr.points,
                "max_points": rr.max_points, "evidence_turn_id": rr.evidence_turn_id,
                "evidence_start": rr.evidence_start, "evidence_end": rr.evidence_end,
                "evidence_text": rr.evidence_text, "match_score": rr.match_score, "reason": rr.reason,
                "scorecard": r.compliance.scorecard, "scorecard_sha256": r.compliance.scorecard_sha256,
            })
    return _frame(rows, RULE_COLUMNS, {"points": "float64", "max_points": "float64",
                                       "auto_fail_item": "boolean", "evidence_start": "Float64",
                                       "evidence_end": "Float64", "match_score": "Float64"})


def scorecards_frame(calls: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Supervisors' view: one row per agent (or team) over the batch's processed calls."""
    columns = [*by, "calls", "compliance_score_mean", "auto_fails", "failed_items_top", "escalated_calls",
               "customer_sentiment_end_mean", "agent_interruptions", "holds", "talk_ratio_agent_mean"]
    if calls.empty or any(c not in calls for c in by):
        return pd.DataFrame(columns=columns)
    ok = calls[calls.status == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=columns)
    for column in by:
        ok[column] = ok[column].fillna("").astype(str)

    def top_failures(items: pd.Series) -> str:
        # most_common keeps first-seen order among equal counts, as value_counts does here
        counts = Counter(i for s in items.dropna() for i in str(s).split(";") if i)
        return ";".join(f"{k}:{v}" for k, v in counts.most_common(3))

    g = ok.groupby(by, sort=True)
    out = pd.DataFrame({
        "calls": g.size(),
        "compliance_score_mean": g["compliance_score"].mean().round(1),
        "auto_fails": g["auto_fail"].sum().astype("int64"),
        "failed_items_top": g["failed_items"].agg(top_failures),
        "escalated_calls": g["escalated"].sum().astype("int64"),
        "customer_sentiment_end_mean": g["customer_sentiment_end"].mean().round(3),
        "agent_interruptions": g["n_interruptions_agent"].sum().astype("int64"),
        "holds": g["n_holds"].sum().astype("int64"),
        "talk_ratio_agent_mean": g["talk_ratio_agent"].mean().round(3),
    }).reset_index()
    return out[columns]


def failures_frame(failures: Iterable[Failure]) -> pd.DataFrame:
    rows = [{"call_id": f.call_id, "path": f.path, "stage": f.stage, "reason": f.reason}
            for f in failures]
    return _frame(rows, FAILURE_COLUMNS, {})


def _frame(rows: list[dict[str, Any]], columns: list[str], dtypes: dict[str, str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    for column, dtype in dtypes.items():
        df[column] = df[column].astype(dtype)
    for column in columns:  # text is pandas' "string" (pd.NA), however a chunk of rows inferred it
        text = df[column].dtype == object or isinstance(df[column].dtype, pd.StringDtype)
        if column not in dtypes and text:
            df[column] = df[column].astype("string")
    return df
