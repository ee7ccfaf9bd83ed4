"""Whisper (faster-whisper / CTranslate2) for call audio: one transcript per channel.

- The model loads once per process, lazily (``load_model``: cached, thread-safe), and is
  shared by the worker threads.
- Silero VAD (bundled with faster-whisper) skips silence and holds; Whisper sees only speech,
  in VAD chunks decoded as a batch.
- Raw segments with word timestamps are cached, keyed by audio content, model checksum and
  the settings that change what Whisper outputs. Turn splitting, script conversion and the
  hallucination guards run after the cache, so tuning them never forces a new ASR pass.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from speechqa.audio import (
    PIECE_S,
    SKIPPED_MIN_S,
    Audio,
    activity,
    frame_levels,
    frames_of,
    runs_from_mask,
    sounds_like_talk,
    words_mask,
)
from speechqa.calls import ChannelTranscript, Role, Segment, Transcript, Turn, Word
from speechqa.config import AsrSettings, ChannelSettings, GuardSettings, TurnSettings, whisper_languages
from speechqa.diarize import SpeakerTurn, speaker_at, voice_table
from speechqa.errors import ModelError
from speechqa.files import private_dir, write_text_atomic
from speechqa.lexicon import LEXICON_LANGUAGES, Lexicon, apply_corrections, find_corrections
from speechqa.text import loop_pattern, repair_slips, squash

# Bump when the cached JSON layout or what we ask Whisper for changes.
CACHE_FORMAT = 3  # 3: gap fill inside partly transcribed speech, prompt echoes replaced


# --- model ---------------------------------------------------------------------------------


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(device: str, compute_type: str) -> str:
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def resolve_workers(device: str, workers: int, cpu_threads: int) -> tuple[int, int]:
    """(workers, threads per worker). On CPU, several single-threaded workers beat one
    multi-threaded one: Whisper's decoder steps are too small to spread over cores."""
    if device == "cuda":
        return max(workers, 1), max(cpu_threads, 1)
    cores = os.cpu_count() or 1
    workers = workers or cores
    return workers, cpu_threads or max(1, cores // workers)


_LOAD_LOCK = threading.Lock()


def load_model(model_dir: str, device: str, compute_type: str, cpu_threads: int, num_workers: int):
    """The WhisperModel for these arguments, built once per process (thread-safe)."""
    with _LOAD_LOCK:
        return _load_model(model_dir, device, compute_type, cpu_threads, num_workers)


@lru_cache(maxsize=2)
def _load_model(model_dir: str, device: str, compute_type: str, cpu_threads: int, num_workers: int):
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(
            model_dir,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,  # lets that many threads run the model at once
            local_files_only=True,  # never reach for the hub
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"{model_dir}: cannot load the Whisper model on {device} ({exc})") from exc


# --- language and prompt -------------------------------------------------------------------

PROMPTS_FILE = "asr_prompts_zh.toml"
# Languages written in Han characters (a prompt in them suits only these), and the other
# scripts with their languages; any other language is written in another script.
_HAN_LANGUAGES = frozenset({"zh", "yue", "ja"})
_SCRIPTS = ((re.compile(r"[\u3040-\u30ff]"), frozenset({"ja"})),
            (re.compile(r"[\uac00-\ud7af\u1100-\u11ff]"), frozenset({"ko"})),
            (re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]"), _HAN_LANGUAGES))


@dataclass(frozen=True)
class Prompt:
    """What Whisper is primed with on one channel: ``prompt`` and ``hotwords`` (empty: none)."""

    language: str
    prompt: str = ""
    hotwords: str = ""

    @property
    def text(self) -> str:
        """Everything Whisper is primed with, as one text: what an echo would repeat."""
        return f"{self.prompt} {self.hotwords}".strip()


@lru_cache(maxsize=8)
def load_prompts(path: str = "") -> dict[str, Prompt]:
    """The per-language prompt table at ``path`` (empty: speechqa/data/asr_prompts_zh.toml),
    validated: a table per Whisper language code, each with ``prompt`` and ``hotwords``
    strings, written in that language's script. Raises ConfigError naming the file and key."""
    from speechqa.vocab import Checker, read_toml

    data, source = read_toml(path, PROMPTS_FILE, "[asr] prompts_file")
    c = Checker(source)
    table: dict[str, Prompt] = {}
    for language, entry in data.items():
        if language not in whisper_languages():
            raise c.fail(f"[{language}]", "not a Whisper language code (zh, en, yue, ...)")
        entry = c.table(entry, f"[{language}]", ("prompt", "hotwords"), ("prompt",))
        texts = {}
        for key in ("prompt", "hotwords"):
            value = entry.get(key, "")
            if not isinstance(value, str):
                raise c.fail(f"[{language}]", f"{key} must be a string")
            if value and not fits_language(value, language):
                raise c.fail(f"[{language}]", f"{key} is not written in {language}'s script: Whisper "
                             "would echo it instead of the call")
            texts[key] = value.strip()
        table[language] = Prompt(language, texts["prompt"], texts["hotwords"])
    return table


def fits_language(text: str, language: str) -> bool:
    """Whether ``text`` may prime a call in ``language``: Han characters only for Chinese,
    Cantonese and Japanese, kana only for Japanese, hangul only for Korean. Latin letters fit
    every language (product names such as iPhone are part of Chinese service talk)."""
    return all(language in languages for pattern, languages in _SCRIPTS if pattern.search(text))


def prompt_for(settings: AsrSettings, language: str) -> Prompt:
    """The prompt and hotwords for a channel in ``language``: ``auto`` takes the language's own
    entry of the prompt table (none when it has none); a written prompt or hotword list is
    used only when it fits the language's script (fits_language), so that a Mandarin prompt is
    never given to an English call."""
    table = load_prompts(settings.prompts_file)
    own = table.get(language, Prompt(language))
    prompt = own.prompt if settings.initial_prompt == "auto" else settings.initial_prompt.strip()
    hotwords = own.hotwords if settings.hotwords == "auto" else settings.hotwords.strip()
    return Prompt(language, prompt if fits_language(prompt, language) else "",
                  hotwords if fits_language(hotwords, language) else "")


ECHO_MIN_CHARS = 4  # characters in a row from the prompt that make a text an echo candidate
ECHO_SHARE = 0.5  # ... and the share of the text they must be


def prompt_fragment(text: str, prompt: str) -> str:
    """The longest run of ``text``'s characters (letters and digits only) that comes from
    ``prompt``, when it makes ``text`` an echo candidate: at least ``ECHO_MIN_CHARS`` in a row
    and ``ECHO_SHARE`` of the text (speechqa/coverage.py); else empty."""
    mine, theirs = squash(text), squash(prompt)  # text.squash: folded letters and digits only
    if not mine or not theirs:
        return ""
    m = SequenceMatcher(None, mine, theirs, autojunk=False).find_longest_match(0, len(mine), 0, len(theirs))
    if m.size < ECHO_MIN_CHARS or m.size < ECHO_SHARE * len(mine):
        return ""
    return mine[m.a:m.a + m.size]


LANGUAGE_SEGMENTS = 3  # 30 s windows of a channel's speech that language detection may read


def detect_language(model, samples: np.ndarray, settings: AsrSettings) -> tuple[str, float]:
    """The language of one channel's speech (VAD first: silence and hold music say nothing)
    and its probability; with ``settings.languages``, the likeliest of those. ("", 0.0) when
    the channel has no speech."""
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    chunks = get_speech_timestamps(samples, VadOptions(**_vad_parameters(settings)))
    if not chunks:
        return "", 0.0
    speech = np.concatenate(collect_chunks(samples, chunks)[0])
    language, probability, ranked = model.detect_language(speech, language_detection_segments=LANGUAGE_SEGMENTS)
    if settings.languages and language not in settings.languages:
        allowed = [(lang, p) for lang, p in ranked if lang in settings.languages]
        language, probability = max(allowed, key=lambda lp: lp[1]) if allowed else (settings.languages[0], 0.0)
    return language, round(float(probability), 4)


def _spoken(channels: Iterable[ChannelTranscript]) -> dict[str, float]:
    """Transcribed speech time (word time, else segment time) per decoded language."""
    spoken: dict[str, float] = {}
    for ch in channels:
        if ch.language:
            talk = sum(w.end - w.start for s in ch.segments for w in s.words) or sum(
                s.end - s.start for s in ch.segments)
            spoken[ch.language] = spoken.get(ch.language, 0.0) + talk
    return spoken


def _most(spoken: dict[str, float], fallback: str) -> str:
    return max(spoken, key=lambda lang: (spoken[lang], lang)) if spoken else fallback


def call_language(channels: Sequence[ChannelTranscript], fallback: str) -> str:
    """The language most of a call's transcribed speech is in (word time per channel), else
    ``fallback``."""
    return _most(_spoken(channels), fallback)


def join_pieces(heard: Sequence[tuple[float, Transcript]], fallback: str) -> Transcript:
    """One recording's transcript from its pieces' transcripts (audio.pieces), each with the
    piece's offset in seconds: segments and words moved to the recording's time, each channel
    in the language most of its speech was heard in. One piece is returned as it is."""
    if len(heard) == 1 and heard[0][0] == 0.0:
        return heard[0][1]
    first = heard[0][1]
    channels = []
    for ch in range(first.n_channels):
        parts = [(offset, t.channels[ch]) for offset, t in heard]
        language = _most(_spoken(c for _, c in parts), parts[0][1].language)
        probability = max((c.language_probability for _, c in parts
                           if c.language == language and c.language_probability is not None), default=None)
        segments = tuple(_shifted(s, offset) for offset, c in parts for s in c.segments)
        channels.append(ChannelTranscript(ch, segments, language, probability))
    last_offset, last = heard[-1]
    return Transcript(first.audio_sha256, round(last_offset + last.duration_s, 3), first.n_channels,
                      first.sample_rate, tuple(channels), round(sum(t.asr_seconds for _, t in heard), 3),
                      call_language(channels, fallback))


def _shifted(s: Segment, offset: float) -> Segment:
    if not offset:
        return s
    words = tuple(dataclasses.replace(w, start=round(w.start + offset, 3), end=round(w.end + offset, 3))
                  for w in s.words)
    return dataclasses.replace(s, start=round(s.start + offset, 3), end=round(s.end + offset, 3), words=words)


# --- decoding ------------------------------------------------------------------------------


def _vad_parameters(settings: AsrSettings) -> dict[str, Any]:
    return {
        "threshold": settings.vad_threshold,
        "min_silence_duration_ms": settings.vad_min_silence_ms,
        "speech_pad_ms": settings.vad_speech_pad_ms,
    }


def transcribe_channel(model, samples: np.ndarray, channel: int, settings: AsrSettings) -> ChannelTranscript:
    """Whisper on one channel of 16 kHz float32 audio, with VAD and word timestamps.

    With ``batch_size`` > 0 (the default) the VAD chunks are decoded together by
    faster-whisper's batched pipeline: each chunk stands alone, which is both faster and
    keeps one misheard phrase from looping over the rest of the call. With 0, chunks are
    decoded in order with temperature fallback (seeded, so re-runs agree).
    """
    language, probability = settings.language, None
    if language == "auto":
        language, probability = detect_language(model, samples, settings)
        if not language:  # no speech on this channel: nothing to transcribe
            return ChannelTranscript(channel=channel, segments=(), language="", language_probability=0.0)
    primed = prompt_for(settings, language)
    common = dict(
        language=language,
        beam_size=settings.beam_size,
        initial_prompt=primed.prompt or None,
        hotwords=primed.hotwords or None,
        vad_filter=True,
        vad_parameters=_vad_parameters(settings),
        word_timestamps=True,
        # faster-whisper would silently skip "no speech" segments; we keep and flag them.
        no_speech_threshold=None,
    )
    if settings.batch_size > 0:
        from faster_whisper import BatchedInferencePipeline

        # The pipeline object keeps per-call state, so each call gets its own; the model
        # underneath is shared.
        segments, _info = BatchedInferencePipeline(model).transcribe(
            samples, batch_size=settings.batch_size, chunk_length=settings.chunk_s, **common
        )
    else:
        import ctranslate2

        # Temperature fallback samples; a fixed seed makes a re-run produce the same text.
        ctranslate2.set_random_seed(settings.seed)
        segments, _info = model.transcribe(
            samples, condition_on_previous_text=settings.condition_on_previous_text, **common
        )
    out = [_segment(s) for s in segments]
    if settings.fill_gaps:
        out = _fill_gaps(model, samples, out, settings, language, primed.text)
    return ChannelTranscript(channel=channel, segments=tuple(out), language=language,
                             language_probability=probability)


def _segment(s: Any, offset: float = 0.0) -> Segment:
    words = tuple(
        Word(round(w.start + offset, 3), round(w.end + offset, 3), w.word, round(w.probability, 4))
        for w in (s.words or ())
    )
    return Segment(
        start=round(s.start + offset, 3),
        end=round(s.end + offset, 3),
        text=s.text,
        avg_logprob=round(s.avg_logprob, 4),
        no_speech_prob=round(s.no_speech_prob, 4),
        compression_ratio=round(s.compression_ratio, 4),
        temperature=float(s.temperature or 0.0),
        words=words,
    )


GAP_PAD_S = 0.3


def untranscribed_speech(
    samples: np.ndarray, sample_rate: int, segments: list[Segment]
) -> list[tuple[float, float]]:
    """Stretches that sound like this channel's talk but hold no transcribed word: whole runs
    of speech with no words, and stretches of at least ``SKIPPED_MIN_S`` inside a run that its
    words leave out (words padded and joined across short pauses, audio.words_mask).

    Batched decoding packs several VAD chunks into one 30 s window, and whisper-base then
    sometimes stops early and drops a whole utterance (an agent's 请您稍等 or 再见), or writes
    a few words (or its prompt) for a long one.
    """
    spans = [(w.start, w.end) for s in segments for w in s.words] or [(s.start, s.end) for s in segments]
    if not spans:
        return []
    act = activity(frame_levels(samples, sample_rate), spans)
    covered = words_mask(spans, len(act.levels))
    found = []
    for run in act.runs:
        part = frames_of(run)
        if not covered[part].any():
            if sounds_like_talk(act.levels, run, act.talking):
                found.append(run)
            continue
        for lo, hi in runs_from_mask(~covered[part], fill_gap_s=0.0, min_run_s=SKIPPED_MIN_S):
            stretch = (round(run[0] + lo, 3), round(min(run[1], run[0] + hi), 3))
            if sounds_like_talk(act.levels, stretch, act.talking):
                found.append(stretch)
    return found


def _fill_gaps(model, samples: np.ndarray, segments: list[Segment], settings: AsrSettings,
               language: str, primed: str = "") -> list[Segment]:
    """Transcribe each stretch of skipped speech on its own (no VAD, no prompt, so that
    Whisper cannot answer with the prompt) and merge it in time order.

    A segment beside such a stretch that is only the prompt (``primed``, prompt_fragment) may
    be an echo standing for the whole utterance (a child's 27 s reading came out as
    请问有什么可以帮您): the stretch is transcribed together with it, and when that gives
    words, they replace it."""
    from speechqa.audio import MODEL_RATE

    added: list[Segment] = []
    echoes: set[int] = set()
    for start, end in untranscribed_speech(samples, MODEL_RATE, segments):
        beside = [k for k, s in enumerate(segments) if primed and s.start < end + GAP_PAD_S
                  and s.end > start - GAP_PAD_S and prompt_fragment(s.text, primed)]
        start = min([start, *(segments[k].start for k in beside)])
        end = max([end, *(segments[k].end for k in beside)])
        lo = max(0.0, start - GAP_PAD_S)
        clip = samples[int(lo * MODEL_RATE): int((end + GAP_PAD_S) * MODEL_RATE)]
        found, _ = model.transcribe(
            clip, language=language, beam_size=settings.beam_size, vad_filter=False,
            word_timestamps=True, condition_on_previous_text=False, no_speech_threshold=None,
            temperature=0.0,
        )
        heard = [_segment(s, lo) for s in found if s.text.strip()]
        added.extend(heard)
        if heard:
            echoes.update(beside)
    kept = [s for k, s in enumerate(segments) if k not in echoes]
    return sorted(kept + added, key=lambda s: s.start) if added else segments


def transcribe(model, audio: Audio, audio_sha256: str, settings: AsrSettings) -> Transcript:
    """One ChannelTranscript per channel of ``audio``."""
    started = time.perf_counter()
    channels = tuple(
        transcribe_channel(model, audio.samples[ch], ch, settings) for ch in range(audio.n_channels)
    )
    return Transcript(
        audio_sha256=audio_sha256,
        duration_s=round(audio.duration_s, 3),
        n_channels=audio.n_channels,
        sample_rate=audio.source_rate,
        channels=channels,
        asr_seconds=round(time.perf_counter() - started, 3),
        language=call_language(channels, settings.language),
    )


# --- cache ---------------------------------------------------------------------------------


def cache_key(audio_sha256: str, model_sha256: str, compute_type: str, settings: AsrSettings) -> str:
    """Content hash + model + every setting that changes Whisper's output."""
    relevant = dataclasses.asdict(settings)
    for runtime_only in ("model", "device", "compute_type", "cpu_threads", "workers"):
        relevant.pop(runtime_only)
    # the prompt as Whisper gets it (a changed prompt file changes the key, a moved one does not)
    relevant.pop("prompts_file")
    if settings.language == "auto":
        relevant["prompts"] = {lang: dataclasses.astuple(prompt_for(settings, lang))
                               for lang in sorted(load_prompts(settings.prompts_file))}
    else:
        relevant.pop("languages")
        primed = prompt_for(settings, settings.language)
        relevant.update(initial_prompt=primed.prompt, hotwords=primed.hotwords)
    payload = json.dumps(
        {"format": CACHE_FORMAT, "audio": audio_sha256, "model": model_sha256, "piece_s": PIECE_S,
         "compute_type": compute_type, "asr": relevant},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "asr" / key[:2] / f"{key}.json"


def load_cached(cache_dir: Path, key: str) -> Transcript | None:
    """The cached transcript, or None when absent or unreadable (then we transcribe again)."""
    path = _cache_path(cache_dir, key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _transcript_from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_cached(cache_dir: Path, key: str, transcript: Transcript) -> None:
    """Cache a transcript. It holds what was said, customer numbers unmasked, so the cache
    folder is private to the user who runs the batch (0700) and each file 0600."""
    private_dir(cache_dir)
    path = _cache_path(cache_dir, key)
    write_text_atomic(path, json.dumps(dataclasses.asdict(transcript), ensure_ascii=False), mode=0o600)


def _transcript_from_dict(data: dict[str, Any]) -> Transcript:
    channels = tuple(
        ChannelTranscript(
            channel=c["channel"],
            segments=tuple(
                Segment(**{**s, "words": tuple(Word(**w) for w in s["words"])})
                for s in c["segments"]
            ),
            language=c.get("language", data.get("language", "")),
            language_probability=c.get("language_probability"),
        )
        for c in data["channels"]
    )
    return Transcript(**{**data, "channels": channels})


# --- from segments to turns ----------------------------------------------------------------


@lru_cache(maxsize=4)
def _converter(script: str):
    import opencc

    # Plain t2s, not tw2sp: tw2sp also swaps Taiwanese IT vocabulary, and turned 行程
    # (itinerary) into 进程 (a computing process).
    return opencc.OpenCC({"simplified": "t2s", "traditional": "s2t"}[script])


# OpenCC maps 帳 to 帐, but the mainland standard (通用规范汉字表, 2013) writes money senses
# with 账 (账单, 账户, 到账); 帐 stays only for tents and curtains.
_ZHANG_KEEP = re.compile(r"帐(?=[篷幕子])|(?<=[蚊营军床])帐")


def _mainland_zhang(text: str) -> str:
    if "帐" not in text:
        return text
    keep = {m.start() for m in _ZHANG_KEEP.finditer(text)}
    return "".join("账" if ch == "帐" and i not in keep else ch for i, ch in enumerate(text))


# whisper-base (int8) sometimes writes a full-width 4 where it means a full-width comma
# (您好４新称通信), and a broken byte sequence as U+FFFD. A lone ４ between words is a comma.
def repair_tokens(text: str) -> str:
    """Whisper's byte-level slips repaired (speechqa/text.py ``repair_slips``), stray U+FFFD dropped."""
    return repair_slips(text).replace("\ufffd", "")


def convert_script(text: str, script: str) -> str:
    """Simplified (default) or Traditional output; whisper-base often answers in zh-Hant."""
    text = repair_tokens(text)
    if script == "keep":
        return text
    converted = _converter(script).convert(text)
    return _mainland_zhang(converted) if script == "simplified" else converted


@functools.lru_cache(maxsize=8)
def _squashed(phrases: tuple[str, ...]) -> tuple[str, ...]:
    """``phrases`` squashed (text.squash), those left with any letters or digits."""
    return tuple(q for q in map(squash, phrases) if q)


def guard_flags(text: str, avg_logprob: float, no_speech_prob: float, compression_ratio: float,
                guards: GuardSettings) -> tuple[str, ...]:
    """Why a turn looks like a hallucination; empty when it does not."""
    flags = []
    squashed = squash(text)
    if squashed and loop_pattern(guards.repeat_min).search(squashed):
        flags.append("repetition")
    if compression_ratio > guards.compression_ratio_max:
        flags.append("high_compression")
    if no_speech_prob > guards.no_speech_prob_min and avg_logprob < guards.no_speech_logprob_max:
        flags.append("no_speech")
    if any(p in squashed for p in _squashed(guards.junk_phrases)):
        flags.append("junk_phrase")
    return tuple(flags)


def channel_roles(n_channels: int, channels: ChannelSettings,
                  texts: dict[int, str] | None = None, first: int | None = None) -> dict[int, Role]:
    """Stereo maps channels to agent/customer by config; mono and extra channels are unknown.

    With ``channels.detect`` and the channels' texts, the two are swapped when the configured
    customer side sounds clearly more like the agent than the configured agent side, by
    :func:`agent_script_score` (the agent's script, minus the caller's own phrases): it is at
    least 3, more than twice the other side's and 3 above it; or the configured agent side
    scores zero or below (no script, or it talks like a caller), the other side does not
    score below zero, and the gap is at least ``SWAP_MARGIN`` (a curt agent says little of
    the script).

    ``first`` is the channel that spoke first, on an inbound call (None for an outbound one,
    or when unknown): the agent answers the line, so that side gets ``FIRST_SPEAKER_POINTS``.
    It tips a curt agent (喂, no script phrase) opposite a caller who says one caller's phrase;
    alone it never overrides the configuration, nor outvotes a side that speaks the script.
    """
    if n_channels < 2:
        return {0: "unknown"}
    agent, customer = channels.agent, channels.customer
    if channels.detect and texts is not None and agent < n_channels and customer < n_channels:
        a, c = agent_script_score(texts.get(agent, "")), agent_script_score(texts.get(customer, ""))
        a += FIRST_SPEAKER_POINTS * (first == agent)
        c += FIRST_SPEAKER_POINTS * (first == customer)
        agent_like = c >= 3 and c > 2 * a and c - a >= 3
        # the "agent" side says no script (or talks like the caller) and the other side leads
        caller_like = a <= 0 <= c and c - a >= SWAP_MARGIN
        if agent_like or caller_like:
            agent, customer = customer, agent
    roles: dict[int, Role] = {ch: "unknown" for ch in range(n_channels)}
    if agent < n_channels:
        roles[agent] = "agent"
    if customer < n_channels:
        roles[customer] = "customer"
    return roles


# Phrases only the agent's side of a service call says: speechqa/data/agent_cues_zh.toml, or a
# site's file ([channels] agent_cues_file).
AGENT_CUES_FILE = "agent_cues_zh.toml"
SWAP_MARGIN = 4  # points of agent_script_score the other channel must lead by to swap
FIRST_SPEAKER_POINTS = 2  # the side that answered an inbound call: one script phrase's worth


@dataclass(frozen=True, eq=False)
class AgentCues:
    """The agent's script (a regex of its phrases) and the polite characters that count half."""

    source: str
    script: re.Pattern[str]
    polite: tuple[str, ...]
    customer: re.Pattern[str] | None = None  # what the caller's side says (我想, 你们 …)
    questions: re.Pattern[str] | None = None  # the agent's requests for details ([pairs] ask)
    answers: re.Pattern[str] | None = None  # the caller's replies to them ([pairs] answer)


_agent_cues_site: dict[str, str] = {}  # the run's [channels] agent_cues_file, set by load_agent_cues


@lru_cache(maxsize=8)
def _load_agent_cues(path: str) -> AgentCues:
    from speechqa.vocab import Checker, any_of, read_toml

    data, source = read_toml(path, AGENT_CUES_FILE, "[channels] agent_cues_file")
    c = Checker(source)
    c.table(data, "", ("script", "customer", "pairs"), ("script",))
    table = c.table(data["script"], "[script]", ("patterns", "polite"), ("patterns",))
    patterns = c.strings(table["patterns"], "[script]", "patterns", regex=True)
    polite = c.strings(table.get("polite", []), "[script]", "polite", allow_empty=True)
    customer = None
    if "customer" in data:
        ctable = c.table(data["customer"], "[customer]", ("patterns",), ("patterns",))
        cpatterns = c.strings(ctable["patterns"], "[customer]", "patterns", regex=True)
        customer = re.compile(any_of(cpatterns))
    questions = answers = None
    if "pairs" in data:
        ptable = c.table(data["pairs"], "[pairs]", ("ask", "answer"), ("ask", "answer"))
        questions = re.compile(any_of(c.strings(ptable["ask"], "[pairs]", "ask", regex=True)))
        answers = re.compile(any_of(c.strings(ptable["answer"], "[pairs]", "answer", regex=True)))
    return AgentCues(source, re.compile(any_of(patterns)), polite, customer, questions, answers)


def load_agent_cues(path: str = "") -> AgentCues:
    """The agent-cue file at ``path`` (empty: the shipped one), validated and read once; it
    becomes the default of :func:`agent_script_score` in this process. Raises ConfigError
    naming the file and the key."""
    cues = _load_agent_cues(path)
    _agent_cues_site["path"] = path
    return cues


def agent_cues() -> AgentCues:
    """The run's agent-cue file (:func:`load_agent_cues`), or the shipped one."""
    return _load_agent_cues(_agent_cues_site.get("path", ""))


def agent_script_score(text: str, cues: AgentCues | None = None) -> int:
    """How much a channel's text sounds like the agent: script phrases, plus the polite 您,
    minus what the caller's side says (each hit 2)."""
    cues = cues or agent_cues()
    score = 2 * len(cues.script.findall(text)) + sum(text.count(ch) for ch in cues.polite) // 2
    if cues.customer is not None:
        score -= 2 * len(cues.customer.findall(text))
    return score


@dataclass(frozen=True)
class _Run:
    """Consecutive words of one channel with no pause of ``gap_s`` between them."""

    channel: int
    words: tuple[Word, ...]
    segments: tuple[Segment, ...]
    text: str
    speaker: int = -1

    @property
    def start(self) -> float:
        return self.words[0].start if self.words else self.segments[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end if self.words else self.segments[-1].end


def _channel_runs(ch: ChannelTranscript, gap_s: float, max_s: float,
                  speakers: Sequence[SpeakerTurn] = ()) -> list[_Run]:
    """Split a channel's words at pauses. Whisper's segment boundaries are ignored: they
    fall wherever its 30 s window or its timestamp tokens did, not where people paused.
    With a mono call's ``speakers`` (speechqa/diarize.py), a run also ends where the voice
    changes: each word belongs to the voice that talks most during it."""
    runs: list[_Run] = []
    words: list[Word] = []
    segments: list[Segment] = []
    voice = -1
    table = voice_table(speakers)  # built once: every word asks it

    def flush() -> None:
        if words:
            runs.append(_Run(ch.channel, tuple(words), tuple(segments), "".join(w.word for w in words), voice))
        words.clear()
        segments.clear()

    for seg in ch.segments:
        if not seg.words:  # no alignment for this segment: keep it whole
            flush()
            voice = speaker_at(table, seg.start, seg.end) if speakers else -1
            runs.append(_Run(ch.channel, (), (seg,), seg.text, voice))
            continue
        for w in seg.words:
            said_by = speaker_at(table, w.start, w.end) if speakers else -1
            if words and (w.start - words[-1].end >= gap_s or w.end - words[0].start > max_s
                          or said_by != voice):
                flush()
            voice = said_by
            words.append(w)
            if not segments or segments[-1] is not seg:
                segments.append(seg)
    flush()
    return runs


def to_turns(
    transcript: Transcript,
    call_id: str,
    channels: ChannelSettings,
    turns: TurnSettings,
    guards: GuardSettings,
    lexicon: Lexicon | None = None,
    direction: str = "",
    speakers: Sequence[SpeakerTurn] | None = None,
) -> tuple[Turn, ...]:
    """Turns of every channel in call order, split at real pauses, in the chosen script,
    with domain terms repaired when a lexicon is given. ``direction`` is the manifest's
    (``outbound``: the customer answers, so who spoke first says nothing of the roles).

    ``speakers``: a mono call's diarisation (speechqa/diarize.py). Its turns are split where
    the voice changes too and carry their voice (``Turn.speaker``), role ``unknown`` until
    speechqa/roles.py decides which voice is the agent's."""
    runs = [
        run
        for ch in transcript.channels
        for run in _channel_runs(ch, turns.gap_s, turns.max_s, speakers or ())
        if run.text.strip()
    ]
    texts: dict[int, str] = {}
    for run in runs:
        texts[run.channel] = texts.get(run.channel, "") + convert_script(run.text, "simplified")
    runs.sort(key=lambda r: (r.start, r.channel))
    first = runs[0].channel if runs and direction.strip().lower() != "outbound" else None
    roles = channel_roles(transcript.n_channels, channels, texts, first)
    # the lexicon repairs Mandarin by pinyin: only channels decoded as Mandarin get it
    spoken = {ch.channel: ch.language or transcript.language for ch in transcript.channels}
    counters: dict[str, int] = {}
    out = []
    for run in runs:
        role = roles.get(run.channel, "unknown")
        counters[role] = index = counters.get(role, 0) + 1
        segs = run.segments
        weights = [max(s.end - s.start, 1e-3) for s in segs]
        avg_logprob = float(np.average([s.avg_logprob for s in segs], weights=weights))
        no_speech = max(s.no_speech_prob for s in segs)
        compression = max(s.compression_ratio for s in segs)
        mandarin = spoken.get(run.channel, transcript.language) in LEXICON_LANGUAGES
        pieces = _final_text(run, turns.script, lexicon if mandarin else None)
        text = "".join(p for p, _ in pieces[0]).strip()
        out.append(
            Turn(
                call_id=call_id,
                turn_id=f"{call_id}-{role}-{index:04d}",
                role=role,
                channel=run.channel,
                start=round(run.start, 3),
                end=round(run.end, 3),
                text=text,
                avg_logprob=round(avg_logprob, 4),
                no_speech_prob=round(no_speech, 4),
                compression_ratio=round(compression, 4),
                flags=guard_flags(text, avg_logprob, no_speech, compression, guards),
                corrections=pieces[1],
                words=tuple(
                    dataclasses.replace(w, word=piece) for (piece, w) in pieces[0] if w is not None
                ),
                speaker=run.speaker,
            )
        )
    return tuple(out)


def _final_text(
    run: _Run, script: str, lexicon: Lexicon | None
) -> tuple[list[tuple[str, Word | None]], tuple[str, ...]]:
    """The run's words in the output script with lexicon repairs, and the repairs made.

    The whole run is converted at once (OpenCC converts phrases, not only characters) and
    cut back into words by length; when a phrase conversion changed the length, words are
    converted one by one instead, so the words always add up to the turn's text.
    """
    if not run.words:
        raw: list[tuple[str, Word | None]] = [(run.text, None)]
    else:
        raw = [(w.word, w) for w in run.words]
    joined = "".join(p for p, _ in raw)
    repaired = repair_slips(joined)  # on the whole run: a slip is told by its neighbours
    if repaired != joined:
        raw, joined = _recut(repaired, raw), repaired
    converted = convert_script(joined, script)
    if len(converted) == len(joined):
        pieces = _recut(converted, raw)
    else:
        pieces = [(convert_script(p, script), w) for p, w in raw]
        converted = "".join(p for p, _ in pieces)
    if lexicon is None:
        return pieces, ()
    found = find_corrections(converted, lexicon)
    if not found:
        return pieces, ()
    return _recut(apply_corrections(converted, found), pieces), tuple(
        f"{c.heard}→{c.term}" for c in found
    )


def _recut(text: str, like: list[tuple[str, Word | None]]) -> list[tuple[str, Word | None]]:
    """Cut ``text`` into pieces as long as those of ``like``."""
    out, pos = [], 0
    for piece, w in like:
        out.append((text[pos : pos + len(piece)], w))
        pos += len(piece)
    return out
