"""Who spoke when on a mono call: two voices separated with a real speaker model.

On onnxruntime, without torch:

1. **Segmentation.** pyannote segmentation-3.0 reads 10 s windows (every ``step_s``) and says,
   for each 17 ms frame, which of up to three *local* speakers talk, two at once included
   (its powerset output: overlaps and speaker changes come from the model, not from pauses).
2. **Embeddings.** Each local speaker's own speech (frames where nobody else talks) is
   embedded by 3D-Speaker's CAM++ (zh-en) in chunks of ``chunk_s`` (80-bin Kaldi fbank,
   mean-normalised, from kaldi-native-fbank).
3. **Clustering** of the chunks into the call's two voices (:func:`cluster`). Chunks, not the
   local speakers: segmentation-3.0 often hears two similar voices in one window as one local
   speaker, and a 1.5 s chunk is short enough to be one voice. A local speaker is the voice
   most of its chunks are, and two local speakers of one window are never the same voice; one
   too short to embed (a backchannel 嗯, 对) is the window's *other* voice.
4. **Reconstruction.** Each frame's voices are the average over the windows that saw it, and
   the call's speaker turns are the runs of each voice (two at once where they overlap).

Whisper's turns are then cut where the speaker changes, word by word (speechqa/asr.py), and
speechqa/roles.py decides which voice is the agent's. A recording longer than one audio piece
is analysed piece by piece (memory stays one piece) and clustered once for the whole call.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechqa.errors import ModelError
from speechqa.files import write_text_atomic
from speechqa.models import SpeakerModelInfo, read_speaker_models

RATE = 16_000
WINDOW = 10 * RATE  # segmentation-3.0's window
FRAME_STEP = 270  # samples between its output frames (SincNet's strides)
FRAME_FIELD = 721  # samples one frame sees
FRAMES = (WINDOW - FRAME_FIELD) // FRAME_STEP  # 589, as the model gives
# segmentation-3.0's seven classes: nobody, one of three local speakers, or two of them at once
POWERSET = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)
FORMAT = 4  # of the cached diarisation
BRIDGE_S = 0.5  # a voice's pause this short, with nobody else in it, stays inside its turn


@dataclass(frozen=True)
class SpeakerTurn:
    """A stretch in which one voice talks (the two voices' turns may overlap)."""

    start: float
    end: float
    speaker: int


@dataclass(frozen=True)
class Diarization:
    """A mono call's two voices: when each spoke, and what each sounds like."""

    turns: tuple[SpeakerTurn, ...]  # by start
    centroids: tuple[tuple[float, ...], ...]  # one unit vector per voice (CAM++, 192 dims)
    similarity: float  # cosine between the two voices: near 1, one voice split in two
    seconds: float  # what diarisation cost
    model: str  # the speaker models' sha256
    n_chunks: int = 0  # embedded chunks the voices were clustered from

    @property
    def n_speakers(self) -> int:
        return len(self.centroids)

    def speech_s(self, speaker: int) -> float:
        return sum(t.end - t.start for t in self.turns if t.speaker == speaker)


@dataclass
class _Window:
    """One segmentation window: its local speakers' frames and, when long enough, voices."""

    start: float  # call time of frame 0's sample 0
    active: np.ndarray  # (FRAMES, 3) bool
    n_frames: int  # frames inside the audio (the last window is padded)
    assigned: dict[int, int] = field(default_factory=dict)  # local speaker -> voice
    # the local speakers' own speech in short chunks: (local speaker, first frame, end frame, unit vector)
    chunks: list[tuple[int, int, int, np.ndarray]] = field(default_factory=list)
    chunk_voices: list[int] = field(default_factory=list)  # each chunk's voice, after clustering

    def voices(self, n_voices: int) -> np.ndarray:
        """(n_frames, n_voices) bool: who talks in each frame. A local speaker's frames are its
        voice's, except where one of its chunks was heard as the other voice."""
        out = np.zeros((self.n_frames, n_voices), bool)
        for k, g in self.assigned.items():
            out[:, g] |= self.active[:self.n_frames, k]
        for (k, a, b, _), g in zip(self.chunks, self.chunk_voices, strict=False):
            if k in self.assigned and g != self.assigned[k]:
                span = self.active[a:b, k]
                out[a:b, self.assigned[k]] &= ~span | (self.active[a:b].sum(axis=1) > 1)
                out[a:b, g] |= span
        return out


@dataclass(frozen=True, eq=False)
class SpeakerModels:
    info: SpeakerModelInfo
    segmentation: Any  # onnxruntime.InferenceSession
    embedding: Any


@functools.lru_cache(maxsize=2)
def load_models(path: str, threads: int = 1) -> SpeakerModels:
    """The two ONNX sessions, once per process (``threads``: onnxruntime's intra-op threads)."""
    import onnxruntime

    info = read_speaker_models(Path(path))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        seg = onnxruntime.InferenceSession(str(info.segmentation), options, providers=["CPUExecutionProvider"])
        emb = onnxruntime.InferenceSession(str(info.embedding), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a damaged file: onnxruntime's own message says what
        raise ModelError(f"{info.path}: the speaker models do not load ({exc}); "
                         "run 'speechqa models install --force'") from exc
    return SpeakerModels(info, seg, emb)


def fbank(samples: np.ndarray) -> np.ndarray:
    """80-bin Kaldi fbank (25 ms frames every 10 ms, no dither), mean-normalised over time:
    what CAM++ was trained on."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = RATE
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(RATE, (samples * 32768.0).astype(np.float32).tolist())
    computer.input_finished()
    n = computer.num_frames_ready
    if n == 0:
        return np.zeros((0, 80), np.float32)
    feats = np.stack([computer.get_frame(i) for i in range(n)]).astype(np.float32)
    return feats - feats.mean(axis=0, keepdims=True)


def embed(models: SpeakerModels, samples: np.ndarray) -> np.ndarray:
    """CAM++'s unit-length embedding of ``samples`` (16 kHz mono)."""
    feats = fbank(samples)
    if len(feats) < 2:
        raise ValueError("too little audio to embed")
    vector = models.embedding.run(None, {"feats": feats[None]})[0][0]
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def frame_time(index: np.ndarray | int) -> np.ndarray | float:
    """Seconds from a window's start to the middle of frame ``index``."""
    return (np.asarray(index) * FRAME_STEP + FRAME_FIELD / 2) / RATE


def segment(models: SpeakerModels, samples: np.ndarray, offset_s: float, step_s: float,
            min_embed_s: float, chunk_s: float) -> list[_Window]:
    """Segmentation windows of one piece of a call (mono, 16 kHz), ``offset_s`` into the call,
    with each local speaker's own speech (nobody else talking) embedded in chunks of about
    ``chunk_s``; a stretch shorter than ``min_embed_s`` is not embedded."""
    step = max(int(step_s * RATE), RATE)
    n = len(samples)
    starts = list(range(0, max(n - WINDOW, 0) + 1, step))
    if starts[-1] + WINDOW < n:
        starts.append(starts[-1] + step)
    windows: list[_Window] = []
    batch = 8
    for b in range(0, len(starts), batch):
        chunk = np.zeros((len(starts[b:b + batch]), 1, WINDOW), np.float32)
        for j, s in enumerate(starts[b:b + batch]):
            piece = samples[s:s + WINDOW]
            chunk[j, 0, :len(piece)] = piece
        classes = models.segmentation.run(None, {"input": chunk})[0].argmax(axis=-1)  # (B, FRAMES)
        for j, s in enumerate(starts[b:b + batch]):
            inside = min(FRAMES, max(0, (min(n - s, WINDOW) - FRAME_FIELD) // FRAME_STEP))
            active = POWERSET[classes[j]].copy()
            active[inside:] = False
            windows.append(_Window(offset_s + s / RATE, active, inside))
    min_frames = int(min_embed_s * RATE / FRAME_STEP)
    for w, s in zip(windows, starts, strict=True):
        alone = w.active.sum(axis=1) == 1
        _embed_chunks(models, w, samples[s:s + WINDOW], alone, chunk_s, min_frames)
    return windows


def _embed_chunks(models: SpeakerModels, w: _Window, samples: np.ndarray, alone: np.ndarray, chunk_s: float,
                  min_frames: int) -> None:
    size = max(int(chunk_s * RATE / FRAME_STEP), min_frames, 1)
    for k in range(3):
        own = np.concatenate([[0], (w.active[:w.n_frames, k] & alone[:w.n_frames]).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(own))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            cuts = list(range(a, b, size))
            if len(cuts) > 1 and b - cuts[-1] < min_frames:
                cuts.pop()  # a short tail joins the chunk before it
            for i, lo in enumerate(cuts):
                hi = cuts[i + 1] if i + 1 < len(cuts) else b
                if hi - lo < min_frames:
                    continue
                mask = np.zeros(FRAMES, bool)
                mask[lo:hi] = True
                speech = samples[_frames_to_samples(mask, len(samples))]
                try:
                    w.chunks.append((k, int(lo), int(hi), embed(models, speech)))
                except ValueError:
                    continue


def _frames_to_samples(frames: np.ndarray, n_samples: int) -> np.ndarray:
    """A sample mask from a frame mask: each frame owns the FRAME_STEP samples at its centre."""
    mask = np.zeros(n_samples, bool)
    for i in np.flatnonzero(frames):
        lo = int(i * FRAME_STEP + FRAME_FIELD / 2 - FRAME_STEP / 2)
        mask[max(lo, 0):max(min(lo + FRAME_STEP, n_samples), 0)] = True
    return mask


def cluster(windows: Sequence[_Window], n_voices: int = 2, rounds: int = 3, starts: int = 10) -> np.ndarray:
    """Cluster every chunk into the call's voices and assign the windows' local speakers.

    The chunks' embeddings are centred on the call's mean (what every chunk of the call shares,
    the line and the codec, is taken out, leaving what tells the voices apart) and clustered by
    k-means (the best of ``starts`` k-means++ starts, seeded: the same call gives the same
    voices), then refined ``rounds`` times with chunks weighted by length. A local speaker is
    the voice most of its chunks are; within a window two local speakers are two voices (a
    one-to-one assignment), and one too short to embed (a backchannel) is the other voice.
    Returns each voice's centroid in the embedding space itself (unit vectors, comparable
    across calls: the agents' voiceprints)."""
    from scipy.cluster.vq import kmeans2
    from scipy.optimize import linear_sum_assignment

    items = [(w, i) for w in windows for i in range(len(w.chunks))]
    if not items:
        return np.zeros((0, 192), np.float32)
    x = np.stack([w.chunks[i][3] for w, i in items]).astype(np.float64)
    weight = np.array([w.chunks[i][2] - w.chunks[i][1] for w, i in items], float)
    if len(items) < n_voices:
        labels = np.zeros(len(items), int)
    else:
        centred = x - (x * weight[:, None]).sum(axis=0) / weight.sum()
        centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-9)
        best: tuple[float, np.ndarray] | None = None
        for seed in range(starts):
            means, found = kmeans2(centred, n_voices, seed=seed, minit="++")
            inertia = float(((centred - means[found]) ** 2).sum())
            if best is None or inertia < best[0]:
                best = (inertia, found)
        assert best is not None
        labels = best[1]
        means = np.zeros((n_voices, x.shape[1]))
        for _ in range(rounds):
            for g in range(n_voices):
                chosen = labels == g
                if chosen.any():
                    c = (centred[chosen] * weight[chosen, None]).sum(axis=0)
                    means[g] = c / max(float(np.linalg.norm(c)), 1e-9)
            labels = (centred @ means.T).argmax(axis=1)
    used = sorted(set(labels.tolist()))
    labels = np.array([used.index(g) for g in labels])
    centroids = np.zeros((len(used), x.shape[1]))
    for g in range(len(used)):
        c = (x[labels == g] * weight[labels == g, None]).sum(axis=0)
        centroids[g] = c / max(float(np.linalg.norm(c)), 1e-9)
    for w in windows:
        w.chunk_voices = []
    for (w, _), g in zip(items, labels, strict=True):
        w.chunk_voices.append(int(g))
    for w in windows:
        votes = np.zeros((3, len(used)))
        for (k, a, b, _), g in zip(w.chunks, w.chunk_voices, strict=True):
            votes[k, g] += b - a
        local = [k for k in range(3) if votes[k].any()]
        if local:
            rows, cols = linear_sum_assignment(-votes[local])
            w.assigned = {local[r]: int(c) for r, c in zip(rows, cols, strict=True)}
            for k in local:  # a third local speaker (rare): the voice of most of its chunks
                w.assigned.setdefault(k, int(votes[k].argmax()))
        if len(used) == 2:  # the short local speakers: the other voice of the window
            taken = set(w.assigned.values())
            for k in range(3):
                if k not in w.assigned and w.active[:, k].any() and len(taken) == 1:
                    w.assigned[k] = 1 - next(iter(taken))
    return centroids


def reconstruct(windows: Sequence[_Window], n_voices: int, min_s: float = 0.1,
                bridge_s: float = BRIDGE_S) -> tuple[SpeakerTurn, ...]:
    """Speaker turns from the windows' assigned local speakers, averaged where windows overlap.
    A voice's pause of up to ``bridge_s`` that no other voice speaks in stays inside its turn
    (a breath between two clauses is not the end of a turn); turns under ``min_s`` are dropped."""
    if not windows or n_voices == 0:
        return ()
    hop = FRAME_STEP / RATE
    origin = min(w.start for w in windows)
    end = max(w.start + w.n_frames * hop for w in windows)
    size = int(np.ceil((end - origin) / hop)) + FRAMES
    score = np.zeros((n_voices, size))
    seen = np.zeros(size)
    for w in windows:
        at = int(round((w.start - origin) / hop))
        seen[at:at + w.n_frames] += 1
        score[:, at:at + w.n_frames] += w.voices(n_voices).T
    active = score >= 0.5 * np.maximum(seen, 1)
    spans: list[list[list[float]]] = []
    centre = FRAME_FIELD / 2 / RATE
    for g in range(n_voices):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], active[g].astype(np.int8), [0]])))
        spans.append([[origin + centre + (a - 0.5) * hop, origin + centre + (b - 0.5) * hop]
                      for a, b in zip(edges[::2], edges[1::2], strict=True)])
    turns: list[SpeakerTurn] = []
    for g, mine in enumerate(spans):
        others = [s for h, theirs in enumerate(spans) if h != g for s in theirs]
        merged: list[list[float]] = []
        for start, stop in mine:  # a voice's short pause, with nobody else in it, is still its turn
            if merged and start - merged[-1][1] <= bridge_s and not any(
                    o[0] < start and o[1] > merged[-1][1] for o in others):
                merged[-1][1] = stop
            else:
                merged.append([start, stop])
        turns.extend(SpeakerTurn(round(max(a, 0.0), 3), round(b, 3), g) for a, b in merged if b - a >= min_s)
    return tuple(sorted(turns, key=lambda t: (t.start, t.speaker)))


class Diariser:
    """A call's diarisation, fed piece by piece (:meth:`add`), clustered once (:meth:`finish`)."""

    def __init__(self, models: SpeakerModels, *, step_s: float = 10.0, min_embed_s: float = 0.5,
                 chunk_s: float = 1.5):
        self.models, self.step_s, self.min_embed_s, self.chunk_s = models, step_s, min_embed_s, chunk_s
        self.windows: list[_Window] = []
        self.seconds = 0.0

    def add(self, offset_s: float, samples: np.ndarray) -> None:
        """One piece of the call: mono samples at 16 kHz starting ``offset_s`` into it."""
        t0 = time.perf_counter()
        if len(samples):
            self.windows.extend(segment(self.models, samples, offset_s, self.step_s, self.min_embed_s,
                                        self.chunk_s))
        self.seconds += time.perf_counter() - t0

    def finish(self) -> Diarization:
        t0 = time.perf_counter()
        centroids = cluster(self.windows)
        turns = reconstruct(self.windows, len(centroids))
        similarity = float(centroids[0] @ centroids[1]) if len(centroids) == 2 else 1.0
        self.seconds += time.perf_counter() - t0
        return Diarization(turns, tuple(tuple(round(float(v), 6) for v in c) for c in centroids),
                           round(similarity, 4), round(self.seconds, 3), self.models.info.sha256,
                           sum(len(w.chunks) for w in self.windows))


def diarise(pieces: Iterable[tuple[float, np.ndarray]], models: SpeakerModels, **options: float) -> Diarization:
    """The call's two voices from its mono pieces ((offset seconds, samples at 16 kHz))."""
    diariser = Diariser(models, **options)
    for offset, samples in pieces:
        diariser.add(offset, samples)
    return diariser.finish()


def voice_table(turns: Sequence[SpeakerTurn]) -> np.ndarray:
    """The speaker turns as an (n, 3) array of start, end and voice, for :func:`speaker_at`."""
    return np.array([(t.start, t.end, t.speaker) for t in turns], float).reshape(-1, 3)


def speaker_at(turns: Sequence[SpeakerTurn] | np.ndarray, start: float, end: float) -> int:
    """The voice that talks most in [start, end]; the nearest one when none does (-1: no turns).
    ``turns``: the speaker turns, or their :func:`voice_table` (asked once per word: build it once)."""
    table = turns if isinstance(turns, np.ndarray) else voice_table(turns)
    if not len(table):
        return -1
    talk = np.minimum(table[:, 1], end) - np.maximum(table[:, 0], start)
    voices = table[:, 2].astype(int)
    if (talk > 0).any():
        per_voice = np.bincount(voices, weights=np.maximum(talk, 0.0))
        tied = np.flatnonzero(per_voice >= per_voice.max() - 1e-9)
        if len(tied) == 1:
            return int(tied[0])
        # inside both voices at once: the one that was already talking
        return int(min((t for t in table if t[2] in tied and min(t[1], end) > max(t[0], start)),
                       key=lambda t: t[0])[2])
    middle = (start + end) / 2
    distance = np.maximum(np.maximum(table[:, 0] - middle, middle - table[:, 1]), 0.0)
    return int(voices[distance.argmin()])


# -- the cache: a call's diarisation beside its transcript -----------------------------------


def cache_key(audio_sha256: str, models_sha256: str, step_s: float, min_embed_s: float, chunk_s: float) -> str:
    import hashlib

    raw = json.dumps([FORMAT, audio_sha256, models_sha256, step_s, min_embed_s, chunk_s])
    return hashlib.sha256(raw.encode()).hexdigest()


def save_cached(cache_dir: Path, key: str, result: Diarization) -> None:
    write_text_atomic(cache_dir / "speakers" / f"{key}.json", json.dumps(asdict(result)))


def load_cached(cache_dir: Path, key: str) -> Diarization | None:
    path = cache_dir / "speakers" / f"{key}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        turns = tuple(SpeakerTurn(**t) for t in data.pop("turns"))
        centroids = tuple(tuple(c) for c in data.pop("centroids"))
        return Diarization(turns, centroids, **data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # a damaged cache entry is computed again


def check_models(path: str) -> SpeakerModelInfo:
    """The speaker models, loaded before any call (a run that needs them and lacks them stops
    here with the install command, not on every call)."""
    return load_models(path).info
