"""The report's page and workbook from imported transcripts (no model): what they hold, hostile
text, a run without a sample, and bad OUT folders (speechqa/report.py)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from speechqa.cli import main
from speechqa.errors import OutputError
from speechqa.pipeline import run_transcripts
from speechqa.report import build_report, font_face, load_run
from tests.test_report_browser import CHROMIUM, _require_browser
from tests.test_transcripts import ROWS, _settings, _write_csv

HOSTILE = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
ROWS_HOSTILE = [*ROWS, ["c3", "agent", "您好，欢迎致电顺达快递，工号7001。", "0", "3", "a3", "赵六", "三组",
                        "2026-11-23 11:00:00"],
                ["c3", "customer", f"我要投诉你们！{HOSTILE} 我要打12315", "3.5", "8", "", "", "", ""],
                ["c3", "agent", "不知道。", "8.5", "10", "", "", "", ""]]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-import")
    summary = run_transcripts(_write_csv(tmp / "turns.csv", ROWS_HOSTILE), tmp / "out", _settings(tmp))
    return tmp, summary


def _data(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert block, "the page's data block"
    return json.loads(block.group(1))


def test_a_run_writes_its_page_and_workbook_and_says_so(imported):
    tmp, summary = imported
    assert summary.run_info["pages"] == {"written": ["report.html", "qa_report.xlsx"], "errors": []}
    page = (tmp / "out" / "report.html").read_text(encoding="utf-8")
    data = _data(page)
    assert data["night"] == "2026-11-23"
    assert data["overview"]["calls"] == 3 and data["overview"]["failed"] == 0
    assert {t["team"] for t in data["teams"]} == {"一组", "二组", "三组"}
    flagged = {c["call_id"]: c for c in data["flagged"]}
    assert "c2" in flagged and "c3" in flagged  # the brush-off and the regulator threats
    c2 = flagged["c2"]
    assert c2["layer"] == "must_review" and c2["turns"] and c2["items"]
    assert any(t["label"] == "regulator" for t in c2["evidence"])
    assert not c2["audio_found"]  # imported transcripts: no recording to play
    # customer numbers are masks on the page, never the numbers
    assert "13812345678" not in page and "11010519491231002X" not in page


def test_hostile_text_in_a_transcript_stays_text(imported):
    tmp, _ = imported
    page = (tmp / "out" / "report.html").read_text(encoding="utf-8")
    assert "</script><script>window.pwned" not in page  # the data block cannot be closed from inside
    c3 = next(c for c in _data(page)["flagged"] if c["call_id"] == "c3")
    assert any(HOSTILE in t["text"] for t in c3["turns"])  # ... and the words are all there
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        view = browser.new_page()
        dialogs: list[str] = []
        view.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        view.goto((tmp / "out" / "report.html").as_uri())
        view.locator('details.call[data-call="c3"] summary').click()
        shown = view.locator('details.call[data-call="c3"] .transcript').inner_text()
        assert "window.pwned=1" in shown
        assert view.evaluate("window.pwned === undefined") and not dialogs
        browser.close()


def test_a_run_without_a_sample_or_store_still_gets_its_page(tmp_path):
    settings = _settings(tmp_path, sampling={"enabled": False, "night": "2026-11-23"})
    run_transcripts(_write_csv(tmp_path / "t.csv", ROWS), tmp_path / "out", settings)
    data = _data((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    assert data["flagged"] == [] and data["sampling"]["total"] == 0
    assert "trend" not in data["charts"] and "no history store" in data["history_note"]


def test_report_enabled_false_writes_no_page(tmp_path):
    settings = _settings(tmp_path, report={"enabled": False})
    summary = run_transcripts(_write_csv(tmp_path / "t.csv", ROWS), tmp_path / "out", settings)
    assert not (tmp_path / "out" / "report.html").exists()
    assert summary.run_info["pages"]["written"] == []


def test_the_report_command_rewrites_the_page_and_names_a_folder_that_is_no_run(imported, tmp_path):
    tmp, _ = imported
    (tmp / "out" / "report.html").unlink()
    done = CliRunner().invoke(main, ["report", str(tmp / "out"), "--db", str(tmp / "qa.db"), "--font", "none"])
    assert done.exit_code == 0, done.output
    assert "report.html" in done.output and "qa_report.xlsx" in done.output
    assert "@font-face" not in (tmp / "out" / "report.html").read_text(encoding="utf-8")  # --font none
    empty = tmp_path / "empty"
    empty.mkdir()
    done = CliRunner().invoke(main, ["report", str(empty)])
    assert done.exit_code != 0 and f"{empty}: no calls.parquet here" in done.output
    with pytest.raises(OutputError, match="is not a font file"):
        build_report(load_run(tmp / "out"), _settings(tmp, report={"font": str(tmp_path / "missing.ttf")}))


def test_a_damaged_table_is_named(imported, tmp_path):
    import shutil

    tmp, _ = imported
    copy = tmp_path / "out"
    shutil.copytree(tmp / "out", copy)
    (copy / "rule_results.parquet").write_bytes(b"not parquet")
    with pytest.raises(OutputError, match=r"rule_results\.parquet: cannot be read"):
        load_run(copy)


def test_the_font_is_cut_to_the_page(tmp_path):
    from speechqa.report import find_font

    font = find_font("")
    if font is None:
        pytest.skip("no Chinese font here (Debian: fonts-wqy-microhei)")
    small = font_face(font, "质检")
    large = font_face(font, "质检日报团队坐席客户情绪" * 3 + "的一是了我不人在他有这个上们来")
    assert small.startswith("@font-face{font-family:speechqa-cjk")
    assert len(small) < len(large) < 200_000  # a few glyphs, not the font's 20,000


def test_every_workbook_column_is_documented_in_readme(imported):
    from openpyxl import load_workbook

    from tests.conftest import ROOT

    tmp, _ = imported
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    book = load_workbook(tmp / "out" / "qa_report.xlsx")
    for ws in book.worksheets:
        assert f"`{ws.title}`" in readme, ws.title
        for cell in ws[1]:
            assert re.search(rf"\b{re.escape(str(cell.value))}\b", readme), f"{ws.title}.{cell.value}"


def test_relative_recording_paths_start_where_the_run_started(imported, tmp_path, monkeypatch):
    tmp, _ = imported
    tables = load_run(tmp / "out", {"cwd": "/srv/qa/night"})
    monkeypatch.chdir(tmp_path)  # `speechqa report` run from elsewhere
    assert str(tables.seen("recordings/c1.wav")) == "/srv/qa/night/recordings/c1.wav"
    assert str(tables.seen("/data/c1.wav")) == "/data/c1.wav"
    assert load_run(tmp / "out").info["cwd"]  # every run records where it started
