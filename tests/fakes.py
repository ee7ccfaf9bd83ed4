"""A transcriber that returns scripted words, for pipeline, CLI and fault tests that must run in
seconds (pipeline.Context.transcriber). The end-to-end tests keep the real model."""

from __future__ import annotations

import json
from pathlib import Path

from speechqa.audio import Audio, content_sha256
from speechqa.calls import ChannelTranscript, Segment, Transcript, Word
from speechqa.config import AsrSettings


class ScriptedTranscriber:
    """Hears each known recording as its ``.truth.json`` script says (every character a word,
    spread evenly over its turn, on the channel of its role), and anything else as silence."""

    def __init__(self, *folders: Path):
        self.scripts: dict[str, dict] = {}
        for folder in folders:
            for truth in sorted(Path(folder).glob("*.truth.json")):
                data = json.loads(truth.read_text(encoding="utf-8"))
                self.scripts[content_sha256(truth.with_name(data["file"]))] = data

    def __call__(self, audio: Audio, audio_sha256: str, settings: AsrSettings) -> Transcript:
        script = self.scripts.get(audio_sha256)
        by_channel: dict[int, list[Segment]] = {ch: [] for ch in range(audio.n_channels)}
        for turn in (script or {}).get("turns", []):
            channel = script["channels"].get(turn["role"], 0) if audio.n_channels > 1 else 0
            text = turn["text"]
            step = (turn["end"] - turn["start"]) / max(len(text), 1)
            at = turn["start"]
            words = tuple(Word(round(at + k * step, 3), round(at + (k + 1) * step, 3), ch, 0.99)
                          for k, ch in enumerate(text))
            by_channel[channel].append(Segment(turn["start"], turn["end"], text, -0.2, 0.01, 1.2, 0.0, words))
        language = "zh" if settings.language == "auto" else settings.language
        channels = tuple(ChannelTranscript(ch, tuple(segs), language) for ch, segs in by_channel.items())
        return Transcript(audio_sha256, round(audio.duration_s, 3), audio.n_channels, audio.source_rate,
                          channels, 0.0, language)


class ToneTranscriber:
    """Hears each burst of sound (a run of frames above -30 dBFS) on each channel as one word
    "嘀" at the burst's time in the audio it is given: a piece of a long recording gives its
    words in the piece's own time, as Whisper does, so joining the pieces must move them."""

    def __call__(self, audio: Audio, audio_sha256: str, settings: AsrSettings) -> Transcript:
        from speechqa.audio import frame_levels, runs_from_mask

        channels = []
        for ch, samples in enumerate(audio.samples):
            runs = runs_from_mask(frame_levels(samples, audio.sample_rate) > -30.0)
            segments = tuple(Segment(round(a, 3), round(b, 3), "嘀", -0.2, 0.01, 1.0, 0.0,
                                     (Word(round(a, 3), round(b, 3), "嘀", 0.99),)) for a, b in runs)
            channels.append(ChannelTranscript(ch, segments, "zh"))
        return Transcript(audio_sha256, round(audio.duration_s, 3), audio.n_channels, audio.source_rate,
                          tuple(channels), 0.0, "zh")
