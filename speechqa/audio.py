"""Decode recordings into float32 channels at the model's rate, with PyAV (FFmpeg).

Anything FFmpeg reads works at any sample rate: WAV PCM, G.711 µ-law and A-law, MP3,
M4A/AAC, OGG/Opus, FLAC. Channels are kept apart, because a stereo call recording carries
the agent on one side and the customer on the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechqa.errors import AudioError

MODEL_RATE = 16_000


@dataclass(frozen=True)
class Audio:
    """Decoded audio: ``samples`` has shape (channels, frames), float32 in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    codec: str

    @property
    def n_channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    def mono(self) -> np.ndarray:
        """A mono mix (mean of channels), as the naive baseline and VAD-on-mix use."""
        return self.samples.mean(axis=0).astype(np.float32)


def mixed_down(sound: Audio) -> Audio:
    """``sound`` as one channel (the mean of its channels); a mono sound as it is."""
    if sound.n_channels == 1:
        return sound
    return dataclasses.replace(sound, samples=sound.mono()[None, :])


def content_sha256(path: Path) -> str:
    """Hash of the file's bytes: the cache key follows the audio, not its name or folder."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except FileNotFoundError:
        raise AudioError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise AudioError(f"{path}: is a folder, not an audio file") from None
    except PermissionError:
        raise AudioError(f"{path}: permission denied") from None
    return digest.hexdigest()


class _Buffer:
    """Decoded samples, (channels, frames) float32, appended in place; the room doubles when
    a chunk does not fit (a container that under-states its duration)."""

    def __init__(self, channels: int, frames: int):
        self.data = np.empty((channels, max(frames, 1)), dtype=np.float32)
        self.n = 0

    def add(self, chunk: np.ndarray) -> None:
        end = self.n + chunk.shape[1]
        if end > self.data.shape[1]:
            grown = np.empty((self.data.shape[0], max(end, 2 * self.data.shape[1])), dtype=np.float32)
            grown[:, : self.n] = self.data[:, : self.n]
            self.data = grown
        self.data[:, self.n:end] = chunk
        self.n = end

    def samples(self) -> np.ndarray:
        return self.data[:, : self.n]


def _stream(path: Path, sample_rate: int, meta: dict[str, Any]) -> Iterator[np.ndarray]:
    """Every channel of the first audio stream, resampled to ``sample_rate``, as FFmpeg hands
    it over: (channels, frames) float32 chunks. ``meta`` gets ``n_channels``, ``source_rate``,
    ``codec`` and ``expected`` (frames, from the container's duration) before the first chunk.

    Raises AudioError naming the file for a missing, empty or corrupt file.
    """
    import av  # imported here so that `speechqa --help` stays instant

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: no audio stream in this file")
            stream = container.streams.audio[0]
            n_channels = stream.codec_context.channels or 1
            layout = stream.codec_context.layout.name if n_channels > 2 else (
                "stereo" if n_channels == 2 else "mono"
            )
            meta.update(n_channels=n_channels, source_rate=stream.codec_context.sample_rate or 0,
                        codec=stream.codec_context.name,
                        expected=int((container.duration or 0) / 1_000_000 * sample_rate))
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler ignore broken timestamps
                for r in resampler.resample(frame):
                    yield r.to_ndarray()
            for r in resampler.resample(None):
                yield r.to_ndarray()
    except AudioError:
        raise
    except av.error.FFmpegError as exc:
        raise AudioError(f"{path}: corrupt or unsupported audio ({exc.strerror or exc})") from None
    except (OSError, ValueError) as exc:
        raise AudioError(f"{path}: cannot be decoded ({exc})") from None


def decode(path: Path, sample_rate: int = MODEL_RATE) -> Audio:
    """Decode every channel of the first audio stream, resampled to ``sample_rate``, whole.

    Raises AudioError naming the file for a missing, empty, corrupt or silent-less file. A
    long recording is better read in :func:`pieces`.
    """
    meta: dict[str, Any] = {}
    buffer: _Buffer | None = None
    for chunk in _stream(path, sample_rate, meta):
        if buffer is None:  # filled in place, sized from the container's duration: a long
            # recording is never held twice, as a list of chunks and their concatenation
            buffer = _Buffer(meta["n_channels"], meta["expected"] + sample_rate)
        buffer.add(chunk)
    if buffer is None or buffer.n == 0:
        raise AudioError(f"{path}: no audio samples could be decoded")
    return Audio(samples=buffer.samples(), sample_rate=sample_rate, source_rate=meta["source_rate"],
                 codec=meta["codec"])


PIECE_S = 900  # a recording longer than this is decoded, transcribed and measured in pieces
CUT_SEARCH_S = 30.0  # a piece ends at the quietest half second of its last this-many seconds
CUT_WINDOW_S = 0.5


@dataclass(frozen=True)
class Piece:
    """A stretch of a recording: ``audio`` starts ``offset`` frames (at its sample rate) in."""

    offset: int
    audio: Audio

    @property
    def offset_s(self) -> float:
        return self.offset / self.audio.sample_rate


def pieces(path: Path, piece_s: float = PIECE_S, sample_rate: int = MODEL_RATE) -> Iterator[Piece]:
    """The recording in consecutive pieces of about ``piece_s``, each ending at the quietest
    moment (all channels) near its end and on a level frame's boundary, so that memory stays
    that of one piece however long the recording is. A recording up to ``piece_s`` long is
    one piece, the same samples as :func:`decode` gives. Raises AudioError as decode does."""
    meta: dict[str, Any] = {}
    size = max(int(piece_s * sample_rate), 1)
    room = size + int(CUT_SEARCH_S * sample_rate) + sample_rate  # a piece and the stretch past it
    hop = max(1, int(round(sample_rate * FRAME_S)))
    buffer: _Buffer | None = None
    offset = 0
    for chunk in _stream(path, sample_rate, meta):
        if buffer is None:
            buffer = _Buffer(meta["n_channels"], min(meta["expected"] + sample_rate, room))
        buffer.add(chunk)
        if buffer.n < size + int(CUT_SEARCH_S * sample_rate):
            continue  # a recording ending within the search stretch stays whole
        cut = _quiet_cut(buffer.samples(), size, sample_rate, hop)
        head = buffer.samples()
        yield Piece(offset, Audio(samples=head[:, :cut].copy(), sample_rate=sample_rate,
                                  source_rate=meta["source_rate"], codec=meta["codec"]))
        offset += cut
        rest = head[:, cut:].copy()
        buffer = _Buffer(meta["n_channels"], room)
        buffer.add(rest)
    if buffer is None or (buffer.n == 0 and offset == 0):
        raise AudioError(f"{path}: no audio samples could be decoded")
    if buffer.n:
        yield Piece(offset, Audio(samples=buffer.samples(), sample_rate=sample_rate,
                                  source_rate=meta["source_rate"], codec=meta["codec"]))


def _quiet_cut(samples: np.ndarray, size: int, sample_rate: int, hop: int) -> int:
    """Where to end a piece of ``size`` frames: the middle of the quietest half second (the
    loudest channel's level) in the stretch before ``size``, on a multiple of ``hop``."""
    lo = max(0, size - int(CUT_SEARCH_S * sample_rate)) // hop * hop
    hi = size // hop * hop
    levels = np.max([frame_levels(ch[lo:hi], sample_rate) for ch in samples], axis=0)
    width = max(1, int(CUT_WINDOW_S / FRAME_S))
    if len(levels) <= width:
        return hi
    windows = np.convolve(levels, np.ones(width), mode="valid")
    return lo + (int(np.argmin(windows)) + width // 2) * hop


class LevelMeter:
    """Frame levels of each channel (:func:`frame_levels`), measured piece by piece: the same
    values as measuring the whole recording at once."""

    def __init__(self) -> None:
        self._parts: list[list[np.ndarray]] = []

    def add(self, piece: Audio) -> None:
        hop = max(1, int(round(piece.sample_rate * FRAME_S)))
        if self._parts and piece.samples.shape[1] < hop:
            return  # a tail shorter than a frame: the whole-recording measure drops it too
        for ch, samples in enumerate(piece.samples):
            if ch == len(self._parts):
                self._parts.append([])
            self._parts[ch].append(frame_levels(samples, piece.sample_rate))

    def levels(self) -> list[np.ndarray]:
        return [np.concatenate(parts) for parts in self._parts]


def levels(path: Path, piece_s: float = PIECE_S) -> list[np.ndarray]:
    """Each channel's frame levels, decoding the recording a piece at a time."""
    meter = LevelMeter()
    for piece in pieces(path, piece_s):
        meter.add(piece.audio)
    return meter.levels()


LEVELS_FORMAT = 1


def _levels_path(cache_dir: Path, audio_sha256: str) -> Path:
    # the levels depend on the audio and on how it is measured, not on any Whisper setting
    name = f"{audio_sha256}-{LEVELS_FORMAT}-{FRAME_S}-{PIECE_S}.npz"
    return Path(cache_dir) / "levels" / audio_sha256[:2] / name


def load_levels(cache_dir: Path, audio_sha256: str) -> list[np.ndarray] | None:
    """The cached frame levels of a recording (as :func:`levels` gave them), or None."""
    try:
        with np.load(_levels_path(cache_dir, audio_sha256)) as held:
            return [held[f"arr_{k}"] for k in range(len(held.files))]
    except (OSError, ValueError, KeyError):
        return None


def save_levels(cache_dir: Path, audio_sha256: str, measured: Sequence[np.ndarray]) -> None:
    """Keep a recording's frame levels beside its transcript, so that analysing it again from
    the cache decodes no audio (exact float64: the same metrics as from the audio)."""
    from speechqa.files import private_dir, write_atomic

    private_dir(Path(cache_dir))
    path = _levels_path(cache_dir, audio_sha256)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, *measured)

    write_atomic(path, write, mode=0o600)


# -- speech activity by energy --------------------------------------------------------------
# A frame is active when its level is clearly above its channel's own noise floor. The ASR
# stage uses this to find speech Whisper skipped, the metrics stage to time speech sharply.

FRAME_S = 0.02
FILL_GAP_S = 1.2  # pauses shorter than this inside speech are speech
MIN_RUN_S = 0.08  # active blips shorter than this are clicks
RUN_PAD_S = 0.05  # soft onsets and word ends fall under the threshold: widen each run this much
FLOOR_MARGIN_DB = 10.0  # a frame this far above the channel's noise floor is active
SILENT_DBFS = -60.0  # frames below this are never active, however clean the line
HEADROOM_DB = 30.0  # ...and frames this far below the channel's speech level are not either


LEVEL_BLOCK = 1 << 20  # samples converted to float64 at a time


def frame_levels(samples: np.ndarray, sample_rate: int, frame_s: float = FRAME_S) -> np.ndarray:
    """RMS level of each frame of one channel, in dBFS."""
    hop = max(1, int(round(sample_rate * frame_s)))
    n = len(samples) // hop
    if n == 0:
        return np.full(1, -120.0)
    rms = np.empty(n)
    step = max(1, LEVEL_BLOCK // hop)  # frames per block: a long call is never copied whole to float64
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        frames = np.asarray(samples[lo * hop: hi * hop], dtype=np.float64).reshape(hi - lo, hop)
        rms[lo:hi] = np.sqrt(np.mean(frames * frames, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-6))


def active_threshold(levels: np.ndarray, speech_level: float) -> float:
    """The level above which a frame of this channel is taken as someone talking: clearly
    above the noise floor, but never so close to the speech level that quiet syllables drop."""
    floor = float(np.percentile(levels, 10))
    return max(SILENT_DBFS, min(floor + FLOOR_MARGIN_DB, speech_level - 6.0), speech_level - HEADROOM_DB)


def frames_of(span: tuple[float, float]) -> slice:
    """The frames a time span covers (at least one)."""
    return slice(int(span[0] / FRAME_S), max(int(span[0] / FRAME_S) + 1, int(np.ceil(span[1] / FRAME_S))))


def runs_from_mask(mask: np.ndarray, frame_s: float = FRAME_S, fill_gap_s: float = FILL_GAP_S,
                   min_run_s: float = MIN_RUN_S) -> list[tuple[float, float]]:
    """Runs of True frames as (start, end) seconds, short gaps bridged, blips dropped."""
    if not mask.any():
        return []
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    spans = [(float(s) * frame_s, float(e) * frame_s) for s, e in zip(edges[::2], edges[1::2], strict=True)]
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] < fill_gap_s:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    n_s = len(mask) * frame_s
    return [(round(max(0.0, s - RUN_PAD_S), 3), round(min(n_s, e + RUN_PAD_S), 3))
            for s, e in merged if e - s >= min_run_s]


SKIPPED_MIN_S = 1.0  # an active run with no words this long ...
SKIPPED_WITHIN_DB = 12.0  # ... and within this many dB of the channel's talking level is speech


def talking_level(levels: np.ndarray, spans: Sequence[tuple[float, float]]) -> float:
    """A channel's talking level: the loud end (90th percentile) of the frames inside the
    spans where someone is known to talk (turns or words); of the whole channel without them."""
    inside = [levels[frames_of(span)] for span in spans]
    frames = np.concatenate(inside) if inside else levels
    return float(np.percentile(frames if frames.size else levels, 90))


@dataclass(frozen=True, eq=False)
class Activity:
    """One channel's speech by energy: its frame levels, its talking level (taken where
    someone is known to talk), the level above which a frame is active, and the runs of
    active frames (short gaps bridged, blips dropped). The ASR gap fill, coverage and the
    metrics each read it their own way."""

    levels: np.ndarray
    talking: float
    threshold: float
    runs: list[tuple[float, float]]


def activity(levels: np.ndarray, spans: Sequence[tuple[float, float]]) -> Activity:
    """The :class:`Activity` of a channel whose :func:`frame_levels` are ``levels``, ``spans``
    being where someone is known to talk there (words or turns; none: the whole channel)."""
    talking = talking_level(levels, spans)
    threshold = active_threshold(levels, talking)
    return Activity(levels, talking, threshold, runs_from_mask(levels > threshold))


def span_mask(spans: Sequence[tuple[float, float]], n: int) -> np.ndarray:
    """The frames (of ``n``) that some span covers."""
    mask = np.zeros(n, dtype=bool)
    for span in spans:
        mask[frames_of(span)] = True
    return mask


def words_mask(spans: Sequence[tuple[float, float]], n: int) -> np.ndarray:
    """The frames (of ``n``) inside some words: each span padded by ``RUN_PAD_S``, and joined to
    the next across a pause shorter than ``FILL_GAP_S``, as speech runs are."""
    joined: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if joined and start - joined[-1][1] < FILL_GAP_S:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return span_mask([(max(0.0, s - RUN_PAD_S), e + RUN_PAD_S) for s, e in joined], n)


def sounds_like_talk(levels: np.ndarray, span: tuple[float, float], talking: float) -> bool:
    """Whether an active run nobody transcribed is speech: long enough and about as loud as the
    channel's talk (a cough, a click or a door is neither)."""
    frames = levels[frames_of(span)]
    loud = float(np.percentile(frames, 90)) if frames.size else -120.0
    return span[1] - span[0] >= SKIPPED_MIN_S and loud >= talking - SKIPPED_WITHIN_DB
