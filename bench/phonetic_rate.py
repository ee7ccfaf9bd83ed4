"""How often the scorecard's sound-alike search matches agent turns that do not say the phrase.

For every phrase group of the scorecard that is searched by sound (``fuzzy`` < 1) and every
agent turn (every turn of a mono call) of a call with ground truth: when no truth line spoken
by the agent at that time holds any wording of the group, and Whisper's text does not hold it
exactly either, a sound-alike match of the group in that turn is a false match. The search is
the engine's own (``CallView.sound_matches``), at the item's threshold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from speechqa.calls import CallResult
from speechqa.compliance.engine import CallView, _compact, compile_scorecard
from speechqa.compliance.schema import Phrases, Scorecard, walk


def _groups(scorecard: Scorecard) -> list[tuple[str, tuple[str, ...], tuple[str, ...], float]]:
    """(item id, wordings, core wordings, threshold) of every group searched by sound."""
    out = []
    for item in scorecard.items:
        for cond in walk(item.passes):
            if isinstance(cond, Phrases) and cond.fuzzy < 1 and cond.scope.role in ("agent", "any"):
                for group, cores in zip(cond.groups, cond.sound_groups(), strict=True):
                    out.append((item.id, group, cores, cond.fuzzy))
    return out


def false_sound_matches(results: Iterable[CallResult], scorecard: Scorecard) -> tuple[int, int, int, int]:
    """(false matches, turn-group pairs checked, agent turns with a false match, agent turns)."""
    compiled = compile_scorecard(scorecard)
    groups = _groups(scorecard)
    false = checked = bad_turns = n_turns = 0
    for r in results:
        truth_path = r.recording.path.with_suffix(".truth.json")
        if not truth_path.is_file():
            continue
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        view = CallView(r, compiled)
        spoken = [(t["start"], t["end"], _compact(t["text"])) for t in truth["turns"] if t["role"] == "agent"]
        agent_turns = [i for i, t in enumerate(r.turns) if t.role == "agent" or view.mono]
        hits_by_turn: dict[int, int] = {}
        for _, group, cores, threshold in groups:
            wordings = [_compact(w) for w in group]
            matches: dict[int, object] = {}
            scope = tuple(agent_turns)
            keys, bank = compiled.sound_plan(cores)
            for j, key in enumerate(keys):
                for i in view.sound_matches(key, bank.wants[j], bank.needs[j], threshold, scope):
                    matches.setdefault(i, key)
            for i in agent_turns:
                t = r.turns[i]
                said = "".join(text for s, e, text in spoken if s < t.end + 1.0 and e > t.start - 1.0)
                if any(w in said for w in wordings) or any(w in view.texts[i] for w in wordings):
                    continue
                checked += 1
                if i in matches:
                    false += 1
                    hits_by_turn[i] = hits_by_turn.get(i, 0) + 1
        n_turns += len(agent_turns)
        bad_turns += len(hits_by_turn)
    return false, checked, bad_turns, n_turns


def rate_lines(prefix: str, results: Iterable[CallResult], scorecard: Scorecard) -> list[str]:
    false, checked, bad_turns, n_turns = false_sound_matches(results, scorecard)
    return [
        f"{prefix}sound_false_match_rate={false / max(checked, 1):.4f} ({false}/{checked} turn-phrase pairs)",
        f"{prefix}sound_false_match_turn_rate={bad_turns / max(n_turns, 1):.3f} "
        f"({bad_turns}/{n_turns} agent turns matched a phrase they did not say)",
    ]
