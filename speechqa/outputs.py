"""Write the batch's tables (CSV with BOM for Excel, and Parquet) and ``run.json``.

Every file is written to a temp file in the output folder and renamed into place, so a
reader (or a run killed half way) never sees a half-written table.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from speechqa.calls import SENTIMENT_COLUMNS, CallResult, Failure, Recording
from speechqa.compliance.schema import Scorecard
from speechqa.files import write_atomic
from speechqa.metrics import METRIC_NAMES
from speechqa.sentiment import ESCALATION_KINDS

TURN_COLUMNS = [
    "call_id", "turn_id", "role", "channel", "start", "end", "text", "match_text", "tokens",
    "sentiment", "loudness_dbfs", "shouting", "redactions", "flags", "corrections",
    "avg_logprob", "no_speech_prob", "compression_ratio",
]
WORD_COLUMNS = ["call_id", "turn_id", "start", "end", "word", "probability"]
METRIC_COLUMNS = list(METRIC_NAMES)
CALL_COLUMNS = [
    "call_id", "path", "duration_s", "channels", "status", "model", "asr_seconds", "cached",
    "language", "flags", "n_turns", "n_flagged_turns", *METRIC_COLUMNS, *SENTIMENT_COLUMNS,
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
            "start": t.start, "end": t.end, "text": t.text, "match_text": t.match_text,
            "tokens": " ".join(t.tokens), "sentiment": t.sentiment, "loudness_dbfs": t.loudness_dbfs,
            "shouting": t.shouting, "redactions": ";".join(t.redactions), "flags": ";".join(t.flags),
            "corrections": ";".join(t.corrections),
            "avg_logprob": t.avg_logprob, "no_speech_prob": t.no_speech_prob,
            "compression_ratio": t.compression_ratio,
        }
        for r in results
        for t in r.turns
    ]
    return _frame(rows, TURN_COLUMNS, {"channel": "int64", "start": "float64", "end": "float64",
                                       "sentiment": "Float64", "loudness_dbfs": "Float64",
                                       "shouting": "boolean"})


def words_frame(results: Iterable[CallResult]) -> pd.DataFrame:
    rows = [
        {"call_id": t.call_id, "turn_id": t.turn_id, "start": w.start, "end": w.end,
         "word": w.word, "probability": w.probability}
        for r in results
        for t in r.turns
        for w in t.words
    ]
    return _frame(rows, WORD_COLUMNS, {"start": "float64", "end": "float64"})


def calls_frame(
    results: Iterable[CallResult], failures: Iterable[Failure], recordings: Iterable[Recording],
    model_name: str,
) -> pd.DataFrame:
    """One row per recording of the batch, ok or failed, with its manifest columns."""
    by_id = {r.recording.call_id: r for r in results}
    failed = {f.call_id: f for f in failures}
    rows = []
    meta_columns: list[str] = []
    for rec in recordings:
        for key, _ in rec.meta:
            if key not in meta_columns and key not in CALL_COLUMNS:
                meta_columns.append(key)
        result = by_id.get(rec.call_id)
        row: dict[str, Any] = {"call_id": rec.call_id, "path": str(rec.path), "model": model_name}
        if result is not None:
            row.update(
                duration_s=result.duration_s, channels=result.n_channels, status="ok",
                asr_seconds=result.asr_seconds, cached=result.cached, n_turns=len(result.turns),
                language=result.language, flags=";".join(result.flags),
                n_flagged_turns=sum(1 for t in result.turns if t.flags),
                audio_sha256=result.audio_sha256,
                n_redactions=sum(len(t.redactions) for t in result.turns),
            )
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
    dtypes |= {"compliance_score": "Float64", "auto_fail": "boolean"}
    return _frame(rows, CALL_COLUMNS + meta_columns, dtypes)


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
    for column in columns:
        if column not in dtypes and df[column].dtype == object:
            df[column] = df[column].astype("string")
    return df
