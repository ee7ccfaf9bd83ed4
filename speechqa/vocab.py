"""Vocabulary data files: reading and validating the phrase lists under ``speechqa/data/``.

Every phrase list speechqa matches is a TOML file, one per concern, with a site override:

- ``escalation_zh.toml`` (``[sentiment] escalation_file``): escalation kinds, their spelled
  patterns and the canonical phrases matched by sound (speechqa/sentiment.py);
- ``sentiment_cues_zh.toml`` (``[sentiment] cues_file``): negative / positive cues, cue weights,
  negators and the neutral agent formulas (speechqa/sentiment.py);
- ``agent_cues_zh.toml`` (``[channels] agent_cues_file``): the agent's script, for telling the
  stereo channels apart (speechqa/asr.py);
- the scorecard (``[compliance] rules``) carries its own phrases and the clip tags of its items.

This module holds only the shared mechanics: find the file (empty path: the shipped one),
parse it, and check tables, keys, types and regular expressions, raising ConfigError that
names the file and the key. Each concern's loader lives beside the code that uses it, wrapped
in ``functools.lru_cache`` so that a file is read once per process.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechqa.errors import ConfigError

if TYPE_CHECKING:
    from speechqa.compliance import Scorecard
    from speechqa.config import Settings


def read_bytes(path: str, shipped: str, missing: str) -> tuple[bytes, str]:
    """The bytes of the data file at ``path`` (empty: ``speechqa/data/<shipped>``) and the name
    errors use; ``missing`` is what a missing file is called (``vocabulary file not found
    ([text] pii_cues_file)``)."""
    if not path:
        return (resources.files("speechqa") / "data" / shipped).read_bytes(), f"speechqa/data/{shipped}"
    try:
        return Path(path).read_bytes(), str(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None


def parse_toml(raw: bytes, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None


def read_toml(path: str, shipped: str, setting: str) -> tuple[dict[str, Any], str]:
    """The parsed TOML at ``path`` (empty: ``speechqa/data/<shipped>``) and the name errors use."""
    raw, source = read_bytes(path, shipped, f"vocabulary file not found ({setting})")
    return parse_toml(raw, source), source


def read_lists(path: str, shipped: str, setting: str, keys: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """A data file that is only lists of words (each of ``keys`` required, none other), checked."""
    data, source = read_toml(path, shipped, setting)
    c = Checker(source)
    c.table(data, "", keys, keys)
    return {key: c.strings(data[key], "", key) for key in keys}


def any_of(patterns: Iterable[str]) -> str:
    """A regex that matches any of ``patterns`` (regular expressions, each kept whole)."""
    return "|".join(f"(?:{p})" for p in patterns)


def alternation(words: Iterable[str]) -> str:
    """A regex that matches any of ``words`` as written, the longest first (a word wins over
    the shorter words it starts with); one that never matches when there are none."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) or "(?!)"


class Checker:
    """Type and key checks on one parsed file; every error names the file and where in it."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where + ': ' if where else ''}{message}")

    def table(self, value: Any, where: str, known: Sequence[str] = (), required: Sequence[str] = ()
              ) -> Mapping[str, Any]:
        """``value`` as a table whose keys are among ``known`` (any, when empty) and has ``required``."""
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a table, got {type(value).__name__}")
        if known:
            unknown = sorted(set(value) - set(known))
            if unknown:
                raise self.fail(where, f"unknown key {unknown[0]!r}; known: {', '.join(known)}")
        for key in required:
            if key not in value:
                raise self.fail(where, f"{key} is missing")
        return value

    def strings(self, value: Any, where: str, key: str, *, regex: bool = False,
                allow_empty: bool = False) -> tuple[str, ...]:
        """A non-empty list of non-empty strings; each a valid regular expression when ``regex``."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, f"{key} must be a list of strings")
        if not value and not allow_empty:
            raise self.fail(where, f"{key} must not be empty")
        for v in value:
            if not v:
                raise self.fail(where, f"{key}: empty string")
            if regex:
                try:
                    compiled = re.compile(v)
                except re.error as exc:
                    raise self.fail(where, f"{_singular(key)} {v!r} is not a valid regular expression ({exc})"
                                    ) from None
                if compiled.groupindex:
                    raise self.fail(where, f"{_singular(key)} {v!r}: named groups are not allowed, use (?:...)")
                if compiled.fullmatch(""):
                    raise self.fail(where, f"{_singular(key)} {v!r} matches empty text")
        return tuple(value)

    def number(self, value: Any, where: str, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"{key} must be a number, got {value!r}")
        return float(value)


def _singular(key: str) -> str:
    return key[:-1] if key.endswith("s") else key


def preload(settings: Settings, scorecard: Scorecard | None = None) -> None:
    """Load and validate every vocabulary file the settings name, so that a bad site file stops
    the run before any call, and make the sentiment files and the scorecard's clip tags the
    defaults of this process's stages (``pipeline.make_context`` calls it once)."""
    from speechqa import asr, clips, sentiment

    sentiment.use_vocabulary(settings.sentiment)
    asr.load_agent_cues(settings.channels.agent_cues_file)
    if scorecard is not None:
        clips.use_scorecard(scorecard)
