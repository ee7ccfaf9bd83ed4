"""Find the recordings of a batch: a folder (joined with its manifest) or a manifest CSV.

A manifest is a CSV with at least a ``file`` column (relative to the manifest's folder, or
absolute) and usually a ``call_id`` column; every other column (agent, team, tier ...) is
carried through to the outputs. Problems with single rows become failures, never exceptions,
so one bad line does not stop a night's batch.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from speechqa.calls import Failure, Recording
from speechqa.errors import InputError

AUDIO_SUFFIXES = frozenset(
    {".wav", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".oga", ".flac", ".wma", ".amr",
     ".webm", ".mp4", ".au", ".aif", ".aiff", ".gsm"}
)
MANIFEST_SUFFIXES = frozenset({".csv"})


ENCODINGS = ("utf-8-sig", "gb18030")  # gb18030 is a superset of GBK, what Chinese Excel saves


def decode_text(data: bytes) -> tuple[str, str] | None:
    """A CSV file's bytes as text, and the encoding that read them: UTF-8 (with or without a
    BOM), else GBK / GB18030 (Excel's default on a Chinese Windows machine); None when neither
    reads them."""
    for encoding in ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-8-sig":
            return text, "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
        return text, ("gbk" if _is_gbk(data) else "gb18030")
    return None


def _is_gbk(data: bytes) -> bool:
    try:
        data.decode("gbk")
    except UnicodeDecodeError:
        return False
    return True


def read_manifest(path: Path) -> tuple[list[dict[str, str]], str]:
    """Rows of a manifest CSV, with a ``file`` column checked, and the file's encoding."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found") from None
    except OSError as exc:
        raise InputError(f"{path}: manifest cannot be read ({exc.strerror})") from None
    decoded = decode_text(data)
    if decoded is None:
        raise InputError(f"{path}: not UTF-8 or GBK text; save the manifest as CSV UTF-8 (or GBK)")
    text, encoding = decoded
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = [dict(row) for row in reader]
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    if "file" not in header:
        raise InputError(f"{path}: manifest needs a 'file' column; it has {', '.join(header)}")
    return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in rows], encoding


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _from_rows(rows: list[dict[str, str]], base: Path, manifest: Path, allow_outside: bool = False) -> tuple[
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
        if not allow_outside and not _inside(path, base):
            failures.append(Failure(call_id, str(path), "ingest",
                                    f"{manifest.name} line {line}: {file!r} leads outside {base} "
                                    "(a .. path or a link); [batch] allow_outside = true allows it"))
            continue
        seen.add(call_id)
        meta = tuple((k, v) for k, v in row.items() if k not in ("call_id", "file"))
        recordings.append(Recording(call_id=call_id, path=path, meta=meta))
    return recordings, failures


@dataclass(frozen=True)
class Discovered:
    """A batch's recordings in a stable order, the rows and files that could not be used, and
    the manifest read (None for a folder without one) with its encoding."""

    recordings: list[Recording]
    failures: list[Failure]
    manifest: Path | None = None
    encoding: str = ""


def audio_files(root: Path) -> list[Path]:
    """The audio files under ``root``, at any depth (hidden folders such as a run's .cache
    skipped, linked folders not followed), in path order."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / f for f in files if Path(f).suffix.lower() in AUDIO_SUFFIXES
                     and not f.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _call_id(path: Path, root: Path, collides: bool) -> str:
    """A file's stem; where stems collide (queue1/c01.wav, queue2/c01.wav), its path under the
    root, the folders joined with ``-`` (queue1-c01)."""
    if not collides:
        return path.stem
    return "-".join(path.relative_to(root).with_suffix("").parts)


def discover(source: Path, manifest_name: str = "calls.csv", allow_outside: bool = False) -> Discovered:
    """The recordings of a batch, in a stable order, and the rows that could not be used.

    ``source`` is a manifest CSV, or a folder. A folder holding ``manifest_name`` is read
    through that manifest, and audio files anywhere under the folder that the manifest does
    not list are added (call_id: the file stem, or the relative path where stems collide), so
    nothing a user dropped in is skipped. A manifest row whose file leads outside the
    manifest's folder is refused unless ``allow_outside``.
    """
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() not in MANIFEST_SUFFIXES:
            raise InputError(f"{source}: give a folder of recordings or a manifest .csv")
        rows, encoding = read_manifest(source)
        return Discovered(*_from_rows(rows, source.parent, source, allow_outside), source, encoding)
    if not source.is_dir():
        raise InputError(f"{source}: no such folder or manifest")

    recordings: list[Recording] = []
    failures: list[Failure] = []
    manifest, encoding = source / manifest_name, ""
    if manifest.is_file():
        rows, encoding = read_manifest(manifest)
        recordings, failures = _from_rows(rows, source, manifest, allow_outside)
    listed = {r.path.resolve() for r in recordings}
    ids = {r.call_id for r in recordings}
    unlisted = [p for p in audio_files(source) if p.resolve() not in listed]
    stems = Counter(p.stem for p in unlisted)
    for path in unlisted:
        call_id = _call_id(path, source, stems[path.stem] > 1)
        if call_id in ids:
            failures.append(Failure(call_id, str(path), "ingest",
                                    f"{path.relative_to(source)}: call_id {call_id!r} is already used"))
            continue
        ids.add(call_id)
        recordings.append(Recording(call_id=call_id, path=path))
    return Discovered(recordings, failures, manifest if manifest.is_file() else None, encoding)
