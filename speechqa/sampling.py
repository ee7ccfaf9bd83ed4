"""QA sampling: which of tonight's calls reviewers listen to, and why.

Reviewers cannot hear every call, so the sample is taken by a fixed method with fixed
criteria, in five layers, in this order (each layer only sees calls no earlier layer took,
and no call sampled on an earlier night is ever taken again):

1. **must_review**: an auto-fail item failed; a complaint, regulator (12315, 工信部) or media
   threat; the customer ended very negative; a long hold that was not announced; a transcript
   that misses much of the speech (``low_coverage``: a failed item may be a dropped word); a
   call in a language the scorecard is not written for (not scored: only a person can); a
   mono call whose agent and customer could not be told apart surely (``roles_uncertain``:
   its role items are N/A).
2. **risk**: a weighted draw of ``risk_per_night`` calls; the weight grows with a low
   compliance score, a drop in customer sentiment, agent interruptions and a KA / VIP
   customer.
3. **floor**: every agent gets at least ``floor_per_period`` reviews per period (a week by
   default), spread across the period's nights rather than taken on its first night.
4. **tenure**: agents in their first months get more, by stage: ``tenure_floor`` gives the
   per-period floor for agents in months 0-3, 4-6, 7-18 and 18+ of their tenure; this layer
   tops the base floor up to it.
5. **recognition**: exemplary calls (a high score and a customer who ended better than they
   started), so supervisors can praise good work.

Every random choice comes from one ``numpy`` generator seeded with ``seed`` (recorded in the
output), and calls are visited in ``call_id`` order, so the same inputs give the same sample.
Reviewers are then assigned round-robin, in priority order, within their nightly capacity.

Everything here is a pure function of DataFrames: the calls of the night (the ``calls``
table), their rule results and events (for reasons and evidence times), and the history
(calls already sampled, reviews already given to each agent this period).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from speechqa.config import SamplingSettings

THREATS = ("complaint", "regulator", "media")
TIERS_UP = {"KA": 2.0, "VIP": 2.0}
LAYERS = ("must_review", "risk", "floor", "tenure", "recognition")
COLUMNS = [
    "night", "call_id", "agent_id", "agent_name", "team", "layer", "priority", "reasons_zh", "reasons_en",
    "evidence", "audio_path", "reviewer", "seed",
]


@dataclass(frozen=True)
class History:
    sampled: frozenset[str] = frozenset()  # every call sampled on an earlier night
    period_counts: Mapping[str, int] = field(default_factory=dict)  # agent_id -> reviews this period

    def count(self, agent: str) -> int:
        return int(self.period_counts.get(agent, 0))


def night_seed(night: str, seed: int) -> int:
    """The seed actually used: ``seed``, or one derived from the date when it is 0."""
    return seed if seed else int(night.replace("-", ""))


def period_bounds(night: str, period_days: int) -> tuple[str, str]:
    """First and last night of the period holding ``night`` (weeks start on Monday)."""
    day = date.fromisoformat(night)
    if period_days == 7:
        start = day - timedelta(days=day.weekday())
    else:
        start = date.fromordinal(day.toordinal() - (day.toordinal() - 1) % period_days)
    return start.isoformat(), (start + timedelta(days=period_days - 1)).isoformat()


def tenure_stage(hire_date: str | None, night: str) -> int:
    """0 for months 0-3 of tenure, 1 for 4-6, 2 for 7-18, 3 after; unknown hire dates count as 3."""
    try:
        hired = date.fromisoformat(str(hire_date)[:10])
    except (TypeError, ValueError):
        return 3
    day = date.fromisoformat(night)
    months = (day.year - hired.year) * 12 + (day.month - hired.month) - (day.day < hired.day)
    return 0 if months < 3 else 1 if months < 6 else 2 if months < 18 else 3


def _value(row: Mapping, key: str, default=None):
    v = row.get(key, default)
    return default if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v


_THREAT_REASONS = {
    "complaint": ("投诉威胁", "complaint threat"),
    "regulator": ("监管投诉威胁（12315/工信部）", "regulator threat (12315, MIIT)"),
    "media": ("媒体曝光威胁", "media threat"),
}


_PRAISE = ("优秀通话：合规得分高且客户情绪好转，可用于表扬",
           "exemplary call: high score and the customer ended happier")


def must_review_reasons(row: Mapping, settings: SamplingSettings,
                        hold_items: Iterable[str] = ("hold_notice",)) -> list[tuple[str, str]]:
    """(Chinese, English) reasons a call must be reviewed; empty when none.

    ``hold_items``: ids of the scorecard items whose failure means an unannounced hold (by
    default the shipped ``hold_notice``; ``sample_night`` finds them in the rule results:
    failed items whose evidence is a hold), so a site scorecard with other ids still gets
    its long unannounced holds reviewed."""
    reasons = []
    if bool(_value(row, "auto_fail", False)):
        items = _value(row, "failed_items", "")
        reasons.append((f"致命项不合格；不合格项：{items}", f"auto-fail; failed items: {items}"))
    kinds = [k for k in str(_value(row, "escalations", "")).split(";") if k in THREATS]
    reasons.extend(_THREAT_REASONS[k] for k in kinds)
    end = _value(row, "customer_sentiment_end")
    if end is not None and end < settings.must_review_sentiment:
        reasons.append((f"客户结束时情绪很差（{end:.2f}）", f"customer ended very negative ({end:.2f})"))
    failed = str(_value(row, "failed_items", "")).split(";")
    hold = _value(row, "hold_s", 0.0) or 0.0
    if set(hold_items) & set(failed) and hold >= settings.long_hold_s:
        reasons.append((f"长时间静音未告知（{hold:.0f} 秒）", f"long unannounced hold ({hold:.0f} s)"))
    flags = str(_value(row, "flags", "")).split(";")
    if "low_coverage" in flags:
        shares = [v for k in ("coverage_agent", "coverage_customer", "coverage")
                  if (v := _value(row, k)) is not None]
        low = min(shares) if shares else None
        said = f"{low:.0%}" if low is not None else "?"
        reasons.append((f"转写缺失部分语音（覆盖率 {said}），不合格项可能是漏转写，请听录音",
                        f"transcript misses speech (coverage {said}): a failed item may be a dropped word"))
    if "roles_uncertain" in flags:
        conf = _value(row, "role_confidence")
        said = f"{conf:.2f}" if conf is not None else "?"
        reasons.append((f"单声道录音无法可靠区分坐席与客户（置信度 {said}），角色相关项未评分，请听录音",
                        f"mono call: agent and customer not told apart surely (confidence {said}); "
                        "role items not scored, review by ear"))
    if "language_not_scored" in flags:
        language = _value(row, "language", "")
        reasons.append((f"通话语言为 {language}，评分表不适用，需人工质检",
                        f"call in {language}: the scorecard does not apply, review by hand"))
    return reasons


def risk_weight(row: Mapping) -> float:
    score = _value(row, "compliance_score", 100.0)
    start, end = _value(row, "customer_sentiment_start"), _value(row, "customer_sentiment_end")
    drop = max(0.0, start - end) if start is not None and end is not None else 0.0
    interruptions = _value(row, "n_interruptions_agent", 0) or 0
    tier = TIERS_UP.get(str(_value(row, "customer_tier", "")).upper(), 1.0)
    return tier * (1.0 + (100.0 - score) / 25.0 + 4.0 * drop + float(interruptions))


def is_exemplary(row: Mapping, settings: SamplingSettings) -> bool:
    score = _value(row, "compliance_score")
    return (score is not None and score >= settings.recognition_min_score
            and not bool(_value(row, "auto_fail", False)) and _value(row, "sentiment_trajectory") == "improved")


def _evidence(call_id: str, rule_results: pd.DataFrame | None, events: pd.DataFrame | None,
              index: dict[str, str] | None = None) -> str:
    """Failed items' evidence times, then escalations, of one call; ``index`` (from
    :func:`_evidence_index`) answers for string call ids without scanning the frames."""
    if index is not None and isinstance(call_id, str):
        return index.get(call_id, "")
    parts = []
    if rule_results is not None and len(rule_results):
        failed = rule_results[(rule_results.call_id == call_id) & (rule_results.outcome == "fail")]
        for r in failed.itertuples():
            if pd.notna(r.evidence_start):
                parts.append(f"{r.item_id}@{r.evidence_start:.1f}s")
    if events is not None and len(events):
        esc = events[(events.call_id == call_id) & (events.type == "escalation")]
        parts.extend(f"{e.detail}@{e.start:.1f}s" for e in esc.itertuples())
    return "; ".join(parts)


def _evidence_index(rule_results: pd.DataFrame | None, events: pd.DataFrame | None) -> dict[str, str]:
    """:func:`_evidence` of every call with any, in one pass over the frames."""
    rules: dict[str, list[str]] = {}
    if rule_results is not None and len(rule_results):
        for r in rule_results[rule_results.outcome == "fail"].itertuples():
            if isinstance(r.call_id, str) and pd.notna(r.evidence_start):
                rules.setdefault(r.call_id, []).append(f"{r.item_id}@{r.evidence_start:.1f}s")
    escalations: dict[str, list[str]] = {}
    if events is not None and len(events):
        for e in events[events.type == "escalation"].itertuples():
            if isinstance(e.call_id, str):
                escalations.setdefault(e.call_id, []).append(f"{e.detail}@{e.start:.1f}s")
    return {c: "; ".join(rules.get(c, []) + escalations.get(c, [])) for c in {*rules, *escalations}}


def _weighted_order(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A weighted random order without replacement (Efraimidis-Spirakis keys)."""
    keys = rng.random(len(weights)) ** (1.0 / np.maximum(weights, 1e-9))
    return np.argsort(-keys, kind="stable")


def _hold_items(rule_results: pd.DataFrame | None) -> tuple[str, ...]:
    """Ids of the items that failed on a hold (their evidence is the hold event): whatever the
    scorecard calls its hold-announcement item."""
    if rule_results is None or rule_results.empty or "evidence_text" not in rule_results:
        return ("hold_notice",)
    failed = rule_results[(rule_results.outcome == "fail")
                          & rule_results.evidence_text.fillna("").astype(str).str.startswith("hold ")]
    return tuple(sorted(set(failed.item_id))) or ("hold_notice",)


def sample_night(
    calls: pd.DataFrame,
    night: str,
    settings: SamplingSettings,
    history: History | None = None,
    rule_results: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The night's QA candidates (see the module docstring), one row per sampled call."""
    history = history or History()
    seed = night_seed(night, settings.seed)
    if calls.empty or "call_id" not in calls:
        return pd.DataFrame(columns=COLUMNS)
    rng = np.random.default_rng(seed)
    ok = calls[calls.get("status", pd.Series("ok", index=calls.index)).fillna("ok") == "ok"]
    pool = ok[~ok.call_id.isin(history.sampled)].sort_values("call_id").reset_index(drop=True)
    rows: list[dict] = []
    taken: set[str] = set()
    per_agent: dict[str, int] = {}
    evidence: list[dict[str, str]] = []  # _evidence_index, built at the first call taken

    def take(row: Mapping, layer: str, priority: float, reasons: Iterable[tuple[str, str]]) -> None:
        reasons = list(reasons)
        agent = str(_value(row, "agent_id", ""))
        taken.add(row["call_id"])
        per_agent[agent] = per_agent.get(agent, 0) + 1
        if not evidence:
            evidence.append(_evidence_index(rule_results, events))
        rows.append({
            "night": night, "call_id": row["call_id"], "agent_id": agent,
            "agent_name": _value(row, "agent_name", ""), "team": _value(row, "team", ""), "layer": layer,
            "priority": round(priority, 3), "reasons_zh": "；".join(z for z, _ in reasons),
            "reasons_en": "; ".join(e for _, e in reasons),
            "evidence": _evidence(row["call_id"], rule_results, events, evidence[0]),
            "audio_path": _value(row, "path", ""), "reviewer": "", "seed": seed,
        })

    records = pool.to_dict("records")
    hold_items = _hold_items(rule_results)
    # 1. must review
    for row in records:
        reasons = must_review_reasons(row, settings, hold_items)
        if reasons:
            take(row, "must_review", 100.0 + len(reasons), reasons)
    # 2. risk-weighted draw
    rest = [r for r in records if r["call_id"] not in taken]
    if rest and settings.risk_per_night > 0:
        weights = np.array([risk_weight(r) for r in rest])
        for i in _weighted_order(weights, rng)[: settings.risk_per_night]:
            r = rest[int(i)]
            score = _value(r, "compliance_score", 100.0)
            take(r, "risk", 50.0 + float(weights[i]),
                 [(f"风险加权抽样（合规得分 {score:.0f}，权重 {weights[i]:.1f}）",
                   f"risk-weighted draw (score {score:.0f}, weight {weights[i]:.1f})")])
    # 3-4. per-agent floor, then tenure top-up, spread over the period's remaining nights
    _, last = period_bounds(night, settings.period_days)
    nights_left = (date.fromisoformat(last) - date.fromisoformat(night)).days + 1
    base = settings.floor_per_period
    by_agent: dict[str, list[dict]] = {}
    for r in records:
        by_agent.setdefault(str(_value(r, "agent_id", "")), []).append(r)
    for layer in ("floor", "tenure"):
        for agent in sorted(by_agent):
            free = [r for r in by_agent[agent] if r["call_id"] not in taken]
            if not free:
                continue
            stage = tenure_stage(_value(free[0], "agent_hire_date"), night)
            quotas = settings.tenure_floor or (0,)
            quota = quotas[min(stage, len(quotas) - 1)]
            target = base if layer == "floor" else max(base, quota)
            # this night's share of what the period still needs, less what the agent already got tonight
            share = math.ceil(max(0, target - history.count(agent)) / nights_left)
            today = max(0, share - per_agent.get(agent, 0))
            for i in rng.permutation(len(free))[:today]:
                r = free[int(i)]
                months = ("0-3", "4-6", "7-18", "18+")[stage]
                reasons = ([(f"每位坐席每周期至少 {target} 次抽检", f"per-agent floor of {target} per period")]
                           if layer == "floor" else
                           [(f"新员工加抽（入职 {months} 个月档，每周期 {target} 次）",
                             f"tenure quota ({months} months: {target} per period)")])
                take(r, layer, 20.0 if layer == "floor" else 30.0, reasons)
    # 5. recognition
    exemplary = [r for r in records if r["call_id"] not in taken and is_exemplary(r, settings)]
    exemplary.sort(key=lambda r: (-_value(r, "compliance_score", 0.0),
                                  -((_value(r, "customer_sentiment_end", 0.0) or 0.0)
                                    - (_value(r, "customer_sentiment_start", 0.0) or 0.0)), r["call_id"]))
    for r in exemplary[: settings.recognition_per_night]:
        take(r, "recognition", 10.0, [_PRAISE])
    out = pd.DataFrame(rows, columns=COLUMNS)
    out = out.sort_values(["priority", "call_id"], ascending=[False, True], kind="stable")
    out = out.reset_index(drop=True)
    return assign_reviewers(out, settings.reviewers, settings.reviewer_capacity)


def assign_reviewers(samples: pd.DataFrame, reviewers: Iterable[str], capacity: int) -> pd.DataFrame:
    """Round-robin in priority order, skipping reviewers who are full; the rest stay unassigned."""
    reviewers = list(reviewers)
    out = samples.copy()
    load = dict.fromkeys(reviewers, 0)
    turn = 0
    for i in range(len(out)):
        for _ in range(len(reviewers)):
            name = reviewers[turn % len(reviewers)]
            turn += 1
            if load[name] < capacity:
                load[name] += 1
                out.loc[i, "reviewer"] = name
                break
    return out
