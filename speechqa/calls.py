"""The data model: small frozen records that the stages pass along.

Times are seconds in call time (float). Ids are deterministic and readable, in the lhotse
manner: a turn id looks like ``c0042-agent-0007``. A stage never changes a record in place;
it returns a copy (``dataclasses.replace``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
    language: str = ""  # what the channel was decoded as (detected with [asr] language = auto)
    language_probability: float | None = None  # Whisper's, when detected


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
    speaker: int = -1  # the voice (0 or 1) on a diarised mono call (speechqa/diarize.py); -1 otherwise
    # Filled by the text stage: PII masked in text and words, then normalised and segmented.
    match_text: str = ""  # normalised form that later stages match against
    tokens: tuple[str, ...] = ()  # jieba tokens of the display text
    redactions: tuple[str, ...] = ()  # PII kinds masked in this turn, one entry per span
    # Filled by the sentiment and metrics stages.
    sentiment: float | None = None  # [0, 1]; 0.5 and above is positive
    loudness_dbfs: float | None = None  # RMS level of the turn on its own channel
    shouting: bool = False  # well above the speaker's own median level

    @property
    def duration(self) -> float:
        return self.end - self.start


UNHEARD_FLAGS = frozenset({"prompt_echo"})  # a turn so flagged is not what was said (speechqa/coverage.py)


def is_unheard(turn: Turn) -> bool:
    """Whether ``turn`` holds text nobody said (a prompt echo): no evidence, no sentiment."""
    return not UNHEARD_FLAGS.isdisjoint(turn.flags)


# What the calls table's ``flags`` says of a call as a whole.
CALL_FLAGS = (
    "low_coverage",  # speech the transcript does not cover: a missing word, not a missing script item
    "language_not_scored",  # a language the scorecard is not written for: every item N/A
    "prompt_echo",  # turns that echo Whisper's prompt (n_prompt_echo_turns)
    "no_words",  # nothing was transcribed (silence, noise, music, a dropped line): not scored
    "roles_uncertain",  # a mono call whose agent and customer could not be told apart surely: role items N/A
)


@dataclass(frozen=True)
class Event:
    """A time span of a call worth a look: a silence, hold, interruption, escalation or redaction.

    ``type`` is one of ``silence``, ``hold``, ``interruption``, ``overlap``, ``escalation``,
    ``redaction``. ``role`` is who it belongs to (the interrupter, the one who threatened, the
    speaker whose words were masked), or ``both`` for silences and holds. ``detail`` is a short
    machine-readable string: the escalation kind, the PII kind, the interrupted role.
    """

    call_id: str
    type: str
    role: str
    start: float
    end: float
    detail: str = ""
    turn_id: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class RoleSentiment:
    """One role's sentiment over a call (None when the role never spoke)."""

    start: float | None = None
    end: float | None = None
    min: float | None = None
    mean: float | None = None


SENTIMENT_COLUMNS: tuple[str, ...] = tuple(
    f"{role}_sentiment_{what}" for role in ("customer", "agent") for what in ("start", "end", "min", "mean")
)


@dataclass(frozen=True)
class CallSentiment:
    customer: RoleSentiment = RoleSentiment()
    agent: RoleSentiment = RoleSentiment()
    trajectory: str = "unknown"  # customer's: improved | worsened | flat | unknown

    def columns(self) -> dict[str, float | None]:
        """The flat ``{role}_sentiment_{what}`` values, as in the ``calls`` table and rules."""
        return {name: getattr(getattr(self, name.split("_")[0]), name.rsplit("_", 1)[1])
                for name in SENTIMENT_COLUMNS}


@dataclass(frozen=True)
class RuleResult:
    """One scorecard item on one call: pass, fail or na, with the evidence a reviewer checks."""

    call_id: str
    item_id: str
    outcome: str  # pass | fail | na
    points: float
    max_points: float
    evidence_turn_id: str = ""
    evidence_start: float | None = None
    evidence_end: float | None = None
    evidence_text: str = ""
    match_score: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Compliance:
    """A call's scorecard result."""

    score: float  # 0-100 over the items that apply; 0 when an auto-fail item failed
    auto_fail: bool
    results: tuple[RuleResult, ...]
    scorecard: str = ""  # "name version"
    scorecard_sha256: str = ""

    @property
    def failed_items(self) -> tuple[str, ...]:
        return tuple(r.item_id for r in self.results if r.outcome == "fail")


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
    events: tuple[Event, ...] = ()  # sorted by start
    sentiment: CallSentiment = CallSentiment()
    metrics: tuple[tuple[str, float | int | None], ...] = ()  # see speechqa/metrics.py
    compliance: Compliance | None = None
    language: str = ""  # the call's language: Whisper's (forced or detected), or the import's column
    flags: tuple[str, ...] = ()  # what a reviewer should know of the call as a whole (CALL_FLAGS)
    roles: Any = None  # how the turns got their roles: speechqa.roles.RoleDecision (None: imported)
