"""The analytics hold on more than one transcript of the same calls.

The committed recordings are transcribed twice, with two ASR variants that write different
words for the same audio: the suite's default (beam 5, see conftest's AVX2 pin) and greedy
decoding (beam 1). On each variant the outputs must leak no customer number, the customers'
threats must still be found, and no call whose agent said nothing forbidden may be
auto-failed. Where ASR makes exact results impossible the margins are measured ones; PII is
always exact: zero.
"""

from __future__ import annotations

import csv
import json
import re

import pytest

from speechqa.pipeline import run_batch
from tests.conftest import RECORDINGS, settings_for

pytestmark = pytest.mark.e2e

_CN_DIGITS = str.maketrans("零〇洞一幺二两三四五六七八九", "00011223456789")
ESCALATION_KIND = {
    "complaint_threat": "complaint", "regulator_threat": "regulator", "media_threat": "media",
    "lawyer_threat": "lawyer", "supervisor_request": "supervisor", "cancel_threat": "cancellation",
}


def _truths() -> dict[str, dict]:
    return {p.name.removesuffix(".truth.json"): json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(RECORDINGS.glob("*.truth.json"))}


def leaked_numbers(out, truths) -> list[tuple[str, str, str]]:
    """(file, number, cell) for every output cell holding six or more consecutive digits of a
    true customer number, in any script, whatever lies between the digits."""
    numbers = [re.sub(r"\D", "", p["value"]) for t in truths.values() for p in t.get("pii", [])]
    pieces = {n[i:i + 6]: n for n in numbers for i in range(len(n) - 5)}
    found = []
    for path in sorted(out.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    digits = re.sub(r"\D", "", cell.translate(_CN_DIGITS))
                    hit = next((n for piece, n in pieces.items() if piece in digits), None)
                    if hit:
                        found.append((path.name, hit, cell[:80]))
    return found


@pytest.fixture(scope="module", params=["beam5", "beam1"])
def variant(request, recordings_run, model_dir, tmp_path_factory):
    if request.param == "beam5":
        return recordings_run
    out = tmp_path_factory.mktemp("robust-beam1")
    return run_batch(RECORDINGS, out, settings_for(out / ".cache", beam_size=1))


def test_no_customer_number_reaches_any_output(variant):
    truths = _truths()
    assert sum(len(t.get("pii", [])) for t in truths.values()) >= 5
    assert leaked_numbers(variant.out, truths) == []


def test_threats_are_found_on_every_variant(variant):
    import pandas as pd

    events = pd.read_csv(variant.out / "events.csv")
    escalations = events[events.type == "escalation"]
    wanted = found = 0
    for call_id, truth in _truths().items():
        for threat in (e for e in truth["events"] if e["type"] in ESCALATION_KIND):
            wanted += 1
            near = (escalations.start < threat["end"] + 1) & (escalations.end > threat["start"] - 1)
            mine = escalations[(escalations.call_id == call_id) & near
                               & (escalations.detail == ESCALATION_KIND[threat["type"]])]
            found += not mine.empty
    # measured with the AVX2 pin: 12 of 14 (beam 5) and 11 of 14 (beam 1); the misses are
    # threats whisper-base did not write at all (a decoding loop, a cut-off turn)
    assert wanted >= 10 and found >= wanted - 3, f"{found} of {wanted} threats found"


def test_no_call_is_auto_failed_when_the_agent_said_nothing_forbidden(variant):
    import pandas as pd

    calls = pd.read_csv(variant.out / "calls.csv").set_index("call_id")
    truths = _truths()
    clean = [c for c, t in truths.items() if t["script_items"]["no_forbidden"]]
    assert len(clean) >= 4
    wrongly = [c for c in clean if bool(calls.loc[c, "auto_fail"])]
    assert wrongly == [], wrongly
    rude = [c for c, t in truths.items() if t["script_items"]["no_forbidden"] is False]
    # measured: 5 of 5 on both variants
    assert sum(bool(calls.loc[c, "auto_fail"]) for c in rude) >= len(rude) - 1
