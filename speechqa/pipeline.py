"""Runs the stages for a batch: ingest → audio → asr → text → sentiment → metrics → compliance
→ outputs.

``process_recording`` is a pure function of a recording and a ``Context`` (plain, picklable
data), so a parallel or Ray executor can run it anywhere; its only side effect is the
idempotent, content-addressed transcript cache. ``run_batch`` drives it over a batch,
turns every per-call error into a failure row, and writes the tables at the end, atomically.
A killed run therefore leaves the cache of every finished call, and the next run resumes
from it with no duplicated or half-written rows.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from speechqa import __version__, asr, audio, clips, ingest, metrics, outputs, sentiment, text
from speechqa.calls import CallResult, Event, Failure, Recording
from speechqa.compliance import Scorecard, load_scorecard, score_call
from speechqa.config import Settings
from speechqa.errors import AudioError, SpeechQAError
from speechqa.lexicon import Lexicon, lexicon_for
from speechqa.models import ModelInfo, read_model


@dataclass(frozen=True)
class Context:
    """What a worker needs to process one recording."""

    settings: Settings
    model: ModelInfo
    device: str
    compute_type: str
    cache_dir: Path
    lexicon: Lexicon | None = None
    scorecard: Scorecard | None = None
    workers: int = 1
    cpu_threads: int = 1
    force: bool = False


@dataclass(frozen=True)
class RunSummary:
    out: Path
    results: tuple[CallResult, ...]
    failures: tuple[Failure, ...]
    run_info: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


ProgressFn = Callable[[Recording, "CallResult | Failure"], None]


def make_context(settings: Settings, out: Path, *, force: bool = False) -> Context:
    """Resolve the model, device and cache folder once, before any recording is touched."""
    model = read_model(Path(settings.asr.model))
    device = asr.resolve_device(settings.asr.device)
    compute_type = asr.resolve_compute_type(device, settings.asr.compute_type)
    cache_dir = Path(settings.batch.cache_dir) if settings.batch.cache_dir else out / ".cache"
    workers, threads = asr.resolve_workers(device, settings.asr.workers, settings.asr.cpu_threads)
    # Loaded now so that a missing user dictionary or sentiment model stops the run before
    # any call is touched, instead of failing every call; both stay cached for the workers.
    text.tokenizer(settings.text.user_words, settings.text.user_dict)
    sentiment.load_model(settings.sentiment.model)
    scorecard = load_scorecard(settings.compliance.rules or None)  # a broken rules file stops the run
    return Context(settings, model, device, compute_type, cache_dir, lexicon_for(settings.lexicon),
                   scorecard, workers, threads, force)


def process_recording(rec: Recording, ctx: Context) -> CallResult | Failure:
    """Transcribe (or fetch from cache) one recording, split it into turns and analyse it."""
    timings: dict[str, float] = {}
    stage = "read"
    settings = ctx.settings
    try:
        t0 = time.perf_counter()
        sha = audio.content_sha256(rec.path)
        timings["hash"] = time.perf_counter() - t0
        key = asr.cache_key(sha, ctx.model.sha256, ctx.compute_type, ctx.settings.asr)
        transcript = None if ctx.force else asr.load_cached(ctx.cache_dir, key)
        cached = transcript is not None
        decoded = None
        if transcript is None:
            stage = "decode"
            t0 = time.perf_counter()
            decoded = audio.decode(rec.path)
            timings["decode"] = time.perf_counter() - t0
            stage = "asr"
            s = ctx.settings.asr
            model = asr.load_model(str(ctx.model.path), ctx.device, ctx.compute_type,
                                   ctx.cpu_threads, ctx.workers)
            transcript = asr.transcribe(model, decoded, sha, s)
            timings["asr"] = transcript.asr_seconds
            asr.save_cached(ctx.cache_dir, key, transcript)
        stage = "turns"
        t0 = time.perf_counter()
        turns = asr.to_turns(transcript, rec.call_id, ctx.settings.channels,
                             ctx.settings.turns, ctx.settings.guards, ctx.lexicon)
        timings["turns"] = time.perf_counter() - t0

        stage = "text"
        t0 = time.perf_counter()
        turns, redactions = text.process_turns(turns, settings.text)
        timings["text"] = time.perf_counter() - t0

        stage = "sentiment"
        t0 = time.perf_counter()
        turns = sentiment.score_turns(turns, sentiment.load_model(settings.sentiment.model))
        call_sentiment = sentiment.call_sentiment(turns, settings.sentiment)
        escalations = sentiment.escalations(turns)
        timings["sentiment"] = time.perf_counter() - t0

        stage = "metrics"
        t0 = time.perf_counter()
        if decoded is None:  # a cached transcript: the levels still come from the audio
            decoded = audio.decode(rec.path)
        turns, call_metrics, metric_events = metrics.analyse(
            turns, list(decoded.samples), decoded.sample_rate, transcript.duration_s,
            settings.metrics, muted=[(e.start, e.end) for e in redactions],
        )
        events = tuple(sorted((*redactions, *escalations, *metric_events), key=_event_order))
        timings["metrics"] = time.perf_counter() - t0

        result = CallResult(
            recording=rec,
            duration_s=transcript.duration_s,
            n_channels=transcript.n_channels,
            turns=turns,
            asr_seconds=transcript.asr_seconds,
            cached=cached,
            audio_sha256=sha,
            timings=tuple(timings.items()),
            events=events,
            sentiment=call_sentiment,
            metrics=call_metrics,
        )
        if ctx.scorecard is not None:
            stage = "compliance"
            t0 = time.perf_counter()
            compliance = score_call(result, ctx.scorecard)
            timings["compliance"] = time.perf_counter() - t0
            result = dataclasses.replace(result, compliance=compliance, timings=tuple(timings.items()))
    except AudioError as exc:
        return Failure(rec.call_id, str(rec.path), stage, str(exc))
    except SpeechQAError as exc:
        return Failure(rec.call_id, str(rec.path), stage, f"{rec.path}: {exc}")
    except Exception as exc:  # a bug on one call (or one rule) must not cost the night's batch
        return Failure(rec.call_id, str(rec.path), stage,
                       f"{rec.path}: unexpected {type(exc).__name__}: {exc}")
    return result


def _event_order(e: Event) -> tuple[float, str, str]:
    return (e.start, e.type, e.turn_id)


def _execute(recordings: list[Recording], ctx: Context) -> Iterator[tuple[Recording, CallResult | Failure]]:
    """Local executor: ``ctx.workers`` threads (the model releases the GIL while it runs).

    Outcomes come back as calls finish. Another executor (processes, Ray) only has to map
    ``process_recording`` over the same records.
    """
    if ctx.workers <= 1 or len(recordings) <= 1:
        for rec in recordings:
            yield rec, process_recording(rec, ctx)
        return
    with ThreadPoolExecutor(max_workers=ctx.workers, thread_name_prefix="speechqa") as pool:
        futures = {pool.submit(process_recording, rec, ctx): rec for rec in recordings}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


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


def run_batch(
    source: Path,
    out: Path,
    settings: Settings,
    *,
    force: bool = False,
    on_start: Callable[[list[Recording]], None] | None = None,
    on_progress: ProgressFn | None = None,
) -> RunSummary:
    """The nightly batch. Per-call problems become failures; setup problems raise."""
    started_at = datetime.now(UTC)
    t_start = time.perf_counter()
    out = Path(out)
    ctx = make_context(settings, out, force=force)
    recordings, failures = ingest.discover(Path(source), settings.batch.manifest_name)
    failures = list(failures)
    if on_start:
        on_start(recordings)

    results: list[CallResult] = []
    for rec, outcome in _execute(recordings, ctx):
        if isinstance(outcome, Failure):
            failures.append(outcome)
        else:
            results.append(outcome)
        if on_progress:
            on_progress(rec, outcome)
    order = {rec.call_id: i for i, rec in enumerate(recordings)}
    results.sort(key=lambda r: order[r.recording.call_id])

    t_write = time.perf_counter()
    failed_recordings = [Recording(f.call_id, Path(f.path)) for f in failures
                         if f.call_id not in {r.call_id for r in recordings}]
    all_recordings = recordings + failed_recordings
    calls_df = outputs.calls_frame(results, failures, all_recordings, ctx.model.name)
    events_df = outputs.events_frame(results)
    rules_df = outputs.rule_results_frame(results, ctx.scorecard)
    outputs.write_table(outputs.turns_frame(results), out, "turns")
    outputs.write_table(outputs.words_frame(results), out, "words")
    outputs.write_table(calls_df, out, "calls")
    outputs.write_table(events_df, out, "events")
    outputs.write_table(rules_df, out, "rule_results")
    outputs.write_table(clips.clips_frame(results, settings.clips), out, "training_clips")
    outputs.write_table(outputs.scorecards_frame(calls_df, ["agent_id", "agent_name", "team"]), out, "agents")
    outputs.write_table(outputs.scorecards_frame(calls_df, ["team"]), out, "teams")
    outputs.write_table(outputs.failures_frame(failures), out, "failures")

    sampled: dict[str, Any] | None = None
    if settings.sampling.enabled:
        from speechqa import store as history

        night = settings.sampling.night or infer_night(all_recordings)
        db = history.open_store(settings.store.db)
        history.save_calls(db, night, results)
        sampled = qa_sample(db, out, night, settings, calls_df, rules_df, events_df)

    stage_totals: dict[str, float] = {}
    for r in results:
        for name, seconds in r.timings:
            stage_totals[name] = stage_totals.get(name, 0.0) + seconds
    stage_totals["write"] = time.perf_counter() - t_write
    info = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(source),
        "out": str(out),
        "versions": _versions(),
        "model": {"name": ctx.model.name, "path": str(ctx.model.path),
                  "sha256": ctx.model.sha256, "source": ctx.model.source},
        "device": ctx.device,
        "compute_type": ctx.compute_type,
        "workers": ctx.workers,
        "cpu_threads_per_worker": ctx.cpu_threads,
        "cache_dir": str(ctx.cache_dir),
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
            "transcribed": sum(1 for r in results if not r.cached),
            "cached": sum(1 for r in results if r.cached),
            "turns": sum(len(r.turns) for r in results),
            "flagged_turns": sum(1 for r in results for t in r.turns if t.flags),
            "lexicon_corrections": sum(len(t.corrections) for r in results for t in r.turns),
            "redactions": sum(len(t.redactions) for r in results for t in r.turns),
            "events": sum(len(r.events) for r in results),
            "audio_seconds": round(sum(r.duration_s for r in results), 3),
        },
        "timings_s": {k: round(v, 3) for k, v in stage_totals.items()}
        | {"total": round(time.perf_counter() - t_start, 3)},
    }
    info["exit_code"] = 1 if failures else 0
    outputs.write_json(out / "run.json", info)
    return RunSummary(out=out, results=tuple(results), failures=tuple(failures), run_info=info)


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
    samples = sampling.sample_night(calls, night, cfg, past, rule_results, events)
    seed = sampling.night_seed(night, cfg.seed)
    history.save_samples(db, night, seed, samples.to_dict("records"), batch=list(calls.call_id))
    outputs.write_table(samples, out, "qa_candidates")
    outputs.write_excel(samples, out / "qa_candidates.xlsx", sheet="qa_candidates")
    return {"night": night, "seed": seed, "candidates": len(samples),
            "layers": samples.layer.value_counts().to_dict() if len(samples) else {},
            "db": history.describe(db)}
