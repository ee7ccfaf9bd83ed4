from __future__ import annotations

import os

# Whisper's words depend on the CPU: CTranslate2 and the GEMM libraries under it (Intel MKL,
# oneDNN) pick int8 kernels by instruction set, and an AVX2 machine without AVX-512 writes
# other words than an AVX-512 one. The suite pins all three to AVX2, before anything loads
# CTranslate2, so that every x86 machine with AVX2 transcribes the test calls alike. Set
# before the first import, and inherited by the CLI subprocesses the tests start. An
# explicit setting in the environment wins.
ASR_PIN = {"CT2_FORCE_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
for _name, _value in ASR_PIN.items():
    os.environ.setdefault(_name, _value)
import shutil
import tempfile
from pathlib import Path

import pytest

from speechqa.calls import ChannelTranscript, Segment, Transcript, Word
from speechqa.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_CALLS = ROOT / "tests" / "fixtures" / "calls"
MODEL_DIR = ROOT / "models" / "whisper-base"
SPEAKER_DIR = MODEL_DIR.parent / "speaker"  # speechqa models install builds both


@pytest.fixture(scope="session", autouse=True)
def _history_store_in_tmp(tmp_path_factory):
    """Runs started by tests (CLI, subprocesses) keep their history store out of the checkout."""
    os.environ["SPEECHQA_STORE_DB"] = str(tmp_path_factory.mktemp("store") / "speechqa.db")
    yield
    os.environ.pop("SPEECHQA_STORE_DB", None)


def settings_for(cache_dir: Path | None = None, **asr):
    """Settings isolated from the developer's environment, pointing at the real model."""
    overrides = {"asr": {"model": str(MODEL_DIR), **asr}, "speakers": {"model": str(SPEAKER_DIR)},
                 "store": {"db": os.environ.get("SPEECHQA_STORE_DB", str(Path(tempfile.mkdtemp()) / "qa.db"))}}
    if cache_dir is not None:
        overrides["batch"] = {"cache_dir": str(cache_dir)}
    return load_settings(environ={}, overrides=overrides)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODEL_DIR / "model.bin").is_file():
        pytest.fail(f"{MODEL_DIR} is missing: run 'make install' (speechqa models install)")
    return MODEL_DIR


@pytest.fixture(scope="session")
def asr_cache(tmp_path_factory) -> Path:
    """One transcript cache for the whole session, so each fixture call is transcribed once."""
    return tmp_path_factory.mktemp("asr-cache")


@pytest.fixture(scope="session")
def fixture_run(model_dir, asr_cache, tmp_path_factory):
    """The real pipeline, real model, on the committed fixture calls."""
    from speechqa.pipeline import run_batch

    out = tmp_path_factory.mktemp("fixture-run")
    return run_batch(FIXTURE_CALLS, out, settings_for(asr_cache))


@pytest.fixture
def fixture_copy(tmp_path) -> Path:
    """A writable copy of the fixture calls folder."""
    dest = tmp_path / "calls"
    shutil.copytree(FIXTURE_CALLS, dest)
    return dest


def word(start, end, text, p=0.9):
    return Word(start, end, text, p)


def segment(words, *, avg_logprob=-0.3, no_speech_prob=0.01, compression_ratio=1.2, text=None):
    return Segment(
        start=words[0].start if words else 0.0,
        end=words[-1].end if words else 1.0,
        text=text if text is not None else "".join(w.word for w in words),
        avg_logprob=avg_logprob,
        no_speech_prob=no_speech_prob,
        compression_ratio=compression_ratio,
        temperature=0.0,
        words=tuple(words),
    )


def transcript(*channels_segments, duration=60.0):
    """A Transcript built in memory: one list of segments per channel."""
    return Transcript(
        audio_sha256="0" * 64,
        duration_s=duration,
        n_channels=len(channels_segments),
        sample_rate=8000,
        channels=tuple(
            ChannelTranscript(channel=i, segments=tuple(segs))
            for i, segs in enumerate(channels_segments)
        ),
        asr_seconds=1.0,
        language="zh",
    )


RECORDINGS = ROOT / "recordings"


@pytest.fixture(scope="session")
def recordings_run(model_dir, asr_cache, tmp_path_factory):
    """The real pipeline, real model, on the ten committed sample calls in recordings/."""
    from speechqa.pipeline import run_batch

    out = tmp_path_factory.mktemp("recordings-run")
    return run_batch(RECORDINGS, out, settings_for(asr_cache))


def turn(start, end, text="你好", role="agent", channel=None, call_id="c1", index=1, **kw):
    from speechqa.calls import Turn

    channel = channel if channel is not None else (1 if role == "customer" else 0)
    return Turn(call_id=call_id, turn_id=f"{call_id}-{role}-{index:04d}", role=role, channel=channel,
                start=start, end=end, text=text, avg_logprob=-0.3, no_speech_prob=0.01,
                compression_ratio=1.2, **kw)
