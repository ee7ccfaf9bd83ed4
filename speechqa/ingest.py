"""Find the recordings of a batch: a folder (joined with its manifest) or a manifest CSV.

A manifest is a CSV with at least a ``file`` column (relative to the manifest's folder, or
absolute) and usually a ``call_id`` column; every other column (agent, team, tier ...) is
carried through to the outputs. Problems with single rows become failures, never exceptions,
so one bad line does not stop a night's batch.
"""

from __future__ import annotations

import csv
from pathlib import Path

from speechqa.calls import Failure, Recording
from speechqa.errors import InputError

AUDIO_SUFFIXES = frozenset(
    {".wav", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".oga", ".flac", ".wma", ".amr",
     ".webm", ".mp4", ".au", ".aif", ".aiff", ".gsm"}
)
MANIFEST_SUFFIXES = frozenset({".csv"})


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a manifest CSV (UTF-8, BOM allowed), with a ``file`` column checked."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            rows = [dict(row) for row in reader]
            header = reader.fieldnames or []
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable UTF-8 CSV ({exc})") from None
    if "file" not in header:
        raise InputError(f"{path}: manifest needs a 'file' column; it has {', '.join(header)}")
    return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in rows]


def _from_rows(rows: list[dict[str, str]], base: Path, manifest: Path) -> tuple[
    list[Recording], list[Failure]
]:
    recordings: list[Recording] = []
    failures: list[Failure] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        file = row.get("file", "")
        call_id = row.get("call_id") or Path(file).stem
        path = Path(file) if Path(file).is_absolute() else base / file
        if not file:
            failures.append(Failure(call_id or f"row{line}", str(manifest), "ingest",
                                    f"{manifest.name} line {line}: empty 'file' value"))
            continue
        if call_id in seen:
            failures.append(Failure(call_id, str(path), "ingest",
                                    f"{manifest.name} line {line}: duplicate call_id {call_id!r}"))
            continue
        seen.add(call_id)
        meta = tuple((k, v) for k, v in row.items() if k not in ("call_id", "file"))
        recordings.append(Recording(call_id=call_id, path=path, meta=meta))
    return recordings, failures


def discover(source: Path, manifest_name: str = "calls.csv") -> tuple[list[Recording], list[Failure]]:
    """The recordings of a batch, in a stable order, and the rows that could not be used.

    ``source`` is a manifest CSV, or a folder. A folder holding ``manifest_name`` is read
    through that manifest, and audio files in the folder that the manifest does not list are
    added with their file stem as call_id, so nothing a user dropped in is skipped.
    """
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() not in MANIFEST_SUFFIXES:
            raise InputError(f"{source}: give a folder of recordings or a manifest .csv")
        return _from_rows(read_manifest(source), source.parent, source)
    if not source.is_dir():
        raise InputError(f"{source}: no such folder or manifest")

    recordings: list[Recording] = []
    failures: list[Failure] = []
    manifest = source / manifest_name
    if manifest.is_file():
        recordings, failures = _from_rows(read_manifest(manifest), source, manifest)
    listed = {r.path.resolve() for r in recordings}
    ids = {r.call_id for r in recordings}
    for path in sorted(source.iterdir()):
        if path.suffix.lower() not in AUDIO_SUFFIXES or path.resolve() in listed:
            continue
        if path.stem in ids:
            failures.append(Failure(path.stem, str(path), "ingest",
                                    f"{path.name}: call_id {path.stem!r} is already used"))
            continue
        ids.add(path.stem)
        recordings.append(Recording(call_id=path.stem, path=path))
    return recordings, failures
