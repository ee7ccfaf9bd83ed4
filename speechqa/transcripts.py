"""Read conversations that are already transcribed (another ASR system, or text chat).

A transcript file is a CSV (UTF-8, UTF-8 with BOM, or GBK/GB18030 as Chinese Excel saves it)
or JSONL (one JSON object per line), with one turn per row:

- ``call_id``, ``role`` (``agent`` / ``customer``; 坐席 and 客服 mean agent, 客户 and 顾客
  customer; case-insensitive) and ``text`` are required;
- ``start`` and ``end`` (seconds from the start of the call) are optional;
- every other column is call metadata (agent_id, agent_name, team, started_at ...), carried
  into ``calls`` as a manifest column would be: the first non-empty value per call, in the
  file's column order.

A call is **timed** when every one of its turns has a ``start``; its turns are put in time
order (a missing ``end`` is the ``start``: a chat message has one timestamp). Otherwise its
turns keep the file's order and get turn-index times (turn ``i`` spans ``[i, i + 1)``) so that
the scorecard's windows still have numbers to compare; the call is marked ``times = none``.

A bad row (missing call_id or text, unknown role, a time that is not a number, end before
start, a malformed JSON line) becomes a failure naming the file and the line, and its call is
processed from the rows that are good. A file that cannot be read as a transcript at all is an
``InputError``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechqa.calls import Event, Failure, Recording, Role, Turn
from speechqa.config import ChannelSettings, MetricsSettings
from speechqa.errors import InputError

CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
REQUIRED = ("call_id", "role", "text")
TURN_COLUMNS = frozenset({*REQUIRED, "start", "end"})
ROLE_NAMES: dict[str, Role] = {
    "agent": "agent", "坐席": "agent", "客服": "agent",
    "customer": "customer", "客户": "customer", "顾客": "customer",
}
TIMES_IMPORTED = "imported"
TIMES_NONE = "none"
Metrics = tuple[tuple[str, float | int | None], ...]
NAN = float("nan")  # Whisper's confidence columns: nothing to say for an imported turn


@dataclass(frozen=True)
class ImportedCall:
    """One call of a transcript file: its record (path = the file), turns and time basis."""

    recording: Recording
    turns: tuple[Turn, ...]
    times: str  # "imported": from the file; "none": turn-index times stand in

    @property
    def duration_s(self) -> float:
        """The last turn's end (with turn-index times: the number of turns)."""
        return max((t.end for t in self.turns), default=0.0)


@dataclass(frozen=True)
class TranscriptFile:
    path: Path
    calls: tuple[ImportedCall, ...]  # in order of first appearance
    failures: tuple[Failure, ...]  # bad rows, and calls left with no good row


@dataclass(frozen=True)
class _Row:
    line: int
    call_id: str
    role: Role
    text: str
    start: float | None
    end: float | None


def read_transcripts(path: Path, channels: ChannelSettings | None = None) -> TranscriptFile:
    """Every call of ``path``, with its good turns, and a failure per bad row.

    Raises InputError when the file is missing, is not a .csv or .jsonl, cannot be decoded,
    or has no ``call_id`` / ``role`` / ``text`` column.
    """
    path = Path(path)
    channels = channels or ChannelSettings()
    records = _records(path)
    failures: list[Failure] = []
    rows: dict[str, list[_Row]] = {}
    meta: dict[str, dict[str, str]] = {}
    meta_columns: list[str] = []
    bad_calls: list[str] = []
    for line, record in records:
        if isinstance(record, str):  # a line that is not a JSON object
            failures.append(Failure("", str(path), "ingest", f"{path.name} line {line}: {record}"))
            continue
        call_id = record.get("call_id", "")
        problem, row = _row(line, record)
        if call_id:
            values = meta.setdefault(call_id, {})
            for key, value in record.items():
                if key in TURN_COLUMNS:
                    continue
                if key not in meta_columns:
                    meta_columns.append(key)
                if value and not values.get(key):
                    values[key] = value
        if row is None:
            failures.append(Failure(call_id, str(path), "ingest", f"{path.name} line {line}: {problem}"))
            if call_id and call_id not in rows and call_id not in bad_calls:
                bad_calls.append(call_id)
            continue
        rows.setdefault(call_id, []).append(row)
    calls = []
    for call_id, turn_rows in rows.items():
        values = meta.get(call_id, {})
        rec = Recording(call_id, path, tuple((k, values[k]) for k in meta_columns if values.get(k)))
        calls.append(_call(rec, turn_rows, channels))
    for call_id in bad_calls:
        if call_id not in rows:
            failures.append(Failure(call_id, str(path), "ingest",
                                    f"{path.name}: call {call_id!r} has no usable turn"))
    return TranscriptFile(path, tuple(calls), tuple(failures))


def _call(rec: Recording, rows: list[_Row], channels: ChannelSettings) -> ImportedCall:
    timed = all(r.start is not None for r in rows)
    if timed:
        rows = sorted(rows, key=lambda r: r.start or 0.0)  # stable: ties keep the file's order
    counters: dict[str, int] = {}
    turns = []
    for i, r in enumerate(rows):
        counters[r.role] = n = counters.get(r.role, 0) + 1
        if timed:
            start = r.start or 0.0
            end = r.end if r.end is not None else start
        else:
            start, end = float(i), float(i + 1)
        turns.append(Turn(
            call_id=rec.call_id, turn_id=f"{rec.call_id}-{r.role}-{n:04d}", role=r.role,
            channel=channels.agent if r.role == "agent" else channels.customer,
            start=round(start, 3), end=round(end, 3), text=r.text,
            avg_logprob=NAN, no_speech_prob=NAN, compression_ratio=NAN,
        ))
    return ImportedCall(rec, tuple(turns), TIMES_IMPORTED if timed else TIMES_NONE)


def _row(line: int, record: dict[str, str]) -> tuple[str, _Row | None]:
    """(problem, None) for a bad row, else ("", the row)."""
    call_id, text = record.get("call_id", ""), record.get("text", "")
    if not call_id:
        return "no call_id", None
    if not text:
        return "no text", None
    raw_role = record.get("role", "")
    role = ROLE_NAMES.get(raw_role.lower())
    if role is None:
        return f"role {raw_role!r} is not agent or customer", None
    times: list[float | None] = []
    for name in ("start", "end"):
        value = record.get(name, "")
        if not value:
            times.append(None)
            continue
        try:
            number = float(value)
        except ValueError:
            return f"{name} {value!r} is not a number of seconds", None
        if not math.isfinite(number) or number < 0:
            return f"{name} {value!r} is not a number of seconds", None
        times.append(number)
    start, end = times
    if start is None and end is not None:
        return "end without start", None
    if start is not None and end is not None and end < start:
        return f"end {end:g} is before start {start:g}", None
    return "", _Row(line, call_id, role, text, start, end)


# -- reading the file ----------------------------------------------------------------------

Record = tuple[int, "dict[str, str] | str"]  # (line, fields) or (line, why it is not a record)


def _records(path: Path) -> list[Record]:
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES | JSONL_SUFFIXES:
        raise InputError(f"{path}: give a transcript file ending in .csv or .jsonl")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: transcript file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the transcript file ({exc})") from None
    content = _decode(data, path)
    records = list(_csv_records(content, path) if suffix in CSV_SUFFIXES else _jsonl_records(content, path))
    return records


def _decode(data: bytes, path: Path) -> str:
    from speechqa.ingest import decode_text  # the manifest's reader: one way to read Excel's CSV

    decoded = decode_text(data)
    if decoded is None:
        raise InputError(f"{path}: not UTF-8 or GBK text; save it as CSV UTF-8 (or GBK) or JSONL")
    return decoded[0]


def _csv_records(content: str, path: Path) -> Iterator[Record]:
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: empty transcript file; it needs the columns {', '.join(REQUIRED)}")
        names = [h.strip().lower() if h.strip().lower() in TURN_COLUMNS else h.strip() for h in header]
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            raise InputError(f"{path}: a transcript needs the columns {', '.join(REQUIRED)}; "
                             f"missing {', '.join(missing)} (it has {', '.join(header)})")
        line = reader.line_num
        for cells in reader:
            first, line = line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            record = {name: cell.strip() for name, cell in zip(names, cells, strict=False) if name}
            yield first, record
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None


def _jsonl_records(content: str, path: Path) -> Iterator[Record]:
    seen_text = False
    for line, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(value, dict):
            yield line, f"not a JSON object but {type(value).__name__}"
            continue
        record = {_key(k): _cell(v) for k, v in value.items()}
        seen_text = seen_text or "text" in record
        yield line, record
    if not seen_text:
        raise InputError(f"{path}: no line has a 'text' field; each line needs call_id, role and text")


def _key(name: str) -> str:
    return name.strip().lower() if name.strip().lower() in TURN_COLUMNS else name.strip()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


# -- metrics without audio -----------------------------------------------------------------

# Measured on the audio only: levels, and who spoke over whom (turn times from another system
# or a chat log do not show overlapping speech reliably).
AUDIO_ONLY_METRICS = frozenset({
    "n_overlaps", "overlap_s", "n_interruptions_agent", "n_interruptions_customer",
    "loudness_dbfs_agent", "loudness_dbfs_customer", "n_shouting_turns_agent", "n_shouting_turns_customer",
})
# Need turns with a length (a chat message with only a timestamp has none).
TALK_METRICS = frozenset({
    "talk_s_agent", "talk_s_customer", "talk_s_unknown", "speech_s", "nontalk_s", "talk_ratio_agent",
    "rate_cpm_agent", "rate_cpm_customer", "rate_cpm_unknown",
})


def metrics_without_audio(
    turns: Sequence[Turn], duration_s: float, settings: MetricsSettings, *, timed: bool,
    muted: Sequence[tuple[float, float]] = (),
) -> tuple[tuple[Turn, ...], Metrics, tuple[Event, ...]]:
    """The metrics stage for a call with no audio (speechqa/metrics.py on the turns' spans).

    Loudness, shouting, overlaps and interruptions stay empty (None). With turn times, talk
    times, rates, silences and holds (gaps between turns), the first response and the
    response latency come from them; talk times and rates only when the turns have a length.
    Without times (``timed=False``) every metric is None and there are no metric events.
    """
    from speechqa import metrics

    if not timed:
        return tuple(turns), tuple((name, None) for name in metrics.METRIC_NAMES), ()
    turns, values, events = metrics.analyse(turns, None, 0, duration_s, settings, muted=muted)
    has_length = any(t.end > t.start for t in turns)
    blank = AUDIO_ONLY_METRICS | (frozenset() if has_length else TALK_METRICS)
    values = tuple((name, None if name in blank else value) for name, value in values)
    events = tuple(e for e in events if e.type in ("silence", "hold"))
    return tuple(turns), values, events
