"""Settings: embedded defaults, then a TOML file, then ``SPEECHQA_*`` variables, then flags.

Each section of the TOML file maps to one frozen dataclass. Unknown keys are errors, because
a misspelt setting that is silently ignored costs a QA team a night of wrong output.
Environment variables are named ``SPEECHQA_<SECTION>_<KEY>`` (``SPEECHQA_ASR_BEAM_SIZE=1``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

from speechqa.errors import ConfigError


def _default_junk_phrases() -> tuple[str, ...]:
    """Phrases Whisper writes from silence or music (speechqa/data/junk_phrases_zh.toml)."""
    from speechqa.vocab import read_lists

    return read_lists("", "junk_phrases_zh.toml", "[guards] junk_phrases", ("phrases",))["phrases"]


DEFAULT_JUNK_PHRASES = _default_junk_phrases()


@dataclass(frozen=True)
class AsrSettings:
    """How Whisper runs. Everything here except the last two is part of the cache key."""

    model: str = "models/whisper-base"
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "auto"  # auto: int8 on CPU, float16 on CUDA
    language: str = "zh"  # a Whisper language code, or auto: detected per channel
    languages: tuple[str, ...] = ()  # auto: the languages to choose from (empty: any Whisper knows)
    beam_size: int = 5
    # auto: the call's language's own prompt and hotwords from prompts_file; any other text is
    # used as written, but only on calls in a language of its own script (a Chinese prompt is
    # never given to an English call); empty: none
    initial_prompt: str = "auto"
    hotwords: str = "auto"
    prompts_file: str = ""  # per-language prompts (TOML); empty: speechqa/data/asr_prompts_zh.toml
    vad_threshold: float = 0.5
    vad_min_silence_ms: int = 600
    vad_speech_pad_ms: int = 400  # 200 clipped soft word onsets (CER +0.2 points)
    condition_on_previous_text: bool = False
    seed: int = 0  # temperature fallback samples; fixed for reproducible transcripts
    batch_size: int = 8  # VAD chunks decoded together; 0: sequential decoding with fallback
    chunk_s: int = 30  # batched decoding: speech is packed into windows of at most this length
    fill_gaps: bool = True  # transcribe again, alone, speech the batched pass left without words
    workers: int = 0  # calls transcribed at once; 0: one per core on CPU, one on CUDA
    cpu_threads: int = 0  # threads per worker; 0: cores / workers


@dataclass(frozen=True)
class TurnSettings:
    """How raw segments become turns (post-processing; changing it needs no new ASR)."""

    gap_s: float = 0.7  # a pause this long between words starts a new turn
    max_s: float = 30.0  # never let one turn run longer than this
    script: str = "simplified"  # simplified | traditional | keep


@dataclass(frozen=True)
class GuardSettings:
    """Hallucination guards. A suspect turn is flagged, never dropped."""

    compression_ratio_max: float = 2.4
    no_speech_prob_min: float = 0.6
    no_speech_logprob_max: float = -1.0
    repeat_min: int = 5  # the same 1-2 character unit this many times in a row is a loop
    junk_phrases: tuple[str, ...] = DEFAULT_JUNK_PHRASES
    # a call whose transcript covers less of a role's detected speech is flagged low_coverage
    min_coverage: float = 0.8


@dataclass(frozen=True)
class LexiconSettings:
    """Homophone repair of domain terms (see speechqa/lexicon.py)."""

    enabled: bool = True
    builtin: bool = True  # the shipped call-centre term list
    terms_file: str = ""  # one term per line: products, company names, script phrases
    extra_terms: tuple[str, ...] = ()
    max_fuzzy: int = 1  # syllables allowed to differ by a fuzzy pair (zh/z, -ng/-n, n/l)
    common_word_freq: int = 50  # a heard span this common in jieba's dictionary is kept


@dataclass(frozen=True)
class ChannelSettings:
    """Which channel of a stereo file carries which party."""

    agent: int = 0
    customer: int = 1
    # Swap the two when the "customer" side plainly speaks the agent's script (greeting, 工号,
    # 为您服务 …) and the "agent" side does not: recorders are not always wired the same way.
    detect: bool = True
    agent_cues_file: str = ""  # the agent's script phrases (TOML); empty: speechqa/data/agent_cues_zh.toml


@dataclass(frozen=True)
class SpeakerSettings:
    """Mono calls: the two voices separated and the agent told from the customer
    (speechqa/diarize.py, speechqa/roles.py)."""

    diarise_mono: bool = True  # False: mono calls keep the role unknown, as before 0.10
    mixed_stereo: bool = False  # True: stereo files whose channels are both voices mixed, diarised as mono
    model: str = "models/speaker"  # speechqa models install puts the speaker models here
    step_s: float = 10.0  # segmentation windows (10 s) start this far apart
    chunk_s: float = 1.5  # each voice's own speech is embedded in chunks this long, and clustered
    min_embed_s: float = 0.5  # a stretch of own speech shorter than this is not embedded
    min_confidence: float = 0.8  # below: roles_uncertain, must review, role items N/A
    same_voice: float = 0.9  # the two voices' cosine at or above which they are one voice
    enrol: bool = True  # keep each named agent's voiceprint in the history store, from sure calls
    enrol_min_confidence: float = 0.95  # how sure a call must be to teach the agent's voiceprint


@dataclass(frozen=True)
class TextSettings:
    """Segmentation and PII redaction (see speechqa/text.py and speechqa/pii.py)."""

    user_words: tuple[str, ...] = ()  # extra jieba words: products, business terms, script phrases
    user_dict: str = ""  # a jieba user dictionary file ("word [freq] [tag]" per line)
    redact_pii: bool = True  # False only with --keep-pii; recorded in run.json
    pii_cues_file: str = ""  # number requests and read-backs; empty: speechqa/data/pii_zh.toml


@dataclass(frozen=True)
class SentimentSettings:
    """Turn and call sentiment (see speechqa/sentiment.py)."""

    model: str = ""  # empty: the model shipped in the package
    edge_turns: int = 2  # a role's start / end sentiment is the mean of its first / last N turns
    trajectory_delta: float = 0.15  # end minus start beyond this is improved / worsened
    escalation_file: str = ""  # escalation cues (TOML); empty: speechqa/data/escalation_zh.toml
    cues_file: str = ""  # sentiment cues (TOML); empty: speechqa/data/sentiment_cues_zh.toml


@dataclass(frozen=True)
class MetricsSettings:
    """Conversation metrics (see speechqa/metrics.py)."""

    silence_min_s: float = 5.0  # a gap with nobody talking at least this long is a silence event
    hold_min_s: float = 10.0  # a silence at least this long on both channels is a hold
    backchannel_max_s: float = 1.0  # a short 嗯 / 对 / 好的 over the other party is not an interruption
    interruption_min_overlap_s: float = 0.3  # shorter overlaps are crosstalk, not barge-in
    shout_db: float = 5.0  # a turn this many dB above the speaker's median level is shouting


@dataclass(frozen=True)
class ComplianceSettings:
    """The scorecard every call is checked against (see speechqa/compliance/)."""

    rules: str = ""  # a scorecard TOML file; empty: the shipped Mandarin service scorecard


@dataclass(frozen=True)
class StoreSettings:
    """The history database (see speechqa/store.py)."""

    db: str = "speechqa.db"  # a SQLite file, or a postgresql:// URL


@dataclass(frozen=True)
class SamplingSettings:
    """QA sampling, the last stage of a run (see speechqa/sampling.py)."""

    enabled: bool = True
    night: str = ""  # YYYY-MM-DD; empty: the most common started_at date in the manifest, else today
    seed: int = 0  # 0: derived from the night's date, so each night differs but re-runs agree
    must_review_sentiment: float = 0.15  # customer end sentiment below this must be reviewed
    long_hold_s: float = 20.0  # an unannounced hold at least this long must be reviewed
    risk_per_night: int = 5
    floor_per_period: int = 2  # reviews per agent per period, at least
    period_days: int = 7  # a period starts on a Monday when 7
    tenure_floor: tuple[int, ...] = (4, 3, 2, 2)  # per-period floor for months 0-3, 4-6, 7-18, 18+
    recognition_per_night: int = 2
    recognition_min_score: float = 95.0
    reviewers: tuple[str, ...] = ()
    reviewer_capacity: int = 20  # calls per reviewer per night


@dataclass(frozen=True)
class ClipSettings:
    """Training clips: how they are cut from a call, and how ``clips export`` writes them."""

    pad_s: float = 1.0  # context before and after the evidence
    min_s: float = 2.0  # shorter clips are widened evenly to this length
    max_s: float = 60.0  # longer ones are cut to this length (at a word boundary)
    mute_pii: bool = True  # export: zero the audio of masked PII spans
    format: str = "wav"  # export: wav (16-bit PCM) | mp3


@dataclass(frozen=True)
class ReportSettings:
    """The run's page, OUT/report.html (see speechqa/report.py)."""

    enabled: bool = True  # written at the end of every speechqa run
    page_size: int = 20  # flagged calls per page of the report
    font: str = ""  # a CJK font file to embed (subset to the page's characters); empty: found with
    #                 fontconfig; "none": embed none (the reader's own fonts then)
    clips_dir: str = ""  # a `speechqa clips export` folder to link; empty: OUT/clips when it holds clips.csv


@dataclass(frozen=True)
class BatchSettings:
    cache_dir: str = ""  # empty: OUT/.cache
    manifest_name: str = "calls.csv"  # joined when the input is a folder holding it
    allow_outside: bool = False  # a manifest row may name a file outside its folder (.., links, absolute)
    executor: str = "local"  # local: worker threads sharing one model | process: one model per process | ray
    ray_address: str = ""  # ray: "" starts a Ray on this machine; auto, or ray://host:port, joins a cluster
    shard: str = ""  # this run's share of a night split across runs (any label); empty: the whole night


EXECUTORS = ("local", "process", "ray")


@dataclass(frozen=True)
class Settings:
    asr: AsrSettings = field(default_factory=AsrSettings)
    turns: TurnSettings = field(default_factory=TurnSettings)
    guards: GuardSettings = field(default_factory=GuardSettings)
    lexicon: LexiconSettings = field(default_factory=LexiconSettings)
    channels: ChannelSettings = field(default_factory=ChannelSettings)
    speakers: SpeakerSettings = field(default_factory=SpeakerSettings)
    text: TextSettings = field(default_factory=TextSettings)
    sentiment: SentimentSettings = field(default_factory=SentimentSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    compliance: ComplianceSettings = field(default_factory=ComplianceSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    clips: ClipSettings = field(default_factory=ClipSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data, for run.json: a database password never appears."""
        data = dataclasses.asdict(self)
        data.pop("source")
        if "://" in data["store"]["db"]:  # a database URL: SQLAlchemy renders it with *** for a password
            from speechqa.store import describe_url

            data["store"]["db"] = describe_url(data["store"]["db"])
        return data


_SECTIONS = tuple(f.name for f in fields(Settings) if f.name != "source")


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Convert a TOML or environment value to the type of the field's default."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(value, bool) and not isinstance(default, bool):
            raise ValueError(value)  # beam_size = true is a mistake, not 1
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                items = [v.strip() for v in value.split("|") if v.strip()]
            else:
                items = list(value)
            if default and all(isinstance(d, int) for d in default):
                return tuple(int(v) for v in items)
            return tuple(str(v) for v in items)
        if isinstance(default, str):
            if not isinstance(value, str | int | float):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where} must be {type(default).__name__}, got {value!r}"
        ) from None
    return value


def _apply(settings: Settings, overrides: Mapping[str, Mapping[str, Any]], origin: str) -> Settings:
    changed = {}
    for section, values in overrides.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{section}]; known: {', '.join(_SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        current = getattr(settings, section)
        names = {f.name: f for f in fields(current)}
        updates = {}
        for key, value in values.items():
            if key not in names:
                raise ConfigError(
                    f"{origin}: [{section}] unknown key {key!r}; known: {', '.join(names)}"
                )
            updates[key] = _coerce(value, getattr(current, key), f"{origin}: [{section}] {key}")
        changed[section] = dataclasses.replace(current, **updates)
    return dataclasses.replace(settings, **changed)


def _from_env(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for section in _SECTIONS:
        for f in fields(getattr(Settings(), section)):
            name = f"SPEECHQA_{section.upper()}_{f.name.upper()}"
            if name in environ:
                found.setdefault(section, {})[f.name] = environ[name]
    return found


def _is_date(text: str) -> bool:
    if not text:
        return True
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def whisper_languages() -> frozenset[str]:
    """The language codes Whisper knows (faster-whisper's table)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def validate(settings: Settings) -> Settings:
    """Check value ranges; raise ConfigError naming the setting and its origin."""
    origin = settings.source
    a, t, g, c = settings.asr, settings.turns, settings.guards, settings.channels
    m = settings.metrics
    sp = settings.speakers
    checks = [
        (sp.step_s >= 1.0, "[speakers] step_s must be >= 1"),
        (0 < sp.min_embed_s <= sp.chunk_s, "[speakers] min_embed_s must be > 0 and <= chunk_s"),
        (0 <= sp.min_confidence <= 1, "[speakers] min_confidence must be between 0 and 1"),
        (0 <= sp.enrol_min_confidence <= 1, "[speakers] enrol_min_confidence must be between 0 and 1"),
        (-1 <= sp.same_voice <= 1, "[speakers] same_voice must be between -1 and 1"),
        (a.device in ("auto", "cpu", "cuda"), "[asr] device must be auto, cpu or cuda"),
        (
            a.compute_type
            in ("auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16",
                "float16", "bfloat16", "float32", "default"),
            "[asr] compute_type must be a CTranslate2 compute type such as int8 or float16",
        ),
        (a.beam_size >= 1, "[asr] beam_size must be >= 1"),
        (0 < a.vad_threshold < 1, "[asr] vad_threshold must be between 0 and 1"),
        (a.vad_min_silence_ms >= 0, "[asr] vad_min_silence_ms must be >= 0"),
        (a.vad_speech_pad_ms >= 0, "[asr] vad_speech_pad_ms must be >= 0"),
        (a.cpu_threads >= 0, "[asr] cpu_threads must be >= 0"),
        (a.workers >= 0, "[asr] workers must be >= 0"),
        (settings.batch.executor in EXECUTORS, f"[batch] executor must be {' or '.join(EXECUTORS)}"),
        (a.batch_size >= 0, "[asr] batch_size must be >= 0"),
        (1 <= a.chunk_s <= 30, "[asr] chunk_s must be between 1 and 30"),
        (a.language == "auto" or a.language in whisper_languages(),
         f"[asr] language must be auto or a Whisper language code such as zh or en, got {a.language!r}"),
        (all(lang in whisper_languages() for lang in a.languages),
         f"[asr] languages must be Whisper language codes such as zh or en, got {list(a.languages)}"),
        (t.gap_s > 0, "[turns] gap_s must be > 0"),
        (t.max_s > t.gap_s, "[turns] max_s must be > gap_s"),
        (t.script in ("simplified", "traditional", "keep"),
         "[turns] script must be simplified, traditional or keep"),
        (g.compression_ratio_max > 1, "[guards] compression_ratio_max must be > 1"),
        (0 < g.no_speech_prob_min <= 1, "[guards] no_speech_prob_min must be in (0, 1]"),
        (g.repeat_min >= 2, "[guards] repeat_min must be >= 2"),
        (0 <= g.min_coverage <= 1, "[guards] min_coverage must be between 0 and 1"),
        (settings.lexicon.max_fuzzy >= 0, "[lexicon] max_fuzzy must be >= 0"),
        (c.agent >= 0 and c.customer >= 0, "[channels] channel numbers must be >= 0"),
        (c.agent != c.customer, "[channels] agent and customer must be different channels"),
        (settings.sentiment.edge_turns >= 1, "[sentiment] edge_turns must be >= 1"),
        (0 <= settings.sentiment.trajectory_delta < 1, "[sentiment] trajectory_delta must be in [0, 1)"),
        (m.silence_min_s > 0, "[metrics] silence_min_s must be > 0"),
        (m.hold_min_s >= m.silence_min_s, "[metrics] hold_min_s must be >= silence_min_s"),
        (m.backchannel_max_s >= 0, "[metrics] backchannel_max_s must be >= 0"),
        (m.interruption_min_overlap_s >= 0, "[metrics] interruption_min_overlap_s must be >= 0"),
        (m.shout_db > 0, "[metrics] shout_db must be > 0"),
        (len(settings.sampling.tenure_floor) == 4,
         "[sampling] tenure_floor must give 4 numbers: months 0-3, 4-6, 7-18, 18+"),
        (settings.sampling.period_days >= 1, "[sampling] period_days must be >= 1"),
        (min(settings.sampling.risk_per_night, settings.sampling.floor_per_period,
             settings.sampling.recognition_per_night, *settings.sampling.tenure_floor) >= 0,
         "[sampling] risk_per_night, floor_per_period, recognition_per_night and tenure_floor must be >= 0"),
        (0 <= settings.sampling.recognition_min_score <= 100, "[sampling] recognition_min_score must be 0-100"),
        (0 <= settings.sampling.must_review_sentiment <= 1, "[sampling] must_review_sentiment must be 0-1"),
        (settings.sampling.long_hold_s >= 0, "[sampling] long_hold_s must be >= 0"),
        (settings.sampling.reviewer_capacity >= 1, "[sampling] reviewer_capacity must be >= 1"),
        (settings.report.page_size >= 1, "[report] page_size must be >= 1"),
        (_is_date(settings.sampling.night), "[sampling] night must be a date YYYY-MM-DD"),
        (bool(settings.store.db), "[store] db must not be empty"),
        (settings.clips.pad_s >= 0, "[clips] pad_s must be >= 0"),
        (settings.clips.min_s > 0, "[clips] min_s must be > 0"),
        (settings.clips.max_s >= settings.clips.min_s, "[clips] max_s must be >= min_s"),
        (settings.clips.format in ("wav", "mp3"), "[clips] format must be wav or mp3"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{origin}: {message}")
    return settings


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Defaults, then the TOML file, then the environment, then ``overrides`` (flags)."""
    environ = os.environ if environ is None else environ
    settings = Settings()
    if path is None and environ.get("SPEECHQA_CONFIG"):
        path = Path(environ["SPEECHQA_CONFIG"])
    origin = "<defaults>"
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        settings = _apply(settings, data, str(path))
        origin = str(path)
    env = _from_env(environ)
    if env:
        settings = _apply(settings, env, "environment")
    if overrides:
        settings = _apply(settings, {k: v for k, v in overrides.items() if v}, "command line")
    return validate(dataclasses.replace(settings, source=origin))
