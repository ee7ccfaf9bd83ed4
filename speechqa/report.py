"""The run's page: OUT/report.html, one self-contained file for supervisors and reviewers.

It opens from a file share with no network and no server: plotly.js (the charts), the styles,
the page's script and a subset of a CJK font are inline. It reads the run's tables (never the
parts) and, for trends and tenure, the history store:

- overview: volume, failures, the score distribution, auto-fails, escalations, customer
  sentiment at the start against the end, silence and holds;
- teams first, then their agents (most improved, needing help, tenure band), each team's
  weakest items with good clips of those items from other calls;
- the flagged calls (this night's QA candidates), a page at a time: reasons, transcript with
  roles and evidence, per-turn sentiment, an audio player that jumps to the evidence, and
  in-page review whose download ``speechqa review import`` reads;
- the sampling summary and the training clips.

A night of 10,000 calls is summarised: only the flagged calls' transcripts are inline.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from speechqa.config import Settings
from speechqa.errors import OutputError
from speechqa.files import write_atomic, write_text_atomic

REPORT_NAME = "report.html"
TENURE_BANDS = ("0-3 个月", "4-6 个月", "7-18 个月", "18 个月以上")
NO_TEAM = "（未分组）"
CLIPS_PER_GROUP = 12  # clips listed per tag and label (the full list is training_clips.csv)
GOOD_CLIPS_PER_ITEM = 3  # coaching clips linked under each weak item
WEAK_ITEMS = 3  # a team's weakest items shown
FAILURES_LISTED = 200
ROLE_NAMES = {"agent": "坐席", "customer": "客户", "unknown": "未知"}


@dataclass(frozen=True)
class RunTables:
    """What the page reads of one run's OUT."""

    out: Path
    info: dict[str, Any]
    calls: pd.DataFrame  # processed calls (status ok)
    rules: pd.DataFrame
    candidates: pd.DataFrame
    clips: pd.DataFrame
    failures: pd.DataFrame
    night: str

    def seen(self, path: str) -> Path:
        """A path of the run's tables (a recording) as the run saw it: relative ones are from
        the folder the run started in (run.json ``cwd``), wherever the report is written."""
        target = Path(path)
        return target if target.is_absolute() else Path(self.info.get("cwd") or Path.cwd()) / target


def _table(out: Path, name: str, columns: list[str] | None = None, filters: Any = None) -> pd.DataFrame:
    path = out / f"{name}.parquet"
    if not path.is_file():
        return pd.DataFrame(columns=columns or [])
    try:
        return pq.read_table(path, columns=columns, filters=filters).to_pandas()
    except Exception as exc:  # a damaged or foreign file
        raise OutputError(f"{path}: cannot be read ({exc})") from None


def load_run(out: Path, info: dict[str, Any] | None = None) -> RunTables:
    """The run's tables (``info``: its run.json, read from OUT when not given); an OUT
    without calls.parquet is no run's output."""
    out = Path(out)
    if not (out / "calls.parquet").is_file():
        raise OutputError(f"{out}: no calls.parquet here; run 'speechqa run ... --out {out}' first")
    info_path = out / "run.json"
    try:
        if info is None:
            info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise OutputError(f"{info_path}: cannot be read ({exc})") from None
    calls = _table(out, "calls")
    calls = calls[calls.status == "ok"].reset_index(drop=True) if "status" in calls else calls
    for column in ("team", "agent_id", "agent_name", "agent_hire_date"):
        if column not in calls:
            calls[column] = ""
        calls[column] = calls[column].fillna("").astype(str)
    calls["team"] = calls["team"].where(calls["team"] != "", NO_TEAM)
    night = ((info.get("sampling") or {}).get("night") or _mode_date(calls.get("started_at")) or "")
    return RunTables(out, info, calls, _table(out, "rule_results"), _table(out, "qa_candidates"),
                     _table(out, "training_clips"), _table(out, "failures"), night)


def _mode_date(started: pd.Series | None) -> str:
    if started is None:
        return ""
    days = started.dropna().astype(str).str[:10]
    days = days[days.str.fullmatch(r"\d{4}-\d{2}-\d{2}")]
    return str(days.mode().iloc[0]) if len(days) else ""


# -- numbers -------------------------------------------------------------------------------


def _num(value: Any, digits: int = 1) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if v != v else round(v, digits)


def _mean(series: pd.Series, digits: int = 1) -> float | None:
    return _num(pd.to_numeric(series, errors="coerce").mean(), digits)


def item_pass_rates(tables: RunTables) -> pd.DataFrame:
    """Pass rate per team and item over the items that were scored (N/A left out): columns
    team, item_id, item_name, passed, failed, pass_rate."""
    rules = tables.rules
    if rules.empty:
        return pd.DataFrame(columns=["team", "item_id", "item_name", "passed", "failed", "pass_rate"])
    scored = rules[rules.outcome.isin(["pass", "fail"])].merge(tables.calls[["call_id", "team"]], on="call_id")
    g = scored.groupby(["team", "item_id"], sort=False)
    out = pd.DataFrame({
        "item_name": g["item_name"].first(),
        "passed": g["outcome"].apply(lambda s: int((s == "pass").sum())),
        "failed": g["outcome"].apply(lambda s: int((s == "fail").sum())),
    }).reset_index()
    out["pass_rate"] = (out.passed / (out.passed + out.failed)).round(4)
    return out


def _item_order(tables: RunTables) -> list[tuple[str, str]]:
    rules = tables.rules
    if rules.empty:
        return []
    first = rules.drop_duplicates("item_id")
    return list(zip(first.item_id, first.item_name, strict=True))


# -- the history store ---------------------------------------------------------------------


def history(settings: Settings) -> tuple[pd.DataFrame | None, str]:
    """Every night's calls in the history store (night, team, agent_id, compliance_score), and
    a note when there is none. A SQLite store that does not exist is not created."""
    from speechqa import store as hs

    db = settings.store.db
    if "://" not in db and not Path(db).is_file():
        return None, f"no history store at {db}: trends need the nights recorded by speechqa run"
    try:
        st = hs.open_store(db)
        try:
            frame = hs.calls_frame(st)
        finally:
            hs.close_store(st)
    except Exception as exc:  # the page is still worth having without its trends
        return None, f"the history store could not be read: {exc}"
    frame["team"] = frame["team"].fillna("").astype(str).replace("", NO_TEAM)
    return frame, ""


# -- charts (plotly figures, drawn in the page by the inlined plotly.js) -------------------


def _figure(fig: Any) -> dict[str, Any]:
    import plotly.io as pio

    fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=300,
                      font={"family": "speechqa-cjk, 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif"},
                      paper_bgcolor="white", plot_bgcolor="white")
    return json.loads(pio.to_json(fig, validate=False))


def overview_charts(tables: RunTables, hist: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    import numpy as np
    import plotly.graph_objects as go

    calls = tables.calls
    charts: dict[str, dict[str, Any]] = {}
    scores = pd.to_numeric(calls.get("compliance_score"), errors="coerce").dropna()
    counts, edges = np.histogram(scores, bins=10, range=(0, 100))
    labels = [f"{int(a)}-{int(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    charts["scores"] = _figure(go.Figure(go.Bar(x=labels, y=counts.tolist(), marker_color="#4472c4"),
                                         layout={"title": "合规得分分布 / compliance score",
                                                 "xaxis": {"title": "score"}, "yaxis": {"title": "calls"}}))
    bins = np.linspace(0, 1, 11)
    mid = [f"{a:.1f}-{b:.1f}" for a, b in zip(bins[:-1], bins[1:], strict=True)]
    traces = []
    for column, name, colour in (("customer_sentiment_start", "开始 start", "#a5a5a5"),
                                 ("customer_sentiment_end", "结束 end", "#ed7d31")):
        values = pd.to_numeric(calls.get(column), errors="coerce").dropna()
        counted = np.histogram(values, bins=bins)[0].tolist()
        traces.append(go.Bar(x=mid, y=counted, name=name, marker_color=colour))
    charts["sentiment"] = _figure(go.Figure(traces, layout={
        "title": "客户情绪：开始 vs 结束 / customer sentiment", "barmode": "group",
        "xaxis": {"title": "sentiment (0 negative – 1 positive)"}, "yaxis": {"title": "calls"}}))
    by_team = calls.groupby("team", sort=True)
    names = list(by_team.groups)
    charts["holds"] = _figure(go.Figure([
        go.Bar(x=names, y=(by_team["silence_s"].sum() / 60).round(1).tolist(), name="静音 silence"),
        go.Bar(x=names, y=(by_team["hold_s"].sum() / 60).round(1).tolist(), name="保持 hold"),
    ], layout={"title": "静音与保持（分钟）/ silence and hold minutes", "barmode": "group",
               "yaxis": {"title": "minutes"}}))
    rates = item_pass_rates(tables)
    items = _item_order(tables)
    teams = sorted(calls.team.unique())
    if len(rates) and items:
        table = rates.pivot(index="team", columns="item_id", values="pass_rate").reindex(
            index=teams, columns=[i for i, _ in items])
        z = table.to_numpy(dtype=float)
        text = [["" if v != v else f"{v:.0%}" for v in row] for row in z]
        charts["items"] = _figure(go.Figure(go.Heatmap(
            z=[[None if v != v else v for v in row] for row in z], x=[name for _, name in items], y=teams,
            text=text, texttemplate="%{text}", zmin=0, zmax=1, colorscale="RdYlGn", colorbar={"title": "pass"}),
            layout={"title": "各组评分项通过率 / pass rate per item"}))
    if hist is not None and len(hist):
        trend = hist.groupby(["team", "night"])["compliance_score"].mean().round(1).reset_index()
        charts["trend"] = _figure(go.Figure([
            go.Scatter(x=g.night.tolist(), y=g.compliance_score.tolist(), mode="lines+markers", name=team)
            for team, g in trend.groupby("team")], layout={
                "title": "各组历史平均分 / team score by night",
                "xaxis": {"type": "category", "title": "night"},
                "yaxis": {"title": "score", "range": [0, 105]}}))
    return charts


# -- sections ------------------------------------------------------------------------------


def _rel(out: Path, target: Path) -> str:
    """A file (a recording, an exported clip) as a URL relative to the page in ``out``."""
    rel = os.path.relpath(Path(target).absolute().resolve(), out.resolve())
    return urllib.parse.quote(Path(rel).as_posix())


def overview(tables: RunTables) -> dict[str, Any]:
    calls, failures = tables.calls, tables.failures
    auto = tables.rules
    auto_items: list[dict[str, Any]] = []
    if len(auto) and "auto_fail_item" in auto:
        failed = auto[(auto.outcome == "fail") & auto.auto_fail_item.astype(bool)]
        for (item_id, name), g in failed.groupby(["item_id", "item_name"]):
            auto_items.append({"item_id": item_id, "item_name": name, "calls": int(g.call_id.nunique())})
    kinds = [c for c in calls.columns if c.startswith("escalation_")]
    escalations = {c.removeprefix("escalation_"): int(pd.to_numeric(calls[c], errors="coerce").gt(0).sum())
                   for c in kinds}
    return {
        "calls": len(calls) + len(failures),
        "ok": len(calls),
        "failed": len(failures),
        "hours": round(float(pd.to_numeric(calls.get("duration_s"), errors="coerce").sum()) / 3600, 2),
        "failures": failures.head(FAILURES_LISTED).to_dict("records"),
        "failures_more": max(0, len(failures) - FAILURES_LISTED),
        "score_mean": _mean(calls.get("compliance_score")),
        "auto_fail_calls": int(calls.get("auto_fail", pd.Series(dtype=bool)).fillna(False).astype(bool).sum()),
        "auto_items": sorted(auto_items, key=lambda r: -r["calls"]),
        "escalated_calls": int(calls.get("escalated", pd.Series(dtype=bool)).fillna(False).astype(bool).sum()),
        "escalations": {k: v for k, v in escalations.items() if v},
        "sentiment_start": _mean(calls.get("customer_sentiment_start"), 3),
        "sentiment_end": _mean(calls.get("customer_sentiment_end"), 3),
        "silence_min": round(float(pd.to_numeric(calls.get("silence_s"), errors="coerce").sum()) / 60, 1),
        "hold_min": round(float(pd.to_numeric(calls.get("hold_s"), errors="coerce").sum()) / 60, 1),
        "holds": int(pd.to_numeric(calls.get("n_holds"), errors="coerce").sum()),
        "calls_with_holds": int(pd.to_numeric(calls.get("n_holds"), errors="coerce").gt(0).sum()),
    }


def _clip_files(tables: RunTables, settings: Settings) -> dict[str, str]:
    """clip_id -> the exported file's URL, from a ``clips export`` folder's clips.csv."""
    folder = Path(settings.report.clips_dir) if settings.report.clips_dir else tables.out / "clips"
    index = folder / "clips.csv"
    if not index.is_file():
        return {}
    try:
        done = pd.read_csv(index, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    except Exception:  # an index we cannot read links nothing; the clips still play from the call
        return {}
    return {row.clip_id: _rel(tables.out, folder / row.file) for row in done.itertuples()
            if (folder / row.file).is_file()}


def _clip_link(clip: Any, tables: RunTables, files: dict[str, str]) -> dict[str, Any]:
    exported = files.get(clip.clip_id)
    href = exported or f"{_rel(tables.out, tables.seen(clip.audio_path))}#t={clip.start:.2f},{clip.end:.2f}"
    return {"clip_id": clip.clip_id, "label": clip.label, "tags": clip.tags, "href": href,
            "exported": bool(exported), "start": round(float(clip.start), 2), "end": round(float(clip.end), 2),
            "call_id": clip.call_id, "team": clip.team, "agent_name": clip.agent_name, "excerpt": clip.excerpt}


def teams_section(tables: RunTables, hist: pd.DataFrame | None, files: dict[str, str]) -> list[dict[str, Any]]:
    from speechqa.sampling import tenure_stage

    calls, clips = tables.calls, tables.clips
    rates = item_pass_rates(tables)
    earlier = hist[hist.night < tables.night] if hist is not None and tables.night else None
    teams = []
    for team, g in calls.groupby("team", sort=True):
        mine = rates[rates.team == team].sort_values(["pass_rate", "failed"], ascending=[True, False])
        weak = []
        for r in mine[mine.pass_rate < 1].head(WEAK_ITEMS).itertuples():
            links = []
            if len(clips):  # good clips of this item from other teams' calls first, then this team's
                of_item = clips.item_id.str.split(";").apply(lambda ids, i=r.item_id: i in ids)
                good = clips[(clips.label == "good") & of_item & ~clips.call_id.isin(g.call_id)]
                good = good.assign(other=good.team != team).sort_values(["other", "clip_id"],
                                                                        ascending=[False, True])
                links = [_clip_link(c, tables, files) for c in good.head(GOOD_CLIPS_PER_ITEM).itertuples()]
            weak.append({"item_id": r.item_id, "item_name": r.item_name, "pass_rate": r.pass_rate,
                         "failed": r.failed, "clips": links})
        agents = []
        for (agent_id, name), a in g.groupby(["agent_id", "agent_name"], sort=True):
            score = _mean(a.compliance_score)
            before = None
            if earlier is not None and len(earlier):
                before = _mean(earlier[earlier.agent_id == agent_id].compliance_score)
            hire = a.agent_hire_date.iloc[0]
            band = TENURE_BANDS[tenure_stage(hire, tables.night)] if hire and tables.night else "未知"
            agents.append({"agent_id": agent_id, "agent_name": name, "calls": len(a), "score": score,
                           "before": before, "change": None if score is None or before is None
                           else round(score - before, 1), "auto_fails": int(a.auto_fail.fillna(False).sum()),
                           "tenure": band, "hire_date": hire})
        improved = sorted((a for a in agents if (a["change"] or 0) > 0), key=lambda a: -a["change"])[:3]
        help_ = sorted((a for a in agents if a["score"] is not None and (a["auto_fails"] or a["score"] < 80
                        or (a["change"] or 0) < 0)), key=lambda a: (a["score"], -a["auto_fails"]))[:3]
        items = [{"item_id": r.item_id, "item_name": r.item_name, "pass_rate": r.pass_rate,
                  "passed": r.passed, "failed": r.failed} for r in rates[rates.team == team].itertuples()]
        teams.append({
            "team": team, "calls": len(g), "score": _mean(g.compliance_score),
            "pass_rate": _num((pd.to_numeric(g.compliance_score, errors="coerce") >= 80).mean(), 3),
            "auto_fails": int(g.auto_fail.fillna(False).sum()),
            "sentiment_end": _mean(g.customer_sentiment_end, 3), "talk_ratio": _mean(g.talk_ratio_agent, 3),
            "holds": int(pd.to_numeric(g.n_holds, errors="coerce").sum()),
            "hold_min": round(float(pd.to_numeric(g.hold_s, errors="coerce").sum()) / 60, 1),
            "item_rates": items, "weak": weak, "agents": agents, "improved": improved, "need_help": help_,
            "nights": int(hist[hist.team == team].night.nunique()) if hist is not None else 0,
        })
    return teams


def _evidence_times(text: str) -> list[dict[str, Any]]:
    """``hold_notice@21.9s; complaint@40.3s`` (qa_candidates.evidence) as labelled times."""
    found = []
    for part in str(text or "").split(";"):
        name, _, at = part.strip().rpartition("@")
        try:
            found.append({"label": name, "t": float(at.rstrip("s"))})
        except ValueError:
            continue
    return found


def flagged_calls(tables: RunTables) -> list[dict[str, Any]]:
    """The night's QA candidates, with what the page shows and reviews of each."""
    cands = tables.candidates
    if cands.empty:
        return []
    cands = cands.sort_values(["priority", "call_id"], ascending=[False, True])
    ids = cands.call_id.tolist()
    turns = _table(tables.out, "turns", ["call_id", "turn_id", "role", "start", "end", "text", "sentiment"],
                   filters=[("call_id", "in", ids)])
    by_call = {k: g.sort_values("start") for k, g in turns.groupby("call_id")}
    rules = tables.rules[tables.rules.call_id.isin(ids)]
    rules_by = {k: g for k, g in rules.groupby("call_id")}
    calls = tables.calls.set_index("call_id")
    found = []
    for c in cands.itertuples():
        call = calls.loc[c.call_id] if c.call_id in calls.index else None
        rr = rules_by.get(c.call_id, pd.DataFrame(columns=rules.columns))
        evidence: dict[str, list[list[Any]]] = {}
        items = []
        for r in rr.itertuples():
            start = _num(r.evidence_start, 2)
            items.append({"item_id": r.item_id, "item_name": r.item_name, "outcome": r.outcome,
                          "points": _num(r.points), "max_points": _num(r.max_points), "reason": r.reason or "",
                          "t": start})
            if r.evidence_turn_id and r.evidence_text:
                evidence.setdefault(r.evidence_turn_id, []).append([r.evidence_text, r.outcome])
        heard = call is not None and str(call.get("times", "audio")) == "audio"  # not an imported transcript
        audio = str(c.audio_path or call.path) if heard and call is not None else ""
        t = by_call.get(c.call_id, pd.DataFrame(columns=turns.columns))
        found.append({
            "call_id": c.call_id, "layer": c.layer, "priority": _num(c.priority), "agent_id": c.agent_id,
            "agent_name": c.agent_name, "team": c.team or NO_TEAM, "reviewer": c.reviewer or "",
            "reasons_zh": c.reasons_zh, "reasons_en": c.reasons_en,
            "score": None if call is None else _num(call.compliance_score),
            "auto_fail": bool(call.auto_fail) if call is not None else False,
            "duration_s": None if call is None else _num(call.duration_s),
            "audio": _rel(tables.out, tables.seen(audio)) if audio else "",
            "audio_found": bool(audio) and tables.seen(audio).is_file(),
            "evidence": _evidence_times(c.evidence),
            "items": items,
            "turns": [{"id": x.turn_id, "role": x.role, "start": _num(x.start, 2), "end": _num(x.end, 2),
                       "text": x.text, "sentiment": _num(x.sentiment, 3),
                       "evidence": evidence.get(x.turn_id, [])}
                      for x in t.itertuples()],
        })
    return found


def sampling_summary(tables: RunTables) -> dict[str, Any]:
    cands = tables.candidates
    if cands.empty:
        return {"layers": {}, "reviewers": [], "total": 0}
    reviewer = cands.reviewer.fillna("").replace("", "（未分配）")
    pivot = pd.crosstab(reviewer, cands.layer)
    return {"total": len(cands), "layers": cands.layer.value_counts().to_dict(),
            "reviewers": [{"reviewer": r, "calls": int(row.sum()), **{k: int(v) for k, v in row.items()}}
                          for r, row in pivot.iterrows()], "layer_names": list(pivot.columns)}


def clips_section(tables: RunTables, files: dict[str, str]) -> dict[str, Any]:
    clips = tables.clips
    if clips.empty:
        return {"groups": [], "total": 0, "exported": 0}
    groups = []
    first_tag = clips.tags.str.split(";").str[0]
    for (tag, label), g in clips.groupby([first_tag, clips.label], sort=True):
        groups.append({"tag": tag, "label": label, "count": len(g),
                       "clips": [_clip_link(c, tables, files)
                                 for c in g.head(CLIPS_PER_GROUP).itertuples()]})
    return {"groups": groups, "total": len(clips), "exported": len(files)}


# -- the page ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _asset(name: str) -> str:
    return (resources.files("speechqa") / "data" / "report" / name).read_text(encoding="utf-8")


def _json(value: Any) -> str:
    """JSON for a <script type="application/json"> block: nothing in it can close the block."""
    text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _clean(value: Any) -> Any:
    """NaN and infinities as null (the page's JSON), recursively."""
    if isinstance(value, float):
        return None if value != value or value in (float("inf"), float("-inf")) else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return _clean(value.item())
    return value


def _face(path: Path) -> Any:
    import uharfbuzz as hb

    return hb.Face(hb.Blob.from_file_path(str(path)), 0)  # a collection (.ttc): its first font


def find_font(setting: str) -> Path | None:
    """The CJK font to embed: ``[report] font``, else the one fontconfig gives for Chinese,
    when it has Chinese (fontconfig falls back to any font when there is none)."""
    if setting.lower() == "none":
        return None
    if setting:
        path = Path(setting)
        if not path.is_file():
            raise OutputError(f"[report] font: {path} is not a font file")
        return path
    if shutil.which("fc-match") is None:
        return None
    try:
        done = subprocess.run(["fc-match", "-f", "%{file}", "sans-serif:lang=zh-cn"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    found = Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None
    if found is None or not found.is_file():
        return None
    try:
        return found if ord("话") in _face(found).unicodes else None
    except Exception:  # not a font HarfBuzz can read
        return None


def font_face(font: Path | None, text: str) -> str:
    """An @font-face rule with ``font`` cut down to the characters of ``text`` (HarfBuzz's
    subsetter, a TrueType/OpenType font inline), or '' without a font."""
    if font is None:
        return ""
    import uharfbuzz as hb

    wanted = hb.SubsetInput()
    for code in {ord(ch) for ch in text if ord(ch) > 0x2000} | set(range(0x20, 0x7F)):
        wanted.unicode_set.add(code)
    try:
        data = hb.subset(_face(font), wanted).blob.data
    except Exception as exc:
        raise OutputError(f"{font}: cannot be embedded in the report ({exc})") from None
    if not data:
        raise OutputError(f"{font}: cannot be embedded in the report (HarfBuzz could not subset it)")
    encoded = base64.b64encode(data).decode("ascii")
    return f"@font-face{{font-family:speechqa-cjk;src:url(data:font/ttf;base64,{encoded}) format('truetype');}}"


def build_report(tables: RunTables, settings: Settings) -> str:
    """The page's HTML for the run whose tables are ``tables``."""
    import jinja2

    hist, history_note = history(settings)
    files = _clip_files(tables, settings)
    info = tables.info
    data = _clean({
        "night": tables.night,
        "run": {"started_at": info.get("started_at", ""), "finished_at": info.get("finished_at", ""),
                "scorecard": (info.get("scorecard") or {}).get("name", ""),
                "scorecard_version": (info.get("scorecard") or {}).get("version", ""),
                "pii_redacted": info.get("pii_redacted", True)},
        "overview": overview(tables),
        "charts": overview_charts(tables, hist),
        "teams": teams_section(tables, hist, files),
        "history_note": history_note,
        "flagged": flagged_calls(tables),
        "sampling": sampling_summary(tables),
        "clips": clips_section(tables, files),
        "page_size": settings.report.page_size,
        "roles": ROLE_NAMES,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_asset("report.html.j2"))
    payload, js = _json(data), _asset("report.js")
    # every character the page can show: the template's own words, the data's, and the labels
    # the script writes
    font_css = font_face(find_font(settings.report.font), _asset("report.html.j2") + js + payload)
    return template.render(d=data, data_json=payload, css=_asset("report.css"), js=js,
                           plotly=_plotly_js(), font_css=font_css)


def write_report(tables: RunTables, settings: Settings) -> Path:
    """Write OUT/report.html (atomically: a reader never sees half a page)."""
    path = tables.out / REPORT_NAME
    write_text_atomic(path, build_report(tables, settings))
    return path


def write_pages(out: Path, settings: Settings, info: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """OUT/report.html and OUT/qa_report.xlsx from the run's tables, read once. ``info``: the
    run's run.json when it is not written yet (the end of speechqa run). They only show the
    tables, so one that cannot be written costs nothing else: ``errors`` says why."""
    written: list[str] = []
    errors: list[str] = []
    try:
        tables = load_run(Path(out), info)
    except OutputError as exc:
        return {"written": written, "errors": [str(exc)]}
    for name, write in ((REPORT_NAME, lambda: write_report(tables, settings)),
                        (WORKBOOK_NAME, lambda: write_workbook(tables))):
        try:
            write()
            written.append(name)
        except Exception as exc:  # a full disk, a font HarfBuzz cannot cut, a bug: the run is still whole
            errors.append(f"{Path(out) / name}: {exc}")
    return {"written": written, "errors": errors}


# -- the QA workbook -----------------------------------------------------------------------

WORKBOOK_NAME = "qa_report.xlsx"
PERCENT_COLUMNS = {"pass_rate"}


def workbook_sheets(tables: RunTables) -> dict[str, pd.DataFrame]:
    """The workbook's sheets: candidates, agent and team scorecards, item pass rates (per team,
    then over the night as team ``全部``)."""
    out = tables.out
    rates = item_pass_rates(tables)
    if len(rates):
        night = rates.groupby(["item_id", "item_name"], sort=False)[["passed", "failed"]].sum().reset_index()
        night.insert(0, "team", "全部")
        night["pass_rate"] = (night.passed / (night.passed + night.failed)).round(4)
        rates = pd.concat([night, rates], ignore_index=True)
    return {"candidates": tables.candidates, "agents": _table(out, "agents"), "teams": _table(out, "teams"),
            "item_pass_rates": rates}


def write_workbook(tables: RunTables) -> Path:
    """OUT/qa_report.xlsx for QA teams: a frozen header, filters and fitted widths on each
    sheet, rates as percentages. Written atomically."""
    from openpyxl.utils import get_column_letter

    sheets = workbook_sheets(tables)
    path = tables.out / WORKBOOK_NAME

    def write(tmp: Path) -> None:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xl:
            for name, df in sheets.items():
                df.to_excel(xl, sheet_name=name, index=False)
                ws = xl.sheets[name]
                ws.freeze_panes = "A2"
                if len(df.columns):
                    ws.auto_filter.ref = f"A1:{get_column_letter(len(df.columns))}{len(df) + 1}"
                for i, column in enumerate(df.columns, 1):
                    cells = [str(column), *(str(v) for v in df[column].head(500))]
                    wide = max(sum(2 if ord(ch) > 0x2E80 else 1 for ch in c) for c in cells)
                    ws.column_dimensions[get_column_letter(i)].width = min(60, max(8, wide + 2))
                    if column in PERCENT_COLUMNS or column.endswith("_rate"):
                        for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                            cell.number_format = "0.0%"

    write_atomic(path, write)
    return path
