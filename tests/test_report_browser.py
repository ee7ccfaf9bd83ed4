"""The run's page (speechqa/report.py) in a real browser: Debian's Chromium, headless, driven by
Playwright, on the report that `speechqa run` wrote for the committed recordings (real Whisper,
real history store). A screenshot of each check is kept in .test-artifacts/ (issue 13)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from speechqa import store as history
from tests.conftest import RECORDINGS, ROOT, settings_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / ".test-artifacts"
pytestmark = pytest.mark.e2e


def _require_browser():
    if not Path(CHROMIUM).is_file():
        if os.environ.get("SPEECHQA_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/browser.sh installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def night(model_dir, asr_cache, tmp_path_factory):
    """The committed recordings run into their own OUT and history store (transcripts from the
    session's cache): the page at OUT/report.html."""
    from speechqa.pipeline import run_batch

    work = tmp_path_factory.mktemp("report-night")
    base = settings_for(asr_cache)
    settings = dataclasses.replace(base, store=dataclasses.replace(base.store, db=str(work / "qa.db")))
    out = work / "out"
    summary = run_batch(RECORDINGS, out, settings)
    assert summary.run_info["pages"] == {"written": ["report.html", "qa_report.xlsx"], "errors": []}
    return out, work / "qa.db"


@pytest.fixture
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def _open(browser, out: Path, tmp_path: Path):
    """The page, with every request it makes recorded; any that is not a local file is refused."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    seen: list[str] = []
    refused: list[str] = []

    def guard(route):
        url = route.request.url
        seen.append(url)
        if url.split(":", 1)[0] in ("file", "data", "blob"):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: seen.append(r.url))
    page.goto((out / "report.html").as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg")
    return context, page, seen, refused, errors


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=False)


def _data(page) -> dict:
    return json.loads(page.locator("#report-data").text_content())


def test_the_page_has_its_charts_and_tables_and_nothing_leaves_the_file(night, browser, tmp_path):
    out, _ = night
    context, page, seen, refused, errors = _open(browser, out, tmp_path)
    for chart in ("scores", "sentiment", "holds", "items", "trend"):  # drawn by plotly.js, with their data
        assert page.locator(f'[data-chart="{chart}"].js-plotly-plot .main-svg').count() >= 1, chart
        assert page.evaluate(f"document.querySelector('[data-chart=\"{chart}\"]').data.length") >= 1, chart
    calls = pd.read_parquet(out / "calls.parquet")
    teams = sorted(calls.team.unique())
    assert page.locator("#team-table tbody tr").count() == len(teams)
    assert page.locator("article.team h3").all_text_contents()[0].startswith(teams[0])
    candidates = pd.read_parquet(out / "qa_candidates.parquet")
    assert page.locator("details.call").count() == min(20, len(candidates))
    assert page.locator("#auto-fails tbody tr").count() >= 1  # the committed night has auto-fails
    overview = page.locator(".cards").inner_text()
    assert f"{len(calls)}" in overview and "0.25" in overview  # 10 calls, 0.25 h of audio
    # the page's Chinese renders with the font embedded in it
    assert "@font-face{font-family:speechqa-cjk" in (out / "report.html").read_text(encoding="utf-8")
    assert page.evaluate("document.fonts.check('16px speechqa-cjk', '质检')")
    _shot(page, "report-overview.png")
    page.locator("#teams").scroll_into_view_if_needed()
    _shot(page, "report-teams.png")
    assert not refused, refused
    assert all(u.split(":", 1)[0] in ("file", "data", "blob") for u in seen), seen
    assert not errors, errors
    context.close()


def test_every_recording_plays_from_its_relative_path_and_the_player_seeks_to_evidence(night, browser,
                                                                                       tmp_path):
    out, _ = night
    context, page, _, refused, errors = _open(browser, out, tmp_path)
    flagged = _data(page)["flagged"]
    assert flagged
    for call in flagged:
        assert not call["audio"].startswith(("/", "file:")), call["audio"]  # relative to the page
        target = (out / urllib.parse.unquote(call["audio"])).resolve()
        assert target.is_file(), target
        assert call["audio_found"]
    cards = page.locator("details.call")
    for i in range(cards.count()):
        cards.nth(i).locator("summary").click()
    sources = page.eval_on_selector_all("audio", "els => els.map(a => a.src)")
    assert len(sources) == cards.count()
    for src in sources:
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(src).path))
        assert path.is_file(), src
    with_evidence = next(c for c in flagged if c["evidence"])
    card = page.locator(f'details.call[data-call="{with_evidence["call_id"]}"]')
    card.scroll_into_view_if_needed()
    audio = card.locator("audio")
    audio.evaluate("a => a.readyState >= 1 || new Promise(ok => a.addEventListener('loadedmetadata', ok))")
    wanted = with_evidence["evidence"][-1]
    card.locator("button.jump").last.click()
    assert abs(audio.evaluate("a => a.currentTime") - wanted["t"]) < 0.5
    # the transcript shows roles, masks and evidence
    assert card.locator(".turn").count() == len(with_evidence["turns"])
    _shot(page, "report-flagged-call.png")
    masked = [t for c in flagged for t in c["turns"] if "[" in t["text"]]
    if masked:
        assert page.locator(".turn .mask").count() >= 1
    assert page.locator("mark.ev-fail, mark.ev-pass").count() >= 1
    assert not refused and not errors, (refused, errors)
    context.close()


def test_a_verdict_entered_in_the_page_persists_and_imports_with_review_import(night, browser, tmp_path):
    out, db = night
    context, page, _, _, errors = _open(browser, out, tmp_path)
    page.evaluate("localStorage.clear()")
    page.reload()
    page.wait_for_selector("details.call")
    flagged = _data(page)["flagged"]
    call = flagged[0]
    item = next(i for i in call["items"] if i["outcome"] == "fail")
    page.fill("#reviewer", "李审")
    card = page.locator(f'details.call[data-call="{call["call_id"]}"]')
    card.locator("summary").click()
    card.locator(f'tr[data-item="{item["item_id"]}"] input[value="incorrect"]').check()
    card.locator('input[value="disagree"]').check()
    card.locator("input.score").fill("85")
    card.locator("textarea.comment").fill("坐席已致歉，机器没听出来，\"引号\"也要留住")
    page.reload()  # the verdicts live in the browser
    page.wait_for_selector("details.call")
    assert page.input_value("#reviewer") == "李审"
    card = page.locator(f'details.call[data-call="{call["call_id"]}"]')
    card.locator("summary").click()
    assert card.locator(f'tr[data-item="{item["item_id"]}"] input[value="incorrect"]').is_checked()
    assert card.locator("input.score").input_value() == "85"
    assert "已复核" in card.locator("summary .reviewed").inner_text()
    with page.expect_download() as done:
        page.click("#download")
    saved = tmp_path / done.value.suggested_filename
    done.value.save_as(saved)
    assert saved.name.startswith("reviews-") and saved.suffix == ".csv"
    env = {k: v for k, v in os.environ.items() if k != "SPEECHQA_STORE_DB"}
    imported = subprocess.run([sys.executable, "-m", "speechqa.cli", "review", "import", str(saved),
                               "--db", str(db)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert imported.returncode == 0, imported.stderr
    assert "1 call verdicts and 1 rule verdicts imported" in imported.stdout
    store = history.open_store(str(db))
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(history.call_reviews)).one()
        rule = conn.execute(sa.select(history.rule_reviews)).one()
    assert (row.call_id, row.reviewer, row.verdict, row.score) == (call["call_id"], "李审", "disagree", 85.0)
    assert row.comment == "坐席已致歉，机器没听出来，\"引号\"也要留住"
    assert (rule.item_id, rule.verdict) == (item["item_id"], "incorrect")
    reported = subprocess.run([sys.executable, "-m", "speechqa.cli", "review", "report", "--db", str(db)],
                              capture_output=True, text=True, env=env, cwd=ROOT)
    assert reported.returncode == 0 and item["item_id"] in reported.stdout, reported.stdout
    _shot(page, "report-review.png")
    assert not errors, errors
    context.close()


def test_the_workbook_has_its_sheets_formatted_for_qa_teams(night):
    from openpyxl import load_workbook

    out, _ = night
    book = load_workbook(out / "qa_report.xlsx")
    assert book.sheetnames == ["candidates", "agents", "teams", "item_pass_rates"]
    for ws in book.worksheets:
        assert ws.freeze_panes == "A2"
        assert ws.column_dimensions["A"].width >= 8
    rates = book["item_pass_rates"]
    header = [c.value for c in rates[1]]
    column = header.index("pass_rate") + 1
    assert rates.cell(row=2, column=column).number_format == "0.0%"
    assert 0 <= rates.cell(row=2, column=column).value <= 1
    assert book["candidates"].max_row == len(pd.read_parquet(out / "qa_candidates.parquet")) + 1


def test_exported_clips_are_linked_from_the_page(night, tmp_path):
    from click.testing import CliRunner

    from speechqa.cli import main

    out, db = night
    done = CliRunner().invoke(main, ["clips", "export", str(out), "--dest", str(out / "clips"),
                                     "--label", "good"])
    assert done.exit_code == 0, done.output
    done = CliRunner().invoke(main, ["report", str(out), "--db", str(db)])
    assert done.exit_code == 0, done.output
    page = (out / "report.html").read_text(encoding="utf-8")
    data = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    linked = [c for g in data["clips"]["groups"] for c in g["clips"] if c["exported"]]
    assert linked and all(c["label"] == "good" for c in linked)
    for clip in linked:
        assert (out / urllib.parse.unquote(clip["href"])).is_file(), clip["href"]
    coaching = [c for t in data["teams"] for w in t["weak"] for c in w["clips"]]
    assert coaching and all(c["exported"] for c in coaching)  # good clips of weak items: the exported files
