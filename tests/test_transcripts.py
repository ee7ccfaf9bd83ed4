"""Transcript import (speechqa/transcripts.py and ``run_transcripts``): real scorecard, real
sentiment model, real SQLite history store; no Whisper model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from speechqa.cli import main
from speechqa.config import load_settings
from speechqa.errors import InputError, ModelError
from speechqa.pipeline import make_context, run_transcripts
from speechqa.transcripts import read_transcripts

MOBILE = "13812345678"
ID_CARD = "11010519491231002X"
HEADER = ["call_id", "role", "text", "start", "end", "agent_id", "agent_name", "team", "started_at"]
ROWS = [
    # c1: a proper call
    [
        "c1",
        "坐席",
        "您好，欢迎致电顺达快递客服中心，工号8012，很高兴为您服务。",
        "0",
        "4.5",
        "a1",
        "王芳",
        "一组",
        "2026-11-23 09:00:00",
    ],
    ["c1", "客户", f"我想查一下快递，我手机号是{MOBILE}。", "5", "9", "", "", "", ""],
    ["c1", "Agent", "好的，请稍等，我帮您查询一下。", "9.5", "11", "", "", "", ""],
    ["c1", "客服", "您的快递已经在派送中了，还有什么可以帮您？", "15", "18", "", "", "", ""],
    ["c1", "顾客", "没有了，谢谢。", "18.5", "19.5", "", "", "", ""],
    ["c1", "agent", "感谢您的来电，再见。", "20", "22", "", "", "", ""],
    # c2: a brush-off and a customer threatening to go to the regulator
    [
        "c2",
        "agent",
        "您好，这里是顺达快递，工号9001，请问有什么可以帮您？",
        "0",
        "3",
        "a2",
        "李明",
        "二组",
        "2026-11-23 10:00:00",
    ],
    ["c2", "CUSTOMER", f"快递三天没到，我身份证号是{ID_CARD}，你们怎么回事？", "3.5", "8", "", "", "", ""],
    ["c2", "agent", "不知道，你自己去查吧。", "8.5", "10", "", "", "", ""],
    ["c2", "customer", "我要打12315投诉你们！", "10.5", "12", "", "", "", ""],
    ["c2", "agent", "随便你。再见。", "12.5", "13.5", "", "", "", ""],
]


def _settings(tmp_path: Path, **sections):
    overrides = {"store": {"db": str(tmp_path / "qa.db")}, "sampling": {"night": "2026-11-23"}} | sections
    return load_settings(environ={}, overrides=overrides)


def _write_csv(path: Path, rows, header=HEADER, encoding="utf-8-sig") -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("import")
    path = _write_csv(tmp / "turns.csv", ROWS)
    return run_transcripts(path, tmp / "out", _settings(tmp))


# -- reading -------------------------------------------------------------------------------


def test_roles_aliases_metadata_and_turn_ids(tmp_path):
    batch = read_transcripts(_write_csv(tmp_path / "t.csv", ROWS))
    assert not batch.failures
    assert [c.recording.call_id for c in batch.calls] == ["c1", "c2"]
    c1 = batch.calls[0]
    assert [t.role for t in c1.turns] == ["agent", "customer", "agent", "agent", "customer", "agent"]
    assert [t.turn_id for t in c1.turns][:4] == [
        "c1-agent-0001",
        "c1-customer-0001",
        "c1-agent-0002",
        "c1-agent-0003",
    ]
    assert [t.channel for t in c1.turns][:2] == [0, 1]
    assert c1.recording.meta == (
        ("agent_id", "a1"),
        ("agent_name", "王芳"),
        ("team", "一组"),
        ("started_at", "2026-11-23 09:00:00"),
    )
    assert c1.times == "imported" and c1.duration_s == 22.0


def test_gbk_csv_reads_like_utf8(tmp_path):
    utf8 = read_transcripts(_write_csv(tmp_path / "u.csv", ROWS))
    gbk = read_transcripts(_write_csv(tmp_path / "g.csv", ROWS, encoding="gbk"))
    assert gbk.calls == tuple(
        type(c)(type(c.recording)(c.recording.call_id, tmp_path / "g.csv", c.recording.meta), c.turns, c.times)
        for c in utf8.calls
    )


def test_timed_turns_are_put_in_time_order(tmp_path):
    rows = [
        ["x", "customer", "喂？", "2", "3"],
        ["x", "agent", "您好。", "0", "1.5"],
        ["x", "agent", "请讲。", "3.2", ""],
    ]
    call = read_transcripts(_write_csv(tmp_path / "t.csv", rows, HEADER[:5])).calls[0]
    assert [t.text for t in call.turns] == ["您好。", "喂？", "请讲。"]
    assert (call.turns[2].start, call.turns[2].end) == (3.2, 3.2)  # no end: a chat message's timestamp


def test_multiline_cell_keeps_line_numbers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        'call_id,role,text\nc1,agent,"您好，\n请问有什么可以帮您？"\nc1,boss,喂\n', encoding="utf-8"
    )
    batch = read_transcripts(path)
    assert batch.calls[0].turns[0].text == "您好，\n请问有什么可以帮您？"
    assert [f.reason for f in batch.failures] == ["t.csv line 4: role 'boss' is not agent or customer"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("absent.csv", None, "transcript file not found"),
        ("turns.txt", "call_id,role,text\n", "ending in .csv or .jsonl"),
        ("turns.csv", "call_id,role,words\nc1,agent,你好\n", "missing text"),
        ("turns.csv", "", "empty transcript file"),
        ("turns.jsonl", '{"call_id": "c1", "role": "agent"}\n', "no line has a 'text' field"),
    ],
)
def test_unreadable_files_are_setup_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_transcripts(path)


# -- the run ---------------------------------------------------------------------------------


def test_calls_table_from_an_imported_csv(csv_run):
    calls = pd.read_parquet(csv_run.out / "calls.parquet").set_index("call_id")
    assert list(calls.columns[-4:]) == ["agent_id", "agent_name", "team", "started_at"]
    assert list(calls.columns[calls.columns.get_loc("channels") :][:2]) == ["channels", "times"]
    c1 = calls.loc["c1"]
    assert (c1.status, c1.model, c1.times, c1.asr_seconds, c1.duration_s) == (
        "ok",
        "imported",
        "imported",
        0.0,
        22.0,
    )
    assert c1.agent_name == "王芳" and c1.team == "一组"
    assert pd.isna(c1.channels)
    for audio_only in (
        "n_overlaps",
        "n_interruptions_agent",
        "loudness_dbfs_agent",
        "n_shouting_turns_customer",
    ):
        assert pd.isna(c1[audio_only]), audio_only
    assert c1.talk_s_agent == pytest.approx(4.5 + 1.5 + 3 + 2)
    assert c1.n_turns == 6 and c1.agent_first_response_s == 0.0
    turns = pd.read_parquet(csv_run.out / "turns.parquet")
    assert turns.loudness_dbfs.isna().all() and not turns.shouting.any()
    assert turns.sentiment.notna().all()
    assert (turns.tokens.str.len() > 0).all() and (turns.match_text.str.len() > 0).all()


def test_forbidden_phrase_fails_and_is_sampled(csv_run):
    calls = pd.read_parquet(csv_run.out / "calls.parquet").set_index("call_id")
    assert bool(calls.loc["c2", "auto_fail"]) and calls.loc["c2", "compliance_score"] == 0
    assert not calls.loc["c1", "auto_fail"]
    assert calls.loc["c1", "compliance_score"] > 50
    rules = pd.read_parquet(csv_run.out / "rule_results.parquet").set_index(["call_id", "item_id"])
    assert rules.loc[("c2", "no_forbidden"), "outcome"] == "fail"
    assert rules.loc[("c2", "no_forbidden"), "evidence_turn_id"] == "c2-agent-0002"
    assert rules.loc[("c1", "greeting"), "outcome"] == "pass"
    assert rules.loc[("c1", "thanks"), "outcome"] == "pass"
    qa = pd.read_parquet(csv_run.out / "qa_candidates.parquet").set_index("call_id")
    assert qa.loc["c2", "layer"] == "must_review"
    assert "no_forbidden@8.5s" in qa.loc["c2", "evidence"]


def test_escalation_events(csv_run):
    events = pd.read_parquet(csv_run.out / "events.parquet")
    esc = events[events.type == "escalation"]
    assert {"regulator", "complaint"} <= set(esc[esc.call_id == "c2"].detail)
    assert set(esc.role) == {"customer"}
    assert not (events.type.isin(["overlap", "interruption"])).any()
    calls = pd.read_parquet(csv_run.out / "calls.parquet").set_index("call_id")
    assert bool(calls.loc["c2", "escalation_regulator"]) and not calls.loc["c1", "escalated"]


def test_pii_is_masked_in_every_output_file(csv_run):
    written = sorted(p for p in csv_run.out.iterdir() if p.is_file())
    assert {
        "turns.csv",
        "words.csv",
        "rule_results.csv",
        "qa_candidates.xlsx",
        "training_clips.parquet",
        "events.csv",
        "run.json",
    } <= {p.name for p in written}
    for path in written:
        if path.suffix == ".parquet":
            content = pd.read_parquet(path).to_csv()
        elif path.suffix == ".xlsx":
            content = pd.read_excel(path, dtype=str).to_csv()
        else:
            content = path.read_text(encoding="utf-8-sig")
        for secret in (MOBILE, ID_CARD, "1381234", "19491231"):
            assert secret not in content, (path.name, secret)
    turns = pd.read_parquet(csv_run.out / "turns.parquet")
    assert turns.text.str.contains(r"\[手机号\]").any() and turns.text.str.contains(r"\[身份证\]").any()
    calls = pd.read_parquet(csv_run.out / "calls.parquet").set_index("call_id")
    assert calls.loc["c1", "n_redactions"] == 1


def test_run_json_and_history_store(csv_run, tmp_path):
    info = json.loads((csv_run.out / "run.json").read_text(encoding="utf-8"))
    assert info["input"] == "transcripts" and info["model"]["name"] == "imported"
    counts = info["counts"]
    assert (
        counts["recordings"],
        counts["ok"],
        counts["failed"],
        counts["imported"],
        counts["transcribed"],
        counts["turns"],
    ) == (2, 2, 0, 2, 0, 11)
    assert counts["redactions"] == 2 and counts["audio_seconds"] == 22.0 + 13.5
    assert {"read", "text", "sentiment", "metrics", "compliance", "write", "total"} <= set(info["timings_s"])
    assert info["exit_code"] == 0 and csv_run.exit_code == 0
    from speechqa import store

    db = store.open_store(info["sampling"]["db"])
    stored = store.calls_frame(db).set_index("call_id")
    assert set(stored.index) == {"c1", "c2"} and stored.loc["c2", "agent_id"] == "a2"


def test_jsonl_import(tmp_path):
    lines = [dict(zip(HEADER, row, strict=True)) for row in ROWS]
    for line in lines:
        line["start"], line["end"] = float(line["start"]), float(line["end"])
        for key in ("agent_id", "agent_name", "team", "started_at"):
            if not line[key]:
                del line[key]
    path = tmp_path / "turns.jsonl"
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    summary = run_transcripts(path, tmp_path / "out", _settings(tmp_path))
    assert summary.exit_code == 0
    calls = pd.read_parquet(tmp_path / "out" / "calls.parquet").set_index("call_id")
    assert bool(calls.loc["c2", "auto_fail"]) and calls.loc["c1", "agent_name"] == "王芳"
    assert calls.loc["c1", "duration_s"] == 22.0


def test_without_times_turn_windows_stand_in(tmp_path):
    rows = [[r[0], r[1], r[2]] for r in ROWS]
    summary = run_transcripts(
        _write_csv(tmp_path / "chat.csv", rows, HEADER[:3]), tmp_path / "out", _settings(tmp_path)
    )
    assert summary.exit_code == 0
    calls = pd.read_parquet(tmp_path / "out" / "calls.parquet").set_index("call_id")
    c1 = calls.loc["c1"]
    assert c1.times == "none" and pd.isna(c1.duration_s)
    for name in ("talk_s_agent", "n_silences", "n_holds", "agent_first_response_s", "rate_cpm_agent"):
        assert pd.isna(c1[name]), name
    turns = pd.read_parquet(tmp_path / "out" / "turns.parquet")
    c1_turns = turns[turns.call_id == "c1"]
    assert list(c1_turns.start) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # turn index stands in for time
    rules = pd.read_parquet(tmp_path / "out" / "rule_results.parquet").set_index(["call_id", "item_id"])
    assert rules.loc[("c1", "greeting"), "outcome"] == "pass"  # first turns
    assert rules.loc[("c1", "thanks"), "outcome"] == "pass"  # last turns
    assert rules.loc[("c1", "closing_offer"), "outcome"] == "pass"  # last 45% of the turns
    assert rules.loc[("c1", "hold_notice"), "outcome"] == "na"  # no holds without times
    assert bool(calls.loc["c2", "auto_fail"])
    info = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert info["counts"]["untimed"] == 2 and info["counts"]["audio_seconds"] == 0


def test_bad_rows_become_failures_and_the_rest_is_processed(tmp_path):
    rows = [
        *ROWS[:6],
        ["c1", "boss", "我是经理。", "23", "24", "", "", "", ""],  # line 8
        ["c1", "agent", "好的。", "soon", "", "", "", "", ""],  # line 9
        ["c1", "agent", "好的。", "30", "29", "", "", "", ""],  # line 10
        ["", "agent", "没有通话编号。", "1", "2", "", "", "", ""],  # line 11
        ["c3", "customer", "", "0", "1", "a3", "", "", ""],  # line 12: c3 has no good row
        ["c4", "agent", "您好，请问有什么可以帮您？", "0", "2", "a4", "", "", ""],  # line 13
    ]
    path = _write_csv(tmp_path / "turns.csv", rows)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('c4,customer,"unterminated\n')  # line 14: csv reads it as the last cell
    summary = run_transcripts(path, tmp_path / "out", _settings(tmp_path))
    assert summary.exit_code == 1
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", dtype=str, keep_default_na=False)
    reasons = list(failures.reason)
    assert reasons[:5] == [
        "turns.csv line 8: role 'boss' is not agent or customer",
        "turns.csv line 9: start 'soon' is not a number of seconds",
        "turns.csv line 10: end 29 is before start 30",
        "turns.csv line 11: no call_id",
        "turns.csv line 12: no text",
    ]
    assert "turns.csv: call 'c3' has no usable turn" in reasons
    assert set(failures.stage) == {"ingest"} and set(failures.path) == {str(path)}
    calls = pd.read_parquet(tmp_path / "out" / "calls.parquet").set_index("call_id")
    assert calls.loc["c1", "status"] == "ok" and calls.loc["c1", "n_turns"] == 6
    assert calls.loc["c3", "status"] == "failed"
    assert calls.loc["c4", "status"] == "ok"
    assert list(calls.index).count("c3") == 1


def test_malformed_json_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"call_id": "c1", "role": "agent", "text": "您好"}\n{"call_id": "c1", "role": \n'
        '[1, 2]\n{"call_id": "c1", "role": "customer", "text": "喂", "start": "x"}\n',
        encoding="utf-8",
    )
    batch = read_transcripts(path)
    assert [f.reason.split(":")[0] for f in batch.failures] == [
        "t.jsonl line 2",
        "t.jsonl line 3",
        "t.jsonl line 4",
    ]
    assert "not valid JSON" in batch.failures[0].reason
    assert len(batch.calls[0].turns) == 1


def test_no_whisper_model_needed_but_audio_runs_still_check_it(tmp_path):
    settings = _settings(tmp_path, asr={"model": str(tmp_path / "no-model")})
    ctx = make_context(settings, tmp_path / "out", audio=False)
    assert ctx.model is None
    with pytest.raises(ModelError):
        make_context(settings, tmp_path / "out")
    path = _write_csv(tmp_path / "t.csv", ROWS[:6])
    assert run_transcripts(path, tmp_path / "out", settings).exit_code == 0


# -- the command -----------------------------------------------------------------------------


def test_cli_run_transcripts(tmp_path):
    path = _write_csv(tmp_path / "turns.csv", ROWS)
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--transcripts",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--db",
            str(tmp_path / "qa.db"),
            "--night",
            "2026-11-23",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "calls.csv").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give INPUT (audio) or --transcripts FILE"),
        (["recordings", "--transcripts", "t.csv"], "not both"),
        (["--transcripts", "t.csv", "--model", "m"], "--model: for audio only"),
    ],
)
def test_cli_input_or_transcripts(tmp_path, args, message):
    result = CliRunner().invoke(main, ["run", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_unreadable_transcripts_file(tmp_path):
    path = tmp_path / "turns.csv"
    path.write_text("call_id,speaker,text\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--transcripts", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert f"Error: {path}: a transcript needs the columns call_id, role, text; missing role" in result.output
    assert not (tmp_path / "out").exists()
