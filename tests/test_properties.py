"""Property-based checks (hypothesis) of the input-facing parsers: whatever they are given, they
answer with a result or with speechqa's own error naming the problem, never a crash (issue 11)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechqa.compliance.schema import parse_scorecard
from speechqa.errors import ConfigError, InputError
from speechqa.ingest import read_manifest
from speechqa.text import clause_text, fold, normalize, squash

ALPHABET = ("您好请问有什么可以帮一二三四五六七八九十零两幺百千万元号，。！？、 ０１２３４５ＡＢＧ４﹔"
            "0123456789abcXYZ-_/[]()…—·\t\n\u3000")
TEXT = st.text(alphabet=st.sampled_from(list(ALPHABET)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_normalising_any_text_is_stable(text):
    once = normalize(text)
    assert normalize(once) == once  # the match text is a fixed point: rules see one form
    assert fold(fold(text)) == fold(text)
    assert not any("\uff01" <= ch <= "\uff5e" for ch in once)  # no full-width ASCII left
    clause_text(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | TEXT)
def test_squash_keeps_exactly_the_letters_and_digits(text):
    # squash is a regex (\W and _): it must keep what str.isalnum() keeps, in any script
    assert squash(text) == "".join(ch for ch in fold(text) if ch.isalnum())


SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=True),
                   st.text(max_size=12), st.lists(st.text(max_size=6), max_size=3))
CONDITION = st.recursive(
    st.fixed_dictionaries({}, optional={
        "phrases": st.one_of(SCALAR, st.lists(st.one_of(st.text(max_size=8), st.lists(st.text(max_size=6))))),
        "role": st.sampled_from(["agent", "customer", "any", "boss", ""]), "fuzzy": SCALAR,
        "first_s": SCALAR, "regex": st.sampled_from(["欢迎", "(", "a+", ""]), "match": SCALAR,
        "metric": SCALAR, "op": SCALAR, "value": SCALAR, "event": SCALAR, "min_hits": SCALAR}),
    lambda inner: st.one_of(st.fixed_dictionaries({"all": st.lists(inner, max_size=3)}),
                            st.fixed_dictionaries({"any": st.lists(inner, max_size=3)}),
                            st.fixed_dictionaries({"not": inner}), inner),
    max_leaves=6)
ITEM = st.fixed_dictionaries({"id": st.sampled_from(["a", "b", "bad id", ""]), "points": SCALAR,
                              "pass": CONDITION},
                             optional={"na": CONDITION, "severity": SCALAR, "auto_fail": SCALAR})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ITEM, max_size=3), st.dictionaries(st.sampled_from(["name", "version", "language", "x"]),
                                                   SCALAR, max_size=3))
def test_any_scorecard_is_parsed_or_refused_with_a_named_field(items, head):
    try:
        card = parse_scorecard({"scorecard": head, "sections": [{"id": "s", "items": items}]}, "rules.toml")
    except ConfigError as exc:
        assert str(exc).startswith("rules.toml: ")
    else:
        assert abs(sum(i.points for i in card.items) - 100) < 1e-6


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | TEXT.map(lambda t: ("call_id,file\n" + t).encode("gbk", "ignore")))
def test_any_manifest_bytes_give_rows_or_a_named_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("m") / "calls.csv"
    path.write_bytes(data)
    try:
        rows, encoding = read_manifest(path)
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        assert encoding in ("utf-8", "utf-8-sig", "gbk", "gb18030")
        assert all(isinstance(r.get("file"), str) for r in rows)


def test_a_fuzz_of_decoding_never_crashes_the_process(tmp_path):
    """Damaged WAV and MP3 files (a good file's bytes, flipped, cut and spliced) decode or raise
    AudioError; run in a child process, so that a crash in FFmpeg would show as one."""
    script = textwrap.dedent(f"""
        import numpy as np, wave, pathlib
        from speechqa.audio import decode
        from speechqa.errors import AudioError
        rng = np.random.default_rng(3)
        base = pathlib.Path({str(tmp_path)!r})
        good = base / "good.wav"
        with wave.open(str(good), "wb") as w:
            w.setnchannels(2); w.setsampwidth(2); w.setframerate(8000)
            w.writeframes((rng.normal(0, 3000, 16000)).astype("<i2").tobytes())
        data = good.read_bytes()
        for k in range(120):
            b = bytearray(data)
            for _ in range(int(rng.integers(1, 40))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
            if k % 3 == 0:
                b = b[: int(rng.integers(0, len(b)))]
            if k % 5 == 0:
                b = b[:44] + bytes(rng.integers(0, 256, 2000, dtype=np.uint8)) + b[44:]
            f = base / ("f%03d" % k + (".wav", ".mp3", ".m4a")[k % 3])
            f.write_bytes(bytes(b))
            try:
                decode(f)
            except AudioError:
                pass
        print("done")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr[-2000:]


def test_broken_toml_is_refused_by_name(tmp_path):
    from speechqa.compliance import load_scorecard

    bad = tmp_path / "rules.toml"
    bad.write_text("[scorecard\nname = 'x'\n", encoding="utf-8")
    try:
        load_scorecard(bad)
    except ConfigError as exc:
        assert str(exc).startswith(f"{bad}: not valid TOML")
    else:
        raise AssertionError("a broken TOML scorecard was accepted")
