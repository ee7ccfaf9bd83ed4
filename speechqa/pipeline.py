"""Runs the stages for a batch: ingest → audio → asr → text → sentiment → metrics → compliance
→ outputs.

``process_recording`` is a pure function of a recording and a ``Context`` (plain, picklable
data), so a parallel or Ray executor can run it anywhere; its only side effect is the
idempotent, content-addressed transcript cache. ``run_batch`` drives it over a batch,
turns every per-call error into a failure row, and writes the tables at the end, atomically.
A killed run therefore leaves the cache of every finished call, and the next run resumes
from it with no duplicated or half-written rows.

``run_transcripts`` is the same run for conversations that are already transcribed (see
speechqa/transcripts.py): no ASR and no model. Both go through ``analyse_turns`` (every stage
after ASR) and ``_finish`` (tables, QA sample, history store, run.json).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from speechqa import (
    __version__,
    asr,
    audio,
    clips,
    coverage,
    diarize,
    ingest,
    metrics,
    outputs,
    parts,
    phonetic,
    roles,
    sentiment,
    text,
    vocab,
)
from speechqa.calls import CALL_FLAGS, CallResult, Event, Failure, Recording, Transcript, Turn, is_unheard
from speechqa.compliance import Scorecard, load_scorecard, score_call, scores_language
from speechqa.config import AsrSettings, Settings
from speechqa.errors import AudioError, SpeechQAError
from speechqa.files import all_or_nothing, checkpoint, run_lock
from speechqa.lexicon import Lexicon, lexicon_for
from speechqa.models import ModelInfo, SpeakerModelInfo, read_model


@dataclass(frozen=True)
class Context:
    """What a worker needs to process one call. ``model`` is None for imported transcripts."""

    settings: Settings
    model: ModelInfo | None
    device: str
    compute_type: str
    cache_dir: Path
    lexicon: Lexicon | None = None
    scorecard: Scorecard | None = None
    workers: int = 1
    cpu_threads: int = 1
    force: bool = False
    # what turns audio into a Transcript; None: Whisper (asr.transcribe with the model above).
    # A test passes a fake that returns scripted words; it must be a picklable top-level
    # callable (audio, audio_sha256, AsrSettings) -> Transcript with a stable ``__qualname__``,
    # which keys the cache in place of the model checksum.
    transcriber: Transcriber | None = None
    # where each finished call's part goes (speechqa/parts.py); None: nowhere (no resume)
    parts: Path | None = None
    settings_key: str = ""  # parts.settings_digest(settings), once per run
    speakers: SpeakerModelInfo | None = None  # mono calls' speaker models (speechqa/diarize.py)
    voiceprints: tuple[tuple[str, tuple[float, ...]], ...] = ()  # agent_id -> enrolled voice (the store)

    def voiceprint(self, agent_id: str) -> tuple[float, ...] | None:
        return dict(self.voiceprints).get(agent_id.strip()) if agent_id.strip() else None


@dataclass(frozen=True)
class RunSummary:
    out: Path
    results: Sequence[CallResult]  # read from the parts on demand (parts.Results)
    failures: tuple[Failure, ...]
    run_info: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


ProgressFn = Callable[[Recording, "CallResult | Failure"], None]
Transcriber = Callable[[audio.Audio, str, "AsrSettings"], "Transcript"]
AudioFn = Callable[[], "list[Any]"]  # each channel's frame levels (audio.frame_levels), on demand

IMPORTED_MODEL = "imported"  # the calls table's model column for imported transcripts


def make_context(settings: Settings, out: Path, *, force: bool = False, audio: bool = True,
                 transcriber: Transcriber | None = None) -> Context:
    """Resolve the model, device and cache folder once, before any call is touched.

    With ``audio=False`` (imported transcripts) no Whisper model is looked for or loaded;
    the text stages' resources and the scorecard are still checked up front. With a
    ``transcriber`` (a test's fake) the audio is decoded and analysed as usual, but no model
    is needed.
    """
    model: ModelInfo | None = None
    device, compute_type, workers, threads = "", "", 1, 1
    lexicon = None
    if audio and transcriber is not None:  # a stand-in for Whisper: workers as on a CPU
        workers, threads = asr.resolve_workers("cpu", settings.asr.workers, settings.asr.cpu_threads)
        lexicon = lexicon_for(settings.lexicon)
    elif audio:
        model = read_model(Path(settings.asr.model))  # a missing model stops an audio run here
        device = asr.resolve_device(settings.asr.device)
        compute_type = asr.resolve_compute_type(device, settings.asr.compute_type)
        workers, threads = asr.resolve_workers(device, settings.asr.workers, settings.asr.cpu_threads)
        lexicon = lexicon_for(settings.lexicon)
    cache_dir = Path(settings.batch.cache_dir) if settings.batch.cache_dir else out / ".cache"
    # Loaded now so that a missing user dictionary or sentiment model stops the run before
    # any call is touched, instead of failing every call; both stay cached for the workers.
    text.tokenizer(settings.text.user_words, settings.text.user_dict)
    phonetic.load()  # pypinyin's dictionaries (most of a second), which every call's text stages read
    sentiment.load_model(settings.sentiment.model)
    scorecard = load_scorecard(settings.compliance.rules or None)  # a broken rules file stops the run
    vocab.preload(settings, scorecard)  # ... and so does a bad vocabulary file (speechqa/vocab.py)
    speakers = None
    if audio and (settings.speakers.diarise_mono or settings.speakers.mixed_stereo):
        speakers = diarize.check_models(settings.speakers.model)  # missing speaker models stop it too
    return Context(settings, model, device, compute_type, cache_dir, lexicon, scorecard, workers, threads,
                   force, transcriber, out / parts.PARTS_DIR, parts.settings_digest(settings), speakers)


def transcriber_name(transcriber: Transcriber | None) -> str:
    """``transcriber:<its qualified name>``: a stand-in for Whisper, in the cache key and run.json."""
    name = getattr(transcriber, "__qualname__", None) or type(transcriber).__qualname__
    return f"transcriber:{name}"


def process_recording(rec: Recording, ctx: Context) -> CallResult | Failure:
    """Transcribe (or fetch from cache) one recording, split it into turns and analyse it."""
    timings: dict[str, float] = {}
    stage = "read"
    try:
        if ctx.model is None and ctx.transcriber is None:
            raise SpeechQAError("no Whisper model in this run's context (make_context(audio=True))")
        t0 = time.perf_counter()
        sha = audio.content_sha256(rec.path)
        timings["hash"] = time.perf_counter() - t0
        heard_by = ctx.model.sha256 if ctx.model is not None else transcriber_name(ctx.transcriber)
        mixed = ctx.settings.speakers.mixed_stereo  # stereo heard as one mixed channel
        listened = sha + (":mixed" if mixed else "")  # what is heard: the file, or its mix
        key = asr.cache_key(listened, heard_by, ctx.compute_type, ctx.settings.asr)
        speakers_key = _speakers_key(listened, ctx)
        voiceprint = ctx.voiceprint(rec.meta_dict.get("agent_id", "").strip())
        heard_as = speakers_key + (_digest(voiceprint) if voiceprint and speakers_key else "")
        part_key = parts.analysis_key(key + heard_as, rec, ctx.settings_key)
        reused = _reuse(rec, ctx, part_key)
        if reused is not None:
            return reused
        transcript = None if ctx.force else asr.load_cached(ctx.cache_dir, key)
        cached = transcript is not None
        voices = None if ctx.force or not speakers_key else diarize.load_cached(ctx.cache_dir, speakers_key)
        diariser = _diariser(ctx) if speakers_key and voices is None else None
        measured: list[Any] | None = None  # the channels' frame levels, when decoded here
        if transcript is None:
            # a piece at a time (audio.pieces): a 3-hour recording costs one piece of memory
            heard: list[tuple[float, Transcript]] = []
            meter = audio.LevelMeter()
            stage = "decode"
            t0 = time.perf_counter()
            for piece in audio.pieces(rec.path, audio.PIECE_S):
                sound = audio.mixed_down(piece.audio) if mixed else piece.audio
                meter.add(sound)
                timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t0
                checkpoint("decode")
                stage = "asr"
                heard.append((piece.offset_s, _transcribe(sound, sha, ctx)))
                checkpoint("asr")  # transcribed, not yet cached
                if diariser is not None and sound.n_channels == 1:
                    stage = "speakers"
                    diariser.add(piece.offset_s, sound.samples[0])
                stage = "decode"
                t0 = time.perf_counter()
            stage = "asr"
            transcript = asr.join_pieces(heard, ctx.settings.asr.language)
            timings["asr"] = transcript.asr_seconds
            asr.save_cached(ctx.cache_dir, key, transcript)
            measured = meter.levels()
            _cache_levels(ctx, sha, measured)
        stage = "speakers"
        if diariser is not None and transcript.n_channels == 1:
            if not diariser.windows:  # the transcript came from the cache: hear the voices again
                for piece in audio.pieces(rec.path, audio.PIECE_S):
                    diariser.add(piece.offset_s, audio.mixed_down(piece.audio).samples[0])
            voices = diariser.finish()
            diarize.save_cached(ctx.cache_dir, speakers_key, voices)
            timings["speakers"] = voices.seconds
        if transcript.n_channels != 1:
            voices = None  # stereo: the channels are the roles
        stage = "turns"
        t0 = time.perf_counter()
        direction = rec.meta_dict.get("direction", "")
        turns = asr.to_turns(transcript, rec.call_id, ctx.settings.channels, ctx.settings.turns,
                             ctx.settings.guards, ctx.lexicon, direction, voices.turns if voices else None)
        decision = roles.RoleDecision("channels" if transcript.n_channels > 1 else "none")
        if voices is not None:
            decision = roles.decide(turns, voices, asr.agent_cues(), roles.scorecard_cues(ctx.scorecard),
                                    inbound=direction.strip().lower() != "outbound", voiceprint=voiceprint,
                                    same_voice=ctx.settings.speakers.same_voice)
            turns = roles.apply(turns, decision, rec.call_id)
        timings["turns"] = time.perf_counter() - t0
    except Exception as exc:
        return _failure(rec, stage, exc)

    def levels() -> list[Any]:  # a cached transcript: the levels kept beside it, or from the audio
        if measured is not None:
            return measured
        kept = audio.load_levels(ctx.cache_dir, sha)
        if kept is None:
            kept = audio.levels(rec.path, audio.PIECE_S)
            _cache_levels(ctx, sha, kept)
        return kept

    primed = {}
    for ch in transcript.channels:  # what Whisper was primed with on each channel
        p = asr.prompt_for(ctx.settings.asr, ch.language or transcript.language)
        primed[ch.channel] = (p.language, p.text)
    outcome = analyse_turns(rec, turns, ctx, duration_s=transcript.duration_s, n_channels=transcript.n_channels,
                            audio_fn=levels, asr_seconds=transcript.asr_seconds, cached=cached,
                            audio_sha256=sha, timings=timings, language=transcript.language, prompts=primed,
                            decision=decision, voices=voices)
    return _keep(rec, ctx, part_key, outcome)


def _speakers_key(listened: str, ctx: Context) -> str:
    """The diarisation cache key of what was heard (empty: no diarisation in this run)."""
    if ctx.speakers is None:
        return ""
    sp = ctx.settings.speakers
    return diarize.cache_key(listened, ctx.speakers.sha256, sp.step_s, sp.min_embed_s, sp.chunk_s)


def _digest(vector: Sequence[float]) -> str:
    import hashlib

    return hashlib.sha256(",".join(f"{v:.6f}" for v in vector).encode()).hexdigest()[:16]


def _diariser(ctx: Context) -> diarize.Diariser:
    assert ctx.speakers is not None
    sp = ctx.settings.speakers
    models = diarize.load_models(str(ctx.speakers.path), max(ctx.cpu_threads, 1))
    return diarize.Diariser(models, step_s=sp.step_s, min_embed_s=sp.min_embed_s, chunk_s=sp.chunk_s)


def _cache_levels(ctx: Context, sha: str, levels: list[Any]) -> None:
    """Keep a call's frame levels in the cache (audio.save_levels); only a cache, so a write
    that fails leaves the call as it is (the next run measures them from the audio again)."""
    with contextlib.suppress(OSError, SpeechQAError):
        audio.save_levels(ctx.cache_dir, sha, levels)


def _transcribe(piece: audio.Audio, sha: str, ctx: Context) -> Transcript:
    """Whisper (or the context's stand-in) on one piece of a recording."""
    if ctx.transcriber is not None:
        return ctx.transcriber(piece, sha, ctx.settings.asr)
    assert ctx.model is not None
    model = asr.load_model(str(ctx.model.path), ctx.device, ctx.compute_type, ctx.cpu_threads, ctx.workers)
    return asr.transcribe(model, piece, sha, ctx.settings.asr)


def _reuse(rec: Recording, ctx: Context, key: str) -> CallResult | None:
    """The call's result from its part when the part is current (parts.analysis_key), marked
    cached; scored again when only the scorecard changed. None: analyse the call."""
    if ctx.parts is None or ctx.force:
        return None
    store = parts.PartStore(ctx.parts)
    part = store.load(rec.call_id)
    if part is None or part.key != key:
        return None
    result = dataclasses.replace(part.result, cached=True, timings=())
    if part.scoring != parts.scoring_key(ctx.scorecard):
        result = _score(result, ctx.scorecard)
        store.save(parts.Part(rec.call_id, key, parts.scoring_key(ctx.scorecard), result))
    return result


def _keep(rec: Recording, ctx: Context, key: str, outcome: CallResult | Failure) -> CallResult | Failure:
    """Write a finished call's part (a failed call has none: the next run tries it again)."""
    if ctx.parts is not None and isinstance(outcome, CallResult):
        try:
            parts.PartStore(ctx.parts).save(parts.Part(rec.call_id, key, parts.scoring_key(ctx.scorecard),
                                                        outcome))
        except Exception as exc:
            return _failure(rec, "part", exc)
    return outcome


def analyse_turns(
    rec: Recording,
    turns: tuple[Turn, ...],
    ctx: Context,
    *,
    duration_s: float,
    n_channels: int,
    audio_fn: AudioFn | None,
    asr_seconds: float = 0.0,
    cached: bool = False,
    audio_sha256: str = "",
    timings: dict[str, float] | None = None,
    timed: bool = True,
    language: str = "",
    prompts: dict[int, tuple[str, str]] | None = None,
    decision: roles.RoleDecision | None = None,
    voices: diarize.Diarization | None = None,
) -> CallResult | Failure:
    """The analysis after ASR, the same for transcribed and imported calls: text (PII masked,
    match text, tokens) → sentiment and escalations → metrics and their events → CallResult
    → compliance.

    ``audio_fn`` gives the decoded channels for the metrics; without it (imported
    transcripts) the metrics come from the turn times (``timed``) or stay empty, see
    speechqa/transcripts.py ``metrics_without_audio``. With the audio, turns that only echo
    Whisper's prompt (``prompts``: channel -> language and prompt) are flagged first, and the
    transcript's coverage of the speech is measured (speechqa/coverage.py). ``language`` is
    the call's; the scorecard scores only calls in its own. ``decision``: how the turns got their
    roles; ``voices``: a diarised mono call's speaker turns, which stand for its speech runs.
    """
    timings = dict(timings or {})
    settings = ctx.settings
    stage = "coverage"
    try:
        levels: list[Any] | None = None
        covered: dict[str, float | int | None] = dict.fromkeys(metrics.COVERAGE_METRICS)
        if audio_fn is not None:
            t0 = time.perf_counter()
            levels = audio_fn()  # measured once: coverage and metrics read them
            speech = coverage.channel_speech(levels, turns)
            turns = coverage.flag_echoes(turns, prompts or {}, speech)
            covered |= coverage.coverage(turns, speech)
            covered["n_prompt_echo_turns"] = sum("prompt_echo" in t.flags for t in turns)
            timings["coverage"] = time.perf_counter() - t0

        stage = "text"
        t0 = time.perf_counter()
        turns, redactions = text.process_turns(turns, settings.text)
        timings["text"] = time.perf_counter() - t0

        stage = "sentiment"
        t0 = time.perf_counter()
        if not language or language in sentiment.LANGUAGES:
            turns = sentiment.score_turns(turns, sentiment.load_model(settings.sentiment.model))
            call_sentiment = sentiment.call_sentiment(turns, settings.sentiment)
            escalations = sentiment.escalations(turns)
        else:  # the model and the escalation lexicon are Mandarin: no score beats a wrong one
            call_sentiment, escalations = sentiment.CallSentiment(), ()
        timings["sentiment"] = time.perf_counter() - t0

        stage = "metrics"
        t0 = time.perf_counter()
        muted = [(e.start, e.end) for e in redactions]
        if levels is not None:
            spoken = None
            if voices is not None and decision is not None and decision.agent_speaker >= 0:
                spoken = [(v.start, v.end, decision.role_of(v.speaker)) for v in voices.turns]
            turns, call_metrics, metric_events = metrics.analyse(
                turns, None, audio.MODEL_RATE, duration_s, settings.metrics, muted=muted, levels=levels,
                voices=spoken)
        else:
            from speechqa.transcripts import metrics_without_audio

            turns, call_metrics, metric_events = metrics_without_audio(
                turns, duration_s, settings.metrics, timed=timed, muted=muted)
        events = tuple(sorted((*redactions, *escalations, *metric_events), key=_event_order))
        call_metrics = tuple((dict(call_metrics) | covered).items())
        timings["metrics"] = time.perf_counter() - t0
        flags = call_flags(covered, turns, settings.guards.min_coverage)
        # roles of a call with no words at all do not matter: it is not scored (no_words)
        unsure = decision is not None and decision.uncertain(settings.speakers.min_confidence)
        if unsure and "no_words" not in flags:
            flags = (*flags, "roles_uncertain")

        result = CallResult(
            recording=rec,
            duration_s=duration_s,
            n_channels=n_channels,
            turns=turns,
            asr_seconds=asr_seconds,
            cached=cached,
            audio_sha256=audio_sha256,
            timings=tuple(timings.items()),
            events=events,
            sentiment=call_sentiment,
            metrics=call_metrics,
            language=language,
            flags=tuple(flags),
            roles=decision,
        )
        stage = "compliance"
        result = _score(result, ctx.scorecard)
    except Exception as exc:
        return _failure(rec, stage, exc)
    checkpoint("analysis")
    return result


def call_flags(covered: dict[str, Any], turns: Iterable[Turn], min_coverage: float) -> tuple[str, ...]:
    """The call's flags (calls.CALL_FLAGS) from its coverage metrics and turns; the scorecard's
    own, ``language_not_scored``, is set when the call is scored (:func:`_score`)."""
    flags = []
    if coverage.low_coverage(covered, min_coverage):
        flags.append("low_coverage")
    if covered.get("n_prompt_echo_turns"):
        flags.append("prompt_echo")
    if all(is_unheard(t) for t in turns):
        flags.append("no_words")
    return tuple(flags)


def _score(result: CallResult, scorecard: Scorecard | None) -> CallResult:
    """Score the call on ``scorecard`` (none: no compliance), and set the flag that says the
    scorecard is not in the call's language. A rerun with only a new scorecard comes here."""
    flags = tuple(f for f in result.flags if f != "language_not_scored")
    if scorecard is not None and not scores_language(scorecard, result.language):
        flags = tuple(sorted((*flags, "language_not_scored"), key=CALL_FLAGS.index))
    result = dataclasses.replace(result, flags=flags, compliance=None)
    if scorecard is None:
        return result
    timings = dict(result.timings)
    t0 = time.perf_counter()
    compliance = score_call(result, scorecard)
    timings["compliance"] = time.perf_counter() - t0
    return dataclasses.replace(result, compliance=compliance, timings=tuple(timings.items()))


def _failure(rec: Recording, stage: str, exc: Exception) -> Failure:
    if isinstance(exc, AudioError):
        return Failure(rec.call_id, str(rec.path), stage, str(exc))
    if isinstance(exc, SpeechQAError):
        return Failure(rec.call_id, str(rec.path), stage, f"{rec.path}: {exc}")
    # A bug on one call (or one rule) must not cost the night's batch.
    return Failure(rec.call_id, str(rec.path), stage, f"{rec.path}: unexpected {type(exc).__name__}: {exc}")


def _event_order(e: Event) -> tuple[float, str, str]:
    return (e.start, e.type, e.turn_id)


def _execute(recordings: list[Recording], ctx: Context) -> Iterator[tuple[Recording, CallResult | Failure]]:
    """Map ``process_recording`` over the night with ``[batch] executor``; outcomes come back
    as calls finish, in any order (the tables are assembled in batch order).

    - ``local``: ``ctx.workers`` threads sharing one model (CTranslate2 releases the GIL);
    - ``process``: ``ctx.workers`` processes, one model each (the Python stages after ASR run
      in parallel too).

    Each worker writes its calls' parts and the shared transcript cache, so the outputs are
    the same whichever executor runs.
    """
    if ctx.settings.batch.executor == "ray":  # as many at once as the cluster has room for
        yield from _execute_ray(recordings, ctx)
        return
    if ctx.workers <= 1 or len(recordings) <= 1:
        for rec in recordings:
            yield rec, process_recording(rec, ctx)
        return
    pool: Executor
    if ctx.settings.batch.executor == "process":
        import multiprocessing

        # spawned, not forked: the parent may hold threads and CTranslate2 state; each worker
        # is given the context once and loads its own model
        pool = ProcessPoolExecutor(max_workers=ctx.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(dataclasses.replace(ctx, workers=1),))
        task: Callable[[Recording], CallResult | Failure] = _in_worker
    else:
        pool = ThreadPoolExecutor(max_workers=ctx.workers, thread_name_prefix="speechqa")
        task = functools.partial(process_recording, ctx=ctx)
    running: dict[Any, Recording] = {}
    with pool:
        try:
            yield from _in_flight(recordings, 2 * ctx.workers, running, lambda rec: pool.submit(task, rec),
                                  lambda handles: wait(handles, return_when=FIRST_COMPLETED)[0],
                                  lambda rec, future: future.result())
        except BaseException:
            for future in running:
                future.cancel()
            raise


def _in_flight(recordings: Iterable[Recording], width: int, running: dict[Any, Recording],
               submit: Callable[[Recording], Any], finished: Callable[[list[Any]], Iterable[Any]],
               outcome: Callable[[Recording, Any], CallResult | Failure],
               ) -> Iterator[tuple[Recording, CallResult | Failure]]:
    """Keep ``width`` calls in flight (``running``: handle -> recording), not the whole night:
    as each one finishes (``finished`` of the running handles), the next is submitted and the
    finished call's outcome handed on, so memory stays that of the calls being worked on.
    The same for a pool's futures and for Ray's object refs."""
    todo = iter(recordings)
    for rec in itertools.islice(todo, width):
        running[submit(rec)] = rec
    while running:
        for handle in finished(list(running)):
            rec = running.pop(handle)
            for following in itertools.islice(todo, 1):
                running[submit(following)] = following
            yield rec, outcome(rec, handle)


def _execute_ray(recordings: list[Recording], ctx: Context) -> Iterator[tuple[Recording, CallResult | Failure]]:
    """``process_recording`` as Ray tasks: on this machine (``[batch] ray_address`` empty: a
    Ray started for the run and stopped after it) or on a cluster (``auto``, ``ray://...``).
    Each task asks for its worker's CPU threads, and a GPU on CUDA; Ray reuses its worker
    processes, so each keeps its model loaded. On a cluster, OUT, the cache and the model
    must be on paths every machine sees (a shared file system)."""
    try:
        import ray
    except ImportError:
        raise SpeechQAError("[batch] executor = ray needs Ray: pip install 'speechqa[ray]'") from None
    address = ctx.settings.batch.ray_address
    started = not ray.is_initialized()
    if started:
        cpus = None if address else ctx.workers * max(ctx.cpu_threads, 1)  # a local Ray: this run's share
        ray.init(address=address or None, num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        context = ray.put(dataclasses.replace(ctx, workers=1))
        task = ray.remote(num_cpus=max(ctx.cpu_threads, 1), num_gpus=1 if ctx.device == "cuda" else 0,
                          max_retries=0)(process_recording)
        slots = max(1, int(ray.cluster_resources().get("CPU", ctx.workers) // max(ctx.cpu_threads, 1)))

        def outcome(rec: Recording, ref: Any) -> CallResult | Failure:
            try:
                return ray.get(ref)
            except ray.exceptions.RayError as exc:  # a worker lost (a machine gone, killed)
                return _failure(rec, "executor", exc)

        yield from _in_flight(recordings, 2 * slots, {}, lambda rec: task.remote(rec, context),
                              lambda refs: ray.wait(refs, num_returns=1)[0], outcome)
    finally:
        if started:
            ray.shutdown()


_WORKER: Context | None = None  # a process worker's context (executor = process)


def _start_worker(ctx: Context) -> None:
    global _WORKER
    _WORKER = ctx


def _in_worker(rec: Recording) -> CallResult | Failure:
    assert _WORKER is not None, "a process worker without its context"
    return process_recording(rec, _WORKER)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"speechqa": __version__, "python": platform.python_version()}
    for dist in ("faster-whisper", "ctranslate2", "av", "opencc",
                 "numpy", "pandas", "pyarrow"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "absent"
    return found


@functools.cache
def _libc() -> Any:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; elsewhere a no-op).

    Each call's audio and analysis are freed when it is done, but glibc keeps the freed pages,
    fragmented between the next calls' allocations, so a long night's RSS would creep up
    (bench/bench_night.py) although nothing of the calls is held."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class _Night:
    """A run's outcomes as they come in: failures, the processed call_ids, and each finished
    call written to the history store (in small batches, idempotently: a rerun rewrites the
    same rows). Nothing of a call's turns is kept here."""

    STORE_BATCH = 64
    HEARTBEAT_S = 60.0

    def __init__(self, settings: Settings, recordings: list[Recording], failures: list[Failure], out: Path,
                 untimed: set[str] | None = None):
        self.failures = failures
        self.ok: list[str] = []
        self.untimed = untimed or set()
        self.night = settings.sampling.night or infer_night(recordings)
        self.db: Any = None
        self._lock: dict[str, Any] | None = None
        self._beat = time.monotonic()
        if settings.sampling.enabled:
            from speechqa import store as history

            self.db = history.open_store(settings.store.db)
            # one run per night in the store, as one run per OUT (a second one is refused)
            self._lock = history.lock_night(self.db, self.night, str(out), settings.batch.shard)
        self._pending: list[CallResult] = []
        self.speakers = settings.speakers
        self.voices_model = ""  # the speaker models' sha256, when this night enrols voices (voiceprints)
        self.fresh: set[str] = set()  # calls transcribed (or, imported, analysed) by this run
        self.stage_totals: dict[str, float] = {}

    def add(self, outcome: CallResult | Failure) -> None:
        if isinstance(outcome, Failure):
            self.failures.append(outcome)
            return
        self.ok.append(outcome.recording.call_id)
        self.beat()
        if not outcome.cached:
            self.fresh.add(outcome.recording.call_id)
        for name, seconds in outcome.timings:  # this run's work (a call taken from its part did none)
            self.stage_totals[name] = self.stage_totals.get(name, 0.0) + seconds
        if self.db is not None:
            if outcome.recording.call_id in self.untimed:  # turn-index times: no duration in the history
                outcome = dataclasses.replace(outcome, duration_s=math.nan)
            self._pending.append(outcome)
            if len(self._pending) >= self.STORE_BATCH:
                self.flush()
        if len(self.ok) % self.STORE_BATCH == 0:
            release_memory()

    def flush(self) -> None:
        if self.db is not None and self._pending:
            from speechqa import store as history

            history.save_calls(self.db, self.night, self._pending)
            if self.voices_model:
                taught = enrolments(self._pending, self.speakers)
                history.enrol_voices(self.db, self.night, self.voices_model, taught)
            self._pending = []
            checkpoint("store")  # calls in the store, the night's sample not yet

    def voiceprints(self, ctx: Context) -> Context:
        """``ctx`` with the named agents' voiceprints from earlier nights, and this night set to
        enrol tonight's sure calls (a night without the store, or without diarisation: as it is)."""
        if self.db is None or ctx.speakers is None or not self.speakers.enrol:
            return ctx
        from speechqa import store as history

        self.voices_model = ctx.speakers.sha256
        prints = history.agent_voices(self.db, ctx.speakers.sha256, self.night)
        return dataclasses.replace(ctx, voiceprints=tuple(sorted(prints.items())))

    def beat(self) -> None:
        """Tell the store the night's run is alive (a minute apart at most)."""
        if self._lock is not None and time.monotonic() - self._beat > self.HEARTBEAT_S:
            from speechqa import store as history

            history.touch_night(self.db, self._lock)
            self._beat = time.monotonic()

    def __enter__(self) -> _Night:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            from speechqa import store as history

            history.unlock_night(self.db, self._lock)
            self._lock = None


def enrolments(results: Iterable[CallResult], settings: Any) -> list[tuple[str, str, float, Sequence[float]]]:
    """(call_id, agent_id, confidence, voice) of the diarised calls sure enough to teach their
    named agent's voiceprint (``[speakers] enrol_min_confidence``)."""
    rows = []
    for r in results:
        d, agent = r.roles, r.recording.meta_dict.get("agent_id", "").strip()
        if (agent and d is not None and d.source == "diarised" and d.agent_voice and d.confidence is not None
                and d.confidence >= settings.enrol_min_confidence and "roles_uncertain" not in r.flags):
            rows.append((r.recording.call_id, agent, d.confidence, d.agent_voice))
    return rows


def run_batch(
    source: Path,
    out: Path,
    settings: Settings,
    *,
    force: bool = False,
    on_start: Callable[[list[Recording]], None] | None = None,
    on_progress: ProgressFn | None = None,
    transcriber: Transcriber | None = None,
) -> RunSummary:
    """The nightly batch. Per-call problems become failures; setup problems raise.
    ``transcriber`` replaces Whisper (tests: scripted words, see Context)."""
    started_at = datetime.now(UTC)
    t_start = time.perf_counter()
    out = Path(out)
    with run_lock(out):  # one run per output folder (files.run_lock)
        ctx = make_context(settings, out, force=force, transcriber=transcriber)
        parts.PartStore(out / parts.PARTS_DIR).sweep()
        found = ingest.discover(Path(source), settings.batch.manifest_name, settings.batch.allow_outside)
        recordings = found.recordings
        if on_start:
            on_start(recordings)
        m = ctx.model
        model_info = {"name": m.name if m else None, "path": str(m.path) if m else None,
                      "sha256": m.sha256 if m else None, "source": m.source if m else None}
        if m is None and transcriber is not None:  # a test's fake: say so in calls and run.json
            model_info["name"] = transcriber_name(transcriber)
        with _Night(settings, recordings, list(found.failures), out) as night:
            ctx = night.voiceprints(ctx)
            for rec, outcome in _execute(recordings, ctx):
                night.add(outcome)
                if on_progress:
                    on_progress(rec, outcome)
            return _finish(out, settings, ctx, source=source, recordings=recordings, night=night,
                           times={}, model_info=model_info, force=force,
                           started_at=started_at, t_start=t_start,
                           manifest={"path": str(found.manifest) if found.manifest else None,
                                     "encoding": found.encoding or None})


def run_transcripts(
    file: Path,
    out: Path,
    settings: Settings,
    *,
    on_start: Callable[[list[Recording]], None] | None = None,
    on_progress: ProgressFn | None = None,
) -> RunSummary:
    """Analyse conversations that are already transcribed (a CSV or JSONL of turns, see
    speechqa/transcripts.py): every stage after ASR, the tables, sampling and the history
    store, as for audio. No Whisper model is needed. Bad rows become failures; a file that
    cannot be read raises InputError. A rerun takes unchanged calls from their parts."""
    from speechqa.transcripts import read_transcripts

    started_at = datetime.now(UTC)
    t_start = time.perf_counter()
    out = Path(out)
    with run_lock(out):  # one run per output folder (files.run_lock)
        ctx = make_context(settings, out, audio=False)
        parts.PartStore(out / parts.PARTS_DIR).sweep()
        t0 = time.perf_counter()
        batch = read_transcripts(Path(file), settings.channels)
        read_s = time.perf_counter() - t0
        recordings = [c.recording for c in batch.calls]
        if on_start:
            on_start(recordings)
        times = {c.recording.call_id: c.times for c in batch.calls}
        untimed = {c for c, basis in times.items() if basis == "none"}
        per_call_read = read_s / max(len(batch.calls), 1)
        with _Night(settings, recordings, list(batch.failures), out, untimed) as night:
            for call in batch.calls:
                key = parts.analysis_key(parts.digest(call.turns, call.duration_s, call.times), call.recording,
                                         ctx.settings_key)
                outcome: CallResult | Failure | None = _reuse(call.recording, ctx, key)
                if outcome is None:
                    language = call.recording.meta_dict.get("language", "").strip().lower()
                    outcome = analyse_turns(call.recording, call.turns, ctx, duration_s=call.duration_s,
                                            n_channels=0, audio_fn=None, timings={"read": per_call_read},
                                            timed=call.times != "none", language=language)
                    outcome = _keep(call.recording, ctx, key, outcome)
                night.add(outcome)
                if on_progress:
                    on_progress(call.recording, outcome)
            model_info = {"name": IMPORTED_MODEL, "path": None, "sha256": None, "source": str(file)}
            return _finish(out, settings, ctx, source=Path(file), recordings=recordings, night=night,
                           times=times, model_info=model_info, force=False, started_at=started_at,
                           t_start=t_start)


CHUNK_CALLS = 64  # calls read back from their parts at a time while the tables are assembled


def _finish(
    out: Path,
    settings: Settings,
    ctx: Context,
    *,
    source: Path,
    recordings: list[Recording],
    night: _Night,
    times: dict[str, str],
    model_info: dict[str, Any],
    force: bool,
    started_at: datetime,
    t_start: float,
    manifest: dict[str, Any] | None = None,
) -> RunSummary:
    """The end of a run, the same for audio and imported transcripts: every table, assembled
    from the calls' parts a few at a time, the QA sample and the history store, then run.json
    (written last).

    ``times`` is the time basis per imported call (``imported`` or ``none``); calls not in it
    were transcribed from audio.
    """
    night.flush()
    t_write = time.perf_counter()
    failures = night.failures
    known = {r.call_id for r in recordings}
    failed_recordings: dict[str, Recording] = {}
    for f in failures:  # one calls row per failed call, however many of its rows failed
        if f.call_id and f.call_id not in known and f.call_id not in failed_recordings:
            failed_recordings[f.call_id] = Recording(f.call_id, Path(f.path))
    all_recordings = recordings + list(failed_recordings.values())
    imported = bool(times) or model_info["name"] == IMPORTED_MODEL
    order = {rec.call_id: i for i, rec in enumerate(recordings)}
    store = parts.PartStore(out / parts.PARTS_DIR)
    results = parts.Results(store, sorted(night.ok, key=order.__getitem__))
    model = model_info["name"]

    counts = dict.fromkeys(("transcribed", "cached", "untimed", "turns", "flagged_turns",
                            "lexicon_corrections", "redactions", "events"), 0)
    audio_seconds = 0.0
    stage_totals = dict(night.stage_totals)
    call_parts = _Frames()  # the calls table, a chunk of processed calls at a time
    failed_rules, threats = _Frames(), _Frames()  # what the QA sampler reads of the night
    # every table, and the QA sample's files, replace the last run's together or not at all
    # (a full disk half way leaves the last night's set whole)
    with all_or_nothing():
        with (outputs.TableSink(out, "turns") as turns, outputs.TableSink(out, "words") as words,
              outputs.TableSink(out, "events") as events, outputs.TableSink(out, "rule_results") as rules,
              outputs.TableSink(out, "training_clips") as clip_table):
            for chunk in results.chunks(CHUNK_CALLS):
                turns.append(outputs.turns_frame(chunk))
                words.append(outputs.words_frame(chunk))
                ev = outputs.events_frame(chunk)
                events.append(ev)
                threats.add(ev[ev.type == "escalation"])
                rr = outputs.rule_results_frame(chunk, ctx.scorecard)
                rules.append(rr)
                failed_rules.add(rr[rr.outcome == "fail"])
                clip_table.append(clips.clips_frame(chunk, settings.clips))
                release_memory()
                rows = {r.recording.call_id: outputs.call_row(r) for r in chunk}
                for call_id, row in rows.items():
                    row["cached"] = call_id not in night.fresh
                call_parts.add(outputs.calls_frame(rows, (), [r.recording for r in chunk], model))
                for r in chunk:
                    cached = r.recording.call_id not in night.fresh
                    basis = times.get(r.recording.call_id)
                    counts["transcribed"] += not (cached or imported)
                    counts["cached"] += cached
                    counts["untimed"] += basis == "none"
                    counts["turns"] += len(r.turns)
                    counts["flagged_turns"] += sum(1 for t in r.turns if t.flags)
                    counts["lexicon_corrections"] += sum(len(t.corrections) for t in r.turns)
                    counts["redactions"] += sum(len(t.redactions) for t in r.turns)
                    counts["events"] += len(r.events)
                    if basis != "none":
                        audio_seconds += r.duration_s
            checkpoint("tables")  # the big tables in their temp files, none renamed
        calls_df = _with_times(outputs.assemble_calls(call_parts.parts, failures, all_recordings, model),
                               times, imported)
        del call_parts
        outputs.write_table(calls_df, out, "calls")
        agents = outputs.scorecards_frame(calls_df, ["agent_id", "agent_name", "team"])
        outputs.write_table(agents, out, "agents")
        outputs.write_table(outputs.scorecards_frame(calls_df, ["team"]), out, "teams")
        outputs.write_table(outputs.failures_frame(failures), out, "failures")

        sampled: dict[str, Any] | None = None
        if night.db is not None and settings.batch.shard:  # one shard is not the night
            sampled = {"night": night.night, "shard": settings.batch.shard, "candidates": None,
                       "skipped": "a shard's run does not sample: once every shard of the night has run, "
                                  f"sample the whole night from the store with `speechqa sample OUT "
                                  f"--from-store --night {night.night}`"}
        elif night.db is not None:
            sampled = qa_sample(night.db, out, night.night, settings, calls_df,
                                failed_rules.frame(outputs.rule_results_frame([], None)),
                                threats.frame(outputs.events_frame([])))
    store.prune(set(results.call_ids))

    stage_totals["write"] = time.perf_counter() - t_write
    info = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(source),
        "cwd": str(Path.cwd()),  # where relative paths (source, the calls' paths) start
        "input": "transcripts" if imported else "audio",
        "manifest": manifest,  # the manifest read and its encoding (utf-8, utf-8-sig, gbk, gb18030)
        "out": str(out),
        "versions": _versions(),
        "model": model_info,
        "device": ctx.device or None,
        "compute_type": ctx.compute_type or None,
        "workers": ctx.workers,
        "cpu_threads_per_worker": ctx.cpu_threads,
        "cache_dir": None if imported else str(ctx.cache_dir),
        "force": force,
        "settings": settings.to_dict(),
        "settings_source": settings.source,
        "lexicon_terms": len(ctx.lexicon.terms) if ctx.lexicon else 0,
        # Customer numbers are masked unless the user asked for raw text (--keep-pii).
        "pii_redacted": settings.text.redact_pii,
        "sampling": sampled,
        "scorecard": None if ctx.scorecard is None else {
            "name": ctx.scorecard.name, "version": ctx.scorecard.version,
            "sha256": ctx.scorecard.sha256, "source": ctx.scorecard.source,
            "items": len(ctx.scorecard.items)},
        "counts": {
            "recordings": len(all_recordings),
            "ok": len(results),
            "failed": len(failures),
            "transcribed": counts.pop("transcribed"),
            "cached": counts.pop("cached"),
            "imported": len(results) if imported else 0,
            **counts,
            "audio_seconds": round(audio_seconds, 3),
        },
        "timings_s": {k: round(v, 3) for k, v in stage_totals.items()}
        | {"total": round(time.perf_counter() - t_start, 3)},
    }
    info["exit_code"] = 1 if failures else 0
    info["pages"] = {"written": [], "errors": []}
    if settings.report.enabled:
        from speechqa.report import write_pages

        info["pages"] = write_pages(out, settings, info)  # the CLI prints any errors
    outputs.write_json(out / "run.json", info)
    return RunSummary(out=out, results=results, failures=tuple(failures), run_info=info)


class _Frames:
    """Frames that arrive a chunk of calls at a time, joined every ``JOIN`` of them: a night's
    hundreds of small frames would cost far more than their rows."""

    JOIN = 16

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def add(self, df: Any) -> None:
        import pandas as pd

        if len(df):
            self.parts.append(df)
        if len(self.parts) >= self.JOIN:
            self.parts = [pd.concat(self.parts, ignore_index=True)]

    def frame(self, empty: Any) -> Any:
        import pandas as pd

        return pd.concat(self.parts, ignore_index=True) if self.parts else empty


def _with_times(calls: Any, times: dict[str, str], imported: bool) -> Any:
    """The calls table with its ``times`` column after ``channels``: ``audio``, ``imported``
    or ``none``. Imported calls have no channel count; a call without times has no duration."""
    calls = calls.drop(columns=["times"], errors="ignore")  # a metadata column of that name loses
    basis = [times.get(c, "" if imported else "audio") for c in calls.call_id]
    calls.insert(int(calls.columns.get_loc("channels")) + 1, "times", basis)
    calls["times"] = calls["times"].astype("string")
    if imported:
        calls["channels"] = calls["channels"].astype("Int64").where(calls["times"] == "audio")
        calls.loc[calls["times"] == "none", "duration_s"] = math.nan
        calls.loc[calls["status"] == "ok", "asr_seconds"] = 0.0
    return calls


def infer_night(recordings: list[Recording]) -> str:
    """The night a batch belongs to: the most common ``started_at`` date of its manifest,
    else today (UTC)."""
    from collections import Counter

    days = Counter(str(r.meta_dict.get("started_at", ""))[:10] for r in recordings)
    days.pop("", None)
    for day, _ in days.most_common():
        try:
            return datetime.fromisoformat(day).date().isoformat()
        except ValueError:
            continue
    return datetime.now(UTC).date().isoformat()


def sample_from_store(out: Path, night: str, settings: Settings) -> dict[str, Any]:
    """Sample a whole night once from the history store, whichever runs (shards, machines)
    recorded it, into ``out``: ``qa_candidates`` and the night's ``agents`` and ``teams``
    scorecards. Refused while a run is still recording the night (store.lock_night)."""
    from speechqa import store as history

    db = history.open_store(settings.store.db)
    lock = history.lock_night(db, night, str(out))  # no shard of the night may be running
    try:
        calls, rule_results, events = history.night_tables(db, night)
        if calls.empty:
            raise SpeechQAError(f"{history.describe(db)}: no calls recorded for night {night}")
        with all_or_nothing():
            agents = outputs.scorecards_frame(calls, ["agent_id", "agent_name", "team"])
            outputs.write_table(agents, out, "agents")
            outputs.write_table(outputs.scorecards_frame(calls, ["team"]), out, "teams")
            info = qa_sample(db, out, night, settings, calls, rule_results, events)
    finally:
        history.unlock_night(db, lock)
    return info | {"calls": len(calls), "source": "store"}


def qa_sample(db: Any, out: Path, night: str, settings: Settings, calls: Any, rule_results: Any,
              events: Any) -> dict[str, Any]:
    """Sample the night's calls for review (see speechqa/sampling.py), record the sample in the
    history store and write ``qa_candidates`` (CSV, Parquet and an Excel sheet).

    Re-running a night gives the same sample: only samples of earlier nights count as history.
    """
    from datetime import date, timedelta

    from speechqa import sampling
    from speechqa import store as history

    cfg = settings.sampling
    before = (date.fromisoformat(night) - timedelta(days=1)).isoformat()
    earlier = history.samples_frame(db, until=before)
    first, _ = sampling.period_bounds(night, cfg.period_days)
    in_period = earlier[earlier.night >= first] if len(earlier) else earlier
    past = sampling.History(frozenset(earlier.call_id) if len(earlier) else frozenset(),
                            in_period.agent_id.value_counts().to_dict() if len(in_period) else {})
    # The sampler reads failed items and escalations only (for the evidence column): hand it
    # just those rows, so its per-candidate lookups do not scan every rule result of the night.
    failed = rule_results[rule_results.outcome == "fail"] if len(rule_results) else rule_results
    threats = events[events.type == "escalation"] if len(events) else events
    samples = sampling.sample_night(calls, night, cfg, past, failed, threats)
    seed = sampling.night_seed(night, cfg.seed)
    history.save_samples(db, night, seed, samples.to_dict("records"), batch=list(calls.call_id))
    outputs.write_table(samples, out, "qa_candidates")
    outputs.write_excel(samples, out / "qa_candidates.xlsx", sheet="qa_candidates")
    return {"night": night, "seed": seed, "candidates": len(samples),
            "layers": samples.layer.value_counts().to_dict() if len(samples) else {},
            "db": history.describe(db)}
