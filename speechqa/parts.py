"""Per-call parts: each call's result on disk the moment it is finished.

A night's tables are assembled from its parts (speechqa/pipeline.py ``_finish``), a few calls
at a time, so memory does not grow with the night. A part sits in ``OUT/.parts`` under a name
derived from its call_id and holds the call's :class:`~speechqa.calls.CallResult` with two
keys:

- ``key``: what produced the analysis: the transcript (the ASR cache key: audio hash, model
  and every Whisper setting; or, for an imported call, a digest of its turns), the recording
  and its manifest columns, every setting of the stages after ASR, the content of every file
  those settings name, and speechqa's own code;
- ``scoring``: the scorecard that scored it.

A rerun takes a call from its part when ``key`` is current, with no decode and no analysis;
when only ``scoring`` differs, only compliance runs again. Clip and sampling settings are
applied when the tables are assembled, so they need no key.

Parts are pickles written atomically (0600, in a folder only the user enters): they hold
unmasked text, as the transcript cache does, and are read from nowhere else. A part that
cannot be read is treated as absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, overload

from speechqa.calls import CallResult, Recording
from speechqa.compliance import Scorecard
from speechqa.config import Settings
from speechqa.files import checkpoint, private_dir, sweep_temp_files, write_atomic

PART_FORMAT = 1
PARTS_DIR = ".parts"
# the settings sections read by the stages after ASR (turns, text, sentiment, metrics, flags)
ANALYSIS_SECTIONS = ("channels", "turns", "guards", "lexicon", "text", "sentiment", "metrics")


@dataclass(frozen=True)
class Part:
    call_id: str
    key: str
    scoring: str
    result: CallResult
    format: int = PART_FORMAT


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A digest of speechqa's own modules and data files: a part written by other code is stale."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml", ".txt", ".json", ".tsv", ".csv"):
            h.update(str(path.relative_to(package)).encode("utf-8"))
            h.update(path.read_bytes())
    return h.hexdigest()


def _content(path: str) -> str:
    """The digest of a file (or a folder's files) a setting names; empty when it names none."""
    if not path:
        return ""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode("utf-8"))
        h.update(f.read_bytes())
    return h.hexdigest() if files else f"missing:{path}"


def settings_digest(settings: Settings) -> str:
    """The run-wide half of every call's :func:`analysis_key`: the analysis settings, the
    content of the files they name and the code. Computed once per run (pipeline.make_context),
    not per call: a named sentiment model folder would otherwise be read for every call."""
    sections = {name: dataclasses.asdict(getattr(settings, name)) for name in ANALYSIS_SECTIONS}
    files = {f"{name}.{k}": _content(v) for name, section in sections.items() for k, v in section.items()
             if isinstance(v, str) and (k.endswith("_file") or k in ("user_dict", "model"))}
    return _json_digest({"format": PART_FORMAT, "code": code_fingerprint(), "settings": sections,
                         "files": files})


def analysis_key(heard: str, rec: Recording, settings_key: str) -> str:
    """The key of a call's analysis: ``heard`` (the transcript's own key), the recording with
    its manifest columns, and the run's :func:`settings_digest`."""
    recording = [rec.call_id, str(rec.path), [list(kv) for kv in rec.meta]]
    return _json_digest({"heard": heard, "recording": recording, "settings": settings_key})


def _json_digest(value: Any) -> str:
    payload = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def scoring_key(scorecard: Scorecard | None) -> str:
    return scorecard.sha256 if scorecard is not None else ""


def digest(*values: Any) -> str:
    """A stable digest of plain values (an imported call's turns, by their repr)."""
    return hashlib.sha256(repr(values).encode("utf-8")).hexdigest()


class PartStore:
    """The parts of one output folder (``OUT/.parts``), private to the user who runs the batch."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, call_id: str) -> Path:
        name = hashlib.sha256(call_id.encode("utf-8")).hexdigest()
        return self.folder / name[:2] / f"{name}.pkl"

    def load(self, call_id: str) -> Part | None:
        try:
            with open(self.path(call_id), "rb") as fh:
                part = pickle.load(fh)
        except Exception:  # none yet, a part from an older speechqa, or damaged: do the call again
            return None
        if not isinstance(part, Part) or part.format != PART_FORMAT or part.call_id != call_id:
            return None
        return part

    def save(self, part: Part) -> None:
        path = self.path(part.call_id)
        private_dir(self.folder)
        path.parent.mkdir(mode=0o700, exist_ok=True)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                pickle.dump(part, fh, protocol=pickle.HIGHEST_PROTOCOL)
            checkpoint("part")  # the part in its temp file, not yet renamed

        write_atomic(path, write, mode=0o600)

    def result(self, call_id: str) -> CallResult:
        part = self.load(call_id)
        if part is None:
            raise FileNotFoundError(f"{self.path(call_id)}: the part of call {call_id} is gone")
        return part.result

    def sweep(self) -> None:
        """Remove the temp files a killed run left (only under the run lock)."""
        for sub in self.folder.glob("*/"):
            sweep_temp_files(sub)

    def prune(self, keep: set[str]) -> int:
        """Remove the parts of calls not in ``keep`` (an earlier night's, in a reused OUT)."""
        wanted = {self.path(c) for c in keep}
        gone = 0
        for path in self.folder.glob("*/*.pkl"):
            if path not in wanted:
                path.unlink(missing_ok=True)
                gone += 1
        for sub in self.folder.glob("*"):
            if sub.is_dir() and not any(sub.iterdir()):
                os.rmdir(sub)
        return gone


class Results(Sequence[CallResult]):
    """A run's processed calls, in batch order, read from their parts when asked for: a night
    of any size costs its call_ids in memory, not its turns and words."""

    def __init__(self, store: PartStore, call_ids: Sequence[str]):
        self.store = store
        self.call_ids = tuple(call_ids)

    def __len__(self) -> int:
        return len(self.call_ids)

    @overload
    def __getitem__(self, i: int) -> CallResult: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[CallResult]: ...

    def __getitem__(self, i: int | slice) -> CallResult | Sequence[CallResult]:
        if isinstance(i, slice):
            return Results(self.store, self.call_ids[i])
        return self.store.result(self.call_ids[i])

    def __iter__(self) -> Iterator[CallResult]:
        for call_id in self.call_ids:
            yield self.store.result(call_id)

    def chunks(self, size: int) -> Iterator[list[CallResult]]:
        for i in range(0, len(self.call_ids), size):
            yield [self.store.result(c) for c in self.call_ids[i:i + size]]
