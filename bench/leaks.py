"""PII leak check for a finished run folder, shared by bench_compliance and bench_pii.

A leak (issue 9): six or more consecutive digits of a true number (a ``pii`` value of a
call's ``truth.json``, digits only) appearing in any cell of any CSV table the run wrote,
after the cell's Chinese digit characters are made digits (零〇一二三四五六七八九幺两洞) and its
whitespace and punctuation are removed.

Cells that are plain decimals (times, probabilities, ratios: ``0.8123456``) are skipped:
with the point removed their digits would match a six-digit piece of some number by
chance. Integers and text cells are checked.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

TABLES = ("turns", "words", "calls", "events", "rule_results", "training_clips",
          "qa_candidates", "agents", "teams", "failures")
MIN_RUN = 6
_CN_DIGITS = str.maketrans("零〇一二三四五六七八九幺两洞", "00123456789120")
_SEPARATORS = re.compile(r"[\s\W_]+")  # whitespace and punctuation; CJK characters are \w
_DECIMAL = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")
_DIGIT_RUN = re.compile(rf"\d{{{MIN_RUN},}}")
# free-text columns, where an unmasked run of digits that is no true number is still worth
# counting (a number the ASR garbled); ids, hashes, dates and paths are left out of that count
TEXT_COLUMNS = {"text", "match_text", "tokens", "word", "evidence_text", "excerpt", "detail",
                "reason"}

csv.field_size_limit(sys.maxsize)


def normalise_cell(cell: str) -> str:
    """Chinese digit characters to digits, whitespace and punctuation removed."""
    return _SEPARATORS.sub("", cell.translate(_CN_DIGITS))


@dataclass(frozen=True)
class TrueNumber:
    call_id: str
    kind: str  # phone | id | bank
    value: str  # digits only
    turn: int  # truth turn index
    role: str  # who read it (agent read-backs are tagged too)
    start: float
    end: float


@dataclass(frozen=True)
class Leak:
    table: str
    row: int  # 1-based data row
    column: str
    call_id: str  # of the true number that leaked
    kind: str
    digits: str  # the leaked run (at least MIN_RUN digits)


@dataclass
class LeakReport:
    numbers: list[TrueNumber]
    leaks: list[Leak] = field(default_factory=list)
    tables_checked: list[str] = field(default_factory=list)
    cells_checked: int = 0
    # text cells (TEXT_COLUMNS) holding a run of >= MIN_RUN digits that is no piece of a true
    # number (a number the ASR garbled, a code ...): not a leak, but worth watching
    other_digit_runs: int = 0

    @property
    def leaked_numbers(self) -> set[tuple[str, str]]:
        return {(lk.call_id, lk.kind) for lk in self.leaks}


def true_numbers(folders: Iterable[Path]) -> list[TrueNumber]:
    """Every ``pii`` entry of every ``*.truth.json`` in the folders."""
    out = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.truth.json")):
            truth = json.loads(path.read_text(encoding="utf-8"))
            turns = {t["index"]: t for t in truth.get("turns", [])}
            for p in truth.get("pii", []):
                t = turns.get(p["turn"], {})
                out.append(TrueNumber(truth["call_id"], p["type"], re.sub(r"\D", "", p["value"]),
                                      p["turn"], t.get("role", ""), t.get("start", 0.0),
                                      t.get("end", 0.0)))
    return out


def _grams(numbers: Iterable[TrueNumber]) -> dict[str, TrueNumber]:
    grams: dict[str, TrueNumber] = {}
    for n in numbers:
        for i in range(len(n.value) - MIN_RUN + 1):
            grams.setdefault(n.value[i:i + MIN_RUN], n)
    return grams


def find_in_text(text: str, grams: dict[str, TrueNumber]) -> list[tuple[str, TrueNumber]]:
    """(leaked run, number) for each maximal run of true-number digits in normalised text."""
    found = []
    for m in _DIGIT_RUN.finditer(normalise_cell(text)):
        run = m.group(0)
        i = 0
        while i <= len(run) - MIN_RUN:
            n = grams.get(run[i:i + MIN_RUN])
            if n is None:
                i += 1
                continue
            j = i + MIN_RUN  # extend while the next window is still a piece of that number
            while j < len(run) and run[j - MIN_RUN + 1:j + 1] in grams:
                j += 1
            found.append((run[i:j], n))
            i = j
    return found


def check_run(out: Path, numbers: list[TrueNumber]) -> LeakReport:
    """Leaks of ``numbers`` in every CSV table of the run folder ``out``."""
    report = LeakReport(numbers=list(numbers))
    grams = _grams(numbers)
    for name in TABLES:
        path = Path(out) / f"{name}.csv"
        if not path.exists():
            continue
        report.tables_checked.append(name)
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            for r, row in enumerate(reader, 1):
                for col, cell in zip(header, row, strict=False):
                    if not cell or _DECIMAL.fullmatch(cell.strip()):
                        continue
                    report.cells_checked += 1
                    hits = find_in_text(cell, grams)
                    for run, n in hits:
                        report.leaks.append(Leak(name, r, col, n.call_id, n.kind, run))
                    if not hits and col in TEXT_COLUMNS and _DIGIT_RUN.search(normalise_cell(cell)):
                        report.other_digit_runs += 1
    return report


def words_joined_leaks(out: Path, numbers: list[TrueNumber]) -> int:
    """Leaks that appear only when a turn's ``words`` rows are read together, in order.

    Not the issue's per-cell definition, but a clip export or a warehouse view that joins
    the words would show them.
    """
    path = Path(out) / "words.csv"
    if not path.exists():
        return 0
    grams = _grams(numbers)
    by_turn: dict[str, list[str]] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            by_turn.setdefault(row.get("turn_id", ""), []).append(row.get("word", ""))
    return sum(1 for words in by_turn.values() if find_in_text("".join(words), grams))


def summary_lines(prefix: str, report: LeakReport) -> list[str]:
    """``name=value`` lines for a report (prefix e.g. ``eval_``)."""
    lines = [
        f"{prefix}pii_leaks={len(report.leaks)}",
        f"{prefix}pii_numbers_leaked={len(report.leaked_numbers)}/{len(report.numbers)}",
        f"{prefix}pii_other_digit_run_cells={report.other_digit_runs}",
    ]
    by_table: dict[str, int] = {}
    for lk in report.leaks:
        by_table[lk.table] = by_table.get(lk.table, 0) + 1
    for table, n in sorted(by_table.items()):
        lines.append(f"{prefix}pii_leaks_{table}={n}")
    return lines


def leak_details(report: LeakReport, limit: int = 20) -> list[str]:
    return [f"#   leak {lk.call_id} {lk.kind} in {lk.table}.csv row {lk.row} column {lk.column}: {lk.digits}"
            for lk in report.leaks[:limit]]
