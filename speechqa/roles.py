"""Which of a mono call's two voices is the agent, from evidence, with a confidence.

Alibaba's product takes as the agent whoever first says an agent phrase. Here every piece of
evidence adds points for voice 0 being the agent (negative: for voice 1), and the call's
*role confidence* is the logistic of the total, so that evidence that agrees makes a call sure
and evidence that disagrees leaves it uncertain:

- ``script``: the agent-cue file's script phrases and the scorecard's agent phrases (each
  wording of three characters or more) that a voice says, minus the caller's phrases
  (asr.agent_script_score), half a point per point of score difference, at most
  ``SCRIPT_CAP`` either way;
- ``first``: on an inbound call, the voice that speaks first answered the line
  (``FIRST_POINTS``);
- ``pairs``: the agent's requests for details ([pairs] ask) answered by the other voice's next
  turn ([pairs] answer), one point each, at most ``PAIRS_CAP``;
- ``voice``: when the manifest names the agent and the history store holds that agent's
  voiceprint (enrolled from earlier calls), how much closer one voice is to it than the
  other, ``VOICE_POINTS`` per 0.1 of cosine, at most ``VOICE_CAP``.

A call whose confidence is below ``[speakers] min_confidence`` keeps its best guess of roles
but is flagged ``roles_uncertain``: it must be reviewed, and the scorecard's role-dependent
items are N/A on it (speechqa/compliance/engine.py). One voice only (the two centroids alike
beyond ``same_voice``) is uncertain too, whatever the words say.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from speechqa.asr import AgentCues, agent_script_score, convert_script
from speechqa.calls import Role, Turn
from speechqa.compliance.schema import Phrases, Scorecard, walk
from speechqa.diarize import Diarization

SCRIPT_CAP = 6.0
FIRST_POINTS = 1.0
PAIRS_CAP = 3.0
VOICE_POINTS = 1.0
VOICE_CAP = 5.0
MIN_SCORECARD_WORDING = 3  # shorter wordings (您好, 谢谢) are said by callers too


@dataclass(frozen=True)
class RoleDecision:
    """How a call's turns got their roles."""

    source: str  # channels (stereo, by configuration) | diarised (mono: speaker model + evidence)
    agent_speaker: int = -1  # the agent's voice on a diarised call
    confidence: float | None = None  # that the roles are right; None for channel roles
    evidence: tuple[tuple[str, float], ...] = ()  # points for voice 0 being the agent
    similarity: float | None = None  # cosine between the two voices
    agent_voice: tuple[float, ...] = ()  # the agent's centroid, for enrolment
    voice_match: float | None = None  # cosine of the agent's voice with its enrolled voiceprint

    def role_of(self, speaker: int) -> Role:
        """The role of a diarised call's voice (unknown: no voice, or no decision)."""
        if speaker < 0 or self.agent_speaker < 0:
            return "unknown"
        return "agent" if speaker == self.agent_speaker else "customer"

    def uncertain(self, min_confidence: float) -> bool:
        return self.confidence is not None and self.confidence < min_confidence


@lru_cache(maxsize=8)
def scorecard_cues(scorecard: Scorecard | None) -> re.Pattern[str] | None:
    """The scorecard's agent-scoped phrase wordings (three characters or more) as one regex."""
    if scorecard is None:
        return None
    found = {w for item in scorecard.items for c in walk(item.passes)
             if isinstance(c, Phrases) and c.scope.role == "agent"
             for group in c.groups for w in group if len(w) >= MIN_SCORECARD_WORDING}
    if not found:
        return None
    return re.compile("|".join(re.escape(w) for w in sorted(found, key=lambda w: (-len(w), w))))


def _logistic(points: float) -> float:
    return 1.0 / (1.0 + math.exp(-points))


def decide(turns: Sequence[Turn], voices: Diarization, cues: AgentCues, scorecard: re.Pattern[str] | None,
           *, inbound: bool, voiceprint: Sequence[float] | None = None,
           same_voice: float = 0.9) -> RoleDecision:
    """Roles of a diarised call's ``voices`` (``turns`` carry ``speaker``; text as heard)."""
    if voices.n_speakers == 0:
        return RoleDecision("diarised", -1, 0.0, (), voices.similarity)
    spoken = [t for t in turns if t.speaker in (0, 1) and t.text.strip()]
    plain = [convert_script(t.text, "simplified") for t in spoken]  # what the cue files are written in
    texts = ["".join(x for t, x in zip(spoken, plain, strict=True) if t.speaker == g) for g in (0, 1)]
    evidence: list[tuple[str, float]] = []
    script = [agent_script_score(x, cues) + (len(scorecard.findall(x)) if scorecard else 0) for x in texts]
    evidence.append(("script", max(-SCRIPT_CAP, min(SCRIPT_CAP, 0.5 * (script[0] - script[1])))))
    if inbound and spoken:
        evidence.append(("first", FIRST_POINTS if spoken[0].speaker == 0 else -FIRST_POINTS))
    if cues.questions is not None and cues.answers is not None:
        pairs = 0
        for i in range(len(spoken) - 1):
            if spoken[i].speaker != spoken[i + 1].speaker and cues.questions.search(plain[i]) \
                    and cues.answers.search(plain[i + 1]):
                pairs += 1 if spoken[i].speaker == 0 else -1
        evidence.append(("pairs", max(-PAIRS_CAP, min(PAIRS_CAP, float(pairs)))))
    centroids = voices.centroids
    if voiceprint is not None and len(centroids) == 2:
        v = np.asarray(voiceprint, float)
        margin = float(np.asarray(centroids[0]) @ v) - float(np.asarray(centroids[1]) @ v)
        evidence.append(("voice", max(-VOICE_CAP, min(VOICE_CAP, VOICE_POINTS * margin / 0.1))))
    total = sum(p for _, p in evidence)
    agent = 0 if total >= 0 or voices.n_speakers < 2 else 1
    confidence = _logistic(abs(total))
    if voices.n_speakers < 2 or voices.similarity >= same_voice:
        confidence = min(confidence, 0.5)  # one voice: no split of roles can be trusted
    match = None
    if voiceprint is not None:
        match = round(float(np.asarray(centroids[agent]) @ np.asarray(voiceprint, float)), 4)
    return RoleDecision("diarised", agent, round(confidence, 4), tuple((k, round(v, 3)) for k, v in evidence),
                        voices.similarity, tuple(centroids[agent]), match)


def apply(turns: Sequence[Turn], decision: RoleDecision, call_id: str) -> tuple[Turn, ...]:
    """The turns with their voices' roles, numbered per role again (c0042-agent-0007)."""
    counters: dict[str, int] = {}
    out = []
    for t in turns:
        r = decision.role_of(t.speaker)
        counters[r] = index = counters.get(r, 0) + 1
        out.append(dataclasses.replace(t, role=r, turn_id=f"{call_id}-{r}-{index:04d}"))
    return tuple(out)
