"""Decoding: every container and codec a call recorder produces, at any rate."""

import av
import numpy as np
import pytest

from speechqa.audio import content_sha256, decode
from speechqa.errors import AudioError
from tests.conftest import FIXTURE_CALLS


def _encode(path, samples, rate, container, codec, layout="stereo", fmt="s16"):
    """Write ``samples`` (channels, frames) float32 with PyAV in the given codec."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        planar = fmt.endswith("p")
        data = samples if planar else samples.T.reshape(1, -1)
        if fmt.startswith("s16"):
            data = (np.clip(data, -1, 1) * 32767).astype(np.int16)
        else:
            data = data.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def stereo_16k():
    return decode(FIXTURE_CALLS / "fx_stereo.wav", 16000).samples[:, : 16000 * 4]


@pytest.mark.parametrize(
    "name, container, codec, rate, fmt",
    [
        ("pcm.wav", "wav", "pcm_s16le", 44100, "s16"),
        ("alaw.wav", "wav", "pcm_alaw", 8000, "s16"),
        ("mulaw.wav", "wav", "pcm_mulaw", 8000, "s16"),
        ("call.mp3", "mp3", "libmp3lame", 22050, "s16p"),
        ("call.m4a", "mp4", "aac", 16000, "fltp"),
        ("call.ogg", "ogg", "libopus", 48000, "s16"),
        ("call.flac", "flac", "flac", 32000, "s16"),
    ],
)
def test_formats_decode_to_16k_with_channels_kept(tmp_path, stereo_16k, name, container, codec, rate, fmt):
    n = int(stereo_16k.shape[1] * rate / 16000)
    src = np.stack([np.interp(np.linspace(0, stereo_16k.shape[1] - 1, n),
                              np.arange(stereo_16k.shape[1]), ch) for ch in stereo_16k])
    path = tmp_path / name
    _encode(path, src.astype(np.float32), rate, container, codec, fmt=fmt)
    audio = decode(path)
    assert audio.sample_rate == 16000
    assert audio.source_rate == rate
    assert audio.n_channels == 2
    assert abs(audio.duration_s - 4.0) < 0.15
    # the two parties stay apart: each channel's loudness envelope follows its own source
    # channel (envelopes, not samples, so codec delay and phase do not matter)
    def envelope(x):
        n = x.shape[-1] // 3200 * 3200
        return np.sqrt((x[..., :n].reshape(*x.shape[:-1], -1, 3200) ** 2).mean(-1))

    got, want = envelope(audio.samples), envelope(stereo_16k)
    m = min(got.shape[1], want.shape[1])
    # in these 4 s only the agent (left) speaks; the right channel is line noise
    assert np.corrcoef(got[0, :m], want[0, :m])[0, 1] > 0.9
    assert got[0].mean() > 10 * got[1].mean()


def test_committed_recordings_are_8k_mulaw():
    with av.open(str(FIXTURE_CALLS / "fx_mono.wav")) as c:
        ctx = c.streams.audio[0].codec_context
        assert (ctx.name, ctx.sample_rate, ctx.channels) == ("pcm_mulaw", 8000, 1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        (lambda p: p.write_bytes(b"\x00garbage" * 300), "corrupt or unsupported audio"),
        (lambda p: p.write_text("RIFF1234WAVEfmt not really", encoding="ascii"), "corrupt or unsupported"),
    ],
)
def test_bad_files_raise_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as err:
        decode(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_content_hash_follows_bytes_not_name(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert content_sha256(a) == content_sha256(b)
    b.write_bytes(b"diff")
    assert content_sha256(a) != content_sha256(b)


def test_decoded_samples_grow_in_place_when_the_container_under_states_its_length():
    from speechqa.audio import _Buffer

    buf = _Buffer(2, 3)  # room for 3 frames, then 5 arrive
    buf.add(np.ones((2, 2), dtype=np.float32))
    buf.add(np.full((2, 3), 2.0, dtype=np.float32))
    assert buf.samples().tolist() == [[1, 1, 2, 2, 2], [1, 1, 2, 2, 2]]


def test_levels_of_a_long_channel_are_computed_in_blocks_with_the_same_result():
    from speechqa import audio

    x = np.random.default_rng(5).normal(0, 0.1, 8000 * 700 + 13).astype(np.float32)  # > LEVEL_BLOCK
    hop = 160
    n = len(x) // hop
    whole = np.asarray(x[: n * hop], dtype=np.float64).reshape(n, hop)
    expected = 20.0 * np.log10(np.maximum(np.sqrt(np.mean(whole * whole, axis=1)), 1e-6))
    assert np.array_equal(audio.frame_levels(x, 8000), expected)
