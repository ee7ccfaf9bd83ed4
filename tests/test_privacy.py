"""PII probe through the whole pipeline: numbers of every kind, in digits and in Chinese digit
strings, put into a call's transcript must not appear in any file the run writes."""

from __future__ import annotations

import dataclasses
import html
import json
import pickle
import random
import re
import shutil

import openpyxl
import pandas as pd
import pytest

from speechqa import asr, audio
from speechqa.calls import ChannelTranscript, Segment, Transcript, Word
from speechqa.pipeline import make_context, run_batch
from tests.conftest import FIXTURE_CALLS, RECORDINGS, settings_for
from tests.test_pii import ID, LANDLINE, MOBILE, grouped, in_chinese, leaks, make_card, make_mobile

pytestmark = pytest.mark.e2e

RNG = random.Random(2026)
CARD = make_card(RNG, 19)
MOBILE_CN = make_mobile(RNG)
EMAIL = "zhang.wei1988@example.com"

# What the customer "said", as Whisper would write it, split into words of a few characters.
SAYINGS = [
    f"我的手机号是{MOBILE}。",
    f"另一个号码是{in_chinese(MOBILE_CN, RNG)}。",
    f"身份证号{grouped(ID, (6, 8, 4), ' ')}。",
    f"卡号是{in_chinese(CARD)}。",
    f"座机{LANDLINE[:4]}-{LANDLINE[4:]}，邮箱{EMAIL}。",
]
SECRETS = [MOBILE, MOBILE_CN, ID, CARD, LANDLINE]


def _words(text: str, start: float) -> tuple[Word, ...]:
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    return tuple(Word(round(start + 0.25 * i, 3), round(start + 0.25 * (i + 1), 3), p, 0.9)
                 for i, p in enumerate(pieces))


def _seed_cache(calls_dir, settings, out):
    """Put a transcript holding the numbers into the cache for fx_stereo's real audio."""
    ctx = make_context(settings, out)
    wav = calls_dir / "fx_stereo.wav"
    decoded = audio.decode(wav)
    sha = audio.content_sha256(wav)
    agent = [Segment(0.5, 3.0, "您好，请问有什么可以帮您？", -0.2, 0.01, 1.1, 0.0,
                     _words("您好，请问有什么可以帮您？", 0.5))]
    customer = []
    t = 4.0
    for text in SAYINGS:
        words = _words(text, t)
        customer.append(Segment(t, words[-1].end, text, -0.3, 0.01, 1.2, 0.0, words))
        t = words[-1].end + 1.0
    transcript = Transcript(sha, decoded.duration_s, 2, 16000,
                            (ChannelTranscript(0, tuple(agent)), ChannelTranscript(1, tuple(customer))),
                            1.0, "zh")
    key = asr.cache_key(sha, ctx.model.sha256, ctx.compute_type, settings.asr)
    asr.save_cached(ctx.cache_dir, key, transcript)


def _strings(value, name: str = "") -> list[str]:
    """Every text value inside a JSON value or a part's dataclasses, except digests (``key``,
    ``scoring``, ``*sha256``), whose hex digits would read as numbers by chance."""
    if name in ("key", "scoring") or name.endswith("sha256"):
        return []
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in _strings(getattr(value, f.name), f.name)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, str(k))]
    if isinstance(value, (list, tuple)):
        strings = [s for v in value for s in _strings(v, name)]
        if value and all(isinstance(v, Word) for v in value):
            strings.append("".join(w.word for w in value))  # a number can be split across words
        return strings
    return [value] if isinstance(value, str) else []


def _everything_written(out) -> list[str]:
    """Every text value in every file of the output folder: table cells (CSV and Parquet read
    back; a turn's words joined, since a number can be split across them) and JSON strings.
    Values are checked one by one: numeric columns and unrelated cells, run together, would
    contain any 7-digit sequence by chance."""
    values = []
    for path in sorted(out.rglob("*")):
        if not path.is_file() or ".cache" in path.parts:
            continue
        if path.suffix in (".parquet", ".csv"):
            df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, encoding="utf-8-sig")
            if "word" in df.columns:
                values.extend(df.groupby("turn_id").word.agg(lambda w: "".join(w.dropna().astype(str))))
            text_columns = [c for c in df.columns if not c.endswith("sha256")
                            and not pd.api.types.is_numeric_dtype(df[c])
                            and not pd.api.types.is_bool_dtype(df[c])]
            values.extend(str(v) for c in text_columns for v in df[c].dropna())
        elif path.suffix == ".json":
            values.extend(_strings(json.loads(path.read_text(encoding="utf-8"))))
        elif path.suffix == ".html":  # the report: its data and what it shows, not plotly.js or the font
            page = path.read_text(encoding="utf-8")
            data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
            values.extend(_strings(json.loads(data.group(1))))
            shown = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
            values.extend(html.unescape(t) for t in re.split(r"<[^>]*>", shown) if t.strip())
        elif path.suffix == ".xlsx":  # a workbook: every cell
            book = openpyxl.load_workbook(path, read_only=True)
            values.extend(str(v) for ws in book.worksheets for row in ws.iter_rows(values_only=True)
                          for v in row if isinstance(v, str))
        elif path.suffix == ".pkl":  # a call's part (OUT/.parts): read as the objects it holds
            with open(path, "rb") as fh:
                values.extend(_strings(pickle.load(fh)))
        else:
            values.append(path.read_text(encoding="utf-8", errors="replace"))
    return values


def _leaked(secret: str, values: list[str]) -> list[str]:
    return [v for v in values if leaks(secret, v)]


@pytest.fixture(scope="module")
def probe_calls(tmp_path_factory):
    calls = tmp_path_factory.mktemp("probe-calls")
    shutil.copy(FIXTURE_CALLS / "fx_stereo.wav", calls / "fx_stereo.wav")
    return calls


def test_no_number_of_any_kind_reaches_an_output(probe_calls, model_dir, tmp_path):
    out = tmp_path / "out"
    settings = settings_for(tmp_path / "cache")
    _seed_cache(probe_calls, settings, out)
    summary = run_batch(probe_calls, out, settings)
    assert summary.exit_code == 0 and summary.results[0].cached  # the seeded transcript was used
    values = _everything_written(out)
    written = "\n".join(values)
    assert "我的手机号是" in written  # the text itself did reach the outputs
    for secret in SECRETS:
        assert not _leaked(secret, values), f"{secret} leaked"
    assert EMAIL not in written and "zhang.wei1988" not in written
    for mask in ("[手机号]", "[身份证]", "[银行卡]", "[电话]", "[邮箱]"):
        assert mask in written
    events = pd.read_parquet(out / "events.parquet")
    redactions = events[events.type == "redaction"]
    assert len(redactions) == 6
    assert (redactions.start >= 4.0).all() and (redactions.end <= redactions.start + 10).all()
    calls = pd.read_parquet(out / "calls.parquet")
    assert calls.n_redactions.iloc[0] == 6
    assert json.loads((out / "run.json").read_text())["pii_redacted"] is True


def test_keep_pii_writes_raw_numbers_and_says_so(probe_calls, model_dir, tmp_path):
    from click.testing import CliRunner

    from speechqa.cli import main

    out = tmp_path / "out"
    settings = settings_for(tmp_path / "cache", )
    _seed_cache(probe_calls, settings, out)
    result = CliRunner().invoke(main, ["run", str(probe_calls), "--out", str(out), "--quiet", "--keep-pii",
                                       "--model", str(model_dir), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert MOBILE in (out / "turns.csv").read_text(encoding="utf-8-sig")
    assert json.loads((out / "run.json").read_text())["pii_redacted"] is False


def test_committed_calls_leak_no_customer_number(recordings_run):
    values = _everything_written(recordings_run.out)
    found = 0
    for path in sorted(RECORDINGS.glob("*.truth.json")):
        for item in json.loads(path.read_text(encoding="utf-8"))["pii"]:
            found += 1
            leaked = _leaked(item["value"].upper(), values)
            assert not leaked, f"{path.name}: {item['type']} leaked in {leaked}"
    assert found >= 8
