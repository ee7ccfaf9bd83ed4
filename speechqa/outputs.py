"""Write the batch's tables (CSV with BOM for Excel, and Parquet) and ``run.json``.

Every file is written to a temp file in the output folder and renamed into place, so a
reader (or a run killed half way) never sees a half-written table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from speechqa.calls import CallResult, Failure, Recording
from speechqa.files import write_atomic

TURN_COLUMNS = [
    "call_id", "turn_id", "role", "channel", "start", "end", "text", "flags", "corrections",
    "avg_logprob", "no_speech_prob", "compression_ratio",
]
WORD_COLUMNS = ["call_id", "turn_id", "start", "end", "word", "probability"]
CALL_COLUMNS = [
    "call_id", "path", "duration_s", "channels", "status", "model", "asr_seconds", "cached",
    "n_turns", "n_flagged_turns", "audio_sha256",
]
FAILURE_COLUMNS = ["call_id", "path", "stage", "reason"]


def write_table(df: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """``name.csv`` (UTF-8 with BOM, so Excel shows Chinese) and ``name.parquet``."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, parquet_path = out / f"{name}.csv", out / f"{name}.parquet"
    write_atomic(csv_path, lambda p: df.to_csv(p, index=False, encoding="utf-8-sig"))
    write_atomic(parquet_path, lambda p: df.to_parquet(p, index=False))
    return [csv_path, parquet_path]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda p: p.write_text(
        json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"))


def turns_frame(results: Iterable[CallResult]) -> pd.DataFrame:
    rows = [
        {
            "call_id": t.call_id, "turn_id": t.turn_id, "role": t.role, "channel": t.channel,
            "start": t.start, "end": t.end, "text": t.text, "flags": ";".join(t.flags),
            "corrections": ";".join(t.corrections),
            "avg_logprob": t.avg_logprob, "no_speech_prob": t.no_speech_prob,
            "compression_ratio": t.compression_ratio,
        }
        for r in results
        for t in r.turns
    ]
    return _frame(rows, TURN_COLUMNS, {"channel": "int64", "start": "float64", "end": "float64"})


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
                n_flagged_turns=sum(1 for t in result.turns if t.flags),
                audio_sha256=result.audio_sha256,
            )
        else:
            row.update(status="failed" if rec.call_id in failed else "skipped")
        row.update({k: v for k, v in rec.meta if k not in CALL_COLUMNS})
        rows.append(row)
    return _frame(rows, CALL_COLUMNS + meta_columns,
                  {"duration_s": "float64", "channels": "Int64", "asr_seconds": "float64",
                   "cached": "boolean", "n_turns": "Int64", "n_flagged_turns": "Int64"})


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
