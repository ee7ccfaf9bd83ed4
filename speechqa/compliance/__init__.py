"""Compliance scorecards: a rules file QA teams write (schema), evaluated on every call with
evidence (engine)."""

from speechqa.compliance.engine import score_call, scores_language
from speechqa.compliance.schema import Scorecard, load_scorecard

__all__ = ["Scorecard", "load_scorecard", "score_call", "scores_language"]
