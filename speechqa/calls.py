"""The data model: small frozen records that the stages pass along.

Times are seconds in call time (float). Ids are deterministic and readable, in the lhotse
manner: a turn id looks like ``c0042-agent-0007``. A stage never changes a record in place;
it returns a copy (``dataclasses.replace``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Role = Literal["agent", "customer", "unknown"]
ROLES: tuple[Role, ...] = ("agent", "customer", "unknown")


@dataclass(frozen=True)
class Recording:
    """An audio file to process, with the manifest columns that came with it."""

    call_id: str
    path: Path
    meta: tuple[tuple[str, str], ...] = ()  # manifest columns, in manifest order

    @property
    def meta_dict(self) -> dict[str, str]:
        return dict(self.meta)


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    """One Whisper segment of one channel, as decoded (before turn splitting)."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class ChannelTranscript:
    """Whisper's raw output for one audio channel. This is what the ASR cache stores."""

    channel: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Transcript:
    """Everything ASR produced for one recording, independent of where the file lives."""

    audio_sha256: str
    duration_s: float
    n_channels: int
    sample_rate: int
    channels: tuple[ChannelTranscript, ...]
    asr_seconds: float
    language: str


@dataclass(frozen=True)
class Turn:
    """About one utterance by one speaker, split at real pauses."""

    call_id: str
    turn_id: str
    role: Role
    channel: int
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    flags: tuple[str, ...] = ()
    corrections: tuple[str, ...] = ()  # lexicon repairs, as "heard→term"
    words: tuple[Word, ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Failure:
    """A recording the batch could not finish, and why."""

    call_id: str
    path: str
    stage: str
    reason: str


@dataclass(frozen=True)
class CallResult:
    """The outcome for one recording that went through the pipeline."""

    recording: Recording
    duration_s: float
    n_channels: int
    turns: tuple[Turn, ...]
    asr_seconds: float
    cached: bool
    audio_sha256: str
    timings: tuple[tuple[str, float], ...] = field(default=())
