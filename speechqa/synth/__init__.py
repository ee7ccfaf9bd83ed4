"""Development-only Mandarin call synthesiser (Kokoro-82M TTS + misaki zh G2P).

Renders the scripted calls in ``scenarios.toml`` / ``fixtures.toml`` into 8 kHz G.711
µ-law WAVs with ground-truth JSON, for testing speechqa. Needs ``pip install -e .[synth]``;
importing this package is cheap (the TTS loads lazily on first use).
"""

from .render import (
    Line,
    RenderedCall,
    RenderedTurn,
    Scenario,
    ScenarioFile,
    load_scenarios,
    read_wav,
    render_call,
    render_scenarios,
    write_mulaw_wav,
)

__all__ = [
    "Line",
    "RenderedCall",
    "RenderedTurn",
    "Scenario",
    "ScenarioFile",
    "load_scenarios",
    "read_wav",
    "render_call",
    "render_scenarios",
    "write_mulaw_wav",
]
